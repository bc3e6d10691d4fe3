//! `fieldsync serve`: the hub on its embedded SQLite store, until Ctrl-C or
//! SIGTERM. A round is committed before its response is sent
//! (`fieldsync_server::serve`), so stopping loses nothing acknowledged.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use fieldsync_server::Hub;

use crate::error::CliError;

/// Where the server listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Data directory (holds hub.db; created if missing).
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// Address to listen on (port 0: any free port; the one chosen is printed).
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    listen: String,
}

pub fn run(args: ServeArgs) -> Result<(), CliError> {
    let hub = Arc::new(Hub::open(&args.data)?);
    let projects = hub.list_projects()?.len();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failed(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .map_err(|e| CliError::Failed(format!("cannot listen on {}: {e}", args.listen)))?;
        let addr = listener.local_addr()?;
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "fieldsync server listening on http://{addr}")?;
            writeln!(out, "data: {}", args.data.join(fieldsync_server::sqlite_store::DB_FILE).display())?;
            if projects == 0 {
                writeln!(out, "no projects yet: fieldsync admin --data {} create-project <id>", args.data.display())?;
            }
            writeln!(out, "stop with Ctrl-C (or SIGTERM); rounds in flight finish first")?;
            out.flush()?;
        }
        fieldsync_server::serve(listener, Arc::clone(&hub), fieldsync_server::shutdown_signal())
            .await
            .map_err(|e| CliError::Failed(format!("the server failed: {e}")))
    })?;
    drop(hub);
    println!("stopped; every acknowledged change is on disk");
    Ok(())
}
