//! The command's one error type: what went wrong, said to stderr, and the
//! exit code scripts act on.

use std::fmt;

use fieldsync_core::{OpenError, ReplicaError, SyncError};
use fieldsync_server::HubError;
use serde::Serialize;

/// Exit code of a failure that is neither usage nor a rule's refusal.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code of a usage error (clap uses it too).
pub const EXIT_USAGE: u8 = 2;
/// Exit code of an edit a rule refused (nothing was stored).
pub const EXIT_REFUSED: u8 = 3;

/// Why a command failed.
#[derive(Debug)]
pub enum CliError {
    /// The command line makes no sense (exit 2).
    Usage(String),
    /// A rule refused the edit; nothing was stored (exit 3).
    Refused {
        /// The rule's snake_case name.
        rule: String,
        /// Why, in words.
        reason: String,
    },
    /// Anything else (exit 1).
    Failed(String),
}

impl CliError {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Refused { .. } => EXIT_REFUSED,
            CliError::Failed(_) => EXIT_FAILURE,
        }
    }

    /// Say it on stderr: a line for people, or one JSON object with `--json`.
    pub fn report(&self, json: bool) {
        if json {
            #[derive(Serialize)]
            struct Body<'a> {
                error: &'a str,
                #[serde(skip_serializing_if = "Option::is_none")]
                rule: Option<&'a str>,
                message: String,
            }
            let (error, rule) = match self {
                CliError::Usage(_) => ("usage", None),
                CliError::Refused { rule, .. } => ("refused", Some(rule.as_str())),
                CliError::Failed(_) => ("failed", None),
            };
            let body = Body { error, rule, message: self.to_string() };
            eprintln!("{}", serde_json::to_string(&body).unwrap_or_default());
        } else {
            eprintln!("error: {self}");
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(m) | CliError::Failed(m) => f.write_str(m),
            CliError::Refused { rule, reason } => write!(f, "refused by rule {rule}: {reason}"),
        }
    }
}

impl From<ReplicaError> for CliError {
    fn from(e: ReplicaError) -> Self {
        match e {
            ReplicaError::Refused { rule, reason } => CliError::Refused { rule: rule.as_str().to_owned(), reason },
            other => CliError::Failed(other.to_string()),
        }
    }
}

impl From<OpenError> for CliError {
    fn from(e: OpenError) -> Self {
        CliError::Failed(e.to_string())
    }
}

impl From<SyncError> for CliError {
    fn from(e: SyncError) -> Self {
        match e {
            SyncError::Replica(r) => r.into(),
            other => CliError::Failed(format!("sync failed: {other}")),
        }
    }
}

impl From<HubError> for CliError {
    fn from(e: HubError) -> Self {
        CliError::Failed(e.to_string())
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::Failed(e.to_string())
    }
}

impl From<serde_json::Error> for CliError {
    fn from(e: serde_json::Error) -> Self {
        CliError::Failed(format!("could not write JSON: {e}"))
    }
}
