//! TLS with rustls: the one certificate resolver every TLS kind feeds, PEM loading, and the
//! listener that runs handshakes on top of an inner listener.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::task::JoinSet;

use crate::listener::{Accept, Connection, Listener, TlsInfo};

/// How long a client may take to complete its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at most; beyond that, new connections wait in the kernel's
/// accept queue, so a flood of clients that never finish cannot grow memory without bound.
const MAX_HANDSHAKES: usize = 1024;

/// The name under which the certificate for clients without SNI (and for names with no
/// certificate of their own) is kept, as txsni's `DEFAULT.pem`.
pub const DEFAULT_NAME: &str = "DEFAULT";

/// The ALPN protocol an ACME server offers when it validates a tls-alpn-01 challenge
/// (RFC 8737 §6.2).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

#[derive(Default)]
struct Certificates {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by the parent domain: `*.example.com` is kept under `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

/// RFC 8737 validation certificates of this process, by host name: served by every
/// resolver, so that any TLS listener the ACME server reaches (an IPv4 and an IPv6 one, say)
/// answers, but only to a ClientHello that offers ALPN `acme-tls/1`; such a handshake never
/// gets an ordinary certificate.
static TLS_ALPN01: std::sync::LazyLock<std::sync::RwLock<HashMap<String, Arc<CertifiedKey>>>> =
    std::sync::LazyLock::new(Default::default);

/// Serves `key` to tls-alpn-01 validation handshakes for `name` on every TLS listener of
/// the process (RFC 8737 §3).
///
/// # Errors
/// A message when `name` is not a host name (wildcards cannot be validated this way).
pub(crate) fn set_tls_alpn01(name: &str, key: Arc<CertifiedKey>) -> Result<(), String> {
    let name = normalise(name)
        .ok_or_else(|| format!("{name:?} is not a host name for a tls-alpn-01 challenge"))?;
    if let Ok(mut table) = TLS_ALPN01.write() {
        table.insert(name, key);
    }
    Ok(())
}

/// Stops answering tls-alpn-01 validations for `name`.
pub(crate) fn remove_tls_alpn01(name: &str) {
    if let (Some(name), Ok(mut table)) = (normalise(name), TLS_ALPN01.write()) {
        table.remove(&name);
    }
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

/// A host name normalised for lookup: lower case, no trailing dot; `None` when it is not a
/// host name (RFC 1123 labels of letters, digits and hyphens).
fn normalise(name: &str) -> Option<String> {
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
    /// A message when `name` is none of these.
    pub fn set(&self, name: &str, key: Arc<CertifiedKey>) -> Result<(), String> {
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
    fn of(name: &str) -> Result<Slot, String> {
        if name == DEFAULT_NAME {
            return Ok(Slot::Default);
        }
        if let Some(parent) = name.strip_prefix("*.") {
            return normalise(parent).map(Slot::Wildcard).ok_or_else(|| {
                format!("{name:?} is not a wildcard host name such as *.example.com")
            });
        }
        normalise(name).map(Slot::Exact).ok_or_else(|| {
            format!("{name:?} is not a host name, a wildcard such as *.example.com, or DEFAULT")
        })
    }
}

impl ResolvesServerCert for CertificateResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let validating = client_hello
            .alpn()
            .is_some_and(|mut offered| offered.any(|p| p == ACME_TLS_ALPN));
        if validating {
            let name = client_hello.server_name().and_then(normalise)?;
            return TLS_ALPN01.read().ok()?.get(&name).cloned();
        }
        self.lookup(client_hello.server_name())
    }
}

/// Loads a private key and its certificate chain from PEM files.
///
/// The key may be PKCS#8, PKCS#1 (RSA) or SEC1 (EC); the first key in `key_file` is used.
/// The certificates are read from `cert_file` then `chain_file`, in any order: the leaf is
/// the one whose public key matches the key (txsni's rule), and the others follow it in the
/// order they were read.
///
/// # Errors
/// A message naming the file and what is wrong: unreadable, no key, no certificate, no
/// certificate matching the key, or a key type rustls cannot sign with.
pub fn load_certified_key(
    key_file: &Path,
    cert_file: &Path,
    chain_file: Option<&Path>,
) -> Result<CertifiedKey, String> {
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| {
        format!(
            "{}: no private key in PKCS#8, PKCS#1 or SEC1 PEM form ({e})",
            key_file.display()
        )
    })?;
    let mut certificates = Vec::new();
    for file in std::iter::once(cert_file).chain(chain_file) {
        let found: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(file)
            .map_err(|e| format!("{}: cannot read certificates: {e}", file.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: a certificate is not valid PEM: {e}", file.display()))?;
        if found.is_empty() && chain_file == Some(file) {
            return Err(format!(
                "{}: the chain file holds no certificate",
                file.display()
            ));
        }
        certificates.extend(found);
    }
    assemble(key, certificates).map_err(|fault| match fault {
        Assembly::KeyUnusable(e) => {
            format!(
                "{}: the private key cannot be used: {e}",
                key_file.display()
            )
        }
        Assembly::NoCertificate => {
            format!("{}: no certificate in PEM form", cert_file.display())
        }
        Assembly::NoMatch => format!(
            "{}: no certificate matches the private key in {}",
            cert_file.display(),
            key_file.display()
        ),
    })
}

/// Why [`assemble`] could not pair a key with its certificates.
pub(crate) enum Assembly {
    /// rustls cannot sign with the key; the reason.
    KeyUnusable(String),
    /// There is no certificate at all.
    NoCertificate,
    /// No certificate holds the key's public key.
    NoMatch,
}

/// The served form of a private key and certificates in any order: the leaf (the
/// certificate matching the key, txsni's rule) first, then the others in their order.
pub(crate) fn assemble(
    key: PrivateKeyDer<'static>,
    mut certificates: Vec<CertificateDer<'static>>,
) -> Result<CertifiedKey, Assembly> {
    let signing_key = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| Assembly::KeyUnusable(e.to_string()))?;
    if certificates.is_empty() {
        return Err(Assembly::NoCertificate);
    }
    let leaf = (0..certificates.len())
        .find(|&i| {
            CertifiedKey::new(vec![certificates[i].clone()], signing_key.clone())
                .keys_match()
                .is_ok()
        })
        .ok_or(Assembly::NoMatch)?;
    let leaf_der = certificates.remove(leaf);
    let mut chain = vec![leaf_der];
    chain.extend(certificates);
    Ok(CertifiedKey::new(chain, signing_key))
}

/// The lowest TLS version a listener accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MinimumVersion {
    /// TLS 1.2 and 1.3 (the default).
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

/// A rustls server configuration answering from `resolver`, offering ALPN `h2` and
/// `http/1.1`, with rustls' default cipher suites and TLS 1.2 and 1.3 (or 1.3 only).
///
/// # Errors
/// A message if rustls rejects the protocol versions (a build defect).
pub fn server_config(
    resolver: Arc<CertificateResolver>,
    minimum: MinimumVersion,
) -> Result<rustls::ServerConfig, String> {
    let versions: &[&'static rustls::SupportedProtocolVersion] = match minimum {
        MinimumVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        MinimumVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .map_err(|e| format!("TLS configuration: {e}"))?
    .with_no_client_auth()
    .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Accepts TLS connections: takes plain connections from an inner listener and runs their
/// handshakes concurrently (at most 1,024 at a time, each for at most 10 s), so that a slow
/// or failing client holds up no other. A failed handshake is logged at debug level and
/// dropped.
pub struct TlsAccept {
    inner: Listener,
    acceptor: tokio_rustls::TlsAcceptor,
    handshakes: JoinSet<Option<Connection>>,
}

impl TlsAccept {
    /// TLS over `inner` with `config`.
    pub fn new(inner: Listener, config: Arc<rustls::ServerConfig>) -> TlsAccept {
        TlsAccept {
            inner,
            acceptor: tokio_rustls::TlsAcceptor::from(config),
            handshakes: JoinSet::new(),
        }
    }

    /// A listener for `endpoint` serving TLS with `config` over `inner`, at its address.
    pub fn listener(endpoint: String, inner: Listener, config: rustls::ServerConfig) -> Listener {
        let local = inner.local_addr().clone();
        Listener::new(endpoint, local, TlsAccept::new(inner, Arc::new(config)))
    }

    fn start(&mut self, plain: Connection) {
        let acceptor = self.acceptor.clone();
        self.handshakes.spawn(async move {
            let mut info = plain.info().clone();
            let peer = info.peer.clone();
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(plain)).await
            {
                Ok(Ok(stream)) => stream,
                Ok(Err(err)) => {
                    tracing::debug!(%peer, "TLS handshake failed: {err}");
                    return None;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake took longer than {HANDSHAKE_TIMEOUT:?}");
                    return None;
                }
            };
            let (_, session) = stream.get_ref();
            if session.alpn_protocol() == Some(ACME_TLS_ALPN) {
                // An ACME validation: the handshake itself was the answer (RFC 8737 §3).
                tracing::info!(%peer, sni = ?session.server_name(), "answered a tls-alpn-01 validation");
                let mut stream = stream;
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
                return None;
            }
            let mut tls = TlsInfo::new();
            tls.sni = session.server_name().map(str::to_ascii_lowercase);
            tls.alpn = session.alpn_protocol().map(<[u8]>::to_vec);
            tls.version = match session.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_3) => Some("TLSv1.3"),
                Some(rustls::ProtocolVersion::TLSv1_2) => Some("TLSv1.2"),
                _ => None,
            };
            info.tls = Some(tls);
            Some(Connection::other(stream, info))
        });
    }
}

impl Accept for TlsAccept {
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Connection>> {
        while self.handshakes.len() < MAX_HANDSHAKES {
            match self.inner.poll_accept(cx) {
                Poll::Ready(Ok(plain)) => self.start(plain),
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => break,
            }
        }
        loop {
            match self.handshakes.poll_join_next(cx) {
                Poll::Ready(Some(Ok(Some(connection)))) => return Poll::Ready(Ok(connection)),
                // A failed handshake (logged by its task), or a task that panicked.
                Poll::Ready(Some(_)) => continue,
                Poll::Ready(None) | Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
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
