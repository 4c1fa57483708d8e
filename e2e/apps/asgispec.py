"""Bare ASGI apps (no framework) for the end-to-end tests of what the ASGI
spec asks of a server: receive() after the response, exceptions of every
kind in handlers and in lifespan, the scope's "asgi" dict.
"""

import asyncio
import json
import sys
from urllib.parse import parse_qs


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
    elif scope["type"] == "websocket":
        await websocket(scope, receive, send)
    else:
        await http(scope, receive, send)


async def lifespan(receive, send, on_shutdown=None):
    """Answers startup; at shutdown, runs on_shutdown if given."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if on_shutdown is not None:
                await on_shutdown(send)
            else:
                await send({"type": "lifespan.shutdown.complete"})
            return


async def respond(send, body, content_type=b"text/plain"):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", content_type)]})
    await send({"type": "http.response.body", "body": body})


async def http(scope, receive, send):
    path = scope["path"]
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    if path == "/after-response":
        # receive() once the response is complete: http.disconnect at once.
        await receive()  # the body
        await respond(send, b"done")
        try:
            message = await asyncio.wait_for(receive(), 5)
            seen = message["type"]
        except asyncio.TimeoutError:
            seen = "nothing within 5 s"
        with open(query["marker"], "w") as f:
            f.write(seen)
    elif path == "/two-receivers":
        # Two tasks wait in receive() for http.disconnect, after a receive()
        # that was cancelled (Starlette's is_disconnected() does that): the
        # client leaving must wake both.
        await receive()  # the body
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"streaming\n", "more_body": True})
        try:
            await asyncio.wait_for(receive(), 0.01)
        except asyncio.TimeoutError:
            pass

        async def waiter():
            return (await receive())["type"]

        first = asyncio.ensure_future(waiter())
        await asyncio.sleep(0.05)
        second = asyncio.ensure_future(waiter())
        done, pending = await asyncio.wait([first, second], timeout=5)
        for task in pending:
            task.cancel()
        with open(query["marker"], "w") as f:
            f.write("done=%d pending=%d %s" % (len(done), len(pending), ",".join(sorted(t.result() for t in done))))
    elif path == "/send-after-end":
        # A second body after the last one is an app bug: send() raises.
        await receive()
        await respond(send, b"done")
        try:
            await send({"type": "http.response.body", "body": b"more"})
            seen = "no error"
        except RuntimeError as exc:
            seen = "RuntimeError: %s" % exc
        with open(query["marker"], "w") as f:
            f.write(seen)
    elif path == "/exit":
        sys.exit(3)
    elif path == "/interrupt":
        raise KeyboardInterrupt
    elif path == "/sleep":
        await asyncio.sleep(int(query["ms"]) / 1000)
        await respond(send, b"slept")
    elif path == "/asgi":
        await respond(send, json.dumps(scope["asgi"], sort_keys=True).encode(), b"application/json")
    elif path == "/mutate-asgi":
        scope["asgi"]["mutated"] = True
        scope["asgi"]["version"] = "2.0"
        await respond(send, b"mutated")
    else:
        await respond(send, b"hello")


async def websocket(scope, receive, send):
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    if scope["path"] == "/ws/exit":
        sys.exit(3)
    if scope["path"] == "/ws/send-text-and-bytes":
        # websocket.send takes exactly one of text and bytes (the ASGI
        # spec): the app learns of either mistake, and the client gets
        # the one valid message.
        errors = []
        for message in ({}, {"text": "t", "bytes": b"b"}):
            try:
                await send({"type": "websocket.send", **message})
            except TypeError as exc:
                errors.append(str(exc))
        await send({"type": "websocket.send", "text": "%d errors" % len(errors)})
    await send({"type": "websocket.close", "code": 1000})


async def startup_raises(scope, receive, send):
    """Raises after taking the startup event: served without lifespan."""
    if scope["type"] == "lifespan":
        await receive()
        raise RuntimeError("startup exploded 41")
    await app(scope, receive, send)


async def shutdown_raises(scope, receive, send):
    if scope["type"] == "lifespan":

        async def explode(send):
            raise RuntimeError("shutdown exploded 42")

        await lifespan(receive, send, explode)
    else:
        await app(scope, receive, send)


async def shutdown_fails(scope, receive, send):
    if scope["type"] == "lifespan":

        async def fail(send):
            await send({"type": "lifespan.shutdown.failed", "message": "cache flush failed 43"})

        await lifespan(receive, send, fail)
    else:
        await app(scope, receive, send)
