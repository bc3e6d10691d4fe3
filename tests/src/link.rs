//! One device's link in virtual time: a token bucket per direction, latency
//! and jitter, packet loss, and the intervals when it is down (no network:
//! the phone knows) or partitioned (a network, but the server is unreachable:
//! the phone does not know).

use crate::profile::LinkProfile;
use crate::rng::Rng;

/// Bytes per packet, for retransmission counts.
const PACKET: u64 = 1400;
/// An idle connection is dropped after this long (NAT, radio idle): the next
/// request pays a TCP and TLS handshake again (two round trips).
const KEEP_ALIVE_MS: u64 = 60_000;

/// A token bucket: `rate` bits per ms, up to `burst` bytes saved up.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    bits_per_ms: u64,
    burst_bytes: u64,
    tokens: u64,
    at_ms: u64,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(kbps: u64, burst_bytes: u64) -> TokenBucket {
        TokenBucket { bits_per_ms: kbps.max(1), burst_bytes, tokens: burst_bytes, at_ms: 0 }
    }

    /// Send `bytes` starting at `now_ms`; returns how long it takes (ms).
    pub fn send(&mut self, now_ms: u64, bytes: u64) -> u64 {
        let now = now_ms.max(self.at_ms);
        let refill = (now - self.at_ms).saturating_mul(self.bits_per_ms) / 8;
        self.tokens = (self.tokens + refill).min(self.burst_bytes);
        self.at_ms = now;
        if bytes <= self.tokens {
            self.tokens -= bytes;
            return 0;
        }
        let deficit = bytes - self.tokens;
        self.tokens = 0;
        let ms = (deficit * 8).div_ceil(self.bits_per_ms);
        self.at_ms = now + ms;
        ms
    }
}

/// A device's link.
#[derive(Debug, Clone)]
pub struct Link {
    /// Its profile.
    pub profile: LinkProfile,
    up: TokenBucket,
    down: TokenBucket,
    /// Intervals `[start, end)` with no network at all.
    pub outages: Vec<(u64, u64)>,
    /// Intervals `[start, end)` when the server is unreachable.
    pub partitions: Vec<(u64, u64)>,
    last_used_ms: Option<u64>,
}

impl Link {
    /// A link with `profile`, always up.
    pub fn new(profile: LinkProfile) -> Link {
        let up = TokenBucket::new(profile.up_kbps, profile.burst_bytes);
        let down = TokenBucket::new(profile.down_kbps, profile.burst_bytes);
        Link { profile, up, down, outages: Vec::new(), partitions: Vec::new(), last_used_ms: None }
    }

    /// Whether the device has no network at `t`.
    pub fn offline_at(&self, t: u64) -> bool {
        self.outages.iter().any(|(s, e)| (*s..*e).contains(&t))
    }

    /// Whether the server is unreachable from the device at `t`.
    pub fn partitioned_at(&self, t: u64) -> bool {
        self.partitions.iter().any(|(s, e)| (*s..*e).contains(&t))
    }

    /// The first moment in `(from, to)` the link breaks (an outage or a partition begins).
    pub fn breaks_between(&self, from: u64, to: u64) -> Option<u64> {
        self.outages.iter().chain(&self.partitions).map(|(s, _)| *s).filter(|s| *s > from && *s < to).min()
    }

    /// End every outage and partition at `t` (the network heals).
    pub fn heal(&mut self, t: u64) {
        for list in [&mut self.outages, &mut self.partitions] {
            list.retain(|(s, _)| *s < t);
            for iv in list.iter_mut() {
                iv.1 = iv.1.min(t);
            }
        }
    }

    /// Replace the link's speed (keeping outages): the profile after healing.
    pub fn set_profile(&mut self, profile: LinkProfile) {
        *self = Link {
            outages: std::mem::take(&mut self.outages),
            partitions: std::mem::take(&mut self.partitions),
            ..Link::new(profile)
        };
    }

    fn jitter(&self, rng: &mut Rng) -> u64 {
        rng.below(self.profile.jitter_ms + 1)
    }

    fn retransmissions(&self, bytes: u64, rng: &mut Rng) -> u64 {
        if self.profile.loss <= 0.0 {
            return 0;
        }
        (0..bytes / PACKET + 1).filter(|_| rng.chance(self.profile.loss)).count() as u64
    }

    fn rtt(&self) -> u64 {
        self.profile.up_latency_ms + self.profile.down_latency_ms
    }

    /// How long `bytes` take device → server when sent at `now` (ms),
    /// including a new connection's handshakes when the last one went idle.
    pub fn upload_ms(&mut self, now: u64, bytes: u64, rng: &mut Rng) -> u64 {
        let handshake = match self.last_used_ms {
            Some(t) if now.saturating_sub(t) < KEEP_ALIVE_MS => 0,
            _ => 2 * self.rtt(),
        };
        let transfer = self.up.send(now + handshake, bytes);
        let d = handshake
            + self.profile.up_latency_ms
            + self.jitter(rng)
            + transfer
            + self.retransmissions(bytes, rng) * self.rtt();
        self.last_used_ms = Some(now + d);
        d
    }

    /// How long `bytes` take server → device when sent at `now` (ms).
    pub fn download_ms(&mut self, now: u64, bytes: u64, rng: &mut Rng) -> u64 {
        let transfer = self.down.send(now, bytes);
        let d =
            self.profile.down_latency_ms + self.jitter(rng) + transfer + self.retransmissions(bytes, rng) * self.rtt();
        self.last_used_ms = Some(now + d);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Profile;

    #[test]
    fn the_bucket_lets_a_burst_through_then_costs_time_at_its_rate() {
        let mut b = TokenBucket::new(20, 1000); // 20 kbit/s = 2.5 bytes per ms
        assert_eq!(b.send(0, 1000), 0);
        assert_eq!(b.send(0, 2500), 1000);
        // Idle for 400 ms refills 1000 bytes (capped at the burst).
        assert_eq!(b.send(1400, 1000), 0);
    }

    #[test]
    fn rural_2g_moves_a_10_kb_body_in_seconds_and_outages_break_it() {
        let mut l = Link::new(Profile::rural_2g().link);
        let mut rng = Rng::new(1);
        let up = l.upload_ms(0, 10_000, &mut rng);
        assert!((3_000..20_000).contains(&up), "{up}");
        l.outages.push((5_000, 9_000));
        assert!(l.offline_at(5_000) && !l.offline_at(9_000));
        assert_eq!(l.breaks_between(0, 6_000), Some(5_000));
        l.heal(6_000);
        assert_eq!(l.outages, vec![(5_000, 6_000)]);
    }
}
