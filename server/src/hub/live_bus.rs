//! The live bus: in-process news for the live channels. Each project's feed
//! growth (a round committed here, or by another process through
//! [`crate::pg_store::listen`]) and each device revocation (through this hub,
//! or found in the store by [`Hub::look_for_revocations`]).

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::broadcast;

/// How far before the latest revocation seen the store is looked at again:
/// another process's clock, or its commit, may lag ours.
pub(super) const REVOCATION_SLACK_MS: u64 = 60_000;

/// Feed notices by project, and revocations.
pub(super) struct LiveBus {
    feeds: Mutex<HashMap<String, broadcast::Sender<u64>>>,
    revoked: broadcast::Sender<String>,
    /// Revocations announced already, by when they were made.
    seen: Mutex<RevocationsSeen>,
}

struct RevocationsSeen {
    /// The latest revocation seen (or when the hub started).
    since_ms: u64,
    ids: HashMap<String, u64>,
}

impl LiveBus {
    pub(super) fn new(now_ms: u64) -> LiveBus {
        LiveBus {
            feeds: Mutex::new(HashMap::new()),
            revoked: broadcast::channel(64).0,
            seen: Mutex::new(RevocationsSeen { since_ms: now_ms, ids: HashMap::new() }),
        }
    }

    pub(super) fn subscribe(&self, project: &str) -> broadcast::Receiver<u64> {
        let mut feeds = self.feeds.lock().unwrap_or_else(|p| p.into_inner());
        feeds.entry(project.to_owned()).or_insert_with(|| broadcast::channel(16).0).subscribe()
    }

    pub(super) fn notify(&self, project: &str, seq: u64) {
        let mut feeds = self.feeds.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = feeds.get(project)
            && tx.send(seq).is_err()
        {
            feeds.remove(project); // Nobody listens any more.
        }
    }

    pub(super) fn revocations(&self) -> broadcast::Receiver<String> {
        self.revoked.subscribe()
    }

    pub(super) fn revoked(&self, device: &str) {
        let _ = self.revoked.send(device.to_owned()); // No receiver: no live channel open.
    }

    /// Where to look for revocations from: a little before the latest seen.
    pub(super) fn look_from_ms(&self) -> u64 {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).since_ms.saturating_sub(REVOCATION_SLACK_MS)
    }

    /// Announce those of `found` (device, when revoked) not announced yet; how many.
    pub(super) fn announce_revoked(&self, found: Vec<(String, u64)>) -> usize {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let mut announced = 0;
        for (id, at_ms) in found {
            seen.since_ms = seen.since_ms.max(at_ms);
            if seen.ids.insert(id.clone(), at_ms).is_none() {
                self.revoked(&id);
                announced += 1;
            }
        }
        let oldest = seen.since_ms.saturating_sub(REVOCATION_SLACK_MS);
        seen.ids.retain(|_, at_ms| *at_ms >= oldest);
        announced
    }
}
