//! Live parameters: one JSON object per process that the control channel changes while the
//! server runs (an A/B experiment's settings, a feature switch), which applications read as
//! `environ["torsion.params"]` and code outside a request (a timer) reads through the
//! `torsion` package.
//!
//! A change swaps in a new snapshot: a request sees the snapshot current when it started,
//! for its whole length. With a file ([`Params::load_file`]), every change is written to it
//! before it takes effect (temporary file, fsync, rename, fsync of the directory), so a
//! restart or a crash loses none and a reader never sees half a file.

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};

use arc_swap::ArcSwap;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use serde_json::{Map, Value};

/// The longest parameter name accepted, in bytes.
pub const MAX_NAME_LENGTH: usize = 256;

/// Why a parameter change or the parameters file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ParamsError {
    /// The file cannot be read.
    #[error("--params-file {file}: cannot read it: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file is not JSON, or not a JSON object.
    #[error(
        "--params-file {file}, line {line}, column {column}: {message}; expected a JSON object such as {{\"banner\": \"blue\", \"ratio\": 0.25}}"
    )]
    Malformed {
        /// The file.
        file: PathBuf,
        /// Where the fault is, from 1.
        line: usize,
        /// Where the fault is, from 1.
        column: usize,
        /// What is wrong there.
        message: String,
    },
    /// A change could not be written to the file; nothing changed.
    #[error("cannot write the parameters to {file}: {source}; nothing changed")]
    Write {
        /// The file.
        file: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A name that cannot be a parameter's.
    #[error("{name:?} is not a parameter name; expected 1 to 256 bytes without '/'")]
    Name {
        /// The name as given.
        name: String,
    },
}

/// One version of the parameters.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Counts the changes since start: 0 for the initial parameters.
    pub version: u64,
    /// The parameters.
    pub values: Map<String, Value>,
}

/// One change, as the log and the control channel report it.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The parameter.
    pub name: String,
    /// Its value before (`None`: absent).
    pub old: Option<Value>,
    /// Its value after (`None`: removed).
    pub new: Option<Value>,
}

/// The parameters of this process; see the module documentation. [`params`] is the one
/// every part of the server uses.
#[derive(Debug)]
pub struct Params {
    current: ArcSwap<Snapshot>,
    /// The current version, for [`Params::watch`].
    versions: tokio::sync::watch::Sender<u64>,
    /// Where changes are written, once [`Params::load_file`] named it; held while a change
    /// is made, so that changes are written and published in order.
    file: Mutex<Option<PathBuf>>,
    /// The Python form of the current snapshot, made by the first request that needs it.
    python: Mutex<Option<(u64, Py<PyAny>)>>,
}

static PARAMS: LazyLock<Params> = LazyLock::new(|| Params {
    current: ArcSwap::from_pointee(Snapshot::default()),
    versions: tokio::sync::watch::Sender::new(0),
    file: Mutex::new(None),
    python: Mutex::new(None),
});

/// This process's parameters.
pub fn params() -> &'static Params {
    &PARAMS
}

impl Params {
    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Loads the parameters from `path` (a JSON object) and writes every later change
    /// there. A missing file is an empty object, created at the first change.
    ///
    /// # Errors
    /// [`ParamsError::Read`] when the file exists but cannot be read;
    /// [`ParamsError::Malformed`] naming the line and column of a JSON error, or the start
    /// when the text is JSON but not an object.
    pub fn load_file(&self, path: &Path) -> Result<(), ParamsError> {
        let values = match std::fs::read(path) {
            Ok(bytes) => {
                parse_object(&bytes).map_err(|(line, column, message)| ParamsError::Malformed {
                    file: path.to_owned(),
                    line,
                    column,
                    message,
                })?
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Map::new(),
            Err(source) => {
                return Err(ParamsError::Read {
                    file: path.to_owned(),
                    source,
                });
            }
        };
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        *file = Some(path.to_owned());
        tracing::info!(file = %path.display(), count = values.len(), "parameters loaded");
        self.publish(values);
        Ok(())
    }

    /// Sets `name` to `value`; returns the change.
    ///
    /// # Errors
    /// [`ParamsError::Name`], or [`ParamsError::Write`] when the file cannot be written
    /// (then nothing changed).
    pub fn set(&self, name: &str, value: Value) -> Result<Change, ParamsError> {
        check_name(name)?;
        let mut changes = self.change(|values| {
            let old = values.insert(name.to_owned(), value.clone());
            vec![Change {
                name: name.to_owned(),
                old,
                new: Some(value),
            }]
        })?;
        Ok(changes.remove(0))
    }

    /// Removes `name`; returns the change (`old` is `None` when it was absent, and then
    /// nothing is written).
    ///
    /// # Errors
    /// [`ParamsError::Write`] when the file cannot be written (then nothing changed).
    pub fn remove(&self, name: &str) -> Result<Change, ParamsError> {
        let mut changes = self.change(|values| {
            let old = values.remove(name);
            vec![Change {
                name: name.to_owned(),
                old,
                new: None,
            }]
        })?;
        Ok(changes.remove(0))
    }

    /// Applies a JSON merge patch (RFC 7396) of the top level: each member of `patch` sets
    /// that parameter, and `null` removes it. Returns the changes, by name.
    ///
    /// # Errors
    /// [`ParamsError::Name`] for a member that cannot be a name (nothing changed), or
    /// [`ParamsError::Write`] (nothing changed).
    pub fn merge(&self, patch: Map<String, Value>) -> Result<Vec<Change>, ParamsError> {
        for name in patch.keys() {
            check_name(name)?;
        }
        self.change(|values| {
            patch
                .into_iter()
                .map(|(name, value)| {
                    let (old, new) = if value.is_null() {
                        (values.remove(&name), None)
                    } else {
                        (values.insert(name.clone(), value.clone()), Some(value))
                    };
                    Change { name, old, new }
                })
                .collect()
        })
    }

    /// Replaces every parameter with `values`, without writing the file: for a worker
    /// process told the parameters by its supervisor, which keeps the file.
    pub fn replace(&self, values: Map<String, Value>) {
        let _file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        self.publish(values);
    }

    /// Makes a change with `edit` on a copy of the values: writes the result to the file
    /// (if any), then publishes it, and logs each change that changed something.
    fn change(
        &self,
        edit: impl FnOnce(&mut Map<String, Value>) -> Vec<Change>,
    ) -> Result<Vec<Change>, ParamsError> {
        let file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let mut values = self.current.load().values.clone();
        let changes = edit(&mut values);
        let effective: Vec<&Change> = changes.iter().filter(|c| c.old != c.new).collect();
        if effective.is_empty() {
            return Ok(changes);
        }
        if let Some(path) = file.as_deref() {
            write_atomically(path, &values).map_err(|source| ParamsError::Write {
                file: path.to_owned(),
                source,
            })?;
        }
        for change in effective {
            let shown = |value: &Option<Value>| {
                value
                    .as_ref()
                    .map_or_else(|| "(absent)".to_owned(), Value::to_string)
            };
            tracing::info!(
                name = change.name,
                old = %shown(&change.old),
                new = %shown(&change.new),
                "parameter changed"
            );
        }
        self.publish(values);
        Ok(changes)
    }

    fn publish(&self, values: Map<String, Value>) {
        let version = self.current.load().version + 1;
        self.current.store(Arc::new(Snapshot { version, values }));
        self.versions.send_replace(version);
    }

    /// A receiver that sees each new version as it is published (a supervisor passes the
    /// parameters on to its workers when it changes).
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.versions.subscribe()
    }

    /// The current snapshot as Python sees it: a read-only mapping
    /// (`types.MappingProxyType`) whose objects are read-only too (JSON objects as
    /// mappings, arrays as tuples), the same object for every request until the next
    /// change.
    ///
    /// # Errors
    /// A Python error while building it (out of memory).
    pub fn python<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let snapshot = self.current.load();
        let mut cached = self.python.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((version, object)) = cached.as_ref()
            && *version == snapshot.version
        {
            return Ok(object.bind(py).clone());
        }
        let object = frozen_object(py, &snapshot.values)?;
        *cached = Some((snapshot.version, object.clone().unbind()));
        Ok(object)
    }
}

/// Whether `name` can be a parameter's name.
fn check_name(name: &str) -> Result<(), ParamsError> {
    if name.is_empty() || name.len() > MAX_NAME_LENGTH || name.contains('/') {
        return Err(ParamsError::Name {
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// Parses `bytes` as a JSON object; a fault as (line, column, message).
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, (usize, usize, String)> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(values)) => Ok(values),
        Ok(other) => Err((1, 1, format!("the text is a JSON {}", kind(&other)))),
        Err(err) => {
            let message = err.to_string();
            // serde_json appends " at line L column C"; the position is given apart.
            let message = message
                .split(" at line ")
                .next()
                .unwrap_or(&message)
                .to_owned();
            Err((err.line(), err.column(), message))
        }
    }
}

/// What kind of JSON value `value` is, for messages.
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Writes `values` to `path` through a temporary file in the same directory: write, fsync,
/// rename, fsync the directory.
fn write_atomically(path: &Path, values: &Map<String, Value>) -> std::io::Result<()> {
    use std::io::Write;
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut text = serde_json::to_vec_pretty(values).map_err(std::io::Error::other)?;
    text.push(b'\n');
    let mut temporary = tempfile::Builder::new()
        .prefix(".params.")
        .suffix(".tmp")
        .tempfile_in(directory)?;
    temporary.write_all(&text)?;
    temporary.as_file().sync_all()?;
    temporary.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(directory)?.sync_all()
}

/// `values` as a read-only mapping.
fn frozen_object<'py>(py: Python<'py>, values: &Map<String, Value>) -> PyResult<Bound<'py, PyAny>> {
    let dict = PyDict::new(py);
    for (name, value) in values {
        dict.set_item(name, frozen(py, value)?)?;
    }
    py.import("types")?
        .getattr("MappingProxyType")?
        .call1((dict,))
}

/// A JSON value as a read-only Python object.
fn frozen<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    use pyo3::IntoPyObjectExt;
    match value {
        Value::Null => Ok(py.None().into_bound(py)),
        Value::Bool(b) => b.into_bound_py_any(py),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.into_bound_py_any(py),
            (None, Some(u)) => u.into_bound_py_any(py),
            _ => n.as_f64().unwrap_or(f64::NAN).into_bound_py_any(py),
        },
        Value::String(s) => s.into_bound_py_any(py),
        Value::Array(items) => {
            let items = items
                .iter()
                .map(|item| frozen(py, item))
                .collect::<PyResult<Vec<_>>>()?;
            Ok(PyTuple::new(py, items)?.into_any())
        }
        Value::Object(values) => frozen_object(py, values),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fresh(file: Option<&Path>) -> Params {
        let params = Params {
            current: ArcSwap::from_pointee(Snapshot::default()),
            versions: tokio::sync::watch::Sender::new(0),
            file: Mutex::new(None),
            python: Mutex::new(None),
        };
        if let Some(file) = file {
            params.load_file(file).unwrap();
        }
        params
    }

    #[test]
    fn changes_are_written_before_they_are_seen_and_survive_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("params.json");
        let params = fresh(Some(&file));
        assert!(params.snapshot().values.is_empty());
        let change = params.set("banner", json!("blue")).unwrap();
        assert_eq!(change.old, None);
        params.set("ratio", json!(0.25)).unwrap();
        let change = params.set("banner", json!("green")).unwrap();
        assert_eq!(change.old, Some(json!("blue")));
        let changes = params
            .merge(
                json!({"ratio": null, "flags": [1, 2]})
                    .as_object()
                    .unwrap()
                    .clone(),
            )
            .unwrap();
        let ratio = changes.iter().find(|c| c.name == "ratio").unwrap();
        assert_eq!((&ratio.old, &ratio.new), (&Some(json!(0.25)), &None));
        assert_eq!(params.remove("absent").unwrap().old, None);
        let expected = json!({"banner": "green", "flags": [1, 2]});
        assert_eq!(Value::Object(params.snapshot().values.clone()), expected);
        let on_disk: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(on_disk, expected);
        // A restart reads what was written; no temporary file is left behind.
        assert_eq!(
            Value::Object(fresh(Some(&file)).snapshot().values.clone()),
            expected
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_malformed_file_names_its_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("params.json");
        std::fs::write(&file, "{\n  \"a\": 1,\n  \"b\": \n}\n").unwrap();
        let err = fresh(None).load_file(&file).unwrap_err().to_string();
        assert!(err.contains("line 4, column 1"), "{err}");
        std::fs::write(&file, "[1, 2]").unwrap();
        let err = fresh(None).load_file(&file).unwrap_err().to_string();
        assert!(err.contains("the text is a JSON array"), "{err}");
    }

    #[test]
    fn a_change_that_cannot_be_written_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gone").join("params.json");
        let params = fresh(Some(&file));
        assert!(matches!(
            params.set("a", json!(1)),
            Err(ParamsError::Write { .. })
        ));
        assert!(params.snapshot().values.is_empty());
        assert!(matches!(
            params.set("a/b", json!(1)),
            Err(ParamsError::Name { .. })
        ));
        assert!(matches!(
            params.set("", json!(1)),
            Err(ParamsError::Name { .. })
        ));
    }
}
