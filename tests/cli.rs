//! `torsion web` as a user runs it: each listener kind, start-up errors with exit status 2,
//! the embedded interpreter, and a graceful stop.

mod common;

use std::os::fd::OwnedFd;
use std::process::Command;
use std::time::{Duration, Instant};

use command_fds::{CommandFdExt, FdMapping};
use common::{Server, Started, environ, text, torsion, venv};

#[test]
fn the_demo_page_is_served_without_wsgi() {
    let server = Server::start(&[]);
    let (status, head, body) = server.fetch(&[], "/some/path?q=1");
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/html; charset=utf-8"),
        "{head}"
    );
    assert!(body.contains("<h1>Hello from Torsion</h1>"), "{body}");
    assert!(body.contains("GET /some/path?q=1"), "{body}");
}

#[test]
fn serves_over_tcp6() {
    let server = Server::start(&[
        "--wsgi",
        "hello:application",
        "--listen",
        r"tcp6:0:interface=\:\:1",
    ]);
    assert!(server.address.starts_with("[::1]:"), "{}", server.address);
    assert_eq!(server.get("/"), "Hello, world!");
}

#[test]
fn serves_over_a_unix_socket_with_its_mode() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("app.sock");
    let listen = format!("unix:{}:mode=660", socket.display());
    let server = Server::start(&["--wsgi", "probe:application", "--listen", &listen]);
    assert_eq!(server.address, format!("unix:{}", socket.display()));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777,
        0o660
    );
    // twist web answers every request over unix: with 500; here the peer has no address.
    let report = environ(&server.get("/environ"));
    assert_eq!(text(&report, "REMOTE_ADDR"), "");
    assert_eq!(text(&report, "SERVER_NAME"), "localhost");
    assert_eq!(text(&report, "wsgi.url_scheme"), "http");
    drop(server);
}

#[test]
fn serves_on_several_listeners_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("second.sock");
    let second = format!("unix:{}", socket.display());
    let server = Server::start(&[
        "--wsgi",
        "hello.application",
        "--listen",
        "tcp:0:interface=127.0.0.1",
        "--listen",
        &second,
    ]);
    assert_eq!(server.get("/"), "Hello, world!");
    server.wait_for_log(&format!("address={second}"));
    let output = Command::new("curl")
        .args([
            "-sS",
            "--unix-socket",
            socket.to_str().unwrap(),
            "http://localhost/",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "Hello, world!");
}

#[test]
fn serves_a_socket_passed_by_systemd() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(r#"LISTEN_PID=$$ exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_torsion"))
        .env("LISTEN_FDS", "1")
        .env("LISTEN_FDNAMES", "web")
        .env_remove("VIRTUAL_ENV");
    let fd: OwnedFd = listener.into();
    command
        .fd_mappings(vec![FdMapping {
            parent_fd: fd,
            child_fd: 3,
        }])
        .unwrap();
    let server = Server::start_with(
        command,
        &[
            "--wsgi",
            "hello:application",
            "--listen",
            "systemd:domain=INET:name=web",
        ],
    );
    assert_eq!(server.address, address.to_string());
    assert_eq!(server.get("/"), "Hello, world!");
}

fn start_failure(args: &[&str]) -> String {
    let output = torsion()
        .arg("web")
        .args(args)
        .current_dir(common::fixtures().join("apps"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "one error line expected: {stderr}");
    errors[0].to_owned()
}

#[test]
fn a_bad_descriptor_stops_start_up_with_status_2() {
    assert_eq!(
        start_failure(&["--listen", "tcp:99999"]),
        "error: invalid endpoint descriptor \"tcp:99999\": tcp: port \"99999\" is not valid; expected a port number from 0 to 65535 (0 picks a free port)"
    );
    assert!(start_failure(&["--listen", "tcpp:80"]).ends_with(
        "known types: haproxy, le, lets, ssl, systemd, tcp, tcp6, tls, txacme, txsni, unix"
    ));
    assert!(
        start_failure(&["--listen", "tcp:0", "--listen", "unix:/tmp/x.sock:mode=999"])
            .contains("mode \"999\" is not valid")
    );
    assert!(start_failure(&["--port", "tcp:8080:bogus=1"]).contains("no keyword \"bogus\""));
    assert!(start_failure(&["--listen", r"tcp:80\"]).contains("trailing backslash"));
}

#[test]
fn a_descriptor_that_cannot_be_bound_stops_start_up_with_status_2() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let error = start_failure(&["--listen", &format!("tcp:{port}:interface=127.0.0.1")]);
    assert!(error.contains(&format!("bind 127.0.0.1:{port}")), "{error}");
    assert!(error.contains("another socket is bound"), "{error}");
}

#[test]
fn a_bad_application_name_stops_start_up_with_one_line() {
    assert_eq!(
        start_failure(&["--wsgi", "nosuchmodule:app"]),
        "error: --wsgi nosuchmodule:app: importing module 'nosuchmodule' failed: ModuleNotFoundError: No module named 'nosuchmodule'"
    );
    let error = start_failure(&["--wsgi", "probe:nothing"]);
    assert!(error.starts_with("error: --wsgi probe:nothing: looking up 'nothing' in module 'probe' failed: AttributeError"), "{error}");
    let error = start_failure(&["--wsgi", "probe.nothing"]);
    assert!(
        error.contains("looking up 'nothing' in module 'probe' failed"),
        "{error}"
    );
    let error = start_failure(&["--wsgi", "probe:ROUTES"]);
    assert!(error.contains("dict object {"), "{error}");
    assert!(error.contains("is not callable"), "{error}");
    let error = start_failure(&["--wsgi", "not a name"]);
    assert!(error.contains("is not an application name"), "{error}");
    // A module that exists but fails to import says why, with its file and line.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("broken.py"),
        "import json\nraise RuntimeError('broken on purpose')\n",
    )
    .unwrap();
    let error = start_failure(&[
        "--pythonpath",
        dir.path().to_str().unwrap(),
        "--wsgi",
        "broken.app",
    ]);
    assert!(
        error.contains("importing module 'broken' failed: RuntimeError: broken on purpose"),
        "{error}"
    );
    assert!(error.contains("broken.py, line 2)"), "{error}");
}

#[test]
fn the_application_can_be_named_in_every_supported_form() {
    for name in [
        "probe.application",
        "probe:application",
        "probe:create_app()",
    ] {
        let server = Server::start(&["--wsgi", name]);
        assert_eq!(server.fetch(&[], "/environ").0, 200, "{name}");
    }
    let server = Server::start(&["--wsgi", "probe:create_app(greeting='a factory')"]);
    assert_eq!(server.get("/"), "made by a factory");
    // --pythonpath puts a directory first on sys.path.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("elsewhere.py"),
        "def app(environ, start_response):\n    start_response('200 OK', [])\n    return [b'from elsewhere']\n",
    )
    .unwrap();
    let mut command = torsion();
    command.current_dir(dir.path().parent().unwrap());
    let server = Server::start_with(
        command,
        &[
            "--pythonpath",
            dir.path().to_str().unwrap(),
            "--wsgi",
            "elsewhere:app",
        ],
    );
    assert_eq!(server.get("/"), "from elsewhere");
    drop(server);
    // PYTHONPATH works as it does for python itself.
    let mut command = torsion();
    command
        .current_dir(dir.path().parent().unwrap())
        .env("PYTHONPATH", dir.path());
    let server = Server::start_with(command, &["--wsgi", "elsewhere.app"]);
    assert_eq!(server.get("/"), "from elsewhere");
}

fn python_facts(python: &str) -> (String, String) {
    let output = Command::new(python)
        .args(["-c", "import sys; print(sys.version); print(sys.prefix)"])
        .output()
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    let mut lines = text.lines();
    (
        lines.next().unwrap().to_owned(),
        lines.next().unwrap().to_owned(),
    )
}

#[test]
fn the_embedded_python_is_the_build_interpreter_or_the_active_venv() {
    // Without a venv: the interpreter the build used (python3 on PATH), not another
    // libpython the dynamic loader might have found.
    let server = Server::start(&["--wsgi", "probe:application"]);
    let report = environ(&server.get("/environ"));
    let (version, prefix) = python_facts("python3");
    assert_eq!(text(&report, "sys.version"), version);
    assert_eq!(text(&report, "sys.prefix"), prefix);
    drop(server);

    // With VIRTUAL_ENV: sys.prefix is the venv, as its own python would have it.
    let venv = venv();
    let mut command = torsion();
    command.env("VIRTUAL_ENV", &venv);
    let server = Server::start_with(command, &["--wsgi", "probe:application"]);
    let report = environ(&server.get("/environ"));
    let (version, prefix) = python_facts(venv.join("bin/python").to_str().unwrap());
    assert_eq!(text(&report, "sys.version"), version);
    assert_eq!(text(&report, "sys.prefix"), prefix);
    assert_eq!(prefix, venv.to_str().unwrap());
}

#[test]
fn sigterm_lets_the_request_in_flight_finish_then_exits_0() {
    let server = Server::start(&["--wsgi", "probe:application"]);
    let in_flight = Started::new();
    let url = server.url(&format!("/sleep?seconds=1&{}", in_flight.query()));
    let started = Instant::now();
    let request =
        std::thread::spawn(move || Command::new("curl").args(["-sS", &url]).output().unwrap());
    // The signal comes once the request is with the application.
    in_flight.wait();
    let status = server.terminate();
    let output = request.join().unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "slept");
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(status.success(), "{status:?}");
}

#[test]
fn serves_https_with_h2_by_alpn_and_tls_facts_in_environ() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (key_path, cert_path) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    std::fs::write(&cert_path, cert.pem()).unwrap();
    let listen = format!(
        "ssl:0:interface=127.0.0.1:privateKey={}:certKey={}",
        torsion_endpoints::quote(key_path.to_str().unwrap()),
        torsion_endpoints::quote(cert_path.to_str().unwrap())
    );
    let server = Server::start(&["--wsgi", "probe:application", "--listen", &listen]);
    let port = server.address.rsplit(':').next().unwrap().to_owned();
    let output = Command::new("curl")
        .args(["-sS", "--cacert", cert_path.to_str().unwrap()])
        .args([
            "--resolve",
            &format!("localhost:{port}:127.0.0.1"),
            "-w",
            "\n%{http_version}",
        ])
        .arg(format!("https://localhost:{port}/environ"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    let (body, version) = out
        .rsplit_once('\n')
        .unwrap_or_else(|| panic!("{output:?}"));
    assert_eq!(version, "2", "HTTP/2 is negotiated by ALPN");
    let e = environ(body);
    assert_eq!(text(&e, "wsgi.url_scheme"), "https");
    assert_eq!(text(&e, "HTTPS"), "on");
    assert_eq!(text(&e, "SSL_TLS_SNI"), "localhost");
    assert_eq!(text(&e, "SSL_PROTOCOL"), "TLSv1.3");
    assert_eq!(text(&e, "SERVER_PROTOCOL"), "HTTP/2");
    assert_eq!(text(&e, "SERVER_PORT"), port);
}

#[test]
fn txsni_logs_a_broken_certificate_file_and_serves_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(
        dir.path().join("DEFAULT.pem"),
        key.serialize_pem() + &cert.pem(),
    )
    .unwrap();
    std::fs::write(dir.path().join("broken.example.pem"), "half-written").unwrap();
    let listen = format!(
        "txsni:{}:tcp:0:interface=127.0.0.1",
        torsion_endpoints::quote(dir.path().to_str().unwrap())
    );
    let server = Server::start(&["--wsgi", "hello:application", "--listen", &listen]);
    let line = server.wait_for_log("certificate not loaded");
    assert!(line.contains("broken.example.pem"), "{line}");
    assert!(line.contains("no private key"), "{line}");
    let port = server.address.rsplit(':').next().unwrap().to_owned();
    let output = Command::new("curl")
        .args(["-sS", "--insecure", &format!("https://127.0.0.1:{port}/")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "Hello, world!");
}
