"""The in-process limit: what Python alone can do with an app.

    python3 bench/inprocess.py [--asgi] [--path /] [-n 200000] [--dir DIR] MODULE:APP

calls the app in a tight loop in one process, with no network and no
server, and prints the time per request and the requests per second one
process could reach at best. A server's throughput per worker, divided by
this, is the fraction of the app's own speed the server keeps (issue 7 asks
for it per app). The WSGI environ has the keys taipan sends; the ASGI scope
is the one taipan builds. Both bodies are read and closed, as a server does.
"""

from __future__ import annotations

import argparse
import importlib
import io
import sys
import time
from typing import Any, Callable, List


def wsgi_environ(path: str) -> dict:
    path_info, _, query = path.partition("?")
    return {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path_info,
        "QUERY_STRING": query,
        "RAW_URI": path,
        "REQUEST_URI": path,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "40000",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "inprocess",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.errors": sys.stderr,
    }


def run_wsgi(app: Callable, path: str, n: int) -> float:
    """Seconds for n requests."""
    base = wsgi_environ(path)
    status: List[str] = []

    def start_response(s: str, headers: list, exc_info: Any = None) -> Callable:
        status.append(s)
        return lambda data: None

    def one() -> None:
        environ = dict(base)
        environ["wsgi.input"] = io.BytesIO(b"")
        result = app(environ, start_response)
        try:
            for _ in result:
                pass
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()

    for _ in range(min(n // 10, 5000)):  # warm-up
        one()
    start = time.perf_counter()
    for _ in range(n):
        one()
    elapsed = time.perf_counter() - start
    if not status or not status[-1].startswith("2"):
        raise SystemExit("the app answered %r, not 2xx" % (status[-1] if status else None))
    return elapsed


def run_asgi(app: Callable, path: str, n: int) -> float:
    """Seconds for n requests, awaited one after another on one loop."""
    import asyncio

    try:
        import uvloop  # type: ignore

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    raw, _, query = path.partition("?")
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "method": "GET", "scheme": "http", "path": raw, "raw_path": raw.encode(), "query_string": query.encode(),
        "root_path": "", "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"inprocess")],
        "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000), "state": {},
    }
    statuses: List[int] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def many(count: int) -> None:
        for _ in range(count):
            await app(dict(scope), receive, send)

    loop.run_until_complete(many(min(n // 10, 5000)))
    start = time.perf_counter()
    loop.run_until_complete(many(n))
    elapsed = time.perf_counter() - start
    loop.close()
    if not statuses or not 200 <= statuses[-1] < 300:
        raise SystemExit("the app answered %r, not 2xx" % (statuses[-1] if statuses else None))
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("app", help="MODULE:CALLABLE")
    ap.add_argument("--asgi", action="store_true", help="the app is ASGI (default WSGI)")
    ap.add_argument("--path", default="/", help="request path and query (default /)")
    ap.add_argument("-n", type=int, default=200000, help="requests (default 200000)")
    ap.add_argument("--dir", default=".", help="directory to import the app from")
    args = ap.parse_args()
    sys.path.insert(0, args.dir)
    module, _, name = args.app.partition(":")
    app = getattr(importlib.import_module(module), name or "app")
    elapsed = (run_asgi if args.asgi else run_wsgi)(app, args.path, args.n)
    per = elapsed / args.n
    print("%s %s: %.2f us/request, limit %.0f req/s per process" % (args.app, args.path, per * 1e6, 1 / per))
    return 0


if __name__ == "__main__":
    sys.exit(main())
