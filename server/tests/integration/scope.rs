//! Partial sync through the real server: a phone holds what its
//! subscriptions cover (a corridor, a crew's assignments, ids), a change to a
//! section outside them costs it nothing on the wire, a section whose route
//! or crew moves in arrives whole and one moving out leaves (after the
//! phone's edits of it are up), and a scope never widens access.

use fieldsync_core::{GeoPoint, HeldBecause, Role, Scope, Subscription, protocol};

use crate::common::*;

fn line(lat: f64, from: f64, to: f64) -> Vec<GeoPoint> {
    vec![GeoPoint { lat, lon: from }, GeoPoint { lat, lon: to }]
}

/// The crew's corridor: due east along 48° N from 10.99° to 11.05° E, 500 m either side.
fn corridor() -> Subscription {
    Subscription::Corridor { points: line(48.0, 10.99, 11.05), buffer_m: 500 }
}

fn held(device: &Device) -> Vec<String> {
    device.replica.holdings(PROJECT).unwrap().into_iter().map(|h| h.section).collect()
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[test]
fn a_crew_holds_its_corridor_and_what_moves_in_or_out_follows_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(hub_with(dir.path(), &[("olga", Role::Office), ("tina", Role::Technician)]));
    let mut olga = Device::enroll(&server.hub, dir.path(), "olga");
    let mut tina = Device::enroll(&server.hub, dir.path(), "tina");
    olga.sync(&server);
    let create = |olga: &mut Device, name: &str, route: Vec<GeoPoint>| {
        olga.replica.create_section_with_id(name, PROJECT, name, &route).unwrap();
        name.to_owned()
    };
    let near: Vec<String> = (0..3)
        .map(|i| {
            create(
                &mut olga,
                &format!("near-{i}"),
                line(48.002, 11.0 + 0.01 * f64::from(i), 11.005 + 0.01 * f64::from(i)),
            )
        })
        .collect();
    let far: Vec<String> =
        (0..3).map(|i| create(&mut olga, &format!("far-{i}"), line(49.0 + f64::from(i), 12.0, 12.01))).collect();
    olga.replica.assign_crew(&far[0], "north").unwrap();
    olga.sync(&server);

    // A new phone subscribed to its corridor and its crew's sections bootstraps only those.
    tina.replica.subscribe(PROJECT, corridor()).unwrap();
    tina.replica.subscribe(PROJECT, Subscription::Crew("north".into())).unwrap();
    let rounds = tina.sync(&server);
    let documents: usize = rounds.iter().map(|r| r.documents).sum();
    assert_eq!(documents, 4, "three in the corridor, one assigned to the crew");
    let mut expected = near.clone();
    expected.push(far[0].clone());
    assert_eq!(held(&tina), sorted(expected.clone()));
    let why = tina.replica.holdings(PROJECT).unwrap();
    assert_eq!(why.iter().find(|h| h.section == far[0]).unwrap().reasons, [HeldBecause::Subscription { index: 1 }]);

    // Work elsewhere costs the crew nothing on the wire.
    olga.replica.record_progress(&far[1], 5).unwrap();
    olga.replica.set_notes(&far[2], "permit pending").unwrap();
    olga.sync(&server);
    let idle = tina.round(&server);
    assert!(idle.changes.is_empty() && idle.documents == 0 && !idle.more);
    assert!(idle.received < 1024 && idle.sent < 1024, "idle round: {} bytes up, {} down", idle.sent, idle.received);

    // Work in the corridor arrives as changes.
    olga.replica.record_progress(&near[1], 5).unwrap();
    olga.sync(&server);
    let news = tina.round(&server);
    assert!(!news.changes.is_empty() && news.documents == 0);
    assert_eq!(tina.replica.section(&near[1]).unwrap().progress, 5);

    // A route moved into the corridor brings its section whole; one moved out
    // leaves once the crew's own edit of it is up.
    olga.replica.set_route(&far[1], &line(47.999, 11.02, 11.03)).unwrap();
    olga.replica.set_route(&near[2], &line(47.5, 11.0, 11.01)).unwrap();
    olga.sync(&server);
    tina.replica.set_notes(&near[2], "splice closure 4 done").unwrap();
    let moved = tina.round(&server);
    assert_eq!(moved.documents, 1, "far-1 entered whole");
    assert_eq!(tina.replica.section(&far[1]).unwrap().progress, 5, "with what was done before it entered");
    assert_eq!(server.hub.section_view(&near[2]).unwrap().unwrap().notes, "splice closure 4 done", "nothing lost");
    assert_eq!(held(&tina), sorted(vec![near[0].clone(), near[1].clone(), far[0].clone(), far[1].clone()]));

    // Reassigned to another crew: it leaves.
    olga.replica.assign_crew(&far[0], "south").unwrap();
    olga.sync(&server);
    tina.sync(&server);
    assert_eq!(held(&tina), sorted(vec![near[0].clone(), near[1].clone(), far[1].clone()]));

    // Back to everything: the rest arrives whole, and every copy agrees with the hub.
    tina.replica.set_scope(PROJECT, Scope::Everything).unwrap();
    tina.sync(&server);
    let all = sorted(near.iter().chain(&far).cloned().collect());
    assert_eq!(held(&tina), all);
    for id in &all {
        assert_eq!(tina.replica.section(id).unwrap(), server.hub.section_view(id).unwrap().unwrap(), "{id}");
    }
}

#[test]
fn a_scope_never_widens_access_and_a_protocol_3_phone_still_gets_everything() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(hub_with(dir.path(), &[("olga", Role::Office), ("tina", Role::Technician)]));
    server.hub.create_project("p2", fieldsync_core::ProjectConfig::default()).unwrap();
    server.hub.add_member("p2", "olga", Role::Office).unwrap();
    let mut olga = Device::enroll(&server.hub, dir.path(), "olga");
    let mut tina = Device::enroll(&server.hub, dir.path(), "tina");
    olga.sync(&server);
    olga.replica.create_section_with_id("mine", PROJECT, "mine", &route()).unwrap();
    olga.sync(&server);
    // A section of a project tina is not in, put there through olga's replica.
    let p2_round = |olga: &mut Device| {
        let prepared = olga.replica.prepare_round("p2", 1 << 20, protocol::DEFAULT_RESPONSE_BUDGET).unwrap();
        let reply = post_sync(server.addr, &olga.token, &protocol::encode(&prepared.request));
        assert_eq!(reply.status, 200);
        olga.replica.commit_round("p2", &prepared.sent, protocol::decode(&reply.body).unwrap()).unwrap();
    };
    p2_round(&mut olga);
    olga.replica.create_section_with_id("secret", "p2", "secret", &route()).unwrap();
    p2_round(&mut olga);
    assert!(server.hub.section_view("secret").unwrap().is_some());

    tina.replica.subscribe(PROJECT, Subscription::Sections(vec!["secret".into(), "mine".into()])).unwrap();
    tina.sync(&server);
    assert_eq!(held(&tina), ["mine"], "the other project's section is never sent");

    // A subscription over the limits is refused with what to change.
    let mut request = tina.replica.prepare_round(PROJECT, 1 << 20, protocol::DEFAULT_RESPONSE_BUDGET).unwrap().request;
    request.scope = Scope::Only(vec![Subscription::Corridor { points: route(), buffer_m: 9_000_000 }]);
    let reply = post_sync(server.addr, &tina.token, &protocol::encode(&request));
    assert_eq!(reply.status, 400);
    assert!(reply.error().message.contains("subscribe to less"), "{:?}", reply.error());

    // A phone of protocol 3 sends no scope: it holds everything, as before.
    request.protocol = 3;
    request.scope = Scope::Everything;
    request.held = None;
    request.cursor = String::new();
    // Its body: this one's without the two fields protocol 4 added at the end.
    let mut raw = postcard::to_allocvec(&request).unwrap();
    assert_eq!(raw.split_off(raw.len() - 2), [0, 0], "everything, nothing held");
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut z, &raw).unwrap();
    let body = z.finish().unwrap();
    let reply = post_sync(server.addr, &tina.token, &body);
    assert_eq!(reply.status, 200, "{:?}", String::from_utf8_lossy(&reply.body));
    let response: protocol::SyncResponse = protocol::decode(&reply.body).unwrap();
    assert_eq!(response.documents.len(), 1);
}

#[test]
fn a_live_channel_wakes_a_crew_only_for_work_in_its_scope() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(hub_with(dir.path(), &[("olga", Role::Office), ("tina", Role::Technician)]));
    let mut olga = Device::enroll(&server.hub, dir.path(), "olga");
    let mut tina = Device::enroll(&server.hub, dir.path(), "tina");
    olga.sync(&server);
    for (id, route) in [("near", line(48.002, 11.0, 11.01)), ("far", line(49.0, 12.0, 12.01))] {
        olga.replica.create_section_with_id(id, PROJECT, id, &route).unwrap();
    }
    olga.sync(&server);
    tina.replica.subscribe(PROJECT, corridor()).unwrap();
    tina.sync(&server);
    let mut ws = crate::live::connect(&server, &tina.token, PROJECT).unwrap();

    // Work elsewhere first, then in the corridor: the first notice is the second commit's.
    olga.replica.record_progress("far", 5).unwrap();
    olga.round(&server);
    olga.replica.record_progress("near", 5).unwrap();
    let near = olga.round(&server).cursor;
    let told: u64 = crate::live::next_text(&mut ws).parse().unwrap();
    assert_eq!(format!("c:{told}"), near, "the commit elsewhere woke nobody holding the corridor");
    assert_eq!(tina.round(&server).changes.len(), 1);
}

#[test]
fn a_change_of_scope_whose_answer_is_lost_is_answered_again_the_same_way() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(hub_with(dir.path(), &[("olga", Role::Office), ("tina", Role::Technician)]));
    let mut olga = Device::enroll(&server.hub, dir.path(), "olga");
    let mut tina = Device::enroll(&server.hub, dir.path(), "tina");
    olga.sync(&server);
    for (id, route) in [("near", line(48.002, 11.0, 11.01)), ("far", line(49.0, 12.0, 12.01))] {
        olga.replica.create_section_with_id(id, PROJECT, id, &route).unwrap();
    }
    olga.sync(&server);
    tina.sync(&server);
    assert_eq!(held(&tina), ["far", "near"]);

    // The link cuts while the answer to the change of scope travels: the server
    // answered, the phone committed nothing.
    tina.replica.subscribe(PROJECT, corridor()).unwrap();
    let lost = tina.replica.prepare_round(PROJECT, 1 << 20, protocol::DEFAULT_RESPONSE_BUDGET).unwrap();
    assert_eq!(post_sync(server.addr, &tina.token, &protocol::encode(&lost.request)).status, 200);
    assert_eq!(held(&tina), ["far", "near"], "nothing changes before an answer is committed");

    // The next round sends the same change and is answered the same way.
    let again = tina.replica.prepare_round(PROJECT, 1 << 20, protocol::DEFAULT_RESPONSE_BUDGET).unwrap();
    assert_eq!((&again.request.scope, &again.request.held), (&lost.request.scope, &lost.request.held));
    tina.sync(&server);
    assert_eq!(held(&tina), ["near"]);
    assert_eq!(tina.replica.section("near").unwrap(), server.hub.section_view("near").unwrap().unwrap());
}
