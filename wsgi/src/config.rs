//! The settings of a server: [`ServerConfig`], what `torsion web`'s flags set.

use std::time::Duration;

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
    /// Request bodies up to this many bytes are read by the event loop before the
    /// application is called, so a client that dawdles over a small upload holds no Python
    /// thread (nginx buffers bodies the same way). Larger bodies stream to the application
    /// as it reads them. Default: 64 KiB.
    pub request_buffer_size: usize,
    /// The slowest average rate, in bytes per second, at which a client may send a request
    /// body, counted from the first read after [`ServerConfig::upload_grace`]; a slower
    /// upload ends with 408 Request Timeout and frees its Python thread. 0 disables the
    /// check. Default: 240, Kestrel's `MinRequestBodyDataRate`.
    pub min_upload_rate: u64,
    /// How long an upload may run before [`ServerConfig::min_upload_rate`] applies.
    /// Default: 5 s, as Kestrel's grace period.
    pub upload_grace: Duration,
    /// The slowest rate, in bytes per second, at which a client may read a streamed
    /// response, counted over the time the application waits for it (not the time it
    /// takes to produce the body); a slower client is given up (its connection cut) and
    /// the Python thread freed. 0 disables the check. Default: 240, Kestrel's
    /// `MinResponseDataRate`.
    pub min_download_rate: u64,
    /// Waiting time for the client allowed on top of what
    /// [`ServerConfig::min_download_rate`] allows. Default: 5 s, as Kestrel's.
    pub download_grace: Duration,
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
            request_buffer_size: 64 * 1024,
            min_upload_rate: 240,
            upload_grace: Duration::from_secs(5),
            min_download_rate: 240,
            download_grace: Duration::from_secs(5),
        }
    }
}
