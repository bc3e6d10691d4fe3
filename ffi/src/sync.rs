//! Sync as the app sees it. Today: the status the replica keeps (pending,
//! refused, last success or error), readable and observable.
//!
//! The place for the sync client (`core::sync_client`, landed after this
//! module was written). Each item a line or two of delegation like the rest:
//!
//! - `Replica` gains `client: Mutex<Option<Arc<core::SyncClient>>>` and
//!   `background: Mutex<Option<core::BackgroundSync>>`. `SyncClient::new` takes
//!   the same `Arc<Mutex<core::Replica>>` the object already holds (`inner`).
//! - `connect(server_url, token)` builds `core::HttpTransport::new(url, token,
//!   timeout)`; `connect_with(transport: Arc<dyn AppTransport>)` wraps an
//!   app-provided transport: `#[uniffi::export(foreign)] trait AppTransport {
//!   fn round_trip(&self, request: Vec<u8>) -> Result<Vec<u8>, TransportError>; }`
//!   mirrors `core::Transport` exactly, with a `TransportError` record-enum
//!   (`Unreachable { detail }`, `Server { status, error, message }`) and
//!   `From<UnexpectedUniFFICallbackError>` into `Unreachable`, like
//!   `ObserverError`. (Or a trailing `server: Option<ServerConfig>` argument,
//!   default `None`, on `open`: today's calls keep compiling either way.)
//! - `sync_now() -> SyncReport`: `client.sync_now()`, then
//!   `observers.notify(Touched::Sections(report.sections_changed), &inner)`;
//!   on error `observers.notify(Touched::Nothing, …)` (sync-status observers
//!   are due on every notice) and the error through `FieldSyncError::from`.
//!   Blocking: Kotlin gets `suspend fun Replica.sync()` in FieldSyncFlows.kt
//!   and Swift `func sync() async throws` beside `run`.
//! - `start_background_sync(config)`: `BackgroundSync::start(client, config,
//!   listener)` where the listener (on the sync thread) does the same notify
//!   for `SyncUpdate::Synced(report)` / `Failed`; `stop_background_sync()`
//!   drops it. `set_connectivity(online)` sends `SyncEvent::Connectivity`;
//!   `Replica::write` sends `SyncEvent::LocalEdit` after each local write.
//! - `CoreError::Sync(core::SyncError)` in `error.rs`: `Transport(Unreachable)`,
//!   `Protocol`, `TooManyRounds` → `Offline`; `Transport(Server { 401 | 403 })`
//!   → `NotAuthorized`; `Transport(Server { 426 })` → `Storage` ("update the
//!   app"); `Replica(e)` → the replica arms.
//! - Records: `SyncReport` (rounds, bytes, confirmed, refused, new changes,
//!   documents, sections changed, reconciliation) and `SyncConfig`.

use fieldsync_core as core;

/// What the app can see of sync.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SyncStatus {
    /// Local changes the server has not confirmed yet.
    pub pending_changes: i64,
    /// Device wall-clock ms of the oldest of them.
    pub oldest_pending_ms: Option<i64>,
    /// Changes the server refused (kept here, not sent again).
    pub refused_changes: i64,
    /// Device wall-clock ms of the last successful round.
    pub last_success_ms: Option<i64>,
    /// The last round's error, cleared by a success.
    pub last_error: Option<String>,
}

impl From<core::SyncStatus> for SyncStatus {
    fn from(s: core::SyncStatus) -> Self {
        SyncStatus {
            pending_changes: s.pending_changes,
            oldest_pending_ms: s.oldest_pending_ms,
            refused_changes: s.refused_changes,
            last_success_ms: s.last_success_ms,
            last_error: s.last_error,
        }
    }
}
