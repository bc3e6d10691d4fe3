//! The HTTP face of the hub (axum on tokio): `POST /v1/sync`, the live
//! channel `GET /v1/live?project=P` (WebSocket) and `GET /v1/health`.
//! Everything here is transport: the protocol is [`Hub`]'s.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use fieldsync_core::protocol::{self, ErrorBody};
use http_body_util::BodyExt;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};

use crate::error::HubError;
use crate::hub::Hub;

#[derive(Clone)]
struct AppState {
    hub: Arc<Hub>,
    stop: watch::Receiver<bool>,
}

/// The routes, for embedding the hub in another axum app. `stop` turning
/// true closes the live channels.
pub fn router(hub: Arc<Hub>, stop: watch::Receiver<bool>) -> Router {
    Router::new()
        .route("/v1/sync", post(sync))
        .route("/v1/live", get(live))
        .route("/v1/health", get(|| async { "ok" }))
        .fallback(|| async {
            error_response(StatusCode::NOT_FOUND, "not_found", "no such endpoint; see docs/protocol.md")
        })
        .layer(DefaultBodyLimit::max(protocol::MAX_BODY_BYTES))
        .with_state(AppState { hub, stop })
}

/// Serve the hub on `listener` until `shutdown` completes, then stop
/// accepting, close the live channels and let rounds in flight finish. A
/// round's changes are committed before its response is sent, so nothing a
/// device saw acknowledged is lost.
pub async fn serve(
    listener: TcpListener,
    hub: Arc<Hub>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let app = router(hub, stop_rx);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        })
        .await
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
    let body = ErrorBody { error: code.to_owned(), message: message.to_owned(), refusals: Vec::new() };
    json_error(status, &body)
}

fn json_error(status: StatusCode, body: &ErrorBody) -> Response {
    let json = serde_json::to_vec(body).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json")], json).into_response()
}

impl IntoResponse for HubError {
    fn into_response(self) -> Response {
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

async fn sync(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    match sync_inner(&state.hub, &headers, body).await {
        Ok(bytes) => (StatusCode::OK, [(header::CONTENT_TYPE, protocol::CONTENT_TYPE)], bytes).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn sync_inner(hub: &Arc<Hub>, headers: &HeaderMap, body: Body) -> Result<Vec<u8>, HubError> {
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
    // Before reading a byte of the body.
    if let Some(len) = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        && len > protocol::MAX_BODY_BYTES as u64
    {
        return Err(too_large(&len));
    }
    let limited = http_body_util::Limited::new(body, protocol::MAX_BODY_BYTES);
    let bytes = match limited.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large(&"more than that")),
        Err(e) => return Err(HubError::Malformed(format!("the body could not be read: {e}"))),
    };
    let token = bearer(headers).to_owned();
    let hub = Arc::clone(hub);
    tokio::task::spawn_blocking(move || hub.sync(&token, &bytes, crate::now_ms()))
        .await
        .unwrap_or_else(|e| Err(HubError::Storage(crate::store::StoreError::Io(std::io::Error::other(e.to_string())))))
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
    let token = bearer(&headers).to_owned();
    let hub = Arc::clone(&state.hub);
    let checked = {
        let project = project.clone();
        tokio::task::spawn_blocking(move || hub.authorize_live(&token, &project)).await
    };
    match checked {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return e.into_response(),
        Err(e) => {
            return HubError::Storage(crate::store::StoreError::Io(std::io::Error::other(e.to_string())))
                .into_response();
        }
    }
    // Subscribe before answering, so nothing committed after the handshake is missed.
    let rx = state.hub.subscribe(&project);
    let stop = state.stop.clone();
    ws.on_upgrade(move |socket| live_loop(socket, rx, stop))
}

async fn live_loop(mut socket: WebSocket, mut rx: broadcast::Receiver<u64>, mut stop: watch::Receiver<bool>) {
    if *stop.borrow() {
        return;
    }
    loop {
        tokio::select! {
            seq = rx.recv() => match seq {
                Ok(seq) => {
                    if socket.send(Message::Text(seq.to_string().into())).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {} // Pings are answered by the WebSocket layer; nothing else is expected.
            },
            _ = stop.changed() => {
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
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
