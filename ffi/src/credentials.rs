//! The credentials connector the app implements (Kotlin, Swift): a fresh
//! device token from the app's backend when the server refuses the current
//! one (expired). A thin mirror of core's `CredentialsConnector`; the
//! renewal itself (once per sync, then the round again) is core's.

use std::sync::Arc;

use fieldsync_core as core;

/// Where the app gets a fresh token for this device: typically its own
/// backend, which asks the sync server for one (`fieldsync admin
/// issue-token DEVICE --expires-in 12h`) after checking who is signed in.
/// Background and foreground sync call it, on a background thread (it may
/// block), at most once per sync, when the server answers `401` (an
/// expired, replaced or missing token); the refused round then runs again
/// with the new token, and the live channel uses it from its next connection.
#[uniffi::export(foreign)]
pub trait CredentialsConnector: Send + Sync {
    /// A token for this device. Throw `CredentialsError.Unavailable` when the
    /// backend cannot be reached (sync retries later, as offline), or
    /// `CredentialsError.Refused` when it will not give one (signed out,
    /// device revoked: the sync fails `NotAuthorized`).
    fn fetch_credentials(&self) -> Result<String, CredentialsError>;
}

/// Why a [`CredentialsConnector`] has no token.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum CredentialsError {
    /// The backend could not be reached: try again later.
    #[error("{detail}")]
    Unavailable {
        /// What failed.
        detail: String,
    },
    /// The backend will not give this device a token: sign in again.
    #[error("{detail}")]
    Refused {
        /// Why.
        detail: String,
    },
}

/// Any other exception the connector throws: the backend could not be reached.
impl From<uniffi::UnexpectedUniFFICallbackError> for CredentialsError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        CredentialsError::Unavailable { detail: e.reason.lines().next().unwrap_or_default().to_owned() }
    }
}

/// The app's connector as core's.
pub(crate) struct Foreign(pub(crate) Arc<dyn CredentialsConnector>);

impl core::CredentialsConnector for Foreign {
    fn fetch_credentials(&self) -> Result<String, core::CredentialsError> {
        self.0.fetch_credentials().map_err(|e| match e {
            CredentialsError::Unavailable { detail } => core::CredentialsError::Unavailable(detail),
            CredentialsError::Refused { detail } => core::CredentialsError::Refused(detail),
        })
    }
}
