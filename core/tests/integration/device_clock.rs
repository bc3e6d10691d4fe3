//! Each replica reads the clock and draws the ids it was opened with, not
//! its thread's: replicas days apart, or with id sequences of their own,
//! run side by side on one thread.

use std::sync::{Arc, Mutex};

use fieldsync_core::protocol::{self, SyncResponse};
use fieldsync_core::{
    DeviceTime, Hlc, IdSource, ManualClock, Replica, ReplicaOptions, Role, SeededIds, SyncClient, TransportError,
};

use crate::common::{PROJECT, crew_on, response, route};

const T: u64 = 1_800_000_000_000;
const DAY: u64 = 24 * 3600 * 1000;

fn stamp(edit_id: &str) -> Hlc {
    edit_id.parse().unwrap()
}

#[test]
fn two_replicas_on_one_thread_stamp_by_their_own_clocks() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (early, late) =
        (Arc::new(ManualClock::new(DeviceTime::wall(T))), Arc::new(ManualClock::new(DeviceTime::wall(T + 3 * DAY))));
    let mut a = crew_on(dir_a.path(), &[Role::Office], early.clone()).remove(0);
    let mut b = crew_on(dir_b.path(), &[Role::Office], late.clone()).remove(0);
    let (sa, sb) =
        (a.create_section(PROJECT, "a", &route()).unwrap(), b.create_section(PROJECT, "b", &route()).unwrap());
    for step in 1..=3 {
        early.set(DeviceTime::wall(T + step * 1000));
        late.set(DeviceTime::wall(T + 3 * DAY + step * 1000));
        let (ra, rb) = (a.record_progress(&sa, step as i64).unwrap(), b.record_progress(&sb, step as i64).unwrap());
        assert_eq!(stamp(&ra.edit_id).physical_ms, T + step * 1000);
        assert_eq!(stamp(&rb.edit_id).physical_ms, T + 3 * DAY + step * 1000);
    }
}

#[test]
fn seeded_replicas_draw_their_own_sequences_however_their_calls_interleave() {
    let dir = tempfile::tempdir().unwrap();
    let open = |name: &str, seed: u64| {
        let options = ReplicaOptions { device: name.into(), ids: Arc::new(SeededIds::new(seed)), ..Default::default() };
        let mut r = Replica::open(dir.path().join(format!("{name}.db")), options).unwrap();
        let me = fieldsync_core::Member { actor: r.actor(), user: name.into(), role: Role::Office };
        r.set_roster(PROJECT, &[me]).unwrap();
        r
    };
    // One and two interleaved, three alone with one's seed.
    let (mut one, mut two) = (open("one", 1), open("two", 2));
    let mut interleaved = (vec![one.actor()], vec![two.actor()]);
    for i in 0..3 {
        interleaved.0.push(one.create_section(PROJECT, &format!("one {i}"), &route()).unwrap());
        interleaved.1.push(two.create_section(PROJECT, &format!("two {i}"), &route()).unwrap());
    }
    let mut three = open("three", 1);
    let mut alone = vec![three.actor()];
    for i in 0..3 {
        alone.push(three.create_section(PROJECT, &format!("three {i}"), &route()).unwrap());
    }
    assert_eq!(interleaved.0, alone, "one's ids are its seed's, whatever two drew meanwhile");
    let seq = SeededIds::new(2);
    assert_eq!(interleaved.1, (0..4).map(|_| seq.new_id()).collect::<Vec<_>>());
}

#[test]
fn a_sync_client_anchors_by_its_replica_s_clock() {
    let dir = tempfile::tempdir().unwrap();
    // The device's clock is three days ahead of the server's.
    let clock = Arc::new(ManualClock::new(DeviceTime::wall(T + 3 * DAY)));
    let mut office = crew_on(dir.path(), &[Role::Office], clock.clone()).remove(0);
    office.join_project(PROJECT).unwrap();
    let replica = Arc::new(Mutex::new(office));
    let transport = |_: Vec<u8>| -> Result<Vec<u8>, TransportError> {
        Ok(protocol::encode(&SyncResponse { server_time_ms: T, ..response("c:1", false) }))
    };
    SyncClient::new(replica.clone(), Arc::new(transport)).sync_now().unwrap();
    clock.set(DeviceTime::wall(T + 3 * DAY + 5_000));
    let mut office = replica.lock().unwrap();
    let id = office.create_section(PROJECT, "north", &route()).unwrap();
    let receipt = office.record_progress(&id, 5).unwrap();
    // Five seconds after the server's time, on the server's time.
    assert_eq!(stamp(&receipt.edit_id).physical_ms, T + 5_000);
}
