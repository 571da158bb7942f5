//! The bridge between the async server and Python: a pool of Python threads, and the
//! per-request call of the application (PEP 3333, "Specification Details").
//!
//! Its rooms, leaves first: [`interpreter`] starts CPython (or joins it) and holds the
//! errors before the first request; [`application`] finds and loads the application;
//! [`environ`] builds the environ dict; [`input`] is `wsgi.input`; [`head`] checks a
//! response head without Python; [`sender`] carries head and body to the connection;
//! [`responder`] is the state machine `start_response`, `write` and the iterable share;
//! [`start_response`] and [`streams`] are the Python objects the application sees. This
//! module joins them into [`Bridge`], which runs them on the [`crate::pool`].

pub(crate) mod application;
pub(crate) mod channel;
pub(crate) mod environ;
pub(crate) mod head;
pub(crate) mod input;
pub(crate) mod interpreter;
pub(crate) mod responder;
pub(crate) mod sender;
pub(crate) mod start_response;
pub(crate) mod streams;

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Method, Response, StatusCode, header};
use hyper::body::Incoming;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString, PyTuple};
use tokio::sync::oneshot;

use self::application::Application;
pub use self::channel::Channel;
use self::environ::Constants;
use self::input::{ClientFault, Fault, Input, Pace, RequestBody, read_ahead};
use self::interpreter::{LoadError, describe};
use self::responder::Responder;
use self::sender::{ClientGone, ReadPace, Reply, Sender};
use self::start_response::{StartResponse, body_chunk};
use self::streams::{ErrorStream, FileWrapper};
use crate::body::{ResponseBody, plain, refusal};
use crate::config::ServerConfig;
use crate::pool::{Pool, Refused, Run};

/// What a Python thread is handed: a request, or a call of a repeating task.
///
/// Requests are the hot path and calls are rare: a box per request would cost more than
/// the queue's slots, which are as large as a request either way.
#[allow(clippy::large_enum_variant)]
enum Work {
    Request(Job),
    Call(Call),
}

/// A call of a Python callable without arguments (a timer's run), and where to say how
/// it went: `Err` holds the exception's traceback.
struct Call {
    task: Arc<Py<PyAny>>,
    done: oneshot::Sender<Result<(), String>>,
}

/// One request handed to a Python thread.
struct Job {
    /// The index of the application, in the order given to [`Bridge::new`].
    app: usize,
    parts: http::request::Parts,
    body: RequestBody,
    pace: Pace,
    channel: Arc<Channel>,
    reply: oneshot::Sender<Reply>,
}

/// Runs a WSGI application on a pool of Python threads.
///
/// [`Bridge::handle`] is called on the async runtime for each request; it never runs Python
/// and never waits for the GIL: it queues the request for the next free Python thread and
/// awaits the response head. The thread builds environ, calls the application, and sends
/// the body back chunk by chunk. The pool's threads stop when the bridge is dropped and
/// the queue is empty.
pub struct Bridge {
    pool: Pool<Work>,
    config: Arc<ServerConfig>,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

struct Worker {
    applications: Vec<Mounted>,
    constants: Constants,
    config: Arc<ServerConfig>,
    /// The runtime whose timers the Python threads wait on.
    runtime: tokio::runtime::Handle,
}

/// An application and the `SCRIPT_NAME` it is mounted at.
struct Mounted {
    object: Py<PyAny>,
    /// The prefix's bytes as a latin-1 native string (PEP 3333).
    script_name: Py<PyString>,
    /// The prefix's length in bytes.
    prefix: usize,
}

impl Bridge {
    /// Starts `config.threads` Python threads serving `applications`, each a pair of the
    /// `SCRIPT_NAME` it is mounted at (`""` for the root, else a path like `/flask`, with
    /// no trailing slash) and the application. The threads are shared: any of them runs
    /// any application. Must be called within the tokio runtime that will serve: the
    /// threads use its timers for client timeouts.
    ///
    /// # Errors
    /// [`LoadError::Interpreter`] if the shared objects cannot be created, or a thread
    /// cannot be started.
    pub fn new(
        applications: Vec<(String, Application)>,
        config: ServerConfig,
    ) -> Result<Bridge, LoadError> {
        let config = Arc::new(config);
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            LoadError::Interpreter("Bridge::new must be called within a tokio runtime".into())
        })?;
        let worker = Python::attach(|py| -> PyResult<Arc<Worker>> {
            let constants = Constants::new(
                py,
                &config.server_software,
                config.multiprocess,
                Bound::new(py, ErrorStream::new())?.into_any(),
                py.get_type::<FileWrapper>().into_any(),
            )?;
            let applications = applications
                .iter()
                .map(|(script_name, application)| {
                    Ok(Mounted {
                        object: application.object.clone_ref(py),
                        script_name: environ::latin1(py, script_name.as_bytes())?.unbind(),
                        prefix: script_name.len(),
                    })
                })
                .collect::<PyResult<_>>()?;
            Ok(Arc::new(Worker {
                applications,
                constants,
                config: config.clone(),
                runtime,
            }))
        })
        .map_err(|err| LoadError::Interpreter(err.to_string()))?;
        let pool =
            Pool::start(config.threads, config.max_queued_requests, worker).map_err(|err| {
                LoadError::Interpreter(format!("cannot start a Python thread: {err}"))
            })?;
        Ok(Bridge { pool, config })
    }

    /// A reader of the Python threads' state, for metrics.
    pub(crate) fn watch(&self) -> crate::pool::PoolWatch {
        self.pool.watch()
    }

    /// A handle to wait for the Python threads to finish once the bridge is dropped.
    pub(crate) fn threads(&self) -> crate::pool::PoolThreads {
        self.pool.threads()
    }

    /// Calls `task()` on one of the bridge's Python threads, in turn with the requests (as
    /// one more client), and resolves to how it went: `Err` holds the exception's
    /// traceback, as `traceback.format_exception` prints it, or says that the pool is
    /// closed or full. Used by repeating tasks ([`crate::Timer`]), which thus never run on
    /// the event loop nor take threads beyond `--threads`.
    pub(crate) async fn call(&self, task: Arc<Py<PyAny>>) -> Result<(), String> {
        let (done, outcome) = oneshot::channel();
        // Calls share one lane, so requests from clients take their turns between them.
        let lane = std::ptr::from_ref(self) as usize;
        match self.pool.submit(lane, Work::Call(Call { task, done })) {
            Ok(()) => {}
            Err(Refused::Full(_)) => {
                return Err("every Python thread is busy and the queue is full".into());
            }
            Err(Refused::Closed(_)) => return Err("the server is shutting down".into()),
        }
        outcome
            .await
            .unwrap_or_else(|_| Err("the Python thread running it stopped".into()))
    }

    /// The configuration the bridge serves with.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Serves one request with application `app` (its index in [`Bridge::new`]'s list),
    /// whose mount prefix the request's decoded path starts with: answers 413 at once for
    /// a declared body over the limit; reads a body of up to
    /// [`ServerConfig::request_buffer_size`] bytes on the event loop (408, 400 or 413 if
    /// the client fails at it); then queues the request for a Python thread and waits for
    /// the response head. `PATH_INFO` is the decoded path after the application's
    /// `SCRIPT_NAME` (PEP 3333, "environ Variables"). `channel` is the connection the
    /// request came on: one [`Channel`] for all of a connection's requests, so that their
    /// environs share its entries, and a new one for a request whose client a trusted proxy
    /// names.
    ///
    /// ACME http-01 validations are not answered here but by [`serve`](crate::serve),
    /// before any request reaches the bridge; a server that calls this from its own loop
    /// answers them with `torsion_endpoints::acme::http01_answer` first.
    ///
    /// # Panics
    /// If `app` is not an index of the list the bridge was made with.
    pub fn handle(
        &self,
        app: usize,
        request: http::Request<Incoming>,
        channel: Arc<Channel>,
    ) -> impl Future<Output = Response<ResponseBody>> + Send + '_ {
        // Taken apart before the future is made, so that the future holds the parts and
        // not the request as well: it is moved as it is made, at every layer above.
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let too_large = declared.is_some_and(|n| n > self.config.max_body_size);
        let (parts, body) = request.into_parts();
        self.serve(app, parts, body, channel, too_large)
    }

    /// [`Bridge::handle`] once the request is taken apart; `too_large` when its declared
    /// body is over the limit.
    async fn serve(
        &self,
        app: usize,
        parts: http::request::Parts,
        body: Incoming,
        channel: Arc<Channel>,
        too_large: bool,
    ) -> Response<ResponseBody> {
        if too_large {
            return too_large_response(self.config.max_body_size);
        }
        let pace = Pace {
            started: std::time::Instant::now(),
            client_timeout: self.config.client_timeout,
            min_rate: self.config.min_upload_rate,
            grace: self.config.upload_grace,
        };
        let body = match read_ahead(
            body,
            self.config.request_buffer_size,
            self.config.max_body_size,
            &pace,
        )
        .await
        {
            Ok(body) => body,
            Err(fault) => {
                let response = fault_response(fault, self.config.max_body_size);
                tracing::info!(
                    method = %parts.method,
                    path = parts.uri.path(),
                    peer = %channel.info.peer,
                    "the client's request body failed before the application was called: answering {}",
                    response.status()
                );
                return response;
            }
        };
        let (reply, response) = oneshot::channel();
        // The connection is the lane: its requests are served in turn with the others'.
        let lane = Arc::as_ptr(&channel) as usize;
        // For the log, should the unread rest of the body fail, which only a body not read
        // ahead whole can: reference counts, no copy, and none for most requests.
        let origin = body.rest.is_some().then(|| {
            (
                parts.method.clone(),
                parts.uri.clone(),
                channel.info.clone(),
            )
        });
        match self.pool.submit(
            lane,
            Work::Request(Job {
                app,
                parts,
                body,
                pace,
                channel,
                reply,
            }),
        ) {
            Ok(()) => {}
            Err(Refused::Full(_)) => {
                tracing::warn!(
                    "{} requests are already waiting for a Python thread; answering 503",
                    self.config.max_queued_requests
                );
                let mut busy = plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The server is busy; try again shortly.\n",
                );
                busy.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return busy;
            }
            Err(Refused::Closed(_)) => {
                return plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The server is shutting down.\n",
                );
            }
        }
        let Ok(Reply { response, unread }) = response.await else {
            // The Python thread dropped the request without answering (a panic).
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n");
        };
        let Some(unread) = unread else {
            return response;
        };
        // The application answered without reading all of a body of unknown length: the
        // body limit holds all the same (RFC 9112 §6.3 leaves the server to read or close).
        match unread.discard(self.config.max_body_size, &pace).await {
            Ok(()) => response,
            Err(fault) => {
                let refused = fault_response(fault, self.config.max_body_size);
                if let Some((method, uri, connection)) = origin {
                    tracing::info!(
                        %method,
                        path = uri.path(),
                        peer = %connection.peer,
                        "the application did not read the whole request body, and the rest failed: answering {} instead of {}",
                        refused.status(),
                        response.status()
                    );
                }
                refused
            }
        }
    }
}

impl Run<Work> for Worker {
    fn run(&self, py: Python<'_>, work: Work) {
        match work {
            Work::Request(job) => self.serve(py, job),
            Work::Call(Call { task, done }) => {
                let outcome = task
                    .bind(py)
                    .call0()
                    .map(drop)
                    .map_err(|err| traceback(py, &err));
                let _ = done.send(outcome);
            }
        }
    }
}

impl Worker {
    fn serve(&self, py: Python<'_>, job: Job) {
        let Job {
            app,
            parts,
            body,
            pace,
            channel,
            reply,
        } = job;
        if reply.is_closed() {
            // The client left (or reset its HTTP/2 stream) while the request waited.
            tracing::debug!(
                path = parts.uri.path(),
                "skipping a request nobody waits for"
            );
            return;
        }
        let head_only = parts.method == Method::HEAD;
        let fault = Arc::new(ClientFault::default());
        let sender = Sender::new(
            reply,
            head_only,
            self.runtime.clone(),
            ReadPace {
                client_timeout: self.config.client_timeout,
                min_rate: self.config.min_download_rate,
                grace: self.config.download_grace,
            },
        );
        type Called<'py> = (
            Bound<'py, StartResponse>,
            Bound<'py, Input>,
            Option<Bound<'py, PyAny>>,
        );
        let outcome = (|| -> PyResult<Called<'_>> {
            let input = Bound::new(
                py,
                Input::new(
                    body,
                    self.config.max_body_size,
                    fault.clone(),
                    self.runtime.clone(),
                    pace,
                ),
            )?;
            let application = &self.applications[app];
            let environ = environ::build(
                py,
                &parts,
                &channel,
                &self.constants,
                application.script_name.bind(py),
                application.prefix,
                input.clone().into_any(),
            )?;
            let start_response = Bound::new(
                py,
                StartResponse {
                    responder: std::sync::Mutex::new(Responder::new(sender)),
                },
            )?;
            let result = application
                .object
                .bind(py)
                .call1((environ, start_response.clone()));
            match result {
                Ok(result) => Ok((start_response, input, Some(result))),
                Err(err) => {
                    self.fail(py, &start_response, &parts, err, &fault);
                    Ok((start_response, input, None))
                }
            }
        })();
        let (start_response, input, result) = match outcome {
            Ok(pair) => pair,
            Err(err) => {
                // Building environ or start_response failed: a server defect; the reply was
                // dropped with the closure, which the async side answers with 500.
                tracing::error!(
                    path = parts.uri.path(),
                    "cannot call the application: {}",
                    describe(py, &err)
                );
                return;
            }
        };
        let Some(result) = result else {
            input.get().release();
            return;
        };
        if let Err(err) = self.respond(py, &start_response, &result, input.get()) {
            self.fail(py, &start_response, &parts, err, &fault);
        }
        // PEP 3333: close() is called whatever happened, client gone or error included.
        // Lists and tuples have none; looking it up would raise and catch an
        // AttributeError on every request.
        let plain_sequence =
            result.is_exact_instance_of::<PyList>() || result.is_exact_instance_of::<PyTuple>();
        if !plain_sequence
            && let Ok(true) = result.hasattr(intern!(py, "close"))
            && let Err(err) = result.call_method0(intern!(py, "close"))
        {
            tracing::error!(
                path = parts.uri.path(),
                "the response iterable's close() raised: {}",
                traceback(py, &err)
            );
        }
        input.get().release();
    }

    /// Sends the application's response: a list or tuple whole, any other iterable chunk by
    /// chunk as it is produced. When the head goes out only at the end, the application is
    /// done with `input`, and what it left unread goes with the head (see [`input::Unread`]).
    fn respond(
        &self,
        py: Python<'_>,
        start_response: &Bound<'_, StartResponse>,
        result: &Bound<'_, PyAny>,
        input: &Input,
    ) -> PyResult<()> {
        let finish = |body: Bytes| -> PyResult<()> {
            let mut responder = start_response.get().lock()?;
            if !responder.sender.started() {
                responder.sender.leave_unread(input.take_unread());
            }
            let _ = responder.finish(body)?;
            Ok(())
        };
        let whole = result.cast::<PyList>().is_ok() || result.cast::<PyTuple>().is_ok();
        if whole && !start_response.get().lock()?.sender.started() {
            let mut whole = Whole::default();
            // A plain list or tuple is read in place, without an iterator object.
            if let Ok(list) = result.cast_exact::<PyList>() {
                for item in list.iter() {
                    whole.add(body_chunk(&item)?);
                }
            } else if let Ok(tuple) = result.cast_exact::<PyTuple>() {
                for item in tuple.iter() {
                    whole.add(body_chunk(&item)?);
                }
            } else {
                for item in result.try_iter()? {
                    whole.add(body_chunk(&item?)?);
                }
            }
            return finish(whole.into_bytes());
        }
        for item in result.try_iter()? {
            let chunk = body_chunk(&item?)?;
            let mut responder = start_response.get().lock()?;
            if let Err(ClientGone) = responder.write(py, chunk)? {
                tracing::debug!("the client went away; stopping the response");
                responder.sender.abort();
                return Ok(());
            }
            // HEAD: once the head is out, the rest of the body would only be thrown away
            // (and a never-ending generator would hold this thread for good).
            if responder.sender.head_only && responder.sender.started() {
                break;
            }
        }
        finish(Bytes::new())
    }

    /// The application raised: 500 (or 413 when the body was too large) if nothing was
    /// sent yet, else abort the connection. Either way, the traceback goes to the log.
    fn fail(
        &self,
        py: Python<'_>,
        start_response: &Bound<'_, StartResponse>,
        parts: &http::request::Parts,
        err: PyErr,
        fault: &ClientFault,
    ) {
        let traceback = traceback(py, &err);
        // Another thread may hold the responder while it waits for the client: wait for it
        // without the GIL rather than leave the request unanswered.
        let state = &start_response.get().responder;
        let mut responder = loop {
            match state.try_lock() {
                Ok(responder) => break responder,
                Err(std::sync::TryLockError::WouldBlock) => {
                    py.detach(|| std::thread::sleep(std::time::Duration::from_millis(1)))
                }
                Err(std::sync::TryLockError::Poisoned(_)) => {
                    tracing::error!("the response state is unusable after a panic:\n{traceback}");
                    return;
                }
            }
        };
        if responder.sender.started() {
            tracing::error!(
                method = %parts.method,
                path = parts.uri.path(),
                "the application raised after the response started; aborting the connection:\n{traceback}"
            );
            responder.sender.abort();
            return;
        }
        // The client's fault, found while the application read the body: the client's
        // error, not the application's, though the application let the exception through.
        let client_error = fault
            .get()
            .map(|fault| fault_response(fault, self.config.max_body_size));
        if let Some(response) = client_error {
            tracing::info!(
                method = %parts.method,
                path = parts.uri.path(),
                "the client's request body failed ({}): answering {}",
                err.value(py),
                response.status()
            );
            let _ = responder.sender.send_whole(response);
            return;
        }
        tracing::error!(method = %parts.method, path = parts.uri.path(), "the application raised:\n{traceback}");
        let body = if self.config.display_tracebacks {
            format!("Internal Server Error\n\n{traceback}")
        } else {
            "Internal Server Error\n".to_owned()
        };
        let _ = responder
            .sender
            .send_whole(plain(StatusCode::INTERNAL_SERVER_ERROR, &body));
    }
}

/// A body given whole (a list or tuple), gathered: one item is kept as it is, several
/// are joined.
#[derive(Default)]
struct Whole {
    first: Option<Bytes>,
    joined: BytesMut,
}

impl Whole {
    fn add(&mut self, chunk: Bytes) {
        match self.first.take() {
            None if self.joined.is_empty() => self.first = Some(chunk),
            first => {
                if let Some(first) = first {
                    self.joined.extend_from_slice(&first);
                }
                self.joined.extend_from_slice(&chunk);
            }
        }
    }

    fn into_bytes(self) -> Bytes {
        self.first.unwrap_or_else(|| self.joined.freeze())
    }
}

/// The full Python traceback of `err`, as `traceback.format_exception` prints it.
fn traceback(py: Python<'_>, err: &PyErr) -> String {
    let formatted = (|| -> PyResult<String> {
        let lines = py.import(intern!(py, "traceback"))?.call_method1(
            intern!(py, "format_exception"),
            (err.get_type(py), err.value(py), err.traceback(py)),
        )?;
        PyString::new(py, "")
            .call_method1(intern!(py, "join"), (lines,))?
            .extract()
    })();
    formatted.unwrap_or_else(|_| err.to_string())
}

/// The server's answer to a client's fault in its request body, with `Connection: close`.
fn fault_response(fault: Fault, limit: u64) -> Response<ResponseBody> {
    match fault {
        Fault::TooLarge => too_large_response(limit),
        Fault::Malformed => refusal(
            StatusCode::BAD_REQUEST,
            "Bad Request: the request body is malformed or incomplete.\n",
        ),
        Fault::Silent => refusal(
            StatusCode::REQUEST_TIMEOUT,
            "Request Timeout: the client stopped sending the request body.\n",
        ),
        Fault::TooSlow => refusal(
            StatusCode::REQUEST_TIMEOUT,
            "Request Timeout: the client sent the request body too slowly.\n",
        ),
    }
}

fn too_large_response(limit: u64) -> Response<ResponseBody> {
    // The rest of the body is not read; do not try to reuse the connection.
    refusal(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!(
            "Content Too Large: this server accepts request bodies of at most {limit} bytes.\n"
        ),
    )
}
