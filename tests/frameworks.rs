//! Real Flask, Django, Pyramid and Bottle applications, unmodified, from the test venv,
//! over TCP and unix sockets.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{Server, fixtures, torsion, venv};

/// `torsion web` with the test venv active, in `dir`.
fn serve(dir: &Path, args: &[&str]) -> Server {
    let mut command = torsion();
    command.env("VIRTUAL_ENV", venv()).current_dir(dir);
    Server::start_with(command, args)
}

fn apps() -> std::path::PathBuf {
    fixtures().join("apps")
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"))
}

#[test]
fn flask_routes_json_form_upload_and_streaming() {
    let server = serve(&apps(), &["--wsgi", "flask_app:app"]);
    assert_eq!(server.get("/"), "Hello from Flask");

    let (status, head, body) = server.fetch(&[], "/json?x=1");
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let body = json(&body);
    assert_eq!(body["framework"], "flask");
    assert_eq!(body["items"], serde_json::json!([1, 2, 3]));
    assert_eq!(body["args"]["x"], "1");

    let output = server.curl(&["-d", "name=Ada Lovelace"], "/form");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "Hello, Ada Lovelace!"
    );

    // A multipart upload of 2 MB of binary data.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data.bin");
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&file, &data).unwrap();
    let output = server.curl(
        &[
            "-F",
            &format!("file=@{}", file.display()),
            "-F",
            "note=uploaded by curl",
        ],
        "/upload",
    );
    let body = json(&String::from_utf8_lossy(&output.stdout));
    assert_eq!(body["filename"], "data.bin");
    assert_eq!(body["size"], 2_000_000);
    assert_eq!(body["note"], "uploaded by curl");
    let sha = Command::new("sha256sum").arg(&file).output().unwrap();
    let sha = String::from_utf8_lossy(&sha.stdout);
    assert_eq!(body["sha256"], sha.split_whitespace().next().unwrap());

    assert_eq!(
        server.get("/stream?n=3&delay=0"),
        "part 0\npart 1\npart 2\n"
    );

    let (status, _, _) = server.fetch(&[], "/boom");
    assert_eq!(status, 500);
    server.wait_for_log("RuntimeError: flask view failed");
    assert_eq!(server.get("/"), "Hello from Flask");
    let (status, _, _) = server.fetch(&[], "/no-such-page");
    assert_eq!(status, 404);
}

#[test]
fn an_unread_request_body_does_not_stall_the_keep_alive_connection() {
    // Flask keeps environ alive in a reference cycle; a POST to a route that never reads
    // its body must not hold up the next request on the same connection.
    let server = serve(&apps(), &["--wsgi", "flask_app:app"]);
    let mut stream = server.connect();
    common::send(
        &mut stream,
        "POST /no-such-route HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
    );
    let (head, _) = common::read_response(&mut stream);
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    common::send(&mut stream, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let (head, body) = common::read_response(&mut stream);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, b"Hello from Flask");
}

#[test]
fn flask_over_a_unix_socket_and_http2() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("unix:{}", dir.path().join("flask.sock").display());
    let server = serve(&apps(), &["--wsgi", "flask_app:app", "--listen", &listen]);
    assert_eq!(server.get("/"), "Hello from Flask");
    let output = server.curl(&["-d", "name=unix"], "/form");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "Hello, unix!");

    let server = serve(&apps(), &["--wsgi", "flask_app:app"]);
    let output = server.curl(
        &["--http2-prior-knowledge", "-w", " %{http_version}"],
        "/json",
    );
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(out.ends_with(" 2"), "{out}");
}

/// Pulls `name="csrfmiddlewaretoken" value="..."` out of a page.
fn csrf_token(page: &str) -> String {
    let start = page
        .find("name=\"csrfmiddlewaretoken\" value=\"")
        .expect("a CSRF token in the form")
        + 34;
    page[start..].split('"').next().unwrap().to_owned()
}

#[test]
fn django_form_with_csrf_and_the_admin_login_page() {
    let site = fixtures().join("django_site");
    // Twisted's dotted form of the name.
    let server = serve(&site, &["--wsgi", "mysite.wsgi.application"]);

    let (status, _, body) = server.fetch(&[], "/admin/login/");
    assert_eq!(status, 200, "{body}\n{}", server.logs());
    assert!(body.contains("Django administration"), "{body}");

    let jar = tempfile::NamedTempFile::new().unwrap();
    let jar = jar.path().to_str().unwrap();
    let page = String::from_utf8_lossy(&server.curl(&["-c", jar], "/greet/").stdout).into_owned();
    let token = csrf_token(&page);
    let output = server.curl(
        &[
            "-b",
            jar,
            "-c",
            jar,
            "-H",
            &format!("Referer: {}", server.url("/greet/")),
            "-d",
            &format!("csrfmiddlewaretoken={token}&name=Grace"),
        ],
        "/greet/",
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), "Hello, Grace!");
    // Without the token Django's CSRF protection answers 403, through Torsion unchanged.
    let (status, _, _) = server.fetch(&["-d", "name=Mallory"], "/greet/");
    assert_eq!(status, 403);
    // An invalid form is rendered again with its error.
    let output = server.curl(
        &[
            "-b",
            jar,
            "-d",
            &format!("csrfmiddlewaretoken={token}&name="),
        ],
        "/greet/",
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("This field is required."));

    let info = json(&server.get("/info/?a=b"));
    assert_eq!(info["host"], server.address);
    assert_eq!(info["scheme"], "http");
    assert_eq!(info["remote_addr"], "127.0.0.1");
    assert_eq!(info["query"]["a"], "b");
}

#[test]
fn django_over_a_unix_socket() {
    let site = fixtures().join("django_site");
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("unix:{}:mode=600", dir.path().join("django.sock").display());
    let server = serve(
        &site,
        &["--wsgi", "mysite.wsgi:application", "--listen", &listen],
    );
    let info = json(&server.get("/info/"));
    assert_eq!(info["host"], "localhost");
    assert_eq!(info["remote_addr"], "");
}

#[test]
fn pyramid_routes_and_json() {
    let server = serve(&apps(), &["--wsgi", "pyramid_app:application"]);
    assert_eq!(server.get("/"), "Hello from Pyramid");
    let body = json(&server.get("/hello/world"));
    assert_eq!(
        body,
        serde_json::json!({"greeting": "hello", "name": "world", "method": "GET"})
    );
    let (status, _, _) = server.fetch(&[], "/missing");
    assert_eq!(status, 404);
}

#[test]
fn bottle_routes_json_and_post() {
    let server = serve(&apps(), &["--wsgi", "bottle_app:app"]);
    assert_eq!(server.get("/"), "Hello from Bottle");
    assert_eq!(
        json(&server.get("/hello/bottle")),
        serde_json::json!({"greeting": "hello", "name": "bottle"})
    );
    let mut child = Command::new("curl")
        .args(["-sS", "--data-binary", "@-", &server.url("/echo")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"posted to bottle")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "posted to bottle");
}
