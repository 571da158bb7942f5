"""The Python work a hello request needs at the least, done in Python itself: environ from a
template copy with the request's entries set (strings made from the request's bytes, as a
server must), `start_response` as a plain function that only walks the headers, the
application (bench/apps.py's hello) called and its body iterated.

Usage: python3 bench/floor.py [REQUESTS]

Run it under callgrind twice, with 0 requests and with some, and divide the difference by
the count: the instructions a request, to set beside Torsion's Python thread (see
bench/RESULTS.md, "The bridge, cut"):

    valgrind --tool=callgrind bench/.venv/bin/python bench/floor.py 0
    valgrind --tool=callgrind bench/.venv/bin/python bench/floor.py 20000
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from apps import hello  # noqa: E402

template = {"SCRIPT_NAME": "", "SERVER_SOFTWARE": "x", "wsgi.version": (1, 0), "wsgi.errors": sys.stderr,
            "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
            "wsgi.input_terminated": True, "wsgi.file_wrapper": None, "wsgi.url_scheme": "http",
            "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "50000", "HTTP_HOST": "127.0.0.1:8080",
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8080",
            "REQUEST_METHOD": None, "PATH_INFO": None, "QUERY_STRING": None, "SERVER_PROTOCOL": None,
            "wsgi.input": None, "torsion.params": None}
path, query, ua, accept = b"/", b"", b"h2load nghttp2/1.52.0", b"*/*"

class Input:
    """wsgi.input for a request without a body."""

    def read(self, n=-1):
        return b""

def start_response(status, headers, exc_info=None):
    """Walks the headers and checks nothing."""
    for name, value in headers:
        pass
    return None

def request():
    """One request's environ, call and body."""
    environ = template.copy()
    environ["REQUEST_METHOD"] = "GET"
    environ["PATH_INFO"] = path.decode("latin-1")
    environ["QUERY_STRING"] = query.decode("latin-1")
    environ["SERVER_PROTOCOL"] = "HTTP/1.1"
    environ["HTTP_USER_AGENT"] = ua.decode("latin-1")
    environ["HTTP_ACCEPT"] = accept.decode("latin-1")
    environ["wsgi.input"] = Input()
    environ["torsion.params"] = None
    for chunk in hello(environ, start_response):
        pass

if __name__ == "__main__":
    for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 20000):
        request()
