//! The sync half of a replica object: its client, server, background sync,
//! the last connectivity hint and the photo settings, apart from the
//! exported methods (`sync.rs`, `photos.rs`) so that the replica holds it
//! without depending on them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use fieldsync_core as core;

use crate::error::FieldSyncError;
use crate::observer::lock;

/// The sync half of a [`Replica`]: the client once connected (and what it
/// was built from), the server when `connect` named one, background sync
/// while it runs, the last connectivity and metered hints, the photo settings.
#[derive(Default)]
pub(crate) struct Syncing {
    pub(crate) client: Mutex<Option<Arc<core::SyncClient>>>,
    pub(crate) link: Mutex<Option<Link>>,
    pub(crate) server: Mutex<Option<Server>>,
    pub(crate) background: Mutex<Option<Background>>,
    pub(crate) offline: AtomicBool,
    pub(crate) metered: AtomicBool,
    pub(crate) photos: Mutex<PhotoSettings>,
}

/// What a client is built from: the transports and the token renewal.
#[derive(Clone)]
pub(crate) struct Link {
    pub(crate) transport: Arc<dyn core::Transport>,
    /// The photo half: the built-in transport's, the app's, or none.
    pub(crate) photos: Option<Arc<dyn core::PhotoTransport>>,
    pub(crate) renewal: Option<(core::DeviceToken, Arc<dyn core::CredentialsConnector>)>,
}

/// A photo transport (the built-in one's or the app's), flushing the replica's change feed
/// before each chunk: what the photo lane recorded of the chunk before (an
/// upload acknowledged, a thumbnail fetched) reaches the observers then, not
/// only at the sync's end. Safe because the lane, like every round, calls
/// the network with the replica's lock released. (Were the lane to flush
/// after each chunk itself, this would go.)
pub(crate) struct FlushingPhotos {
    pub(crate) inner: Arc<dyn core::PhotoTransport>,
    pub(crate) feed: core::ChangeFeed,
}

impl core::PhotoTransport for FlushingPhotos {
    fn put_chunk(
        &self,
        project: &str,
        sha256: &str,
        size: u64,
        offset: u64,
        bytes: &[u8],
    ) -> Result<core::PhotoUploadState, core::TransportError> {
        self.feed.flush();
        self.inner.put_chunk(project, sha256, size, offset, bytes)
    }

    fn get_chunk(
        &self,
        project: &str,
        sha256: &str,
        offset: u64,
        length: u64,
    ) -> Result<core::PhotoChunk, core::TransportError> {
        self.feed.flush();
        self.inner.get_chunk(project, sha256, offset, length)
    }
}

/// The photo lane's settings the app chose, kept across `connect`s.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PhotoSettings {
    pub(crate) full_size: core::FullSizePhotos,
    pub(crate) budget_bytes: u64,
}

impl Default for PhotoSettings {
    fn default() -> Self {
        PhotoSettings { full_size: core::FullSizePhotos::default(), budget_bytes: core::DEFAULT_PHOTO_BUDGET }
    }
}

/// The server `connect` was given, for the live channel.
#[derive(Clone)]
pub(crate) struct Server {
    pub(crate) url: String,
    /// The transport's token cell: a token the connector renews reaches the live channel too.
    pub(crate) token: core::DeviceToken,
    pub(crate) project: String,
}

/// A running background sync, its live channel, and the config it was started with.
pub(crate) struct Background {
    /// First, so that it closes before background sync stops.
    pub(crate) live: Option<core::LiveChannel>,
    pub(crate) sync: core::BackgroundSync,
    pub(crate) config: core::SyncConfig,
}

impl Syncing {
    pub(crate) fn client(&self) -> Result<Arc<core::SyncClient>, FieldSyncError> {
        lock(&self.client).clone().ok_or_else(|| FieldSyncError::InvalidInput {
            detail: "the replica is not connected to a server: call connect or connect_with first".into(),
        })
    }

    /// A client over `link` with the photo settings and metered hint of now.
    pub(crate) fn build(&self, replica: &Arc<Mutex<core::Replica>>, link: Link) -> core::SyncClient {
        let mut client = core::SyncClient::new(Arc::clone(replica), link.transport);
        if let Some(photos) = link.photos {
            client = client.with_photos(photos);
        }
        if let Some((token, connector)) = link.renewal {
            client = client.with_credentials(token, connector);
        }
        let settings = *lock(&self.photos);
        client.full_size_photos = settings.full_size;
        client.photo_budget_bytes = settings.budget_bytes;
        client.set_metered(self.metered.load(Ordering::Relaxed));
        client
    }

    /// Remember the metered hint, and tell the client if connected.
    pub(crate) fn set_metered(&self, metered: bool) {
        self.metered.store(metered, Ordering::Relaxed);
        if let Some(client) = lock(&self.client).as_ref() {
            client.set_metered(metered);
        }
    }

    /// Tell background sync, if it runs, about `event`.
    pub(crate) fn notify(&self, event: core::SyncEvent) {
        if let Some(b) = lock(&self.background).as_ref() {
            b.sync.notify(event);
        }
    }

    /// Stop background sync, if it runs, waiting for a round in flight to
    /// finish outside the lock (the round's listener may call the replica);
    /// returns the config it ran with.
    pub(crate) fn stop(&self) -> Option<core::SyncConfig> {
        let running = lock(&self.background).take();
        running.map(|Background { live, sync, config }| {
            drop(live);
            sync.stop();
            config
        })
    }
}
