//! Starting the real `torsion` binary and talking to it with real clients (curl, raw sockets).

#![allow(dead_code)]

pub mod acme;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn fixtures() -> PathBuf {
    root().join("fixtures")
}

/// The test virtualenv made by scripts/test.sh; its absence is a set-up error, not a skip.
pub fn venv() -> PathBuf {
    let venv = root().join(".venv");
    assert!(
        venv.join("bin").join("python").exists(),
        "{} is missing: run scripts/test.sh, which creates it from fixtures/requirements.txt",
        venv.display()
    );
    venv
}

pub fn torsion() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_torsion"));
    command.env_remove("VIRTUAL_ENV").env("RUST_LOG", "info");
    command
}

/// A running `torsion web`, killed when dropped.
pub struct Server {
    pub child: Child,
    /// Where the first listener listens: `127.0.0.1:PORT`, `[::1]:PORT` or `unix:/path`.
    pub address: String,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `torsion web` with `args` (and `--listen tcp:0:interface=127.0.0.1` unless a
    /// --listen is given), in `fixtures/apps`, and waits until it listens.
    pub fn start(args: &[&str]) -> Server {
        Server::start_with(torsion(), args)
    }

    pub fn start_with(mut command: Command, args: &[&str]) -> Server {
        command.arg("web").args(args);
        if !args.contains(&"--listen") {
            command.args(["--listen", "tcp:0:interface=127.0.0.1"]);
        }
        if command.get_current_dir().is_none() {
            command.current_dir(fixtures().join("apps"));
        }
        command.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("start torsion");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (found, wait) = std::sync::mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            let mut found = Some(found);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(address) = line.split(" address=").nth(1)
                    && line.contains(" listening ")
                    && let Some(found) = found.take()
                {
                    let _ = found.send(address.split_whitespace().next().unwrap_or("").to_owned());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let address = match wait.recv_timeout(Duration::from_secs(30)) {
            Ok(address) => address,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "torsion did not start listening:\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
        };
        Server {
            child,
            address,
            logs,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Waits up to 10 s for a log line containing `needle`.
    pub fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(line) = self
                .logs
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
            {
                return line.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {needle:?} in:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs curl against this server with `args` then the URL of `path`.
    pub fn curl(&self, args: &[&str], path: &str) -> Output {
        let mut command = Command::new("curl");
        command.args(["-sS", "--max-time", "30"]).args(args);
        match self.address.strip_prefix("unix:") {
            Some(socket) => command
                .args(["--unix-socket", socket])
                .arg(format!("http://localhost{path}")),
            None => command.arg(self.url(path)),
        };
        command.output().expect("run curl")
    }

    /// GET `path` with curl; panics unless curl succeeds. Returns the body.
    pub fn get(&self, path: &str) -> String {
        let output = self.curl(&[], path);
        assert!(
            output.status.success(),
            "curl {path}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// GET `path` and return (status code, headers text, body).
    pub fn fetch(&self, args: &[&str], path: &str) -> (u16, String, String) {
        let mut all = vec!["-i"];
        all.extend_from_slice(args);
        let output = self.curl(&all, path);
        assert!(
            output.status.success(),
            "curl {path}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, head.to_owned(), body.to_owned())
    }

    /// A raw TCP connection to the server.
    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(&self.address).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "torsion did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A file that fixtures/apps/probe.py creates when a request carrying [`Started::query`]
/// reaches the application: the event a test waits for to know a request is in flight.
pub struct Started {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Started {
    pub fn new() -> Started {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("started");
        Started { _dir: dir, path }
    }

    /// The query parameter to add to a probe URL: `started=/tmp/.../started`.
    pub fn query(&self) -> String {
        let path = self.path.to_str().unwrap();
        assert!(
            path.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b)),
            "{path} would need percent-encoding"
        );
        format!("started={path}")
    }

    /// Waits up to 10 s until the application has the request.
    pub fn wait(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.path.exists() {
            assert!(
                Instant::now() < deadline,
                "the request did not reach the application within 10 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Reads one HTTP/1.1 response (head and a Content-Length body) from `stream`.
pub fn read_response(stream: &mut impl Read) -> (String, Vec<u8>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            stream.read(&mut byte).unwrap(),
            1,
            "connection closed in the head: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    (head, body)
}

pub fn send(stream: &mut impl Write, request: &str) {
    stream.write_all(request.as_bytes()).unwrap();
}

/// The JSON object the probe app's /environ returns.
pub fn environ(body: &str) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::from_str(body) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => panic!("not a JSON object: {body}"),
    }
}

/// A string value of the environ report.
pub fn text<'a>(environ: &'a serde_json::Map<String, serde_json::Value>, key: &str) -> &'a str {
    environ
        .get(key)
        .and_then(|v| v.as_str())
        .unwrap_or_else(|| panic!("{key} missing or not a str in {environ:?}"))
}
