//! FieldSync's engine: one Automerge document per fiber section, the rules
//! that every replica applies over the merge, and the durable local store.
//!
//! Module guide:
//! - [`hlc`]: hybrid logical clock stamps, anchored to the server's time.
//! - [`project`], [`state_machine`], [`route`]: the domain: roles and roster,
//!   project config, construction states and events, GPS distance to a route.
//! - [`edit`], [`document`]: how writes sit in a section document.
//! - [`rules`], [`view`], [`conflict`]: the validated view, decisions and
//!   conflict records, a pure function of the merged document.
//! - [`schema`], [`store`]: the SQLite store.
//! - [`replica`]: the API the apps, the CLI and the bindings call.
//! - [`protocol`], [`pack`], [`replica_sync`], [`sync_engine`],
//!   [`sync_client`], [`transport`]: sync with the hub (wire format, changes
//!   packed on the wire, the replica's side of a round, when to sync, the
//!   runtime, how a round travels); `live` (feature `http`): the WebSocket
//!   that nudges background sync.
//! - [`settings`]: small named settings kept in the replica's database.
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
//! ```

mod checkpoint;
pub mod conflict;
pub mod document;
pub mod edit;
pub mod encryption;
pub mod hlc;
#[cfg(feature = "http")]
pub mod live;
mod merge;
pub mod pack;
pub mod project;
pub mod protocol;
pub mod replica;
pub mod replica_sync;
pub mod route;
pub mod rules;
pub mod schema;
pub mod settings;
pub mod state_machine;
pub mod store;
pub mod sync_client;
pub mod sync_engine;
pub mod transport;
pub mod view;

pub use conflict::{Candidate, ConflictKind, ConflictRecord, Rule};
pub use document::{DocumentError, PhotoRef, SectionDoc};
pub use edit::{Edit, EditId, EditValue, Field};
pub use encryption::{EncryptionError, StoreKey, encrypt_store};
pub use hlc::{Hlc, HlcClock};
#[cfg(feature = "http")]
pub use live::{LiveChannel, LiveConfig, LiveError};
pub use project::{Member, ProgressBand, ProjectConfig, Role, Roster};
pub use replica::{
    EditOutcome, EditReceipt, HistoryEntry, MergeReport, PastPoint, Reconciliation, Replica, ReplicaError,
    ReplicaOptions, SectionChange,
};
pub use replica_sync::{PreparedRound, RoundReport, SyncStatus};
pub use route::GeoPoint;
pub use schema::{Durability, OpenError};
pub use state_machine::{ConstructionState, DomainEventKind};
pub use store::{OutboxChange, SectionSummary, StoreError, salvage};
pub use sync_client::{BackgroundSync, SyncClient, SyncError, SyncNotifier, SyncProblem, SyncReport, SyncUpdate};
pub use sync_engine::{SyncAction, SyncConfig, SyncEngine, SyncEvent};
#[cfg(feature = "http")]
pub use transport::HttpTransport;
pub use transport::{Transport, TransportError};
pub use view::{AuditEntry, Blocked, Decision, DomainEvent, PointRecord, QuarantinedPoint, SectionView};
