//! `torsion._torsion`, the extension module under the `torsion` Python package: the
//! command line of the binary, a server started from Python objects, and the descriptor
//! parser, for the package's Python API (`torsion/__init__.py`).
//!
//! The module joins the interpreter that imported it: the server's Python threads attach
//! to it, and its applications see that interpreter's `sys.prefix` and packages. Signals
//! stay with Python: where the server runs on the main thread (`main`,
//! `Running.serve_forever`), Python handlers for SIGINT, SIGTERM and SIGUSR1 are installed
//! for the duration and the previous ones put back afterwards; elsewhere the caller stops
//! the server.

use std::ffi::OsString;
use std::sync::Arc;
use std::time::Duration;

use clap::CommandFactory;
use clap::Parser;
use pyo3::exceptions::{PyImportError, PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyCFunction, PyDict, PyList, PyString, PyTuple};
use torsion_endpoints::{Address, Endpoint};
use torsion_wsgi::{Application, Protocols, Timer};

use crate::args::{Cli, Command};
use crate::error::ConfigError;
use crate::supervisor;
use crate::web::{Mounted, Plan, Running, Signals};

pyo3::create_exception!(
    torsion,
    OptionError,
    PyValueError,
    "An option's value is not valid: the message is the command line's (`error: ...`, exit status 2)."
);
pyo3::create_exception!(
    torsion,
    DescriptorError,
    PyValueError,
    "An endpoint descriptor does not parse; the message names the descriptor, the column or argument at fault, and what is accepted."
);
pyo3::create_exception!(
    torsion,
    ApplicationError,
    PyImportError,
    "A WSGI application cannot be imported, or is not callable."
);
pyo3::create_exception!(
    torsion,
    ListenError,
    PyOSError,
    "A listener cannot be opened: the address is in use, a certificate directory is unusable, or systemd passed no socket."
);

impl From<ConfigError> for PyErr {
    fn from(err: ConfigError) -> PyErr {
        let message = err.to_string();
        match err {
            ConfigError::Option(_) => OptionError::new_err(message),
            ConfigError::Descriptor(_) => DescriptorError::new_err(message),
            ConfigError::Application(_) => ApplicationError::new_err(message),
            ConfigError::Listen(_) => ListenError::new_err(message),
        }
    }
}

/// How often the thread waiting for a server returns to Python to run signal handlers.
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// The `torsion` command line: `main(["web", "--wsgi", "app:app"])`, the program name not
/// included. Returns the exit status, as the binary's: 0; 1 when `torsion certs` could not
/// obtain a certificate; 2 for a configuration error or bad usage (printed to standard
/// error as `error: ...`); `--help` and `--version` print and return 0.
///
/// On the main thread, SIGINT and SIGTERM stop the server after its requests in flight
/// (within `--shutdown-timeout`) and SIGUSR1 reopens the access log, as for the binary.
#[pyfunction]
fn main(py: Python<'_>, argv: Vec<OsString>) -> PyResult<i32> {
    let argv: Vec<OsString> = std::iter::once(OsString::from("torsion"))
        .chain(argv)
        .collect();
    let (cli, given) = match crate::args::parse(argv.iter().cloned()) {
        Ok(parsed) => parsed,
        Err(err) => {
            let _ = err.print();
            return Ok(err.exit_code());
        }
    };
    crate::error::init_logging();
    let outcome = match cli.command {
        Command::Web(args) => {
            // Workers run this interpreter, with its venv: `sys.executable -m torsion ...`.
            let executable: OsString = py.import("sys")?.getattr("executable")?.extract()?;
            let command = supervisor::WorkerCommand {
                program: executable,
                args: ["-m", "torsion"]
                    .into_iter()
                    .map(OsString::from)
                    .chain(argv.iter().skip(1).cloned())
                    .collect(),
            };
            match web_role(*args, &argv, &given, &command) {
                Ok(WebRole::Supervise { args, count }) => py
                    .detach(|| supervisor::supervise(&args, count, command))
                    .map(|code| {
                        if code == std::process::ExitCode::SUCCESS {
                            0
                        } else {
                            1
                        }
                    }),
                Ok(WebRole::Serve(plan)) => {
                    match py.detach(|| Running::start(*plan, Signals::Caller)) {
                        Ok(running) => {
                            let running = Arc::new(running);
                            wait_handling_signals(py, &running)?;
                            Ok(0)
                        }
                        Err(err) => Err(err),
                    }
                }
                Err(err) => Err(err),
            }
        }
        Command::Certs(args) => py.detach(|| crate::certs::certs(*args)).map(|code| {
            if code == std::process::ExitCode::SUCCESS {
                0
            } else {
                1
            }
        }),
    };
    match outcome {
        Ok(code) => Ok(code),
        Err(err) => {
            eprintln!("error: {err}");
            Ok(i32::from(crate::error::CONFIG_ERROR))
        }
    }
}

/// A server started from Python: [`start`] returns it serving.
#[pyclass(frozen, module = "torsion._torsion", name = "Running")]
struct PyRunning {
    running: Arc<Running>,
}

#[pymethods]
impl PyRunning {
    /// The bound addresses, one per listener in the order given: `(host, port)` for TCP
    /// (the port the system chose for port 0), the path (or `None`) for a unix socket.
    #[getter]
    fn addresses<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let items: Vec<Bound<'py, PyAny>> = self
            .running
            .addresses()
            .iter()
            .map(|address| address_object(py, address))
            .collect::<PyResult<_>>()?;
        PyList::new(py, items)
    }

    /// Starts a graceful stop and returns at once: no new connections; requests in flight
    /// get up to `--shutdown-timeout`.
    fn stop(&self) {
        self.running.stop();
    }

    /// Waits, without the GIL, up to `timeout` seconds (forever for `None`) for the server
    /// to have stopped; whether it has.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let running = self.running.clone();
        match timeout {
            None => {
                py.detach(|| running.join());
                Ok(true)
            }
            Some(seconds) => {
                let timeout = Duration::try_from_secs_f64(seconds).map_err(|_| {
                    PyValueError::new_err(format!(
                        "timeout {seconds} is not valid; expected a number of seconds, 0 or more"
                    ))
                })?;
                let stopped = py.detach(|| running.wait_timeout(timeout));
                if stopped {
                    py.detach(|| running.join());
                }
                Ok(stopped)
            }
        }
    }

    /// Serves until SIGINT or SIGTERM (handled by Python for the duration, on the main
    /// thread only) or [`stop`](Self::stop), then waits for the requests in flight.
    fn serve_forever(&self, py: Python<'_>) -> PyResult<()> {
        wait_handling_signals(py, &self.running)
    }

    /// Reopens the access log, as SIGUSR1 does (for log rotation).
    fn reopen_access_log(&self) {
        self.running.reopen_access_log();
    }
}

/// A Python value for a listener's address.
fn address_object<'py>(py: Python<'py>, address: &Address) -> PyResult<Bound<'py, PyAny>> {
    Ok(match address {
        Address::Tcp(socket) => (socket.ip().to_string(), socket.port())
            .into_pyobject(py)?
            .into_any(),
        Address::Unix(Some(path)) => path.clone().into_pyobject(py)?.into_any(),
        Address::Unix(None) => py.None().into_bound(py),
    })
}

/// Starts a server: `argv` are the options of `torsion web` (without the subcommand),
/// `mounts` are `(prefix, kind, value, options)` for the resources mounted from Python:
/// `("application", callable, name, None)`, `("name", "module:attribute", None, None)`,
/// or `("static", directory, None, [static options as flags])`; `timers` are
/// `(seconds, callable, name)` for repeating tasks; `listeners` are `(descriptor, ALPN IDs)`
/// for the `--listen` descriptors that speak only some HTTP versions. Returns it serving,
/// every listener open.
///
/// The server logs to standard error as the command line does (`RUST_LOG` sets the level),
/// never through Python's `logging`, whose handlers would need the GIL on the event loop.
///
/// Raises `OptionError`, `DescriptorError`, `ApplicationError` or `ListenError` with the
/// command line's message.
#[pyfunction]
fn start(
    py: Python<'_>,
    argv: Vec<OsString>,
    mounts: Vec<MountRow<'_>>,
    timers: Vec<TimerRow<'_>>,
    listeners: Vec<ListenerRow>,
) -> PyResult<PyRunning> {
    let args = web_args(argv)?;
    if args.reload {
        return Err(OptionError::new_err(
            "reload: a server in this process cannot replace itself; run torsion web --reload (or torsion.main([...]))",
        ));
    }
    if args.workers.is_some_and(|n| n > 1) {
        return Err(OptionError::new_err(
            "workers: worker processes are started by the command line (torsion web --workers N, or torsion.main([...])); a server in this process runs one",
        ));
    }
    crate::error::init_logging();
    let (mounts, timers) = from_python(mounts, timers)?;
    let plan = Plan {
        args,
        mounts,
        timers,
        protocols: protocols(listeners)?,
        python_setup: install_package,
    };
    let running = py.detach(|| Running::start(plan, Signals::Caller))?;
    Ok(PyRunning {
        running: Arc::new(running),
    })
}

/// A mounted resource as the package hands it over: `(prefix, kind, value, options)`.
type MountRow<'py> = (String, String, Bound<'py, PyAny>, Bound<'py, PyAny>);

/// A timer as the package hands it over: `(seconds, callable, name)`.
type TimerRow<'py> = (f64, Bound<'py, PyAny>, String);

/// A listener's protocols as the package hands them over: `(descriptor, ALPN IDs)`.
type ListenerRow = (String, Vec<String>);

/// The HTTP versions of the listeners the package names, or `OptionError` naming the
/// descriptor and what is accepted.
fn protocols(listeners: Vec<ListenerRow>) -> Result<Vec<(String, Protocols)>, ConfigError> {
    listeners
        .into_iter()
        .map(|(descriptor, ids)| {
            let speaks =
                Protocols::from_alpn_ids(ids.iter().map(String::as_str)).map_err(|err| {
                    ConfigError::Option(format!("listener {descriptor}: protocols: {err}"))
                })?;
            Ok((descriptor, speaks))
        })
        .collect()
}

/// Resources with their prefixes, and timers, as the server takes them.
type FromPython = (Vec<(String, Mounted)>, Vec<Timer>);

/// The resources and timers the package hands over, as the server takes them.
fn from_python(mounts: Vec<MountRow<'_>>, timers: Vec<TimerRow<'_>>) -> PyResult<FromPython> {
    let mut mounted = Vec::new();
    for (prefix, kind, value, options) in mounts {
        let resource = match kind.as_str() {
            "application" => {
                let name: String = options.extract()?;
                Mounted::Application(Application::new(value, &name).map_err(ConfigError::from)?)
            }
            "name" => {
                let name: String = value.extract()?;
                // Imported once the interpreter's sys.path has --pythonpath on it.
                Mounted::Name(name)
            }
            "static" => {
                let directory: std::path::PathBuf = value.extract()?;
                let flags: Vec<OsString> = options.extract()?;
                let static_args = web_args(flags)?;
                Mounted::Files(directory, crate::web::files_options(&static_args)?)
            }
            other => {
                return Err(PyValueError::new_err(format!(
                    "mount kind {other:?} is not one of application, name, static"
                )));
            }
        };
        mounted.push((prefix, resource));
    }
    let timers = timers
        .into_iter()
        .map(|(seconds, task, name)| {
            let interval = Duration::try_from_secs_f64(seconds)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    OptionError::new_err(format!(
                        "timer {name}: {seconds} is not valid; expected a number of seconds above 0"
                    ))
                })?;
            Ok(Timer::new(interval, task, &name).map_err(ConfigError::from)?)
        })
        .collect::<PyResult<Vec<_>>>()?;
    Ok((mounted, timers))
}

/// The source of the `torsion` package, which the binary installs into the interpreter it
/// embeds (the wheel's interpreter imports it from site-packages).
const PACKAGE_SOURCE: &str = include_str!("../python/torsion/__init__.py");

/// Makes `import torsion` work in an interpreter the binary started: the extension module
/// from this binary as `torsion._torsion`, and the package from its embedded source, so a
/// `--config` file's `import torsion` gets the code of the server that runs it (not a wheel
/// of another version that the venv may hold). Does nothing where `torsion._torsion` is
/// loaded already (the wheel).
fn install_package(py: Python<'_>) -> PyResult<()> {
    let modules = py.import("sys")?.getattr("modules")?;
    if modules.contains("torsion._torsion")? {
        return Ok(());
    }
    let extension = pyo3::wrap_pymodule!(_torsion)(py);
    modules.set_item("torsion._torsion", extension.bind(py))?;
    let package = PyModule::new(py, "torsion")?;
    package.setattr("__path__", PyList::empty(py))?;
    package.setattr("__package__", "torsion")?;
    package.setattr("__file__", "<torsion binary>/torsion/__init__.py")?;
    package.setattr("_torsion", extension.bind(py))?;
    modules.set_item("torsion", &package)?;
    let source = std::ffi::CString::new(PACKAGE_SOURCE)
        .map_err(|_| PyValueError::new_err("the torsion package's source has a NUL byte"))?;
    let outcome = py.run(&source, Some(&package.dict()), None);
    if outcome.is_err() {
        modules.del_item("torsion")?;
        modules.del_item("torsion._torsion")?;
    }
    outcome
}

/// What `torsion web` does in this process; see [`web_role`].
pub(crate) enum WebRole {
    /// Supervise `count` worker processes, with these options (a `--config` file's
    /// included).
    Supervise {
        /// The options.
        args: Box<crate::args::WebArgs>,
        /// How many workers.
        count: usize,
    },
    /// Serve this plan here: one process alone, or a worker.
    Serve(Box<Plan>),
}

/// Decides what `torsion web` (`args`, parsed from `argv`, with the options `given` on it)
/// does in this process; `command` starts a worker, or the supervisor.
///
/// A worker serves, and leaves the endpoints' background work (ACME) to its supervisor. A
/// process with `--workers` above 1, `--reload`, or running as process 1 supervises. With
/// `--config`, the file is read here first; if what it sets calls for a supervisor, this
/// process replaces itself with one (same PID), passing it the file's options, so the
/// supervisor runs no Python; its workers read the file again, each for itself.
///
/// # Errors
/// What [`web_plan`] returns, or [`supervisor::become_supervisor`]'s.
pub(crate) fn web_role(
    args: crate::args::WebArgs,
    argv: &[OsString],
    given: &[String],
    command: &supervisor::WorkerCommand,
) -> Result<WebRole, ConfigError> {
    if crate::ready::is_worker() {
        crate::ready::connect();
        // The supervisor runs the ACME managers; this worker serves what they write.
        torsion_endpoints::background_elsewhere();
        return Ok(WebRole::Serve(Box::new(web_plan(args, argv, given)?)));
    }
    let args = match supervisor::config_flags() {
        // The supervisor a process that read its --config file became.
        Some(flags) => reparse(argv, flags, args.config.as_deref())?,
        None if args.config.is_some() => {
            let (plan, flags) = plan_with_config(args, argv, given)?;
            if supervisor::supervised(&plan.args).is_none() {
                return Ok(WebRole::Serve(Box::new(plan)));
            }
            drop(plan);
            // What the file printed must not be lost with this process's buffers.
            Python::attach(|py| {
                let flush = c"import sys\nfor stream in (sys.stdout, sys.stderr):\n    stream and stream.flush()";
                if let Err(err) = py.run(flush, None, None) {
                    tracing::debug!("flushing Python's output: {err}");
                }
            });
            match supervisor::become_supervisor(command, &flags)? {}
        }
        None => args,
    };
    Ok(match supervisor::supervised(&args) {
        Some(count) => WebRole::Supervise {
            args: Box::new(args),
            count,
        },
        None => WebRole::Serve(Box::new(web_plan(args, argv, given)?)),
    })
}

/// `argv` with a `--config` file's `flags` after it, parsed.
///
/// # Errors
/// [`ConfigError::Option`] naming the file with clap's message.
fn reparse(
    argv: &[OsString],
    flags: Vec<OsString>,
    config: Option<&std::path::Path>,
) -> Result<crate::args::WebArgs, ConfigError> {
    let file = config.map_or_else(String::new, |path| path.display().to_string());
    let argv: Vec<OsString> = argv.iter().cloned().chain(flags).collect();
    let (cli, _) = crate::args::parse(argv)
        .map_err(|err| ConfigError::Option(format!("--config {file}: {}", clap_message(&err))))?;
    match cli.command {
        Command::Web(args) => Ok(*args),
        Command::Certs(_) => Err(ConfigError::Option(
            "--config is an option of torsion web".into(),
        )),
    }
}

/// What `torsion web` serves: its flags (`args`, parsed from `argv`, with the options
/// `given` on it), and with `--config`, what the file adds (see [`plan_with_config`]).
///
/// # Errors
/// What [`plan_with_config`] returns.
pub(crate) fn web_plan(
    args: crate::args::WebArgs,
    argv: &[OsString],
    given: &[String],
) -> Result<Plan, ConfigError> {
    if args.config.is_some() {
        return plan_with_config(args, argv, given).map(|(plan, _)| plan);
    }
    Ok(Plan {
        args,
        mounts: Vec::new(),
        timers: Vec::new(),
        protocols: Vec::new(),
        python_setup: install_package,
    })
}

/// `torsion web --config FILE`: runs the file (in the interpreter the binary embeds, or the
/// wheel's), then serves what it sets, with the options `given` on the command line
/// (`argv`) overriding the file's. Returns the plan, and the options the file set as flags.
///
/// # Errors
/// [`ConfigError::Option`] when the file cannot be read or raises, naming the file and the
/// exception; what the options it sets would raise as flags.
fn plan_with_config(
    args: crate::args::WebArgs,
    argv: &[OsString],
    given: &[String],
) -> Result<(Plan, Vec<OsString>), ConfigError> {
    let Some(path) = args.config.clone() else {
        return Err(ConfigError::Option("--config FILE was not given".into()));
    };
    torsion_wsgi::initialize(&torsion_wsgi::PythonOptions::new(args.pythonpath.clone()))?;
    Python::attach(|py| {
        let failed = |err: PyErr| {
            ConfigError::Option(format!(
                "--config {}: {}",
                path.display(),
                torsion_wsgi::describe(py, &err)
            ))
        };
        install_package(py).map_err(failed)?;
        let loaded = py
            .import("torsion")
            .and_then(|torsion| {
                torsion.call_method1("_load_config", (path.clone(), given.to_vec()))
            })
            .map_err(failed)?;
        let (flags, mounts, timers, listeners): Loaded<'_> = loaded.extract().map_err(failed)?;
        let (mounts, timers) =
            from_python(mounts, timers).map_err(|err| to_config_error(py, err))?;
        let args = reparse(argv, flags.clone(), Some(&path))?;
        let plan = Plan {
            args,
            mounts,
            timers,
            protocols: protocols(listeners)?,
            python_setup: install_package,
        };
        Ok((plan, flags))
    })
}

/// What `torsion._load_config` returns: flags, mounts, timers and listeners' protocols.
type Loaded<'py> = (
    Vec<OsString>,
    Vec<MountRow<'py>>,
    Vec<TimerRow<'py>>,
    Vec<ListenerRow>,
);

/// The configuration error a Python exception from the package stands for: ours keep their
/// kind, any other is an option error.
fn to_config_error(py: Python<'_>, err: PyErr) -> ConfigError {
    let message = err.value(py).to_string();
    if err.is_instance_of::<DescriptorError>(py) {
        ConfigError::Descriptor(message)
    } else if err.is_instance_of::<ApplicationError>(py) {
        ConfigError::Application(message)
    } else if err.is_instance_of::<ListenError>(py) {
        ConfigError::Listen(message)
    } else {
        ConfigError::Option(torsion_wsgi::describe(py, &err))
    }
}

/// `torsion web`'s options from flags, or `OptionError` with clap's message.
fn web_args(flags: Vec<OsString>) -> PyResult<crate::args::WebArgs> {
    let argv = [OsString::from("torsion"), OsString::from("web")]
        .into_iter()
        .chain(flags);
    match Cli::try_parse_from(argv) {
        Ok(Cli {
            command: Command::Web(args),
        }) => Ok(*args),
        Ok(_) => Err(OptionError::new_err("not options of torsion web")),
        Err(err) => Err(OptionError::new_err(clap_message(&err))),
    }
}

/// clap's message without its `error: ` prefix and its closing advice to try `--help`.
fn clap_message(err: &clap::Error) -> String {
    let text = err.render().to_string();
    let text = text.trim();
    let text = text.strip_prefix("error: ").unwrap_or(text);
    let text = match text.find("\n\nFor more information") {
        Some(end) => &text[..end],
        None => text,
    };
    text.trim_end().to_owned()
}

/// Waits for `running` to stop, returning to Python every [`SIGNAL_POLL`] so that signal
/// handlers run. On the main thread, SIGINT and SIGTERM stop it and SIGUSR1 reopens its
/// access log for the duration; the previous handlers are restored afterwards.
fn wait_handling_signals(py: Python<'_>, running: &Arc<Running>) -> PyResult<()> {
    let signal = py.import("signal")?;
    let threading = py.import("threading")?;
    let main_thread = threading
        .call_method0("current_thread")?
        .is(&threading.call_method0("main_thread")?);
    let mut previous = Vec::new();
    if main_thread {
        for (name, stops) in [("SIGINT", true), ("SIGTERM", true), ("SIGUSR1", false)] {
            let number = signal.getattr(name)?;
            let target = running.clone();
            let handler = PyCFunction::new_closure(
                py,
                None,
                None,
                move |_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>| {
                    if stops {
                        tracing::info!("{name} received: stopping");
                        target.stop();
                    } else {
                        target.reopen_access_log();
                    }
                },
            )?;
            let old = signal.call_method1("signal", (&number, handler))?;
            previous.push((number, old));
        }
    }
    let outcome = loop {
        let stopped = py.detach(|| running.wait_timeout(SIGNAL_POLL));
        if stopped {
            break Ok(());
        }
        if let Err(err) = py.check_signals() {
            // Another handler raised (the application's own): stop, then raise it.
            running.stop();
            py.detach(|| running.join());
            break Err(err);
        }
    };
    py.detach(|| running.join());
    for (number, old) in previous {
        let old = if old.is_none() {
            signal.getattr("SIG_DFL")?
        } else {
            old
        };
        signal.call_method1("signal", (number, old))?;
    }
    outcome
}

/// One option of `torsion web`: keyword, flag, kind, default, help, value name.
type OptionRow = (
    String,
    String,
    &'static str,
    Option<String>,
    String,
    Option<String>,
);

/// The options of `torsion web` for the Python API's keywords: a list of
/// `(keyword, flag, kind, default, help, value_name)`, where `kind` is `"switch"` (a flag
/// without a value), `"value"` or `"list"` (repeatable), `default` is the text clap fills
/// in (or `None`), and `value_name` the placeholder of the help (`SECONDS`). Hidden options
/// (twist web's, refused) and `--config` are left out.
/// The live parameters as they are now: a read-only mapping (`types.MappingProxyType`),
/// the object `environ["torsion.params"]` holds for a request starting now; the package's
/// `torsion.params` reads it.
#[pyfunction]
fn params(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    torsion_wsgi::params::params().python(py)
}

#[pyfunction]
fn options() -> Vec<OptionRow> {
    let command = Cli::command();
    let Some(web) = command.find_subcommand("web") else {
        return Vec::new();
    };
    web.get_arguments()
        // --config is a file of these options; from Python, pass them directly.
        .filter(|arg| !arg.is_hide_set() && arg.get_id() != "config")
        .filter_map(|arg| {
            let long = arg.get_long()?;
            let kind = match arg.get_action() {
                clap::ArgAction::SetTrue => "switch",
                clap::ArgAction::Append => "list",
                _ => "value",
            };
            let default = arg
                .get_default_values()
                .first()
                .map(|v| v.to_string_lossy().into_owned());
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            let value_name = arg
                .get_value_names()
                .and_then(|names| names.first())
                .map(|name| name.to_string());
            Some((
                long.replace('-', "_"),
                format!("--{long}"),
                kind,
                default,
                help,
                value_name,
            ))
        })
        .collect()
}

/// Parses an endpoint descriptor as `--listen` does: `(kind, args, kwargs, canonical)`,
/// where `args` are the positional arguments, `kwargs` a dict of the keyword arguments
/// (both unescaped), and `canonical` the descriptor Torsion would print for it, which
/// parses back to the same endpoint. Raises `DescriptorError` with the CLI's message.
#[pyfunction]
fn parse_descriptor<'py>(
    py: Python<'py>,
    text: &str,
) -> PyResult<(String, Vec<String>, Bound<'py, PyDict>, String)> {
    let endpoint = Endpoint::parse(text).map_err(ConfigError::from)?;
    let descriptor = endpoint.descriptor();
    let kwargs = PyDict::new(py);
    for (key, value) in descriptor.kwargs() {
        kwargs.set_item(PyString::new(py, key), PyString::new(py, value))?;
    }
    Ok((
        descriptor.kind().to_owned(),
        descriptor.args().to_vec(),
        kwargs,
        endpoint.to_string(),
    ))
}

/// The extension module `torsion._torsion`.
#[pymodule]
fn _torsion(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    module.add("OptionError", py.get_type::<OptionError>())?;
    module.add("DescriptorError", py.get_type::<DescriptorError>())?;
    module.add("ApplicationError", py.get_type::<ApplicationError>())?;
    module.add("ListenError", py.get_type::<ListenError>())?;
    module.add_class::<PyRunning>()?;
    module.add_function(wrap_pyfunction!(main, module)?)?;
    module.add_function(wrap_pyfunction!(start, module)?)?;
    module.add_function(wrap_pyfunction!(options, module)?)?;
    module.add_function(wrap_pyfunction!(params, module)?)?;
    module.add_function(wrap_pyfunction!(parse_descriptor, module)?)?;
    Ok(())
}
