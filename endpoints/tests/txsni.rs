//! `txsni:` with real handshakes from `openssl s_client`: the certificate per server name,
//! DEFAULT, case folding, wildcards, and files replaced or broken while serving.

#![cfg(feature = "tls")]

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use torsion_endpoints::{Endpoint, Listener, quote};

/// A PEM file with a fresh key and a self-signed certificate whose common name is `cn`,
/// the certificate first (txsni allows any order).
fn pem(dir: &Path, file: &str, dns: &str, cn: &str) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![dns.to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let cert = params.self_signed(&key).unwrap();
    // Write then rename, as a careful deployment does; the garbage test writes in place.
    let tmp = dir.join(format!(".{file}.tmp"));
    std::fs::write(&tmp, cert.pem() + &key.serialize_pem()).unwrap();
    std::fs::rename(&tmp, dir.join(file)).unwrap();
}

/// The common name of the certificate served for `server_name` (None: send no SNI).
fn served(port: u16, server_name: Option<&str>) -> String {
    let mut command = Command::new("openssl");
    command.args(["s_client", "-connect", &format!("127.0.0.1:{port}")]);
    match server_name {
        Some(name) => command.args(["-servername", name]),
        None => command.arg("-noservername"),
    };
    let output = command.stdin(Stdio::null()).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find_map(|line| line.strip_prefix("subject=").map(str::to_owned))
        .unwrap_or_else(|| {
            format!(
                "no certificate: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
}

fn accept_forever(mut listener: Listener) {
    tokio::spawn(async move {
        loop {
            drop(listener.next_connection().await);
        }
    });
}

/// Everything this crate logged through `tracing` while the tests of this file ran.
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sends the log of every thread (the watcher runs on the runtime's workers) to [`LOG`].
fn capture_log() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        tracing_subscriber::fmt()
            .with_writer(|| LogWriter)
            .with_ansi(false)
            .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
            .try_init()
            .expect("install the log capture");
    });
}

/// How much has been logged so far: pass it to [`wait_for_log`] to look only at what
/// comes after.
fn log_mark() -> usize {
    LOG.lock().unwrap().len()
}

/// Waits up to 10 s for a line logged after `mark` that contains each of `needles`.
async fn wait_for_log(mark: usize, needles: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = String::from_utf8_lossy(&LOG.lock().unwrap()[mark..]).into_owned();
        if let Some(line) = text
            .lines()
            .find(|line| needles.iter().all(|needle| line.contains(needle)))
        {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {needles:?} in:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_per_name_with_default_wildcard_and_hot_reload() {
    capture_log();
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path();
    pem(certs, "DEFAULT.pem", "default.example", "torsion-default");
    pem(certs, "a.example.com.pem", "a.example.com", "torsion-a-v1");
    pem(
        certs,
        "*.wild.example.pem",
        "*.wild.example",
        "torsion-wild",
    );
    std::fs::write(certs.join("notes.txt"), "not a certificate").unwrap();
    let text = format!(
        "txsni:{}:tcp:0:interface=127.0.0.1",
        quote(certs.to_str().unwrap())
    );
    let endpoint = Endpoint::parse(&text).unwrap();
    assert_eq!(endpoint.kind(), "txsni");
    let listener = endpoint.listen().await.unwrap();
    let port = listener.local_addr().as_tcp().unwrap().port();
    accept_forever(listener);

    let check =
        move |name: Option<&'static str>| tokio::task::spawn_blocking(move || served(port, name));
    assert!(
        check(Some("a.example.com"))
            .await
            .unwrap()
            .contains("torsion-a-v1")
    );
    assert!(
        check(Some("A.Example.COM"))
            .await
            .unwrap()
            .contains("torsion-a-v1"),
        "case is folded"
    );
    assert!(
        check(Some("x.wild.example"))
            .await
            .unwrap()
            .contains("torsion-wild")
    );
    assert!(
        check(Some("y.x.wild.example"))
            .await
            .unwrap()
            .contains("torsion-default"),
        "one label only"
    );
    assert!(
        check(Some("unknown.example.org"))
            .await
            .unwrap()
            .contains("torsion-default")
    );
    assert!(check(None).await.unwrap().contains("torsion-default"));

    // A replaced file is served to new connections without a restart.
    pem(certs, "a.example.com.pem", "a.example.com", "torsion-a-v2");
    tokio::task::spawn_blocking(move || {
        wait_until("the replaced certificate is served", || {
            served(port, Some("a.example.com")).contains("torsion-a-v2")
        })
    })
    .await
    .unwrap();

    // A garbage file leaves the previous certificate in service. What is served proves
    // that only once the rescan has read the garbage, which it logs, naming the file.
    let garbage = certs.join("a.example.com.pem");
    let mark = log_mark();
    std::fs::write(&garbage, "-----BEGIN GARBAGE-----\n").unwrap();
    let line = wait_for_log(
        mark,
        &["certificate not loaded", &garbage.display().to_string()],
    )
    .await;
    assert!(line.contains(" WARN "), "{line}");
    assert!(line.contains("no private key"), "{line}");
    assert!(
        check(Some("a.example.com"))
            .await
            .unwrap()
            .contains("torsion-a-v2"),
        "after {line}"
    );

    // A new name appears without a restart; a removed one falls back to DEFAULT.
    pem(certs, "b.example.com.pem", "b.example.com", "torsion-b");
    tokio::task::spawn_blocking(move || {
        wait_until("the new certificate is served", || {
            served(port, Some("b.example.com")).contains("torsion-b")
        })
    })
    .await
    .unwrap();
    // A later rescan has completed, so the one that rejected the garbage has too, to the
    // end: the previous certificate is still in service.
    assert!(
        check(Some("a.example.com"))
            .await
            .unwrap()
            .contains("torsion-a-v2")
    );
    std::fs::remove_file(certs.join("b.example.com.pem")).unwrap();
    tokio::task::spawn_blocking(move || {
        wait_until("the removed name falls back to DEFAULT", || {
            served(port, Some("b.example.com")).contains("torsion-default")
        })
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn txsni_descriptors_and_errors() {
    let endpoint = Endpoint::parse(r"TXSNI:/etc/certs:tcp:443:interface=127.0.0.1").unwrap();
    assert_eq!(
        endpoint.to_string(),
        "txsni:/etc/certs:tcp:443:interface=127.0.0.1"
    );
    assert_eq!(Endpoint::parse(&endpoint.to_string()).unwrap(), endpoint);
    let err = Endpoint::parse("txsni:/etc/certs").unwrap_err();
    assert!(
        err.to_string()
            .contains("missing argument \"endpoint descriptor\""),
        "{err}"
    );
    let err = Endpoint::parse("txsni:/etc/certs:tcp:99999").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid endpoint descriptor \"txsni:/etc/certs:tcp:99999\": tcp: port"),
        "{err}"
    );
    let err = Endpoint::parse("txsni:/nonexistent-dir:tcp:0")
        .unwrap()
        .listen()
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("read the certificate directory /nonexistent-dir"),
        "{err}"
    );
}

/// Like `pem`, with several subjectAltName DNS entries.
fn pem_names(dir: &Path, file: &str, names: &[&str], cn: &str) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let cert = params.self_signed(&key).unwrap();
    std::fs::create_dir_all(dir.join(file).parent().unwrap()).unwrap();
    std::fs::write(dir.join(file), key.serialize_pem() + &cert.pem()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_names_come_from_subject_alt_names_found_recursively() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path();
    pem_names(
        certs,
        "a/site1.pem",
        &["one.example", "*.multi.example"],
        "torsion-site1",
    );
    pem_names(certs, "b/c/site2.pem", &["two.example"], "torsion-site2");
    std::fs::write(certs.join("b/README"), "not a certificate").unwrap();
    let text = format!(
        "tls:{}:port=0:interface=127.0.0.1",
        quote(certs.to_str().unwrap())
    );
    let endpoint = Endpoint::parse(&text).unwrap();
    assert_eq!(endpoint.to_string(), text);
    let listener = endpoint.listen().await.unwrap();
    let port = listener.local_addr().as_tcp().unwrap().port();
    accept_forever(listener);
    let check =
        move |name: Option<&'static str>| tokio::task::spawn_blocking(move || served(port, name));
    assert!(
        check(Some("one.example"))
            .await
            .unwrap()
            .contains("torsion-site1")
    );
    assert!(
        check(Some("x.multi.example"))
            .await
            .unwrap()
            .contains("torsion-site1")
    );
    assert!(
        check(Some("two.example"))
            .await
            .unwrap()
            .contains("torsion-site2")
    );
    // The first certificate (in path order) serves clients without SNI and unknown names.
    assert!(check(None).await.unwrap().contains("torsion-site1"));
    assert!(
        check(Some("three.example"))
            .await
            .unwrap()
            .contains("torsion-site1")
    );

    // A certificate added in a new subdirectory is picked up.
    pem_names(certs, "d/site3.pem", &["three.example"], "torsion-site3");
    tokio::task::spawn_blocking(move || {
        wait_until("the new certificate is served", || {
            served(port, Some("three.example")).contains("torsion-site3")
        })
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn tls_descriptors_and_an_empty_directory() {
    let endpoint = Endpoint::parse("tls:/etc/certs").unwrap();
    assert_eq!(endpoint.to_string(), "tls:/etc/certs");
    let endpoint =
        Endpoint::parse("TLS:/etc/certs:port=8443:interface=127.0.0.1:backlog=9").unwrap();
    assert_eq!(
        endpoint.to_string(),
        "tls:/etc/certs:port=8443:interface=127.0.0.1:backlog=9"
    );
    let err = Endpoint::parse("tls:/etc/certs:port=http").unwrap_err();
    assert!(
        err.to_string().contains("port \"http\" is not valid"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "tls:{}:port=0:interface=127.0.0.1",
        quote(dir.path().to_str().unwrap())
    );
    let err = Endpoint::parse(&text).unwrap().listen().await.unwrap_err();
    assert!(
        err.to_string()
            .contains("no file below it holds a private key"),
        "{err}"
    );
}
