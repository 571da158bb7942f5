//! The built-in kinds that need no TLS: `tcp:`, `tcp6:`, `unix:`, `systemd:` and
//! `haproxy:`, and the default registry, which holds every built-in kind the enabled
//! features provide.

use crate::registry::Registry;

pub use crate::haproxy::{
    HaproxyEndpoint, Header as ProxyHeader, Parsed as ProxyParsed, parse as parse_proxy_header,
};
pub use crate::systemd::{SocketDomain, SocketSelector, SystemdEndpoint};
pub use crate::tcp::TcpEndpoint;
pub use crate::unix::UnixEndpoint;

impl Default for Registry {
    /// Every built-in kind: `tcp`, `tcp6`, `unix`, `systemd`, `haproxy`; `ssl`, `txsni`, `tls` with
    /// feature `tls`; `txacme`, `le`, `lets` with feature `acme`.
    fn default() -> Registry {
        let mut registry = Registry::empty();
        registry.register(crate::tcp::TcpKind);
        registry.register(crate::tcp::Tcp6Kind);
        registry.register(crate::unix::UnixKind);
        registry.register(crate::systemd::SystemdKind);
        registry.register(crate::haproxy::HaproxyKind);
        #[cfg(feature = "tls")]
        {
            registry.register(crate::tls::SslKind);
            registry.register(crate::tls::TxsniKind);
            registry.register(crate::tls::TlsDirKind);
        }
        #[cfg(feature = "acme")]
        {
            registry.register(crate::acme::AcmeKind::TXACME);
            registry.register(crate::acme::AcmeKind::LE);
            registry.register(crate::acme::AcmeKind::LETS);
        }
        registry
    }
}
