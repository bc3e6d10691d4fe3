//! How a sync round travels: a trait with one blocking call, so the runtime
//! does not care whether it is HTTP, an in-process simulated network in
//! tests, or a transport the host app provides (OkHttp, URLSession).

use crate::sync::protocol::ErrorBody;

/// Why a round trip failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// No answer: no network, DNS, timeout, connection cut. Worth retrying.
    #[error("server unreachable: {0}")]
    Unreachable(String),
    /// The server answered with an error.
    #[error("server answered {status} {}: {}", body.error, body.message)]
    Server {
        /// HTTP status.
        status: u16,
        /// Its error body.
        body: ErrorBody,
    },
}

impl TransportError {
    /// The error for an HTTP answer other than 200: `body` is the
    /// [`ErrorBody`] JSON the server sends (a refusal's list included), or,
    /// from something in between (a proxy, a load balancer), any text.
    /// For transports outside core (an app's OkHttp or URLSession) as well as
    /// the built-in `HttpTransport`.
    pub fn from_response(status: u16, body: &[u8]) -> TransportError {
        let body = serde_json::from_slice(body).unwrap_or_else(|_| ErrorBody {
            error: "http".into(),
            message: String::from_utf8_lossy(body).chars().take(200).collect(),
            refusals: vec![],
        });
        TransportError::Server { status, body }
    }

    /// Whether trying again later may help.
    pub fn retryable(&self) -> bool {
        match self {
            TransportError::Unreachable(_) => true,
            TransportError::Server { status, .. } => *status >= 500 || *status == 408 || *status == 429,
        }
    }
}

/// Carries one encoded [`crate::sync::protocol::SyncRequest`] to the server and
/// brings back the encoded [`crate::sync::protocol::SyncResponse`].
pub trait Transport: Send + Sync {
    /// One round trip. Must not retry on its own: the runtime decides.
    fn round_trip(&self, request: Vec<u8>) -> Result<Vec<u8>, TransportError>;
}

impl<F> Transport for F
where
    F: Fn(Vec<u8>) -> Result<Vec<u8>, TransportError> + Send + Sync,
{
    fn round_trip(&self, request: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        self(request)
    }
}

/// The built-in HTTP(S) transport: `POST {server}/v1/sync` with a bearer token.
///
/// TLS is rustls with the *ring* provider: it cross-builds for Android and
/// iOS with only a C compiler (aws-lc-rs, reqwest's default, needs CMake and
/// extra toolchain setup per target), and certificates are checked against
/// the platform's trust store (rustls-platform-verifier).
#[cfg(feature = "http")]
#[derive(Debug, Clone)]
pub struct HttpTransport {
    client: reqwest::blocking::Client,
    url: String,
    token: String,
}

#[cfg(feature = "http")]
impl HttpTransport {
    /// A transport to `server` (e.g. `https://sync.example.com`) authenticating with `token`.
    pub fn new(server: &str, token: &str, timeout: std::time::Duration) -> Result<Self, TransportError> {
        // Installing twice is harmless: the first provider stays.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(std::time::Duration::from_secs(30)))
            .build()
            .map_err(|e| TransportError::Unreachable(format!("cannot build an HTTP client: {e}")))?;
        Ok(HttpTransport { client, url: format!("{}/v1/sync", server.trim_end_matches('/')), token: token.to_owned() })
    }
}

#[cfg(feature = "http")]
impl Transport for HttpTransport {
    fn round_trip(&self, request: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        let response = self
            .client
            .post(&self.url)
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, crate::sync::protocol::CONTENT_TYPE)
            .body(request)
            .send()
            .map_err(|e| TransportError::Unreachable(e.to_string()))?;
        let status = response.status().as_u16();
        let bytes = response.bytes().map_err(|e| TransportError::Unreachable(format!("response cut off: {e}")))?;
        if status == 200 {
            return Ok(bytes.to_vec());
        }
        Err(TransportError::from_response(status, &bytes))
    }
}
