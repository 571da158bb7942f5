//! What this process's TLS listeners do, for metrics and status pages: handshakes
//! completed and failed, and the certificates they serve with their expiry.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::resolver::CertificateResolver;

static COMPLETED: AtomicU64 = AtomicU64::new(0);
static FAILED: AtomicU64 = AtomicU64::new(0);

/// The resolvers of this process's TLS listeners (see [`serving`]).
static RESOLVERS: Mutex<Vec<Weak<CertificateResolver>>> = Mutex::new(Vec::new());

/// TLS handshakes of this process since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Handshakes {
    /// Handshakes completed, tls-alpn-01 validations included.
    pub completed: u64,
    /// Handshakes that failed or timed out.
    pub failed: u64,
}

/// The handshakes every TLS listener of this process ([`TlsAccept`](super::TlsAccept)) has
/// completed and failed.
pub fn handshakes() -> Handshakes {
    Handshakes {
        completed: COMPLETED.load(Ordering::Relaxed),
        failed: FAILED.load(Ordering::Relaxed),
    }
}

/// Counts one handshake.
pub(crate) fn count_handshake(completed: bool) {
    let counter = if completed { &COMPLETED } else { &FAILED };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Remembers `resolver` as one that serves handshakes, for [`served_certificates`]; called
/// by [`server_config`](super::server_config). Resolvers whose listener is gone drop out.
pub(crate) fn serving(resolver: &Arc<CertificateResolver>) {
    if let Ok(mut resolvers) = RESOLVERS.lock() {
        resolvers.retain(|held| held.strong_count() > 0);
        if !resolvers
            .iter()
            .any(|held| held.as_ptr() == Arc::as_ptr(resolver))
        {
            resolvers.push(Arc::downgrade(resolver));
        }
    }
}

/// One certificate a TLS listener of this process serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServedCertificate {
    /// The name it is served for: a host name, `*.parent` or `DEFAULT`.
    pub name: String,
    /// The issuer's distinguished name, as RFC 4514 text.
    pub issuer: String,
    /// The end of its validity (notAfter).
    pub not_after: SystemTime,
}

/// Every certificate the TLS listeners of this process serve now, by name (a name served
/// by several listeners once, with the latest expiry), sorted.
pub fn served_certificates() -> Vec<ServedCertificate> {
    let resolvers: Vec<Arc<CertificateResolver>> = RESOLVERS
        .lock()
        .map(|resolvers| resolvers.iter().filter_map(Weak::upgrade).collect())
        .unwrap_or_default();
    let mut served: Vec<ServedCertificate> = Vec::new();
    for resolver in resolvers {
        for (name, key) in resolver.certificates() {
            let Some(leaf) = key.cert.first() else {
                continue;
            };
            let Ok((_, parsed)) = x509_parser::parse_x509_certificate(leaf.as_ref()) else {
                continue;
            };
            let seconds = parsed.validity().not_after.timestamp().max(0) as u64;
            let certificate = ServedCertificate {
                name,
                issuer: parsed.issuer().to_string(),
                not_after: UNIX_EPOCH + Duration::from_secs(seconds),
            };
            match served.iter_mut().find(|c| c.name == certificate.name) {
                Some(known) if known.not_after < certificate.not_after => *known = certificate,
                Some(_) => {}
                None => served.push(certificate),
            }
        }
    }
    served.sort_by(|a, b| a.name.cmp(&b.name));
    served
}
