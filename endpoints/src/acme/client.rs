//! The HTTPS client that carries ACME requests: the platform's trust anchors plus the
//! `cacert=` file, a time limit per request, and a record of the server's `Retry-After`.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::RETRY_AFTER;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// The longest wait a server's `Retry-After` is taken to ask for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30 * 86_400);

/// What the ACME server last asked: wait until this time before the next request
/// (RFC 8555 §6.6 and §7.4, RFC 9110 §10.2.3), from a `Retry-After` on an error answer.
#[derive(Clone, Default, Debug)]
pub(crate) struct RetryAfter(Arc<Mutex<Option<SystemTime>>>);

impl RetryAfter {
    /// The time asked for, forgetting it.
    pub(crate) fn take(&self) -> Option<SystemTime> {
        self.0.lock().ok()?.take()
    }

    fn record(&self, at: SystemTime) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(slot.map_or(at, |old| old.max(at)));
        }
    }
}

/// An [`HttpClient`] for instant-acme.
pub(crate) struct AcmeHttp {
    client: Client<Connector, BodyWrapper<Bytes>>,
    timeout: Duration,
    retry_after: RetryAfter,
}

impl AcmeHttp {
    /// A client trusting the platform's roots and the certificates in `cacert`, giving up on
    /// a request after `timeout`.
    ///
    /// # Errors
    /// A message naming `cacert` when it holds no certificate, or the verifier's error.
    pub(crate) fn new(
        cacert: Option<&Path>,
        timeout: Duration,
        retry_after: RetryAfter,
    ) -> Result<AcmeHttp, String> {
        let mut extra = Vec::new();
        if let Some(file) = cacert {
            extra = CertificateDer::pem_file_iter(file)
                .map_err(|e| format!("cacert {}: {e}", file.display()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("cacert {}: {e}", file.display()))?;
            if extra.is_empty() {
                return Err(format!(
                    "cacert {}: no certificate in PEM form",
                    file.display()
                ));
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
                .map_err(|e| format!("trust anchors for the ACME server: {e}"))?;
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS configuration: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only()
            .enable_http1()
            .enable_http2()
            .build();
        Ok(AcmeHttp {
            client: Client::builder(TokioExecutor::new()).build(connector),
            timeout,
            retry_after,
        })
    }
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let uri = req.uri().to_string();
        let response = tokio::time::timeout(self.timeout, self.client.request(req));
        let timeout = self.timeout;
        let retry_after = self.retry_after.clone();
        Box::pin(async move {
            let response = match response.await {
                Ok(Ok(response)) => response,
                Ok(Err(err)) => {
                    return Err(instant_acme::Error::Other(
                        format!("{uri}: {}", error_chain(&err)).into(),
                    ));
                }
                Err(_) => {
                    return Err(instant_acme::Error::Other(
                        format!("{uri}: no answer within {timeout:?}").into(),
                    ));
                }
            };
            let mut response = response;
            // instant-acme adds delay-seconds to the clock, which overflows (and panics) on
            // an absurd value: cap what any server may ask at 30 days.
            if let Some(value) = response.headers().get(RETRY_AFTER)
                && let Ok(seconds) = value.to_str().unwrap_or("").trim().parse::<u64>()
                && seconds > MAX_RETRY_AFTER.as_secs()
            {
                response.headers_mut().insert(
                    RETRY_AFTER,
                    http::HeaderValue::from(MAX_RETRY_AFTER.as_secs()),
                );
            }
            let status = response.status();
            if (status.is_client_error() || status.is_server_error())
                && let Some(at) = response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after)
            {
                retry_after.record(at);
            }
            Ok(BytesResponse::from(response))
        })
    }
}

/// An error and its sources, joined by `: `.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `Retry-After` as delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
fn parse_retry_after(value: &str) -> Option<SystemTime> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return SystemTime::now().checked_add(Duration::from_secs(seconds).min(MAX_RETRY_AFTER));
    }
    let format = time::format_description::well_known::Rfc2822;
    time::OffsetDateTime::parse(value.replace("GMT", "+0000").as_str(), &format)
        .ok()
        .map(SystemTime::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_both_forms() {
        let soon = parse_retry_after(" 120 ").unwrap();
        let left = soon.duration_since(SystemTime::now()).unwrap();
        assert!(left > Duration::from_secs(110) && left <= Duration::from_secs(120));
        let date = parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            date.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
            784_111_777
        );
        assert_eq!(parse_retry_after("soon"), None);
        let capped = parse_retry_after("18446744073709551615").unwrap();
        assert!(capped <= SystemTime::now() + MAX_RETRY_AFTER);
    }

    #[test]
    fn the_latest_retry_after_wins_until_taken() {
        let slot = RetryAfter::default();
        let now = SystemTime::now();
        slot.record(now + Duration::from_secs(5));
        slot.record(now + Duration::from_secs(1));
        assert_eq!(slot.take(), Some(now + Duration::from_secs(5)));
        assert_eq!(slot.take(), None);
    }
}
