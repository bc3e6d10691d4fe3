//! The hub: the sync protocol over a [`HubStore`], without any HTTP, so the
//! production logic can be driven in-process (by a simulated network) exactly
//! as the axum layer in [`crate::http`] drives it.
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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use automerge::{Change, ReadDoc};
use fieldsync_core::protocol::{
    self, PROTOCOL_VERSION, Refusal, RosterUpdate, SectionBatch, SectionDocument, SyncRequest, SyncResponse,
};
use fieldsync_core::{
    ConflictRecord, Decision, Member, ProjectConfig, Role, Roster, SectionDoc, SectionInput, SectionView, Validated,
    validate,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;

use crate::cursor::Cursor;
use crate::error::HubError;
use crate::freshness::Freshness;
use crate::limits;
use crate::metrics::{Metrics, Phase};
use crate::pg_store::{PgHubStore, PgOptions};
use crate::sqlite_store::SqliteHubStore;
use crate::store::{
    DeviceRecord, DeviceSummary, HubStore, ProjectRecord, ProjectSummary, RoundWrite, SectionWrite, StoreError,
};
use crate::store_pool::{OpenStore, PooledStore, StorePool};
use crate::timed_store::TimedStore;

/// A section's loose feed rows past which a round folds it into a new snapshot.
pub const SNAPSHOT_AFTER: usize = 64;
/// The largest response budget honoured, whatever a device asks for.
pub const MAX_RESPONSE_BUDGET: usize = 8 * 1024 * 1024;
/// How many section ids bootstrapping reads from the store at a time.
const BOOTSTRAP_BATCH: usize = 32;
/// Stores (database connections) a hub opened on a data directory keeps.
pub const DEFAULT_POOL_SIZE: usize = 8;
/// How far before the latest revocation seen [`Hub::look_for_revocations`]
/// looks again: another process's clock, or its commit, may lag ours.
const REVOCATION_SLACK_MS: u64 = 60_000;
/// How often a round is decided again when another process committed to
/// one of its sections first, before it is answered 503.
const STALE_RETRIES: usize = 5;

/// What enrolling a device returns. The token is shown once: only its hash is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrollment {
    /// The new device's id.
    pub device_id: String,
    /// Its bearer token (64 hex characters).
    pub token: String,
}

/// The sync hub. Rounds run side by side, each with a store of its own,
/// except that a project's rounds (and its roster changes) take turns: a
/// round reads its sections, decides and commits as one step.
pub struct Hub {
    stores: StorePool,
    /// One turn per project, taken for a whole round.
    turns: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    live: Mutex<HashMap<String, broadcast::Sender<u64>>>,
    revoked: broadcast::Sender<String>,
    /// Revocations already announced on `revoked`, by when they were made.
    revocations_seen: Mutex<RevocationsSeen>,
    metrics: Arc<Metrics>,
    freshness: Freshness,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

/// SHA-256 of a token, hex: what the store keeps.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).expect("the OS has randomness");
    hex::encode(b)
}

/// What [`Hub::look_for_revocations`] announced already.
struct RevocationsSeen {
    /// The latest revocation seen (or when the hub started).
    since_ms: u64,
    ids: HashMap<String, u64>,
}

/// A section being changed by a round.
struct Touched {
    doc: SectionDoc,
    /// Whether the server had no document for it before this round.
    is_new: bool,
    loose: usize,
    /// The section's highest feed seq when read (0: none).
    last_seq: u64,
    /// Bytes the hub stores for it (snapshot and loose changes).
    stored_bytes: usize,
    new: Vec<Change>,
    seen: HashSet<String>,
    /// When the hub received each of its changes, the new ones included (now).
    received: BTreeMap<String, u64>,
    /// The rules' judgement of the document with the new changes.
    validated: Option<Validated>,
}

/// What the rules read of `doc`, with when the hub received its changes.
fn input_of(doc: &SectionDoc, received: &BTreeMap<String, u64>) -> SectionInput {
    let mut input = doc.input();
    input.received = received.clone();
    input
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
            live: Mutex::new(HashMap::new()),
            revoked: broadcast::channel(64).0,
            revocations_seen: Mutex::new(RevocationsSeen { since_ms: crate::now_ms(), ids: HashMap::new() }),
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
    /// project runs in this process. Only for projects that exist (the map
    /// holds one entry per project).
    fn turn(&self, project: &str) -> Arc<Mutex<()>> {
        let mut turns = self.turns.lock().unwrap_or_else(|p| p.into_inner());
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
        let device = authenticate(&mut *self.store()?, bearer_token)?;
        // Inflate and parse without holding a store.
        let request: SyncRequest = protocol::decode_with(body, &protocol::Limits::REQUEST)?;
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
        let served = authenticate(&mut *self.store()?, bearer_token)
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
        if let Some((project, seq)) = notify {
            self.notify(&project, seq);
        }
        if let (Some(after), Ok(Cursor::Changes(until))) = (from, Cursor::parse(&response.cursor)) {
            self.freshness.delivered(&self.metrics, &device.id, &project, after, until, response.more);
        }
        Ok(response)
    }

    /// The id of the device `bearer_token` belongs to, if it may sync: what
    /// the HTTP layer checks before reading a request's body.
    pub fn authenticate(&self, bearer_token: &str) -> Result<String, HubError> {
        Ok(authenticate(&mut *self.store()?, bearer_token)?.id)
    }

    /// Check that `bearer_token` may follow `project`'s live channel; the device's id.
    pub fn authorize_live(&self, bearer_token: &str, project: &str) -> Result<String, HubError> {
        let mut store = self.store()?;
        let device = authenticate(&mut *store, bearer_token)?;
        member_project(&mut *store, &device, project)?;
        Ok(device.id)
    }

    /// The ids of devices as they are revoked by this hub ([`Hub::revoke_device`]),
    /// so their live channels close at once.
    pub fn revocations(&self) -> broadcast::Receiver<String> {
        self.revoked.subscribe()
    }

    /// Announce on [`Hub::revocations`] the devices any process revoked
    /// since the last look (the HTTP layer looks every second, so a
    /// revocation by `fieldsync admin` or another server closes this one's
    /// live channels too); returns how many.
    pub fn look_for_revocations(&self) -> Result<usize, HubError> {
        let mut seen = self.revocations_seen.lock().unwrap_or_else(|p| p.into_inner());
        let found = self.store()?.revoked_since(seen.since_ms.saturating_sub(REVOCATION_SLACK_MS))?;
        let mut announced = 0;
        for (id, at_ms) in found {
            seen.since_ms = seen.since_ms.max(at_ms);
            if seen.ids.insert(id.clone(), at_ms).is_none() {
                let _ = self.revoked.send(id); // No receiver: no live channel open.
                announced += 1;
            }
        }
        let oldest = seen.since_ms.saturating_sub(REVOCATION_SLACK_MS);
        seen.ids.retain(|_, at_ms| *at_ms >= oldest);
        Ok(announced)
    }

    /// Subscribe to `project`'s feed growth: each message is the new highest feed seq.
    pub fn subscribe(&self, project: &str) -> broadcast::Receiver<u64> {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.entry(project.to_owned()).or_insert_with(|| broadcast::channel(16).0).subscribe()
    }

    /// Tell this hub's live subscribers that `project`'s feed reached `seq`.
    /// The hub does so after each round it commits; call it for rounds another
    /// process committed (see [`crate::pg_store::listen`]).
    pub fn notify(&self, project: &str, seq: u64) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = live.get(project)
            && tx.send(seq).is_err()
        {
            live.remove(project); // Nobody listens any more.
        }
    }

    /// A round in its project's turn, decided again (on what is stored now)
    /// when another process committed to one of its sections first.
    fn round_in_turn(
        &self,
        device: &DeviceRecord,
        request: &SyncRequest,
        now_ms: u64,
    ) -> Result<(SyncResponse, Option<(String, u64)>), HubError> {
        if request.protocol != PROTOCOL_VERSION {
            return Err(HubError::ProtocolVersion { found: request.protocol });
        }
        limits::check_request(request)?;
        // Only members wait for a project's turn (and only real projects get one).
        member_project(&mut *self.store()?, device, &request.project)?;
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

    fn round(
        &self,
        store: &mut dyn HubStore,
        device: &DeviceRecord,
        request: &SyncRequest,
        now_ms: u64,
    ) -> Result<(SyncResponse, Option<(String, u64)>), HubError> {
        let project = request.project.as_str();
        let (record, role) = member_project(store, device, project)?;
        let cursor = Cursor::parse(&request.cursor)?;
        if automerge::ActorId::try_from(request.actor.as_str()).is_err() || request.actor.is_empty() {
            return Err(HubError::Malformed(format!("`{}` is not a hex Automerge actor id", request.actor)));
        }
        // A cursor past the feed was written by a server whose data this one
        // does not have (restored from an older backup, or replaced).
        if cursor.seq() > 0 && cursor.seq() > store.feed_max(project)? {
            return Err(HubError::UnknownCursor(format!(
                "cursor `{}` is past the end of this server's feed (its data was restored or replaced); \
                 send an empty cursor",
                request.cursor
            )));
        }
        let bind_actor = match store.actor_device(&request.actor)? {
            Some(d) if d == device.id => None,
            // Bound to another device: taken over in the commit if that device
            // was revoked and is this user's (the same phone enrolled again),
            // refused there (403) otherwise.
            Some(_) | None => {
                limits::check_new_actor(store, &device.id)?;
                Some(request.actor.clone())
            }
        };

        let bound = bind_actor.as_ref().map(|actor| Member { actor: actor.clone(), user: device.user.clone(), role });
        let roster = roster_of(store, project, bound)?;
        let (touched, upload_received) = self.apply_upload(store, device, request, &record.config, &roster, now_ms)?;

        let mut notify = None;
        if !touched.is_empty() || bind_actor.is_some() {
            let committing = Instant::now();
            let mut sections = Vec::with_capacity(touched.len());
            let mut new_changes = 0;
            // The conflict records the new changes take part in, counted once stored.
            let mut recorded = Vec::new();
            for (section, t) in touched {
                let validated = match t.validated {
                    Some(v) => v,
                    None => validate(&input_of(&t.doc, &t.received), &roster, &record.config),
                };
                let new_hashes: HashSet<String> = t.new.iter().map(|c| c.hash().to_string()).collect();
                recorded.extend(
                    validated
                        .conflicts
                        .iter()
                        .filter(|c| c.candidates.iter().any(|k| new_hashes.contains(&k.change_hash)))
                        .map(|c| (c.kind, c.rule)),
                );
                let conflicts = validated
                    .conflicts
                    .iter()
                    .map(|c| Ok((c.id.clone(), serde_json::to_string(c)?)))
                    .collect::<Result<Vec<_>, serde_json::Error>>()
                    .map_err(StoreError::from)?;
                let snapshot = (t.loose + t.new.len() > SNAPSHOT_AFTER).then(|| t.doc.save());
                new_changes += t.new.len();
                sections.push(SectionWrite {
                    section,
                    based_on_seq: t.last_seq,
                    // Uncompressed, like the phones: a response deflates its changes together.
                    changes: t.new.into_iter().map(|c| (c.hash().to_string(), c.raw_bytes().to_vec())).collect(),
                    view: serde_json::to_string(&validated.view).map_err(StoreError::from)?,
                    conflicts,
                    snapshot,
                });
            }
            let write = RoundWrite {
                project: project.to_owned(),
                device: device.id.clone(),
                user: device.user.clone(),
                bind_actor,
                now_ms,
                sections,
            };
            let max = store.commit_round(&write).map_err(|e| match e {
                StoreError::ActorTaken { actor } => {
                    HubError::Forbidden(format!("actor {actor} belongs to another device"))
                }
                e => HubError::Storage(e),
            })?;
            if !write.sections.is_empty() {
                self.metrics.phase(Phase::Commit, committing.elapsed());
            }
            self.metrics.accepted(new_changes);
            recorded.into_iter().for_each(|(kind, rule)| self.metrics.conflict(kind, rule));
            if new_changes > 0 {
                self.freshness.stored(project, max, &device.id);
            }
            // New changes, or a new actor in the roster (a device's first round):
            // online devices run a round and learn of it.
            if new_changes > 0 || write.bind_actor.is_some() {
                notify = Some((project.to_owned(), max));
            }
        }

        let budget = match request.response_budget as usize {
            0 => protocol::DEFAULT_RESPONSE_BUDGET as usize,
            b => b.min(MAX_RESPONSE_BUDGET),
        };
        let mut response = SyncResponse {
            server_time_ms: now_ms,
            changes: Vec::new(),
            documents: Vec::new(),
            cursor: String::new(),
            more: false,
            roster: None,
            upload_received,
        };
        let record = store.project(project)?.unwrap_or(record);
        if request.roster_version != record.roster_version {
            response.roster = Some(RosterUpdate {
                version: record.roster_version,
                members: store.roster(project)?,
                history: store.role_history(project)?,
                config: record.config,
            });
        }
        let (after, used) = match cursor {
            Cursor::Start => {
                let seq = store.feed_max(project)?;
                self.bootstrap(store, project, seq, String::new(), budget, &mut response)?
            }
            Cursor::Bootstrap { seq, after } => self.bootstrap(store, project, seq, after, budget, &mut response)?,
            Cursor::Changes(seq) => (Some(seq), 0),
        };
        if let Some(after) = after {
            self.changes(store, project, &device.id, after, budget.saturating_sub(used), used == 0, &mut response)?;
        }
        Ok((response, notify))
    }

    /// Decode, check and apply the upload to the server's documents, without
    /// storing anything. Returns the touched sections with their new changes,
    /// and when the hub received each uploaded change (in the request's
    /// order): now for a new one, then for one it already had.
    fn apply_upload(
        &self,
        store: &mut dyn HubStore,
        device: &DeviceRecord,
        request: &SyncRequest,
        config: &ProjectConfig,
        roster: &Roster,
        now_ms: u64,
    ) -> Result<(BTreeMap<String, Touched>, Vec<u64>), HubError> {
        let started = Instant::now();
        let mut resolution = Duration::ZERO;
        let mut touched: BTreeMap<String, Touched> = BTreeMap::new();
        let mut received = Vec::new();
        let mut own_actors: HashSet<String> = HashSet::from([request.actor.clone()]);
        let mut over_limits = Vec::new();
        for batch in &request.upload {
            if batch.section.is_empty() {
                return Err(HubError::Malformed("a batch names no section".into()));
            }
            for bytes in &batch.changes {
                let change = Change::from_bytes(bytes.clone()).map_err(|e| {
                    HubError::Malformed(format!(
                        "a change of section {} is not an Automerge change ({e}); it cannot be stored",
                        batch.section
                    ))
                })?;
                let actor = change.actor_id().to_hex_string();
                if !own_actors.contains(&actor) {
                    match store.actor_device(&actor)? {
                        Some(d) if d == device.id => {
                            own_actors.insert(actor);
                        }
                        _ => {
                            return Err(HubError::Forbidden(format!(
                                "change {} of section {} was made by actor {actor}, which is not this device's; \
                                 a device uploads only its own changes",
                                change.hash(),
                                batch.section
                            )));
                        }
                    }
                }
                let hash = change.hash().to_string();
                if let Some(ms) = store.received(&batch.section, &hash)? {
                    received.push(ms);
                    continue; // Sent before: harmless.
                }
                received.push(now_ms);
                if let Err(reason) = limits::check_change(bytes.len(), &change) {
                    over_limits.push(Refusal { section: batch.section.clone(), hash, rule: None, reason });
                    continue;
                }
                let t = match touched.entry(batch.section.clone()) {
                    std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::btree_map::Entry::Vacant(v) => {
                        let (doc, loose, last_seq, stored_bytes, stored_received) = match store
                            .section(&batch.section)?
                        {
                            Some(s) if s.project != request.project => {
                                return Err(HubError::Forbidden(format!(
                                    "section {} belongs to another project than {}",
                                    batch.section, request.project
                                )));
                            }
                            Some(s) => {
                                let doc = SectionDoc::from_parts(s.snapshot.as_deref(), &s.changes).map_err(|e| {
                                    HubError::Storage(StoreError::Io(std::io::Error::other(format!(
                                        "stored section {} unreadable: {e}",
                                        batch.section
                                    ))))
                                })?;
                                let bytes = s.snapshot.as_ref().map_or(0, Vec::len)
                                    + s.changes.iter().map(Vec::len).sum::<usize>();
                                (doc, s.changes.len(), s.last_seq, bytes, s.received)
                            }
                            None => (
                                SectionDoc::from_parts(None, &[]).expect("an empty document loads"),
                                0,
                                0,
                                0,
                                BTreeMap::new(),
                            ),
                        };
                        v.insert(Touched {
                            doc,
                            is_new: last_seq == 0,
                            loose,
                            last_seq,
                            stored_bytes,
                            new: Vec::new(),
                            seen: HashSet::new(),
                            received: stored_received,
                            validated: None,
                        })
                    }
                };
                if t.seen.insert(hash.clone()) {
                    t.received.insert(hash, now_ms);
                    t.new.push(change);
                }
            }
        }

        // Sizes are judged before the changes are applied.
        for (section, t) in &touched {
            if let Err(reason) = limits::check_document(t.stored_bytes, &t.doc, &t.new) {
                let refuse = |c: &Change| Refusal {
                    section: section.clone(),
                    hash: c.hash().to_string(),
                    rule: None,
                    reason: reason.clone(),
                };
                over_limits.extend(t.new.iter().map(refuse));
            }
        }
        if !over_limits.is_empty() {
            store.record_refusals(&request.project, &device.id, &over_limits, now_ms)?;
            return Err(HubError::Refused(over_limits));
        }

        let mut refusals = Vec::new();
        for (section, t) in &mut touched {
            let malformed = |what: String| HubError::Malformed(format!("section {section}: {what}"));
            t.doc
                .apply_changes(t.new.clone())
                .map_err(|e| malformed(format!("the changes do not apply ({e}); they cannot be stored")))?;
            let missing = t.doc.automerge().get_missing_deps(&[]);
            if !missing.is_empty() {
                let list: Vec<String> = missing.iter().map(ToString::to_string).collect();
                return Err(malformed(format!(
                    "changes depend on {} which the server does not have; upload them in the same or an earlier round",
                    list.join(", ")
                )));
            }
            t.doc
                .check_section()
                .map_err(|e| malformed(format!("{e}; only FieldSync section documents are synced")))?;
            if t.doc.id() != *section {
                return Err(malformed(format!(
                    "the document's id is `{}`, not the section it was sent as",
                    t.doc.id()
                )));
            }
            if t.doc.project() != request.project {
                return Err(HubError::Forbidden(format!(
                    "section {section} belongs to project `{}`, not `{}`",
                    t.doc.project(),
                    request.project
                )));
            }
            for change in &t.new {
                if let Err(reason) = check_structure(&t.doc, change, t.is_new) {
                    refusals.push(Refusal {
                        section: section.clone(),
                        hash: change.hash().to_string(),
                        rule: None,
                        reason,
                    });
                }
            }
            // The rules over the merge judge the new writes like every other
            // replica will. A write they reject is stored and shown as a
            // rejection (nothing a crew recorded is lost, and a device on a
            // stale roster is never stuck); only what an honest client never
            // writes is refused.
            let judging = Instant::now();
            let input = input_of(&t.doc, &t.received);
            let validated = validate(&input, roster, config);
            resolution += judging.elapsed();
            let new: HashSet<String> = t.new.iter().map(|c| c.hash().to_string()).collect();
            for edit in input.edits.iter().filter(|e| new.contains(&e.change_hash)) {
                if let Some(Decision::Rejected { rule, reason, .. }) = validated.decisions.get(&edit.id)
                    && rule.is_attack()
                {
                    refusals.push(Refusal {
                        section: section.clone(),
                        hash: edit.change_hash.clone(),
                        rule: Some(rule.as_str().to_owned()),
                        reason: reason.clone(),
                    });
                }
            }
            t.validated = Some(validated);
        }
        if !touched.is_empty() {
            self.metrics.phase(Phase::Detection, started.elapsed().saturating_sub(resolution));
            self.metrics.phase(Phase::Resolution, resolution);
        }
        if !refusals.is_empty() {
            store.record_refusals(&request.project, &device.id, &refusals, now_ms)?;
            return Err(HubError::Refused(refusals));
        }
        Ok((touched, received))
    }

    /// Whole documents after `after`, up to `budget` bytes. Returns where the
    /// feed is to continue (None: more documents remain) and the bytes used.
    fn bootstrap(
        &self,
        store: &mut dyn HubStore,
        project: &str,
        seq: u64,
        mut after: String,
        budget: usize,
        response: &mut SyncResponse,
    ) -> Result<(Option<u64>, usize), HubError> {
        let mut used = 0;
        loop {
            let ids = store.sections_after(project, &after, BOOTSTRAP_BATCH)?;
            if ids.is_empty() {
                return Ok((Some(seq), used));
            }
            for id in ids {
                let Some(s) = store.section(&id)? else { continue };
                let document = match (s.snapshot, s.changes.is_empty()) {
                    (Some(snapshot), true) => snapshot,
                    (snapshot, _) => {
                        let saved = SectionDoc::from_parts(snapshot.as_deref(), &s.changes)
                            .map_err(|e| {
                                HubError::Storage(StoreError::Io(std::io::Error::other(format!(
                                    "stored section {id} unreadable: {e}"
                                ))))
                            })?
                            .save();
                        // The next device to bootstrap takes it as it is.
                        store.put_snapshot(&id, &saved, s.last_seq)?;
                        saved
                    }
                };
                if !response.documents.is_empty() && used + document.len() > budget {
                    response.cursor = Cursor::Bootstrap { seq, after }.to_string();
                    response.more = true;
                    return Ok((None, used));
                }
                used += document.len();
                // In the order of the changes' hashes, as the device finds them in the document.
                let received = s.received.values().copied().collect();
                response.documents.push(SectionDocument { section: id.clone(), document, received });
                after = id;
            }
        }
    }

    /// Feed rows after `after` from other devices, up to `budget` bytes
    /// (at least one if `at_least_one`), grouped by section in feed order.
    #[allow(clippy::too_many_arguments)]
    fn changes(
        &self,
        store: &mut dyn HubStore,
        project: &str,
        device: &str,
        after: u64,
        budget: usize,
        at_least_one: bool,
        response: &mut SyncResponse,
    ) -> Result<(), HubError> {
        // The feed's end is read before the page: a round committed by another
        // process in between lands after it, so the cursor never skips it.
        let max = store.feed_max(project)?;
        let mut page = store.feed_page(project, after, device, budget)?;
        if !at_least_one && page.rows.first().is_some_and(|r| r.bytes.len() > budget) {
            page.rows.clear();
            page.more = true;
        }
        let last = page.rows.last().map_or(after, |r| r.seq);
        response.more = page.more;
        response.cursor = if page.more { Cursor::Changes(last) } else { Cursor::Changes(max.max(last)) }.to_string();
        let mut order: Vec<String> = Vec::new();
        let mut by_section: HashMap<String, SectionBatch> = HashMap::new();
        for row in page.rows {
            let batch = by_section.entry(row.section.clone()).or_insert_with(|| {
                order.push(row.section.clone());
                SectionBatch { section: row.section, changes: Vec::new(), received: Vec::new() }
            });
            batch.changes.push(row.bytes);
            batch.received.push(row.received_ms);
        }
        response.changes.extend(order.iter().filter_map(|section| by_section.remove(section)));
        Ok(())
    }

    // ---- admin ----

    /// Create a project.
    pub fn create_project(&self, id: &str, config: ProjectConfig) -> Result<(), HubError> {
        if id.is_empty() || id.trim() != id {
            return Err(HubError::Malformed(format!("`{id}` is not a usable project id")));
        }
        if id.len() > limits::MAX_PROJECT_ID_BYTES {
            return Err(HubError::Malformed(format!(
                "a project id is at most {} bytes; this one is {}",
                limits::MAX_PROJECT_ID_BYTES,
                id.len()
            )));
        }
        if !self.store()?.create_project(id, &config)? {
            return Err(HubError::AlreadyExists(format!("project `{id}` exists already")));
        }
        Ok(())
    }

    /// Replace a project's rule configuration (every view is recomputed).
    pub fn set_config(&self, project: &str, config: ProjectConfig) -> Result<(), HubError> {
        let turn = self.turn(project);
        let _turn = turn.lock().unwrap_or_else(|p| p.into_inner());
        let mut store = self.store()?;
        if !store.set_config(project, &config)? {
            return Err(HubError::UnknownProject(project.to_owned()));
        }
        revalidate(&mut *store, project)
    }

    /// Make `user` a member of `project` with `role` (or change their role), from now on.
    pub fn add_member(&self, project: &str, user: &str, role: Role) -> Result<(), HubError> {
        self.add_member_at(project, user, role, fieldsync_core::wall_clock_ms())
    }

    /// Make `user` a member of `project` with `role` from `now_ms` (server
    /// time) on: their earlier writes keep the role they were made under.
    pub fn add_member_at(&self, project: &str, user: &str, role: Role, now_ms: u64) -> Result<(), HubError> {
        if user.is_empty() {
            return Err(HubError::Malformed("a member needs a user name".into()));
        }
        if self.store()?.project(project)?.is_none() {
            return Err(HubError::UnknownProject(project.to_owned()));
        }
        // The turn before a store, as rounds take them (a pool of one would deadlock otherwise).
        let turn = self.turn(project);
        let _turn = turn.lock().unwrap_or_else(|p| p.into_inner());
        let mut store = self.store()?;
        store.put_member(project, user, role, now_ms)?;
        revalidate(&mut *store, project)
    }

    /// Remove `user` from `project`: their devices can no longer sync it.
    pub fn remove_member(&self, project: &str, user: &str) -> Result<(), HubError> {
        self.remove_member_at(project, user, fieldsync_core::wall_clock_ms())
    }

    /// Remove `user` from `project` at `now_ms` (server time): their earlier
    /// writes keep the role they were made under, later ones count for nothing.
    pub fn remove_member_at(&self, project: &str, user: &str, now_ms: u64) -> Result<(), HubError> {
        if self.store()?.project(project)?.is_none() {
            return Err(HubError::UnknownProject(project.to_owned()));
        }
        // The turn before a store, as rounds take them (a pool of one would deadlock otherwise).
        let turn = self.turn(project);
        let _turn = turn.lock().unwrap_or_else(|p| p.into_inner());
        let mut store = self.store()?;
        store.remove_member(project, user, now_ms)?;
        revalidate(&mut *store, project)
    }

    /// Enroll a device for `user`; the token in the answer is shown only once.
    pub fn enroll_device(&self, user: &str, device_name: &str) -> Result<Enrollment, HubError> {
        if user.is_empty() {
            return Err(HubError::Malformed("a device needs a user".into()));
        }
        let token = random_hex(32);
        let device = DeviceRecord {
            id: random_hex(16),
            user: user.to_owned(),
            name: device_name.to_owned(),
            created_ms: crate::now_ms(),
            revoked_ms: None,
        };
        self.store()?.create_device(&device, &token_hash(&token))?;
        Ok(Enrollment { device_id: device.id, token })
    }

    /// Revoke a device: its token stops working at once. Its past changes stay.
    pub fn revoke_device(&self, device_id: &str) -> Result<(), HubError> {
        if !self.store()?.revoke_device(device_id, crate::now_ms())? {
            return Err(HubError::UnknownDevice(device_id.to_owned()));
        }
        let _ = self.revoked.send(device_id.to_owned()); // No receiver: no live channel open.
        Ok(())
    }

    /// Every project with its members.
    pub fn list_projects(&self) -> Result<Vec<ProjectSummary>, HubError> {
        Ok(self.store()?.list_projects()?)
    }

    /// Every device with its actors.
    pub fn list_devices(&self) -> Result<Vec<DeviceSummary>, HubError> {
        Ok(self.store()?.list_devices()?)
    }

    /// The server's validated view of a section.
    pub fn section_view(&self, section: &str) -> Result<Option<SectionView>, HubError> {
        match self.store()?.section_view(section)? {
            Some(json) => Ok(Some(serde_json::from_str(&json).map_err(StoreError::from)?)),
            None => Ok(None),
        }
    }

    /// The server's conflict records of a project (the audit of rule decisions).
    pub fn conflicts(&self, project: &str) -> Result<Vec<ConflictRecord>, HubError> {
        let rows = self.store()?.conflicts(project)?;
        rows.iter().map(|j| Ok(serde_json::from_str(j).map_err(StoreError::from)?)).collect()
    }

    /// The project's current roster (actor → user → role).
    pub fn roster(&self, project: &str) -> Result<Vec<Member>, HubError> {
        Ok(self.store()?.roster(project)?)
    }
}

/// Check that a change only adds to a section document the way FieldSync
/// writes do: new edit records and photos (new keys, never over an existing
/// one), notes text, and the root only in the first change of a new section.
/// The rules take a record's author from the op that created it, so a change
/// that rewrote the fields of someone else's record would pass as theirs.
fn check_structure(doc: &SectionDoc, change: &Change, section_is_new: bool) -> Result<(), String> {
    use automerge::legacy::{ObjectId, OpId, OpType};
    let am = doc.automerge();
    let id_of = |key: &str| match am.get(automerge::ROOT, key) {
        Ok(Some((automerge::Value::Object(_), automerge::ObjId::Id(counter, actor, _)))) => Some((counter, actor)),
        _ => None,
    };
    let (edits, notes, photos) = (id_of("edits"), id_of("notes"), id_of("photos"));
    // Some malformed changes make Automerge panic here (see `SectionDoc::apply_changes`).
    let expanded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| change.decode()))
        .map_err(|_| "the change's operations cannot be read; it cannot be stored".to_owned())?;
    let start = expanded.start_op.get();
    let end = start + expanded.operations.len() as u64;
    let actor = &expanded.actor_id;
    for op in &expanded.operations {
        let ObjectId::Id(OpId(counter, obj_actor)) = &op.obj else {
            if section_is_new && change.deps().is_empty() {
                continue;
            }
            return Err("writes the document's root after its creation; only new records may be added".into());
        };
        let obj = Some((*counter, obj_actor.clone()));
        let made_here = obj_actor == actor && (start..end).contains(counter);
        if made_here || obj == notes {
            continue;
        }
        if obj == edits || obj == photos {
            if matches!(op.action, OpType::Make(automerge::ObjType::Map)) && op.pred.is_empty() && !op.insert {
                continue;
            }
            return Err("replaces or deletes an existing record; records are only ever added".into());
        }
        return Err("changes a record written earlier; a record is never rewritten, write a new one".into());
    }
    Ok(())
}

fn authenticate(store: &mut dyn HubStore, token: &str) -> Result<DeviceRecord, HubError> {
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

/// Recompute every section view and conflict set of a project (after its
/// roster or config changed), one document at a time.
fn revalidate(store: &mut dyn HubStore, project: &str) -> Result<(), HubError> {
    let Some(record) = store.project(project)? else { return Ok(()) };
    let roster = roster_of(store, project, None)?;
    let mut after = String::new();
    loop {
        let ids = store.sections_after(project, &after, BOOTSTRAP_BATCH)?;
        let Some(last) = ids.last().cloned() else { return Ok(()) };
        for id in ids {
            let Some(s) = store.section(&id)? else { continue };
            let Ok(doc) = SectionDoc::from_parts(s.snapshot.as_deref(), &s.changes) else { continue };
            let validated = validate(&input_of(&doc, &s.received), &roster, &record.config);
            let conflicts = validated
                .conflicts
                .iter()
                .map(|c| Ok((c.id.clone(), serde_json::to_string(c)?)))
                .collect::<Result<Vec<_>, serde_json::Error>>()
                .map_err(StoreError::from)?;
            let view = serde_json::to_string(&validated.view).map_err(StoreError::from)?;
            store.put_view(&id, &view, &conflicts)?;
        }
        after = last;
    }
}
