//! Serving HTTP/1.1 and HTTP/2 on any set of listeners, handing each request to the bridge.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use torsion_endpoints::Listener;

use crate::body::ResponseBody;
use crate::bridge::Bridge;

/// How the server behaves; [`ServerConfig::default`] gives the documented defaults.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Python threads running the application (at least 1). Default: 2 × CPU cores, at
    /// least 4, so that requests waiting on I/O do not hold up the others.
    pub threads: usize,
    /// Largest request body accepted, in bytes; larger ones get 413 Content Too Large
    /// (RFC 9110 §15.5.14). Default: 1 GiB.
    pub max_body_size: u64,
    /// Whether a 500 page shows the Python traceback (Twisted's `--display-tracebacks`).
    /// Default: false; the traceback always goes to the log.
    pub display_tracebacks: bool,
    /// How long in-flight requests may run after a shutdown is asked for. Default: 30 s.
    pub shutdown_timeout: Duration,
    /// The value of `SERVER_SOFTWARE`. Default: `Torsion/<version>`.
    pub server_software: String,
    /// Whether several processes serve the same application (`wsgi.multiprocess`).
    /// Default: false.
    pub multiprocess: bool,
    /// How long a Python thread waits for a client that has stopped sending the request
    /// body or stopped reading the response before giving the request up. Default: 60 s.
    pub client_timeout: Duration,
    /// Requests that may wait for a free Python thread; beyond that, 503 Service
    /// Unavailable with Retry-After (RFC 9110 §15.6.4). Default: 2048.
    pub max_queued_requests: usize,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        ServerConfig {
            threads: (2 * cores).max(4),
            max_body_size: 1 << 30,
            display_tracebacks: false,
            shutdown_timeout: Duration::from_secs(30),
            server_software: format!("Torsion/{}", env!("CARGO_PKG_VERSION")),
            multiprocess: false,
            client_timeout: Duration::from_secs(60),
            max_queued_requests: 2048,
        }
    }
}

/// Event-loop threads currently running (not parked), counted by the hooks
/// [`runtime_builder`] installs; `usize::MAX` means "unknown" (hooks not installed).
static BUSY_WORKERS: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Whether every event-loop thread is parked (waiting for I/O): the moment a Python
/// thread takes the most queued requests at once.
pub(crate) fn event_loop_idle() -> bool {
    BUSY_WORKERS.load(Ordering::Relaxed) == 0
}

/// A tokio runtime builder for serving: multi-threaded, with the I/O and time drivers, and
/// hooks that let the Python threads see when the event loop is idle, so that they take
/// requests in batches instead of one by one (fewer context switches on a shared core).
///
/// On Linux, each of the runtime's threads also gives up wake-up preemption (the `SCHED_BATCH`
/// policy of sched(7), at the thread's current nice value): when a Python thread
/// completes a response, waking the connection's task no longer interrupts the Python
/// thread in the middle of its batch, so a core shared by the two runs each batch through
/// and then writes every response at once. On a core the two share, this takes about a
/// quarter off the cost of a small request; the event loop still runs at once on an idle
/// core, and within the scheduler's time slice on a busy one. Where the policy cannot be
/// set (a seccomp filter, another OS), the thread keeps its policy and serving goes on.
/// Threads started from a runtime thread inherit the policy; the Python threads of a
/// [`crate::Bridge`] set the default one for themselves, wherever the bridge is made.
///
/// Built with `--cfg tokio_unstable` (this workspace's `.cargo/config.toml` sets it; a build
/// outside the workspace, such as `cargo install`, needs it in `RUSTFLAGS`), the
/// scheduler's LIFO slot is disabled, so a woken task joins the back of the run queue
/// instead of running next. That is what lets HTTP/2 write many responses at once: each
/// stream that completes wakes its connection's task, and with the slot that task ran
/// after every single stream, one `writev` per response; without it, the connection's
/// task runs once after all the streams that were ready. On HTTP/2 hello-world traffic
/// this nearly doubles the request rate (`bench/`).
pub fn runtime_builder() -> tokio::runtime::Builder {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    let _ = BUSY_WORKERS.compare_exchange(usize::MAX, 0, Ordering::Relaxed, Ordering::Relaxed);
    #[cfg(tokio_unstable)]
    builder.disable_lifo_slot();
    builder
        .enable_all()
        .on_thread_start(|| {
            set_wakeup_preemption(false);
            BUSY_WORKERS.fetch_add(1, Ordering::Relaxed);
        })
        .on_thread_stop(|| {
            BUSY_WORKERS.fetch_sub(1, Ordering::Relaxed);
        })
        .on_thread_park(|| {
            BUSY_WORKERS.fetch_sub(1, Ordering::Relaxed);
        })
        .on_thread_unpark(|| {
            BUSY_WORKERS.fetch_add(1, Ordering::Relaxed);
        });
    builder
}

/// Sets the calling thread's policy (Linux, sched(7)): `SCHED_OTHER`, the default, with
/// `preempt`, else `SCHED_BATCH`, under which a woken thread does not preempt the running
/// one. The nice value is unchanged. A refusal is logged at debug level and ignored.
#[cfg(target_os = "linux")]
pub(crate) fn set_wakeup_preemption(preempt: bool) {
    let policy = if preempt {
        libc::SCHED_OTHER
    } else {
        libc::SCHED_BATCH
    };
    let param = libc::sched_param { sched_priority: 0 };
    // The system call rather than libc's wrapper: musl's wrapper always fails (ENOSYS).
    // SAFETY: `param` is a valid sched_param that outlives the call; pid 0 names the
    // calling thread, and the call changes nothing else.
    let status = unsafe {
        libc::syscall(
            libc::SYS_sched_setscheduler,
            0,
            policy,
            &param as *const libc::sched_param,
        )
    };
    if status != 0 {
        tracing::debug!(
            preempt,
            "cannot set a thread's scheduling policy: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn set_wakeup_preemption(_preempt: bool) {}

/// The hyper connection builder [`serve`] uses: HTTP/1.1 with a 30 s header-read timeout
/// (a client that has not sent a whole request head by then is disconnected), and HTTP/2
/// by prior knowledge, both on tokio's timer. Public so that other servers on Torsion's
/// stack (the benchmark's ceiling, `examples/ceiling.rs`) serve with the same settings.
pub fn connection_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    builder.http2().timer(TokioTimer::new());
    builder
}

/// Accepts connections on every listener and serves them until `shutdown` completes, then
/// stops accepting and lets in-flight requests finish within the configured timeout.
///
/// Each connection speaks HTTP/1.1 (and 1.0) or, when the client opens with the HTTP/2
/// connection preface, HTTP/2 over cleartext (RFC 9113 §3.3, "prior knowledge"). A failed
/// accept (such as running out of file descriptors) is logged and retried after a pause;
/// it never stops the server.
pub async fn serve(bridge: Bridge, listeners: Vec<Listener>, shutdown: impl Future<Output = ()>) {
    let bridge = Arc::new(bridge);
    let graceful = Arc::new(GracefulShutdown::new());
    let builder = Arc::new(connection_builder());

    let heartbeat = Heartbeat::start();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut accepting = Vec::new();
    for listener in listeners {
        accepting.push(tokio::spawn(accept_loop(
            listener,
            bridge.clone(),
            builder.clone(),
            graceful.clone(),
            stop_rx.clone(),
        )));
    }
    shutdown.await;
    drop(heartbeat);
    let _ = stop_tx.send(true);
    for task in accepting {
        let _ = task.await;
    }
    let timeout = bridge.config().shutdown_timeout;
    tracing::info!(
        connections = graceful.count(),
        "shutting down: waiting up to {timeout:?} for requests in flight"
    );
    // The accept loops have ended, so this is the last reference.
    let Ok(graceful) = Arc::try_unwrap(graceful) else {
        return;
    };
    if tokio::time::timeout(timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still running after {timeout:?}; stopping anyway");
    }
}

/// A timer that fires every second for as long as the value lives, so that tokio's timer
/// wheel is never empty while a server runs; [`serve`] keeps one.
///
/// Why: tokio wakes its I/O driver (a write to an eventfd) whenever a timer is registered
/// that is due before the driver's next planned wake-up, and a driver that parked with no
/// timer at all counts every new timer as earlier. That is the usual state in Torsion:
/// while a batch of requests is with the Python threads, no connection is reading a
/// request head, so no header-read timer exists; then each response written starts the
/// connection's next header-read timer (hyper's `header_read_timeout`, 30 s), and each
/// cost a wake-up system call, about one for every three requests. With this timer in the
/// wheel, those timers fall after the driver's next wake-up and register silently. The
/// price is one wake-up a second. Any hyper server on tokio whose requests complete after
/// the driver parks can use it the same way.
#[derive(Debug)]
pub struct Heartbeat(tokio::task::JoinHandle<()>);

impl Heartbeat {
    /// Starts the timer on the current tokio runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime with the time driver enabled, as `tokio::spawn` and
    /// `tokio::time::sleep` do.
    pub fn start() -> Heartbeat {
        Heartbeat(tokio::spawn(async {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }))
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn accept_loop(
    mut listener: Listener,
    bridge: Arc<Bridge>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    graceful: Arc<GracefulShutdown>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let endpoint = listener.endpoint().to_owned();
    tracing::info!(%endpoint, address = %listener.local_addr(), "listening");
    loop {
        let connection = tokio::select! {
            _ = async { drop(stop.wait_for(|stop| *stop).await) } => break,
            accepted = listener.accept() => match accepted {
                Ok(connection) => connection,
                Err(err) => {
                    tracing::error!(%endpoint, "accept failed: {err}; retrying in 100 ms");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let info = Arc::new(connection.info().clone());
        let peer = info.peer.clone();
        let bridge = bridge.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let bridge = bridge.clone();
            let info = info.clone();
            async move { Ok::<_, Infallible>(bridge.handle(request, info).await) }
        });
        let serving = builder
            .serve_connection(TokioIo::new(connection), service)
            .into_owned();
        let serving = graceful.watch(serving);
        // No span per connection: entering one on every poll cost 2% of a hello-world
        // request; the peer is logged where something is worth logging.
        tokio::spawn(async move {
            if let Err(err) = serving.await {
                tracing::debug!(%peer, "connection ended: {err}");
            }
        });
    }
    tracing::info!(%endpoint, "stopped listening");
}

/// Serves nothing but ACME http-01 answers (RFC 8555 §8.3) on `listeners` until `stop`
/// resolves: `200` with the key authorization for a token this process is waiting for,
/// `404` for every other request. What `torsion certs` runs on port 80 while it issues, so
/// that no Python application is needed for a one-shot issuance.
pub async fn serve_http01(listeners: Vec<Listener>, stop: impl Future<Output = ()>) {
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    let mut tasks = tokio::task::JoinSet::new();
    for mut listener in listeners {
        let builder = builder.clone();
        tasks.spawn(async move {
            while let Ok(connection) = listener.accept().await {
                let service = hyper::service::service_fn(|request: hyper::Request<Incoming>| {
                    let answer = torsion_endpoints::http01_answer(request.uri().path());
                    async move {
                        let response = answer.map_or_else(
                            || {
                                let mut missing = http::Response::new(ResponseBody::full(
                                    bytes::Bytes::from_static(b"Not Found\n"),
                                ));
                                *missing.status_mut() = http::StatusCode::NOT_FOUND;
                                missing
                            },
                            crate::bridge::http01_response,
                        );
                        Ok::<_, Infallible>(response)
                    }
                });
                let serving = builder
                    .serve_connection(TokioIo::new(connection), service)
                    .into_owned();
                tokio::spawn(serving);
            }
        });
    }
    stop.await;
    tasks.abort_all();
}
