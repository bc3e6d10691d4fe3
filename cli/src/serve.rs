//! `fieldsync serve`: the hub on its embedded SQLite store (or on
//! PostgreSQL, shared with other `fieldsync serve` processes), until Ctrl-C or
//! SIGTERM. A round is committed before its response is sent
//! (`fieldsync_server::serve`), so stopping loses nothing acknowledged.

use std::io::Write as _;
use std::sync::Arc;

use clap::Args;

use crate::error::CliError;
use crate::hub_store::StoreArgs;

/// Where the server listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Address to listen on (port 0: any free port; the one chosen is printed).
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    listen: String,
}

pub fn run(args: ServeArgs) -> Result<(), CliError> {
    let (hub, listener) = args.store.open_to_serve()?;
    let projects = hub.list_projects()?.len();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failed(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async {
        // Before saying where it listens: a signal sent as soon as the address
        // is printed must stop the server cleanly, not kill it.
        let shutdown = shutdown_signals()?;
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .map_err(|e| CliError::Failed(format!("cannot listen on {}: {e}", args.listen)))?;
        let addr = listener.local_addr()?;
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
        fieldsync_server::serve(listener, Arc::clone(&hub), shutdown)
            .await
            .map_err(|e| CliError::Failed(format!("the server failed: {e}")))
    })?;
    drop(listener);
    drop(hub);
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
