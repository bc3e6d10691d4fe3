//! The change feed: what changed in a replica, published after every local
//! write, merge, sync round, roster or config change and change of sync
//! activity, so that observers re-read only what changed.
//!
//! The replica queues what each call changed once its transaction has
//! committed; [`ChangeFeed::flush`] hands the queue to the subscribers. Whoever
//! holds the replica flushes once it has let go of it (in a `Mutex`, once the
//! lock is released), so a subscriber may call the replica again:
//! [`crate::SyncClient`] flushes after each round, the bindings after each
//! call. Nothing is queued while nobody subscribes (a subscriber reads the
//! current state first, then follows the changes).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

/// What changed in a replica since the last flush.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaChange {
    /// Sections whose validated view changed: created, written, merged, or
    /// judged anew after a roster or config change. Only those: a merge that
    /// brings nothing new to a section does not name it.
    pub views: BTreeSet<String>,
    /// Sections whose conflict records changed.
    pub conflicts: BTreeSet<String>,
    /// Sections whose unsynced edits changed: a local write, or the server
    /// confirming or refusing what was sent.
    pub unsynced: BTreeSet<String>,
    /// Projects whose roster or config changed.
    pub rosters: BTreeSet<String>,
    /// Sections one of whose photos' bytes moved on this device (a chunk
    /// the server acknowledged, a thumbnail or full size fetched, in part or
    /// whole, one let go under the storage budget): its `photo_state` may differ.
    pub photos: BTreeSet<String>,
    /// Whether the sync status changed: pending changes, a round, a failure,
    /// the sync activity or the connectivity hint.
    pub status: bool,
}

impl ReplicaChange {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.views.is_empty()
            && self.conflicts.is_empty()
            && self.unsynced.is_empty()
            && self.rosters.is_empty()
            && self.photos.is_empty()
            && !self.status
    }

    /// Add what `other` changed.
    pub fn absorb(&mut self, other: ReplicaChange) {
        self.views.extend(other.views);
        self.conflicts.extend(other.conflicts);
        self.unsynced.extend(other.unsynced);
        self.rosters.extend(other.rosters);
        self.photos.extend(other.photos);
        self.status |= other.status;
    }

    /// Every section whose row in a section list may differ: its view,
    /// conflicts or unsynced edits changed.
    pub fn sections(&self) -> BTreeSet<&str> {
        self.views.iter().chain(&self.conflicts).chain(&self.unsynced).map(String::as_str).collect()
    }

    /// Only a status change.
    pub(crate) fn status() -> ReplicaChange {
        ReplicaChange { status: true, ..ReplicaChange::default() }
    }
}

/// A subscriber: told each flushed change, on the flushing thread.
type Subscriber = Arc<dyn Fn(&ReplicaChange) + Send + Sync>;

#[derive(Default)]
struct Feed {
    queued: Mutex<ReplicaChange>,
    subscribers: Mutex<BTreeMap<u64, Subscriber>>,
    next_id: AtomicU64,
}

/// A replica's change feed (a cheap clone of the replica's own): subscribe,
/// and flush what the replica queued.
#[derive(Clone, Default)]
pub struct ChangeFeed {
    feed: Arc<Feed>,
}

impl std::fmt::Debug for ChangeFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeFeed").field("subscribers", &lock(&self.feed.subscribers).len()).finish()
    }
}

impl ChangeFeed {
    /// Call `subscriber` with each change flushed from now on, on the thread
    /// that flushes (several threads may flush at once). Keep the returned
    /// subscription: dropping it unsubscribes.
    pub fn subscribe(&self, subscriber: impl Fn(&ReplicaChange) + Send + Sync + 'static) -> FeedSubscription {
        let id = self.feed.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.feed.subscribers).insert(id, Arc::new(subscriber));
        FeedSubscription { feed: Arc::downgrade(&self.feed), id }
    }

    /// Queue what a call changed (after its transaction committed).
    pub(crate) fn publish(&self, change: ReplicaChange) {
        if change.is_empty() || lock(&self.feed.subscribers).is_empty() {
            return;
        }
        lock(&self.feed.queued).absorb(change);
    }

    /// Whether anyone subscribes (what is published is queued only then).
    pub(crate) fn has_subscribers(&self) -> bool {
        !lock(&self.feed.subscribers).is_empty()
    }

    /// Hand what is queued to every subscriber, each change exactly once. Call
    /// it with the replica no longer borrowed (its lock released).
    pub fn flush(&self) {
        let change = std::mem::take(&mut *lock(&self.feed.queued));
        if change.is_empty() {
            return;
        }
        // Called with no lock held: a subscriber may subscribe, flush or call the replica.
        let subscribers: Vec<Subscriber> = lock(&self.feed.subscribers).values().cloned().collect();
        for s in subscribers {
            s(&change);
        }
    }
}

/// Keeps a subscriber subscribed; dropping it unsubscribes.
#[derive(Debug)]
pub struct FeedSubscription {
    feed: Weak<Feed>,
    id: u64,
}

impl Drop for FeedSubscription {
    fn drop(&mut self) {
        if let Some(feed) = self.feed.upgrade() {
            lock(&feed.subscribers).remove(&self.id);
        }
    }
}

/// Lock, ignoring poison: every write under these locks is a whole value.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flush_delivers_each_change_once_and_a_dropped_subscription_hears_nothing() {
        let feed = ChangeFeed::default();
        feed.publish(ReplicaChange::status()); // nobody subscribes: not queued
        let heard = Arc::new(Mutex::new(Vec::new()));
        let log = heard.clone();
        let subscription = feed.subscribe(move |c| log.lock().unwrap().push(c.clone()));
        feed.flush();
        assert!(heard.lock().unwrap().is_empty());
        let mut a = ReplicaChange::default();
        a.views.insert("s1".into());
        let mut b = ReplicaChange::status();
        b.unsynced.insert("s2".into());
        feed.publish(a);
        feed.publish(b);
        feed.flush();
        feed.flush();
        let heard_now = heard.lock().unwrap().clone();
        assert_eq!(heard_now.len(), 1, "{heard_now:?}");
        assert_eq!(heard_now[0].sections(), BTreeSet::from(["s1", "s2"]));
        assert!(heard_now[0].status);
        drop(subscription);
        feed.publish(ReplicaChange::status());
        feed.flush();
        assert_eq!(heard.lock().unwrap().len(), 1);
    }
}
