//! `torsion web --workers N`: a supervisor that opens the listeners once and runs worker
//! processes sharing them, as a user runs it.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{Server, environ, fixtures, torsion};

/// The PID of the worker that answers `GET /environ` on a new connection, and whether it
/// says it is one of several processes.
fn answer(server: &Server) -> (u64, bool) {
    let mut stream = server.connect();
    stream
        .write_all(b"GET /environ HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    let report = environ(body);
    (
        report["pid"].as_u64().unwrap(),
        report["wsgi.multiprocess"].as_bool().unwrap(),
    )
}

/// The workers' PIDs seen over new connections, until `count` distinct ones answered.
fn workers_seen(server: &Server, count: usize) -> BTreeSet<u64> {
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < count {
        assert!(
            Instant::now() < deadline,
            "only {seen:?} answered:\n{}",
            server.logs()
        );
        // Each new connection goes to whichever worker's accept wins.
        seen.insert(answer(server).0);
    }
    seen
}

/// Whether process `pid` exists.
fn alive(pid: u64) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| stat.split_whitespace().nth(2) == Some("Z"))
}

fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn several_workers_serve_and_all_stop_on_sigterm() {
    let server = Server::start(&["--wsgi", "probe:application", "--workers", "3"]);
    server.wait_for_log("every worker is serving workers=3");
    let (_, multiprocess) = answer(&server);
    assert!(
        multiprocess,
        "wsgi.multiprocess should be true with 3 workers"
    );
    let pids = workers_seen(&server, 3);
    assert!(
        !pids.contains(&u64::from(server.child.id())),
        "the supervisor serves nothing"
    );
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    for pid in pids {
        assert!(!alive(pid), "worker {pid} outlived its supervisor");
    }
}

#[test]
fn a_killed_worker_is_replaced() {
    let server = Server::start(&["--wsgi", "probe:application", "--workers", "2"]);
    server.wait_for_log("every worker is serving workers=2");
    let (victim, _) = answer(&server);
    signal(victim as u32, "KILL");
    server.wait_for_log("exited (killed by SIGKILL)");
    server.wait_for_log("worker serving worker=3");
    let pids = workers_seen(&server, 2);
    assert!(!pids.contains(&victim), "{pids:?}");
}

#[test]
fn a_worker_that_cannot_import_the_application_stops_start_up_with_status_2() {
    let started = Instant::now();
    let output = torsion()
        .args(["web", "--wsgi", "no_such_module:app", "--workers", "3"])
        .args(["--listen", "tcp:0:interface=127.0.0.1"])
        .current_dir(fixtures().join("apps"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr
            .contains("error: --wsgi no_such_module:app: importing module 'no_such_module' failed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("stopped while starting (exit status 2)"),
        "{stderr}"
    );
    // Three workers started, none restarted: no loop.
    assert_eq!(stderr.matches("worker started").count(), 3, "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn sigttin_adds_a_worker_and_sigttou_retires_one() {
    let server = Server::start(&["--wsgi", "probe:application", "--workers", "1"]);
    // --workers 1 runs no supervisor: the process itself serves.
    assert_eq!(answer(&server).0, u64::from(server.child.id()));
    drop(server);
    let server = Server::start(&["--wsgi", "probe:application", "--workers", "2"]);
    server.wait_for_log("every worker is serving workers=2");
    signal(server.child.id(), "TTIN");
    server.wait_for_log("worker serving worker=3");
    workers_seen(&server, 3);
    signal(server.child.id(), "TTOU");
    server.wait_for_log("retired worker exited (exit status 0) worker=3");
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
}

#[test]
fn sigterm_lets_a_slow_request_finish_in_its_worker() {
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("started");
    let server = Server::start(&["--wsgi", "probe:application", "--workers", "2"]);
    server.wait_for_log("every worker is serving workers=2");
    let url_path = format!("/sleep?seconds=1&started={}", started.display());
    let mut stream = server.connect();
    stream
        .write_all(
            format!("GET {url_path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !started.exists() {
        assert!(Instant::now() < deadline, "{}", server.logs());
        std::thread::sleep(Duration::from_millis(10));
    }
    let supervisor = server.child.id();
    signal(supervisor, "TERM");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_socket_activated_supervisor_passes_systemds_socket_to_its_workers() {
    use command_fds::{CommandFdExt, FdMapping};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let mut command = std::process::Command::new("sh");
    command
        .arg("-c")
        .arg(r#"LISTEN_PID=$$ exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_torsion"))
        .env("LISTEN_FDS", "1")
        .env("LISTEN_FDNAMES", "web");
    command
        .fd_mappings(vec![FdMapping {
            parent_fd: std::os::fd::OwnedFd::from(listener),
            child_fd: 3,
        }])
        .unwrap();
    let server = Server::start_with(
        command,
        &[
            "--wsgi",
            "probe:application",
            "--listen",
            "systemd:domain=INET:name=web",
            "--workers",
            "2",
        ],
    );
    assert_eq!(server.address, address.to_string());
    server.wait_for_log("every worker is serving workers=2");
    let pids = workers_seen(&server, 2);
    assert!(!pids.contains(&u64::from(server.child.id())));
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
}

#[test]
fn workers_share_a_unix_socket_that_the_supervisor_removes_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sock");
    let listen = format!("unix:{}:mode=600", path.display());
    let server = Server::start(&[
        "--wsgi",
        "probe:application",
        "--listen",
        &listen,
        "--workers",
        "2",
    ]);
    server.wait_for_log("every worker is serving workers=2");
    let report = environ(&server.get("/environ"));
    assert_ne!(
        report["pid"].as_u64().unwrap(),
        u64::from(server.child.id())
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    assert!(
        !path.exists(),
        "the supervisor leaves no socket file behind"
    );
}

/// The states of every datagram `socket` receives until one holds `last`, in order.
fn notifications_until(socket: &std::os::unix::net::UnixDatagram, last: &str) -> Vec<String> {
    let mut states = Vec::new();
    let mut buf = [0u8; 4096];
    while !states.iter().any(|s| s == last) {
        let n = socket
            .recv(&mut buf)
            .expect("a notification within the read timeout");
        states.extend(
            String::from_utf8_lossy(&buf[..n])
                .lines()
                .map(str::to_owned),
        );
    }
    states
}

#[test]
fn systemd_is_told_ready_watchdog_and_stopping_by_the_main_process_only() {
    for workers in ["1", "2"] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut command = torsion();
        command
            .env("NOTIFY_SOCKET", &path)
            .env("WATCHDOG_USEC", "200000");
        let server = Server::start_with(
            command,
            &["--wsgi", "probe:application", "--workers", workers],
        );
        let states = notifications_until(&socket, "READY=1");
        assert!(
            !states.iter().any(|s| s.starts_with("STOPPING")),
            "{states:?}"
        );
        // The watchdog keeps coming, every 0.1 s (half of WATCHDOG_USEC).
        let states = notifications_until(&socket, "WATCHDOG=1");
        assert!(
            !states.iter().any(|s| s == "READY=1"),
            "a second READY=1: {states:?}"
        );
        let supervisor = server.child.id();
        if workers == "2" {
            // A rolling restart: RELOADING=1 with MONOTONIC_USEC, then READY=1 when done.
            signal(supervisor, "HUP");
            let states = notifications_until(&socket, "RELOADING=1");
            let states = [states, notifications_until(&socket, "READY=1")].concat();
            let at = |state: &str| states.iter().position(|s| s.starts_with(state));
            assert!(
                at("RELOADING=1") < at("MONOTONIC_USEC=") && at("MONOTONIC_USEC=") < at("READY=1"),
                "{states:?}"
            );
        }
        signal(supervisor, "TERM");
        let states = notifications_until(&socket, "STOPPING=1");
        assert!(
            !states.iter().any(|s| s == "READY=1"),
            "READY=1 from a worker: {states:?}"
        );
        let status = server.terminate();
        assert!(status.success(), "--workers {workers}: {status:?}");
    }
}

#[test]
fn as_process_1_orphans_are_reaped_and_sigterm_is_passed_on() {
    // A new PID namespace with its own /proc: torsion is its process 1.
    let mut command = std::process::Command::new("unshare");
    command
        .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .arg(env!("CARGO_BIN_EXE_torsion"));
    let server = Server::start_with(command, &["--wsgi", "probe:application"]);
    // One worker, under a supervisor that is process 1.
    server.wait_for_log("every worker is serving workers=1");
    let grandchild = server.get("/orphan");
    let grandchild = grandchild.trim();
    assert!(grandchild.parse::<u32>().is_ok(), "{grandchild}");
    // The grandchild exits after 0.2 s; adopted by process 1, it must not stay a zombie.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state = server.get(&format!("/process-state?pid={grandchild}"));
        if state == "gone" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "process {grandchild} is still {state}:\n{}",
            server.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SIGTERM to process 1 (from outside: its PID in this namespace) stops everything.
    let unshare = server.child.id();
    let init = std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children"))
        .unwrap()
        .trim()
        .to_owned();
    signal(init.parse().unwrap(), "TERM");
    server.wait_for_log("SIGTERM received: stopping the workers");
    server.wait_for_log("worker exited (exit status 0)");
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
}

/// A client that sends `GET /environ` over keep-alive HTTP/1.1 connections until `stop`,
/// opening a new connection whenever the server closes one with `Connection: close`.
/// Returns the answers it got, and every failure: a refused connection, a request the
/// server closed without answering, or a status other than 200.
fn keep_asking(
    address: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (usize, Vec<String>) {
    use std::io::BufRead;
    let (mut answered, mut failures) = (0, Vec::new());
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let stream = match std::net::TcpStream::connect(&address) {
            Ok(stream) => stream,
            Err(err) => {
                failures.push(format!("connect: {err}"));
                continue;
            }
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        loop {
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                return (answered, failures);
            }
            if let Err(err) = writer.write_all(b"GET /environ HTTP/1.1\r\nHost: test\r\n\r\n") {
                failures.push(format!("send: {err}"));
                break;
            }
            let mut head = Vec::new();
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) => break,
                    Ok(_) if line == "\r\n" => {
                        head.push(line);
                        break;
                    }
                    Ok(_) => head.push(line),
                    Err(err) => {
                        failures.push(format!("read: {err}"));
                        break;
                    }
                }
            }
            if head.last().map(String::as_str) != Some("\r\n") {
                failures.push(format!("the connection ended without an answer: {head:?}"));
                break;
            }
            if !head[0].starts_with("HTTP/1.1 200") {
                failures.push(format!("answered {}", head[0].trim()));
            }
            let field = |name: &str| {
                head.iter().find_map(|line| {
                    let (key, value) = line.split_once(':')?;
                    key.eq_ignore_ascii_case(name)
                        .then(|| value.trim().to_owned())
                })
            };
            let length: usize = field("content-length")
                .and_then(|l| l.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0u8; length];
            if let Err(err) = reader.read_exact(&mut body) {
                failures.push(format!("body: {err}"));
                break;
            }
            answered += 1;
            if field("connection").is_some_and(|c| c.eq_ignore_ascii_case("close")) {
                break;
            }
        }
    }
    (answered, failures)
}

#[test]
fn sighup_restarts_the_workers_one_at_a_time_without_a_failed_request() {
    let server = Server::start(&["--wsgi", "probe:application", "--workers", "2"]);
    server.wait_for_log("every worker is serving workers=2");
    let before = workers_seen(&server, 2);
    let (answered, failures) = under_load(&server, 16, || {
        signal(server.child.id(), "HUP");
        server.wait_for_log("rolling restart done");
        // Both old workers have drained and exited while the clients kept asking.
        wait_for_count(&server, "retired worker exited (exit status 0)", 2);
    });
    assert!(
        failures.is_empty(),
        "{} failed of {}: {failures:?}",
        failures.len(),
        answered + failures.len()
    );
    assert!(answered > 50, "only {answered} answers");
    let after = workers_seen(&server, 2);
    assert!(before.is_disjoint(&after), "{before:?} then {after:?}");
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
}

/// Runs h2load (nghttp2's load generator: HTTP/2 with prior knowledge, 4 connections of
/// 4 concurrent streams, 400 requests a run) again and again against `server` while
/// `during` runs; returns the requests answered with a 2xx, and a line for every run with a
/// request that failed, errored, timed out or got another status, as h2load counts them.
/// h2load opens a new connection when the server sends GOAWAY, and counts a stream the
/// server refused or reset as failed.
fn under_h2_load(server: &Server, during: impl FnOnce()) -> (u64, Vec<String>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = Arc::new(AtomicBool::new(false));
    let url = server.url("/environ");
    let client = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut answered, mut failures) = (0, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let output = std::process::Command::new("h2load")
                    .args(["-n", "400", "-c", "4", "-m", "4", &url])
                    .output()
                    .expect("h2load (Debian's nghttp2-client) runs");
                let report = String::from_utf8_lossy(&output.stdout);
                let counts = |line: &str| -> Vec<u64> {
                    report
                        .lines()
                        .find(|l| l.starts_with(line))
                        .unwrap_or_else(|| panic!("no {line:?} in h2load's report:\n{report}"))
                        .split([',', ' '])
                        .filter_map(|word| word.parse().ok())
                        .collect()
                };
                // "requests: T total, S started, D done, S succeeded, F failed, E errored, T timeout"
                let requests = counts("requests:");
                // "status codes: A 2xx, B 3xx, C 4xx, D 5xx"
                let statuses = counts("status codes:");
                answered += statuses[0];
                if !output.status.success()
                    || requests[0] != statuses[0]
                    || requests[4..].iter().any(|&n| n > 0)
                {
                    failures.push(
                        report
                            .lines()
                            .filter(|l| {
                                l.starts_with("requests:") || l.starts_with("status codes:")
                            })
                            .collect::<Vec<_>>()
                            .join("; "),
                    );
                }
            }
            (answered, failures)
        })
    };
    during();
    stop.store(true, Ordering::Relaxed);
    client.join().unwrap()
}

#[test]
fn sighup_under_http2_load_fails_no_request() {
    let server = Server::start(&["--wsgi", "probe:application", "--workers", "2"]);
    server.wait_for_log("every worker is serving workers=2");
    let before = workers_seen(&server, 2);
    let (answered, failures) = under_h2_load(&server, || {
        signal(server.child.id(), "HUP");
        server.wait_for_log("rolling restart done");
        // Both old workers sent GOAWAY, finished their streams and exited meanwhile.
        wait_for_count(&server, "retired worker exited (exit status 0)", 2);
    });
    assert!(failures.is_empty(), "{failures:?}");
    assert!(answered > 400, "only {answered} answers");
    let after = workers_seen(&server, 2);
    assert!(before.is_disjoint(&after), "{before:?} then {after:?}");
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_rolling_restart_stops_at_a_worker_that_cannot_start_and_the_old_ones_serve() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("broken");
    let mut command = torsion();
    command.env("BREAKABLE_FLAG", &flag);
    let server = Server::start_with(
        command,
        &["--wsgi", "breakable:application", "--workers", "2"],
    );
    server.wait_for_log("every worker is serving workers=2");
    let before = workers_seen(&server, 2);
    std::fs::write(&flag, "").unwrap();
    signal(server.child.id(), "HUP");
    server.wait_for_log("the rolling restart stops, and the old workers keep serving");
    assert!(
        server.logs().contains("RuntimeError: broken deploy"),
        "{}",
        server.logs()
    );
    for _ in 0..10 {
        assert!(before.contains(&answer(&server).0));
    }
    // Fixed: the next SIGHUP replaces both.
    std::fs::remove_file(&flag).unwrap();
    signal(server.child.id(), "HUP");
    server.wait_for_log("rolling restart done");
    wait_for_count(&server, "retired worker exited (exit status 0)", 2);
    let after = workers_seen(&server, 2);
    assert!(before.is_disjoint(&after), "{before:?} then {after:?}");
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
}

/// Runs `clients` keep-alive clients (see [`keep_asking`]) against `server` while `during`
/// runs; returns the answers they got and their failures.
fn under_load(server: &Server, clients: usize, during: impl FnOnce()) -> (usize, Vec<String>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..clients)
        .map(|_| {
            let (address, stop) = (server.address.clone(), stop.clone());
            std::thread::spawn(move || keep_asking(address, stop))
        })
        .collect();
    during();
    stop.store(true, Ordering::Relaxed);
    let (mut answered, mut failures) = (0, Vec::new());
    for client in clients {
        let (a, f) = client.join().unwrap();
        answered += a;
        failures.extend(f);
    }
    (answered, failures)
}

/// Waits up to 60 s until `server`'s log has `needle` at least `count` times.
fn wait_for_count(server: &Server, needle: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.logs().matches(needle).count() < count {
        assert!(
            Instant::now() < deadline,
            "fewer than {count} {needle:?} in:\n{}",
            server.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn max_requests_recycles_workers_under_load_without_a_failed_request() {
    let server = Server::start(&[
        "--wsgi",
        "probe:application",
        "--workers",
        "2",
        "--max-requests",
        "200",
        "--max-requests-jitter",
        "50",
    ]);
    server.wait_for_log("every worker is serving workers=2");
    let (answered, failures) = under_load(&server, 16, || {
        wait_for_count(&server, "retired worker exited (exit status 0)", 3);
    });
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
    assert!(answered >= 600, "only {answered} answers");
    assert!(
        server
            .logs()
            .contains("worker served its --max-requests: replacing it")
    );
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
}

#[test]
fn max_worker_memory_replaces_a_worker_over_it() {
    let server = Server::start(&[
        "--wsgi",
        "probe:application",
        "--workers",
        "2",
        "--max-worker-memory",
        "1",
    ]);
    server.wait_for_log("every worker is serving workers=2");
    server.wait_for_log("MB, over --max-worker-memory 1.0 MB: replacing it");
    server.wait_for_log("retired worker exited (exit status 0)");
    assert!(answer(&server).1, "wsgi.multiprocess");
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
}

/// Writes an application answering `text` (with its length) to `dir/app.py`.
fn write_app(dir: &std::path::Path, text: &str) {
    std::fs::write(
        dir.join("app.py"),
        format!(
            "def application(environ, start_response):\n    start_response('200 OK', [('Content-Type', 'text/plain'), ('Content-Length', '{}')])\n    return [b'{text}']\n",
            text.len()
        ),
    )
    .unwrap();
}

#[test]
fn reload_picks_up_an_edit_survives_a_syntax_error_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    write_app(dir.path(), "version 1");
    let mut command = torsion();
    command.current_dir(dir.path());
    let server = Server::start_with(command, &["--wsgi", "app:application", "--reload"]);
    server.wait_for_log("every worker is serving workers=1");
    assert_eq!(server.get("/"), "version 1");
    let until_answer = |text: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.get("/") != text {
            assert!(
                Instant::now() < deadline,
                "never answered {text:?}:\n{}",
                server.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // Clients keep asking throughout: no connection is refused and no request lost.
    let (answered, failures) = under_load(&server, 4, || {
        write_app(dir.path(), "version 2");
        until_answer("version 2");
        // A syntax error: logged with where it is, and the running worker goes on.
        std::fs::write(dir.path().join("app.py"), "def application(:\n").unwrap();
        server.wait_for_log("the rolling restart stops, and the old workers keep serving");
        assert!(server.logs().contains("SyntaxError"), "{}", server.logs());
        assert_eq!(server.get("/"), "version 2");
        // Fixed: the next change is picked up.
        write_app(dir.path(), "version 3");
        until_answer("version 3");
    });
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
    assert!(answered > 0);
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_config_file_that_asks_for_workers_gets_them_from_the_same_process() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("torsion_conf.py");
    std::fs::write(
        &config,
        "wsgi = 'probe:application'\nworkers = 2\nshutdown_timeout = 5\n",
    )
    .unwrap();
    let server = Server::start(&["--config", config.to_str().unwrap()]);
    server.wait_for_log("every worker is serving workers=2");
    // Each worker read the file: it serves the file's application.
    let workers = workers_seen(&server, 2);
    // The process started read the file, then became the supervisor, keeping its PID (as
    // systemd's MAINPID and a container's process 1 need): it answers SIGHUP.
    assert!(!workers.contains(&u64::from(server.child.id())));
    signal(server.child.id(), "HUP");
    server.wait_for_log("rolling restart done");
    wait_for_count(&server, "retired worker exited (exit status 0)", 2);
    let after = workers_seen(&server, 2);
    assert!(workers.is_disjoint(&after), "{workers:?} then {after:?}");
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
}
