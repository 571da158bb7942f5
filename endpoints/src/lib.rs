//! Twisted's server endpoint descriptors for Rust: one string says where a server listens.
//!
//! ```text
//! tcp:8080                                  every IPv4 address, port 8080
//! tcp:8080:interface=127.0.0.1              loopback only
//! tcp6:8080:interface=\:\:1                 IPv6 loopback (colons escaped)
//! unix:/run/app.sock:mode=660               a unix socket file, group-writable
//! systemd:domain=INET6:name=web             a socket passed by systemd socket activation
//! haproxy:tcp:8080                          behind a load balancer: the PROXY protocol names the client
//! ssl:8443:privateKey=key.pem:certKey=cert.pem   TLS (rustls) with one certificate
//! txsni:/etc/certs:tcp:443                  TLS with a certificate per host name
//! tls:/etc/certs:port=443                   TLS, names from each certificate's subjectAltName
//! txacme:/srv/certs:tcp:443                 TLS, certificates obtained and renewed over ACME
//! ```
//!
//! A descriptor is parsed into an [`Endpoint`], a value that can be inspected and printed
//! back in canonical form; [`Endpoint::listen`] opens a [`Listener`], whose
//! [`accept`](Listener::accept) gives [`Connection`]s: `AsyncRead + AsyncWrite` streams that
//! carry a [`ConnectionInfo`] (local and peer [`Address`], and the [`TlsInfo`] a TLS kind
//! negotiated). Nothing here knows about HTTP or Python: any tokio server can use it.
//!
//! ```text
//! "unix:/run/app.sock"  ──Descriptor::parse──►  Descriptor { kind, args, kwargs }
//!                       ──Registry: kind → EndpointKind::parse──►  Endpoint
//!                       ──Endpoint::listen──►  Listener  ──accept──►  Connection + ConnectionInfo
//! ```
//!
//! # The grammar
//!
//! Twisted's `serverFromString` rules: `:` separates arguments; the first is the endpoint
//! type; `key=value` is a keyword argument, and inside a value only `:` ends it
//! (`interface=a=b` is `a=b`); a backslash makes the next character literal (`\:`, `\=`,
//! `\\`); empty pieces are empty positional arguments; positionals may follow keywords; a
//! repeated keyword keeps its last value. [`quote`] escapes an argument for embedding.
//!
//! # The kinds
//!
//! | descriptor | positional order | defaults |
//! |---|---|---|
//! | `tcp:port[:interface][:backlog]` | port, interface, backlog | every IPv4 address, 1024 |
//! | `tcp6:port[:backlog][:interface]` | port, backlog, interface | `::`, 1024 |
//! | `unix:address[:mode][:backlog][:lockfile]` | address, mode, backlog, lockfile | 666, 1024, 1 |
//! | `systemd:domain[:index][:name]` | domain, index, name | exactly one of index and name |
//! | `haproxy:<inner descriptor>` | any descriptor | PROXY protocol v1 or v2 required on every connection, 10 s to send it |
//! | `ssl:port:privateKey=[:certKey=][:extraCertChain=]...` | port, privateKey, certKey, sslmethod, interface, backlog, extraCertChain, dhParameters | `server.pem`, certKey = privateKey |
//! | `txsni:DIR:<inner descriptor>` | DIR, then any descriptor | none; `DIR/<host>.pem`, `DEFAULT.pem` |
//! | `tls:DIR[:port][:backlog][:interface]` | DIR, port, backlog, interface | port 443, `::`; keys and certificates of every `*.pem` below DIR paired by public key, named by subjectAltName |
//! | `txacme:DIR[:directory=][:email=][:cacert=][:challenge=][:domains=][:timeout=]:<inner>` | DIR, then any descriptor | Let's Encrypt, tls-alpn-01, 120 s |
//! | `le:DIR:...:<inner>` | as `txacme:` | Let's Encrypt production |
//! | `lets:DIR:...:<inner>` | as `txacme:` | Let's Encrypt staging |
//!
//! See [`kinds`] for `tcp:`, `tcp6:`, `unix:`, `systemd:` and `haproxy:`; [`tls`] (feature `tls`) for
//! `ssl:`, `txsni:` and `tls:`, the certificate resolver (exact name, then wildcard, then
//! DEFAULT) and the TLS listener; [`acme`] (feature `acme`) for `txacme:`, `le:` and
//! `lets:`, certificates obtained over ACME v2 (RFC 8555) and kept fresh, the http-01
//! answers an HTTP server gives, and the one-shot operations behind `torsion certs`.
//! TLS kinds fill [`TlsInfo`] (SNI, ALPN, version) on each connection. More kinds plug in
//! through [`Registry::register`] and [`plugin::EndpointKind`], including kinds that wrap an
//! inner descriptor (`txsni:/certs:tcp:443`), through [`plugin::Arguments::into_inner_endpoint`].
//!
//! # Features
//!
//! - `tls` (default): `ssl:`, `txsni:`, `tls:` with rustls, tokio-rustls, notify and
//!   x509-parser.
//! - `acme` (default; implies `tls`): `txacme:`, `le:`, `lets:` with instant-acme, rcgen and
//!   hyper.
//!
//! With `default-features = false` only `tcp:`, `tcp6:`, `unix:`, `systemd:` and `haproxy:`
//! are built, and none of the TLS or ACME dependencies are compiled.
//!
//! # Accepting
//!
//! [`Listener::next_connection`] is the one accept policy: it skips connections that
//! failed before they were accepted, waits out descriptor exhaustion, and never returns an
//! error, so an accept loop is `loop { let c = listener.next_connection().await; ... }`.
//!
//! # Deliberate differences from Twisted
//!
//! - Type prefixes are matched case-insensitively (`TCP:80` works; Twisted rejects it).
//! - A trailing lone backslash is a [`Error::Syntax`] with its column (Twisted raises an
//!   unrelated `RuntimeError`); a descriptor that starts with a keyword is a syntax error too.
//! - Every error names the descriptor, the argument at fault and what is accepted; unknown
//!   types list the known types and unknown keywords list the valid keywords.
//! - Ports are checked against 0..=65535 and interfaces must be IP literals.
//! - `txacme:` takes `timeout=` of at least 1 second (txacme accepts 0, which would give
//!   up on every validation at once); `tls:` refuses a directory that yields no
//!   certificate at start-up instead of failing every handshake.
//! - The listen backlog defaults to 1,024, not 50: with 50, a burst of connections
//!   overflows the accept queue and clients wait a second to retry (`backlog=` still sets it).
//! - A `unix:` socket file left behind by a dead process is replaced even without the lock
//!   file, and one a live process still serves is refused; files that are not sockets are
//!   never removed.
//! - `systemd:` checks the inherited socket's family and state at start-up and does not
//!   require `LISTEN_FDNAMES` for `index=`.
//! - `txacme:`, `le:` and `lets:` speak ACME v2 with tls-alpn-01 or http-01 (txacme 0.9.3
//!   spoke ACME v1 with tls-sni-01, both switched off by Let's Encrypt); `txacme:` takes
//!   `directory=` and defaults to Let's Encrypt.
//!
//! # Non-features
//!
//! Client endpoints (`clientFromString`), `stdio:` and UDP are not provided: this crate is
//! for servers that accept stream connections.
//!
//! # Example
//!
//! An echo server on any descriptor (`endpoints/examples/hello_hyper.rs` serves HTTP):
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let endpoint: torsion_endpoints::Endpoint = "tcp:8080:interface=127.0.0.1".parse()?;
//! let mut listener = endpoint.listen().await?;
//! println!("listening on {} ({})", listener.local_addr(), endpoint);
//! loop {
//!     let mut connection = listener.next_connection().await;
//!     tokio::spawn(async move {
//!         let (mut reader, mut writer) = tokio::io::split(&mut connection);
//!         let _ = tokio::io::copy(&mut reader, &mut writer).await;
//!     });
//! }
//! # }
//! ```

#![deny(missing_docs, unreachable_pub, unsafe_code)]

mod activation;
mod descriptor;
mod error;
mod haproxy;
mod listener;
mod registry;
mod systemd;
mod tcp;
mod unix;

pub mod kinds;

#[cfg(feature = "tls")]
pub mod tls;

#[cfg(feature = "acme")]
pub mod acme;

pub use activation::{SUPERVISOR_PID_VAR, background_elsewhere, inherited_name};
pub use descriptor::{Descriptor, quote};
pub use error::{Error, Result};
pub use listener::{Address, Connection, ConnectionInfo, Listener, TlsInfo};
pub use registry::{Endpoint, Registry};

/// What a plugin kind implements and uses: the [`EndpointKind`](plugin::EndpointKind) that
/// parses a descriptor's arguments into an endpoint, the [`ServerEndpoint`](plugin::ServerEndpoint)
/// it produces, and the [`Accept`](plugin::Accept) half of its listener.
pub mod plugin {
    pub use crate::listener::{Accept, Io};
    pub use crate::registry::{Arguments, Bound, BoxFuture, EndpointKind, ServerEndpoint};
}
