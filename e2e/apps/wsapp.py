"""WebSocket apps for the end-to-end tests: a Starlette app, a FastAPI app
and a raw ASGI app. Each records how its sessions ended in the file named by
the "marker" query parameter, so a test can check what the app saw."""

import asyncio
import hashlib
import os

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute


def record(websocket: WebSocket, text: str) -> None:
    marker = websocket.query_params.get("marker")
    if marker:
        with open(marker, "a") as f:
            f.write(text + "\n")


async def echo(websocket: WebSocket) -> None:
    """Echoes text and bytes until the client leaves; records its close code."""
    await websocket.accept()
    record(websocket, "accepted")
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                record(websocket, "disconnect %s" % message.get("code"))
                return
            if message.get("text") is not None:
                await websocket.send_text(message["text"])
            else:
                await websocket.send_bytes(message["bytes"])
    except WebSocketDisconnect as exc:
        record(websocket, "disconnect %s" % exc.code)


async def subprotocol(websocket: WebSocket) -> None:
    """Picks chat.v1 if the client offers it, and reports what it saw."""
    offered = websocket.scope["subprotocols"]
    chosen = "chat.v1" if "chat.v1" in offered else None
    await websocket.accept(subprotocol=chosen, headers=[(b"x-session", b"abc123")])
    scope = websocket.scope
    headers = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]]
    await websocket.send_json(
        {
            "offered": offered,
            "path": scope["path"],
            "root_path": scope["root_path"],
            "query_string": scope["query_string"].decode("latin-1"),
            "scheme": scope["scheme"],
            "http_version": scope["http_version"],
            "headers": headers,
            "client": list(scope["client"]),
            "extensions": sorted(scope.get("extensions", {})),
            "asgi": scope["asgi"],
        }
    )
    await websocket.close()


async def deny(websocket: WebSocket) -> None:
    """Closes before accepting: the handshake fails with 403."""
    await websocket.close(code=1008)


async def app_closes(websocket: WebSocket) -> None:
    """Closes with 4001 "bye" after the first message, then records how the
    client answered."""
    await websocket.accept()
    await websocket.receive_text()
    await websocket.close(code=4001, reason="bye")
    message = await websocket.receive()
    record(websocket, "after close: %s %s" % (message["type"], message.get("code")))


async def explode(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.receive_text()
    raise RuntimeError("websocket handler exploded 99")


async def explode_early(websocket: WebSocket) -> None:
    raise RuntimeError("websocket handshake exploded 98")


async def count(websocket: WebSocket) -> None:
    """Sleeps before reading (so messages queue up), then takes every message
    until "end" and answers with how many arrived and their SHA-256."""
    await websocket.accept()
    await asyncio.sleep(float(websocket.query_params.get("sleep", "0")))
    digest = hashlib.sha256()
    n = 0
    while True:
        data = await websocket.receive_bytes()
        if data == b"end":
            break
        digest.update(data)
        n += 1
    await websocket.send_json({"count": n, "sha256": digest.hexdigest(), "pid": os.getpid()})
    await websocket.close()


async def push(websocket: WebSocket) -> None:
    """Sends n messages as fast as it can, then closes."""
    await websocket.accept()
    n = int(websocket.query_params.get("n", "1000"))
    size = int(websocket.query_params.get("size", "100"))
    for i in range(n):
        await websocket.send_bytes(i.to_bytes(4, "big") + bytes(size - 4))
    await websocket.close()


async def hold(websocket: WebSocket) -> None:
    """Accepts and waits for the client to leave (or the server to go)."""
    await websocket.accept()
    record(websocket, "accepted %d" % os.getpid())
    message = await websocket.receive()
    while message["type"] != "websocket.disconnect":
        await websocket.send_text("pid %d" % os.getpid())
        message = await websocket.receive()
    record(websocket, "disconnect %s" % message.get("code"))


async def slow_accept(websocket: WebSocket) -> None:
    """Never accepts: waits for what follows websocket.connect, which is the
    client leaving, and records it."""
    await websocket.receive()  # websocket.connect
    message = await websocket.receive()
    record(websocket, message["type"])


async def two_readers(websocket: WebSocket) -> None:
    """Two tasks wait in receive() at once; each takes one message, and
    the app reports what they got."""
    await websocket.accept()

    async def reader(name: str) -> str:
        message = await websocket.receive()
        return "%s:%s" % (name, message.get("text"))

    first = asyncio.ensure_future(reader("A"))
    await asyncio.sleep(0.05)
    second = asyncio.ensure_future(reader("B"))
    done, pending = await asyncio.wait([first, second], timeout=5)
    for task in pending:
        task.cancel()
    await websocket.send_text("pending=%d %s" % (len(pending), " ".join(sorted(t.result() for t in done))))
    await websocket.close()


async def hello(request):
    return PlainTextResponse("hello from starlette")


starlette_app = Starlette(
    routes=[
        Route("/", hello),
        WebSocketRoute("/ws/echo", echo),
        WebSocketRoute("/ws/subprotocol", subprotocol),
        WebSocketRoute("/ws/deny", deny),
        WebSocketRoute("/ws/close", app_closes),
        WebSocketRoute("/ws/explode", explode),
        WebSocketRoute("/ws/explode-early", explode_early),
        WebSocketRoute("/ws/count", count),
        WebSocketRoute("/ws/push", push),
        WebSocketRoute("/ws/hold", hold),
        WebSocketRoute("/ws/slow-accept", slow_accept),
        WebSocketRoute("/ws/two-readers", two_readers),
    ]
)

fastapi_app = FastAPI()


@fastapi_app.websocket("/ws/items/{item_id}")
async def fastapi_ws(websocket: WebSocket, item_id: int) -> None:
    await websocket.accept()
    try:
        while True:
            text = await websocket.receive_text()
            await websocket.send_json({"item_id": item_id, "text": text})
    except WebSocketDisconnect as exc:
        record(websocket, "disconnect %s" % exc.code)


async def raw_app(scope, receive, send):
    """A bare ASGI app that denies every WebSocket with an HTTP response of
    its own (the websocket.http.response extension)."""
    if scope["type"] == "lifespan":
        return
    assert scope["type"] == "websocket"
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.http.response.start", "status": 401, "headers": [(b"content-type", b"text/plain"), (b"x-reason", b"token")]})
    await send({"type": "websocket.http.response.body", "body": b"no ", "more_body": True})
    await send({"type": "websocket.http.response.body", "body": b"entry"})
