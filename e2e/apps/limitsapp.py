"""Apps for the resource-limit and security end-to-end tests
(e2e/limits_test.go, e2e/security_test.go). Standard library only.

`app` is WSGI, `asgi` is the same routes in ASGI, as far as the tests need
them.
"""

import os
import stat
import time
from typing import Any, Callable, Dict, Iterable, Iterator, List, Tuple
from urllib.parse import parse_qs

Headers = List[Tuple[str, str]]
StartResponse = Callable[..., Any]

# Requests the WSGI app has seen, /count itself not included: a test reads
# it to prove a refused request never reached Python.
SEEN = {"requests": 0}

# The text of the exception /raise raises: a test looks for it (and for
# "Traceback") in the response body and in the error log.
SECRET = "limitsapp-secret-boom"

# Header values an app must not be able to send: each would split the
# response if it reached the client.
BAD_HEADERS: Dict[str, Tuple[str, Headers]] = {
    "crlf": ("200 OK", [("X-Evil", "a\r\nX-Injected: 1")]),
    "lf": ("200 OK", [("X-Evil", "a\nX-Injected: 1")]),
    "cr": ("200 OK", [("X-Evil", "a\rX-Injected: 1")]),
    "nul": ("200 OK", [("X-Evil", "a\x00X-Injected: 1")]),
    "name": ("200 OK", [("X-Evil\r\nX-Injected", "1")]),
    "status": ("200 OK\r\nX-Injected: 1", []),
}


def query(environ: Dict[str, Any]) -> Dict[str, str]:
    return {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def plain(start_response: StartResponse, body: bytes, status: str = "200 OK") -> List[bytes]:
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


class Marked:
    """A streaming response that writes `closed` to a marker file when its
    close() runs (PEP 3333: always, also when the client has left)."""

    def __init__(self, marker: str, chunks: int, pause: float) -> None:
        self.marker = marker
        self.chunks = chunks
        self.pause = pause

    def __iter__(self) -> Iterator[bytes]:
        i = 0
        while self.chunks < 0 or i < self.chunks:
            yield b"chunk-%06d;" % i + b"." * 4084
            i += 1
            if self.pause:
                time.sleep(self.pause)

    def close(self) -> None:
        with open(self.marker, "w") as f:
            f.write("closed")


def spill_view(environ: Dict[str, Any], start_response: StartResponse) -> List[bytes]:
    """Reports where wsgi.input lives: the spill file's path, its mode and
    owner, and the number of bytes read from it."""
    body = environ["wsgi.input"]
    out = {"path": "", "mode": "", "uid": -1, "len": 0}
    try:
        fd = body.fileno()
    except (AttributeError, OSError, ValueError):
        fd = -1
    if fd >= 0:
        st = os.fstat(fd)
        out["path"] = os.readlink("/proc/self/fd/%d" % fd)
        out["mode"] = "%o" % stat.S_IMODE(st.st_mode)
        out["uid"] = st.st_uid
    while True:
        chunk = body.read(65536)
        if not chunk:
            break
        out["len"] += len(chunk)
    text = "%(path)s %(mode)s %(uid)d %(len)d" % out
    return plain(start_response, text.encode())


def app(environ: Dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "/")
    q = query(environ)
    if path == "/count":
        return plain(start_response, str(SEEN["requests"]).encode())
    SEEN["requests"] += 1
    if path == "/hello":
        return plain(start_response, b"hello")
    if path == "/pid":
        return plain(start_response, str(os.getpid()).encode())
    if path == "/big":
        # The whole body at once: the worker hands it to Go in one frame
        # and is free again before the client has read any of it.
        return plain(start_response, b"x" * (int(q.get("kb", "1024")) * 1024))
    if path == "/stream":
        # Reads the request body first, as an app does, then streams.
        environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Marked(q["marker"], int(q.get("chunks", "-1")), float(q.get("pause", "0.02")))
    if path == "/spill":
        return spill_view(environ, start_response)
    if path == "/bad":
        status, headers = BAD_HEADERS[q["kind"]]
        start_response(status, [("Content-Type", "text/plain")] + headers)
        if q.get("stream"):
            return iter([b"never-sent-1", b"never-sent-2"])
        return [b"never-sent"]
    if path == "/raise":
        raise RuntimeError(SECRET)
    if path == "/env":
        return plain(start_response, os.environ.get(q["name"], "<unset>").encode())
    if path == "/server":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Server", "app-own/1.0")])
        return [b"own server header"]
    return plain(start_response, b"not found", "404 Not Found")


async def asgi(scope: Dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    q = {k: v[0] for k, v in parse_qs(scope["query_string"].decode("latin-1")).items()}
    if path == "/bad":
        status, headers = BAD_HEADERS[q["kind"]]
        if q["kind"] == "status":
            # ASGI has an integer status: nothing to inject there.
            headers = [("X-Evil", "a\r\nX-Injected: 1")]
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")] + raw})
        await send({"type": "http.response.body", "body": b"never-sent"})
        return
    if path == "/raise":
        raise RuntimeError(SECRET)
    body = b"hello" if path == "/hello" else b"not found"
    await send({"type": "http.response.start", "status": 200 if path == "/hello" else 404,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
