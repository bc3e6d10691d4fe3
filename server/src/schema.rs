//! The hub database's schema as code: the current version and the ladder of
//! upgrades to it, run in one IMMEDIATE transaction; a newer database is
//! refused untouched.

use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::store::StoreError;

/// Schema version this code writes.
pub const SCHEMA_VERSION: i64 = 7;

/// Each step upgrades from its index to the next version.
const UPGRADES: [&str; 7] = [
    // 0 → 1
    "CREATE TABLE projects (
         id TEXT PRIMARY KEY, config TEXT NOT NULL, roster_version INTEGER NOT NULL) STRICT;
     CREATE TABLE members (
         project TEXT NOT NULL REFERENCES projects (id), user TEXT NOT NULL, role TEXT NOT NULL,
         PRIMARY KEY (project, user)) STRICT;
     CREATE INDEX members_by_user ON members (user);
     -- Only the SHA-256 of a token is kept.
     CREATE TABLE devices (
         id TEXT PRIMARY KEY, user TEXT NOT NULL, name TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE,
         created_ms INTEGER NOT NULL, revoked_ms INTEGER) STRICT;
     CREATE INDEX devices_by_user ON devices (user);
     -- Each Automerge actor belongs to the device that first used it.
     CREATE TABLE actors (
         actor TEXT PRIMARY KEY, device TEXT NOT NULL REFERENCES devices (id), bound_ms INTEGER NOT NULL) STRICT;
     CREATE INDEX actors_by_device ON actors (device);
     -- The per-project change feed; a change is stored once per section.
     CREATE TABLE feed (
         seq INTEGER PRIMARY KEY AUTOINCREMENT, project TEXT NOT NULL, section TEXT NOT NULL,
         hash TEXT NOT NULL, device TEXT NOT NULL, bytes BLOB NOT NULL,
         UNIQUE (section, hash)) STRICT;
     CREATE INDEX feed_by_project ON feed (project, seq);
     CREATE INDEX feed_by_section ON feed (section, seq);
     -- Documents: a snapshot covering the feed up to snapshot_seq, and the validated view.
     CREATE TABLE sections (
         id TEXT PRIMARY KEY, project TEXT NOT NULL, snapshot BLOB, snapshot_seq INTEGER NOT NULL,
         view TEXT NOT NULL) STRICT;
     CREATE INDEX sections_by_project ON sections (project, id);
     -- The audit of rule decisions, materialized per section like the view.
     CREATE TABLE conflicts (
         id TEXT PRIMARY KEY, project TEXT NOT NULL, section TEXT NOT NULL, record TEXT NOT NULL) STRICT;
     CREATE INDEX conflicts_by_section ON conflicts (section);
     CREATE INDEX conflicts_by_project ON conflicts (project, section, id);
     -- Uploads the rules refused (their data was not stored).
     CREATE TABLE refusals (
         id INTEGER PRIMARY KEY, project TEXT NOT NULL, device TEXT NOT NULL, section TEXT NOT NULL,
         hash TEXT NOT NULL, rule TEXT, reason TEXT NOT NULL, at_ms INTEGER NOT NULL) STRICT;",
    // 1 → 2: every role change, in order (role NULL: removed); the members
    // of an older database have held their role since the beginning.
    "CREATE TABLE member_events (
         seq INTEGER PRIMARY KEY AUTOINCREMENT, project TEXT NOT NULL, user TEXT NOT NULL, role TEXT,
         at_ms INTEGER NOT NULL) STRICT;
     CREATE INDEX member_events_by_project ON member_events (project, user, seq);
     INSERT INTO member_events (project, user, role, at_ms) SELECT project, user, role, 0 FROM members
         ORDER BY project, user;",
    // 2 → 3: when the hub received each change (server ms); 0 for the rows
    // stored before, which the rules count at their stamps.
    "ALTER TABLE feed ADD COLUMN received_ms INTEGER NOT NULL DEFAULT 0;",
    // 3 → 4: each actor's stamp floor (no write of its is stamped before it).
    "ALTER TABLE actors ADD COLUMN stamp_floor_ms INTEGER NOT NULL DEFAULT 0;",
    // 4 → 5: when a device's token stops working (NULL: never, as every older token).
    "ALTER TABLE devices ADD COLUMN expires_ms INTEGER;",
    // 5 → 6: photo uploads, per project (their bytes are files in `photos/`).
    "CREATE TABLE photos (
         project TEXT NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL, received INTEGER NOT NULL,
         complete INTEGER NOT NULL, started_ms INTEGER NOT NULL,
         PRIMARY KEY (project, sha256)) STRICT;",
    // 6 → 7: what subscriptions judge each section on (partial sync): every
    // coverage it has had, from the feed seq it holds from; and, for the
    // current one, its crew and (in an R*Tree) its route's box. Filled in
    // from the stored views by `backfill_coverage`.
    "CREATE TABLE coverage_history (
         project TEXT NOT NULL, section TEXT NOT NULL, seq INTEGER NOT NULL, coverage TEXT NOT NULL,
         PRIMARY KEY (section, seq)) STRICT;
     CREATE INDEX coverage_history_by_project ON coverage_history (project, seq);
     -- An integer key per section for the R*Tree (the sections' own rowids may change on VACUUM).
     CREATE TABLE section_index (
         key INTEGER PRIMARY KEY, section TEXT NOT NULL UNIQUE, project TEXT NOT NULL, crew TEXT) STRICT;
     CREATE INDEX section_index_by_crew ON section_index (project, crew, section);
     CREATE VIRTUAL TABLE route_boxes USING rtree (key, min_lon, max_lon, min_lat, max_lat);",
];

/// The version whose upgrade [`backfill_coverage`] completes.
const COVERAGE_VERSION: i64 = 7;

/// Bring `conn` to [`SCHEMA_VERSION`], refusing a newer database before writing anything.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema { found, supported: SCHEMA_VERSION });
    }
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    if found < SCHEMA_VERSION {
        let tx = Transaction::new(conn, TransactionBehavior::Immediate)?;
        upgrade_between(&tx, found, SCHEMA_VERSION)?;
        tx.commit()?;
    }
    Ok(())
}

fn upgrade_between(tx: &Transaction<'_>, from: i64, to: i64) -> Result<(), StoreError> {
    for (version, step) in (from + 1..=to).zip(&UPGRADES[from as usize..to as usize]) {
        tx.execute_batch(step)?;
        if version == COVERAGE_VERSION {
            backfill_coverage(tx)?;
        }
    }
    Ok(tx.pragma_update(None, "user_version", to)?)
}

/// Every existing section's coverage, from its stored view, as holding since
/// seq 0, with its index rows. A view that does not parse fails the upgrade
/// (which then changes nothing): a section left out would be missed by every
/// subscription.
fn backfill_coverage(tx: &Transaction<'_>) -> Result<(), StoreError> {
    // Only the coverages are held, not every view at once.
    let mut coverages = Vec::new();
    let mut stmt = tx.prepare("SELECT id, project, view FROM sections ORDER BY id")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let coverage = crate::store::coverage_of_view(r.get_ref(2)?.as_str().map_err(rusqlite::Error::from)?)?;
        coverages.push((r.get::<_, String>(0)?, r.get::<_, String>(1)?, coverage));
    }
    for (section, project, coverage) in coverages {
        crate::sqlite_coverage::record_coverage(tx, &project, &section, 0, &coverage)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_database_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        Connection::open(&path).unwrap().pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
        let before = std::fs::read(&path).unwrap();
        let mut conn = Connection::open(&path).unwrap();
        assert!(matches!(migrate(&mut conn), Err(StoreError::NewerSchema { .. })));
        drop(conn);
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn devices_enrolled_before_expiry_keep_tokens_that_never_expire() {
        let mut conn = Connection::open_in_memory().unwrap();
        let tx = Transaction::new(&mut conn, TransactionBehavior::Immediate).unwrap();
        upgrade_between(&tx, 0, 4).unwrap();
        tx.execute("INSERT INTO devices (id, user, name, token_hash, created_ms) VALUES ('d', 'u', 'n', 'h', 1)", [])
            .unwrap();
        tx.commit().unwrap();
        migrate(&mut conn).unwrap();
        let expires: Option<i64> = conn.query_row("SELECT expires_ms FROM devices", [], |r| r.get(0)).unwrap();
        assert_eq!(expires, None);
    }

    #[test]
    fn sections_stored_before_coverage_are_indexed_by_the_coverage_of_their_views() {
        use crate::{HubStore, SqliteHubStore};
        use fieldsync_core::{Bounds, Coverage, GeoPoint};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        let mut conn = Connection::open(&path).unwrap();
        let tx = Transaction::new(&mut conn, TransactionBehavior::Immediate).unwrap();
        upgrade_between(&tx, 0, 6).unwrap();
        let view = r#"{"id":"s","project":"p","name":"n","route":[{"lat":48.0,"lon":11.02},{"lat":48.1,"lon":11.0}],
            "crew":"north","state":"planned","blocked":null,"progress":0,"location":null,"as_built":[],
            "quarantined":[],"notes":"","photos":[],"events":[],"conflict_count":0,"heads":[]}"#;
        tx.execute(
            "INSERT INTO sections (id, project, snapshot, snapshot_seq, view) VALUES ('s', 'p', NULL, 0, ?1)",
            [view],
        )
        .unwrap();
        tx.commit().unwrap();
        drop(conn);

        let mut store = SqliteHubStore::open_file(&path).unwrap();
        let route = vec![GeoPoint { lat: 48.0, lon: 11.02 }, GeoPoint { lat: 48.1, lon: 11.0 }];
        let expected = Coverage { route, crew: Some("north".into()) };
        assert_eq!(store.coverage_at("s", 0).unwrap(), Some(expected));
        let near = Bounds { south: 48.05, west: 11.01, north: 48.06, east: 11.015 };
        assert_eq!(store.sections_meeting("p", near).unwrap(), ["s"]);
        let far = Bounds { south: 52.0, west: 13.0, north: 53.0, east: 14.0 };
        assert!(store.sections_meeting("p", far).unwrap().is_empty());
        assert_eq!(store.sections_of_crew("p", "north").unwrap(), ["s"]);
        assert_eq!(store.coverage_changed("p", 0, u64::MAX).unwrap(), Vec::<String>::new(), "held since seq 0");
    }

    #[test]
    fn an_unreadable_view_fails_the_upgrade_and_changes_nothing() {
        let mut conn = Connection::open_in_memory().unwrap();
        let tx = Transaction::new(&mut conn, TransactionBehavior::Immediate).unwrap();
        upgrade_between(&tx, 0, 6).unwrap();
        tx.execute(
            "INSERT INTO sections (id, project, snapshot, snapshot_seq, view) VALUES ('s', 'p', NULL, 0, '{}')",
            [],
        )
        .unwrap();
        tx.commit().unwrap();
        assert!(matches!(migrate(&mut conn), Err(StoreError::Json(_))));
        let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, 6);
    }

    #[test]
    fn migrating_twice_is_harmless() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, SCHEMA_VERSION);
    }
}
