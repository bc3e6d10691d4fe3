//! Store-level tests of the replica API: refused writes, reopening, merging,
//! the reconciliation report, the outbox, time travel, history, audit,
//! compaction, export and bad or repeated input.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use automerge::{ObjType, ROOT, ReadDoc, Value};
use fieldsync_core::wall_clock_ms;
use fieldsync_core::{
    Candidate, ConflictKind, ConstructionState, Decision, EditOutcome, Field, GeoPoint, Hlc, Member, OpenError,
    PastPoint, Reconciliation, Replica, ReplicaError, ReplicaOptions, Role, Rule, SectionChange,
};

use crate::common::{PROJECT, changes_of, crew, route, sync_section};

use ConstructionState::*;

fn count(r: &Replica, sql: &str) -> i64 {
    r.connection().query_row(sql, [], |row| row.get(0)).unwrap()
}

fn change_rows(r: &Replica) -> i64 {
    count(r, "SELECT count(*) FROM changes")
}

fn outbox_hashes(r: &Replica) -> Vec<String> {
    r.outbox(usize::MAX).unwrap().into_iter().map(|c| c.hash).collect()
}

fn history_hashes(r: &mut Replica, section: &str) -> Vec<String> {
    r.history(section).unwrap().into_iter().map(|h| h.hash).collect()
}

/// Sleep past the current millisecond, so the next stamp is strictly later.
fn next_ms() {
    std::thread::sleep(Duration::from_millis(3));
}

fn stamp(edit_id: &str) -> Hlc {
    edit_id.parse().unwrap()
}

fn options(device: &str) -> ReplicaOptions {
    ReplicaOptions { device: device.into(), ..Default::default() }
}

fn two<T>(v: &mut [T]) -> (&mut T, &mut T) {
    let [a, b] = v else { panic!("expected two, got {}", v.len()) };
    (a, b)
}

fn three<T>(v: &mut [T]) -> (&mut T, &mut T, &mut T) {
    let [a, b, c] = v else { panic!("expected three, got {}", v.len()) };
    (a, b, c)
}

fn refused_rule(result: Result<(), ReplicaError>) -> Rule {
    match result {
        Err(ReplicaError::Refused { rule, .. }) => rule,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn refused_local_writes_return_the_rule_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut rs = crew(dir.path(), &[Role::Office, Role::Technician]);
    let (office, tech) = two(&mut rs);
    let id = office.create_section(PROJECT, "north", &route()).unwrap();
    office.transition(&id, Trenched, None).unwrap();
    office.record_progress(&id, 20).unwrap();
    sync_section(office, tech, &id);

    let view = tech.section(&id).unwrap();
    let conflicts = tech.conflicts(None).unwrap();
    let rows = change_rows(tech);
    let history = history_hashes(tech, &id);
    assert_eq!(tech.outbox_stats().unwrap(), (0, None));
    assert_eq!((view.state, view.progress), (Trenched, 20));

    let cases: Vec<(Rule, Result<(), ReplicaError>)> = vec![
        (Rule::TransitionNotAllowed, tech.transition(&id, Surveyed, None).map(drop)),
        (Rule::TransitionNotAllowed, tech.transition(&id, CablePulled, None).map(drop)),
        (Rule::TransitionNotAllowed, tech.transition(&id, Blocked, None).map(drop)),
        (Rule::ProgressRange, tech.record_progress(&id, 150).map(drop)),
        (Rule::ProgressRange, tech.record_progress(&id, -1).map(drop)),
        (Rule::ProgressBand, tech.record_progress(&id, 60).map(drop)),
        (Rule::ProgressOnlyRises, tech.record_progress(&id, 15).map(drop)),
        (Rule::OfficeOnly, tech.rename_section(&id, "south").map(drop)),
        (Rule::OfficeOnly, tech.set_route(&id, &[GeoPoint { lat: 48.1, lon: 11.0 }]).map(drop)),
        (Rule::OfficeOnly, tech.create_section(PROJECT, "mine", &route()).map(drop)),
    ];
    for (i, (rule, result)) in cases.into_iter().enumerate() {
        assert_eq!(refused_rule(result), rule, "case {i}");
    }

    assert_eq!(tech.section(&id).unwrap(), view);
    assert_eq!(tech.conflicts(None).unwrap(), conflicts);
    assert_eq!(tech.outbox_stats().unwrap(), (0, None));
    assert_eq!(change_rows(tech), rows);
    assert_eq!(count(tech, "SELECT count(*) FROM local_edits"), 0);
    assert_eq!(tech.list_sections(None, None, 10).unwrap().len(), 1);
    assert_eq!(history_hashes(tech, &id), history);

    // An office write is refused by the range rule too.
    let office_rows = change_rows(office);
    assert_eq!(refused_rule(office.record_progress(&id, 150).map(drop)), Rule::ProgressRange);
    assert_eq!(change_rows(office), office_rows);

    // The next valid write carries only itself: nothing refused leaked into the document.
    let ok = tech.record_progress(&id, 30).unwrap();
    assert_eq!(ok.decision, Decision::Accepted);
    let audit = tech.audit(&id).unwrap();
    let values: Vec<&str> = audit.iter().map(|a| a.value.as_str()).collect();
    assert_eq!(values, ["name \"north\"", "route of 2 points", "planned → trenched", "20%", "30%"]);
    assert_eq!(tech.outbox_stats().unwrap().0, 1);
    assert_eq!(history_hashes(tech, &id).len(), history.len() + 1);
}

#[test]
fn reopening_shows_the_same_view_and_the_clock_keeps_running_forward() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let mut r = Replica::open(&path, options("dev-a")).unwrap();
    r.set_roster(PROJECT, &[Member { actor: r.actor(), user: "olga".into(), role: Role::Office }]).unwrap();
    // The server is two minutes ahead of this device: stamps follow the server.
    r.observe_server_time(wall_clock_ms() + 120_000).unwrap();
    let id = r.create_section(PROJECT, "north", &route()).unwrap();
    r.record_progress(&id, 5).unwrap();
    r.set_notes(&id, "gravel").unwrap();
    let last = r.report_location(&id, GeoPoint { lat: 48.0, lon: 11.001 }).unwrap();
    let view = r.section(&id).unwrap();
    let audit = r.audit(&id).unwrap();
    let history = history_hashes(&mut r, &id);
    let outbox = outbox_hashes(&r);
    let actor = r.actor();
    drop(r);

    let mut r = Replica::open(&path, options("dev-a")).unwrap();
    assert_eq!(r.actor(), actor);
    assert_eq!(r.section(&id).unwrap(), view);
    assert_eq!(r.audit(&id).unwrap(), audit);
    assert_eq!(history_hashes(&mut r, &id), history);
    assert_eq!(outbox_hashes(&r), outbox);

    let next = r.record_progress(&id, 8).unwrap();
    assert!(next.edit_id > last.edit_id, "{} is not after {}", next.edit_id, last.edit_id);
    let (before, after) = (stamp(&last.edit_id), stamp(&next.edit_id));
    assert!(after > before);
    // Still on the server's time, not the device's.
    assert!(after.physical_ms >= wall_clock_ms() + 100_000, "{after:?}");
    assert_eq!(r.section(&id).unwrap().progress, 8);
}

#[test]
fn a_store_refuses_to_open_as_another_device() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    drop(Replica::open(&path, options("dev-a")).unwrap());
    match Replica::open(&path, options("dev-b")).unwrap_err() {
        OpenError::OtherDevice { path: p, found, wanted } => {
            assert_eq!((p, found.as_str(), wanted.as_str()), (path.clone(), "dev-a", "dev-b"));
        }
        other => panic!("expected OtherDevice, got {other}"),
    }
    assert_eq!(Replica::open(&path, options("dev-a")).unwrap().device(), "dev-a");
}

#[test]
fn two_replicas_exchanging_changes_converge() {
    let dir = tempfile::tempdir().unwrap();
    let mut rs = crew(dir.path(), &[Role::Office, Role::Technician]);
    let (office, tech) = two(&mut rs);
    let id = office.create_section(PROJECT, "north", &route()).unwrap();
    sync_section(office, tech, &id);

    // Concurrent writes on both sides.
    let office_move = office.transition(&id, Trenched, None).unwrap();
    office.record_progress(&id, 30).unwrap();
    office.set_notes(&id, "office: rock at km 0.4").unwrap();
    tech.transition(&id, Surveyed, None).unwrap();
    tech.record_progress(&id, 5).unwrap();
    tech.splice_notes(&id, 0, 0, "tech: ").unwrap();
    tech.report_location(&id, GeoPoint { lat: 48.0, lon: 11.002 }).unwrap();

    sync_section(office, tech, &id);
    sync_section(tech, office, &id);

    let view = office.section(&id).unwrap();
    assert_eq!(tech.section(&id).unwrap(), view);
    assert_eq!(tech.conflicts(None).unwrap(), office.conflicts(None).unwrap());
    assert_eq!(tech.audit(&id).unwrap(), office.audit(&id).unwrap());
    assert_eq!(view.state, Trenched);
    assert_eq!(view.progress, 30);
    assert!(view.notes.contains("tech: ") && view.notes.contains("office: rock at km 0.4"), "{:?}", view.notes);
    assert_eq!(view.as_built.len(), 1);
    let conflicts = office.conflicts(Some(&id)).unwrap();
    assert_eq!(view.conflict_count, conflicts.len());
    let state_contest = conflicts
        .iter()
        .find(|c| c.field == Field::State && c.kind == ConflictKind::Contest)
        .expect("the two transitions raced");
    assert_eq!(state_contest.rule, Rule::TransitionPrecedence);
    assert_eq!(state_contest.winner.as_deref(), Some(office_move.edit_id.as_str()));
}

/// Office, then two technicians, on a trenched section at 10%.
fn trenched_crew(dir: &std::path::Path) -> (Vec<Replica>, String) {
    let mut rs = crew(dir, &[Role::Office, Role::Technician, Role::Technician]);
    let (office, t1, t2) = three(&mut rs);
    let id = office.create_section(PROJECT, "north", &route()).unwrap();
    office.transition(&id, Trenched, None).unwrap();
    office.record_progress(&id, 10).unwrap();
    sync_section(office, t1, &id);
    sync_section(office, t2, &id);
    (rs, id)
}

#[test]
fn the_reconciliation_report_says_which_local_write_lost_and_which_stands() {
    let dir = tempfile::tempdir().unwrap();
    let (mut rs, id) = trenched_crew(dir.path());
    let (_, t1, t2) = three(&mut rs);
    let lost = t1.record_progress(&id, 30).unwrap();
    next_ms();
    let won = t2.record_progress(&id, 40).unwrap();
    assert!(lost.edit_id < won.edit_id);

    let report = sync_section(t2, t1, &id);
    let by = Candidate {
        edit_id: won.edit_id.clone(),
        value: "40%".into(),
        author: t2.actor(),
        user: Some("user2".into()),
        role: Some(Role::Technician),
        hlc: won.edit_id.clone(),
        change_hash: won.change_hash.clone(),
    };
    assert_eq!(report.new_changes, 1);
    assert_eq!(report.sections_changed, std::slice::from_ref(&id));
    assert_eq!(
        report.reconciliation,
        [Reconciliation {
            edit_id: lost.edit_id.clone(),
            section: id.clone(),
            field: Some(Field::Progress),
            outcome: EditOutcome::Overridden {
                by: Some(by),
                rule: Rule::ProgressMaxWins,
                reason: "replaced by 40%".into()
            },
        }]
    );

    let report = sync_section(t1, t2, &id);
    assert_eq!(
        report.reconciliation,
        [Reconciliation {
            edit_id: won.edit_id.clone(),
            section: id.clone(),
            field: Some(Field::Progress),
            outcome: EditOutcome::Stands
        }]
    );
    assert_eq!(t1.section(&id).unwrap(), t2.section(&id).unwrap());
    assert_eq!(t1.section(&id).unwrap().progress, 40);
}

#[test]
fn confirmed_writes_leave_the_report_and_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let (mut rs, id) = trenched_crew(dir.path());
    let (_, t1, t2) = three(&mut rs);
    let first = t2.record_progress(&id, 20).unwrap();
    let second = t2.report_location(&id, GeoPoint { lat: 48.0, lon: 11.003 }).unwrap();
    assert_eq!(t2.outbox_stats().unwrap().0, 2);
    assert_eq!(outbox_hashes(t2), [first.change_hash.clone(), second.change_hash.clone()]);

    t2.confirm(std::slice::from_ref(&first.change_hash)).unwrap();
    assert_eq!(outbox_hashes(t2), std::slice::from_ref(&second.change_hash));
    assert_eq!(t2.outbox_stats().unwrap().0, 1);
    // Confirming is idempotent, and an unknown hash is ignored.
    t2.confirm(&[first.change_hash.clone(), "00".repeat(32)]).unwrap();
    assert_eq!(outbox_hashes(t2), std::slice::from_ref(&second.change_hash));

    // t1 overtakes with 48%; t2 then writes 46% concurrently, which now loses
    // because progress only rises.
    sync_section(t2, t1, &id);
    let high = t1.record_progress(&id, 48).unwrap();
    next_ms();
    let low = t2.record_progress(&id, 46).unwrap();
    assert_eq!(low.decision, Decision::Accepted, "locally it is fine");
    let report = sync_section(t1, t2, &id);
    let lines: BTreeMap<&str, &EditOutcome> =
        report.reconciliation.iter().map(|r| (r.edit_id.as_str(), &r.outcome)).collect();
    assert_eq!(lines.len(), 2, "{report:?}");
    assert!(!lines.contains_key(first.edit_id.as_str()), "the confirmed write is not reported");
    assert_eq!(lines[second.edit_id.as_str()], &EditOutcome::Stands);
    match lines[low.edit_id.as_str()] {
        EditOutcome::Overridden { by: Some(by), rule: Rule::ProgressOnlyRises, .. } => {
            assert_eq!((by.edit_id.as_str(), by.value.as_str()), (high.edit_id.as_str(), "48%"));
        }
        other => panic!("expected ProgressOnlyRises by 48%, got {other:?}"),
    }
    assert_eq!(t2.section(&id).unwrap().progress, 48);

    t2.confirm(&[second.change_hash.clone(), low.change_hash.clone()]).unwrap();
    assert_eq!(t2.outbox_stats().unwrap(), (0, None));
    assert_eq!(count(t2, "SELECT count(*) FROM local_edits"), 0);
    let report = sync_section(t1, t2, &id);
    assert_eq!(report.reconciliation, []);
    assert_eq!(report.new_changes, 0);
}

#[test]
fn time_travel_shows_the_earlier_state_and_progress() {
    let dir = tempfile::tempdir().unwrap();
    let mut rs = crew(dir.path(), &[Role::Office]);
    let office = &mut rs[0];
    let id = office.create_section(PROJECT, "north", &route()).unwrap();
    let p5 = office.record_progress(&id, 5).unwrap();
    let early = office.section(&id).unwrap();
    next_ms();
    let moved = office.transition(&id, Surveyed, None).unwrap();
    let middle = office.section(&id).unwrap();
    next_ms();
    office.record_progress(&id, 15).unwrap();
    office.set_notes(&id, "done for today").unwrap();
    let now = office.section(&id).unwrap();
    assert_eq!((early.state, early.progress), (Planned, 5));
    assert_eq!((middle.state, middle.progress), (Surveyed, 5));
    assert_eq!((now.state, now.progress), (Surveyed, 15));

    assert_eq!(office.view_at(&id, &PastPoint::Time(stamp(&p5.edit_id).physical_ms)).unwrap(), early);
    assert_eq!(office.view_at(&id, &PastPoint::Time(stamp(&moved.edit_id).physical_ms)).unwrap(), middle);
    assert_eq!(office.view_at(&id, &PastPoint::Time(u64::MAX)).unwrap(), now);
    assert_eq!(office.view_at(&id, &PastPoint::Heads(early.heads.clone())).unwrap(), early);
    assert_eq!(office.view_at(&id, &PastPoint::Heads(vec![p5.change_hash.clone()])).unwrap(), early);
    assert_eq!(office.view_at(&id, &PastPoint::Heads(vec![moved.change_hash.clone()])).unwrap(), middle);
    // Looking back changes nothing.
    assert_eq!(office.section(&id).unwrap(), now);

    assert!(matches!(office.view_at(&id, &PastPoint::Time(1)), Err(ReplicaError::InvalidInput(_))));
    assert!(matches!(
        office.view_at(&id, &PastPoint::Heads(vec!["not a hash".into()])),
        Err(ReplicaError::InvalidInput(_))
    ));
}

/// Every change comes after the changes it depends on.
fn assert_causal(history: &[fieldsync_core::HistoryEntry]) {
    let position: BTreeMap<&str, usize> = history.iter().enumerate().map(|(i, h)| (h.hash.as_str(), i)).collect();
    for (i, h) in history.iter().enumerate() {
        for d in &h.deps {
            let at = position.get(d.as_str()).unwrap_or_else(|| panic!("change {i} depends on {d}, not listed"));
            assert!(*at < i, "change {i} depends on a later change {d}");
        }
    }
}

#[test]
fn history_lists_the_changes_in_causal_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut rs = crew(dir.path(), &[Role::Office, Role::Technician]);
    let (office, tech) = two(&mut rs);
    let id = office.create_section(PROJECT, "north", &route()).unwrap();
    sync_section(office, tech, &id);
    let progress = office.record_progress(&id, 5).unwrap();
    tech.set_notes(&id, "manhole cover missing").unwrap();
    sync_section(tech, office, &id);
    let moved = office.transition(&id, Surveyed, None).unwrap();
    sync_section(office, tech, &id);

    let history = office.history(&id).unwrap();
    // Both replicas list the same changes; concurrent ones may come in either order.
    let theirs = tech.history(&id).unwrap();
    assert_eq!(theirs.len(), history.len());
    assert!(theirs.iter().all(|h| history.contains(h)));
    assert_causal(&theirs);
    assert_causal(&history);
    let messages: Vec<Option<&str>> = history.iter().map(|h| h.message.as_deref()).collect();
    assert_eq!(history.len(), 4, "{messages:?}");
    assert_eq!(messages[0], Some("create"));
    assert_eq!(messages[3], Some("state"));
    let middle: BTreeSet<Option<&str>> = messages[1..3].iter().copied().collect();
    assert_eq!(middle, BTreeSet::from([Some("progress"), Some("notes")]));

    let position: BTreeMap<&str, usize> = history.iter().enumerate().map(|(i, h)| (h.hash.as_str(), i)).collect();
    assert!(history[0].deps.is_empty());
    // The transition was made after the merge: it builds on both branches.
    let last = &history[3];
    assert_eq!(last.hash, moved.change_hash);
    assert_eq!(last.deps.len(), 2);
    assert_eq!(last.actor, office.actor());
    assert_eq!(last.time_ms as u64, stamp(&moved.edit_id).physical_ms);
    let p = &history[position[progress.change_hash.as_str()]];
    assert_eq!((p.actor.as_str(), p.time_ms as u64), (office.actor().as_str(), stamp(&progress.edit_id).physical_ms));
    let notes = history.iter().find(|h| h.message.as_deref() == Some("notes")).unwrap();
    assert_eq!(notes.actor, tech.actor());
}

#[test]
fn the_audit_lists_every_write_with_its_decision() {
    let dir = tempfile::tempdir().unwrap();
    let mut rs = crew(dir.path(), &[Role::Office, Role::Technician]);
    let (office, tech) = two(&mut rs);
    let id = office.create_section(PROJECT, "north", &route()).unwrap();
    sync_section(office, tech, &id);
    let office_move = office.transition(&id, Trenched, None).unwrap();
    let tech_move = tech.transition(&id, Surveyed, None).unwrap();
    let p1 = office.record_progress(&id, 10).unwrap();
    let p2 = office.record_progress(&id, 20).unwrap();
    sync_section(office, tech, &id);
    sync_section(tech, office, &id);

    let audit = tech.audit(&id).unwrap();
    assert_eq!(office.audit(&id).unwrap(), audit);
    assert_eq!(audit.len(), 6);
    let ids: Vec<&str> = audit.iter().map(|a| a.edit_id.as_str()).collect();
    assert!(ids.is_sorted(), "the audit is in HLC order");
    let fields: Vec<Field> = audit.iter().filter_map(|a| a.field).collect();
    assert_eq!(fields.len(), 6);
    assert_eq!(&fields[..2], [Field::Name, Field::Route]);
    assert!(audit[..2].iter().all(|a| a.decision == Decision::Accepted && a.author == office.actor()));

    let by_id: BTreeMap<&str, &fieldsync_core::AuditEntry> = audit.iter().map(|a| (a.edit_id.as_str(), a)).collect();
    assert_eq!(by_id[office_move.edit_id.as_str()].decision, Decision::Accepted);
    assert_eq!(by_id[p1.edit_id.as_str()].decision, Decision::Superseded { by: p2.edit_id.clone() });
    assert_eq!(by_id[p2.edit_id.as_str()].decision, Decision::Accepted);
    let lost = by_id[tech_move.edit_id.as_str()];
    assert_eq!(
        (lost.field, lost.value.as_str(), lost.author.as_str(), lost.change_hash.as_str()),
        (Some(Field::State), "planned → surveyed", tech.actor().as_str(), tech_move.change_hash.as_str())
    );
    assert_eq!((lost.user.as_deref(), lost.role), (Some("user1"), Some(Role::Technician)));
    match &lost.decision {
        Decision::Rejected { rule: Rule::TransitionPrecedence, winner: Some(w), .. } => {
            assert_eq!(w, &office_move.edit_id)
        }
        other => panic!("expected TransitionPrecedence, got {other:?}"),
    }
}

#[test]
fn a_merge_of_many_sections_leaves_no_stale_document_in_the_cache() {
    // The merge caches only its last chunk's documents (32); a document cached
    // before the merge for a section of an earlier chunk must not be used
    // afterwards, or the next local write would build on the state before it.
    let dir = tempfile::tempdir().unwrap();
    let mut rs = crew(dir.path(), &[Role::Office, Role::Technician]);
    let (office, tech) = two(&mut rs);
    let ids: Vec<String> = (0..40).map(|i| format!("s{i:02}")).collect();
    let mut all = Vec::new();
    for id in &ids {
        office.create_section_with_id(id, PROJECT, id, &route()).unwrap();
        all.extend(changes_of(office, id));
    }
    tech.apply_changes(&all).unwrap();
    tech.record_progress("s00", 5).unwrap(); // "s00" is now in the technician's cache
    let mut remote = Vec::new();
    for id in &ids {
        office.record_progress(id, 8).unwrap();
        remote.extend(changes_of(office, id));
    }
    tech.apply_changes(&remote).unwrap();
    assert_eq!(tech.section("s00").unwrap().progress, 8);
    tech.record_progress("s00", 9).unwrap();
    let office_head = office.section("s00").unwrap().heads;
    let history = history_hashes(tech, "s00");
    assert!(
        office_head.iter().all(|h| history.contains(h)),
        "the office's write is lost from the technician's document"
    );
    assert_eq!(tech.section("s00").unwrap().progress, 9);
    assert_eq!(tech.section("s00").unwrap().heads.len(), 1, "the technician's write builds on the office's");
}

#[test]
fn the_wal_is_checkpointed_into_the_file_while_the_replica_stays_open() {
    // The replica turns SQLite's in-commit checkpoint off and checkpoints on a
    // thread of its own: if that thread did nothing, every page would stay in
    // the WAL until the replica closed and the database file would stay tiny.
    let dir = tempfile::tempdir().unwrap();
    let mut rs = crew(dir.path(), &[Role::Office]);
    let office = &mut rs[0];
    let path = office.path().to_owned();
    let wal = std::path::PathBuf::from(format!("{}-wal", path.display()));
    let long_name = "n".repeat(2_000);
    let mut ids = Vec::new();
    while std::fs::metadata(&wal).map_or(0, |m| m.len()) < 8 << 20 && ids.len() < 5_000 {
        ids.push(office.create_section(PROJECT, &format!("{long_name}{}", ids.len()), &route()).unwrap());
    }
    let file_len = || std::fs::metadata(&path).unwrap().len();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while file_len() < 1 << 20 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(file_len() >= 1 << 20, "database file still {} bytes after {} sections", file_len(), ids.len());
    assert_eq!(office.section(ids.last().unwrap()).unwrap().name, format!("{long_name}{}", ids.len() - 1));
}

#[test]
fn compaction_keeps_the_view_and_the_outbox_and_the_store_stays_usable() {
    let dir = tempfile::tempdir().unwrap();
    let mut rs = crew(dir.path(), &[Role::Office, Role::Technician]);
    let (office, tech) = two(&mut rs);
    let id = office.create_section(PROJECT, "north", &route()).unwrap();
    sync_section(office, tech, &id);
    let p = office.record_progress(&id, 5).unwrap();
    office.transition(&id, Surveyed, None).unwrap();
    office.set_notes(&id, "north end done").unwrap();
    sync_section(office, tech, &id);
    tech.report_location(&id, GeoPoint { lat: 48.0, lon: 11.004 }).unwrap();
    tech.record_progress(&id, 12).unwrap();
    sync_section(tech, office, &id);
    office.record_progress(&id, 18).unwrap();
    let create_hash = office.history(&id).unwrap()[0].hash.clone();
    office.confirm(&[create_hash, p.change_hash.clone()]).unwrap();

    let view = office.section(&id).unwrap();
    let conflicts = office.conflicts(None).unwrap();
    let audit = office.audit(&id).unwrap();
    let history = history_hashes(office, &id);
    let outbox = outbox_hashes(office);
    assert_eq!(outbox.len(), 3);
    assert_eq!(change_rows(office), 7);

    assert_eq!(office.compact(0, 100).unwrap(), 1);
    assert_eq!(office.section(&id).unwrap(), view);
    assert_eq!(office.conflicts(None).unwrap(), conflicts);
    assert_eq!(outbox_hashes(office), outbox);
    // Only the unconfirmed local changes stay loose; the rest is in the snapshot.
    assert_eq!(change_rows(office), 3);
    assert_eq!(count(office, "SELECT count(*) FROM sections WHERE snapshot IS NOT NULL"), 1);

    let path = office.path().to_owned();
    let device = office.device().to_owned();
    let mut reopened = Replica::open(&path, options(&device)).unwrap();
    assert_eq!(reopened.section(&id).unwrap(), view);
    assert_eq!(reopened.audit(&id).unwrap(), audit);
    assert_eq!(history_hashes(&mut reopened, &id), history);
    assert_eq!(outbox_hashes(&reopened), outbox);

    // Still takes edits and merges, and the other side still converges.
    let more = reopened.record_progress(&id, 19).unwrap();
    assert_eq!(more.decision, Decision::Accepted);
    tech.set_notes(&id, "north end done; south starts monday").unwrap();
    let report = sync_section(tech, &mut reopened, &id);
    assert_eq!(report.sections_changed, std::slice::from_ref(&id));
    sync_section(&mut reopened, tech, &id);
    let merged = reopened.section(&id).unwrap();
    assert_eq!(tech.section(&id).unwrap(), merged);
    assert_eq!((merged.progress, merged.notes.as_str()), (19, "north end done; south starts monday"));

    // And compacting again changes nothing that shows.
    assert_eq!(reopened.compact(0, 100).unwrap(), 1);
    drop(reopened);
    let mut again = Replica::open(&path, options(&device)).unwrap();
    assert_eq!(again.section(&id).unwrap(), merged);
    assert_eq!(again.audit(&id).unwrap(), tech.audit(&id).unwrap());
}

#[test]
fn an_export_is_a_plain_automerge_document_with_the_edits() {
    let dir = tempfile::tempdir().unwrap();
    let mut rs = crew(dir.path(), &[Role::Office, Role::Technician]);
    let (office, tech) = two(&mut rs);
    let id = office.create_section(PROJECT, "north", &route()).unwrap();
    sync_section(office, tech, &id);
    let progress = office.record_progress(&id, 5).unwrap();
    office.set_notes(&id, "trench dug").unwrap();
    let location = tech.report_location(&id, GeoPoint { lat: 48.0, lon: 11.005 }).unwrap();
    sync_section(tech, office, &id);

    let bytes = office.export(&id).unwrap();
    let doc = automerge::Automerge::load(&bytes).unwrap();
    let str_of = |obj: &automerge::ObjId, key: &str| match doc.get(obj, key).unwrap() {
        Some((Value::Scalar(s), _)) => s.as_str().map(str::to_owned),
        _ => None,
    };
    assert_eq!(str_of(&ROOT, "id").as_deref(), Some(id.as_str()));
    assert_eq!(str_of(&ROOT, "project").as_deref(), Some(PROJECT));
    let Some((Value::Object(ObjType::Map), edits)) = doc.get(ROOT, "edits").unwrap() else { panic!("no edits map") };
    let keys: Vec<String> = doc.keys(&edits).collect();
    let audit_ids: Vec<String> = office.audit(&id).unwrap().into_iter().map(|a| a.edit_id).collect();
    assert_eq!(keys, audit_ids);
    assert_eq!(keys.len(), 4);
    assert!(keys.contains(&progress.edit_id) && keys.contains(&location.edit_id));
    let Some((Value::Object(ObjType::Map), rec)) = doc.get(&edits, progress.edit_id.as_str()).unwrap() else {
        panic!("no progress record")
    };
    assert_eq!(str_of(&rec, "field").as_deref(), Some("progress"));
    match doc.get(&rec, "percent").unwrap() {
        Some((Value::Scalar(s), _)) => assert_eq!(s.as_i64(), Some(5)),
        other => panic!("percent: {other:?}"),
    }
    let Some((Value::Object(ObjType::Text), notes)) = doc.get(ROOT, "notes").unwrap() else { panic!("no notes") };
    assert_eq!(doc.text(&notes).unwrap(), "trench dug");
    let mut heads: Vec<String> = doc.get_heads().iter().map(ToString::to_string).collect();
    heads.sort();
    let mut view_heads = office.section(&id).unwrap().heads;
    view_heads.sort();
    assert_eq!(heads, view_heads);
}

#[test]
fn garbage_changes_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut rs = crew(dir.path(), &[Role::Office, Role::Technician]);
    let (office, tech) = two(&mut rs);
    let id = office.create_section(PROJECT, "north", &route()).unwrap();
    sync_section(office, tech, &id);
    let good = tech.record_progress(&id, 5).unwrap();
    let good = changes_of(tech, &id)
        .into_iter()
        .find(|c| automerge::Change::from_bytes(c.bytes.clone()).unwrap().hash().to_string() == good.change_hash);
    let good = good.unwrap();

    let view = office.section(&id).unwrap();
    let rows = change_rows(office);
    let history = history_hashes(office, &id);
    let outbox = outbox_hashes(office);
    let garbage = |section: &str, bytes: &[u8]| SectionChange { section: section.into(), bytes: bytes.to_vec() };
    // A change from an Automerge document that is not a section.
    let mut foreign = automerge::AutoCommit::new();
    automerge::transaction::Transactable::put(&mut foreign, ROOT, "hello", "world").unwrap();
    let foreign = foreign.save();
    let foreign_change = automerge::Automerge::load(&foreign).unwrap().get_changes(&[])[0].raw_bytes().to_vec();

    let batches: Vec<Vec<SectionChange>> = vec![
        vec![garbage(&id, b"this is not an automerge change")],
        vec![garbage(&id, b"")],
        vec![good.clone(), garbage(&id, &[0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0])],
        vec![garbage("elsewhere", b"\x00\x01\x02")],
        vec![garbage("elsewhere", &foreign_change)],
    ];
    for (i, batch) in batches.iter().enumerate() {
        assert!(office.apply_changes(batch).is_err(), "batch {i} was accepted");
        assert_eq!(office.section(&id).unwrap(), view, "batch {i}");
        assert_eq!(change_rows(office), rows, "batch {i}");
        assert_eq!(history_hashes(office, &id), history, "batch {i}");
        assert_eq!(outbox_hashes(office), outbox, "batch {i}");
        assert_eq!(office.list_sections(None, None, 10).unwrap().len(), 1, "batch {i}");
    }

    // The good change alone still goes in.
    let report = office.apply_changes(&[good]).unwrap();
    assert_eq!(report.new_changes, 1);
    assert_eq!(office.section(&id).unwrap().progress, 5);
}

#[test]
fn applying_the_same_changes_twice_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let mut rs = crew(dir.path(), &[Role::Office, Role::Technician]);
    let (office, tech) = two(&mut rs);
    let id = office.create_section(PROJECT, "north", &route()).unwrap();
    office.record_progress(&id, 5).unwrap();
    office.set_notes(&id, "twice").unwrap();
    let changes = changes_of(office, &id);
    assert_eq!(changes.len(), 3);

    let first = tech.apply_changes(&changes).unwrap();
    assert_eq!((first.new_changes, first.sections_changed.clone()), (3, vec![id.clone()]));
    let view = tech.section(&id).unwrap();
    let conflicts = tech.conflicts(None).unwrap();
    assert_eq!(change_rows(tech), 3);

    let second = tech.apply_changes(&changes).unwrap();
    assert_eq!((second.new_changes, second.sections_changed), (0, vec![]));
    assert_eq!(tech.section(&id).unwrap(), view);
    assert_eq!(tech.conflicts(None).unwrap(), conflicts);
    assert_eq!(change_rows(tech), 3);
    assert_eq!(count(tech, "SELECT count(*) FROM (SELECT hash FROM changes GROUP BY hash HAVING count(*) > 1)"), 0);

    // Echoed back to their author, they stay local and unconfirmed, once.
    let outbox = outbox_hashes(office);
    let echo = office.apply_changes(&changes).unwrap();
    assert_eq!(echo.new_changes, 0);
    assert_eq!(change_rows(office), 3);
    assert_eq!(outbox_hashes(office), outbox);
    assert_eq!(office.section(&id).unwrap(), view);

    // Once folded into a snapshot, changes sent again are not stored again.
    assert_eq!(tech.compact(0, 100).unwrap(), 1);
    assert_eq!(change_rows(tech), 0);
    let third = tech.apply_changes(&changes).unwrap();
    assert_eq!((third.new_changes, third.sections_changed), (0, vec![]));
    assert_eq!(change_rows(tech), 0);
    assert_eq!(tech.section(&id).unwrap(), view);
}

#[test]
fn a_section_id_the_server_would_refuse_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut office = crew(dir.path(), &[Role::Office]).remove(0);
    let long = "s".repeat(fieldsync_core::protocol::MAX_SECTION_ID_BYTES + 1);
    let e = office.create_section_with_id(&long, PROJECT, "x", &route()).unwrap_err();
    assert!(matches!(e, fieldsync_core::ReplicaError::InvalidInput(ref m) if m.contains("at most")), "{e}");
    let fits = "s".repeat(fieldsync_core::protocol::MAX_SECTION_ID_BYTES);
    office.create_section_with_id(&fits, PROJECT, "x", &route()).unwrap();
}

#[test]
fn a_full_disk_refuses_the_write_loses_nothing_and_the_next_write_goes_through() {
    let dir = tempfile::tempdir().unwrap();
    let mut office = crew(dir.path(), &[Role::Office]).remove(0);
    let id = office.create_section(PROJECT, "North", &route()).unwrap();
    office.record_progress(&id, 5).unwrap();
    let before = office.section(&id).unwrap();
    // The disk fills: SQLite may not grow the file by one more page.
    let pages: i64 = office.connection().query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
    office.connection().pragma_update(None, "max_page_count", pages).unwrap();
    let mut failed = 0;
    for i in 0..200 {
        if office.set_notes(&id, &"manhole 4 flooded ".repeat(50 + i)).is_err() {
            failed += 1;
            break;
        }
    }
    assert_eq!(failed, 1, "the disk never filled");
    // Nothing committed is lost, and the store is sound.
    assert_eq!(office.section(&id).unwrap().progress, before.progress);
    let ok: String = office.connection().query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok");
    // Space again: the next write goes through, built on what was stored.
    office.connection().pragma_update(None, "max_page_count", 1_073_741_823i64).unwrap();
    office.record_progress(&id, 8).unwrap();
    assert_eq!(office.section(&id).unwrap().progress, 8);
    assert!(office.audit(&id).unwrap().iter().any(|e| e.value == "5%"));
}

/// The smallest PNG header `imagesize` reads: 640 × 480.
fn png(extra: &[u8]) -> Vec<u8> {
    let mut b = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13];
    b.extend_from_slice(b"IHDR");
    b.extend_from_slice(&640u32.to_be_bytes());
    b.extend_from_slice(&480u32.to_be_bytes());
    b.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
    b.extend_from_slice(extra);
    b
}

#[test]
fn a_photo_is_kept_once_by_its_hash_and_its_record_travels_without_its_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut rs = crew(dir.path(), &[Role::Office, Role::Technician]);
    let (office, tech) = two(&mut rs);
    let id = office.create_section(PROJECT, "north", &route()).unwrap();
    sync_section(office, tech, &id);

    let bytes = png(b"splice closure");
    let file = dir.path().join("IMG_0001.png");
    std::fs::write(&file, &bytes).unwrap();
    let first = tech.add_photo_file(&id, &file, Some("closure 3")).unwrap();
    let again = tech.add_photo_bytes(&id, &bytes, None).unwrap();
    assert_ne!(first, again, "two records, one file");
    let kept: Vec<_> = std::fs::read_dir(tech.photo_dir()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(kept.len(), 1, "{kept:?}");

    let view = tech.section(&id).unwrap();
    let photo = view.photos.iter().find(|p| p.id == first).unwrap();
    let blob = photo.blob.as_ref().expect("kept by content");
    let sha = hex_sha256(&bytes);
    assert_eq!(
        (blob.sha256.as_str(), blob.size, blob.media_type.as_str(), blob.width, blob.height),
        (sha.as_str(), bytes.len() as u64, "image/png", 640, 480)
    );
    assert_eq!((photo.uri.clone(), photo.caption.as_deref()), (format!("sha256:{sha}"), Some("closure 3")));
    assert_eq!(photo.author, tech.actor());
    assert_eq!(std::fs::read(tech.photo_file(&sha).unwrap()).unwrap(), bytes);

    // The office learns of the photo, with who took it; the bytes stay on the phone.
    sync_section(tech, office, &id);
    assert_eq!(office.section(&id).unwrap().photos, view.photos);
    assert!(office.photo_file(&sha).is_none());

    // Not an image, or no such file: a clear error, nothing attached.
    let not_a_photo = tech.add_photo_bytes(&id, b"%PDF-1.4", None).unwrap_err();
    assert!(not_a_photo.to_string().contains("JPEG, PNG"), "{not_a_photo}");
    let missing = tech.add_photo_file(&id, &dir.path().join("nope.jpg"), None).unwrap_err();
    assert!(missing.to_string().contains("nope.jpg"), "{missing}");
    assert_eq!(tech.section(&id).unwrap().photos.len(), 2);
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn a_full_disk_attaches_no_photo_and_says_so_and_the_same_photo_goes_in_once_there_is_room() {
    let dir = tempfile::tempdir().unwrap();
    let mut rs = crew(dir.path(), &[Role::Office, Role::Technician]);
    let (office, tech) = two(&mut rs);
    let id = office.create_section(PROJECT, "north", &route()).unwrap();
    sync_section(office, tech, &id);
    let bytes = png(b"trench depth");
    let sha = hex_sha256(&bytes);
    // The partial file is written on a disk with no room left (/dev/full: every write fails ENOSPC).
    std::fs::create_dir_all(tech.photo_dir()).unwrap();
    let partial = tech.photo_dir().join(format!("{sha}.partial"));
    std::os::unix::fs::symlink("/dev/full", &partial).unwrap();
    let outbox = outbox_hashes(tech);

    let full = tech.add_photo_bytes(&id, &bytes, Some("depth")).unwrap_err();
    assert!(matches!(full, ReplicaError::Photo(_)), "{full:?}");
    assert!(full.to_string().contains("No space left"), "{full}");
    assert!(tech.section(&id).unwrap().photos.is_empty());
    assert_eq!(outbox_hashes(tech), outbox, "nothing to send for a photo not kept");
    assert!(tech.photo_file(&sha).is_none());

    std::fs::remove_file(&partial).unwrap();
    tech.add_photo_bytes(&id, &bytes, Some("depth")).unwrap();
    assert_eq!(tech.section(&id).unwrap().photos.len(), 1);
    assert_eq!(std::fs::read(tech.photo_file(&sha).unwrap()).unwrap(), bytes);
}
