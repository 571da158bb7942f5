//! `txacme:DIR:<inner>`, `le:DIR:<inner>` and `lets:DIR:<inner>`: TLS with certificates
//! obtained and renewed over ACME v2 (RFC 8555) with instant-acme, kept in a txsni
//! directory.

mod challenge;
mod client;
mod manager;
mod store;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use challenge::{HTTP01_PATH_PREFIX, http01_answer, http01_key_authorization};
pub use manager::{
    AcmeManager, AcmeSettings, CHECK_EVERY, Challenge, DEFAULT_TIMEOUT, LETS_ENCRYPT,
    LETS_ENCRYPT_STAGING, NameStatus,
};
pub use store::{
    ACCOUNT_KEY_FILE, CertificateFacts, CertificateState, CertificateStore, LOCK_FILE,
};

use crate::descriptor::Descriptor;
use crate::error::{Error, Result};
use crate::listener::Listener;
use crate::registry::{Arguments, BoxFuture, Endpoint, EndpointKind, Registry, ServerEndpoint};
use crate::tls::{ACME_TLS_ALPN, CertificateResolver, MinimumVersion, TlsAccept, server_config};
use crate::txsni::{Naming, Store, watch};

/// The keywords the ACME kinds consume; every other keyword goes to the inner descriptor.
pub const KEYWORDS: [&str; 6] = [
    "directory",
    "email",
    "cacert",
    "challenge",
    "domains",
    "timeout",
];

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
///
/// The listener accepts connections at once. A name whose certificate is not issued yet
/// gets `DEFAULT.pem` if there is one, else a failed handshake; once issued it is served
/// without a restart. Renewal is described on [`AcmeManager`]. Deliberate differences from
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
        d.with_inner(&self.inner.descriptor())
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
            let store = CertificateStore::open(&self.path).map_err(|e| {
                listen_error(
                    format!("open the certificate directory {}", self.path.display()),
                    e.to_string(),
                )
            })?;
            let resolver = Arc::new(CertificateResolver::new());
            let mut files = Store::new(self.path.clone(), Naming::FileName);
            files.rescan(&resolver);
            let mut config = server_config(resolver.clone(), MinimumVersion::Tls12)
                .map_err(|message| listen_error("configure TLS".into(), message))?;
            if self.settings.challenge == Challenge::TlsAlpn01 {
                config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
            }
            let manager = AcmeManager::new(store, self.settings.clone(), resolver.clone())
                .map_err(|e| listen_error("set up ACME".into(), e.to_string()))?;
            let inner = self.inner.listen().await?;
            let changed = Arc::new(tokio::sync::Notify::new());
            watch(files, Arc::downgrade(&resolver), Some(changed.clone()));
            tokio::spawn(manager.run(changed));
            Ok(TlsAccept::listener(endpoint, inner, config))
        })
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
        server_config(resolver, MinimumVersion::Tls12).map_err(|message| Error::Listen {
            endpoint: endpoint.clone(),
            action: "configure TLS".into(),
            hint: String::new(),
            source: std::io::Error::other(message),
        })?;
    config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
    let plain = inner.listen().await?;
    Ok(TlsAccept::listener(endpoint, plain, config))
}

/// Whether `name` can be issued by http-01 or tls-alpn-01: a host name of two labels or
/// more (RFC 1123), no wildcard.
pub fn is_issuable_name(name: &str) -> bool {
    store::is_host_name(name)
}

/// Reads the ACME keywords out of `args` onto `settings`, leaving the others.
///
/// # Errors
/// [`Error::InvalidValue`] naming the keyword and what it accepts.
pub fn take_settings(args: &mut Arguments, settings: &mut AcmeSettings) -> Result<()> {
    if let Some(url) = args.take_kwarg("directory") {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(args.invalid("directory", &url, "an ACME directory URL such as https://acme-v02.api.letsencrypt.org/directory (write each : as \\:)"));
        }
        settings.directory_url = url;
    }
    if let Some(email) = args.take_kwarg("email") {
        if !email.contains('@') || email.contains(char::is_whitespace) {
            return Err(args.invalid(
                "email",
                &email,
                "an e-mail address such as admin@example.com",
            ));
        }
        settings.email = Some(email);
    }
    if let Some(cacert) = args.take_kwarg("cacert") {
        if cacert.is_empty() {
            return Err(args.invalid("cacert", &cacert, "a PEM file of CA certificates"));
        }
        settings.cacert = Some(PathBuf::from(cacert));
    }
    if let Some(challenge) = args.take_kwarg("challenge") {
        settings.challenge = challenge
            .parse()
            .map_err(|expected: String| args.invalid("challenge", &challenge, &expected))?;
    }
    if let Some(domains) = args.take_kwarg("domains") {
        let names: Vec<String> = domains
            .split(',')
            .map(|d| d.trim().to_ascii_lowercase())
            .filter(|d| !d.is_empty())
            .collect();
        if let Some(bad) = names.iter().find(|n| !store::is_host_name(n)) {
            return Err(args.invalid(
                "domains",
                bad,
                "comma-separated host names such as a.example.com,b.example.com (no wildcards: they need dns-01)",
            ));
        }
        settings.domains = names;
    }
    if let Some(timeout) = args.take_kwarg("timeout") {
        let seconds: u64 = timeout.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
            args.invalid("timeout", &timeout, "a whole number of seconds, at least 1")
        })?;
        settings.timeout = Duration::from_secs(seconds);
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
        usage: "txacme:DIRECTORY[:directory=URL][:email=][:cacert=][:challenge=tls-alpn-01|http-01][:domains=][:timeout=]:<endpoint descriptor>, such as txacme:/srv/certs:tcp:443",
        directory: LETS_ENCRYPT,
    };
    pub(crate) const LE: AcmeKind = AcmeKind {
        prefix: "le",
        usage: "le:DIRECTORY[:email=][:challenge=][:domains=]:<endpoint descriptor> (Let's Encrypt), such as le:/srv/certs:tcp:443",
        directory: LETS_ENCRYPT,
    };
    pub(crate) const LETS: AcmeKind = AcmeKind {
        prefix: "lets",
        usage: "lets:DIRECTORY[:email=][:challenge=][:domains=]:<endpoint descriptor> (Let's Encrypt staging), such as lets:/srv/certs:tcp:443",
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
