//! How photo bytes travel, apart from the rounds: their own endpoints, in
//! chunks, so a cut costs at most one chunk and an edit never waits behind a
//! photo for more than one. The trait lets the simulator and an app's own
//! HTTP client carry them as well as the built-in [`crate::HttpTransport`].
//!
//! - `PUT  /v1/projects/{project}/photos/{sha256}/upload?offset=N&size=T`, the
//!   chunk as the body → [`PhotoUploadState`]: the server appends a chunk
//!   only at the offset it has reached and otherwise answers where it
//!   stands, so a chunk sent twice is stored once and the client resumes
//!   from `received`. The last chunk is checked against the hash and the
//!   photo is kept (or discarded: `422 photo_corrupt`).
//! - `GET  /v1/projects/{project}/photos/{sha256}?offset=N&length=M` → the
//!   bytes, with the photo's size in `x-photo-size`.
//!
//! Every call is authorized like a round: the device's user must be a
//! member of the project, and a photo is kept per project.

use serde::{Deserialize, Serialize};

use crate::sync::transport::TransportError;

/// The largest chunk the server takes or gives in one request.
pub const MAX_PHOTO_CHUNK_BYTES: usize = 1024 * 1024;
/// The response header carrying a photo's whole size with a chunk.
pub const PHOTO_SIZE_HEADER: &str = "x-photo-size";

/// Where an upload stands on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PhotoUploadState {
    /// The photo's whole size (0 when the server has none of it).
    pub size: u64,
    /// Bytes the server holds, from the start.
    pub received: u64,
    /// Whether the server has all of it, checked against its hash.
    pub complete: bool,
}

/// A piece of a photo the server holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhotoChunk {
    /// The photo's whole size.
    pub size: u64,
    /// The bytes from the offset asked for.
    pub bytes: Vec<u8>,
}

/// Carries photo bytes to and from the server. Like [`crate::Transport`],
/// a call must not retry on its own.
pub trait PhotoTransport: Send + Sync {
    /// Send `bytes`, the piece of the photo (of `size` bytes) at `offset`.
    fn put_chunk(
        &self,
        project: &str,
        sha256: &str,
        size: u64,
        offset: u64,
        bytes: &[u8],
    ) -> Result<PhotoUploadState, TransportError>;
    /// Up to `length` bytes of a photo the server holds, from `offset`.
    fn get_chunk(&self, project: &str, sha256: &str, offset: u64, length: u64) -> Result<PhotoChunk, TransportError>;
}

/// The path of a photo's endpoints (the project percent-encoded as one
/// segment, as the live channel's query encodes it).
#[cfg(feature = "http")]
pub fn photo_path(project: &str, sha256: &str) -> String {
    let project = percent_encoding::utf8_percent_encode(project, crate::sync::live::QUERY_VALUE);
    format!("/v1/projects/{project}/photos/{sha256}")
}

/// Whether `s` is a photo's name: 64 lowercase hex digits.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Where a chunk of a photo goes up: the path and query of the `PUT`.
#[cfg(feature = "http")]
pub fn upload_path(project: &str, sha256: &str, size: u64, offset: u64) -> String {
    format!("{}/upload?offset={offset}&size={size}", photo_path(project, sha256))
}

/// Where a chunk of a photo comes from: the path and query of the `GET`.
#[cfg(feature = "http")]
pub fn chunk_path(project: &str, sha256: &str, offset: u64, length: u64) -> String {
    format!("{}?offset={offset}&length={length}", photo_path(project, sha256))
}

/// The answer to an upload's `PUT` (JSON), read.
pub fn upload_state(answer: &[u8]) -> Result<PhotoUploadState, TransportError> {
    serde_json::from_slice(answer)
        .map_err(|e| TransportError::Unreachable(format!("an unreadable answer about a photo upload: {e}")))
}

#[cfg(feature = "http")]
impl PhotoTransport for crate::sync::transport::HttpTransport {
    fn put_chunk(
        &self,
        project: &str,
        sha256: &str,
        size: u64,
        offset: u64,
        bytes: &[u8],
    ) -> Result<PhotoUploadState, TransportError> {
        let url = format!("{}{}", self.server(), upload_path(project, sha256, size, offset));
        let request = self
            .client()
            .put(url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes.to_vec());
        upload_state(&self.send(request)?)
    }

    fn get_chunk(&self, project: &str, sha256: &str, offset: u64, length: u64) -> Result<PhotoChunk, TransportError> {
        let url = format!("{}{}", self.server(), chunk_path(project, sha256, offset, length));
        let (headers, bytes) = self.send_with_headers(self.client().get(url))?;
        let size = headers
            .get(PHOTO_SIZE_HEADER)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .ok_or_else(|| TransportError::Unreachable(format!("the answer lacks `{PHOTO_SIZE_HEADER}`")))?;
        Ok(PhotoChunk { size, bytes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_project_with_any_characters_stays_one_path_segment() {
        let sha = "ab".repeat(32);
        #[cfg(feature = "http")]
        assert_eq!(photo_path("build out/1", &sha), format!("/v1/projects/build%20out%2F1/photos/{sha}"));
        #[cfg(feature = "http")]
        assert_eq!(upload_path("p", &sha, 10, 4), format!("/v1/projects/p/photos/{sha}/upload?offset=4&size=10"));
        #[cfg(feature = "http")]
        assert_eq!(chunk_path("p", &sha, 4, 6), format!("/v1/projects/p/photos/{sha}?offset=4&length=6"));
        let state = upload_state(br#"{"size":10,"received":4,"complete":false}"#).unwrap();
        assert_eq!(state, PhotoUploadState { size: 10, received: 4, complete: false });
        assert!(matches!(upload_state(b"<html>"), Err(TransportError::Unreachable(_))));
        assert!(is_sha256_hex(&sha));
        assert!(!is_sha256_hex(&"AB".repeat(32)));
        assert!(!is_sha256_hex("../etc/passwd"));
    }
}
