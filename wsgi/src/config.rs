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
    /// Fields added to every response the server sends (twist web's `--add-header`):
    /// applications', static files', and the server's own error pages alike. A field the
    /// response already has is left as it is, not doubled. Framing and connection fields
    /// (Content-Length, Transfer-Encoding, Connection and the like) are for the server to
    /// set; [`ServerConfig::add_header`] refuses them. Default: none.
    pub added_headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Where a line for every response goes (twist web's `--logfile`), if anywhere: the
    /// application's, static files' and the server's own alike. Default: none.
    pub access_log: Option<crate::access_log::AccessLog>,
    /// Where to count the requests answered, when someone watches the count (a supervisor's
    /// worker does, for `--max-requests`): [`serve`](crate::serve) adds one as each
    /// response is made. Default: none, and nothing is counted.
    pub served: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
    /// Where to count requests, connections and their durations for the control channel's
    /// `/metrics` and `/status` (see [`Metrics`](crate::metrics::Metrics)). Default: none,
    /// and the request path counts nothing.
    pub metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
    /// When set, the site's timers wait until it reads `true` before their first call: a
    /// supervisor's worker runs its timers only once the supervisor gives it that role, so
    /// that exactly one process runs them. Default: none, and timers start with serving.
    pub timer_gate: Option<tokio::sync::watch::Receiver<bool>>,
    /// The peers (proxies) whose `Forwarded` or `X-Forwarded-*` fields name the client,
    /// its scheme and the host it asked for (gunicorn's `forwarded_allow_ips`). Default:
    /// none, so the fields are passed on to the application untouched and believed by
    /// nobody.
    pub forwarded_allow: crate::forwarded::ForwardedTrust,
}

/// Fields the server alone may set: message framing and connection management
/// (RFC 9110 §7.6.1, RFC 9112 §6).
const SERVER_FIELDS: [&str; 9] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "upgrade",
    "te",
    "trailer",
    "host",
];

impl ServerConfig {
    /// Adds a field to [`ServerConfig::added_headers`] from its `Name: value` text.
    ///
    /// # Errors
    /// A message naming the fault: no colon, a name or value not allowed in a field
    /// (RFC 9110 §5.1, §5.5), or a field the server alone sets.
    pub fn add_header(&mut self, text: &str) -> Result<(), String> {
        let Some((name, value)) = text.split_once(':') else {
            return Err(format!(
                "{text:?} is not a field: expected 'Name: value', as in 'X-Frame-Options: DENY'"
            ));
        };
        let name = http::HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
            format!(
                "{:?} is not a field name (letters, digits and !#$%&'*+-.^_`|~)",
                name.trim()
            )
        })?;
        if SERVER_FIELDS.contains(&name.as_str()) {
            return Err(format!(
                "{name} is set by the server for each response and cannot be added to all of them"
            ));
        }
        let value = http::HeaderValue::from_str(value.trim()).map_err(|_| {
            format!("the value of {name} has a character not allowed in a field value")
        })?;
        self.added_headers.push((name, value));
        Ok(())
    }
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
            added_headers: Vec::new(),
            access_log: None,
            served: None,
            metrics: None,
            timer_gate: None,
            forwarded_allow: crate::forwarded::ForwardedTrust::default(),
        }
    }
}

/// The HTTP versions one listener speaks: what Twisted sets with a site's
/// `acceptableProtocols`. Over TLS they are the protocols offered by ALPN (RFC 7301); in
/// cleartext, HTTP/2 is spoken by prior knowledge (RFC 9113 §3.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Protocols {
    /// HTTP/1.1 (and 1.0) and HTTP/2, the default.
    #[default]
    Both,
    /// HTTP/1.1 and 1.0 only: TLS offers `http/1.1` alone, and a cleartext client that
    /// opens with the HTTP/2 preface has its connection closed without an answer.
    Http1,
    /// HTTP/2 only: TLS offers `h2` alone, and in cleartext an HTTP/1.1 request gets the
    /// server's HTTP/2 SETTINGS frame, then the connection ends (RFC 9113 §3.4: the preface
    /// was missing).
    Http2,
}

impl Protocols {
    /// The ALPN protocol IDs offered for these versions, in the server's order of
    /// preference.
    pub fn alpn(self) -> &'static [&'static [u8]] {
        match self {
            Protocols::Both => &[b"h2", b"http/1.1"],
            Protocols::Http1 => &[b"http/1.1"],
            Protocols::Http2 => &[b"h2"],
        }
    }

    /// The versions named by ALPN protocol IDs, as Twisted's `acceptableProtocols` lists
    /// them: `h2` and `http/1.1`, in any order.
    ///
    /// # Errors
    /// A message naming the ID at fault and the accepted ones, for an unknown ID or an empty
    /// list.
    pub fn from_alpn_ids<'a>(ids: impl IntoIterator<Item = &'a str>) -> Result<Protocols, String> {
        let (mut h1, mut h2) = (false, false);
        for id in ids {
            match id {
                "http/1.1" => h1 = true,
                "h2" => h2 = true,
                other => {
                    return Err(format!(
                        "{other:?} is not a protocol Torsion speaks; expected \"h2\" or \"http/1.1\""
                    ));
                }
            }
        }
        match (h1, h2) {
            (true, true) => Ok(Protocols::Both),
            (true, false) => Ok(Protocols::Http1),
            (false, true) => Ok(Protocols::Http2),
            (false, false) => {
                Err("no protocol given; expected \"h2\", \"http/1.1\" or both".into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_are_named_by_their_alpn_ids() {
        assert_eq!(
            Protocols::from_alpn_ids(["h2", "http/1.1"]),
            Ok(Protocols::Both)
        );
        assert_eq!(Protocols::from_alpn_ids(["http/1.1"]), Ok(Protocols::Http1));
        assert_eq!(Protocols::from_alpn_ids(["h2"]), Ok(Protocols::Http2));
        assert_eq!(Protocols::Http1.alpn(), [b"http/1.1"]);
        let err = Protocols::from_alpn_ids(["spdy/3"]).unwrap_err();
        assert!(err.contains("\"spdy/3\" is not a protocol"), "{err}");
        assert!(Protocols::from_alpn_ids([]).is_err());
    }
}
