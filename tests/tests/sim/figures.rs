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

/// 2G rural: back from a day offline, 1,000 sections changed meanwhile, over
/// ten seeds per cut rate.
/// `cargo test --release -p fieldsync-tests --test sim -- figures --ignored --nocapture`
#[test]
#[ignore = "a figure for BENCHMARKS.md; run in release with --ignored"]
fn figure_rural_2g_return_with_1000_changed_sections() {
    for cut in [0.0, 0.05, 0.15] {
        let runs: Vec<_> = (1..=10).map(|s| return_from_offline_day(s, Profile::rural_2g(), 1000, 50, cut)).collect();
        for r in &runs {
            assert!(r.converged, "seed {}: {:#?}", r.seed, r.violations);
        }
        let mean = |f: &dyn Fn(&fieldsync_tests::sim::ReturnReport) -> f64| runs.iter().map(f).sum::<f64>() / 10.0;
        let max = |f: &dyn Fn(&fieldsync_tests::sim::ReturnReport) -> f64| runs.iter().map(f).fold(0.0, f64::max);
        let minutes = |r: &fieldsync_tests::sim::ReturnReport| r.converge_ms as f64 / 60_000.0;
        let repeated = |r: &fieldsync_tests::sim::ReturnReport| r.bytes_repeated as f64;
        println!(
            "cut {:>4.0} %: converged in {:.1} min mean, {:.1} max; repeats {:.0} B mean, {:.0} B max; \
             {:.0} B down, {:.0} B up, {:.1} round trips ({:.1} failed) mean; {} own edits; {} ms wall per run",
            cut * 100.0,
            mean(&minutes),
            max(&minutes),
            mean(&repeated),
            max(&repeated),
            mean(&|r| r.bytes_down as f64),
            mean(&|r| r.bytes_up as f64),
            mean(&|r| r.round_trips as f64),
            mean(&|r| r.failed_round_trips as f64),
            runs[0].own_edits,
            runs.iter().map(|r| r.wall_ms).sum::<u64>() / 10,
        );
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
