"""WSGI app for taipan's end-to-end tests: one small router, one endpoint per
behaviour the tests check. Standard library only.
"""

import hashlib
import json
import os
import sys
import threading
import time
from urllib.parse import parse_qs

COUNTER = {"requests": 0}


def qs(environ):
    return {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()}


def respond(start_response, body, status="200 OK", ctype="text/plain", extra=None):
    if isinstance(body, str):
        body = body.encode("utf-8")
    headers = [("Content-Type", ctype), ("Content-Length", str(len(body)))]
    headers.extend(extra or [])
    start_response(status, headers)
    return [body]


def as_json(start_response, obj, status="200 OK"):
    return respond(start_response, json.dumps(obj, sort_keys=True), status, "application/json")


# --- endpoints ----------------------------------------------------------------


def environ_view(environ, start_response):
    out = {"str": {}, "types": {}}
    for key, value in environ.items():
        if isinstance(value, str):
            # Latin-1 bytes-as-str: give the test the exact bytes, hex-encoded.
            out["str"][key] = value
            out.setdefault("latin1_hex", {})[key] = value.encode("latin-1").hex()
        out["types"][key] = type(value).__name__
    out["wsgi.version"] = list(environ["wsgi.version"])
    out["wsgi.version_is_tuple"] = type(environ["wsgi.version"]) is tuple
    for key in ("wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once"):
        out[key] = environ[key]
    out["wsgi.url_scheme"] = environ["wsgi.url_scheme"]
    out["path_info_latin1"] = environ["PATH_INFO"].encode("latin-1").hex()
    out["has_read"] = hasattr(environ["wsgi.input"], "read")
    out["errors_has_write"] = all(hasattr(environ["wsgi.errors"], m) for m in ("write", "writelines", "flush"))
    out["file_wrapper_callable"] = callable(environ.get("wsgi.file_wrapper"))
    out["env"] = {k: v for k, v in os.environ.items() if k.startswith("TAIPAN_TEST_")}
    out["cwd"] = os.getcwd()
    return as_json(start_response, out)


def echo(environ, start_response):
    """Reads wsgi.input with the method named by ?method= and reports it."""
    q = qs(environ)
    method = q.get("method", "read")
    inp = environ["wsgi.input"]
    parts = []
    if method == "read":
        data = inp.read()
        parts = [data]
    elif method == "readn":
        n = int(q.get("n", "7"))
        while True:
            chunk = inp.read(n)
            if not chunk:
                break
            if len(chunk) > n:
                raise AssertionError("read(%d) returned %d bytes" % (n, len(chunk)))
            parts.append(chunk)
        data = b"".join(parts)
    elif method == "readline":
        while True:
            line = inp.readline()
            if not line:
                break
            parts.append(line)
        data = b"".join(parts)
    elif method == "readlines":
        parts = inp.readlines()
        data = b"".join(parts)
    elif method == "iter":
        parts = [line for line in inp]
        data = b"".join(parts)
    elif method == "readcl":
        # What an app that trusts CONTENT_LENGTH does.
        data = inp.read(int(environ.get("CONTENT_LENGTH") or 0))
        parts = [data]
    else:
        return respond(start_response, "unknown method", "400 Bad Request")
    if q.get("format") == "sha":
        return as_json(start_response, {
            "len": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "content_length": environ.get("CONTENT_LENGTH"),
        })
    return as_json(start_response, {
        "len": len(data),
        "data": data.decode("latin-1"),
        "parts": [p.decode("latin-1") for p in parts],
        "content_length": environ.get("CONTENT_LENGTH"),
        "content_type": environ.get("CONTENT_TYPE"),
        "transfer_encoding": environ.get("HTTP_TRANSFER_ENCODING"),
    })


def stream(environ, start_response):
    q = qs(environ)
    chunks = int(q.get("chunks", "3"))
    size = int(q.get("size", "10"))
    delay = float(q.get("delay_ms", "0")) / 1000
    start_response("200 OK", [("Content-Type", "text/plain")])

    def gen():
        for i in range(chunks):
            if i and delay:
                time.sleep(delay)
            yield (b"%d" % (i % 10)) * size

    return gen()


def write_view(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"written-1;")
    write(b"written-2;")
    return []


def write_then_iter(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"from-write;")
    return [b"from-iter-a;", b"from-iter-b"]


def raise_view(environ, start_response):
    raise RuntimeError("boom-before-start-response")


def raise_after_head(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])

    def gen():
        yield b"first-chunk;"
        raise RuntimeError("boom-after-head")

    return gen()


def exc_info_view(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-First", "1")])
    try:
        raise ValueError("handled-error")
    except ValueError:
        start_response("503 Service Unavailable", [("Content-Type", "text/plain"), ("X-Second", "1")], sys.exc_info())
    return [b"second status wins"]


def exc_info_after_body(environ, start_response):
    """exc_info after the head was sent: start_response must re-raise."""
    start_response("200 OK", [("Content-Type", "text/plain")])

    def gen():
        yield b"partial;"
        try:
            raise ValueError("late-error")
        except ValueError:
            try:
                start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
            except ValueError:
                # PEP 3333: it re-raised. Record that fact in a marker.
                marker = qs(environ).get("marker")
                if marker:
                    with open(marker, "w") as f:
                        f.write("reraised")
                raise

    return gen()


def double_start_response(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    try:
        start_response("201 Created", [("Content-Type", "text/plain")])
    except AssertionError:
        return [b"second start_response without exc_info raised"]
    return [b"no error"]


class ClosingIterable:
    def __init__(self, marker, chunks, slow):
        self.marker = marker
        self.chunks = chunks
        self.slow = slow

    def __iter__(self):
        i = 0
        while self.chunks < 0 or i < self.chunks:
            yield b"chunk-%d;" % i
            i += 1
            if self.slow:
                time.sleep(0.05)

    def close(self):
        with open(self.marker, "w") as f:
            f.write("closed")


def close_view(environ, start_response):
    q = qs(environ)
    marker = q["marker"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    if q.get("stream") == "forever":
        return ClosingIterable(marker, -1, True)
    return ClosingIterable(marker, int(q.get("chunks", "3")), False)


class WholeFirstChunk:
    """An iterable whose first chunk is the whole body its Content-Length
    announces, as Flask's and Django's are, followed by what `then` asks
    for: empty chunks, bytes beyond the length, or an exception."""

    def __init__(self, marker, then):
        self.marker = marker
        self.then = then

    def __iter__(self):
        yield b"whole body"
        if self.then == "empty":
            yield b""
            yield b""
        elif self.then == "extra":
            yield b"beyond the length"
        elif self.then == "raise":
            raise RuntimeError("boom-after-whole-body")

    def close(self):
        with open(self.marker, "w") as f:
            f.write("closed")


def whole_first_chunk(environ, start_response):
    q = qs(environ)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "10")])
    return WholeFirstChunk(q["marker"], q.get("then", ""))


def file_view(environ, start_response):
    path = qs(environ)["path"]
    size = os.path.getsize(path)
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))])
    return environ["wsgi.file_wrapper"](open(path, "rb"), 65536)


def die_view(environ, start_response):
    sys.stdout.flush()
    os._exit(1)


def sleep_view(environ, start_response):
    ms = int(qs(environ).get("ms", "100"))
    time.sleep(ms / 1000)
    return respond(start_response, "slept %d ms pid %d" % (ms, os.getpid()))


def big_view(environ, start_response):
    mb = int(qs(environ).get("mb", "1"))
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    chunk = b"x" * 65536

    def gen():
        for _ in range(mb * 16):
            yield chunk

    return gen()


def bad_header(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Evil", "a\r\nX-Injected: 1")])
    return [b"should never be sent"]


def overlong(environ, start_response):
    """Announces 3 bytes and returns 10."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [b"abcdefghij"]


def underlong(environ, start_response):
    """Announces 10 bytes and returns 3."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "10")])
    return [b"abc"]


def bad_header_stream(environ, start_response):
    """An endless stream whose head Go refuses: the app must be stopped."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Evil", "a\nb")])

    def gen():
        for _ in range(600):
            yield b"tick\n"
            time.sleep(0.1)
    return gen()


def status_view(environ, start_response):
    code = qs(environ).get("code", "200")
    reasons = {"103": "Early Hints", "200": "OK", "201": "Created", "204": "No Content", "304": "Not Modified",
               "404": "Not Found", "418": "I'm a teapot", "500": "Internal Server Error"}
    status = "%s %s" % (code, reasons.get(code, "Custom"))
    if code in ("204", "304"):
        start_response(status, [])
        return []
    return respond(start_response, "status " + code, status)


def no_content_length(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"one element, no content-length"]


def pid_view(environ, start_response):
    return respond(start_response, str(os.getpid()))


def print_view(environ, start_response):
    tag = qs(environ).get("tag", "x")
    print("stdout-line-from-app " + tag)
    sys.stdout.flush()
    environ["wsgi.errors"].write("wsgi-errors-line-from-app %s\n" % tag)
    environ["wsgi.errors"].flush()
    return respond(start_response, "printed")


def counter_view(environ, start_response):
    return respond(start_response, str(COUNTER["requests"]))


def headers_view(environ, start_response):
    return as_json(start_response, {k: v for k, v in environ.items() if k.startswith("HTTP_")})


ACTIVE = {"now": 0, "peak": 0}
ACTIVE_LOCK = threading.Lock()


def overlap_view(environ, start_response):
    """Sleeps while counting the requests in here at once; returns the peak."""
    ms = int(parse_qs(environ.get("QUERY_STRING", "")).get("ms", ["300"])[0])
    with ACTIVE_LOCK:
        ACTIVE["now"] += 1
        ACTIVE["peak"] = max(ACTIVE["peak"], ACTIVE["now"])
    time.sleep(ms / 1000)
    with ACTIVE_LOCK:
        ACTIVE["now"] -= 1
        peak = ACTIVE["peak"]
    return respond(start_response, "%d %d %s" % (peak, os.getpid(), threading.current_thread().name))


ROUTES = {
    "/overlap": overlap_view,
    "/environ": environ_view,
    "/echo": echo,
    "/stream": stream,
    "/write": write_view,
    "/write-then-iter": write_then_iter,
    "/raise": raise_view,
    "/raise-after-head": raise_after_head,
    "/exc-info": exc_info_view,
    "/exc-info-after-body": exc_info_after_body,
    "/double-start": double_start_response,
    "/close": close_view,
    "/whole-first-chunk": whole_first_chunk,
    "/file": file_view,
    "/die": die_view,
    "/sleep": sleep_view,
    "/big": big_view,
    "/bad-header": bad_header,
    "/bad-header-stream": bad_header_stream,
    "/overlong": overlong,
    "/underlong": underlong,
    "/status": status_view,
    "/pid": pid_view,
    "/nocl": no_content_length,
    "/print": print_view,
    "/counter": counter_view,
    "/headers": headers_view,
}


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path != "/counter":
        COUNTER["requests"] += 1
    view = ROUTES.get(path)
    if view is None:
        if path.startswith("/environ"):
            # Any path under /environ dumps the environ (for PATH_INFO tests).
            return environ_view(environ, start_response)
        return respond(start_response, "not found: " + path, "404 Not Found")
    return view(environ, start_response)
