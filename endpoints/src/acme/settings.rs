//! What the ACME kinds and `torsion certs` are told: the ACME server, the account's
//! contact, the challenge type, extra names and the timeout, each checked from its value so
//! that a descriptor, a command-line flag or a configuration file get the same checks.

use std::path::PathBuf;
use std::time::Duration;

use instant_acme::ChallengeType;

use super::store::is_host_name;
use crate::error::{Error, Result};

/// The keywords the ACME kinds consume (and the settings [`AcmeSettings::set`] takes);
/// every other keyword of an ACME descriptor goes to the inner descriptor.
pub const KEYWORDS: [&str; 10] = [
    "directory",
    "email",
    "cacert",
    "challenge",
    "domains",
    "timeout",
    "store",
    "prefix",
    "storeca",
    "lock",
];

const CHALLENGE_EXPECTED: &str = "tls-alpn-01 or http-01";

fn invalid(setting: &str, value: &str, expected: &str) -> Error {
    Error::InvalidSetting {
        setting: setting.to_owned(),
        value: value.to_owned(),
        expected: expected.to_owned(),
    }
}

/// A setting's whole number of seconds, from `least` to a day.
fn seconds(setting: &str, value: &str, least: u64) -> Result<Duration> {
    value
        .parse()
        .ok()
        .filter(|s| (least..=86_400).contains(s))
        .map(Duration::from_secs)
        .ok_or_else(|| {
            invalid(
                setting,
                value,
                &format!("a whole number of seconds, from {least} to 86400 (a day)"),
            )
        })
}

/// The challenge type used to prove control of a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Challenge {
    /// RFC 8737: answered on the TLS listener itself, by a validation certificate served to
    /// handshakes offering ALPN `acme-tls/1`. Needs the listener reachable on port 443.
    TlsAlpn01,
    /// RFC 8555 §8.3: answered at `/.well-known/acme-challenge/<token>` by the plain-HTTP
    /// listeners of the process (see [`http01_answer`](super::http01_answer)). Needs one
    /// reachable on port 80.
    Http01,
}

impl Challenge {
    /// The name used in descriptors and by ACME: `tls-alpn-01` or `http-01`.
    pub fn as_str(self) -> &'static str {
        match self {
            Challenge::TlsAlpn01 => "tls-alpn-01",
            Challenge::Http01 => "http-01",
        }
    }

    pub(crate) fn acme_type(self) -> ChallengeType {
        match self {
            Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
            Challenge::Http01 => ChallengeType::Http01,
        }
    }
}

impl std::str::FromStr for Challenge {
    type Err = Error;

    /// `tls-alpn-01` or `http-01`, in any case.
    fn from_str(text: &str) -> Result<Challenge> {
        match text.to_ascii_lowercase().as_str() {
            "tls-alpn-01" => Ok(Challenge::TlsAlpn01),
            "http-01" => Ok(Challenge::Http01),
            _ => Err(invalid("challenge", text, CHALLENGE_EXPECTED)),
        }
    }
}

/// How to reach the ACME server and what to ask of it: the keywords `txacme:`, `le:`,
/// `lets:` and `torsion certs` take. Its `Debug` form gives a store's password as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    /// The ACME directory URL (RFC 8555 §7.1.1), `directory=`.
    pub directory_url: String,
    /// The account's contact address, `email=` (sent as `mailto:`), if any.
    pub email: Option<String>,
    /// A PEM file of extra trust anchors for the ACME server's own HTTPS, `cacert=`.
    pub cacert: Option<PathBuf>,
    /// The challenge type, `challenge=`.
    pub challenge: Challenge,
    /// Names to manage besides the directory's `*.pem` files, `domains=a.example,b.example`.
    pub domains: Vec<String>,
    /// How long one issuance may wait for validation and for the certificate, `timeout=`
    /// (seconds, at most a day).
    pub timeout: Duration,
    /// The Redis store shared by a fleet of servers, `store=redis://[:password@]host[:port][/db]`
    /// or `rediss://...` (feature `redis`); the directory is then this server's copy of it.
    pub store: Option<String>,
    /// The prefix of the store's keys, `prefix=` ([`DEFAULT_PREFIX`] by default), so that
    /// several sites can share one Redis.
    pub prefix: String,
    /// A PEM file of trust anchors for a `rediss://` store's certificate, `storeca=`, in
    /// place of the platform's roots.
    pub store_ca: Option<PathBuf>,
    /// How long the fleet's lock on a name outlives a holder that stops renewing it (a
    /// server killed mid-order), `lock=` (seconds, 10 at least); the holder renews it every
    /// third of that.
    pub lock: Duration,
}

pub use super::shared::DEFAULT_PREFIX;
/// The default `lock=`.
pub const DEFAULT_LOCK: Duration = Duration::from_secs(60);

impl std::fmt::Debug for AcmeSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeSettings")
            .field("directory_url", &self.directory_url)
            .field("email", &self.email)
            .field("cacert", &self.cacert)
            .field("challenge", &self.challenge)
            .field("domains", &self.domains)
            .field("timeout", &self.timeout)
            .field("store", &self.store.as_deref().map(super::shared::redacted))
            .field("prefix", &self.prefix)
            .field("store_ca", &self.store_ca)
            .field("lock", &self.lock)
            .finish()
    }
}

/// Let's Encrypt's production ACME v2 directory (`le:`, and `txacme:` without `directory=`).
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging ACME v2 directory (`lets:`).
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";
/// The default `timeout=`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

impl AcmeSettings {
    /// Settings for `directory_url` with every other setting at its default: no contact,
    /// no extra trust anchor, tls-alpn-01, no extra names, a 120 s timeout.
    pub fn new(directory_url: impl Into<String>) -> AcmeSettings {
        AcmeSettings {
            directory_url: directory_url.into(),
            email: None,
            cacert: None,
            challenge: Challenge::TlsAlpn01,
            domains: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            store: None,
            prefix: DEFAULT_PREFIX.to_owned(),
            store_ca: None,
            lock: DEFAULT_LOCK,
        }
    }
}

impl AcmeSettings {
    /// Sets one setting from its text, as the keyword of the same name in a descriptor
    /// (see [`KEYWORDS`], and [`AcmeEndpoint`](super::AcmeEndpoint) for what each means).
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] naming the setting, the value and what is accepted: an
    /// `http://` or `https://` URL; an e-mail address; a non-empty path; `tls-alpn-01` or
    /// `http-01`; comma-separated host names without wildcards; a whole number of seconds
    /// up to a day (at least 1, or 10 for `lock`); a `redis://` or `rediss://` URL (and a build with feature `redis`);
    /// letters, digits and `:_.-`; or one of [`KEYWORDS`].
    pub fn set(&mut self, setting: &str, value: &str) -> Result<()> {
        match setting {
            "directory" => {
                if !(value.starts_with("https://") || value.starts_with("http://")) {
                    return Err(invalid(
                        setting,
                        value,
                        "an ACME directory URL such as https://acme-v02.api.letsencrypt.org/directory (write each : as \\: in a descriptor)",
                    ));
                }
                self.directory_url = value.to_owned();
            }
            "email" => {
                if !value.contains('@') || value.contains(char::is_whitespace) {
                    return Err(invalid(
                        setting,
                        value,
                        "an e-mail address such as admin@example.com",
                    ));
                }
                self.email = Some(value.to_owned());
            }
            "cacert" => {
                if value.is_empty() {
                    return Err(invalid(setting, value, "a PEM file of CA certificates"));
                }
                self.cacert = Some(PathBuf::from(value));
            }
            "challenge" => self.challenge = value.parse()?,
            "domains" => {
                let names: Vec<String> = value
                    .split(',')
                    .map(|d| d.trim().to_ascii_lowercase())
                    .filter(|d| !d.is_empty())
                    .collect();
                if let Some(bad) = names.iter().find(|n| !is_host_name(n)) {
                    return Err(invalid(
                        setting,
                        bad,
                        "comma-separated host names such as a.example.com,b.example.com (no wildcards: they need dns-01)",
                    ));
                }
                self.domains = names;
            }
            "timeout" => self.timeout = seconds(setting, value, 1)?,
            // Shorter, and one slow renewal of the lock (Redis's 5 s timeout, retried) could
            // outlast it while the holder is alive.
            "lock" => self.lock = seconds(setting, value, 10)?,
            "store" => {
                const EXPECTED: &str = "a Redis URL, redis://[:password@]host[:port][/db] or rediss://... (write each : as \\: in a descriptor)";
                let shown = super::shared::redacted(value);
                if !(value.starts_with("redis://") || value.starts_with("rediss://")) {
                    return Err(invalid(setting, &shown, EXPECTED));
                }
                #[cfg(feature = "redis")]
                super::redis::check_url(value).map_err(|problem| {
                    invalid(
                        setting,
                        &shown,
                        &format!("{EXPECTED}; the Redis client says: {problem}"),
                    )
                })?;
                #[cfg(not(feature = "redis"))]
                return Err(invalid(
                    setting,
                    &shown,
                    "a build of torsion-endpoints with its feature redis",
                ));
                #[cfg(feature = "redis")]
                {
                    self.store = Some(value.to_owned());
                }
            }
            "prefix" => {
                if value.is_empty()
                    || !value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b":_.-".contains(&b))
                {
                    return Err(invalid(
                        setting,
                        value,
                        "letters, digits and any of : _ . - (such as mysite:acme)",
                    ));
                }
                self.prefix = value.to_owned();
            }
            "storeca" => {
                if value.is_empty() {
                    return Err(invalid(setting, value, "a PEM file of CA certificates"));
                }
                self.store_ca = Some(PathBuf::from(value));
            }
            _ => return Err(invalid("ACME setting", setting, &KEYWORDS.join(", "))),
        }
        Ok(())
    }
}
