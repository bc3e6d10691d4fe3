//! Trust under change, played through the `fieldsync` binary against a real
//! `fieldsync serve`: roles that change after the fact, a phone clock days
//! ahead, an edit made on a stale roster. Each of these broke a promise once
//! (issue 11): a roster change re-decided history, one skewed clock froze a
//! section, one refused change stopped a device syncing for good.

use std::process::Stdio;

use serde_json::Value;

use crate::support::{Crew, PROJECT, Run, bin, ok};

/// Everyone syncs twice (what one uploads, the others receive).
fn all_sync(crew: &Crew) {
    for _ in 0..2 {
        for user in ["olga", "fred", "tina", "tom"] {
            crew.device_ok(user, &["sync"]);
        }
    }
}

fn admin(crew: &Crew, args: &[&str]) {
    let data = crew.data();
    let mut all = vec!["admin", "--data", data.as_str()];
    all.extend_from_slice(args);
    ok(&all);
}

fn server_view(crew: &Crew, section: &str) -> Value {
    let data = crew.data();
    crate::support::ok_json(&["admin", "--data", &data, "section", section])
}

fn decision_of(audit: &Value, edit_id: &str) -> Value {
    audit["entries"].as_array().unwrap().iter().find(|e| e["edit_id"] == edit_id).unwrap()["decision"].clone()
}

#[test]
fn a_role_change_never_re_decides_history() {
    let crew = Crew::new();
    for user in ["olga", "fred", "tina", "tom"] {
        crew.init(user);
    }
    crew.create_section("s1", "Dorfstraße");
    all_sync(&crew);
    // A skip only a foreman may make, synced and confirmed.
    let skip = crew.device_json("fred", &["state", "s1", "trenched"]);
    all_sync(&crew);
    assert_eq!(crew.device_json("tina", &["show", "s1"])["state"], "trenched");

    // The office demotes the foreman, then changes its own role and removes tom.
    admin(&crew, &["add-user", "fred", "--project", PROJECT, "--role", "technician"]);
    admin(&crew, &["add-user", "olga", "--project", PROJECT, "--role", "foreman"]);
    admin(&crew, &["remove-user", "tom", "--project", PROJECT]);
    for user in ["olga", "fred", "tina"] {
        crew.device_ok(user, &["sync"]);
    }

    for user in ["olga", "fred", "tina"] {
        let view = crew.device_json(user, &["show", "s1"]);
        assert_eq!(view["state"], "trenched", "{user}: {view}");
        assert_eq!(view["name"], "Dorfstraße", "{user}: {view}");
        assert_eq!(view["route"].as_array().map(Vec::len), Some(2), "{user}: {view}");
    }
    let on_server = server_view(&crew, "s1");
    assert_eq!(
        (on_server["state"].as_str(), on_server["name"].as_str()),
        (Some("trenched"), Some("Dorfstraße")),
        "{on_server}"
    );
    // The audit keeps the decision and the role the write was made under.
    let audit = crew.device_json("tina", &["audit", "s1"]);
    assert_eq!(decision_of(&audit, skip["edit_id"].as_str().unwrap())["outcome"], "accepted", "{audit}");
    let entry = audit["entries"].as_array().unwrap().iter().find(|e| e["edit_id"] == skip["edit_id"]).unwrap();
    assert_eq!(entry["role"], "foreman", "{audit}");

    // From now on the old role is gone: fred's next skip is refused at once.
    let r = crew.device("fred", &["state", "s1", "spliced"]);
    assert_eq!(r.code, 3, "{r:?}");
}

fn device_at(crew: &Crew, user: &str, offset: &str, args: &[&str]) -> Run {
    let db = crew.db(user);
    let out = std::process::Command::new("faketime")
        .args(["-f", offset, env!("CARGO_BIN_EXE_fieldsync"), "--json", "device", "--db", &db])
        // What a user can set is the wall clock; the clock since boot stays.
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("faketime runs (Debian package faketime; the test command installs it)");
    let _ = bin; // The same binary, under a skewed clock.
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_eq!(run.code, 0, "{user} at {offset}: {args:?}: {run:?}");
    run
}

#[test]
fn a_phone_clock_days_ahead_does_not_freeze_a_section() {
    let crew = Crew::new();
    for user in ["olga", "fred", "tina"] {
        crew.init(user);
    }
    crew.create_section("s1", "Dorfstraße");
    crew.device_ok("olga", &["sync"]);
    crew.device_ok("tina", &["sync"]);
    crew.device_ok("fred", &["sync"]);
    // Tina's phone clock jumps two days ahead; she starts the section and syncs.
    device_at(&crew, "tina", "+2d", &["state", "s1", "surveyed"]);
    device_at(&crew, "tina", "+2d", &["sync"]);
    crew.device_ok("fred", &["sync"]);
    assert_eq!(crew.device_json("fred", &["show", "s1"])["state"], "surveyed");
    // The foreman, on an honest clock, moves on from what he sees: it stands.
    let next = crew.device_json("fred", &["state", "s1", "trenched"]);
    assert_eq!(next["decision"]["outcome"], "accepted", "{next}");
    crew.device_ok("fred", &["sync"]);
    device_at(&crew, "tina", "+2d", &["sync"]);
    crew.device_ok("olga", &["sync"]);
    for user in ["olga", "fred", "tina"] {
        assert_eq!(crew.device_json(user, &["show", "s1"])["state"], "trenched", "{user}");
    }
    assert_eq!(server_view(&crew, "s1")["state"], "trenched");
    let stale: Vec<Value> = crew.device_json("olga", &["conflicts"])["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["rule"] == "stale_transition")
        .cloned()
        .collect();
    assert!(stale.is_empty(), "{stale:?}");
}

#[test]
fn an_edit_on_a_stale_roster_is_judged_and_the_device_keeps_syncing() {
    let crew = Crew::new();
    for user in ["olga", "fred"] {
        crew.init(user);
    }
    crew.create_section("s1", "Dorfstraße");
    crew.device_ok("olga", &["sync"]);
    crew.device_ok("fred", &["sync"]);
    // Olga's role changes while her phone is offline; on its stale roster she renames a section.
    admin(&crew, &["add-user", "olga", "--project", PROJECT, "--role", "technician"]);
    // Her stamps lag the hub's clock by up to her last round's latency (the
    // anchor is taken when the response arrives): a clock an hour ahead makes
    // sure the rename counts after the change on a loaded machine too.
    let rename: Value =
        serde_json::from_str(&device_at(&crew, "olga", "+1h", &["rename", "s1", "Hauptstraße"]).stdout).unwrap();
    crew.device_json("olga", &["notes", "s1", "manhole 4 flooded"]);
    // The round goes through: the rename is kept and judged, not refused.
    let first = crew.device_json("olga", &["sync"]);
    let rejected = first["reconciliation"].as_array().unwrap().iter().find(|r| r["edit_id"] == rename["edit_id"]);
    assert_eq!(rejected.map(|r| r["outcome"]["rule"].clone()), Some("office_only".into()), "{first}");
    // And every later edit and round works as before.
    crew.device_json("olga", &["progress", "s1", "5"]);
    crew.device_ok("olga", &["sync"]);
    crew.device_ok("olga", &["sync"]);
    let status = crew.device_json("olga", &["status"]);
    assert_eq!(
        (status["pending_changes"].as_i64(), status["refused_changes"].as_i64()),
        (Some(0), Some(0)),
        "{status}"
    );
    crew.device_ok("fred", &["sync"]);
    let seen = crew.device_json("fred", &["show", "s1"]);
    assert_eq!(
        (seen["name"].as_str(), seen["notes"].as_str(), seen["progress"].as_i64()),
        (Some("Dorfstraße"), Some("manhole 4 flooded"), Some(5)),
        "{seen}"
    );
    let conflicts = crew.device_json("fred", &["conflicts", "s1"]);
    assert!(conflicts["conflicts"].as_array().unwrap().iter().any(|c| c["rule"] == "office_only"), "{conflicts}");
}

#[test]
fn a_skip_stamped_days_ahead_keeps_its_decision_after_a_later_demotion() {
    let crew = Crew::new();
    for user in ["olga", "fred", "tina"] {
        crew.init(user);
    }
    crew.create_section("s1", "Dorfstraße");
    for user in ["olga", "fred", "tina"] {
        crew.device_ok(user, &["sync"]);
    }
    // Fred's phone clock jumps two days ahead: his skip, a foreman's move, is stamped then.
    let skip: Value = serde_json::from_str(&device_at(&crew, "fred", "+2d", &["state", "s1", "trenched"]).stdout)
        .expect("the skip's receipt is JSON");
    let skip_id = skip["edit_id"].as_str().unwrap().to_owned();
    device_at(&crew, "fred", "+2d", &["sync"]);
    // Then the office demotes him, at the server's time: before his stamp, after the server had the skip.
    admin(&crew, &["add-user", "fred", "--project", PROJECT, "--role", "technician"]);
    crew.device_ok("tina", &["sync"]);

    assert_eq!(server_view(&crew, "s1")["state"], "trenched");
    assert_eq!(crew.device_json("tina", &["show", "s1"])["state"], "trenched");
    // The audit shows the role in force when the server received the skip, and when that was.
    let audit = crew.device_json("tina", &["audit", "s1"]);
    let entry = audit["entries"].as_array().unwrap().iter().find(|e| e["edit_id"] == skip_id).unwrap();
    assert_eq!((entry["decision"]["outcome"].as_str(), entry["role"].as_str()), (Some("accepted"), Some("foreman")));
    let stamped: u64 = skip_id[..13].parse().unwrap();
    let received = entry["received_ms"].as_u64().expect("a confirmed write shows when the server received it");
    assert!(received + 24 * 3600 * 1000 < stamped, "received {received}, stamped {stamped}: {audit}");
    let human = crew.device_ok("tina", &["audit", "s1"]).stdout;
    assert!(human.lines().any(|l| l.starts_with(&skip_id) && l.contains("received ")), "{human}");
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

#[test]
fn a_foreman_demoted_while_offline_cannot_backdate_a_skip_by_setting_his_clock_back() {
    let crew = Crew::new();
    for user in ["olga", "fred", "tina"] {
        crew.init(user);
    }
    crew.create_section("s1", "Dorfstraße");
    crew.device_ok("olga", &["sync"]);
    crew.device_ok("tina", &["sync"]);
    // Fred's last sync: his phone learns the server's time then.
    let before_sync = wall_ms();
    crew.device_ok("fred", &["sync"]);
    let round = wall_ms() - before_sync;
    // Then, while he is offline, the office demotes him.
    admin(&crew, &["add-user", "fred", "--project", PROJECT, "--role", "technician"]);
    let demoted_by = wall_ms();
    // His phone counts the time since that sync from its clock since boot,
    // with at most the round's length of slack: wait until even that slack
    // puts "now" after the demotion (a clock reading, not a guess at speed).
    while wall_ms() <= demoted_by + round + 1 {
        std::thread::yield_now();
    }
    // He sets his phone a day back, so the skip looks older than his demotion.
    let skip: Value = serde_json::from_str(&device_at(&crew, "fred", "-1d", &["state", "s1", "trenched"]).stdout)
        .expect("the skip's receipt is JSON");
    let stamped: u64 = skip["edit_id"].as_str().unwrap()[..13].parse().unwrap();
    assert!(stamped > demoted_by, "stamped {stamped}, demoted by {demoted_by}");
    device_at(&crew, "fred", "-1d", &["sync"]);
    crew.device_ok("tina", &["sync"]);

    // Judged under the role he holds now: a technician may not skip.
    assert_eq!(server_view(&crew, "s1")["state"], "planned");
    let audit = crew.device_json("tina", &["audit", "s1"]);
    let entry = audit["entries"].as_array().unwrap().iter().find(|e| e["edit_id"] == skip["edit_id"]).unwrap();
    assert_eq!((entry["decision"]["outcome"].as_str(), entry["role"].as_str()), (Some("rejected"), Some("technician")));
}
