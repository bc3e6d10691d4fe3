//! What a real network and a real server do to rounds, with core's client
//! (`SyncClient` over `HttpTransport`) through a TCP relay on loopback: a
//! response cut off mid-body, a request sent twice, the server restarted
//! between rounds or down during one, a server restored from an older backup.
//! Nothing is lost, nothing is duplicated, and the outbox drains.

use std::sync::Arc;

use fieldsync_core::{ConstructionState, HttpTransport, Role, SyncError, Transport, TransportError};
use fieldsync_server::Hub;

use crate::common::*;
use crate::proxy::Proxy;

fn feed_len(hub: &Hub) -> u64 {
    hub.list_projects().unwrap()[0].changes
}

fn pending(p: &Phone) -> i64 {
    p.r().sync_status().unwrap().pending_changes
}

fn edit_a_lot(p: &Phone, sections: usize) -> Vec<String> {
    let mut r = p.r();
    (0..sections)
        .map(|i| {
            let id = r.create_section(PROJECT, &format!("section {i}"), &route()).unwrap();
            r.transition(&id, ConstructionState::Surveyed, None).unwrap();
            r.set_notes(&id, &format!("section {i}: the long notes of a long day in the trench")).unwrap();
            id
        })
        .collect()
}

#[test]
fn a_response_cut_off_mid_body_loses_nothing_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(hub_with(dir.path(), &[("olga", Role::Office), ("tina", Role::Technician)]));
    let proxy = Proxy::start(server.addr);
    let olga = Phone::enroll(&server, &proxy.url(), dir.path(), "olga");
    let tina = Phone::enroll(&server, &proxy.url(), dir.path(), "tina");
    olga.sync();
    tina.sync();

    // olga's upload is stored by the server, but its answer is cut mid-body.
    let ids = edit_a_lot(&olga, 20);
    assert_eq!(pending(&olga), 60);
    proxy.cut_next_response(100);
    let e = olga.client.sync_now().unwrap_err();
    assert!(matches!(e, SyncError::Transport(TransportError::Unreachable(_))), "{e}");
    assert_eq!(proxy.cuts(), 1);
    assert_eq!(feed_len(&server.hub), 60, "the server committed the round");
    assert_eq!(pending(&olga), 60, "the device did not: its outbox still holds everything");
    assert!(olga.client.status().unwrap().last_error.is_some());
    // The next round sends the same changes again: stored once, confirmed, drained.
    let report = olga.sync();
    assert_eq!(report.confirmed, 60);
    assert_eq!(feed_len(&server.hub), 60, "nothing duplicated");
    assert_eq!(pending(&olga), 0);
    assert!(olga.client.status().unwrap().last_error.is_none());

    // tina's download is cut: nothing of it is committed, her cursor stays.
    proxy.cut_next_response(2_000);
    assert!(tina.client.sync_now().is_err());
    assert_eq!(proxy.cuts(), 2);
    assert!(section_ids(&tina.r()).is_empty(), "the cut response committed nothing");
    assert_eq!(tina.sync().new_changes, 60, "the next round resumes from the committed cursor");
    // And her upload's answer is cut: stored by the server, sent again, stored once.
    tina.r().splice_notes(&ids[0], 0, 0, "tina: ").unwrap();
    proxy.cut_next_response(2_000);
    assert!(tina.client.sync_now().is_err());
    assert_eq!(proxy.cuts(), 3);
    assert_eq!(feed_len(&server.hub), 61, "her upload was stored");
    assert_eq!(pending(&tina), 1);
    assert_eq!(tina.sync().confirmed, 1);
    olga.sync();
    assert_eq!(feed_len(&server.hub), 61);
    assert_eq!(tina.state(), olga.state());
    let all = section_ids(&olga.r());
    assert_eq!(hub_state(&server.hub, &all), olga.state());
    assert!(olga.r().section(&ids[0]).unwrap().notes.starts_with("tina: section 0"));
}

/// Sends every request twice and returns the second answer: a device that
/// lost the first response and sent the same request again.
struct Twice(HttpTransport);

impl Transport for Twice {
    fn round_trip(&self, request: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        let _ = self.0.round_trip(request.clone());
        self.0.round_trip(request)
    }
}

#[test]
fn every_request_sent_twice_is_harmless() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(hub_with(dir.path(), &[("olga", Role::Office), ("fred", Role::Foreman)]));
    let url = format!("http://{}", server.addr);
    let twice = |device: Device, user: &str| {
        let t = HttpTransport::new(&url, &device.token, std::time::Duration::from_secs(20)).unwrap();
        Phone::with_transport(Arc::new(Twice(t)), device, user)
    };
    let olga = twice(Device::enroll(&server.hub, dir.path(), "olga"), "olga");
    let fred = twice(Device::enroll(&server.hub, dir.path(), "fred"), "fred");
    olga.sync();
    fred.sync();
    let ids = edit_a_lot(&olga, 5);
    olga.sync();
    fred.sync();
    fred.r().transition(&ids[1], ConstructionState::Trenched, None).unwrap();
    fred.r().record_progress(&ids[1], 30).unwrap();
    olga.r().rename_section(&ids[1], "twice").unwrap();
    fred.sync();
    olga.sync();
    fred.sync();
    assert_eq!(feed_len(&server.hub), 15 + 3);
    assert_eq!((pending(&olga), pending(&fred)), (0, 0));
    assert_eq!(fred.state(), olga.state());
    assert_eq!(hub_state(&server.hub, &ids), olga.state());
}

#[test]
fn a_server_restarted_between_rounds_or_down_during_one_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let hub_dir = dir.path().join("hub");
    let server = TestServer::start(hub_with(&hub_dir, &[("olga", Role::Office), ("tina", Role::Technician)]));
    let proxy = Proxy::start(server.addr);
    let olga = Phone::enroll(&server, &proxy.url(), dir.path(), "olga");
    let tina = Phone::enroll(&server, &proxy.url(), dir.path(), "tina");
    olga.sync();
    tina.sync();
    let ids = edit_a_lot(&olga, 4);
    olga.sync();
    server.stop();

    // Restarted on the same data directory (a new port behind the same URL).
    let server = TestServer::open(&hub_dir);
    proxy.retarget(server.addr);
    assert_eq!(tina.sync().new_changes, 12);
    server.stop();

    // Down: rounds fail, edits wait in the outbox.
    tina.r().transition(&ids[0], ConstructionState::Blocked, Some("rain")).unwrap();
    let e = tina.client.sync_now().unwrap_err();
    assert!(e.retryable(), "{e}");
    assert_eq!(pending(&tina), 1);
    let server = TestServer::open(&hub_dir);
    proxy.retarget(server.addr);
    assert_eq!(tina.sync().confirmed, 1);
    assert_eq!(pending(&tina), 0);
    olga.r().rename_section(&ids[0], "after the restart").unwrap();
    olga.sync();
    server.stop();

    let server = TestServer::open(&hub_dir);
    proxy.retarget(server.addr);
    tina.sync();
    olga.sync();
    assert_eq!(feed_len(&server.hub), 12 + 2);
    assert_eq!((pending(&olga), pending(&tina)), (0, 0));
    assert_eq!(tina.state(), olga.state());
    assert_eq!(hub_state(&server.hub, &ids), olga.state());
    assert_eq!(olga.r().section(&ids[0]).unwrap().state, ConstructionState::Blocked);
}

#[test]
fn a_server_restored_from_an_older_backup_makes_the_client_start_over() {
    let dir = tempfile::tempdir().unwrap();
    let hub_dir = dir.path().join("hub");
    let backup = dir.path().join("backup");
    let server = TestServer::start(hub_with(&hub_dir, &[("olga", Role::Office), ("tina", Role::Technician)]));
    let proxy = Proxy::start(server.addr);
    let olga = Phone::enroll(&server, &proxy.url(), dir.path(), "olga");
    let tina = Phone::enroll(&server, &proxy.url(), dir.path(), "tina");
    olga.sync();
    tina.sync();
    let before = edit_a_lot(&olga, 2);
    olga.sync();
    server.stop();
    std::fs::create_dir(&backup).unwrap();
    for f in std::fs::read_dir(&hub_dir).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), backup.join(f.file_name())).unwrap();
    }

    let server = TestServer::open(&hub_dir);
    proxy.retarget(server.addr);
    edit_a_lot(&olga, 3);
    olga.sync();
    tina.sync(); // Her cursor is now past the end of the backup's feed.
    server.stop();

    // The hub comes back from the backup: tina's cursor means nothing to it.
    let server = TestServer::open(&backup);
    proxy.retarget(server.addr);
    tina.r().splice_notes(&before[0], 0, 0, "after the restore: ").unwrap();
    let report = tina.sync();
    assert_eq!(report.documents, 2, "she started over from an empty cursor and was bootstrapped");
    assert_eq!(report.confirmed, 1);
    assert_eq!(pending(&tina), 0);
    assert!(tina.client.status().unwrap().last_error.is_none());
    let view = server.hub.section_view(&before[0]).unwrap().unwrap();
    assert!(view.notes.starts_with("after the restore: "), "{}", view.notes);
    assert_eq!(tina.r().section(&before[0]).unwrap(), view);
}
