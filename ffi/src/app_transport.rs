//! The app's own transports, for an app that does HTTP itself (OkHttp,
//! URLSession: its proxies, certificate pinning, TLS stack): the sync
//! rounds ([`AppTransport`]) and photo bytes ([`AppPhotoTransport`]),
//! handed to `connect_with`, and core's traits over them. The live channel
//! needs no trait: the app opens a WebSocket to [`live_url`] and calls
//! `Replica::server_changed` on each message.

use std::sync::Arc;

use fieldsync_core as core;

use crate::error::FieldSyncError;

/// A transport the app provides (OkHttp, URLSession), used instead of the
/// built-in one after `connect_with`. One call is one round:
/// `POST {server}/v1/sync` with `Authorization: Bearer {token}` and
/// `Content-Type: ` [`sync_content_type`], `request` as the body.
///
/// Return the body of a 200 answer. For any other status throw
/// `TransportError.Server` with the status and the body as received (it
/// carries the server's reasons, a refusal's included). When no answer came
/// (no network, DNS, timeout, a cut connection) throw
/// `TransportError.Unreachable`; any other exception counts as that too.
/// Do not retry: background sync decides when to try again. Called on a
/// background thread, and may block.
#[uniffi::export(foreign)]
pub trait AppTransport: Send + Sync {
    /// One round trip.
    fn round_trip(&self, request: Vec<u8>) -> Result<Vec<u8>, TransportError>;
}

/// Why an [`AppTransport`] round trip failed.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum TransportError {
    /// No answer: no network, DNS, timeout, connection cut.
    #[error("server unreachable: {detail}")]
    Unreachable {
        /// What failed.
        detail: String,
    },
    /// The server answered with another status than 200.
    #[error("server answered {status}")]
    Server {
        /// The HTTP status.
        status: u16,
        /// The response body, as received.
        body: Vec<u8>,
    },
}

/// Any other exception the app's transport throws: no answer. (Kotlin sends
/// the whole stack trace; its first line names the exception and its message.)
impl From<uniffi::UnexpectedUniFFICallbackError> for TransportError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        TransportError::Unreachable { detail: e.reason.lines().next().unwrap_or_default().to_owned() }
    }
}

impl From<TransportError> for core::TransportError {
    fn from(e: TransportError) -> Self {
        match e {
            TransportError::Unreachable { detail } => core::TransportError::Unreachable(detail),
            TransportError::Server { status, body } => core::TransportError::from_response(status, &body),
        }
    }
}

/// An app's transport as core's.
pub(crate) struct Foreign(pub(crate) Arc<dyn AppTransport>);

impl core::Transport for Foreign {
    fn round_trip(&self, request: Vec<u8>) -> Result<Vec<u8>, core::TransportError> {
        self.0.round_trip(request).map_err(Into::into)
    }
}

/// The `Content-Type` of a sync request, for an [`AppTransport`].
#[uniffi::export]
pub fn sync_content_type() -> String {
    core::protocol::CONTENT_TYPE.to_owned()
}

/// Carries photo bytes for `connect_with`, the way [`AppTransport`] carries
/// rounds: with the same `Authorization` header, to paths this library
/// builds (the project and photo in them, percent-encoded), appended to the
/// server's URL. Throw as [`AppTransport`] does; do not retry. Called on a
/// background thread, and may block.
#[uniffi::export(foreign)]
pub trait AppPhotoTransport: Send + Sync {
    /// `PUT {server}{path}` with `chunk` as the body (`Content-Type:
    /// application/octet-stream`); return the body of the 200 answer.
    fn put_photo_chunk(&self, path: String, chunk: Vec<u8>) -> Result<Vec<u8>, TransportError>;
    /// `GET {server}{path}`; return the body of the 200 answer with the
    /// value of its `x-photo-size` header (the photo's whole size).
    fn get_photo_chunk(&self, path: String) -> Result<PhotoChunkAnswer, TransportError>;
}

/// A piece of a photo as the app's transport received it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PhotoChunkAnswer {
    /// The answer's body.
    pub bytes: Vec<u8>,
    /// Its `x-photo-size` header: the photo's whole size.
    pub photo_size: u64,
}

/// An app's photo transport as core's.
pub(crate) struct ForeignPhotos(pub(crate) Arc<dyn AppPhotoTransport>);

impl core::PhotoTransport for ForeignPhotos {
    fn put_chunk(
        &self,
        project: &str,
        sha256: &str,
        size: u64,
        offset: u64,
        bytes: &[u8],
    ) -> Result<core::PhotoUploadState, core::TransportError> {
        let path = core::photo_wire::upload_path(project, sha256, size, offset);
        core::photo_wire::upload_state(&self.0.put_photo_chunk(path, bytes.to_vec())?)
    }

    fn get_chunk(
        &self,
        project: &str,
        sha256: &str,
        offset: u64,
        length: u64,
    ) -> Result<core::PhotoChunk, core::TransportError> {
        let answer = self.0.get_photo_chunk(core::photo_wire::chunk_path(project, sha256, offset, length))?;
        Ok(core::PhotoChunk { size: answer.photo_size, bytes: answer.bytes })
    }
}

/// The live channel's WebSocket URL for `project` on `server_url` (e.g.
/// `https://sync.example.com` → `wss://sync.example.com:443/v1/live?project=p1`),
/// for an app that opens it with its own WebSocket client, with
/// `Authorization: Bearer {token}`. The channel carries no data: on each
/// message (and after each reconnection) call `Replica::server_changed`.
/// Fails `InvalidInput` if `server_url` is not `http(s)://host[:port]`.
#[uniffi::export]
pub fn live_url(server_url: String, project: String) -> Result<String, FieldSyncError> {
    core::live_url(&server_url, &project).map_err(Into::into)
}
