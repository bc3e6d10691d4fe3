//! Rounds over real HTTP: roster, changes flowing between devices, idempotent
//! re-sends, paging, bootstrap, restarts and the size of an idle round.

use std::collections::HashSet;
use std::sync::Arc;

use automerge::Change;
use fieldsync_core::protocol;
use fieldsync_core::{ConstructionState, GeoPoint, Role};
use fieldsync_server::Hub;

use crate::common::*;

#[test]
fn enrollment_and_first_round_bring_the_roster() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(hub_with(dir.path(), &[("olga", Role::Office), ("tina", Role::Technician)]));
    let mut tina = Device::enroll(&server.hub, dir.path(), "tina");
    assert_eq!(tina.replica.role_in(PROJECT).unwrap(), None);

    let first = tina.round(&server);
    assert!(first.roster && !first.more);
    assert_eq!(first.cursor, "c:0");
    assert_eq!(tina.replica.role_in(PROJECT).unwrap(), Some(Role::Technician), "the device learns its role");
    // The actor is now bound to this device.
    let devices = server.hub.list_devices().unwrap();
    let d = devices.iter().find(|d| d.device.id == tina.id).unwrap();
    assert_eq!(d.actors, vec![tina.replica.actor()]);
    // The roster does not travel again while it has not changed.
    assert!(!tina.round(&server).roster);
    // A new member changes it: it travels once more.
    server.hub.add_member(PROJECT, "fred", Role::Foreman).unwrap();
    assert!(tina.round(&server).roster);
}

#[test]
fn changes_flow_between_devices_through_the_hub() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(hub_with(dir.path(), &[("olga", Role::Office), ("tina", Role::Technician)]));
    let mut olga = Device::enroll(&server.hub, dir.path(), "olga");
    let mut tina = Device::enroll(&server.hub, dir.path(), "tina");
    olga.sync(&server);
    tina.sync(&server);

    let id = olga.replica.create_section(PROJECT, "Hauptstraße north", &route()).unwrap();
    olga.replica.transition(&id, ConstructionState::Surveyed, None).unwrap();
    olga.replica.set_notes(&id, "dig carefully near the school").unwrap();
    olga.replica.add_photo(&id, "content://photos/1", Some("the school")).unwrap();
    let up = olga.round(&server);
    assert_eq!(up.report.confirmed, 4, "creation, transition, notes, photo");
    assert_eq!(olga.replica.sync_status().unwrap().pending_changes, 0);

    let down = tina.round(&server);
    assert_eq!(down.changes.len(), 4, "tina receives olga's changes");
    assert_eq!(tina.replica.section(&id).unwrap(), olga.replica.section(&id).unwrap());

    // And back: tina's progress and location reach olga.
    tina.replica.transition(&id, ConstructionState::Trenched, None).unwrap();
    tina.replica.record_progress(&id, 30).unwrap();
    tina.replica.report_location(&id, GeoPoint { lat: 48.0001, lon: 11.005 }).unwrap();
    tina.replica.splice_notes(&id, 0, 3, "Dig").unwrap();
    let up = tina.round(&server);
    assert!(up.changes.is_empty(), "a device is not sent its own changes");
    let down = olga.round(&server);
    assert_eq!(down.changes.len(), 4);
    let view = olga.replica.section(&id).unwrap();
    assert_eq!((view.state, view.progress), (ConstructionState::Trenched, 30));
    assert_eq!(view, tina.replica.section(&id).unwrap());
    // The hub validated with the same rules: its view is the same.
    assert_eq!(server.hub.section_view(&id).unwrap().unwrap(), view);
    assert_eq!(server.hub.conflicts(PROJECT).unwrap(), olga.replica.conflicts(None).unwrap());
}

#[test]
fn sending_the_same_request_twice_is_harmless() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(hub_with(dir.path(), &[("olga", Role::Office)]));
    let mut olga = Device::enroll(&server.hub, dir.path(), "olga");
    olga.sync(&server);
    let id = olga.replica.create_section(PROJECT, "s", &route()).unwrap();
    olga.replica.record_progress(&id, 5).unwrap();

    let prepared = olga.replica.prepare_round(PROJECT, 1 << 20, protocol::DEFAULT_RESPONSE_BUDGET).unwrap();
    let body = protocol::encode(&prepared.request);
    let first = post_sync(server.addr, &olga.token, &body);
    assert_eq!(first.status, 200);
    let after_first = stored(&server.hub);
    // The response was "lost": the device sends the same request again.
    let second = post_sync(server.addr, &olga.token, &body);
    assert_eq!(second.status, 200);
    assert_eq!(stored(&server.hub), after_first, "no duplicate feed rows, nothing else changed");
    assert_eq!(after_first.0[0].changes, 2, "creation and progress");
    let response: protocol::SyncResponse = protocol::decode(&second.body).unwrap();
    olga.replica.commit_round(PROJECT, &prepared.sent, response).unwrap();
    assert_eq!(olga.replica.sync_status().unwrap().pending_changes, 0);
    // A third device-side round is a no-op too.
    olga.sync(&server);
    assert_eq!(server.hub.list_projects().unwrap()[0].changes, 2);
}

#[test]
fn a_small_budget_pages_the_backlog_without_loss_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(hub_with(dir.path(), &[("olga", Role::Office), ("fred", Role::Foreman)]));
    let mut olga = Device::enroll(&server.hub, dir.path(), "olga");
    let mut fred = Device::enroll(&server.hub, dir.path(), "fred");
    olga.sync(&server);
    fred.sync(&server);

    let mut ids = Vec::new();
    for i in 0..12 {
        let id = olga.replica.create_section(PROJECT, &format!("section {i}"), &route()).unwrap();
        olga.replica.transition(&id, ConstructionState::Surveyed, None).unwrap();
        for p in [5, 10, 15] {
            olga.replica.record_progress(&id, p).unwrap();
        }
        ids.push(id);
    }
    olga.sync(&server);
    let total = server.hub.list_projects().unwrap()[0].changes as usize;
    assert_eq!(total, 12 * 5);

    let rounds = fred.sync_with(&server, 2_000);
    assert!(rounds.len() >= 4, "{} rounds", rounds.len());
    assert!(rounds[..rounds.len() - 1].iter().all(|r| r.more));
    assert!(!rounds.last().unwrap().more);
    let mut seen = HashSet::new();
    for r in &rounds {
        for c in &r.changes {
            assert!(seen.insert(Change::from_bytes(c.clone()).unwrap().hash()), "a change was sent twice");
        }
    }
    assert_eq!(seen.len(), total, "every change arrived");
    for id in &ids {
        assert_eq!(fred.replica.section(id).unwrap(), olga.replica.section(id).unwrap());
    }
}

#[test]
fn paging_respects_the_byte_budget() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(hub_with(dir.path(), &[("olga", Role::Office), ("fred", Role::Foreman)]));
    let mut olga = Device::enroll(&server.hub, dir.path(), "olga");
    let mut fred = Device::enroll(&server.hub, dir.path(), "fred");
    olga.sync(&server);
    fred.sync(&server);
    let id = olga.replica.create_section(PROJECT, "long", &route()).unwrap();
    for i in 0..40 {
        olga.replica.set_notes(&id, &format!("note number {i} of a long day")).unwrap();
    }
    olga.sync(&server);

    let budget = 1_500;
    let mut rounds = Vec::new();
    loop {
        let r = fred.round_with(&server, budget);
        let more = r.more;
        let size: usize = r.changes.iter().map(Vec::len).sum();
        assert!(r.changes.len() == 1 || size <= budget as usize, "{size} bytes in a {budget} budget");
        rounds.push(r);
        if !more {
            break;
        }
    }
    assert!(rounds.len() > 3, "{} rounds", rounds.len());
    let received: usize = rounds.iter().map(|r| r.changes.len()).sum();
    assert_eq!(received, 41);
    assert_eq!(fred.replica.section(&id).unwrap(), olga.replica.section(&id).unwrap());
}

#[test]
fn a_new_device_is_bootstrapped_with_whole_documents() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(hub_with(dir.path(), &[("olga", Role::Office), ("fred", Role::Foreman)]));
    let mut olga = Device::enroll(&server.hub, dir.path(), "olga");
    olga.sync(&server);
    let mut ids = Vec::new();
    for i in 0..10 {
        let id = olga.replica.create_section(PROJECT, &format!("s{i}"), &route()).unwrap();
        for n in 0..8 {
            olga.replica.set_notes(&id, &format!("{n} notes on section {i}")).unwrap();
        }
        ids.push(id);
    }
    olga.sync(&server);

    let mut fred = Device::enroll(&server.hub, dir.path(), "fred");
    let mut rounds = Vec::new();
    loop {
        let r = fred.round_with(&server, 1_000);
        let more = r.more;
        rounds.push(r);
        if !more {
            break;
        }
    }
    let documents: usize = rounds.iter().map(|r| r.documents).sum();
    let changes: usize = rounds.iter().map(|r| r.changes.len()).sum();
    assert_eq!(documents, 10, "every section arrives as a document");
    assert_eq!(changes, 0, "no change is sent one by one");
    assert!(rounds.len() > 2, "paged: {} rounds", rounds.len());
    assert!(rounds[0].cursor.starts_with("b:"), "{}", rounds[0].cursor);
    assert!(rounds.last().unwrap().cursor.starts_with("c:"));
    for id in &ids {
        assert_eq!(fred.replica.section(id).unwrap(), olga.replica.section(id).unwrap());
    }
    // Afterwards it follows the feed like any other device.
    olga.replica.set_notes(&ids[0], "after bootstrap").unwrap();
    olga.sync(&server);
    let r = fred.round(&server);
    assert_eq!((r.documents, r.changes.len()), (0, 1));
    assert_eq!(fred.replica.section(&ids[0]).unwrap().notes, "after bootstrap");
}

#[test]
fn a_server_restart_between_rounds_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let hub_dir = dir.path().join("hub");
    let server = TestServer::start(hub_with(&hub_dir, &[("olga", Role::Office), ("tina", Role::Technician)]));
    let mut olga = Device::enroll(&server.hub, dir.path(), "olga");
    let mut tina = Device::enroll(&server.hub, dir.path(), "tina");
    olga.sync(&server);
    tina.sync(&server);
    let id = olga.replica.create_section(PROJECT, "s", &route()).unwrap();
    olga.sync(&server);
    let before = stored(&server.hub);
    server.stop();

    // A new process on the same data directory.
    let server = TestServer::start(Arc::new(Hub::open(&hub_dir).unwrap()));
    assert_eq!(stored(&server.hub), before);
    let r = tina.round(&server);
    assert_eq!(r.changes.len(), 1);
    assert_eq!(tina.replica.section(&id).unwrap(), olga.replica.section(&id).unwrap());
    tina.replica.transition(&id, ConstructionState::Surveyed, None).unwrap();
    tina.sync(&server);
    server.stop();

    let server = TestServer::open(&hub_dir);
    olga.sync(&server);
    assert_eq!(olga.replica.section(&id).unwrap().state, ConstructionState::Surveyed);
    assert_eq!(server.hub.list_projects().unwrap()[0].changes, 2);
}

#[test]
fn an_idle_round_is_well_under_a_kilobyte() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(hub_with(dir.path(), &[("olga", Role::Office)]));
    let mut olga = Device::enroll(&server.hub, dir.path(), "olga");
    olga.sync(&server);
    for i in 0..20 {
        let id = olga.replica.create_section(PROJECT, &format!("s{i}"), &route()).unwrap();
        olga.replica.record_progress(&id, 5).unwrap();
    }
    olga.sync(&server);
    let idle = olga.round(&server);
    println!(
        "idle round on the wire: request {} bytes, response {} bytes (HTTP/1.1 heads included)",
        idle.sent, idle.received
    );
    assert!(idle.changes.is_empty() && !idle.more && !idle.roster);
    assert!(idle.sent < 1024, "request {} bytes", idle.sent);
    assert!(idle.received < 1024, "response {} bytes", idle.received);
}

#[test]
fn health_answers() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(hub_with(dir.path(), &[]));
    let reply = raw(server.addr, "GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b"");
    assert_eq!(reply.status, 200);
    let reply = raw(server.addr, "GET /v1/nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b"");
    assert_eq!(reply.status, 404);
    assert_eq!(reply.error().error, "not_found");
}

/// One round through `Hub::sync` at the hub time `now_ms`.
fn round_at(hub: &Hub, device: &mut Device, now_ms: u64) -> protocol::SyncResponse {
    let prepared = device.replica.prepare_round(PROJECT, 1 << 20, protocol::DEFAULT_RESPONSE_BUDGET).unwrap();
    let body = hub.sync(&device.token, &protocol::encode(&prepared.request), now_ms).unwrap();
    let response: protocol::SyncResponse = protocol::decode(&body).unwrap();
    device.replica.commit_round(PROJECT, &prepared.sent, response.clone()).unwrap();
    response
}

#[test]
fn every_replica_learns_when_the_hub_received_each_change() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub_with(dir.path(), &[("olga", Role::Office), ("tina", Role::Technician)]);
    let t0 = fieldsync_server::now_ms();
    let mut olga = Device::enroll(&hub, dir.path(), "olga");
    let mut tina = Device::enroll(&hub, dir.path(), "tina");
    round_at(&hub, &mut olga, t0);
    round_at(&hub, &mut tina, t0);
    let id = olga.replica.create_section(PROJECT, "s", &route()).unwrap();
    olga.replica.record_progress(&id, 5).unwrap();
    let unconfirmed = olga.replica.audit(&id).unwrap();
    assert!(unconfirmed.iter().all(|e| e.received_ms.is_none()), "{unconfirmed:?}");

    // The response is lost; the same changes sent again later keep their first receipt.
    let prepared = olga.replica.prepare_round(PROJECT, 1 << 20, protocol::DEFAULT_RESPONSE_BUDGET).unwrap();
    hub.sync(&olga.token, &protocol::encode(&prepared.request), t0 + 1_000).unwrap();
    let again = round_at(&hub, &mut olga, t0 + 2_000);
    assert_eq!(again.upload_received, [t0 + 1_000, t0 + 1_000]);
    let received = |d: &mut Device| d.replica.audit(&id).unwrap().iter().map(|e| e.received_ms).collect::<Vec<_>>();
    assert_eq!(received(&mut olga), [Some(t0 + 1_000); 3], "name, route, progress");

    // Another device gets them from the feed, each with its receipt.
    let down = round_at(&hub, &mut tina, t0 + 3_000);
    assert_eq!(down.changes[0].received, [t0 + 1_000, t0 + 1_000]);
    assert_eq!(received(&mut tina), [Some(t0 + 1_000); 3]);
    // A new device bootstraps the whole document, the receipts of its changes with it.
    let mut fresh = Device::enroll(&hub, dir.path(), "tina");
    let boot = round_at(&hub, &mut fresh, t0 + 4_000);
    assert_eq!((boot.documents.len(), boot.documents[0].received.len()), (1, 2));
    assert_eq!(received(&mut fresh), [Some(t0 + 1_000); 3]);
    assert_eq!(fresh.replica.section(&id).unwrap(), hub.section_view(&id).unwrap().unwrap());
}
