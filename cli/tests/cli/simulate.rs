//! `fieldsync simulate`: a fixed seed converges, its report adds up, and the
//! same seed and flags give the same run.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::support::*;

fn sum(v: &Value) -> u64 {
    v.as_object().unwrap().values().map(|n| n.as_u64().unwrap()).sum()
}

const RUN: [&str; 9] = ["simulate", "--seed", "3", "--devices", "5", "--sections", "12", "--profile", "edge"];

#[test]
fn a_seeded_day_converges_and_its_report_adds_up() {
    let r = ok_json(&RUN);
    assert_eq!(r["converged"], true, "{r:#}");
    assert_eq!(r["violations"], serde_json::json!([]));
    assert_eq!((r["seed"].as_u64(), r["profile"].as_str(), r["devices"].as_u64()), (Some(3), Some("edge"), Some(5)));
    assert!(r["sections"].as_u64().unwrap() >= 12, "the office plans 12 and may add more: {r}");

    let n = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("no number `{k}` in {r}"));
    // Edits: the total is the sum of the kinds; the crews did work.
    assert!(n("edits") > 0);
    assert_eq!(sum(&r["edits_by_kind"]), n("edits"));
    // Conflicts: by kind and by rule count the same records; quarantined points are quarantine records.
    assert_eq!(sum(&r["conflicts_by_kind"]), sum(&r["conflicts_by_rule"]));
    assert!(n("quarantined_points") <= r["conflicts_by_kind"]["quarantine"].as_u64().unwrap_or(0));
    // Round trips and bytes.
    assert!(n("round_trips") > 0 && n("failed_round_trips") <= n("round_trips"));
    assert!(n("heal_round_trips") <= n("round_trips"));
    assert!(n("bytes_repeated") <= n("bytes_up") + n("bytes_down"));
    assert!(n("changes") > 0 && n("changes_deflated_bytes") <= n("changes_raw_bytes"));
    assert_eq!(n("change_floor_bytes"), n("changes_deflated_bytes") * n("devices"));
    assert!(
        n("bytes_up") + n("bytes_down") >= n("changes_deflated_bytes"),
        "every change crossed the wire at least once"
    );
    // Time.
    assert!(n("heal_ms") <= n("simulated_ms"));
    // Edit → visible: every arrival elsewhere and every edit's last arrival,
    // ordered percentiles, in simulated time (the same on every run).
    let (seen, all) = (&r["edit_to_visible"], &r["edit_to_everyone"]);
    let ms = |l: &Value, k: &str| l[k].as_u64().unwrap_or_else(|| panic!("no `{k}` in {l}"));
    assert!(ms(seen, "samples") >= ms(all, "samples") && ms(all, "samples") > 0, "{seen} {all}");
    assert!(ms(all, "samples") <= n("edits"), "{all}");
    for l in [seen, all] {
        assert!(
            ms(l, "p50_ms") <= ms(l, "p90_ms")
                && ms(l, "p90_ms") <= ms(l, "p99_ms")
                && ms(l, "p99_ms") <= ms(l, "max_ms"),
            "{l}"
        );
    }
    assert_eq!(ms(seen, "max_ms"), ms(all, "max_ms"));
    // Trust: no honest change refused; the new counts are there.
    assert_eq!(n("refused_changes"), 0);
    assert!(n("probed_behind_stamps") <= n("probed_sections"));
    assert!(r["faults"]["role_changes"].is_u64() && r["faults"]["hostile_requests"].is_u64(), "{r}");

    // The same seed and flags: the same day, byte for byte (wall time aside).
    let again = ok_json(&RUN);
    let strip = |v: &Value| {
        let mut v = v.clone();
        v["wall_ms"] = Value::Null;
        v
    };
    assert_eq!(strip(&again), strip(&r));
    let other = ok_json(&["simulate", "--seed", "4", "--devices", "5", "--sections", "12", "--profile", "edge"]);
    assert_ne!(other["state_digest"], r["state_digest"]);
}

#[test]
fn the_human_report_names_every_figure_and_the_verdict() {
    let out = ok(&["simulate", "--seed", "5", "--devices", "4", "--sections", "6", "--profile", "offline-day"]).stdout;
    let mut missing = BTreeMap::new();
    for line in [
        "fieldsync simulate: seed 5, profile offline-day, 4 devices, 6 sections",
        "  edits ",
        "  conflicts ",
        "    decided by ",
        "  quarantined ",
        "  round trips ",
        "  on the wire ",
        "  change floor ",
        "  faults ",
        "  trust ",
        "  time ",
        "  verdict        CONVERGED",
        "  replay         fieldsync simulate --seed 5 --profile offline-day --devices 4 --sections 6",
    ] {
        if !out.contains(line) {
            missing.insert(line, ());
        }
    }
    assert!(missing.is_empty(), "missing {:?} in:\n{out}", missing.keys());
}

#[test]
fn simulate_flags_are_checked() {
    let r = run(&["simulate", "--profile", "5g"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("unknown profile `5g`: choose among 3g, edge, 2g-rural, offline-day"), "{}", r.stderr);
    assert_eq!(run(&["simulate", "--devices", "1"]).code, 2);
    assert_eq!(run(&["simulate", "--sections", "0"]).code, 2);
}
