//! `tcp:` and `tcp6:` endpoints (Twisted's `TCP4ServerEndpoint` and `TCP6ServerEndpoint`).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::task::{Context, Poll};

use socket2::{Domain, Protocol, Socket, Type};

use crate::activation::{SocketDomain, inherited_socket_error, take_inherited};
use crate::descriptor::Descriptor;
use crate::error::{Error, Result};
use crate::listener::{Accept, Address, Connection, ConnectionInfo, Listener};
use crate::registry::{Arguments, BoxFuture, Endpoint, EndpointKind, Registry, ServerEndpoint};

/// Twisted's default listen backlog for every kind.
/// The listen(2) backlog when `backlog=` is not given: 1,024, where Twisted uses 50. With
/// 50, a burst of new connections overflows the accept queue and the kernel drops SYNs,
/// which clients retry only after a second (granian uses 1,024, gunicorn 2,048, nginx 511).
/// Linux caps it at `net.core.somaxconn`.
pub(crate) const DEFAULT_BACKLOG: u32 = 1024;

pub(crate) const PORT_EXPECTED: &str = "a port number from 0 to 65535 (0 picks a free port)";
pub(crate) const BACKLOG_EXPECTED: &str =
    "a whole number of pending connections from 0 to 2147483647";

pub(crate) fn parse_port(text: &str) -> Option<u16> {
    parse_decimal(text).and_then(|n| u16::try_from(n).ok())
}

pub(crate) fn parse_backlog(text: &str) -> Option<u32> {
    parse_decimal(text)
        .filter(|n| *n <= i32::MAX as u64)
        .map(|n| n as u32)
}

/// Plain decimal digits, as Python's `int()` reads them (surrounding blanks allowed).
pub(crate) fn parse_decimal(text: &str) -> Option<u64> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A TCP endpoint: `tcp:port[:interface][:backlog]` or `tcp6:port[:backlog][:interface]`.
///
/// Follows Twisted's `TCP4ServerEndpoint` and `TCP6ServerEndpoint`: same positional order
/// (note that `tcp6` puts the backlog before the interface), keywords `port`, `interface`,
/// `backlog`, defaults all addresses and a backlog of 1,024 (Twisted: 50). The interface is an IP address
/// literal (`tcp:` takes IPv4 or IPv6, `tcp6:` only IPv6); host names are refused instead
/// of being resolved at bind time. Port 0 binds a port the system picks; ask the
/// [`Listener`] for it. Listening sockets get `SO_REUSEADDR` as in Twisted; accepted
/// connections get `TCP_NODELAY`, which an HTTP server wants. A `tcp6:` listener on `::`
/// also takes IPv4 connections where the system allows it (Linux's default), as Twisted's
/// does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpEndpoint {
    port: u16,
    interface: IpAddr,
    backlog: u32,
    ipv6: bool,
}

impl TcpEndpoint {
    /// `tcp:port`: all IPv4 interfaces, backlog 1,024.
    pub fn new(port: u16) -> TcpEndpoint {
        TcpEndpoint {
            port,
            interface: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            backlog: DEFAULT_BACKLOG,
            ipv6: false,
        }
    }

    /// `tcp6:port`: all IPv6 interfaces, backlog 1,024.
    pub fn new_v6(port: u16) -> TcpEndpoint {
        TcpEndpoint {
            interface: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            ipv6: true,
            ..TcpEndpoint::new(port)
        }
    }

    /// Sets the interface address (builder style). For a `tcp6:` endpoint an IPv4 address
    /// is stored as its IPv4-mapped IPv6 form.
    pub fn with_interface(mut self, interface: IpAddr) -> TcpEndpoint {
        self.interface = match (self.ipv6, interface) {
            (true, IpAddr::V4(v4)) => IpAddr::V6(v4.to_ipv6_mapped()),
            _ => interface,
        };
        self
    }

    /// Sets the listen backlog, in pending connections (builder style).
    pub fn with_backlog(mut self, backlog: u32) -> TcpEndpoint {
        self.backlog = backlog.min(i32::MAX as u32);
        self
    }

    /// The port; 0 means one the system picks.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The interface address to bind.
    pub fn interface(&self) -> IpAddr {
        self.interface
    }

    /// The listen backlog, in pending connections.
    pub fn backlog(&self) -> u32 {
        self.backlog
    }

    /// Whether this is a `tcp6:` endpoint.
    pub fn is_ipv6(&self) -> bool {
        self.ipv6
    }

    fn default_interface(&self) -> IpAddr {
        if self.ipv6 {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        }
    }
}

impl ServerEndpoint for TcpEndpoint {
    fn descriptor(&self) -> Descriptor {
        let mut d =
            Descriptor::new(if self.ipv6 { "tcp6" } else { "tcp" }).with_arg(self.port.to_string());
        if self.interface != self.default_interface() {
            d = d.with_kwarg("interface", self.interface.to_string());
        }
        if self.backlog != DEFAULT_BACKLOG {
            d = d.with_kwarg("backlog", self.backlog.to_string());
        }
        d
    }

    fn sockets(&self) -> Vec<Endpoint> {
        vec![Endpoint::new(self.clone())]
    }

    fn listen(&self) -> BoxFuture<'_, Result<Listener>> {
        Box::pin(async move {
            let endpoint = self.descriptor().to_string();
            let domain = if self.ipv6 {
                SocketDomain::Inet6
            } else {
                SocketDomain::Inet
            };
            // A worker's socket, opened by its supervisor.
            match take_inherited(&endpoint, domain) {
                Ok(Some(fd)) => return adopt(endpoint, fd),
                Ok(None) => {}
                Err(reason) => return Err(Error::Systemd { endpoint, reason }),
            }
            let addr = SocketAddr::new(self.interface, self.port);
            let listener = bind_tcp(addr, self.backlog)
                .map_err(|(action, source)| listen_error(&endpoint, action, addr, source))?;
            let listener = tokio::net::TcpListener::from_std(listener).map_err(|source| {
                listen_error(&endpoint, "register with the runtime", addr, source)
            })?;
            TcpAccept::listener(endpoint, listener)
        })
    }
}

/// A listener over an inherited listening TCP socket (from systemd or a supervisor).
///
/// # Errors
/// [`Error::Listen`] when the socket cannot be made non-blocking or registered with the
/// runtime.
pub(crate) fn adopt(endpoint: String, fd: std::os::fd::OwnedFd) -> Result<Listener> {
    let io_error = |action: &str, source| inherited_socket_error(&endpoint, action, source);
    let listener = std::net::TcpListener::from(fd);
    listener
        .set_nonblocking(true)
        .map_err(|e| io_error("set non-blocking", e))?;
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|e| io_error("register with the runtime", e))?;
    TcpAccept::listener(endpoint, listener)
}

fn bind_tcp(
    addr: SocketAddr,
    backlog: u32,
) -> Result<std::net::TcpListener, (&'static str, io::Error)> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(|e| ("create socket", e))?;
    socket
        .set_reuse_address(true)
        .map_err(|e| ("set SO_REUSEADDR", e))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| ("set non-blocking", e))?;
    socket.bind(&addr.into()).map_err(|e| ("bind", e))?;
    socket.listen(backlog as i32).map_err(|e| ("listen", e))?;
    Ok(socket.into())
}

fn listen_error(endpoint: &str, action: &str, addr: SocketAddr, source: io::Error) -> Error {
    let hint = match source.kind() {
        io::ErrorKind::AddrInUse => {
            let mut hint = String::from("; another socket is bound to this address and port");
            if addr.is_ipv6() {
                hint.push_str(" (a tcp6 listener on :: also takes the IPv4 port on Linux)");
            }
            hint
        }
        io::ErrorKind::PermissionDenied if addr.port() < 1024 => {
            "; ports below 1024 need root or the CAP_NET_BIND_SERVICE capability".to_owned()
        }
        io::ErrorKind::AddrNotAvailable => {
            "; no network interface of this machine has that address".to_owned()
        }
        _ => String::new(),
    };
    Error::Listen {
        endpoint: endpoint.to_owned(),
        action: format!("{action} {addr}"),
        hint,
        source,
    }
}

/// Accepts TCP connections; shared by `tcp:`, `tcp6:` and `systemd:` INET sockets.
pub(crate) struct TcpAccept {
    listener: tokio::net::TcpListener,
    local: Address,
}

impl TcpAccept {
    pub(crate) fn listener(
        endpoint: String,
        listener: tokio::net::TcpListener,
    ) -> Result<Listener> {
        let local = listener
            .local_addr()
            .map(Address::Tcp)
            .map_err(|source| Error::Listen {
                endpoint: endpoint.clone(),
                action: "read the bound address".to_owned(),
                hint: String::new(),
                source,
            })?;
        Ok(Listener::new(
            endpoint,
            local.clone(),
            TcpAccept { listener, local },
        ))
    }
}

impl Accept for TcpAccept {
    fn socket(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        Some(std::os::fd::AsFd::as_fd(&self.listener))
    }

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Connection>> {
        let (stream, peer) = std::task::ready!(self.listener.poll_accept(cx))?;
        // Small responses must not wait for Nagle's algorithm; failure here only costs
        // latency, so it is not worth refusing the connection.
        let _ = stream.set_nodelay(true);
        // The address the client reached: the listener's own, unless it listens on a
        // wildcard (then the kernel says which; a dual-stack listener reports IPv4 ones as
        // ::ffff:a.b.c.d). A system call saved per connection where the address is known.
        let local = match &self.local {
            Address::Tcp(bound) if !bound.ip().is_unspecified() => self.local.clone(),
            _ => stream
                .local_addr()
                .map(Address::Tcp)
                .unwrap_or_else(|_| self.local.clone()),
        };
        let peer = Address::Tcp(peer);
        Poll::Ready(Ok(Connection::tcp(
            stream,
            ConnectionInfo::new(local, peer),
        )))
    }
}

/// The TCP part of a kind that runs on TCP (`ssl:`, `tls:`): `port` (required, or
/// `default_port`), `backlog` and `interface` (any IP address) from `bound`.
#[cfg(feature = "tls")]
pub(crate) fn tcp_from_bound(
    bound: &crate::registry::Bound,
    default_port: Option<u16>,
    default_interface: IpAddr,
) -> Result<TcpEndpoint> {
    let port = match default_port {
        Some(default) => bound.parse_or("port", default, PORT_EXPECTED, parse_port)?,
        None => bound.parse_required("port", PORT_EXPECTED, parse_port)?,
    };
    let backlog = bound.parse_or("backlog", DEFAULT_BACKLOG, BACKLOG_EXPECTED, parse_backlog)?;
    let mut tcp = TcpEndpoint::new(port).with_backlog(backlog);
    match bound.get("interface").map(str::trim) {
        None | Some("") => tcp = tcp.with_interface(default_interface),
        Some(text) => {
            let interface = text.parse::<IpAddr>().map_err(|_| {
                bound.invalid(
                    "interface",
                    text,
                    r"an IP address of this machine, such as 127.0.0.1 (escape IPv6 colons: \:\:1)",
                )
            })?;
            tcp = tcp.with_interface(interface);
        }
    }
    Ok(tcp)
}

/// The `tcp:` kind: `tcp:port[:interface][:backlog]`.
pub(crate) struct TcpKind;

impl EndpointKind for TcpKind {
    fn prefix(&self) -> &str {
        "tcp"
    }

    fn usage(&self) -> &str {
        "tcp:port[:interface=ADDRESS][:backlog=1024]"
    }

    fn parse(&self, args: Arguments, _: &Registry) -> Result<Endpoint> {
        parse_tcp(args, &["port", "interface", "backlog"], false)
    }
}

/// The `tcp6:` kind: `tcp6:port[:backlog][:interface]` (Twisted's order).
pub(crate) struct Tcp6Kind;

impl EndpointKind for Tcp6Kind {
    fn prefix(&self) -> &str {
        "tcp6"
    }

    fn usage(&self) -> &str {
        r"tcp6:port[:backlog=1024][:interface=IPV6ADDRESS] (escape colons: interface=\:\:1)"
    }

    fn parse(&self, args: Arguments, _: &Registry) -> Result<Endpoint> {
        parse_tcp(args, &["port", "backlog", "interface"], true)
    }
}

fn parse_tcp(args: Arguments, params: &[&str], ipv6: bool) -> Result<Endpoint> {
    let bound = args.bind(params)?;
    let port = bound.parse_required("port", PORT_EXPECTED, parse_port)?;
    let backlog = bound.parse_or("backlog", DEFAULT_BACKLOG, BACKLOG_EXPECTED, parse_backlog)?;
    let mut endpoint = if ipv6 {
        TcpEndpoint::new_v6(port)
    } else {
        TcpEndpoint::new(port)
    };
    // Twisted's default interface is the empty string: every address.
    match bound.get("interface").map(str::trim) {
        None | Some("") => {}
        Some(text) => {
            let interface = if ipv6 {
                text.parse::<Ipv6Addr>().ok().map(IpAddr::V6).ok_or_else(|| {
                    bound.invalid(
                        "interface",
                        text,
                        r"an IPv6 address with its colons escaped, such as interface=\:\:1 (use tcp: for IPv4)",
                    )
                })?
            } else {
                text.parse::<IpAddr>().map_err(|_| {
                    bound.invalid(
                        "interface",
                        text,
                        "an IP address of this machine, such as 127.0.0.1 or 0.0.0.0 (host names are not resolved)",
                    )
                })?
            };
            endpoint = endpoint.with_interface(interface);
        }
    }
    Ok(Endpoint::new(endpoint.with_backlog(backlog)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(text: &str) -> TcpEndpoint {
        Endpoint::parse(text)
            .unwrap()
            .downcast_ref::<TcpEndpoint>()
            .unwrap()
            .clone()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn twisted_tcp_examples() {
        let e = tcp("tcp:80:interface=127.0.0.1");
        assert_eq!(
            (e.port(), e.interface(), e.backlog()),
            (80, ip("127.0.0.1"), 1024)
        );
        let e = tcp("tcp:port=80:interface=192.168.1.1");
        assert_eq!((e.port(), e.interface()), (80, ip("192.168.1.1")));
        let e = tcp("tcp:1234:backlog=12:interface=10.0.0.1");
        assert_eq!(
            (e.port(), e.interface(), e.backlog()),
            (1234, ip("10.0.0.1"), 12)
        );
        let e = tcp("tcp:80");
        assert_eq!(
            (e.port(), e.interface(), e.is_ipv6()),
            (80, ip("0.0.0.0"), false)
        );
        // Positional order: port, interface, backlog.
        let e = tcp("tcp:8080:127.0.0.1:7");
        assert_eq!((e.interface(), e.backlog()), (ip("127.0.0.1"), 7));
        // Empty interface means every address, as in Twisted.
        assert_eq!(tcp("tcp:80:interface=").interface(), ip("0.0.0.0"));
        // Twisted's tcp: takes an IPv6 literal interface too.
        assert_eq!(tcp(r"tcp:80:interface=\:\:1").interface(), ip("::1"));
    }

    #[test]
    fn twisted_tcp6_examples() {
        let e = tcp(r"tcp6:8080:backlog=12:interface=\:\:1");
        assert_eq!(
            (e.port(), e.interface(), e.backlog(), e.is_ipv6()),
            (8080, ip("::1"), 12, true)
        );
        let e = tcp(r"tcp6:8080:interface=\:\:1");
        assert_eq!((e.interface(), e.backlog()), (ip("::1"), 1024));
        assert_eq!(tcp("tcp6:80").interface(), ip("::"));
        // Positional order differs from tcp: port, backlog, interface.
        let e = tcp(r"tcp6:443:20:\:\:1");
        assert_eq!((e.backlog(), e.interface()), (20, ip("::1")));
    }

    #[test]
    fn canonical_form_omits_defaults_and_reads_back() {
        for (text, canonical) in [
            ("TCP:port=80", "tcp:80"),
            ("tcp:80:interface=0.0.0.0:backlog=1024", "tcp:80"),
            ("tcp:80:backlog=50", "tcp:80:backlog=50"),
            (
                "tcp:1234:backlog=12:interface=10.0.0.1",
                "tcp:1234:interface=10.0.0.1:backlog=12",
            ),
            (
                r"tcp6:8080:backlog=12:interface=\:\:1",
                r"tcp6:8080:interface=\:\:1:backlog=12",
            ),
            (r"tcp6:0:interface=\:\:", "tcp6:0"),
        ] {
            let endpoint = Endpoint::parse(text).unwrap();
            assert_eq!(endpoint.to_string(), canonical, "{text}");
            assert_eq!(Endpoint::parse(canonical).unwrap(), endpoint);
        }
    }

    #[test]
    fn bad_ports_quote_the_value_and_give_the_range() {
        for bad in ["65536", "-1", "http", "", "8o"] {
            let err = Endpoint::parse(&format!("tcp:{bad}")).unwrap_err();
            let message = err.to_string();
            assert!(matches!(err, Error::InvalidValue { .. }), "{bad}: {err:?}");
            assert!(message.contains(&format!("port {bad:?}")), "{message}");
            assert!(message.contains("0 to 65535"), "{message}");
        }
    }

    #[test]
    fn missing_and_extra_arguments_are_named() {
        let err = Endpoint::parse("tcp").unwrap_err();
        assert!(matches!(err, Error::MissingArgument { ref argument, .. } if argument == "port"));
        assert!(err.to_string().contains("usage: tcp:port"), "{err}");
        let err = Endpoint::parse("tcp:interface=127.0.0.1").unwrap_err();
        assert!(matches!(err, Error::MissingArgument { ref argument, .. } if argument == "port"));
        let err = Endpoint::parse("tcp:80:127.0.0.1:50:extra").unwrap_err();
        assert!(
            err.to_string()
                .contains("unexpected positional argument \"extra\" (argument 4)"),
            "{err}"
        );
        let err = Endpoint::parse("tcp:80:port=81").unwrap_err();
        assert!(
            matches!(err, Error::DuplicateArgument { ref argument, .. } if argument == "port"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_keyword_lists_the_valid_ones() {
        let err = Endpoint::parse("tcp:80:interfce=127.0.0.1").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid endpoint descriptor \"tcp:80:interfce=127.0.0.1\": tcp: endpoints take no keyword \"interfce\"; valid keywords: port, interface, backlog"
        );
    }

    #[test]
    fn bad_interfaces_and_backlogs_say_what_is_accepted() {
        let err = Endpoint::parse("tcp:80:interface=localhost").unwrap_err();
        assert!(
            err.to_string()
                .contains("interface \"localhost\" is not valid; expected an IP address"),
            "{err}"
        );
        let err = Endpoint::parse("tcp6:80:interface=127.0.0.1").unwrap_err();
        assert!(
            err.to_string().contains("expected an IPv6 address"),
            "{err}"
        );
        // Unescaped colons split the address into pieces; the usage line says to escape them.
        let err = Endpoint::parse("tcp6:80:interface=::1").unwrap_err();
        assert!(
            err.to_string().contains(r"escape colons: interface=\:\:1"),
            "{err}"
        );
        let err = Endpoint::parse("tcp:80:backlog=many").unwrap_err();
        assert!(
            err.to_string().contains("backlog \"many\" is not valid"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn port_zero_binds_a_port_the_system_picks() {
        let listener = Endpoint::parse("tcp:0:interface=127.0.0.1")
            .unwrap()
            .listen()
            .await
            .unwrap();
        let addr = listener.local_addr().as_tcp().unwrap();
        assert_eq!(addr.ip(), ip("127.0.0.1"));
        assert_ne!(addr.port(), 0);
    }

    #[tokio::test]
    async fn a_taken_port_is_a_listen_error_naming_the_endpoint() {
        let first = Endpoint::parse("tcp:0:interface=127.0.0.1")
            .unwrap()
            .listen()
            .await
            .unwrap();
        let port = first.local_addr().as_tcp().unwrap().port();
        // SO_REUSEADDR does not allow two listeners on one port.
        let text = format!("tcp:{port}:interface=127.0.0.1");
        let err = Endpoint::parse(&text).unwrap().listen().await.unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("cannot listen on {text}: bind 127.0.0.1:{port}")),
            "{message}"
        );
        assert!(message.contains("another socket is bound"), "{message}");
    }
}
