//! A device's side of the simulation: its store on disk, killed and reopened
//! like an app process, and its sync sessions.
//!
//! A session is the real [`SyncClient::sync_now`] running on a thread of its
//! own. Its [`Transport`](fieldsync_core::Transport) is a closure that hands
//! each request body to the event loop and blocks until the loop answers, at
//! the virtual time the answer arrives. Only one thread runs at a time (the
//! loop waits for the session to block again or finish), so a run is as
//! deterministic as a single thread, while the production client runs
//! unchanged: its round loop, its 422 handling, its error recording.
//! Killing a session unwinds its thread from inside the transport, so
//! nothing after the send runs, as when the OS kills an app mid-request.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use fieldsync_core::{DeviceTime, ManualClock, SeededIds};
use fieldsync_core::{OpenError, Replica, ReplicaOptions, SyncClient, SyncError, SyncReport, TransportError};

/// What a session thread says to the loop.
#[derive(Debug)]
pub enum Step {
    /// It sent a request body and waits for the answer.
    Request(Vec<u8>),
    /// Its photo lane sent a chunk request and waits for the answer
    /// (`crate::photos`: the answer travels encoded as bytes).
    Photo(crate::photos::PhotoCall),
    /// `sync_now` returned.
    Finished(Result<SyncReport, SyncError>),
    /// It was killed inside the transport.
    Killed,
    /// Something panicked (a bug).
    Panicked(String),
}

enum ToDevice {
    Answer(Result<Vec<u8>, TransportError>),
    Kill,
}

/// The payload a killed session unwinds with.
struct Killed;

/// A sync session in flight.
pub struct Session {
    /// Its number (answers to an older session are dropped).
    pub id: u64,
    to_device: Sender<ToDevice>,
    from_device: Receiver<Step>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Session {
    /// Start `sync_now` on `replica`; returns the session and its first
    /// step. The loop sets the device's clock ([`Phone::set_time`]) before
    /// this and before each answer: the session's thread runs only while the
    /// loop waits, so it reads the time of its latest step.
    pub fn start(id: u64, replica: Arc<Mutex<Replica>>, upload_budget: usize, response_budget: u32) -> (Session, Step) {
        Self::start_with_photos(id, replica, upload_budget, response_budget, None)
    }

    /// Like [`Session::start`]; with `photos` the client also carries
    /// photos ([`SyncClient::with_photos`]) as that lane says, over the
    /// same channel to the loop ([`Step::Photo`]).
    pub fn start_with_photos(
        id: u64,
        replica: Arc<Mutex<Replica>>,
        upload_budget: usize,
        response_budget: u32,
        photos: Option<crate::photos::PhotoLane>,
    ) -> (Session, Step) {
        let (to_loop, from_device) = mpsc::channel();
        let (to_device, from_loop) = mpsc::channel::<ToDevice>();
        let requests = to_loop.clone();
        let answers = Arc::new(Mutex::new(from_loop));
        let photo_link = SessionLink { requests: Mutex::new(to_loop.clone()), answers: answers.clone() };
        let transport = move |body: Vec<u8>| -> Result<Vec<u8>, TransportError> {
            let _ = requests.send(Step::Request(body));
            await_answer(&answers)
        };
        let thread = std::thread::Builder::new()
            .name(format!("sim-session-{id}"))
            .spawn(move || {
                let outcome = {
                    let mut client = SyncClient::new(replica, Arc::new(transport));
                    client.upload_budget = upload_budget;
                    client.response_budget = response_budget;
                    if let Some(lane) = photos {
                        client = crate::photos::carry_photos(client, photo_link, lane);
                    }
                    catch_unwind(AssertUnwindSafe(|| client.sync_now()))
                };
                // The client (and with it the replica's Arc) is dropped before the loop hears.
                let step = match outcome {
                    Ok(r) => Step::Finished(r),
                    Err(p) if p.is::<Killed>() => Step::Killed,
                    Err(p) => Step::Panicked(
                        p.downcast_ref::<String>()
                            .cloned()
                            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                            .unwrap_or_else(|| "a panic".into()),
                    ),
                };
                let _ = to_loop.send(step);
            })
            .expect("the OS can start a thread");
        let mut session = Session { id, to_device, from_device, thread: Some(thread) };
        let first = session.wait();
        (session, first)
    }

    fn wait(&mut self) -> Step {
        let step = self.from_device.recv().unwrap_or_else(|_| Step::Panicked("the session thread vanished".into()));
        if !matches!(step, Step::Request(_) | Step::Photo(_))
            && let Some(t) = self.thread.take()
        {
            let _ = t.join();
        }
        step
    }

    /// Deliver the answer to the pending request (at the time the loop set
    /// the device's clock to).
    pub fn answer(&mut self, result: Result<Vec<u8>, TransportError>) -> Step {
        let _ = self.to_device.send(ToDevice::Answer(result));
        self.wait()
    }

    /// Kill the app while its request is in flight.
    pub fn kill(mut self) {
        let _ = self.to_device.send(ToDevice::Kill);
        let _ = self.wait();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = self.to_device.send(ToDevice::Kill);
            let _ = t.join();
        }
    }
}

/// The session thread's end of its channel to the loop, for the photo
/// lane's requests ([`crate::photos::carry_photos`]).
pub struct SessionLink {
    requests: Mutex<Sender<Step>>,
    answers: Arc<Mutex<Receiver<ToDevice>>>,
}

impl SessionLink {
    /// Hand `step` to the loop and block until its answer arrives.
    pub fn call(&self, step: Step) -> Result<Vec<u8>, TransportError> {
        let _ = self.requests.lock().unwrap_or_else(|p| p.into_inner()).send(step);
        await_answer(&self.answers)
    }
}

/// Block until the loop answers (at the virtual time it arrives), or
/// unwind if the app is killed meanwhile.
fn await_answer(answers: &Mutex<Receiver<ToDevice>>) -> Result<Vec<u8>, TransportError> {
    let next = answers.lock().unwrap_or_else(|p| p.into_inner()).recv();
    match next {
        Ok(ToDevice::Answer(result)) => result,
        // Not `panic!`: no panic hook runs, nothing is printed.
        Ok(ToDevice::Kill) | Err(_) => resume_unwind(Box::new(Killed)),
    }
}

/// The files of a store: the database and its write-ahead log.
fn files(path: &Path) -> [PathBuf; 3] {
    let with = |suffix: &str| {
        let mut s = path.as_os_str().to_owned();
        s.push(suffix);
        PathBuf::from(s)
    };
    [path.to_owned(), with("-wal"), with("-shm")]
}

/// Drop `replica` as a killed process would leave it: whatever its files
/// held at this instant (committed transactions in the WAL, not yet
/// checkpointed) is what the next open finds.
pub fn crash(replica: Arc<Mutex<Replica>>) -> std::io::Result<()> {
    let path = replica.lock().unwrap_or_else(|p| p.into_inner()).path().to_owned();
    let [db, wal, shm] = files(&path);
    let image: Vec<(PathBuf, Option<Vec<u8>>)> =
        [&db, &wal].into_iter().map(|p| (p.clone(), std::fs::read(p).ok())).collect();
    // Closing checkpoints the WAL and removes it: undo that below. Nothing
    // else may hold the store (a finished session dropped its client).
    let replica = Arc::try_unwrap(replica).map_err(|_| std::io::Error::other("the store is still in use"))?;
    drop(replica);
    let _ = std::fs::remove_file(&shm);
    for (p, bytes) in image {
        match bytes {
            Some(b) => std::fs::write(&p, b)?,
            None => {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
    Ok(())
}

/// Delete a store's files (an app reinstalled: its data is gone).
pub fn wipe(path: &Path) {
    for p in files(path) {
        let _ = std::fs::remove_file(p);
    }
}

/// Open (or create) the store of `device` at `path`, on the real clocks
/// (tests on real threads).
pub fn open(path: &Path, device: &str) -> Result<Arc<Mutex<Replica>>, OpenError> {
    let options = ReplicaOptions { device: device.to_owned(), ..Default::default() };
    Ok(Arc::new(Mutex::new(Replica::open(path, options)?)))
}

/// A simulated device's clocks and id sequence, its own and not its
/// thread's: every store it opens (again after a crash, anew after a
/// reinstall) reads them, on the loop's thread and its sessions' alike.
#[derive(Debug, Clone)]
pub struct Phone {
    /// Set by the loop to the device's (skewed) time before the device acts.
    pub clock: Arc<ManualClock>,
    ids: Arc<SeededIds>,
}

impl Phone {
    /// A phone at the epoch whose ids are the sequence of `seed`.
    pub fn new(seed: u64) -> Phone {
        let clock = Arc::new(ManualClock::new(DeviceTime::wall(crate::sim::EPOCH_MS)));
        Phone { clock, ids: Arc::new(SeededIds::new(seed)) }
    }

    /// Its wall clock shows `wall_ms`, `since_boot_ms` after it booted.
    pub fn set_time(&self, wall_ms: u64, since_boot_ms: u64) {
        self.clock.set(DeviceTime { wall_ms, since_boot_ms: Some(since_boot_ms) });
    }

    /// Open (or create) the store of `device` at `path` on this phone.
    pub fn open(&self, path: &Path, device: &str) -> Result<Arc<Mutex<Replica>>, OpenError> {
        let options = ReplicaOptions {
            device: device.to_owned(),
            clock: self.clock.clone(),
            ids: self.ids.clone(),
            ..Default::default()
        };
        Ok(Arc::new(Mutex::new(Replica::open(path, options)?)))
    }
}
