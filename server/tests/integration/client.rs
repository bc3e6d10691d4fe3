//! core's own sync client (`SyncClient` over `HttpTransport`, reqwest) against
//! the real server: the two halves of the protocol agree.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fieldsync_core::{ConstructionState, GeoPoint, HttpTransport, Member, Role, SyncClient};

use crate::common::*;

fn client(server: &TestServer, device: Device) -> (SyncClient, Arc<Mutex<fieldsync_core::Replica>>) {
    let url = format!("http://{}", server.addr);
    let transport = HttpTransport::new(&url, &device.token, Duration::from_secs(10)).unwrap();
    let mut replica = device.replica;
    replica.join_project(PROJECT).unwrap();
    let replica = Arc::new(Mutex::new(replica));
    (SyncClient::new(Arc::clone(&replica), Arc::new(transport)), replica)
}

#[test]
fn the_core_sync_client_converges_through_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(hub_with(dir.path(), &[("olga", Role::Office), ("tina", Role::Technician)]));
    let (olga, olga_r) = client(&server, Device::enroll(&server.hub, dir.path(), "olga"));
    let (tina, tina_r) = client(&server, Device::enroll(&server.hub, dir.path(), "tina"));
    olga.sync_now().unwrap();
    tina.sync_now().unwrap();
    assert_eq!(tina_r.lock().unwrap().role_in(PROJECT).unwrap(), Some(Role::Technician));

    let id = olga_r.lock().unwrap().create_section(PROJECT, "north", &route()).unwrap();
    olga_r.lock().unwrap().transition(&id, ConstructionState::Surveyed, None).unwrap();
    let up = olga.sync_now().unwrap();
    assert_eq!(up.confirmed, 2);
    let down = tina.sync_now().unwrap();
    assert_eq!(down.new_changes, 2);
    println!("client report: {up:?}");

    tina_r.lock().unwrap().record_progress(&id, 15).unwrap();
    tina_r.lock().unwrap().report_location(&id, GeoPoint { lat: 48.0001, lon: 11.004 }).unwrap();
    tina.sync_now().unwrap();
    olga.sync_now().unwrap();
    let a = olga_r.lock().unwrap().section(&id).unwrap();
    assert_eq!(a, tina_r.lock().unwrap().section(&id).unwrap());
    assert_eq!(a, server.hub.section_view(&id).unwrap().unwrap());
    assert_eq!(a.progress, 15);

    // A write on a tampered roster is stored and rejected by the rules, not refused.
    {
        let mut t = tina_r.lock().unwrap();
        let me = Member { actor: t.actor(), user: "tina".into(), role: Role::Office };
        t.set_roster(PROJECT, &[me]).unwrap();
        t.rename_section(&id, "tina's name").unwrap();
    }
    let report = tina.sync_now().unwrap();
    assert_eq!(report.refused, 0);
    assert_eq!(tina.status().unwrap().pending_changes, 0);
    assert_eq!(server.hub.section_view(&id).unwrap().unwrap().name, "north");
    let conflicts = server.hub.conflicts(PROJECT).unwrap();
    assert!(conflicts.iter().any(|c| c.rule == fieldsync_core::Rule::OfficeOnly), "{conflicts:?}");
}
