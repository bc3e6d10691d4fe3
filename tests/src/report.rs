//! What a run reports: progress while it runs, and the final report with the
//! invariants' verdict (serde-serializable: `fieldsync simulate --json`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Opening stores, enrolling devices, the office planning, the morning sync.
    Setup,
    /// The working day: edits, syncs and faults.
    Day,
    /// The network healed; outboxes drain.
    Heal,
    /// Checking the invariants.
    Check,
    /// Finished.
    Done,
}

/// Running totals, reported every simulated ten minutes and at each phase change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimProgress {
    /// The phase.
    pub phase: Phase,
    /// Simulated time since the morning sync, ms.
    pub simulated_ms: u64,
    /// Length of the working day, ms.
    pub day_ms: u64,
    /// Edits acknowledged so far.
    pub edits: u64,
    /// Round trips so far.
    pub round_trips: u64,
}

/// The invariants checked after every run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Invariant {
    /// Every device and the server hold the same change set and heads, the
    /// same validated views byte for byte, the same conflict records and roster
    /// (a device with a partial scope: for the sections it holds).
    Convergence,
    /// Every edit a device's API returned from is on the server and every
    /// device, unless the device was revoked (and its refusal recorded) or
    /// wiped by a reinstall before it synced.
    NoLostEdit,
    /// Duplicated deliveries leave no duplicate rows: each change is stored
    /// once on the server's feed and in each device's store.
    Idempotence,
    /// After the network heals, every outbox drains and every device catches
    /// up within the heal limit; no device is left stuck.
    Liveness,
    /// No view shows progress that fell without authority, an invalid
    /// transition, an off-route point not accepted by a foreman, or a name or
    /// route not written by the office.
    Rules,
    /// The bytes on the wire stay within [`EFFICIENCY_LIMIT`] times the change
    /// floor (every change deflated, up once and down to every device): a
    /// cursor that stops advancing or a server that resends what a device
    /// has would still converge, but not within it.
    Efficiency,
    /// Nothing panicked and no call failed in a way an app could not handle
    /// (a storage error, a malformed-request answer to a correct client).
    NoUnexpectedError,
    /// After the heal, a foreman's device can move every section on by a
    /// valid transition (a probe on a copy of its store): no section is
    /// frozen, whatever the stamps of its past transitions.
    NoFrozenSection,
    /// A role change or removal alters no decision (nor the role a write is
    /// judged under) of a write the hub already held and stamped before it,
    /// and the hub's conflict records after it are the rules over its
    /// documents and role history.
    StableHistory,
    /// A hostile device's rule-breaking changes are stored and shown as
    /// rejections; its malformed ones are refused with a 4xx and change nothing.
    Hostile,
    /// With photos on: every photo a device added (but one wiped by a
    /// reinstall before the hub had it, or of a revoked or removed device)
    /// is complete on the hub after the heal, and every device holding a
    /// section holds the thumbnail of every photo in it.
    NoLostPhoto,
    /// With photos on: a photo's thumbnail was complete on the hub before
    /// its full size.
    ThumbnailFirst,
    /// With photos on: no chunk is sent again after the device received the
    /// hub's acknowledgement of it, and the chunks sent again on a device's
    /// link are no more than its cut or lost photo requests.
    NoPhotoResent,
    /// With photos on: a device whose user is not a member of the project
    /// asking for one of its photos is refused (403) and gets no bytes.
    PhotoAccess,
    /// With photos on: no photo request leaves a device while one of its
    /// edits waits to go up (the photo lane sends the edits first), so an
    /// edit waits behind at most the photo request already on the wire.
    EditsFirst,
    /// With photos on and the project holding full sizes for an unmetered
    /// link (`PhotoWorkload::depot_wifi`): no full size leaves a phone on
    /// mobile data (thumbnails do).
    FullSizeHeld,
    /// With partial scopes on (`SimConfig::scopes`): after the heal, a device
    /// whose scope is not everything holds exactly the sections its scope
    /// covers, judged by core's `Scope::covers` on the coverage of the
    /// server's views (plus any it keeps for local changes the server has not
    /// taken), and its change of scope is finished. (That each section it
    /// holds has the server's view and conflict records is `convergence`.)
    ScopeHoldings,
}

impl Invariant {
    /// Its snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Invariant::Convergence => "convergence",
            Invariant::NoLostEdit => "no_lost_edit",
            Invariant::Idempotence => "idempotence",
            Invariant::Liveness => "liveness",
            Invariant::Rules => "rules",
            Invariant::Efficiency => "efficiency",
            Invariant::NoUnexpectedError => "no_unexpected_error",
            Invariant::NoFrozenSection => "no_frozen_section",
            Invariant::StableHistory => "stable_history",
            Invariant::Hostile => "hostile",
            Invariant::NoLostPhoto => "no_lost_photo",
            Invariant::ThumbnailFirst => "thumbnail_first",
            Invariant::NoPhotoResent => "no_photo_resent",
            Invariant::PhotoAccess => "photo_access",
            Invariant::EditsFirst => "edits_first",
            Invariant::FullSizeHeld => "full_size_held",
            Invariant::ScopeHoldings => "scope_holdings",
        }
    }
}

/// How far above the change floor the bytes on the wire may go (the
/// [`Invariant::Efficiency`] bound). The test suite's seeds average 1.5×,
/// 2.0× at worst, with all their faults (`tests/README.md`); re-sending
/// everything every round goes far over it.
pub const EFFICIENCY_LIMIT: f64 = 3.0;

/// Bytes per failed round trip allowed on top of [`EFFICIENCY_LIMIT`]: what a
/// cut or lost answer wasted, which the floor leaves out.
pub const EFFICIENCY_ROUND_ALLOWANCE: u64 = 600;

/// Bytes per round trip allowed on top of [`EFFICIENCY_LIMIT`]: an idle
/// round's request and answer (about 100 bytes together), which the floor
/// leaves out too; a long quiet day of periodic syncs is made of them.
pub const EFFICIENCY_ROUND_OVERHEAD: u64 = 150;

/// What a day with partial scopes did (`SimReport::scopes`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeFigures {
    /// Devices whose scope was not everything.
    pub scoped_devices: u64,
    /// Of them, subscribed to their crew as well.
    pub crew_subscribers: u64,
    /// Corridor moves (`set_scope`) made.
    pub moves: u64,
    /// Of them, made while the device had no network.
    pub moves_offline: u64,
    /// Crew assignments the office made.
    pub assignments: u64,
    /// Section ids in committed responses' `evicted` lists (a route or crew
    /// that moved out).
    pub evicted: u64,
    /// Committed responses with a `keep_only` list (a change of scope).
    pub keep_only: u64,
    /// Whole documents committed responses brought to scoped devices.
    pub documents: u64,
    /// Sections the scoped devices held at the end, and the server had.
    pub held_at_end: u64,
    /// Sections on the server at the end, times the scoped devices.
    pub possible_at_end: u64,
}

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// Which.
    pub invariant: Invariant,
    /// What was found, in words.
    pub detail: String,
}

/// How many faults the run went through.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultCounts {
    /// Outages (no network).
    pub outages: u64,
    /// Partitions (server unreachable).
    pub partitions: u64,
    /// Requests lost before the server.
    pub lost_requests: u64,
    /// Responses lost or timed out after the server committed.
    pub lost_responses: u64,
    /// Responses cut off mid-body after the server committed.
    pub cut_responses: u64,
    /// Requests delivered a second time, late.
    pub duplicated_requests: u64,
    /// Apps killed with a request in flight.
    pub kills_mid_sync: u64,
    /// Apps killed during a write.
    pub kills_mid_write: u64,
    /// Server restarts (planned, and crashes after a commit).
    pub server_restarts: u64,
    /// Devices whose clock was hours or days wrong, or jumped.
    pub skewed_clocks: u64,
    /// Reinstalls with an empty store.
    pub reinstalls: u64,
    /// Revocations.
    pub revocations: u64,
    /// Role changes (promotions and demotions) the administrator made.
    #[serde(default)]
    pub role_changes: u64,
    /// Members removed (and, most of them, added back later).
    #[serde(default)]
    pub removals: u64,
    /// Requests a hostile device sent (each with a rule-breaking change or a malformed one).
    #[serde(default)]
    pub hostile_requests: u64,
}

impl FaultCounts {
    /// Add `other`'s counts to these (totals over many runs).
    pub fn add(&mut self, other: &FaultCounts) {
        let FaultCounts {
            outages,
            partitions,
            lost_requests,
            lost_responses,
            cut_responses,
            duplicated_requests,
            kills_mid_sync,
            kills_mid_write,
            server_restarts,
            skewed_clocks,
            reinstalls,
            revocations,
            role_changes,
            removals,
            hostile_requests,
        } = other;
        self.outages += outages;
        self.partitions += partitions;
        self.lost_requests += lost_requests;
        self.lost_responses += lost_responses;
        self.cut_responses += cut_responses;
        self.duplicated_requests += duplicated_requests;
        self.kills_mid_sync += kills_mid_sync;
        self.kills_mid_write += kills_mid_write;
        self.server_restarts += server_restarts;
        self.skewed_clocks += skewed_clocks;
        self.reinstalls += reinstalls;
        self.revocations += revocations;
        self.role_changes += role_changes;
        self.removals += removals;
        self.hostile_requests += hostile_requests;
    }
}

/// What a run did and whether the invariants held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// The profile's name.
    pub profile: String,
    /// Devices.
    pub devices: usize,
    /// Sections at the end of the day.
    pub sections: usize,
    /// Whether two hub instances served the run.
    pub two_servers: bool,
    /// Edits a device's API acknowledged.
    pub edits: u64,
    /// Edits by kind (`progress`, `transition`, `location`, `notes`, …).
    pub edits_by_kind: BTreeMap<String, u64>,
    /// Edits the rules refused on the device before storing anything, by rule.
    pub refused_locally: BTreeMap<String, u64>,
    /// The server's conflict records at the end, by kind (`contest`, `rejection`, `quarantine`).
    pub conflicts_by_kind: BTreeMap<String, u64>,
    /// The same, by rule.
    pub conflicts_by_rule: BTreeMap<String, u64>,
    /// Points still quarantined at the end (off route, not accepted).
    pub quarantined_points: u64,
    /// Round trips attempted (failed ones included).
    pub round_trips: u64,
    /// Round trips that failed (network, timeout, server down, revoked).
    pub failed_round_trips: u64,
    /// Request bytes that left devices (bodies; partial ones counted as sent).
    pub bytes_up: u64,
    /// Response bytes that reached devices (partial ones counted as received).
    pub bytes_down: u64,
    /// Bytes on the wire that were repeats: requests and responses lost or cut,
    /// and uploads of changes sent before.
    pub bytes_repeated: u64,
    /// Every distinct change once, raw.
    pub changes_raw_bytes: u64,
    /// Every distinct change once, deflated together.
    pub changes_deflated_bytes: u64,
    /// The floor for the wire: each change up once and down to every other
    /// device, deflated (`changes_deflated_bytes` × devices).
    pub change_floor_bytes: u64,
    /// Changes on the server at the end.
    pub changes: u64,
    /// Honest devices' changes the server refused (held back on the device);
    /// 0 when every invariant holds.
    #[serde(default)]
    pub refused_changes: u64,
    /// A hostile device's rule-breaking changes the server stored and shows as rejections.
    #[serde(default)]
    pub hostile_stored: u64,
    /// A hostile device's malformed requests the server refused with a 4xx.
    #[serde(default)]
    pub hostile_refused: u64,
    /// Writes on the server stamped later than the server's clock at the end
    /// of the run (clocks days ahead before a sync anchored them).
    #[serde(default)]
    pub writes_stamped_ahead: u64,
    /// Writes stamped ahead of the server's clock whose decision (or judged
    /// role) a later role change altered: a `stable_history` violation (the
    /// rules bound a stamp by the hub's receipt), so 0 when every invariant holds.
    #[serde(default)]
    pub redecided_ahead: u64,
    /// Last-writer-wins contests (name, route, location) a write stamped
    /// ahead of its receipt would have won by its stamp against one the hub
    /// received later; `rules` checks that it did not.
    #[serde(default)]
    pub ahead_contests: u64,
    /// Edits a device's API acknowledged while its roster gave its user
    /// another role than the hub's (a role change it had not heard of yet),
    /// or while its user was removed: work on a stale roster.
    #[serde(default)]
    pub stale_role_edits: u64,
    /// Sections the frozen-section probe moved on after the heal.
    #[serde(default)]
    pub probed_sections: u64,
    /// Of those, sections whose chain of transitions holds one stamped after
    /// the probe's own (a clock that was ahead): a fold in stamp order would
    /// have refused the probe as stale, a frozen section.
    #[serde(default)]
    pub probed_behind_stamps: u64,
    /// From an edit's making to the committed round that brought it to
    /// another device, simulated ms: every (edit, device) arrival.
    #[serde(default)]
    pub edit_to_visible: Latency,
    /// From an edit's making until every device that received it had it
    /// (what the office waits for), simulated ms, per edit.
    #[serde(default)]
    pub edit_to_everyone: Latency,
    /// Those times themselves, one per edit, for pooling days: a day's P99
    /// over some forty edits is in effect its slowest one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub edit_to_everyone_ms: Vec<u64>,
    /// Photos: what went up and down and the photo invariants' figures
    /// (present when the workload had photos).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub photos: Option<crate::photos::PhotoReport>,
    /// Partial scopes: what the day did with them (present when
    /// `SimConfig::scopes` was on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<ScopeFigures>,
    /// Faults the run went through.
    pub faults: FaultCounts,
    /// Simulated time from the morning sync until everything converged, ms.
    pub simulated_ms: u64,
    /// Simulated time the heal took (network healed → quiescent), ms.
    pub heal_ms: u64,
    /// Round trips after the network healed.
    pub heal_round_trips: u64,
    /// Real time the run took, ms (the one field that differs between runs).
    pub wall_ms: u64,
    /// Whether every invariant held.
    pub converged: bool,
    /// What broke, if anything.
    pub violations: Vec<Violation>,
    /// SHA-free digest of the final state (views, conflicts, heads) on the
    /// server: the same seed gives the same digest.
    pub state_digest: String,
    /// How to replay this run.
    pub replay: String,
}

/// Percentiles of a set of durations (nearest rank), ms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latency {
    /// How many durations.
    pub samples: u64,
    /// Median.
    pub p50_ms: u64,
    /// 90th percentile.
    pub p90_ms: u64,
    /// 99th percentile.
    pub p99_ms: u64,
    /// The longest.
    pub max_ms: u64,
}

impl Latency {
    /// The percentiles of `samples` (all zero when there are none).
    pub fn of(mut samples: Vec<u64>) -> Latency {
        samples.sort_unstable();
        let rank = |p: f64| -> u64 {
            if samples.is_empty() {
                return 0;
            }
            let i = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[i]
        };
        Latency {
            samples: samples.len() as u64,
            p50_ms: rank(0.50),
            p90_ms: rank(0.90),
            p99_ms: rank(0.99),
            max_ms: samples.last().copied().unwrap_or(0),
        }
    }
}

impl SimReport {
    /// The report without the wall time: equal for runs of the same config.
    pub fn deterministic_part(&self) -> SimReport {
        SimReport { wall_ms: 0, ..self.clone() }
    }

    /// One line for logs.
    pub fn summary(&self) -> String {
        let conflicts: u64 = self.conflicts_by_kind.values().sum();
        let refused: u64 = self.refused_locally.values().sum();
        format!(
            "seed {} {:<11} {} devices, {} sections: {} edits ({} refused locally), {} conflicts, {} round trips \
             ({} failed), {:.1} h simulated, {} ms wall: {}",
            self.seed,
            self.profile,
            self.devices,
            self.sections,
            self.edits,
            refused,
            conflicts,
            self.round_trips,
            self.failed_round_trips,
            self.simulated_ms as f64 / 3_600_000.0,
            self.wall_ms,
            if self.converged { "converged".to_owned() } else { format!("{} violation(s)", self.violations.len()) }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Latency;

    #[test]
    fn percentiles_are_nearest_rank() {
        assert_eq!(Latency::of(vec![]), Latency::default());
        let l = Latency::of((1..=100).rev().collect());
        assert_eq!((l.samples, l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms), (100, 50, 90, 99, 100));
        assert_eq!(Latency::of(vec![7]).p99_ms, 7);
    }
}
