//! Plain hyper, no Python: serve a greeting on every descriptor given on the command line.
//!
//! ```text
//! cargo run -p torsion-endpoints --example hello_hyper -- tcp:8080 unix:/tmp/hello.sock
//! curl http://127.0.0.1:8080/            # Hello from tcp:8080 ...
//! curl --unix-socket /tmp/hello.sock http://localhost/
//! ```
//!
//! A bad descriptor prints the error and exits with status 2.

use std::convert::Infallible;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use torsion_endpoints::{Endpoint, Listener};

#[tokio::main]
async fn main() {
    let mut texts: Vec<String> = std::env::args().skip(1).collect();
    if texts.is_empty() {
        texts.push("tcp:8080".into());
    }
    let mut listeners = Vec::new();
    for text in &texts {
        let opened = match text.parse::<Endpoint>() {
            Ok(endpoint) => endpoint.listen().await,
            Err(err) => Err(err),
        };
        match opened {
            Ok(listener) => {
                // A line the integration tests (and people) can read the address from.
                println!(
                    "listening on {} at {}",
                    listener.endpoint(),
                    listener.local_addr()
                );
                listeners.push(listener);
            }
            Err(err) => {
                eprintln!("error: {err}");
                std::process::exit(2);
            }
        }
    }
    let tasks: Vec<_> = listeners
        .into_iter()
        .map(|l| tokio::spawn(serve(l)))
        .collect();
    for task in tasks {
        let _ = task.await;
    }
}

async fn serve(mut listener: Listener) {
    let endpoint = listener.endpoint().to_owned();
    loop {
        // The crate's accept policy: a failed accept (out of descriptors, say) is logged
        // and waited out, never the end of the server.
        let connection = listener.next_connection().await;
        let info = connection.info().clone();
        let greeting = Bytes::from(format!(
            "Hello from {endpoint}; you are {} over {}\n",
            info.peer,
            info.scheme()
        ));
        let service = hyper::service::service_fn(move |_: Request<Incoming>| {
            let body = greeting.clone();
            async move { Ok::<_, Infallible>(Response::new(Full::new(body))) }
        });
        tokio::spawn(async move {
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(connection), service)
                .await;
        });
    }
}
