//! Several `torsion` servers sharing one Redis store (`txacme:...:store=redis\://...`), with
//! Pebble as the ACME server: each on its own loopback address (127.0.0.2, .3, .4) and the
//! same port, as machines behind a load balancer would be, and Pebble's DNS sending every
//! validation to one of them. A real `redis-server` (Debian's package) runs on a free port.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Server;
use common::acme::{
    Pebble, fetch_verified_at, free_port, old_certificate, served_issuer_at, wait_for_lines,
};
use torsion_endpoints::quote;

/// A `redis-server` on a free loopback port, its data in an append-only file that every
/// write is synced to, so that a stop and a start keep everything; killed when dropped.
struct Redis {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl Redis {
    /// A Redis not started yet: its port is chosen.
    fn prepare() -> Redis {
        Redis {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn start() -> Redis {
        let mut redis = Redis::prepare();
        redis.spawn();
        redis
    }

    /// Starts it (again, on the same port and data).
    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--dir", self.dir.path().to_str().unwrap()])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (Debian's redis-server package) must be installed");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.cli(&["PING"]) != "PONG" {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it as an operator would (SIGTERM), and waits until it has exited.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }

    /// The store's URL, escaped for a descriptor.
    fn store(&self) -> String {
        quote(&self.url()).into_owned()
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Runs one command through `redis-cli`; its output, trimmed.
    fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .stderr(Stdio::null())
            .output()
            .expect("redis-cli (Debian's redis-tools) must be installed");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One server of the fleet: `torsion web` on `address`, its own certificate directory.
struct Member {
    server: Server,
    address: &'static str,
    certs: PathBuf,
}

/// Starts a member on `address` (TLS on `tls_port`, and plain HTTP on `http_port` when
/// given, for http-01), sharing `redis`, with `extra` keywords.
fn member(
    certs: &Path,
    address: &'static str,
    tls_port: u16,
    http_port: Option<u16>,
    pebble: &Pebble,
    redis: &Redis,
    extra: &str,
) -> Member {
    member_with(
        certs,
        address,
        (tls_port, http_port),
        pebble,
        redis,
        extra,
        &[],
    )
}

/// [`member`] with more options of `torsion web` (such as `--workers 2`).
fn member_with(
    certs: &Path,
    address: &'static str,
    (tls_port, http_port): (u16, Option<u16>),
    pebble: &Pebble,
    redis: &Redis,
    extra: &str,
    options: &[&str],
) -> Member {
    let listen = format!(
        "txacme:{}:{}:store={}{extra}:tcp:{tls_port}:interface={address}",
        quote(certs.to_str().unwrap()),
        pebble.keywords(),
        redis.store()
    );
    let mut args = vec![
        "--wsgi".to_owned(),
        "hello:application".to_owned(),
        "--listen".to_owned(),
        listen,
    ];
    if let Some(port) = http_port {
        args.push("--listen".into());
        args.push(format!("tcp:{port}:interface={address}"));
    }
    args.extend(options.iter().map(|o| (*o).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Member {
        server: Server::start(&args),
        address,
        certs: certs.to_owned(),
    }
}

/// Pebble, its DNS answering `address` for every name: where every validation goes. With
/// the ports it validates http-01 and tls-alpn-01 on.
fn pebble_resolving_to(address: &str) -> (Pebble, u16, u16) {
    let (http_port, tls_port) = (free_port(), free_port());
    let mut pebble = Pebble::prepare(http_port, tls_port);
    pebble.resolve_to(address);
    pebble.spawn(&[]);
    (pebble, http_port, tls_port)
}

/// How many lines of Pebble's log contain `needle`.
fn count(pebble: &Pebble, needle: &str) -> usize {
    pebble.log().matches(needle).count()
}

/// Waits up to `limit` for `check`, saying `what` if it never holds.
fn until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until every member serves `name` with a chain Pebble's root verifies.
fn all_serve(members: &[&Member], name: &str, port: u16, root: &Path) {
    for m in members {
        until(
            &format!("{} serving {name} from Pebble", m.address),
            Duration::from_secs(60),
            || fetch_verified_at(name, m.address, port, root).0,
        );
        let (_, body) = fetch_verified_at(name, m.address, port, root);
        assert_eq!(body, "Hello, world!");
    }
}

#[test]
fn three_servers_started_at_once_order_each_name_once_and_all_serve_it() {
    let (pebble, _, tls_port) = pebble_resolving_to("127.0.0.2");
    let redis = Redis::start();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let names = ":domains=a.fleet.example,b.fleet.example";
    let members: Vec<Member> = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        .iter()
        .zip(&dirs)
        .map(|(address, dir)| member(dir.path(), address, tls_port, None, &pebble, &redis, names))
        .collect();
    let root = pebble.root();
    let all: Vec<&Member> = members.iter().collect();
    for name in ["a.fleet.example", "b.fleet.example"] {
        all_serve(&all, name, tls_port, &root);
    }
    // One order per name across the fleet, and one certificate each.
    assert_eq!(count(&pebble, "Added order"), 2, "{}", pebble.log());
    assert_eq!(
        count(&pebble, "Issued certificate serial"),
        2,
        "{}",
        pebble.log()
    );
    let issued: usize = members
        .iter()
        .map(|m| m.server.logs().matches("certificate issued").count())
        .sum();
    assert_eq!(issued, 2);
    // Every server holds the same files: the certificates, copied; no answer left behind.
    let a = std::fs::read(dirs[0].path().join("a.fleet.example.pem")).unwrap();
    for m in &members {
        assert_eq!(
            std::fs::read(m.certs.join("a.fleet.example.pem")).unwrap(),
            a
        );
        let left: Vec<String> = std::fs::read_dir(&m.certs)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with("-01"))
            .collect();
        assert!(left.is_empty(), "{}: {left:?}", m.address);
    }

    // `torsion certs status` against the store lists what the fleet holds, in a directory
    // of its own that did not exist.
    let elsewhere = tempfile::tempdir().unwrap();
    let fresh = elsewhere.path().join("copy");
    let output = common::torsion()
        .args([
            "certs",
            fresh.to_str().unwrap(),
            "status",
            "--store",
            &redis.url(),
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let table = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[1].starts_with("a.fleet.example"), "{table}");
    assert!(lines[2].starts_with("b.fleet.example"), "{table}");
    assert!(lines[1].contains("Pebble Intermediate CA"), "{table}");
}

/// The server that places the order is not the one Pebble's validation reaches: that one
/// answers from what the store told it.
fn validation_reaches_a_server_that_did_not_order(http01: bool) {
    let (pebble, http_port, tls_port) = pebble_resolving_to("127.0.0.2");
    let redis = Redis::start();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let challenge = if http01 { ":challenge=http-01" } else { "" };
    let http = http01.then_some(http_port);
    // A, where validations go, manages no name of its own: it serves what the fleet holds,
    // from two worker processes, while its supervisor copies the store.
    let a = member_with(
        dirs[0].path(),
        "127.0.0.2",
        (tls_port, http),
        &pebble,
        &redis,
        challenge,
        &["--workers", "2"],
    );
    a.server.wait_for_log("joined the fleet");
    // B and C both manage the name: one of them orders it.
    let names = format!("{challenge}:domains=v.fleet.example");
    let ordering: Vec<Member> = [("127.0.0.3", &dirs[1]), ("127.0.0.4", &dirs[2])]
        .into_iter()
        .map(|(address, dir)| member(dir.path(), address, tls_port, http, &pebble, &redis, &names))
        .collect();
    until(
        "a certificate issued by B or C",
        Duration::from_secs(60),
        || {
            ordering
                .iter()
                .any(|m| m.server.logs().contains("certificate issued"))
        },
    );
    let answered = if http01 {
        "answered an http-01 validation"
    } else {
        "answered a tls-alpn-01 validation"
    };
    assert!(a.server.logs().contains(answered), "{}", a.server.logs());
    for m in &ordering {
        assert!(!m.server.logs().contains(answered), "{}", m.server.logs());
    }
    assert!(!a.server.logs().contains("certificate issued"));
    all_serve(
        &[&a, &ordering[0], &ordering[1]],
        "v.fleet.example",
        tls_port,
        &pebble.root(),
    );
    assert_eq!(count(&pebble, "Added order"), 1, "{}", pebble.log());
}

#[test]
fn a_tls_alpn_01_validation_reaches_a_server_that_did_not_order() {
    validation_reaches_a_server_that_did_not_order(false);
}

#[test]
fn an_http_01_validation_reaches_a_server_that_did_not_order() {
    validation_reaches_a_server_that_did_not_order(true);
}

/// A member that never copies answers (a server that went silent, its entry not yet
/// expired) holds every order for up to 10 s: the window in which the test acts.
fn add_silent_member(redis: &Redis) {
    assert_eq!(
        redis.cli(&["ZADD", "torsion:acme:members", "99999999999999", "silent"]),
        "1"
    );
}

/// The index of the member that logged taking the fleet's lock first.
fn lock_holder(members: &[Member]) -> usize {
    let mut holder = None;
    until("a member taking the lock", Duration::from_secs(30), || {
        holder = members
            .iter()
            .position(|m| m.server.logs().contains("issuing under the fleet's lock"));
        holder.is_some()
    });
    holder.unwrap()
}

#[test]
fn killing_the_lock_holder_mid_order_leaves_the_issuance_to_another_server() {
    // Validations go to a member that manages no name, alive throughout.
    let (pebble, _, tls_port) = pebble_resolving_to("127.0.0.4");
    let redis = Redis::start();
    let answering = tempfile::tempdir().unwrap();
    let answerer = member(
        answering.path(),
        "127.0.0.4",
        tls_port,
        None,
        &pebble,
        &redis,
        "",
    );
    answerer.server.wait_for_log("joined the fleet");
    add_silent_member(&redis);
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let extra = ":domains=k.fleet.example:lock=10";
    let mut members: Vec<Member> = ["127.0.0.2", "127.0.0.3"]
        .iter()
        .zip(&dirs)
        .map(|(address, dir)| member(dir.path(), address, tls_port, None, &pebble, &redis, extra))
        .collect();
    let holder = lock_holder(&members);
    // Killed while it waits for the silent member to copy its answer: its order is placed
    // and never finished.
    until(
        "the holder's challenge answer in the store",
        Duration::from_secs(30),
        || {
            !redis
                .cli(&["--scan", "--pattern", "torsion:acme:challenge:*"])
                .is_empty()
        },
    );
    drop(members.remove(holder));
    redis.cli(&["ZREM", "torsion:acme:members", "silent"]);
    let other = &members[0];
    wait_for_lines(
        &other.server,
        "certificate issued",
        1,
        Duration::from_secs(60),
    );
    all_serve(
        &[other, &answerer],
        "k.fleet.example",
        tls_port,
        &pebble.root(),
    );
    assert_eq!(count(&pebble, "Added order"), 2, "{}", pebble.log());
    assert_eq!(
        count(&pebble, "Issued certificate serial"),
        1,
        "{}",
        pebble.log()
    );
}

#[test]
fn redis_lost_mid_order_and_back_loses_nothing_and_the_old_certificate_serves_meanwhile() {
    let (pebble, _, tls_port) = pebble_resolving_to("127.0.0.2");
    let mut redis = Redis::start();
    add_silent_member(&redis);
    let name = "o.fleet.example";
    let old = old_certificate(name, 5);
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    for dir in &dirs {
        std::fs::write(dir.path().join(format!("{name}.pem")), &old).unwrap();
    }
    let members: Vec<Member> = ["127.0.0.2", "127.0.0.3"]
        .iter()
        .zip(&dirs)
        .map(|(address, dir)| {
            member(
                dir.path(),
                address,
                tls_port,
                None,
                &pebble,
                &redis,
                ":lock=10",
            )
        })
        .collect();
    let holder = lock_holder(&members);
    let account = redis.cli(&["GET", "torsion:acme:account"]);
    assert!(account.contains("PRIVATE KEY"), "{account}");

    redis.stop();
    wait_for_lines(
        &members[holder].server,
        "renewal failed, the current certificate stays in service",
        1,
        Duration::from_secs(30),
    );
    for m in &members {
        assert!(
            served_issuer_at(name, m.address, tls_port).contains("old test CA"),
            "{} stopped serving the old certificate",
            m.address
        );
        assert_eq!(
            std::fs::read_to_string(m.certs.join(format!("{name}.pem"))).unwrap(),
            old
        );
    }

    redis.spawn();
    // What the store held before the stop is there after it.
    assert_eq!(redis.cli(&["GET", "torsion:acme:account"]), account);
    assert!(
        redis
            .cli(&["GET", &format!("torsion:acme:cert:{name}")])
            .contains("CERTIFICATE")
    );
    redis.cli(&["ZREM", "torsion:acme:members", "silent"]);
    let all: Vec<&Member> = members.iter().collect();
    all_serve(&all, name, tls_port, &pebble.root());
    assert_eq!(
        count(&pebble, "Issued certificate serial"),
        1,
        "{}",
        pebble.log()
    );
}

#[test]
fn a_server_started_while_redis_is_down_serves_its_copy_and_issues_once_redis_is_back() {
    let (pebble, _, tls_port) = pebble_resolving_to("127.0.0.2");
    let mut redis = Redis::prepare();
    let name = "d.fleet.example";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(format!("{name}.pem")),
        old_certificate(name, 5),
    )
    .unwrap();
    let m = member(dir.path(), "127.0.0.2", tls_port, None, &pebble, &redis, "");
    m.server.wait_for_log("the fleet's store cannot be reached");
    assert!(served_issuer_at(name, m.address, tls_port).contains("old test CA"));
    redis.spawn();
    wait_for_lines(&m.server, "certificate issued", 1, Duration::from_secs(60));
    all_serve(&[&m], name, tls_port, &pebble.root());
    assert!(
        redis
            .cli(&["GET", &format!("torsion:acme:cert:{name}")])
            .contains("CERTIFICATE")
    );
}

#[test]
fn torsion_certs_issues_through_the_store_and_the_fleets_servers_answer() {
    let (pebble, _, tls_port) = pebble_resolving_to("127.0.0.2");
    let redis = Redis::start();
    let served = tempfile::tempdir().unwrap();
    let server = member(
        served.path(),
        "127.0.0.2",
        tls_port,
        None,
        &pebble,
        &redis,
        "",
    );
    server.server.wait_for_log("joined the fleet");
    // A machine that serves nothing: no --listen, the fleet's server answers.
    let own = tempfile::tempdir().unwrap();
    let ca = pebble.path("ca.pem");
    let certs = |args: &[&str]| {
        common::torsion()
            .args(["certs", own.path().to_str().unwrap()])
            .args(args)
            .args(["--store", &redis.url()])
            .args(["--directory", &pebble.directory_url()])
            .args(["--cacert", ca.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let output = certs(&["issue", "c.fleet.example"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(
        stdout.starts_with("c.fleet.example: issued by CN=Pebble Intermediate CA"),
        "{stdout}"
    );
    assert!(
        server
            .server
            .logs()
            .contains("answered a tls-alpn-01 validation")
    );
    all_serve(&[&server], "c.fleet.example", tls_port, &pebble.root());
    // Renewing finds it current, from the store.
    let output = certs(&["renew", "--domains", "c.fleet.example"]);
    assert!(output.status.success(), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stdout).starts_with("nothing to do"),
        "{output:?}"
    );
    assert_eq!(count(&pebble, "Added order"), 1, "{}", pebble.log());
}
