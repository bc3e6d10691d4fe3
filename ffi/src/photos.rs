//! Photos as the app sees them: where each photo's bytes are
//! ([`PhotoState`], in `photo_state.rs`; read or observed per section), fetching another
//! device's full size with progress, and the photo lane's settings (metered
//! links, when full sizes go, the storage budget).
//!
//! Photo bytes travel over the built-in HTTPS transport (`connect`,
//! `connect_with_credentials`), or the app's `AppPhotoTransport` given to
//! `connect_with`; an app transport without one carries the edits, not the
//! photos, so photos stay `OnThisDeviceOnly` and `fetch_photo` fails
//! `InvalidInput` (unless the bytes are here already).
//!
//! Observing: `observe_photos` is told a section's photos with their
//! states, again whenever core's change feed names the section (its view
//! changed: a photo was added here or arrived; or its photos' bytes moved:
//! a chunk the server acknowledged, a thumbnail or full size fetched, one
//! let go under the budget). Core publishes those moves as they are
//! recorded; they reach the observers when the feed is next flushed: after
//! each chunk `fetch_photo` fetches, before each chunk the sync's photo lane
//! sends or fetches (`syncing::FlushingPhotos`), and at the sync's end.

use std::sync::Arc;

use fieldsync_core as core;

use crate::error::FieldSyncError;
use crate::observer::{ObserverError, ObserverHandle, PhotosObserver};
use crate::photo_state::{PhotoState, PhotoStatus, photo_states};
use crate::replica::Replica;
use crate::sync::Cancellation;
use crate::view::PhotoRef;

/// When this device's full-size photos go up (thumbnails always go).
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum FullSizePhotos {
    /// On any link (the default).
    Always,
    /// Only while the app says the link is not metered (`set_metered(false)`).
    OnUnmeteredLinks,
}

impl From<FullSizePhotos> for core::FullSizePhotos {
    fn from(f: FullSizePhotos) -> Self {
        match f {
            FullSizePhotos::Always => core::FullSizePhotos::Always,
            FullSizePhotos::OnUnmeteredLinks => core::FullSizePhotos::OnUnmeteredLinks,
        }
    }
}

/// Told how far a `fetch_photo` got, after each chunk, on the fetching thread.
#[uniffi::export(foreign)]
pub trait PhotoFetchProgress: Send + Sync {
    /// `received` of the photo's `size` bytes are here.
    fn on_progress(&self, received: u64, size: u64) -> Result<(), ObserverError>;
}

#[uniffi::export]
impl Replica {
    /// Where `photo`'s bytes are, as this device sees it.
    pub fn photo_state(&self, photo: PhotoRef) -> Result<PhotoState, FieldSyncError> {
        self.read(|r| r.photo_state(&photo.into())).map(Into::into)
    }

    /// The photos of `section`, each with where its bytes are.
    pub fn photo_states(&self, section: String) -> Result<Vec<PhotoStatus>, FieldSyncError> {
        let states = self.read(|r| photo_states(r, &section))?;
        Ok(states.into_iter().map(|(photo, state)| PhotoStatus { photo: photo.into(), state: state.into() }).collect())
    }

    /// Observe the photos of `section` with their states: as they are at
    /// once, then whenever one is added or arrives, or its bytes move (an
    /// upload acknowledged, a thumbnail or full size fetched, one let go
    /// under the storage budget). Fails `NotFound` for an unknown section.
    pub fn observe_photos(
        &self,
        section: String,
        observer: Arc<dyn PhotosObserver>,
    ) -> Result<Arc<ObserverHandle>, FieldSyncError> {
        self.read(|r| r.section(&section).map(drop))?;
        Ok(self.observers.photos(&self.inner, section, observer))
    }

    /// Fetch the full size of another device's photo (by its id or hex
    /// SHA-256) from the server, in chunks; returns the file it is in.
    /// `progress` hears the bytes here and the size after each chunk.
    /// Blocks on the network: call it off the main thread (Kotlin
    /// `fetchPhoto`, Swift `fetchPhoto() async`). A fetch cut off goes on
    /// from where it stopped next time; a photo already here is not fetched
    /// again. Fetched photos are kept within `set_photo_budget_bytes`, the
    /// least recently used leaving first. Fails `InvalidInput` for an unknown
    /// photo, one the app keeps by URI, or when connected over an app
    /// transport without a photo transport; `Offline` when the server cannot be reached or
    /// has no copy yet (`NotFound`).
    pub fn fetch_photo(&self, photo: String, progress: Arc<dyn PhotoFetchProgress>) -> Result<String, FieldSyncError> {
        self.fetch_photo_cancellable(photo, progress, Cancellation::new())
    }

    /// `fetch_photo`, stopped before its next chunk once `cancellation` is
    /// cancelled (as `sync_now_cancellable`); what was fetched is kept and
    /// the next fetch goes on from there.
    pub fn fetch_photo_cancellable(
        &self,
        photo: String,
        progress: Arc<dyn PhotoFetchProgress>,
        cancellation: Arc<Cancellation>,
    ) -> Result<String, FieldSyncError> {
        let client = self.sync.client()?;
        let feed = self.feed.clone();
        let fetched = client.fetch_photo_until(
            &photo,
            &mut |received, size| {
                feed.flush(); // the observers hear of the chunk too
                let _ = progress.on_progress(received, size);
            },
            &cancellation.0,
        );
        self.feed.flush();
        Ok(fetched?.to_string_lossy().into_owned())
    }

    /// The app's word on the link: metered (mobile data) or not (Wi-Fi).
    /// With `FullSizePhotos.OnUnmeteredLinks` (this device's setting or its
    /// project's, set on the server), full sizes wait for an unmetered
    /// link; thumbnails and edits go either way. Remembered
    /// across `connect`s.
    pub fn set_metered(&self, metered: bool) {
        self.sync.set_metered(metered);
    }

    /// When this device's full-size photos go up (default `Always`; a
    /// project holding them for an unmetered link holds them whatever this
    /// says). Takes effect from the next sync; restarts background sync if
    /// it runs (waiting for a sync in flight). Remembered across `connect`s.
    pub fn set_full_size_photos(&self, policy: FullSizePhotos) -> Result<(), FieldSyncError> {
        self.set_photo_settings(|s| s.full_size = policy.into())
    }

    /// Bytes of full-size photos this device keeps once the server has them
    /// (others' it fetched, its own it sent; default 512 MiB); the least
    /// recently used leave first when a fetch goes past it, and can be
    /// fetched again. Thumbnails and photos the server lacks always stay.
    /// Takes effect from the next fetch, like `set_full_size_photos`.
    pub fn set_photo_budget_bytes(&self, bytes: u64) -> Result<(), FieldSyncError> {
        self.set_photo_settings(|s| s.budget_bytes = bytes)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;
    use std::sync::Mutex;

    use super::*;
    use crate::app_transport::{AppTransport, TransportError};
    use crate::domain::{GeoPoint, Member, Role};

    #[derive(Default)]
    struct Seen(Mutex<Vec<Vec<PhotoStatus>>>);

    impl PhotosObserver for Seen {
        fn on_update(&self, photos: Vec<PhotoStatus>) -> Result<(), ObserverError> {
            self.0.lock().unwrap().push(photos);
            Ok(())
        }
    }

    /// An app transport with no server behind it.
    struct Nowhere;

    impl AppTransport for Nowhere {
        fn round_trip(&self, _: Vec<u8>) -> Result<Vec<u8>, TransportError> {
            Err(TransportError::Unreachable { detail: "nowhere".into() })
        }
    }

    fn jpeg() -> Vec<u8> {
        let photo = image::RgbImage::from_fn(640, 480, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 90]));
        let mut bytes = Vec::new();
        image::DynamicImage::ImageRgb8(photo).write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Jpeg).unwrap();
        bytes
    }

    #[test]
    fn a_photo_added_here_is_observed_on_this_device_only_and_another_devices_needs_the_built_in_transport() {
        let dir = tempfile::tempdir().unwrap();
        let open = |name: &str| Replica::open(dir.path().join(name).display().to_string(), name.into(), None).unwrap();
        let (office, other) = (open("office"), open("other"));
        let roster = vec![
            Member { actor: office.actor(), user: "olga".into(), role: Role::Office },
            Member { actor: other.actor(), user: "otto".into(), role: Role::Office },
        ];
        office.set_roster("p".into(), roster.clone()).unwrap();
        other.set_roster("p".into(), roster).unwrap();
        let route = vec![GeoPoint { lat: 48.0, lon: 11.0 }, GeoPoint { lat: 48.0, lon: 11.01 }];
        let id = office.create_section("p".into(), "north".into(), route).unwrap();

        let seen = Arc::new(Seen::default());
        let _handle = office.observe_photos(id.clone(), seen.clone()).unwrap();
        let bytes = jpeg();
        let photo_id = office.add_photo_bytes(id.clone(), bytes.clone(), Some("trench".into())).unwrap();
        let states = office.photo_states(id.clone()).unwrap();
        assert_eq!(states.len(), 1);
        let photo = &states[0].photo;
        assert_eq!((photo.id.as_str(), photo.size), (photo_id.as_str(), bytes.len() as u64));
        let thumbnail = photo.thumbnail.clone().expect("a thumbnail was made");
        assert!(thumbnail.size < photo.size && thumbnail.media_type == "image/jpeg", "{thumbnail:?}");
        assert!(office.photo_file(thumbnail.sha256).unwrap().is_some());
        assert_eq!(states[0].state, PhotoState::OnThisDeviceOnly);
        assert_eq!(office.photo_state(photo.clone()).unwrap(), PhotoState::OnThisDeviceOnly);
        assert_eq!(*seen.0.lock().unwrap(), vec![vec![], states.clone()], "none, then the photo added");
        assert!(matches!(office.observe_photos("nope".into(), seen.clone()), Err(FieldSyncError::NotFound { .. })));

        // The record reaches another device without its bytes.
        other.apply_changes(office.changes_of(id.clone(), vec![]).unwrap()).unwrap();
        assert_eq!(other.photo_states(id).unwrap()[0].state, PhotoState::NotFetched);
        struct Ignore;
        impl PhotoFetchProgress for Ignore {
            fn on_progress(&self, _: u64, _: u64) -> Result<(), ObserverError> {
                Ok(())
            }
        }
        let not_connected = other.fetch_photo(photo_id.clone(), Arc::new(Ignore));
        assert!(matches!(not_connected, Err(FieldSyncError::InvalidInput { detail }) if detail.contains("connect")));
        other.connect_with(Arc::new(Nowhere), "p".into(), None).unwrap();
        let app_transport = other.fetch_photo(photo_id.clone(), Arc::new(Ignore));
        assert!(
            matches!(&app_transport, Err(FieldSyncError::InvalidInput { detail }) if detail.contains("AppPhotoTransport")),
            "{app_transport:?}"
        );
        // The settings are taken while connected (the client is built again) and before.
        other.set_metered(true);
        other.set_full_size_photos(FullSizePhotos::OnUnmeteredLinks).unwrap();
        other.set_photo_budget_bytes(1024).unwrap();
        office.set_photo_budget_bytes(0).unwrap();
        // Its own photo is here: fetching it fetches nothing.
        office.connect_with(Arc::new(Nowhere), "p".into(), None).unwrap();
        let here = office.fetch_photo(photo_id, Arc::new(Ignore)).unwrap();
        assert_eq!(std::fs::read(here).unwrap(), bytes);
    }
}
