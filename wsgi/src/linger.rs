//! Lingering close (nginx's `lingering_close`): a connection closed while the client is
//! still sending would answer those bytes with a TCP reset, and a reset can destroy the
//! response before the client has read it (a 413 to an upload, a 400, any response sent
//! before the request body was read). So a connection dropped with input waiting is not
//! closed at once: its write side is shut (the client sees the whole response and its
//! end), then what the client goes on sending is read and thrown away until it closes,
//! pauses for [`LINGER_TIMEOUT`], or [`LINGER_TIME`] has passed.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use torsion_endpoints::Connection;

/// How long the client may pause while the server lingers (nginx's `lingering_timeout`).
const LINGER_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest the server lingers on one connection (nginx's `lingering_time`).
const LINGER_TIME: Duration = Duration::from_secs(30);

/// A connection that lingers when dropped with input waiting, or when the server closes it
/// while the client may still be sending a request body ([`Lingering::expect_more`]);
/// otherwise it is the connection itself.
pub(crate) struct Lingering {
    connection: Option<Connection>,
    /// The client closed its side: nothing more will come.
    eof: bool,
    /// Set by the server when it answered before reading a request body to its end.
    expected: Arc<AtomicBool>,
}

impl Lingering {
    pub(crate) fn new(connection: Connection) -> Lingering {
        Lingering {
            connection: Some(connection),
            eof: false,
            expected: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A flag to set when the server answers a request whose body it has not read to the
    /// end and closes the connection (a 413 to a declared length, a 400 for a broken
    /// body): the rest of the body may still be on its way, though none has arrived yet.
    pub(crate) fn expect_more(&self) -> Arc<AtomicBool> {
        self.expected.clone()
    }

    /// The connection; only `Drop` takes it, and nothing polls after that.
    fn inner(&mut self) -> io::Result<Pin<&mut Connection>> {
        self.connection
            .as_mut()
            .map(Pin::new)
            .ok_or_else(|| io::Error::other("the connection is closed"))
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        let Some(mut connection) = self.connection.take() else {
            return;
        };
        if self.eof {
            return;
        }
        // Is anything waiting to be read? Most connections end with nothing pending, and
        // close at once. The kernel says for plain sockets; a wrapped one (TLS) is asked
        // without blocking, which sees only what its readiness already reported.
        let waiting = self.expected.load(Ordering::Relaxed)
            || match connection.unread_bytes() {
                Some(unread) => unread > 0,
                None => {
                    let mut probe = [0u8; 1];
                    let mut buf = ReadBuf::new(&mut probe);
                    matches!(
                        Pin::new(&mut connection)
                            .poll_read(&mut Context::from_waker(Waker::noop()), &mut buf),
                        Poll::Ready(Ok(())) if !buf.filled().is_empty()
                    )
                }
            };
        if !waiting {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(linger(connection));
    }
}

/// Shuts the write side, then reads and discards until the client closes, pauses, or the
/// lingering time is over.
async fn linger(mut connection: Connection) {
    let _ = connection.shutdown().await;
    let mut sink = vec![0u8; 16 * 1024];
    let _ = tokio::time::timeout(LINGER_TIME, async {
        loop {
            match tokio::time::timeout(LINGER_TIMEOUT, connection.read(&mut sink)).await {
                Ok(Ok(n)) if n > 0 => continue,
                _ => break,
            }
        }
    })
    .await;
}

impl AsyncRead for Lingering {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = match self.inner() {
            Ok(inner) => inner.poll_read(cx, buf),
            Err(err) => Poll::Ready(Err(err)),
        };
        if matches!(read, Poll::Ready(Ok(())))
            && buf.filled().len() == before
            && buf.remaining() > 0
        {
            self.eof = true;
        }
        read
    }
}

impl AsyncWrite for Lingering {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.inner() {
            Ok(inner) => inner.poll_write(cx, buf),
            Err(err) => Poll::Ready(Err(err)),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.inner() {
            Ok(inner) => inner.poll_write_vectored(cx, bufs),
            Err(err) => Poll::Ready(Err(err)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.connection
            .as_ref()
            .is_some_and(|c| c.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.inner() {
            Ok(inner) => inner.poll_flush(cx),
            Err(err) => Poll::Ready(Err(err)),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.inner() {
            Ok(inner) => inner.poll_shutdown(cx),
            Err(err) => Poll::Ready(Err(err)),
        }
    }
}
