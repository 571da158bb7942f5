//! `torsion`: a WSGI server with Twisted's endpoint descriptors, as a command and as the
//! extension module of the `torsion` Python package.
//!
//! `torsion web --wsgi myproject.wsgi:application --listen tcp:8080 --listen unix:/run/app.sock`
//!
//! One command line (clap, with `twist web`'s option names) serves two hosts:
//! - the `torsion` binary, which embeds CPython and handles its own signals ([`main`]);
//! - the wheel's extension module `torsion._torsion` ([`python`]), loaded by the
//!   interpreter that runs `torsion` or `python -m torsion`, where Python's signal handlers
//!   stop the server and the Python API's keywords are the same options.
//!
//! This crate only turns options into `torsion-endpoints` listeners and a `torsion-wsgi`
//! site; it holds no logic a library user would also need.

mod args;
mod certs;
mod error;
mod links;
mod notify;
pub mod python;
mod ready;
mod reload;
mod supervisor;
mod web;

use std::ffi::OsString;
use std::process::ExitCode;

use error::init_logging;
pub use error::{CONFIG_ERROR, ConfigError};

/// Runs the `torsion` command line, `argv` starting with the program name, in a process of
/// its own: logging to standard error, SIGINT and SIGTERM stopping the server after its
/// requests in flight, SIGUSR1 reopening the access log. Returns the exit status: 0, 1
/// when `torsion certs` failed to obtain a certificate, 2 for a configuration error
/// (printed as `error: ...`). `--help`, `--version` and usage errors are handled by clap,
/// which exits the process.
pub fn main(argv: impl IntoIterator<Item = OsString>) -> ExitCode {
    let argv: Vec<OsString> = argv.into_iter().collect();
    let (cli, given) = match args::parse(argv.iter().cloned()) {
        Ok(parsed) => parsed,
        Err(err) => err.exit(),
    };
    init_logging();
    match run(cli, &argv, &given) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(CONFIG_ERROR)
        }
    }
}

/// Runs a parsed command line (`argv`, with the options `given` on it) to its end, the
/// server handling its own signals; `Err` is a configuration error.
fn run(cli: args::Cli, argv: &[OsString], given: &[String]) -> Result<ExitCode, ConfigError> {
    match cli.command {
        args::Command::Web(args) => {
            let program = std::env::current_exe().map_err(|err| {
                ConfigError::Listen(format!("cannot find this program to start workers: {err}"))
            })?;
            let command = supervisor::WorkerCommand {
                program: program.into_os_string(),
                args: argv.iter().skip(1).cloned().collect(),
            };
            match python::web_role(*args, argv, given, &command)? {
                python::WebRole::Supervise { args, count } => {
                    supervisor::supervise(&args, count, command)
                }
                python::WebRole::Serve(plan) => {
                    let running = web::Running::start(*plan, web::Signals::Server)?;
                    running.join();
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        args::Command::Certs(args) => certs::certs(*args),
    }
}
