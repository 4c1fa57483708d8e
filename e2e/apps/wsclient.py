"""A WebSocket client for the end-to-end tests, built on python3-websockets.

    wsclient.py SCENARIO BASE_URL [MARKER]

runs one scenario against a taipan serving wsapp.py and prints what it saw
as one JSON object; the Go test checks it."""

import asyncio
import hashlib
import json
import sys

import websockets


async def closed_code(ws) -> list:
    """Waits for the server to close and returns [code, reason] of its close frame."""
    try:
        while True:
            await ws.recv()
    except websockets.ConnectionClosed as exc:
        return [exc.rcvd.code, exc.rcvd.reason] if exc.rcvd else None


async def starlette(base: str, marker: str) -> dict:
    out = {}
    async with websockets.connect(base + "/ws/echo?marker=" + marker, max_size=None) as ws:
        await ws.send("héllo ✓")
        out["text"] = await ws.recv()
        await ws.send(b"\x00\xffbin")
        out["bytes"] = list(await ws.recv())
        big = bytes(range(256)) * (5 * 4096)  # 5 MiB
        await ws.send(big)
        out["big_ok"] = (await ws.recv()) == big
        await ws.send(["frag", "men", "ted"])  # one message in three frames
        out["fragmented"] = await ws.recv()
        await ws.send(b"")
        out["empty"] = list(await ws.recv())
        pong = await ws.ping(b"are you there")
        await asyncio.wait_for(pong, 5)
        out["pong"] = True
    async with websockets.connect(base + "/ws/subprotocol?a=1&b=%20", subprotocols=["chat.v2", "chat.v1"], extra_headers=[("X-Repeat", "one"), ("X-Repeat", "two")]) as ws:
        out["subprotocol"] = ws.subprotocol
        out["x_session"] = ws.response_headers.get("x-session")
        out["scope"] = json.loads(await ws.recv())
        out["subprotocol_close"] = await closed_code(ws)
    try:
        async with websockets.connect(base + "/ws/deny"):
            out["deny"] = "accepted"
    except websockets.InvalidStatusCode as exc:
        out["deny"] = exc.status_code
    async with websockets.connect(base + "/ws/close?marker=" + marker) as ws:
        await ws.send("hi")
        out["app_close"] = await closed_code(ws)
    async with websockets.connect(base + "/ws/explode") as ws:
        await ws.send("hi")
        out["explode"] = await closed_code(ws)
    return out


async def count(base: str, marker: str) -> dict:
    """Sends 8 MiB in 1 KiB messages to an app that starts reading only
    after a second, so Go's window fills and flow control must hold them."""
    digest = hashlib.sha256()
    async with websockets.connect(base + "/ws/count?sleep=1", max_size=None) as ws:
        for i in range(8192):
            message = bytes([i % 251]) * 1024
            digest.update(message)
            await ws.send(message)
        await ws.send(b"end")
        got = json.loads(await ws.recv())
    return {"count": got["count"], "match": got["sha256"] == digest.hexdigest()}


async def push(base: str, marker: str) -> dict:
    """The app sends 20,000 messages as fast as it can."""
    n = 0
    in_order = True
    async with websockets.connect(base + "/ws/push?n=20000&size=200", max_size=None) as ws:
        async for message in ws:
            in_order = in_order and int.from_bytes(message[:4], "big") == n and len(message) == 200
            n += 1
        close = ws.close_code
    return {"count": n, "in_order": in_order, "close": close}


async def fastapi(base: str, marker: str) -> dict:
    async with websockets.connect(base + "/ws/items/7?marker=" + marker) as ws:
        await ws.send("first")
        a = json.loads(await ws.recv())
        await ws.send("second")
        b = json.loads(await ws.recv())
        await ws.close(code=4321, reason="done here")
    return {"replies": [a, b]}


async def too_big(base: str, marker: str) -> dict:
    async with websockets.connect(base + "/ws/echo?marker=" + marker, max_size=None) as ws:
        await ws.send(b"x" * (100 * 1024))
        return {"close": await closed_code(ws)}


async def hold(base: str, marker: str) -> dict:
    """Holds a session open until the server closes it; prints a line once
    it is established so the test can act."""
    async with websockets.connect(base + "/ws/hold?marker=" + marker) as ws:
        await ws.send("x")
        first = await ws.recv()
        print(json.dumps({"established": first}), flush=True)
        return {"close": await closed_code(ws)}


async def two_readers(base: str, marker: str) -> dict:
    """Two messages for an app that reads from two tasks at once."""
    async with websockets.connect(base + "/ws/two-readers") as ws:
        await asyncio.sleep(0.3)  # both readers wait
        await ws.send("one")
        await asyncio.sleep(0.1)
        await ws.send("two")
        return {"report": await ws.recv()}


SCENARIOS = {"two_readers": two_readers, "starlette": starlette, "count": count, "push": push, "fastapi": fastapi, "too_big": too_big, "hold": hold}

if __name__ == "__main__":
    scenario, base = sys.argv[1], sys.argv[2]
    marker = sys.argv[3] if len(sys.argv) > 3 else ""
    result = asyncio.run(asyncio.wait_for(SCENARIOS[scenario](base, marker), 60))
    print(json.dumps(result), flush=True)
