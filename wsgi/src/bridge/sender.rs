//! Where a response goes: the head once, through the request's reply channel, then the
//! body's chunks through a bounded channel, waiting without the GIL while the client is
//! behind, for at most the client timeout and only as long as the client keeps a minimum
//! reading rate.

use std::time::{Duration, Instant};

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

/// How slowly a client may read a streamed response before the server gives it up and
/// frees the Python thread producing it (Kestrel's `MinResponseDataRate`; nginx's
/// `send_timeout` is the silence rule alone).
///
/// Only the time the Python thread spends waiting for the client counts: an application
/// that produces slowly (server-sent events, say) is never the client's fault. Over all
/// those waits together, the client must have taken the bytes it was waited for at
/// `min_rate` or faster, after `grace`; and no single wait may last the client timeout.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReadPace {
    /// The longest single wait.
    pub(crate) client_timeout: Duration,
    /// Bytes per second; 0 for no minimum.
    pub(crate) min_rate: u64,
    /// Waiting time allowed on top of what `min_rate` allows.
    pub(crate) grace: Duration,
}

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
    pace: ReadPace,
    /// How long the Python thread has waited for the client, in all.
    blocked: Duration,
    /// The bytes of the chunks it waited for.
    waited_for: u64,
}

impl Sender {
    pub(crate) fn new(
        reply: oneshot::Sender<Reply>,
        head_only: bool,
        runtime: tokio::runtime::Handle,
        pace: ReadPace,
    ) -> Sender {
        Sender {
            reply: Some(reply),
            unread: None,
            stream: None,
            head_only,
            runtime,
            pace,
            blocked: Duration::ZERO,
            waited_for: 0,
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
    /// behind, as long as [`ReadPace`] allows.
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
        let length = chunk.len() as u64;
        let (wait, too_slow) = self.next_wait(length);
        let runtime = &self.runtime;
        let began = Instant::now();
        // The timer is made inside block_on: it needs the runtime's context.
        let sent = py.detach(|| {
            runtime.block_on(async { tokio::time::timeout(wait, stream.chunks.send(chunk)).await })
        });
        self.blocked += began.elapsed();
        match sent {
            Ok(Ok(())) => {
                self.waited_for += length;
                Ok(())
            }
            Ok(Err(_)) => Err(ClientGone),
            Err(_) if too_slow => {
                tracing::warn!(
                    "the client read the response slower than {} bytes a second; abandoning it",
                    self.pace.min_rate
                );
                Err(ClientGone)
            }
            Err(_) => {
                tracing::warn!("the client read nothing for {wait:?}; abandoning the response");
                Err(ClientGone)
            }
        }
    }

    /// How long the next wait, for a chunk of `length` bytes, may last, and whether running
    /// out of it means the client is too slow (else: silent for the client timeout).
    fn next_wait(&self, length: u64) -> (Duration, bool) {
        let ReadPace {
            client_timeout,
            min_rate,
            grace,
        } = self.pace;
        if min_rate == 0 {
            return (client_timeout, false);
        }
        let owed = Duration::from_secs_f64((self.waited_for + length) as f64 / min_rate as f64);
        let left = (grace + owed).saturating_sub(self.blocked);
        if left < client_timeout {
            (left, true)
        } else {
            (client_timeout, false)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sender(runtime: &tokio::runtime::Runtime, min_rate: u64) -> Sender {
        let (reply, _) = oneshot::channel();
        let pace = ReadPace {
            client_timeout: Duration::from_secs(60),
            min_rate,
            grace: Duration::from_secs(5),
        };
        Sender::new(reply, false, runtime.handle().clone(), pace)
    }

    #[test]
    fn only_the_time_spent_waiting_for_the_client_counts_against_it() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // No minimum: the silence rule alone.
        let free = sender(&runtime, 0);
        assert_eq!(free.next_wait(1_000_000), (Duration::from_secs(60), false));
        // 1,000 bytes at 100 B/s: 10 s, plus the 5 s grace.
        let mut paced = sender(&runtime, 100);
        assert_eq!(paced.next_wait(1000), (Duration::from_secs(15), true));
        // Having waited 14 s for the first 1,000 bytes, the next 1,000 may take 11 s more.
        paced.blocked = Duration::from_secs(14);
        paced.waited_for = 1000;
        assert_eq!(paced.next_wait(1000), (Duration::from_secs(11), true));
        // A client owed more than the client timeout gets only the client timeout.
        assert_eq!(paced.next_wait(100_000), (Duration::from_secs(60), false));
        // Past its allowance, nothing: the client is too slow.
        paced.blocked = Duration::from_secs(30);
        assert_eq!(paced.next_wait(1000), (Duration::ZERO, true));
    }
}
