//! The sync half of a replica object: its client, server, background sync
//! and the last connectivity hint, apart from the exported methods (`sync.rs`)
//! so that the replica holds it without depending on them.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use fieldsync_core as core;

use crate::error::FieldSyncError;
use crate::observer::lock;

/// The sync half of a [`Replica`]: the client once connected, the server
/// when `connect` named one, background sync while it runs, the last
/// connectivity hint.
#[derive(Default)]
pub(crate) struct Syncing {
    pub(crate) client: Mutex<Option<Arc<core::SyncClient>>>,
    pub(crate) server: Mutex<Option<Server>>,
    pub(crate) background: Mutex<Option<Background>>,
    pub(crate) offline: AtomicBool,
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
