"""An ASGI app whose lifespan shutdown takes SLOW_SHUTDOWN_S seconds (6 by
default) and then writes "done" to the file SHUTDOWN_MARKER names."""

import asyncio
import os


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await asyncio.sleep(float(os.environ.get("SLOW_SHUTDOWN_S", "6")))
                with open(os.environ["SHUTDOWN_MARKER"], "w") as f:
                    f.write("done")
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})
