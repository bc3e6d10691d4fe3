//! Liveness and readiness for load balancers and orchestrators:
//! `GET /health/live` answers while the process does; `GET /health/ready`
//! answers `200` only while the store is reachable and takes writes (a write
//! in a transaction that is rolled back), `503` with the reason otherwise.
//! `GET /v1/health` (older, plain `ok`) stays an alias of liveness.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::sync::Mutex;

use crate::hub::Hub;

/// How long one probe's answer is reused: a flood of probes costs the store
/// one write transaction a second at most.
const PROBE_REUSED_FOR: Duration = Duration::from_secs(1);

/// The JSON body of both probes.
#[derive(Debug, Serialize)]
struct Health<'a> {
    /// `live`, `ready` or `not_ready`.
    status: &'a str,
    /// Why not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

fn answer(status: StatusCode, body: &Health<'_>) -> Response {
    let json = serde_json::to_vec(body).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json")], json).into_response()
}

/// `GET /health/live`.
pub async fn live() -> Response {
    answer(StatusCode::OK, &Health { status: "live", reason: None })
}

/// A probe's answer and when it was made.
type Probed = Option<(Instant, Result<(), String>)>;

/// The readiness probe of one hub, with its last answer.
#[derive(Clone)]
pub struct Readiness {
    hub: Arc<Hub>,
    last: Arc<Mutex<Probed>>,
}

impl Readiness {
    /// Probe `hub`'s store.
    pub fn new(hub: Arc<Hub>) -> Readiness {
        Readiness { hub, last: Arc::new(Mutex::new(None)) }
    }

    /// Whether the store takes writes now, or why not. Probes at once wait
    /// for one check and share its answer.
    pub async fn check(&self) -> Result<(), String> {
        let mut last = self.last.lock().await;
        if let Some((at, result)) = last.as_ref()
            && at.elapsed() < PROBE_REUSED_FOR
        {
            return result.clone();
        }
        let hub = Arc::clone(&self.hub);
        let result = match tokio::task::spawn_blocking(move || hub.check_ready()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(format!("the probe failed: {e}")),
        };
        if let Err(reason) = &result {
            tracing::warn!(%reason, "not ready: the store cannot be written");
        }
        *last = Some((Instant::now(), result.clone()));
        result
    }
}

/// `GET /health/ready`.
pub async fn ready(readiness: Readiness) -> Response {
    match readiness.check().await {
        Ok(()) => answer(StatusCode::OK, &Health { status: "ready", reason: None }),
        Err(reason) => answer(StatusCode::SERVICE_UNAVAILABLE, &Health { status: "not_ready", reason: Some(&reason) }),
    }
}
