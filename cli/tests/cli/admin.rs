//! `fieldsync admin`: projects, users, devices, revocation, usage errors.

use crate::support::*;

#[test]
fn admin_creates_projects_users_and_devices_and_lists_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let p = ok_json(&["admin", "--data", d, "create-project", "north", "--max-route-distance", "75"]);
    assert_eq!(p["config"]["max_route_distance_m"], 75.0);
    let south = ok_json(&["admin", "--data", d, "create-project", "south", "--full-size-photos", "on-unmetered-links"]);
    assert_eq!(south["config"]["full_size_photos"], "on_unmetered_links");
    assert_eq!(p["config"]["full_size_photos"], "always");
    ok(&["admin", "--data", d, "add-user", "olga", "--project", "north", "--role", "office"]);
    ok(&["admin", "--data", d, "add-user", "tina", "--project", "north", "--role", "technician"]);
    ok(&["admin", "--data", d, "add-user", "tina", "--project", "south", "--role", "foreman"]);

    let human = ok(&["admin", "--data", d, "enroll", "--user", "tina", "--name", "Tina's phone"]);
    let token = human.stdout.lines().find_map(|l| l.strip_prefix("token: ")).unwrap();
    assert_eq!(token.len(), 64);
    let e = ok_json(&["admin", "--data", d, "enroll", "--user", "olga"]);
    assert_eq!(e["token"].as_str().unwrap().len(), 64);
    assert_ne!(e["token"].as_str().unwrap(), token);

    let projects = ok_json(&["admin", "--data", d, "projects"]);
    let projects = projects["projects"].as_array().unwrap();
    assert_eq!(projects.len(), 2);
    assert_eq!(projects[0]["id"], "north");
    assert_eq!(
        projects[0]["members"],
        serde_json::json!([{"user": "olga", "role": "office"}, {"user": "tina", "role": "technician"}])
    );
    assert_eq!(projects[1]["members"], serde_json::json!([{"user": "tina", "role": "foreman"}]));

    let devices = ok_json(&["admin", "--data", d, "devices"]);
    let devices = devices["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2);
    let tina = devices.iter().find(|d| d["user"] == "tina").unwrap();
    assert_eq!(tina["name"], "Tina's phone");
    assert!(tina["revoked_ms"].is_null());

    let text = ok(&["admin", "--data", d, "projects"]).stdout;
    assert!(text.contains("north  0 section(s)") && text.contains("  tina  foreman"), "{text}");
    assert!(text.contains("south  0 section(s), 0 change(s), points farther than 100 m"), "{text}");

    // A project's configuration changes; what is not named stays, and the roster version moves on.
    let before = projects[0]["roster_version"].as_u64().unwrap();
    let said = ok(&["admin", "--data", d, "configure", "north", "--full-size-photos", "on-unmetered-links"]).stdout;
    assert!(said.contains("full-size photos wait for an unmetered link") && said.contains("75 m"), "{said}");
    let north = &ok_json(&["admin", "--data", d, "projects"])["projects"][0];
    assert_eq!(
        (north["config"]["full_size_photos"].as_str(), north["config"]["max_route_distance_m"].as_f64()),
        (Some("on_unmetered_links"), Some(75.0))
    );
    assert!(north["roster_version"].as_u64().unwrap() > before, "devices learn it with the roster: {north}");
}

#[test]
fn admin_errors_say_what_is_wrong_with_the_right_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    let d = d.to_str().unwrap();
    let r = run(&["admin", "--data", d, "projects"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no server data in"), "{}", r.stderr);

    ok(&["admin", "--data", d, "create-project", "north"]);
    let r = run(&["admin", "--data", d, "create-project", "north"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("project `north` exists already"), "{}", r.stderr);

    let r = run(&["admin", "--data", d, "add-user", "x", "--project", "north", "--role", "boss"]);
    assert_eq!(r.code, 2, "a bad role is a usage error: {r:?}");
    assert!(r.stderr.contains("unknown role `boss`"), "{}", r.stderr);

    let r = run(&["--json", "admin", "--data", d, "add-user", "x", "--project", "nowhere", "--role", "office"]);
    assert_eq!(r.code, 1);
    let err: serde_json::Value = serde_json::from_str(r.stderr.trim()).unwrap();
    assert_eq!(err["error"], "failed");
    assert!(err["message"].as_str().unwrap().contains("no project `nowhere`"));

    let r = run(&["admin", "--data", d, "revoke", "0000"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no device `0000`"), "{}", r.stderr);

    let r = run(&["admin", "--data", d, "create-project", "x", "--max-route-distance", "-5"]);
    assert_eq!(r.code, 2, "{r:?}");
    let r = run(&["admin", "--data", d, "configure", "north", "--full-size-photos", "never"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("say `always` or `on-unmetered-links`"), "{}", r.stderr);
    let r = run(&["admin", "--data", d, "configure", "nowhere", "--full-size-photos", "always"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("no project `nowhere`"), "{}", r.stderr);
}

#[test]
fn a_revoked_device_can_no_longer_sync_and_keeps_its_edits() {
    let crew = Crew::new();
    crew.init("olga");
    crew.init("tina");
    crew.create_section("s1", "Dorfstraße");
    crew.device_json("olga", &["sync"]);
    crew.device_json("tina", &["sync"]);
    crew.device_json("tina", &["progress", "s1", "5"]);

    let devices = ok_json(&["admin", "--data", &crew.data(), "devices"]);
    let tina = devices["devices"].as_array().unwrap().iter().find(|d| d["user"] == "tina").unwrap().clone();
    assert_eq!(tina["actors"].as_array().unwrap().len(), 1, "{tina}");
    let id = tina["id"].as_str().unwrap();
    let revoked = ok_json(&["admin", "--data", &crew.data(), "revoke", id]);
    assert_eq!(revoked["revoked"], true);

    let r = crew.device("tina", &["sync"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("401"), "{}", r.stderr);
    let status = crew.device_json("tina", &["status"]);
    assert_eq!(status["pending_changes"], 1);
    assert!(status["last_error"].as_str().unwrap().contains("401"), "{status}");
    assert_eq!(crew.device_json("tina", &["show", "s1"])["progress"], 5);
}

#[test]
fn tokens_can_expire_and_an_enrolled_device_gets_a_fresh_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    let d = d.to_str().unwrap();
    ok(&["admin", "--data", d, "create-project", "north"]);
    let e = ok_json(&["admin", "--data", d, "enroll", "--user", "tina", "--expires-in", "12h"]);
    let expires = e["expires_ms"].as_u64().unwrap();
    let devices = ok_json(&["admin", "--data", d, "devices"]);
    assert_eq!(devices["devices"][0]["expires_ms"].as_u64(), Some(expires));
    let id = e["device_id"].as_str().unwrap();

    let fresh = ok_json(&["admin", "--data", d, "issue-token", id]);
    assert_eq!((fresh["device_id"].as_str(), fresh["expires_ms"].is_null()), (Some(id), true));
    assert_ne!(fresh["token"], e["token"]);
    let devices = ok_json(&["admin", "--data", d, "devices"]);
    assert!(devices["devices"][0].get("expires_ms").is_none(), "never expires now: {devices}");
    let human = ok(&["admin", "--data", d, "issue-token", id, "--expires-in", "30m"]).stdout;
    assert!(human.contains("token: ") && human.contains("expires "), "{human}");

    let r = run(&["admin", "--data", d, "issue-token", id, "--expires-in", "soon"]);
    assert_eq!(r.code, 2, "{r:?}");
    ok(&["admin", "--data", d, "revoke", id]);
    let r = run(&["admin", "--data", d, "issue-token", id]);
    assert_eq!(r.code, 1, "a revoked device gets no token: {r:?}");
    assert!(r.stderr.contains("was revoked") && r.stderr.contains("enroll the device again"), "{r:?}");
}
