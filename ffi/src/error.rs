//! The one error the app sees. Its variants are what the app can do something
//! about; every core error is mapped to one of them in [`FieldSyncError::from`]'s
//! single `match`, the only place that knows core's error types.

use fieldsync_core::{self as core, DocumentError, EncryptionError, LiveError, OpenError, ReplicaError, SyncError};

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
    /// it is not in the project's roster (yet), or the server refused its
    /// token (revoked, unknown, expired and the credentials connector gave
    /// none that works) or its project. Ask the office to add it, or sign in
    /// again (then `connect` with the new token).
    #[error("{detail}")]
    NotAuthorized {
        /// What was refused.
        detail: String,
    },
    /// The sync server could not be reached (no network, a timeout, a server
    /// failing for now, an answer cut off); edits are kept and go out at the
    /// next sync. Nothing to do but wait for a connection.
    #[error("{detail}")]
    Offline {
        /// What failed.
        detail: String,
    },
    /// This app is too old: the server speaks a newer protocol, or the store
    /// was written by a newer version of the app. Ask the user to update the
    /// app; nothing was changed.
    #[error("{detail}")]
    UpdateRequired {
        /// What is newer.
        detail: String,
    },
    /// The server would not take a request it understood (a bug in the app
    /// or the server, not the network): report it; retrying unchanged will
    /// fail again.
    #[error("{detail}")]
    Rejected {
        /// What the server said.
        detail: String,
    },
    /// The local database failed or cannot be used as it is (disk full, a
    /// corrupt file moved aside). `detail` says what to do next.
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
    /// No such section here (yet): it may arrive with the next sync. Or no
    /// such project on the server: check the project the app was set up with.
    #[error("{detail}")]
    NotFound {
        /// What was looked for.
        detail: String,
    },
}

/// Every core error the bindings can meet, so that one `match` maps them all.
#[derive(Debug)]
pub(crate) enum CoreError {
    /// From a call on an open replica.
    Replica(ReplicaError),
    /// From opening a store.
    Open(OpenError),
    /// From a sync.
    Sync(SyncError),
    /// From setting up the live channel.
    Live(LiveError),
    /// From an encryption key or encrypting a store.
    Encryption(EncryptionError),
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

impl From<SyncError> for FieldSyncError {
    fn from(e: SyncError) -> Self {
        CoreError::Sync(e).into()
    }
}

impl From<LiveError> for FieldSyncError {
    fn from(e: LiveError) -> Self {
        CoreError::Live(e).into()
    }
}

impl From<EncryptionError> for FieldSyncError {
    fn from(e: EncryptionError) -> Self {
        CoreError::Encryption(e).into()
    }
}

impl From<CoreError> for FieldSyncError {
    fn from(e: CoreError) -> Self {
        use CoreError::{Encryption, Live, Open, Replica, Sync};
        let detail = match &e {
            Replica(e) => e.to_string(),
            Open(e) => e.to_string(),
            Sync(e) => e.to_string(),
            Live(e) => e.to_string(),
            Encryption(e) => e.to_string(),
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
            // A store written by a newer app: update the app (the file was not touched).
            Open(OpenError::NewerSchema { .. }) => FieldSyncError::UpdateRequired { detail },
            // The wrong device or key for this file, or a key this build cannot use.
            Open(OpenError::OtherDevice { .. } | OpenError::WrongKey { .. } | OpenError::EncryptionUnavailable) => {
                FieldSyncError::InvalidInput { detail }
            }
            // The local half of a sync: as any other call on the replica.
            Sync(SyncError::Replica(e)) => CoreError::Replica(e).into(),
            // `fetch_photo` after `connect_with` without a photo transport.
            Sync(SyncError::NoPhotoTransport) => FieldSyncError::InvalidInput {
                detail: "photos travel over the built-in transport (connect, connect_with_credentials) or an \
                         AppPhotoTransport given to connect_with; this app transport carries edits only"
                    .into(),
            },
            // The rest as core classifies it (`SyncError::problem`).
            Sync(e) => match e.problem() {
                // A token unknown, revoked or expired and not renewed (401), a project or
                // actor not this device's (403), a connector with no token to give.
                core::SyncProblem::NotAuthorized => FieldSyncError::NotAuthorized { detail },
                core::SyncProblem::NotFound => FieldSyncError::NotFound { detail },
                // No answer, a server failing for now (5xx, 408, 429), an unreadable or endless
                // answer, a connector whose backend cannot be reached.
                core::SyncProblem::Offline => FieldSyncError::Offline { detail },
                // A request the server could not take (400, 413, a 422 without refusals): a bug.
                core::SyncProblem::Rejected => FieldSyncError::Rejected { detail },
                // A newer protocol: update the app.
                core::SyncProblem::UpdateRequired => FieldSyncError::UpdateRequired { detail },
                core::SyncProblem::Storage => FieldSyncError::Storage { detail },
            },
            // A server URL that is no URL, or no TLS trust store (on Android: not initialised).
            Live(_) => FieldSyncError::InvalidInput { detail },
            // A key of another length, a build without encryption, a store encrypted already.
            Encryption(EncryptionError::KeyLength(_) | EncryptionError::Unavailable | EncryptionError::NotPlain(_)) => {
                FieldSyncError::InvalidInput { detail }
            }
            // Encrypting the copy failed: the plain store is as it was.
            Encryption(_) => FieldSyncError::Storage { detail },
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
    use fieldsync_core::TransportError;

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
        assert!(matches!(newer.into(), FieldSyncError::UpdateRequired { detail } if detail.contains("update the app")));
        let other = OpenError::OtherDevice { path: "a.db".into(), found: "a".into(), wanted: "b".into() };
        assert!(matches!(other.into(), FieldSyncError::InvalidInput { .. }));
        let io = OpenError::Io(std::io::Error::other("disk"));
        assert!(matches!(io.into(), FieldSyncError::Storage { .. }));
        assert!(matches!(OpenError::WrongKey { path: "a.db".into() }.into(), FieldSyncError::InvalidInput { .. }));
        assert!(matches!(OpenError::EncryptionUnavailable.into(), FieldSyncError::InvalidInput { .. }));
        assert!(matches!(OpenError::Unreadable { path: "a.db".into() }.into(), FieldSyncError::Storage { .. }));
    }

    #[test]
    fn each_sync_error_maps_to_what_the_app_can_do() {
        let server = |status: u16| -> FieldSyncError {
            let body = format!(r#"{{"error":"e{status}","message":"said {status}"}}"#);
            SyncError::Transport(TransportError::from_response(status, body.as_bytes())).into()
        };
        assert!(matches!(server(401), FieldSyncError::NotAuthorized { detail } if detail.contains("said 401")));
        assert!(matches!(server(403), FieldSyncError::NotAuthorized { .. }));
        assert!(matches!(server(404), FieldSyncError::NotFound { .. }));
        assert!(matches!(server(426), FieldSyncError::UpdateRequired { .. }));
        for status in [500, 502, 503, 408, 429] {
            assert!(matches!(server(status), FieldSyncError::Offline { .. }), "{status}");
        }
        for status in [400, 413, 422] {
            assert!(matches!(server(status), FieldSyncError::Rejected { .. }), "{status}");
        }
        let unreachable = SyncError::Transport(TransportError::Unreachable("connection refused".into()));
        assert!(matches!(unreachable.into(), FieldSyncError::Offline { detail } if detail.contains("refused")));
        let garbled = SyncError::Protocol(core::protocol::decode::<u8>(b"not deflate").unwrap_err());
        assert!(matches!(garbled.into(), FieldSyncError::Offline { .. }));
        assert!(matches!(SyncError::TooManyRounds(3).into(), FieldSyncError::Offline { .. }));
        let local = SyncError::Replica(ReplicaError::UnknownSection("s".into()));
        assert!(matches!(local.into(), FieldSyncError::NotFound { .. }));
        let url = LiveError::BadUrl("ftp://x".into());
        assert!(matches!(url.into(), FieldSyncError::InvalidInput { detail } if detail.contains("ftp://x")));
        // The app's connector: its backend unreachable (sync retries), or no token to be had.
        let backend_down = SyncError::Credentials(core::CredentialsError::Unavailable("backend down".into()));
        assert!(matches!(backend_down.into(), FieldSyncError::Offline { detail } if detail.contains("backend down")));
        let signed_out = SyncError::Credentials(core::CredentialsError::Refused("signed out".into()));
        assert!(matches!(signed_out.into(), FieldSyncError::NotAuthorized { detail } if detail.contains("signed out")));
        let expired = r#"{"error":"token_expired","message":"the token of device d expired"}"#;
        let expired = SyncError::Transport(TransportError::from_response(401, expired.as_bytes()));
        assert!(matches!(expired.into(), FieldSyncError::NotAuthorized { detail } if detail.contains("expired")));
        let proxy = SyncError::Transport(TransportError::from_response(502, b"<html>Bad Gateway</html>"));
        assert!(matches!(proxy.into(), FieldSyncError::Offline { detail } if detail.contains("Bad Gateway")));
        // A photo to fetch through an app transport, which carries edits only.
        let no_photos = SyncError::NoPhotoTransport.into();
        assert!(matches!(no_photos, FieldSyncError::InvalidInput { detail } if detail.contains("connect_with")));
    }
}
