"""The raw hello-world ASGI app bench/asgi serves (no framework).

ASGI 3.0: answers every HTTP request with "Hello, World!" (content-type and
content-length set), and supports the lifespan protocol (startup and
shutdown complete at once), so both taipan and uvicorn run it as they would
a real app.
"""

BODY = b"Hello, World!"
START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"content-type", b"text/plain"),
        (b"content-length", str(len(BODY)).encode()),
    ],
}
RESPONSE_BODY = {"type": "http.response.body", "body": BODY}


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
    await send(START)
    await send(RESPONSE_BODY)
