//! The certificate directory shared with txsni: `<name>.pem` files, the ACME account key,
//! atomic writes and the lock that keeps two servers from issuing into it at once.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use rustls::sign::CertifiedKey;

use crate::tls::{Assembly, DEFAULT_NAME, assemble};

/// The ACME account key's file in the directory: a PKCS#8 P-256 key in PEM, mode 0600.
/// (txacme's `client.key`, an RSA key for ACME v1, is left alone.)
pub const ACCOUNT_KEY_FILE: &str = "acme-account.key";
/// The lock file servers sharing the directory take before they issue into it.
pub const LOCK_FILE: &str = ".torsion-acme.lock";
/// The kinds of challenge answer the directory holds while an order waits: the suffixes of
/// their hidden files, `.<token>.http-01` and `.<name>.tls-alpn-01`.
pub(crate) const CHALLENGE_KINDS: [&str; 2] = ["http-01", "tls-alpn-01"];

/// A certificate directory in txsni's layout, as ACME keeps it.
///
/// - `<name>.pem`: the private key, the leaf certificate and its chain, in PEM, mode 0600;
///   an empty `<name>.pem` asks for a certificate for `name` (as txacme documents).
/// - `DEFAULT.pem`: served to clients whose name has no certificate (never issued).
/// - [`ACCOUNT_KEY_FILE`]: the ACME account key; the account itself is found again from
///   the key on each start (RFC 8555 §7.3.1), so nothing else about it is stored.
/// - [`LOCK_FILE`]: an advisory lock (`flock`) held while a certificate is issued.
/// - `.<token>.http-01` and `.<name>.tls-alpn-01`: the answers to the challenges of the
///   order in progress (the key authorization; the validation key and certificate in PEM),
///   there only while the order waits for validation, so that every process serving from
///   the directory answers them, not only the one that placed the order: the workers of a
///   supervisor that runs the ACME manager, or servers sharing the directory. Hidden, and
///   not `.pem`, so txsni and the watchers pass them by.
///
/// Every file is written to a temporary file in the directory (named `.<name>.<random>.tmp`,
/// which txsni ignores), flushed to disk, then renamed over the old one, so a reader or a
/// crash sees the old file or the new one, never a part.
#[derive(Clone, Debug)]
pub struct CertificateStore {
    path: PathBuf,
}

/// What the directory holds for one name.
#[derive(Clone, Debug)]
pub enum CertificateState {
    /// No `<name>.pem` file (the name comes from `domains=`).
    Missing,
    /// An empty `<name>.pem`: a request for a certificate.
    Requested,
    /// A file that does not hold a usable certificate; the message says why.
    Unreadable(String),
    /// A certificate, described.
    Present(CertificateFacts),
}

/// Facts read from a stored leaf certificate.
#[derive(Clone, Debug)]
pub struct CertificateFacts {
    /// The issuer's distinguished name, as RFC 4514 text (`CN=Pebble Intermediate CA ...`).
    pub issuer: String,
    /// Start of validity (notBefore).
    pub not_before: SystemTime,
    /// End of validity (notAfter).
    pub not_after: SystemTime,
    /// The DER of the leaf, for ACME Renewal Information (RFC 9773) lookups.
    pub leaf: CertificateDer<'static>,
}

impl CertificateFacts {
    /// Reads the leaf of a PEM file's text: the certificate whose public key matches the
    /// private key in the text (txsni's rule: any order), else the first certificate.
    ///
    /// # Errors
    /// [`Error::Certificate`](crate::Error::Certificate) when the text holds no certificate
    /// or the leaf does not parse.
    pub fn from_pem(pem: &[u8]) -> crate::error::Result<CertificateFacts> {
        let fault = |reason: String| crate::error::Error::Certificate {
            subject: "PEM data".into(),
            reason,
        };
        let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<_, _>>()
            .map_err(|e| fault(format!("a certificate is not valid PEM: {e}")))?;
        let leaf = PrivateKeyDer::from_pem_slice(pem)
            .ok()
            .and_then(|key| assemble(key, certificates.clone()).ok())
            .map(|served| served.cert[0].clone())
            .or_else(|| certificates.first().cloned())
            .ok_or_else(|| fault("no certificate in PEM form".into()))?;
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref())
            .map_err(|e| fault(format!("the certificate cannot be parsed: {e}")))?;
        let time = |t: &x509_parser::time::ASN1Time| {
            UNIX_EPOCH + Duration::from_secs(t.timestamp().max(0) as u64)
        };
        Ok(CertificateFacts {
            issuer: parsed.issuer().to_string(),
            not_before: time(&parsed.validity().not_before),
            not_after: time(&parsed.validity().not_after),
            leaf,
        })
    }

    /// notAfter minus notBefore.
    pub fn lifetime(&self) -> Duration {
        self.not_after
            .duration_since(self.not_before)
            .unwrap_or_default()
    }

    /// When renewal is due by lifetime alone: once less than a third of the lifetime is
    /// left (30 days of a 90-day certificate), the rule Let's Encrypt and Caddy use.
    pub fn renewal_due_at(&self) -> SystemTime {
        self.not_after - self.lifetime() / 3
    }

    /// Whole days from `now` to notAfter; negative once expired.
    pub fn days_left(&self, now: SystemTime) -> i64 {
        match self.not_after.duration_since(now) {
            Ok(left) => (left.as_secs() / 86_400) as i64,
            Err(past) => -((past.duration().as_secs() / 86_400) as i64) - 1,
        }
    }
}

/// The lock on a store; released when dropped.
#[derive(Debug)]
pub(crate) struct StoreLock {
    _file: File,
}

impl CertificateStore {
    /// The store at `path`, created (mode 0700) if it does not exist.
    ///
    /// # Errors
    /// The I/O error when the directory cannot be created, or `path` is not a directory.
    pub fn open(path: impl Into<PathBuf>) -> io::Result<CertificateStore> {
        let path = path.into();
        if !path.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&path)?;
        }
        if !path.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", path.display()),
            ));
        }
        Ok(CertificateStore { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `<name>.pem` file for `name`.
    pub fn certificate_path(&self, name: &str) -> PathBuf {
        self.path.join(format!("{name}.pem"))
    }

    /// The names to manage: each `<name>.pem` in the directory that names a host (not
    /// `DEFAULT`, not a wildcard: wildcards need dns-01, which is not offered), plus
    /// `domains`, lower-cased, without duplicates, sorted. Files that are skipped are
    /// logged.
    pub fn names(&self, domains: &[String]) -> Vec<String> {
        let mut names: Vec<String> = domains.iter().map(|d| d.to_ascii_lowercase()).collect();
        if let Ok(entries) = std::fs::read_dir(&self.path) {
            for entry in entries.flatten() {
                let file_name = entry.file_name();
                let Some(stem) = file_name.to_str().and_then(|n| n.strip_suffix(".pem")) else {
                    continue;
                };
                if stem == DEFAULT_NAME || stem.starts_with('.') {
                    continue;
                }
                if !is_host_name(stem) {
                    tracing::debug!(file = %entry.path().display(), "not managed by ACME: not a host name (wildcards need dns-01)");
                    continue;
                }
                names.push(stem.to_ascii_lowercase());
            }
        }
        names.sort();
        names.dedup();
        names
    }

    /// What the directory holds for `name`.
    pub fn inspect(&self, name: &str) -> CertificateState {
        let path = self.certificate_path(name);
        match std::fs::read(&path) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => CertificateState::Missing,
            Err(err) => CertificateState::Unreadable(format!("{}: {err}", path.display())),
            Ok(text) if text.iter().all(u8::is_ascii_whitespace) => CertificateState::Requested,
            Ok(text) => match CertificateFacts::from_pem(&text) {
                Ok(facts) => CertificateState::Present(facts),
                Err(crate::error::Error::Certificate { reason, .. }) => {
                    CertificateState::Unreadable(format!("{}: {reason}", path.display()))
                }
                Err(other) => CertificateState::Unreadable(format!("{}: {other}", path.display())),
            },
        }
    }

    /// Replaces `<name>.pem` with `pem` atomically, mode 0600.
    pub(crate) fn write_certificate(&self, name: &str, pem: &[u8]) -> io::Result<()> {
        self.write_atomic(&self.certificate_path(name), pem)
    }

    /// Writes `contents` to `target` through a temporary file in the same directory: write,
    /// fsync, rename, fsync the directory.
    fn write_atomic(&self, target: &Path, contents: &[u8]) -> io::Result<()> {
        let stem = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // tempfile creates the file with mode 0600.
        let mut temporary = tempfile::Builder::new()
            .prefix(&format!(".{stem}."))
            .suffix(".tmp")
            .tempfile_in(&self.path)?;
        temporary.write_all(contents)?;
        temporary.as_file().sync_all()?;
        temporary.persist(target).map_err(|e| e.error)?;
        File::open(&self.path)?.sync_all()
    }

    /// The ACME account key, created on first use.
    ///
    /// # Errors
    /// A message naming [`ACCOUNT_KEY_FILE`] when it cannot be read or written, or holds a
    /// key that is not PKCS#8 P-256.
    pub(crate) fn account_key(
        &self,
    ) -> Result<(instant_acme::Key, PrivateKeyDer<'static>), String> {
        let path = self.path.join(ACCOUNT_KEY_FILE);
        let fail = |e: &dyn std::fmt::Display| format!("ACME account key {}: {e}", path.display());
        let der = match std::fs::read(&path) {
            Ok(pem) => return account_key_from_pem(&pem).map_err(|e| fail(&e)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                let generated = rcgen::KeyPair::generate().map_err(|e| fail(&e))?;
                // Never over another server's key created meanwhile: theirs is then used.
                let mut temporary = tempfile::Builder::new()
                    .prefix(&format!(".{ACCOUNT_KEY_FILE}."))
                    .suffix(".tmp")
                    .tempfile_in(&self.path)
                    .map_err(|e| fail(&e))?;
                temporary
                    .write_all(generated.serialize_pem().as_bytes())
                    .and_then(|()| temporary.as_file().sync_all())
                    .map_err(|e| fail(&e))?;
                match temporary.persist_noclobber(&path) {
                    Ok(_) => {
                        tracing::info!(file = %path.display(), "created an ACME account key");
                    }
                    Err(err) if err.error.kind() == io::ErrorKind::AlreadyExists => {
                        return self.account_key();
                    }
                    Err(err) => return Err(fail(&err.error)),
                }
                generated.serialize_der().into()
            }
            Err(err) => return Err(fail(&err)),
        };
        account_key_from_der(der).map_err(|e| fail(&e))
    }

    /// The PEM of the account key file, created on first use (see
    /// [`CertificateStore::account_key`]).
    ///
    /// # Errors
    /// As [`CertificateStore::account_key`].
    pub(crate) fn account_key_pem(&self) -> Result<Vec<u8>, String> {
        self.account_key()?;
        let path = self.path.join(ACCOUNT_KEY_FILE);
        std::fs::read(&path).map_err(|e| format!("ACME account key {}: {e}", path.display()))
    }

    /// Publishes the answer to a challenge as the hidden file `.<key>.<kind>` (see
    /// [`CHALLENGE_KINDS`]), atomically, mode 0600. `key` must be a token or host name
    /// already checked by the caller (no `/`).
    pub(crate) fn put_challenge(&self, kind: &str, key: &str, answer: &[u8]) -> io::Result<()> {
        self.write_atomic(&self.challenge_path(kind, key), answer)
    }

    /// The published answer for `key` of `kind`, if there is one.
    pub(crate) fn challenge(&self, kind: &str, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.challenge_path(kind, key)).ok()
    }

    /// Withdraws the answer for `key` of `kind`.
    pub(crate) fn remove_challenge(&self, kind: &str, key: &str) {
        let path = self.challenge_path(kind, key);
        if let Err(err) = std::fs::remove_file(&path)
            && err.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(file = %path.display(), "cannot remove a challenge answer: {err}");
        }
    }

    /// Withdraws the answer for `key` of `kind` if it is still `answer` (a fleet's mirror
    /// may have put another server's answer there since).
    pub(crate) fn remove_challenge_if(&self, kind: &str, key: &str, answer: &[u8]) {
        if self
            .challenge(kind, key)
            .is_some_and(|there| there == answer)
        {
            self.remove_challenge(kind, key);
        }
    }

    /// The published answers, as (kind, key).
    pub(crate) fn challenge_keys(&self) -> Vec<(&'static str, String)> {
        let Ok(entries) = std::fs::read_dir(&self.path) else {
            return Vec::new();
        };
        let mut keys = Vec::new();
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some(hidden) = file_name.to_str().and_then(|n| n.strip_prefix('.')) else {
                continue;
            };
            for kind in CHALLENGE_KINDS {
                if let Some(key) = hidden.strip_suffix(kind).and_then(|k| k.strip_suffix('.')) {
                    keys.push((kind, key.to_owned()));
                }
            }
        }
        keys
    }

    /// Removes every published answer: those an order cut short (a killed process) left.
    /// Called with the lock held, when no order of another process can be waiting.
    pub(crate) fn clear_challenges(&self) {
        for (kind, key) in self.challenge_keys() {
            tracing::debug!(
                kind,
                key,
                "removing a challenge answer left by an earlier order"
            );
            self.remove_challenge(kind, &key);
        }
    }

    fn challenge_path(&self, kind: &str, key: &str) -> PathBuf {
        self.path.join(format!(".{key}.{kind}"))
    }

    /// Takes the directory's lock without waiting: `None` when another process (or another
    /// listener of this one) holds it.
    pub(crate) fn try_lock(&self) -> io::Result<Option<StoreLock>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(self.path.join(LOCK_FILE))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(StoreLock { _file: file })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }
}

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};

/// An ACME account key from its PEM (PKCS#8, P-256), as instant-acme takes it.
///
/// # Errors
/// A message saying what the PEM holds instead.
pub(crate) fn account_key_from_pem(
    pem: &[u8],
) -> Result<(instant_acme::Key, PrivateKeyDer<'static>), String> {
    let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| e.to_string())?;
    let PrivateKeyDer::Pkcs8(pkcs8) = der else {
        return Err("not a PKCS#8 key (expected -----BEGIN PRIVATE KEY-----)".into());
    };
    account_key_from_der(pkcs8)
}

fn account_key_from_der(
    der: rustls::pki_types::PrivatePkcs8KeyDer<'static>,
) -> Result<(instant_acme::Key, PrivateKeyDer<'static>), String> {
    let key = instant_acme::Key::from_pkcs8_der(der.clone_key())
        .map_err(|e| format!("{e} (a P-256 ECDSA key is expected)"))?;
    Ok((key, PrivateKeyDer::Pkcs8(der)))
}

/// The served form of a stored PEM: the key and its certificates, the leaf first.
pub(crate) fn certified_key(pem: &[u8]) -> std::result::Result<CertifiedKey, String> {
    let key = PrivateKeyDer::from_pem_slice(pem).map_err(|e| format!("no private key: {e}"))?;
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| format!("a certificate is not valid PEM: {e}"))?;
    assemble(key, certificates).map_err(|fault| match fault {
        Assembly::KeyUnusable(e) => format!("the private key cannot be used: {e}"),
        Assembly::NoCertificate => "no certificate in PEM form".into(),
        Assembly::NoMatch => "no certificate matches the private key".into(),
    })
}

/// A host name ACME can validate by http-01 or tls-alpn-01: letters, digits and hyphens in
/// dot-separated labels, at least two labels (RFC 1123).
pub(crate) fn is_host_name(name: &str) -> bool {
    name.len() <= 253
        && name.contains('.')
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn names_come_from_pem_files_and_domains() {
        let dir = tempfile::tempdir().unwrap();
        for file in [
            "a.example.pem",
            "DEFAULT.pem",
            "*.wild.example.pem",
            "notes.txt",
            "B.Example.pem",
        ] {
            std::fs::write(dir.path().join(file), "").unwrap();
        }
        let store = CertificateStore::open(dir.path()).unwrap();
        assert_eq!(
            store.names(&["c.example".into(), "a.example".into()]),
            ["a.example", "b.example", "c.example"]
        );
        assert!(matches!(
            store.inspect("a.example"),
            CertificateState::Requested
        ));
        assert!(matches!(
            store.inspect("c.example"),
            CertificateState::Missing
        ));
        std::fs::write(dir.path().join("bad.example.pem"), "garbage").unwrap();
        assert!(
            matches!(store.inspect("bad.example"), CertificateState::Unreadable(m) if m.contains("bad.example.pem"))
        );
    }

    #[test]
    fn writes_are_atomic_private_and_leave_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = CertificateStore::open(dir.path().join("new")).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(store.path()), 0o700);
        store.write_certificate("a.example", b"one").unwrap();
        store.write_certificate("a.example", b"two").unwrap();
        let path = store.certificate_path("a.example");
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(mode(&path), 0o600);
        let names: Vec<_> = std::fs::read_dir(store.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["a.example.pem"]);
    }

    #[test]
    fn challenge_answers_are_published_read_withdrawn_and_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let store = CertificateStore::open(dir.path()).unwrap();
        store.put_challenge("http-01", "tok", b"tok.thumb").unwrap();
        store
            .put_challenge("tls-alpn-01", "a.example", b"PEM")
            .unwrap();
        std::fs::write(dir.path().join("a.example.pem"), "").unwrap();
        assert_eq!(
            store.challenge("http-01", "tok").as_deref(),
            Some(&b"tok.thumb"[..])
        );
        let mode = std::fs::metadata(dir.path().join(".tok.http-01"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // Not a certificate: the names to manage do not change.
        assert_eq!(store.names(&[]), ["a.example"]);
        store.remove_challenge("http-01", "tok");
        assert_eq!(store.challenge("http-01", "tok"), None);
        // What an order cut short left behind goes; everything else stays.
        store.clear_challenges();
        assert_eq!(store.challenge("tls-alpn-01", "a.example"), None);
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, ["a.example.pem"]);
    }

    #[test]
    fn account_key_is_created_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let store = CertificateStore::open(dir.path()).unwrap();
        let (_, first) = store.account_key().unwrap();
        let (_, second) = store.account_key().unwrap();
        assert_eq!(first.secret_der(), second.secret_der());
        let path = dir.path().join(ACCOUNT_KEY_FILE);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::write(&path, "not a key").unwrap();
        let Err(message) = store.account_key() else {
            panic!("a garbage key file must be refused")
        };
        assert!(message.contains(ACCOUNT_KEY_FILE), "{message}");
    }

    #[test]
    fn the_lock_excludes_a_second_holder_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let store = CertificateStore::open(dir.path()).unwrap();
        let held = store.try_lock().unwrap().expect("first lock");
        assert!(store.try_lock().unwrap().is_none());
        drop(held);
        assert!(store.try_lock().unwrap().is_some());
    }

    #[test]
    fn facts_give_lifetime_and_renewal_point() {
        let mut params = rcgen::CertificateParams::new(vec!["a.example".into()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2026, 1, 1);
        params.not_after = rcgen::date_time_ymd(2026, 4, 1); // 90 days
        let key = rcgen::KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        let facts = CertificateFacts::from_pem(pem.as_bytes()).unwrap();
        assert_eq!(facts.lifetime(), Duration::from_secs(90 * 86_400));
        let due = facts
            .not_after
            .duration_since(facts.renewal_due_at())
            .unwrap();
        assert_eq!(due, Duration::from_secs(30 * 86_400));
        assert_eq!(
            facts.days_left(facts.not_after - Duration::from_secs(86_400 * 3 + 5)),
            3
        );
        assert!(facts.days_left(facts.not_after + Duration::from_secs(10)) < 0);
        assert!(CertificateFacts::from_pem(b"junk").is_err());
    }

    #[test]
    fn the_leaf_is_the_certificate_matching_the_key_in_any_order() {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.not_after = rcgen::date_time_ymd(2040, 1, 1);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["a.example".into()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2027, 1, 1);
        let leaf = params.signed_by(&key, &issuer).unwrap();
        // The chain first, then the key, then the leaf: txsni accepts any order.
        let pem = ca.pem() + &key.serialize_pem() + &leaf.pem();
        let facts = CertificateFacts::from_pem(pem.as_bytes()).unwrap();
        assert_eq!(facts.leaf, *leaf.der());
    }

    #[test]
    fn host_names() {
        assert!(is_host_name("a.example"));
        assert!(is_host_name("xn--bcher-kva.example"));
        for bad in [
            "localhost",
            "*.example",
            "a..example",
            "-a.example",
            "a_b.example",
            "",
        ] {
            assert!(!is_host_name(bad), "{bad}");
        }
    }
}
