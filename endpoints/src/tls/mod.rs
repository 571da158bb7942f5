//! TLS with rustls (feature `tls`): the kinds `ssl:`, `txsni:` and `tls:`, and the parts
//! they share, for servers that build their own TLS listeners.
//!
//! ```text
//! PEM files ──load_certified_key──► CertifiedKey ──set──► CertificateResolver
//!                                                         (exact, *.wildcard, DEFAULT)
//! inner Listener ──TlsAccept (server_config(resolver))──► Listener of TLS connections
//! ```
//!
//! Every TLS kind offers TLS 1.2 and 1.3 only (or 1.3 only with `sslmethod=TLSv1_3_METHOD`),
//! rustls' AEAD cipher suites, and ALPN `h2` then `http/1.1`; each connection's
//! [`TlsInfo`](crate::TlsInfo) carries the SNI, ALPN and version negotiated.

mod accept;
mod certdir;
mod pem;
mod resolver;
mod served;
mod ssl;
mod tlsdir;
mod txsni;

pub use accept::{MinimumVersion, TlsAccept, server_config};
#[cfg(feature = "acme")]
pub(crate) use certdir::{Naming, Store, watch};
pub use pem::load_certified_key;
#[cfg(feature = "acme")]
pub(crate) use pem::{Assembly, assemble};
pub use resolver::{ACME_TLS_ALPN, CertificateResolver, DEFAULT_NAME};
#[cfg(feature = "acme")]
pub(crate) use resolver::{answer_validations_from, normalise};
pub use served::{Handshakes, ServedCertificate, handshakes, served_certificates};
pub use ssl::SslEndpoint;
pub(crate) use ssl::SslKind;
pub use tlsdir::TlsDirEndpoint;
pub(crate) use tlsdir::TlsDirKind;
pub use txsni::TxsniEndpoint;
pub(crate) use txsni::TxsniKind;
