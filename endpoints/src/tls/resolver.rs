//! The one certificate resolver every TLS kind feeds: exact name, then a one-label
//! wildcard, then DEFAULT, from a table swapped atomically.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::error::{Error, Result};

/// The ALPN protocol an ACME server offers when it validates a tls-alpn-01 challenge
/// (RFC 8737 §6.2).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The name under which the certificate for clients without SNI (and for names with no
/// certificate of their own) is kept, as txsni's `DEFAULT.pem`.
pub const DEFAULT_NAME: &str = "DEFAULT";

#[derive(Default)]
struct Certificates {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by the parent domain: `*.example.com` is kept under `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

/// Chooses the certificate for every TLS handshake: the exact host name, then a wildcard
/// for its parent domain, then [`DEFAULT_NAME`].
///
/// Names are matched case-insensitively and without a trailing dot (RFC 6066 §3; RFC 4343).
/// A wildcard covers exactly one label, as in RFC 6125 §6.4.3. A server name that is not a
/// valid host name never matches a name and gets the default. Readers never lock: the
/// table is replaced whole, atomically, by [`CertificateResolver::set`] and
/// [`CertificateResolver::remove`], so a certificate can be swapped while handshakes run.
#[derive(Default)]
pub struct CertificateResolver {
    table: ArcSwap<Certificates>,
}

impl std::fmt::Debug for CertificateResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let table = self.table.load();
        f.debug_struct("CertificateResolver")
            .field("exact", &table.exact.keys().collect::<Vec<_>>())
            .field("wildcard", &table.wildcard.keys().collect::<Vec<_>>())
            .field("default", &table.default.is_some())
            .finish()
    }
}

/// Where handshakes offering ALPN `acme-tls/1` get their certificate: set once by the ACME
/// module (its tls-alpn-01 table, RFC 8737 §3) when it first provisions a challenge; until
/// then such handshakes fail. A function, so that this module does not depend on ACME.
static VALIDATION: OnceLock<ValidationLookup> = OnceLock::new();

/// Finds the validation certificate for a normalised server name.
type ValidationLookup = fn(&str) -> Option<Arc<CertifiedKey>>;

/// Makes every resolver of the process answer `acme-tls/1` handshakes from `lookup`, which
/// gets the normalised server name. The first call wins; later calls change nothing.
#[cfg_attr(not(feature = "acme"), allow(dead_code))]
pub(crate) fn answer_validations_from(lookup: ValidationLookup) {
    let _ = VALIDATION.set(lookup);
}

/// A host name normalised for lookup: lower case, no trailing dot; `None` when it is not a
/// host name (RFC 1123 labels of letters, digits and hyphens).
pub(crate) fn normalise(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    valid.then_some(name)
}

impl CertificateResolver {
    /// An empty resolver: every handshake fails until a certificate is set.
    pub fn new() -> CertificateResolver {
        CertificateResolver::default()
    }

    /// Serves `key` for `name`: a host name, a wildcard `*.example.com`, or [`DEFAULT_NAME`].
    ///
    /// # Errors
    /// [`Error::InvalidName`] when `name` is none of these.
    pub fn set(&self, name: &str, key: Arc<CertifiedKey>) -> Result<()> {
        let slot = Slot::of(name)?;
        self.update(&slot, Some(&key));
        Ok(())
    }

    /// Stops serving a certificate for `name`.
    pub fn remove(&self, name: &str) {
        if let Ok(slot) = Slot::of(name) {
            self.update(&slot, None);
        }
    }

    /// Replaces the table with a copy where `slot` holds `key` (or nothing).
    fn update(&self, slot: &Slot, key: Option<&Arc<CertifiedKey>>) {
        self.table.rcu(|table| {
            let mut next = Certificates {
                exact: table.exact.clone(),
                wildcard: table.wildcard.clone(),
                default: table.default.clone(),
            };
            let (map, name) = match slot {
                Slot::Exact(name) => (&mut next.exact, name),
                Slot::Wildcard(parent) => (&mut next.wildcard, parent),
                Slot::Default => {
                    next.default = key.cloned();
                    return next;
                }
            };
            match key {
                Some(key) => map.insert(name.clone(), key.clone()),
                None => map.remove(name),
            };
            next
        });
    }

    /// Every certificate held, with the name it is served for (a host name, `*.parent`, or
    /// [`DEFAULT_NAME`]).
    pub fn certificates(&self) -> Vec<(String, Arc<CertifiedKey>)> {
        let table = self.table.load();
        let exact = table
            .exact
            .iter()
            .map(|(name, key)| (name.clone(), key.clone()));
        let wildcard = table
            .wildcard
            .iter()
            .map(|(parent, key)| (format!("*.{parent}"), key.clone()));
        let default = table
            .default
            .iter()
            .map(|key| (DEFAULT_NAME.to_owned(), key.clone()));
        exact.chain(wildcard).chain(default).collect()
    }

    /// The certificate a client that sent `server_name` (SNI) gets.
    pub fn lookup(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let table = self.table.load();
        if let Some(name) = server_name.and_then(normalise) {
            if let Some(key) = table.exact.get(&name) {
                return Some(key.clone());
            }
            if let Some((_, parent)) = name.split_once('.')
                && let Some(key) = table.wildcard.get(parent)
            {
                return Some(key.clone());
            }
        }
        table.default.clone()
    }
}

enum Slot {
    Exact(String),
    Wildcard(String),
    Default,
}

impl Slot {
    fn of(name: &str) -> Result<Slot> {
        let invalid = |expected: &str| Error::InvalidName {
            name: name.to_owned(),
            expected: expected.to_owned(),
        };
        if name == DEFAULT_NAME {
            return Ok(Slot::Default);
        }
        if let Some(parent) = name.strip_prefix("*.") {
            return normalise(parent)
                .map(Slot::Wildcard)
                .ok_or_else(|| invalid("a wildcard host name such as *.example.com"));
        }
        normalise(name)
            .map(Slot::Exact)
            .ok_or_else(|| invalid("a host name, a wildcard such as *.example.com, or DEFAULT"))
    }
}

impl ResolvesServerCert for CertificateResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let validating = client_hello
            .alpn()
            .is_some_and(|mut offered| offered.any(|p| p == ACME_TLS_ALPN));
        if validating {
            // Only a validation certificate answers an ACME validation, never an ordinary one.
            let name = client_hello.server_name().and_then(normalise)?;
            return VALIDATION.get().and_then(|lookup| lookup(&name));
        }
        self.lookup(client_hello.server_name())
    }
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::PrivateKeyDer;

    use super::*;

    fn key(name: &str) -> Arc<CertifiedKey> {
        let generated = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        let der = PrivateKeyDer::try_from(generated.signing_key.serialize_der()).unwrap();
        let signing = rustls::crypto::ring::default_provider()
            .key_provider
            .load_private_key(der)
            .unwrap();
        Arc::new(CertifiedKey::new(
            vec![generated.cert.der().clone()],
            signing,
        ))
    }

    #[test]
    fn exact_then_wildcard_then_default() {
        let resolver = CertificateResolver::new();
        assert!(resolver.lookup(Some("example.com")).is_none());
        let (exact, wild, default) = (key("a.example.com"), key("x.example.com"), key("default"));
        resolver.set("A.Example.COM.", exact.clone()).unwrap();
        resolver.set("*.example.com", wild.clone()).unwrap();
        resolver.set(DEFAULT_NAME, default.clone()).unwrap();
        let is = |found: Option<Arc<CertifiedKey>>, expected: &Arc<CertifiedKey>| {
            Arc::ptr_eq(&found.unwrap(), expected)
        };
        assert!(is(resolver.lookup(Some("a.example.com")), &exact));
        assert!(is(resolver.lookup(Some("A.EXAMPLE.com.")), &exact));
        assert!(is(resolver.lookup(Some("b.example.com")), &wild));
        // One label only: neither the parent itself nor two labels down.
        assert!(is(resolver.lookup(Some("example.com")), &default));
        assert!(is(resolver.lookup(Some("c.b.example.com")), &default));
        assert!(is(resolver.lookup(None), &default));
        // Not host names: never matched, whatever the table holds.
        for bad in ["..", "../etc", "a/b", "", "a..b", "x_y.example.com"] {
            assert!(is(resolver.lookup(Some(bad)), &default), "{bad:?}");
        }
        resolver.remove("a.example.com");
        assert!(is(resolver.lookup(Some("a.example.com")), &wild));
        assert!(resolver.set("bad/name", key("x")).is_err());
    }
}
