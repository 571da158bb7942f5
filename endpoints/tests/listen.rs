//! Real sockets for every kind: bind through a descriptor, connect with std clients,
//! exchange bytes, and check what the connection says about itself.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use torsion_endpoints::{Address, Connection, Endpoint, Error, Listener};

/// Accepts one connection, reads "ping", answers "pong <peer>", and returns the connection's facts.
async fn serve_one(listener: &mut Listener) -> Connection {
    let mut connection = tokio::time::timeout(Duration::from_secs(10), listener.accept())
        .await
        .expect("a connection within 10 s")
        .expect("accept");
    let mut request = [0u8; 4];
    connection.read_exact(&mut request).await.unwrap();
    assert_eq!(&request, b"ping");
    let reply = format!("pong {}", connection.info().peer);
    connection.write_all(reply.as_bytes()).await.unwrap();
    connection.shutdown().await.unwrap();
    connection
}

fn exchange(mut stream: impl Read + Write) -> String {
    stream.write_all(b"ping").unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    reply
}

#[tokio::test]
async fn tcp_exchanges_bytes_and_reports_both_addresses() {
    let mut listener = Endpoint::parse("tcp:0:interface=127.0.0.1")
        .unwrap()
        .listen()
        .await
        .unwrap();
    let addr = listener.local_addr().as_tcp().unwrap();
    let client = tokio::task::spawn_blocking(move || {
        let stream = TcpStream::connect(addr).unwrap();
        let local = stream.local_addr().unwrap();
        (local, exchange(stream))
    });
    let connection = serve_one(&mut listener).await;
    let (client_addr, reply) = client.await.unwrap();
    assert_eq!(reply, format!("pong {client_addr}"));
    assert_eq!(connection.info().peer, Address::Tcp(client_addr));
    assert_eq!(connection.info().local, Address::Tcp(addr));
    assert_eq!(connection.info().scheme(), "http");
    assert_eq!(connection.info().tls, None);
}

#[tokio::test]
async fn tcp6_listens_on_the_ipv6_loopback() {
    let mut listener = Endpoint::parse(r"tcp6:0:interface=\:\:1")
        .unwrap()
        .listen()
        .await
        .unwrap();
    let addr = listener.local_addr().as_tcp().unwrap();
    assert_eq!(addr.ip().to_string(), "::1");
    let client = tokio::task::spawn_blocking(move || exchange(TcpStream::connect(addr).unwrap()));
    let connection = serve_one(&mut listener).await;
    assert!(matches!(
        connection.info().peer,
        Address::Tcp(SocketAddr::V6(_))
    ));
    assert!(client.await.unwrap().starts_with("pong [::1]:"));
}

#[tokio::test]
async fn tcp_backlog_is_applied() {
    // Twisted's backlog keyword: the listener still works with a small queue.
    let mut listener = Endpoint::parse("tcp:0:127.0.0.1:1")
        .unwrap()
        .listen()
        .await
        .unwrap();
    let addr = listener.local_addr().as_tcp().unwrap();
    let client = tokio::task::spawn_blocking(move || exchange(TcpStream::connect(addr).unwrap()));
    serve_one(&mut listener).await;
    assert!(client.await.unwrap().starts_with("pong 127.0.0.1:"));
}

fn lock_target(lock: &Path) -> String {
    std::fs::read_link(lock)
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[tokio::test]
async fn unix_applies_mode_keeps_a_pid_lock_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sock");
    let lock = dir.path().join("app.sock.lock");
    let text = format!("unix:{}:mode=660", path.display());
    let mut listener = Endpoint::parse(&text).unwrap().listen().await.unwrap();
    assert_eq!(listener.local_addr(), &Address::Unix(Some(path.clone())));

    let metadata = std::fs::metadata(&path).unwrap();
    assert!(metadata.file_type().is_socket());
    assert_eq!(metadata.permissions().mode() & 0o7777, 0o660);
    // Twisted's FilesystemLock layout: a symlink whose target is the PID.
    assert_eq!(lock_target(&lock), std::process::id().to_string());

    let client_path = path.clone();
    let client =
        tokio::task::spawn_blocking(move || exchange(UnixStream::connect(client_path).unwrap()));
    let connection = serve_one(&mut listener).await;
    // The client's socket is unnamed.
    assert_eq!(client.await.unwrap(), "pong unix:");
    assert_eq!(connection.info().peer, Address::Unix(None));

    drop(listener);
    assert!(
        !path.exists(),
        "the socket file is removed when the listener is dropped"
    );
    assert!(std::fs::symlink_metadata(&lock).is_err(), "so is the lock");
}

#[tokio::test]
async fn unix_without_lockfile_makes_no_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let listener = Endpoint::parse(&format!("unix:{}:lockfile=0", path.display()))
        .unwrap()
        .listen()
        .await
        .unwrap();
    assert!(path.exists());
    assert!(std::fs::symlink_metadata(dir.path().join("s.lock")).is_err());
    // Default mode 666 (the umask does not apply: Twisted chmods after bind).
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o666
    );
    drop(listener);
}

#[tokio::test]
async fn unix_replaces_a_stale_socket_but_refuses_a_live_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sock");
    // A dead server's leftover: the file stays after the std listener closes.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let text = format!("unix:{}:lockfile=0", path.display());
    let mut listener = Endpoint::parse(&text).unwrap().listen().await.unwrap();
    let client_path = path.clone();
    let client =
        tokio::task::spawn_blocking(move || exchange(UnixStream::connect(client_path).unwrap()));
    serve_one(&mut listener).await;
    assert_eq!(client.await.unwrap(), "pong unix:");

    // A second server on the same live socket is refused, and the first keeps its file.
    let err = Endpoint::parse(&text).unwrap().listen().await.unwrap_err();
    assert!(matches!(err, Error::AddressInUse { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("another process is accepting connections"),
        "{err}"
    );
    assert!(path.exists());
}

#[tokio::test]
async fn unix_never_removes_a_file_that_is_not_a_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("important.txt");
    std::fs::write(&path, "data").unwrap();
    let err = Endpoint::parse(&format!("unix:{}:lockfile=0", path.display()))
        .unwrap()
        .listen()
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("exists and is not a socket"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "data");
}

#[tokio::test]
async fn unix_takes_over_a_stale_lock_and_respects_a_live_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sock");
    let lock = dir.path().join("app.sock.lock");
    let text = format!("unix:{}", path.display());

    // A lock left by a process that has exited.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    std::os::unix::fs::symlink(dead.to_string(), &lock).unwrap();
    let listener = Endpoint::parse(&text).unwrap().listen().await.unwrap();
    assert_eq!(lock_target(&lock), std::process::id().to_string());
    drop(listener);

    // A lock naming this very process was left by an earlier run with the same PID.
    std::os::unix::fs::symlink(std::process::id().to_string(), &lock).unwrap();
    drop(Endpoint::parse(&text).unwrap().listen().await.unwrap());

    // A lock that names no process at all is reported, not taken over.
    std::os::unix::fs::symlink("-1", &lock).unwrap();
    let err = Endpoint::parse(&text).unwrap().listen().await.unwrap_err();
    assert!(
        err.to_string().contains("which is not a process ID"),
        "{err}"
    );
    std::fs::remove_file(&lock).unwrap();

    // A lock held by a running process (PID 1 always runs).
    std::os::unix::fs::symlink("1", &lock).unwrap();
    let err = Endpoint::parse(&text).unwrap().listen().await.unwrap_err();
    assert!(
        err.to_string().contains("locked by running process 1"),
        "{err}"
    );
    assert_eq!(lock_target(&lock), "1", "someone else's lock is left alone");
    assert!(!path.exists());
}

#[tokio::test]
async fn unix_bind_errors_name_the_path_and_the_cause() {
    let err = Endpoint::parse("unix:/nonexistent-dir/app.sock")
        .unwrap()
        .listen()
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with("cannot listen on unix:/nonexistent-dir/app.sock:"),
        "{message}"
    );
    assert!(
        message.contains("the directory does not exist"),
        "{message}"
    );
}
