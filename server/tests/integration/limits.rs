//! The hub's limits on what a client controls (docs/protocol.md, "Limits"):
//! each refused with a clear status and message, nothing stored, and the
//! device able to go on.

use fieldsync_core::protocol::{self, SectionBatch};
use fieldsync_server::limits;

use crate::common::*;
use crate::refusals::{refused, request, scene};

#[test]
fn oversized_ids_and_cursors_are_refused_before_anything_is_looked_up() {
    let s = scene();
    let actor = s.tina.replica.actor();
    let long = |n: usize| "a".repeat(n);
    let e = refused(&s, &s.tina.token, &protocol::encode(&request(&actor, &long(129), vec![])), 413, "too_large");
    assert!(e.message.contains("project id is 129 bytes"), "{}", e.message);
    // A hex actor id, but longer than any actor: it would have been bound.
    let e = refused(&s, &s.tina.token, &protocol::encode(&request(&long(66), PROJECT, vec![])), 413, "too_large");
    assert!(e.message.contains("actor id is 66 bytes"), "{}", e.message);
    let mut req = request(&actor, PROJECT, vec![]);
    req.cursor = format!("b:1:{}", long(300));
    let e = refused(&s, &s.tina.token, &protocol::encode(&req), 413, "too_large");
    assert!(e.message.contains("cursor is 304 bytes") && !e.message.contains(&long(300)), "{}", e.message);
    let upload = vec![SectionBatch::upload(long(5000), vec![b"not even a change".to_vec()])];
    let e = refused(&s, &s.tina.token, &protocol::encode(&request(&actor, PROJECT, upload)), 413, "too_large");
    assert!(e.message.contains("section id is 5000 bytes") && e.message.len() < 200, "{}", e.message);
    // At the limits, the same requests are served.
    let mut tina = s.tina;
    tina.round(&s.server);
    assert!(s.server.hub.create_project(&long(129), Default::default()).is_err());
    s.server.hub.create_project(&long(128), Default::default()).unwrap();
}

#[test]
fn too_many_changes_in_one_request_are_refused_in_process_too() {
    let s = scene();
    // Over HTTP the decoder counts them; a hub driven in-process checks them as well.
    let upload = vec![SectionBatch::upload(s.section.clone(), vec![vec![0; 8]; 10_001])];
    let before = stored(&s.server.hub);
    let e = s.server.hub.sync_request(&s.tina.token, request(&s.tina.replica.actor(), PROJECT, upload), 1).unwrap_err();
    assert_eq!(e.status(), (413, "too_large"));
    assert!(e.to_string().contains("10001 changes"), "{e}");
    assert_eq!(stored(&s.server.hub), before);
}

#[test]
fn a_device_syncs_as_at_most_sixteen_actors() {
    let s = scene();
    // tina's device already synced as its replica's actor; 15 more installs are fine.
    for i in 1..limits::MAX_ACTORS_PER_DEVICE {
        let actor = format!("{i:032x}");
        s.server.hub.sync_request(&s.tina.token, request(&actor, PROJECT, vec![]), 1).unwrap();
    }
    let e =
        refused(&s, &s.tina.token, &protocol::encode(&request(&"ff".repeat(16), PROJECT, vec![])), 403, "forbidden");
    assert!(e.message.contains("16 actors"), "{}", e.message);
    // The actors it has keep syncing.
    let mut tina = s.tina;
    tina.round(&s.server);
}

#[test]
fn a_change_over_the_limits_of_one_change_is_refused_and_the_device_goes_on() {
    let mut s = scene();
    let big = s.olga.replica.add_photo(&s.section, &"u".repeat(limits::MAX_CHANGE_BYTES), None).unwrap();
    let prepared = s.olga.replica.prepare_round(PROJECT, 4 << 20, 1 << 16).unwrap();
    let e = refused(&s, &s.olga.token, &protocol::encode(&prepared.request), 422, "refused");
    assert_eq!(e.refusals.len(), 1);
    assert_eq!((e.refusals[0].section.as_str(), e.refusals[0].rule.as_deref()), (s.section.as_str(), None));
    assert!(e.refusals[0].reason.contains("over the limit of 1048576 for one change"), "{}", e.refusals[0].reason);
    s.olga.replica.mark_refused(&e.refusals).unwrap();
    // Many operations in few bytes: a long stretch of notes, in another section
    // (what builds on a refused change is not sent).
    let notes = s.olga.replica.create_section(PROJECT, "notes", &route()).unwrap();
    s.olga.sync(&s.server);
    s.olga.replica.set_notes(&notes, &"n".repeat(limits::MAX_CHANGE_OPS + 1)).unwrap();
    let prepared = s.olga.replica.prepare_round(PROJECT, 4 << 20, 1 << 16).unwrap();
    let e = refused(&s, &s.olga.token, &protocol::encode(&prepared.request), 422, "refused");
    assert!(e.refusals[0].reason.contains("100001 operations"), "{}", e.refusals[0].reason);
    s.olga.replica.mark_refused(&e.refusals).unwrap();
    // Kept on the device, not sent again; the next edits sync.
    assert_eq!(s.olga.replica.sync_status().unwrap().refused_changes, 2);
    let other = s.olga.replica.create_section(PROJECT, "next", &route()).unwrap();
    s.olga.sync(&s.server);
    assert!(s.server.hub.section_view(&other).unwrap().is_some());
    assert!(s.server.hub.section_view(&s.section).unwrap().unwrap().photos.iter().all(|p| p.id != big));
}

#[test]
fn a_section_at_the_document_limit_takes_no_more_changes_and_stays_readable() {
    let mut s = scene();
    // Photos of about 1 MB each: eight fit in a section document, the ninth does not.
    let uri = "u".repeat(1_000_000);
    for _ in 0..8 {
        s.olga.replica.add_photo(&s.section, &uri, None).unwrap();
        s.olga.sync(&s.server);
    }
    s.olga.replica.add_photo(&s.section, &uri, None).unwrap();
    let prepared = s.olga.replica.prepare_round(PROJECT, 4 << 20, 1 << 16).unwrap();
    let e = refused(&s, &s.olga.token, &protocol::encode(&prepared.request), 422, "refused");
    assert_eq!(e.refusals.len(), 1);
    assert!(e.refusals[0].reason.contains("takes no more changes"), "{}", e.refusals[0].reason);
    s.olga.replica.mark_refused(&e.refusals).unwrap();
    s.olga.sync(&s.server);
    // What was stored stays readable: the hub's view, and a new device's bootstrap.
    assert_eq!(s.server.hub.section_view(&s.section).unwrap().unwrap().photos.len(), 8);
    let mut tablet = Device::enroll(&s.server.hub, s._dir.path(), "olga");
    tablet.sync(&s.server);
    assert_eq!(tablet.replica.section(&s.section).unwrap().photos.len(), 8);
}
