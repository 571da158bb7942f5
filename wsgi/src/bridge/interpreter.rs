//! Starting the embedded CPython (or joining the one already running), and the errors of
//! everything that happens before the first request.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use pyo3::prelude::*;
use pyo3::types::{PyList, PyString};
use pyo3::{ffi, intern};

/// What can go wrong before the first request: each message is one line that names what
/// failed and why, for the CLI to print and exit with status 2.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// CPython refused to start.
    #[error("cannot start Python: {0}")]
    Interpreter(String),
    /// The application name is not of a form Torsion reads.
    #[error(
        "--wsgi {name:?} is not an application name: {reason}; write package.module.attribute (Twisted), package.module:attribute or package.module:factory() (gunicorn)"
    )]
    Name {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Importing the module, or looking up or calling the object, raised.
    #[error("--wsgi {name}: {what} failed: {error}")]
    Python {
        /// The name as given.
        name: String,
        /// What was being done, e.g. "importing module 'myapp'".
        what: String,
        /// The Python exception, one line, with the file and line where it was raised.
        error: String,
    },
    /// The object found is not callable.
    #[error(
        "--wsgi {name}: {found} is not callable; a WSGI application is called as app(environ, start_response)"
    )]
    NotCallable {
        /// The name as given.
        name: String,
        /// The object's type and repr.
        found: String,
    },
    /// A repeating task that cannot run: not callable, or an interval of zero.
    #[error("timer {name}: {reason}")]
    Timer {
        /// The timer's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Where Python looks for modules, besides its defaults and `PYTHONPATH`.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct PythonOptions {
    /// Directories put first on `sys.path`, in order (`--pythonpath`).
    pub pythonpath: Vec<PathBuf>,
}

impl PythonOptions {
    /// Options with the given `--pythonpath` directories.
    pub fn new(pythonpath: Vec<PathBuf>) -> PythonOptions {
        PythonOptions { pythonpath }
    }
}

/// The interpreter this crate was built against (`sys.executable` of the build).
const BUILD_PYTHON: Option<&str> = option_env!("TORSION_BUILD_PYTHON");

/// Starts CPython once per process.
///
/// - No Python signal handlers are installed (`PyConfig.install_signal_handlers = 0`), so
///   SIGINT and SIGTERM stay with the server. Register the server's own handlers before
///   this call: CPython's `signal` module takes SIGINT over only while it is still at its
///   default.
/// - An active virtualenv (`VIRTUAL_ENV`) is honoured as that venv's `python` would honour
///   it: the program name is `$VIRTUAL_ENV/bin/python`, so CPython reads the venv's
///   `pyvenv.cfg`, sets `sys.prefix` to the venv and puts its site-packages on `sys.path`.
///   Otherwise the program name is the interpreter the build used.
/// - `PYTHONPATH` works as usual; then `options.pythonpath` and the current directory are
///   put first on `sys.path`, so `--wsgi myapp:app` finds `./myapp.py` as `python -m` would.
///
/// # Errors
/// [`LoadError::Interpreter`] when CPython reports a configuration error.
pub fn initialize(options: &PythonOptions) -> Result<(), LoadError> {
    if pyo3_is_initialized() {
        return Python::attach(|py| extend_sys_path(py, options));
    }
    let program = program_name();
    init_from_config(program.as_deref())?;
    Python::attach(|py| extend_sys_path(py, options))
}

fn pyo3_is_initialized() -> bool {
    // SAFETY: Py_IsInitialized may be called at any time, before or after initialisation.
    #[allow(unsafe_code)]
    unsafe {
        ffi::Py_IsInitialized() != 0
    }
}

fn program_name() -> Option<String> {
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV").filter(|v| !v.is_empty()) {
        let python = Path::new(&venv).join("bin").join("python");
        if python.exists() {
            warn_on_version_mismatch(Path::new(&venv));
            return Some(python.to_string_lossy().into_owned());
        }
        tracing::warn!(
            "VIRTUAL_ENV is {} but it has no bin/python; ignoring it",
            Path::new(&venv).display()
        );
    }
    BUILD_PYTHON
        .filter(|p| Path::new(p).exists())
        .map(str::to_owned)
}

/// A venv made by another Python version has its packages under another `pythonX.Y`
/// directory, which this interpreter will not look in; say so instead of failing later.
fn warn_on_version_mismatch(venv: &Path) {
    let Ok(cfg) = std::fs::read_to_string(venv.join("pyvenv.cfg")) else {
        return;
    };
    let ours = option_env!("TORSION_BUILD_PYTHON_VERSION").unwrap_or("");
    for line in cfg.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if key == "version" || key == "version_info" {
            let theirs = value.trim();
            if !ours.is_empty() && !theirs.starts_with(&format!("{ours}.")) && theirs != ours {
                tracing::warn!(
                    "the virtualenv {} was made by Python {theirs}, but Torsion embeds Python {ours}: its packages will not be found",
                    venv.display()
                );
            }
            return;
        }
    }
}

#[allow(unsafe_code)]
fn init_from_config(program: Option<&str>) -> Result<(), LoadError> {
    let program = program.map(CString::new).transpose().map_err(|_| {
        LoadError::Interpreter("the Python program path contains a NUL byte".into())
    })?;
    // SAFETY: the PyConfig API is used as documented ("Python Initialization
    // Configuration"): initialised by PyConfig_InitPythonConfig before any field is read,
    // strings set through PyConfig_SetBytesString, cleared on every path, and
    // Py_InitializeFromConfig called once (Py_IsInitialized was 0). The zeroed value is
    // only storage for PyConfig_InitPythonConfig to fill.
    unsafe {
        let mut config: ffi::PyConfig = std::mem::zeroed();
        ffi::PyConfig_InitPythonConfig(&mut config);
        config.install_signal_handlers = 0;
        // Our command line is not Python's.
        config.parse_argv = 0;
        if let Some(program) = &program {
            let status = ffi::PyConfig_SetBytesString(
                &mut config,
                &mut config.program_name,
                program.as_ptr(),
            );
            if let Err(message) = status_error(status) {
                ffi::PyConfig_Clear(&mut config);
                return Err(LoadError::Interpreter(message));
            }
        }
        let status = ffi::Py_InitializeFromConfig(&config);
        ffi::PyConfig_Clear(&mut config);
        status_error(status).map_err(LoadError::Interpreter)?;
        // Initialisation leaves this thread holding the GIL; release it so that any thread
        // can attach.
        ffi::PyEval_SaveThread();
    }
    Ok(())
}

#[allow(unsafe_code)]
fn status_error(status: ffi::PyStatus) -> Result<(), String> {
    // SAFETY: PyStatus_Exception only reads the status; err_msg is either null or a static
    // C string owned by CPython.
    unsafe {
        if ffi::PyStatus_Exception(status) == 0 {
            return Ok(());
        }
        if status.err_msg.is_null() {
            return Err(format!(
                "initialisation failed (exit code {})",
                status.exitcode
            ));
        }
        Err(std::ffi::CStr::from_ptr(status.err_msg)
            .to_string_lossy()
            .into_owned())
    }
}

fn extend_sys_path(py: Python<'_>, options: &PythonOptions) -> Result<(), LoadError> {
    let inner = || -> PyResult<()> {
        let path = py
            .import(intern!(py, "sys"))?
            .getattr(intern!(py, "path"))?;
        let path = path.cast_into::<PyList>()?;
        let mut front: Vec<String> = options
            .pythonpath
            .iter()
            .map(|p| {
                std::path::absolute(p)
                    .unwrap_or_else(|_| p.clone())
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        if let Ok(cwd) = std::env::current_dir() {
            front.push(cwd.to_string_lossy().into_owned());
        }
        for dir in front.iter().rev() {
            let dir = PyString::new(py, dir);
            if !path.contains(&dir)? {
                path.insert(0, dir)?;
            }
        }
        Ok(())
    };
    inner().map_err(|err| LoadError::Interpreter(format!("cannot set sys.path: {err}")))
}

/// One line describing a Python exception, for logs and error messages:
/// `Type: message (file, line N)`, the file and line being where it was raised (the
/// innermost frame of its traceback), or `Type: message` without a traceback.
pub fn describe(py: Python<'_>, err: &PyErr) -> String {
    let mut line = err.to_string();
    if let Some(mut tb) = err.traceback(py) {
        while let Ok(Some(next)) = tb
            .getattr(intern!(py, "tb_next"))
            .and_then(|n| Ok(n.extract::<Option<Bound<'_, pyo3::types::PyTraceback>>>()?))
        {
            tb = next;
        }
        let frame = || -> PyResult<(String, u32)> {
            let lineno: u32 = tb.getattr(intern!(py, "tb_lineno"))?.extract()?;
            let file: String = tb
                .getattr(intern!(py, "tb_frame"))?
                .getattr(intern!(py, "f_code"))?
                .getattr(intern!(py, "co_filename"))?
                .extract()?;
            Ok((file, lineno))
        };
        if let Ok((file, lineno)) = frame() {
            line.push_str(&format!(" ({file}, line {lineno})"));
        }
    }
    line
}
