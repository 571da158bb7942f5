//! gunicorn's public request corpus (`fixtures/gunicorn_requests/`, MIT, vendored with its
//! licence): every request, valid and invalid, sent over a raw socket to the real binary,
//! and what happened (how many times the application was called, or the server's own
//! status) compared with Torsion's expectations in `fixtures/gunicorn_requests/expected.tsv`.
//!
//! gunicorn's invalid requests must be refused by the server without an application call,
//! and its valid ones served, unless the table says why not: gunicorn's own limits and
//! options are not RFC 9110/9112 rules, and some of its valid requests break one (an
//! HTTP/1.1 request without Host, which RFC 9112 §3.2 says a server MUST refuse).

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

use common::Server;

/// What a request led to.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The application was called this many times (pipelined requests count one each).
    App(u64),
    /// The server answered itself with this status; the application was not called.
    Server(u16),
    /// No answer: the message was incomplete when the client finished sending.
    Incomplete,
}

impl std::str::FromStr for Outcome {
    type Err = String;
    fn from_str(text: &str) -> Result<Outcome, String> {
        let (kind, n) = text.split_once(' ').unwrap_or((text, ""));
        match (kind, n.parse::<u64>()) {
            ("app", Ok(n)) => Ok(Outcome::App(n)),
            ("server", Ok(n)) => Ok(Outcome::Server(n as u16)),
            ("incomplete", _) => Ok(Outcome::Incomplete),
            _ => Err(format!(
                "{text:?}: expected `app N`, `server STATUS` or `incomplete`"
            )),
        }
    }
}

/// The bytes a `.http` file stands for, decoded as gunicorn's `tests/treq.py` decodes it
/// (see the corpus README): real line feeds dropped, then the escapes `\r\n`, `\0`, `\n`,
/// `\t` and `\xHH` replaced.
fn decode(file: &[u8]) -> Vec<u8> {
    let text: Vec<u8> = file.iter().copied().filter(|b| *b != b'\n').collect();
    let replace = |text: Vec<u8>, from: &[u8], to: &[u8]| -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len());
        let mut i = 0;
        while i < text.len() {
            if text[i..].starts_with(from) {
                out.extend_from_slice(to);
                i += from.len();
            } else {
                out.push(text[i]);
                i += 1;
            }
        }
        out
    };
    let mut text = replace(text, b"\\r\\n", b"\r\n");
    for (from, to) in [(&b"\\0"[..], &b"\0"[..]), (b"\\n", b"\n"), (b"\\t", b"\t")] {
        text = replace(text, from, to);
    }
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let hex = text
            .get(i + 2..i + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(byte) if text[i..].starts_with(b"\\x") => {
                out.push(byte);
                i += 4;
            }
            _ => {
                out.push(text[i]);
                i += 1;
            }
        }
    }
    assert!(
        !out.contains(&b'\\'),
        "an escape gunicorn's harness would reject"
    );
    out
}

fn calls(server: &Server) -> u64 {
    server.get("/calls").trim().parse().unwrap()
}

/// Sends `request` on a fresh connection, shuts the sending side, reads every answer
/// until the server closes, and tells what happened.
fn observe(server: &Server, request: &[u8]) -> Outcome {
    let before = calls(server);
    let mut stream = server.connect();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    // The server may refuse and close before it has read everything.
    let _ = stream.write_all(request);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    // /calls counts itself.
    let called = calls(server) - before - 1;
    if called > 0 {
        return Outcome::App(called);
    }
    let text = String::from_utf8_lossy(&answer);
    match text.strip_prefix("HTTP/1.").and_then(|rest| rest.get(2..5)) {
        Some(status) => Outcome::Server(status.parse().unwrap()),
        None => Outcome::Incomplete,
    }
}

/// `request` with `Host: corpus` after every HTTP/1.1 request line, when it has no Host
/// field at all: what the case tests, past RFC 9112 §3.2's 400 for the missing Host.
fn with_host(request: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(request).to_ascii_lowercase();
    assert!(!text.contains("\r\nhost:"), "the request has a Host field");
    let mut out = Vec::new();
    let mut rest = request;
    while let Some(end) = rest.windows(11).position(|w| w == b" HTTP/1.1\r\n") {
        out.extend_from_slice(&rest[..end + 11]);
        out.extend_from_slice(b"Host: corpus\r\n");
        rest = &rest[end + 11..];
    }
    out.extend_from_slice(rest);
    out
}

/// The table: case name (`valid/001`, or `valid/004+host` for the case with a Host field
/// added) → expected outcome and why, when it is not the corpus's own verdict.
fn expectations() -> BTreeMap<String, (Outcome, String)> {
    let path = common::fixtures().join("gunicorn_requests/expected.tsv");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut table = BTreeMap::new();
    for line in text.lines() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.splitn(3, '\t');
        let (name, outcome, why) = (
            fields.next().unwrap(),
            fields.next().unwrap_or_default(),
            fields.next().unwrap_or_default(),
        );
        let outcome = outcome.parse().unwrap_or_else(|e| panic!("{name}: {e}"));
        table.insert(name.to_owned(), (outcome, why.trim().to_owned()));
    }
    table
}

#[test]
fn gunicorn_request_corpus() {
    let server = Server::start(&["--wsgi", "probe:application"]);
    let table = expectations();
    let corpus = common::fixtures().join("gunicorn_requests");
    let mut cases = Vec::new();
    for set in ["valid", "invalid"] {
        for entry in std::fs::read_dir(corpus.join(set)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "http") {
                cases.push((set, path));
            }
        }
    }
    cases.sort();
    assert_eq!(
        cases.len(),
        137,
        "the corpus has 63 valid and 74 invalid requests"
    );
    for (set, path) in &cases {
        let name = format!("{set}/{}", stem(path));
        assert!(
            table.contains_key(&name),
            "{name} is missing from expected.tsv"
        );
    }

    let mut wrong = Vec::new();
    for (name, (expected, why)) in &table {
        let (case, host) = match name.strip_suffix("+host") {
            Some(case) => (case, true),
            None => (name.as_str(), false),
        };
        let (set, _) = case.split_once('/').unwrap();
        let path = corpus.join(format!("{case}.http"));
        let mut request = decode(&std::fs::read(&path).unwrap());
        if host {
            request = with_host(&request);
        }
        // Where Torsion parts from the corpus's verdict, the table must say why.
        // gunicorn's .py names one `"method"` per request it expects.
        let requests = std::fs::read_to_string(corpus.join(format!("{case}.py")))
            .unwrap()
            .matches("\"method\"")
            .count() as u64;
        let agrees = match expected {
            Outcome::App(n) => set == "valid" && *n == requests,
            Outcome::Server(status) => set == "invalid" && (400..500).contains(status),
            Outcome::Incomplete => false,
        };
        assert!(
            agrees || !why.is_empty(),
            "{name}: say why it is {expected:?}"
        );
        let seen = observe(&server, &request);
        if seen != *expected {
            wrong.push(format!("{name}: expected {expected:?}, got {seen:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // A refused request is the client's fault, never an application error.
    assert!(!server.logs().contains("the application raised"));
}

fn stem(path: &Path) -> String {
    path.file_stem().unwrap().to_string_lossy().into_owned()
}

#[test]
fn decoding_follows_gunicorns_harness() {
    let file = b"GET / HTTP/1.1\\r\\n\nHost: a\\x20b\\tc\\r\\n\n\\r\\n\n";
    assert_eq!(decode(file), b"GET / HTTP/1.1\r\nHost: a b\tc\r\n\r\n");
    assert_eq!(decode(b"a\\x0Db\\0"), b"a\rb\0");
    assert_eq!(
        with_host(b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.0\r\n\r\n"),
        b"GET /a HTTP/1.1\r\nHost: corpus\r\n\r\nGET /b HTTP/1.0\r\n\r\n"
    );
}
