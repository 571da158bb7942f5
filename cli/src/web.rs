//! `torsion web`: the flags (and, from Python, objects) turned into a site served on
//! listeners by a server running on a thread of its own until it is stopped.

use std::path::PathBuf;
use std::sync::{Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use torsion_endpoints::{Address, Endpoint};
use torsion_wsgi::site::files::{Files, FilesOptions};
use torsion_wsgi::site::{Resource, Site};
use torsion_wsgi::{AccessLog, Application, Protocols, PythonOptions, ServerConfig, Timer};

use crate::args::WebArgs;
use crate::error::ConfigError;

/// What `torsion web` serves: the flags, and the resources Python code mounted beside
/// them (the Python API's `Site.mount`).
pub(crate) struct Plan {
    /// The flags (or the Python keywords turned into flags).
    pub(crate) args: WebArgs,
    /// Resources mounted from Python, with their prefixes.
    pub(crate) mounts: Vec<(String, Mounted)>,
    /// Repeating tasks given from Python.
    pub(crate) timers: Vec<Timer>,
    /// The HTTP versions of listeners given from Python (`Site.listen(descriptor,
    /// protocols=...)`), by their descriptor as given to `--listen`; the others speak both.
    pub(crate) protocols: Vec<(String, Protocols)>,
    /// Run once Python is up, before any application or timer is imported: makes
    /// `import torsion` work in the interpreter the binary embeds.
    pub(crate) python_setup: fn(pyo3::Python<'_>) -> pyo3::PyResult<()>,
}

/// A resource mounted from Python rather than named by a flag.
pub(crate) enum Mounted {
    /// A WSGI application object.
    Application(Application),
    /// A WSGI application by name, imported as `--mount` imports it.
    Name(String),
    /// A directory of static files with its own options.
    Files(PathBuf, FilesOptions),
}

/// Who handles SIGINT, SIGTERM and SIGUSR1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Signals {
    /// The server: the first SIGINT or SIGTERM stops it, SIGUSR1 reopens the access log
    /// (the binary, which owns its process).
    Server,
    /// The caller, which stops the server with [`Running::stop`] (Python, whose process
    /// belongs to the interpreter).
    Caller,
}

/// How long a stopping server waits for its Python threads to let go of the interpreter.
const PYTHON_THREADS_FINISH: Duration = Duration::from_secs(10);

/// A server started by [`Running::start`], serving on a thread of its own.
///
/// Shared by reference between the thread that waits for it and, in Python, the signal
/// handlers that stop it: every method takes `&self`. Dropping it starts a graceful stop
/// but does not wait for it.
pub(crate) struct Running {
    addresses: Vec<Address>,
    access_log: Option<AccessLog>,
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    done: Mutex<mpsc::Receiver<()>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Running {
    /// Checks every option, loads the applications, opens every listener, then serves on
    /// a new thread. Nothing is served unless all of that succeeded.
    ///
    /// # Errors
    /// The first [`ConfigError`]: a bad option or descriptor, an application that does not
    /// load, a listener that cannot be opened, or no thread or runtime to be had.
    pub(crate) fn start(plan: Plan, signals: Signals) -> Result<Running, ConfigError> {
        let Plan {
            args,
            mounts,
            mut timers,
            protocols,
            python_setup,
        } = plan;
        let endpoints = endpoints(&args)?;
        let mut config = server_config(&args)?;
        let worker = crate::ready::is_worker();
        // A worker's supervisor serves the control channel and keeps the parameters file;
        // the worker counts for it, and runs timers only when the supervisor says so.
        let control = if worker {
            None
        } else {
            control_endpoint(&args)?
        };
        if control.is_some() || (worker && args.control.is_some()) {
            // Counted only for a control channel to report.
            config.metrics = Some(std::sync::Arc::default());
        }
        if worker {
            config.timer_gate = Some(crate::ready::timer_gate());
        } else if let Some(file) = &args.params_file {
            torsion_wsgi::params::params()
                .load_file(file)
                .map_err(|err| ConfigError::Option(err.to_string()))?;
        }
        let runtime = torsion_wsgi::runtime_builder()
            .build()
            .map_err(|err| ConfigError::Listen(format!("cannot start the async runtime: {err}")))?;
        let access_log = config.access_log.clone();
        let served = config.served.clone();
        // The site's bridge and the signal streams belong to this runtime.
        let entered = runtime.enter();
        let shutdown = match signals {
            Signals::Server => {
                // Before Python starts: our handlers first, so that CPython leaves SIGINT
                // alone.
                let shutdown = shutdown_signal()
                    .map_err(|err| format!("cannot install signal handlers: {err}"))?;
                if let Some(log) = access_log.clone() {
                    reopen_on_sigusr1(log)
                        .map_err(|err| format!("cannot install the SIGUSR1 handler: {err}"))?;
                }
                Some(shutdown)
            }
            Signals::Caller => None,
        };
        let python = PythonStart {
            options: PythonOptions::new(args.pythonpath.clone()),
            setup: python_setup,
            started: std::cell::Cell::new(false),
        };
        let site = site(&args, config, mounts, &python)?;
        timers.extend(flag_timers(&args, &python)?);
        let site = site
            .with_timers(timers)
            .map_err(|err| ConfigError::Option(err.to_string()))?;
        for mount in site.mounts() {
            tracing::info!("mounted {mount}");
        }
        let reporter = site.reporter();
        if worker {
            crate::ready::set_reporter(reporter.clone());
        }
        let mounted = site.mounts().to_vec();
        drop(entered);
        let speaking: Vec<Protocols> = (0..endpoints.len())
            .map(|index| {
                args.listen
                    .get(index)
                    .and_then(|given| protocols.iter().find(|(d, _)| d == given))
                    .map_or(Protocols::Both, |(_, speaks)| *speaks)
            })
            .collect();
        let (listeners, control) = runtime.block_on(async {
            let mut listeners = Vec::new();
            for (endpoint, speaks) in endpoints.iter().zip(speaking) {
                listeners.push((endpoint.listen().await?, speaks));
            }
            let control = match control {
                Some((endpoint, token)) => Some(open_control(&endpoint, token).await?),
                None => None,
            };
            Ok::<_, ConfigError>((listeners, control))
        })?;
        let health = std::sync::Arc::new(torsion_wsgi::control::Health::new());
        let control = control.map(|(listener, token)| {
            let mounts = serde_json::json!(mounted);
            let channel = control_channel(
                &listener,
                token,
                health.clone(),
                endpoints.iter().map(ToString::to_string).collect(),
                move || {
                    let snapshot = reporter.snapshot();
                    async move { snapshot }
                },
                move || ("mounts", mounts.clone()),
            );
            (listener, channel)
        });
        let addresses = listeners
            .iter()
            .map(|(listener, _)| listener.local_addr().clone())
            .collect();
        // Serving from here on: tell a supervisor (as its worker) or systemd (as a service).
        // A worker has the supervisor's parameters first, so its first request sees them.
        crate::ready::wait_for_params(Duration::from_secs(5));
        crate::ready::tell_ready();
        if let Some(served) = served {
            watch_max_requests(&args, served);
        }
        crate::notify::ready(&format!("serving on {} listener(s)", endpoints.len()));
        crate::notify::start_watchdog();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done) = mpsc::channel();
        let log = access_log.clone();
        let python_threads = site.python_threads();
        let thread = std::thread::Builder::new()
            .name("torsion-server".into())
            .spawn(move || {
                runtime.block_on(async move {
                    // The control channel serves until the server has stopped, draining
                    // included, so that /health can say so.
                    let control =
                        control.map(|(listener, channel)| tokio::spawn(channel.serve(listener)));
                    let stopped = async move {
                        match shutdown {
                            Some(signal) => tokio::select! {
                                () = signal => {}
                                _ = stop_rx => {}
                            },
                            None => drop(stop_rx.await),
                        }
                        health.begin_draining();
                        crate::notify::stopping();
                    };
                    torsion_wsgi::serve_speaking(site, listeners, stopped).await;
                    if let Some(control) = control {
                        control.abort();
                    }
                });
                // The site, and with it the Python threads' pool, goes with the runtime's
                // last tasks; then the threads are waited for, so that a server embedded
                // in Python (`python -m torsion`) returns to an interpreter none of them is
                // still in.
                drop(runtime);
                if let Some(threads) = python_threads {
                    let left = threads.wait(PYTHON_THREADS_FINISH);
                    if left > 0 {
                        tracing::warn!(
                            threads = left,
                            "Python threads still in an application's call after {}s; not waiting for them",
                            PYTHON_THREADS_FINISH.as_secs()
                        );
                    }
                }
                if let Some(log) = log {
                    log.finish();
                }
                tracing::info!("stopped");
                drop(done_tx);
            })
            .map_err(|err| ConfigError::Listen(format!("cannot start the server thread: {err}")))?;
        Ok(Running {
            addresses,
            access_log,
            stop: Mutex::new(Some(stop_tx)),
            done: Mutex::new(done),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The listeners' bound addresses, in the order of the descriptors (with port 0, the
    /// port the system chose).
    pub(crate) fn addresses(&self) -> &[Address] {
        &self.addresses
    }

    /// Starts a graceful stop: no new connections, requests in flight get up to
    /// `--shutdown-timeout`. Returns at once; a second call does nothing.
    pub(crate) fn stop(&self) {
        let stop = self.stop.lock().ok().and_then(|mut stop| stop.take());
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
    }

    /// Reopens the access log, if there is one (what SIGUSR1 does to the binary).
    pub(crate) fn reopen_access_log(&self) {
        if let Some(log) = &self.access_log {
            log.reopen();
        }
    }

    /// Waits up to `timeout` for the server to have stopped; whether it has.
    pub(crate) fn wait_timeout(&self, timeout: Duration) -> bool {
        let Ok(done) = self.done.lock() else {
            return true;
        };
        !matches!(
            done.recv_timeout(timeout),
            Err(mpsc::RecvTimeoutError::Timeout)
        )
    }

    /// Waits until the server has stopped (after [`Running::stop`] or, with
    /// [`Signals::Server`], a signal).
    pub(crate) fn join(&self) {
        // Every waiter waits for the end of serving; one of them also joins the thread.
        if let Ok(done) = self.done.lock() {
            let _ = done.recv();
        }
        let thread = self.thread.lock().ok().and_then(|mut thread| thread.take());
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A duration flag in seconds: 0 or more, or above 0 when `positive`.
fn seconds(flag: &str, value: f64, positive: bool) -> Result<Duration, ConfigError> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !positive || !d.is_zero())
        .ok_or_else(|| {
            let expected = if positive {
                "a number of seconds above 0"
            } else {
                "a number of seconds, 0 or more"
            };
            ConfigError::Option(format!("{flag} {value} is not valid; expected {expected}"))
        })
}

/// Refuses twist web's options for Twisted resources, saying what to use instead.
fn refuse_twisted_only(args: &WebArgs) -> Result<(), ConfigError> {
    let refused = [
        (args.class.is_some(), "--class", "a Twisted resource class"),
        (
            args.resource_script.is_some(),
            "--resource-script",
            "an .rpy resource script",
        ),
        (
            args.processor.is_some(),
            "--processor",
            "a Twisted processor for a file extension",
        ),
        (args.user, "--user", "users' ~/public_html directories"),
        (
            args.personal,
            "--personal",
            "a distributed personal web server",
        ),
    ];
    for (given, option, what) in refused {
        if given {
            return Err(format!(
                "{option} serves {what}, which only Twisted can run: serve a WSGI application with --wsgi (or --mount), or a directory with --path (or --static)"
            )
            .into());
        }
    }
    Ok(())
}

/// The endpoints of `--listen` (and the deprecated `--port` and `--https`), all parsed
/// before anything starts, so that a typo stops start-up with status 2.
pub(crate) fn endpoints(args: &WebArgs) -> Result<Vec<Endpoint>, ConfigError> {
    refuse_twisted_only(args)?;
    let mut descriptors = args.listen.clone();
    if let Some(port) = &args.port {
        tracing::warn!("--port is deprecated; use --listen");
        if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
            descriptors.push(format!("tcp:{port}"));
        } else {
            descriptors.push(port.clone());
        }
    }
    if let Some(port) = args.https {
        let descriptor = format!(
            "ssl:{port}:privateKey={}:certKey={}",
            torsion_endpoints::quote(&args.privkey),
            torsion_endpoints::quote(&args.certificate)
        );
        tracing::warn!("--https is deprecated (as in Twisted); use --listen {descriptor}");
        descriptors.push(descriptor);
    }
    if descriptors.is_empty() {
        descriptors.push("tcp:8080".into());
    }
    Ok(descriptors
        .iter()
        .map(|text| Endpoint::parse(text))
        .collect::<Result<_, _>>()?)
}

/// The server's settings from the flags.
fn server_config(args: &WebArgs) -> Result<ServerConfig, ConfigError> {
    let mut config = ServerConfig::default();
    config.multiprocess = args.workers.is_some_and(|n| n > 1);
    // A worker with --max-requests counts its answers; nothing else pays for counting.
    if crate::ready::is_worker() && args.max_requests.is_some_and(|n| n > 0) {
        config.served = Some(std::sync::Arc::default());
    }
    if let Some(threads) = args.threads {
        config.threads = usize::from(threads);
    }
    if let Some(max) = args.max_body_size {
        config.max_body_size = max;
    }
    config.display_tracebacks = args.display_tracebacks;
    config.shutdown_timeout = seconds("--shutdown-timeout", args.shutdown_timeout, false)?;
    config.client_timeout = seconds("--client-timeout", args.client_timeout, true)?;
    if let Some(size) = args.request_buffer_size {
        config.request_buffer_size = size;
    }
    if let Some(rate) = args.min_upload_rate {
        config.min_upload_rate = rate;
    }
    config.upload_grace = seconds("--upload-grace", args.upload_grace, false)?;
    if let Some(rate) = args.min_download_rate {
        config.min_download_rate = rate;
    }
    config.download_grace = seconds("--download-grace", args.download_grace, false)?;
    let format: torsion_wsgi::LogFormat = args
        .access_log_format
        .parse()
        .map_err(|err| format!("--access-log-format: {err}"))?;
    if let Some(target) = &args.access_log {
        let destination = match target.as_str() {
            "-" => torsion_wsgi::Destination::Stdout,
            path => torsion_wsgi::Destination::File(PathBuf::from(path)),
        };
        let log = torsion_wsgi::AccessLog::open(destination, format)
            .map_err(|err| format!("--access-log {target}: cannot open it: {err}"))?;
        config.access_log = Some(log);
    }
    if let Some(networks) = &args.forwarded_allow_ips {
        config.forwarded_allow = networks
            .parse()
            .map_err(|err| format!("--forwarded-allow-ips: {err}"))?;
    }
    for field in &args.add_header {
        config
            .add_header(field)
            .map_err(|err| format!("--add-header: {err}"))?;
    }
    Ok(config)
}

/// The site the flags describe, with `extra` (mounted from Python) beside them: --wsgi and
/// --path at /, --mount and --static at their prefixes; the demo at / when nothing is.
/// Starts Python only when an application is mounted.
/// How Python is started when the server needs it: the options, and what to run once it
/// is up.
struct PythonStart {
    options: PythonOptions,
    setup: fn(pyo3::Python<'_>) -> pyo3::PyResult<()>,
    started: std::cell::Cell<bool>,
}

impl PythonStart {
    /// Starts Python (once per process) and runs the setup.
    ///
    /// # Errors
    /// [`ConfigError::Application`] when Python cannot start or the setup raises.
    fn start(&self) -> Result<(), ConfigError> {
        if self.started.replace(true) {
            return Ok(());
        }
        torsion_wsgi::initialize(&self.options)?;
        pyo3::Python::attach(|py| {
            (self.setup)(py).map_err(|err| {
                ConfigError::Application(format!(
                    "cannot install the torsion package in Python: {}",
                    torsion_wsgi::describe(py, &err)
                ))
            })
        })
    }
}

/// The control channel on `listener` (with `token`, reporting `health`), for one process
/// or for a supervisor: `/metrics` renders what `snapshot` gives (this process's counts, or
/// the sum of the workers'), and `/status` adds the listeners and `extra` (the mounts, or
/// the workers).
pub(crate) fn control_channel<F, S, E>(
    listener: &torsion_endpoints::Listener,
    token: Option<String>,
    health: std::sync::Arc<torsion_wsgi::control::Health>,
    listeners: Vec<String>,
    snapshot: F,
    extra: E,
) -> torsion_wsgi::control::Control
where
    F: Fn() -> S + Send + Sync + 'static,
    S: std::future::Future<Output = torsion_wsgi::metrics::Snapshot> + Send + 'static,
    E: Fn() -> (&'static str, serde_json::Value) + Send + Sync + 'static,
{
    let status = std::sync::Arc::new(Status {
        listeners,
        control: listener.endpoint().to_owned(),
        health: health.clone(),
        started: (std::time::SystemTime::now(), std::time::Instant::now()),
    });
    let snapshot = std::sync::Arc::new(snapshot);
    let counting = snapshot.clone();
    torsion_wsgi::control::Control::new(token, health)
        .with_metrics(std::sync::Arc::new(move || {
            let snapshot = snapshot();
            Box::pin(async move { snapshot.await.render() })
        }))
        .with_status(std::sync::Arc::new(move || {
            let (snapshot, status, extra) = (counting(), status.clone(), extra());
            Box::pin(async move { status.report(&snapshot.await, extra) })
        }))
}

/// What `GET /status` reports besides the counts.
struct Status {
    listeners: Vec<String>,
    control: String,
    health: std::sync::Arc<torsion_wsgi::control::Health>,
    /// When the server started, by the clock and monotonically.
    started: (std::time::SystemTime, std::time::Instant),
}

impl Status {
    /// The service now, as JSON: version, process, uptime, state, listeners, `extra` (mounts,
    /// or workers), then from `snapshot` the Python threads, queue, requests, certificates
    /// and timers, and the parameters.
    fn report(
        &self,
        snapshot: &torsion_wsgi::metrics::Snapshot,
        extra: (&str, serde_json::Value),
    ) -> serde_json::Value {
        let params = torsion_wsgi::params::params().snapshot();
        let mut report = serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "pid": std::process::id(),
            "started": self.started.0.duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()),
            "uptime_seconds": self.started.1.elapsed().as_secs_f64(),
            "state": if self.health.is_draining() { "draining" } else { "serving" },
            "listeners": self.listeners,
            "control": self.control,
            "threads": snapshot.threads,
            "threads_busy": snapshot.threads_busy,
            "queued": snapshot.queued,
            "in_flight": snapshot.in_flight,
            "requests": snapshot.requests.iter().map(|c| c.count).sum::<u64>(),
            "certificates": snapshot.certificates,
            "timers": snapshot.timers,
            "params": params.values,
            "params_version": params.version,
        });
        if let Some(fields) = report.as_object_mut() {
            fields.insert(extra.0.to_owned(), extra.1);
        }
        report
    }
}

/// The repeating tasks of `--timer SECONDS=NAME`, imported (Python started for them if
/// the site did not need it).
///
/// # Errors
/// [`ConfigError::Option`] for a value not of the form SECONDS=NAME or a bad number;
/// [`ConfigError::Application`] for a name that does not import to a callable.
fn flag_timers(args: &WebArgs, python: &PythonStart) -> Result<Vec<Timer>, ConfigError> {
    if args.timer.is_empty() {
        return Ok(Vec::new());
    }
    python.start()?;
    args.timer
        .iter()
        .map(|value| {
            let (seconds, name) = value
                .split_once('=')
                .filter(|(_, name)| !name.trim().is_empty())
                .ok_or_else(|| {
                    ConfigError::Option(format!(
                        "--timer {value:?}: expected SECONDS=NAME, as in --timer 30=myapp.tasks:refresh"
                    ))
                })?;
            let interval = seconds
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    ConfigError::Option(format!(
                        "--timer {value:?}: {seconds:?} is not a number of seconds above 0"
                    ))
                })?;
            Ok(Timer::load(interval, name.trim())?)
        })
        .collect()
}

/// The `--control` endpoint and its token, parsed and read before anything starts.
///
/// # Errors
/// [`ConfigError::Descriptor`] for a descriptor that does not parse,
/// [`ConfigError::Option`] for a token file that cannot be read or is empty, or a token
/// file without `--control`.
pub(crate) fn control_endpoint(
    args: &WebArgs,
) -> Result<Option<(Endpoint, Option<String>)>, ConfigError> {
    let token = match &args.control_token_file {
        Some(file) => {
            let text = std::fs::read_to_string(file).map_err(|err| {
                ConfigError::Option(format!(
                    "--control-token-file {}: cannot read it: {err}",
                    file.display()
                ))
            })?;
            let token = text.trim().to_owned();
            if token.is_empty() || token.contains(char::is_whitespace) {
                return Err(ConfigError::Option(format!(
                    "--control-token-file {}: expected one token (no spaces) on its first line",
                    file.display()
                )));
            }
            Some(token)
        }
        None => None,
    };
    let Some(descriptor) = &args.control else {
        if token.is_some() {
            return Err(ConfigError::Option(
                "--control-token-file is for the control channel: give --control DESCRIPTOR too"
                    .into(),
            ));
        }
        return Ok(None);
    };
    let endpoint: Endpoint = descriptor
        .parse()
        .map_err(|err: torsion_endpoints::Error| {
            ConfigError::Descriptor(format!("--control: {err}"))
        })?;
    Ok(Some((endpoint, token)))
}

/// Opens the control channel's listener. Anything but a unix socket needs a token: a TCP
/// port is open to every local user at least, where a unix socket's file mode decides.
///
/// # Errors
/// What listening returns; [`ConfigError::Option`] for a channel that is not on a unix
/// socket and has no token.
pub(crate) async fn open_control(
    endpoint: &Endpoint,
    token: Option<String>,
) -> Result<(torsion_endpoints::Listener, Option<String>), ConfigError> {
    let listener = endpoint.listen().await?;
    if token.is_none() && !matches!(listener.local_addr(), Address::Unix(_)) {
        return Err(ConfigError::Option(format!(
            "--control {endpoint}: a control channel on {} needs --control-token-file FILE (only on a unix: socket is the file mode access control enough)",
            listener.local_addr()
        )));
    }
    tracing::info!(endpoint = %endpoint, address = %listener.local_addr(), "control channel open");
    Ok((listener, token))
}

fn site(
    args: &WebArgs,
    config: ServerConfig,
    extra: Vec<(String, Mounted)>,
    python: &PythonStart,
) -> Result<Site, ConfigError> {
    let split = |flag: &str, value: &str| -> Result<(String, String), ConfigError> {
        match value.split_once('=') {
            Some((prefix, rest)) if !rest.is_empty() => Ok((prefix.to_owned(), rest.to_owned())),
            _ => Err(format!(
                "{flag} {value:?}: expected PREFIX=VALUE, as in {flag} /static=./static"
            )
            .into()),
        }
    };
    let files_options = files_options(args)?;
    let mut statics = Vec::new();
    if let Some(dir) = &args.path {
        statics.push(("/".to_owned(), dir.clone()));
    }
    for value in &args.static_dirs {
        let (prefix, dir) = split("--static", value)?;
        statics.push((prefix, PathBuf::from(dir)));
    }
    let mut names = Vec::new();
    if let Some(name) = &args.wsgi {
        names.push(("/".to_owned(), name.clone()));
    }
    for value in &args.mount {
        names.push(split("--mount", value)?);
    }
    if args.wsgi.is_some() && args.path.is_some() {
        return Err("--wsgi and --path both serve /: mount one of them elsewhere, as in --static /files=DIR or --mount /app=NAME".to_owned().into());
    }
    // A flag's mount overrides what a --config file (or a Site given keywords) mounts at
    // the same prefix.
    let flagged: Vec<String> = statics
        .iter()
        .map(|(prefix, _)| prefix)
        .chain(names.iter().map(|(prefix, _)| prefix))
        .map(|prefix| same_prefix(prefix))
        .collect();
    let extra: Vec<(String, Mounted)> = extra
        .into_iter()
        .filter(|(prefix, _)| {
            let overridden = flagged.contains(&same_prefix(prefix));
            if overridden {
                tracing::info!(
                    "a flag mounts {prefix}: the configuration's mount there is not used"
                );
            }
            !overridden
        })
        .collect();
    let mut mounts = Vec::new();
    for (prefix, dir) in statics {
        let files = Files::new(dir, files_options.clone()).map_err(|err| err.to_string())?;
        mounts.push((prefix, Resource::Files(files)));
    }
    let python_mounted = extra
        .iter()
        .any(|(_, m)| matches!(m, Mounted::Application(_)));
    for (prefix, mounted) in extra {
        let resource = match mounted {
            Mounted::Application(application) => Resource::Application(application),
            Mounted::Name(name) => {
                names.push((prefix, name));
                continue;
            }
            Mounted::Files(dir, options) => {
                Resource::Files(Files::new(dir, options).map_err(|err| err.to_string())?)
            }
        };
        mounts.push((prefix, resource));
    }
    let demo = names.is_empty() && mounts.is_empty();
    if demo || python_mounted || !names.is_empty() {
        python.start()?;
    }
    for (prefix, name) in names {
        mounts.push((prefix, Resource::Application(Application::load(&name)?)));
    }
    if demo {
        mounts.push(("/".to_owned(), Resource::Application(Application::demo()?)));
    }
    tracing::info!(threads = config.threads, "starting");
    Site::new(mounts, config).map_err(|err| ConfigError::Option(err.to_string()))
}

/// In a worker with `--max-requests N`: once it has answered N (plus its jitter) requests,
/// asks the supervisor for a replacement. Checked every 100 ms, from a thread of its own.
fn watch_max_requests(args: &WebArgs, served: std::sync::Arc<std::sync::atomic::AtomicU64>) {
    let Some(limit) = args.max_requests.filter(|&n| n > 0) else {
        return;
    };
    let jitter = args.max_requests_jitter.unwrap_or(0);
    let extra = if jitter == 0 {
        0
    } else {
        use std::hash::{BuildHasher, Hasher};
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
            % (jitter + 1)
    };
    let share = limit.saturating_add(extra);
    let watching = std::thread::Builder::new()
        .name("torsion-max-requests".into())
        .spawn(move || {
            while served.load(std::sync::atomic::Ordering::Relaxed) < share {
                std::thread::sleep(Duration::from_millis(100));
            }
            tracing::info!("served {share} requests (--max-requests): asking for a replacement");
            crate::ready::tell_due();
        });
    if let Err(err) = watching {
        tracing::warn!("cannot watch --max-requests: {err}");
    }
}

/// A prefix as the site compares them: without trailing slashes, `/` for the root.
fn same_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// The static files' options from the flags.
pub(crate) fn files_options(args: &WebArgs) -> Result<FilesOptions, ConfigError> {
    let mut options = FilesOptions::default();
    if !args.index.is_empty() {
        options.index = args.index.clone();
    }
    options.listing = args.directory_listing;
    options.dotfiles = args.dotfiles;
    options.max_age = args.max_age.map(Duration::from_secs);
    options.precompressed = !args.no_precompressed;
    options.ignore_ext = args.ignore_ext.clone();
    if args.allow_ignore_ext {
        options.ignore_ext.push("*".to_owned());
    }
    for value in &args.mime_type {
        let (extension, content_type) = match value.split_once('=') {
            Some((extension, content_type)) => (extension.trim_start_matches('.'), content_type),
            None => ("", value.as_str()),
        };
        if http::HeaderValue::from_str(content_type).is_err() || !content_type.contains('/') {
            return Err(format!(
                "--mime-type {value:?}: {content_type:?} is not a content type such as text/plain"
            )
            .into());
        }
        options
            .mime_types
            .insert(extension.to_ascii_lowercase(), content_type.to_owned());
    }
    Ok(options)
}

/// Reopens the access log on every SIGUSR1, for log rotation (nginx's and Apache's signal
/// for it).
fn reopen_on_sigusr1(log: torsion_wsgi::AccessLog) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut usr1 = signal(SignalKind::user_defined1())?;
    tokio::spawn(async move {
        while usr1.recv().await.is_some() {
            log.reopen();
        }
    });
    Ok(())
}

/// Resolves on the first SIGINT or SIGTERM.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        tracing::info!("{name} received: stopping");
    })
}
