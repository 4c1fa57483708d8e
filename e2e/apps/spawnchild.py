"""A WSGI app that starts a long-lived child process at import, as apps
that launch a helper with subprocess or multiprocessing do. The child
inherits the worker's stdout and stderr. Its pid goes to the file
CHILD_PID_FILE names, so that the test can stop it. SPAWN_FAIL=1 makes the
import fail after the child started; /exit ends the worker at once."""

import os
import subprocess

CHILD = subprocess.Popen(["sleep", os.environ.get("CHILD_SECONDS", "60")])
with open(os.environ["CHILD_PID_FILE"], "a") as f:
    f.write("%d\n" % CHILD.pid)
if os.environ.get("SPAWN_FAIL"):
    raise RuntimeError("the import failed after starting a child process")


def app(environ, start_response):
    if environ["PATH_INFO"] == "/exit":
        os._exit(1)
    body = b"%d" % os.getpid()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
