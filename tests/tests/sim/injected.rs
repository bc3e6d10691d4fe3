//! The suite finds the bugs the simulator injects on its side of the wire
//! (production code untouched): see tests/README.md.

use fieldsync_tests::seeds::run_many;
use fieldsync_tests::{InjectedBug, Invariant, SimConfig};

fn caught(bug: InjectedBug) -> Vec<Invariant> {
    let configs: Vec<SimConfig> = (100..104)
        .map(|s| {
            let mut c = SimConfig::for_seed(s);
            c.inject = Some(bug);
            // Enough role changes that every seed has some to misrecord.
            c.faults.role_changes = c.faults.role_changes.max(4.0);
            c
        })
        .collect();
    let reports = run_many(configs, 2, &|_| {});
    assert!(reports.iter().all(|r| !r.converged), "{bug:?} went unnoticed on some seed");
    let mut found: Vec<Invariant> = reports.iter().flat_map(|r| r.violations.iter().map(|v| v.invariant)).collect();
    found.sort();
    found.dedup();
    found
}

#[test]
fn a_server_that_answers_without_storing_the_upload_is_caught() {
    let found = caught(InjectedBug::DropUpload);
    assert!(found.contains(&Invariant::NoLostEdit), "{found:?}");
}

#[test]
fn a_feed_page_that_skips_changes_is_caught() {
    let found = caught(InjectedBug::DropChanges);
    assert!(found.contains(&Invariant::Convergence), "{found:?}");
}

#[test]
fn a_device_that_never_commits_its_cursor_is_caught() {
    let found = caught(InjectedBug::ForgetCursor);
    assert_eq!(found, [Invariant::Efficiency]);
}

#[test]
fn a_hub_that_judges_with_todays_roster_is_caught() {
    let found = caught(InjectedBug::BackdateRoles);
    assert!(found.contains(&Invariant::StableHistory), "{found:?}");
}
