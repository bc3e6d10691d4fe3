//! Per-device limits of the HTTP layer, in memory and without I/O (the time
//! is passed in): a token bucket of requests per device with a cap on the
//! requests it has in flight, and the live channels each device holds.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::oneshot;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The maps stay consistent whatever panicked while one was held.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Why a device's request is not admitted, and how long it should wait.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Throttled {
    /// Its bucket is empty.
    #[error("device {device} sends more than {per_minute} requests a minute")]
    Rate {
        /// The device.
        device: String,
        /// The sustained rate allowed.
        per_minute: u32,
        /// Seconds until a request is admitted again.
        retry_after_s: u64,
    },
    /// It has as many requests in flight as it may.
    #[error("device {device} has {in_flight} requests in flight, the most one device may")]
    InFlight {
        /// The device.
        device: String,
        /// Its requests in flight.
        in_flight: usize,
    },
}

impl Throttled {
    /// Seconds to wait (`Retry-After`).
    pub fn retry_after_s(&self) -> u64 {
        match self {
            Throttled::Rate { retry_after_s, .. } => *retry_after_s,
            Throttled::InFlight { .. } => 1,
        }
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
    in_flight: usize,
}

/// Requests per device: `per_minute` sustained with bursts of `burst`, and at
/// most `max_in_flight` at once.
#[derive(Clone)]
pub struct RateLimiter {
    per_minute: u32,
    burst: u32,
    max_in_flight: usize,
    buckets: Arc<Mutex<Buckets>>,
}

#[derive(Default)]
struct Buckets {
    by_device: HashMap<String, Bucket>,
    admitted: u64,
}

/// Every so many requests, buckets that are full again are forgotten.
const SWEEP_EVERY: u64 = 1024;

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("per_minute", &self.per_minute)
            .field("burst", &self.burst)
            .field("max_in_flight", &self.max_in_flight)
            .finish_non_exhaustive()
    }
}

/// A request in flight; dropping it ends it.
#[derive(Debug)]
pub struct InFlight {
    limiter: RateLimiter,
    device: String,
    counted: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.counted
            && let Some(b) = lock(&self.limiter.buckets).by_device.get_mut(&self.device)
        {
            b.in_flight = b.in_flight.saturating_sub(1);
        }
    }
}

impl RateLimiter {
    /// `per_minute` 0 admits every request (the in-flight cap still applies;
    /// `max_in_flight` 0 lifts it).
    pub fn new(per_minute: u32, burst: u32, max_in_flight: usize) -> RateLimiter {
        RateLimiter { per_minute, burst: burst.max(1), max_in_flight, buckets: Arc::default() }
    }

    /// Admit a request of `device` at `now`, which lasts until the returned
    /// guard is dropped (`counts_in_flight`: a live channel's upgrade does not).
    pub fn admit(&self, device: &str, now: Instant, counts_in_flight: bool) -> Result<InFlight, Throttled> {
        let mut buckets = lock(&self.buckets);
        buckets.admitted += 1;
        if buckets.admitted.is_multiple_of(SWEEP_EVERY) {
            self.sweep(&mut buckets.by_device, now);
        }
        let b = buckets.by_device.entry(device.to_owned()).or_insert(Bucket {
            tokens: self.burst.into(),
            at: now,
            in_flight: 0,
        });
        if counts_in_flight && self.max_in_flight > 0 && b.in_flight >= self.max_in_flight {
            return Err(Throttled::InFlight { device: device.to_owned(), in_flight: b.in_flight });
        }
        if self.per_minute > 0 {
            let per_s = f64::from(self.per_minute) / 60.0;
            let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
            b.tokens = (b.tokens + elapsed * per_s).min(self.burst.into());
            b.at = now;
            if b.tokens < 1.0 {
                let retry_after_s = ((1.0 - b.tokens) / per_s).ceil().max(1.0) as u64;
                return Err(Throttled::Rate { device: device.to_owned(), per_minute: self.per_minute, retry_after_s });
            }
            b.tokens -= 1.0;
        }
        if counts_in_flight {
            b.in_flight += 1;
        }
        Ok(InFlight { limiter: self.clone(), device: device.to_owned(), counted: counts_in_flight })
    }

    /// Forget the buckets that are full again with nothing in flight: a new
    /// one would be the same, so the map holds only devices active lately.
    fn sweep(&self, by_device: &mut HashMap<String, Bucket>, now: Instant) {
        let per_s = f64::from(self.per_minute) / 60.0;
        by_device.retain(|_, b| {
            let full = self.per_minute == 0
                || b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_s >= f64::from(self.burst);
            b.in_flight > 0 || !full
        });
    }

    /// Devices with a bucket.
    pub fn devices(&self) -> usize {
        lock(&self.buckets).by_device.len()
    }
}

/// The live channels each device holds: at most `per_device`; registering
/// one more closes the oldest (an app that reconnects after a network change
/// replaces a channel that may be half-dead).
#[derive(Debug, Clone)]
pub struct LiveChannels {
    per_device: usize,
    inner: Arc<Mutex<Channels>>,
}

#[derive(Debug, Default)]
struct Channels {
    next: u64,
    by_device: HashMap<String, VecDeque<(u64, oneshot::Sender<()>)>>,
}

/// A registered live channel; dropping it unregisters it.
#[derive(Debug)]
pub struct LiveSlot {
    channels: LiveChannels,
    device: String,
    id: u64,
}

impl Drop for LiveSlot {
    fn drop(&mut self) {
        let mut inner = lock(&self.channels.inner);
        if let Some(list) = inner.by_device.get_mut(&self.device) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                inner.by_device.remove(&self.device);
            }
        }
    }
}

impl LiveChannels {
    /// At most `per_device` channels per device (0: no limit).
    pub fn new(per_device: usize) -> LiveChannels {
        LiveChannels { per_device, inner: Arc::default() }
    }

    /// Register a channel of `device`; the receiver completes when a newer
    /// channel of the same device replaces it.
    pub fn register(&self, device: &str) -> (LiveSlot, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let mut inner = lock(&self.inner);
        inner.next += 1;
        let id = inner.next;
        let list = inner.by_device.entry(device.to_owned()).or_default();
        list.push_back((id, tx));
        while self.per_device > 0 && list.len() > self.per_device {
            if let Some((_, oldest)) = list.pop_front() {
                let _ = oldest.send(());
            }
        }
        drop(inner);
        (LiveSlot { channels: self.clone(), device: device.to_owned(), id }, rx)
    }

    /// Channels `device` holds.
    pub fn count(&self, device: &str) -> usize {
        lock(&self.inner).by_device.get(device).map_or(0, VecDeque::len)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_bucket_admits_its_burst_then_its_rate_and_says_when_to_retry() {
        let limiter = RateLimiter::new(60, 3, 0);
        let t0 = Instant::now();
        let held: Vec<_> = (0..3).map(|_| limiter.admit("d", t0, true).unwrap()).collect();
        let e = limiter.admit("d", t0, true).unwrap_err();
        assert_eq!(e.retry_after_s(), 1);
        assert!(e.to_string().contains("60 requests a minute"), "{e}");
        // Another device has its own bucket.
        limiter.admit("other", t0, true).unwrap();
        // One a second comes back.
        limiter.admit("d", t0 + Duration::from_secs(1), true).unwrap();
        assert!(limiter.admit("d", t0 + Duration::from_secs(1), true).is_err());
        drop(held);
        let slow = RateLimiter::new(1, 1, 0);
        slow.admit("d", t0, true).unwrap();
        assert_eq!(slow.admit("d", t0 + Duration::from_secs(15), true).unwrap_err().retry_after_s(), 45);
    }

    #[test]
    fn requests_in_flight_are_capped_per_device() {
        let limiter = RateLimiter::new(0, 1, 2);
        let t0 = Instant::now();
        let a = limiter.admit("d", t0, true).unwrap();
        let _b = limiter.admit("d", t0, true).unwrap();
        assert!(matches!(limiter.admit("d", t0, true), Err(Throttled::InFlight { in_flight: 2, .. })));
        limiter.admit("d", t0, false).unwrap(); // A live upgrade is not a request in flight.
        drop(a);
        limiter.admit("d", t0, true).unwrap();
    }

    #[test]
    fn buckets_that_are_full_again_are_forgotten() {
        let limiter = RateLimiter::new(60, 10, 0);
        let t0 = Instant::now();
        for i in 0..SWEEP_EVERY - 1 {
            let _ = limiter.admit(&format!("d{}", i % 100), t0, true);
        }
        assert_eq!(limiter.devices(), 100);
        // Ten seconds refill a bucket of ten: the sweep forgets every quiet one.
        let _held = limiter.admit("busy", t0 + Duration::from_secs(10), true).unwrap();
        assert_eq!(limiter.devices(), 1);
    }

    #[test]
    fn a_device_over_its_live_channels_loses_the_oldest() {
        let channels = LiveChannels::new(2);
        let (first, mut first_rx) = channels.register("d");
        let (_second, mut second_rx) = channels.register("d");
        let (_other, _) = channels.register("e");
        assert!(first_rx.try_recv().is_err());
        let (_third, _) = channels.register("d");
        assert!(first_rx.try_recv().is_ok(), "the oldest is told to close");
        assert!(second_rx.try_recv().is_err());
        assert_eq!((channels.count("d"), channels.count("e")), (2, 1));
        drop(first); // Already gone from the list: harmless.
        assert_eq!(channels.count("d"), 2);
    }
}
