//! The benchmark's ceiling: Torsion's HTTP stack with the Python bridge taken out.
//!
//! ```text
//! cargo build --release -p torsion-wsgi --example ceiling
//! target/release/examples/ceiling tcp:8080:interface=127.0.0.1
//! ```
//!
//! It listens on one endpoint descriptor (any kind `torsion web --listen` takes, TLS
//! included), on the runtime `torsion web` uses ([`torsion_wsgi::runtime_builder`]), with
//! hyper's HTTP/1.1 and HTTP/2 server set up as `torsion web` sets it
//! ([`torsion_wsgi::connection_builder`], a [`torsion_wsgi::Heartbeat`]), and answers
//! bench/apps.py's routes from Rust:
//!
//! - `/`: "Hello, world!"; `/64k`: 64 KiB; `/stream`: 16 frames of 64 KiB, no
//!   Content-Length; `/echo`: the request body, read whole; anything else: 404.
//! - `/sleep`: 10 ms of `std::thread::sleep` on one of 16 blocking threads (tokio's
//!   `spawn_blocking`), then a small body: the same work as the WSGI app, on as many threads.
//!
//! `bench/run.py` runs it as the server "ceiling": whatever a WSGI server does on top of
//! this (environ, the call into Python, the response iterable) only adds work, so, within
//! the noise of a run, its rate bounds what any of the measured servers could reach with
//! this load generator on this core, and shows which targets are out of reach for all.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming};
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use torsion_endpoints::Endpoint;

/// Blocking threads for `/sleep`, as `bench/run.py` gives every server.
const THREADS: usize = 16;

/// A response body: one whole buffer, or `left` more frames of `chunk`.
enum Reply {
    Whole(Option<Bytes>),
    Chunks { chunk: Bytes, left: usize },
}

impl Body for Reply {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(match self.get_mut() {
            Reply::Whole(body) => body.take().map(|b| Ok(Frame::data(b))),
            Reply::Chunks { left: 0, .. } => None,
            Reply::Chunks { chunk, left } => {
                *left -= 1;
                Some(Ok(Frame::data(chunk.clone())))
            }
        })
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Reply::Whole(None) | Reply::Chunks { left: 0, .. })
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            Reply::Whole(body) => {
                hyper::body::SizeHint::with_exact(body.as_ref().map_or(0, |b| b.len() as u64))
            }
            Reply::Chunks { .. } => hyper::body::SizeHint::default(),
        }
    }
}

fn whole(status: StatusCode, body: Bytes) -> Response<Reply> {
    let mut response = Response::new(Reply::Whole(Some(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/octet-stream"),
    );
    response
}

async fn route(request: Request<Incoming>, body_64k: Bytes) -> Response<Reply> {
    match request.uri().path() {
        "/" => whole(StatusCode::OK, Bytes::from_static(b"Hello, world!")),
        "/64k" => whole(StatusCode::OK, body_64k),
        "/stream" => Response::new(Reply::Chunks {
            chunk: body_64k,
            left: 16,
        }),
        "/echo" => match request.into_body().collect().await {
            Ok(collected) => whole(StatusCode::OK, collected.to_bytes()),
            Err(_) => whole(StatusCode::BAD_REQUEST, Bytes::from_static(b"bad body\n")),
        },
        "/sleep" => {
            let slept = tokio::task::spawn_blocking(|| {
                std::thread::sleep(Duration::from_millis(10));
                Bytes::from_static(b"slept 10 ms\n")
            })
            .await;
            match slept {
                Ok(body) => whole(StatusCode::OK, body),
                Err(_) => whole(StatusCode::INTERNAL_SERVER_ERROR, Bytes::new()),
            }
        }
        _ => whole(StatusCode::NOT_FOUND, Bytes::from_static(b"not found\n")),
    }
}

fn main() {
    let Some(text) = std::env::args().nth(1) else {
        eprintln!("usage: ceiling DESCRIPTOR (for example tcp:8080:interface=127.0.0.1)");
        std::process::exit(2);
    };
    let runtime = match torsion_wsgi::runtime_builder()
        .max_blocking_threads(THREADS)
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            std::process::exit(1);
        }
    };
    runtime.block_on(async move {
        let opened = match text.parse::<Endpoint>() {
            Ok(endpoint) => endpoint.listen().await,
            Err(err) => Err(err),
        };
        let mut listener = match opened {
            Ok(listener) => listener,
            Err(err) => {
                eprintln!("error: {err}");
                std::process::exit(2);
            }
        };
        println!(
            "listening on {} at {}",
            listener.endpoint(),
            listener.local_addr()
        );
        let _heartbeat = torsion_wsgi::Heartbeat::start();
        let builder = std::sync::Arc::new(torsion_wsgi::connection_builder());
        let body_64k = Bytes::from(vec![b'x'; 64 * 1024]);
        // The accept loop is a task of the runtime's workers, as `torsion web`'s are, not
        // the future of block_on, which runs on the calling thread.
        let accepting = tokio::spawn(async move {
            loop {
                let connection = listener.next_connection().await;
                let body_64k = body_64k.clone();
                let service = hyper::service::service_fn(move |request| {
                    let body_64k = body_64k.clone();
                    async move { Ok::<_, Infallible>(route(request, body_64k).await) }
                });
                let builder = builder.clone();
                tokio::spawn(async move {
                    let _ = builder
                        .serve_connection(TokioIo::new(connection), service)
                        .await;
                });
            }
        });
        let _ = accepting.await;
    });
}
