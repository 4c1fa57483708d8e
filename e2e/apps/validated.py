"""A WSGI app wrapped in wsgiref.validate.validator (frameworks_test.go).

The validator checks both sides of PEP 3333: the environ and the input and
error streams taipan hands the app, and what the app does with them. Any
violation raises AssertionError; warnings are turned into errors too, so a
WSGIWarning fails the request with a 500 and a traceback in taipan's log.

Each path exercises a part of the protocol; the inner app keeps to the rules
itself so that a failure points at the server.
"""

import hashlib
import json
import sys
import time
import warnings
from urllib.parse import parse_qs
from wsgiref.validate import validator

warnings.simplefilter("error")


def text(start_response, body, status="200 OK", extra=()):
    data = body.encode("utf-8")
    start_response(
        status,
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data)))] + list(extra),
    )
    return [data]


def content_length(environ):
    value = environ.get("CONTENT_LENGTH", "")
    return int(value) if value else 0


def read_input(environ, mode):
    """Reads the whole body with one of the wsgi.input methods; returns pieces."""
    inp = environ["wsgi.input"]
    n = content_length(environ)
    pieces = []
    if mode == "read":
        left = n
        while left > 0:
            chunk = inp.read(min(left, 65536))
            if not chunk:
                break
            pieces.append(chunk)
            left -= len(chunk)
        # At the end of the body read must return b"", not block or fail.
        tail = inp.read(1)
        if tail:
            raise AssertionError("read past CONTENT_LENGTH returned %r" % tail)
    elif mode == "readall":
        pieces.append(inp.read(n))
    elif mode == "readline":
        while True:
            line = inp.readline()
            if not line:
                break
            pieces.append(line)
    elif mode == "readline-size":
        while True:
            line = inp.readline(7)
            if not line:
                break
            if len(line) > 7:
                raise AssertionError("readline(7) returned %d bytes" % len(line))
            pieces.append(line)
    elif mode == "readlines":
        pieces.extend(inp.readlines())
    elif mode == "readlines-hint":
        while True:
            lines = inp.readlines(100)
            if not lines:
                break
            pieces.extend(lines)
    elif mode == "iter":
        for line in inp:
            pieces.append(line)
    elif mode == "mixed":
        pieces.append(inp.read(5))
        pieces.append(inp.readline())
        pieces.append(inp.readline(3))
        pieces.extend(inp.readlines(10))
        for line in inp:
            pieces.append(line)
            break
        pieces.append(inp.read(max(n - sum(len(p) for p in pieces), 0)))
        pieces.extend(inp.readlines())
    else:
        raise ValueError("unknown mode %r" % mode)
    return pieces


class StreamBody:
    """An iterable with close(), yielding several chunks one by one."""

    def __init__(self, n, errors, token, delay=0.0):
        self.n = n
        self.errors = errors
        self.token = token
        self.delay = delay

    def __iter__(self):
        for i in range(self.n):
            if self.delay and i:
                time.sleep(self.delay)
            yield ("chunk %03d\n" % i).encode()

    def close(self):
        self.errors.write("validated: stream closed token=%s\n" % self.token)
        self.errors.flush()


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    method = environ["REQUEST_METHOD"]
    query = parse_qs(environ.get("QUERY_STRING", ""))

    if path == "/environ" or "dump" in query:
        keys = {k: v for k, v in environ.items() if isinstance(v, str)}
        keys["wsgi.version"] = list(environ["wsgi.version"])
        keys["wsgi.multiprocess"] = environ["wsgi.multiprocess"]
        keys["wsgi.multithread"] = environ["wsgi.multithread"]
        keys["wsgi.run_once"] = environ["wsgi.run_once"]
        return text(start_response, json.dumps(keys, sort_keys=True), extra=[("X-Kind", "environ")])

    if path in ("", "/"):
        return text(start_response, "validated ok\n")

    if path == "/input":
        mode = query.get("mode", ["read"])[0]
        pieces = read_input(environ, mode)
        body = b"".join(pieces)
        return text(
            start_response,
            "mode=%s\nlength=%d\nsha256=%s\npieces=%d\ninput=%s\n"
            % (mode, len(body), hashlib.sha256(body).hexdigest(), len(pieces), type(environ["wsgi.input"].input).__name__),
        )

    if path == "/post":
        if method != "POST":
            return text(start_response, "POST only\n", "405 Method Not Allowed", [("Allow", "POST")])
        body = environ["wsgi.input"].read(content_length(environ))
        form = parse_qs(body.decode("utf-8"))
        return text(
            start_response,
            "type=%s\nname=%s\ncount=%d\n"
            % (environ.get("CONTENT_TYPE", ""), form.get("name", [""])[0], len(form.get("item", []))),
        )

    if path == "/errors":
        errors = environ["wsgi.errors"]
        token = query.get("token", [""])[0]
        errors.write("validated: write token=%s\n" % token)
        errors.writelines(["validated: writelines-1 token=%s\n" % token, "validated: writelines-2 token=%s\n" % token])
        errors.flush()
        return text(start_response, "logged\n")

    if path == "/stream":
        n = int(query.get("n", ["5"])[0])
        token = query.get("token", [""])[0]
        start_response("200 OK", [("Content-Type", "text/plain")])
        delay = float(query.get("delay", ["0"])[0])
        return StreamBody(n, environ["wsgi.errors"], token, delay)

    if path == "/lazy":
        # start_response is called from inside the iterable, before the
        # first chunk: allowed by PEP 3333.
        def gen():
            start_response("200 OK", [("Content-Type", "text/plain")])
            yield b"lazy-1\n"
            yield b""
            yield b"lazy-2\n"

        return gen()

    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written-1\n")
        write(b"written-2\n")
        return [b"returned\n"]

    if path == "/head":
        return text(start_response, "head body " * 10 + "\n", extra=[("X-Head-Test", "yes")])

    if path == "/exc-info":
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("planned")
        except ValueError:
            # Nothing was sent yet, so the app may replace the status.
            start_response(
                "503 Service Unavailable",
                [("Content-Type", "text/plain"), ("Retry-After", "1")],
                sys.exc_info(),
            )
        return [b"recovered\n"]

    if path == "/file":
        f = open(__file__, "rb")
        start_response("200 OK", [("Content-Type", "text/x-python")])
        return environ["wsgi.file_wrapper"](f, 4096)

    if path == "/empty":
        start_response("204 No Content", [])
        return []

    return text(start_response, "not found: %s\n" % path, "404 Not Found")


application = validator(app)
