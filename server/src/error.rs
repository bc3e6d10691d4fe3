//! The hub's one error type, and the one place that maps it to HTTP.

use fieldsync_core::protocol::{self, ErrorBody, Refusal};

use crate::store::StoreError;

/// Seconds a client waits after the database was unavailable.
const UNAVAILABLE_RETRY_S: u64 = 2;
/// Seconds a device waits after a 507 (the server's disk is full).
const FULL_RETRY_S: u64 = 60;
/// The `error` code of the 507 answering a request the server had no disk
/// space to store.
pub const SERVER_FULL: &str = "server_full";

/// Why the hub refused a request or an admin call. A request that fails
/// changed nothing (an audit line in `refusals` aside, for [`HubError::Refused`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// The body, a change in it or the cursor could not be understood.
    #[error("{0}")]
    Malformed(String),
    /// A cursor this server did not write, or one past its feed (its data was
    /// restored or replaced): the device starts over with an empty cursor.
    #[error("{0}")]
    UnknownCursor(String),
    /// Over a size limit (compressed body or inflated body).
    #[error("{0}")]
    TooLarge(String),
    /// No token, an unknown one, or a revoked one.
    #[error("{0}")]
    Unauthorized(String),
    /// A token past its expiry: the app's backend issues a fresh one.
    #[error("{0}")]
    TokenExpired(String),
    /// Authenticated, but not allowed: another project, another device's actor.
    #[error("{0}")]
    Forbidden(String),
    /// No such project on this hub.
    #[error("no project `{0}` on this server; check the project id the app was set up with")]
    UnknownProject(String),
    /// No such device (admin calls).
    #[error("no device `{0}`; list devices to see the ids")]
    UnknownDevice(String),
    /// No such photo in the project (or not all of it yet).
    #[error("{0}")]
    UnknownPhoto(String),
    /// A photo upload that contradicts the one under way (another size).
    #[error("{0}")]
    PhotoConflict(String),
    /// Bytes no section of the project names: the photo's record goes first.
    #[error("{0}")]
    PhotoUnreferenced(String),
    /// A photo's bytes, all received, do not hash to its name or are no
    /// image: they were dropped, and the device sends them again.
    #[error("{0}")]
    PhotoCorrupt(String),
    /// The thing to create exists already (admin calls).
    #[error("{0}")]
    AlreadyExists(String),
    /// Writes that the rules refuse; nothing of the request was stored.
    #[error("{} change(s) refused by the project's rules; nothing of this request was stored", .0.len())]
    Refused(Vec<Refusal>),
    /// The request's body did not arrive in time.
    #[error("{0}")]
    Timeout(String),
    /// The device sends too many requests: it may try again after `retry_after_s`.
    #[error("{message}; try again in {retry_after_s} s")]
    RateLimited {
        /// What was exceeded.
        message: String,
        /// Seconds to wait (the `Retry-After` header).
        retry_after_s: u64,
    },
    /// The server serves as many connections as it may: try again after `retry_after_s`.
    #[error("{message}; try again in {retry_after_s} s")]
    Busy {
        /// What is full.
        message: String,
        /// Seconds to wait (the `Retry-After` header).
        retry_after_s: u64,
    },
    /// The client speaks another protocol version.
    #[error(
        "protocol version {found} is not served here (this server speaks {}); update the app",
        protocol::PROTOCOL_VERSION
    )]
    ProtocolVersion {
        /// What the request said.
        found: u16,
    },
    /// The storage backend failed.
    #[error("server storage failed: {0}; try again later")]
    Storage(#[from] StoreError),
}

impl From<protocol::ProtocolError> for HubError {
    fn from(e: protocol::ProtocolError) -> Self {
        match e {
            protocol::ProtocolError::TooLarge { .. } | protocol::ProtocolError::OverLimit { .. } => {
                HubError::TooLarge(e.to_string())
            }
            _ => HubError::Malformed(format!("{e}; send a deflated postcard SyncRequest (docs/protocol.md)")),
        }
    }
}

impl HubError {
    /// The HTTP status and the machine-readable code (the `error` of [`ErrorBody`]).
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            HubError::Malformed(_) => (400, "malformed"),
            HubError::UnknownCursor(_) => (400, protocol::UNKNOWN_CURSOR),
            HubError::Unauthorized(_) => (401, "unauthorized"),
            HubError::TokenExpired(_) => (401, protocol::TOKEN_EXPIRED),
            HubError::Forbidden(_) => (403, "forbidden"),
            HubError::UnknownProject(_) => (404, "unknown_project"),
            HubError::UnknownDevice(_) => (404, "unknown_device"),
            HubError::UnknownPhoto(_) => (404, "unknown_photo"),
            HubError::AlreadyExists(_) => (409, "already_exists"),
            HubError::PhotoConflict(_) => (409, "photo_conflict"),
            HubError::PhotoUnreferenced(_) => (409, fieldsync_core::PHOTO_UNREFERENCED),
            HubError::PhotoCorrupt(_) => (422, fieldsync_core::PHOTO_CORRUPT),
            HubError::Timeout(_) => (408, "timeout"),
            HubError::TooLarge(_) => (413, "too_large"),
            HubError::Refused(_) => (422, "refused"),
            HubError::ProtocolVersion { .. } => (426, "protocol_version"),
            HubError::RateLimited { .. } => (429, "rate_limited"),
            HubError::Storage(StoreError::Unavailable(_)) => (503, "busy"),
            HubError::Storage(e) if e.is_disk_full() => (507, SERVER_FULL),
            HubError::Storage(_) => (500, "internal"),
            HubError::Busy { .. } => (503, "busy"),
        }
    }

    /// The JSON body sent with the status.
    pub fn body(&self) -> ErrorBody {
        let refusals = match self {
            HubError::Refused(r) => r.clone(),
            _ => Vec::new(),
        };
        let retry_after_s = match self {
            HubError::RateLimited { retry_after_s, .. } | HubError::Busy { retry_after_s, .. } => Some(*retry_after_s),
            // The pool reconnects on the next call; a short wait is enough.
            HubError::Storage(StoreError::Unavailable(_)) => Some(UNAVAILABLE_RETRY_S),
            // Someone has to free space: no use asking again at once.
            HubError::Storage(e) if e.is_disk_full() => Some(FULL_RETRY_S),
            _ => None,
        };
        let message = match self {
            HubError::Storage(e) if e.is_disk_full() => format!(
                "the server's disk is full ({e}); nothing of this request was lost: the device keeps it and \
                 sends it again once the server's operator frees space"
            ),
            _ => self.to_string(),
        };
        ErrorBody { error: self.status().1.to_owned(), message, refusals, retry_after_s }
    }
}
