//! Every server-side descriptor in Twisted's endpoint documentation and tests
//! (twisted.internet.test.test_endpoints, docs/core/howto/endpoints.rst, systemd.rst),
//! with the meaning Twisted gives it, or the error where Twisted raises one.

mod common;

/// Twisted's default backlog is 50; Torsion's is 1,024 (a deliberate difference, see
/// the crate manual).
const BACKLOG: u32 = 1024;

use common::builtin_kinds;
use std::net::IpAddr;

use torsion_endpoints::kinds::{
    SocketDomain, SocketSelector, SystemdEndpoint, TcpEndpoint, UnixEndpoint,
};
use torsion_endpoints::plugin::{Arguments, EndpointKind};
use torsion_endpoints::{Descriptor, Endpoint, Error, Registry, Result, quote};

fn tcp(text: &str) -> (u16, IpAddr, u32, bool) {
    let endpoint = Endpoint::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    let tcp = endpoint.downcast_ref::<TcpEndpoint>().unwrap();
    (tcp.port(), tcp.interface(), tcp.backlog(), tcp.is_ipv6())
}

fn unix(text: &str) -> (String, u32, u32, bool) {
    let endpoint = Endpoint::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    let unix = endpoint.downcast_ref::<UnixEndpoint>().unwrap();
    (
        unix.path().to_string_lossy().into_owned(),
        unix.mode(),
        unix.backlog(),
        unix.lockfile(),
    )
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn tcp_descriptors() {
    assert_eq!(tcp("tcp:80"), (80, ip("0.0.0.0"), BACKLOG, false));
    assert_eq!(
        tcp("tcp:80:interface=127.0.0.1"),
        (80, ip("127.0.0.1"), BACKLOG, false)
    );
    assert_eq!(tcp("tcp:80:backlog=6"), (80, ip("0.0.0.0"), 6, false));
    assert_eq!(
        tcp("tcp:port=80:interface=192.168.1.1"),
        (80, ip("192.168.1.1"), BACKLOG, false)
    );
    assert_eq!(
        tcp("tcp:1234:backlog=12:interface=10.0.0.1"),
        (1234, ip("10.0.0.1"), 12, false)
    );
    assert_eq!(tcp("tcp:8080"), (8080, ip("0.0.0.0"), BACKLOG, false));
    assert_eq!(tcp("tcp:80:127.0.0.1:10"), (80, ip("127.0.0.1"), 10, false));
    // An empty piece is an empty interface: every address, as in Twisted.
    assert_eq!(tcp("tcp:80:"), (80, ip("0.0.0.0"), BACKLOG, false));
}

#[test]
fn tcp6_descriptors() {
    assert_eq!(
        tcp(r"tcp6:8080:backlog=12:interface=\:\:1"),
        (8080, ip("::1"), 12, true)
    );
    assert_eq!(
        tcp(r"tcp6:port=80:interface=2001\:0DB8\:f00e\:eb00\:\:1"),
        (80, ip("2001:db8:f00e:eb00::1"), BACKLOG, true)
    );
    assert_eq!(tcp(r"tcp6:80:10:\:\:1"), (80, ip("::1"), 10, true));
    // tcp6 is a plugin in Twisted, so its prefix was always case-insensitive.
    assert_eq!(tcp("TCP6:80"), (80, ip("::"), BACKLOG, true));
}

#[test]
fn unix_descriptors() {
    let s = |p: &str| p.to_owned();
    assert_eq!(
        unix("unix:/var/run/finger"),
        (s("/var/run/finger"), 0o666, BACKLOG, true)
    );
    assert_eq!(
        unix("unix:/var/run/finger:mode=0660"),
        (s("/var/run/finger"), 0o660, BACKLOG, true)
    );
    assert_eq!(
        unix("unix:/var/run/finger:mode=660"),
        (s("/var/run/finger"), 0o660, BACKLOG, true)
    );
    assert_eq!(
        unix("unix:/var/run/finger:lockfile=0"),
        (s("/var/run/finger"), 0o666, BACKLOG, false)
    );
    assert_eq!(
        unix(r"unix:foo\:bar\=baz\:qux\\"),
        (s(r"foo:bar=baz:qux\"), 0o666, BACKLOG, true)
    );
    assert_eq!(
        unix("unix:address=foo=bar"),
        (s("foo=bar"), 0o666, BACKLOG, true)
    );
    assert_eq!(
        unix("unix:/var/foo/bar:backlog=7:mode=0123:lockfile=1"),
        (s("/var/foo/bar"), 0o123, 7, true)
    );
    assert_eq!(
        unix("unix:address=/var/run/web.sock:lockfile=1"),
        (s("/var/run/web.sock"), 0o666, BACKLOG, true)
    );
    assert_eq!(unix("unix:/s:600:10:0"), (s("/s"), 0o600, 10, false));
    assert!(Endpoint::parse("unix:/s:mode=999").is_err());
}

#[test]
fn systemd_descriptors() {
    let systemd = |text: &str| {
        Endpoint::parse(text)
            .unwrap()
            .downcast_ref::<SystemdEndpoint>()
            .unwrap()
            .clone()
    };
    for (domain, expected) in [
        ("INET", SocketDomain::Inet),
        ("INET6", SocketDomain::Inet6),
        ("UNIX", SocketDomain::Unix),
    ] {
        assert_eq!(
            systemd(&format!("systemd:domain={domain}:index=3")),
            SystemdEndpoint::new(expected, SocketSelector::Index(3))
        );
        assert_eq!(
            systemd(&format!("systemd:domain={domain}:name=foo")),
            SystemdEndpoint::new(expected, SocketSelector::Name("foo".into()))
        );
    }
    assert_eq!(
        systemd("systemd:domain=INET6:name=my-web-server").selector(),
        &SocketSelector::Name("my-web-server".into())
    );
    assert_eq!(
        systemd("systemd:domain=INET:name=my-web-port").domain(),
        SocketDomain::Inet
    );
    assert_eq!(
        systemd("systemd:INET:0").selector(),
        &SocketSelector::Index(0)
    );
    // Twisted: "Specify exactly one of descriptor index or name".
    assert!(Endpoint::parse("systemd:domain=INET").is_err());
    assert!(Endpoint::parse("systemd:domain=INET:index=0:name=foo").is_err());
}

#[test]
fn unknown_types_are_errors_naming_the_type() {
    for (text, kind) in [
        ("bogus-type:nothing", "bogus-type"),
        ("ftl:andromeda/carcosa/hali/2387", "ftl"),
    ] {
        match Endpoint::parse(text).unwrap_err() {
            Error::UnknownKind {
                kind: found, known, ..
            } => {
                assert_eq!(found, kind);
                assert_eq!(known, builtin_kinds(&[]));
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    // Twisted raises IndexError when there is no type at all.
    assert!(matches!(
        Endpoint::parse("port=80").unwrap_err(),
        Error::Syntax { .. }
    ));
}

#[test]
fn the_tokenizer_examples() {
    let d = |text: &str| Descriptor::parse(text).unwrap();
    let check = |text: &str, args: &[&str], kwargs: &[(&str, &str)]| {
        let parsed = d(text);
        let mut all = vec![parsed.kind().to_owned()];
        all.extend(parsed.args().iter().cloned());
        assert_eq!(all, args, "{text}");
        let expected: Vec<(String, String)> = kwargs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(parsed.kwargs(), expected.as_slice(), "{text}");
    };
    check("tcp:80", &["tcp", "80"], &[]);
    check("a:b:d=1:c", &["a", "b", "c"], &[("d", "1")]);
    check(
        r"unix:foo\:bar\=baz\:qux\\",
        &["unix", r"foo:bar=baz:qux\"],
        &[],
    );
    check("unix:address=foo=bar", &["unix"], &[("address", "foo=bar")]);
    check("a:b=c=d:e", &["a", "e"], &[("b", "c=d")]);
    check("x:a==b", &["x"], &[("a", "=b")]);
    check(r"x:k\=v=w", &["x"], &[("k=v", "w")]);
    check("tcp::80", &["tcp", "", "80"], &[]);
    check("tcp:80:", &["tcp", "80", ""], &[]);
    check("stdio:", &["stdio", ""], &[]);
    check("a:=b", &["a"], &[("", "b")]);
    check("a:b=:c", &["a", "c"], &[("b", "")]);
    check("x:a=b:a=c", &["x"], &[("a", "c")]);
    check(r"x\y", &["xy"], &[]);
    check(r"x:\\:y", &["x", r"\", "y"], &[]);
    check(
        r"hello:greet\=ing=world",
        &["hello"],
        &[("greet=ing", "world")],
    );
    check(
        r"tls:awesome.site.example.com:443:endpoint=tcp\:7.6.5.4\:443",
        &["tls", "awesome.site.example.com", "443"],
        &[("endpoint", "tcp:7.6.5.4:443")],
    );
    check(r"x:hello\:colon\:world", &["x", "hello:colon:world"], &[]);
    // Twisted raises RuntimeError on a trailing backslash; here it is a syntax error.
    assert!(matches!(
        Descriptor::parse(r"tcp:80\").unwrap_err(),
        Error::Syntax { column: 7, .. }
    ));
    // Twisted rejects tcp:80:port=81 with TypeError (multiple values).
    assert!(matches!(
        Endpoint::parse("tcp:80:port=81").unwrap_err(),
        Error::DuplicateArgument { .. }
    ));
}

#[test]
fn quoting_as_twisted_quote_string_argument_and_more() {
    // quoteStringArgument("some : stuff \\") == "some \\: stuff \\\\"; we also escape '='.
    assert_eq!(quote(r"some : stuff \"), r"some \: stuff \\");
    assert_eq!(quote("a=b"), r"a\=b");
    let path = r"C:/key.pem";
    assert_eq!(
        Descriptor::parse(&format!("ssl:443:privateKey={}", quote(path)))
            .unwrap()
            .kwarg("privateKey"),
        Some(path)
    );
}

/// Twisted's test plugin `fake:` receives the positional and keyword arguments as given.
struct Fake;

impl EndpointKind for Fake {
    fn prefix(&self) -> &str {
        "fake"
    }

    fn usage(&self) -> &str {
        "fake:..."
    }

    fn parse(&self, mut args: Arguments, registry: &Registry) -> Result<Endpoint> {
        let hello = args.next_positional();
        let world = args.next_positional();
        let yes = args.take_kwarg("yes");
        let up = args.take_kwarg("up");
        assert_eq!(
            (hello.as_deref(), world.as_deref()),
            (Some("hello"), Some("world"))
        );
        assert_eq!((yes.as_deref(), up.as_deref()), (Some("no"), Some("down")));
        registry.parse("tcp:0")
    }
}

#[test]
fn a_plugin_receives_its_arguments() {
    let mut registry = Registry::default();
    registry.register(Fake);
    registry.parse("fake:hello:world:yes=no:up=down").unwrap();
}
