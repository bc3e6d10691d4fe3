//! The HTTP layer's limits over real sockets: the token before the body,
//! timeouts on heads and bodies, the connection cap, per-device rates. Each
//! test counts events; its timeouts are hang guards, never asserts.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use fieldsync_core::protocol;
use fieldsync_core::{Role, SyncEvent};
use fieldsync_server::ServeOptions;

use crate::common::*;

const HANG_GUARD: Duration = Duration::from_secs(60);

fn head(token: &str, content_length: usize) -> String {
    format!(
        "POST /v1/sync HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: {}\r\n\
         Content-Length: {content_length}\r\nConnection: close\r\n\r\n",
        protocol::CONTENT_TYPE
    )
}

/// Send `head` (and nothing more) and read the answer, keeping the connection open.
fn head_only(addr: std::net::SocketAddr, head: &str) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(HANG_GUARD)).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("no answer without the body ({e}); got {:?}", String::from_utf8_lossy(&buf)),
        }
    }
    parse_reply(&buf)
}

fn parse_reply(buf: &[u8]) -> Reply {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| panic!("no HTTP head in {buf:?}"));
    let head = std::str::from_utf8(&buf[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Reply { status, headers, body: buf[end + 4..].to_vec(), sent: 0, received: buf.len() }
}

fn server(options: ServeOptions) -> (tempfile::TempDir, TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let server =
        TestServer::start_with(hub_with(dir.path(), &[("olga", Role::Office), ("tina", Role::Technician)]), options);
    (dir, server)
}

#[test]
fn a_bad_or_missing_token_is_refused_before_the_body_is_read() {
    let (dir, server) = server(ServeOptions::default());
    // 10 MiB announced, under the body limit; not a byte of it is ever sent.
    for token in ["", "wrong", &"ab".repeat(32)] {
        let reply = head_only(server.addr, &head(token, 10 * 1024 * 1024));
        assert_eq!(reply.status, 401, "{:?}", String::from_utf8_lossy(&reply.body));
        assert_eq!(reply.error().error, "unauthorized");
    }
    let tina = Device::enroll(&server.hub, dir.path(), "tina");
    server.hub.revoke_device(&tina.id).unwrap();
    assert_eq!(head_only(server.addr, &head(&tina.token, 10 * 1024 * 1024)).status, 401);
}

#[test]
fn a_body_that_does_not_arrive_in_time_is_answered_408() {
    let (dir, server) = server(ServeOptions { body_timeout: Duration::from_millis(300), ..ServeOptions::default() });
    let tina = Device::enroll(&server.hub, dir.path(), "tina");
    let reply = head_only(server.addr, &head(&tina.token, 1000));
    assert_eq!(reply.status, 408);
    assert_eq!(reply.error().error, "timeout");
}

#[test]
fn a_slowloris_is_dropped_before_its_head_is_complete() {
    let (_dir, server) = server(ServeOptions { header_timeout: Duration::from_millis(300), ..ServeOptions::default() });
    let head = head("wrong", 10);
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let started = Instant::now();
    // One byte at a time, and a look after each whether the server hung up.
    let mut sent = 0;
    let closed = loop {
        assert!(started.elapsed() < HANG_GUARD, "the server kept a trickling connection open");
        if sent < head.len() && s.write_all(&head.as_bytes()[sent..sent + 1]).is_ok() {
            sent += 1;
        }
        let mut b = [0u8; 1024];
        match s.read(&mut b) {
            Ok(0) => break true,
            Ok(_) => break false, // An answer: the head was complete.
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break true, // Reset.
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(closed && sent < head.len(), "closed {closed} after {sent} of {} bytes", head.len());
    // An idle kept-alive connection is closed the same way.
    let mut idle = TcpStream::connect(server.addr).unwrap();
    idle.set_read_timeout(Some(HANG_GUARD)).unwrap();
    assert_eq!(idle.read(&mut [0u8; 16]).unwrap_or(0), 0);
}

#[test]
fn connections_over_the_cap_are_answered_busy_and_served_once_one_closes() {
    let (_dir, server) = server(ServeOptions { max_connections: 3, ..ServeOptions::default() });
    let held: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(server.addr).unwrap()).collect();
    let reply = head_only(server.addr, "GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert_eq!(reply.error().error, "busy");
    drop(held);
    let started = Instant::now();
    loop {
        let reply = head_only(server.addr, "GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        if reply.status == 200 {
            break;
        }
        assert!(started.elapsed() < HANG_GUARD, "still busy after the held connections closed");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_device_over_its_rate_is_answered_429_with_retry_after_and_the_client_waits() {
    let (dir, server) = server(ServeOptions { requests_per_minute: 1, burst: 2, ..ServeOptions::default() });
    let mut tina = Device::enroll(&server.hub, dir.path(), "tina");
    tina.round(&server);
    tina.round(&server);
    let before = stored(&server.hub);
    let (status, body) = tina.try_round(&server, protocol::DEFAULT_RESPONSE_BUDGET).unwrap_err();
    assert_eq!((status, body.error.as_str()), (429, "rate_limited"));
    let wait = body.retry_after_s.unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert!(body.message.contains("requests a minute"), "{}", body.message);
    assert_eq!(stored(&server.hub), before);
    // The header says the same.
    let prepared = tina.replica.prepare_round(PROJECT, 1 << 20, 1 << 16).unwrap();
    let reply = post_sync(server.addr, &tina.token, &protocol::encode(&prepared.request));
    assert_eq!(reply.header("retry-after").map(|v| v.parse::<u64>().unwrap()), body.retry_after_s);
    // Another device has its own allowance.
    let mut olga = Device::enroll(&server.hub, dir.path(), "olga");
    olga.round(&server);
    // Core's client over HTTP: the failure carries the wait, and tells the engine so.
    let url = format!("http://{}", server.addr);
    let phone = Phone::new(&url, tina, "tina");
    let e = phone.client.sync_now().unwrap_err();
    assert!(e.retryable());
    let ms = e.retry_after_ms().unwrap();
    assert!((1_000..=60_000).contains(&ms), "{ms}");
    assert_eq!(e.event(), SyncEvent::RoundThrottled { retry_after_ms: ms });
    assert_eq!(phone.client.status().unwrap().last_problem, Some(fieldsync_core::SyncProblem::Offline));
}

#[test]
fn a_device_has_at_most_so_many_requests_in_flight() {
    let (dir, server) = server(ServeOptions { max_requests_per_device: 1, ..ServeOptions::default() });
    let mut tina = Device::enroll(&server.hub, dir.path(), "tina");
    // Two requests whose bodies never come: whichever the server takes first
    // holds tina's one place until it ends, and the other is answered 429.
    let mut stalled: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(server.addr).unwrap();
            s.write_all(head(&tina.token, 1000).as_bytes()).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
            s
        })
        .collect();
    let started = Instant::now();
    let (refused, answer) = loop {
        assert!(started.elapsed() < HANG_GUARD, "neither was refused");
        let answered = stalled.iter_mut().enumerate().find_map(|(i, s)| {
            let mut buf = vec![0u8; 4096];
            match s.read(&mut buf) {
                Ok(n) if n > 0 => Some((i, buf[..n].to_vec())),
                _ => None,
            }
        });
        if let Some(found) = answered {
            break found;
        }
    };
    let mut rest = Vec::new();
    stalled[refused].set_read_timeout(Some(HANG_GUARD)).unwrap();
    let _ = stalled[refused].read_to_end(&mut rest);
    let reply = parse_reply(&[answer, rest].concat());
    assert_eq!(reply.status, 429);
    let body = reply.error();
    assert!(body.message.contains("in flight"), "{}", body.message);
    assert_eq!((body.retry_after_s, reply.header("retry-after")), (Some(1), Some("1")));
    // The one that holds the place ends; then tina's rounds go through again.
    drop(stalled);
    let started = Instant::now();
    while tina.try_round(&server, protocol::DEFAULT_RESPONSE_BUDGET).is_err() {
        assert!(started.elapsed() < HANG_GUARD, "the place was never given back");
        std::thread::sleep(Duration::from_millis(20));
    }
}
