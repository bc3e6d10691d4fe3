//! A demoted member cannot claim the old role with a write stamped before
//! one he already sent: the hub keeps each actor's stamp floor (the newest
//! stamp it sent) and refuses a write stamped before it, while an honest
//! phone offline since before the change still has its earlier writes
//! judged under the role it held.

use std::path::{Path, PathBuf};

use fieldsync_core::{ConstructionState, Replica, ReplicaOptions, Role};

use crate::common::*;

/// The replica's file, as `Device::enroll` names it.
fn replica_path(dir: &Path, user: &str, device: &Device) -> PathBuf {
    dir.join(format!("{user}-{}.db", &device.id[..8]))
}

/// What a tampered app does: set its stored clock back by `by_ms` (last stamp
/// and server offset) and forget when it last synced by the clock since boot,
/// so its next writes are stamped in the past.
fn set_clock_back(device: &mut Device, path: &Path, by_ms: u64) {
    let options = ReplicaOptions { device: device.id.clone(), ..Default::default() };
    device.replica = Replica::open(path.with_extension("tmp"), options.clone()).unwrap(); // Closes the file.
    let db = rusqlite::Connection::open(path).unwrap();
    let now = fieldsync_core::wall_clock_ms();
    db.execute("UPDATE meta SET value = ?1 WHERE key = 'hlc_ms'", [(now - by_ms).to_string()]).unwrap();
    db.execute("UPDATE meta SET value = ?1 WHERE key = 'server_offset_ms'", [format!("-{by_ms}")]).unwrap();
    db.execute("DELETE FROM meta WHERE key IN ('anchor_server_ms', 'anchor_since_boot_ms')", []).unwrap();
    drop(db);
    device.replica = Replica::open(path, options).unwrap();
}

/// A hub where olga (office) made two sections and three foremen hold them.
fn crew(dir: &Path) -> (TestServer, Device, [Device; 3], [String; 2]) {
    let members = [("olga", Role::Office), ("fred", Role::Foreman), ("gina", Role::Foreman), ("hank", Role::Foreman)];
    let server = TestServer::start(hub_with(dir, &members));
    let mut olga = Device::enroll(&server.hub, dir, "olga");
    olga.sync(&server);
    let sections = ["North", "South"].map(|name| olga.replica.create_section(PROJECT, name, &route()).unwrap());
    olga.sync(&server);
    let foremen = ["fred", "gina", "hank"].map(|user| {
        let mut d = Device::enroll(&server.hub, dir, user);
        d.sync(&server);
        d
    });
    (server, olga, foremen, sections)
}

const HOUR: u64 = 3_600_000;

/// The physical time of a stamp (an edit's id).
fn stamp_ms(stamp: &str) -> u64 {
    stamp.parse::<fieldsync_core::Hlc>().unwrap().physical_ms
}

#[test]
fn a_demoted_foreman_cannot_backdate_a_skip_but_an_honest_offline_one_keeps_hers() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _olga, [_, mut gina, mut hank], [north, south]) = crew(dir.path());
    // Gina skips North while still foreman, then stays offline.
    let skip = gina.replica.transition(&north, ConstructionState::Trenched, None).unwrap();
    // The office demotes all three just after her stamp.
    let demoted_at = stamp_ms(&skip.edit_id.to_string()) + 1;
    for user in ["fred", "gina", "hank"] {
        server.hub.add_member_at(PROJECT, user, Role::Technician, demoted_at).unwrap();
    }

    // Hank sends an ordinary write after the change, then backdates the next.
    hank.replica.record_progress(&south, 0).unwrap();
    hank.sync(&server);
    let path = replica_path(dir.path(), "hank", &hank);
    set_clock_back(&mut hank, &path, HOUR);
    hank.replica.transition(&south, ConstructionState::Trenched, None).unwrap();
    let (status, body) = hank.try_round(&server, fieldsync_core::protocol::DEFAULT_RESPONSE_BUDGET).unwrap_err();
    assert_eq!((status, body.refusals[0].rule.as_deref()), (422, Some("forged_stamp")), "{body:?}");

    // Gina's skip, made before the change, stands under the role she held.
    gina.sync(&server);
    let view = server.hub.section_view(&north).unwrap().unwrap();
    assert_eq!(view.state, ConstructionState::Trenched);
    assert_eq!(server.hub.section_view(&south).unwrap().unwrap().state, ConstructionState::Planned);
}
