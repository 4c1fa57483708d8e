"""WSGI app for taipan's process-manager end-to-end tests (e2e/procman_test.go).
Standard library only. Every light endpoint answers with the worker's pid, so
a test can tell which worker (and generation) served it.

Environment (set with taipan -e):
  PROCAPP_FAIL_MARKER    if this file exists when the module is imported,
                         the import fails (boot-failure tests)
  PROCAPP_POSTFORK_FILE  post_fork() appends the worker's pid to this file
"""

import os
import threading
import time
from urllib.parse import parse_qs

_marker = os.environ.get("PROCAPP_FAIL_MARKER")
if _marker and os.path.exists(_marker):
    raise RuntimeError("procapp refuses to boot: marker file %s exists" % _marker)

# Memory kept alive by /alloc, so the worker's RSS stays high.
HOARD = []


def qs(environ):
    return {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()}


def respond(start_response, body, status="200 OK"):
    if isinstance(body, str):
        body = body.encode("utf-8")
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def post_fork():
    """--post-fork procapp:post_fork"""
    path = os.environ.get("PROCAPP_POSTFORK_FILE")
    if path:
        with open(path, "a") as f:
            f.write("%d\n" % os.getpid())


# --- endpoints ----------------------------------------------------------------


def pid_view(environ, start_response):
    return respond(start_response, str(os.getpid()))


def sleep_view(environ, start_response):
    time.sleep(int(qs(environ).get("ms", "100")) / 1000)
    return respond(start_response, str(os.getpid()))


def wait_for_the_lock_forever():
    time.sleep(60)


def hang_view(environ, start_response):
    wait_for_the_lock_forever()
    return respond(start_response, "woke up")


def spin_until_the_end_of_time():
    while True:
        pass


def spin_view(environ, start_response):
    spin_until_the_end_of_time()
    return respond(start_response, "unreachable")


def hold_the_gil_in_c():
    time.sleep(0.2)
    # PyDLL does not release the GIL around the call: for two minutes no
    # other thread of this process runs Python code, so the main thread
    # cannot answer a heartbeat.
    import ctypes
    ctypes.PyDLL(None).sleep(120)


def freeze_view(environ, start_response):
    threading.Thread(target=hold_the_gil_in_c, daemon=True).start()
    return respond(start_response, str(os.getpid()))


def alloc_view(environ, start_response):
    mb = int(qs(environ).get("mb", "80"))
    HOARD.append(b"\x01" * (mb << 20))  # touched, so it is resident
    return respond(start_response, str(os.getpid()))


def orphan_view(environ, start_response):
    """Makes an orphan: a child forks a grandchild and exits at once; the
    grandchild, reparented to the namespace's init, writes its parent pid to
    ?out= and exits 100 ms later."""
    out = qs(environ).get("out", "")
    child = os.fork()
    if child == 0:
        try:
            if os.fork() == 0:
                try:
                    time.sleep(0.1)
                    if out:
                        with open(out + ".tmp", "w") as f:
                            f.write(str(os.getppid()))
                        os.rename(out + ".tmp", out)
                finally:
                    os._exit(0)
        finally:
            os._exit(0)
    os.waitpid(child, 0)  # the direct child is ours to reap
    return respond(start_response, str(os.getpid()))


def zombies_view(environ, start_response):
    zombies = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if fields and fields[0] == "Z":
            zombies.append("%s(ppid %s)" % (name, fields[1]))
    return respond(start_response, "%d %s" % (len(zombies), " ".join(zombies)))


ROUTES = {
    "/pid": pid_view,
    "/sleep": sleep_view,
    "/hang": hang_view,
    "/spin": spin_view,
    "/freeze": freeze_view,
    "/alloc": alloc_view,
    "/orphan": orphan_view,
    "/zombies": zombies_view,
}


def app(environ, start_response):
    view = ROUTES.get(environ.get("PATH_INFO", "/"))
    if view is None:
        return respond(start_response, "not found", "404 Not Found")
    return view(environ, start_response)
