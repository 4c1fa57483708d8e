"""The ASGI counterpart of suite_app.py, for bench/suite's ASGI servers.

Same routes: /hello, /sleep?ms=N (await asyncio.sleep), POST /upload,
/stream (10 MiB in 64 KiB chunks, more_body), /fib?n=N (blocks the event
loop, as CPU-bound work in an async app does). Supports lifespan.
"""

import asyncio
from urllib.parse import parse_qs

HELLO = b"Hello, World!"
CHUNK = b"x" * 65536


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def _int(scope, name, default, low, high):
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(name)
    value = int(values[0]) if values else default
    if not low <= value <= high:
        raise ValueError(name)
    return value


async def _plain(send, status, body, ctype=b"text/plain"):
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    path = scope["path"]
    try:
        if path in ("/", "/hello"):
            return await _plain(send, 200, HELLO)
        if path == "/sleep":
            ms = _int(scope, "ms", 10, 0, 60000)
            await asyncio.sleep(ms / 1000)
            return await _plain(send, 200, b"slept %d ms" % ms)
        if path == "/upload":
            got, more = 0, True
            while more:
                message = await receive()
                if message["type"] != "http.request":
                    return
                got += len(message.get("body", b""))
                more = message.get("more_body", False)
            return await _plain(send, 200, b"received %d bytes" % got)
        if path == "/stream":
            chunks = _int(scope, "mb", 10, 1, 1024) * 16
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/octet-stream"),
                                    (b"content-length", str(chunks * len(CHUNK)).encode())]})
            for i in range(chunks):
                await send({"type": "http.response.body", "body": CHUNK, "more_body": i < chunks - 1})
            return None
        if path == "/fib":
            n = _int(scope, "n", 20, 0, 32)
            return await _plain(send, 200, b"fib(%d) = %d" % (n, fib(n)))
    except ValueError:
        return await _plain(send, 400, b"bad parameter")
    return await _plain(send, 404, b"not found")
