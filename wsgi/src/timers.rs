//! Repeating tasks: Twisted's `TimerService` on the site's Python threads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::bridge::interpreter::LoadError;
use pyo3::prelude::*;

/// A Python callable run every `interval`, as Twisted's `TimerService(interval, f)` runs
/// it: the first call when the server starts, then each `interval` after the start of the
/// previous call; never two calls of one timer at once (a call that overruns delays the
/// next, which starts as soon as it returns, and the log says so).
///
/// Calls run on the site's Python threads, in turn with requests, never on the event loop
/// and never on a thread beyond `--threads`. Where Twisted stops a `TimerService` whose
/// call raised, Torsion logs the traceback and keeps the timer going: a task that failed
/// once (a network hiccup) should run again. At shutdown, a call in progress may finish
/// within the shutdown timeout; no new call starts.
#[derive(Clone)]
pub struct Timer {
    interval: Duration,
    task: Arc<Py<PyAny>>,
    name: String,
    stats: Arc<TimerStats>,
}

/// What a timer has done, shared by its clones.
#[derive(Debug, Default)]
struct TimerStats {
    runs: AtomicU64,
    failures: AtomicU64,
    last: Mutex<Option<LastRun>>,
}

/// A timer's latest call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastRun {
    /// When it started.
    pub started: SystemTime,
    /// How long it took.
    pub took: Duration,
    /// The exception it raised (its last line), if it did.
    pub error: Option<String>,
}

impl std::fmt::Debug for Timer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timer")
            .field("interval", &self.interval)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Timer {
    /// A timer calling `task()` every `interval` (above zero), named `name` in the log.
    ///
    /// # Errors
    /// [`LoadError::Timer`] when `task` is not callable or `interval` is zero.
    pub fn new(interval: Duration, task: Bound<'_, PyAny>, name: &str) -> Result<Timer, LoadError> {
        if interval.is_zero() {
            return Err(LoadError::Timer {
                name: name.to_owned(),
                reason: "a timer's interval must be above 0 seconds".into(),
            });
        }
        if !task.is_callable() {
            return Err(LoadError::Timer {
                name: name.to_owned(),
                reason: "a timer's task must be callable with no arguments".into(),
            });
        }
        Ok(Timer {
            interval,
            task: Arc::new(task.unbind()),
            name: name.to_owned(),
            stats: Arc::default(),
        })
    }

    /// A timer calling the callable named `name` (`package.module:function`, or any form
    /// [`Application::load`](crate::Application::load) takes) every `interval`, as
    /// `--timer SECONDS=NAME` gives it.
    ///
    /// # Errors
    /// [`LoadError::Timer`] naming the timer: a malformed name, an import or lookup that
    /// raised (with the exception), or what [`Timer::new`] refuses.
    pub fn load(interval: Duration, name: &str) -> Result<Timer, LoadError> {
        let task = crate::bridge::application::find(name).map_err(|err| match err {
            LoadError::Name { reason, .. } => LoadError::Timer {
                name: name.to_owned(),
                reason: format!(
                    "not a callable's name: {reason}; write package.module:function or package.module.function"
                ),
            },
            LoadError::Python { what, error, .. } => LoadError::Timer {
                name: name.to_owned(),
                reason: format!("{what} failed: {error}"),
            },
            other => other,
        })?;
        Python::attach(|py| Timer::new(interval, task.into_bound(py), name))
    }

    /// The time from the start of one call to the start of the next.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The name the log gives the timer.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Calls made so far (finished, raised or not).
    pub fn runs(&self) -> u64 {
        self.stats.runs.load(Ordering::Relaxed)
    }

    /// Calls that raised so far.
    pub fn failures(&self) -> u64 {
        self.stats.failures.load(Ordering::Relaxed)
    }

    /// The latest call, once one has finished.
    pub fn last_run(&self) -> Option<LastRun> {
        self.stats.last.lock().ok()?.clone()
    }

    /// Records a finished call.
    pub(crate) fn record(&self, started: SystemTime, took: Duration, error: Option<String>) {
        self.stats.runs.fetch_add(1, Ordering::Relaxed);
        if error.is_some() {
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(mut last) = self.stats.last.lock() {
            *last = Some(LastRun {
                started,
                took,
                error,
            });
        }
    }

    /// The callable.
    pub(crate) fn task(&self) -> &Arc<Py<PyAny>> {
        &self.task
    }
}
