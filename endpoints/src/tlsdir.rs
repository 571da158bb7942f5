//! `tls:DIR`: Twisted's newer TLS server endpoint, serving every certificate found below a
//! directory under the host names its certificate carries.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::descriptor::Descriptor;
use crate::error::{Error, Result};
use crate::listener::Listener;
use crate::registry::{Arguments, BoxFuture, Endpoint, EndpointKind, Registry, ServerEndpoint};
use crate::tcp::{
    BACKLOG_EXPECTED, DEFAULT_BACKLOG, PORT_EXPECTED, TcpEndpoint, parse_backlog, parse_port,
};
use crate::tls::{CertificateResolver, MinimumVersion, TlsAccept, server_config};
use crate::txsni::{Naming, Store, watch};

/// TLS on TCP with the certificates below a directory:
/// `tls:DIR[:port=443][:interface=][:backlog=50]`.
///
/// Follows Twisted's `tls:` server endpoint: every file below DIR (recursively) holding a
/// private key and its certificate serves the DNS names of the certificate's
/// subjectAltName (wildcards included); the first file, in path order, also serves clients
/// without SNI and names no certificate carries. Files are reloaded when they change, as
/// for [`TxsniEndpoint`](crate::TxsniEndpoint); a file that fails to load is logged and its
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
        if !self.tcp.interface().is_unspecified() {
            d = d.with_kwarg("interface", self.tcp.interface().to_string());
        }
        if self.tcp.backlog() != DEFAULT_BACKLOG {
            d = d.with_kwarg("backlog", self.tcp.backlog().to_string());
        }
        d
    }

    fn listen(&self) -> BoxFuture<'_, Result<Listener>> {
        Box::pin(async move {
            let endpoint = self.descriptor().to_string();
            let listen_error = |action: String, message: String| Error::Listen {
                endpoint: endpoint.clone(),
                action,
                hint: String::new(),
                source: std::io::Error::other(message),
            };
            if !self.directory.is_dir() {
                return Err(listen_error(
                    format!(
                        "read the certificate directory {}",
                        self.directory.display()
                    ),
                    "not a directory".into(),
                ));
            }
            let resolver = Arc::new(CertificateResolver::new());
            let mut store = Store::new(self.directory.clone(), Naming::SubjectAltNames);
            store.rescan(&resolver);
            if resolver.lookup(None).is_none() {
                return Err(listen_error(
                    format!("load certificates from {}", self.directory.display()),
                    "no file below it holds a private key with a matching certificate naming a DNS host".into(),
                ));
            }
            let config = server_config(resolver.clone(), MinimumVersion::Tls12)
                .map_err(|message| listen_error("configure TLS".into(), message))?;
            watch(store, Arc::downgrade(&resolver));
            let inner = self.tcp.listen().await?;
            let local = inner.local_addr().clone();
            Ok(Listener::new(
                endpoint,
                local,
                TlsAccept::new(inner, Arc::new(config)),
            ))
        })
    }
}

/// The `tls:` kind.
pub(crate) struct TlsDirKind;

impl EndpointKind for TlsDirKind {
    fn prefix(&self) -> &str {
        "tls"
    }

    fn usage(&self) -> &str {
        "tls:DIRECTORY[:port=443][:interface=ADDRESS][:backlog=50]"
    }

    fn parse(&self, args: Arguments, _: &Registry) -> Result<Endpoint> {
        let bound = args.bind(&["path", "port", "interface", "backlog"])?;
        let directory = bound.required("path")?;
        if directory.is_empty() {
            return Err(bound.invalid("path", directory, "the directory holding the certificates"));
        }
        let port = bound.parse_or("port", 443, PORT_EXPECTED, parse_port)?;
        let backlog =
            bound.parse_or("backlog", DEFAULT_BACKLOG, BACKLOG_EXPECTED, parse_backlog)?;
        let mut tcp = TcpEndpoint::new(port).with_backlog(backlog);
        match bound.get("interface").map(str::trim) {
            None | Some("") => {}
            Some(text) => {
                let interface = text.parse::<IpAddr>().map_err(|_| {
                    bound.invalid(
                        "interface",
                        text,
                        r"an IP address of this machine, such as 127.0.0.1 (escape IPv6 colons: \:\:1)",
                    )
                })?;
                tcp = tcp.with_interface(interface);
            }
        }
        Ok(Endpoint::new(TlsDirEndpoint::new(directory, tcp)))
    }
}
