//! The operator's listener, apart from the public sync port
//! (`fieldsync serve --metrics-listen ADDR`): `GET /metrics` (Prometheus
//! text, or OpenMetrics when the scraper asks for it) and the health probes.
//! Bind it to an address only the monitoring can reach.

use std::future::Future;
use std::io;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::health::{self, Readiness};
use crate::hub::Hub;

/// The content type of the Prometheus text format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The content type of the OpenMetrics text format.
const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone)]
struct MetricsState {
    hub: Arc<Hub>,
    readiness: Readiness,
}

/// The routes: `/metrics`, `/health/live`, `/health/ready`.
pub fn metrics_router(hub: Arc<Hub>) -> Router {
    let state = MetricsState { readiness: Readiness::new(Arc::clone(&hub)), hub };
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(|State(s): State<MetricsState>| health::ready(s.readiness)))
        .with_state(state)
}

/// Serve [`metrics_router`] on `listener` until `shutdown` completes.
pub async fn serve_metrics(
    listener: TcpListener,
    hub: Arc<Hub>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    axum::serve(listener, metrics_router(hub)).with_graceful_shutdown(shutdown).await
}

async fn metrics(State(state): State<MetricsState>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let metrics = state.hub.metrics();
    if accept.contains("application/openmetrics-text") {
        ([(header::CONTENT_TYPE, OPENMETRICS_TEXT)], metrics.encode_openmetrics()).into_response()
    } else {
        ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], metrics.encode_prometheus()).into_response()
    }
}
