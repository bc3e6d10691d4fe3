//! The figures in BENCHMARKS.md ("Simulation (issue 5)"). The big runs are
//! `#[ignore]`d (run them in release with `--ignored`); a small version of
//! each runs by default so that the scenarios stay working.

use fieldsync_tests::sim::return_from_offline_day;
use fieldsync_tests::{Profile, SimConfig, run_simulation};

fn seed() -> u64 {
    std::env::var("FIELDSYNC_SEED").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(1)
}

#[test]
fn a_device_back_from_a_day_offline_catches_up() {
    let r = return_from_offline_day(seed(), Profile::rural_2g(), 40, 10, 0.05);
    assert!(r.converged, "{:#?}", r.violations);
    assert!(r.own_edits > 0 && r.round_trips > 0, "{r:#?}");
    eprintln!("{r:?}");
}

/// 2G rural: back from a day offline, 1,000 sections changed meanwhile.
/// `cargo test --release -p fieldsync-tests --test sim -- figures --ignored --nocapture`
#[test]
#[ignore = "a figure for BENCHMARKS.md; run in release with --ignored"]
fn figure_rural_2g_return_with_1000_changed_sections() {
    for cut in [0.0, 0.05, 0.15] {
        let r = return_from_offline_day(seed(), Profile::rural_2g(), 1000, 50, cut);
        println!(
            "cut {:>4.0} %: converged in {:.1} min simulated, {} round trips ({} failed, {} cut), {} B up, {} B down, \
             {} B repeated, {} own edits, {} ms wall, invariants {}",
            cut * 100.0,
            r.converge_ms as f64 / 60_000.0,
            r.round_trips,
            r.failed_round_trips,
            r.cut_responses,
            r.bytes_up,
            r.bytes_down,
            r.bytes_repeated,
            r.own_edits,
            r.wall_ms,
            if r.converged { "held".to_owned() } else { format!("{:?}", r.violations) }
        );
        assert!(r.converged, "{:#?}", r.violations);
    }
}

/// The default `fieldsync simulate` scenario.
#[test]
#[ignore = "a figure for BENCHMARKS.md; run in release with --ignored"]
fn figure_field_day() {
    let r = run_simulation(SimConfig::field_day(seed()), |_| {});
    println!("{}", serde_json::to_string_pretty(&r).unwrap());
    println!("{}", r.summary());
    assert!(r.converged, "{:#?}", r.violations);
}
