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
            retry_after_s: None,
        });
        TransportError::Server { status, body }
    }

    /// Like [`TransportError::from_response`], with the response's
    /// `Retry-After` header (seconds), which a body without its own
    /// `retry_after_s` (from a proxy, say) takes.
    pub fn from_http(status: u16, body: &[u8], retry_after: Option<&str>) -> TransportError {
        let mut e = TransportError::from_response(status, body);
        if let TransportError::Server { body, .. } = &mut e
            && body.retry_after_s.is_none()
        {
            body.retry_after_s = retry_after.and_then(|v| v.trim().parse().ok());
        }
        e
    }

    /// Whether trying again later may help.
    pub fn retryable(&self) -> bool {
        match self {
            TransportError::Unreachable(_) => true,
            TransportError::Server { status, .. } => *status >= 500 || *status == 408 || *status == 429,
        }
    }

    /// How long the server asked us to wait before trying again (a `429`,
    /// `503` or `507` with `Retry-After`), in ms.
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            TransportError::Server { status: 429 | 503 | 507, body } => {
                body.retry_after_s.map(|s| s.saturating_mul(1000))
            }
            _ => None,
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
    /// The server's base URL, without a trailing slash.
    server: String,
    /// Shared with the client's renewal and the live channel (see `credentials.rs`).
    token: crate::sync::credentials::DeviceToken,
}

#[cfg(feature = "http")]
impl HttpTransport {
    /// A transport to `server` (e.g. `https://sync.example.com`) authenticating with `token`
    /// (a `&str`, or a [`crate::DeviceToken`] a fresh token can replace while in use).
    pub fn new(
        server: &str,
        token: impl Into<crate::sync::credentials::DeviceToken>,
        timeout: std::time::Duration,
    ) -> Result<Self, TransportError> {
        // Installing twice is harmless: the first provider stays.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(std::time::Duration::from_secs(30)))
            .build()
            .map_err(|e| TransportError::Unreachable(format!("cannot build an HTTP client: {e}")))?;
        Ok(HttpTransport { client, server: server.trim_end_matches('/').to_owned(), token: token.into() })
    }

    pub(crate) fn server(&self) -> &str {
        &self.server
    }

    pub(crate) fn client(&self) -> &reqwest::blocking::Client {
        &self.client
    }

    /// Send `request` with the token; the body of a `200`, or the error.
    pub(crate) fn send(&self, request: reqwest::blocking::RequestBuilder) -> Result<Vec<u8>, TransportError> {
        self.send_with_headers(request).map(|(_, body)| body)
    }

    /// Like [`Self::send`], with the answer's headers.
    pub(crate) fn send_with_headers(
        &self,
        request: reqwest::blocking::RequestBuilder,
    ) -> Result<(reqwest::header::HeaderMap, Vec<u8>), TransportError> {
        let response =
            request.bearer_auth(self.token.get()).send().map_err(|e| TransportError::Unreachable(with_causes(&e)))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let retry_after = headers.get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let bytes = response.bytes().map_err(|e| TransportError::Unreachable(format!("response cut off: {e}")))?;
        if status == 200 {
            return Ok((headers, bytes.to_vec()));
        }
        Err(TransportError::from_http(status, &bytes, retry_after.as_deref()))
    }
}

/// An error with its causes: reqwest's own words ("error sending request")
/// leave out why (a certificate no trusted CA signed, a refused connection).
#[cfg(feature = "http")]
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut words = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let said = c.to_string();
        if !words.contains(&said) {
            words = format!("{words}: {said}");
        }
        cause = c.source();
    }
    words
}

#[cfg(feature = "http")]
impl Transport for HttpTransport {
    fn round_trip(&self, request: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        let url = format!("{}/v1/sync", self.server);
        let request = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, crate::sync::protocol::CONTENT_TYPE)
            .body(request);
        self.send(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_comes_from_the_body_or_the_header() {
        let body = br#"{"error":"rate_limited","message":"slow down","retry_after_s":7}"#;
        let e = TransportError::from_http(429, body, Some("3"));
        assert_eq!((e.retryable(), e.retry_after_ms()), (true, Some(7_000)));
        let proxy = TransportError::from_http(503, b"<html>busy</html>", Some(" 12 "));
        assert_eq!((proxy.retryable(), proxy.retry_after_ms()), (true, Some(12_000)));
        // An HTTP date is not understood: the usual backoff applies.
        let dated = TransportError::from_http(429, b"", Some("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!((dated.retryable(), dated.retry_after_ms()), (true, None));
        assert_eq!(TransportError::from_http(500, body, Some("3")).retry_after_ms(), None);
    }

    #[cfg(feature = "http")]
    #[test]
    fn a_failed_request_says_why_with_its_causes() {
        // Nothing listens on port 1: the connection is refused, and the error says so.
        let http = HttpTransport::new("http://127.0.0.1:1", "t", std::time::Duration::from_secs(5)).unwrap();
        let Err(TransportError::Unreachable(why)) = http.round_trip(vec![]) else { panic!("reached port 1") };
        assert!(why.starts_with("error sending request") && why.to_lowercase().contains("refused"), "{why}");
    }
}
