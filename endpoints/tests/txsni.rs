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

/// A root CA, an intermediate it signed, and a leaf for `name` the intermediate signed,
/// laid out as certbot does: `live/NAME/{privkey,cert,chain,fullchain}.pem`. Returns the
/// root, the only trust anchor a client needs.
fn certbot_layout(dir: &Path, name: &str) -> rustls::pki_types::CertificateDer<'static> {
    let ca = |cn: &str| {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params
    };
    let root_key = rcgen::KeyPair::generate().unwrap();
    let root_params = ca("Torsion test root");
    let root = root_params.self_signed(&root_key).unwrap();
    let root_issuer = rcgen::Issuer::new(root_params, root_key);
    let intermediate_key = rcgen::KeyPair::generate().unwrap();
    let intermediate_params = ca("Torsion test intermediate");
    let intermediate = intermediate_params
        .clone()
        .signed_by(&intermediate_key, &root_issuer)
        .unwrap();
    let intermediate_issuer = rcgen::Issuer::new(intermediate_params, intermediate_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let mut leaf_params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
    leaf_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "torsion-certbot");
    let leaf = leaf_params
        .signed_by(&leaf_key, &intermediate_issuer)
        .unwrap();
    let live = dir.join("live").join(name);
    std::fs::create_dir_all(&live).unwrap();
    std::fs::write(live.join("privkey.pem"), leaf_key.serialize_pem()).unwrap();
    std::fs::write(live.join("cert.pem"), leaf.pem()).unwrap();
    std::fs::write(live.join("chain.pem"), intermediate.pem()).unwrap();
    std::fs::write(
        live.join("fullchain.pem"),
        format!("{}{}", leaf.pem(), intermediate.pem()),
    )
    .unwrap();
    root.der().clone()
}

/// Completes a handshake for `name` on `address`, verifying the chain against `root`
/// only; the served certificate's chain length.
async fn verified_chain(
    address: std::net::SocketAddr,
    name: &str,
    root: &rustls::pki_types::CertificateDer<'static>,
) -> std::io::Result<usize> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(address).await?;
    let server_name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
    let stream = connector.connect(server_name, tcp).await?;
    Ok(stream.get_ref().1.peer_certificates().map_or(0, <[_]>::len))
}

#[tokio::test]
async fn tls_serves_certbots_layout_with_its_chain_on_ipv4_and_ipv6() {
    let dir = tempfile::tempdir().unwrap();
    let root = certbot_layout(dir.path(), "certbot.example");
    // A backup beside the live files, with a key and certificate for the same name: only
    // `*.pem` is read, so it must not replace the live certificate.
    pem_names(
        dir.path(),
        "live/certbot.example/old.pem.bak",
        &["certbot.example"],
        "stale",
    );
    // A symbolic link loop below the directory is walked once.
    std::os::unix::fs::symlink(dir.path(), dir.path().join("live/loop")).unwrap();
    // No interface: Twisted's tls: listens on ::, every IPv6 and IPv4 address.
    let text = format!("tls:{}:port=0", quote(dir.path().to_str().unwrap()));
    let endpoint = Endpoint::parse(&text).unwrap();
    let listener = endpoint.listen().await.unwrap();
    let port = listener.local_addr().as_tcp().unwrap().port();
    accept_forever(listener);
    for address in [format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
        let chain = verified_chain(address.parse().unwrap(), "certbot.example", &root)
            .await
            .unwrap_or_else(|e| panic!("{address}: {e}"));
        // The leaf and the intermediate: the root is the client's.
        assert_eq!(chain, 2, "{address}");
    }
    let subject = tokio::task::spawn_blocking(move || served(port, Some("certbot.example")))
        .await
        .unwrap();
    assert!(subject.contains("torsion-certbot"), "{subject}");
}

#[tokio::test]
async fn tls_positionals_are_twisteds_path_port_backlog_interface() {
    let endpoint = Endpoint::parse(r"tls:/etc/certs:8443:9:\:\:1").unwrap();
    assert_eq!(
        endpoint.to_string(),
        r"tls:/etc/certs:port=8443:interface=\:\:1:backlog=9"
    );
    let endpoint = Endpoint::parse("tls:~/certs").unwrap();
    let home = std::env::var("HOME").unwrap();
    assert_eq!(
        endpoint.to_string(),
        format!("tls:{}", quote(&format!("{home}/certs")))
    );
}
