//! The loop's side of photos (issue 14): the crews take photos during the
//! day, their sessions' photo requests cross the device's simulated link
//! (the same model as its rounds: bandwidth, latency, loss, outages,
//! partitions, cut answers; the answer can be lost after the hub stored the
//! chunk) to the in-process hub, and after the heal the photo invariants
//! are checked. Nothing here runs when the workload has no photos.

use std::collections::{BTreeMap, BTreeSet};

use fieldsync_core::{FullSizePhotos, ProjectConfig, ReplicaError, Role, SyncEvent, TransportError};

use super::{EPOCH_MS, Event, PROJECT, Sim, lock};
use crate::photos::{
    PHOTO_HEADER_BYTES, PhotoCall, PhotoLane, PhotoReport, PhotoWorkload, chunk_for_link, encode_chunk, encode_state,
};
use crate::profile::LinkProfile;
use crate::report::{Invariant, Violation};
use crate::rng::Rng;
use crate::server::transport_error;

/// The project the outsider is a member of (not the crews').
const ELSEWHERE: &str = "elsewhere";
/// The outsider: a user of this hub, not a member of the crews' project.
const OUTSIDER: &str = "outsider";

/// A photo a crew member took.
struct Taken {
    device: usize,
    install: u32,
    id: String,
    section: String,
    sha256: String,
    size: u64,
    thumbnail: Option<String>,
    at: u64,
    /// Its device was reinstalled before the hub had it all.
    wiped: bool,
}

/// The photos of a run and what the loop saw of them.
#[derive(Default)]
pub(super) struct PhotoDay {
    rng: Option<Rng>,
    /// Per device: the draws of its photo requests on its link (apart from
    /// its rounds', so the rest of the day is drawn as without photos).
    link_rng: BTreeMap<usize, Rng>,
    taken: Vec<Taken>,
    /// Bytes the hub holds of each photo (from its answers).
    hub_received: BTreeMap<String, u64>,
    /// When each photo (thumbnails included) became complete on the hub:
    /// the order of completion, and the simulated time.
    completed: BTreeMap<String, (u64, u64)>,
    completions: u64,
    /// Bytes of each of its photos whose acknowledgement a device received.
    acked: BTreeMap<(usize, String), u64>,
    /// Per device: photo requests that failed on the link or whose answer
    /// never reached it.
    failed: BTreeMap<usize, u64>,
    /// Per device: chunks the hub already held when they arrived.
    repeats: BTreeMap<usize, u64>,
    report: PhotoReport,
    /// The crews are on the depot's Wi-Fi (unmetered).
    at_depot: bool,
}

/// The crews' project's configuration for a day with `photos`.
pub(super) fn project_config(photos: &PhotoWorkload) -> ProjectConfig {
    let held = if photos.depot_wifi { FullSizePhotos::OnUnmeteredLinks } else { FullSizePhotos::Always };
    ProjectConfig { full_size_photos: held, ..ProjectConfig::default() }
}

impl Sim {
    /// How device `d`'s sessions carry photos, when the day has photos:
    /// on mobile data, but at the depot.
    pub(super) fn photo_lane(&self, d: usize) -> Option<PhotoLane> {
        let at_depot = self.photos.at_depot;
        let chunk = chunk_for_link(&self.devices[d].link.profile);
        self.config.workload.photos.on().then_some(PhotoLane { chunk, metered: !at_depot })
    }

    /// The crews reach the depot's Wi-Fi (at the heal), when the day's
    /// project holds full sizes for it: the link device `d` has from now on.
    pub(super) fn reach_depot(&mut self) -> Option<LinkProfile> {
        self.photos.at_depot = self.config.workload.photos.depot_wifi;
        self.photos.at_depot.then(LinkProfile::depot_wifi)
    }

    /// Schedule the crews' photos: `per_crew` each, at uniform moments of
    /// the day, each by one of the crew's members. Draws from a generator
    /// of its own, so the rest of the day's plan is the day without photos.
    pub(super) fn plan_photos(&mut self) {
        let w = self.config.workload.photos.clone();
        if !w.on() {
            return;
        }
        let mut rng = Rng::new(self.config.seed ^ 0x5048_4f54_4f53_0014);
        for d in 0..self.devices.len() {
            self.photos.link_rng.insert(d, rng.fork(d as u64));
        }
        for crew in 0..self.plan.crew_sections.len() {
            let members: Vec<usize> = (0..self.devices.len()).filter(|&d| self.devices[d].crew == Some(crew)).collect();
            if members.is_empty() {
                continue;
            }
            for _ in 0..w.per_crew {
                let device = *rng.pick(&members);
                let at = rng.below(self.day_ms.max(1));
                let size = rng.range(w.bytes.0, w.bytes.1.max(w.bytes.0));
                self.schedule(at, Event::TakePhoto { device, size });
            }
        }
        self.photos.rng = Some(rng);
    }

    /// Device `d`'s user takes a photo of `size` bytes of a section the crew works on.
    pub(super) fn take_photo(&mut self, d: usize, size: u64) {
        let Some(crew) = self.devices[d].crew else { return };
        let Some(replica) = self.devices[d].replica.clone() else { return };
        let Some(rng) = self.photos.rng.as_mut() else { return };
        let section = rng.pick(&self.plan.crew_sections[crew]).clone();
        let bytes = crate::photos::photo_bytes(size, rng);
        self.set_clock(d);
        let name = self.devices[d].name.clone();
        let added = {
            let mut r = lock(&replica);
            r.add_photo_bytes(&section, &bytes, Some("site photo"))
                .and_then(|id| Ok((r.section(&section)?.photos.into_iter().find(|p| p.id == id), id)))
        };
        match added {
            Ok((Some(photo), id)) => {
                let Some(blob) = photo.blob else {
                    return self.violation(Invariant::NoUnexpectedError, format!("{name}: photo {id} has no blob"));
                };
                self.photos.report.added += 1;
                self.photos.report.added_bytes += blob.size;
                self.photos.taken.push(Taken {
                    device: d,
                    install: self.devices[d].install,
                    id,
                    section,
                    sha256: blob.sha256,
                    size: blob.size,
                    thumbnail: photo.thumbnail.map(|t| t.sha256),
                    at: self.now,
                    wiped: false,
                });
                self.engine_event(d, SyncEvent::LocalEdit);
            }
            Ok((None, id)) => {
                self.violation(Invariant::NoUnexpectedError, format!("{name}: photo {id} is not in {section}'s view"))
            }
            Err(ReplicaError::UnknownSection(_)) => {}
            Err(e) => self.violation(Invariant::NoUnexpectedError, format!("{name}: adding a photo to {section}: {e}")),
        }
    }

    /// Device `d`'s store is about to be wiped: its photos the hub does not
    /// hold all of go with it.
    pub(super) fn photos_wiped(&mut self, d: usize) {
        let install = self.devices[d].install;
        let completed = &self.photos.completed;
        for t in self.photos.taken.iter_mut().filter(|t| t.device == d && t.install == install) {
            if !completed.contains_key(&t.sha256) {
                t.wiped = true;
            }
        }
    }

    /// A photo request leaves device `d`: over its link as a round's body would.
    pub(super) fn send_photo(&mut self, d: usize, call: PhotoCall) {
        let now = self.now;
        let session = self.devices[d].session.as_ref().map_or(0, |s| s.id);
        self.photos.report.requests += 1;
        // Edits first: the session waits for this request's answer, so its
        // replica is free to read, and no edit of it may be waiting.
        let waiting = self.devices[d].replica.as_ref().map_or(0, |r| {
            r.lock().unwrap_or_else(|p| p.into_inner()).outbox_stats().map_or(0, |(pending, _)| pending)
        });
        // The project's policy: no full size leaves a phone on mobile data.
        if let PhotoCall::Put { sha256, .. } = &call
            && self.config.workload.photos.depot_wifi
            && !self.photos.at_depot
            && let Some(t) = self.photos.taken.iter().find(|t| &t.sha256 == sha256)
        {
            let name = self.devices[d].name.clone();
            self.violation(
                Invariant::FullSizeHeld,
                format!("{name} sent photo {}'s full size on mobile data; the project holds it for Wi-Fi", t.id),
            );
        }
        if waiting > 0 {
            self.photos.report.sent_before_edits += 1;
            let name = self.devices[d].name.clone();
            self.violation(
                Invariant::EditsFirst,
                format!("{name} sent a photo request while {waiting} of its changes waited to go up"),
            );
        }
        let len = call.request_len();
        let rng = self.photos.link_rng.entry(d).or_insert_with(|| Rng::new(d as u64));
        let dev = &mut self.devices[d];
        dev.sent_at = now;
        let timeout = dev.link.profile.timeout_ms;
        if dev.link.offline_at(now) {
            return self.fail_photo(d, session, now + 20, "no network");
        }
        if dev.link.partitioned_at(now) {
            return self.fail_photo(d, session, now + timeout.min(30_000), "connect timed out");
        }
        let up = dev.link.upload_ms(now, len, rng);
        let arrive = now + up;
        if let Some(cut) = dev.link.breaks_between(now, arrive) {
            let sent = len * (cut - now) / up.max(1);
            self.photos.report.bytes_up += sent;
            if !self.photos.at_depot {
                self.photos.report.bytes_up_metered += sent;
            }
            return self.fail_photo(d, session, cut, "connection lost while sending");
        }
        self.photos.report.bytes_up += len;
        if !self.photos.at_depot {
            self.photos.report.bytes_up_metered += len;
        }
        if self.faults_on && rng.chance(dev.link.profile.loss) {
            return self.fail_photo(d, session, now + timeout, "timed out");
        }
        self.schedule(arrive, Event::PhotoArrive { device: d, session, call });
    }

    fn fail_photo(&mut self, d: usize, session: u64, at: u64, why: &str) {
        let result = Err(TransportError::Unreachable(why.to_owned()));
        self.schedule(at, Event::PhotoAnswer { device: d, session, result, acked: None });
    }

    /// A photo request reaches the hub; its answer goes back over the link.
    pub(super) fn photo_arrive(&mut self, d: usize, session: u64, call: PhotoCall) {
        let now = self.now;
        let two = self.servers.count() > 1;
        let instance = match self.photos.link_rng.get_mut(&d) {
            Some(rng) if two => rng.below(2) as usize,
            _ => 0,
        };
        let down_latency = self.devices[d].link.profile.down_latency_ms;
        let Some(hub) = self.servers.hub(instance).cloned() else {
            return self.fail_photo(d, session, now + down_latency, "connection refused");
        };
        let token = self.devices[d].token.clone();
        let name = self.devices[d].name.clone();
        let (result, acked) = match call {
            PhotoCall::Put { project, sha256, size, offset, bytes } => {
                let before = self.photos.hub_received.get(&sha256).copied().unwrap_or(0);
                let acked = self.photos.acked.get(&(d, sha256.clone())).copied().unwrap_or(0);
                if offset < acked {
                    self.photos.report.resent_after_ack += 1;
                    self.violation(
                        Invariant::NoPhotoResent,
                        format!(
                            "{name} sent bytes {offset}.. of photo {sha256} again after receiving the hub's acknowledgement of {acked} bytes"
                        ),
                    );
                }
                if offset < before {
                    self.photos.report.repeated_chunks += 1;
                    *self.photos.repeats.entry(d).or_default() += 1;
                }
                let answer = hub.put_photo_chunk(&token, &project, &sha256, size, offset, &bytes, EPOCH_MS + now);
                if let Ok(state) = &answer {
                    self.photos.report.photo_bytes_stored += state.received.saturating_sub(before);
                    let held = self.photos.hub_received.entry(sha256.clone()).or_default();
                    *held = (*held).max(state.received);
                    if state.complete && !self.photos.completed.contains_key(&sha256) {
                        self.photos.completions += 1;
                        self.photos.completed.insert(sha256.clone(), (self.photos.completions, now));
                    }
                }
                let acked = answer.as_ref().ok().map(|s| (sha256, s.received));
                (answer.map(|s| encode_state(&s)).map_err(|e| transport_error(&e)), acked)
            }
            PhotoCall::Get { project, sha256, offset, length } => {
                let answer = hub.photo_chunk(&token, &project, &sha256, offset, length);
                if let Ok(chunk) = &answer {
                    self.photos.report.photo_bytes_served += chunk.bytes.len() as u64;
                }
                (answer.map(|c| encode_chunk(&c)).map_err(|e| transport_error(&e)), None)
            }
        };
        if matches!(&result, Err(TransportError::Server { status: 403, .. })) && self.devices[d].removed {
            self.devices[d].forbidden_while_removed = true;
        }
        let len = PHOTO_HEADER_BYTES
            + match &result {
                Ok(b) => b.len() as u64,
                Err(TransportError::Server { body, .. }) => serde_json::to_vec(body).map_or(200, |b| b.len() as u64),
                Err(_) => 0,
            };
        let faults_on = self.faults_on;
        let cut_rate = self.config.faults.cut_responses;
        let rng = self.photos.link_rng.entry(d).or_insert_with(|| Rng::new(d as u64));
        let dev = &mut self.devices[d];
        let deadline = dev.sent_at + dev.link.profile.timeout_ms;
        let down = dev.link.download_ms(now, len, rng);
        let done = now + down;
        let partial_at = |t: u64| len * t.saturating_sub(now) / down.max(1);
        let lost = if done > deadline {
            Some((deadline, partial_at(deadline), "timed out"))
        } else if let Some(cut) = dev.link.breaks_between(now, done) {
            Some((cut, partial_at(cut), "connection lost mid-response"))
        } else if faults_on && rng.chance(cut_rate) {
            let cut = now + rng.below(down.max(1));
            Some((cut, partial_at(cut), "response cut off"))
        } else if faults_on && rng.chance(dev.link.profile.loss) {
            Some((deadline, 0, "timed out"))
        } else {
            None
        };
        if let Some((at, partial, why)) = lost {
            self.photos.report.bytes_down += partial;
            return self.fail_photo(d, session, at, why);
        }
        self.photos.report.bytes_down += len;
        self.schedule(done, Event::PhotoAnswer { device: d, session, result, acked });
    }

    /// A photo answer (or a failure) reaches device `d`.
    pub(super) fn photo_answer(
        &mut self,
        d: usize,
        session: u64,
        result: Result<Vec<u8>, TransportError>,
        acked: Option<(String, u64)>,
    ) {
        let current = self.devices[d].session.as_ref().is_some_and(|s| s.id == session);
        if !current || matches!(result, Err(TransportError::Unreachable(_))) {
            self.photos.report.failed_requests += 1;
            *self.photos.failed.entry(d).or_default() += 1;
        }
        if !current {
            return; // The app that asked is gone: no one hears the answer.
        }
        if let Some((sha, received)) = acked {
            let a = self.photos.acked.entry((d, sha)).or_default();
            *a = (*a).max(received);
        }
        self.set_clock(d);
        let step = self.devices[d].session.as_mut().expect("checked").answer(result);
        self.on_step(d, step);
    }

    /// Whether device `d` has nothing left to do with photos: none of its
    /// own to send, and the thumbnail of every photo in its sections that
    /// the hub holds is here.
    pub(super) fn photos_settled(&self, d: usize) -> bool {
        if !self.config.workload.photos.on() {
            return true;
        }
        let dev = &self.devices[d];
        if dev.revoked || dev.removed {
            return true;
        }
        let Some(replica) = dev.replica.as_ref() else { return false };
        let r = lock(replica);
        let nothing_to_send = r.next_photo_upload(false, FullSizePhotos::Always, &[]).is_ok_and(|p| p.is_none());
        nothing_to_send
            && r.thumbnails_to_fetch()
                .is_ok_and(|missing| missing.iter().all(|(_, t)| !self.photos.completed.contains_key(&t.sha256)))
    }

    /// The photo invariants, after the heal.
    pub(super) fn check_photos(&mut self, violations: &mut Vec<Violation>) -> Option<PhotoReport> {
        if !self.config.workload.photos.on() {
            return None;
        }
        let mut found: Vec<Violation> = Vec::new();
        let mut v = |invariant: Invariant, detail: String| found.push(Violation { invariant, detail });
        let mut report = std::mem::take(&mut self.photos.report);
        let Some(hub) = self.servers.any().cloned() else {
            v(Invariant::NoLostPhoto, "no hub is up to hold the photos".into());
            violations.extend(found);
            return Some(report);
        };
        let full: BTreeSet<&str> = self.photos.taken.iter().map(|t| t.sha256.as_str()).collect();
        report.last_photo_ms = self
            .photos
            .completed
            .iter()
            .filter(|(sha, _)| full.contains(sha.as_str()))
            .map(|(_, (_, at))| *at)
            .max()
            .unwrap_or(0);
        // Every photo arrived, its thumbnail first.
        for t in &self.photos.taken {
            let dev = &self.devices[t.device];
            let name = &dev.name;
            let excused = t.wiped || dev.revoked || dev.removed;
            report.excused += u64::from(excused);
            let held = hub.photos_held(PROJECT, &[t.sha256.as_str()]).unwrap_or(0) == 1;
            report.held_on_hub += u64::from(held);
            let when = format!("taken at {} min", t.at / 60_000);
            if !held && !excused {
                let got = self.photos.hub_received.get(&t.sha256).copied().unwrap_or(0);
                v(
                    Invariant::NoLostPhoto,
                    format!(
                        "{name}'s photo {} of {} ({} bytes, {when}) is not complete on the hub: {got} bytes there",
                        t.id, t.section, t.size
                    ),
                );
            }
            let Some(thumb) = &t.thumbnail else {
                v(Invariant::NoLostPhoto, format!("{name}'s photo {} got no thumbnail", t.id));
                continue;
            };
            match (self.photos.completed.get(thumb), self.photos.completed.get(&t.sha256)) {
                (Some((th, _)), Some((ph, _))) if th > ph => v(
                    Invariant::ThumbnailFirst,
                    format!("{name}'s photo {} ({when}): its full size reached the hub before its thumbnail", t.id),
                ),
                (None, Some(_)) => v(
                    Invariant::ThumbnailFirst,
                    format!("{name}'s photo {} ({when}) is on the hub, its thumbnail is not", t.id),
                ),
                (None, None) if !excused => v(
                    Invariant::NoLostPhoto,
                    format!("{name}'s photo {} ({when}): its thumbnail never reached the hub", t.id),
                ),
                _ => {}
            }
        }
        // Every device holding a section holds its photos' thumbnails.
        for dev in self.devices.iter().filter(|d| !d.revoked && !d.removed) {
            let Some(replica) = dev.replica.as_ref() else { continue };
            let r = lock(replica);
            let ids: Vec<String> = match r.list_sections(Some(PROJECT), None, usize::MAX) {
                Ok(list) => list.into_iter().map(|s| s.id).collect(),
                Err(e) => {
                    v(Invariant::NoUnexpectedError, format!("{}: listing sections: {e}", dev.name));
                    continue;
                }
            };
            let mut missing = Vec::new();
            for id in ids {
                let Ok(view) = r.section(&id) else { continue };
                for p in view.photos {
                    let Some(thumb) = p.thumbnail else { continue };
                    if r.photo_file(&thumb.sha256).is_some() {
                        report.thumbnails_held += 1;
                    } else if self.photos.completed.contains_key(&thumb.sha256) {
                        missing.push(format!("{} of {id}", p.id));
                    }
                }
            }
            if !missing.is_empty() {
                v(
                    Invariant::NoLostPhoto,
                    format!(
                        "{} lacks {} thumbnail(s) the hub holds: {}",
                        dev.name,
                        missing.len(),
                        missing.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
                    ),
                );
            }
        }
        // No chunk again after its acknowledgement (checked as they arrived),
        // and no more chunks again than the link lost.
        for (&d, &repeats) in &self.photos.repeats {
            let failed = self.photos.failed.get(&d).copied().unwrap_or(0);
            if repeats > failed {
                v(
                    Invariant::NoPhotoResent,
                    format!(
                        "{} sent {repeats} chunk(s) the hub held already, with {failed} photo request(s) cut or lost",
                        self.devices[d].name
                    ),
                );
            }
        }
        // A non-member asks for the crews' photos: refused, no bytes.
        match self.outsider(&hub) {
            Ok(token) => {
                for t in self.photos.taken.iter().filter(|t| self.photos.completed.contains_key(&t.sha256)).take(3) {
                    let asks = [
                        (PROJECT, hub.photo_chunk(&token, PROJECT, &t.sha256, 0, 4096), 403),
                        (ELSEWHERE, hub.photo_chunk(&token, ELSEWHERE, &t.sha256, 0, 4096), 404),
                    ];
                    for (project, answer, expected) in asks {
                        match answer {
                            Ok(chunk) => v(
                                Invariant::PhotoAccess,
                                format!(
                                    "a non-member fetched {} bytes of photo {} through project `{project}`",
                                    chunk.bytes.len(),
                                    t.id
                                ),
                            ),
                            Err(e) if e.status().0 == expected => report.outsider_refused += 1,
                            Err(e) => v(
                                Invariant::PhotoAccess,
                                format!(
                                    "a non-member asking for photo {} through `{project}` was answered {} ({e}), not {expected}",
                                    t.id,
                                    e.status().0
                                ),
                            ),
                        }
                    }
                    let put = hub.put_photo_chunk(&token, PROJECT, &t.sha256, t.size, 0, b"x", EPOCH_MS + self.now);
                    match put {
                        Err(e) if e.status().0 == 403 => report.outsider_refused += 1,
                        other => v(
                            Invariant::PhotoAccess,
                            format!("a non-member sending a chunk of photo {} was answered {other:?}, not 403", t.id),
                        ),
                    }
                }
            }
            Err(e) => v(Invariant::NoUnexpectedError, format!("enrolling the outsider: {e}")),
        }
        found.truncate(20);
        violations.extend(found);
        Some(report)
    }

    /// A device of a user who is a member of another project only; its token.
    fn outsider(&self, hub: &fieldsync_server::Hub) -> Result<String, fieldsync_server::HubError> {
        hub.create_project(ELSEWHERE, ProjectConfig::default())?;
        hub.add_member_at(ELSEWHERE, OUTSIDER, Role::Office, EPOCH_MS + self.now)?;
        Ok(hub.enroll_device(OUTSIDER, "an outsider's phone")?.token)
    }
}
