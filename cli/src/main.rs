//! `torsion`: a WSGI server with Twisted's endpoint descriptors.
//!
//! `torsion web --wsgi myproject.wsgi:application --listen tcp:8080 --listen unix:/run/app.sock`
//!
//! This binary only parses flags (with `twist web`'s names), sets up logging and signals,
//! and wires `torsion-endpoints` listeners to the `torsion-wsgi` server.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clap::{Parser, Subcommand};
use torsion_endpoints::{
    AcmeEndpoint, AcmeManager, CertificateResolver, CertificateState, CertificateStore, Challenge,
    Descriptor, Endpoint, NameStatus, challenge_listener, is_issuable_name,
};
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
    /// Inspect, obtain or renew the ACME certificates of a txacme: directory, once (for
    /// cron jobs and automation outside the server).
    Certs(CertsArgs),
}

/// `torsion certs DIR ACTION`, with the keywords of `txacme:` as options of the same names.
#[derive(Debug, clap::Args)]
struct CertsArgs {
    /// The certificate directory (txsni layout: NAME.pem files, acme-account.key).
    #[arg(value_name = "DIR")]
    path: PathBuf,

    #[command(subcommand)]
    action: CertsAction,

    /// The ACME directory URL [default: Let's Encrypt production].
    #[arg(long, global = true, value_name = "URL")]
    directory: Option<String>,

    /// The account's contact e-mail address.
    #[arg(long, global = true, value_name = "ADDRESS")]
    email: Option<String>,

    /// Extra trust anchors (PEM) for the ACME server's own HTTPS.
    #[arg(long, global = true, value_name = "FILE")]
    cacert: Option<PathBuf>,

    /// tls-alpn-01 or http-01 [default: tls-alpn-01].
    #[arg(long, global = true, value_name = "TYPE")]
    challenge: Option<String>,

    /// Names to manage besides the directory's NAME.pem files, comma-separated.
    #[arg(long, global = true, value_name = "NAMES")]
    domains: Option<String>,

    /// Seconds one issuance may wait for validation [default: 120].
    #[arg(long, global = true, value_name = "SECONDS")]
    timeout: Option<String>,

    /// Where to answer challenges while issuing [default: tcp:443 for tls-alpn-01, tcp:80
    /// for http-01]. The port must be free: a running server renews its own certificates.
    #[arg(long, global = true, value_name = "DESCRIPTOR")]
    listen: Option<String>,
}

#[derive(Debug, Subcommand)]
enum CertsAction {
    /// Per name: issuer, expiry, days left and next renewal (no network access).
    Status,
    /// Obtain a certificate for each NAME now, whatever the directory holds.
    Issue {
        /// Host names.
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
    /// Obtain a certificate for every name that is missing or due for renewal.
    Renew,
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
        Command::Certs(args) => certs(args),
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

fn certs(args: CertsArgs) -> ExitCode {
    // The options are the descriptor keywords: build `txacme:` keyword arguments from them
    // and let the endpoints crate check them exactly as it checks a --listen descriptor.
    let mut descriptor = Descriptor::new("txacme").with_arg(args.path.to_string_lossy());
    for (key, value) in [
        ("directory", args.directory.clone()),
        ("email", args.email.clone()),
        (
            "cacert",
            args.cacert
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
        ),
        ("challenge", args.challenge.clone()),
        ("domains", args.domains.clone()),
        ("timeout", args.timeout.clone()),
    ] {
        if let Some(value) = value {
            descriptor = descriptor.with_kwarg(key, value);
        }
    }
    let default_listen = match args
        .challenge
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("http-01") => "tcp:80",
        _ => "tcp:443",
    };
    let listen = args.listen.clone().unwrap_or_else(|| default_listen.into());
    let endpoint = match Endpoint::parse(
        &descriptor
            .with_inner(&match Descriptor::parse(&listen) {
                Ok(inner) => inner,
                Err(err) => return fail(err),
            })
            .to_string(),
    ) {
        Ok(endpoint) => endpoint,
        Err(err) => return fail(err),
    };
    let Some(acme) = endpoint.downcast_ref::<AcmeEndpoint>() else {
        return fail("internal error: txacme: did not parse as an ACME endpoint");
    };
    if matches!(args.action, CertsAction::Status) && !acme.path().is_dir() {
        return fail(format!("{}: not a directory", acme.path().display()));
    }
    if let CertsAction::Issue { names } = &args.action
        && let Some(bad) = names.iter().find(|n| !is_issuable_name(n))
    {
        return fail(format!(
            "{bad:?} is not a host name that can be issued (such as www.example.com; no wildcards)"
        ));
    }
    let store = match CertificateStore::open(acme.path()) {
        Ok(store) => store,
        Err(err) => return fail(format!("{}: {err}", acme.path().display())),
    };
    let resolver = Arc::new(CertificateResolver::new());
    let manager = match AcmeManager::new(store, acme.settings().clone(), resolver.clone()) {
        Ok(manager) => manager,
        Err(err) => return fail(err),
    };
    if let CertsAction::Status = args.action {
        print!("{}", status_table(&manager.status(), SystemTime::now()));
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return fail(format!("cannot start the async runtime: {err}")),
    };
    runtime.block_on(async move {
        if matches!(args.action, CertsAction::Renew) && manager.due_names().await.is_empty() {
            // Nothing to answer challenges for: do not bind the port at all.
            println!(
                "nothing to do: every certificate in {} is current",
                manager.store().path().display()
            );
            return ExitCode::SUCCESS;
        }
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        match acme.settings().challenge {
            Challenge::TlsAlpn01 => {
                let mut listener = match challenge_listener(acme.inner(), resolver.clone()).await {
                    Ok(listener) => listener,
                    Err(err) => return fail(err),
                };
                // Validations are answered inside the handshake; anything else is dropped.
                tokio::spawn(async move { while listener.accept().await.is_ok() {} });
            }
            Challenge::Http01 => {
                let listener = match acme.inner().listen().await {
                    Ok(listener) => listener,
                    Err(err) => return fail(err),
                };
                tokio::spawn(torsion_wsgi::serve_http01(vec![listener], async move {
                    let _ = stop_rx.await;
                }));
            }
        }
        let outcomes = match &args.action {
            CertsAction::Issue { names } => {
                let mut outcomes = Vec::new();
                for name in names {
                    outcomes.push((
                        name.clone(),
                        manager.issue(&name.to_ascii_lowercase()).await,
                    ));
                }
                outcomes
            }
            _ => manager.renew_due().await,
        };
        let _ = stop_tx.send(());
        if outcomes.is_empty() {
            println!(
                "nothing to do: every certificate in {} is current",
                manager.store().path().display()
            );
        }
        let mut failed = false;
        for (name, outcome) in outcomes {
            match outcome {
                Ok(facts) => println!(
                    "{name}: issued by {}, valid until {} ({} days)",
                    facts.issuer,
                    utc(facts.not_after),
                    facts.days_left(SystemTime::now())
                ),
                Err(err) => {
                    failed = true;
                    eprintln!("error: {err}");
                }
            }
        }
        if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    })
}

/// `torsion certs status` output: one line per name, in columns.
fn status_table(names: &[NameStatus], now: SystemTime) -> String {
    let mut rows = vec![[
        "NAME".to_owned(),
        "ISSUER".to_owned(),
        "EXPIRES".to_owned(),
        "DAYS LEFT".to_owned(),
        "NEXT RENEWAL".to_owned(),
    ]];
    for status in names {
        let when = |at: SystemTime| if at <= now { "now".to_owned() } else { utc(at) };
        rows.push(match &status.state {
            CertificateState::Present(facts) => [
                status.name.clone(),
                facts.issuer.clone(),
                utc(facts.not_after),
                facts.days_left(now).to_string(),
                when(status.renew_at),
            ],
            CertificateState::Requested => row(&status.name, "(requested: empty file)", "now"),
            CertificateState::Missing => row(&status.name, "(no file: from --domains)", "now"),
            CertificateState::Unreadable(reason) => {
                row(&status.name, &format!("(unusable: {reason})"), "now")
            }
        });
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut text = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        text.push_str(line.join("  ").trim_end());
        text.push('\n');
    }
    text
}

fn row(name: &str, issuer: &str, renewal: &str) -> [String; 5] {
    [
        name.to_owned(),
        issuer.to_owned(),
        "-".into(),
        "-".into(),
        renewal.to_owned(),
    ]
}

/// `2026-11-21 13:45 UTC`.
fn utc(at: SystemTime) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::from(at)
        .format(&format)
        .unwrap_or_else(|_| "?".into())
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
