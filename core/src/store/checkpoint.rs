//! WAL checkpoints on a thread of their own.
//!
//! SQLite's automatic checkpoint runs inside the commit that takes the WAL
//! past its limit, so one unlucky edit or merge pays for copying every page
//! written since the last checkpoint into the database file (≈ 11 ms of the
//! 1,000-section merge, and the edit latency's p99). A replica's commits
//! instead nudge this thread, which checkpoints on its own connection while
//! the app goes on. Durability is unchanged: a commit is durable once its
//! pages are in the WAL, checkpointed or not.

use std::ffi::c_int;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use rusqlite::{Connection, OpenFlags};

use crate::store::encryption::{self, StoreKey};

/// WAL size (pages) past which a commit asks for a checkpoint: SQLite's default.
const WAL_PAGES: c_int = 1000;

enum Nudge {
    Checkpoint,
    Stop,
}

/// The checkpoint thread of one replica; stopped (and joined) when dropped.
pub(crate) struct Checkpointer {
    nudge: SyncSender<Nudge>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Take over `conn`'s checkpoints (this turns SQLite's automatic ones off).
    pub(crate) fn start(
        conn: &mut Connection,
        path: &Path,
        key: Option<StoreKey>,
    ) -> Result<Checkpointer, std::io::Error> {
        // One nudge waiting is enough: the checkpoint it starts covers every commit before it.
        let (nudge, nudged) = sync_channel(1);
        let path = path.to_owned();
        let thread = std::thread::Builder::new()
            .name("fieldsync-checkpoint".into())
            .spawn(move || run(&path, key.as_ref(), nudged))?;
        let from_commits = nudge.clone();
        conn.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages: c_int| {
            if pages >= WAL_PAGES {
                let _ = from_commits.try_send(Nudge::Checkpoint);
            }
            Ok(())
        }))
        .map_err(std::io::Error::other)?;
        Ok(Checkpointer { nudge, thread: Some(thread) })
    }
}

fn run(path: &PathBuf, key: Option<&StoreKey>, nudged: Receiver<Nudge>) {
    let mut conn = None;
    while let Ok(Nudge::Checkpoint) = nudged.recv() {
        if conn.is_none() {
            let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            conn = Connection::open_with_flags(path, flags)
                .and_then(|c| key.map_or(Ok(()), |k| encryption::apply(&c, k)).map(|()| c))
                .ok();
        }
        // PASSIVE never waits for (or blocks) the replica's writes. A failed or
        // partial checkpoint is retried at the next nudge, and SQLite
        // checkpoints the rest when the replica closes.
        if let Some(c) = &conn {
            let _ = c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // The replica's connection (and its hook's sender) may outlive this,
        // so stop by message rather than by closing the channel.
        let _ = self.nudge.send(Nudge::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
