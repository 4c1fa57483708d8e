"""WSGI app for the PEP 3333 end-to-end tests of what a response does after
its body, and of write(). Standard library only.
"""

import time
from urllib.parse import parse_qs

# When the last close() of /slow-close returned (time.time()), or 0.
CLOSED = {"at": 0.0}


class SlowClose:
    """The whole body its Content-Length announces as the first chunk (or,
    chunked, a body in two chunks and no Content-Length; or an empty body
    and Content-Length: 0), then a close()
    that takes `seconds`: Flask's response with werkzeug's call_on_close
    work, or Django's request_finished handlers."""

    def __init__(self, seconds, chunked):
        self.seconds = seconds
        self.chunked = chunked

    def __iter__(self):
        if self.chunked is None:
            yield b""  # an empty body, as Django's redirects and 204s give
        elif self.chunked:
            yield b"whole"
            yield b" body"
        else:
            yield b"whole body"

    def close(self):
        time.sleep(self.seconds)
        CLOSED["at"] = time.time()


def slow_close(environ, start_response):
    q = parse_qs(environ["QUERY_STRING"], keep_blank_values=True)
    CLOSED["at"] = 0.0
    if "empty" in q:
        start_response("302 Found", [("Location", "/closed-at"), ("Content-Length", "0")])
        return SlowClose(float(q["seconds"][0]), None)
    if "chunked" in q:
        # No Content-Length: a chunked response, ended by its last chunk.
        start_response("200 OK", [("Content-Type", "text/plain")])
        return SlowClose(float(q["seconds"][0]), True)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "10")])
    return SlowClose(float(q["seconds"][0]), False)


def closed_at(environ, start_response):
    """When the previous /slow-close's close() returned."""
    body = b"%.3f" % CLOSED["at"]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def write_int(environ, start_response):
    """An app bug: write() given an int, which must not become NUL bytes."""
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(5)
    return [b"after the write"]


class CloseRaises:
    """A body whose close() raises: the error belongs in the log."""

    def __iter__(self):
        yield b"ok"

    def close(self):
        raise RuntimeError("close exploded")


def close_raises(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return CloseRaises()


ROUTES = {
    "/slow-close": slow_close,
    "/close-raises": close_raises,
    "/closed-at": closed_at,
    "/write-int": write_int,
}


def app(environ, start_response):
    return ROUTES[environ["PATH_INFO"]](environ, start_response)
