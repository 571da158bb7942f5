//! `txacme:` and `torsion certs` against a real ACME server: Pebble from Debian's `pebble`
//! package, with `pebble-challtestsrv` as its DNS answering 127.0.0.1 for every name, and
//! its validation ports pointed at the listeners of the `torsion` under test.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::acme::{
    Pebble, fetch_verified, free_port, old_certificate, served_issuer, wait_for_lines,
};
use common::{Server, torsion};
use torsion_endpoints::quote;

/// Names of the files in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn txacme(certs: &Path, pebble: &Pebble, extra: &str, port: u16) -> String {
    format!(
        "txacme:{}:{}{extra}:tcp:{port}:interface=127.0.0.1",
        quote(certs.to_str().unwrap()),
        pebble.keywords()
    )
}

#[test]
fn tls_alpn_01_issues_certificates_that_verify_against_pebbles_root() {
    let tls_port = free_port();
    let pebble = Pebble::start(free_port(), tls_port, &[]);
    let certs = tempfile::tempdir().unwrap();
    // An empty file asks for a certificate; domains= adds a name without a file.
    std::fs::write(certs.path().join("a.example.com.pem"), "").unwrap();
    let listen = txacme(certs.path(), &pebble, ":domains=b.example.com", tls_port);
    let server = Server::start(&["--wsgi", "hello:application", "--listen", &listen]);
    let issued = wait_for_lines(&server, "certificate issued", 2, Duration::from_secs(60));
    assert!(
        issued.iter().any(|l| l.contains("a.example.com")),
        "{issued:?}"
    );
    assert!(
        issued.iter().any(|l| l.contains("b.example.com")),
        "{issued:?}"
    );

    let root = pebble.root();
    for name in ["a.example.com", "b.example.com"] {
        let (ok, body) = fetch_verified(name, tls_port, &root);
        assert!(ok, "{name}: {body}");
        assert_eq!(body, "Hello, world!");
        let file = certs.path().join(format!("{name}.pem"));
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text.matches("-----BEGIN PRIVATE KEY-----").count(), 1);
        assert!(
            text.matches("-----BEGIN CERTIFICATE-----").count() >= 2,
            "leaf and chain"
        );
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    // Validated on this listener, by tls-alpn-01.
    server.wait_for_log("answered a tls-alpn-01 validation");
    assert!(!server.logs().contains("http-01"));
    assert_eq!(
        listing(certs.path()),
        [
            ".torsion-acme.lock",
            "a.example.com.pem",
            "acme-account.key",
            "b.example.com.pem",
        ]
    );

    // `torsion certs status` describes both, offline.
    let output = torsion()
        .args(["certs", certs.path().to_str().unwrap(), "status"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let table = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{table}");
    for (line, name) in lines[1..].iter().zip(["a.example.com", "b.example.com"]) {
        assert!(line.starts_with(name), "{table}");
        assert!(line.contains("Pebble Intermediate CA"), "{table}");
        // Pebble 2.4 issues for five years; a third of that before the end is renewal.
        let days: Vec<i64> = line
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        assert!(days.iter().any(|d| (1824..=1826).contains(d)), "{table}");
    }
    assert_eq!(lines.len(), 3, "{table}");
}

#[test]
fn http_01_is_answered_by_the_plain_http_listener_before_the_app() {
    let (http_port, tls_port) = (free_port(), free_port());
    let pebble = Pebble::start(http_port, tls_port, &[]);
    let certs = tempfile::tempdir().unwrap();
    std::fs::write(certs.path().join("h.example.com.pem"), "").unwrap();
    let listen = txacme(certs.path(), &pebble, ":challenge=http-01", tls_port);
    let plain = format!("tcp:{http_port}:interface=127.0.0.1");
    let server = Server::start(&[
        "--wsgi",
        "hello:application",
        "--listen",
        &listen,
        "--listen",
        &plain,
    ]);
    wait_for_lines(&server, "certificate issued", 1, Duration::from_secs(60));
    assert!(
        pebble.log().contains("Attempting to validate w/ HTTP"),
        "{}",
        pebble.log()
    );
    let line = server.wait_for_log("answered an http-01 validation");
    assert!(line.contains("/.well-known/acme-challenge/"), "{line}");
    assert!(!server.logs().contains("tls-alpn-01 validation"));
    let (ok, body) = fetch_verified("h.example.com", tls_port, &pebble.root());
    assert!(ok, "{body}");
    assert_eq!(body, "Hello, world!");
    // A token this process is not waiting for goes to the application.
    let output = Command::new("curl")
        .args([
            "-sS",
            &format!("http://127.0.0.1:{http_port}/.well-known/acme-challenge/unknown"),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "Hello, world!");
}

#[test]
fn a_certificate_near_expiry_is_renewed_and_served_without_restart() {
    let tls_port = free_port();
    let pebble = Pebble::start(free_port(), tls_port, &[]);
    let certs = tempfile::tempdir().unwrap();
    let file = certs.path().join("r.example.com.pem");
    std::fs::write(&file, old_certificate("r.example.com", 5)).unwrap();
    let listen = txacme(certs.path(), &pebble, "", tls_port);
    let server = Server::start(&["--wsgi", "hello:application", "--listen", &listen]);
    wait_for_lines(&server, "certificate issued", 1, Duration::from_secs(60));
    let issuer = served_issuer("r.example.com", tls_port);
    assert!(issuer.contains("Pebble Intermediate CA"), "{issuer}");
    let (ok, body) = fetch_verified("r.example.com", tls_port, &pebble.root());
    assert!(ok, "{body}");
    assert_eq!(server.logs().matches("certificate issued").count(), 1);
}

/// Attempts fail while Pebble rejects every nonce: each failure is retried later, the old
/// certificate stays in service, and the directory never holds a partial file.
#[test]
fn failed_renewals_are_retried_while_the_old_certificate_serves() {
    let tls_port = free_port();
    let pebble = Pebble::start(free_port(), tls_port, &[("PEBBLE_WFE_NONCEREJECT", "100")]);
    let certs = tempfile::tempdir().unwrap();
    let old = old_certificate("f.example.com", 3);
    std::fs::write(certs.path().join("f.example.com.pem"), &old).unwrap();
    let listen = txacme(certs.path(), &pebble, "", tls_port);
    let server = Server::start(&["--wsgi", "hello:application", "--listen", &listen]);

    let failures = wait_for_lines(&server, "renewal failed", 2, Duration::from_secs(40));
    assert!(failures[0].contains("attempt=1"), "{failures:?}");
    assert!(failures[1].contains("attempt=2"), "{failures:?}");
    assert!(failures[0].contains("days_left=2"), "{failures:?}");
    assert!(failures[0].contains("badNonce"), "{failures:?}");
    assert!(served_issuer("f.example.com", tls_port).contains("old test CA"));
    assert_eq!(
        listing(certs.path()),
        [
            ".torsion-acme.lock",
            "acme-account.key",
            "f.example.com.pem"
        ]
    );
    assert_eq!(
        std::fs::read_to_string(certs.path().join("f.example.com.pem")).unwrap(),
        old
    );
    let (ok, body) = fetch_verified("f.example.com", tls_port, &pebble.root());
    assert!(
        !ok,
        "Pebble's root does not verify the old certificate: {body}"
    );
}

/// With the ACME server down, the attempt fails and the old certificate keeps serving;
/// once the server is up, the retry renews without a restart.
#[test]
fn a_renewal_started_while_the_acme_server_is_down_succeeds_on_a_later_retry() {
    let tls_port = free_port();
    let mut pebble = Pebble::prepare(free_port(), tls_port);
    let certs = tempfile::tempdir().unwrap();
    let old = old_certificate("d.example.com", 3);
    std::fs::write(certs.path().join("d.example.com.pem"), &old).unwrap();
    let listen = txacme(certs.path(), &pebble, "", tls_port);
    let server = Server::start(&["--wsgi", "hello:application", "--listen", &listen]);

    let failure = &wait_for_lines(&server, "renewal failed", 1, Duration::from_secs(20))[0];
    assert!(failure.contains("attempt=1"), "{failure}");
    assert!(failure.contains("retrying in"), "{failure}");
    assert!(served_issuer("d.example.com", tls_port).contains("old test CA"));
    assert_eq!(
        std::fs::read_to_string(certs.path().join("d.example.com.pem")).unwrap(),
        old
    );

    pebble.spawn(&[]);
    wait_for_lines(&server, "certificate issued", 1, Duration::from_secs(30));
    let issuer = served_issuer("d.example.com", tls_port);
    assert!(issuer.contains("Pebble Intermediate CA"), "{issuer}");
    let (ok, body) = fetch_verified("d.example.com", tls_port, &pebble.root());
    assert!(ok, "{body}");
    assert_eq!(
        listing(certs.path()),
        [
            ".torsion-acme.lock",
            "acme-account.key",
            "d.example.com.pem"
        ]
    );
}

/// Before its certificate is issued a name gets DEFAULT.pem: the listener serves at once.
#[test]
fn a_name_awaiting_its_certificate_gets_default_until_it_is_issued() {
    let tls_port = free_port();
    let mut pebble = Pebble::prepare(free_port(), tls_port);
    let certs = tempfile::tempdir().unwrap();
    std::fs::write(
        certs.path().join("DEFAULT.pem"),
        old_certificate("default.example.com", 60),
    )
    .unwrap();
    std::fs::write(certs.path().join("w.example.com.pem"), "").unwrap();
    let listen = txacme(certs.path(), &pebble, "", tls_port);
    let server = Server::start(&["--wsgi", "hello:application", "--listen", &listen]);
    let failure = &wait_for_lines(&server, "no certificate yet", 1, Duration::from_secs(20))[0];
    assert!(failure.contains("w.example.com"), "{failure}");
    assert!(served_issuer("w.example.com", tls_port).contains("old test CA"));

    pebble.spawn(&[]);
    wait_for_lines(&server, "certificate issued", 1, Duration::from_secs(30));
    let (ok, body) = fetch_verified("w.example.com", tls_port, &pebble.root());
    assert!(ok, "{body}");
    // DEFAULT.pem is served, never issued or renewed.
    assert!(!server.logs().contains("DEFAULT\""));
    assert!(served_issuer("other.example.com", tls_port).contains("old test CA"));
}

/// `torsion certs` as a cron job would run it: renew what is due, issue on demand, report.
#[test]
fn torsion_certs_issues_and_renews_once_and_says_what_it_did() {
    let (http_port, tls_port) = (free_port(), free_port());
    let pebble = Pebble::start(http_port, tls_port, &[]);
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path().to_str().unwrap();
    std::fs::write(certs.path().join("c1.example.com.pem"), "").unwrap();
    let ca = pebble.path("ca.pem");
    let certs_command = |args: &[&str]| {
        torsion()
            .args(["certs", dir])
            .args(args)
            .args(["--directory", &pebble.directory_url()])
            .args(["--cacert", ca.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let tls_listen = format!("tcp:{tls_port}:interface=127.0.0.1");
    let output = certs_command(&["renew", "--listen", &tls_listen]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(
        stdout.starts_with("c1.example.com: issued by CN=Pebble Intermediate CA"),
        "{stdout}"
    );
    let output = certs_command(&["renew", "--listen", &tls_listen]);
    assert!(output.status.success(), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stdout).starts_with("nothing to do"),
        "{output:?}"
    );
    let http_listen = format!("tcp:{http_port}:interface=127.0.0.1");
    let output = certs_command(&[
        "issue",
        "c2.example.com",
        "--challenge",
        "http-01",
        "--listen",
        &http_listen,
    ]);
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("c2.example.com: issued"));

    let output = certs_command(&["status"]);
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(
        table.lines().nth(1).unwrap().starts_with("c1.example.com "),
        "{table}"
    );
    assert!(
        table.lines().nth(2).unwrap().starts_with("c2.example.com "),
        "{table}"
    );

    // A bad keyword is a configuration error (2); a failed issuance is 1.
    let output = certs_command(&["issue", "c3.example.com", "--challenge", "dns-01"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("tls-alpn-01 or http-01"));
    let output = torsion()
        .args([
            "certs",
            dir,
            "issue",
            "c3.example.com",
            "--listen",
            &tls_listen,
        ])
        .args([
            "--directory",
            &format!("https://127.0.0.1:{}/dir", free_port()),
        ])
        .args(["--cacert", ca.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("error: ACME: "), "{stderr}");
    assert!(!certs.path().join("c3.example.com.pem").exists());
}

/// With `--workers 3`, `--listen` for the TLS listener and `extra` listeners, for `name`:
/// the supervisor alone runs the ACME manager, so every validation Pebble makes reaches a
/// worker that did not place the order, and has to answer from what the supervisor
/// published in the directory. Returns the server once `name` is issued and served.
fn issued_with_three_workers(pebble: &Pebble, listen: &str, extra: &[&str], name: &str) -> Server {
    let mut args = vec![
        "--wsgi",
        "hello:application",
        "--workers",
        "3",
        "--listen",
        listen,
    ];
    for plain in extra {
        args.extend(["--listen", plain]);
    }
    let server = Server::start(&args);
    server.wait_for_log("every worker is serving workers=3");
    let issued = wait_for_lines(&server, "certificate issued", 1, Duration::from_secs(60));
    assert!(issued[0].contains(name), "{issued:?}");
    let tls_port: u16 = listen
        .rsplit_once(":tcp:")
        .and_then(|(_, rest)| rest.split(':').next()?.parse().ok())
        .unwrap();
    // Each new connection goes to whichever worker accepts it; each worker loads the
    // certificate the supervisor wrote as its directory watch sees it, within a moment.
    // Six verified answers in a row: every worker serves it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut in_a_row = 0;
    while in_a_row < 6 {
        let (ok, body) = fetch_verified(name, tls_port, &pebble.root());
        if ok {
            assert_eq!(body, "Hello, world!");
            in_a_row += 1;
        } else {
            assert!(Instant::now() < deadline, "{body}\n{}", server.logs());
            in_a_row = 0;
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // One manager: no other process met the directory's lock or issued the name again.
    let logs = server.logs();
    assert_eq!(logs.matches("certificate issued").count(), 1, "{logs}");
    assert!(!logs.contains("is issuing into"), "{logs}");
    assert!(!logs.contains("renewed meanwhile"), "{logs}");
    server
}

#[test]
fn with_workers_one_manager_issues_by_tls_alpn_01_and_a_worker_answers() {
    let tls_port = free_port();
    let pebble = Pebble::start(free_port(), tls_port, &[]);
    let certs = tempfile::tempdir().unwrap();
    std::fs::write(certs.path().join("w.example.com.pem"), "").unwrap();
    let listen = txacme(certs.path(), &pebble, "", tls_port);
    let server = issued_with_three_workers(&pebble, &listen, &[], "w.example.com");
    server.wait_for_log("answered a tls-alpn-01 validation");
    // The published answer is withdrawn once the order is done.
    assert_eq!(
        listing(certs.path()),
        [
            ".torsion-acme.lock",
            "acme-account.key",
            "w.example.com.pem"
        ]
    );
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
}

#[test]
fn with_workers_one_manager_issues_by_http_01_and_a_worker_answers() {
    let (http_port, tls_port) = (free_port(), free_port());
    let pebble = Pebble::start(http_port, tls_port, &[]);
    let certs = tempfile::tempdir().unwrap();
    std::fs::write(certs.path().join("v.example.com.pem"), "").unwrap();
    let listen = txacme(certs.path(), &pebble, ":challenge=http-01", tls_port);
    let plain = format!("tcp:{http_port}:interface=127.0.0.1");
    let server = issued_with_three_workers(&pebble, &listen, &[&plain], "v.example.com");
    let line = server.wait_for_log("answered an http-01 validation");
    assert!(line.contains("/.well-known/acme-challenge/"), "{line}");
    assert!(!server.logs().contains("tls-alpn-01 validation"));
    assert_eq!(
        listing(certs.path()),
        [
            ".torsion-acme.lock",
            "acme-account.key",
            "v.example.com.pem"
        ]
    );
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
}
