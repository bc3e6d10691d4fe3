//! The server side: one or two real [`Hub`]s on the same SQLite data dir,
//! called in-process with the raw request body exactly as the axum route
//! calls them, restarted by dropping and reopening, and their live channel
//! (the hub's own broadcast) watched for feed growth.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fieldsync_core::TransportError;
use fieldsync_server::{Hub, HubError};
use tokio::sync::broadcast::{self, error::TryRecvError};

struct Instance {
    hub: Option<Arc<Hub>>,
    live: Option<broadcast::Receiver<u64>>,
}

/// The hub instances of a run.
pub struct Servers {
    /// Their data dir.
    pub dir: PathBuf,
    project: String,
    instances: Vec<Instance>,
}

impl std::fmt::Debug for Servers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Servers").field("dir", &self.dir).field("instances", &self.instances.len()).finish()
    }
}

/// The error a device sees for a hub's refusal: the status and JSON body
/// the HTTP layer would send (`HubError::status`, `HubError::body`).
pub fn transport_error(e: &HubError) -> TransportError {
    TransportError::Server { status: e.status().0, body: e.body() }
}

impl Servers {
    /// `count` hubs on `dir`, all up, following `project`'s live channel.
    pub fn open(dir: &Path, project: &str, count: usize) -> Result<Servers, HubError> {
        let mut s = Servers { dir: dir.to_owned(), project: project.to_owned(), instances: Vec::new() };
        for _ in 0..count.max(1) {
            s.instances.push(Instance { hub: None, live: None });
        }
        for i in 0..s.instances.len() {
            s.start(i)?;
        }
        Ok(s)
    }

    /// How many instances.
    pub fn count(&self) -> usize {
        self.instances.len()
    }

    /// Whether instance `i` is up.
    pub fn is_up(&self, i: usize) -> bool {
        self.instances[i].hub.is_some()
    }

    /// Instance `i`'s hub, if up.
    pub fn hub(&self, i: usize) -> Option<&Arc<Hub>> {
        self.instances[i].hub.as_ref()
    }

    /// Some instance that is up (for admin calls), if any.
    pub fn any(&self) -> Option<&Arc<Hub>> {
        self.instances.iter().find_map(|i| i.hub.as_ref())
    }

    /// Start instance `i` (open the hub on the data dir; no-op if up).
    pub fn start(&mut self, i: usize) -> Result<(), HubError> {
        if self.instances[i].hub.is_none() {
            let hub = Arc::new(Hub::open(&self.dir)?);
            let live = hub.subscribe(&self.project);
            self.instances[i] = Instance { hub: Some(hub), live: Some(live) };
        }
        Ok(())
    }

    /// Stop instance `i` as a killed process: with one instance, its files
    /// are left exactly as they were (WAL not checkpointed).
    pub fn stop(&mut self, i: usize) -> std::io::Result<()> {
        let Some(hub) = self.instances[i].hub.take() else { return Ok(()) };
        self.instances[i].live = None;
        let alone = self.instances.iter().all(|x| x.hub.is_none());
        let db = self.dir.join("hub.db");
        let wal = self.dir.join("hub.db-wal");
        let image: Vec<(PathBuf, Option<Vec<u8>>)> =
            if alone { [&db, &wal].into_iter().map(|p| (p.clone(), std::fs::read(p).ok())).collect() } else { vec![] };
        drop(hub);
        if alone {
            let _ = std::fs::remove_file(self.dir.join("hub.db-shm"));
            for (p, bytes) in image {
                match bytes {
                    Some(b) => std::fs::write(&p, b)?,
                    None => {
                        let _ = std::fs::remove_file(&p);
                    }
                }
            }
        }
        Ok(())
    }

    /// Serve one round on instance `i`; `None` if it is down.
    pub fn sync(&self, i: usize, token: &str, body: &[u8], now_ms: u64) -> Option<Result<Vec<u8>, TransportError>> {
        let hub = self.instances[i].hub.as_ref()?;
        Some(hub.sync(token, body, now_ms).map_err(|e| transport_error(&e)))
    }

    /// Whether instance `i`'s live channel said the feed grew since last asked.
    pub fn feed_grew(&mut self, i: usize) -> bool {
        let Some(rx) = self.instances[i].live.as_mut() else { return false };
        let mut grew = false;
        loop {
            match rx.try_recv() {
                Ok(_) | Err(TryRecvError::Lagged(_)) => grew = true,
                Err(TryRecvError::Empty | TryRecvError::Closed) => return grew,
            }
        }
    }
}
