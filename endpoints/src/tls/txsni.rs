//! `txsni:DIR:<inner descriptor>`: one certificate per host name from a directory of PEM
//! files, reloaded when the directory changes (txsni's layout, served by rustls).

use std::path::{Path, PathBuf};

use super::certdir::{Naming, expand_home, listen_directory};
use crate::descriptor::Descriptor;
use crate::error::Result;
use crate::listener::Listener;
use crate::registry::{Arguments, BoxFuture, Endpoint, EndpointKind, Registry, ServerEndpoint};

/// TLS with a certificate per host name: `txsni:DIR:<inner descriptor>`, such as
/// `txsni:/etc/certs:tcp:443`.
///
/// Follows txsni: DIR holds `<hostname>.pem` files, each with the private key, the leaf
/// certificate and any chain, in any order (the leaf is the certificate matching the key);
/// `DEFAULT.pem` serves clients that send no server name. Deliberate differences from
/// txsni: DEFAULT also serves names with no file of their own (txsni refuses them); names
/// match case-insensitively and without a trailing dot; `*.example.com.pem` serves any one
/// label under example.com; files are read once and again when they change (inotify, and a
/// rescan every 30 s as a fallback), never during a handshake, so a client's server name
/// never reaches the file system. A file that fails to load (garbage, half-written, key and
/// certificate that do not match) is logged with its name and the reason, and the
/// certificate previously loaded for that name stays in service. A removed file stops
/// serving its name.
#[derive(Clone, Debug)]
pub struct TxsniEndpoint {
    directory: PathBuf,
    inner: Endpoint,
}

impl TxsniEndpoint {
    /// TLS with the certificates in `directory` on top of `inner`.
    pub fn new(directory: impl Into<PathBuf>, inner: Endpoint) -> TxsniEndpoint {
        TxsniEndpoint {
            directory: directory.into(),
            inner,
        }
    }

    /// The certificate directory.
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// The endpoint TLS runs on.
    pub fn inner(&self) -> &Endpoint {
        &self.inner
    }
}

impl PartialEq for TxsniEndpoint {
    fn eq(&self, other: &TxsniEndpoint) -> bool {
        self.directory == other.directory && self.inner == other.inner
    }
}

impl ServerEndpoint for TxsniEndpoint {
    fn descriptor(&self) -> Descriptor {
        Descriptor::new("txsni")
            .with_arg(self.directory.to_string_lossy())
            .with_inner(&self.inner.descriptor())
    }

    fn sockets(&self) -> Vec<Endpoint> {
        self.inner.sockets()
    }

    fn background(&self) -> Result<Vec<BoxFuture<'static, ()>>> {
        self.inner.background()
    }

    fn listen(&self) -> BoxFuture<'_, Result<Listener>> {
        Box::pin(listen_directory(
            self.descriptor().to_string(),
            &self.directory,
            Naming::FileName,
            self.inner.listen(),
        ))
    }
}

/// The `txsni:` kind.
pub(crate) struct TxsniKind;

impl EndpointKind for TxsniKind {
    fn prefix(&self) -> &str {
        "txsni"
    }

    fn usage(&self) -> &str {
        "txsni:DIRECTORY:<endpoint descriptor>, such as txsni:/etc/certs:tcp:443"
    }

    fn parse(&self, mut args: Arguments, registry: &Registry) -> Result<Endpoint> {
        let directory = args
            .next_positional()
            .filter(|d| !d.is_empty())
            .ok_or_else(|| args.missing("DIRECTORY"))?;
        let inner = args.into_inner_endpoint("endpoint descriptor", registry)?;
        Ok(Endpoint::new(TxsniEndpoint::new(
            expand_home(directory),
            inner,
        )))
    }
}
