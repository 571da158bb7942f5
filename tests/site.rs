//! The site: several resources on one server. Mount matching with `SCRIPT_NAME` and
//! `PATH_INFO` as the frameworks see them, and static files as a dedicated file server
//! serves them (RFC 9110 §8.8, §13, §14), checked field by field over raw sockets.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;

use common::{Server, environ, fixtures, read_response, send, text, torsion, venv};

/// `torsion web` with the test venv active (for the frameworks), in `fixtures/apps`.
fn with_frameworks(args: &[&str]) -> Server {
    let mut command = torsion();
    command.env("VIRTUAL_ENV", venv());
    Server::start_with(command, args)
}

/// One response: status, fields (names lower case; repeated ones joined by ", "), body.
#[derive(Debug)]
struct Answer {
    status: u16,
    fields: HashMap<String, String>,
    body: Vec<u8>,
}

impl Answer {
    fn field(&self, name: &str) -> &str {
        self.fields.get(name).map_or("", String::as_str)
    }
}

/// Sends `method path` with `fields` on a fresh connection and reads the whole answer
/// (`Connection: close`).
fn ask(server: &Server, method: &str, path: &str, fields: &[(&str, &str)]) -> Answer {
    let mut stream = server.connect();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (name, value) in fields {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a whole head");
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let mut fields: HashMap<String, String> = HashMap::new();
    for line in lines {
        let (name, value) = line.split_once(':').unwrap();
        let value = value.trim().to_owned();
        fields
            .entry(name.to_ascii_lowercase())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    Answer {
        status,
        fields,
        body: raw[end + 4..].to_vec(),
    }
}

/// A directory of files for the static tests: a text file and its gzip and brotli
/// siblings (stand-in bytes: the server only labels them), a 100 kB binary, a
/// subdirectory with an index, a dot-file, and links inside and outside.
fn files() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("www");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::create_dir_all(root.join("plain")).unwrap();
    std::fs::write(root.join("hello.txt"), "hello, static world\n").unwrap();
    std::fs::write(root.join("hello.txt.gz"), "GZIP-BYTES").unwrap();
    std::fs::write(root.join("hello.txt.br"), "BROTLI-BYTES").unwrap();
    let binary: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(root.join("data.bin"), binary).unwrap();
    std::fs::write(root.join("sub/index.html"), "<p>sub index</p>\n").unwrap();
    std::fs::write(root.join("plain/<b>&.txt"), "x").unwrap();
    std::fs::write(root.join(".env"), "SECRET=1\n").unwrap();
    std::fs::write(dir.path().join("outside.txt"), "outside\n").unwrap();
    std::os::unix::fs::symlink(root.join("hello.txt"), root.join("link-inside.txt")).unwrap();
    std::os::unix::fs::symlink(
        dir.path().join("outside.txt"),
        root.join("link-outside.txt"),
    )
    .unwrap();
    std::os::unix::fs::symlink(dir.path(), root.join("up")).unwrap();
    dir
}

fn static_server(dir: &Path, extra: &[&str]) -> Server {
    let mount = format!("/static={}", dir.join("www").display());
    let mut args = vec!["--wsgi", "probe:application", "--static", &mount];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// Runs `torsion web` with `args` (and a loopback listener), which must stop start-up with
/// exit status 2; returns what it printed on stderr.
fn refused(args: &[&str]) -> String {
    let output = torsion()
        .arg("web")
        .args(args)
        .args(["--listen", "tcp:0:interface=127.0.0.1"])
        .current_dir(fixtures().join("apps"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn mounted_applications_see_their_prefix_as_script_name() {
    let server = Server::start(&[
        "--wsgi",
        "probe:application",
        "--mount",
        "/api/v1=probe:application",
    ]);
    // (path, SCRIPT_NAME, PATH_INFO)
    let cases = [
        ("/environ", "", "/environ"),
        ("/api/v1/environ", "/api/v1", "/environ"),
        ("/api/v1", "/api/v1", ""),
        ("/api/v1/", "/api/v1", "/"),
        // Only on a segment boundary.
        ("/api/v1x/environ", "", "/api/v1x/environ"),
        ("/api/environ", "", "/api/environ"),
        // Matched on the decoded path; PATH_INFO decoded as PEP 3333 says.
        ("/api/v%31/caf%C3%A9", "/api/v1", "/caf\u{c3}\u{a9}"),
    ];
    for (path, script_name, path_info) in cases {
        let report = environ(&server.get(&format!("{path}?report=environ")));
        assert_eq!(text(&report, "SCRIPT_NAME"), script_name, "{path}");
        assert_eq!(text(&report, "PATH_INFO"), path_info, "{path}");
    }
    // Without a root, what no prefix takes gets 404 from the server.
    let server = Server::start(&["--mount", "/api=probe:application"]);
    assert_eq!(ask(&server, "GET", "/other", &[]).status, 404);
    assert_eq!(ask(&server, "GET", "/api/calls", &[]).status, 200);
}

#[test]
fn flask_url_for_and_django_reverse_build_prefixed_urls() {
    let server = with_frameworks(&[
        "--wsgi",
        "mysite.wsgi.application",
        "--pythonpath",
        "../django_site",
        "--mount",
        "/flask=flask_app:app",
        "--static",
        &format!("/static={}", fixtures().join("static").display()),
    ]);
    let flask: serde_json::Value = serde_json::from_str(&server.get("/flask/where")).unwrap();
    assert_eq!(flask["script_root"], "/flask");
    assert_eq!(flask["path"], "/where");
    assert_eq!(flask["json_url"], "/flask/json");
    let django: serde_json::Value = serde_json::from_str(&server.get("/info/")).unwrap();
    assert_eq!(django["path"], "/info/");
    assert_eq!(django["greet_url"], "/greet/");
    let page = ask(&server, "GET", "/static/css/site.css", &[]);
    assert_eq!(page.status, 200);
    assert_eq!(page.field("content-type"), "text/css; charset=utf-8");
    assert_eq!(
        page.body,
        std::fs::read(fixtures().join("static/css/site.css")).unwrap()
    );
    let index = ask(&server, "GET", "/static/", &[]);
    assert_eq!(index.status, 200);
    assert!(String::from_utf8_lossy(&index.body).contains("beside the applications"));
}

#[test]
fn django_mounted_below_the_root_reverses_under_its_prefix() {
    let server = with_frameworks(&[
        "--wsgi",
        "probe:application",
        "--pythonpath",
        "../django_site",
        "--mount",
        "/site=mysite.wsgi.application",
    ]);
    let django: serde_json::Value = serde_json::from_str(&server.get("/site/info/")).unwrap();
    assert_eq!(django["path"], "/site/info/");
    assert_eq!(django["path_info"], "/info/");
    assert_eq!(django["greet_url"], "/site/greet/");
}

#[test]
fn a_file_is_served_with_its_type_validators_and_length() {
    let dir = files();
    let server = static_server(dir.path(), &[]);
    let got = ask(&server, "GET", "/static/hello.txt", &[]);
    assert_eq!(got.status, 200);
    assert_eq!(got.body, b"hello, static world\n");
    assert_eq!(got.field("content-type"), "text/plain; charset=utf-8");
    assert_eq!(got.field("content-length"), "20");
    assert_eq!(got.field("accept-ranges"), "bytes");
    assert!(got.field("etag").starts_with('"'), "a strong tag: {got:?}");
    let modified = std::fs::metadata(dir.path().join("www/hello.txt"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        got.field("last-modified"),
        httpdate::fmt_http_date(modified)
    );
    // HEAD: the same fields, no body.
    let head = ask(&server, "HEAD", "/static/hello.txt", &[]);
    assert_eq!(head.status, 200);
    assert_eq!(head.field("content-length"), "20");
    assert_eq!(head.field("etag"), got.field("etag"));
    assert!(head.body.is_empty());
    // Other methods: 405 with Allow.
    let post = ask(
        &server,
        "POST",
        "/static/hello.txt",
        &[("Content-Length", "0")],
    );
    assert_eq!(post.status, 405);
    assert_eq!(post.field("allow"), "GET, HEAD");
    // A larger file, read in chunks.
    let data = ask(&server, "GET", "/static/data.bin", &[]);
    assert_eq!(data.status, 200);
    assert_eq!(data.field("content-type"), "application/octet-stream");
    assert_eq!(
        data.body,
        std::fs::read(dir.path().join("www/data.bin")).unwrap()
    );
}

#[test]
fn conditional_requests_follow_rfc_9110_section_13() {
    let dir = files();
    let server = static_server(dir.path(), &["--max-age", "3600"]);
    let first = ask(&server, "GET", "/static/hello.txt", &[]);
    let etag = first.field("etag").to_owned();
    let modified = first.field("last-modified").to_owned();
    assert_eq!(first.field("cache-control"), "max-age=3600");
    let weak = format!("W/{etag}");
    let earlier = "Mon, 01 Jan 2001 00:00:00 GMT";
    // (fields, status)
    let cases: Vec<(Vec<(&str, &str)>, u16)> = vec![
        (vec![("If-None-Match", &etag)], 304),
        (vec![("If-None-Match", &weak)], 304),
        (vec![("If-None-Match", "\"nope\"")], 200),
        (vec![("If-Modified-Since", &modified)], 304),
        (vec![("If-Modified-Since", earlier)], 200),
        (
            vec![
                ("If-None-Match", "\"nope\""),
                ("If-Modified-Since", &modified),
            ],
            200,
        ),
        (vec![("If-Match", &etag)], 200),
        (vec![("If-Match", "\"nope\"")], 412),
        (vec![("If-Match", &weak)], 412),
        (vec![("If-Unmodified-Since", earlier)], 412),
        (vec![("If-Unmodified-Since", &modified)], 200),
    ];
    for (fields, status) in cases {
        let got = ask(&server, "GET", "/static/hello.txt", &fields);
        assert_eq!(got.status, status, "{fields:?}");
        if status == 304 {
            assert!(got.body.is_empty());
            assert_eq!(got.field("etag"), etag);
            assert_eq!(got.field("cache-control"), "max-age=3600");
        }
    }
}

#[test]
fn ranges_follow_rfc_9110_section_14() {
    let dir = files();
    let server = static_server(dir.path(), &[]);
    let whole = std::fs::read(dir.path().join("www/data.bin")).unwrap();
    let path = "/static/data.bin";
    // One range.
    let got = ask(&server, "GET", path, &[("Range", "bytes=10-19")]);
    assert_eq!(got.status, 206);
    assert_eq!(got.field("content-range"), "bytes 10-19/100000");
    assert_eq!(got.body, &whole[10..20]);
    let got = ask(&server, "GET", path, &[("Range", "bytes=-5")]);
    assert_eq!(got.field("content-range"), "bytes 99995-99999/100000");
    assert_eq!(got.body, &whole[99995..]);
    // Several: multipart/byteranges.
    let got = ask(&server, "GET", path, &[("Range", "bytes=0-1,200-202")]);
    assert_eq!(got.status, 206);
    let boundary = got
        .field("content-type")
        .strip_prefix("multipart/byteranges; boundary=")
        .expect("multipart")
        .to_owned();
    let mut expected = format!(
        "--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes 0-1/100000\r\n\r\n"
    )
    .into_bytes();
    expected.extend_from_slice(&whole[0..2]);
    expected.extend_from_slice(
        format!("\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes 200-202/100000\r\n\r\n").as_bytes(),
    );
    expected.extend_from_slice(&whole[200..203]);
    expected.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    assert_eq!(got.body, expected);
    assert_eq!(got.field("content-length"), expected.len().to_string());
    // Unsatisfiable: 416 with the length.
    let got = ask(&server, "GET", path, &[("Range", "bytes=200000-")]);
    assert_eq!(got.status, 416);
    assert_eq!(got.field("content-range"), "bytes */100000");
    // Malformed: ignored.
    let got = ask(&server, "GET", path, &[("Range", "bytes=zz")]);
    assert_eq!(got.status, 200);
    assert_eq!(got.body.len(), 100_000);
    // If-Range: the range only for the current representation.
    let etag = ask(&server, "HEAD", path, &[]).field("etag").to_owned();
    let got = ask(
        &server,
        "GET",
        path,
        &[("Range", "bytes=0-9"), ("If-Range", &etag)],
    );
    assert_eq!(got.status, 206);
    let got = ask(
        &server,
        "GET",
        path,
        &[("Range", "bytes=0-9"), ("If-Range", "\"old\"")],
    );
    assert_eq!(got.status, 200);
    assert_eq!(got.body.len(), 100_000);
    // HEAD ignores Range.
    assert_eq!(
        ask(&server, "HEAD", path, &[("Range", "bytes=0-9")]).status,
        200
    );
}

#[test]
fn precompressed_siblings_are_served_to_clients_that_accept_them() {
    let dir = files();
    let server = static_server(dir.path(), &[]);
    let path = "/static/hello.txt";
    // (Accept-Encoding, body, Content-Encoding)
    let cases = [
        (None, "hello, static world\n", ""),
        (Some("gzip"), "GZIP-BYTES", "gzip"),
        (Some("gzip, br"), "BROTLI-BYTES", "br"),
        (Some("br;q=0.5, gzip"), "GZIP-BYTES", "gzip"),
        (Some("br;q=0, gzip;q=0"), "hello, static world\n", ""),
        (Some("zstd"), "hello, static world\n", ""),
    ];
    for (accept, body, coding) in cases {
        let fields: Vec<(&str, &str)> =
            accept.map(|a| ("Accept-Encoding", a)).into_iter().collect();
        let got = ask(&server, "GET", path, &fields);
        assert_eq!(got.status, 200, "{accept:?}");
        assert_eq!(String::from_utf8_lossy(&got.body), body, "{accept:?}");
        assert_eq!(got.field("content-encoding"), coding, "{accept:?}");
        // The original's type, whatever the coding.
        assert_eq!(got.field("content-type"), "text/plain; charset=utf-8");
        if !coding.is_empty() {
            assert_eq!(got.field("vary"), "accept-encoding");
        }
    }
    // Each representation has its own validator.
    let plain = ask(&server, "HEAD", path, &[]).field("etag").to_owned();
    let gzip = ask(&server, "HEAD", path, &[("Accept-Encoding", "gzip")])
        .field("etag")
        .to_owned();
    assert_ne!(plain, gzip);
    // Turned off: the identity file for everyone.
    let server = static_server(dir.path(), &["--no-precompressed"]);
    let got = ask(&server, "GET", path, &[("Accept-Encoding", "gzip, br")]);
    assert_eq!(got.body, b"hello, static world\n");
}

#[test]
fn directories_redirect_then_serve_their_index_or_a_listing() {
    let dir = files();
    let server = static_server(dir.path(), &[]);
    let got = ask(&server, "GET", "/static/sub?x=1", &[]);
    assert_eq!(got.status, 301);
    assert_eq!(got.field("location"), "/static/sub/?x=1");
    let got = ask(&server, "GET", "/static/sub/", &[]);
    assert_eq!(got.status, 200);
    assert_eq!(got.body, b"<p>sub index</p>\n");
    assert_eq!(got.field("content-type"), "text/html; charset=utf-8");
    // No index and no listing: 404.
    assert_eq!(ask(&server, "GET", "/static/plain/", &[]).status, 404);
    // With --directory-listing: names escaped, hidden names left out.
    let server = static_server(dir.path(), &["--directory-listing"]);
    let got = ask(&server, "GET", "/static/plain/", &[]);
    assert_eq!(got.status, 200);
    let page = String::from_utf8_lossy(&got.body);
    assert!(
        page.contains("<a href=\"%3Cb%3E%26.txt\">&lt;b&gt;&amp;.txt</a>"),
        "{page}"
    );
    let root = String::from_utf8_lossy(&ask(&server, "GET", "/static/", &[]).body).into_owned();
    assert!(
        root.contains("hello.txt") && root.contains("sub/"),
        "{root}"
    );
    assert!(!root.contains(".env"), "{root}");
}

#[test]
fn nothing_outside_the_directory_is_ever_served() {
    let dir = files();
    let server = static_server(dir.path(), &[]);
    // Each attempt, as sent on the wire.
    let refused = [
        "/static/../outside.txt",
        "/static/%2e%2e/outside.txt",
        "/static/%2E%2E/%2e%2e/etc/passwd",
        "/static/..%2foutside.txt",
        "/static/sub%2f..%2f..%2foutside.txt",
        "/static/..%5coutside.txt",
        "/static/hello.txt%00.png",
        "/static/link-outside.txt",
        "/static/up/outside.txt",
        "/static/.env",
        "/static/%2eenv",
        "/static/./hello.txt",
        "/static/hello.txt/",
        "/static/missing.txt",
    ];
    for path in refused {
        let got = ask(&server, "GET", path, &[]);
        assert_eq!(got.status, 404, "{path}: {got:?}");
        assert!(
            !String::from_utf8_lossy(&got.body).contains("outside"),
            "{path}"
        );
    }
    // A link that stays inside is followed.
    let got = ask(&server, "GET", "/static/link-inside.txt", &[]);
    assert_eq!(got.status, 200);
    assert_eq!(got.body, b"hello, static world\n");
    // Dot-files when asked for.
    let server = static_server(dir.path(), &["--dotfiles"]);
    assert_eq!(ask(&server, "GET", "/static/.env", &[]).status, 200);
    assert_eq!(
        ask(&server, "GET", "/static/%2e%2e/outside.txt", &[]).status,
        404
    );
}

#[test]
fn types_can_be_added_and_the_default_changed() {
    let dir = files();
    std::fs::write(dir.path().join("www/notes.foo"), "foo").unwrap();
    std::fs::write(dir.path().join("www/README"), "readme").unwrap();
    let server = static_server(
        dir.path(),
        &["--mime-type", "foo=text/x-foo", "--mime-type", "text/plain"],
    );
    assert_eq!(
        ask(&server, "GET", "/static/notes.foo", &[]).field("content-type"),
        "text/x-foo; charset=utf-8"
    );
    assert_eq!(
        ask(&server, "GET", "/static/README", &[]).field("content-type"),
        "text/plain; charset=utf-8"
    );
}

#[test]
fn a_site_of_files_alone_serves_from_the_root() {
    let dir = files();
    let root = dir.path().join("www");
    let server = Server::start(&["--path", root.to_str().unwrap()]);
    assert_eq!(
        ask(&server, "GET", "/hello.txt", &[]).body,
        b"hello, static world\n"
    );
    assert_eq!(
        ask(&server, "GET", "/sub/", &[]).body,
        b"<p>sub index</p>\n"
    );
}

#[test]
fn conflicting_or_bad_mounts_stop_start_up_with_exit_2() {
    let dir = files();
    let root = dir.path().join("www");
    let root = root.to_str().unwrap();
    let missing = format!("/static={}", dir.path().join("missing").display());
    let file = format!("/static={}/hello.txt", root);
    // (arguments, what the message names)
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--wsgi", "probe:application", "--path", root],
            "--wsgi and --path both serve /",
        ),
        (vec!["--static", &missing], "cannot serve files from"),
        (vec!["--static", &file], "not a directory"),
        (vec!["--static", "static"], "expected PREFIX=VALUE"),
        (
            vec!["--mount", "api=probe:application"],
            "must start with /",
        ),
        (
            vec!["--mount", "/a/../b=probe:application"],
            "a . or .. segment",
        ),
        (
            vec![
                "--mount",
                "/x=probe:application",
                "--mount",
                "/x/=probe:application",
            ],
            "/x has two resources",
        ),
        (vec!["--mount", "/x=no_such_module:app"], "no_such_module"),
        (
            vec!["--path", root, "--mime-type", "foo=nonsense"],
            "is not a content type",
        ),
    ];
    for (args, message) in cases {
        let stderr = refused(&args);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}

#[test]
fn added_headers_reach_every_response_once() {
    let dir = files();
    let server = static_server(
        dir.path(),
        &[
            "--add-header",
            "X-Frame-Options: DENY",
            "--add-header",
            "Content-Type: text/x-added",
        ],
    );
    // An application's page, a static file, a 404 of the site, a 404 of the application,
    // and the server's own 400: each gets the field once.
    let cases = [
        ("/calls", vec![]),
        ("/static/hello.txt", vec![]),
        ("/static/missing", vec![]),
        ("/no-such-route", vec![]),
        ("*", vec![]),
    ];
    for (path, fields) in cases {
        let got = ask(&server, "GET", path, &fields);
        assert_eq!(got.field("x-frame-options"), "DENY", "{path}: {got:?}");
        // A field the response has is kept, not doubled.
        assert!(
            !got.field("content-type").contains("x-added"),
            "{path}: {got:?}"
        );
    }
    // Fields only the server may set, and malformed ones, stop start-up.
    for bad in [
        "Content-Length: 5",
        "Connection: close",
        "no colon",
        "Bad Name: x",
    ] {
        let stderr = refused(&["--add-header", bad]);
        assert!(stderr.contains("--add-header"), "{bad}: {stderr}");
    }
}

/// The lines of `path` once it has at least `count` (waits up to 10 s).
fn lines_of(path: &Path, count: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= count {
            return lines;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} has {} lines, not {count}: {text}",
            path.display(),
            lines.len()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn the_access_log_has_a_line_for_every_response_and_reopens_on_sigusr1() {
    let dir = files();
    let log = dir.path().join("access.log");
    let log_arg = log.to_str().unwrap();
    let server = static_server(
        dir.path(),
        &["--access-log", log_arg, "--access-log-format", "json"],
    );
    let etag = ask(&server, "HEAD", "/static/hello.txt", &[])
        .field("etag")
        .to_owned();
    // (method, target, fields, status); the bytes are the body the client received.
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, u16);
    let cases: Vec<Case<'_>> = vec![
        ("GET", "/calls", vec![("User-Agent", "probe/1 \"q\"")], 200),
        (
            "GET",
            "/static/hello.txt",
            vec![("Referer", "http://r.example/")],
            200,
        ),
        (
            "GET",
            "/static/hello.txt",
            vec![("If-None-Match", &etag)],
            304,
        ),
        (
            "GET",
            "/static/data.bin",
            vec![("Range", "bytes=0-99")],
            206,
        ),
        ("GET", "/static/missing", vec![], 404),
        ("GET", "/no-such-route", vec![], 404),
        ("OPTIONS", "*", vec![], 200),
        ("GET", "/raise", vec![], 500),
    ];
    let mut received = Vec::new();
    for (method, target, fields, status) in &cases {
        let got = ask(&server, method, target, fields);
        assert_eq!(got.status, *status, "{target}");
        received.push(got.body.len() as u64);
    }
    // The HEAD first, then one line per case, in order (one connection at a time).
    let lines = lines_of(&log, 1 + cases.len());
    let head: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(
        (head["method"].as_str(), head["bytes"].as_u64()),
        (Some("HEAD"), Some(0))
    );
    for ((line, (method, target, fields, status)), bytes) in
        lines[1..].iter().zip(&cases).zip(&received)
    {
        let entry: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("{line}"));
        assert_eq!(entry["method"], *method, "{line}");
        assert_eq!(entry["target"], *target, "{line}");
        assert_eq!(entry["protocol"], "HTTP/1.1", "{line}");
        assert_eq!(entry["status"], *status, "{line}");
        assert_eq!(entry["bytes"], *bytes, "{line}");
        assert_eq!(entry["peer"], "127.0.0.1", "{line}");
        assert!(entry["duration_us"].as_u64().is_some(), "{line}");
        let agent = fields
            .iter()
            .find(|(n, _)| *n == "User-Agent")
            .map(|(_, v)| *v);
        assert_eq!(entry["user_agent"].as_str(), agent, "{line}");
    }
    // Rotation: move the file away, SIGUSR1, and the next line starts a new file.
    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    let pid = server.child.id().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-USR1", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    server.wait_for_log("access log reopened");
    assert_eq!(ask(&server, "GET", "/static/hello.txt", &[]).status, 200);
    let fresh = lines_of(&log, 1);
    assert_eq!(fresh.len(), 1, "{fresh:?}");
    assert!(fresh[0].contains("\"/static/hello.txt\""), "{fresh:?}");
    assert_eq!(lines_of(&rotated, 1 + cases.len()).len(), 1 + cases.len());
}

#[test]
fn the_combined_format_is_apaches() {
    let dir = files();
    let log = dir.path().join("combined.log");
    let server = static_server(dir.path(), &["--logfile", log.to_str().unwrap()]);
    ask(
        &server,
        "GET",
        "/static/hello.txt?x=1",
        &[("User-Agent", "agent \"7\""), ("Referer", "http://r/")],
    );
    let line = &lines_of(&log, 1)[0];
    // 127.0.0.1 - - [30/Nov/2026:03:15:00 +0000] "GET /static/hello.txt?x=1 HTTP/1.1" 200 20 "http://r/" "agent \"7\""
    let (time, rest) = line
        .strip_prefix("127.0.0.1 - - [")
        .and_then(|l| l.split_once("] "))
        .unwrap_or_else(|| panic!("{line}"));
    assert!(time.ends_with(" +0000") && time.len() == 26, "{line}");
    assert_eq!(
        rest,
        "\"GET /static/hello.txt?x=1 HTTP/1.1\" 200 20 \"http://r/\" \"agent \\\"7\\\"\""
    );
    // A bad format or an unwritable file stops start-up.
    for (args, message) in [
        (vec!["--access-log-format", "xml"], "not a log format"),
        (vec!["--access-log", "/no/such/dir/log"], "cannot open it"),
    ] {
        let stderr = refused(&args);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}

#[test]
fn forwarded_fields_count_only_from_trusted_proxies() {
    let dir = files();
    let log = dir.path().join("forwarded.log");
    let fields = [
        ("X-Forwarded-For", "203.0.113.9"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "www.example.com"),
    ];
    let report = |server: &Server, fields: &[(&str, &str)]| {
        let got = ask(server, "GET", "/environ", fields);
        environ(&String::from_utf8(got.body).unwrap())
    };
    // Trusted: the client, its scheme and host, in environ and in the access log.
    let server = static_server(
        dir.path(),
        &[
            "--forwarded-allow-ips",
            "127.0.0.1,::1",
            "--access-log",
            log.to_str().unwrap(),
            "--access-log-format",
            "json",
        ],
    );
    let seen = report(&server, &fields);
    assert_eq!(text(&seen, "REMOTE_ADDR"), "203.0.113.9");
    assert_eq!(text(&seen, "wsgi.url_scheme"), "https");
    assert_eq!(text(&seen, "HTTPS"), "on");
    assert_eq!(text(&seen, "HTTP_HOST"), "www.example.com");
    assert_eq!(text(&seen, "SERVER_NAME"), "www.example.com");
    assert_eq!(text(&seen, "SERVER_PORT"), "443");
    let entry: serde_json::Value = serde_json::from_str(&lines_of(&log, 1)[0]).unwrap();
    assert_eq!(entry["peer"], "203.0.113.9");
    // RFC 7239's Forwarded, with an IPv6 client.
    let seen = report(
        &server,
        &[("Forwarded", "for=\"[2001:db8::17]:4711\";proto=https")],
    );
    assert_eq!(text(&seen, "REMOTE_ADDR"), "2001:db8::17");
    assert_eq!(text(&seen, "REMOTE_PORT"), "4711");
    assert_eq!(text(&seen, "wsgi.url_scheme"), "https");
    // Not trusted (another network, or no option at all): nothing changes, and the fields
    // reach the application as they came.
    for args in [vec!["--forwarded-allow-ips", "10.0.0.0/8"], vec![]] {
        let server = static_server(dir.path(), &args);
        let seen = report(&server, &fields);
        assert_eq!(text(&seen, "REMOTE_ADDR"), "127.0.0.1", "{args:?}");
        assert_eq!(text(&seen, "wsgi.url_scheme"), "http", "{args:?}");
        assert_eq!(text(&seen, "HTTP_HOST"), "test", "{args:?}");
        assert_eq!(
            text(&seen, "HTTP_X_FORWARDED_FOR"),
            "203.0.113.9",
            "{args:?}"
        );
    }
    assert!(refused(&["--forwarded-allow-ips", "10.0.0.0/40"]).contains("is not an IP network"));
}

/// The connection's environ entries are made once and copied for each of its requests:
/// on one keep-alive connection from a trusted proxy, each request still sees the client
/// it names (a request naming none sees the proxy itself, with its own port) and the host
/// it names (one without a Host field has no `HTTP_HOST`, and the listener's address).
#[test]
fn each_request_of_one_connection_sees_its_own_client_and_host() {
    let dir = files();
    let server = static_server(dir.path(), &["--forwarded-allow-ips", "127.0.0.1"]);
    let mut stream = server.connect();
    let own_port = stream.local_addr().unwrap().port().to_string();
    let server_port = stream.peer_addr().unwrap().port().to_string();
    let proxy = Some(own_port.as_str());
    // (Host field, Forwarded field): REMOTE_ADDR, REMOTE_PORT, wsgi.url_scheme,
    // HTTP_HOST, SERVER_NAME, SERVER_PORT.
    type Case<'a> = ((Option<&'a str>, Option<&'a str>), [Option<&'a str>; 6]);
    // The plain request, made again after others to show their entries did not stay.
    let direct: Case<'_> = (
        (Some("test"), None),
        [
            Some("127.0.0.1"),
            proxy,
            Some("http"),
            Some("test"),
            Some("test"),
            Some("80"),
        ],
    );
    let cases: [Case<'_>; 6] = [
        direct,
        (
            (Some("test"), Some("for=203.0.113.9;proto=https")),
            [
                Some("203.0.113.9"),
                None,
                Some("https"),
                Some("test"),
                Some("test"),
                Some("443"),
            ],
        ),
        (
            (Some("other.example:8080"), None),
            [
                Some("127.0.0.1"),
                proxy,
                Some("http"),
                Some("other.example:8080"),
                Some("other.example"),
                Some("8080"),
            ],
        ),
        (
            (None, Some("for=\"198.51.100.2:81\"")),
            [
                Some("198.51.100.2"),
                Some("81"),
                Some("http"),
                None,
                Some("127.0.0.1"),
                Some(server_port.as_str()),
            ],
        ),
        direct,
        (
            (None, None),
            [
                Some("127.0.0.1"),
                proxy,
                Some("http"),
                None,
                Some("127.0.0.1"),
                Some(server_port.as_str()),
            ],
        ),
    ];
    let keys = [
        "REMOTE_ADDR",
        "REMOTE_PORT",
        "wsgi.url_scheme",
        "HTTP_HOST",
        "SERVER_NAME",
        "SERVER_PORT",
    ];
    for ((host, forwarded), expected) in cases {
        // HTTP/1.0 with keep-alive where there is no Host field: HTTP/1.1 requires one.
        let mut request = match host {
            Some(host) => format!("GET /environ HTTP/1.1\r\nHost: {host}\r\n"),
            None => "GET /environ HTTP/1.0\r\nConnection: keep-alive\r\n".to_owned(),
        };
        if let Some(forwarded) = forwarded {
            request.push_str(&format!("Forwarded: {forwarded}\r\n"));
        }
        request.push_str("\r\n");
        send(&mut stream, &request);
        let (head, body) = read_response(&mut stream);
        assert!(head.contains(" 200 "), "{head}");
        let seen = environ(&String::from_utf8(body).unwrap());
        for (key, value) in keys.iter().zip(expected) {
            assert_eq!(
                seen.get(*key).and_then(|v| v.as_str()),
                value,
                "{key} for {host:?}, {forwarded:?}"
            );
        }
    }
}

#[test]
fn haproxy_listeners_take_the_client_from_the_proxy_protocol() {
    let server = Server::start(&[
        "--wsgi",
        "probe:application",
        "--listen",
        "haproxy:tcp:0:interface=127.0.0.1",
    ]);
    let request = b"GET /environ HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let exchange = |header: &[u8]| -> Vec<u8> {
        let mut stream = server.connect();
        stream.write_all(&[header, &request[..]].concat()).unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        answer
    };
    let remote = |answer: Vec<u8>| {
        let answer = String::from_utf8(answer).unwrap();
        let body = answer.split_once("\r\n\r\n").unwrap().1.to_owned();
        let report = environ(&body);
        (
            text(&report, "REMOTE_ADDR").to_owned(),
            report.get("REMOTE_PORT").cloned(),
        )
    };
    // Version 1, as text.
    let (addr, port) = remote(exchange(b"PROXY TCP4 203.0.113.9 127.0.0.1 56324 8080\r\n"));
    assert_eq!(addr, "203.0.113.9");
    assert_eq!(port.unwrap(), "56324");
    // Version 2, binary, IPv6, with a TLV.
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x21".to_vec();
    let mut body = Vec::new();
    body.extend_from_slice(
        &"2001:db8::7"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    body.extend_from_slice(
        &"2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    body.extend_from_slice(&[0x12, 0x67, 0x1f, 0x90, 0x04, 0x00, 0x01, b'x']);
    v2.extend_from_slice(&(body.len() as u16).to_be_bytes());
    v2.extend_from_slice(&body);
    let (addr, port) = remote(exchange(&v2));
    assert_eq!(addr, "2001:db8::7");
    assert_eq!(port.unwrap(), "4711");
    // The balancer's own health check (v2 LOCAL): the connection's own address.
    let local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";
    assert_eq!(remote(exchange(local)).0, "127.0.0.1");
    // No header, or a broken one: closed without an answer.
    assert!(exchange(b"").is_empty());
    assert!(exchange(b"PROXY TCP4 nonsense\r\n").is_empty());
}

#[test]
fn twist_web_command_lines_work_as_written() {
    let dir = files();
    let root = dir.path().join("www");
    std::fs::write(root.join("page.html"), "<p>page</p>").unwrap();
    std::fs::write(root.join("sub/home.htm"), "home").unwrap();
    let log = dir.path().join("twist.log");
    // Short forms, as twist web has them.
    let server = Server::start(&[
        "--path",
        root.to_str().unwrap(),
        "-l",
        log.to_str().unwrap(),
        "-i",
        "home.htm",
        "-m",
        "text/plain",
        "-n",
        "--ignore-ext",
        ".html",
        "-p",
        "tcp:0:interface=127.0.0.1",
    ]);
    assert_eq!(ask(&server, "GET", "/sub/", &[]).body, b"home");
    let page = ask(&server, "GET", "/page", &[]);
    assert_eq!(page.body, b"<p>page</p>");
    assert_eq!(page.field("content-type"), "text/html; charset=utf-8");
    assert_eq!(lines_of(&log, 2).len(), 2);
    // --allow-ignore-ext: any extension.
    let server = Server::start(&["--path", root.to_str().unwrap(), "--allow-ignore-ext"]);
    assert_eq!(ask(&server, "GET", "/page", &[]).body, b"<p>page</p>");
    assert_eq!(
        ask(&server, "GET", "/hello", &[]).body,
        b"hello, static world\n"
    );
    // The deprecated --https with -c and -k: an ssl: listener, and Twisted's warning.
    let key = rcgen::KeyPair::generate().unwrap();
    let certificate = rcgen::CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (key_file, cert_file) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    std::fs::write(&cert_file, certificate.pem()).unwrap();
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port().to_string()
    };
    let server = Server::start(&[
        "--path",
        root.to_str().unwrap(),
        "--listen",
        "tcp:0:interface=127.0.0.1",
        "--https",
        &port,
        "-c",
        cert_file.to_str().unwrap(),
        "-k",
        key_file.to_str().unwrap(),
    ]);
    server.wait_for_log("--https is deprecated");
    let line = server.wait_for_log(&format!("endpoint=ssl:{port}"));
    assert!(line.contains("listening"), "{line}");
    // Options for Twisted resources: refused with what to use instead.
    for option in [
        vec!["--class", "myapp.Root"],
        vec!["--resource-script", "root.rpy"],
        vec!["--processor", ".rpy=twisted.web.script.ResourceScript"],
        vec!["-u"],
        vec!["--personal"],
    ] {
        let stderr = refused(&option);
        assert!(
            stderr.contains("only Twisted can run") && stderr.contains("--wsgi"),
            "{option:?}: {stderr}"
        );
    }
}

#[test]
fn a_file_rewritten_in_place_is_served_as_it_is_now() {
    // Small files' bytes are kept between requests; a write, even one that keeps the
    // length, must show at once.
    let dir = files();
    let server = static_server(dir.path(), &[]);
    let path = dir.path().join("www/hello.txt");
    assert_eq!(
        ask(&server, "GET", "/static/hello.txt", &[]).body,
        b"hello, static world\n"
    );
    assert_eq!(
        ask(&server, "GET", "/static/hello.txt", &[]).body,
        b"hello, static world\n"
    );
    std::fs::write(&path, "HELLO, STATIC WORLD\n").unwrap();
    assert_eq!(
        ask(&server, "GET", "/static/hello.txt", &[]).body,
        b"HELLO, STATIC WORLD\n"
    );
    std::fs::write(&path, "shorter\n").unwrap();
    let got = ask(&server, "GET", "/static/hello.txt", &[]);
    assert_eq!(got.body, b"shorter\n");
    assert_eq!(got.field("content-length"), "8");
}

/// A `--config` file: module-level options and a `torsion.Site` with applications, static
/// files, a field and a timer; flags on the command line override what it sets.
fn config_file(dir: &Path) -> std::path::PathBuf {
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("note.txt"), "from the config's static directory\n").unwrap();
    let config = dir.join("site.py");
    std::fs::write(
        &config,
        format!(
            r#"import torsion
from flask_app import app

threads = 2
listen = ["tcp:1:interface=127.0.0.1"]  # the command line's --listen wins
thread = 4  # a misspelling: warned about

TICKS = {ticks:?}

def tick():
    with open(TICKS, "a") as ticks:
        ticks.write("tick\n")

site = torsion.Site()
site.mount("/", app)
site.mount("/probe", "probe:application")
site.mount("/hello", "hello:application")
site.mount("/files", torsion.Static({www:?}, max_age=60))
site.add_header("X-Config: site")
site.timer(0.2, tick)
"#,
            ticks = dir.join("ticks").display().to_string(),
            www = www.display().to_string(),
        ),
    )
    .unwrap();
    config
}

#[test]
fn a_config_file_builds_the_site_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path());
    let config = config.to_str().unwrap();
    let server = with_frameworks(&["--config", config, "--mount", "/hello=probe:application"]);
    assert!(
        server
            .logs()
            .contains("'thread' is not an option of torsion web, ignored; did you mean 'threads'?"),
        "{}",
        server.logs()
    );
    // From the file: Flask at /, the probe at /probe, static files, the field, the threads.
    let home = ask(&server, "GET", "/", &[]);
    assert_eq!(
        (home.status, home.body.as_slice()),
        (200, b"Hello from Flask".as_slice())
    );
    assert_eq!(home.field("x-config"), "site");
    let script_name = |path: &str| {
        let report = environ(&server.get(&format!("{path}?report=environ")));
        text(&report, "SCRIPT_NAME").to_owned()
    };
    assert_eq!(script_name("/probe/x"), "/probe");
    let note = ask(&server, "GET", "/files/note.txt", &[]);
    assert_eq!(note.status, 200);
    assert_eq!(note.field("cache-control"), "max-age=60");
    assert!(
        server.logs().contains("starting threads=2"),
        "{}",
        server.logs()
    );
    // From the command line: its listener (loopback, port 0) and its /hello mount.
    assert!(!server.address.ends_with(":1"), "{}", server.address);
    assert_eq!(script_name("/hello/x"), "/hello");
    // The timer: first at start-up, then every 0.2 s.
    let ticks = dir.path().join("ticks");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::fs::read_to_string(&ticks).map_or(0, |t| t.lines().count()) < 2 {
        assert!(std::time::Instant::now() < deadline, "{}", server.logs());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_config_file_that_raises_stops_start_up_naming_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("broken.py");
    std::fs::write(&config, "threads = 2\nraise RuntimeError('no database')\n").unwrap();
    let stderr = refused(&["--config", config.to_str().unwrap()]);
    assert!(
        stderr.contains(&format!(
            "error: --config {}: RuntimeError: no database ({}, line 2)",
            config.display(),
            config.display()
        )),
        "{stderr}"
    );
    std::fs::write(&config, "threads = 0\n").unwrap();
    let stderr = refused(&["--config", config.to_str().unwrap()]);
    assert!(
        stderr.contains("invalid value '0' for '--threads <N>'"),
        "{stderr}"
    );
}
