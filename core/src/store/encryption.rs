//! Encryption at rest: SQLCipher (feature `encryption`), keyed by the app.
//!
//! The app keeps a random 256-bit key in the platform's keystore (Android
//! Keystore, iOS Keychain) and passes it to every open. SQLCipher gets it as a
//! raw key, so opening costs no key derivation and there is no passphrase to
//! guess. Every connection to the file (the replica's and its checkpoint
//! thread's) is keyed before its first read.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, params};

/// Whether this build links SQLCipher and can open encrypted stores.
pub const AVAILABLE: bool = cfg!(feature = "encryption");

/// A store's 256-bit key. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreKey([u8; 32]);

/// A key that cannot be one, or a store that cannot be encrypted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncryptionError {
    /// Not 32 bytes.
    #[error(
        "a store key is 32 bytes (256 bits), not {0}: generate it randomly once and keep it in the platform's keystore"
    )]
    KeyLength(usize),
    /// This build has no SQLCipher.
    #[error("this build of FieldSync has no encryption at rest (build it with the `encryption` feature)")]
    Unavailable,
    /// The file is not a plain store (it is encrypted already, or no store at all).
    #[error("{0} is not a plain SQLite store (encrypted already, or not a store); nothing was changed")]
    NotPlain(std::path::PathBuf),
    /// SQLite failed while copying; the plain store is as it was.
    #[error("could not encrypt the store: {0}; the plain store is untouched")]
    Sqlite(#[from] rusqlite::Error),
    /// The encrypted copy could not be put in place; the plain store is as it was.
    #[error("could not put the encrypted store in place: {0}; the plain store is untouched")]
    Io(#[from] std::io::Error),
}

impl StoreKey {
    /// The key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<StoreKey, EncryptionError> {
        Ok(StoreKey(bytes.try_into().map_err(|_| EncryptionError::KeyLength(bytes.len()))?))
    }
}

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreKey(…)")
    }
}

/// Key `conn`, before anything reads the file.
pub(crate) fn apply(conn: &Connection, key: &StoreKey) -> rusqlite::Result<()> {
    // Only hex digits go into the statement: nothing to escape.
    conn.execute_batch(&format!("PRAGMA key = \"{}\";", key.raw()))
}

impl StoreKey {
    /// SQLCipher's spelling of a raw key.
    fn raw(&self) -> String {
        format!("x'{}'", hex::encode(self.0))
    }
}

/// Encrypt the plain store at `path` with `key`, in place: for an app that
/// turns encryption on for users who already have data, unsynced edits
/// included. No replica may have the file open. The encrypted copy is made
/// next to it, checked, and renamed over it only when complete, so a failure
/// or a crash at any point leaves the plain store as it was.
pub fn encrypt_store(path: &Path, key: &StoreKey) -> Result<(), EncryptionError> {
    if !AVAILABLE {
        return Err(EncryptionError::Unavailable);
    }
    let not_plain = || EncryptionError::NotPlain(path.to_owned());
    if !path.is_file() {
        return Err(not_plain());
    }
    // CREATE: for the encrypted copy, which ATTACH makes with this connection's flags.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
    let conn = Connection::open_with_flags(path, flags).map_err(|_| not_plain())?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|_| not_plain())?;
    // Everything committed into the file first: the copy reads the file.
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    let copy = path.with_extension("encrypting");
    if copy.exists() {
        std::fs::remove_file(&copy)?; // An earlier attempt's leftover: never in use.
    }
    let copy_name = copy.to_str().ok_or_else(|| std::io::Error::other("the store's path is not UTF-8"))?;
    conn.execute("ATTACH DATABASE ?1 AS encrypted KEY ?2", params![copy_name, key.raw()])?;
    conn.query_row("SELECT sqlcipher_export('encrypted')", [], |_| Ok(()))?;
    conn.execute_batch(&format!("PRAGMA encrypted.user_version = {version}; DETACH DATABASE encrypted;"))?;
    drop(conn); // The last connection: SQLite removes the (empty) WAL.
    {
        let check = Connection::open_with_flags(&copy, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        apply(&check, key)?;
        let ok: String = check.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        if ok != "ok" {
            return Err(EncryptionError::Io(std::io::Error::other(format!(
                "the encrypted copy failed its check: {ok}"
            ))));
        }
    }
    std::fs::File::open(&copy)?.sync_all()?;
    std::fs::rename(&copy, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?; // The rename itself, durable.
    }
    Ok(())
}

/// Whether a file SQLite cannot read still has the fixed bytes of an SQLite
/// header (payload fractions 64, 32, 32 at offsets 21–23): a damaged plain
/// store, as opposed to an encrypted one, whose header is all ciphertext.
pub(crate) fn looks_like_plain_sqlite(path: &std::path::Path) -> bool {
    use std::io::Read;
    let mut header = [0u8; 24];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut header)).is_ok() && header[21..24] == [64, 32, 32]
}
