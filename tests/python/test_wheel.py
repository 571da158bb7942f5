"""The wheel as a user installs it: a fresh venv of each interpreter a wheel was built
for, with no Rust on PATH, serving the Flask fixture through the console script and
``python -m torsion``; ``torsion certs`` from the wheel; and a pex of the wheel and Flask
serving from a directory that holds only the pex and an application."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import APPS, REPO, Started, wheel_sets

SETS = wheel_sets()
FLASK = [
    line
    for line in (REPO / "fixtures" / "requirements.txt").read_text().splitlines()
    if line.split("==")[0].lower()
    in {"flask", "werkzeug", "jinja2", "markupsafe", "itsdangerous", "click", "blinker"}
]

pytestmark = pytest.mark.skipif(not SETS, reason="no wheel built: run scripts/test.sh")


def clean_env(venv: Path) -> dict[str, str]:
    """The environment of a user's shell with only the venv and the system on PATH."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "CARGO_HOME", "RUSTUP_HOME"}
    }
    env["PATH"] = f"{venv / 'bin'}:/usr/bin:/bin"
    return env


@pytest.fixture(scope="module", params=SETS, ids=[version for version, _, _ in SETS])
def venv(request, tmp_path_factory) -> tuple[str, Path]:
    version, interpreter, wheel = request.param
    venv = tmp_path_factory.mktemp(f"venv-{version}")
    subprocess.run([str(interpreter), "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
         str(wheel), *FLASK],
        check=True,
    )
    return version, venv


def test_no_rust_on_the_venvs_path(venv):
    _, path = venv
    env_path = clean_env(path)["PATH"]
    assert shutil.which("cargo", path=env_path) is None
    assert shutil.which("rustc", path=env_path) is None
    assert shutil.which("torsion", path=env_path) == str(path / "bin" / "torsion")


@pytest.mark.parametrize("how", ["console script", "python -m torsion"])
def test_serves_flask_from_the_venv_with_its_own_python(venv, how):
    version, path = venv
    command = (
        [str(path / "bin" / "torsion")]
        if how == "console script"
        else [str(path / "bin" / "python"), "-m", "torsion"]
    )
    command += ["web", "--wsgi", "flask_app:app", "--listen", "tcp:0:interface=127.0.0.1"]
    with Started(command, APPS, clean_env(path)) as server:
        assert server.get("/") == "Hello from Flask"
        # The application runs in the venv's interpreter: its prefix and its version.
        assert server.get("/prefix") == str(path)
        assert server.stop(signal.SIGTERM) == 0, server.log()
    assert "SIGTERM received: stopping" in server.log()
    out = subprocess.run(
        [str(path / "bin" / "python"), "-c", "import platform; print(platform.python_version())"],
        capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip() == version


def test_a_bad_option_exits_2_with_the_binarys_message(venv):
    _, path = venv
    result = subprocess.run(
        [str(path / "bin" / "torsion"), "web", "--listen", "tcp:nope"],
        cwd=APPS, env=clean_env(path), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert 'error: invalid endpoint descriptor "tcp:nope": tcp: port "nope" is not valid' in result.stderr


def test_certs_status_works_from_the_wheel(venv, tmp_path):
    _, path = venv
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-subj", "/CN=www.example.com", "-days", "30",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "www.example.com.pem").write_bytes(key.read_bytes() + cert.read_bytes())
    result = subprocess.run(
        [str(path / "bin" / "torsion"), "certs", str(certs), "status"],
        env=clean_env(path), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "ISSUER", "EXPIRES", "DAYS", "LEFT", "NEXT", "RENEWAL"]
    assert lines[1].startswith("www.example.com "), result.stdout


def test_a_pex_of_the_wheel_and_flask_serves_from_an_empty_directory(venv, tmp_path):
    version, path = venv
    if version != platform_version():
        pytest.skip("one pex, built for the interpreter running the tests")
    wheel = next(w for v, _, w in SETS if v == version)
    pex = tmp_path / "app.pex"
    subprocess.run(
        [sys.executable, "-m", "pex", "torsion", *FLASK, "-c", "torsion", "-o", str(pex),
         "--find-links", str(wheel.parent), "--python", str(path / "bin" / "python")],
        check=True, timeout=600,
    )
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(pex, site / "app.pex")
    (site / "hello.py").write_text(
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'hello from a pex']\n"
    )
    assert sorted(p.name for p in site.iterdir()) == ["app.pex", "hello.py"]
    env = clean_env(path)
    env["PATH"] = "/usr/bin:/bin"
    env["PEX_ROOT"] = str(tmp_path / "pex-root")
    command = ["./app.pex", "web", "--wsgi", "hello:app", "--listen", "tcp:0:interface=127.0.0.1"]
    with Started(command, site, env) as server:
        assert server.get("/") == "hello from a pex"
        assert server.stop() == 0, server.log()


def platform_version() -> str:
    import platform

    return platform.python_version()


@pytest.mark.parametrize("version, interpreter, wheel", SETS, ids=[v for v, _, _ in SETS])
def test_the_extension_module_links_no_libpython_and_is_manylinux_2_28(version, interpreter, wheel, tmp_path):
    """The module joins whatever interpreter imports it: no libpython among the libraries
    it needs, no run path, and no glibc symbol newer than 2.28."""
    import re
    import zipfile

    assert wheel.name.endswith("-manylinux_2_28_x86_64.whl"), wheel.name
    with zipfile.ZipFile(wheel) as archive:
        [member] = [n for n in archive.namelist() if n.startswith("torsion/_torsion.") and n.endswith(".so")]
        module = Path(archive.extract(member, tmp_path))
    dynamic = subprocess.run(["readelf", "-d", str(module)], capture_output=True, text=True, check=True).stdout
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", dynamic)
    assert needed and not any("python" in library for library in needed), needed
    assert "RPATH" not in dynamic and "RUNPATH" not in dynamic, dynamic
    symbols = subprocess.run(["readelf", "--dyn-syms", "-W", str(module)], capture_output=True, text=True,
                             check=True).stdout
    versions = {tuple(map(int, v.split("."))) for v in re.findall(r"@GLIBC_(\d+\.\d+)", symbols)}
    assert versions and max(versions) <= (2, 28), sorted(versions)[-3:]


def test_workers_run_the_venvs_interpreter(venv):
    """--workers from the wheel: the workers are `sys.executable -m torsion`, so they use the
    venv that started the supervisor."""
    _, path = venv
    command = [str(path / "bin" / "torsion"), "web", "--wsgi", "probe:application", "--workers", "2",
               "--listen", "tcp:0:interface=127.0.0.1"]
    with Started(command, APPS, clean_env(path)) as server:
        server.wait_for_log("every worker is serving workers=2")
        report = json.loads(server.get("/environ"))
        assert report["sys.prefix"] == str(path)
        assert report["wsgi.multiprocess"] is True
        worker = report["pid"]
        assert worker != server.process.pid
        cmdline = Path(f"/proc/{worker}/cmdline").read_bytes().split(b"\0")
        assert Path(cmdline[0].decode()).parent == path / "bin", cmdline
        assert cmdline[1:3] == [b"-m", b"torsion"], cmdline
        assert server.stop(signal.SIGTERM) == 0, server.log()


def test_a_config_file_asking_for_workers_makes_the_same_process_their_supervisor(venv, tmp_path):
    """``workers = 2`` in a --config file: the process started reads the file, then becomes
    the supervisor (``sys.executable -m torsion``, same PID), and each worker reads it too."""
    _, path = venv
    config = tmp_path / "torsion_conf.py"
    config.write_text("wsgi = 'probe:application'\nworkers = 2\n")
    command = [str(path / "bin" / "torsion"), "web", "--config", str(config),
               "--listen", "tcp:0:interface=127.0.0.1"]
    with Started(command, APPS, clean_env(path)) as server:
        server.wait_for_log("every worker is serving workers=2")
        report = json.loads(server.get("/environ"))
        assert report["wsgi.multiprocess"] is True
        assert report["pid"] != server.process.pid
        cmdline = Path(f"/proc/{server.process.pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[1:3] == [b"-m", b"torsion"], cmdline
        assert server.stop(signal.SIGTERM) == 0, server.log()
