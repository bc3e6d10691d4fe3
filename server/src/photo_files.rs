//! The embedded store's photo bytes: files in the data directory's
//! `photos/`, a folder per project, each photo named by its SHA-256 (a
//! `.partial` file while it arrives). The rows saying how far each upload
//! got are in `hub.db` ([`crate::SqliteHubStore`]).

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Where one project's photos are kept.
#[derive(Debug, Clone)]
pub struct PhotoFiles {
    dir: PathBuf,
}

impl PhotoFiles {
    /// The photos of the hub whose data directory is `data_dir`.
    pub fn in_data_dir(data_dir: &Path) -> PhotoFiles {
        PhotoFiles { dir: data_dir.join("photos") }
    }

    /// A project's folder: named by a hash of its id, as a project id may
    /// hold any character.
    fn project_dir(&self, project: &str) -> PathBuf {
        self.dir.join(&hex::encode(Sha256::digest(project.as_bytes()))[..32])
    }

    fn complete(&self, project: &str, sha256: &str) -> PathBuf {
        self.project_dir(project).join(sha256)
    }

    fn partial(&self, project: &str, sha256: &str) -> PathBuf {
        self.project_dir(project).join(format!("{sha256}.partial"))
    }

    /// Write `bytes` at `offset` of the photo's partial file, on disk before it returns.
    pub fn write_at(&self, project: &str, sha256: &str, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        fs::create_dir_all(self.project_dir(project))?;
        let mut f =
            fs::OpenOptions::new().create(true).write(true).truncate(false).open(self.partial(project, sha256))?;
        // What lies past `offset` is a write whose row never committed.
        f.set_len(offset)?;
        f.seek(SeekFrom::Start(offset))?;
        f.write_all(bytes)?;
        f.sync_data()
    }

    /// Up to `length` bytes from `offset`, of the complete file or else the partial one.
    pub fn read(&self, project: &str, sha256: &str, offset: u64, length: u64) -> std::io::Result<Vec<u8>> {
        let mut f = fs::File::open(self.complete(project, sha256))
            .or_else(|_| fs::File::open(self.partial(project, sha256)))?;
        f.seek(SeekFrom::Start(offset))?;
        let mut bytes = Vec::new();
        f.take(length).read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    /// The partial file becomes the photo, cut to `size` bytes.
    pub fn keep(&self, project: &str, sha256: &str, size: u64) -> std::io::Result<()> {
        let partial = self.partial(project, sha256);
        let f = fs::OpenOptions::new().write(true).open(&partial)?;
        f.set_len(size)?;
        f.sync_all()?;
        fs::rename(partial, self.complete(project, sha256))
    }

    /// Drop the photo's bytes, whole or partial.
    pub fn remove(&self, project: &str, sha256: &str) -> std::io::Result<()> {
        for path in [self.partial(project, sha256), self.complete(project, sha256)] {
            match fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}
