//! The tokio runtime Torsion serves on, and the scheduling that makes the hand-off between
//! the event loop and the Python threads cheap: an idle counter the pool reads, the
//! wake-up preemption policy, and the heartbeat timer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Event-loop threads currently running (not parked), counted by the hooks
/// [`runtime_builder`] installs; `usize::MAX` means "unknown" (hooks not installed).
static BUSY_WORKERS: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Whether every event-loop thread is parked (waiting for I/O): the moment a Python
/// thread takes the most queued requests at once.
pub(crate) fn event_loop_idle() -> bool {
    BUSY_WORKERS.load(Ordering::Relaxed) == 0
}

/// A tokio runtime builder for serving: multi-threaded, with the I/O and time drivers, and
/// hooks that let the Python threads see when the event loop is idle, so that they take
/// requests in batches instead of one by one (fewer context switches on a shared core).
///
/// On Linux, each of the runtime's threads also gives up wake-up preemption (the `SCHED_BATCH`
/// policy of sched(7), at the thread's current nice value): when a Python thread
/// completes a response, waking the connection's task no longer interrupts the Python
/// thread in the middle of its batch, so a core shared by the two runs each batch through
/// and then writes every response at once. On a core the two share, this takes about a
/// quarter off the cost of a small request; the event loop still runs at once on an idle
/// core, and within the scheduler's time slice on a busy one. Where the policy cannot be
/// set (a seccomp filter, another OS), the thread keeps its policy and serving goes on.
/// Threads started from a runtime thread inherit the policy; the Python threads of a
/// [`crate::Bridge`] set the default one for themselves, wherever the bridge is made.
///
/// Built with `--cfg tokio_unstable` (this workspace's `.cargo/config.toml` sets it; a build
/// outside the workspace, such as `cargo install`, needs it in `RUSTFLAGS`), the
/// scheduler's LIFO slot is disabled, so a woken task joins the back of the run queue
/// instead of running next. That is what lets HTTP/2 write many responses at once: each
/// stream that completes wakes its connection's task, and with the slot that task ran
/// after every single stream, one `writev` per response; without it, the connection's
/// task runs once after all the streams that were ready. On HTTP/2 hello-world traffic
/// this nearly doubles the request rate (`bench/`).
pub fn runtime_builder() -> tokio::runtime::Builder {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    let _ = BUSY_WORKERS.compare_exchange(usize::MAX, 0, Ordering::Relaxed, Ordering::Relaxed);
    #[cfg(tokio_unstable)]
    builder.disable_lifo_slot();
    builder
        .enable_all()
        .on_thread_start(|| {
            set_wakeup_preemption(false);
            BUSY_WORKERS.fetch_add(1, Ordering::Relaxed);
        })
        .on_thread_stop(|| {
            BUSY_WORKERS.fetch_sub(1, Ordering::Relaxed);
        })
        .on_thread_park(|| {
            BUSY_WORKERS.fetch_sub(1, Ordering::Relaxed);
        })
        .on_thread_unpark(|| {
            BUSY_WORKERS.fetch_add(1, Ordering::Relaxed);
        });
    builder
}

/// Sets the calling thread's policy (Linux, sched(7)): `SCHED_OTHER`, the default, with
/// `preempt`, else `SCHED_BATCH`, under which a woken thread does not preempt the running
/// one. The nice value is unchanged. A refusal is logged at debug level and ignored.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub(crate) fn set_wakeup_preemption(preempt: bool) {
    let policy = if preempt {
        libc::SCHED_OTHER
    } else {
        libc::SCHED_BATCH
    };
    let param = libc::sched_param { sched_priority: 0 };
    // The system call rather than libc's wrapper: musl's wrapper always fails (ENOSYS).
    // SAFETY: `param` is a valid sched_param that outlives the call; pid 0 names the
    // calling thread, and the call changes nothing else.
    let status = unsafe {
        libc::syscall(
            libc::SYS_sched_setscheduler,
            0,
            policy,
            &param as *const libc::sched_param,
        )
    };
    if status != 0 {
        tracing::debug!(
            preempt,
            "cannot set a thread's scheduling policy: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn set_wakeup_preemption(_preempt: bool) {}

/// A timer that fires every second for as long as the value lives, so that tokio's timer
/// wheel is never empty while a server runs; [`serve`](crate::serve) keeps one.
///
/// Why: tokio wakes its I/O driver (a write to an eventfd) whenever a timer is registered
/// that is due before the driver's next planned wake-up, and a driver that parked with no
/// timer at all counts every new timer as earlier. That is the usual state in Torsion:
/// while a batch of requests is with the Python threads, no connection is reading a
/// request head, so no header-read timer exists; then each response written starts the
/// connection's next header-read timer (hyper's `header_read_timeout`, 30 s), and each
/// cost a wake-up system call, about one for every three requests. With this timer in the
/// wheel, those timers fall after the driver's next wake-up and register silently. The
/// price is one wake-up a second. Any hyper server on tokio whose requests complete after
/// the driver parks can use it the same way.
#[derive(Debug)]
pub struct Heartbeat(tokio::task::JoinHandle<()>);

impl Heartbeat {
    /// Starts the timer on the current tokio runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime with the time driver enabled, as `tokio::spawn` and
    /// `tokio::time::sleep` do.
    pub fn start() -> Heartbeat {
        Heartbeat::start_with(|| {})
    }

    /// [`Heartbeat::start`], running `tick` (which must not block) on every beat.
    pub(crate) fn start_with(mut tick: impl FnMut() + Send + 'static) -> Heartbeat {
        Heartbeat(tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                tick();
            }
        }))
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}
