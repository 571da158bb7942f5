//! A server's certificate directory kept as a copy of a [`SharedStore`] (such as the
//! shared store of feature `redis`): the certificates, and the answers to pending challenges
//! as the hidden files that every resolver and the http-01 handler already read. The shared
//! store is thus never on a handshake's or a request's path, and a server cut off from it
//! goes on serving what it last copied.

use std::time::Duration;

use super::challenge::is_token;
use super::shared::{Change, SharedStore, StoreError, random_token};
use super::store::{CertificateFacts, CertificateStore, certified_key, is_host_name};

/// Copies a [`SharedStore`] into a [`CertificateStore`] directory, and keeps copying its
/// changes.
///
/// Nothing from Redis is trusted as a path: a name that is not a host name, a challenge of
/// another kind, or a key that is neither a token nor a host name is logged and skipped. A
/// certificate that does not parse (no key, no matching certificate) is logged and the
/// directory keeps its file, as the certificate directory's watcher does with a bad file.
/// Files are only written when their contents change, atomically (see
/// [`CertificateStore`]).
///
/// A running mirror is a member of the fleet ([`SharedStore::join`]) and acknowledges each
/// challenge answer once its file is written ([`SharedStore::ack`]), so that the server that
/// placed the order knows when every server can answer the validation.
#[derive(Debug, Clone)]
pub struct Mirror<S> {
    store: S,
    directory: CertificateStore,
    member: String,
}

/// How long a member's entry outlives its last renewal (renewed every third of it).
const MEMBER_TTL: Duration = Duration::from_secs(15);
/// How long an acknowledgement is kept (it is removed with the answer before then).
const ACK_TTL: Duration = Duration::from_secs(600);

/// What one pass of [`Mirror::load`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Copied {
    /// Certificates written because they were new or changed.
    pub certificates: usize,
    /// Challenge answers in place after the pass.
    pub answers: usize,
    /// Entries skipped as unusable (each was logged).
    pub skipped: usize,
    /// Names whose certificate the directory holds and the store lacks, or holds in an
    /// older version: what [`Mirror::seed`] stores.
    pub newer_here: Vec<String>,
}

/// What became of one certificate of the store ([`Mirror::certificate`]).
enum Fetched {
    /// The directory's file was written.
    Written,
    /// The directory's file is already the same, or the store has none.
    Same,
    /// The directory's certificate expires later: it stays.
    Newer,
    /// The store's entry is unusable (logged).
    Skipped,
}

impl<S: SharedStore> Mirror<S> {
    /// A mirror of `store` into `directory`. Nothing is copied until [`Mirror::load`] or
    /// [`Mirror::run`].
    pub fn new(store: S, directory: CertificateStore) -> Mirror<S> {
        Mirror {
            store,
            directory,
            member: random_token(),
        }
    }

    /// This mirror's member id: random, 32 hex digits.
    pub fn member(&self) -> &str {
        &self.member
    }

    /// The store mirrored.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Copies `name`'s certificate into the directory now, if the store has one that
    /// differs from the directory's (an unusable one is logged and skipped).
    ///
    /// # Errors
    /// [`StoreError`] when Redis cannot be read.
    pub async fn copy(&self, name: &str) -> Result<(), StoreError> {
        self.certificate(name).await.map(drop)
    }

    /// The directory mirrored into.
    pub fn directory(&self) -> &CertificateStore {
        &self.directory
    }

    /// Copies every certificate of the store that is not older than the directory's file,
    /// and makes the directory's challenge answers the store's (acknowledging each): answers
    /// the store no longer has are removed, the others are never missing meanwhile.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read; what was copied before stays.
    pub async fn load(&self) -> Result<Copied, StoreError> {
        let mut copied = Copied::default();
        let stored = self.store.names().await?;
        for name in &stored {
            match self.certificate(name).await? {
                Fetched::Written => copied.certificates += 1,
                Fetched::Same => {}
                Fetched::Newer => copied.newer_here.push(name.clone()),
                Fetched::Skipped => copied.skipped += 1,
            }
        }
        let directory = self.directory.clone();
        let local = blocking(move || directory.names(&[]))
            .await
            .unwrap_or_default();
        copied
            .newer_here
            .extend(local.into_iter().filter(|name| !stored.contains(name)));
        let answers = self.store.challenges().await?;
        let directory = self.directory.clone();
        let placed = blocking(move || {
            let placed: Vec<(String, String, Vec<u8>)> = answers
                .into_iter()
                .filter(|(kind, key, answer)| put_answer(&directory, kind, key, answer))
                .collect();
            for (kind, key) in directory.challenge_keys() {
                if !placed.iter().any(|(k, n, _)| k == kind && *n == key) {
                    directory.remove_challenge(kind, &key);
                }
            }
            placed
        })
        .await
        .unwrap_or_default();
        copied.answers = placed.len();
        for (kind, key, answer) in placed {
            self.store
                .ack(&kind, &key, &self.member, &answer, ACK_TTL)
                .await?;
        }
        Ok(copied)
    }

    /// Stores in the shared store the directory's usable certificates for `names`, those
    /// [`Mirror::load`] found the store lacks or holds in an older version (a store new or
    /// emptied, or a server that renewed while cut off from it); the store keeps its own
    /// where it lasts as long.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be asked.
    pub async fn seed(&self, names: &[String]) -> Result<(), StoreError> {
        if names.is_empty() {
            return Ok(());
        }
        let directory = self.directory.clone();
        let names = names.to_vec();
        let local = blocking(move || {
            names
                .into_iter()
                .filter_map(|name| {
                    let pem = std::fs::read(directory.certificate_path(&name)).ok()?;
                    certified_key(&pem).is_ok().then_some((name, pem))
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for (name, pem) in local {
            if self.store.seed_certificate(&name, &pem).await? {
                tracing::info!(
                    name,
                    "stored this server's certificate in the shared store, which had none or an older one"
                );
            }
        }
        Ok(())
    }

    /// Copies `name`'s certificate from the store, unless the directory's is the same or
    /// expires later.
    async fn certificate(&self, name: &str) -> Result<Fetched, StoreError> {
        if !is_host_name(name) {
            tracing::warn!(
                name,
                "skipping a certificate in the shared store: not a host name"
            );
            return Ok(Fetched::Skipped);
        }
        let Some(pem) = self.store.certificate(name).await? else {
            return Ok(Fetched::Same);
        };
        if let Err(reason) = certified_key(&pem) {
            tracing::warn!(
                name,
                "skipping a certificate in the shared store: {reason}; the directory keeps its own"
            );
            return Ok(Fetched::Skipped);
        }
        let directory = self.directory.clone();
        let name = name.to_owned();
        let written = blocking(move || {
            let path = directory.certificate_path(&name);
            let current = std::fs::read(&path).ok();
            if current.as_deref() == Some(pem.as_slice()) {
                return Fetched::Same;
            }
            // Never a certificate older than the one in service (a store refilled from a
            // stale copy): the seed puts the newer one back in the store.
            let expires = |pem: &[u8]| CertificateFacts::from_pem(pem).ok().map(|f| f.not_after);
            if let (Some(current), Some(stored)) =
                (current.as_deref().and_then(expires), expires(&pem))
                && current > stored
            {
                return Fetched::Newer;
            }
            match directory.write_certificate(&name, &pem) {
                Ok(()) => {
                    tracing::info!(name, "copied a certificate from the shared store");
                    Fetched::Written
                }
                Err(err) => {
                    tracing::warn!(file = %path.display(), "cannot write a certificate copied from the shared store: {err}");
                    Fetched::Skipped
                }
            }
        })
        .await
        .unwrap_or(Fetched::Skipped);
        Ok(written)
    }

    /// Applies one change: a certificate copied, an answer put or removed, or everything
    /// loaded again (and the directory's newer certificates stored) after
    /// [`Change::Resync`].
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read.
    pub async fn apply(&self, change: Change) -> Result<(), StoreError> {
        match change {
            Change::Certificate(name) => {
                self.certificate(&name).await?;
            }
            Change::Challenge(kind, key) => {
                if let Some(answer) = self.store.challenge(&kind, &key).await? {
                    let directory = self.directory.clone();
                    let (k, n, a) = (kind.clone(), key.clone(), answer.clone());
                    let placed = blocking(move || put_answer(&directory, &k, &n, &a)).await;
                    if placed == Some(true) {
                        self.store
                            .ack(&kind, &key, &self.member, &answer, ACK_TTL)
                            .await?;
                    }
                }
            }
            Change::Withdrawn(kind, key) => {
                if usable(&kind, &key) {
                    let directory = self.directory.clone();
                    blocking(move || directory.remove_challenge(&kind, &key)).await;
                }
            }
            Change::Resync => {
                let copied = self.load().await?;
                tracing::debug!(?copied, "loaded the shared store into the directory");
                self.seed(&copied.newer_here).await?;
            }
        }
        Ok(())
    }

    /// Keeps the directory a copy of the store until the task is dropped: every change as
    /// it is announced, and everything again after a lost subscription and every `every`
    /// (for changes a lost connection hid); meanwhile it renews its membership every 5 s.
    /// Failures are logged; the directory keeps serving what it has.
    pub async fn run(self, every: Duration) {
        let mut changes = self.store.changes();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut membership = tokio::time::interval(MEMBER_TTL / 3);
        membership.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut joined = false;
        loop {
            let change = tokio::select! {
                change = changes.recv() => match change {
                    Some(change) => change,
                    None => return,
                },
                _ = tick.tick() => Change::Resync,
                _ = membership.tick() => {
                    match self.store.join(&self.member, MEMBER_TTL).await {
                        Ok(()) if !joined => {
                            joined = true;
                            tracing::info!(member = %self.member, store = %self.store.location(), "joined the fleet sharing the shared store");
                        }
                        Ok(()) => {}
                        Err(err) => {
                            if joined {
                                tracing::warn!("the shared store is unreachable; serving the certificates copied so far: {err}");
                            }
                            joined = false;
                        }
                    }
                    continue;
                }
            };
            if let Err(err) = self.apply(change).await {
                tracing::warn!(
                    "the certificate directory is not up to date with the shared store: {err}"
                );
            }
        }
    }
}

/// Whether a challenge entry from the store may become a file: a known kind, and a key that
/// is an ACME token (http-01) or a host name (tls-alpn-01).
fn usable(kind: &str, key: &str) -> bool {
    match kind {
        "http-01" => is_token(key),
        "tls-alpn-01" => is_host_name(key),
        _ => false,
    }
}

/// Writes one answer into the directory, unless it is unusable; whether it is there.
fn put_answer(directory: &CertificateStore, kind: &str, key: &str, answer: &[u8]) -> bool {
    if !usable(kind, key) {
        tracing::warn!(
            kind,
            key,
            "skipping a challenge answer in the shared store: unknown kind, or a key that is neither a token nor a host name"
        );
        return false;
    }
    match directory.put_challenge(kind, key, answer) {
        Ok(()) => true,
        Err(err) => {
            tracing::warn!(
                kind,
                key,
                "cannot write a challenge answer copied from the shared store: {err}"
            );
            false
        }
    }
}

/// Runs file work (writes with fsync) off the event loop; `None` when it could not finish
/// (the runtime shutting down), which is logged.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => Some(value),
        Err(err) => {
            tracing::warn!("copying from the shared store was cut short: {err}");
            None
        }
    }
}
