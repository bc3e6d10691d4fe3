//! What sync is doing, as an app shows it: offline, connecting, syncing (with
//! what went up and came down so far), up to date, or needing attention.
//!
//! A sync in flight is kept in the replica's memory (its [`SyncPhase`], set by
//! [`crate::SyncClient`] at each step of the sync, under the replica's lock, and
//! published on the change feed); when none is, the activity follows from the
//! stored status (the last round's problem, the pending changes) and the
//! app's connectivity hint.

use serde::{Deserialize, Serialize};

use crate::replica::feed::ReplicaChange;
use crate::replica::{Replica, ReplicaError};
pub use crate::sync::phase::{SyncPhase, SyncProgress};
use crate::sync::status::SyncProblem;

/// What sync is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "activity", rename_all = "snake_case")]
pub enum SyncActivity {
    /// No sync can run: the app's hint says the device is offline, or the
    /// last round found no network or no server. Edits are kept and go out
    /// when it can.
    Offline,
    /// A sync started and no answer has come yet.
    Connecting,
    /// A sync is under way: what has gone up and come down so far.
    Syncing(SyncProgress),
    /// The last sync brought everything and nothing local waits.
    UpToDate,
    /// No sync runs and something waits: local edits made since the last
    /// sync (the status's `pending_changes`), or no sync has run yet.
    Waiting,
    /// The last sync failed in a way that needs someone (sign in again,
    /// update the app, free some space, report a bug).
    NeedsAttention {
        /// What it needs.
        problem: SyncProblem,
        /// The error, in words.
        detail: String,
    },
}

impl Replica {
    /// What sync is doing now.
    pub fn sync_activity(&self) -> Result<SyncActivity, ReplicaError> {
        match self.sync_phase {
            SyncPhase::Connecting => return Ok(SyncActivity::Connecting),
            SyncPhase::Syncing(progress) => return Ok(SyncActivity::Syncing(progress)),
            SyncPhase::Idle => {}
        }
        if !self.online_hint {
            return Ok(SyncActivity::Offline);
        }
        let status = self.sync_status()?;
        Ok(match status.last_problem {
            Some(SyncProblem::Offline) => SyncActivity::Offline,
            Some(problem) => SyncActivity::NeedsAttention { problem, detail: status.last_error.unwrap_or_default() },
            None if status.pending_changes > 0 || status.last_success_ms.is_none() => SyncActivity::Waiting,
            None => SyncActivity::UpToDate,
        })
    }

    /// Set where a sync is (the sync client's, at each step); a change is published.
    pub fn set_sync_phase(&mut self, phase: SyncPhase) {
        if self.sync_phase != phase {
            self.sync_phase = phase;
            self.feed.publish(ReplicaChange::status());
        }
    }

    /// The app's connectivity hint: offline shows as [`SyncActivity::Offline`]
    /// while no sync runs. A change is published.
    pub fn set_online_hint(&mut self, online: bool) {
        if self.online_hint != online {
            self.online_hint = online;
            self.feed.publish(ReplicaChange::status());
        }
    }
}
