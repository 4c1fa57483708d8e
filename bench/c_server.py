"""Serves an app of bench/apps with bjoern or meinheld, for bench/suite.

    python3 bench/c_server.py bjoern|meinheld HOST PORT MODULE WORKERS

Neither server has a command line or a process manager of its own: both are
a C event loop in one process, and their documentation shows forking after
listening for more. This does that: it listens, forks WORKERS children that
each run the server on the shared socket, and waits. On SIGTERM or SIGINT it
stops the children and exits. Neither server is packaged in Debian; the
suite runs them only when $PYTHON can import them (a build on PYTHONPATH).
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from typing import Any, Callable, List

APPS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps")
BACKLOG = 2048
KEEPALIVE_S = 65  # as the suite's nginx (keepalive_timeout 65)


def bjoern_server(app: Callable, host: str, port: int) -> Callable[[], None]:
    import bjoern  # type: ignore

    bjoern.listen(app, host, port, reuse_port=False)
    return bjoern.run


def meinheld_server(app: Callable, host: str, port: int) -> Callable[[], None]:
    from meinheld import server  # type: ignore

    server.set_backlog(BACKLOG)
    server.listen((host, port))
    # Importing meinheld turns on an access log to stderr, and keep-alive is
    # off unless given a timeout: the other servers log nothing and keep
    # connections open.
    server.set_access_logger(None)
    server.set_keepalive(KEEPALIVE_S)
    return lambda: server.run(app)


SERVERS = {"bjoern": bjoern_server, "meinheld": meinheld_server}


def main(argv: List[str]) -> int:
    if len(argv) != 6 or argv[1] not in SERVERS or not argv[3].isdigit() or not argv[5].isdigit():
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    name, host, port, module, workers = argv[1], argv[2], int(argv[3]), argv[4], int(argv[5])
    sys.path.insert(0, APPS)
    app: Any = importlib.import_module(module).app
    run = SERVERS[name](app, host, port)

    children: List[int] = []
    for _ in range(max(workers, 1)):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            try:
                run()
            finally:
                os._exit(0)
        children.append(pid)

    def stop(signum: int, _frame: Any) -> None:
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while children:
        try:
            pid, _ = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid in children:
            children.remove(pid)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
