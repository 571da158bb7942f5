"""Type stub of the torsion package (written by scripts/python_stub.py: edit that).

The keywords of serve, Server and Site are torsion web's options; see the package's
docstring for how values are given.
"""

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple, Union

from ._torsion import (
    ApplicationError as ApplicationError,
    DescriptorError as DescriptorError,
    ListenError as ListenError,
    OptionError as OptionError,
    __version__ as __version__,
)

WSGIApplication = Callable[..., Iterable[bytes]]

class Params(Mapping[str, Any]):
    def snapshot(self) -> Mapping[str, Any]: ...
    def __getitem__(self, name: str) -> Any: ...
    def __iter__(self) -> Iterator[str]: ...
    def __len__(self) -> int: ...

params: Params

def main(argv: Iterable[str] | None = None) -> int: ...

class Descriptor(NamedTuple):
    kind: str
    args: tuple[str, ...]
    kwargs: dict[str, str]
    canonical: str

def parse_descriptor(text: str) -> Descriptor: ...

class Static:
    directory: str
    options: dict[str, Any]
    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        index: str | Iterable[str] | None = None,
        directory_listing: bool | None = None,
        dotfiles: bool | None = None,
        max_age: int | None = None,
        mime_type: str | Iterable[str] | Mapping[str, str] | None = None,
        ignore_ext: str | Iterable[str] | None = None,
        allow_ignore_ext: bool | None = None,
        no_precompressed: bool | None = None,
    ) -> None: ...

Resource = Union[WSGIApplication, str, Static]

class Site:
    options: dict[str, Any]
    mounts: list[tuple[str, Resource]]
    headers: list[str]
    listeners: list[str]
    protocols: dict[str, tuple[str, ...]]
    timers: list[tuple[float, Callable[[], object]]]
    def __init__(
        self,
        *,
        # --wsgi: The WSGI application at /: package.module.attribute (as Twisted),
        # package.module:attribute or package.module:factory() (as gunicorn). Without it (and
        # without --path), a demo page is served
        wsgi: str | os.PathLike[str] | None = None,
        # --mount: Another WSGI application, at PREFIX (its SCRIPT_NAME): --mount
        # /flask=flask_app:app. Repeatable; the longest prefix that matches a request's path
        # on a segment boundary takes it
        mount: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | Mapping[str, str] | None = None,
        # --path: A directory of static files at / (twist web's --path)
        path: str | os.PathLike[str] | None = None,
        # --static: A directory of static files at PREFIX: --static /static=./static.
        # Repeatable
        static: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | Mapping[str, str] | None = None,
        # --index: A name tried for a request naming a directory; repeatable, in order
        # [default: index.html]
        index: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | Mapping[str, str] | None = None,
        # --directory-listing: List a directory that has no index file (else 404)
        directory_listing: bool | None = None,
        # --dotfiles: Serve names starting with a dot (.well-known/, .htaccess), which are
        # hidden by default
        dotfiles: bool | None = None,
        # --max-age: Cache-Control: max-age=SECONDS on every static file
        max_age: int | float | None = None,
        # --mime-type: EXT=TYPE maps an extension to a content type for static files (--mime-
        # type foo=text/x-foo); a bare TYPE is the type of files whose extension is unknown,
        # as in Twisted [default: application/octet-stream]. Repeatable
        mime_type: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | Mapping[str, str] | None = None,
        # --ignore-ext: For a static name that does not exist, try it with this extension
        # (/page serves page.html with --ignore-ext .html); repeatable, in order (twist web's)
        ignore_ext: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | Mapping[str, str] | None = None,
        # --allow-ignore-ext: For a static name that does not exist, serve the first file
        # named NAME.EXT, any EXT (twist web's)
        allow_ignore_ext: bool | None = None,
        # --no-precompressed: Do not serve precompressed siblings (F.br, F.zst, F.gz) in place
        # of F
        no_precompressed: bool | None = None,
        # --access-log: Write a line for every response to FILE, or to standard output for -;
        # off by default. SIGUSR1 reopens the file, for log rotation. (--logfile is twist
        # web's name.)
        access_log: str | os.PathLike[str] | None = None,
        # --access-log-format: The access log's lines: combined (Apache's Combined Log
        # Format), common, or json (one object a line) [default: combined]
        access_log_format: str | os.PathLike[str] | None = None,
        # --forwarded-allow-ips: Proxies trusted to name the client: comma-separated IP
        # networks or addresses (10.0.0.0/8,::1), unix for unix-socket peers, or *. From them,
        # RFC 7239 Forwarded (or X-Forwarded-For, -Proto and -Host) sets REMOTE_ADDR,
        # wsgi.url_scheme and Host (gunicorn's name). Default: none
        forwarded_allow_ips: str | os.PathLike[str] | None = None,
        # --add-header: A field for every response, 'Name: value' (twist web's):
        # applications', static files' and error pages alike; a response that has the field
        # keeps its own. Repeatable
        add_header: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | Mapping[str, str] | None = None,
        # --listen: Where to listen, as an endpoint descriptor: tcp:8080,
        # tcp6:8080:interface=\:\:1, unix:/run/app.sock:mode=660, systemd:domain=INET:index=0.
        # Repeat to listen on several. Default: tcp:8080
        listen: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | Mapping[str, str] | None = None,
        # --port: Deprecated alias of --listen, as in Twisted; a bare number means tcp:NUMBER
        port: str | os.PathLike[str] | None = None,
        # --https: Deprecated, as in Twisted: HTTPS on PORT with --certificate and --privkey;
        # use --listen ssl:PORT:privateKey=KEY:certKey=CERT
        https: int | float | None = None,
        # --certificate: Deprecated, with --https: the certificate file [default: server.pem]
        certificate: str | os.PathLike[str] | None = None,
        # --privkey: Deprecated, with --https: the private key file [default: server.pem]
        privkey: str | os.PathLike[str] | None = None,
        # --notracebacks: Accepted for twist web's command lines: tracebacks are not shown by
        # default
        notracebacks: bool | None = None,
        # --workers: Worker processes, each a whole server with its own Python, sharing the
        # listeners that a supervisor process opens once; a number, or auto for one per CPU
        # core [default: 1, no supervisor]
        workers: int | str | None = None,
        # --max-requests: With --workers: a worker that has answered this many requests is
        # replaced (the new one serving first), to contain memory growth; 0 or absent: never
        # (gunicorn's name)
        max_requests: int | float | None = None,
        # --max-requests-jitter: With --max-requests: add a random 0 to N to each worker's
        # share, so that the workers are not all replaced at once (gunicorn's name) [default:
        # 0]
        max_requests_jitter: int | float | None = None,
        # --max-worker-memory: With --workers: a worker whose resident memory exceeds this
        # many megabytes (MB, 10^6 bytes) is replaced (the new one serving first); checked
        # every second
        max_worker_memory: str | os.PathLike[str] | None = None,
        # --reload: For development: watch the application's source (the working directory and
        # the --pythonpath directories) and replace the workers, as SIGHUP does, when a file
        # changes; the sockets stay open. A change that breaks the import is logged, and the
        # old workers keep serving until the next change
        reload: bool | None = None,
        # --reload-include: With --reload: the files that count, as glob patterns matched
        # against the whole path (* also matches /, as watchmedo's --patterns); repeatable
        # [default: *.py]
        reload_include: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | Mapping[str, str] | None = None,
        # --reload-exclude: With --reload: files to leave out, as glob patterns; repeatable.
        # Hidden directories (.venv, .git) and __pycache__ are always left out
        reload_exclude: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | Mapping[str, str] | None = None,
        # --timer: A repeating task, SECONDS=module:callable (such as 30=myapp.tasks:refresh):
        # the callable, which takes no argument, is called at start-up and then every SECONDS
        # from the start of the previous call, on the Python threads, never two calls at once
        # (as Twisted's TimerService); an exception is logged and the timer goes on;
        # repeatable
        timer: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | Mapping[str, str] | None = None,
        # --control: Serve the control channel on this endpoint (any descriptor, such as
        # unix:/run/torsion/control.sock:mode=600 or tcp:9000:interface=127.0.0.1): JSON over
        # HTTP for /params, /health, /metrics and /status. On anything but a unix socket it
        # needs --control-token-file
        control: str | os.PathLike[str] | None = None,
        # --control-token-file: A file holding the control channel's token: every request must
        # carry Authorization: Bearer <token>. Required unless --control is a unix socket,
        # whose file mode is then the access control
        control_token_file: str | os.PathLike[str] | None = None,
        # --params-file: A JSON object of live parameters, loaded at start (created at the
        # first change if missing); each change through the control channel is written back to
        # it atomically
        params_file: str | os.PathLike[str] | None = None,
        # --threads: Python threads running the application [default: 2 x CPU cores, at least
        # 4]
        threads: int | float | None = None,
        # --display-tracebacks: Show Python tracebacks on 500 pages (they are always logged)
        display_tracebacks: bool | None = None,
        # --pythonpath: A directory to put first on sys.path; repeatable
        pythonpath: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | Mapping[str, str] | None = None,
        # --max-body-size: Largest request body accepted, in bytes; larger ones get 413
        # [default: 1 GiB]
        max_body_size: int | float | None = None,
        # --shutdown-timeout: Seconds in-flight requests may take to finish after SIGINT or
        # SIGTERM [default: 30]
        shutdown_timeout: int | float | None = None,
        # --client-timeout: Seconds a client may stay silent while sending a request body or
        # not read the response before its request is given up [default: 60]
        client_timeout: int | float | None = None,
        # --request-buffer-size: Request bodies up to this size are read before the
        # application is called, so a slow client holds no Python thread over them [default:
        # 65536]
        request_buffer_size: int | float | None = None,
        # --min-upload-rate: The slowest average upload rate allowed after --upload-grace;
        # slower uploads get 408. 0 turns the check off [default: 240]
        min_upload_rate: int | float | None = None,
        # --upload-grace: Seconds an upload may run before --min-upload-rate applies [default:
        # 5]
        upload_grace: int | float | None = None,
        # --min-download-rate: The slowest rate at which a client may read a streamed
        # response, over the time the server waits for it beyond --download-grace; a slower
        # client is cut off and its Python thread freed. 0 turns the check off [default: 240]
        min_download_rate: int | float | None = None,
        # --download-grace: Seconds of waiting for a reading client allowed before --min-
        # download-rate applies [default: 5]
        download_grace: int | float | None = None,
    ) -> None: ...
    def mount(self, prefix: str, resource: Resource) -> None: ...
    def add_header(self, field: str) -> None: ...
    def timer(self, seconds: float, task: Callable[[], object]) -> None: ...
    def listen(self, descriptor: str, *, protocols: Iterable[str] | None = None) -> None: ...

class Server:
    def __init__(
        self,
        app: Resource | Site | None = None,
        *,
        # --wsgi: The WSGI application at /: package.module.attribute (as Twisted),
        # package.module:attribute or package.module:factory() (as gunicorn). Without it (and
        # without --path), a demo page is served
        wsgi: str | os.PathLike[str] | None = None,
        # --mount: Another WSGI application, at PREFIX (its SCRIPT_NAME): --mount
        # /flask=flask_app:app. Repeatable; the longest prefix that matches a request's path
        # on a segment boundary takes it
        mount: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | Mapping[str, str] | None = None,
        # --path: A directory of static files at / (twist web's --path)
        path: str | os.PathLike[str] | None = None,
        # --static: A directory of static files at PREFIX: --static /static=./static.
        # Repeatable
        static: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | Mapping[str, str] | None = None,
        # --index: A name tried for a request naming a directory; repeatable, in order
        # [default: index.html]
        index: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | Mapping[str, str] | None = None,
        # --directory-listing: List a directory that has no index file (else 404)
        directory_listing: bool | None = None,
        # --dotfiles: Serve names starting with a dot (.well-known/, .htaccess), which are
        # hidden by default
        dotfiles: bool | None = None,
        # --max-age: Cache-Control: max-age=SECONDS on every static file
        max_age: int | float | None = None,
        # --mime-type: EXT=TYPE maps an extension to a content type for static files (--mime-
        # type foo=text/x-foo); a bare TYPE is the type of files whose extension is unknown,
        # as in Twisted [default: application/octet-stream]. Repeatable
        mime_type: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | Mapping[str, str] | None = None,
        # --ignore-ext: For a static name that does not exist, try it with this extension
        # (/page serves page.html with --ignore-ext .html); repeatable, in order (twist web's)
        ignore_ext: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | Mapping[str, str] | None = None,
        # --allow-ignore-ext: For a static name that does not exist, serve the first file
        # named NAME.EXT, any EXT (twist web's)
        allow_ignore_ext: bool | None = None,
        # --no-precompressed: Do not serve precompressed siblings (F.br, F.zst, F.gz) in place
        # of F
        no_precompressed: bool | None = None,
        # --access-log: Write a line for every response to FILE, or to standard output for -;
        # off by default. SIGUSR1 reopens the file, for log rotation. (--logfile is twist
        # web's name.)
        access_log: str | os.PathLike[str] | None = None,
        # --access-log-format: The access log's lines: combined (Apache's Combined Log
        # Format), common, or json (one object a line) [default: combined]
        access_log_format: str | os.PathLike[str] | None = None,
        # --forwarded-allow-ips: Proxies trusted to name the client: comma-separated IP
        # networks or addresses (10.0.0.0/8,::1), unix for unix-socket peers, or *. From them,
        # RFC 7239 Forwarded (or X-Forwarded-For, -Proto and -Host) sets REMOTE_ADDR,
        # wsgi.url_scheme and Host (gunicorn's name). Default: none
        forwarded_allow_ips: str | os.PathLike[str] | None = None,
        # --add-header: A field for every response, 'Name: value' (twist web's):
        # applications', static files' and error pages alike; a response that has the field
        # keeps its own. Repeatable
        add_header: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | Mapping[str, str] | None = None,
        # --listen: Where to listen, as an endpoint descriptor: tcp:8080,
        # tcp6:8080:interface=\:\:1, unix:/run/app.sock:mode=660, systemd:domain=INET:index=0.
        # Repeat to listen on several. Default: tcp:8080
        listen: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | Mapping[str, str] | None = None,
        # --port: Deprecated alias of --listen, as in Twisted; a bare number means tcp:NUMBER
        port: str | os.PathLike[str] | None = None,
        # --https: Deprecated, as in Twisted: HTTPS on PORT with --certificate and --privkey;
        # use --listen ssl:PORT:privateKey=KEY:certKey=CERT
        https: int | float | None = None,
        # --certificate: Deprecated, with --https: the certificate file [default: server.pem]
        certificate: str | os.PathLike[str] | None = None,
        # --privkey: Deprecated, with --https: the private key file [default: server.pem]
        privkey: str | os.PathLike[str] | None = None,
        # --notracebacks: Accepted for twist web's command lines: tracebacks are not shown by
        # default
        notracebacks: bool | None = None,
        # --workers: Worker processes, each a whole server with its own Python, sharing the
        # listeners that a supervisor process opens once; a number, or auto for one per CPU
        # core [default: 1, no supervisor]
        workers: int | str | None = None,
        # --max-requests: With --workers: a worker that has answered this many requests is
        # replaced (the new one serving first), to contain memory growth; 0 or absent: never
        # (gunicorn's name)
        max_requests: int | float | None = None,
        # --max-requests-jitter: With --max-requests: add a random 0 to N to each worker's
        # share, so that the workers are not all replaced at once (gunicorn's name) [default:
        # 0]
        max_requests_jitter: int | float | None = None,
        # --max-worker-memory: With --workers: a worker whose resident memory exceeds this
        # many megabytes (MB, 10^6 bytes) is replaced (the new one serving first); checked
        # every second
        max_worker_memory: str | os.PathLike[str] | None = None,
        # --reload: For development: watch the application's source (the working directory and
        # the --pythonpath directories) and replace the workers, as SIGHUP does, when a file
        # changes; the sockets stay open. A change that breaks the import is logged, and the
        # old workers keep serving until the next change
        reload: bool | None = None,
        # --reload-include: With --reload: the files that count, as glob patterns matched
        # against the whole path (* also matches /, as watchmedo's --patterns); repeatable
        # [default: *.py]
        reload_include: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | Mapping[str, str] | None = None,
        # --reload-exclude: With --reload: files to leave out, as glob patterns; repeatable.
        # Hidden directories (.venv, .git) and __pycache__ are always left out
        reload_exclude: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | Mapping[str, str] | None = None,
        # --timer: A repeating task, SECONDS=module:callable (such as 30=myapp.tasks:refresh):
        # the callable, which takes no argument, is called at start-up and then every SECONDS
        # from the start of the previous call, on the Python threads, never two calls at once
        # (as Twisted's TimerService); an exception is logged and the timer goes on;
        # repeatable
        timer: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | Mapping[str, str] | None = None,
        # --control: Serve the control channel on this endpoint (any descriptor, such as
        # unix:/run/torsion/control.sock:mode=600 or tcp:9000:interface=127.0.0.1): JSON over
        # HTTP for /params, /health, /metrics and /status. On anything but a unix socket it
        # needs --control-token-file
        control: str | os.PathLike[str] | None = None,
        # --control-token-file: A file holding the control channel's token: every request must
        # carry Authorization: Bearer <token>. Required unless --control is a unix socket,
        # whose file mode is then the access control
        control_token_file: str | os.PathLike[str] | None = None,
        # --params-file: A JSON object of live parameters, loaded at start (created at the
        # first change if missing); each change through the control channel is written back to
        # it atomically
        params_file: str | os.PathLike[str] | None = None,
        # --threads: Python threads running the application [default: 2 x CPU cores, at least
        # 4]
        threads: int | float | None = None,
        # --display-tracebacks: Show Python tracebacks on 500 pages (they are always logged)
        display_tracebacks: bool | None = None,
        # --pythonpath: A directory to put first on sys.path; repeatable
        pythonpath: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | Mapping[str, str] | None = None,
        # --max-body-size: Largest request body accepted, in bytes; larger ones get 413
        # [default: 1 GiB]
        max_body_size: int | float | None = None,
        # --shutdown-timeout: Seconds in-flight requests may take to finish after SIGINT or
        # SIGTERM [default: 30]
        shutdown_timeout: int | float | None = None,
        # --client-timeout: Seconds a client may stay silent while sending a request body or
        # not read the response before its request is given up [default: 60]
        client_timeout: int | float | None = None,
        # --request-buffer-size: Request bodies up to this size are read before the
        # application is called, so a slow client holds no Python thread over them [default:
        # 65536]
        request_buffer_size: int | float | None = None,
        # --min-upload-rate: The slowest average upload rate allowed after --upload-grace;
        # slower uploads get 408. 0 turns the check off [default: 240]
        min_upload_rate: int | float | None = None,
        # --upload-grace: Seconds an upload may run before --min-upload-rate applies [default:
        # 5]
        upload_grace: int | float | None = None,
        # --min-download-rate: The slowest rate at which a client may read a streamed
        # response, over the time the server waits for it beyond --download-grace; a slower
        # client is cut off and its Python thread freed. 0 turns the check off [default: 240]
        min_download_rate: int | float | None = None,
        # --download-grace: Seconds of waiting for a reading client allowed before --min-
        # download-rate applies [default: 5]
        download_grace: int | float | None = None,
    ) -> None: ...
    def start(self) -> Server: ...
    def stop(self, timeout: float | None = None) -> bool: ...
    @property
    def addresses(self) -> list[Any]: ...
    def __enter__(self) -> Server: ...
    def __exit__(self, *exc_info: object) -> None: ...

def serve(
    app: Resource | Site | None = None,
    *,
    # --wsgi: The WSGI application at /: package.module.attribute (as Twisted),
    # package.module:attribute or package.module:factory() (as gunicorn). Without it (and
    # without --path), a demo page is served
    wsgi: str | os.PathLike[str] | None = None,
    # --mount: Another WSGI application, at PREFIX (its SCRIPT_NAME): --mount
    # /flask=flask_app:app. Repeatable; the longest prefix that matches a request's path
    # on a segment boundary takes it
    mount: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | Mapping[str, str] | None = None,
    # --path: A directory of static files at / (twist web's --path)
    path: str | os.PathLike[str] | None = None,
    # --static: A directory of static files at PREFIX: --static /static=./static.
    # Repeatable
    static: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | Mapping[str, str] | None = None,
    # --index: A name tried for a request naming a directory; repeatable, in order
    # [default: index.html]
    index: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | Mapping[str, str] | None = None,
    # --directory-listing: List a directory that has no index file (else 404)
    directory_listing: bool | None = None,
    # --dotfiles: Serve names starting with a dot (.well-known/, .htaccess), which are
    # hidden by default
    dotfiles: bool | None = None,
    # --max-age: Cache-Control: max-age=SECONDS on every static file
    max_age: int | float | None = None,
    # --mime-type: EXT=TYPE maps an extension to a content type for static files (--mime-
    # type foo=text/x-foo); a bare TYPE is the type of files whose extension is unknown,
    # as in Twisted [default: application/octet-stream]. Repeatable
    mime_type: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | Mapping[str, str] | None = None,
    # --ignore-ext: For a static name that does not exist, try it with this extension
    # (/page serves page.html with --ignore-ext .html); repeatable, in order (twist web's)
    ignore_ext: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | Mapping[str, str] | None = None,
    # --allow-ignore-ext: For a static name that does not exist, serve the first file
    # named NAME.EXT, any EXT (twist web's)
    allow_ignore_ext: bool | None = None,
    # --no-precompressed: Do not serve precompressed siblings (F.br, F.zst, F.gz) in place
    # of F
    no_precompressed: bool | None = None,
    # --access-log: Write a line for every response to FILE, or to standard output for -;
    # off by default. SIGUSR1 reopens the file, for log rotation. (--logfile is twist
    # web's name.)
    access_log: str | os.PathLike[str] | None = None,
    # --access-log-format: The access log's lines: combined (Apache's Combined Log
    # Format), common, or json (one object a line) [default: combined]
    access_log_format: str | os.PathLike[str] | None = None,
    # --forwarded-allow-ips: Proxies trusted to name the client: comma-separated IP
    # networks or addresses (10.0.0.0/8,::1), unix for unix-socket peers, or *. From them,
    # RFC 7239 Forwarded (or X-Forwarded-For, -Proto and -Host) sets REMOTE_ADDR,
    # wsgi.url_scheme and Host (gunicorn's name). Default: none
    forwarded_allow_ips: str | os.PathLike[str] | None = None,
    # --add-header: A field for every response, 'Name: value' (twist web's):
    # applications', static files' and error pages alike; a response that has the field
    # keeps its own. Repeatable
    add_header: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | Mapping[str, str] | None = None,
    # --listen: Where to listen, as an endpoint descriptor: tcp:8080,
    # tcp6:8080:interface=\:\:1, unix:/run/app.sock:mode=660, systemd:domain=INET:index=0.
    # Repeat to listen on several. Default: tcp:8080
    listen: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | Mapping[str, str] | None = None,
    # --port: Deprecated alias of --listen, as in Twisted; a bare number means tcp:NUMBER
    port: str | os.PathLike[str] | None = None,
    # --https: Deprecated, as in Twisted: HTTPS on PORT with --certificate and --privkey;
    # use --listen ssl:PORT:privateKey=KEY:certKey=CERT
    https: int | float | None = None,
    # --certificate: Deprecated, with --https: the certificate file [default: server.pem]
    certificate: str | os.PathLike[str] | None = None,
    # --privkey: Deprecated, with --https: the private key file [default: server.pem]
    privkey: str | os.PathLike[str] | None = None,
    # --notracebacks: Accepted for twist web's command lines: tracebacks are not shown by
    # default
    notracebacks: bool | None = None,
    # --workers: Worker processes, each a whole server with its own Python, sharing the
    # listeners that a supervisor process opens once; a number, or auto for one per CPU
    # core [default: 1, no supervisor]
    workers: int | str | None = None,
    # --max-requests: With --workers: a worker that has answered this many requests is
    # replaced (the new one serving first), to contain memory growth; 0 or absent: never
    # (gunicorn's name)
    max_requests: int | float | None = None,
    # --max-requests-jitter: With --max-requests: add a random 0 to N to each worker's
    # share, so that the workers are not all replaced at once (gunicorn's name) [default:
    # 0]
    max_requests_jitter: int | float | None = None,
    # --max-worker-memory: With --workers: a worker whose resident memory exceeds this
    # many megabytes (MB, 10^6 bytes) is replaced (the new one serving first); checked
    # every second
    max_worker_memory: str | os.PathLike[str] | None = None,
    # --reload: For development: watch the application's source (the working directory and
    # the --pythonpath directories) and replace the workers, as SIGHUP does, when a file
    # changes; the sockets stay open. A change that breaks the import is logged, and the
    # old workers keep serving until the next change
    reload: bool | None = None,
    # --reload-include: With --reload: the files that count, as glob patterns matched
    # against the whole path (* also matches /, as watchmedo's --patterns); repeatable
    # [default: *.py]
    reload_include: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | Mapping[str, str] | None = None,
    # --reload-exclude: With --reload: files to leave out, as glob patterns; repeatable.
    # Hidden directories (.venv, .git) and __pycache__ are always left out
    reload_exclude: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | Mapping[str, str] | None = None,
    # --timer: A repeating task, SECONDS=module:callable (such as 30=myapp.tasks:refresh):
    # the callable, which takes no argument, is called at start-up and then every SECONDS
    # from the start of the previous call, on the Python threads, never two calls at once
    # (as Twisted's TimerService); an exception is logged and the timer goes on;
    # repeatable
    timer: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | Mapping[str, str] | None = None,
    # --control: Serve the control channel on this endpoint (any descriptor, such as
    # unix:/run/torsion/control.sock:mode=600 or tcp:9000:interface=127.0.0.1): JSON over
    # HTTP for /params, /health, /metrics and /status. On anything but a unix socket it
    # needs --control-token-file
    control: str | os.PathLike[str] | None = None,
    # --control-token-file: A file holding the control channel's token: every request must
    # carry Authorization: Bearer <token>. Required unless --control is a unix socket,
    # whose file mode is then the access control
    control_token_file: str | os.PathLike[str] | None = None,
    # --params-file: A JSON object of live parameters, loaded at start (created at the
    # first change if missing); each change through the control channel is written back to
    # it atomically
    params_file: str | os.PathLike[str] | None = None,
    # --threads: Python threads running the application [default: 2 x CPU cores, at least
    # 4]
    threads: int | float | None = None,
    # --display-tracebacks: Show Python tracebacks on 500 pages (they are always logged)
    display_tracebacks: bool | None = None,
    # --pythonpath: A directory to put first on sys.path; repeatable
    pythonpath: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | Mapping[str, str] | None = None,
    # --max-body-size: Largest request body accepted, in bytes; larger ones get 413
    # [default: 1 GiB]
    max_body_size: int | float | None = None,
    # --shutdown-timeout: Seconds in-flight requests may take to finish after SIGINT or
    # SIGTERM [default: 30]
    shutdown_timeout: int | float | None = None,
    # --client-timeout: Seconds a client may stay silent while sending a request body or
    # not read the response before its request is given up [default: 60]
    client_timeout: int | float | None = None,
    # --request-buffer-size: Request bodies up to this size are read before the
    # application is called, so a slow client holds no Python thread over them [default:
    # 65536]
    request_buffer_size: int | float | None = None,
    # --min-upload-rate: The slowest average upload rate allowed after --upload-grace;
    # slower uploads get 408. 0 turns the check off [default: 240]
    min_upload_rate: int | float | None = None,
    # --upload-grace: Seconds an upload may run before --min-upload-rate applies [default:
    # 5]
    upload_grace: int | float | None = None,
    # --min-download-rate: The slowest rate at which a client may read a streamed
    # response, over the time the server waits for it beyond --download-grace; a slower
    # client is cut off and its Python thread freed. 0 turns the check off [default: 240]
    min_download_rate: int | float | None = None,
    # --download-grace: Seconds of waiting for a reading client allowed before --min-
    # download-rate applies [default: 5]
    download_grace: int | float | None = None,
) -> None: ...
