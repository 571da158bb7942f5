//! Answering ACME challenges: the process-wide http-01 table that an HTTP server consults,
//! and the tls-alpn-01 table of validation certificates every `CertificateResolver`
//! serves to handshakes offering `acme-tls/1`.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

use rustls::pki_types::PrivateKeyDer;
use rustls::sign::CertifiedKey;

use crate::tls::{answer_validations_from, normalise};

/// The path below which an ACME server fetches http-01 key authorizations (RFC 8555 §8.3):
/// `GET /.well-known/acme-challenge/<token>`.
pub const HTTP01_PATH_PREFIX: &str = "/.well-known/acme-challenge/";

/// Pending http-01 challenges of this process, by token.
static HTTP01: LazyLock<RwLock<HashMap<String, String>>> = LazyLock::new(Default::default);

/// The key authorization to answer for an http-01 `token` (RFC 8555 §8.3), if a challenge
/// of this process is waiting for it.
///
/// An HTTP server that wants to answer http-01 challenges calls this for requests to
/// [`HTTP01_PATH_PREFIX`]`<token>` on its plain-HTTP listeners, and answers `200 OK` with
/// the returned text as an `application/octet-stream` body (any content type is accepted by
/// RFC 8555). Tokens are only ever set by the ACME manager of this process while one of
/// its orders is waiting for validation; nothing else is stored.
pub fn http01_key_authorization(token: &str) -> Option<String> {
    HTTP01.read().ok()?.get(token).cloned()
}

/// The answer to `path` (a request target's path) if it asks for a pending http-01 token:
/// `Some(key authorization)`; `None` for every other path.
pub fn http01_answer(path: &str) -> Option<String> {
    http01_key_authorization(path.strip_prefix(HTTP01_PATH_PREFIX)?)
}

/// RFC 8737 validation certificates of this process, by host name: served by every
/// resolver, so that any TLS listener the ACME server reaches (an IPv4 and an IPv6 one, say)
/// answers, but only to a ClientHello that offers ALPN `acme-tls/1`; such a handshake never
/// gets an ordinary certificate.
static TLS_ALPN01: LazyLock<RwLock<HashMap<String, Arc<CertifiedKey>>>> =
    LazyLock::new(Default::default);

/// The validation certificate for `name` (already normalised), for the resolvers.
fn validation_for(name: &str) -> Option<Arc<CertifiedKey>> {
    TLS_ALPN01.read().ok()?.get(name).cloned()
}

/// Serves `key` to tls-alpn-01 validation handshakes for `name` on every TLS listener of
/// the process (RFC 8737 §3).
///
/// # Errors
/// A message when `name` is not a host name (wildcards cannot be validated this way).
fn set_tls_alpn01(name: &str, key: Arc<CertifiedKey>) -> Result<(), String> {
    let name = normalise(name)
        .ok_or_else(|| format!("{name:?} is not a host name for a tls-alpn-01 challenge"))?;
    answer_validations_from(validation_for);
    if let Ok(mut table) = TLS_ALPN01.write() {
        table.insert(name, key);
    }
    Ok(())
}

/// Stops answering tls-alpn-01 validations for `name`.
fn remove_tls_alpn01(name: &str) {
    if let (Some(name), Ok(mut table)) = (normalise(name), TLS_ALPN01.write()) {
        table.remove(&name);
    }
}

/// A challenge being answered; dropping it stops answering.
pub(crate) enum Provisioned {
    Http01 { token: String },
    TlsAlpn01 { name: String },
}

impl Provisioned {
    /// Answers `token` with `key_authorization` on every plain-HTTP listener of the process.
    pub(crate) fn http01(token: &str, key_authorization: &str) -> Provisioned {
        if let Ok(mut table) = HTTP01.write() {
            table.insert(token.to_owned(), key_authorization.to_owned());
        }
        Provisioned::Http01 {
            token: token.to_owned(),
        }
    }

    /// Answers validation handshakes for `name` on every TLS listener of the process with
    /// a certificate carrying `digest` (the SHA-256 of the key authorization) in its
    /// acmeIdentifier extension.
    pub(crate) fn tls_alpn01(name: &str, digest: &[u8]) -> Result<Provisioned, String> {
        set_tls_alpn01(name, Arc::new(validation_certificate(name, digest)?))?;
        Ok(Provisioned::TlsAlpn01 {
            name: name.to_owned(),
        })
    }
}

impl Drop for Provisioned {
    fn drop(&mut self) {
        match self {
            Provisioned::Http01 { token } => {
                if let Ok(mut table) = HTTP01.write() {
                    table.remove(token);
                }
            }
            Provisioned::TlsAlpn01 { name } => remove_tls_alpn01(name),
        }
    }
}

/// The self-signed certificate of RFC 8737 §3: `name` as its only subjectAltName, and the
/// critical acmeIdentifier extension holding `digest`, with a fresh P-256 key.
fn validation_certificate(name: &str, digest: &[u8]) -> Result<CertifiedKey, String> {
    let fail = |e: rcgen::Error| format!("tls-alpn-01 certificate for {name}: {e}");
    let key = rcgen::KeyPair::generate().map_err(fail)?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).map_err(fail)?;
    params
        .custom_extensions
        .push(rcgen::CustomExtension::new_acme_identifier(digest));
    let certificate = params.self_signed(&key).map_err(fail)?;
    let der = PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| format!("{name}: {e}"))?;
    let signing = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| format!("tls-alpn-01 key for {name}: {e}"))?;
    Ok(CertifiedKey::new(vec![certificate.der().clone()], signing))
}

/// Serves one plain-HTTP/1.1 connection with nothing but http-01 answers: `200` with the
/// key authorization for a token this process is waiting for, `404` for any other request.
/// What [`CertificateDirectory`](super::CertificateDirectory) runs on port 80 while it
/// issues, so that no web server is needed for a one-shot issuance.
pub(crate) async fn serve_http01(connection: crate::listener::Connection) {
    let service = hyper::service::service_fn(|request: hyper::Request<hyper::body::Incoming>| {
        let answer = http01_answer(request.uri().path());
        async move {
            let (status, body, content_type) = match answer {
                Some(key_authorization) => (200, key_authorization, "application/octet-stream"),
                None => (404, "Not Found\n".to_owned(), "text/plain; charset=utf-8"),
            };
            http::Response::builder()
                .status(status)
                .header(http::header::CONTENT_TYPE, content_type)
                .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(30));
    if let Err(err) = builder
        .serve_connection(hyper_util::rt::TokioIo::new(connection), service)
        .await
    {
        tracing::debug!("http-01 connection ended: {err}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http01_answers_only_while_provisioned() {
        let path = format!("{HTTP01_PATH_PREFIX}tok-123");
        assert_eq!(http01_answer(&path), None);
        let provisioned = Provisioned::http01("tok-123", "tok-123.thumb");
        assert_eq!(http01_answer(&path).as_deref(), Some("tok-123.thumb"));
        assert_eq!(http01_answer("/tok-123"), None);
        assert_eq!(http01_answer(&format!("{HTTP01_PATH_PREFIX}other")), None);
        drop(provisioned);
        assert_eq!(http01_answer(&path), None);
    }

    #[test]
    fn validation_certificate_carries_the_digest_in_a_critical_extension() {
        let digest = [7u8; 32];
        let key = validation_certificate("a.example", &digest).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(key.cert[0].as_ref()).unwrap();
        let ext = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier extension");
        assert!(ext.critical);
        // An OCTET STRING of 32 bytes: tag 0x04, length 0x20, then the digest.
        assert_eq!(ext.value, [&[0x04, 0x20][..], &digest[..]].concat());
    }
}
