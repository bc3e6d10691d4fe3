//! Sync as the app sees it. Today: the status the replica keeps (pending,
//! refused, last success or error), readable and observable.
//!
//! The place for the sync client (issue 6's sync half), once `core` has it.
//! What lands here, each a line or two of delegation like the rest:
//!
//! - `ServerConfig { url, token }` and a trailing `server: Option<ServerConfig>`
//!   argument (default `None`) on `Replica::open`, so today's calls still compile;
//! - `Replica::sync_now() -> SyncReport` (blocking; the Kotlin and Swift layers
//!   already run blocking calls off the main thread), `start_background_sync`,
//!   `stop_background_sync`, and `set_connectivity(online)` as a hint;
//! - an app-provided transport, `#[uniffi::export(foreign)] trait AppTransport
//!   { fn round_trip(&self, body: Vec<u8>) -> Result<Vec<u8>, TransportError> }`,
//!   adapted to core's `Transport` so an app can send rounds through OkHttp or
//!   URLSession;
//! - the sync client's error as one more arm of `CoreError` in `error.rs`,
//!   mapped to `Offline`, `NotAuthorized` or `RefusedByRule`;
//! - after every committed round (foreground or background) a call to
//!   `Observers::notify(Touched::Sections(report.sections_changed))`, so views,
//!   conflicts and the sync status reach the observers like local writes do.

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
