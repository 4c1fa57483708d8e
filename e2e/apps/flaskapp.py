"""A small but real Flask app for taipan's end-to-end tests (frameworks_test.go)."""

import atexit
import hashlib
import os
import shutil
import tempfile

from flask import (
    Flask,
    Response,
    abort,
    jsonify,
    redirect,
    request,
    send_file,
    session,
    stream_with_context,
    url_for,
)

app = Flask(__name__)
app.secret_key = "taipan-e2e-not-a-secret"

ITEMS = {
    1: {"id": 1, "name": "sprocket", "tags": ["metal", "small"]},
    2: {"id": 2, "name": "gärtner – ünïcödé", "tags": []},
}

# A file for send_file: deterministic content, big enough for several
# sendfile(2) rounds, written once per worker into a private directory.
_DOWNLOAD_DIR = tempfile.mkdtemp(prefix="taipan-flask-")
atexit.register(shutil.rmtree, _DOWNLOAD_DIR, True)
DOWNLOAD_PATH = os.path.join(_DOWNLOAD_DIR, "download.bin")
with open(DOWNLOAD_PATH, "wb") as f:
    f.write(bytes(range(256)) * 4096)  # 1 MiB


@app.route("/")
def index():
    return "flask ok"


@app.route("/api/items/<int:item_id>")
def get_item(item_id):
    item = ITEMS.get(item_id)
    if item is None:
        abort(404)
    return jsonify(item)


@app.route("/api/echo", methods=["POST"])
def echo_json():
    data = request.get_json(force=True)
    return jsonify({"received": data, "content_type": request.content_type})


@app.route("/form", methods=["POST"])
def form():
    return jsonify(
        {
            "name": request.form.get("name"),
            "colors": request.form.getlist("color"),
            "content_length": request.content_length,
        }
    )


@app.route("/upload", methods=["POST"])
def upload():
    f = request.files.get("file")
    if f is None:
        abort(400)
    h = hashlib.sha256()
    size = 0
    while True:
        chunk = f.stream.read(65536)
        if not chunk:
            break
        size += len(chunk)
        h.update(chunk)
    return jsonify(
        {
            "filename": f.filename,
            "size": size,
            "sha256": h.hexdigest(),
            "note": request.form.get("note"),
            "mimetype": f.mimetype,
            # BytesIO when taipan sent the body inline, a real file when it
            # spilled the body to disk.
            "input_type": type(request.environ["wsgi.input"]).__name__,
        }
    )


@app.route("/old")
def old():
    return redirect(url_for("get_item", item_id=1))


@app.route("/gone")
def gone():
    abort(404)


@app.route("/session/set", methods=["POST"])
def session_set():
    session["value"] = request.form["value"]
    session["count"] = session.get("count", 0) + 1
    return jsonify({"stored": session["value"], "count": session["count"]})


@app.route("/session/get")
def session_get():
    return jsonify({"value": session.get("value"), "count": session.get("count", 0)})


@app.route("/search")
def search():
    return jsonify(
        {
            "q": request.args.get("q"),
            "tags": request.args.getlist("tag"),
            "path": request.path,
            "script_root": request.script_root,
        }
    )


@app.route("/hello/<name>")
def hello(name):
    return jsonify({"name": name, "path": request.path, "url": request.url})


@app.route("/stream")
def stream():
    n = request.args.get("n", 5, type=int)
    fail_at = request.args.get("fail_at", -1, type=int)

    @stream_with_context
    def generate():
        for i in range(n):
            if i == fail_at:
                raise RuntimeError("stream failed on purpose at chunk %d" % i)
            # request is still available inside the generator thanks to
            # stream_with_context.
            yield "chunk %d of %d for %s\n" % (i, n, request.args.get("who", "?"))

    return Response(generate(), mimetype="text/plain")


@app.route("/cookies")
def cookies():
    resp = jsonify({"seen": sorted(request.cookies)})
    resp.set_cookie("first", "1", path="/")
    resp.set_cookie("second", "zwei", path="/", httponly=True)
    resp.set_cookie("third", "drei", path="/", samesite="Lax")
    return resp


@app.route("/big")
def big():
    n = request.args.get("n", 1 << 20, type=int)
    return Response(bytes(range(256)) * (n // 256), mimetype="application/octet-stream")


@app.route("/download")
def download():
    return send_file(DOWNLOAD_PATH, mimetype="application/octet-stream", as_attachment=True, download_name="data.bin")


@app.route("/boom")
def boom():
    raise RuntimeError("flask boom for the test")
