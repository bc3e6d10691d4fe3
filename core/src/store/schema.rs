//! The local store's schema as code: the current version, the ladder of
//! upgrades to it, and what to do with a database that is newer or corrupt.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use crate::store::encryption::{self, StoreKey};

/// Schema version this code writes.
pub const SCHEMA_VERSION: i64 = 9;

/// Each step upgrades from its index + 1 to the next version.
const UPGRADES: [&str; 9] = [
    // 0 → 1: documents, their changes, sync state, roster and config.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
     CREATE TABLE projects (id TEXT PRIMARY KEY, config TEXT NOT NULL) STRICT;
     CREATE TABLE roster (
         project TEXT NOT NULL, actor TEXT NOT NULL, user TEXT NOT NULL, role TEXT NOT NULL,
         PRIMARY KEY (project, actor)) STRICT;
     -- Materialized validated view, so listing never loads documents.
     CREATE TABLE sections (
         id TEXT PRIMARY KEY, project TEXT NOT NULL, name TEXT NOT NULL, state TEXT NOT NULL,
         progress INTEGER NOT NULL, view TEXT NOT NULL,
         snapshot BLOB, snapshot_heads TEXT) STRICT;
     CREATE INDEX sections_by_project ON sections (project, name, id);
     -- Changes not yet folded into the snapshot, plus every local change the
     -- server has not confirmed (the outbox).
     CREATE TABLE changes (
         seq INTEGER PRIMARY KEY AUTOINCREMENT,
         section TEXT NOT NULL, hash TEXT NOT NULL, bytes BLOB NOT NULL,
         local INTEGER NOT NULL, confirmed INTEGER NOT NULL, created_ms INTEGER NOT NULL,
         UNIQUE (section, hash)) STRICT;
     CREATE INDEX changes_outbox ON changes (local, confirmed) WHERE local = 1 AND confirmed = 0;
     -- Local domain writes awaiting the server, for the reconciliation report.
     CREATE TABLE local_edits (
         edit_id TEXT PRIMARY KEY, section TEXT NOT NULL, change_hash TEXT NOT NULL,
         field TEXT NOT NULL) STRICT;",
    // 1 → 2: conflict records, materialized per section like the view.
    "CREATE TABLE conflicts (
         id TEXT PRIMARY KEY, section TEXT NOT NULL, field TEXT NOT NULL, kind TEXT NOT NULL,
         rule TEXT NOT NULL, record TEXT NOT NULL) STRICT;
     CREATE INDEX conflicts_by_section ON conflicts (section);",
    // 2 → 3: sync state per project, and changes the server refused (kept, not re-sent).
    "CREATE TABLE sync_state (
         project TEXT PRIMARY KEY, cursor TEXT NOT NULL, roster_version INTEGER NOT NULL,
         last_success_ms INTEGER, last_error TEXT) STRICT;
     ALTER TABLE changes ADD COLUMN refused TEXT;",
    // What the last sync error needs, by kind (`SyncProblem`).
    "ALTER TABLE sync_state ADD COLUMN last_problem TEXT;",
    // Each member's role history, as the server orders it (role NULL: removed).
    "CREATE TABLE role_changes (
         project TEXT NOT NULL, n INTEGER NOT NULL, user TEXT NOT NULL, role TEXT, at_ms INTEGER NOT NULL,
         PRIMARY KEY (project, n)) STRICT;",
    // When the hub received each change (server ms), kept across compactions:
    // the rules bound a write's stamp by it. Changes confirmed before have none.
    "CREATE TABLE receipts (
         section TEXT NOT NULL, hash TEXT NOT NULL, received_ms INTEGER NOT NULL,
         PRIMARY KEY (section, hash)) STRICT, WITHOUT ROWID;",
    // For live section lists: when this store last saw each view change
    // (device ms; 0 before this version), and the bounding box of its route,
    // filled in from the stored views.
    "ALTER TABLE sections ADD COLUMN changed_ms INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE sections ADD COLUMN south REAL;
     ALTER TABLE sections ADD COLUMN north REAL;
     ALTER TABLE sections ADD COLUMN west REAL;
     ALTER TABLE sections ADD COLUMN east REAL;
     UPDATE sections SET
         south = (SELECT min(json_extract(value, '$.lat')) FROM json_each(sections.view, '$.route')),
         north = (SELECT max(json_extract(value, '$.lat')) FROM json_each(sections.view, '$.route')),
         west = (SELECT min(json_extract(value, '$.lon')) FROM json_each(sections.view, '$.route')),
         east = (SELECT max(json_extract(value, '$.lon')) FROM json_each(sections.view, '$.route'));
     CREATE INDEX sections_by_change ON sections (changed_ms DESC, id);",
    // The photos this device took (full size and thumbnail), and how far
    // each has gone up to the server (`sent`: bytes it acknowledged); the
    // other devices' photos fetched here, by when they were last used (the
    // storage budget lets the least recently used go first).
    "CREATE TABLE photo_uploads (
         sha256 TEXT PRIMARY KEY, project TEXT NOT NULL, size INTEGER NOT NULL,
         thumbnail INTEGER NOT NULL, sent INTEGER NOT NULL DEFAULT 0,
         on_server INTEGER NOT NULL DEFAULT 0, added_ms INTEGER NOT NULL) STRICT;
     CREATE INDEX photo_uploads_waiting ON photo_uploads (thumbnail DESC, added_ms) WHERE on_server = 0;
     CREATE TABLE photo_cache (
         sha256 TEXT PRIMARY KEY, size INTEGER NOT NULL, used_ms INTEGER NOT NULL) STRICT;",
    // Partial sync: each project's scope as JSON (what the app asked for,
    // what the cursor was earned under, a change under way; NULL:
    // everything, or none under way), the sections to drop once the server
    // has their local edits, and each section's crew (the list's filter).
    "ALTER TABLE sections ADD COLUMN crew TEXT;
     UPDATE sections SET crew = json_extract(view, '$.crew');
     ALTER TABLE sync_state ADD COLUMN scope TEXT;
     ALTER TABLE sync_state ADD COLUMN held_scope TEXT;
     ALTER TABLE sync_state ADD COLUMN scope_move TEXT;
     CREATE TABLE evictions (section TEXT PRIMARY KEY) STRICT;",
];

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Written by a newer FieldSync; opening it could damage it.
    #[error(
        "the database {path} has schema version {found}, newer than this app's {SCHEMA_VERSION}; update the app (the file was not touched)"
    )]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: i64,
    },
    /// The file was corrupt and has been moved aside, not deleted.
    #[error(
        "the database {path} was corrupt ({detail}); it was moved to {moved_to} with its unsynced changes, and a fresh store can be started — recover them with `store::salvage` and re-apply them"
    )]
    Corrupt {
        /// Where the store was.
        path: PathBuf,
        /// Where the corrupt file now is.
        moved_to: PathBuf,
        /// What SQLite said.
        detail: String,
    },
    /// The file belongs to another device identity.
    #[error(
        "the database {path} belongs to device `{found}`, not `{wanted}`; open it as that device or use another file"
    )]
    OtherDevice {
        /// The file.
        path: PathBuf,
        /// Device recorded in it.
        found: String,
        /// Device asked for.
        wanted: String,
    },
    /// SQLite failed.
    #[error("could not open the database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The file could not be moved aside.
    #[error("could not move a corrupt database aside: {0}")]
    Io(#[from] std::io::Error),
    /// The key given does not open the file (the file was not touched).
    #[error(
        "the key given does not open {path}: it is another store's key, or the store was created without encryption (open it without a key); the file was not touched"
    )]
    WrongKey {
        /// The file.
        path: PathBuf,
    },
    /// Not a plain SQLite file, and no key was given (the file was not touched).
    #[error(
        "{path} is not a plain SQLite database: an encrypted store (open it with its key) or not a FieldSync store at all; the file was not touched"
    )]
    Unreadable {
        /// The file.
        path: PathBuf,
    },
    /// A key was given but this build cannot encrypt.
    #[error(
        "this build of FieldSync has no encryption at rest (build it with the `encryption` feature); the store was not opened"
    )]
    EncryptionUnavailable,
    /// The thread that checkpoints the WAL could not start.
    #[error("could not start the store's checkpoint thread: {0}")]
    Checkpointer(std::io::Error),
}

/// How long an edit waits to be durable: `Normal` survives an app crash,
/// `Full` also a power cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// WAL with `synchronous = NORMAL`.
    #[default]
    Normal,
    /// WAL with `synchronous = FULL`.
    Full,
}

/// Open (creating or upgrading) the store at `path`, encrypted with `key` if
/// one is given. A corrupt file is moved aside next to it and reported as
/// [`OpenError::Corrupt`]; call again to start fresh. A file that the key does
/// not open, or an encrypted one opened without a key, is left untouched.
/// `now_ms`, the device's wall clock, names the file moved aside.
pub fn open(path: &Path, durability: Durability, key: Option<&StoreKey>, now_ms: u64) -> Result<Connection, OpenError> {
    if key.is_some() && !encryption::AVAILABLE {
        return Err(OpenError::EncryptionUnavailable);
    }
    match open_checked(path, durability, key) {
        Err(OpenError::Sqlite(e)) if is_not_a_database(&e) && key.is_some() => {
            Err(OpenError::WrongKey { path: path.to_owned() })
        }
        Err(OpenError::Sqlite(e)) if is_not_a_database(&e) && !encryption::looks_like_plain_sqlite(path) => {
            Err(OpenError::Unreadable { path: path.to_owned() })
        }
        Err(OpenError::Sqlite(e)) if is_corruption(&e) => {
            let moved_to = move_aside(path, now_ms)?;
            Err(OpenError::Corrupt { path: path.to_owned(), moved_to, detail: e.to_string() })
        }
        other => other,
    }
}

fn is_not_a_database(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase)
}

fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase))
}

fn move_aside(path: &Path, stamp: u64) -> Result<PathBuf, std::io::Error> {
    let moved = path.with_extension(format!("corrupt-{stamp}"));
    std::fs::rename(path, &moved)?;
    for suffix in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{suffix}", path.display()));
        if side.exists() {
            std::fs::rename(&side, format!("{}{suffix}", moved.display()))?;
        }
    }
    Ok(moved)
}

fn open_checked(path: &Path, durability: Durability, key: Option<&StoreKey>) -> Result<Connection, OpenError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    if let Some(key) = key {
        encryption::apply(&conn, key)?;
    }
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // Room for every statement the store prepares (the default holds 16), so
    // the hot paths never re-parse their SQL.
    conn.set_prepared_statement_cache_capacity(64);
    // Check the version before anything writes: switching to WAL rewrites the
    // header, and a newer app's file must be left exactly as it was.
    // Before any pragma that writes (WAL mode does): a newer file stays untouched.
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(OpenError::NewerSchema { path: path.to_owned(), found });
    }
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let sync = match durability {
        Durability::Normal => "NORMAL",
        Durability::Full => "FULL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    let quick: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if quick != "ok" {
        return Err(OpenError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
            Some(quick),
        )));
    }
    let mut conn = conn;
    if found < SCHEMA_VERSION {
        let tx = Transaction::new(&mut conn, TransactionBehavior::Immediate)?;
        upgrade_from(&tx, found)?;
        tx.commit()?;
    }
    Ok(conn)
}

/// Run every upgrade step from `version` to [`SCHEMA_VERSION`] in `tx`.
pub fn upgrade_from(tx: &Transaction<'_>, version: i64) -> Result<(), rusqlite::Error> {
    upgrade_between(tx, version, SCHEMA_VERSION)
}

fn upgrade_between(tx: &Transaction<'_>, from: i64, to: i64) -> Result<(), rusqlite::Error> {
    for step in &UPGRADES[from as usize..to as usize] {
        tx.execute_batch(step)?;
    }
    tx.pragma_update(None, "user_version", to)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema_of(conn: &Connection) -> Vec<(String, String)> {
        let mut stmt = conn.prepare("SELECT name, sql FROM sqlite_schema WHERE sql IS NOT NULL ORDER BY name").unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
    }

    #[test]
    fn an_upgraded_database_equals_a_fresh_one() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old.db");
        {
            let mut conn = Connection::open(&old).unwrap();
            let tx = conn.transaction().unwrap();
            upgrade_between(&tx, 0, 1).unwrap();
            tx.execute("INSERT INTO meta VALUES ('device', 'd1')", []).unwrap();
            tx.commit().unwrap();
        }
        let upgraded = open(&old, Durability::Normal, None, 7).unwrap();
        let fresh = open(&dir.path().join("fresh.db"), Durability::Normal, None, 7).unwrap();
        assert_eq!(schema_of(&upgraded), schema_of(&fresh));
        let v: i64 = upgraded.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        let kept: String = upgraded.query_row("SELECT value FROM meta WHERE key='device'", [], |r| r.get(0)).unwrap();
        assert_eq!(kept, "d1");
    }

    #[test]
    fn an_upgrade_fills_in_each_sections_route_box_from_its_stored_view() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("v6.db");
        {
            let mut conn = Connection::open(&old).unwrap();
            let tx = conn.transaction().unwrap();
            upgrade_between(&tx, 0, 6).unwrap();
            let view = r#"{"route":[{"lat":48.0,"lon":11.02},{"lat":48.1,"lon":11.0}]}"#;
            tx.execute("INSERT INTO sections VALUES ('s', 'p', 'n', 'planned', 0, ?1, NULL, NULL)", [view]).unwrap();
            tx.commit().unwrap();
        }
        let upgraded = open(&old, Durability::Normal, None, 7).unwrap();
        let row: (f64, f64, f64, f64, i64) = upgraded
            .query_row("SELECT south, north, west, east, changed_ms FROM sections", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap();
        assert_eq!(row, (48.0, 48.1, 11.0, 11.02, 0));
    }

    #[test]
    fn a_newer_database_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.db");
        Connection::open(&path).unwrap().pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
        let before = std::fs::read(&path).unwrap();
        let err = open(&path, Durability::Normal, None, 7).unwrap_err();
        assert!(matches!(err, OpenError::NewerSchema { found, .. } if found == SCHEMA_VERSION + 1), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn a_corrupt_database_is_moved_aside_not_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.db");
        Connection::open(&path).unwrap().execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);").unwrap();
        // A damaged magic string; the rest of the header says it is (was) SQLite.
        let mut garbage = std::fs::read(&path).unwrap();
        garbage[..16].copy_from_slice(b"field notebook!!");
        std::fs::write(&path, &garbage).unwrap();
        let err = open(&path, Durability::Normal, None, 7).unwrap_err();
        let OpenError::Corrupt { moved_to, .. } = err else { panic!("{err}") };
        assert_eq!(std::fs::read(&moved_to).unwrap(), garbage);
        assert!(moved_to.to_string_lossy().ends_with("corrupt-7"), "named by the time passed in: {moved_to:?}");
        assert!(!path.exists());
        open(&path, Durability::Normal, None, 7).expect("a fresh store opens after the move");
    }
}
