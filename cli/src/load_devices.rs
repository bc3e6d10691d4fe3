//! The phones of `fieldsync bench load`: each device's replica, client and
//! token; the queue of devices wanting a round and the workers that run them
//! (one round at a time per device; a live notice during a round asks for one
//! more); and the record of every change the devices make, with the heads it
//! was built on, which tells exactly when another device has an edit.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use fieldsync_core::{Durability, HttpTransport, Replica, ReplicaOptions, Role, SyncClient};

use crate::error::CliError;
use crate::load_layout::{Enrolled, Layout};

/// How long a device's round trip may take before it fails.
const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(120);

/// One simulated phone.
pub(crate) struct Device {
    pub(crate) project: usize,
    pub(crate) member: usize,
    pub(crate) role: Role,
    pub(crate) user: String,
    /// Its bearer token (also inside its transport), for its live channel.
    pub(crate) token: String,
    pub(crate) replica: Arc<Mutex<Replica>>,
    pub(crate) client: SyncClient,
}

pub(crate) fn lock(replica: &Mutex<Replica>) -> MutexGuard<'_, Replica> {
    replica.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where a device's rounds stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    Idle,
    Queued,
    Running,
    /// Asked for again while running: one more round after this one.
    RunningAgain,
}

/// The queue of devices wanting a round, and the workers' stop.
pub(crate) struct Scheduler {
    pub(crate) state: Mutex<SchedulerState>,
    pub(crate) wake: Condvar,
}

pub(crate) struct SchedulerState {
    pub(crate) queue: VecDeque<usize>,
    pub(crate) slots: Vec<Slot>,
    pub(crate) busy: usize,
    pub(crate) stop: bool,
}

impl Scheduler {
    pub(crate) fn new(devices: usize) -> Scheduler {
        Scheduler {
            state: Mutex::new(SchedulerState {
                queue: VecDeque::new(),
                slots: vec![Slot::Idle; devices],
                busy: 0,
                stop: false,
            }),
            wake: Condvar::new(),
        }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, SchedulerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Device `d` should sync (its live channel spoke, or it edited).
    pub(crate) fn request(&self, d: usize) {
        let mut s = self.state();
        match s.slots[d] {
            Slot::Idle => {
                s.slots[d] = Slot::Queued;
                s.queue.push_back(d);
                self.wake.notify_one();
            }
            Slot::Running => s.slots[d] = Slot::RunningAgain,
            Slot::Queued | Slot::RunningAgain => {}
        }
    }

    /// The next device to sync; `None` once stopped.
    pub(crate) fn next(&self) -> Option<usize> {
        let mut s = self.state();
        loop {
            if s.stop {
                return None;
            }
            if let Some(d) = s.queue.pop_front() {
                s.slots[d] = Slot::Running;
                s.busy += 1;
                return Some(d);
            }
            s = self.wake.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    pub(crate) fn done(&self, d: usize) {
        let mut s = self.state();
        s.busy -= 1;
        if s.slots[d] == Slot::RunningAgain {
            s.slots[d] = Slot::Queued;
            s.queue.push_back(d);
            self.wake.notify_one();
        } else {
            s.slots[d] = Slot::Idle;
        }
        if s.busy == 0 && s.queue.is_empty() {
            self.wake.notify_all();
        }
    }

    pub(crate) fn idle(&self) -> bool {
        let s = self.state();
        s.busy == 0 && s.queue.is_empty()
    }

    pub(crate) fn stop(&self) {
        self.state().stop = true;
        self.wake.notify_all();
    }
}

/// A change a bench device made: when, and what it was built on.
pub(crate) struct Change {
    pub(crate) seq: u64,
    pub(crate) deps: Vec<String>,
}

/// An edit being followed to every other device of its project.
pub(crate) struct EditRecord {
    pub(crate) made: Instant,
    pub(crate) seq: u64,
    pub(crate) hash: String,
    /// Other devices of the project that have not merged it yet.
    pub(crate) waiting: usize,
}

/// Per project: every change made, and which device still lacks which edit.
pub(crate) struct Track {
    pub(crate) next_seq: u64,
    pub(crate) changes: HashMap<String, Change>,
    pub(crate) edits: Vec<EditRecord>,
    /// Per member: section → edits it has not yet merged.
    pub(crate) pending: Vec<HashMap<String, Vec<usize>>>,
    /// Per member: its edits not yet uploaded.
    pub(crate) unacked: Vec<Vec<usize>>,
}

impl Track {
    pub(crate) fn new(members: usize) -> Track {
        Track {
            next_seq: 0,
            changes: HashMap::new(),
            edits: Vec::new(),
            pending: vec![HashMap::new(); members],
            unacked: vec![Vec::new(); members],
        }
    }

    /// `author` made change `hash` on `section` from `deps` (its heads before).
    pub(crate) fn made(&mut self, author: usize, section: &str, hash: String, deps: Vec<String>, made: Instant) {
        self.next_seq += 1;
        let seq = self.next_seq;
        self.changes.insert(hash.clone(), Change { seq, deps });
        let index = self.edits.len();
        let others = self.pending.len() - 1;
        self.edits.push(EditRecord { made, seq, hash, waiting: others });
        for (m, pending) in self.pending.iter_mut().enumerate() {
            if m != author {
                pending.entry(section.to_owned()).or_default().push(index);
            }
        }
        self.unacked[author].push(index);
    }

    /// Which pending edits of `section` a device whose heads are `heads` has:
    /// the changes reachable from its heads, made no earlier than the oldest pending one.
    pub(crate) fn reached(&self, heads: &[String], oldest: u64) -> HashSet<&str> {
        let mut seen: HashSet<&str> = HashSet::new();
        let mut stack: Vec<&str> = heads.iter().map(String::as_str).collect();
        while let Some(h) = stack.pop() {
            let Some((key, change)) = self.changes.get_key_value(h) else { continue };
            if change.seq < oldest || !seen.insert(key.as_str()) {
                continue;
            }
            stack.extend(change.deps.iter().map(String::as_str));
        }
        seen
    }
}

/// Everything the workers share.
pub(crate) struct Shared {
    pub(crate) devices: Vec<Device>,
    pub(crate) tracks: Vec<Mutex<Track>>,
    pub(crate) scheduler: Scheduler,
    pub(crate) samples: Mutex<Samples>,
    pub(crate) rounds: AtomicU64,
    pub(crate) syncs: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) failures: Mutex<HashMap<String, u64>>,
}

#[derive(Default)]
pub(crate) struct Samples {
    pub(crate) visible: Vec<Duration>,
    pub(crate) every_device: Vec<Duration>,
    pub(crate) acknowledged: Vec<Duration>,
}

impl Shared {
    pub(crate) fn track(&self, project: usize) -> MutexGuard<'_, Track> {
        self.tracks[project].lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn samples(&self) -> MutexGuard<'_, Samples> {
        self.samples.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One worker: run the rounds devices ask for, then note what they brought.
    pub(crate) fn work(&self) {
        while let Some(d) = self.scheduler.next() {
            let device = &self.devices[d];
            let started = Instant::now();
            let outcome = device.client.sync_now();
            let done = Instant::now();
            self.syncs.fetch_add(1, Ordering::Relaxed);
            match outcome {
                Ok(report) => {
                    self.rounds.fetch_add(u64::from(report.rounds), Ordering::Relaxed);
                    self.note_round(device, started, done);
                }
                Err(e) => {
                    self.failed.fetch_add(1, Ordering::Relaxed);
                    let mut why = e.to_string();
                    why.truncate(120);
                    *self.failures.lock().unwrap_or_else(|p| p.into_inner()).entry(why).or_default() += 1;
                    // Retried, as background sync would, after a pause.
                    std::thread::sleep(Duration::from_millis(200));
                    self.scheduler.done(d);
                    self.scheduler.request(d);
                    continue;
                }
            }
            self.scheduler.done(d);
        }
    }

    /// After `device`'s round (started at `started`, merged at `done`): its edits
    /// made before the round are acknowledged; the others' edits it now has arrived.
    pub(crate) fn note_round(&self, device: &Device, started: Instant, done: Instant) {
        let sections: Vec<String> = self.track(device.project).pending[device.member].keys().cloned().collect();
        let heads: Vec<(String, Vec<String>)> = if sections.is_empty() {
            Vec::new()
        } else {
            let replica = lock(&device.replica);
            sections.into_iter().filter_map(|s| replica.section(&s).ok().map(|v| (s, v.heads))).collect()
        };
        let mut arrived = Vec::new();
        let mut everywhere = Vec::new();
        let mut acknowledged = Vec::new();
        {
            let mut track = self.track(device.project);
            let unacked = std::mem::take(&mut track.unacked[device.member]);
            let (sent, later): (Vec<usize>, Vec<usize>) =
                unacked.into_iter().partition(|&e| track.edits[e].made <= started);
            track.unacked[device.member] = later;
            acknowledged.extend(sent.iter().map(|&e| done - track.edits[e].made));
            for (section, heads) in heads {
                let Some(waiting) = track.pending[device.member].get(&section) else { continue };
                let oldest = waiting.iter().map(|&e| track.edits[e].seq).min().unwrap_or(0);
                let reached = track.reached(&heads, oldest);
                let (got, still): (Vec<usize>, Vec<usize>) =
                    waiting.iter().partition(|&&e| reached.contains(track.edits[e].hash.as_str()));
                if got.is_empty() {
                    continue;
                }
                if still.is_empty() {
                    track.pending[device.member].remove(&section);
                } else {
                    track.pending[device.member].insert(section, still);
                }
                for e in got {
                    let edit = &mut track.edits[e];
                    edit.waiting -= 1;
                    arrived.push(done - edit.made);
                    if edit.waiting == 0 {
                        everywhere.push(done - edit.made);
                    }
                }
            }
        }
        if !(arrived.is_empty() && acknowledged.is_empty()) {
            let mut samples = self.samples();
            samples.visible.extend(arrived);
            samples.every_device.extend(everywhere);
            samples.acknowledged.extend(acknowledged);
        }
    }

    pub(crate) fn unseen(&self) -> u64 {
        self.tracks
            .iter()
            .map(|t| t.lock().unwrap_or_else(|p| p.into_inner()).edits.iter().map(|e| e.waiting as u64).sum::<u64>())
            .sum()
    }
}

/// Open every device's replica (in parallel: thousands of schema creations).
pub(crate) fn open_devices(
    enrolled: Vec<Enrolled>,
    urls: &[String],
    offset: usize,
    dir: &Path,
    threads: usize,
) -> Result<Vec<Device>, CliError> {
    let open_one = |(i, e): (usize, Enrolled)| -> Result<Device, CliError> {
        let options = ReplicaOptions {
            device: format!("load-{i}"),
            durability: Durability::Normal,
            encryption_key: None,
            ..Default::default()
        };
        let mut replica = Replica::open(dir.join(format!("device-{i}.db")), options)?;
        replica.join_project(&e.project_id)?;
        // Devices spread over the processes, as a load balancer would spread them.
        let transport = HttpTransport::new(&urls[(offset + i) % urls.len()], &e.token, ROUND_TRIP_TIMEOUT)
            .map_err(|err| CliError::Failed(format!("cannot set up HTTP: {err}")))?;
        let replica = Arc::new(Mutex::new(replica));
        let client = SyncClient::new(Arc::clone(&replica), Arc::new(transport));
        Ok(Device {
            project: e.project,
            member: e.member,
            role: Layout::role(e.member),
            user: e.user,
            token: e.token,
            replica,
            client,
        })
    };
    let work: Mutex<VecDeque<(usize, Enrolled)>> = Mutex::new(enrolled.into_iter().enumerate().collect());
    let opened: Mutex<Vec<(usize, Result<Device, CliError>)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let Some(item) = work.lock().unwrap_or_else(|p| p.into_inner()).pop_front() else { return };
                    let i = item.0;
                    let device = open_one(item);
                    opened.lock().unwrap_or_else(|p| p.into_inner()).push((i, device));
                }
            });
        }
    });
    let mut opened = opened.into_inner().unwrap_or_else(|p| p.into_inner());
    opened.sort_by_key(|(i, _)| *i);
    opened.into_iter().map(|(_, d)| d).collect()
}

/// Wait until no device wants a round (or `limit` passes); whether it got there.
pub(crate) fn settle(shared: &Shared, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if shared.scheduler.idle() {
            // A live notice may still be on its way: idle twice, a moment apart.
            std::thread::sleep(Duration::from_millis(300));
            if shared.scheduler.idle() {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}
