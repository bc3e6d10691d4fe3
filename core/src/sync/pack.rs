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

use crate::budget::{self, Limits};

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

pub use crate::budget::PackError;

/// The changes of a batch from their wire form, within the limits of the
/// decode under way on this thread (or the response limits outside one).
pub fn unpack(wire: Vec<Vec<u8>>) -> Result<Vec<Vec<u8>>, PackError> {
    let _budget = budget::Scope::ensure(Limits::RESPONSE);
    let mut unpacker = Unpacker::default();
    for w in &wire {
        unpacker.push(w)?;
    }
    Ok(unpacker.out)
}

fn uleb_len(v: u64) -> usize {
    (64 - v.max(1).leading_zeros() as usize).div_ceil(7)
}

/// Unpacks a batch change by change: each change's size after unpacking is
/// worked out and charged to the decode's budget before it is allocated, so
/// a bomb of one-byte back-references costs nothing.
#[derive(Default)]
struct Unpacker {
    hashes: Vec<Option<Hash>>,
    out: Vec<Vec<u8>>,
}

impl Unpacker {
    fn push(&mut self, w: &[u8]) -> Result<(), PackError> {
        let i = self.out.len();
        let bad = |what: &str| PackError::Malformed(format!("packed change {i}: {what}"));
        budget::count_change()?;
        match w.first() {
            Some(&VERBATIM) => {
                budget::charge(w.len() - 1)?;
                self.out.push(w[1..].to_vec());
                self.hashes.push(None);
            }
            Some(&PACKED) => {
                let mut pos = 1;
                let n = read_uleb(w, &mut pos).ok_or_else(|| bad("bad dependency count"))?;
                budget::check_deps(n)?;
                // First pass: check every dependency and find where the rest begins.
                let deps_at = pos;
                for _ in 0..n {
                    match read_uleb(w, &mut pos).ok_or_else(|| bad("bad dependency"))? {
                        0 => {
                            w.get(pos..pos + 32).ok_or_else(|| bad("cut off"))?;
                            pos += 32;
                        }
                        back => {
                            let j = usize::try_from(back)
                                .ok()
                                .and_then(|b| i.checked_sub(b))
                                .ok_or_else(|| bad("refers before the batch"))?;
                            self.hashes[j].ok_or_else(|| bad("refers to a change sent verbatim"))?;
                        }
                    }
                }
                let rest = &w[pos..];
                // `n` is at most the limit on dependencies, so this does not overflow.
                let data_len = uleb_len(n) + 32 * n as usize + rest.len();
                let chunk_len = MAGIC.len() + 4 + 1 + uleb_len(data_len as u64) + data_len;
                budget::charge(chunk_len)?;
                // Second pass: write the chunk, hashing its data as it goes.
                let mut chunk = Vec::with_capacity(chunk_len);
                chunk.extend_from_slice(&MAGIC);
                chunk.extend_from_slice(&[0; 4]); // The checksum, once the hash is known.
                chunk.push(CHUNK_CHANGE);
                write_uleb(&mut chunk, data_len as u64);
                let data_at = chunk.len();
                write_uleb(&mut chunk, n);
                let mut pos = deps_at;
                for _ in 0..n {
                    match read_uleb(w, &mut pos).expect("checked above") {
                        0 => {
                            chunk.extend_from_slice(&w[pos..pos + 32]);
                            pos += 32;
                        }
                        back => chunk.extend_from_slice(&self.hashes[i - back as usize].expect("checked above")),
                    }
                }
                chunk.extend_from_slice(rest);
                let hash = chunk_hash(&chunk[data_at..]);
                chunk[4..8].copy_from_slice(&hash[..4]);
                self.out.push(chunk);
                self.hashes.push(Some(hash));
            }
            _ => return Err(PackError::Malformed(format!("change {i} of a batch has no known wire tag"))),
        }
        Ok(())
    }
}

/// `#[serde(with = "crate::sync::pack::serde_changes")]`: packed in binary formats
/// (postcard, the wire), as they are in human-readable ones (JSON).
pub mod serde_changes {
    use std::fmt;

    use serde::de::{self, SeqAccess, Visitor};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Serialize a batch's changes.
    pub fn serialize<S: Serializer>(changes: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() { changes.serialize(s) } else { super::pack(changes).serialize(s) }
    }

    /// Deserialize a batch's changes, unpacking each as it arrives (binary
    /// formats) within the limits of the decode under way.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        if d.is_human_readable() { Vec::deserialize(d) } else { d.deserialize_seq(WireChanges) }
    }

    struct WireChanges;

    impl<'de> Visitor<'de> for WireChanges {
        type Value = Vec<Vec<u8>>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a sequence of packed changes")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            use crate::budget::{self, Limits};
            let _budget = budget::Scope::ensure(Limits::RESPONSE);
            let mut unpacker = super::Unpacker::default();
            while let Some(WireChange(w)) = seq.next_element()? {
                unpacker.push(&w).map_err(|e| {
                    let message = e.to_string();
                    budget::fail(e);
                    de::Error::custom(message)
                })?;
            }
            Ok(unpacker.out)
        }
    }

    /// One change's wire form, borrowed from the body where the format allows.
    struct WireChange<'de>(std::borrow::Cow<'de, [u8]>);

    impl<'de> Deserialize<'de> for WireChange<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_bytes(BytesVisitor).map(WireChange)
        }
    }

    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = std::borrow::Cow<'de, [u8]>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("the bytes of a change")
        }

        fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Self::Value, E> {
            Ok(std::borrow::Cow::Borrowed(v))
        }

        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
            Ok(std::borrow::Cow::Owned(v.to_vec()))
        }

        fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Self::Value, E> {
            Ok(std::borrow::Cow::Owned(v))
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(b) = seq.next_element()? {
                v.push(b);
            }
            Ok(std::borrow::Cow::Owned(v))
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
