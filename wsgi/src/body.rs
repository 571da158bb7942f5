//! The response body hyper polls: all at once, streamed from the Python thread through a
//! bounded channel, or read from a file off the event loop.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body::{Frame, SizeHint};
use tokio::sync::mpsc;

use crate::access_log::{AccessLog, Pending};
use crate::file_body::FileBody;

/// What the access log needs to write a response's line when its body is dropped.
struct LogTap {
    log: AccessLog,
    pending: Pending,
    status: u16,
}

/// Why a streamed body ended without completing; the connection is aborted so that the
/// client cannot take a truncated body for a whole one.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BodyAborted(pub String);

/// The sending half of a streamed body. The body is complete only if [`StreamSender::finish`]
/// was called before the sender went away; dropped otherwise (the application raised, the
/// Python thread gave up on a stalled client, a panic), the body fails and the connection
/// is aborted, so that a cut body never looks whole.
#[derive(Debug)]
pub(crate) struct StreamSender {
    pub(crate) chunks: mpsc::Sender<Bytes>,
    finished: Arc<AtomicBool>,
}

impl StreamSender {
    /// Marks the body complete; dropping the sender then ends it cleanly.
    pub(crate) fn finish(self) {
        self.finished.store(true, Ordering::Release);
    }
}

/// A response body: empty, one buffer, a stream of chunks from the application, or a file.
///
/// A stream applies backpressure: the channel holds few chunks, so an application producing
/// faster than the client reads blocks in its `send` instead of growing memory.
pub struct ResponseBody {
    kind: Kind,
    /// Data bytes yielded so far.
    sent: u64,
    /// The access log's line for this response, written with `sent` when the body is
    /// dropped: finished, failed or abandoned. Boxed: inline it made every response 240
    /// bytes larger, and a response is moved half a dozen times between the Python thread
    /// and hyper, with the log on or off.
    log: Option<Box<LogTap>>,
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("kind", &self.kind)
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if let Some(tap) = self.log.take() {
            let LogTap {
                log,
                pending,
                status,
            } = *tap;
            log.record(pending.finish(status, self.sent));
        }
    }
}

#[derive(Debug)]
enum Kind {
    Full(Option<Bytes>),
    Stream {
        first: Option<Bytes>,
        rest: mpsc::Receiver<Bytes>,
        finished: Arc<AtomicBool>,
        /// The sender went away unfinished, and this was seen once: hyper drops its unsent
        /// buffer when a body fails, so the body first yields once to let hyper flush the
        /// bytes already produced, then fails.
        aborting: bool,
    },
    File(FileBody),
}

impl ResponseBody {
    /// A body with no bytes.
    pub fn empty() -> ResponseBody {
        ResponseBody::of(Kind::Full(None))
    }

    fn of(kind: Kind) -> ResponseBody {
        ResponseBody {
            kind,
            sent: 0,
            log: None,
        }
    }

    /// Writes the access log's line for the response, with `status` and the data bytes
    /// yielded, when the body is dropped, which hyper does once it has written the body or
    /// given it up.
    pub(crate) fn log_to(&mut self, log: AccessLog, pending: Pending, status: u16) {
        self.log = Some(Box::new(LogTap {
            log,
            pending,
            status,
        }));
    }

    /// A body of exactly `bytes`.
    pub fn full(bytes: Bytes) -> ResponseBody {
        ResponseBody::of(Kind::Full((!bytes.is_empty()).then_some(bytes)))
    }

    /// A streamed body starting with `first`, and the sender for the rest; `depth` chunks
    /// may wait in between.
    pub(crate) fn stream(first: Bytes, depth: usize) -> (ResponseBody, StreamSender) {
        let (chunks, rest) = mpsc::channel(depth);
        let finished = Arc::new(AtomicBool::new(false));
        let body = ResponseBody::of(Kind::Stream {
            first: (!first.is_empty()).then_some(first),
            rest,
            finished: finished.clone(),
            aborting: false,
        });
        (body, StreamSender { chunks, finished })
    }

    /// A body read from a file (see [`FileBody`]).
    pub(crate) fn file(file: FileBody) -> ResponseBody {
        ResponseBody::of(Kind::File(file))
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyAborted;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyAborted>>> {
        let body = self.get_mut();
        let polled = body.poll_kind(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            body.sent += data.len() as u64;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.kind_is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.kind_size_hint()
    }
}

impl ResponseBody {
    fn poll_kind(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyAborted>>> {
        match &mut self.kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Stream {
                first,
                rest,
                finished,
                aborting,
            } => {
                if let Some(first) = first.take() {
                    return Poll::Ready(Some(Ok(Frame::data(first))));
                }
                if *aborting {
                    return Poll::Ready(Some(Err(BodyAborted(
                        "the response body ended before the application finished it".into(),
                    ))));
                }
                match std::task::ready!(rest.poll_recv(cx)) {
                    Some(chunk) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
                    None if finished.load(Ordering::Acquire) => Poll::Ready(None),
                    None => {
                        *aborting = true;
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                }
            }
            Kind::File(file) => match std::task::ready!(file.poll_chunk(cx)) {
                None => Poll::Ready(None),
                Some(Ok(chunk)) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
                Some(Err(err)) => {
                    tracing::warn!("a file's response ended early: {err}");
                    Poll::Ready(Some(Err(BodyAborted(err.to_string()))))
                }
            },
        }
    }

    fn kind_is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(None) => true,
            Kind::File(file) => file.remaining() == 0,
            _ => false,
        }
    }

    fn kind_size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(None) => SizeHint::with_exact(0),
            Kind::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            Kind::Stream { .. } => SizeHint::default(),
            Kind::File(file) => SizeHint::with_exact(file.remaining()),
        }
    }
}

/// [`plain`] with `Connection: close`: the server's refusal of a request after which the
/// connection cannot be trusted (a body not read to its end, framing in doubt).
pub(crate) fn refusal(status: StatusCode, text: &str) -> Response<ResponseBody> {
    let mut response = plain(status, text);
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A short `text/plain` response the server itself gives (503, 500, 404, 413).
pub(crate) fn plain(status: StatusCode, text: &str) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(Bytes::copy_from_slice(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use http_body::Body;
    use http_body_util::BodyExt;

    use super::*;

    #[tokio::test]
    async fn a_finished_stream_ends_cleanly_with_every_chunk() {
        let (body, sender) = ResponseBody::stream(Bytes::from_static(b"a"), 2);
        sender.chunks.send(Bytes::from_static(b"b")).await.unwrap();
        sender.finish();
        let collected = body.collect().await.unwrap().to_bytes();
        assert_eq!(collected, "ab");
    }

    #[tokio::test]
    async fn a_stream_dropped_unfinished_yields_what_was_sent_then_fails() {
        let (mut body, sender) = ResponseBody::stream(Bytes::from_static(b"first"), 2);
        sender
            .chunks
            .send(Bytes::from_static(b"second"))
            .await
            .unwrap();
        drop(sender);
        let mut data = Vec::new();
        let error = loop {
            match body.frame().await {
                Some(Ok(frame)) => data.extend_from_slice(&frame.into_data().unwrap()),
                Some(Err(error)) => break error,
                None => panic!("an unfinished body must not end cleanly"),
            }
        };
        assert_eq!(data, b"firstsecond");
        assert!(
            error.0.contains("ended before the application finished"),
            "{error}"
        );
    }

    #[test]
    fn whole_bodies_report_their_exact_size() {
        assert_eq!(ResponseBody::empty().size_hint().exact(), Some(0));
        assert!(http_body::Body::is_end_stream(&ResponseBody::empty()));
        assert_eq!(
            ResponseBody::full(Bytes::from_static(b"abc"))
                .size_hint()
                .exact(),
            Some(3)
        );
        let (stream, _sender) = ResponseBody::stream(Bytes::new(), 1);
        assert_eq!(stream.size_hint().exact(), None);
    }
}
