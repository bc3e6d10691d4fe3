//! Every rule over the merge, on hand-built writes, with the exact expected
//! view, decisions and conflict records.

use fieldsync_core::SectionInput;
use fieldsync_core::{
    ConflictKind, ConstructionState as S, Decision, DomainEventKind, Edit, EditValue, Field, GeoPoint, Hlc, Member,
    ProjectConfig, Role, Roster, Rule,
};
use fieldsync_core::{Mutation, RoleChange, Validated, set_mutation, validate};

const TECH: &str = "aa01";
const TECH2: &str = "aa02";
const FOREMAN: &str = "bb01";
const OFFICE: &str = "cc01";

fn roster() -> Roster {
    Roster::new([
        Member { actor: TECH.into(), user: "tina".into(), role: Role::Technician },
        Member { actor: TECH2.into(), user: "tom".into(), role: Role::Technician },
        Member { actor: FOREMAN.into(), user: "fred".into(), role: Role::Foreman },
        Member { actor: OFFICE.into(), user: "olga".into(), role: Role::Office },
    ])
}

fn edit(ms: u64, actor: &str, base: Option<&Edit>, value: EditValue) -> Edit {
    let hlc = Hlc { physical_ms: ms, counter: 0, actor: actor.into() };
    Edit {
        id: hlc.to_string(),
        hlc,
        author: actor.into(),
        base: base.map(|b| b.id.clone()),
        change_hash: format!("hash{ms}"),
        value,
    }
}

fn progress(percent: i64, at_state: S) -> EditValue {
    EditValue::Progress { percent, at_state }
}

fn go(from: S, to: S) -> EditValue {
    EditValue::Transition { from, to, reason: None }
}

fn point(lat: f64, lon: f64) -> EditValue {
    EditValue::Location { point: GeoPoint { lat, lon } }
}

fn run(edits: Vec<Edit>) -> Validated {
    run_with(&roster(), edits).0
}

/// The rules over `edits` with `roster`, and the input they read.
fn run_with(roster: &Roster, edits: Vec<Edit>) -> (Validated, SectionInput) {
    run_received(roster, edits, &[])
}

/// The rules over `edits` with `roster`, the hub having received each write
/// of `received` at the time given (server ms); the others are unconfirmed.
fn run_received(roster: &Roster, mut edits: Vec<Edit>, received: &[(&Edit, u64)]) -> (Validated, SectionInput) {
    // Progress is recorded in a state the section has been in: where a test
    // records progress without moving the section, a foreman moved it to
    // conduit_laid first (no conflict, one event).
    let moves = edits.iter().any(|e| e.value.field() == Some(Field::State));
    if !moves && edits.iter().any(|e| matches!(e.value, EditValue::Progress { at_state, .. } if at_state != S::Planned))
    {
        edits.push(edit(1, FOREMAN, None, go(S::Planned, S::ConduitLaid)));
    }
    edits.sort_by(|a, b| a.id.cmp(&b.id));
    let input = SectionInput {
        id: "s1".into(),
        project: "p1".into(),
        edits,
        notes: String::new(),
        photos: vec![],
        heads: vec![],
        received: received.iter().map(|(e, ms)| (e.change_hash.clone(), *ms)).collect(),
    };
    (validate(&input, roster, &ProjectConfig::default()), input)
}

fn decision(v: &Validated, e: &Edit) -> Decision {
    v.decisions[&e.id].clone()
}

fn rejected_by(v: &Validated, e: &Edit) -> Rule {
    match decision(v, e) {
        Decision::Rejected { rule, .. } => rule,
        other => panic!("{} was not rejected: {other:?}", e.id),
    }
}

#[test]
fn concurrent_progress_reports_the_highest_stands() {
    let a = edit(10, TECH, None, progress(40, S::ConduitLaid));
    let b = edit(20, TECH2, None, progress(60, S::ConduitLaid));
    let v = run(vec![a.clone(), b.clone()]);
    assert_eq!(v.view.progress, 60);
    assert_eq!(decision(&v, &a), Decision::Superseded { by: b.id.clone() });
    assert_eq!(decision(&v, &b), Decision::Accepted);
    assert_eq!(v.conflicts.len(), 1);
    let c = &v.conflicts[0];
    assert_eq!((c.kind, c.rule, c.field), (ConflictKind::Contest, Rule::ProgressMaxWins, Field::Progress));
    assert_eq!(c.winner.as_deref(), Some(b.id.as_str()));
    let ids: Vec<_> = c.candidates.iter().map(|c| c.edit_id.as_str()).collect();
    assert_eq!(ids, [a.id.as_str(), b.id.as_str()]);
    assert_eq!(c.candidates[0].user.as_deref(), Some("tina"));
    assert_eq!(c.candidates[0].role, Some(Role::Technician));
    assert_eq!(c.candidates[0].change_hash, "hash10");
}

#[test]
fn max_wins_whatever_the_stamps_say() {
    // The higher value has the older stamp: the lower one is a refused decrease.
    let a = edit(10, TECH, None, progress(60, S::ConduitLaid));
    let b = edit(20, TECH2, None, progress(40, S::ConduitLaid));
    let v = run(vec![b.clone(), a.clone()]);
    assert_eq!(v.view.progress, 60);
    assert_eq!(rejected_by(&v, &b), Rule::ProgressOnlyRises);
    let rules: Vec<_> = v.conflicts.iter().map(|c| (c.kind, c.rule)).collect();
    assert!(rules.contains(&(ConflictKind::Rejection, Rule::ProgressOnlyRises)), "{rules:?}");
    assert!(rules.contains(&(ConflictKind::Contest, Rule::ProgressMaxWins)), "{rules:?}");
    let contest = v.conflicts.iter().find(|c| c.kind == ConflictKind::Contest).unwrap();
    assert_eq!(contest.winner.as_deref(), Some(a.id.as_str()));
}

#[test]
fn only_a_foreman_or_office_rolls_progress_back() {
    let a = edit(10, TECH, None, progress(60, S::ConduitLaid));
    let down_by_tech = edit(20, TECH, Some(&a), progress(50, S::ConduitLaid));
    let v = run(vec![a.clone(), down_by_tech.clone()]);
    assert_eq!(v.view.progress, 60);
    assert_eq!(rejected_by(&v, &down_by_tech), Rule::ProgressOnlyRises);
    let Decision::Rejected { winner, reason, .. } = decision(&v, &down_by_tech) else { unreachable!() };
    assert_eq!(winner.as_deref(), Some(a.id.as_str()));
    assert!(reason.contains("only a foreman or office"), "{reason}");

    let down_by_foreman = edit(20, FOREMAN, Some(&a), progress(35, S::ConduitLaid));
    let v = run(vec![a.clone(), down_by_foreman.clone()]);
    assert_eq!(v.view.progress, 35);
    assert_eq!(decision(&v, &down_by_foreman), Decision::Accepted);
    assert!(v.conflicts.is_empty(), "{:?}", v.conflicts);
}

#[test]
fn progress_outside_range_or_band_is_refused() {
    let too_high = edit(10, TECH, None, progress(101, S::ConduitLaid));
    let negative = edit(11, TECH, None, progress(-1, S::ConduitLaid));
    let out_of_band = edit(12, TECH, None, progress(80, S::Trenched)); // trenched allows 10–50
    let v = run(vec![too_high.clone(), negative.clone(), out_of_band.clone()]);
    assert_eq!(v.view.progress, 0);
    assert_eq!(rejected_by(&v, &too_high), Rule::ProgressRange);
    assert_eq!(rejected_by(&v, &negative), Rule::ProgressRange);
    assert_eq!(rejected_by(&v, &out_of_band), Rule::ProgressBand);
    assert_eq!(v.conflicts.len(), 3);
    assert!(v.conflicts.iter().all(|c| c.kind == ConflictKind::Rejection && c.winner.is_none()));
}

#[test]
fn progress_reaching_the_top_of_its_states_band_raises_a_milestone_once() {
    let dug = edit(5, FOREMAN, None, go(S::Planned, S::Trenched)); // trenched allows 10–50
    let part = edit(10, TECH, None, progress(30, S::Trenched));
    let done = edit(20, TECH, Some(&part), progress(50, S::Trenched));
    let again = edit(30, TECH, Some(&done), progress(50, S::Trenched));
    let refused = edit(40, TECH, Some(&done), progress(60, S::Trenched));
    let v = run(vec![dug.clone(), part, done.clone(), again, refused]);
    assert_eq!(v.view.milestones.len(), 1, "{:?}", v.view.milestones);
    let m = &v.view.milestones[0];
    assert_eq!(
        (&m.edit_id, m.kind, m.milestone, m.to, m.author.as_str()),
        (&done.id, DomainEventKind::ProgressMilestone, Some(50), S::Trenched, TECH)
    );
    // The transitions' history is the chain of transitions alone (a new one builds on its last).
    assert_eq!(v.view.events.iter().map(|e| e.milestone).collect::<Vec<_>>(), [None]);
}

#[test]
fn technicians_step_forward_one_state_at_a_time() {
    let ok = edit(10, TECH, None, go(S::Planned, S::Surveyed));
    let skip = edit(20, TECH, Some(&ok), go(S::Surveyed, S::ConduitLaid));
    let back = edit(30, TECH, Some(&ok), go(S::Surveyed, S::Planned));
    let v = run(vec![ok.clone(), skip.clone(), back.clone()]);
    assert_eq!(v.view.state, S::Surveyed);
    assert_eq!(decision(&v, &ok), Decision::Accepted);
    assert_eq!(rejected_by(&v, &skip), Rule::TransitionNotAllowed);
    assert_eq!(rejected_by(&v, &back), Rule::TransitionNotAllowed);
    assert_eq!(v.view.events.len(), 1);
    assert_eq!(v.view.events[0].kind, DomainEventKind::SectionStarted);
    assert_eq!(v.view.events[0].edit_id, ok.id);
}

#[test]
fn concurrent_transitions_the_higher_role_wins_even_with_an_older_stamp() {
    let by_foreman = edit(10, FOREMAN, None, go(S::Planned, S::Trenched));
    let by_tech = edit(20, TECH, None, go(S::Planned, S::Surveyed));
    let follow_up = edit(30, TECH, Some(&by_tech), go(S::Surveyed, S::Trenched));
    let v = run(vec![by_tech.clone(), by_foreman.clone(), follow_up.clone()]);
    assert_eq!(v.view.state, S::Trenched);
    assert_eq!(decision(&v, &by_foreman), Decision::Accepted);
    assert_eq!(rejected_by(&v, &by_tech), Rule::TransitionPrecedence);
    // The technician's next step starts from a state the section never reached.
    assert_eq!(rejected_by(&v, &follow_up), Rule::StaleTransition);
    let contest = v.conflicts.iter().find(|c| c.kind == ConflictKind::Contest).unwrap();
    assert_eq!((contest.field, contest.rule), (Field::State, Rule::TransitionPrecedence));
    assert_eq!(contest.winner.as_deref(), Some(by_foreman.id.as_str()));
    assert_eq!(contest.candidates.len(), 2);
}

#[test]
fn concurrent_transitions_of_equal_role_the_later_stamp_wins() {
    let a = edit(10, TECH, None, go(S::Planned, S::Surveyed));
    let b = edit(20, TECH2, None, go(S::Planned, S::Blocked));
    let b =
        Edit { value: EditValue::Transition { from: S::Planned, to: S::Blocked, reason: Some("flood".into()) }, ..b };
    let v = run(vec![a.clone(), b.clone()]);
    assert_eq!(v.view.state, S::Blocked);
    assert_eq!(v.view.blocked.as_ref().map(|b| (b.reason.as_str(), b.resume_to)), Some(("flood", S::Planned)));
    assert_eq!(rejected_by(&v, &a), Rule::TransitionPrecedence);
}

#[test]
fn the_same_transition_twice_concurs_and_the_follow_up_builds_on_it() {
    let a = edit(10, TECH, None, go(S::Planned, S::Surveyed));
    let b = edit(20, TECH2, None, go(S::Planned, S::Surveyed));
    let a2 = edit(30, TECH, Some(&a), go(S::Surveyed, S::Trenched));
    let v = run(vec![a.clone(), b.clone(), a2.clone()]);
    assert_eq!(v.view.state, S::Trenched);
    assert_eq!(decision(&v, &a), Decision::Concurred { with: b.id.clone() });
    assert_eq!(decision(&v, &a2), Decision::Accepted);
    assert!(v.conflicts.is_empty(), "{:?}", v.conflicts);
}

#[test]
fn blocked_sections_go_back_where_they_were_and_only_a_foreman_unblocks() {
    let t1 = edit(10, TECH, None, go(S::Planned, S::Surveyed));
    let block = edit(
        20,
        TECH,
        Some(&t1),
        EditValue::Transition { from: S::Surveyed, to: S::Blocked, reason: Some("landowner refused access".into()) },
    );
    let tech_unblock = edit(30, TECH, Some(&block), go(S::Blocked, S::Surveyed));
    let v = run(vec![t1.clone(), block.clone(), tech_unblock.clone()]);
    assert_eq!(v.view.state, S::Blocked);
    assert_eq!(rejected_by(&v, &tech_unblock), Rule::TransitionNotAllowed);

    let wrong_target = edit(30, FOREMAN, Some(&block), go(S::Blocked, S::Trenched));
    let unblock = edit(40, FOREMAN, Some(&block), go(S::Blocked, S::Surveyed));
    let v = run(vec![t1, block, wrong_target.clone(), unblock.clone()]);
    assert_eq!(rejected_by(&v, &wrong_target), Rule::TransitionNotAllowed);
    assert_eq!(decision(&v, &unblock), Decision::Accepted);
    assert_eq!((v.view.state, v.view.blocked.clone()), (S::Surveyed, None));
    let kinds: Vec<_> = v.view.events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [DomainEventKind::SectionStarted, DomainEventKind::SectionBlocked, DomainEventKind::SectionUnblocked]
    );
}

#[test]
fn foremen_skip_and_rework_and_completion_raises_its_event() {
    let skip = edit(10, FOREMAN, None, go(S::Planned, S::Tested));
    let done = edit(20, TECH, Some(&skip), go(S::Tested, S::Completed));
    let rework = edit(30, FOREMAN, Some(&done), go(S::Completed, S::Spliced));
    let v = run(vec![skip, done, rework]);
    assert_eq!(v.view.state, S::Spliced);
    let kinds: Vec<_> = v.view.events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [DomainEventKind::SectionStarted, DomainEventKind::SectionCompleted, DomainEventKind::ReworkOrdered]
    );
}

fn with_route(mut edits: Vec<Edit>) -> Vec<Edit> {
    let route = vec![GeoPoint { lat: 0.0, lon: 0.0 }, GeoPoint { lat: 0.0, lon: 0.01 }];
    edits.push(edit(1, OFFICE, None, EditValue::Route { points: route }));
    edits
}

#[test]
fn locations_last_writer_wins_among_valid_points() {
    let a = edit(10, TECH, None, point(0.0001, 0.002));
    let b = edit(20, TECH2, None, point(0.0002, 0.004));
    let v = run(with_route(vec![a.clone(), b.clone()]));
    assert_eq!(v.view.location.as_ref().map(|p| p.edit_id.as_str()), Some(b.id.as_str()));
    assert_eq!(v.view.as_built.len(), 2);
    let contest = v.conflicts.iter().find(|c| c.kind == ConflictKind::Contest).unwrap();
    assert_eq!((contest.rule, contest.winner.as_deref()), (Rule::LocationLastWriterWins, Some(b.id.as_str())));
}

#[test]
fn off_route_points_are_quarantined_not_lost_and_a_foreman_can_accept_them() {
    let on = edit(10, TECH, None, point(0.0, 0.005));
    let off = edit(20, TECH, Some(&on), point(0.002, 0.005)); // ≈ 221 m north of the route
    let v = run(with_route(vec![on.clone(), off.clone()]));
    assert_eq!(v.view.location.as_ref().unwrap().edit_id, on.id);
    assert_eq!(v.view.quarantined.len(), 1);
    assert_eq!(v.view.quarantined[0].edit_id, off.id);
    assert!((v.view.quarantined[0].distance_m - 221.1).abs() < 0.5, "{}", v.view.quarantined[0].distance_m);
    assert!(matches!(decision(&v, &off), Decision::Quarantined { .. }));
    let q = v.conflicts.iter().find(|c| c.kind == ConflictKind::Quarantine).unwrap();
    assert_eq!((q.rule, q.candidates.len(), q.winner.clone()), (Rule::OffRoute, 1, None));

    let by_tech = edit(30, TECH2, None, EditValue::Accept { point_edit: off.id.clone() });
    let v = run(with_route(vec![on.clone(), off.clone(), by_tech.clone()]));
    assert_eq!(rejected_by(&v, &by_tech), Rule::AcceptRequiresForeman);
    assert_eq!(v.view.quarantined.len(), 1);

    let by_foreman = edit(30, FOREMAN, None, EditValue::Accept { point_edit: off.id.clone() });
    let v = run(with_route(vec![on.clone(), off.clone(), by_foreman.clone()]));
    assert!(v.view.quarantined.is_empty());
    let loc = v.view.location.clone().unwrap();
    assert_eq!((loc.edit_id, loc.accepted_by), (off.id.clone(), Some(by_foreman.id.clone())));
    assert_eq!(decision(&v, &off), Decision::Accepted);
    assert_eq!(decision(&v, &on), Decision::Superseded { by: off.id.clone() });
}

#[test]
fn without_a_route_no_point_is_quarantined_but_bad_coordinates_are_refused() {
    let a = edit(10, TECH, None, point(45.0, 7.0));
    let bad = edit(20, TECH, Some(&a), point(95.0, 7.0));
    let v = run(vec![a.clone(), bad.clone()]);
    assert_eq!(v.view.location.clone().unwrap().edit_id, a.id);
    assert_eq!(rejected_by(&v, &bad), Rule::InvalidPoint);
}

#[test]
fn only_office_names_sections_and_plans_routes() {
    let name = edit(10, OFFICE, None, EditValue::Name { name: "North".into() });
    let by_foreman = edit(20, FOREMAN, Some(&name), EditValue::Name { name: "Mine".into() });
    let route_by_tech = edit(30, TECH, None, EditValue::Route { points: vec![GeoPoint { lat: 1.0, lon: 1.0 }] });
    let rename = edit(40, OFFICE, Some(&name), EditValue::Name { name: "North 2".into() });
    let v = run(vec![name.clone(), by_foreman.clone(), route_by_tech.clone(), rename.clone()]);
    assert_eq!(v.view.name, "North 2");
    assert!(v.view.route.is_empty());
    assert_eq!(rejected_by(&v, &by_foreman), Rule::OfficeOnly);
    assert_eq!(rejected_by(&v, &route_by_tech), Rule::OfficeOnly);
    assert_eq!(decision(&v, &name), Decision::Superseded { by: rename.id.clone() });
}

#[test]
fn unknown_authors_and_forged_stamps_are_refused() {
    let stranger = edit(10, "ee99", None, progress(5, S::Planned));
    let mut forged = edit(20, TECH, None, progress(5, S::Planned));
    forged.hlc.actor = FOREMAN.into();
    forged.id = forged.hlc.to_string();
    let v = run(vec![stranger.clone(), forged.clone()]);
    assert_eq!(rejected_by(&v, &stranger), Rule::UnknownAuthor);
    assert_eq!(rejected_by(&v, &forged), Rule::ForgedStamp);
    assert_eq!(v.view.progress, 0);
}

#[test]
fn conflict_ids_derive_from_the_candidates_only() {
    let a = edit(10, TECH, None, progress(40, S::ConduitLaid));
    let b = edit(20, TECH2, None, progress(60, S::ConduitLaid));
    let first = run(vec![a.clone(), b.clone()]);
    // Another replica whose change hashes are the same writes, computed anew.
    let second = run(vec![b.clone(), a.clone()]);
    assert_eq!(first.conflicts, second.conflicts);
    // A third concurrent write makes it a different contest, with a different id.
    let c = edit(30, FOREMAN, None, progress(50, S::ConduitLaid));
    let third = run(vec![a, b, c]);
    let contest = third.conflicts.iter().find(|c| c.kind == ConflictKind::Contest).unwrap();
    assert_ne!(contest.id, first.conflicts[0].id);
    assert_eq!(contest.candidates.len(), 3);
}

#[test]
fn unknown_kinds_from_newer_apps_are_kept_and_ignored() {
    let future = edit(10, TECH, None, EditValue::Unknown { field: "soil_type".into() });
    let p = edit(20, TECH, None, progress(5, S::Planned));
    let v = run(vec![future, p]);
    assert_eq!(v.view.progress, 5);
    assert!(v.conflicts.is_empty());
}

#[test]
fn a_transition_stamped_days_ahead_does_not_freeze_the_section() {
    // A technician's phone runs two days ahead; the foreman builds on the
    // technician's transition with an honest, much earlier stamp.
    let two_days = 2 * 24 * 3600 * 1000;
    let ahead = edit(two_days, TECH, None, go(S::Planned, S::Surveyed));
    let next = edit(1_000, FOREMAN, Some(&ahead), go(S::Surveyed, S::Trenched));
    let then = edit(2_000, TECH2, Some(&next), go(S::Trenched, S::ConduitLaid));
    let v = run(vec![ahead.clone(), next.clone(), then.clone()]);
    assert_eq!(v.view.state, S::ConduitLaid);
    assert_eq!(decision(&v, &ahead), Decision::Superseded { by: next.id.clone() });
    assert_eq!(decision(&v, &next), Decision::Superseded { by: then.id.clone() });
    assert_eq!(decision(&v, &then), Decision::Accepted);
    let kinds: Vec<_> = v.view.events.iter().map(|e| e.edit_id.clone()).collect();
    assert_eq!(kinds, [ahead.id.clone(), next.id.clone(), then.id.clone()]);
    assert!(v.conflicts.is_empty(), "{:?}", v.conflicts);
}

#[test]
fn transitions_built_on_a_write_that_did_not_stand_are_stale_whatever_their_stamps() {
    let by_foreman = edit(50, FOREMAN, None, go(S::Planned, S::Trenched));
    let by_tech = edit(10, TECH, None, go(S::Planned, S::Surveyed));
    // Built on the technician's transition, which lost: stale, even stamped after everything.
    let on_loser = edit(90, TECH, Some(&by_tech), go(S::Surveyed, S::Trenched));
    // Built on the foreman's, stamped before it: stands.
    let on_winner = edit(20, TECH2, Some(&by_foreman), go(S::Trenched, S::ConduitLaid));
    let v = run(vec![by_foreman.clone(), by_tech.clone(), on_loser.clone(), on_winner.clone()]);
    assert_eq!(v.view.state, S::ConduitLaid);
    assert_eq!(rejected_by(&v, &by_tech), Rule::TransitionPrecedence);
    assert_eq!(rejected_by(&v, &on_loser), Rule::StaleTransition);
    assert_eq!(decision(&v, &on_winner), Decision::Accepted);
}

#[test]
fn a_hundred_thousand_transitions_with_distinct_bases_are_folded_once_each() {
    // Hostile: every transition names a base of its own. Each is looked at
    // once (the fold used to re-partition the rest once per base: ~5·10⁹ steps).
    let first = edit(1, TECH, None, go(S::Planned, S::Surveyed));
    let mut edits = vec![first.clone()];
    for i in 0..100_000u64 {
        let mut e = edit(10 + i, TECH2, None, go(S::Surveyed, S::Trenched));
        e.base = Some(format!("no-such-base-{i}"));
        edits.push(e);
    }
    let v = run(edits);
    assert_eq!(v.view.state, S::Surveyed);
    assert_eq!(v.decisions.values().filter(|d| matches!(d, Decision::Rejected { .. })).count(), 100_000);
}

#[test]
fn a_foremans_rollback_beats_a_technicians_concurrent_raise_whatever_the_stamps() {
    let start = edit(10, TECH, None, progress(50, S::ConduitLaid));
    // Both saw 50%: the foreman rolls back to 35%, the technician (later stamp) raises to 60%.
    let rollback = edit(20, FOREMAN, Some(&start), progress(35, S::ConduitLaid));
    let raise = edit(30, TECH, Some(&start), progress(60, S::ConduitLaid));
    for edits in
        [vec![start.clone(), rollback.clone(), raise.clone()], vec![raise.clone(), start.clone(), rollback.clone()]]
    {
        let v = run(edits);
        assert_eq!(v.view.progress, 35);
        assert_eq!(decision(&v, &rollback), Decision::Accepted);
        assert_eq!(rejected_by(&v, &raise), Rule::ProgressRolePrecedence);
        // One record: the rejection and the contest have the same candidates and rule.
        let record = v.conflicts.iter().find(|c| c.rule == Rule::ProgressRolePrecedence).unwrap();
        assert_eq!(record.winner.as_deref(), Some(rollback.id.as_str()));
    }
    // With the raise stamped first, the rollback supersedes it, and the contest says why.
    let early_raise = edit(15, TECH, Some(&start), progress(60, S::ConduitLaid));
    let v = run(vec![start.clone(), early_raise.clone(), rollback.clone()]);
    assert_eq!(v.view.progress, 35);
    let contest = v.conflicts.iter().find(|c| c.kind == ConflictKind::Contest).unwrap();
    assert_eq!(contest.rule, Rule::ProgressRolePrecedence);
}

#[test]
fn progress_claimed_in_a_state_the_section_never_was_is_refused() {
    // Planned allows 0–10; a writer claiming `completed` to record 100% is refused.
    let claim = edit(10, TECH, None, progress(100, S::Completed));
    let mut edits = vec![claim.clone(), edit(5, TECH2, None, go(S::Planned, S::Surveyed))];
    edits.sort_by(|a, b| a.id.cmp(&b.id));
    let v = run(edits);
    assert_eq!(v.view.progress, 0);
    assert_eq!(rejected_by(&v, &claim), Rule::ProgressBand);
}

#[test]
fn a_location_stamped_days_ahead_does_not_outlast_the_writes_made_after_it() {
    let two_days = 2 * 24 * 3600 * 1000;
    let route = edit(
        1,
        OFFICE,
        None,
        EditValue::Route { points: vec![GeoPoint { lat: 48.0, lon: 11.0 }, GeoPoint { lat: 48.0, lon: 11.01 }] },
    );
    let ahead = edit(two_days, TECH, None, point(48.0, 11.002));
    // Made after seeing it (its base), on an honest clock: it counts later.
    let after = edit(1_000, TECH2, Some(&ahead), point(48.0, 11.004));
    let v = run(vec![route, ahead.clone(), after.clone()]);
    assert_eq!(v.view.location.as_ref().map(|p| p.edit_id.clone()), Some(after.id.clone()));
    assert_eq!(decision(&v, &ahead), Decision::Superseded { by: after.id.clone() });
}

#[test]
fn a_write_is_judged_under_the_role_its_author_held_then() {
    // fred is a foreman until t=100, a technician from then on, and removed at t=300.
    let history = [
        RoleChange { user: "fred".into(), role: Some(Role::Foreman), at_ms: 0 },
        RoleChange { user: "fred".into(), role: Some(Role::Technician), at_ms: 100 },
        RoleChange { user: "fred".into(), role: None, at_ms: 300 },
    ];
    let roster = roster().with_history(history);
    let skip = edit(50, FOREMAN, None, go(S::Planned, S::Trenched));
    let skip_again = edit(150, FOREMAN, Some(&skip), go(S::Trenched, S::CablePulled));
    let step = edit(200, FOREMAN, Some(&skip), go(S::Trenched, S::ConduitLaid));
    let after_removal = edit(350, FOREMAN, Some(&step), go(S::ConduitLaid, S::CablePulled));
    let (v, input) = run_with(&roster, vec![skip.clone(), skip_again.clone(), step.clone(), after_removal.clone()]);
    // The skip made as a foreman stands, whatever fred is today.
    assert_eq!(decision(&v, &skip), Decision::Superseded { by: step.id.clone() });
    assert_eq!(rejected_by(&v, &skip_again), Rule::TransitionNotAllowed);
    assert_eq!(decision(&v, &step), Decision::Accepted);
    assert_eq!(rejected_by(&v, &after_removal), Rule::NotAMemberThen);
    assert_eq!(v.view.state, S::ConduitLaid);
    // The audit names the role each write was made under.
    let audit = v.audit(&input, &roster);
    let role_of = |e: &Edit| audit.iter().find(|a| a.edit_id == e.id).and_then(|a| a.role);
    assert_eq!(
        (role_of(&skip), role_of(&step), role_of(&after_removal)),
        (Some(Role::Foreman), Some(Role::Technician), None)
    );
}

/// fred is a foreman until `demoted_at`, a technician from then on.
fn fred_demoted_at(demoted_at: u64) -> Roster {
    roster().with_history([
        RoleChange { user: "fred".into(), role: Some(Role::Foreman), at_ms: 0 },
        RoleChange { user: "fred".into(), role: Some(Role::Technician), at_ms: demoted_at },
    ])
}

#[test]
fn a_write_stamped_days_ahead_keeps_its_decision_after_a_later_demotion() {
    // fred's phone runs two days ahead; the hub receives his skip at 1,000
    // and the office demotes him at 5,000 (hub time).
    let two_days = 2 * 24 * 3600 * 1000;
    let skip = edit(two_days, FOREMAN, None, go(S::Planned, S::Trenched));
    let received = [(&skip, 1_000)];
    let (before, _) = run_received(&roster(), vec![skip.clone()], &received);
    let (after, input) = run_received(&fred_demoted_at(5_000), vec![skip.clone()], &received);
    assert_eq!(decision(&before, &skip), Decision::Accepted);
    assert_eq!(decision(&after, &skip), Decision::Accepted);
    assert_eq!(after.view.state, S::Trenched);
    assert_eq!(after.counted_at(&skip), 1_000);
    // The audit shows the role in force when the hub received it, and when that was.
    let audit = after.audit(&input, &fred_demoted_at(5_000));
    let entry = audit.iter().find(|a| a.edit_id == skip.id).unwrap();
    assert_eq!((entry.role, entry.received_ms), (Some(Role::Foreman), Some(1_000)));
    // Not yet received (an unconfirmed local write), it is judged at its stamp.
    let (optimistic, input) = run_received(&fred_demoted_at(5_000), vec![skip.clone()], &[]);
    assert_eq!(rejected_by(&optimistic, &skip), Rule::TransitionNotAllowed);
    assert_eq!(optimistic.audit(&input, &fred_demoted_at(5_000))[0].received_ms, None);
}

#[test]
fn a_backdated_write_built_on_a_write_received_after_the_demotion_is_judged_under_the_new_role() {
    // fred is demoted at 5,000. A technician starts the section afterwards
    // (received at 6,100); fred, having seen that, skips ahead with a stamp
    // backdated to 4,000, when he was still a foreman.
    let start = edit(6_000, TECH, None, go(S::Planned, S::Surveyed));
    let skip = edit(4_000, FOREMAN, Some(&start), go(S::Surveyed, S::CablePulled));
    let roster = fred_demoted_at(5_000);
    let (v, input) = run_received(&roster, vec![start.clone(), skip.clone()], &[(&start, 6_100), (&skip, 7_000)]);
    assert_eq!(rejected_by(&v, &skip), Rule::TransitionNotAllowed);
    assert_eq!(v.view.state, S::Surveyed);
    assert_eq!(v.counted_at(&skip), 6_000);
    let audit = v.audit(&input, &roster);
    assert_eq!(audit.iter().find(|a| a.edit_id == skip.id).unwrap().role, Some(Role::Technician));
}

#[test]
fn a_base_the_hub_received_after_the_write_does_not_move_it() {
    // A tampered client names as its base a write it had not made yet; when
    // that write reaches the hub, the first one keeps its judgement.
    let first = edit(4_000, FOREMAN, None, go(S::Planned, S::Trenched));
    let named_ahead = edit(8_000, FOREMAN, None, go(S::Planned, S::Surveyed));
    let first = Edit { base: Some(named_ahead.id.clone()), ..first };
    let roster = fred_demoted_at(5_000);
    let (alone, _) = run_received(&roster, vec![first.clone()], &[(&first, 4_500)]);
    let (v, _) =
        run_received(&roster, vec![first.clone(), named_ahead.clone()], &[(&first, 4_500), (&named_ahead, 9_000)]);
    assert_eq!((alone.counted_at(&first), v.counted_at(&first)), (4_000, 4_000));
}

#[test]
fn a_location_stamped_days_ahead_loses_to_a_concurrent_location_the_hub_received_later() {
    let two_days = 2 * 24 * 3600 * 1000;
    let ahead = edit(two_days, TECH, None, point(0.0001, 0.002));
    let later = edit(2_000, TECH2, None, point(0.0002, 0.004));
    let received = [(&ahead, 1_000), (&later, 2_100)];
    let (v, _) = run_received(&roster(), with_route(vec![ahead.clone(), later.clone()]), &received);
    assert_eq!(v.view.location.as_ref().map(|p| p.edit_id.as_str()), Some(later.id.as_str()));
    assert_eq!(decision(&v, &ahead), Decision::Superseded { by: later.id.clone() });
    let contest = v.conflicts.iter().find(|c| c.kind == ConflictKind::Contest).unwrap();
    assert_eq!((contest.rule, contest.winner.as_deref()), (Rule::LocationLastWriterWins, Some(later.id.as_str())));
}

/// Each deliberate breakage of the rules (`Mutation`, feature `mutations`)
/// must make at least one of the tests above fail: the suite would catch it.
#[test]
fn every_rule_mutation_is_caught_by_this_suite() {
    let suite: [fn(); 27] = [
        concurrent_progress_reports_the_highest_stands,
        max_wins_whatever_the_stamps_say,
        only_a_foreman_or_office_rolls_progress_back,
        progress_outside_range_or_band_is_refused,
        technicians_step_forward_one_state_at_a_time,
        concurrent_transitions_the_higher_role_wins_even_with_an_older_stamp,
        concurrent_transitions_of_equal_role_the_later_stamp_wins,
        the_same_transition_twice_concurs_and_the_follow_up_builds_on_it,
        blocked_sections_go_back_where_they_were_and_only_a_foreman_unblocks,
        foremen_skip_and_rework_and_completion_raises_its_event,
        locations_last_writer_wins_among_valid_points,
        off_route_points_are_quarantined_not_lost_and_a_foreman_can_accept_them,
        without_a_route_no_point_is_quarantined_but_bad_coordinates_are_refused,
        only_office_names_sections_and_plans_routes,
        unknown_authors_and_forged_stamps_are_refused,
        conflict_ids_derive_from_the_candidates_only,
        unknown_kinds_from_newer_apps_are_kept_and_ignored,
        a_transition_stamped_days_ahead_does_not_freeze_the_section,
        transitions_built_on_a_write_that_did_not_stand_are_stale_whatever_their_stamps,
        a_foremans_rollback_beats_a_technicians_concurrent_raise_whatever_the_stamps,
        progress_claimed_in_a_state_the_section_never_was_is_refused,
        a_location_stamped_days_ahead_does_not_outlast_the_writes_made_after_it,
        a_write_is_judged_under_the_role_its_author_held_then,
        a_write_stamped_days_ahead_keeps_its_decision_after_a_later_demotion,
        a_backdated_write_built_on_a_write_received_after_the_demotion_is_judged_under_the_new_role,
        a_base_the_hub_received_after_the_write_does_not_move_it,
        a_location_stamped_days_ahead_loses_to_a_concurrent_location_the_hub_received_later,
    ];
    for mutation in Mutation::ALL {
        set_mutation(Some(mutation));
        let caught = suite.iter().position(|test| std::panic::catch_unwind(test).is_err());
        set_mutation(None);
        assert!(caught.is_some(), "the rule mutation {mutation:?} survived every rules test");
    }
}
