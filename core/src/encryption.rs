//! Encryption at rest: SQLCipher (feature `encryption`), keyed by the app.
//!
//! The app keeps a random 256-bit key in the platform's keystore (Android
//! Keystore, iOS Keychain) and passes it to every open. SQLCipher gets it as a
//! raw key, so opening costs no key derivation and there is no passphrase to
//! guess. Every connection to the file (the replica's and its checkpoint
//! thread's) is keyed before its first read.

use rusqlite::Connection;

/// Whether this build links SQLCipher and can open encrypted stores.
pub const AVAILABLE: bool = cfg!(feature = "encryption");

/// A store's 256-bit key. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreKey([u8; 32]);

/// A key that cannot be one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Not 32 bytes.
    #[error(
        "a store key is 32 bytes (256 bits), not {0}: generate it randomly once and keep it in the platform's keystore"
    )]
    Length(usize),
}

impl StoreKey {
    /// The key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<StoreKey, KeyError> {
        Ok(StoreKey(bytes.try_into().map_err(|_| KeyError::Length(bytes.len()))?))
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
    conn.execute_batch(&format!("PRAGMA key = \"x'{}'\";", hex::encode(key.0)))
}

/// Whether a file SQLite cannot read still has the fixed bytes of an SQLite
/// header (payload fractions 64, 32, 32 at offsets 21–23): a damaged plain
/// store, as opposed to an encrypted one, whose header is all ciphertext.
pub(crate) fn looks_like_plain_sqlite(path: &std::path::Path) -> bool {
    use std::io::Read;
    let mut header = [0u8; 24];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut header)).is_ok() && header[21..24] == [64, 32, 32]
}
