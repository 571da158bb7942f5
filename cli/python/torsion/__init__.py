"""Torsion: a WSGI server written in Rust, with Twisted's endpoint descriptors.

The same server as the ``torsion`` command, run from Python::

    import torsion

    torsion.serve("myproject.wsgi:application", listen=["tcp:8080"])  # blocks

    with torsion.Server(app, listen=["tcp:0"]) as server:  # serves in the background
        host, port = server.addresses[0]

    site = torsion.Site()
    site.mount("/", app)
    site.mount("/static", torsion.Static("./static", max_age=3600))
    torsion.serve(site, threads=8)

Every option of ``torsion web`` is a keyword with the same meaning and default: the
flag's name without its dashes, ``-`` as ``_`` (``--max-body-size`` is
``max_body_size=``). A repeatable flag takes a list (or one value); a flag without a value
takes ``True``; ``None`` leaves the default. The keywords are handed to the command line's
own parser, so an invalid value raises :class:`OptionError` with the message the command
line prints.

Errors are raised as :class:`OptionError`, :class:`DescriptorError` (both
``ValueError``), :class:`ApplicationError` (an ``ImportError``) and :class:`ListenError`
(an ``OSError``).
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple, Union

from . import _torsion
from ._torsion import (
    ApplicationError,
    DescriptorError,
    ListenError,
    OptionError,
    __version__,
)

__all__ = [
    "ApplicationError",
    "Descriptor",
    "DescriptorError",
    "ListenError",
    "OptionError",
    "Server",
    "Site",
    "Static",
    "__version__",
    "main",
    "params",
    "parse_descriptor",
    "serve",
]

#: ``torsion web``'s options by keyword: (flag, kind, default, help), kind being
#: "switch", "value" or "list".
_OPTIONS = {
    keyword: (flag, kind, default, help)
    for keyword, flag, kind, default, help, _value_name in _torsion.options()
}

#: The options of static files, which :class:`Static` takes per directory.
_STATIC_OPTIONS = (
    "index",
    "directory_listing",
    "dotfiles",
    "max_age",
    "mime_type",
    "ignore_ext",
    "allow_ignore_ext",
    "no_precompressed",
)

#: A WSGI application: ``app(environ, start_response)``.
WSGIApplication = Callable[..., Iterable[bytes]]


class Params(Mapping[str, Any]):
    """The live parameters of this process, as they are now: what the control channel
    (``--control``) sets and ``--params-file`` keeps, for code outside a request, such as a
    timer. A request reads ``environ["torsion.params"]`` instead, which stays the same for
    the whole request.

    Each lookup reads the current snapshot, so two lookups may see two versions; take
    :meth:`snapshot` once to read several values of one version. Values are read-only:
    JSON objects are mappings, arrays are tuples.
    """

    def snapshot(self) -> Mapping[str, Any]:
        """The current parameters as one read-only mapping, the object a request started now
        would see."""
        return _torsion.params()

    def __getitem__(self, name: str) -> Any:
        return _torsion.params()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(_torsion.params())

    def __len__(self) -> int:
        return len(_torsion.params())

    def __repr__(self) -> str:
        return f"torsion.params({dict(_torsion.params())!r})"


#: The live parameters; see :class:`Params`.
params = Params()


def main(argv: Iterable[str] | None = None) -> int:
    """Run the ``torsion`` command line; return its exit status.

    ``argv`` is the arguments after the program name (``["web", "--wsgi", "app:app"]``),
    ``sys.argv[1:]`` by default. The status is the binary's: 0; 1 when ``torsion certs``
    could not obtain a certificate; 2 for a configuration error, printed to standard error
    as ``error: ...``. On the main thread, SIGINT and SIGTERM stop the server after its
    requests in flight and SIGUSR1 reopens the access log, as for the binary.
    """
    return _torsion.main(list(sys.argv[1:] if argv is None else argv))


class Descriptor(NamedTuple):
    """An endpoint descriptor split into its parts (see :func:`parse_descriptor`)."""

    #: The endpoint type, lower case: ``"tcp"``, ``"unix"``, ``"txsni"``.
    kind: str
    #: The positional arguments, unescaped.
    args: tuple[str, ...]
    #: The keyword arguments, unescaped, in order of first appearance.
    kwargs: dict[str, str]
    #: The canonical descriptor, which parses back to the same endpoint.
    canonical: str


def parse_descriptor(text: str) -> Descriptor:
    """Parse an endpoint descriptor as ``--listen`` does, without opening anything.

    >>> parse_descriptor("TCP:port=8080:interface=127.0.0.1").canonical
    'tcp:8080:interface=127.0.0.1'

    Raises :class:`DescriptorError`, with the command line's message (the descriptor, the
    column or argument at fault, and what is accepted).
    """
    kind, args, kwargs, canonical = _torsion.parse_descriptor(text)
    return Descriptor(kind, tuple(args), kwargs, canonical)


class Static:
    """A directory of static files to mount on a :class:`Site`.

    ``Static(directory, **options)`` takes the static-file options of ``torsion web`` for
    this directory alone: ``index`` (names tried for a directory, default
    ``["index.html"]``), ``directory_listing``, ``dotfiles``, ``max_age`` (seconds of
    ``Cache-Control: max-age``), ``mime_type`` (a mapping of extensions to content types,
    or ``"EXT=TYPE"`` strings; ``""`` maps files of unknown extension), ``ignore_ext``,
    ``allow_ignore_ext`` and ``no_precompressed``. They are checked when the server starts.
    """

    def __init__(self, directory: str | os.PathLike[str], **options: Any) -> None:
        for key in options:
            if key not in _STATIC_OPTIONS:
                raise TypeError(_unexpected("Static", key, _STATIC_OPTIONS))
        self.directory = os.fspath(directory)
        self.options = dict(options)

    def __repr__(self) -> str:
        return f"Static({self.directory!r})"


#: What a prefix can serve: a WSGI application, its ``"module:attribute"`` name, or a
#: directory of static files.
Resource = Union[WSGIApplication, str, Static]


class Site:
    """A site to serve: resources at prefixes, fields added to every response, listeners
    and options; what a Twisted plugin builds with ``putChild``.

    ``Site(**options)`` takes the keywords of :func:`serve`; keywords given to
    :func:`serve` or :class:`Server` with the site override its own.
    """

    def __init__(self, **options: Any) -> None:
        _check_keywords("Site", options)
        self.options = dict(options)
        self.mounts: list[tuple[str, Resource]] = []
        self.headers: list[str] = []
        self.listeners: list[str] = []
        self.protocols: dict[str, tuple[str, ...]] = {}
        self.timers: list[tuple[float, Callable[[], object]]] = []

    def mount(self, prefix: str, resource: Resource) -> None:
        """Serve ``resource`` at ``prefix`` (its ``SCRIPT_NAME`` for an application).

        The longest prefix that matches a request's path on a segment boundary takes it,
        as with ``--mount`` and ``--static``.
        """
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str such as '/static', not {prefix!r}")
        if not (isinstance(resource, (str, Static)) or callable(resource)):
            raise TypeError(
                f"cannot mount {resource!r} at {prefix!r}: expected a WSGI application, "
                "its 'module:attribute' name, or torsion.Static(directory)"
            )
        self.mounts.append((prefix, resource))

    def add_header(self, field: str) -> None:
        """Add ``field`` (``"Name: value"``) to every response that lacks it, as
        ``--add-header`` does."""
        self.headers.append(field)

    def timer(self, seconds: float, task: Callable[[], object]) -> None:
        """Call ``task()`` every ``seconds`` while the site is served, as Twisted's
        ``TimerService(seconds, task)`` does.

        The first call comes when the server starts, then each one ``seconds`` after the
        start of the previous one; one timer's calls never overlap (a call that overruns
        delays the next, and the log says so). Calls run on the server's Python threads,
        in turn with requests. An exception is logged with its traceback and the timer
        goes on (Twisted would stop it). At shutdown, a call in progress may finish within
        ``shutdown_timeout``.
        """
        if not callable(task):
            raise TypeError(f"timer task {task!r} is not callable")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
            raise ValueError(f"timer interval {seconds!r} is not valid; expected seconds above 0")
        self.timers.append((float(seconds), task))

    def listen(self, descriptor: str, *, protocols: Iterable[str] | None = None) -> None:
        """Listen on the endpoint ``descriptor`` (``"tcp:8080"``, ``"txsni:/certs:tcp:443"``),
        as ``--listen`` does; the descriptor is checked when the server starts.

        ``protocols`` narrows the HTTP versions spoken there, by their ALPN IDs, as
        Twisted's ``Site.acceptableProtocols`` does: ``("http/1.1",)`` turns HTTP/2 off
        (over TLS, only ``http/1.1`` is offered by ALPN), ``("h2",)`` turns HTTP/1.1 off.
        By default a listener speaks both.
        """
        if not isinstance(descriptor, str):
            raise TypeError(f"descriptor must be a str such as 'tcp:8080', not {descriptor!r}")
        self.listeners.append(descriptor)
        if protocols is not None:
            if isinstance(protocols, str):
                protocols = (protocols,)
            self.protocols[descriptor] = tuple(protocols)

    def __repr__(self) -> str:
        return f"<torsion.Site mounts={[p for p, _ in self.mounts]} listeners={self.listeners}>"


class Server:
    """A server running in background threads of this process, for tests and for
    programs that do more than serve.

    ``Server(app=None, **options)`` takes what :func:`serve` takes. :meth:`start` returns
    once every listener is open (so ``listen=["tcp:0"]`` has a port in
    :attr:`addresses`); :meth:`stop` lets requests in flight finish. As a context manager,
    it starts on entry and stops on exit::

        @pytest.fixture
        def server():
            with torsion.Server(myapp, listen=["tcp:0:interface=127.0.0.1"]) as server:
                yield server

        def test_home(server):
            host, port = server.addresses[0]
            assert urllib.request.urlopen(f"http://{host}:{port}/").status == 200

    Signals are left to the program: nothing is stopped by SIGINT but the program itself.
    """

    def __init__(self, app: Resource | Site | None = None, **options: Any) -> None:
        self._plan = _plan("Server", app, options)
        self._running: Any = None

    def start(self) -> Server:
        """Open every listener and start serving; return this server.

        Raises :class:`OptionError`, :class:`DescriptorError`, :class:`ApplicationError`
        or :class:`ListenError` (nothing is left running then).
        """
        if self._running is not None:
            raise RuntimeError("this server was already started")
        self._running = _torsion.start(*self._plan)
        return self

    def stop(self, timeout: float | None = None) -> bool:
        """Stop accepting connections and wait up to ``timeout`` seconds (by default, until
        done) for the requests in flight, which get up to ``shutdown_timeout``; return
        whether the server has stopped."""
        if self._running is None:
            return True
        self._running.stop()
        return self._running.wait(timeout)

    @property
    def addresses(self) -> list[Any]:
        """The bound addresses, one per listener in the order given: ``(host, port)`` for
        TCP, the path for a unix socket."""
        if self._running is None:
            raise RuntimeError("the server has not been started")
        return self._running.addresses

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def serve(app: Resource | Site | None = None, **options: Any) -> None:
    """Serve ``app`` until SIGINT or SIGTERM, as ``torsion web`` does; block until the
    requests in flight have finished (within ``shutdown_timeout``).

    ``app`` is a WSGI application (or its ``"module:attribute"`` name, as ``--wsgi``), a
    :class:`Static` directory or a :class:`Site`; with none, the demo page is served.
    ``options`` are ``torsion web``'s options, e.g. ``listen=["tcp:8080", "unix:/run/app.sock"]``,
    ``threads=8``, ``access_log="-"``, ``forwarded_allow_ips="10.0.0.0/8"``.

    Signals are handled only when called on the main thread (elsewhere, stop the process
    another way, or use :class:`Server`); the handlers in place before are restored when
    it returns. Raises what :meth:`Server.start` raises.
    """
    _torsion.start(*_plan("serve", app, options)).serve_forever()


def _unexpected(where: str, key: str, known: Iterable[str]) -> str:
    message = f"{where}() got an unexpected keyword argument {key!r}"
    close = difflib.get_close_matches(key, list(known), 1)
    return message + (f"; did you mean {close[0]!r}?" if close else "")


def _check_keywords(where: str, options: Mapping[str, Any]) -> None:
    for key in options:
        if key not in _OPTIONS:
            raise TypeError(_unexpected(where, key, _OPTIONS))


def _text(key: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float, os.PathLike)):
        raise TypeError(f"{key}={value!r}: expected a str, a number or a path")
    return os.fspath(value) if isinstance(value, os.PathLike) else str(value)


def _flags(where: str, options: Mapping[str, Any]) -> list[str]:
    """``torsion web``'s flags for keyword options."""
    _check_keywords(where, options)
    argv = []
    for key, value in options.items():
        flag, kind, _default, _help = _OPTIONS[key]
        if value is None:
            continue
        if kind == "switch":
            if not isinstance(value, bool):
                raise TypeError(f"{key}={value!r}: expected True or False")
            if value:
                argv.append(flag)
        elif kind == "list":
            if isinstance(value, Mapping):
                items = [f"{k}={v}" for k, v in value.items()]
            elif isinstance(value, (str, os.PathLike)):
                items = [value]
            else:
                items = list(value)
            argv.extend(f"{flag}={_text(key, item)}" for item in items)
        else:
            argv.append(f"{flag}={_text(key, value)}")
    return argv


def _mount(prefix: str, resource: Resource) -> tuple[str, str, Any, Any]:
    """The extension module's form of a mounted resource."""
    if isinstance(resource, Static):
        return (prefix, "static", resource.directory, _flags("Static", resource.options))
    if isinstance(resource, str):
        return (prefix, "name", resource, None)
    return (prefix, "application", resource, _name(resource))


def _name(task: Any) -> str:
    """How the log names a callable: ``module:qualname`` for a function or class, the
    repr of any other object (a Flask application: ``<Flask 'hello'>``)."""
    name = getattr(task, "__qualname__", None)
    if not isinstance(name, str):
        return repr(task)
    module = getattr(task, "__module__", None)
    return f"{module}:{name}" if module else name


_Plan = tuple[
    list[str],
    list[tuple[str, str, Any, Any]],
    list[tuple[float, Any, str]],
    list[tuple[str, list[str]]],
]


def _resolve(
    where: str, app: Resource | Site | None, options: Mapping[str, Any]
) -> tuple[dict[str, Any], list[tuple[str, str, Any, Any]], list[tuple[float, Any, str]],
           list[tuple[str, list[str]]]]:
    """The options, mounts, timers and listeners' protocols for ``app`` served with
    ``options``: a site's own options, listeners and fields come first, and ``options``
    override them."""
    _check_keywords(where, options)
    mounts = []
    timers = []
    protocols = []
    if isinstance(app, Site):
        merged = {**app.options, **options}
        if app.listeners and "listen" not in options:
            merged["listen"] = list(app.listeners) + _as_list(merged.get("listen"))
        if app.headers:
            merged["add_header"] = list(app.headers) + _as_list(merged.get("add_header"))
        options = merged
        mounts = [_mount(prefix, resource) for prefix, resource in app.mounts]
        timers = [(seconds, task, _name(task)) for seconds, task in app.timers]
        protocols = [(descriptor, list(ids)) for descriptor, ids in app.protocols.items()]
    elif app is not None:
        mounts = [_mount("/", app)]
    return dict(options), mounts, timers, protocols


def _plan(where: str, app: Resource | Site | None, options: Mapping[str, Any]) -> _Plan:
    """The flags, mounts, timers and listeners' protocols for ``app`` served with
    ``options``, as the extension module's ``start`` takes them."""
    options, mounts, timers, protocols = _resolve(where, app, options)
    return _flags(where, options), mounts, timers, protocols


def _load_config(path: str, given: Iterable[str]) -> _Plan:
    """``torsion web --config FILE``: run the file and return the flags, mounts, timers and
    listeners' protocols it sets, leaving out the options ``given`` on the command line,
    which override it.

    The file sets options as module-level names (``listen = ["tcp:8080"]``,
    ``threads = 8``), as gunicorn.conf.py does, and may build a :class:`Site` named
    ``site`` (or hold exactly one ``Site``). A plain value under a name that is not an
    option (``thread = 8``) gets a warning, as it is most likely a misspelling.
    """
    import runpy

    namespace = runpy.run_path(os.fspath(path), run_name="__torsion_config__")
    options: dict[str, Any] = {}
    sites = {name: value for name, value in namespace.items() if isinstance(value, Site)}
    site = sites.get("site") or (next(iter(sites.values())) if len(sites) == 1 else None)
    if site is None and sites:
        raise OptionError(
            f"{path}: several Site objects ({', '.join(sorted(sites))}); name the one to serve 'site'"
        )
    for name, value in namespace.items():
        if name.startswith("_") or isinstance(value, Site):
            continue
        if name in _OPTIONS:
            options[name] = value
        elif isinstance(value, (str, int, float, list, tuple, dict)) and name.islower():
            close = difflib.get_close_matches(name, list(_OPTIONS), 1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            print(
                f"warning: {path}: {name!r} is not an option of torsion web, ignored{hint}",
                file=sys.stderr,
            )
    resolved, mounts, timers, protocols = _resolve("config", site, options)
    skipped = set(given)
    kept = {key: value for key, value in resolved.items() if key not in skipped}
    return _flags("config", kept), mounts, timers, protocols


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [value]
    return list(value)
