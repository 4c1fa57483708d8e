"""The WSGI app bench/suite serves for its non-hello scenarios (no framework).

GET  /hello        "Hello, World!" (the probe of the slowloris and 10k scenarios)
GET  /sleep?ms=N   blocking time.sleep(N ms) (default 10), then "slept N ms"
POST /upload       reads the whole body, answers "received N bytes"
GET  /stream       10 MiB, yielded in 64 KiB chunks (?mb=N for another size)
GET  /fib?n=N      CPU-bound: the N-th Fibonacci number the slow way (N <= 32)
"""

import time
from urllib.parse import parse_qs

HELLO = b"Hello, World!"
CHUNK = b"x" * 65536


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def _int(environ, name, default, low, high):
    values = parse_qs(environ.get("QUERY_STRING", "")).get(name)
    value = int(values[0]) if values else default
    if not low <= value <= high:
        raise ValueError(name)
    return value


def _stream(chunks):
    for _ in range(chunks):
        yield CHUNK


def _plain(start_response, status, body):
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    try:
        if path in ("/", "/hello"):
            return _plain(start_response, "200 OK", HELLO)
        if path == "/sleep":
            ms = _int(environ, "ms", 10, 0, 60000)
            time.sleep(ms / 1000)
            return _plain(start_response, "200 OK", b"slept %d ms" % ms)
        if path == "/upload":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            stream, got = environ["wsgi.input"], 0
            while got < length:
                data = stream.read(min(65536, length - got))
                if not data:
                    break
                got += len(data)
            return _plain(start_response, "200 OK", b"received %d bytes" % got)
        if path == "/stream":
            mb = _int(environ, "mb", 10, 1, 1024)
            start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                      ("Content-Length", str(mb * 16 * len(CHUNK)))])
            return _stream(mb * 16)
        if path == "/fib":
            n = _int(environ, "n", 20, 0, 32)
            return _plain(start_response, "200 OK", b"fib(%d) = %d" % (n, fib(n)))
    except ValueError:
        return _plain(start_response, "400 Bad Request", b"bad parameter")
    return _plain(start_response, "404 Not Found", b"not found")


application = app
