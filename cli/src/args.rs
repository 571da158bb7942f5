//! The command line: `twist web`'s option names for `torsion web`, `txacme:`'s keywords for
//! `torsion certs`. One definition serves the binary, `python -m torsion` and the keywords
//! of the Python API (see [`crate::python`]).

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "torsion",
    version,
    about = "A WSGI server for Python web applications, written in Rust"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Serve a WSGI application (or the built-in demo page) over HTTP/1.1 and HTTP/2.
    Web(Box<WebArgs>),
    /// Inspect, obtain or renew the ACME certificates of a txacme: directory, once (for
    /// cron jobs and automation outside the server).
    Certs(Box<CertsArgs>),
}

/// `torsion certs DIR ACTION`, with the keywords of `txacme:` as options of the same names.
#[derive(Debug, clap::Args)]
pub(crate) struct CertsArgs {
    /// The certificate directory (txsni layout: NAME.pem files, acme-account.key).
    #[arg(value_name = "DIR")]
    pub(crate) path: PathBuf,

    #[command(subcommand)]
    pub(crate) action: CertsAction,

    /// The ACME directory URL [default: Let's Encrypt production].
    #[arg(long, global = true, value_name = "URL")]
    pub(crate) directory: Option<String>,

    /// The account's contact e-mail address.
    #[arg(long, global = true, value_name = "ADDRESS")]
    pub(crate) email: Option<String>,

    /// Extra trust anchors (PEM) for the ACME server's own HTTPS.
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) cacert: Option<PathBuf>,

    /// tls-alpn-01 or http-01 [default: tls-alpn-01].
    #[arg(long, global = true, value_name = "TYPE")]
    pub(crate) challenge: Option<String>,

    /// Names to manage besides the directory's NAME.pem files, comma-separated.
    #[arg(long, global = true, value_name = "NAMES")]
    pub(crate) domains: Option<String>,

    /// Seconds one issuance may wait for validation [default: 120].
    #[arg(long, global = true, value_name = "SECONDS")]
    pub(crate) timeout: Option<String>,

    /// Where to answer challenges while issuing [default: tcp:443 for tls-alpn-01, tcp:80
    /// for http-01; with --store, nowhere: the fleet's servers answer]. The port must be
    /// free: a running server renews its own certificates.
    #[arg(long, global = true, value_name = "DESCRIPTOR")]
    pub(crate) listen: Option<String>,

    /// The Redis store a fleet of servers shares (redis://[:password@]host[:port][/db] or
    /// rediss://...): status copies what the fleet holds into DIR first, and issue and
    /// renew take the fleet's lock on each name and store the result there.
    #[arg(long, global = true, value_name = "URL")]
    pub(crate) store: Option<String>,

    /// The prefix of the store's keys [default: torsion:acme].
    #[arg(long, global = true, value_name = "PREFIX")]
    pub(crate) prefix: Option<String>,

    /// Trust anchors (PEM) for a rediss:// store's certificate.
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) store_ca: Option<PathBuf>,

    /// Seconds the fleet's lock on a name outlives a holder that stops renewing it, at least
    /// 10 [default: 60].
    #[arg(long, global = true, value_name = "SECONDS")]
    pub(crate) lock: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CertsAction {
    /// Per name: issuer, expiry, days left and next renewal (no network access, but for
    /// copying a --store first).
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
pub(crate) struct WebArgs {
    /// The WSGI application at /: package.module.attribute (as Twisted),
    /// package.module:attribute or package.module:factory() (as gunicorn). Without it (and
    /// without --path), a demo page is served.
    #[arg(long, value_name = "NAME")]
    pub(crate) wsgi: Option<String>,

    /// Another WSGI application, at PREFIX (its SCRIPT_NAME): --mount /flask=flask_app:app.
    /// Repeatable; the longest prefix that matches a request's path on a segment boundary
    /// takes it.
    #[arg(long, value_name = "PREFIX=NAME")]
    pub(crate) mount: Vec<String>,

    /// A directory of static files at / (twist web's --path).
    #[arg(long, value_name = "DIR")]
    pub(crate) path: Option<PathBuf>,

    /// A directory of static files at PREFIX: --static /static=./static. Repeatable.
    #[arg(long = "static", value_name = "PREFIX=DIR")]
    pub(crate) static_dirs: Vec<String>,

    /// A name tried for a request naming a directory; repeatable, in order [default:
    /// index.html].
    #[arg(long, short = 'i', value_name = "NAME")]
    pub(crate) index: Vec<String>,

    /// List a directory that has no index file (else 404).
    #[arg(long)]
    pub(crate) directory_listing: bool,

    /// Serve names starting with a dot (.well-known/, .htaccess), which are hidden by
    /// default.
    #[arg(long)]
    pub(crate) dotfiles: bool,

    /// Cache-Control: max-age=SECONDS on every static file.
    #[arg(long, value_name = "SECONDS")]
    pub(crate) max_age: Option<u64>,

    /// EXT=TYPE maps an extension to a content type for static files (--mime-type
    /// foo=text/x-foo); a bare TYPE is the type of files whose extension is unknown, as in
    /// Twisted [default: application/octet-stream]. Repeatable.
    #[arg(long, short = 'm', value_name = "[EXT=]TYPE")]
    pub(crate) mime_type: Vec<String>,

    /// For a static name that does not exist, try it with this extension (/page serves
    /// page.html with --ignore-ext .html); repeatable, in order (twist web's).
    #[arg(long, value_name = "EXT")]
    pub(crate) ignore_ext: Vec<String>,

    /// For a static name that does not exist, serve the first file named NAME.EXT, any EXT
    /// (twist web's).
    #[arg(long)]
    pub(crate) allow_ignore_ext: bool,

    /// Do not serve precompressed siblings (F.br, F.zst, F.gz) in place of F.
    #[arg(long)]
    pub(crate) no_precompressed: bool,

    /// Write a line for every response to FILE, or to standard output for -; off by
    /// default. SIGUSR1 reopens the file, for log rotation. (--logfile is twist web's name.)
    #[arg(long, short = 'l', alias = "logfile", value_name = "FILE")]
    pub(crate) access_log: Option<String>,

    /// The access log's lines: combined (Apache's Combined Log Format), common, or json
    /// (one object a line).
    #[arg(long, value_name = "FORMAT", default_value = "combined")]
    pub(crate) access_log_format: String,

    /// Proxies trusted to name the client: comma-separated IP networks or addresses
    /// (10.0.0.0/8,::1), unix for unix-socket peers, or *. From them, RFC 7239 Forwarded
    /// (or X-Forwarded-For, -Proto and -Host) sets REMOTE_ADDR, wsgi.url_scheme and Host
    /// (gunicorn's name). Default: none.
    #[arg(long, value_name = "NETWORKS")]
    pub(crate) forwarded_allow_ips: Option<String>,

    /// A field for every response, 'Name: value' (twist web's): applications', static
    /// files' and error pages alike; a response that has the field keeps its own.
    /// Repeatable.
    #[arg(long, value_name = "'NAME: VALUE'")]
    pub(crate) add_header: Vec<String>,

    /// Where to listen, as an endpoint descriptor: tcp:8080, tcp6:8080:interface=\:\:1,
    /// unix:/run/app.sock:mode=660, systemd:domain=INET:index=0. Repeat to listen on
    /// several. Default: tcp:8080.
    #[arg(long = "listen", value_name = "DESCRIPTOR")]
    pub(crate) listen: Vec<String>,

    /// Deprecated alias of --listen, as in Twisted; a bare number means tcp:NUMBER.
    #[arg(long, short = 'p', value_name = "DESCRIPTOR")]
    pub(crate) port: Option<String>,

    /// Deprecated, as in Twisted: HTTPS on PORT with --certificate and --privkey; use
    /// --listen ssl:PORT:privateKey=KEY:certKey=CERT.
    #[arg(long, value_name = "PORT")]
    pub(crate) https: Option<u16>,

    /// Deprecated, with --https: the certificate file.
    #[arg(long, short = 'c', value_name = "FILE", default_value = "server.pem")]
    pub(crate) certificate: String,

    /// Deprecated, with --https: the private key file.
    #[arg(long, short = 'k', value_name = "FILE", default_value = "server.pem")]
    pub(crate) privkey: String,

    /// Accepted for twist web's command lines: tracebacks are not shown by default.
    #[arg(long, short = 'n')]
    pub(crate) notracebacks: bool,

    /// twist web only (a Twisted resource class): refused, with what to use instead.
    #[arg(long, hide = true, value_name = "CLASS")]
    pub(crate) class: Option<String>,

    /// twist web only (an .rpy resource script): refused.
    #[arg(long, hide = true, value_name = "FILE")]
    pub(crate) resource_script: Option<String>,

    /// twist web only (a Twisted processor): refused.
    #[arg(long, hide = true, value_name = "EXT=CLASS")]
    pub(crate) processor: Option<String>,

    /// twist web only (~/public_html for users): refused.
    #[arg(long, short = 'u', hide = true)]
    pub(crate) user: bool,

    /// twist web only (a distributed personal web server): refused.
    #[arg(long, hide = true)]
    pub(crate) personal: bool,

    /// Worker processes, each a whole server with its own Python, sharing the listeners that
    /// a supervisor process opens once; a number, or auto for one per CPU core [default: 1,
    /// no supervisor].
    #[arg(long, value_name = "N", value_parser = parse_workers)]
    pub(crate) workers: Option<usize>,

    /// With --workers: a worker that has answered this many requests is replaced (the new
    /// one serving first), to contain memory growth; 0 or absent: never (gunicorn's name).
    #[arg(long, value_name = "N")]
    pub(crate) max_requests: Option<u64>,

    /// With --max-requests: add a random 0 to N to each worker's share, so that the workers
    /// are not all replaced at once (gunicorn's name) [default: 0].
    #[arg(long, value_name = "N")]
    pub(crate) max_requests_jitter: Option<u64>,

    /// With --workers: a worker whose resident memory exceeds this many megabytes (MB,
    /// 10^6 bytes) is replaced (the new one serving first); checked every second.
    #[arg(long, value_name = "MB")]
    pub(crate) max_worker_memory: Option<u64>,

    /// For development: watch the application's source (the working directory and the
    /// --pythonpath directories) and replace the workers, as SIGHUP does, when a file
    /// changes; the sockets stay open. A change that breaks the import is logged, and the
    /// old workers keep serving until the next change.
    #[arg(long)]
    pub(crate) reload: bool,

    /// With --reload: the files that count, as glob patterns matched against the whole path
    /// (* also matches /, as watchmedo's --patterns); repeatable [default: *.py].
    #[arg(long, value_name = "GLOB")]
    pub(crate) reload_include: Vec<String>,

    /// With --reload: files to leave out, as glob patterns; repeatable. Hidden directories
    /// (.venv, .git) and __pycache__ are always left out.
    #[arg(long, value_name = "GLOB")]
    pub(crate) reload_exclude: Vec<String>,

    /// A repeating task, SECONDS=module:callable (such as 30=myapp.tasks:refresh): the
    /// callable, which takes no argument, is called at start-up and then every SECONDS from
    /// the start of the previous call, on the Python threads, never two calls at once (as
    /// Twisted's TimerService); an exception is logged and the timer goes on; repeatable.
    #[arg(long, value_name = "SECONDS=NAME")]
    pub(crate) timer: Vec<String>,

    /// Serve the control channel on this endpoint (any descriptor, such as
    /// unix:/run/torsion/control.sock:mode=600 or tcp:9000:interface=127.0.0.1): JSON over
    /// HTTP for /params, /health, /metrics and /status. On anything but a unix socket it
    /// needs --control-token-file.
    #[arg(long, value_name = "DESCRIPTOR")]
    pub(crate) control: Option<String>,

    /// A file holding the control channel's token: every request must carry
    /// Authorization: Bearer <token>. Required unless --control is a unix socket, whose file
    /// mode is then the access control.
    #[arg(long, value_name = "FILE")]
    pub(crate) control_token_file: Option<PathBuf>,

    /// A JSON object of live parameters, loaded at start (created at the first change if
    /// missing); each change through the control channel is written back to it atomically.
    #[arg(long, value_name = "FILE")]
    pub(crate) params_file: Option<PathBuf>,

    /// Python threads running the application [default: 2 x CPU cores, at least 4].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) threads: Option<u16>,

    /// Show Python tracebacks on 500 pages (they are always logged).
    #[arg(long)]
    pub(crate) display_tracebacks: bool,

    /// A directory to put first on sys.path; repeatable.
    #[arg(long = "pythonpath", value_name = "DIR")]
    pub(crate) pythonpath: Vec<PathBuf>,

    /// A Python file that configures the server, as gunicorn.conf.py does: module-level
    /// names of these options (listen = ["tcp:8080"], threads = 8) and a torsion.Site named
    /// site; flags given here override it.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,

    /// Largest request body accepted, in bytes; larger ones get 413 [default: 1 GiB].
    #[arg(long, value_name = "BYTES")]
    pub(crate) max_body_size: Option<u64>,

    /// Seconds in-flight requests may take to finish after SIGINT or SIGTERM.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    pub(crate) shutdown_timeout: f64,

    /// Seconds a client may stay silent while sending a request body or not read the
    /// response before its request is given up.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    pub(crate) client_timeout: f64,

    /// Request bodies up to this size are read before the application is called, so a
    /// slow client holds no Python thread over them [default: 65536].
    #[arg(long, value_name = "BYTES")]
    pub(crate) request_buffer_size: Option<usize>,

    /// The slowest average upload rate allowed after --upload-grace; slower uploads get
    /// 408. 0 turns the check off [default: 240].
    #[arg(long, value_name = "BYTES_PER_SECOND")]
    pub(crate) min_upload_rate: Option<u64>,

    /// Seconds an upload may run before --min-upload-rate applies.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    pub(crate) upload_grace: f64,

    /// The slowest rate at which a client may read a streamed response, over the time the
    /// server waits for it beyond --download-grace; a slower client is cut off and its
    /// Python thread freed. 0 turns the check off [default: 240].
    #[arg(long, value_name = "BYTES_PER_SECOND")]
    pub(crate) min_download_rate: Option<u64>,

    /// Seconds of waiting for a reading client allowed before --min-download-rate applies.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    pub(crate) download_grace: f64,
}

/// Parses a command line (`argv` starting with the program name); with `torsion web`, also
/// the options given on it (not left at their defaults), by their Python keywords
/// (`--max-body-size` is `max_body_size`), so that a `--config` file does not override
/// them.
///
/// # Errors
/// clap's error for bad usage, `--help` or `--version`.
pub(crate) fn parse(
    argv: impl IntoIterator<Item = std::ffi::OsString>,
) -> Result<(Cli, Vec<String>), clap::Error> {
    let command = Cli::command();
    let matches = command.clone().try_get_matches_from(argv)?;
    let mut given = Vec::new();
    if let Some(("web", web)) = matches.subcommand()
        && let Some(web_command) = command.find_subcommand("web")
    {
        for arg in web_command.get_arguments() {
            let id = arg.get_id().as_str();
            if web.value_source(id) == Some(ValueSource::CommandLine)
                && let Some(long) = arg.get_long()
            {
                given.push(long.replace('-', "_"));
            }
        }
    }
    Ok((Cli::from_arg_matches(&matches)?, given))
}

/// `--workers`: a number from 1, or `auto` for the number of CPU cores this process may run
/// on.
fn parse_workers(text: &str) -> Result<usize, String> {
    if text == "auto" {
        return Ok(std::thread::available_parallelism().map_or(1, usize::from));
    }
    match text.parse::<usize>() {
        Ok(n) if (1..=1024).contains(&n) => Ok(n),
        _ => Err("expected a number of processes from 1 to 1024, or auto".into()),
    }
}
