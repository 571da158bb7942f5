//! Socket activation with real inherited descriptors: the test binary starts itself again
//! as a child with listening sockets at descriptors 3 and 4 and the `LISTEN_*` variables a
//! systemd socket unit would set, and talks to the child over those sockets.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use command_fds::{CommandFdExt, FdMapping};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use torsion_endpoints::{Endpoint, Listener};

const CHILD: &str = "TORSION_TEST_SYSTEMD_CHILD";

/// Starts this test binary's `systemd_child` with `fds` at 3, 4, ... and `LISTEN_PID` set to
/// the child's own PID, as systemd does (`sh` sets it, then `exec`s, keeping the PID).
fn activate(fds: Vec<OwnedFd>, names: &str, descriptors: &str) -> std::process::Child {
    let count = fds.len();
    let mappings = fds
        .into_iter()
        .enumerate()
        .map(|(i, parent_fd)| FdMapping {
            parent_fd,
            child_fd: 3 + i as i32,
        })
        .collect();
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(r#"LISTEN_PID=$$ exec "$0" "$@""#)
        .arg(std::env::current_exe().unwrap())
        .args([
            "systemd_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, descriptors)
        .env("LISTEN_FDS", count.to_string())
        .env("LISTEN_FDNAMES", names)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command.fd_mappings(mappings).unwrap();
    command.spawn().unwrap()
}

fn finish(child: std::process::Child) -> String {
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn exchange(mut stream: impl Read + Write) -> String {
    stream.write_all(b"ping").unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    reply
}

#[test]
fn systemd_adopts_inherited_tcp_and_unix_sockets_by_name_and_index() {
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_addr = tcp.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let unix_path = dir.path().join("activated.sock");
    let unix = std::os::unix::net::UnixListener::bind(&unix_path).unwrap();

    let child = activate(
        vec![tcp.into(), unix.into()],
        "web:admin",
        "systemd:domain=INET:name=web systemd:domain=UNIX:index=1",
    );
    // The sockets listen already: connecting needs no wait for the child to start.
    assert_eq!(
        exchange(TcpStream::connect(tcp_addr).unwrap()),
        format!("pong {tcp_addr}")
    );
    assert_eq!(
        exchange(UnixStream::connect(&unix_path).unwrap()),
        format!("pong unix:{}", unix_path.display())
    );
    let stdout = finish(child);
    assert!(
        stdout.contains("adopted systemd:domain=INET:name=web"),
        "{stdout}"
    );
}

#[test]
fn systemd_reports_a_wrong_domain_and_a_missing_socket_and_keeps_the_socket() {
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_addr = tcp.local_addr().unwrap();
    let child = activate(
        vec![tcp.into()],
        "web",
        "!systemd:domain=UNIX:index=0 !systemd:domain=INET:index=1 !systemd:domain=INET:name=api systemd:domain=INET:index=0",
    );
    // The failed attempt with the wrong domain left the socket open: the corrected
    // descriptor adopts it and serves.
    assert_eq!(
        exchange(TcpStream::connect(tcp_addr).unwrap()),
        format!("pong {tcp_addr}")
    );
    let stdout = finish(child);
    assert!(
        stdout.contains("descriptor 3 is a socket of INET, not UNIX; use domain=INET"),
        "{stdout}"
    );
    assert!(
        stdout.contains("index 1 is out of range: LISTEN_FDS passes 1 socket(s)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("no inherited socket is named \"api\"; LISTEN_FDNAMES has: web"),
        "{stdout}"
    );
}

#[test]
fn systemd_without_activation_says_so() {
    // This process was not socket-activated (the test runner sets no LISTEN_PID).
    if std::env::var_os("LISTEN_PID").is_some() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = runtime
        .block_on(
            Endpoint::parse("systemd:domain=INET:index=0")
                .unwrap()
                .listen(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("LISTEN_PID is not set"), "{err}");
}

/// The child side, run only through `activate`: each descriptor in the variable is opened;
/// one prefixed with `!` must fail, and its error is printed; the others serve one ping.
#[test]
#[ignore = "run as a child process by the systemd tests"]
fn systemd_child() {
    let Ok(descriptors) = std::env::var(CHILD) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut listeners: Vec<Listener> = Vec::new();
        for text in descriptors.split_whitespace() {
            match text.strip_prefix('!') {
                Some(text) => {
                    let err = Endpoint::parse(text).unwrap().listen().await.unwrap_err();
                    println!("error: {err}");
                }
                None => {
                    let listener = Endpoint::parse(text).unwrap().listen().await.unwrap();
                    println!(
                        "adopted {} at {}",
                        listener.endpoint(),
                        listener.local_addr()
                    );
                    listeners.push(listener);
                }
            }
        }
        // An inherited socket serves one listener only.
        if let Some(first) = descriptors.split_whitespace().find(|d| !d.starts_with('!')) {
            let err = Endpoint::parse(first).unwrap().listen().await.unwrap_err();
            assert!(
                err.to_string().contains("already used by another listener"),
                "{err}"
            );
        }
        for listener in &mut listeners {
            let mut connection = tokio::time::timeout(Duration::from_secs(10), listener.accept())
                .await
                .unwrap()
                .unwrap();
            let mut request = [0u8; 4];
            connection.read_exact(&mut request).await.unwrap();
            let reply = format!("pong {}", connection.info().local);
            connection.write_all(reply.as_bytes()).await.unwrap();
            connection.shutdown().await.unwrap();
        }
    });
}
