//! The photo lane: after a sync's rounds, the photos this device took go up
//! one chunk at a time, and before each chunk the edit outbox is looked at,
//! so an edit made meanwhile waits for one chunk at most, never a photo.
//! The server's answer to each chunk is recorded at once: after a cut the
//! upload goes on from the last acknowledged byte. Another device's photo is
//! fetched on demand, in chunks too, into a partial file that a cut leaves
//! for the next try.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use super::{SyncClient, SyncError, SyncReport};
use crate::replica::ReplicaError;
use crate::sync::photo_wire::{MAX_PHOTO_CHUNK_BYTES, PhotoTransport};
use crate::sync::transport::TransportError;

/// The smallest chunk the lane sends when it sizes chunks to the link.
pub const MIN_PHOTO_CHUNK_BYTES: usize = 4 * 1024;

impl SyncClient {
    /// Send the photos this device took, edits first: returns when the
    /// server has all of them.
    pub(super) fn send_photos(
        &self,
        photos: &Arc<dyn PhotoTransport>,
        projects: &[String],
        report: &mut SyncReport,
        to_upload: u64,
        progress: &mut dyn FnMut(&SyncReport),
    ) -> Result<(), SyncError> {
        let mut chunk = self.photo_chunk_bytes.clamp(MIN_PHOTO_CHUNK_BYTES, MAX_PHOTO_CHUNK_BYTES);
        let mut resent_whole = false;
        loop {
            let (pending, edits) = {
                let replica = self.lock();
                (replica.next_photo_upload()?, replica.outbox_stats()?.0)
            };
            let Some(photo) = pending else { return Ok(()) };
            if edits > 0 {
                // An edit made while the photo went up: it goes first.
                for project in projects {
                    self.sync_project(project, report, to_upload, progress)?;
                }
                continue;
            }
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
                Err(e) => return Err(e.into()),
            };
            self.lock().record_photo_upload(&photo.sha256, state)?;
            report.photo_bytes_sent += bytes.len() as u64;
            if state.complete {
                report.photos_sent += 1;
                tracing::info!(photo = photo.sha256, bytes = photo.size, "photo on the server");
            }
            if let Some(target) = self.photo_chunk_time {
                chunk = chunk_for(bytes.len(), started.elapsed(), target);
            }
        }
    }

    /// Fetch the bytes of a photo another device took (by its id or hash),
    /// in chunks; returns the file they are in. `progress` hears the bytes
    /// fetched so far and the photo's size after each chunk. A fetch cut
    /// off goes on from where it stopped next time.
    pub fn fetch_photo(&self, photo: &str, progress: &mut dyn FnMut(u64, u64)) -> Result<PathBuf, SyncError> {
        let to_fetch = {
            let replica = self.lock();
            let to_fetch = replica.photo_to_fetch(photo)?;
            if let Some(here) = replica.photo_file(&to_fetch.blob.sha256) {
                return Ok(here);
            }
            to_fetch
        };
        let photos = self.photos.as_ref().ok_or(SyncError::NoPhotoTransport)?;
        let (sha, size) = (&to_fetch.blob.sha256, to_fetch.blob.size);
        let mut offset = to_fetch.received.min(size);
        let chunk = self.photo_chunk_bytes.clamp(MIN_PHOTO_CHUNK_BYTES, MAX_PHOTO_CHUNK_BYTES) as u64;
        while offset < size {
            let got = photos.get_chunk(&to_fetch.project, sha, offset, chunk.min(size - offset))?;
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
        let replica = self.lock();
        replica.finish_fetched_photo(sha)?;
        Ok(replica.photo_file(sha).expect("kept just now"))
    }
}

/// The error code of a photo whose bytes did not match its hash.
pub const PHOTO_CORRUPT: &str = "photo_corrupt";

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
