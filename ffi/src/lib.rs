//! FieldSync's surface for phone apps, exported with UniFFI proc-macros to
//! Kotlin (`dev.fieldsync`) and Swift (`FieldSync`). The only crate that
//! depends on UniFFI; `fieldsync-core` knows nothing of it.
//!
//! Module guide:
//! - [`replica`]: the `Replica` object, one delegation per method.
//! - [`sync`]: its sync methods (`connect`, `connect_with` an [`AppTransport`],
//!   `sync_now`, background sync, connectivity hints, the status).
//! - [`domain`], [`view`], [`conflict`], [`merge`], [`history`], [`sync`]:
//!   records and enums mirroring core's types, with `From` conversions.
//! - [`credentials`]: the app's `CredentialsConnector` (a fresh token when the
//!   server refuses one), for `connect_with_credentials`.
//! - [`error`]: `FieldSyncError`, what the app can act on, mapped in one `match`.
//! - [`log`]: the log hook, core's log lines into the app's own logging.
//! - [`query`]: live section lists (filtered, ordered pages), read or observed.
//! - [`scope`]: partial sync: the `Scope` a project is to hold (its
//!   `Subscription`s: a corridor, a box, ids, a crew), `set_scope`,
//!   `subscribe`, which sections are held and why (`holdings`), and the
//!   office's `assign_crew`.
//! - [`photos`]: where each photo's bytes are (`PhotoState`, read or
//!   observed per section), `fetch_photo` with progress, the photo lane's
//!   settings (metered links, when full sizes go, the storage budget).
//! - [`activity`]: what sync is doing (offline, connecting, syncing with its
//!   progress, up to date, waiting, needs attention), in the status.
//! - [`observer`]: observers of a section, of conflicts, of a section list
//!   and of the sync status, thin handles over core's change feed, and the
//!   handle that cancels them on drop.
//!
//! The same API from Rust (the foreign languages read the same way):
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use fieldsync_ffi::{FieldSyncError, GeoPoint, Member, ObserverError, Replica, Role, SectionObserver, SectionView};
//!
//! struct Latest(Mutex<Vec<u8>>);
//! impl SectionObserver for Latest {
//!     fn on_update(&self, view: SectionView) -> Result<(), ObserverError> {
//!         self.0.lock().unwrap().push(view.progress);
//!         Ok(())
//!     }
//! }
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("office.db").display().to_string();
//! let office = Replica::open(path, "office-1".into(), None).unwrap();
//! office.set_roster("p1".into(), vec![Member { actor: office.actor(), user: "olga".into(), role: Role::Office }]).unwrap();
//! let route = vec![GeoPoint { lat: 48.0, lon: 11.0 }, GeoPoint { lat: 48.0, lon: 11.01 }];
//! let id = office.create_section("p1".into(), "Hauptstraße north".into(), route).unwrap();
//!
//! let seen = Arc::new(Latest(Mutex::new(Vec::new())));
//! let handle = office.observe_section(id.clone(), seen.clone()).unwrap(); // the current view comes first
//! office.record_progress(id.clone(), 5).unwrap();
//! assert!(matches!(office.record_progress(id.clone(), 150), Err(FieldSyncError::RefusedByRule { .. })));
//! drop(handle); // cancels
//! office.record_progress(id, 8).unwrap();
//! assert_eq!(*seen.0.lock().unwrap(), vec![0, 5]);
//! ```

uniffi::setup_scaffolding!("fieldsync");

pub mod activity;
pub mod app_transport;
pub mod conflict;
pub mod credentials;
pub mod domain;
pub mod error;
pub mod history;
pub mod log;
pub mod merge;
pub mod observer;
pub mod photo_state;
pub mod photos;
pub mod problem;
pub mod query;
pub mod replica;
pub mod scope;
pub mod status;
pub mod sync;
mod syncing;
pub mod view;

pub use activity::{SyncActivity, SyncProgress};
pub use app_transport::{
    AppPhotoTransport, AppTransport, PhotoChunkAnswer, TransportError, live_url, sync_content_type,
};
pub use conflict::{Candidate, ConflictKind, ConflictRecord, Rule};
pub use credentials::{CredentialsConnector, CredentialsError};
pub use domain::{ConstructionState, Field, GeoPoint, Member, Role};
pub use error::FieldSyncError;
pub use history::{HistoryEntry, PastPoint};
pub use merge::{EditOutcome, EditReceipt, MergeReport, Reconciliation, SectionChange};
pub use observer::{
    ConflictsObserver, ObserverError, ObserverHandle, PhotosObserver, SectionListObserver, SectionObserver,
    SyncStatusObserver,
};
pub use photo_state::{PhotoState, PhotoStatus};
pub use photos::{FullSizePhotos, PhotoFetchProgress};
pub use problem::SyncProblem;
pub use query::{GeoBounds, SectionOrder, SectionPage, SectionQuery, SectionRow};
pub use replica::Replica;
pub use scope::{HeldBecause, Scope, SectionHolding, Subscription};
pub use status::SyncStatus;
pub use sync::{Cancellation, SyncConfig, SyncReport};
pub use view::{
    AuditEntry, Blocked, Decision, DomainEvent, DomainEventKind, PhotoBlob, PhotoRef, PointRecord, QuarantinedPoint,
    SectionSummary, SectionView,
};
