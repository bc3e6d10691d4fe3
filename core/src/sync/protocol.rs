//! The sync wire format (normative description: `docs/protocol.md`).
//!
//! One round = one `POST /v1/sync` whose body is a deflated postcard
//! [`SyncRequest`], answered by a deflated postcard [`SyncResponse`]. Both
//! sides decode through [`decode`], which checks the compressed size before
//! inflating and stops inflating at a limit, so a decompression bomb costs
//! nothing.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use crate::domain::coverage::Scope;
use crate::domain::project::{FullSizePhotos, Member, ProjectConfig, RoleChange};

/// Version of this wire format; a server answers 426 to others.
pub const PROTOCOL_VERSION: u16 = 4;
/// The oldest version a server still answers: a protocol-3 request is one
/// of protocol 4 without its last two fields (scope: everything).
pub const OLDEST_PROTOCOL_VERSION: u16 = 3;
/// Content type of request and response bodies.
pub const CONTENT_TYPE: &str = "application/vnd.fieldsync.sync.v1";
pub use crate::budget::{Limits, MAX_BODY_BYTES, MAX_CHANGES_PER_REQUEST, MAX_DEPS_PER_CHANGE, MAX_INFLATED_BYTES};
pub use crate::domain::id::{MAX_PROJECT_ID_BYTES, MAX_SECTION_ID_BYTES};
/// The `error` code of the 400 answering a cursor the server does not know
/// (its data was restored or replaced): the device starts over with an empty cursor.
pub const UNKNOWN_CURSOR: &str = "unknown_cursor";
/// The `error` code of the 401 answering a token past its expiry (apart from
/// `unauthorized`: unknown or revoked): the app fetches a fresh one.
pub const TOKEN_EXPIRED: &str = "token_expired";
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
    /// When the hub received each change (server ms; 0: before it recorded
    /// receipts), in the order of `changes`. Empty in an upload.
    #[serde(deserialize_with = "times")]
    pub received: Vec<u64>,
}

impl SectionBatch {
    /// A batch of changes to upload (the hub gives them their receipt times).
    pub fn upload(section: impl Into<String>, changes: Vec<Vec<u8>>) -> SectionBatch {
        SectionBatch { section: section.into(), changes, received: Vec::new() }
    }
}

/// A whole compacted section document, sent to a device that has none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectionDocument {
    /// Section id.
    pub section: String,
    /// `Automerge::save` bytes.
    pub document: Vec<u8>,
    /// When the hub received each change the document holds (server ms; 0:
    /// unknown), in the order of the changes' hashes
    /// ([`crate::SectionDoc::change_hashes`]).
    #[serde(deserialize_with = "times")]
    pub received: Vec<u64>,
}

/// One round's request: everything the device has that the server has not
/// confirmed, for every section of one project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    #[serde(deserialize_with = "counted")]
    pub upload: Vec<SectionBatch>,
    /// The sections the device is to hold (protocol 4).
    pub scope: Scope,
    /// The scope its cursor was earned under, when that is not `scope` (its
    /// subscriptions changed; none with an empty cursor): the server sends
    /// the sections entering the scope whole, and says which to drop.
    pub held: Option<Scope>,
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
    /// `forbidden`, `unknown_project`, `timeout`, `refused`, `rate_limited`, `busy`,
    /// `protocol_version`, `internal`.
    pub error: String,
    /// What happened and what to do, in words.
    pub message: String,
    /// For `refused`: each change refused and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refusals: Vec<Refusal>,
    /// For `rate_limited` and `busy`: seconds to wait before trying again
    /// (also in the `Retry-After` header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<u64>,
}

/// The project's roster and config, sent when the device's copy is stale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RosterUpdate {
    /// Version to send back next time.
    pub version: u64,
    /// Actor → user → role, removed members included (their past writes keep their author).
    #[serde(deserialize_with = "counted")]
    pub members: Vec<Member>,
    /// Every member's role changes in the server's order: a write is judged
    /// under the role its author had when it was made.
    #[serde(deserialize_with = "counted")]
    pub history: Vec<RoleChange>,
    /// The project's configuration. On the wire, the fields protocol 4
    /// first had; [`SyncResponse::full_size_photos`] carries the one added since.
    #[serde(with = "config_as_first_sent")]
    pub config: ProjectConfig,
}

/// A [`ProjectConfig`] as protocol 4 first sent it, so that older devices
/// still read a roster: what was added since travels last in the response.
mod config_as_first_sent {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::domain::project::{ProgressBand, ProjectConfig};
    use crate::domain::state_machine::ConstructionState;

    #[derive(Serialize)]
    struct Sent<'a> {
        max_route_distance_m: f64,
        progress_bands: &'a BTreeMap<ConstructionState, ProgressBand>,
    }

    #[derive(Deserialize)]
    struct Received {
        max_route_distance_m: f64,
        progress_bands: BTreeMap<ConstructionState, ProgressBand>,
    }

    pub fn serialize<S: Serializer>(c: &ProjectConfig, s: S) -> Result<S::Ok, S::Error> {
        Sent { max_route_distance_m: c.max_route_distance_m, progress_bands: &c.progress_bands }.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ProjectConfig, D::Error> {
        let r = Received::deserialize(d)?;
        Ok(ProjectConfig {
            max_route_distance_m: r.max_route_distance_m,
            progress_bands: r.progress_bands,
            ..ProjectConfig::default()
        })
    }
}

/// One round's response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncResponse {
    /// The server's clock, ms since the epoch: the device anchors its HLC to it.
    /// Every uploaded change is stored (a refusal is an HTTP 422 instead).
    pub server_time_ms: u64,
    /// Changes the device lacks, in feed order.
    #[serde(deserialize_with = "counted")]
    pub changes: Vec<SectionBatch>,
    /// Whole documents, for a device bootstrapping from an empty cursor.
    #[serde(deserialize_with = "counted")]
    pub documents: Vec<SectionDocument>,
    /// The cursor to send next time; commit it with the changes above.
    pub cursor: String,
    /// Whether the server held back more (the byte budget was reached).
    pub more: bool,
    /// Present when the device's roster version is stale.
    pub roster: Option<RosterUpdate>,
    /// When the hub received each uploaded change (server ms; 0: unknown), in
    /// the request's order: now for a new one, then for one it already had.
    #[serde(deserialize_with = "times")]
    pub upload_received: Vec<u64>,
    /// Sections the device holds that its scope no longer covers (their
    /// route or crew changed): it drops each once its own edits of it are up.
    #[serde(deserialize_with = "counted")]
    pub evicted: Vec<String>,
    /// When the scope changed (or a bootstrap began) under a scope that is not
    /// everything: every section the scope covers. The device drops the others.
    pub keep_only: Option<Holding>,
    /// With `more`: what the server still holds for the device after this
    /// page, when it counted it (a progress total; none under a scope other
    /// than everything). Added within protocol 4, last, so older devices
    /// ignore it; [`decode_response`] reads a response without it as none.
    pub still_to_send: Option<StillToSend>,
    /// With `roster`: its config's [`ProjectConfig::full_size_photos`].
    /// Added within protocol 4, last; [`decode_response`] puts it into the
    /// roster's config (a server without it: `Always`).
    pub full_size_photos: Option<FullSizePhotos>,
}

/// What the server still holds for a device after a response's page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StillToSend {
    /// Feed changes after the page's cursor.
    pub changes: u64,
    /// Whole section documents (a bootstrap's) after the page's last.
    pub documents: u64,
}

/// The sections a scope covers, as a [`SyncResponse::keep_only`] lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holding {
    /// Section ids, sorted.
    #[serde(deserialize_with = "counted")]
    pub sections: Vec<String>,
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
    /// Over a limit on what one body may hold once decoded: changes, the
    /// dependencies of one change, bytes after unpacking.
    #[error("{what}: more than {limit}; sync in smaller batches")]
    OverLimit {
        /// What is counted.
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

/// Inflate and deserialize a message within [`Limits::RESPONSE`].
pub fn decode<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ProtocolError> {
    decode_with(body, &Limits::RESPONSE)
}

/// Inflate and deserialize a [`SyncRequest`] of this protocol or of
/// [`OLDEST_PROTOCOL_VERSION`] (it ends before the fields protocol 4 added,
/// which then read as everything, nothing held) within [`Limits::REQUEST`].
pub fn decode_request(body: &[u8]) -> Result<SyncRequest, ProtocolError> {
    let mut raw = inflate(body, &Limits::REQUEST)?;
    // `protocol` comes first: a u16 as a varint, one byte for 3.
    if raw.first() == Some(&3) {
        raw.extend(postcard::to_allocvec(&(Scope::Everything, None::<Scope>)).expect("in-memory serialization"));
    }
    deserialize(&raw, &Limits::REQUEST)
}

/// Inflate and deserialize a [`SyncResponse`] within [`Limits::RESPONSE`].
/// A server that predates [`SyncResponse::still_to_send`] or
/// [`SyncResponse::full_size_photos`] ends its response before them: they
/// read as none (postcard ignores what follows a message, so the padding is
/// read only when fields are missing).
pub fn decode_response(body: &[u8]) -> Result<SyncResponse, ProtocolError> {
    let mut raw = inflate(body, &Limits::RESPONSE)?;
    raw.extend(postcard::to_allocvec(&(None::<StillToSend>, None::<FullSizePhotos>)).expect("in-memory serialization"));
    let mut response: SyncResponse = deserialize(&raw, &Limits::RESPONSE)?;
    if let (Some(roster), Some(policy)) = (&mut response.roster, response.full_size_photos) {
        roster.config.full_size_photos = policy;
    }
    Ok(response)
}

/// Inflate and deserialize a message within `limits`: the compressed size is
/// checked first, inflation stops at its limit, and every change, batch,
/// document and member is counted and charged as it is decoded, before it is
/// allocated.
pub fn decode_with<T: for<'de> Deserialize<'de>>(body: &[u8], limits: &Limits) -> Result<T, ProtocolError> {
    deserialize(&inflate(body, limits)?, limits)
}

fn inflate(body: &[u8], limits: &Limits) -> Result<Vec<u8>, ProtocolError> {
    if body.len() > limits.body_bytes {
        return Err(ProtocolError::TooLarge { what: "compressed", limit: limits.body_bytes });
    }
    let mut raw = Vec::new();
    flate2::read::DeflateDecoder::new(body)
        .take(limits.inflated_bytes as u64 + 1)
        .read_to_end(&mut raw)
        .map_err(|e| ProtocolError::Malformed(format!("not deflate: {e}")))?;
    if raw.len() > limits.inflated_bytes {
        return Err(ProtocolError::TooLarge { what: "inflated", limit: limits.inflated_bytes });
    }
    Ok(raw)
}

fn deserialize<T: for<'de> Deserialize<'de>>(raw: &[u8], limits: &Limits) -> Result<T, ProtocolError> {
    let scope = budget::Scope::enter(*limits);
    let decoded = postcard::from_bytes(raw);
    match (decoded, scope.take_error()) {
        (_, Some(e)) => Err(e.into()),
        (Ok(message), None) => Ok(message),
        (Err(e), None) => Err(ProtocolError::Malformed(e.to_string())),
    }
}

use crate::budget::{self, counted, times};

impl From<crate::sync::pack::PackError> for ProtocolError {
    fn from(e: crate::sync::pack::PackError) -> Self {
        match e {
            crate::sync::pack::PackError::OverLimit { what, limit } => ProtocolError::OverLimit { what, limit },
            e => ProtocolError::Malformed(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::domain::project::ProgressBand;
    use crate::domain::state_machine::ConstructionState;

    fn deflated(raw: &[u8]) -> Vec<u8> {
        let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(raw).unwrap();
        z.finish().unwrap()
    }

    #[test]
    fn a_response_from_a_server_before_the_fields_added_within_protocol_4_reads_them_as_none() {
        let response = SyncResponse {
            server_time_ms: 1,
            changes: vec![],
            documents: vec![],
            cursor: "c:9".into(),
            more: true,
            roster: None,
            upload_received: vec![],
            evicted: vec![],
            keep_only: None,
            still_to_send: Some(StillToSend { changes: 7, documents: 2 }),
            full_size_photos: None,
        };
        assert_eq!(decode_response(&encode(&response)).unwrap(), response, "the count read when sent");
        // A server before the photo policy ends after the count (its `None` is the last byte).
        let mut raw = postcard::to_allocvec(&response).unwrap();
        assert_eq!(raw.pop(), Some(0));
        assert_eq!(decode_response(&deflated(&raw)).unwrap(), response);
        // One before the count too.
        let mut raw = postcard::to_allocvec(&SyncResponse { still_to_send: None, ..response.clone() }).unwrap();
        assert_eq!(raw.split_off(raw.len() - 2), [0, 0]);
        assert_eq!(decode_response(&deflated(&raw)).unwrap(), SyncResponse { still_to_send: None, ..response });
    }

    #[test]
    fn a_projects_photo_policy_reaches_its_roster_and_older_devices_still_read_the_roster() {
        let config = ProjectConfig { full_size_photos: FullSizePhotos::OnUnmeteredLinks, ..ProjectConfig::default() };
        let roster = RosterUpdate { version: 3, members: vec![], history: vec![], config: config.clone() };
        let response = SyncResponse {
            server_time_ms: 1,
            changes: vec![],
            documents: vec![],
            cursor: "c:9".into(),
            more: false,
            roster: Some(roster.clone()),
            upload_received: vec![],
            evicted: vec![],
            keep_only: None,
            still_to_send: None,
            full_size_photos: Some(config.full_size_photos),
        };
        let read = decode_response(&encode(&response)).unwrap();
        assert_eq!(read.roster.unwrap().config, config);
        // A device before the policy decodes the message as it knew it: the
        // roster's config has the fields it had, and the policy is what it ignores.
        /// The roster as such a device knows it: version, members, history, and the config's two fields.
        type OlderRoster = (u64, Vec<Member>, Vec<RoleChange>, f64, BTreeMap<ConstructionState, ProgressBand>);
        #[derive(Deserialize)]
        struct OlderResponse {
            _server_time_ms: u64,
            _changes: Vec<SectionBatch>,
            _documents: Vec<SectionDocument>,
            _cursor: String,
            _more: bool,
            roster: Option<OlderRoster>,
            upload_received: Vec<u64>,
        }
        let older: OlderResponse = postcard::from_bytes(&postcard::to_allocvec(&response).unwrap()).unwrap();
        let (version, _, _, max_route_distance_m, _) = older.roster.unwrap();
        assert_eq!((version, max_route_distance_m, older.upload_received), (3, 100.0, vec![]));
        // A server without the field: the roster's config says `Always`.
        let mut raw = postcard::to_allocvec(&response).unwrap();
        raw.truncate(raw.len() - 2);
        let read = decode_response(&deflated(&raw)).unwrap();
        assert_eq!(read.roster.unwrap().config, ProjectConfig::default());
    }

    #[test]
    fn messages_round_trip() {
        let req = SyncRequest {
            protocol: PROTOCOL_VERSION,
            project: "p".into(),
            actor: "aa".into(),
            cursor: String::new(),
            roster_version: 0,
            response_budget: DEFAULT_RESPONSE_BUDGET,
            upload: vec![SectionBatch::upload("s", vec![vec![1, 2, 3]])],
            scope: Default::default(),
            held: None,
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
            scope: Default::default(),
            held: None,
        };
        assert!(encode(&req).len() < 100, "{}", encode(&req).len());
    }

    #[test]
    fn a_protocol_3_request_reads_as_one_holding_everything() {
        let mut req = SyncRequest {
            protocol: 3,
            project: "p".into(),
            actor: "aa".into(),
            cursor: "c:5".into(),
            roster_version: 2,
            response_budget: DEFAULT_RESPONSE_BUDGET,
            upload: vec![SectionBatch::upload("s", vec![vec![1, 2, 3]])],
            scope: Scope::Everything,
            held: None,
        };
        // Protocol 3's body is this one's without its last two fields.
        let mut raw = postcard::to_allocvec(&req).unwrap();
        raw.truncate(raw.len() - 2);
        let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&raw).unwrap();
        assert_eq!(decode_request(&z.finish().unwrap()).unwrap(), req);
        // Protocol 4 with a corridor of 40 points stays small.
        req.protocol = PROTOCOL_VERSION;
        let points =
            (0..40).map(|i| crate::GeoPoint { lat: 48.0 + f64::from(i) * 0.002, lon: 11.0 + f64::from(i) * 0.003 });
        req.scope = Scope::Only(vec![crate::Subscription::Corridor { points: points.collect(), buffer_m: 500 }]);
        req.upload.clear();
        let body = encode(&req);
        assert!(body.len() < 300, "{} bytes", body.len());
        assert_eq!(decode_request(&body).unwrap(), req);
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

    fn uleb(out: &mut Vec<u8>, mut v: u64) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    fn string(out: &mut Vec<u8>, s: &str) {
        uleb(out, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
    }

    /// A deflated postcard `SyncRequest` whose one batch carries `wire` as the
    /// changes' wire forms, as they are (no packing by `encode`).
    fn request_with_wire_changes(wire: &[Vec<u8>]) -> Vec<u8> {
        let mut raw = vec![4]; // protocol
        string(&mut raw, "p");
        string(&mut raw, "aa");
        string(&mut raw, "");
        raw.extend_from_slice(&[0, 0]); // roster_version, response_budget
        raw.push(1); // one batch
        string(&mut raw, "s");
        uleb(&mut raw, wire.len() as u64);
        for w in wire {
            uleb(&mut raw, w.len() as u64);
            raw.extend_from_slice(w);
        }
        raw.push(0); // no receipt times
        raw.extend_from_slice(&[0, 0]); // scope: everything, nothing held
        let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&raw).unwrap();
        z.finish().unwrap()
    }

    /// `changes` packed changes after a first one, each naming the change
    /// before it `refs` times: each one-byte back-reference becomes a 32-byte
    /// hash when unpacked.
    fn back_reference_bomb(changes: usize, refs: usize) -> Vec<Vec<u8>> {
        let mut bomb = vec![1];
        uleb(&mut bomb, refs as u64);
        bomb.resize(bomb.len() + refs, 1);
        let mut wire = vec![vec![1, 0]];
        wire.resize(changes + 1, bomb);
        wire
    }

    #[test]
    fn packed_changes_are_not_expanded_past_the_limit() {
        // 4 MB inflated, 128 MiB unpacked: over the limit of what a body may expand to.
        let body = request_with_wire_changes(&back_reference_bomb(4_000, 1_000));
        assert!(body.len() < 100_000, "{}", body.len());
        match decode::<SyncRequest>(&body) {
            Err(ProtocolError::OverLimit { what, .. }) => assert!(what.contains("unpack"), "{what}"),
            other => panic!("not refused as over a limit: {:?}", other.map(|r| r.upload[0].changes.len())),
        }
        // The bomb: one change of 4 million back-references.
        let body = request_with_wire_changes(&back_reference_bomb(1, 4_000_000));
        match decode::<SyncRequest>(&body) {
            Err(ProtocolError::OverLimit { what, .. }) => assert!(what.contains("dependencies"), "{what}"),
            other => panic!("not refused as over a limit: {:?}", other.map(|r| r.upload[0].changes[1].len())),
        }
        // Within the limits, the same shape decodes.
        let fine: SyncRequest = decode(&request_with_wire_changes(&back_reference_bomb(10, 3))).unwrap();
        assert_eq!(fine.upload[0].changes.len(), 11);
        assert_eq!(fine.upload[0].changes[10].len(), 4 + 4 + 1 + 1 + 1 + 3 * 32);
    }

    #[test]
    fn empty_items_are_charged_for_the_memory_they_take() {
        // A million empty batches: 3 MB on the wire, far more in memory.
        let mut raw = vec![1, 1, b'p', 2, b'a', b'a', 0, 0, 0];
        uleb(&mut raw, 1_000_000);
        for _ in 0..1_000_000 {
            raw.extend_from_slice(&[1, b's', 0, 0]);
        }
        let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&raw).unwrap();
        match decode::<SyncRequest>(&z.finish().unwrap()) {
            Err(ProtocolError::OverLimit { what, .. }) => assert!(what.contains("bytes"), "{what}"),
            other => panic!("not refused as over a limit: {:?}", other.map(|r| r.upload.len())),
        }
    }

    #[test]
    fn too_many_dependencies_or_changes_are_refused() {
        let mut deps = vec![1];
        uleb(&mut deps, 2_000);
        for _ in 0..2_000 {
            deps.push(0);
            deps.extend_from_slice(&[7; 32]);
        }
        match decode::<SyncRequest>(&request_with_wire_changes(&[deps])) {
            Err(ProtocolError::OverLimit { what, .. }) => assert!(what.contains("dependencies"), "{what}"),
            other => panic!("not refused as over a limit: {other:?}"),
        }
        let mut over = vec![vec![1, 0]; MAX_CHANGES_PER_REQUEST];
        let at_the_limit = request_with_wire_changes(&over);
        assert_eq!(
            decode_with::<SyncRequest>(&at_the_limit, &Limits::REQUEST).unwrap().upload[0].changes.len(),
            10_000
        );
        over.push(vec![1, 0]);
        match decode_with::<SyncRequest>(&request_with_wire_changes(&over), &Limits::REQUEST) {
            Err(ProtocolError::OverLimit { what, limit }) => assert_eq!((what, limit), ("changes in one body", 10_000)),
            other => panic!("not refused as over a limit: {other:?}"),
        }
        let many = vec![vec![1, 0]; 2_000_000];
        match decode::<SyncRequest>(&request_with_wire_changes(&many)) {
            Err(ProtocolError::OverLimit { what, .. }) => assert!(what.contains("changes"), "{what}"),
            other => panic!("not refused as over a limit: {:?}", other.map(|r| r.upload[0].changes.len())),
        }
    }
}
