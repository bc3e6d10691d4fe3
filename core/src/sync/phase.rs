//! Where a sync of a replica is, and what it has done so far: kept in the
//! replica's memory by [`crate::SyncClient`], read by [`super::activity`].
//! Apart from the activity, which reads the replica, so that the replica
//! can hold a phase without depending on it.

use serde::{Deserialize, Serialize};

/// What a sync in flight has done so far, over all its rounds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncProgress {
    /// Rounds answered so far.
    pub rounds: u32,
    /// Local changes the server has taken (confirmed or refused) so far...
    pub uploaded: u64,
    /// ...of the changes waiting when the sync started.
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
    /// it said it still holds (the download's total); none while the server
    /// has not counted it (a scope other than everything, an older server).
    #[serde(default)]
    pub changes_to_download: Option<u64>,
    /// Whole documents this sync will have received, likewise.
    #[serde(default)]
    pub documents_to_download: Option<u64>,
}

impl SyncProgress {
    /// Uploaded / to upload, 0.0 to 1.0 (1.0 when there was nothing to send).
    pub fn upload_fraction(&self) -> f64 {
        if self.to_upload == 0 { 1.0 } else { (self.uploaded as f64 / self.to_upload as f64).min(1.0) }
    }

    /// Changes and documents received / their total, 0.0 to 1.0; none while
    /// the total is not known.
    pub fn download_fraction(&self) -> Option<f64> {
        let total = self.changes_to_download?.saturating_add(self.documents_to_download?);
        let received = self.downloaded_changes.saturating_add(self.downloaded_documents);
        Some(if total == 0 { 1.0 } else { (received as f64 / total as f64).min(1.0) })
    }
}

/// Where a sync of this replica is, in memory only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SyncPhase {
    /// No sync runs.
    #[default]
    Idle,
    /// A sync started; no answer yet.
    Connecting,
    /// Rounds are going.
    Syncing(SyncProgress),
}
