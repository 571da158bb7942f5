//! A worker's word to its supervisor that it is serving: one byte on a pipe the supervisor
//! gave it, named by [`READY_FD_VAR`].

use std::os::fd::OwnedFd;

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
    // its supervisor for this one write; nothing else in the process owns it.
    let pipe = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    let _ = rustix::io::write(&pipe, b"1");
}
