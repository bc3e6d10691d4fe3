//! How long an edit takes to become visible on another online device,
//! measured in the hub: the time a round stored changes, and the round of
//! another device, woken by its live channel's notice, that received them
//! (`fieldsync_edit_to_visible_seconds`).
//!
//! Only this process's commits are timed (a round another process stored
//! reaches this one as a bare notice, without its time), and only in memory:
//! a bounded number of recent commits per project.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

use crate::metrics::Metrics;

/// Recent commits kept per project; an older one is no longer timed.
const COMMITS_KEPT: usize = 1024;

/// A round that stored changes.
#[derive(Debug)]
struct Commit {
    /// The project's feed seq after it.
    seq: u64,
    at: Instant,
    /// Its uploader, who is not "another device".
    device: String,
}

/// The commits and wake-ups the measure needs.
#[derive(Debug, Default)]
pub struct Freshness {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    commits: HashMap<String, VecDeque<Commit>>,
    /// (device, project) pairs whose live channel carried a notice since their last round.
    woken: HashMap<(String, String), Instant>,
}

impl Freshness {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `device`'s round stored changes of `project`, which now ends at `seq`.
    pub fn stored(&self, project: &str, seq: u64, device: &str) {
        let mut state = self.state();
        let commits = state.commits.entry(project.to_owned()).or_default();
        if commits.len() == COMMITS_KEPT {
            commits.pop_front();
        }
        commits.push_back(Commit { seq, at: Instant::now(), device: device.to_owned() });
    }

    /// `device`'s live channel on `project` carried a notice.
    pub fn woken(&self, device: &str, project: &str) {
        self.state().woken.entry((device.to_owned(), project.to_owned())).or_insert_with(Instant::now);
    }

    /// `device`'s round on `project` sent it the feed from `after` (exclusive)
    /// to `until` (inclusive), and `more` remains: if its live channel woke
    /// it, each commit of another device in that range became visible now.
    pub fn delivered(&self, metrics: &Metrics, device: &str, project: &str, after: u64, until: u64, more: bool) {
        let mut state = self.state();
        let key = (device.to_owned(), project.to_owned());
        if !state.woken.contains_key(&key) {
            return;
        }
        if !more {
            state.woken.remove(&key);
        }
        let now = Instant::now();
        for commit in state.commits.get(project).into_iter().flatten() {
            if commit.seq > after && commit.seq <= until && commit.device != device {
                metrics.edit_to_visible(now.duration_since(commit.at));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(metrics: &Metrics) -> String {
        metrics
            .encode_prometheus()
            .lines()
            .find(|l| l.starts_with("fieldsync_edit_to_visible_seconds_count"))
            .unwrap_or_default()
            .to_owned()
    }

    #[test]
    fn only_a_woken_device_receiving_anothers_commit_counts_once() {
        let (f, m) = (Freshness::default(), Metrics::new());
        f.stored("p", 3, "olga");
        // Not woken: a timed sync, say.
        f.delivered(&m, "tina", "p", 0, 3, false);
        assert_eq!(observed(&m), "fieldsync_edit_to_visible_seconds_count 0");
        f.woken("tina", "p");
        f.woken("olga", "p");
        // The uploader's own round does not count.
        f.delivered(&m, "olga", "p", 0, 3, false);
        f.delivered(&m, "tina", "p", 0, 3, false);
        assert_eq!(observed(&m), "fieldsync_edit_to_visible_seconds_count 1");
        // The next round (not woken again) counts nothing.
        f.delivered(&m, "tina", "p", 3, 3, false);
        assert_eq!(observed(&m), "fieldsync_edit_to_visible_seconds_count 1");
    }

    #[test]
    fn a_paged_delivery_counts_each_commit_in_the_page_it_arrives_in() {
        let (f, m) = (Freshness::default(), Metrics::new());
        f.stored("p", 2, "olga");
        f.stored("p", 5, "otto");
        f.woken("tina", "p");
        f.delivered(&m, "tina", "p", 0, 2, true);
        f.delivered(&m, "tina", "p", 2, 5, false);
        assert_eq!(observed(&m), "fieldsync_edit_to_visible_seconds_count 2");
    }

    #[test]
    fn commits_kept_are_bounded() {
        let f = Freshness::default();
        for seq in 0..(COMMITS_KEPT as u64 + 10) {
            f.stored("p", seq, "olga");
        }
        assert_eq!(f.state().commits["p"].len(), COMMITS_KEPT);
    }
}
