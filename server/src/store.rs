//! The storage the hub runs on, as a trait: [`crate::SqliteHubStore`] is the
//! embedded default; [`crate::PgHubStore`] keeps everything in PostgreSQL,
//! for several hub processes at once.
//!
//! Each store is one connection: the hub keeps a few ([`crate::store_pool`])
//! and a round has one to itself. A round reads what it needs, decides, then
//! hands every write to [`HubStore::commit_round`], which must apply all of it
//! or none of it. The hub lets one round of a project run at a time in its
//! process; against other processes (PostgreSQL) `commit_round` must re-check
//! the actor binding inside its transaction, serialize writers per project,
//! and refuse ([`StoreError::Stale`]) a section whose rows grew since the
//! round read it, so that a view or snapshot never claims rows it has not folded.

use std::collections::BTreeMap;

use fieldsync_core::{Bounds, Coverage, Member, ProjectConfig, Role, RoleChange};
use serde::{Deserialize, Serialize};

/// Errors of a storage backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed.
    #[error("postgresql: {}", pg_detail(.0))]
    Postgres(postgres::Error),
    /// The database cannot be reached right now (it restarts, the network
    /// dropped, a statement ran out of time): worth trying again shortly.
    #[error("the database is unavailable (postgresql: {0})")]
    Unavailable(String),
    /// The database URL's TLS settings cannot be used.
    #[error("postgresql: {0}")]
    Tls(#[from] crate::pg_tls::PgTlsError),
    /// A stored value is not one this server writes.
    #[error("stored value unreadable: {0}")]
    Corrupt(String),
    /// A stored JSON value could not be read back.
    #[error("stored value unreadable: {0}")]
    Json(#[from] serde_json::Error),
    /// The database was written by a newer server.
    #[error("the hub database has schema version {found}, newer than this server's {supported}; run a newer server")]
    NewerSchema {
        /// Its version.
        found: i64,
        /// Ours.
        supported: i64,
    },
    /// The data directory could not be used.
    #[error("data directory: {0}")]
    Io(#[from] std::io::Error),
    /// While committing, a section turned out to have rows the round did not
    /// read (another hub process committed to it meanwhile): the round is
    /// decided again on what is stored now.
    #[error("section {section} changed since this round read it")]
    Stale {
        /// The section.
        section: String,
    },
    /// While committing, the actor turned out to be bound to another device.
    #[error("actor {actor} is bound to another device")]
    ActorTaken {
        /// The actor.
        actor: String,
    },
}

impl StoreError {
    /// Whether the disk under the store is full: the data directory's file
    /// system (`ENOSPC`), SQLite's `SQLITE_FULL`, PostgreSQL's `53100`. Not
    /// the request's fault, and nothing of it is lost: the hub answers 507,
    /// the device keeps it and tries again later.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Io(e) => e.kind() == std::io::ErrorKind::StorageFull,
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => e.code == rusqlite::ErrorCode::DiskFull,
            StoreError::Postgres(e) => e.code() == Some(&postgres::error::SqlState::DISK_FULL),
            _ => false,
        }
    }
}

/// A PostgreSQL error in words: a server error's own message, not just "db
/// error"; another's cause too ("error performing TLS handshake: invalid peer
/// certificate: UnknownIssuer").
fn pg_detail(e: &postgres::Error) -> String {
    use std::error::Error as _;
    match (e.as_db_error(), e.source()) {
        (Some(db), _) => db.message().to_owned(),
        (None, Some(cause)) if !e.to_string().contains(&cause.to_string()) => format!("{e}: {cause}"),
        _ => e.to_string(),
    }
}

impl From<postgres::Error> for StoreError {
    /// Lost connections and refused connects are [`StoreError::Unavailable`]
    /// (the hub answers 503 and the client retries), as are the server's
    /// "shutting down / starting up" (class 57P) and a statement timeout.
    fn from(e: postgres::Error) -> Self {
        use std::error::Error as _;
        // A failed TLS handshake (an unknown CA, a wrong name) is no outage.
        let tls = e.source().and_then(|s| s.downcast_ref::<std::io::Error>()).and_then(|io| io.get_ref());
        let transient = e.is_closed()
            || (e.source().is_some_and(|s| s.is::<std::io::Error>()) && !tls.is_some_and(|t| t.is::<rustls::Error>()))
            || e.code().is_some_and(|c| {
                let c = c.code();
                c.starts_with("08") || c.starts_with("57P") || c == "57014"
            });
        if transient { StoreError::Unavailable(pg_detail(&e)) } else { StoreError::Postgres(e) }
    }
}

/// An enrolled device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// Its id (random hex).
    pub id: String,
    /// The person it belongs to.
    pub user: String,
    /// A name to recognize it by ("Tina's phone").
    pub name: String,
    /// When it was enrolled, ms since the epoch.
    pub created_ms: u64,
    /// When it was revoked, if it was.
    pub revoked_ms: Option<u64>,
    /// When its current token stops working (ms since the epoch), if it ever does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
}

/// A project as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectRecord {
    /// Its id.
    pub id: String,
    /// The rules' configuration.
    pub config: ProjectConfig,
    /// Bumped whenever members, actor bindings of members' devices, or config change.
    pub roster_version: u64,
}

/// What the store holds of one section document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSection {
    /// The project it belongs to.
    pub project: String,
    /// `Automerge::save` of the document up to `snapshot_seq`, if any.
    pub snapshot: Option<Vec<u8>>,
    /// Feed seq the snapshot covers (0: none).
    pub snapshot_seq: u64,
    /// The section's feed rows after `snapshot_seq`, in feed order.
    pub changes: Vec<Vec<u8>>,
    /// The highest feed seq of the section (`snapshot_seq` if no rows follow it).
    pub last_seq: u64,
    /// When the hub received each of the section's changes (snapshot's
    /// included), by hex hash: server ms, 0 for a change stored before the
    /// hub recorded receipts.
    pub received: BTreeMap<String, u64>,
}

/// One row of a project's change feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedRow {
    /// Position in the feed.
    pub seq: u64,
    /// Section of the change.
    pub section: String,
    /// Raw Automerge change.
    pub bytes: Vec<u8>,
    /// When the hub received it (server ms; 0: before it recorded receipts).
    pub received_ms: u64,
}

/// A page of the feed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedPage {
    /// Rows in feed order.
    pub rows: Vec<FeedRow>,
    /// Whether rows remain after the last one (the budget was reached).
    pub more: bool,
}

impl FeedPage {
    /// The page of `rows` (in feed order) that fits in `budget` bytes of
    /// change: at least one row, `more` if rows were left out. Reads no
    /// further than the first row that does not fit.
    pub fn fill<E>(rows: impl IntoIterator<Item = Result<FeedRow, E>>, budget: usize) -> Result<FeedPage, E> {
        let mut page = FeedPage::default();
        let mut used = 0;
        for row in rows {
            let row = row?;
            if !page.rows.is_empty() && used + row.bytes.len() > budget {
                page.more = true;
                break;
            }
            used += row.bytes.len();
            page.rows.push(row);
        }
        Ok(page)
    }
}

/// Everything a sync round writes about one section.
#[derive(Debug, Clone, PartialEq)]
pub struct SectionWrite {
    /// Section id.
    pub section: String,
    /// The section's highest feed seq when the round read it (0: no rows):
    /// the commit fails with [`StoreError::Stale`] if rows were added since,
    /// so a view or snapshot never claims rows it was not built from.
    pub based_on_seq: u64,
    /// New changes: (hex hash, raw bytes), in the order to append them.
    pub changes: Vec<(String, Vec<u8>)>,
    /// The validated view as JSON.
    pub view: String,
    /// Conflict records: (id, record JSON); they replace the section's previous ones.
    pub conflicts: Vec<(String, String)>,
    /// A new snapshot covering every row of the section, this round's included.
    pub snapshot: Option<Vec<u8>>,
    /// What subscriptions judge the section on, as this round's view has it;
    /// recorded, with this commit's seq for the section, when it differs from
    /// the section's latest.
    pub coverage: Coverage,
}

/// Everything one sync round writes, applied all or nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundWrite {
    /// The project.
    pub project: String,
    /// The uploading device.
    pub device: String,
    /// Its user (whose projects' roster versions a new binding bumps).
    pub user: String,
    /// An actor to bind to the device (first use).
    pub bind_actor: Option<String>,
    /// Server time: the receipt time of every new change.
    pub now_ms: u64,
    /// Raise the stamp floor of this actor (the request's) to this time.
    pub stamp_floor: Option<(String, u64)>,
    /// Per-section writes.
    pub sections: Vec<SectionWrite>,
}

/// A feed seq as the databases hold it (signed 64 bits): `u64::MAX`, "now",
/// becomes the largest they can.
pub(crate) fn stored_seq(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// A coverage recorded in a section's history: JSON, compared as text
/// (serialization is deterministic, so an unchanged coverage is the same text).
pub(crate) fn coverage_json(coverage: &Coverage) -> Result<String, StoreError> {
    Ok(serde_json::to_string(coverage)?)
}

/// The coverage of a stored view (JSON of [`fieldsync_core::SectionView`]),
/// as a migration backfills it.
pub(crate) fn coverage_of_view(view: &str) -> Result<Coverage, StoreError> {
    Ok(serde_json::from_str::<fieldsync_core::SectionView>(view)?.coverage())
}

/// A project with its members, for the admin CLI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectSummary {
    /// Its id.
    pub id: String,
    /// The rules' configuration.
    pub config: ProjectConfig,
    /// Current roster version.
    pub roster_version: u64,
    /// Users and roles, ordered by user.
    pub members: Vec<MemberSummary>,
    /// Number of sections.
    pub sections: u64,
    /// Number of changes in its feed.
    pub changes: u64,
}

/// A member of a project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberSummary {
    /// The user.
    pub user: String,
    /// Their role.
    pub role: Role,
}

/// A device with the actors bound to it, for the admin CLI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSummary {
    /// The device.
    #[serde(flatten)]
    pub device: DeviceRecord,
    /// Automerge actors bound to it.
    pub actors: Vec<String>,
}

/// A photo's upload as the hub holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredPhoto {
    /// Its whole size.
    pub size: u64,
    /// Bytes received, from the start.
    pub received: u64,
    /// Whether every byte arrived and matched the hash.
    pub complete: bool,
}

/// The hub's storage.
pub trait HubStore: Send {
    /// The device whose token hashes to `token_hash` (revoked ones included).
    fn device_by_token_hash(&mut self, token_hash: &str) -> Result<Option<DeviceRecord>, StoreError>;
    /// A project.
    fn project(&mut self, id: &str) -> Result<Option<ProjectRecord>, StoreError>;
    /// `user`'s role in `project`, if a member.
    fn member_role(&mut self, project: &str, user: &str) -> Result<Option<Role>, StoreError>;
    /// The device an actor is bound to.
    fn actor_device(&mut self, actor: &str) -> Result<Option<String>, StoreError>;
    /// How many actors are bound to `device`.
    fn actor_count(&mut self, device: &str) -> Result<usize, StoreError>;
    /// The project's roster: every actor bound to a device of anyone who was ever a member
    /// (removed members keep their past writes' author), ordered by actor, each with their
    /// latest role.
    fn roster(&mut self, project: &str) -> Result<Vec<Member>, StoreError>;
    /// Every role change of the project's members, in the order they were made.
    fn role_history(&mut self, project: &str) -> Result<Vec<RoleChange>, StoreError>;
    /// When the change was received, if it is stored for the section (0:
    /// stored before the hub recorded receipts).
    fn received(&mut self, section: &str, hash: &str) -> Result<Option<u64>, StoreError>;
    /// A section's stored document.
    fn section(&mut self, id: &str) -> Result<Option<StoredSection>, StoreError>;
    /// Apply one round's writes in one transaction, all or nothing; returns
    /// the project's feed max seq afterwards.
    fn commit_round(&mut self, write: &RoundWrite) -> Result<u64, StoreError>;
    /// Keep an audit line for each refused change (outside any round's data).
    fn record_refusals(
        &mut self,
        project: &str,
        device: &str,
        refusals: &[fieldsync_core::protocol::Refusal],
        now_ms: u64,
    ) -> Result<(), StoreError>;
    /// Feed rows of `project` after `after`, not uploaded by `exclude_device`
    /// (unless that device has several actors: then its installs need each
    /// other's rows), up to `budget` bytes of change (at least one row if any).
    fn feed_page(
        &mut self,
        project: &str,
        after: u64,
        exclude_device: &str,
        budget: usize,
    ) -> Result<FeedPage, StoreError>;
    /// How many feed rows of `project` after `after` [`HubStore::feed_page`]
    /// would give `exclude_device`: what it still has to get (a progress total).
    fn feed_count(&mut self, project: &str, after: u64, exclude_device: &str) -> Result<u64, StoreError>;
    /// The project's highest feed seq (0 when empty).
    fn feed_max(&mut self, project: &str) -> Result<u64, StoreError>;
    /// Up to `limit` section ids of the project after `after`, ordered.
    fn sections_after(&mut self, project: &str, after: &str, limit: usize) -> Result<Vec<String>, StoreError>;
    /// How many section ids of the project come after `after`.
    fn sections_count_after(&mut self, project: &str, after: &str) -> Result<u64, StoreError>;
    /// Keep `snapshot` as the section's snapshot, covering its feed up to
    /// `covers_seq`, unless the stored one already covers as much.
    fn put_snapshot(&mut self, section: &str, snapshot: &[u8], covers_seq: u64) -> Result<(), StoreError>;
    /// The stored validated view (JSON) of a section.
    fn section_view(&mut self, id: &str) -> Result<Option<String>, StoreError>;
    /// The stored conflict records (JSON) of a project, ordered by section and id.
    fn conflicts(&mut self, project: &str) -> Result<Vec<String>, StoreError>;
    /// Replace a section's view and conflicts (after a roster or config change).
    fn put_view(&mut self, section: &str, view: &str, conflicts: &[(String, String)]) -> Result<(), StoreError>;
    /// Sections of `project` whose current route's box meets `area`, found by the
    /// store's spatial index, sorted by id: candidates the caller checks exactly.
    fn sections_meeting(&mut self, project: &str, area: Bounds) -> Result<Vec<String>, StoreError>;
    /// Sections of `project` currently assigned to `crew`, sorted by id.
    fn sections_of_crew(&mut self, project: &str, crew: &str) -> Result<Vec<String>, StoreError>;
    /// The coverage of `section` as it stood at feed seq `seq`: the latest
    /// recorded at or before it (`None`: none by then). `u64::MAX`: now.
    fn coverage_at(&mut self, section: &str, seq: u64) -> Result<Option<Coverage>, StoreError>;
    /// Sections of `project` with a coverage recorded at a seq in (after, until], sorted by id.
    fn coverage_changed(&mut self, project: &str, after: u64, until: u64) -> Result<Vec<String>, StoreError>;
    /// Whether the store is reachable and takes writes now: a write in a
    /// transaction that is rolled back (the readiness probe; changes nothing).
    fn check_writable(&mut self) -> Result<(), StoreError>;

    /// Create a project; false if it exists.
    fn create_project(&mut self, id: &str, config: &ProjectConfig) -> Result<bool, StoreError>;
    /// Replace a project's config (bumps the roster version); false if no such project.
    fn set_config(&mut self, id: &str, config: &ProjectConfig) -> Result<bool, StoreError>;
    /// Add a member or change their role (bumps the roster version).
    fn put_member(&mut self, project: &str, user: &str, role: Role, at_ms: u64) -> Result<(), StoreError>;
    /// Remove a member (bumps the roster version); false if not a member.
    fn remove_member(&mut self, project: &str, user: &str, at_ms: u64) -> Result<bool, StoreError>;
    /// Store a new device with its token's hash.
    fn create_device(&mut self, device: &DeviceRecord, token_hash: &str) -> Result<(), StoreError>;
    /// The device an actor is bound to, with the actor's stamp floor (no
    /// write of its may be stamped before it; see `Hub`'s round): one read
    /// of its row for both.
    fn actor_binding(&mut self, actor: &str) -> Result<Option<(String, u64)>, StoreError>;
    /// Raise an actor's stamp floor to `floor_ms` (never lowers it).
    fn raise_stamp_floor(&mut self, actor: &str, floor_ms: u64) -> Result<(), StoreError>;
    /// Give a device a new token (its hash) that stops working at `expires_ms`:
    /// the old one stops at once. False if no such device, or it is revoked.
    fn replace_token(&mut self, id: &str, token_hash: &str, expires_ms: Option<u64>) -> Result<bool, StoreError>;
    /// Revoke a device; false if no such device.
    fn revoke_device(&mut self, id: &str, now_ms: u64) -> Result<bool, StoreError>;
    /// Devices revoked at or after `since_ms` (by any process), with when.
    fn revoked_since(&mut self, since_ms: u64) -> Result<Vec<(String, u64)>, StoreError>;
    /// Every project.
    fn list_projects(&mut self) -> Result<Vec<ProjectSummary>, StoreError>;
    /// Every device.
    fn list_devices(&mut self) -> Result<Vec<DeviceSummary>, StoreError>;

    /// Where the upload of photo `sha256` in `project` stands, if it started.
    fn photo(&mut self, project: &str, sha256: &str) -> Result<Option<StoredPhoto>, StoreError>;
    /// Store `bytes` at `offset` of the photo's upload (starting it, of
    /// `size` bytes, at offset 0) if that is exactly where it stands; else
    /// change nothing. Where it stands afterwards.
    fn append_photo(
        &mut self,
        project: &str,
        sha256: &str,
        size: u64,
        offset: u64,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<StoredPhoto, StoreError>;
    /// A photo whose every byte arrived: keep it as complete, or (`keep`
    /// false: its bytes did not match its hash) drop the upload.
    fn finish_photo(&mut self, project: &str, sha256: &str, keep: bool) -> Result<(), StoreError>;
    /// Up to `length` bytes of a photo's upload, from `offset`.
    fn read_photo(&mut self, project: &str, sha256: &str, offset: u64, length: u64) -> Result<Vec<u8>, StoreError>;
    /// Whether a section view of `project` names photo `sha256` (as its
    /// bytes or its thumbnail).
    fn photo_named(&mut self, project: &str, sha256: &str) -> Result<bool, StoreError>;
    /// Photo uploads (whole or not) begun before `before_ms` that no
    /// section view of their project names (as its bytes or its thumbnail).
    fn unreferenced_photos(&mut self, before_ms: u64) -> Result<Vec<(String, String)>, StoreError>;
    /// Remove a photo's upload and its bytes.
    fn delete_photo(&mut self, project: &str, sha256: &str) -> Result<(), StoreError>;
}
