//! A worker's words to its supervisor, one byte each on a pipe the supervisor gave it
//! (named by [`READY_FD_VAR`]): [`READY`] once serving, [`DUE`] when it should be
//! replaced.

use std::os::fd::OwnedFd;

/// The variable that tells a process it is a worker (it serves, whatever `--workers` says).
pub(crate) const WORKER_VAR: &str = "TORSION_WORKER";

/// Whether this process is a supervisor's worker.
pub(crate) fn is_worker() -> bool {
    std::env::var_os(WORKER_VAR).is_some()
}

/// The variable that gives a worker the descriptor of its readiness pipe.
pub(crate) const READY_FD_VAR: &str = "TORSION_READY_FD";

/// In a worker: says that it is serving, once its listeners are open and its application
/// loaded, by writing to the pipe its supervisor gave it. Does nothing in any other process.
pub(crate) fn tell_ready() {
    let Some(raw) = std::env::var(READY_FD_VAR)
        .ok()
        .and_then(|text| text.parse::<i32>().ok())
        .filter(|&raw| raw >= 3)
    else {
        return;
    };
    // Only a pipe is ours to write to: a descriptor number from a stale environment may be
    // anything by now.
    #[allow(unsafe_code)]
    // SAFETY: the borrow lasts only for these checks and the write, within this function.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(raw) };
    let is_pipe = rustix::fs::fstat(borrowed).is_ok_and(|stat| {
        rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::Fifo
    });
    if !is_pipe {
        tracing::warn!("{READY_FD_VAR}={raw} is not a pipe: not telling the supervisor");
        return;
    }
    #[allow(unsafe_code)]
    // SAFETY: the descriptor is open and a pipe (checked above), given to this process by
    // its supervisor for its messages; nothing else in the process owns it.
    let pipe = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    let _ = rustix::io::write(&pipe, READY);
    if let Ok(mut kept) = PIPE.lock() {
        *kept = Some(pipe);
    }
}

/// In a worker: asks the supervisor to replace it (it has served its `--max-requests`);
/// it goes on serving until the supervisor, its replacement serving, tells it to stop.
pub(crate) fn tell_due() {
    if let Ok(kept) = PIPE.lock()
        && let Some(pipe) = kept.as_ref()
    {
        let _ = rustix::io::write(pipe, DUE);
    }
}

/// The byte that says "serving".
pub(crate) const READY: &[u8] = b"1";

/// The byte that says "replace me".
pub(crate) const DUE: &[u8] = b"R";

/// The pipe, kept open after the first message for the later ones.
static PIPE: std::sync::Mutex<Option<OwnedFd>> = std::sync::Mutex::new(None);
