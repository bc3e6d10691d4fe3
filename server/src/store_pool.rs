//! The hub's stores, a few at once: each round takes one for as long as it
//! runs, so rounds of different projects read, decide and commit side by side
//! (SQLite in WAL mode lets readers run beside the one writer; PostgreSQL
//! takes them all). A store is opened when every open one is busy, up to
//! `max`; past that a round waits, and after [`POOL_WAIT`] it is told to come
//! back later (503).
//!
//! Hand-written rather than `r2d2`: a store handed in whole (tests, an
//! in-memory database) can only be opened once, which r2d2's lifetimes and
//! eager connections would fight; each store already reconnects by itself.

use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::error::HubError;
use crate::store::{HubStore, StoreError};

/// How long a round waits for a free store before it is answered 503.
pub const POOL_WAIT: Duration = Duration::from_secs(10);

/// Opens one more store (another connection to the same database).
pub type OpenStore = Box<dyn Fn() -> Result<Box<dyn HubStore>, StoreError> + Send + Sync>;

/// Up to `max` stores of one database.
pub struct StorePool {
    state: Mutex<PoolState>,
    returned: Condvar,
    open: Option<OpenStore>,
    max: usize,
}

struct PoolState {
    idle: Vec<Box<dyn HubStore>>,
    /// Stores that exist (idle or taken).
    opened: usize,
}

impl StorePool {
    /// A pool of the one store given (rounds take turns with it).
    pub fn single(store: Box<dyn HubStore>) -> StorePool {
        StorePool {
            state: Mutex::new(PoolState { idle: vec![store], opened: 1 }),
            returned: Condvar::new(),
            open: None,
            max: 1,
        }
    }

    /// A pool that opens up to `max` stores with `open`, the first one now
    /// (so a database that cannot be used is an error at start).
    pub fn new(max: usize, open: OpenStore) -> Result<StorePool, StoreError> {
        let first = open()?;
        Ok(StorePool {
            state: Mutex::new(PoolState { idle: vec![first], opened: 1 }),
            returned: Condvar::new(),
            open: Some(open),
            max: max.max(1),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A store for this caller alone until the guard drops.
    pub fn get(&self) -> Result<PooledStore<'_>, HubError> {
        let deadline = Instant::now() + POOL_WAIT;
        let mut state = self.state();
        loop {
            if let Some(store) = state.idle.pop() {
                return Ok(PooledStore { store: Some(store), pool: self });
            }
            if let Some(open) = self.open.as_ref().filter(|_| state.opened < self.max) {
                state.opened += 1;
                drop(state); // Connecting takes time: others go on meanwhile.
                return match open() {
                    Ok(store) => Ok(PooledStore { store: Some(store), pool: self }),
                    Err(e) => {
                        self.state().opened -= 1;
                        self.returned.notify_one();
                        Err(e.into())
                    }
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(HubError::Busy {
                    message: format!("all {} of the server's database connections are busy", self.max),
                    retry_after_s: 1,
                });
            }
            state = self.returned.wait_timeout(state, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }
}

/// A store taken from a [`StorePool`]; it goes back when dropped (a
/// transaction a panic interrupted was rolled back by its own drop).
pub struct PooledStore<'a> {
    store: Option<Box<dyn HubStore>>,
    pool: &'a StorePool,
}

impl Deref for PooledStore<'_> {
    type Target = dyn HubStore;
    fn deref(&self) -> &Self::Target {
        self.store.as_deref().expect("held until dropped")
    }
}

impl DerefMut for PooledStore<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.store.as_deref_mut().expect("held until dropped")
    }
}

impl Drop for PooledStore<'_> {
    fn drop(&mut self) {
        if let Some(store) = self.store.take() {
            self.pool.state().idle.push(store);
            self.pool.returned.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::SqliteHubStore;

    fn pool_of(max: usize, dir: &std::path::Path) -> (StorePool, Arc<AtomicUsize>) {
        let opened = Arc::new(AtomicUsize::new(0));
        let (count, dir) = (Arc::clone(&opened), dir.to_owned());
        let open: OpenStore = Box::new(move || {
            count.fetch_add(1, Ordering::SeqCst);
            Ok(Box::new(SqliteHubStore::open(&dir)?))
        });
        (StorePool::new(max, open).unwrap(), opened)
    }

    #[test]
    fn a_store_is_opened_only_when_every_open_one_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let (pool, opened) = pool_of(3, dir.path());
        drop(pool.get().unwrap());
        drop(pool.get().unwrap());
        assert_eq!(opened.load(Ordering::SeqCst), 1, "a returned store is used again");
        let (a, b) = (pool.get().unwrap(), pool.get().unwrap());
        assert_eq!(opened.load(Ordering::SeqCst), 2);
        drop((a, b));
    }

    #[test]
    fn a_caller_past_the_maximum_waits_for_a_store_to_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let (pool, opened) = pool_of(1, dir.path());
        let pool = Arc::new(pool);
        let held = pool.get().unwrap();
        let waiter = {
            let pool = Arc::clone(&pool);
            std::thread::spawn(move || pool.get().map(|mut s| s.feed_max("p").unwrap()).is_ok())
        };
        // The waiter cannot have a store until this one goes back.
        std::thread::sleep(Duration::from_millis(50));
        drop(held);
        assert!(waiter.join().unwrap());
        assert_eq!(opened.load(Ordering::SeqCst), 1);
    }
}
