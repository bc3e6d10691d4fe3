//! Hundreds of seeds across the profiles, and the regression seeds.

use std::collections::BTreeMap;
use std::time::Instant;

use fieldsync_tests::seeds::{base_seed, failure_message, regressions, run_many, seeds_to_run, threads};
use fieldsync_tests::{FaultCounts, InjectedBug, SimConfig, SimReport};

fn configs(seeds: &[u64]) -> Vec<SimConfig> {
    let bug = InjectedBug::from_env();
    seeds
        .iter()
        .map(|s| {
            let mut c = SimConfig::for_seed(*s);
            c.inject = bug;
            c
        })
        .collect()
}

fn verdict(reports: &[SimReport]) -> Result<(), String> {
    let failed: Vec<&SimReport> = reports.iter().filter(|r| !r.converged).collect();
    if failed.is_empty() {
        return Ok(());
    }
    let mut msg = format!("{} of {} seeds failed:\n", failed.len(), reports.len());
    for r in failed {
        msg.push_str(&failure_message(r));
    }
    Err(msg)
}

/// Per profile: seeds, simulated hours, edits, conflicts, round trips.
fn summary(reports: &[SimReport], wall: f64) -> String {
    let mut by: BTreeMap<&str, (u64, f64, u64, u64, u64, u64)> = BTreeMap::new();
    for r in reports {
        let e = by.entry(r.profile.as_str()).or_default();
        e.0 += 1;
        e.1 += r.simulated_ms as f64 / 3_600_000.0;
        e.2 += r.edits;
        e.3 += r.conflicts_by_kind.values().sum::<u64>();
        e.4 += r.round_trips;
        e.5 += r.refused_locally.values().sum::<u64>();
    }
    let mut s = format!("{} seeds in {wall:.1} s on {} threads\n", reports.len(), threads());
    s.push_str("profile      seeds  sim h/run  edits/run  refused/run  conflicts/run  round trips/run\n");
    for (p, (n, h, e, c, rt, rf)) in by {
        let n = n as f64;
        s.push_str(&format!(
            "{p:<12} {:>5}  {:>9.1}  {:>9.1}  {:>11.1}  {:>13.1}  {:>15.1}\n",
            n,
            h / n,
            e as f64 / n,
            rf as f64 / n,
            c as f64 / n,
            rt as f64 / n
        ));
    }
    let mut faults = FaultCounts::default();
    for r in reports {
        faults.add(&r.faults);
    }
    let total = |f: fn(&SimReport) -> u64| reports.iter().map(f).sum::<u64>();
    s.push_str(&format!(
        "trust: {} edits on a stale roster; {} hostile changes stored as rejections, {} hostile requests refused; {} \
         writes stamped ahead of the \
         server, {} of them re-decided by a role change, {} last-writer-wins contests they would have won by stamp; {} \
         sections moved on by the frozen-section probe ({} past a transition stamped after the probe's); {} honest \
         changes refused\n",
        total(|r| r.stale_role_edits),
        total(|r| r.hostile_stored),
        total(|r| r.hostile_refused),
        total(|r| r.writes_stamped_ahead),
        total(|r| r.redecided_ahead),
        total(|r| r.ahead_contests),
        total(|r| r.probed_sections),
        total(|r| r.probed_behind_stamps),
        total(|r| r.refused_changes),
    ));
    let ratio = |r: &SimReport| (r.bytes_up + r.bytes_down) as f64 / r.change_floor_bytes.max(1) as f64;
    let worst = reports.iter().map(ratio).fold(0.0, f64::max);
    let mean = reports.iter().map(ratio).sum::<f64>() / reports.len().max(1) as f64;
    s.push_str(&format!("bytes on the wire / change floor: mean {mean:.2}, worst {worst:.2}\n"));
    let two = reports.iter().filter(|r| r.two_servers).count();
    s.push_str(&format!("faults over all seeds ({two} with two hub instances): {faults:?}\n"));
    s
}

/// The window of seeds: `FIELDSYNC_SEEDS` (default 500) from a base that
/// moves with the commit; `FIELDSYNC_SEED=…` replays exactly those.
#[test]
fn seeds() {
    let seeds = seeds_to_run();
    if std::env::var("FIELDSYNC_SEED").is_ok() {
        eprintln!("replaying {} seed(s)", seeds.len());
    } else {
        let (base, from) = base_seed();
        eprintln!("running {} seeds from {base} ({from}); replay one with FIELDSYNC_SEED=<seed>", seeds.len());
    }
    let started = Instant::now();
    let reports = run_many(configs(&seeds), threads(), &|r| {
        if !r.converged {
            eprintln!("{}", failure_message(r));
        }
    });
    eprintln!("{}", summary(&reports, started.elapsed().as_secs_f64()));
    if seeds.len() <= 4 {
        for r in &reports {
            eprintln!("{}", r.summary());
        }
    }
    if let Err(e) = verdict(&reports) {
        panic!("{e}");
    }
}

/// Every seed that ever failed, kept for good (`tests/regressions.txt`).
#[test]
fn regression_seeds() {
    let list = regressions();
    let seeds: Vec<u64> = list.iter().map(|(s, _)| *s).collect();
    let reports = run_many(configs(&seeds), threads(), &|_| {});
    if let Err(e) = verdict(&reports) {
        panic!("{e}");
    }
}
