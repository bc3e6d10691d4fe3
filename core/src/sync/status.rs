//! What the app can see of sync: the status, and what a failure needs.

use serde::{Deserialize, Serialize};

/// What the app can see of sync.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncStatus {
    /// Local changes not yet confirmed by the server.
    pub pending_changes: i64,
    /// Device wall-clock ms of the oldest of them.
    pub oldest_pending_ms: Option<i64>,
    /// Changes the server refused (kept locally, not re-sent).
    pub refused_changes: i64,
    /// Device wall-clock ms of the last successful round.
    pub last_success_ms: Option<i64>,
    /// The last round's error, cleared by a success.
    pub last_error: Option<String>,
    /// What that error needs, by kind.
    pub last_problem: Option<SyncProblem>,
    /// The last rounds that reached the server, oldest first (at most
    /// [`RECENT_ROUNDS`]): what a link is worth, for the app to show.
    #[serde(default)]
    pub recent_rounds: Vec<RoundFigures>,
}

/// How many rounds [`SyncStatus::recent_rounds`] keeps.
pub const RECENT_ROUNDS: usize = 10;

/// One round trip as the device saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundFigures {
    /// Device wall-clock ms when the round ended.
    pub at_ms: i64,
    /// From sending the request to the response committed (or refused), ms.
    pub latency_ms: u64,
    /// Request bytes on the wire.
    pub bytes_sent: u64,
    /// Response bytes on the wire.
    pub bytes_received: u64,
}

/// What a failed sync needs, by kind: what the app (or the person using it)
/// can do about it. Kept with the error in the sync status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncProblem {
    /// No network, the server down or overloaded, an answer cut off: sync goes
    /// on by itself when it can.
    Offline,
    /// The server refuses this device: its token was revoked or is unknown, or
    /// its user is not in the project. Sign in (enroll the device) again.
    NotAuthorized,
    /// The server does not know the project.
    NotFound,
    /// The server speaks a newer protocol: update the app.
    UpdateRequired,
    /// The server refused the request itself: a bug to report.
    Rejected,
    /// This device's store failed (the disk full, say).
    Storage,
}

impl SyncProblem {
    /// Its snake_case name, as stored and as `--json` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncProblem::Offline => "offline",
            SyncProblem::NotAuthorized => "not_authorized",
            SyncProblem::NotFound => "not_found",
            SyncProblem::UpdateRequired => "update_required",
            SyncProblem::Rejected => "rejected",
            SyncProblem::Storage => "storage",
        }
    }

    /// From [`SyncProblem::as_str`]'s names.
    pub fn parse(name: &str) -> Option<SyncProblem> {
        use SyncProblem::*;
        [Offline, NotAuthorized, NotFound, UpdateRequired, Rejected, Storage].into_iter().find(|p| p.as_str() == name)
    }
}
