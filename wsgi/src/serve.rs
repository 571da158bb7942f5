//! Serving HTTP/1.1 and HTTP/2 on any set of listeners, handing each request to the site.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use torsion_endpoints::Listener;

use http::{HeaderValue, Method, Response, header};
use torsion_endpoints::ConnectionInfo;

use crate::access_log;
use crate::body::ResponseBody;
use crate::bridge::Channel;
use crate::checks;
use crate::config::Protocols;
use crate::linger::Lingering;
use crate::memory::{self, Connections, Trimmer};
use crate::runtime::Heartbeat;
use crate::site::Site;

/// How long, at most, HTTP/1.1 connections are closed by their next response before the
/// rest are closed (see [`serve_speaking`]).
const CLOSING_GRACE: Duration = Duration::from_secs(1);

/// The hyper connection builder [`serve`] uses, both protocols on tokio's timer:
/// - HTTP/1.1 with a 30 s header-read timeout (a client that has not sent a whole request
///   head by then is disconnected), answering a client that shuts its sending side after
///   its request (as `nc -N` does), as nginx and gunicorn do, where hyper's default drops
///   it;
/// - HTTP/2 by prior knowledge, with header blocks of up to 1 MiB, so that a request with
///   over 64 KiB of fields gets 431 on its stream rather than ending the connection.
///
/// Public so that other servers on Torsion's stack (the benchmark's ceiling,
/// `examples/ceiling.rs`) serve with the same settings.
pub fn connection_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .half_close(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(checks::HTTP2_HEADER_BLOCK_LIMIT);
    builder
}

/// Accepts connections on every listener and serves `site` on them until `shutdown`
/// completes, then stops accepting and lets in-flight requests finish within the
/// configured timeout.
///
/// Each connection speaks HTTP/1.1 (and 1.0) or, when the client opens with the HTTP/2
/// connection preface, HTTP/2 over cleartext (RFC 9113 §3.3, "prior knowledge"). Accepting
/// follows `torsion-endpoints`' one policy (`Listener::next_connection`): a failed accept
/// is logged and retried, and never stops the server.
pub async fn serve(site: Site, listeners: Vec<Listener>, shutdown: impl Future<Output = ()>) {
    let listeners = listeners
        .into_iter()
        .map(|listener| (listener, Protocols::Both))
        .collect();
    serve_speaking(site, listeners, shutdown).await;
}

/// [`serve`], each listener speaking only its [`Protocols`]: over TLS, the listener offers
/// only their ALPN IDs ([`Listener::offer_alpn`]); in cleartext, hyper speaks only those
/// versions on it.
pub async fn serve_speaking(
    site: Site,
    listeners: Vec<(Listener, Protocols)>,
    shutdown: impl Future<Output = ()>,
) {
    let site = Arc::new(site);
    let graceful = Arc::new(GracefulShutdown::new());

    // The heartbeat also returns the memory a burst of connections leaves behind.
    let connections = Connections::default();
    let mut trimmer = Trimmer::default();
    let counted = connections.clone();
    let heartbeat = Heartbeat::start_with(move || {
        if trimmer.sample(counted.sample()) {
            tokio::task::spawn_blocking(memory::trim);
        }
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut accepting = Vec::new();
    for (mut listener, protocols) in listeners {
        listener.offer_alpn(protocols.alpn());
        let builder = match protocols {
            Protocols::Both => connection_builder(),
            Protocols::Http1 => connection_builder().http1_only(),
            Protocols::Http2 => connection_builder().http2_only(),
        };
        accepting.push(tokio::spawn(accept_loop(
            listener,
            site.clone(),
            Arc::new(builder),
            graceful.clone(),
            connections.clone(),
            stop_rx.clone(),
        )));
    }
    let timers: Vec<_> = (0..site.timers().len())
        .map(|index| tokio::spawn(repeat_timer(site.clone(), index, stop_rx.clone())))
        .collect();
    shutdown.await;
    drop(heartbeat);
    // From here on, every HTTP/1.1 response says `Connection: close`.
    site.begin_closing();
    let _ = stop_tx.send(true);
    for task in accepting {
        let _ = task.await;
    }
    let timeout = site.config().shutdown_timeout;
    tracing::info!(
        connections = graceful.count(),
        "shutting down: waiting up to {timeout:?} for requests in flight"
    );
    // First, a short while in which each HTTP/1.1 connection's next response closes it:
    // a client that keeps sending learns of the close with an answer. Closing an idle
    // keep-alive connection at once (hyper's graceful shutdown, nginx's) races with a
    // request the client is sending on it, which then fails (gunicorn#3038). HTTP/2
    // connections get their GOAWAY after it, which no request races with.
    let started = tokio::time::Instant::now();
    let grace = timeout.min(CLOSING_GRACE);
    while graceful.count() > 0 && started.elapsed() < grace {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let timeout = timeout.saturating_sub(started.elapsed());
    // The accept loops have ended, so this is the last reference.
    let Ok(graceful) = Arc::try_unwrap(graceful) else {
        return;
    };
    // Timers' calls in progress finish within the same time as requests.
    let finished = async move {
        graceful.shutdown().await;
        for timer in timers {
            let _ = timer.await;
        }
    };
    if tokio::time::timeout(timeout, finished).await.is_err() {
        tracing::warn!("requests still running after {timeout:?}; stopping anyway");
    }
}

/// Runs `site`'s timer `index` until `stop` turns true; returns after the call in progress,
/// if any, has returned.
async fn repeat_timer(site: Arc<Site>, index: usize, mut stop: tokio::sync::watch::Receiver<bool>) {
    let (Some(timer), Some(bridge)) = (site.timers().get(index), site.bridge()) else {
        return;
    };
    if let Some(mut gate) = site.config().timer_gate.clone() {
        tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => return,
            opened = gate.wait_for(|open| *open) => {
                if opened.is_err() {
                    return;
                }
            }
        }
    }
    let mut next = tokio::time::Instant::now();
    loop {
        tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => return,
            () = tokio::time::sleep_until(next) => {}
        }
        let started = tokio::time::Instant::now();
        let wall = std::time::SystemTime::now();
        let outcome = bridge.call(timer.task().clone()).await;
        let took = started.elapsed();
        match &outcome {
            Ok(()) => tracing::debug!(timer = timer.name(), "timer ran"),
            Err(traceback) => {
                tracing::error!(
                    timer = timer.name(),
                    "timer raised:\n{}",
                    traceback.trim_end()
                );
            }
        }
        timer.record(
            wall,
            took,
            outcome
                .err()
                .map(|traceback| traceback.trim_end().lines().last().unwrap_or("").to_owned()),
        );
        if took > timer.interval() {
            tracing::warn!(
                timer = timer.name(),
                "the timer's call took {took:.1?}, longer than its interval of {:?}: the next call starts now",
                timer.interval()
            );
        }
        next = started + timer.interval();
    }
}

async fn accept_loop(
    mut listener: Listener,
    site: Arc<Site>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    graceful: Arc<GracefulShutdown>,
    connections: Connections,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let endpoint = listener.endpoint().to_owned();
    tracing::info!(%endpoint, address = %listener.local_addr(), "listening");
    loop {
        let connection = tokio::select! {
            _ = async { drop(stop.wait_for(|stop| *stop).await) } => break,
            connection = listener.next_connection() => connection,
        };
        let info = Arc::new(connection.info().clone());
        let peer = info.peer.clone();
        let channel = Arc::new(Channel::new(info));
        let site = site.clone();
        let connection = Lingering::new(connection);
        let expect_more = connection.expect_more();
        let open = site
            .config()
            .metrics
            .as_ref()
            .map(|m| m.connection_opened());
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            let site = site.clone();
            let channel = channel.clone();
            let expect_more = expect_more.clone();
            if let Some(open) = &open {
                open.speaks(request.version());
            }
            async move {
                let version = request.version();
                let config = site.config();
                let measuring = config
                    .metrics
                    .as_ref()
                    .map(|metrics| metrics.request_started(request.method()));
                // Behind a trusted proxy: the client, as the proxy names it.
                let channel = if config.forwarded_allow.is_empty() {
                    channel
                } else {
                    match config.forwarded_allow.apply(&mut request, channel.info()) {
                        Some(info) => Arc::new(Channel::new(info)),
                        None => channel,
                    }
                };
                let pending = config
                    .access_log
                    .as_ref()
                    .map(|_| access_log::Pending::new(&request, channel.info()));
                // The server's own answers first (checks, then ACME http-01), else the
                // site's, framed for the request's version. Written out here rather than in
                // a function of its own: one layer fewer of the future that is made, and
                // moved, for every request.
                let mut response =
                    match checks::answer(&request).or_else(|| http01(&request, channel.info())) {
                        Some(answer) => answer,
                        None => {
                            let has_body = !hyper::body::Body::is_end_stream(request.body());
                            let response = site.handle(request, channel).await;
                            framed(response, version, has_body, &expect_more)
                        }
                    };
                if let Some(served) = &config.served {
                    served.fetch_add(1, Ordering::Relaxed);
                }
                if let (Some(metrics), Some(measuring)) = (&config.metrics, measuring) {
                    metrics.request_answered(measuring, response.status().as_u16(), version);
                }
                for (name, value) in &config.added_headers {
                    if let http::header::Entry::Vacant(entry) = response.headers_mut().entry(name) {
                        entry.insert(value.clone());
                    }
                }
                if site.closing() && version <= http::Version::HTTP_11 {
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                if let (Some(log), Some(pending)) = (&config.access_log, pending) {
                    let status = response.status().as_u16();
                    response.body_mut().log_to(log.clone(), pending, status);
                }
                Ok::<_, Infallible>(response)
            }
        });
        let serving = builder
            .serve_connection(TokioIo::new(connection), service)
            .into_owned();
        let serving = graceful.watch(serving);
        // No span per connection: entering one on every poll cost 2% of a hello-world
        // request; the peer is logged where something is worth logging.
        let open = connections.open();
        tokio::spawn(async move {
            let _open = open;
            if let Err(err) = serving.await {
                tracing::debug!(%peer, "connection ended: {err}");
            }
        });
    }
    tracing::info!(%endpoint, "stopped listening");
}

/// A site's response, framed for the request's `version`; marks `expect_more` when the
/// connection will close after a request body (`has_body`) the server may not have read to
/// its end: the rest may still be coming, so the close lingers (see linger.rs).
fn framed(
    mut response: Response<ResponseBody>,
    version: http::Version,
    has_body: bool,
    expect_more: &std::sync::atomic::AtomicBool,
) -> Response<ResponseBody> {
    checks::frame_for(version, &mut response);
    if has_body
        && response
            .headers()
            .get(header::CONNECTION)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"))
    {
        expect_more.store(true, Ordering::Relaxed);
    }
    response
}

/// Answers an ACME http-01 validation (RFC 8555 §8.3) on a plain-HTTP connection, before
/// any resource sees the request: GET or HEAD of `/.well-known/acme-challenge/<token>` for
/// a token this process is waiting for. Any other request (an unknown token included) is
/// left to the site.
fn http01(
    request: &hyper::Request<Incoming>,
    info: &ConnectionInfo,
) -> Option<Response<ResponseBody>> {
    if info.tls.is_some() || !matches!(*request.method(), Method::GET | Method::HEAD) {
        return None;
    }
    let key_authorization = torsion_endpoints::acme::http01_answer(request.uri().path())?;
    tracing::info!(peer = %info.peer, path = request.uri().path(), "answered an http-01 validation");
    Some(http01_response(key_authorization))
}

/// The key authorization, as RFC 8555 §8.3's example serves it.
fn http01_response(key_authorization: String) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(bytes::Bytes::from(key_authorization)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}
