//! The sync status as the app sees it (core's `SyncStatus`, with its
//! `SyncActivity` and `SyncProblem`).

use fieldsync_core as core;

use crate::activity::SyncActivity;
use crate::problem::SyncProblem;

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
