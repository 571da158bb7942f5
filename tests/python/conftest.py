"""Helpers of the wheel's tests: where the fixtures and the built wheels are, and a
``torsion web`` started as a user starts it, found listening through its log."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
APPS = REPO / "fixtures" / "apps"
#: scripts/test.sh builds a wheel per interpreter into WHEELS/<version>/, with the
#: interpreter's path in WHEELS/<version>/interpreter.
WHEELS = Path(os.environ.get("TORSION_WHEELS", REPO / "target" / "wheels"))


def wheel_sets() -> list[tuple[str, Path, Path]]:
    """(version, interpreter, wheel) for every wheel built."""
    found = []
    for directory in sorted(WHEELS.glob("*")):
        wheels = sorted(directory.glob("torsion-*.whl"))
        interpreter = directory / "interpreter"
        if wheels and interpreter.exists():
            found.append((directory.name, Path(interpreter.read_text().strip()), wheels[-1]))
    return found


class Started:
    """A ``torsion web`` process, its log read as it comes."""

    def __init__(self, command: list[str], cwd: Path, env: dict[str, str] | None = None):
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._found: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        try:
            self.address = self._found.get(timeout=60)
        except queue.Empty:
            self.process.kill()
            self.process.wait()
            pytest.fail("torsion did not start listening:\n" + self.log())

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))
            if " listening " in line and " address=" in line:
                self._found.put(line.split(" address=")[1].split()[0])
        self._found.put("")

    def url(self, path: str) -> str:
        return f"http://{self.address}{path}"

    def get(self, path: str) -> str:
        with urllib.request.urlopen(self.url(path), timeout=30) as response:
            return response.read().decode()

    def log(self) -> str:
        return "\n".join(self.lines)

    def wait_for_log(self, needle: str, timeout: float = 30.0) -> None:
        """Wait until the log has a line with ``needle``; fail with the log after ``timeout``."""
        deadline = time.monotonic() + timeout
        while needle not in self.log():
            assert time.monotonic() < deadline, self.log()
            time.sleep(0.01)

    def stop(self, sig: int = signal.SIGINT) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout=60)

    def __enter__(self) -> Started:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
