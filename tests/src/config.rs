//! What a simulation runs: the seed, the network profile, the workload, the
//! faults, and (to prove the invariants bite) an injected bug.

use std::path::PathBuf;

use fieldsync_core::SyncConfig;
use serde::{Deserialize, Serialize};

use crate::profile::Profile;
use crate::rng::Rng;

/// The crews and what they do all day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    /// Devices, one per person: office (1, or 2 from 16 devices on), then
    /// crews of a foreman and up to three technicians.
    pub devices: usize,
    /// Sections the office plans in the morning, spread along one generated
    /// route per crew.
    pub sections: usize,
    /// Length of the simulated working day, hours.
    pub day_hours: f64,
    /// Edits each device attempts over the day (mean of a Poisson process).
    pub edits_per_device: f64,
    /// Share of the next crew's sections a crew also works on (overlap).
    pub overlap: f64,
    /// Share of location reports that are off route (quarantined).
    pub off_route: f64,
    /// Share of devices holding the live channel while online (apps in the
    /// foreground); the rest rely on the timer and their own edits.
    pub live_channel: f64,
    /// Photos the crews take (issue 14; off by default).
    #[serde(default)]
    pub photos: crate::photos::PhotoWorkload,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            devices: 20,
            sections: 30,
            day_hours: 8.0,
            edits_per_device: 8.0,
            overlap: 0.3,
            off_route: 0.1,
            live_channel: 0.4,
            photos: crate::photos::PhotoWorkload::default(),
        }
    }
}

/// How often things go wrong. Rates are per device per day unless stated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultConfig {
    /// Network outages per device (the phone has no signal; mean of a Poisson count).
    pub outages_per_device: f64,
    /// Outage length, minutes (log-uniform: minutes as likely as hours).
    pub outage_minutes: (u64, u64),
    /// Probability a crew device is offline from the morning sync to the evening.
    pub offline_all_day: f64,
    /// Partitions per day: one crew has a network but cannot reach the server
    /// (a backhaul down); the phones do not know.
    pub partitions: u32,
    /// Partition length, minutes.
    pub partition_minutes: (u64, u64),
    /// Probability the app is told when its network goes or comes back.
    pub connectivity_hints: f64,
    /// Per response: cut off mid-body after the server committed.
    pub cut_responses: f64,
    /// Per request: delivered twice, the copy late (after the device moved on).
    pub duplicate_requests: f64,
    /// Per sync: the app is killed while a request is in flight, then reopened from its files.
    pub kill_mid_sync: f64,
    /// Per edit: the app is killed during the write (before or after its commit,
    /// never acknowledged), then reopened from its files.
    pub kill_mid_write: f64,
    /// Share of devices whose clock is hours to days wrong from the morning on.
    pub skewed_clocks: f64,
    /// Per device: its clock jumps by hours or days during the day.
    pub clock_jumps: f64,
    /// Per device: the app is reinstalled with an empty store (same person;
    /// half the time the same token, half a new enrollment).
    pub reinstalls: f64,
    /// Per device: an administrator revokes it during the day.
    pub revocations: f64,
    /// Server restarts during the day (drop and reopen the hub on the same data dir).
    pub server_restarts: u32,
    /// Per request: the hub dies during the round, half the time before its
    /// commit (nothing stored), half after it (stored, never answered).
    pub server_crash_mid_round: f64,
    /// Two hub instances on the same data dir behind a load balancer
    /// (each request to either; a device's live channel to one).
    pub two_servers: bool,
    /// Role changes during the day (mean of a Poisson count): an
    /// administrator promotes or demotes a member at the hub's time
    /// (`Hub::add_member_at`); devices learn it at their next round, and work
    /// on a stale roster until then.
    #[serde(default)]
    pub role_changes: f64,
    /// Members removed during the day (mean of a Poisson count;
    /// `Hub::remove_member_at`): their devices get 403 until, three times in
    /// four, the administrator adds them back later in the day (the user is
    /// told and opens the app); the others stay out, their unsynced edits kept
    /// on the device.
    #[serde(default)]
    pub removals: f64,
    /// Share of devices whose clock is one to three days off (ahead or
    /// behind) from the install on, and stays off across every sync: the
    /// server's anchor corrects their stamps, except before a store's first
    /// sync (a reinstall).
    #[serde(default)]
    pub days_off_clocks: f64,
    /// Probability that the day has a hostile device: a member's device that
    /// sends, through the hub's API, well-formed changes breaking the rules
    /// (stored, shown as rejections) and malformed ones (refused, nothing
    /// changed).
    #[serde(default)]
    pub hostile: f64,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            outages_per_device: 1.0,
            outage_minutes: (2, 240),
            offline_all_day: 0.05,
            partitions: 1,
            partition_minutes: (5, 120),
            connectivity_hints: 0.8,
            cut_responses: 0.03,
            duplicate_requests: 0.03,
            kill_mid_sync: 0.03,
            kill_mid_write: 0.01,
            skewed_clocks: 0.25,
            clock_jumps: 0.05,
            reinstalls: 0.03,
            revocations: 0.02,
            server_restarts: 1,
            server_crash_mid_round: 0.005,
            two_servers: false,
            role_changes: 2.0,
            removals: 0.5,
            days_off_clocks: 0.1,
            hostile: 0.3,
        }
    }
}

impl FaultConfig {
    /// Nothing goes wrong but the profile's own loss and outages of the offline-day profile.
    pub fn none() -> FaultConfig {
        FaultConfig {
            outages_per_device: 0.0,
            offline_all_day: 0.0,
            partitions: 0,
            connectivity_hints: 1.0,
            cut_responses: 0.0,
            duplicate_requests: 0.0,
            kill_mid_sync: 0.0,
            kill_mid_write: 0.0,
            skewed_clocks: 0.0,
            clock_jumps: 0.0,
            reinstalls: 0.0,
            revocations: 0.0,
            server_restarts: 0,
            server_crash_mid_round: 0.0,
            two_servers: false,
            role_changes: 0.0,
            removals: 0.0,
            days_off_clocks: 0.0,
            hostile: 0.0,
            ..FaultConfig::default()
        }
    }

    /// The default rates, each scaled by a factor drawn from `rng` (0–3×),
    /// so that across many seeds some days are calm and some are hard on
    /// one kind of fault; two servers on a third of the runs.
    pub fn varied(rng: &mut Rng) -> FaultConfig {
        let d = FaultConfig::default();
        let mut s = |x: f64| x * rng.unit() * 3.0;
        FaultConfig {
            outages_per_device: s(d.outages_per_device),
            offline_all_day: s(d.offline_all_day),
            connectivity_hints: d.connectivity_hints,
            cut_responses: s(d.cut_responses),
            duplicate_requests: s(d.duplicate_requests),
            kill_mid_sync: s(d.kill_mid_sync),
            kill_mid_write: s(d.kill_mid_write),
            skewed_clocks: s(d.skewed_clocks).min(1.0),
            clock_jumps: s(d.clock_jumps),
            reinstalls: s(d.reinstalls),
            revocations: s(d.revocations),
            server_crash_mid_round: s(d.server_crash_mid_round),
            role_changes: s(d.role_changes),
            removals: s(d.removals),
            days_off_clocks: s(d.days_off_clocks),
            hostile: s(d.hostile).min(1.0),
            partitions: rng.below(3) as u32,
            server_restarts: rng.below(3) as u32,
            two_servers: rng.below(3) == 0,
            ..d
        }
    }
}

/// Partial scopes (issue 15; `SimConfig::scopes`, off by default): each
/// crew's technicians hold a corridor along a window of their own route plus
/// a spur over the start of the next crew's route (so neighbouring crews'
/// corridors overlap), some also their crew's assignments; the office
/// assigns sections to crews during the day, and technicians move their
/// corridor (online or offline). Foremen and the office hold everything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScopeWorkload {
    /// How far either side of a corridor's line, metres.
    pub buffer_m: u32,
    /// Sections of its own route a corridor spans.
    pub window: usize,
    /// Sections at the start of the next crew's route the corridor also
    /// spans (the overlap with that crew's corridors; 0: none).
    pub spur: usize,
    /// Share of technicians also subscribed to their crew
    /// (`Subscription::Crew("crew-N")`).
    pub crew_subscription: f64,
    /// Sections the office assigns to a crew during the day
    /// (`Replica::assign_crew`; mean of a Poisson count).
    pub assignments: f64,
    /// Per technician: times it moves its corridor to another window of its
    /// route during the day (`Replica::set_scope`; mean of a Poisson count).
    pub moves: f64,
}

impl Default for ScopeWorkload {
    fn default() -> Self {
        ScopeWorkload { buffer_m: 150, window: 3, spur: 1, crew_subscription: 0.5, assignments: 6.0, moves: 1.5 }
    }
}

/// A bug the simulator injects on its side of the wire, to show that the
/// invariants catch it (see `tests/README.md`). Production code is untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InjectedBug {
    /// Now and then the server is handed the request without its upload, and
    /// the device gets the 200: it marks changes confirmed that were never
    /// stored (a server that answers before committing). Expect `no_lost_edit`.
    DropUpload,
    /// Now and then a response loses its last batch of changes but keeps its
    /// cursor (a feed page that skips rows). Expect `convergence`.
    DropChanges,
    /// Every request goes out with an empty cursor, as if the device never
    /// committed the one it got: everything comes again, every round. The
    /// protocol is idempotent, so everything converges. Expect `efficiency`.
    ForgetCursor,
    /// The administrator's role changes and removals are recorded as of the
    /// morning instead of now: every write, past ones included, is judged
    /// under today's roster (a hub that forgot the role history). Expect
    /// `stable_history`.
    BackdateRoles,
    /// With partial scopes on: right before the checks, one scoped device's
    /// store loses a section its scope covers (its rows deleted, as a replica
    /// that dropped a covered section would leave it). Expect `scope_holdings`.
    DropHeldSection,
    /// With partial scopes on: responses lose their `evicted` list and their
    /// `keep_only` (a hub that never tells a device what left its scope).
    /// Expect `scope_holdings`.
    ForgetEvictions,
}

impl InjectedBug {
    /// From its kebab-case name (`drop-upload`, `drop-changes`, `forget-cursor`, `backdate-roles`,
    /// `drop-held-section`, `forget-evictions`).
    pub fn by_name(name: &str) -> Option<InjectedBug> {
        match name {
            "drop-upload" => Some(InjectedBug::DropUpload),
            "drop-changes" => Some(InjectedBug::DropChanges),
            "forget-cursor" => Some(InjectedBug::ForgetCursor),
            "backdate-roles" => Some(InjectedBug::BackdateRoles),
            "drop-held-section" => Some(InjectedBug::DropHeldSection),
            "forget-evictions" => Some(InjectedBug::ForgetEvictions),
            _ => None,
        }
    }

    /// From `FIELDSYNC_INJECT_BUG`, if set.
    pub fn from_env() -> Option<InjectedBug> {
        std::env::var("FIELDSYNC_INJECT_BUG").ok().and_then(|v| InjectedBug::by_name(v.trim()))
    }
}

/// Everything a run needs. The same config gives the same run and report
/// (wall time aside).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimConfig {
    /// The seed every random choice derives from.
    pub seed: u64,
    /// The network profile of every device.
    pub profile: Profile,
    /// Crews, sections and edits.
    pub workload: Workload,
    /// What goes wrong.
    pub faults: FaultConfig,
    /// Background-sync tuning of every device (the real `SyncEngine` runs it).
    pub sync: SyncConfig,
    /// After the network heals, how long (simulated ms) every outbox has to
    /// drain and every device to catch up before liveness fails.
    pub heal_limit_ms: u64,
    /// A bug to inject on the simulator's side, if any.
    pub inject: Option<InjectedBug>,
    /// Partial scopes for the technicians; `None` (the default): every
    /// device holds everything, as before.
    #[serde(default)]
    pub scopes: Option<ScopeWorkload>,
    /// Where the SQLite files go (a fresh temporary directory inside it);
    /// `None`: `/dev/shm` when it exists, else the system temp dir.
    pub dir: Option<PathBuf>,
}

impl SimConfig {
    /// `seed` on `profile` with the default workload (20 devices, 30
    /// sections, an 8-hour day) and the default faults.
    pub fn new(seed: u64, profile: Profile) -> SimConfig {
        SimConfig {
            seed,
            profile,
            workload: Workload::default(),
            faults: FaultConfig::default(),
            sync: SyncConfig { interval_ms: 20 * 60_000, ..SyncConfig::default() },
            heal_limit_ms: 4 * 3_600_000,
            inject: None,
            scopes: None,
            dir: None,
        }
    }

    /// The test suite's run of `seed`: 20 devices and 30 sections over an
    /// 8-hour day kept to a few hundred round trips (3 edits per device, the
    /// live channel on one device in twenty, a periodic sync every 3 hours);
    /// the profile cycles with the seed (`seed % 4`: 3g, edge, 2g-rural,
    /// offline-day) and the fault rates vary with it.
    pub fn for_seed(seed: u64) -> SimConfig {
        let profiles = Profile::all();
        let profile = profiles[(seed % profiles.len() as u64) as usize].clone();
        let mut config = SimConfig::new(seed, profile);
        config.workload.edits_per_device = 3.0;
        config.workload.live_channel = 0.05;
        config.sync.interval_ms = 3 * 3_600_000;
        config.heal_limit_ms = config.sync.interval_ms + 3_600_000;
        config.faults = FaultConfig::varied(&mut Rng::new(seed ^ 0xFA17));
        config
    }

    /// The suite's run of `seed` ([`SimConfig::for_seed`]) with partial
    /// scopes on ([`ScopeWorkload::default`]).
    pub fn partial_scopes(seed: u64) -> SimConfig {
        let mut config = SimConfig::for_seed(seed);
        config.scopes = Some(ScopeWorkload::default());
        config
    }

    /// The default `fieldsync simulate` scenario: 3 crews of a foreman and 3
    /// technicians plus an office device, 200 sections along generated
    /// routes, a 10-hour working day on rural 2G with crews offline for hours.
    pub fn field_day(seed: u64) -> SimConfig {
        let mut config = SimConfig::new(seed, Profile::rural_2g());
        config.workload =
            Workload { devices: 13, sections: 200, day_hours: 10.0, edits_per_device: 40.0, ..Workload::default() };
        config.faults = FaultConfig { outages_per_device: 2.0, outage_minutes: (30, 360), ..FaultConfig::default() };
        config
    }
}
