//! `fieldsync serve`: where it listens, health, a clean stop on SIGTERM that
//! keeps every acknowledged change.

use std::io::{Read, Write};
use std::net::TcpStream;

use crate::support::*;

#[test]
fn serve_prints_its_address_answers_health_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    assert!(server.url.starts_with("http://127.0.0.1:"), "{}", server.url);
    assert!(!server.url.ends_with(":0"));

    let mut conn = TcpStream::connect(server.addr()).unwrap();
    write!(conn, "GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("ok"), "{answer}");

    let (code, rest) = server.stop();
    assert_eq!(code, 0);
    assert!(rest.contains("stopped; every acknowledged change is on disk"), "{rest}");
    assert!(dir.path().join("data/hub.db").exists());
}

#[test]
fn a_change_acknowledged_before_sigterm_is_served_after_a_restart() {
    let crew = Crew::new();
    crew.init("olga");
    crew.create_section("s1", "Hauptstraße north");
    let report = crew.device_json("olga", &["sync"]);
    assert_eq!(report["confirmed"], 1);

    let Crew { dir, server, tokens } = crew;
    let data = server.data.clone();
    let (code, _) = server.stop();
    assert_eq!(code, 0);
    let server = Server::start(&data);
    let crew = Crew { dir, server, tokens };

    // A device that was never online before gets the section from the restarted server.
    let init = crew.init("tina");
    assert_eq!(init["sync"]["new_changes"], 1, "{init}");
    assert_eq!(crew.device_json("tina", &["show", "s1"])["name"], "Hauptstraße north");
    assert_eq!(ok_json(&["admin", "--data", &crew.data(), "section", "s1"])["name"], "Hauptstraße north");
}

#[test]
fn serve_refuses_an_address_it_cannot_listen_on() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(&["serve", "--data", dir.path().to_str().unwrap(), "--listen", "not-an-address"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("cannot listen on not-an-address"), "{}", r.stderr);
}

#[test]
fn ctrl_c_stops_the_server_cleanly_too() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let (code, rest) = server.stop_with("INT");
    assert_eq!(code, 0);
    assert!(rest.contains("stopped; every acknowledged change is on disk"), "{rest}");
}

#[test]
fn serve_on_an_unreachable_database_says_so_and_store_flags_exclude_each_other() {
    let r = run(&["serve", "--database-url", "postgres://hub:secret@127.0.0.1:1/fieldsync"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("cannot use the database at postgres://hub@127.0.0.1:1/fieldsync"), "{}", r.stderr);
    assert!(r.stderr.contains("check --database-url"), "{}", r.stderr);
    assert!(!r.stderr.contains("secret"), "the password is not shown: {}", r.stderr);
    let dir = tempfile::tempdir().unwrap();
    let both = run(&["admin", "--data", dir.path().to_str().unwrap(), "--database-url", "postgres://db/x", "projects"]);
    assert_eq!(both.code, 2, "{both:?}");
    let neither = run(&["serve"]);
    assert_eq!(neither.code, 2, "{neither:?}");
}

#[test]
fn a_second_server_on_the_same_data_directory_is_refused_and_admin_keeps_working() {
    let crew = Crew::new();
    let data = crew.data();
    let mut second = bin()
        .args(["serve", "--data", &data, "--listen", "127.0.0.1:0"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A hang guard, not a timing assert: a second server that serves never exits.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while second.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = second.kill();
            panic!("a second `fieldsync serve` on the same data directory kept running");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = second.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&data), "names the directory: {stderr}");
    assert!(stderr.contains(&format!("pid {}", crew.server.child.id())), "names the other process: {stderr}");
    // The running server goes on, and admin works beside it.
    assert_eq!(ok_json(&["admin", "--data", &data, "projects"])["projects"][0]["id"], PROJECT);
    crew.init("olga");
    // Once the first stops, the directory is free again.
    let Crew { dir, server, tokens } = crew;
    let (code, _) = server.stop();
    assert_eq!(code, 0);
    let crew = Crew { dir, server: Server::start(std::path::Path::new(&data)), tokens };
    assert_eq!(crew.init("tina")["user"], "tina");
}
