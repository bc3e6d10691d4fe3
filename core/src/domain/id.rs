//! Random ids (sections, photos, actors), and a seeded sequence of them for
//! deterministic simulations.

/// The longest project id, in bytes (the hub refuses longer ones; a replica never makes one).
pub const MAX_PROJECT_ID_BYTES: usize = 128;
/// The longest section id, in bytes (the hub refuses longer ones; a replica never makes one).
pub const MAX_SECTION_ID_BYTES: usize = 128;

thread_local! {
    static SIMULATED_IDS: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

/// Make [`new_id`] (section, photo and actor ids) draw from a sequence seeded
/// with `seed` on the calling thread (`None`: the OS's randomness again). For
/// deterministic simulations (`fieldsync-tests`); an app never calls it.
#[cfg(any(test, feature = "simulation"))]
pub fn set_simulated_ids(seed: Option<u64>) {
    SIMULATED_IDS.with(|c| c.set(seed));
}

/// A random 128-bit id in hex.
pub fn new_id() -> String {
    let mut b = [0u8; 16];
    if let Some(state) = SIMULATED_IDS.with(std::cell::Cell::get) {
        // SplitMix64, twice.
        let mix = |mut z: u64| {
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let (a, c) = (state.wrapping_add(0x9E37_79B9_7F4A_7C15), state.wrapping_add(0x3C6E_F372_FE94_F82A));
        SIMULATED_IDS.with(|cell| cell.set(Some(c)));
        b[..8].copy_from_slice(&mix(a).to_le_bytes());
        b[8..].copy_from_slice(&mix(c).to_le_bytes());
    } else {
        getrandom::fill(&mut b).expect("the OS has randomness");
    }
    hex::encode(b)
}
