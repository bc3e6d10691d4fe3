//! Where the `tracing` events of the server (and of anything else the
//! command runs) go: stderr, as lines for people or as one JSON object a
//! line, filtered by `--log-level` (a `RUST_LOG`-style list of directives:
//! `info`, `warn,fieldsync_server=debug`). Stdout stays the command's output.

use clap::{Args, ValueEnum};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::error::CliError;

/// The level when neither `--log-level`, `FIELDSYNC_LOG_LEVEL` nor `RUST_LOG` says.
const DEFAULT_FILTER: &str = "info";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One line per event for people: time, level, span, message, fields.
    Human,
    /// One JSON object per line: `timestamp`, `level`, `target`, the event's
    /// fields (`message` among them) and the request's `span`.
    Json,
}

/// The logging flags, global to every subcommand.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log lines on stderr: `human` or `json`.
    #[arg(
        long,
        global = true,
        value_enum,
        value_name = "FORMAT",
        default_value = "human",
        env = "FIELDSYNC_LOG_FORMAT"
    )]
    log_format: LogFormat,
    /// Which events to log, RUST_LOG style: a level (error, warn, info, debug, trace, off) and
    /// target=level directives, comma-separated [default: RUST_LOG, else info].
    #[arg(long, global = true, value_name = "FILTER", env = "FIELDSYNC_LOG_LEVEL")]
    log_level: Option<String>,
}

impl LogArgs {
    /// Install the subscriber for the rest of the process.
    pub fn init(&self) -> Result<(), CliError> {
        let from_env = std::env::var("RUST_LOG").ok().filter(|v| !v.trim().is_empty());
        let filter = self.log_level.clone().or(from_env).unwrap_or_else(|| DEFAULT_FILTER.to_owned());
        let targets: Targets = filter.parse().map_err(|e| {
            CliError::Usage(format!(
                "--log-level `{filter}` is not a filter ({e}); try `info` or `warn,fieldsync_server=debug`"
            ))
        })?;
        let registry = tracing_subscriber::registry().with(targets);
        let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(false);
        let installed = match self.log_format {
            LogFormat::Human => registry.with(fmt).try_init(),
            LogFormat::Json => {
                registry.with(fmt.json().flatten_event(true).with_current_span(true).with_span_list(false)).try_init()
            }
        };
        installed.map_err(|e| CliError::Failed(format!("cannot set up logging: {e}")))
    }
}
