//! What sync is doing, as the app shows it (core's `SyncActivity`, `SyncProgress`).

use fieldsync_core as core;

use crate::problem::SyncProblem;

/// What sync is doing.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum SyncActivity {
    /// No sync can run: `set_connectivity(false)`, or the last round found no
    /// network or no server. Edits are kept and go out when it can.
    Offline,
    /// A sync started and no answer has come yet.
    Connecting,
    /// A sync is under way: what has gone up and come down so far.
    Syncing {
        /// The totals so far.
        progress: SyncProgress,
    },
    /// The last sync brought everything and nothing local waits.
    UpToDate,
    /// No sync runs and something waits: local edits made since the last
    /// sync (`pending_changes`), or no sync has run yet.
    Waiting,
    /// The last sync failed in a way that needs someone: `NotAuthorized`
    /// (sign in again), `UpdateRequired`, `Storage`, `Rejected`, `NotFound`.
    NeedsAttention {
        /// What it needs.
        problem: SyncProblem,
        /// The error, in words.
        detail: String,
    },
}

/// What a sync in flight has done so far, over all its rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct SyncProgress {
    /// Rounds answered so far.
    pub rounds: u32,
    /// Local changes the server has taken (confirmed or refused) so far...
    pub uploaded: u64,
    /// ...of the changes waiting when the sync started ("uploading n of m").
    pub to_upload: u64,
    /// Changes received so far.
    pub downloaded_changes: u64,
    /// Whole section documents received so far (a new device's bootstrap).
    pub downloaded_documents: u64,
    /// Response bytes on the wire so far.
    pub downloaded_bytes: u64,
    /// Whether the server said it holds more.
    pub more_to_download: bool,
    /// Changes this sync will have received once the server has sent what
    /// it said it still holds ("downloading n of m changes"); null while the
    /// server has not counted it (a scope other than everything, an older server).
    pub changes_to_download: Option<u64>,
    /// Whole documents this sync will have received, likewise ("n of m sections").
    pub documents_to_download: Option<u64>,
}

impl From<core::SyncProgress> for SyncProgress {
    fn from(p: core::SyncProgress) -> Self {
        SyncProgress {
            rounds: p.rounds,
            uploaded: p.uploaded,
            to_upload: p.to_upload,
            downloaded_changes: p.downloaded_changes,
            downloaded_documents: p.downloaded_documents,
            downloaded_bytes: p.downloaded_bytes,
            more_to_download: p.more_to_download,
            changes_to_download: p.changes_to_download,
            documents_to_download: p.documents_to_download,
        }
    }
}

impl From<core::SyncActivity> for SyncActivity {
    fn from(a: core::SyncActivity) -> Self {
        match a {
            core::SyncActivity::Offline => SyncActivity::Offline,
            core::SyncActivity::Connecting => SyncActivity::Connecting,
            core::SyncActivity::Syncing(p) => SyncActivity::Syncing { progress: p.into() },
            core::SyncActivity::UpToDate => SyncActivity::UpToDate,
            core::SyncActivity::Waiting => SyncActivity::Waiting,
            core::SyncActivity::NeedsAttention { problem, detail } => {
                SyncActivity::NeedsAttention { problem: problem.into(), detail }
            }
        }
    }
}
