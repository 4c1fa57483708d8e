"""WSGI app for taipan's log tests (e2e/logs_test.go): testapp's routes plus
a few that write to the worker's stdout and stderr. Standard library only.
"""

import os
import sys
from urllib.parse import parse_qs

from testapp import app as testapp


def qs(environ):
    return {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()}


def text(start_response, body):
    body = body.encode("utf-8")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def out_view(environ, start_response):
    """One line on stdout and one on stderr, each naming ?tag=."""
    tag = qs(environ).get("tag", "x")
    print("logapp-stdout " + tag)
    sys.stdout.flush()
    print("logapp-stderr " + tag, file=sys.stderr)
    sys.stderr.flush()
    return text(start_response, str(os.getpid()))


def long_view(environ, start_response):
    """One stdout line of ?n= bytes: 'L' * n, then the tag."""
    q = qs(environ)
    n = int(q.get("n", "100000"))
    sys.stdout.write("L" * n + " " + q.get("tag", "x") + "\n")
    sys.stdout.flush()
    return text(start_response, str(os.getpid()))


def partial_view(environ, start_response):
    """Text without a newline: it stays pending until the line ends or the worker exits."""
    sys.stdout.write("logapp-partial " + qs(environ).get("tag", "x"))
    sys.stdout.flush()
    return text(start_response, str(os.getpid()))


def exit_view(environ, start_response):
    os._exit(3)


ROUTES = {
    "/out": out_view,
    "/long": long_view,
    "/partial": partial_view,
    "/exit": exit_view,
}


def app(environ, start_response):
    view = ROUTES.get(environ.get("PATH_INFO", "/"))
    if view is None:
        return testapp(environ, start_response)
    return view(environ, start_response)
