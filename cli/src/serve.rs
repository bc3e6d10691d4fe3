//! `fieldsync serve`: the hub on its embedded SQLite store (or on
//! PostgreSQL, shared with other `fieldsync serve` processes), until Ctrl-C or
//! SIGTERM. A round is committed before its response is sent
//! (`fieldsync_server::serve`), so stopping loses nothing acknowledged. With
//! `--metrics-listen`, Prometheus metrics and the health probes are served on
//! an address of their own as well.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use fieldsync_server::ServeOptions;
use fieldsync_server::pg_store::PgOptions;

use crate::error::CliError;
use crate::hub_store::StoreArgs;

/// Where the server listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Address to listen on (port 0: any free port; the one chosen is printed).
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN, env = "FIELDSYNC_LISTEN")]
    listen: String,
    /// Serve Prometheus metrics (GET /metrics) and the health probes on this address
    /// too, apart from the public one (off unless given; keep it private).
    #[arg(long, value_name = "ADDR", env = "FIELDSYNC_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// With --database-url: milliseconds one SQL statement may run before
    /// PostgreSQL cancels it (the request gets 503 and the device retries; 0: no limit).
    /// The connect timeout is the URL's `connect_timeout` (seconds; 5 unless given).
    #[arg(long, value_name = "MS", env = "FIELDSYNC_DATABASE_STATEMENT_TIMEOUT_MS",
          default_value_t = PgOptions::default().statement_timeout.as_millis() as u64)]
    database_statement_timeout_ms: u64,
    #[command(flatten)]
    limits: LimitArgs,
}

/// The HTTP layer's limits (docs/cli.md, docs/protocol.md "Limits").
#[derive(Debug, Args)]
#[command(next_help_heading = "Limits")]
struct LimitArgs {
    /// Connections served at once, live channels included; more are answered 503.
    #[arg(long, value_name = "N", env = "FIELDSYNC_MAX_CONNECTIONS", default_value_t = ServeOptions::default().max_connections as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Seconds a request's head may take to arrive (and a kept-alive connection may idle).
    #[arg(long, value_name = "SECS", env = "FIELDSYNC_HEADER_TIMEOUT", default_value_t = ServeOptions::default().header_timeout.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout: u64,
    /// Seconds a request's body may take to arrive (408 after).
    #[arg(long, value_name = "SECS", env = "FIELDSYNC_BODY_TIMEOUT", default_value_t = ServeOptions::default().body_timeout.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    body_timeout: u64,
    /// Requests one device may make per minute, sustained; over it 429 with Retry-After (0: no limit).
    #[arg(long, value_name = "N", env = "FIELDSYNC_RATE_LIMIT", default_value_t = ServeOptions::default().requests_per_minute)]
    rate_limit: u32,
    /// Requests one device may make at once after a quiet spell.
    #[arg(long, value_name = "N", env = "FIELDSYNC_RATE_BURST", default_value_t = ServeOptions::default().burst,
          value_parser = clap::value_parser!(u32).range(1..))]
    rate_burst: u32,
    /// Rounds decoded and served at once; more wait their turn (each may take some 50 MB).
    #[arg(long, value_name = "N", env = "FIELDSYNC_MAX_ROUNDS_AT_ONCE", default_value_t = ServeOptions::default().max_rounds_at_once as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_rounds_at_once: u32,
    /// Live channels one device may hold; opening one more closes its oldest.
    #[arg(long, value_name = "N", env = "FIELDSYNC_MAX_LIVE_PER_DEVICE", default_value_t = ServeOptions::default().max_live_per_device as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_live_per_device: u32,
    /// Seconds between the server's pings on a live channel; each also checks the device may still follow.
    #[arg(long, value_name = "SECS", env = "FIELDSYNC_LIVE_PING_INTERVAL", default_value_t = ServeOptions::default().live_ping_interval.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    live_ping_interval: u64,
    /// Seconds a live channel may send nothing (not even a pong) before it is closed.
    #[arg(long, value_name = "SECS", env = "FIELDSYNC_LIVE_IDLE_TIMEOUT", default_value_t = ServeOptions::default().live_idle_timeout.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    live_idle_timeout: u64,
    /// Hours a photo upload no section names is kept before it is removed (checked hourly).
    #[arg(long, value_name = "HOURS", env = "FIELDSYNC_PHOTO_GRACE_HOURS",
          default_value_t = ServeOptions::default().photo_grace.as_secs() / 3600)]
    photo_grace_hours: u64,
}

impl LimitArgs {
    fn options(&self) -> ServeOptions {
        ServeOptions {
            max_connections: self.max_connections as usize,
            header_timeout: Duration::from_secs(self.header_timeout),
            body_timeout: Duration::from_secs(self.body_timeout),
            requests_per_minute: self.rate_limit,
            burst: self.rate_burst,
            max_rounds_at_once: self.max_rounds_at_once as usize,
            max_live_per_device: self.max_live_per_device as usize,
            live_ping_interval: Duration::from_secs(self.live_ping_interval),
            live_idle_timeout: Duration::from_secs(self.live_idle_timeout),
            photo_grace: Duration::from_secs(self.photo_grace_hours.saturating_mul(3600)),
            ..ServeOptions::default()
        }
    }
}

pub fn run(args: ServeArgs) -> Result<(), CliError> {
    let pg = PgOptions {
        statement_timeout: Duration::from_millis(args.database_statement_timeout_ms),
        ..PgOptions::default()
    };
    let (hub, serving) = args.store.open_to_serve(pg)?;
    let projects = hub.list_projects()?.len();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failed(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async {
        // Before saying where it listens: a signal sent as soon as the address
        // is printed must stop the server cleanly, not kill it.
        let signals = shutdown_signals()?;
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .map_err(|e| CliError::Failed(format!("cannot listen on {}: {e}", args.listen)))?;
        let addr = listener.local_addr()?;
        let metrics_listener = match &args.metrics_listen {
            Some(at) => Some(
                tokio::net::TcpListener::bind(at)
                    .await
                    .map_err(|e| CliError::Failed(format!("cannot listen for metrics on {at}: {e}")))?,
            ),
            None => None,
        };
        // One stop for both listeners.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|stopped| *stopped).await;
            }
        };
        let metrics_task = match metrics_listener {
            Some(listener) => {
                let metrics_addr = listener.local_addr()?;
                println!("metrics on http://{metrics_addr}/metrics");
                tracing::info!(address = %metrics_addr, "serving metrics and health probes");
                Some(tokio::spawn(fieldsync_server::serve_metrics(listener, Arc::clone(&hub), stopped())))
            }
            None => None,
        };
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "fieldsync server listening on http://{addr}")?;
            writeln!(out, "data: {}", args.store.describe())?;
            if projects == 0 {
                writeln!(out, "no projects yet: fieldsync admin {} create-project <id>", args.store.flag())?;
            }
            writeln!(out, "stop with Ctrl-C (or SIGTERM); rounds in flight finish first")?;
            out.flush()?;
        }
        tracing::info!(address = %addr, data = %args.store.describe(), "serving");
        let shutdown = async move {
            signals.await;
            tracing::info!("stopping: rounds in flight finish first");
            let _ = stop_tx.send(true);
        };
        fieldsync_server::serve_with(listener, Arc::clone(&hub), shutdown, args.limits.options())
            .await
            .map_err(|e| CliError::Failed(format!("the server failed: {e}")))?;
        if let Some(task) = metrics_task {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(CliError::Failed(format!("the metrics listener failed: {e}"))),
                Err(e) => return Err(CliError::Failed(format!("the metrics listener failed: {e}"))),
            }
        }
        Ok::<(), CliError>(())
    })?;
    drop(hub);
    drop(serving);
    println!("stopped; every acknowledged change is on disk");
    Ok(())
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM. Unlike
/// `fieldsync_server::shutdown_signal`, which registers its handlers when
/// first polled, the handlers are in place when this returns.
#[cfg(unix)]
fn shutdown_signals() -> Result<impl std::future::Future<Output = ()> + Send + 'static, CliError> {
    use tokio::signal::unix::{SignalKind, signal};
    let handler = |kind| signal(kind).map_err(|e| CliError::Failed(format!("cannot handle signals: {e}")));
    let (mut int, mut term) = (handler(SignalKind::interrupt())?, handler(SignalKind::terminate())?);
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

#[cfg(not(unix))]
fn shutdown_signals() -> Result<impl std::future::Future<Output = ()> + Send + 'static, CliError> {
    Ok(fieldsync_server::shutdown_signal())
}
