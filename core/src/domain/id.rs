//! Ids (sections, photos, actors): random ones, or a seeded sequence of them
//! for deterministic simulations.

/// The longest project id, in bytes (the hub refuses longer ones; a replica never makes one).
pub const MAX_PROJECT_ID_BYTES: usize = 128;
/// The longest section id, in bytes (the hub refuses longer ones; a replica never makes one).
pub const MAX_SECTION_ID_BYTES: usize = 128;

/// Where a replica draws new ids (sections, photos, its actor): given when
/// it is opened ([`crate::ReplicaOptions::ids`]), the OS's randomness by default.
pub trait IdSource: std::fmt::Debug + Send + Sync {
    /// A new 128-bit id in hex.
    fn new_id(&self) -> String;
}

/// Random ids from the OS.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomIds;

impl IdSource for RandomIds {
    fn new_id(&self) -> String {
        let mut b = [0u8; 16];
        getrandom::fill(&mut b).expect("the OS has randomness");
        hex::encode(b)
    }
}

/// A sequence of ids fixed by a seed (SplitMix64), for deterministic
/// simulations (`fieldsync-tests`) and tests; an app never uses it.
#[cfg(any(test, feature = "simulation"))]
#[derive(Debug)]
pub struct SeededIds(std::sync::atomic::AtomicU64);

#[cfg(any(test, feature = "simulation"))]
impl SeededIds {
    const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

    /// The sequence seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        SeededIds(seed.into())
    }
}

#[cfg(any(test, feature = "simulation"))]
impl IdSource for SeededIds {
    fn new_id(&self) -> String {
        // SplitMix64, twice: each id takes two steps of the state.
        let state = self.0.fetch_add(Self::GAMMA.wrapping_mul(2), std::sync::atomic::Ordering::SeqCst);
        let mix = |mut z: u64| {
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&mix(state.wrapping_add(Self::GAMMA)).to_le_bytes());
        b[8..].copy_from_slice(&mix(state.wrapping_add(Self::GAMMA.wrapping_mul(2))).to_le_bytes());
        hex::encode(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_fixes_the_sequence_and_random_ids_differ() {
        let (a, b) = (SeededIds::new(7), SeededIds::new(7));
        let first = [a.new_id(), a.new_id()];
        assert_eq!(first, [b.new_id(), b.new_id()]);
        assert_ne!(first[0], first[1]);
        assert_ne!(SeededIds::new(8).new_id(), first[0]);
        assert_ne!(RandomIds.new_id(), RandomIds.new_id());
        assert_eq!(first[0].len(), 32);
    }
}
