//! Issuance and renewal: the ACME conversation for one name (RFC 8555 §7.4), and the
//! schedule that keeps every name of a store fresh.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use instant_acme::{
    Account, AuthorizationStatus, CertificateIdentifier, Identifier, NewOrder, OrderStatus,
    RetryPolicy,
};
use tokio::sync::Notify;

use super::challenge::Provisioned;
use super::client::{AcmeHttp, RetryAfter};
use super::fleet::{Fleet, Lease};
use super::settings::{AcmeSettings, Challenge};
use super::store::{
    CertificateFacts, CertificateState, CertificateStore, account_key_from_pem, certified_key,
};
use crate::error::{Error, Result};
use crate::tls::CertificateResolver;

/// How often every name is checked when nothing is due sooner.
pub const CHECK_EVERY: Duration = Duration::from_secs(12 * 3600);
/// The first wait after a failed attempt; it doubles with each further failure.
const BACKOFF_FIRST: Duration = Duration::from_secs(10);
/// The longest wait between attempts.
const BACKOFF_CAP: Duration = Duration::from_secs(3600);
/// The longest any one HTTP request to the ACME server may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How soon to try again when a fleet's store cannot be reached.
const STORE_RETRY: Duration = Duration::from_secs(10);

/// What one attempt at a name came to, short of an error.
enum Obtained {
    /// A certificate was issued, stored and is served.
    Issued(CertificateFacts),
    /// Looked at again under the lock, the name was no longer due.
    NotDue,
    /// Not attempted: another server of the fleet holds the name's lock, or the fleet's
    /// store cannot be reached (`unreachable`, which holds every other name too). Look
    /// again at `until`; `why`, for a caller that must say.
    Held {
        until: SystemTime,
        why: String,
        unreachable: bool,
    },
}

/// What the ACME managers of this process last did or plan for each name, for metrics and
/// status pages: [`renewals`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Renewal {
    /// The host name.
    pub name: String,
    /// When the manager will next try to obtain a certificate for it (renewal by
    /// lifetime or ARI, or a retry after a failure).
    pub next_attempt: Option<SystemTime>,
    /// When it last tried, if it has.
    pub last_attempt: Option<SystemTime>,
    /// Whether that attempt obtained a certificate.
    pub succeeded: Option<bool>,
    /// Why it failed, when it did.
    pub last_error: Option<String>,
}

static RENEWALS: std::sync::Mutex<std::collections::BTreeMap<String, Renewal>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// What the ACME managers of this process last did and plan next, by name, sorted.
pub fn renewals() -> Vec<Renewal> {
    RENEWALS
        .lock()
        .map(|table| table.values().cloned().collect())
        .unwrap_or_default()
}

/// Updates `name`'s entry in [`renewals`].
fn note(name: &str, update: impl FnOnce(&mut Renewal)) {
    if let Ok(mut table) = RENEWALS.lock() {
        let entry = table.entry(name.to_owned()).or_insert_with(|| Renewal {
            name: name.to_owned(),
            ..Renewal::default()
        });
        update(entry);
    }
}

/// One name's standing, as `torsion certs status` shows it.
#[derive(Clone, Debug)]
pub struct NameStatus {
    /// The host name.
    pub name: String,
    /// What the store holds for it.
    pub state: CertificateState,
    /// When it is due for renewal by lifetime (now, for a missing or unusable certificate).
    pub renew_at: SystemTime,
}

/// Keeps the certificates of one [`CertificateStore`] issued and fresh, and feeds them to a
/// [`CertificateResolver`] as they arrive.
///
/// Renewal follows Let's Encrypt's and Caddy's practice: a certificate is renewed once less
/// than a third of its lifetime is left, or earlier when the server's ACME Renewal
/// Information (RFC 9773) suggests a window that has opened; names are checked at start and
/// every 12 hours. A failed attempt is retried after 10 s, doubling up to an hour, with
/// ±25 % jitter, and never before the server's `Retry-After`; the certificate in service
/// keeps serving meanwhile, and a warning gives the days it has left.
pub struct AcmeManager {
    store: CertificateStore,
    settings: AcmeSettings,
    resolver: Arc<CertificateResolver>,
    http_retry_after: RetryAfter,
    /// The registered account, forgotten after a failed issuance so that the next attempt
    /// finds it again (a server that lost it, such as a restarted Pebble, gets a new one).
    account: std::sync::Mutex<Option<Account>>,
    ari_unsupported: std::sync::atomic::AtomicBool,
    /// ARI answers by certificate identifier: the chosen renewal point, and when to ask
    /// again.
    ari_cache: std::sync::Mutex<HashMap<String, (SystemTime, SystemTime)>>,
    /// The fleet whose shared store the directory copies (`store=`), if any.
    fleet: Option<Fleet>,
}

impl std::fmt::Debug for AcmeManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeManager")
            .field("store", &self.store)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// An [`Error::Acme`] for `name`.
fn acme_error(name: &str, message: impl std::fmt::Display) -> Error {
    Error::Acme {
        name: name.to_owned(),
        message: message.to_string(),
        retry_at: None,
    }
}

impl AcmeManager {
    /// A manager for `store`, answering tls-alpn-01 challenges through `resolver` and
    /// publishing the certificates it obtains there. With `settings.store`, the directory
    /// is this server's copy of a fleet's shared store: names are issued under the fleet's
    /// lock, challenge answers are shared with every server, and certificates are written
    /// to the shared store first (see [`AcmeEndpoint`](super::AcmeEndpoint)).
    ///
    /// # Errors
    /// [`Error::Acme`] when the `cacert=` or `storeca=` file cannot be used, or `store=`
    /// is given to a build without feature `redis`.
    pub fn new(
        store: CertificateStore,
        settings: AcmeSettings,
        resolver: Arc<CertificateResolver>,
    ) -> Result<AcmeManager> {
        let fleet = Fleet::new(&settings, &store)
            .map_err(|message| acme_error(&store.path().display().to_string(), message))?;
        let manager = AcmeManager {
            fleet,
            store,
            settings,
            resolver,
            http_retry_after: RetryAfter::default(),
            account: std::sync::Mutex::new(None),
            ari_unsupported: Default::default(),
            ari_cache: Default::default(),
        };
        manager.http()?;
        Ok(manager)
    }

    /// The store this manager writes to.
    pub fn settings(&self) -> &AcmeSettings {
        &self.settings
    }

    /// The store whose names this manager keeps fresh.
    pub fn store(&self) -> &CertificateStore {
        &self.store
    }

    fn http(&self) -> Result<AcmeHttp> {
        AcmeHttp::new(
            self.settings.cacert.as_deref(),
            REQUEST_TIMEOUT.min(self.settings.timeout),
            self.http_retry_after.clone(),
        )
        .map_err(|message| acme_error(&self.store.path().display().to_string(), message))
    }

    /// Copies the fleet's shared store into the directory, if there is one.
    pub(crate) async fn refresh(&self) -> Result<()> {
        match &self.fleet {
            Some(fleet) => fleet
                .load()
                .await
                .map_err(|e| acme_error(&self.store.path().display().to_string(), e)),
            None => Ok(()),
        }
    }

    /// Every managed name with what the store holds and when it is due, without contacting
    /// the ACME server.
    pub fn status(&self) -> Vec<NameStatus> {
        let now = SystemTime::now();
        self.store
            .names(&self.settings.domains)
            .into_iter()
            .map(|name| {
                let state = self.store.inspect(&name);
                let renew_at = match &state {
                    CertificateState::Present(facts) => facts.renewal_due_at(),
                    _ => now,
                };
                NameStatus {
                    name,
                    state,
                    renew_at,
                }
            })
            .collect()
    }

    /// The ACME account of the store's key, registered on first use (RFC 8555 §7.3; an
    /// existing account for the key is found again, not duplicated).
    async fn account(&self) -> Result<Account> {
        if let Some(account) = self.account.lock().ok().and_then(|a| a.clone()) {
            return Ok(account);
        }
        let directory = self.store.path().display().to_string();
        let mut key = self
            .store
            .account_key()
            .map_err(|message| acme_error(&directory, message))?;
        if let Some(fleet) = &self.fleet {
            // The fleet shares one account: the first server's key.
            let local = self
                .store
                .account_key_pem()
                .map_err(|message| acme_error(&directory, message))?;
            let shared = fleet
                .account_key(&local)
                .await
                .map_err(|e| acme_error(&directory, e))?;
            if shared != local {
                key = account_key_from_pem(&shared).map_err(|message| {
                    acme_error(
                        &directory,
                        format!("the fleet's ACME account key: {message}"),
                    )
                })?;
            }
        }
        let builder = Account::builder_with_http(Box::new(self.http()?));
        let (account, _) = builder
            .create_from_key(key, self.settings.directory_url.clone())
            .await
            .map_err(|e| self.failure(&directory, "register the ACME account", e))?;
        if let Some(email) = &self.settings.email {
            let contact = format!("mailto:{email}");
            if let Err(err) = account.update_contacts(&[contact.as_str()]).await {
                tracing::warn!(%email, "ACME account: the contact address was not set: {err}");
            }
        }
        tracing::info!(account = account.id(), directory = %self.settings.directory_url, "ACME account ready");
        if let Ok(mut slot) = self.account.lock() {
            *slot = Some(account.clone());
        }
        Ok(account)
    }

    fn forget_account(&self) {
        if let Ok(mut slot) = self.account.lock() {
            *slot = None;
        }
    }

    /// An [`Error::Acme`] for a failed step, carrying the server's `Retry-After`.
    fn failure(&self, name: &str, step: &str, err: instant_acme::Error) -> Error {
        let polled = match &err {
            instant_acme::Error::Timeout(Some(at)) => {
                let wait = at.saturating_duration_since(std::time::Instant::now());
                SystemTime::now().checked_add(wait)
            }
            _ => None,
        };
        let asked = self.http_retry_after.take();
        Error::Acme {
            name: name.to_owned(),
            message: format!("cannot {step}: {err}"),
            retry_at: polled.max(asked),
        }
    }

    /// Obtains a certificate for `name` now, whatever the store holds, writes it to the
    /// store and serves it.
    ///
    /// # Errors
    /// [`Error::Acme`] naming the step that failed: another process holds the store's lock,
    /// the account, the order, the challenge (with the server's reason), the finalization
    /// or the download. The store is unchanged then.
    pub async fn issue(&self, name: &str) -> Result<CertificateFacts> {
        match self.obtain(name, false).await? {
            Obtained::Issued(facts) => Ok(facts),
            Obtained::Held { why, .. } => Err(acme_error(name, why)),
            Obtained::NotDue => Err(acme_error(name, "no certificate was obtained")),
        }
    }

    /// [`AcmeManager::issue`]; with `only_if_due`, first checks again under the lock that
    /// `name` is still due (another server sharing the directory or the fleet may have just
    /// renewed it).
    async fn obtain(&self, name: &str, only_if_due: bool) -> Result<Obtained> {
        let Some(_lock) = self.store.try_lock().map_err(|e| {
            acme_error(
                name,
                format!("cannot lock {}: {e}", self.store.path().display()),
            )
        })?
        else {
            return Err(Error::Acme {
                name: name.to_owned(),
                message: format!(
                    "another server or listener is issuing into {} now",
                    self.store.path().display()
                ),
                retry_at: Some(SystemTime::now() + BACKOFF_FIRST),
            });
        };
        let Some(fleet) = &self.fleet else {
            // With the lock held no other order on this directory is waiting: answers still
            // published are what a killed process left. (A fleet's answers in the directory
            // are copies of other servers' orders, and are the mirror's to clear.)
            self.store.clear_challenges();
            return self
                .obtain_locked(name, only_if_due, None, &AtomicBool::new(false))
                .await;
        };
        let lease = match fleet.lock(name).await {
            Ok(Some(lease)) => lease,
            Ok(None) => {
                let why = "another server of the fleet is issuing it; its certificate is copied here once stored";
                tracing::info!(name, "{why}");
                return Ok(Obtained::Held {
                    until: SystemTime::now() + fleet.lock_ttl(),
                    why: why.to_owned(),
                    unreachable: false,
                });
            }
            Err(err) if err.unreachable => {
                let why = format!(
                    "the fleet's store cannot be reached, so nothing is issued now; the certificates copied from it keep serving: {err}"
                );
                tracing::warn!(name, "{why}");
                return Ok(Obtained::Held {
                    until: SystemTime::now() + STORE_RETRY,
                    why,
                    unreachable: true,
                });
            }
            // The store answers but refuses (a wrong password, a read-only replica): a
            // failure like any other, retried with the back-off and shown as the last error.
            Err(err) => {
                return Err(acme_error(
                    name,
                    format!("cannot lock it in the fleet's store: {err}"),
                ));
            }
        };
        tracing::info!(name, fence = lease.fence, "issuing under the fleet's lock");
        let committed = AtomicBool::new(false);
        let outcome = fleet
            .hold(
                &lease,
                &committed,
                self.obtain_locked(name, only_if_due, Some(&lease), &committed),
            )
            .await
            .unwrap_or_else(|lost| {
                Err(acme_error(
                    name,
                    format!("{lost}; the order is abandoned and the certificate in service stays"),
                ))
            });
        fleet.release(lease).await;
        outcome
    }

    /// [`AcmeManager::obtain`] once the locks are held: the directory's, and with a fleet,
    /// the fleet's `lease`.
    async fn obtain_locked(
        &self,
        name: &str,
        only_if_due: bool,
        lease: Option<&Lease>,
        committed: &AtomicBool,
    ) -> Result<Obtained> {
        if let Some(fleet) = &self.fleet {
            // What the fleet holds is what is judged due, not an older copy.
            fleet.copy(name).await.map_err(|e| acme_error(name, e))?;
        }
        if only_if_due {
            let now = SystemTime::now();
            if self.due_at(name, now).await.0 > now {
                tracing::info!(
                    name,
                    "renewed meanwhile by another server sharing the directory or the fleet"
                );
                return Ok(Obtained::NotDue);
            }
        }
        // Stale advice from an earlier answer must not delay this attempt's retry.
        self.http_retry_after.take();
        // Every step has its own limit (30 s a request, `timeout` for each wait), so the
        // whole needs none, and is never cut between issuance and storage.
        let pem = self
            .order(name, committed)
            .await
            .inspect_err(|_| self.forget_account())?;
        let key = certified_key(pem.as_bytes()).map_err(|m| acme_error(name, m))?;
        let facts = CertificateFacts::from_pem(pem.as_bytes()).map_err(|m| acme_error(name, m))?;
        if let (Some(fleet), Some(lease)) = (&self.fleet, lease) {
            // The fleet's store first: a certificate it refuses is served nowhere.
            match fleet.write(lease, pem.as_bytes()).await {
                Ok(true) => {}
                Ok(false) => {
                    return Err(acme_error(
                        name,
                        "another server of the fleet stored a newer certificate under a later lock; this one is discarded",
                    ));
                }
                Err(err) => {
                    return Err(acme_error(
                        name,
                        format!(
                            "the certificate was issued but cannot be stored in the fleet's store, so it is discarded and the one in service stays: {err}"
                        ),
                    ));
                }
            }
        }
        self.store
            .write_certificate(name, pem.as_bytes())
            .map_err(|e| {
                acme_error(
                    name,
                    format!(
                        "cannot write {}: {e}",
                        self.store.certificate_path(name).display()
                    ),
                )
            })?;
        self.resolver
            .set(name, Arc::new(key))
            .map_err(|m| acme_error(name, m))?;
        tracing::info!(name, issuer = %facts.issuer, days_left = facts.days_left(SystemTime::now()), "certificate issued");
        Ok(Obtained::Issued(facts))
    }

    /// The ACME conversation for one name: order, challenge, finalize with a fresh key,
    /// download. Returns the PEM to store: private key, then leaf and chain.
    async fn order(&self, name: &str, committed: &AtomicBool) -> Result<String> {
        let account = self.account().await?;
        let identifiers = [Identifier::Dns(name.to_owned())];
        let replaces = match self.store.inspect(name) {
            CertificateState::Present(facts) if !self.ari_unsupported() => {
                CertificateIdentifier::try_from(&facts.leaf).ok()
            }
            _ => None,
        };
        let mut order = match replaces {
            Some(replaces) => {
                match account
                    .new_order(&NewOrder::new(&identifiers).replaces(replaces))
                    .await
                {
                    Err(instant_acme::Error::Unsupported(_)) => {
                        self.set_ari_unsupported();
                        account.new_order(&NewOrder::new(&identifiers)).await
                    }
                    // The old certificate may belong to another account (a directory taken
                    // over from certbot or txacme) or be replaced already (RFC 9773 §5):
                    // an ordinary order is still right.
                    Err(instant_acme::Error::Api(problem)) => {
                        tracing::info!(name, "ordering without \"replaces\" after: {problem}");
                        account.new_order(&NewOrder::new(&identifiers)).await
                    }
                    other => other,
                }
            }
            None => account.new_order(&NewOrder::new(&identifiers)).await,
        }
        .map_err(|e| self.failure(name, "create an order", e))?;

        let mut provisioned = Vec::new();
        let mut shared = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization =
                authorization.map_err(|e| self.failure(name, "fetch an authorization", e))?;
            match authorization.status {
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                other => {
                    return Err(acme_error(
                        name,
                        format!("the authorization is {other:?}, not pending"),
                    ));
                }
            }
            let offered: Vec<String> = authorization
                .challenges
                .iter()
                .map(|c| format!("{:?}", c.r#type))
                .collect();
            let wanted = self.settings.challenge;
            let mut challenge = authorization.challenge(wanted.acme_type()).ok_or_else(|| {
                acme_error(
                    name,
                    format!(
                        "the ACME server offers no {} challenge (it offers {})",
                        wanted.as_str(),
                        offered.join(", ")
                    ),
                )
            })?;
            let key_authorization = challenge.key_authorization();
            // Answered here, and published in the directory for the other processes that
            // serve from it (worker processes), before the server is told to validate.
            let answer = match wanted {
                Challenge::Http01 => {
                    Provisioned::http01(&self.store, &challenge.token, key_authorization.as_str())
                }
                Challenge::TlsAlpn01 => {
                    Provisioned::tls_alpn01(&self.store, name, key_authorization.digest().as_ref())
                }
            }
            .map_err(|m| acme_error(name, m))?;
            // A fleet's every server answers, whichever the ACME server reaches.
            if let Some(fleet) = &self.fleet {
                let (kind, key, text) = answer.parts();
                let lasts = self
                    .settings
                    .timeout
                    .saturating_add(Duration::from_secs(60));
                shared.push(
                    fleet
                        .share(kind, key, text, lasts)
                        .await
                        .map_err(|e| acme_error(name, e))?,
                );
            }
            provisioned.push(answer);
            challenge
                .set_ready()
                .await
                .map_err(|e| self.failure(name, "start the challenge", e))?;
        }

        let policy = RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .backoff(1.5)
            .timeout(self.settings.timeout);
        let status = order.poll_ready(&policy).await;
        // Withdrawn from the fleet now, whatever the outcome: `torsion certs` may exit soon
        // after, before a withdrawal left to a drop would run.
        for answer in shared {
            answer.withdraw().await;
        }
        let status = status.map_err(|e| {
            self.failure(
                name,
                &format!(
                    "complete the {} challenge",
                    self.settings.challenge.as_str()
                ),
                e,
            )
        })?;
        if status != OrderStatus::Ready {
            return Err(acme_error(
                name,
                format!(
                    "the {} challenge failed: {}",
                    self.settings.challenge.as_str(),
                    challenge_errors(&mut order).await
                ),
            ));
        }
        drop(provisioned);

        let key = rcgen::KeyPair::generate().map_err(|e| acme_error(name, e))?;
        let mut params = rcgen::CertificateParams::new(vec![name.to_owned()])
            .map_err(|e| acme_error(name, e))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params
            .serialize_request(&key)
            .map_err(|e| acme_error(name, e))?;
        // From here the certificate is as good as issued: a lost fleet lock no longer
        // cancels the order (the fenced write decides whether it is kept).
        committed.store(true, Ordering::Release);
        order
            .finalize_csr(csr.der())
            .await
            .map_err(|e| self.failure(name, "finalize the order", e))?;
        let chain = order
            .poll_certificate(&policy)
            .await
            .map_err(|e| self.failure(name, "download the certificate", e))?;
        Ok(format!("{}{}", key.serialize_pem(), chain))
    }

    fn ari_unsupported(&self) -> bool {
        self.ari_unsupported
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn set_ari_unsupported(&self) {
        self.ari_unsupported
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// When `name` is due: now for a missing, requested or unusable certificate; else the
    /// earlier of the lifetime rule and a point chosen in the server's ARI window.
    async fn due_at(&self, name: &str, now: SystemTime) -> (SystemTime, Option<CertificateFacts>) {
        let facts = match self.store.inspect(name) {
            CertificateState::Present(facts) => facts,
            CertificateState::Unreadable(reason) => {
                tracing::warn!(
                    name,
                    "the stored certificate is unusable, asking for a new one: {reason}"
                );
                return (now, None);
            }
            _ => return (now, None),
        };
        let mut due = facts.renewal_due_at();
        if due > now
            && !self.ari_unsupported()
            && let Some(window) = self.renewal_window(&facts).await
        {
            due = due.min(window);
        }
        (due, Some(facts))
    }

    /// A point chosen uniformly in the ARI suggested window (RFC 9773 §4.2), if the server
    /// offers ARI and answers.
    /// The answer is kept until the server's Retry-After (at least an hour), so the
    /// schedule asks at the pace the server wants (RFC 9773 §4.3.2).
    async fn renewal_window(&self, facts: &CertificateFacts) -> Option<SystemTime> {
        let id = CertificateIdentifier::try_from(&facts.leaf).ok()?;
        let key = id.to_string();
        let now = SystemTime::now();
        if let Some((point, until)) = self.ari_cache.lock().ok()?.get(&key)
            && *until > now
        {
            return Some(*point);
        }
        let account = self.account().await.ok()?;
        match account.renewal_info(&id).await {
            Ok((info, ask_again)) => {
                let start = SystemTime::from(info.suggested_window.start);
                let end = SystemTime::from(info.suggested_window.end);
                let span = end.duration_since(start).unwrap_or_default();
                let point = start.checked_add(span.mul_f64(random_unit()))?;
                let until = now.checked_add(ask_again.max(Duration::from_secs(3600)))?;
                if let Ok(mut cache) = self.ari_cache.lock() {
                    cache.insert(key, (point, until));
                }
                Some(point)
            }
            Err(instant_acme::Error::Unsupported(_)) => {
                self.set_ari_unsupported();
                None
            }
            Err(err) => {
                tracing::debug!("ACME renewal information unavailable: {err}");
                None
            }
        }
    }

    /// The names due now (missing, requested, unusable, or in their renewal window).
    pub async fn due_names(&self) -> Vec<String> {
        let now = SystemTime::now();
        let mut due = Vec::new();
        for name in self.store.names(&self.settings.domains) {
            if self.due_at(&name, now).await.0 <= now {
                due.push(name);
            }
        }
        due
    }

    /// Issues every name that is due (missing, requested, unusable, or in its renewal
    /// window), one after another. Returns each attempt's outcome.
    pub async fn renew_due(&self) -> Vec<(String, Result<CertificateFacts>)> {
        let mut outcomes = Vec::new();
        for name in self.due_names().await {
            match self.obtain(&name, true).await {
                Ok(Obtained::NotDue) => {}
                Ok(Obtained::Issued(facts)) => outcomes.push((name, Ok(facts))),
                Ok(Obtained::Held { why, .. }) => {
                    outcomes.push((name.clone(), Err(acme_error(&name, why))))
                }
                Err(err) => outcomes.push((name, Err(err))),
            }
        }
        outcomes
    }

    /// Runs the schedule until the resolver has no other holder (its listener is gone):
    /// checks at once, then whenever a name is due, a retry is due, the directory changes
    /// (`changed`), or 12 hours have passed.
    pub async fn run(self, changed: Arc<Notify>) {
        // A fleet's mirror runs alongside, for as long as the schedule does; what it copies
        // reaches the resolvers through the directory's watch, which also wakes this loop.
        let _mirror = self.fleet.as_ref().map(Fleet::start_mirror);
        let mut failures: HashMap<String, (u32, SystemTime)> = HashMap::new();
        // Set when the server answered with Retry-After (a rate limit, say): no name is
        // attempted before then, since such limits often cover the account or the domain.
        let mut hold_until = SystemTime::UNIX_EPOCH;
        loop {
            if Arc::strong_count(&self.resolver) <= 1 {
                return;
            }
            let now = SystemTime::now();
            let mut wake_at = now + CHECK_EVERY;
            let names = if hold_until > now {
                wake_at = hold_until;
                Vec::new()
            } else {
                self.store.names(&self.settings.domains)
            };
            for name in names {
                if let Some((_, retry_at)) = failures.get(&name)
                    && *retry_at > now
                {
                    wake_at = wake_at.min(*retry_at);
                    note(&name, |r| r.next_attempt = Some(*retry_at));
                    continue;
                }
                let (due, facts) = self.due_at(&name, now).await;
                if due > now {
                    wake_at = wake_at.min(due);
                    note(&name, |r| r.next_attempt = Some(due));
                    continue;
                }
                let outcome = self.obtain(&name, true).await;
                if let Ok(Obtained::Held {
                    until,
                    why,
                    unreachable,
                }) = &outcome
                {
                    // Not an attempt: look again when the holder's lock would have run out
                    // (its certificate, if stored before then, shows up as not due), or when
                    // the store may be back, for every name at once.
                    wake_at = wake_at.min(*until);
                    note(&name, |r| {
                        r.next_attempt = Some(*until);
                        r.last_error = Some(why.clone());
                    });
                    if *unreachable {
                        hold_until = *until;
                        break;
                    }
                    continue;
                }
                note(&name, |r| {
                    r.last_attempt = Some(now);
                    r.succeeded = Some(outcome.is_ok());
                    r.last_error = outcome.as_ref().err().map(ToString::to_string);
                    r.next_attempt = None;
                });
                match outcome {
                    Ok(issued) => {
                        failures.remove(&name);
                        // Due again by lifetime (the check every 12 hours comes sooner, and
                        // asks ARI then); renewed by another server: the next pass says.
                        let due = match issued {
                            Obtained::Issued(facts) => Some(facts.renewal_due_at()),
                            _ => None,
                        };
                        note(&name, |r| r.next_attempt = due);
                    }
                    Err(err) => {
                        let attempts = failures.get(&name).map_or(1, |(n, _)| n + 1);
                        let server_asked = match &err {
                            Error::Acme { retry_at, .. } => *retry_at,
                            _ => None,
                        };
                        let wait = backoff(attempts);
                        let retry_at = server_asked.map_or(now + wait, |at| at.max(now + wait));
                        let retry_in = retry_at.duration_since(now).unwrap_or_default();
                        match &facts {
                            Some(facts) => tracing::warn!(
                                name,
                                attempt = attempts,
                                days_left = facts.days_left(now),
                                "renewal failed, the current certificate stays in service; retrying in {}s: {err}",
                                retry_in.as_secs()
                            ),
                            None => tracing::warn!(
                                name,
                                attempt = attempts,
                                "no certificate yet; retrying in {}s: {err}",
                                retry_in.as_secs()
                            ),
                        }
                        note(&name, |r| r.next_attempt = Some(retry_at));
                        failures.insert(name, (attempts, retry_at));
                        wake_at = wake_at.min(retry_at);
                        if server_asked.is_some() {
                            hold_until = retry_at;
                            break;
                        }
                    }
                }
            }
            let sleep = wake_at
                .duration_since(SystemTime::now())
                .unwrap_or_default()
                .max(Duration::from_millis(100));
            tokio::select! {
                () = tokio::time::sleep(sleep) => {}
                () = changed.notified() => {}
            }
        }
    }
}

/// The wait before attempt `attempts + 1`: 10 s doubling to an hour, ±25 % jitter.
fn backoff(attempts: u32) -> Duration {
    let base = BACKOFF_FIRST
        .saturating_mul(1 << attempts.saturating_sub(1).min(16))
        .min(BACKOFF_CAP);
    base.mul_f64(0.75 + 0.5 * random_unit())
}

/// A random number in [0, 1) (from the standard library's randomly seeded hasher: jitter
/// needs no cryptographic quality).
fn random_unit() -> f64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64,
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// The errors the server recorded on the order's challenges, for the log.
async fn challenge_errors(order: &mut instant_acme::Order) -> String {
    let mut found = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authorization)) = authorizations.next().await {
        if authorization.refresh().await.is_err() {
            continue;
        }
        for challenge in &authorization.challenges {
            if let Some(problem) = &challenge.error {
                found.push(problem.to_string());
            }
        }
    }
    if found.is_empty() {
        "the order became invalid".into()
    } else {
        found.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_an_hour() {
        for (attempts, base) in [(1, 10), (2, 20), (3, 40), (10, 3600), (40, 3600)] {
            let wait = backoff(attempts).as_secs_f64();
            let base = base as f64;
            assert!(
                wait >= base * 0.75 && wait <= base * 1.25,
                "{attempts}: {wait}"
            );
        }
        let samples: Vec<u64> = (0..20).map(|_| backoff(5).as_millis() as u64).collect();
        assert!(samples.iter().any(|s| *s != samples[0]), "jitter varies");
    }

    #[test]
    fn challenge_names() {
        assert_eq!("HTTP-01".parse::<Challenge>().ok(), Some(Challenge::Http01));
        assert_eq!(
            "tls-alpn-01".parse::<Challenge>().ok(),
            Some(Challenge::TlsAlpn01)
        );
        let err = "dns-01".parse::<Challenge>().unwrap_err();
        assert!(err.to_string().contains("tls-alpn-01 or http-01"), "{err}");
    }
}
