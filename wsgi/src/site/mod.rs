//! The site: a mount table of resources, as Twisted's resource tree puts a WSGI
//! application at `/` and `static.File` at `/static` on one port.
//!
//! A request goes to the resource mounted at the longest prefix its percent-decoded path
//! starts with on a segment boundary: `/static` takes `/static` and `/static/x`, never
//! `/staticky`. A WSGI application sees its prefix as `SCRIPT_NAME` and the rest as
//! `PATH_INFO` (PEP 3333); a directory of files resolves the rest as a path inside it. A
//! path no prefix takes gets 404 from the server.

pub mod files;

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use http::{Response, StatusCode};
use hyper::body::Incoming;
use percent_encoding::percent_decode;

use self::files::Files;
use crate::body::{ResponseBody, plain};
use crate::bridge::application::Application;
use crate::bridge::interpreter::LoadError;
use crate::bridge::{Bridge, Channel};
use crate::config::ServerConfig;
use crate::timers::Timer;

/// What can be mounted at a prefix.
#[derive(Debug)]
pub enum Resource {
    /// A WSGI application (PEP 3333), printed `wsgi:NAME`.
    Application(Application),
    /// A directory of static files, printed `static:DIR`.
    Files(Files),
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Resource::Application(application) => write!(f, "wsgi:{}", application.name()),
            Resource::Files(files) => write!(f, "static:{}", files.root().display()),
        }
    }
}

/// Why a site cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    /// A prefix that is not an absolute path of plain segments.
    #[error(
        "mount prefix {prefix:?}: {reason}; a prefix is / or a path like /static or /api/v1 \
         (segments of letters, digits and -._~!$&'()*+,;=:@, no . or .. segments)"
    )]
    InvalidPrefix {
        /// The prefix as given.
        prefix: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two resources at one prefix.
    #[error(
        "{prefix} has two resources, {first} and {second}: mount one of them at another prefix"
    )]
    Duplicate {
        /// The prefix.
        prefix: String,
        /// The printed form of the resource mounted first.
        first: String,
        /// The printed form of the other.
        second: String,
    },
    /// The Python threads for the applications could not be started.
    #[error(transparent)]
    Bridge(#[from] LoadError),
}

/// Checks and normalises a mount prefix: `/` stays `/` (stored as `""`), `/static/` becomes
/// `/static`.
fn prefix(given: &str) -> Result<String, SiteError> {
    let invalid = |reason| SiteError::InvalidPrefix {
        prefix: given.to_owned(),
        reason,
    };
    let Some(rest) = given.strip_prefix('/') else {
        return Err(invalid("it must start with /"));
    };
    if rest.starts_with('/') {
        return Err(invalid("it has an empty segment (//)"));
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Ok(String::new());
    }
    for segment in rest.split('/') {
        if segment.is_empty() {
            return Err(invalid("it has an empty segment (//)"));
        }
        if segment == "." || segment == ".." {
            return Err(invalid("it has a . or .. segment"));
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@".contains(c);
        if !segment.chars().all(allowed) {
            return Err(invalid(
                "it has a character that is not allowed unencoded in a path",
            ));
        }
    }
    Ok(format!("/{rest}"))
}

/// One mount: the normalised prefix (`""` for the root) and where it leads.
#[derive(Debug)]
struct Route {
    prefix: String,
    target: Target,
}

#[derive(Debug)]
enum Target {
    /// The index of the application in the bridge.
    Application(usize),
    Files(Arc<Files>),
}

/// The Python threads of a [`Site`], to wait for once the site is dropped
/// ([`Site::python_threads`]).
#[derive(Clone)]
pub struct PythonThreads(crate::pool::PoolThreads);

impl std::fmt::Debug for PythonThreads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PythonThreads")
    }
}

impl PythonThreads {
    /// Waits until every Python thread has finished, for at most `limit`: the number
    /// still running then (0 when all have finished; one still in an application's call
    /// keeps running). Must not be called while holding the GIL, which a finishing thread
    /// needs.
    pub fn wait(&self, limit: std::time::Duration) -> usize {
        self.0.wait(limit)
    }
}

/// A mount table of resources, served by [`serve`](crate::serve).
#[derive(Debug)]
pub struct Site {
    /// Longest prefix first.
    routes: Vec<Route>,
    /// The Python threads, when the site has an application.
    bridge: Option<Bridge>,
    config: ServerConfig,
    /// One line per mount, `PREFIX -> RESOURCE`, for the log.
    printed: Vec<String>,
    /// Repeating tasks, run on the bridge's threads while the site is served.
    timers: Vec<Timer>,
    /// Set when shutdown begins: HTTP/1.1 responses then close their connections.
    closing: AtomicBool,
}

impl Site {
    /// Mounts each resource at its prefix. When any resource is an application, starts the
    /// Python threads (see [`Bridge::new`]), which must be done within the tokio runtime
    /// that will serve, after [`initialize`](crate::initialize); a site of files alone
    /// needs neither Python nor its threads.
    ///
    /// # Errors
    /// [`SiteError::InvalidPrefix`] for a prefix that is not `/` or a plain absolute path,
    /// [`SiteError::Duplicate`] for two resources at one prefix (`/static` and `/static/`
    /// are the same prefix), [`SiteError::Bridge`] if the Python threads cannot start.
    pub fn new(mounts: Vec<(String, Resource)>, config: ServerConfig) -> Result<Site, SiteError> {
        let mut applications = Vec::new();
        let mut routes: Vec<Route> = Vec::new();
        let mut printed: Vec<(String, String)> = Vec::new();
        for (given, resource) in mounts {
            let prefix = prefix(&given)?;
            let shown = resource.to_string();
            let at = if prefix.is_empty() { "/" } else { &prefix };
            if let Some((_, first)) = printed.iter().find(|(p, _)| p == at) {
                return Err(SiteError::Duplicate {
                    prefix: at.to_owned(),
                    first: first.clone(),
                    second: shown,
                });
            }
            printed.push((at.to_owned(), shown));
            let target = match resource {
                Resource::Application(application) => {
                    applications.push((prefix.clone(), application));
                    Target::Application(applications.len() - 1)
                }
                Resource::Files(files) => Target::Files(Arc::new(files)),
            };
            routes.push(Route { prefix, target });
        }
        routes.sort_by_key(|route| std::cmp::Reverse(route.prefix.len()));
        let bridge = if applications.is_empty() {
            None
        } else {
            Some(Bridge::new(applications, config.clone())?)
        };
        Ok(Site {
            routes,
            bridge,
            config,
            timers: Vec::new(),
            closing: AtomicBool::new(false),
            printed: printed
                .into_iter()
                .map(|(prefix, shown)| format!("{prefix} -> {shown}"))
                .collect(),
        })
    }

    /// Adds repeating tasks, run on the site's Python threads while it is served (see
    /// [`Timer`]). A site without an application starts its Python threads here, which
    /// must be done within the tokio runtime that will serve it.
    ///
    /// # Errors
    /// [`SiteError::Bridge`] when the Python threads cannot be started.
    pub fn with_timers(mut self, timers: Vec<Timer>) -> Result<Site, SiteError> {
        if !timers.is_empty() && self.bridge.is_none() {
            self.bridge = Some(Bridge::new(Vec::new(), self.config.clone())?);
        }
        for timer in &timers {
            self.printed.push(format!(
                "every {:?} -> timer {}",
                timer.interval(),
                timer.name()
            ));
        }
        self.timers.extend(timers);
        Ok(self)
    }

    /// What `/metrics` and `/status` read about this site and its process: the site's
    /// [`ServerConfig::metrics`] (fresh ones if it has none, which then count nothing), its
    /// Python threads and its timers. Take it before serving.
    pub fn reporter(&self) -> crate::metrics::Reporter {
        crate::metrics::Reporter {
            metrics: self.config.metrics.clone().unwrap_or_default(),
            pool: self.bridge.as_ref().map(Bridge::watch),
            timers: self.timers.clone(),
        }
    }

    /// A handle to wait, once the site is dropped, until its Python threads have let go of
    /// the interpreter: what a program embedded in Python calls before it returns to it, so
    /// that the interpreter never finalizes with one of them still inside. `None` for a
    /// site without WSGI applications.
    pub fn python_threads(&self) -> Option<PythonThreads> {
        self.bridge.as_ref().map(|b| PythonThreads(b.threads()))
    }

    /// Marks the site as shutting down (see [`Site::closing`]).
    pub(crate) fn begin_closing(&self) {
        self.closing.store(true, Ordering::Relaxed);
    }

    /// Whether shutdown has begun, so that each HTTP/1.1 response closes its connection.
    pub(crate) fn closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    /// The site's repeating tasks.
    pub(crate) fn timers(&self) -> &[Timer] {
        &self.timers
    }

    /// The site's Python threads, if it has an application or a timer.
    pub(crate) fn bridge(&self) -> Option<&Bridge> {
        self.bridge.as_ref()
    }

    /// The configuration the site serves with.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The mounts, one `PREFIX -> RESOURCE` line each (`/ -> wsgi:hello:app`,
    /// `/static -> static:/srv/static`), in the order they were given.
    pub fn mounts(&self) -> &[String] {
        &self.printed
    }

    /// The route `path` (the request's path, percent-decoded) takes: the longest prefix
    /// it starts with on a segment boundary.
    fn route(&self, path: &[u8]) -> Option<&Route> {
        self.routes.iter().find(|route| {
            let prefix = route.prefix.as_bytes();
            path.starts_with(prefix) && matches!(path.get(prefix.len()), None | Some(b'/'))
        })
    }

    /// Serves one request with the resource its path leads to, or 404.
    ///
    /// The route is chosen before the future is made, and the future is the application's
    /// own (or the file server's, boxed): no layer of its own that would hold the request
    /// a second time, and be moved as it is made, on every request.
    pub(crate) fn handle(
        &self,
        request: http::Request<Incoming>,
        channel: Arc<Channel>,
    ) -> Handling<'_, impl Future<Output = Response<ResponseBody>> + Send + '_> {
        let path = decoded(request.uri().path());
        let Some(route) = self.route(&path) else {
            return Handling::Ready {
                response: Some(plain(StatusCode::NOT_FOUND, "Not Found\n")),
            };
        };
        match &route.target {
            Target::Application(app) => match &self.bridge {
                Some(bridge) => Handling::Application {
                    future: bridge.handle(*app, request, channel),
                },
                None => Handling::Ready {
                    response: Some(plain(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Internal Server Error\n",
                    )),
                },
            },
            Target::Files(files) => {
                let prefix = route.prefix.len();
                Handling::Files {
                    future: Box::pin(async move {
                        let path = decoded(request.uri().path());
                        files.serve(&request, &path[prefix..]).await
                    }),
                }
            }
        }
    }
}

/// The request's path, percent-decoded (borrowed when it has no escapes).
fn decoded(raw: &str) -> Cow<'_, [u8]> {
    if raw.contains('%') {
        percent_decode(raw.as_bytes()).into()
    } else {
        Cow::Borrowed(raw.as_bytes())
    }
}

pin_project_lite::pin_project! {
    /// The answer [`Site::handle`] is making: an application's, the file server's, or one
    /// ready at once.
    #[project = HandlingProjection]
    pub(crate) enum Handling<'a, A> {
        /// An application's answer, through the bridge.
        Application { #[pin] future: A },
        /// A file's.
        Files { future: Pin<Box<dyn Future<Output = Response<ResponseBody>> + Send + 'a>> },
        /// Known without waiting (404); `None` once given.
        Ready { response: Option<Response<ResponseBody>> },
    }
}

impl<A: Future<Output = Response<ResponseBody>>> Future for Handling<'_, A> {
    type Output = Response<ResponseBody>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            HandlingProjection::Application { future } => future.poll(cx),
            HandlingProjection::Files { future } => future.as_mut().poll(cx),
            HandlingProjection::Ready { response } => Poll::Ready(response.take().unwrap_or_else(
                // Polled again after its answer: a caller's mistake, answered, not a panic.
                || plain(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_absolute_paths_of_plain_segments() {
        for (given, normal) in [
            ("/", ""),
            ("/static", "/static"),
            ("/static/", "/static"),
            ("/api/v1", "/api/v1"),
            ("/a-b_c.d~e", "/a-b_c.d~e"),
        ] {
            assert_eq!(prefix(given).unwrap(), normal, "{given}");
        }
        for bad in [
            "", "static", "//", "/a//b", "/a/../b", "/.", "/a b", "/a%20b", "/a?b", "/é",
        ] {
            assert!(prefix(bad).is_err(), "{bad:?}");
        }
    }

    fn site(prefixes: &[&str]) -> Site {
        let routes = prefixes
            .iter()
            .enumerate()
            .map(|(i, p)| Route {
                prefix: prefix(p).unwrap(),
                target: Target::Application(i),
            })
            .collect::<Vec<_>>();
        let mut site = Site {
            routes,
            bridge: None,
            config: ServerConfig::default(),
            printed: Vec::new(),
            timers: Vec::new(),
            closing: AtomicBool::new(false),
        };
        site.routes
            .sort_by_key(|route| std::cmp::Reverse(route.prefix.len()));
        site
    }

    fn routed(site: &Site, path: &str) -> Option<usize> {
        site.route(path.as_bytes()).map(|route| match route.target {
            Target::Application(i) => i,
            Target::Files(_) => usize::MAX,
        })
    }

    #[test]
    fn the_longest_prefix_on_a_segment_boundary_wins() {
        let site = site(&["/", "/static", "/static/img", "/api"]);
        assert_eq!(routed(&site, "/"), Some(0));
        assert_eq!(routed(&site, "/staticky"), Some(0));
        assert_eq!(routed(&site, "/static"), Some(1));
        assert_eq!(routed(&site, "/static/"), Some(1));
        assert_eq!(routed(&site, "/static/app.css"), Some(1));
        assert_eq!(routed(&site, "/static/img"), Some(2));
        assert_eq!(routed(&site, "/static/img/a.png"), Some(2));
        assert_eq!(routed(&site, "/static/imgs"), Some(1));
        assert_eq!(routed(&site, "/api/x"), Some(3));
        // Without a root, what no prefix takes is nobody's.
        let site = self::site(&["/static"]);
        assert_eq!(routed(&site, "/"), None);
        assert_eq!(routed(&site, "/other"), None);
    }
}
