//! What listening gives: a [`Listener`] that accepts [`Connection`]s, each carrying its
//! [`ConnectionInfo`].

use std::fmt;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::fd::BorrowedFd;
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

    /// Bytes received and not yet read, as the kernel counts them (`FIONREAD`, ioctl(2)),
    /// for a plain `tcp:` or `unix:` connection; `None` when the connection is wrapped
    /// (TLS, a plugin) or the kernel will not say. A server uses it to tell whether
    /// closing now would answer the client's pending data with a reset (lingering close).
    pub fn unread_bytes(&self) -> Option<u64> {
        match &self.stream {
            Stream::Tcp(stream) => rustix::io::ioctl_fionread(stream).ok(),
            Stream::Unix(stream) => rustix::io::ioctl_fionread(stream).ok(),
            Stream::Other(_) => None,
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

/// How long to wait before accepting again after `err` (see [`Listener::next_connection`]):
/// `None` to go on at once.
fn pause_after(err: &io::Error) -> Option<std::time::Duration> {
    use std::time::Duration;
    const EXHAUSTED: [i32; 4] = [
        libc_errno::EMFILE,
        libc_errno::ENFILE,
        libc_errno::ENOBUFS,
        libc_errno::ENOMEM,
    ];
    match err.kind() {
        io::ErrorKind::ConnectionAborted
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionRefused
        | io::ErrorKind::Interrupted
        | io::ErrorKind::NetworkDown
        | io::ErrorKind::NetworkUnreachable
        | io::ErrorKind::HostUnreachable => None,
        // accept(2): Linux passes a connection's pending network error on to accept.
        _ if err
            .raw_os_error()
            .is_some_and(|code| libc_errno::CONNECTION_FAULTS.contains(&code)) =>
        {
            None
        }
        // A security module refusing this process: the connection stays queued, so
        // retrying at once would spin.
        io::ErrorKind::PermissionDenied => Some(Duration::from_millis(100)),
        _ if err
            .raw_os_error()
            .is_some_and(|code| EXHAUSTED.contains(&code)) =>
        {
            Some(Duration::from_millis(100))
        }
        _ => Some(Duration::from_secs(1)),
    }
}

/// The errno values the accept policy names, from rustix (no libc dependency).
mod libc_errno {
    pub(super) const EMFILE: i32 = rustix::io::Errno::MFILE.raw_os_error();
    pub(super) const ENFILE: i32 = rustix::io::Errno::NFILE.raw_os_error();
    pub(super) const ENOBUFS: i32 = rustix::io::Errno::NOBUFS.raw_os_error();
    pub(super) const ENOMEM: i32 = rustix::io::Errno::NOMEM.raw_os_error();
    /// Errors of one connection that accept(2) passes on (its "Error handling" section).
    pub(super) const CONNECTION_FAULTS: [i32; 5] = [
        rustix::io::Errno::PROTO.raw_os_error(),
        rustix::io::Errno::NONET.raw_os_error(),
        rustix::io::Errno::HOSTDOWN.raw_os_error(),
        rustix::io::Errno::NOPROTOOPT.raw_os_error(),
        rustix::io::Errno::OPNOTSUPP.raw_os_error(),
    ];
}

/// The accepting half of a listener, implemented by each kind.
pub trait Accept: Send + 'static {
    /// Polls for the next connection.
    ///
    /// An error concerns one attempt (for example `EMFILE` when the process is out of file
    /// descriptors, or `ECONNABORTED`); the listener stays usable, and a server should log
    /// it, pause briefly, and accept again.
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Connection>>;

    /// Narrows the application protocols this listener offers by ALPN (RFC 7301 §3.2) to
    /// those of `protocols` it offers now, in its own order of preference: for a server
    /// that speaks fewer protocols on it than the TLS kinds offer (`h2`, `http/1.1`).
    /// `acme-tls/1`, offered where the listener answers tls-alpn-01 validations, stays.
    /// Kinds without TLS have nothing to narrow (the default does nothing); kinds that wrap
    /// another listener pass it on.
    fn offer_alpn(&mut self, protocols: &[&[u8]]) {
        let _ = protocols;
    }

    /// The listening socket, for kinds that own one (`tcp:`, `tcp6:`, `unix:`,
    /// `systemd:`): what a supervisor passes to its workers. `None` (the default) for
    /// kinds that accept through another listener.
    fn socket(&self) -> Option<BorrowedFd<'_>> {
        None
    }
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

    /// Waits for the next connection under the crate's one accept policy, so that no
    /// accept loop has to decide what a failed accept means, and none dies of one:
    ///
    /// - a connection that failed before it was accepted (`ECONNABORTED`, `ECONNRESET`,
    ///   `EINTR`, and the network errors accept(2) passes on: `EPROTO`, `ENETDOWN`,
    ///   `ENETUNREACH`, `EHOSTUNREACH`, `EHOSTDOWN`, `ENONET`, `ENOPROTOOPT`,
    ///   `EOPNOTSUPP`) is skipped, logged at debug level;
    /// - a refusal by a security module (`EACCES`, `EPERM`) leaves the connection queued:
    ///   it is logged and retried after 100 ms rather than in a busy loop;
    /// - running out of something (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`) is logged as an
    ///   error, waited out for 100 ms (connections in flight close and free descriptors),
    ///   and retried: the pending connections stay in the kernel's queue meanwhile;
    /// - any other error is logged and retried after 1 s.
    ///
    /// The same policy as axum's `handle_accept_error`, with the exhaustion wait of
    /// hyper's and tokio's examples. Cancel-safe: dropping the future loses no connection.
    pub async fn next_connection(&mut self) -> Connection {
        loop {
            match self.accept().await {
                Ok(connection) => return connection,
                Err(err) => match pause_after(&err) {
                    None => {
                        tracing::debug!(endpoint = %self.endpoint, "a connection failed before it was accepted: {err}");
                    }
                    Some(pause) => {
                        tracing::error!(endpoint = %self.endpoint, "accept failed: {err}; retrying in {pause:?}");
                        tokio::time::sleep(pause).await;
                    }
                },
            }
        }
    }

    /// Polls for the next connection.
    pub fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Connection>> {
        self.accept.poll_accept(cx)
    }

    /// The listening socket of a socket-level listener (see [`Accept::socket`]).
    pub fn socket(&self) -> Option<BorrowedFd<'_>> {
        self.accept.socket()
    }

    /// Offers by ALPN only the protocols of `protocols` (see [`Accept::offer_alpn`]); for
    /// connections accepted from now on. A client that offers none of them fails its
    /// handshake with `no_application_protocol` (RFC 7301 §3.2); one that offers no ALPN at
    /// all is accepted, as before.
    pub fn offer_alpn(&mut self, protocols: &[&[u8]]) {
        self.accept.offer_alpn(protocols);
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_accept_policy_skips_failed_connections_and_waits_out_exhaustion() {
        let os = |errno: rustix::io::Errno| io::Error::from_raw_os_error(errno.raw_os_error());
        for skipped in [
            rustix::io::Errno::CONNABORTED,
            rustix::io::Errno::CONNRESET,
            rustix::io::Errno::PROTO,
            rustix::io::Errno::INTR,
            rustix::io::Errno::NETUNREACH,
            rustix::io::Errno::HOSTDOWN,
            rustix::io::Errno::NONET,
        ] {
            assert_eq!(pause_after(&os(skipped)), None, "{skipped:?}");
        }
        for exhausted in [
            rustix::io::Errno::MFILE,
            rustix::io::Errno::NFILE,
            rustix::io::Errno::NOBUFS,
            rustix::io::Errno::NOMEM,
            rustix::io::Errno::ACCESS,
            rustix::io::Errno::PERM,
        ] {
            assert_eq!(
                pause_after(&os(exhausted)),
                Some(Duration::from_millis(100)),
                "{exhausted:?}"
            );
        }
        assert_eq!(
            pause_after(&os(rustix::io::Errno::BADF)),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            pause_after(&io::Error::other("odd")),
            Some(Duration::from_secs(1))
        );
    }
}
