//! Photos kept by content: the bytes in a folder next to the replica, each
//! file named by its SHA-256, and a record in the section document that
//! says what they are (hash, size, media type, pixels, caption), authored
//! and stamped like every other write. The same bytes added twice are kept
//! once.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::domain::document::PhotoBlob;
use crate::domain::hlc::DeviceTime;
use crate::domain::id::new_id;
use crate::replica::{Replica, ReplicaError};

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
        let valid = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit());
        let path = self.photo_dir().join(sha256);
        (valid && path.is_file()).then_some(path)
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
    /// returns the photo's id. The bytes are on disk before the record is
    /// written, so a record of this device never names bytes it lacks.
    pub fn add_photo_bytes(
        &mut self,
        section: &str,
        bytes: &[u8],
        caption: Option<&str>,
    ) -> Result<String, ReplicaError> {
        let blob = describe(bytes)?;
        self.keep_bytes(&blob.sha256, bytes)?;
        let uri = format!("sha256:{}", blob.sha256);
        self.attach_photo(section, &uri, caption, Some(&blob))
    }

    /// Attach a photo the app keeps itself, by URI; returns its id.
    pub fn add_photo(&mut self, section: &str, uri: &str, caption: Option<&str>) -> Result<String, ReplicaError> {
        if uri.trim().is_empty() {
            return Err(ReplicaError::InvalidInput("a photo needs a URI".into()));
        }
        self.attach_photo(section, uri, caption, None)
    }

    fn attach_photo(
        &mut self,
        section: &str,
        uri: &str,
        caption: Option<&str>,
        blob: Option<&PhotoBlob>,
    ) -> Result<String, ReplicaError> {
        let mut doc = self.docs.take(&self.conn, &self.actor, section)?;
        let hlc = self.clock.tick(DeviceTime::now());
        let id = new_id();
        let change = doc.add_photo(&hlc, &id, uri, caption, blob)?;
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
        let partial = dir.join(format!("{sha256}.partial"));
        let mut f = fs::File::create(&partial).map_err(io)?;
        f.write_all(bytes).and_then(|()| f.sync_all()).map_err(io)?;
        fs::rename(&partial, &target).map_err(io)
    }
}

/// Hash, size, media type and pixels of a photo's bytes.
fn describe(bytes: &[u8]) -> Result<PhotoBlob, ReplicaError> {
    if bytes.len() > MAX_PHOTO_BYTES {
        return Err(ReplicaError::InvalidInput(format!(
            "the photo is {} MB; at most {} MB is taken",
            bytes.len() / (1024 * 1024),
            MAX_PHOTO_BYTES / (1024 * 1024)
        )));
    }
    let not_a_photo =
        || ReplicaError::InvalidInput("not a photo FieldSync takes: send a JPEG, PNG, WebP, HEIC or GIF image".into());
    let media_type = match imagesize::image_type(bytes).map_err(|_| not_a_photo())? {
        imagesize::ImageType::Jpeg => "image/jpeg",
        imagesize::ImageType::Png => "image/png",
        imagesize::ImageType::Webp => "image/webp",
        imagesize::ImageType::Gif => "image/gif",
        imagesize::ImageType::Heif(_) => "image/heic",
        _ => return Err(not_a_photo()),
    };
    let size = imagesize::blob_size(bytes).map_err(|_| not_a_photo())?;
    Ok(PhotoBlob {
        sha256: hex::encode(Sha256::digest(bytes)),
        size: bytes.len() as u64,
        media_type: media_type.into(),
        width: size.width as u32,
        height: size.height as u32,
    })
}
