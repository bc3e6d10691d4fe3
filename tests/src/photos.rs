//! Photos in the simulated day (issue 14): the workload's option, the photo
//! transport a session's client carries them with, and what a run reports
//! about them. The loop's side (the link, the hub, the invariants) is in
//! `sim/photos.rs`.
//!
//! A device's [`fieldsync_core::SyncClient`] gets a
//! [`PhotoTransport`] whose calls go to the event loop over the session's
//! own channel ([`crate::device::SessionLink`]), like its rounds: the loop
//! carries each chunk over the device's simulated link (bandwidth, latency,
//! loss, outages, cuts) to the in-process hub (`Hub::put_photo_chunk`,
//! `Hub::photo_chunk`) and back. The answer crosses the channel as bytes:
//! the upload state as JSON, a chunk as its photo's size (8 bytes, big
//! endian) then its bytes.

use std::io::Cursor;
use std::sync::Arc;

use fieldsync_core::{PhotoChunk, PhotoTransport, PhotoUploadState, SyncClient, TransportError};
use serde::{Deserialize, Serialize};

use crate::device::{SessionLink, Step};
use crate::profile::LinkProfile;
use crate::rng::Rng;

/// Photos the crews take: off by default (`per_crew: 0`), so a run without
/// them is the run it always was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhotoWorkload {
    /// Photos each crew takes over the day (its foreman and technicians, at
    /// uniformly drawn moments, each to a section the crew works on).
    pub per_crew: u32,
    /// Each photo's size, bytes, drawn uniformly in `[min, max]`: a small
    /// real JPEG padded with seeded random bytes after its end marker.
    pub bytes: (u64, u64),
    /// The project holds full sizes for an unmetered link
    /// ([`fieldsync_core::ProjectConfig::full_size_photos`]): the crews'
    /// phones are on mobile data all day, their thumbnails go; at the end
    /// of the day (the heal) they are on the depot's Wi-Fi
    /// ([`LinkProfile::depot_wifi`]), where the full sizes go.
    #[serde(default)]
    pub depot_wifi: bool,
}

impl Default for PhotoWorkload {
    fn default() -> Self {
        PhotoWorkload { per_crew: 0, bytes: (2_000_000, 4_000_000), depot_wifi: false }
    }
}

impl PhotoWorkload {
    /// `per_crew` photos of 2–4 MB per crew per day.
    pub fn per_crew(per_crew: u32) -> PhotoWorkload {
        PhotoWorkload { per_crew, ..PhotoWorkload::default() }
    }

    /// Whether the day has photos.
    pub fn on(&self) -> bool {
        self.per_crew > 0
    }
}

/// The chunk a device sends on `link`: about 2 s of its upload bandwidth,
/// at least 4 KiB (the production lane's floor; its own sizing measures
/// wall-clock time, meaningless in virtual time, so the simulator turns it
/// off and sizes the chunk per link profile).
pub fn chunk_for_link(link: &LinkProfile) -> usize {
    let two_seconds = (link.up_kbps * 1000 / 8 * 2) as usize;
    two_seconds.clamp(fieldsync_core::MIN_PHOTO_CHUNK_BYTES, fieldsync_core::MAX_PHOTO_CHUNK_BYTES)
}

/// A photo request from a session's photo lane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhotoCall {
    /// `PUT …/photos/{sha256}/upload?offset&size`.
    Put {
        /// The project.
        project: String,
        /// The photo's name.
        sha256: String,
        /// Its whole size.
        size: u64,
        /// Where this piece starts.
        offset: u64,
        /// The piece.
        bytes: Vec<u8>,
    },
    /// `GET …/photos/{sha256}?offset&length`.
    Get {
        /// The project.
        project: String,
        /// The photo's name.
        sha256: String,
        /// From where.
        offset: u64,
        /// How many bytes at most.
        length: u64,
    },
}

/// What an HTTP request line and headers add to a photo request or answer
/// (counted on the wire, like a round's body; a round's headers are not).
pub const PHOTO_HEADER_BYTES: u64 = 200;

impl PhotoCall {
    /// Bytes on the wire device → server.
    pub fn request_len(&self) -> u64 {
        PHOTO_HEADER_BYTES
            + match self {
                PhotoCall::Put { bytes, .. } => bytes.len() as u64,
                PhotoCall::Get { .. } => 0,
            }
    }

    /// The photo it is about.
    pub fn sha256(&self) -> &str {
        match self {
            PhotoCall::Put { sha256, .. } | PhotoCall::Get { sha256, .. } => sha256,
        }
    }
}

/// The answer to a put, as it crosses the session's channel.
pub fn encode_state(state: &PhotoUploadState) -> Vec<u8> {
    serde_json::to_vec(state).unwrap_or_default()
}

/// The answer to a get, as it crosses the session's channel.
pub fn encode_chunk(chunk: &PhotoChunk) -> Vec<u8> {
    let mut out = chunk.size.to_be_bytes().to_vec();
    out.extend_from_slice(&chunk.bytes);
    out
}

fn garbled(what: &str) -> TransportError {
    TransportError::Unreachable(format!("the simulator garbled a photo {what}"))
}

/// The photo transport of a session: every call goes to the loop.
struct SimPhotos {
    link: SessionLink,
}

impl PhotoTransport for SimPhotos {
    fn put_chunk(
        &self,
        project: &str,
        sha256: &str,
        size: u64,
        offset: u64,
        bytes: &[u8],
    ) -> Result<PhotoUploadState, TransportError> {
        let call = PhotoCall::Put {
            project: project.to_owned(),
            sha256: sha256.to_owned(),
            size,
            offset,
            bytes: bytes.to_vec(),
        };
        let answer = self.link.call(Step::Photo(call))?;
        serde_json::from_slice(&answer).map_err(|_| garbled("upload state"))
    }

    fn get_chunk(&self, project: &str, sha256: &str, offset: u64, length: u64) -> Result<PhotoChunk, TransportError> {
        let call = PhotoCall::Get { project: project.to_owned(), sha256: sha256.to_owned(), offset, length };
        let answer = self.link.call(Step::Photo(call))?;
        let (size, bytes) = answer.split_first_chunk::<8>().ok_or_else(|| garbled("chunk"))?;
        Ok(PhotoChunk { size: u64::from_be_bytes(*size), bytes: bytes.to_vec() })
    }
}

/// How a session's client carries photos.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhotoLane {
    /// Bytes a chunk (fixed: `photo_chunk_time` off, see [`chunk_for_link`]).
    pub chunk: usize,
    /// What the app says of the link ([`SyncClient::set_metered`]).
    pub metered: bool,
}

/// `client` carrying photos over the session's channel as `lane` says.
pub fn carry_photos(client: SyncClient, link: SessionLink, lane: PhotoLane) -> SyncClient {
    let mut client = client.with_photos(Arc::new(SimPhotos { link }));
    client.photo_chunk_bytes = lane.chunk;
    client.photo_chunk_time = None;
    client.set_metered(lane.metered);
    client
}

/// A small real JPEG of its own (640×480: a smooth pattern shifted by
/// seeded colours and a seeded block, so every photo has its own
/// thumbnail), made with the image crate.
pub fn small_jpeg(rng: &mut Rng) -> Vec<u8> {
    let [r, g, b, ..] = rng.next_u64().to_le_bytes();
    let (bx, by) = (rng.below(560) as u32, rng.below(400) as u32);
    let img = image::RgbImage::from_fn(640, 480, |x, y| {
        if (bx..bx + 80).contains(&x) && (by..by + 80).contains(&y) {
            return image::Rgb([255 - r, 255 - g, 255 - b]);
        }
        image::Rgb([
            ((x / 3) as u8).wrapping_add(r),
            ((y / 2) as u8).wrapping_add(g),
            (((x + y) / 5) as u8).wrapping_add(b),
        ])
    });
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Jpeg)
        .expect("a JPEG encodes in memory");
    out
}

/// A photo of `size` bytes (at least its JPEG's): a small real JPEG
/// ([`small_jpeg`]), then seeded random bytes after its end marker (a
/// decoder stops at the marker, so it still decodes and gets a thumbnail).
pub fn photo_bytes(size: u64, rng: &mut Rng) -> Vec<u8> {
    let mut out = small_jpeg(rng);
    let size = (size as usize).max(out.len());
    out.reserve(size + 8 - out.len());
    while out.len() < size {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(size);
    out
}

/// What a run did with photos (`SimReport::photos`, present when the
/// workload had them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhotoReport {
    /// Photos the crews took.
    pub added: u64,
    /// Their bytes (full sizes).
    pub added_bytes: u64,
    /// Of those, excused from arriving: the device was reinstalled before
    /// the hub had the photo, or it was revoked, or its user removed.
    pub excused: u64,
    /// Full sizes the hub holds complete at the end (`Hub::photos_held`).
    pub held_on_hub: u64,
    /// Thumbnails the devices hold of photos in the sections they hold.
    pub thumbnails_held: u64,
    /// Photo requests (chunks up, chunks down, thumbnail fetches).
    pub requests: u64,
    /// Of which failed or whose answer never reached the device.
    pub failed_requests: u64,
    /// Bytes of photo requests on the wire, headers included (cut ones as far as they got).
    pub bytes_up: u64,
    /// Bytes of photo answers on the wire, headers included.
    pub bytes_down: u64,
    /// Photo bytes the hub stored (chunks up, not repeats).
    pub photo_bytes_stored: u64,
    /// Photo bytes the hub served (thumbnails and photos down).
    pub photo_bytes_served: u64,
    /// Chunks the hub got again, which it already held (after a cut or a lost answer).
    pub repeated_chunks: u64,
    /// Chunks re-sent after the device had received the hub's
    /// acknowledgement of them (must be 0).
    pub resent_after_ack: u64,
    /// Simulated time the last full size became complete on the hub, ms.
    pub last_photo_ms: u64,
    /// Requests of a non-member for a project's photos, refused without bytes.
    pub outsider_refused: u64,
    /// Photo requests that left a device while one of its edits waited to go
    /// up (must be 0: the lane sends the edits first).
    #[serde(default)]
    pub sent_before_edits: u64,
    /// Of `bytes_up`, those sent on mobile data: all of them, but with
    /// `PhotoWorkload::depot_wifi`, where the depot's Wi-Fi takes the rest.
    #[serde(default)]
    pub bytes_up_metered: u64,
}
