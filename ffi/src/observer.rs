//! Observers: the app registers a callback for a section, for conflict
//! records, for a live section list or for the sync status; it gets the
//! current state first, then every change, and the returned
//! [`ObserverHandle`] cancels on drop or on `cancel()`.
//!
//! Delivery: the observers are thin handles over core's change feed. Each
//! flush of the feed (after every call that changed something, after each
//! sync round, always outside the replica's lock) calls `Observers::notify`
//! with what core says changed, and only the observers it concerns are read
//! again: a section observer when its section's view changed, a conflicts
//! observer when conflicts changed, a list when any section's row may have,
//! the status when the status or sync activity did, a section's photos when
//! its view changed or its photos' bytes moved. One
//! thread at a time delivers (the *pump*): it reads the current state of every
//! observer concerned, under the replica's lock, then calls each observer with
//! no lock held, so an observer may call the replica again, even write to it
//! (that write's notice is delivered when the callback returns). A value equal
//! to the one last sent to an observer is not sent again. A notice raised while
//! another thread delivers is left to that thread, which loops until nothing is
//! pending; because each delivery reads the state at delivery time, the last
//! value an observer receives is always the latest state.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use fieldsync_core::{self as core, ReplicaError};

use crate::conflict::ConflictRecord;
use crate::photo_state::{PhotoStatus, photo_states};
use crate::query::SectionPage;
use crate::status::SyncStatus;
use crate::view::SectionView;

/// Told the validated view of one section: first as it is, then after every change.
#[uniffi::export(foreign)]
pub trait SectionObserver: Send + Sync {
    /// The section's current view.
    fn on_update(&self, view: SectionView) -> Result<(), ObserverError>;
}

/// Told the conflict records of one section (or all): first as they are, then after every change.
#[uniffi::export(foreign)]
pub trait ConflictsObserver: Send + Sync {
    /// The current conflict records.
    fn on_update(&self, conflicts: Vec<ConflictRecord>) -> Result<(), ObserverError>;
}

/// Told the sync status: first as it is, then after every change.
#[uniffi::export(foreign)]
pub trait SyncStatusObserver: Send + Sync {
    /// The current sync status.
    fn on_update(&self, status: SyncStatus) -> Result<(), ObserverError>;
}

/// Told a page of a section list: first as it is, then after every change
/// to a row (a local write, a merge, a sync confirming edits, a roster change).
#[uniffi::export(foreign)]
pub trait SectionListObserver: Send + Sync {
    /// The list's current page.
    fn on_update(&self, page: SectionPage) -> Result<(), ObserverError>;
}

/// Told the photos of one section with where their bytes are: first as
/// they are, then whenever one is added or arrives or its bytes move.
#[uniffi::export(foreign)]
pub trait PhotosObserver: Send + Sync {
    /// The section's photos and their states, in the view's order.
    fn on_update(&self, photos: Vec<PhotoStatus>) -> Result<(), ObserverError>;
}

/// An observer threw. The replica ignores it: the write stands and the other
/// observers are told. (Observers return a `Result` only so that an exception
/// thrown in Kotlin or Swift arrives as this value instead of a Rust panic.)
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum ObserverError {
    /// What the observer threw.
    #[error("observer failed: {detail}")]
    Failed {
        /// The exception, as text.
        detail: String,
    },
}

impl From<uniffi::UnexpectedUniFFICallbackError> for ObserverError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        ObserverError::Failed { detail: e.reason }
    }
}

/// Keeps an observer registered. Dropping it (in Kotlin `close()`, or the
/// garbage collector; in Swift releasing it) or calling `cancel()` stops the
/// updates; cancelling twice is harmless. Keep it as long as you want updates.
#[derive(Debug, uniffi::Object)]
pub struct ObserverHandle {
    observers: Weak<Observers>,
    id: u64,
}

#[uniffi::export]
impl ObserverHandle {
    /// Stop the updates. No update starts after this returns (one already
    /// being delivered on another thread may still arrive).
    pub fn cancel(&self) {
        if let Some(observers) = self.observers.upgrade() {
            observers.remove(self.id);
        }
    }
}

impl Drop for ObserverHandle {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// What a notice says changed.
#[derive(Debug, Clone)]
pub(crate) enum Touched {
    /// Nothing stored; only observers that have not had their first value are due.
    Nothing,
    /// What core's change feed says changed.
    Changed(core::ReplicaChange),
}

/// One registered observer and what it watches.
enum Observer {
    Section { section: String, sink: Arc<dyn SectionObserver> },
    Conflicts { section: Option<String>, sink: Arc<dyn ConflictsObserver> },
    SyncStatus { sink: Arc<dyn SyncStatusObserver> },
    SectionList { query: Box<core::SectionQuery>, sink: Arc<dyn SectionListObserver> },
    Photos { section: String, sink: Arc<dyn PhotosObserver> },
}

/// A value as last sent, compared in core's types.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Section(Box<core::SectionView>),
    Conflicts(Vec<core::ConflictRecord>),
    SyncStatus(Box<(core::SyncStatus, core::SyncActivity)>),
    SectionList(core::SectionPage),
    Photos(Vec<(core::PhotoRef, core::PhotoState)>),
}

struct Entry {
    observer: Observer,
    last: Mutex<Option<Value>>,
    cancelled: AtomicBool,
}

impl Entry {
    fn due(&self, pending: &Pending) -> bool {
        if lock(&self.last).is_none() {
            return true;
        }
        let changed = &pending.changed;
        match &self.observer {
            Observer::Section { section, .. } => changed.views.contains(section),
            Observer::Conflicts { section: Some(section), .. } => changed.conflicts.contains(section),
            Observer::Conflicts { section: None, .. } => !changed.conflicts.is_empty(),
            Observer::SyncStatus { .. } => changed.status,
            Observer::SectionList { .. } => !changed.sections().is_empty(),
            Observer::Photos { section, .. } => changed.views.contains(section) || changed.photos.contains(section),
        }
    }

    fn read(&self, replica: &core::Replica) -> Result<Value, ReplicaError> {
        Ok(match &self.observer {
            Observer::Section { section, .. } => Value::Section(Box::new(replica.section(section)?)),
            Observer::Conflicts { section, .. } => Value::Conflicts(replica.conflicts(section.as_deref())?),
            Observer::SyncStatus { .. } => {
                Value::SyncStatus(Box::new((replica.sync_status()?, replica.sync_activity()?)))
            }
            Observer::SectionList { query, .. } => Value::SectionList(replica.query_sections(query)?),
            Observer::Photos { section, .. } => Value::Photos(photo_states(replica, section)?),
        })
    }

    /// Send `value` unless cancelled or already sent. An observer that fails
    /// (or, implemented in Rust, panics) does not stop the others.
    fn send(&self, value: Value) {
        if self.cancelled.load(Ordering::Acquire) {
            return;
        }
        {
            let mut last = lock(&self.last);
            if last.as_ref() == Some(&value) {
                return;
            }
            *last = Some(value.clone());
        }
        let _ = catch_unwind(AssertUnwindSafe(|| match (&self.observer, value) {
            (Observer::Section { sink, .. }, Value::Section(v)) => sink.on_update((*v).into()),
            (Observer::Conflicts { sink, .. }, Value::Conflicts(v)) => {
                sink.on_update(v.into_iter().map(Into::into).collect())
            }
            (Observer::SyncStatus { sink }, Value::SyncStatus(v)) => sink.on_update((*v).into()),
            (Observer::SectionList { sink, .. }, Value::SectionList(v)) => sink.on_update(v.into()),
            (Observer::Photos { sink, .. }, Value::Photos(v)) => sink.on_update(
                v.into_iter().map(|(photo, state)| PhotoStatus { photo: photo.into(), state: state.into() }).collect(),
            ),
            _ => Ok(()),
        }));
    }
}

/// Notices not yet delivered.
#[derive(Debug, Default)]
struct Pending {
    any: bool,
    changed: core::ReplicaChange,
}

impl Pending {
    fn add(&mut self, touched: Touched) {
        self.any = true;
        if let Touched::Changed(c) = touched {
            self.changed.absorb(c);
        }
    }
}

/// The registry of a replica's observers and the pump that delivers to them.
#[derive(Default)]
pub(crate) struct Observers {
    entries: Mutex<BTreeMap<u64, Arc<Entry>>>,
    next_id: AtomicU64,
    pending: Mutex<Pending>,
    delivering: AtomicBool,
}

impl Observers {
    pub(crate) fn section(
        self: &Arc<Self>,
        replica: &Mutex<core::Replica>,
        section: String,
        sink: Arc<dyn SectionObserver>,
    ) -> Arc<ObserverHandle> {
        self.register(replica, Observer::Section { section, sink })
    }

    pub(crate) fn conflicts(
        self: &Arc<Self>,
        replica: &Mutex<core::Replica>,
        section: Option<String>,
        sink: Arc<dyn ConflictsObserver>,
    ) -> Arc<ObserverHandle> {
        self.register(replica, Observer::Conflicts { section, sink })
    }

    pub(crate) fn sync_status(
        self: &Arc<Self>,
        replica: &Mutex<core::Replica>,
        sink: Arc<dyn SyncStatusObserver>,
    ) -> Arc<ObserverHandle> {
        self.register(replica, Observer::SyncStatus { sink })
    }

    pub(crate) fn section_list(
        self: &Arc<Self>,
        replica: &Mutex<core::Replica>,
        query: core::SectionQuery,
        sink: Arc<dyn SectionListObserver>,
    ) -> Arc<ObserverHandle> {
        self.register(replica, Observer::SectionList { query: Box::new(query), sink })
    }

    pub(crate) fn photos(
        self: &Arc<Self>,
        replica: &Mutex<core::Replica>,
        section: String,
        sink: Arc<dyn PhotosObserver>,
    ) -> Arc<ObserverHandle> {
        self.register(replica, Observer::Photos { section, sink })
    }

    /// Register, then send the current state through the pump (so it can
    /// never overtake a later update delivered by another thread).
    fn register(self: &Arc<Self>, replica: &Mutex<core::Replica>, observer: Observer) -> Arc<ObserverHandle> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let entry = Entry { observer, last: Mutex::new(None), cancelled: AtomicBool::new(false) };
        lock(&self.entries).insert(id, Arc::new(entry));
        self.notify(Touched::Nothing, replica);
        Arc::new(ObserverHandle { observers: Arc::downgrade(self), id })
    }

    fn remove(&self, id: u64) {
        if let Some(entry) = lock(&self.entries).remove(&id) {
            entry.cancelled.store(true, Ordering::Release);
        }
    }

    /// How many observers are registered.
    pub(crate) fn len(&self) -> usize {
        lock(&self.entries).len()
    }

    /// Deliver what `touched` changed to the observers concerned (see the module doc).
    pub(crate) fn notify(&self, touched: Touched, replica: &Mutex<core::Replica>) {
        lock(&self.pending).add(touched);
        loop {
            if self.delivering.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_err() {
                return; // The thread delivering (maybe this one, up the stack) will see the notice.
            }
            let guard = Delivering(&self.delivering);
            let batch = std::mem::take(&mut *lock(&self.pending));
            if batch.any {
                self.deliver(&batch, replica);
            }
            drop(guard);
            if !lock(&self.pending).any {
                return;
            }
        }
    }

    fn deliver(&self, batch: &Pending, replica: &Mutex<core::Replica>) {
        let due: Vec<Arc<Entry>> = lock(&self.entries).values().filter(|e| e.due(batch)).cloned().collect();
        if due.is_empty() {
            return;
        }
        let values: Vec<(Arc<Entry>, Value)> = {
            let replica = lock(replica);
            due.into_iter().filter_map(|e| e.read(&replica).ok().map(|v| (e, v))).collect()
        };
        for (entry, value) in values {
            entry.send(value);
        }
    }
}

/// Clears the delivering flag when dropped, even by a panic.
struct Delivering<'a>(&'a AtomicBool);

impl Drop for Delivering<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Lock, ignoring poison: every write under these locks is a whole value (the
/// replica's own writes are SQLite transactions), so a panic elsewhere leaves
/// nothing half-done here.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::domain::{GeoPoint, Member, Role};
    use crate::replica::Replica;

    struct Views(Mutex<Vec<SectionView>>);

    impl SectionObserver for Views {
        fn on_update(&self, view: SectionView) -> Result<(), ObserverError> {
            self.0.lock().unwrap().push(view);
            Ok(())
        }
    }

    fn office(dir: &tempfile::TempDir) -> (Arc<Replica>, String) {
        let r = Replica::open(dir.path().join("o.db").display().to_string(), "o".into(), None).unwrap();
        r.set_roster("p".into(), vec![Member { actor: r.actor(), user: "olga".into(), role: Role::Office }]).unwrap();
        let route = vec![GeoPoint { lat: 48.0, lon: 11.0 }, GeoPoint { lat: 48.0, lon: 11.01 }];
        let id = r.create_section("p".into(), "s".into(), route).unwrap();
        (r, id)
    }

    #[test]
    fn writers_on_many_threads_leave_every_observer_at_the_latest_view() {
        let dir = tempfile::tempdir().unwrap();
        let (r, id) = office(&dir);
        let views = Arc::new(Views(Mutex::new(Vec::new())));
        let _handle = r.observe_section(id.clone(), views.clone()).unwrap();
        std::thread::scope(|s| {
            for t in 0..4 {
                let (r, id) = (&r, &id);
                s.spawn(move || {
                    for i in 0..10 {
                        r.set_notes(id.clone(), format!("thread {t} note {i}")).unwrap();
                    }
                });
            }
        });
        let seen = views.0.lock().unwrap();
        assert_eq!(seen.last().unwrap(), &r.section(id).unwrap());
        assert!(seen.len() >= 2 && seen.len() <= 41, "{}", seen.len());
        assert!(seen.windows(2).all(|w| w[0] != w[1]), "an equal view was sent twice");
    }

    struct Pages(Mutex<Vec<SectionPage>>);

    impl SectionListObserver for Pages {
        fn on_update(&self, page: SectionPage) -> Result<(), ObserverError> {
            self.0.lock().unwrap().push(page);
            Ok(())
        }
    }

    #[test]
    fn a_merge_tells_only_the_observers_of_the_sections_it_changed() {
        let dir = tempfile::tempdir().unwrap();
        let (office, first) = office(&dir);
        let route = vec![GeoPoint { lat: 48.0, lon: 11.0 }, GeoPoint { lat: 48.0, lon: 11.01 }];
        let mut ids = vec![first];
        ids.extend((1..4).map(|i| office.create_section("p".into(), format!("s{i}"), route.clone()).unwrap()));
        let tech = Replica::open(dir.path().join("t.db").display().to_string(), "t".into(), None).unwrap();
        let roster = vec![
            Member { actor: office.actor(), user: "olga".into(), role: Role::Office },
            Member { actor: tech.actor(), user: "tina".into(), role: Role::Technician },
        ];
        office.set_roster("p".into(), roster.clone()).unwrap();
        tech.set_roster("p".into(), roster).unwrap();
        let everything =
            || ids.iter().flat_map(|id| office.changes_of(id.clone(), vec![]).unwrap()).collect::<Vec<_>>();
        tech.apply_changes(everything()).unwrap();

        let views: Vec<Arc<Views>> = ids.iter().map(|_| Arc::new(Views(Mutex::new(Vec::new())))).collect();
        let _handles: Vec<_> =
            ids.iter().zip(&views).map(|(id, v)| tech.observe_section(id.clone(), v.clone()).unwrap()).collect();
        let list = Arc::new(Pages(Mutex::new(Vec::new())));
        let _list = tech.observe_sections(crate::query::SectionQuery::default_for_tests(), list.clone());
        office.record_progress(ids[2].clone(), 5).unwrap();
        tech.apply_changes(everything()).unwrap(); // all four sections' changes; one is new
        let counts: Vec<usize> = views.iter().map(|v| v.0.lock().unwrap().len()).collect();
        assert_eq!(counts, [1, 1, 2, 1], "the current view first, then only the changed section");
        let pages = list.0.lock().unwrap();
        assert_eq!(pages.len(), 2, "the list's first page, then the merge");
        assert_eq!(pages[1].rows.iter().find(|r| r.id == ids[2]).unwrap().progress, 5);
    }

    #[test]
    fn a_section_list_follows_local_writes_with_the_unsynced_flag() {
        let dir = tempfile::tempdir().unwrap();
        let (r, id) = office(&dir);
        let unsynced =
            crate::query::SectionQuery { with_unsynced_edits: true, ..crate::query::SectionQuery::default_for_tests() };
        assert_eq!(r.query_sections(unsynced.clone()).unwrap().total, 1, "a new section is unsynced");
        let list = Arc::new(Pages(Mutex::new(Vec::new())));
        let _handle = r.observe_sections(unsynced, list.clone());
        // A rename shows in the row whatever the clock says (notes do not, and two
        // writes in one millisecond leave the row as it was: nothing to tell).
        r.rename_section(id.clone(), "again".into()).unwrap();
        let pages = list.0.lock().unwrap();
        assert_eq!(pages.len(), 2, "{pages:?}");
        assert_eq!(pages[1].rows[0].name, "again");
        assert!(pages.iter().all(|p| p.rows.len() == 1 && p.rows[0].unsynced));
        assert!(pages[1].rows[0].changed_ms >= pages[0].rows[0].changed_ms);
    }

    #[test]
    fn a_dropped_or_cancelled_handle_unregisters_and_cancelling_twice_is_harmless() {
        let dir = tempfile::tempdir().unwrap();
        let (r, id) = office(&dir);
        let views = Arc::new(Views(Mutex::new(Vec::new())));
        let a = r.observe_section(id.clone(), views.clone()).unwrap();
        let b = r.observe_section(id.clone(), views.clone()).unwrap();
        assert_eq!(r.observers_len(), 2);
        assert_eq!(views.0.lock().unwrap().len(), 2, "each got the current view first");
        drop(a);
        b.cancel();
        b.cancel();
        assert_eq!(r.observers_len(), 0);
        r.record_progress(id, 5).unwrap();
        assert_eq!(views.0.lock().unwrap().len(), 2);
        drop(r);
        b.cancel(); // the replica is gone: still harmless
    }
}
