//! The sync status as the app sees it (core's `SyncStatus`, `SyncProblem`,
//! with its `SyncActivity`).

use fieldsync_core as core;

use crate::activity::SyncActivity;

/// What the app can see of sync.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SyncStatus {
    /// What sync is doing now: show this (offline, connecting, syncing with
    /// its progress, up to date, waiting, needs attention).
    pub activity: SyncActivity,
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
    /// What that error needs, by kind: act on this, show `last_error`.
    pub last_problem: Option<SyncProblem>,
    /// The last rounds that reached the server, oldest first (up to ten).
    pub recent_rounds: Vec<RoundFigures>,
}

/// One round trip as the device saw it (core's `RoundFigures`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct RoundFigures {
    /// Device wall-clock ms when the round ended.
    pub at_ms: i64,
    /// From sending the request to the response committed, ms.
    pub latency_ms: u64,
    /// Request bytes on the wire.
    pub bytes_sent: u64,
    /// Response bytes on the wire.
    pub bytes_received: u64,
}

impl From<core::RoundFigures> for RoundFigures {
    fn from(r: core::RoundFigures) -> Self {
        RoundFigures {
            at_ms: r.at_ms,
            latency_ms: r.latency_ms,
            bytes_sent: r.bytes_sent,
            bytes_received: r.bytes_received,
        }
    }
}

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

impl From<(core::SyncStatus, core::SyncActivity)> for SyncStatus {
    fn from((s, activity): (core::SyncStatus, core::SyncActivity)) -> Self {
        SyncStatus {
            activity: activity.into(),
            pending_changes: s.pending_changes,
            oldest_pending_ms: s.oldest_pending_ms,
            refused_changes: s.refused_changes,
            last_success_ms: s.last_success_ms,
            last_error: s.last_error,
            last_problem: s.last_problem.map(Into::into),
            recent_rounds: s.recent_rounds.into_iter().map(Into::into).collect(),
        }
    }
}
