//! Photos kept by content: the bytes in a folder next to the replica, each
//! file named by its SHA-256, and a record in the section document that
//! says what they are (hash, size, media type, pixels, caption), authored
//! and stamped like every other write. The same bytes added twice are kept
//! once.
//!
//! Each photo gets a thumbnail when it is added (`thumbnail.rs`), kept and
//! named the same way. The photos this device took wait in `photo_uploads`
//! until the server has them, thumbnails first (the sync client's photo
//! lane); other devices' thumbnails are fetched by every sync and their full
//! size on demand, kept within a storage budget (`photo_cache`, least
//! recently used first; this device's own only once the server has them).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::document::{PhotoBlob, PhotoRef};
use crate::domain::project::FullSizePhotos;
use crate::replica::thumbnail::thumbnail_of;
use crate::replica::{Replica, ReplicaChange, ReplicaError};
use crate::sync::photo_wire::{PhotoUploadState, is_sha256_hex};

/// Where a photo is, as this device sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PhotoState {
    /// Taken here; the server has none of it yet.
    OnThisDeviceOnly,
    /// Taken here and going up: `sent` of `size` bytes acknowledged.
    Uploading {
        /// Bytes the server acknowledged.
        sent: u64,
        /// The photo's size.
        size: u64,
    },
    /// Taken here, and the server has all of it.
    OnServer,
    /// Not on this device (another device's, or this one's gone under the
    /// storage budget), and no thumbnail here either.
    NotFetched,
    /// Not on this device, but its thumbnail is.
    ThumbnailOnly,
    /// Being fetched: `received` of `size` bytes here.
    Downloading {
        /// Bytes fetched so far.
        received: u64,
        /// The photo's size.
        size: u64,
    },
    /// Another device's photo, fetched: its bytes are here.
    Available,
    /// A photo the app keeps itself, by URI: no bytes travel.
    KeptByApp,
}

/// A photo this device took that the server does not have in full yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingPhoto {
    /// Hex SHA-256 of its bytes.
    pub sha256: String,
    /// The project of the section it was attached to.
    pub project: String,
    /// Its size.
    pub size: u64,
    /// Bytes the server acknowledged.
    pub sent: u64,
    /// Whether it is a thumbnail (they go first).
    pub thumbnail: bool,
}

/// A photo to fetch: where its record is and what its bytes must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhotoToFetch {
    /// The project the server keeps it in.
    pub project: String,
    /// What the record says of the bytes.
    pub blob: PhotoBlob,
    /// Bytes already fetched (a fetch cut off goes on from there).
    pub received: u64,
}

/// The largest photo a device takes (a phone camera's JPEG is 2–8 MB).
pub const MAX_PHOTO_BYTES: usize = 32 * 1024 * 1024;

impl Replica {
    /// Where this replica keeps photo bytes: `<replica file>.photos/`.
    pub fn photo_dir(&self) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(".photos");
        PathBuf::from(name)
    }

    /// The file holding the photo with this hex SHA-256, if this device has it.
    pub fn photo_file(&self, sha256: &str) -> Option<PathBuf> {
        let path = self.photo_dir().join(sha256);
        (is_sha256_hex(sha256) && path.is_file()).then_some(path)
    }

    /// Attach the photo in `file` to `section`; returns the photo's id.
    pub fn add_photo_file(
        &mut self,
        section: &str,
        file: &Path,
        caption: Option<&str>,
    ) -> Result<String, ReplicaError> {
        let bytes = fs::read(file)
            .map_err(|e| ReplicaError::InvalidInput(format!("cannot read the photo {}: {e}", file.display())))?;
        self.add_photo_bytes(section, &bytes, caption)
    }

    /// Attach a photo given as its bytes (JPEG, PNG, WebP, HEIC or GIF);
    /// returns the photo's id. The bytes and the thumbnail are on disk, and
    /// queued to go up, before the record is written, so a record of this
    /// device never names bytes it lacks.
    pub fn add_photo_bytes(
        &mut self,
        section: &str,
        bytes: &[u8],
        caption: Option<&str>,
    ) -> Result<String, ReplicaError> {
        let blob = describe_photo(bytes)?;
        let project: String = self
            .conn
            .query_row("SELECT project FROM sections WHERE id = ?1", [section], |r| r.get(0))
            .optional()?
            .ok_or_else(|| ReplicaError::UnknownSection(section.to_owned()))?;
        let thumbnail = thumbnail_of(bytes).and_then(|t| Some((describe_photo(&t).ok()?, t)));
        let mut queued = Vec::new();
        let mut keep = |this: &mut Self, blob: &PhotoBlob, bytes: &[u8], thumbnail: bool| {
            this.keep_bytes(&blob.sha256, bytes)?;
            // A photo added twice is queued once.
            let new = this.conn.execute(
                "INSERT OR IGNORE INTO photo_uploads (sha256, project, size, thumbnail, added_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![blob.sha256, project, blob.size as i64, thumbnail, this.now().wall_ms as i64],
            )? == 1;
            if new {
                queued.push(blob.sha256.clone());
            }
            Ok::<_, ReplicaError>(())
        };
        let mut attached = keep(self, &blob, bytes, false);
        if let (Ok(()), Some((thumb, thumb_bytes))) = (&attached, &thumbnail) {
            attached = keep(self, thumb, thumb_bytes, true);
        }
        let uri = format!("sha256:{}", blob.sha256);
        let attached = attached
            .and_then(|()| self.attach_photo(section, &uri, caption, Some(&blob), thumbnail.as_ref().map(|t| &t.0)));
        if attached.is_err() {
            for sha in queued {
                self.conn.execute("DELETE FROM photo_uploads WHERE sha256 = ?1", [sha])?;
            }
        }
        attached
    }

    /// Where `photo` is, as this device sees it.
    pub fn photo_state(&self, photo: &PhotoRef) -> Result<PhotoState, ReplicaError> {
        let Some(blob) = &photo.blob else { return Ok(PhotoState::KeptByApp) };
        let upload: Option<(u64, u64, bool)> = self
            .conn
            .prepare_cached("SELECT sent, size, on_server FROM photo_uploads WHERE sha256 = ?1")?
            .query_row([&blob.sha256], |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64, r.get(2)?)))
            .optional()?;
        let here = self.photo_file(&blob.sha256).is_some();
        Ok(match upload {
            Some((_, _, true)) if here => PhotoState::OnServer,
            Some((0, _, false)) => PhotoState::OnThisDeviceOnly,
            Some((sent, size, false)) => PhotoState::Uploading { sent, size },
            _ if here => PhotoState::Available,
            _ => match fs::metadata(self.partial_path(&blob.sha256)) {
                Ok(m) => PhotoState::Downloading { received: m.len(), size: blob.size },
                Err(_) if photo.thumbnail.as_ref().is_some_and(|t| self.photo_file(&t.sha256).is_some()) => {
                    PhotoState::ThumbnailOnly
                }
                Err(_) => PhotoState::NotFetched,
            },
        })
    }

    /// The thumbnails of photos in this replica's sections that are not
    /// here yet, with their projects (a scan of the stored views).
    pub fn thumbnails_to_fetch(&self) -> Result<Vec<(String, PhotoBlob)>, ReplicaError> {
        let mut stmt = self.conn.prepare(
            "SELECT sections.project, json_extract(photo.value, '$.thumbnail')
             FROM sections, json_each(sections.view, '$.photos') AS photo
             WHERE json_extract(photo.value, '$.thumbnail.sha256') IS NOT NULL",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (project, thumbnail) = row?;
            let Ok(thumbnail) = serde_json::from_str::<PhotoBlob>(&thumbnail) else { continue };
            if is_sha256_hex(&thumbnail.sha256) && self.photo_file(&thumbnail.sha256).is_none() {
                out.push((project, thumbnail));
            }
        }
        Ok(out)
    }

    /// What this device took that the server lacks, next in line:
    /// thumbnails first, then the oldest full size, but none of `skip` (hex
    /// hashes). On a `metered` link, full sizes wait where this device's
    /// `policy` or their project's ([`crate::ProjectConfig::full_size_photos`]) says so.
    pub fn next_photo_upload(
        &self,
        metered: bool,
        policy: FullSizePhotos,
        skip: &[String],
    ) -> Result<Option<PendingPhoto>, ReplicaError> {
        let skip = serde_json::to_string(skip).map_err(|e| ReplicaError::InvalidInput(e.to_string()))?;
        let held_by_project = serde_json::to_value(FullSizePhotos::OnUnmeteredLinks)
            .map_err(|e| ReplicaError::InvalidInput(e.to_string()))?;
        Ok(self
            .conn
            .prepare_cached(
                "SELECT sha256, project, size, sent, thumbnail FROM photo_uploads u
                 WHERE on_server = 0 AND sha256 NOT IN (SELECT value FROM json_each(?2))
                   AND (thumbnail = 1 OR (?1 AND (NOT ?4 OR NOT EXISTS
                        (SELECT 1 FROM projects p WHERE p.id = u.project
                         AND json_extract(p.config, '$.full_size_photos') = ?3))))
                 ORDER BY thumbnail DESC, added_ms, sha256 LIMIT 1",
            )?
            .query_row(params![policy.allows(metered), skip, held_by_project.as_str(), metered], |r| {
                Ok(PendingPhoto {
                    sha256: r.get(0)?,
                    project: r.get(1)?,
                    size: r.get::<_, i64>(2)? as u64,
                    sent: r.get::<_, i64>(3)? as u64,
                    thumbnail: r.get(4)?,
                })
            })
            .optional()?)
    }

    /// Photos (full size) this device took that the server lacks: how
    /// many, and the bytes still to send (thumbnails included).
    pub fn photo_uploads_pending(&self) -> Result<(u64, u64), ReplicaError> {
        Ok(self.conn.query_row(
            "SELECT count(*) FILTER (WHERE thumbnail = 0), coalesce(sum(size - sent), 0) FROM photo_uploads
             WHERE on_server = 0",
            [],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
        )?)
    }

    /// What the server said of an upload: how far it is, whether it has
    /// all. A full-size photo the server has may leave this device when the
    /// storage budget needs room, as another device's would.
    pub fn record_photo_upload(&mut self, sha256: &str, state: PhotoUploadState) -> Result<(), ReplicaError> {
        let tx = self.begin()?;
        tx.prepare_cached("UPDATE photo_uploads SET sent = ?2, on_server = ?3 WHERE sha256 = ?1")?.execute(params![
            sha256,
            state.received.min(i64::MAX as u64) as i64,
            state.complete
        ])?;
        if state.complete {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO photo_cache (sha256, size, used_ms)
                 SELECT sha256, size, ?2 FROM photo_uploads WHERE sha256 = ?1 AND thumbnail = 0",
            )?
            .execute(params![sha256, self.now().wall_ms as i64])?;
        }
        tx.commit()?;
        self.publish_photo_moved(sha256)
    }

    /// A photo was used (fetched, or opened again): it is the last to leave
    /// under the storage budget. One of this device's that the server lacks
    /// is not under the budget at all.
    pub fn touch_photo(&mut self, sha256: &str, size: u64) -> Result<(), ReplicaError> {
        self.conn
            .prepare_cached(
                "INSERT INTO photo_cache (sha256, size, used_ms)
                 SELECT ?1, ?2, ?3 WHERE NOT EXISTS
                     (SELECT 1 FROM photo_uploads WHERE sha256 = ?1 AND (on_server = 0 OR thumbnail = 1))
                 ON CONFLICT (sha256) DO UPDATE SET used_ms = excluded.used_ms",
            )?
            .execute(params![sha256, size as i64, self.now().wall_ms as i64])?;
        Ok(())
    }

    /// Remove the least recently used full-size photos until those kept
    /// count at most `budget_bytes` (thumbnails and this device's photos the
    /// server lacks always stay); returns how many went. A removed photo
    /// can be fetched again.
    pub fn enforce_photo_budget(&mut self, budget_bytes: u64) -> Result<usize, ReplicaError> {
        let cached: Vec<(String, u64)> = self
            .conn
            .prepare("SELECT sha256, size FROM photo_cache ORDER BY used_ms DESC, sha256")?
            .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?
            .collect::<Result<_, _>>()?;
        let mut kept = 0u64;
        let mut removed = 0;
        for (i, (sha, size)) in cached.into_iter().enumerate() {
            kept += size;
            // The photo used last stays, even alone over the budget.
            if kept <= budget_bytes || i == 0 {
                continue;
            }
            let path = self.photo_dir().join(&sha);
            match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(ReplicaError::Photo(format!("cannot remove {}: {e}", path.display())));
                }
                _ => {}
            }
            self.conn.execute("DELETE FROM photo_cache WHERE sha256 = ?1", [&sha])?;
            self.publish_photo_moved(&sha)?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Stop trying to send a photo (its bytes are gone or damaged here).
    pub fn drop_photo_upload(&mut self, sha256: &str) -> Result<(), ReplicaError> {
        self.conn.execute("DELETE FROM photo_uploads WHERE sha256 = ?1", [sha256])?;
        self.publish_photo_moved(sha256)
    }

    /// Whether the bytes this device keeps for `sha256` still hash to it.
    pub fn photo_intact(&self, sha256: &str) -> bool {
        self.photo_file(sha256)
            .and_then(|path| fs::read(path).ok())
            .is_some_and(|bytes| hex::encode(Sha256::digest(&bytes)) == sha256)
    }

    /// Read up to `length` bytes of a photo this device holds, from `offset`.
    pub fn read_photo(&self, sha256: &str, offset: u64, length: usize) -> Result<Vec<u8>, ReplicaError> {
        use std::io::{Read, Seek, SeekFrom};
        let path = self
            .photo_file(sha256)
            .ok_or_else(|| ReplicaError::Photo(format!("the bytes of photo {sha256} are no longer on this device")))?;
        let io = |e: std::io::Error| ReplicaError::Photo(format!("cannot read {}: {e}", path.display()));
        let mut f = fs::File::open(&path).map_err(io)?;
        f.seek(SeekFrom::Start(offset)).map_err(io)?;
        let mut bytes = Vec::with_capacity(length);
        f.take(length as u64).read_to_end(&mut bytes).map_err(io)?;
        Ok(bytes)
    }

    /// The photo with bytes `sha256` (or the photo id `photo`) named by a
    /// section this replica holds: where to fetch it from and how far a
    /// fetch got.
    pub fn photo_to_fetch(&self, photo: &str) -> Result<PhotoToFetch, ReplicaError> {
        let found: Option<(String, String)> = self
            .conn
            .query_row(
                "SELECT sections.project, photo.value FROM sections, json_each(sections.view, '$.photos') AS photo
                 WHERE json_extract(photo.value, '$.blob.sha256') = ?1 OR json_extract(photo.value, '$.id') = ?1
                 LIMIT 1",
                [photo],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((project, record)) = found else {
            return Err(ReplicaError::InvalidInput(format!(
                "no photo `{photo}` in the sections this device holds; list them with their ids and hashes"
            )));
        };
        let photo: PhotoRef = serde_json::from_str(&record)
            .map_err(|e| ReplicaError::Photo(format!("the stored record of photo {photo} is unreadable: {e}")))?;
        let blob = photo.blob.ok_or_else(|| {
            ReplicaError::InvalidInput(format!(
                "photo {} is kept by the app that took it ({}); its bytes do not travel",
                photo.id, photo.uri
            ))
        })?;
        if !is_sha256_hex(&blob.sha256) {
            return Err(ReplicaError::Photo(format!("photo {} names no valid hash", photo.id)));
        }
        let received = fs::metadata(self.partial_path(&blob.sha256)).map_or(0, |m| m.len());
        Ok(PhotoToFetch { project, blob, received })
    }

    /// Append fetched bytes at `offset` of the photo's partial file (what
    /// was there past `offset`, from a cut, is dropped).
    pub fn append_fetched_photo(&self, sha256: &str, offset: u64, bytes: &[u8]) -> Result<(), ReplicaError> {
        use std::io::{Seek, SeekFrom};
        let dir = self.photo_dir();
        let path = self.partial_path(sha256);
        let io = |e: std::io::Error| ReplicaError::Photo(format!("cannot keep the photo in {}: {e}", dir.display()));
        fs::create_dir_all(&dir).map_err(io)?;
        let mut f = fs::OpenOptions::new().create(true).write(true).truncate(false).open(&path).map_err(io)?;
        f.set_len(offset).map_err(io)?;
        f.seek(SeekFrom::Start(offset)).map_err(io)?;
        f.write_all(bytes).and_then(|()| f.sync_data()).map_err(io)?;
        self.publish_photo_moved(sha256)
    }

    /// A fetch is whole: check the bytes against their hash and keep them
    /// (a mismatch drops them, to be fetched again).
    pub fn finish_fetched_photo(&self, sha256: &str) -> Result<(), ReplicaError> {
        let path = self.partial_path(sha256);
        let io = |e: std::io::Error| ReplicaError::Photo(format!("cannot keep the photo {}: {e}", path.display()));
        let bytes = fs::read(&path).map_err(io)?;
        if hex::encode(Sha256::digest(&bytes)) != sha256 {
            fs::remove_file(&path).map_err(io)?;
            return Err(ReplicaError::Photo(format!(
                "the bytes fetched for photo {sha256} do not match its hash; they were dropped, fetch it again"
            )));
        }
        fs::rename(&path, self.photo_dir().join(sha256)).map_err(io)?;
        self.publish_photo_moved(sha256)
    }

    /// Name on the change feed the sections whose photo (or thumbnail) has
    /// the bytes `sha256`: where they are changed (a scan of the stored
    /// views, made only while someone subscribes).
    fn publish_photo_moved(&self, sha256: &str) -> Result<(), ReplicaError> {
        if !self.feed.has_subscribers() {
            return Ok(());
        }
        let photos = self
            .conn
            .prepare_cached(
                "SELECT DISTINCT sections.id FROM sections, json_each(sections.view, '$.photos') AS photo
                 WHERE json_extract(photo.value, '$.blob.sha256') = ?1
                    OR json_extract(photo.value, '$.thumbnail.sha256') = ?1",
            )?
            .query_map([sha256], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        self.feed.publish(ReplicaChange { photos, ..ReplicaChange::default() });
        Ok(())
    }

    /// Bytes of a fetch cut off, kept for the next try.
    pub fn partial_photo_len(&self, sha256: &str) -> u64 {
        fs::metadata(self.partial_path(sha256)).map_or(0, |m| m.len())
    }

    fn partial_path(&self, sha256: &str) -> PathBuf {
        self.photo_dir().join(format!("{sha256}.partial"))
    }

    /// Attach a photo the app keeps itself, by URI; returns its id.
    pub fn add_photo(&mut self, section: &str, uri: &str, caption: Option<&str>) -> Result<String, ReplicaError> {
        if uri.trim().is_empty() {
            return Err(ReplicaError::InvalidInput("a photo needs a URI".into()));
        }
        self.attach_photo(section, uri, caption, None, None)
    }

    fn attach_photo(
        &mut self,
        section: &str,
        uri: &str,
        caption: Option<&str>,
        blob: Option<&PhotoBlob>,
        thumbnail: Option<&PhotoBlob>,
    ) -> Result<String, ReplicaError> {
        let mut doc = self.docs.take(&self.conn, &self.actor, section)?;
        let hlc = self.clock.tick(self.device_clock.now());
        let id = self.new_id();
        let change = doc.add_photo(&hlc, &id, uri, caption, blob, thumbnail)?;
        let validated = self.validate(&self.input_of(&doc)?)?;
        self.commit_local(doc, change, validated, &[])?;
        Ok(id)
    }

    /// Write the bytes under their hash, through a temporary file and a
    /// rename (a crash leaves the old state or the whole file, never half),
    /// once: a file already there holds the same bytes.
    fn keep_bytes(&self, sha256: &str, bytes: &[u8]) -> Result<(), ReplicaError> {
        let dir = self.photo_dir();
        let target = dir.join(sha256);
        if target.is_file() {
            return Ok(());
        }
        let io = |e: std::io::Error| ReplicaError::Photo(format!("cannot keep the photo in {}: {e}", dir.display()));
        fs::create_dir_all(&dir).map_err(io)?;
        let partial = self.partial_path(sha256);
        let mut f = fs::File::create(&partial).map_err(io)?;
        f.write_all(bytes).and_then(|()| f.sync_all()).map_err(io)?;
        fs::rename(&partial, &target).map_err(io)
    }
}

/// The media type of a photo FieldSync takes (JPEG, PNG, WebP, GIF,
/// HEIC), from the first bytes of its file (a few dozen are enough).
pub fn photo_media_type(header: &[u8]) -> Option<&'static str> {
    Some(match imagesize::image_type(header).ok()? {
        imagesize::ImageType::Jpeg => "image/jpeg",
        imagesize::ImageType::Png => "image/png",
        imagesize::ImageType::Webp => "image/webp",
        imagesize::ImageType::Gif => "image/gif",
        imagesize::ImageType::Heif(_) => "image/heic",
        _ => return None,
    })
}

/// Hash, size, media type and pixels of a photo's bytes (JPEG, PNG, WebP,
/// HEIC or GIF, up to [`MAX_PHOTO_BYTES`]): what a device records and what
/// the server checks a whole upload against.
pub fn describe_photo(bytes: &[u8]) -> Result<PhotoBlob, ReplicaError> {
    if bytes.len() > MAX_PHOTO_BYTES {
        return Err(ReplicaError::InvalidInput(format!(
            "the photo is {} MB; at most {} MB is taken",
            bytes.len() / (1024 * 1024),
            MAX_PHOTO_BYTES / (1024 * 1024)
        )));
    }
    let not_a_photo =
        || ReplicaError::InvalidInput("not a photo FieldSync takes: send a JPEG, PNG, WebP, HEIC or GIF image".into());
    let media_type = photo_media_type(bytes).ok_or_else(not_a_photo)?;
    let size = imagesize::blob_size(bytes).map_err(|_| not_a_photo())?;
    Ok(PhotoBlob {
        sha256: hex::encode(Sha256::digest(bytes)),
        size: bytes.len() as u64,
        media_type: media_type.into(),
        width: size.width as u32,
        height: size.height as u32,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::io::Cursor;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::domain::project::Member;
    use crate::domain::role::Role;
    use crate::domain::route::GeoPoint;
    use crate::replica::ReplicaOptions;

    #[test]
    fn each_move_of_a_photos_bytes_names_its_section_on_the_change_feed() {
        let dir = tempfile::tempdir().unwrap();
        let options = ReplicaOptions { device: "d".into(), ..Default::default() };
        let mut r = Replica::open(dir.path().join("r.db"), options).unwrap();
        let me = Member { actor: r.actor(), user: "olga".into(), role: Role::Office };
        r.set_roster("p", &[me]).unwrap();
        let route = [GeoPoint { lat: 48.0, lon: 11.0 }, GeoPoint { lat: 48.0, lon: 11.01 }];
        let with = r.create_section("p", "a", &route).unwrap();
        r.create_section("p", "b", &route).unwrap(); // never named
        let image = image::RgbImage::from_fn(400, 300, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 90]));
        let mut jpeg = Vec::new();
        image::DynamicImage::ImageRgb8(image).write_to(&mut Cursor::new(&mut jpeg), image::ImageFormat::Jpeg).unwrap();
        let id = r.add_photo_bytes(&with, &jpeg, None).unwrap();
        let photo = r.section(&with).unwrap().photos.into_iter().find(|p| p.id == id).unwrap();
        let sha = photo.blob.clone().unwrap().sha256;
        assert!(photo.thumbnail.is_some());

        let heard = Arc::new(Mutex::new(Vec::new()));
        let log = heard.clone();
        let _subscription = r.change_feed().subscribe(move |c| log.lock().unwrap().push(c.photos.clone()));
        let size = jpeg.len() as u64;
        let moved = |r: &Replica| {
            r.change_feed().flush();
            heard.lock().unwrap().drain(..).collect::<Vec<_>>()
        };
        let only_with = vec![BTreeSet::from([with.clone()])];
        // A chunk acknowledged, then all of it.
        r.record_photo_upload(&sha, PhotoUploadState { size, received: 4096, complete: false }).unwrap();
        assert_eq!(moved(&r), only_with);
        assert_eq!(r.photo_state(&photo).unwrap(), PhotoState::Uploading { sent: 4096, size });
        r.record_photo_upload(&sha, PhotoUploadState { size, received: size, complete: true }).unwrap();
        assert_eq!(moved(&r), only_with);
        assert_eq!(r.photo_state(&photo).unwrap(), PhotoState::OnServer);
        // Let go under the budget, then fetched again, chunk by chunk: its thumbnail stays.
        assert_eq!(r.enforce_photo_budget(0).unwrap(), 0, "the photo used last stays");
        r.touch_photo(&"0".repeat(64), 1).unwrap(); // another photo, used last
        r.enforce_photo_budget(0).unwrap();
        assert_eq!(moved(&r), only_with);
        assert_eq!(r.photo_state(&photo).unwrap(), PhotoState::ThumbnailOnly);
        r.append_fetched_photo(&sha, 0, &jpeg[..1000]).unwrap();
        assert_eq!(moved(&r), only_with);
        assert_eq!(r.photo_state(&photo).unwrap(), PhotoState::Downloading { received: 1000, size });
        r.append_fetched_photo(&sha, 1000, &jpeg[1000..]).unwrap();
        r.finish_fetched_photo(&sha).unwrap();
        assert_eq!(moved(&r), only_with, "two moves, one flush; never the other section");
    }
}
