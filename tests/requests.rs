//! Requests the server must answer itself, without calling the application (RFC 9112 §3.2,
//! §3.2.3, §3.2.4; RFC 9110 §9.3.6), sent over raw sockets to the real binary, and the
//! framing of HTTP/1.0 responses whose length the application did not give.

mod common;

use std::io::Read;

use common::{Server, send};

/// Sends `request` on a fresh connection and reads until the server closes it or 20 s
/// pass: the whole response text.
fn exchange(server: &Server, request: &str) -> String {
    let mut stream = server.connect();
    send(&mut stream, request);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

fn calls(server: &Server) -> u64 {
    server.get("/calls").trim().parse().unwrap()
}

#[test]
fn malformed_requests_get_a_4xx_from_the_server_and_never_reach_the_application() {
    let server = Server::start(&["--wsgi", "probe:application"]);
    // (request, expected status line start, what the body names)
    let cases = [
        (
            "GET /environ HTTP/1.1\r\n\r\n",
            "HTTP/1.1 400",
            "must have a Host field",
        ),
        (
            "GET /environ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "HTTP/1.1 400",
            "only one Host field",
        ),
        (
            "GET /environ HTTP/1.1\r\nHost: a b\r\n\r\n",
            "HTTP/1.1 400",
            "host name or IP address",
        ),
        (
            "GET /environ HTTP/1.1\r\nHost: user@evil.example\r\n\r\n",
            "HTTP/1.1 400",
            "host name or IP address",
        ),
        (
            "GET /environ HTTP/1.1\r\nHost: [::1\r\n\r\n",
            "HTTP/1.1 400",
            "host name or IP address",
        ),
        (
            "GET * HTTP/1.1\r\nHost: t\r\n\r\n",
            "HTTP/1.1 400",
            "only for OPTIONS",
        ),
        (
            "GET example.com:443 HTTP/1.1\r\nHost: t\r\n\r\n",
            "HTTP/1.1 400",
            "only for CONNECT",
        ),
        (
            "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
            "HTTP/1.1 501",
            "CONNECT",
        ),
        (
            "OPTIONS * HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            "HTTP/1.1 200",
            "",
        ),
    ];
    for (request, status, reason) in cases {
        let before = calls(&server);
        let response = exchange(&server, request);
        assert!(response.starts_with(status), "{request:?} got {response:?}");
        assert!(response.contains(reason), "{request:?} got {response:?}");
        // Only the /calls request itself reached the application.
        assert_eq!(
            calls(&server),
            before + 1,
            "{request:?} reached the application"
        );
    }
    let options = exchange(
        &server,
        "OPTIONS * HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert!(
        options.to_ascii_lowercase().contains("allow: get, head"),
        "{options}"
    );
}

#[test]
fn well_formed_requests_still_reach_the_application() {
    let server = Server::start(&["--wsgi", "probe:application"]);
    for request in [
        "GET /write HTTP/1.1\r\nHost: example.com:8080\r\nConnection: close\r\n\r\n",
        "GET /write HTTP/1.1\r\nHost: [::1]:8080\r\nConnection: close\r\n\r\n",
        "GET /write HTTP/1.0\r\n\r\n",
        "GET http://example.com/write HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
        "OPTIONS /write HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    ] {
        let before = calls(&server);
        let response = exchange(&server, request);
        assert!(
            response.starts_with("HTTP/1."),
            "{request:?} got {response:?}"
        );
        assert!(!response.contains(" 400 "), "{request:?} got {response:?}");
        assert_eq!(
            calls(&server),
            before + 2,
            "{request:?} did not reach the application"
        );
    }
}

#[test]
fn an_http_1_0_keep_alive_response_of_unknown_length_says_connection_close() {
    let server = Server::start(&["--wsgi", "probe:application"]);
    // /stream yields chunks with no Content-Length: an HTTP/1.0 client can only find the
    // end by the close, so the head must not promise keep-alive.
    let response = exchange(
        &server,
        "GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    );
    let (head, _) = response.split_once("\r\n\r\n").expect("a whole head");
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.0 200"), "{head}");
    assert!(!head.contains("content-length"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(!head.contains("keep-alive"), "{head}");
}

#[test]
fn an_http_1_0_keep_alive_response_of_known_length_keeps_the_connection() {
    let server = Server::start(&["--wsgi", "probe:application"]);
    let mut stream = server.connect();
    for _ in 0..2 {
        // /calls answers with a Content-Length.
        send(
            &mut stream,
            "GET /calls HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        );
        let (head, body) = common::read_response(&mut stream);
        let head = head.to_ascii_lowercase();
        assert!(head.starts_with("http/1.0 200"), "{head}");
        assert!(head.contains("content-length"), "{head}");
        assert!(head.contains("connection: keep-alive"), "{head}");
        assert!(String::from_utf8_lossy(&body).trim().parse::<u64>().is_ok());
    }
}

#[test]
fn a_burst_of_connections_is_accepted_without_syn_retries() {
    // 500 connections opened at once by 10 clients: with Twisted's backlog of 50 the accept
    // queue overflows, the kernel drops SYNs and those clients retry after a second.
    let server = Server::start(&["--wsgi", "probe:application"]);
    let address = server.address.clone();
    let clients: Vec<_> = (0..10)
        .map(|_| {
            let address = address.clone();
            std::thread::spawn(move || {
                let mut held = Vec::new();
                let mut slowest = std::time::Duration::ZERO;
                for _ in 0..50 {
                    let started = std::time::Instant::now();
                    held.push(std::net::TcpStream::connect(&address).expect("connect"));
                    slowest = slowest.max(started.elapsed());
                }
                slowest
            })
        })
        .collect();
    let slowest = clients
        .into_iter()
        .map(|client| client.join().unwrap())
        .max()
        .unwrap();
    assert!(
        slowest < std::time::Duration::from_secs(1),
        "a connect took {slowest:?}: a SYN was dropped and retried"
    );
    // And the server still serves.
    assert!(server.get("/calls").trim().parse::<u64>().is_ok());
}

#[test]
fn chunked_framing_errors_are_the_clients_400_not_the_applications_500() {
    let server = Server::start(&["--wsgi", "probe:application"]);
    let head = "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";
    let long_extension = format!("5;{}=x\r\nhello\r\n0\r\n\r\n", "e".repeat(200_000));
    // hyper bounds chunk extensions at 16 KiB per body, counted across all chunk lines.
    let many_extensions = format!(
        "{}0\r\n\r\n",
        format!("1{}\r\nx\r\n", ";e=x".repeat(100)).repeat(50)
    );
    let cases: [(&str, &str); 7] = [
        ("bad size", "zz\r\nhello\r\n0\r\n\r\n"),
        (
            "size over 64 bits",
            "fffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        ),
        ("LF inside an extension", "5;a=b\nc\r\nhello\r\n0\r\n\r\n"),
        ("data longer than its size", "3\r\nhello\r\n0\r\n\r\n"),
        ("missing CRLF after data", "5\r\nhelloXX0\r\n\r\n"),
        ("a 200 kB extension", &long_extension),
        ("5,000 extensions over 50 chunks", &many_extensions),
    ];
    for (what, body) in cases {
        let response = exchange(&server, &format!("{head}{body}"));
        assert!(
            response.starts_with("HTTP/1.1 400"),
            "{what}: {:?}",
            &response[..response.len().min(200)]
        );
    }
    // None of it was logged as the application's error.
    assert!(
        !server.logs().contains("the application raised"),
        "{}",
        server.logs()
    );
}

/// Sends `head` then a body one byte every `every` until told to stop, and returns the
/// answer; tells `started` once the head and the first byte are sent.
fn dribble(
    server: &Server,
    head: String,
    every: std::time::Duration,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    started: std::sync::mpsc::Sender<()>,
) -> std::thread::JoinHandle<String> {
    let mut stream = server.connect();
    std::thread::spawn(move || {
        use std::io::Write;
        send(&mut stream, &head);
        let mut first = Some(started);
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if stream.write_all(b"x").is_err() {
                break;
            }
            if let Some(started) = first.take() {
                let _ = started.send(());
            }
            std::thread::sleep(every);
        }
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    })
}

/// Six clients sending a small body a byte every two seconds to a server with `args`;
/// then three ordinary requests, each of which must be answered within a second.
fn beside_six_slow_uploaders(args: &[&str]) {
    let server = Server::start(args);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (started, all_started) = std::sync::mpsc::channel();
    let slow: Vec<_> = (0..6)
        .map(|_| {
            dribble(
                &server,
                "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n".to_owned(),
                std::time::Duration::from_secs(2),
                stop.clone(),
                started.clone(),
            )
        })
        .collect();
    // Every slow client has sent its head and the first byte of its body.
    for _ in 0..6 {
        all_started.recv().unwrap();
    }
    for _ in 0..3 {
        let started = std::time::Instant::now();
        assert!(server.get("/calls").trim().parse::<u64>().is_ok());
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "a request took {:?} beside six slow uploaders",
            started.elapsed()
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    drop(server);
    for client in slow {
        let _ = client.join();
    }
}

#[test]
fn slow_uploaders_hold_no_python_thread() {
    // Four Python threads and six slow clients: the small bodies are read ahead by the
    // event loop, so other requests are still served. (With `--request-buffer-size 0
    // --min-upload-rate 0` the same check fails: the six hold all four threads.)
    beside_six_slow_uploaders(&["--wsgi", "probe:application", "--threads", "4"]);
}

#[test]
fn an_upload_slower_than_the_minimum_rate_gets_408_and_frees_its_thread() {
    // A body larger than the read-ahead buffer streams to the application; sent at about
    // 5 bytes a second where 1,000 are required after a 1 s grace, it ends in 408.
    let server = Server::start(&[
        "--wsgi",
        "probe:application",
        "--threads",
        "1",
        "--min-upload-rate",
        "1000",
        "--upload-grace",
        "1",
    ]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (started, _) = std::sync::mpsc::channel();
    let slow = dribble(
        &server,
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 200000\r\n\r\n".to_owned(),
        std::time::Duration::from_millis(200),
        stop.clone(),
        started,
    );
    server.wait_for_log("slower than 1000 bytes a second");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answer = slow.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    // The only Python thread is free again.
    assert!(server.get("/calls").trim().parse::<u64>().is_ok());
}

#[test]
fn a_refusal_before_the_body_is_read_reaches_the_client_whole() {
    // 413 for a declared 10 MB body, while the client goes on sending it: without
    // lingering close, the unread bytes would make the server's close a TCP reset that
    // can destroy the response before the client reads it.
    let server = Server::start(&["--wsgi", "probe:application", "--max-body-size", "1000"]);
    for _ in 0..3 {
        let mut stream = server.connect();
        send(
            &mut stream,
            "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10000000\r\n\r\n",
        );
        let mut writer = stream.try_clone().unwrap();
        let uploading = std::thread::spawn(move || -> std::io::Result<()> {
            use std::io::Write;
            let block = vec![b'x'; 64 * 1024];
            for _ in 0..(10_000_000 / block.len()) {
                writer.write_all(&block)?;
            }
            writer.shutdown(std::net::Shutdown::Write)
        });
        let mut response = Vec::new();
        let read = stream.read_to_end(&mut response);
        let text = String::from_utf8_lossy(&response);
        assert!(read.is_ok(), "{read:?} after {text:?}");
        assert!(text.starts_with("HTTP/1.1 413"), "{text:?}");
        assert!(text.contains("at most 1000 bytes"), "{text:?}");
        // The server read and threw away the rest of the upload: no reset reached the
        // client while it was still sending.
        let uploaded = uploading.join().unwrap();
        assert!(uploaded.is_ok(), "the upload was reset: {uploaded:?}");
    }
}

/// A chunked body of `chunks` chunks of 16 KiB each, ended.
fn chunked_body(chunks: usize) -> Vec<u8> {
    let mut body = Vec::new();
    for _ in 0..chunks {
        body.extend_from_slice(b"4000\r\n");
        body.extend_from_slice(&[b'x'; 0x4000]);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    body
}

#[test]
fn an_unread_chunked_body_is_held_to_the_body_limit() {
    use std::io::Write;
    // /calls answers without reading the body. The body limit is 200,000 bytes; the server
    // reads 64 KiB ahead, so the rest is left unread by the application.
    let server = Server::start(&["--wsgi", "probe:application", "--max-body-size", "200000"]);
    let head = "POST /calls HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";

    // 20 × 16 KiB = 327,680 bytes: over the limit, so 413 instead of the application's 200.
    let mut stream = server.connect();
    send(&mut stream, head);
    let mut writer = stream.try_clone().unwrap();
    let uploading = std::thread::spawn(move || writer.write_all(&chunked_body(20)));
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 413"), "{text:?}");
    assert!(text.contains("at most 200000 bytes"), "{text:?}");
    assert!(uploading.join().unwrap().is_ok());

    // 8 × 16 KiB = 131,072 bytes: within the limit; the application's answer stands, and
    // the connection, its body read to the end, serves the next request.
    let mut stream = server.connect();
    send(&mut stream, head);
    stream.write_all(&chunked_body(8)).unwrap();
    let (first, _) = common::read_response(&mut stream);
    assert!(first.starts_with("HTTP/1.1 200"), "{first:?}");
    send(&mut stream, "GET /calls HTTP/1.1\r\nHost: t\r\n\r\n");
    let (second, _) = common::read_response(&mut stream);
    assert!(second.starts_with("HTTP/1.1 200"), "{second:?}");

    // A broken chunk after the read-ahead: the client's 400, not the application's 200.
    let mut stream = server.connect();
    send(&mut stream, head);
    let mut broken = chunked_body(8);
    broken.truncate(broken.len() - 5);
    broken.extend_from_slice(b"zz\r\n\r\n");
    stream.write_all(&broken).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 400"), "{text:?}");
}

#[test]
fn one_http2_connection_with_many_streams_does_not_starve_the_others() {
    // 200 streams on one HTTP/2 connection (the Python h2 library), each 0.2 s of a
    // four-thread application (10 s of work in all), while HTTP/1.1 clients on other
    // connections ask for a quick page: served in turn, each is answered within 2 s, not
    // after the 200.
    let server = Server::start(&["--wsgi", "probe:application", "--threads", "4"]);
    let port = server.address.rsplit(':').next().unwrap().to_owned();
    let mut flood = std::process::Command::new(common::venv().join("bin/python"))
        .arg(common::fixtures().join("h2_streams.py"))
        .args(["127.0.0.1", &port, "200", "/sleep?seconds=0.2"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The client sent all 200 streams before the first response arrived: from then on
    // the server has them queued.
    let mut said = std::io::BufReader::new(flood.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut said, &mut line).unwrap();
    assert_eq!(line.trim(), "first response");
    for _ in 0..3 {
        let started = std::time::Instant::now();
        assert!(server.get("/calls").trim().parse::<u64>().is_ok());
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "an HTTP/1.1 request took {:?} behind one HTTP/2 connection's streams",
            started.elapsed()
        );
    }
    let _ = flood.kill();
    let _ = flood.wait();
}

#[test]
fn an_over_large_http2_header_list_refuses_its_stream_and_keeps_the_connection() {
    // Three streams on one connection, the first with 900 kB of fields (a HEADERS frame
    // and about 55 CONTINUATION frames): 431 for it, 200 for the other two on the same
    // connection, and no GOAWAY. A block over the 1 MiB the server reads still ends the
    // connection.
    let server = Server::start(&["--wsgi", "probe:application"]);
    let port = server.address.rsplit(':').next().unwrap().to_owned();
    let run = |bytes: &str| {
        let output = std::process::Command::new(common::venv().join("bin/python"))
            .arg(common::fixtures().join("h2_streams.py"))
            .args(["127.0.0.1", &port, "3", "/calls", bytes])
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    let said = run("900000");
    assert!(said.ends_with("200:2 431:1\n"), "{said:?}");
    assert!(!said.contains("goaway"), "{said:?}");
    let said = run("2000000");
    assert!(said.contains("goaway"), "{said:?}");
}

#[test]
fn a_client_reading_too_slowly_is_cut_off_and_frees_its_thread() {
    // One Python thread streams 64 MB to a client that reads none of it: once the socket
    // buffers are full the thread waits, and after the grace period and what the bytes it
    // waited for allow at 10 MB/s, it gives the client up, long before the 60 s client
    // timeout.
    let server = Server::start(&[
        "--wsgi",
        "probe:application",
        "--threads",
        "1",
        "--min-download-rate",
        "10000000",
        "--download-grace",
        "1",
    ]);
    let mut stalled = server.connect();
    send(
        &mut stalled,
        "GET /counted-stream?n=1000 HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    server.wait_for_log("slower than 10000000 bytes a second; abandoning it");
    // The only Python thread is free again.
    let started = std::time::Instant::now();
    assert!(server.get("/calls").trim().parse::<u64>().is_ok());
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // The stalled client's response is cut, not completed: fewer than 64 MB arrive.
    stalled
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut received = Vec::new();
    let _ = stalled.read_to_end(&mut received);
    assert!(received.len() < 1000 * 65536, "{}", received.len());
}
