//! Partial sync in the simulator: technicians hold corridors along part of
//! their crew's route (neighbouring crews' corridors overlap), some also
//! their crew's assignments, which the office changes during the day; they
//! move their corridors, online and offline. After the heal each partial
//! replica holds exactly what its scope covers on the server, each with the
//! server's view and conflict records (`scope_holdings`, `convergence`).

use std::collections::BTreeSet;

use fieldsync_tests::seeds::{failure_message, run_many, threads};
use fieldsync_tests::{InjectedBug, Invariant, ScopeFigures, SimConfig, SimReport};

/// Seeds of the scope day: the profile cycles with the seed (3g, edge,
/// 2g-rural, offline-day), three days of each. `FIELDSYNC_SEED=a,b` replays those.
const SEEDS: std::ops::Range<u64> = 7_000..7_012;

fn seeds() -> Vec<u64> {
    match std::env::var("FIELDSYNC_SEED") {
        Ok(list) => list.split(',').filter_map(|s| s.trim().parse().ok()).collect(),
        Err(_) => SEEDS.collect(),
    }
}

fn run(seeds: &[u64], bug: Option<InjectedBug>) -> Vec<SimReport> {
    let configs = seeds
        .iter()
        .map(|s| {
            let mut c = SimConfig::partial_scopes(*s);
            c.inject = bug;
            c
        })
        .collect();
    run_many(configs, threads(), &|r| {
        if !r.converged && bug.is_none() {
            eprintln!("{}", failure_message(r));
        }
    })
}

fn total(reports: &[SimReport]) -> ScopeFigures {
    let mut t = ScopeFigures::default();
    for f in reports.iter().filter_map(|r| r.scopes.as_ref()) {
        t.scoped_devices += f.scoped_devices;
        t.crew_subscribers += f.crew_subscribers;
        t.moves += f.moves;
        t.moves_offline += f.moves_offline;
        t.assignments += f.assignments;
        t.evicted += f.evicted;
        t.keep_only += f.keep_only;
        t.documents += f.documents;
        t.held_at_end += f.held_at_end;
        t.possible_at_end += f.possible_at_end;
    }
    t
}

#[test]
fn crews_with_overlapping_moving_corridors_hold_what_their_scope_covers() {
    let seeds = seeds();
    let reports = run(&seeds, None);
    let t = total(&reports);
    eprintln!("{} scope days: {t:?}", reports.len());
    let failed: Vec<String> = reports.iter().filter(|r| !r.converged).map(failure_message).collect();
    assert!(failed.is_empty(), "{} of {} seeds failed:\n{}", failed.len(), reports.len(), failed.concat());
    if std::env::var("FIELDSYNC_SEED").is_ok() {
        return;
    }
    let profiles: BTreeSet<&str> = reports.iter().map(|r| r.profile.as_str()).collect();
    assert!(profiles.contains("2g-rural") && profiles.len() == 4, "{profiles:?}");
    // Not vacuous: the day did move scopes, assign crews, evict, and the
    // partial replicas held a part, not all nor nothing.
    assert!(t.scoped_devices >= 10 * reports.len() as u64, "{t:?}");
    assert!(t.moves > 0 && t.moves_offline > 0 && t.assignments > 0 && t.crew_subscribers > 0, "{t:?}");
    assert!(t.keep_only > 0 && t.evicted > 0, "{t:?}");
    assert!(t.held_at_end > 0 && t.held_at_end * 2 < t.possible_at_end, "{t:?}");
}

fn caught(bug: InjectedBug) -> BTreeSet<Invariant> {
    let reports = run(&[7_000, 7_002], Some(bug));
    for r in &reports {
        for v in r.violations.iter().take(2) {
            eprintln!("{bug:?} seed {}: {}: {}", r.seed, v.invariant.as_str(), v.detail);
        }
    }
    assert!(reports.iter().all(|r| !r.converged), "{bug:?} went unnoticed on some seed");
    reports.iter().flat_map(|r| r.violations.iter().map(|v| v.invariant)).collect()
}

#[test]
fn a_replica_that_loses_a_covered_section_is_caught() {
    let found = caught(InjectedBug::DropHeldSection);
    assert_eq!(found, BTreeSet::from([Invariant::ScopeHoldings]));
}

#[test]
fn a_hub_that_never_says_what_left_the_scope_is_caught() {
    let found = caught(InjectedBug::ForgetEvictions);
    assert!(found.contains(&Invariant::ScopeHoldings), "{found:?}");
}
