//! The photo lane: after a sync's rounds, the photos this device took go up
//! one chunk at a time, and before each chunk the edit outbox is looked at,
//! so an edit made meanwhile waits for one chunk at most, never a photo.
//! Thumbnails go first, then the other devices' thumbnails come down, then
//! the full sizes go (held while the link is metered, if the app says so).
//! The server's answer to each chunk is recorded at once: after a cut the
//! upload goes on from the last acknowledged byte. Another device's full
//! size is fetched on demand, in chunks too, into a partial file that a cut
//! leaves for the next try, and kept within the storage budget.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use super::SyncClient;
use crate::domain::document::PhotoBlob;
use crate::replica::ReplicaError;
use crate::sync::photo_wire::{MAX_PHOTO_CHUNK_BYTES, PhotoTransport};
use crate::sync::run::{SyncError, SyncReport, SyncRun};
use crate::sync::transport::TransportError;

/// The smallest chunk the lane sends when it sizes chunks to the link.
pub const MIN_PHOTO_CHUNK_BYTES: usize = 4 * 1024;
/// Chunks in a row the server may answer without taking them (a cut, its
/// upload restarted) before the lane gives up until the next sync.
const MAX_STALLED_CHUNKS: u32 = 3;

impl SyncClient {
    /// Send the photos this device took, edits first: returns when the
    /// server has all of them.
    pub(super) fn send_photos(
        &self,
        photos: &Arc<dyn PhotoTransport>,
        run: &mut SyncRun,
        progress: &mut dyn FnMut(&SyncReport),
        stop: &AtomicBool,
    ) -> Result<(), SyncError> {
        let mut chunk = self.photo_chunk_bytes.clamp(MIN_PHOTO_CHUNK_BYTES, MAX_PHOTO_CHUNK_BYTES);
        let mut resent_whole = false;
        let metered = self.metered.load(Relaxed);
        let mut thumbnails_fetched = false;
        // Photos whose record the server has not got: tried again next sync.
        let mut not_named = Vec::new();
        // Answers in a row that took nothing: a server that stopped taking a photo.
        let mut stalled = 0;
        // Changes the rounds took none of (never sent again and again here).
        let mut stuck_edits = None;
        loop {
            self.go_on(stop)?;
            let (pending, edits) = {
                let replica = self.lock();
                (replica.next_photo_upload(metered, self.full_size_photos, &not_named)?, replica.outbox_stats()?.0)
            };
            if edits > 0 && Some(edits) != stuck_edits {
                // An edit made while a photo request travelled: it goes first.
                run.again();
                self.run_rounds(run, progress, stop)?;
                let left = self.lock().outbox_stats()?.0;
                stuck_edits = (left >= edits).then_some(left);
                continue;
            }
            // Ours went up: the others' thumbnails come down before our full sizes go
            // (looked for when this sync brought something, or a fetch was left over).
            if !thumbnails_fetched && pending.as_ref().is_none_or(|p| !p.thumbnail) {
                let news = run.report().new_changes > 0 || run.report().documents > 0;
                let stuck = stuck_edits.unwrap_or(0);
                if (news || self.thumbnails_left.swap(false, Relaxed))
                    && !self.fetch_thumbnails(photos, run.report_mut(), (stop, stuck))?
                {
                    // An edit came meanwhile: it goes first, then the rest of the thumbnails.
                    self.thumbnails_left.store(true, Relaxed);
                    continue;
                }
                thumbnails_fetched = true;
            }
            let Some(photo) = pending else { return Ok(()) };
            let read = self.lock().read_photo(&photo.sha256, photo.sent, chunk);
            let bytes = match read {
                Ok(bytes) => bytes,
                Err(ReplicaError::Photo(why)) => {
                    tracing::warn!(photo = photo.sha256, "a photo cannot be sent: {why}");
                    self.lock().drop_photo_upload(&photo.sha256)?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let started = Instant::now();
            let state = match photos.put_chunk(&photo.project, &photo.sha256, photo.size, photo.sent, &bytes) {
                Ok(state) => state,
                // The server found the whole photo not matching its hash and dropped it.
                Err(TransportError::Server { status: 422, body }) if body.error == PHOTO_CORRUPT && !resent_whole => {
                    resent_whole = true;
                    let mut replica = self.lock();
                    if replica.photo_intact(&photo.sha256) {
                        tracing::warn!(photo = photo.sha256, "the server got a damaged copy; sending it again");
                        replica.record_photo_upload(&photo.sha256, Default::default())?;
                    } else {
                        tracing::warn!(photo = photo.sha256, "this device's copy of a photo is damaged; not sent");
                        replica.drop_photo_upload(&photo.sha256)?;
                    }
                    continue;
                }
                // Its record has not reached the server (or was refused there): the others go on.
                Err(TransportError::Server { status: 409, body }) if body.error == PHOTO_UNREFERENCED => {
                    tracing::warn!(
                        photo = photo.sha256,
                        "the server has no record of this photo yet: {}",
                        body.message
                    );
                    not_named.push(photo.sha256);
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            self.lock().record_photo_upload(&photo.sha256, state)?;
            stalled = if state.complete || state.received > photo.sent { 0 } else { stalled + 1 };
            if stalled >= MAX_STALLED_CHUNKS {
                return Err(SyncError::Transport(TransportError::Unreachable(format!(
                    "the server took none of the last {stalled} chunks of photo {}; trying again later",
                    photo.sha256
                ))));
            }
            let report = run.report_mut();
            report.photo_bytes_sent += bytes.len() as u64;
            if state.complete && !photo.thumbnail {
                report.photos_sent += 1;
                tracing::debug!(photo = photo.sha256, bytes = photo.size, "photo on the server");
            }
            if let Some(target) = self.photo_chunk_time {
                chunk = chunk_for(bytes.len(), started.elapsed(), target);
            }
        }
    }

    /// Fetch the thumbnails of other devices' photos that are not here
    /// (one the server lacks yet is left for the next sync). Returns false
    /// when an edit made meanwhile (more than the `stuck` changes the rounds
    /// could not take) stopped it: the edit goes first.
    fn fetch_thumbnails(
        &self,
        photos: &Arc<dyn PhotoTransport>,
        report: &mut SyncReport,
        (stop, stuck): (&AtomicBool, i64),
    ) -> Result<bool, SyncError> {
        let wanted = self.lock().thumbnails_to_fetch()?;
        for (project, thumbnail) in wanted {
            match self.fetch_blob(photos, (&project, &thumbnail), &mut |_, _| {}, (stop, Some(stuck))) {
                Ok(Some(got)) => {
                    report.thumbnails_fetched += 1;
                    report.photo_bytes_received += got;
                }
                Ok(None) => return Ok(false),
                // Not on the server yet: the next sync looks again.
                Err(SyncError::Transport(TransportError::Server { status: 404, .. })) => {
                    self.thumbnails_left.store(true, Relaxed);
                }
                Err(e) => {
                    self.thumbnails_left.store(true, Relaxed);
                    return Err(e);
                }
            }
        }
        Ok(true)
    }

    /// Fetch the bytes of a photo another device took (by its id or hash),
    /// in chunks; returns the file they are in. `progress` hears the bytes
    /// fetched so far and the photo's size after each chunk. A fetch cut
    /// off goes on from where it stopped next time. Other devices' photos
    /// are kept within [`SyncClient::photo_budget_bytes`], the least
    /// recently used leaving first.
    pub fn fetch_photo(&self, photo: &str, progress: &mut dyn FnMut(u64, u64)) -> Result<PathBuf, SyncError> {
        self.fetch_photo_until(photo, progress, &AtomicBool::new(false))
    }

    /// Like [`Self::fetch_photo`], stopping before its next chunk once `stop`
    /// is set (as [`SyncClient::sync_until`]).
    pub fn fetch_photo_until(
        &self,
        photo: &str,
        progress: &mut dyn FnMut(u64, u64),
        stop: &AtomicBool,
    ) -> Result<PathBuf, SyncError> {
        self.cancelled.store(false, std::sync::atomic::Ordering::SeqCst);
        let to_fetch = self.lock().photo_to_fetch(photo)?;
        let blob = &to_fetch.blob;
        if self.lock().photo_file(&blob.sha256).is_none() {
            let photos = self.photos.as_ref().ok_or(SyncError::NoPhotoTransport)?;
            self.fetch_blob(photos, (&to_fetch.project, blob), progress, (stop, None))?;
        }
        let mut replica = self.lock();
        let here =
            replica.photo_file(&blob.sha256).ok_or_else(|| ReplicaError::Photo(format!("photo {photo} vanished")))?;
        replica.touch_photo(&blob.sha256, blob.size)?;
        replica.enforce_photo_budget(self.photo_budget_bytes)?;
        Ok(here)
    }

    /// Fetch `blob`'s bytes of `project` in chunks, going on from a partial
    /// file; returns the bytes fetched, or none if more changes than
    /// `edits_first` says wait before a chunk (the partial file stays for
    /// the next time).
    fn fetch_blob(
        &self,
        photos: &Arc<dyn PhotoTransport>,
        (project, blob): (&str, &PhotoBlob),
        progress: &mut dyn FnMut(u64, u64),
        (stop, edits_first): (&AtomicBool, Option<i64>),
    ) -> Result<Option<u64>, SyncError> {
        let (sha, size) = (&blob.sha256, blob.size);
        let started = self.lock().partial_photo_len(sha).min(size);
        let mut offset = started;
        let mut chunk = self.photo_chunk_bytes.clamp(MIN_PHOTO_CHUNK_BYTES, MAX_PHOTO_CHUNK_BYTES);
        while offset < size {
            self.go_on(stop)?;
            if let Some(stuck) = edits_first
                && self.lock().outbox_stats()?.0 > stuck
            {
                return Ok(None);
            }
            let asked = Instant::now();
            let got = photos.get_chunk(project, sha, offset, (chunk as u64).min(size - offset))?;
            if let Some(target) = self.photo_chunk_time {
                chunk = chunk_for(got.bytes.len(), asked.elapsed(), target);
            }
            if got.size != size || got.bytes.is_empty() || got.bytes.len() as u64 > size - offset {
                return Err(SyncError::Transport(TransportError::Unreachable(format!(
                    "the server's copy of photo {sha} is {} bytes, its record says {size}",
                    got.size
                ))));
            }
            self.lock().append_fetched_photo(sha, offset, &got.bytes)?;
            offset += got.bytes.len() as u64;
            progress(offset, size);
        }
        self.lock().finish_fetched_photo(sha)?;
        Ok(Some(offset - started))
    }
}

/// The error code of a photo whose bytes did not match its hash.
pub const PHOTO_CORRUPT: &str = "photo_corrupt";
/// The error code of a photo no section on the server names (its record
/// has not reached it, or was refused).
pub const PHOTO_UNREFERENCED: &str = "photo_unreferenced";

/// A chunk sized to take about `target` on the link the last one took.
fn chunk_for(sent: usize, took: std::time::Duration, target: std::time::Duration) -> usize {
    let per_s = sent as f64 / took.as_secs_f64().max(0.001);
    ((per_s * target.as_secs_f64()) as usize).clamp(MIN_PHOTO_CHUNK_BYTES, MAX_PHOTO_CHUNK_BYTES)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn chunks_take_about_the_target_time_on_the_link_measured() {
        let two_s = Duration::from_secs(2);
        // 2G: 16 KiB in 8 s is 2 KiB/s; a chunk of 4 KiB takes the 2 s.
        assert_eq!(chunk_for(16 * 1024, Duration::from_secs(8), two_s), 4 * 1024);
        // Loopback: the largest chunk.
        assert_eq!(chunk_for(64 * 1024, Duration::from_millis(1), two_s), MAX_PHOTO_CHUNK_BYTES);
        // A link slower than the floor still gets the smallest chunk.
        assert_eq!(chunk_for(4096, Duration::from_secs(60), two_s), MIN_PHOTO_CHUNK_BYTES);
    }
}
