#!/usr/bin/env python3
"""CPU time a request: the server's own CPU seconds (user and system, every thread, read from
/proc/PID/stat) over a fixed number of hello requests, divided by that number.

Usage: python3 bench/cpu.py BINARY[,BINARY..] [--modes h1,h2c] [--rounds 3] [--requests 300000]

Each BINARY is a `torsion` binary (run as `torsion web --wsgi apps:hello --threads 16`) or the
ceiling (`target/release/examples/ceiling`, recognised by its name). Each run starts a fresh
server pinned to CPU 0 from bench/ with bench/.venv as its VIRTUAL_ENV, warms it with 20,000
requests, then sends --requests requests with h2load pinned to CPU 1: HTTP/1.1 with 64
connections (`--h1 -c64 -m1`) or HTTP/2 with prior knowledge (`-c64 -m10`). Binaries take
turns within each round, so drift hits them alike; the last line gives each one's median.

Unlike requests a second, which swing by 10 to 15% between rounds on this machine with the
batching of the Python threads, CPU time a request moves by a few percent: it is the figure
to compare two builds by (build the older one with `git worktree` and CARGO_TARGET_DIR).
"""
import argparse
import os
import socket
import statistics
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))


def cpu_seconds(pid):
    """User plus system CPU seconds of process `pid`, all its threads."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(binary, mode, requests, port):
    """(CPU microseconds a request, requests a second) of one run."""
    env = dict(os.environ, VIRTUAL_ENV=os.path.join(BENCH, ".venv"), PYTHONPATH=BENCH)
    listen = f"tcp:{port}:interface=127.0.0.1"
    if os.path.basename(binary) == "ceiling":
        command = [binary, listen]
    else:
        command = [binary, "web", "--wsgi", "apps:hello", "--listen", listen, "--threads", "16"]
    server = subprocess.Popen(["taskset", "-c", "0", *command], cwd=BENCH, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    sys.exit(f"{binary} did not start listening on port {port}")
                time.sleep(0.05)
        flags = ["--h1", "-c64", "-m1"] if mode == "h1" else ["-c64", "-m10"]
        url = f"http://127.0.0.1:{port}/"
        subprocess.run(["taskset", "-c", "1", "h2load", "-n", "20000", *flags, url],
                       capture_output=True, check=True)
        before, started = cpu_seconds(server.pid), time.monotonic()
        out = subprocess.run(["taskset", "-c", "1", "h2load", "-n", str(requests), *flags, url],
                             capture_output=True, text=True, check=True).stdout
        after, wall = cpu_seconds(server.pid), time.monotonic() - started
        if f"{requests} succeeded" not in out:
            sys.exit(f"not every request succeeded against {binary}:\n{out}")
        return (after - before) / requests * 1e6, requests / wall
    finally:
        server.terminate()
        server.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("binaries", help="comma-separated torsion or ceiling binaries")
    parser.add_argument("--modes", default="h1,h2c", help="h1, h2c or both (default both)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=300_000)
    args = parser.parse_args()
    binaries = [os.path.abspath(b) for b in args.binaries.split(",")]
    results = {}
    port = 9100
    for round_ in range(1, args.rounds + 1):
        for mode in args.modes.split(","):
            for binary in binaries:
                port += 1
                micros, rate = measure(binary, mode, args.requests, port)
                results.setdefault((mode, binary), []).append(micros)
                print(f"round {round_} {mode} {binary}: {micros:.2f} µs CPU a request, {rate:,.0f} req/s",
                      flush=True)
    for (mode, binary), values in results.items():
        print(f"median {mode} {binary}: {statistics.median(values):.2f} µs CPU a request")


if __name__ == "__main__":
    main()
