//! The wire format, pinned: snapshots of example messages (docs/protocol.md
//! is the normative description). A body is `deflate(postcard(message))`; the
//! snapshots hold the postcard bytes, which are what the format defines (the
//! deflate stream of the same bytes may differ between compressors).

use std::io::Read;

use fieldsync_core::protocol::{
    self, ErrorBody, PROTOCOL_VERSION, Refusal, RosterUpdate, SectionBatch, SectionDocument, SyncRequest, SyncResponse,
};
use fieldsync_core::{FullSizePhotos, Member, ProjectConfig, Role, RoleChange};

const ACTOR: &str = "0123456789abcdef0123456789abcdef";

fn dump<T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(message: &T) -> String {
    dump_read_by(message, |body| protocol::decode::<T>(body))
}

/// A response, read back as devices read it (`decode_response`).
fn dump_response(message: &SyncResponse) -> String {
    dump_read_by(message, protocol::decode_response)
}

fn dump_read_by<T: serde::Serialize + PartialEq + std::fmt::Debug>(
    message: &T,
    read: impl Fn(&[u8]) -> Result<T, protocol::ProtocolError>,
) -> String {
    let body = protocol::encode(message);
    let mut inflated = Vec::new();
    flate2::read::DeflateDecoder::new(body.as_slice()).read_to_end(&mut inflated).unwrap();
    let raw = postcard::to_allocvec(message).unwrap();
    assert_eq!(inflated, raw, "a body is deflate(postcard(message))");
    assert_eq!(&read(&body).unwrap(), message);
    let mut out = format!("postcard, {} bytes:\n", raw.len());
    for (i, line) in raw.chunks(16).enumerate() {
        let hex: Vec<String> = line.iter().map(|b| format!("{b:02x}")).collect();
        out.push_str(&format!("{:04x}: {}\n", i * 16, hex.join(" ")));
    }
    out
}

pub fn example_request() -> SyncRequest {
    SyncRequest {
        protocol: PROTOCOL_VERSION,
        project: "p1".into(),
        actor: ACTOR.into(),
        cursor: "c:42".into(),
        roster_version: 3,
        response_budget: protocol::DEFAULT_RESPONSE_BUDGET,
        upload: vec![SectionBatch::upload("s1", vec![vec![0x85, 0x6f, 0x4a, 0x83, 1, 2, 3]])],
        scope: Default::default(),
        held: None,
    }
}

pub fn example_response() -> SyncResponse {
    SyncResponse {
        server_time_ms: 1_700_000_000_000,
        changes: vec![SectionBatch {
            section: "s1".into(),
            changes: vec![vec![1, 2, 3], vec![4]],
            received: vec![1_699_999_999_000, 1_700_000_000_000],
        }],
        documents: vec![SectionDocument {
            section: "s2".into(),
            document: vec![5, 6],
            received: vec![1_699_000_000_000],
        }],
        cursor: "c:43".into(),
        more: true,
        roster: Some(RosterUpdate {
            version: 4,
            members: vec![Member { actor: ACTOR.into(), user: "tina".into(), role: Role::Technician }],
            history: vec![RoleChange { user: "tina".into(), role: Some(Role::Technician), at_ms: 1_699_999_000_000 }],
            config: ProjectConfig { full_size_photos: FullSizePhotos::OnUnmeteredLinks, ..ProjectConfig::default() },
        }),
        upload_received: vec![1_700_000_000_000],
        evicted: vec![],
        keep_only: None,
        still_to_send: None,
        full_size_photos: Some(FullSizePhotos::OnUnmeteredLinks),
    }
}

#[test]
fn sync_request() {
    insta::assert_snapshot!("sync_request", dump(&example_request()));
}

#[test]
fn sync_response() {
    insta::assert_snapshot!("sync_response", dump_response(&example_response()));
}

/// Two real changes of one section, the second building on the first, with a
/// fixed actor and time: their packed wire form (docs/protocol.md, "Changes in
/// a batch") and that it unpacks to the very same chunks.
#[test]
fn packed_changes() {
    use automerge::transaction::{CommitOptions, Transactable};
    let actor = automerge::ActorId::from(hex::decode(ACTOR).unwrap());
    let mut doc = automerge::AutoCommit::new().with_actor(actor);
    doc.put(automerge::ROOT, "fieldsync", 1).unwrap();
    doc.commit_with(CommitOptions::default().with_time(0));
    doc.put(automerge::ROOT, "id", "s1").unwrap();
    doc.commit_with(CommitOptions::default().with_time(0));
    let changes: Vec<Vec<u8>> = doc.get_changes(&[]).iter().map(|c| c.raw_bytes().to_vec()).collect();
    let batch = SectionBatch::upload("s1", changes.clone());
    let hexdump = |label: &str, bytes: &[u8]| {
        let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!("{label} ({} bytes): {}\n", bytes.len(), hex.join(" "))
    };
    let mut out = String::new();
    for (i, c) in changes.iter().enumerate() {
        out.push_str(&hexdump(&format!("change {i}"), c));
    }
    for (i, w) in fieldsync_core::pack::pack(&changes).iter().enumerate() {
        out.push_str(&hexdump(&format!("wire {i}"), w));
    }
    out.push_str(&dump(&batch));
    assert_eq!(fieldsync_core::pack::unpack(fieldsync_core::pack::pack(&changes)).unwrap(), changes);
    insta::assert_snapshot!("packed_changes", out);
}

#[test]
fn idle_round_messages() {
    let request = SyncRequest { upload: vec![], ..example_request() };
    let response = SyncResponse {
        changes: vec![],
        documents: vec![],
        more: false,
        roster: None,
        upload_received: vec![],
        evicted: vec![],
        keep_only: None,
        still_to_send: None,
        full_size_photos: None,
        ..example_response()
    };
    insta::assert_snapshot!("idle_request", dump(&request));
    insta::assert_snapshot!("idle_response", dump_response(&response));
}

#[test]
fn error_bodies() {
    let refused = ErrorBody {
        error: "refused".into(),
        message: "1 change(s) refused by the project's rules; nothing of this request was stored".into(),
        refusals: vec![Refusal {
            section: "s1".into(),
            hash: "ab".repeat(32),
            rule: Some("office_only".into()),
            reason: "only office staff may change the name or route; tina is a technician".into(),
        }],
        retry_after_s: None,
    };
    insta::assert_snapshot!("error_refused", serde_json::to_string_pretty(&refused).unwrap());
    let plain = fieldsync_server::HubError::UnknownProject("nope".into()).body();
    insta::assert_snapshot!("error_unknown_project", serde_json::to_string_pretty(&plain).unwrap());
}

#[test]
fn every_error_maps_to_its_status() {
    use fieldsync_server::HubError as E;
    let cases = [
        (E::Malformed("m".into()), 400, "malformed"),
        (E::UnknownCursor("c".into()), 400, "unknown_cursor"),
        (E::Unauthorized("u".into()), 401, "unauthorized"),
        (E::Forbidden("f".into()), 403, "forbidden"),
        (E::UnknownProject("p".into()), 404, "unknown_project"),
        (E::TooLarge("t".into()), 413, "too_large"),
        (E::Refused(vec![]), 422, "refused"),
        (E::ProtocolVersion { found: 9 }, 426, "protocol_version"),
        (E::Timeout("t".into()), 408, "timeout"),
        (E::RateLimited { message: "r".into(), retry_after_s: 3 }, 429, "rate_limited"),
        (E::Busy { message: "b".into(), retry_after_s: 1 }, 503, "busy"),
        (E::Storage(std::io::Error::from(std::io::ErrorKind::StorageFull).into()), 507, "server_full"),
        (E::Storage(rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(13), None).into()), 507, "server_full"),
        (E::Storage(std::io::Error::other("bad sector").into()), 500, "internal"),
    ];
    for (e, status, code) in cases {
        assert_eq!(e.status(), (status, code));
        assert_eq!(e.body().error, code);
    }
    let full = E::Storage(std::io::Error::from(std::io::ErrorKind::StorageFull).into()).body();
    assert_eq!(full.retry_after_s, Some(60), "someone has to free space first");
    assert!(
        full.message.contains("the server's disk is full") && full.message.contains("nothing of this request was lost")
    );
}
