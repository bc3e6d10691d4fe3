//! The one retry delay of the engine, the live channel and the hub's
//! PostgreSQL listener: exponential in the failures, capped, with "equal
//! jitter" (half fixed, half random) so a crew reconnecting at once does not
//! hammer the server in lockstep. The randomness is passed in, so the sync
//! engine stays deterministic under simulation.

/// Delay before the next try after `failures` failures in a row (1 = the
/// first): `min_ms` doubled per failure up to `max_ms`, then its upper half
/// spread by `random`.
pub fn delay_ms(failures: u32, min_ms: u64, max_ms: u64, random: u64) -> u64 {
    let exp = failures.saturating_sub(1).min(20);
    let cap = min_ms.saturating_mul(1 << exp).min(max_ms);
    cap / 2 + random % (cap / 2 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_per_failure_within_its_band_up_to_the_cap() {
        assert_eq!((delay_ms(1, 1_000, 8_000, 0), delay_ms(1, 1_000, 8_000, u64::MAX)), (500, 500 + u64::MAX % 501));
        assert!((1_000..=2_000).contains(&delay_ms(2, 1_000, 8_000, 7)));
        assert!((4_000..=8_000).contains(&delay_ms(30, 1_000, 8_000, 12_345)));
        assert_eq!(delay_ms(0, 1_000, 8_000, 0), 500);
    }
}
