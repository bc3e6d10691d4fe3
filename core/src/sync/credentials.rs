//! Device tokens that expire, and where a fresh one comes from: the app's
//! [`CredentialsConnector`] (its own backend, which asks the hub for a new
//! token for the same device: `fieldsync admin issue-token`). A
//! [`crate::SyncClient`] given one asks it once per sync when the hub answers
//! `401`, and runs the round again with the fresh token.
//!
//! The connector returns a token only: the server URL is the app's
//! configuration, fixed when it connects (the transport and the live channel
//! are built for it), while the token is what expires.

use std::sync::{Arc, Mutex, RwLock};

/// Why the app's connector has no fresh token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialsError {
    /// The app's backend could not be reached: sync tries again later.
    #[error("no fresh device token for now: {0}")]
    Unavailable(String),
    /// The app's backend will not give this device a token (signed out,
    /// device revoked): the person must sign in again.
    #[error("no device token to be had: {0}")]
    Refused(String),
}

/// What the app implements: a fresh token for this device, from its backend.
/// Called on a sync's thread (it may block), at most once per sync.
pub trait CredentialsConnector: Send + Sync {
    /// A token for the device the replica belongs to.
    fn fetch_credentials(&self) -> Result<String, CredentialsError>;
}

/// The device token a client sends, replaceable while in use: the transport
/// and the live channel hold clones, so a fresh token reaches both.
#[derive(Clone, Default)]
pub struct DeviceToken(Arc<RwLock<String>>);

impl DeviceToken {
    /// A token cell holding `token`.
    pub fn new(token: &str) -> Self {
        DeviceToken(Arc::new(RwLock::new(token.to_owned())))
    }

    /// The token now.
    pub fn get(&self) -> String {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replace the token for every holder.
    pub fn set(&self, token: &str) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = token.to_owned();
    }
}

/// Never prints the token.
impl std::fmt::Debug for DeviceToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceToken(…)")
    }
}

impl From<&str> for DeviceToken {
    fn from(token: &str) -> Self {
        DeviceToken::new(token)
    }
}

impl From<&String> for DeviceToken {
    fn from(token: &String) -> Self {
        DeviceToken::new(token)
    }
}

impl From<String> for DeviceToken {
    fn from(token: String) -> Self {
        DeviceToken(Arc::new(RwLock::new(token)))
    }
}

/// What a client needs to renew its token: the cell its transport reads and
/// the app's connector.
pub(crate) struct Renewal {
    pub(crate) token: DeviceToken,
    pub(crate) connector: Arc<dyn CredentialsConnector>,
    /// One renewal at a time: a sync now and background sync refused
    /// together ask once (a second fresh token would replace the first).
    pub(crate) turn: Mutex<()>,
}

impl Renewal {
    /// Ask the connector for a fresh token and hand it to every holder,
    /// unless another sync did since `used` was read.
    pub(crate) fn renew(&self, used: &str) -> Result<(), CredentialsError> {
        let _turn = self.turn.lock().unwrap_or_else(|p| p.into_inner());
        if self.token.get() != used {
            return Ok(());
        }
        let fresh = self.connector.fetch_credentials()?;
        self.token.set(&fresh);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    struct Counting(AtomicUsize);

    impl CredentialsConnector for Counting {
        fn fetch_credentials(&self) -> Result<String, CredentialsError> {
            Ok(format!("fresh-{}", self.0.fetch_add(1, Ordering::SeqCst) + 1))
        }
    }

    #[test]
    fn a_token_renewed_since_it_was_used_is_not_renewed_again() {
        let token = DeviceToken::new("old");
        let connector = Arc::new(Counting(AtomicUsize::new(0)));
        let renewal = Renewal { token: token.clone(), connector: connector.clone(), turn: Default::default() };
        renewal.renew("old").unwrap();
        assert_eq!(token.get(), "fresh-1");
        // Another sync refused with the old token meanwhile: the fresh one is tried, nobody asked.
        renewal.renew("old").unwrap();
        assert_eq!((token.get().as_str(), connector.0.load(Ordering::SeqCst)), ("fresh-1", 1));
        renewal.renew("fresh-1").unwrap();
        assert_eq!(token.get(), "fresh-2");
        assert_eq!(format!("{token:?}"), "DeviceToken(…)", "never printed");
    }
}
