//! One log line per HTTP request, and the request's metrics: a middleware
//! that gives each request an id (returned as `x-request-id`), runs it in a
//! `request` span (request id, method, route; the handlers record the device
//! and the project in it once known), then logs its status, duration and
//! body bytes and counts them in [`Metrics`].
//!
//! The server only emits `tracing` events; the process that runs it chooses
//! where they go (`fieldsync serve` sets up the subscriber). No token and no
//! password is ever written: a failed authentication is logged with its
//! reason and, when known, the device's id.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::body::{Body, HttpBody};
use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::BodyExt;
use tracing::Instrument;
use tracing::field::Empty;

use crate::error::HubError;
use crate::metrics::Metrics;
use crate::store::StoreError;

/// The response header that carries the request's id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The longest request id taken from a client or proxy; a longer or odd one is replaced.
const MAX_REQUEST_ID: usize = 64;

/// The routes by name, so that a label never takes a value a client chose.
const ROUTES: [&str; 8] = [
    "/v1/sync",
    "/v1/live",
    "/v1/projects/{project}/photos/{sha256}/upload",
    "/v1/projects/{project}/photos/{sha256}",
    "/v1/health",
    "/health/live",
    "/health/ready",
    "/metrics",
];

/// The route label of a request: its matched route, or `unmatched`.
pub fn route_label(matched: Option<&MatchedPath>) -> &'static str {
    matched.and_then(|m| ROUTES.iter().find(|r| **r == m.as_str())).copied().unwrap_or("unmatched")
}

/// The id a proxy gave the request, if it is a short plain token; else a new random one.
fn request_id(given: Option<&HeaderValue>) -> String {
    let plain = |s: &&str| {
        !s.is_empty()
            && s.len() <= MAX_REQUEST_ID
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    match given.and_then(|v| v.to_str().ok()).filter(plain) {
        Some(id) => id.to_owned(),
        None => {
            let mut b = [0u8; 8];
            getrandom::fill(&mut b).expect("the OS has randomness");
            hex::encode(b)
        }
    }
}

/// The middleware (`axum::middleware::from_fn_with_state` with the hub's metrics).
pub async fn log_request(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = route_label(request.extensions().get::<MatchedPath>());
    let id = request_id(request.headers().get(REQUEST_ID_HEADER));
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        route = %route,
        device = Empty,
        project = Empty,
    );
    // Count the body's bytes as the handler reads them.
    let received = Arc::new(AtomicU64::new(0));
    let (parts, body) = request.into_parts();
    let counter = Arc::clone(&received);
    let body = Body::new(body.map_frame(move |frame| {
        if let Some(data) = frame.data_ref() {
            counter.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        frame
    }));
    let mut response = next.run(Request::from_parts(parts, body)).instrument(span.clone()).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let took = started.elapsed();
    let status = response.status().as_u16();
    let bytes_in = received.load(Ordering::Relaxed);
    let bytes_out = response.body().size_hint().exact().unwrap_or(0);
    metrics.http_response(route, status, took, bytes_in, bytes_out);
    span.in_scope(|| {
        // Milliseconds to the microsecond: short in a line, a number in JSON.
        let duration_ms = (took.as_secs_f64() * 1e6).round() / 1e3;
        tracing::info!(status, duration_ms, bytes_in, bytes_out, "request");
    });
    response
}

/// Record the device a request is made by in its span (once authenticated).
pub fn record_device(device: &str) {
    tracing::Span::current().record("device", tracing::field::display(device));
}

/// Record the project a request is about in its span.
pub fn record_project(project: &str) {
    tracing::Span::current().record("project", tracing::field::display(project));
}

/// Log why a request failed when an operator must hear of it: the cause of
/// every 500, every failed authentication and every refused authorization.
/// The error's words never hold a token (they name a device by its id).
pub fn log_failure(e: &HubError) {
    match e {
        HubError::Storage(cause @ StoreError::Unavailable(_)) => {
            tracing::warn!(%cause, "store unavailable: answered 503, reconnecting")
        }
        HubError::Storage(cause) if cause.is_disk_full() => {
            tracing::error!(%cause, "the server's disk is full: answered 507; free space and the devices finish on their own")
        }
        HubError::Storage(cause) => tracing::error!(%cause, "internal error: the store failed"),
        HubError::Unauthorized(reason) => tracing::warn!(%reason, "authentication failed"),
        HubError::Forbidden(reason) => tracing::warn!(%reason, "not authorized"),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxys_plain_request_id_is_kept_and_anything_else_replaced() {
        let id = |v: &str| request_id(Some(&HeaderValue::from_str(v).unwrap()));
        assert_eq!(id("lb-7f3a.2_x"), "lb-7f3a.2_x");
        for odd in ["", "a b", "a\"b", &"x".repeat(MAX_REQUEST_ID + 1)] {
            let made = id(odd);
            assert!(made.len() == 16 && made.bytes().all(|b| b.is_ascii_hexdigit()), "{odd:?} → {made}");
        }
        assert_ne!(request_id(None), request_id(None));
    }
}
