//! HTTP/1.1 and HTTP/2 serving on hyper, a site of mounted resources, and the PEP 3333
//! bridge to embedded CPython.
//!
//! ```text
//! Listener ──accept──► hyper (HTTP/1.1, h2c) ──Request──► Site: longest mounted prefix
//!                                                           ├─► Files (blocking pool for the disk)
//!                                                           └─► Bridge::handle ──queue──► Python thread
//!                                                                  environ, app(environ, start_response)
//! hyper ◄── ResponseBody (whole, chunks through a bounded channel, or a file) ◄──┘
//! ```
//!
//! Start CPython with [`initialize`], load applications with [`Application::load`] (or
//! [`Application::demo`]), mount them and directories of [`site::files::Files`] on a
//! [`site::Site`] with a [`ServerConfig`], and [`serve`] it on listeners from
//! `torsion-endpoints`. The async runtime never runs Python and never waits for the GIL;
//! Python threads release the GIL whenever they wait on the network. A site of files
//! alone needs no Python at all.
//!
//! Serve on a runtime from [`runtime_builder`]: besides the hooks the Python threads use to
//! take requests in batches, it sets the scheduling that makes the hand-off cheap on a
//! shared core (event-loop threads without wake-up preemption; no LIFO slot when built with
//! `--cfg tokio_unstable`, as this workspace is; elsewhere, put the flag in `RUSTFLAGS`).
//! `bench/` measures the effect.
//!
//! What the bridge guarantees, after PEP 3333:
//! - environ has every key the PEP requires, with `PATH_INFO` percent-decoded as latin-1,
//!   `wsgi.url_scheme` from the listener, and `wsgi.input` streaming the body as it is read;
//! - status and headers are checked when `start_response` is called, and errors name the
//!   part at fault; headers go out with the first non-empty chunk;
//! - a generator's chunks are sent as they are produced, with backpressure;
//! - `close()` is always called; an exception before output gives 500, after output aborts
//!   the connection; the server goes on serving.
//!
//! # Layers
//!
//! Modules depend only on the layers below them; nothing imports back up:
//!
//! ```text
//! serve      accept loops, the hyper connection builder, the server's own answers
//!   │        (checks: Host, request targets, CONNECT, HTTP/2 field sections), ACME
//!   │        http-01 before the site, lingering close (linger), memory returned after
//!   │        bursts (memory); to come beside it: the access log
//! site       the mount table; files (path resolution, validators and preconditions,
//!   │        ranges, representations); to come: added headers
//! bridge     the PEP 3333 bridge: interpreter, application, environ, input, head,
//!   │        sender, responder, start_response, streams (file_wrapper, errors)
//! pool       Python threads taking requests in batches
//! runtime    the tokio runtime builder, scheduling policy, idle counter, heartbeat
//! config, body, file_body   leaves: ServerConfig; the response body hyper polls, and
//!            its file reader
//! ```
//!
//! Beside `serve`, `control` serves the control channel (parameters, health, metrics,
//! status) on listeners of its own; `params`, a leaf, holds the live parameters that
//! `bridge` puts in environ and `control` changes.

#![deny(missing_docs, unreachable_pub, unsafe_code)]

mod access_log;
mod body;
mod bridge;
mod checks;
mod config;
pub mod control;
mod file_body;
mod forwarded;
mod linger;
mod memory;
pub mod metrics;
pub mod params;
mod pool;
mod runtime;
mod serve;
pub mod site;
mod timers;

pub use access_log::{AccessLog, Destination, LogFormat};
pub use body::{BodyAborted, ResponseBody};
pub use bridge::application::Application;
pub use bridge::interpreter::{LoadError, PythonOptions, describe, initialize};
pub use bridge::{Bridge, Channel};
pub use config::{Protocols, ServerConfig};
pub use forwarded::ForwardedTrust;
pub use runtime::{Heartbeat, runtime_builder};
pub use serve::{connection_builder, serve, serve_speaking};
pub use timers::{LastRun, Timer};
