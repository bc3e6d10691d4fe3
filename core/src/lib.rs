//! FieldSync's engine: one Automerge document per fiber section, the rules
//! that every replica applies over the merge, and the durable local store.
//!
//! Module guide (one folder a room; ARCHITECTURE.md has the map):
//! - `domain`: clocks, roles and projects, construction states, routes, and
//!   how a write sits in a section document. No storage, no I/O.
//! - `rules`: the validated view, decisions and conflict records — a pure
//!   function of the merged document, the roster and the config.
//! - `store`: the SQLite store; all of its SQL.
//! - `replica`: [`Replica`], the API apps, the CLI and the bindings call, and
//!   its [`ChangeFeed`]: what each write, merge, round and roster change changed.
//! - `budget` (beside the rooms): what decoding one body may cost, charged
//!   by the wire format and by the scopes a request carries.
//! - `sync`: the wire format ([`protocol`], [`pack`]), the transport, when to
//!   sync ([`SyncEngine`], no I/O), a round and a merge on the replica's side,
//!   the [`SyncClient`] that drives rounds, the live channel.
//!
//! A replica reads time and draws ids through what it is given
//! ([`ReplicaOptions::clock`], [`ReplicaOptions::ids`]); what only
//! simulations and tests need (a settable clock, seeded ids) sits behind the
//! feature `simulation`.
//!
//! ```
//! use fieldsync_core::{GeoPoint, Member, Replica, ReplicaOptions, Role, ConstructionState};
//! let dir = tempfile::tempdir().unwrap();
//! let mut office = Replica::open(dir.path().join("office.db"), ReplicaOptions { device: "office-1".into(), ..Default::default() }).unwrap();
//! let me = Member { actor: office.actor(), user: "olga".into(), role: Role::Office };
//! office.set_roster("p1", &[me]).unwrap();
//! let route = [GeoPoint { lat: 48.0, lon: 11.0 }, GeoPoint { lat: 48.0, lon: 11.01 }];
//! let id = office.create_section("p1", "Hauptstraße north", &route).unwrap();
//! office.transition(&id, ConstructionState::Surveyed, None).unwrap();
//! office.record_progress(&id, 15).unwrap();
//! let view = office.section(&id).unwrap();
//! assert_eq!((view.state, view.progress), (ConstructionState::Surveyed, 15));
//! // Rules refuse a bad write before anything is stored.
//! assert!(office.record_progress(&id, 150).is_err());
//!
//! // The change feed says what each call changed; a flush hands it to subscribers.
//! let feed = office.change_feed();
//! let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
//! let log = seen.clone();
//! let _subscription = feed.subscribe(move |change| log.lock().unwrap().extend(change.views.clone()));
//! office.record_progress(&id, 20).unwrap();
//! feed.flush();
//! assert_eq!(*seen.lock().unwrap(), [id.clone()]);
//! // A list screen's page: the sections with edits the server has not confirmed.
//! let query = fieldsync_core::SectionQuery { with_unsynced_edits: true, ..Default::default() };
//! assert!(office.query_sections(&query).unwrap().rows.iter().all(|row| row.id == id && row.unsynced));
//! ```

mod budget;
mod domain;
mod replica;
mod rules;
mod store;
mod sync;

/// The one retry delay (exponential, equal jitter) of every reconnecting loop.
pub use sync::backoff;
/// Changes packed on the wire (the hub unpacks what devices send).
pub use sync::pack;
/// The sync wire format, shared with the hub (normative text: `docs/protocol.md`).
pub use sync::photo_wire;
pub use sync::protocol;

pub use domain::coverage::{Bounds, Coverage, InvalidScope, Scope, Subscription};
#[cfg(feature = "simulation")]
pub use domain::device_clock::ManualClock;
pub use domain::device_clock::{DeviceClock, SystemClock, since_boot_ms, wall_clock_ms};
pub use domain::document::{DocumentError, PhotoBlob, PhotoRef, SectionDoc, SectionInput};
pub use domain::edit::{Edit, EditId, EditValue, Field};
pub use domain::hlc::{BootAnchor, DeviceTime, Hlc, HlcClock};
#[cfg(feature = "simulation")]
pub use domain::id::SeededIds;
pub use domain::id::{IdSource, RandomIds};
pub use domain::project::{FullSizePhotos, Member, ProgressBand, ProjectConfig, RoleChange, Roster};
pub use domain::role::Role;
pub use domain::route::{GeoPoint, InvalidPoint, distance_to_route_m};
pub use domain::state_machine::{ConstructionState, DomainEventKind, FORWARD};
pub use replica::{
    ChangeFeed, EditReceipt, FeedSubscription, HeldBecause, HistoryEntry, MAX_PHOTO_BYTES, PastPoint, PendingPhoto,
    PhotoState, PhotoToFetch, Replica, ReplicaChange, ReplicaError, ReplicaOptions, SectionHolding, describe_photo,
    photo_media_type,
};
pub use rules::conflict::{Candidate, ConflictKind, ConflictRecord, Rule};
pub use rules::mutation::Mutation;
#[cfg(feature = "mutations")]
pub use rules::mutation::set_mutation;
pub use rules::validate::{Validated, validate};
pub use rules::view::{AuditEntry, Blocked, Decision, DomainEvent, PointRecord, QuarantinedPoint, SectionView};
pub use store::encryption::{EncryptionError, StoreKey, encrypt_store};
pub use store::schema::{Durability, OpenError};
pub use store::{
    GeoBounds, OutboxChange, SectionOrder, SectionPage, SectionQuery, SectionRow, SectionSummary, StoreError, salvage,
};
pub use sync::activity::{SyncActivity, SyncPhase, SyncProgress};
pub use sync::client::{
    BackgroundSync, COMPACT_THRESHOLD, DEFAULT_PHOTO_BUDGET, DEFAULT_PHOTO_CHUNK, DEFAULT_PHOTO_CHUNK_TIME,
    MIN_PHOTO_CHUNK_BYTES, PHOTO_CORRUPT, PHOTO_UNREFERENCED, SyncClient, SyncNotifier, SyncUpdate,
};
pub use sync::credentials::{CredentialsConnector, CredentialsError, DeviceToken};
pub use sync::engine::{SyncAction, SyncConfig, SyncEngine, SyncEvent};
#[cfg(feature = "http")]
pub use sync::live::{LiveChannel, LiveConfig, LiveError, live_url};
pub use sync::merge::{EditOutcome, MergeReport, Reconciliation, SectionChange};
pub use sync::photo_wire::{MAX_PHOTO_CHUNK_BYTES, PhotoChunk, PhotoTransport, PhotoUploadState};
pub use sync::round::{PreparedRound, RoundReport};
pub use sync::run::{AnswerTime, MAX_ROUNDS, RoundLimits, RoundTicket, RunStep, SyncError, SyncReport, SyncRun};
pub use sync::status::{RECENT_ROUNDS, RoundFigures, SyncProblem, SyncStatus};
#[cfg(feature = "http")]
pub use sync::transport::HttpTransport;
pub use sync::transport::{Transport, TransportError};
