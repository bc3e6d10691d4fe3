//! Operating the hub: the metrics a round moves (counted events, never
//! timings), the request id on every response, and the health probes, with
//! readiness failing while the store cannot take a write.

use std::time::{Duration, Instant};

use fieldsync_core::protocol::{self, SectionBatch};
use fieldsync_core::{ConstructionState, Role};

use crate::common::*;
use crate::live::{connect, next_text};
use crate::refusals::{request, scene};

/// The value of the sample `name` (with its labels, as exposed), 0 if absent.
pub fn sample(exposition: &str, name: &str) -> f64 {
    exposition.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0.0)
}

fn get(server: &TestServer, path: &str, extra: &str) -> Reply {
    raw(server.addr, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n"), b"")
}

#[test]
fn rounds_move_the_round_phase_change_conflict_store_and_response_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let members = [("olga", Role::Office), ("fred", Role::Foreman), ("tina", Role::Technician)];
    let server = TestServer::start(hub_with(dir.path(), &members));
    let mut olga = Device::enroll(&server.hub, dir.path(), "olga");
    let mut fred = Device::enroll(&server.hub, dir.path(), "fred");
    let mut tina = Device::enroll(&server.hub, dir.path(), "tina");
    let before = server.hub.metrics().encode_prometheus();
    assert_eq!(sample(&before, "fieldsync_changes_accepted_total"), 0.0);

    olga.sync(&server);
    let id = olga.replica.create_section(PROJECT, "North", &route()).unwrap();
    olga.sync(&server);
    fred.sync(&server);
    tina.sync(&server);
    // Concurrent transitions: a contest the higher role wins.
    tina.replica.transition(&id, ConstructionState::Surveyed, None).unwrap();
    fred.replica.transition(&id, ConstructionState::Trenched, None).unwrap();
    tina.sync(&server);
    fred.sync(&server);

    let m = server.hub.metrics().encode_prometheus();
    assert_eq!(sample(&m, "fieldsync_changes_accepted_total"), 3.0, "{m}");
    assert_eq!(
        sample(&m, "fieldsync_conflicts_recorded_total{kind=\"contest\",rule=\"transition_precedence\"}"),
        1.0,
        "{m}"
    );
    for phase in ["detection", "resolution", "commit"] {
        let n = sample(&m, &format!("fieldsync_round_phase_duration_seconds_count{{phase=\"{phase}\"}}"));
        assert_eq!(n, 3.0, "three rounds uploaded changes: {phase} in\n{m}");
    }
    let rounds = sample(&m, "fieldsync_round_duration_seconds_count");
    let ok = sample(&m, "fieldsync_http_responses_total{route=\"/v1/sync\",status=\"200\"}");
    assert!(rounds >= 6.0 && ok == rounds, "{rounds} rounds, {ok} answered 200:\n{m}");
    assert!(sample(&m, "fieldsync_store_operation_duration_seconds_count{operation=\"commit_round\"}") >= 3.0);
    assert!(sample(&m, "fieldsync_http_request_bytes_total{route=\"/v1/sync\"}") > 0.0);
    assert!(sample(&m, "fieldsync_http_response_bytes_total{route=\"/v1/sync\"}") > 0.0);
}

#[test]
fn a_refused_change_is_counted_under_its_rule_with_a_422() {
    let mut s = scene();
    let mut doc = fieldsync_core::SectionDoc::load(&s.tina.replica.export(&s.section).unwrap()).unwrap();
    doc.set_actor(automerge::ActorId::from(hex::decode(s.tina.replica.actor()).unwrap()));
    let forged = fieldsync_core::Hlc { physical_ms: 1, counter: 0, actor: s.olga.replica.actor() };
    let value = fieldsync_core::EditValue::Progress { percent: 5, at_state: ConstructionState::Planned };
    let change = doc.write(&forged, None, &value).unwrap();
    let upload =
        vec![SectionBatch { section: s.section.clone(), changes: vec![change.raw_bytes().to_vec()], received: vec![] }];
    let body = protocol::encode(&request(&s.tina.replica.actor(), PROJECT, upload));
    assert_eq!(post_sync(s.server.addr, &s.tina.token, &body).status, 422);
    let m = s.server.hub.metrics().encode_prometheus();
    assert_eq!(sample(&m, "fieldsync_changes_refused_total{rule=\"forged_stamp\"}"), 1.0, "{m}");
    assert_eq!(sample(&m, "fieldsync_http_responses_total{route=\"/v1/sync\",status=\"422\"}"), 1.0, "{m}");
    assert_eq!(post_sync(s.server.addr, "not-a-token", &body).status, 401);
    let m = s.server.hub.metrics().encode_prometheus();
    assert_eq!(sample(&m, "fieldsync_http_responses_total{route=\"/v1/sync\",status=\"401\"}"), 1.0, "{m}");
}

#[test]
fn an_edit_reaching_a_device_woken_by_its_live_channel_is_timed_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(hub_with(dir.path(), &[("olga", Role::Office), ("tina", Role::Technician)]));
    let mut olga = Device::enroll(&server.hub, dir.path(), "olga");
    let mut tina = Device::enroll(&server.hub, dir.path(), "tina");
    olga.sync(&server);
    tina.sync(&server);
    let visible = || sample(&server.hub.metrics().encode_prometheus(), "fieldsync_edit_to_visible_seconds_count");
    let mut ws = connect(&server, &tina.token, PROJECT).unwrap();
    let open = sample(&server.hub.metrics().encode_prometheus(), "fieldsync_live_channels_open");
    assert_eq!(open, 1.0);

    olga.replica.create_section(PROJECT, "North", &route()).unwrap();
    olga.round(&server);
    assert_eq!(visible(), 0.0, "stored, not yet seen");
    next_text(&mut ws);
    assert_eq!(tina.round(&server).changes.len(), 1);
    assert_eq!(visible(), 1.0);
    // A round without a notice since, and the uploader's own rounds, count nothing.
    tina.round(&server);
    olga.round(&server);
    assert_eq!(visible(), 1.0);

    drop(ws);
    let guard = Instant::now();
    while sample(&server.hub.metrics().encode_prometheus(), "fieldsync_live_channels_open") != 0.0 {
        assert!(guard.elapsed() < Duration::from_secs(60), "the closed channel is still counted open");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_response_carries_a_request_id_and_the_probes_answer() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(hub_with(dir.path(), &[]));
    let live = get(&server, "/health/live", "");
    assert_eq!((live.status, live.body.as_slice()), (200, br#"{"status":"live"}"#.as_slice()));
    let ready = get(&server, "/health/ready", "");
    assert_eq!((ready.status, ready.body.as_slice()), (200, br#"{"status":"ready"}"#.as_slice()));
    let old = get(&server, "/v1/health", "");
    assert_eq!((old.status, old.body.as_slice()), (200, b"ok".as_slice()));
    for reply in [&live, &ready, &old, &get(&server, "/nowhere", "")] {
        let id = reply.header("x-request-id").unwrap_or_else(|| panic!("no request id: {reply:?}"));
        assert!(id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    }
    assert_ne!(live.header("x-request-id"), ready.header("x-request-id"));
    // A proxy's id is kept, so that its logs and ours agree.
    let proxied = get(&server, "/health/live", "X-Request-Id: edge-42\r\n");
    assert_eq!(proxied.header("x-request-id"), Some("edge-42"));
    let m = server.hub.metrics().encode_prometheus();
    assert_eq!(sample(&m, "fieldsync_http_responses_total{route=\"unmatched\",status=\"404\"}"), 1.0, "{m}");
    assert_eq!(sample(&m, "fieldsync_http_responses_total{route=\"/health/live\",status=\"200\"}"), 2.0, "{m}");
}

#[test]
fn readiness_is_503_with_the_reason_while_another_process_holds_the_store_and_200_again_after() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(hub_with(dir.path(), &[]));
    assert_eq!(get(&server, "/health/ready", "").status, 200);
    // Another writer (a backup, a stuck admin command) holds SQLite's write lock.
    let other = rusqlite::Connection::open(dir.path().join(fieldsync_server::sqlite_store::DB_FILE)).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let guard = Instant::now();
    let not_ready = loop {
        // The probe's answer is reused for a second: wait for a fresh one.
        let reply = get(&server, "/health/ready", "");
        if reply.status != 200 {
            break reply;
        }
        assert!(guard.elapsed() < Duration::from_secs(60), "still ready while the store is locked");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(not_ready.status, 503);
    let body: serde_json::Value = serde_json::from_slice(&not_ready.body).unwrap();
    assert_eq!(body["status"], "not_ready", "{body}");
    assert!(body["reason"].as_str().unwrap().contains("locked"), "{body}");
    assert_eq!(get(&server, "/health/live", "").status, 200, "alive all the same");

    other.execute_batch("ROLLBACK").unwrap();
    let guard = Instant::now();
    while get(&server, "/health/ready", "").status != 200 {
        assert!(guard.elapsed() < Duration::from_secs(60), "not ready again once the lock is gone");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The probe wrote nothing.
    let refusals: i64 = other.query_row("SELECT count(*) FROM refusals", [], |r| r.get(0)).unwrap();
    assert_eq!(refusals, 0);
}
