//! The sync runtime: drives rounds over a [`Transport`] and commits them in
//! the replica, and runs [`SyncEngine`] on a background thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::domain::device_clock::DeviceClock;
use crate::domain::project::FullSizePhotos;
use crate::replica::{ChangeFeed, Replica, ReplicaError};
use crate::sync::activity::SyncPhase;
use crate::sync::credentials::{CredentialsConnector, DeviceToken, Renewal};
use crate::sync::engine::{SyncAction, SyncConfig, SyncEngine, SyncEvent};
use crate::sync::photo_wire::PhotoTransport;
use crate::sync::run::{AnswerTime, MAX_ROUNDS, RoundLimits, RunStep, SyncRun};
use crate::sync::run::{SyncError, SyncReport};
use crate::sync::status::SyncStatus;
use crate::sync::transport::Transport;

mod photo_lane;
pub use photo_lane::{MIN_PHOTO_CHUNK_BYTES, PHOTO_CORRUPT, PHOTO_UNREFERENCED};

/// Bytes of changes (uncompressed) one request uploads at most, and one
/// response may carry, unless set otherwise: a day's work of a crew (4,000
/// changes, about 1 MB) goes in one round trip, about 250 KB deflated, a few
/// seconds on a poor mobile link; a cut costs at most that one page.
pub const DEFAULT_BUDGET: usize = 1024 * 1024;

/// Drives sync rounds for one replica over one transport.
pub struct SyncClient {
    replica: Arc<Mutex<Replica>>,
    /// The replica's change feed, flushed each time the client lets go of the replica.
    feed: ChangeFeed,
    /// The replica's clocks: the time of each answer, and background sync's timers.
    clock: Arc<dyn DeviceClock>,
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
    /// When this device's full-size photos go up (thumbnails always go); a
    /// project's own policy ([`crate::ProjectConfig::full_size_photos`]) holds too.
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
        let (feed, clock) = {
            let r = replica.lock().unwrap_or_else(|p| p.into_inner());
            (r.change_feed(), r.device_clock())
        };
        SyncClient {
            replica,
            feed,
            clock,
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
    /// With [`FullSizePhotos::OnUnmeteredLinks`] (this device's setting or
    /// its project's), full sizes wait for an unmetered link; thumbnails go
    /// either way.
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

    /// [`SyncError::Cancelled`] if the app cancelled, the client ([`Self::cancel`])
    /// or this sync (`stop`, see [`Self::sync_until`]).
    fn go_on(&self, stop: &AtomicBool) -> Result<(), SyncError> {
        if self.cancelled.load(Ordering::SeqCst) || stop.load(Ordering::SeqCst) {
            Err(SyncError::Cancelled)
        } else {
            Ok(())
        }
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
        self.sync_until(progress, &AtomicBool::new(false))
    }

    /// Like [`Self::sync_with_progress`], stopping with [`SyncError::Cancelled`]
    /// before its next round or photo chunk once `stop` is set, from any
    /// thread. Unlike [`Self::cancel`], which stops what runs when it is
    /// called, `stop` belongs to this sync alone and may be set before the
    /// sync even began (a coroutine cancelled as its blocking call starts):
    /// the sync then sends nothing.
    pub fn sync_until(
        &self,
        progress: &mut dyn FnMut(&SyncReport),
        stop: &AtomicBool,
    ) -> Result<SyncReport, SyncError> {
        self.cancelled.store(false, Ordering::SeqCst);
        let outcome = self.sync_projects(progress, stop);
        self.lock().set_sync_phase(SyncPhase::Idle);
        self.feed.flush();
        outcome
    }

    fn sync_projects(&self, progress: &mut dyn FnMut(&SyncReport), stop: &AtomicBool) -> Result<SyncReport, SyncError> {
        let limits = RoundLimits { upload: self.upload_budget, response: self.response_budget, rounds: MAX_ROUNDS };
        let mut run = SyncRun::start(&mut self.lock(), limits, self.renewal.is_some())?;
        self.feed.flush();
        self.run_rounds(&mut run, progress, stop)?;
        if let Some(photos) = &self.photos
            && let Err(e) = self.send_photos(photos, &mut run, progress, stop)
        {
            return Err(run.failed_after_rounds(&mut self.lock(), e));
        }
        Ok(run.into_report())
    }

    /// Drive `run` until every project is synced: carry its requests, ask
    /// the app's connector when it says so, and pass the time in.
    fn run_rounds(
        &self,
        run: &mut SyncRun,
        progress: &mut dyn FnMut(&SyncReport),
        stop: &AtomicBool,
    ) -> Result<(), SyncError> {
        let mut step = run.next(&mut self.lock())?;
        // The token the last request went with (a renewal replaces only that one).
        let mut used = String::new();
        loop {
            step = match step {
                RunStep::Send { body, round } => {
                    self.go_on(stop)?;
                    used = self.renewal.as_ref().map(|r| r.token.get()).unwrap_or_default();
                    let started = Instant::now();
                    // The replica is not locked while the request travels: the app keeps editing.
                    let answer = self.transport.round_trip(body);
                    let time = AnswerTime { now: self.clock.now(), latency_ms: started.elapsed().as_millis() as u64 };
                    let step = run.answered(&mut self.lock(), round, answer, time)?;
                    self.feed.flush();
                    progress(run.report());
                    step
                }
                RunStep::RenewToken => {
                    let renewal = self.renewal.as_ref().expect("a run renews only when the client can");
                    if let Err(e) = renewal.renew(&used) {
                        return Err(run.failed(&mut self.lock(), e.into()));
                    }
                    run.next(&mut self.lock())?
                }
                RunStep::Done => return Ok(()),
            };
        }
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
                let clock = client.clock.clone();
                loop {
                    if let Some(e) = event.take() {
                        for action in engine.handle(e, clock.now().wall_ms, random()) {
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
                        Duration::from_millis(t.saturating_sub(clock.now().wall_ms))
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
