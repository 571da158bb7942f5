//! The hyper example serves real HTTP on tcp and unix descriptors, and rejects bad ones.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn example() -> Command {
    // `cargo test` and `cargo nextest run` build the examples beside the test binaries;
    // a run filtered to this one test target does not, so build it then.
    let mut path = std::env::current_exe().unwrap();
    path.pop();
    if path.ends_with("deps") {
        path.pop();
    }
    let binary = path.join("examples").join("hello_hyper");
    if !binary.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "-p",
                "torsion-endpoints",
                "--example",
                "hello_hyper",
            ])
            .status()
            .unwrap();
        assert!(status.success(), "building the hello_hyper example failed");
    }
    Command::new(binary)
}

#[test]
fn serves_http_over_tcp_and_unix_with_curl() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("hello.sock");
    let mut child = example()
        .args([
            "tcp:0:interface=127.0.0.1",
            &format!("unix:{}", sock.display()),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let tcp_line = lines.next().unwrap().unwrap();
    let addr = tcp_line.rsplit(" at ").next().unwrap().to_owned();
    assert!(lines.next().unwrap().unwrap().contains("unix:"));

    let tcp = Command::new("curl")
        .args(["-sS", &format!("http://{addr}/")])
        .output()
        .unwrap();
    let h2 = Command::new("curl")
        .args([
            "-sS",
            "--http2-prior-knowledge",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version}",
            &format!("http://{addr}/"),
        ])
        .output()
        .unwrap();
    let unix = Command::new("curl")
        .args([
            "-sS",
            "--unix-socket",
            sock.to_str().unwrap(),
            "http://localhost/",
        ])
        .output()
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();

    let tcp = String::from_utf8_lossy(&tcp.stdout);
    assert!(
        tcp.starts_with("Hello from tcp:0:interface=127.0.0.1; you are 127.0.0.1:"),
        "{tcp}"
    );
    assert!(tcp.ends_with(" over http\n"), "{tcp}");
    assert_eq!(String::from_utf8_lossy(&h2.stdout), "2");
    let unix = String::from_utf8_lossy(&unix.stdout);
    assert_eq!(
        unix,
        format!(
            "Hello from unix:{}; you are unix: over http\n",
            sock.display()
        )
    );
}

#[test]
fn a_bad_descriptor_exits_2_with_the_message() {
    let output = example().arg("tcp:http").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("error: invalid endpoint descriptor \"tcp:http\": tcp: port \"http\" is not valid; expected a port number from 0 to 65535"),
        "{stderr}"
    );
}
