"""The Flask app bench/suite's flask scenario serves: GET /json returns a small JSON dict."""

from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/json")
def json_endpoint():
    return jsonify(message="Hello, World!", id=42, tags=["a", "b", "c"], ok=True)
