//! systemd's service notifications (`sd_notify(3)`, through the sd-notify crate) for
//! `Type=notify` units: `READY=1` once every listener is open and the application (every
//! worker's) is loaded, `STOPPING=1` when shutdown begins, and `WATCHDOG=1` at half of
//! `WATCHDOG_USEC` when the unit sets `WatchdogSec=`. Without `NOTIFY_SOCKET`, nothing is
//! sent. Only the main process notifies: a supervisor removes these variables from its
//! workers' environment.

use std::time::Duration;

use sd_notify::NotifyState;

/// The variables that make a process notify; a supervisor's workers do not get them.
pub(crate) const VARIABLES: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// `READY=1`, with `STATUS=` saying what serves.
pub(crate) fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// `RELOADING=1` with `MONOTONIC_USEC=` (which systemd 253 and later require with it), at
/// the start of a rolling restart; [`ready`] ends it.
pub(crate) fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(err) => tracing::warn!("cannot read the monotonic clock for RELOADING=1: {err}"),
    }
}

/// `STOPPING=1`.
pub(crate) fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// Sends `WATCHDOG=1` at half the interval the service manager asks for, from a thread of
/// its own, for as long as the process lives; does nothing when no watchdog is asked for
/// (or it is meant for another process, `WATCHDOG_PID`).
pub(crate) fn start_watchdog() {
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    let every = (interval / 2).max(Duration::from_millis(10));
    let started = std::thread::Builder::new()
        .name("torsion-watchdog-notify".into())
        .spawn(move || {
            loop {
                send(&[NotifyState::Watchdog]);
                std::thread::sleep(every);
            }
        });
    if let Err(err) = started {
        tracing::warn!("cannot start the systemd watchdog thread: {err}");
    }
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(err) = sd_notify::notify(states) {
        tracing::warn!("cannot notify the service manager (NOTIFY_SOCKET): {err}");
    }
}
