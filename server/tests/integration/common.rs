//! The harness: the real server on 127.0.0.1:0 (axum in-process, on its own
//! tokio runtime), a small HTTP/1.1 client over a plain `TcpStream` that counts
//! every byte on the wire, and devices made of real `Replica`s.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fieldsync_core::protocol::{self, ErrorBody, SyncResponse};
use fieldsync_core::{GeoPoint, Replica, ReplicaOptions, RoundReport};
use fieldsync_server::{Hub, ProjectSummary};

pub const PROJECT: &str = "p1";

/// A straight route of about 1.1 km due east from (48.0, 11.0).
pub fn route() -> Vec<GeoPoint> {
    vec![GeoPoint { lat: 48.0, lon: 11.0 }, GeoPoint { lat: 48.0, lon: 11.015 }]
}

/// The hub server, running until stopped or dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub hub: Arc<Hub>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    pub fn start(hub: Arc<Hub>) -> TestServer {
        TestServer::start_with(hub, fieldsync_server::ServeOptions::default())
    }

    /// Serve with the HTTP layer's limits set.
    pub fn start_with(hub: Arc<Hub>, options: fieldsync_server::ServeOptions) -> TestServer {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let served = Arc::clone(&hub);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                fieldsync_server::serve_with(
                    listener,
                    served,
                    async {
                        let _ = stop_rx.await;
                    },
                    options,
                )
                .await
                .unwrap();
            });
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        TestServer { addr, hub, stop: Some(stop_tx), thread: Some(thread) }
    }

    /// Open a hub in `dir` and serve it.
    pub fn open(dir: &Path) -> TestServer {
        TestServer::start(Arc::new(Hub::open(dir).unwrap()))
    }

    /// Graceful shutdown; returns once the server has stopped.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A hub with project p1 and the given users and roles.
pub fn hub_with(dir: &Path, members: &[(&str, fieldsync_core::Role)]) -> Arc<Hub> {
    let hub = Hub::open(dir).unwrap();
    hub.create_project(PROJECT, fieldsync_core::ProjectConfig::default()).unwrap();
    for (user, role) in members {
        hub.add_member(PROJECT, user, *role).unwrap();
    }
    Arc::new(hub)
}

/// An HTTP answer, with the bytes that crossed the wire each way.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub sent: usize,
    pub received: usize,
}

impl Reply {
    pub fn error(&self) -> ErrorBody {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("status {}: not an error body ({e}): {:?}", self.status, self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Send raw bytes (a request head and part of a body) and read the answer.
pub fn raw(addr: SocketAddr, head: &str, body: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    // The server may answer and close before taking the whole body.
    let _ = s.write_all(body);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let sent = head.len() + body.len();
    parse(&buf, sent)
}

fn parse(buf: &[u8], sent: usize) -> Reply {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| panic!("no HTTP head in {buf:?}"));
    let head = std::str::from_utf8(&buf[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = buf[end + 4..].to_vec();
    if headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")) {
        body = dechunk(&body);
    }
    Reply { status, headers, body, sent, received: buf.len() }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&b[..line_end]).unwrap().trim(), 16).unwrap();
        b = &b[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

/// `POST /v1/sync` as the FieldSync client sends it.
pub fn post_sync(addr: SocketAddr, token: &str, body: &[u8]) -> Reply {
    let head = format!(
        "POST /v1/sync HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: {}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        protocol::CONTENT_TYPE,
        body.len()
    );
    raw(addr, &head, body)
}

/// A phone: a replica enrolled on the hub.
pub struct Device {
    pub replica: Replica,
    pub token: String,
    pub id: String,
}

/// What one round did, as the device saw it.
#[derive(Debug)]
pub struct Round {
    pub report: RoundReport,
    pub changes: Vec<Vec<u8>>,
    pub documents: usize,
    pub cursor: String,
    pub more: bool,
    pub roster: bool,
    pub sent: usize,
    pub received: usize,
}

impl Device {
    pub fn enroll(hub: &Hub, dir: &Path, user: &str) -> Device {
        let e = hub.enroll_device(user, &format!("{user}'s phone")).unwrap();
        let path = dir.join(format!("{user}-{}.db", &e.device_id[..8]));
        let replica =
            Replica::open(path, ReplicaOptions { device: e.device_id.clone(), ..Default::default() }).unwrap();
        Device { replica, token: e.token, id: e.device_id }
    }

    /// One round with the default budgets.
    pub fn round(&mut self, server: &TestServer) -> Round {
        self.round_with(server, protocol::DEFAULT_RESPONSE_BUDGET)
    }

    /// One round; panics on an HTTP error (use `try_round` to see it).
    pub fn round_with(&mut self, server: &TestServer, response_budget: u32) -> Round {
        self.try_round(server, response_budget).unwrap_or_else(|(status, e)| panic!("{status}: {e:?}"))
    }

    pub fn try_round(&mut self, server: &TestServer, response_budget: u32) -> Result<Round, (u16, ErrorBody)> {
        let prepared = self.replica.prepare_round(PROJECT, 4 * 1024 * 1024, response_budget).unwrap();
        let reply = post_sync(server.addr, &self.token, &protocol::encode(&prepared.request));
        if reply.status != 200 {
            let body = reply.error();
            if reply.status == 422 {
                self.replica.mark_refused(&body.refusals).unwrap();
            }
            return Err((reply.status, body));
        }
        assert_eq!(reply.header("content-type"), Some(protocol::CONTENT_TYPE));
        let response: SyncResponse = protocol::decode(&reply.body).unwrap();
        let changes = response.changes.iter().flat_map(|b| b.changes.clone()).collect();
        let documents = response.documents.len();
        let (cursor, more, roster) = (response.cursor.clone(), response.more, response.roster.is_some());
        let report = self.replica.commit_round(PROJECT, &prepared.sent, response).unwrap();
        Ok(Round { report, changes, documents, cursor, more, roster, sent: reply.sent, received: reply.received })
    }

    /// Rounds until the server has nothing more; returns them.
    pub fn sync(&mut self, server: &TestServer) -> Vec<Round> {
        self.sync_with(server, protocol::DEFAULT_RESPONSE_BUDGET)
    }

    /// Rounds with `response_budget` until the server has nothing more.
    pub fn sync_with(&mut self, server: &TestServer, response_budget: u32) -> Vec<Round> {
        let mut rounds = vec![self.round_with(server, response_budget)];
        while rounds.last().unwrap().more || self.replica.sync_status().unwrap().pending_changes > 0 {
            rounds.push(self.round_with(server, response_budget));
            assert!(rounds.len() < 1000, "sync does not end");
        }
        rounds
    }
}

/// What the hub stores, to show that a refused request changed nothing.
pub fn stored(hub: &Hub) -> (Vec<ProjectSummary>, Vec<fieldsync_server::DeviceSummary>, Vec<String>) {
    let conflicts = hub.conflicts(PROJECT).unwrap().into_iter().map(|c| c.id).collect();
    (hub.list_projects().unwrap(), hub.list_devices().unwrap(), conflicts)
}

/// A phone as an app runs it: a replica behind a mutex, core's `SyncClient`
/// over the real `HttpTransport` (reqwest) to `url`.
pub struct Phone {
    pub user: String,
    pub token: String,
    pub replica: std::sync::Arc<std::sync::Mutex<Replica>>,
    pub client: std::sync::Arc<fieldsync_core::SyncClient>,
}

impl Phone {
    pub fn new(url: &str, device: Device, user: &str) -> Phone {
        let transport = fieldsync_core::HttpTransport::new(url, &device.token, Duration::from_secs(20)).unwrap();
        Phone::with_transport(std::sync::Arc::new(transport), device, user)
    }

    pub fn with_transport(transport: Arc<dyn fieldsync_core::Transport>, device: Device, user: &str) -> Phone {
        let mut replica = device.replica;
        replica.join_project(PROJECT).unwrap();
        let replica = Arc::new(std::sync::Mutex::new(replica));
        let client = Arc::new(fieldsync_core::SyncClient::new(Arc::clone(&replica), transport));
        Phone { user: user.to_owned(), token: device.token, replica, client }
    }

    pub fn enroll(server: &TestServer, url: &str, dir: &Path, user: &str) -> Phone {
        Phone::new(url, Device::enroll(&server.hub, dir, user), user)
    }

    pub fn r(&self) -> std::sync::MutexGuard<'_, Replica> {
        self.replica.lock().unwrap()
    }

    pub fn sync(&self) -> fieldsync_core::SyncReport {
        self.client.sync_now().unwrap_or_else(|e| panic!("{}: {e}", self.user))
    }

    /// Every section's view and every conflict record, sorted: what must be
    /// identical on every replica holding the same changes.
    pub fn state(&self) -> (Vec<fieldsync_core::SectionView>, Vec<fieldsync_core::ConflictRecord>) {
        let r = self.r();
        let mut views: Vec<_> = section_ids(&r).iter().map(|id| r.section(id).unwrap()).collect();
        views.sort_by(|a, b| a.id.cmp(&b.id));
        let mut conflicts = r.conflicts(None).unwrap();
        conflicts.sort_by(|a, b| a.id.cmp(&b.id));
        (views, conflicts)
    }
}

/// The ids of every section a replica holds.
pub fn section_ids(replica: &Replica) -> Vec<String> {
    let mut ids: Vec<String> = replica
        .connection()
        .prepare("SELECT id FROM sections ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    ids.sort();
    ids
}

/// The hub's views of `ids` and its conflict records, sorted like [`Phone::state`].
pub fn hub_state(hub: &Hub, ids: &[String]) -> (Vec<fieldsync_core::SectionView>, Vec<fieldsync_core::ConflictRecord>) {
    let mut views: Vec<_> = ids.iter().map(|id| hub.section_view(id).unwrap().unwrap()).collect();
    views.sort_by(|a, b| a.id.cmp(&b.id));
    let mut conflicts = hub.conflicts(PROJECT).unwrap();
    conflicts.sort_by(|a, b| a.id.cmp(&b.id));
    (views, conflicts)
}
