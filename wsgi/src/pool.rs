//! The Python thread pool: a queue of requests with a lane per connection, served in turn
//! so that one connection's many HTTP/2 streams cannot starve the others; threads that take
//! them in batches with one GIL acquisition per batch; and a watchdog that wakes more
//! threads only when the running ones stop making progress (the application is blocked in
//! I/O).
//!
//! Why not one thread per request from a plain channel: every hand-off would cost two
//! context switches and a GIL acquisition, and every idle thread a send woke would then
//! wait for the GIL held by the others. Under load, a thread that holds the GIL keeps
//! taking queued requests until the queue is empty; a second thread is woken only when no
//! request has started for [`STALL`] while no running thread has used CPU time or is
//! runnable: that is what a request waiting on I/O (or sleeping) looks like, so blocking
//! applications still get every thread. A thread that is merely waiting for a CPU (the
//! event loop has the core) is runnable, and does not count as stalled; without that
//! check, a server pinned to one core woke threads that could only fight over the GIL.
//! Idle threads wait on a stack, and the last to go idle is the next woken.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// At most this many times a woken thread yields the CPU while the event loop is busy.
const MAX_YIELDS: usize = 16;

/// How long the queue may wait with no request starting before another thread is woken.
const STALL: Duration = Duration::from_millis(1);

/// What a pool runs: one job at a time, on a thread attached to the interpreter.
pub(crate) trait Run<J>: Send + Sync + 'static {
    /// Runs one job while attached (the callee may release the GIL inside).
    fn run(&self, py: pyo3::Python<'_>, job: J);
}

/// The queue of waiting jobs, one lane per client (a connection), served in turn: a lane
/// gives up to [`QUANTUM`] jobs, then the next lane's turn comes, so one connection's many
/// queued requests (HTTP/2 streams) never all run before another connection's first.
/// Within a lane, jobs keep their order.
///
/// Why a quantum rather than one job per turn: taking a connection's ready streams
/// together lets its task write all their responses at once; one job per turn spread each
/// batch over every connection, one `writev` per response, and cost HTTP/2 a quarter of
/// its rate (h2load, 64 connections of 10 streams).
///
/// Cheap on the request path: lanes are keyed by a connection's address with an identity
/// hash, and a lane that empties keeps its buffer (no allocation per request); lanes left
/// empty are swept only when they outnumber the busy ones.
struct Lanes<J> {
    lanes: std::collections::HashMap<usize, VecDeque<J>, BuildAddressHasher>,
    /// Lanes with jobs, in the order they are served; the first is being served.
    turn: VecDeque<usize>,
    /// Jobs the first lane has given in its current turn.
    given: usize,
    quantum: usize,
    len: usize,
}

/// How many jobs a lane gives in one turn: more than the streams an HTTP/2 client
/// usually keeps in flight (h2load's 10, browsers' 6 to 100), few enough that another
/// connection's request waits for at most this many.
const QUANTUM: usize = 16;

/// Hashes a lane key, an address, by itself: keys are distinct addresses already, and
/// SipHash cost as much as the rest of a hand-off.
#[derive(Default, Clone, Copy)]
struct BuildAddressHasher;

#[derive(Default)]
struct AddressHasher(u64);

impl std::hash::BuildHasher for BuildAddressHasher {
    type Hasher = AddressHasher;

    fn build_hasher(&self) -> AddressHasher {
        AddressHasher(0)
    }
}

impl std::hash::Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 << 8) | u64::from(*byte);
        }
    }

    fn write_usize(&mut self, value: usize) {
        // Allocations are aligned: spread the low bits that vary.
        self.0 = (value as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

impl<J> Default for Lanes<J> {
    fn default() -> Lanes<J> {
        Lanes::with_quantum(QUANTUM)
    }
}

impl<J> Lanes<J> {
    fn with_quantum(quantum: usize) -> Lanes<J> {
        Lanes {
            lanes: std::collections::HashMap::default(),
            turn: VecDeque::new(),
            given: 0,
            quantum: quantum.max(1),
            len: 0,
        }
    }
}

impl<J> Lanes<J> {
    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn push_back(&mut self, lane: usize, job: J) {
        if self.lanes.len() > 2 * self.turn.len() + 256 {
            // Mostly lanes of connections long gone: let them go.
            self.lanes.retain(|_, jobs| !jobs.is_empty());
        }
        let jobs = self.lanes.entry(lane).or_default();
        if jobs.is_empty() {
            self.turn.push_back(lane);
        }
        jobs.push_back(job);
        self.len += 1;
    }

    fn pop_front(&mut self) -> Option<J> {
        let lane = *self.turn.front()?;
        let jobs = self.lanes.get_mut(&lane)?;
        let job = jobs.pop_front();
        self.given += 1;
        if jobs.is_empty() || self.given >= self.quantum {
            self.turn.pop_front();
            if !jobs.is_empty() {
                self.turn.push_back(lane);
            }
            self.given = 0;
        }
        self.len -= usize::from(job.is_some());
        job
    }
}

struct Shared<J> {
    queue: Mutex<Queue<J>>,
    /// One for each thread: signalled when a job arrives for it, or at shutdown.
    work: Vec<Condvar>,
    /// Signalled when the queue becomes non-empty, for the watchdog.
    pending: Condvar,
    /// Jobs started so far: the watchdog's measure of progress.
    started: AtomicU64,
    limit: usize,
    closed: AtomicBool,
    /// Each thread as the watchdog sees it.
    working: Vec<Slot>,
    /// The Python threads still running.
    threads: Arc<Threads>,
}

/// A Python thread as the watchdog sees it.
#[derive(Default)]
struct Slot {
    /// The thread's kernel thread ID while it is attached and taking jobs, else 0.
    tid: AtomicI32,
    /// The thread's CPU-time clock (`pthread_getcpuclockid(3)`), set once as it starts; 0
    /// (`CLOCK_REALTIME`, never a thread's clock) when it has none.
    clock: AtomicI32,
}

/// How many of a pool's Python threads have not finished (let go of the interpreter for
/// good), and a signal as each one does.
#[derive(Default)]
struct Threads {
    /// Threads attached and taking jobs.
    running: AtomicUsize,
    alive: Mutex<usize>,
    gone: Condvar,
}

/// Waits for a pool's Python threads to finish, after the pool is dropped: what a program
/// embedded in Python (the wheel's `python -m torsion`) does before it returns to the
/// interpreter, which may then finalize with no thread of ours still in it.
#[derive(Clone)]
pub(crate) struct PoolThreads(Arc<Threads>);

impl PoolThreads {
    /// Waits until every thread that is not in an application's call has finished, for at
    /// most `limit`: the number still alive then (0 when all have finished). A thread still
    /// in a call is not waited for: the server's shutdown timeout has already given up on
    /// it. Must not be called while holding the GIL, which a finishing thread may need.
    pub(crate) fn wait(&self, limit: Duration) -> usize {
        let threads = &*self.0;
        let alive = threads.alive.lock().unwrap_or_else(|e| e.into_inner());
        let (alive, _) = threads
            .gone
            .wait_timeout_while(alive, limit, |alive| {
                *alive > threads.running.load(Ordering::Acquire)
            })
            .unwrap_or_else(|e| e.into_inner());
        *alive
    }
}

struct Queue<J> {
    jobs: Lanes<J>,
    /// The threads waiting for a job, the one that went idle last on top: it is the one
    /// woken next, so that under steady load one thread, its stack and its caches warm,
    /// takes batch after batch (a plain condition variable woke the longest idle of 16
    /// threads each time, in turn).
    idle: Vec<usize>,
    /// A thread has been woken for the queue and has not taken a job yet: waking another
    /// would only add a thread competing for the same jobs.
    waking: bool,
    /// The watchdog waits for jobs with no timeout: a submit must wake it.
    watchdog_parked: bool,
}

/// Why a job was not queued.
pub(crate) enum Refused<J> {
    /// The queue holds its limit already.
    Full(J),
    /// The pool is shutting down.
    Closed(J),
}

/// How busy a pool is, for metrics.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PoolStats {
    /// Python threads in all.
    pub(crate) threads: usize,
    /// Threads running a batch of jobs (including one blocked in Python).
    pub(crate) busy: usize,
    /// Jobs waiting for a thread.
    pub(crate) queued: usize,
}

/// Reads a pool's [`PoolStats`] whenever asked.
#[derive(Clone)]
pub(crate) struct PoolWatch(Arc<dyn Fn() -> PoolStats + Send + Sync>);

impl PoolWatch {
    /// The pool's state now.
    pub(crate) fn stats(&self) -> PoolStats {
        (self.0)()
    }
}

/// A pool of `threads` Python threads running jobs with `runner`.
pub(crate) struct Pool<J> {
    shared: Arc<Shared<J>>,
}

impl<J: Send + 'static> Pool<J> {
    /// Starts the threads and the watchdog.
    ///
    /// # Errors
    /// The operating system's error when a thread cannot be started.
    pub(crate) fn start(
        threads: usize,
        limit: usize,
        runner: Arc<impl Run<J>>,
    ) -> std::io::Result<Pool<J>> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                jobs: Lanes::default(),
                idle: Vec::with_capacity(threads.max(1)),
                waking: false,
                watchdog_parked: false,
            }),
            work: (0..threads.max(1)).map(|_| Condvar::new()).collect(),
            pending: Condvar::new(),
            started: AtomicU64::new(0),
            limit: limit.max(1),
            closed: AtomicBool::new(false),
            working: (0..threads.max(1)).map(|_| Slot::default()).collect(),
            threads: Arc::default(),
        });
        for index in 0..threads.max(1) {
            let thread = shared.clone();
            let runner = runner.clone();
            *shared
                .threads
                .alive
                .lock()
                .unwrap_or_else(|e| e.into_inner()) += 1;
            let spawned = std::thread::Builder::new()
                .name(format!("torsion-python-{index}"))
                .spawn(move || {
                    let _finished = Finished(&thread.threads);
                    worker(&thread, &*runner, index);
                });
            if let Err(err) = spawned {
                *shared
                    .threads
                    .alive
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) -= 1;
                return Err(err);
            }
        }
        let watched = shared.clone();
        std::thread::Builder::new()
            .name("torsion-watchdog".into())
            .spawn(move || watchdog(&watched))?;
        Ok(Pool { shared })
    }

    /// A reader of the pool's state.
    pub(crate) fn watch(&self) -> PoolWatch {
        let shared = self.shared.clone();
        PoolWatch(Arc::new(move || PoolStats {
            threads: shared.working.len(),
            busy: shared.threads.running.load(Ordering::Relaxed),
            queued: shared.queue.lock().map_or(0, |queue| queue.jobs.len()),
        }))
    }

    /// Queues a job from the client `lane` (a connection); wakes a thread if none is
    /// running. Lanes are served in turn (see [`Lanes`]).
    pub(crate) fn submit(&self, lane: usize, job: J) -> Result<(), Refused<J>> {
        let shared = &*self.shared;
        if shared.closed.load(Ordering::Relaxed) {
            return Err(Refused::Closed(job));
        }
        let Ok(mut queue) = shared.queue.lock() else {
            return Err(Refused::Closed(job));
        };
        if queue.jobs.len() >= shared.limit {
            return Err(Refused::Full(job));
        }
        queue.jobs.push_back(lane, job);
        let wake = if shared.threads.running.load(Ordering::Acquire) == 0 && !queue.waking {
            queue.idle.pop()
        } else {
            None
        };
        queue.waking |= wake.is_some();
        let arm = std::mem::take(&mut queue.watchdog_parked);
        drop(queue);
        if let Some(thread) = wake {
            shared.work[thread].notify_one();
        }
        if arm {
            shared.pending.notify_one();
        }
        Ok(())
    }
}

/// Counts its Python thread as finished when dropped: after the thread has let go of the
/// interpreter, and also if it panicked.
struct Finished<'a>(&'a Threads);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        let mut alive = self.0.alive.lock().unwrap_or_else(|e| e.into_inner());
        *alive = alive.saturating_sub(1);
        self.0.gone.notify_all();
    }
}

impl<J> Pool<J> {
    /// A handle to wait for the threads to finish once the pool is dropped.
    pub(crate) fn threads(&self) -> PoolThreads {
        PoolThreads(self.shared.threads.clone())
    }
}

impl<J> Drop for Pool<J> {
    /// Closes the pool: each thread finishes once the queue is empty (see
    /// [`PoolThreads::wait`] to wait for that).
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Relaxed);
        // Take the lock so no thread is between its check and its wait.
        drop(self.shared.queue.lock());
        for work in &self.shared.work {
            work.notify_all();
        }
        self.shared.pending.notify_all();
    }
}

fn next<J>(shared: &Shared<J>) -> Option<J> {
    let job = shared.queue.lock().ok()?.jobs.pop_front();
    if job.is_some() {
        shared.started.fetch_add(1, Ordering::Relaxed);
    }
    job
}

/// Waits, without the GIL, for a job for the thread `index` (kernel thread ID `tid`);
/// `None` at shutdown. The thread counts as running, and the watchdog sees it working, from
/// the moment it takes the job, under the queue's lock: a submit that found it woken but
/// not yet running, or a watchdog that found a job started and no thread working, would
/// wake a second thread for the next job, and the two would then share the GIL for as long
/// as requests kept coming.
fn wait<J>(shared: &Shared<J>, index: usize, tid: i32) -> Option<J> {
    let mut queue = shared.queue.lock().ok()?;
    loop {
        if let Some(job) = queue.jobs.pop_front() {
            queue.waking = false;
            shared.started.fetch_add(1, Ordering::Relaxed);
            shared.threads.running.fetch_add(1, Ordering::AcqRel);
            shared.working[index].tid.store(tid, Ordering::Release);
            return Some(job);
        }
        if shared.closed.load(Ordering::Relaxed) {
            return None;
        }
        queue.idle.push(index);
        queue = shared.work[index].wait(queue).ok()?;
        // Whoever woke this thread took it off the stack; a spurious wake-up did not.
        if let Some(at) = queue.idle.iter().rposition(|idle| *idle == index) {
            queue.idle.remove(at);
        }
    }
}

fn worker<J: Send>(shared: &Shared<J>, runner: &impl Run<J>, index: usize) {
    // A thread inherits its starter's policy: a pool started from an event-loop thread
    // would otherwise run Python under SCHED_BATCH too (see `runtime_builder`).
    crate::runtime::set_wakeup_preemption(true);
    let tid = rustix::thread::gettid().as_raw_nonzero().get();
    shared.working[index]
        .clock
        .store(own_cpu_clock(), Ordering::Release);
    // The thread stays attached for its whole life, so its Python thread state is made
    // once (attaching afresh makes and frees one each time); it releases the GIL whenever
    // it waits.
    pyo3::Python::attach(|py| {
        loop {
            let first = py.detach(|| {
                let first = wait(shared, index, tid)?;
                // The event loop that queued this job is usually still handling other
                // ready connections (on a shared core, this thread preempted it): let it
                // finish, so that this batch takes all the requests it queues.
                let mut spins = 0;
                loop {
                    rustix::thread::sched_yield();
                    spins += 1;
                    if spins >= MAX_YIELDS || crate::runtime::event_loop_idle() {
                        break;
                    }
                }
                Some(first)
            });
            let Some(first) = first else { return };
            // As many jobs as are waiting, under one acquisition of the GIL.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                runner.run(py, first);
                while let Some(job) = next(shared) {
                    runner.run(py, job);
                }
            }));
            shared.working[index].tid.store(0, Ordering::Release);
            shared.threads.running.fetch_sub(1, Ordering::AcqRel);
            if outcome.is_err() {
                tracing::error!("a Python thread caught a panic while serving a request");
            }
        }
    });
}

/// While jobs wait, checks every [`STALL`] that one has started since the last check, and
/// wakes another thread when none has and no working thread has run since: what a request
/// blocked in I/O or asleep looks like.
///
/// The watchdog gives up wake-up preemption (see [`crate::runtime::runtime_builder`]): it
/// wakes a thousand times a second while requests wait, and a CPU-bound application's
/// thread, interrupted at each of those wake-ups, lost about 4% of its time (Django under
/// `bench/`, 64 connections). Now the watchdog runs when the core is idle (the application
/// blocked, the case it is for) or when the running thread's time slice ends. Each check
/// reads the working threads' CPU clocks, one system call each; `/proc` is read only when
/// none has run.
fn watchdog<J>(shared: &Shared<J>) {
    crate::runtime::set_wakeup_preemption(false);
    let mut seen = shared.started.load(Ordering::Relaxed);
    // Each thread's CPU time at the last check, in nanoseconds.
    let mut ran = vec![0; shared.working.len()];
    let Ok(mut queue) = shared.queue.lock() else {
        return;
    };
    loop {
        if shared.closed.load(Ordering::Relaxed) {
            return;
        }
        if queue.jobs.is_empty() && shared.threads.running.load(Ordering::Acquire) == 0 {
            // Nothing to watch: sleep until a submit arms the watchdog again.
            queue.watchdog_parked = true;
            queue = match shared.pending.wait(queue) {
                Ok(queue) => queue,
                Err(_) => return,
            };
            seen = shared.started.load(Ordering::Relaxed);
            continue;
        }
        queue = match shared.pending.wait_timeout(queue, STALL) {
            Ok((queue, _)) => queue,
            Err(_) => return,
        };
        let now = shared.started.load(Ordering::Relaxed);
        let waiting = !queue.jobs.is_empty() && !queue.idle.is_empty();
        // The checks below make system calls: not while submits wait for the lock.
        drop(queue);
        let progressed = any_ran(shared, &mut ran);
        let stalled = now == seen && waiting && !progressed && !any_runnable(shared);
        seen = now;
        queue = match shared.queue.lock() {
            Ok(queue) => queue,
            Err(_) => return,
        };
        if stalled && let Some(thread) = queue.idle.pop() {
            shared.work[thread].notify_one();
        }
    }
}

/// Whether a working thread has used CPU time since the last call, which recorded in `ran`
/// (nanoseconds, one entry a thread) what each has used so far. A thread whose clock cannot
/// be read counts as not having run.
fn any_ran<J>(shared: &Shared<J>, ran: &mut [u64]) -> bool {
    let mut any = false;
    for (slot, before) in shared.working.iter().zip(ran.iter_mut()) {
        if slot.tid.load(Ordering::Acquire) == 0 {
            continue;
        }
        if let Some(now) = cpu_time(slot.clock.load(Ordering::Acquire)) {
            any |= now > *before;
            *before = now;
        }
    }
    any
}

/// The calling thread's CPU-time clock (`pthread_getcpuclockid(3)`), or 0 when it has none.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn own_cpu_clock() -> libc::clockid_t {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: `pthread_self` names the calling thread, alive for the call; `clock` is a
    // valid place for the result.
    let status = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock) };
    if status == 0 { clock } else { 0 }
}

#[cfg(not(target_os = "linux"))]
fn own_cpu_clock() -> i32 {
    0
}

/// The CPU time a thread has used, in nanoseconds, read from its clock (`clock_gettime(2)`);
/// `None` for clock 0 or a clock that cannot be read (its thread has ended).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn cpu_time(clock: libc::clockid_t) -> Option<u64> {
    if clock == 0 {
        return None;
    }
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `time` is a valid place for the result; an unknown clock is an error
    // (EINVAL), not undefined behaviour.
    let status = unsafe { libc::clock_gettime(clock, &mut time) };
    (status == 0).then(|| {
        u64::try_from(time.tv_sec).unwrap_or(0) * 1_000_000_000
            + u64::try_from(time.tv_nsec).unwrap_or(0)
    })
}

#[cfg(not(target_os = "linux"))]
fn cpu_time(_clock: i32) -> Option<u64> {
    None
}

/// Whether a working thread is running or waiting for a CPU (state `R` in
/// `/proc/self/task/TID/stat`, proc(5)), as opposed to blocked.
fn any_runnable<J>(shared: &Shared<J>) -> bool {
    shared.working.iter().any(|slot| {
        let tid = slot.tid.load(Ordering::Acquire);
        tid != 0
            && std::fs::read(format!("/proc/self/task/{tid}/stat")).is_ok_and(|stat| {
                // "TID (COMM) STATE ...": the state follows the last ')'.
                let after = stat
                    .iter()
                    .rposition(|b| *b == b')')
                    .map_or(&stat[..0], |i| &stat[i + 1..]);
                after.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'R')
            })
    })
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    #[test]
    fn lanes_are_served_in_turn_and_keep_their_order() {
        let mut lanes = Lanes::with_quantum(1);
        // One connection queues five requests, then two others one each.
        for job in 0..5 {
            lanes.push_back(1, job);
        }
        lanes.push_back(2, 100);
        lanes.push_back(3, 200);
        lanes.push_back(1, 5);
        assert_eq!(lanes.len(), 8);
        let order: Vec<u32> = std::iter::from_fn(|| lanes.pop_front()).collect();
        assert_eq!(order, [0, 100, 200, 1, 2, 3, 4, 5]);
        assert!(lanes.is_empty());
        assert!(lanes.turn.is_empty());
        assert!(lanes.lanes.values().all(VecDeque::is_empty));
    }

    #[test]
    fn a_lane_gives_up_to_its_quantum_in_one_turn() {
        let mut lanes = Lanes::with_quantum(3);
        for job in 0..7 {
            lanes.push_back(1, job);
        }
        lanes.push_back(2, 100);
        let order: Vec<u32> = std::iter::from_fn(|| lanes.pop_front()).collect();
        assert_eq!(order, [0, 1, 2, 100, 3, 4, 5, 6]);
    }

    /// A runner that reports each job, and blocks (without the GIL) on the jobs that ask
    /// to, until released.
    struct Recorder {
        done: Mutex<mpsc::Sender<(u32, String)>>,
        gate: Mutex<mpsc::Receiver<()>>,
    }

    impl Run<u32> for Recorder {
        fn run(&self, py: pyo3::Python<'_>, job: u32) {
            if job == 50 {
                // A "CPU-bound application": busy for 50 ms, holding the GIL.
                let end = std::time::Instant::now() + Duration::from_millis(50);
                while std::time::Instant::now() < end {
                    std::hint::spin_loop();
                }
            }
            if job >= 100 {
                // A "blocked application": waits for the test to release it.
                py.detach(|| {
                    let _ = self.gate.lock().unwrap().recv();
                });
            }
            let thread = std::thread::current().name().unwrap_or("").to_owned();
            drop(self.done.lock().unwrap().send((job, thread)));
        }
    }

    fn pool(
        threads: usize,
        limit: usize,
    ) -> (Pool<u32>, mpsc::Receiver<(u32, String)>, mpsc::Sender<()>) {
        pyo3::Python::initialize();
        let (done, reports) = mpsc::channel();
        let (release, gate) = mpsc::channel();
        let runner = Arc::new(Recorder {
            done: Mutex::new(done),
            gate: Mutex::new(gate),
        });
        (
            Pool::start(threads, limit, runner).unwrap(),
            reports,
            release,
        )
    }

    #[test]
    fn every_submitted_job_runs_once_on_a_pool_thread() {
        let (pool, reports, _release) = pool(3, 64);
        for job in 0..50 {
            assert!(pool.submit(0, job).is_ok());
        }
        let mut seen: Vec<u32> = (0..50)
            .map(|_| {
                let (job, thread) = reports.recv_timeout(Duration::from_secs(30)).unwrap();
                assert!(thread.starts_with("torsion-python-"), "{thread}");
                job
            })
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn a_blocked_job_does_not_hold_up_the_others() {
        // One thread blocks in the "application"; the watchdog must wake a second one.
        let (pool, reports, release) = pool(2, 64);
        assert!(pool.submit(0, 100).is_ok());
        assert!(pool.submit(0, 1).is_ok());
        assert_eq!(reports.recv_timeout(Duration::from_secs(30)).unwrap().0, 1);
        release.send(()).unwrap();
        assert_eq!(
            reports.recv_timeout(Duration::from_secs(30)).unwrap().0,
            100
        );
    }

    /// How many of this process's Python threads are asleep in the kernel (state `S` in
    /// `/proc/self/task/TID/stat`): an idle thread of the pool is waiting on the condition
    /// variable then, not on its way to it.
    fn python_threads_asleep() -> usize {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|task| {
                let path = task.ok()?.path();
                let comm = std::fs::read_to_string(path.join("comm")).ok()?;
                let stat = std::fs::read_to_string(path.join("stat")).ok()?;
                let state = stat[stat.rfind(')')? + 1..].trim_start().chars().next()?;
                (comm.starts_with("torsion-python") && state == 'S').then_some(())
            })
            .count()
    }

    #[test]
    fn a_busy_job_keeps_the_next_on_its_thread() {
        // The thread is running, not blocked: the watchdog must not wake another thread
        // for the queued job, which would only wait for the GIL.
        let (pool, reports, _release) = pool(2, 64);
        while python_threads_asleep() < 2 {
            std::thread::yield_now();
        }
        assert!(pool.submit(0, 50).is_ok());
        // One thread has taken the busy job, and the other is asleep again.
        while pool.shared.started.load(Ordering::Relaxed) == 0 || python_threads_asleep() < 1 {
            std::thread::yield_now();
        }
        assert!(pool.submit(0, 1).is_ok());
        let (first, busy) = reports.recv_timeout(Duration::from_secs(30)).unwrap();
        let (second, next) = reports.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!((first, second), (50, 1));
        assert_eq!(busy, next);
    }

    #[test]
    fn a_full_queue_refuses_and_a_closed_pool_stops_taking_jobs() {
        // The only thread is blocked, so queued jobs stay queued.
        let (pool, reports, release) = pool(1, 2);
        assert!(pool.submit(0, 100).is_ok());
        // Wait until the thread has taken the blocking job, so the queue is empty again.
        while pool.shared.started.load(Ordering::Relaxed) == 0 {
            std::thread::yield_now();
        }
        assert!(pool.submit(0, 1).is_ok());
        assert!(pool.submit(0, 2).is_ok());
        assert!(matches!(pool.submit(0, 3), Err(Refused::Full(3))));
        release.send(()).unwrap();
        let mut seen: Vec<u32> = (0..3)
            .map(|_| reports.recv_timeout(Duration::from_secs(30)).unwrap().0)
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, [1, 2, 100]);
        pool.shared.closed.store(true, Ordering::Relaxed);
        assert!(matches!(pool.submit(0, 4), Err(Refused::Closed(4))));
    }
}
