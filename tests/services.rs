//! A whole service in one process, as a user runs it: repeating tasks (`--timer`), the
//! control channel (`--control`) with live parameters (`--params-file`) and health.
//! The application and the timers are `fixtures/apps/service.py`; the timers write what
//! they do to the file in `SERVICE_LOG`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Server, torsion};

/// A service started with `args`, its timers writing to a log in a temporary directory.
struct Service {
    server: Server,
    dir: tempfile::TempDir,
}

impl Service {
    fn start(args: &[&str]) -> Service {
        let dir = tempfile::tempdir().unwrap();
        Service::start_in(dir, args)
    }

    fn start_in(dir: tempfile::TempDir, args: &[&str]) -> Service {
        let mut command = torsion();
        command.env("SERVICE_LOG", dir.path().join("service.log"));
        let mut all = vec!["--wsgi", "service:application"];
        all.extend_from_slice(args);
        let server = Server::start_with(command, &all);
        Service { server, dir }
    }

    /// The control socket's path in the temporary directory.
    fn socket(&self) -> PathBuf {
        self.dir.path().join("control.sock")
    }

    /// The timers' lines so far.
    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("service.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Waits up to 20 s until `count` timer lines start with `prefix`; returns them.
    fn wait_for_lines(&self, prefix: &str, count: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let lines: Vec<String> = self
                .lines()
                .into_iter()
                .filter(|l| l.starts_with(prefix))
                .collect();
            if lines.len() >= count {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "fewer than {count} {prefix:?} lines: {:?}\n{}",
                self.lines(),
                self.server.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn json(&self, path: &str) -> serde_json::Value {
        serde_json::from_str(&self.server.get(path)).unwrap()
    }
}

/// One request to a control channel: over the unix socket `socket`, or to `url` (then with
/// `token`, if any). Returns the status and the body as JSON (or as a JSON string when it is
/// not JSON, as /metrics is).
fn control(
    socket: Option<&Path>,
    base: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut command = Command::new("curl");
    command.args([
        "-sS",
        "--max-time",
        "10",
        "-w",
        "\n%{http_code}",
        "-X",
        method,
    ]);
    if let Some(socket) = socket {
        command.arg("--unix-socket").arg(socket);
    }
    if let Some(body) = body {
        command.args(["--data-binary", body]);
    }
    if let Some(token) = token {
        command.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    let output = command.arg(format!("{base}{path}")).output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    let (body, status) = text.rsplit_once('\n').unwrap();
    let value =
        serde_json::from_str(body).unwrap_or_else(|_| serde_json::Value::String(body.to_owned()));
    (status.parse().unwrap(), value)
}

/// [`control`] over the service's unix socket.
fn ask(
    service: &Service,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, serde_json::Value) {
    control(
        Some(&service.socket()),
        "http://control",
        method,
        path,
        body,
        None,
    )
}

/// The seconds in a timer line ("tick <seconds> <pid>", "slow start <seconds>"): its first
/// word with a decimal point.
fn seconds(line: &str) -> f64 {
    line.split_whitespace()
        .find(|word| word.contains('.'))
        .and_then(|word| word.parse().ok())
        .unwrap_or_else(|| panic!("no seconds in {line:?}"))
}

#[test]
fn a_timer_runs_at_start_then_every_interval_from_the_start_of_the_last_call() {
    let started = Instant::now();
    let service = Service::start(&["--timer", "0.4=service:tick"]);
    let ticks = service.wait_for_lines("tick ", 1);
    // The first call comes with start-up, not an interval later.
    assert!(started.elapsed() < Duration::from_secs(10), "{ticks:?}");
    let ticks = service.wait_for_lines("tick ", 6);
    let times: Vec<f64> = ticks.iter().map(|l| seconds(l)).collect();
    // Five intervals of 0.4 s from the first call to the sixth: 2 s, within one interval.
    let span = times[5] - times[0];
    assert!((1.6..=2.4).contains(&span), "{times:?}");
    service.server.wait_for_log("timer service:tick");
}

#[test]
fn a_slow_timer_never_overlaps_itself_and_the_log_says_it_overran() {
    let service = Service::start(&["--timer", "0.5=service:slow_tick"]);
    let ends = service.wait_for_lines("slow end", 2);
    let lines: Vec<String> = service
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("slow "))
        .collect();
    // start, end, start, end...: a call starts only after the previous one ended.
    for (index, line) in lines.iter().enumerate() {
        let expected = if index % 2 == 0 {
            "slow start"
        } else {
            "slow end"
        };
        assert!(line.starts_with(expected), "{lines:?}");
    }
    assert!(
        seconds(&lines[2]) >= seconds(&lines[1]),
        "{lines:?} {ends:?}"
    );
    service.server.wait_for_log("longer than its interval");
}

#[test]
fn a_timer_that_raises_is_logged_with_its_traceback_and_runs_again() {
    let service = Service::start(&["--timer", "0.2=service:failing_tick"]);
    service.wait_for_lines("failing ", 3);
    let line = service.server.wait_for_log("RuntimeError: failing tick 1");
    assert!(
        line.contains("service:failing_tick")
            || service.server.logs().contains("service:failing_tick")
    );
    assert!(
        service.server.logs().contains("service.py"),
        "the traceback names the file"
    );
}

#[test]
fn a_timer_flag_that_is_not_a_task_stops_start_up_with_status_2() {
    for (value, expected) in [
        ("service:tick", "expected SECONDS=NAME"),
        ("0=service:tick", "is not a number of seconds above 0"),
        ("soon=service:tick", "is not a number of seconds above 0"),
        ("1=service:no_such_task", "no_such_task"),
        ("1=no_such_module:task", "no_such_module"),
    ] {
        let output = torsion()
            .current_dir(common::fixtures().join("apps"))
            .args(["web", "--wsgi", "service:application", "--timer", value])
            .args(["--listen", "tcp:0:interface=127.0.0.1"])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{value}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{value}: {stderr}");
    }
}

#[test]
fn a_parameter_put_on_the_control_channel_is_seen_by_the_next_request_and_kept_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("params.json");
    std::fs::write(&file, "{\"color\": \"red\", \"ratio\": 0.25}\n").unwrap();
    let socket = dir.path().join("control.sock");
    let control_flag = format!("unix:{}:mode=600", socket.display());
    let args = [
        "--control",
        control_flag.as_str(),
        "--params-file",
        file.to_str().unwrap(),
        "--timer",
        "0.2=service:param_tick",
    ];
    let service = Service::start_in(dir, &args);
    let mode = std::fs::metadata(&socket).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    let seen = service.json("/params");
    assert_eq!(
        seen["environ"],
        serde_json::json!({"color": "red", "ratio": 0.25})
    );
    assert_eq!(seen["module"], seen["environ"]);

    let (status, answer) = ask(&service, "PUT", "/params/color", Some("\"blue\""));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        serde_json::json!({"name": "color", "value": "blue", "previous": "red"})
    );
    // The very next request sees it, in environ and through torsion.params.
    let seen = service.json("/params");
    assert_eq!(seen["environ"]["color"], "blue");
    assert_eq!(seen["module"]["color"], "blue");
    // So does a timer.
    service.wait_for_lines("color blue", 1);
    let line = service.server.wait_for_log("parameter changed");
    assert!(
        line.contains("name=\"color\"")
            && line.contains("old=\"red\"")
            && line.contains("new=\"blue\""),
        "{line}"
    );

    let patch = r#"{"ratio": null, "variants": ["a", "b"], "limits": {"rps": 10}}"#;
    let (status, after) = ask(&service, "PATCH", "/params", Some(patch));
    assert_eq!(status, 200);
    let expected =
        serde_json::json!({"color": "blue", "variants": ["a", "b"], "limits": {"rps": 10}});
    assert_eq!(after, expected);
    assert_eq!(
        ask(&service, "GET", "/params/variants", None),
        (200, serde_json::json!(["a", "b"]))
    );
    assert_eq!(ask(&service, "DELETE", "/params/limits", None).0, 200);
    assert_eq!(ask(&service, "DELETE", "/params/limits", None).0, 404);
    assert_eq!(ask(&service, "GET", "/params/limits", None).0, 404);
    // The application cannot change what it is given.
    let mutated = service.json("/mutate");
    assert_eq!(mutated["mutated"], false, "{mutated}");

    // Bad input gets a 4xx and changes nothing.
    let before = ask(&service, "GET", "/params", None).1;
    let (status, answer) = ask(&service, "PUT", "/params/color", Some("{not json"));
    assert_eq!(status, 400);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("line 1 column 2"),
        "{answer}"
    );
    assert_eq!(ask(&service, "PATCH", "/params", Some("[1]")).0, 400);
    assert_eq!(ask(&service, "GET", "/nowhere", None).0, 404);
    assert_eq!(ask(&service, "POST", "/params", Some("{}")).0, 405);
    assert_eq!(ask(&service, "GET", "/params", None).1, before);

    // On disk, whole, and read again by the next server.
    let on_disk: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(
        on_disk,
        serde_json::json!({"color": "blue", "variants": ["a", "b"]})
    );
    let Service { server, dir } = service;
    assert!(server.terminate().success());
    let service = Service::start_in(dir, &args);
    assert_eq!(service.json("/params")["environ"], on_disk);
}

#[test]
fn a_request_keeps_the_parameters_it_started_with() {
    let dir = tempfile::tempdir().unwrap();
    let control_flag = format!("unix:{}", dir.path().join("control.sock").display());
    let service = Service::start_in(dir, &["--control", &control_flag]);
    ask(&service, "PUT", "/params/color", Some("\"red\""));
    let address = service.server.url("/hold?1.5");
    let holding = std::thread::spawn(move || {
        let output = Command::new("curl")
            .args(["-sS", &address])
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
    });
    // While it is held, the parameter changes; a new request sees the change at once.
    service.wait_for_lines("hold ", 1);
    ask(&service, "PUT", "/params/color", Some("\"green\""));
    assert_eq!(service.json("/params")["environ"]["color"], "green");
    let held = holding.join().unwrap();
    assert_eq!(held["environ"]["color"], "red", "{held}");
    assert_eq!(held["same"], true);
}

#[test]
fn a_malformed_params_file_stops_start_up_naming_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("params.json");
    std::fs::write(&file, "{\n  \"color\": \"red\",\n  \"ratio\": ,\n}\n").unwrap();
    let output = torsion()
        .current_dir(common::fixtures().join("apps"))
        .args(["web", "--wsgi", "service:application", "--params-file"])
        .arg(&file)
        .args(["--listen", "tcp:0:interface=127.0.0.1"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "--params-file {}, line 3, column 12",
            file.display()
        )),
        "{stderr}"
    );
}

#[test]
fn a_tcp_control_channel_needs_a_token_and_checks_it() {
    // Without a token file, a TCP control channel does not start.
    let output = torsion()
        .current_dir(common::fixtures().join("apps"))
        .args([
            "web",
            "--wsgi",
            "service:application",
            "--control",
            "tcp:0:interface=127.0.0.1",
        ])
        .args(["--listen", "tcp:0:interface=127.0.0.1"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("needs --control-token-file"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let service = Service::start_in(
        dir,
        &[
            "--control",
            "tcp:0:interface=127.0.0.1",
            "--control-token-file",
            token_file.to_str().unwrap(),
        ],
    );
    let line = service.server.wait_for_log("control channel open");
    let address = line
        .split(" address=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let base = format!("http://{address}");
    let (status, answer) = control(None, &base, "GET", "/params", None, None);
    assert_eq!(status, 401, "{answer}");
    let (status, _) = control(
        None,
        &base,
        "PUT",
        "/params/x",
        Some("1"),
        Some("s3cret-tokeN"),
    );
    assert_eq!(status, 401);
    let (status, _) = control(
        None,
        &base,
        "PUT",
        "/params/x",
        Some("1"),
        Some("s3cret-token"),
    );
    assert_eq!(status, 200);
    assert_eq!(service.json("/params")["environ"]["x"], 1);
}

#[test]
fn health_turns_503_as_soon_as_sigterm_arrives_while_requests_drain() {
    let dir = tempfile::tempdir().unwrap();
    let control_flag = format!("unix:{}", dir.path().join("control.sock").display());
    let service = Service::start_in(dir, &["--control", &control_flag]);
    assert_eq!(
        ask(&service, "GET", "/health", None),
        (200, serde_json::json!({"status": "serving"}))
    );
    sigterm_with_a_request_in_flight(&service, "SIGTERM received");
}

#[test]
fn the_params_file_is_whole_after_a_kill_during_a_burst_of_changes() {
    for round in 0..4 {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("params.json");
        let socket = dir.path().join("control.sock");
        let control_flag = format!("unix:{}", socket.display());
        let service = Service::start_in(
            dir,
            &[
                "--control",
                &control_flag,
                "--params-file",
                file.to_str().unwrap(),
            ],
        );
        // Writers change parameters as fast as they can; the server is killed among them.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers: Vec<_> = (0..4)
            .map(|writer| {
                let (socket, stop) = (socket.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let body =
                            format!("{{\"w{writer}\": {n}, \"pad\": \"{}\"}}", "x".repeat(2000));
                        let _ = Command::new("curl")
                            .args([
                                "-s",
                                "--max-time",
                                "5",
                                "-X",
                                "PATCH",
                                "--data-binary",
                                &body,
                            ])
                            .arg("--unix-socket")
                            .arg(&socket)
                            .arg("http://control/params")
                            .output();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        // Some changes first (more each round), then the kill, in the middle of the burst.
        let deadline = Instant::now() + Duration::from_secs(30);
        while service.server.logs().matches("parameter changed").count() < 40 * (round + 1) {
            assert!(Instant::now() < deadline, "{}", service.server.logs());
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut server = service.server;
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let sent: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
        let text = std::fs::read_to_string(&file).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|err| {
            panic!("round {round}: torn file after {sent} changes ({err}): {text:?}")
        });
        assert!(value.is_object() && value.get("pad").is_some(), "{value}");
        let leftovers: Vec<_> = std::fs::read_dir(service.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().ends_with(".json"))
            .collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    }
}

/// `/metrics` of the control channel at `socket`, read by prometheus_client's own parser:
/// every sample as (name, labels, value).
fn metrics(socket: &Path) -> Vec<(String, serde_json::Map<String, serde_json::Value>, f64)> {
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--unix-socket"])
        .arg(socket)
        .arg("http://control/metrics")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let mut parser = Command::new(common::venv().join("bin").join("python"))
        .arg(common::fixtures().join("parse_metrics.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    parser
        .stdin
        .take()
        .unwrap()
        .write_all(&output.stdout)
        .unwrap();
    let parsed = parser.wait_with_output().unwrap();
    assert!(
        parsed.status.success(),
        "prometheus_client rejects /metrics: {}\n{}",
        String::from_utf8_lossy(&parsed.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    let samples: Vec<(String, serde_json::Map<String, serde_json::Value>, f64)> =
        serde_json::from_slice(&parsed.stdout).unwrap();
    samples
}

/// The sum of the samples named `name` whose labels include `labels`.
fn sample_sum(
    samples: &[(String, serde_json::Map<String, serde_json::Value>, f64)],
    name: &str,
    labels: &[(&str, &str)],
) -> f64 {
    samples
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).and_then(|x| x.as_str()) == Some(*v))
        })
        .map(|(_, _, value)| value)
        .sum()
}

/// A certificate for `name` signed by itself, valid for `days`, as txsni's `NAME.pem`
/// (key, then certificate); and its notAfter in seconds since the epoch.
fn certificate_pem(name: &str, days: i64) -> (String, i64) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = (now + time::Duration::days(days))
        .replace_nanosecond(0)
        .unwrap();
    let expires = params.not_after.unix_timestamp();
    let certificate = params.self_signed(&key).unwrap();
    (key.serialize_pem() + &certificate.pem(), expires)
}

#[test]
fn metrics_count_what_was_served_and_parse_as_prometheus_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    let (pem, expires) = certificate_pem("shop.example", 30);
    std::fs::write(certs.join("shop.example.pem"), pem).unwrap();
    let socket = dir.path().join("control.sock");
    let control_flag = format!("unix:{}", socket.display());
    let txsni = format!("txsni:{}:tcp:0:interface=127.0.0.1", certs.display());
    let service = Service::start_in(
        dir,
        &[
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--listen",
            &txsni,
            "--control",
            &control_flag,
            "--timer",
            "0.2=service:failing_tick",
        ],
    );
    // 7 requests over HTTP/1.1, 3 over HTTP/2 (h2c), and one over TLS (curl asks for h2).
    let port_of = |endpoint: &str| {
        let line = service
            .server
            .wait_for_log(&format!("listening endpoint={endpoint}"));
        let address = line.split(" address=127.0.0.1:").nth(1).unwrap();
        address.split_whitespace().next().unwrap().to_owned()
    };
    let plain = format!("http://127.0.0.1:{}/", port_of("tcp:"));
    for n in 0..10 {
        let version = if n < 7 {
            "--http1.1"
        } else {
            "--http2-prior-knowledge"
        };
        let output = Command::new("curl")
            .args(["-sS", "--max-time", "10", version, &plain])
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
    }
    let tls_port = port_of("txsni:");
    let output = Command::new("curl")
        .args([
            "-sSk",
            "--max-time",
            "10",
            "--resolve",
            &format!("shop.example:{tls_port}:127.0.0.1"),
        ])
        .arg(format!("https://shop.example:{tls_port}/"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    service.wait_for_lines("failing ", 2);

    let samples = metrics(&service.socket());
    let requests = sample_sum(&samples, "torsion_requests_total", &[]);
    assert_eq!(requests, 11.0, "{samples:?}");
    assert_eq!(
        sample_sum(&samples, "torsion_requests_total", &[("protocol", "h2")]),
        3.0 + 1.0
    );
    assert_eq!(
        sample_sum(
            &samples,
            "torsion_requests_total",
            &[("method", "GET"), ("status", "2xx")]
        ),
        11.0
    );
    assert_eq!(
        sample_sum(&samples, "torsion_request_duration_seconds_count", &[]),
        11.0
    );
    assert_eq!(sample_sum(&samples, "torsion_requests_in_flight", &[]), 0.0);
    assert!(sample_sum(&samples, "torsion_python_threads", &[]) >= 1.0);
    assert!(
        sample_sum(
            &samples,
            "torsion_tls_handshakes_total",
            &[("result", "completed")]
        ) >= 1.0
    );
    assert_eq!(
        sample_sum(
            &samples,
            "torsion_certificate_expiry_timestamp_seconds",
            &[("name", "shop.example")]
        ),
        expires as f64,
        "{samples:?}"
    );
    assert!(
        sample_sum(
            &samples,
            "torsion_timer_runs_total",
            &[("timer", "service:failing_tick")]
        ) >= 2.0
    );
    assert!(
        sample_sum(
            &samples,
            "torsion_timer_failures_total",
            &[("timer", "service:failing_tick")]
        ) >= 1.0
    );

    let (status, report) = ask(&service, "GET", "/status", None);
    assert_eq!(status, 200);
    assert_eq!(report["state"], "serving");
    assert_eq!(report["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(report["pid"], service.server.child.id());
    assert!(report["uptime_seconds"].as_f64().unwrap() > 0.0);
    let listeners = report["listeners"].as_array().unwrap();
    assert_eq!(listeners.len(), 2, "{report}");
    assert!(
        listeners[1].as_str().unwrap().starts_with("txsni:"),
        "{report}"
    );
    assert_eq!(report["control"].as_str().unwrap(), control_flag);
    assert!(
        report["mounts"][0]
            .as_str()
            .unwrap()
            .contains("service:application"),
        "{report}"
    );
    assert!(report["threads"].as_u64().unwrap() >= 1);
    assert_eq!(report["requests"], 11);
    let certificate = &report["certificates"][0];
    assert_eq!(certificate["name"], "shop.example");
    assert_eq!(certificate["expires"], expires);
    assert!(
        certificate["issuer"].as_str().unwrap().contains("rcgen"),
        "{report}"
    );
    let timer = &report["timers"][0];
    assert_eq!(timer["name"], "service:failing_tick");
    assert!(timer["runs"].as_u64().unwrap() >= 2);
    assert!(
        timer["last_result"].is_string() && timer["last_run"].is_number(),
        "{report}"
    );
    assert_eq!(report["params"], serde_json::json!({}));
}

#[test]
fn with_workers_the_supervisor_serves_the_channel_timers_run_once_and_parameters_reach_every_worker()
 {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("control.sock");
    let control_flag = format!("unix:{}", socket.display());
    let service = Service::start_in(
        dir,
        &[
            "--workers",
            "2",
            "--control",
            &control_flag,
            "--timer",
            "0.2=service:tick",
        ],
    );
    service
        .server
        .wait_for_log("every worker is serving workers=2");
    // One control channel, the supervisor's.
    assert_eq!(
        service
            .server
            .logs()
            .matches("control channel open")
            .count(),
        1
    );
    let ticks = service.wait_for_lines("tick ", 4);
    let pids: std::collections::BTreeSet<&str> = ticks
        .iter()
        .map(|l| l.split_whitespace().nth(2).unwrap())
        .collect();
    assert_eq!(pids.len(), 1, "one process runs the timers: {ticks:?}");

    // Both workers answer; a change reaches each of them within a second.
    let mut sent = 0;
    let mut ask_params = || {
        sent += 1;
        service.json("/params")
    };
    let mut workers = std::collections::BTreeSet::new();
    while workers.len() < 2 {
        workers.insert(ask_params()["pid"].as_u64().unwrap());
    }
    let (status, _) = ask(&service, "PUT", "/params/color", Some("\"blue\""));
    assert_eq!(status, 200);
    let changed = Instant::now();
    let mut seen_blue = std::collections::BTreeSet::new();
    while seen_blue.len() < 2 {
        let answer = ask_params();
        if answer["environ"]["color"] == "blue" {
            assert_eq!(answer["module"]["color"], "blue");
            seen_blue.insert(answer["pid"].as_u64().unwrap());
        }
        assert!(changed.elapsed() < Duration::from_secs(5), "{seen_blue:?}");
    }
    assert!(
        changed.elapsed() < Duration::from_secs(1),
        "took {:?}",
        changed.elapsed()
    );
    assert_eq!(seen_blue, workers);

    // /metrics sums both workers: every request the test sent, and one timer.
    let samples = metrics(&service.socket());
    assert_eq!(
        sample_sum(&samples, "torsion_requests_total", &[]),
        sent as f64,
        "{samples:?}"
    );
    assert!(sample_sum(&samples, "torsion_python_threads", &[]) >= 2.0);
    assert!(
        sample_sum(
            &samples,
            "torsion_timer_runs_total",
            &[("timer", "service:tick")]
        ) >= 4.0
    );
    let (_, status) = ask(&service, "GET", "/status", None);
    assert_eq!(status["workers"].as_array().unwrap().len(), 2, "{status}");
    assert_eq!(status["pid"], service.server.child.id());
    assert_eq!(status["params"]["color"], "blue");

    // Through a rolling restart, the timers move to one new worker once the old one has
    // exited: each process's ticks form one run, never interleaved with another's.
    let before = service
        .lines()
        .iter()
        .filter(|l| l.starts_with("tick "))
        .count();
    let status = Command::new("kill")
        .args(["-HUP", &service.server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    service.server.wait_for_log("rolling restart done");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ticks: Vec<String> = service
            .lines()
            .into_iter()
            .filter(|l| l.starts_with("tick "))
            .collect();
        let pids: Vec<&str> = ticks
            .iter()
            .map(|l| l.split_whitespace().nth(2).unwrap())
            .collect();
        let mut runs: Vec<&str> = pids.clone();
        runs.dedup();
        let distinct: std::collections::BTreeSet<&&str> = runs.iter().collect();
        assert_eq!(
            runs.len(),
            distinct.len(),
            "ticks interleaved between processes: {pids:?}"
        );
        if distinct.len() >= 2 && ticks.len() > before + 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{pids:?}\n{}",
            service.server.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The new workers have the parameters too.
    assert_eq!(service.json("/params")["environ"]["color"], "blue");
}

#[test]
fn the_showcase_serves_four_frameworks_static_files_and_a_timer_in_one_process() {
    let statics = tempfile::tempdir().unwrap();
    std::fs::copy(
        common::fixtures().join("showcase/static/index.html"),
        statics.path().join("index.html"),
    )
    .unwrap();
    let mut command = torsion();
    command
        .env("VIRTUAL_ENV", common::venv())
        .env("SHOWCASE_STATIC", statics.path());
    let static_flag = format!("/static={}", statics.path().display());
    let server = Server::start_with(
        command,
        &[
            "--pythonpath",
            "../django_site",
            "--pythonpath",
            "../showcase",
            "--wsgi",
            "mysite.wsgi.application",
            "--mount",
            "/flask=flask_app:app",
            "--mount",
            "/pyramid=pyramid_app:application",
            "--mount",
            "/bottle=bottle_app:app",
            "--static",
            &static_flag,
            "--timer",
            "1=showcase:write_time",
        ],
    );
    let django: serde_json::Value = serde_json::from_str(&server.get("/info/")).unwrap();
    assert_eq!(django["path"], "/info/");
    assert_eq!(server.get("/flask/"), "Hello from Flask");
    assert_eq!(server.get("/pyramid/"), "Hello from Pyramid");
    assert_eq!(server.get("/bottle/"), "Hello from Bottle");
    assert!(server.get("/static/").contains("Torsion showcase"));
    // The timer rewrites the file the static directory serves: read it, then again until
    // it changes.
    let read_time = || {
        let (status, _, body) = server.fetch(&[], "/static/time.txt");
        (status == 200).then_some(body)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let first = loop {
        if let Some(body) = read_time() {
            break body;
        }
        assert!(Instant::now() < deadline, "no time.txt:\n{}", server.logs());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(first.ends_with(" UTC\n"), "{first:?}");
    loop {
        let now = read_time().unwrap();
        if now != first {
            assert!(now > first, "{first:?} then {now:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "time.txt never changed: {first:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn with_workers_health_turns_503_at_sigterm_while_the_workers_drain() {
    let dir = tempfile::tempdir().unwrap();
    let control_flag = format!("unix:{}", dir.path().join("control.sock").display());
    let service = Service::start_in(dir, &["--workers", "2", "--control", &control_flag]);
    service
        .server
        .wait_for_log("every worker is serving workers=2");
    assert_eq!(ask(&service, "GET", "/health", None).0, 200);
    sigterm_with_a_request_in_flight(&service, "SIGTERM received: stopping the workers");
}

/// Sends SIGTERM while a 2 s request is in flight; once `logged` is in the log, `/health`
/// must say draining, and the request must then finish with 200.
fn sigterm_with_a_request_in_flight(service: &Service, logged: &str) {
    let address = service.server.url("/hold?2");
    let holding = std::thread::spawn(move || {
        Command::new("curl")
            .args(["-sS", "-w", "\n%{http_code}", &address])
            .output()
            .unwrap()
    });
    service.wait_for_lines("hold ", 1);
    let status = Command::new("kill")
        .args(["-TERM", &service.server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    service.server.wait_for_log(logged);
    wait_for_draining(service);
    let held = holding.join().unwrap();
    let text = String::from_utf8_lossy(&held.stdout);
    assert!(
        text.ends_with("\n200"),
        "the request in flight finished: {text}"
    );
}

/// Waits up to 5 s for the control channel's `/health` to answer 503 `draining`, while the
/// test's slow request is still in flight (it holds the server for 2 s).
fn wait_for_draining(service: &Service) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answer = ask(service, "GET", "/health", None);
        if answer == (503, serde_json::json!({"status": "draining"})) {
            return;
        }
        assert_eq!(answer.0, 200, "{answer:?}");
        assert!(Instant::now() < deadline, "/health never said draining");
        std::thread::sleep(Duration::from_millis(10));
    }
}
