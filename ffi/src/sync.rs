//! Sync as the app sees it: connect the replica to a server (the built-in
//! HTTPS transport, or the app's own through `AppTransport`), sync now,
//! background sync with connectivity hints, and the status, readable and
//! observable.
//!
//! The wiring, over core's sync client (`core::SyncClient`):
//! - `connect` / `connect_with` register the project (`join_project`) and put
//!   a `core::SyncClient` over the object's own `Arc<Mutex<core::Replica>>`
//!   into the replica's `Syncing` (`syncing.rs`). Connecting again replaces it; a running background
//!   sync goes on over the new transport.
//! - `sync_now` runs `SyncClient::sync_now`. The observers need no telling:
//!   the client flushes core's change feed at each step of the sync (its
//!   activity, each committed round's sections and status, a failure), and
//!   the observers follow the feed.
//! - `start_background_sync` runs `core::BackgroundSync` over the same client
//!   (so its rounds reach the observers the same way); local writes send it
//!   `SyncEvent::LocalEdit` (`Replica::write`), `set_connectivity` sends
//!   `SyncEvent::Connectivity`, is remembered for the next start, and is the
//!   replica's connectivity hint (offline shows in the status's activity).
//! - With a server URL and token (`connect`, not `connect_with`: an app
//!   transport's server is the app's business), background sync also keeps a
//!   `core::LiveChannel` open to the server, whose notifications (and every
//!   reconnection) send `SyncEvent::Nudge` through the background sync's
//!   notifier: another device's edit arrives within a round trip. It lives
//!   in `Background` and stops with it.
//! - `connect_with_credentials` is `connect` whose token lives in a
//!   `core::DeviceToken` shared by the transport and the live channel, and a
//!   client `with_credentials` over the app's connector (`credentials.rs`):
//!   core renews the token on a `401`, once per sync, for `sync_now` and
//!   background sync alike.
//! - The built-in transport also carries photos: `connect` and
//!   `connect_with_credentials` give the client `with_photos` over it;
//!   `connect_with` over the app's `AppPhotoTransport` when given, else the
//!   app transport carries edits only (`photos.rs`, `app_transport.rs`). The
//!   client is built from a `Link` (transports, token renewal) kept in
//!   `Syncing`, with the app's photo settings; changing one builds it again.
//! - Over `connect_with` the live channel is the app's own WebSocket (to
//!   `live_url`); each of its messages calls `server_changed`, which sends
//!   `SyncEvent::Nudge` like the built-in channel does.
//! - Errors go through `FieldSyncError::from` (`CoreError` in `error.rs`).
//!
//! `sync_now` and background sync may overlap: both are safe (the server
//! skips changes it already has, merges are idempotent), only wasteful.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fieldsync_core as core;

use crate::app_transport::{AppPhotoTransport, AppTransport, Foreign, ForeignPhotos};
use crate::credentials::{self, CredentialsConnector};
use crate::error::FieldSyncError;
use crate::merge::Reconciliation;
use crate::observer::{ObserverHandle, SyncStatusObserver, lock};
use crate::replica::Replica;
use crate::status::SyncStatus;
use crate::syncing::{Background, FlushingPhotos, Link, PhotoSettings, Server};

/// What a sync did, summed over its rounds.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct SyncReport {
    /// Round trips made.
    pub rounds: u32,
    /// Request bytes on the wire.
    pub bytes_sent: u64,
    /// Response bytes on the wire.
    pub bytes_received: u64,
    /// Local changes the server confirmed.
    pub confirmed: u64,
    /// Local changes the server refused (kept here, not sent again; see `sync_status`).
    pub refused: u64,
    /// Changes that were new here.
    pub new_changes: u64,
    /// Whole section documents received (the first sync of a new device).
    pub documents: u64,
    /// Sections whose view changed.
    pub sections_changed: Vec<String>,
    /// What became of this device's unconfirmed writes in the sections that
    /// changed: each still stands, or was overridden (by which write, under
    /// which rule, and why, in words for the technician). The latest word on each.
    pub reconciliation: Vec<Reconciliation>,
    /// Photos of this device (full size) the server now has in full.
    pub photos_sent: u64,
    /// Photo bytes sent (thumbnails and full sizes).
    pub photo_bytes_sent: u64,
    /// Other devices' thumbnails fetched.
    pub thumbnails_fetched: u64,
    /// Photo bytes received (thumbnails; `fetch_photo` counts its own).
    pub photo_bytes_received: u64,
}

impl From<core::SyncReport> for SyncReport {
    fn from(r: core::SyncReport) -> Self {
        SyncReport {
            rounds: r.rounds,
            bytes_sent: r.bytes_sent,
            bytes_received: r.bytes_received,
            confirmed: r.confirmed as u64,
            refused: r.refused as u64,
            new_changes: r.new_changes as u64,
            documents: r.documents as u64,
            sections_changed: r.sections_changed,
            reconciliation: r.reconciliation.into_iter().map(Into::into).collect(),
            photos_sent: r.photos_sent as u64,
            photo_bytes_sent: r.photo_bytes_sent,
            thumbnails_fetched: r.thumbnails_fetched as u64,
            photo_bytes_received: r.photo_bytes_received,
        }
    }
}

/// Tuning of background sync. The defaults suit a phone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct SyncConfig {
    /// Sync this often even when nothing happens (catches missed notifications).
    #[uniffi(default = 300000)]
    pub interval_ms: u64,
    /// After a local edit, wait this long for more before syncing.
    #[uniffi(default = 2000)]
    pub edit_debounce_ms: u64,
    /// First retry delay after a failure; doubles per failure (with jitter).
    #[uniffi(default = 1000)]
    pub min_backoff_ms: u64,
    /// Retry delay cap.
    #[uniffi(default = 600000)]
    pub max_backoff_ms: u64,
}

impl From<SyncConfig> for core::SyncConfig {
    fn from(c: SyncConfig) -> Self {
        core::SyncConfig {
            interval_ms: c.interval_ms,
            edit_debounce_ms: c.edit_debounce_ms,
            min_backoff_ms: c.min_backoff_ms,
            max_backoff_ms: c.max_backoff_ms,
        }
    }
}

/// Stops one sync or photo fetch (`sync_now_cancellable`,
/// `fetch_photo_cancellable`) before its next round or chunk, from any
/// thread; made before the call starts, so a cancel is never missed.
/// Cancelling twice, or after the call ended, is harmless.
#[derive(Debug, Default, uniffi::Object)]
pub struct Cancellation(pub(crate) AtomicBool);

#[uniffi::export]
impl Cancellation {
    /// A cancellation not cancelled yet.
    #[uniffi::constructor]
    pub fn new() -> Arc<Self> {
        Arc::new(Cancellation::default())
    }

    /// Stop the call at its next step.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether `cancel` was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

impl Replica {
    /// Sync through `link` from now on, `project` among the projects
    /// synced; `server` for the live channel when known.
    fn attach(&self, link: Link, project: &str, server: Option<Server>) -> Result<(), FieldSyncError> {
        self.read(|r| r.join_project(project))?;
        *lock(&self.sync.link) = Some(link);
        *lock(&self.sync.server) = server;
        self.rebuild_client()
    }

    /// A new client over the link (with the photo settings of now), and
    /// background sync restarted over it if it runs. Nothing if not connected.
    fn rebuild_client(&self) -> Result<(), FieldSyncError> {
        let Some(link) = lock(&self.sync.link).clone() else { return Ok(()) };
        *lock(&self.sync.client) = Some(Arc::new(self.sync.build(&self.inner, link)));
        match self.sync.stop() {
            Some(config) => self.start(config),
            None => Ok(()),
        }
    }

    /// Change the photo settings; a connected client is built again with them.
    pub(crate) fn set_photo_settings(&self, change: impl FnOnce(&mut PhotoSettings)) -> Result<(), FieldSyncError> {
        change(&mut lock(&self.sync.photos));
        self.rebuild_client()
    }

    /// The built-in HTTPS transport to `server_url`, its token renewed by `connector` if given.
    fn connect_http(
        &self,
        server_url: String,
        token: &str,
        project: String,
        timeout_ms: u32,
        connector: Option<Arc<dyn CredentialsConnector>>,
    ) -> Result<(), FieldSyncError> {
        let token = core::DeviceToken::new(token);
        let http = core::HttpTransport::new(&server_url, token.clone(), Duration::from_millis(timeout_ms.into()));
        let http = Arc::new(http.map_err(core::SyncError::from)?);
        let renewal = connector.map(|c| {
            let connector: Arc<dyn core::CredentialsConnector> = Arc::new(credentials::Foreign(c));
            (token.clone(), connector)
        });
        let photos = FlushingPhotos { inner: http.clone(), feed: self.feed.clone() };
        let link = Link { transport: http, photos: Some(Arc::new(photos)), renewal };
        let server = Server { url: server_url, token, project: project.clone() };
        self.attach(link, &project, Some(server))
    }

    /// (Re)start background sync with `config`, and the live channel if there is a server.
    fn start(&self, config: core::SyncConfig) -> Result<(), FieldSyncError> {
        let client = self.sync.client()?;
        self.sync.stop();
        // The observers follow the change feed, which the client flushes: nothing to listen for.
        let sync = core::BackgroundSync::start(client, config, Box::new(|_| {}));
        if self.sync.offline.load(Ordering::Relaxed) {
            sync.notify(core::SyncEvent::Connectivity { online: false });
        }
        let server = lock(&self.sync.server).clone();
        let live = match server {
            Some(Server { url, token, project }) => {
                let nudge = sync.notifier();
                let on_message = move || nudge.notify(core::SyncEvent::Nudge);
                Some(core::LiveChannel::connect(&url, token, &project, on_message)?) // `sync` stops if this fails
            }
            None => None,
        };
        // Another thread may have started one meanwhile: the older stops, outside the lock.
        let older = lock(&self.sync.background).replace(Background { live, sync, config });
        drop(older);
        Ok(())
    }
}

#[uniffi::export]
impl Replica {
    /// Sync `project` (and any project synced before) with the server at
    /// `server_url` (e.g. `https://sync.example.com`), authenticating with the
    /// device's `token`, over the built-in HTTPS transport. Nothing is sent
    /// yet: call `sync_now` or `start_background_sync`.
    #[uniffi::method(default(timeout_ms = 30000))]
    pub fn connect(
        &self,
        server_url: String,
        token: String,
        project: String,
        timeout_ms: u32,
    ) -> Result<(), FieldSyncError> {
        self.connect_http(server_url, &token, project, timeout_ms, None)
    }

    /// Like `connect`, with the token from the app's `connector`: none is
    /// held at first, so the first sync's first round is refused (`401`) and
    /// asks it; so does any later refusal (an expired token), once per sync,
    /// and the refused round runs again with the fresh token. Sync fails
    /// `NotAuthorized` if the fresh token is refused too, or the connector
    /// throws `CredentialsError.Refused`; `Offline` if it throws
    /// `Unavailable` (background sync retries).
    #[uniffi::method(default(timeout_ms = 30000))]
    pub fn connect_with_credentials(
        &self,
        server_url: String,
        connector: Arc<dyn CredentialsConnector>,
        project: String,
        timeout_ms: u32,
    ) -> Result<(), FieldSyncError> {
        self.connect_http(server_url, "", project, timeout_ms, Some(connector))
    }

    /// Like `connect`, with rounds sent through the app's own transport, and
    /// photo bytes through `photos` if given (else photos stay on this
    /// device, `OnThisDeviceOnly`, and `fetch_photo` fails `InvalidInput`).
    /// The live channel is the app's too: open a WebSocket to `live_url`
    /// with the token and call `server_changed` on each message.
    #[uniffi::method(default(photos = None))]
    pub fn connect_with(
        &self,
        transport: Arc<dyn AppTransport>,
        project: String,
        photos: Option<Arc<dyn AppPhotoTransport>>,
    ) -> Result<(), FieldSyncError> {
        let photos = photos.map(|p| -> Arc<dyn core::PhotoTransport> {
            Arc::new(FlushingPhotos { inner: Arc::new(ForeignPhotos(p)), feed: self.feed.clone() })
        });
        let link = Link { transport: Arc::new(Foreign(transport)), photos, renewal: None };
        self.attach(link, &project, None)
    }

    /// The app's own live channel (over `connect_with`) said something is
    /// new on the server: background sync runs a round at once (and on a
    /// reconnection, as something may have happened while it was down).
    /// Harmless when background sync does not run.
    pub fn server_changed(&self) {
        self.sync.notify(core::SyncEvent::Nudge);
    }

    /// Sync until nothing is left either way. Blocks on the network: call it
    /// off the main thread (Kotlin `sync()`, Swift `sync() async`). Observers
    /// hear of each round. Fails with `Offline` (edits are kept and go out
    /// next time), `NotAuthorized` (sign in again), or `InvalidInput` if not
    /// connected.
    pub fn sync_now(&self) -> Result<SyncReport, FieldSyncError> {
        Ok(self.sync.client()?.sync_now()?.into())
    }

    /// `sync_now`, stopped before its next round or photo chunk once
    /// `cancellation` is cancelled, from any thread, even if that happened
    /// before this call began (it then sends nothing). Make the
    /// `Cancellation` before starting the call: Kotlin's `sync()` and Swift's
    /// `sync() async` do, cancelling it with their coroutine or task.
    pub fn sync_now_cancellable(&self, cancellation: Arc<Cancellation>) -> Result<SyncReport, FieldSyncError> {
        Ok(self.sync.client()?.sync_until(&mut |_| {}, &cancellation.0)?.into())
    }

    /// Stop the sync or photo fetch in flight (`syncNow`, `fetchPhoto`,
    /// background sync's round) at its next step: before its next round or
    /// photo chunk. It then fails with `Offline` ("cancelled"); every round
    /// answered before is kept. Harmless when nothing runs (and then it stops
    /// nothing later: to stop one call whenever it is asked, give it a
    /// `Cancellation`).
    pub fn cancel_sync(&self) {
        if let Ok(client) = self.sync.client() {
            client.cancel();
        }
    }

    /// Sync in the background from now on: at once, shortly after local
    /// edits, every `interval_ms`, with backoff after failures (not at all
    /// after `NotAuthorized` until connected or started again), and, after
    /// `connect`, as soon as the server says over its live channel that
    /// another device sent something. Restarts it if it runs. Observers hear
    /// of each sync. Fails with `InvalidInput` if not connected, or if the
    /// server URL given to `connect` is not `http(s)://host[:port]`.
    #[uniffi::method(default(config = None))]
    pub fn start_background_sync(&self, config: Option<SyncConfig>) -> Result<(), FieldSyncError> {
        self.start(config.map_or_else(core::SyncConfig::default, Into::into))
    }

    /// Stop background sync (a round in flight finishes first, so this may
    /// block briefly). Harmless if it does not run. Closing the replica
    /// (Kotlin `close()`, Swift release) stops it the same way.
    pub fn stop_background_sync(&self) {
        self.sync.stop();
    }

    /// The app's connectivity hint (from ConnectivityManager, NWPathMonitor):
    /// offline pauses background sync, online syncs at once if anything waits.
    pub fn set_connectivity(&self, online: bool) {
        self.sync.offline.store(!online, Ordering::Relaxed);
        self.sync.notify(core::SyncEvent::Connectivity { online });
        lock(&self.inner).set_online_hint(online);
        self.feed.flush();
    }

    /// What the app can see of sync: what it is doing now (`activity`:
    /// offline, connecting, syncing with its progress, up to date, waiting,
    /// needs attention), pending and refused changes, last success or error,
    /// the last rounds' figures.
    pub fn sync_status(&self) -> Result<SyncStatus, FieldSyncError> {
        self.read(|r| Ok((r.sync_status()?, r.sync_activity()?))).map(Into::into)
    }

    /// Observe the sync status: the current one at once, then after every
    /// change (each local write, each step of a sync: connecting, each
    /// round's progress, done or failed; each connectivity hint).
    pub fn observe_sync_status(&self, observer: Arc<dyn SyncStatusObserver>) -> Arc<ObserverHandle> {
        self.observers.sync_status(&self.inner, observer)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Instant;

    use fieldsync_core::protocol::{self, SectionBatch, SyncRequest, SyncResponse};

    use super::*;
    use crate::activity::SyncActivity;
    use crate::app_transport::TransportError;
    use crate::domain::{GeoPoint, Member, Role};
    use crate::merge::EditOutcome;
    use crate::observer::ObserverError;

    /// A stand-in for the server: one feed of every change uploaded, the
    /// cursor an index into it. No rules, no roster: the replicas bring theirs.
    #[derive(Default)]
    struct StandIn {
        feed: Mutex<Vec<(String, Vec<u8>)>>,
        rounds: Mutex<u32>,
    }

    impl AppTransport for StandIn {
        fn round_trip(&self, request: Vec<u8>) -> Result<Vec<u8>, TransportError> {
            let request: SyncRequest = protocol::decode(&request).unwrap();
            *self.rounds.lock().unwrap() += 1;
            let mut feed = self.feed.lock().unwrap();
            let from: usize = request.cursor.parse().unwrap_or(0);
            let changes = feed[from..]
                .iter()
                .map(|(section, bytes)| SectionBatch::upload(section.clone(), vec![bytes.clone()]))
                .collect();
            for batch in request.upload {
                feed.extend(batch.changes.into_iter().map(|c| (batch.section.clone(), c)));
            }
            let response = SyncResponse {
                server_time_ms: core::wall_clock_ms(),
                changes,
                documents: vec![],
                cursor: feed.len().to_string(),
                more: false,
                roster: None,
                upload_received: vec![],
                evicted: vec![],
                keep_only: None,
                still_to_send: None,
                full_size_photos: None,
            };
            Ok(protocol::encode(&response))
        }
    }

    /// A transport that always fails with what `fail` makes.
    struct Failing(fn() -> TransportError);

    impl AppTransport for Failing {
        fn round_trip(&self, _: Vec<u8>) -> Result<Vec<u8>, TransportError> {
            Err((self.0)())
        }
    }

    #[derive(Default)]
    struct Statuses(Mutex<Vec<SyncStatus>>);

    impl SyncStatusObserver for Statuses {
        fn on_update(&self, status: SyncStatus) -> Result<(), ObserverError> {
            self.0.lock().unwrap().push(status);
            Ok(())
        }
    }

    impl Statuses {
        fn last(&self) -> SyncStatus {
            self.0.lock().unwrap().last().unwrap().clone()
        }
    }

    const P: &str = "p";

    /// Replicas of one crew with the same roster, the office's section created.
    fn crew(dir: &tempfile::TempDir, roles: &[(&str, Role)]) -> (Vec<Arc<Replica>>, String) {
        let open = |name: &str| Replica::open(dir.path().join(name).display().to_string(), name.into(), None).unwrap();
        let replicas: Vec<Arc<Replica>> = roles.iter().map(|(name, _)| open(name)).collect();
        let roster: Vec<Member> = replicas
            .iter()
            .zip(roles)
            .map(|(r, (name, role))| Member { actor: r.actor(), user: (*name).into(), role: *role })
            .collect();
        for r in &replicas {
            r.set_roster(P.into(), roster.clone()).unwrap();
        }
        let route = vec![GeoPoint { lat: 48.0, lon: 11.0 }, GeoPoint { lat: 48.0, lon: 11.01 }];
        let id = replicas[0].create_section(P.into(), "north".into(), route).unwrap();
        (replicas, id)
    }

    fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(start.elapsed() < Duration::from_secs(10), "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A server with endless pages that, while serving the first, sees the
    /// app cancel.
    struct CancelledWhileServing(std::sync::OnceLock<std::sync::Weak<Replica>>, Mutex<u32>);

    impl AppTransport for CancelledWhileServing {
        fn round_trip(&self, _: Vec<u8>) -> Result<Vec<u8>, TransportError> {
            *self.1.lock().unwrap() += 1;
            self.0.get().and_then(std::sync::Weak::upgrade).unwrap().cancel_sync();
            let n = *self.1.lock().unwrap();
            let response = SyncResponse {
                server_time_ms: core::wall_clock_ms(),
                changes: vec![],
                documents: vec![],
                cursor: n.to_string(),
                more: true,
                roster: None,
                upload_received: vec![],
                evicted: vec![],
                keep_only: None,
                still_to_send: None,
                full_size_photos: None,
            };
            Ok(protocol::encode(&response))
        }
    }

    #[test]
    fn a_cancelled_sync_stops_before_its_next_round() {
        let dir = tempfile::tempdir().unwrap();
        let (replicas, _) = crew(&dir, &[("olga", Role::Office)]);
        let server = Arc::new(CancelledWhileServing(Default::default(), Mutex::new(0)));
        server.0.set(Arc::downgrade(&replicas[0])).unwrap();
        replicas[0].connect_with(server.clone(), P.into(), None).unwrap();
        let stopped = replicas[0].sync_now().unwrap_err();
        assert!(matches!(&stopped, FieldSyncError::Offline { detail } if detail.contains("cancelled")), "{stopped}");
        assert_eq!(*server.1.lock().unwrap(), 1, "no round after the cancel");
        replicas[0].cancel_sync(); // nothing runs: harmless

        // A cancellation made before the call and cancelled before it began: nothing is sent.
        let cancellation = Cancellation::new();
        cancellation.cancel();
        let stopped = replicas[0].sync_now_cancellable(cancellation.clone()).unwrap_err();
        assert!(matches!(&stopped, FieldSyncError::Offline { detail } if detail.contains("cancelled")), "{stopped}");
        assert_eq!(*server.1.lock().unwrap(), 1, "no round at all");
        assert!(cancellation.is_cancelled());
    }

    #[test]
    fn syncing_before_connecting_is_invalid_input() {
        let dir = tempfile::tempdir().unwrap();
        let (r, _) = crew(&dir, &[("olga", Role::Office)]);
        assert!(matches!(r[0].sync_now(), Err(FieldSyncError::InvalidInput { .. })));
        assert!(matches!(r[0].start_background_sync(None), Err(FieldSyncError::InvalidInput { .. })));
        r[0].set_connectivity(false); // remembered, harmless
        r[0].stop_background_sync();
    }

    #[test]
    fn two_replicas_converge_and_the_report_says_whose_write_won_and_why() {
        let dir = tempfile::tempdir().unwrap();
        let (r, id) = crew(&dir, &[("olga", Role::Office), ("fred", Role::Foreman), ("tina", Role::Technician)]);
        let hub = Arc::new(StandIn::default());
        for replica in &r {
            replica.connect_with(hub.clone(), P.into(), None).unwrap();
        }
        let statuses = Arc::new(Statuses::default());
        let _handle = r[2].observe_sync_status(statuses.clone());
        assert_eq!(r[0].sync_now().unwrap().confirmed, 1);
        let (fred, tina) = (&r[1], &r[2]);
        assert_eq!(tina.sync_now().unwrap().sections_changed, vec![id.clone()]);
        fred.sync_now().unwrap();

        tina.record_progress(id.clone(), 5).unwrap();
        assert_eq!(statuses.last().pending_changes, 1);
        std::thread::sleep(Duration::from_millis(5)); // fred's stamp is the later one: "max wins" decides
        fred.record_progress(id.clone(), 8).unwrap();
        fred.sync_now().unwrap();
        let report = tina.sync_now().unwrap();
        assert_eq!((report.confirmed, report.new_changes), (1, 1));
        let mine = report.reconciliation.iter().find(|rec| rec.section == id).expect("tina's write reconciled");
        match &mine.outcome {
            EditOutcome::Overridden { by: Some(by), rule, reason } => {
                assert_eq!((by.user.as_deref(), *rule), (Some("fred"), crate::Rule::ProgressMaxWins));
                assert!(!reason.is_empty());
            }
            other => panic!("tina's progress should be overridden, is {other:?}"),
        }
        fred.sync_now().unwrap();
        assert_eq!(tina.section(id.clone()).unwrap(), fred.section(id.clone()).unwrap());
        assert_eq!(tina.section(id).unwrap().progress, 8);
        let status = statuses.last();
        assert_eq!((status.pending_changes, status.last_error, status.last_problem), (0, None, None));
        assert!(status.last_success_ms.is_some());
        // Each sync showed itself: connecting, the round's progress, then up to date.
        let activities: Vec<SyncActivity> = statuses.0.lock().unwrap().iter().map(|s| s.activity.clone()).collect();
        assert_eq!(activities.first(), Some(&SyncActivity::Waiting), "never synced: {activities:?}");
        assert!(activities.contains(&SyncActivity::Connecting), "{activities:?}");
        let uploaded_one = |a: &SyncActivity| matches!(a, SyncActivity::Syncing { progress } if (progress.uploaded, progress.to_upload) == (1, 1));
        assert!(activities.iter().any(uploaded_one), "tina's edit went up: {activities:?}");
        assert_eq!(activities.last(), Some(&SyncActivity::UpToDate));
        tina.set_connectivity(false);
        assert_eq!(statuses.last().activity, SyncActivity::Offline);
        tina.set_connectivity(true);
        assert_eq!(statuses.last().activity, SyncActivity::UpToDate);
    }

    #[test]
    fn failures_are_offline_or_not_authorized_and_the_status_observer_hears_of_them() {
        let dir = tempfile::tempdir().unwrap();
        let (r, _) = crew(&dir, &[("olga", Role::Office)]);
        let statuses = Arc::new(Statuses::default());
        let _handle = r[0].observe_sync_status(statuses.clone());

        r[0].connect_with(
            Arc::new(Failing(|| TransportError::Unreachable { detail: "no route".into() })),
            P.into(),
            None,
        )
        .unwrap();
        assert!(matches!(r[0].sync_now(), Err(FieldSyncError::Offline { detail }) if detail.contains("no route")));
        assert!(statuses.last().last_error.unwrap().contains("no route"));
        assert_eq!(statuses.last().last_problem, Some(crate::SyncProblem::Offline));
        assert_eq!(statuses.last().pending_changes, 1, "the edit is kept");
        assert_eq!(statuses.last().activity, SyncActivity::Offline);

        let revoked = || TransportError::Server {
            status: 401,
            body: br#"{"error":"unauthorized","message":"this device was revoked"}"#.to_vec(),
        };
        r[0].connect_with(Arc::new(Failing(revoked)), P.into(), None).unwrap();
        assert!(matches!(r[0].sync_now(), Err(FieldSyncError::NotAuthorized { detail }) if detail.contains("revoked")));
        assert!(statuses.last().last_error.unwrap().contains("revoked"));
        assert_eq!(statuses.last().last_problem, Some(crate::SyncProblem::NotAuthorized));
        assert!(matches!(
            statuses.last().activity,
            SyncActivity::NeedsAttention { problem: crate::SyncProblem::NotAuthorized, .. }
        ));

        // The built-in transport to a closed port: refused at once.
        r[0].connect("http://127.0.0.1:1".into(), "token".into(), P.into(), 5_000).unwrap();
        assert!(matches!(r[0].sync_now(), Err(FieldSyncError::Offline { .. })));
        // Background sync with it keeps a live channel trying too, and stops with it.
        r[0].start_background_sync(None).unwrap();
        r[0].stop_background_sync();

        // A server URL that is no URL: the live channel cannot follow it.
        r[0].connect("sync.example.com".into(), "token".into(), P.into(), 5_000).unwrap();
        let started = r[0].start_background_sync(None);
        assert!(matches!(started, Err(FieldSyncError::InvalidInput { detail }) if detail.contains("sync.example.com")));
    }

    #[test]
    fn background_sync_sends_local_edits_by_itself_and_pauses_while_offline() {
        let dir = tempfile::tempdir().unwrap();
        let (r, id) = crew(&dir, &[("olga", Role::Office)]);
        let hub = Arc::new(StandIn::default());
        r[0].connect_with(hub.clone(), P.into(), None).unwrap();
        let statuses = Arc::new(Statuses::default());
        let _handle = r[0].observe_sync_status(statuses.clone());
        let config = SyncConfig { interval_ms: 60_000, edit_debounce_ms: 10, min_backoff_ms: 10, max_backoff_ms: 100 };
        r[0].start_background_sync(Some(config)).unwrap();
        // Read from the store, not from the observer's last word: that may
        // still be the word before the edit on a busy machine.
        let pending = || r[0].sync_status().unwrap().pending_changes;
        wait_until("the first background sync", || pending() == 0);

        r[0].record_progress(id.clone(), 5).unwrap();
        wait_until("the edit to go out", || pending() == 0);

        r[0].set_connectivity(false);
        let rounds = *hub.rounds.lock().unwrap();
        r[0].record_progress(id.clone(), 6).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(*hub.rounds.lock().unwrap(), rounds, "no round while offline");
        assert_eq!(pending(), 1);
        wait_until("the observer to hear of it", || statuses.last().pending_changes == 1);
        r[0].set_connectivity(true);
        wait_until("the edit to go out once online", || statuses.last().pending_changes == 0);

        // Reconnecting keeps background sync running, over the new transport.
        let other = Arc::new(StandIn::default());
        r[0].connect_with(other.clone(), P.into(), None).unwrap();
        wait_until("a round over the new transport", || *other.rounds.lock().unwrap() > 0);
        r[0].stop_background_sync();
        let rounds = *other.rounds.lock().unwrap();
        r[0].record_progress(id, 7).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(*other.rounds.lock().unwrap(), rounds, "stopped");
    }
}
