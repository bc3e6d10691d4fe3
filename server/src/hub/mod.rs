//! The hub: the sync protocol over a [`HubStore`], without any HTTP, so the
//! production logic can be driven in-process (by a simulated network) exactly
//! as the axum layer in [`crate::http`] drives it. Its seams: this module
//! (authenticating, taking a store and the project's turn), [`round`] (one
//! round planned, judged and committed), [`admin`] (projects, members,
//! devices), [`live_bus`] (news for the live channels).
//!
//! A sync round, in order: authenticate the token → check the protocol
//! version → the project exists and the device's user is a member → bind the
//! request's actor to the device on first use → decode every uploaded change,
//! check its actor is this device's, skip those already stored, apply the rest
//! to the server's copy of each touched section (snapshot + feed rows since),
//! check the section's project, that every dependency is present, and judge
//! the new writes with the rules over the merge (refusing only what an honest
//! client never writes: a forged stamp, an unknown author) → store the changes, views and
//! conflict records in one transaction → answer with what the device lacks
//! since its cursor, up to its byte budget.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use fieldsync_core::protocol::{self, PROTOCOL_VERSION, SyncRequest, SyncResponse};
use fieldsync_core::{Member, Role, Roster};
use tokio::sync::broadcast;

use crate::cursor::Cursor;
use crate::error::HubError;
use crate::freshness::Freshness;
use crate::limits;
use crate::metrics::Metrics;
use crate::pg_store::{PgHubStore, PgOptions};
use crate::sqlite_store::SqliteHubStore;
use crate::store::{DeviceRecord, HubStore, ProjectRecord, StoreError};
use crate::store_pool::{OpenStore, PooledStore, StorePool};
use crate::timed_store::TimedStore;

mod admin;
mod live_bus;
mod photos;
mod round;
mod scope;

use round::Notice;

pub use admin::{Enrollment, token_hash};
use live_bus::LiveBus;

/// A section's loose feed rows past which a round folds it into a new snapshot.
pub const SNAPSHOT_AFTER: usize = 64;
/// The largest response budget honoured, whatever a device asks for.
pub const MAX_RESPONSE_BUDGET: usize = 8 * 1024 * 1024;
/// How many section ids bootstrapping reads from the store at a time.
const BOOTSTRAP_BATCH: usize = 32;
/// Stores (database connections) a hub opened on a data directory keeps.
pub const DEFAULT_POOL_SIZE: usize = 8;
/// How often a round is decided again when another process committed to
/// one of its sections first, before it is answered 503.
const STALE_RETRIES: usize = 5;
/// Project turns kept while nobody holds them, before the idle ones go.
const MAX_IDLE_TURNS: usize = 4096;

/// The sync hub. Rounds run side by side, each with a store of its own,
/// except that a project's rounds (and its roster changes) take turns: a
/// round reads its sections, decides and commits as one step.
pub struct Hub {
    stores: StorePool,
    /// One turn per project, taken for a whole round.
    turns: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    live: LiveBus,
    metrics: Arc<Metrics>,
    freshness: Freshness,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

impl Hub {
    /// A hub over one store: its rounds take turns with it.
    pub fn new(store: impl HubStore + 'static) -> Hub {
        let metrics = Arc::new(Metrics::new());
        let stores = StorePool::single(Box::new(TimedStore::new(Box::new(store), Arc::clone(&metrics))));
        Hub::with_stores(stores, metrics)
    }

    /// A hub that opens up to `max` stores with `open` (connections to one
    /// database), so that rounds of different projects run in parallel.
    pub fn pooled(
        max: usize,
        open: impl Fn() -> Result<Box<dyn HubStore>, StoreError> + Send + Sync + 'static,
    ) -> Result<Hub, StoreError> {
        let metrics = Arc::new(Metrics::new());
        let timed = Arc::clone(&metrics);
        let open: OpenStore =
            Box::new(move || Ok(Box::new(TimedStore::new(open()?, Arc::clone(&timed))) as Box<dyn HubStore>));
        Ok(Hub::with_stores(StorePool::new(max, open)?, metrics))
    }

    fn with_stores(stores: StorePool, metrics: Arc<Metrics>) -> Hub {
        Hub {
            stores,
            turns: Mutex::new(HashMap::new()),
            live: LiveBus::new(crate::now_ms()),
            metrics,
            freshness: Freshness::default(),
        }
    }

    /// The hub's metrics (the HTTP layer records its own in them too).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Whether the store is reachable and takes writes now (the readiness probe).
    pub fn check_ready(&self) -> Result<(), HubError> {
        Ok(self.store()?.check_writable()?)
    }

    /// A live channel of `device` on `project` carried a notice: its next
    /// round times the changes it brings (`fieldsync_edit_to_visible_seconds`).
    pub fn live_notice_sent(&self, device: &str, project: &str) {
        self.freshness.woken(device, project);
    }

    /// A hub over the embedded SQLite store in `dir` (`<dir>/hub.db`), with
    /// up to [`DEFAULT_POOL_SIZE`] connections.
    pub fn open(dir: impl AsRef<Path>) -> Result<Hub, HubError> {
        let dir = dir.as_ref().to_owned();
        Ok(Hub::pooled(DEFAULT_POOL_SIZE, move || Ok(Box::new(SqliteHubStore::open(&dir)?)))?)
    }

    /// A hub on the PostgreSQL database at `url` with up to `max`
    /// connections, and its instance id (for [`crate::pg_store::listen`]).
    /// The first connection is made now and checks the schema.
    pub fn on_postgres(url: &str, options: PgOptions, max: usize) -> Result<(Hub, String), StoreError> {
        let first = PgHubStore::connect_with(url, options)?;
        let instance = first.instance().to_owned();
        let first = Mutex::new(Some(first));
        let (url, id) = (url.to_owned(), instance.clone());
        let hub = Hub::pooled(max, move || {
            let store = match first.lock().unwrap_or_else(|p| p.into_inner()).take() {
                Some(store) => store,
                None => PgHubStore::connect_as(&url, options, &id)?,
            };
            Ok(Box::new(store))
        })?;
        Ok((hub, instance))
    }

    fn store(&self) -> Result<PooledStore<'_>, HubError> {
        self.stores.get()
    }

    /// `project`'s turn: held, no other round or roster change of the
    /// project runs in this process. Turns nobody holds or waits for are
    /// dropped once there are many (a device may name any project).
    fn turn(&self, project: &str) -> Arc<Mutex<()>> {
        let mut turns = self.turns.lock().unwrap_or_else(|p| p.into_inner());
        if turns.len() >= MAX_IDLE_TURNS && !turns.contains_key(project) {
            turns.retain(|_, turn| Arc::strong_count(turn) > 1);
        }
        Arc::clone(turns.entry(project.to_owned()).or_default())
    }

    /// Serve one round: `body` is a deflated postcard [`SyncRequest`]; returns
    /// the encoded [`SyncResponse`]. Limits are checked before decoding.
    pub fn sync(&self, bearer_token: &str, body: &[u8], now_ms: u64) -> Result<Vec<u8>, HubError> {
        let started = Instant::now();
        let served = self.sync_timed(bearer_token, body, now_ms);
        self.metrics.round(started.elapsed());
        served
    }

    fn sync_timed(&self, bearer_token: &str, body: &[u8], now_ms: u64) -> Result<Vec<u8>, HubError> {
        if body.len() > protocol::MAX_BODY_BYTES {
            return Err(HubError::TooLarge(format!(
                "the body is {} bytes, over the limit of {}; upload fewer changes per round",
                body.len(),
                protocol::MAX_BODY_BYTES
            )));
        }
        let device = authenticate(&mut *self.store()?, bearer_token, now_ms)?;
        // Inflate and parse without holding a store.
        let request: SyncRequest = protocol::decode_request(body)?;
        let response = self.serve_round(&device, request, now_ms)?;
        Ok(protocol::encode(&response))
    }

    /// Serve one round from an already decoded request.
    pub fn sync_request(
        &self,
        bearer_token: &str,
        request: SyncRequest,
        now_ms: u64,
    ) -> Result<SyncResponse, HubError> {
        let started = Instant::now();
        let served = authenticate(&mut *self.store()?, bearer_token, now_ms)
            .and_then(|device| self.serve_round(&device, request, now_ms));
        self.metrics.round(started.elapsed());
        served
    }

    /// A round of an authenticated device, then its notices and measures.
    fn serve_round(&self, device: &DeviceRecord, request: SyncRequest, now_ms: u64) -> Result<SyncResponse, HubError> {
        crate::request_log::record_project(&request.project);
        let project = request.project.clone();
        let from = match Cursor::parse(&request.cursor) {
            Ok(Cursor::Changes(seq)) => Some(seq),
            _ => None,
        };
        let (response, notify) = self.round_in_turn(device, &request, now_ms).inspect_err(|e| {
            if let HubError::Refused(refusals) = e {
                refusals.iter().for_each(|r| self.metrics.refused(r.rule.as_deref()));
            }
        })?;
        self.live.remember_scope(&device.id, &project, &request.scope);
        if let Some((project, seq, touched)) = notify {
            self.live.notify(&project, seq, Some(touched));
        }
        if let (Some(after), Ok(Cursor::Changes(until))) = (from, Cursor::parse(&response.cursor)) {
            self.freshness.delivered(&self.metrics, &device.id, &project, after, until, response.more);
        }
        Ok(response)
    }

    /// The id of the device `bearer_token` belongs to, if it may sync: what
    /// the HTTP layer checks before reading a request's body.
    pub fn authenticate(&self, bearer_token: &str) -> Result<String, HubError> {
        Ok(authenticate(&mut *self.store()?, bearer_token, crate::now_ms())?.id)
    }

    /// Check that `bearer_token` may follow `project`'s live channel; the device's id.
    pub fn authorize_live(&self, bearer_token: &str, project: &str) -> Result<String, HubError> {
        let mut store = self.store()?;
        let device = authenticate(&mut *store, bearer_token, crate::now_ms())?;
        member_project(&mut *store, &device, project)?;
        Ok(device.id)
    }

    /// The ids of devices as they are revoked (through this hub at once,
    /// through others within [`crate::ServeOptions::revocation_poll_interval`]),
    /// so their live channels close.
    pub fn revocations(&self) -> broadcast::Receiver<String> {
        self.live.revocations()
    }

    /// Announce on [`Hub::revocations`] the devices any process revoked
    /// since the last look (the HTTP layer looks every second, so a
    /// revocation by `fieldsync admin` or another server closes this one's
    /// live channels too); returns how many.
    pub fn look_for_revocations(&self) -> Result<usize, HubError> {
        let found = self.store()?.revoked_since(self.live.look_from_ms())?;
        Ok(self.live.announce_revoked(found))
    }

    /// Subscribe to `project`'s feed growth: each message is the new highest feed seq.
    pub fn subscribe(&self, project: &str) -> broadcast::Receiver<u64> {
        self.live.subscribe(project)
    }

    /// Tell this hub's live subscribers that `project`'s feed reached `seq`.
    /// The hub does so after each round it commits; call it for rounds another
    /// process committed (see [`crate::pg_store::listen`]).
    pub fn notify(&self, project: &str, seq: u64) {
        self.live.notify(project, seq, None);
    }

    /// Whether a live notice up to `seq` is news to `device` (told of
    /// `after` before): a device syncing part of the project is not woken
    /// by commits to sections its scope does not cover.
    pub fn live_notice_wanted(&self, device: &str, project: &str, after: u64, seq: u64) -> bool {
        self.live.wants(device, project, after, seq)
    }

    /// The latest feed seq of `project` this hub announced: where a live
    /// channel opened now starts (its device runs a round on connecting).
    pub fn live_announced(&self, project: &str) -> u64 {
        self.live.announced(project)
    }

    /// A round in its project's turn, decided again (on what is stored now)
    /// when another process committed to one of its sections first.
    fn round_in_turn(
        &self,
        device: &DeviceRecord,
        request: &SyncRequest,
        now_ms: u64,
    ) -> Result<(SyncResponse, Option<Notice>), HubError> {
        if !(protocol::OLDEST_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&request.protocol) {
            return Err(HubError::ProtocolVersion { found: request.protocol });
        }
        limits::check_request(request)?;
        // Membership is checked in the turn (a role change takes it too).
        let turn = self.turn(&request.project);
        let _turn = turn.lock().unwrap_or_else(|p| p.into_inner());
        let mut retries = 0;
        loop {
            match self.round(&mut *self.store()?, device, request, now_ms) {
                Err(HubError::Storage(StoreError::Stale { section })) if retries < STALE_RETRIES => {
                    retries += 1;
                    tracing::debug!(section, retries, "another process committed to the section first; deciding again");
                }
                Err(HubError::Storage(StoreError::Stale { section })) => {
                    return Err(HubError::Busy {
                        message: format!("section {section} is being written by other servers"),
                        retry_after_s: 1,
                    });
                }
                served => return served,
            }
        }
    }
}

fn authenticate(store: &mut dyn HubStore, token: &str, now_ms: u64) -> Result<DeviceRecord, HubError> {
    if token.is_empty() {
        return Err(HubError::Unauthorized(
            "no device token; send `Authorization: Bearer <token>` with the token from enrollment".into(),
        ));
    }
    match store.device_by_token_hash(&token_hash(token))? {
        None => Err(HubError::Unauthorized("unknown device token; enroll the device again".into())),
        Some(d) if d.revoked_ms.is_some() => {
            Err(HubError::Unauthorized(format!("device {} was revoked; ask an administrator to enroll it again", d.id)))
        }
        Some(d) if d.expires_ms.is_some_and(|at| at <= now_ms) => Err(HubError::TokenExpired(format!(
            "the token of device {} expired; fetch a fresh one (`fieldsync admin issue-token`)",
            d.id
        ))),
        Some(d) => Ok(d),
    }
}

fn member_project(
    store: &mut dyn HubStore,
    device: &DeviceRecord,
    project: &str,
) -> Result<(ProjectRecord, Role), HubError> {
    let record = store.project(project)?.ok_or_else(|| HubError::UnknownProject(project.to_owned()))?;
    let role = store.member_role(project, &device.user)?.ok_or_else(|| {
        HubError::Forbidden(format!(
            "user `{}` is not a member of project `{project}`; ask an administrator to add them",
            device.user
        ))
    })?;
    Ok((record, role))
}

/// The project's roster with its role history, and `bound` (an actor this
/// round binds) in it.
fn roster_of(store: &mut dyn HubStore, project: &str, bound: Option<Member>) -> Result<Roster, HubError> {
    let mut members = store.roster(project)?;
    members.extend(bound);
    Ok(Roster::new(members).with_history(store.role_history(project)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_nobody_holds_are_dropped_once_there_are_many() {
        let dir = tempfile::tempdir().unwrap();
        let hub = Hub::new(SqliteHubStore::open(dir.path()).unwrap());
        let held = hub.turn("busy");
        let _waiting = held.lock().unwrap();
        // A device naming project after project, none of them real.
        for i in 0..3 * MAX_IDLE_TURNS {
            drop(hub.turn(&format!("made-up-{i}")));
        }
        let turns = hub.turns.lock().unwrap();
        assert!(turns.len() <= MAX_IDLE_TURNS, "{} turns kept", turns.len());
        assert!(turns.contains_key("busy"), "a held turn was dropped");
    }
}
