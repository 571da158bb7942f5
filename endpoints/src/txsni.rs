//! `txsni:DIR:<inner descriptor>`: one certificate per host name from a directory of PEM
//! files, reloaded when the directory changes (txsni's layout, served by rustls).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use crate::descriptor::Descriptor;
use crate::error::{Error, Result};
use crate::listener::Listener;
use crate::registry::{Arguments, BoxFuture, Endpoint, EndpointKind, Registry, ServerEndpoint};
use crate::tls::{
    CertificateResolver, MinimumVersion, TlsAccept, load_certified_key, server_config,
};

/// How often the directory is rescanned when no change notification arrives (file systems
/// without inotify, such as some network mounts).
const RESCAN_EVERY: Duration = Duration::from_secs(30);
/// Changes are read this long after the last notification, so that a file being written
/// is read once it is complete.
const SETTLE: Duration = Duration::from_millis(200);

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

    fn listen(&self) -> BoxFuture<'_, Result<Listener>> {
        Box::pin(async move {
            let endpoint = self.descriptor().to_string();
            let listen_error = |action: &str, source: std::io::Error| Error::Listen {
                endpoint: endpoint.clone(),
                action: action.to_owned(),
                hint: String::new(),
                source,
            };
            if !self.directory.is_dir() {
                return Err(listen_error(
                    &format!(
                        "read the certificate directory {}",
                        self.directory.display()
                    ),
                    std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
                ));
            }
            let resolver = Arc::new(CertificateResolver::new());
            let mut store = Store::new(self.directory.clone());
            store.rescan(&resolver);
            let config = server_config(resolver.clone(), MinimumVersion::Tls12)
                .map_err(|message| listen_error("configure TLS", std::io::Error::other(message)))?;
            watch(store, Arc::downgrade(&resolver));
            let inner = self.inner.listen().await?;
            let local = inner.local_addr().clone();
            Ok(Listener::new(
                endpoint,
                local,
                TlsAccept::new(inner, Arc::new(config)),
            ))
        })
    }
}

/// What was loaded from the directory: each file's name, modification time and size.
struct Store {
    directory: PathBuf,
    seen: HashMap<PathBuf, (String, Option<SystemTime>, u64)>,
}

impl Store {
    fn new(directory: PathBuf) -> Store {
        Store {
            directory,
            seen: HashMap::new(),
        }
    }

    /// Loads new and changed `*.pem` files into `resolver` and drops removed ones.
    fn rescan(&mut self, resolver: &CertificateResolver) {
        let entries = match std::fs::read_dir(&self.directory) {
            Ok(entries) => entries,
            Err(err) => {
                tracing::warn!(directory = %self.directory.display(), "cannot read the certificate directory: {err}; keeping the certificates loaded");
                return;
            }
        };
        let mut present = HashMap::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".pem"))
                .map(str::to_owned)
            else {
                continue;
            };
            let Ok(metadata) = std::fs::metadata(&path) else {
                continue;
            };
            if !metadata.is_file() {
                continue;
            }
            let stamp = (name.clone(), metadata.modified().ok(), metadata.len());
            present.insert(path.clone(), ());
            if self.seen.get(&path) == Some(&stamp) {
                continue;
            }
            // Remember the stamp even when loading fails, so a broken file is reported once
            // per change, not at every rescan.
            self.seen.insert(path.clone(), stamp);
            match load_certified_key(&path, &path, None)
                .and_then(|key| resolver.set(&name, Arc::new(key)))
            {
                Ok(()) => tracing::info!(file = %path.display(), name, "certificate loaded"),
                Err(reason) => tracing::warn!(
                    file = %path.display(),
                    "certificate not loaded, the previous one for {name} stays in service: {reason}"
                ),
            }
        }
        let removed: Vec<PathBuf> = self
            .seen
            .keys()
            .filter(|p| !present.contains_key(*p))
            .cloned()
            .collect();
        for path in removed {
            if let Some((name, _, _)) = self.seen.remove(&path) {
                resolver.remove(&name);
                tracing::info!(file = %path.display(), name, "certificate file removed; no longer serving it");
            }
        }
    }
}

/// Keeps `store` current until the resolver is gone (its listener dropped).
fn watch(mut store: Store, resolver: Weak<CertificateResolver>) {
    let (changed_tx, mut changed) = tokio::sync::mpsc::channel::<()>(1);
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            let _ = changed_tx.try_send(());
        }
    })
    .and_then(|mut watcher| {
        notify::Watcher::watch(
            &mut watcher,
            &store.directory,
            notify::RecursiveMode::NonRecursive,
        )
        .map(|()| watcher)
    });
    let watcher = match watcher {
        Ok(watcher) => Some(watcher),
        Err(err) => {
            tracing::warn!(directory = %store.directory.display(), "no change notifications ({err}); rescanning every {RESCAN_EVERY:?}");
            None
        }
    };
    tokio::spawn(async move {
        let _watcher = watcher;
        loop {
            let notified = tokio::time::timeout(RESCAN_EVERY, changed.recv()).await;
            if let Ok(Some(())) = notified {
                // Let a burst of writes settle, and drain what it queued.
                tokio::time::sleep(SETTLE).await;
                while changed.try_recv().is_ok() {}
            }
            let Some(resolver) = resolver.upgrade() else {
                return;
            };
            store.rescan(&resolver);
        }
    });
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
        Ok(Endpoint::new(TxsniEndpoint::new(directory, inner)))
    }
}
