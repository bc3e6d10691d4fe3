//! Changes on the wire, packed: an Automerge change chunk carries 36 bytes
//! that no compressor can shrink and that the receiver can work out itself —
//! its 4-byte checksum (the first bytes of its own hash) and, for the usual
//! chain of edits to one section, a 32-byte hash of the change just before it.
//! Within one [`crate::sync::protocol::SectionBatch`], a packed change drops the
//! magic bytes, checksum and length, and names each dependency that is an
//! earlier change of the same batch by its distance back instead of its hash.
//! Unpacking rebuilds the exact chunk, byte for byte (so the hash is the
//! same); anything that is not a plain uncompressed change chunk in canonical
//! form travels verbatim. The layout is normative in `docs/protocol.md`
//! ("Changes in a batch").
//!
//! For 5,000 changes of a crew's day this halves the bytes on the wire
//! (BENCHMARKS.md, "Sync").

use std::collections::HashMap;

use sha2::{Digest, Sha256};

const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
const CHUNK_CHANGE: u8 = 1;
/// Wire tag: the chunk's bytes follow as they are.
const VERBATIM: u8 = 0;
/// Wire tag: a packed uncompressed change chunk follows.
const PACKED: u8 = 1;

type Hash = [u8; 32];

fn write_uleb(out: &mut Vec<u8>, mut v: u64) {
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

/// Read a canonical (shortest) unsigned LEB128; a longer encoding of the same
/// value would not be rebuilt byte for byte, so it is refused.
fn read_uleb(b: &[u8], pos: &mut usize) -> Option<u64> {
    let start = *pos;
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            let mut canonical = Vec::with_capacity(10);
            write_uleb(&mut canonical, v);
            return (canonical == b[start..*pos]).then_some(v);
        }
    }
    None
}

fn chunk_hash(data: &[u8]) -> Hash {
    let mut head = vec![CHUNK_CHANGE];
    write_uleb(&mut head, data.len() as u64);
    let mut h = Sha256::new();
    h.update(&head);
    h.update(data);
    h.finalize().into()
}

/// An uncompressed change chunk in canonical form, split into what packing needs.
struct Parsed<'a> {
    hash: Hash,
    deps: Vec<Hash>,
    rest: &'a [u8],
}

fn parse(chunk: &[u8]) -> Option<Parsed<'_>> {
    if chunk.len() < 10 || chunk[..4] != MAGIC || chunk[8] != CHUNK_CHANGE {
        return None;
    }
    let mut pos = 9;
    let len = usize::try_from(read_uleb(chunk, &mut pos)?).ok()?;
    let data = &chunk[pos..];
    if data.len() != len {
        return None;
    }
    let hash = chunk_hash(data);
    if hash[..4] != chunk[4..8] {
        return None; // A bad checksum must stay bad: the receiver refuses it.
    }
    let mut p = 0;
    let n = usize::try_from(read_uleb(data, &mut p)?).ok()?;
    if n > (data.len() - p) / 32 {
        return None;
    }
    let deps = (0..n).map(|k| data[p + 32 * k..p + 32 * (k + 1)].try_into().expect("32 bytes")).collect();
    Some(Parsed { hash, deps, rest: &data[p + 32 * n..] })
}

/// The wire form of a batch's changes (in their order).
pub fn pack(changes: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut seen: HashMap<Hash, usize> = HashMap::new();
    let mut out = Vec::with_capacity(changes.len());
    for (i, chunk) in changes.iter().enumerate() {
        let Some(parsed) = parse(chunk) else {
            let mut w = Vec::with_capacity(chunk.len() + 1);
            w.push(VERBATIM);
            w.extend_from_slice(chunk);
            out.push(w);
            continue;
        };
        let mut w = Vec::with_capacity(chunk.len());
        w.push(PACKED);
        write_uleb(&mut w, parsed.deps.len() as u64);
        for dep in &parsed.deps {
            match seen.get(dep) {
                Some(j) => write_uleb(&mut w, (i - j) as u64),
                None => {
                    w.push(0);
                    w.extend_from_slice(dep);
                }
            }
        }
        w.extend_from_slice(parsed.rest);
        seen.entry(parsed.hash).or_insert(i);
        out.push(w);
    }
    out
}

/// The changes of a batch from their wire form.
pub fn unpack(wire: Vec<Vec<u8>>) -> Result<Vec<Vec<u8>>, String> {
    let mut hashes: Vec<Option<Hash>> = Vec::with_capacity(wire.len());
    let mut out = Vec::with_capacity(wire.len());
    for (i, w) in wire.into_iter().enumerate() {
        match w.first() {
            Some(&VERBATIM) => {
                out.push(w[1..].to_vec());
                hashes.push(None);
            }
            Some(&PACKED) => {
                let bad = |what: &str| format!("packed change {i}: {what}");
                let mut pos = 1;
                let n = read_uleb(&w, &mut pos).ok_or_else(|| bad("bad dependency count"))?;
                let mut data = Vec::with_capacity(w.len() + 64);
                write_uleb(&mut data, n);
                for _ in 0..n {
                    match read_uleb(&w, &mut pos).ok_or_else(|| bad("bad dependency"))? {
                        0 => data.extend_from_slice(w.get(pos..pos + 32).ok_or_else(|| bad("cut off"))?),
                        back => {
                            let j = usize::try_from(back)
                                .ok()
                                .and_then(|b| i.checked_sub(b))
                                .ok_or_else(|| bad("refers before the batch"))?;
                            let hash = hashes[j].ok_or_else(|| bad("refers to a change sent verbatim"))?;
                            data.extend_from_slice(&hash);
                            continue;
                        }
                    }
                    pos += 32;
                }
                data.extend_from_slice(&w[pos..]);
                let hash = chunk_hash(&data);
                let mut chunk = Vec::with_capacity(data.len() + 16);
                chunk.extend_from_slice(&MAGIC);
                chunk.extend_from_slice(&hash[..4]);
                chunk.push(CHUNK_CHANGE);
                write_uleb(&mut chunk, data.len() as u64);
                chunk.extend_from_slice(&data);
                out.push(chunk);
                hashes.push(Some(hash));
            }
            _ => return Err(format!("change {i} of a batch has no known wire tag")),
        }
    }
    Ok(out)
}

/// `#[serde(with = "crate::sync::pack::serde_changes")]`: packed in binary formats
/// (postcard, the wire), as they are in human-readable ones (JSON).
pub mod serde_changes {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Serialize a batch's changes.
    pub fn serialize<S: Serializer>(changes: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() { changes.serialize(s) } else { super::pack(changes).serialize(s) }
    }

    /// Deserialize a batch's changes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        if d.is_human_readable() {
            Vec::deserialize(d)
        } else {
            super::unpack(Vec::deserialize(d)?).map_err(serde::de::Error::custom)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;

    /// A chain of real changes, one with two dependencies (a merge).
    fn changes() -> Vec<Vec<u8>> {
        let mut a = automerge::AutoCommit::new();
        let mut out = Vec::new();
        for i in 0..5 {
            a.put(automerge::ROOT, "k", i).unwrap();
            a.commit();
        }
        let mut b = a.fork();
        a.put(automerge::ROOT, "a", 1).unwrap();
        b.put(automerge::ROOT, "b", 2).unwrap();
        a.commit();
        b.commit();
        a.merge(&mut b).unwrap();
        a.put(automerge::ROOT, "after merge", "big ".repeat(200)).unwrap();
        a.commit();
        for c in a.get_changes(&[]) {
            out.push(c.raw_bytes().to_vec());
        }
        out
    }

    #[test]
    fn packing_rebuilds_every_change_byte_for_byte_and_saves_the_hashes() {
        let changes = changes();
        let packed = pack(&changes);
        assert!(packed.iter().all(|w| w[0] == PACKED));
        let saved: usize = changes.iter().map(Vec::len).sum::<usize>() - packed.iter().map(Vec::len).sum::<usize>();
        // Every change but the first names the one before it (-31 net), and every chunk drops
        // magic, checksum and length (-9 or more, +1 tag).
        assert!(saved >= (changes.len() - 1) * 31 + changes.len() * 8, "saved {saved}");
        assert_eq!(unpack(packed).unwrap(), changes);
        for c in unpack(pack(&changes)).unwrap() {
            automerge::Change::from_bytes(c).unwrap();
        }
    }

    #[test]
    fn a_subset_keeps_outside_dependencies_as_hashes() {
        let changes = changes();
        let tail = changes[3..].to_vec();
        assert_eq!(unpack(pack(&tail)).unwrap(), tail);
        let reversed: Vec<Vec<u8>> = changes.iter().rev().cloned().collect();
        assert_eq!(unpack(pack(&reversed)).unwrap(), reversed);
    }

    #[test]
    fn anything_else_travels_verbatim() {
        let mut changes = changes();
        let big = changes.iter().max_by_key(|c| c.len()).unwrap().clone();
        let mut compressed = automerge::Change::from_bytes(big.clone()).unwrap();
        let odd =
            vec![vec![], vec![0x85, 0x6f, 0x4a, 0x83, 1, 2, 3], b"garbage".to_vec(), compressed.bytes().to_vec(), {
                let mut bad_checksum = changes[1].clone();
                bad_checksum[4] ^= 1;
                bad_checksum
            }];
        assert!(odd[3].len() < big.len(), "the big change compresses");
        changes.splice(2..2, odd);
        let packed = pack(&changes);
        assert_eq!(packed[2..7].iter().map(|w| w[0]).collect::<Vec<_>>(), [VERBATIM; 5]);
        assert_eq!(unpack(packed).unwrap(), changes);
    }

    #[test]
    fn bad_wire_forms_are_errors_not_panics() {
        for w in [
            vec![vec![]],
            vec![vec![7]],
            vec![vec![PACKED, 1, 1]],
            vec![vec![PACKED, 1, 0, 1, 2]],
            vec![vec![PACKED, 0], vec![PACKED, 1, 5]],
        ] {
            assert!(unpack(w).is_err());
        }
        assert!(unpack(vec![vec![VERBATIM, 1], vec![PACKED, 1, 1]]).is_err(), "a verbatim change is not referable");
        assert_eq!(unpack(vec![vec![PACKED, 0]]).unwrap().len(), 1, "rebuilt; Automerge judges it");
    }
}
