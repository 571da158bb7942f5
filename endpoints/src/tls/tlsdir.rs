//! `tls:DIR`: Twisted's newer TLS server endpoint, serving every certificate found below a
//! directory under the host names its certificate carries.

use std::path::{Path, PathBuf};

use super::certdir::{Naming, listen_directory};
use crate::descriptor::Descriptor;
use crate::error::Result;
use crate::listener::Listener;
use crate::registry::{Arguments, BoxFuture, Endpoint, EndpointKind, Registry, ServerEndpoint};
use crate::tcp::{DEFAULT_BACKLOG, TcpEndpoint, tcp_from_bound};

/// TLS on TCP with the certificates below a directory:
/// `tls:DIR[:port=443][:interface=][:backlog=1024]`.
///
/// Follows Twisted's `tls:` server endpoint: every file below DIR (recursively) holding a
/// private key and its certificate serves the DNS names of the certificate's
/// subjectAltName (wildcards included); the first file, in path order, also serves clients
/// without SNI and names no certificate carries. Files are reloaded when they change, as
/// for [`TxsniEndpoint`](super::TxsniEndpoint); a file that fails to load is logged and its
/// previous certificate stays in service. Files whose names start with `.` are skipped.
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
        // Only 0.0.0.0 is the default: `::` (every IPv6 and IPv4 address) must be printed, or
        // it reads back as IPv4 only.
        if self.tcp.interface() != std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED) {
            d = d.with_kwarg("interface", self.tcp.interface().to_string());
        }
        if self.tcp.backlog() != DEFAULT_BACKLOG {
            d = d.with_kwarg("backlog", self.tcp.backlog().to_string());
        }
        d
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

/// The `tls:` kind.
pub(crate) struct TlsDirKind;

impl EndpointKind for TlsDirKind {
    fn prefix(&self) -> &str {
        "tls"
    }

    fn usage(&self) -> &str {
        "tls:DIRECTORY[:port=443][:interface=ADDRESS][:backlog=1024]"
    }

    fn parse(&self, args: Arguments, _: &Registry) -> Result<Endpoint> {
        let bound = args.bind(&["path", "port", "interface", "backlog"])?;
        let directory = bound.required("path")?;
        if directory.is_empty() {
            return Err(bound.invalid("path", directory, "the directory holding the certificates"));
        }
        let tcp = tcp_from_bound(&bound, Some(443))?;
        Ok(Endpoint::new(TlsDirEndpoint::new(directory, tcp)))
    }
}
