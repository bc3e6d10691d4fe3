//! The embedded default backend: one SQLite file, `<data dir>/hub.db`, in WAL
//! mode with `synchronous = FULL`, so a round acknowledged to a device has
//! reached the disk.

use std::collections::BTreeMap;
use std::path::Path;

use fieldsync_core::protocol::Refusal;
use fieldsync_core::{Bounds, Coverage, Member, ProjectConfig, Role, RoleChange};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use crate::photo_files::PhotoFiles;
use crate::schema;
use crate::store::{
    DeviceRecord, DeviceSummary, FeedPage, FeedRow, HubStore, MemberSummary, ProjectRecord, ProjectSummary, RoundWrite,
    StoreError, StoredPhoto, StoredSection, stored_seq,
};

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "hub.db";

/// How long a statement waits for a lock another process (`fieldsync admin`)
/// holds (as set in `open_file`).
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// The same for the readiness probe, which must answer promptly.
const PROBE_BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// The readiness probe's write, always rolled back.
const PROBE_ROW: &str = "INSERT INTO refusals (project, device, section, hash, rule, reason, at_ms)
     VALUES ('', '', '', '', NULL, 'readiness probe, rolled back', 0)";

/// How much wider, in degrees (about 11 m), a query box is than asked: the
/// R*Tree keeps 32-bit floats (rounded outward, but a margin of a few of
/// their steps at 180° costs a few candidates, which the caller checks
/// anyway, and never misses one).
const ROUTE_BOX_MARGIN_DEG: f64 = 1e-4;

/// The hub's SQLite store.
#[derive(Debug)]
pub struct SqliteHubStore {
    conn: Connection,
    /// Photo bytes, in `photos/` next to the database file.
    photos: PhotoFiles,
}

fn role(s: &str) -> Result<Role, rusqlite::Error> {
    s.parse().map_err(|e: String| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into()))
}

impl SqliteHubStore {
    /// Open (creating or upgrading) the store in `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<SqliteHubStore, StoreError> {
        std::fs::create_dir_all(dir.as_ref())?;
        Self::open_file(&dir.as_ref().join(DB_FILE))
    }

    /// Open (creating or upgrading) the store in the file `path`.
    pub fn open_file(path: &Path) -> Result<SqliteHubStore, StoreError> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.set_prepared_statement_cache_capacity(64);
        schema::migrate(&mut conn)?;
        let photos = PhotoFiles::in_data_dir(path.parent().unwrap_or(Path::new(".")));
        Ok(SqliteHubStore { conn, photos })
    }

    fn tx(&mut self) -> Result<Transaction<'_>, StoreError> {
        Ok(Transaction::new(&mut self.conn, TransactionBehavior::Immediate)?)
    }
}

fn bump_user_projects(tx: &Transaction<'_>, user: &str) -> Result<(), rusqlite::Error> {
    tx.prepare_cached(
        "UPDATE projects SET roster_version = roster_version + 1
         WHERE id IN (SELECT project FROM members WHERE user = ?1)",
    )?
    .execute([user])?;
    Ok(())
}

fn raise_stamp_floor(tx: &Transaction<'_>, actor: &str, floor_ms: u64) -> Result<(), rusqlite::Error> {
    tx.prepare_cached("UPDATE actors SET stamp_floor_ms = max(stamp_floor_ms, ?2) WHERE actor = ?1")?
        .execute(params![actor, floor_ms as i64])?;
    Ok(())
}

fn bump_project(tx: &Transaction<'_>, project: &str) -> Result<(), rusqlite::Error> {
    tx.prepare_cached("UPDATE projects SET roster_version = roster_version + 1 WHERE id = ?1")?.execute([project])?;
    Ok(())
}

impl HubStore for SqliteHubStore {
    fn device_by_token_hash(&mut self, token_hash: &str) -> Result<Option<DeviceRecord>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT id, user, name, created_ms, revoked_ms, expires_ms FROM devices WHERE token_hash = ?1",
            )?
            .query_row([token_hash], |r| {
                Ok(DeviceRecord {
                    id: r.get(0)?,
                    user: r.get(1)?,
                    name: r.get(2)?,
                    created_ms: r.get::<_, i64>(3)? as u64,
                    revoked_ms: r.get::<_, Option<i64>>(4)?.map(|v| v as u64),
                    expires_ms: r.get::<_, Option<i64>>(5)?.map(|v| v as u64),
                })
            })
            .optional()?)
    }

    fn project(&mut self, id: &str) -> Result<Option<ProjectRecord>, StoreError> {
        let row: Option<(String, i64)> = self
            .conn
            .prepare_cached("SELECT config, roster_version FROM projects WHERE id = ?1")?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        match row {
            None => Ok(None),
            Some((config, v)) => Ok(Some(ProjectRecord {
                id: id.to_owned(),
                config: serde_json::from_str(&config)?,
                roster_version: v as u64,
            })),
        }
    }

    fn member_role(&mut self, project: &str, user: &str) -> Result<Option<Role>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT role FROM members WHERE project = ?1 AND user = ?2")?
            .query_row([project, user], |r| role(&r.get::<_, String>(0)?))
            .optional()?)
    }

    fn actor_device(&mut self, actor: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT device FROM actors WHERE actor = ?1")?
            .query_row([actor], |r| r.get(0))
            .optional()?)
    }

    fn actor_count(&mut self, device: &str) -> Result<usize, StoreError> {
        let n: i64 = self
            .conn
            .prepare_cached("SELECT count(*) FROM actors WHERE device = ?1")?
            .query_row([device], |r| r.get(0))?;
        Ok(n as usize)
    }

    fn roster(&mut self, project: &str) -> Result<Vec<Member>, StoreError> {
        // Revoked devices and removed members stay in: their past writes keep their author.
        let mut stmt = self.conn.prepare_cached(
            "SELECT a.actor, u.user,
                 (SELECT e.role FROM member_events e WHERE e.project = ?1 AND e.user = u.user
                  AND e.role IS NOT NULL ORDER BY e.seq DESC LIMIT 1)
             FROM (SELECT DISTINCT user FROM member_events WHERE project = ?1) u
             JOIN devices d ON d.user = u.user JOIN actors a ON a.device = d.id
             ORDER BY a.actor",
        )?;
        let rows = stmt.query_map([project], |r| {
            Ok(Member { actor: r.get(0)?, user: r.get(1)?, role: role(&r.get::<_, String>(2)?)? })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn role_history(&mut self, project: &str) -> Result<Vec<RoleChange>, StoreError> {
        let mut stmt =
            self.conn.prepare_cached("SELECT user, role, at_ms FROM member_events WHERE project = ?1 ORDER BY seq")?;
        let rows = stmt.query_map([project], |r| {
            let role_name: Option<String> = r.get(1)?;
            Ok(RoleChange {
                user: r.get(0)?,
                role: role_name.map(|n| role(&n)).transpose()?,
                at_ms: r.get::<_, i64>(2)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn received(&mut self, section: &str, hash: &str) -> Result<Option<u64>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT received_ms FROM feed WHERE section = ?1 AND hash = ?2")?
            .query_row([section, hash], |r| r.get::<_, i64>(0))
            .optional()?
            .map(|ms| ms as u64))
    }

    fn section(&mut self, id: &str) -> Result<Option<StoredSection>, StoreError> {
        let head: Option<(String, Option<Vec<u8>>, i64)> = self
            .conn
            .prepare_cached("SELECT project, snapshot, snapshot_seq FROM sections WHERE id = ?1")?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        let Some((project, snapshot, snapshot_seq)) = head else { return Ok(None) };
        // One statement, one snapshot of the feed: the changes and the
        // receipts agree even while another process appends to it.
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, hash, received_ms, CASE WHEN seq > ?2 THEN bytes END FROM feed WHERE section = ?1 ORDER BY seq",
        )?;
        let mut rows = stmt.query(params![id, snapshot_seq])?;
        let (mut changes, mut received, mut last_seq) = (Vec::new(), BTreeMap::new(), snapshot_seq as u64);
        while let Some(r) = rows.next()? {
            received.insert(r.get::<_, String>(1)?, r.get::<_, i64>(2)? as u64);
            if let Some(bytes) = r.get::<_, Option<Vec<u8>>>(3)? {
                last_seq = r.get::<_, i64>(0)? as u64;
                changes.push(bytes);
            }
        }
        Ok(Some(StoredSection { project, snapshot, snapshot_seq: snapshot_seq as u64, changes, last_seq, received }))
    }

    fn commit_round(&mut self, write: &RoundWrite) -> Result<u64, StoreError> {
        let tx = self.tx()?;
        if let Some(actor) = &write.bind_actor {
            // A revoked device's actor passes to its user's new device: the
            // same phone, enrolled again, uploads what it wrote meanwhile.
            tx.prepare_cached(
                "INSERT INTO actors (actor, device, bound_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (actor) DO UPDATE SET device = excluded.device, bound_ms = excluded.bound_ms
                 WHERE (SELECT prev.revoked_ms IS NOT NULL AND prev.user = cur.user
                        FROM devices prev, devices cur WHERE prev.id = actors.device AND cur.id = excluded.device)",
            )?
            .execute(params![actor, write.device, write.now_ms as i64])?;
            let bound: String = tx.query_row("SELECT device FROM actors WHERE actor = ?1", [actor], |r| r.get(0))?;
            if bound != write.device {
                return Err(StoreError::ActorTaken { actor: actor.clone() });
            }
            bump_user_projects(&tx, &write.user)?;
        }
        if let Some((actor, floor_ms)) = &write.stamp_floor {
            raise_stamp_floor(&tx, actor, *floor_ms)?;
        }
        // Each section with the seq of its newest new change, if it has one.
        let mut newest_seqs = Vec::with_capacity(write.sections.len());
        for s in &write.sections {
            let stored: i64 = tx
                .prepare_cached("SELECT coalesce(max(seq), 0) FROM feed WHERE section = ?1")?
                .query_row([&s.section], |r| r.get(0))?;
            if stored as u64 != s.based_on_seq {
                return Err(StoreError::Stale { section: s.section.clone() });
            }
            {
                let mut insert = tx.prepare_cached(
                    // Not `ON CONFLICT DO NOTHING`: that would still use up a seq.
                    "INSERT INTO feed (project, section, hash, device, bytes, received_ms)
                     SELECT ?1, ?2, ?3, ?4, ?5, ?6
                     WHERE NOT EXISTS (SELECT 1 FROM feed WHERE section = ?2 AND hash = ?3)",
                )?;
                let mut newest = None;
                for (hash, bytes) in &s.changes {
                    let added = insert.execute(params![
                        write.project,
                        s.section,
                        hash,
                        write.device,
                        bytes,
                        write.now_ms as i64
                    ])?;
                    if added > 0 {
                        newest = Some(tx.last_insert_rowid() as u64);
                    }
                }
                newest_seqs.push(newest);
            }
            let (snapshot, snapshot_seq): (Option<&[u8]>, i64) = match &s.snapshot {
                Some(bytes) => {
                    let seq: i64 = tx
                        .prepare_cached("SELECT coalesce(max(seq), 0) FROM feed WHERE section = ?1")?
                        .query_row([&s.section], |r| r.get(0))?;
                    (Some(bytes.as_slice()), seq)
                }
                None => (None, 0),
            };
            if snapshot.is_some() {
                tx.prepare_cached(
                    "INSERT INTO sections (id, project, snapshot, snapshot_seq, view) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (id) DO UPDATE SET snapshot = ?3, snapshot_seq = ?4, view = ?5",
                )?
                .execute(params![s.section, write.project, snapshot, snapshot_seq, s.view])?;
            } else {
                tx.prepare_cached(
                    "INSERT INTO sections (id, project, snapshot, snapshot_seq, view) VALUES (?1, ?2, NULL, 0, ?3)
                     ON CONFLICT (id) DO UPDATE SET view = ?3",
                )?
                .execute(params![s.section, write.project, s.view])?;
            }
            replace_conflicts(&tx, &write.project, &s.section, &s.conflicts)?;
        }
        let max: i64 = tx
            .prepare_cached("SELECT coalesce(max(seq), 0) FROM feed WHERE project = ?1")?
            .query_row([&write.project], |r| r.get(0))?;
        for (s, newest) in write.sections.iter().zip(newest_seqs) {
            crate::sqlite_coverage::record_coverage(
                &tx,
                &write.project,
                &s.section,
                newest.unwrap_or(max as u64),
                &s.coverage,
            )?;
        }
        tx.commit()?;
        Ok(max as u64)
    }

    fn record_refusals(
        &mut self,
        project: &str,
        device: &str,
        refusals: &[Refusal],
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let tx = self.tx()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO refusals (project, device, section, hash, rule, reason, at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for r in refusals {
                stmt.execute(params![project, device, r.section, r.hash, r.rule, r.reason, now_ms as i64])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn feed_page(
        &mut self,
        project: &str,
        after: u64,
        exclude_device: &str,
        budget: usize,
    ) -> Result<FeedPage, StoreError> {
        // A device that synced as several actors (an app reinstalled with the
        // same token) gets its own rows too: one install's changes are news
        // to another, and what it has already is skipped by hash.
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, section, bytes, received_ms FROM feed WHERE project = ?1 AND seq > ?2
               AND (device != ?3 OR (SELECT count(*) FROM actors WHERE device = ?3) > 1) ORDER BY seq",
        )?;
        let rows = stmt.query_map(params![project, after as i64, exclude_device], |r| {
            Ok(FeedRow {
                seq: r.get::<_, i64>(0)? as u64,
                section: r.get(1)?,
                bytes: r.get(2)?,
                received_ms: r.get::<_, i64>(3)? as u64,
            })
        })?;
        Ok(FeedPage::fill(rows, budget)?)
    }

    fn feed_count(&mut self, project: &str, after: u64, exclude_device: &str) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn
            .prepare_cached(
                "SELECT count(*) FROM feed WHERE project = ?1 AND seq > ?2
                   AND (device != ?3 OR (SELECT count(*) FROM actors WHERE device = ?3) > 1)",
            )?
            .query_row(params![project, after as i64, exclude_device], |r| r.get(0))?;
        Ok(n as u64)
    }

    fn sections_count_after(&mut self, project: &str, after: &str) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn
            .prepare_cached("SELECT count(*) FROM sections WHERE project = ?1 AND id > ?2")?
            .query_row([project, after], |r| r.get(0))?;
        Ok(n as u64)
    }

    fn feed_max(&mut self, project: &str) -> Result<u64, StoreError> {
        let max: i64 = self
            .conn
            .prepare_cached("SELECT coalesce(max(seq), 0) FROM feed WHERE project = ?1")?
            .query_row([project], |r| r.get(0))?;
        Ok(max as u64)
    }

    fn sections_after(&mut self, project: &str, after: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        let mut stmt =
            self.conn.prepare_cached("SELECT id FROM sections WHERE project = ?1 AND id > ?2 ORDER BY id LIMIT ?3")?;
        let ids = stmt.query_map(params![project, after, limit as i64], |r| r.get(0))?;
        Ok(ids.collect::<Result<_, _>>()?)
    }

    fn put_snapshot(&mut self, section: &str, snapshot: &[u8], covers_seq: u64) -> Result<(), StoreError> {
        let tx = self.tx()?;
        tx.prepare_cached("UPDATE sections SET snapshot = ?2, snapshot_seq = ?3 WHERE id = ?1 AND snapshot_seq < ?3")?
            .execute(params![section, snapshot, covers_seq as i64])?;
        tx.commit()?;
        Ok(())
    }

    fn section_view(&mut self, id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT view FROM sections WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?)
    }

    fn conflicts(&mut self, project: &str) -> Result<Vec<String>, StoreError> {
        let mut stmt =
            self.conn.prepare_cached("SELECT record FROM conflicts WHERE project = ?1 ORDER BY section, id")?;
        let rows = stmt.query_map([project], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn put_view(&mut self, section: &str, view: &str, conflicts: &[(String, String)]) -> Result<(), StoreError> {
        let tx = self.tx()?;
        let project: String = tx.query_row("SELECT project FROM sections WHERE id = ?1", [section], |r| r.get(0))?;
        tx.execute("UPDATE sections SET view = ?2 WHERE id = ?1", params![section, view])?;
        replace_conflicts(&tx, &project, section, conflicts)?;
        tx.commit()?;
        Ok(())
    }

    fn sections_meeting(&mut self, project: &str, area: Bounds) -> Result<Vec<String>, StoreError> {
        // CROSS JOIN keeps the R*Tree the outer loop: boxes first, then their sections.
        let mut stmt = self.conn.prepare_cached(
            "SELECT i.section FROM route_boxes AS b CROSS JOIN section_index AS i ON i.key = b.key
             WHERE b.max_lon >= ?2 AND b.min_lon <= ?3 AND b.max_lat >= ?4 AND b.min_lat <= ?5 AND i.project = ?1
             ORDER BY i.section",
        )?;
        let m = ROUTE_BOX_MARGIN_DEG;
        let ids = stmt
            .query_map(params![project, area.west - m, area.east + m, area.south - m, area.north + m], |r| r.get(0))?;
        Ok(ids.collect::<Result<_, _>>()?)
    }

    fn sections_of_crew(&mut self, project: &str, crew: &str) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT section FROM section_index WHERE project = ?1 AND crew = ?2 ORDER BY section")?;
        let ids = stmt.query_map([project, crew], |r| r.get(0))?;
        Ok(ids.collect::<Result<_, _>>()?)
    }

    fn coverage_at(&mut self, section: &str, seq: u64) -> Result<Option<Coverage>, StoreError> {
        let json: Option<String> = self
            .conn
            .prepare_cached(
                "SELECT coverage FROM coverage_history WHERE section = ?1 AND seq <= ?2 ORDER BY seq DESC LIMIT 1",
            )?
            .query_row(params![section, stored_seq(seq)], |r| r.get(0))
            .optional()?;
        Ok(json.map(|j| serde_json::from_str(&j)).transpose()?)
    }

    fn coverage_changed(&mut self, project: &str, after: u64, until: u64) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT DISTINCT section FROM coverage_history WHERE project = ?1 AND seq > ?2 AND seq <= ?3
             ORDER BY section",
        )?;
        let ids = stmt.query_map(params![project, stored_seq(after), stored_seq(until)], |r| r.get(0))?;
        Ok(ids.collect::<Result<_, _>>()?)
    }

    fn check_writable(&mut self) -> Result<(), StoreError> {
        // Takes the write lock and writes a row, then rolls back (on drop). A
        // probe waits a second for a lock another process holds, not ten.
        self.conn.busy_timeout(PROBE_BUSY_TIMEOUT)?;
        let probed = self.tx().and_then(|tx| Ok(tx.execute(PROBE_ROW, [])?));
        self.conn.busy_timeout(BUSY_TIMEOUT)?;
        probed.map(drop)
    }

    fn create_project(&mut self, id: &str, config: &ProjectConfig) -> Result<bool, StoreError> {
        let tx = self.tx()?;
        let n = tx.execute(
            "INSERT INTO projects (id, config, roster_version) VALUES (?1, ?2, 1) ON CONFLICT DO NOTHING",
            params![id, serde_json::to_string(config)?],
        )?;
        tx.commit()?;
        Ok(n == 1)
    }

    fn set_config(&mut self, id: &str, config: &ProjectConfig) -> Result<bool, StoreError> {
        let tx = self.tx()?;
        let n = tx.execute(
            "UPDATE projects SET config = ?2, roster_version = roster_version + 1 WHERE id = ?1",
            params![id, serde_json::to_string(config)?],
        )?;
        tx.commit()?;
        Ok(n == 1)
    }

    fn put_member(&mut self, project: &str, user: &str, role: Role, at_ms: u64) -> Result<(), StoreError> {
        let tx = self.tx()?;
        tx.execute(
            "INSERT INTO members (project, user, role) VALUES (?1, ?2, ?3)
             ON CONFLICT (project, user) DO UPDATE SET role = ?3",
            params![project, user, role.as_str()],
        )?;
        tx.execute(
            "INSERT INTO member_events (project, user, role, at_ms) VALUES (?1, ?2, ?3, ?4)",
            params![project, user, role.as_str(), at_ms as i64],
        )?;
        bump_project(&tx, project)?;
        tx.commit()?;
        Ok(())
    }

    fn remove_member(&mut self, project: &str, user: &str, at_ms: u64) -> Result<bool, StoreError> {
        let tx = self.tx()?;
        let n = tx.execute("DELETE FROM members WHERE project = ?1 AND user = ?2", params![project, user])?;
        if n == 1 {
            tx.execute(
                "INSERT INTO member_events (project, user, role, at_ms) VALUES (?1, ?2, NULL, ?3)",
                params![project, user, at_ms as i64],
            )?;
        }
        bump_project(&tx, project)?;
        tx.commit()?;
        Ok(n == 1)
    }

    fn create_device(&mut self, device: &DeviceRecord, token_hash: &str) -> Result<(), StoreError> {
        let tx = self.tx()?;
        tx.execute(
            "INSERT INTO devices (id, user, name, token_hash, created_ms, revoked_ms, expires_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6)",
            params![
                device.id,
                device.user,
                device.name,
                token_hash,
                device.created_ms as i64,
                device.expires_ms.map(|v| v as i64)
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn replace_token(&mut self, id: &str, token_hash: &str, expires_ms: Option<u64>) -> Result<bool, StoreError> {
        let tx = self.tx()?;
        let n = tx.execute(
            "UPDATE devices SET token_hash = ?2, expires_ms = ?3 WHERE id = ?1 AND revoked_ms IS NULL",
            params![id, token_hash, expires_ms.map(|v| v as i64)],
        )?;
        tx.commit()?;
        Ok(n == 1)
    }

    fn revoke_device(&mut self, id: &str, now_ms: u64) -> Result<bool, StoreError> {
        let tx = self.tx()?;
        let found = tx.query_row("SELECT 1 FROM devices WHERE id = ?1", [id], |_| Ok(())).optional()?.is_some();
        tx.execute(
            "UPDATE devices SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL",
            params![id, now_ms as i64],
        )?;
        tx.commit()?;
        Ok(found)
    }

    fn actor_binding(&mut self, actor: &str) -> Result<Option<(String, u64)>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT device, stamp_floor_ms FROM actors WHERE actor = ?1")?
            .query_row([actor], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
            .optional()?)
    }

    fn raise_stamp_floor(&mut self, actor: &str, floor_ms: u64) -> Result<(), StoreError> {
        let tx = self.tx()?;
        raise_stamp_floor(&tx, actor, floor_ms)?;
        tx.commit()?;
        Ok(())
    }

    fn revoked_since(&mut self, since_ms: u64) -> Result<Vec<(String, u64)>, StoreError> {
        let mut stmt = self.conn.prepare_cached("SELECT id, revoked_ms FROM devices WHERE revoked_ms >= ?1")?;
        let rows = stmt.query_map([since_ms as i64], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn list_projects(&mut self) -> Result<Vec<ProjectSummary>, StoreError> {
        let rows: Vec<(String, String, i64)> = self
            .conn
            .prepare("SELECT id, config, roster_version FROM projects ORDER BY id")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, config, roster_version) in rows {
            let members = self
                .conn
                .prepare_cached("SELECT user, role FROM members WHERE project = ?1 ORDER BY user")?
                .query_map([&id], |r| Ok(MemberSummary { user: r.get(0)?, role: role(&r.get::<_, String>(1)?)? }))?
                .collect::<Result<_, _>>()?;
            let sections: i64 =
                self.conn.query_row("SELECT count(*) FROM sections WHERE project = ?1", [&id], |r| r.get(0))?;
            let changes: i64 =
                self.conn.query_row("SELECT count(*) FROM feed WHERE project = ?1", [&id], |r| r.get(0))?;
            out.push(ProjectSummary {
                config: serde_json::from_str(&config)?,
                id,
                roster_version: roster_version as u64,
                members,
                sections: sections as u64,
                changes: changes as u64,
            });
        }
        Ok(out)
    }

    fn list_devices(&mut self) -> Result<Vec<DeviceSummary>, StoreError> {
        let devices: Vec<DeviceRecord> = self
            .conn
            .prepare("SELECT id, user, name, created_ms, revoked_ms, expires_ms FROM devices ORDER BY user, id")?
            .query_map([], |r| {
                Ok(DeviceRecord {
                    id: r.get(0)?,
                    user: r.get(1)?,
                    name: r.get(2)?,
                    created_ms: r.get::<_, i64>(3)? as u64,
                    revoked_ms: r.get::<_, Option<i64>>(4)?.map(|v| v as u64),
                    expires_ms: r.get::<_, Option<i64>>(5)?.map(|v| v as u64),
                })
            })?
            .collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(devices.len());
        for device in devices {
            let actors = self
                .conn
                .prepare_cached("SELECT actor FROM actors WHERE device = ?1 ORDER BY actor")?
                .query_map([&device.id], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            out.push(DeviceSummary { device, actors });
        }
        Ok(out)
    }

    fn photo(&mut self, project: &str, sha256: &str) -> Result<Option<StoredPhoto>, StoreError> {
        Ok(stored_photo(&self.conn, project, sha256)?)
    }

    fn append_photo(
        &mut self,
        project: &str,
        sha256: &str,
        size: u64,
        offset: u64,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<StoredPhoto, StoreError> {
        let files = self.photos.clone();
        let tx = self.tx()?;
        let now = match stored_photo(&tx, project, sha256)? {
            Some(p) if p.complete || p.received != offset => return Ok(p),
            Some(p) => p,
            None if offset != 0 => return Ok(StoredPhoto { size, received: 0, complete: false }),
            None => {
                tx.execute(
                    "INSERT INTO photos (project, sha256, size, received, complete, started_ms) VALUES (?1, ?2, ?3, 0, 0, ?4)",
                    params![project, sha256, size as i64, now_ms as i64],
                )?;
                StoredPhoto { size, received: 0, complete: false }
            }
        };
        // The bytes are on disk before the row says they are.
        files.write_at(project, sha256, offset, bytes)?;
        let received = offset + bytes.len() as u64;
        tx.execute(
            "UPDATE photos SET received = ?3 WHERE project = ?1 AND sha256 = ?2",
            params![project, sha256, received as i64],
        )?;
        tx.commit()?;
        Ok(StoredPhoto { received, ..now })
    }

    fn finish_photo(&mut self, project: &str, sha256: &str, keep: bool) -> Result<(), StoreError> {
        let files = self.photos.clone();
        let tx = self.tx()?;
        let Some(p) = stored_photo(&tx, project, sha256)? else { return Ok(()) };
        if p.complete || p.received != p.size {
            return Ok(());
        }
        if keep {
            files.keep(project, sha256, p.size)?;
            tx.execute("UPDATE photos SET complete = 1 WHERE project = ?1 AND sha256 = ?2", params![project, sha256])?;
        } else {
            files.remove(project, sha256)?;
            tx.execute("DELETE FROM photos WHERE project = ?1 AND sha256 = ?2", params![project, sha256])?;
        }
        tx.commit()?;
        Ok(())
    }

    fn read_photo(&mut self, project: &str, sha256: &str, offset: u64, length: u64) -> Result<Vec<u8>, StoreError> {
        Ok(self.photos.read(project, sha256, offset, length)?)
    }

    fn photo_named(&mut self, project: &str, sha256: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM sections AS s, json_each(s.view, '$.photos') AS photo
                 WHERE s.project = ?1
                   AND (json_extract(photo.value, '$.blob.sha256') = ?2
                        OR json_extract(photo.value, '$.thumbnail.sha256') = ?2))",
            )?
            .query_row([project, sha256], |r| r.get(0))?)
    }

    fn unreferenced_photos(&mut self, before_ms: u64) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT project, sha256 FROM photos AS p WHERE started_ms < ?1 AND NOT EXISTS (
                 SELECT 1 FROM sections AS s, json_each(s.view, '$.photos') AS photo
                 WHERE s.project = p.project
                   AND (json_extract(photo.value, '$.blob.sha256') = p.sha256
                        OR json_extract(photo.value, '$.thumbnail.sha256') = p.sha256))
             ORDER BY project, sha256",
        )?;
        let rows = stmt.query_map([before_ms as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn delete_photo(&mut self, project: &str, sha256: &str) -> Result<(), StoreError> {
        let files = self.photos.clone();
        let tx = self.tx()?;
        tx.execute("DELETE FROM photos WHERE project = ?1 AND sha256 = ?2", params![project, sha256])?;
        files.remove(project, sha256)?;
        tx.commit()?;
        Ok(())
    }
}

fn stored_photo(conn: &Connection, project: &str, sha256: &str) -> Result<Option<StoredPhoto>, rusqlite::Error> {
    conn.prepare_cached("SELECT size, received, complete FROM photos WHERE project = ?1 AND sha256 = ?2")?
        .query_row([project, sha256], |r| {
            Ok(StoredPhoto {
                size: r.get::<_, i64>(0)? as u64,
                received: r.get::<_, i64>(1)? as u64,
                complete: r.get(2)?,
            })
        })
        .optional()
}

fn replace_conflicts(
    tx: &Transaction<'_>,
    project: &str,
    section: &str,
    conflicts: &[(String, String)],
) -> Result<(), rusqlite::Error> {
    tx.prepare_cached("DELETE FROM conflicts WHERE section = ?1")?.execute([section])?;
    let mut stmt = tx.prepare_cached(
        "INSERT INTO conflicts (id, project, section, record) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (id) DO UPDATE SET record = ?4",
    )?;
    for (id, record) in conflicts {
        stmt.execute(params![id, project, section, record])?;
    }
    Ok(())
}
