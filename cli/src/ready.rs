//! A worker's link to its supervisor: a unix stream socket the supervisor gave it (named by
//! [`READY_FD_VAR`]), carrying one message per line.
//!
//! | from | message | meaning |
//! |---|---|---|
//! | worker | `ready` | serving: listeners open, application loaded |
//! | worker | `due` | it has served its `--max-requests`: replace it |
//! | worker | `report N JSON` | its metrics snapshot, answering `report N` |
//! | supervisor | `params JSON` | the live parameters (first message, then on each change) |
//! | supervisor | `timers` | this worker is the one that runs the timers |
//! | supervisor | `report N` | send a metrics snapshot |

use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::{Condvar, LazyLock, Mutex, OnceLock};
use std::time::Duration;

/// The variable that tells a process it is a worker (it serves, whatever `--workers` says).
pub(crate) const WORKER_VAR: &str = "TORSION_WORKER";

/// Whether this process is a supervisor's worker.
pub(crate) fn is_worker() -> bool {
    std::env::var_os(WORKER_VAR).is_some()
}

/// The variable that gives a worker the descriptor of its link to the supervisor.
pub(crate) const READY_FD_VAR: &str = "TORSION_READY_FD";

/// The worker's end of the link, for its messages.
static LINK: OnceLock<Mutex<UnixStream>> = OnceLock::new();

/// Whether this worker runs the timers (the supervisor said `timers`).
static TIMERS: LazyLock<tokio::sync::watch::Sender<bool>> =
    LazyLock::new(|| tokio::sync::watch::Sender::new(false));

/// What answers `report N`, once the site is built.
static REPORTER: OnceLock<torsion_wsgi::metrics::Reporter> = OnceLock::new();

/// Set when the first `params` message has been applied.
static FIRST_PARAMS: (Mutex<bool>, Condvar) = (Mutex::new(false), Condvar::new());

/// In a worker: takes the link its supervisor gave it and reads the supervisor's messages
/// on a thread of its own. Does nothing in any other process, or when the descriptor is
/// not a socket (a stale environment).
pub(crate) fn connect() {
    let Some(raw) = std::env::var(READY_FD_VAR)
        .ok()
        .and_then(|text| text.parse::<i32>().ok())
        .filter(|&raw| raw >= 3)
    else {
        return;
    };
    #[allow(unsafe_code)]
    // SAFETY: the borrow lasts only for this check, within this function.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(raw) };
    let is_socket = rustix::fs::fstat(borrowed).is_ok_and(|stat| {
        rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::Socket
    });
    if !is_socket {
        tracing::warn!("{READY_FD_VAR}={raw} is not a socket: no link to a supervisor");
        return;
    }
    #[allow(unsafe_code)]
    // SAFETY: the descriptor is open and a socket (checked above), given to this process by
    // its supervisor for this link; nothing else in the process owns it.
    let socket = UnixStream::from(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) });
    let Ok(reading) = socket.try_clone() else {
        return;
    };
    if LINK.set(Mutex::new(socket)).is_err() {
        return;
    }
    let started = std::thread::Builder::new()
        .name("torsion-supervisor-link".into())
        .spawn(move || listen(reading));
    if let Err(err) = started {
        tracing::warn!("cannot read the supervisor's messages: {err}");
    }
}

/// Reads the supervisor's messages until the link closes.
fn listen(reading: UnixStream) {
    for line in BufReader::new(reading).lines() {
        let Ok(line) = line else { break };
        let (word, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        match word {
            "params" => {
                match torsion_wsgi::params::parse_object(rest.as_bytes()) {
                    Ok(values) => torsion_wsgi::params::params().replace(values),
                    Err((_, _, message)) => {
                        tracing::warn!("the supervisor's parameters do not parse: {message}");
                    }
                }
                let (applied, arrived) = &FIRST_PARAMS;
                if let Ok(mut applied) = applied.lock() {
                    *applied = true;
                    arrived.notify_all();
                }
            }
            "timers" => {
                tracing::info!("this worker runs the timers");
                TIMERS.send_replace(true);
            }
            "report" => {
                let snapshot = REPORTER
                    .get()
                    .map(torsion_wsgi::metrics::Reporter::snapshot)
                    .unwrap_or_default();
                let json = serde_json::to_string(&snapshot).unwrap_or_else(|_| "{}".into());
                send(&format!("report {rest} {json}"));
            }
            other => tracing::debug!("unknown message from the supervisor: {other}"),
        }
    }
}

/// Writes one line to the supervisor.
fn send(line: &str) {
    if let Some(link) = LINK.get()
        && let Ok(mut link) = link.lock()
    {
        let _ = link.write_all(format!("{line}\n").as_bytes());
    }
}

/// In a worker: waits up to `timeout` for the supervisor's first `params`, so that the
/// first request sees the parameters. Returns at once elsewhere.
pub(crate) fn wait_for_params(timeout: Duration) {
    if LINK.get().is_none() {
        return;
    }
    let (applied, arrived) = &FIRST_PARAMS;
    if let Ok(applied) = applied.lock() {
        let _ = arrived.wait_timeout_while(applied, timeout, |applied| !*applied);
    }
}

/// In a worker: the gate its timers wait behind until the supervisor says `timers`.
pub(crate) fn timer_gate() -> tokio::sync::watch::Receiver<bool> {
    TIMERS.subscribe()
}

/// In a worker: what answers the supervisor's `report N` from now on.
pub(crate) fn set_reporter(reporter: torsion_wsgi::metrics::Reporter) {
    let _ = REPORTER.set(reporter);
}

/// In a worker: says that it is serving, once its listeners are open and its application
/// loaded. Does nothing in any other process.
pub(crate) fn tell_ready() {
    send("ready");
}

/// In a worker: asks the supervisor to replace it (it has served its `--max-requests`);
/// it goes on serving until the supervisor, its replacement serving, tells it to stop.
pub(crate) fn tell_due() {
    send("due");
}
