//! Finding and loading the WSGI application: Twisted's dotted names, gunicorn's
//! `module:attribute` and `module:factory()`, and the built-in demo.

use std::ffi::CString;

use pyo3::intern;
use pyo3::prelude::*;

use super::interpreter::{LoadError, describe};

/// The demo application's source, served when no `--wsgi` is given.
const DEMO_SOURCE: &str = include_str!("demo.py");

/// A loaded WSGI application object.
pub struct Application {
    pub(crate) object: Py<PyAny>,
    name: String,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// The name the application was loaded by (`"torsion.demo:application"` for the demo).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The built-in demo page, a WSGI application like any other (what `twist web` serves
    /// without `--wsgi`, in Twisted's case a static resource).
    ///
    /// # Errors
    /// [`LoadError::Python`] if the embedded source cannot be compiled (a build defect).
    pub fn demo() -> Result<Application, LoadError> {
        let name = "torsion.demo:application".to_owned();
        Python::attach(|py| {
            let failed = |err: PyErr| LoadError::Python {
                name: name.clone(),
                what: "compiling the demo application".into(),
                error: describe(py, &err),
            };
            let source = CString::new(DEMO_SOURCE)
                .map_err(|_| LoadError::Interpreter("demo source has a NUL".into()))?;
            let module = PyModule::from_code(py, &source, c"torsion/demo.py", c"torsion_demo")
                .map_err(failed)?;
            let object = module.getattr("application").map_err(failed)?;
            Ok(Application {
                object: object.unbind(),
                name: name.clone(),
            })
        })
    }

    /// Wraps an application object the host already holds (the Python API's
    /// `torsion.serve(app)`), described in logs by `name`.
    ///
    /// # Errors
    /// [`LoadError::NotCallable`] when `object` is not callable.
    pub fn new(object: Bound<'_, PyAny>, name: &str) -> Result<Application, LoadError> {
        if !object.is_callable() {
            return Err(LoadError::NotCallable {
                name: name.to_owned(),
                found: describe_object(&object),
            });
        }
        Ok(Application {
            object: object.unbind(),
            name: name.to_owned(),
        })
    }

    /// Imports the application named `name`.
    ///
    /// Accepted forms: Twisted's `package.module.attribute` (the longest importable module
    /// prefix, then attributes), gunicorn's `package.module:attribute` (the attribute may be
    /// dotted), and `package.module:factory(...)`, which calls the factory with literal
    /// arguments (read by `ast.literal_eval`). A module that exists but raises while being
    /// imported is reported as such, not as "no module".
    ///
    /// # Errors
    /// [`LoadError::Name`] for a malformed name, [`LoadError::Python`] when importing,
    /// looking up or calling raises, [`LoadError::NotCallable`] when the object found is
    /// not callable.
    pub fn load(name: &str) -> Result<Application, LoadError> {
        let object = find(name)?;
        Python::attach(|py| Application::new(object.into_bound(py), name))
    }
}

/// The object named `name`, in the forms [`Application::load`] accepts, not yet checked.
///
/// # Errors
/// [`LoadError::Name`] for a malformed name, [`LoadError::Python`] when importing, looking
/// up or calling raises.
pub(crate) fn find(name: &str) -> Result<Py<PyAny>, LoadError> {
    {
        let bad = |reason: &str| LoadError::Name {
            name: name.to_owned(),
            reason: reason.to_owned(),
        };
        let (module, expression) = match name.split_once(':') {
            Some((module, expression)) => (module.trim(), Some(expression.trim())),
            None => (name.trim(), None),
        };
        if module.is_empty() || !module.split('.').all(is_identifier) {
            return Err(bad(&format!("{module:?} is not a dotted module name")));
        }
        Python::attach(|py| {
            let failed = |what: String, err: PyErr| LoadError::Python {
                name: name.to_owned(),
                what,
                error: describe(py, &err),
            };
            let object = match expression {
                Some(expression) => {
                    let module_object = py
                        .import(module)
                        .map_err(|err| failed(format!("importing module '{module}'"), err))?;
                    evaluate(py, name, module, &module_object.into_any(), expression)?
                }
                None => named_any(py, name, module)?,
            };
            Ok(object.unbind())
        })
    }
}

/// `TYPE object REPR`, for an error message.
fn describe_object(object: &Bound<'_, PyAny>) -> String {
    format!(
        "{} object {}",
        object
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_default(),
        object.repr().map(|r| r.to_string()).unwrap_or_default()
    )
}

fn is_identifier(part: &str) -> bool {
    let mut chars = part.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric())
}

/// Twisted's `namedAny`: import the package, then each deeper module while one exists,
/// then walk the remaining names as attributes. Importing from the top down attributes an
/// error to the module that raised it.
fn named_any<'py>(
    py: Python<'py>,
    name: &str,
    dotted: &str,
) -> Result<Bound<'py, PyAny>, LoadError> {
    let parts: Vec<&str> = dotted.split('.').collect();
    let import_failed = |module: &str, err: PyErr| LoadError::Python {
        name: name.to_owned(),
        what: format!("importing module '{module}'"),
        error: describe(py, &err),
    };
    let mut object = py
        .import(parts[0])
        .map_err(|err| import_failed(parts[0], err))?
        .into_any();
    let mut split = 1;
    while split < parts.len() {
        let module = parts[..=split].join(".");
        match py.import(module.as_str()) {
            Ok(found) => {
                object = found.into_any();
                split += 1;
            }
            Err(err) if is_missing_module(py, &err, &module) => break,
            Err(err) => return Err(import_failed(&module, err)),
        }
    }
    let module = parts[..split].join(".");
    for i in split..parts.len() {
        object = object.getattr(parts[i]).map_err(|err| LoadError::Python {
            name: name.to_owned(),
            what: format!(
                "looking up '{}' in module '{module}'",
                parts[split..=i].join(".")
            ),
            error: describe(py, &err),
        })?;
    }
    Ok(object)
}

/// Whether `err` says that `module` itself (not something it imports) does not exist.
fn is_missing_module(py: Python<'_>, err: &PyErr, module: &str) -> bool {
    if !err.is_instance_of::<pyo3::exceptions::PyModuleNotFoundError>(py) {
        return false;
    }
    let missing: Option<String> = err
        .value(py)
        .getattr(intern!(py, "name"))
        .and_then(|n| n.extract())
        .ok()
        .flatten();
    missing.is_some_and(|missing| module == missing)
}

/// gunicorn's `module:expression`: a dotted attribute, or a call with literal arguments.
fn evaluate<'py>(
    py: Python<'py>,
    name: &str,
    module: &str,
    module_object: &Bound<'py, PyAny>,
    expression: &str,
) -> Result<Bound<'py, PyAny>, LoadError> {
    let bad = |reason: String| LoadError::Name {
        name: name.to_owned(),
        reason,
    };
    let (path, arguments) = match expression.split_once('(') {
        Some((path, rest)) => {
            let Some(inside) = rest.trim_end().strip_suffix(')') else {
                return Err(bad(format!(
                    "{expression:?} opens a call it does not close"
                )));
            };
            (path.trim(), Some(inside))
        }
        None => (expression, None),
    };
    if path.is_empty() || !path.split('.').all(is_identifier) {
        return Err(bad(format!("{path:?} is not an attribute name")));
    }
    let mut object = module_object.clone();
    for attribute in path.split('.') {
        object = object.getattr(attribute).map_err(|err| LoadError::Python {
            name: name.to_owned(),
            what: format!("looking up '{path}' in module '{module}'"),
            error: describe(py, &err),
        })?;
    }
    let Some(arguments) = arguments else {
        return Ok(object);
    };
    let failed = |what: String, err: PyErr| LoadError::Python {
        name: name.to_owned(),
        what,
        error: describe(py, &err),
    };
    // Literal arguments only, as gunicorn: positional and keyword, parsed by Python's ast.
    let parse = || -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        let ast = py.import(intern!(py, "ast"))?;
        let call = ast
            .call_method1(
                intern!(py, "parse"),
                (format!("f({arguments})"), "<--wsgi>", "eval"),
            )?
            .getattr(intern!(py, "body"))?;
        let literal = ast.getattr(intern!(py, "literal_eval"))?;
        let args = pyo3::types::PyList::empty(py);
        for arg in call.getattr(intern!(py, "args"))?.try_iter()? {
            args.append(literal.call1((arg?,))?)?;
        }
        let kwargs = pyo3::types::PyDict::new(py);
        for keyword in call.getattr(intern!(py, "keywords"))?.try_iter()? {
            let keyword = keyword?;
            kwargs.set_item(
                keyword.getattr(intern!(py, "arg"))?,
                literal.call1((keyword.getattr(intern!(py, "value"))?,))?,
            )?;
        }
        Ok((args.to_tuple().into_any(), kwargs.into_any()))
    };
    let (args, kwargs) =
        parse().map_err(|err| failed(format!("reading the arguments of {expression}"), err))?;
    let kwargs = kwargs
        .cast_into::<pyo3::types::PyDict>()
        .map_err(|e| failed("reading keyword arguments".into(), e.into()))?;
    let args = args
        .cast_into::<pyo3::types::PyTuple>()
        .map_err(|e| failed("reading arguments".into(), e.into()))?;
    object
        .call(args, Some(&kwargs))
        .map_err(|err| failed(format!("calling {expression}"), err))
}
