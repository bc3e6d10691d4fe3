//! Structured fuzzing of the decoders a client's (or a server's) bytes reach:
//! the body decoder, unpacking, a section document's loader, a change's
//! parser. Real messages, changes and documents, mutated (bytes flipped, set,
//! inserted, removed, cut off, duplicated), and plain garbage: a bounded
//! number of cases, zero panics (`FIELDSYNC_FUZZ_CASES=100000` for a longer
//! run). Every input that ever panicked is kept in `fuzz-regressions/` and
//! replayed by `regressions_replay_without_panics`; a run with
//! `FIELDSYNC_FUZZ_SAVE=<dir>` saves the inputs Automerge panicked on (caught).

use std::io::Write;
use std::sync::OnceLock;

use fieldsync_core::pack;
use fieldsync_core::protocol::{self, Limits, PROTOCOL_VERSION, SectionBatch, SyncRequest, SyncResponse};
use fieldsync_core::{DocumentError, Replica, Role, SectionDoc};
use proptest::prelude::*;

use crate::common::{PROJECT, crew, route};

/// A section's real changes (a chain, with notes and a photo) and its saved document.
struct Corpus {
    changes: Vec<Vec<u8>>,
    document: Vec<u8>,
}

fn corpus() -> &'static Corpus {
    static CORPUS: OnceLock<Corpus> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let mut replicas = crew(dir.path(), &[Role::Office]);
        let r: &mut Replica = &mut replicas[0];
        let id = r.create_section(PROJECT, "Hauptstraße north", &route()).unwrap();
        r.rename_section(&id, "Hauptstraße north, part 2").unwrap();
        r.record_progress(&id, 10).unwrap();
        r.set_notes(&id, "conduit laid at km 0.4; a bend at the bridge").unwrap();
        r.add_photo(&id, "photo://1", Some("the bridge")).unwrap();
        Corpus { changes: r.changes_of(&id, &[]).unwrap(), document: r.export(&id).unwrap() }
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    Truncate(usize),
    Duplicate(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<usize>();
    prop_oneof![
        (at, 1..=255u8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (at, prop_oneof![Just(0u8), Just(1), Just(0x7f), Just(0x80), Just(0xff), any::<u8>()])
            .prop_map(|(i, b)| Mutation::Set(i, b)),
        (at, prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(i, v)| Mutation::Insert(i, v)),
        (at, 1..64usize).prop_map(|(i, n)| Mutation::Remove(i, n)),
        at.prop_map(Mutation::Truncate),
        (at, 1..64usize).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len().max(1);
        match m {
            Mutation::Flip(i, b) if !bytes.is_empty() => bytes[i % len] ^= b,
            Mutation::Set(i, b) if !bytes.is_empty() => bytes[i % len] = *b,
            Mutation::Insert(i, v) => {
                let at = i % (bytes.len() + 1);
                bytes.splice(at..at, v.iter().copied());
            }
            Mutation::Remove(i, n) if !bytes.is_empty() => {
                let at = i % len;
                bytes.drain(at..(at + n).min(bytes.len()));
            }
            Mutation::Truncate(i) => bytes.truncate(i % (bytes.len() + 1)),
            Mutation::Duplicate(i, n) if !bytes.is_empty() => {
                let at = i % len;
                let copy: Vec<u8> = bytes[at..(at + n).min(bytes.len())].to_vec();
                bytes.splice(at..at, copy);
            }
            _ => {}
        }
    }
    bytes
}

fn deflate(raw: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(raw).unwrap();
    z.finish().unwrap()
}

/// Every decoder a body reaches, on `body` as sent and as inflated already.
fn decode_everything(raw: &[u8]) {
    let body = deflate(raw);
    let _ = protocol::decode_with::<SyncRequest>(&body, &Limits::REQUEST);
    let _ = protocol::decode::<SyncResponse>(&body);
    let _ = protocol::decode::<SyncRequest>(raw);
}

/// A request of real changes (packed on the wire) and some that are not.
fn request() -> impl Strategy<Value = SyncRequest> {
    let change = prop_oneof![
        3 => (0..corpus().changes.len()).prop_map(|i| corpus().changes[i].clone()),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ];
    let batch = ("[a-z0-9]{0,12}", prop::collection::vec(change, 0..8))
        .prop_map(|(section, changes)| SectionBatch::upload(section, changes));
    (
        "[a-z0-9-]{0,12}",
        "[0-9a-f]{0,40}",
        "(c:[0-9]{1,4})?",
        any::<u64>(),
        any::<u32>(),
        prop::collection::vec(batch, 0..4),
    )
        .prop_map(|(project, actor, cursor, roster_version, response_budget, upload)| SyncRequest {
            protocol: PROTOCOL_VERSION,
            project,
            actor,
            cursor,
            roster_version,
            response_budget,
            upload,
            scope: Default::default(),
            held: None,
        })
}

/// A batch's wire form built from parts, so that tags, dependency counts and
/// back-references are mostly plausible and sometimes not.
fn wire_forms() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let dep = prop_oneof![
        (1..6u8).prop_map(|back| vec![back]),
        prop::collection::vec(any::<u8>(), 32).prop_map(|h| [vec![0], h].concat()),
        prop::collection::vec(any::<u8>(), 0..3),
    ];
    let change = (0..3u8, prop::collection::vec(dep, 0..5), prop::collection::vec(any::<u8>(), 0..48)).prop_map(
        |(tag, deps, rest)| {
            let mut w = vec![tag];
            if tag == 1 {
                w.push(deps.len() as u8);
                deps.into_iter().for_each(|d| w.extend(d));
            }
            w.extend(rest);
            w
        },
    );
    prop::collection::vec(change, 0..8)
}

/// `cases` by default (a bounded run in the normal test command), or
/// `$FIELDSYNC_FUZZ_CASES` for a longer campaign.
fn cases(cases: u32) -> ProptestConfig {
    let cases = std::env::var("FIELDSYNC_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(cases);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn garbage_never_panics_the_body_decoder(raw in prop::collection::vec(any::<u8>(), 0..512)) {
        decode_everything(&raw);
    }

    #[test]
    fn mutated_requests_never_panic_the_body_decoder(
        request in request(),
        mutations in prop::collection::vec(mutation(), 0..4),
    ) {
        let raw = postcard::to_allocvec(&request).unwrap();
        if mutations.is_empty() {
            // Unmutated, it decodes to itself.
            prop_assert_eq!(protocol::decode_with::<SyncRequest>(&deflate(&raw), &Limits::REQUEST).unwrap(), request);
        }
        decode_everything(&mutate(raw, &mutations));
    }

    #[test]
    fn wire_forms_never_panic_unpacking(wire in wire_forms(), mutations in prop::collection::vec(mutation(), 0..3)) {
        let _ = pack::unpack(wire.clone());
        let mutated: Vec<Vec<u8>> = wire.into_iter().map(|w| mutate(w, &mutations)).collect();
        let _ = pack::unpack(mutated);
    }

    #[test]
    fn packing_any_changes_unpacks_to_them(
        picks in prop::collection::vec(0..5usize, 0..8),
        garbage in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..3),
    ) {
        let real = &corpus().changes;
        let mut changes: Vec<Vec<u8>> = picks.iter().map(|i| real[i % real.len()].clone()).collect();
        changes.extend(garbage);
        prop_assert_eq!(pack::unpack(pack::pack(&changes)).unwrap(), changes);
    }
}

/// Every loader a document's or a change's bytes reach, and what reads a
/// loaded document (the rules' input, a save). Inputs that made Automerge
/// panic (caught: `DocumentError::Unreadable`) are saved under
/// `$FIELDSYNC_FUZZ_SAVE`, if set, to be kept in `fuzz-regressions/`.
fn load_everything(bytes: &[u8], name: &str) {
    let read = |doc: SectionDoc| {
        let _ = doc.input();
        let _ = doc.save();
    };
    let loaded = SectionDoc::load(bytes);
    let parts = SectionDoc::from_parts(None, &[bytes.to_vec()]);
    let unreadable = [&loaded, &parts].iter().any(|r| matches!(r, Err(DocumentError::Unreadable(_))));
    [loaded, parts].into_iter().flatten().for_each(read);
    if let Ok(change) = automerge::Change::from_bytes(bytes.to_vec()) {
        // What the hub's structure check reads; it catches a panic too.
        let _ = std::panic::catch_unwind(|| change.decode());
    }
    if unreadable {
        save(bytes, name);
    }
}

/// A chain of changes as a hub or a device applies it.
fn apply_chain(chain: &[Vec<u8>]) {
    let applied = SectionDoc::from_parts(None, chain);
    if matches!(applied, Err(DocumentError::Unreadable(_))) {
        save(&to_chain_file(chain), "chain");
    }
    if let Ok(doc) = applied {
        let _ = doc.input();
    }
}

/// A chain in one file: each change's length (4 bytes, little-endian), then the change.
fn to_chain_file(chain: &[Vec<u8>]) -> Vec<u8> {
    chain.iter().flat_map(|c| [(c.len() as u32).to_le_bytes().to_vec(), c.clone()].concat()).collect()
}

fn from_chain_file(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut chain = Vec::new();
    while let Some((len, rest)) = bytes.split_first_chunk::<4>() {
        let len = (u32::from_le_bytes(*len) as usize).min(rest.len());
        chain.push(rest[..len].to_vec());
        bytes = &rest[len..];
    }
    chain
}

fn save(bytes: &[u8], name: &str) {
    if let Ok(dir) = std::env::var("FIELDSYNC_FUZZ_SAVE") {
        let digest =
            bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
        std::fs::write(std::path::Path::new(&dir).join(format!("{name}-{digest:016x}.bin")), bytes).unwrap();
    }
}

proptest! {
    #![proptest_config(cases(1024))]

    #[test]
    fn mutated_documents_and_changes_never_panic_their_loaders(
        pick in 0..5usize,
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        load_everything(&mutate(corpus().document.clone(), &mutations), "document");
        let real = &corpus().changes;
        load_everything(&mutate(real[pick % real.len()].clone(), &mutations), "change");
        // A chain with one change mutated, as a hub or a device applies it
        // (changes one after another load as a document).
        let mut chain: Vec<Vec<u8>> = real.clone();
        chain[pick % real.len()] = mutate(real[pick % real.len()].clone(), &mutations);
        load_everything(&chain.concat(), "document");
        apply_chain(&chain);
    }
}

/// Every input that ever panicked a decoder, replayed through all of them.
#[test]
fn regressions_replay_without_panics() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/fuzz-regressions");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "bin") {
            let bytes = std::fs::read(&path).unwrap();
            decode_everything(&bytes);
            load_everything(&bytes, "replay");
            // Each made Automerge panic once; now it is an error like any other.
            let chain = match path.file_name().unwrap().to_string_lossy().starts_with("chain-") {
                true => from_chain_file(&bytes),
                false => vec![bytes.clone()],
            };
            let applied = SectionDoc::from_parts(None, &chain);
            assert!(matches!(applied, Err(DocumentError::Unreadable(_))), "{}: {:?}", path.display(), applied.err());
            let _ = pack::unpack(vec![bytes]);
            replayed += 1;
        }
    }
    assert!(replayed > 0, "no regression inputs in {}", dir.display());
}
