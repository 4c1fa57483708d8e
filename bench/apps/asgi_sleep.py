"""The I/O-bound ASGI app bench/io serves (no framework).

Every HTTP request waits 10 ms without blocking the event loop
(asyncio.sleep), then answers "slept 10 ms". ?ms=N picks another wait (0 to
60000 ms), like taipan's built-in /sleep?ms=N. Supports lifespan.
"""

import asyncio
from urllib.parse import parse_qs

DEFAULT_MS = 10
MAX_MS = 60_000


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
        return
    if scope["type"] != "http":
        return
    ms = DEFAULT_MS
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("ms")
    status = 200
    try:
        if values:
            ms = int(values[0])
            if not 0 <= ms <= MAX_MS:
                raise ValueError
    except ValueError:
        status, body = 400, b"ms must be a whole number from 0 to %d\n" % MAX_MS
    else:
        await asyncio.sleep(ms / 1000)
        body = b"slept %d ms\n" % ms
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"text/plain"),
            (b"content-length", str(len(body)).encode()),
        ],
    })
    await send({"type": "http.response.body", "body": body})
