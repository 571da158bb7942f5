"""The Python API, in the interpreter running the tests (scripts/test.sh installs the
wheel into it): servers in this process, the site, timers, signals, the descriptor
parser and the errors."""

from __future__ import annotations

import ast
import signal
import socket
import sys
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import torsion
from torsion import _torsion
from conftest import APPS, Started

sys.path.insert(0, str(APPS))
import flask_app  # noqa: E402
import probe  # noqa: E402

LOOPBACK = "tcp:0:interface=127.0.0.1"


def get(server: torsion.Server, path: str, index: int = 0) -> tuple[int, Any, bytes]:
    """Status, fields (looked up without regard to case) and body of a GET."""
    host, port = server.addresses[index]
    with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=30) as response:
        return response.status, response.headers, response.read()


def test_a_server_in_this_process_serves_a_flask_app():
    with torsion.Server(flask_app.app, listen=[LOOPBACK], threads=2) as server:
        host, port = server.addresses[0]
        assert host == "127.0.0.1" and port > 0
        status, _, body = get(server, "/")
        assert (status, body) == (200, b"Hello from Flask")
        # The application runs in this interpreter: the same module object.
        _, _, body = get(server, "/prefix")
        assert body.decode() == sys.prefix
    # Stopped: the port no longer accepts.
    with pytest.raises(OSError):
        socket.create_connection((host, port), timeout=5).close()


def test_a_site_with_two_apps_static_files_and_a_timer(tmp_path):
    (tmp_path / "hello.txt").write_text("static hello\n")
    ticks: list[float] = []
    ticked = threading.Event()

    def tick():
        ticks.append(time.monotonic())
        if len(ticks) >= 3:
            ticked.set()

    site = torsion.Site(threads=2)
    site.mount("/", flask_app.app)
    site.mount("/probe", probe.application)
    site.mount("/static", torsion.Static(tmp_path, max_age=60))
    site.add_header("X-Served-By: torsion")
    site.timer(0.2, tick)
    site.listen(LOOPBACK)
    with torsion.Server(site) as server:
        status, headers, body = get(server, "/where")
        assert status == 200 and b'"script_root":""' in body.replace(b" ", b"")
        assert headers["X-Served-By"] == "torsion"
        _, _, body = get(server, "/probe/environ")
        assert b"SCRIPT_NAME='/probe'" in body or b'"SCRIPT_NAME": "/probe"' in body, body
        status, headers, body = get(server, "/static/hello.txt")
        assert (status, body) == (200, b"static hello\n")
        assert headers["Cache-Control"] == "max-age=60"
        assert headers["X-Served-By"] == "torsion"
        # The first call at start-up, then every 0.2 s from the start of the previous.
        assert ticked.wait(30), ticks
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert all(gap >= 0.19 for gap in gaps), gaps


def test_a_timer_that_raises_is_logged_and_runs_again(capfd):
    calls = []
    again = threading.Event()

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first call fails")
        again.set()

    site = torsion.Site()
    site.timer(0.1, flaky)
    site.mount("/", flask_app.app)
    with torsion.Server(site, listen=[LOOPBACK]):
        assert again.wait(30)
    err = capfd.readouterr().err
    assert "timer raised" in err and "RuntimeError: first call fails" in err, err
    assert "Traceback (most recent call last)" in err


def test_keywords_override_the_sites_options_and_listeners():
    site = torsion.Site(threads=1, listen=["tcp:1:interface=127.0.0.1"])
    site.mount("/", flask_app.app)
    with torsion.Server(site, listen=[LOOPBACK]) as server:
        assert get(server, "/")[2] == b"Hello from Flask"


def test_serve_blocks_until_sigint_and_lets_the_request_in_flight_finish(tmp_path):
    started = tmp_path / "started"
    code = (
        "import torsion\n"
        f"torsion.serve('probe:application', listen=[{LOOPBACK!r}], pythonpath=[{str(APPS)!r}])\n"
        "print('serve returned')\n"
    )
    with Started([sys.executable, "-c", code], tmp_path) as server:
        result: dict[str, object] = {}

        def slow():
            result["body"] = server.get(f"/sleep?seconds=1&started={started}")

        request = threading.Thread(target=slow)
        request.start()
        deadline = time.monotonic() + 30
        while not started.exists():
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.01)
        server.process.send_signal(signal.SIGINT)
        request.join(30)
        assert server.process.wait(timeout=60) == 0, server.log()
    assert "body" in result, server.log()
    assert "SIGINT received: stopping" in server.log()


def test_main_is_the_command_line():
    assert torsion.main(["--version"]) == 0
    assert torsion.main(["web", "--threads", "0"]) == 2
    assert torsion.main(["web", "--listen", "tcp:nope"]) == 2


@pytest.mark.parametrize(
    "text, kind, args, kwargs",
    [
        ("tcp:8080", "tcp", ("8080",), {}),
        ("TCP:port=8080:interface=127.0.0.1", "tcp", ("8080",), {"interface": "127.0.0.1"}),
        (r"tcp6:8080:interface=\:\:1", "tcp6", ("8080",), {"interface": "::1"}),
        ("unix:/run/app.sock:mode=660", "unix", ("/run/app.sock",), {"mode": "660"}),
        ("systemd:domain=INET:index=0", "systemd", (), {"domain": "INET", "index": "0"}),
        ("txsni:/certs:tcp:443", "txsni", None, None),
        ("haproxy:tcp:8080", "haproxy", None, None),
        ("le:/srv/certs:tcp:443", "le", None, None),
    ],
)
def test_parse_descriptor_round_trips(text, kind, args, kwargs):
    parsed = torsion.parse_descriptor(text)
    assert parsed.kind == kind
    if args is not None:
        assert parsed.args == args and parsed.kwargs == kwargs
    again = torsion.parse_descriptor(parsed.canonical)
    assert again == parsed


def test_each_error_has_its_type_and_the_command_lines_message():
    cases = [
        (dict(threads=0), torsion.OptionError, ValueError,
         "invalid value '0' for '--threads <N>'"),
        (dict(listen=["tcp:nope"]), torsion.DescriptorError, ValueError,
         'invalid endpoint descriptor "tcp:nope": tcp: port "nope" is not valid'),
        (dict(wsgi="no_such_module:app"), torsion.ApplicationError, ImportError,
         "--wsgi no_such_module:app: importing module 'no_such_module' failed"),
        (dict(access_log_format="fancy"), torsion.OptionError, ValueError,
         "--access-log-format"),
        (dict(workers=2), torsion.OptionError, ValueError,
         "workers: worker processes are started by the command line"),
        (dict(reload=True), torsion.OptionError, ValueError,
         "reload: a server in this process cannot replace itself"),
    ]
    for options, error, base, message in cases:
        with pytest.raises(error) as raised:
            torsion.Server(listen=options.pop("listen", [LOOPBACK]), **options).start()
        assert isinstance(raised.value, base)
        assert message in str(raised.value), str(raised.value)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(torsion.ListenError) as raised:
            torsion.Server(flask_app.app, listen=[f"tcp:{port}:interface=127.0.0.1"]).start()
        assert isinstance(raised.value, OSError)
        assert f"cannot listen on tcp:{port}:interface=127.0.0.1" in str(raised.value)
    with pytest.raises(torsion.DescriptorError, match="unknown endpoint type"):
        torsion.parse_descriptor("carrier-pigeon:1")
    with pytest.raises(TypeError, match="did you mean 'threads'"):
        torsion.Server(thread=4)
    with pytest.raises(TypeError, match="not callable"):
        torsion.Site().timer(1, "not a function")


def test_the_stubs_list_every_option_of_the_command_line():
    """serve, Server and Site take exactly torsion web's options as keywords, and the
    type stub spells each of them out."""
    stub = ast.parse(Path(torsion.__file__).with_name("__init__.pyi").read_text())
    options = {keyword for keyword, *_ in _torsion.options()}
    found = {}
    for node in ast.walk(stub):
        if isinstance(node, ast.FunctionDef) and node.name in {"serve", "__init__"}:
            found.setdefault(node.name, []).append({a.arg for a in node.args.kwonlyargs})
    assert found["serve"] == [options]
    # Server.__init__ and Site.__init__ (Static.__init__ takes the static options).
    assert found["__init__"].count(options) == 2


def test_python_m_torsion_reads_a_config_file_and_flags_override_it(tmp_path):
    config = tmp_path / "site.py"
    config.write_text(
        "import torsion\n"
        "from flask_app import app\n"
        "listen = ['tcp:1:interface=127.0.0.1']\n"
        "site = torsion.Site(threads=2)\n"
        "site.mount('/', app)\n"
        "site.add_header('X-Config: yes')\n"
    )
    command = [sys.executable, "-m", "torsion", "web", "--config", str(config),
               "--listen", LOOPBACK]
    with Started(command, APPS) as server:
        with urllib.request.urlopen(server.url("/"), timeout=30) as response:
            assert response.read() == b"Hello from Flask"
            assert response.headers["X-Config"] == "yes"
        assert not server.address.endswith(":1")
        assert server.stop() == 0, server.log()
    assert "starting threads=2" in server.log()


def test_a_listener_can_speak_only_some_http_versions(tmp_path):
    """Site.listen(..., protocols=...), Twisted's acceptableProtocols: over TLS, ALPN offers
    only those; in cleartext, the other version is not understood."""
    import ssl

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-subj", "/CN=localhost", "-days", "2", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    tls = f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"
    site = torsion.Site()
    site.mount("/", flask_app.app)
    site.listen(tls, protocols=("http/1.1",))
    site.listen(tls.replace("ssl:0", "ssl:port=0"))
    site.listen(LOOPBACK, protocols=["http/1.1"])
    site.listen("tcp:0:interface=127.0.0.1:backlog=50", protocols="h2")
    with torsion.Server(site) as server:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols(["h2", "http/1.1"])
        for index, expected in [(0, "http/1.1"), (1, "h2")]:
            with socket.create_connection(server.addresses[index], timeout=30) as raw:
                with context.wrap_socket(raw) as stream:
                    assert stream.selected_alpn_protocol() == expected
        # HTTP/1.1 only, in cleartext: the HTTP/2 preface closes the connection.
        with socket.create_connection(server.addresses[2], timeout=30) as raw:
            raw.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            assert raw.recv(1024) == b""
        assert get(server, "/", 2)[2] == b"Hello from Flask"
        # HTTP/2 only, in cleartext: an HTTP/1.1 request gets an HTTP/2 SETTINGS frame
        # (type 4, on stream 0), not an HTTP/1.1 answer.
        with socket.create_connection(server.addresses[3], timeout=30) as raw:
            raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = raw.recv(1024)
        assert answer[3:4] == b"\x04" and answer[5:9] == b"\x00\x00\x00\x00", answer
    with pytest.raises(torsion.OptionError, match='"spdy/3" is not a protocol Torsion speaks'):
        site = torsion.Site()
        site.listen(LOOPBACK, protocols=["spdy/3"])
        torsion.Server(site).start()


def wait_until(what: str, condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


def test_sigusr1_reopens_the_access_log_of_serve(tmp_path):
    log = tmp_path / "access.log"
    code = (
        "import torsion\n"
        f"torsion.serve('probe:application', listen=[{LOOPBACK!r}], pythonpath=[{str(APPS)!r}],"
        f" access_log={str(log)!r})\n"
    )
    lines = lambda path: path.read_text().splitlines() if path.exists() else []  # noqa: E731
    with Started([sys.executable, "-c", code], tmp_path) as server:
        server.get("/environ?first")
        wait_until("the first line is written", lambda: len(lines(log)) == 1)
        rotated = tmp_path / "access.log.1"
        log.rename(rotated)
        server.process.send_signal(signal.SIGUSR1)
        # Until the log is reopened, lines go to the renamed file: ask until one lands anew.
        wait_until("a line lands in a new access.log", lambda: server.get("/environ?second") is not None
                   and len(lines(log)) >= 1)
        assert server.stop() == 0, server.log()
    assert "GET /environ?first " in rotated.read_text()
    assert "GET /environ?second " in log.read_text()


def test_live_parameters_from_the_control_channel_reach_environ_and_torsion_params(tmp_path):
    """A server in this process with a control channel: a parameter PUT there is seen by the
    next request's environ and by torsion.params in this interpreter, and kept in the file."""
    seen: list[Any] = []

    def app(environ, start_response):
        seen.append(environ["torsion.params"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(environ["torsion.params"].get("color")).encode()]

    socket_path = tmp_path / "control.sock"
    params_file = tmp_path / "params.json"
    params_file.write_text('{"color": "red"}')
    with torsion.Server(app, listen=[LOOPBACK], control=f"unix:{socket_path}",
                        params_file=str(params_file)) as server:
        assert get(server, "/")[2] == b"red"
        assert torsion.params["color"] == "red"
        put = subprocess.run(["curl", "-sS", "--unix-socket", str(socket_path), "-X", "PUT",
                              "-d", '"blue"', "http://control/params/color"],
                             capture_output=True, text=True, check=True)
        assert '"previous":"red"' in put.stdout, put
        assert get(server, "/")[2] == b"blue"
        assert dict(torsion.params) == {"color": "blue"}
        assert torsion.params.snapshot() is seen[-1]
        with pytest.raises(TypeError):
            seen[-1]["color"] = "green"  # type: ignore[index]
    assert '"blue"' in params_file.read_text()
