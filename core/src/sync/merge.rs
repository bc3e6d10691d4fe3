//! Merging changes from elsewhere: the sync engine's entry point.
//!
//! Every section touched is revalidated and stored with its changes in one
//! transaction. Sections go through in chunks, and each chunk phase by phase
//! (read the stored documents, apply the changes, read the documents for the
//! rules, validate and store) rather than one section start to end: each
//! phase keeps one library's code and data hot in the CPU's caches, which made
//! the 1,000-section merge about a fifth faster (BENCHMARKS.md). A chunk is as
//! many documents as the replica caches, so memory stays bounded however
//! large the batch.

use std::collections::{BTreeMap, HashMap, HashSet};

use automerge::{ActorId, Change, ChangeHash, ReadDoc};
use rusqlite::Transaction;
use serde::{Deserialize, Serialize};

use crate::domain::document::{DocumentError, SectionDoc, SectionInput, hash_hex};
use crate::domain::edit::{Edit, EditId, Field};
use crate::domain::hlc::DeviceTime;
use crate::domain::project::{ProjectConfig, Roster};
use crate::replica::feed::ReplicaChange;
use crate::replica::{DOC_CACHE, DocCache, Replica, ReplicaError, ScopeSettlement, settle_scope};
use crate::rules::conflict::{Candidate, Rule};
use crate::rules::validate::{Validated, validate};
use crate::rules::view::Decision;
use crate::store::{self, OutboxChange};
use crate::sync::protocol::{RosterUpdate, SectionDocument};

/// A change as it travels: its section and raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionChange {
    /// The section document it belongs to.
    pub section: String,
    /// Raw Automerge change bytes.
    pub bytes: Vec<u8>,
}

/// What became of a local write not yet confirmed, after a merge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum EditOutcome {
    /// It still stands (or was replaced by our own later write).
    Stands,
    /// Another write won, or a rule now refuses it.
    Overridden {
        /// The write that stands instead, if any.
        by: Option<Candidate>,
        /// The rule that decided.
        rule: Rule,
        /// Why, in words for the technician.
        reason: String,
    },
    /// The server would not take the change that carries it (or it builds on
    /// one it would not take); it stays here, unsent.
    Refused {
        /// Why, as the server said.
        reason: String,
    },
}

/// One line of the optimistic-reconciliation report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reconciliation {
    /// The local write.
    pub edit_id: EditId,
    /// Its section.
    pub section: String,
    /// Its field.
    pub field: Option<Field>,
    /// What became of it.
    pub outcome: EditOutcome,
}

/// What a merge did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MergeReport {
    /// Changes that were new here.
    pub new_changes: usize,
    /// Sections whose view changed.
    pub sections_changed: Vec<String>,
    /// Every local write whose fate this merge settled (the server confirmed
    /// it in this round), and every local write not yet confirmed in the
    /// sections the merge touched, each with what became of it.
    pub reconciliation: Vec<Reconciliation>,
}

/// The rest of a sync round's response, committed in the merge's transaction.
pub(crate) struct RoundSettlement<'a> {
    pub project: &'a str,
    /// A new roster and config, stored before any view is computed.
    pub roster: Option<&'a RosterUpdate>,
    /// The server's time, which the clock anchors to.
    pub server_time_ms: u64,
    /// Our changes the server confirmed.
    pub confirmed: &'a [String],
    /// When the server received each of them, in the same order (empty: unknown).
    pub confirmed_received: &'a [u64],
    /// Where the project's feed now is for us.
    pub cursor: &'a str,
    /// What it says of the project's scope.
    pub scope: ScopeSettlement<'a>,
}

/// What arrived for one section.
enum Arrival<'a> {
    /// Changes (encoded as they came, each with when the hub received it, 0:
    /// unknown; or from a whole document of a section we have, with the
    /// receipts of its changes by hash).
    Changes { raw: Vec<(&'a [u8], u64)>, parsed: Vec<Change>, receipts: Vec<(String, u64)> },
    /// A whole document of a section this store lacks, stored as it comes.
    Whole(&'a SectionDocument),
}

/// One section on its way through the phases.
struct Merging<'a> {
    section: &'a str,
    doc: SectionDoc,
    before: Vec<ChangeHash>,
    whole: Option<&'a SectionDocument>,
    /// Changes the document lacked, to store as loose rows.
    rows: Vec<(String, Vec<u8>)>,
    /// When the hub received the changes that arrived, by hash.
    receipts: Vec<(String, u64)>,
    /// `None` while only changes whose dependencies have not arrived are known.
    input: Option<SectionInput>,
}

impl Replica {
    /// Merge changes from elsewhere. The report says what became of our
    /// unconfirmed writes.
    pub fn apply_changes(&mut self, changes: &[SectionChange]) -> Result<MergeReport, ReplicaError> {
        self.merge(changes, &[], &[], None, self.now())
    }

    /// Re-apply unsynced local changes recovered with [`crate::salvage`]
    /// from a database that was moved aside, and queue them for the server again.
    pub fn import_unsynced(&mut self, changes: &[OutboxChange]) -> Result<MergeReport, ReplicaError> {
        let batch: Vec<SectionChange> =
            changes.iter().map(|c| SectionChange { section: c.section.clone(), bytes: c.bytes.clone() }).collect();
        let report = self.apply_changes(&batch)?;
        let tx = self.begin()?;
        for c in changes {
            store::requeue_local(&tx, c)?;
        }
        tx.commit()?;
        let mut changed = ReplicaChange::status();
        changed.unsynced.extend(changes.iter().map(|c| c.section.clone()));
        self.feed.publish(changed);
        Ok(report)
    }

    /// Merge `changes` (each received by the hub at the time in `received`,
    /// if given) and whole `documents` (for sections this store lacks) in one
    /// transaction, with what else a sync round's response settles: a cut at
    /// any point loses nothing and leaves the last round's state.
    pub(crate) fn merge(
        &mut self,
        changes: &[SectionChange],
        received: &[u64],
        documents: &[SectionDocument],
        round: Option<RoundSettlement<'_>>,
        device_time: DeviceTime,
    ) -> Result<MergeReport, ReplicaError> {
        let mut arrivals: BTreeMap<&str, Arrival<'_>> = BTreeMap::new();
        for (i, c) in changes.iter().enumerate() {
            let entry = arrivals.entry(c.section.as_str()).or_insert(Arrival::Changes {
                raw: vec![],
                parsed: vec![],
                receipts: vec![],
            });
            if let Arrival::Changes { raw, .. } = entry {
                raw.push((&c.bytes, received.get(i).copied().unwrap_or(0)));
            }
        }
        // For sections we have, a whole document's changes merge like any others.
        for d in documents {
            let have = store::view(&self.conn, &d.section)?.is_some();
            match arrivals.get_mut(d.section.as_str()) {
                Some(Arrival::Whole(_)) => {}
                None if !have => {
                    arrivals.insert(&d.section, Arrival::Whole(d));
                }
                arrival => {
                    let doc = SectionDoc::load(&d.document)?;
                    let more = document_receipts(&doc, d)?;
                    let changes = doc.changes_since(&[]);
                    match arrival {
                        Some(Arrival::Changes { parsed, receipts, .. }) => {
                            parsed.extend(changes);
                            receipts.extend(more);
                        }
                        _ => {
                            arrivals
                                .insert(&d.section, Arrival::Changes { raw: vec![], parsed: changes, receipts: more });
                        }
                    }
                }
            }
        }
        let mut report = MergeReport::default();
        let now = device_time.wall_ms;
        let tx = store::immediate(&self.conn)?;
        let mut changed = ReplicaChange::default();
        if let Some(round) = &round {
            self.clock.anchor_to_server(round.server_time_ms, device_time);
            // Before any view is computed: our confirmed writes count from when the hub received them.
            let own: Vec<(String, u64)> =
                round.confirmed.iter().cloned().zip(round.confirmed_received.iter().copied()).collect();
            store::put_own_receipts(&tx, &own)?;
            if let Some(r) = round.roster {
                // Every view of the project follows the new roster; the merge
                // below recomputes the sections it touches once more.
                store::set_roster(&tx, round.project, &r.members, &r.history)?;
                store::set_config(&tx, round.project, &r.config)?;
                store::set_roster_version(&tx, round.project, r.version)?;
                // A section this store already has (it has a view, so its
                // document has heads) and that receives changes here is
                // recomputed by the merge below under the new roster: once is enough.
                let mut merged_later: HashSet<&str> = HashSet::new();
                for (section, arrival) in &arrivals {
                    if matches!(arrival, Arrival::Changes { .. }) && store::view(&tx, section)?.is_some() {
                        merged_later.insert(*section);
                    }
                }
                self.revalidate_project(&tx, round.project, &merged_later, &mut changed)?;
            }
        }
        let local_edits = store::local_edits(&tx)?;
        let me = self.actor();
        let mut rules: HashMap<String, (Roster, ProjectConfig)> = HashMap::new();
        let mut last_chunk = Vec::new();
        let mut arrivals = arrivals.into_iter().peekable();
        while arrivals.peek().is_some() {
            let chunk: Vec<_> = arrivals.by_ref().take(DOC_CACHE).collect();
            let mut merging = open_documents(&mut self.docs, &self.actor, &tx, chunk, &mut report)?;
            for m in &mut merging {
                // No heads: only changes whose dependencies have not arrived yet.
                m.input = (!m.doc.automerge().get_heads().is_empty()).then(|| m.doc.input());
            }
            for m in &mut merging {
                for (hash, bytes) in &m.rows {
                    store::put_change(&tx, m.section, hash, bytes, false, now as i64)?;
                }
                store::put_receipts(&tx, m.section, &m.receipts)?;
                if let Some(input) = &mut m.input {
                    input.received = store::receipts(&tx, m.section)?;
                }
            }
            for m in &merging {
                let Some(input) = &m.input else { continue };
                if !rules.contains_key(&input.project) {
                    let r = (store::roster(&tx, &input.project)?, store::config(&tx, &input.project)?);
                    rules.insert(input.project.clone(), r);
                }
                let (roster, config) = &rules[&input.project];
                for e in &input.edits {
                    self.clock.observe(&e.hlc, now);
                }
                let validated = validate(input, roster, config);
                // New heads are a new view (heads are part of it); the same heads
                // may still give another view if new receipt times moved a write.
                let view_changed = if m.doc.heads() != m.before {
                    report.sections_changed.push(m.section.to_owned());
                    store::put_view(&tx, &validated.view, now as i64)?;
                    true
                } else {
                    store::put_view_if_changed(&tx, &validated.view, now as i64)?
                };
                if view_changed {
                    changed.views.insert(m.section.to_owned());
                }
                if let Some(d) = m.whole {
                    store::set_snapshot(&tx, m.section, &d.document, &validated.view.heads)?;
                }
                if store::replace_conflicts(&tx, m.section, &validated.conflicts)? {
                    changed.conflicts.insert(m.section.to_owned());
                }
                if let Some(mine) = local_edits.get(m.section) {
                    let ids: Vec<EditId> = mine.iter().map(|(id, _)| id.clone()).collect();
                    report.reconciliation.extend(reconcile(m.section, &ids, &input.edits, &validated, roster, &me));
                }
            }
            last_chunk = merging;
        }
        if let Some(round) = &round {
            // Edits this round settled in sections it did not touch: their
            // fate is final now (the server has them), so say what it is.
            let confirmed: HashSet<&str> = round.confirmed.iter().map(String::as_str).collect();
            let reported: HashSet<&str> = report.reconciliation.iter().map(|r| r.section.as_str()).collect();
            let mut settled: Vec<(String, Vec<EditId>)> = Vec::new();
            for (section, mine) in &local_edits {
                let ids: Vec<EditId> = mine
                    .iter()
                    .filter(|(_, hash)| confirmed.contains(hash.as_str()))
                    .map(|(id, _)| id.clone())
                    .collect();
                if !ids.is_empty() && !reported.contains(section.as_str()) {
                    settled.push((section.clone(), ids));
                }
            }
            settled.sort();
            for (section, ids) in settled {
                let mut input = match self.docs.peek(&section) {
                    Some(doc) => doc.input(),
                    None => {
                        let Some((_, snapshot, changes)) = store::load_doc(&tx, &section)? else { continue };
                        SectionDoc::from_parts(snapshot.as_deref(), &changes)?.input()
                    }
                };
                input.received = store::receipts(&tx, &section)?;
                if !rules.contains_key(&input.project) {
                    let r = (store::roster(&tx, &input.project)?, store::config(&tx, &input.project)?);
                    rules.insert(input.project.clone(), r);
                }
                let (roster, config) = &rules[&input.project];
                let validated = validate(&input, roster, config);
                // Confirmed, our writes count from when the hub received them: the view may move.
                if store::put_view_if_changed(&tx, &validated.view, now as i64)? {
                    report.sections_changed.push(section.clone());
                    changed.views.insert(section.clone());
                }
                if store::replace_conflicts(&tx, &section, &validated.conflicts)? {
                    changed.conflicts.insert(section.clone());
                }
                report.reconciliation.extend(reconcile(&section, &ids, &input.edits, &validated, roster, &me));
            }
            changed.unsynced.extend(store::outbox_sections(&tx, round.confirmed)?);
            changed.status = true;
            store::confirm(&tx, round.confirmed)?;
            // After the confirmations: a section leaving the scope waits only for unconfirmed edits.
            settle_scope(&tx, &mut self.docs, round.project, &round.scope, &mut changed)?;
            store::set_cursor(&tx, round.project, round.cursor, now as i64)?;
        }
        self.save_clock(&tx)?;
        tx.commit()?;
        self.feed.publish(changed);
        // The documents a merge changes are taken out of the cache; the last
        // chunk's go back in, now that the store holds what they hold.
        for m in last_chunk {
            self.docs.put(m.section, m.doc);
        }
        Ok(report)
    }
}

/// The documents of a chunk with their changes applied: cached ones taken
/// out of the cache, stored ones read from SQLite first, then all loaded and
/// merged by Automerge.
fn open_documents<'a>(
    docs: &mut DocCache,
    actor: &ActorId,
    tx: &Transaction<'_>,
    chunk: Vec<(&'a str, Arrival<'a>)>,
    report: &mut MergeReport,
) -> Result<Vec<Merging<'a>>, ReplicaError> {
    let unloaded: Vec<&str> = chunk
        .iter()
        .filter(|(section, arrival)| matches!(arrival, Arrival::Changes { .. }) && !docs.contains(section))
        .map(|(section, _)| *section)
        .collect();
    let mut stored = store::load_docs(tx, &unloaded)?;
    let mut merging = Vec::with_capacity(chunk.len());
    for (section, arrival) in chunk {
        let (raw, parsed, mut receipts) = match arrival {
            Arrival::Whole(d) => {
                let mut doc = SectionDoc::load(&d.document)?;
                doc.set_actor(actor.clone());
                let receipts = document_receipts(&doc, d)?;
                report.new_changes += doc.automerge().get_changes(&[]).len();
                merging.push(Merging {
                    section,
                    doc,
                    before: vec![],
                    whole: Some(d),
                    rows: vec![],
                    receipts,
                    input: None,
                });
                continue;
            }
            Arrival::Changes { raw, parsed, receipts } => (raw, parsed, receipts),
        };
        let (mut doc, fresh) = match (docs.pop(section), stored.remove(section)) {
            (Some(cached), _) => (cached, false),
            // Only loose changes stored (their dependencies had not arrived): still new here.
            (None, Some((project, snapshot, loose))) => {
                (SectionDoc::from_parts(snapshot.as_deref(), &loose)?, project.is_empty())
            }
            (None, None) => (SectionDoc::empty(actor.clone()), true),
        };
        doc.set_actor(actor.clone());
        let mut batch = Vec::with_capacity(raw.len() + parsed.len());
        for (bytes, received) in raw {
            let change = Change::from_bytes(bytes.to_vec()).map_err(DocumentError::from)?;
            if received > 0 {
                receipts.push((hash_hex(&change.hash()), received));
            }
            batch.push(change);
        }
        batch.extend(parsed);
        // Store only what the document lacks: a change sent again after it
        // was folded into the snapshot must not come back as a loose row.
        let hashes: Vec<ChangeHash> = batch.iter().map(Change::hash).collect();
        let lacking: HashSet<ChangeHash> = doc.automerge().get_missing_deps(&hashes).into_iter().collect();
        let rows = batch
            .iter()
            .filter(|c| lacking.contains(&c.hash()))
            .map(|c| (hash_hex(&c.hash()), c.raw_bytes().to_vec()))
            .collect();
        let before = doc.heads();
        report.new_changes += doc.apply_changes(batch)?;
        if fresh && !doc.automerge().get_heads().is_empty() {
            doc.check_section()?;
        }
        merging.push(Merging { section, doc, before, whole: None, rows, receipts, input: None });
    }
    Ok(merging)
}

/// When the hub received each change of a whole document it sent: its
/// receipt times follow the changes' hashes in order (none: unknown).
fn document_receipts(doc: &SectionDoc, d: &SectionDocument) -> Result<Vec<(String, u64)>, ReplicaError> {
    if d.received.is_empty() {
        return Ok(Vec::new());
    }
    let hashes = doc.change_hashes();
    if hashes.len() != d.received.len() {
        return Err(ReplicaError::InvalidInput(format!(
            "the server sent section {} with {} receipt times for its {} changes",
            d.section,
            d.received.len(),
            hashes.len()
        )));
    }
    Ok(hashes.into_iter().zip(d.received.iter().copied()).collect())
}

/// What became of each unconfirmed local write (`mine`) of `section`.
fn reconcile(
    section: &str,
    mine: &[EditId],
    edits: &[Edit],
    validated: &Validated,
    roster: &Roster,
    me: &str,
) -> Vec<Reconciliation> {
    let by_id: HashMap<&str, &Edit> = edits.iter().map(|e| (e.id.as_str(), e)).collect();
    let candidate = |id: &Option<EditId>| {
        id.as_deref().and_then(|i| by_id.get(i)).map(|e| Candidate::of(e, roster, validated.counted_at(e)))
    };
    mine.iter()
        .map(|edit_id| {
            let field = by_id.get(edit_id.as_str()).and_then(|e| e.value.field());
            let outcome = match validated.decisions.get(edit_id) {
                Some(Decision::Rejected { rule, winner, reason }) => {
                    EditOutcome::Overridden { by: candidate(winner), rule: *rule, reason: reason.clone() }
                }
                Some(Decision::Superseded { by }) if by_id.get(by.as_str()).is_some_and(|e| e.author != me) => {
                    let rule = match field {
                        Some(Field::Progress) => Rule::ProgressMaxWins,
                        Some(Field::Location) => Rule::LocationLastWriterWins,
                        Some(Field::State) => Rule::TransitionPrecedence,
                        _ => Rule::LastWriterWins,
                    };
                    let by = candidate(&Some(by.clone()));
                    let reason = format!("replaced by {}", by.as_ref().map_or("a later write", |c| c.value.as_str()));
                    EditOutcome::Overridden { by, rule, reason }
                }
                _ => EditOutcome::Stands,
            };
            Reconciliation { edit_id: edit_id.clone(), section: section.to_owned(), field, outcome }
        })
        .collect()
}
