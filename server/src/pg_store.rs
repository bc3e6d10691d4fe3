//! The PostgreSQL backend: every hub process given the same database URL
//! serves the same projects at once.
//!
//! What makes several processes safe: `commit_round` locks its project's row
//! (`FOR UPDATE`) before it touches the feed, so a project's rounds commit one
//! after another and its feed's `seq` grows in commit order: a reader's cursor
//! never passes a row that commits later. A round that binds an actor locks
//! every project of the device's user, in id order, so two such rounds cannot
//! deadlock. The actor binding is re-checked inside the transaction, as in
//! SQLite. Each committed round sends `NOTIFY fieldsync_feed`, and
//! [`listen`] turns the other processes' notices into live-channel messages.
//!
//! Connections: up to the hub's pool size ([`crate::Hub::on_postgres`]),
//! each re-opened after the server drops it; one more per process for
//! [`listen`]. A lost connection is
//! [`StoreError::Unavailable`] (503 to the device, which retries), and the
//! next call connects again. Each connection has a connect timeout and a
//! statement timeout ([`PgOptions`]): a slow query cannot hold the hub.
//! TLS (rustls) when the URL's `sslmode` asks for it: see [`crate::pg_tls`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fieldsync_core::backoff;
use fieldsync_core::protocol::Refusal;
use fieldsync_core::{Bounds, Coverage, Member, ProjectConfig, Role, RoleChange};
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, IsolationLevel, NoTls, Transaction};

use crate::store::{
    DeviceRecord, DeviceSummary, FeedPage, FeedRow, HubStore, MemberSummary, ProjectRecord, ProjectSummary, RoundWrite,
    StoreError, StoredPhoto, StoredSection, coverage_json, coverage_of_view, stored_seq,
};

/// Schema version this code writes (kept in `fieldsync_schema`).
pub const PG_SCHEMA_VERSION: i64 = 7;

/// A connection idle longer than this is pinged before use: a round's store
/// calls come back to back, so about one ping per round. A database that
/// restarts within this window costs one 503, which the client retries.
const IDLE_PING: Duration = Duration::from_millis(50);

/// The channel committed rounds notify on.
const CHANNEL: &str = "fieldsync_feed";

/// Taken (per transaction) while migrating, so that processes starting together migrate once.
const MIGRATION_LOCK: i64 = 0x6669_656c_6473_796e; // "fieldsyn"

const UPGRADES: [&str; 7] = [
    // 0 → 1. Text keys sort bytewise (COLLATE "C"), as in SQLite.
    r#"CREATE TABLE projects (
         id TEXT COLLATE "C" PRIMARY KEY, config TEXT NOT NULL, roster_version BIGINT NOT NULL);
     CREATE TABLE members (
         project TEXT COLLATE "C" NOT NULL REFERENCES projects (id), user_id TEXT COLLATE "C" NOT NULL,
         role TEXT NOT NULL, PRIMARY KEY (project, user_id));
     CREATE INDEX members_by_user ON members (user_id);
     CREATE TABLE devices (
         id TEXT COLLATE "C" PRIMARY KEY, user_id TEXT COLLATE "C" NOT NULL, name TEXT NOT NULL,
         token_hash TEXT NOT NULL UNIQUE, created_ms BIGINT NOT NULL, revoked_ms BIGINT);
     CREATE INDEX devices_by_user ON devices (user_id);
     CREATE TABLE actors (
         actor TEXT COLLATE "C" PRIMARY KEY, device TEXT NOT NULL REFERENCES devices (id), bound_ms BIGINT NOT NULL);
     CREATE INDEX actors_by_device ON actors (device);
     CREATE TABLE feed (
         seq BIGSERIAL PRIMARY KEY, project TEXT NOT NULL, section TEXT NOT NULL,
         hash TEXT NOT NULL, device TEXT NOT NULL, bytes BYTEA NOT NULL, UNIQUE (section, hash));
     CREATE INDEX feed_by_project ON feed (project, seq);
     CREATE INDEX feed_by_section ON feed (section, seq);
     CREATE TABLE sections (
         id TEXT COLLATE "C" PRIMARY KEY, project TEXT NOT NULL, snapshot BYTEA, snapshot_seq BIGINT NOT NULL,
         view TEXT NOT NULL);
     CREATE INDEX sections_by_project ON sections (project, id);
     CREATE TABLE conflicts (
         id TEXT COLLATE "C" PRIMARY KEY, project TEXT NOT NULL, section TEXT COLLATE "C" NOT NULL,
         record TEXT NOT NULL);
     CREATE INDEX conflicts_by_section ON conflicts (section);
     CREATE INDEX conflicts_by_project ON conflicts (project, section, id);
     CREATE TABLE refusals (
         id BIGSERIAL PRIMARY KEY, project TEXT NOT NULL, device TEXT NOT NULL, section TEXT NOT NULL,
         hash TEXT NOT NULL, rule TEXT, reason TEXT NOT NULL, at_ms BIGINT NOT NULL);"#,
    // 1 → 2: every role change, in order (role NULL: removed); the members
    // of an older database have held their role since the beginning.
    r#"CREATE TABLE member_events (
         seq BIGSERIAL PRIMARY KEY, project TEXT COLLATE "C" NOT NULL, user_id TEXT COLLATE "C" NOT NULL,
         role TEXT, at_ms BIGINT NOT NULL);
     CREATE INDEX member_events_by_project ON member_events (project, user_id, seq);
     INSERT INTO member_events (project, user_id, role, at_ms) SELECT project, user_id, role, 0 FROM members
         ORDER BY project, user_id;"#,
    // 2 → 3: when the hub received each change (server ms); 0 for the rows
    // stored before, which the rules count at their stamps.
    r#"ALTER TABLE feed ADD COLUMN received_ms BIGINT NOT NULL DEFAULT 0;"#,
    // 3 → 4: each actor's stamp floor (no write of its is stamped before it).
    r#"ALTER TABLE actors ADD COLUMN stamp_floor_ms BIGINT NOT NULL DEFAULT 0;"#,
    // 4 → 5: when a device's token stops working (NULL: never, as every older token).
    r#"ALTER TABLE devices ADD COLUMN expires_ms BIGINT;"#,
    // 5 → 6: photo uploads per project, their bytes in chunks as they
    // arrived, so that every hub process serves every photo.
    r#"CREATE TABLE photos (
           project TEXT NOT NULL, sha256 TEXT NOT NULL, size BIGINT NOT NULL, received BIGINT NOT NULL,
           complete BOOLEAN NOT NULL, started_ms BIGINT NOT NULL,
           PRIMARY KEY (project, sha256));
       CREATE TABLE photo_chunks (
           project TEXT NOT NULL, sha256 TEXT NOT NULL, byte_offset BIGINT NOT NULL, bytes BYTEA NOT NULL,
           PRIMARY KEY (project, sha256, byte_offset));"#,
    // 6 → 7: what subscriptions judge each section on (partial sync): every
    // coverage it has had, from the feed seq it holds from; and, for the
    // current one, its crew and its route's box (GiST-indexed; NULL: no
    // route). Filled in from the stored views by `backfill_coverage`.
    r#"CREATE TABLE coverage_history (
           project TEXT COLLATE "C" NOT NULL, section TEXT COLLATE "C" NOT NULL, seq BIGINT NOT NULL,
           coverage TEXT NOT NULL, PRIMARY KEY (section, seq));
       CREATE INDEX coverage_history_by_project ON coverage_history (project, seq);
       CREATE TABLE section_index (
           section TEXT COLLATE "C" PRIMARY KEY, project TEXT COLLATE "C" NOT NULL, crew TEXT COLLATE "C",
           bounds box);
       CREATE INDEX section_index_by_crew ON section_index (project, crew, section);
       CREATE INDEX section_index_by_bounds ON section_index USING gist (bounds);"#,
];

/// The version whose upgrade [`backfill_coverage`] completes.
const COVERAGE_VERSION: i64 = 7;

/// How the hub's connections are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgOptions {
    /// How long a connect may take, unless the URL's `connect_timeout` says.
    pub connect_timeout: Duration,
    /// `statement_timeout` of every connection (zero: none).
    pub statement_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions { connect_timeout: Duration::from_secs(5), statement_timeout: Duration::from_secs(10) }
    }
}

/// The hub's PostgreSQL store.
pub struct PgHubStore {
    url: String,
    options: PgOptions,
    client: Client,
    /// When `client` last answered: one idle longer is pinged before use.
    last_used: Instant,
    instance: String,
}

impl std::fmt::Debug for PgHubStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgHubStore").field("instance", &self.instance).finish_non_exhaustive()
    }
}

fn role(s: &str) -> Result<Role, StoreError> {
    s.parse().map_err(|e: String| StoreError::Corrupt(format!("a stored role: {e}")))
}

fn connect(url: &str, options: &PgOptions) -> Result<Client, StoreError> {
    let (url, ssl_mode, tls) = crate::pg_tls::prepare(url)?;
    let mut config: postgres::Config = url.parse()?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(options.connect_timeout);
    }
    config.ssl_mode(ssl_mode);
    // The `postgres` crate bounds only the TCP connect: a server that takes
    // the connection and never answers would hold the hub's store forever.
    // The whole connect is bounded here; one that gives up is left to end
    // on its own thread.
    let limit = *config.get_connect_timeout().unwrap_or(&options.connect_timeout);
    let (sender, connected) = std::sync::mpsc::channel();
    std::thread::Builder::new().name("fieldsync-pg-connect".into()).spawn(move || {
        let _ = sender.send(match tls {
            Some(tls) => config.connect(tls),
            None => config.connect(NoTls),
        });
    })?;
    let mut client = match connected.recv_timeout(limit) {
        Ok(client) => client?,
        Err(_) => {
            return Err(StoreError::Unavailable(format!("no answer within {} ms of connecting", limit.as_millis())));
        }
    };
    client.batch_execute(&format!("SET statement_timeout = {}", options.statement_timeout.as_millis()))?;
    Ok(client)
}

/// Bring the database to [`PG_SCHEMA_VERSION`], refusing a newer one untouched.
fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    // An upgrade of a large database (or waiting on another process's) may take long.
    tx.batch_execute("SET LOCAL statement_timeout = 0")?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS fieldsync_schema (version BIGINT NOT NULL)")?;
    let found: i64 = tx.query_opt("SELECT version FROM fieldsync_schema", &[])?.map_or(0, |r| r.get(0));
    if found > PG_SCHEMA_VERSION {
        return Err(StoreError::NewerSchema { found, supported: PG_SCHEMA_VERSION });
    }
    for (version, step) in (found + 1..=PG_SCHEMA_VERSION).zip(&UPGRADES[found as usize..PG_SCHEMA_VERSION as usize]) {
        tx.batch_execute(step)?;
        if version == COVERAGE_VERSION {
            backfill_coverage(&mut tx)?;
        }
    }
    tx.execute("DELETE FROM fieldsync_schema", &[])?;
    tx.execute("INSERT INTO fieldsync_schema (version) VALUES ($1)", &[&PG_SCHEMA_VERSION])?;
    tx.commit()?;
    Ok(())
}

/// Every existing section's coverage, from its stored view, as holding since
/// seq 0, with its index row. A view that does not parse fails the upgrade
/// (which then changes nothing): a section left out would be missed by every
/// subscription.
fn backfill_coverage(tx: &mut Transaction<'_>) -> Result<(), StoreError> {
    // Views streamed, only their coverages held.
    let mut coverages = Vec::new();
    let mut rows = tx.query_raw("SELECT id, project, view FROM sections ORDER BY id", std::iter::empty::<i64>())?;
    while let Some(r) = rows.next()? {
        coverages.push((r.get::<_, String>(0), r.get::<_, String>(1), coverage_of_view(r.get(2))?));
    }
    drop(rows);
    for (section, project, coverage) in coverages {
        record_coverage(tx, &project, &section, 0, &coverage)?;
    }
    Ok(())
}

/// Record `coverage` as `section`'s from feed seq `seq` on, unless it is the
/// latest recorded already, and index it: its crew, its route's box (NULL for
/// no route). A second record at the same seq (a commit without new changes)
/// replaces the first: the latest is what held at that seq.
fn record_coverage(
    tx: &mut Transaction<'_>,
    project: &str,
    section: &str,
    seq: u64,
    coverage: &Coverage,
) -> Result<(), StoreError> {
    let json = coverage_json(coverage)?;
    let latest: Option<String> = tx
        .query_opt("SELECT coverage FROM coverage_history WHERE section = $1 ORDER BY seq DESC LIMIT 1", &[&section])?
        .map(|r| r.get(0));
    if latest.as_deref() == Some(json.as_str()) {
        return Ok(());
    }
    tx.execute(
        "INSERT INTO coverage_history (project, section, seq, coverage) VALUES ($1, $2, $3, $4)
         ON CONFLICT (section, seq) DO UPDATE SET coverage = excluded.coverage",
        &[&project, &section, &stored_seq(seq), &json],
    )?;
    let corners = coverage.bounds().map(|b| [b.west, b.south, b.east, b.north]);
    let [west, south, east, north] = corners.map_or([None; 4], |c| c.map(Some));
    tx.execute(
        "INSERT INTO section_index (section, project, crew, bounds)
         VALUES ($1, $2, $3, box(point($4::float8, $5::float8), point($6::float8, $7::float8)))
         ON CONFLICT (section) DO UPDATE SET crew = excluded.crew, bounds = excluded.bounds",
        &[&section, &project, &coverage.crew, &west, &south, &east, &north],
    )?;
    Ok(())
}

impl PgHubStore {
    /// Connect to `url` (`postgres://user:password@host:port/database`),
    /// creating or upgrading the schema.
    pub fn connect(url: &str) -> Result<PgHubStore, StoreError> {
        PgHubStore::connect_with(url, PgOptions::default())
    }

    /// [`PgHubStore::connect`] with these connection options.
    pub fn connect_with(url: &str, options: PgOptions) -> Result<PgHubStore, StoreError> {
        let mut client = connect(url, &options)?;
        migrate(&mut client)?;
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).expect("the OS has randomness");
        Ok(PgHubStore { url: url.to_owned(), options, client, last_used: Instant::now(), instance: hex::encode(id) })
    }

    /// Another connection of the process that opened `instance`'s first one
    /// ([`PgHubStore::connect_with`], which checked the schema): its notices
    /// carry the same id, so the process's listener skips them all.
    pub fn connect_as(url: &str, options: PgOptions, instance: &str) -> Result<PgHubStore, StoreError> {
        let client = connect(url, &options)?;
        Ok(PgHubStore {
            url: url.to_owned(),
            options,
            client,
            last_used: Instant::now(),
            instance: instance.to_owned(),
        })
    }

    /// This store's process-unique id, which its notices carry (see [`listen`]).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The connection, opened again if the server dropped it. The blocking
    /// client learns of a drop only when used, so an idle one is pinged
    /// first: the first request after a database restart succeeds.
    fn client(&mut self) -> Result<&mut Client, StoreError> {
        let idle = self.last_used.elapsed() > IDLE_PING;
        if self.client.is_closed() || (idle && self.client.is_valid(self.options.connect_timeout).is_err()) {
            self.client = connect(&self.url, &self.options)?;
        }
        self.last_used = Instant::now();
        Ok(&mut self.client)
    }

    fn tx(&mut self) -> Result<Transaction<'_>, StoreError> {
        Ok(self.client()?.transaction()?)
    }

    /// A read-only transaction seeing one snapshot, for reads of several statements.
    fn snapshot(&mut self) -> Result<Transaction<'_>, StoreError> {
        Ok(self
            .client()?
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?)
    }
}

fn device_record(r: &postgres::Row) -> DeviceRecord {
    DeviceRecord {
        id: r.get(0),
        user: r.get(1),
        name: r.get(2),
        created_ms: r.get::<_, i64>(3) as u64,
        revoked_ms: r.get::<_, Option<i64>>(4).map(|v| v as u64),
        expires_ms: r.get::<_, Option<i64>>(5).map(|v| v as u64),
    }
}

fn bump_project(tx: &mut Transaction<'_>, project: &str) -> Result<(), StoreError> {
    tx.execute("UPDATE projects SET roster_version = roster_version + 1 WHERE id = $1", &[&project])?;
    Ok(())
}

fn replace_conflicts(
    tx: &mut Transaction<'_>,
    project: &str,
    section: &str,
    conflicts: &[(String, String)],
) -> Result<(), StoreError> {
    tx.execute("DELETE FROM conflicts WHERE section = $1", &[&section])?;
    let insert = tx.prepare(
        "INSERT INTO conflicts (id, project, section, record) VALUES ($1, $2, $3, $4)
         ON CONFLICT (id) DO UPDATE SET record = excluded.record",
    )?;
    for (id, record) in conflicts {
        tx.execute(&insert, &[id, &project, &section, record])?;
    }
    Ok(())
}

impl HubStore for PgHubStore {
    fn device_by_token_hash(&mut self, token_hash: &str) -> Result<Option<DeviceRecord>, StoreError> {
        let row = self.client()?.query_opt(
            "SELECT id, user_id, name, created_ms, revoked_ms, expires_ms FROM devices WHERE token_hash = $1",
            &[&token_hash],
        )?;
        Ok(row.as_ref().map(device_record))
    }

    fn project(&mut self, id: &str) -> Result<Option<ProjectRecord>, StoreError> {
        let row = self.client()?.query_opt("SELECT config, roster_version FROM projects WHERE id = $1", &[&id])?;
        row.map(|r| {
            Ok(ProjectRecord {
                id: id.to_owned(),
                config: serde_json::from_str(r.get(0))?,
                roster_version: r.get::<_, i64>(1) as u64,
            })
        })
        .transpose()
    }

    fn member_role(&mut self, project: &str, user: &str) -> Result<Option<Role>, StoreError> {
        let row = self
            .client()?
            .query_opt("SELECT role FROM members WHERE project = $1 AND user_id = $2", &[&project, &user])?;
        row.map(|r| role(r.get(0))).transpose()
    }

    fn actor_device(&mut self, actor: &str) -> Result<Option<String>, StoreError> {
        Ok(self.client()?.query_opt("SELECT device FROM actors WHERE actor = $1", &[&actor])?.map(|r| r.get(0)))
    }

    fn actor_count(&mut self, device: &str) -> Result<usize, StoreError> {
        let n: i64 = self.client()?.query_one("SELECT count(*) FROM actors WHERE device = $1", &[&device])?.get(0);
        Ok(n as usize)
    }

    fn roster(&mut self, project: &str) -> Result<Vec<Member>, StoreError> {
        // Revoked devices stay in: their past writes keep their author's role.
        // Removed members stay in too: their past writes keep their author.
        let rows = self.client()?.query(
            "SELECT a.actor, u.user_id,
                 (SELECT e.role FROM member_events e WHERE e.project = $1 AND e.user_id = u.user_id
                  AND e.role IS NOT NULL ORDER BY e.seq DESC LIMIT 1)
             FROM (SELECT DISTINCT user_id FROM member_events WHERE project = $1) u
             JOIN devices d ON d.user_id = u.user_id JOIN actors a ON a.device = d.id
             ORDER BY a.actor",
            &[&project],
        )?;
        rows.iter().map(|r| Ok(Member { actor: r.get(0), user: r.get(1), role: role(r.get(2))? })).collect()
    }

    fn role_history(&mut self, project: &str) -> Result<Vec<RoleChange>, StoreError> {
        let rows = self
            .client()?
            .query("SELECT user_id, role, at_ms FROM member_events WHERE project = $1 ORDER BY seq", &[&project])?;
        rows.iter()
            .map(|r| {
                let name: Option<&str> = r.get(1);
                Ok(RoleChange { user: r.get(0), role: name.map(role).transpose()?, at_ms: r.get::<_, i64>(2) as u64 })
            })
            .collect()
    }

    fn received(&mut self, section: &str, hash: &str) -> Result<Option<u64>, StoreError> {
        let row = self
            .client()?
            .query_opt("SELECT received_ms FROM feed WHERE section = $1 AND hash = $2", &[&section, &hash])?;
        Ok(row.map(|r| r.get::<_, i64>(0) as u64))
    }

    fn section(&mut self, id: &str) -> Result<Option<StoredSection>, StoreError> {
        let mut tx = self.snapshot()?;
        let Some(head) = tx.query_opt("SELECT project, snapshot, snapshot_seq FROM sections WHERE id = $1", &[&id])?
        else {
            return Ok(None);
        };
        let (project, snapshot, snapshot_seq): (String, Option<Vec<u8>>, i64) = (head.get(0), head.get(1), head.get(2));
        let rows = tx
            .query("SELECT seq, bytes FROM feed WHERE section = $1 AND seq > $2 ORDER BY seq", &[&id, &snapshot_seq])?;
        let receipts = tx.query("SELECT hash, received_ms FROM feed WHERE section = $1", &[&id])?;
        tx.commit()?;
        let last_seq = rows.last().map_or(snapshot_seq, |r| r.get(0)) as u64;
        let changes = rows.iter().map(|r| r.get(1)).collect();
        let received = receipts.iter().map(|r| (r.get(0), r.get::<_, i64>(1) as u64)).collect();
        Ok(Some(StoredSection { project, snapshot, snapshot_seq: snapshot_seq as u64, changes, last_seq, received }))
    }

    fn commit_round(&mut self, write: &RoundWrite) -> Result<u64, StoreError> {
        let instance = self.instance.clone();
        let mut tx = self.tx()?;
        // The project's rounds one after another (see the module's text).
        let lock = match &write.bind_actor {
            None => "SELECT id FROM projects WHERE id = $1 ORDER BY id FOR UPDATE",
            Some(_) => {
                "SELECT id FROM projects WHERE id = $1
                   OR id IN (SELECT project FROM members WHERE user_id = $2) ORDER BY id FOR UPDATE"
            }
        };
        if write.bind_actor.is_some() {
            tx.query(lock, &[&write.project, &write.user])?;
        } else {
            tx.query(lock, &[&write.project])?;
        }
        if let Some(actor) = &write.bind_actor {
            // A revoked device's actor passes to its user's new device: the
            // same phone, enrolled again, uploads what it wrote meanwhile.
            tx.execute(
                "INSERT INTO actors (actor, device, bound_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (actor) DO UPDATE SET device = excluded.device, bound_ms = excluded.bound_ms
                 WHERE (SELECT prev.revoked_ms IS NOT NULL AND prev.user_id = cur.user_id
                        FROM devices prev, devices cur WHERE prev.id = actors.device AND cur.id = excluded.device)",
                &[actor, &write.device, &(write.now_ms as i64)],
            )?;
            let bound: String = tx.query_one("SELECT device FROM actors WHERE actor = $1", &[actor])?.get(0);
            if bound != write.device {
                return Err(StoreError::ActorTaken { actor: actor.clone() });
            }
            tx.execute(
                "UPDATE projects SET roster_version = roster_version + 1
                 WHERE id IN (SELECT project FROM members WHERE user_id = $1)",
                &[&write.user],
            )?;
        }
        if let Some((actor, floor_ms)) = &write.stamp_floor {
            tx.execute(
                "UPDATE actors SET stamp_floor_ms = greatest(stamp_floor_ms, $2) WHERE actor = $1",
                &[actor, &(*floor_ms as i64)],
            )?;
        }
        let insert = tx.prepare(
            "INSERT INTO feed (project, section, hash, device, bytes, received_ms)
             SELECT $1, $2, $3, $4, $5, $6 WHERE NOT EXISTS (SELECT 1 FROM feed WHERE section = $2 AND hash = $3)
             RETURNING seq",
        )?;
        let received = write.now_ms as i64;
        // Each section with the seq of its newest new change, if it has one.
        let mut newest_seqs = Vec::with_capacity(write.sections.len());
        for s in &write.sections {
            // After the project's lock: every other process's round is committed or waits.
            let stored: i64 =
                tx.query_one("SELECT coalesce(max(seq), 0) FROM feed WHERE section = $1", &[&s.section])?.get(0);
            if stored as u64 != s.based_on_seq {
                return Err(StoreError::Stale { section: s.section.clone() });
            }
            let mut newest = None;
            for (hash, bytes) in &s.changes {
                let added =
                    tx.query_opt(&insert, &[&write.project, &s.section, hash, &write.device, bytes, &received])?;
                newest = added.map(|r| r.get::<_, i64>(0) as u64).or(newest);
            }
            newest_seqs.push(newest);
            match &s.snapshot {
                Some(bytes) => {
                    let seq: i64 = tx
                        .query_one("SELECT coalesce(max(seq), 0) FROM feed WHERE section = $1", &[&s.section])?
                        .get(0);
                    tx.execute(
                        "INSERT INTO sections (id, project, snapshot, snapshot_seq, view) VALUES ($1, $2, $3, $4, $5)
                         ON CONFLICT (id) DO UPDATE SET snapshot = $3, snapshot_seq = $4, view = $5",
                        &[&s.section, &write.project, bytes, &seq, &s.view],
                    )?;
                }
                None => {
                    tx.execute(
                        "INSERT INTO sections (id, project, snapshot, snapshot_seq, view) VALUES ($1, $2, NULL, 0, $3)
                         ON CONFLICT (id) DO UPDATE SET view = $3",
                        &[&s.section, &write.project, &s.view],
                    )?;
                }
            }
            replace_conflicts(&mut tx, &write.project, &s.section, &s.conflicts)?;
        }
        let max: i64 =
            tx.query_one("SELECT coalesce(max(seq), 0) FROM feed WHERE project = $1", &[&write.project])?.get(0);
        for (s, newest) in write.sections.iter().zip(newest_seqs) {
            record_coverage(&mut tx, &write.project, &s.section, newest.unwrap_or(max as u64), &s.coverage)?;
        }
        // Delivered at commit, to every process listening (this one skips its own).
        let notice = format!("{instance} {max} {}", write.project);
        tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &notice])?;
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
        let mut tx = self.tx()?;
        let insert = tx.prepare(
            "INSERT INTO refusals (project, device, section, hash, rule, reason, at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )?;
        for r in refusals {
            tx.execute(&insert, &[&project, &device, &r.section, &r.hash, &r.rule, &r.reason, &(now_ms as i64)])?;
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
        // As in SQLite: a device that synced as several actors gets its own rows too.
        // The row cap only bounds what one query fetches; `more` says when it cut.
        let cap = budget / 64 + 64;
        let rows = self.client()?.query(
            "SELECT seq, section, bytes, received_ms FROM feed WHERE project = $1 AND seq > $2
               AND (device != $3 OR (SELECT count(*) FROM actors WHERE device = $3) > 1)
             ORDER BY seq LIMIT $4",
            &[&project, &(after as i64), &exclude_device, &(cap as i64)],
        )?;
        let feed_rows = rows.iter().map(|r| {
            Ok::<_, StoreError>(FeedRow {
                seq: r.get::<_, i64>(0) as u64,
                section: r.get(1),
                bytes: r.get(2),
                received_ms: r.get::<_, i64>(3) as u64,
            })
        });
        let mut page = FeedPage::fill(feed_rows, budget)?;
        page.more |= rows.len() == cap && page.rows.len() == cap;
        Ok(page)
    }

    fn feed_count(&mut self, project: &str, after: u64, exclude_device: &str) -> Result<u64, StoreError> {
        let n: i64 = self
            .client()?
            .query_one(
                "SELECT count(*) FROM feed WHERE project = $1 AND seq > $2
                   AND (device != $3 OR (SELECT count(*) FROM actors WHERE device = $3) > 1)",
                &[&project, &(after as i64), &exclude_device],
            )?
            .get(0);
        Ok(n as u64)
    }

    fn sections_count_after(&mut self, project: &str, after: &str) -> Result<u64, StoreError> {
        let n: i64 = self
            .client()?
            .query_one("SELECT count(*) FROM sections WHERE project = $1 AND id > $2", &[&project, &after])?
            .get(0);
        Ok(n as u64)
    }

    fn feed_max(&mut self, project: &str) -> Result<u64, StoreError> {
        let max: i64 =
            self.client()?.query_one("SELECT coalesce(max(seq), 0) FROM feed WHERE project = $1", &[&project])?.get(0);
        Ok(max as u64)
    }

    fn sections_after(&mut self, project: &str, after: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        let rows = self.client()?.query(
            "SELECT id FROM sections WHERE project = $1 AND id > $2 ORDER BY id LIMIT $3",
            &[&project, &after, &(limit as i64)],
        )?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn put_snapshot(&mut self, section: &str, snapshot: &[u8], covers_seq: u64) -> Result<(), StoreError> {
        self.client()?.execute(
            "UPDATE sections SET snapshot = $2, snapshot_seq = $3 WHERE id = $1 AND snapshot_seq < $3",
            &[&section, &snapshot, &(covers_seq as i64)],
        )?;
        Ok(())
    }

    fn section_view(&mut self, id: &str) -> Result<Option<String>, StoreError> {
        Ok(self.client()?.query_opt("SELECT view FROM sections WHERE id = $1", &[&id])?.map(|r| r.get(0)))
    }

    fn conflicts(&mut self, project: &str) -> Result<Vec<String>, StoreError> {
        let rows = self
            .client()?
            .query("SELECT record FROM conflicts WHERE project = $1 ORDER BY section, id", &[&project])?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn put_view(&mut self, section: &str, view: &str, conflicts: &[(String, String)]) -> Result<(), StoreError> {
        let mut tx = self.tx()?;
        let project: String = tx.query_one("SELECT project FROM sections WHERE id = $1", &[&section])?.get(0);
        tx.execute("UPDATE sections SET view = $2 WHERE id = $1", &[&section, &view])?;
        replace_conflicts(&mut tx, &project, section, conflicts)?;
        tx.commit()?;
        Ok(())
    }

    fn sections_meeting(&mut self, project: &str, area: Bounds) -> Result<Vec<String>, StoreError> {
        // `box` holds float8, and `&&` counts touching edges: the index finds
        // exactly the boxes that meet, no margin needed.
        let rows = self.client()?.query(
            "SELECT section FROM section_index
             WHERE project = $1 AND bounds && box(point($2::float8, $3::float8), point($4::float8, $5::float8))
             ORDER BY section",
            &[&project, &area.west, &area.south, &area.east, &area.north],
        )?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn sections_of_crew(&mut self, project: &str, crew: &str) -> Result<Vec<String>, StoreError> {
        let rows = self.client()?.query(
            "SELECT section FROM section_index WHERE project = $1 AND crew = $2 ORDER BY section",
            &[&project, &crew],
        )?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn coverage_at(&mut self, section: &str, seq: u64) -> Result<Option<Coverage>, StoreError> {
        let row = self.client()?.query_opt(
            "SELECT coverage FROM coverage_history WHERE section = $1 AND seq <= $2 ORDER BY seq DESC LIMIT 1",
            &[&section, &stored_seq(seq)],
        )?;
        Ok(row.map(|r| serde_json::from_str(r.get(0))).transpose()?)
    }

    fn coverage_changed(&mut self, project: &str, after: u64, until: u64) -> Result<Vec<String>, StoreError> {
        let rows = self.client()?.query(
            "SELECT DISTINCT section FROM coverage_history WHERE project = $1 AND seq > $2 AND seq <= $3
             ORDER BY section",
            &[&project, &stored_seq(after), &stored_seq(until)],
        )?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn check_writable(&mut self) -> Result<(), StoreError> {
        // A row written, then rolled back (on drop): fails on a read-only
        // database (a standby) as well as on one that cannot be reached.
        let mut tx = self.tx()?;
        tx.execute(
            "INSERT INTO refusals (project, device, section, hash, rule, reason, at_ms)
             VALUES ('', '', '', '', NULL, 'readiness probe, rolled back', 0)",
            &[],
        )?;
        Ok(())
    }

    fn create_project(&mut self, id: &str, config: &ProjectConfig) -> Result<bool, StoreError> {
        let config = serde_json::to_string(config)?;
        let n = self.client()?.execute(
            "INSERT INTO projects (id, config, roster_version) VALUES ($1, $2, 1) ON CONFLICT DO NOTHING",
            &[&id, &config],
        )?;
        Ok(n == 1)
    }

    fn set_config(&mut self, id: &str, config: &ProjectConfig) -> Result<bool, StoreError> {
        let config = serde_json::to_string(config)?;
        let n = self.client()?.execute(
            "UPDATE projects SET config = $2, roster_version = roster_version + 1 WHERE id = $1",
            &[&id, &config],
        )?;
        Ok(n == 1)
    }

    fn put_member(&mut self, project: &str, user: &str, role: Role, at_ms: u64) -> Result<(), StoreError> {
        let mut tx = self.tx()?;
        tx.execute(
            "INSERT INTO members (project, user_id, role) VALUES ($1, $2, $3)
             ON CONFLICT (project, user_id) DO UPDATE SET role = $3",
            &[&project, &user, &role.as_str()],
        )?;
        tx.execute(
            "INSERT INTO member_events (project, user_id, role, at_ms) VALUES ($1, $2, $3, $4)",
            &[&project, &user, &role.as_str(), &(at_ms as i64)],
        )?;
        bump_project(&mut tx, project)?;
        tx.commit()?;
        Ok(())
    }

    fn remove_member(&mut self, project: &str, user: &str, at_ms: u64) -> Result<bool, StoreError> {
        let mut tx = self.tx()?;
        let n = tx.execute("DELETE FROM members WHERE project = $1 AND user_id = $2", &[&project, &user])?;
        if n == 1 {
            tx.execute(
                "INSERT INTO member_events (project, user_id, role, at_ms) VALUES ($1, $2, NULL, $3)",
                &[&project, &user, &(at_ms as i64)],
            )?;
        }
        bump_project(&mut tx, project)?;
        tx.commit()?;
        Ok(n == 1)
    }

    fn create_device(&mut self, device: &DeviceRecord, token_hash: &str) -> Result<(), StoreError> {
        self.client()?.execute(
            "INSERT INTO devices (id, user_id, name, token_hash, created_ms, revoked_ms, expires_ms)
             VALUES ($1, $2, $3, $4, $5, NULL, $6)",
            &[
                &device.id,
                &device.user,
                &device.name,
                &token_hash,
                &(device.created_ms as i64),
                &device.expires_ms.map(|v| v as i64),
            ],
        )?;
        Ok(())
    }

    fn replace_token(&mut self, id: &str, token_hash: &str, expires_ms: Option<u64>) -> Result<bool, StoreError> {
        let n = self.client()?.execute(
            "UPDATE devices SET token_hash = $2, expires_ms = $3 WHERE id = $1 AND revoked_ms IS NULL",
            &[&id, &token_hash, &expires_ms.map(|v| v as i64)],
        )?;
        Ok(n == 1)
    }

    fn revoke_device(&mut self, id: &str, now_ms: u64) -> Result<bool, StoreError> {
        let mut tx = self.tx()?;
        let found = tx.query_opt("SELECT 1 FROM devices WHERE id = $1", &[&id])?.is_some();
        tx.execute(
            "UPDATE devices SET revoked_ms = $2 WHERE id = $1 AND revoked_ms IS NULL",
            &[&id, &(now_ms as i64)],
        )?;
        tx.commit()?;
        Ok(found)
    }

    fn actor_binding(&mut self, actor: &str) -> Result<Option<(String, u64)>, StoreError> {
        let row = self.client()?.query_opt("SELECT device, stamp_floor_ms FROM actors WHERE actor = $1", &[&actor])?;
        Ok(row.map(|r| (r.get(0), r.get::<_, i64>(1) as u64)))
    }

    fn raise_stamp_floor(&mut self, actor: &str, floor_ms: u64) -> Result<(), StoreError> {
        self.client()?.execute(
            "UPDATE actors SET stamp_floor_ms = greatest(stamp_floor_ms, $2) WHERE actor = $1",
            &[&actor, &(floor_ms as i64)],
        )?;
        Ok(())
    }

    fn revoked_since(&mut self, since_ms: u64) -> Result<Vec<(String, u64)>, StoreError> {
        let rows =
            self.client()?.query("SELECT id, revoked_ms FROM devices WHERE revoked_ms >= $1", &[&(since_ms as i64)])?;
        Ok(rows.iter().map(|r| (r.get(0), r.get::<_, i64>(1) as u64)).collect())
    }

    fn list_projects(&mut self) -> Result<Vec<ProjectSummary>, StoreError> {
        let mut tx = self.snapshot()?;
        let projects = tx.query("SELECT id, config, roster_version FROM projects ORDER BY id", &[])?;
        let mut out = Vec::with_capacity(projects.len());
        for p in projects {
            let id: String = p.get(0);
            let members = tx
                .query("SELECT user_id, role FROM members WHERE project = $1 ORDER BY user_id", &[&id])?
                .iter()
                .map(|r| Ok(MemberSummary { user: r.get(0), role: role(r.get(1))? }))
                .collect::<Result<_, StoreError>>()?;
            let sections: i64 = tx.query_one("SELECT count(*) FROM sections WHERE project = $1", &[&id])?.get(0);
            let changes: i64 = tx.query_one("SELECT count(*) FROM feed WHERE project = $1", &[&id])?.get(0);
            out.push(ProjectSummary {
                config: serde_json::from_str(p.get(1))?,
                roster_version: p.get::<_, i64>(2) as u64,
                id,
                members,
                sections: sections as u64,
                changes: changes as u64,
            });
        }
        tx.commit()?;
        Ok(out)
    }

    fn list_devices(&mut self) -> Result<Vec<DeviceSummary>, StoreError> {
        let mut tx = self.snapshot()?;
        let devices = tx.query(
            "SELECT id, user_id, name, created_ms, revoked_ms, expires_ms FROM devices ORDER BY user_id, id",
            &[],
        )?;
        let mut out = Vec::with_capacity(devices.len());
        for d in &devices {
            let device = device_record(d);
            let actors = tx
                .query("SELECT actor FROM actors WHERE device = $1 ORDER BY actor", &[&device.id])?
                .iter()
                .map(|r| r.get(0))
                .collect();
            out.push(DeviceSummary { device, actors });
        }
        tx.commit()?;
        Ok(out)
    }

    fn photo(&mut self, project: &str, sha256: &str) -> Result<Option<StoredPhoto>, StoreError> {
        let row = self.client()?.query_opt(
            "SELECT size, received, complete FROM photos WHERE project = $1 AND sha256 = $2",
            &[&project, &sha256],
        )?;
        Ok(row.as_ref().map(stored_photo))
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
        let mut tx = self.tx()?;
        if offset == 0 {
            tx.execute(
                "INSERT INTO photos (project, sha256, size, received, complete, started_ms)
                 VALUES ($1, $2, $3, 0, false, $4) ON CONFLICT DO NOTHING",
                &[&project, &sha256, &(size as i64), &(now_ms as i64)],
            )?;
        }
        // Locked: another process's chunk of the same photo waits for this one.
        let row = tx.query_opt(
            "SELECT size, received, complete FROM photos WHERE project = $1 AND sha256 = $2 FOR UPDATE",
            &[&project, &sha256],
        )?;
        let Some(now) = row.as_ref().map(stored_photo) else {
            return Ok(StoredPhoto { size, received: 0, complete: false });
        };
        if now.complete || now.received != offset {
            return Ok(now);
        }
        let received = offset + bytes.len() as u64;
        tx.execute(
            "INSERT INTO photo_chunks (project, sha256, byte_offset, bytes) VALUES ($1, $2, $3, $4)
             ON CONFLICT (project, sha256, byte_offset) DO UPDATE SET bytes = excluded.bytes",
            &[&project, &sha256, &(offset as i64), &bytes],
        )?;
        tx.execute(
            "UPDATE photos SET received = $3 WHERE project = $1 AND sha256 = $2",
            &[&project, &sha256, &(received as i64)],
        )?;
        tx.commit()?;
        Ok(StoredPhoto { received, ..now })
    }

    fn finish_photo(&mut self, project: &str, sha256: &str, keep: bool) -> Result<(), StoreError> {
        let mut tx = self.tx()?;
        let row = tx.query_opt(
            "SELECT size, received, complete FROM photos WHERE project = $1 AND sha256 = $2 FOR UPDATE",
            &[&project, &sha256],
        )?;
        let Some(p) = row.as_ref().map(stored_photo) else { return Ok(()) };
        if p.complete || p.received != p.size {
            return Ok(());
        }
        if keep {
            tx.execute("UPDATE photos SET complete = true WHERE project = $1 AND sha256 = $2", &[&project, &sha256])?;
        } else {
            tx.execute("DELETE FROM photo_chunks WHERE project = $1 AND sha256 = $2", &[&project, &sha256])?;
            tx.execute("DELETE FROM photos WHERE project = $1 AND sha256 = $2", &[&project, &sha256])?;
        }
        tx.commit()?;
        Ok(())
    }

    fn read_photo(&mut self, project: &str, sha256: &str, offset: u64, length: u64) -> Result<Vec<u8>, StoreError> {
        let end = offset.saturating_add(length);
        let rows = self.client()?.query(
            "SELECT byte_offset, bytes FROM photo_chunks
             WHERE project = $1 AND sha256 = $2 AND byte_offset < $4 AND byte_offset + length(bytes) > $3
             ORDER BY byte_offset",
            &[&project, &sha256, &(offset as i64), &(end as i64)],
        )?;
        let mut out = Vec::with_capacity(length.min(1 << 20) as usize);
        for row in &rows {
            let (at, bytes): (i64, &[u8]) = (row.get(0), row.get(1));
            let at = at as u64;
            if at > offset + out.len() as u64 {
                break; // A gap: what follows it was never acknowledged.
            }
            let from = (offset + out.len() as u64 - at) as usize;
            let to = ((end - at) as usize).min(bytes.len());
            if from < to {
                out.extend_from_slice(&bytes[from..to]);
            }
        }
        Ok(out)
    }

    fn photo_named(&mut self, project: &str, sha256: &str) -> Result<bool, StoreError> {
        let row = self.client()?.query_one(
            "SELECT EXISTS (SELECT 1 FROM sections WHERE project = $1 AND jsonb_path_exists(
                 view::jsonb,
                 '$.photos[*] ? (@.blob.sha256 == $sha || @.thumbnail.sha256 == $sha)',
                 jsonb_build_object('sha', $2::text)))",
            &[&project, &sha256],
        )?;
        Ok(row.get(0))
    }

    fn unreferenced_photos(&mut self, before_ms: u64) -> Result<Vec<(String, String)>, StoreError> {
        let rows = self.client()?.query(
            "SELECT project, sha256 FROM photos AS p WHERE started_ms < $1 AND NOT EXISTS (
                 SELECT 1 FROM sections AS s WHERE s.project = p.project AND jsonb_path_exists(
                     s.view::jsonb,
                     '$.photos[*] ? (@.blob.sha256 == $sha || @.thumbnail.sha256 == $sha)',
                     jsonb_build_object('sha', p.sha256)))
             ORDER BY project, sha256",
            &[&(before_ms as i64)],
        )?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn delete_photo(&mut self, project: &str, sha256: &str) -> Result<(), StoreError> {
        let mut tx = self.tx()?;
        tx.execute("DELETE FROM photo_chunks WHERE project = $1 AND sha256 = $2", &[&project, &sha256])?;
        tx.execute("DELETE FROM photos WHERE project = $1 AND sha256 = $2", &[&project, &sha256])?;
        tx.commit()?;
        Ok(())
    }
}

fn stored_photo(r: &postgres::Row) -> StoredPhoto {
    StoredPhoto { size: r.get::<_, i64>(0) as u64, received: r.get::<_, i64>(1) as u64, complete: r.get(2) }
}

/// Listens for the rounds other hub processes commit (their `NOTIFY`s) until
/// dropped; see [`listen`].
pub struct Listener {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Call `on_notice(project, seq)` for every round another process commits to
/// the database at `url` (notices from `instance`, this process's store, are
/// skipped: the hub has told its own subscribers already). Returns once it
/// listens (or after 5 s if the database cannot be reached: it keeps trying,
/// with backoff, and reconnects whenever the connection drops; a round
/// committed while it was down reaches devices at their next timed sync).
pub fn listen(url: &str, instance: &str, on_notice: impl Fn(&str, u64) + Send + 'static) -> Listener {
    listen_with(url, PgOptions::default(), instance, on_notice)
}

/// [`listen`] with these connection options.
pub fn listen_with(
    url: &str,
    options: PgOptions,
    instance: &str,
    on_notice: impl Fn(&str, u64) + Send + 'static,
) -> Listener {
    let stop = Arc::new(AtomicBool::new(false));
    let (url, instance, flag) = (url.to_owned(), instance.to_owned(), stop.clone());
    let (listening, ready) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("fieldsync-pg-listen".into())
        .spawn(move || {
            // Sleeps that end early when the listener is dropped.
            let pause = |d: Duration| {
                let end = std::time::Instant::now() + d;
                while !flag.load(Ordering::SeqCst) && std::time::Instant::now() < end {
                    std::thread::sleep(Duration::from_millis(50));
                }
            };
            let mut failures = 0;
            'connection: while !flag.load(Ordering::SeqCst) {
                let listening_client = connect(&url, &options)
                    .and_then(|mut c| Ok(c.batch_execute(&format!("LISTEN {CHANNEL}")).map(|()| c)?));
                let Ok(mut client) = listening_client else {
                    failures += 1;
                    let random = getrandom::u64().unwrap_or(0);
                    pause(Duration::from_millis(backoff::delay_ms(failures, 400, 10_000, random)));
                    continue;
                };
                let _ = listening.send(());
                failures = 0;
                while !flag.load(Ordering::SeqCst) {
                    let mut notices = client.notifications();
                    match notices.timeout_iter(Duration::from_millis(250)).next() {
                        Ok(Some(n)) => {
                            let mut parts = n.payload().splitn(3, ' ');
                            if let (Some(from), Some(Ok(seq)), Some(project)) =
                                (parts.next(), parts.next().map(str::parse::<u64>), parts.next())
                                && from != instance
                            {
                                on_notice(project, seq);
                            }
                        }
                        Ok(None) => {} // Quiet for a while: look at the stop flag.
                        Err(_) => continue 'connection,
                    }
                }
            }
        })
        .expect("spawn the listener thread");
    let _ = ready.recv_timeout(Duration::from_secs(5));
    Listener { stop, thread: Some(thread) }
}
