//! The PostgreSQL backend against a real PostgreSQL server (a throwaway
//! cluster per test, started with the machine's `initdb` and `pg_ctl`; the
//! test command installs Debian's `postgresql` if it is missing): several hub
//! processes on one database serve the same project at once, live notices
//! cross between them, a reader misses nothing another hub commits, and a
//! dropped connection or a newer schema is handled.

use std::io::Write as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fieldsync_core::{ConstructionState, Role};
use fieldsync_server::pg_store::{self, Listener, PgOptions};
use fieldsync_server::{Hub, HubStore, PgHubStore, RoundWrite, SectionWrite, StoreError};
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

use crate::common::*;

/// A PostgreSQL server of its own in a temporary directory, stopped on drop.
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

/// Run a PostgreSQL tool as the user that owns the cluster: `postgres` when
/// the tests run as root (PostgreSQL refuses to run as root), else ourselves.
fn pg_tool(bin: &Path, tool: &str, args: &[&str]) -> std::process::Output {
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let program = bin.join(tool);
    let mut cmd = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&program);
        c
    } else {
        Command::new(&program)
    };
    cmd.args(args).output().unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
}

/// Run `openssl` with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("the openssl CLI");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Cluster {
    /// A cluster that accepts TLS connections only (`hostssl`), its server
    /// certificate (for 127.0.0.1) signed by a CA whose certificate is `ca.pem`.
    pub fn start_tls() -> (Cluster, PathBuf) {
        let cluster = Cluster::init();
        let dir = cluster.dir.path().to_owned();
        let dir = dir.as_path();
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
        );
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ],
        );
        std::fs::write(dir.join("san.ext"), "subjectAltName = IP:127.0.0.1, DNS:localhost\n").unwrap();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "san.ext",
                "-out",
                "server.pem",
            ],
        );
        let data = dir.join("data");
        let conf =
            format!("\nssl = on\nssl_cert_file = '{0}/server.pem'\nssl_key_file = '{0}/server.key'\n", dir.display());
        std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap()
            .write_all(conf.as_bytes())
            .unwrap();
        std::fs::write(data.join("pg_hba.conf"), "local all all trust\nhostssl all all 127.0.0.1/32 trust\n").unwrap();
        let key = dir.join("server.key");
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let _ = Command::new("chown").args(["-R", "postgres"]).arg(dir).status();
        cluster.resume();
        (cluster, dir.join("ca.pem"))
    }

    pub fn start() -> Cluster {
        let cluster = Cluster::init();
        cluster.resume();
        cluster
    }

    fn init() -> Cluster {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|d| {
                d.filter_map(Result::ok).map(|e| e.path().join("bin")).filter(|b| b.join("initdb").exists()).max()
            })
            .expect("PostgreSQL's server is not installed: `apt-get install postgresql` (scripts/test.sh does)");
        let dir = tempfile::Builder::new().prefix("fieldsync-pg").tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let _ = Command::new("chown").args(["-R", "postgres"]).arg(dir.path()).status();
        let data_arg = data.to_str().unwrap();
        let init = pg_tool(&bin, "initdb", &["-D", data_arg, "-A", "trust", "-U", "postgres", "--no-sync"]);
        assert!(init.status.success(), "initdb: {}", String::from_utf8_lossy(&init.stderr));
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Cluster { dir, bin, port }
    }

    fn data(&self) -> String {
        self.dir.path().join("data").to_str().unwrap().to_owned()
    }

    /// Start it (again), on the same port.
    pub fn resume(&self) {
        let data = self.data();
        let options = format!("-p {} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off", self.port);
        let log = self.dir.path().join("log");
        let start =
            pg_tool(&self.bin, "pg_ctl", &["-D", &data, "-o", &options, "-l", log.to_str().unwrap(), "-w", "start"]);
        assert!(
            start.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&start.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stop it (its sessions are ended), as a restart or an outage would.
    pub fn stop(&self) {
        let stop = pg_tool(&self.bin, "pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
        assert!(stop.status.success(), "pg_ctl stop: {}", String::from_utf8_lossy(&stop.stderr));
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        pg_tool(&self.bin, "pg_ctl", &["-D", &self.data(), "-m", "immediate", "stop"]);
    }
}

/// Generous: only a hang trips it (nothing here is timed).
const HANG_GUARD: Duration = Duration::from_secs(120);

/// A hub process's worth: a hub on the database, served over HTTP, with its
/// listener for the other processes' rounds.
struct Process {
    server: TestServer,
    _listener: Listener,
}

fn process(url: &str) -> Process {
    process_with(url, PgOptions::default())
}

fn process_with(url: &str, options: PgOptions) -> Process {
    process_serving(url, options, fieldsync_server::ServeOptions::default())
}

fn process_serving(url: &str, options: PgOptions, serve: fieldsync_server::ServeOptions) -> Process {
    let (hub, instance) = Hub::on_postgres(url, options, 4).unwrap();
    let hub = Arc::new(hub);
    let weak = Arc::downgrade(&hub);
    let listener = pg_store::listen(url, &instance, move |project, seq| {
        if let Some(hub) = weak.upgrade() {
            hub.notify(project, seq);
        }
    });
    Process { server: TestServer::start_with(hub, serve), _listener: listener }
}

/// Until `n` sessions wait for a lock (rounds blocked on a project's row).
fn wait_for_lock_waiters(watcher: &mut postgres::Client, n: i64) {
    let started = Instant::now();
    while watcher.query_one("SELECT count(*) FROM pg_locks WHERE NOT granted", &[]).unwrap().get::<_, i64>(0) < n {
        assert!(started.elapsed() < HANG_GUARD, "{n} round(s) never waited for the project's lock");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn setup(hub: &Hub, members: &[(&str, Role)]) {
    hub.create_project(PROJECT, fieldsync_core::ProjectConfig::default()).unwrap();
    for (user, role) in members {
        hub.add_member(PROJECT, user, *role).unwrap();
    }
}

fn live(server: &TestServer, token: &str) -> WebSocket<TcpStream> {
    let stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("ws://{}/v1/live?project={PROJECT}", server.addr).into_client_request().unwrap();
    req.headers_mut().insert("Authorization", format!("Bearer {token}").parse().unwrap());
    tungstenite::client(req, stream).unwrap().0
}

fn next_notice(ws: &mut WebSocket<TcpStream>) -> u64 {
    loop {
        match ws.read().unwrap() {
            Message::Text(t) => return t.parse().unwrap(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn two_hub_processes_on_one_database_serve_one_project_and_wake_each_other_s_devices() {
    let cluster = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (process(&cluster.url()), process(&cluster.url()));
    setup(&a.server.hub, &[("olga", Role::Office), ("tina", Role::Technician), ("fred", Role::Foreman)]);
    let mut olga = Device::enroll(&a.server.hub, dir.path(), "olga");
    let mut tina = Device::enroll(&b.server.hub, dir.path(), "tina");
    let mut fred = Device::enroll(&a.server.hub, dir.path(), "fred");
    olga.sync(&a.server);
    tina.sync(&b.server);
    fred.sync(&b.server);
    let mut tina_live = live(&b.server, &tina.token);

    // Olga's round commits through process A; tina, online at process B, hears of it.
    let id = olga.replica.create_section(PROJECT, "North", &route()).unwrap();
    olga.round(&a.server);
    assert!(next_notice(&mut tina_live) >= 1);
    tina.sync(&b.server);
    fred.sync(&a.server);
    assert_eq!(tina.replica.section(&id).unwrap().name, "North");

    // Concurrent edits through both processes, then everyone converges.
    tina.replica.transition(&id, ConstructionState::Surveyed, None).unwrap();
    tina.replica.record_progress(&id, 8).unwrap();
    fred.replica.transition(&id, ConstructionState::Surveyed, None).unwrap();
    fred.replica.record_progress(&id, 6).unwrap();
    tina.sync(&b.server);
    fred.sync(&a.server);
    for _ in 0..2 {
        olga.sync(&a.server);
        tina.sync(&b.server);
        fred.sync(&a.server);
    }
    let view = olga.replica.section(&id).unwrap();
    assert_eq!(view.state, ConstructionState::Surveyed);
    assert!(!olga.replica.conflicts(None).unwrap().is_empty(), "the concurrent writes are conflicts");
    for d in [&tina, &fred] {
        assert_eq!(d.replica.section(&id).unwrap(), view);
        assert_eq!(d.replica.conflicts(None).unwrap(), olga.replica.conflicts(None).unwrap());
    }
    assert!(!view.heads.is_empty());
    // Both processes answer from the same store.
    assert_eq!(
        hub_state(&a.server.hub, std::slice::from_ref(&id)),
        hub_state(&b.server.hub, std::slice::from_ref(&id))
    );
    assert_eq!(stored(&a.server.hub), stored(&b.server.hub));

    // The database drops every connection (a restart, a failover): the
    // listeners reconnect, and a round through A wakes tina at B again.
    tina_live.get_ref().set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    while tina_live.read().is_ok() {} // The notices of the rounds above.
    let mut admin = postgres::Client::connect(&cluster.url(), postgres::NoTls).unwrap();
    admin
        .batch_execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid()")
        .unwrap();
    tina_live.get_ref().set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let woken = (0..40).any(|i| {
        olga.replica.rename_section(&id, &format!("North {i}")).unwrap();
        let _ = olga.try_round(&a.server, fieldsync_core::protocol::DEFAULT_RESPONSE_BUDGET); // may meet the dropped connection
        matches!(tina_live.read(), Ok(Message::Text(_)))
    });
    assert!(woken, "no notice reached process B's live channel after the database dropped its connections");
}

#[test]
fn a_reader_on_one_hub_misses_nothing_other_hubs_commit_meanwhile() {
    // The feed's seq must grow in commit order within a project: if a round
    // committed out of order, the reader's cursor would pass it for good.
    const SECTIONS: usize = 120;
    let cluster = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    let (a, c) = (process(&cluster.url()), process(&cluster.url()));
    // The reader polls for as long as the writers take, which a slow machine
    // stretches: no request rate on its server, so the test counts, not races.
    let unlimited = fieldsync_server::ServeOptions { requests_per_minute: 0, ..Default::default() };
    let b = process_serving(&cluster.url(), PgOptions::default(), unlimited);
    setup(&a.server.hub, &[("olga", Role::Office), ("otto", Role::Office), ("tom", Role::Technician)]);
    let mut olga = Device::enroll(&a.server.hub, dir.path(), "olga");
    let mut otto = Device::enroll(&c.server.hub, dir.path(), "otto");
    let mut tom = Device::enroll(&b.server.hub, dir.path(), "tom");
    olga.sync(&a.server);
    otto.sync(&c.server);
    tom.sync(&b.server);
    let mut rounds = 0;
    std::thread::scope(|scope| {
        let writers: Vec<_> = [(olga, &a.server, 0), (otto, &c.server, 1)]
            .into_iter()
            .map(|(mut device, server, w)| {
                scope.spawn(move || {
                    for i in 0..SECTIONS {
                        let id = format!("s{w}-{i:03}");
                        device.replica.create_section_with_id(&id, PROJECT, "x", &route()).unwrap();
                        device.round(server);
                    }
                })
            })
            .collect();
        let started = Instant::now();
        while !writers.iter().all(|w| w.is_finished()) {
            tom.round(&b.server);
            rounds += 1;
            assert!(started.elapsed() < Duration::from_secs(120), "the writers do not finish");
        }
        for w in writers {
            w.join().unwrap();
        }
    });
    tom.sync(&b.server);
    let ids = section_ids(&tom.replica);
    assert_eq!(ids.len(), 2 * SECTIONS, "the reader missed sections ({rounds} rounds while they were written)");
}

#[test]
fn two_processes_writing_one_section_at_once_lose_nothing_from_its_document() {
    // Two rounds through two processes read the section before either
    // commits (a third transaction holds the project meanwhile). The section
    // is at the snapshot threshold, so each commit folds a snapshot: the
    // second must not fold one that lacks the first's change while claiming
    // its row, or every later bootstrap goes without it.
    let cluster = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (process(&cluster.url()), process(&cluster.url()), process(&cluster.url()));
    setup(&a.server.hub, &[("olga", Role::Office), ("tina", Role::Office), ("tom", Role::Office)]);
    let mut olga = Device::enroll(&a.server.hub, dir.path(), "olga");
    let mut tina = Device::enroll(&a.server.hub, dir.path(), "tina");
    let mut tom = Device::enroll(&b.server.hub, dir.path(), "tom");
    // Everyone follows the feed before the section exists (a bootstrap would fold its rows).
    olga.sync(&a.server);
    tina.sync(&a.server);
    tom.sync(&b.server);
    let id = olga.replica.create_section(PROJECT, "North", &route()).unwrap();
    for i in 1..fieldsync_server::hub::SNAPSHOT_AFTER {
        olga.replica.rename_section(&id, &format!("North {i}")).unwrap();
    }
    olga.sync(&a.server);
    tina.sync(&a.server);
    tom.sync(&b.server);
    tina.replica.rename_section(&id, "North, by tina").unwrap();
    tom.replica.rename_section(&id, "North, by tom").unwrap();

    let mut holder = postgres::Client::connect(&cluster.url(), postgres::NoTls).unwrap();
    let mut held = holder.transaction().unwrap();
    held.query("SELECT id FROM projects WHERE id = $1 FOR UPDATE", &[&PROJECT]).unwrap();
    let mut watcher = postgres::Client::connect(&cluster.url(), postgres::NoTls).unwrap();
    std::thread::scope(|scope| {
        let rounds =
            [(&mut tina, &a.server), (&mut tom, &b.server)].map(|(d, server)| scope.spawn(move || d.round(server)));
        // Both rounds have read the section and wait for the project's lock.
        wait_for_lock_waiters(&mut watcher, 2);
        held.commit().unwrap();
        for round in rounds {
            round.join().unwrap();
        }
    });

    // A new phone bootstraps through the third process; olga follows the feed.
    olga.sync(&a.server);
    let mut fred = Device::enroll(&c.server.hub, dir.path(), "olga");
    fred.sync(&c.server);
    let expected = olga.replica.section(&id).unwrap();
    assert_eq!(expected.heads.len(), 2, "the two concurrent changes are the document's heads");
    assert_eq!(fred.replica.section(&id).unwrap(), expected, "the bootstrap lacks a change both rounds acknowledged");
    for d in [&mut tina, &mut tom] {
        d.sync(&a.server);
        assert_eq!(d.replica.section(&id).unwrap(), expected);
    }
}

#[test]
fn a_round_waiting_on_its_project_holds_up_no_other_project() {
    // A round of PROJECT waits for its project's lock (another process's
    // round holds it); a round of another project on the same hub goes on.
    let cluster = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    // Olga's round waits for the lock as long as the test lets it.
    let a = process_with(&cluster.url(), PgOptions { statement_timeout: HANG_GUARD, ..PgOptions::default() });
    setup(&a.server.hub, &[("olga", Role::Office)]);
    a.server.hub.create_project("elsewhere", fieldsync_core::ProjectConfig::default()).unwrap();
    a.server.hub.add_member("elsewhere", "otto", Role::Office).unwrap();
    let mut olga = Device::enroll(&a.server.hub, dir.path(), "olga");
    let otto = a.server.hub.enroll_device("otto", "otto's phone").unwrap();
    olga.sync(&a.server);
    olga.replica.create_section(PROJECT, "North", &route()).unwrap();

    let mut holder = postgres::Client::connect(&cluster.url(), postgres::NoTls).unwrap();
    let mut held = holder.transaction().unwrap();
    held.query("SELECT id FROM projects WHERE id = $1 FOR UPDATE", &[&PROJECT]).unwrap();
    let mut watcher = postgres::Client::connect(&cluster.url(), postgres::NoTls).unwrap();
    std::thread::scope(|scope| {
        let waiting = scope.spawn(|| olga.round(&a.server));
        wait_for_lock_waiters(&mut watcher, 1);
        let (done, answered) = std::sync::mpsc::channel();
        let hub = Arc::clone(&a.server.hub);
        scope.spawn(move || {
            let request = crate::refusals::request("0a0b", "elsewhere", vec![]);
            done.send(hub.sync_request(&otto.token, request, 1).map(|r| r.cursor)).unwrap();
        });
        let other = answered.recv_timeout(HANG_GUARD / 2);
        assert!(!waiting.is_finished(), "olga's round did not wait");
        held.commit().unwrap();
        assert!(matches!(other, Ok(Ok(_))), "the other project's round waited for PROJECT's: {other:?}");
        waiting.join().unwrap();
    });
}

#[test]
fn a_device_revoked_through_one_process_loses_its_live_channel_on_another() {
    let cluster = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (process(&cluster.url()), process(&cluster.url()));
    setup(&a.server.hub, &[("tina", Role::Technician)]);
    let tina = Device::enroll(&a.server.hub, dir.path(), "tina");
    let mut ws = live(&b.server, &tina.token);
    a.server.hub.revoke_device(&tina.id).unwrap();
    // Pings come every 20 s; the store is looked at every second.
    ws.get_ref().set_read_timeout(Some(HANG_GUARD)).unwrap();
    let reason = loop {
        match ws.read() {
            Ok(Message::Close(frame)) => break frame.map(|f| f.reason.to_string()).unwrap_or_default(),
            Ok(_) => {}
            Err(e) => panic!("the channel was not closed by the server: {e}"),
        }
    };
    assert_eq!(reason, "device revoked");
}

#[test]
fn a_photo_begun_through_one_process_is_finished_and_served_through_another() {
    use fieldsync_core::{HttpTransport, PhotoTransport};
    let cluster = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (process(&cluster.url()), process(&cluster.url()));
    setup(&a.server.hub, &[("olga", Role::Office)]);
    let mut olga = Device::enroll(&a.server.hub, dir.path(), "olga");
    let via = |p: &Process| HttpTransport::new(&format!("http://{}", p.server.addr), olga.token.as_str(), HANG_GUARD);
    let (via_a, via_b) = (via(&a).unwrap(), via(&b).unwrap());
    // The record goes up through one process...
    let photo = crate::photos::png(12_000);
    let (sha, n) = (crate::photos::hex_sha(&photo), photo.len() as u64);
    olga.sync(&b.server);
    let section = olga.replica.create_section(PROJECT, "north", &route()).unwrap();
    olga.replica.add_photo_bytes(&section, &photo, None).unwrap();
    olga.sync(&b.server);
    // ...the bytes half through one and half through the other (the link moved).
    assert_eq!(via_a.put_chunk(PROJECT, &sha, n, 0, &photo[..6000]).unwrap().received, 6000);
    let done = via_b.put_chunk(PROJECT, &sha, n, 6000, &photo[6000..]).unwrap();
    assert_eq!((done.received, done.complete), (n, true));
    let got = via_a.get_chunk(PROJECT, &sha, 0, n).unwrap();
    assert_eq!((got.size, got.bytes), (n, photo));
    // Bytes no section names are refused; a stored upload no section names goes after its grace.
    let orphan = crate::photos::png(3000);
    let orphan_sha = crate::photos::hex_sha(&orphan);
    let refused = via_a.put_chunk(PROJECT, &orphan_sha, orphan.len() as u64, 0, &orphan).unwrap_err();
    assert!(matches!(&refused, fieldsync_core::TransportError::Server { status: 409, .. }), "{refused}");
    let mut store = PgHubStore::connect(&cluster.url()).unwrap();
    store.append_photo(PROJECT, &orphan_sha, orphan.len() as u64, 0, &orphan, 1).unwrap();
    store.finish_photo(PROJECT, &orphan_sha, true).unwrap();
    assert_eq!(b.server.hub.collect_photos(fieldsync_server::now_ms(), 0).unwrap(), 1);
    assert_eq!(a.server.hub.photos_held(PROJECT, &[&sha, &orphan_sha]).unwrap(), 1, "the named photo stays");
    let gone = via_a.get_chunk(PROJECT, &orphan_sha, 0, 10).unwrap_err();
    assert!(matches!(gone, fieldsync_core::TransportError::Server { status: 404, .. }));
}

#[test]
fn a_dropped_connection_is_reopened_and_a_newer_schema_refused_untouched() {
    let cluster = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    let p = process(&cluster.url());
    setup(&p.server.hub, &[("olga", Role::Office)]);
    let mut olga = Device::enroll(&p.server.hub, dir.path(), "olga");
    olga.sync(&p.server);

    // The database ends every session (as a restart or a failover would).
    let mut admin = postgres::Client::connect(&cluster.url(), postgres::NoTls).unwrap();
    admin
        .batch_execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND datname = 'postgres'")
        .unwrap();
    let id = olga.replica.create_section(PROJECT, "North", &route()).unwrap();
    // The round in flight may fail (the device keeps its changes); the next one goes through.
    let _ = olga.try_round(&p.server, fieldsync_core::protocol::DEFAULT_RESPONSE_BUDGET);
    olga.sync(&p.server);
    assert_eq!(p.server.hub.section_view(&id).unwrap().unwrap().name, "North");
    drop(p);

    // A hub process started later finds everything.
    let again = process(&cluster.url());
    assert_eq!(again.server.hub.section_view(&id).unwrap().unwrap().name, "North");
    drop(again);

    admin.batch_execute("UPDATE fieldsync_schema SET version = 99").unwrap();
    let before: i64 = admin.query_one("SELECT count(*) FROM feed", &[]).unwrap().get(0);
    match PgHubStore::connect(&cluster.url()) {
        Err(StoreError::NewerSchema { found: 99, .. }) => {}
        other => panic!("{other:?}"),
    }
    let after: i64 = admin.query_one("SELECT count(*) FROM feed", &[]).unwrap().get(0);
    assert_eq!((before, after), (1, 1));
}

#[test]
fn a_round_waits_for_another_round_of_the_same_project_to_commit() {
    // The mechanism behind the reader test, without its luck: while one
    // round holds its project, another round of that project cannot take a
    // feed seq (it would commit out of order); one of another project can.
    let cluster = Cluster::start();
    let mut store = PgHubStore::connect(&cluster.url()).unwrap();
    for project in ["p1", "p2"] {
        store.create_project(project, &fieldsync_core::ProjectConfig::default()).unwrap();
    }
    let write = |project: &str, hash: &str| RoundWrite {
        project: project.into(),
        device: "d".into(),
        user: "u".into(),
        bind_actor: None,
        now_ms: 1,
        stamp_floor: None,
        sections: vec![SectionWrite {
            section: format!("{project}-s"),
            based_on_seq: 0,
            changes: vec![(hash.into(), vec![1, 2, 3])],
            view: "{}".into(),
            conflicts: vec![],
            snapshot: None,
            coverage: Default::default(),
        }],
    };
    let mut holder = postgres::Client::connect(&cluster.url(), postgres::NoTls).unwrap();
    let mut round = holder.transaction().unwrap();
    round.query("SELECT id FROM projects WHERE id = 'p1' FOR UPDATE", &[]).unwrap();

    let url = cluster.url();
    let (calling, called) = std::sync::mpsc::channel();
    let other = std::thread::spawn(move || {
        let mut store = PgHubStore::connect(&url).unwrap();
        calling.send(()).unwrap();
        store.commit_round(&write("p1", "h1")).unwrap();
    });
    store.commit_round(&write("p2", "h2")).unwrap(); // Another project: not held up.
    called.recv().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(!other.is_finished(), "a round of p1 committed while another round held p1");
    round.commit().unwrap();
    other.join().unwrap();
}

#[test]
fn a_stopped_database_is_a_503_and_the_hub_heals_without_a_restart() {
    let cluster = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (process(&cluster.url()), process(&cluster.url()));
    setup(&a.server.hub, &[("olga", Role::Office), ("tina", Role::Technician)]);
    let mut olga = Device::enroll(&a.server.hub, dir.path(), "olga");
    let mut tina = Device::enroll(&b.server.hub, dir.path(), "tina");
    olga.sync(&a.server);
    tina.sync(&b.server);
    let id = olga.replica.create_section(PROJECT, "North", &route()).unwrap();
    olga.sync(&a.server);

    // Down: a round is a 503 `busy` naming the database (the client's
    // Offline, retried), not a 500; the device keeps its change.
    cluster.stop();
    olga.replica.rename_section(&id, "North, while down").unwrap();
    let (status, body) = olga.try_round(&a.server, fieldsync_core::protocol::DEFAULT_RESPONSE_BUDGET).unwrap_err();
    assert_eq!((status, body.error.as_str()), (503, "busy"), "{body:?}");
    assert!(body.message.contains("database is unavailable") && body.retry_after_s.is_some(), "{body:?}");

    // Back: the same hubs serve again, and live notices cross again once B's listener is back.
    cluster.resume();
    olga.sync(&a.server);
    assert_eq!(a.server.hub.section_view(&id).unwrap().unwrap().name, "North, while down");
    let mut tina_live = live(&b.server, &tina.token);
    tina_live.get_ref().set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let guard = Instant::now();
    for i in 0.. {
        olga.replica.rename_section(&id, &format!("North {i}")).unwrap();
        olga.sync(&a.server);
        if matches!(tina_live.read(), Ok(Message::Text(_))) {
            break;
        }
        assert!(guard.elapsed() < HANG_GUARD, "no notice crossed to process B after the database came back");
    }
    tina.sync(&b.server);
    assert!(tina.replica.section(&id).unwrap().name.starts_with("North "));
}

#[test]
fn a_statement_over_the_timeout_is_cancelled_as_unavailable() {
    // A round stuck behind a lock (or a slow query) gives up instead of
    // holding the hub (which serializes its store calls) forever.
    let cluster = Cluster::start();
    let options = pg_store::PgOptions { statement_timeout: Duration::from_millis(200), ..Default::default() };
    let mut store = PgHubStore::connect_with(&cluster.url(), options).unwrap();
    store.create_project("p1", &fieldsync_core::ProjectConfig::default()).unwrap();
    let mut holder = postgres::Client::connect(&cluster.url(), postgres::NoTls).unwrap();
    let mut held = holder.transaction().unwrap();
    held.query("SELECT id FROM projects WHERE id = 'p1' FOR UPDATE", &[]).unwrap();
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let write = RoundWrite {
            project: "p1".into(),
            device: "d".into(),
            user: "u".into(),
            bind_actor: None,
            now_ms: 1,
            stamp_floor: None,
            sections: vec![],
        };
        let _ = done.send(store.commit_round(&write));
    });
    match result.recv_timeout(HANG_GUARD).expect("the round still waits for the lock: no statement timeout") {
        Err(e @ StoreError::Unavailable(_)) => assert!(e.to_string().contains("statement timeout"), "{e}"),
        other => panic!("{other:?}"),
    }
    held.rollback().unwrap();
}

#[test]
fn tls_to_the_database_is_verified_against_sslrootcert_and_required_by_the_server() {
    let (cluster, ca) = Cluster::start_tls();
    let dir = tempfile::tempdir().unwrap();
    let tls_url = format!("{}?sslmode=verify-full&sslrootcert={}", cluster.url(), ca.display());

    // The server takes TLS connections only (hostssl): plain is refused.
    let plain = PgHubStore::connect(&cluster.url()).unwrap_err().to_string();
    assert!(plain.contains("pg_hba.conf") && plain.contains("no encryption"), "{plain}");

    // Verified against the test CA, a hub serves and syncs over it.
    let p = process(&tls_url);
    setup(&p.server.hub, &[("olga", Role::Office)]);
    let mut olga = Device::enroll(&p.server.hub, dir.path(), "olga");
    olga.sync(&p.server);
    let id = olga.replica.create_section(PROJECT, "North", &route()).unwrap();
    olga.sync(&p.server);
    assert_eq!(p.server.hub.section_view(&id).unwrap().unwrap().name, "North");

    // Another CA: a clear TLS error, not an outage.
    openssl(
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
    let wrong = format!("{}?sslmode=verify-full&sslrootcert={}", cluster.url(), dir.path().join("other.pem").display());
    match PgHubStore::connect(&wrong) {
        Err(e @ StoreError::Postgres(_)) => {
            let e = e.to_string();
            assert!(e.contains("TLS") && e.contains("UnknownIssuer"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_database_that_never_answers_is_unavailable_after_the_connect_timeout() {
    // The TCP connect succeeds (the kernel queues it), then nothing: the
    // `postgres` crate's own timeout, on the TCP connect only, never fires.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("postgres://postgres@{}/postgres", silent.local_addr().unwrap());
    let options = pg_store::PgOptions { connect_timeout: Duration::from_millis(300), ..Default::default() };
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(PgHubStore::connect_with(&url, options).map(|_| ()));
    });
    match result.recv_timeout(HANG_GUARD).expect("the connect still waits: no connect timeout") {
        Err(e @ StoreError::Unavailable(_)) => assert!(e.to_string().contains("no answer within 300 ms"), "{e}"),
        other => panic!("{other:?}"),
    }
    drop(silent);
}
