//! What listening gives: a [`Listener`] that accepts [`Connection`]s, each carrying its
//! [`ConnectionInfo`].

use std::fmt;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// A socket address of either family a listener may have.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Address {
    /// An IPv4 or IPv6 address and port.
    Tcp(SocketAddr),
    /// A unix-domain socket: its path, or `None` for an unnamed socket (the usual peer of
    /// a unix listener).
    Unix(Option<PathBuf>),
}

impl Address {
    /// The IP socket address, for TCP.
    pub fn as_tcp(&self) -> Option<SocketAddr> {
        match self {
            Address::Tcp(addr) => Some(*addr),
            Address::Unix(_) => None,
        }
    }
}

/// `127.0.0.1:8080`, `[::1]:8080`, `unix:/run/app.sock`, or `unix:` for an unnamed socket.
impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(addr) => write!(f, "{addr}"),
            Address::Unix(Some(path)) => write!(f, "unix:{}", path.display()),
            Address::Unix(None) => f.write_str("unix:"),
        }
    }
}

/// What TLS negotiated on a connection (filled by the TLS kinds).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsInfo {
    /// The server name the client sent (RFC 6066 SNI), lower case, if any.
    pub sni: Option<String>,
    /// The protocol chosen by ALPN (RFC 7301), such as `b"h2"`, if any.
    pub alpn: Option<Vec<u8>>,
    /// The protocol version in mod_ssl's spelling (`"TLSv1.3"`), if known.
    pub version: Option<&'static str>,
}

impl TlsInfo {
    /// TLS facts with every field unknown; set the fields that are known.
    pub fn new() -> TlsInfo {
        TlsInfo::default()
    }
}

/// Facts about one accepted connection that travel with it to the server.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// The listener's own address for this connection.
    pub local: Address,
    /// The client's address.
    pub peer: Address,
    /// `Some` when the connection is TLS.
    pub tls: Option<TlsInfo>,
}

impl ConnectionInfo {
    /// Facts for a plain (not TLS) connection.
    pub fn new(local: Address, peer: Address) -> ConnectionInfo {
        ConnectionInfo {
            local,
            peer,
            tls: None,
        }
    }

    /// The URL scheme a request on this connection has: `"https"` over TLS, else `"http"`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }
}

/// Any byte stream a wrapping kind may produce (a TLS stream, a test double).
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    Other(Box<dyn Io>),
}

/// One accepted connection: a bidirectional byte stream plus its [`ConnectionInfo`].
///
/// Plain TCP and unix streams are held without boxing; wrapping kinds box theirs.
pub struct Connection {
    stream: Stream,
    info: ConnectionInfo,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// A connection over a TCP stream.
    pub fn tcp(stream: TcpStream, info: ConnectionInfo) -> Connection {
        Connection {
            stream: Stream::Tcp(stream),
            info,
        }
    }

    /// A connection over a unix-domain stream.
    pub fn unix(stream: UnixStream, info: ConnectionInfo) -> Connection {
        Connection {
            stream: Stream::Unix(stream),
            info,
        }
    }

    /// A connection over any other stream, such as TLS around an inner [`Connection`].
    pub fn other(stream: impl Io, info: ConnectionInfo) -> Connection {
        Connection {
            stream: Stream::Other(Box::new(stream)),
            info,
        }
    }

    /// The connection's facts.
    pub fn info(&self) -> &ConnectionInfo {
        &self.info
    }

    /// The connection's facts, for a wrapping kind to add to.
    pub fn info_mut(&mut self) -> &mut ConnectionInfo {
        &mut self.info
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match &mut $self.get_mut().stream {
            Stream::Tcp($s) => $e,
            Stream::Unix($s) => $e,
            Stream::Other($s) => $e,
        }
    };
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Stream::Tcp(s) => s.is_write_vectored(),
            Stream::Unix(s) => s.is_write_vectored(),
            Stream::Other(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

/// The accepting half of a listener, implemented by each kind.
pub trait Accept: Send + 'static {
    /// Polls for the next connection.
    ///
    /// An error concerns one attempt (for example `EMFILE` when the process is out of file
    /// descriptors, or `ECONNABORTED`); the listener stays usable, and a server should log
    /// it, pause briefly, and accept again.
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Connection>>;
}

/// A listening socket, ready to accept connections.
///
/// Dropping it stops listening and releases what the endpoint took (a `unix:` listener
/// removes its socket file and lock file).
pub struct Listener {
    accept: Box<dyn Accept>,
    local: Address,
    endpoint: String,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("endpoint", &self.endpoint)
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl Listener {
    /// A listener at `local`, opened for the endpoint whose canonical descriptor is
    /// `endpoint`, accepting through `accept`.
    pub fn new(endpoint: String, local: Address, accept: impl Accept) -> Listener {
        Listener {
            accept: Box::new(accept),
            local,
            endpoint,
        }
    }

    /// Waits for the next connection. See [`Accept::poll_accept`] for what an error means.
    pub async fn accept(&mut self) -> io::Result<Connection> {
        poll_fn(|cx| self.accept.poll_accept(cx)).await
    }

    /// Polls for the next connection.
    pub fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Connection>> {
        self.accept.poll_accept(cx)
    }

    /// The bound address: with port 0, the port the system chose.
    pub fn local_addr(&self) -> &Address {
        &self.local
    }

    /// The canonical descriptor of the endpoint this listener was opened for.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}
