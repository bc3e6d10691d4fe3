//! TLS to PostgreSQL with rustls (on `ring`), chosen by the database URL as
//! libpq would read it: `sslmode=disable|prefer|require|verify-ca|verify-full`
//! and `sslrootcert=FILE`. Without `sslmode` (or with `disable`) the
//! connection is plain, as before.
//!
//! Stricter than libpq on purpose: whenever TLS is used the server's
//! certificate is verified, name included (against `sslrootcert` when given,
//! else the platform's roots), so `require` and `verify-ca` act as
//! `verify-full`; an unverified TLS connection is never made.

use std::sync::Arc;

use postgres::config::SslMode;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use tokio_postgres_rustls::MakeRustlsConnect;

/// Why the URL's TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgTlsError {
    /// An `sslmode` this server does not know.
    #[error("sslmode `{0}` is not one of disable, prefer, require, verify-ca, verify-full")]
    Mode(String),
    /// The `sslrootcert` file could not be read or holds no certificate.
    #[error("sslrootcert {path}: {reason}")]
    RootCert {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// rustls refused the configuration (or the platform's roots).
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The URL without its `sslmode` / `sslrootcert` (which the `postgres`
/// crate does not read, or reads otherwise), what they asked for, and the
/// connector when TLS is wanted.
pub fn prepare(url: &str) -> Result<(String, SslMode, Option<MakeRustlsConnect>), PgTlsError> {
    let (mut mode, mut root) = (None, None);
    let mut keep = |key: &str, value: &str| match key {
        "sslmode" => {
            mode = Some(value.to_owned());
            false
        }
        "sslrootcert" => {
            root = Some(value.to_owned());
            false
        }
        _ => true,
    };
    let rest = match url.split_once("://") {
        // URL form: the settings are query parameters.
        Some(_) => match url.split_once('?') {
            Some((base, query)) => {
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|pair| {
                        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                        keep(k, &percent_encoding::percent_decode_str(v).decode_utf8_lossy())
                    })
                    .collect();
                if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) }
            }
            None => url.to_owned(),
        },
        // Key-value form: `host=… sslmode=require` (values without spaces).
        None => url
            .split_whitespace()
            .filter(|word| {
                let (k, v) = word.split_once('=').unwrap_or((word, ""));
                keep(k.trim(), v.trim())
            })
            .collect::<Vec<_>>()
            .join(" "),
    };
    let mode = match mode.as_deref() {
        None | Some("disable") => return Ok((rest, SslMode::Disable, None)),
        Some("prefer") => SslMode::Prefer,
        Some("require" | "verify-ca" | "verify-full") => SslMode::Require,
        Some(other) => return Err(PgTlsError::Mode(other.to_owned())),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions()?;
    let config = match root {
        Some(path) => {
            let fail = |reason: String| PgTlsError::RootCert { path: path.clone(), reason };
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&path)
                .map_err(|e| fail(e.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|e| fail(e.to_string()))?;
            let mut roots = rustls::RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(fail("no certificate in it".into()));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => {
            use rustls_platform_verifier::BuilderVerifierExt as _;
            builder.with_platform_verifier()?.with_no_client_auth()
        }
    };
    Ok((rest, mode, Some(MakeRustlsConnect::new(config))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_settings_are_taken_out_of_the_url() {
        let (rest, mode, tls) = prepare("postgres://u:p@db:5432/fs?connect_timeout=3").unwrap();
        assert_eq!(
            (rest.as_str(), mode, tls.is_none()),
            ("postgres://u:p@db:5432/fs?connect_timeout=3", SslMode::Disable, true)
        );
        let (rest, mode, tls) = prepare("postgres://u@db/fs?sslmode=verify-full&connect_timeout=3").unwrap();
        assert_eq!(
            (rest.as_str(), mode, tls.is_some()),
            ("postgres://u@db/fs?connect_timeout=3", SslMode::Require, true)
        );
        let (rest, mode, _) = prepare("host=db sslmode=require user=u").unwrap();
        assert_eq!((rest.as_str(), mode), ("host=db user=u", SslMode::Require));
        assert!(matches!(prepare("postgres://db/fs?sslmode=allow"), Err(PgTlsError::Mode(_))));
        let Err(e) = prepare("postgres://db/fs?sslmode=verify-full&sslrootcert=%2Fno%2Fsuch.pem") else {
            panic!("a missing root certificate file")
        };
        assert!(e.to_string().contains("sslrootcert /no/such.pem"), "{e}");
    }
}
