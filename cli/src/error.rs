//! What stops start-up: one error type, whose kind picks the Python exception class and
//! whose message is the same on the command line and in Python.

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
