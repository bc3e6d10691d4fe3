//! Hybrid logical clock stamps carried by every domain write.
//!
//! A stamp is (physical ms, counter, actor). Physical time is the device's
//! wall clock corrected by the offset to the server's clock learned at the
//! last sync, so a phone whose clock is days wrong stops winning (or losing)
//! every last-writer-wins contest as soon as it has synced once.
//!
//! A wall clock set back after that sync must not take stamps back with it
//! (a demoted foreman backdating a skip to before his demotion): the device's
//! clock since boot, which no setting moves, bounds every stamp from below by
//! the server's time at the last sync plus the time elapsed since.

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

/// What a device knows of the time when it stamps: its wall clock (which the
/// user can set) and, where the platform has one, the milliseconds since it
/// booted (which nobody can set, and which start again at a reboot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceTime {
    /// Milliseconds since the Unix epoch by the device's wall clock.
    pub wall_ms: u64,
    /// Milliseconds since boot, counting sleep; `None` where unknown.
    pub since_boot_ms: Option<u64>,
}

impl DeviceTime {
    /// A wall clock reading alone (no clock since boot).
    pub fn wall(wall_ms: u64) -> Self {
        DeviceTime { wall_ms, since_boot_ms: None }
    }
}

/// The server's time at the last sync and the device's time since boot when
/// it learned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootAnchor {
    /// The server's time, ms since the Unix epoch.
    pub server_ms: u64,
    /// The device's time since boot when the answer carrying it arrived.
    pub since_boot_ms: u64,
}

impl BootAnchor {
    /// The least the server's time can be now: the time since boot only
    /// grows, and starts again below its old value at a reboot (the real
    /// time elapsed then is more than the new value), so this never
    /// overshoots. `None` when the clock since boot is unknown.
    fn lower_bound(&self, since_boot_ms: Option<u64>) -> Option<u64> {
        let now = since_boot_ms?;
        Some(self.server_ms.saturating_add(now.saturating_sub(self.since_boot_ms)))
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
    boot_anchor: Option<BootAnchor>,
}

impl HlcClock {
    /// A clock restored from what the store kept.
    pub fn new(actor: String, last_ms: u64, last_counter: u32, server_offset_ms: i64) -> Self {
        HlcClock { actor, last_ms, last_counter, server_offset_ms, boot_anchor: None }
    }

    /// The same clock with the anchor the store kept.
    pub fn with_boot_anchor(mut self, anchor: Option<BootAnchor>) -> Self {
        self.boot_anchor = anchor;
        self
    }

    /// The wall clock corrected by the server offset.
    pub fn anchored_ms(&self, wall_ms: u64) -> u64 {
        wall_ms.saturating_add_signed(self.server_offset_ms)
    }

    /// Issue the next stamp for a local write: the anchored wall clock, never
    /// less than the server's time at the last sync plus the time since.
    pub fn tick(&mut self, now: DeviceTime) -> Hlc {
        let bound = self.boot_anchor.and_then(|a| a.lower_bound(now.since_boot_ms)).unwrap_or(0);
        let now = self.anchored_ms(now.wall_ms).max(bound);
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
    pub fn anchor_to_server(&mut self, server_ms: u64, now: DeviceTime) {
        self.server_offset_ms = server_ms as i64 - now.wall_ms as i64;
        if server_ms > self.last_ms {
            (self.last_ms, self.last_counter) = (server_ms, 0);
        }
        self.boot_anchor = now.since_boot_ms.map(|since_boot_ms| BootAnchor { server_ms, since_boot_ms });
    }

    /// What the store keeps: (last ms, last counter, server offset).
    pub fn state(&self) -> (u64, u32, i64) {
        (self.last_ms, self.last_counter, self.server_offset_ms)
    }

    /// The anchor the store keeps with the state.
    pub fn boot_anchor(&self) -> Option<BootAnchor> {
        self.boot_anchor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_monotonic_even_when_the_wall_clock_goes_back() {
        let mut c = HlcClock::new("aa".into(), 0, 0, 0);
        let a = c.tick(DeviceTime::wall(1_000));
        let b = c.tick(DeviceTime::wall(900));
        let d = c.tick(DeviceTime::wall(1_000));
        assert!(a < b && b < d);
        assert_eq!((b.physical_ms, b.counter), (1_000, 1));
    }

    #[test]
    fn no_stamp_after_a_round_is_earlier_than_the_server_s_time_then() {
        let mut c = HlcClock::new("aa".into(), 0, 0, 0);
        // The round's server time, learned at wall 5_000 (the phone days behind, say).
        c.anchor_to_server(1_000_000, DeviceTime::wall(5_000));
        // The phone's clock is then set back by an hour's worth.
        let stamp = c.tick(DeviceTime::wall(1_000));
        assert!(stamp.physical_ms >= 1_000_000, "{stamp:?}");
    }

    #[test]
    fn a_wall_clock_set_back_after_a_sync_stamps_no_earlier_than_the_time_elapsed_since() {
        let day = 24 * 3600 * 1000;
        let mut c = HlcClock::new("aa".into(), 0, 0, 0);
        // Synced at the server's 10 days, 1 hour after the phone booted.
        c.anchor_to_server(10 * day, DeviceTime { wall_ms: 10 * day, since_boot_ms: Some(3_600_000) });
        // Three hours later the wall clock is set two days back.
        let set_back = DeviceTime { wall_ms: 8 * day + 3 * 3_600_000, since_boot_ms: Some(4 * 3_600_000) };
        assert_eq!(c.tick(set_back).physical_ms, 10 * day + 3 * 3_600_000);
        // After a reboot the clock since boot starts again below the anchor's
        // reading: no bound past the anchor, or, once it has passed it, less
        // than the real time elapsed (which also counts the time before the reboot).
        let mut fresh = HlcClock::new("aa".into(), 0, 0, 0);
        fresh.anchor_to_server(10 * day, DeviceTime { wall_ms: 10 * day, since_boot_ms: Some(3_600_000) });
        let rebooted = DeviceTime { wall_ms: 8 * day, since_boot_ms: Some(60_000) };
        assert_eq!(fresh.tick(rebooted).physical_ms, 10 * day);
        let up_again = DeviceTime { wall_ms: 8 * day, since_boot_ms: Some(5 * 3_600_000) };
        assert_eq!(fresh.tick(up_again).physical_ms, 10 * day + 4 * 3_600_000);
        // Restored from the store, the anchor still holds.
        let mut restored = HlcClock::new("aa".into(), 0, 0, c.state().2).with_boot_anchor(c.boot_anchor());
        assert_eq!(restored.tick(set_back).physical_ms, 10 * day + 3 * 3_600_000);
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
        c.anchor_to_server(1_000_000, DeviceTime::wall(1_000_000 + skew));
        assert_eq!(c.tick(DeviceTime::wall(1_000_500 + skew)).physical_ms, 1_000_500);
    }

    #[test]
    fn remote_stamps_far_in_the_future_do_not_drag_the_clock() {
        let mut c = HlcClock::new("aa".into(), 0, 0, 0);
        let future = Hlc { physical_ms: 10_000_000_000, counter: 0, actor: "bb".into() };
        c.observe(&future, 1_000);
        assert_eq!(c.tick(DeviceTime::wall(1_000)).physical_ms, 1_000);
        let near = Hlc { physical_ms: 2_000, counter: 7, actor: "bb".into() };
        c.observe(&near, 1_000);
        assert_eq!(c.tick(DeviceTime::wall(1_000)), Hlc { physical_ms: 2_000, counter: 8, actor: "aa".into() });
    }
}
