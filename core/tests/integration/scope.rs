//! Partial sync on the replica: the scope a round sends (a change kept as
//! sent until the server finishes it), and sections dropped when a round
//! says the scope no longer covers them, never before their edits are up.

use fieldsync_core::protocol::{self, Holding, SyncResponse};
use fieldsync_core::{HeldBecause, Replica, ReplicaError, Role, Scope, Subscription};

use crate::common::{PROJECT, crew, route, sync_section};

fn response(cursor: &str, more: bool, sent: usize) -> SyncResponse {
    SyncResponse {
        server_time_ms: 1_700_000_000_000,
        changes: vec![],
        documents: vec![],
        cursor: cursor.into(),
        more,
        roster: None,
        upload_received: vec![1_700_000_000_000; sent],
        evicted: vec![],
        keep_only: None,
        still_to_send: None,
        full_size_photos: None,
    }
}

/// One round answered with `answer` (given how many changes went up).
fn round(r: &mut Replica, answer: impl FnOnce(usize) -> SyncResponse) -> protocol::SyncRequest {
    let prepared = r.prepare_round(PROJECT, 1 << 20, protocol::DEFAULT_RESPONSE_BUDGET).unwrap();
    r.commit_round(PROJECT, &prepared.sent, answer(prepared.sent.len())).unwrap();
    prepared.request
}

fn only(ids: &[&str]) -> Scope {
    Scope::Only(vec![Subscription::Sections(ids.iter().map(|s| s.to_string()).collect())])
}

#[test]
fn a_change_of_scope_is_sent_until_finished_and_sections_leave_only_once_their_edits_are_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = crew(dir.path(), &[Role::Office, Role::Technician]);
    let (office, tech) = r.split_at_mut(1);
    let (office, tech) = (&mut office[0], &mut tech[0]);
    let [a, b, c]: [String; 3] =
        std::array::from_fn(|i| office.create_section(PROJECT, &format!("S{i}"), &route()).unwrap());
    for s in [&a, &b, &c] {
        sync_section(office, tech, s);
    }
    // A bootstrap holds everything, as every device before partial sync.
    let first = round(tech, |n| response("c:1", false, n));
    assert_eq!((first.scope, first.held), (Scope::Everything, None));

    let corridor = only(&[&a]);
    tech.set_scope(PROJECT, corridor.clone()).unwrap();
    tech.set_notes(&b, "duct blocked").unwrap();
    let prepared = tech.prepare_round(PROJECT, 1 << 20, protocol::DEFAULT_RESPONSE_BUDGET).unwrap();
    assert_eq!((&prepared.request.scope, &prepared.request.held), (&corridor, &Some(Scope::Everything)));
    // A change of mind mid-way waits: the change under way is sent as it was.
    tech.set_scope(PROJECT, only(&[&c])).unwrap();
    let keep = Holding { sections: vec![a.clone()] };
    tech.commit_round(PROJECT, &[], SyncResponse { keep_only: Some(keep), ..response("b:1:x", true, 0) }).unwrap();
    assert!(matches!(tech.section(&c), Err(ReplicaError::UnknownSection(_))), "c left the scope");
    let holdings = tech.holdings(PROJECT).unwrap();
    let of = |id: &str| holdings.iter().find(|h| h.section == id).map(|h| h.reasons.clone());
    assert_eq!(of(&b).unwrap(), [HeldBecause::UnsyncedEdits, HeldBecause::ScopeChanging], "b waits for its edit");
    assert!(of(&a).is_some() && of(&c).is_none());

    // The next page finishes the change and takes b's edit: b goes too.
    let next = round(tech, |n| {
        assert_eq!(n, 1, "b's notes go up");
        response("c:9", false, n)
    });
    assert_eq!((&next.scope, &next.held), (&corridor, &Some(Scope::Everything)));
    assert!(matches!(tech.section(&b), Err(ReplicaError::UnknownSection(_))));
    assert_eq!(tech.holdings(PROJECT).unwrap().len(), 1);

    // Then the scope asked for meanwhile is the next change, from the one now held.
    let after = round(tech, |n| SyncResponse { evicted: vec![a.clone()], ..response("c:10", false, n) });
    assert_eq!((&after.scope, &after.held), (&only(&[&c]), &Some(corridor)));
    assert!(tech.holdings(PROJECT).unwrap().is_empty());
    let settled = tech.prepare_round(PROJECT, 1 << 20, protocol::DEFAULT_RESPONSE_BUDGET).unwrap().request;
    assert_eq!((settled.scope, settled.held), (only(&[&c]), None), "settled: nothing held apart");
}

#[test]
fn scopes_over_the_limits_are_refused_before_anything_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut tech = crew(dir.path(), &[Role::Technician]).pop().unwrap();
    let wide = Scope::Only(vec![Subscription::Corridor { points: route(), buffer_m: 1_000_000 }]);
    let err = tech.set_scope(PROJECT, wide).unwrap_err();
    assert!(err.to_string().contains("at most 50000 m"), "{err}");
    assert_eq!(tech.scope(PROJECT).unwrap(), Scope::Everything);
    let added = tech.subscribe(PROJECT, Subscription::Crew("north".into())).unwrap();
    assert_eq!(added, Scope::Only(vec![Subscription::Crew("north".into())]));
}
