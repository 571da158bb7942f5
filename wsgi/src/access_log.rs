//! The access log: one line per response, written by a thread of its own so that the
//! request path only appends a record (a few reference counts and numbers) to a bounded
//! queue under an uncontended lock. The writer takes the whole queue every 10 ms (or
//! sooner when 1,024 records wait), so the request path never wakes another thread:
//! waking the writer for each line cost 40% of a hello-world request's rate on a shared
//! core. Measured with `bench/run.py --only hello,hello-log`: 0.94x to 0.97x of the rate
//! without the log.
//!
//! Formats: the Combined and Common Log Formats as Apache defines them (`LogFormat
//! "%h %l %u %t \"%r\" %>s %b \"%{Referer}i\" \"%{User-agent}i\""`, and without the last
//! two fields), with times in UTC; and JSON, one object a line. Bytes are those of the
//! body actually handed to the connection, so an aborted response shows what was sent.
//! Text from the request is escaped as Apache does (`\"`, `\\`, `\xhh` for other bytes
//! outside printable ASCII), so a line can never be forged by a client.
//!
//! When the queue is full (a disk slower than the traffic), lines are dropped and counted
//! rather than the server slowed; a failing write (a full disk) is reported in the server
//! log and the lines go on being tried. [`AccessLog::reopen`] reopens the file after it
//! was moved away for rotation (the CLI calls it on SIGUSR1, as nginx and Apache do).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderValue, Method, Uri, Version};
use torsion_endpoints::{Address, ConnectionInfo};

/// Records waiting for the writer, at most; beyond, lines are dropped and counted.
const QUEUE: usize = 64 * 1024;
/// A queue this long wakes the writer before its next round.
const BATCH: usize = 1024;
/// How often the writer takes the queue.
const ROUND: Duration = Duration::from_millis(10);

/// The line format (`--access-log-format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Apache's Combined Log Format: Common plus Referer and User-Agent. The default.
    Combined,
    /// Apache's Common Log Format.
    Common,
    /// One JSON object a line: `time`, `method`, `target`, `protocol`, `status`, `bytes`,
    /// `duration_us`, `peer`, `user_agent`, `referer`, `server_name` (the TLS SNI name).
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(text: &str) -> Result<LogFormat, String> {
        match text {
            "combined" => Ok(LogFormat::Combined),
            "common" => Ok(LogFormat::Common),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "{other:?} is not a log format: expected combined, common or json"
            )),
        }
    }
}

/// Where the lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// Standard output (`-`).
    Stdout,
    /// A file, appended to, created if missing.
    File(PathBuf),
}

/// One response, as the request path hands it over. Its wall-clock time is worked out by
/// the writer from `started` (one clock read fewer on the request path).
pub(crate) struct Record {
    pub(crate) started: Instant,
    pub(crate) method: Method,
    pub(crate) target: Uri,
    pub(crate) version: Version,
    pub(crate) status: u16,
    pub(crate) bytes: u64,
    pub(crate) duration: Duration,
    pub(crate) connection: Arc<ConnectionInfo>,
    pub(crate) user_agent: Option<HeaderValue>,
    pub(crate) referer: Option<HeaderValue>,
}

/// A request being answered: what its line will need, taken before the request is handed
/// on. Reference counts and small copies only.
pub(crate) struct Pending {
    started: Instant,
    method: Method,
    target: Uri,
    version: Version,
    connection: Arc<ConnectionInfo>,
    user_agent: Option<HeaderValue>,
    referer: Option<HeaderValue>,
}

impl Pending {
    pub(crate) fn new<B>(request: &http::Request<B>, connection: &Arc<ConnectionInfo>) -> Pending {
        let headers = request.headers();
        Pending {
            started: Instant::now(),
            method: request.method().clone(),
            target: request.uri().clone(),
            version: request.version(),
            connection: connection.clone(),
            user_agent: headers.get(http::header::USER_AGENT).cloned(),
            referer: headers.get(http::header::REFERER).cloned(),
        }
    }

    /// The record, once the response's `status` is known and `bytes` of its body were
    /// sent.
    pub(crate) fn finish(self, status: u16, bytes: u64) -> Record {
        Record {
            started: self.started,
            method: self.method,
            target: self.target,
            version: self.version,
            status,
            bytes,
            duration: self.started.elapsed(),
            connection: self.connection,
            user_agent: self.user_agent,
            referer: self.referer,
        }
    }
}

struct Shared {
    queue: Mutex<Vec<Record>>,
    wake: Condvar,
    reopen: AtomicBool,
    stop: AtomicBool,
    dropped: AtomicU64,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// A handle on the access log; clones share the writer thread.
#[derive(Clone)]
pub struct AccessLog {
    shared: Arc<Shared>,
    format: LogFormat,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl AccessLog {
    /// Opens `destination` (a file is created if missing and appended to) and starts the
    /// writer thread.
    ///
    /// # Errors
    /// The file cannot be opened for appending, or the thread cannot start.
    pub fn open(destination: Destination, format: LogFormat) -> io::Result<AccessLog> {
        let output = Output::open(&destination)?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Vec::with_capacity(BATCH)),
            wake: Condvar::new(),
            reopen: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            writer: Mutex::new(None),
        });
        let writer = Writer {
            destination,
            format,
            output,
            shared: shared.clone(),
            failing: false,
        };
        let handle = std::thread::Builder::new()
            .name("torsion-access-log".into())
            .spawn(move || writer.run())?;
        *lock(&shared.writer) = Some(handle);
        Ok(AccessLog { shared, format })
    }

    /// The format of the lines.
    pub fn format(&self) -> LogFormat {
        self.format
    }

    /// Reopens the file before the next line (after it was moved away for rotation). Safe
    /// to call from a signal-handling task; does nothing for standard output.
    pub fn reopen(&self) {
        self.shared.reopen.store(true, Ordering::Release);
        self.shared.wake.notify_one();
    }

    /// Writes the lines still queued, then stops the writer thread and waits for it. Later
    /// records from any clone are dropped.
    pub fn finish(&self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake.notify_one();
        let handle = lock(&self.shared.writer).take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }

    /// Queues `record` for the writer; drops it, counted, when the queue is full.
    pub(crate) fn record(&self, record: Record) {
        let mut queue = lock(&self.shared.queue);
        if queue.len() >= QUEUE || self.shared.stop.load(Ordering::Relaxed) {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        queue.push(record);
        if queue.len() == BATCH {
            self.shared.wake.notify_one();
        }
    }
}

/// The lock's value even if a thread panicked while holding it (the queue stays usable).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

enum Output {
    Stdout(io::Stdout),
    File(BufWriter<File>),
}

impl Output {
    fn open(destination: &Destination) -> io::Result<Output> {
        Ok(match destination {
            Destination::Stdout => Output::Stdout(io::stdout()),
            Destination::File(path) => Output::File(BufWriter::with_capacity(
                64 * 1024,
                OpenOptions::new().create(true).append(true).open(path)?,
            )),
        })
    }

    fn write(&mut self, line: &[u8]) -> io::Result<()> {
        match self {
            Output::Stdout(out) => out.lock().write_all(line),
            Output::File(file) => file.write_all(line),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Stdout(out) => out.lock().flush(),
            Output::File(file) => file.flush(),
        }
    }
}

struct Writer {
    destination: Destination,
    format: LogFormat,
    output: Output,
    shared: Arc<Shared>,
    /// A write has failed and no write has succeeded since: the failure was reported.
    failing: bool,
}

impl Writer {
    fn run(mut self) {
        let mut line = Vec::with_capacity(512);
        let mut taken: Vec<Record> = Vec::with_capacity(BATCH);
        let mut clock = Clock::default();
        let mut reported_drops = Instant::now();
        loop {
            let stop = {
                let mut queue = lock(&self.shared.queue);
                let idle = queue.len() < BATCH
                    && !self.shared.stop.load(Ordering::Acquire)
                    && !self.shared.reopen.load(Ordering::Acquire);
                if idle {
                    queue = self
                        .shared
                        .wake
                        .wait_timeout(queue, ROUND)
                        .map(|(queue, _)| queue)
                        .unwrap_or_else(|e| e.into_inner().0);
                }
                std::mem::swap(&mut *queue, &mut taken);
                self.shared.stop.load(Ordering::Acquire)
            };
            self.maybe_reopen();
            let anchor = Anchor::now();
            for record in taken.drain(..) {
                line.clear();
                let time = anchor.wall_time(record.started);
                format_line(&mut line, &record, time, self.format, &mut clock);
                let written = self.output.write(&line);
                self.check(written);
            }
            let flushed = self.output.flush();
            self.check(flushed);
            if stop {
                return;
            }
            if reported_drops.elapsed() >= Duration::from_secs(10) {
                let dropped = self.shared.dropped.swap(0, Ordering::Relaxed);
                if dropped > 0 {
                    tracing::warn!(
                        "{dropped} access log lines were dropped: the log could not keep up"
                    );
                }
                reported_drops = Instant::now();
            }
        }
    }

    fn maybe_reopen(&mut self) {
        if !self.shared.reopen.swap(false, Ordering::AcqRel) {
            return;
        }
        let _ = self.output.flush();
        match Output::open(&self.destination) {
            Ok(output) => {
                self.output = output;
                tracing::info!("access log reopened");
            }
            Err(err) => {
                tracing::error!("cannot reopen the access log ({err}); writing on to the old file")
            }
        }
    }

    fn check(&mut self, result: io::Result<()>) {
        match result {
            Ok(()) if self.failing => {
                self.failing = false;
                tracing::info!("the access log is being written again");
            }
            Ok(()) => {}
            Err(err) if !self.failing => {
                self.failing = true;
                tracing::error!(
                    "cannot write the access log: {err}; lines are lost until it can be written again"
                );
            }
            Err(_) => {}
        }
    }
}

/// Appends the line for `record` in `format`, with its newline.
/// A moment read on both clocks, to turn an `Instant` into wall-clock time.
struct Anchor {
    instant: Instant,
    system: SystemTime,
}

impl Anchor {
    fn now() -> Anchor {
        Anchor {
            instant: Instant::now(),
            system: SystemTime::now(),
        }
    }

    fn wall_time(&self, at: Instant) -> SystemTime {
        match self.instant.checked_duration_since(at) {
            Some(before) => self.system - before,
            None => self.system + at.duration_since(self.instant),
        }
    }
}

fn format_line(
    out: &mut Vec<u8>,
    record: &Record,
    time: SystemTime,
    format: LogFormat,
    clock: &mut Clock,
) {
    let protocol = protocol(record.version);
    let target = record
        .target
        .path_and_query()
        .map_or(record.target.path(), |p| p.as_str());
    if format == LogFormat::Json {
        out.extend_from_slice(b"{\"time\":\"");
        out.extend_from_slice(rfc3339(time).as_bytes());
        out.extend_from_slice(b"\",\"method\":");
        json_string(out, record.method.as_str().as_bytes());
        out.extend_from_slice(b",\"target\":");
        json_string(out, target.as_bytes());
        out.extend_from_slice(b",\"protocol\":\"");
        out.extend_from_slice(protocol.as_bytes());
        out.extend_from_slice(b"\",\"status\":");
        number(out, u64::from(record.status));
        out.extend_from_slice(b",\"bytes\":");
        number(out, record.bytes);
        out.extend_from_slice(b",\"duration_us\":");
        number(out, record.duration.as_micros() as u64);
        out.extend_from_slice(b",\"peer\":\"");
        peer(out, &record.connection.peer);
        out.push(b'"');
        out.extend_from_slice(b",\"user_agent\":");
        json_optional(out, record.user_agent.as_ref().map(HeaderValue::as_bytes));
        out.extend_from_slice(b",\"referer\":");
        json_optional(out, record.referer.as_ref().map(HeaderValue::as_bytes));
        out.extend_from_slice(b",\"server_name\":");
        let sni = record
            .connection
            .tls
            .as_ref()
            .and_then(|tls| tls.sni.as_deref());
        json_optional(out, sni.map(str::as_bytes));
        out.extend_from_slice(b"}\n");
        return;
    }
    peer(out, &record.connection.peer);
    out.extend_from_slice(b" - - [");
    out.extend_from_slice(clock.clf(time).as_bytes());
    out.extend_from_slice(b"] \"");
    escape(out, record.method.as_str().as_bytes());
    out.push(b' ');
    escape(out, target.as_bytes());
    out.push(b' ');
    out.extend_from_slice(protocol.as_bytes());
    out.extend_from_slice(b"\" ");
    number(out, u64::from(record.status));
    out.push(b' ');
    if record.bytes == 0 {
        out.push(b'-');
    } else {
        number(out, record.bytes);
    }
    if format == LogFormat::Combined {
        for field in [&record.referer, &record.user_agent] {
            out.extend_from_slice(b" \"");
            match field {
                Some(value) => escape(out, value.as_bytes()),
                None => out.push(b'-'),
            }
            out.push(b'"');
        }
    }
    out.push(b'\n');
}

fn number(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Apache's `%t` text of the current second, made once a second rather than once a line.
#[derive(Default)]
struct Clock {
    second: u64,
    text: String,
}

impl Clock {
    fn clf(&mut self, time: SystemTime) -> &str {
        let second = time
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if second != self.second || self.text.is_empty() {
            self.second = second;
            self.text = clf_time(time);
        }
        &self.text
    }
}

/// The client's address as text, written into `out` without allocating.
fn peer(out: &mut Vec<u8>, address: &Address) {
    use std::io::Write as _;
    match address {
        Address::Tcp(addr) => {
            let _ = write!(out, "{}", addr.ip().to_canonical());
        }
        Address::Unix(_) => out.push(b'-'),
    }
}

fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// Apache's escaping of request text: `"` and `\` with a backslash, bytes outside
/// printable ASCII as `\xhh`.
fn escape(out: &mut Vec<u8>, text: &[u8]) {
    for &byte in text {
        match byte {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', byte]),
            0x20..=0x7e => out.push(byte),
            _ => out.extend_from_slice(format!("\\x{byte:02x}").as_bytes()),
        }
    }
}

/// A JSON string of `text`: UTF-8 kept, other bytes as the code point of the same value
/// (latin-1, as HTTP field text is), controls escaped.
fn json_string(out: &mut Vec<u8>, text: &[u8]) {
    out.push(b'"');
    let decoded: std::borrow::Cow<'_, str> = match std::str::from_utf8(text) {
        Ok(text) => text.into(),
        Err(_) => text.iter().map(|&b| b as char).collect::<String>().into(),
    };
    for c in decoded.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c => {
                let mut buffer = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
            }
        }
    }
    out.push(b'"');
}

fn json_optional(out: &mut Vec<u8>, text: Option<&[u8]>) {
    match text {
        Some(text) => json_string(out, text),
        None => out.extend_from_slice(b"null"),
    }
}

/// `30/Nov/2026:03:15:00 +0000`, Apache's `%t` in UTC.
fn clf_time(time: SystemTime) -> String {
    let (year, month, day, hour, minute, second, _) = civil(time);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{day:02}/{}/{year}:{hour:02}:{minute:02}:{second:02} +0000",
        MONTHS[month as usize - 1]
    )
}

/// `2026-11-30T03:15:00.123456Z`.
fn rfc3339(time: SystemTime) -> String {
    let (year, month, day, hour, minute, second, micros) = civil(time);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{micros:06}Z")
}

/// The UTC calendar date and time of `time` (proleptic Gregorian; Howard Hinnant's
/// `civil_from_days`).
fn civil(time: SystemTime) -> (i64, u32, u32, u32, u32, u32, u32) {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = since.as_secs() as i64;
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        (rest / 3600) as u32,
        (rest % 3600 / 60) as u32,
        (rest % 60) as u32,
        since.subsec_micros(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(user_agent: Option<&'static str>) -> Record {
        Record {
            started: Instant::now(),
            method: Method::GET,
            target: "/a%20b?q=x".parse().unwrap(),
            version: Version::HTTP_11,
            status: 200,
            bytes: 1234,
            duration: Duration::from_micros(1500),
            connection: Arc::new(ConnectionInfo::new(
                Address::Tcp("127.0.0.1:8080".parse().unwrap()),
                Address::Tcp("[::ffff:10.0.0.7]:50000".parse().unwrap()),
            )),
            user_agent: user_agent.map(HeaderValue::from_static),
            referer: None,
        }
    }

    fn line(record: &Record, format: LogFormat) -> String {
        let mut out = Vec::new();
        let time = SystemTime::UNIX_EPOCH + Duration::from_micros(1_764_472_500_123_456);
        format_line(&mut out, record, time, format, &mut Clock::default());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn lines_follow_apaches_formats() {
        let r = record(Some("curl/8 \"quoted\""));
        assert_eq!(
            line(&r, LogFormat::Combined),
            "10.0.0.7 - - [30/Nov/2025:03:15:00 +0000] \"GET /a%20b?q=x HTTP/1.1\" 200 1234 \"-\" \"curl/8 \\\"quoted\\\"\"\n"
        );
        assert_eq!(
            line(&r, LogFormat::Common),
            "10.0.0.7 - - [30/Nov/2025:03:15:00 +0000] \"GET /a%20b?q=x HTTP/1.1\" 200 1234\n"
        );
        let empty = Record {
            bytes: 0,
            ..record(None)
        };
        assert!(line(&empty, LogFormat::Common).ends_with(" 200 -\n"));
    }

    #[test]
    fn json_lines_are_one_object_each() {
        let mut r = record(None);
        r.user_agent = Some(HeaderValue::from_bytes(b"agent\t\xe9").unwrap());
        assert_eq!(
            line(&r, LogFormat::Json),
            "{\"time\":\"2025-11-30T03:15:00.123456Z\",\"method\":\"GET\",\"target\":\"/a%20b?q=x\",\"protocol\":\"HTTP/1.1\",\"status\":200,\"bytes\":1234,\"duration_us\":1500,\"peer\":\"10.0.0.7\",\"user_agent\":\"agent\\u0009\u{e9}\",\"referer\":null,\"server_name\":null}\n"
        );
    }

    #[test]
    fn client_text_cannot_forge_a_line() {
        let mut out = Vec::new();
        escape(&mut out, b"a\"b\\c\nd\x7f\xff");
        assert_eq!(out, b"a\\\"b\\\\c\\x0ad\\x7f\\xff");
        let mut out = Vec::new();
        json_string(&mut out, b"\xe9t\xe9\n");
        assert_eq!(String::from_utf8(out).unwrap(), "\"\u{e9}t\u{e9}\\u000a\"");
    }

    #[test]
    fn civil_dates_match_the_calendar() {
        let at = |secs: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        assert_eq!(clf_time(at(0)), "01/Jan/1970:00:00:00 +0000");
        assert_eq!(clf_time(at(951_782_400)), "29/Feb/2000:00:00:00 +0000");
        assert_eq!(clf_time(at(4_133_980_799)), "31/Dec/2100:23:59:59 +0000");
        for secs in [0u64, 951_782_400, 1_700_000_000, 4_133_980_799] {
            assert_eq!(
                rfc3339(at(secs))[..19].replace('T', " "),
                httpdate_like(secs),
                "{secs}"
            );
        }
    }

    /// The same instant through httpdate, rearranged as `YYYY-MM-DD HH:MM:SS`.
    fn httpdate_like(secs: u64) -> String {
        let text = httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
        // "Tue, 14 Nov 2023 22:13:20 GMT"
        let parts: Vec<&str> = text.split_whitespace().collect();
        let month = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ]
        .iter()
        .position(|m| *m == parts[2])
        .unwrap()
            + 1;
        format!("{}-{month:02}-{:0>2} {}", parts[3], parts[1], parts[4])
    }
}
