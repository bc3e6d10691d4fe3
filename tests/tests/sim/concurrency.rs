//! Two hub instances on one data dir serving rounds at the same time, on
//! real threads. The simulator calls its hubs one at a time (that is what
//! makes it deterministic), so it cannot interleave two rounds inside the
//! hubs; this test does, and is not deterministic: it looks for races.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fieldsync_core::{GeoPoint, ProjectConfig, Replica, Role, SyncClient, TransportError};
use fieldsync_server::Hub;
use fieldsync_tests::device;
use fieldsync_tests::server::transport_error;

fn client(hub: &Arc<Hub>, token: &str, replica: &Arc<Mutex<Replica>>) -> SyncClient {
    let (hub, token) = (hub.clone(), token.to_owned());
    let transport = move |body: Vec<u8>| -> Result<Vec<u8>, TransportError> {
        hub.sync(&token, &body, fieldsync_server::now_ms()).map_err(|e| transport_error(&e))
    };
    SyncClient::new(replica.clone(), Arc::new(transport))
}

/// The office uploads through one instance while a technician keeps
/// fetching through the other. Before the hub read the feed's end ahead of
/// the page, a round committed between the two reads was skipped by the
/// reader's cursor for good (about 25 of 400 sections, every time).
#[test]
fn a_reader_on_one_instance_misses_nothing_the_other_commits_meanwhile() {
    const SECTIONS: usize = 150;
    let dir = tempfile::tempdir().unwrap();
    let hub_dir = dir.path().join("hub");
    std::fs::create_dir_all(&hub_dir).unwrap();
    let (a, b) = (Arc::new(Hub::open(&hub_dir).unwrap()), Arc::new(Hub::open(&hub_dir).unwrap()));
    a.create_project("p", ProjectConfig::default()).unwrap();
    a.add_member("p", "olga", Role::Office).unwrap();
    a.add_member("p", "tom", Role::Technician).unwrap();
    let (office_token, tech_token) =
        (a.enroll_device("olga", "office").unwrap().token, a.enroll_device("tom", "phone").unwrap().token);
    let office = device::open(&dir.path().join("office.db"), "office").unwrap();
    let tech = device::open(&dir.path().join("tech.db"), "phone").unwrap();
    office.lock().unwrap().join_project("p").unwrap();
    tech.lock().unwrap().join_project("p").unwrap();
    client(&a, &office_token, &office).sync_now().unwrap();
    client(&b, &tech_token, &tech).sync_now().unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (a, office, done) = (a.clone(), office.clone(), done.clone());
        std::thread::spawn(move || {
            let route = [GeoPoint { lat: 48.0, lon: 11.0 }, GeoPoint { lat: 48.0, lon: 11.01 }];
            let uploads = client(&a, &office_token, &office);
            for i in 0..SECTIONS {
                office.lock().unwrap().create_section_with_id(&format!("s{i:04}"), "p", "x", &route).unwrap();
                uploads.sync_now().unwrap();
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let reader = client(&b, &tech_token, &tech);
    let started = Instant::now();
    while !done.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(300) {
        reader.sync_now().unwrap();
    }
    writer.join().unwrap();
    for hub in [&b, &a] {
        client(hub, &tech_token, &tech).sync_now().unwrap();
    }
    let have = tech.lock().unwrap().list_sections(Some("p"), None, usize::MAX).unwrap().len();
    assert_eq!(have, SECTIONS, "the technician's cursor skipped sections committed by the other instance");
}
