//! The Redis certificate store against a real `redis-server` (Debian's package; `.ci/run`
//! installs it), started by each test on a free loopback port: locks with fencing tokens,
//! fenced certificate writes, challenge answers, the account key, and the change channel.
#![cfg(feature = "redis")]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use torsion_endpoints::acme::redis::{Change, Lease, RedisStore, SharedStore};
use torsion_endpoints::acme::{CertificateStore, Mirror};

/// A `redis-server` on a free loopback port, with no persistence; stopped when dropped.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start() -> Redis {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let redis = Redis {
            child: spawn(port),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

/// `redis-server` on `port` of 127.0.0.1, keeping nothing on disk.
fn spawn(port: u16) -> Child {
    Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (Debian's redis-server package) must be installed")
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The next change, which must come within 20 s.
async fn next(changes: &mut tokio::sync::mpsc::Receiver<Change>) -> Change {
    tokio::time::timeout(Duration::from_secs(20), changes.recv())
        .await
        .expect("a change within 20 s")
        .expect("the change channel open")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn one_holder_at_a_time_and_each_lock_fences_higher() {
    let redis = Redis::start();
    runtime().block_on(async {
        let a = RedisStore::connect(&redis.url(), "site", None)
            .await
            .unwrap();
        let b = RedisStore::connect(&redis.url(), "site", None)
            .await
            .unwrap();
        let ttl = Duration::from_secs(30);
        let first = a
            .lock("a.example", ttl)
            .await
            .unwrap()
            .expect("a free lock");
        assert_eq!(first.fence, 1);
        assert_eq!(b.lock("a.example", ttl).await.unwrap(), None, "held by a");
        // Another name, and the same name under another prefix, are other locks.
        assert!(b.lock("b.example", ttl).await.unwrap().is_some());
        let other = RedisStore::connect(&redis.url(), "other", None)
            .await
            .unwrap();
        assert!(other.lock("a.example", ttl).await.unwrap().is_some());
        // Only the holder's token extends or releases it.
        let forged = Lease {
            token: "not-the-token".into(),
            ..first.clone()
        };
        assert!(!b.extend(&forged, ttl).await.unwrap());
        assert!(!b.release(forged).await.unwrap());
        assert!(a.extend(&first, ttl).await.unwrap());
        assert!(a.release(first.clone()).await.unwrap());
        assert!(!a.release(first).await.unwrap(), "released once");
        let second = b.lock("a.example", ttl).await.unwrap().expect("free again");
        assert_eq!(second.fence, 2);
    });
}

#[test]
fn a_holder_whose_lock_expired_cannot_overwrite_a_newer_certificate() {
    let redis = Redis::start();
    runtime().block_on(async {
        let slow = RedisStore::connect(&redis.url(), "site", None)
            .await
            .unwrap();
        let fast = RedisStore::connect(&redis.url(), "site", None)
            .await
            .unwrap();
        let stalled = slow
            .lock("a.example", Duration::from_millis(200))
            .await
            .unwrap()
            .unwrap();
        // The lock runs out under the stalled holder; another server takes it.
        let deadline = Instant::now() + Duration::from_secs(10);
        let newer = loop {
            if let Some(lease) = fast
                .lock("a.example", Duration::from_secs(30))
                .await
                .unwrap()
            {
                break lease;
            }
            assert!(Instant::now() < deadline, "the lock never expired");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(newer.fence > stalled.fence);
        assert!(fast.write_certificate(&newer, b"NEWER").await.unwrap());
        assert!(
            !slow.write_certificate(&stalled, b"STALE").await.unwrap(),
            "a lower fencing token must be refused"
        );
        assert!(
            !slow
                .extend(&stalled, Duration::from_secs(30))
                .await
                .unwrap()
        );
        assert_eq!(
            slow.certificate("a.example").await.unwrap().as_deref(),
            Some(&b"NEWER"[..])
        );
        assert_eq!(fast.names().await.unwrap(), vec!["a.example".to_owned()]);
        assert_eq!(fast.certificate("b.example").await.unwrap(), None);
    });
}

#[test]
fn challenges_and_the_account_key_are_shared_and_changes_are_announced() {
    let redis = Redis::start();
    runtime().block_on(async {
        let placing = RedisStore::connect(&redis.url(), "site", None)
            .await
            .unwrap();
        let answering = RedisStore::connect(&redis.url(), "site", None)
            .await
            .unwrap();
        let mut changes = answering.changes();
        // The subscription is in place once Resync arrives.
        assert_eq!(next(&mut changes).await, Change::Resync);

        let ttl = Duration::from_secs(60);
        placing
            .put_challenge("http-01", "tok_en-1", b"tok_en-1.thumb", ttl)
            .await
            .unwrap();
        assert_eq!(
            next(&mut changes).await,
            Change::Challenge("http-01".into(), "tok_en-1".into())
        );
        assert_eq!(
            answering
                .challenge("http-01", "tok_en-1")
                .await
                .unwrap()
                .as_deref(),
            Some(&b"tok_en-1.thumb"[..])
        );
        // Acknowledged only for the answer that is there; listed among the members only
        // while the entry lasts.
        let ttl = Duration::from_secs(30);
        assert!(
            !answering
                .ack("http-01", "tok_en-1", "m1", b"another answer", ttl)
                .await
                .unwrap()
        );
        assert!(
            answering
                .ack("http-01", "tok_en-1", "m1", b"tok_en-1.thumb", ttl)
                .await
                .unwrap()
        );
        assert_eq!(answering.acks("http-01", "tok_en-1").await.unwrap(), ["m1"]);
        answering.join("m1", ttl).await.unwrap();
        answering
            .join("m2", Duration::from_millis(1))
            .await
            .unwrap();
        until_async("m2's entry to lapse", || async {
            answering.members().await.unwrap() == ["m1"]
        })
        .await;
        // Only the answer that is there is withdrawn (another server's put since stays).
        assert!(
            !placing
                .remove_challenge("http-01", "tok_en-1", b"an earlier answer")
                .await
                .unwrap()
        );
        assert!(
            placing
                .remove_challenge("http-01", "tok_en-1", b"tok_en-1.thumb")
                .await
                .unwrap()
        );
        assert_eq!(
            next(&mut changes).await,
            Change::Withdrawn("http-01".into(), "tok_en-1".into())
        );
        assert!(
            answering
                .acks("http-01", "tok_en-1")
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            answering.challenge("http-01", "tok_en-1").await.unwrap(),
            None
        );

        let lease = placing
            .lock("a.example", Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap();
        assert!(placing.write_certificate(&lease, b"PEM").await.unwrap());
        assert_eq!(
            next(&mut changes).await,
            Change::Certificate("a.example".into())
        );

        // The first key stored is everyone's.
        let first = placing.account_key(b"KEY-ONE").await.unwrap();
        let second = answering.account_key(b"KEY-TWO").await.unwrap();
        assert_eq!(first, b"KEY-ONE");
        assert_eq!(second, b"KEY-ONE");
    });
}

#[test]
fn a_lost_subscription_is_made_again_and_says_so() {
    let mut redis = Redis::start();
    let port = redis.port;
    runtime().block_on(async {
        let store = RedisStore::connect(&redis.url(), "site", None)
            .await
            .unwrap();
        let mut changes = store.changes();
        assert_eq!(next(&mut changes).await, Change::Resync);
        // Redis goes away and comes back on the same port.
        let _ = redis.child.kill();
        let _ = redis.child.wait();
        redis.child = spawn(port);
        assert_eq!(next(&mut changes).await, Change::Resync);
        // The store's own connection is made again too.
        let deadline = Instant::now() + Duration::from_secs(20);
        let lease = loop {
            match store.lock("a.example", Duration::from_secs(30)).await {
                Ok(Some(lease)) => break lease,
                Ok(None) => panic!("nobody else holds the lock"),
                Err(err) => {
                    assert!(Instant::now() < deadline, "not reconnected: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        assert!(store.write_certificate(&lease, b"PEM").await.unwrap());
        assert_eq!(
            next(&mut changes).await,
            Change::Certificate("a.example".into())
        );
    });
}

#[test]
fn an_unreachable_or_malformed_store_is_named_in_the_error() {
    runtime().block_on(async {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("redis://:s3cret@127.0.0.1:{port}/0");
        let err = RedisStore::connect(&url, "site", None).await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
        assert!(
            !text.contains("s3cret"),
            "the password must not be shown: {text}"
        );
        let err = RedisStore::connect("http://127.0.0.1/", "site", None)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("redis://"), "{err}");
        let err = RedisStore::connect(&url, "site*", None)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"site*\"") && err.contains("letters, digits"),
            "{err}"
        );
    });
}

/// A key and a self-signed certificate for `name`, in PEM, as the store holds them.
fn pem(name: &str) -> Vec<u8> {
    let generated = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
    format!(
        "{}{}",
        generated.signing_key.serialize_pem(),
        generated.cert.pem()
    )
    .into_bytes()
}

/// Waits until the async `check` holds, for at most 20 s.
async fn until_async<F: std::future::Future<Output = bool>>(
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within 20 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `check` holds, for at most 20 s.
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within 20 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn a_mirror_copies_certificates_and_answers_and_trusts_no_path_from_redis() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    runtime().block_on(async {
        let placing = RedisStore::connect(&redis.url(), "site", None)
            .await
            .unwrap();
        let ttl = Duration::from_secs(30);
        // Held before the mirror starts: copied by its first load.
        let first = placing.lock("a.example", ttl).await.unwrap().unwrap();
        let a = pem("a.example");
        assert!(placing.write_certificate(&first, &a).await.unwrap());

        let local = CertificateStore::open(&path).unwrap();
        let mirrored = RedisStore::connect(&redis.url(), "site", None)
            .await
            .unwrap();
        let mirror = tokio::spawn(Mirror::new(mirrored, local).run(Duration::from_secs(3600)));
        let file = path.join("a.example.pem");
        until("the first load", || {
            std::fs::read(&file).is_ok_and(|f| f == a)
        })
        .await;

        // A new certificate, as it is announced.
        let b = pem("b.example");
        let lease = placing.lock("b.example", ttl).await.unwrap().unwrap();
        assert!(placing.write_certificate(&lease, &b).await.unwrap());
        let file_b = path.join("b.example.pem");
        until("b.example copied", || {
            std::fs::read(&file_b).is_ok_and(|f| f == b)
        })
        .await;

        // Answers come and go as the hidden files the resolvers read.
        placing
            .put_challenge("http-01", "tok-1", b"tok-1.key", ttl)
            .await
            .unwrap();
        let answer = path.join(".tok-1.http-01");
        until("the answer copied", || {
            std::fs::read(&answer).is_ok_and(|f| f == b"tok-1.key")
        })
        .await;
        assert!(
            placing
                .remove_challenge("http-01", "tok-1", b"tok-1.key")
                .await
                .unwrap()
        );
        until("the answer removed", || !answer.exists()).await;

        // What Redis holds is not trusted as a path, nor a bad certificate as a certificate.
        let escape = placing.lock("../escape", ttl).await.unwrap().unwrap();
        assert!(placing.write_certificate(&escape, &a).await.unwrap());
        placing
            .put_challenge("http-01", "../../x", b"no", ttl)
            .await
            .unwrap();
        placing
            .put_challenge("dns-01", "tok-2", b"no", ttl)
            .await
            .unwrap();
        assert!(placing.release(first).await.unwrap());
        let newer = placing.lock("a.example", ttl).await.unwrap().unwrap();
        assert!(
            placing
                .write_certificate(&newer, b"not a certificate")
                .await
                .unwrap()
        );
        // Changes are applied in order: once this answer is there, the ones above were seen.
        placing
            .put_challenge("http-01", "tok-3", b"tok-3.key", ttl)
            .await
            .unwrap();
        let last = path.join(".tok-3.http-01");
        until("the last answer copied", || last.exists()).await;
        assert_eq!(
            std::fs::read(&file).unwrap(),
            a,
            "the bad certificate must not replace the good one"
        );
        assert!(!dir.path().parent().unwrap().join("escape.pem").exists());
        assert!(!path.join("..").join("..").join("x").exists());
        let mut names: Vec<String> = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".tmp"))
            .collect();
        names.sort();
        assert_eq!(names, [".tok-3.http-01", "a.example.pem", "b.example.pem"]);
        mirror.abort();
    });
}

/// A CA, and a certificate it signed for 127.0.0.1, with its key: PEM files in `dir`.
fn tls_files(dir: &std::path::Path) -> Vec<u8> {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Redis test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".into()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    ca_cert.pem().into_bytes()
}

#[test]
fn a_store_over_tls_with_a_password_works_and_refuses_a_wrong_password_or_an_unknown_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = tls_files(dir.path());
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let file = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let mut child = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", "0"])
        .args(["--tls-port", &port.to_string()])
        .args(["--tls-cert-file", &file("cert.pem")])
        .args(["--tls-key-file", &file("key.pem")])
        .args(["--tls-ca-cert-file", &file("ca.pem")])
        .args(["--tls-auth-clients", "no", "--requirepass", "s3cret"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (Debian's redis-server package) must be installed");
    runtime().block_on(async {
        let url = format!("rediss://:s3cret@127.0.0.1:{port}/0");
        let deadline = Instant::now() + Duration::from_secs(20);
        let store = loop {
            match RedisStore::connect(&url, "site", Some(&ca)).await {
                Ok(store) => break store,
                Err(err) => {
                    assert!(Instant::now() < deadline, "no TLS store within 20 s: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        let lease = store
            .lock("t.example", Duration::from_secs(30))
            .await
            .unwrap()
            .expect("a free lock");
        assert!(
            store
                .write_certificate(&lease, &pem("t.example"))
                .await
                .unwrap()
        );
        assert_eq!(store.names().await.unwrap(), ["t.example"]);

        let wrong = format!("rediss://:wrong@127.0.0.1:{port}/0");
        let err = RedisStore::connect(&wrong, "site", Some(&ca))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            !err.contains("wrong@"),
            "the password must not be shown: {err}"
        );
        assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
        // The platform's roots do not know the test CA.
        assert!(RedisStore::connect(&url, "site", None).await.is_err());
        // A plain connection to the TLS port gets no answer a store accepts.
        let plain = format!("redis://:s3cret@127.0.0.1:{port}/0");
        assert!(RedisStore::connect(&plain, "site", None).await.is_err());
    });
    let _ = child.kill();
    let _ = child.wait();
}

/// A key and a self-signed certificate for `name` that expires in `days`, in PEM.
fn pem_expiring(name: &str, days: i64) -> Vec<u8> {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    params.not_before = rcgen::date_time_ymd(2000, 1, 1);
    params.not_after = time_from_unix(now + days * 86_400);
    let cert = params.self_signed(&key).unwrap();
    format!("{}{}", key.serialize_pem(), cert.pem()).into_bytes()
}

fn time_from_unix(seconds: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(seconds).unwrap()
}

#[test]
fn a_mirror_keeps_a_newer_certificate_and_puts_it_back_in_the_store() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let newer = pem_expiring("n.example", 80);
    std::fs::write(path.join("n.example.pem"), &newer).unwrap();
    runtime().block_on(async {
        // The store holds an older certificate (refilled from a stale copy, say).
        let store = RedisStore::connect(&redis.url(), "site", None)
            .await
            .unwrap();
        let lease = store
            .lock("n.example", Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap();
        let older = pem_expiring("n.example", 10);
        assert!(store.write_certificate(&lease, &older).await.unwrap());
        let local = CertificateStore::open(&path).unwrap();
        let mirror = RedisStore::connect(&redis.url(), "site", None)
            .await
            .unwrap();
        let task = tokio::spawn(Mirror::new(mirror, local).run(Duration::from_secs(3600)));
        until_async("the newer certificate back in the store", || async {
            store.certificate("n.example").await.unwrap().as_deref() == Some(&newer[..])
        })
        .await;
        assert_eq!(std::fs::read(path.join("n.example.pem")).unwrap(), newer);
        // An older one is never stored over it.
        assert!(!store.seed_certificate("n.example", &older).await.unwrap());
        task.abort();
    });
}
