//! One-shot operations on a certificate directory, for programs that are not a running
//! server: cron jobs, deployment scripts, `torsion certs`. A running server renews its own
//! certificates; these are for when none runs, or before the first start.

use std::path::Path;
use std::sync::Arc;

use super::endpoint::challenge_listener;
use super::manager::{AcmeManager, NameStatus};
use super::settings::{AcmeSettings, Challenge};
use super::store::{CertificateFacts, CertificateStore, is_host_name};
use crate::error::{Error, Result};
use crate::registry::Endpoint;
use crate::tls::CertificateResolver;

/// The outcome of an issuance or renewal run: each name tried, with its new certificate's
/// facts or why it failed. Names that were not due are not listed.
pub type Outcomes = Vec<(String, Result<CertificateFacts>)>;

/// A certificate directory opened for one-shot ACME operations.
///
/// ```no_run
/// # async fn run() -> torsion_endpoints::Result<()> {
/// use torsion_endpoints::acme::{AcmeSettings, CertificateDirectory, LETS_ENCRYPT_STAGING};
///
/// let mut settings = AcmeSettings::new(LETS_ENCRYPT_STAGING);
/// settings.set("email", "admin@example.com")?;
/// let certs = CertificateDirectory::open("/srv/certs", settings)?;
/// let listen = certs.default_listen();
/// for (name, outcome) in certs.renew(Some(&listen)).await? {
///     println!("{name}: {}", if outcome.is_ok() { "renewed" } else { "failed" });
/// }
/// # Ok(()) }
/// ```
pub struct CertificateDirectory {
    manager: AcmeManager,
    resolver: Arc<CertificateResolver>,
}

impl std::fmt::Debug for CertificateDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateDirectory")
            .field("path", &self.manager.store().path())
            .finish_non_exhaustive()
    }
}

impl CertificateDirectory {
    /// Opens the txsni directory at `path` for `settings`, creating it (mode 0700) if it
    /// does not exist, as a server's [`CertificateStore`] does. No network access happens
    /// here.
    ///
    /// # Errors
    /// [`Error::Certificate`] when `path` is not a directory or cannot be created;
    /// [`Error::Acme`] when the settings cannot make an ACME client (an unreadable
    /// `cacert`).
    pub fn open(path: impl AsRef<Path>, settings: AcmeSettings) -> Result<CertificateDirectory> {
        let path = path.as_ref();
        let fault = |reason: String| Error::Certificate {
            subject: path.display().to_string(),
            reason,
        };
        let store = CertificateStore::open(path).map_err(|e| fault(e.to_string()))?;
        let resolver = Arc::new(CertificateResolver::new());
        let manager = AcmeManager::new(store, settings, resolver.clone())?;
        Ok(CertificateDirectory { manager, resolver })
    }

    /// Opens a directory that must already exist, for reading it ([`status`](Self::status)):
    /// a mistyped path is an error rather than a new empty directory.
    ///
    /// # Errors
    /// [`Error::Certificate`] ("not a directory") when `path` is not an existing directory;
    /// otherwise as [`open`](Self::open).
    pub fn open_existing(
        path: impl AsRef<Path>,
        settings: AcmeSettings,
    ) -> Result<CertificateDirectory> {
        let path = path.as_ref();
        if !path.is_dir() {
            return Err(Error::Certificate {
                subject: path.display().to_string(),
                reason: "not a directory".into(),
            });
        }
        CertificateDirectory::open(path, settings)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.manager.store().path()
    }

    /// Where challenges are answered unless told otherwise: `tcp:443` for tls-alpn-01
    /// (RFC 8737 §3 validates on port 443), `tcp:80` for http-01 (RFC 8555 §8.3).
    pub fn default_listen(&self) -> Endpoint {
        let port = match self.manager.settings().challenge {
            Challenge::TlsAlpn01 => 443,
            Challenge::Http01 => 80,
        };
        Endpoint::new(crate::tcp::TcpEndpoint::new(port))
    }

    /// Each managed name's standing: issuer, expiry and next renewal, from the files
    /// alone (no network access; with a fleet's store, call [`refresh`](Self::refresh)
    /// first).
    pub fn status(&self) -> Vec<NameStatus> {
        self.manager.status()
    }

    /// Whether the settings name a fleet's shared store (`store=`).
    pub fn has_fleet(&self) -> bool {
        self.manager.settings().store.is_some()
    }

    /// Copies a fleet's shared store (`store=`) into the directory: every certificate the
    /// fleet holds that differs from the directory's file. Does nothing without a store.
    ///
    /// # Errors
    /// [`Error::Acme`] naming the store when it cannot be read.
    pub async fn refresh(&self) -> Result<()> {
        self.manager.refresh().await
    }

    /// Obtains a certificate for each of `names` now, whatever the directory holds,
    /// answering the challenges on `listen` while it runs (the port must be free). With a
    /// fleet's store, `listen` may be `None`: the fleet's servers answer the challenges,
    /// and each name is issued under the fleet's lock.
    ///
    /// # Errors
    /// [`Error::InvalidName`] for a name that cannot be issued (wildcards need dns-01,
    /// which is not offered) before anything starts; the listen error of `listen`. Each
    /// name's own failure is in its outcome.
    pub async fn issue(&self, names: &[String], listen: Option<&Endpoint>) -> Result<Outcomes> {
        if let Some(bad) = names.iter().find(|n| !is_issuable_name(n)) {
            return Err(Error::InvalidName {
                name: bad.clone(),
                expected: "a host name that can be issued (such as www.example.com; no wildcards)"
                    .into(),
            });
        }
        let responder = self.answer_challenges(listen).await?;
        let mut outcomes = Vec::new();
        for name in names {
            let outcome = self.manager.issue(&name.to_ascii_lowercase()).await;
            outcomes.push((name.clone(), outcome));
        }
        responder.stop().await;
        Ok(outcomes)
    }

    /// Obtains a certificate for every name that is missing or due for renewal, answering
    /// challenges on `listen` while it runs (`None`: as for [`issue`](Self::issue)). When
    /// nothing is due, `listen` is not even bound and the outcome is empty.
    ///
    /// # Errors
    /// The listen error of `listen`; each name's own failure is in its outcome.
    pub async fn renew(&self, listen: Option<&Endpoint>) -> Result<Outcomes> {
        if self.manager.due_names().await.is_empty() {
            return Ok(Vec::new());
        }
        let responder = self.answer_challenges(listen).await?;
        let outcomes = self.manager.renew_due().await;
        responder.stop().await;
        Ok(outcomes)
    }

    /// Answers this directory's challenges on `listen` until the guard is dropped; with
    /// `None`, nowhere (a fleet's servers answer).
    async fn answer_challenges(&self, listen: Option<&Endpoint>) -> Result<Responder> {
        let Some(listen) = listen else {
            return Ok(Responder(None));
        };
        let mut listener = match self.manager.settings().challenge {
            // Validations are answered inside the handshake; the connection then closes.
            Challenge::TlsAlpn01 => challenge_listener(listen, self.resolver.clone()).await?,
            Challenge::Http01 => listen.listen().await?,
        };
        let http01 = self.manager.settings().challenge == Challenge::Http01;
        Ok(Responder(Some(tokio::spawn(async move {
            // The connections' tasks live in the accept task, so they end with it.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    connection = listener.next_connection() => {
                        if http01 {
                            connections.spawn(super::challenge::serve_http01(connection));
                        }
                    }
                    Some(_) = connections.join_next() => {}
                }
            }
        }))))
    }
}

/// Answers challenges until stopped: [`Responder::stop`] closes the listener before it
/// returns, so the port is free for what comes next; dropping it (a cancelled operation)
/// closes it soon after.
struct Responder(Option<tokio::task::JoinHandle<()>>);

impl Responder {
    async fn stop(mut self) {
        if let Some(task) = self.0.as_mut() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

/// Whether `name` can be issued by http-01 or tls-alpn-01: a host name of two labels or
/// more (RFC 1123), no wildcard.
pub fn is_issuable_name(name: &str) -> bool {
    is_host_name(name)
}
