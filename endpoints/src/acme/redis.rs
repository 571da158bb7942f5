//! A certificate store in Redis (feature `redis`), shared by every server of a fleet: the
//! certificates, the ACME account key, one lock per name with a fencing token, the answers
//! to pending challenges, and a channel that tells every server what changed.
//!
//! Keys, under a prefix (`torsion:acme` unless `prefix=` says otherwise), so that several
//! sites can share one Redis:
//!
//! | key | value |
//! |---|---|
//! | `<prefix>:cert:<name>` | the key, the leaf and its chain, in PEM |
//! | `<prefix>:written:<name>` | the fencing token the certificate was written under |
//! | `<prefix>:expires:<name>` | when that certificate expires (Unix seconds) |
//! | `<prefix>:lock:<name>` | the lock holder's random token, with an expiry |
//! | `<prefix>:fence:<name>` | the last fencing token handed out (a counter) |
//! | `<prefix>:account` | the ACME account key, in PEM |
//! | `<prefix>:challenge:<kind>:<key>` | a challenge answer, with an expiry |
//! | `<prefix>:ack:<kind>:<key>` | the members that copied that answer (a set, same expiry) |
//! | `<prefix>:members` | the servers mirroring the store, each scored with when its entry expires (milliseconds, Redis's clock) |
//!
//! Changes are published on `<prefix>:changes` as `cert <name>`, `challenge <kind> <key>`
//! and `withdrawn <kind> <key>`.
//!
//! The lock follows Redis's single-instance recipe: `SET NX PX` with a random token, extended
//! and released only by a script that first checks the token. A lock can expire under a
//! holder that stalled, so each lock also hands out a fencing token (Martin Kleppmann's
//! term), one higher than any before for that name; a certificate is written only with a
//! token at least as high as the one it replaces, so a holder whose lock ran out cannot
//! overwrite a newer certificate.

use std::time::Duration;

use redis::AsyncCommands;

pub use super::shared::{Change, Lease, SharedStore, StoreError};
use super::shared::{random_token, redacted};
use redis::aio::ConnectionManager;

/// The prefix of every key when the descriptor gives none.
pub use super::shared::DEFAULT_PREFIX;

/// How long a connection, a command or a subscription may take before it counts as failed.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Takes the lock if it is free, and hands out the next fencing token.
/// KEYS: lock, fence. ARGV: token, milliseconds. Returns the fencing token, or 0.
static ACQUIRE: Lua = Lua::new(
    "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then \
    return redis.call('INCR', KEYS[2]) else return 0 end",
);

/// Extends the lock if it is still the caller's. KEYS: lock. ARGV: token, milliseconds.
static EXTEND: Lua = Lua::new(
    "if redis.call('GET', KEYS[1]) == ARGV[1] then \
    return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end",
);

/// Deletes the lock if it is still the caller's. KEYS: lock. ARGV: token.
static RELEASE: Lua = Lua::new(
    "if redis.call('GET', KEYS[1]) == ARGV[1] then \
    return redis.call('DEL', KEYS[1]) else return 0 end",
);

/// Writes a certificate unless one written under a higher fencing token is there, and
/// announces it. KEYS: cert, written, expires. ARGV: pem, fence, channel, message, expiry.
/// Returns 1 if written, 0 if refused.
static WRITE_FENCED: Lua = Lua::new(
    "local seen = tonumber(redis.call('GET', KEYS[2]) or '0') \
    if tonumber(ARGV[2]) < seen then return 0 end \
    redis.call('SET', KEYS[1], ARGV[1]) \
    redis.call('SET', KEYS[2], ARGV[2]) \
    redis.call('SET', KEYS[3], ARGV[5]) \
    redis.call('PUBLISH', ARGV[3], ARGV[4]) \
    return 1",
);

/// Stores a certificate where there is none, or where the stored one expires sooner, and
/// announces it. KEYS: cert, expires. ARGV: pem, expiry, channel, message. Returns 1 if
/// stored, 0 if the stored one lasts as long or longer.
static SEED: Lua = Lua::new(
    "if redis.call('EXISTS', KEYS[1]) == 1 and \
    tonumber(redis.call('GET', KEYS[2]) or '0') >= tonumber(ARGV[2]) then return 0 end \
    redis.call('SET', KEYS[1], ARGV[1]) \
    redis.call('SET', KEYS[2], ARGV[2]) \
    redis.call('PUBLISH', ARGV[3], ARGV[4]) \
    return 1",
);

/// Withdraws an answer if it is still the caller's, and announces it. KEYS: challenge, ack.
/// ARGV: answer, channel, message. Returns 1 if withdrawn.
static WITHDRAW: Lua = Lua::new(
    "if redis.call('GET', KEYS[1]) == ARGV[1] then \
    redis.call('DEL', KEYS[1], KEYS[2]) \
    redis.call('PUBLISH', ARGV[2], ARGV[3]) return 1 else return 0 end",
);

/// Acknowledges an answer if it is still the one copied. KEYS: challenge, ack. ARGV:
/// member, answer, milliseconds. Returns 1 if acknowledged.
static ACK: Lua = Lua::new(
    "if redis.call('GET', KEYS[1]) == ARGV[2] then \
    redis.call('SADD', KEYS[2], ARGV[1]) \
    redis.call('PEXPIRE', KEYS[2], ARGV[3]) return 1 else return 0 end",
);

/// Enters a member until Redis's clock passes now + ttl. KEYS: members. ARGV: member,
/// milliseconds.
static JOIN: Lua = Lua::new(
    "local t = redis.call('TIME') \
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) \
    return redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])",
);

/// Drops the members whose entries expired and returns the others. KEYS: members.
static MEMBERS: Lua = Lua::new(
    "local t = redis.call('TIME') \
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) \
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now) \
    return redis.call('ZRANGE', KEYS[1], 0, -1)",
);

/// A script's text, and the script made from it (its SHA-1 digest computed) on first use.
struct Lua {
    text: &'static str,
    script: std::sync::OnceLock<redis::Script>,
}

impl Lua {
    const fn new(text: &'static str) -> Lua {
        Lua {
            text,
            script: std::sync::OnceLock::new(),
        }
    }

    fn script(&self) -> &redis::Script {
        self.script.get_or_init(|| redis::Script::new(self.text))
    }
}

/// A message of the store's channel, as a [`Change`].
fn parse_change(message: &str) -> Option<Change> {
    let mut words = message.split(' ');
    let change = match (words.next()?, words.next(), words.next()) {
        ("cert", Some(name), None) => Change::Certificate(name.to_owned()),
        ("challenge", Some(kind), Some(key)) => Change::Challenge(kind.to_owned(), key.to_owned()),
        ("withdrawn", Some(kind), Some(key)) => Change::Withdrawn(kind.to_owned(), key.to_owned()),
        _ => return None,
    };
    words.next().is_none().then_some(change)
}

/// A certificate store in one Redis database (see the module's documentation for its keys).
#[derive(Clone)]
pub struct RedisStore {
    client: redis::Client,
    connection: ConnectionManager,
    prefix: String,
    url: String,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.url)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Whether `url` is a URL the Redis client takes: the client's complaint if not.
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    redis::Client::open(url)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// The client for `url`, after checking `prefix`.
fn client(url: &str, prefix: &str, ca: Option<&[u8]>) -> Result<redis::Client, StoreError> {
    let fail = |message: String| StoreError {
        url: redacted(url),
        message,
        unreachable: false,
    };
    // The prefix is matched as a glob pattern when keys are listed.
    if prefix.is_empty()
        || !prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":_.-".contains(&b))
    {
        return Err(fail(format!(
            "the key prefix {prefix:?} must be letters, digits and any of : _ . -"
        )));
    }
    match ca {
        Some(ca) => redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(ca.to_vec()),
            },
        ),
        None => redis::Client::open(url),
    }
    .map_err(|e| {
        fail(format!(
            "not a usable Redis URL: {e} (expected redis://[:password@]host[:port][/db] or rediss://...)"
        ))
    })
}

impl RedisStore {
    /// Checks that `url`, `prefix` and `ca` can make a store, without connecting: what a
    /// descriptor's `store=`, `prefix=` and `storeca=` are checked with.
    ///
    /// # Errors
    /// [`StoreError`] as for [`RedisStore::open`].
    pub fn check(url: &str, prefix: &str, ca: Option<&[u8]>) -> Result<(), StoreError> {
        client(url, prefix, ca).map(drop)
    }

    /// A store at the Redis at `url` (`redis://[:password@]host[:port][/db]`, or
    /// `rediss://` for TLS, verified against the system's roots or `ca`, PEM), with keys
    /// under `prefix` (letters, digits and `:_.-`). Nothing is sent yet: the connection is
    /// made on first use, and made again after it is lost, so a store opened while Redis is
    /// down works once Redis is back. Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// [`StoreError`] when the prefix has other characters, the URL is not a Redis URL, or
    /// `ca` is not PEM.
    pub fn open(url: &str, prefix: &str, ca: Option<&[u8]>) -> Result<RedisStore, StoreError> {
        let client = client(url, prefix, ca)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(2);
        let connection = client
            .get_connection_manager_lazy(config)
            .map_err(|e| StoreError {
                url: redacted(url),
                message: format!("cannot make a connection: {e}"),
                unreachable: false,
            })?;
        Ok(RedisStore {
            client,
            connection,
            prefix: prefix.to_owned(),
            url: redacted(url),
        })
    }

    /// [`RedisStore::open`], then a `PING` to check that the server answers and takes the
    /// password.
    ///
    /// # Errors
    /// As [`RedisStore::open`], and [`StoreError`] when the server cannot be reached, or
    /// refuses the password, within 5 s.
    pub async fn connect(
        url: &str,
        prefix: &str,
        ca: Option<&[u8]>,
    ) -> Result<RedisStore, StoreError> {
        let store = RedisStore::open(url, prefix, ca)?;
        store.ping().await?;
        Ok(store)
    }

    /// Checks that the server answers.
    ///
    /// # Errors
    /// [`StoreError`] when it does not, within 5 s.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        match tokio::time::timeout(
            TIMEOUT * 2,
            redis::cmd("PING").query_async::<()>(&mut connection),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(self.fail("connect", err)),
            Err(_) => Err(StoreError {
                url: self.url.clone(),
                message: format!("no answer within {} s", (TIMEOUT * 2).as_secs()),
                unreachable: true,
            }),
        }
    }

    fn key(&self, kind: &str, rest: &str) -> String {
        format!("{}:{kind}:{rest}", self.prefix)
    }

    fn channel(&self) -> String {
        format!("{}:changes", self.prefix)
    }

    fn fail(&self, what: &str, err: redis::RedisError) -> StoreError {
        StoreError {
            url: self.url.clone(),
            unreachable: err.is_io_error()
                || err.is_timeout()
                || err.is_connection_dropped()
                || err.is_connection_refusal(),
            message: format!("cannot {what}: {err}"),
        }
    }

    /// Every key that starts with `prefix` (SCAN, which never blocks the server as KEYS
    /// can); `what` names the operation in the error.
    async fn keys(&self, prefix: &str, what: &str) -> Result<Vec<String>, StoreError> {
        let mut connection = self.connection.clone();
        let mut keys = Vec::new();
        let mut scan = connection
            .scan_match::<_, String>(format!("{prefix}*"))
            .await
            .map_err(|e| self.fail(what, e))?;
        while let Some(key) = scan.next_item().await {
            keys.push(key.map_err(|e| self.fail(what, e))?);
        }
        Ok(keys)
    }
}

impl SharedStore for RedisStore {
    fn location(&self) -> &str {
        &self.url
    }

    async fn certificate(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut connection = self.connection.clone();
        connection
            .get(self.key("cert", name))
            .await
            .map_err(|e| self.fail(&format!("read the certificate of {name}"), e))
    }

    async fn names(&self) -> Result<Vec<String>, StoreError> {
        let prefix = format!("{}:cert:", self.prefix);
        let mut names: Vec<String> = self
            .keys(&prefix, "list the certificates")
            .await?
            .into_iter()
            .map(|key| key[prefix.len()..].to_owned())
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    async fn lock(&self, name: &str, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        let token = random_token();
        let mut connection = self.connection.clone();
        let fence: u64 = ACQUIRE
            .script()
            .key(self.key("lock", name))
            .key(self.key("fence", name))
            .arg(&token)
            .arg(millis(ttl))
            .invoke_async(&mut connection)
            .await
            .map_err(|e| self.fail(&format!("lock {name}"), e))?;
        Ok((fence > 0).then(|| Lease {
            name: name.to_owned(),
            token,
            fence,
        }))
    }

    async fn extend(&self, lease: &Lease, ttl: Duration) -> Result<bool, StoreError> {
        let mut connection = self.connection.clone();
        let extended: i64 = EXTEND
            .script()
            .key(self.key("lock", &lease.name))
            .arg(&lease.token)
            .arg(millis(ttl))
            .invoke_async(&mut connection)
            .await
            .map_err(|e| self.fail(&format!("extend the lock on {}", lease.name), e))?;
        Ok(extended == 1)
    }

    async fn release(&self, lease: Lease) -> Result<bool, StoreError> {
        let mut connection = self.connection.clone();
        let released: i64 = RELEASE
            .script()
            .key(self.key("lock", &lease.name))
            .arg(&lease.token)
            .invoke_async(&mut connection)
            .await
            .map_err(|e| self.fail(&format!("release the lock on {}", lease.name), e))?;
        Ok(released == 1)
    }

    async fn write_certificate(&self, lease: &Lease, pem: &[u8]) -> Result<bool, StoreError> {
        let mut connection = self.connection.clone();
        let written: i64 = WRITE_FENCED
            .script()
            .key(self.key("cert", &lease.name))
            .key(self.key("written", &lease.name))
            .key(self.key("expires", &lease.name))
            .arg(pem)
            .arg(lease.fence)
            .arg(self.channel())
            .arg(format!("cert {}", lease.name))
            .arg(expiry(pem))
            .invoke_async(&mut connection)
            .await
            .map_err(|e| self.fail(&format!("write the certificate of {}", lease.name), e))?;
        Ok(written == 1)
    }

    async fn account_key(&self, generated: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut connection = self.connection.clone();
        let key = format!("{}:account", self.prefix);
        let _: bool = connection
            .set_nx(&key, generated)
            .await
            .map_err(|e| self.fail("store the ACME account key", e))?;
        let stored: Option<Vec<u8>> = connection
            .get(&key)
            .await
            .map_err(|e| self.fail("read the ACME account key", e))?;
        stored.ok_or_else(|| StoreError {
            url: self.url.clone(),
            message: "the ACME account key vanished as it was stored".into(),
            unreachable: false,
        })
    }

    async fn put_challenge(
        &self,
        kind: &str,
        key: &str,
        answer: &[u8],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        redis::pipe()
            .atomic()
            .pset_ex(
                self.key("challenge", &format!("{kind}:{key}")),
                answer,
                millis(ttl),
            )
            .ignore()
            // Acknowledgements of an earlier answer under the same key are not of this one.
            .del(self.key("ack", &format!("{kind}:{key}")))
            .ignore()
            .publish(self.channel(), format!("challenge {kind} {key}"))
            .ignore()
            .exec_async(&mut connection)
            .await
            .map_err(|e| self.fail(&format!("publish the {kind} answer for {key}"), e))
    }

    async fn challenge(&self, kind: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut connection = self.connection.clone();
        connection
            .get(self.key("challenge", &format!("{kind}:{key}")))
            .await
            .map_err(|e| self.fail(&format!("read the {kind} answer for {key}"), e))
    }

    async fn challenges(&self) -> Result<Vec<(String, String, Vec<u8>)>, StoreError> {
        let prefix = format!("{}:challenge:", self.prefix);
        let mut connection = self.connection.clone();
        let mut answers = Vec::new();
        for key in self.keys(&prefix, "list the challenge answers").await? {
            let Some((kind, name)) = key[prefix.len()..].split_once(':') else {
                continue;
            };
            // Gone since the scan: withdrawn or expired.
            let answer: Option<Vec<u8>> = connection
                .get(&key)
                .await
                .map_err(|e| self.fail("read a challenge answer", e))?;
            if let Some(answer) = answer {
                answers.push((kind.to_owned(), name.to_owned(), answer));
            }
        }
        Ok(answers)
    }

    async fn remove_challenge(
        &self,
        kind: &str,
        key: &str,
        answer: &[u8],
    ) -> Result<bool, StoreError> {
        let mut connection = self.connection.clone();
        let removed: i64 = WITHDRAW
            .script()
            .key(self.key("challenge", &format!("{kind}:{key}")))
            .key(self.key("ack", &format!("{kind}:{key}")))
            .arg(answer)
            .arg(self.channel())
            .arg(format!("withdrawn {kind} {key}"))
            .invoke_async(&mut connection)
            .await
            .map_err(|e| self.fail(&format!("withdraw the {kind} answer for {key}"), e))?;
        Ok(removed == 1)
    }

    async fn ack(
        &self,
        kind: &str,
        key: &str,
        member: &str,
        answer: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut connection = self.connection.clone();
        let acknowledged: i64 = ACK
            .script()
            .key(self.key("challenge", &format!("{kind}:{key}")))
            .key(self.key("ack", &format!("{kind}:{key}")))
            .arg(member)
            .arg(answer)
            .arg(millis(ttl))
            .invoke_async(&mut connection)
            .await
            .map_err(|e| self.fail(&format!("acknowledge the {kind} answer for {key}"), e))?;
        Ok(acknowledged == 1)
    }

    async fn acks(&self, kind: &str, key: &str) -> Result<Vec<String>, StoreError> {
        let mut connection = self.connection.clone();
        let mut members: Vec<String> = connection
            .smembers(self.key("ack", &format!("{kind}:{key}")))
            .await
            .map_err(|e| self.fail(&format!("read who copied the {kind} answer for {key}"), e))?;
        members.sort();
        Ok(members)
    }

    async fn join(&self, member: &str, ttl: Duration) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        JOIN.script()
            .key(format!("{}:members", self.prefix))
            .arg(member)
            .arg(millis(ttl))
            .invoke_async::<()>(&mut connection)
            .await
            .map_err(|e| self.fail("announce this server as a member", e))
    }

    async fn members(&self) -> Result<Vec<String>, StoreError> {
        let mut connection = self.connection.clone();
        let mut members: Vec<String> = MEMBERS
            .script()
            .key(format!("{}:members", self.prefix))
            .invoke_async(&mut connection)
            .await
            .map_err(|e| self.fail("list the members", e))?;
        members.sort();
        Ok(members)
    }

    async fn seed_certificate(&self, name: &str, pem: &[u8]) -> Result<bool, StoreError> {
        let mut connection = self.connection.clone();
        let stored: i64 = SEED
            .script()
            .key(self.key("cert", name))
            .key(self.key("expires", name))
            .arg(pem)
            .arg(expiry(pem))
            .arg(self.channel())
            .arg(format!("cert {name}"))
            .invoke_async(&mut connection)
            .await
            .map_err(|e| self.fail(&format!("store the certificate of {name}"), e))?;
        Ok(stored == 1)
    }

    fn changes(&self) -> tokio::sync::mpsc::Receiver<Change> {
        let (sender, receiver) = tokio::sync::mpsc::channel(64);
        let client = self.client.clone();
        let channel = self.channel();
        let url = self.url.clone();
        tokio::spawn(async move {
            // The first failure of a run of them is a warning; the retries every second
            // after it are debug lines, until one succeeds.
            let mut failing = false;
            loop {
                match subscribe(&client, &channel).await {
                    Ok(messages) => {
                        if failing {
                            tracing::info!(url = %url, "subscribed to the Redis store's changes again");
                        }
                        failing = false;
                        if sender.send(Change::Resync).await.is_err() {
                            return;
                        }
                        if relay(messages, &sender).await.is_err() {
                            return;
                        }
                        tracing::warn!(url = %url, "the Redis store's change channel was lost; subscribing again");
                    }
                    Err(err) if failing => {
                        tracing::debug!(url = %url, "cannot subscribe to the Redis store's changes: {err}");
                    }
                    Err(err) => {
                        failing = true;
                        tracing::warn!(url = %url, "cannot subscribe to the Redis store's changes, trying again every second: {err}");
                    }
                }
                tokio::select! {
                    () = sender.closed() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        });
        receiver
    }
}

/// A subscription to `channel`, made within the timeout.
async fn subscribe(
    client: &redis::Client,
    channel: &str,
) -> Result<redis::aio::PubSubStream, String> {
    let subscribed = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok::<_, redis::RedisError>(pubsub.into_on_message())
    };
    match tokio::time::timeout(TIMEOUT, subscribed).await {
        Ok(Ok(messages)) => Ok(messages),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err(format!("no answer within {} s", TIMEOUT.as_secs())),
    }
}

/// Passes the subscription's messages on until it ends (`Ok`) or the receiver is gone
/// (`Err`).
async fn relay(
    mut messages: redis::aio::PubSubStream,
    sender: &tokio::sync::mpsc::Sender<Change>,
) -> Result<(), ()> {
    use futures_util::StreamExt;
    loop {
        tokio::select! {
            () = sender.closed() => return Err(()),
            message = messages.next() => {
                let Some(message) = message else { return Ok(()) };
                let text = String::from_utf8_lossy(message.get_payload_bytes());
                match parse_change(&text) {
                    Some(change) => sender.send(change).await.map_err(drop)?,
                    None => tracing::debug!(message = %text, "ignoring an unknown message on the Redis store's channel"),
                }
            }
        }
    }
}

/// When the certificate in `pem` expires, in Unix seconds (0 if it does not parse).
fn expiry(pem: &[u8]) -> u64 {
    super::store::CertificateFacts::from_pem(pem)
        .ok()
        .and_then(|facts| facts.not_after.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |since| since.as_secs())
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_parse_and_passwords_stay_out_of_messages() {
        assert_eq!(
            parse_change("cert a.example"),
            Some(Change::Certificate("a.example".into()))
        );
        assert_eq!(
            parse_change("challenge http-01 tok"),
            Some(Change::Challenge("http-01".into(), "tok".into()))
        );
        assert_eq!(
            parse_change("withdrawn tls-alpn-01 a.example"),
            Some(Change::Withdrawn("tls-alpn-01".into(), "a.example".into()))
        );
        for bad in ["", "cert", "cert a b", "other x", "challenge http-01"] {
            assert_eq!(parse_change(bad), None, "{bad:?}");
        }
        assert_eq!(
            redacted("redis://:s3cret@10.0.0.5:6379/0"),
            "redis://:***@10.0.0.5:6379/0"
        );
        assert_eq!(
            redacted("rediss://user:pw@host/1"),
            "rediss://user:***@host/1"
        );
        assert_eq!(redacted("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        let (a, b) = (random_token(), random_token());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
