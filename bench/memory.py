#!/usr/bin/env python3
"""Memory under large bodies: Torsion's RSS while a 10 MB request body is read and while a
100 MB response is streamed, measured above the idle server's RSS.

Usage: python3 bench/memory.py [--binary target/release/torsion] [--write bench/RESULTS.md]

Builds the release binary unless --binary is given, serves fixtures/apps/probe.py on a
loopback port, sends the bodies with curl, and samples /proc/PID/status every 10 ms. The
claim it checks (issue 3): each scenario stays under 64 MB above idle.
"""

import argparse
import datetime
import os
import platform
import socket
import subprocess
import sys
import time

from run import Sampler, free_port, rss_kb, write_section

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIMIT_MB = 64


def start(binary, port):
    server = subprocess.Popen(
        [binary, "web", "--wsgi", "probe:application", "--listen", f"tcp:{port}:interface=127.0.0.1"],
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", help="a torsion binary (default: build target/release/torsion)")
    parser.add_argument("--write", help="append the table to this Markdown file")
    args = parser.parse_args()
    binary = os.path.abspath(args.binary) if args.binary else None
    if not binary:
        subprocess.run(["cargo", "build", "--release", "-p", "torsion"], cwd=ROOT, check=True)
        binary = os.path.join(ROOT, "target", "release", "torsion")

    port = free_port()
    server = start(binary, port)
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
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
