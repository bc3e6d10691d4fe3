//! The HTTP face of the hub (axum on tokio): `POST /v1/sync`, the live
//! channel `GET /v1/live?project=P` (WebSocket), the health probes
//! (`GET /health/live`, `GET /health/ready`, `GET /v1/health`), photo bytes
//! (`PUT /v1/projects/{project}/photos/{sha256}/upload`, `GET
//! /v1/projects/{project}/photos/{sha256}`, see `fieldsync_core::photo_wire`), each request
//! logged and counted ([`crate::request_log`]). Everything here is
//! transport: the protocol is [`Hub`]'s.

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use fieldsync_core::protocol::{self, ErrorBody};
use http_body_util::BodyExt;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, oneshot, watch};
use tokio::time::{Instant, Sleep};
use tracing::Instrument;

use crate::error::HubError;
use crate::health::{self, Readiness};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::request_log::{self, record_device, record_project};
use crate::throttle::{LiveChannels, RateLimiter};

/// The limits of the HTTP layer: connections, timeouts, request rates and
/// the live channel. The defaults leave normal sync alone; `fieldsync serve`
/// sets the ones an operator would tune.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeOptions {
    /// Connections open at once (live channels included); a further one is
    /// answered `503 busy` and closed.
    pub max_connections: usize,
    /// A request's head must arrive within this, and a kept-alive connection
    /// may wait this long for its next request (a slowloris is dropped).
    pub header_timeout: Duration,
    /// A request's body must arrive within this once its head has (`408`).
    pub body_timeout: Duration,
    /// A connection whose writes make no progress for this long (a client
    /// that does not take its response) is dropped.
    pub write_timeout: Duration,
    /// Requests one device may make per minute, sustained (0: no limit);
    /// over it, `429 rate_limited` with `Retry-After`.
    pub requests_per_minute: u32,
    /// Requests one device may make at once after a quiet spell.
    pub burst: u32,
    /// Requests one device may have in flight at once (`429` over it).
    pub max_requests_per_device: usize,
    /// Rounds decoded and served at once; more wait their turn (each may
    /// take some 50 MB while it is decoded).
    pub max_rounds_at_once: usize,
    /// Live channels one device may hold; opening one more closes its oldest.
    pub max_live_per_device: usize,
    /// The server pings each live channel this often, and checks again that
    /// its device may still follow the project (a member removed from it).
    pub live_ping_interval: Duration,
    /// How often [`serve_with`] looks for devices another process revoked
    /// (`fieldsync admin`, another server) to close their live channels; one
    /// revoked through this hub closes them at once.
    pub revocation_poll_interval: Duration,
    /// A live channel that sent nothing (not even a pong) for this long is closed.
    pub live_idle_timeout: Duration,
    /// Largest message or frame a device may send on a live channel.
    pub live_max_message_bytes: usize,
    /// Photo chunks (up to 1 MiB each) read and stored at once; more wait their turn.
    pub max_photo_chunks_at_once: usize,
    /// How often [`serve_with`] removes the photo uploads no section names
    /// ([`Hub::collect_photos`]).
    pub photo_collect_interval: Duration,
    /// How old an unreferenced photo upload must be before it is removed.
    pub photo_grace: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            max_connections: 1024,
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(300),
            write_timeout: Duration::from_secs(120),
            requests_per_minute: 1200,
            burst: 600,
            max_requests_per_device: 4,
            max_rounds_at_once: 4,
            max_live_per_device: 4,
            live_ping_interval: Duration::from_secs(20),
            revocation_poll_interval: Duration::from_secs(1),
            live_idle_timeout: Duration::from_secs(75),
            live_max_message_bytes: 1024,
            max_photo_chunks_at_once: 16,
            photo_collect_interval: Duration::from_secs(3600),
            photo_grace: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

#[derive(Clone)]
struct AppState {
    hub: Arc<Hub>,
    stop: watch::Receiver<bool>,
    options: Arc<ServeOptions>,
    rate: RateLimiter,
    rounds: Arc<Semaphore>,
    photo_chunks: Arc<Semaphore>,
    live: LiveChannels,
    readiness: Readiness,
}

/// The routes with the default [`ServeOptions`], for embedding the hub in
/// another axum app. `stop` turning true closes the live channels.
pub fn router(hub: Arc<Hub>, stop: watch::Receiver<bool>) -> Router {
    router_with(hub, stop, ServeOptions::default())
}

/// The routes with `options` (the connection-level ones, `max_connections`
/// and the timeouts of heads and writes, are [`serve_with`]'s).
pub fn router_with(hub: Arc<Hub>, stop: watch::Receiver<bool>, options: ServeOptions) -> Router {
    let metrics = Arc::clone(hub.metrics());
    let state = AppState {
        readiness: Readiness::new(Arc::clone(&hub)),
        hub,
        stop,
        rate: RateLimiter::new(options.requests_per_minute, options.burst, options.max_requests_per_device),
        rounds: Arc::new(Semaphore::new(options.max_rounds_at_once.max(1))),
        photo_chunks: Arc::new(Semaphore::new(options.max_photo_chunks_at_once.max(1))),
        live: LiveChannels::new(options.max_live_per_device),
        options: Arc::new(options),
    };
    Router::new()
        .route("/v1/sync", post(sync))
        .route("/v1/live", get(live))
        .route("/v1/projects/{project}/photos/{sha256}/upload", put(put_photo))
        .route("/v1/projects/{project}/photos/{sha256}", get(get_photo))
        // The older liveness route, kept for the clients and checks that use it.
        .route("/v1/health", get(|| async { "ok" }))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(|State(s): State<AppState>| health::ready(s.readiness)))
        .fallback(|| async {
            error_response(StatusCode::NOT_FOUND, "not_found", "no such endpoint; see docs/protocol.md")
        })
        .layer(DefaultBodyLimit::max(protocol::MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(metrics, request_log::log_request))
        .with_state(state)
}

/// Serve the hub on `listener` with the default [`ServeOptions`] until
/// `shutdown` completes (see [`serve_with`]).
pub async fn serve(
    listener: TcpListener,
    hub: Arc<Hub>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_with(listener, hub, shutdown, ServeOptions::default()).await
}

/// Serve the hub on `listener` until `shutdown` completes, then stop
/// accepting, close the live channels and let rounds in flight finish. A
/// round's changes are committed before its response is sent, so nothing a
/// device saw acknowledged is lost.
pub async fn serve_with(
    listener: TcpListener,
    hub: Arc<Hub>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: ServeOptions,
) -> io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let connections = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let (header_timeout, write_timeout) = (options.header_timeout, options.write_timeout);
    let metrics = Arc::clone(hub.metrics());
    // Weak: an aborted task must not drop the last hub on a runtime thread
    // (a PostgreSQL store's blocking client may not be dropped there).
    let revocations = tokio::spawn(look_for_revocations(Arc::downgrade(&hub), options.revocation_poll_interval));
    let photos =
        tokio::spawn(collect_photos(Arc::downgrade(&hub), options.photo_collect_interval, options.photo_grace));
    let app = router_with(hub, stop_rx.clone(), options);
    // Every connection task holds a clone; the server has stopped when all are gone.
    let (done_tx, done_rx) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors, say: wait a little rather than spin.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            tokio::spawn(refuse_busy(stream, done_rx.clone(), Arc::clone(&metrics)));
            continue;
        };
        let io = hyper_util::rt::TokioIo::new(TimedIo::new(stream, write_timeout, permit));
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let mut stop = stop_rx.clone();
        let done = done_rx.clone();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(header_timeout);
            let mut conn = pin!(builder.serve_connection(io, service).with_upgrades());
            let stopping = async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            };
            tokio::select! {
                _ = conn.as_mut() => {}
                () = stopping => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(done);
        });
    }
    drop(listener);
    revocations.abort();
    photos.abort();
    let _ = stop_tx.send(true);
    drop(done_rx);
    done_tx.closed().await;
    Ok(())
}

/// Every `interval`, announce the devices other processes revoked (see
/// [`Hub::look_for_revocations`]); a store that fails is tried again next time.
async fn look_for_revocations(hub: Weak<Hub>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(hub) = hub.upgrade() else { return };
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || hub.look_for_revocations()).await {
            tracing::warn!(error = %e, "cannot look for revoked devices");
        }
    }
}

/// Every `interval`, remove the photo uploads older than `grace` that no
/// section names (see [`Hub::collect_photos`]).
async fn collect_photos(hub: Weak<Hub>, interval: Duration, grace: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(hub) = hub.upgrade() else { return };
        let grace_ms = grace.as_millis() as u64;
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || hub.collect_photos(crate::now_ms(), grace_ms)).await {
            tracing::warn!(error = %e, "cannot remove unreferenced photos");
        }
    }
}

/// The route label of a connection answered busy before any route was read.
pub const CONNECTION_CAP_ROUTE: &str = "connection_cap";

/// Answer a connection over the cap `503 busy` and close it.
async fn refuse_busy(mut stream: TcpStream, done: watch::Receiver<()>, metrics: Arc<Metrics>) {
    let started = Instant::now();
    let e = HubError::Busy { message: "the server serves as many connections as it may".into(), retry_after_s: 1 };
    let json = serde_json::to_vec(&e.body()).unwrap_or_default();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        json.len()
    );
    let answer = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&json).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), answer).await;
    metrics.http_response(CONNECTION_CAP_ROUTE, 503, started.elapsed(), 0, json.len() as u64);
    drop(done);
}

/// A connection's socket with a deadline on stalled writes, holding its
/// place under the connection cap for as long as it lives (an upgraded live
/// channel included).
struct TimedIo {
    stream: TcpStream,
    write_timeout: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
    _permit: OwnedSemaphorePermit,
}

impl TimedIo {
    fn new(stream: TcpStream, write_timeout: Duration, permit: OwnedSemaphorePermit) -> TimedIo {
        TimedIo { stream, write_timeout, stalled: None, _permit: permit }
    }

    /// A write made no progress: fail once it has made none for the timeout.
    fn stall<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let timeout = self.write_timeout;
        let stalled = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the client takes nothing"))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn progress<T>(&mut self, p: Poll<io::Result<T>>, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match p {
            Poll::Pending => self.stall(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl AsyncRead for TimedIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TimedIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let p = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.progress(p, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let p = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.progress(p, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let p = Pin::new(&mut self.stream).poll_flush(cx);
        self.progress(p, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Completes on Ctrl-C or SIGTERM: the `shutdown` to pass to [`serve`] in a
/// server process.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body =
        ErrorBody { error: code.to_owned(), message: message.to_owned(), refusals: Vec::new(), retry_after_s: None };
    json_error(status, &body)
}

fn json_error(status: StatusCode, body: &ErrorBody) -> Response {
    let json = serde_json::to_vec(body).unwrap_or_default();
    let mut response = (status, [(header::CONTENT_TYPE, "application/json")], json).into_response();
    if let Some(s) = body.retry_after_s {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    response
}

impl IntoResponse for HubError {
    fn into_response(self) -> Response {
        request_log::log_failure(&self);
        let status = StatusCode::from_u16(self.status().0).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        json_error(status, &self.body())
    }
}

fn bearer(headers: &HeaderMap) -> &str {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("")
}

/// Run `f` on the blocking pool (the store is synchronous), in the request's span.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, HubError> + Send + 'static) -> Result<T, HubError> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
        .await
        .unwrap_or_else(|e| Err(HubError::Storage(crate::store::StoreError::Io(io::Error::other(e.to_string())))))
}

fn throttled(e: crate::throttle::Throttled) -> HubError {
    HubError::RateLimited { retry_after_s: e.retry_after_s(), message: e.to_string() }
}

async fn sync(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    match sync_inner(&state, &headers, body).await {
        Ok(bytes) => (StatusCode::OK, [(header::CONTENT_TYPE, protocol::CONTENT_TYPE)], bytes).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn sync_inner(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Vec<u8>, HubError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if !media_type.eq_ignore_ascii_case(protocol::CONTENT_TYPE) {
        return Err(HubError::Malformed(format!(
            "Content-Type `{content_type}` is not served; send `{}`",
            protocol::CONTENT_TYPE
        )));
    }
    let too_large = |n: &dyn std::fmt::Display| {
        HubError::TooLarge(format!(
            "the body is {n} bytes, over the limit of {}; upload fewer changes per round",
            protocol::MAX_BODY_BYTES
        ))
    };
    // Before reading a byte of the body: its size, the token, the device's rate.
    if let Some(len) = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        && len > protocol::MAX_BODY_BYTES as u64
    {
        return Err(too_large(&len));
    }
    let (token, _in_flight) = admitted(state, headers).await?;
    let limited = http_body_util::Limited::new(body, protocol::MAX_BODY_BYTES);
    let bytes = match tokio::time::timeout(state.options.body_timeout, limited.collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large(&"more than that")),
        Ok(Err(e)) => return Err(HubError::Malformed(format!("the body could not be read: {e}"))),
        Err(_) => {
            return Err(HubError::Timeout(format!(
                "the body did not arrive within {} s; send it at once after the head",
                state.options.body_timeout.as_secs()
            )));
        }
    };
    // Decoding takes memory: a few rounds at a time, the others wait their turn.
    let _turn = Arc::clone(&state.rounds)
        .acquire_owned()
        .await
        .map_err(|_| HubError::Busy { message: "the server is stopping".into(), retry_after_s: 1 })?;
    let hub = Arc::clone(&state.hub);
    blocking(move || hub.sync(&token, &bytes, crate::now_ms())).await
}

/// A photo chunk's place: `?offset=N&size=T` (upload), `?offset=N&length=M` (download).
#[derive(Deserialize)]
struct ChunkQuery {
    offset: u64,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    length: u64,
}

/// The device behind `headers`' token, admitted under its request rate.
async fn admitted(state: &AppState, headers: &HeaderMap) -> Result<(String, crate::throttle::InFlight), HubError> {
    let token = bearer(headers).to_owned();
    let device = {
        let (hub, token) = (Arc::clone(&state.hub), token.clone());
        blocking(move || hub.authenticate(&token)).await?
    };
    record_device(&device);
    let in_flight = state.rate.admit(&device, Instant::now().into_std(), true).map_err(throttled)?;
    Ok((token, in_flight))
}

fn chunk_query(query: Result<Query<ChunkQuery>, QueryRejection>) -> Result<ChunkQuery, HubError> {
    query.map(|q| q.0).map_err(|e| HubError::Malformed(format!("{e}; see docs/protocol.md, \"Photos\"")))
}

async fn put_photo(
    State(state): State<AppState>,
    Path((project, sha256)): Path<(String, String)>,
    query: Result<Query<ChunkQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let served = async {
        let q = chunk_query(query)?;
        record_project(&project);
        let (token, _in_flight) = admitted(&state, &headers).await?;
        // A chunk takes up to 1 MiB while it is read and stored: a few at a time.
        let _turn = Arc::clone(&state.photo_chunks)
            .acquire_owned()
            .await
            .map_err(|_| HubError::Busy { message: "the server is stopping".into(), retry_after_s: 1 })?;
        let limited = http_body_util::Limited::new(body, fieldsync_core::MAX_PHOTO_CHUNK_BYTES);
        let bytes = match tokio::time::timeout(state.options.body_timeout, limited.collect()).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(HubError::TooLarge(format!(
                    "a photo chunk is at most {} bytes; send smaller chunks",
                    fieldsync_core::MAX_PHOTO_CHUNK_BYTES
                )));
            }
            Ok(Err(e)) => return Err(HubError::Malformed(format!("the chunk could not be read: {e}"))),
            Err(_) => return Err(HubError::Timeout("the chunk did not arrive in time; send smaller chunks".into())),
        };
        let hub = Arc::clone(&state.hub);
        blocking(move || hub.put_photo_chunk(&token, &project, &sha256, q.size, q.offset, &bytes, crate::now_ms()))
            .await
    };
    match served.await {
        Ok(upload) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_vec(&upload).unwrap_or_default(),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn get_photo(
    State(state): State<AppState>,
    Path((project, sha256)): Path<(String, String)>,
    query: Result<Query<ChunkQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let served = async {
        let q = chunk_query(query)?;
        record_project(&project);
        let (token, _in_flight) = admitted(&state, &headers).await?;
        let hub = Arc::clone(&state.hub);
        blocking(move || hub.photo_chunk(&token, &project, &sha256, q.offset, q.length)).await
    };
    match served.await {
        Ok(chunk) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream")),
                (HeaderName::from_static(fieldsync_core::photo_wire::PHOTO_SIZE_HEADER), HeaderValue::from(chunk.size)),
            ],
            chunk.bytes,
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// The live channel's query string.
#[derive(Deserialize)]
struct LiveQuery {
    project: String,
}

async fn live(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<LiveQuery>, QueryRejection>,
    ws: WebSocketUpgrade,
) -> Response {
    let Ok(Query(LiveQuery { project })) = query else {
        return HubError::Malformed("name the project: /v1/live?project=<id>".into()).into_response();
    };
    record_project(&project);
    let token = bearer(&headers).to_owned();
    let checked = {
        let (hub, token, project) = (Arc::clone(&state.hub), token.clone(), project.clone());
        blocking(move || hub.authorize_live(&token, &project)).await
    };
    let device = match checked {
        Ok(device) => device,
        Err(e) => return e.into_response(),
    };
    record_device(&device);
    if let Err(e) = state.rate.admit(&device, Instant::now().into_std(), false) {
        return throttled(e).into_response();
    }
    // Subscribe before answering, so nothing committed after the handshake is
    // missed, nor a revocation.
    let rx = state.hub.subscribe(&project);
    let told = state.hub.live_announced(&project);
    let revoked = state.hub.revocations();
    let (slot, replaced) = state.live.register(&device);
    let channel = Channel { state: state.clone(), token, project, device, _slot: slot };
    let max = state.options.live_max_message_bytes;
    // The channel's own events stay in its request's span.
    let span = tracing::Span::current();
    // A channel carries a few bytes a minute: small buffers (tungstenite's
    // default read buffer of 128 KiB was 93 % of an idle channel's memory).
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .on_upgrade(move |socket| channel.run(socket, (rx, told), revoked, replaced).instrument(span))
}

/// One live channel.
struct Channel {
    state: AppState,
    token: String,
    project: String,
    device: String,
    _slot: crate::throttle::LiveSlot,
}

/// Why the server closes a live channel (the close frame's code and reason).
fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame { code, reason: reason.into() }))
}

/// The close code for a channel closed by policy (revoked, replaced, idle).
const POLICY: u16 = 1008;

impl Channel {
    async fn run(
        self,
        mut socket: WebSocket,
        // The feed's notices, and the end the device was last told of (or passed over).
        (mut rx, mut told): (broadcast::Receiver<u64>, u64),
        mut revoked: broadcast::Receiver<String>,
        mut replaced: oneshot::Receiver<()>,
    ) {
        let mut stop = self.state.stop.clone();
        if *stop.borrow() {
            return;
        }
        let metrics = Arc::clone(self.state.hub.metrics());
        let _open = metrics.live_channel_opened();
        let options = Arc::clone(&self.state.options);
        let mut ping =
            tokio::time::interval_at(Instant::now() + options.live_ping_interval, options.live_ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut heard = Instant::now();
        let goodbye = loop {
            tokio::select! {
                seq = rx.recv() => match seq {
                    Ok(seq) => {
                        let wanted = self.state.hub.live_notice_wanted(&self.device, &self.project, told, seq);
                        told = told.max(seq);
                        if !wanted {
                            continue;
                        }
                        // Before the device can read it and start its round.
                        self.state.hub.live_notice_sent(&self.device, &self.project);
                        if socket.send(Message::Text(seq.to_string().into())).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                incoming = socket.recv() => match incoming {
                    // Over the size limit, or anything else unreadable: the socket is closed.
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                    // Pings are answered by the WebSocket layer; nothing else is expected.
                    Some(Ok(_)) => heard = Instant::now(),
                },
                id = revoked.recv() => match id {
                    Ok(id) if id == self.device => break close(POLICY, "device revoked"),
                    Ok(_) => {}
                    // Missed some: check this device as at a ping.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        if let Some(why) = self.may_not_follow().await {
                            break why;
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = &mut replaced => {
                    break close(POLICY, "replaced by a newer live channel of this device");
                }
                _ = ping.tick() => {
                    if heard.elapsed() >= options.live_idle_timeout {
                        break close(POLICY, "nothing heard from the device; reconnect");
                    }
                    if let Some(why) = self.may_not_follow().await {
                        break why;
                    }
                    if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                        return;
                    }
                }
                _ = stop.changed() => break Message::Close(None),
            }
        };
        if let Message::Close(Some(frame)) = &goodbye {
            tracing::info!(reason = %frame.reason, "live channel closed by the server");
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), socket.send(goodbye)).await;
    }

    /// Why the device may no longer follow the project, if it may not (its
    /// token revoked by another process, its user removed from the project).
    async fn may_not_follow(&self) -> Option<Message> {
        let (hub, token, project) = (Arc::clone(&self.state.hub), self.token.clone(), self.project.clone());
        match blocking(move || hub.authorize_live(&token, &project)).await {
            Ok(_) | Err(HubError::Storage(_)) => None,
            Err(e) => Some(close(POLICY, &e.to_string().chars().take(100).collect::<String>())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_project_is_read_percent_decoded() {
        let query = |uri: &str| Query::<LiveQuery>::try_from_uri(&uri.parse().unwrap()).map(|q| q.0.project);
        assert_eq!(query("/v1/live?x=1&project=build%20out%2F1").unwrap(), "build out/1");
        assert_eq!(query("/v1/live?project=build+out%2f%C3%A9").unwrap(), "build out/é");
        assert!(query("/v1/live?x=1").is_err());
        assert!(query("/v1/live").is_err());
    }
}
