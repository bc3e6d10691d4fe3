//! `fieldsync bench`: runs end to end on small sizes and reports its figures.

use crate::support::*;

#[test]
fn bench_reports_every_figure() {
    let out = ok_json(&["bench", "--sections", "8", "--edits", "8"]);
    let figures = out["figures"].as_array().unwrap();
    let names: Vec<&str> = figures.iter().map(|f| f["name"].as_str().unwrap()).collect();
    for part in
        ["local edit", "merge of a section's concurrent edits", "bytes on the wire", "open a store of 8 sections"]
    {
        assert!(names.iter().any(|n| n.contains(part)), "no `{part}` figure in {names:?}");
    }
    assert!(figures.iter().all(|f| f["value"].as_f64().is_some_and(|v| v >= 0.0) && f["unit"].is_string()));
    let records = figures.iter().find(|f| f["name"] == "conflict records after the merges").unwrap();
    assert_eq!(records["value"], 8.0, "one contest per section both replicas edited");

    let text = ok(&["bench", "--sections", "3", "--edits", "3"]).stdout;
    assert!(text.contains("local edit → validated view, durable (p50)"), "{text}");
    assert_eq!(run(&["bench", "--sections", "0"]).code, 2);
}

/// `fieldsync bench photos` at a tiny scale: every photo goes through a real
/// `serve` with its thumbnail, and comes back. Counts only.
#[test]
fn bench_photos_sends_real_photos_through_a_real_server_and_fetches_them_back() {
    let out = ok_json(&["bench", "photos", "--photos", "2", "--size-mb", "0.3"]);
    assert_eq!((out["photos"].as_u64(), out["photo_bytes"].as_u64()), (Some(2), Some(600_000)), "{out:#}");
    // Two thumbnails and at least two full sizes, each at least one request.
    assert!(out["photo_requests"].as_u64().unwrap() >= 4, "{out:#}");
    let thumbnail = out["thumbnail_bytes_each"].as_u64().unwrap();
    assert!((1_000..100_000).contains(&thumbnail), "{out:#}");
    assert!(
        ["upload_mb_per_s", "download_mb_per_s", "raw_tcp_mb_per_s"].iter().all(|k| out[k].as_f64().unwrap() > 0.0)
    );
    assert_eq!(run(&["bench", "photos", "--size-mb", "40"]).code, 2);
}

/// `fieldsync bench load` at a tiny scale: real devices, a real `serve`
/// child, edits that reach the other devices, and a clean stop. Counts and
/// events only: durations depend on the machine.
#[test]
fn bench_partial_bootstraps_only_the_corridor_and_its_idle_round_is_small() {
    let out = ok_json(&["bench", "partial", "--sections", "900"]);
    assert_eq!(out["corridor"]["sections_held"], 300, "{out:#}");
    assert_eq!(out["everything"]["sections_held"], 900, "{out:#}");
    let bytes = |which: &str| out[which]["bytes_down"].as_u64().unwrap();
    assert!(bytes("corridor") * 2 < bytes("everything"), "{out:#}");
    assert!(out["corridor_overhead"].as_f64().unwrap() <= 1.25, "{out:#}");
    let idle = out["idle_round_bytes_up"].as_u64().unwrap() + out["idle_round_bytes_down"].as_u64().unwrap();
    assert!(idle < 1024, "{out:#}");
}

#[test]
fn bench_load_runs_real_devices_against_a_real_server_and_reports_edit_to_visible() {
    // Six devices in projects of three, editing every second for three seconds.
    let load = |extra: &[&str]| {
        let base = ["bench", "load", "--devices", "6", "--project-size", "3", "--seconds", "3", "--edit-every", "1"];
        ok_json(&[&base[..], &["--workers", "4", "--drain", "30"], extra].concat())
    };
    let out = load(&[]);
    assert_eq!((out["mode"].as_str(), out["store"].as_str()), (Some("load"), Some("sqlite")), "{out:#}");
    assert_eq!((out["devices"].as_u64(), out["projects"].as_u64()), (Some(6), Some(2)), "{out:#}");
    assert_eq!(out["generator_processes"], 1, "{out:#}");
    assert!(out["edits"]["made"].as_u64().unwrap() > 0, "{out:#}");
    let visible = &out["edit_to_visible_ms"];
    assert!(visible["count"].as_u64().unwrap() > 0, "no edit reached another device: {out:#}");
    for p in ["p50", "p90", "p99", "max"] {
        assert!(visible[p].as_f64().is_some(), "{p} missing: {out:#}");
    }
    assert!(out["edit_to_acknowledged_ms"]["count"].as_u64().unwrap() > 0, "{out:#}");
    assert!(out["rounds"].as_u64().unwrap() > 0, "{out:#}");
    assert!(out["hub"]["round"]["count"].as_u64().unwrap() > 0, "the hub's metrics did not move: {out:#}");
    assert!(out["hub"]["detection"]["count"].as_u64().unwrap() > 0, "{out:#}");
    assert_eq!(out["server"]["exited_cleanly"], true, "{out:#}");

    // Spread over two load generator processes (as when one cannot open every device's files).
    let spread = load(&["--devices-per-process", "3"]);
    assert_eq!(spread["generator_processes"], 2, "{spread:#}");
    assert!(spread["edit_to_visible_ms"]["count"].as_u64().unwrap() > 0, "{spread:#}");
    assert_eq!(spread["server"]["exited_cleanly"], true, "{spread:#}");

    let idle = ok_json(&["bench", "load", "--idle-channels", "4", "--project-size", "2", "--seconds", "1"]);
    assert_eq!((idle["mode"].as_str(), idle["open"].as_u64()), (Some("idle"), Some(4)), "{idle:#}");
    assert_eq!(idle["exited_cleanly"], true, "{idle:#}");

    // Bad input is a usage error, said plainly.
    let r = run(&["bench", "load", "--processes", "2"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--database-url"), "{}", r.stderr);
    for bad in [&["--conflicts", "2"][..], &["--devices", "1"], &["--edit-every", "0"], &["--large-project", "900"]] {
        let r = run(&[&["bench", "load"][..], bad].concat());
        assert_eq!(r.code, 2, "{bad:?}: {}", r.stderr);
    }
}
