//! Mutated uploads through the hub: a device's real changes with bytes
//! flipped, cut or inserted, and every input that ever made Automerge panic
//! (core's `fuzz-regressions/`): the hub answers each with a status, never a
//! panic, and stays usable.

use fieldsync_core::protocol::SectionBatch;
use proptest::prelude::*;

use crate::common::*;
use crate::refusals::{Scene, request, scene};

fn mutated(mut bytes: Vec<u8>, at: usize, how: u8) -> Vec<u8> {
    let i = at % bytes.len().max(1);
    match how % 4 {
        0 if !bytes.is_empty() => bytes[i] ^= 0x5a,
        1 if !bytes.is_empty() => bytes[i] = 0,
        2 => bytes.truncate(i),
        _ => bytes.insert(i, 0x80),
    }
    bytes
}

/// Upload `changes` as a batch of `s.section` from olga, in-process: its status.
fn upload(s: &Scene, changes: Vec<Vec<u8>>) -> u16 {
    let batch = SectionBatch::upload(s.section.clone(), changes);
    match s.server.hub.sync_request(&s.olga.token, request(&s.olga.replica.actor(), PROJECT, vec![batch]), 1) {
        Ok(_) => 200,
        Err(e) => e.status().0,
    }
}

/// A regression file's changes: `chain-*` files hold several, each after its length.
fn regression_changes(path: &std::path::Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    if !path.file_name().unwrap().to_string_lossy().starts_with("chain-") {
        return vec![bytes];
    }
    let (mut rest, mut chain) = (&bytes[..], Vec::new());
    while let Some((len, tail)) = rest.split_first_chunk::<4>() {
        let len = (u32::from_le_bytes(*len) as usize).min(tail.len());
        chain.push(tail[..len].to_vec());
        rest = &tail[len..];
    }
    chain
}

#[test]
fn inputs_that_made_automerge_panic_are_refused_by_the_hub() {
    let s = scene();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/integration/fuzz-regressions");
    let (mut answered, mut reached_automerge) = (0, 0);
    for (n, entry) in std::fs::read_dir(dir).unwrap().enumerate() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "bin") {
            continue;
        }
        let changes = regression_changes(&path);
        // Upload them as their own actor's, bound to olga's device by this very round,
        // so that they reach Automerge.
        let actor = changes.iter().find_map(|c| automerge::Change::from_bytes(c.clone()).ok());
        let actor = actor.map_or_else(|| s.olga.replica.actor(), |c| c.actor_id().to_hex_string());
        let batch = SectionBatch::upload(format!("fuzz-{n}"), changes);
        let answer = s.server.hub.sync_request(&s.olga.token, request(&actor, PROJECT, vec![batch]), 1);
        let e = answer.err().unwrap_or_else(|| panic!("{} was stored", path.display()));
        assert!((400..500).contains(&e.status().0), "{}: {e}", path.display());
        reached_automerge += usize::from(e.to_string().contains("automerge failed"));
        answered += 1;
    }
    assert!(answered > 0 && reached_automerge > 0, "{answered} answered, {reached_automerge} reached Automerge");
    let mut olga = s.olga;
    olga.round(&s.server);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_uploads_never_panic_the_hub(mutations in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4)) {
        let mut s = scene();
        s.olga.replica.rename_section(&s.section, "renamed").unwrap();
        s.olga.replica.set_notes(&s.section, "a note").unwrap();
        let mut changes = s.olga.replica.prepare_round(PROJECT, 1 << 20, 1 << 16).unwrap().request.upload.remove(0).changes;
        let pick = mutations[0].0 % changes.len();
        changes[pick] = mutations.iter().fold(changes[pick].clone(), |c, (at, how)| mutated(c, *at, *how));
        let status = upload(&s, changes);
        prop_assert!(status == 200 || (400..500).contains(&status), "{}", status);
        // The hub goes on serving: another device's round goes through, and so
        // does olga's unless the mutated change was stored in place of her real
        // one (the same actor and sequence number: her own device damaged her
        // actor's history, which only she could do).
        s.tina.round(&s.server);
        if status != 200 {
            s.olga.round(&s.server);
        }
    }
}
