//! The live bus: in-process news for the live channels. Each project's feed
//! growth (a round committed here, or by another process through
//! [`crate::pg_store::listen`]) and each device revocation (through this hub,
//! or found in the store by [`Hub::look_for_revocations`]). A device holding
//! part of its project is woken only by commits to sections its scope covers.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use fieldsync_core::{Coverage, Scope};
use tokio::sync::broadcast;

/// Commits remembered per project, for the live channels of devices with a scope.
const RECENT_COMMITS: usize = 64;

/// The sections a commit touched, each with its coverage after it.
pub(super) type Touched = Vec<(String, Coverage)>;

/// How far before the latest revocation seen the store is looked at again:
/// another process's clock, or its commit, may lag ours.
pub(super) const REVOCATION_SLACK_MS: u64 = 60_000;

/// Feed notices by project, and revocations.
pub(super) struct LiveBus {
    feeds: Mutex<HashMap<String, broadcast::Sender<u64>>>,
    revoked: broadcast::Sender<String>,
    /// Revocations announced already, by when they were made.
    seen: Mutex<RevocationsSeen>,
    /// The scope each device last synced a project under, when not everything.
    scopes: Mutex<HashMap<(String, String), Scope>>,
    /// Each project's latest commits here, with what they touched.
    recent: Mutex<HashMap<String, RecentCommits>>,
}

/// A project's latest commits: by seq, the sections each touched with their
/// coverage after it (`None`: not known, a commit of another process or a
/// roster change, which every device is told of).
#[derive(Default)]
struct RecentCommits {
    commits: VecDeque<(u64, Option<Touched>)>,
    /// The highest seq no longer remembered.
    forgotten: u64,
}

struct RevocationsSeen {
    /// The latest revocation seen (or when the hub started).
    since_ms: u64,
    ids: HashMap<String, u64>,
}

impl LiveBus {
    pub(super) fn new(now_ms: u64) -> LiveBus {
        LiveBus {
            feeds: Mutex::new(HashMap::new()),
            revoked: broadcast::channel(64).0,
            seen: Mutex::new(RevocationsSeen { since_ms: now_ms, ids: HashMap::new() }),
            scopes: Mutex::new(HashMap::new()),
            recent: Mutex::new(HashMap::new()),
        }
    }

    /// Remember the scope `device` syncs `project` under.
    pub(super) fn remember_scope(&self, device: &str, project: &str, scope: &Scope) {
        let mut scopes = self.scopes.lock().unwrap_or_else(|p| p.into_inner());
        let key = (device.to_owned(), project.to_owned());
        match scope {
            Scope::Everything => scopes.remove(&key),
            only => scopes.insert(key, only.clone()),
        };
    }

    /// Whether a notice up to `seq` is news to `device` (after it was told
    /// of `after`): always, unless its scope covers none of the sections
    /// the commits in between touched, as far as this process knows them.
    pub(super) fn wants(&self, device: &str, project: &str, after: u64, seq: u64) -> bool {
        let scopes = self.scopes.lock().unwrap_or_else(|p| p.into_inner());
        let Some(scope) = scopes.get(&(device.to_owned(), project.to_owned())) else { return true };
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let Some(project) = recent.get(project).filter(|r| r.forgotten <= after) else { return true };
        project.commits.iter().filter(|(s, _)| (after + 1..=seq).contains(s)).any(|(_, touched)| match touched {
            None => true,
            Some(touched) => touched.is_empty() || touched.iter().any(|(id, c)| scope.covers(id, c)),
        })
    }

    /// The latest seq of `project` this process announced (0: none): a
    /// channel opened now is told of what comes after (its device runs a
    /// round on connecting for what came before).
    pub(super) fn announced(&self, project: &str) -> u64 {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.get(project).and_then(|r| r.commits.back()).map_or(0, |(seq, _)| *seq)
    }

    fn remember_commit(&self, project: &str, seq: u64, touched: Option<Touched>) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let commits = recent.entry(project.to_owned()).or_default();
        commits.commits.push_back((seq, touched));
        while commits.commits.len() > RECENT_COMMITS {
            let (gone, _) = commits.commits.pop_front().expect("longer than the limit");
            commits.forgotten = commits.forgotten.max(gone);
        }
    }

    pub(super) fn subscribe(&self, project: &str) -> broadcast::Receiver<u64> {
        let mut feeds = self.feeds.lock().unwrap_or_else(|p| p.into_inner());
        feeds.entry(project.to_owned()).or_insert_with(|| broadcast::channel(16).0).subscribe()
    }

    /// The feed of `project` reached `seq` with a commit that touched these
    /// sections (`None`: not known).
    pub(super) fn notify(&self, project: &str, seq: u64, touched: Option<Touched>) {
        self.remember_commit(project, seq, touched);
        let mut feeds = self.feeds.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = feeds.get(project)
            && tx.send(seq).is_err()
        {
            feeds.remove(project); // Nobody listens any more.
        }
    }

    pub(super) fn revocations(&self) -> broadcast::Receiver<String> {
        self.revoked.subscribe()
    }

    pub(super) fn revoked(&self, device: &str) {
        let _ = self.revoked.send(device.to_owned()); // No receiver: no live channel open.
    }

    /// Where to look for revocations from: a little before the latest seen.
    pub(super) fn look_from_ms(&self) -> u64 {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).since_ms.saturating_sub(REVOCATION_SLACK_MS)
    }

    /// Announce those of `found` (device, when revoked) not announced yet; how many.
    pub(super) fn announce_revoked(&self, found: Vec<(String, u64)>) -> usize {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let mut announced = 0;
        for (id, at_ms) in found {
            seen.since_ms = seen.since_ms.max(at_ms);
            if seen.ids.insert(id.clone(), at_ms).is_none() {
                self.revoked(&id);
                announced += 1;
            }
        }
        let oldest = seen.since_ms.saturating_sub(REVOCATION_SLACK_MS);
        seen.ids.retain(|_, at_ms| *at_ms >= oldest);
        announced
    }
}
