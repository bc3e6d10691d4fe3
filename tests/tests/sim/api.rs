//! The simulator as a product: what `fieldsync simulate` and app teams call.

use fieldsync_tests::{FaultConfig, Invariant, Phase, Profile, SimConfig, SimReport, run_simulation};

fn small(seed: u64, profile: Profile) -> SimConfig {
    let mut c = SimConfig::new(seed, profile);
    c.workload.devices = 6;
    c.workload.sections = 6;
    c.workload.day_hours = 3.0;
    c.workload.edits_per_device = 6.0;
    c
}

#[test]
fn a_small_run_converges_reports_progress_and_serializes() {
    let mut phases = Vec::new();
    let report = run_simulation(small(7, Profile::rural_2g()), |p| {
        if phases.last() != Some(&p.phase) {
            phases.push(p.phase);
        }
    });
    assert!(report.converged, "{:#?}", report.violations);
    assert_eq!(phases, [Phase::Setup, Phase::Day, Phase::Heal, Phase::Check, Phase::Done]);
    assert_eq!((report.devices, report.profile.as_str()), (6, "2g-rural"));
    assert!(report.edits > 0 && report.round_trips > 0 && report.bytes_up > 0 && report.bytes_down > 0);
    assert!(report.change_floor_bytes > 0 && report.changes > 0);
    assert!(report.simulated_ms >= 3 * 3_600_000);
    let json = serde_json::to_string(&report).unwrap();
    let back: SimReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, report);
    assert!(report.replay.contains("FIELDSYNC_SEED=7"));
}

#[test]
fn the_same_seed_gives_the_same_run() {
    for seed in [11, 12] {
        let a = run_simulation(SimConfig::for_seed(seed), |_| {});
        let b = run_simulation(SimConfig::for_seed(seed), |_| {});
        assert_eq!(a.deterministic_part(), b.deterministic_part(), "seed {seed}");
        assert!(!a.state_digest.is_empty());
    }
    let (a, b) = (run_simulation(SimConfig::for_seed(11), |_| {}), run_simulation(SimConfig::for_seed(15), |_| {}));
    assert_ne!(a.state_digest, b.state_digest);
}

#[test]
fn two_servers_and_every_fault_at_once() {
    let mut c = small(21, Profile::edge());
    c.workload.devices = 8;
    c.faults = FaultConfig {
        two_servers: true,
        cut_responses: 0.2,
        duplicate_requests: 0.2,
        kill_mid_sync: 0.2,
        kill_mid_write: 0.1,
        skewed_clocks: 1.0,
        clock_jumps: 0.5,
        reinstalls: 0.3,
        revocations: 0.2,
        server_restarts: 3,
        server_crash_mid_round: 0.05,
        partitions: 2,
        outages_per_device: 2.0,
        ..FaultConfig::default()
    };
    let r = run_simulation(c, |_| {});
    assert!(r.converged, "{:#?}", r.violations);
    assert!(r.two_servers);
    let f = &r.faults;
    assert!(f.cut_responses + f.duplicated_requests + f.kills_mid_sync + f.server_restarts > 0, "{f:?}");
}

#[test]
fn a_calm_day_on_every_profile() {
    for profile in Profile::all() {
        let mut c = small(3, profile.clone());
        c.faults = FaultConfig::none();
        let r = run_simulation(c, |_| {});
        assert!(r.converged, "{}: {:#?}", profile.name, r.violations);
        if profile.link.loss == 0.0 {
            assert_eq!(r.bytes_repeated, 0, "{}: nothing is repeated on a calm day over a lossless link", profile.name);
            if !profile.crews_offline_all_day {
                assert_eq!(r.failed_round_trips, 0, "{}", profile.name);
            }
        }
    }
}

#[test]
fn an_unhealed_network_breaks_liveness() {
    // Devices with neither a live channel nor a timer never hear of the
    // others' last edits: the liveness check must say so.
    let mut c = small(5, Profile::three_g());
    c.faults = FaultConfig::none();
    c.workload.live_channel = 0.0;
    c.sync.interval_ms = u64::MAX / 4;
    c.heal_limit_ms = 30 * 60_000;
    let r = run_simulation(c, |_| {});
    assert!(r.violations.iter().any(|v| v.invariant == Invariant::Liveness), "{:#?}", r.violations);
}

#[test]
fn trust_under_change_role_changes_removals_days_off_clocks_and_a_hostile_device() {
    // Issue 11: roles change mid-day (devices offline for hours work on a
    // stale roster), members are removed (most added back), clocks stay days
    // off, and a tampered device attacks the hub; every invariant holds.
    let mut totals = (0, 0, 0, 0, 0);
    for seed in 30..33 {
        let mut c = small(seed, Profile::offline_day());
        c.workload.devices = 10;
        c.workload.day_hours = 6.0;
        c.faults = FaultConfig {
            role_changes: 6.0,
            removals: 2.0,
            days_off_clocks: 0.5,
            hostile: 1.0,
            reinstalls: 0.2,
            ..FaultConfig::default()
        };
        let r = run_simulation(c, |_| {});
        assert!(r.converged, "seed {seed}: {:#?}", r.violations);
        assert_eq!(r.refused_changes, 0, "seed {seed}: the hub refused none of an honest device's changes");
        totals.0 += r.faults.role_changes;
        totals.1 += r.faults.removals;
        totals.2 += r.hostile_stored;
        totals.3 += r.hostile_refused;
        totals.4 += r.probed_sections;
    }
    let (changes, removals, stored, refused, probed) = totals;
    assert!(changes > 0 && removals > 0, "{totals:?}");
    assert!(stored > 0 && refused > 0, "the hostile device attacked: {totals:?}");
    assert!(probed > 0, "the frozen-section probe ran: {totals:?}");
}
