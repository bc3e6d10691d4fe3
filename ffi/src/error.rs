//! The one error the app sees. Its variants are what the app can do something
//! about; every core error is mapped to one of them in [`FieldSyncError::from`]'s
//! single `match`, the only place that knows core's error types.

use fieldsync_core::{self as core, DocumentError, OpenError, ReplicaError};

use crate::conflict::Rule;

/// Why a call failed, grouped by what the app can do about it. (No field is
/// called `message`: it would clash with Kotlin's `Throwable.message`.)
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum FieldSyncError {
    /// A domain rule refused the write; nothing was stored. Show `reason` to
    /// the technician (it says why and what would be allowed).
    #[error("{reason}")]
    RefusedByRule {
        /// The rule that refused it.
        rule: Rule,
        /// Why, in words for the technician.
        reason: String,
    },
    /// This device (or its token) is not allowed to do this in the project:
    /// it is not in the project's roster yet. Ask the office to add it, or
    /// sign in again.
    #[error("{detail}")]
    NotAuthorized {
        /// What was refused.
        detail: String,
    },
    /// The sync server could not be reached; edits are kept and go out at
    /// the next sync. Nothing to do but wait for a connection.
    #[error("{detail}")]
    Offline {
        /// What failed.
        detail: String,
    },
    /// The local database failed or cannot be used as it is (disk full, a
    /// newer app's schema, a corrupt file moved aside). `detail` says what
    /// to do next.
    #[error("{detail}")]
    Storage {
        /// What happened and what to do.
        detail: String,
    },
    /// The call's arguments make no sense (a bad point, a range outside the
    /// notes, an unknown hash, a feature this build lacks). A bug in the app.
    #[error("{detail}")]
    InvalidInput {
        /// What is wrong.
        detail: String,
    },
    /// No such section here (yet): it may arrive with the next sync.
    #[error("{detail}")]
    NotFound {
        /// What was looked for.
        detail: String,
    },
}

/// Every core error the bindings can meet, so that one `match` maps them all.
/// The sync client's error joins here when it lands.
#[derive(Debug)]
pub(crate) enum CoreError {
    /// From a call on an open replica.
    Replica(ReplicaError),
    /// From opening a store.
    Open(OpenError),
}

impl From<ReplicaError> for FieldSyncError {
    fn from(e: ReplicaError) -> Self {
        CoreError::Replica(e).into()
    }
}

impl From<OpenError> for FieldSyncError {
    fn from(e: OpenError) -> Self {
        CoreError::Open(e).into()
    }
}

impl From<CoreError> for FieldSyncError {
    fn from(e: CoreError) -> Self {
        use CoreError::{Open, Replica};
        let detail = match &e {
            Replica(e) => e.to_string(),
            Open(e) => e.to_string(),
        };
        match e {
            Replica(ReplicaError::Refused { rule: core::Rule::UnknownAuthor, reason }) => {
                FieldSyncError::NotAuthorized { detail: reason }
            }
            Replica(ReplicaError::Refused { rule, reason }) => {
                FieldSyncError::RefusedByRule { rule: rule.into(), reason }
            }
            Replica(ReplicaError::UnknownSection(_)) => FieldSyncError::NotFound { detail },
            Replica(ReplicaError::InvalidInput(detail)) => FieldSyncError::InvalidInput { detail },
            Replica(ReplicaError::Document(
                DocumentError::NotesRange { .. } | DocumentError::BadChange(_) | DocumentError::NotASection(_),
            )) => FieldSyncError::InvalidInput { detail },
            Open(OpenError::OtherDevice { .. }) => FieldSyncError::InvalidInput { detail },
            // Store and document failures, newer or corrupt databases: the
            // message says what to do (update the app, recover the moved file).
            Replica(_) | Open(_) => FieldSyncError::Storage { detail },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn each_core_error_maps_to_what_the_app_can_do() {
        let refused = |rule| ReplicaError::Refused { rule, reason: "why".into() };
        assert!(matches!(
            refused(core::Rule::ProgressRange).into(),
            FieldSyncError::RefusedByRule { rule: Rule::ProgressRange, reason } if reason == "why"
        ));
        assert!(matches!(refused(core::Rule::UnknownAuthor).into(), FieldSyncError::NotAuthorized { .. }));
        assert!(matches!(ReplicaError::UnknownSection("s".into()).into(), FieldSyncError::NotFound { .. }));
        assert!(matches!(ReplicaError::InvalidInput("x".into()).into(), FieldSyncError::InvalidInput { .. }));
        let range = DocumentError::NotesRange { pos: 9, delete: 0, len: 1 };
        assert!(matches!(ReplicaError::Document(range).into(), FieldSyncError::InvalidInput { .. }));
        let newer = OpenError::NewerSchema { path: PathBuf::from("a.db"), found: 99 };
        assert!(matches!(newer.into(), FieldSyncError::Storage { detail } if detail.contains("update the app")));
        let other = OpenError::OtherDevice { path: "a.db".into(), found: "a".into(), wanted: "b".into() };
        assert!(matches!(other.into(), FieldSyncError::InvalidInput { .. }));
        let io = OpenError::Io(std::io::Error::other("disk"));
        assert!(matches!(io.into(), FieldSyncError::Storage { .. }));
    }
}
