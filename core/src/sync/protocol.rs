//! The sync wire format (normative description: `docs/protocol.md`).
//!
//! One round = one `POST /v1/sync` whose body is a deflated postcard
//! [`SyncRequest`], answered by a deflated postcard [`SyncResponse`]. Both
//! sides decode through [`decode`], which checks the compressed size before
//! inflating and stops inflating at a limit, so a decompression bomb costs
//! nothing.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use crate::domain::project::{Member, ProjectConfig, RoleChange};

/// Version of this wire format; a server answers 426 to others.
pub const PROTOCOL_VERSION: u16 = 2;
/// Content type of request and response bodies.
pub const CONTENT_TYPE: &str = "application/vnd.fieldsync.sync.v1";
/// Largest compressed body either side accepts.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Largest inflated body either side accepts.
pub const MAX_INFLATED_BYTES: usize = 64 * 1024 * 1024;
/// The `error` code of the 400 answering a cursor the server does not know
/// (its data was restored or replaced): the device starts over with an empty cursor.
pub const UNKNOWN_CURSOR: &str = "unknown_cursor";
/// Response budget a client asks for when it does not say.
pub const DEFAULT_RESPONSE_BUDGET: u32 = 256 * 1024;

/// Changes of one section document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectionBatch {
    /// Section id.
    pub section: String,
    /// Raw Automerge changes, each whole. On the wire each is packed
    /// ([`crate::sync::pack`]: hashes of earlier changes of the batch left out).
    #[serde(with = "crate::sync::pack::serde_changes")]
    pub changes: Vec<Vec<u8>>,
}

/// A whole compacted section document, sent to a device that has none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectionDocument {
    /// Section id.
    pub section: String,
    /// `Automerge::save` bytes.
    pub document: Vec<u8>,
}

/// One round's request: everything the device has that the server has not
/// confirmed, for every section of one project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequest {
    /// [`PROTOCOL_VERSION`].
    pub protocol: u16,
    /// The project this round is about.
    pub project: String,
    /// The device's Automerge actor id (hex), bound to it on first use.
    pub actor: String,
    /// Where the device's copy of the project feed ends (opaque; empty at first).
    pub cursor: String,
    /// Version of the roster the device holds (0: none).
    pub roster_version: u64,
    /// How many bytes of changes the response may carry (before compression).
    pub response_budget: u32,
    /// Unconfirmed local changes.
    pub upload: Vec<SectionBatch>,
}

/// Why the server refused an uploaded change (listed in a 422 [`ErrorBody`];
/// nothing of that request was stored). The device keeps the change — nothing
/// is lost — but stops sending it and what depends on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// Section of the change.
    pub section: String,
    /// Hex hash of the change.
    pub hash: String,
    /// Rule that refused it, if a domain rule did (snake_case).
    pub rule: Option<String>,
    /// Why, in words.
    pub reason: String,
}

/// The JSON body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine-readable code: `malformed`, `unknown_cursor`, `too_large`, `unauthorized`,
    /// `forbidden`, `unknown_project`, `refused`, `protocol_version`, `internal`.
    pub error: String,
    /// What happened and what to do, in words.
    pub message: String,
    /// For `refused`: each change refused and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refusals: Vec<Refusal>,
}

/// The project's roster and config, sent when the device's copy is stale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RosterUpdate {
    /// Version to send back next time.
    pub version: u64,
    /// Actor → user → role, removed members included (their past writes keep their author).
    pub members: Vec<Member>,
    /// Every member's role changes in the server's order: a write is judged
    /// under the role its author had when it was made.
    pub history: Vec<RoleChange>,
    /// The project's rule configuration.
    pub config: ProjectConfig,
}

/// One round's response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncResponse {
    /// The server's clock, ms since the epoch: the device anchors its HLC to it.
    /// Every uploaded change is stored (a refusal is an HTTP 422 instead).
    pub server_time_ms: u64,
    /// Changes the device lacks, in feed order.
    pub changes: Vec<SectionBatch>,
    /// Whole documents, for a device bootstrapping from an empty cursor.
    pub documents: Vec<SectionDocument>,
    /// The cursor to send next time; commit it with the changes above.
    pub cursor: String,
    /// Whether the server held back more (the byte budget was reached).
    pub more: bool,
    /// Present when the device's roster version is stale.
    pub roster: Option<RosterUpdate>,
}

/// A body that could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// Over [`MAX_BODY_BYTES`] compressed or [`MAX_INFLATED_BYTES`] inflated.
    #[error("body too large: more than {limit} bytes {what}; sync in smaller batches")]
    TooLarge {
        /// "compressed" or "inflated".
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// Not deflate, or not the message expected.
    #[error("undecodable body: {0}")]
    Malformed(String),
}

/// Serialize and deflate a message.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    let raw = postcard::to_allocvec(message).expect("in-memory serialization does not fail");
    let mut z = flate2::write::DeflateEncoder::new(Vec::with_capacity(raw.len() / 2), flate2::Compression::default());
    z.write_all(&raw).expect("writing to a Vec does not fail");
    z.finish().expect("writing to a Vec does not fail")
}

/// Inflate and deserialize a message, checking sizes first.
pub fn decode<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ProtocolError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ProtocolError::TooLarge { what: "compressed", limit: MAX_BODY_BYTES });
    }
    let mut raw = Vec::new();
    flate2::read::DeflateDecoder::new(body)
        .take(MAX_INFLATED_BYTES as u64 + 1)
        .read_to_end(&mut raw)
        .map_err(|e| ProtocolError::Malformed(format!("not deflate: {e}")))?;
    if raw.len() > MAX_INFLATED_BYTES {
        return Err(ProtocolError::TooLarge { what: "inflated", limit: MAX_INFLATED_BYTES });
    }
    postcard::from_bytes(&raw).map_err(|e| ProtocolError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let req = SyncRequest {
            protocol: PROTOCOL_VERSION,
            project: "p".into(),
            actor: "aa".into(),
            cursor: String::new(),
            roster_version: 0,
            response_budget: DEFAULT_RESPONSE_BUDGET,
            upload: vec![SectionBatch { section: "s".into(), changes: vec![vec![1, 2, 3]] }],
        };
        assert_eq!(decode::<SyncRequest>(&encode(&req)).unwrap(), req);
    }

    #[test]
    fn an_empty_round_is_tiny() {
        let req = SyncRequest {
            protocol: PROTOCOL_VERSION,
            project: "0123456789abcdef0123456789abcdef".into(),
            actor: "0123456789abcdef0123456789abcdef".into(),
            cursor: "c:123456".into(),
            roster_version: 7,
            response_budget: DEFAULT_RESPONSE_BUDGET,
            upload: vec![],
        };
        assert!(encode(&req).len() < 100, "{}", encode(&req).len());
    }

    #[test]
    fn bombs_and_garbage_are_refused() {
        let zeros = vec![0u8; MAX_INFLATED_BYTES + 10];
        let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&zeros).unwrap();
        let bomb = z.finish().unwrap();
        assert!(bomb.len() < 200_000);
        assert!(matches!(decode::<SyncRequest>(&bomb), Err(ProtocolError::TooLarge { what: "inflated", .. })));
        assert!(matches!(decode::<SyncRequest>(b"garbage"), Err(ProtocolError::Malformed(_))));
    }
}
