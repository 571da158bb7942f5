"""Type stubs of the extension module ``torsion._torsion`` (built from cli/src/python.rs).

Use the ``torsion`` package's API; this module is its engine and may change.
"""

from collections.abc import Mapping
from typing import Any

__version__: str

class OptionError(ValueError):
    """An option's value is not valid; the message is the command line's."""

class DescriptorError(ValueError):
    """An endpoint descriptor does not parse; the message names what is at fault."""

class ApplicationError(ImportError):
    """A WSGI application cannot be imported, or is not callable."""

class ListenError(OSError):
    """A listener cannot be opened."""

class Running:
    """A server started by :func:`start`."""

    @property
    def addresses(self) -> list[tuple[str, int] | str | None]:
        """Bound addresses, one per listener: (host, port), or a unix socket's path."""
    def stop(self) -> None:
        """Start a graceful stop; return at once."""
    def wait(self, timeout: float | None = None) -> bool:
        """Wait (without the GIL) up to ``timeout`` seconds for the server to stop."""
    def serve_forever(self) -> None:
        """Serve until SIGINT or SIGTERM (on the main thread) or :meth:`stop`."""
    def reopen_access_log(self) -> None:
        """Reopen the access log, as SIGUSR1 does."""

def params() -> Mapping[str, Any]:
    """The live parameters as they are now (a read-only mapping)."""

def main(argv: list[str]) -> int:
    """Run the ``torsion`` command line (arguments after the program name)."""

def start(
    argv: list[str],
    mounts: list[tuple[str, str, Any, Any]],
    timers: list[tuple[float, Any, str]],
    listeners: list[tuple[str, list[str]]],
) -> Running:
    """Start a server from ``torsion web``'s flags, resources mounted from Python, timers
    (seconds, callable, name) and listeners' protocols (descriptor, ALPN IDs)."""

def options() -> list[tuple[str, str, str, str | None, str, str | None]]:
    """``torsion web``'s options: (keyword, flag, kind, default, help, value name)."""

def parse_descriptor(text: str) -> tuple[str, list[str], dict[str, str], str]:
    """An endpoint descriptor's (kind, args, kwargs, canonical form)."""

