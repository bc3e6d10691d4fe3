//! Photo bytes through the hub: only bytes a section of the project names
//! (the record travels first, in a round), chunks appended only where an
//! upload stands, the whole checked against its hash before it is kept, and
//! every call authorized like a round (the device's user a member of the
//! project).

use fieldsync_core::photo_wire::is_sha256_hex;
use fieldsync_core::{MAX_PHOTO_BYTES, MAX_PHOTO_CHUNK_BYTES, PhotoChunk, PhotoUploadState, photo_media_type};
use sha2::{Digest, Sha256};

use super::{Hub, authenticate, member_project};
use crate::error::HubError;
use crate::store::StoredPhoto;

/// The bytes of a photo's start its media type is read from.
const HEADER_BYTES: usize = 64;

impl Hub {
    /// Take `bytes`, the piece at `offset` of photo `sha256` (of `size`
    /// bytes) in `project`, if that is where its upload stands; answer where
    /// it stands afterwards. The last piece makes the server check the whole.
    #[allow(clippy::too_many_arguments)]
    pub fn put_photo_chunk(
        &self,
        bearer_token: &str,
        project: &str,
        sha256: &str,
        size: u64,
        offset: u64,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<PhotoUploadState, HubError> {
        check_name(sha256)?;
        if size == 0 || size > MAX_PHOTO_BYTES as u64 {
            return Err(HubError::TooLarge(format!(
                "a photo is 1 byte to {} MB; this one says {size} bytes",
                MAX_PHOTO_BYTES / (1024 * 1024)
            )));
        }
        if bytes.is_empty() || bytes.len() > MAX_PHOTO_CHUNK_BYTES || offset.saturating_add(bytes.len() as u64) > size {
            return Err(HubError::Malformed(format!(
                "a chunk is 1 byte to {MAX_PHOTO_CHUNK_BYTES} bytes within the photo's size; this one is {} bytes at {offset} of {size}",
                bytes.len()
            )));
        }
        let mut store = self.store()?;
        let device = authenticate(&mut *store, bearer_token, now_ms)?;
        member_project(&mut *store, &device, project)?;
        match store.photo(project, sha256)? {
            Some(held) if held.size != size => {
                return Err(HubError::PhotoConflict(format!(
                    "photo {sha256} is being received as {} bytes, not {size}; its size is that of its bytes",
                    held.size
                )));
            }
            Some(_) => {}
            // Only bytes a record names are taken: nobody fills the disk with photos of nothing.
            None if !store.photo_named(project, sha256)? => {
                return Err(HubError::PhotoUnreferenced(format!(
                    "no section of project `{project}` names photo {sha256}; sync its record first"
                )));
            }
            None => {}
        }
        let now = store.append_photo(project, sha256, size, offset, bytes, now_ms)?;
        if now.complete || now.received < now.size {
            return Ok(wire(now));
        }
        // Every byte is here: keep it only if it is the photo its name says,
        // read a chunk at a time (a 32 MB photo never sits in memory whole).
        let (mut hasher, mut header, mut at) = (Sha256::new(), Vec::new(), 0u64);
        while at < size {
            let piece = store.read_photo(project, sha256, at, MAX_PHOTO_CHUNK_BYTES as u64)?;
            if piece.is_empty() {
                break;
            }
            if header.len() < HEADER_BYTES {
                header.extend_from_slice(&piece[..piece.len().min(HEADER_BYTES - header.len())]);
            }
            hasher.update(&piece);
            at += piece.len() as u64;
        }
        let intact = at == size && hex::encode(hasher.finalize()) == sha256 && photo_media_type(&header).is_some();
        store.finish_photo(project, sha256, intact)?;
        if !intact {
            return Err(HubError::PhotoCorrupt(format!(
                "the {size} bytes received for photo {sha256} are not an image with that hash; they were dropped, send them again"
            )));
        }
        tracing::info!(project, photo = sha256, size, "photo received");
        Ok(PhotoUploadState { size, received: size, complete: true })
    }

    /// Up to `length` bytes of photo `sha256` of `project`, from `offset`.
    pub fn photo_chunk(
        &self,
        bearer_token: &str,
        project: &str,
        sha256: &str,
        offset: u64,
        length: u64,
    ) -> Result<PhotoChunk, HubError> {
        check_name(sha256)?;
        let mut store = self.store()?;
        let device = authenticate(&mut *store, bearer_token, crate::now_ms())?;
        member_project(&mut *store, &device, project)?;
        let held = store.photo(project, sha256)?.filter(|p| p.complete).ok_or_else(|| {
            HubError::UnknownPhoto(format!(
                "the server does not have photo {sha256} of project `{project}` (yet): the device that took it has not sent it all"
            ))
        })?;
        if offset >= held.size {
            return Err(HubError::Malformed(format!("offset {offset} is past the photo's {} bytes", held.size)));
        }
        let length = length.clamp(1, MAX_PHOTO_CHUNK_BYTES as u64);
        let bytes = store.read_photo(project, sha256, offset, length)?;
        Ok(PhotoChunk { size: held.size, bytes })
    }

    /// Remove the photo uploads (whole or not) begun more than `grace_ms`
    /// before `now_ms` that no section of their project names any more (a
    /// record the rules refused, an upload whose record never came);
    /// returns how many. The grace lets a record still on its way arrive.
    pub fn collect_photos(&self, now_ms: u64, grace_ms: u64) -> Result<usize, HubError> {
        let mut store = self.store()?;
        let unreferenced = store.unreferenced_photos(now_ms.saturating_sub(grace_ms))?;
        for (project, sha256) in &unreferenced {
            store.delete_photo(project, sha256)?;
            tracing::info!(project, photo = sha256, "an unreferenced photo was removed");
        }
        Ok(unreferenced.len())
    }

    /// Of the photos named, how many the server holds whole in `project`.
    pub fn photos_held(&self, project: &str, sha256s: &[&str]) -> Result<usize, HubError> {
        let mut store = self.store()?;
        let mut held = 0;
        for sha in sha256s {
            held += usize::from(store.photo(project, sha)?.is_some_and(|p| p.complete));
        }
        Ok(held)
    }
}

fn check_name(sha256: &str) -> Result<(), HubError> {
    if is_sha256_hex(sha256) {
        Ok(())
    } else {
        Err(HubError::Malformed(format!("`{sha256}` is not a photo's name: 64 lowercase hex digits of its SHA-256")))
    }
}

fn wire(p: StoredPhoto) -> PhotoUploadState {
    PhotoUploadState { size: p.size, received: p.received, complete: p.complete }
}
