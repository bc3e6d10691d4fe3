//! When to sync: a state machine without I/O.
//!
//! It takes events (a timer fired, connectivity changed, the live channel or
//! the app nudged, a round ended) with the current time and a random number,
//! and says what to do: start a round, or wake it up at some time. The
//! runtime ([`crate::sync::client`]) does the I/O, and a simulated network can
//! drive the same machine deterministically.

use serde::{Deserialize, Serialize};

/// Tuning of background sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncConfig {
    /// Periodic sync even when nothing happens (catches missed notifications).
    pub interval_ms: u64,
    /// After a local edit, wait this long for more before syncing.
    pub edit_debounce_ms: u64,
    /// First retry delay after a failure; doubles per failure.
    pub min_backoff_ms: u64,
    /// Retry delay cap.
    pub max_backoff_ms: u64,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            interval_ms: 5 * 60_000,
            edit_debounce_ms: 2_000,
            min_backoff_ms: 1_000,
            max_backoff_ms: 10 * 60_000,
        }
    }
}

/// Something that happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncEvent {
    /// Background sync started.
    Started,
    /// A wake-up time passed.
    Timer,
    /// The app's connectivity hint.
    Connectivity {
        /// Whether the app believes there is a network.
        online: bool,
    },
    /// The live channel said something is new, or the app asked for a sync.
    Nudge,
    /// A local edit was stored.
    LocalEdit,
    /// A round committed.
    RoundDone {
        /// The server or the outbox holds more: go again at once.
        more: bool,
    },
    /// A round failed.
    RoundFailed {
        /// Whether trying again later may help (network) or not (revoked token).
        retryable: bool,
    },
    /// A round failed and the server asked to wait this long before the next
    /// (`429` or `503` with `Retry-After`): no round starts before then,
    /// whatever else happens (nudges, a returning link).
    RoundThrottled {
        /// How long to wait, in ms.
        retry_after_ms: u64,
    },
}

/// What the runtime should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncAction {
    /// Run one sync round now.
    StartRound,
    /// Deliver [`SyncEvent::Timer`] at this time (ms), unless another event comes first.
    WakeAt(u64),
}

/// The scheduling state of background sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncEngine {
    config: SyncConfig,
    online: bool,
    in_flight: bool,
    stopped_by_error: bool,
    failures: u32,
    nudged: bool,
    edited_in_flight: bool,
    due_at: Option<u64>,
    not_before: Option<u64>,
}

impl SyncEngine {
    /// A machine that believes it is online until told otherwise.
    pub fn new(config: SyncConfig) -> Self {
        SyncEngine {
            config,
            online: true,
            in_flight: false,
            stopped_by_error: false,
            failures: 0,
            nudged: false,
            edited_in_flight: false,
            due_at: None,
            not_before: None,
        }
    }

    /// Whether a round is running.
    pub fn in_flight(&self) -> bool {
        self.in_flight
    }

    /// Whether the app said there is a network.
    pub fn online(&self) -> bool {
        self.online
    }

    /// Consecutive failed rounds.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// React to `event` at `now_ms`; `random` spreads retries (jitter).
    pub fn handle(&mut self, event: SyncEvent, now_ms: u64, random: u64) -> Vec<SyncAction> {
        match event {
            SyncEvent::Started => self.due_at = Some(now_ms),
            SyncEvent::Timer => {}
            SyncEvent::Connectivity { online } => {
                self.online = online;
                if online {
                    // A link came back: try at once, forget the backoff.
                    self.failures = 0;
                    self.stopped_by_error = false;
                    self.due_at = Some(now_ms);
                }
            }
            SyncEvent::Nudge => {
                self.nudged = true;
                self.stopped_by_error = false;
            }
            SyncEvent::LocalEdit => {
                // The round under way was prepared before this edit: it goes in the next one.
                self.edited_in_flight |= self.in_flight;
                let soon = now_ms + self.config.edit_debounce_ms;
                self.due_at = Some(self.due_at.map_or(soon, |d| d.min(soon)));
            }
            SyncEvent::RoundDone { more } => {
                self.in_flight = false;
                self.failures = 0;
                self.not_before = None;
                self.nudged |= more;
                let wait = if std::mem::take(&mut self.edited_in_flight) {
                    self.config.edit_debounce_ms
                } else {
                    self.config.interval_ms
                };
                self.due_at = Some(now_ms + wait);
            }
            SyncEvent::RoundFailed { retryable } => {
                self.in_flight = false;
                self.edited_in_flight = false; // The retry carries it.
                self.failures += 1;
                self.stopped_by_error = !retryable;
                self.due_at = Some(now_ms + self.backoff(random));
            }
            SyncEvent::RoundThrottled { retry_after_ms } => {
                self.in_flight = false;
                self.edited_in_flight = false;
                self.failures += 1;
                self.stopped_by_error = false;
                let at = now_ms + retry_after_ms.max(self.backoff(random));
                self.not_before = Some(now_ms + retry_after_ms);
                self.due_at = Some(at);
            }
        }
        self.next(now_ms)
    }

    fn backoff(&self, random: u64) -> u64 {
        crate::sync::backoff::delay_ms(self.failures, self.config.min_backoff_ms, self.config.max_backoff_ms, random)
    }

    fn next(&mut self, now_ms: u64) -> Vec<SyncAction> {
        if let Some(t) = self.not_before {
            if t > now_ms {
                // The server asked us to wait: nothing starts a round before then.
                let wake = self.due_at.map_or(t, |d| d.max(t));
                self.due_at = Some(wake);
                return if self.in_flight || !self.online { vec![] } else { vec![SyncAction::WakeAt(wake)] };
            }
            self.not_before = None;
        }
        if self.in_flight || !self.online || self.stopped_by_error {
            return match (self.in_flight, self.due_at) {
                (false, Some(d)) if self.online && !self.stopped_by_error => vec![SyncAction::WakeAt(d)],
                _ => vec![],
            };
        }
        let due = self.due_at.is_some_and(|d| d <= now_ms);
        if self.nudged || due {
            self.nudged = false;
            self.in_flight = true;
            return vec![SyncAction::StartRound];
        }
        self.due_at.map(SyncAction::WakeAt).into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SyncAction::*;
    use SyncEvent::*;

    fn engine() -> SyncEngine {
        SyncEngine::new(SyncConfig {
            interval_ms: 60_000,
            edit_debounce_ms: 2_000,
            min_backoff_ms: 1_000,
            max_backoff_ms: 8_000,
        })
    }

    #[test]
    fn starts_at_once_then_waits_for_the_interval() {
        let mut e = engine();
        assert_eq!(e.handle(Started, 0, 0), [StartRound]);
        assert_eq!(e.handle(Timer, 10, 0), []);
        assert_eq!(e.handle(RoundDone { more: false }, 100, 0), [WakeAt(60_100)]);
        assert_eq!(e.handle(Timer, 60_100, 0), [StartRound]);
    }

    #[test]
    fn more_to_do_goes_again_at_once() {
        let mut e = engine();
        e.handle(Started, 0, 0);
        assert_eq!(e.handle(RoundDone { more: true }, 5, 0), [StartRound]);
    }

    #[test]
    fn failures_back_off_exponentially_with_jitter_up_to_the_cap() {
        let mut e = engine();
        e.handle(Started, 0, 0);
        let mut delays = vec![];
        for _ in 0..6 {
            let [WakeAt(at)] = e.handle(RoundFailed { retryable: true }, 0, u64::MAX)[..] else { panic!() };
            delays.push(at);
            assert_eq!(e.handle(Timer, at, 0), [StartRound]);
        }
        // random = MAX gives the top of each band: cap/2 + (MAX % (cap/2+1)).
        assert!(delays.windows(2).all(|w| w[0] <= w[1]), "{delays:?}");
        assert!(delays.iter().all(|d| *d <= 8_000), "{delays:?}");
        assert!(delays[0] >= 500 && delays[0] <= 1_000, "{delays:?}");
    }

    #[test]
    fn offline_waits_and_a_returning_link_syncs_at_once() {
        let mut e = engine();
        e.handle(Connectivity { online: false }, 0, 0);
        assert_eq!(e.handle(Started, 0, 0), []);
        assert_eq!(e.handle(Nudge, 1, 0), []);
        assert_eq!(e.handle(LocalEdit, 2, 0), []);
        assert_eq!(e.handle(Connectivity { online: true }, 3, 0), [StartRound]);
    }

    #[test]
    fn a_nudge_during_a_round_runs_another_after_it() {
        let mut e = engine();
        e.handle(Started, 0, 0);
        assert_eq!(e.handle(Nudge, 1, 0), []);
        assert_eq!(e.handle(RoundDone { more: false }, 2, 0), [StartRound]);
    }

    #[test]
    fn a_local_edit_alone_schedules_a_debounced_round() {
        let mut e = engine();
        e.handle(Started, 0, 0);
        e.handle(RoundDone { more: false }, 0, 0);
        assert_eq!(e.handle(LocalEdit, 10, 0), [WakeAt(2_010)]);
        assert_eq!(e.handle(Timer, 2_010, 0), [StartRound]);
    }

    #[test]
    fn a_local_edit_during_a_round_is_synced_after_it_not_at_the_next_interval() {
        let mut e = engine();
        e.handle(Started, 0, 0);
        assert_eq!(e.handle(LocalEdit, 5, 0), []);
        assert_eq!(e.handle(RoundDone { more: false }, 100, 0), [WakeAt(2_100)]);
        assert_eq!(e.handle(Timer, 2_100, 0), [StartRound]);
        assert_eq!(e.handle(RoundDone { more: false }, 2_200, 0), [WakeAt(62_200)]);
    }

    #[test]
    fn a_throttled_round_waits_for_retry_after_whatever_else_happens() {
        let mut e = engine();
        e.handle(Started, 0, 0);
        // Retry-After is longer than the backoff: it decides.
        assert_eq!(e.handle(RoundThrottled { retry_after_ms: 30_000 }, 100, 0), [WakeAt(30_100)]);
        assert_eq!(e.handle(Nudge, 200, 0), [WakeAt(30_100)]);
        assert_eq!(e.handle(LocalEdit, 300, 0), [WakeAt(30_100)]);
        assert_eq!(e.handle(Connectivity { online: true }, 400, 0), [WakeAt(30_100)]);
        assert_eq!(e.handle(Timer, 30_099, 0), [WakeAt(30_100)]);
        assert_eq!(e.handle(Timer, 30_100, 0), [StartRound]);
        assert_eq!(e.handle(RoundDone { more: false }, 30_200, 0), [WakeAt(90_200)], "that round carried the edit");
        // A short Retry-After: the backoff (at least 500 ms after one failure) still applies.
        let mut e = engine();
        e.handle(Started, 0, 0);
        let [WakeAt(at)] = e.handle(RoundThrottled { retry_after_ms: 1 }, 0, u64::MAX)[..] else { panic!() };
        assert!(at >= 500, "{at}");
    }

    #[test]
    fn a_permanent_error_stops_until_the_app_or_server_nudges() {
        let mut e = engine();
        e.handle(Started, 0, 0);
        assert_eq!(e.handle(RoundFailed { retryable: false }, 0, 0), []);
        assert_eq!(e.handle(Timer, 1_000_000, 0), []);
        assert_eq!(e.handle(Nudge, 1_000_001, 0), [StartRound]);
    }
}
