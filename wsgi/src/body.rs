//! The response body hyper polls: all at once, or streamed from the Python thread through a
//! bounded channel.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::sync::mpsc;

/// Why a streamed body ended without completing; the connection is aborted so that the
/// client cannot take a truncated body for a whole one.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BodyAborted(pub String);

/// One item of a streamed body: a chunk, or the reason the stream is aborted.
pub(crate) type Chunk = Result<Bytes, BodyAborted>;

/// A response body: empty, one buffer, or a stream of chunks from the application.
///
/// A stream applies backpressure: the channel holds few chunks, so an application producing
/// faster than the client reads blocks in its `send` instead of growing memory.
#[derive(Debug)]
pub struct ResponseBody {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Full(Option<Bytes>),
    Stream {
        first: Option<Bytes>,
        rest: mpsc::Receiver<Chunk>,
        /// An abort received but not yet reported: hyper drops its unsent buffer when the
        /// body fails, so the body first yields once to let hyper flush what the client
        /// has been promised.
        aborting: Option<BodyAborted>,
    },
}

impl ResponseBody {
    /// A body with no bytes.
    pub fn empty() -> ResponseBody {
        ResponseBody {
            kind: Kind::Full(None),
        }
    }

    /// A body of exactly `bytes`.
    pub fn full(bytes: Bytes) -> ResponseBody {
        ResponseBody {
            kind: Kind::Full((!bytes.is_empty()).then_some(bytes)),
        }
    }

    pub(crate) fn stream(first: Bytes, rest: mpsc::Receiver<Chunk>) -> ResponseBody {
        ResponseBody {
            kind: Kind::Stream {
                first: (!first.is_empty()).then_some(first),
                rest,
                aborting: None,
            },
        }
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyAborted;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyAborted>>> {
        match &mut self.get_mut().kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Stream {
                first,
                rest,
                aborting,
            } => {
                if let Some(first) = first.take() {
                    return Poll::Ready(Some(Ok(Frame::data(first))));
                }
                if let Some(reason) = aborting.take() {
                    return Poll::Ready(Some(Err(reason)));
                }
                match std::task::ready!(rest.poll_recv(cx)) {
                    Some(Err(reason)) => {
                        *aborting = Some(reason);
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                    item => Poll::Ready(item.map(|chunk| chunk.map(Frame::data))),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.kind, Kind::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(None) => SizeHint::with_exact(0),
            Kind::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            Kind::Stream { .. } => SizeHint::default(),
        }
    }
}
