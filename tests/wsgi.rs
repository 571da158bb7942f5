//! PEP 3333 behaviour seen from a client: environ, wsgi.input, start_response, streaming,
//! errors, HTTP/2 and keep-alive, driven against fixtures/apps/probe.py.

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, Started, environ, read_response, send, text};

fn probe(extra: &[&str]) -> Server {
    let mut args = vec!["--wsgi", "probe:application"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

#[test]
fn environ_has_every_key_pep_3333_requires() {
    let server = probe(&[]);
    let body = server.get("/environ?b=%20raw&a=1");
    let e = environ(&body);
    assert_eq!(text(&e, "REQUEST_METHOD"), "GET");
    assert_eq!(text(&e, "SCRIPT_NAME"), "");
    assert_eq!(text(&e, "PATH_INFO"), "/environ");
    assert_eq!(text(&e, "QUERY_STRING"), "b=%20raw&a=1");
    assert_eq!(text(&e, "SERVER_PROTOCOL"), "HTTP/1.1");
    assert_eq!(text(&e, "SERVER_NAME"), "127.0.0.1");
    let port = server.address.rsplit(':').next().unwrap();
    assert_eq!(text(&e, "SERVER_PORT"), port);
    assert_eq!(text(&e, "HTTP_HOST"), server.address);
    assert_eq!(text(&e, "REMOTE_ADDR"), "127.0.0.1");
    assert!(text(&e, "REMOTE_PORT").parse::<u16>().is_ok());
    assert!(text(&e, "SERVER_SOFTWARE").starts_with("Torsion/"));
    assert_eq!(text(&e, "wsgi.url_scheme"), "http");
    assert_eq!(e["wsgi.version"], serde_json::json!([1, 0]));
    assert_eq!(e["wsgi.multithread"], true);
    assert_eq!(e["wsgi.multiprocess"], false);
    assert_eq!(e["wsgi.run_once"], false);
    assert_eq!(e["wsgi.input_terminated"], true);
    assert_eq!(e["has_file_wrapper"], true);
    assert_eq!(e["has_errors"], true);
    assert!(
        !e.contains_key("CONTENT_LENGTH"),
        "no body, no CONTENT_LENGTH"
    );
}

#[test]
fn path_info_is_percent_decoded_as_latin1_and_fields_are_joined() {
    let server = probe(&[]);
    // %C3%A9 is "é" in UTF-8: two bytes, so two latin-1 characters in PATH_INFO.
    let output = server.curl(&["--path-as-is"], "/caf%C3%A9/a%2Fb");
    assert!(output.status.success());
    let body = String::from_utf8_lossy(&output.stdout);
    assert!(
        body.starts_with("not found: /caf\u{c3}\u{a9}/a/b"),
        "{body}"
    );

    let output = server.curl(
        &[
            "-H",
            "X-Multi: one",
            "-H",
            "X-Multi: two",
            "-H",
            "Cookie: a=1",
            "-H",
            "Cookie: b=2",
            "-H",
            "X_Sneaky: dropped",
            "-H",
            "Host: example.org:8443",
        ],
        "/environ",
    );
    let e = environ(&String::from_utf8_lossy(&output.stdout));
    assert_eq!(text(&e, "HTTP_X_MULTI"), "one, two");
    assert_eq!(text(&e, "HTTP_COOKIE"), "a=1; b=2");
    assert!(
        !e.contains_key("HTTP_X_SNEAKY"),
        "a field name with '_' must not pose as X-Sneaky"
    );
    assert_eq!(text(&e, "SERVER_NAME"), "example.org");
    assert_eq!(text(&e, "SERVER_PORT"), "8443");
}

#[test]
fn http_1_0_and_http_2_are_reported_in_server_protocol() {
    let server = probe(&[]);
    let e = environ(&String::from_utf8_lossy(
        &server.curl(&["--http1.0"], "/environ").stdout,
    ));
    assert_eq!(text(&e, "SERVER_PROTOCOL"), "HTTP/1.0");
    let output = server.curl(
        &["--http2-prior-knowledge", "-w", "\n%{http_version}"],
        "/environ",
    );
    let text_out = String::from_utf8_lossy(&output.stdout);
    let (body, version) = text_out.rsplit_once('\n').unwrap();
    assert_eq!(version, "2");
    let e = environ(body);
    assert_eq!(text(&e, "SERVER_PROTOCOL"), "HTTP/2");
    // HTTP/2 carries the host as :authority; the application still sees HTTP_HOST.
    assert_eq!(text(&e, "HTTP_HOST"), server.address);
}

fn post(server: &Server, path: &str, body: &[u8], extra: &[&str]) -> (u16, Vec<u8>) {
    let mut command = Command::new("curl");
    command
        .args([
            "-sS",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "--data-binary",
            "@-",
        ])
        .args(extra)
        .arg(server.url(path))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let body = body.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let out = output.stdout;
    let split = out.iter().rposition(|b| *b == b'\n').unwrap();
    let status = String::from_utf8_lossy(&out[split + 1..]).parse().unwrap();
    (status, out[..split].to_vec())
}

#[test]
fn wsgi_input_reads_the_body_every_way_with_content_length_and_chunked() {
    let server = probe(&[]);
    let text_body = b"first line\nsecond line\n\nlast without newline";
    for framing in [&[][..], &["-H", "Transfer-Encoding: chunked"][..]] {
        let (status, body) = post(&server, "/echo?mode=read", text_body, framing);
        assert_eq!(
            (status, body.as_slice()),
            (200, &text_body[..]),
            "{framing:?}"
        );
        let (_, body) = post(&server, "/echo?mode=chunks&size=5", text_body, framing);
        assert_eq!(body, text_body, "{framing:?}");
        let expected = r#"["first line\n", "second line\n", "\n", "last without newline"]"#;
        for mode in ["lines", "readlines", "iter"] {
            let (_, body) = post(&server, &format!("/echo?mode={mode}"), text_body, framing);
            assert_eq!(
                String::from_utf8_lossy(&body),
                expected,
                "{mode} {framing:?}"
            );
        }
    }
    // Binary data survives, and CONTENT_LENGTH/CONTENT_TYPE are set from the fields.
    let binary: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let (status, body) = post(
        &server,
        "/echo",
        &binary,
        &["-H", "Content-Type: application/x-test"],
    );
    assert_eq!(status, 200);
    assert_eq!(body, binary);
}

#[test]
fn a_large_upload_streams_through_wsgi_input() {
    let server = probe(&[]);
    let upload = vec![b'u'; 20 * 1024 * 1024];
    let (status, body) = post(
        &server,
        "/echo?mode=length",
        &upload,
        &["-H", "Transfer-Encoding: chunked"],
    );
    assert_eq!(status, 200);
    assert_eq!(
        String::from_utf8_lossy(&body),
        (20 * 1024 * 1024).to_string()
    );
}

#[test]
fn bodies_over_the_limit_get_413_and_the_server_goes_on() {
    let server = probe(&["--max-body-size", "1000"]);
    // Declared too large: refused before the application runs.
    let (status, body) = post(&server, "/echo", &[b'x'; 2000], &[]);
    assert_eq!(status, 413);
    assert!(String::from_utf8_lossy(&body).contains("at most 1000 bytes"));
    // Chunked, discovered while the application reads.
    let (status, _) = post(
        &server,
        "/echo",
        &[b'x'; 5000],
        &["-H", "Transfer-Encoding: chunked"],
    );
    assert_eq!(status, 413);
    let (status, body) = post(&server, "/echo", &[b'y'; 1000], &[]);
    assert_eq!((status, body), (200, vec![b'y'; 1000]));
}

#[test]
fn large_reads_are_gathered_whole_and_still_held_to_the_limit() {
    // Over the 64 KiB read ahead, so the event loop gathers what the application reads.
    let server = probe(&["--max-body-size", "200000"]);
    let body: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(post(&server, "/echo", &body, &[]), (200, body.clone()));
    let (status, echoed) = post(
        &server,
        "/echo",
        &body,
        &["-H", "Transfer-Encoding: chunked"],
    );
    assert_eq!((status, echoed), (200, body));
    // Chunked, over the limit: found while gathering.
    let (status, _) = post(
        &server,
        "/echo",
        &[b'x'; 300_000],
        &["-H", "Transfer-Encoding: chunked"],
    );
    assert_eq!(status, 413);
    let (status, echoed) = post(&server, "/echo", b"after", &[]);
    assert_eq!((status, echoed), (200, b"after".to_vec()));
}

/// Reads a chunked response from a raw socket, noting when each piece arrived.
fn timed_chunks(server: &Server, path: &str) -> Vec<(Instant, String)> {
    let mut stream = server.connect();
    send(
        &mut stream,
        &format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"),
    );
    let mut arrivals = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        arrivals.push((
            Instant::now(),
            String::from_utf8_lossy(&buf[..n]).into_owned(),
        ));
    }
    arrivals
}

#[test]
fn generator_chunks_reach_the_client_as_they_are_produced() {
    let server = probe(&[]);
    let arrivals = timed_chunks(&server, "/lazy-stream?n=3&delay=0.6");
    let all: String = arrivals.iter().map(|(_, t)| t.as_str()).collect();
    assert!(all.starts_with("HTTP/1.1 200 OK\r\n"), "{all}");
    assert!(
        all.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{all}"
    );
    let first = arrivals
        .iter()
        .find(|(_, t)| t.contains("chunk 0"))
        .unwrap()
        .0;
    let last = arrivals
        .iter()
        .find(|(_, t)| t.contains("chunk 2"))
        .unwrap()
        .0;
    // chunk 0 was on the wire while the application was still sleeping before chunk 2.
    assert!(
        last.duration_since(first) >= Duration::from_millis(900),
        "{arrivals:?}"
    );
}

#[test]
fn write_callable_and_returned_iterable_both_reach_the_client() {
    let server = probe(&[]);
    assert_eq!(server.get("/write"), "written then returned");
}

#[test]
fn file_wrapper_sends_the_whole_file() {
    let server = probe(&[]);
    let body = server.get("/file");
    assert_eq!(body.lines().count(), 1000);
    assert!(body.ends_with("line 999 of the file\n"));
}

#[test]
fn head_sends_the_headers_without_a_body() {
    let server = probe(&[]);
    let mut stream = server.connect();
    send(&mut stream, "HEAD /file HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(
        head.to_ascii_lowercase().contains("content-length: 20890"),
        "{head}"
    );
    // The same connection answers the next request at once: no body bytes came between.
    send(
        &mut stream,
        "GET /write HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    let mut rest = String::new();
    stream.read_to_string(&mut rest).unwrap();
    assert!(rest.starts_with("HTTP/1.1 200 OK"), "{rest}");
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let server = probe(&[]);
    let mut stream = server.connect();
    for i in 0..3 {
        send(
            &mut stream,
            &format!("GET /environ?i={i} HTTP/1.1\r\nHost: t\r\n\r\n"),
        );
        let (head, body) = read_response(&mut stream);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(
            text(&environ(&String::from_utf8_lossy(&body)), "QUERY_STRING"),
            format!("i={i}")
        );
    }
}

#[test]
fn an_exception_before_output_is_a_500_and_the_next_request_is_served() {
    let server = probe(&[]);
    let (status, _, body) = server.fetch(&[], "/raise");
    assert_eq!(status, 500);
    assert_eq!(body, "Internal Server Error\n");
    assert!(!body.contains("Traceback"));
    server.wait_for_log("the application raised");
    assert!(
        server
            .logs()
            .contains("ValueError: probe: the application failed before responding")
    );
    assert_eq!(server.get("/write"), "written then returned");

    let server = probe(&["--display-tracebacks"]);
    let (status, _, body) = server.fetch(&[], "/raise");
    assert_eq!(status, 500);
    assert!(body.contains("Traceback (most recent call last)"), "{body}");
    assert!(
        body.contains("ValueError: probe: the application failed before responding"),
        "{body}"
    );
}

#[test]
fn application_errors_are_500s_that_name_what_is_wrong() {
    let server = probe(&[]);
    for (path, logged) in [
        ("/no-start", "without calling start_response() first"),
        ("/bad-status", "status \"OK\" is not of the form \"200 OK\""),
        ("/bad-header", "contains a control character"),
        (
            "/not-bytes",
            "must be an iterable of bytes, but it yielded a str",
        ),
    ] {
        let (status, _, _) = server.fetch(&[], path);
        assert_eq!(status, 500, "{path}");
        server.wait_for_log(logged);
    }
    assert_eq!(server.get("/write"), "written then returned");
}

#[test]
fn exc_info_replaces_the_status_before_output_and_reraises_after() {
    let server = probe(&[]);
    let (status, _, body) = server.fetch(&[], "/exc-info");
    assert_eq!((status, body.as_str()), (503, "replaced status"));
    // After output, start_response re-raises: the response is cut off.
    let output = server.curl(&[], "/exc-info-after");
    assert!(
        !output.status.success(),
        "curl must see an incomplete response"
    );
    server.wait_for_log("KeyError: 'probe: after output'");
}

#[test]
fn an_exception_after_output_aborts_the_connection_and_close_is_called() {
    let server = probe(&[]);
    let before: u32 = server.get("/closed").parse().unwrap();
    let output = server.curl(&[], "/raise-after");
    assert!(
        !output.status.success(),
        "the client must not take a cut body for a whole one"
    );
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("first part"));
    server.wait_for_log("RuntimeError: probe: failing in the middle of the body");
    let after: u32 = server.get("/closed").parse().unwrap();
    assert_eq!(after, before + 1);
    assert_eq!(server.get("/write"), "written then returned");
}

#[test]
fn an_exception_after_many_chunks_still_aborts_over_http1_and_http2() {
    let server = probe(&[]);
    for _ in 0..3 {
        let output = server.curl(&[], "/raise-after-many");
        assert!(
            !output.status.success(),
            "a cut body was delivered as complete over HTTP/1.1"
        );
        let output = server.curl(&["--http2-prior-knowledge"], "/raise-after-many");
        assert!(
            !output.status.success(),
            "a cut body was delivered as complete over HTTP/2"
        );
    }
    assert_eq!(server.get("/write"), "written then returned");
}

#[test]
fn conflicting_content_lengths_are_an_application_error() {
    let server = probe(&[]);
    let (status, _, _) = server.fetch(&[], "/two-lengths");
    assert_eq!(status, 500);
    server.wait_for_log("two different Content-Length values, 5 and 11");
}

#[test]
fn a_304_with_content_length_works_over_http2() {
    let server = probe(&[]);
    for args in [&[][..], &["--http2-prior-knowledge"][..]] {
        let output = server.curl(
            &[args, &["-o", "/dev/null", "-w", "%{http_code}"]].concat(),
            "/not-modified",
        );
        assert!(output.status.success(), "{args:?}: {output:?}");
        assert_eq!(String::from_utf8_lossy(&output.stdout), "304");
    }
    assert!(
        !server.logs().contains("less than its Content-Length"),
        "{}",
        server.logs()
    );
}

#[test]
fn head_on_a_never_ending_generator_frees_the_thread() {
    let server = probe(&["--threads", "1"]);
    let (status, _, body) = server.fetch(&["-I"], "/forever");
    assert_eq!((status, body.as_str()), (200, ""));
    // The only Python thread is free again.
    assert_eq!(server.get("/write"), "written then returned");
}

#[test]
fn a_client_that_stalls_its_upload_is_given_up_after_the_client_timeout() {
    // No read-ahead and no rate rule: the stalled upload reaches the application and holds
    // its thread until the silence rule frees it.
    let server = probe(&[
        "--threads",
        "1",
        "--client-timeout",
        "1",
        "--request-buffer-size",
        "0",
        "--min-upload-rate",
        "0",
    ]);
    let in_flight = Started::new();
    let mut stalled = server.connect();
    send(
        &mut stalled,
        &format!(
            "POST /echo?{} HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\nonly ten b",
            in_flight.query()
        ),
    );
    // The stalled upload holds the only Python thread...
    in_flight.wait();
    // ...so this request queues behind it, and is served once the upload is given up.
    let started = Instant::now();
    assert_eq!(server.get("/write"), "written then returned");
    assert!(started.elapsed() < Duration::from_secs(10));
    server.wait_for_log("sent none of the rest of the request body for 1s");
    // The client's fault, not the application's: 408 Request Timeout.
    let (head, _) = read_response(&mut stalled);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
}

#[test]
fn a_client_that_stops_reading_is_given_up_after_the_client_timeout() {
    let server = probe(&["--threads", "1", "--client-timeout", "1"]);
    let in_flight = Started::new();
    let mut stalled = server.connect();
    send(
        &mut stalled,
        &format!(
            "GET /counted-stream?n=100000&{} HTTP/1.1\r\nHost: t\r\n\r\n",
            in_flight.query()
        ),
    );
    // The 6.5 GB response holds the only Python thread; this request is served only once
    // the server has given up on the client that does not read.
    in_flight.wait();
    assert_eq!(server.get("/write"), "written then returned");
    server.wait_for_log("the client read nothing for 1s");
    drop(stalled);
}

#[test]
fn a_body_shorter_than_its_content_length_closes_the_connection() {
    let server = probe(&[]);
    let output = server.curl(&[], "/short");
    // curl: "transfer closed with 90 bytes remaining to read" (exit 18), not a hang.
    assert_eq!(output.status.code(), Some(18), "{output:?}");
    server.wait_for_log("less than its Content-Length 100");
}

#[test]
fn close_is_called_when_the_client_goes_away_mid_body() {
    let server = probe(&[]);
    let before: u32 = server.get("/closed").parse().unwrap();
    {
        // 64 MiB that the client stops reading after the first bytes.
        let mut stream = server.connect();
        send(
            &mut stream,
            "GET /stream?n=1024&size=65536 HTTP/1.1\r\nHost: t\r\n\r\n",
        );
        let mut buf = [0u8; 1024];
        stream.read_exact(&mut buf).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let after: u32 = server.get("/closed").parse().unwrap();
        if after > before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "close() was not called after the client left"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_client_that_stops_reading_stops_the_application_producing() {
    let server = probe(&["--client-timeout", "1"]);
    // 10,000 chunks of 64 KiB (655 MB) to a client that reads none of it.
    let mut stream = server.connect();
    send(
        &mut stream,
        "GET /counted-stream?n=10000 HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    // The server says when backpressure has held the application for a whole client
    // timeout without the client reading; the application was not asked for a chunk in
    // that second, and is not asked again after it (the response is abandoned), so what it
    // produced by then is all it ever produces for this client.
    server.wait_for_log("the client read nothing for 1s; abandoning the response");
    // Then the server closes the iterable: nothing is produced after that line.
    server.wait_for_log("probe: counted-stream closed after");
    let produced: u32 = server.get("/produced").parse().unwrap();
    assert!(
        server.logs().contains(&format!(
            "probe: counted-stream closed after {produced} chunks"
        )),
        "the application went on producing after the server closed it: {produced}\n{}",
        server.logs()
    );
    assert!(produced > 0, "the application never started");
    // What is buffered is bounded by the socket buffers and a few chunks, not the body.
    assert!(
        produced < 500,
        "{produced} chunks (of 10,000) were produced for a stalled client"
    );
    drop(stream);
}

#[test]
fn a_slow_request_does_not_stall_the_others() {
    let server = probe(&["--threads", "4"]);
    let in_flight = Started::new();
    let slow_url = server.url(&format!("/sleep?seconds=3&{}", in_flight.query()));
    let slow = std::thread::spawn(move || {
        let output = Command::new("curl")
            .args(["-sS", &slow_url])
            .output()
            .unwrap();
        (
            Instant::now(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    });
    // The slow request is with the application before the quick one is sent.
    in_flight.wait();
    let quick = server.get("/write");
    let quick_done = Instant::now();
    let (slow_done, slow_body) = slow.join().unwrap();
    assert_eq!(quick, "written then returned");
    assert_eq!(slow_body, "slept");
    assert!(
        quick_done < slow_done,
        "the quick request waited for the slow one"
    );
}

#[test]
fn wsgi_errors_goes_to_the_server_log() {
    let server = probe(&[]);
    assert_eq!(server.get("/errors"), "logged");
    let line = server.wait_for_log("probe: a line for wsgi.errors");
    assert!(line.contains("wsgi.errors"), "{line}");
}

#[test]
fn a_status_without_body_is_sent_as_is() {
    let server = probe(&[]);
    let (status, head, body) = server.fetch(&[], "/status?code=204%20No%20Content");
    assert_eq!((status, body.as_str()), (204, ""));
    assert!(head.starts_with("HTTP/1.1 204 No Content"), "{head}");
    // A custom reason phrase is kept.
    let (status, head, _) = server.fetch(&[], "/status?code=299%20Quite%20Fine");
    assert_eq!(status, 299);
    assert!(head.starts_with("HTTP/1.1 299 Quite Fine"), "{head}");
}

#[test]
fn the_validator_app_runs_without_a_warning() {
    // One Python thread: each request, close() of its iterable included, is done before
    // the next one starts, so the log of the last request follows everything before it.
    let server = Server::start(&["--wsgi", "validated:application", "--threads", "1"]);
    for path in [
        "/environ",
        "/write",
        "/file",
        "/lazy-stream?n=2&delay=0",
        "/status",
    ] {
        let (status, _, _) = server.fetch(&[], path);
        assert!(
            status == 200 || status == 204,
            "{path}: {status}\n{}",
            server.logs()
        );
    }
    let (status, _) = post(&server, "/echo?mode=lines", b"a\nb\n", &[]);
    assert_eq!(status, 200, "{}", server.logs());
    let (status, _) = post(&server, "/echo?mode=chunks", b"abcdefghijklmnop", &[]);
    assert_eq!(status, 200, "{}", server.logs());
    // A last request that logs a line through wsgi.errors: once it is in the log, so is any
    // warning or assertion the requests before it caused.
    assert_eq!(server.get("/errors"), "logged", "{}", server.logs());
    server.wait_for_log("probe: a line for wsgi.errors");
    let logs = server.logs();
    assert!(!logs.contains("Warning"), "{logs}");
    assert!(!logs.contains("AssertionError"), "{logs}");
}

#[cfg(target_os = "linux")]
/// Each thread of `pid` as (name, scheduling policy), from `/proc/PID/task/TID/stat`
/// (proc(5): the policy is field 41, counted after the parenthesised name).
fn thread_policies(pid: u32) -> Vec<(String, u32)> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let Ok(stat) = std::fs::read_to_string(task.unwrap().path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_owned();
        // After ") " come fields 3, 4, ...: field 41 is the 39th.
        let policy = stat[close + 2..]
            .split_whitespace()
            .nth(38)
            .and_then(|p| p.parse().ok())
            .unwrap();
        threads.push((name, policy));
    }
    threads
}

#[cfg(target_os = "linux")]
#[test]
fn event_loop_threads_do_not_preempt_the_python_threads() {
    const SCHED_OTHER: u32 = 0;
    const SCHED_BATCH: u32 = 3;
    let server = probe(&["--threads", "2"]);
    let (status, _, _) = server.fetch(&[], "/environ");
    assert_eq!(status, 200, "{}", server.logs());
    let threads = thread_policies(server.child.id());
    let event_loop: Vec<_> = threads
        .iter()
        .filter(|(n, _)| n.starts_with("tokio"))
        .collect();
    let python: Vec<_> = threads
        .iter()
        .filter(|(n, _)| n.starts_with("torsion-python"))
        .collect();
    assert!(
        !event_loop.is_empty(),
        "no event-loop thread in {threads:?}"
    );
    assert_eq!(python.len(), 2, "{threads:?}");
    // The event loop gives up wake-up preemption so that a Python thread finishes its batch
    // of responses before the event loop writes them; the Python threads keep the default.
    assert!(
        event_loop.iter().all(|(_, p)| *p == SCHED_BATCH),
        "{threads:?}"
    );
    assert!(python.iter().all(|(_, p)| *p == SCHED_OTHER), "{threads:?}");
}
