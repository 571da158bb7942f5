//! `--reload`, for development: watching the application's source with the notify crate,
//! so that the supervisor replaces its workers (as SIGHUP does) when a file changes.

use std::path::{Path, PathBuf};

use tokio::sync::mpsc;

use crate::error::ConfigError;

/// The files `--reload` watches unless `--reload-include` says otherwise.
pub(crate) const DEFAULT_INCLUDE: &[&str] = &["*.py"];

/// Whether `relative` (a path below a watched directory) lies in what `--reload` never
/// watches, whatever is included: hidden directories (`.venv`, `.git`) and Python's
/// byte-code caches (`__pycache__`).
fn always_excluded(relative: &Path) -> bool {
    let mut parts: Vec<_> = relative.components().collect();
    parts.pop();
    parts.iter().any(|part| {
        let name = part.as_os_str().to_string_lossy();
        name.starts_with('.') || name == "__pycache__"
    })
}

/// A watch on the source: changed paths arrive on [`Source::changes`]; dropping it stops
/// watching.
pub(crate) struct Source {
    _watcher: notify::RecommendedWatcher,
    /// Paths of files that changed (created, written, removed, renamed) and match the
    /// patterns.
    pub(crate) changes: mpsc::UnboundedReceiver<PathBuf>,
}

/// Watches `directories` recursively for changes to files whose path matches one of
/// `include` and none of `exclude` (glob patterns matched against the whole path, where
/// `*` also matches `/`, as watchmedo's `--patterns` are).
///
/// # Errors
/// [`ConfigError::Option`] for a pattern that does not parse, or a directory that cannot
/// be watched.
pub(crate) fn watch(
    directories: &[PathBuf],
    include: &[String],
    exclude: &[String],
) -> Result<Source, ConfigError> {
    let compile = |flag: &str, patterns: Vec<&str>| -> Result<Vec<glob::Pattern>, ConfigError> {
        patterns
            .into_iter()
            .map(|text| {
                glob::Pattern::new(text).map_err(|err| {
                    ConfigError::Option(format!(
                        "{flag} {text:?} is not a glob pattern ({err}); expected one such as '*.py' or '*/templates/*'"
                    ))
                })
            })
            .collect()
    };
    let include = if include.is_empty() {
        compile("--reload-include", DEFAULT_INCLUDE.to_vec())?
    } else {
        compile(
            "--reload-include",
            include.iter().map(String::as_str).collect(),
        )?
    };
    let exclude = compile(
        "--reload-exclude",
        exclude.iter().map(String::as_str).collect(),
    )?;
    let (sender, changes) = mpsc::unbounded_channel();
    let roots: Vec<PathBuf> = directories.to_vec();
    let wanted = move |path: &Path| {
        let hidden = roots
            .iter()
            .filter_map(|root| path.strip_prefix(root).ok())
            .any(always_excluded);
        !hidden
            && include.iter().any(|p| p.matches_path(path))
            && !exclude.iter().any(|p| p.matches_path(path))
    };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if matches!(event.kind, notify::EventKind::Access(_)) {
            return;
        }
        for path in event.paths {
            if wanted(&path) {
                let _ = sender.send(path);
            }
        }
    })
    .map_err(|err| ConfigError::Option(format!("--reload: cannot watch files: {err}")))?;
    for directory in directories {
        notify::Watcher::watch(&mut watcher, directory, notify::RecursiveMode::Recursive).map_err(
            |err| {
                ConfigError::Option(format!(
                    "--reload: cannot watch {}: {err}",
                    directory.display()
                ))
            },
        )?;
        tracing::info!(directory = %directory.display(), "watching for changes (--reload)");
    }
    Ok(Source {
        _watcher: watcher,
        changes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_directories_and_byte_code_caches_are_never_watched() {
        assert!(always_excluded(Path::new(".venv/lib/python3.11/site.py")));
        assert!(always_excluded(Path::new(
            "app/__pycache__/views.cpython-311.pyc"
        )));
        assert!(always_excluded(Path::new(".git/hooks/pre-commit.py")));
        assert!(!always_excluded(Path::new("app/views.py")));
        // Only directories: a hidden file itself is up to the patterns.
        assert!(!always_excluded(Path::new(".settings.py")));
    }
}
