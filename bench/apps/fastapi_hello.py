"""The FastAPI hello-world app bench/asgi serves: one route, plain text."""

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

app = FastAPI()


@app.get("/")
def index():
    return PlainTextResponse("Hello, World!")
