//! The client side of the live channel: a WebSocket to
//! `GET {server}/v1/live?project=P` that says "something new is on the
//! server", so background sync runs a round at once instead of waiting for
//! its timer. The channel carries no data: a missed message costs only
//! latency (the periodic sync catches up), which is why it can be this small.
//!
//! ```no_run
//! use std::sync::{Arc, Mutex};
//! use std::time::Duration;
//! use fieldsync_core::{BackgroundSync, HttpTransport, LiveChannel, Replica, SyncClient, SyncConfig, SyncEvent};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let replica = Arc::new(Mutex::new(Replica::open("phone.db", Default::default())?));
//! let (server, token) = ("https://sync.example.com", "device token");
//! let transport = HttpTransport::new(server, token, Duration::from_secs(30))?;
//! let client = Arc::new(SyncClient::new(replica, Arc::new(transport)));
//! let bg = BackgroundSync::start(client, SyncConfig::default(), Box::new(|_| {}));
//! let nudge = bg.notifier();
//! let live = LiveChannel::connect(server, token, "p1", move || nudge.notify(SyncEvent::Nudge))?;
//! // … dropping `live` closes the channel; dropping `bg` stops background sync.
//! # Ok(()) }
//! ```
//!
//! The thread connects, calls the callback once (the server sends nothing on
//! connect, and something may have happened while the link was down), then
//! once per message. It pings when the link is quiet and treats a missing
//! pong as a dead link (a phone's NAT mapping or a half-open TCP connection
//! would otherwise look connected forever). A failed or dropped connection is
//! retried with exponential backoff and jitter.
//!
//! TLS (`wss://`, from an `https://` server URL) is rustls with the *ring*
//! provider and rustls-platform-verifier, exactly as [`crate::HttpTransport`]:
//! one trust decision for both connections (the OS trust store, so a CA an
//! enterprise installs on its phones works), no extra crate (reqwest already
//! brings the verifier), and it cross-builds for Android and iOS with only a
//! C compiler. On Android the verifier needs the one-time JNI initialisation
//! the HTTP transport already needs (`rustls_platform_verifier::android`).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tungstenite::client::IntoClientRequest;
use tungstenite::http::Uri;
use tungstenite::{Message, WebSocket};

use crate::sync::backoff;
use crate::sync::credentials::DeviceToken;

/// Why a live channel could not be set up. Connection failures are not
/// errors: the channel retries them by itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LiveError {
    /// The server URL is not `http(s)://host[:port]` (or `ws(s)://`).
    #[error("server URL `{0}` is not http(s)://host[:port]; check the configured server")]
    BadUrl(String),
    /// TLS could not be set up (no usable trust store).
    #[error("TLS setup failed: {0}")]
    Tls(String),
}

/// Timing of the live channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveConfig {
    /// First reconnect delay; doubles per failed attempt.
    pub min_backoff: Duration,
    /// Reconnect delay cap.
    pub max_backoff: Duration,
    /// Ping after this long without a frame; no answer within as long again: the link is dead.
    pub ping_interval: Duration,
    /// Timeout of the TCP connect and of the handshake.
    pub connect_timeout: Duration,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(120),
            ping_interval: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(15),
        }
    }
}

/// A live channel: a thread keeping a WebSocket open and calling a callback
/// on every message. Closes when dropped.
pub struct LiveChannel {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    stop: AtomicBool,
    connected: AtomicBool,
    /// The open socket (a clone), so `drop` can unblock a read at once.
    socket: Mutex<Option<TcpStream>>,
    /// Wakes the backoff sleep on stop.
    wake: Condvar,
    wake_lock: Mutex<()>,
}

impl std::fmt::Debug for LiveChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveChannel").field("connected", &self.connected()).finish_non_exhaustive()
    }
}

struct Target {
    tls: bool,
    host: String,
    port: u16,
    url: String,
    /// Read at each connection: a token renewed meanwhile is used at the next.
    token: DeviceToken,
}

impl LiveChannel {
    /// Follow `project` on `server` (the URL given to [`crate::HttpTransport`],
    /// e.g. `https://sync.example.com`) with the device's `token`; call
    /// `on_message` once per (re)connection and once per notification.
    pub fn connect(
        server: &str,
        token: impl Into<DeviceToken>,
        project: &str,
        on_message: impl Fn() + Send + 'static,
    ) -> Result<LiveChannel, LiveError> {
        LiveChannel::connect_with(server, token, project, LiveConfig::default(), on_message)
    }

    /// [`Self::connect`] with explicit timing.
    pub fn connect_with(
        server: &str,
        token: impl Into<DeviceToken>,
        project: &str,
        config: LiveConfig,
        on_message: impl Fn() + Send + 'static,
    ) -> Result<LiveChannel, LiveError> {
        let target = target(server, token.into(), project)?;
        let tls = if target.tls { Some(tls_config()?) } else { None };
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            connected: AtomicBool::new(false),
            socket: Mutex::new(None),
            wake: Condvar::new(),
            wake_lock: Mutex::new(()),
        });
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("fieldsync-live".into())
            .spawn(move || run(&target, tls, config, &thread_shared, &on_message))
            .expect("the OS can start a thread");
        Ok(LiveChannel { shared, thread: Some(thread) })
    }

    /// Whether the WebSocket is open right now.
    pub fn connected(&self) -> bool {
        self.shared.connected.load(Ordering::Relaxed)
    }
}

impl Drop for LiveChannel {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(s) = self.shared.socket.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            let _ = s.shutdown(Shutdown::Both);
        }
        {
            let _guard = self.shared.wake_lock.lock().unwrap_or_else(|p| p.into_inner());
            self.shared.wake.notify_all();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The live channel's WebSocket URL for `project` on `server` (e.g.
/// `https://sync.example.com` → `wss://sync.example.com:443/v1/live?project=p1`),
/// for an app that opens the channel with its own WebSocket client (with
/// `Authorization: Bearer {token}`).
pub fn live_url(server: &str, project: &str) -> Result<String, LiveError> {
    Ok(target(server, DeviceToken::new(""), project)?.url)
}

fn target(server: &str, token: DeviceToken, project: &str) -> Result<Target, LiveError> {
    let bad = || LiveError::BadUrl(server.to_owned());
    let uri: Uri = server.trim_end_matches('/').parse().map_err(|_| bad())?;
    let tls = match uri.scheme_str() {
        Some("https" | "wss") => true,
        Some("http" | "ws") => false,
        _ => return Err(bad()),
    };
    let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(bad)?.to_owned();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let base = uri.path().trim_end_matches('/');
    let host_in_url = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.clone() };
    let url = format!(
        "{}://{host_in_url}:{port}{base}/v1/live?project={}",
        if tls { "wss" } else { "ws" },
        percent_encoding::utf8_percent_encode(project, QUERY_VALUE)
    );
    Ok(Target { tls, host: host.trim_start_matches('[').trim_end_matches(']').to_owned(), port, url, token })
}

/// What a query value keeps as it is: RFC 3986's unreserved characters; the rest is %-encoded.
pub(crate) const QUERY_VALUE: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

fn tls_config() -> Result<Arc<rustls::ClientConfig>, LiveError> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_platform_verifier())
        .map_err(|e| LiveError::Tls(e.to_string()))?
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A plain or TLS connection.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref(),
        }
    }
}

fn run(
    target: &Target,
    tls: Option<Arc<rustls::ClientConfig>>,
    config: LiveConfig,
    shared: &Shared,
    on_message: &dyn Fn(),
) {
    let mut failures: u32 = 0;
    while !shared.stop.load(Ordering::SeqCst) {
        match open(target, tls.as_ref(), config, shared) {
            Ok(ws) => {
                failures = 0;
                tracing::debug!(host = target.host, "live channel open");
                shared.connected.store(true, Ordering::Relaxed);
                // Whatever happened while the link was down: one round catches up.
                on_message();
                follow(ws, shared, on_message);
                shared.connected.store(false, Ordering::Relaxed);
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::debug!(host = target.host, failures, "live channel not open: {e}");
            }
        }
        *shared.socket.lock().unwrap_or_else(|p| p.into_inner()) = None;
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        // A dropped link is retried after the minimum delay; failed attempts back off.
        let (min, max) = (config.min_backoff.as_millis() as u64, config.max_backoff.as_millis() as u64);
        let delay = Duration::from_millis(backoff::delay_ms(failures, min, max, getrandom::u64().unwrap_or(0)));
        let guard = shared.wake_lock.lock().unwrap_or_else(|p| p.into_inner());
        if !shared.stop.load(Ordering::SeqCst) {
            let _ = shared.wake.wait_timeout(guard, delay);
        }
    }
}

/// Connect and handshake; the socket is registered first so `drop` can cut it.
fn open(
    target: &Target,
    tls: Option<&Arc<rustls::ClientConfig>>,
    config: LiveConfig,
    shared: &Shared,
) -> Result<WebSocket<Stream>, String> {
    let addrs = (target.host.as_str(), target.port).to_socket_addrs().map_err(|e| e.to_string())?;
    let mut last = "no address".to_owned();
    let mut tcp = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, config.connect_timeout) {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = e.to_string(),
        }
    }
    let tcp = tcp.ok_or(last)?;
    let _ = tcp.set_nodelay(true);
    tcp.set_read_timeout(Some(config.connect_timeout)).map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(config.connect_timeout)).map_err(|e| e.to_string())?;
    *shared.socket.lock().unwrap_or_else(|p| p.into_inner()) = Some(tcp.try_clone().map_err(|e| e.to_string())?);
    if shared.stop.load(Ordering::SeqCst) {
        return Err("stopped".into());
    }
    let stream = match tls {
        None => Stream::Plain(tcp),
        Some(config) => {
            let name = rustls::pki_types::ServerName::try_from(target.host.clone()).map_err(|e| e.to_string())?;
            let conn = rustls::ClientConnection::new(Arc::clone(config), name).map_err(|e| e.to_string())?;
            Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)))
        }
    };
    let mut request = target.url.as_str().into_client_request().map_err(|e| e.to_string())?;
    let bearer = format!("Bearer {}", target.token.get()).parse().map_err(|_| "the token is not a header value")?;
    request.headers_mut().insert("Authorization", bearer);
    let (ws, _) = tungstenite::client(request, stream).map_err(|e| e.to_string())?;
    ws.get_ref().tcp().set_read_timeout(Some(config.ping_interval)).map_err(|e| e.to_string())?;
    Ok(ws)
}

/// Read until the link drops or the channel stops.
fn follow(mut ws: WebSocket<Stream>, shared: &Shared, on_message: &dyn Fn()) {
    let mut awaiting_pong = false;
    while !shared.stop.load(Ordering::SeqCst) {
        match ws.read() {
            Ok(Message::Text(_) | Message::Binary(_)) => {
                awaiting_pong = false;
                on_message();
            }
            Ok(Message::Close(_)) => return,
            Ok(_) => awaiting_pong = false, // Ping (answered by tungstenite), Pong.
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) =>
            {
                if awaiting_pong {
                    return; // Quiet for two intervals and no pong: the link is dead.
                }
                awaiting_pong = true;
                if ws.send(Message::Ping(Vec::new().into())).is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
    let _ = ws.close(None);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_become_live_urls() {
        let t = target("https://sync.example.com/", "t".into(), "p 1/x").unwrap();
        assert_eq!((t.tls, t.host.as_str(), t.port), (true, "sync.example.com", 443));
        assert_eq!(t.url, "wss://sync.example.com:443/v1/live?project=p%201%2Fx");
        let t = target("http://127.0.0.1:8080", "t".into(), "p1").unwrap();
        assert_eq!((t.tls, t.port), (false, 8080));
        assert_eq!(t.url, "ws://127.0.0.1:8080/v1/live?project=p1");
        let t = target("http://[::1]:9/base", "t".into(), "p1").unwrap();
        assert_eq!((t.host.as_str(), t.url.as_str()), ("::1", "ws://[::1]:9/base/v1/live?project=p1"));
        assert!(target("ftp://x", "t".into(), "p").is_err());
        assert!(target("not a url", "t".into(), "p").is_err());
        assert_eq!(
            live_url("https://sync.example.com", "p1").unwrap(),
            "wss://sync.example.com:443/v1/live?project=p1"
        );
        assert!(matches!(live_url("sync.example.com", "p1"), Err(LiveError::BadUrl(_))));
    }

    #[test]
    fn tls_can_be_set_up() {
        tls_config().unwrap();
    }

    #[test]
    fn an_unreachable_server_is_retried_and_drop_stops_at_once() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener); // Nothing listens there now.
        let config = LiveConfig { min_backoff: Duration::from_millis(10), ..LiveConfig::default() };
        let live = LiveChannel::connect_with(&format!("http://127.0.0.1:{port}"), "t", "p", config, || {}).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert!(!live.connected());
        let started = std::time::Instant::now();
        drop(live);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
