//! `ssl:` with real TLS clients: certificates made at test time with rcgen (and openssl for
//! a PKCS#1 RSA key), a rustls client checking the chain against the test CA, and curl.

#![cfg(feature = "tls")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use torsion_endpoints::{Endpoint, Listener, quote};

/// A CA and a leaf for `localhost` signed by it, written as PEM files in `dir`.
struct Pki {
    ca_pem: PathBuf,
    ca_der: CertificateDer<'static>,
    key: PathBuf,
    cert: PathBuf,
}

fn pki(dir: &Path) -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Torsion test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    Pki {
        ca_pem: write("ca.pem", &ca.pem()),
        ca_der: ca.der().clone(),
        key: write("key.pem", &leaf_key.serialize_pem()),
        cert: write("cert.pem", &leaf.pem()),
    }
}

/// `ssl:` on a free loopback port with `pki`'s key and certificate.
fn loopback_ssl(pki: &Pki) -> String {
    format!(
        "ssl:0:interface=127.0.0.1:privateKey={}:certKey={}",
        quote(pki.key.to_str().unwrap()),
        quote(pki.cert.to_str().unwrap())
    )
}

fn connector(ca: &CertificateDer<'static>, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Serves one connection: answers with what TLS negotiated, as the server saw it.
async fn serve_one(listener: Listener) {
    serve(listener, false).await
}

/// The same, as an HTTP/1.0 response, for curl.
async fn serve_one_http(listener: Listener) {
    serve(listener, true).await
}

async fn serve(mut listener: Listener, http: bool) {
    let mut connection = listener.accept().await.unwrap();
    let tls = connection.info().tls.clone().expect("a TLS connection");
    if http {
        // Read curl's whole request (its body is "ping"): closing with unread bytes would
        // reset the connection before the reply is read.
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.ends_with(b"\r\n\r\nping") {
            let n = connection.read(&mut buf).await.unwrap();
            assert!(n > 0, "{}", String::from_utf8_lossy(&request));
            request.extend_from_slice(&buf[..n]);
        }
    } else {
        let mut buf = [0u8; 4];
        connection.read_exact(&mut buf).await.unwrap();
    }
    let reply = format!(
        "{} sni={:?} alpn={:?} version={:?}",
        connection.info().scheme(),
        tls.sni,
        tls.alpn.map(|a| String::from_utf8_lossy(&a).into_owned()),
        tls.version
    );
    let reply = if http {
        format!(
            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{reply}",
            reply.len()
        )
    } else {
        reply
    };
    connection.write_all(reply.as_bytes()).await.unwrap();
    connection.shutdown().await.unwrap();
}

/// Opens `ssl:` on loopback (its ALPN narrowed to `narrowed`, if given), connects a rustls
/// client that verifies the chain and offers h2 and http/1.1, and returns the protocol
/// negotiated and what the server saw.
async fn negotiate(narrowed: Option<&[&[u8]]>) -> (Option<Vec<u8>>, String) {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let text = loopback_ssl(&pki);
    let mut listener = Endpoint::parse(&text).unwrap().listen().await.unwrap();
    if let Some(protocols) = narrowed {
        listener.offer_alpn(protocols);
    }
    let addr = listener.local_addr().as_tcp().unwrap();
    let server = tokio::spawn(serve_one(listener));

    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = connector(&pki.ca_der, &[b"h2", b"http/1.1"])
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    tls.write_all(b"ping").await.unwrap();
    let mut reply = String::new();
    tls.read_to_string(&mut reply).await.unwrap();
    server.await.unwrap();
    (alpn, reply)
}

#[tokio::test]
async fn a_rustls_client_verifies_the_chain_and_negotiates_h2() {
    let (alpn, reply) = negotiate(None).await;
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(
        reply,
        r#"https sni=Some("localhost") alpn=Some("h2") version=Some("TLSv1.3")"#
    );
}

#[tokio::test]
async fn a_failed_handshake_affects_no_other_connection() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let text = loopback_ssl(&pki);
    let listener = Endpoint::parse(&text).unwrap().listen().await.unwrap();
    let addr = listener.local_addr().as_tcp().unwrap();
    // A client that sends garbage, and one that connects and says nothing.
    let mut garbage = tokio::net::TcpStream::connect(addr).await.unwrap();
    garbage.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let _silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let server = tokio::spawn(serve_one(listener));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = connector(&pki.ca_der, &[b"http/1.1"])
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(b"ping").await.unwrap();
    let mut reply = String::new();
    tls.read_to_string(&mut reply).await.unwrap();
    assert!(reply.contains(r#"alpn=Some("http/1.1")"#), "{reply}");
    server.await.unwrap();
}

#[tokio::test]
async fn tls13_only_refuses_a_tls12_client() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let text = format!(
        "ssl:0:interface=127.0.0.1:privateKey={}:certKey={}:sslmethod=TLSv1_3_METHOD",
        quote(pki.key.to_str().unwrap()),
        quote(pki.cert.to_str().unwrap())
    );
    let listener = Endpoint::parse(&text).unwrap().listen().await.unwrap();
    let addr = listener.local_addr().as_tcp().unwrap();
    let _server = tokio::spawn(serve_one(listener));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let refused = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await;
    assert!(
        refused.is_err(),
        "a TLS 1.2 client was accepted by a TLS 1.3-only endpoint"
    );
}

#[tokio::test]
async fn a_pkcs1_rsa_key_and_an_old_tls_client_via_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("rsa.pem");
    let cert = dir.path().join("rsa-cert.pem");
    let status = Command::new("openssl")
        .args([
            "genrsa",
            "-traditional",
            "-out",
            key.to_str().unwrap(),
            "2048",
        ])
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    assert!(
        std::fs::read_to_string(&key)
            .unwrap()
            .starts_with("-----BEGIN RSA PRIVATE KEY-----")
    );
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-new",
            "-key",
            key.to_str().unwrap(),
            "-subj",
            "/CN=localhost",
            "-days",
            "2",
        ])
        .args([
            "-addext",
            "subjectAltName=DNS:localhost",
            "-out",
            cert.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    // Key and certificate in one file, the certificate first: certKey defaults to privateKey.
    let both = dir.path().join("both.pem");
    std::fs::write(
        &both,
        std::fs::read_to_string(&cert).unwrap() + &std::fs::read_to_string(&key).unwrap(),
    )
    .unwrap();
    let text = format!(
        "ssl:0:interface=127.0.0.1:privateKey={}",
        quote(both.to_str().unwrap())
    );
    let listener = Endpoint::parse(&text).unwrap().listen().await.unwrap();
    let port = listener.local_addr().as_tcp().unwrap().port();
    let server = tokio::spawn(serve_one_http(listener));
    let curl = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args([
                "-sS",
                "--cacert",
                cert.to_str().unwrap(),
                "--resolve",
                &format!("localhost:{port}:127.0.0.1"),
            ])
            .args([
                "--tlsv1.2",
                "--http1.1",
                "--max-time",
                "10",
                "--data-binary",
                "ping",
                &format!("https://localhost:{port}/"),
            ])
            .output()
            .unwrap()
    });
    server.await.unwrap();
    let output = curl.await.unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.starts_with("https sni=Some(\"localhost\")"),
        "{text} {output:?}"
    );

    // A TLS 1.1 client is refused (openssl may need its security level lowered to try).
    let listener = Endpoint::parse(&format!(
        "ssl:0:interface=127.0.0.1:privateKey={}",
        quote(both.to_str().unwrap())
    ))
    .unwrap()
    .listen()
    .await
    .unwrap();
    let port = listener.local_addr().as_tcp().unwrap().port();
    let accepted = tokio::spawn(async move {
        let mut listener = listener;
        tokio::time::timeout(std::time::Duration::from_secs(3), listener.accept())
            .await
            .is_ok()
    });
    let old = tokio::task::spawn_blocking(move || {
        Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{port}"),
                "-tls1_1",
                "-cipher",
                "DEFAULT@SECLEVEL=0",
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        !old.status.success(),
        "openssl s_client -tls1_1 succeeded: {}",
        String::from_utf8_lossy(&old.stdout)
    );
    assert!(
        !accepted.await.unwrap(),
        "a TLS 1.1 handshake produced a connection"
    );
}

#[tokio::test]
async fn bad_certificate_files_stop_listening_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let other = pki_other(dir.path());
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a pem file").unwrap();
    for (key, cert, expected) in [
        (
            garbage.clone(),
            pki.cert.clone(),
            "no private key in PKCS#8, PKCS#1 or SEC1 PEM form",
        ),
        (
            pki.key.clone(),
            garbage.clone(),
            "no certificate in PEM form",
        ),
        (
            other,
            pki.cert.clone(),
            "no certificate matches the private key",
        ),
        (
            dir.path().join("missing.pem"),
            pki.cert.clone(),
            "missing.pem",
        ),
    ] {
        let text = format!(
            "ssl:0:interface=127.0.0.1:privateKey={}:certKey={}",
            quote(key.to_str().unwrap()),
            quote(cert.to_str().unwrap())
        );
        let err = Endpoint::parse(&text).unwrap().listen().await.unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("cannot listen on ssl:0:"), "{message}");
        assert!(message.contains(expected), "{message}");
    }
    let _ = pki.ca_pem;
}

/// A key that matches no certificate of `pki`.
fn pki_other(dir: &Path) -> PathBuf {
    let key = rcgen::KeyPair::generate().unwrap();
    let path = dir.join("other-key.pem");
    std::fs::write(&path, key.serialize_pem()).unwrap();
    path
}

#[tokio::test]
async fn a_sec1_ec_key_with_an_extra_cert_chain() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("ec.pem");
    let run = |args: &[&str]| {
        let output = Command::new("openssl").args(args).output().unwrap();
        assert!(output.status.success(), "openssl {args:?}: {output:?}");
    };
    run(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        key.to_str().unwrap(),
    ]);
    assert!(
        std::fs::read_to_string(&key)
            .unwrap()
            .starts_with("-----BEGIN EC PRIVATE KEY-----")
    );
    // A CA made by rcgen signs the SEC1 key's certificate, passed as extraCertChain.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::from_pem(&sec1_to_pkcs8(&key)).unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let (cert, chain) = (dir.path().join("leaf.pem"), dir.path().join("chain.pem"));
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&chain, ca.pem()).unwrap();
    let text = format!(
        "ssl:0:interface=127.0.0.1:privateKey={}:certKey={}:extraCertChain={}",
        quote(key.to_str().unwrap()),
        quote(cert.to_str().unwrap()),
        quote(chain.to_str().unwrap())
    );
    let listener = Endpoint::parse(&text).unwrap().listen().await.unwrap();
    let addr = listener.local_addr().as_tcp().unwrap();
    let server = tokio::spawn(serve_one(listener));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = connector(&ca.der().clone(), &[b"http/1.1"])
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    // The server sent the leaf and the chain.
    assert_eq!(
        tls.get_ref().1.peer_certificates().map(|c| c.len()),
        Some(2)
    );
    tls.write_all(b"ping").await.unwrap();
    let mut reply = String::new();
    tls.read_to_string(&mut reply).await.unwrap();
    assert!(
        reply.starts_with("https sni=Some(\"localhost\")"),
        "{reply}"
    );
    server.await.unwrap();
}

/// The same EC key in PKCS#8, which rcgen reads, through openssl.
fn sec1_to_pkcs8(key: &Path) -> String {
    let output = Command::new("openssl")
        .args(["pkcs8", "-topk8", "-nocrypt", "-in", key.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn a_listener_offers_only_the_protocols_it_is_narrowed_to() {
    // A client offering both gets http/1.1, where the listener would otherwise pick h2.
    let (alpn, reply) = negotiate(Some(&[b"http/1.1"])).await;
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert!(reply.contains("alpn=Some(\"http/1.1\")"), "{reply}");
}

#[tokio::test]
async fn a_client_offering_none_of_the_narrowed_protocols_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let text = loopback_ssl(&pki);
    let mut listener = Endpoint::parse(&text).unwrap().listen().await.unwrap();
    listener.offer_alpn(&[b"http/1.1"]);
    let addr = listener.local_addr().as_tcp().unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let client =
        connector(&pki.ca_der, &[b"h2"]).connect(ServerName::try_from("localhost").unwrap(), tcp);
    // The listener runs handshakes while it is polled for a connection.
    let handshake = tokio::select! {
        handshake = client => handshake,
        accepted = listener.accept() => panic!("a refused handshake gave a connection: {:?}", accepted.is_ok()),
    };
    let err = handshake.expect_err("no common protocol");
    assert!(err.to_string().contains("NoApplicationProtocol"), "{err}");
}
