//! `--workers N`: a supervisor process that opens every listener once and runs N worker
//! processes, each a whole server with its own interpreter, sharing those sockets.
//!
//! The supervisor loads no application and starts no Python. It passes the sockets as
//! systemd does (`LISTEN_FDS`, `LISTEN_FDNAMES`, each named by its endpoint's descriptor;
//! see `torsion_endpoints::inherited_name`), naming itself in
//! `torsion_endpoints::SUPERVISOR_PID_VAR` in place of `LISTEN_PID`, and each worker's
//! endpoints adopt them instead of binding. Each worker has a link to the supervisor, a
//! unix socket pair ([`READY_FD_VAR`]; the messages are in [`crate::ready`]): it says there
//! that it is serving, and gets the live parameters and its role.
//!
//! What it does, after gunicorn's arbiter:
//! - a worker that fails before it is serving, at start-up, stops the supervisor with exit
//!   status 2 (the worker has printed why), rather than a restart loop;
//! - a worker that dies later is replaced, after a back-off that doubles (from 0.1 s up to
//!   10 s) while replacements keep dying within 10 s of starting;
//! - SIGINT and SIGTERM: every worker is sent SIGTERM and drains within
//!   `--shutdown-timeout` (then SIGKILL, 5 s later); the supervisor then exits 0;
//! - SIGHUP: a rolling restart, one worker at a time, the new one serving before the old
//!   one is told to stop (it then answers each HTTP/1.1 request with `Connection: close`
//!   for a moment before closing the rest, so no request is lost); a new worker that fails
//!   to start stops the roll, and the old workers keep serving;
//! - SIGTTIN and SIGTTOU add a worker and retire the newest one (gunicorn's signals);
//! - a worker's parent-death signal is SIGTERM, so no worker outlives a killed supervisor;
//! - with `--control`, the supervisor serves the control channel for all the workers: it
//!   keeps the parameters (and `--params-file`) and sends every change to each worker, and
//!   sums their metrics; one worker at a time runs the timers, handed on once it exits;
//! - the endpoints' background work, the ACME manager of each `txacme:` listener, runs in
//!   the supervisor only; the workers serve the certificates and the challenge answers it
//!   writes into the certificate directory, whichever of them the ACME server reaches;
//! - as process 1 (a container's init, where `torsion web` always supervises, even one
//!   worker), it reaps the orphans the kernel hands it, and passes SIGTERM and SIGINT on.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use command_fds::{CommandFdExt, FdMapping};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use torsion_endpoints::{Listener, SUPERVISOR_PID_VAR, inherited_name};

use crate::args::WebArgs;
use crate::error::ConfigError;
use crate::links::{Links, Message};
use crate::ready::{READY_FD_VAR, WORKER_VAR, is_worker};

/// How many workers to supervise for `--workers` (`None`: 1), or `None` when this process
/// should serve itself: a worker, or one process not running as process 1 nor reloading.
/// As process 1, a supervisor runs even for one worker, to reap orphans and pass signals
/// on; with `--reload`, to replace the worker when the source changes.
pub(crate) fn supervised(args: &WebArgs) -> Option<usize> {
    let count = args.workers.unwrap_or(1);
    let init = rustix::process::getpid().is_init();
    (!is_worker() && (count > 1 || init || args.reload)).then_some(count)
}

/// The environment variable through which a process that has read its `--config` file
/// and found it must supervise passes the file's options, as flags separated by
/// [`FLAG_SEPARATOR`], to the supervisor it replaces itself with (see [`become_supervisor`]).
pub(crate) const CONFIG_FLAGS_VAR: &str = "TORSION_CONFIG_FLAGS";

/// What separates the flags in [`CONFIG_FLAGS_VAR`]: ASCII's unit separator, which no
/// option value has any use for.
const FLAG_SEPARATOR: char = '\u{1f}';

/// The `--config` file's options left by [`become_supervisor`], if this process is that
/// supervisor.
pub(crate) fn config_flags() -> Option<Vec<OsString>> {
    let flags = std::env::var(CONFIG_FLAGS_VAR).ok()?;
    Some(
        flags
            .split(FLAG_SEPARATOR)
            .filter(|flag| !flag.is_empty())
            .map(OsString::from)
            .collect(),
    )
}

/// Replaces this process (its PID kept, as systemd and a container's init need) with a
/// supervisor started as `command`, with the options `flags` that its `--config` file set:
/// so the file is read once here, by the interpreter this process started, and the
/// supervisor runs no Python. Returns only if the program cannot be run.
///
/// # Errors
/// [`ConfigError::Option`] for a flag holding the separator; [`ConfigError::Listen`] when
/// the program cannot be executed.
pub(crate) fn become_supervisor(
    command: &WorkerCommand,
    flags: &[OsString],
) -> Result<std::convert::Infallible, ConfigError> {
    use std::os::unix::process::CommandExt;
    let mut joined = String::new();
    for flag in flags {
        let flag = flag.to_str().filter(|f| !f.contains(FLAG_SEPARATOR)).ok_or_else(|| {
            ConfigError::Option(format!(
                "--config: the option {flag:?} cannot be passed to the supervisor (not UTF-8, or holds U+001F)"
            ))
        })?;
        joined.push_str(flag);
        joined.push(FLAG_SEPARATOR);
    }
    let err = std::process::Command::new(&command.program)
        .args(&command.args)
        .env(CONFIG_FLAGS_VAR, joined)
        .exec();
    Err(ConfigError::Listen(format!(
        "cannot run {} to supervise the workers: {err}",
        command.program.to_string_lossy()
    )))
}

/// How long `--reload` waits after the last change before replacing the workers.
const RELOAD_QUIET: Duration = Duration::from_millis(300);

/// How a worker is started: the program and the arguments before `torsion`'s own (the
/// binary itself with none; `python -m torsion` from the wheel), then the command line
/// the supervisor was given.
#[derive(Clone, Debug)]
pub(crate) struct WorkerCommand {
    /// The program to run.
    pub(crate) program: OsString,
    /// Its arguments, the supervisor's command line (without the program name) last.
    pub(crate) args: Vec<OsString>,
}

/// What a worker's watcher reports.
#[derive(Debug)]
enum Event {
    /// The worker is serving.
    Ready(u64),
    /// The worker has exited, with this status.
    Exited(u64, std::process::ExitStatus),
    /// The worker asks to be replaced: it has served its `--max-requests`.
    Due(u64),
}

/// A running worker.
struct Worker {
    pid: i32,
    started: Instant,
    ready: bool,
    /// Retired by SIGTTOU, a rolling restart or shutdown: not replaced when it exits.
    retiring: bool,
    /// Started by a rolling restart and not serving yet: if it exits, the roll stops and
    /// the worker it was to replace goes on.
    trial: bool,
}

/// Opens every listener of `args`, runs `count` workers with `command`, and supervises
/// them until SIGINT or SIGTERM; the exit status.
///
/// # Errors
/// [`ConfigError`] for a descriptor that does not parse or cannot be shared (a kind that
/// names no socket-level endpoint), a listener that cannot be opened, or a worker that
/// fails at start-up.
pub(crate) fn supervise(
    args: &WebArgs,
    count: usize,
    command: WorkerCommand,
) -> Result<ExitCode, ConfigError> {
    let endpoints = crate::web::endpoints(args)?;
    // The control channel and the parameters file are the supervisor's, for all workers.
    let control = crate::web::control_endpoint(args)?;
    if let Some(file) = &args.params_file {
        torsion_wsgi::params::params()
            .load_file(file)
            .map_err(|err| ConfigError::Option(err.to_string()))?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| ConfigError::Listen(format!("cannot start the async runtime: {err}")))?;
    let shutdown_timeout = Duration::try_from_secs_f64(args.shutdown_timeout).map_err(|_| {
        ConfigError::Option(format!(
            "--shutdown-timeout {} is not valid; expected a number of seconds, 0 or more",
            args.shutdown_timeout
        ))
    })?;
    runtime.block_on(async move {
        // Signals first, so that none is lost while the workers start.
        let mut interrupt = signal(SignalKind::interrupt()).map_err(signal_error)?;
        let mut terminate = signal(SignalKind::terminate()).map_err(signal_error)?;
        let mut more = signal(SignalKind::from_raw(rustix::process::Signal::TTIN.as_raw()))
            .map_err(signal_error)?;
        let mut fewer = signal(SignalKind::from_raw(rustix::process::Signal::TTOU.as_raw()))
            .map_err(signal_error)?;
        // As process 1 (a container's init), orphans are adopted by the supervisor: reap them.
        let init = rustix::process::getpid().is_init();
        let mut children = signal(SignalKind::child()).map_err(signal_error)?;
        let mut hangup = signal(SignalKind::hangup()).map_err(signal_error)?;
        let sockets = open_sockets(&endpoints).await?;
        // The endpoints' background work (the ACME managers) runs here, once, not in each
        // worker; set up now so that a bad setting stops start-up, started once every
        // worker serves, so that the workers answer its challenges.
        let mut background = Vec::new();
        for endpoint in &endpoints {
            background.extend(endpoint.background()?);
        }
        let links = Links::default();
        let health = std::sync::Arc::new(torsion_wsgi::control::Health::new());
        let control = match control {
            Some((endpoint, token)) => {
                let (listener, token) = crate::web::open_control(&endpoint, token).await?;
                let (gathering, listing) = (links.clone(), links.clone());
                let channel = crate::web::control_channel(
                    &listener,
                    token,
                    health.clone(),
                    endpoints.iter().map(ToString::to_string).collect(),
                    move || {
                        let links = gathering.clone();
                        async move { links.gather().await }
                    },
                    move || ("workers", listing.workers()),
                );
                Some(tokio::spawn(channel.serve(listener)))
            }
            None => None,
        };
        let mut params_changes = torsion_wsgi::params::params().watch();
        crate::notify::start_watchdog();
        let mut supervisor = Supervisor::new(command, &sockets, links);
        for _ in 0..count {
            supervisor.spawn()?;
        }
        // Start-up: every worker serving, or the first failure stops everything.
        while supervisor.workers.values().any(|w| !w.ready) {
            match supervisor.events.recv().await {
                Some(Event::Ready(id)) => supervisor.ready(id),
                Some(Event::Due(_)) => {}
                Some(Event::Exited(id, status)) => {
                    supervisor.workers.remove(&id);
                    supervisor.stop_all(shutdown_timeout).await;
                    return Err(ConfigError::Application(format!(
                        "worker {id} stopped while starting ({}); it says why above",
                        describe(status)
                    )));
                }
                None => break,
            }
        }
        tracing::info!(workers = count, "every worker is serving");
        supervisor.assign_timers();
        for work in background {
            tokio::spawn(work);
        }
        crate::notify::ready(&format!("{count} workers serving"));
        let mut target = count;
        // --reload: the source, and when the last change came (replacing waits for 0.3 s of
        // quiet, as an editor's save or a checkout touches several files).
        let mut source = if args.reload {
            let mut directories: Vec<std::path::PathBuf> = args.pythonpath.clone();
            directories.push(std::env::current_dir().map_err(|err| {
                ConfigError::Option(format!("--reload: cannot read the working directory: {err}"))
            })?);
            // The --config file's folder, when it is not the working directory.
            if let Some(folder) = args.config.as_deref().and_then(std::path::Path::parent)
                && !folder.as_os_str().is_empty()
            {
                directories.push(folder.to_owned());
            }
            Some(crate::reload::watch(&directories, &args.reload_include, &args.reload_exclude)?)
        } else {
            None
        };
        let mut changed: Option<(tokio::time::Instant, std::path::PathBuf)> = None;
        let memory_limit = args.max_worker_memory.filter(|&mb| mb > 0).map(|mb| mb * 1_000_000);
        let mut memory_check = tokio::time::interval(Duration::from_secs(1));
        let mut backoff = Duration::ZERO;
        loop {
            tokio::select! {
                _ = interrupt.recv() => {
                    health.begin_draining();
                    tracing::info!("SIGINT received: stopping the workers");
                    break;
                }
                _ = terminate.recv() => {
                    health.begin_draining();
                    tracing::info!("SIGTERM received: stopping the workers");
                    break;
                }
                Ok(()) = params_changes.changed() => supervisor.links.broadcast_params(),
                _ = more.recv() => {
                    target += 1;
                    tracing::info!(workers = target, "SIGTTIN received: adding a worker");
                    supervisor.spawn()?;
                }
                _ = children.recv(), if init => supervisor.reap_orphans(),
                _ = hangup.recv() => {
                    tracing::info!("SIGHUP received: restarting the workers one at a time");
                    crate::notify::reloading();
                    supervisor.roll()?;
                }
                _ = fewer.recv() => {
                    if target > 1 {
                        target -= 1;
                        tracing::info!(workers = target, "SIGTTOU received: retiring the newest worker");
                        supervisor.retire_newest();
                    }
                }
                Some(path) = async { source.as_mut()?.changes.recv().await }, if source.is_some() => {
                    changed = Some((tokio::time::Instant::now() + RELOAD_QUIET, path));
                }
                () = async {
                    if let Some((at, _)) = &changed {
                        tokio::time::sleep_until(*at).await;
                    }
                }, if changed.is_some() => {
                    if let Some((_, path)) = changed.take() {
                        tracing::info!(changed = %path.display(), "the source changed: restarting the workers one at a time");
                        crate::notify::reloading();
                        supervisor.roll()?;
                    }
                }
                _ = memory_check.tick(), if memory_limit.is_some() => {
                    supervisor.replace_over(memory_limit.unwrap_or(u64::MAX))?;
                }
                event = supervisor.events.recv() => match event {
                    Some(Event::Due(id)) => {
                        tracing::info!(worker = id, "worker served its --max-requests: replacing it");
                        supervisor.replace(id)?;
                    }
                    Some(Event::Ready(id)) => {
                        supervisor.ready(id);
                        supervisor.rolled(id)?;
                        supervisor.assign_timers();
                    }
                    Some(Event::Exited(id, status)) => {
                        let Some(worker) = supervisor.workers.remove(&id) else { continue };
                        supervisor.exited(id);
                        if worker.trial {
                            tracing::error!(
                                worker = id,
                                "the new worker exited before serving ({}): the rolling restart stops, and the old workers keep serving",
                                describe(status)
                            );
                            supervisor.abandon_roll();
                            continue;
                        }
                        if worker.retiring {
                            tracing::info!(worker = id, pid = worker.pid, "retired worker exited ({})", describe(status));
                            continue;
                        }
                        let lived = worker.started.elapsed();
                        backoff = if lived < Duration::from_secs(10) {
                            (backoff * 2).clamp(Duration::from_millis(100), Duration::from_secs(10))
                        } else {
                            Duration::ZERO
                        };
                        tracing::warn!(
                            worker = id,
                            pid = worker.pid,
                            "worker exited ({}) after {lived:.1?}; starting another in {backoff:?}",
                            describe(status)
                        );
                        tokio::time::sleep(backoff).await;
                        supervisor.spawn()?;
                    }
                    None => break,
                },
            }
        }
        health.begin_draining();
        crate::notify::stopping();
        supervisor.stop_all(shutdown_timeout).await;
        if let Some(control) = control {
            control.abort();
        }
        drop(sockets);
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

fn signal_error(err: std::io::Error) -> ConfigError {
    ConfigError::Listen(format!("cannot install signal handlers: {err}"))
}

/// `exit status 2`, `killed by SIGKILL`.
fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => {
            let names = [
                (1, "SIGHUP"),
                (2, "SIGINT"),
                (3, "SIGQUIT"),
                (4, "SIGILL"),
                (6, "SIGABRT"),
                (7, "SIGBUS"),
                (8, "SIGFPE"),
                (9, "SIGKILL"),
                (11, "SIGSEGV"),
                (13, "SIGPIPE"),
                (15, "SIGTERM"),
            ];
            match names.iter().find(|(number, _)| *number == signal) {
                Some((_, name)) => format!("killed by {name}"),
                None => format!("killed by signal {signal}"),
            }
        }
        (None, None) => "unknown status".into(),
    }
}

/// Opens the socket-level endpoints of every listener once (a socket shared by two
/// descriptors, `tcp:8080` under `ssl:` and `txsni:` say, is opened once), by canonical
/// descriptor.
async fn open_sockets(
    endpoints: &[torsion_endpoints::Endpoint],
) -> Result<Vec<(String, Listener)>, ConfigError> {
    let mut sockets: Vec<(String, Listener)> = Vec::new();
    for endpoint in endpoints {
        let levels = endpoint.sockets();
        if levels.is_empty() {
            return Err(ConfigError::Option(format!(
                "--workers: the {} endpoint {endpoint} names no socket that worker processes could share",
                endpoint.kind()
            )));
        }
        for socket in levels {
            let descriptor = socket.to_string();
            if sockets.iter().any(|(d, _)| *d == descriptor) {
                continue;
            }
            let listener = socket.listen().await?;
            if listener.socket().is_none() {
                return Err(ConfigError::Option(format!(
                    "--workers: {descriptor} gave no socket to share"
                )));
            }
            tracing::info!(endpoint = %descriptor, address = %listener.local_addr(), "listening for the workers");
            sockets.push((descriptor, listener));
        }
    }
    Ok(sockets)
}

/// The workers and what they need to start.
struct Supervisor<'a> {
    command: WorkerCommand,
    sockets: &'a [(String, Listener)],
    workers: BTreeMap<u64, Worker>,
    next_id: u64,
    events: mpsc::UnboundedReceiver<Event>,
    sender: mpsc::UnboundedSender<Event>,
    /// A rolling restart: the workers still to replace, oldest first.
    rolling: std::collections::VecDeque<u64>,
    /// The worker the current step started, and the one it replaces once serving.
    step: Option<(u64, u64)>,
    /// Each worker's link.
    links: Links,
    /// The worker that runs the timers: one at a time, the next chosen once it has exited.
    timers_holder: Option<u64>,
}

impl<'a> Supervisor<'a> {
    fn new(
        command: WorkerCommand,
        sockets: &'a [(String, Listener)],
        links: Links,
    ) -> Supervisor<'a> {
        let (sender, events) = mpsc::unbounded_channel();
        Supervisor {
            command,
            sockets,
            workers: BTreeMap::new(),
            next_id: 1,
            events,
            sender,
            rolling: std::collections::VecDeque::new(),
            step: None,
            links,
            timers_holder: None,
        }
    }

    /// Gives the timers to a worker when none holds them: the oldest serving worker that is
    /// not retiring. The holder keeps them until it exits, so that exactly one process
    /// runs them, even through a rolling restart.
    fn assign_timers(&mut self) {
        if self
            .timers_holder
            .is_some_and(|holder| self.workers.contains_key(&holder))
        {
            return;
        }
        self.timers_holder = None;
        if let Some((&id, _)) = self
            .workers
            .iter()
            .find(|(_, worker)| worker.ready && !worker.retiring)
        {
            self.timers_holder = Some(id);
            self.links.send(id, "timers");
        }
    }

    /// Worker `id` has exited: forgets its link, and passes the timers on if it held them.
    fn exited(&mut self, id: u64) {
        self.links.forget(id);
        if self.timers_holder == Some(id) {
            self.timers_holder = None;
            self.assign_timers();
        }
    }

    /// Starts a rolling restart (SIGHUP): each worker serving now is replaced in turn, the
    /// new one serving before the old one is told to stop, so that the listeners always
    /// have workers accepting. A SIGHUP during a roll adds the workers not yet scheduled.
    fn roll(&mut self) -> Result<(), ConfigError> {
        for (&id, worker) in &self.workers {
            let replacing = self.step.is_some_and(|(_, old)| old == id);
            if !worker.retiring && !worker.trial && !replacing && !self.rolling.contains(&id) {
                self.rolling.push_back(id);
            }
        }
        self.next_step()
    }

    /// Replaces worker `id` as a rolling restart does (its replacement serving first),
    /// after the replacements already scheduled.
    fn replace(&mut self, id: u64) -> Result<(), ConfigError> {
        let scheduled = self.rolling.contains(&id) || self.step.is_some_and(|(_, old)| old == id);
        if !scheduled
            && self
                .workers
                .get(&id)
                .is_some_and(|w| w.ready && !w.retiring && !w.trial)
        {
            self.rolling.push_back(id);
        }
        self.next_step()
    }

    /// Replaces every serving worker whose resident memory is over `limit` bytes
    /// (`--max-worker-memory`).
    fn replace_over(&mut self, limit: u64) -> Result<(), ConfigError> {
        let page = rustix::param::page_size() as u64;
        let over: Vec<(u64, u64)> = self
            .workers
            .iter()
            .filter(|(_, w)| w.ready && !w.retiring && !w.trial)
            .filter_map(|(&id, w)| {
                let statm = std::fs::read_to_string(format!("/proc/{}/statm", w.pid)).ok()?;
                let resident: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
                let bytes = resident * page;
                (bytes > limit).then_some((id, bytes))
            })
            .collect();
        for (id, bytes) in over {
            if self.rolling.contains(&id) || self.step.is_some_and(|(_, old)| old == id) {
                continue;
            }
            tracing::info!(
                worker = id,
                "worker uses {:.1} MB, over --max-worker-memory {:.1} MB: replacing it",
                bytes as f64 / 1e6,
                limit as f64 / 1e6
            );
            self.replace(id)?;
        }
        Ok(())
    }

    /// Starts the next replacement of a roll, unless one is under way.
    fn next_step(&mut self) -> Result<(), ConfigError> {
        if self.step.is_some() {
            return Ok(());
        }
        while let Some(old) = self.rolling.pop_front() {
            if self.workers.get(&old).is_none_or(|w| w.retiring) {
                continue;
            }
            let new = self.spawn()?;
            if let Some(worker) = self.workers.get_mut(&new) {
                worker.trial = true;
            }
            self.step = Some((new, old));
            return Ok(());
        }
        tracing::info!(
            workers = self.workers.values().filter(|w| !w.retiring).count(),
            "rolling restart done"
        );
        crate::notify::ready("rolling restart done");
        Ok(())
    }

    /// A worker became ready: if it is the current step's, the worker it replaces is told
    /// to stop and the roll goes on.
    fn rolled(&mut self, id: u64) -> Result<(), ConfigError> {
        let Some((new, old)) = self.step else {
            return Ok(());
        };
        if new != id {
            return Ok(());
        }
        if let Some(worker) = self.workers.get_mut(&new) {
            worker.trial = false;
        }
        if let Some(worker) = self.workers.get_mut(&old) {
            worker.retiring = true;
            terminate(worker.pid, rustix::process::Signal::TERM);
        }
        self.step = None;
        self.next_step()
    }

    /// The current step's new worker failed: stop rolling; the old workers go on.
    fn abandon_roll(&mut self) {
        self.rolling.clear();
        self.step = None;
        crate::notify::ready("rolling restart failed; the previous workers serve");
    }

    /// Starts a worker with the sockets as descriptors 3 on and its link (a socket) after
    /// them, and watches it.
    fn spawn(&mut self) -> Result<u64, ConfigError> {
        let id = self.next_id;
        self.next_id += 1;
        let failed = |what: &str, err: &dyn std::fmt::Display| {
            ConfigError::Listen(format!("cannot start worker {id}: {what}: {err}"))
        };
        let mut mappings = Vec::new();
        let mut names = Vec::new();
        for (index, (descriptor, listener)) in self.sockets.iter().enumerate() {
            let Some(socket) = listener.socket() else {
                continue;
            };
            let copy = socket
                .try_clone_to_owned()
                .map_err(|err| failed("duplicate a socket", &err))?;
            mappings.push(FdMapping {
                parent_fd: copy,
                child_fd: 3 + index as i32,
            });
            names.push(inherited_name(descriptor));
        }
        let events = self.sender.clone();
        let link = self
            .links
            .open(id, move |id, message| {
                let _ = events.send(match message {
                    Message::Ready => Event::Ready(id),
                    Message::Due => Event::Due(id),
                });
            })
            .map_err(|err| failed("make its link", &err))?;
        let ready_fd = 3 + names.len() as i32;
        mappings.push(FdMapping {
            parent_fd: link,
            child_fd: ready_fd,
        });
        let mut command = tokio::process::Command::new(&self.command.program);
        command
            .args(&self.command.args)
            .env("LISTEN_FDS", names.len().to_string())
            .env("LISTEN_FDNAMES", names.join(":"))
            .env_remove("LISTEN_PID")
            .env(
                SUPERVISOR_PID_VAR,
                rustix::process::getpid().as_raw_nonzero().to_string(),
            )
            .env(READY_FD_VAR, ready_fd.to_string())
            .env(WORKER_VAR, id.to_string())
            // A worker reads the --config file itself.
            .env_remove(CONFIG_FLAGS_VAR)
            .kill_on_drop(false);
        for variable in crate::notify::VARIABLES {
            command.env_remove(variable);
        }
        command
            .fd_mappings(mappings)
            .map_err(|err| failed("pass the sockets", &err))?;
        #[allow(unsafe_code)]
        // SAFETY: the closure runs in the child between fork and exec and only makes one
        // system call (prctl), which is async-signal-safe; it touches no lock or allocator.
        unsafe {
            command.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::TERM,
                ))
                .map_err(std::io::Error::from)
            });
        }
        let mut child = command
            .spawn()
            .map_err(|err| failed(&format!("run {:?}", self.command.program), &err))?;
        let pid = child.id().map_or(0, |pid| pid as i32);
        self.links.started(id, pid);
        tracing::info!(worker = id, pid, "worker started");
        self.workers.insert(
            id,
            Worker {
                pid,
                started: Instant::now(),
                ready: false,
                retiring: false,
                trial: false,
            },
        );
        let events = self.sender.clone();
        tokio::spawn(async move {
            if let Ok(status) = child.wait().await {
                let _ = events.send(Event::Exited(id, status));
            }
        });
        Ok(id)
    }

    /// Reaps every child that has exited and is not a worker (whose exits tokio reaps and
    /// reports): processes adopted as process 1, whose parents died before them.
    fn reap_orphans(&self) {
        let ours = rustix::process::getpid().as_raw_nonzero().get();
        let Ok(children) = std::fs::read_to_string(format!("/proc/{ours}/task/{ours}/children"))
        else {
            return;
        };
        for pid in children
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            if self.workers.values().any(|worker| worker.pid == pid) {
                continue;
            }
            let Some(pid) = rustix::process::Pid::from_raw(pid) else {
                continue;
            };
            if let Ok(Some((_, status))) =
                rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::NOHANG)
            {
                tracing::debug!(
                    pid = pid.as_raw_nonzero().get(),
                    ?status,
                    "reaped an orphaned process"
                );
            }
        }
    }

    fn ready(&mut self, id: u64) {
        if let Some(worker) = self.workers.get_mut(&id) {
            worker.ready = true;
            tracing::info!(worker = id, pid = worker.pid, "worker serving");
        }
    }

    /// Sends SIGTERM to the newest worker and does not replace it.
    fn retire_newest(&mut self) {
        if let Some((_, worker)) = self.workers.iter_mut().rev().find(|(_, w)| !w.retiring) {
            worker.retiring = true;
            terminate(worker.pid, rustix::process::Signal::TERM);
        }
    }

    /// Sends every worker SIGTERM and waits for all to exit: within `timeout` (they drain
    /// their requests), then 5 s more before SIGKILL.
    async fn stop_all(&mut self, timeout: Duration) {
        for worker in self.workers.values_mut() {
            worker.retiring = true;
            terminate(worker.pid, rustix::process::Signal::TERM);
        }
        let deadline = tokio::time::Instant::now() + timeout + Duration::from_secs(5);
        while !self.workers.is_empty() {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Event::Exited(id, status))) => {
                    if let Some(worker) = self.workers.remove(&id) {
                        tracing::info!(
                            worker = id,
                            pid = worker.pid,
                            "worker exited ({})",
                            describe(status)
                        );
                    }
                }
                Ok(Some(Event::Ready(_) | Event::Due(_))) => {}
                Ok(None) => break,
                Err(_) => {
                    for worker in self.workers.values() {
                        tracing::warn!(
                            worker = worker.pid,
                            "worker still running after the shutdown timeout: killing it"
                        );
                        terminate(worker.pid, rustix::process::Signal::KILL);
                    }
                    // Their watchers report the exits; wait for them without a bound.
                    while !self.workers.is_empty() {
                        match self.events.recv().await {
                            Some(Event::Exited(id, _)) => {
                                self.workers.remove(&id);
                            }
                            Some(Event::Ready(_) | Event::Due(_)) => {}
                            None => break,
                        }
                    }
                }
            }
        }
    }
}

/// Sends `signal` to the process `pid` (a worker); a worker that has exited already is
/// no error.
fn terminate(pid: i32, signal: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(pid, signal);
    }
}
