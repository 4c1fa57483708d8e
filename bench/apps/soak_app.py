"""The WSGI app bench/soak serves (no framework).

GET  /hello            "Hello, World!"
GET  /json?n=N         {"hello": "world", "n": N} (N echoed, so the client can check it)
POST /upload           reads the whole body in 64 KiB pieces and answers its
                       sha256 (hex); X-Body-Bytes says how many bytes it read
GET  /download?mib=N   N MiB (1..64) of a fixed pattern, yielded in 64 KiB
                       chunks by a generator (a streaming response)
GET  /slow?ms=N        time.sleep(N ms) (0..5000), then "slept N ms"
GET  /error            raises: the server answers 500
anything else          404 "not found"

The download pattern is PATTERN repeated, so the client can compute the
expected sha256 of any size without asking the server.
"""

import hashlib
import json
import time
from typing import Callable, Iterable, Iterator, List, Tuple
from urllib.parse import parse_qs

HELLO = b"Hello, World!"
PATTERN = bytes(range(256)) * 256  # 64 KiB
READ_SIZE = 65536

StartResponse = Callable[[str, List[Tuple[str, str]]], object]


class SoakError(RuntimeError):
    """Raised on purpose by GET /error."""


def _int(environ: dict, name: str, default: int, low: int, high: int) -> int:
    values = parse_qs(environ.get("QUERY_STRING", "")).get(name)
    value = int(values[0]) if values else default
    if not low <= value <= high:
        raise ValueError(name)
    return value


def _plain(start_response: StartResponse, status: str, body: bytes,
           ctype: str = "text/plain", extra: Iterable[Tuple[str, str]] = ()) -> List[bytes]:
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body))), *extra])
    return [body]


def _download(chunks: int) -> Iterator[bytes]:
    for _ in range(chunks):
        yield PATTERN


def _upload(environ: dict, start_response: StartResponse) -> List[bytes]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    stream, digest, got = environ["wsgi.input"], hashlib.sha256(), 0
    while got < length:
        data = stream.read(min(READ_SIZE, length - got))
        if not data:
            break
        digest.update(data)
        got += len(data)
    return _plain(start_response, "200 OK", digest.hexdigest().encode(),
                  extra=[("X-Body-Bytes", str(got))])


def app(environ: dict, start_response: StartResponse) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "/")
    method = environ.get("REQUEST_METHOD", "GET")
    try:
        if path == "/hello":
            return _plain(start_response, "200 OK", HELLO)
        if path == "/json":
            n = _int(environ, "n", 0, 0, 1 << 62)
            body = json.dumps({"hello": "world", "n": n}).encode()
            return _plain(start_response, "200 OK", body, "application/json")
        if path == "/upload" and method == "POST":
            return _upload(environ, start_response)
        if path == "/download":
            mib = _int(environ, "mib", 1, 1, 64)
            start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                      ("Content-Length", str(mib * 16 * len(PATTERN)))])
            return _download(mib * 16)
        if path == "/slow":
            ms = _int(environ, "ms", 100, 0, 5000)
            time.sleep(ms / 1000)
            return _plain(start_response, "200 OK", b"slept %d ms" % ms)
        if path == "/error":
            raise SoakError("GET /error fails on purpose (bench/soak)")
    except ValueError:
        return _plain(start_response, "400 Bad Request", b"bad parameter")
    return _plain(start_response, "404 Not Found", b"not found")


application = app
