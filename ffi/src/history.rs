//! A section's history and the points of it the app can travel back to.

use fieldsync_core as core;

/// One change of a section's history.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct HistoryEntry {
    /// Hex change hash.
    pub hash: String,
    /// Hex actor id of the device that made it.
    pub actor: String,
    /// HLC physical time of the change, ms since the Unix epoch.
    pub time_ms: i64,
    /// What the change was about.
    pub message: Option<String>,
    /// Hex hashes of the changes it builds on.
    pub deps: Vec<String>,
}

impl From<core::HistoryEntry> for HistoryEntry {
    fn from(h: core::HistoryEntry) -> Self {
        HistoryEntry { hash: h.hash, actor: h.actor, time_ms: h.time_ms, message: h.message, deps: h.deps }
    }
}

/// A past point of a section's history, for time travel.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum PastPoint {
    /// As it was once the changes with these hashes had been made (a view's `heads`).
    Heads {
        /// Hex change hashes.
        heads: Vec<String>,
    },
    /// As it was at this HLC time: every change stamped at or before it.
    Time {
        /// Milliseconds since the Unix epoch.
        ms: u64,
    },
}

impl From<PastPoint> for core::PastPoint {
    fn from(p: PastPoint) -> Self {
        match p {
            PastPoint::Heads { heads } => core::PastPoint::Heads(heads),
            PastPoint::Time { ms } => core::PastPoint::Time(ms),
        }
    }
}
