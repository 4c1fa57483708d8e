"""An app that forks a child at import, as apps that start a poller with
multiprocessing do: the child inherits the worker's socket to taipan and
holds it open after the worker has gone. The child writes its pid to the
file $FORKAPP_PIDS names (one line each) and exits on its own after 20 s."""

import os
import time

child = os.fork()
if child == 0:
    time.sleep(20)
    os._exit(0)
with open(os.environ["FORKAPP_PIDS"], "a") as f:
    f.write("%d\n" % child)


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"%d" % os.getpid()]
