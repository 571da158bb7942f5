//! Answering ACME challenges: the http-01 key authorizations that an HTTP server consults,
//! and the tls-alpn-01 validation certificates every `CertificateResolver` serves to
//! handshakes offering `acme-tls/1`.
//!
//! The process that places an order keeps its answers in memory and also publishes them in
//! the certificate directory (see [`CertificateStore`]); every process with an ACME
//! listener on that directory reads them there when its memory has none. So the workers of
//! a supervisor that runs the ACME manager, or servers sharing the directory, answer a
//! validation whichever of them the ACME server reaches.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use super::store::CertificateStore;
use crate::tls::{answer_validations_from, normalise};

/// The path below which an ACME server fetches http-01 key authorizations (RFC 8555 §8.3):
/// `GET /.well-known/acme-challenge/<token>`.
pub const HTTP01_PATH_PREFIX: &str = "/.well-known/acme-challenge/";

/// The kind names, as in the challenge objects and the published files' suffixes.
const HTTP01: &str = "http-01";
const TLS_ALPN01: &str = "tls-alpn-01";

/// Pending http-01 challenges of this process's own orders, by token.
static HTTP01_ANSWERS: LazyLock<RwLock<HashMap<String, String>>> = LazyLock::new(Default::default);

/// RFC 8737 validation certificates of this process's own orders, by host name: served by
/// every resolver, so that any TLS listener the ACME server reaches (an IPv4 and an IPv6
/// one, say) answers, but only to a ClientHello that offers ALPN `acme-tls/1`; such a
/// handshake never gets an ordinary certificate.
static TLS_ALPN01_ANSWERS: LazyLock<RwLock<HashMap<String, Arc<CertifiedKey>>>> =
    LazyLock::new(Default::default);

/// The certificate directories of this process's ACME listeners, whose published answers
/// it serves too.
static DIRECTORIES: LazyLock<RwLock<Vec<CertificateStore>>> = LazyLock::new(Default::default);

/// Makes this process answer the challenges published in `store`'s directory, whichever
/// process placed the order: called for every ACME listener.
pub(crate) fn answer_from(store: &CertificateStore) {
    answer_validations_from(validation_for);
    if let Ok(mut directories) = DIRECTORIES.write()
        && !directories.iter().any(|d| d.path() == store.path())
    {
        directories.push(store.clone());
    }
}

/// The first answer of `kind` for `key` published in one of this process's directories.
fn published(kind: &str, key: &str) -> Option<Vec<u8>> {
    let directories = DIRECTORIES.read().ok()?;
    directories
        .iter()
        .find_map(|store| store.challenge(kind, key))
}

/// Whether `token` can be an ACME token: base64url characters only (RFC 8555 §8.3), at most
/// 256 of them, so that it is safe in a file name.
pub(crate) fn is_token(token: &str) -> bool {
    (1..=256).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The key authorization to answer for an http-01 `token` (RFC 8555 §8.3), if an order of
/// this process, or one published in the certificate directory of one of its ACME
/// listeners, is waiting for it.
///
/// An HTTP server that wants to answer http-01 challenges calls this for requests to
/// [`HTTP01_PATH_PREFIX`]`<token>` on its plain-HTTP listeners, and answers `200 OK` with
/// the returned text as an `application/octet-stream` body (any content type is accepted by
/// RFC 8555). Answers exist only while an order waits for validation.
pub fn http01_key_authorization(token: &str) -> Option<String> {
    if let Some(answer) = HTTP01_ANSWERS.read().ok()?.get(token) {
        return Some(answer.clone());
    }
    if !is_token(token) {
        return None;
    }
    String::from_utf8(published(HTTP01, token)?).ok()
}

/// The answer to `path` (a request target's path) if it asks for a pending http-01 token:
/// `Some(key authorization)`; `None` for every other path.
pub fn http01_answer(path: &str) -> Option<String> {
    http01_key_authorization(path.strip_prefix(HTTP01_PATH_PREFIX)?)
}

/// The validation certificate for `name` (already normalised), for the resolvers: the one
/// published in a directory, else this process's own. The directory comes first: an order
/// of this process writes its answer there too, and a fleet's mirror writes there the
/// answer of a later order (another server's, which took over the name when this one's
/// lock ran out) under the same name.
fn validation_for(name: &str) -> Option<Arc<CertifiedKey>> {
    let Some(pem) = published(TLS_ALPN01, name) else {
        return TLS_ALPN01_ANSWERS.read().ok()?.get(name).cloned();
    };
    match validation_key(&pem) {
        Ok(key) => Some(Arc::new(key)),
        Err(message) => {
            tracing::warn!(
                name,
                "a published tls-alpn-01 answer is unusable: {message}"
            );
            TLS_ALPN01_ANSWERS.read().ok()?.get(name).cloned()
        }
    }
}

/// The validation key and certificate of a published tls-alpn-01 answer (PEM, as
/// [`validation_certificate`] writes it). Not checked against each other with webpki, which
/// refuses the critical acmeIdentifier extension such a certificate must carry.
fn validation_key(pem: &[u8]) -> Result<CertifiedKey, String> {
    let key = PrivateKeyDer::from_pem_slice(pem).map_err(|e| format!("no private key: {e}"))?;
    let certificate =
        CertificateDer::from_pem_slice(pem).map_err(|e| format!("no certificate: {e}"))?;
    let signing = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("the private key cannot be used: {e}"))?;
    Ok(CertifiedKey::new(vec![certificate], signing))
}

/// A challenge being answered; dropping it stops answering, here and in the directory.
pub(crate) struct Provisioned {
    store: CertificateStore,
    kind: &'static str,
    /// The token (http-01) or the normalised host name (tls-alpn-01).
    key: String,
    /// The answer as published: the key authorization, or the validation certificate's
    /// key and certificate in PEM.
    answer: Vec<u8>,
}

impl Provisioned {
    /// Answers `token` with `key_authorization` on every plain-HTTP listener of the process,
    /// and publishes it in `store`'s directory for the other processes serving from it.
    ///
    /// # Errors
    /// A message when `token` is not base64url or the answer cannot be written.
    pub(crate) fn http01(
        store: &CertificateStore,
        token: &str,
        key_authorization: &str,
    ) -> Result<Provisioned, String> {
        if !is_token(token) {
            return Err(format!(
                "the ACME server's http-01 token {token:?} is not base64url"
            ));
        }
        let provisioned = Provisioned {
            store: store.clone(),
            kind: HTTP01,
            key: token.to_owned(),
            answer: key_authorization.as_bytes().to_vec(),
        };
        if let Ok(mut table) = HTTP01_ANSWERS.write() {
            table.insert(token.to_owned(), key_authorization.to_owned());
        }
        provisioned.publish()?;
        Ok(provisioned)
    }

    /// Answers validation handshakes for `name` on every TLS listener of the process with
    /// a certificate carrying `digest` (the SHA-256 of the key authorization) in its
    /// acmeIdentifier extension (RFC 8737 §3), and publishes it in `store`'s directory.
    ///
    /// # Errors
    /// A message when `name` is not a host name (wildcards cannot be validated this way),
    /// the certificate cannot be made, or it cannot be written.
    pub(crate) fn tls_alpn01(
        store: &CertificateStore,
        name: &str,
        digest: &[u8],
    ) -> Result<Provisioned, String> {
        let name = normalise(name)
            .ok_or_else(|| format!("{name:?} is not a host name for a tls-alpn-01 challenge"))?;
        let (pem, key) = validation_certificate(&name, digest)?;
        answer_validations_from(validation_for);
        let provisioned = Provisioned {
            store: store.clone(),
            kind: TLS_ALPN01,
            key: name.clone(),
            answer: pem.into_bytes(),
        };
        if let Ok(mut table) = TLS_ALPN01_ANSWERS.write() {
            table.insert(name, Arc::new(key));
        }
        provisioned.publish()?;
        Ok(provisioned)
    }

    /// The kind (`http-01`, `tls-alpn-01`), the key (token or host name) and the answer,
    /// as a fleet's store shares them.
    pub(crate) fn parts(&self) -> (&'static str, &str, &[u8]) {
        (self.kind, &self.key, &self.answer)
    }

    fn publish(&self) -> Result<(), String> {
        self.store
            .put_challenge(self.kind, &self.key, &self.answer)
            .map_err(|err| {
                format!(
                    "cannot publish the {} answer in {}: {err}",
                    self.kind,
                    self.store.path().display()
                )
            })
    }
}

impl Drop for Provisioned {
    fn drop(&mut self) {
        if self.kind == HTTP01 {
            if let Ok(mut table) = HTTP01_ANSWERS.write() {
                table.remove(&self.key);
            }
        } else if let Ok(mut table) = TLS_ALPN01_ANSWERS.write() {
            table.remove(&self.key);
        }
        // Not another order's answer, copied from a fleet's store since.
        self.store
            .remove_challenge_if(self.kind, &self.key, &self.answer);
    }
}

/// The self-signed certificate of RFC 8737 §3: `name` as its only subjectAltName, and the
/// critical acmeIdentifier extension holding `digest`, with a fresh P-256 key; as PEM (key,
/// then certificate) and ready to serve.
fn validation_certificate(name: &str, digest: &[u8]) -> Result<(String, CertifiedKey), String> {
    let fail = |e: rcgen::Error| format!("tls-alpn-01 certificate for {name}: {e}");
    let key = rcgen::KeyPair::generate().map_err(fail)?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).map_err(fail)?;
    params
        .custom_extensions
        .push(rcgen::CustomExtension::new_acme_identifier(digest));
    let certificate = params.self_signed(&key).map_err(fail)?;
    let pem = key.serialize_pem() + &certificate.pem();
    let der = PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| format!("{name}: {e}"))?;
    let signing = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| format!("tls-alpn-01 key for {name}: {e}"))?;
    Ok((
        pem,
        CertifiedKey::new(vec![certificate.der().clone()], signing),
    ))
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
        let dir = tempfile::tempdir().unwrap();
        let store = CertificateStore::open(dir.path()).unwrap();
        let path = format!("{HTTP01_PATH_PREFIX}tok-123");
        assert_eq!(http01_answer(&path), None);
        let provisioned = Provisioned::http01(&store, "tok-123", "tok-123.thumb").unwrap();
        assert_eq!(http01_answer(&path).as_deref(), Some("tok-123.thumb"));
        assert_eq!(http01_answer("/tok-123"), None);
        assert_eq!(http01_answer(&format!("{HTTP01_PATH_PREFIX}other")), None);
        drop(provisioned);
        assert_eq!(http01_answer(&path), None);
    }

    #[test]
    fn validation_certificate_carries_the_digest_in_a_critical_extension() {
        let digest = [7u8; 32];
        let (_, key) = validation_certificate("a.example", &digest).unwrap();
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

    /// The acmeIdentifier extension's value in `key`'s certificate.
    fn acme_identifier(key: &CertifiedKey) -> Vec<u8> {
        let (_, cert) = x509_parser::parse_x509_certificate(key.cert[0].as_ref()).unwrap();
        cert.extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier extension")
            .value
            .to_vec()
    }

    #[test]
    fn answers_published_in_the_directory_are_served_by_a_process_that_did_not_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = CertificateStore::open(dir.path()).unwrap();
        let http = Provisioned::http01(&store, "tok-published_1", "tok-published_1.thumb").unwrap();
        let tls = Provisioned::tls_alpn01(&store, "Published.Example.", &[9u8; 32]).unwrap();
        assert!(dir.path().join(".tok-published_1.http-01").exists());
        assert!(dir.path().join(".published.example.tls-alpn-01").exists());
        // Another process: nothing in memory, and not answering from this directory yet.
        HTTP01_ANSWERS.write().unwrap().remove("tok-published_1");
        TLS_ALPN01_ANSWERS
            .write()
            .unwrap()
            .remove("published.example");
        assert_eq!(http01_key_authorization("tok-published_1"), None);
        assert!(validation_for("published.example").is_none());
        // Once it has an ACME listener on the directory, it answers both.
        answer_from(&store);
        assert_eq!(
            http01_key_authorization("tok-published_1").as_deref(),
            Some("tok-published_1.thumb")
        );
        let key = validation_for("published.example").expect("the published certificate");
        assert_eq!(
            acme_identifier(&key),
            [&[0x04, 0x20][..], &[9u8; 32]].concat()
        );
        // The order done, the answers are withdrawn from the directory too.
        drop((http, tls));
        assert_eq!(http01_key_authorization("tok-published_1"), None);
        assert!(validation_for("published.example").is_none());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_token_that_is_not_base64url_is_neither_published_nor_looked_up() {
        let dir = tempfile::tempdir().unwrap();
        let store = CertificateStore::open(dir.path()).unwrap();
        assert!(Provisioned::http01(&store, "../escape", "x").is_err());
        assert!(Provisioned::http01(&store, "", "x").is_err());
        answer_from(&store);
        std::fs::write(dir.path().join("..x.http-01"), "x").unwrap();
        assert_eq!(http01_key_authorization("./x"), None);
        assert_eq!(http01_key_authorization("../x"), None);
    }
}
