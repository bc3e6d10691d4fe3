//! Where a photo's bytes are, as the app sees it ([`PhotoState`]), and a
//! section's photos with their states: what `photo_states` returns and
//! `observe_photos` is told (`photos.rs`, `observer.rs`).

use fieldsync_core as core;

use crate::view::PhotoRef;

/// Where a photo's bytes are, as this device sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum PhotoState {
    /// Taken here; the server has none of it yet.
    OnThisDeviceOnly,
    /// Taken here and going up: `sent` of `size` bytes acknowledged.
    Uploading {
        /// Bytes the server acknowledged.
        sent: u64,
        /// The photo's size.
        size: u64,
    },
    /// Taken here, and the server has all of it.
    OnServer,
    /// Not on this device, nor its thumbnail (not fetched yet, or another
    /// device's whose thumbnail the server lacks so far).
    NotFetched,
    /// Not on this device, but its thumbnail is: show it, `fetch_photo` the rest.
    ThumbnailOnly,
    /// Being fetched: `received` of `size` bytes here.
    Downloading {
        /// Bytes fetched so far.
        received: u64,
        /// The photo's size.
        size: u64,
    },
    /// Another device's photo, fetched: its bytes are in `photo_file(sha256)`.
    Available,
    /// A photo the app keeps itself, by URI (`add_photo`): no bytes travel.
    KeptByApp,
}

impl From<core::PhotoState> for PhotoState {
    fn from(s: core::PhotoState) -> Self {
        match s {
            core::PhotoState::OnThisDeviceOnly => PhotoState::OnThisDeviceOnly,
            core::PhotoState::Uploading { sent, size } => PhotoState::Uploading { sent, size },
            core::PhotoState::OnServer => PhotoState::OnServer,
            core::PhotoState::NotFetched => PhotoState::NotFetched,
            core::PhotoState::ThumbnailOnly => PhotoState::ThumbnailOnly,
            core::PhotoState::Downloading { received, size } => PhotoState::Downloading { received, size },
            core::PhotoState::Available => PhotoState::Available,
            core::PhotoState::KeptByApp => PhotoState::KeptByApp,
        }
    }
}

/// A section's photo and where its bytes are.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct PhotoStatus {
    /// The photo's record, as in the section's view.
    pub photo: PhotoRef,
    /// Where its bytes are.
    pub state: PhotoState,
}

/// A section's photos with their states, as core has them.
pub(crate) fn photo_states(
    replica: &core::Replica,
    section: &str,
) -> Result<Vec<(core::PhotoRef, core::PhotoState)>, core::ReplicaError> {
    let photos = replica.section(section)?.photos;
    photos.into_iter().map(|p| replica.photo_state(&p).map(|state| (p, state))).collect()
}
