//! The control channel: JSON over HTTP/1.1 on a listener of its own, apart from the site,
//! for the people and programs that run the server: live parameters (`/params`), health
//! (`/health`), metrics (`/metrics`) and status (`/status`).
//!
//! | request | answer |
//! |---|---|
//! | `GET /params` | 200, the parameters as a JSON object |
//! | `GET /params/NAME` | 200, the value; 404 when there is none |
//! | `PUT /params/NAME` (a JSON value) | 200, `{"name", "value", "previous"}` |
//! | `DELETE /params/NAME` | 200, `{"name", "previous"}`; 404 when there is none |
//! | `PATCH /params` (a JSON object, RFC 7396: `null` removes) | 200, the parameters after |
//! | `GET /health` | 200 `{"status": "serving"}`; 503 `{"status": "draining"}` from the moment shutdown starts, so a load balancer stops sending before connections close |
//! | `GET /metrics` | 200, the OpenMetrics text format (which Prometheus scrapes), when the server gives a source |
//! | `GET /status` | 200, a JSON object, when the server gives a source |
//!
//! Anything else gets a 4xx with `{"error": "..."}` and changes nothing: 400 for a body
//! that is not JSON (with the line and column), 404 for another path, 405 (with `Allow`) for
//! another method, 413 for a body over 1 MiB. With a token, every request must carry
//! `Authorization: Bearer <token>`, compared in constant time; 401 otherwise.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};
use torsion_endpoints::Listener;

use crate::params::{Params, ParamsError, kind, params};

/// The largest request body the channel reads.
const MAX_BODY: usize = 1 << 20;

/// Whether the server is serving or shutting down, as `GET /health` reports it.
#[derive(Debug, Default)]
pub struct Health {
    draining: AtomicBool,
}

impl Health {
    /// Serving, until [`Health::begin_draining`].
    pub fn new() -> Health {
        Health::default()
    }

    /// Shutdown has started: `/health` answers 503 from now on.
    pub fn begin_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Whether shutdown has started.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// A source of text for `/metrics` or of a JSON object for `/status`, called on each
/// request to them (a supervisor asks its workers, so the answer may take a moment).
pub type Report<T> =
    Arc<dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>> + Send + Sync>;

/// What the control channel serves; see the module documentation.
#[derive(Clone)]
pub struct Control {
    token: Option<Arc<str>>,
    health: Arc<Health>,
    params: &'static Params,
    metrics: Option<Report<String>>,
    status: Option<Report<Value>>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("token", &self.token.as_ref().map(|_| "(set)"))
            .field("health", &self.health)
            .finish_non_exhaustive()
    }
}

impl Control {
    /// A channel for this process's [`params`], reporting `health`; with `token`, requests
    /// must carry it as a bearer token (RFC 6750 §2.1).
    pub fn new(token: Option<String>, health: Arc<Health>) -> Control {
        Control {
            token: token.map(Arc::from),
            health,
            params: params(),
            metrics: None,
            status: None,
        }
    }

    /// Serves `GET /metrics` with what `report` returns (Prometheus' text format).
    pub fn with_metrics(mut self, report: Report<String>) -> Control {
        self.metrics = Some(report);
        self
    }

    /// Serves `GET /status` with what `report` returns.
    pub fn with_status(mut self, report: Report<Value>) -> Control {
        self.status = Some(report);
        self
    }

    /// Serves the channel on `listener` until the task is dropped; one task per
    /// connection, each HTTP/1.1 with keep-alive.
    pub async fn serve(self, mut listener: Listener) {
        let control = Arc::new(self);
        loop {
            let connection = listener.next_connection().await;
            let control = control.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let control = control.clone();
                    async move { Ok::<_, Infallible>(control.answer(request).await) }
                });
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(std::time::Duration::from_secs(30));
                if let Err(err) = builder
                    .serve_connection(hyper_util::rt::TokioIo::new(connection), service)
                    .await
                {
                    tracing::debug!("control connection ended: {err}");
                }
            });
        }
    }

    /// The answer to one request.
    async fn answer(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        if let Some(token) = &self.token
            && !bearer_matches(request.headers().get(header::AUTHORIZATION), token)
        {
            let mut response = error(
                StatusCode::UNAUTHORIZED,
                "this control channel needs Authorization: Bearer <token>, the token of --control-token-file",
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
        let path = request.uri().path().to_owned();
        let method = request.method().clone();
        let name = path.strip_prefix("/params/").map(|raw| {
            percent_encoding::percent_decode_str(raw)
                .decode_utf8_lossy()
                .into_owned()
        });
        match (path.as_str(), name) {
            ("/health", _) => match method {
                Method::GET | Method::HEAD => {
                    if self.health.is_draining() {
                        json_response(
                            StatusCode::SERVICE_UNAVAILABLE,
                            &json!({"status": "draining"}),
                        )
                    } else {
                        json_response(StatusCode::OK, &json!({"status": "serving"}))
                    }
                }
                _ => not_allowed("GET, HEAD"),
            },
            ("/metrics", _) => match (&method, &self.metrics) {
                (&Method::GET | &Method::HEAD, Some(report)) => {
                    let text = report().await;
                    let mut response = Response::new(Full::new(Bytes::from(text)));
                    response.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static(
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        ),
                    );
                    response
                }
                (_, None) => not_found(&path),
                _ => not_allowed("GET, HEAD"),
            },
            ("/status", _) => match (&method, &self.status) {
                (&Method::GET | &Method::HEAD, Some(report)) => {
                    json_response(StatusCode::OK, &report().await)
                }
                (_, None) => not_found(&path),
                _ => not_allowed("GET, HEAD"),
            },
            ("/params", _) => match method {
                Method::GET | Method::HEAD => self.all_params(),
                Method::PATCH => match read_json(request).await {
                    Ok(Value::Object(patch)) => {
                        let params = self.params;
                        match blocking(move || params.merge(patch)).await {
                            Ok(_) => self.all_params(),
                            Err(err) => refused(err),
                        }
                    }
                    Ok(other) => error(
                        StatusCode::BAD_REQUEST,
                        &format!(
                            "PATCH /params takes a JSON object of the parameters to set (null removes one), not a {}",
                            kind(&other)
                        ),
                    ),
                    Err(response) => response,
                },
                _ => not_allowed("GET, HEAD, PATCH"),
            },
            (_, Some(name)) => self.one_param(method, name, request).await,
            _ => not_found(&path),
        }
    }

    fn all_params(&self) -> Response<Full<Bytes>> {
        json_response(
            StatusCode::OK,
            &Value::Object(self.params.snapshot().values.clone()),
        )
    }

    async fn one_param(
        &self,
        method: Method,
        name: String,
        request: Request<Incoming>,
    ) -> Response<Full<Bytes>> {
        let params = self.params;
        match method {
            Method::GET | Method::HEAD => match params.snapshot().values.get(&name) {
                Some(value) => json_response(StatusCode::OK, value),
                None => error(StatusCode::NOT_FOUND, &format!("no parameter {name:?}")),
            },
            Method::PUT => match read_json(request).await {
                Ok(value) => match blocking(move || params.set(&name, value)).await {
                    Ok(change) => json_response(
                        StatusCode::OK,
                        &json!({"name": change.name, "value": change.new, "previous": change.old}),
                    ),
                    Err(err) => refused(err),
                },
                Err(response) => response,
            },
            Method::DELETE => match blocking(move || params.remove(&name)).await {
                Ok(change) if change.old.is_none() => error(
                    StatusCode::NOT_FOUND,
                    &format!("no parameter {:?}", change.name),
                ),
                Ok(change) => json_response(
                    StatusCode::OK,
                    &json!({"name": change.name, "previous": change.old}),
                ),
                Err(err) => refused(err),
            },
            _ => not_allowed("GET, HEAD, PUT, DELETE"),
        }
    }
}

/// Runs a parameter change (which writes and fsyncs the file) off the event loop.
async fn blocking<T: Send + 'static>(
    change: impl FnOnce() -> Result<T, ParamsError> + Send + 'static,
) -> Result<T, ParamsError> {
    match tokio::task::spawn_blocking(change).await {
        Ok(outcome) => outcome,
        Err(err) => Err(ParamsError::Write {
            file: "(the parameters file)".into(),
            source: std::io::Error::other(err.to_string()),
        }),
    }
}

/// Whether `authorization` is `Bearer <token>` (the scheme case-insensitive, RFC 9110
/// §11.1), compared in constant time.
fn bearer_matches(authorization: Option<&HeaderValue>, token: &str) -> bool {
    let Some(value) = authorization.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some((scheme, given)) = value.trim().split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer")
        && constant_time_eq::constant_time_eq(given.trim().as_bytes(), token.as_bytes())
}

/// The request body as JSON, or the 4xx answer that says why not.
async fn read_json(request: Request<Incoming>) -> Result<Value, Response<Full<Bytes>>> {
    let body = Limited::new(request.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|err| {
            if err.is::<http_body_util::LengthLimitError>() {
                error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("the body is over {MAX_BODY} bytes"),
                )
            } else {
                error(
                    StatusCode::BAD_REQUEST,
                    &format!("the body could not be read: {err}"),
                )
            }
        })?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|err| {
        error(
            StatusCode::BAD_REQUEST,
            &format!("the body is not JSON: {err}"),
        )
    })
}

fn json_response(status: StatusCode, value: &Value) -> Response<Full<Bytes>> {
    let mut body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    body.push(b'\n');
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json_response(status, &json!({ "error": message }))
}

fn not_found(path: &str) -> Response<Full<Bytes>> {
    error(
        StatusCode::NOT_FOUND,
        &format!(
            "no {path} here; the control channel answers /params, /params/NAME, /health, /metrics and /status"
        ),
    )
}

fn not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut response = error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("this path takes {allow}"),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// A change the parameters refused: a bad name is the client's fault (400), a file that
/// cannot be written the server's (500); either way nothing changed.
fn refused(err: ParamsError) -> Response<Full<Bytes>> {
    let status = match err {
        ParamsError::Name { .. } => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status.is_server_error() {
        tracing::error!("{err}");
    }
    error(status, &err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_token_must_match_exactly() {
        let header = |text: &str| HeaderValue::from_str(text).unwrap();
        assert!(bearer_matches(Some(&header("Bearer s3cret")), "s3cret"));
        assert!(bearer_matches(Some(&header("bearer  s3cret ")), "s3cret"));
        assert!(!bearer_matches(Some(&header("Bearer s3cre")), "s3cret"));
        assert!(!bearer_matches(Some(&header("Bearer s3crets")), "s3cret"));
        assert!(!bearer_matches(Some(&header("Basic s3cret")), "s3cret"));
        assert!(!bearer_matches(None, "s3cret"));
    }
}
