//! TLS on top of any listener: the rustls server configuration every TLS kind uses, and
//! the listener that runs handshakes concurrently and fills [`TlsInfo`].

use std::io;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::task::JoinSet;

use super::resolver::{ACME_TLS_ALPN, CertificateResolver};
use super::served::{count_handshake, serving};
use crate::error::{Error, Result};
use crate::listener::{Accept, Connection, Listener, TlsInfo};

/// How long a client may take to complete its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at most; beyond that, new connections wait in the kernel's
/// accept queue, so a flood of clients that never finish cannot grow memory without bound.
const MAX_HANDSHAKES: usize = 1024;

/// The lowest TLS version a listener accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MinimumVersion {
    /// TLS 1.2 and 1.3 (the default).
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

/// A rustls server configuration answering from `resolver`, offering ALPN `h2` and
/// `http/1.1`, with rustls' default cipher suites and TLS 1.2 and 1.3 (or 1.3 only). The
/// resolver's certificates count as served from then on (see [`served_certificates`](super::served_certificates)).
///
/// # Errors
/// [`Error::TlsConfig`] if rustls rejects the protocol versions (a build defect).
pub fn server_config(
    resolver: Arc<CertificateResolver>,
    minimum: MinimumVersion,
) -> Result<rustls::ServerConfig> {
    let versions: &[&'static rustls::SupportedProtocolVersion] = match minimum {
        MinimumVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        MinimumVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .map_err(|e| Error::TlsConfig(e.to_string()))?
    .with_no_client_auth()
    .with_cert_resolver(resolver.clone());
    serving(&resolver);
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
                    count_handshake(false);
                    tracing::debug!(%peer, "TLS handshake failed: {err}");
                    return None;
                }
                Err(_) => {
                    count_handshake(false);
                    tracing::debug!(%peer, "TLS handshake took longer than {HANDSHAKE_TIMEOUT:?}");
                    return None;
                }
            };
            count_handshake(true);
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
    fn offer_alpn(&mut self, protocols: &[&[u8]]) {
        let mut config = rustls::ServerConfig::clone(self.acceptor.config());
        config
            .alpn_protocols
            .retain(|offered| offered == ACME_TLS_ALPN || protocols.contains(&offered.as_slice()));
        self.acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    }

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Connection>> {
        let mut failed = None;
        while self.handshakes.len() < MAX_HANDSHAKES {
            match self.inner.poll_accept(cx) {
                Poll::Ready(Ok(plain)) => self.start(plain),
                Poll::Ready(Err(err)) => {
                    failed = Some(err);
                    break;
                }
                Poll::Pending => break,
            }
        }
        // Finished handshakes go out before an accept error: while descriptors run out,
        // they are what will free some.
        loop {
            match self.handshakes.poll_join_next(cx) {
                Poll::Ready(Some(Ok(Some(connection)))) => return Poll::Ready(Ok(connection)),
                // A failed handshake (logged by its task), or a task that panicked.
                Poll::Ready(Some(_)) => continue,
                Poll::Ready(None) | Poll::Pending => {
                    return failed.map_or(Poll::Pending, |err| Poll::Ready(Err(err)));
                }
            }
        }
    }
}
