"""The page `torsion web` serves when no --wsgi application is given.

Twisted's `twist web` serves a demo resource in the same situation; this one is a real
WSGI application, so the demo runs through the same bridge as any user's application.
"""

import html
import sys

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Torsion</title></head>
<body>
<h1>Hello from Torsion</h1>
<p>This is the built-in demo page. Serve your own WSGI application with
<code>torsion web --wsgi package.module:application</code>.</p>
<table>
<tr><th>Request</th><td>{method} {path}</td></tr>
<tr><th>Protocol</th><td>{protocol} ({scheme})</td></tr>
<tr><th>Host</th><td>{host}</td></tr>
<tr><th>Client</th><td>{client}</td></tr>
<tr><th>Server</th><td>{software}, Python {python}</td></tr>
</table>
</body>
</html>
"""


def application(environ, start_response):
    query = environ.get("QUERY_STRING", "")
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    if query:
        path += "?" + query
    body = _PAGE.format(
        method=html.escape(environ["REQUEST_METHOD"]),
        path=html.escape(path),
        protocol=html.escape(environ["SERVER_PROTOCOL"]),
        scheme=html.escape(environ["wsgi.url_scheme"]),
        host=html.escape(environ.get("HTTP_HOST", environ["SERVER_NAME"])),
        client=html.escape(environ.get("REMOTE_ADDR", "")),
        software=html.escape(environ.get("SERVER_SOFTWARE", "")),
        python=sys.version.split()[0],
    ).encode("utf-8")
    start_response(
        "200 OK",
        [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]
