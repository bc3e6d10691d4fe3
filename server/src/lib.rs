//! FieldSync's sync hub: it authenticates devices, keeps each project's
//! change feed, screens every upload with the same rules code as the phones,
//! answers a device's round with what it lacks, and tells online devices
//! when there is something new.
//!
//! Module guide:
//! - [`hub`]: [`Hub`], the protocol over a store, callable in-process (a
//!   simulated network drives exactly this code), plus the admin calls.
//! - [`store`], [`sqlite_store`], [`schema`]: the [`HubStore`] trait and its
//!   embedded SQLite backend (`<data dir>/hub.db`, photo bytes in
//!   `<data dir>/photos/`, [`photo_files`]).
//! - [`pg_store`]: the PostgreSQL backend, for several hub processes serving
//!   the same projects, and [`pg_store::listen`] for their live notices.
//! - [`http`]: the axum routes and [`serve`] with graceful shutdown, and the
//!   HTTP layer's limits ([`ServeOptions`]): connections, timeouts, rates, the
//!   live channel.
//! - [`throttle`]: per-device request rates and live channels, in memory.
//! - [`error`]: [`HubError`] and its one mapping to HTTP statuses.
//! - [`cursor`]: the opaque feed cursor devices send back.
//! - [`limits`]: the hub's limits on what a client controls (ids, counts,
//!   sizes of changes and documents, actors per device).
//! - Operating it: [`metrics`] (every Prometheus metric, one [`Metrics`] per
//!   hub), [`timed_store`] (the store's time per call), [`freshness`] (edit →
//!   visible on another online device), [`request_log`] (a log line and the
//!   metrics of each request, `x-request-id`), [`health`] (liveness,
//!   readiness), [`metrics_listener`] (`/metrics` on an address of its own).
//!   The server emits `tracing` events only; the process chooses the subscriber.
//!
//! ```
//! use fieldsync_core::protocol::{self, PROTOCOL_VERSION, SyncRequest, SyncResponse};
//! use fieldsync_core::{ProjectConfig, Role};
//! use fieldsync_server::Hub;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let hub = Hub::open(dir.path()).unwrap();
//! hub.create_project("p1", ProjectConfig::default()).unwrap();
//! hub.add_member("p1", "olga", Role::Office).unwrap();
//! let phone = hub.enroll_device("olga", "Olga's phone").unwrap();
//! let request = SyncRequest {
//!     protocol: PROTOCOL_VERSION,
//!     project: "p1".into(),
//!     actor: "0a0b0c0d".into(),
//!     cursor: String::new(),
//!     roster_version: 0,
//!     response_budget: protocol::DEFAULT_RESPONSE_BUDGET,
//!     upload: vec![],
//!     scope: Default::default(),
//!     held: None,
//! };
//! let body = hub.sync(&phone.token, &protocol::encode(&request), 1_700_000_000_000).unwrap();
//! let response: SyncResponse = protocol::decode(&body).unwrap();
//! // The first round binds the device's actor and brings the roster: the device learns its role.
//! let roster = response.roster.unwrap();
//! assert_eq!((roster.members[0].actor.as_str(), roster.members[0].role), ("0a0b0c0d", Role::Office));
//! assert_eq!(response.cursor, "c:0");
//! ```

pub mod cursor;
pub mod error;
pub mod freshness;
pub mod health;
pub mod http;
pub mod hub;
pub mod limits;
pub mod metrics;
pub mod metrics_listener;
pub mod pg_store;
pub mod pg_tls;
pub mod photo_files;
pub mod request_log;
pub mod schema;
mod sqlite_coverage;
pub mod sqlite_store;
pub mod store;
pub mod store_pool;
pub mod throttle;
pub mod timed_store;

pub use error::HubError;
pub use http::{ServeOptions, router, router_with, serve, serve_with, shutdown_signal};
pub use hub::{Enrollment, Hub, token_hash};
pub use metrics::Metrics;
pub use metrics_listener::{metrics_router, serve_metrics};
pub use pg_store::PgHubStore;
pub use sqlite_store::SqliteHubStore;
pub use store::{
    DeviceRecord, DeviceSummary, FeedPage, FeedRow, HubStore, MemberSummary, ProjectRecord, ProjectSummary, RoundWrite,
    SectionWrite, StoreError, StoredPhoto, StoredSection,
};

/// The wall clock, ms since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
