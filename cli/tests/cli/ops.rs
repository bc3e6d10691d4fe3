//! Operating `fieldsync serve` as an operator would: Prometheus metrics on an
//! address of their own, scraped over HTTP after real syncs (events counted,
//! never timed); one structured log line per request, with no token or
//! password in any log; liveness and readiness, readiness following the
//! database (503 while it is down, healed without a restart); every flag from
//! the environment, secrets never shown; the database over verified TLS.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

use crate::cluster::Cluster;
use crate::support::*;

const HANG_GUARD: Duration = Duration::from_secs(120);

/// An HTTP answer.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// `GET url` (http://host:port/path) with `extra` header lines.
fn get(url: &str, extra: &str) -> Answer {
    let rest = url.strip_prefix("http://").unwrap();
    let (addr, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(HANG_GUARD)).unwrap();
    write!(conn, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP head: {raw}"));
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().into(), v.trim().into())).collect();
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.into() };
    Answer { status, headers, body }
}

fn dechunk(mut b: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = b.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        b = &rest[size + 2..];
    }
}

/// The value of the sample `name` (labels included, as exposed), 0 if absent.
fn sample(exposition: &str, name: &str) -> f64 {
    exposition.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0.0)
}

/// `GET /v1/live` as `token`: the device's live channel.
fn live(server: &Server, token: &str) -> WebSocket<TcpStream> {
    let stream = TcpStream::connect(server.addr()).unwrap();
    stream.set_read_timeout(Some(HANG_GUARD)).unwrap();
    let mut req = format!("ws://{}/v1/live?project={PROJECT}", server.addr()).into_client_request().unwrap();
    req.headers_mut().insert("Authorization", format!("Bearer {token}").parse().unwrap());
    tungstenite::client(req, stream).unwrap().0
}

fn next_notice(ws: &mut WebSocket<TcpStream>) {
    loop {
        match ws.read().unwrap() {
            Message::Text(_) => return,
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// `fieldsync serve --data DATA --listen 127.0.0.1:0 flags…`, its stderr written to `log`.
fn serve_logged(data: &Path, log: &Path, flags: &[&str]) -> Server {
    let mut cmd = bin();
    cmd.args(["serve", "--data", data.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .args(flags)
        .stderr(std::fs::File::create(log).unwrap());
    Server::spawn(cmd, data)
}

/// The device id of `user`'s (only) device.
fn device_id(crew: &Crew, user: &str) -> String {
    let devices = ok_json(&["admin", "--data", &crew.data(), "devices"]);
    let d = devices["devices"].as_array().unwrap().iter().find(|d| d["user"] == user).unwrap();
    d["id"].as_str().unwrap().to_owned()
}

#[test]
fn metrics_are_served_on_their_own_address_and_move_with_real_syncs() {
    let crew =
        Crew::with_server(|data, _| Server::start_with(data, "127.0.0.1:0", &["--metrics-listen", "127.0.0.1:0"]));
    let metrics = crew.server.metrics_url.clone().expect("serve says where the metrics are");
    assert!(metrics.starts_with("http://127.0.0.1:") && metrics.ends_with("/metrics"), "{metrics}");
    // Not on the public sync port.
    assert_eq!(get(&format!("{}/metrics", crew.server.url), "").status, 404);
    let before = get(&metrics, "");
    assert_eq!(before.status, 200);
    assert!(before.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"), "{:?}", before.headers);
    assert_eq!(sample(&before.body, "fieldsync_changes_accepted_total"), 0.0, "{}", before.body);

    for user in ["olga", "fred", "tina"] {
        crew.init(user);
    }
    crew.create_section("s1", "Hauptstraße north");
    crew.device_ok("olga", &["sync"]);
    // tina is online: her live channel wakes her when fred's edit is stored.
    let mut tina_live = live(&crew.server, &crew.tokens["tina"]);
    crew.device_ok("tina", &["sync"]);
    crew.device_ok("fred", &["sync"]);
    // Concurrent transitions (tina one step, fred, a foreman, two): a contest.
    crew.device_ok("tina", &["state", "s1", "surveyed"]);
    crew.device_ok("fred", &["state", "s1", "trenched"]);
    crew.device_ok("tina", &["sync"]);
    crew.device_ok("fred", &["sync"]);
    next_notice(&mut tina_live); // Woken by a round stored after hers: fred's, or a binding before it.
    let guard = Instant::now();
    loop {
        crew.device_ok("tina", &["sync"]);
        let m = get(&metrics, "").body;
        if sample(&m, "fieldsync_edit_to_visible_seconds_count") >= 1.0 {
            break;
        }
        assert!(guard.elapsed() < HANG_GUARD, "no edit timed to visible:\n{m}");
        next_notice(&mut tina_live);
    }

    let m = get(&metrics, "").body;
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
    assert!(rounds >= 8.0, "{m}");
    assert_eq!(sample(&m, "fieldsync_http_responses_total{route=\"/v1/sync\",status=\"200\"}"), rounds, "{m}");
    assert!(sample(&m, "fieldsync_http_request_bytes_total{route=\"/v1/sync\"}") > 0.0, "{m}");
    assert!(sample(&m, "fieldsync_http_response_bytes_total{route=\"/v1/sync\"}") > 0.0, "{m}");
    assert!(sample(&m, "fieldsync_store_operation_duration_seconds_count{operation=\"commit_round\"}") >= 3.0);
    assert_eq!(sample(&m, "fieldsync_live_channels_open"), 1.0, "{m}");
    // The bucket the round latency's quantiles are read from.
    assert!(m.contains("fieldsync_round_duration_seconds_bucket{le=\"0.001\"}"), "{m}");

    // OpenMetrics for a scraper that asks for it; the probes answer here too.
    let open = get(&metrics, "Accept: application/openmetrics-text; version=1.0.0\r\n");
    assert!(open.header("content-type").unwrap().starts_with("application/openmetrics-text"));
    assert!(open.body.ends_with("# EOF\n"), "{}", open.body);
    let probes = metrics.trim_end_matches("/metrics");
    assert_eq!(get(&format!("{probes}/health/ready"), "").json()["status"], "ready");
    assert_eq!(get(&format!("{probes}/health/live"), "").json()["status"], "live");

    drop(tina_live);
    let Crew { server, .. } = crew;
    let (code, _) = server.stop();
    assert_eq!(code, 0, "both listeners stop on SIGTERM");
}

#[test]
fn each_request_is_one_json_log_line_with_its_id_and_no_token_is_ever_logged() {
    let mut log = None;
    let crew = Crew::with_server(|data, dir| {
        let path = dir.join("serve.log");
        log = Some(path.clone());
        serve_logged(data, &path, &["--log-format", "json"])
    });
    let log = log.unwrap();
    crew.init("olga");
    crew.create_section("s1", "Hauptstraße north");
    crew.device_ok("olga", &["sync"]);
    let probe = get(&format!("{}/health/ready", crew.server.url), "");
    let probe_id = probe.header("x-request-id").unwrap().to_owned();
    // A revoked device, and a token nobody was given.
    let tom = device_id(&crew, "tom");
    ok(&["admin", "--data", &crew.data(), "revoke", &tom]);
    assert_eq!(
        crew.device(
            "tom",
            &["init", "--server", &crew.server.url, "--token", &crew.tokens["tom"], "--project", PROJECT]
        )
        .code,
        1
    );
    let stranger = "0123456789abcdef".repeat(4);
    let r = run(&[
        "device",
        "--db",
        &crew.db("nobody"),
        "init",
        "--server",
        &crew.server.url,
        "--token",
        &stranger,
        "--project",
        PROJECT,
    ]);
    assert_eq!(r.code, 1, "{r:?}");

    let olga = device_id(&crew, "olga");
    let Crew { server, tokens, .. } = crew;
    let (code, stdout) = server.stop();
    assert_eq!(code, 0);
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {l}")))
        .collect();
    let requests: Vec<&Value> = lines.iter().filter(|l| l["message"] == "request").collect();

    // The probe's line, found by the id its response carried.
    let line = requests.iter().find(|l| l["span"]["request_id"] == probe_id.as_str()).expect("the probe is logged");
    assert_eq!((line["span"]["route"].as_str(), line["status"].as_u64()), (Some("/health/ready"), Some(200)), "{line}");
    assert!(line["duration_ms"].is_number() && line["bytes_out"].as_u64() > Some(0), "{line}");
    // Olga's rounds: device, project, status, bytes.
    let round = requests
        .iter()
        .find(|l| l["span"]["route"] == "/v1/sync" && l["span"]["device"] == olga.as_str())
        .unwrap_or_else(|| panic!("no round of olga's in\n{text}"));
    assert_eq!(round["span"]["project"], PROJECT, "{round}");
    assert_eq!(round["status"], 200, "{round}");
    assert!(round["bytes_in"].as_u64() > Some(0) && round["bytes_out"].as_u64() > Some(0), "{round}");
    assert_eq!(round["level"], "INFO");
    // Each failed authentication, with its reason and the revoked device's id.
    let failures: Vec<&Value> = lines.iter().filter(|l| l["message"] == "authentication failed").collect();
    assert!(failures.iter().any(|l| l["reason"].as_str().unwrap().contains(&tom)), "{text}");
    assert!(failures.iter().any(|l| l["reason"].as_str().unwrap().contains("unknown device token")), "{text}");
    assert!(failures.iter().all(|l| l["level"] == "WARN" && l["span"]["request_id"].is_string()), "{text}");
    // No token, nor a token's first half, anywhere the server wrote.
    for token in tokens.values().chain([&stranger]) {
        for written in [&text, &stdout] {
            assert!(!written.contains(&token[..token.len() / 2]), "a token is in the server's output");
        }
    }
}

#[test]
fn readiness_follows_the_database_and_its_url_and_password_come_from_the_environment_only() {
    const PASSWORD: &str = "pw-never-shown-7Hq";
    let cluster = Cluster::start();
    let url = cluster.url_with_password(PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let env = [("FIELDSYNC_DATABASE_URL", url.as_str())];
    for args in [
        &["admin", "create-project", PROJECT][..],
        &["admin", "add-user", "olga", "--project", PROJECT, "--role", "office"],
    ] {
        let r = run_env(args, &env);
        assert_eq!(r.code, 0, "{r:?}");
    }
    let token = {
        let r = run_env(&["--json", "admin", "enroll", "--user", "olga"], &env);
        r.json()["token"].as_str().unwrap().to_owned()
    };
    let log = dir.path().join("serve.log");
    let mut cmd = bin();
    cmd.args(["serve", "--listen", "127.0.0.1:0"]).envs(env).stderr(std::fs::File::create(&log).unwrap());
    let server = Server::spawn(cmd, dir.path());
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", server.child.id())).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains(PASSWORD), "the password is not on the command line");

    // The device's token from the environment too.
    let db = dir.path().join("olga.db");
    let db = db.to_str().unwrap();
    let device_env = device_env(&token, &server.url);
    let r = run_env(&["device", "--db", db, "init"], &device_env);
    assert_eq!(r.code, 0, "{r:?}");
    let ready_url = format!("{}/health/ready", server.url);
    assert_eq!(get(&ready_url, "").status, 200);

    // The database goes away: not ready (with the reason), alive all the same,
    // rounds fail 503 (the device is offline for now, not broken).
    cluster.stop();
    let guard = Instant::now();
    let not_ready = loop {
        let a = get(&ready_url, "");
        if a.status != 200 {
            break a;
        }
        assert!(guard.elapsed() < HANG_GUARD, "still ready with the database stopped");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(not_ready.status, 503);
    let body = not_ready.json();
    assert_eq!(body["status"], "not_ready", "{body}");
    assert!(body["reason"].as_str().unwrap().contains("postgresql"), "{body}");
    assert_eq!(get(&format!("{}/health/live", server.url), "").status, 200);
    assert_eq!(get(&format!("{}/v1/health", server.url), "").status, 200);
    let r = run_env(&["device", "--db", db, "sync"], &device_env);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("503") || r.stderr.to_lowercase().contains("offline"), "{r:?}");

    // Back again: ready again, and the device syncs.
    cluster.resume();
    let guard = Instant::now();
    while get(&ready_url, "").status != 200 {
        assert!(guard.elapsed() < HANG_GUARD, "not ready again once the database is back");
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = run_env(&["device", "--db", db, "sync"], &device_env);
    assert_eq!(r.code, 0, "{r:?}");

    let (code, stdout) = server.stop();
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(code, 0, "{stdout}\n{text}");
    // Human lines by default: the cause of the 503 is there, the password and token are not.
    assert!(
        text.lines().any(|l| l.contains("WARN") && l.contains("store unavailable") && l.contains("postgresql")),
        "{text}"
    );
    assert!(text.lines().any(|l| l.contains("route=/v1/sync") && l.contains("status=503")), "{text}");
    assert!(
        text.lines().any(|l| l.contains("INFO") && l.contains("route=/v1/sync") && l.contains("status=200")),
        "{text}"
    );
    for written in [&text, &stdout] {
        assert!(!written.contains(PASSWORD) && !written.contains(&token[..32]), "a secret was written:\n{written}");
    }
}

#[test]
fn serve_reaches_the_database_over_verified_tls_and_a_wrong_ca_is_a_tls_error() {
    let (cluster, ca) = Cluster::start_tls();
    let dir = tempfile::tempdir().unwrap();
    let plain = cluster.url_with_password("pw");
    let url = format!("{plain}?sslmode=verify-full&sslrootcert={}", ca.display());
    let env = [("FIELDSYNC_DATABASE_URL", url.as_str())];

    // The database takes TLS only (hostssl): a plain connection is refused.
    let r = run_env(&["admin", "projects"], &[("FIELDSYNC_DATABASE_URL", plain.as_str())]);
    assert!(r.code == 1 && r.stderr.contains("no encryption"), "{r:?}");

    for args in [
        &["admin", "create-project", PROJECT][..],
        &["admin", "add-user", "olga", "--project", PROJECT, "--role", "office"],
    ] {
        let r = run_env(args, &env);
        assert_eq!(r.code, 0, "{r:?}");
    }
    let token =
        run_env(&["--json", "admin", "enroll", "--user", "olga"], &env).json()["token"].as_str().unwrap().to_owned();
    let mut cmd = bin();
    cmd.args(["serve", "--listen", "127.0.0.1:0"]).envs(env);
    let server = Server::spawn(cmd, dir.path());
    let db = dir.path().join("olga.db");
    let db = db.to_str().unwrap();
    let device_env = device_env(&token, &server.url);
    let r = run_env(&["device", "--db", db, "init"], &device_env);
    assert_eq!(r.code, 0, "{r:?}");
    let r = run_env(&["device", "--db", db, "sync"], &device_env);
    assert_eq!(r.code, 0, "{r:?}");
    let (code, _) = server.stop();
    assert_eq!(code, 0);

    // Another CA: the server does not start, and says why.
    crate::cluster::openssl(
        dir.path(),
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=other CA",
            "-keyout",
            "other.key",
            "-out",
            "other.pem",
        ],
    );
    let wrong = format!("{plain}?sslmode=verify-full&sslrootcert={}", dir.path().join("other.pem").display());
    let r = run_env(&["serve", "--listen", "127.0.0.1:0"], &[("FIELDSYNC_DATABASE_URL", wrong.as_str())]);
    assert!(r.code == 1 && r.stderr.contains("TLS") && r.stderr.contains("UnknownIssuer"), "{r:?}");
}

/// The options of a `--help` text, each with its paragraph.
fn options(help: &str) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = Vec::new();
    for line in help.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let flag = trimmed.strip_prefix("-").filter(|_| (2..=6).contains(&indent));
        match flag {
            Some(_) => {
                let long = trimmed.split([' ', ',']).find(|w| w.starts_with("--")).unwrap_or(trimmed);
                found.push((long.to_owned(), line.to_owned()));
            }
            None => {
                if let Some(last) = found.last_mut() {
                    last.1.push('\n');
                    last.1.push_str(line);
                }
            }
        }
    }
    found
}

#[test]
fn every_flag_of_serve_admin_and_device_init_names_its_variable_and_help_hides_secret_values() {
    let secrets = [
        ("FIELDSYNC_TOKEN", "tok-secret-4f1b"),
        ("FIELDSYNC_DATABASE_URL", "postgres://hub:db-secret-9c2e@db/fieldsync"),
        ("FIELDSYNC_LISTEN", "127.0.0.1:9999"),
    ];
    let admin = [
        "create-project",
        "configure",
        "add-user",
        "remove-user",
        "enroll",
        "revoke",
        "projects",
        "devices",
        "roster",
        "section",
        "conflicts",
    ];
    let mut commands: Vec<Vec<&str>> = vec![vec!["serve", "--help"], vec!["device", "init", "--help"]];
    commands.extend(admin.iter().map(|sub| vec!["admin", sub, "--help"]));
    for args in commands {
        let r = run_env(&args, &secrets);
        assert_eq!(r.code, 0, "{r:?}");
        let options = options(&r.stdout);
        assert!(options.len() > 2, "no options in:\n{}", r.stdout);
        for (flag, paragraph) in options {
            if flag == "--help" || flag == "--version" {
                continue;
            }
            assert!(
                paragraph.contains("[env: FIELDSYNC_"),
                "`{}`: {flag} names no variable:\n{paragraph}",
                args.join(" ")
            );
        }
        for (_, value) in &secrets[..2] {
            assert!(!r.stdout.contains(value), "`{}` shows a secret:\n{}", args.join(" "), r.stdout);
        }
    }
    let serve = run_env(&["serve", "--help"], &secrets).stdout;
    assert!(serve.contains("[env: FIELDSYNC_DATABASE_URL]"), "{serve}");
    assert!(serve.contains("[env: FIELDSYNC_LISTEN=127.0.0.1:9999]"), "a value that is no secret is shown:\n{serve}");
    assert!(serve.contains("FIELDSYNC_METRICS_LISTEN") && serve.contains("FIELDSYNC_LOG_FORMAT"), "{serve}");
    let init = run_env(&["device", "init", "--help"], &secrets).stdout;
    assert!(init.contains("[env: FIELDSYNC_TOKEN]"), "{init}");

    // A flag wins over the other store's variable; the two variables together are a usage error.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let r = run_env(&["admin", "--data", data, "create-project", PROJECT], &secrets);
    assert_eq!(r.code, 0, "{r:?}");
    let both = run_env(&["admin", "projects"], &[secrets[1], ("FIELDSYNC_DATA_DIR", data)]);
    assert_eq!(both.code, 2, "{both:?}");
    assert!(both.stderr.contains("unset one") && !both.stderr.contains("db-secret"), "{}", both.stderr);
    let r = run_env(&["--json", "admin", "projects"], &[("FIELDSYNC_DATA_DIR", data)]);
    assert_eq!(r.json()["projects"][0]["id"], PROJECT, "{r:?}");
}

/// A device's token, server and project, all from the environment.
fn device_env<'a>(token: &'a str, url: &'a str) -> [(&'static str, &'a str); 3] {
    [("FIELDSYNC_TOKEN", token), ("FIELDSYNC_SERVER", url), ("FIELDSYNC_PROJECT", PROJECT)]
}
