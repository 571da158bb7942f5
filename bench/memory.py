#!/usr/bin/env python3
"""Torsion's memory: its RSS while a 10 MB request body is read, while a 100 MB response is
streamed and while a 2 GiB static file is served, measured above the idle server's RSS; and
its RSS before, during and after rounds of connection bursts.

Usage: python3 bench/memory.py [--binary target/release/torsion] [--write bench/RESULTS.md]
                               [--rounds 6] [--connections 2000]

Builds the release binary unless --binary is given, serves fixtures/apps/probe.py on a
loopback port, sends the bodies with curl, and samples /proc/PID/status every 10 ms. The
claims it checks: each body scenario stays under 64 MB above idle (issues 3 and 13); after each
burst of keep-alive connections has closed, RSS is back within 20% of idle (issue 12).

A burst opens --connections connections (128 at most connecting at once), sends one GET on
each and reads its answer, and holds them all open ("during"); then closes them, waits
until the server holds none of them (/proc/net/tcp), and one second more ("after").
"""

import argparse
import datetime
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import time

from run import Sampler, free_port, open_keepalive, rss_kb, write_section

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIMIT_MB = 64
SPARSE_SIZE = 2 << 30
BURST_LIMIT = 1.2


def start(binary, port, extra=()):
    server = subprocess.Popen(
        [binary, "web", "--wsgi", "probe:application", "--listen", f"tcp:{port}:interface=127.0.0.1", *extra],
        cwd=os.path.join(ROOT, "fixtures", "apps"),
        stderr=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return server
        except OSError:
            time.sleep(0.05)
    server.kill()
    raise SystemExit("torsion did not start")


def scenario(server, url, curl_args, stdin=None):
    # Warm the server up with one small request so idle includes the loaded application.
    sampler = Sampler(server.pid)
    sampler.start()
    started = time.time()
    result = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", *curl_args, url],
                            input=stdin, capture_output=True, check=True)
    elapsed = time.time() - started
    return sampler.stop(), result.stdout.decode(), elapsed


def server_connections(port):
    """The server's sockets on `port` still established or closing (/proc/net/tcp)."""
    count = 0
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as table:
                next(table)
                for line in table:
                    fields = line.split()
                    if fields[1].endswith(f":{port:04X}") and fields[3] in ("01", "08", "09"):
                        count += 1
        except OSError:
            pass
    return count


def bursts(binary, rounds, count):
    """RSS (kB) idle, then (before, during, after, answered) for each round."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 2 * count + 1024)), hard))
    port = free_port()
    server = start(binary, port)
    try:
        warm, _, _, _ = open_keepalive(port, 1, 1, 60.0, "/environ")
        for sock in warm:
            sock.close()
        while server_connections(port):
            time.sleep(0.05)
        time.sleep(1.0)
        idle = rss_kb(server.pid)
        rows = []
        for _ in range(rounds):
            before = rss_kb(server.pid)
            sockets, answered, _, _ = open_keepalive(port, count, 128, 60.0, "/environ")
            answered = len(answered)
            during = rss_kb(server.pid)
            for sock in sockets:
                sock.close()
            while server_connections(port):
                time.sleep(0.05)
            time.sleep(1.0)
            rows.append((before, during, rss_kb(server.pid), answered))
        return idle, rows
    finally:
        server.terminate()
        server.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", help="a torsion binary (default: build target/release/torsion)")
    parser.add_argument("--write", help="append the table to this Markdown file")
    parser.add_argument("--rounds", type=int, default=6, help="connection bursts (default 6)")
    parser.add_argument("--connections", type=int, default=2000, help="connections a burst opens (default 2000)")
    args = parser.parse_args()
    binary = os.path.abspath(args.binary) if args.binary else None
    if not binary:
        subprocess.run(["cargo", "build", "--release", "-p", "torsion"], cwd=ROOT, check=True)
        binary = os.path.join(ROOT, "target", "release", "torsion")

    port = free_port()
    files = tempfile.TemporaryDirectory(prefix="torsion-memory-")
    with open(os.path.join(files.name, "sparse.bin"), "wb") as sparse:
        sparse.truncate(SPARSE_SIZE)  # a hole: no disk used, read as zeros
    server = start(binary, port, ["--static", f"/files={files.name}"])
    base = f"http://127.0.0.1:{port}"
    try:
        subprocess.run(["curl", "-sS", "-o", "/dev/null", base + "/environ"], check=True)
        time.sleep(0.3)
        idle = rss_kb(server.pid)
        upload = b"u" * (10 * 1024 * 1024)
        rows = []
        peak, outcome, elapsed = scenario(server, base + "/echo?mode=length",
                                          ["--data-binary", "@-", "-H", "Content-Type: application/octet-stream"],
                                          stdin=upload)
        rows.append(("10 MB request body read through wsgi.input", peak, outcome, elapsed))
        peak, outcome, elapsed = scenario(server, base + "/stream?n=1600&size=65536", [])
        rows.append(("100 MB response streamed from a generator (64 KiB chunks)", peak, outcome, elapsed))
        peak, outcome, elapsed = scenario(server, base + "/files/sparse.bin", [])
        rows.append(("2 GiB static file (sparse) served by --static", peak, outcome, elapsed))
    finally:
        server.terminate()
        server.wait()

    date = datetime.date.today().isoformat()
    lines = [
        f"## Memory under large bodies ({date})",
        "",
        f"`python3 bench/memory.py` on {platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()};"
        f" idle RSS {idle / 1024:.1f} MB (after one request). Limit: {LIMIT_MB} MB above idle.",
        "",
        "| scenario | curl saw (status, bytes) | peak RSS | above idle | within limit |",
        "|---|---|---|---|---|",
    ]
    ok = True
    for name, peak, outcome, elapsed in rows:
        above = (peak - idle) / 1024
        within = above < LIMIT_MB
        ok &= within
        lines.append(f"| {name} | {outcome} | {peak / 1024:.1f} MB | {above:.1f} MB | {'yes' if within else 'NO'} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        write_section(args.write, text, section="## Memory under large bodies")

    idle, rounds = bursts(binary, args.rounds, args.connections)
    lines = [
        f"## Memory after connection bursts ({date})",
        "",
        f"`python3 bench/memory.py`: {args.rounds} rounds of {args.connections} keep-alive connections, one GET"
        f" each, held open, then closed; RSS one second after the server holds none of them. Idle RSS"
        f" {idle / 1024:.1f} MB. Limit: {BURST_LIMIT:.1f}x idle after each round.",
        "",
        "| round | answered | RSS before | RSS during | RSS after | after / idle | within limit |",
        "|---|---|---|---|---|---|---|",
    ]
    for n, (before, during, after, answered) in enumerate(rounds, 1):
        within = after <= BURST_LIMIT * idle
        ok &= within and answered == args.connections
        lines.append(f"| {n} | {answered} | {before / 1024:.1f} MB | {during / 1024:.1f} MB | {after / 1024:.1f} MB"
                     f" | {after / idle:.2f} | {'yes' if within else 'NO'} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        write_section(args.write, text, section="## Memory after connection bursts")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
