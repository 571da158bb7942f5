//! `tls:DIR`: Twisted's newer TLS server endpoint, serving every certificate found below a
//! directory under the host names its certificate carries.

use std::path::{Path, PathBuf};

use super::certdir::{Naming, expand_home, listen_directory};
use crate::descriptor::Descriptor;
use crate::error::Result;
use crate::listener::Listener;
use crate::registry::{Arguments, BoxFuture, Endpoint, EndpointKind, Registry, ServerEndpoint};
use crate::tcp::{DEFAULT_BACKLOG, TcpEndpoint, tcp_from_bound};

/// TLS on TCP with the certificates below a directory:
/// `tls:DIR[:port=443][:backlog=1024][:interface=::]` (Twisted's positional order).
///
/// Follows Twisted's `tls:` server endpoint: the private keys and certificates of every
/// `*.pem` file below DIR (recursively; a symbolic link loop is walked once) are pooled,
/// each key is paired with the certificate holding its public key (the newest, if several
/// do), and the leaf is served with the chain its issuers in the pool form, under the DNS
/// names of its subjectAltName (wildcards included). So certbot's layout works as it is:
/// `live/NAME/privkey.pem` beside `fullchain.pem` (or `cert.pem` and `chain.pem`). The
/// first key, in path order, also serves clients without SNI and names no certificate
/// carries. It listens on `::` (IPv6 and IPv4) unless `interface=` says otherwise; a
/// leading `~` in DIR is the home directory. Files are reloaded when they change, as for
/// [`TxsniEndpoint`](super::TxsniEndpoint); a file that fails to parse is logged and what
/// it held before stays in the pool. Other files (`site.pem.bak`) and hidden files are
/// not read. Deliberately unlike Twisted, a directory that yields no certificate stops
/// start-up with an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsDirEndpoint {
    directory: PathBuf,
    tcp: TcpEndpoint,
}

impl TlsDirEndpoint {
    /// TLS on `tcp` with the certificates below `directory`.
    pub fn new(directory: impl Into<PathBuf>, tcp: TcpEndpoint) -> TlsDirEndpoint {
        TlsDirEndpoint {
            directory: directory.into(),
            tcp,
        }
    }

    /// The certificate directory.
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// The TCP endpoint TLS runs on.
    pub fn tcp(&self) -> &TcpEndpoint {
        &self.tcp
    }
}

impl ServerEndpoint for TlsDirEndpoint {
    fn descriptor(&self) -> Descriptor {
        let mut d = Descriptor::new("tls").with_arg(self.directory.to_string_lossy());
        if self.tcp.port() != 443 {
            d = d.with_kwarg("port", self.tcp.port().to_string());
        }
        // `::` (every IPv6 and IPv4 address) is the default, as in Twisted.
        if self.tcp.interface() != DEFAULT_INTERFACE {
            d = d.with_kwarg("interface", self.tcp.interface().to_string());
        }
        if self.tcp.backlog() != DEFAULT_BACKLOG {
            d = d.with_kwarg("backlog", self.tcp.backlog().to_string());
        }
        d
    }

    fn sockets(&self) -> Vec<Endpoint> {
        vec![Endpoint::new(self.tcp.clone())]
    }

    fn listen(&self) -> BoxFuture<'_, Result<Listener>> {
        Box::pin(listen_directory(
            self.descriptor().to_string(),
            &self.directory,
            Naming::SubjectAltNames,
            self.tcp.listen(),
        ))
    }
}

/// Where `tls:` listens unless told: `::`, every IPv6 and IPv4 address, as Twisted's
/// `tls:` does.
const DEFAULT_INTERFACE: std::net::IpAddr = std::net::IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED);

/// The `tls:` kind.
pub(crate) struct TlsDirKind;

impl EndpointKind for TlsDirKind {
    fn prefix(&self) -> &str {
        "tls"
    }

    fn usage(&self) -> &str {
        r"tls:DIRECTORY[:port=443][:backlog=1024][:interface=\:\:]"
    }

    fn parse(&self, args: Arguments, _: &Registry) -> Result<Endpoint> {
        // Twisted's order: path, port, backlog, interface.
        let bound = args.bind(&["path", "port", "backlog", "interface"])?;
        let directory = bound.required("path")?;
        if directory.is_empty() {
            return Err(bound.invalid("path", directory, "the directory holding the certificates"));
        }
        let tcp = tcp_from_bound(&bound, Some(443), DEFAULT_INTERFACE)?;
        Ok(Endpoint::new(TlsDirEndpoint::new(
            expand_home(directory),
            tcp,
        )))
    }
}
