//! SQL helpers over the local store: write helpers take a `&Transaction`,
//! read helpers a `&Connection`, so that every write is part of a transaction
//! that also carries what depends on it.

use std::collections::{BTreeMap, HashMap};

use automerge::ReadDoc;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};

use crate::domain::hlc::BootAnchor;
use crate::domain::project::{Member, ProjectConfig, RoleChange, Roster};
use crate::domain::role::Role;
use crate::rules::conflict::ConflictRecord;
use crate::rules::view::SectionView;
use crate::store::encryption::StoreKey;
use crate::store::schema::OpenError;

/// Errors while using the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite failed.
    #[error("local database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored JSON value could not be read back.
    #[error("stored value unreadable: {0}")]
    Json(#[from] serde_json::Error),
}

impl From<StoreError> for OpenError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Sqlite(s) => OpenError::Sqlite(s),
            StoreError::Json(j) => OpenError::Sqlite(rusqlite::Error::ToSqlConversionFailure(Box::new(j))),
        }
    }
}

/// One row of a section list, read from the materialized view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectionSummary {
    /// Section id.
    pub id: String,
    /// Project id.
    pub project: String,
    /// Name.
    pub name: String,
    /// Construction state (snake_case).
    pub state: String,
    /// Progress percentage.
    pub progress: u8,
}

/// A local change the server has not confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxChange {
    /// Section it belongs to.
    pub section: String,
    /// Hex change hash.
    pub hash: String,
    /// Raw Automerge change bytes.
    pub bytes: Vec<u8>,
    /// When it was written (device wall clock, ms).
    pub created_ms: i64,
}

pub(crate) fn meta(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    Ok(conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional()?)
}

pub(crate) fn set_meta(tx: &Transaction<'_>, key: &str, value: &str) -> Result<(), StoreError> {
    tx.prepare_cached("INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2")?
        .execute([key, value])?;
    Ok(())
}

/// The stored pieces of a section document: project, snapshot, changes since.
pub(crate) type StoredDoc = (String, Option<Vec<u8>>, Vec<Vec<u8>>);

pub(crate) fn load_doc(conn: &Connection, section: &str) -> Result<Option<StoredDoc>, StoreError> {
    Ok(load_docs(conn, &[section])?.remove(section))
}

/// The stored pieces of several sections, in two queries rather than two per section.
pub(crate) fn load_docs(conn: &Connection, sections: &[&str]) -> Result<HashMap<String, StoredDoc>, StoreError> {
    let ids = serde_json::to_string(sections)?;
    let mut docs = HashMap::with_capacity(sections.len());
    let mut stmt = conn
        .prepare_cached("SELECT id, project, snapshot FROM sections WHERE id IN (SELECT value FROM json_each(?1))")?;
    for row in stmt.query_map([&ids], |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?)))? {
        let (id, project, snapshot) = row?;
        docs.insert(id, (project, snapshot, Vec::new()));
    }
    let mut stmt = conn.prepare_cached(
        "SELECT section, bytes FROM changes WHERE section IN (SELECT value FROM json_each(?1)) ORDER BY seq",
    )?;
    for row in stmt.query_map([&ids], |r| Ok((r.get::<_, String>(0)?, r.get(1)?)))? {
        let (section, bytes) = row?;
        docs.entry(section).or_insert_with(|| (String::new(), None, Vec::new())).2.push(bytes);
    }
    Ok(docs)
}

pub(crate) fn put_change(
    tx: &Transaction<'_>,
    section: &str,
    hash: &str,
    bytes: &[u8],
    local: bool,
    created_ms: i64,
) -> Result<bool, StoreError> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO changes (section, hash, bytes, local, confirmed, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (section, hash) DO NOTHING",
    )?;
    Ok(stmt.execute(params![section, hash, bytes, local, !local, created_ms])? > 0)
}

/// Store a section's view unless it is the one stored; returns whether it
/// changed. (Where the document's heads moved, the view did too, heads being
/// part of it: [`put_view`] spares the comparison.)
pub(crate) fn put_view_if_changed(tx: &Transaction<'_>, view: &SectionView, now_ms: i64) -> Result<bool, StoreError> {
    let json = serde_json::to_string(view)?;
    let stored: Option<String> =
        tx.prepare_cached("SELECT view FROM sections WHERE id = ?1")?.query_row([&view.id], |r| r.get(0)).optional()?;
    if stored.as_deref() == Some(json.as_str()) {
        return Ok(false);
    }
    write_view(tx, view, &json, now_ms)?;
    Ok(true)
}

/// Store a section's view, which differs from the one stored.
pub(crate) fn put_view(tx: &Transaction<'_>, view: &SectionView, now_ms: i64) -> Result<(), StoreError> {
    write_view(tx, view, &serde_json::to_string(view)?, now_ms)
}

/// A view stamped `now_ms` (the list's "last change"), with its route's
/// bounding box and its crew beside it (the list's area and crew filters).
fn write_view(tx: &Transaction<'_>, view: &SectionView, json: &str, now_ms: i64) -> Result<(), StoreError> {
    let lats = view.route.iter().map(|p| p.lat);
    let lons = view.route.iter().map(|p| p.lon);
    let (south, north) = (lats.clone().reduce(f64::min), lats.reduce(f64::max));
    let (west, east) = (lons.clone().reduce(f64::min), lons.reduce(f64::max));
    let mut stmt = tx.prepare_cached(
        "INSERT INTO sections (id, project, name, state, progress, view, changed_ms, south, north, west, east, crew)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT (id) DO UPDATE SET project = ?2, name = ?3, state = ?4, progress = ?5, view = ?6,
             changed_ms = ?7, south = ?8, north = ?9, west = ?10, east = ?11, crew = ?12",
    )?;
    stmt.execute(params![
        view.id,
        view.project,
        view.name,
        view.state.as_str(),
        view.progress,
        json,
        now_ms,
        south,
        north,
        west,
        east,
        view.crew
    ])?;
    Ok(())
}

pub(crate) fn set_snapshot(
    tx: &Transaction<'_>,
    section: &str,
    bytes: &[u8],
    heads: &[String],
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE sections SET snapshot = ?2, snapshot_heads = ?3 WHERE id = ?1",
        params![section, bytes, heads.join(",")],
    )?;
    Ok(())
}

pub(crate) fn view(conn: &Connection, section: &str) -> Result<Option<SectionView>, StoreError> {
    let json: Option<String> = conn
        .prepare_cached("SELECT view FROM sections WHERE id = ?1")?
        .query_row([section], |r| r.get(0))
        .optional()?;
    Ok(json.map(|j| serde_json::from_str(&j)).transpose()?)
}

/// Replace a section's conflict records unless they are the ones stored;
/// returns whether they changed.
pub(crate) fn replace_conflicts(
    tx: &Transaction<'_>,
    section: &str,
    records: &[ConflictRecord],
) -> Result<bool, StoreError> {
    let mut new: Vec<(&ConflictRecord, String)> =
        records.iter().map(|c| Ok((c, serde_json::to_string(c)?))).collect::<Result<_, StoreError>>()?;
    new.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    let stored: Vec<String> = tx
        .prepare_cached("SELECT record FROM conflicts WHERE section = ?1 ORDER BY id")?
        .query_map([section], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if stored.iter().eq(new.iter().map(|(_, json)| json)) {
        return Ok(false);
    }
    tx.prepare_cached("DELETE FROM conflicts WHERE section = ?1")?.execute([section])?;
    let mut stmt = tx.prepare_cached(
        "INSERT OR REPLACE INTO conflicts (id, section, field, kind, rule, record) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for (c, json) in new {
        let kind = serde_json::to_value(c.kind)?;
        stmt.execute(params![
            c.id,
            section,
            c.field.as_str(),
            kind.as_str().unwrap_or_default(),
            c.rule.as_str(),
            json
        ])?;
    }
    Ok(true)
}

pub(crate) fn conflicts(conn: &Connection, section: Option<&str>) -> Result<Vec<ConflictRecord>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT record FROM conflicts WHERE ?1 IS NULL OR section = ?1 ORDER BY section, id")?;
    let rows: Vec<String> = stmt.query_map([section], |r| r.get(0))?.collect::<Result<_, _>>()?;
    rows.iter().map(|j| Ok(serde_json::from_str(j)?)).collect()
}

pub(crate) fn roster(conn: &Connection, project: &str) -> Result<Roster, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT actor, user, role FROM roster WHERE project = ?1")?;
    let rows =
        stmt.query_map([project], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))?;
    let mut members = Vec::new();
    for row in rows {
        let (actor, user, role) = row?;
        let role: Role = role.parse().unwrap_or(Role::Technician);
        members.push(Member { actor, user, role });
    }
    let mut stmt = conn.prepare_cached("SELECT user, role, at_ms FROM role_changes WHERE project = ?1 ORDER BY n")?;
    let rows = stmt.query_map([project], |r| {
        let role: Option<String> = r.get(1)?;
        Ok(RoleChange { user: r.get(0)?, role: role.and_then(|r| r.parse().ok()), at_ms: r.get::<_, i64>(2)? as u64 })
    })?;
    let history = rows.collect::<Result<Vec<_>, _>>()?;
    Ok(Roster::new(members).with_history(history))
}

/// Replace a project's roster and its role history.
pub(crate) fn set_roster(
    tx: &Transaction<'_>,
    project: &str,
    members: &[Member],
    history: &[RoleChange],
) -> Result<(), StoreError> {
    tx.execute("DELETE FROM roster WHERE project = ?1", [project])?;
    let mut stmt =
        tx.prepare_cached("INSERT OR REPLACE INTO roster (project, actor, user, role) VALUES (?1, ?2, ?3, ?4)")?;
    for m in members {
        stmt.execute(params![project, m.actor, m.user, m.role.as_str()])?;
    }
    tx.execute("DELETE FROM role_changes WHERE project = ?1", [project])?;
    let mut stmt =
        tx.prepare_cached("INSERT INTO role_changes (project, n, user, role, at_ms) VALUES (?1, ?2, ?3, ?4, ?5)")?;
    for (n, c) in history.iter().enumerate() {
        stmt.execute(params![project, n as i64, c.user, c.role.map(Role::as_str), c.at_ms as i64])?;
    }
    Ok(())
}

pub(crate) fn config(conn: &Connection, project: &str) -> Result<ProjectConfig, StoreError> {
    let json: Option<String> = conn
        .prepare_cached("SELECT config FROM projects WHERE id = ?1")?
        .query_row([project], |r| r.get(0))
        .optional()?;
    Ok(json.map(|j| serde_json::from_str(&j)).transpose()?.unwrap_or_default())
}

pub(crate) fn set_config(tx: &Transaction<'_>, project: &str, config: &ProjectConfig) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO projects (id, config) VALUES (?1, ?2) ON CONFLICT (id) DO UPDATE SET config = ?2",
        params![project, serde_json::to_string(config)?],
    )?;
    Ok(())
}

pub(crate) fn list_sections(
    conn: &Connection,
    project: Option<&str>,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<SectionSummary>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, project, name, state, progress FROM sections
         WHERE (?1 IS NULL OR project = ?1) AND (?2 IS NULL OR id > ?2)
         ORDER BY id LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![project, after, limit as i64], |r| {
        Ok(SectionSummary { id: r.get(0)?, project: r.get(1)?, name: r.get(2)?, state: r.get(3)?, progress: r.get(4)? })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(crate) fn outbox(
    conn: &Connection,
    project: Option<&str>,
    max_bytes: usize,
) -> Result<Vec<OutboxChange>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT c.section, c.hash, c.bytes, c.created_ms FROM changes c
         WHERE c.local = 1 AND c.confirmed = 0 AND c.refused IS NULL
           AND (?1 IS NULL OR c.section IN (SELECT id FROM sections WHERE project = ?1))
         ORDER BY c.seq",
    )?;
    let mut rows = stmt.query([project])?;
    let mut out = Vec::new();
    let mut total = 0;
    while let Some(r) = rows.next()? {
        let bytes: Vec<u8> = r.get(2)?;
        total += bytes.len();
        if total > max_bytes && !out.is_empty() {
            break;
        }
        out.push(OutboxChange { section: r.get(0)?, hash: r.get(1)?, bytes, created_ms: r.get(3)? });
    }
    Ok(out)
}

/// The sections of those `hashes` that are still in the outbox (what a
/// confirmation or refusal takes out of it).
pub(crate) fn outbox_sections(conn: &Connection, hashes: &[String]) -> Result<Vec<String>, StoreError> {
    if hashes.is_empty() {
        return Ok(Vec::new());
    }
    let list = serde_json::to_string(hashes)?;
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT section FROM changes
         WHERE local = 1 AND confirmed = 0 AND refused IS NULL AND hash IN (SELECT value FROM json_each(?1))",
    )?;
    Ok(stmt.query_map([&list], |r| r.get(0))?.collect::<Result<_, _>>()?)
}

pub(crate) fn outbox_stats(conn: &Connection) -> Result<(i64, Option<i64>), StoreError> {
    Ok(conn.query_row(
        "SELECT count(*), min(created_ms) FROM changes WHERE local = 1 AND confirmed = 0 AND refused IS NULL",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?)
}

pub(crate) fn confirm(tx: &Transaction<'_>, hashes: &[String]) -> Result<(), StoreError> {
    if hashes.is_empty() {
        return Ok(());
    }
    // One statement each over the whole list: neither table is indexed by hash
    // alone, so a statement per hash would scan them once per confirmed change
    // (seconds for a day's 4,000 changes); `IN (json_each)` scans them once.
    let list = serde_json::to_string(hashes)?;
    tx.prepare_cached(
        "UPDATE changes SET confirmed = 1
         WHERE local = 1 AND confirmed = 0 AND hash IN (SELECT value FROM json_each(?1))",
    )?
    .execute([&list])?;
    tx.prepare_cached("DELETE FROM local_edits WHERE change_hash IN (SELECT value FROM json_each(?1))")?
        .execute([&list])?;
    Ok(())
}

/// Keep when the hub received changes of `section` (0, unknown, is not kept).
pub(crate) fn put_receipts(tx: &Transaction<'_>, section: &str, receipts: &[(String, u64)]) -> Result<(), StoreError> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO receipts (section, hash, received_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (section, hash) DO UPDATE SET received_ms = ?3",
    )?;
    for (hash, ms) in receipts.iter().filter(|(_, ms)| *ms > 0) {
        stmt.execute(params![section, hash, *ms as i64])?;
    }
    Ok(())
}

/// Keep when the hub received our own unconfirmed changes, each (hash, ms).
pub(crate) fn put_own_receipts(tx: &Transaction<'_>, receipts: &[(String, u64)]) -> Result<(), StoreError> {
    // Their sections in one pass over the outbox's index: `changes` is not
    // indexed by hash alone, and a look-up per hash would scan it each time.
    let mut stmt = tx.prepare_cached("SELECT hash, section FROM changes WHERE local = 1 AND confirmed = 0")?;
    let sections: HashMap<String, String> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    for (hash, ms) in receipts {
        if let Some(section) = sections.get(hash) {
            put_receipts(tx, section, &[(hash.clone(), *ms)])?;
        }
    }
    Ok(())
}

/// When the hub received each change of `section` it has received, by hash.
pub(crate) fn receipts(conn: &Connection, section: &str) -> Result<BTreeMap<String, u64>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT hash, received_ms FROM receipts WHERE section = ?1")?;
    let rows = stmt.query_map([section], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(crate) fn put_local_edit(
    tx: &Transaction<'_>,
    edit_id: &str,
    section: &str,
    change_hash: &str,
    field: &str,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT OR IGNORE INTO local_edits (edit_id, section, change_hash, field) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute([edit_id, section, change_hash, field])?;
    Ok(())
}

/// Every local write the server has not confirmed yet, by section, in id
/// order, each with the hash of its change. One query for a whole merge:
/// there are few of them and many sections.
pub(crate) fn local_edits(conn: &Connection) -> Result<HashMap<String, Vec<(String, String)>>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT section, edit_id, change_hash FROM local_edits ORDER BY section, edit_id")?;
    let mut by_section: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))? {
        let (section, edit, hash) = row?;
        by_section.entry(section).or_default().push((edit, hash));
    }
    Ok(by_section)
}

/// The local writes carried by changes the server refused, settled: each
/// (edit id, section, field, the change's hash), and forgotten as pending.
pub(crate) fn settle_refused_edits(
    tx: &Transaction<'_>,
    hashes: &[String],
) -> Result<Vec<(String, String, String, String)>, StoreError> {
    let list = serde_json::to_string(hashes)?;
    let mut stmt = tx.prepare_cached(
        "SELECT edit_id, section, field, change_hash FROM local_edits
         WHERE change_hash IN (SELECT value FROM json_each(?1)) ORDER BY section, edit_id",
    )?;
    let rows = stmt
        .query_map([&list], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    tx.prepare_cached("DELETE FROM local_edits WHERE change_hash IN (SELECT value FROM json_each(?1))")?
        .execute([&list])?;
    Ok(rows)
}

/// Fold a section's stored changes into its snapshot. Only the rows read are
/// dropped (a change appended meanwhile stays), and unconfirmed local changes
/// stay too, because the outbox sends them from there.
pub(crate) fn compact(tx: &Transaction<'_>, section: &str) -> Result<bool, StoreError> {
    let Some((_, snapshot, _)) = load_doc(tx, section)? else { return Ok(false) };
    let mut stmt = tx.prepare_cached("SELECT seq, bytes FROM changes WHERE section = ?1 ORDER BY seq")?;
    let rows: Vec<(i64, Vec<u8>)> =
        stmt.query_map([section], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    if rows.is_empty() {
        return Ok(false);
    }
    let bytes: Vec<Vec<u8>> = rows.iter().map(|(_, b)| b.clone()).collect();
    let Ok(doc) = crate::domain::document::SectionDoc::from_parts(snapshot.as_deref(), &bytes) else {
        return Ok(false);
    };
    let doc = doc.automerge();
    // Changes still waiting for their dependencies are not in `doc`; keep them.
    let in_doc: Vec<i64> = rows
        .iter()
        .filter(|(_, b)| {
            automerge::Change::from_bytes(b.clone()).is_ok_and(|c| doc.get_change_by_hash(&c.hash()).is_some())
        })
        .map(|(seq, _)| *seq)
        .collect();
    let heads: Vec<String> = doc.get_heads().iter().map(ToString::to_string).collect();
    tx.execute(
        "UPDATE sections SET snapshot = ?2, snapshot_heads = ?3 WHERE id = ?1",
        params![section, doc.save(), heads.join(",")],
    )?;
    let mut del = tx.prepare_cached("DELETE FROM changes WHERE seq = ?1 AND NOT (local = 1 AND confirmed = 0)")?;
    for seq in in_doc {
        del.execute([seq])?;
    }
    Ok(true)
}

/// Sections with more than `threshold` loose changes: candidates for compaction.
pub(crate) fn sections_to_compact(
    conn: &Connection,
    threshold: usize,
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached(
        // Only rows compaction can drop: unconfirmed local ones stay for the outbox.
        "SELECT section FROM changes WHERE NOT (local = 1 AND confirmed = 0)
         GROUP BY section HAVING count(*) > ?1 ORDER BY count(*) DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![threshold as i64, limit as i64], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Read, best effort, the unsynced local changes out of a database that was
/// moved aside as corrupt, so they can be re-applied to a fresh store and
/// sent. Rows that cannot be read are skipped; the file is opened read-only
/// (with the store's key if it was encrypted).
pub fn salvage(path: &std::path::Path, key: Option<&StoreKey>) -> Result<Vec<OutboxChange>, StoreError> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    if let Some(key) = key {
        crate::store::encryption::apply(&conn, key)?;
    }
    let mut stmt =
        conn.prepare("SELECT section, hash, bytes, created_ms FROM changes WHERE local = 1 AND confirmed = 0")?;
    let rows = stmt.query_map([], |r| {
        Ok(OutboxChange { section: r.get(0)?, hash: r.get(1)?, bytes: r.get(2)?, created_ms: r.get(3)? })
    })?;
    Ok(rows.filter_map(Result::ok).collect())
}

/// A transaction that takes the write lock at once, so a write never waits
/// half-way for another connection (the checkpoint thread's, a second handle).
pub(crate) fn immediate(conn: &Connection) -> rusqlite::Result<Transaction<'_>> {
    Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)
}

/// Who a store belongs to and where its clock was, as `meta` keeps them.
pub(crate) struct Identity {
    pub device: Option<String>,
    pub actor: Option<String>,
    pub hlc_ms: u64,
    pub hlc_counter: u32,
    pub server_offset_ms: i64,
    /// The server's time at the last sync and the clock since boot then.
    pub boot_anchor: Option<BootAnchor>,
}

pub(crate) fn identity(conn: &Connection) -> Result<Identity, StoreError> {
    let num = |k| -> Result<i64, StoreError> { Ok(meta(conn, k)?.and_then(|v| v.parse().ok()).unwrap_or(0)) };
    Ok(Identity {
        device: meta(conn, "device")?,
        actor: meta(conn, "actor")?,
        hlc_ms: num("hlc_ms")? as u64,
        hlc_counter: num("hlc_counter")? as u32,
        server_offset_ms: num("server_offset_ms")?,
        boot_anchor: match (meta(conn, "anchor_server_ms")?, meta(conn, "anchor_since_boot_ms")?) {
            (Some(s), Some(b)) => s
                .parse()
                .ok()
                .zip(b.parse().ok())
                .map(|(server_ms, since_boot_ms)| BootAnchor { server_ms, since_boot_ms }),
            _ => None,
        },
    })
}

pub(crate) fn set_identity(tx: &Transaction<'_>, device: &str, actor: &str) -> Result<(), StoreError> {
    set_meta(tx, "device", device)?;
    set_meta(tx, "actor", actor)
}

pub(crate) fn set_clock(
    tx: &Transaction<'_>,
    ms: u64,
    counter: u32,
    offset_ms: i64,
    anchor: Option<BootAnchor>,
) -> Result<(), StoreError> {
    set_meta(tx, "hlc_ms", &ms.to_string())?;
    set_meta(tx, "hlc_counter", &counter.to_string())?;
    set_meta(tx, "server_offset_ms", &offset_ms.to_string())?;
    if let Some(a) = anchor {
        set_meta(tx, "anchor_server_ms", &a.server_ms.to_string())?;
        set_meta(tx, "anchor_since_boot_ms", &a.since_boot_ms.to_string())?;
    }
    Ok(())
}

/// The ids of a project's sections.
pub(crate) fn section_ids(conn: &Connection, project: &str) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT id FROM sections WHERE project = ?1")?;
    Ok(stmt.query_map([project], |r| r.get(0))?.collect::<Result<_, _>>()?)
}

/// Queue a salvaged change for the server again, as the local change it was.
pub(crate) fn requeue_local(tx: &Transaction<'_>, change: &OutboxChange) -> Result<(), StoreError> {
    tx.prepare_cached("UPDATE changes SET local = 1, confirmed = 0, created_ms = ?3 WHERE section = ?1 AND hash = ?2")?
        .execute(params![change.section, change.hash, change.created_ms])?;
    Ok(())
}

/// How many changes the outbox holds (of one project, or all).
pub(crate) fn outbox_count(conn: &Connection, project: Option<&str>) -> Result<usize, StoreError> {
    let n: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM changes c
         WHERE c.local = 1 AND c.confirmed = 0 AND c.refused IS NULL
           AND (?1 IS NULL OR c.section IN (SELECT id FROM sections WHERE project = ?1))",
        )?
        .query_row([project], |r| r.get(0))?;
    Ok(n as usize)
}

/// The hashes of a project's local changes the server refused.
pub(crate) fn refused_hashes(
    conn: &Connection,
    project: &str,
) -> Result<std::collections::HashSet<String>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT hash FROM changes
         WHERE refused IS NOT NULL AND section IN (SELECT id FROM sections WHERE project = ?1)",
    )?;
    Ok(stmt.query_map([project], |r| r.get(0))?.collect::<Result<_, _>>()?)
}

/// Mark an unconfirmed local change as refused by the server, and why.
pub(crate) fn mark_refused(tx: &Transaction<'_>, hash: &str, why: &str) -> Result<usize, StoreError> {
    Ok(tx
        .prepare_cached("UPDATE changes SET refused = ?2 WHERE hash = ?1 AND local = 1 AND confirmed = 0")?
        .execute(params![hash, why])?)
}

/// Register a project to sync (idempotent).
pub(crate) fn join_project(tx: &Transaction<'_>, project: &str) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO sync_state (project, cursor, roster_version) VALUES (?1, '', 0) ON CONFLICT DO NOTHING",
    )?
    .execute([project])?;
    Ok(())
}

/// The projects this store syncs.
pub(crate) fn projects(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT project FROM sync_state ORDER BY project")?;
    Ok(stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?)
}

/// A project's feed cursor and roster version (`""`, 0 if it never synced).
pub(crate) fn cursor(conn: &Connection, project: &str) -> Result<(String, u64), StoreError> {
    let row: Option<(String, i64)> = conn
        .prepare_cached("SELECT cursor, roster_version FROM sync_state WHERE project = ?1")?
        .query_row([project], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(row.map_or((String::new(), 0), |(c, v)| (c, v as u64)))
}

pub(crate) fn set_roster_version(tx: &Transaction<'_>, project: &str, version: u64) -> Result<(), StoreError> {
    tx.prepare_cached("UPDATE sync_state SET roster_version = ?2 WHERE project = ?1")?
        .execute(params![project, version as i64])?;
    Ok(())
}

/// A round committed: the cursor moves and the last error clears.
pub(crate) fn set_cursor(tx: &Transaction<'_>, project: &str, cursor: &str, now_ms: i64) -> Result<(), StoreError> {
    tx.prepare_cached(
        "UPDATE sync_state SET cursor = ?2, last_success_ms = ?3, last_error = NULL, last_problem = NULL
         WHERE project = ?1",
    )?
    .execute(params![project, cursor, now_ms])?;
    Ok(())
}

/// Start a project's feed over (the cursor and the roster version).
pub(crate) fn reset_cursor(tx: &Transaction<'_>, project: &str) -> Result<(), StoreError> {
    tx.prepare_cached("UPDATE sync_state SET cursor = '', roster_version = 0 WHERE project = ?1")?
        .execute([project])?;
    Ok(())
}

pub(crate) fn set_sync_error(
    tx: &Transaction<'_>,
    project: &str,
    error: &str,
    problem: &str,
) -> Result<(), StoreError> {
    tx.prepare_cached("UPDATE sync_state SET last_error = ?2, last_problem = ?3 WHERE project = ?1")?
        .execute(params![project, error, problem])?;
    Ok(())
}

/// What the sync status reads besides the outbox.
pub(crate) struct SyncSummary {
    pub refused_changes: i64,
    pub last_success_ms: Option<i64>,
    pub last_error: Option<String>,
    pub last_problem: Option<String>,
}

pub(crate) fn sync_summary(conn: &Connection) -> Result<SyncSummary, StoreError> {
    let refused_changes =
        conn.prepare_cached("SELECT count(*) FROM changes WHERE refused IS NOT NULL")?.query_row([], |r| r.get(0))?;
    let last_success_ms =
        conn.prepare_cached("SELECT max(last_success_ms) FROM sync_state")?.query_row([], |r| r.get(0))?;
    let (last_error, last_problem) = conn
        .prepare_cached("SELECT last_error, last_problem FROM sync_state WHERE last_error IS NOT NULL LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .unwrap_or((None, None));
    Ok(SyncSummary { refused_changes, last_success_ms, last_error, last_problem })
}
