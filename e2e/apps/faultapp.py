"""WSGI app for taipan's fault tests (e2e/faults_test.go). Standard library only.

Each endpoint is one fault, or an ordinary request to keep a load going
while a fault happens:

  /pid                 the worker's pid (the background load)
  /block?s=N           sleeps N seconds (default 30): a request to kill the
                       worker under
  /spin                spins in Python forever (until --timeout)
  /alloc?mb_per_tick=N allocates N MB (default 2) every 10 ms without bound,
                       until --max-rss stops the worker
  /spew?tag=T&kb=N     writes N KB (default 1024) to stdout and as much to
                       stderr (wsgi.errors), in numbered lines
  /upload              reads the body and answers its size, its SHA-256 and
                       how it was given to the app: "mem", or the mode of
                       the spill file ("0600")
"""

import hashlib
import os
import stat
import sys
import time
from typing import Any, Callable, Dict, Iterable, List
from urllib.parse import parse_qs

StartResponse = Callable[..., object]
Environ = Dict[str, Any]

# /alloc stops here even when nothing stops the worker, so that a broken
# watchdog fails the test rather than the machine.
ALLOC_SAFETY_CAP_MB = 1024

# /spew: every line is LINE_PAYLOAD long between its number and "end", so a
# test can tell a whole line from a piece of one.
LINE_PAYLOAD = 1000


def query(environ: Environ) -> Dict[str, str]:
    raw = str(environ.get("QUERY_STRING", ""))
    return {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}


def respond(start_response: StartResponse, body: str, status: str = "200 OK") -> List[bytes]:
    data = body.encode("utf-8")
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]


def pid_view(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """The worker's pid; with ?iter, as Flask answers: an iterable whose
    first chunk is the whole body, so its response is complete before its
    close() has run."""
    body = respond(start_response, str(os.getpid()))
    return iter(body) if "iter" in query(environ) else body


def block_view(environ: Environ, start_response: StartResponse) -> List[bytes]:
    time.sleep(float(query(environ).get("s", "30")))
    return respond(start_response, "%d woke up" % os.getpid())


def spin_forever() -> None:
    n = 0
    while True:
        n += 1


def spin_view(environ: Environ, start_response: StartResponse) -> List[bytes]:
    spin_forever()
    return respond(start_response, "unreachable")


def allocate_without_bound(mb_per_tick: int) -> int:
    """Keeps allocating memory that is touched (so resident) and kept."""
    hoard: List[bytes] = []
    while len(hoard) * mb_per_tick < ALLOC_SAFETY_CAP_MB:
        hoard.append(b"\x01" * (mb_per_tick << 20))
        time.sleep(0.01)
    return len(hoard) * mb_per_tick


def alloc_view(environ: Environ, start_response: StartResponse) -> List[bytes]:
    got = allocate_without_bound(int(query(environ).get("mb_per_tick", "2")))
    return respond(start_response, "allocated %d MB and nothing stopped me" % got)


def spew_line(tag: str, stream: str, seq: int) -> str:
    return "spew %s %s %05d %s end\n" % (tag, stream, seq, "x" * LINE_PAYLOAD)


def spew_view(environ: Environ, start_response: StartResponse) -> List[bytes]:
    q = query(environ)
    tag = q.get("tag", "t")
    lines = int(q.get("kb", "1024")) * 1024 // len(spew_line(tag, "out", 0))
    errors = environ["wsgi.errors"]
    for seq in range(lines):
        # One write per line: the worker runs with -u, so each is one
        # write(2) of under PIPE_BUF bytes.
        sys.stdout.write(spew_line(tag, "out", seq))
        errors.write(spew_line(tag, "err", seq))
    return respond(start_response, "%d %d" % (os.getpid(), lines))


def upload_view(environ: Environ, start_response: StartResponse) -> List[bytes]:
    body = environ["wsgi.input"]
    digest = hashlib.sha256()
    size = 0
    while True:
        chunk = body.read(64 << 10)
        if not chunk:
            break
        digest.update(chunk)
        size += len(chunk)
    how = "mem"
    try:
        fd = body.fileno()
    except (AttributeError, OSError, ValueError):
        fd = -1
    if fd >= 0:
        how = "%04o" % stat.S_IMODE(os.fstat(fd).st_mode)
    return respond(start_response, "%d %s %s" % (size, digest.hexdigest(), how))


ROUTES: Dict[str, Callable[[Environ, StartResponse], List[bytes]]] = {
    "/pid": pid_view,
    "/block": block_view,
    "/spin": spin_view,
    "/alloc": alloc_view,
    "/spew": spew_view,
    "/upload": upload_view,
}


def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    view = ROUTES.get(str(environ.get("PATH_INFO", "/")))
    if view is None:
        return respond(start_response, "not found", "404 Not Found")
    return view(environ, start_response)
