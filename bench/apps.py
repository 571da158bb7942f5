"""The WSGI application every server in bench/run.py serves.

One callable, `app`, dispatching on PATH_INFO through a dict, so that routing costs the same
on every server and the numbers measure the server, not the application:

    /            "Hello, world!" (13 bytes, Content-Length)
    /64k         64 KiB as one bytes object, Content-Length
    /stream      1 MiB as 16 chunks of 64 KiB from a generator, no Content-Length
    /echo        reads wsgi.input fully (read(CONTENT_LENGTH)) and returns it, Content-Length
    /sleep       time.sleep(0.01), then a small body
    /static.bin  reserved for the static file scenario (not yet: 404 for now)

Standard library only: every server imports it from the bench/ directory.
"""

import time

HELLO = b"Hello, world!"
BODY_64K = b"x" * (64 * 1024)
CHUNK_64K = b"s" * (64 * 1024)
STREAM_CHUNKS = 16
SLEPT = b"slept 10 ms\n"


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [HELLO]


def body_64k(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(len(BODY_64K)))])
    return [BODY_64K]


def stream(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return (CHUNK_64K for _ in range(STREAM_CHUNKS))


def echo(environ, start_response):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(len(body)))])
    return [body]


def sleep(environ, start_response):
    time.sleep(0.01)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(SLEPT)))])
    return [SLEPT]


def not_found(environ, start_response):
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "10")])
    return [b"not found\n"]


ROUTES = {
    "/": hello,
    "/64k": body_64k,
    "/stream": stream,
    "/echo": echo,
    "/sleep": sleep,
    # "/static.bin": the static file scenario, later.
}


def app(environ, start_response):
    return ROUTES.get(environ.get("PATH_INFO", ""), not_found)(environ, start_response)
