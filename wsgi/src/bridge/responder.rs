//! The response state machine one request's `start_response`, `write` and the response
//! iterable share (PEP 3333, "Buffering and Streaming"): the head goes out with the first
//! non-empty chunk; the body is held to the declared Content-Length; a HEAD request gets
//! the head GET would have had; a body shorter than declared aborts the connection.

use bytes::Bytes;
use http::HeaderValue;
use http::header;
use pyo3::exceptions::{PyOSError, PyRuntimeError};
use pyo3::prelude::*;

use super::head::Head;
use super::sender::{ClientGone, Sender};
use crate::body::ResponseBody;

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

    /// Records a checked head from `start_response`, to go out with the first chunk.
    pub(crate) fn set_head(&mut self, head: Head) {
        self.declared = head.content_length;
        self.remaining = head.content_length;
        self.pending = Some(head);
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::StatusCode;
    use http_body_util::BodyExt;
    use tokio::sync::oneshot;

    use super::*;
    use crate::bridge::head::{Fields, check_status};
    use crate::bridge::sender::{ReadPace, Reply};

    fn head(status: &str, fields: &[(&str, &str)]) -> Head {
        let (status, reason) = check_status(status).unwrap();
        let mut checked = Fields::default();
        for (name, value) in fields {
            checked.add(name, value).unwrap();
        }
        checked.into_head(status, reason)
    }

    /// A responder for a GET (or HEAD) request, the receiver of its response, and the
    /// runtime that drives the stream.
    fn make(head_only: bool) -> (Responder, oneshot::Receiver<Reply>, tokio::runtime::Runtime) {
        Python::initialize();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (reply, response) = oneshot::channel();
        let sender = Sender::new(
            reply,
            head_only,
            runtime.handle().clone(),
            ReadPace {
                client_timeout: Duration::from_secs(5),
                min_rate: 0,
                grace: Duration::ZERO,
            },
        );
        (Responder::new(sender), response, runtime)
    }

    /// Writes each chunk (each must be taken), then finishes the response.
    fn write_all(responder: &mut Responder, chunks: &[&'static [u8]]) {
        Python::attach(|py| {
            for chunk in chunks {
                let sent = responder.write(py, Bytes::from_static(chunk));
                assert!(sent.unwrap().is_ok(), "{chunk:?}");
            }
        });
        assert!(responder.finish(Bytes::new()).unwrap().is_ok());
    }

    /// The body's bytes, and whether it ended cleanly.
    fn read(runtime: &tokio::runtime::Runtime, body: ResponseBody) -> (Vec<u8>, bool) {
        runtime.block_on(async move {
            let mut body = body;
            let mut data = Vec::new();
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(frame) => data.extend_from_slice(&frame.into_data().unwrap()),
                    Err(_) => return (data, false),
                }
            }
            (data, true)
        })
    }

    #[test]
    fn the_head_goes_out_with_the_first_non_empty_chunk() {
        let (mut responder, mut response, runtime) = make(false);
        responder.set_head(head("200 OK", &[("Content-Type", "text/plain")]));
        Python::attach(|py| {
            assert!(responder.write(py, Bytes::new()).unwrap().is_ok());
            assert!(
                response.try_recv().is_err(),
                "an empty chunk must not send the head"
            );
            assert!(
                responder
                    .write(py, Bytes::from_static(b"hello "))
                    .unwrap()
                    .is_ok()
            );
            assert!(
                responder
                    .write(py, Bytes::from_static(b"world"))
                    .unwrap()
                    .is_ok()
            );
            assert!(responder.finish(Bytes::new()).unwrap().is_ok());
        });
        let response = response.try_recv().unwrap().response;
        assert_eq!(response.headers()["content-type"], "text/plain");
        assert_eq!(
            read(&runtime, response.into_body()),
            (b"hello world".to_vec(), true)
        );
    }

    #[test]
    fn a_body_over_its_content_length_is_cut_and_one_under_it_aborts() {
        let (mut responder, mut response, runtime) = make(false);
        responder.set_head(head("200 OK", &[("Content-Length", "5")]));
        write_all(&mut responder, &[b"abc", b"defgh"]);
        let body = response.try_recv().unwrap().response.into_body();
        assert_eq!(read(&runtime, body), (b"abcde".to_vec(), true));

        let (mut responder, mut response, runtime) = make(false);
        responder.set_head(head("200 OK", &[("Content-Length", "10")]));
        write_all(&mut responder, &[b"abc"]);
        let body = response.try_recv().unwrap().response.into_body();
        assert_eq!(
            read(&runtime, body),
            (b"abc".to_vec(), false),
            "a short body must not end cleanly"
        );
    }

    #[test]
    fn a_whole_body_shorter_than_declared_is_aborted_too() {
        let (mut responder, mut response, runtime) = make(false);
        responder.set_head(head("200 OK", &[("Content-Length", "10")]));
        assert!(
            responder
                .finish(Bytes::from_static(b"short"))
                .unwrap()
                .is_ok()
        );
        let body = response.try_recv().unwrap().response.into_body();
        assert_eq!(read(&runtime, body), (b"short".to_vec(), false));
    }

    #[test]
    fn head_gets_the_length_get_would_have_had_and_no_body() {
        let (mut responder, mut response, runtime) = make(true);
        responder.set_head(head("200 OK", &[]));
        assert!(
            responder
                .finish(Bytes::from_static(b"twelve bytes"))
                .unwrap()
                .is_ok()
        );
        let response = response.try_recv().unwrap().response;
        assert_eq!(response.headers()["content-length"], "12");
        assert_eq!(read(&runtime, response.into_body()), (Vec::new(), true));
    }

    #[test]
    fn no_body_goes_out_for_204() {
        let (mut responder, mut response, runtime) = make(false);
        responder.set_head(head("204 No Content", &[]));
        Python::attach(|py| {
            assert!(
                responder
                    .write(py, Bytes::from_static(b"ignored"))
                    .unwrap()
                    .is_ok()
            )
        });
        assert!(responder.finish(Bytes::new()).unwrap().is_ok());
        let response = response.try_recv().unwrap().response;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert_eq!(read(&runtime, response.into_body()), (Vec::new(), true));
    }

    #[test]
    fn misuse_raises_instead_of_losing_data() {
        let (mut responder, _response, _runtime) = make(false);
        Python::attach(|py| {
            let err = responder.write(py, Bytes::from_static(b"x")).unwrap_err();
            assert!(
                err.to_string()
                    .contains("without calling start_response() first"),
                "{err}"
            );
            responder.set_head(head("200 OK", &[]));
            assert!(
                responder
                    .finish(Bytes::from_static(b"done"))
                    .unwrap()
                    .is_ok()
            );
            let err = responder
                .write(py, Bytes::from_static(b"late"))
                .unwrap_err();
            assert!(
                err.to_string().contains("after the response was complete"),
                "{err}"
            );
        });
    }

    #[test]
    fn a_client_gone_before_the_head_is_reported() {
        let (mut responder, response, _runtime) = make(false);
        drop(response);
        responder.set_head(head("200 OK", &[]));
        Python::attach(|py| {
            assert!(matches!(
                responder.write(py, Bytes::from_static(b"x")).unwrap(),
                Err(ClientGone)
            ));
        });
    }
}
