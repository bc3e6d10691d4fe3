//! One sync, as a state machine without network I/O.
//!
//! It decides which project's round comes next and what its request is, and
//! what an answer means: commit it; stop sending refused changes and go on
//! (422); start the feed over once when the server does not know the
//! cursor (400); renew the token once (401); give up after the round cap;
//! anything else ends the sync, recorded in the status the app shows. It
//! keeps the running report and the progress the app shows.
//!
//! The runtime ([`crate::sync::client`]) carries the bytes, asks the app's
//! connector and passes the time in; a test, or a simulated network, can
//! drive the same machine one step at a time without any transport.

use serde::{Deserialize, Serialize};

use crate::domain::hlc::DeviceTime;
use crate::replica::{Replica, ReplicaError};
use crate::sync::activity::{SyncPhase, SyncProgress};
use crate::sync::credentials::CredentialsError;
use crate::sync::engine::SyncEvent;
use crate::sync::merge::Reconciliation;
use crate::sync::protocol::{self, ProtocolError, StillToSend};
use crate::sync::round::RoundReport;
use crate::sync::status::{RoundFigures, SyncProblem};
use crate::sync::transport::TransportError;

/// Rounds one project's sync may take, unless set otherwise, before it gives
/// up (a server that keeps saying "more" without progress must not spin a
/// phone's battery flat).
pub const MAX_ROUNDS: u32 = 10_000;

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
    /// carry them ([`crate::SyncClient::with_photos`]).
    #[error("this sync client carries no photos; give it a photo transport")]
    NoPhotoTransport,
    /// The app cancelled the sync ([`crate::SyncClient::cancel`]): every round
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

    /// The event that tells [`crate::SyncEngine`] of this failure.
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

impl SyncReport {
    /// Fold a committed round in: counts add up, and each unconfirmed write
    /// keeps only its latest word.
    fn add_round(&mut self, round: RoundReport, documents: usize) {
        self.confirmed += round.confirmed;
        self.new_changes += round.merge.new_changes;
        self.documents += documents;
        for s in round.merge.sections_changed {
            if !self.sections_changed.contains(&s) {
                self.sections_changed.push(s);
            }
        }
        self.add_reconciliation(round.merge.reconciliation);
    }

    fn add_reconciliation(&mut self, words: Vec<Reconciliation>) {
        for r in words {
            self.reconciliation.retain(|old| old.edit_id != r.edit_id);
            self.reconciliation.push(r);
        }
    }
}

/// How much a request uploads and a response may carry, and how many rounds
/// one project's sync may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundLimits {
    /// Bytes of changes (uncompressed) one request uploads at most.
    pub upload: usize,
    /// Bytes of changes one response may carry.
    pub response: u32,
    /// Rounds of one project before the sync gives up ([`MAX_ROUNDS`]).
    pub rounds: u32,
}

/// A round on its way: what to tell [`SyncRun::answered`] with its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundTicket {
    /// Hashes of the changes uploaded, to confirm when the answer comes.
    sent: Vec<String>,
    /// The outbox held more than one request carries.
    more_to_send: bool,
    /// The request's size on the wire.
    bytes_sent: u64,
}

/// What the runtime does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunStep {
    /// Carry `body` to the server (`POST /v1/sync`), then hand what came
    /// back, or why nothing did, to [`SyncRun::answered`] with `round`.
    Send {
        /// The encoded request.
        body: Vec<u8>,
        /// What the answer settles.
        round: RoundTicket,
    },
    /// The server refused the token: ask the app's connector for a fresh
    /// one (this happens once per sync), then call [`SyncRun::next`]; if the
    /// connector fails, end with [`SyncRun::failed`].
    RenewToken,
    /// Every project is synced; [`SyncRun::report`] says what happened.
    Done,
}

/// When an answer came, by the runtime's clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnswerTime {
    /// The device's clocks when the answer came (the replica's clock anchors
    /// to the server's time with them).
    pub now: DeviceTime,
    /// How long the round trip took.
    pub latency_ms: u64,
}

/// One sync of every project of a replica, from the first request to the
/// last answer. Dropping it mid-way loses nothing: every answered round is
/// committed, and the next sync goes on from there.
#[derive(Debug)]
pub struct SyncRun {
    projects: Vec<String>,
    /// The project whose rounds run now (`projects.len()`: done).
    current: usize,
    /// Rounds of the current project so far.
    rounds: u32,
    /// The current project's feed was started over (once per project).
    cursor_reset: bool,
    /// Whether a refused token may be renewed (the runtime has a connector),
    /// and whether it was (once per sync).
    can_renew: bool,
    renewed: bool,
    limits: RoundLimits,
    /// Local changes waiting when the sync started.
    to_upload: u64,
    /// What the server said it still holds after the last page (none: not counted).
    still_to_send: Option<StillToSend>,
    report: SyncReport,
}

impl SyncRun {
    /// Start a sync of every project `replica` syncs. `can_renew`: the
    /// runtime can ask the app for a fresh token on a `401`.
    pub fn start(replica: &mut Replica, limits: RoundLimits, can_renew: bool) -> Result<Self, SyncError> {
        replica.set_sync_phase(SyncPhase::Connecting);
        Ok(SyncRun {
            projects: replica.projects()?,
            current: 0,
            rounds: 0,
            cursor_reset: false,
            can_renew,
            renewed: false,
            limits,
            to_upload: replica.outbox_stats()?.0 as u64,
            still_to_send: None,
            report: SyncReport::default(),
        })
    }

    /// The next step: a request for the current project, or done.
    pub fn next(&mut self, replica: &mut Replica) -> Result<RunStep, SyncError> {
        self.prepare(replica).map_err(|e| self.failed(replica, e))
    }

    /// What came back for `round` (the response's bytes, or why none came),
    /// at `time`: commit it, and say what to do next.
    pub fn answered(
        &mut self,
        replica: &mut Replica,
        round: RoundTicket,
        answer: Result<Vec<u8>, TransportError>,
        time: AnswerTime,
    ) -> Result<RunStep, SyncError> {
        match self.settle(replica, round, answer, time) {
            Ok(true) => self.next(replica),
            Ok(false) => Ok(RunStep::RenewToken),
            Err(e) => Err(self.failed(replica, e)),
        }
    }

    fn prepare(&mut self, replica: &mut Replica) -> Result<RunStep, SyncError> {
        let Some(project) = self.projects.get(self.current) else { return Ok(RunStep::Done) };
        if self.rounds >= self.limits.rounds {
            return Err(SyncError::TooManyRounds(self.limits.rounds));
        }
        let prepared = replica.prepare_round(project, self.limits.upload, self.limits.response)?;
        self.rounds += 1;
        let body = protocol::encode(&prepared.request);
        let round =
            RoundTicket { sent: prepared.sent, more_to_send: prepared.more_to_send, bytes_sent: body.len() as u64 };
        Ok(RunStep::Send { body, round })
    }

    /// Settle an answer; `Ok(false)`: the token must be renewed first.
    fn settle(
        &mut self,
        replica: &mut Replica,
        round: RoundTicket,
        answer: Result<Vec<u8>, TransportError>,
        time: AnswerTime,
    ) -> Result<bool, SyncError> {
        self.report.rounds += 1;
        self.report.bytes_sent += round.bytes_sent;
        let mut figures = RoundFigures { bytes_sent: round.bytes_sent, ..RoundFigures::default() };
        let (go_on, more_to_download) = match answer {
            Ok(bytes) => {
                self.report.bytes_received += bytes.len() as u64;
                figures.bytes_received = bytes.len() as u64;
                let more = self.commit(replica, &round, &bytes, time.now)?;
                (more || round.more_to_send, more)
            }
            // Keep the refused changes (and what builds on them), stop sending them, go again.
            Err(TransportError::Server { status: 422, body }) if !body.refusals.is_empty() => {
                let (marked, settled) = replica.mark_refused(&body.refusals)?;
                for r in &body.refusals {
                    tracing::warn!(
                        section = r.section,
                        change = r.hash,
                        "the server refused a change (kept here): {}",
                        r.reason
                    );
                }
                self.report.refused += marked;
                self.report.add_reconciliation(settled);
                (true, false)
            }
            // The token expired (or was replaced): a fresh one from the app, once per sync.
            Err(TransportError::Server { status: 401, body }) if self.can_renew && !self.renewed => {
                self.renewed = true;
                tracing::info!(reason = body.error, "the server refused the token; asking for a fresh one");
                return Ok(false);
            }
            // The server does not know our cursor (its data was restored or
            // replaced): start over from an empty cursor, once. What arrives
            // again is deduplicated by hash.
            Err(TransportError::Server { status: 400, body })
                if body.error == protocol::UNKNOWN_CURSOR && !self.cursor_reset =>
            {
                self.cursor_reset = true;
                let project = &self.projects[self.current];
                tracing::warn!(project, "the server does not know our cursor; starting the feed over");
                replica.reset_cursor(project)?;
                return Ok(true);
            }
            Err(e) => return Err(e.into()),
        };
        figures.latency_ms = time.latency_ms;
        figures.at_ms = time.now.wall_ms as i64;
        tracing::debug!(
            project = self.projects[self.current],
            latency_ms = figures.latency_ms,
            bytes_sent = figures.bytes_sent,
            bytes_received = figures.bytes_received,
            "sync round"
        );
        replica.record_round(figures)?;
        replica.set_sync_phase(SyncPhase::Syncing(self.progress(more_to_download)));
        if !go_on {
            self.current += 1;
            self.rounds = 0;
            self.cursor_reset = false;
        }
        Ok(true)
    }

    /// Decode and commit an answer; returns whether the server has more.
    fn commit(
        &mut self,
        replica: &mut Replica,
        round: &RoundTicket,
        bytes: &[u8],
        now: DeviceTime,
    ) -> Result<bool, SyncError> {
        let response = protocol::decode_response(bytes)?;
        let documents = response.documents.len();
        self.still_to_send = if response.more { response.still_to_send } else { Some(StillToSend::default()) };
        let project = &self.projects[self.current];
        let committed = replica.commit_round_at(project, &round.sent, response, now)?;
        let more = committed.more;
        self.report.add_round(committed, documents);
        Ok(more)
    }

    /// End the sync with `e`, recorded in the current project's status (what
    /// the app shows), and return it (or the store's error, if recording failed).
    pub fn failed(&mut self, replica: &mut Replica, e: SyncError) -> SyncError {
        let Some(project) = self.projects.get(self.current) else { return e };
        tracing::warn!(project, problem = e.problem().as_str(), "sync failed: {e}");
        match replica.record_sync_error(project, &e.to_string(), e.problem()) {
            Ok(()) => e,
            Err(stored) => stored.into(),
        }
    }

    /// End the sync with `e` after its rounds, in the photo lane: recorded
    /// in the status of every project it synced (the app shows why the
    /// sync failed, though every round went through).
    pub fn failed_after_rounds(&mut self, replica: &mut Replica, e: SyncError) -> SyncError {
        if matches!(e, SyncError::Cancelled) {
            return e; // The app's own word, not a failure to show.
        }
        tracing::warn!(problem = e.problem().as_str(), "sync failed sending or fetching photos: {e}");
        for project in &self.projects {
            if let Err(stored) = replica.record_sync_error(project, &e.to_string(), e.problem()) {
                return stored.into();
            }
        }
        e
    }

    /// Run every project's rounds once more (edits made since, e.g. while
    /// photos went up, go before the next photo chunk); the report goes on.
    pub fn again(&mut self) {
        self.current = 0;
        self.rounds = 0;
        self.cursor_reset = false;
    }

    /// What the sync did so far.
    pub fn report(&self) -> &SyncReport {
        &self.report
    }

    /// The report, for the photo lane's figures.
    pub(crate) fn report_mut(&mut self) -> &mut SyncReport {
        &mut self.report
    }

    /// The report, once the sync is over.
    pub fn into_report(self) -> SyncReport {
        self.report
    }

    /// The projects this sync covers.
    pub fn projects(&self) -> &[String] {
        &self.projects
    }

    /// What the app shows of the sync so far.
    fn progress(&self, more_to_download: bool) -> SyncProgress {
        let r = &self.report;
        let uploaded = (r.confirmed + r.refused) as u64;
        SyncProgress {
            rounds: r.rounds,
            uploaded,
            // Edits made during the sync go up with it too.
            to_upload: self.to_upload.max(uploaded),
            downloaded_changes: r.new_changes as u64,
            downloaded_documents: r.documents as u64,
            downloaded_bytes: r.bytes_received,
            more_to_download,
            // Saturating: the counts are the server's word, and a broken one may say anything.
            changes_to_download: self.still_to_send.map(|s| s.changes.saturating_add(r.new_changes as u64)),
            documents_to_download: self.still_to_send.map(|s| s.documents.saturating_add(r.documents as u64)),
        }
    }
}
