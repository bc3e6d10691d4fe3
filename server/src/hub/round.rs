//! One sync round, as the hub plans and commits it: decode and check the
//! upload, apply it to the server's copy of each touched section, judge the
//! new writes with the rules over the merge (refusing only what an honest
//! client never writes), commit everything in one transaction, then answer
//! with what the device lacks since its cursor (a bootstrap of whole
//! documents, or feed rows), up to its byte budget. It runs in its project's
//! turn on a store of its own ([`Hub`]); nothing here waits for other projects.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use automerge::{Change, ReadDoc};
use fieldsync_core::protocol::{
    self, Refusal, RosterUpdate, SectionBatch, SectionDocument, StillToSend, SyncRequest, SyncResponse,
};
use fieldsync_core::{
    Decision, Member, ProjectConfig, Roster, Rule, Scope, SectionDoc, SectionInput, Validated, validate,
};

use super::scope::{self, Entering, ScopedPage};
use super::{BOOTSTRAP_BATCH, Hub, MAX_RESPONSE_BUDGET, SNAPSHOT_AFTER, member_project, roster_of};
use crate::cursor::Cursor;
use crate::error::HubError;
use crate::limits;
use crate::metrics::Phase;
use crate::store::{DeviceRecord, FeedRow, HubStore, RoundWrite, SectionWrite, StoreError};

/// A section being changed by a round.
struct Touched {
    doc: SectionDoc,
    /// Whether the server had no document for it before this round.
    is_new: bool,
    loose: usize,
    /// The section's highest feed seq when read (0: none).
    last_seq: u64,
    /// Bytes the hub stores for it (snapshot and loose changes).
    stored_bytes: usize,
    new: Vec<Change>,
    seen: HashSet<String>,
    /// When the hub received each of its changes, the new ones included (now).
    received: BTreeMap<String, u64>,
    /// The rules' judgement of the document with the new changes.
    validated: Option<Validated>,
}

/// What a committed round tells the live channels: the project, its feed's
/// new end, and the sections it touched with their coverage (none: a new
/// actor in the roster, news to every device).
pub(super) type Notice = (String, u64, super::live_bus::Touched);

/// How far before its actor's stamp floor a write may still be stamped:
/// the hub's clocks (several processes) and rounds a little apart.
const STAMP_SLACK_MS: u64 = 5 * 60 * 1000;

/// An upload decoded, checked and applied to the server's documents.
struct Upload {
    touched: BTreeMap<String, Touched>,
    /// When the hub received each uploaded change, in the request's order.
    received: Vec<u64>,
    /// The latest stamp of the new writes (0: none).
    newest_stamp_ms: u64,
}

/// Which feed rows a response may carry.
struct Page {
    /// The device's cursor.
    after: u64,
    /// Bytes of change at most.
    budget: usize,
    /// At least one row, whatever its size (nothing else in the response).
    at_least_one: bool,
    /// The feed's end as this round already read it (before the page).
    feed_max: Option<u64>,
}

/// A judgement's conflict records as the store keeps them: (id, JSON).
pub(super) fn conflict_rows(validated: &Validated) -> Result<Vec<(String, String)>, StoreError> {
    let rows = validated.conflicts.iter().map(|c| Ok((c.id.clone(), serde_json::to_string(c)?)));
    Ok(rows.collect::<Result<Vec<_>, serde_json::Error>>()?)
}

/// What the rules read of `doc`, with when the hub received its changes.
pub(super) fn input_of(doc: &SectionDoc, received: &BTreeMap<String, u64>) -> SectionInput {
    let mut input = doc.input();
    input.received = received.clone();
    input
}

impl Hub {
    pub(super) fn round(
        &self,
        store: &mut dyn HubStore,
        device: &DeviceRecord,
        request: &SyncRequest,
        now_ms: u64,
    ) -> Result<(SyncResponse, Option<Notice>), HubError> {
        let project = request.project.as_str();
        let (record, role) = member_project(store, device, project)?;
        let cursor = Cursor::parse(&request.cursor)?;
        if automerge::ActorId::try_from(request.actor.as_str()).is_err() || request.actor.is_empty() {
            return Err(HubError::Malformed(format!("`{}` is not a hex Automerge actor id", request.actor)));
        }
        // A cursor past the feed was written by a server whose data this one
        // does not have (restored from an older backup, or replaced).
        let mut feed_max = if cursor.seq() > 0 { Some(store.feed_max(project)?) } else { None };
        if cursor.seq() > feed_max.unwrap_or(0) {
            return Err(HubError::UnknownCursor(format!(
                "cursor `{}` is past the end of this server's feed (its data was restored or replaced); \
                 send an empty cursor",
                request.cursor
            )));
        }
        let binding = store.actor_binding(&request.actor)?;
        // The floor goes with the actor, to a device enrolled again too.
        let stored_floor = binding.as_ref().map_or(0, |(_, floor)| *floor);
        let bind_actor = match binding.map(|(d, _)| d) {
            Some(d) if d == device.id => None,
            // Bound to another device: taken over in the commit if that device
            // was revoked and is this user's (the same phone enrolled again),
            // refused there (403) otherwise.
            Some(_) | None => {
                limits::check_new_actor(store, &device.id)?;
                Some(request.actor.clone())
            }
        };

        // Only an upload is judged: a round that sends nothing (most of them)
        // does not read the project's roster (500 members are felt).
        let roster = match request.upload.is_empty() {
            true => Roster::default(),
            false => {
                let bound =
                    bind_actor.as_ref().map(|actor| Member { actor: actor.clone(), user: device.user.clone(), role });
                roster_of(store, project, bound)?
            }
        };
        // The actor's stamps never go back (a hybrid logical clock, kept with
        // each write) and it sends its outbox oldest first, so nothing it
        // sends later is older than what it sent before: a write stamped
        // before that floor had its stamp set back.
        let floor_ms = stored_floor;
        let Upload { touched, received: upload_received, newest_stamp_ms } =
            self.apply_upload(store, device, request, floor_ms, &record.config, &roster, now_ms)?;
        // Kept with the round's commit.
        let raised = newest_stamp_ms.min(now_ms).max(floor_ms);
        let stamp_floor = (raised > stored_floor).then(|| (request.actor.clone(), raised));
        if let Some((actor, raised)) = &stamp_floor
            && touched.is_empty()
            && bind_actor.is_none()
        {
            store.raise_stamp_floor(actor, *raised)?;
        }

        let mut notify = None;
        let bound_now = bind_actor.is_some();
        if !touched.is_empty() || bound_now {
            let committing = Instant::now();
            let mut sections = Vec::with_capacity(touched.len());
            let mut new_changes = 0;
            // The conflict records the new changes take part in, counted once stored.
            let mut recorded = Vec::new();
            for (section, t) in touched {
                let validated = match t.validated {
                    Some(v) => v,
                    None => validate(&input_of(&t.doc, &t.received), &roster, &record.config),
                };
                let new_hashes: HashSet<String> = t.new.iter().map(|c| c.hash().to_string()).collect();
                recorded.extend(
                    validated
                        .conflicts
                        .iter()
                        .filter(|c| c.candidates.iter().any(|k| new_hashes.contains(&k.change_hash)))
                        .map(|c| (c.kind, c.rule)),
                );
                let conflicts = conflict_rows(&validated)?;
                let snapshot = (t.loose + t.new.len() > SNAPSHOT_AFTER).then(|| t.doc.save());
                new_changes += t.new.len();
                sections.push(SectionWrite {
                    section,
                    based_on_seq: t.last_seq,
                    // Uncompressed, like the phones: a response deflates its changes together.
                    changes: t.new.into_iter().map(|c| (c.hash().to_string(), c.raw_bytes().to_vec())).collect(),
                    view: serde_json::to_string(&validated.view).map_err(StoreError::from)?,
                    conflicts,
                    snapshot,
                    coverage: validated.view.coverage(),
                });
            }
            let write = RoundWrite {
                project: project.to_owned(),
                device: device.id.clone(),
                user: device.user.clone(),
                bind_actor,
                now_ms,
                stamp_floor,
                sections,
            };
            let max = store.commit_round(&write).map_err(|e| match e {
                StoreError::ActorTaken { actor } => {
                    HubError::Forbidden(format!("actor {actor} belongs to another device"))
                }
                e => HubError::Storage(e),
            })?;
            feed_max = Some(max);
            if !write.sections.is_empty() {
                self.metrics.phase(Phase::Commit, committing.elapsed());
            }
            self.metrics.accepted(new_changes);
            recorded.into_iter().for_each(|(kind, rule)| self.metrics.conflict(kind, rule));
            if new_changes > 0 {
                self.freshness.stored(project, max, &device.id);
            }
            // New changes, or a new actor in the roster (a device's first round):
            // online devices run a round and learn of it.
            if new_changes > 0 || write.bind_actor.is_some() {
                let touched = write.sections.iter().map(|w| (w.section.clone(), w.coverage.clone())).collect();
                notify = Some((project.to_owned(), max, touched));
            }
        }

        let budget = match request.response_budget as usize {
            0 => protocol::DEFAULT_RESPONSE_BUDGET as usize,
            b => b.min(MAX_RESPONSE_BUDGET),
        };
        let mut response = SyncResponse {
            server_time_ms: now_ms,
            changes: Vec::new(),
            documents: Vec::new(),
            cursor: String::new(),
            more: false,
            roster: None,
            upload_received,
            evicted: Vec::new(),
            keep_only: None,
            still_to_send: None,
            full_size_photos: None,
        };
        // A new actor bumped the roster version: read it again.
        let record = if bound_now { store.project(project)?.unwrap_or(record) } else { record };
        if request.roster_version != record.roster_version {
            response.full_size_photos = Some(record.config.full_size_photos);
            response.roster = Some(RosterUpdate {
                version: record.roster_version,
                members: store.roster(project)?,
                history: store.role_history(project)?,
                config: record.config,
            });
        }
        let scope = &request.scope;
        let held = request.held.as_ref();
        let (after, used) = match cursor {
            Cursor::Start => {
                let seq = store.feed_max(project)?;
                response.keep_only = scope::holding(store, project, scope)?;
                let entering = Entering::of(store, project, scope, None, seq)?;
                self.bootstrap(store, (project, &device.id), &entering, seq, String::new(), budget, &mut response)?
            }
            Cursor::Bootstrap { seq, after } => {
                let entering = Entering::of(store, project, scope, held, seq)?;
                self.bootstrap(store, (project, &device.id), &entering, seq, after, budget, &mut response)?
            }
            // The scope changed: what enters it comes whole first, and the
            // device keeps only what it covers.
            Cursor::Changes(seq) if held.is_some() => {
                response.keep_only = scope::holding(store, project, scope)?;
                let entering = Entering::of(store, project, scope, held, seq)?;
                self.bootstrap(store, (project, &device.id), &entering, seq, String::new(), budget, &mut response)?
            }
            Cursor::Changes(seq) => (Some(seq), 0),
        };
        if let Some(after) = after {
            let page = Page { after, budget: budget.saturating_sub(used), at_least_one: used == 0, feed_max };
            self.changes(store, project, &device.id, page, scope, &mut response)?;
        }
        Ok((response, notify))
    }

    /// Decode, check and apply the upload to the server's documents, without
    /// storing anything. Returns the touched sections with their new changes,
    /// and when the hub received each uploaded change (in the request's
    /// order): now for a new one, then for one it already had. A write of
    /// the request's actor stamped before its stamp floor (`floor_ms`) is
    /// refused: its clock never goes back, so the stamp was set back.
    #[allow(clippy::too_many_arguments)]
    fn apply_upload(
        &self,
        store: &mut dyn HubStore,
        device: &DeviceRecord,
        request: &SyncRequest,
        floor_ms: u64,
        config: &ProjectConfig,
        roster: &Roster,
        now_ms: u64,
    ) -> Result<Upload, HubError> {
        let started = Instant::now();
        let mut newest_stamp_ms = 0;
        let mut resolution = Duration::ZERO;
        let mut touched: BTreeMap<String, Touched> = BTreeMap::new();
        let mut received = Vec::new();
        let mut own_actors: HashSet<String> = HashSet::from([request.actor.clone()]);
        let mut over_limits = Vec::new();
        for batch in &request.upload {
            if batch.section.is_empty() {
                return Err(HubError::Malformed("a batch names no section".into()));
            }
            for bytes in &batch.changes {
                let change = Change::from_bytes(bytes.clone()).map_err(|e| {
                    HubError::Malformed(format!(
                        "a change of section {} is not an Automerge change ({e}); it cannot be stored",
                        batch.section
                    ))
                })?;
                let actor = change.actor_id().to_hex_string();
                if !own_actors.contains(&actor) {
                    match store.actor_device(&actor)? {
                        Some(d) if d == device.id => {
                            own_actors.insert(actor);
                        }
                        _ => {
                            return Err(HubError::Forbidden(format!(
                                "change {} of section {} was made by actor {actor}, which is not this device's; \
                                 a device uploads only its own changes",
                                change.hash(),
                                batch.section
                            )));
                        }
                    }
                }
                let hash = change.hash().to_string();
                if let Some(ms) = store.received(&batch.section, &hash)? {
                    received.push(ms);
                    continue; // Sent before: harmless.
                }
                received.push(now_ms);
                if let Err(reason) = limits::check_change(bytes.len(), &change) {
                    over_limits.push(Refusal { section: batch.section.clone(), hash, rule: None, reason });
                    continue;
                }
                let t = match touched.entry(batch.section.clone()) {
                    std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::btree_map::Entry::Vacant(v) => {
                        let (doc, loose, last_seq, stored_bytes, stored_received) = match store
                            .section(&batch.section)?
                        {
                            Some(s) if s.project != request.project => {
                                return Err(HubError::Forbidden(format!(
                                    "section {} belongs to another project than {}",
                                    batch.section, request.project
                                )));
                            }
                            Some(s) => {
                                let doc = SectionDoc::from_parts(s.snapshot.as_deref(), &s.changes).map_err(|e| {
                                    HubError::Storage(StoreError::Io(std::io::Error::other(format!(
                                        "stored section {} unreadable: {e}",
                                        batch.section
                                    ))))
                                })?;
                                let bytes = s.snapshot.as_ref().map_or(0, Vec::len)
                                    + s.changes.iter().map(Vec::len).sum::<usize>();
                                (doc, s.changes.len(), s.last_seq, bytes, s.received)
                            }
                            None => (
                                SectionDoc::from_parts(None, &[]).expect("an empty document loads"),
                                0,
                                0,
                                0,
                                BTreeMap::new(),
                            ),
                        };
                        v.insert(Touched {
                            doc,
                            is_new: last_seq == 0,
                            loose,
                            last_seq,
                            stored_bytes,
                            new: Vec::new(),
                            seen: HashSet::new(),
                            received: stored_received,
                            validated: None,
                        })
                    }
                };
                if t.seen.insert(hash.clone()) {
                    t.received.insert(hash, now_ms);
                    t.new.push(change);
                }
            }
        }

        // Sizes are judged before the changes are applied.
        for (section, t) in &touched {
            if let Err(reason) = limits::check_document(t.stored_bytes, &t.doc, &t.new) {
                let refuse = |c: &Change| Refusal {
                    section: section.clone(),
                    hash: c.hash().to_string(),
                    rule: None,
                    reason: reason.clone(),
                };
                over_limits.extend(t.new.iter().map(refuse));
            }
        }
        if !over_limits.is_empty() {
            store.record_refusals(&request.project, &device.id, &over_limits, now_ms)?;
            return Err(HubError::Refused(over_limits));
        }

        let mut refusals = Vec::new();
        for (section, t) in &mut touched {
            let malformed = |what: String| HubError::Malformed(format!("section {section}: {what}"));
            t.doc
                .apply_changes(t.new.clone())
                .map_err(|e| malformed(format!("the changes do not apply ({e}); they cannot be stored")))?;
            let missing = t.doc.automerge().get_missing_deps(&[]);
            if !missing.is_empty() {
                let list: Vec<String> = missing.iter().map(ToString::to_string).collect();
                return Err(malformed(format!(
                    "changes depend on {} which the server does not have; upload them in the same or an earlier round",
                    list.join(", ")
                )));
            }
            t.doc
                .check_section()
                .map_err(|e| malformed(format!("{e}; only FieldSync section documents are synced")))?;
            if t.doc.id() != *section {
                return Err(malformed(format!(
                    "the document's id is `{}`, not the section it was sent as",
                    t.doc.id()
                )));
            }
            if t.doc.project() != request.project {
                return Err(HubError::Forbidden(format!(
                    "section {section} belongs to project `{}`, not `{}`",
                    t.doc.project(),
                    request.project
                )));
            }
            for change in &t.new {
                if let Err(reason) = check_structure(&t.doc, change, t.is_new) {
                    refusals.push(Refusal {
                        section: section.clone(),
                        hash: change.hash().to_string(),
                        rule: None,
                        reason,
                    });
                }
            }
            // The rules over the merge judge the new writes like every other
            // replica will. A write they reject is stored and shown as a
            // rejection (nothing a crew recorded is lost, and a device on a
            // stale roster is never stuck); only what an honest client never
            // writes is refused.
            let judging = Instant::now();
            let input = input_of(&t.doc, &t.received);
            let validated = validate(&input, roster, config);
            resolution += judging.elapsed();
            let new: HashSet<String> = t.new.iter().map(|c| c.hash().to_string()).collect();
            for edit in input.edits.iter().filter(|e| new.contains(&e.change_hash)) {
                let stamp_ms = edit.hlc.physical_ms;
                let own = edit.author == request.actor;
                if own {
                    newest_stamp_ms = newest_stamp_ms.max(stamp_ms);
                }
                if let Some(Decision::Rejected { rule, reason, .. }) = validated.decisions.get(&edit.id)
                    && rule.is_attack()
                {
                    refusals.push(Refusal {
                        section: section.clone(),
                        hash: edit.change_hash.clone(),
                        rule: Some(rule.as_str().to_owned()),
                        reason: reason.clone(),
                    });
                } else if own && stamp_ms.saturating_add(STAMP_SLACK_MS) < floor_ms {
                    refusals.push(Refusal {
                        section: section.clone(),
                        hash: edit.change_hash.clone(),
                        rule: Some(Rule::ForgedStamp.as_str().to_owned()),
                        reason: format!(
                            "stamped at {stamp_ms} ms, before {floor_ms} ms: this app had sent a later write \
                             or learned the roster by then, and its clock never goes back; a stamp set back is \
                             how an old role is claimed"
                        ),
                    });
                }
            }
            t.validated = Some(validated);
        }
        if !touched.is_empty() {
            self.metrics.phase(Phase::Detection, started.elapsed().saturating_sub(resolution));
            self.metrics.phase(Phase::Resolution, resolution);
        }
        if !refusals.is_empty() {
            store.record_refusals(&request.project, &device.id, &refusals, now_ms)?;
            return Err(HubError::Refused(refusals));
        }
        Ok(Upload { touched, received, newest_stamp_ms })
    }

    /// Whole documents of the `entering` sections after `after`, up to
    /// `budget` bytes. Returns where the feed is to continue (None: more
    /// documents remain) and the bytes used.
    #[allow(clippy::too_many_arguments)]
    fn bootstrap(
        &self,
        store: &mut dyn HubStore,
        (project, device): (&str, &str),
        entering: &Entering,
        seq: u64,
        mut after: String,
        budget: usize,
        response: &mut SyncResponse,
    ) -> Result<(Option<u64>, usize), HubError> {
        let mut used = 0;
        loop {
            let ids = entering.after(store, project, &after, BOOTSTRAP_BATCH)?;
            if ids.is_empty() {
                return Ok((Some(seq), used));
            }
            for id in ids {
                let Some(document) = whole_document(store, &id)? else { continue };
                if !response.documents.is_empty() && used + document.document.len() > budget {
                    // A total for the device's progress, where counting is one query.
                    if let Entering::All = entering {
                        response.still_to_send = Some(StillToSend {
                            documents: store.sections_count_after(project, &after)?,
                            changes: store.feed_count(project, seq, device)?,
                        });
                    }
                    response.cursor = Cursor::Bootstrap { seq, after }.to_string();
                    response.more = true;
                    return Ok((None, used));
                }
                used += document.document.len();
                response.documents.push(document);
                after = id;
            }
        }
    }

    /// Feed rows after `after` from other devices, up to `budget` bytes
    /// (at least one if `at_least_one`), grouped by section in feed order;
    /// with a scope that is not everything, only what it holds.
    fn changes(
        &self,
        store: &mut dyn HubStore,
        project: &str,
        device: &str,
        page: Page,
        scope: &Scope,
        response: &mut SyncResponse,
    ) -> Result<(), HubError> {
        let Page { after, budget, at_least_one, feed_max } = page;
        // The feed's end is read before the page (this round's earlier read
        // or its commit will do): a round committed by another process in
        // between lands after it, so the cursor never skips it.
        let max = match feed_max {
            Some(max) => max,
            None => store.feed_max(project)?,
        };
        let rows = match scope {
            Scope::Everything => {
                let mut page = store.feed_page(project, after, device, budget)?;
                if !at_least_one && page.rows.first().is_some_and(|r| r.bytes.len() > budget) {
                    page.rows.clear();
                    page.more = true;
                }
                let last = page.rows.last().map_or(after, |r| r.seq);
                response.more = page.more;
                if page.more {
                    let changes = store.feed_count(project, last, device)?;
                    response.still_to_send = Some(StillToSend { changes, documents: 0 });
                }
                response.cursor =
                    if page.more { Cursor::Changes(last) } else { Cursor::Changes(max.max(last)) }.to_string();
                page.rows
            }
            Scope::Only(_) => {
                let (mut rows, end, more) = scoped_rows(store, project, device, (after, budget, at_least_one), scope)?;
                let until = if more { end } else { max.max(end) };
                response.more = more;
                response.cursor = Cursor::Changes(until).to_string();
                let whole = ScopedPage::new(scope).settle_moves(store, project, (after, until), &mut rows, response)?;
                for id in whole {
                    response.documents.extend(whole_document(store, &id)?);
                }
                rows
            }
        };
        let mut order: Vec<String> = Vec::new();
        let mut by_section: HashMap<String, SectionBatch> = HashMap::new();
        for row in rows {
            let batch = by_section.entry(row.section.clone()).or_insert_with(|| {
                order.push(row.section.clone());
                SectionBatch { section: row.section, changes: Vec::new(), received: Vec::new() }
            });
            batch.changes.push(row.bytes);
            batch.received.push(row.received_ms);
        }
        response.changes.extend(order.iter().filter_map(|section| by_section.remove(section)));
        Ok(())
    }
}

/// The feed rows after `after` of the sections `scope` covers, up to
/// `budget` bytes (at least one if `at_least_one`): rows of other sections
/// are passed over, costing nothing on the wire. Returns them, the last seq
/// settled (sent or passed over) and whether rows remain.
fn scoped_rows(
    store: &mut dyn HubStore,
    project: &str,
    device: &str,
    (after, budget, at_least_one): (u64, usize, bool),
    scope: &Scope,
) -> Result<(Vec<FeedRow>, u64, bool), HubError> {
    let mut covers = ScopedPage::new(scope);
    let (mut rows, mut end, mut used) = (Vec::new(), after, 0usize);
    loop {
        let page = store.feed_page(project, end, device, budget.saturating_sub(used).max(1))?;
        let fetched_more = page.more;
        for row in page.rows {
            let held = covers.covers(store, &row.section)?;
            if held && used + row.bytes.len() > budget && !(rows.is_empty() && at_least_one) {
                return Ok((rows, end, true));
            }
            end = row.seq;
            if held {
                used += row.bytes.len();
                rows.push(row);
            }
        }
        if !fetched_more {
            return Ok((rows, end, false));
        }
    }
}

/// `section` as one whole compacted document, with its receipt times; the
/// snapshot is stored so the next device to need it takes it as it is.
fn whole_document(store: &mut dyn HubStore, id: &str) -> Result<Option<SectionDocument>, HubError> {
    let Some(s) = store.section(id)? else { return Ok(None) };
    let document = match (s.snapshot, s.changes.is_empty()) {
        (Some(snapshot), true) => snapshot,
        (snapshot, _) => {
            let saved = SectionDoc::from_parts(snapshot.as_deref(), &s.changes)
                .map_err(|e| {
                    HubError::Storage(StoreError::Io(std::io::Error::other(format!(
                        "stored section {id} unreadable: {e}"
                    ))))
                })?
                .save();
            store.put_snapshot(id, &saved, s.last_seq)?;
            saved
        }
    };
    // In the order of the changes' hashes, as the device finds them in the document.
    let received = s.received.values().copied().collect();
    Ok(Some(SectionDocument { section: id.to_owned(), document, received }))
}

/// Check that a change only adds to a section document the way FieldSync
/// writes do: new edit records and photos (new keys, never over an existing
/// one), notes text, and the root only in the first change of a new section.
/// The rules take a record's author from the op that created it, so a change
/// that rewrote the fields of someone else's record would pass as theirs.
fn check_structure(doc: &SectionDoc, change: &Change, section_is_new: bool) -> Result<(), String> {
    use automerge::legacy::{ObjectId, OpId, OpType};
    let am = doc.automerge();
    let id_of = |key: &str| match am.get(automerge::ROOT, key) {
        Ok(Some((automerge::Value::Object(_), automerge::ObjId::Id(counter, actor, _)))) => Some((counter, actor)),
        _ => None,
    };
    let (edits, notes, photos) = (id_of("edits"), id_of("notes"), id_of("photos"));
    // Some malformed changes make Automerge panic here (see `SectionDoc::apply_changes`).
    let expanded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| change.decode()))
        .map_err(|_| "the change's operations cannot be read; it cannot be stored".to_owned())?;
    let start = expanded.start_op.get();
    let end = start + expanded.operations.len() as u64;
    let actor = &expanded.actor_id;
    for op in &expanded.operations {
        let ObjectId::Id(OpId(counter, obj_actor)) = &op.obj else {
            if section_is_new && change.deps().is_empty() {
                continue;
            }
            return Err("writes the document's root after its creation; only new records may be added".into());
        };
        let obj = Some((*counter, obj_actor.clone()));
        let made_here = obj_actor == actor && (start..end).contains(counter);
        if made_here || obj == notes {
            continue;
        }
        if obj == edits || obj == photos {
            if matches!(op.action, OpType::Make(automerge::ObjType::Map)) && op.pred.is_empty() && !op.insert {
                continue;
            }
            return Err("replaces or deletes an existing record; records are only ever added".into());
        }
        return Err("changes a record written earlier; a record is never rewritten, write a new one".into());
    }
    Ok(())
}
