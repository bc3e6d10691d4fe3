//! What a failed sync needs the app to do (core's `SyncProblem`), shared by
//! the status and the activity.

use fieldsync_core as core;

/// What a failed sync needs (core's `SyncProblem`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum SyncProblem {
    /// No network, the server down or overloaded: sync goes on by itself.
    Offline,
    /// The server refuses this device (token revoked or unknown, user not in
    /// the project): sign in again, then `connect` with the new token.
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

impl From<core::SyncProblem> for SyncProblem {
    fn from(p: core::SyncProblem) -> Self {
        match p {
            core::SyncProblem::Offline => SyncProblem::Offline,
            core::SyncProblem::NotAuthorized => SyncProblem::NotAuthorized,
            core::SyncProblem::NotFound => SyncProblem::NotFound,
            core::SyncProblem::UpdateRequired => SyncProblem::UpdateRequired,
            core::SyncProblem::Rejected => SyncProblem::Rejected,
            core::SyncProblem::Storage => SyncProblem::Storage,
        }
    }
}
