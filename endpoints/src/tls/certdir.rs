//! A certificate directory: the PEM files of txsni's layout (`<name>.pem`) or of Twisted's
//! `tls:` (any file, named by its subjectAltName), loaded into a [`CertificateResolver`]
//! and kept current by a watcher (inotify, with a periodic rescan as a fallback). Shared
//! by `txsni:`, `tls:` and the ACME kinds.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::accept::{MinimumVersion, TlsAccept, server_config};
use super::pem::load_certified_key;
use super::resolver::{CertificateResolver, DEFAULT_NAME};
use crate::error::{Error, Result};
use crate::listener::Listener;

/// How often the directory is rescanned when no change notification arrives (file systems
/// without inotify, such as some network mounts).
const RESCAN_EVERY: Duration = Duration::from_secs(30);
/// Changes are read this long after the last notification, so that a file being written
/// is read once it is complete.
const SETTLE: Duration = Duration::from_millis(200);

/// Loads `directory`, keeps it watched, and serves TLS from it over `inner` (shared by
/// `txsni:` and `tls:`). With [`Naming::SubjectAltNames`] a directory yielding no
/// certificate at all is an error, since nothing could be served.
pub(crate) async fn listen_directory(
    endpoint: String,
    directory: &Path,
    naming: Naming,
    inner: impl std::future::Future<Output = Result<Listener>>,
) -> Result<Listener> {
    let listen_error = |action: String, message: &str| Error::Listen {
        endpoint: endpoint.clone(),
        action,
        hint: String::new(),
        source: std::io::Error::other(message.to_owned()),
    };
    if !directory.is_dir() {
        return Err(listen_error(
            format!("read the certificate directory {}", directory.display()),
            "not a directory",
        ));
    }
    let resolver = Arc::new(CertificateResolver::new());
    let mut store = Store::new(directory.to_path_buf(), naming);
    store.rescan(&resolver);
    if naming == Naming::SubjectAltNames && resolver.lookup(None).is_none() {
        return Err(listen_error(
            format!("load certificates from {}", directory.display()),
            "no file below it holds a private key with a matching certificate naming a DNS host",
        ));
    }
    let config = server_config(resolver.clone(), MinimumVersion::Tls12)
        .map_err(|err| listen_error("configure TLS".into(), &err.to_string()))?;
    watch(store, Arc::downgrade(&resolver), None);
    let inner = inner.await?;
    Ok(TlsAccept::listener(endpoint, inner, config))
}

/// `~` or `~/...` with the user's home directory (`HOME`), as txsni's and Twisted's
/// `os.path.expanduser` read a directory; any other path as it is.
pub(crate) fn expand_home(path: impl Into<String>) -> String {
    let path = path.into();
    let home = || std::env::var("HOME").ok().filter(|h| !h.is_empty());
    match path.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => match home() {
            Some(home) => format!("{}{rest}", home.trim_end_matches('/')),
            None => path,
        },
        _ => path,
    }
}

/// How the files of a certificate directory name the hosts they serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Naming {
    /// txsni: `<hostname>.pem` in the directory itself; `DEFAULT.pem` is the default.
    FileName,
    /// Twisted's `tls:`: the keys and certificates of every `*.pem` file below the
    /// directory, pooled and paired by public key (so certbot's `live/NAME/privkey.pem`
    /// with `fullchain.pem` works), each leaf served under its subjectAltName DNS names
    /// with the chain its issuers form; the first key (in path order) is the default.
    SubjectAltNames,
}

/// What identifies a version of a file: its modification time and size.
type Stamp = (Option<SystemTime>, u64);

/// One loaded file: its stamp when read, the names it serves, and its certificate (the
/// last one that loaded, which stays in service while a newer version fails).
struct Loaded {
    stamp: Stamp,
    names: Vec<String>,
    key: Option<Arc<rustls::sign::CertifiedKey>>,
    /// With [`Naming::SubjectAltNames`]: the file's keys and certificates (the last
    /// version that parsed), for the pool.
    pem: Option<Arc<PemObjects>>,
}

impl Loaded {
    /// A file that serves no certificate of its own: empty, failed to load, or (with
    /// [`Naming::SubjectAltNames`]) contributing `pem` to the pool.
    fn without_key(stamp: Stamp, pem: Option<Arc<PemObjects>>) -> Loaded {
        Loaded {
            stamp,
            names: Vec::new(),
            key: None,
            pem,
        }
    }
}

/// The private keys and certificates of one PEM file, in file order.
#[derive(Default)]
struct PemObjects {
    keys: Vec<PrivateKeyDer<'static>>,
    certificates: Vec<CertificateDer<'static>>,
}

/// What was loaded from the directory, by file.
pub(crate) struct Store {
    directory: PathBuf,
    naming: Naming,
    files: std::collections::BTreeMap<PathBuf, Loaded>,
    /// With [`Naming::SubjectAltNames`]: the names the pool serves now.
    served: std::collections::BTreeSet<String>,
}

impl Store {
    pub(crate) fn new(directory: PathBuf, naming: Naming) -> Store {
        Store {
            directory,
            naming,
            files: std::collections::BTreeMap::new(),
            served: std::collections::BTreeSet::new(),
        }
    }

    /// The candidate files with their stamps, in path order.
    fn list(&self) -> Option<Vec<(PathBuf, Stamp)>> {
        let mut found = Vec::new();
        let mut pending = vec![self.directory.clone()];
        // Directories seen, by device and inode: a symbolic link loop is walked once.
        let mut seen = std::collections::HashSet::new();
        while let Some(dir) = pending.pop() {
            if let Ok(metadata) = std::fs::metadata(&dir) {
                use std::os::unix::fs::MetadataExt;
                if !seen.insert((metadata.dev(), metadata.ino())) {
                    continue;
                }
            }
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(err) if dir == self.directory => {
                    tracing::warn!(directory = %dir.display(), "cannot read the certificate directory: {err}; keeping the certificates loaded");
                    return None;
                }
                Err(_) => continue,
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(metadata) = std::fs::metadata(&path) else {
                    continue;
                };
                if metadata.is_dir() {
                    if self.naming == Naming::SubjectAltNames {
                        pending.push(path);
                    }
                    continue;
                }
                // Only `*.pem`, as Twisted and txsni read: a `site.pem.bak` beside
                // `site.pem` is not a certificate in service. Hidden files are locks and
                // files being written.
                let wanted = path.extension().is_some_and(|e| e == "pem")
                    && !path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with('.'));
                if metadata.is_file() && wanted {
                    found.push((path, (metadata.modified().ok(), metadata.len())));
                }
            }
        }
        found.sort();
        Some(found)
    }

    /// Loads new and changed files into `resolver` and drops removed ones.
    /// Returns whether anything changed.
    pub(crate) fn rescan(&mut self, resolver: &CertificateResolver) -> bool {
        let Some(found) = self.list() else {
            return false;
        };
        let mut changed = false;
        let present: std::collections::BTreeSet<&PathBuf> = found.iter().map(|(p, _)| p).collect();
        let removed: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|p| !present.contains(p))
            .cloned()
            .collect();
        for path in removed {
            if let Some(gone) = self.files.remove(&path) {
                for name in &gone.names {
                    resolver.remove(name);
                }
                tracing::info!(file = %path.display(), "certificate file removed; no longer serving it");
                changed = true;
            }
        }
        for (path, stamp) in found {
            if self
                .files
                .get(&path)
                .is_some_and(|loaded| loaded.stamp == stamp)
            {
                continue;
            }
            changed = true;
            let previous = self.files.remove(&path);
            // The stamp is remembered even when loading fails, so a broken file is
            // reported once per change, not at every rescan.
            if stamp.1 == 0 {
                // An empty file asks for a certificate (txacme's convention): nothing to
                // serve yet, and nothing wrong.
                tracing::debug!(file = %path.display(), "empty certificate file: waiting for a certificate");
                if let Some(previous) = previous {
                    for name in &previous.names {
                        resolver.remove(name);
                    }
                }
                self.files.insert(path, Loaded::without_key(stamp, None));
                continue;
            }
            if self.naming == Naming::SubjectAltNames {
                let pem = match read_pem(&path) {
                    Ok(pem) => Some(Arc::new(pem)),
                    Err(reason) => {
                        tracing::warn!(
                            file = %path.display(),
                            "certificate not loaded, the previous one for this file stays in service: {reason}"
                        );
                        previous.and_then(|p| p.pem)
                    }
                };
                self.files.insert(path, Loaded::without_key(stamp, pem));
                continue;
            }
            let loaded = match self.load(&path) {
                Ok((names, key)) => {
                    tracing::info!(file = %path.display(), names = %names.join(", "), "certificate loaded");
                    if let Some(previous) = &previous {
                        for name in previous.names.iter().filter(|n| !names.contains(n)) {
                            resolver.remove(name);
                        }
                    }
                    Loaded {
                        stamp,
                        names,
                        key: Some(Arc::new(key)),
                        pem: None,
                    }
                }
                Err(reason) => {
                    tracing::warn!(
                        file = %path.display(),
                        "certificate not loaded, the previous one for this file stays in service: {reason}"
                    );
                    match previous {
                        Some(previous) => Loaded { stamp, ..previous },
                        None => Loaded::without_key(stamp, None),
                    }
                }
            };
            self.files.insert(path, loaded);
        }
        if changed {
            self.publish(resolver);
        }
        changed
    }

    fn load(
        &self,
        path: &Path,
    ) -> std::result::Result<(Vec<String>, rustls::sign::CertifiedKey), String> {
        let key = load_certified_key(path, path, None).map_err(|e| e.to_string())?;
        let names = match self.naming {
            Naming::FileName => {
                let stem = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".pem"));
                vec![
                    stem.ok_or_else(|| format!("{}: not a <hostname>.pem file", path.display()))?
                        .to_owned(),
                ]
            }
            // Pooled instead: see `publish_pooled`.
            Naming::SubjectAltNames => Vec::new(),
        };
        Ok((names, key))
    }

    /// Puts every loaded certificate in the resolver; for `tls:`, the first file's is also
    /// the default.
    fn publish(&mut self, resolver: &CertificateResolver) {
        if self.naming == Naming::SubjectAltNames {
            self.publish_pooled(resolver);
            return;
        }
        let mut default_set = false;
        for (path, loaded) in &self.files {
            let Some(key) = &loaded.key else { continue };
            for name in &loaded.names {
                if let Err(reason) = resolver.set(name, key.clone()) {
                    tracing::warn!(file = %path.display(), "{reason}");
                }
            }
            if self.naming == Naming::SubjectAltNames && !default_set {
                let _ = resolver.set(DEFAULT_NAME, key.clone());
                default_set = true;
            }
        }
    }

    /// Pairs every key of every file with the certificate holding its public key (the
    /// newest, if several do), builds each leaf's chain from the pool by issuer, and
    /// serves it under the leaf's DNS names; names no longer served are removed.
    fn publish_pooled(&mut self, resolver: &CertificateResolver) {
        let files: Vec<(&PathBuf, &PemObjects)> = self
            .files
            .iter()
            .filter_map(|(path, loaded)| loaded.pem.as_deref().map(|pem| (path, pem)))
            .collect();
        let mut pool: Vec<Pooled> = Vec::new();
        for (_, pem) in &files {
            for der in &pem.certificates {
                if pool.iter().all(|known| known.der != *der)
                    && let Some(pooled) = Pooled::parse(der)
                {
                    pool.push(pooled);
                }
            }
        }
        let provider = rustls::crypto::ring::default_provider();
        let mut served = std::collections::BTreeSet::new();
        let mut default_set = false;
        for (path, pem) in &files {
            for key in &pem.keys {
                let Ok(signing) = provider.key_provider.load_private_key(key.clone_key()) else {
                    tracing::warn!(file = %path.display(), "a private key rustls cannot sign with; skipped");
                    continue;
                };
                let leaf = pool
                    .iter()
                    .filter(|c| {
                        rustls::sign::CertifiedKey::new(vec![c.der.clone()], signing.clone())
                            .keys_match()
                            .is_ok()
                    })
                    .max_by_key(|c| c.not_after);
                let Some(leaf) = leaf else {
                    tracing::warn!(file = %path.display(), "no certificate below the directory matches a private key in this file");
                    continue;
                };
                if leaf.names.is_empty() {
                    tracing::warn!(file = %path.display(), "the certificate for a key in this file names no DNS host in subjectAltName");
                    continue;
                }
                let key = Arc::new(rustls::sign::CertifiedKey::new(chain(leaf, &pool), signing));
                for name in &leaf.names {
                    match resolver.set(name, key.clone()) {
                        Ok(()) => {
                            served.insert(name.clone());
                        }
                        Err(reason) => tracing::warn!(file = %path.display(), "{reason}"),
                    }
                }
                if !default_set {
                    let _ = resolver.set(DEFAULT_NAME, key.clone());
                    default_set = true;
                }
            }
        }
        for gone in self.served.difference(&served) {
            resolver.remove(gone);
        }
        if !default_set {
            resolver.remove(DEFAULT_NAME);
        }
        self.served = served;
    }

    pub(crate) fn directory(&self) -> &Path {
        &self.directory
    }
}

/// A certificate of the pool, with what pairing and chaining need.
struct Pooled {
    der: CertificateDer<'static>,
    subject: Vec<u8>,
    issuer: Vec<u8>,
    not_after: i64,
    names: Vec<String>,
}

impl Pooled {
    fn parse(der: &CertificateDer<'static>) -> Option<Pooled> {
        let (_, certificate) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
        Some(Pooled {
            der: der.clone(),
            subject: certificate.subject().as_raw().to_vec(),
            issuer: certificate.issuer().as_raw().to_vec(),
            not_after: certificate.validity().not_after.timestamp(),
            names: dns_names(der.as_ref()).unwrap_or_default(),
        })
    }
}

/// `leaf` then its issuers from `pool`, each the issuer of the one before, until a
/// self-signed certificate (a root, left out as clients have it) or one whose issuer is
/// not in the pool; at most 8 deep.
fn chain(leaf: &Pooled, pool: &[Pooled]) -> Vec<CertificateDer<'static>> {
    let mut chain = vec![leaf.der.clone()];
    let mut current = leaf;
    while chain.len() < 9 && current.subject != current.issuer {
        let Some(issuer) = pool
            .iter()
            .filter(|c| c.subject == current.issuer && c.subject != c.issuer)
            .find(|c| !chain.contains(&c.der))
        else {
            break;
        };
        chain.push(issuer.der.clone());
        current = issuer;
    }
    chain
}

/// The private keys and certificates of a PEM file.
fn read_pem(path: &Path) -> std::result::Result<PemObjects, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    let mut pem = PemObjects::default();
    for item in rustls::pki_types::pem::PemObject::pem_slice_iter(&text) {
        pem.keys
            .push(item.map_err(|e| format!("a private key is not valid PEM: {e}"))?);
    }
    for item in CertificateDer::pem_slice_iter(&text) {
        pem.certificates
            .push(item.map_err(|e| format!("a certificate is not valid PEM: {e}"))?);
    }
    if pem.keys.is_empty() && pem.certificates.is_empty() {
        return Err("no private key and no certificate in PEM form".into());
    }
    Ok(pem)
}

/// The DNS names in a certificate's subjectAltName extension.
fn dns_names(der: &[u8]) -> std::result::Result<Vec<String>, String> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let Some(san) = certificate
        .subject_alternative_name()
        .map_err(|e| e.to_string())?
    else {
        return Ok(Vec::new());
    };
    Ok(san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::DNSName(dns) => Some(dns.to_string()),
            _ => None,
        })
        .collect())
}

/// Whether a notification may mean a certificate file changed: not a mere access (reading
/// the directory or a file, as every rescan does, raises those), and not only hidden files
/// (the lock, temporary files of an atomic write before their rename).
fn is_change(event: &notify::Event) -> bool {
    !matches!(event.kind, notify::EventKind::Access(_))
        && (event.paths.is_empty()
            || event.paths.iter().any(|path| {
                !path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.'))
            }))
}

/// Keeps `store` current until the resolver is gone (its listener dropped), and tells
/// `changed` (if any) after each change notification was read.
pub(crate) fn watch(
    mut store: Store,
    resolver: Weak<CertificateResolver>,
    changed_hook: Option<Arc<tokio::sync::Notify>>,
) {
    let (changed_tx, mut changed) = tokio::sync::mpsc::channel::<()>(1);
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.as_ref().is_ok_and(is_change) {
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
            tracing::warn!(directory = %store.directory().display(), "no change notifications ({err}); rescanning every {RESCAN_EVERY:?}");
            None
        }
    };
    tokio::spawn(async move {
        let _watcher = watcher;
        loop {
            let notified = tokio::time::timeout(RESCAN_EVERY, changed.recv()).await;
            let was_notified = matches!(notified, Ok(Some(())));
            if was_notified {
                // Let a burst of writes settle, and drain what it queued.
                tokio::time::sleep(SETTLE).await;
                while changed.try_recv().is_ok() {}
            }
            let Some(resolver) = resolver.upgrade() else {
                return;
            };
            let changed_files = store.rescan(&resolver);
            drop(resolver);
            if was_notified
                && changed_files
                && let Some(hook) = &changed_hook
            {
                hook.notify_one();
            }
        }
    });
}
