//! `torsion`: a WSGI server with Twisted's endpoint descriptors.
//!
//! `torsion web --wsgi myproject.wsgi:application --listen tcp:8080 --listen unix:/run/app.sock`
//!
//! This binary only parses flags (with `twist web`'s names), sets up logging and signals,
//! and wires `torsion-endpoints` listeners to the `torsion-wsgi` server.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Parser, Subcommand};
use torsion_endpoints::Endpoint;
use torsion_endpoints::acme::{
    AcmeSettings, CertificateDirectory, CertificateState, LETS_ENCRYPT, NameStatus,
    is_issuable_name,
};
use torsion_wsgi::site::files::{Files, FilesOptions};
use torsion_wsgi::site::{Resource, Site};
use torsion_wsgi::{Application, PythonOptions, ServerConfig};

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
    Web(Box<WebArgs>),
    /// Inspect, obtain or renew the ACME certificates of a txacme: directory, once (for
    /// cron jobs and automation outside the server).
    Certs(Box<CertsArgs>),
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
    /// The WSGI application at /: package.module.attribute (as Twisted),
    /// package.module:attribute or package.module:factory() (as gunicorn). Without it (and
    /// without --path), a demo page is served.
    #[arg(long, value_name = "NAME")]
    wsgi: Option<String>,

    /// Another WSGI application, at PREFIX (its SCRIPT_NAME): --mount /flask=flask_app:app.
    /// Repeatable; the longest prefix that matches a request's path on a segment boundary
    /// takes it.
    #[arg(long, value_name = "PREFIX=NAME")]
    mount: Vec<String>,

    /// A directory of static files at / (twist web's --path).
    #[arg(long, value_name = "DIR")]
    path: Option<PathBuf>,

    /// A directory of static files at PREFIX: --static /static=./static. Repeatable.
    #[arg(long = "static", value_name = "PREFIX=DIR")]
    static_dirs: Vec<String>,

    /// A name tried for a request naming a directory; repeatable, in order [default:
    /// index.html].
    #[arg(long, short = 'i', value_name = "NAME")]
    index: Vec<String>,

    /// List a directory that has no index file (else 404).
    #[arg(long)]
    directory_listing: bool,

    /// Serve names starting with a dot (.well-known/, .htaccess), which are hidden by
    /// default.
    #[arg(long)]
    dotfiles: bool,

    /// Cache-Control: max-age=SECONDS on every static file.
    #[arg(long, value_name = "SECONDS")]
    max_age: Option<u64>,

    /// EXT=TYPE maps an extension to a content type for static files (--mime-type
    /// foo=text/x-foo); a bare TYPE is the type of files whose extension is unknown, as in
    /// Twisted [default: application/octet-stream]. Repeatable.
    #[arg(long, short = 'm', value_name = "[EXT=]TYPE")]
    mime_type: Vec<String>,

    /// For a static name that does not exist, try it with this extension (/page serves
    /// page.html with --ignore-ext .html); repeatable, in order (twist web's).
    #[arg(long, value_name = "EXT")]
    ignore_ext: Vec<String>,

    /// For a static name that does not exist, serve the first file named NAME.EXT, any EXT
    /// (twist web's).
    #[arg(long)]
    allow_ignore_ext: bool,

    /// Do not serve precompressed siblings (F.br, F.zst, F.gz) in place of F.
    #[arg(long)]
    no_precompressed: bool,

    /// Write a line for every response to FILE, or to standard output for -; off by
    /// default. SIGUSR1 reopens the file, for log rotation. (--logfile is twist web's name.)
    #[arg(long, short = 'l', alias = "logfile", value_name = "FILE")]
    access_log: Option<String>,

    /// The access log's lines: combined (Apache's Combined Log Format), common, or json
    /// (one object a line).
    #[arg(long, value_name = "FORMAT", default_value = "combined")]
    access_log_format: String,

    /// Proxies trusted to name the client: comma-separated IP networks or addresses
    /// (10.0.0.0/8,::1), unix for unix-socket peers, or *. From them, RFC 7239 Forwarded
    /// (or X-Forwarded-For, -Proto and -Host) sets REMOTE_ADDR, wsgi.url_scheme and Host
    /// (gunicorn's name). Default: none.
    #[arg(long, value_name = "NETWORKS")]
    forwarded_allow_ips: Option<String>,

    /// A field for every response, 'Name: value' (twist web's): applications', static
    /// files' and error pages alike; a response that has the field keeps its own.
    /// Repeatable.
    #[arg(long, value_name = "'NAME: VALUE'")]
    add_header: Vec<String>,

    /// Where to listen, as an endpoint descriptor: tcp:8080, tcp6:8080:interface=\:\:1,
    /// unix:/run/app.sock:mode=660, systemd:domain=INET:index=0. Repeat to listen on
    /// several. Default: tcp:8080.
    #[arg(long = "listen", value_name = "DESCRIPTOR")]
    listen: Vec<String>,

    /// Deprecated alias of --listen, as in Twisted; a bare number means tcp:NUMBER.
    #[arg(long, short = 'p', value_name = "DESCRIPTOR")]
    port: Option<String>,

    /// Deprecated, as in Twisted: HTTPS on PORT with --certificate and --privkey; use
    /// --listen ssl:PORT:privateKey=KEY:certKey=CERT.
    #[arg(long, value_name = "PORT")]
    https: Option<u16>,

    /// Deprecated, with --https: the certificate file.
    #[arg(long, short = 'c', value_name = "FILE", default_value = "server.pem")]
    certificate: String,

    /// Deprecated, with --https: the private key file.
    #[arg(long, short = 'k', value_name = "FILE", default_value = "server.pem")]
    privkey: String,

    /// Accepted for twist web's command lines: tracebacks are not shown by default.
    #[arg(long, short = 'n')]
    notracebacks: bool,

    /// twist web only (a Twisted resource class): refused, with what to use instead.
    #[arg(long, hide = true, value_name = "CLASS")]
    class: Option<String>,

    /// twist web only (an .rpy resource script): refused.
    #[arg(long, hide = true, value_name = "FILE")]
    resource_script: Option<String>,

    /// twist web only (a Twisted processor): refused.
    #[arg(long, hide = true, value_name = "EXT=CLASS")]
    processor: Option<String>,

    /// twist web only (~/public_html for users): refused.
    #[arg(long, short = 'u', hide = true)]
    user: bool,

    /// twist web only (a distributed personal web server): refused.
    #[arg(long, hide = true)]
    personal: bool,

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

    /// Request bodies up to this size are read before the application is called, so a
    /// slow client holds no Python thread over them [default: 65536].
    #[arg(long, value_name = "BYTES")]
    request_buffer_size: Option<usize>,

    /// The slowest average upload rate allowed after --upload-grace; slower uploads get
    /// 408. 0 turns the check off [default: 240].
    #[arg(long, value_name = "BYTES_PER_SECOND")]
    min_upload_rate: Option<u64>,

    /// Seconds an upload may run before --min-upload-rate applies.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    upload_grace: f64,

    /// The slowest rate at which a client may read a streamed response, over the time the
    /// server waits for it beyond --download-grace; a slower client is cut off and its
    /// Python thread freed. 0 turns the check off [default: 240].
    #[arg(long, value_name = "BYTES_PER_SECOND")]
    min_download_rate: Option<u64>,

    /// Seconds of waiting for a reading client allowed before --min-download-rate applies.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    download_grace: f64,
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
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(CONFIG_ERROR)
        }
    }
}

/// A configuration error: printed as `error: ...`, exit status 2.
#[derive(Debug)]
struct ConfigError(String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<torsion_endpoints::Error> for ConfigError {
    fn from(err: torsion_endpoints::Error) -> ConfigError {
        ConfigError(err.to_string())
    }
}

impl From<torsion_wsgi::LoadError> for ConfigError {
    fn from(err: torsion_wsgi::LoadError) -> ConfigError {
        ConfigError(err.to_string())
    }
}

impl From<String> for ConfigError {
    fn from(message: String) -> ConfigError {
        ConfigError(message)
    }
}

/// Runs the command; `Err` is a configuration error (exit status 2).
fn run(cli: Cli) -> Result<ExitCode, ConfigError> {
    match cli.command {
        Command::Web(args) => web(*args),
        Command::Certs(args) => certs(*args),
    }
}

/// A duration flag in seconds: 0 or more, or above 0 when `positive`.
fn seconds(flag: &str, value: f64, positive: bool) -> Result<Duration, ConfigError> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !positive || !d.is_zero())
        .ok_or_else(|| {
            let expected = if positive {
                "a number of seconds above 0"
            } else {
                "a number of seconds, 0 or more"
            };
            ConfigError(format!("{flag} {value} is not valid; expected {expected}"))
        })
}

/// The endpoints of `--listen` (and the deprecated `--port`), all parsed before anything
/// starts, so that a typo stops start-up with status 2.
/// Refuses twist web's options for Twisted resources, saying what to use instead.
fn refuse_twisted_only(args: &WebArgs) -> Result<(), ConfigError> {
    let refused = [
        (args.class.is_some(), "--class", "a Twisted resource class"),
        (
            args.resource_script.is_some(),
            "--resource-script",
            "an .rpy resource script",
        ),
        (
            args.processor.is_some(),
            "--processor",
            "a Twisted processor for a file extension",
        ),
        (args.user, "--user", "users' ~/public_html directories"),
        (
            args.personal,
            "--personal",
            "a distributed personal web server",
        ),
    ];
    for (given, option, what) in refused {
        if given {
            return Err(format!(
                "{option} serves {what}, which only Twisted can run: serve a WSGI application with --wsgi (or --mount), or a directory with --path (or --static)"
            )
            .into());
        }
    }
    Ok(())
}

fn endpoints(args: &WebArgs) -> Result<Vec<Endpoint>, ConfigError> {
    refuse_twisted_only(args)?;
    let mut descriptors = args.listen.clone();
    if let Some(port) = &args.port {
        tracing::warn!("--port is deprecated; use --listen");
        if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
            descriptors.push(format!("tcp:{port}"));
        } else {
            descriptors.push(port.clone());
        }
    }
    if let Some(port) = args.https {
        let descriptor = format!(
            "ssl:{port}:privateKey={}:certKey={}",
            torsion_endpoints::quote(&args.privkey),
            torsion_endpoints::quote(&args.certificate)
        );
        tracing::warn!("--https is deprecated (as in Twisted); use --listen {descriptor}");
        descriptors.push(descriptor);
    }
    if descriptors.is_empty() {
        descriptors.push("tcp:8080".into());
    }
    Ok(descriptors
        .iter()
        .map(|text| Endpoint::parse(text))
        .collect::<Result<_, _>>()?)
}

/// The server's settings from the flags.
fn server_config(args: &WebArgs) -> Result<ServerConfig, ConfigError> {
    let mut config = ServerConfig::default();
    if let Some(threads) = args.threads {
        config.threads = usize::from(threads);
    }
    if let Some(max) = args.max_body_size {
        config.max_body_size = max;
    }
    config.display_tracebacks = args.display_tracebacks;
    config.shutdown_timeout = seconds("--shutdown-timeout", args.shutdown_timeout, false)?;
    config.client_timeout = seconds("--client-timeout", args.client_timeout, true)?;
    if let Some(size) = args.request_buffer_size {
        config.request_buffer_size = size;
    }
    if let Some(rate) = args.min_upload_rate {
        config.min_upload_rate = rate;
    }
    config.upload_grace = seconds("--upload-grace", args.upload_grace, false)?;
    if let Some(rate) = args.min_download_rate {
        config.min_download_rate = rate;
    }
    config.download_grace = seconds("--download-grace", args.download_grace, false)?;
    let format: torsion_wsgi::LogFormat = args
        .access_log_format
        .parse()
        .map_err(|err| format!("--access-log-format: {err}"))?;
    if let Some(target) = &args.access_log {
        let destination = match target.as_str() {
            "-" => torsion_wsgi::Destination::Stdout,
            path => torsion_wsgi::Destination::File(PathBuf::from(path)),
        };
        let log = torsion_wsgi::AccessLog::open(destination, format)
            .map_err(|err| format!("--access-log {target}: cannot open it: {err}"))?;
        config.access_log = Some(log);
    }
    if let Some(networks) = &args.forwarded_allow_ips {
        config.forwarded_allow = networks
            .parse()
            .map_err(|err| format!("--forwarded-allow-ips: {err}"))?;
    }
    for field in &args.add_header {
        config
            .add_header(field)
            .map_err(|err| format!("--add-header: {err}"))?;
    }
    Ok(config)
}

/// The site the flags describe: --wsgi and --path at /, --mount and --static at their
/// prefixes; the demo at / when nothing is. Starts Python only when an application is
/// mounted.
fn site(args: &WebArgs, config: ServerConfig) -> Result<Site, ConfigError> {
    let split = |flag: &str, value: &str| -> Result<(String, String), ConfigError> {
        match value.split_once('=') {
            Some((prefix, rest)) if !rest.is_empty() => Ok((prefix.to_owned(), rest.to_owned())),
            _ => Err(format!(
                "{flag} {value:?}: expected PREFIX=VALUE, as in {flag} /static=./static"
            )
            .into()),
        }
    };
    let files_options = files_options(args)?;
    let mut statics = Vec::new();
    if let Some(dir) = &args.path {
        statics.push(("/".to_owned(), dir.clone()));
    }
    for value in &args.static_dirs {
        let (prefix, dir) = split("--static", value)?;
        statics.push((prefix, PathBuf::from(dir)));
    }
    let mut names = Vec::new();
    if let Some(name) = &args.wsgi {
        names.push(("/".to_owned(), name.clone()));
    }
    for value in &args.mount {
        names.push(split("--mount", value)?);
    }
    if args.wsgi.is_some() && args.path.is_some() {
        return Err("--wsgi and --path both serve /: mount one of them elsewhere, as in --static /files=DIR or --mount /app=NAME".to_owned().into());
    }
    let mut mounts = Vec::new();
    for (prefix, dir) in statics {
        let files = Files::new(dir, files_options.clone()).map_err(|err| err.to_string())?;
        mounts.push((prefix, Resource::Files(files)));
    }
    let demo = names.is_empty() && mounts.is_empty();
    if demo || !names.is_empty() {
        torsion_wsgi::initialize(&PythonOptions::new(args.pythonpath.clone()))?;
    }
    for (prefix, name) in names {
        mounts.push((prefix, Resource::Application(Application::load(&name)?)));
    }
    if demo {
        mounts.push(("/".to_owned(), Resource::Application(Application::demo()?)));
    }
    tracing::info!(threads = config.threads, "starting");
    Site::new(mounts, config).map_err(|err| ConfigError(err.to_string()))
}

/// The static files' options from the flags.
fn files_options(args: &WebArgs) -> Result<FilesOptions, ConfigError> {
    let mut options = FilesOptions::default();
    if !args.index.is_empty() {
        options.index = args.index.clone();
    }
    options.listing = args.directory_listing;
    options.dotfiles = args.dotfiles;
    options.max_age = args.max_age.map(Duration::from_secs);
    options.precompressed = !args.no_precompressed;
    options.ignore_ext = args.ignore_ext.clone();
    if args.allow_ignore_ext {
        options.ignore_ext.push("*".to_owned());
    }
    for value in &args.mime_type {
        let (extension, content_type) = match value.split_once('=') {
            Some((extension, content_type)) => (extension.trim_start_matches('.'), content_type),
            None => ("", value.as_str()),
        };
        if http::HeaderValue::from_str(content_type).is_err() || !content_type.contains('/') {
            return Err(format!(
                "--mime-type {value:?}: {content_type:?} is not a content type such as text/plain"
            )
            .into());
        }
        options
            .mime_types
            .insert(extension.to_ascii_lowercase(), content_type.to_owned());
    }
    Ok(options)
}

fn web(args: WebArgs) -> Result<ExitCode, ConfigError> {
    let endpoints = endpoints(&args)?;
    let config = server_config(&args)?;
    let runtime = torsion_wsgi::runtime_builder()
        .build()
        .map_err(|err| format!("cannot start the async runtime: {err}"))?;
    runtime.block_on(async move {
        // Our handlers first: CPython then leaves SIGINT alone.
        let shutdown =
            shutdown_signal().map_err(|err| format!("cannot install signal handlers: {err}"))?;
        let access_log = config.access_log.clone();
        if let Some(log) = access_log.clone() {
            reopen_on_sigusr1(log)
                .map_err(|err| format!("cannot install the SIGUSR1 handler: {err}"))?;
        }
        let site = site(&args, config)?;
        for mount in site.mounts() {
            tracing::info!("mounted {mount}");
        }
        let mut listeners = Vec::new();
        for endpoint in &endpoints {
            listeners.push(endpoint.listen().await?);
        }
        torsion_wsgi::serve(site, listeners, shutdown).await;
        if let Some(log) = access_log {
            log.finish();
        }
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// The ACME settings from `torsion certs`' options, checked as the keywords of the same
/// names are.
fn acme_settings(args: &CertsArgs) -> Result<AcmeSettings, ConfigError> {
    let mut settings = AcmeSettings::new(LETS_ENCRYPT);
    let cacert = args
        .cacert
        .as_ref()
        .map(|p| p.to_string_lossy().into_owned());
    for (setting, value) in [
        ("directory", &args.directory),
        ("email", &args.email),
        ("cacert", &cacert),
        ("challenge", &args.challenge),
        ("domains", &args.domains),
        ("timeout", &args.timeout),
    ] {
        if let Some(value) = value {
            settings
                .set(setting, value)
                .map_err(|err| format!("--{err}"))?;
        }
    }
    Ok(settings)
}

fn certs(args: CertsArgs) -> Result<ExitCode, ConfigError> {
    // Every option is checked before anything touches the disk or the network.
    let settings = acme_settings(&args)?;
    let listen = args.listen.as_deref().map(Endpoint::parse).transpose()?;
    if let CertsAction::Issue { names } = &args.action
        && let Some(bad) = names.iter().find(|n| !is_issuable_name(n))
    {
        return Err(ConfigError(format!(
            "{bad:?} is not a host name that can be issued (such as www.example.com; no wildcards)"
        )));
    }
    let names = match &args.action {
        CertsAction::Status => {
            let directory = CertificateDirectory::open_existing(&args.path, settings)?;
            print!("{}", status_table(&directory.status(), SystemTime::now()));
            return Ok(ExitCode::SUCCESS);
        }
        CertsAction::Issue { names } => Some(names),
        CertsAction::Renew => None,
    };
    let directory = CertificateDirectory::open(&args.path, settings)?;
    let listen = listen.unwrap_or_else(|| directory.default_listen());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| format!("cannot start the async runtime: {err}"))?;
    let outcomes = runtime.block_on(async {
        match names {
            Some(names) => directory.issue(names, &listen).await,
            None => directory.renew(&listen).await,
        }
    })?;
    if outcomes.is_empty() {
        println!(
            "nothing to do: every certificate in {} is current",
            directory.path().display()
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
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
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
/// Reopens the access log on every SIGUSR1, for log rotation (nginx's and Apache's signal
/// for it).
fn reopen_on_sigusr1(log: torsion_wsgi::AccessLog) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut usr1 = signal(SignalKind::user_defined1())?;
    tokio::spawn(async move {
        while usr1.recv().await.is_some() {
            log.reopen();
        }
    });
    Ok(())
}

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
