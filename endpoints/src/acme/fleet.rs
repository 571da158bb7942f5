//! What the manager does differently when its directory is one server's copy of a store
//! shared by a fleet (`store=`, feature `redis`): it issues a name only under the fleet's
//! lock on it, kept while the order runs; it puts its challenge answers in the store and
//! waits until every server has copied them before the ACME server validates; it writes the
//! certificate to the store, fenced, before its own directory; and it runs the [`Mirror`]
//! that copies what the others issue.
//!
//! Without feature `redis` a fleet cannot be configured (`store=` is refused), and
//! [`Fleet`] is an empty type whose methods are never called.

pub(crate) use super::shared::Lease;
#[cfg(feature = "redis")]
pub(crate) use with_redis::Fleet;
#[cfg(not(feature = "redis"))]
pub(crate) use without_redis::Fleet;

#[cfg(feature = "redis")]
mod with_redis {
    use std::future::Future;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use super::super::mirror::Mirror;
    use super::super::redis::RedisStore;
    use super::super::settings::AcmeSettings;
    use super::super::shared::{Lease, SharedStore, StoreError};
    use super::super::store::CertificateStore;

    /// How long the issuer waits for every server of the fleet to copy a challenge answer
    /// before it lets the ACME server validate anyway.
    const ACK_WAIT: Duration = Duration::from_secs(10);

    /// How often a mirror loads the whole store, for changes its subscription missed.
    const RELOAD_EVERY: Duration = Duration::from_secs(300);

    /// A fleet's shared store, opened on first use (inside the runtime), and this server's
    /// mirror of it.
    pub(crate) struct Fleet {
        url: String,
        prefix: String,
        ca: Option<Vec<u8>>,
        lock: Duration,
        directory: CertificateStore,
        opened: OnceLock<Result<Mirror<RedisStore>, StoreError>>,
    }

    impl std::fmt::Debug for Fleet {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Fleet")
                .field("prefix", &self.prefix)
                .field("lock", &self.lock)
                .finish_non_exhaustive()
        }
    }

    impl Fleet {
        /// The fleet of `settings.store`, if there is one, mirrored into `directory`.
        ///
        /// # Errors
        /// A message when `storeca=` cannot be read.
        pub(crate) fn new(
            settings: &AcmeSettings,
            directory: &CertificateStore,
        ) -> Result<Option<Fleet>, String> {
            let Some(url) = &settings.store else {
                return Ok(None);
            };
            let ca = match &settings.store_ca {
                Some(path) => Some(std::fs::read(path).map_err(|e| {
                    format!("cannot read the store's CA file {}: {e}", path.display())
                })?),
                None => None,
            };
            RedisStore::check(url, &settings.prefix, ca.as_deref()).map_err(|e| e.to_string())?;
            Ok(Some(Fleet {
                url: url.clone(),
                prefix: settings.prefix.clone(),
                ca,
                lock: settings.lock,
                directory: directory.clone(),
                opened: OnceLock::new(),
            }))
        }

        /// The mirror (and through it the store), opened now if it was not.
        ///
        /// # Errors
        /// [`StoreError`] when the store cannot be made (checked in [`Fleet::new`], so
        /// not expected).
        pub(crate) fn mirror(&self) -> Result<&Mirror<RedisStore>, StoreError> {
            self.opened
                .get_or_init(|| {
                    RedisStore::open(&self.url, &self.prefix, self.ca.as_deref())
                        .map(|store| Mirror::new(store, self.directory.clone()))
                })
                .as_ref()
                .map_err(|err| StoreError {
                    url: err.url.clone(),
                    message: err.message.clone(),
                    unreachable: err.unreachable,
                })
        }

        fn store(&self) -> Result<&RedisStore, StoreError> {
            self.mirror().map(Mirror::store)
        }

        /// Starts copying the store into the directory (at once, then each change), until
        /// the returned task is dropped.
        pub(crate) fn start_mirror(&self) -> MirrorTask {
            match self.mirror() {
                Ok(mirror) => MirrorTask(Some(tokio::spawn(mirror.clone().run(RELOAD_EVERY)))),
                Err(err) => {
                    tracing::error!("the Redis store cannot be used: {err}");
                    MirrorTask(None)
                }
            }
        }

        /// Copies the whole store into the directory once.
        ///
        /// # Errors
        /// [`StoreError`] when Redis cannot be read.
        pub(crate) async fn load(&self) -> Result<(), StoreError> {
            self.mirror()?.load().await.map(drop)
        }

        /// Copies `name`'s certificate from the store into the directory, if the store's
        /// differs.
        ///
        /// # Errors
        /// [`StoreError`] when Redis cannot be read.
        pub(crate) async fn copy(&self, name: &str) -> Result<(), StoreError> {
            self.mirror()?.copy(name).await
        }

        /// Takes the fleet's lock on `name`: `None` when another server holds it.
        ///
        /// # Errors
        /// [`StoreError`] when Redis cannot be asked.
        pub(crate) async fn lock(&self, name: &str) -> Result<Option<Lease>, StoreError> {
            self.store()?.lock(name, self.lock).await
        }

        /// How long the lock lasts without renewal.
        pub(crate) fn lock_ttl(&self) -> Duration {
            self.lock
        }

        /// Runs `work` while renewing `lease` every third of its lifetime. When the lease is
        /// lost (the store says another holder may have it, or it could not be renewed
        /// before it ran out), `work` is dropped, cancelling it, and the reason is returned
        /// instead; unless `committed` is set by then (the order is being finalized: the
        /// certificate is as good as issued), in which case `work` runs to its end and the
        /// fenced write decides whether its certificate is kept.
        pub(crate) async fn hold<T>(
            &self,
            lease: &Lease,
            committed: &AtomicBool,
            work: impl Future<Output = T>,
        ) -> Result<T, String> {
            let keep = async {
                let Ok(store) = self.store() else {
                    return "the Redis store cannot be used".to_owned();
                };
                let mut valid_until = Instant::now() + self.lock;
                loop {
                    tokio::time::sleep(self.lock / 3).await;
                    let asked = Instant::now();
                    match store.extend(lease, self.lock).await {
                        Ok(true) => valid_until = asked + self.lock,
                        Ok(false) => {
                            return format!(
                                "the fleet's lock on {} expired, and another server may hold it",
                                lease.name
                            );
                        }
                        // Still held until it runs out: try again meanwhile.
                        Err(err) if Instant::now() + self.lock / 3 < valid_until => {
                            tracing::debug!(
                                name = lease.name,
                                "cannot renew the fleet's lock yet: {err}"
                            );
                        }
                        Err(err) => {
                            return format!(
                                "the fleet's lock on {} cannot be kept: {err}",
                                lease.name
                            );
                        }
                    }
                }
            };
            tokio::pin!(work);
            let lost = tokio::select! {
                done = &mut work => return Ok(done),
                lost = keep => lost,
            };
            if committed.load(Ordering::Acquire) {
                tracing::warn!(
                    name = lease.name,
                    "{lost}; the order is being finalized, so it goes on, and its certificate is stored only if no newer lock wrote one"
                );
                return Ok(work.await);
            }
            Err(lost)
        }

        /// Releases `lease`; a failure is logged (the lock then expires by itself).
        pub(crate) async fn release(&self, lease: Lease) {
            let name = lease.name.clone();
            match self.store() {
                Ok(store) => match store.release(lease).await {
                    Ok(_) => {}
                    Err(err) => {
                        tracing::warn!(name, "the fleet's lock stays until it expires: {err}")
                    }
                },
                Err(err) => tracing::warn!(name, "{err}"),
            }
        }

        /// Puts a challenge answer in the store for `ttl`, then waits (at most 10 s) until
        /// every server mirroring the store has copied it; the answer is withdrawn when the
        /// returned guard is dropped.
        ///
        /// # Errors
        /// [`StoreError`] when Redis cannot be asked.
        pub(crate) async fn share(
            &self,
            kind: &'static str,
            key: &str,
            answer: &[u8],
            ttl: Duration,
        ) -> Result<Shared, StoreError> {
            let store = self.store()?.clone();
            store.put_challenge(kind, key, answer, ttl).await?;
            let shared = Shared {
                store: Some(store.clone()),
                kind,
                key: key.to_owned(),
                answer: answer.to_vec(),
            };
            let deadline = Instant::now() + ACK_WAIT;
            loop {
                let members = store.members().await?;
                let acks = store.acks(kind, key).await?;
                let missing: Vec<&String> = members
                    .iter()
                    .filter(|m| acks.binary_search(m).is_err())
                    .collect();
                if missing.is_empty() {
                    tracing::debug!(
                        kind,
                        key,
                        servers = members.len(),
                        "every server of the fleet has the challenge answer"
                    );
                    break;
                }
                if Instant::now() >= deadline {
                    tracing::warn!(
                        kind,
                        key,
                        "{} of {} servers of the fleet did not confirm the challenge answer within {} s; validating anyway",
                        missing.len(),
                        members.len(),
                        ACK_WAIT.as_secs()
                    );
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(shared)
        }

        /// Stores the certificate issued under `lease`: `false` when a newer one (written
        /// under a later lock) is there, and nothing changed.
        ///
        /// # Errors
        /// [`StoreError`] when Redis cannot be asked.
        pub(crate) async fn write(&self, lease: &Lease, pem: &[u8]) -> Result<bool, StoreError> {
            self.store()?.write_certificate(lease, pem).await
        }

        /// The fleet's ACME account key (PEM): the stored one, or `local` stored now.
        ///
        /// # Errors
        /// [`StoreError`] when Redis cannot be asked.
        pub(crate) async fn account_key(&self, local: &[u8]) -> Result<Vec<u8>, StoreError> {
            self.store()?.account_key(local).await
        }
    }

    /// A running mirror; stopped when dropped.
    pub(crate) struct MirrorTask(Option<tokio::task::JoinHandle<()>>);

    impl Drop for MirrorTask {
        fn drop(&mut self) {
            if let Some(task) = self.0.take() {
                task.abort();
            }
        }
    }

    /// A challenge answer in the store: withdrawn by [`Shared::withdraw`], or when dropped
    /// (by a task, which a runtime shutting down may cut short: the answer then expires).
    /// Only this answer is withdrawn, never one another server has put under the same key
    /// since.
    pub(crate) struct Shared {
        store: Option<RedisStore>,
        kind: &'static str,
        key: String,
        answer: Vec<u8>,
    }

    impl Shared {
        /// Withdraws the answer now; a failure is logged (it then expires).
        pub(crate) async fn withdraw(mut self) {
            if let Some(store) = self.store.take() {
                withdraw(
                    store,
                    self.kind,
                    std::mem::take(&mut self.key),
                    std::mem::take(&mut self.answer),
                )
                .await;
            }
        }
    }

    async fn withdraw(store: RedisStore, kind: &'static str, key: String, answer: Vec<u8>) {
        if let Err(err) = store.remove_challenge(kind, &key, &answer).await {
            tracing::debug!(kind, key, "the answer stays until it expires: {err}");
        }
    }

    impl Drop for Shared {
        fn drop(&mut self) {
            let (Some(store), Ok(runtime)) =
                (self.store.take(), tokio::runtime::Handle::try_current())
            else {
                return;
            };
            let (key, answer) = (
                std::mem::take(&mut self.key),
                std::mem::take(&mut self.answer),
            );
            runtime.spawn(withdraw(store, self.kind, key, answer));
        }
    }
}

#[cfg(not(feature = "redis"))]
mod without_redis {
    use std::future::Future;
    use std::time::Duration;

    use super::super::settings::AcmeSettings;
    use super::super::shared::{Lease, StoreError};
    use super::super::store::CertificateStore;

    /// No fleet: `store=` needs feature `redis`.
    #[derive(Debug)]
    pub(crate) enum Fleet {}

    /// No shared answer.
    pub(crate) enum Shared {}

    #[allow(clippy::unused_async)]
    impl Shared {
        pub(crate) async fn withdraw(self) {
            match self {}
        }
    }

    #[allow(clippy::unused_async)]
    impl Fleet {
        pub(crate) fn new(
            settings: &AcmeSettings,
            _: &CertificateStore,
        ) -> Result<Option<Fleet>, String> {
            match settings.store {
                None => Ok(None),
                Some(_) => Err("store= needs torsion-endpoints' feature redis".into()),
            }
        }
        pub(crate) fn start_mirror(&self) {
            match *self {}
        }
        pub(crate) async fn load(&self) -> Result<(), StoreError> {
            match *self {}
        }
        pub(crate) async fn copy(&self, _: &str) -> Result<(), StoreError> {
            match *self {}
        }
        pub(crate) async fn lock(&self, _: &str) -> Result<Option<Lease>, StoreError> {
            match *self {}
        }
        pub(crate) fn lock_ttl(&self) -> Duration {
            match *self {}
        }
        pub(crate) async fn hold<T>(
            &self,
            _: &Lease,
            _: &std::sync::atomic::AtomicBool,
            _: impl Future<Output = T>,
        ) -> Result<T, String> {
            match *self {}
        }
        pub(crate) async fn release(&self, _: Lease) {
            match *self {}
        }
        pub(crate) async fn share(
            &self,
            _: &'static str,
            _: &str,
            _: &[u8],
            _: Duration,
        ) -> Result<Shared, StoreError> {
            match *self {}
        }
        pub(crate) async fn write(&self, _: &Lease, _: &[u8]) -> Result<bool, StoreError> {
            match *self {}
        }
        pub(crate) async fn account_key(&self, _: &[u8]) -> Result<Vec<u8>, StoreError> {
            match *self {}
        }
    }
}
