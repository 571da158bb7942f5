//! The interface of a certificate store shared by a fleet of servers, after Caddy's
//! CertMagic storage: what the ACME manager needs to issue each name once across the fleet
//! (a lock per name with an expiry and a fencing token, certificates written only under the
//! newest lock, one ACME account), and what every server needs to answer any challenge and
//! serve every certificate (challenge answers, their acknowledgements, the members, and a
//! watch for changes). [`RedisStore`](super::redis::RedisStore) (feature `redis`)
//! implements it.
//!
//! A server never serves from the shared store directly: a [`Mirror`](super::Mirror) copies
//! it into the server's certificate directory ([`CertificateStore`](super::CertificateStore),
//! whose layout and behaviour are the same with or without a fleet), which the resolvers and
//! the http-01 handler read. So no handshake or request waits on the shared store, and a
//! server cut off from it serves what it last copied.

use std::future::Future;
use std::time::Duration;

/// The default `prefix=` of a shared store's keys.
pub const DEFAULT_PREFIX: &str = "torsion:acme";

/// Why a shared store operation failed: the store's address and what went wrong.
#[derive(Debug, thiserror::Error)]
#[error("store {url}: {message}")]
pub struct StoreError {
    /// The store's address (a URL, with any password left out).
    pub url: String,
    /// What failed.
    pub message: String,
    /// Whether the store could not be reached at all (no connection, a timeout), as
    /// opposed to refusing the operation (a wrong password, a read-only replica): the first
    /// passes when the store is back, the second needs an operator.
    pub unreachable: bool,
}

/// A lock on one name, held until it expires or is released; carries the fencing token
/// that certificates written under it are stamped with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The name locked.
    pub name: String,
    /// This holder's random token: only it can extend or release the lock.
    pub token: String,
    /// One higher than the token of every earlier lock on the name.
    pub fence: u64,
}

/// What changed in a shared store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new certificate for the name.
    Certificate(String),
    /// A challenge answer was put: its kind (`http-01`, `tls-alpn-01`) and key.
    Challenge(String, String),
    /// A challenge answer was withdrawn.
    Withdrawn(String, String),
    /// The subscription was lost and made again: changes may have been missed, so whatever
    /// mirrors the store should read it again.
    Resync,
}

/// A certificate store shared by the servers of a fleet. Names are host names; challenge
/// kinds are `http-01` and `tls-alpn-01`, and their keys a token or a host name; nothing
/// read from a store is trusted as a path (the [`Mirror`](super::Mirror) checks it).
///
/// A lock can expire under a holder that stalled, so every lock hands out a fencing token
/// (Martin Kleppmann's term) higher than any before for that name, and a certificate is
/// written only with a token at least as high as the one it replaces.
pub trait SharedStore: Clone + Send + Sync + 'static {
    /// Where the store is, for messages (a URL without its password).
    fn location(&self) -> &str;

    /// The PEM stored for `name`, if any.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be asked.
    fn certificate(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;

    /// The names with a stored certificate, sorted.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be asked.
    fn names(&self) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// Takes the lock on `name` for `ttl` if nobody holds it: `None` when another holder
    /// does.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be asked.
    fn lock(
        &self,
        name: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<Option<Lease>, StoreError>> + Send;

    /// Extends `lease` to `ttl` from now: `false` when it was lost (expired, and perhaps
    /// taken by another holder).
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be asked.
    fn extend(
        &self,
        lease: &Lease,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Releases `lease`: `false` when it had already been lost.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be asked (the lock then expires by itself).
    fn release(&self, lease: Lease) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Stores `pem` as the certificate of `lease`'s name and announces it, unless a
    /// certificate written under a higher fencing token is already there: `false` then,
    /// and nothing changes.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be asked; nothing is half-written.
    fn write_certificate(
        &self,
        lease: &Lease,
        pem: &[u8],
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The ACME account key: the stored one, or else `generated`, stored now. Two servers
    /// starting at once end with the same key.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be asked.
    fn account_key(
        &self,
        generated: &[u8],
    ) -> impl Future<Output = Result<Vec<u8>, StoreError>> + Send;

    /// Publishes the answer to a challenge of `kind` for `key` (a token or a host name) for
    /// `ttl`, forgets who acknowledged an earlier answer under that key, and announces it.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be asked.
    fn put_challenge(
        &self,
        kind: &str,
        key: &str,
        answer: &[u8],
        ttl: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The published answer of `kind` for `key`, if there is one.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be asked.
    fn challenge(
        &self,
        kind: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;

    /// Every published challenge answer: kind, key and answer.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be asked.
    fn challenges(
        &self,
    ) -> impl Future<Output = Result<Vec<(String, String, Vec<u8>)>, StoreError>> + Send;

    /// Withdraws the answer of `kind` for `key` if it is still `answer` (another server may
    /// have put its own since), and announces it: whether it was withdrawn.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be asked (the answer then expires by itself).
    fn remove_challenge(
        &self,
        kind: &str,
        key: &str,
        answer: &[u8],
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records that `member` has copied the answer of `kind` for `key`, `answer`, and serves
    /// it, if that is still the stored answer (`false` if another has replaced it); the
    /// record expires after `ttl`, as the answer does.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be asked.
    fn ack(
        &self,
        kind: &str,
        key: &str,
        member: &str,
        answer: &[u8],
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The members that have copied the answer of `kind` for `key`, sorted.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be asked.
    fn acks(
        &self,
        kind: &str,
        key: &str,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// Says that the server `member` mirrors the store for the next `ttl`: an issuer waits
    /// for every such server to copy a challenge answer before the ACME server is told to
    /// validate.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be asked.
    fn join(
        &self,
        member: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The servers mirroring the store now, sorted.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be asked.
    fn members(&self) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// Stores `pem` as `name`'s certificate if the store has none or one that expires
    /// sooner, and announces it: how a server's directory fills a store that is new, or was
    /// emptied. `false` when the store's lasts as long or longer (it is left alone).
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be asked.
    fn seed_certificate(
        &self,
        name: &str,
        pem: &[u8],
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The store's changes, as they happen, until the receiver is dropped. Must be called
    /// inside a tokio runtime. When the watch is lost it is made again, and
    /// [`Change::Resync`] says that changes may have been missed meanwhile; it also comes
    /// first, once the watch is in place, so that a reader can load the store knowing it
    /// will hear of every later change.
    fn changes(&self) -> tokio::sync::mpsc::Receiver<Change>;
}

/// A random token: 128 bits from the operating system (through rustls's provider, already
/// linked for TLS), in hex; for lock holders and member ids.
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 16];
    if rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes)
        .is_err()
    {
        // Not seen on Linux; a clock-based token still differs between holders.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = nanos.to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `url` with the password, if any, replaced by `***`, for messages and logs.
pub(crate) fn redacted(url: &str) -> String {
    crate::registry::without_passwords(url).into_owned()
}
