//! Hostile clients against the real `fieldsync serve` over real HTTP (issue
//! 12): each attack gets a clear answer, the server's resident memory stays
//! under 256 MiB throughout, and a well-behaved device of another project
//! keeps syncing. After each attack the test waits for one more successful
//! round of that device: rounds are counted, never timed; the timeouts here
//! are hang guards.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fieldsync_core::protocol::{self, PROTOCOL_VERSION, SectionBatch, SyncRequest};
use fieldsync_core::{GeoPoint, HttpTransport, Replica, ReplicaOptions, SyncClient};
use serde_json::Value;
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

use crate::support::*;

const RSS_LIMIT_KIB: u64 = 256 * 1024;
const HANG_GUARD: Duration = Duration::from_secs(120);

/// A field of `/proc/<pid>/status`, in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix(field)?.trim().strip_suffix("kB")?.trim().parse().ok()).unwrap_or(0)
}

/// Samples the server's resident memory until stopped; the largest sample.
struct Memory {
    stop: Arc<AtomicBool>,
    max_kib: Arc<AtomicU64>,
    thread: JoinHandle<()>,
}

impl Memory {
    fn watch(pid: u32) -> Memory {
        let (stop, max_kib) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let (s, m) = (Arc::clone(&stop), Arc::clone(&max_kib));
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                m.fetch_max(status_kib(pid, "VmRSS:"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Memory { stop, max_kib, thread }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        self.max_kib.load(Ordering::Relaxed)
    }
}

/// A device of another project syncing every 200 ms, counting its rounds
/// (and keeping each one's duration, printed as a figure, never asserted).
struct GoodDevice {
    rounds: Arc<AtomicUsize>,
    durations: Arc<Mutex<Vec<Duration>>>,
    failures: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl GoodDevice {
    fn start(url: &str, token: &str, device: &str, db: std::path::PathBuf) -> GoodDevice {
        let mut replica =
            Replica::open(db, ReplicaOptions { device: device.to_owned(), ..Default::default() }).unwrap();
        replica.join_project("other").unwrap();
        let replica = Arc::new(Mutex::new(replica));
        let transport = HttpTransport::new(url, token, Duration::from_secs(60)).unwrap();
        let client = SyncClient::new(Arc::clone(&replica), Arc::new(transport));
        client.sync_now().unwrap(); // The roster: gary is office here.
        let route = [GeoPoint { lat: 48.0, lon: 11.0 }, GeoPoint { lat: 48.0, lon: 11.015 }];
        let section = replica.lock().unwrap().create_section("other", "quiet street", &route).unwrap();
        let rounds = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let durations = Arc::new(Mutex::new(Vec::new()));
        let (r, d, f, s) = (Arc::clone(&rounds), Arc::clone(&durations), Arc::clone(&failures), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let mut n = 0;
            while !s.load(Ordering::Relaxed) {
                n += 1;
                replica.lock().unwrap().rename_section(&section, &format!("quiet street, round {n}")).unwrap();
                let started = Instant::now();
                match client.sync_now() {
                    Ok(report) if report.confirmed >= 1 => {
                        d.lock().unwrap().push(started.elapsed());
                        r.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(report) => f.lock().unwrap().push(format!("round {n} confirmed nothing: {report:?}")),
                    Err(e) => f.lock().unwrap().push(format!("round {n}: {e}")),
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        GoodDevice { rounds, durations, failures, stop, thread }
    }

    /// How many rounds it made so far.
    fn rounds(&self) -> usize {
        self.rounds.load(Ordering::SeqCst)
    }

    /// The median duration of its rounds `from..to` (by count).
    fn median_ms(&self, rounds: std::ops::Range<usize>) -> f64 {
        let mut d: Vec<Duration> = self.durations.lock().unwrap().get(rounds).map(<[_]>::to_vec).unwrap_or_default();
        d.sort();
        d.get(d.len() / 2).map_or(0.0, |m| m.as_secs_f64() * 1000.0)
    }

    /// Wait for one more successful round than so far (the device was not starved).
    fn one_more_round(&self, after: &str) {
        let before = self.rounds.load(Ordering::SeqCst);
        let started = Instant::now();
        while self.rounds.load(Ordering::SeqCst) <= before {
            let failures = self.failures.lock().unwrap().clone();
            assert!(failures.is_empty(), "the good device failed after {after}: {failures:?}");
            assert!(started.elapsed() < HANG_GUARD, "the good device made no round after {after}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn stop(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        (self.rounds.load(Ordering::SeqCst), self.failures.lock().unwrap().clone())
    }
}

/// An HTTP answer.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {:?}", self.status, String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Insist on `status` and `code`; the message.
    fn expect(&self, status: u16, code: &str) -> String {
        let json = self.json();
        assert_eq!((self.status, json["error"].as_str()), (status, Some(code)), "{json}");
        json["message"].as_str().unwrap().to_owned()
    }
}

/// Send `head` and `body` (which the server may not read), then read the answer to its end.
fn exchange(addr: &str, head: &str, body: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(HANG_GUARD)).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset && !buf.is_empty() => break,
            Err(e) => panic!("no answer ({e}) after {:?}", String::from_utf8_lossy(&buf)),
        }
    }
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| panic!("no HTTP head in {buf:?}"));
    let head = std::str::from_utf8(&buf[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Reply { status, headers, body: buf[end + 4..].to_vec() }
}

fn sync_head(token: &str, len: usize) -> String {
    format!(
        "POST /v1/sync HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: {}\r\n\
         Content-Length: {len}\r\nConnection: close\r\n\r\n",
        protocol::CONTENT_TYPE
    )
}

fn post(addr: &str, token: &str, body: &[u8]) -> Reply {
    exchange(addr, &sync_head(token, body.len()), body)
}

fn request(project: &str, actor: &str, cursor: &str, upload: Vec<SectionBatch>) -> Vec<u8> {
    protocol::encode(&SyncRequest {
        protocol: PROTOCOL_VERSION,
        project: project.into(),
        actor: actor.into(),
        cursor: cursor.into(),
        roster_version: 0,
        response_budget: protocol::DEFAULT_RESPONSE_BUDGET,
        upload,
        scope: Default::default(),
        held: None,
    })
}

fn uleb(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// The unpack bomb, by hand: one batch of a first packed change and
/// `changes` more, each naming the one before it `refs` times (one byte each,
/// 32 once unpacked).
fn unpack_bomb(actor: &str, changes: usize, refs: usize) -> Vec<u8> {
    let mut raw = vec![1];
    for s in [PROJECT, actor, ""] {
        uleb(&mut raw, s.len() as u64);
        raw.extend_from_slice(s.as_bytes());
    }
    raw.extend_from_slice(&[0, 0, 1, 1, b's']);
    uleb(&mut raw, changes as u64 + 1);
    raw.extend_from_slice(&[2, 1, 0]);
    let mut change = vec![1];
    uleb(&mut change, refs as u64);
    for _ in 0..changes {
        uleb(&mut raw, (change.len() + refs) as u64);
        raw.extend_from_slice(&change);
        raw.resize(raw.len() + refs, 1);
    }
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&raw).unwrap();
    z.finish().unwrap()
}

fn live(addr: &str, token: &str) -> WebSocket<TcpStream> {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(HANG_GUARD)).unwrap();
    let mut req = format!("ws://{addr}/v1/live?project={PROJECT}").into_client_request().unwrap();
    req.headers_mut().insert("Authorization", format!("Bearer {token}").parse().unwrap());
    tungstenite::client(req, stream).map(|(ws, _)| ws).unwrap_or_else(|e| panic!("live channel: {e}"))
}

/// Read until the server closes the channel; its close reason.
fn closed_by_server(ws: &mut WebSocket<TcpStream>) -> String {
    loop {
        match ws.read() {
            Ok(Message::Close(Some(frame))) => return frame.reason.to_string(),
            Ok(Message::Close(None)) => return String::new(),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("the server kept the channel open")
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// A client that sends its request head one byte at a time; whether the server
/// hung up before the head was complete.
fn slowloris(addr: &str) -> bool {
    let head = sync_head("0".repeat(64).as_str(), 10);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let started = Instant::now();
    for byte in head.as_bytes() {
        assert!(started.elapsed() < HANG_GUARD, "a trickling client was kept");
        if s.write_all(&[*byte]).is_err() {
            return true;
        }
        match s.read(&mut [0u8; 256]) {
            Ok(0) => return true,
            Ok(_) => return false,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn hostile_clients_get_clear_answers_while_memory_stays_bounded_and_others_keep_syncing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let d = data.to_str().unwrap();
    ok(&["admin", "--data", d, "create-project", PROJECT]);
    ok(&["admin", "--data", d, "add-user", "tina", "--project", PROJECT, "--role", "technician"]);
    let tina = ok_json(&["admin", "--data", d, "enroll", "--user", "tina", "--name", "tina's phone"]);
    let tablet = ok_json(&["admin", "--data", d, "enroll", "--user", "tina", "--name", "tina's tablet"]);
    ok(&["admin", "--data", d, "create-project", "other"]);
    ok(&["admin", "--data", d, "add-user", "gary", "--project", "other", "--role", "office"]);
    let gary = ok_json(&["admin", "--data", d, "enroll", "--user", "gary", "--name", "gary's phone"]);
    let token = tina["token"].as_str().unwrap().to_owned();
    // Heads within a second, pings every second, 600 requests a minute in bursts of 30.
    let flags = ["--header-timeout", "1", "--live-ping-interval", "1", "--rate-limit", "600", "--rate-burst", "30"];
    let server = Server::start_with(&data, "127.0.0.1:0", &flags);
    let addr = server.addr().to_owned();
    let memory = Memory::watch(server.child.id());
    let good = GoodDevice::start(
        &server.url,
        gary["token"].as_str().unwrap(),
        gary["device_id"].as_str().unwrap(),
        dir.path().join("gary.db"),
    );
    // Its normal round time first: five rounds with nothing else going on.
    for _ in 0..5 {
        good.one_more_round("starting");
    }
    let normal = good.rounds();
    let actor = "0123456789abcdef0123456789abcdef";

    // 1. Unpack bombs, with an enrolled technician's token.
    let bomb = unpack_bomb(actor, 1, 67_000_000);
    assert!(bomb.len() < 100_000, "{}", bomb.len());
    assert!(post(&addr, &token, &bomb).expect(413, "too_large").contains("inflated"));
    let bomb = unpack_bomb(actor, 4_000, 1_000);
    assert!(post(&addr, &token, &bomb).expect(413, "too_large").contains("unpacked"));
    assert!(post(&addr, &token, &unpack_bomb(actor, 1, 4_000_000)).expect(413, "too_large").contains("dependencies"));
    good.one_more_round("the unpack bombs");

    // 2. Oversized ids and cursors.
    let long = "a".repeat(100_000);
    post(&addr, &token, &request(&long, actor, "", vec![])).expect(413, "too_large");
    post(&addr, &token, &request(PROJECT, &long, "", vec![])).expect(413, "too_large");
    post(&addr, &token, &request(PROJECT, actor, &long, vec![])).expect(413, "too_large");
    let batch = SectionBatch::upload(long.clone(), vec![b"x".to_vec()]);
    post(&addr, &token, &request(PROJECT, actor, "", vec![batch])).expect(413, "too_large");
    good.one_more_round("the oversized ids");

    // 3. Too many changes in one request.
    let batch = SectionBatch::upload("s", vec![vec![0; 4]; 10_001]);
    let message = post(&addr, &token, &request(PROJECT, actor, "", vec![batch])).expect(413, "too_large");
    assert!(message.contains("changes"), "{message}");
    good.one_more_round("too many changes");

    // 4. A huge body announced with a bad or no token, then nothing: 401 at once.
    for bad in ["", "wrong", &"ab".repeat(32)] {
        exchange(&addr, &sync_head(bad, protocol::MAX_BODY_BYTES), b"").expect(401, "unauthorized");
    }
    exchange(&addr, &sync_head(&token, 1 << 30), b"").expect(413, "too_large");
    // Garbage the size of a big upload, with a good token.
    let garbage: Vec<u8> = (0..8 << 20).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    post(&addr, &token, &garbage).expect(400, "malformed");
    good.one_more_round("the huge bodies");

    // 5. Slowloris: twenty clients trickling their heads.
    let trickling: Vec<_> = (0..20)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || slowloris(&addr))
        })
        .collect();
    for t in trickling {
        assert!(t.join().unwrap(), "a trickling client got its head through");
    }
    good.one_more_round("the slowloris clients");

    // 6. Too many live channels of one device: the oldest two are closed.
    let mut channels: Vec<_> = (0..6).map(|_| live(&addr, &token)).collect();
    for ws in &mut channels[..2] {
        let reason = closed_by_server(ws);
        assert!(reason.contains("replaced by a newer live channel"), "{reason}");
    }
    good.one_more_round("the live channels");

    // 7. A device revoked (by `fieldsync admin`, another process) loses its live channel.
    let tablet_token = tablet["token"].as_str().unwrap();
    let mut revoked = live(&addr, tablet_token);
    ok(&["admin", "--data", d, "revoke", tablet["device_id"].as_str().unwrap()]);
    let reason = closed_by_server(&mut revoked);
    assert!(reason.contains("revoked"), "{reason}");
    post(&addr, tablet_token, &request(PROJECT, actor, "", vec![])).expect(401, "unauthorized");
    good.one_more_round("the revocation");

    // 8. A flood of rounds from one device: answered 429 with Retry-After once over its rate.
    let idle = request(PROJECT, "00112233445566778899aabbccddeeff", "", vec![]);
    let mut throttled = 0;
    for _ in 0..100 {
        let reply = post(&addr, &token, &idle);
        match reply.status {
            200 => {}
            429 => {
                throttled += 1;
                let wait: u64 = reply.header("retry-after").unwrap().parse().unwrap();
                assert!(wait >= 1);
                reply.expect(429, "rate_limited");
            }
            other => panic!("{other}: {:?}", reply.json()),
        }
    }
    assert!(throttled > 0, "none of 100 throttled");
    good.one_more_round("the flood");

    drop(channels);
    let (before, during) = (good.median_ms(0..normal), good.median_ms(normal..good.rounds()));
    println!(
        "good device round time, median: {before:.1} ms before the attacks, {during:.1} ms during them ({:.2}×)",
        during / before.max(0.001)
    );
    let (rounds, failures) = good.stop();
    let max_rss = memory.stop();
    let peak = status_kib(server.child.id(), "VmHWM:");
    println!("good device: {rounds} rounds; server RSS: max sampled {max_rss} KiB, peak (VmHWM) {peak} KiB");
    assert!(failures.is_empty(), "{failures:?}");
    assert!(rounds >= 13, "{rounds}");
    assert!(max_rss > 0 && max_rss < RSS_LIMIT_KIB, "resident memory reached {max_rss} KiB");
    assert!(peak < RSS_LIMIT_KIB, "resident memory peaked at {peak} KiB");
    let (code, _) = server.stop();
    assert_eq!(code, 0);
}
