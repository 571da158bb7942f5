//! `haproxy:<inner descriptor>`: the PROXY protocol (HAProxy's, versions 1 and 2) in front
//! of any endpoint, as Twisted's `haproxy:` endpoint reads it, so that a connection's
//! peer is the client a load balancer speaks for, not the load balancer.
//!
//! Every connection must open with a header: v1, one line of text
//! (`PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n`), or v2, a binary block behind a
//! 12-byte signature. A connection without a valid header, or whose header takes longer
//! than 10 s, is closed: behind a proxy that sends headers, anything else is an attacker
//! or a misconfiguration, and a guess would hand the application a wrong address.
//! `PROXY UNKNOWN` (v1) and the `LOCAL` command (v2, the balancer's own health checks)
//! keep the connection's own addresses. Headers are read concurrently, at most 1,024 at a
//! time, so a slow one holds up no other connection.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::task::JoinSet;

use crate::descriptor::Descriptor;
use crate::error::Result;
use crate::listener::{Accept, Address, Connection, Listener};
use crate::registry::{Arguments, BoxFuture, Endpoint, EndpointKind, Registry, ServerEndpoint};

/// How long a connection may take to send its header.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Headers being read at most; beyond, new connections wait in the kernel's queue.
const MAX_PENDING: usize = 1024;
/// The longest header accepted: v1's 107 bytes, and v2 with its addresses and a few TLVs.
const MAX_HEADER: usize = 1024;
/// The v2 signature (the PROXY protocol specification, section 2.2).
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The PROXY protocol over another endpoint: `haproxy:tcp:8080`, `haproxy:unix:/run/lb.sock`.
#[derive(Clone, Debug)]
pub struct HaproxyEndpoint {
    inner: Endpoint,
}

impl HaproxyEndpoint {
    /// The PROXY protocol on `inner`'s connections.
    pub fn new(inner: Endpoint) -> HaproxyEndpoint {
        HaproxyEndpoint { inner }
    }

    /// The endpoint the headers arrive on.
    pub fn inner(&self) -> &Endpoint {
        &self.inner
    }
}

impl PartialEq for HaproxyEndpoint {
    fn eq(&self, other: &HaproxyEndpoint) -> bool {
        self.inner == other.inner
    }
}

impl ServerEndpoint for HaproxyEndpoint {
    fn descriptor(&self) -> Descriptor {
        Descriptor::new("haproxy").with_inner(&self.inner.descriptor())
    }

    fn sockets(&self) -> Vec<Endpoint> {
        self.inner.sockets()
    }

    fn background(&self) -> Result<Vec<BoxFuture<'static, ()>>> {
        self.inner.background()
    }

    fn listen(&self) -> BoxFuture<'_, Result<Listener>> {
        Box::pin(async move {
            let inner = self.inner.listen().await?;
            let local = inner.local_addr().clone();
            Ok(Listener::new(
                self.descriptor().to_string(),
                local,
                HaproxyAccept {
                    inner,
                    pending: JoinSet::new(),
                },
            ))
        })
    }
}

/// The `haproxy:` kind.
pub(crate) struct HaproxyKind;

impl EndpointKind for HaproxyKind {
    fn prefix(&self) -> &str {
        "haproxy"
    }

    fn usage(&self) -> &str {
        "haproxy:<endpoint descriptor>, such as haproxy:tcp:8080"
    }

    fn parse(&self, args: Arguments, registry: &Registry) -> Result<Endpoint> {
        let inner = args.into_inner_endpoint("endpoint descriptor", registry)?;
        Ok(Endpoint::new(HaproxyEndpoint::new(inner)))
    }
}

/// Accepts from the inner listener and reads each connection's header concurrently.
struct HaproxyAccept {
    inner: Listener,
    pending: JoinSet<Option<Connection>>,
}

impl Accept for HaproxyAccept {
    fn offer_alpn(&mut self, protocols: &[&[u8]]) {
        self.inner.offer_alpn(protocols);
    }

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Connection>> {
        let mut failed = None;
        while self.pending.len() < MAX_PENDING {
            match self.inner.poll_accept(cx) {
                Poll::Ready(Ok(connection)) => {
                    self.pending.spawn(read_header(connection));
                }
                Poll::Ready(Err(err)) => {
                    failed = Some(err);
                    break;
                }
                Poll::Pending => break,
            }
        }
        loop {
            match self.pending.poll_join_next(cx) {
                Poll::Ready(Some(Ok(Some(connection)))) => return Poll::Ready(Ok(connection)),
                Poll::Ready(Some(_)) => continue,
                Poll::Ready(None) | Poll::Pending => {
                    return failed.map_or(Poll::Pending, |err| Poll::Ready(Err(err)));
                }
            }
        }
    }
}

/// Reads `connection`'s header and returns the connection with the addresses it gives;
/// `None` (the connection dropped, so closed) for a bad or late header.
async fn read_header(mut connection: Connection) -> Option<Connection> {
    let peer = connection.info().peer.clone();
    let mut buffer = Vec::with_capacity(256);
    let read = tokio::time::timeout(HEADER_TIMEOUT, async {
        loop {
            match parse(&buffer) {
                Ok(Parsed::Complete(header, used)) => return Ok((header, used)),
                Ok(Parsed::Incomplete) => {}
                Err(err) => return Err(err),
            }
            if buffer.len() >= MAX_HEADER {
                return Err("the header is longer than 1024 bytes".to_owned());
            }
            let mut chunk = [0u8; 512];
            let wanted = (MAX_HEADER - buffer.len()).min(chunk.len());
            match connection.read(&mut chunk[..wanted]).await {
                Ok(0) => return Err("the connection closed before a whole header".to_owned()),
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                Err(err) => return Err(err.to_string()),
            }
        }
    })
    .await;
    let (header, used) = match read {
        Ok(Ok(parsed)) => parsed,
        Ok(Err(reason)) => {
            tracing::debug!(%peer, "closing a connection without a valid PROXY header: {reason}");
            return None;
        }
        Err(_) => {
            tracing::debug!(%peer, "closing a connection whose PROXY header took longer than {HEADER_TIMEOUT:?}");
            return None;
        }
    };
    let mut info = connection.info().clone();
    if let Header::Proxied {
        source,
        destination,
    } = header
    {
        info.peer = Address::Tcp(source);
        info.local = Address::Tcp(destination);
    }
    let rest = buffer.split_off(used);
    Some(Connection::other(
        Prefixed {
            prefix: rest.into(),
            inner: connection,
        },
        info,
    ))
}

/// The connection's stream, after the bytes read past the header.
struct Prefixed {
    prefix: VecDeque<u8>,
    inner: Connection,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let taken: Vec<u8> = self.prefix.drain(..n).collect();
            buf.put_slice(&taken);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What a header says.
#[derive(Debug, PartialEq, Eq)]
pub enum Header {
    /// A proxied TCP connection from `source` to `destination`.
    Proxied {
        /// The client's address.
        source: SocketAddr,
        /// The address the client connected to.
        destination: SocketAddr,
    },
    /// The connection's own addresses stand: v1 `UNKNOWN`, v2 `LOCAL`, or a v2 family
    /// other than TCP over IPv4 or IPv6.
    Local,
}

/// The result of [`parse`] on the bytes received so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A whole header, and how many bytes it took.
    Complete(Header, usize),
    /// Not enough bytes yet to tell.
    Incomplete,
}

/// Parses a PROXY protocol header (v1 or v2) at the start of `bytes`.
///
/// # Errors
/// A message saying what is wrong: not a PROXY header, a malformed v1 line, an
/// unsupported v2 version or command, addresses too short for their family.
pub fn parse(bytes: &[u8]) -> std::result::Result<Parsed, String> {
    const V1: &[u8] = b"PROXY ";
    let seen = bytes.len().min(12);
    if bytes[..seen] == V2_SIGNATURE[..seen] {
        return if bytes.len() < 16 {
            Ok(Parsed::Incomplete)
        } else {
            parse_v2(bytes)
        };
    }
    let seen = bytes.len().min(V1.len());
    if bytes[..seen] == V1[..seen] {
        return parse_v1(bytes);
    }
    Err("the connection did not open with a PROXY protocol header".to_owned())
}

fn parse_v1(bytes: &[u8]) -> std::result::Result<Parsed, String> {
    let Some(end) = bytes.windows(2).position(|w| w == b"\r\n") else {
        return if bytes.len() > 107 {
            Err("a v1 header longer than 107 bytes".to_owned())
        } else {
            Ok(Parsed::Incomplete)
        };
    };
    if end + 2 > 107 {
        return Err("a v1 header longer than 107 bytes".to_owned());
    }
    let line = std::str::from_utf8(&bytes[..end])
        .map_err(|_| "a v1 header that is not text".to_owned())?;
    let fields: Vec<&str> = line.split(' ').collect();
    let header = match fields.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Header::Local,
        [
            "PROXY",
            family @ ("TCP4" | "TCP6"),
            source,
            destination,
            source_port,
            destination_port,
        ] => {
            let v4 = *family == "TCP4";
            let address = |text: &str| -> std::result::Result<IpAddr, String> {
                let ip: IpAddr = text
                    .parse()
                    .map_err(|_| format!("{text:?} is not an IP address"))?;
                if ip.is_ipv4() != v4 {
                    return Err(format!("{text:?} is not an address of {family}"));
                }
                Ok(ip)
            };
            let port = |text: &str| -> std::result::Result<u16, String> {
                if text.is_empty() || (text.len() > 1 && text.starts_with('0')) {
                    return Err(format!("{text:?} is not a port"));
                }
                text.parse().map_err(|_| format!("{text:?} is not a port"))
            };
            Header::Proxied {
                source: SocketAddr::new(address(source)?, port(source_port)?),
                destination: SocketAddr::new(address(destination)?, port(destination_port)?),
            }
        }
        _ => return Err(format!("a malformed v1 header: {line:?}")),
    };
    Ok(Parsed::Complete(header, end + 2))
}

fn parse_v2(bytes: &[u8]) -> std::result::Result<Parsed, String> {
    let version_command = bytes[12];
    if version_command >> 4 != 2 {
        return Err(format!(
            "PROXY protocol version {} (expected 2)",
            version_command >> 4
        ));
    }
    let family = bytes[13];
    let length = usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
    let total = 16 + length;
    if total > MAX_HEADER {
        return Err(format!(
            "a v2 header of {total} bytes (at most {MAX_HEADER})"
        ));
    }
    if bytes.len() < total {
        return Ok(Parsed::Incomplete);
    }
    let body = &bytes[16..total];
    let header = match version_command & 0x0f {
        0 => Header::Local,
        1 => match family {
            // TCP over IPv4, then IPv6.
            0x11 => {
                let addresses = body
                    .get(..12)
                    .ok_or("v2 TCP4 addresses shorter than 12 bytes")?;
                let ip = |at: usize| {
                    IpAddr::V4(Ipv4Addr::new(
                        addresses[at],
                        addresses[at + 1],
                        addresses[at + 2],
                        addresses[at + 3],
                    ))
                };
                let port = |at: usize| u16::from_be_bytes([addresses[at], addresses[at + 1]]);
                Header::Proxied {
                    source: SocketAddr::new(ip(0), port(8)),
                    destination: SocketAddr::new(ip(4), port(10)),
                }
            }
            0x21 => {
                let addresses = body
                    .get(..36)
                    .ok_or("v2 TCP6 addresses shorter than 36 bytes")?;
                let ip = |at: usize| {
                    let mut octets = [0u8; 16];
                    octets.copy_from_slice(&addresses[at..at + 16]);
                    IpAddr::V6(Ipv6Addr::from(octets))
                };
                let port = |at: usize| u16::from_be_bytes([addresses[at], addresses[at + 1]]);
                Header::Proxied {
                    source: SocketAddr::new(ip(0), port(32)),
                    destination: SocketAddr::new(ip(16), port(34)),
                }
            }
            // UNSPEC, UDP, unix: nothing a TCP server can use.
            _ => Header::Local,
        },
        command => return Err(format!("v2 command {command} (expected LOCAL or PROXY)")),
    };
    Ok(Parsed::Complete(header, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, addresses: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut header = V2_SIGNATURE.to_vec();
        header.push(0x20 | command);
        header.push(family);
        header.extend_from_slice(&((addresses.len() + tlvs.len()) as u16).to_be_bytes());
        header.extend_from_slice(addresses);
        header.extend_from_slice(tlvs);
        header
    }

    #[test]
    fn v1_headers_are_read_as_haproxy_writes_them() {
        let line = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET / HTTP/1.1\r\n";
        assert_eq!(
            parse(line),
            Ok(Parsed::Complete(
                Header::Proxied {
                    source: "192.0.2.1:56324".parse().unwrap(),
                    destination: "198.51.100.2:443".parse().unwrap(),
                },
                45
            ))
        );
        let six = b"PROXY TCP6 2001:db8::1 2001:db8::2 4711 80\r\n";
        assert!(matches!(
            parse(six),
            Ok(Parsed::Complete(Header::Proxied { .. }, 44))
        ));
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n"),
            Ok(Parsed::Complete(Header::Local, 15))
        );
        assert_eq!(
            parse(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"),
            Ok(Parsed::Complete(Header::Local, 35))
        );
        for partial in [&b"P"[..], b"PROXY", b"PROXY TCP4 1.2.3.4"] {
            assert_eq!(parse(partial), Ok(Parsed::Incomplete), "{partial:?}");
        }
        for bad in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
            b"PROXY TCP4 ::1 ::2 1 2\r\n",
            b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP4 a b 1 2\r\n",
            b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let long = [b"PROXY ".to_vec(), vec![b'x'; 200]].concat();
        assert!(parse(&long).is_err());
    }

    #[test]
    fn v2_headers_carry_binary_addresses_and_tlvs() {
        let tcp4 = v2(
            1,
            0x11,
            &[192, 0, 2, 1, 198, 51, 100, 2, 0xdc, 0x04, 0x01, 0xbb],
            &[],
        );
        assert_eq!(
            parse(&tcp4),
            Ok(Parsed::Complete(
                Header::Proxied {
                    source: "192.0.2.1:56324".parse().unwrap(),
                    destination: "198.51.100.2:443".parse().unwrap(),
                },
                28
            ))
        );
        let mut addresses = Vec::new();
        addresses.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        addresses.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        addresses.extend_from_slice(&[0x12, 0x67, 0x00, 0x50]);
        let tlv = [0x04, 0x00, 0x03, b'a', b'b', b'c'];
        let tcp6 = v2(1, 0x21, &addresses, &tlv);
        assert_eq!(
            parse(&tcp6),
            Ok(Parsed::Complete(
                Header::Proxied {
                    source: "[2001:db8::1]:4711".parse().unwrap(),
                    destination: "[2001:db8::2]:80".parse().unwrap(),
                },
                16 + 36 + 6
            ))
        );
        assert_eq!(
            parse(&v2(0, 0x00, &[], &[])),
            Ok(Parsed::Complete(Header::Local, 16))
        );
        assert_eq!(parse(&tcp4[..20]), Ok(Parsed::Incomplete));
        assert_eq!(parse(&tcp4[..5]), Ok(Parsed::Incomplete));
        let mut wrong_version = tcp4.clone();
        wrong_version[12] = 0x11;
        assert!(parse(&wrong_version).is_err());
        assert!(parse(&v2(2, 0x11, &[0; 12], &[])).is_err());
        assert!(parse(&v2(1, 0x11, &[0; 4], &[])).is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_parse_or_fail_without_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = parse(&bytes);
            let mut v2 = V2_SIGNATURE.to_vec();
            v2.extend_from_slice(&bytes);
            if let Ok(Parsed::Complete(_, used)) = parse(&v2) {
                proptest::prop_assert!(used <= v2.len());
            }
            let mut v1 = b"PROXY ".to_vec();
            v1.extend_from_slice(&bytes);
            if let Ok(Parsed::Complete(_, used)) = parse(&v1) {
                proptest::prop_assert!(used <= v1.len());
            }
        }
    }
}
