//! The `start_response` callable and its `write` (PEP 3333, "The start_response()
//! Callable"), and the conversion of body items to bytes: the Python side of the response.

use std::sync::Mutex;

use bytes::Bytes;
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use super::head::{Fields, Head, HeadError, check_status};
use super::responder::Responder;
use super::sender::ClientGone;

impl From<HeadError> for PyErr {
    fn from(err: HeadError) -> PyErr {
        PyValueError::new_err(err.0)
    }
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
            responder.set_head(head);
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

/// Reads `status` and `response_headers` as PEP 3333 gives them (a native string, and a
/// list of `(name, value)` tuples of native strings) and checks them ([`super::head`]).
pub(crate) fn parse_head(status: &Bound<'_, PyAny>, headers: &Bound<'_, PyAny>) -> PyResult<Head> {
    let (status, reason) = check_status(&native_str(status, "status")?)?;
    let mut fields = Fields::default();
    // A plain list, as PEP 3333 asks, is read in place; any other iterable through the
    // iterator protocol.
    if let Ok(list) = headers.cast_exact::<PyList>() {
        for item in list.iter() {
            add_field(&mut fields, &item)?;
        }
    } else {
        for item in headers.try_iter().map_err(|_| {
            PyTypeError::new_err(
                "start_response(): response_headers must be a list of (name, value) tuples",
            )
        })? {
            add_field(&mut fields, &item?)?;
        }
    }
    Ok(fields.into_head(status, reason))
}

/// Checks and adds one `(name, value)` item of `response_headers`.
fn add_field(fields: &mut Fields, item: &Bound<'_, PyAny>) -> PyResult<()> {
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
    let name = pair.get_borrowed_item(0)?;
    let value = pair.get_borrowed_item(1)?;
    fields.add(
        &native_str(&name, "a header name")?,
        &native_str(&value, "a header value")?,
    )?;
    Ok(())
}
