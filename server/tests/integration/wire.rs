//! The wire format, pinned: snapshots of example messages (docs/protocol.md
//! is the normative description). A body is `deflate(postcard(message))`; the
//! snapshots hold the postcard bytes, which are what the format defines (the
//! deflate stream of the same bytes may differ between compressors).

use std::io::Read;

use fieldsync_core::protocol::{
    self, ErrorBody, PROTOCOL_VERSION, Refusal, RosterUpdate, SectionBatch, SectionDocument, SyncRequest, SyncResponse,
};
use fieldsync_core::{Member, ProjectConfig, Role};

const ACTOR: &str = "0123456789abcdef0123456789abcdef";

fn dump<T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(message: &T) -> String {
    let body = protocol::encode(message);
    let mut inflated = Vec::new();
    flate2::read::DeflateDecoder::new(body.as_slice()).read_to_end(&mut inflated).unwrap();
    let raw = postcard::to_allocvec(message).unwrap();
    assert_eq!(inflated, raw, "a body is deflate(postcard(message))");
    assert_eq!(&protocol::decode::<T>(&body).unwrap(), message);
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
        upload: vec![SectionBatch { section: "s1".into(), changes: vec![vec![0x85, 0x6f, 0x4a, 0x83, 1, 2, 3]] }],
    }
}

pub fn example_response() -> SyncResponse {
    SyncResponse {
        server_time_ms: 1_700_000_000_000,
        changes: vec![SectionBatch { section: "s1".into(), changes: vec![vec![1, 2, 3], vec![4]] }],
        documents: vec![SectionDocument { section: "s2".into(), document: vec![5, 6] }],
        cursor: "c:43".into(),
        more: true,
        roster: Some(RosterUpdate {
            version: 4,
            members: vec![Member { actor: ACTOR.into(), user: "tina".into(), role: Role::Technician }],
            config: ProjectConfig::default(),
        }),
    }
}

#[test]
fn sync_request() {
    insta::assert_snapshot!("sync_request", dump(&example_request()));
}

#[test]
fn sync_response() {
    insta::assert_snapshot!("sync_response", dump(&example_response()));
}

#[test]
fn idle_round_messages() {
    let request = SyncRequest { upload: vec![], ..example_request() };
    let response = SyncResponse { changes: vec![], documents: vec![], more: false, roster: None, ..example_response() };
    insta::assert_snapshot!("idle_request", dump(&request));
    insta::assert_snapshot!("idle_response", dump(&response));
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
        (E::Unauthorized("u".into()), 401, "unauthorized"),
        (E::Forbidden("f".into()), 403, "forbidden"),
        (E::UnknownProject("p".into()), 404, "unknown_project"),
        (E::TooLarge("t".into()), 413, "too_large"),
        (E::Refused(vec![]), 422, "refused"),
        (E::ProtocolVersion { found: 9 }, 426, "protocol_version"),
    ];
    for (e, status, code) in cases {
        assert_eq!(e.status(), (status, code));
        assert_eq!(e.body().error, code);
    }
}
