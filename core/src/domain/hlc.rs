//! Hybrid logical clock stamps carried by every domain write.
//!
//! A stamp is (physical ms, counter, actor). Physical time is the device's
//! wall clock corrected by the offset to the server's clock learned at the
//! last sync, so a phone whose clock is days wrong stops winning (or losing)
//! every last-writer-wins contest as soon as it has synced once.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How far ahead of our own anchored time a remote stamp may be and still pull
/// our clock forward. Beyond it the remote clock is wrong, and following it
/// would make every later local write look as if it came from the future.
pub const MAX_FORWARD_DRIFT_MS: u64 = 5 * 60 * 1000;

/// One HLC stamp. Orders by physical time, then counter, then actor, so two
/// stamps are equal only if they come from the same write.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Hlc {
    /// Anchored physical time, milliseconds since the Unix epoch.
    pub physical_ms: u64,
    /// Tie-breaker for writes within the same millisecond.
    pub counter: u32,
    /// Hex Automerge actor id of the writer.
    pub actor: String,
}

impl Ord for Hlc {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.physical_ms, self.counter, &self.actor).cmp(&(other.physical_ms, other.counter, &other.actor))
    }
}

impl PartialOrd for Hlc {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Hlc {
    /// Fixed-width so that the string order is the stamp order; edit ids are
    /// these strings, and the document's edit map sorts by them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:013}-{:05}-{}", self.physical_ms, self.counter, self.actor)
    }
}

/// A string that is not `ms-counter-actor`.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not an HLC stamp (expected `<ms>-<counter>-<actor hex>`)")]
pub struct ParseHlcError(String);

impl FromStr for Hlc {
    type Err = ParseHlcError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseHlcError(s.to_owned());
        let mut parts = s.splitn(3, '-');
        let physical_ms = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let counter = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let actor = parts.next().filter(|a| !a.is_empty()).ok_or_else(bad)?;
        Ok(Hlc { physical_ms, counter, actor: actor.to_owned() })
    }
}

impl From<Hlc> for String {
    fn from(h: Hlc) -> String {
        h.to_string()
    }
}

impl TryFrom<String> for Hlc {
    type Error = ParseHlcError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// The clock of one replica: the last stamp it issued or observed, and the
/// offset between the device's wall clock and the server's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HlcClock {
    actor: String,
    last_ms: u64,
    last_counter: u32,
    server_offset_ms: i64,
}

impl HlcClock {
    /// A clock restored from what the store kept.
    pub fn new(actor: String, last_ms: u64, last_counter: u32, server_offset_ms: i64) -> Self {
        HlcClock { actor, last_ms, last_counter, server_offset_ms }
    }

    /// The wall clock corrected by the server offset.
    pub fn anchored_ms(&self, wall_ms: u64) -> u64 {
        wall_ms.saturating_add_signed(self.server_offset_ms)
    }

    /// Issue the next stamp for a local write.
    pub fn tick(&mut self, wall_ms: u64) -> Hlc {
        let now = self.anchored_ms(wall_ms);
        if now > self.last_ms {
            self.last_ms = now;
            self.last_counter = 0;
        } else {
            self.last_counter += 1;
        }
        Hlc { physical_ms: self.last_ms, counter: self.last_counter, actor: self.actor.clone() }
    }

    /// Take a remote stamp into account, so that our next write orders after
    /// everything we have seen, unless the remote clock is implausibly ahead.
    pub fn observe(&mut self, remote: &Hlc, wall_ms: u64) {
        let limit = self.anchored_ms(wall_ms).saturating_add(MAX_FORWARD_DRIFT_MS);
        if remote.physical_ms > limit {
            return;
        }
        if (remote.physical_ms, remote.counter) > (self.last_ms, self.last_counter) {
            self.last_ms = remote.physical_ms;
            self.last_counter = remote.counter;
        }
    }

    /// Learn the server's time at a sync: from now on physical time is the
    /// server's, whatever the device's clock says.
    /// Every later stamp is at least `server_ms`, even if the wall clock is
    /// then set back: the hub refuses a write stamped before a round in which
    /// this device had nothing left to send (a backdated stamp).
    pub fn anchor_to_server(&mut self, server_ms: u64, wall_ms: u64) {
        self.server_offset_ms = server_ms as i64 - wall_ms as i64;
        if server_ms > self.last_ms {
            (self.last_ms, self.last_counter) = (server_ms, 0);
        }
    }

    /// What the store keeps: (last ms, last counter, server offset).
    pub fn state(&self) -> (u64, u32, i64) {
        (self.last_ms, self.last_counter, self.server_offset_ms)
    }
}

thread_local! {
    static SIMULATED_WALL_CLOCK: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

/// Milliseconds since the Unix epoch by the device's wall clock, or by the
/// simulated clock set on this thread with [`set_simulated_wall_clock`].
pub fn wall_clock_ms() -> u64 {
    if let Some(ms) = SIMULATED_WALL_CLOCK.with(std::cell::Cell::get) {
        return ms;
    }
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Make [`wall_clock_ms`] return `ms` on the calling thread from now on
/// (`None`: the real clock again). For deterministic simulations
/// (`fieldsync-tests` runs devices in virtual time, with skewed clocks); an
/// app never calls it.
#[cfg(any(test, feature = "simulation"))]
pub fn set_simulated_wall_clock(ms: Option<u64>) {
    SIMULATED_WALL_CLOCK.with(|c| c.set(ms));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_monotonic_even_when_the_wall_clock_goes_back() {
        let mut c = HlcClock::new("aa".into(), 0, 0, 0);
        let a = c.tick(1_000);
        let b = c.tick(900);
        let d = c.tick(1_000);
        assert!(a < b && b < d);
        assert_eq!((b.physical_ms, b.counter), (1_000, 1));
    }

    #[test]
    fn no_stamp_after_a_round_is_earlier_than_the_server_s_time_then() {
        let mut c = HlcClock::new("aa".into(), 0, 0, 0);
        // The round's server time, learned at wall 5_000 (the phone days behind, say).
        c.anchor_to_server(1_000_000, 5_000);
        // The phone's clock is then set back by an hour's worth.
        let stamp = c.tick(1_000);
        assert!(stamp.physical_ms >= 1_000_000, "{stamp:?}");
    }

    #[test]
    fn string_form_sorts_like_the_stamp_and_round_trips() {
        let a = Hlc { physical_ms: 9, counter: 2, actor: "ff".into() };
        let b = Hlc { physical_ms: 10, counter: 0, actor: "00".into() };
        assert!(a.to_string() < b.to_string());
        assert_eq!(a.to_string().parse::<Hlc>().unwrap(), a);
        assert!("12-x".parse::<Hlc>().is_err());
    }

    #[test]
    fn a_skewed_device_is_corrected_by_the_server_anchor() {
        // The phone thinks it is three days later than it is.
        let skew = 3 * 24 * 3600 * 1000;
        let mut c = HlcClock::new("aa".into(), 0, 0, 0);
        c.anchor_to_server(1_000_000, 1_000_000 + skew);
        assert_eq!(c.tick(1_000_500 + skew).physical_ms, 1_000_500);
    }

    #[test]
    fn a_simulated_wall_clock_holds_on_its_thread_only() {
        set_simulated_wall_clock(Some(42));
        assert_eq!(wall_clock_ms(), 42);
        assert!(std::thread::spawn(wall_clock_ms).join().unwrap() > 42);
        set_simulated_wall_clock(None);
        assert!(wall_clock_ms() > 42);
    }

    #[test]
    fn remote_stamps_far_in_the_future_do_not_drag_the_clock() {
        let mut c = HlcClock::new("aa".into(), 0, 0, 0);
        let future = Hlc { physical_ms: 10_000_000_000, counter: 0, actor: "bb".into() };
        c.observe(&future, 1_000);
        assert_eq!(c.tick(1_000).physical_ms, 1_000);
        let near = Hlc { physical_ms: 2_000, counter: 7, actor: "bb".into() };
        c.observe(&near, 1_000);
        assert_eq!(c.tick(1_000), Hlc { physical_ms: 2_000, counter: 8, actor: "aa".into() });
    }
}
