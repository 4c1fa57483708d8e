"""ASGI apps for the end-to-end tests: a FastAPI app and a raw ASGI app."""

import asyncio
import os

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, StreamingResponse

fastapi_app = FastAPI()
LIFESPAN = {"startup": 0}
ACTIVE = {"now": 0, "peak": 0}


@fastapi_app.on_event("startup")
async def startup() -> None:
    LIFESPAN["startup"] += 1


@fastapi_app.get("/items/{item_id}")
async def item(item_id: int, q: str = "") -> dict:
    return {"item_id": item_id, "q": q, "startups": LIFESPAN["startup"], "pid": os.getpid()}


@fastapi_app.post("/echo")
async def echo(request: Request) -> PlainTextResponse:
    body = await request.body()
    return PlainTextResponse("%d %s" % (len(body), request.headers.get("content-type", "")))


@fastapi_app.get("/scope")
async def scope(request: Request) -> dict:
    s = request.scope
    return {
        "path": s["path"],
        "raw_path": s["raw_path"].decode("latin-1"),
        "query_string": s["query_string"].decode("latin-1"),
        "root_path": s["root_path"],
        "http_version": s["http_version"],
        "client": list(s["client"]) if s["client"] else None,
        "server": list(s["server"]) if s["server"] else None,
        "scheme": s["scheme"],
        "asgi": s["asgi"],
    }


@fastapi_app.get("/overlap")
async def overlap(ms: int = 300) -> PlainTextResponse:
    ACTIVE["now"] += 1
    ACTIVE["peak"] = max(ACTIVE["peak"], ACTIVE["now"])
    await asyncio.sleep(ms / 1000)
    ACTIVE["now"] -= 1
    return PlainTextResponse("%d %d main" % (ACTIVE["peak"], os.getpid()))


@fastapi_app.get("/stream")
async def stream() -> StreamingResponse:
    async def chunks():
        for i in range(3):
            yield b"chunk%d;" % i
            await asyncio.sleep(0.01)

    return StreamingResponse(chunks(), media_type="text/plain")


@fastapi_app.get("/boom")
async def boom() -> dict:
    raise RuntimeError("asgi handler exploded 77")


async def raw_app(scope, receive, send):
    """A bare ASGI app: it streams until the client leaves (/poll: it sends
    nothing until then) and records that it saw http.disconnect in the file
    the query string names."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    marker = scope["query_string"].decode()
    if scope["path"] == "/poll":
        # A long poll that has sent nothing yet must hear of the client
        # leaving too.
        await receive()  # the body
        message = await receive()
        with open(marker, "w") as f:
            f.write(message["type"])
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"first;", "more_body": True})
    await receive()  # the body
    message = await receive()  # waits for the client to go
    with open(marker, "w") as f:
        f.write(message["type"])


async def failing_startup(scope, receive, send):
    """An app whose lifespan startup fails."""
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "the database is on fire"})


@fastapi_app.get("/hang")
async def hang() -> dict:
    await wait_for_the_async_lock_forever()
    return {}


async def wait_for_the_async_lock_forever() -> None:
    await asyncio.sleep(3600)


@fastapi_app.get("/block")
async def block() -> dict:
    import time

    time.sleep(30)  # blocks the event loop: cancelling cannot stop it
    return {}


@fastapi_app.get("/loop")
async def loop() -> PlainTextResponse:
    return PlainTextResponse(type(asyncio.get_running_loop()).__module__)
