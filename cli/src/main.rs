//! `torsion`: a WSGI server with Twisted's endpoint descriptors.
//!
//! `torsion web --wsgi myproject.wsgi:application --listen tcp:8080 --listen unix:/run/app.sock`
//!
//! This binary only parses flags (with `twist web`'s names), sets up logging and signals,
//! and wires `torsion-endpoints` listeners to the `torsion-wsgi` server.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use torsion_endpoints::Endpoint;
use torsion_wsgi::{Application, Bridge, PythonOptions, ServerConfig};

/// Exit status for configuration errors (bad descriptor, bad application name).
const CONFIG_ERROR: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "torsion",
    version,
    about = "A WSGI server for Python web applications, written in Rust"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve a WSGI application (or the built-in demo page) over HTTP/1.1 and HTTP/2.
    Web(WebArgs),
}

/// `twist web`'s options, with the same names.
#[derive(Debug, clap::Args)]
struct WebArgs {
    /// The WSGI application: package.module.attribute (as Twisted), package.module:attribute
    /// or package.module:factory() (as gunicorn). Without it, a demo page is served.
    #[arg(long, value_name = "NAME")]
    wsgi: Option<String>,

    /// Where to listen, as an endpoint descriptor: tcp:8080, tcp6:8080:interface=\:\:1,
    /// unix:/run/app.sock:mode=660, systemd:domain=INET:index=0. Repeat to listen on
    /// several. Default: tcp:8080.
    #[arg(long = "listen", value_name = "DESCRIPTOR")]
    listen: Vec<String>,

    /// Deprecated alias of --listen, as in Twisted; a bare number means tcp:NUMBER.
    #[arg(long, value_name = "DESCRIPTOR")]
    port: Option<String>,

    /// Python threads running the application [default: 2 x CPU cores, at least 4].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,

    /// Show Python tracebacks on 500 pages (they are always logged).
    #[arg(long)]
    display_tracebacks: bool,

    /// A directory to put first on sys.path; repeatable.
    #[arg(long = "pythonpath", value_name = "DIR")]
    pythonpath: Vec<PathBuf>,

    /// Largest request body accepted, in bytes; larger ones get 413 [default: 1 GiB].
    #[arg(long, value_name = "BYTES")]
    max_body_size: Option<u64>,

    /// Seconds in-flight requests may take to finish after SIGINT or SIGTERM.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    shutdown_timeout: f64,

    /// Seconds a client may stay silent while sending a request body or not read the
    /// response before its request is given up.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    client_timeout: f64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Command::Web(args) => web(args),
    }
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(CONFIG_ERROR)
}

fn web(args: WebArgs) -> ExitCode {
    let mut descriptors = args.listen.clone();
    if let Some(port) = &args.port {
        tracing::warn!("--port is deprecated; use --listen");
        if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
            descriptors.push(format!("tcp:{port}"));
        } else {
            descriptors.push(port.clone());
        }
    }
    if descriptors.is_empty() {
        descriptors.push("tcp:8080".into());
    }
    // Parse every descriptor before anything starts: a typo stops start-up with status 2.
    let mut endpoints = Vec::new();
    for text in &descriptors {
        match Endpoint::parse(text) {
            Ok(endpoint) => endpoints.push(endpoint),
            Err(err) => return fail(err),
        }
    }
    let seconds = |flag: &str, value: f64| {
        Duration::try_from_secs_f64(value).map_err(|_| {
            format!("{flag} {value} is not valid; expected a number of seconds, 0 or more")
        })
    };
    let shutdown_timeout = match seconds("--shutdown-timeout", args.shutdown_timeout) {
        Ok(timeout) => timeout,
        Err(message) => return fail(message),
    };
    let client_timeout = match seconds("--client-timeout", args.client_timeout) {
        Ok(timeout) if !timeout.is_zero() => timeout,
        _ => {
            return fail(format!(
                "--client-timeout {} is not valid; expected a number of seconds above 0",
                args.client_timeout
            ));
        }
    };

    let runtime = match torsion_wsgi::runtime_builder().build() {
        Ok(runtime) => runtime,
        Err(err) => return fail(format!("cannot start the async runtime: {err}")),
    };
    runtime.block_on(async move {
        // Our handlers first: CPython then leaves SIGINT alone.
        let shutdown = match shutdown_signal() {
            Ok(shutdown) => shutdown,
            Err(err) => return fail(format!("cannot install signal handlers: {err}")),
        };
        if let Err(err) = torsion_wsgi::initialize(&PythonOptions::new(args.pythonpath.clone())) {
            return fail(err);
        }
        let application = match &args.wsgi {
            Some(name) => Application::load(name),
            None => Application::demo(),
        };
        let application = match application {
            Ok(application) => application,
            Err(err) => return fail(err),
        };
        let mut config = ServerConfig::default();
        if let Some(threads) = args.threads {
            config.threads = usize::from(threads);
        }
        if let Some(max) = args.max_body_size {
            config.max_body_size = max;
        }
        config.display_tracebacks = args.display_tracebacks;
        config.shutdown_timeout = shutdown_timeout;
        config.client_timeout = client_timeout;
        tracing::info!(
            application = application.name(),
            threads = config.threads,
            "starting"
        );
        let bridge = match Bridge::new(application, config) {
            Ok(bridge) => bridge,
            Err(err) => return fail(err),
        };
        let mut listeners = Vec::new();
        for endpoint in &endpoints {
            match endpoint.listen().await {
                Ok(listener) => listeners.push(listener),
                Err(err) => return fail(err),
            }
        }
        torsion_wsgi::serve(bridge, listeners, shutdown).await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}

/// Resolves on the first SIGINT or SIGTERM.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        tracing::info!("{name} received: stopping");
    })
}
