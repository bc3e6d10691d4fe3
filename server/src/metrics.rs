//! The hub's Prometheus metrics: one [`Metrics`] per [`crate::Hub`], shared by
//! the round (phases, changes, conflicts), the store (time per operation) and
//! the HTTP layer (responses, bytes, live channels). Every metric is
//! documented in `docs/operations.md`; [`crate::metrics_listener`] serves them.
//!
//! Recording is a few atomic operations or a short lock, never I/O, so it is
//! always on, in the simulator too (which ignores it).

use std::time::Duration;

use fieldsync_core::{ConflictKind, Rule};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Bucket bounds of every latency histogram, in seconds: 0.1 ms to 10 s with
/// at most 1.5× between neighbours (1, 1.5, 2, 3, 4, 5, 7 per decade), so
/// that P50, P90 and P99 read within a bucket's width of the truth.
pub const LATENCY_BUCKETS: [f64; 36] = [
    0.0001, 0.00015, 0.0002, 0.0003, 0.0004, 0.0005, 0.0007, //
    0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.007, //
    0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.07, //
    0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7, //
    1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.0, //
    10.0,
];

/// A phase of the hub's side of a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Conflict detection: the uploaded changes decoded and checked, the
    /// sections they touch loaded and the changes merged into them.
    Detection,
    /// Resolution: the rules over the merge (`validate`) judging the new writes.
    Resolution,
    /// Commit: the round's writes stored in one transaction.
    Commit,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Detection => "detection",
            Phase::Resolution => "resolution",
            Phase::Commit => "commit",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PhaseLabels {
    phase: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RuleLabels {
    rule: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ConflictLabels {
    kind: &'static str,
    rule: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResponseLabels {
    route: &'static str,
    status: u16,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The refusal label of a change refused for no rule of the domain (a
/// limit, or a change that rewrites a record).
pub const NO_RULE: &str = "none";

/// Every metric of one hub.
pub struct Metrics {
    registry: Registry,
    round: Histogram,
    phases: HistogramFamily<PhaseLabels>,
    edit_to_visible: Histogram,
    accepted: Counter,
    refused: Family<RuleLabels, Counter>,
    conflicts: Family<ConflictLabels, Counter>,
    store: HistogramFamily<OperationLabels>,
    live_open: Gauge,
    responses: Family<ResponseLabels, Counter>,
    request_duration: HistogramFamily<RouteLabels>,
    bytes_in: Family<RouteLabels, Counter>,
    bytes_out: Family<RouteLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every metric at zero, registered under the `fieldsync_` prefix.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("fieldsync");
        let m = Metrics {
            round: latency_histogram(),
            phases: Family::new_with_constructor(latency_histogram),
            edit_to_visible: latency_histogram(),
            accepted: Counter::default(),
            refused: Family::default(),
            conflicts: Family::default(),
            store: Family::new_with_constructor(latency_histogram),
            live_open: Gauge::default(),
            responses: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            bytes_in: Family::default(),
            bytes_out: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "round_duration_seconds",
            "Time the hub takes to serve a sync round, from its decoded body to its encoded answer",
            m.round.clone(),
        );
        registry.register(
            "round_phase_duration_seconds",
            "Time of each phase of a round that uploads changes: detection (merge), resolution (rules), commit (store)",
            m.phases.clone(),
        );
        registry.register(
            "edit_to_visible_seconds",
            "From the round that stored a change to the round that sent it to another device woken by its live channel",
            m.edit_to_visible.clone(),
        );
        registry.register("changes_accepted", "Uploaded changes stored", m.accepted.clone());
        registry.register(
            "changes_refused",
            "Uploaded changes refused (nothing of their round stored), by rule (`none`: a limit or a record rewrite)",
            m.refused.clone(),
        );
        registry.register(
            "conflicts_recorded",
            "Conflict records a round's new changes take part in, by kind and deciding rule",
            m.conflicts.clone(),
        );
        registry.register(
            "store_operation_duration_seconds",
            "Time of each call to the hub's store, by operation",
            m.store.clone(),
        );
        registry.register("live_channels_open", "Live channels (WebSockets) open now", m.live_open.clone());
        registry.register("http_responses", "HTTP responses, by route and status code", m.responses.clone());
        registry.register(
            "http_request_duration_seconds",
            "From a request's head to its response, by route",
            m.request_duration.clone(),
        );
        registry.register("http_request_bytes", "Request body bytes received, by route", m.bytes_in.clone());
        registry.register("http_response_bytes", "Response body bytes sent, by route", m.bytes_out.clone());
        Metrics { registry, ..m }
    }

    /// A round served (or failed) in `took`.
    pub fn round(&self, took: Duration) {
        self.round.observe(took.as_secs_f64());
    }

    /// A phase of a round took `took`.
    pub fn phase(&self, phase: Phase, took: Duration) {
        self.phases.get_or_create(&PhaseLabels { phase: phase.as_str() }).observe(took.as_secs_f64());
    }

    /// A change stored `took` before a woken device received it.
    pub fn edit_to_visible(&self, took: Duration) {
        self.edit_to_visible.observe(took.as_secs_f64());
    }

    /// `n` uploaded changes stored.
    pub fn accepted(&self, n: usize) {
        self.accepted.inc_by(n as u64);
    }

    /// An uploaded change refused under `rule` ([`NO_RULE`] for none).
    pub fn refused(&self, rule: Option<&str>) {
        self.refused.get_or_create(&RuleLabels { rule: rule.unwrap_or(NO_RULE).to_owned() }).inc();
    }

    /// A conflict record of `kind` decided by `rule` that a round's new changes take part in.
    pub fn conflict(&self, kind: ConflictKind, rule: Rule) {
        let kind = match kind {
            ConflictKind::Contest => "contest",
            ConflictKind::Rejection => "rejection",
            ConflictKind::Quarantine => "quarantine",
        };
        self.conflicts.get_or_create(&ConflictLabels { kind, rule: rule.as_str() }).inc();
    }

    /// A store call took `took`.
    pub fn store_operation(&self, operation: &'static str, took: Duration) {
        self.store.get_or_create(&OperationLabels { operation }).observe(took.as_secs_f64());
    }

    /// A live channel opened; it counts as open until the guard is dropped.
    pub fn live_channel_opened(&self) -> LiveChannelOpen<'_> {
        self.live_open.inc();
        LiveChannelOpen(&self.live_open)
    }

    /// An HTTP request to `route` answered `status` after `took`, with the body sizes.
    pub fn http_response(&self, route: &'static str, status: u16, took: Duration, bytes_in: u64, bytes_out: u64) {
        self.responses.get_or_create(&ResponseLabels { route, status }).inc();
        self.request_duration.get_or_create(&RouteLabels { route }).observe(took.as_secs_f64());
        self.bytes_in.get_or_create(&RouteLabels { route }).inc_by(bytes_in);
        self.bytes_out.get_or_create(&RouteLabels { route }).inc_by(bytes_out);
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn encode_prometheus(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }

    /// The OpenMetrics text exposition (ends with `# EOF`).
    pub fn encode_openmetrics(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Keeps one live channel counted as open; dropped when it closes.
#[derive(Debug)]
pub struct LiveChannelOpen<'a>(&'a Gauge);

impl Drop for LiveChannelOpen<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_rise_by_at_most_half_from_a_tenth_of_a_millisecond_to_ten_seconds() {
        assert_eq!((LATENCY_BUCKETS[0], LATENCY_BUCKETS[LATENCY_BUCKETS.len() - 1]), (0.0001, 10.0));
        for pair in LATENCY_BUCKETS.windows(2) {
            assert!(pair[1] > pair[0] && pair[1] / pair[0] <= 1.5 + 1e-9, "{pair:?}");
        }
    }

    #[test]
    fn the_exposition_names_every_metric() {
        let m = Metrics::new();
        m.round(Duration::from_millis(3));
        m.phase(Phase::Commit, Duration::from_millis(1));
        m.refused(None);
        m.http_response("/v1/sync", 200, Duration::from_millis(4), 10, 20);
        let _open = m.live_channel_opened();
        let text = m.encode_prometheus();
        for line in [
            "fieldsync_round_duration_seconds_count 1",
            "fieldsync_round_phase_duration_seconds_count{phase=\"commit\"} 1",
            "fieldsync_changes_refused_total{rule=\"none\"} 1",
            "fieldsync_http_responses_total{route=\"/v1/sync\",status=\"200\"} 1",
            "fieldsync_http_request_bytes_total{route=\"/v1/sync\"} 10",
            "fieldsync_http_response_bytes_total{route=\"/v1/sync\"} 20",
            "fieldsync_live_channels_open 1",
            "fieldsync_changes_accepted_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
        assert!(m.encode_openmetrics().ends_with("# EOF\n"));
    }
}
