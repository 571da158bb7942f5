//! `start_response`, `write` and the response sender: status and headers checked, sent with
//! the first non-empty chunk, then the body streamed with backpressure.

use std::borrow::Cow;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyTuple};
use tokio::sync::oneshot;

use crate::body::{ResponseBody, StreamSender};

/// How many chunks may wait between the Python thread and the connection: small, so a
/// slow client slows the application instead of growing memory.
const STREAM_DEPTH: usize = 4;

/// Status and headers given to `start_response`, checked, not yet sent.
#[derive(Debug)]
pub(crate) struct Head {
    status: StatusCode,
    reason: Option<Bytes>,
    headers: HeaderMap,
    content_length: Option<u64>,
    close: bool,
}

impl Head {
    /// Whether the status forbids a body (RFC 9110 §6.4.1: 1xx, 204, 304).
    fn has_no_body(&self) -> bool {
        self.status.is_informational()
            || self.status == StatusCode::NO_CONTENT
            || self.status == StatusCode::NOT_MODIFIED
    }

    fn into_response(self, body: ResponseBody) -> Response<ResponseBody> {
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        if let Some(reason) = self.reason
            && let Ok(reason) = hyper::ext::ReasonPhrase::try_from(reason)
        {
            response.extensions_mut().insert(reason);
        }
        if self.close {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// The client went away, stopped reading for longer than the client timeout, or the
/// request was cancelled: stop producing the body.
#[derive(Debug)]
pub(crate) struct ClientGone;

/// Where the response goes: the head once, then body chunks.
pub(crate) struct Sender {
    reply: Option<oneshot::Sender<Response<ResponseBody>>>,
    stream: Option<StreamSender>,
    /// A HEAD request: the head is sent, the body is not.
    pub(crate) head_only: bool,
    runtime: tokio::runtime::Handle,
    client_timeout: Duration,
}

impl Sender {
    pub(crate) fn new(
        reply: oneshot::Sender<Response<ResponseBody>>,
        head_only: bool,
        runtime: tokio::runtime::Handle,
        client_timeout: Duration,
    ) -> Sender {
        Sender {
            reply: Some(reply),
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

    /// Sends a complete response (head and whole body) if nothing was sent yet.
    pub(crate) fn send_whole(
        &mut self,
        response: Response<ResponseBody>,
    ) -> Result<(), ClientGone> {
        let reply = self.reply.take().ok_or(ClientGone)?;
        reply.send(response).map_err(|_| ClientGone)
    }

    /// Sends the head with the first chunk and opens the stream for the rest.
    fn start_stream(&mut self, head: Head, first: Bytes) -> Result<(), ClientGone> {
        if self.head_only || head.has_no_body() {
            return self.send_whole(head.into_response(ResponseBody::empty()));
        }
        let (body, sender) = ResponseBody::stream(first, STREAM_DEPTH);
        self.stream = Some(sender);
        self.send_whole(head.into_response(body))
    }

    /// Sends one chunk of a started stream, waiting (without the GIL) while the client is
    /// behind, for at most the client timeout.
    fn send_chunk(&mut self, py: Python<'_>, chunk: Bytes) -> Result<(), ClientGone> {
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
    fn end_stream(&mut self) {
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

/// The state one request's `start_response` and `write` share with the server.
pub(crate) struct Responder {
    pub(crate) sender: Sender,
    pending: Option<Head>,
    /// The application's Content-Length, if it gave one.
    declared: Option<u64>,
    /// Bytes still allowed by `declared`.
    remaining: Option<u64>,
    truncated: bool,
    /// The response is over: later writes are errors, not silently dropped data.
    finished: bool,
}

impl Responder {
    pub(crate) fn new(sender: Sender) -> Responder {
        Responder {
            sender,
            pending: None,
            declared: None,
            remaining: None,
            truncated: false,
            finished: false,
        }
    }

    /// Sends one body chunk: the head goes with the first non-empty one (PEP 3333,
    /// "Buffering and Streaming"). A chunk beyond the declared Content-Length is cut.
    pub(crate) fn write(
        &mut self,
        py: Python<'_>,
        mut chunk: Bytes,
    ) -> PyResult<Result<(), ClientGone>> {
        if self.finished {
            return Err(PyOSError::new_err(
                "write() after the response was complete",
            ));
        }
        if chunk.is_empty() {
            return Ok(Ok(()));
        }
        if let Some(remaining) = &mut self.remaining {
            if chunk.len() as u64 > *remaining {
                if !self.truncated {
                    tracing::warn!(
                        "the application sent more bytes than its Content-Length; the excess is dropped"
                    );
                    self.truncated = true;
                }
                chunk.truncate(*remaining as usize);
            }
            *remaining -= chunk.len() as u64;
            if chunk.is_empty() {
                return Ok(Ok(()));
            }
        }
        if self.sender.started() {
            return Ok(self.sender.send_chunk(py, chunk));
        }
        let head = self.take_head()?;
        Ok(self.sender.start_stream(head, chunk))
    }

    /// Finishes after the iterable is exhausted: a head not yet sent goes out with `body`
    /// (the whole body, from a list); a started stream is checked against Content-Length.
    pub(crate) fn finish(&mut self, body: Bytes) -> PyResult<Result<(), ClientGone>> {
        if self.finished {
            return Ok(Ok(()));
        }
        self.finished = true;
        if self.sender.started() {
            match (self.declared, self.remaining.filter(|r| *r > 0)) {
                (Some(declared), Some(missing)) if self.sender.stream.is_some() => {
                    tracing::warn!("{}", short_body(declared - missing, declared));
                    self.sender.abort();
                }
                _ => self.sender.end_stream(),
            }
            return Ok(Ok(()));
        }
        let mut head = self.take_head()?;
        let mut body = body;
        if head.has_no_body() || self.sender.head_only {
            // The head describes the body GET would have had: its length, when known.
            if self.sender.head_only && head.content_length.is_none() && !head.has_no_body() {
                head.headers
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
            }
            return Ok(self
                .sender
                .send_whole(head.into_response(ResponseBody::empty())));
        }
        if let Some(declared) = head.content_length {
            if (body.len() as u64) < declared {
                tracing::warn!("{}", short_body(body.len() as u64, declared));
                let sent = self.sender.start_stream(head, body);
                self.sender.abort();
                return Ok(sent);
            }
            body.truncate(declared as usize);
        }
        Ok(self
            .sender
            .send_whole(head.into_response(ResponseBody::full(body))))
    }

    fn take_head(&mut self) -> PyResult<Head> {
        self.pending.take().ok_or_else(|| {
            PyRuntimeError::new_err(
                "the application produced body data without calling start_response() first",
            )
        })
    }

    /// Whether start_response has been called (and its head not sent).
    pub(crate) fn has_head(&self) -> bool {
        self.pending.is_some()
    }
}

fn short_body(sent: u64, declared: u64) -> String {
    format!(
        "the application's body has {sent} bytes, less than its Content-Length {declared}; closing the connection"
    )
}

/// The `start_response` callable (PEP 3333, "The start_response() Callable").
#[pyclass(frozen, module = "torsion", name = "StartResponse")]
pub(crate) struct StartResponse {
    pub(crate) responder: Mutex<Responder>,
}

impl StartResponse {
    pub(crate) fn lock(&self) -> PyResult<std::sync::MutexGuard<'_, Responder>> {
        self.responder.try_lock().map_err(|_| {
            PyRuntimeError::new_err(
                "start_response and write may not be used from two threads at once",
            )
        })
    }
}

#[pymethods]
impl StartResponse {
    /// `start_response(status, response_headers, exc_info=None)`: checks and records the
    /// head, and returns `write`. With `exc_info` after the head was sent, re-raises it.
    #[pyo3(signature = (status, response_headers, exc_info=None))]
    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        status: &Bound<'py, PyAny>,
        response_headers: &Bound<'py, PyAny>,
        exc_info: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let exc_info = exc_info.filter(|e| !e.is_none());
        {
            let mut responder = slf.get().lock()?;
            if let Some(exc_info) = exc_info {
                if responder.sender.started() {
                    // PEP 3333: "the start_response callable must raise an error, and should
                    // re-raise using the exc_info tuple".
                    let value = exc_info.cast::<PyTuple>()?.get_item(1)?;
                    return Err(PyErr::from_value(value));
                }
            } else if responder.has_head() || responder.sender.started() {
                return Err(PyRuntimeError::new_err(
                    "start_response() was called a second time without exc_info",
                ));
            }
            let head = parse_head(status, response_headers)?;
            responder.declared = head.content_length;
            responder.remaining = head.content_length;
            responder.pending = Some(head);
        }
        slf.getattr(pyo3::intern!(py, "write"))
    }

    /// The `write(data)` callable: sends `data` (bytes) at once, before returning.
    fn write(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let chunk = body_chunk(data)?;
        let mut responder = self.lock()?;
        match responder.write(py, chunk)? {
            Ok(()) => Ok(()),
            Err(ClientGone) => Err(PyOSError::new_err("the client has disconnected")),
        }
    }
}

/// Body items at least this long are sent without copying: the bytes object itself is
/// kept alive until hyper has written it.
const ZERO_COPY_FROM: usize = 4096;

/// A body item as bytes; PEP 3333 allows only bytestrings.
pub(crate) fn body_chunk(item: &Bound<'_, PyAny>) -> PyResult<Bytes> {
    match item.cast::<PyBytes>() {
        Ok(bytes) if bytes.as_bytes().len() >= ZERO_COPY_FROM => Ok(Bytes::from_owner(
            pyo3::pybacked::PyBackedBytes::from(bytes.clone()),
        )),
        Ok(bytes) => Ok(Bytes::copy_from_slice(bytes.as_bytes())),
        Err(_) => Err(PyTypeError::new_err(format!(
            "the response body must be an iterable of bytes, but it yielded a {}",
            item.get_type().name()?
        ))),
    }
}

/// Hop-by-hop fields belong to the connection, which is the server's (PEP 3333).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn native_str<'a>(value: &'a Bound<'_, PyAny>, what: &str) -> PyResult<std::borrow::Cow<'a, str>> {
    let text = value.cast::<PyString>().map_err(|_| {
        PyTypeError::new_err(format!(
            "start_response(): {what} must be a str, not {}",
            value
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })?;
    text.to_cow()
}

/// Latin-1 bytes of a native string; PEP 3333 headers are latin-1. ASCII text (nearly
/// every header) is borrowed as it is. `what` names the text in the error, and is only
/// called when there is one.
fn latin1_bytes<'a>(text: &'a str, what: impl FnOnce() -> String) -> PyResult<Cow<'a, [u8]>> {
    if text.is_ascii() {
        return Ok(Cow::Borrowed(text.as_bytes()));
    }
    text.chars()
        .map(|c| u8::try_from(c as u32).ok())
        .collect::<Option<Vec<u8>>>()
        .map(Cow::Owned)
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "start_response(): {} {text:?} has characters outside latin-1",
                what()
            ))
        })
}

fn parse_head(status: &Bound<'_, PyAny>, headers: &Bound<'_, PyAny>) -> PyResult<Head> {
    let status_text = native_str(status, "status")?;
    let bad_status = || {
        PyValueError::new_err(format!(
            "start_response(): status {status_text:?} is not of the form \"200 OK\" (three digits, a space, a reason phrase)"
        ))
    };
    let (code, reason) = status_text.split_once(' ').unwrap_or((&status_text, ""));
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad_status());
    }
    let status = code
        .parse::<u16>()
        .ok()
        .and_then(|c| StatusCode::from_u16(c).ok())
        // 1xx are not final responses; upgrades (101) are not supported.
        .filter(|s| s.as_u16() >= 200)
        .ok_or_else(bad_status)?;
    let reason = latin1_bytes(reason, || "reason phrase".to_owned())?;
    if reason.iter().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return Err(bad_status());
    }
    let reason = (status.canonical_reason().map(str::as_bytes) != Some(&reason[..])
        && !reason.is_empty())
    .then(|| Bytes::from(reason.into_owned()));

    let mut map = HeaderMap::new();
    let mut content_length = None;
    let mut close = false;
    for item in headers.try_iter().map_err(|_| {
        PyTypeError::new_err(
            "start_response(): response_headers must be a list of (name, value) tuples",
        )
    })? {
        let item = item?;
        let pair = item
            .cast::<PyTuple>()
            .ok()
            .filter(|t| t.len() == 2)
            .ok_or_else(|| {
                PyTypeError::new_err(format!(
                    "start_response(): each header must be a (name, value) tuple, not {}",
                    item.repr().map(|r| r.to_string()).unwrap_or_default()
                ))
            })?;
        let name_item = pair.get_item(0)?;
        let value_item = pair.get_item(1)?;
        let name_text = native_str(&name_item, "a header name")?;
        let value_text = native_str(&value_item, "a header value")?;
        let name = HeaderName::from_bytes(name_text.as_bytes()).map_err(|_| {
            PyValueError::new_err(format!(
                "start_response(): header name {name_text:?} is not a valid field name (RFC 9110 §5.1: letters, digits and !#$%&'*+-.^_`|~)"
            ))
        })?;
        let value = HeaderValue::from_bytes(&latin1_bytes(&value_text, || format!("the value of {name_text}"))?)
            .map_err(|_| {
                PyValueError::new_err(format!(
                    "start_response(): the value of header {name_text:?} contains a control character (CR, LF or NUL are not allowed)"
                ))
            })?;
        if HOP_BY_HOP.contains(&name.as_str()) {
            if name == header::CONNECTION && value_text.trim().eq_ignore_ascii_case("close") {
                close = true;
            } else {
                tracing::warn!(header = %name, "dropping a hop-by-hop header the application set (PEP 3333 leaves them to the server)");
            }
            continue;
        }
        if name == header::CONTENT_LENGTH {
            // RFC 9110 §8.6: digits only; the same value repeated is one value; two
            // different values would frame the body two ways.
            let text = value_text.trim();
            let length = (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
                .then(|| text.parse::<u64>().ok())
                .flatten()
                .ok_or_else(|| {
                    PyValueError::new_err(format!(
                        "start_response(): Content-Length {value_text:?} is not a whole number of bytes"
                    ))
                })?;
            match content_length {
                Some(earlier) if earlier != length => {
                    return Err(PyValueError::new_err(format!(
                        "start_response(): two different Content-Length values, {earlier} and {length}"
                    )));
                }
                Some(_) => continue,
                None => {
                    content_length = Some(length);
                    // Sent as the application wrote it when that is already canonical
                    // (no spaces, no leading zeros): making a new value costs as much as
                    // the rest of the head.
                    let canonical = text.len() == value_text.len()
                        && (text.len() == 1 || !text.starts_with('0'));
                    let value = if canonical {
                        value
                    } else {
                        HeaderValue::from(length)
                    };
                    map.insert(header::CONTENT_LENGTH, value);
                    continue;
                }
            }
        }
        map.append(name, value);
    }
    Ok(Head {
        status,
        reason,
        headers: map,
        content_length,
        close,
    })
}

/// `wsgi.file_wrapper(filelike, block_size=8192)`: iterates the file in blocks and closes
/// it when the server closes the iterable (PEP 3333, "Optional Platform-Specific File
/// Handling").
#[pyclass(frozen, module = "torsion", name = "FileWrapper")]
pub(crate) struct FileWrapper {
    filelike: Py<PyAny>,
    block_size: usize,
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, block_size=8192))]
    fn new(filelike: Py<PyAny>, block_size: isize) -> FileWrapper {
        FileWrapper {
            filelike,
            block_size: block_size.max(1) as usize,
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let block = self
            .filelike
            .bind(py)
            .call_method1(pyo3::intern!(py, "read"), (self.block_size,))?;
        Ok((block.len()? > 0).then_some(block))
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let filelike = self.filelike.bind(py);
        if filelike.hasattr(pyo3::intern!(py, "close"))? {
            filelike.call_method0(pyo3::intern!(py, "close"))?;
        }
        Ok(())
    }
}

/// `wsgi.errors`: text written here goes to the server log, a line per record.
#[pyclass(frozen, module = "torsion", name = "ErrorStream")]
pub(crate) struct ErrorStream {
    partial: Mutex<String>,
}

impl ErrorStream {
    pub(crate) fn new() -> ErrorStream {
        ErrorStream {
            partial: Mutex::new(String::new()),
        }
    }

    fn emit(&self, all: bool) {
        let Ok(mut partial) = self.partial.lock() else {
            return;
        };
        while let Some(end) = partial.find('\n') {
            let line: String = partial.drain(..=end).collect();
            tracing::warn!(target: "wsgi.errors", "{}", line.trim_end_matches(['\r', '\n']));
        }
        if all && !partial.is_empty() {
            tracing::warn!(target: "wsgi.errors", "{}", partial.as_str());
            partial.clear();
        }
    }
}

#[pymethods]
impl ErrorStream {
    fn write(&self, text: &str) -> usize {
        if let Ok(mut partial) = self.partial.lock() {
            partial.push_str(text);
        }
        self.emit(false);
        text.chars().count()
    }

    fn writelines(&self, lines: &Bound<'_, PyAny>) -> PyResult<()> {
        for line in lines.try_iter()? {
            self.write(&line?.extract::<String>()?);
        }
        Ok(())
    }

    fn flush(&self) {
        self.emit(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pyo3::types::PyList;

    fn parse(py: Python<'_>, status: &str, headers: &[(&str, &str)]) -> PyResult<Head> {
        let list = PyList::new(py, headers)?;
        parse_head(&PyString::new(py, status), list.as_any())
    }

    #[test]
    fn content_length_is_sent_in_canonical_form() {
        Python::initialize();
        Python::attach(|py| {
            for (given, sent) in [("13", "13"), (" 13 ", "13"), ("0013", "13"), ("0", "0")] {
                let head = parse(py, "200 OK", &[("Content-Length", given)]).unwrap();
                assert_eq!(
                    head.content_length,
                    Some(sent.parse().unwrap()),
                    "{given:?}"
                );
                assert_eq!(head.headers[header::CONTENT_LENGTH], sent, "{given:?}");
            }
            for bad in ["", "-1", "1.5", "0x10", "12 13"] {
                let err = parse(py, "200 OK", &[("Content-Length", bad)])
                    .err()
                    .unwrap();
                assert!(
                    err.to_string().contains("whole number of bytes"),
                    "{bad:?}: {err}"
                );
            }
        });
    }

    #[test]
    fn header_values_are_latin1_and_reasons_kept_only_when_not_canonical() {
        Python::initialize();
        Python::attach(|py| {
            let head = parse(py, "299 Quite Fine", &[("X-Caf", "caf\u{e9}")]).unwrap();
            assert_eq!(head.headers["x-caf"].as_bytes(), b"caf\xe9");
            assert_eq!(head.reason.as_deref(), Some(&b"Quite Fine"[..]));
            assert!(parse(py, "200 OK", &[]).unwrap().reason.is_none());
            let err = parse(py, "200 OK", &[("X-Snow", "\u{2603}")])
                .err()
                .unwrap();
            assert!(err.to_string().contains("the value of X-Snow"), "{err}");
        });
    }
}
