//! Which seeds a test run covers, how to replay one, and the regression list.
//!
//! - The window: `FIELDSYNC_SEEDS` seeds (default [`DEFAULT_SEEDS`]) from a
//!   base that moves with the commit (the first 16 hex digits of
//!   `git rev-parse HEAD`), so successive commits cover new seeds;
//!   `FIELDSYNC_SEED_BASE` pins the base, and without git it is fixed.
//! - `FIELDSYNC_SEED=a,b,…` runs exactly those seeds (a replay).
//! - `tests/regressions.txt`: every seed that ever failed, one per line
//!   (`<seed>  # what it found`); always run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::config::SimConfig;
use crate::report::SimReport;
use crate::sim::run_simulation;

/// Seeds a default test run covers.
pub const DEFAULT_SEEDS: u64 = 500;
/// The base when neither `FIELDSYNC_SEED_BASE` nor git says otherwise.
pub const FALLBACK_BASE: u64 = 0x5EED_F1E1_D000_0000;

/// The crate's directory (where `regressions.txt` lives).
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn git_head(dir: &Path) -> Option<u64> {
    let out = Command::new("git").arg("-C").arg(dir).args(["rev-parse", "HEAD"]).output().ok()?;
    let hex = String::from_utf8(out.stdout).ok()?;
    u64::from_str_radix(hex.trim().get(..16)?, 16).ok()
}

/// The first seed of the window, and where it came from.
pub fn base_seed() -> (u64, &'static str) {
    if let Some(b) = std::env::var("FIELDSYNC_SEED_BASE").ok().and_then(|v| v.trim().parse().ok()) {
        return (b, "FIELDSYNC_SEED_BASE");
    }
    match git_head(&crate_dir()) {
        Some(b) => (b, "git HEAD"),
        None => (FALLBACK_BASE, "the fixed fallback"),
    }
}

fn parse_list(s: &str) -> Vec<u64> {
    s.split([',', ' ']).filter_map(|x| x.trim().parse().ok()).collect()
}

/// The seeds to run: `FIELDSYNC_SEED` if set, else the window.
pub fn seeds_to_run() -> Vec<u64> {
    if let Ok(list) = std::env::var("FIELDSYNC_SEED") {
        return parse_list(&list);
    }
    let n = std::env::var("FIELDSYNC_SEEDS").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(DEFAULT_SEEDS);
    let (base, _) = base_seed();
    (0..n).map(|i| base.wrapping_add(i)).collect()
}

/// Every seed in `regressions.txt` (`<seed>` then an optional `# note`).
pub fn regressions() -> Vec<(u64, String)> {
    let text = std::fs::read_to_string(crate_dir().join("regressions.txt")).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (seed, note) = l.split_once('#').unwrap_or((l, ""));
            Some((seed.trim().parse().ok()?, note.trim().to_owned()))
        })
        .collect()
}

/// The command that replays `config`'s run in the test suite.
pub fn replay_command(config: &SimConfig) -> String {
    let bug = config.inject.map_or(String::new(), |b| {
        format!("FIELDSYNC_INJECT_BUG={} ", serde_json::to_string(&b).unwrap_or_default().trim_matches('"'))
    });
    // A day with partial scopes is replayed by its own test (`tests/sim/scope.rs`).
    let test = if config.scopes.is_some() { "scope::" } else { "seeds" };
    format!("{bug}FIELDSYNC_SEED={} cargo test -p fieldsync-tests --test sim -- {test} --nocapture", config.seed)
}

/// What to print for a failed run: the violations, the replay command, and
/// the line to add to `regressions.txt`.
pub fn failure_message(report: &SimReport) -> String {
    let mut s = format!("FAILED {}\n", report.summary());
    for v in &report.violations {
        s.push_str(&format!("  {}: {}\n", v.invariant.as_str(), v.detail));
    }
    s.push_str(&format!("  replay: {}\n", report.replay));
    let first = report.violations.first().map_or("", |v| v.invariant.as_str());
    s.push_str(&format!("  keep it: echo '{}  # {first}' >> tests/regressions.txt\n", report.seed));
    s
}

/// Run `configs` on `threads` threads (each run is single-threaded and
/// deterministic; runs are independent). `each` hears every report as it comes.
pub fn run_many(configs: Vec<SimConfig>, threads: usize, each: &(dyn Fn(&SimReport) + Sync)) -> Vec<SimReport> {
    let next = AtomicUsize::new(0);
    let out = Mutex::new(Vec::with_capacity(configs.len()));
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(config) = configs.get(i) else { return };
                    let report = run_simulation(config.clone(), |_| {});
                    each(&report);
                    out.lock().unwrap_or_else(|p| p.into_inner()).push((i, report));
                }
            });
        }
    });
    let mut out = out.into_inner().unwrap_or_else(|p| p.into_inner());
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

/// Threads for [`run_many`]: `FIELDSYNC_SIM_THREADS`, else the machine's parallelism.
pub fn threads() -> usize {
    std::env::var("FIELDSYNC_SIM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
}
