//! The two helper objects PEP 3333 puts in environ besides the input: `wsgi.file_wrapper`
//! and `wsgi.errors`.

use std::sync::Mutex;

use pyo3::prelude::*;

/// `wsgi.file_wrapper(filelike, block_size=8192)`: iterates the file in blocks and closes
/// it when the server closes the iterable (PEP 3333, "Optional Platform-Specific File
/// Handling").
#[pyclass(frozen, module = "torsion", name = "FileWrapper")]
pub(crate) struct FileWrapper {
    filelike: Py<PyAny>,
    block_size: usize,
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, block_size=8192))]
    fn new(filelike: Py<PyAny>, block_size: isize) -> FileWrapper {
        FileWrapper {
            filelike,
            block_size: block_size.max(1) as usize,
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let block = self
            .filelike
            .bind(py)
            .call_method1(pyo3::intern!(py, "read"), (self.block_size,))?;
        Ok((block.len()? > 0).then_some(block))
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let filelike = self.filelike.bind(py);
        if filelike.hasattr(pyo3::intern!(py, "close"))? {
            filelike.call_method0(pyo3::intern!(py, "close"))?;
        }
        Ok(())
    }
}

/// `wsgi.errors`: text written here goes to the server log, a line per record.
#[pyclass(frozen, module = "torsion", name = "ErrorStream")]
pub(crate) struct ErrorStream {
    partial: Mutex<String>,
}

impl ErrorStream {
    pub(crate) fn new() -> ErrorStream {
        ErrorStream {
            partial: Mutex::new(String::new()),
        }
    }

    fn emit(&self, all: bool) {
        let Ok(mut partial) = self.partial.lock() else {
            return;
        };
        while let Some(end) = partial.find('\n') {
            let line: String = partial.drain(..=end).collect();
            tracing::warn!(target: "wsgi.errors", "{}", line.trim_end_matches(['\r', '\n']));
        }
        if all && !partial.is_empty() {
            tracing::warn!(target: "wsgi.errors", "{}", partial.as_str());
            partial.clear();
        }
    }
}

#[pymethods]
impl ErrorStream {
    fn write(&self, text: &str) -> usize {
        if let Ok(mut partial) = self.partial.lock() {
            partial.push_str(text);
        }
        self.emit(false);
        text.chars().count()
    }

    fn writelines(&self, lines: &Bound<'_, PyAny>) -> PyResult<()> {
        for line in lines.try_iter()? {
            self.write(&line?.extract::<String>()?);
        }
        Ok(())
    }

    fn flush(&self) {
        self.emit(true);
    }
}
