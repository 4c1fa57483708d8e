"""The app of the scale-out tests (e2e/scaleout_test.go), release v1.

Every answer is one line, "INSTANCE VERSION", so that a client behind a
load balancer can count which taipan instance, running which release of
the code, served each request. The instance's name comes from
SCALE_INSTANCE (set with taipan's -e); e2e/apps/scaleapp_v2 is the next
release of the same module.
"""

import os
import time
from typing import Callable, Iterable, List, Tuple
from urllib.parse import parse_qs

VERSION = "v1"
INSTANCE = os.environ.get("SCALE_INSTANCE", "unnamed")

StartResponse = Callable[[str, List[Tuple[str, str]]], object]


def app(environ: dict, start_response: StartResponse) -> Iterable[bytes]:
    """GET /work?ms=N sleeps N milliseconds (at most 1000), so that requests
    are in flight when an instance stops; POST /order reads its body, as a
    non-idempotent request would. Both answer "INSTANCE VERSION"."""
    method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
    if method == "GET" and path == "/work":
        ms = parse_qs(environ.get("QUERY_STRING", "")).get("ms", ["0"])[0]
        time.sleep(min(max(int(ms), 0), 1000) / 1000)
    elif method == "POST" and path == "/order":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        environ["wsgi.input"].read(length)
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]
    body = f"{INSTANCE} {VERSION}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
