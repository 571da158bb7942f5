//! `wsgi.input`: the request body, streamed from hyper as the application reads it.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{Buf, Bytes};
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
/// client. The stream ends at the end of the body (`wsgi.input_terminated`), whatever
/// `size` asks for. A body larger than the server's limit raises `OSError` and the
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
    too_large: Arc<AtomicBool>,
}

impl Input {
    /// `too_large` is set when the body passes `limit` bytes.
    pub(crate) fn new(body: Incoming, limit: u64, too_large: Arc<AtomicBool>) -> Input {
        let body = (!body.is_end_stream()).then_some(body);
        Input {
            state: Mutex::new(State {
                body,
                buffer: Buffer::default(),
                received: 0,
                limit,
                too_large,
            }),
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
        loop {
            let Some(body) = self.body.as_mut() else {
                return Ok(false);
            };
            let frame = py.detach(|| {
                futures_executor::block_on(std::future::poll_fn(|cx| {
                    Pin::new(&mut *body).poll_frame(cx)
                }))
            });
            match frame {
                None => {
                    self.body = None;
                    return Ok(false);
                }
                Some(Err(err)) => {
                    self.body = None;
                    return Err(PyOSError::new_err(format!(
                        "reading the request body failed: {err}"
                    )));
                }
                Some(Ok(frame)) => {
                    // Trailers carry no body bytes; keep reading.
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    self.received += data.len() as u64;
                    if self.received > self.limit {
                        self.body = None;
                        self.too_large.store(true, Ordering::Relaxed);
                        return Err(PyOSError::new_err(format!(
                            "the request body is larger than the server's limit of {} bytes",
                            self.limit
                        )));
                    }
                    if !data.is_empty() {
                        self.buffer.push(data);
                        return Ok(true);
                    }
                }
            }
        }
    }

    fn read<'py>(&mut self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
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

/// Received body bytes not yet read by the application, as the frames arrived.
#[derive(Default)]
struct Buffer {
    chunks: VecDeque<Bytes>,
    len: usize,
}

impl Buffer {
    fn push(&mut self, bytes: Bytes) {
        self.len += bytes.len();
        self.chunks.push_back(bytes);
    }

    /// The offset of the first `needle` in `[from, to)`.
    fn find(&self, needle: u8, from: usize, to: usize) -> Option<usize> {
        let mut offset = 0;
        for chunk in &self.chunks {
            let end = offset + chunk.len();
            if end > from && offset < to {
                let start = from.saturating_sub(offset);
                let stop = (to - offset).min(chunk.len());
                if let Some(i) = chunk[start..stop].iter().position(|b| *b == needle) {
                    return Some(offset + start + i);
                }
            }
            if end >= to {
                break;
            }
            offset = end;
        }
        None
    }

    /// Moves the first `n` bytes (n ≤ len) into a new Python bytes object: one copy.
    fn take<'py>(&mut self, py: Python<'py>, n: usize) -> PyResult<Bound<'py, PyBytes>> {
        let n = n.min(self.len);
        let chunks = &mut self.chunks;
        let bytes = PyBytes::new_with(py, n, |out| {
            let mut filled = 0;
            while filled < n {
                let Some(front) = chunks.front_mut() else {
                    break;
                };
                let k = front.len().min(n - filled);
                out[filled..filled + k].copy_from_slice(&front[..k]);
                front.advance(k);
                if front.is_empty() {
                    chunks.pop_front();
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
        let b = buffer(&["ab", "c\nd", "\n"]);
        assert_eq!(b.find(b'\n', 0, b.len), Some(3));
        assert_eq!(b.find(b'\n', 4, b.len), Some(5));
        assert_eq!(b.find(b'\n', 0, 3), None);
        assert_eq!(b.find(b'x', 0, b.len), None);
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
