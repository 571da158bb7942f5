//! The one error type of this crate.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while parsing a descriptor or opening its listener.
///
/// Every message names the descriptor at fault, the piece of it that is wrong, and what
/// would be accepted, so that a command-line tool can print it as it is and exit.
/// Parse-time variants ([`Error::Syntax`] to [`Error::InvalidValue`]) mean the descriptor
/// is wrong; the listen-time variants ([`Error::Listen`], [`Error::AddressInUse`],
/// [`Error::Systemd`]) mean opening it failed: the operating system refused, the address
/// is taken, or the inherited sockets do not match what the descriptor asks for.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The descriptor does not follow the grammar (for example a trailing lone backslash).
    #[error("invalid endpoint descriptor {descriptor:?}: {message} at column {column}")]
    Syntax {
        /// The descriptor as the user wrote it.
        descriptor: String,
        /// 1-based column (in characters) where the problem was found.
        column: usize,
        /// What was wrong and what is expected instead.
        message: String,
    },

    /// The type prefix (the text before the first `:`) is not a registered kind.
    #[error(
        "invalid endpoint descriptor {descriptor:?}: unknown endpoint type {kind:?}; known types: {}{hint}",
        known.join(", ")
    )]
    UnknownKind {
        /// The descriptor as the user wrote it.
        descriptor: String,
        /// The prefix, lower-cased, with escapes resolved.
        kind: String,
        /// The registered prefixes, sorted.
        known: Vec<String>,
        /// An extra sentence suggesting a fix, or empty.
        hint: String,
    },

    /// A keyword argument the kind does not take.
    #[error(
        "invalid endpoint descriptor {descriptor:?}: {kind}: endpoints take no keyword {keyword:?}; valid keywords: {}",
        valid.join(", ")
    )]
    UnknownKeyword {
        /// The descriptor as the user wrote it.
        descriptor: String,
        /// The kind's prefix.
        kind: String,
        /// The keyword as written.
        keyword: String,
        /// The keywords the kind accepts.
        valid: Vec<String>,
    },

    /// An argument given both by position and by keyword (`tcp:80:port=81`).
    #[error(
        "invalid endpoint descriptor {descriptor:?}: {kind}: argument {argument:?} is given twice, by position and as {argument}=; usage: {usage}"
    )]
    DuplicateArgument {
        /// The descriptor as the user wrote it.
        descriptor: String,
        /// The kind's prefix.
        kind: String,
        /// The argument's name.
        argument: String,
        /// The kind's usage line.
        usage: String,
    },

    /// A required argument is missing.
    #[error(
        "invalid endpoint descriptor {descriptor:?}: {kind}: missing argument {argument:?}; usage: {usage}"
    )]
    MissingArgument {
        /// The descriptor as the user wrote it.
        descriptor: String,
        /// The kind's prefix.
        kind: String,
        /// The missing argument's name.
        argument: String,
        /// The kind's usage line.
        usage: String,
    },

    /// More positional arguments than the kind has parameters.
    #[error(
        "invalid endpoint descriptor {descriptor:?}: {kind}: unexpected positional argument {value:?} (argument {position}); usage: {usage}"
    )]
    TooManyArguments {
        /// The descriptor as the user wrote it.
        descriptor: String,
        /// The kind's prefix.
        kind: String,
        /// The first surplus value.
        value: String,
        /// 1-based position of the surplus value among the positional arguments.
        position: usize,
        /// The kind's usage line.
        usage: String,
    },

    /// An argument is present but its value is not acceptable.
    #[error(
        "invalid endpoint descriptor {descriptor:?}: {kind}: {argument} {value:?} is not valid; expected {expected}"
    )]
    InvalidValue {
        /// The descriptor as the user wrote it.
        descriptor: String,
        /// The kind's prefix.
        kind: String,
        /// The argument's name.
        argument: String,
        /// The value as written.
        value: String,
        /// What would be accepted, e.g. "a port number from 0 to 65535".
        expected: String,
    },

    /// The operating system refused to open the listener (bind, listen, chmod, lock).
    #[error("cannot listen on {endpoint}: {action}: {source}{hint}")]
    Listen {
        /// The endpoint in canonical descriptor form.
        endpoint: String,
        /// What was being done, e.g. "bind 0.0.0.0:80".
        action: String,
        /// A sentence suggesting a fix, or empty.
        hint: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A `unix:` socket path is in use by a live process or is not a socket, or its lock
    /// file is held or unreadable.
    #[error("cannot listen on {endpoint}: {path}: {reason}")]
    AddressInUse {
        /// The endpoint in canonical descriptor form.
        endpoint: String,
        /// The socket or lock file path.
        path: PathBuf,
        /// What was found there.
        reason: String,
    },

    /// Socket activation was asked for but the environment does not provide the socket.
    #[error("cannot listen on {endpoint}: {reason}")]
    Systemd {
        /// The endpoint in canonical descriptor form.
        endpoint: String,
        /// What is missing or mismatched, naming the variables involved.
        reason: String,
    },

    /// A certificate or private key cannot be used: a file that cannot be read, holds no
    /// key or no certificate in PEM form, or no certificate matching its key.
    #[error("{subject}: {reason}")]
    Certificate {
        /// The file (or the host name) at fault.
        subject: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A name given to a certificate table or an ACME operation is not of an accepted
    /// form (RFC 1123 host names; wildcards `*.example.com`; `DEFAULT`).
    #[error("{name:?} is not {expected}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What would be accepted.
        expected: String,
    },

    /// A setting given as a value (from a configuration file or a command-line flag rather
    /// than a descriptor) is not acceptable.
    #[error("{setting} {value:?} is not valid; expected {expected}")]
    InvalidSetting {
        /// The setting's name, as the descriptor keyword (`email`, `timeout`, ...).
        setting: String,
        /// The value as given.
        value: String,
        /// What would be accepted.
        expected: String,
    },

    /// rustls refused a TLS configuration (a build defect: the protocol versions are
    /// fixed by this crate).
    #[error("cannot configure TLS: {0}")]
    TlsConfig(String),

    /// Getting or renewing a certificate over ACME failed (RFC 8555); the certificate in
    /// service, if any, stays in service.
    #[error("ACME: {name}: {message}")]
    Acme {
        /// The host name the certificate is for, or the directory for account errors.
        name: String,
        /// What failed, with the ACME server's problem document when it sent one.
        message: String,
        /// When the server asked to be contacted again (`Retry-After`), if it did.
        retry_at: Option<std::time::SystemTime>,
    },
}

/// Shorthand for `Result<T, torsion_endpoints::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
