//! `wsgi.input`: the request body, streamed from hyper as the application reads it.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http_body::Body;
use hyper::body::Incoming;
use pyo3::exceptions::{PyOSError, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

/// The request body as PEP 3333's `wsgi.input`: `read(size=-1)`, `readline(size=-1)`,
/// `readlines(hint=-1)` and iteration by lines.
///
/// Nothing is read from the client until the application asks, and then only as much as
/// it asks for (plus at most one received frame), so a large upload never sits in memory
/// whole unless the application reads it whole. The GIL is released while waiting for the
/// client; a read that wants 64 KiB or more beyond what is buffered (a `read()` of the
/// whole body, say) is gathered by the event loop and handed over at once. The stream ends
/// at the end of the body (`wsgi.input_terminated`), whatever `size` asks for. A body larger than the server's limit raises `OSError` and the
/// response becomes 413 if the application has not started one; a client that goes away
/// or sends a malformed body raises `OSError`.
#[pyclass(frozen, module = "torsion", name = "Input")]
pub(crate) struct Input {
    state: Mutex<State>,
}

struct State {
    body: Option<Incoming>,
    buffer: Buffer,
    received: u64,
    limit: u64,
    fault: Arc<ClientFault>,
    /// Why the body cannot be read any further; raised again on every later read, so a
    /// truncated body is never mistaken for a whole one.
    failed: Option<String>,
    runtime: tokio::runtime::Handle,
    pace: Pace,
}

/// How long a client may take over its request body: never silent for the client timeout,
/// and, after a grace period, never slower on average than a minimum rate (Kestrel's
/// `MinRequestBodyDataRate`; nginx's `client_body_timeout` is the silence rule alone).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pace {
    /// When the server first waited for the body.
    pub(crate) started: std::time::Instant,
    /// The longest silence.
    pub(crate) client_timeout: Duration,
    /// Bytes per second; 0 for no minimum.
    pub(crate) min_rate: u64,
    /// How long the minimum rate does not apply.
    pub(crate) grace: Duration,
}

impl Pace {
    /// How long the next wait for body bytes may last, having received `received` bytes,
    /// and the fault if it runs out.
    pub(crate) fn next_wait(&self, received: u64) -> (Duration, Fault) {
        if self.min_rate == 0 {
            return (self.client_timeout, Fault::Silent);
        }
        // The average rate stays above the minimum while the elapsed time is under the
        // grace period plus the time the bytes received so far would take at that rate.
        let allowed = self.grace + Duration::from_secs_f64(received as f64 / self.min_rate as f64);
        let left = allowed.saturating_sub(self.started.elapsed());
        if left < self.client_timeout {
            (left, Fault::TooSlow)
        } else {
            (self.client_timeout, Fault::Silent)
        }
    }

    /// The message for a wait that ran out with `fault`.
    pub(crate) fn message(&self, fault: Fault) -> String {
        match fault {
            Fault::TooSlow => format!(
                "the client sent the request body slower than {} bytes a second",
                self.min_rate
            ),
            _ => format!(
                "the client sent none of the rest of the request body for {:?}",
                self.client_timeout
            ),
        }
    }
}

/// A request body as it reaches the Python thread: what the event loop read ahead, and
/// the rest still with the client, if any.
#[derive(Debug, Default)]
pub(crate) struct RequestBody {
    pub(crate) prefix: Vec<Bytes>,
    pub(crate) rest: Option<Incoming>,
}

/// Reads up to `buffer` bytes of `body` on the event loop (the whole body, when it is no
/// larger), pacing the client with `pace`: a client that dawdles over a small upload then
/// holds no Python thread. A body declared larger than `buffer` is not read ahead.
///
/// # Errors
/// The client's fault: a body over `limit` bytes, a malformed body, silence or slowness.
pub(crate) async fn read_ahead(
    mut body: Incoming,
    buffer: usize,
    limit: u64,
    pace: &Pace,
) -> Result<RequestBody, Fault> {
    let mut read = RequestBody::default();
    if body.is_end_stream() {
        return Ok(read);
    }
    if body.size_hint().lower() > buffer as u64 {
        read.rest = Some(body);
        return Ok(read);
    }
    let mut received = 0u64;
    while received <= buffer as u64 {
        let Some(data) = next_data(&mut body, &mut received, limit, pace, &mut None).await? else {
            return Ok(read);
        };
        read.prefix.push(data);
        if body.is_end_stream() {
            return Ok(read);
        }
    }
    read.rest = Some(body);
    Ok(read)
}

/// The least a read must want beyond what is buffered for the event loop to gather it
/// ([`State::pump`]).
const PUMP: usize = 64 * 1024;

/// What [`gather`] read: the frames, the body to go on with (None at its end or after a
/// fault), the count of bytes received so far, and the client's fault, if any, with what
/// hyper said of a broken body.
struct Gathered {
    frames: Vec<Bytes>,
    body: Option<Incoming>,
    received: u64,
    fault: Option<Fault>,
    detail: Option<String>,
}

/// Reads frames of `body` on the event loop until `needed` bytes have come or the body
/// ends, pacing the client and holding it to `limit` as frame-by-frame reading does.
async fn gather(
    mut body: Incoming,
    needed: usize,
    mut received: u64,
    limit: u64,
    pace: Pace,
) -> Gathered {
    let mut frames = Vec::new();
    let mut got = 0;
    let mut detail = None;
    let (body, fault) = loop {
        if got >= needed {
            break (Some(body), None);
        }
        match next_data(&mut body, &mut received, limit, &pace, &mut detail).await {
            Ok(Some(data)) => {
                got += data.len();
                frames.push(data);
            }
            Ok(None) => break (None, None),
            Err(fault) => break (None, Some(fault)),
        }
    };
    Gathered {
        frames,
        body,
        received,
        fault,
        detail,
    }
}

/// The rest of a request body of unknown length (chunked, or HTTP/2 without
/// content-length) that the application did not read: the server still holds it to the
/// body limit, so it reads it on the event loop before the response goes out.
pub(crate) struct Unread {
    body: Incoming,
    received: u64,
}

impl Unread {
    /// Reads the rest of the body and throws it away, pacing the client with `pace`; once
    /// it is read, the connection can serve the client's next request.
    ///
    /// # Errors
    /// The client's fault: the whole body over `limit` bytes (RFC 9110 §15.5.14's 413),
    /// broken framing, silence or slowness.
    pub(crate) async fn discard(mut self, limit: u64, pace: &Pace) -> Result<(), Fault> {
        while next_data(&mut self.body, &mut self.received, limit, pace, &mut None)
            .await?
            .is_some()
        {}
        Ok(())
    }
}

/// The next non-empty data frame of `body` (trailers are skipped), or None at its end,
/// counting its bytes into `received`; a broken body's error, as hyper words it, goes to
/// `detail`.
async fn next_data(
    body: &mut Incoming,
    received: &mut u64,
    limit: u64,
    pace: &Pace,
    detail: &mut Option<String>,
) -> Result<Option<Bytes>, Fault> {
    use http_body_util::BodyExt;
    loop {
        let (wait, fault) = pace.next_wait(*received);
        match tokio::time::timeout(wait, body.frame()).await {
            Err(_) => return Err(fault),
            Ok(None) => return Ok(None),
            Ok(Some(Err(err))) => {
                *detail = Some(err.to_string());
                return Err(Fault::Malformed);
            }
            Ok(Some(Ok(frame))) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                *received += data.len() as u64;
                if *received > limit {
                    return Err(Fault::TooLarge);
                }
                if !data.is_empty() {
                    return Ok(Some(data));
                }
            }
        }
    }
}

/// What the client did wrong while the application read its body; the server answers with
/// the matching 4xx instead of the 500 the application's exception would give.
#[derive(Debug, Default)]
pub(crate) struct ClientFault(AtomicU8);

/// One fault of [`ClientFault`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The body passed the server's limit: 413 (RFC 9110 §15.5.14).
    TooLarge = 1,
    /// The body's framing is broken (RFC 9112 §7.1): 400.
    Malformed = 2,
    /// The client sent nothing for the client timeout: 408 (RFC 9110 §15.5.9).
    Silent = 3,
    /// The client sent the body slower than the minimum rate: 408.
    TooSlow = 4,
}

impl ClientFault {
    /// Records `fault`; the first one recorded stands.
    pub(crate) fn set(&self, fault: Fault) {
        let _ = self
            .0
            .compare_exchange(0, fault as u8, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// The fault recorded, if any.
    pub(crate) fn get(&self) -> Option<Fault> {
        match self.0.load(Ordering::Relaxed) {
            1 => Some(Fault::TooLarge),
            2 => Some(Fault::Malformed),
            3 => Some(Fault::Silent),
            4 => Some(Fault::TooSlow),
            _ => None,
        }
    }
}

impl Input {
    /// `fault` records what the client did wrong, if reading fails because of it: a body
    /// over `limit` bytes, a malformed body, silence or slowness past `pace`.
    pub(crate) fn new(
        body: RequestBody,
        limit: u64,
        fault: Arc<ClientFault>,
        runtime: tokio::runtime::Handle,
        pace: Pace,
    ) -> Input {
        let mut buffer = Buffer::default();
        let mut received = 0;
        for data in body.prefix {
            received += data.len() as u64;
            buffer.push(data);
        }
        let rest = body.rest.filter(|rest| !rest.is_end_stream());
        Input {
            state: Mutex::new(State {
                body: rest,
                buffer,
                received,
                limit,
                fault,
                failed: None,
                runtime,
                pace,
            }),
        }
    }

    /// Takes the rest of a body of unknown length the application has not read, for the
    /// server to read before it answers (see [`Unread`]). None when the body is over, has
    /// failed, has a declared length (the server checked it before the call), or is in use.
    pub(crate) fn take_unread(&self) -> Option<Unread> {
        let mut state = self.state.try_lock().ok()?;
        if state.failed.is_some() {
            return None;
        }
        let body = state
            .body
            .take_if(|body| !body.is_end_stream() && body.size_hint().exact().is_none())?;
        Some(Unread {
            body,
            received: state.received,
        })
    }

    /// Lets go of the request body once the response is over, so that hyper can go on
    /// with the connection even while Python still holds a reference to environ.
    pub(crate) fn release(&self) {
        if let Ok(mut state) = self.state.try_lock() {
            state.body = None;
        }
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> PyResult<T>) -> PyResult<T> {
        // Reading one body from two threads at once has no meaning; refuse rather than
        // block while holding the GIL.
        let mut state = self
            .state
            .try_lock()
            .map_err(|_| PyRuntimeError::new_err("wsgi.input is being read by another thread"))?;
        f(&mut state)
    }
}

impl State {
    /// Receives the next data frame into the buffer; false at the end of the body.
    fn fetch(&mut self, py: Python<'_>) -> PyResult<bool> {
        if let Some(failed) = &self.failed {
            return Err(PyOSError::new_err(failed.clone()));
        }
        match self.receive(py) {
            Ok(more) => Ok(more),
            Err(reason) => {
                self.body = None;
                self.failed = Some(reason.clone());
                Err(PyOSError::new_err(reason))
            }
        }
    }

    fn receive(&mut self, py: Python<'_>) -> Result<bool, String> {
        loop {
            let Some(body) = self.body.as_mut() else {
                return Ok(false);
            };
            // A frame hyper has already received is taken without releasing the GIL; only
            // waiting for the client does that.
            let mut ready = Context::from_waker(Waker::noop());
            let frame = match Pin::new(&mut *body).poll_frame(&mut ready) {
                Poll::Ready(frame) => frame,
                Poll::Pending => {
                    let (wait, fault) = self.pace.next_wait(self.received);
                    let runtime = &self.runtime;
                    py.detach(|| {
                        // The timer is made inside block_on: it needs the runtime's context.
                        runtime.block_on(async {
                            tokio::time::timeout(
                                wait,
                                std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)),
                            )
                            .await
                        })
                    })
                    .map_err(|_| {
                        self.fault.set(fault);
                        self.fault_reason(fault, None)
                    })?
                }
            };
            match frame {
                None => {
                    self.body = None;
                    return Ok(false);
                }
                Some(Err(err)) => {
                    // A framing error (a bad chunk size or extension, data longer than its
                    // chunk) or a body cut short: either way the client's doing.
                    self.fault.set(Fault::Malformed);
                    return Err(self.fault_reason(Fault::Malformed, Some(&err.to_string())));
                }
                Some(Ok(frame)) => {
                    // Trailers carry no body bytes; keep reading.
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    self.received += data.len() as u64;
                    if self.received > self.limit {
                        self.fault.set(Fault::TooLarge);
                        return Err(self.fault_reason(Fault::TooLarge, None));
                    }
                    if !data.is_empty() {
                        self.buffer.push(data);
                        return Ok(true);
                    }
                }
            }
        }
    }

    /// What `wsgi.input` raises for the client's `fault`; `detail` is hyper's word for a
    /// broken body.
    fn fault_reason(&self, fault: Fault, detail: Option<&str>) -> String {
        match fault {
            Fault::TooLarge => format!(
                "the request body is larger than the server's limit of {} bytes",
                self.limit
            ),
            Fault::Malformed => format!(
                "reading the request body failed: {}",
                detail.unwrap_or("the client broke its framing or went away")
            ),
            Fault::Silent | Fault::TooSlow => self.pace.message(fault),
        }
    }

    /// When at least [`PUMP`] more bytes than the buffer holds are wanted, has the event
    /// loop gather them (up to `wanted` in all, plus at most one frame, or the end of the
    /// body) and hand them over at once: one wake-up of this thread for the lot, where
    /// reading frame by frame takes two thread switches a frame (hyper reads the next frame
    /// only once it is asked for). The GIL is released meanwhile. Smaller reads, and what
    /// is left after, go frame by frame.
    fn pump(&mut self, py: Python<'_>, wanted: usize) -> PyResult<()> {
        // After a failure there is no body: the frame-by-frame read that follows raises.
        let needed = wanted.saturating_sub(self.buffer.len);
        if needed < PUMP {
            return Ok(());
        }
        let Some(body) = self.body.take() else {
            return Ok(());
        };
        let runtime = self.runtime.clone();
        let gathering = runtime.spawn(gather(body, needed, self.received, self.limit, self.pace));
        let gathered = match py.detach(|| runtime.block_on(gathering)) {
            Ok(gathered) => gathered,
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            Err(_) => {
                let reason = "reading the request body was cut short: the server is stopping";
                self.failed = Some(reason.to_owned());
                return Err(PyOSError::new_err(reason));
            }
        };
        self.received = gathered.received;
        for data in gathered.frames {
            self.buffer.push(data);
        }
        self.body = gathered.body;
        if let Some(fault) = gathered.fault {
            self.fault.set(fault);
            let reason = self.fault_reason(fault, gathered.detail.as_deref());
            self.failed = Some(reason.clone());
            return Err(PyOSError::new_err(reason));
        }
        Ok(())
    }

    fn read<'py>(&mut self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        let wanted = size.filter(|s| *s >= 0).map_or(usize::MAX, |s| s as usize);
        self.pump(py, wanted)?;
        match size.filter(|s| *s >= 0) {
            None => while self.fetch(py)? {},
            Some(size) => while self.buffer.len < size as usize && self.fetch(py)? {},
        }
        let n = size
            .filter(|s| *s >= 0)
            .map_or(self.buffer.len, |s| (s as usize).min(self.buffer.len));
        self.buffer.take(py, n)
    }

    fn readline<'py>(
        &mut self,
        py: Python<'py>,
        size: Option<isize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let limit = size.filter(|s| *s >= 0).map_or(usize::MAX, |s| s as usize);
        let mut scanned = 0;
        loop {
            let window = limit.min(self.buffer.len);
            if let Some(end) = self.buffer.find(b'\n', scanned, window) {
                return self.buffer.take(py, end + 1);
            }
            if window == limit {
                return self.buffer.take(py, limit);
            }
            scanned = window;
            if !self.fetch(py)? {
                return self.buffer.take(py, self.buffer.len);
            }
        }
    }
}

#[pymethods]
impl Input {
    /// Reads up to `size` bytes, or to the end of the body when `size` is omitted,
    /// negative or None. Returns `b""` at the end.
    #[pyo3(signature = (size=None))]
    fn read<'py>(&self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        self.with_state(|state| state.read(py, size))
    }

    /// Reads one line, including its `b"\n"`, or at most `size` bytes of it.
    #[pyo3(signature = (size=None))]
    fn readline<'py>(&self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        self.with_state(|state| state.readline(py, size))
    }

    /// Reads lines until the end, or until about `hint` bytes have been read.
    #[pyo3(signature = (hint=None))]
    fn readlines<'py>(&self, py: Python<'py>, hint: Option<isize>) -> PyResult<Bound<'py, PyList>> {
        let hint = hint.filter(|h| *h > 0).map(|h| h as usize);
        self.with_state(|state| {
            let lines = PyList::empty(py);
            let mut total = 0;
            loop {
                let line = state.readline(py, None)?;
                let n = line.as_bytes().len();
                if n == 0 {
                    break;
                }
                lines.append(line)?;
                total += n;
                if hint.is_some_and(|h| total >= h) {
                    break;
                }
            }
            Ok(lines)
        })
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let line = self.with_state(|state| state.readline(py, None))?;
        Ok((!line.as_bytes().is_empty()).then_some(line))
    }
}

/// Received body bytes not yet read by the application.
///
/// Large frames are kept as hyper delivered them (no copy); small ones are gathered into
/// one growing block, so a body sent as many tiny chunks costs few blocks. Searches start
/// from the end, where the unsearched bytes are, so reading a long line frame by frame
/// stays linear.
#[derive(Default)]
struct Buffer {
    blocks: VecDeque<Bytes>,
    /// Small frames received after the last block, not yet sealed into one.
    tail: BytesMut,
    len: usize,
}

/// Frames smaller than this are copied into the tail rather than kept apart.
const SMALL_FRAME: usize = 4096;
/// The tail is sealed into a block at this size.
const BLOCK: usize = 64 * 1024;

impl Buffer {
    fn push(&mut self, bytes: Bytes) {
        self.len += bytes.len();
        if bytes.len() < SMALL_FRAME {
            self.tail.extend_from_slice(&bytes);
            if self.tail.len() >= BLOCK {
                self.seal();
            }
        } else {
            self.seal();
            self.blocks.push_back(bytes);
        }
    }

    fn seal(&mut self) {
        if !self.tail.is_empty() {
            self.blocks.push_back(self.tail.split().freeze());
        }
    }

    /// The offset of the first `needle` in `[from, to)`.
    fn find(&mut self, needle: u8, from: usize, to: usize) -> Option<usize> {
        self.seal();
        if from >= to {
            return None;
        }
        // Walk back to the block holding `from`: only the blocks after it are new.
        let mut index = self.blocks.len();
        let mut start = self.len;
        while index > 0 && start > from {
            index -= 1;
            start -= self.blocks[index].len();
        }
        for block in self.blocks.range(index..) {
            if start >= to {
                break;
            }
            let lo = from.saturating_sub(start);
            let hi = (to - start).min(block.len());
            if lo < hi
                && let Some(i) = block[lo..hi].iter().position(|b| *b == needle)
            {
                return Some(start + lo + i);
            }
            start += block.len();
        }
        None
    }

    /// Moves the first `n` bytes (n ≤ len) into a new Python bytes object: one copy, into
    /// memory that is not zeroed first (`PyBytes::new_with` would clear a 1 MiB upload
    /// before copying it, a tenth of the cost of echoing it).
    fn take<'py>(&mut self, py: Python<'py>, n: usize) -> PyResult<Bound<'py, PyBytes>> {
        self.seal();
        let n = n.min(self.len);
        let blocks = &mut self.blocks;
        let bytes = PyBytes::new_with_writer(py, n, |out| {
            let mut filled = 0;
            while filled < n {
                let Some(front) = blocks.front_mut() else {
                    break;
                };
                let k = front.len().min(n - filled);
                out.write_bytes(&front[..k])?;
                front.advance(k);
                if front.is_empty() {
                    blocks.pop_front();
                }
                filled += k;
            }
            Ok(())
        })?;
        self.len -= n;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffer(parts: &[&str]) -> Buffer {
        let mut buffer = Buffer::default();
        for part in parts {
            buffer.push(Bytes::copy_from_slice(part.as_bytes()));
        }
        buffer
    }

    #[test]
    fn find_searches_across_frames_within_the_window() {
        let mut b = buffer(&["ab", "c\nd", "\n"]);
        assert_eq!(b.find(b'\n', 0, b.len), Some(3));
        assert_eq!(b.find(b'\n', 4, b.len), Some(5));
        assert_eq!(b.find(b'\n', 0, 3), None);
        assert_eq!(b.find(b'x', 0, b.len), None);
        // Large frames stay separate blocks; the search crosses them.
        let big = "y".repeat(SMALL_FRAME);
        let mut b = buffer(&[&big, &big, "\n", &big]);
        assert_eq!(b.blocks.len(), 4, "large frames are kept apart, uncopied");
        assert_eq!(b.find(b'\n', 0, b.len), Some(2 * SMALL_FRAME));
        assert_eq!(b.find(b'\n', 2 * SMALL_FRAME, b.len), Some(2 * SMALL_FRAME));
        assert_eq!(b.find(b'\n', 2 * SMALL_FRAME + 1, b.len), None);
        assert_eq!(b.find(b'y', SMALL_FRAME + 5, b.len), Some(SMALL_FRAME + 5));
    }

    #[test]
    fn tiny_frames_are_merged_into_blocks() {
        let mut b = Buffer::default();
        for _ in 0..100_000 {
            b.push(Bytes::from_static(b"z"));
        }
        assert_eq!(b.len, 100_000);
        assert_eq!(b.find(b'z', 99_999, b.len), Some(99_999));
        assert_eq!(
            b.blocks.len(),
            2,
            "100,000 one-byte frames fit in two 64 KiB blocks"
        );
    }

    #[test]
    fn take_splits_frames() {
        Python::initialize();
        Python::attach(|py| {
            let mut b = buffer(&["hello ", "wor", "ld"]);
            assert_eq!(b.take(py, 8).unwrap().as_bytes(), b"hello wo");
            assert_eq!(b.len, 3);
            assert_eq!(b.take(py, 10).unwrap().as_bytes(), b"rld");
            assert_eq!(b.take(py, 1).unwrap().as_bytes(), b"");
        });
    }
}
