//! `fieldsync device`: replicas that edit offline, sync through the server
//! and show identical views; refusals by rule; every read command.

use serde_json::Value;

use crate::support::*;

#[test]
fn replicas_edit_offline_sync_and_show_identical_views() {
    let crew = Crew::new();
    for user in ["olga", "fred", "tina", "tom"] {
        let init = crew.init(user);
        assert_eq!(init["project"], PROJECT);
        assert_eq!(init["user"], user);
        assert_eq!(init["sync"]["rounds"], 1, "{init}");
    }
    assert_eq!(crew.init("fred")["role"], "foreman", "init again is harmless");
    crew.create_section("s1", "Hauptstraße north");
    crew.create_section("s2", "Hauptstraße south");
    crew.device_json("olga", &["sync"]);
    for user in ["fred", "tina", "tom"] {
        assert_eq!(crew.device_json(user, &["sync"])["new_changes"], 2);
    }

    // Offline (no sync in between): overlapping edits.
    crew.device_json("tina", &["state", "s1", "surveyed"]);
    crew.device_json("tina", &["progress", "s1", "15"]);
    crew.device_json("tina", &["notes", "s1", "manhole 4 flooded"]);
    crew.device_json("tom", &["progress", "s1", "10"]);
    crew.device_json("tom", &["location", "s1", "48.0002,11.004"]);
    crew.device_json("fred", &["state", "s1", "trenched"]);
    crew.device_json("fred", &["state", "s2", "blocked", "--reason", "landowner refuses access"]);
    let off = crew.device_json("tom", &["location", "s2", "48.01,11.005"]);
    assert_eq!(off["decision"]["outcome"], "quarantined", "{off}");
    assert!((off["decision"]["distance_m"].as_f64().unwrap() - 1111.9).abs() < 1.0, "{off}");

    let pending = crew.device_json("tina", &["status"]);
    assert_eq!(pending["pending_changes"], 3);
    assert!(pending["last_success_ms"].is_number());

    // Tina syncs first: her edits reach the server, nothing of the others yet.
    let t = crew.device_json("tina", &["sync"]);
    assert_eq!((t["confirmed"].as_u64(), t["refused"].as_u64()), (Some(3), Some(0)), "{t}");
    // Fred's concurrent transition beats hers (higher role); his sync reports his edits.
    let f = crew.device_json("fred", &["sync"]);
    assert_eq!(f["confirmed"], 2, "{f}");
    let stands: Vec<&Value> = f["reconciliation"].as_array().unwrap().iter().collect();
    assert!(stands.iter().any(|r| r["section"] == "s1" && r["outcome"]["status"] == "stands"), "{f}");
    // Tom's lower progress report, made later without knowing of Tina's, may not lower it.
    let tom = crew.device_json("tom", &["sync"]);
    let overridden = tom["reconciliation"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["field"] == "progress")
        .unwrap_or_else(|| panic!("no progress line in {tom}"));
    assert_eq!(overridden["outcome"]["status"], "overridden", "{tom}");
    assert_eq!(overridden["outcome"]["rule"], "progress_only_rises", "{tom}");
    assert_eq!(overridden["outcome"]["by"]["user"], "tina", "{tom}");
    // The human report says the same.
    for user in ["olga", "fred", "tina", "tom"] {
        crew.device_ok(user, &["sync"]);
    }

    // Everyone, and the server, shows the same views.
    for s in ["s1", "s2"] {
        let views: Vec<Value> =
            ["olga", "fred", "tina", "tom"].iter().map(|u| crew.device_json(u, &["show", s])).collect();
        for v in &views[1..] {
            assert_eq!(v, &views[0], "views of {s} differ");
        }
        assert_eq!(ok_json(&["admin", "--data", &crew.data(), "section", s]), views[0], "the server's view of {s}");
    }
    let s1 = crew.device_json("olga", &["show", "s1"]);
    assert_eq!(s1["state"], "trenched");
    assert_eq!(s1["progress"], 15);
    assert_eq!(s1["notes"], "manhole 4 flooded");
    assert_eq!(s1["location"]["point"], serde_json::json!({"lat": 48.0002, "lon": 11.004}));
    let s2 = crew.device_json("tina", &["show", "s2"]);
    assert_eq!(s2["state"], "blocked");
    assert_eq!(s2["blocked"]["reason"], "landowner refuses access");
    assert_eq!(s2["quarantined"].as_array().unwrap().len(), 1);

    // Conflicts agree too, and the server has the same records.
    let mine = crew.device_json("tom", &["conflicts"]);
    assert_eq!(crew.device_json("olga", &["conflicts"]), mine);
    assert_eq!(ok_json(&["admin", "--data", &crew.data(), "conflicts", "--project", PROJECT]), mine);
    let rules: Vec<&str> = mine["conflicts"].as_array().unwrap().iter().map(|c| c["rule"].as_str().unwrap()).collect();
    for rule in ["transition_precedence", "progress_only_rises", "off_route"] {
        assert!(rules.contains(&rule), "no {rule} conflict in {rules:?}");
    }

    // A foreman accepts the quarantined point (by a prefix of its edit id); everyone sees it applied.
    let point = s2["quarantined"][0]["edit_id"].as_str().unwrap();
    let accepted = crew.device_json("fred", &["accept", "s2", &point[..20]]);
    assert_eq!(accepted["decision"]["outcome"], "accepted");
    crew.device_json("fred", &["sync"]);
    crew.device_json("tina", &["sync"]);
    let s2 = crew.device_json("tina", &["show", "s2"]);
    assert_eq!(s2["quarantined"], serde_json::json!([]));
    assert_eq!(s2["location"]["edit_id"], point);
}

#[test]
fn a_refused_edit_exits_3_with_the_rule_and_stores_nothing() {
    let crew = Crew::new();
    crew.init("olga");
    crew.init("tina");
    crew.create_section("s1", "Dorfstraße");
    crew.device_json("olga", &["sync"]);
    crew.device_json("tina", &["sync"]);
    crew.device_json("tina", &["state", "s1", "surveyed"]);

    let r = crew.device("tina", &["state", "s1", "planned"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(r.stderr.starts_with("error: refused by rule transition_not_allowed: "), "{}", r.stderr);
    assert!(r.stdout.is_empty());

    let r = crew.device("tina", &["--json", "progress", "s1", "150"]);
    assert_eq!(r.code, 3, "{r:?}");
    let err: Value = serde_json::from_str(r.stderr.trim()).unwrap();
    assert_eq!(err["error"], "refused");
    assert_eq!(err["rule"], "progress_range");
    assert!(err["message"].as_str().unwrap().starts_with("refused by rule progress_range: "), "{err}");

    let r = crew.device("tina", &["create", "--name", "mine", "--route", "48,11;48,11.01"]);
    assert_eq!(r.code, 3);
    assert!(r.stderr.contains("refused by rule office_only: only office staff may create sections"), "{}", r.stderr);

    let r = crew.device("tina", &["accept", "s1", "1700000000000-00000-00"]);
    assert_eq!(r.code, 3);
    assert!(r.stderr.contains("refused by rule accept_requires_foreman"), "{}", r.stderr);

    // Nothing of those was stored: one pending change (the transition), the state unchanged.
    assert_eq!(crew.device_json("tina", &["status"])["pending_changes"], 1);
    assert_eq!(crew.device_json("tina", &["show", "s1"])["state"], "surveyed");
    assert_eq!(crew.device_json("tina", &["list"])["sections"].as_array().unwrap().len(), 1);
}

#[test]
fn usage_and_other_errors_have_their_own_exit_codes() {
    let crew = Crew::new();
    crew.init("olga");
    crew.create_section("s1", "Dorfstraße");
    let cases: [(&[&str], i32, &str); 7] = [
        (&["show", "nope"], 1, "no section `nope`"),
        (&["state", "s1", "dug"], 2, "unknown state `dug`"),
        (&["state", "s1", "blocked"], 3, "needs a reason"),
        (&["location", "s1", "95,11"], 2, "not a WGS84 position"),
        (&["create", "--name", "x", "--route", "48,11"], 2, "at least two points"),
        (&["view-at", "s1"], 2, "--time"),
        (&["list", "--limit", "0"], 2, "--limit must be at least 1"),
    ];
    for (args, code, says) in cases {
        let r = crew.device("olga", args);
        assert_eq!(r.code, code, "{args:?}: {r:?}");
        assert!(r.stderr.contains(says), "{args:?}: {}", r.stderr);
    }
    let r = run(&["device", "--db", crew.dir.path().join("none.db").to_str().unwrap(), "status"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no replica at") && r.stderr.contains("init --server"), "{}", r.stderr);
    assert!(!crew.dir.path().join("none.db").exists(), "a read must not create a store");

    // Offline: sync fails with exit 1, the edit stays pending and the status says why.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("lone.db");
    let db = db.to_str().unwrap();
    let init = ok_json(&[
        "device",
        "--db",
        db,
        "init",
        "--server",
        "http://127.0.0.1:9",
        "--token",
        "x",
        "--project",
        "p",
        "--offline",
    ]);
    assert!(init["sync"].is_null());
    let r = run(&["device", "--db", db, "sync"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("server unreachable"), "{}", r.stderr);
    let status = ok_json(&["device", "--db", db, "status"]);
    assert!(status["last_error"].as_str().unwrap().contains("unreachable"), "{status}");
    // Without --offline, init keeps what it was told even when the first sync fails.
    let db2 = dir.path().join("second.db");
    let db2 = db2.to_str().unwrap();
    let r = run(&["device", "--db", db2, "init", "--server", "http://127.0.0.1:9/", "--token", "x", "--project", "p"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("set up (server, token and project saved) but its first sync failed"), "{}", r.stderr);
    let status = ok_json(&["device", "--db", db2, "status"]);
    assert_eq!((status["server"].as_str(), status["project"].as_str()), (Some("http://127.0.0.1:9"), Some("p")));
}

#[test]
fn reads_list_pages_audit_history_time_travel_and_export() {
    let crew = Crew::new();
    crew.init("olga");
    for (id, name) in [("a1", "Am Bach"), ("b2", "Bergweg"), ("c3", "Chausseestraße")] {
        crew.create_section(id, name);
    }
    crew.device_json("olga", &["state", "b2", "surveyed"]);
    crew.device_json("olga", &["progress", "b2", "20"]);

    // Paging.
    let page = crew.device_json("olga", &["list", "--limit", "2"]);
    let ids: Vec<&str> = page["sections"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["a1", "b2"]);
    assert_eq!(page["next_after"], "b2");
    let page = crew.device_json("olga", &["list", "--limit", "2", "--after", "b2"]);
    assert_eq!(page["sections"][0]["name"], "Chausseestraße");
    assert!(page["next_after"].is_null());
    let text = crew.device_ok("olga", &["list", "--limit", "2"]).stdout;
    assert!(text.contains("more: list --after b2"), "{text}");

    // Unique prefixes of section ids work; ambiguous ones are refused.
    crew.create_section("b2x", "Bergweg Ost");
    assert_eq!(crew.device_json("olga", &["show", "b2x"])["name"], "Bergweg Ost");
    assert_eq!(crew.device_json("olga", &["show", "c"])["name"], "Chausseestraße");
    let r = crew.device("olga", &["show", "b"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("several section ids"), "{}", r.stderr);

    // Audit: every write and its decision.
    let audit = crew.device_json("olga", &["audit", "b2"]);
    let fields: Vec<&str> = audit["entries"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["name", "route", "state", "progress"]);
    assert!(audit["entries"].as_array().unwrap().iter().all(|e| e["decision"]["outcome"] == "accepted"));

    // History and time travel: as of the first change, the section was only planned.
    let history = crew.device_json("olga", &["history", "b2"]);
    let changes = history["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 3);
    assert_eq!(changes[0]["message"], "create");
    let first = changes[0]["hash"].as_str().unwrap();
    let then = crew.device_json("olga", &["view-at", "b2", "--heads", first]);
    assert_eq!((then["state"].as_str(), then["progress"].as_u64()), (Some("planned"), Some(0)));
    let t = changes[1]["time_ms"].as_u64().unwrap();
    let then = crew.device_json("olga", &["view-at", "b2", "--time", &t.to_string()]);
    assert_eq!((then["state"].as_str(), then["progress"].as_u64()), (Some("surveyed"), Some(0)));
    let now = crew.device_json("olga", &["view-at", "b2", "--time", &u64::MAX.to_string()]);
    assert_eq!(now, crew.device_json("olga", &["show", "b2"]));

    // Export: a plain Automerge document with the section's records.
    let file = crew.dir.path().join("b2.automerge");
    let out = crew.device_json("olga", &["export", "b2", "--out", file.to_str().unwrap()]);
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(out["bytes"].as_u64(), Some(bytes.len() as u64));
    let doc = automerge::Automerge::load(&bytes).unwrap();
    use automerge::ReadDoc;
    let (id, _) = doc.get(automerge::ROOT, "id").unwrap().unwrap();
    assert_eq!(id.into_scalar().unwrap().into_string().unwrap(), "b2");
    let (_, edits) = doc.get(automerge::ROOT, "edits").unwrap().unwrap();
    assert_eq!(doc.length(&edits), 4);

    // The human forms carry the same facts.
    let show = crew.device_ok("olga", &["show", "b2"]).stdout;
    assert!(show.contains("state     surveyed") && show.contains("progress  20%"), "{show}");
    let audit = crew.device_ok("olga", &["audit", "b2"]).stdout;
    assert!(audit.contains("olga (office)") && audit.contains("accepted"), "{audit}");
    let status = crew.device_ok("olga", &["status"]).stdout;
    assert!(status.contains("as olga (office)") && status.contains("pending     6 change(s)"), "{status}");
    assert!(status.contains("last round  ") && status.contains(" B up, "), "{status}");
}

#[test]
fn a_photo_file_is_kept_by_content_and_the_office_sees_its_record() {
    let crew = Crew::new();
    for user in ["olga", "tina"] {
        crew.init(user);
    }
    crew.create_section("s1", "Dorfstraße");
    crew.device_ok("olga", &["sync"]);
    crew.device_ok("tina", &["sync"]);
    // A 640 × 480 PNG header is all `photo` reads besides the hash.
    let mut png = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13];
    png.extend_from_slice(b"IHDR");
    png.extend_from_slice(&640u32.to_be_bytes());
    png.extend_from_slice(&480u32.to_be_bytes());
    png.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
    let file = std::path::Path::new(&crew.db("tina")).with_file_name("closure.png");
    std::fs::write(&file, &png).unwrap();
    let file = file.to_str().unwrap();

    crew.device_json("tina", &["photo", "s1", file, "--caption", "closure 3"]);
    let listed = crew.device_json("tina", &["photos", "s1"]);
    let p = &listed["photos"][0];
    assert_eq!(
        (
            p["photo"]["blob"]["media_type"].as_str(),
            p["photo"]["blob"]["width"].as_u64(),
            p["on_this_device"].as_bool()
        ),
        (Some("image/png"), Some(640), Some(true)),
        "{listed}"
    );
    assert!(crew.device_ok("tina", &["photos", "s1"]).stdout.contains("image/png  640×480"));

    crew.device_ok("tina", &["sync"]);
    crew.device_ok("olga", &["sync"]);
    let office = crew.device_json("olga", &["photos", "s1"]);
    let p = &office["photos"][0];
    assert_eq!(p["photo"]["caption"], "closure 3", "{office}");
    assert_eq!(p["on_this_device"], false, "{office}");
    assert_eq!(p["where"]["state"], "not_fetched", "{office}");
    assert_eq!(crew.device_json("tina", &["photos", "s1"])["photos"][0]["where"]["state"], "on_server");
    let sha = p["photo"]["blob"]["sha256"].as_str().unwrap().to_owned();
    let section = crew.device_json("olga", &["list"])["sections"][0]["id"].as_str().unwrap().to_owned();
    let held = ok_json(&["admin", "--data", &crew.data(), "section", &section]);
    assert_eq!(held["photos_on_server"], 1, "{held}");
    assert!(
        ok(&["admin", "--data", &crew.data(), "section", &section])
            .stdout
            .contains("photo bytes on the server: 1 of 1")
    );

    // The office fetches the bytes: they are the photo tina took.
    let fetched = crew.device_json("olga", &["fetch-photo", &sha]);
    assert_eq!(std::fs::read(fetched["file"].as_str().unwrap()).unwrap(), png);
    assert!(crew.device_ok("olga", &["photos", "s1"]).stdout.contains("  fetched  sha256 "));
    // Every photo is named by its section: collecting removes none.
    let collected = ok_json(&["admin", "--data", &crew.data(), "collect-photos", "--grace-hours", "0"]);
    assert_eq!(collected["removed"], 0, "{collected}");

    // Not an image: a usage error that says what is taken, nothing attached.
    let txt = std::path::Path::new(&crew.db("tina")).with_file_name("notes.txt");
    std::fs::write(&txt, "not a photo").unwrap();
    let r = crew.device("tina", &["photo", "s1", txt.to_str().unwrap()]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("JPEG, PNG"), "{r:?}");
    assert_eq!(crew.device_json("tina", &["photos", "s1"])["photos"].as_array().unwrap().len(), 1);
}

/// The office changes the project's photo policy with `admin configure`
/// from another process while `serve` runs: the next metered sync of a
/// device holds its full sizes, an unmetered one sends them, and lifting
/// the policy lets them go on mobile data again.
#[test]
fn a_policy_changed_while_the_server_runs_holds_full_sizes_on_a_metered_link() {
    let crew = Crew::new();
    for user in ["olga", "tina"] {
        crew.init(user);
    }
    crew.create_section("s1", "Dorfstraße");
    crew.device_ok("olga", &["sync"]);
    crew.device_ok("tina", &["sync"]);
    let section = crew.device_json("olga", &["list"])["sections"][0]["id"].as_str().unwrap().to_owned();
    let photo = |name: &str, width: u32| {
        let mut png = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13];
        png.extend_from_slice(b"IHDR");
        png.extend_from_slice(&width.to_be_bytes());
        png.extend_from_slice(&480u32.to_be_bytes());
        png.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
        let file = std::path::Path::new(&crew.db("tina")).with_file_name(name);
        std::fs::write(&file, &png).unwrap();
        crew.device_json("tina", &["photo", "s1", file.to_str().unwrap()]);
    };
    let states = || -> Vec<String> {
        let listed = crew.device_json("tina", &["photos", "s1"]);
        listed["photos"].as_array().unwrap().iter().map(|p| p["where"]["state"].as_str().unwrap().to_owned()).collect()
    };
    let on_server = || ok_json(&["admin", "--data", &crew.data(), "section", &section])["photos_on_server"].clone();

    ok(&["admin", "--data", &crew.data(), "configure", PROJECT, "--full-size-photos", "on-unmetered-links"]);
    photo("first.png", 640);
    crew.device_ok("tina", &["sync", "--metered"]);
    assert_eq!(states(), ["on_this_device_only"], "held on the metered link");
    assert_eq!(on_server(), 0);
    crew.device_ok("tina", &["sync"]);
    assert_eq!(states(), ["on_server"], "sent on the unmetered one");
    assert_eq!(on_server(), 1);

    ok(&["admin", "--data", &crew.data(), "configure", PROJECT, "--full-size-photos", "always"]);
    photo("second.png", 800);
    crew.device_ok("tina", &["sync", "--metered"]);
    assert_eq!(states(), ["on_server", "on_server"], "the policy lifted, it goes on mobile data too");
    assert_eq!(on_server(), 2);
}

#[test]
fn a_technician_subscribes_to_a_corridor_and_a_crew_and_holds_only_those() {
    let crew = Crew::new();
    for user in ["olga", "tina"] {
        crew.init(user);
    }
    crew.device_json("olga", &["create", "--id", "near", "--name", "near", "--route", "48.002,11.0;48.002,11.01"]);
    crew.device_json("olga", &["create", "--id", "far", "--name", "far", "--route", "49.0,12.0;49.0,12.01"]);
    crew.device_json("olga", &["create", "--id", "north", "--name", "north", "--route", "50.0,12.0;50.0,12.01"]);
    let assigned = crew.device_json("olga", &["assign", "north", "north-crew"]);
    assert_eq!(assigned["decision"]["outcome"], "accepted", "{assigned}");
    crew.device_json("olga", &["sync"]);

    let scope = crew.device_json("tina", &["subscribe", "--corridor", "48.0,10.99;48.0,11.05", "--buffer", "500"]);
    assert_eq!(scope["scope"]["Only"][0]["Corridor"]["buffer_m"], 500, "{scope}");
    crew.device_json("tina", &["subscribe", "--assigned", "north-crew"]);
    crew.device_json("tina", &["sync"]);
    let held = crew.device_json("tina", &["subscriptions"]);
    let sections: Vec<&str> =
        held["sections"].as_array().unwrap().iter().map(|h| h["section"].as_str().unwrap()).collect();
    assert_eq!(sections, ["near", "north"], "{held}");
    assert_eq!(held["sections"][1]["reasons"][0], serde_json::json!({"because": "subscription", "index": 1}));
    let human = crew.device_ok("tina", &["subscriptions"]).stdout;
    assert!(
        human.contains("corridor of 2 points, 500 m either side") && human.contains("2 section(s) held"),
        "{human}"
    );

    // A technician may not assign; bad subscriptions say what to give.
    let r = crew.device("tina", &["assign", "near", "south-crew"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(r.stderr.contains("office_only"), "{}", r.stderr);
    for (args, says) in [
        (&["subscribe", "--bbox", "1,2,3"][..], "four numbers"),
        (&["subscribe", "--corridor", "48,11", "--bbox", "1,2,3,4"][..], "cannot be used with"),
        (&["subscribe", "--corridor", "48,11", "--buffer", "60000"][..], "at most 50000 m"),
    ] {
        let r = crew.device("tina", args);
        assert_ne!(r.code, 0, "{args:?}");
        assert!(r.stderr.contains(says), "{args:?}: {}", r.stderr);
    }

    // Back to everything: the next sync brings the rest.
    crew.device_json("tina", &["unsubscribe"]);
    crew.device_json("tina", &["sync"]);
    assert_eq!(crew.device_json("tina", &["subscriptions"])["sections"].as_array().unwrap().len(), 3);
}
