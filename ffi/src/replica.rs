//! The `Replica` object the apps hold: core's replica behind a mutex, the
//! registry of its observers (subscribed to core's change feed), and its sync
//! (in [`crate::sync`], which adds the sync methods). Every method is a
//! delegation plus conversion; a call that may change something flushes the
//! change feed once the replica's lock is released (so the observers hear
//! what core says changed), and local writes tell background sync.

use std::sync::{Arc, Mutex};

use fieldsync_core::{self as core, ReplicaError};

use crate::conflict::ConflictRecord;
use crate::domain::{ConstructionState, GeoPoint, Member};
use crate::error::FieldSyncError;
use crate::history::{HistoryEntry, PastPoint};
use crate::merge::{EditReceipt, MergeReport, SectionChange};
use crate::observer::{
    ConflictsObserver, ObserverHandle, Observers, SectionListObserver, SectionObserver, Touched, lock,
};
use crate::query::{SectionPage, SectionQuery};
use crate::syncing::Syncing;
use crate::view::{AuditEntry, SectionSummary, SectionView};

/// A replica of the sections this device works on, in one SQLite file.
///
/// Thread-safe: calls are serialized on the replica. Every call touches the
/// disk, and writes return only once durable, so call from a background
/// thread (the Kotlin and Swift layers offer suspend/async forms).
#[derive(uniffi::Object)]
pub struct Replica {
    pub(crate) inner: Arc<Mutex<core::Replica>>,
    pub(crate) observers: Arc<Observers>,
    /// Core's change feed, flushed outside the replica's lock.
    pub(crate) feed: core::ChangeFeed,
    /// The observers' subscription to it.
    _subscription: core::FeedSubscription,
    pub(crate) sync: Syncing,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica").field("inner", &self.inner).field("observers", &self.observers.len()).finish()
    }
}

impl Replica {
    /// Run `f` on the core replica.
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&mut core::Replica) -> Result<T, ReplicaError>,
    ) -> Result<T, FieldSyncError> {
        Ok(f(&mut lock(&self.inner))?)
    }

    /// Run the local write `f`, then (its lock released) tell the observers
    /// what it changed and background sync that there is something to send.
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&mut core::Replica) -> Result<T, ReplicaError>,
    ) -> Result<T, FieldSyncError> {
        let out = self.merge(f)?;
        self.sync.notify(core::SyncEvent::LocalEdit);
        Ok(out)
    }

    /// Run `f`, which may change what observers see, then (its lock
    /// released) flush the change feed: the observers hear what changed.
    pub(crate) fn merge<T>(
        &self,
        f: impl FnOnce(&mut core::Replica) -> Result<T, ReplicaError>,
    ) -> Result<T, FieldSyncError> {
        let out = self.read(f);
        self.feed.flush();
        out
    }
}

#[cfg(test)]
impl Replica {
    pub(crate) fn observers_len(&self) -> usize {
        self.observers.len()
    }
}

/// Encrypt the plain store at `path` in place with `encryption_key` (32 random
/// bytes kept in the platform's keystore), for an app that turns encryption
/// on for users who already have data: their unsynced edits stay and go out
/// at the next sync. Call it before opening the store; afterwards open it with
/// the key. A failure leaves the plain store as it was. Needs a library built
/// with the `encryption` feature (`InvalidInput` otherwise, as for a key of
/// another length or a store that is encrypted already).
#[uniffi::export]
pub fn encrypt_store(path: String, encryption_key: Vec<u8>) -> Result<(), FieldSyncError> {
    let key = core::StoreKey::from_bytes(&encryption_key)?;
    Ok(core::encrypt_store(std::path::Path::new(&path), &key)?)
}

fn points(route: Vec<GeoPoint>) -> Vec<core::GeoPoint> {
    route.into_iter().map(Into::into).collect()
}

#[uniffi::export]
impl Replica {
    /// Open (or create) the store at `path` for `device`, encrypted with
    /// `encryption_key` (32 random bytes the app keeps in the platform's
    /// keystore) if one is given. Encryption needs a library built with the
    /// `encryption` feature; without it, a key fails with `InvalidInput`, as
    /// does a key of another length or one that does not open the file.
    #[uniffi::constructor(default(encryption_key = None))]
    pub fn open(path: String, device: String, encryption_key: Option<Vec<u8>>) -> Result<Arc<Self>, FieldSyncError> {
        let encryption_key = encryption_key.map(|k| core::StoreKey::from_bytes(&k)).transpose()?;
        let options = core::ReplicaOptions { device, encryption_key, ..Default::default() };
        let replica = core::Replica::open(path, options)?;
        let feed = replica.change_feed();
        let inner = Arc::new(Mutex::new(replica));
        let observers: Arc<Observers> = Arc::default();
        // Weak: the feed lives in the replica, which must not keep itself alive.
        let (to_observers, to_replica) = (Arc::downgrade(&observers), Arc::downgrade(&inner));
        let subscription = feed.subscribe(move |change| {
            if let (Some(observers), Some(replica)) = (to_observers.upgrade(), to_replica.upgrade()) {
                observers.notify(Touched::Changed(change.clone()), &replica);
            }
        });
        Ok(Arc::new(Replica { inner, observers, feed, _subscription: subscription, sync: Syncing::default() }))
    }

    /// The device this store belongs to.
    pub fn device(&self) -> String {
        lock(&self.inner).device().to_owned()
    }

    /// Hex actor id this replica writes as (what a roster binds to a user).
    pub fn actor(&self) -> String {
        lock(&self.inner).actor()
    }

    /// Replace a project's roster. The server delivers rosters; call this in tests and development only.
    pub fn set_roster(&self, project: String, members: Vec<Member>) -> Result<(), FieldSyncError> {
        let members: Vec<core::Member> = members.into_iter().map(Into::into).collect();
        self.merge(|r| r.set_roster(&project, &members))
    }

    /// Create a section (office only) with its name and planned route; returns its id.
    pub fn create_section(
        &self,
        project: String,
        name: String,
        route: Vec<GeoPoint>,
    ) -> Result<String, FieldSyncError> {
        self.write(|r| r.create_section(&project, &name, &points(route)))
    }

    /// Record progress (percent); refused if a rule forbids it.
    pub fn record_progress(&self, section: String, percent: i64) -> Result<EditReceipt, FieldSyncError> {
        self.write(|r| r.record_progress(&section, percent)).map(Into::into)
    }

    /// Move a section to `to`; blocking needs a `reason`.
    #[uniffi::method(default(reason = None))]
    pub fn transition(
        &self,
        section: String,
        to: ConstructionState,
        reason: Option<String>,
    ) -> Result<EditReceipt, FieldSyncError> {
        self.write(|r| r.transition(&section, to.into(), reason.as_deref())).map(Into::into)
    }

    /// Report the crew's position; an off-route point is stored and quarantined, not refused.
    pub fn report_location(&self, section: String, point: GeoPoint) -> Result<EditReceipt, FieldSyncError> {
        self.write(|r| r.report_location(&section, point.into())).map(Into::into)
    }

    /// Accept a quarantined point (foreman or office) by its write's id.
    pub fn accept_point(&self, section: String, point_edit: String) -> Result<EditReceipt, FieldSyncError> {
        self.write(|r| r.accept_point(&section, &point_edit)).map(Into::into)
    }

    /// Rename a section (office only).
    pub fn rename_section(&self, section: String, name: String) -> Result<EditReceipt, FieldSyncError> {
        self.write(|r| r.rename_section(&section, &name)).map(Into::into)
    }

    /// Replace a section's planned route (office only).
    pub fn set_route(&self, section: String, route: Vec<GeoPoint>) -> Result<EditReceipt, FieldSyncError> {
        self.write(|r| r.set_route(&section, &points(route))).map(Into::into)
    }

    /// Make the notes read `text` (stored as the smallest character diff, so concurrent edits merge).
    pub fn set_notes(&self, section: String, text: String) -> Result<(), FieldSyncError> {
        self.write(|r| r.set_notes(&section, &text))
    }

    /// Replace `delete` characters at character `pos` of the notes with `insert`.
    pub fn splice_notes(&self, section: String, pos: u32, delete: u32, insert: String) -> Result<(), FieldSyncError> {
        self.write(|r| r.splice_notes(&section, pos as usize, delete as usize, &insert))
    }

    /// Attach a photo reference (the app keeps the photo); returns its id.
    #[uniffi::method(default(caption = None))]
    pub fn add_photo(&self, section: String, uri: String, caption: Option<String>) -> Result<String, FieldSyncError> {
        self.write(|r| r.add_photo(&section, &uri, caption.as_deref()))
    }

    /// Attach the photo in the file at `path` (JPEG, PNG, WebP, HEIC or
    /// GIF): the replica keeps its bytes by content, next to its database,
    /// and the section's record carries its hash, size, type and pixels.
    /// Returns the photo's id.
    #[uniffi::method(default(caption = None))]
    pub fn add_photo_file(
        &self,
        section: String,
        path: String,
        caption: Option<String>,
    ) -> Result<String, FieldSyncError> {
        self.write(|r| r.add_photo_file(&section, std::path::Path::new(&path), caption.as_deref()))
    }

    /// Attach a photo given as its bytes, like [`Self::add_photo_file`].
    #[uniffi::method(default(caption = None))]
    pub fn add_photo_bytes(
        &self,
        section: String,
        bytes: Vec<u8>,
        caption: Option<String>,
    ) -> Result<String, FieldSyncError> {
        self.write(|r| r.add_photo_bytes(&section, &bytes, caption.as_deref()))
    }

    /// The file holding a photo's bytes (by its hex SHA-256), if this device has them.
    pub fn photo_file(&self, sha256: String) -> Result<Option<String>, FieldSyncError> {
        self.read(|r| Ok(r.photo_file(&sha256).map(|p| p.to_string_lossy().into_owned())))
    }

    /// The validated view of a section.
    pub fn section(&self, id: String) -> Result<SectionView, FieldSyncError> {
        self.read(|r| r.section(&id)).map(Into::into)
    }

    /// Sections ordered by id, at most `limit`, after the id `after` (the last of the previous page).
    #[uniffi::method(default(project = None, after = None, limit = 100))]
    pub fn list_sections(
        &self,
        project: Option<String>,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<SectionSummary>, FieldSyncError> {
        let page = self.read(|r| r.list_sections(project.as_deref(), after.as_deref(), limit as usize))?;
        Ok(page.into_iter().map(Into::into).collect())
    }

    /// Conflict records of one section, or of all when `section` is `None`.
    #[uniffi::method(default(section = None))]
    pub fn conflicts(&self, section: Option<String>) -> Result<Vec<ConflictRecord>, FieldSyncError> {
        Ok(self.read(|r| r.conflicts(section.as_deref()))?.into_iter().map(Into::into).collect())
    }

    /// A section's audit trail: every write and what the rules made of it.
    pub fn audit(&self, section: String) -> Result<Vec<AuditEntry>, FieldSyncError> {
        Ok(self.read(|r| r.audit(&section))?.into_iter().map(Into::into).collect())
    }

    /// A section's changes in causal order.
    pub fn history(&self, section: String) -> Result<Vec<HistoryEntry>, FieldSyncError> {
        Ok(self.read(|r| r.history(&section))?.into_iter().map(Into::into).collect())
    }

    /// A section's view as it was at a past point (judged by today's roster).
    pub fn view_at(&self, section: String, at: PastPoint) -> Result<SectionView, FieldSyncError> {
        self.read(|r| r.view_at(&section, &at.into())).map(Into::into)
    }

    /// A section's changes after `since` (hex heads; empty for all), to hand to
    /// another replica's `apply_changes` (tests, peer-to-peer transfer).
    #[uniffi::method(default(since = []))]
    pub fn changes_of(&self, section: String, since: Vec<String>) -> Result<Vec<SectionChange>, FieldSyncError> {
        let changes = self.read(|r| r.changes_of(&section, &since))?;
        Ok(changes.into_iter().map(|bytes| SectionChange { section: section.clone(), bytes }).collect())
    }

    /// Merge changes from elsewhere; the report says what became of this device's unconfirmed writes.
    pub fn apply_changes(&self, changes: Vec<SectionChange>) -> Result<MergeReport, FieldSyncError> {
        let changes: Vec<core::SectionChange> = changes.into_iter().map(Into::into).collect();
        self.merge(|r| r.apply_changes(&changes)).map(Into::into)
    }

    /// The section's whole Automerge document (loadable by any Automerge implementation).
    pub fn export_section(&self, section: String) -> Result<Vec<u8>, FieldSyncError> {
        self.read(|r| r.export(&section))
    }

    /// Fold loose changes of up to `limit` sections with more than `threshold`
    /// of them into snapshots; returns how many sections were compacted.
    pub fn compact(&self, threshold: u32, limit: u32) -> Result<u32, FieldSyncError> {
        self.read(|r| r.compact(threshold as usize, limit as usize)).map(|n| n as u32)
    }

    /// Observe a section's view: the current one at once, then every change.
    pub fn observe_section(
        &self,
        section: String,
        observer: Arc<dyn SectionObserver>,
    ) -> Result<Arc<ObserverHandle>, FieldSyncError> {
        self.read(|r| r.section(&section))?;
        Ok(self.observers.section(&self.inner, section, observer))
    }

    /// Observe the conflict records of one section (or all when `None`): the current ones at once, then every change.
    pub fn observe_conflicts(
        &self,
        section: Option<String>,
        observer: Arc<dyn ConflictsObserver>,
    ) -> Arc<ObserverHandle> {
        self.observers.conflicts(&self.inner, section, observer)
    }

    /// A filtered, ordered page of sections, each with its conflict count and
    /// whether it has unsynced edits (read without loading any document).
    pub fn query_sections(&self, query: SectionQuery) -> Result<SectionPage, FieldSyncError> {
        let query = query.into();
        self.read(|r| r.query_sections(&query)).map(Into::into)
    }

    /// Observe a page of sections: the current one at once, then after every
    /// change to its rows, local (writes) or remote (merges, sync rounds).
    pub fn observe_sections(&self, query: SectionQuery, observer: Arc<dyn SectionListObserver>) -> Arc<ObserverHandle> {
        self.observers.section_list(&self.inner, query.into(), observer)
    }
}
