//! The discrete-event loop: virtual time, a queue of events, devices and
//! servers. See the crate docs for what a run does.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use fieldsync_core::protocol::{self, SyncRequest, SyncResponse};
use fieldsync_core::{
    ConstructionState, FORWARD, Replica, ReplicaError, Role, RoleChange, Scope, Subscription, SyncClient, SyncEngine,
    SyncError, SyncEvent, TransportError,
};

use crate::config::{InjectedBug, ScopeWorkload, SimConfig};
use crate::device::{self, Phone, Session, Step};
use crate::hostile::{self, Hostile};
use crate::invariants::{self, Ack, Subject};
use crate::link::Link;
use crate::profile::LinkProfile;
use crate::report::{FaultCounts, Invariant, Latency, Phase, ScopeFigures, SimProgress, SimReport, Violation};
use crate::rng::Rng;
use crate::server::{Servers, transport_error};
use crate::workload::{self, EditKind, Plan};

mod photos;

/// The project every run works in.
pub const PROJECT: &str = "sim";
/// Virtual time 0: Monday 2 June 2025, 06:00 UTC (the morning sync).
pub const EPOCH_MS: u64 = 1_748_844_000_000;
/// How often progress is reported, simulated ms.
const PROGRESS_EVERY_MS: u64 = 10 * 60_000;
const MINUTE: u64 = 60_000;
const HOUR: u64 = 60 * MINUTE;

#[derive(Debug)]
enum Event {
    /// A device's `SyncEngine` asked to be woken (only the latest request counts).
    Timer { device: usize, generation: u64 },
    /// A device's user edits something.
    Edit { device: usize },
    /// A request reaches the server (`replay`: a late duplicate, answered to
    /// no one); `token` is its bearer token, `actor` the one it syncs as.
    Arrive { device: usize, session: u64, body: Vec<u8>, token: String, actor: String, replay: bool },
    /// The answer (or the failure) reaches the device.
    Answer { device: usize, session: u64, result: Result<Vec<u8>, TransportError> },
    /// The app is told its network went (`false`) or came back (`true`).
    Connectivity { device: usize, online: bool },
    /// The live channel says something is new.
    Nudge { device: usize },
    /// The app is killed while `session` is in flight.
    Kill { device: usize, session: u64 },
    /// A killed app is started again.
    Reopen { device: usize },
    /// The app is reinstalled with an empty store.
    Reinstall { device: usize },
    /// An administrator revokes the device.
    Revoke { device: usize },
    /// The device's clock jumps to `skew_ms` off.
    ClockJump { device: usize, skew_ms: i64 },
    /// The administrator changes the device's user in the roster.
    Roster { device: usize, what: RosterEvent },
    /// The user, told they were added back, opens the app.
    AppOpened { device: usize },
    /// The hostile device attacks the hub.
    Attack,
    /// A server instance dies.
    ServerCrash { instance: usize, down_ms: u64 },
    /// A server instance starts again.
    ServerStart { instance: usize },
    /// Report progress.
    Tick,
    /// A crew member takes a photo of `size` bytes (`sim/photos.rs`).
    TakePhoto { device: usize, size: u64 },
    /// A photo request reaches the server.
    PhotoArrive { device: usize, session: u64, call: crate::photos::PhotoCall },
    /// A photo answer (or the failure) reaches the device; `acked`: the
    /// photo and the bytes a put's answer says the hub holds.
    PhotoAnswer { device: usize, session: u64, result: Result<Vec<u8>, TransportError>, acked: Option<(String, u64)> },
    /// A technician moves its corridor to another window of its route (`set_scope`).
    ScopeMove { device: usize },
    /// The office assigns a section to crew `crew` (`assign_crew`).
    Assign { crew: usize },
    /// The working day ends and the network heals.
    EndOfDay,
    /// The heal limit: whatever has not drained by now breaks liveness.
    HealLimit,
}

/// What the administrator does to a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RosterEvent {
    /// A promotion or a demotion, one step (a foreman now and then to office).
    Change,
    /// The member is removed from the project.
    Remove,
    /// The removed member is added back with the role they had.
    AddBack,
}

struct Scheduled {
    at: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

struct Device {
    name: String,
    user: String,
    role: Role,
    crew: Option<usize>,
    install: u32,
    token: String,
    device_id: String,
    /// Its clocks and ids, which every store it opens reads.
    phone: Phone,
    replica: Option<Arc<Mutex<Replica>>>,
    engine: SyncEngine,
    wake_generation: u64,
    session: Option<Session>,
    sent_at: u64,
    skew_ms: i64,
    link: Link,
    rng: Rng,
    revoked: bool,
    /// The user is not a member of the project now (removed, not yet added back).
    removed: bool,
    /// The hub answered this session's round 403 because the user was removed.
    forbidden_while_removed: bool,
    live: bool,
    live_instance: usize,
    acks: Vec<Ack>,
    /// The hub call that answered the latest round of the current session.
    round_at: u64,
    /// The hub call up to which the last successful sync caught up.
    synced_through: u64,
    /// What committed responses brought since the store was installed (or its
    /// cursor reset): each change (FNV of its bytes) and each section's whole
    /// document. Its cursor moved past them, so none may come again.
    received: Received,
    /// Its partial scope (`SimConfig::scopes`; `None`: everything), set
    /// again on a reinstall as the app would from its settings.
    scope: Option<Scope>,
    /// The place on its route of the first section its corridor spans.
    window: usize,
}

#[derive(Default)]
struct Received {
    changes: HashSet<u64>,
    documents: HashSet<String>,
}

impl Received {
    /// Record what `response` brought; returns how many of its changes and
    /// documents had come before.
    ///
    /// With `documents_again`, a whole document may come again: under a
    /// partial scope a section whose route or crew changed is sent whole,
    /// and one that left the scope and came back arrives whole (ADR 0023).
    fn commit(&mut self, response: &SyncResponse, documents_again: bool) -> (u64, Option<String>) {
        let mut again = 0;
        let mut example = None;
        for batch in &response.changes {
            for c in &batch.changes {
                if !self.changes.insert(fnv(c, FNV_START)) {
                    again += 1;
                    example.get_or_insert_with(|| format!("a change of {}", batch.section));
                }
            }
        }
        for d in &response.documents {
            if !self.documents.insert(d.section.clone()) && !documents_again {
                again += 1;
                example.get_or_insert_with(|| format!("the whole document of {}", d.section));
            }
        }
        (again, example)
    }
}

impl Device {
    fn wall(&self, now: u64) -> u64 {
        (EPOCH_MS + now).saturating_add_signed(self.skew_ms)
    }

    fn alive(&self) -> bool {
        self.replica.is_some()
    }
}

/// Device `index`'s phone in the run of `seed`: its ids a sequence of its
/// own (drawing none from the run's generator, which would shift the rest).
pub(crate) fn phone(seed: u64, index: u64) -> Phone {
    Phone::new(Rng::new(seed).fork(index).next_u64())
}

fn lock(r: &Arc<Mutex<Replica>>) -> MutexGuard<'_, Replica> {
    r.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Default)]
struct Stats {
    edits: u64,
    edits_by_kind: BTreeMap<String, u64>,
    refused_locally: BTreeMap<String, u64>,
    round_trips: u64,
    failed_round_trips: u64,
    bytes_up: u64,
    bytes_down: u64,
    bytes_repeated: u64,
    /// Changes and documents sent again to a device that had committed them.
    redelivered: u64,
    heal_round_trips: u64,
    faults: FaultCounts,
    hostile_stored: u64,
    hostile_refused: u64,
    redecided_ahead: u64,
    stale_role_edits: u64,
    /// Simulated time each acknowledged edit's change was made, by hash.
    made_at: BTreeMap<String, u64>,
    /// Each edit reaching another device: simulated ms from its making to
    /// the committed round that brought it.
    edit_to_visible: Vec<u64>,
    /// Per edit, the latest of those: until every device that got it had it.
    edit_to_everyone: BTreeMap<String, u64>,
}

struct Sim {
    config: SimConfig,
    dir: PathBuf,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    rng: Rng,
    servers: Servers,
    devices: Vec<Device>,
    plan: Plan,
    phase: Phase,
    day_ms: u64,
    heal_started: u64,
    quiescent_at: Option<u64>,
    faults_on: bool,
    /// Only this device has to catch up for the heal to end (a scenario about one device).
    watch: Option<usize>,
    stopping: bool,
    sessions: u64,
    /// Hub calls so far: the order of what the server saw (two calls in the
    /// same simulated millisecond are still ordered).
    hub_calls: u64,
    /// The hub call that last changed the server in a way every device must
    /// catch up with: new changes on the feed, or a new actor in the roster.
    last_growth: u64,
    bound_actors: HashSet<String>,
    uploaded: HashSet<u64>,
    /// Every role change the administrator made (the initial roles at the
    /// epoch included), at the hub's time: the rules oracle's history.
    roles_log: Vec<RoleChange>,
    /// The hostile device of the day, if any.
    hostile: Option<Hostile>,
    stats: Stats,
    violations: Vec<Violation>,
    /// The day's photos (`sim/photos.rs`; empty without them).
    photos: photos::PhotoDay,
    /// Partial scopes' random choices (its own stream: the other streams
    /// draw the same with scopes on or off).
    scope_rng: Rng,
    /// What the day did with partial scopes (`None`: off).
    scope_figures: Option<ScopeFigures>,
    /// Sections the office assigned to a crew today (half its assignments
    /// move one of them to another crew: it leaves the first crew's scopes).
    assigned: Vec<String>,
}

/// FNV-1a, 64 bits: a stable hash for digests and for recognizing re-sent changes.
pub(crate) fn fnv(bytes: &[u8], mut h: u64) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
pub(crate) const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// Run one simulation; `progress` hears running totals every simulated ten
/// minutes and at each phase change. The same config gives the same report
/// (but its `wall_ms`).
pub fn run_simulation(config: SimConfig, mut progress: impl FnMut(SimProgress)) -> SimReport {
    let started = Instant::now();
    let base = config.dir.clone().unwrap_or_else(|| {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() { shm.to_owned() } else { std::env::temp_dir() }
    });
    let report = match tempfile::Builder::new().prefix("fieldsync-sim-").tempdir_in(&base) {
        Ok(tmp) => run_in(config.clone(), tmp.path(), &mut progress),
        Err(e) => Err(format!("cannot make a temporary directory in {}: {e}", base.display())),
    };
    let mut report = report.unwrap_or_else(|e| failed_setup(&config, e));
    report.wall_ms = started.elapsed().as_millis() as u64;
    report
}

fn failed_setup(config: &SimConfig, why: String) -> SimReport {
    let mut r = empty_report(config);
    r.violations.push(Violation { invariant: Invariant::NoUnexpectedError, detail: format!("setup failed: {why}") });
    r
}

fn empty_report(config: &SimConfig) -> SimReport {
    SimReport {
        seed: config.seed,
        profile: config.profile.name.clone(),
        devices: config.workload.devices,
        sections: 0,
        two_servers: config.faults.two_servers,
        edits: 0,
        edits_by_kind: BTreeMap::new(),
        refused_locally: BTreeMap::new(),
        conflicts_by_kind: BTreeMap::new(),
        conflicts_by_rule: BTreeMap::new(),
        quarantined_points: 0,
        round_trips: 0,
        failed_round_trips: 0,
        bytes_up: 0,
        bytes_down: 0,
        bytes_repeated: 0,
        changes_raw_bytes: 0,
        changes_deflated_bytes: 0,
        change_floor_bytes: 0,
        changes: 0,
        refused_changes: 0,
        hostile_stored: 0,
        hostile_refused: 0,
        writes_stamped_ahead: 0,
        redecided_ahead: 0,
        ahead_contests: 0,
        probed_sections: 0,
        probed_behind_stamps: 0,
        stale_role_edits: 0,
        edit_to_visible: Latency::default(),
        edit_to_everyone: Latency::default(),
        edit_to_everyone_ms: Vec::new(),
        photos: None,
        scopes: None,
        faults: FaultCounts::default(),
        simulated_ms: 0,
        heal_ms: 0,
        heal_round_trips: 0,
        wall_ms: 0,
        converged: false,
        violations: Vec::new(),
        state_digest: String::new(),
        replay: crate::seeds::replay_command(config),
    }
}

fn run_in(config: SimConfig, dir: &Path, progress: &mut dyn FnMut(SimProgress)) -> Result<SimReport, String> {
    let mut sim = Sim::new(config, dir)?;
    sim.report_progress(progress);
    sim.setup()?;
    sim.plan_day();
    sim.phase = Phase::Day;
    sim.report_progress(progress);
    sim.run(progress);
    sim.phase = Phase::Check;
    sim.report_progress(progress);
    let (day_ms, edits) = (sim.day_ms, sim.stats.edits);
    let report = sim.check();
    progress(SimProgress {
        phase: Phase::Done,
        simulated_ms: report.simulated_ms,
        day_ms,
        edits,
        round_trips: report.round_trips,
    });
    Ok(report)
}

/// Who is who: office devices first, then crews of a foreman and up to three technicians.
fn roles(devices: usize) -> (usize, Vec<(String, Role, Option<usize>)>) {
    let office = if devices >= 16 { 2 } else { 1 }.min(devices.max(1));
    let mut out = Vec::new();
    for i in 0..office {
        out.push((format!("office-{}", i + 1), Role::Office, None));
    }
    let crew_devices = devices.saturating_sub(office);
    let crews = crew_devices.div_ceil(4).max(1);
    for i in 0..crew_devices {
        let (crew, k) = (i / 4, i % 4);
        let name = if k == 0 { format!("c{}-foreman", crew + 1) } else { format!("c{}-tech{k}", crew + 1) };
        out.push((name, if k == 0 { Role::Foreman } else { Role::Technician }, Some(crew)));
    }
    (crews, out)
}

impl Sim {
    fn new(config: SimConfig, dir: &Path) -> Result<Sim, String> {
        let mut rng = Rng::new(config.seed);
        let (crews, people) = roles(config.workload.devices);
        let plan = Plan::new(PROJECT, config.workload.sections, crews, config.workload.overlap, &mut rng.fork(1));
        let instances = if config.faults.two_servers { 2 } else { 1 };
        let hub_dir = dir.join("hub");
        std::fs::create_dir_all(&hub_dir).map_err(|e| e.to_string())?;
        let servers = Servers::open(&hub_dir, PROJECT, instances).map_err(|e| format!("hub: {e}"))?;
        let hub = servers.any().expect("just started").clone();
        hub.create_project(PROJECT, photos::project_config(&config.workload.photos)).map_err(|e| e.to_string())?;
        let mut devices = Vec::new();
        let mut roles_log = Vec::new();
        for (i, (name, role, crew)) in people.into_iter().enumerate() {
            hub.add_member_at(PROJECT, &name, role, EPOCH_MS).map_err(|e| e.to_string())?;
            roles_log.push(RoleChange { user: name.clone(), role: Some(role), at_ms: EPOCH_MS });
            let enrollment = hub.enroll_device(&name, &format!("{name}'s phone")).map_err(|e| e.to_string())?;
            let mut drng = rng.fork(100 + i as u64);
            let live = drng.chance(config.workload.live_channel);
            let link = if role == Role::Office { crate::profile::wifi() } else { config.profile.link.clone() };
            // A clock days off from the install on, that stays off: the hub's
            // time at each sync anchors its stamps, not its clock.
            let mut crng = rng.fork(300 + i as u64);
            let skew_ms = if crng.chance(config.faults.days_off_clocks) {
                let off = crng.range(24, 72) as i64 * HOUR as i64 + crng.below(HOUR) as i64;
                if crng.chance(0.5) { off } else { -off }
            } else {
                0
            };
            devices.push(Device {
                user: name.clone(),
                name,
                role,
                crew,
                install: 0,
                token: enrollment.token,
                device_id: enrollment.device_id,
                phone: phone(config.seed, i as u64),
                replica: None,
                engine: SyncEngine::new(config.sync),
                wake_generation: 0,
                session: None,
                sent_at: 0,
                skew_ms,
                link: Link::new(link),
                rng: drng,
                revoked: false,
                removed: false,
                forbidden_while_removed: false,
                live,
                live_instance: i % instances,
                acks: Vec::new(),
                round_at: 0,
                synced_through: 0,
                received: Received::default(),
                scope: None,
                window: 0,
            });
        }
        let mut scope_rng = Rng::new(config.seed ^ 0x5C0_9E5);
        let mut scope_figures = None;
        if let Some(w) = &config.scopes {
            let figures: &mut ScopeFigures = scope_figures.get_or_insert_with(ScopeFigures::default);
            let mut first_of_crew = HashSet::new();
            for dev in devices.iter_mut().filter(|d| d.role == Role::Technician) {
                let Some(crew) = dev.crew else { continue };
                let room = plan.sections_on(crew).saturating_sub(w.window.max(1));
                // A crew's first technician starts at the depot: the spur of
                // the crew before it overlaps its corridor.
                dev.window = if first_of_crew.insert(crew) { 0 } else { scope_rng.below(room as u64 + 1) as usize };
                let with_crew = scope_rng.chance(w.crew_subscription);
                dev.scope = Some(scope_for(&plan, w, crew, dev.window, with_crew));
                figures.scoped_devices += 1;
                figures.crew_subscribers += u64::from(with_crew);
            }
        }
        let day_ms = (config.workload.day_hours * HOUR as f64) as u64;
        Ok(Sim {
            config,
            dir: dir.to_owned(),
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            rng,
            servers,
            devices,
            plan,
            phase: Phase::Setup,
            day_ms,
            heal_started: 0,
            quiescent_at: None,
            faults_on: true,
            watch: None,
            stopping: false,
            sessions: 0,
            hub_calls: 0,
            last_growth: 0,
            bound_actors: HashSet::new(),
            uploaded: HashSet::new(),
            roles_log,
            hostile: None,
            stats: Stats::default(),
            violations: Vec::new(),
            photos: photos::PhotoDay::default(),
            scope_rng,
            scope_figures,
            assigned: Vec::new(),
        })
    }

    fn path(&self, d: usize) -> PathBuf {
        let dev = &self.devices[d];
        self.dir.join(format!("{}-{}.db", dev.name, dev.install))
    }

    fn schedule(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled { at: at.max(self.now), seq: self.seq, event }));
    }

    /// A change or document a device's committed cursor had moved past, sent
    /// to it again: the server ignored its cursor or the device lost it.
    fn check_received(&mut self, d: usize, response: &SyncResponse) {
        let scoped = self.devices[d].scope.is_some();
        let (again, example) = self.devices[d].received.commit(response, scoped);
        if scoped {
            let figures = self.scope_figures.get_or_insert_with(ScopeFigures::default);
            figures.documents += response.documents.len() as u64;
            figures.evicted += response.evicted.len() as u64;
            figures.keep_only += u64::from(response.keep_only.is_some());
        }
        self.stats.redelivered += again;
        if let Some(example) = example
            && self.stats.redelivered == again
        {
            let name = self.devices[d].name.clone();
            self.violation(
                Invariant::Efficiency,
                format!("{name} was sent {example} again after committing a cursor past it ({again} in that response)"),
            );
        }
    }

    /// Time the edits a committed response brings took to get here (a
    /// change delivered again counts once: its first arrival is kept).
    fn note_visible(&mut self, response: &SyncResponse) {
        for c in response.changes.iter().flat_map(|b| &b.changes) {
            let Ok(change) = automerge::Change::from_bytes(c.clone()) else { continue };
            let hash = change.hash().to_string();
            if let Some(&made) = self.stats.made_at.get(&hash) {
                let took = self.now.saturating_sub(made);
                self.stats.edit_to_visible.push(took);
                let latest = self.stats.edit_to_everyone.entry(hash).or_default();
                *latest = (*latest).max(took);
            }
        }
    }

    fn violation(&mut self, invariant: Invariant, detail: String) {
        if self.violations.len() < 50 {
            self.violations.push(Violation { invariant, detail });
        }
    }

    fn report_progress(&self, progress: &mut dyn FnMut(SimProgress)) {
        progress(SimProgress {
            phase: self.phase,
            simulated_ms: self.now,
            day_ms: self.day_ms,
            edits: self.stats.edits,
            round_trips: self.stats.round_trips,
        });
    }

    /// Device `d`'s clock shows its time now, before it acts.
    fn set_clock(&self, d: usize) {
        // No phone reboots during the day: its clock since boot is the true time.
        self.devices[d].phone.set_time(self.devices[d].wall(self.now), self.now);
    }

    // ---- setup: the morning at the depot ----

    fn open_device(&mut self, d: usize) -> Result<(), String> {
        self.set_clock(d);
        let path = self.path(d);
        let replica =
            self.devices[d].phone.open(&path, &self.devices[d].name).map_err(|e| format!("{}: {e}", path.display()))?;
        lock(&replica).join_project(PROJECT).map_err(|e| e.to_string())?;
        if let Some(scope) = self.devices[d].scope.clone() {
            // Kept in the store across restarts; a reinstall sets it again.
            let mut r = lock(&replica);
            if r.scope(PROJECT).map_err(|e| e.to_string())? != scope {
                r.set_scope(PROJECT, scope).map_err(|e| format!("setting its scope: {e}"))?;
            }
        }
        self.devices[d].replica = Some(replica);
        Ok(())
    }

    /// A sync over a perfect link, now (the depot's Wi-Fi; the final drain).
    fn direct_sync(&mut self, d: usize) -> Result<(), SyncError> {
        let Some(replica) = self.devices[d].replica.clone() else { return Ok(()) };
        let token = self.devices[d].token.clone();
        self.set_clock(d);
        let call = self.direct_round(replica, token, true)?;
        self.devices[d].synced_through = call;
        Ok(())
    }

    /// Sync `replica` as `token` over a perfect link, now (its clock set
    /// by the caller), on the first hub instance up; `count`: its bytes and
    /// rounds go into the stats. Returns the hub call it caught up to.
    fn direct_round(&mut self, replica: Arc<Mutex<Replica>>, token: String, count: bool) -> Result<u64, SyncError> {
        let Some(hub) = self.servers.any().cloned() else {
            return Err(SyncError::Transport(TransportError::Unreachable("no server up".into())));
        };
        let now = EPOCH_MS + self.now;
        let bytes = Arc::new(Mutex::new((0u64, 0u64, 0u64)));
        let counter = bytes.clone();
        let transport = move |body: Vec<u8>| -> Result<Vec<u8>, TransportError> {
            let answer = hub.sync(&token, &body, now).map_err(|e| transport_error(&e));
            let mut c = counter.lock().unwrap_or_else(|p| p.into_inner());
            c.0 += 1;
            c.1 += body.len() as u64;
            c.2 += answer.as_ref().map_or(0, |b| b.len() as u64);
            answer
        };
        let mut client = SyncClient::new(replica.clone(), Arc::new(transport));
        client.upload_budget = self.config.profile.upload_budget;
        client.response_budget = self.config.profile.response_budget;
        let result = client.sync_now();
        drop(client);
        self.hub_calls += 1;
        let call = self.hub_calls;
        let (rounds, up, down) = *bytes.lock().unwrap_or_else(|p| p.into_inner());
        if count {
            self.stats.round_trips += rounds;
            self.stats.bytes_up += up;
            self.stats.bytes_down += down;
        }
        for i in 0..self.servers.count() {
            if self.servers.feed_grew(i) {
                self.last_growth = call;
            }
        }
        result?;
        let actor = lock(&replica).actor();
        if self.bound_actors.insert(actor) {
            self.last_growth = call;
        }
        Ok(call)
    }

    fn setup(&mut self) -> Result<(), String> {
        for d in 0..self.devices.len() {
            self.open_device(d)?;
        }
        if self.rng.fork(3).chance(self.config.faults.hostile) {
            self.enroll_hostile()?;
        }
        // Everyone opens the app (binding its actor: the roster is complete
        // before any section exists, so no one recomputes views for it), the
        // office plans the sections, then everyone syncs at the depot.
        for d in 0..self.devices.len() {
            self.direct_sync(d).map_err(|e| format!("{}'s first sync: {e}", self.devices[d].name))?;
        }
        let office = self.devices[0].replica.clone().expect("opened");
        self.set_clock(0);
        for s in self.plan.sections.clone() {
            let name = format!("Route {} section {}", s.route + 1, s.id);
            lock(&office)
                .create_section_with_id(&s.id, PROJECT, &name, &s.points)
                .map_err(|e| format!("planning {}: {e}", s.id))?;
        }
        for d in 0..self.devices.len() {
            self.direct_sync(d).map_err(|e| format!("{}'s morning sync: {e}", self.devices[d].name))?;
        }
        Ok(())
    }

    /// The hostile device: a technician's enrolled phone, tampered with. Its
    /// first round binds its actor like any device's.
    fn enroll_hostile(&mut self) -> Result<(), String> {
        let hub = self.servers.any().cloned().ok_or("no hub is up")?;
        hub.add_member_at(PROJECT, hostile::USER, Role::Technician, EPOCH_MS).map_err(|e| e.to_string())?;
        self.roles_log.push(RoleChange { user: hostile::USER.into(), role: Some(Role::Technician), at_ms: EPOCH_MS });
        let enrollment = hub.enroll_device(hostile::USER, "mallory's phone").map_err(|e| e.to_string())?;
        let phone = phone(self.config.seed, u64::MAX);
        phone.set_time(EPOCH_MS, self.now);
        let path = self.dir.join(format!("{}.db", hostile::USER));
        let replica = phone.open(&path, hostile::USER).map_err(|e| format!("{}: {e}", path.display()))?;
        lock(&replica).join_project(PROJECT).map_err(|e| e.to_string())?;
        self.direct_round(replica.clone(), enrollment.token.clone(), false)
            .map_err(|e| format!("the hostile device's first sync: {e}"))?;
        self.hostile = Some(Hostile::new(enrollment.token, phone, replica, self.rng.fork(4)));
        Ok(())
    }

    // ---- the day's plan ----

    fn plan_day(&mut self) {
        let f = self.config.faults.clone();
        let day = self.day_ms;
        let mut rng = self.rng.fork(2);
        let wrong_clock = |rng: &mut Rng| {
            let off = rng.log_uniform(HOUR / 1000, 3 * 24 * HOUR / 1000) as i64 * 1000;
            if rng.chance(0.5) { off } else { -off }
        };
        for d in 0..self.devices.len() {
            let crew_device = self.devices[d].crew.is_some();
            let mut outages: Vec<(u64, u64)> = Vec::new();
            if crew_device {
                if self.config.profile.crews_offline_all_day || rng.chance(f.offline_all_day) {
                    outages.push((rng.range(5 * MINUTE, 30 * MINUTE), day + 1));
                }
                let n = poisson(&mut rng, f.outages_per_device);
                for _ in 0..n {
                    let start = rng.below(day);
                    let len = rng.log_uniform(f.outage_minutes.0.max(1), f.outage_minutes.1.max(1)) * MINUTE;
                    outages.push((start, (start + len).min(day + 1)));
                }
            }
            outages.sort_unstable();
            let mut merged: Vec<(u64, u64)> = Vec::new();
            for (s, e) in outages {
                match merged.last_mut() {
                    Some(last) if s <= last.1 => last.1 = last.1.max(e),
                    _ => merged.push((s, e)),
                }
            }
            for &(s, e) in &merged {
                if rng.chance(f.connectivity_hints) {
                    self.schedule(s, Event::Connectivity { device: d, online: false });
                    self.schedule(e, Event::Connectivity { device: d, online: true });
                }
            }
            self.stats.faults.outages += merged.len() as u64;
            self.devices[d].link.outages = merged;
            if self.devices[d].skew_ms != 0 {
                self.stats.faults.skewed_clocks += 1; // Days off since the install.
            }
            if rng.chance(f.skewed_clocks) {
                self.devices[d].skew_ms = wrong_clock(&mut rng);
                self.stats.faults.skewed_clocks += 1;
            }
            if rng.chance(f.clock_jumps) {
                let skew_ms = wrong_clock(&mut rng);
                self.schedule(rng.below(day), Event::ClockJump { device: d, skew_ms });
            }
            if d > 0 && rng.chance(f.reinstalls) {
                self.schedule(rng.below(day), Event::Reinstall { device: d });
            }
            if d > 0 && rng.chance(f.revocations) {
                self.schedule(rng.below(day), Event::Revoke { device: d });
            }
            let mean_gap = day as f64 / self.config.workload.edits_per_device.max(0.01);
            let first = self.devices[d].rng.exp(mean_gap) as u64;
            if first < day {
                self.schedule(first, Event::Edit { device: d });
            }
        }
        let crews = self.plan.crew_sections.len();
        for _ in 0..f.partitions {
            let crew = rng.below(crews as u64) as usize;
            let start = rng.below(day);
            let len = rng.log_uniform(f.partition_minutes.0.max(1), f.partition_minutes.1.max(1)) * MINUTE;
            for dev in self.devices.iter_mut().filter(|x| x.crew == Some(crew)) {
                dev.link.partitions.push((start, start + len));
            }
            self.stats.faults.partitions += 1;
        }
        for _ in 0..f.server_restarts {
            let instance = rng.below(self.servers.count() as u64) as usize;
            let down_ms = rng.log_uniform(10, 600) * 1000;
            self.schedule(rng.below(day), Event::ServerCrash { instance, down_ms });
        }
        // The administrator: role changes and removals (most added back
        // later), never of the office device that planned the day.
        let others = self.devices.len() as u64 - 1;
        if others > 0 {
            for _ in 0..poisson(&mut rng, f.role_changes) {
                let device = 1 + rng.below(others) as usize;
                self.schedule(rng.below(day), Event::Roster { device, what: RosterEvent::Change });
            }
            for _ in 0..poisson(&mut rng, f.removals) {
                let device = 1 + rng.below(others) as usize;
                let at = rng.below(day);
                self.schedule(at, Event::Roster { device, what: RosterEvent::Remove });
                let back = at + rng.log_uniform(10, 240) * MINUTE;
                if rng.chance(0.75) && back < day {
                    self.schedule(back, Event::Roster { device, what: RosterEvent::AddBack });
                }
            }
        }
        if self.hostile.is_some() {
            for _ in 0..2 + rng.below(4) {
                self.schedule(rng.below(day), Event::Attack);
            }
        }
        if let Some(w) = self.config.scopes.clone() {
            for d in 0..self.devices.len() {
                if self.devices[d].scope.is_some() {
                    for _ in 0..poisson(&mut self.scope_rng, w.moves) {
                        let at = self.scope_rng.below(day);
                        self.schedule(at, Event::ScopeMove { device: d });
                    }
                }
            }
            let crews = self.plan.routes() as u64;
            for _ in 0..poisson(&mut self.scope_rng, w.assignments) {
                let (at, crew) = (self.scope_rng.below(day), self.scope_rng.below(crews) as usize);
                self.schedule(at, Event::Assign { crew });
            }
        }
        self.plan_photos();
        self.schedule(day, Event::EndOfDay);
        self.schedule(PROGRESS_EVERY_MS, Event::Tick);
        for d in 0..self.devices.len() {
            // Background sync starts; its first round was the morning sync.
            let random = self.devices[d].rng.next_u64();
            let first = self.devices[d].engine.handle(SyncEvent::Started, 0, random);
            debug_assert_eq!(first, [fieldsync_core::SyncAction::StartRound]);
            self.engine_event(d, SyncEvent::RoundDone { more: false });
            if self.devices[d].link.offline_at(0) {
                self.engine_event(d, SyncEvent::Connectivity { online: false });
            }
        }
    }

    // ---- the loop ----

    fn run(&mut self, progress: &mut dyn FnMut(SimProgress)) {
        while let Some(Reverse(next)) = self.queue.pop() {
            self.now = next.at;
            match next.event {
                Event::Tick => {
                    self.report_progress(progress);
                    if !self.stopping {
                        self.schedule(self.now + PROGRESS_EVERY_MS, Event::Tick);
                    }
                }
                Event::EndOfDay => {
                    self.heal();
                    self.report_progress(progress);
                }
                Event::HealLimit => {
                    if self.quiescent_at.is_none() {
                        self.stopping = true;
                    }
                }
                e => self.handle(e),
            }
            if self.stopping && self.devices.iter().all(|d| d.session.is_none()) {
                break;
            }
        }
        // Whatever is still in flight is abandoned (sessions are killed on drop).
        for d in &mut self.devices {
            d.session = None;
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Timer { device, generation } => {
                if self.devices[device].wake_generation == generation && self.devices[device].alive() {
                    self.engine_event(device, SyncEvent::Timer);
                }
            }
            Event::Edit { device } => self.edit(device),
            Event::Arrive { device, session, body, token, actor, replay } => {
                self.arrive(device, session, body, &token, actor, replay)
            }
            Event::Answer { device, session, result } => {
                if self.devices[device].session.as_ref().is_some_and(|s| s.id == session) {
                    if result.is_err() {
                        self.stats.failed_round_trips += 1;
                    }
                    if let Err(TransportError::Server { status: 400, body }) = &result
                        && body.error == protocol::UNKNOWN_CURSOR
                    {
                        self.devices[device].received = Received::default(); // It starts over, legitimately.
                    }
                    let response = result.as_ref().ok().and_then(|b| protocol::decode_response(b).ok());
                    self.set_clock(device);
                    let step = self.devices[device].session.as_mut().expect("checked").answer(result);
                    // The client commits a response before it asks again or returns.
                    if let Some(response) = response
                        && matches!(step, Step::Request(_) | Step::Photo(_) | Step::Finished(Ok(_)))
                    {
                        self.check_received(device, &response);
                        self.note_visible(&response);
                    }
                    self.on_step(device, step);
                }
            }
            Event::Connectivity { device, online } => {
                if self.devices[device].alive() && !self.stopping {
                    self.engine_event(device, SyncEvent::Connectivity { online });
                    if online && self.devices[device].live {
                        // The live channel reconnects and nudges once.
                        self.engine_event(device, SyncEvent::Nudge);
                    }
                }
            }
            Event::Nudge { device } => {
                if self.devices[device].alive() && !self.stopping {
                    self.engine_event(device, SyncEvent::Nudge);
                }
            }
            Event::Kill { device, session } => {
                if self.devices[device].session.as_ref().is_some_and(|s| s.id == session) {
                    let s = self.devices[device].session.take().expect("checked");
                    s.kill();
                    self.stats.faults.kills_mid_sync += 1;
                    self.crash(device);
                }
            }
            Event::Reopen { device } => self.reopen(device),
            Event::Reinstall { device } => self.reinstall(device),
            Event::Revoke { device } => self.revoke(device),
            Event::ClockJump { device, skew_ms } => {
                self.devices[device].skew_ms = skew_ms;
                self.stats.faults.skewed_clocks += 1;
            }
            Event::Roster { device, what } => self.roster_event(device, what),
            Event::AppOpened { device } => {
                let dev = &self.devices[device];
                if dev.alive() && !dev.revoked && !dev.removed {
                    if dev.session.is_some() {
                        // Opened while a round is out: it looks again once that is over.
                        self.schedule(self.now + MINUTE, Event::AppOpened { device });
                    } else {
                        self.engine_event(device, SyncEvent::Nudge);
                    }
                }
            }
            Event::Attack => self.attack(),
            Event::ScopeMove { device } => self.move_scope(device),
            Event::Assign { crew } => self.assign(crew),
            Event::TakePhoto { device, size } => self.take_photo(device, size),
            Event::PhotoArrive { device, session, call } => self.photo_arrive(device, session, call),
            Event::PhotoAnswer { device, session, result, acked } => self.photo_answer(device, session, result, acked),
            Event::ServerCrash { instance, down_ms } => {
                if self.faults_on && self.servers.is_up(instance) {
                    self.stop_server(instance, down_ms);
                }
            }
            Event::ServerStart { instance } => {
                if let Err(e) = self.servers.start(instance) {
                    self.violation(Invariant::NoUnexpectedError, format!("the hub did not restart: {e}"));
                }
            }
            Event::Tick | Event::EndOfDay | Event::HealLimit => unreachable!("handled in run"),
        }
    }

    fn engine_event(&mut self, d: usize, event: SyncEvent) {
        let now = self.now;
        let dev = &mut self.devices[d];
        let random = dev.rng.next_u64();
        for action in dev.engine.handle(event, now, random) {
            match action {
                fieldsync_core::SyncAction::StartRound => self.start_session(d),
                fieldsync_core::SyncAction::WakeAt(t) => {
                    if !self.stopping {
                        let dev = &mut self.devices[d];
                        dev.wake_generation += 1;
                        let generation = dev.wake_generation;
                        self.schedule(t, Event::Timer { device: d, generation });
                    }
                }
            }
        }
    }

    fn start_session(&mut self, d: usize) {
        let Some(replica) = self.devices[d].replica.clone() else { return };
        self.sessions += 1;
        let id = self.sessions;
        self.set_clock(d);
        let (session, step) = Session::start_with_photos(
            id,
            replica,
            self.config.profile.upload_budget,
            self.config.profile.response_budget,
            self.photo_lane(d),
        );
        self.devices[d].session = Some(session);
        self.devices[d].round_at = 0;
        self.devices[d].forbidden_while_removed = false;
        if self.faults_on && self.devices[d].rng.chance(self.config.faults.kill_mid_sync) {
            let link = &self.devices[d].link.profile;
            let window = 2 * (link.up_latency_ms + link.down_latency_ms) + 2_000;
            let at = self.now + self.devices[d].rng.below(window);
            self.schedule(at, Event::Kill { device: d, session: id });
        }
        self.on_step(d, step);
    }

    fn on_step(&mut self, d: usize, step: Step) {
        match step {
            Step::Request(body) => self.send(d, body),
            Step::Photo(call) => self.send_photo(d, call),
            Step::Finished(result) => self.end_session(d, result),
            Step::Killed => {
                self.devices[d].session = None;
            }
            Step::Panicked(msg) => {
                let name = self.devices[d].name.clone();
                self.violation(Invariant::NoUnexpectedError, format!("{name}: the sync session panicked: {msg}"));
                self.devices[d].session = None;
                self.engine_event(d, SyncEvent::RoundFailed { retryable: true });
            }
        }
    }

    fn end_session(&mut self, d: usize, result: Result<fieldsync_core::SyncReport, SyncError>) {
        self.devices[d].session = None;
        match result {
            Ok(_) => {
                let dev = &mut self.devices[d];
                dev.synced_through = dev.synced_through.max(dev.round_at);
                self.engine_event(d, SyncEvent::RoundDone { more: false });
            }
            Err(e) => {
                let expected = match &e {
                    SyncError::Transport(TransportError::Unreachable(_)) => true,
                    SyncError::Transport(TransportError::Server { status: 401, .. }) => self.devices[d].revoked,
                    // Its user was removed from the project when the hub answered.
                    SyncError::Transport(TransportError::Server { status: 403, .. }) => {
                        self.devices[d].forbidden_while_removed
                    }
                    _ => false,
                };
                if !expected {
                    let name = self.devices[d].name.clone();
                    let invariant = if matches!(e, SyncError::TooManyRounds(_)) {
                        Invariant::Liveness
                    } else {
                        Invariant::NoUnexpectedError
                    };
                    self.violation(invariant, format!("{name}: sync failed: {e}"));
                }
                self.engine_event(d, SyncEvent::RoundFailed { retryable: e.retryable() });
            }
        }
        if self.phase == Phase::Heal && self.quiescent_at.is_none() && self.quiescent() {
            self.quiescent_at = Some(self.now);
            self.stopping = true;
        }
    }

    fn fail(&mut self, d: usize, session: u64, at: u64, why: &str) {
        let result = Err(TransportError::Unreachable(why.to_owned()));
        self.schedule(at, Event::Answer { device: d, session, result });
    }

    /// How much of an upload was sent before (re-sent after a cut), and the
    /// actor the request syncs as.
    fn repeated_share(&mut self, body: &[u8]) -> (u64, String) {
        let Ok(request) = protocol::decode::<SyncRequest>(body) else { return (0, String::new()) };
        let (mut total, mut again) = (0u64, 0u64);
        for batch in &request.upload {
            for c in &batch.changes {
                total += c.len() as u64;
                if !self.uploaded.insert(fnv(c, FNV_START)) {
                    again += c.len() as u64;
                }
            }
        }
        ((body.len() as u64 * again).checked_div(total).unwrap_or(0), request.actor)
    }

    fn send(&mut self, d: usize, body: Vec<u8>) {
        let now = self.now;
        let session = self.devices[d].session.as_ref().map_or(0, |s| s.id);
        self.stats.round_trips += 1;
        if self.phase == Phase::Heal {
            self.stats.heal_round_trips += 1;
        }
        let len = body.len() as u64;
        let (repeated, actor) = self.repeated_share(&body);
        self.stats.bytes_repeated += repeated;
        let dev = &mut self.devices[d];
        dev.sent_at = now;
        let timeout = dev.link.profile.timeout_ms;
        if dev.link.offline_at(now) {
            return self.fail(d, session, now + 20, "no network");
        }
        if dev.link.partitioned_at(now) {
            return self.fail(d, session, now + timeout.min(30_000), "connect timed out");
        }
        let up = dev.link.upload_ms(now, len, &mut dev.rng);
        let arrive = now + up;
        if let Some(cut) = dev.link.breaks_between(now, arrive) {
            let partial = len * (cut - now) / up.max(1);
            self.stats.bytes_up += partial;
            self.stats.bytes_repeated += partial;
            return self.fail(d, session, cut, "connection lost while sending");
        }
        if self.faults_on && dev.rng.chance(dev.link.profile.loss) {
            self.stats.bytes_up += len;
            self.stats.bytes_repeated += len;
            self.stats.faults.lost_requests += 1;
            return self.fail(d, session, now + timeout, "timed out");
        }
        self.stats.bytes_up += len;
        if self.faults_on && dev.rng.chance(self.config.faults.duplicate_requests) {
            let late = arrive + dev.rng.range(1_000, 10 * MINUTE);
            self.stats.faults.duplicated_requests += 1;
            let (body, actor) = (body.clone(), actor.clone());
            let token = self.devices[d].token.clone();
            self.schedule(late, Event::Arrive { device: d, session, body, token, actor, replay: true });
        }
        let token = self.devices[d].token.clone();
        self.schedule(arrive, Event::Arrive { device: d, session, body, token, actor, replay: false });
    }

    fn arrive(&mut self, d: usize, session: u64, mut body: Vec<u8>, token: &str, actor: String, replay: bool) {
        let now = self.now;
        let instance = if self.servers.count() > 1 { self.devices[d].rng.below(2) as usize } else { 0 };
        let down_latency = self.devices[d].link.profile.down_latency_ms;
        if !self.servers.is_up(instance) {
            if !replay {
                self.fail(d, session, now + down_latency, "connection refused");
            }
            return;
        }
        if self.config.inject == Some(InjectedBug::DropUpload)
            && !replay
            && self.devices[d].rng.chance(0.2)
            && let Ok(mut request) = protocol::decode::<SyncRequest>(&body)
        {
            request.upload.clear();
            body = protocol::encode(&request);
        }
        if self.config.inject == Some(InjectedBug::ForgetCursor)
            && let Ok(mut request) = protocol::decode::<SyncRequest>(&body)
        {
            request.cursor.clear();
            body = protocol::encode(&request);
        }
        // The hub dies during the round: half the time before its commit
        // (nothing stored), half after it (stored, never answered).
        let crash = !replay && self.faults_on && self.devices[d].rng.chance(self.config.faults.server_crash_mid_round);
        if crash && self.devices[d].rng.chance(0.5) {
            let down_ms = self.devices[d].rng.log_uniform(10, 300) * 1000;
            self.stop_server(instance, down_ms);
            return self.fail(d, session, now + down_latency, "connection reset by peer");
        }
        let mut result = self.servers.sync(instance, token, &body, EPOCH_MS + now).expect("checked up");
        self.hub_calls += 1;
        let call = self.hub_calls;
        let forbidden = matches!(&result, Err(TransportError::Server { status: 403, .. }));
        if forbidden && self.devices[d].removed && !replay {
            self.devices[d].forbidden_while_removed = true;
        }
        if result.is_ok() && self.bound_actors.insert(actor) {
            // A new actor in the roster: every device must hear of it.
            self.last_growth = call;
        }
        if self.servers.feed_grew(instance) {
            self.last_growth = call;
            for (e, dev) in self.devices.iter().enumerate() {
                let listening =
                    dev.live && dev.live_instance == instance && dev.alive() && !dev.revoked && !dev.removed;
                if listening && !dev.link.offline_at(now) && !dev.link.partitioned_at(now) {
                    let at = now + dev.link.profile.down_latency_ms;
                    self.seq += 1;
                    self.queue.push(Reverse(Scheduled { at, seq: self.seq, event: Event::Nudge { device: e } }));
                }
            }
        }
        // A late duplicate's answer goes nowhere: judge it here (the device's
        // own session judges the answers it gets when its sync ends). A 401 is
        // fine for it: the device may have been revoked or re-enrolled since.
        if let Err(TransportError::Server { status, body }) = &result
            && replay
            && *status != 401
            && !(*status == 403 && self.devices[d].removed)
        {
            let name = self.devices[d].name.clone();
            let what = format!(
                "{name}: the hub answered {status} {} to a late duplicate of a correct request: {}",
                body.error, body.message
            );
            self.violation(Invariant::NoUnexpectedError, what);
        }
        if replay {
            return;
        }
        if result.is_ok() {
            self.devices[d].round_at = call;
        }
        if crash {
            let down_ms = self.devices[d].rng.log_uniform(10, 300) * 1000;
            self.stop_server(instance, down_ms);
            return self.fail(d, session, now + down_latency, "connection reset by peer");
        }
        if self.config.inject == Some(InjectedBug::ForgetEvictions)
            && let Ok(bytes) = &result
            && let Ok(mut response) = protocol::decode_response(bytes)
            && (!response.evicted.is_empty() || response.keep_only.is_some())
        {
            response.evicted.clear();
            response.keep_only = None;
            result = Ok(protocol::encode(&response));
        }
        if self.config.inject == Some(InjectedBug::DropChanges)
            && let Ok(bytes) = &result
            && self.devices[d].rng.chance(0.2)
            && let Ok(mut response) = protocol::decode_response(bytes)
            && response.changes.pop().is_some()
        {
            result = Ok(protocol::encode(&response));
        }
        let len = match &result {
            Ok(b) => b.len() as u64,
            Err(TransportError::Server { body, .. }) => serde_json::to_vec(body).map_or(200, |b| b.len() as u64),
            Err(_) => 0,
        };
        let dev = &mut self.devices[d];
        let deadline = dev.sent_at + dev.link.profile.timeout_ms;
        let down = dev.link.download_ms(now, len, &mut dev.rng);
        let done = now + down;
        let partial_at = |t: u64| len * t.saturating_sub(now) / down.max(1);
        if done > deadline {
            let p = partial_at(deadline);
            self.stats.bytes_down += p;
            self.stats.bytes_repeated += p;
            self.stats.faults.lost_responses += 1;
            return self.fail(d, session, deadline, "timed out");
        }
        if let Some(cut) = dev.link.breaks_between(now, done) {
            let p = partial_at(cut);
            self.stats.bytes_down += p;
            self.stats.bytes_repeated += p;
            self.stats.faults.cut_responses += 1;
            return self.fail(d, session, cut, "connection lost mid-response");
        }
        if self.faults_on && dev.rng.chance(self.config.faults.cut_responses) {
            let cut = now + dev.rng.below(down.max(1));
            let p = partial_at(cut);
            self.stats.bytes_down += p;
            self.stats.bytes_repeated += p;
            self.stats.faults.cut_responses += 1;
            return self.fail(d, session, cut, "response cut off");
        }
        if self.faults_on && dev.rng.chance(dev.link.profile.loss) {
            self.stats.bytes_repeated += len;
            self.stats.faults.lost_responses += 1;
            return self.fail(d, session, deadline, "timed out");
        }
        self.stats.bytes_down += len;
        self.schedule(done, Event::Answer { device: d, session, result });
    }

    fn stop_server(&mut self, instance: usize, down_ms: u64) {
        if let Err(e) = self.servers.stop(instance) {
            self.violation(Invariant::NoUnexpectedError, format!("stopping the hub: {e}"));
        }
        self.stats.faults.server_restarts += 1;
        self.schedule(self.now + down_ms, Event::ServerStart { instance });
    }

    // ---- device faults ----

    fn crash(&mut self, d: usize) {
        self.devices[d].session = None;
        if let Some(replica) = self.devices[d].replica.take()
            && let Err(e) = device::crash(replica)
        {
            let name = self.devices[d].name.clone();
            self.violation(Invariant::NoUnexpectedError, format!("{name}: crashing the app: {e}"));
        }
        let back = self.now + self.devices[d].rng.range(20_000, 5 * MINUTE);
        self.schedule(back, Event::Reopen { device: d });
    }

    fn reopen(&mut self, d: usize) {
        if self.devices[d].alive() {
            return;
        }
        if let Err(e) = self.open_device(d) {
            let name = self.devices[d].name.clone();
            self.violation(Invariant::NoUnexpectedError, format!("{name}: the store did not reopen: {e}"));
            return;
        }
        self.devices[d].engine = SyncEngine::new(self.config.sync);
        if self.devices[d].link.offline_at(self.now) {
            self.engine_event(d, SyncEvent::Connectivity { online: false });
        }
        self.engine_event(d, SyncEvent::Started);
    }

    fn reinstall(&mut self, d: usize) {
        if !self.faults_on || self.devices[d].revoked || !self.devices[d].alive() {
            return;
        }
        self.devices[d].session = None; // The app is gone, mid-request or not.
        let replica = self.devices[d].replica.take().expect("alive");
        // Acknowledged edits the server never confirmed go with the wiped store.
        let unsent: HashSet<String> =
            lock(&replica).outbox(usize::MAX).map(|o| o.into_iter().map(|c| c.hash).collect()).unwrap_or_default();
        let install = self.devices[d].install;
        for a in self.devices[d].acks.iter_mut().filter(|a| a.install == install && unsent.contains(&a.hash)) {
            a.wiped = true;
        }
        drop(replica);
        self.photos_wiped(d);
        device::wipe(&self.path(d));
        self.devices[d].install += 1;
        self.devices[d].received = Received::default();
        if self.devices[d].rng.chance(0.5)
            && let Some(hub) = self.servers.any()
        {
            let dev = &self.devices[d];
            match hub.enroll_device(&dev.user, &format!("{}'s phone (reinstalled)", dev.name)) {
                Ok(e) => {
                    let dev = &mut self.devices[d];
                    dev.token = e.token;
                    dev.device_id = e.device_id;
                }
                Err(e) => self.violation(Invariant::NoUnexpectedError, format!("enrolling again: {e}")),
            }
        }
        self.stats.faults.reinstalls += 1;
        if let Err(e) = self.open_device(d) {
            self.violation(Invariant::NoUnexpectedError, format!("reinstall: {e}"));
            return;
        }
        self.devices[d].engine = SyncEngine::new(self.config.sync);
        if self.devices[d].link.offline_at(self.now) {
            self.engine_event(d, SyncEvent::Connectivity { online: false });
        }
        self.engine_event(d, SyncEvent::Started);
    }

    fn revoke(&mut self, d: usize) {
        if !self.faults_on || self.devices[d].revoked {
            return;
        }
        let Some(hub) = self.servers.any().cloned() else {
            return self.schedule(self.now + MINUTE, Event::Revoke { device: d });
        };
        match hub.revoke_device(&self.devices[d].device_id) {
            Ok(()) => {
                self.devices[d].revoked = true;
                self.stats.faults.revocations += 1;
            }
            Err(e) => self.violation(Invariant::NoUnexpectedError, format!("revoking: {e}")),
        }
    }

    // ---- the administrator ----

    /// A role change, removal or addition back of device `d`'s user, made
    /// at the hub's time; the hub's decisions on the writes it holds are
    /// compared right before and right after it (`stable_history`).
    fn roster_event(&mut self, d: usize, what: RosterEvent) {
        let dev = &mut self.devices[d];
        let role = match what {
            RosterEvent::Change if !dev.removed => Some(match dev.role {
                Role::Technician => Role::Foreman,
                Role::Foreman if dev.rng.chance(0.2) => Role::Office,
                Role::Foreman => Role::Technician,
                Role::Office => Role::Foreman,
            }),
            RosterEvent::Remove if !dev.removed => None,
            RosterEvent::AddBack if dev.removed => Some(dev.role),
            _ => return,
        };
        let Some(hub) = self.servers.any().cloned() else {
            return self.schedule(self.now + MINUTE, Event::Roster { device: d, what });
        };
        let before = invariants::hub_audit(&hub, &self.servers.dir, PROJECT);
        let user = self.devices[d].user.clone();
        let at_ms = EPOCH_MS + self.now;
        let recorded = if self.config.inject == Some(InjectedBug::BackdateRoles) { EPOCH_MS } else { at_ms };
        let done = match role {
            Some(r) => hub.add_member_at(PROJECT, &user, r, recorded),
            None => hub.remove_member_at(PROJECT, &user, recorded),
        };
        if let Err(e) = done {
            return self.violation(Invariant::NoUnexpectedError, format!("changing {user}'s role: {e}"));
        }
        match (what, role) {
            (RosterEvent::Change, Some(r)) => {
                self.devices[d].role = r;
                self.stats.faults.role_changes += 1;
            }
            (RosterEvent::Remove, _) => {
                self.devices[d].removed = true;
                self.stats.faults.removals += 1;
            }
            _ => {
                // Added back: the user is told and opens the app, which syncs
                // again (a round refused with 403 stopped its background sync).
                self.devices[d].removed = false;
                let later = self.now + self.devices[d].rng.range(MINUTE, 30 * MINUTE);
                self.schedule(later, Event::AppOpened { device: d });
            }
        }
        let change = RoleChange { user, role, at_ms };
        self.roles_log.push(change.clone());
        // Roster news: every device must hear of it before the run is quiescent.
        self.hub_calls += 1;
        self.last_growth = self.hub_calls;
        let after = invariants::hub_audit(&hub, &self.servers.dir, PROJECT);
        let (before, after) = match (before, after) {
            (Ok(b), Ok(a)) => (b, a),
            (Err(e), _) | (_, Err(e)) => {
                return self.violation(Invariant::NoUnexpectedError, format!("reading the hub's audit: {e}"));
            }
        };
        let diff = invariants::compare_audits(&before, &after, &change);
        for what in diff.redecided.iter().take(3) {
            self.violation(Invariant::StableHistory, format!("a role change re-decided history: {what}"));
        }
        self.stats.redecided_ahead += diff.redecided_ahead.len() as u64;
        for what in diff.redecided_ahead.iter().take(3) {
            self.violation(
                Invariant::StableHistory,
                format!("a role change re-decided a write stamped ahead of the hub's clock: {what}"),
            );
        }
        for what in after.stale_conflicts.iter().take(3) {
            self.violation(
                Invariant::StableHistory,
                format!(
                    "after a role change the hub's conflict records are not the rules' over its role history: {what}"
                ),
            );
        }
    }

    // ---- the hostile device ----

    /// The hostile device syncs honestly (to learn the documents), then sends
    /// one rule-breaking change and one malformed request, and the hub's
    /// answers are checked (`hostile`).
    fn attack(&mut self) {
        let Some(mut h) = self.hostile.take() else { return };
        if let Err(e) = self.attack_with(&mut h) {
            self.violation(Invariant::Hostile, e);
        }
        self.hostile = Some(h);
    }

    fn attack_with(&mut self, h: &mut Hostile) -> Result<(), String> {
        let instances: Vec<usize> = (0..self.servers.count()).filter(|i| self.servers.is_up(*i)).collect();
        if instances.is_empty() {
            return Ok(()); // Nothing to attack now.
        }
        let instance = *h.rng.pick(&instances);
        let now_ms = EPOCH_MS + self.now;
        h.phone.set_time(now_ms, self.now);
        self.direct_round(h.replica.clone(), h.token.clone(), false)
            .map_err(|e| format!("the hostile device's honest sync failed: {e}"))?;
        let sections: Vec<String> = lock(&h.replica)
            .list_sections(Some(PROJECT), None, usize::MAX)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|s| s.id)
            .collect();
        if sections.is_empty() {
            return Ok(());
        }
        let section = h.rng.pick(&sections).clone();
        let roster = h.roster(PROJECT)?;
        let request = h.request(PROJECT)?;

        // A well-formed change that breaks a rule: stored, and a rejection.
        let doc = h.document(&section)?;
        let hlc = h.stamp(now_ms);
        let broken = hostile::rule_break(&doc, &section, &roster, &self.plan.config, &hlc, &mut h.rng)?;
        let mut r = request.clone();
        r.upload = vec![protocol::SectionBatch::upload(section.clone(), vec![broken.bytes.clone()])];
        self.stats.faults.hostile_requests += 1;
        match self.hostile_call(instance, &h.token, &protocol::encode(&r)) {
            Ok(_) => {}
            Err(e) => return Err(format!("{} in {section} was not stored: {e}", broken.what)),
        }
        h.stored.entry(section.clone()).or_default().push(broken.bytes.clone());
        let hub = self.servers.hub(instance).cloned().ok_or("the hub went down")?;
        let conflicts = hub.conflicts(PROJECT).map_err(|e| e.to_string())?;
        let rejection = conflicts.iter().find(|c| {
            c.kind == fieldsync_core::ConflictKind::Rejection
                && c.candidates.iter().any(|x| x.edit_id == broken.edit_id)
                && c.winner.as_deref() != Some(broken.edit_id.as_str())
        });
        match rejection {
            Some(c) if c.rule == broken.rule => self.stats.hostile_stored += 1,
            Some(c) => {
                return Err(format!(
                    "{} in {section} was rejected under {}, where the device's rules said {}",
                    broken.what,
                    c.rule.as_str(),
                    broken.rule.as_str()
                ));
            }
            None => return Err(format!("{} in {section} was stored but shows no rejection", broken.what)),
        }

        // A malformed request: refused with a 4xx, nothing changed.
        let doc = h.document(&section)?;
        let hlc = h.stamp(now_ms);
        let has_sent = !h.stored.is_empty();
        let bad = match hostile::malformed(&doc, &section, &roster, &request, &hlc, has_sent, &mut h.rng) {
            Ok(bad) => bad,
            Err(_) => return Ok(()), // Nothing of that kind to forge in this section.
        };
        let before = hostile::hub_digest(&self.servers.dir)?;
        self.stats.faults.hostile_requests += 1;
        let answer = self.hostile_call(instance, &h.token, &bad.body);
        let after = hostile::hub_digest(&self.servers.dir)?;
        match answer {
            Ok(_) => return Err(format!("{} in {section} was answered 200", bad.what)),
            Err(TransportError::Server { status, body }) => {
                if status != bad.status {
                    return Err(format!(
                        "{} in {section} was answered {status} {} ({}), not {}",
                        body.error, body.message, bad.status, bad.what
                    ));
                }
                if let Some(rule) = bad.rule
                    && (body.refusals.is_empty() || body.refusals.iter().any(|x| x.rule.as_deref() != rule))
                {
                    return Err(format!(
                        "{} in {section} was refused with {:?}, not the rule {rule:?}",
                        bad.what,
                        body.refusals.iter().map(|x| x.rule.clone()).collect::<Vec<_>>()
                    ));
                }
            }
            Err(e) => return Err(format!("{} in {section}: {e}", bad.what)),
        }
        if before != after {
            return Err(format!("{} in {section} was refused but changed what the hub stores", bad.what));
        }
        self.stats.hostile_refused += 1;
        Ok(())
    }

    /// One hostile request to hub instance `instance`, at the hub's time now.
    fn hostile_call(&mut self, instance: usize, token: &str, body: &[u8]) -> Result<Vec<u8>, TransportError> {
        let result = self
            .servers
            .sync(instance, token, body, EPOCH_MS + self.now)
            .unwrap_or_else(|| Err(TransportError::Unreachable("the hub is down".into())));
        self.hub_calls += 1;
        let call = self.hub_calls;
        if self.servers.feed_grew(instance) {
            self.last_growth = call;
        }
        result
    }

    /// The injected `drop-held-section`: the first scoped device still
    /// syncing forgets its first section (every row of it), as a replica
    /// that dropped a section its scope covers would be left.
    fn drop_a_held_section(&mut self) {
        let usable = |dev: &Device| dev.scope.is_some() && dev.alive() && !dev.revoked && !dev.removed;
        let Some(dev) = self.devices.iter().find(|d| usable(d)) else { return };
        let r = lock(dev.replica.as_ref().expect("usable"));
        let Ok(Some(first)) = r.list_sections(Some(PROJECT), None, 1).map(|l| l.into_iter().next()) else { return };
        for table in ["changes", "local_edits", "conflicts", "receipts", "evictions"] {
            let _ = r.connection().execute(&format!("DELETE FROM {table} WHERE section = ?1"), [&first.id]);
        }
        let _ = r.connection().execute("DELETE FROM sections WHERE id = ?1", [&first.id]);
    }

    // ---- no frozen section ----

    /// After the heal, a foreman's device (on a copy of its store) moves
    /// every section on by one valid transition: forward one step, unblock,
    /// or rework from `completed`. Returns the sections moved and what failed.
    fn probe_frozen(&mut self) -> (u64, u64, Vec<Violation>) {
        let usable = |dev: &Device| dev.alive() && !dev.revoked && !dev.removed;
        let prober = (0..self.devices.len())
            .find(|&d| usable(&self.devices[d]) && self.devices[d].role == Role::Foreman)
            .or_else(|| {
                (0..self.devices.len()).find(|&d| usable(&self.devices[d]) && self.devices[d].role >= Role::Foreman)
            });
        let Some(d) = prober else { return (0, 0, Vec::new()) };
        let name = self.devices[d].name.clone();
        let fail = |what: String| vec![Violation { invariant: Invariant::NoUnexpectedError, detail: what }];
        let copy = self.dir.join("probe.db");
        let replica = self.devices[d].replica.clone().expect("usable");
        if let Err(e) = lock(&replica).connection().execute("VACUUM INTO ?1", [copy.to_string_lossy()]) {
            return (0, 0, fail(format!("{name}: copying its store for the probe: {e}")));
        }
        self.set_clock(d);
        let probe = match self.devices[d].phone.open(&copy, &name) {
            Ok(p) => p,
            Err(e) => return (0, 0, fail(format!("{name}: opening the probe's copy: {e}"))),
        };
        let mut p = lock(&probe);
        let ids: Vec<String> = match p.list_sections(Some(PROJECT), None, usize::MAX) {
            Ok(list) => list.into_iter().map(|s| s.id).collect(),
            Err(e) => return (0, 0, fail(format!("{name}: listing the probe's sections: {e}"))),
        };
        let (mut moved, mut behind) = (0, 0);
        let mut found = Vec::new();
        let stamp = |id: &str| id.parse::<fieldsync_core::Hlc>().map_or(0, |h| h.physical_ms);
        for id in ids {
            let Ok(view) = p.section(&id) else { continue };
            let target = match (view.state, view.state.step(), &view.blocked) {
                (ConstructionState::Blocked, _, Some(b)) => b.resume_to,
                (_, Some(s), _) if s + 1 < FORWARD.len() => FORWARD[s + 1],
                (_, Some(s), _) if s >= 1 => FORWARD[s - 1],
                _ => continue,
            };
            let outcome = p.transition(&id, target, None);
            let now = p.section(&id).map(|v| v.state).ok();
            match outcome {
                Ok(receipt) if now == Some(target) => {
                    moved += 1;
                    // A transition of the chain stamped after the probe's: a
                    // fold in stamp order would have judged the probe against
                    // an older state and refused it as stale.
                    let mine = stamp(&receipt.edit_id);
                    behind += u64::from(view.events.iter().any(|e| stamp(&e.edit_id) > mine));
                }
                Ok(_) => found.push(Violation {
                    invariant: Invariant::NoFrozenSection,
                    detail: format!(
                        "section {id}: {name}'s transition {} → {} was accepted but the section shows {:?}",
                        view.state.as_str(),
                        target.as_str(),
                        now
                    ),
                }),
                Err(e) => found.push(Violation {
                    invariant: Invariant::NoFrozenSection,
                    detail: format!(
                        "section {id} is frozen: {name}'s transition {} → {} was refused: {e}",
                        view.state.as_str(),
                        target.as_str()
                    ),
                }),
            }
        }
        found.truncate(8);
        (moved, behind, found)
    }

    // ---- the workload ----

    fn edit(&mut self, d: usize) {
        let mean_gap = self.day_ms as f64 / self.config.workload.edits_per_device.max(0.01);
        let next = self.now + self.devices[d].rng.exp(mean_gap) as u64 + 1;
        if next < self.day_ms {
            self.schedule(next, Event::Edit { device: d });
        }
        if !self.devices[d].alive() {
            return;
        }
        let ids: Vec<String> = match (self.devices[d].crew, &self.devices[d].replica) {
            // A partial replica offers the sections it holds.
            (_, Some(replica)) if self.devices[d].scope.is_some() => {
                let listed = lock(replica).list_sections(Some(PROJECT), None, usize::MAX);
                match listed {
                    Ok(list) => list.into_iter().map(|s| s.id).collect(),
                    Err(e) => {
                        let name = self.devices[d].name.clone();
                        return self.violation(Invariant::NoUnexpectedError, format!("{name}: listing sections: {e}"));
                    }
                }
            }
            (Some(c), _) => self.plan.crew_sections[c].clone(),
            (None, _) => self.plan.sections.iter().map(|s| s.id.clone()).collect(),
        };
        if ids.is_empty() {
            return;
        }
        // What the app offers follows the role its roster says, stale or not.
        let local_role = self.devices[d].replica.as_ref().and_then(|r| lock(r).role_in(PROJECT).ok().flatten());
        let dev = &mut self.devices[d];
        let role = local_role.unwrap_or(dev.role);
        // The device has not heard of its user's last role change (or removal).
        let stale = local_role != (!dev.removed).then_some(dev.role);
        let section = dev.rng.pick(&ids).clone();
        let kind = EditKind::draw(role, self.config.workload.off_route, &mut dev.rng);
        let kill = self.faults_on && dev.rng.chance(self.config.faults.kill_mid_write);
        if kill && dev.rng.chance(0.5) {
            // Killed inside the write's transaction: as if it never happened.
            self.stats.faults.kills_mid_write += 1;
            return self.crash(d);
        }
        self.set_clock(d);
        let name = self.devices[d].name.clone();
        let replica = self.devices[d].replica.clone().expect("alive");
        let mut r = lock(&replica);
        let view = match r.section(&section) {
            Ok(v) => v,
            Err(ReplicaError::UnknownSection(_)) => return, // Not synced here yet.
            Err(e) => {
                drop(r);
                return self.violation(Invariant::NoUnexpectedError, format!("{name}: reading {section}: {e}"));
            }
        };
        let outcome = workload::perform(kind, &mut r, &view, &mut self.plan, &name, &mut self.devices[d].rng);
        drop(r);
        drop(replica);
        match outcome {
            Ok(Some(done)) => {
                if kill {
                    // Killed after the commit, before the call returned: stored, never acknowledged.
                    self.stats.faults.kills_mid_write += 1;
                    return self.crash(d);
                }
                self.stats.edits += 1;
                self.stats.stale_role_edits += u64::from(stale);
                *self.stats.edits_by_kind.entry(kind.as_str().to_owned()).or_default() += 1;
                let install = self.devices[d].install;
                self.stats.made_at.insert(done.change_hash.clone(), self.now);
                self.devices[d].acks.push(Ack { section: done.section, hash: done.change_hash, install, wiped: false });
                self.engine_event(d, SyncEvent::LocalEdit);
            }
            Ok(None) => {}
            Err(ReplicaError::Refused { rule, .. }) => {
                *self.stats.refused_locally.entry(rule.as_str().to_owned()).or_default() += 1;
            }
            Err(ReplicaError::UnknownSection(_)) => {}
            Err(e) => {
                self.violation(Invariant::NoUnexpectedError, format!("{name}: {} on {section}: {e}", kind.as_str()))
            }
        }
    }

    // ---- partial scopes ----

    /// A technician moves its corridor to another window of its route, online
    /// or not: the replica takes the new scope at once and sends it next round.
    fn move_scope(&mut self, d: usize) {
        let Some(w) = self.config.scopes.clone() else { return };
        let dev = &self.devices[d];
        let (Some(crew), Some(Scope::Only(old)), Some(replica)) = (dev.crew, &dev.scope, dev.replica.clone()) else {
            return;
        };
        if dev.revoked {
            return;
        }
        let with_crew = old.iter().any(|s| matches!(s, Subscription::Crew(_)));
        let room = self.plan.sections_on(crew).saturating_sub(w.window.max(1)) as u64;
        let mut window = self.scope_rng.below(room + 1) as usize;
        if window == dev.window && room > 0 {
            window = (window + 1 + self.scope_rng.below(room) as usize) % (room as usize + 1);
        }
        let scope = scope_for(&self.plan, &w, crew, window, with_crew);
        let offline = dev.link.offline_at(self.now) || dev.link.partitioned_at(self.now);
        self.set_clock(d);
        let outcome = lock(&replica).set_scope(PROJECT, scope.clone());
        if let Err(e) = outcome {
            let name = self.devices[d].name.clone();
            return self.violation(Invariant::NoUnexpectedError, format!("{name}: moving its corridor: {e}"));
        }
        let dev = &mut self.devices[d];
        dev.scope = Some(scope);
        dev.window = window;
        let figures = self.scope_figures.get_or_insert_with(ScopeFigures::default);
        figures.moves += 1;
        figures.moves_offline += u64::from(offline);
        // The app asks for a sync, as after an edit.
        self.engine_event(d, SyncEvent::LocalEdit);
    }

    /// The office (the device that planned the day) assigns a section to a crew.
    fn assign(&mut self, crew: usize) {
        let Some(office) = self.devices[0].replica.clone() else { return };
        if self.plan.sections.is_empty() {
            return;
        }
        let section = if !self.assigned.is_empty() && self.scope_rng.chance(0.5) {
            self.scope_rng.pick(&self.assigned).clone()
        } else {
            self.scope_rng.pick(&self.plan.sections).id.clone()
        };
        self.set_clock(0);
        let outcome = lock(&office).assign_crew(&section, &crew_name(crew));
        drop(office);
        match outcome {
            Ok(receipt) => {
                self.stats.edits += 1;
                *self.stats.edits_by_kind.entry("assign_crew".into()).or_default() += 1;
                self.stats.made_at.insert(receipt.change_hash.clone(), self.now);
                let install = self.devices[0].install;
                self.devices[0].acks.push(Ack {
                    section: receipt.section,
                    hash: receipt.change_hash,
                    install,
                    wiped: false,
                });
                self.scope_figures.get_or_insert_with(ScopeFigures::default).assignments += 1;
                self.assigned.push(section);
                self.engine_event(0, SyncEvent::LocalEdit);
            }
            Err(ReplicaError::Refused { rule, .. }) => {
                *self.stats.refused_locally.entry(rule.as_str().to_owned()).or_default() += 1;
            }
            Err(ReplicaError::UnknownSection(_)) => {}
            Err(e) => self.violation(Invariant::NoUnexpectedError, format!("office: assigning {section}: {e}")),
        }
    }

    /// Whether device `d`'s change of scope is finished (always, for a
    /// device holding everything): the server has answered the scope it
    /// wants to its end, so what it holds follows that scope.
    fn scope_settled(&self, d: usize) -> bool {
        let dev = &self.devices[d];
        let (Some(_), Some(replica)) = (&dev.scope, &dev.replica) else { return true };
        scope_settled(&lock(replica))
    }

    // ---- healing ----

    fn heal(&mut self) {
        self.phase = Phase::Heal;
        self.faults_on = false;
        self.heal_started = self.now;
        let healed = self.reach_depot().unwrap_or(LinkProfile { loss: 0.0, ..self.config.profile.link.clone() });
        for dev in &mut self.devices {
            dev.link.heal(self.now);
            if dev.crew.is_some() {
                dev.link.set_profile(healed.clone());
            }
        }
        for i in 0..self.servers.count() {
            if let Err(e) = self.servers.start(i) {
                self.violation(Invariant::NoUnexpectedError, format!("the hub did not restart: {e}"));
            }
        }
        for d in 0..self.devices.len() {
            self.reopen(d);
            // An app told it was offline hears that the network is back;
            // the others go on with their timers and backoff.
            if self.devices[d].alive() && !self.devices[d].engine.online() {
                self.engine_event(d, SyncEvent::Connectivity { online: true });
            }
        }
        self.schedule(self.now + self.config.heal_limit_ms, Event::HealLimit);
    }

    fn pending(&self, d: usize) -> i64 {
        self.devices[d].replica.as_ref().map_or(0, |r| lock(r).outbox_stats().map_or(1, |s| s.0))
    }

    fn quiescent(&self) -> bool {
        let watched = || (0..self.devices.len()).filter(|d| self.watch.is_none_or(|w| w == *d));
        // The cheap conditions first: the outboxes are read only when everyone looks done.
        watched().all(|d| {
            let dev = &self.devices[d];
            dev.revoked
                || dev.removed
                || (dev.alive() && dev.session.is_none() && dev.synced_through >= self.last_growth)
        }) && watched().all(|d| self.devices[d].revoked || self.devices[d].removed || self.pending(d) == 0)
            && watched().all(|d| self.photos_settled(d))
            && watched().all(|d| self.devices[d].revoked || self.devices[d].removed || self.scope_settled(d))
    }

    // ---- checks ----

    fn check(mut self) -> SimReport {
        let stuck: Vec<String> = (0..self.devices.len())
            .filter(|&d| {
                let dev = &self.devices[d];
                !dev.revoked
                    && !dev.removed
                    && (!dev.alive() || dev.synced_through < self.last_growth || self.pending(d) > 0)
            })
            .map(|d| {
                let dev = &self.devices[d];
                let behind = if dev.synced_through < self.last_growth { ", behind the server" } else { "" };
                format!("{} ({} pending{behind})", dev.name, self.pending(d))
            })
            .collect();
        if self.quiescent_at.is_none() && !stuck.is_empty() {
            let limit = self.config.heal_limit_ms / MINUTE;
            self.violation(
                Invariant::Liveness,
                format!("not drained {limit} min after the network healed: {}", stuck.join(", ")),
            );
        }
        let end = self.quiescent_at.unwrap_or(self.now);
        // Whatever liveness said, drain now over a perfect link so that
        // convergence is judged on its own.
        for _pass in 0..3 {
            if self.quiescent() {
                break;
            }
            for d in 0..self.devices.len() {
                if !self.devices[d].revoked && !self.devices[d].removed {
                    self.reopen(d);
                    if let Err(e) = self.direct_sync(d) {
                        let name = self.devices[d].name.clone();
                        self.violation(Invariant::Liveness, format!("{name}: the final drain failed: {e}"));
                    }
                }
            }
        }
        if self.config.inject == Some(InjectedBug::DropHeldSection) {
            self.drop_a_held_section();
        }
        let subjects: Vec<Subject<'_>> = self
            .devices
            .iter()
            .map(|d| Subject {
                name: &d.name,
                replica: d.replica.as_ref(),
                revoked: d.revoked,
                removed: d.removed,
                acks: &d.acks,
            })
            .collect();
        let hub = self.servers.any().cloned();
        let checked = invariants::check(
            hub.as_deref(),
            &self.servers.dir,
            PROJECT,
            &subjects,
            Some(&self.roles_log),
            EPOCH_MS + self.now,
        );
        drop(subjects);
        let (probed, probed_behind, frozen) = self.probe_frozen();
        let mut report = empty_report(&self.config);
        report.sections = checked.sections;
        report.conflicts_by_kind = checked.conflicts_by_kind;
        report.conflicts_by_rule = checked.conflicts_by_rule;
        report.quarantined_points = checked.quarantined;
        report.changes = checked.changes;
        report.changes_raw_bytes = checked.changes_raw_bytes;
        report.changes_deflated_bytes = checked.changes_deflated_bytes;
        report.change_floor_bytes = checked.changes_deflated_bytes * self.devices.len() as u64;
        report.state_digest = checked.digest;
        report.refused_changes = checked.refused_changes;
        report.writes_stamped_ahead = checked.stamped_ahead;
        report.ahead_contests = checked.ahead_contests;
        report.probed_sections = probed;
        report.probed_behind_stamps = probed_behind;
        report.edit_to_visible = Latency::of(self.stats.edit_to_visible.clone());
        report.edit_to_everyone_ms = self.stats.edit_to_everyone.values().copied().collect();
        report.edit_to_everyone = Latency::of(report.edit_to_everyone_ms.clone());
        let mut violations = std::mem::take(&mut self.violations);
        violations.extend(checked.violations);
        violations.extend(frozen);
        report.photos = self.check_photos(&mut violations);
        report.scopes = self.scope_figures.take().map(|mut f| {
            for dev in self.devices.iter().filter(|d| d.scope.is_some()) {
                let Some(r) = &dev.replica else { continue };
                f.held_at_end += lock(r).list_sections(Some(PROJECT), None, usize::MAX).map_or(0, |l| l.len() as u64);
                f.possible_at_end += report.sections as u64;
            }
            f
        });
        let wire = self.stats.bytes_up + self.stats.bytes_down;
        // A failed round trip (a cut, a lost answer) costs its bytes for
        // nothing; a small run with many cuts is dominated by them.
        let rounds = self.stats.failed_round_trips;
        let limit = (report.change_floor_bytes as f64 * crate::report::EFFICIENCY_LIMIT) as u64
            + rounds * crate::report::EFFICIENCY_ROUND_ALLOWANCE
            + self.stats.round_trips * crate::report::EFFICIENCY_ROUND_OVERHEAD;
        if report.change_floor_bytes > 0 && wire > limit {
            violations.push(Violation {
                invariant: Invariant::Efficiency,
                detail: format!(
                    "{wire} bytes on the wire, {:.1}× the change floor of {} (limit {}×, plus {} bytes per round trip and {} \
                     per failed one)",
                    wire as f64 / report.change_floor_bytes as f64,
                    report.change_floor_bytes,
                    crate::report::EFFICIENCY_LIMIT,
                    crate::report::EFFICIENCY_ROUND_OVERHEAD,
                    crate::report::EFFICIENCY_ROUND_ALLOWANCE
                ),
            });
        }
        report.converged = violations.is_empty();
        report.violations = violations;
        let s = self.stats;
        report.edits = s.edits;
        report.edits_by_kind = s.edits_by_kind;
        report.refused_locally = s.refused_locally;
        report.round_trips = s.round_trips;
        report.failed_round_trips = s.failed_round_trips;
        report.bytes_up = s.bytes_up;
        report.bytes_down = s.bytes_down;
        report.bytes_repeated = s.bytes_repeated;
        report.heal_round_trips = s.heal_round_trips;
        report.faults = s.faults;
        report.hostile_stored = s.hostile_stored;
        report.hostile_refused = s.hostile_refused;
        report.redecided_ahead = s.redecided_ahead;
        report.stale_role_edits = s.stale_role_edits;
        report.simulated_ms = end;
        report.heal_ms = end.saturating_sub(self.heal_started);
        report
    }
}

/// A technician's partial scope: a corridor over `window` sections of its
/// crew's route from place `from` on, a spur over the start of the next
/// crew's route, and (`with_crew`) the sections assigned to its crew.
fn scope_for(plan: &Plan, w: &ScopeWorkload, crew: usize, from: usize, with_crew: bool) -> Scope {
    let last = plan.sections_on(crew).max(1) - 1;
    let from = from.min(last);
    let to = (from + w.window.max(1) - 1).min(last);
    let mut list = vec![plan.corridor(crew, from, to, w.buffer_m)];
    if w.spur > 0 && plan.routes() > 1 {
        let next = (crew + 1) % plan.routes();
        list.push(plan.corridor(next, 0, w.spur - 1, w.buffer_m));
    }
    if with_crew {
        list.push(Subscription::Crew(crew_name(crew)));
    }
    Scope::Only(list)
}

/// Whether `replica`'s change of scope is finished: the scope it wants is
/// the one its cursor was earned under, and no change is under way.
pub(crate) fn scope_settled(replica: &Replica) -> bool {
    replica
        .connection()
        .query_row(
            "SELECT scope IS held_scope AND scope_move IS NULL FROM sync_state WHERE project = ?1",
            [PROJECT],
            |r| r.get::<_, bool>(0),
        )
        .unwrap_or(false)
}

/// The name crew `crew` is assigned sections by.
fn crew_name(crew: usize) -> String {
    format!("crew-{}", crew + 1)
}

/// A Poisson-distributed count with mean `mean` (Knuth; small means only).
fn poisson(rng: &mut Rng, mean: f64) -> u64 {
    let limit = (-mean.max(0.0)).exp();
    let (mut k, mut p) = (0, rng.unit());
    while p > limit && k < 1000 {
        k += 1;
        p *= rng.unit();
    }
    k
}

/// What [`return_from_offline_day`] measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReturnReport {
    /// The seed.
    pub seed: u64,
    /// The returning device's profile.
    pub profile: String,
    /// Sections the others changed while it was away.
    pub sections_changed: usize,
    /// Edits it made offline.
    pub own_edits: u64,
    /// Simulated time from its link coming back until it had uploaded
    /// everything and caught up, ms.
    pub converge_ms: u64,
    /// Round trips it took (failed ones included).
    pub round_trips: u64,
    /// Of which failed (cut, lost, timed out).
    pub failed_round_trips: u64,
    /// Request bytes sent.
    pub bytes_up: u64,
    /// Response bytes received.
    pub bytes_down: u64,
    /// Bytes that crossed the link more than once or for nothing: cut and
    /// lost bodies, and uploads of changes sent before.
    pub bytes_repeated: u64,
    /// Responses cut off mid-body.
    pub cut_responses: u64,
    /// Whether every invariant held afterwards (all devices).
    pub converged: bool,
    /// What broke, if anything.
    pub violations: Vec<Violation>,
    /// Real time the run took, ms.
    pub wall_ms: u64,
}

/// A technician back from a day offline on `profile`: while it was away
/// the foreman changed every one of `sections` sections (at the office, on
/// Wi-Fi), and it made `own_edits` edits of its own. Its link comes back
/// with `cut_responses` of the responses cut off mid-body (plus the
/// profile's loss); how long until it has uploaded everything and caught
/// up, and how many bytes went over the link twice?
pub fn return_from_offline_day(
    seed: u64,
    profile: crate::profile::Profile,
    sections: usize,
    own_edits: u64,
    cut_responses: f64,
) -> ReturnReport {
    let started = Instant::now();
    let mut config = SimConfig::new(seed, profile);
    config.workload.devices = 3;
    config.workload.sections = sections;
    config.faults = crate::config::FaultConfig { cut_responses, ..crate::config::FaultConfig::none() };
    let base = if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
    let outcome = tempfile::Builder::new()
        .prefix("fieldsync-return-")
        .tempdir_in(base)
        .map_err(|e| e.to_string())
        .and_then(|tmp| return_in(config.clone(), tmp.path(), own_edits));
    let mut report = outcome.unwrap_or_else(|e| ReturnReport {
        seed,
        profile: config.profile.name.clone(),
        sections_changed: 0,
        own_edits: 0,
        converge_ms: 0,
        round_trips: 0,
        failed_round_trips: 0,
        bytes_up: 0,
        bytes_down: 0,
        bytes_repeated: 0,
        cut_responses: 0,
        converged: false,
        violations: vec![Violation { invariant: Invariant::NoUnexpectedError, detail: format!("setup failed: {e}") }],
        wall_ms: 0,
    });
    report.wall_ms = started.elapsed().as_millis() as u64;
    report
}

fn return_in(config: SimConfig, dir: &Path, own_edits: u64) -> Result<ReturnReport, String> {
    let (office, foreman, tech) = (0, 1, 2);
    let mut sim = Sim::new(config, dir)?;
    sim.setup()?;
    let ids: Vec<String> = sim.plan.sections.iter().map(|s| s.id.clone()).collect();
    // The day: the technician is offline; the foreman changes every section.
    sim.now = 8 * HOUR;
    let edit = |sim: &mut Sim, d: usize, id: &str, kind: EditKind| -> Result<bool, String> {
        sim.set_clock(d);
        let replica = sim.devices[d].replica.clone().expect("open");
        let mut r = lock(&replica);
        let view = r.section(id).map_err(|e| e.to_string())?;
        let name = sim.devices[d].name.clone();
        match workload::perform(kind, &mut r, &view, &mut sim.plan, &name, &mut sim.devices[d].rng) {
            Ok(Some(done)) => {
                let install = sim.devices[d].install;
                drop(r);
                sim.devices[d].acks.push(Ack { section: done.section, hash: done.change_hash, install, wiped: false });
                Ok(true)
            }
            Ok(None) | Err(ReplicaError::Refused { .. }) => Ok(false),
            Err(e) => Err(format!("{name}: {e}")),
        }
    };
    for (i, id) in ids.iter().enumerate() {
        sim.now = 8 * HOUR + i as u64 * 20_000;
        edit(&mut sim, foreman, id, if i % 2 == 0 { EditKind::Step } else { EditKind::Progress })?;
    }
    let mut mine = 0;
    for i in 0..own_edits {
        sim.now = 9 * HOUR + i * 60_000;
        let id = ids[(i as usize * 7) % ids.len()].clone();
        let kind = [EditKind::Progress, EditKind::Location, EditKind::Notes][i as usize % 3];
        mine += u64::from(edit(&mut sim, tech, &id, kind)?);
    }
    sim.now = 18 * HOUR;
    sim.direct_sync(foreman).map_err(|e| e.to_string())?;
    sim.direct_sync(office).map_err(|e| e.to_string())?;
    // Back in coverage: the link returns and background sync hears of it.
    sim.stats = Stats::default();
    sim.phase = Phase::Heal;
    sim.watch = Some(tech);
    let t0 = sim.now;
    sim.heal_started = t0;
    let random = sim.devices[tech].rng.next_u64();
    sim.devices[tech].engine.handle(SyncEvent::Connectivity { online: false }, t0, random);
    sim.engine_event(tech, SyncEvent::Connectivity { online: true });
    sim.schedule(t0 + sim.config.heal_limit_ms, Event::HealLimit);
    sim.run(&mut |_| {});
    let converge_ms = sim.quiescent_at.map_or(sim.now, |t| t) - t0;
    let stats = std::mem::take(&mut sim.stats);
    sim.watch = None;
    let report = sim.check();
    Ok(ReturnReport {
        seed: report.seed,
        profile: report.profile,
        sections_changed: ids.len(),
        own_edits: mine,
        converge_ms,
        round_trips: stats.round_trips,
        failed_round_trips: stats.failed_round_trips,
        bytes_up: stats.bytes_up,
        bytes_down: stats.bytes_down,
        bytes_repeated: stats.bytes_repeated,
        cut_responses: stats.faults.cut_responses,
        converged: report.violations.is_empty(),
        violations: report.violations,
        wall_ms: 0,
    })
}
