#!/usr/bin/env python3
"""Throughput against the field: Torsion, granian, gunicorn, uWSGI, waitress and twist web
serving the same WSGI application (bench/apps.py), scenario by scenario, and the ceiling.

Usage: python3 bench/run.py [--duration 4] [--rounds 2] [--only SCENARIO[,..]]
                            [--servers NAME[,..]] [--binary target/release/torsion]
                            [--write bench/RESULTS.md]

One command does everything: it creates or updates bench/.venv from bench/requirements.txt
when the venv is missing or the file changed (a hash stamp, as scripts/test.sh does for
.venv), builds Torsion with `cargo build --release -p torsion` unless --binary is given,
builds the ceiling (wsgi/examples/ceiling.rs) with `cargo build --release -p torsion-wsgi --example ceiling`,
checks that wrk and h2load (and openssl, for the HTTPS scenarios) are installed (Debian packages
wrk, nghttp2-client and openssl), then runs
every scenario against every server. Each (round, scenario, server) gets a fresh server on a
free loopback port, started from bench/ and pinned to CPU 0 with taskset; the load generator
(and this script, which samples memory) runs on CPU 1. The server order is reversed on odd
rounds and rotated on later ones, so that drift hits every server alike; the tables give
the median of the rounds.

Scenarios (--only): hello, hello-log, hello-metrics, close, 64k, stream, echo, h2c, https, h2s, sleep,
django, flask, hello-w2, sleep-w2, static, idle.

hello-w2 and sleep-w2 are hello and sleep with 2 worker processes: Torsion `--workers 2`,
granian `--workers 2`, gunicorn `--workers 2`, uWSGI `--processes 2` (waitress, twist web and
the ceiling run one process: n/a). There the server may run on both cores (taskset -c 0,1),
which the load generator shares, so the rates show what two processes gain on a two-core
machine that also generates the load, not a server's whole capacity.

The close row first checks that the server closes a connection whose request says
`Connection: close` (RFC 9112 §9.6); one that keeps it open (uWSGI's `--http11-socket`) is
n/a there, since wrk would then reuse its connections.

hello-metrics is hello with Torsion's control channel on (`--control unix:...`), which makes
the request path count every request for /metrics; the table divides its rate by hello's.
hello-log is hello with Torsion's access log on (the Combined Log Format, to a file in a
temporary directory); only Torsion runs it, and the target table divides it by hello.
Servers (--servers): torsion, granian, gunicorn, uwsgi, waitress, twist, ceiling, nginx,
torsion-wheel.

torsion-wheel is Torsion from its wheel: built with `maturin build --release --zig
--compatibility manylinux_2_28` for bench/.venv's Python, installed into bench/.venv, and run as that venv's `torsion` console script, so the
server runs inside the venv's own interpreter rather than the one the binary embeds. It runs
every scenario the binary runs (hello-log and static included), and a table divides its rates
by the binary's. It is left out unless named.

The static scenario fetches one 100 KiB file (made for the run in a temporary directory) from
the servers that serve static files themselves: Torsion (`--static /static=DIR`), granian
(`--static-path-mount DIR`) and nginx (Debian's nginx-light: one worker, `sendfile on`,
`tcp_nopush on`, access log off); the others are n/a, and nginx takes part in no other
scenario.

The ceiling is not a WSGI server: it is Torsion's HTTP stack (same runtime, same listeners,
hyper) answering the same routes from Rust, with no Python (wsgi/examples/ceiling.rs). A WSGI
server can only do more work per request, so, within the noise of a run (about 10% between
rounds on this machine), the ceiling's rate bounds what any server here could reach with this
load generator on one core; the target table divides by it.

Load: wrk -t1 -c64 --latency --timeout 2s (req/s, p50, p99, errors = non-2xx/3xx plus socket
errors) for HTTP/1.1, with -c256 for the 10 ms sleep, bench/post.lua for the 1 MiB POST, and
-c16 for the real applications (django, flask): one connection a thread, so that every server
answers every connection and the p99s compare alike (uWSGI's threads each keep one connection
until it closes, and at -c64 wrk's latencies leave out the 48 that wait);
h2load -t1 -c64 -m10 for HTTP/2 cleartext with prior knowledge (req/s and the mean and sd of
request time, as h2load reports them; "n/a" for a server that fails one prior-knowledge
request). The HTTPS scenarios (https: wrk as for hello; h2s: h2load as for h2c, offering only h2
by ALPN, "n/a" for a server that does not negotiate it) use a self-signed P-256 certificate for
127.0.0.1 and localhost, made with the openssl CLI once per run in a temporary directory that is
removed at the end; servers without TLS support are "n/a". Peak RSS is the sum of VmRSS over the server's process tree (the pid and its
descendants in /proc), sampled every 50 ms during the load. The idle scenario opens 1,000
keep-alive connections that each made one request (GET /), gives the server 8 s to answer
them all, holds them 2 s and reports the server's peak RSS during the hold; its errors
column counts connections left unanswered or closed by the server.

With --write FILE, the section headed "## Throughput against the field" of FILE is
replaced (other sections are kept; the section is appended if missing).
"""

import argparse
import datetime
import errno
import hashlib
import http.client
import os
import platform
import re
import resource
import selectors
import shlex
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
VENV = os.path.join(BENCH, ".venv")
REQUIREMENTS = os.path.join(BENCH, "requirements.txt")
STAMP = os.path.join(VENV, ".requirements.sha256")
SECTION = "## Throughput against the field"

SERVER_CPU, LOAD_CPU = "0", "1"
THREADS = 16
WRK_TIMEOUT = "2s"  # wrk's default, explicit: a request unanswered for 2 s is a timeout error
IDLE_CONNECTIONS, IDLE_HOLD, IDLE_DEADLINE, IDLE_IN_FLIGHT = 1000, 2.0, 8.0, 32
SAMPLE_EVERY = 0.05
RUN_OVERHEAD = 0.5  # seconds to start, probe and stop a server, for the estimate
IDLE_ESTIMATE = 6.0  # 3 s, or IDLE_DEADLINE + IDLE_HOLD for a server that leaves connections unanswered

# Scenario key -> title, kind and load options. "not yet" ones are printed as such.
SCENARIOS = {
    "hello": dict(title="HTTP/1.1 hello, keep-alive", kind="wrk", path="/", connections=64),
    # Right after hello, so that the two runs it compares are next to each other in time.
    "hello-log": dict(title="HTTP/1.1 hello, keep-alive, access log on", kind="wrk", path="/", connections=64,
                      access_log=True),
    # The same, with Torsion's control channel on, so that the request path counts metrics.
    "hello-metrics": dict(title="HTTP/1.1 hello, keep-alive, metrics on (--control)", kind="wrk", path="/",
                          connections=64, metrics=True),
    "close": dict(title="HTTP/1.1 hello, Connection: close", kind="wrk", path="/", connections=64,
                  wrk=["-H", "Connection: close"]),
    "64k": dict(title="HTTP/1.1 64 KiB response", kind="wrk", path="/64k", connections=64),
    "stream": dict(title="HTTP/1.1 1 MiB streamed response (16 x 64 KiB from a generator)", kind="wrk",
                   path="/stream", connections=64),
    "echo": dict(title="HTTP/1.1 1 MiB POST echo", kind="wrk", path="/echo", connections=64,
                 wrk=["-s", os.path.join(BENCH, "post.lua")]),
    "h2c": dict(title="HTTP/2 cleartext hello (prior knowledge)", kind="h2", path="/", connections=64),
    "https": dict(title="HTTPS HTTP/1.1 hello, keep-alive", kind="wrk", path="/", connections=64, tls=True),
    "h2s": dict(title="HTTPS HTTP/2 hello (ALPN h2)", kind="h2", path="/", connections=64, tls=True),
    "sleep": dict(title="HTTP/1.1 sleep 10 ms, 256 connections", kind="wrk", path="/sleep", connections=256),
    # Real applications (bench/realapps): the work users' pages do. 16 connections, one a
    # server thread: uWSGI serves only 16 at a time, and wrk's latencies would leave the
    # connections waiting out of its p99.
    "django": dict(title="Django page: the polls index (template loop over an ORM query on SQLite), 16 connections", kind="wrk",
                   path="/polls/", connections=16, app="realapps.django_site:application"),
    "flask": dict(title="Flask JSON: 300 records serialised, 16 connections", kind="wrk", path="/records", connections=16,
                  app="realapps.flask_json:app"),
    # Worker processes: the servers on both cores, which the load generator shares.
    "hello-w2": dict(title="HTTP/1.1 hello, keep-alive, 2 worker processes (both cores, shared with the load "
                     "generator)", kind="wrk", path="/", connections=64, workers=2),
    "sleep-w2": dict(title="HTTP/1.1 sleep 10 ms, 256 connections, 2 worker processes (both cores, shared with "
                     "the load generator)", kind="wrk", path="/sleep", connections=256, workers=2),
    "static": dict(title="HTTP/1.1 static file, 100 KiB", kind="wrk", path="/static/static.bin", connections=64,
                   static=True),
    # Last: it leaves thousands of sockets closing, which slowed the scenario after it.
    "idle": dict(title=f"{IDLE_CONNECTIONS:,} idle keep-alive connections", kind="idle", path="/"),
}
NOT_YET = []
STATIC_SIZE = 100 * 1024
# Servers that serve files themselves; the others are n/a in the static scenario.
STATIC_SERVERS = {"torsion", "torsion-wheel", "granian", "nginx"}
# Servers with no worker processes of their own: n/a in the workers scenarios.
NO_WORKERS = {"waitress": "one process only (waitress has threads, no worker processes)",
              "twist": "one process only (twist web has no worker processes)",
              "ceiling": "the ceiling runs one process",
              "nginx": "nginx serves no WSGI application"}
# The servers that are Torsion: they take Torsion's flags and its access-log scenario.
TORSIONS = {"torsion", "torsion-wheel"}
# The real-application rows run Django or Flask, which the ceiling (no Python) cannot.
CEILING_NO_APP = "the ceiling runs no Python application"
NO_STATIC = "no static file serving of its own (its users put WhiteNoise or a proxy in front)"
# nginx serves files only: n/a in every other scenario.
NGINX_ONLY_STATIC = "nginx serves no WSGI application"
# The static scenario's target: Torsion's req/s over nginx's.
NGINX_TARGET = 0.8
# hello-log: Torsion with its access log (combined, to a file) against Torsion without.
LOG_ONLY_TORSION = "the scenario measures the cost of Torsion's own access log"
LOG_TARGET = 0.95
# hello-metrics: Torsion with a control channel (so counting requests) against Torsion without.
METRICS_ONLY_TORSION = "the scenario measures the cost of Torsion's own metrics"
METRICS_TARGET = 0.98

# Targets: Torsion's req/s at least the best peer's in every row (idle: RSS at most the
# lowest peer's), and at least these fractions of the ceiling's.
PEERS = {"granian", "gunicorn", "uwsgi", "waitress", "twist"}
CEILING_TARGET = {"hello": 0.8, "h2c": 0.8, "h2s": 0.7}
# Servers whose thread count the benchmark cannot set to THREADS: twist web's WSGI resource
# runs on the reactor's thread pool (about 20 threads here: 1,919 req/s of 10 ms sleeps).
UNEQUAL_THREADS = {"twist"}
CEILING_TARGET_OTHER = 0.85  # every other keep-alive row the ceiling runs


def ceiling_target_of(key):
    """The ceiling target of row `key`, or None where there is none (Connection: close, the
    worker, static and real-application rows, which the ceiling does not run alike)."""
    scenario = SCENARIOS[key]
    if key in CEILING_TARGET:
        return CEILING_TARGET[key]
    if (key == "close" or scenario.get("workers") or scenario.get("static") or scenario.get("app")
            or scenario.get("access_log") or scenario.get("metrics") or key == "sleep"):
        return None
    return CEILING_TARGET_OTHER


def venv_bin(name):
    return os.path.join(VENV, "bin", name)


# Servers that cannot serve HTTPS themselves: their HTTPS rows are n/a with this reason.
NO_TLS = {"waitress": "no TLS: waitress serves plain HTTP only (its docs put TLS in a proxy in front)"}


def server_commands(binary, port, tls=None, static=None, access_log=None, workers=None, control=None,
                    app="apps:app"):
    """Each server's argv: same application, 16 threads (or 1 sync worker), logging off; with
    tls=(key, cert), HTTPS on the same port (servers in NO_TLS are left out); with static=DIR,
    DIR served at /static by the servers that can (and nginx, from a config written to DIR's
    parent)."""
    if tls:
        key, cert = tls
        listen = "ssl:{}:interface=127.0.0.1:privateKey={}:certKey={}".format(
            port, key.replace(":", "\\:"), cert.replace(":", "\\:"))
    else:
        listen = f"tcp:{port}:interface=127.0.0.1"
    commands = {
        "torsion": [binary, "web", "--wsgi", app, "--listen", listen, "--threads", str(THREADS)],
        "granian": [venv_bin("granian"), "--interface", "wsgi", "--host", "127.0.0.1", "--port", str(port),
                    "--workers", "1", "--blocking-threads", str(THREADS), "--http", "auto", "--no-log",
                    *(["--ssl-certificate", cert, "--ssl-keyfile", key] if tls else []), app],
        "gunicorn": [venv_bin("gunicorn"), "--workers", "1", "--worker-class", "sync",
                     "--bind", f"127.0.0.1:{port}", "--log-level", "warning",
                     *(["--certfile", cert, "--keyfile", key] if tls else []), app],
        # --http11-socket: the plain --http-socket closes every connection (no keep-alive);
        # --https-socket has no HTTP/1.1 variant.
        "uwsgi": [venv_bin("uwsgi"),
                  *(["--https-socket", f"127.0.0.1:{port},{cert},{key}"] if tls
                    else ["--http11-socket", f"127.0.0.1:{port}"]),
                  "--module", app, "--processes", "1", "--threads", str(THREADS), "--disable-logging",
                  "--need-app"],
        "waitress": [venv_bin("waitress-serve"), "--threads", str(THREADS), "--listen", f"127.0.0.1:{port}",
                     app],
        "twist": [venv_bin("twist"), "--log-level=error", "web", "--wsgi", app.replace(":", "."), "--listen",
                  listen],
        "ceiling": [CEILING, listen],
        "nginx": [NGINX, "-c", nginx_config(static, port) if static else "/dev/null", "-e", "/dev/null"],
    }
    if workers:
        commands["torsion"] += ["--workers", str(workers)]
        commands["granian"][commands["granian"].index("--workers") + 1] = str(workers)
        commands["gunicorn"][commands["gunicorn"].index("--workers") + 1] = str(workers)
        commands["uwsgi"][commands["uwsgi"].index("--processes") + 1] = str(workers)
    commands["torsion-wheel"] = [venv_bin("torsion"), *commands["torsion"][1:]]
    for name in TORSIONS:
        if access_log:
            commands[name] += ["--access-log", access_log]
        if control:
            commands[name] += ["--control", f"unix:{control}"]
        if static:
            commands[name] += ["--static", f"/static={static}"]
    if static:
        commands["granian"][-1:-1] = ["--static-path-mount", static, "--static-path-expires", "0"]
    return {name: argv for name, argv in commands.items() if not (tls and name in NO_TLS)}


# How the peers behave with these flags and the pinned versions (seen while writing this
# script); it explains rows that would otherwise look like measuring errors.
PEER_NOTES = [
    "Reading the tables: wrk counts a request that is never answered neither in the latencies nor as "
    "an error (its timeouts are answers that came after 2 s), so a server that leaves some connections "
    "waiting shows good latencies for the others. uWSGI's `--http11-socket` keeps connections alive, "
    "but each of its 16 threads serves one connection until the client closes it or the socket timeout "
    "(4 s) passes, and the other connections wait; a response without Content-Length (the stream) is "
    "neither chunked nor followed by a close, so its end shows only at that timeout (the plain "
    "`--http-socket` closes every connection without saying so). waitress serves 100 connections at a "
    "time (its default `connection_limit`) and closes the connection after a streamed response. "
    "gunicorn's sync worker answers `Connection: close`, then waits up to its keep-alive time (2 s) for "
    "the client to close, one connection at a time, so idle clients stall it. Only Torsion and granian "
    "answer HTTP/2 with prior knowledge over cleartext. Over TLS: uWSGI's `--https-socket` has no "
    "HTTP/1.1 variant and closes every connection without saying so (wrk's read errors), waitress has no "
    "TLS, and only Torsion and granian negotiate h2 by ALPN (gunicorn has no HTTP/2; twist web would need "
    "the h2 package).",
]

SERVERS = ["torsion", "granian", "gunicorn", "uwsgi", "waitress", "twist", "ceiling", "nginx"]
# Named with --servers only.
OPTIONAL_SERVERS = ["torsion-wheel"]
LABEL = {"twist": "twist web", "ceiling": "ceiling (no Python)", "torsion-wheel": "torsion (wheel)"}


def nginx_config(static, port):
    """An nginx configuration beside `static` (a directory named `static`): one worker in the
    foreground, sendfile, no access log, the files at /static/ and 200 at / (for the
    readiness probe). Returns its path."""
    parent = os.path.dirname(static)
    path = os.path.join(parent, f"nginx-{port}.conf")
    temp = os.path.join(parent, "nginx-temp")
    os.makedirs(temp, exist_ok=True)
    with open(path, "w") as f:
        f.write(f"""worker_processes 1;
daemon off;
error_log stderr error;
pid {parent}/nginx-{port}.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path {temp}; proxy_temp_path {temp}; fastcgi_temp_path {temp};
    uwsgi_temp_path {temp}; scgi_temp_path {temp};
    server {{
        listen 127.0.0.1:{port};
        location /static/ {{ root {parent}; }}
        location = / {{ return 200 "ok"; }}
    }}
}}
""")
    return path
CEILING = os.path.join(ROOT, "target", "release", "examples", "ceiling")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


# --- set-up ------------------------------------------------------------------------------------

def ensure_venv():
    with open(REQUIREMENTS, "rb") as f:
        wanted = hashlib.sha256(f.read()).hexdigest()
    try:
        with open(STAMP) as f:
            stamped = f.read().strip()
    except OSError:
        stamped = None
    if os.access(venv_bin("python"), os.X_OK) and stamped == wanted:
        return
    python = os.environ.get("PYTHON", "python3")
    if not os.access(venv_bin("python"), os.X_OK):
        print("creating bench/.venv from bench/requirements.txt", file=sys.stderr)
        shutil.rmtree(VENV, ignore_errors=True)
        subprocess.run([python, "-m", "venv", VENV], check=True)
    else:
        print("updating bench/.venv from bench/requirements.txt", file=sys.stderr)
    subprocess.run([venv_bin("pip"), "install", "--quiet", "--disable-pip-version-check", "-r", REQUIREMENTS],
                   check=True)
    with open(STAMP, "w") as f:
        f.write(wanted + "\n")


def build_torsion():
    env = dict(os.environ)
    env.pop("VIRTUAL_ENV", None)
    subprocess.run(["cargo", "build", "--release", "-p", "torsion"], cwd=ROOT, env=env, check=True)
    return os.path.join(ROOT, "target", "release", "torsion")


def build_wheel():
    """Builds Torsion's wheel (release profile) for bench/.venv's Python and installs it there,
    as a user installs it; returns the console script."""
    out = os.path.join(ROOT, "target", "bench-wheel")
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ)
    env.pop("VIRTUAL_ENV", None)
    # As shipped: linked by zig against glibc 2.28 (maturin finds zig through the python on PATH).
    env["PATH"] = os.path.join(VENV, "bin") + os.pathsep + env.get("PATH", "")
    subprocess.run([venv_bin("maturin"), "build", "--release", "--quiet", "--zig", "--compatibility", "manylinux_2_28",
                    "-m", os.path.join(ROOT, "cli", "Cargo.toml"),
                    "-i", venv_bin("python"), "--target-dir", os.path.join(ROOT, "target", "wheel-release"),
                    "--out", out], cwd=ROOT, env=env, check=True)
    wheels = [os.path.join(out, name) for name in os.listdir(out) if name.endswith(".whl")]
    subprocess.run([venv_bin("pip"), "install", "--quiet", "--disable-pip-version-check", "--force-reinstall",
                    "--no-deps", *wheels], check=True)
    return venv_bin("torsion")


def build_ceiling():
    subprocess.run(["cargo", "build", "--release", "-p", "torsion-wsgi", "--example", "ceiling"], cwd=ROOT,
                   check=True)
    return CEILING


def check_tools(tls=False, nginx=False):
    packages = {"wrk": "wrk", "h2load": "nghttp2-client", "taskset": "util-linux", **({"openssl": "openssl"} if tls else {}),
                **({"nginx": "nginx-light"} if nginx else {})}
    missing = [tool for tool in packages if not (shutil.which(tool) or tool == "nginx" and os.access(NGINX, os.X_OK))]
    if missing:
        raise SystemExit(f"bench/run.py needs {', '.join(missing)} on PATH; on Debian or Ubuntu:\n"
                         f"    sudo apt-get install {' '.join(packages[tool] for tool in missing)}")
    cpus = os.sched_getaffinity(0)
    if not {0, 1} <= cpus:
        raise SystemExit(f"bench/run.py pins servers to CPU 0 and the load to CPU 1, but may only use CPUs {sorted(cpus)}")


def make_certificate(directory):
    """A self-signed P-256 certificate for localhost and 127.0.0.1: (key, cert) paths."""
    key, cert = os.path.join(directory, "key.pem"), os.path.join(directory, "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    return key, cert


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4 * IDLE_CONNECTIONS + 1024
    if soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        if new < 2 * IDLE_CONNECTIONS + 64:
            print(f"warning: RLIMIT_NOFILE is {new}; the idle scenario needs ~{2 * IDLE_CONNECTIONS}",
                  file=sys.stderr)


# --- servers -----------------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid):
    """pid and every process below it, from the parent pids in /proc/*/stat."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, ()))
    return tree


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Sampler(threading.Thread):
    """Peak of the summed VmRSS of a process tree, every 50 ms; the tree is re-read each second."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.running = pid, 0, True
        self.tree, self.tree_at = descendants(pid), time.monotonic()

    def run(self):
        while self.running:
            if time.monotonic() - self.tree_at > 1.0:
                self.tree, self.tree_at = descendants(self.pid), time.monotonic()
            self.peak = max(self.peak, sum(rss_kb(p) for p in self.tree))
            time.sleep(SAMPLE_EVERY)

    def reset(self):
        self.peak = 0

    def stop(self):
        self.running = False
        self.join()
        return self.peak


class Server:
    def __init__(self, name, binary, tls=None, static=None, access_log=None, workers=None, control=None,
                 app="apps:app"):
        self.name, self.port, self.tls = name, free_port(), tls
        argv = server_commands(binary, self.port, tls, static, access_log, workers, control, app)[name]
        # Worker processes get both cores (the load generator's too); otherwise CPU 0 alone.
        cpus = "0,1" if workers else SERVER_CPU
        env = dict(os.environ)
        env.pop("VIRTUAL_ENV", None)
        if name == "torsion":
            # The binary embeds the interpreter it was built with: the venv (made by the same
            # Python) gives it the real applications' packages, as `python` from it would.
            env["VIRTUAL_ENV"] = VENV
        env["PATH"] = os.path.join(VENV, "bin") + os.pathsep + env.get("PATH", "")
        env["PYTHONPATH"] = BENCH  # twist web does not put the current directory on sys.path
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(["taskset", "-c", cpus, *argv], cwd=BENCH, env=env,
                                        stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)

    def log_tail(self):
        self.log.seek(0)
        lines = [line for line in self.log.read().decode(errors="replace").splitlines() if line.strip()]
        return lines[-1][:160] if lines else "(no output)"

    def wait_ready(self, timeout=30.0, path="/"):
        """Until it accepts a connection and answers GET `path` with 200; else a reason."""
        deadline, last = time.monotonic() + timeout, "no answer"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return f"exited with status {self.process.returncode}: {self.log_tail()}"
            try:
                if self.tls:  # and the certificate must be ours, for 127.0.0.1
                    conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=2,
                                                       context=ssl.create_default_context(cafile=self.tls[1]))
                else:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", path)
                response = conn.getresponse()
                response.read()
                conn.close()
                if response.status == 200:
                    return None
                last = f"GET {path} answered {response.status}"
            except (OSError, http.client.HTTPException) as e:
                last = str(e) or type(e).__name__
            time.sleep(0.025)
        return f"not ready after {timeout:.0f} s ({last})"

    def stop(self):
        tree = descendants(self.process.pid)
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for pid in tree:  # anything that left the process group
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait()
        self.log.close()


# --- load --------------------------------------------------------------------------------------

def to_ms(value, unit):
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(scenario, port, duration):
    argv = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{scenario['connections']}", f"-d{duration}s",
            "--latency", "--timeout", WRK_TIMEOUT, *scenario.get("wrk", []),
            f"{url_base(scenario, port)}{scenario['path']}"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    out = done.stdout
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    p50 = re.search(r"^\s*50%\s+([\d.]+)(us|ms|s|m)\b", out, re.M)
    p99 = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s|m)\b", out, re.M)
    count = re.search(r"^\s*(\d+) requests in ", out, re.M)
    if not rps or not p50 or not p99 or not count:
        return dict(na=f"wrk failed: {(done.stderr or out).strip().splitlines()[-1:] or done.returncode}")
    errors = {}
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if socket_errors:
        for kind, n in zip(("connect", "read", "write", "timeout"), socket_errors.groups()):
            errors[kind] = int(n)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors["non-2xx"] = int(non2xx.group(1)) if non2xx else 0
    if int(count.group(1)) == 0:  # wrk prints 0.00us percentiles: there are none
        return dict(rps=0.0, errors=errors, note=f"no response completed within the {duration} s run")
    return dict(rps=float(rps.group(1)), p50=to_ms(*p50.groups()), p99=to_ms(*p99.groups()), errors=errors)


def url_base(scenario, port):
    return f"{'https' if scenario.get('tls') else 'http'}://127.0.0.1:{port}"


# h2load over https offers only h2 by ALPN, so that it cannot fall back to HTTP/1.1.
H2_TLS = ["--npn-list=h2"]


def no_h2(scenario):
    return "no h2 over TLS (ALPN)" if scenario.get("tls") else "no h2c (prior knowledge)"


def h2c_probe(scenario, port):
    """None if the server answers one HTTP/2 request (h2c with prior knowledge, or h2 by ALPN
    over TLS), else why not."""
    tls = H2_TLS if scenario.get("tls") else []
    try:
        done = subprocess.run(["h2load", "-n1", "-c1", "-N3", *tls, f"{url_base(scenario, port)}/"],
                              capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        return f"{no_h2(scenario)}: one request timed out"
    if re.search(r"\b1 succeeded\b", done.stdout) and (not tls or "Application protocol: h2" in done.stdout):
        return None
    return f"{no_h2(scenario)}: the request failed"


def close_probe(port):
    """None if the server closes the connection after answering a request that says
    `Connection: close` (RFC 9112 §9.6: it must), else why not. A server that keeps it open
    answers without `close`, so wrk sends its next request on the same connection and the
    close row would measure keep-alive instead of connection set-up."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            received = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return None
                received += chunk
    except socket.timeout:
        head = received.split(b"\r\n\r\n", 1)[0].decode("latin-1", "replace")
        connection = re.search(r"(?im)^connection:\s*(\S+)", head)
        return ("does not close the connection when the client asks (Connection: close; RFC 9112 "
                f"§9.6 says it must): its answer says {connection.group(1) if connection else 'no Connection'} "
                "and wrk reuses the connection, so its rate here would be keep-alive's")
    except OSError as e:
        return f"the close probe failed: {e}"


def run_h2load(scenario, port, duration):
    argv = ["taskset", "-c", LOAD_CPU, "h2load", "-t1", f"-c{scenario['connections']}", "-m10",
            "-D", str(duration), *(H2_TLS if scenario.get("tls") else []),
            f"{url_base(scenario, port)}{scenario['path']}"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    out = done.stdout
    rps = re.search(r"^finished in [\d.]+\w+, ([\d.]+) req/s", out, re.M)
    requests = re.search(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                         r"(\d+) errored, (\d+) timeout", out, re.M)
    codes = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out, re.M)
    timing = re.search(r"^time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)"
                       r"\s+([\d.]+)(us|ms|s)", out, re.M)
    if not rps or not requests or not codes or not timing:
        return dict(na=f"h2load failed: {(done.stderr or out).strip().splitlines()[-1:] or done.returncode}")
    if int(requests.group(4)) == 0:
        return dict(na=f"{no_h2(scenario)}: no request succeeded")
    errors = {"failed": int(requests.group(5)), "4xx": int(codes.group(3)), "5xx": int(codes.group(4))}
    t = timing.groups()
    return dict(rps=float(rps.group(1)), mean=to_ms(t[4], t[5]), sd=to_ms(t[6], t[7]), errors=errors)


def response_complete(buf):
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return False
    length = re.search(rb"(?im)^content-length:\s*(\d+)", bytes(buf[:end]))
    return length is None or len(buf) - end - 4 >= int(length.group(1))


def open_keepalive(port, count, in_flight, deadline, path="/"):
    """Opens `count` connections to `port`, at most `in_flight` of them connecting or
    unanswered at a time, sends `GET path` on each and reads its answer, for at most
    `deadline` seconds. Returns every socket opened, the answered ones, and how many were
    refused and how many closed before answering."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    sel = selectors.DefaultSelector()
    sockets, answered, refused, closed_early = [], [], 0, 0
    give_up = time.monotonic() + deadline
    while time.monotonic() < give_up and (len(sockets) < count or sel.get_map()):
        while len(sockets) < count and len(sel.get_map()) < in_flight:
            s = socket.socket()
            s.setblocking(False)
            sockets.append(s)
            code = s.connect_ex(("127.0.0.1", port))
            if code not in (0, errno.EINPROGRESS):
                refused += 1
                continue
            sel.register(s, selectors.EVENT_WRITE, None)
        for key, _ in sel.select(timeout=0.05):
            s = key.fileobj
            if key.data is None:  # connected (or not)
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    refused += 1
                    sel.unregister(s)
                    continue
                s.send(request)
                sel.modify(s, selectors.EVENT_READ, bytearray())
                continue
            try:
                chunk = s.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                closed_early += 1
                sel.unregister(s)
                continue
            key.data.extend(chunk)
            if response_complete(key.data):
                answered.append(s)
                sel.unregister(s)
    sel.close()
    return sockets, answered, refused, closed_early


def run_idle(port, sampler):
    """Open IDLE_CONNECTIONS keep-alive connections, one GET / each (at most IDLE_IN_FLIGHT
    unanswered at a time), hold them IDLE_HOLD seconds, and report the peak RSS of the hold."""
    sockets, answered, refused, closed_early = open_keepalive(port, IDLE_CONNECTIONS, IDLE_IN_FLIGHT,
                                                              IDLE_DEADLINE)
    unanswered = IDLE_CONNECTIONS - len(answered) - refused - closed_early
    sampler.reset()
    time.sleep(IDLE_HOLD)
    rss = sampler.peak
    closed = 0
    for s in answered:
        try:
            if s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    for s in sockets:
        s.close()
    errors = {"unanswered": unanswered, "refused": refused, "closed before answering": closed_early,
              "closed by server after answering": closed}
    return dict(rss=rss, errors=errors)


def run_one(name, key, binary, duration, tls=None, static=None):
    scenario = SCENARIOS[key]
    if scenario.get("tls") and name in NO_TLS:
        return dict(na=NO_TLS[name])
    if scenario.get("static") and name not in STATIC_SERVERS:
        return dict(na=NO_STATIC)
    if name == "nginx" and not scenario.get("static"):
        return dict(na=NGINX_ONLY_STATIC)
    if scenario.get("access_log") and name not in TORSIONS:
        return dict(na=LOG_ONLY_TORSION)
    if scenario.get("metrics") and name not in TORSIONS:
        return dict(na=METRICS_ONLY_TORSION)
    if scenario.get("workers") and name in NO_WORKERS:
        return dict(na=NO_WORKERS[name])
    if scenario.get("app") and name == "ceiling":
        return dict(na=CEILING_NO_APP)
    access_log = os.path.join(os.path.dirname(static), "access.log") if scenario.get("access_log") else None
    control = os.path.join(os.path.dirname(static), f"control-{name}.sock") if scenario.get("metrics") else None
    if control and os.path.exists(control):
        os.unlink(control)
    server = Server(name, binary, tls if scenario.get("tls") else None, static if scenario.get("static") else None,
                    access_log, scenario.get("workers"), control, scenario.get("app", "apps:app"))
    try:
        started = time.monotonic()
        reason = server.wait_ready(path=scenario.get("path", "/") if scenario.get("app") else "/")
        if reason:
            return dict(na=f"did not start: {reason}")
        ready = time.monotonic() - started
        if scenario["kind"] == "h2":
            reason = h2c_probe(scenario, server.port)
            if reason:
                return dict(na=reason)
        if key == "close":
            reason = close_probe(server.port)
            if reason:
                return dict(na=reason)
        sampler = Sampler(server.process.pid)
        sampler.start()
        try:
            if scenario["kind"] == "wrk":
                result = run_wrk(scenario, server.port, duration)
            elif scenario["kind"] == "h2":
                result = run_h2load(scenario, server.port, duration)
            else:
                result = run_idle(server.port, sampler)
        finally:
            peak = sampler.stop()
        result.setdefault("rss", peak)
        result["ready"] = ready
        if server.process.poll() is not None:
            result = dict(na=f"server died during the load: {server.log_tail()}")
        return result
    finally:
        server.stop()


# --- report ------------------------------------------------------------------------------------

def median_result(rounds):
    good = [r for r in rounds if "na" not in r]
    if not good:
        return dict(na=rounds[0]["na"] if rounds else "not run")
    merged = {}
    for field in ("rps", "p50", "p99", "mean", "sd", "rss"):
        values = [r[field] for r in good if field in r]
        if values:
            merged[field] = statistics.median(values)
    kinds = {kind for r in good for kind in r["errors"]}
    merged["errors"] = {kind: statistics.median([r["errors"].get(kind, 0) for r in good]) for kind in kinds}
    notes = [r["note"] for r in good if "note" in r]
    if len(good) < len(rounds):
        notes.append(f"{len(rounds) - len(good)} of {len(rounds)} rounds n/a: " +
                     next(r["na"] for r in rounds if "na" in r))
    if notes:
        merged["note"] = "; ".join(dict.fromkeys(notes))
    return merged


def fmt_ms(ms):
    if ms is None:
        return "—"
    if ms >= 1000:
        return f"{ms / 1000:.2f} s"
    if ms >= 100:
        return f"{ms:.0f} ms"
    if ms >= 10:
        return f"{ms:.1f} ms"
    return f"{ms:.2f} ms"


def fmt_count(n):
    return f"{n:,.0f}" if n == int(n) else f"{n:,.1f}"


def fmt_errors(errors):
    total = sum(errors.values())
    if not total:
        return "0"
    parts = ", ".join(f"{kind} {fmt_count(n)}" for kind, n in sorted(errors.items()) if n)
    return f"{fmt_count(total)} ({parts})"


def scenario_table(key, servers, results):
    scenario = SCENARIOS[key]
    if scenario["kind"] == "h2":
        head = "| server | req/s | mean | sd | peak RSS MB | errors |"
    else:
        head = "| server | req/s | p50 | p99 | peak RSS MB | errors |"
    lines = [f"### {scenario['title']}", "", head, "|---|---|---|---|---|---|"]
    notes = []
    for name in servers:
        r = results[key][name]
        label = LABEL.get(name, name)
        if "na" in r:
            lines.append(f"| {label} | n/a | n/a | n/a | n/a | {r['na']} |")
            continue
        rss = f"{r['rss'] / 1024:.1f}"
        if scenario["kind"] == "idle":
            lines.append(f"| {label} | — | — | — | {rss} | {fmt_errors(r['errors'])} |")
        else:
            a, b = ("mean", "sd") if scenario["kind"] == "h2" else ("p50", "p99")
            lines.append(f"| {label} | {r['rps']:,.0f} | {fmt_ms(r.get(a))} | {fmt_ms(r.get(b))} | {rss} | "
                         f"{fmt_errors(r['errors'])} |")
        if "note" in r:
            notes.append(f"{label}: {r['note']}")
    if notes:
        lines += [""] + [f"Note: {note}." for note in notes]
    return lines


def ratio(results, key, name, field, numerator="torsion"):
    mine, theirs = results.get(key, {}).get(numerator), results.get(key, {}).get(name)
    if not mine or not theirs or "na" in mine or "na" in theirs or not theirs.get(field):
        return None
    return mine[field] / theirs[field]


def verdict(value, target, at_most=False):
    if value is None:
        return "n/a"
    return "met" if (value <= target if at_most else value >= target) else "not met"


def best_peer(results, key, field="rps"):
    """The peer (not Torsion, the ceiling or nginx) with the highest req/s in row `key` (the
    lowest RSS for idle), and its value; (None, None) when no peer ran. A peer with errors
    in the row (timeouts, unanswered connections) did not do the row's work and is left
    out, and so is one that ran more threads than the others where threads bound the rate
    (twist web's thread pool, which its command line cannot set, in the sleep rows)."""
    unequal = UNEQUAL_THREADS if SCENARIOS[key].get("path") == "/sleep" else set()
    peers = [(name, r[field]) for name, r in results.get(key, {}).items()
             if name in PEERS and name not in unequal and r and "na" not in r and r.get(field)
             and not any((r.get("errors") or {}).values())]
    if not peers:
        return None, None
    pick = min if field == "rss" else max
    return pick(peers, key=lambda peer: peer[1])


def ratio_table(keys, results):
    lines = ["### Against the targets", "",
             "Torsion's req/s divided by the best peer's in each row (the peer named; idle: RSS divided by "
             "the lowest peer RSS, at most 1.0x), and by the ceiling's (the same HTTP stack with no Python: "
             f"at least {CEILING_TARGET['hello']}x on hello and h2c, {CEILING_TARGET['h2s']}x on HTTPS h2, "
             f"{CEILING_TARGET_OTHER}x on every other keep-alive row). Rounds differ by about 10%.", "",
             "| scenario | best peer | Torsion/best peer | target | met | Torsion/ceiling | target | met |",
             "|---|---|---|---|---|---|---|---|"]
    for key in keys:
        title = SCENARIOS[key]["title"]
        if SCENARIOS[key]["kind"] == "idle":
            peer, value = best_peer(results, key, "rss")
            mine = results.get(key, {}).get("torsion")
            r = mine["rss"] / value if peer and mine and "na" not in mine and mine.get("rss") else None
            c = ratio(results, key, "ceiling", "rss")
            lines.append(f"| {title}: RSS | {LABEL.get(peer, peer) or 'n/a'} | {fmt_ratio(r, 1.0, at_most=True)} "
                         f"| ≤ 1.0x | {verdict(r, 1.0, at_most=True)} | {fmt_ratio(c)} | — | |")
            continue
        peer, value = best_peer(results, key)
        mine = results.get(key, {}).get("torsion")
        r = mine["rps"] / value if peer and mine and "na" not in mine and mine.get("rps") else None
        c = ratio(results, key, "ceiling", "rps")
        ceiling_target = ceiling_target_of(key)
        ceiling_cells = (f"{fmt_ratio(c, ceiling_target)} | ≥ {ceiling_target}x | {verdict(c, ceiling_target)}"
                         if ceiling_target else f"{fmt_ratio(c)} | — | ")
        lines.append(f"| {title} | {LABEL.get(peer, peer) or 'n/a'} | {fmt_ratio(r, 1.0)} | ≥ 1.0x | "
                     f"{verdict(r, 1.0)} | {ceiling_cells} |")
    for title in NOT_YET:
        lines.append(f"| {title} | not yet | | | | | | |")
    for key in [k for k in keys if SCENARIOS[k].get("app")]:
        peer, _ = best_peer(results, key)
        mine, theirs = results.get(key, {}).get("torsion"), results.get(key, {}).get(peer)
        if peer and mine and theirs and mine.get("p99") and theirs.get("p99"):
            lines += ["", f"{SCENARIOS[key]['title']}: p99 Torsion {fmt_ms(mine['p99'])}, {LABEL.get(peer, peer)} "
                          f"{fmt_ms(theirs['p99'])} (target: Torsion's at most the best peer's, "
                          f"{verdict(mine['p99'], theirs['p99'], at_most=True)})."]
    if "hello-log" in keys and "hello" in keys:
        mine, plain = results["hello-log"].get("torsion"), results["hello"].get("torsion")
        r = mine["rps"] / plain["rps"] if mine and plain and "rps" in mine and plain.get("rps") else None
        lines += ["", f"Access log: Torsion's hello with the log on divided by off: {fmt_ratio(r, LOG_TARGET)}, "
                      f"target ≥ {LOG_TARGET}x, {verdict(r, LOG_TARGET)}."]
    if "hello-metrics" in keys and "hello" in keys:
        mine, plain = results["hello-metrics"].get("torsion"), results["hello"].get("torsion")
        r = mine["rps"] / plain["rps"] if mine and plain and "rps" in mine and plain.get("rps") else None
        lines += ["", f"Metrics: Torsion's hello with the control channel on (every request counted) divided by "
                      f"off: {fmt_ratio(r, METRICS_TARGET)}, target ≥ {METRICS_TARGET}x, "
                      f"{verdict(r, METRICS_TARGET)}."]
    if "static" in keys:
        n = ratio(results, "static", "nginx", "rps")
        lines += ["", f"Static files against nginx: Torsion/nginx {fmt_ratio(n, NGINX_TARGET)}, target ≥ "
                      f"{NGINX_TARGET}x, {verdict(n, NGINX_TARGET)}."]
    wheel = [key for key in keys if SCENARIOS[key]["kind"] != "idle"
             and ratio(results, key, "torsion", "rps", numerator="torsion-wheel") is not None]
    if wheel:
        lines += ["", "The wheel against the binary: torsion-wheel's req/s divided by the binary's (the same "
                      "code, run by the venv's interpreter instead of the one the binary embeds; rounds "
                      "differ by about 10%): " + ", ".join(
                          f"{SCENARIOS[key]['title']} {fmt_ratio(ratio(results, key, 'torsion', 'rps', numerator='torsion-wheel'))}"
                          for key in wheel) + "."]
    return lines


def fmt_ratio(value, target=None, at_most=False):
    """Two decimals, or three where two would round across the target (0.999x is not met)."""
    if value is None:
        return "n/a"
    if target is not None and verdict(round(value, 2), target, at_most) != verdict(value, target, at_most):
        return f"{value:.3f}x"
    return f"{value:.2f}x"


def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores (nproc), Linux {platform.release()}"


def versions(binary, servers):
    out = []
    if "torsion" in servers:
        torsion = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
        out.append(torsion or "torsion (unknown version)")
    if "torsion-wheel" in servers:
        wheel = subprocess.run([venv_bin("torsion"), "--version"], capture_output=True, text=True).stdout.strip()
        out.append(f"{wheel or 'torsion (unknown version)'} (wheel)")
    freeze = subprocess.run([venv_bin("pip"), "freeze", "--disable-pip-version-check"],
                            capture_output=True, text=True).stdout
    pins = dict(line.split("==", 1) for line in freeze.splitlines() if "==" in line)
    packages = {"granian": "granian", "gunicorn": "gunicorn", "uwsgi": "uWSGI", "waitress": "waitress",
                "twist": "Twisted"}
    for name in servers:
        if name in packages:
            out.append(f"{packages[name]} {pins.get(packages[name], '?')}")
    if "ceiling" in servers:
        out.append(f"ceiling: hyper {locked_version('hyper')}")
    if "nginx" in servers and os.access(NGINX, os.X_OK):
        nginx = subprocess.run([NGINX, "-v"], capture_output=True, text=True).stderr.strip()
        out.append(nginx.split(": ", 1)[-1])
    python = subprocess.run([venv_bin("python"), "--version"], capture_output=True, text=True).stdout.strip()
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    wrk = (wrk.stdout + wrk.stderr).split()[1] if (wrk.stdout + wrk.stderr).split()[1:] else "?"
    h2load = subprocess.run(["h2load", "--version"], capture_output=True, text=True).stdout.strip()
    return ", ".join(out) + f"; {python}; wrk {wrk}, {h2load}"


def locked_version(crate):
    """The version of `crate` in the workspace's Cargo.lock, or "?"."""
    try:
        with open(os.path.join(ROOT, "Cargo.lock")) as f:
            found = re.search(r'name = "' + re.escape(crate) + r'"\nversion = "([^"]+)"', f.read())
    except OSError:
        return "?"
    return found.group(1) if found else "?"


def write_section(path, text, section=SECTION):
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        lines = ["# Benchmark results"]
    start = next((i for i, line in enumerate(lines) if line.startswith(section)), None)
    new = text.rstrip("\n").splitlines()
    if start is None:
        while lines and not lines[-1].strip():
            lines.pop()
        lines += [""] + new
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        tail = lines[end:]
        lines = lines[:start] + new + ([""] + tail if tail else [])
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


# --- main --------------------------------------------------------------------------------------

def names(value, known, what):
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in known]
    if unknown or not chosen:
        raise SystemExit(f"unknown {what} {', '.join(unknown) or '(none)'}; known: {', '.join(known)}")
    return [k for k in known if k in chosen]


def server_order(servers, round_index):
    """Round 0 as given, round 1 reversed, then rotated and reversed in turn."""
    shift = (round_index // 2) % len(servers)
    order = servers[shift:] + servers[:shift]
    return order[::-1] if round_index % 2 else order


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--duration", type=int, default=4, help="seconds of load per run (default 4)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds; the tables give the median (default 2)")
    parser.add_argument("--only", help=f"scenarios, comma-separated: {','.join(SCENARIOS)}")
    parser.add_argument("--servers", help=f"servers, comma-separated: {','.join(SERVERS)}")
    parser.add_argument("--binary", help="a torsion binary (default: build target/release/torsion)")
    parser.add_argument("--write", help=f"replace the '{SECTION}' section of this Markdown file")
    args = parser.parse_args()
    if args.duration < 1 or args.rounds < 1:
        raise SystemExit("--duration and --rounds must be at least 1")
    keys = names(args.only, list(SCENARIOS), "scenario") if args.only else list(SCENARIOS)
    servers = names(args.servers, SERVERS + OPTIONAL_SERVERS, "server") if args.servers else list(SERVERS)
    command = shlex.join(["python3", os.path.relpath(os.path.abspath(sys.argv[0]), os.getcwd()), *sys.argv[1:]])

    need_tls = any(SCENARIOS[k].get("tls") for k in keys)
    check_tools(need_tls, nginx="nginx" in servers and "static" in keys)
    ensure_venv()
    if "torsion" in servers:
        binary = os.path.abspath(args.binary) if args.binary else build_torsion()
        if not os.access(binary, os.X_OK):
            raise SystemExit(f"no torsion binary at {binary}")
    else:
        binary = None
    if "ceiling" in servers:
        build_ceiling()
    if "torsion-wheel" in servers:
        build_wheel()
    raise_nofile()
    os.sched_setaffinity(0, {int(LOAD_CPU)})  # this script samples memory: keep it off the server's CPU

    loads = sum(1 for k in keys if SCENARIOS[k]["kind"] != "idle") * len(servers) * args.rounds
    idles = sum(1 for k in keys if SCENARIOS[k]["kind"] == "idle") * len(servers) * args.rounds
    estimate = loads * (args.duration + RUN_OVERHEAD) + idles * IDLE_ESTIMATE
    print(f"{loads + idles} runs ({len(keys)} scenarios x {len(servers)} servers x {args.rounds} rounds): "
          f"about {estimate / 60:.1f} min", file=sys.stderr)

    certificates = tempfile.TemporaryDirectory(prefix="torsion-bench-tls-")  # removed at exit
    tls = make_certificate(certificates.name) if need_tls else None
    files = tempfile.TemporaryDirectory(prefix="torsion-bench-static-")  # removed at exit
    static = os.path.join(files.name, "static")
    os.makedirs(static)
    with open(os.path.join(static, "static.bin"), "wb") as f:
        f.write(os.urandom(STATIC_SIZE))
    # nginx started as root serves from an unprivileged worker: the files must be readable.
    for directory in (files.name, static):
        os.chmod(directory, 0o755)
    os.chmod(os.path.join(static, "static.bin"), 0o644)

    started = time.monotonic()
    per_round = {key: {name: [] for name in servers} for key in keys}
    done = 0
    for round_index in range(args.rounds):
        order = server_order(servers, round_index)
        for key in keys:
            for name in order:
                done += 1
                run_started = time.monotonic()
                result = run_one(name, key, binary, args.duration, tls, static)
                per_round[key][name].append(result)
                if "na" in result:
                    summary = f"n/a: {result['na']}"
                elif "rps" in result:
                    summary = f"{result['rps']:,.0f} req/s, {result['rss'] / 1024:.1f} MB"
                else:
                    summary = f"{result['rss'] / 1024:.1f} MB, {fmt_errors(result['errors'])}"
                ready = f"ready in {result['ready']:.1f} s, " if "ready" in result else ""
                print(f"[{done}/{loads + idles}] round {round_index + 1} {key} {name}: {summary} "
                      f"({ready}{time.monotonic() - run_started:.1f} s in all)", file=sys.stderr)
    elapsed = time.monotonic() - started
    results = {key: {name: median_result(rounds) for name, rounds in by_server.items()}
               for key, by_server in per_round.items()}

    date = datetime.date.today().isoformat()
    lines = [
        f"{SECTION} ({date})",
        "",
        f"`{command}` on {machine()}; {date}; took {elapsed / 60:.1f} min.",
        "",
        f"Versions: {versions(binary, servers)}.",
        "",
        f"Each server serves bench/apps.py, pinned to CPU {SERVER_CPU} (taskset), {THREADS} threads "
        "(gunicorn: 1 sync worker), logging off; the load generator runs on CPU "
        f"{LOAD_CPU}: `wrk -t1 -c64 --latency --timeout {WRK_TIMEOUT}` (`-c256` for the sleep), "
        "`h2load -t1 -c64 -m10` for HTTP/2 (over TLS: `--npn-list=h2`, i.e. ALPN h2 only); HTTPS with a "
        "self-signed P-256 certificate made by `openssl req` for the run. "
        f"Median of {args.rounds} round(s) of {args.duration} s, a fresh server for every run, the server "
        "order reversed between rounds. Peak RSS: the server's process tree, sampled every 50 ms. Errors: "
        "non-2xx/3xx responses and socket errors (h2load: failed requests, 4xx, 5xx).",
        "",
    ]
    for key in keys:
        lines += scenario_table(key, servers, results) + [""]
    lines += ratio_table(keys, results) + [""] + PEER_NOTES
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        write_section(args.write, text)
        print(f"wrote the '{SECTION}' section of {args.write}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
