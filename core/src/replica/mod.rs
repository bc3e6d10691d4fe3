//! The replica: the one API the phone app, the CLI, the server and the
//! bindings call. It keeps section documents in the local store, refuses
//! local writes that break a rule before storing anything, and after every
//! write or merge stores the validated view and conflict records in the same
//! transaction as the changes.
//!
//! Its methods live by seam: local writes (`write.rs`), reads (`read.rs`),
//! roster and server time (`roster.rs`), upkeep (`maintenance.rs`), settings
//! (`settings.rs`); a sync round and a merge are in `crate::sync`. What each
//! call changed is published on its change feed (`feed.rs`).

mod cache;
pub(crate) mod feed;
mod maintenance;
mod photos;
mod read;
mod roster;
mod scope;
mod settings;
mod thumbnail;
mod write;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use automerge::ActorId;
use rusqlite::Connection;

pub(crate) use cache::{DOC_CACHE, DocCache};
pub use feed::{ChangeFeed, FeedSubscription, ReplicaChange};
pub use photos::{MAX_PHOTO_BYTES, PendingPhoto, PhotoState, PhotoToFetch, describe_photo, photo_media_type};
pub use read::{HistoryEntry, PastPoint};
pub use scope::{HeldBecause, SectionHolding};
pub(crate) use scope::{ScopeSettlement, settle_scope};
pub use write::EditReceipt;

use crate::domain::device_clock::{DeviceClock, SystemClock};
use crate::domain::document::DocumentError;
use crate::domain::hlc::{DeviceTime, HlcClock};
use crate::domain::id::{IdSource, RandomIds};
use crate::domain::route::InvalidPoint;
use crate::rules::conflict::Rule;
use crate::store::encryption::StoreKey;
use crate::store::schema::{self, Durability, OpenError};
use crate::store::{self, StoreError, checkpoint::Checkpointer};
use crate::sync::phase::SyncPhase;

/// Errors from replica calls.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicaError {
    /// A rule refused the write; nothing was stored.
    #[error("refused by rule {}: {reason}", rule.as_str())]
    Refused {
        /// The rule.
        rule: Rule,
        /// Why, in words for the technician.
        reason: String,
    },
    /// No such section in this store.
    #[error("no section `{0}` in this store; list sections to see the ids")]
    UnknownSection(String),
    /// The input makes no sense.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The local database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A document could not be read or written.
    #[error(transparent)]
    Document(#[from] DocumentError),
    /// A photo's bytes could not be kept (the disk is full, say); nothing was attached.
    #[error("{0}")]
    Photo(String),
}

impl From<rusqlite::Error> for ReplicaError {
    fn from(e: rusqlite::Error) -> Self {
        ReplicaError::Store(StoreError::Sqlite(e))
    }
}

impl From<crate::domain::coverage::InvalidScope> for ReplicaError {
    fn from(e: crate::domain::coverage::InvalidScope) -> Self {
        ReplicaError::InvalidInput(e.to_string())
    }
}

impl From<InvalidPoint> for ReplicaError {
    fn from(e: InvalidPoint) -> Self {
        ReplicaError::InvalidInput(e.to_string())
    }
}

/// How to open a replica.
#[derive(Debug, Clone)]
pub struct ReplicaOptions {
    /// The device this store belongs to; a store refuses to open as another.
    pub device: String,
    /// Durability of each edit.
    pub durability: Durability,
    /// Encrypt the store with this key (feature `encryption`); `None`: a plain SQLite file.
    pub encryption_key: Option<StoreKey>,
    /// The device's clocks, read for every stamp and by its sync client
    /// (default: [`SystemClock`]; a simulated device's runs in virtual time).
    pub clock: Arc<dyn DeviceClock>,
    /// Where new section, photo and actor ids come from (default: [`RandomIds`]).
    pub ids: Arc<dyn IdSource>,
}

impl Default for ReplicaOptions {
    fn default() -> Self {
        ReplicaOptions {
            device: String::new(),
            durability: Durability::default(),
            encryption_key: None,
            clock: Arc::new(SystemClock),
            ids: Arc::new(RandomIds),
        }
    }
}

/// A replica of the sections this device works on.
pub struct Replica {
    // First, so that it stops (closing its connection) before `conn` closes
    // last and SQLite folds the WAL back into the file.
    _checkpoints: Checkpointer,
    pub(crate) conn: Connection,
    path: PathBuf,
    device: String,
    pub(crate) actor: ActorId,
    pub(crate) clock: HlcClock,
    /// The device's clocks ([`ReplicaOptions::clock`]).
    device_clock: Arc<dyn DeviceClock>,
    ids: Arc<dyn IdSource>,
    pub(crate) docs: DocCache,
    pub(crate) feed: ChangeFeed,
    /// Where a sync is (memory only: no sync survives the process).
    pub(crate) sync_phase: SyncPhase,
    /// The app's last connectivity hint.
    pub(crate) online_hint: bool,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica").field("path", &self.path).field("device", &self.device).finish_non_exhaustive()
    }
}

impl Replica {
    /// Open (or create) the store at `path` for `options.device`. Only small
    /// metadata is read: no document is loaded until it is used.
    pub fn open(path: impl AsRef<Path>, options: ReplicaOptions) -> Result<Replica, OpenError> {
        let path = path.as_ref().to_owned();
        let key = options.encryption_key.as_ref();
        let mut conn = schema::open(&path, options.durability, key, options.clock.now().wall_ms)?;
        let checkpoints = Checkpointer::start(&mut conn, &path, key.cloned()).map_err(OpenError::Checkpointer)?;
        let identity = store::identity(&conn).map_err(OpenError::from)?;
        let actor = match identity.device {
            Some(found) if found != options.device => {
                return Err(OpenError::OtherDevice { path, found, wanted: options.device });
            }
            Some(_) if identity.actor.is_some() => {
                ActorId::from(hex::decode(identity.actor.unwrap_or_default()).unwrap_or_default())
            }
            _ => {
                let actor = ActorId::from(hex::decode(options.ids.new_id()).expect("ids are hex"));
                let tx = store::immediate(&conn)?;
                store::set_identity(&tx, &options.device, &actor.to_hex_string())?;
                tx.commit()?;
                actor
            }
        };
        let clock =
            HlcClock::new(actor.to_hex_string(), identity.hlc_ms, identity.hlc_counter, identity.server_offset_ms)
                .with_boot_anchor(identity.boot_anchor);
        Ok(Replica {
            _checkpoints: checkpoints,
            conn,
            path,
            device: options.device,
            actor,
            clock,
            device_clock: options.clock,
            ids: options.ids,
            docs: DocCache::new(),
            feed: ChangeFeed::default(),
            sync_phase: SyncPhase::Idle,
            online_hint: true,
        })
    }

    /// The file this replica lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The device this store belongs to.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// Hex Automerge actor id this replica writes as (what the roster binds).
    pub fn actor(&self) -> String {
        self.actor.to_hex_string()
    }

    /// The replica's change feed: what each write, merge, sync round, roster
    /// change and change of sync activity changed (see [`ChangeFeed`]).
    pub fn change_feed(&self) -> ChangeFeed {
        self.feed.clone()
    }

    /// The clocks this replica reads ([`ReplicaOptions::clock`]); its sync client reads them too.
    pub fn device_clock(&self) -> Arc<dyn DeviceClock> {
        self.device_clock.clone()
    }

    /// The device's time now, by its clocks.
    pub(crate) fn now(&self) -> DeviceTime {
        self.device_clock.now()
    }

    /// A new id from the replica's source.
    pub(crate) fn new_id(&self) -> String {
        self.ids.new_id()
    }

    /// The underlying connection, for tests and simulations that inspect the tables.
    #[cfg(feature = "simulation")]
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// A transaction that takes the write lock at once (a local write never
    /// waits half-way for another connection).
    pub(crate) fn begin(&self) -> Result<rusqlite::Transaction<'_>, StoreError> {
        Ok(store::immediate(&self.conn)?)
    }

    pub(crate) fn save_clock(&self, tx: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
        let (ms, counter, offset) = self.clock.state();
        store::set_clock(tx, ms, counter, offset, self.clock.boot_anchor())
    }
}
