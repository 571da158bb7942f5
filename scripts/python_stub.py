"""Writes cli/python/torsion/__init__.pyi, the type stub of the torsion package, with
torsion web's options spelled out as the keywords of serve, Server and Site.

The options come from the command line itself (torsion._torsion.options()), so run this
with the wheel installed after adding or changing a flag:

    .venv/bin/python scripts/python_stub.py

tests/python/test_api.py fails when the stub and the command line disagree.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from torsion import _torsion

STUB = Path(__file__).resolve().parents[1] / "cli" / "python" / "torsion" / "__init__.pyi"

NUMBERS = {"N", "BYTES", "SECONDS", "BYTES_PER_SECOND", "PORT"}


def annotation(keyword: str, kind: str, value_name: str | None) -> str:
    if keyword == "workers":
        return "int | str | None"
    if kind == "switch":
        return "bool | None"
    if kind == "list":
        return "str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | Mapping[str, str] | None"
    if value_name in NUMBERS:
        return "int | float | None"
    return "str | os.PathLike[str] | None"


def keywords(indent: str) -> str:
    lines = []
    for keyword, flag, kind, default, help, value_name in _torsion.options():
        note = " ".join(help.split())
        default_note = f" [default: {default}]" if default is not None else ""
        for comment in textwrap.wrap(f"{flag}: {note}{default_note}", 84):
            lines.append(f"{indent}# {comment}")
        lines.append(f"{indent}{keyword}: {annotation(keyword, kind, value_name)} = None,")
    return "\n".join(lines)


HEAD = '''"""Type stub of the torsion package (written by scripts/python_stub.py: edit that).

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
'''


def main() -> None:
    site = f'''
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
{keywords(" " * 8)}
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
{keywords(" " * 8)}
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
{keywords(" " * 4)}
) -> None: ...
'''
    STUB.write_text(HEAD + site)


if __name__ == "__main__":
    main()
