//! Pebble, Debian's ACME test server, with `pebble-challtestsrv` as its DNS, and the
//! helpers of the tests that run `torsion` against it (`tests/acme.rs`, `tests/fleet.rs`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Server;
use torsion_endpoints::quote;

/// A free TCP port on 127.0.0.1 (bound, then released for the process under test),
/// chosen below Linux's ephemeral range (32768 and up): a port the kernel hands out for
/// `bind(0)` may be taken meanwhile as the source port of any outgoing connection (the
/// other tests open hundreds), and Pebble would then fail to listen on it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let seed = u64::from(std::process::id())
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let mixed =
            (seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(0x2545_F491_4F6C_DD1D);
        let port = 20_000 + (mixed >> 33) as u16 % 12_000;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A Pebble and its challenge test server, killed when dropped.
pub struct Pebble {
    dir: tempfile::TempDir,
    acme_port: u16,
    management_port: u16,
    dns_port: u16,
    /// The address its DNS gives for every name: where validations go.
    address: String,
    children: Vec<Child>,
}

impl Pebble {
    /// Pebble validating http-01 on `http_port` and tls-alpn-01 on `tls_port` of
    /// 127.0.0.1, with `env` (such as `PEBBLE_WFE_NONCEREJECT`) set, running.
    pub fn start(http_port: u16, tls_port: u16, env: &[(&str, &str)]) -> Pebble {
        let mut pebble = Pebble::prepare(http_port, tls_port);
        pebble.spawn(env);
        pebble
    }

    /// Pebble's configuration, its ports chosen, not running yet. Its own HTTPS
    /// certificate is made here, by a CA in `ca.pem`.
    pub fn prepare(http_port: u16, tls_port: u16) -> Pebble {
        for binary in ["pebble", "pebble-challtestsrv"] {
            assert!(
                Command::new("sh")
                    .args(["-c", &format!("command -v {binary}")])
                    .stdout(Stdio::null())
                    .status()
                    .unwrap()
                    .success(),
                "{binary} is not installed: apt-get install pebble (.ci/run does)"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let (ca, issuer) = test_ca("torsion test CA for Pebble");
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
        let pebble = Pebble {
            dir,
            acme_port: free_port(),
            management_port: free_port(),
            dns_port: free_port(),
            address: "127.0.0.1".into(),
            children: Vec::new(),
        };
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{}", pebble.acme_port),
            "managementListenAddress": format!("127.0.0.1:{}", pebble.management_port),
            "certificate": pebble.path("cert.pem"),
            "privateKey": pebble.path("key.pem"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        std::fs::write(pebble.path("pebble.json"), config.to_string()).unwrap();
        pebble
    }

    /// Makes its DNS answer `address` (an IPv4 address) for every name, from the next
    /// [`Pebble::spawn`] on: validations then go there.
    pub fn resolve_to(&mut self, address: &str) {
        self.address = address.to_owned();
    }

    /// Starts Pebble (again, with a new root, on the same ports) and its DNS.
    pub fn spawn(&mut self, env: &[(&str, &str)]) {
        let pebble = self;
        let dns = format!("127.0.0.1:{}", pebble.dns_port);
        let dir = pebble.dir.path().to_path_buf();
        let log = move |name: &str| std::fs::File::create(dir.join(name)).unwrap();
        pebble.children.push(
            Command::new("pebble-challtestsrv")
                .args(["-defaultIPv4", &pebble.address, "-defaultIPv6", ""])
                .args([
                    "-dns01",
                    &dns,
                    "-http01",
                    "",
                    "-https01",
                    "",
                    "-tlsalpn01",
                    "",
                ])
                .args(["-management", &format!("127.0.0.1:{}", free_port())])
                .stdout(log("challtestsrv.log"))
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        pebble.children.push(
            Command::new("pebble")
                .args(["-config", pebble.path("pebble.json").to_str().unwrap()])
                .args(["-dnsserver", &dns])
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .envs(env.iter().copied())
                .stdout(log("pebble.log"))
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_for_port(pebble.acme_port, "pebble");
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.acme_port)
    }

    /// The keywords that point `txacme:` at this Pebble.
    pub fn keywords(&self) -> String {
        format!(
            "directory={}:cacert={}",
            quote(&self.directory_url()),
            quote(self.path("ca.pem").to_str().unwrap())
        )
    }

    /// Pebble's root certificate (made anew at each start), written to a file.
    pub fn root(&self) -> PathBuf {
        let output = Command::new("curl")
            .args(["-sSf", "--cacert", self.path("ca.pem").to_str().unwrap()])
            .arg(format!(
                "https://127.0.0.1:{}/roots/0",
                self.management_port
            ))
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let path = self.path("root.pem");
        std::fs::write(&path, output.stdout).unwrap();
        path
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("pebble.log")).unwrap_or_default()
    }

    pub fn stop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.children.clear();
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits up to `limit` for `count` log lines containing `needle`.
pub fn wait_for_lines(server: &Server, needle: &str, count: usize, limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    loop {
        let lines: Vec<String> = server
            .logs()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect();
        if lines.len() >= count {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "fewer than {count} log lines with {needle:?} after {limit:?}:\n{}",
            server.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// GET https://NAME:PORT/ through curl, verifying the chain against `root` only.
pub fn fetch_verified(name: &str, port: u16, root: &Path) -> (bool, String) {
    fetch_verified_at(name, "127.0.0.1", port, root)
}

/// [`fetch_verified`] from the server at `address`.
pub fn fetch_verified_at(name: &str, address: &str, port: u16, root: &Path) -> (bool, String) {
    let output = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "--cacert",
            root.to_str().unwrap(),
        ])
        .args(["--resolve", &format!("{name}:{port}:{address}")])
        .arg(format!("https://{name}:{port}/"))
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

/// The issuer of the certificate served for `name` on `port`, as openssl prints it.
pub fn served_issuer(name: &str, port: u16) -> String {
    served_issuer_at(name, "127.0.0.1", port)
}

/// [`served_issuer`] of the server at `address`.
pub fn served_issuer_at(name: &str, address: &str, port: u16) -> String {
    let output = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect {address}:{port} -servername {name} </dev/null 2>/dev/null | openssl x509 -noout -issuer"
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A throw-away CA called `common_name`: its certificate, and the issuer that signs with it.
pub fn test_ca(common_name: &str) -> (rcgen::Certificate, rcgen::Issuer<'static, rcgen::KeyPair>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    let certificate = params.self_signed(&key).unwrap();
    (certificate, rcgen::Issuer::new(params, key))
}

/// A certificate for `name` from a throw-away CA named "old test CA": 90 days long, with
/// `days_left` of them left.
pub fn old_certificate(name: &str, days_left: i64) -> String {
    let (_, issuer) = test_ca("old test CA");
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
    // With an Authority Key Identifier, the renewal order names it in "replaces" (RFC 9773)
    // where the server offers ARI; Pebble 2.4 does not, and the order goes without.
    params.use_authority_key_identifier_extension = true;
    let now = time::OffsetDateTime::now_utc();
    params.not_after = now + time::Duration::days(days_left);
    params.not_before = params.not_after - time::Duration::days(90);
    let cert = params.signed_by(&key, &issuer).unwrap();
    key.serialize_pem() + &cert.pem()
}
