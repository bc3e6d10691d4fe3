//! Bad input, each refused over real HTTP with the right status and a clear
//! error body, and nothing stored.

use std::io::Write;

use automerge::transaction::Transactable;
use fieldsync_core::protocol::{self, PROTOCOL_VERSION, SectionBatch, SyncRequest};
use fieldsync_core::{GeoPoint, Member, ProjectConfig, Role};

use crate::common::*;

pub fn request(actor: &str, project: &str, upload: Vec<SectionBatch>) -> SyncRequest {
    SyncRequest {
        protocol: PROTOCOL_VERSION,
        project: project.into(),
        actor: actor.into(),
        cursor: "c:0".into(),
        roster_version: 0,
        response_budget: protocol::DEFAULT_RESPONSE_BUDGET,
        upload,
        scope: Default::default(),
        held: None,
    }
}

/// A hub where olga (office) made a section and tina (technician) holds it.
pub struct Scene {
    pub _dir: tempfile::TempDir,
    pub server: TestServer,
    pub olga: Device,
    pub tina: Device,
    pub section: String,
}

pub fn scene() -> Scene {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(hub_with(dir.path(), &[("olga", Role::Office), ("tina", Role::Technician)]));
    let mut olga = Device::enroll(&server.hub, dir.path(), "olga");
    let mut tina = Device::enroll(&server.hub, dir.path(), "tina");
    olga.sync(&server);
    let section = olga.replica.create_section(PROJECT, "Hauptstraße north", &route()).unwrap();
    olga.sync(&server);
    tina.sync(&server);
    Scene { _dir: dir, server, olga, tina, section }
}

/// Send `body` as `token`, expect `status` and `code`, and check nothing was stored.
pub fn refused(s: &Scene, token: &str, body: &[u8], status: u16, code: &str) -> protocol::ErrorBody {
    let before = stored(&s.server.hub);
    let reply = post_sync(s.server.addr, token, body);
    assert_eq!(reply.status, status, "{:?}", String::from_utf8_lossy(&reply.body));
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let error = reply.error();
    assert_eq!(error.error, code);
    assert!(!error.message.is_empty());
    assert_eq!(stored(&s.server.hub), before, "a refused request changed something");
    error
}

#[test]
fn another_devices_actor_is_forbidden() {
    let mut s = scene();
    // tina sends olga's round, actor and all.
    s.olga.replica.rename_section(&s.section, "renamed").unwrap();
    let olgas = s.olga.replica.prepare_round(PROJECT, 1 << 20, 1 << 16).unwrap();
    let e = refused(&s, &s.tina.token, &protocol::encode(&olgas.request), 403, "forbidden");
    assert!(e.message.contains("another device"), "{}", e.message);
    // tina, as herself, relays a change olga's actor made.
    let olgas_change = s.olga.replica.changes_of(&s.section, &[]).unwrap().pop().unwrap();
    let upload = vec![SectionBatch::upload(s.section.clone(), vec![olgas_change])];
    let e = refused(
        &s,
        &s.tina.token,
        &protocol::encode(&request(&s.tina.replica.actor(), PROJECT, upload)),
        403,
        "forbidden",
    );
    assert!(e.message.contains("not this device's"), "{}", e.message);
    // olga's own round still goes through.
    s.olga.sync(&s.server);
}

#[test]
fn a_technicians_route_is_stored_and_rejected_by_the_rules_not_refused() {
    let mut s = scene();
    // The phone believes it is office (a tampered or stale roster); the hub knows better.
    let olga = Member { actor: s.olga.replica.actor(), user: "olga".into(), role: Role::Office };
    let me = Member { actor: s.tina.replica.actor(), user: "tina".into(), role: Role::Office };
    s.tina.replica.set_roster(PROJECT, &[olga, me]).unwrap();
    let receipt = s
        .tina
        .replica
        .set_route(&s.section, &[GeoPoint { lat: 48.1, lon: 11.0 }, GeoPoint { lat: 48.1, lon: 11.02 }])
        .unwrap();
    // A rule violation is no attack: the round goes through, the change is
    // stored, and the rules reject the write like on every replica.
    s.tina.sync(&s.server);
    assert_eq!(
        s.tina.replica.sync_status().unwrap(),
        fieldsync_core::SyncStatus {
            last_success_ms: s.tina.replica.sync_status().unwrap().last_success_ms,
            ..Default::default()
        }
    );
    assert_eq!(s.server.hub.section_view(&s.section).unwrap().unwrap().route, route());
    let conflicts = s.server.hub.conflicts(PROJECT).unwrap();
    let rejection = conflicts.iter().find(|c| c.candidates.iter().any(|x| x.change_hash == receipt.change_hash));
    let rejection = rejection.expect("the rejection is recorded");
    assert_eq!(rejection.rule, fieldsync_core::Rule::OfficeOnly);
    assert!(rejection.explanation.contains("technician"), "{}", rejection.explanation);
    // Every other replica records the same rejection.
    s.olga.sync(&s.server);
    assert!(s.olga.replica.conflicts(Some(&s.section)).unwrap().iter().any(|c| c.id == rejection.id));
}

#[test]
fn a_token_for_another_project_is_forbidden() {
    let s = scene();
    s.server.hub.create_project("p2", ProjectConfig::default()).unwrap();
    let body = protocol::encode(&request(&s.tina.replica.actor(), "p2", vec![]));
    let e = refused(&s, &s.tina.token, &body, 403, "forbidden");
    assert!(e.message.contains("not a member"), "{}", e.message);
}

#[test]
fn a_section_of_another_project_is_forbidden() {
    let mut s = scene();
    s.server.hub.create_project("p2", ProjectConfig::default()).unwrap();
    s.server.hub.add_member("p2", "olga", Role::Office).unwrap();
    // A new change to a p1 section, sent as p2.
    s.olga.replica.rename_section(&s.section, "moved?").unwrap();
    let mut prepared = s.olga.replica.prepare_round(PROJECT, 1 << 20, 1 << 16).unwrap();
    prepared.request.project = "p2".into();
    prepared.request.cursor = "c:0".into(); // p1's cursor means nothing in p2.
    let e = refused(&s, &s.olga.token, &protocol::encode(&prepared.request), 403, "forbidden");
    assert!(e.message.contains("another project"), "{}", e.message);
    // A new section of p1, sent as p2.
    s.olga.sync(&s.server);
    s.olga.replica.create_section(PROJECT, "new", &route()).unwrap();
    let mut prepared = s.olga.replica.prepare_round(PROJECT, 1 << 20, 1 << 16).unwrap();
    prepared.request.project = "p2".into();
    prepared.request.cursor = "c:0".into(); // p1's cursor means nothing in p2.
    refused(&s, &s.olga.token, &protocol::encode(&prepared.request), 403, "forbidden");
}

#[test]
fn a_revoked_or_missing_token_is_unauthorized() {
    let s = scene();
    let body = protocol::encode(&request(&s.tina.replica.actor(), PROJECT, vec![]));
    s.server.hub.revoke_device(&s.tina.id).unwrap();
    let e = refused(&s, &s.tina.token, &body, 401, "unauthorized");
    assert!(e.message.contains("revoked"), "{}", e.message);
    refused(&s, "", &body, 401, "unauthorized");
    refused(&s, &"ab".repeat(32), &body, 401, "unauthorized");
}

#[test]
fn a_body_over_the_limit_is_refused_before_it_is_read() {
    let s = scene();
    let before = stored(&s.server.hub);
    // Claims 100 MB; only the head and 1 KiB are ever sent.
    let head = format!(
        "POST /v1/sync HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: {}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        s.tina.token,
        protocol::CONTENT_TYPE,
        100 * 1024 * 1024
    );
    let reply = raw(s.server.addr, &head, &[0u8; 1024]);
    assert_eq!(reply.status, 413);
    assert_eq!(reply.error().error, "too_large");
    assert_eq!(stored(&s.server.hub), before);
}

#[test]
fn a_decompression_bomb_is_refused() {
    let s = scene();
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&vec![0u8; protocol::MAX_INFLATED_BYTES + 1024]).unwrap();
    let bomb = z.finish().unwrap();
    assert!(bomb.len() < 200_000);
    refused(&s, &s.tina.token, &bomb, 413, "too_large");
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

/// A request (postcard by hand, deflated) uploading one batch of `changes`
/// packed changes after a first one, each naming the change before it `refs`
/// times: every one-byte back-reference is a 32-byte hash once unpacked.
pub fn unpack_bomb(actor: &str, changes: usize, refs: usize) -> Vec<u8> {
    let mut raw = vec![1, 2, b'p', b'1'];
    uleb(&mut raw, actor.len() as u64);
    raw.extend_from_slice(actor.as_bytes());
    raw.extend_from_slice(&[3, b'c', b':', b'0', 0, 0, 1, 1, b's']);
    uleb(&mut raw, changes as u64 + 1);
    raw.extend_from_slice(&[2, 1, 0]);
    let mut change = vec![1];
    uleb(&mut change, refs as u64);
    for _ in 0..changes {
        uleb(&mut raw, (change.len() + refs) as u64);
        raw.extend_from_slice(&change);
        raw.resize(raw.len() + refs, 1);
    }
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&raw).unwrap();
    z.finish().unwrap()
}

#[test]
fn packed_changes_that_unpack_past_the_limits_are_refused_before_they_expand() {
    let s = scene();
    let actor = s.tina.replica.actor();
    // 4,000 changes of 1,000 back-references: 4 MB inflated, 128 MiB unpacked.
    let bomb = unpack_bomb(&actor, 4_000, 1_000);
    assert!(bomb.len() < 100_000, "{}", bomb.len());
    let e = refused(&s, &s.tina.token, &bomb, 413, "too_large");
    assert!(e.message.contains("unpacked"), "{}", e.message);
    // One change of 4 million back-references.
    let e = refused(&s, &s.tina.token, &unpack_bomb(&actor, 1, 4_000_000), 413, "too_large");
    assert!(e.message.contains("dependencies of one change"), "{}", e.message);
    // The bomb: 67 million back-references, 64 MiB inflated, 2 GiB unpacked.
    let e = refused(&s, &s.tina.token, &unpack_bomb(&actor, 1, 67_000_000), 413, "too_large");
    assert!(e.message.contains("inflated"), "{}", e.message);
}

#[test]
fn garbage_is_malformed() {
    let s = scene();
    refused(&s, &s.tina.token, b"\x00\x01 this is not a sync request", 400, "malformed");
    refused(&s, &s.tina.token, &protocol::encode(&"a string, not a request"), 400, "malformed");
    // The wrong content type.
    let reply = raw(
        s.server.addr,
        &format!(
            "POST /v1/sync HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n\
             Content-Length: 2\r\nConnection: close\r\n\r\n",
            s.tina.token
        ),
        b"{}",
    );
    assert_eq!((reply.status, reply.error().error.as_str()), (400, "malformed"));
}

#[test]
fn an_undecodable_change_is_malformed() {
    let s = scene();
    let upload = vec![SectionBatch::upload(s.section.clone(), vec![b"not an automerge change".to_vec()])];
    let e = refused(
        &s,
        &s.tina.token,
        &protocol::encode(&request(&s.tina.replica.actor(), PROJECT, upload)),
        400,
        "malformed",
    );
    assert!(e.message.contains("not an Automerge change"), "{}", e.message);
}

#[test]
fn a_change_whose_dependencies_are_missing_is_malformed() {
    let mut s = scene();
    s.olga.replica.rename_section(&s.section, "first").unwrap();
    s.olga.replica.rename_section(&s.section, "second").unwrap();
    let mut prepared = s.olga.replica.prepare_round(PROJECT, 1 << 20, 1 << 16).unwrap();
    assert_eq!(prepared.request.upload[0].changes.len(), 2);
    prepared.request.upload[0].changes.remove(0);
    let e = refused(&s, &s.olga.token, &protocol::encode(&prepared.request), 400, "malformed");
    assert!(e.message.contains("depend on"), "{}", e.message);
    // Both together are fine.
    s.olga.sync(&s.server);
    assert_eq!(s.server.hub.section_view(&s.section).unwrap().unwrap().name, "second");
}

#[test]
fn a_document_that_is_not_a_section_is_malformed() {
    let s = scene();
    let actor = automerge::ActorId::try_from(s.olga.replica.actor().as_str()).unwrap();
    let mut doc = automerge::Automerge::new().with_actor(actor);
    let mut tx = doc.transaction();
    tx.put(automerge::ROOT, "hello", "world").unwrap();
    tx.commit();
    let change = doc.get_last_local_change().unwrap().raw_bytes().to_vec();
    let upload = vec![SectionBatch::upload("not-a-section", vec![change])];
    let e = refused(
        &s,
        &s.olga.token,
        &protocol::encode(&request(&s.olga.replica.actor(), PROJECT, upload)),
        400,
        "malformed",
    );
    assert!(e.message.contains("section"), "{}", e.message);
}

#[test]
fn an_unknown_project_is_not_found() {
    let s = scene();
    let body = protocol::encode(&request(&s.tina.replica.actor(), "nope", vec![]));
    let e = refused(&s, &s.tina.token, &body, 404, "unknown_project");
    assert!(e.message.contains("nope"), "{}", e.message);
}

#[test]
fn another_protocol_version_is_upgrade_required() {
    let s = scene();
    let mut req = request(&s.tina.replica.actor(), PROJECT, vec![]);
    req.protocol = PROTOCOL_VERSION + 1;
    refused(&s, &s.tina.token, &protocol::encode(&req), 426, "protocol_version");
}

#[test]
fn an_unknown_cursor_is_refused_as_such() {
    let s = scene();
    let mut req = request(&s.tina.replica.actor(), PROJECT, vec![]);
    req.cursor = "z:9".into();
    refused(&s, &s.tina.token, &protocol::encode(&req), 400, "unknown_cursor");
    // A cursor past the feed comes from a server whose data this one does not have.
    req.cursor = "c:999999".into();
    refused(&s, &s.tina.token, &protocol::encode(&req), 400, "unknown_cursor");
}

#[test]
fn rewriting_someone_elses_record_is_refused() {
    use automerge::ReadDoc;
    let s = scene();
    // tina edits the fields of olga's route record in place with raw Automerge:
    // the rules would take the new points as olga's (office) write.
    let mut tina = s.tina;
    let saved = tina.replica.export(&s.section).unwrap();
    let actor = automerge::ActorId::try_from(tina.replica.actor().as_str()).unwrap();
    let mut doc = automerge::Automerge::load(&saved).unwrap().with_actor(actor);
    let (_, edits) = doc.get(automerge::ROOT, "edits").unwrap().unwrap();
    let route_record = doc
        .map_range(&edits, ..)
        .map(|item| item.id())
        .find(|rec| {
            matches!(doc.get(rec, "field"), Ok(Some((automerge::Value::Scalar(v), _))) if v.as_str() == Some("route"))
        })
        .unwrap();
    let mut tx = doc.transaction();
    tx.put(&route_record, "points", "[{\"lat\":48.5,\"lon\":11.0},{\"lat\":48.5,\"lon\":11.1}]").unwrap();
    tx.commit();
    let change = doc.get_last_local_change().unwrap();
    let hash = change.hash().to_string();
    let upload = vec![SectionBatch::upload(s.section.clone(), vec![change.raw_bytes().to_vec()])];
    let body = protocol::encode(&request(&tina.replica.actor(), PROJECT, upload));
    let scene = Scene { tina, ..s };
    let e = refused(&scene, &scene.tina.token, &body, 422, "refused");
    assert_eq!(e.refusals.len(), 1);
    assert_eq!((e.refusals[0].hash.as_str(), e.refusals[0].rule.as_deref()), (hash.as_str(), None));
    assert!(e.refusals[0].reason.contains("never rewritten"), "{}", e.refusals[0].reason);
    assert_eq!(scene.server.hub.section_view(&scene.section).unwrap().unwrap().route, route());
}

#[test]
fn a_forged_stamp_is_refused_with_the_rule() {
    let mut s = scene();
    // tina's device writes a record stamped as olga's actor: only a tampered client does.
    let mut doc = fieldsync_core::SectionDoc::load(&s.tina.replica.export(&s.section).unwrap()).unwrap();
    doc.set_actor(automerge::ActorId::from(hex::decode(s.tina.replica.actor()).unwrap()));
    let forged = fieldsync_core::Hlc { physical_ms: 1, counter: 0, actor: s.olga.replica.actor() };
    let value =
        fieldsync_core::EditValue::Progress { percent: 5, at_state: fieldsync_core::ConstructionState::Planned };
    let change = doc.write(&forged, None, &value).unwrap();
    let upload = vec![SectionBatch::upload(s.section.clone(), vec![change.raw_bytes().to_vec()])];
    let body = protocol::encode(&request(&s.tina.replica.actor(), PROJECT, upload));
    let e = refused(&s, &s.tina.token, &body, 422, "refused");
    assert_eq!(e.refusals.len(), 1);
    assert_eq!(e.refusals[0].rule.as_deref(), Some("forged_stamp"));
    assert_eq!(e.refusals[0].hash, change.hash().to_string());
}

#[test]
fn a_revoked_device_enrolled_again_keeps_and_uploads_its_unsynced_edits() {
    let mut s = scene();
    // tina works offline; meanwhile her phone's token is revoked.
    s.tina.replica.set_notes(&s.section, "duct 3 crushed").unwrap();
    s.server.hub.revoke_device(&s.tina.id).unwrap();
    let prepared = s.tina.replica.prepare_round(PROJECT, 1 << 20, 1 << 16).unwrap();
    refused(&s, &s.tina.token, &protocol::encode(&prepared.request), 401, "unauthorized");
    // Enrolled again (a new device id and token), the same phone and store sync on.
    let again = s.server.hub.enroll_device("tina", "tina's phone, again").unwrap();
    s.tina.token = again.token;
    s.tina.sync(&s.server);
    assert_eq!(s.tina.replica.sync_status().unwrap().pending_changes, 0);
    assert_eq!(s.server.hub.section_view(&s.section).unwrap().unwrap().notes, "duct 3 crushed");
    // Another user's new device cannot take the actor over.
    let mallory = s.server.hub.enroll_device("olga", "olga's second phone").unwrap();
    let body = protocol::encode(&request(&s.tina.replica.actor(), PROJECT, vec![]));
    refused(&s, &mallory.token, &body, 403, "forbidden");
}
