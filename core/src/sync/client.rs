//! The sync runtime: drives rounds over a [`Transport`] and commits them in
//! the replica, and runs [`SyncEngine`] on a background thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::domain::hlc::wall_clock_ms;
use crate::replica::{ChangeFeed, Replica, ReplicaError};
use crate::sync::activity::{SyncPhase, SyncProgress};
use crate::sync::credentials::{CredentialsConnector, CredentialsError, DeviceToken, Renewal};
use crate::sync::engine::{SyncAction, SyncConfig, SyncEngine, SyncEvent};
use crate::sync::merge::Reconciliation;
use crate::sync::photo_wire::PhotoTransport;
use crate::sync::protocol::{self, ProtocolError, SyncResponse};
use crate::sync::status::{RoundFigures, SyncProblem, SyncStatus};
use crate::sync::transport::{Transport, TransportError};

mod photo_lane;
pub use photo_lane::{FullSizePhotos, MIN_PHOTO_CHUNK_BYTES, PHOTO_CORRUPT, PHOTO_UNREFERENCED};

/// Bytes of changes (uncompressed) one request uploads at most, and one
/// response may carry, unless set otherwise: a day's work of a crew (4,000
/// changes, about 1 MB) goes in one round trip, about 250 KB deflated, a few
/// seconds on a poor mobile link; a cut costs at most that one page.
pub const DEFAULT_BUDGET: usize = 1024 * 1024;

/// Rounds one sync may take before it gives up (a server that keeps saying
/// "more" without progress must not spin a phone's battery flat).
const MAX_ROUNDS: u32 = 10_000;

/// Why a sync failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The round trip failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The local store failed.
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    /// The server's answer could not be read.
    #[error("unreadable response: {0}")]
    Protocol(#[from] ProtocolError),
    /// The round limit was reached.
    #[error("sync did not finish within {0} rounds; it will go on next time")]
    TooManyRounds(u32),
    /// The server refused the token and the app's connector gave no fresh one.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// Photo bytes were to travel, and the client was made without a way to
    /// carry them ([`SyncClient::with_photos`]).
    #[error("this sync client carries no photos; give it a photo transport")]
    NoPhotoTransport,
    /// The app cancelled the sync ([`SyncClient::cancel`]): every round
    /// answered before is committed, the rest waits for the next sync.
    #[error("the sync was cancelled; what was answered is kept, the rest goes next time")]
    Cancelled,
}

impl SyncError {
    /// What this failure needs.
    pub fn problem(&self) -> SyncProblem {
        match self {
            SyncError::Transport(TransportError::Server { status: 401 | 403, .. }) => SyncProblem::NotAuthorized,
            SyncError::Transport(TransportError::Server { status: 404, .. }) => SyncProblem::NotFound,
            SyncError::Transport(TransportError::Server { status: 426, .. }) => SyncProblem::UpdateRequired,
            SyncError::Transport(t) if t.retryable() => SyncProblem::Offline,
            SyncError::Transport(_) => SyncProblem::Rejected,
            SyncError::Protocol(_) | SyncError::TooManyRounds(_) => SyncProblem::Offline,
            SyncError::Credentials(CredentialsError::Unavailable(_)) => SyncProblem::Offline,
            SyncError::Credentials(_) => SyncProblem::NotAuthorized,
            SyncError::Replica(_) => SyncProblem::Storage,
            SyncError::NoPhotoTransport => SyncProblem::Rejected,
            SyncError::Cancelled => SyncProblem::Offline,
        }
    }

    /// Whether trying again later may help.
    pub fn retryable(&self) -> bool {
        match self {
            SyncError::Transport(t) => t.retryable(),
            SyncError::Protocol(_) | SyncError::TooManyRounds(_) | SyncError::Cancelled => true,
            SyncError::Credentials(e) => matches!(e, CredentialsError::Unavailable(_)),
            SyncError::Replica(_) | SyncError::NoPhotoTransport => false,
        }
    }

    /// How long the server asked us to wait before the next round, in ms
    /// (`429 Too Many Requests` or `503` with `Retry-After`).
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            SyncError::Transport(t) => t.retry_after_ms(),
            _ => None,
        }
    }

    /// The event that tells [`SyncEngine`] of this failure.
    pub fn event(&self) -> SyncEvent {
        match self.retry_after_ms() {
            Some(retry_after_ms) => SyncEvent::RoundThrottled { retry_after_ms },
            None => SyncEvent::RoundFailed { retryable: self.retryable() },
        }
    }
}

/// What a sync did, summed over its rounds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncReport {
    /// Round trips made.
    pub rounds: u32,
    /// Request bytes on the wire.
    pub bytes_sent: u64,
    /// Response bytes on the wire.
    pub bytes_received: u64,
    /// Our changes the server confirmed.
    pub confirmed: usize,
    /// Our changes the server refused (kept locally, not re-sent).
    pub refused: usize,
    /// Changes that were new here.
    pub new_changes: usize,
    /// Whole documents received (first sync of a new device).
    pub documents: usize,
    /// Sections whose view changed.
    pub sections_changed: Vec<String>,
    /// What became of our unconfirmed writes (the latest word on each).
    pub reconciliation: Vec<Reconciliation>,
    /// Photos of ours (full size) the server now has in full.
    #[serde(default)]
    pub photos_sent: usize,
    /// Photo bytes sent (chunk bodies).
    #[serde(default)]
    pub photo_bytes_sent: u64,
    /// Other devices' thumbnails fetched.
    #[serde(default)]
    pub thumbnails_fetched: usize,
    /// Photo bytes received (thumbnails).
    #[serde(default)]
    pub photo_bytes_received: u64,
}

/// Drives sync rounds for one replica over one transport.
pub struct SyncClient {
    replica: Arc<Mutex<Replica>>,
    /// The replica's change feed, flushed each time the client lets go of the replica.
    feed: ChangeFeed,
    transport: Arc<dyn Transport>,
    /// The token cell and the app's connector, when a refused token may be renewed.
    renewal: Option<Renewal>,
    /// Bytes of changes one request uploads at most.
    pub upload_budget: usize,
    /// Bytes of changes one response may carry.
    pub response_budget: u32,
    /// How photo bytes travel, if they do ([`SyncClient::with_photos`]).
    photos: Option<Arc<dyn PhotoTransport>>,
    /// The photo lane's first chunk (and every chunk, without `photo_chunk_time`).
    pub photo_chunk_bytes: usize,
    /// Size each next photo chunk to take about this long on the link the
    /// last one measured, so an edit waits at most about this long; `None`:
    /// every chunk is `photo_chunk_bytes`.
    pub photo_chunk_time: Option<Duration>,
    /// When this device's full-size photos go up (thumbnails always go).
    pub full_size_photos: FullSizePhotos,
    /// Whether the app says the link is metered now ([`SyncClient::set_metered`]).
    metered: AtomicBool,
    /// Bytes of full-size photos this device keeps once the server has them
    /// (others' fetched here, its own sent); the least recently used go first.
    pub photo_budget_bytes: u64,
    /// Whether thumbnails may be missing here with nothing new to say so
    /// (the first sync of this client, one the server lacked, a failure).
    thumbnails_left: AtomicBool,
    /// Set by [`SyncClient::cancel`], looked at before each round and chunk.
    cancelled: AtomicBool,
}

/// The default storage budget for full-size photos the server has.
pub const DEFAULT_PHOTO_BUDGET: u64 = 512 * 1024 * 1024;

/// The photo lane's first chunk: 2 s on a 2G link of 64 kbit/s.
pub const DEFAULT_PHOTO_CHUNK: usize = 16 * 1024;
/// About how long a photo chunk may hold the link (an edit waits at most that).
pub const DEFAULT_PHOTO_CHUNK_TIME: Duration = Duration::from_secs(2);

impl SyncClient {
    /// A client syncing `replica` through `transport`.
    pub fn new(replica: Arc<Mutex<Replica>>, transport: Arc<dyn Transport>) -> Self {
        let feed = replica.lock().unwrap_or_else(|p| p.into_inner()).change_feed();
        SyncClient {
            replica,
            feed,
            transport,
            renewal: None,
            upload_budget: DEFAULT_BUDGET,
            response_budget: DEFAULT_BUDGET as u32,
            photos: None,
            photo_chunk_bytes: DEFAULT_PHOTO_CHUNK,
            photo_chunk_time: Some(DEFAULT_PHOTO_CHUNK_TIME),
            full_size_photos: FullSizePhotos::Always,
            metered: AtomicBool::new(false),
            photo_budget_bytes: DEFAULT_PHOTO_BUDGET,
            thumbnails_left: AtomicBool::new(true),
            cancelled: AtomicBool::new(false),
        }
    }

    /// The app's word on the link: metered (mobile data) or not (Wi-Fi).
    /// With [`FullSizePhotos::OnUnmeteredLinks`], full sizes wait for an
    /// unmetered link; thumbnails go either way.
    pub fn set_metered(&self, metered: bool) {
        self.metered.store(metered, Ordering::Relaxed);
    }

    /// Stop the sync (or photo fetch) in flight at its next step: before its
    /// next round or photo chunk, from any thread (a cancelled coroutine or
    /// task). It returns [`SyncError::Cancelled`]; every round answered
    /// before is committed, and the request on the wire finishes first (its
    /// answer is committed too, so nothing is sent twice). A sync that
    /// starts afterwards runs as usual.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }

    /// [`SyncError::Cancelled`] if the app cancelled.
    fn go_on(&self) -> Result<(), SyncError> {
        if self.cancelled.load(Ordering::SeqCst) { Err(SyncError::Cancelled) } else { Ok(()) }
    }

    /// Carry photo bytes through `photos` (the built-in `HttpTransport` is
    /// one): each sync then sends this device's photos after its edits
    /// (`photo_lane.rs`), and [`SyncClient::fetch_photo`] fetches others'.
    pub fn with_photos(mut self, photos: Arc<dyn PhotoTransport>) -> Self {
        self.photos = Some(photos);
        self
    }

    /// Renew the token on a `401`: `token` is the cell the transport reads
    /// (`HttpTransport::new(server, token.clone(), …)`), `connector` the app's.
    /// Each sync asks the connector at most once, then runs the refused round
    /// again; a second `401` fails the sync (`SyncProblem::NotAuthorized`).
    pub fn with_credentials(mut self, token: DeviceToken, connector: Arc<dyn CredentialsConnector>) -> Self {
        self.renewal = Some(Renewal { token, connector, turn: Default::default() });
        self
    }

    fn lock(&self) -> MutexGuard<'_, Replica> {
        // A panic elsewhere must not make the store unusable: its state is in SQLite.
        self.replica.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sync every project of the replica until nothing is left either way.
    pub fn sync_now(&self) -> Result<SyncReport, SyncError> {
        self.sync_with_progress(&mut |_| {})
    }

    /// Like [`Self::sync_now`], calling `progress` with the running totals
    /// after each committed round (documents and bytes so far).
    ///
    /// The replica's sync activity follows the sync: connecting until the
    /// first answer, then syncing with the totals so far after each round,
    /// then idle; each step is published on its change feed, which is
    /// flushed each time the client lets go of the replica.
    pub fn sync_with_progress(&self, progress: &mut dyn FnMut(&SyncReport)) -> Result<SyncReport, SyncError> {
        self.cancelled.store(false, Ordering::SeqCst);
        let outcome = self.sync_projects(progress);
        self.lock().set_sync_phase(SyncPhase::Idle);
        self.feed.flush();
        outcome
    }

    fn sync_projects(&self, progress: &mut dyn FnMut(&SyncReport)) -> Result<SyncReport, SyncError> {
        let (projects, to_upload) = {
            let mut replica = self.lock();
            replica.set_sync_phase(SyncPhase::Connecting);
            (replica.projects()?, replica.outbox_stats()?.0 as u64)
        };
        self.feed.flush();
        let mut report = SyncReport::default();
        for project in &projects {
            self.sync_project(project, &mut report, to_upload, progress)?;
        }
        if let Some(photos) = &self.photos {
            self.send_photos(photos, &projects, &mut report, to_upload, progress)?;
        }
        Ok(report)
    }

    fn sync_project(
        &self,
        project: &str,
        report: &mut SyncReport,
        to_upload: u64,
        progress: &mut dyn FnMut(&SyncReport),
    ) -> Result<(), SyncError> {
        let mut cursor_reset = false;
        let mut renewed = false;
        for _ in 0..MAX_ROUNDS {
            self.go_on()?;
            let used = self.renewal.as_ref().map(|r| r.token.get());
            let go_on = match self.round(project, report, to_upload) {
                Ok(go_on) => go_on,
                // The token expired (or was replaced): a fresh one from the app, once per sync.
                Err(SyncError::Transport(TransportError::Server { status: 401, body }))
                    if !renewed && self.renewal.is_some() =>
                {
                    renewed = true;
                    tracing::info!(
                        project,
                        reason = body.error,
                        "the server refused the token; asking for a fresh one"
                    );
                    let renewal = self.renewal.as_ref().expect("checked above");
                    if let Err(e) = renewal.renew(used.as_deref().unwrap_or_default()) {
                        return Err(self.failed(project, e.into()));
                    }
                    true
                }
                // The server does not know our cursor (its data was restored or
                // replaced): start over from an empty cursor, once. What arrives
                // again is deduplicated by hash.
                Err(SyncError::Transport(TransportError::Server { status: 400, body }))
                    if body.error == protocol::UNKNOWN_CURSOR && !cursor_reset =>
                {
                    cursor_reset = true;
                    tracing::warn!(project, "the server does not know our cursor; starting the feed over");
                    self.lock().reset_cursor(project)?;
                    true
                }
                Err(e) => return Err(self.failed(project, e)),
            };
            self.feed.flush();
            progress(report);
            if !go_on {
                return Ok(());
            }
        }
        Err(SyncError::TooManyRounds(MAX_ROUNDS))
    }

    /// A failed sync of `project`, recorded in its status.
    fn failed(&self, project: &str, e: SyncError) -> SyncError {
        tracing::warn!(project, problem = e.problem().as_str(), "sync failed: {e}");
        match self.lock().record_sync_error(project, &e.to_string(), e.problem()) {
            Ok(()) => e,
            Err(stored) => stored.into(),
        }
    }

    /// One round trip; returns whether another round is needed.
    fn round(&self, project: &str, report: &mut SyncReport, to_upload: u64) -> Result<bool, SyncError> {
        let prepared = self.lock().prepare_round(project, self.upload_budget, self.response_budget)?;
        let body = protocol::encode(&prepared.request);
        report.rounds += 1;
        report.bytes_sent += body.len() as u64;
        let mut figures = RoundFigures { bytes_sent: body.len() as u64, ..RoundFigures::default() };
        let started = Instant::now();
        let mut more_to_download = false;
        // The replica is not locked while the request travels: the app keeps editing.
        let go_on = match self.transport.round_trip(body) {
            Ok(bytes) => {
                report.bytes_received += bytes.len() as u64;
                figures.bytes_received = bytes.len() as u64;
                let response: SyncResponse = protocol::decode(&bytes)?;
                report.documents += response.documents.len();
                let round = self.lock().commit_round(project, &prepared.sent, response)?;
                report.confirmed += round.confirmed;
                report.new_changes += round.merge.new_changes;
                for s in round.merge.sections_changed {
                    if !report.sections_changed.contains(&s) {
                        report.sections_changed.push(s);
                    }
                }
                for r in round.merge.reconciliation {
                    report.reconciliation.retain(|old| old.edit_id != r.edit_id);
                    report.reconciliation.push(r);
                }
                more_to_download = round.more;
                round.more || prepared.more_to_send
            }
            Err(TransportError::Server { status: 422, body }) if !body.refusals.is_empty() => {
                // Keep the refused changes (and what builds on them), stop sending them, go again.
                let (marked, settled) = self.lock().mark_refused(&body.refusals)?;
                for r in &body.refusals {
                    tracing::warn!(
                        section = r.section,
                        change = r.hash,
                        "the server refused a change (kept here): {}",
                        r.reason
                    );
                }
                report.refused += marked;
                report.reconciliation.extend(settled);
                true
            }
            Err(e) => return Err(e.into()),
        };
        figures.latency_ms = started.elapsed().as_millis() as u64;
        figures.at_ms = wall_clock_ms() as i64;
        tracing::debug!(
            project,
            latency_ms = figures.latency_ms,
            bytes_sent = figures.bytes_sent,
            bytes_received = figures.bytes_received,
            "sync round"
        );
        let progress = SyncProgress {
            rounds: report.rounds,
            uploaded: (report.confirmed + report.refused) as u64,
            // Edits made during the sync go up with it too.
            to_upload: to_upload.max((report.confirmed + report.refused) as u64),
            downloaded_changes: report.new_changes as u64,
            downloaded_documents: report.documents as u64,
            downloaded_bytes: report.bytes_received,
            more_to_download,
        };
        let mut replica = self.lock();
        replica.record_round(figures)?;
        replica.set_sync_phase(SyncPhase::Syncing(progress));
        Ok(go_on)
    }

    /// Fold the loose changes of up to `sections` sections that have more
    /// than `threshold` of them into snapshots, taking the replica's lock for
    /// one section at a time so the app's own calls go on in between.
    /// Returns how many were compacted.
    pub fn compact(&self, threshold: usize, sections: usize) -> Result<usize, ReplicaError> {
        let mut done = 0;
        while done < sections && self.lock().compact(threshold, 1)? == 1 {
            done += 1;
        }
        Ok(done)
    }

    /// The status the app shows.
    pub fn status(&self) -> Result<SyncStatus, SyncError> {
        Ok(self.lock().sync_status()?)
    }
}

/// What background sync tells its listener.
#[derive(Debug)]
pub enum SyncUpdate {
    /// A sync finished.
    Synced(SyncReport),
    /// A sync failed; background sync retries with backoff if it may help.
    Failed {
        /// What went wrong.
        error: String,
        /// Whether it will retry by itself.
        retrying: bool,
    },
}

/// Background sync compacts a section once it has more loose changes than
/// this (each document load reads them all)...
pub const COMPACT_THRESHOLD: usize = 64;
/// ...and at most this many sections after each sync, so a long backlog is
/// folded a bit at a time.
pub const COMPACT_SECTIONS: usize = 16;

/// Background sync: a thread running [`SyncEngine`] over a [`SyncClient`];
/// after each successful sync it also compacts (see [`COMPACT_THRESHOLD`]).
/// Stops when dropped.
pub struct BackgroundSync {
    events: mpsc::Sender<Option<SyncEvent>>,
    online: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// A cloneable handle that sends events to a [`BackgroundSync`] from other
/// threads (the live channel's callback, the app's connectivity listener).
/// Events sent after background sync stopped are ignored.
#[derive(Debug, Clone)]
pub struct SyncNotifier {
    events: mpsc::Sender<Option<SyncEvent>>,
}

impl SyncNotifier {
    /// Tell background sync about something (see [`BackgroundSync::notify`]).
    pub fn notify(&self, event: SyncEvent) {
        let _ = self.events.send(Some(event));
    }
}

impl BackgroundSync {
    /// Start syncing in the background; `listener` hears of each sync.
    pub fn start(client: Arc<SyncClient>, config: SyncConfig, listener: Box<dyn Fn(SyncUpdate) + Send>) -> Self {
        let (events, rx) = mpsc::channel();
        let online = Arc::new(AtomicBool::new(true));
        let online_flag = online.clone();
        let thread = std::thread::Builder::new()
            .name("fieldsync-sync".into())
            .spawn(move || {
                let mut engine = SyncEngine::new(config);
                // Jitter only: the OS's randomness, or none if it has none to give.
                let random = || getrandom::u64().unwrap_or(0);
                let mut wake_at: Option<u64> = None;
                let mut event = Some(SyncEvent::Started);
                loop {
                    if let Some(e) = event.take() {
                        for action in engine.handle(e, wall_clock_ms(), random()) {
                            match action {
                                SyncAction::WakeAt(t) => wake_at = Some(t),
                                SyncAction::StartRound => {
                                    let outcome = client.sync_now();
                                    if outcome.is_ok() {
                                        // A good moment to tidy up: what was sent is confirmed
                                        // now, so compaction can drop its rows. A failure here
                                        // is retried after the next sync.
                                        let _ = client.compact(COMPACT_THRESHOLD, COMPACT_SECTIONS);
                                    }
                                    event = Some(match &outcome {
                                        Ok(_) => SyncEvent::RoundDone { more: false },
                                        Err(e) => e.event(),
                                    });
                                    listener(match outcome {
                                        Ok(r) => SyncUpdate::Synced(r),
                                        Err(e) => SyncUpdate::Failed { retrying: e.retryable(), error: e.to_string() },
                                    });
                                }
                            }
                        }
                        online_flag.store(engine.online(), Ordering::Relaxed);
                        if event.is_some() {
                            continue;
                        }
                    }
                    let wait = wake_at.map_or(Duration::from_secs(3600), |t| {
                        Duration::from_millis(t.saturating_sub(wall_clock_ms()))
                    });
                    match rx.recv_timeout(wait) {
                        Ok(Some(e)) => event = Some(e),
                        Ok(None) => return, // Stop.
                        Err(RecvTimeoutError::Timeout) => {
                            wake_at = None;
                            event = Some(SyncEvent::Timer);
                        }
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            })
            .expect("the OS can start a thread");
        BackgroundSync { events, online, thread: Some(thread) }
    }

    /// Tell background sync about something: a connectivity hint from the
    /// app, a live notification ([`SyncEvent::Nudge`]), a local edit.
    pub fn notify(&self, event: SyncEvent) {
        let _ = self.events.send(Some(event));
    }

    /// A handle for notifying from other threads, e.g. the live channel:
    /// `let n = bg.notifier(); LiveChannel::connect(url, token, project, move || n.notify(SyncEvent::Nudge))`.
    pub fn notifier(&self) -> SyncNotifier {
        SyncNotifier { events: self.events.clone() }
    }

    /// Whether the last connectivity hint said online.
    pub fn online(&self) -> bool {
        self.online.load(Ordering::Relaxed)
    }

    /// Stop and wait for a running round to finish (it commits or loses nothing).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        // A stop message rather than closing the channel: notifiers may still hold senders.
        let _ = self.events.send(None);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for BackgroundSync {
    fn drop(&mut self) {
        self.shutdown();
    }
}
