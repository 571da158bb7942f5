//! Where a response goes: the head once, through the request's reply channel, then the
//! body's chunks through a bounded channel, waiting without the GIL while the client is
//! behind, for at most the client timeout.

use std::time::Duration;

use bytes::Bytes;
use http::Response;
use pyo3::Python;
use tokio::sync::oneshot;

use super::head::Head;
use super::input::Unread;
use crate::body::{ResponseBody, StreamSender};

/// How many chunks may wait between the Python thread and the connection: small, so a
/// slow client slows the application instead of growing memory.
const STREAM_DEPTH: usize = 4;

/// The client went away, stopped reading for longer than the client timeout, or the
/// request was cancelled: stop producing the body.
#[derive(Debug)]
pub(crate) struct ClientGone;

/// What the Python thread hands back to the connection: the response, and the part of a
/// request body of unknown length the application left unread, which the event loop reads
/// (within the body limit) before the response goes out.
pub(crate) struct Reply {
    pub(crate) response: Response<ResponseBody>,
    pub(crate) unread: Option<Unread>,
}

/// Where the response goes: the head once, then body chunks.
pub(crate) struct Sender {
    reply: Option<oneshot::Sender<Reply>>,
    /// Sent with the head, when the application is done with the body before the head.
    unread: Option<Unread>,
    pub(crate) stream: Option<StreamSender>,
    /// A HEAD request: the head is sent, the body is not.
    pub(crate) head_only: bool,
    runtime: tokio::runtime::Handle,
    client_timeout: Duration,
}

impl Sender {
    pub(crate) fn new(
        reply: oneshot::Sender<Reply>,
        head_only: bool,
        runtime: tokio::runtime::Handle,
        client_timeout: Duration,
    ) -> Sender {
        Sender {
            reply: Some(reply),
            unread: None,
            stream: None,
            head_only,
            runtime,
            client_timeout,
        }
    }

    /// Whether the head has gone out.
    pub(crate) fn started(&self) -> bool {
        self.reply.is_none()
    }

    /// Hands the unread rest of the request body to the connection with the head, for the
    /// event loop to read before the response goes out. Only for a response whose
    /// application will read no more of the body.
    pub(crate) fn leave_unread(&mut self, unread: Option<Unread>) {
        self.unread = unread;
    }

    /// Sends a complete response (head and whole body) if nothing was sent yet.
    pub(crate) fn send_whole(
        &mut self,
        response: Response<ResponseBody>,
    ) -> Result<(), ClientGone> {
        let reply = self.reply.take().ok_or(ClientGone)?;
        let unread = self.unread.take();
        reply
            .send(Reply { response, unread })
            .map_err(|_| ClientGone)
    }

    /// Sends the head with the first chunk and opens the stream for the rest.
    pub(crate) fn start_stream(&mut self, head: Head, first: Bytes) -> Result<(), ClientGone> {
        if self.head_only || head.has_no_body() {
            return self.send_whole(head.into_response(ResponseBody::empty()));
        }
        let (body, sender) = ResponseBody::stream(first, STREAM_DEPTH);
        self.stream = Some(sender);
        self.send_whole(head.into_response(body))
    }

    /// Sends one chunk of a started stream, waiting (without the GIL) while the client is
    /// behind, for at most the client timeout.
    pub(crate) fn send_chunk(&mut self, py: Python<'_>, chunk: Bytes) -> Result<(), ClientGone> {
        let Some(stream) = &self.stream else {
            // No body is sent for this response (HEAD, 204, 304).
            return Ok(());
        };
        let chunk = match stream.chunks.try_send(chunk) {
            Ok(()) => return Ok(()),
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => return Err(ClientGone),
            Err(tokio::sync::mpsc::error::TrySendError::Full(chunk)) => chunk,
        };
        let (runtime, timeout) = (&self.runtime, self.client_timeout);
        // The timer is made inside block_on: it needs the runtime's context.
        let sent = py.detach(|| {
            runtime
                .block_on(async { tokio::time::timeout(timeout, stream.chunks.send(chunk)).await })
        });
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(ClientGone),
            Err(_) => {
                tracing::warn!("the client read nothing for {timeout:?}; abandoning the response");
                Err(ClientGone)
            }
        }
    }

    /// Ends a started body as complete.
    pub(crate) fn end_stream(&mut self) {
        if let Some(stream) = self.stream.take() {
            stream.finish();
        }
    }

    /// Ends a started body without completing it: the connection is aborted, so the client
    /// sees an incomplete body.
    pub(crate) fn abort(&mut self) {
        self.stream = None;
    }
}
