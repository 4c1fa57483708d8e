"""taipan's built-in demo: served when taipan is started without an app.

/            what taipan is and how to run your own app
/hello       plain "Hello, World!" (the benchmark app)
/fib?n=N     CPU-bound: the N-th Fibonacci number, computed the slow way
/sleep?ms=N  I/O-bound: waits N milliseconds, then answers
"""

from __future__ import annotations

import html
import os
import time
from typing import Callable, Iterable, List, Tuple
from urllib.parse import parse_qs

StartResponse = Callable[[str, List[Tuple[str, str]]], object]

MAX_FIB = 35
MAX_SLEEP_MS = 60_000

HOME = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>taipan</title>
<style>body{{font-family:system-ui,sans-serif;max-width:42rem;margin:3rem auto;line-height:1.5;padding:0 1rem}}
code,pre{{background:#f3f3f3;padding:.1rem .3rem;border-radius:3px}}pre{{padding:.8rem}}</style></head>
<body>
<h1>taipan is running</h1>
<p>This is the built-in demo, served by Python worker <code>{pid}</code> behind taipan's Go edge.
You started taipan without naming an app.</p>
<h2>Run your own app</h2>
<pre>taipan hello:app                              # hello.py defines app
taipan -b 0.0.0.0:8080 -w 4 mysite.wsgi:application
taipan --python ./venv/bin/python 'app:create_app()'</pre>
<p>A minimal WSGI app, <code>hello.py</code>:</p>
<pre>def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello, World!\\n"]</pre>
<h2>Try the demo endpoints</h2>
<ul>
<li><a href="/hello">/hello</a>: hello world</li>
<li><a href="/fib?n=25">/fib?n=25</a>: CPU-bound work (n up to {max_fib})</li>
<li><a href="/sleep?ms=100">/sleep?ms=100</a>: I/O-bound wait</li>
</ul>
<p>Run <code>taipan --help</code> for every option.</p>
</body></html>
"""


def fib(n: int) -> int:
    """Deliberately naive, so that it burns CPU like a slow endpoint does."""
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def int_param(environ: dict, name: str, default: int, low: int, high: int) -> int:
    """Reads an integer query parameter; ValueError when missing bounds."""
    values = parse_qs(environ.get("QUERY_STRING", "")).get(name)
    if not values:
        return default
    value = int(values[0])
    if not low <= value <= high:
        raise ValueError("%s must be between %d and %d" % (name, low, high))
    return value


def app(environ: dict, start_response: StartResponse) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "/")
    try:
        if path == "/":
            body = HOME.format(pid=os.getpid(), max_fib=MAX_FIB).encode()
            return respond(start_response, "200 OK", "text/html; charset=utf-8", body)
        if path == "/hello":
            return respond(start_response, "200 OK", "text/plain", b"Hello, World!\n")
        if path == "/fib":
            n = int_param(environ, "n", 20, 0, MAX_FIB)
            return respond(start_response, "200 OK", "text/plain", b"fib(%d) = %d\n" % (n, fib(n)))
        if path == "/sleep":
            ms = int_param(environ, "ms", 100, 0, MAX_SLEEP_MS)
            time.sleep(ms / 1000)
            return respond(start_response, "200 OK", "text/plain", b"slept %d ms\n" % ms)
    except ValueError as exc:
        return respond(start_response, "400 Bad Request", "text/plain", html.escape(str(exc)).encode() + b"\n")
    return respond(start_response, "404 Not Found", "text/plain", b"not found\n")


def respond(start_response: StartResponse, status: str, content_type: str, body: bytes) -> List[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]
