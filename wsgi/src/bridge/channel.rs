//! One connection as the bridge serves it, with the Python objects its requests share.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;
use torsion_endpoints::ConnectionInfo;

/// One connection as the bridge serves it (Twisted's `HTTPChannel`): its facts, and the
/// environ entries that every request on it shares.
///
/// `REMOTE_ADDR`, `REMOTE_PORT`, `wsgi.url_scheme`, `HTTPS` and the TLS facts, and the
/// first request's `HTTP_HOST`, `SERVER_NAME` and `SERVER_PORT`, are made into Python
/// objects by the connection's first request, in a dict that each later request's environ
/// starts as a copy of; a later request naming another host sets its own. On a keep-alive
/// connection that saves every request after the first a third of environ's insertions.
/// A request whose client a trusted proxy names ([`crate::ForwardedTrust`]) gets a channel
/// of its own.
pub struct Channel {
    pub(crate) info: Arc<ConnectionInfo>,
    pub(crate) environ: PyOnceLock<Base>,
}

/// The dict a channel's environs are copied from, and the host it was made for.
pub(crate) struct Base {
    pub(crate) dict: Py<PyDict>,
    pub(crate) host: Host,
}

/// What a request says of its host: the target's authority (HTTP/2's `:authority`, or an
/// absolute-form HTTP/1.1 target) and the Host field. Two requests with equal `Host`s
/// have the same `HTTP_HOST`, `SERVER_NAME` and `SERVER_PORT`.
#[derive(PartialEq, Eq)]
pub(crate) struct Host {
    pub(crate) authority: Option<http::uri::Authority>,
    pub(crate) field: Option<http::HeaderValue>,
}

impl Host {
    /// The host `parts` names.
    pub(crate) fn of(parts: &http::request::Parts) -> Host {
        Host {
            authority: parts.uri.authority().cloned(),
            field: parts.headers.get(http::header::HOST).cloned(),
        }
    }

    /// Whether `parts` names this host, without copying anything.
    pub(crate) fn matches(&self, parts: &http::request::Parts) -> bool {
        self.authority.as_ref() == parts.uri.authority()
            && self.field.as_ref() == parts.headers.get(http::header::HOST)
    }
}

impl Channel {
    /// A channel for the connection `info` describes; nothing is made until its first
    /// request reaches a Python thread.
    pub fn new(info: Arc<ConnectionInfo>) -> Channel {
        Channel {
            info,
            environ: PyOnceLock::new(),
        }
    }

    /// The connection's facts.
    pub fn info(&self) -> &Arc<ConnectionInfo> {
        &self.info
    }
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}
