//! Where a replica reads the device's time: a [`DeviceClock`] it is given
//! when opened ([`crate::ReplicaOptions::clock`]), the system's by default.
//! Passed in rather than read from a global, so that replicas with clocks of
//! their own (simulated devices, days apart) run side by side on one thread.

use std::fmt;

use crate::domain::hlc::DeviceTime;

/// The device's clocks, as a replica and its sync client read them.
pub trait DeviceClock: fmt::Debug + Send + Sync {
    /// The wall clock and the clock since boot, now.
    fn now(&self) -> DeviceTime;
}

/// The real clocks of the device the process runs on.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl DeviceClock for SystemClock {
    fn now(&self) -> DeviceTime {
        DeviceTime { wall_ms: wall_clock_ms(), since_boot_ms: since_boot_ms() }
    }
}

/// A clock that reads what it was last set to, from any thread: a simulated
/// device's (its skewed wall time and uptime) or a test's.
#[cfg(any(test, feature = "simulation"))]
#[derive(Debug)]
pub struct ManualClock {
    wall_ms: std::sync::atomic::AtomicU64,
    /// `u64::MAX`: no clock since boot.
    since_boot_ms: std::sync::atomic::AtomicU64,
}

#[cfg(any(test, feature = "simulation"))]
impl ManualClock {
    /// A clock showing `time`.
    pub fn new(time: DeviceTime) -> Self {
        let clock = ManualClock { wall_ms: 0.into(), since_boot_ms: 0.into() };
        clock.set(time);
        clock
    }

    /// Show `time` from now on.
    pub fn set(&self, time: DeviceTime) {
        use std::sync::atomic::Ordering::SeqCst;
        self.wall_ms.store(time.wall_ms, SeqCst);
        self.since_boot_ms.store(time.since_boot_ms.unwrap_or(u64::MAX), SeqCst);
    }
}

#[cfg(any(test, feature = "simulation"))]
impl DeviceClock for ManualClock {
    fn now(&self) -> DeviceTime {
        use std::sync::atomic::Ordering::SeqCst;
        let since_boot_ms = Some(self.since_boot_ms.load(SeqCst)).filter(|&ms| ms != u64::MAX);
        DeviceTime { wall_ms: self.wall_ms.load(SeqCst), since_boot_ms }
    }
}

/// Milliseconds since the Unix epoch by this machine's wall clock (a
/// device's through [`SystemClock`]; the server's own time).
pub fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Milliseconds since the machine booted, sleep included, by a clock no user
/// setting moves (Linux and Android: `CLOCK_BOOTTIME`; Apple platforms:
/// `CLOCK_MONOTONIC`, which counts sleep there); `None` elsewhere.
pub fn since_boot_ms() -> Option<u64> {
    boot_clock_ms()
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn boot_clock_ms() -> Option<u64> {
    Some(ms_of(rustix::time::clock_gettime(rustix::time::ClockId::Boottime)))
}

#[cfg(target_vendor = "apple")]
fn boot_clock_ms() -> Option<u64> {
    Some(ms_of(rustix::time::clock_gettime(rustix::time::ClockId::Monotonic)))
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_vendor = "apple")))]
fn boot_clock_ms() -> Option<u64> {
    None
}

#[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
fn ms_of(t: rustix::time::Timespec) -> u64 {
    (t.tv_sec as u64).saturating_mul(1000) + t.tv_nsec as u64 / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_since_boot_never_goes_back() {
        let (a, b) = (since_boot_ms(), since_boot_ms());
        if cfg!(target_os = "linux") {
            assert!(a.is_some() && a <= b, "{a:?} {b:?}");
        }
    }

    #[test]
    fn a_manual_clock_shows_what_it_was_set_to_on_every_thread() {
        let clock = std::sync::Arc::new(ManualClock::new(DeviceTime::wall(42)));
        assert_eq!(clock.now(), DeviceTime::wall(42));
        let up = DeviceTime { wall_ms: 7, since_boot_ms: Some(3) };
        clock.set(up);
        let other = clock.clone();
        assert_eq!(std::thread::spawn(move || other.now()).join().unwrap(), up);
    }
}
