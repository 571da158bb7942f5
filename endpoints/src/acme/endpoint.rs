//! The kinds `txacme:DIR:<inner>`, `le:DIR:<inner>` and `lets:DIR:<inner>`: TLS over the
//! inner endpoint, with certificates from a directory that an [`AcmeManager`] fills.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::challenge::answer_from;
use super::manager::AcmeManager;
use super::settings::{
    AcmeSettings, Challenge, DEFAULT_LOCK, DEFAULT_PREFIX, DEFAULT_TIMEOUT, KEYWORDS, LETS_ENCRYPT,
    LETS_ENCRYPT_STAGING,
};
use super::shared::redacted;
use super::store::CertificateStore;
use crate::activation::background_here;
use crate::descriptor::Descriptor;
use crate::error::{Error, Result};
use crate::listener::Listener;
use crate::registry::{Arguments, BoxFuture, Endpoint, EndpointKind, Registry, ServerEndpoint};
use crate::tls::{
    ACME_TLS_ALPN, CertificateResolver, MinimumVersion, Naming, Store, TlsAccept, server_config,
    watch,
};

/// TLS with certificates obtained and renewed automatically over ACME:
/// `txacme:DIR:<inner descriptor>`, such as `txacme:/srv/certs:tcp:443`.
///
/// DIR is a txsni directory ([`CertificateStore`] describes the files). The names managed
/// are the `<name>.pem` files in it (an empty file asks for a certificate, as in txacme)
/// plus `domains=`. Keywords, all optional:
///
/// | keyword | meaning | default |
/// |---|---|---|
/// | `directory=URL` | the ACME directory (Let's Encrypt, ZeroSSL, step-ca, Pebble); escape colons as `\:` | Let's Encrypt production for `txacme:` and `le:`, staging for `lets:` |
/// | `email=ADDRESS` | the account's contact | none |
/// | `cacert=FILE` | extra trust anchors (PEM) for the ACME server's own HTTPS | the platform's roots only |
/// | `challenge=` | `tls-alpn-01` (answered on this listener) or `http-01` (answered by the process's plain-HTTP listeners) | `tls-alpn-01` |
/// | `domains=a.example,b.example` | names to manage without a file | none |
/// | `timeout=SECONDS` | how long one issuance may wait for validation | 120 |
/// | `store=URL` | a Redis store shared by a fleet of servers (feature `redis`): `redis://[:password@]host[:port][/db]` or `rediss://...`, colons escaped | none: this directory alone |
/// | `prefix=` | the prefix of the store's keys, so that several sites can share one Redis | `torsion:acme` |
/// | `storeca=FILE` | trust anchors (PEM) for a `rediss://` store | the platform's roots |
/// | `lock=SECONDS` | how long the fleet's lock on a name outlives a holder that stops renewing it | 60 |
///
/// With `store=`, DIR is this server's copy of the fleet's store: each name is issued by one
/// server under the fleet's lock on it, every server answers every challenge, and each
/// copies a new certificate into DIR as soon as it is stored (see
/// [`SharedStore`](super::shared::SharedStore) and [`Mirror`](super::Mirror)). A server
/// that cannot reach the store serves what DIR holds, issues nothing, and tries again every
/// 10 s.
///
/// The listener accepts connections at once. A name whose certificate is not issued yet
/// gets `DEFAULT.pem` if there is one, else a failed handshake; once issued it is served
/// without a restart. Renewal is described on [`AcmeManager`].
///
/// With worker processes sharing the listener's socket, exactly one process runs the
/// manager: the supervisor, through [`ServerEndpoint::background`], while each worker,
/// after [`crate::background_elsewhere`], serves the certificates from the directory as its
/// watch sees them written, and answers the challenges the manager publishes there (see
/// [`CertificateStore`]), so a validation is answered whichever worker accepts it.
///
/// Deliberate differences from
/// txacme 0.9.3: ACME v2 instead of v1 (which Let's Encrypt switched off), tls-alpn-01 and
/// http-01 instead of the withdrawn tls-sni-01, the `txacme:` kind takes `directory=`, and
/// a lock file keeps servers sharing DIR from issuing into it at the same time.
#[derive(Clone, Debug, PartialEq)]
pub struct AcmeEndpoint {
    kind: String,
    path: PathBuf,
    settings: AcmeSettings,
    inner: Endpoint,
}

impl AcmeEndpoint {
    /// An endpoint of `kind` (`txacme`, `le` or `lets`, for printing) keeping certificates
    /// in `path` on top of `inner`.
    pub fn new(
        kind: impl Into<String>,
        path: impl Into<PathBuf>,
        settings: AcmeSettings,
        inner: Endpoint,
    ) -> AcmeEndpoint {
        AcmeEndpoint {
            kind: kind.into(),
            path: path.into(),
            settings,
            inner,
        }
    }

    /// The certificate directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The ACME settings.
    pub fn settings(&self) -> &AcmeSettings {
        &self.settings
    }

    /// The endpoint TLS runs on.
    pub fn inner(&self) -> &Endpoint {
        &self.inner
    }

    fn default_directory(&self) -> &'static str {
        if self.kind == "lets" {
            LETS_ENCRYPT_STAGING
        } else {
            LETS_ENCRYPT
        }
    }
}

impl AcmeEndpoint {
    /// The descriptor, with the password of a `store=` URL given as `***`: how the
    /// listener is named in logs and errors.
    fn label(&self) -> String {
        let mut shown = self.clone();
        shown.settings.store = self.settings.store.as_deref().map(redacted);
        shown.descriptor().to_string()
    }
}

impl ServerEndpoint for AcmeEndpoint {
    fn descriptor(&self) -> Descriptor {
        let s = &self.settings;
        let mut d = Descriptor::new(self.kind.clone()).with_arg(self.path.to_string_lossy());
        if s.directory_url != self.default_directory() {
            d = d.with_kwarg("directory", s.directory_url.clone());
        }
        if let Some(email) = &s.email {
            d = d.with_kwarg("email", email.clone());
        }
        if let Some(cacert) = &s.cacert {
            d = d.with_kwarg("cacert", cacert.to_string_lossy());
        }
        if s.challenge != Challenge::TlsAlpn01 {
            d = d.with_kwarg("challenge", s.challenge.as_str());
        }
        if !s.domains.is_empty() {
            d = d.with_kwarg("domains", s.domains.join(","));
        }
        if s.timeout != DEFAULT_TIMEOUT {
            d = d.with_kwarg("timeout", s.timeout.as_secs().to_string());
        }
        if let Some(store) = &s.store {
            d = d.with_kwarg("store", store.clone());
        }
        if s.prefix != DEFAULT_PREFIX {
            d = d.with_kwarg("prefix", s.prefix.clone());
        }
        if let Some(ca) = &s.store_ca {
            d = d.with_kwarg("storeca", ca.to_string_lossy());
        }
        if s.lock != DEFAULT_LOCK {
            d = d.with_kwarg("lock", s.lock.as_secs().to_string());
        }
        d.with_inner(&self.inner.descriptor())
    }

    fn sockets(&self) -> Vec<Endpoint> {
        self.inner.sockets()
    }

    fn background(&self) -> Result<Vec<BoxFuture<'static, ()>>> {
        // The manager's own resolver serves no handshake here; it is kept alive for as long
        // as the future runs, since the manager stops when its resolver has no other holder.
        let resolver = Arc::new(CertificateResolver::new());
        let manager = self.manager(resolver.clone())?;
        let files = Store::new(self.path.clone(), Naming::FileName);
        Ok(vec![Box::pin(async move {
            let changed = Arc::new(tokio::sync::Notify::new());
            watch(files, Arc::downgrade(&resolver), Some(changed.clone()));
            manager.run(changed).await;
            drop(resolver);
        })])
    }

    fn listen(&self) -> BoxFuture<'_, Result<Listener>> {
        Box::pin(async move {
            let resolver = Arc::new(CertificateResolver::new());
            // Alone, this process runs the manager; as one of several sharing the sockets,
            // it serves what the process running it writes into the directory.
            let manager = if background_here() {
                Some(self.manager(resolver.clone())?)
            } else {
                let store = self.store()?;
                answer_from(&store);
                None
            };
            let mut files = Store::new(self.path.clone(), Naming::FileName);
            files.rescan(&resolver);
            let mut config = server_config(resolver.clone(), MinimumVersion::Tls12)
                .map_err(|err| self.listen_error("configure TLS", err.to_string()))?;
            if self.settings.challenge == Challenge::TlsAlpn01 {
                config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
            }
            let inner = self.inner.listen().await?;
            let changed = manager
                .is_some()
                .then(|| Arc::new(tokio::sync::Notify::new()));
            watch(files, Arc::downgrade(&resolver), changed.clone());
            if let (Some(manager), Some(changed)) = (manager, changed) {
                tokio::spawn(manager.run(changed));
            }
            Ok(TlsAccept::listener(self.label(), inner, config))
        })
    }
}

impl AcmeEndpoint {
    /// An [`Error::Listen`] for this endpoint.
    fn listen_error(&self, action: &str, message: String) -> Error {
        Error::Listen {
            endpoint: self.label(),
            action: action.to_owned(),
            hint: String::new(),
            source: std::io::Error::other(message),
        }
    }

    /// The certificate directory, created if need be.
    fn store(&self) -> Result<CertificateStore> {
        CertificateStore::open(&self.path).map_err(|e| {
            self.listen_error(
                &format!("open the certificate directory {}", self.path.display()),
                e.to_string(),
            )
        })
    }

    /// The manager of the directory, feeding `resolver`; its published challenge answers
    /// are served by this process's listeners from now on.
    fn manager(&self, resolver: Arc<CertificateResolver>) -> Result<AcmeManager> {
        let store = self.store()?;
        answer_from(&store);
        AcmeManager::new(store, self.settings.clone(), resolver)
            .map_err(|e| self.listen_error("set up ACME", e.to_string()))
    }
}

/// A listener that answers only tls-alpn-01 validations for `resolver`'s challenges (every
/// other handshake fails): what `torsion certs issue` runs while no server holds the port.
///
/// # Errors
/// As [`Endpoint::listen`] for `inner`, or [`Error::Listen`] if TLS cannot be configured.
pub async fn challenge_listener(
    inner: &Endpoint,
    resolver: Arc<CertificateResolver>,
) -> Result<Listener> {
    let endpoint = inner.to_string();
    let mut config =
        server_config(resolver, MinimumVersion::Tls12).map_err(|err| Error::Listen {
            endpoint: endpoint.clone(),
            action: "configure TLS".into(),
            hint: String::new(),
            source: std::io::Error::other(err.to_string()),
        })?;
    config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
    let plain = inner.listen().await?;
    Ok(TlsAccept::listener(endpoint, plain, config))
}

/// Reads the ACME keywords out of `args` onto `settings`, leaving the others for the inner
/// descriptor.
///
/// # Errors
/// [`Error::InvalidValue`] naming the descriptor, the keyword and what it accepts.
fn take_settings(args: &mut Arguments, settings: &mut AcmeSettings) -> Result<()> {
    for keyword in KEYWORDS {
        if let Some(value) = args.take_kwarg(keyword) {
            settings.set(keyword, &value).map_err(|err| match err {
                Error::InvalidSetting {
                    value, expected, ..
                } => args.invalid(keyword, &value, &expected),
                other => other,
            })?;
        }
    }
    Ok(())
}

/// The `txacme:`, `le:` and `lets:` kinds.
pub(crate) struct AcmeKind {
    prefix: &'static str,
    usage: &'static str,
    directory: &'static str,
}

impl AcmeKind {
    pub(crate) const TXACME: AcmeKind = AcmeKind {
        prefix: "txacme",
        usage: "txacme:DIRECTORY[:directory=URL][:email=][:cacert=][:challenge=tls-alpn-01|http-01][:domains=][:timeout=][:store=redis\\://HOST\\:PORT/DB][:prefix=][:storeca=][:lock=]:<endpoint descriptor>, such as txacme:/srv/certs:tcp:443",
        directory: LETS_ENCRYPT,
    };
    pub(crate) const LE: AcmeKind = AcmeKind {
        prefix: "le",
        usage: "le:DIRECTORY[:email=][:challenge=][:domains=][:store=][:prefix=]:<endpoint descriptor> (Let's Encrypt), such as le:/srv/certs:tcp:443",
        directory: LETS_ENCRYPT,
    };
    pub(crate) const LETS: AcmeKind = AcmeKind {
        prefix: "lets",
        usage: "lets:DIRECTORY[:email=][:challenge=][:domains=][:store=][:prefix=]:<endpoint descriptor> (Let's Encrypt staging), such as lets:/srv/certs:tcp:443",
        directory: LETS_ENCRYPT_STAGING,
    };
}

impl EndpointKind for AcmeKind {
    fn prefix(&self) -> &str {
        self.prefix
    }

    fn usage(&self) -> &str {
        self.usage
    }

    fn parse(&self, mut args: Arguments, registry: &Registry) -> Result<Endpoint> {
        let path = args
            .next_positional()
            .filter(|d| !d.is_empty())
            .ok_or_else(|| args.missing("DIRECTORY"))?;
        let mut settings = AcmeSettings::new(self.directory);
        take_settings(&mut args, &mut settings)?;
        let inner = args.into_inner_endpoint("endpoint descriptor", registry)?;
        Ok(Endpoint::new(AcmeEndpoint::new(
            self.prefix,
            path,
            settings,
            inner,
        )))
    }
}
