"""The WSGI app bench/procman serves (no framework).

GET /       a light response ("Hello, World!")
GET /sleep  the same after time.sleep(0.02), so that requests are in flight
            when a worker is signalled

Every response carries X-Worker-Pid (the serving process), so the load
generator can count how many distinct workers served a run.
"""

import os
import time

BODY = b"Hello, World!"


def app(environ, start_response):
    if environ.get("PATH_INFO") == "/sleep":
        time.sleep(0.02)
    start_response("200 OK", [
        ("Content-Type", "text/plain"),
        ("Content-Length", str(len(BODY))),
        ("X-Worker-Pid", str(os.getpid())),
    ])
    return [BODY]
