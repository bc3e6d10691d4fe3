//! Encryption at rest: what the key opens, what it leaves untouched, and
//! that nothing readable reaches the disk. The SQLCipher tests run with
//! `--features encryption` (the test command runs them); the default build
//! checks that a key is refused rather than ignored.

use fieldsync_core::{EncryptionError, OpenError, Replica, ReplicaOptions, StoreKey, encrypt_store};

fn key(byte: u8) -> StoreKey {
    StoreKey::from_bytes(&[byte; 32]).unwrap()
}

fn options(key: Option<StoreKey>) -> ReplicaOptions {
    ReplicaOptions { device: "phone".into(), encryption_key: key, ..Default::default() }
}

#[test]
fn a_key_must_be_32_bytes_and_never_shows_in_debug_output() {
    assert!(matches!(StoreKey::from_bytes(&[7; 31]), Err(EncryptionError::KeyLength(31))));
    assert!(matches!(StoreKey::from_bytes(&[]), Err(EncryptionError::KeyLength(0))));
    assert_eq!(format!("{:?}", key(0xab)), "StoreKey(…)");
    assert!(!format!("{:?}", options(Some(key(0xab)))).contains("171"));
}

#[test]
fn a_file_that_is_no_sqlite_database_is_left_untouched() {
    // An encrypted store opened without its key looks like this: it must not
    // be moved aside as corrupt (and a fresh, empty store started over it).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("noise.db");
    let noise: Vec<u8> = (0..8192u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&path, &noise).unwrap();
    let err = Replica::open(&path, options(None)).unwrap_err();
    assert!(matches!(err, OpenError::Unreadable { .. }), "{err}");
    assert!(err.to_string().contains("open it with its key"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), noise);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "nothing moved aside or created");
}

#[cfg(not(feature = "encryption"))]
#[test]
fn without_the_encryption_feature_a_key_is_refused_not_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.db");
    let err = Replica::open(&path, options(Some(key(1)))).unwrap_err();
    assert!(matches!(err, OpenError::EncryptionUnavailable), "{err}");
    assert!(!path.exists(), "no plain store created in its place");
    assert!(matches!(encrypt_store(&path, &key(1)), Err(EncryptionError::Unavailable)));
}

#[cfg(feature = "encryption")]
mod sqlcipher {
    use std::path::Path;

    use fieldsync_core::{Member, Role};

    use super::*;
    use crate::common::{PROJECT, route};

    /// An office replica at `path` with one section named `name`; returns its id.
    fn office_with_section(path: &Path, key: Option<StoreKey>, name: &str) -> (Replica, String) {
        let mut r = Replica::open(path, options(key)).unwrap();
        let me = Member { actor: r.actor(), user: "olga".into(), role: Role::Office };
        r.set_roster(PROJECT, &[me]).unwrap();
        let id = r.create_section(PROJECT, name, &route()).unwrap();
        r.record_progress(&id, 5).unwrap();
        (r, id)
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    fn files_of(path: &Path) -> Vec<Vec<u8>> {
        ["", "-wal"].iter().filter_map(|suffix| std::fs::read(format!("{}{suffix}", path.display())).ok()).collect()
    }

    #[test]
    fn nothing_readable_reaches_the_disk_and_the_key_reopens_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("enc.db");
        let name = "Secret Ridge North feeder";
        let (r, id) = office_with_section(&path, Some(key(1)), name);
        let expected = r.section(&id).unwrap();
        for bytes in files_of(&path) {
            assert!(!contains(&bytes, name.as_bytes()), "the section's name in plain text on disk");
            assert!(!contains(&bytes, b"SQLite format 3"), "a plain SQLite header on disk");
        }
        drop(r);
        for bytes in files_of(&path) {
            assert!(!contains(&bytes, name.as_bytes()));
        }
        let r = Replica::open(&path, options(Some(key(1)))).unwrap();
        assert_eq!(r.section(&id).unwrap(), expected);
        assert_eq!(r.section(&id).unwrap().name, name);
    }

    #[test]
    fn the_wrong_key_or_no_key_leaves_the_file_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("enc.db");
        let (r, id) = office_with_section(&path, Some(key(1)), "North");
        drop(r);
        let before = std::fs::read(&path).unwrap();
        let err = Replica::open(&path, options(Some(key(2)))).unwrap_err();
        assert!(matches!(err, OpenError::WrongKey { .. }), "{err}");
        let err = Replica::open(&path, options(None)).unwrap_err();
        assert!(matches!(err, OpenError::Unreadable { .. }), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), before, "the file was not touched");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "nothing moved aside");
        let r = Replica::open(&path, options(Some(key(1)))).unwrap();
        assert_eq!(r.section(&id).unwrap().progress, 5);
    }

    #[test]
    fn a_plain_store_opened_with_a_key_is_refused_and_stays_plain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain.db");
        let (r, id) = office_with_section(&path, None, "North");
        drop(r);
        let before = std::fs::read(&path).unwrap();
        let err = Replica::open(&path, options(Some(key(1)))).unwrap_err();
        assert!(matches!(err, OpenError::WrongKey { .. }), "{err}");
        assert!(err.to_string().contains("without encryption"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert_eq!(Replica::open(&path, options(None)).unwrap().section(&id).unwrap().progress, 5);
    }

    #[test]
    fn the_checkpoint_thread_opens_the_file_with_the_key() {
        // Its connection must be keyed too, or no page would ever reach the
        // file while the replica is open.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("enc.db");
        let (mut r, _) = office_with_section(&path, Some(key(3)), "North");
        let long_name = "n".repeat(2_000);
        let file_len = || std::fs::metadata(&path).unwrap().len();
        for i in 0..600 {
            r.create_section(PROJECT, &format!("{long_name}{i}"), &route()).unwrap();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while file_len() < 1 << 20 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(file_len() >= 1 << 20, "database file still {} bytes", file_len());
        drop(r);
        assert_eq!(
            Replica::open(&path, options(Some(key(3)))).unwrap().list_sections(None, None, 1000).unwrap().len(),
            601
        );
    }

    #[test]
    fn unsynced_changes_of_an_encrypted_store_are_salvaged_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("enc.db");
        let (r, _) = office_with_section(&path, Some(key(4)), "North");
        let (pending, _) = r.outbox_stats().unwrap();
        drop(r);
        assert!(fieldsync_core::salvage(&path, None).is_err(), "unreadable without the key");
        assert!(fieldsync_core::salvage(&path, Some(&key(5))).is_err(), "unreadable with another key");
        assert_eq!(fieldsync_core::salvage(&path, Some(&key(4))).unwrap().len() as i64, pending);
    }

    #[test]
    fn a_plain_store_is_encrypted_in_place_with_its_unsynced_edits() {
        // An app update that turns encryption on for a user who has data.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("phone.db");
        let name = "Mill Lane east spur";
        let (r, id) = office_with_section(&path, None, name);
        let (view, outbox) = (r.section(&id).unwrap(), r.outbox(usize::MAX).unwrap());
        assert!(!outbox.is_empty());
        drop(r);
        encrypt_store(&path, &key(6)).unwrap();
        for bytes in files_of(&path) {
            assert!(!contains(&bytes, name.as_bytes()), "plain text left on disk");
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no copy or side file left");
        let err = Replica::open(&path, options(None)).unwrap_err();
        assert!(matches!(err, OpenError::Unreadable { .. }), "{err}");
        let r = Replica::open(&path, options(Some(key(6)))).unwrap();
        assert_eq!(r.section(&id).unwrap(), view);
        assert_eq!(r.outbox(usize::MAX).unwrap(), outbox, "the unsynced edits are still to be sent");
        drop(r);
        // Once is enough: an encrypted store is refused, untouched.
        let before = std::fs::read(&path).unwrap();
        assert!(matches!(encrypt_store(&path, &key(7)), Err(EncryptionError::NotPlain(_))));
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }
}
