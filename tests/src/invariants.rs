//! The invariants, checked after the network healed and the outboxes
//! drained. The server is read through its public API (`Hub::section_view`,
//! `Hub::conflicts`, `Hub::roster`) and its store (`HubStore`, plus two
//! counting queries on `hub.db`); devices through the `Replica` API.
//!
//! The rules are checked against small oracles written here from the design
//! brief (progress only falls by a foreman or office, the state machine's
//! permissions, a flat-earth distance to the route), not by calling the
//! production rules again.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use fieldsync_core::{
    AuditEntry, ConflictRecord, ConstructionState, Coverage, Decision, Field, HeldBecause, Hlc, Member, ProjectConfig,
    Replica, Role, RoleChange, Roster, Scope, SectionDoc, SectionView, validate,
};
use fieldsync_server::{Hub, HubStore, SqliteHubStore};

use crate::report::{Invariant, Violation};
use crate::sim::{FNV_START, fnv};
use crate::workload::distance_m;

/// An edit a device's API acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// Its section.
    pub section: String,
    /// Hex hash of the change holding it.
    pub hash: String,
    /// Which install of the app made it.
    pub install: u32,
    /// Wiped by a reinstall before the server confirmed it.
    pub wiped: bool,
}

/// A device as the checks see it.
#[derive(Debug)]
pub struct Subject<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its store (None: it could not be reopened).
    pub replica: Option<&'a Arc<Mutex<Replica>>>,
    /// Whether it was revoked.
    pub revoked: bool,
    /// Whether its user was removed from the project and not added back:
    /// like a revoked device, it cannot sync any more.
    pub removed: bool,
    /// What its API acknowledged.
    pub acks: &'a [Ack],
}

/// What the checks found.
#[derive(Debug, Default)]
pub struct Checked {
    /// Sections on the server.
    pub sections: usize,
    /// Server conflict records by kind.
    pub conflicts_by_kind: BTreeMap<String, u64>,
    /// Server conflict records by rule.
    pub conflicts_by_rule: BTreeMap<String, u64>,
    /// Points still quarantined.
    pub quarantined: u64,
    /// Changes on the server.
    pub changes: u64,
    /// Their raw size.
    pub changes_raw_bytes: u64,
    /// Their size deflated together.
    pub changes_deflated_bytes: u64,
    /// Digest of the server's views and conflicts.
    pub digest: String,
    /// Changes of the devices the server refused.
    pub refused_changes: u64,
    /// Writes on the server stamped later than `server_now_ms`.
    pub stamped_ahead: u64,
    /// Last-writer-wins contests a write stamped ahead of its receipt would
    /// have won by its stamp against one the hub received later (`rules`
    /// checks it did not).
    pub ahead_contests: u64,
    /// What broke.
    pub violations: Vec<Violation>,
}

struct Found(Vec<Violation>);

impl Found {
    fn add(&mut self, invariant: Invariant, detail: String) {
        // Enough to act on; a broken run can otherwise report thousands.
        if self.0.iter().filter(|v| v.invariant == invariant).count() < 8 {
            self.0.push(Violation { invariant, detail });
        }
    }
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// The top-level fields where two JSON objects differ, for messages.
fn differing_fields(a: &str, b: &str) -> String {
    let (Ok(serde_json::Value::Object(x)), Ok(serde_json::Value::Object(y))) =
        (serde_json::from_str::<serde_json::Value>(a), serde_json::from_str::<serde_json::Value>(b))
    else {
        return "unreadable".into();
    };
    let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
    keys.into_iter()
        .filter(|k| x.get(*k) != y.get(*k))
        .map(|k| {
            let show = |v: Option<&serde_json::Value>| {
                let s = v.map_or("-".into(), |v| v.to_string());
                if s.len() > 80 { format!("{}…", &s[..s.char_indices().nth(77).map_or(s.len(), |c| c.0)]) } else { s }
            };
            format!("{k}: device {} / server {}", show(x.get(k)), show(y.get(k)))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Run every check. `roles` is the role history as the administrator made
/// it (the rules oracle judges each write under its author's role at its
/// stamp by it); `None`: the hub's own. `server_now_ms` is the hub's time at
/// the end of the run.
pub fn check(
    hub: Option<&Hub>,
    hub_dir: &Path,
    project: &str,
    subjects: &[Subject<'_>],
    roles: Option<&[RoleChange]>,
    server_now_ms: u64,
) -> Checked {
    let mut out = Checked::default();
    let mut found = Found(Vec::new());
    let Some(hub) = hub else {
        found.add(Invariant::Liveness, "no hub instance is up at the end".into());
        out.violations = found.0;
        return out;
    };
    let mut store = match SqliteHubStore::open(hub_dir) {
        Ok(s) => s,
        Err(e) => {
            found.add(Invariant::NoUnexpectedError, format!("cannot open the hub's store: {e}"));
            out.violations = found.0;
            return out;
        }
    };

    // ---- the server's state ----
    let ids = store.sections_after(project, "", usize::MAX).unwrap_or_default();
    out.sections = ids.len();
    let mut docs: BTreeMap<String, (SectionDoc, BTreeMap<String, u64>)> = BTreeMap::new();
    let mut change_sets: HashMap<String, HashSet<String>> = HashMap::new();
    let mut views: BTreeMap<String, String> = BTreeMap::new();
    // What subscriptions judge each section on, as the server decided it.
    let mut coverages: BTreeMap<String, Coverage> = BTreeMap::new();
    let mut raw_all = Vec::new();
    for id in &ids {
        let (doc, received) = match store.section(id) {
            Ok(Some(s)) => (SectionDoc::from_parts(s.snapshot.as_deref(), &s.changes), s.received),
            Ok(None) => continue,
            Err(e) => {
                found.add(Invariant::NoUnexpectedError, format!("server section {id} unreadable: {e}"));
                continue;
            }
        };
        let doc = match doc {
            Ok(d) => d,
            Err(e) => {
                found.add(Invariant::NoUnexpectedError, format!("server section {id} does not load: {e}"));
                continue;
            }
        };
        let changes = doc.automerge().get_changes(&[]);
        out.changes += changes.len() as u64;
        for c in &changes {
            raw_all.extend_from_slice(c.raw_bytes());
        }
        change_sets.insert(id.clone(), changes.iter().map(|c| c.hash().to_string()).collect());
        out.stamped_ahead += doc.edits().iter().filter(|e| e.hlc.physical_ms > server_now_ms).count() as u64;
        match hub.section_view(id) {
            Ok(Some(view)) => {
                let mut heads: Vec<String> = doc.heads().iter().map(ToString::to_string).collect();
                heads.sort();
                let mut shown = view.heads.clone();
                shown.sort();
                if heads != shown {
                    found.add(
                        Invariant::Convergence,
                        format!("server section {id}: its view was computed from other heads than its document's"),
                    );
                }
                out.quarantined += view.quarantined.len() as u64;
                coverages.insert(id.clone(), view.coverage());
                views.insert(id.clone(), json(&view));
            }
            Ok(None) => found.add(Invariant::Convergence, format!("server section {id} has no view")),
            Err(e) => found.add(Invariant::NoUnexpectedError, format!("server view of {id}: {e}")),
        }
        docs.insert(id.clone(), (doc, received));
    }
    out.changes_raw_bytes = raw_all.len() as u64;
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = z.write_all(&raw_all);
    out.changes_deflated_bytes = z.finish().map_or(0, |b| b.len() as u64);

    let mut conflicts: Vec<ConflictRecord> = hub.conflicts(project).unwrap_or_default();
    conflicts.sort_by(|a, b| a.id.cmp(&b.id));
    for c in &conflicts {
        *out.conflicts_by_kind.entry(json(&c.kind).trim_matches('"').to_owned()).or_default() += 1;
        *out.conflicts_by_rule.entry(c.rule.as_str().to_owned()).or_default() += 1;
    }
    let server_conflicts: Vec<String> = conflicts.iter().map(json).collect();
    let mut members: Vec<Member> = hub.roster(project).unwrap_or_default();
    members.sort_by(|a, b| a.actor.cmp(&b.actor));
    // The roster as the hub judges with it: its members and their role history.
    let hub_history = store.role_history(project).unwrap_or_default();
    let hub_roster = Roster::new(members.clone()).with_history(hub_history);
    let history = hub_roster.history();
    let config = hub
        .list_projects()
        .ok()
        .and_then(|ps| ps.into_iter().find(|p| p.id == project).map(|p| p.config))
        .unwrap_or_default();

    let mut digest = FNV_START;
    for (id, v) in &views {
        digest = fnv(v.as_bytes(), fnv(id.as_bytes(), digest));
    }
    for c in &server_conflicts {
        digest = fnv(c.as_bytes(), digest);
    }
    out.digest = format!("{digest:016x}");

    // ---- idempotence on the server: each change once on the feed ----
    match rusqlite::Connection::open(hub_dir.join("hub.db")).and_then(|c| {
        c.query_row(
            "SELECT count(*), count(DISTINCT section || ' ' || hash) FROM feed WHERE project = ?1",
            [project],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
        )
    }) {
        Ok((rows, distinct)) => {
            if rows != distinct || rows as u64 != out.changes {
                found.add(
                    Invariant::Idempotence,
                    format!(
                        "the server's feed holds {rows} rows for {distinct} distinct changes, its documents {} changes",
                        out.changes
                    ),
                );
            }
        }
        Err(e) => found.add(Invariant::NoUnexpectedError, format!("counting the feed: {e}")),
    }

    // ---- every device against the server ----
    for s in subjects {
        let Some(replica) = s.replica else {
            if !s.revoked {
                found.add(Invariant::Liveness, format!("{}: its store is not open at the end", s.name));
            }
            continue;
        };
        let r = replica.lock().unwrap_or_else(|p| p.into_inner());
        out.refused_changes += r.sync_status().map_or(0, |x| x.refused_changes.max(0) as u64);
        check_no_lost_edit(s, &r, &change_sets, &mut found);
        check_idempotence(s, &r, &mut found);
        if s.revoked || s.removed {
            continue;
        }
        match r.scope(project) {
            Ok(Scope::Everything) => {}
            Ok(scope) => {
                // A partial replica: what it holds, and each held section against the server's.
                let server = Server { ids: &ids, coverages: &coverages, views: &views, conflicts: &conflicts };
                check_partial(s, &r, project, &scope, &server, &mut found);
                check_roster(s, &r, project, &members, &history, &mut found);
                continue;
            }
            Err(e) => {
                found.add(Invariant::NoUnexpectedError, format!("{}: reading its scope: {e}", s.name));
                continue;
            }
        }
        let local: Vec<String> = match r.list_sections(Some(project), None, usize::MAX) {
            Ok(list) => list.into_iter().map(|x| x.id).collect(),
            Err(e) => {
                found.add(Invariant::NoUnexpectedError, format!("{}: listing sections: {e}", s.name));
                continue;
            }
        };
        if local != ids {
            let (l, srv): (BTreeSet<_>, BTreeSet<_>) = (local.iter().collect(), ids.iter().collect());
            found.add(
                Invariant::Convergence,
                format!(
                    "{}: sections missing {:?}, extra {:?}",
                    s.name,
                    srv.difference(&l).take(5).collect::<Vec<_>>(),
                    l.difference(&srv).take(5).collect::<Vec<_>>()
                ),
            );
        }
        check_views(s.name, &r, views.iter(), &mut found);
        let mut mine: Vec<ConflictRecord> = r.conflicts(None).unwrap_or_default();
        mine.sort_by(|a, b| a.id.cmp(&b.id));
        let mine: Vec<String> = mine.iter().map(json).collect();
        if mine != server_conflicts {
            found.add(
                Invariant::Convergence,
                format!(
                    "{}: {} conflict records, the server {} ({} differ)",
                    s.name,
                    mine.len(),
                    server_conflicts.len(),
                    mine.iter().filter(|c| !server_conflicts.contains(c)).count()
                ),
            );
        }
        check_roster(s, &r, project, &members, &history, &mut found);
    }

    // ---- the rules, on the server's views ----
    // Each write is judged under the role its author held at its stamp, by
    // the role history the administrator made (not the hub's copy of it).
    let oracle = match roles {
        Some(changes) => Roster::new(members.clone()).with_history(changes.iter().cloned()),
        None => hub_roster.clone(),
    };
    for (id, (doc, received)) in &docs {
        let Some(view) = views.get(id).and_then(|v| serde_json::from_str::<SectionView>(v).ok()) else { continue };
        let mut input = doc.input();
        input.received = received.clone();
        out.ahead_contests += check_rules(&view, &input, &hub_roster, &oracle, &config, &mut found);
    }
    out.violations = found.0;
    out
}

/// The device's roster and role history against the server's.
fn check_roster(
    s: &Subject<'_>,
    r: &Replica,
    project: &str,
    members: &[Member],
    history: &[RoleChange],
    found: &mut Found,
) {
    let local = r.roster(project).unwrap_or_default();
    let mut roster: Vec<Member> = local.members().cloned().collect();
    roster.sort_by(|a, b| a.actor.cmp(&b.actor));
    if roster == members && local.history() != history {
        found.add(
            Invariant::Convergence,
            format!(
                "{}: the roster's role history differs from the server's ({} changes, the server {})",
                s.name,
                local.history().len(),
                history.len()
            ),
        );
    }
    if roster != members {
        let show = |m: &Member| format!("{} ({}, {})", m.user, m.role.as_str(), &m.actor[..m.actor.len().min(8)]);
        let missing: Vec<String> = members.iter().filter(|m| !roster.contains(m)).map(show).collect();
        let extra: Vec<String> = roster.iter().filter(|m| !members.contains(m)).map(show).collect();
        found.add(
            Invariant::Convergence,
            format!(
                "{}: roster of {} members, the server's {} (missing {missing:?}, extra {extra:?}, its roster version {})",
                s.name,
                roster.len(),
                members.len(),
                r.connection()
                    .query_row("SELECT roster_version FROM sync_state WHERE project = ?1", [project], |x| x.get::<_, i64>(0))
                    .unwrap_or(-1)
            ),
        );
    }
}

/// The server's state a partial replica is checked against.
struct Server<'a> {
    ids: &'a [String],
    coverages: &'a BTreeMap<String, Coverage>,
    views: &'a BTreeMap<String, String>,
    conflicts: &'a [ConflictRecord],
}

/// A device whose scope is not everything: it holds exactly the sections
/// its scope covers on the server (`scope_holdings`; plus those it keeps for
/// local changes the server has not taken, which `liveness` wants gone after
/// the heal), its change of scope is finished, and each section it holds has
/// the server's view and conflict records (`convergence`).
fn check_partial(s: &Subject<'_>, r: &Replica, project: &str, scope: &Scope, server: &Server<'_>, found: &mut Found) {
    let holdings = match r.holdings(project) {
        Ok(h) => h,
        Err(e) => return found.add(Invariant::NoUnexpectedError, format!("{}: its holdings: {e}", s.name)),
    };
    let held: BTreeSet<&str> = holdings.iter().map(|h| h.section.as_str()).collect();
    let unsynced: BTreeSet<&str> = holdings
        .iter()
        .filter(|h| h.reasons.contains(&HeldBecause::UnsyncedEdits))
        .map(|h| h.section.as_str())
        .collect();
    let covered: BTreeSet<&str> = server
        .ids
        .iter()
        .filter(|id| scope.covers(id, &server.coverages.get(*id).cloned().unwrap_or_default()))
        .map(String::as_str)
        .collect();
    let missing: Vec<&&str> = covered.difference(&held).collect();
    let extra: Vec<&&str> = held.difference(&covered).filter(|id| !unsynced.contains(**id)).collect();
    if !missing.is_empty() || !extra.is_empty() {
        found.add(
            Invariant::ScopeHoldings,
            format!(
                "{}: holds {} sections, its scope covers {} of the server's: {} covered missing {:?}, {} uncovered held {:?}",
                s.name,
                held.len(),
                covered.len(),
                missing.len(),
                missing.iter().take(5).collect::<Vec<_>>(),
                extra.len(),
                extra.iter().take(5).collect::<Vec<_>>()
            ),
        );
    }
    if !crate::sim::scope_settled(r) {
        found.add(Invariant::ScopeHoldings, format!("{}: its change of scope is not finished after the heal", s.name));
    }
    let held_views = held.iter().filter_map(|id| server.views.get_key_value(*id));
    check_views(&format!("{} (partial scope)", s.name), r, held_views, found);
    let mut mine: Vec<ConflictRecord> = r.conflicts(None).unwrap_or_default();
    mine.sort_by(|a, b| a.id.cmp(&b.id));
    let mine: Vec<String> = mine.iter().map(json).collect();
    let theirs: Vec<String> = server.conflicts.iter().filter(|c| held.contains(c.section.as_str())).map(json).collect();
    if mine != theirs {
        found.add(
            Invariant::Convergence,
            format!(
                "{} (partial scope): {} conflict records, the server {} for the {} sections it holds ({} differ)",
                s.name,
                mine.len(),
                theirs.len(),
                held.len(),
                mine.iter().filter(|c| !theirs.contains(c)).count()
            ),
        );
    }
}

/// Every one of `views` (id, the server's view as JSON) is the replica's
/// view of that section; a section it lacks is another check's to report.
fn check_views<'a>(name: &str, r: &Replica, views: impl Iterator<Item = (&'a String, &'a String)>, found: &mut Found) {
    let mut bad_views = 0;
    for (id, server_view) in views {
        let Ok(view) = r.section(id) else { continue };
        let mine = json(&view);
        if &mine != server_view {
            bad_views += 1;
            if bad_views == 1 {
                found.add(
                    Invariant::Convergence,
                    format!(
                        "{name}: section {id} differs from the server's ({})",
                        differing_fields(&mine, server_view)
                    ),
                );
            }
        }
    }
    if bad_views > 1 {
        found.add(Invariant::Convergence, format!("{name}: {bad_views} sections differ from the server's"));
    }
}

fn check_no_lost_edit(s: &Subject<'_>, r: &Replica, server: &HashMap<String, HashSet<String>>, found: &mut Found) {
    let status = r.sync_status().unwrap_or_default();
    if status.refused_changes > 0 && !s.revoked {
        found.add(
            Invariant::NoLostEdit,
            format!(
                "{}: the server refused {} of its changes ({:?})",
                s.name, status.refused_changes, status.last_error
            ),
        );
    }
    let mut missing = Vec::new();
    for a in s.acks.iter().filter(|a| !a.wiped) {
        if server.get(&a.section).is_some_and(|set| set.contains(&a.hash)) {
            continue;
        }
        if s.revoked || s.removed {
            // Stranded by the revocation (or the removal): it must still be
            // on the device, and the device must have been told why.
            let kept: i64 = r
                .connection()
                .query_row(
                    "SELECT count(*) FROM changes WHERE section = ?1 AND hash = ?2",
                    [&a.section, &a.hash],
                    |x| x.get(0),
                )
                .unwrap_or(0);
            // Told it is cut off, for either reason: a device whose user was
            // removed stops syncing at the 403 and never hears of a later
            // revocation (nor of its user being added back).
            let told =
                status.last_error.as_deref().is_some_and(|e| e.contains("revoked") || e.contains("not a member"));
            if kept == 1 && told {
                continue;
            }
        }
        missing.push(format!("{} in {}", &a.hash[..a.hash.len().min(12)], a.section));
    }
    if !missing.is_empty() {
        found.add(
            Invariant::NoLostEdit,
            format!(
                "{}: {} acknowledged edit(s) not on the server{}: {}",
                s.name,
                missing.len(),
                if s.revoked || s.removed { " nor kept on the cut-off device with its refusal" } else { "" },
                missing.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
            ),
        );
    }
}

fn check_idempotence(s: &Subject<'_>, r: &Replica, found: &mut Found) {
    match r.connection().query_row("SELECT count(*), count(DISTINCT section || ' ' || hash) FROM changes", [], |x| {
        Ok((x.get::<_, i64>(0)?, x.get::<_, i64>(1)?))
    }) {
        Ok((rows, distinct)) if rows != distinct => {
            found.add(Invariant::Idempotence, format!("{}: {rows} change rows for {distinct} changes", s.name))
        }
        Ok(_) => {}
        Err(e) => found.add(Invariant::NoUnexpectedError, format!("{}: counting changes: {e}", s.name)),
    }
}

/// Whether `role` may move a section `from` → `to`, per the design brief: a
/// technician one step forward or into `blocked` (with a reason); a foreman
/// or office anywhere, but a completed section is not blocked and a blocked
/// one goes back only to where it was.
fn transition_allowed(
    role: Role,
    from: ConstructionState,
    to: ConstructionState,
    resume: Option<ConstructionState>,
) -> bool {
    use ConstructionState::*;
    if from == to || (from == Completed && to == Blocked) {
        return false;
    }
    if from == Blocked {
        return role >= Role::Foreman && Some(to) == resume;
    }
    if to == Blocked {
        return true;
    }
    let forward_one = matches!((from.step(), to.step()), (Some(a), Some(b)) if b == a + 1);
    forward_one || role >= Role::Foreman
}

/// The latest a write can have been made, by the brief: its stamp, or when
/// the hub received it if that is earlier (a clock ahead does not push it
/// into the future).
fn bound(input: &fieldsync_core::SectionInput, e: &fieldsync_core::Edit) -> u64 {
    let received = input.received.get(&e.change_hash).copied().filter(|&ms| ms > 0);
    received.map_or(e.hlc.physical_ms, |r| r.min(e.hlc.physical_ms))
}

/// When each write counts, by the brief: its bound, and never earlier than
/// the writes it was built on (its `base`, directly or not) as long as the hub
/// had each of those by the time it had the write. Written apart from core's
/// rules: it walks each chain.
fn counted_times(input: &fieldsync_core::SectionInput) -> HashMap<&str, u64> {
    let by_id: HashMap<&str, &fieldsync_core::Edit> = input.edits.iter().map(|e| (e.id.as_str(), e)).collect();
    let received = |e: &fieldsync_core::Edit| input.received.get(&e.change_hash).copied().filter(|&ms| ms > 0);
    let mut out = HashMap::new();
    for e in &input.edits {
        let mut at = bound(input, e);
        let (mut seen, mut cur) = (HashSet::from([e.id.as_str()]), e);
        while let Some(b) = cur.base.as_deref().and_then(|b| by_id.get(b)) {
            let had_it = match (received(b), received(cur)) {
                (_, None) => true,
                (Some(rb), Some(rc)) => rb <= rc,
                (None, Some(_)) => false,
            };
            if !had_it || !seen.insert(b.id.as_str()) {
                break;
            }
            at = at.max(bound(input, b));
            cur = *b;
        }
        out.insert(e.id.as_str(), at);
    }
    out
}

/// Check the rules over one section; returns how many last-writer-wins
/// contests a clock ahead would have won by its stamp it looked at.
fn check_rules(
    view: &SectionView,
    input: &fieldsync_core::SectionInput,
    roster: &Roster,
    oracle: &Roster,
    config: &ProjectConfig,
    found: &mut Found,
) -> u64 {
    let id = &view.id;
    let audit = validate(input, roster, config).audit(input, roster);
    let in_order = |field: Field| -> Vec<&fieldsync_core::AuditEntry> {
        let order = causal_order(input, field);
        let mut entries: Vec<_> = audit.iter().filter(|e| e.field == Some(field)).collect();
        entries.sort_by_key(|e| order.get(e.edit_id.as_str()).copied().unwrap_or(usize::MAX));
        entries
    };
    let counted = counted_times(input);
    let role_at_counted =
        |actor: &str, edit_id: &str| oracle.role_at(actor, counted.get(edit_id).copied().unwrap_or(u64::MAX));
    let role_of = |e: &AuditEntry| role_at_counted(&e.author, &e.edit_id);
    let edit = |edit_id: &str| input.edits.iter().find(|x| x.id == edit_id);
    let bound_of = |edit_id: &str| edit(edit_id).map_or(u64::MAX, |e| bound(input, e));

    // Each write is judged under the role its author held when it counts.
    if let Some(e) = audit.iter().find(|e| e.field.is_some() && e.role != role_of(e)) {
        found.add(
            Invariant::Rules,
            format!(
                "section {id}: {} by {:?} was judged as a {:?}, but its author was a {:?} when it counts",
                e.value,
                e.user,
                e.role,
                role_of(e)
            ),
        );
    }

    // Nothing a non-member wrote (removed at the time, or never in the roster) applies.
    for e in audit.iter().filter(|e| e.decision.applied() && e.field.is_some()) {
        if role_of(e).is_none() {
            found.add(
                Invariant::Rules,
                format!("section {id}: {} by {:?}, not a member when it counts, applied", e.value, e.user),
            );
        }
    }

    // Progress: applied writes in causal order; a fall needs a foreman or office.
    let mut last: Option<i64> = None;
    for e in in_order(Field::Progress).into_iter().filter(|e| e.decision.applied()) {
        let v: i64 = e.value.trim_end_matches('%').parse().unwrap_or(-1);
        if let Some(prev) = last
            && v < prev
            && role_of(e).is_none_or(|r| r < Role::Foreman)
        {
            found.add(Invariant::Rules, format!("section {id}: progress fell {prev}% → {v}% by a {:?}", role_of(e)));
        }
        if !matches!(e.decision, Decision::Concurred { .. }) {
            last = Some(v);
        }
    }
    if i64::from(view.progress) != last.unwrap_or(0) {
        found.add(
            Invariant::Rules,
            format!("section {id}: shows {}% but its last applied progress is {last:?}", view.progress),
        );
    }

    // Transitions: a chain from `planned`, each allowed for its author's role when it counts.
    let mut state = ConstructionState::Planned;
    let mut resume = None;
    for ev in &view.events {
        let role = role_at_counted(&ev.author, &ev.edit_id).unwrap_or(Role::Technician);
        if ev.from != state || !transition_allowed(role, ev.from, ev.to, resume) {
            found.add(
                Invariant::Rules,
                format!("section {id}: transition {:?} → {:?} by a {role:?} from {state:?}", ev.from, ev.to),
            );
        }
        resume = (ev.to == ConstructionState::Blocked).then_some(ev.from);
        state = ev.to;
    }
    if view.state != state {
        found.add(
            Invariant::Rules,
            format!("section {id}: shows {:?} but its transitions end at {state:?}", view.state),
        );
    }

    // Points: on the route, or accepted by a foreman or office.
    let acceptors: HashMap<&str, Option<Role>> = audit
        .iter()
        .filter(|e| e.field == Some(Field::Acceptance) && e.decision == Decision::Accepted)
        .map(|e| (e.edit_id.as_str(), role_of(e)))
        .collect();
    let limit = config.max_route_distance_m;
    for p in &view.as_built {
        let Some(d) = distance_m(p.point, &view.route) else { continue };
        if d > limit * 1.03 {
            let ok = p
                .accepted_by
                .as_deref()
                .and_then(|a| acceptors.get(a))
                .is_some_and(|r| r.is_some_and(|r| r >= Role::Foreman));
            if !ok {
                found.add(
                    Invariant::Rules,
                    format!("section {id}: a point {d:.0} m off route shows, not accepted by a foreman"),
                );
            }
        }
    }
    for q in &view.quarantined {
        if distance_m(q.point, &view.route).is_some_and(|d| d < limit * 0.97) {
            found.add(Invariant::Rules, format!("section {id}: a point on the route is quarantined"));
        }
    }

    // Name and route: only office writes apply, and the latest stands.
    for e in audit.iter().filter(|e| matches!(e.field, Some(Field::Name | Field::Route)) && e.decision.applied()) {
        if role_of(e) != Some(Role::Office) {
            found.add(Invariant::Rules, format!("section {id}: a {:?} write by a {:?} applied", e.field, role_of(e)));
        }
    }
    let latest_name = in_order(Field::Name).into_iter().rev().find(|e| e.decision.applied());
    if latest_name.is_some_and(|e| e.value != format!("name {:?}", view.name)) {
        found.add(Invariant::Rules, format!("section {id}: shows name {:?}, not its latest office write", view.name));
    }

    // Concurrent transitions: the higher role, then the later time (stamp
    // bounded by receipt), then the later stamp, wins.
    let by_id: HashMap<&str, &fieldsync_core::AuditEntry> = audit.iter().map(|e| (e.edit_id.as_str(), e)).collect();
    for e in &audit {
        if let Decision::Rejected { rule: fieldsync_core::Rule::TransitionPrecedence, winner: Some(w), .. } =
            &e.decision
            && let Some(w) = by_id.get(w.as_str())
            && (role_of(w), bound_of(&w.edit_id), w.edit_id.as_str())
                < (role_of(e), bound_of(&e.edit_id), e.edit_id.as_str())
        {
            found.add(
                Invariant::Rules,
                format!("section {id}: {} by a {:?} beat {} by a {:?}", w.value, role_of(w), e.value, role_of(e)),
            );
        }
    }

    // Location: the latest valid point (as-built points are in the order they count).
    if view.location.as_ref() != view.as_built.last() {
        found.add(Invariant::Rules, format!("section {id}: its location is not its latest valid point"));
    }

    // No clock decides: a write stamped ahead of when the hub received it
    // does not stand over a valid write the hub received later, stamped
    // after it had the first, that it was not built on and nothing builds on.
    let mut contests = 0;
    for field in [Field::Name, Field::Route, Field::Location] {
        let applied: Vec<&fieldsync_core::Edit> = audit
            .iter()
            .filter(|a| a.field == Some(field) && a.decision.applied())
            .filter_map(|a| edit(&a.edit_id))
            .collect();
        let received = |e: &fieldsync_core::Edit| input.received.get(&e.change_hash).copied().filter(|&ms| ms > 0);
        let built_on = |e: &fieldsync_core::Edit| {
            input.edits.iter().any(|x| x.value.field() == Some(field) && x.base.as_deref() == Some(e.id.as_str()))
        };
        let ancestors = |e: &fieldsync_core::Edit| {
            let mut seen: HashSet<String> = HashSet::new();
            let mut at = e.base.clone();
            while let Some(b) = at.filter(|b| seen.insert(b.clone())) {
                at = edit(&b).and_then(|x| x.base.clone());
            }
            seen
        };
        for a in &applied {
            let Some(ra) = received(a).filter(|&ra| a.hlc.physical_ms > ra) else { continue };
            for x in &applied {
                let Some(rx) = received(x) else { continue };
                let later = rx > ra && x.hlc.physical_ms <= rx && x.hlc.physical_ms > ra;
                if !later || x.hlc.physical_ms >= a.hlc.physical_ms || built_on(x) || ancestors(a).contains(&x.id) {
                    continue;
                }
                contests += 1;
                if audit.iter().any(|e| e.edit_id == a.id && e.decision == Decision::Accepted) {
                    found.add(
                        Invariant::Rules,
                        format!(
                            "section {id}: {} stamped {} ms past its receipt stands over {}, received later",
                            a.value.describe(),
                            a.hlc.physical_ms - ra,
                            x.value.describe()
                        ),
                    );
                }
            }
        }
    }
    contests
}

/// The order in which a field's writes count, computed here apart from
/// core's rules: by stamp bounded by receipt, then stamp, except that a write
/// counts no later than any write built on it (its `base`, directly or not),
/// and before it on a tie. Quadratic, which is fine for a simulated day's sections.
fn causal_order(input: &fieldsync_core::SectionInput, field: Field) -> HashMap<&str, usize> {
    let edits: Vec<&fieldsync_core::Edit> = input.edits.iter().filter(|e| e.value.field() == Some(field)).collect();
    // The earliest time among a write and every write built on it.
    let mut effective: HashMap<&str, (u64, &fieldsync_core::Hlc)> =
        edits.iter().map(|e| (e.id.as_str(), (bound(input, e), &e.hlc))).collect();
    let depth = |e: &fieldsync_core::Edit| {
        let mut d = 0;
        let mut at = e.base.as_deref();
        while let Some(b) = at.filter(|_| d <= edits.len()) {
            d += 1;
            at = edits.iter().find(|x| x.id == b).and_then(|x| x.base.as_deref());
        }
        d
    };
    loop {
        let mut changed = false;
        for e in &edits {
            if let Some(base) = e.base.as_deref()
                && let (Some(&mine), Some(&theirs)) = (effective.get(e.id.as_str()), effective.get(base))
                && mine < theirs
            {
                effective.insert(base, mine);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut keyed: Vec<((u64, &fieldsync_core::Hlc), usize, &str)> =
        edits.iter().map(|e| (effective[e.id.as_str()], depth(e), e.id.as_str())).collect();
    keyed.sort();
    keyed.into_iter().enumerate().map(|(i, (_, _, id))| (id, i)).collect()
}

/// What the hub holds at one moment, for [`compare_audits`]: each write with
/// what the rules over the hub's documents and role history make of it.
#[derive(Debug, Default)]
pub struct HubAudit {
    /// edit id → (section, the write's audit entry).
    pub writes: BTreeMap<String, (String, AuditEntry)>,
    /// Sections whose stored conflict records are not the rules' over their
    /// document and the hub's roster and role history (a hub that
    /// materialized them with another roster), with what differs.
    pub stale_conflicts: Vec<String>,
}

/// Read the hub's documents, roster and role history from its store and
/// compute every write's decision, as every replica does; and compare the
/// conflict records the hub stored with the rules' own.
pub fn hub_audit(hub: &Hub, hub_dir: &Path, project: &str) -> Result<HubAudit, String> {
    let mut store = SqliteHubStore::open(hub_dir).map_err(|e| format!("the hub's store: {e}"))?;
    let roster = Roster::new(store.roster(project).map_err(|e| e.to_string())?)
        .with_history(store.role_history(project).map_err(|e| e.to_string())?);
    let config = store.project(project).map_err(|e| e.to_string())?.map(|p| p.config).unwrap_or_default();
    let mut stored: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for c in hub.conflicts(project).map_err(|e| e.to_string())? {
        stored.entry(c.section.clone()).or_default().insert(json(&c));
    }
    let mut out = HubAudit::default();
    for id in store.sections_after(project, "", usize::MAX).map_err(|e| e.to_string())? {
        let Some(s) = store.section(&id).map_err(|e| e.to_string())? else { continue };
        let doc = SectionDoc::from_parts(s.snapshot.as_deref(), &s.changes).map_err(|e| format!("{id}: {e}"))?;
        let mut input = doc.input();
        input.received = s.received;
        let validated = validate(&input, &roster, &config);
        let ours: BTreeSet<String> = validated.conflicts.iter().map(json).collect();
        let theirs = stored.remove(&id).unwrap_or_default();
        if ours != theirs {
            let describe = |c: &String| {
                serde_json::from_str::<ConflictRecord>(c)
                    .map_or_else(|_| "?".into(), |c| format!("{} {}", c.rule.as_str(), c.explanation))
            };
            let missing: Vec<String> = ours.difference(&theirs).take(2).map(describe).collect();
            let extra: Vec<String> = theirs.difference(&ours).take(2).map(describe).collect();
            out.stale_conflicts.push(format!("section {id}: missing {missing:?}, stored instead {extra:?}"));
        }
        for e in validated.audit(&input, &roster) {
            out.writes.insert(e.edit_id.clone(), (id.clone(), e));
        }
    }
    Ok(out)
}

/// What a roster change did to the writes the hub held before it: every one
/// whose decision or judged role changed re-decided history.
#[derive(Debug, Default)]
pub struct AuditChange {
    /// Writes stamped before the change, in words.
    pub redecided: Vec<String>,
    /// Writes stamped at or after the change (ahead of the hub's clock when
    /// it stored them), in words; with the writes of their sections that
    /// changed with them. Counted apart (`SimReport::redecided_ahead`).
    pub redecided_ahead: Vec<String>,
}

/// Compare each write's decision and judged role before and after the role
/// change `change` (made at `change.at_ms`, hub time). No write arrives in
/// between: every write of `before` is in `after`.
pub fn compare_audits(before: &HubAudit, after: &HubAudit, change: &RoleChange) -> AuditChange {
    let mut out = AuditChange::default();
    let differs = |a: &AuditEntry, b: &AuditEntry| a.role != b.role || json(&a.decision) != json(&b.decision);
    let stamp = |id: &str| id.parse::<Hlc>().map_or(u64::MAX, |h| h.physical_ms);
    // Sections where a write stamped ahead of the change was re-decided: the
    // writes built on it may follow.
    let ahead_sections: BTreeSet<&str> = before
        .writes
        .iter()
        .filter(|(id, (_, a))| stamp(id) >= change.at_ms && after.writes.get(*id).is_some_and(|(_, b)| differs(a, b)))
        .map(|(_, (section, _))| section.as_str())
        .collect();
    for (id, (section, a)) in &before.writes {
        let Some((_, b)) = after.writes.get(id) else {
            out.redecided.push(format!("section {section}: write {id} vanished after the role change"));
            continue;
        };
        if !differs(a, b) {
            continue;
        }
        let role = |r: Option<Role>| r.map_or("non-member", Role::as_str);
        let what = format!(
            "section {section}: {} by {} (stamp {}) was {} as a {} before {} became {} at {}, {} as a {} after",
            a.value,
            a.user.as_deref().unwrap_or("?"),
            stamp(id),
            decision_word(&a.decision),
            role(a.role),
            change.user,
            change.role.map_or("removed", Role::as_str),
            change.at_ms,
            decision_word(&b.decision),
            role(b.role)
        );
        if stamp(id) >= change.at_ms || ahead_sections.contains(section.as_str()) {
            out.redecided_ahead.push(what);
        } else {
            out.redecided.push(what);
        }
    }
    out
}

fn decision_word(d: &Decision) -> String {
    match d {
        Decision::Accepted => "accepted".into(),
        Decision::Superseded { .. } => "superseded".into(),
        Decision::Concurred { .. } => "concurred".into(),
        Decision::Rejected { rule, .. } => format!("rejected ({})", rule.as_str()),
        Decision::Quarantined { .. } => "quarantined".into(),
    }
}
