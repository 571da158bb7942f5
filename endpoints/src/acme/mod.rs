//! Certificates obtained and renewed over ACME v2 (RFC 8555) with instant-acme (feature
//! `acme`): the kinds `txacme:DIR:<inner>`, `le:DIR:<inner>` and `lets:DIR:<inner>`, the
//! directory store, the manager that keeps it fresh, the challenge tables an HTTP server
//! consults, and the one-shot operations behind `torsion certs`. A fleet of servers shares
//! a [`shared::SharedStore`] (with feature `redis`, [`redis::RedisStore`]: `store=` on the
//! ACME kinds) for certificates, locks and challenges, and [`Mirror`] copies it into each
//! server's directory.
//!
//! ```text
//! AcmeEndpoint::listen ─► CertificateStore (DIR/<name>.pem, acme-account.key, lock)
//!                      └► AcmeManager::run ─ order ─► challenge (tls-alpn-01 table, or
//!                         http-01 table read by the server through http01_answer)
//!                         ─► certificate written atomically ─► CertificateResolver
//! CertificateDirectory::{status, issue, renew}: the same, once, for programs that do not serve
//! ```

mod certs;
mod challenge;
mod client;
mod endpoint;
mod fleet;
mod manager;
mod mirror;
#[cfg(feature = "redis")]
pub mod redis;
mod settings;
pub mod shared;
mod store;

pub use crate::tls::ACME_TLS_ALPN;
pub use certs::{CertificateDirectory, Outcomes, is_issuable_name};
pub use challenge::{HTTP01_PATH_PREFIX, http01_answer, http01_key_authorization};
pub(crate) use endpoint::AcmeKind;
pub use endpoint::{AcmeEndpoint, challenge_listener};
pub use manager::{AcmeManager, CHECK_EVERY, NameStatus, Renewal, renewals};
pub use mirror::{Copied, Mirror};
pub use settings::{
    AcmeSettings, Challenge, DEFAULT_LOCK, DEFAULT_PREFIX, DEFAULT_TIMEOUT, KEYWORDS, LETS_ENCRYPT,
    LETS_ENCRYPT_STAGING,
};
pub use store::{
    ACCOUNT_KEY_FILE, CertificateFacts, CertificateState, CertificateStore, LOCK_FILE,
};
