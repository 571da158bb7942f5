//! What stops start-up: one error type, whose kind picks the Python exception class and
//! whose message is the same on the command line and in Python; and the logging both
//! hosts set up.

/// Exit status for configuration errors (bad descriptor, bad application name, a listener
/// that cannot be opened), as for a command-line usage error.
pub const CONFIG_ERROR: u8 = 2;

/// Logs to standard error, at the level `RUST_LOG` gives (info by default), in colour on a
/// terminal. A second call (a second server in one Python process) keeps the first set-up.
pub(crate) fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// A configuration or start-up error. The CLI prints `error: MESSAGE` and exits with
/// status 2; the Python API raises the exception class of its kind with the same message
/// (`torsion.OptionError`, `DescriptorError`, `ApplicationError`, `ListenError`).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// An option's value is not valid (a flag, a keyword of the Python API, a setting of a
    /// configuration file).
    #[error("{0}")]
    Option(String),
    /// An endpoint descriptor does not parse (`torsion_endpoints`' parse-time errors).
    #[error("{0}")]
    Descriptor(String),
    /// An application cannot be imported or is not callable.
    #[error("{0}")]
    Application(String),
    /// A listener cannot be started: the address is taken, a certificate directory is
    /// unreadable, systemd passed no socket.
    #[error("{0}")]
    Listen(String),
}

impl From<torsion_endpoints::Error> for ConfigError {
    /// Parse-time variants are descriptor errors; the rest happen while listening.
    fn from(err: torsion_endpoints::Error) -> ConfigError {
        use torsion_endpoints::Error as E;
        let message = err.to_string();
        match err {
            E::Syntax { .. }
            | E::UnknownKind { .. }
            | E::UnknownKeyword { .. }
            | E::DuplicateArgument { .. }
            | E::MissingArgument { .. }
            | E::TooManyArguments { .. }
            | E::InvalidValue { .. } => ConfigError::Descriptor(message),
            _ => ConfigError::Listen(message),
        }
    }
}

impl From<torsion_wsgi::LoadError> for ConfigError {
    fn from(err: torsion_wsgi::LoadError) -> ConfigError {
        ConfigError::Application(err.to_string())
    }
}

impl From<String> for ConfigError {
    /// A message about an option's value.
    fn from(message: String) -> ConfigError {
        ConfigError::Option(message)
    }
}
