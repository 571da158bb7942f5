//! What the server does, counted for the control channel: [`Metrics`] on the request path
//! (a few relaxed atomic operations per request, and only when a control channel asks for
//! them), and the [`Snapshot`] that `/metrics` renders in Prometheus' text format and
//! `/status` shows as JSON. Snapshots add up, so a supervisor can sum its workers'.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::{Method, Version};
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use serde::{Deserialize, Serialize};

/// The methods counted by name; any other is "other".
const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other",
];
/// Status classes: 1xx to 5xx.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// Protocols counted: HTTP/1.x, and HTTP/2.
const PROTOCOLS: [&str; 2] = ["http/1.1", "h2"];
/// A connection that has not sent a request yet.
const UNKNOWN: u8 = 2;
/// The request-duration histogram's upper bounds, in seconds (Prometheus' defaults, with
/// 1 ms and 2.5 ms added for fast applications); one more bucket counts the rest.
pub const DURATION_BOUNDS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The counters the request path updates; see the module documentation.
#[derive(Debug)]
pub struct Metrics {
    requests: [AtomicU64; METHODS.len() * CLASSES.len() * PROTOCOLS.len()],
    durations: [AtomicU64; DURATION_BOUNDS.len() + 1],
    /// The sum of all durations, in nanoseconds.
    duration_nanos: AtomicU64,
    in_flight: AtomicI64,
    /// Open connections: HTTP/1.x, HTTP/2, not yet known.
    connections: [AtomicI64; 3],
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            requests: std::array::from_fn(|_| AtomicU64::new(0)),
            durations: std::array::from_fn(|_| AtomicU64::new(0)),
            duration_nanos: AtomicU64::new(0),
            in_flight: AtomicI64::new(0),
            connections: std::array::from_fn(|_| AtomicI64::new(0)),
        }
    }
}

/// A request being answered: [`Metrics::request_started`] made it.
#[derive(Debug)]
pub(crate) struct Measuring {
    started: Instant,
    method: usize,
}

/// An open connection, counted until dropped; its protocol is known at its first request.
#[derive(Debug)]
pub(crate) struct OpenConnection {
    metrics: Arc<Metrics>,
    protocol: AtomicU8,
}

impl OpenConnection {
    /// The connection carried a request of `version`: it counts under that protocol from
    /// now on.
    pub(crate) fn speaks(&self, version: Version) {
        if self.protocol.load(Ordering::Relaxed) == UNKNOWN {
            let protocol = protocol_index(version) as u8;
            if self
                .protocol
                .compare_exchange(UNKNOWN, protocol, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                self.metrics.connections[usize::from(UNKNOWN)].fetch_sub(1, Ordering::Relaxed);
                self.metrics.connections[usize::from(protocol)].fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        let protocol = usize::from(self.protocol.load(Ordering::Relaxed));
        self.metrics.connections[protocol].fetch_sub(1, Ordering::Relaxed);
    }
}

fn protocol_index(version: Version) -> usize {
    usize::from(version == Version::HTTP_2)
}

impl Metrics {
    /// Counters at zero.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// A request arrived (its head is read).
    pub(crate) fn request_started(&self, method: &Method) -> Measuring {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let method = match *method {
            Method::GET => 0,
            Method::HEAD => 1,
            Method::POST => 2,
            Method::PUT => 3,
            Method::DELETE => 4,
            Method::PATCH => 5,
            Method::OPTIONS => 6,
            _ => 7,
        };
        Measuring {
            started: Instant::now(),
            method,
        }
    }

    /// The response head to `measuring`'s request is ready, with `status`.
    pub(crate) fn request_answered(&self, measuring: Measuring, status: u16, version: Version) {
        let took = measuring.started.elapsed();
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let class = usize::from((status / 100).clamp(1, 5) - 1);
        let index =
            (measuring.method * CLASSES.len() + class) * PROTOCOLS.len() + protocol_index(version);
        self.requests[index].fetch_add(1, Ordering::Relaxed);
        let seconds = took.as_secs_f64();
        let bucket = DURATION_BOUNDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(DURATION_BOUNDS.len());
        self.durations[bucket].fetch_add(1, Ordering::Relaxed);
        self.duration_nanos.fetch_add(
            u64::try_from(took.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// A connection was accepted.
    pub(crate) fn connection_opened(self: &Arc<Metrics>) -> OpenConnection {
        self.connections[usize::from(UNKNOWN)].fetch_add(1, Ordering::Relaxed);
        OpenConnection {
            metrics: self.clone(),
            protocol: AtomicU8::new(UNKNOWN),
        }
    }

    /// The counters now, in a [`Snapshot`] whose other parts are empty.
    pub fn snapshot(&self) -> Snapshot {
        let mut requests = Vec::new();
        for (method_index, method) in METHODS.iter().enumerate() {
            for (class_index, class) in CLASSES.iter().enumerate() {
                for (protocol_index, protocol) in PROTOCOLS.iter().enumerate() {
                    let index = (method_index * CLASSES.len() + class_index) * PROTOCOLS.len()
                        + protocol_index;
                    let count = self.requests[index].load(Ordering::Relaxed);
                    if count > 0 {
                        requests.push(RequestCount {
                            method: (*method).to_owned(),
                            status: (*class).to_owned(),
                            protocol: (*protocol).to_owned(),
                            count,
                        });
                    }
                }
            }
        }
        let connections = PROTOCOLS
            .iter()
            .chain(&["unknown"])
            .zip(&self.connections)
            .map(|(protocol, open)| ((*protocol).to_owned(), open.load(Ordering::Relaxed)))
            .collect();
        Snapshot {
            requests,
            durations: self
                .durations
                .iter()
                .map(|count| count.load(Ordering::Relaxed))
                .collect(),
            duration_seconds: self.duration_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            in_flight: self.in_flight.load(Ordering::Relaxed),
            connections,
            ..Snapshot::default()
        }
    }
}

/// Requests answered with one method, status class and protocol.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCount {
    /// The method (`GET`, ..., or `other`).
    pub method: String,
    /// The status class (`2xx`).
    pub status: String,
    /// `http/1.1` (HTTP/1.0 included) or `h2`.
    pub protocol: String,
    /// How many.
    pub count: u64,
}

/// A certificate served, as a snapshot holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateReport {
    /// The name it is served for.
    pub name: String,
    /// Its issuer.
    pub issuer: String,
    /// Its notAfter, in seconds since the Unix epoch.
    pub expires: u64,
    /// When the ACME manager will next try to renew it (seconds since the epoch), if one
    /// manages it.
    pub next_renewal: Option<u64>,
    /// Whether the manager's last attempt succeeded, if it made one.
    pub last_renewal_ok: Option<bool>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// A timer, as a snapshot holds it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TimerReport {
    /// Its name.
    pub name: String,
    /// Its interval, in seconds.
    pub interval: f64,
    /// Calls made.
    pub runs: u64,
    /// Calls that raised.
    pub failures: u64,
    /// When the latest call started (seconds since the epoch).
    pub last_run: Option<f64>,
    /// How long it took, in seconds.
    pub last_duration: Option<f64>,
    /// `ok`, or the exception's last line.
    pub last_result: Option<String>,
}

/// What the server has done and is doing, at one moment; see the module documentation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Requests answered, by method, status class and protocol (non-zero counts only).
    pub requests: Vec<RequestCount>,
    /// Requests by duration (from the request's head to the response's head), one count
    /// per bucket of [`DURATION_BOUNDS`] and one for the rest.
    pub durations: Vec<u64>,
    /// The sum of those durations, in seconds.
    pub duration_seconds: f64,
    /// Requests whose response head is not ready yet.
    pub in_flight: i64,
    /// Requests waiting for a Python thread.
    pub queued: u64,
    /// Python threads running requests or timers.
    pub threads_busy: u64,
    /// Python threads in all.
    pub threads: u64,
    /// Open connections by protocol (`http/1.1`, `h2`, `unknown` before a request).
    pub connections: Vec<(String, i64)>,
    /// TLS handshakes completed.
    pub handshakes_completed: u64,
    /// TLS handshakes failed or timed out.
    pub handshakes_failed: u64,
    /// Certificates served, by name.
    pub certificates: Vec<CertificateReport>,
    /// Repeating tasks.
    pub timers: Vec<TimerReport>,
}

impl Snapshot {
    /// Adds `other`'s counts and gauges to these (another process's, say). Certificates
    /// are merged by name, keeping the later expiry; timers by name.
    pub fn add(&mut self, other: &Snapshot) {
        for count in &other.requests {
            match self.requests.iter_mut().find(|c| {
                c.method == count.method && c.status == count.status && c.protocol == count.protocol
            }) {
                Some(known) => known.count += count.count,
                None => self.requests.push(count.clone()),
            }
        }
        if self.durations.len() < other.durations.len() {
            self.durations.resize(other.durations.len(), 0);
        }
        for (mine, theirs) in self.durations.iter_mut().zip(&other.durations) {
            *mine += theirs;
        }
        self.duration_seconds += other.duration_seconds;
        self.in_flight += other.in_flight;
        self.queued += other.queued;
        self.threads_busy += other.threads_busy;
        self.threads += other.threads;
        for (protocol, open) in &other.connections {
            match self.connections.iter_mut().find(|(p, _)| p == protocol) {
                Some((_, known)) => *known += open,
                None => self.connections.push((protocol.clone(), *open)),
            }
        }
        self.handshakes_completed += other.handshakes_completed;
        self.handshakes_failed += other.handshakes_failed;
        for certificate in &other.certificates {
            match self
                .certificates
                .iter_mut()
                .find(|c| c.name == certificate.name)
            {
                Some(known) => {
                    if certificate.expires > known.expires {
                        known.expires = certificate.expires;
                        known.issuer.clone_from(&certificate.issuer);
                    }
                    if certificate.last_renewal_ok.is_some() {
                        known.last_renewal_ok = certificate.last_renewal_ok;
                        known.last_error.clone_from(&certificate.last_error);
                        known.next_renewal = certificate.next_renewal;
                    }
                }
                None => self.certificates.push(certificate.clone()),
            }
        }
        for timer in &other.timers {
            match self.timers.iter_mut().find(|t| t.name == timer.name) {
                Some(known) => {
                    known.runs += timer.runs;
                    known.failures += timer.failures;
                    if timer.last_run > known.last_run {
                        known.last_run = timer.last_run;
                        known.last_duration = timer.last_duration;
                        known.last_result.clone_from(&timer.last_result);
                    }
                }
                None => self.timers.push(timer.clone()),
            }
        }
        self.certificates.sort_by(|a, b| a.name.cmp(&b.name));
    }

    /// The snapshot in Prometheus' text format (OpenMetrics 1.0, as the
    /// `prometheus-client` crate encodes it; serve it as
    /// `application/openmetrics-text; version=1.0.0; charset=utf-8`).
    pub fn render(self) -> String {
        let mut text = String::new();
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(Collected(self)));
        if prometheus_client::encoding::text::encode(&mut text, &registry).is_err() {
            let _ = writeln!(text, "# EOF");
        }
        text
    }
}

/// A snapshot as a prometheus-client collector.
#[derive(Debug)]
struct Collected(Snapshot);

/// A label set of borrowed pairs.
type Labels<'a> = Vec<(&'a str, &'a str)>;

impl prometheus_client::collector::Collector for Collected {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        {
            let mut metric = encoder.encode_descriptor(
                "torsion_requests",
                "Requests answered, by method, status class and protocol.",
                None,
                MetricType::Counter,
            )?;
            for count in &s.requests {
                let labels: Labels<'_> = vec![
                    ("method", &count.method),
                    ("status", &count.status),
                    ("protocol", &count.protocol),
                ];
                ConstCounter::new(count.count).encode(metric.encode_family(&labels)?)?;
            }
        }
        {
            let mut metric = encoder.encode_descriptor(
                "torsion_request_duration_seconds",
                "Time from a request's head to its response's head.",
                None,
                MetricType::Histogram,
            )?;
            let buckets: Vec<(f64, u64)> = DURATION_BOUNDS
                .iter()
                .copied()
                .chain([f64::MAX])
                .zip(s.durations.iter().copied().chain(std::iter::repeat(0)))
                .collect();
            let count = s.durations.iter().sum();
            metric.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                s.duration_seconds,
                count,
                &buckets,
                None,
            )?;
        }
        let gauges: [(&str, &str, i64); 4] = [
            (
                "torsion_requests_in_flight",
                "Requests whose response head is not ready yet.",
                s.in_flight,
            ),
            (
                "torsion_requests_queued",
                "Requests waiting for a Python thread.",
                s.queued as i64,
            ),
            (
                "torsion_python_threads_busy",
                "Python threads running requests or timers.",
                s.threads_busy as i64,
            ),
            (
                "torsion_python_threads",
                "Python threads in all.",
                s.threads as i64,
            ),
        ];
        for (name, help, value) in gauges {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(value).encode(metric)?;
        }
        {
            let mut metric = encoder.encode_descriptor(
                "torsion_connections_open",
                "Open connections, by protocol (unknown: no request yet).",
                None,
                MetricType::Gauge,
            )?;
            for (protocol, open) in &s.connections {
                let labels: Labels<'_> = vec![("protocol", protocol)];
                ConstGauge::new(*open).encode(metric.encode_family(&labels)?)?;
            }
        }
        {
            let mut metric = encoder.encode_descriptor(
                "torsion_tls_handshakes",
                "TLS handshakes, by result.",
                None,
                MetricType::Counter,
            )?;
            for (result, count) in [
                ("completed", s.handshakes_completed),
                ("failed", s.handshakes_failed),
            ] {
                let labels: Labels<'_> = vec![("result", result)];
                ConstCounter::new(count).encode(metric.encode_family(&labels)?)?;
            }
        }
        {
            let mut metric = encoder.encode_descriptor(
                "torsion_certificate_expiry_timestamp_seconds",
                "When each certificate served expires (notAfter), in seconds since the Unix epoch.",
                None,
                MetricType::Gauge,
            )?;
            for certificate in s.certificates.iter().filter(|c| c.expires > 0) {
                let labels: Labels<'_> =
                    vec![("name", &certificate.name), ("issuer", &certificate.issuer)];
                ConstGauge::new(certificate.expires as i64)
                    .encode(metric.encode_family(&labels)?)?;
            }
        }
        {
            let mut metric = encoder.encode_descriptor(
                "torsion_certificate_renewal_ok",
                "Whether the ACME manager's last attempt for each name succeeded (1) or failed (0).",
                None,
                MetricType::Gauge,
            )?;
            for certificate in &s.certificates {
                if let Some(ok) = certificate.last_renewal_ok {
                    let labels: Labels<'_> = vec![("name", &certificate.name)];
                    ConstGauge::new(i64::from(ok)).encode(metric.encode_family(&labels)?)?;
                }
            }
        }
        for (name, help, value) in [
            (
                "torsion_timer_runs",
                "Calls of each repeating task.",
                (|t: &TimerReport| t.runs) as fn(&TimerReport) -> u64,
            ),
            (
                "torsion_timer_failures",
                "Calls of each repeating task that raised.",
                |t: &TimerReport| t.failures,
            ),
        ] {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for timer in &s.timers {
                let labels: Labels<'_> = vec![("timer", &timer.name)];
                ConstCounter::new(value(timer)).encode(metric.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// Everything `/metrics` and `/status` read about one server, gathered from its site
/// before it is served ([`Site::reporter`](crate::site::Site::reporter)): the counters, the
/// Python threads, the timers, and this process's TLS listeners and ACME managers.
#[derive(Clone)]
pub struct Reporter {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) pool: Option<crate::pool::PoolWatch>,
    pub(crate) timers: Vec<crate::timers::Timer>,
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporter")
            .field("metrics", &self.metrics)
            .field("timers", &self.timers)
            .finish_non_exhaustive()
    }
}

impl Reporter {
    /// Everything now.
    pub fn snapshot(&self) -> Snapshot {
        let mut snapshot = self.metrics.snapshot();
        if let Some(pool) = &self.pool {
            let stats = pool.stats();
            snapshot.queued = stats.queued as u64;
            snapshot.threads_busy = stats.busy as u64;
            snapshot.threads = stats.threads as u64;
        }
        snapshot.timers = self
            .timers
            .iter()
            .map(|timer| {
                let last = timer.last_run();
                TimerReport {
                    name: timer.name().to_owned(),
                    interval: timer.interval().as_secs_f64(),
                    runs: timer.runs(),
                    failures: timer.failures(),
                    last_run: last.as_ref().map(|run| epoch_seconds(run.started)),
                    last_duration: last.as_ref().map(|run| run.took.as_secs_f64()),
                    last_result: last.map(|run| run.error.unwrap_or_else(|| "ok".to_owned())),
                }
            })
            .collect();
        let handshakes = torsion_endpoints::tls::handshakes();
        snapshot.handshakes_completed = handshakes.completed;
        snapshot.handshakes_failed = handshakes.failed;
        snapshot.certificates = certificates();
        snapshot
    }
}

/// The certificates this process serves, with what its ACME managers (if any) last did
/// for each name, managed names without a certificate yet included.
pub fn certificates() -> Vec<CertificateReport> {
    let mut reports: Vec<CertificateReport> = torsion_endpoints::tls::served_certificates()
        .into_iter()
        .map(|served| CertificateReport {
            name: served.name,
            issuer: served.issuer,
            expires: epoch_seconds(served.not_after) as u64,
            ..CertificateReport::default()
        })
        .collect();
    for renewal in torsion_endpoints::acme::renewals() {
        let index = match reports.iter().position(|r| r.name == renewal.name) {
            Some(index) => index,
            None => {
                reports.push(CertificateReport {
                    name: renewal.name.clone(),
                    ..CertificateReport::default()
                });
                reports.len() - 1
            }
        };
        let report = &mut reports[index];
        report.next_renewal = renewal.next_attempt.map(|t| epoch_seconds(t) as u64);
        report.last_renewal_ok = renewal.succeeded;
        report.last_error = renewal.last_error;
    }
    reports.sort_by(|a, b| a.name.cmp(&b.name));
    reports
}

/// Seconds since the Unix epoch.
pub(crate) fn epoch_seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_method_class_and_protocol_and_snapshots_add_up() {
        let metrics = Arc::new(Metrics::new());
        for (method, status, version) in [
            (Method::GET, 200, Version::HTTP_11),
            (Method::GET, 204, Version::HTTP_11),
            (Method::POST, 503, Version::HTTP_2),
            (
                Method::from_bytes(b"PROPFIND").unwrap(),
                404,
                Version::HTTP_10,
            ),
        ] {
            let measuring = metrics.request_started(&method);
            metrics.request_answered(measuring, status, version);
        }
        let open = metrics.connection_opened();
        open.speaks(Version::HTTP_2);
        open.speaks(Version::HTTP_11);
        let snapshot = metrics.snapshot();
        let count = |m: &str, s: &str, p: &str| {
            snapshot
                .requests
                .iter()
                .find(|c| c.method == m && c.status == s && c.protocol == p)
                .map_or(0, |c| c.count)
        };
        assert_eq!(count("GET", "2xx", "http/1.1"), 2);
        assert_eq!(count("POST", "5xx", "h2"), 1);
        assert_eq!(count("other", "4xx", "http/1.1"), 1);
        assert_eq!(snapshot.durations.iter().sum::<u64>(), 4);
        assert_eq!(snapshot.in_flight, 0);
        assert_eq!(snapshot.connections[1], ("h2".to_owned(), 1));
        drop(open);
        assert!(metrics.snapshot().connections.iter().all(|(_, n)| *n == 0));

        let mut sum = snapshot.clone();
        sum.add(&snapshot);
        assert_eq!(sum.requests.iter().map(|c| c.count).sum::<u64>(), 8);
        let text = sum.render();
        assert!(
            text.contains(
                "torsion_requests_total{method=\"GET\",status=\"2xx\",protocol=\"http/1.1\"} 4"
            ),
            "{text}"
        );
        assert!(
            text.contains("torsion_request_duration_seconds_count 8"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
