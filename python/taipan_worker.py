"""taipan's Python worker: runs a WSGI application for the Go edge.

Go starts this module with the user's interpreter and hands it one end of a
socketpair as file descriptor 3. Requests arrive as frames (docs/protocol.md),
already complete, often several in one read; the worker answers them in order
and sends all complete responses in one write. Standard library only, and
compatible with CPython 3.9+.

With --fork-server (taipan --preload) this module instead imports the app
once and forks the workers from itself; see ForkServer.
"""

from __future__ import annotations

import argparse
import ast
import faulthandler
import fcntl
import gc
import importlib
import inspect
import io
import json
import marshal
import os
import select
import signal
import socket
import struct
import sys
import threading
import traceback
from collections import deque
from http import HTTPStatus
from typing import Any, Callable, Deque, Dict, Iterable, List, Optional, Sequence, Set, Tuple

PROTOCOL = 1

# Frame header: u32 length, u8 kind, u8 flags, u16 reserved, u32 stream.
HEADER = struct.Struct("<IBBHI")
HEADER_SIZE = HEADER.size
U32 = struct.Struct("<I")
# A HEAD frame's header followed by its u32 head length, packed in one call.
HEAD_PREFIX = struct.Struct("<IBBHII")
FILE_RANGE = struct.Struct("<QQ")

# Go -> worker
REQUEST = 0x01
CANCEL = 0x02
PING = 0x03
WS_RECEIVE = 0x04
WS_DISCONNECT = 0x05
# worker -> Go
READY = 0x10
BOOT_ERROR = 0x11
HEAD = 0x12
BODY = 0x13
FILE = 0x14
ABORT = 0x15
LOG = 0x16
PONG = 0x17
WS_ACCEPT = 0x18
WS_SEND = 0x19
WS_CLOSE = 0x1A
WS_ACK = 0x1B

FLAG_BODY_FILE = 0x01
FLAG_WEBSOCKET = 0x02
FLAG_END = 0x01
# With FLAG_END on a HEAD frame: the response is complete, but the app's
# close() still runs. Go counts the worker busy with the stream until the
# first frame of the next stream, or an END frame of this one.
FLAG_CLOSING = 0x02
FLAG_TEXT = 0x01  # WS_RECEIVE, WS_SEND: a text message
FLAG_CANCEL_TIMEOUT = 0x01  # CANCEL: the request ran past --timeout
FLAG_POST_FORK = 0x01  # BOOT_ERROR: the --post-fork hook failed, not the app's import

LOG_WARNING = 30
LOG_ERROR = 40

# How much one recv() asks for. A bytes object this size comes from the
# malloc heap; at 256 KiB each one was mmap()ed, page-faulted in and
# unmapped again, which cost more than a hello-world request's own work.
RECV_SIZE = 64 * 1024

Headers = List[Tuple[str, str]]
StartResponse = Callable[..., Callable[[bytes], None]]
WSGIApp = Callable[[dict, StartResponse], Iterable[bytes]]

INTERNAL_ERROR = (
    "500 Internal Server Error",
    [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "21")],
    b"Internal Server Error",
)

# taipan --debug (development only) sets this variable: the 500 answering an
# app's exception then carries the traceback. It is removed here, before the
# app is loaded, so the app never sees it.
DEBUG = os.environ.pop("TAIPAN_WORKER_DEBUG", "") == "1"


def error_response(tb: str) -> Tuple[str, Headers, bytes]:
    """The 500 answering an app's exception whose traceback is tb: a plain
    one, so that clients learn nothing of the code, unless --debug."""
    if not DEBUG:
        return INTERNAL_ERROR
    body = ("Internal Server Error\n\n%s" % tb).encode("utf-8", "replace")
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    return ("500 Internal Server Error", headers, body)


def frame(kind: int, stream: int, payload: bytes = b"", flags: int = 0) -> bytes:
    """Encodes one frame."""
    return HEADER.pack(len(payload), kind, flags, 0, stream) + payload


def head_frame(stream: int, status: str, headers: Headers, body: bytes, end: bool, closing: bool = False) -> bytes:
    """Encodes a HEAD frame. marshal version 2 has no back-references."""
    head = marshal.dumps((status, headers), 2)
    flags = (FLAG_END | FLAG_CLOSING if closing else FLAG_END) if end else 0
    prefix = HEAD_PREFIX.pack(4 + len(head) + len(body), HEAD, flags, 0, stream, len(head))
    return b"".join((prefix, head, body))


# A body chunk at least this long goes to the socket as its own part of a
# sendmsg(2) rather than being copied into one bytes object with its frame
# header; below it, the copy is cheaper than the extra buffer.
SEPARATE_PART = 4096
# sendmsg(2) takes at most IOV_MAX (1024 on Linux) buffers.
MAX_PARTS = 1024


def send_parts(sock: socket.socket, parts: List[bytes]) -> None:
    """Sends parts in order and in full, in one sendmsg(2) when it takes
    them all (a blocking stream socket does, unless a signal interrupts)."""
    if len(parts) == 1:
        sock.sendall(parts[0])
        return
    if len(parts) > MAX_PARTS:
        sock.sendall(b"".join(parts))
        return
    sent = sock.sendmsg(parts)
    for part in parts:
        n = len(part)
        if sent >= n:
            sent -= n
            continue
        sock.sendall(memoryview(part)[sent:] if sent else part)
        sent = 0


def declared_length(headers: Headers) -> int:
    """The Content-Length the app's headers declare, or -1."""
    for name, value in headers:
        if len(name) == 14 and name.lower() == "content-length":
            try:
                return int(value)
            except ValueError:
                return -1
    return -1


class Cancelled(Exception):
    """The client went away while the response was being produced."""


class FileWrapper:
    """wsgi.file_wrapper: lets the worker hand a real file to Go for sendfile.

    Iterating it reads blocks, so it also works when Go cannot take the file
    (not a regular file, or no fileno()).
    """

    def __init__(self, filelike: Any, blksize: int = 8192) -> None:
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self) -> FileWrapper:
        return self

    def __next__(self) -> bytes:
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration


class Response:
    """State of one response: what start_response recorded and what was sent."""

    __slots__ = ("worker", "stream", "status", "headers", "sent", "complete")

    def __init__(self, worker: Worker, stream: int) -> None:
        self.worker = worker
        self.stream = stream
        self.status: Optional[str] = None
        self.headers: Headers = []
        self.sent = False  # the head has been queued or sent
        # The whole body its Content-Length announces has been sent; the
        # END frame follows close() (Worker.handle).
        self.complete = False

    def start_response(self, status: str, headers: Headers, exc_info: Any = None) -> Callable[[bytes], None]:
        """The start_response callable of PEP 3333."""
        if exc_info:
            try:
                if self.sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response() called a second time without exc_info")
        if type(status) is not str:
            raise TypeError("status must be a str, not %s" % type(status).__name__)
        if type(headers) is not list:
            raise TypeError("headers must be a list, not %s" % type(headers).__name__)
        # The names and values are checked by Go, which must check them
        # anyway before they reach the client; a bad one is logged and
        # answered with 500.
        self.status = status
        self.headers = headers
        return self.write

    def write(self, data: bytes) -> None:
        """The legacy write() callable: sends data at once."""
        if self.status is None:
            raise AssertionError("write() called before start_response()")
        if type(data) is not bytes:
            raise TypeError("write() takes bytes, not %s" % type(data).__name__)
        self.worker.stream_chunk(self, data)


class Worker:
    """Reads request frames from Go, runs the app, writes response frames."""

    # Requests run one after another, so the first frame of one tells Go
    # that the close() of the one before has returned (FLAG_CLOSING), and
    # the END after close() is needed only when no request follows.
    one_at_a_time = True

    def __init__(self, sock: socket.socket, app: WSGIApp) -> None:
        self.sock = sock
        self.app = app
        self.inbox: Deque[Tuple[int, int, int, memoryview]] = deque()
        self.pending = b""
        self.out: List[bytes] = []
        self.cancelled: set = set()
        self.closing = 0  # a stream sent with FLAG_CLOSING whose END is owed
        self.poller = select.poll()
        self.poller.register(sock.fileno(), select.POLLIN)

    # --- reading -----------------------------------------------------------

    def fill(self, block: bool) -> bool:
        """Reads what the socket has and queues every complete frame.

        Returns False at end of file (Go closed the socket: time to exit).
        """
        if not block and not self.poller.poll(0):
            return True
        data = self.sock.recv(RECV_SIZE)
        if not data:
            return False
        if self.pending:
            data = self.pending + data
        n = len(data)
        off = 0
        view = memoryview(data)
        while n - off >= HEADER_SIZE:
            length, kind, flags, _, stream = HEADER.unpack_from(data, off)
            end = off + HEADER_SIZE + length
            if end > n:
                # A large frame: read the rest of it in one buffer.
                if end - off > RECV_SIZE:
                    buf = bytearray(end - off)
                    have = n - off
                    buf[:have] = view[off:]
                    bview = memoryview(buf)
                    while have < len(buf):
                        got = self.sock.recv_into(bview[have:])
                        if not got:
                            return False
                        have += got
                    self.queue(kind, flags, stream, bview[HEADER_SIZE:])
                    off = n
                break
            self.queue(kind, flags, stream, view[off + HEADER_SIZE : end])
            off = end
        self.pending = data[off:] if off < n else b""
        return True

    def queue(self, kind: int, flags: int, stream: int, payload: memoryview) -> None:
        if kind == CANCEL:
            self.cancelled.add(stream)
        else:
            self.inbox.append((kind, flags, stream, payload))

    def serve(self) -> None:
        """The worker's main loop; returns when Go closes the socket."""
        inbox = self.inbox
        while True:
            if not inbox:
                if self.closing:
                    self.out.append(frame(BODY, self.closing, b"", FLAG_END))
                    self.closing = 0
                self.flush()
                self.cancelled.clear()
                if not self.fill(block=True):
                    return
                continue
            kind, flags, stream, payload = inbox.popleft()
            if kind == REQUEST:
                # Go must hear that the previous request of the batch ended
                # before this one starts: otherwise its response waits
                # behind this one, and should this one hang or kill the
                # worker, Go would blame the finished request and run this
                # one again elsewhere. A response sent whole with
                # FLAG_CLOSING needs no END of its own: this request's first
                # frame settles it, and Go counts this one as possibly
                # started (so never runs it again) until then.
                self.closing = 0
                self.flush()
                self.handle(stream, flags, payload)
            elif kind == PING:
                self.out.append(frame(PONG, 0))

    def flush(self) -> None:
        if self.out:
            try:
                send_parts(self.sock, self.out)
            finally:
                self.out.clear()  # even when Go is gone: nothing is sent twice

    def send_fds(self, data: bytes, fd: int) -> None:
        """Sends data with a file descriptor attached (SCM_RIGHTS)."""
        socket.send_fds(self.sock, [data], [fd])

    # --- one request -------------------------------------------------------

    def handle(self, stream: int, flags: int, payload: memoryview) -> None:
        """Runs the app for one request and queues or streams its response."""
        environ_len = U32.unpack_from(payload)[0]
        # Go sends every key but the three that must be Python objects.
        environ = marshal.loads(payload[4 : 4 + environ_len])
        if flags & FLAG_BODY_FILE:
            wsgi_input: Any = open(environ.pop("taipan.body_path"), "rb")
        else:
            wsgi_input = io.BytesIO(payload[4 + environ_len :])
        environ["wsgi.input"] = wsgi_input
        environ["wsgi.errors"] = sys.stderr
        environ["wsgi.file_wrapper"] = FileWrapper
        response = Response(self, stream)
        result: Any = None
        try:
            result = self.app(environ, response.start_response)
            self.send_result(response, result)
        except Cancelled:
            # Go stops listening after CANCEL but still waits for the stream
            # to end before it counts this worker idle again.
            self.out.append(frame(ABORT, stream, b"client disconnected"))
        except Exception:
            self.fail(response, environ)
        finally:
            if result is not None and hasattr(result, "close"):
                try:
                    result.close()
                except Exception:
                    self.log(LOG_ERROR, "Error closing the response of %s\n%s" % (request_line(environ), traceback.format_exc()), stream)
            wsgi_input.close()
        if response.complete:
            # The client has its response (FLAG_CLOSING); the stream's END
            # waits for close(): until the stream ends, Go counts the worker
            # busy with this request, so a close() that hangs is blamed on it
            # and not on the next one. A worker that runs one request at a
            # time owes it only if no request follows (serve); a threaded
            # one sends it now.
            if self.one_at_a_time:
                self.closing = stream
            else:
                self.out.append(frame(BODY, stream, b"", FLAG_END))

    def send_result(self, response: Response, result: Iterable[bytes]) -> None:
        """Sends the iterable the app returned."""
        if (type(result) is list or type(result) is tuple) and not response.sent:
            # The common case, `return [body]`: the whole body is already in
            # memory, so it goes as one complete HEAD frame, written with the
            # rest of the batch.
            for chunk in result:
                if type(chunk) is not bytes:
                    raise TypeError("the app must yield bytes, not %s" % type(chunk).__name__)
            if response.status is None:
                raise AssertionError("the app returned without calling start_response()")
            body = result[0] if len(result) == 1 else b"".join(result)
            self.out.append(head_frame(response.stream, response.status, response.headers, body, True))
            return
        if type(result) is FileWrapper and not response.sent and self.send_file(response, result):
            return
        for chunk in result:
            if type(chunk) is not bytes:
                raise TypeError("the app must yield bytes, not %s" % type(chunk).__name__)
            if not chunk or response.complete:
                continue  # after a complete body: bytes Go would not send
            if not response.sent and response.status is not None and declared_length(response.headers) == len(chunk):
                # The first chunk is the whole body the headers announce
                # (Flask, Django). It goes now, complete and marked
                # FLAG_CLOSING: what the iterable does next, and close()
                # (werkzeug's call_on_close, Django's request_finished), may
                # take long, and PEP 3333 forbids delaying a block. The
                # stream's END follows close() (handle).
                self.fill(block=False)
                if response.stream in self.cancelled:
                    raise Cancelled()
                self.out.append(head_frame(response.stream, response.status, response.headers, chunk, True, True))
                self.flush()
                response.sent = response.complete = True
                continue
            self.stream_chunk(response, chunk)
        if response.status is None:
            raise AssertionError("the app returned without calling start_response()")
        if response.complete:
            return
        # The iterable is exhausted: the client gets the end of its
        # response now, before close() runs (FLAG_CLOSING, as above).
        if response.sent:
            self.out.append(frame(BODY, response.stream, b"", FLAG_END | FLAG_CLOSING))
        else:
            self.out.append(head_frame(response.stream, response.status, response.headers, b"", True, True))
        self.flush()
        response.sent = response.complete = True

    def stream_chunk(self, response: Response, chunk: bytes) -> None:
        """Sends one body chunk now (with the head before the first one)."""
        stream = response.stream
        self.fill(block=False)
        if stream in self.cancelled:
            raise Cancelled()
        if not response.sent:
            if response.status is None:
                raise AssertionError("the app yielded a body before calling start_response()")
            self.out.append(head_frame(stream, response.status, response.headers, chunk, False))
            response.sent = True
        elif len(chunk) >= SEPARATE_PART:
            self.out.append(HEADER.pack(len(chunk), BODY, 0, 0, stream))
            self.out.append(chunk)
        else:
            self.out.append(frame(BODY, stream, chunk))
        self.flush()

    def send_file(self, response: Response, wrapper: FileWrapper) -> bool:
        """Hands the wrapped file's descriptor to Go, which sends it itself.

        Returns False when the file cannot be passed (no fileno, not a regular
        file), and the caller iterates the wrapper instead.
        """
        filelike = wrapper.filelike
        try:
            fd = filelike.fileno()
            st = os.fstat(fd)
        except (AttributeError, OSError, io.UnsupportedOperation):
            return False
        if not (st.st_mode & 0o170000 == 0o100000):  # S_ISREG
            return False
        try:
            offset = filelike.tell()
        except (AttributeError, OSError):
            offset = 0
        count = max(st.st_size - offset, 0)
        for name, value in response.headers:
            if name.lower() == "content-length":
                try:
                    count = min(count, int(value))
                except ValueError:
                    pass
        if response.status is None:
            raise AssertionError("the app returned without calling start_response()")
        self.out.append(head_frame(response.stream, response.status, response.headers, b"", False))
        response.sent = True
        self.flush()
        self.send_fds(frame(FILE, response.stream, FILE_RANGE.pack(offset, count)), fd)
        self.out.append(frame(BODY, response.stream, b"", FLAG_END))
        return True

    def fail(self, response: Response, environ: dict) -> None:
        """Reports an exception raised by the app: 500, or abort mid-body."""
        tb = traceback.format_exc()
        self.log(LOG_ERROR, "Error handling request %s\n%s" % (request_line(environ), tb), response.stream)
        if response.complete:
            pass  # the client has its whole response; only the log tells
        elif response.sent:
            self.out.append(frame(ABORT, response.stream, b"app raised after the response head was sent"))
        else:
            status, headers, body = error_response(tb)
            self.out.append(head_frame(response.stream, status, headers, body, True))
        response.sent = True

    def log(self, level: int, text: str, stream: int = 0) -> None:
        self.out.append(frame(LOG, stream, bytes([level]) + text.encode("utf-8", "replace")))


def request_line(environ: dict) -> str:
    return "%s %s" % (environ.get("REQUEST_METHOD", "?"), environ.get("RAW_URI", "?"))


# --- loading the app ---------------------------------------------------------


def load_app(spec: str) -> WSGIApp:
    """Imports MODULE[:CALLABLE]; CALLABLE may be `name`, `a.b`, or `factory(args)`.

    Without a callable, `application` is tried, then `app`.
    """
    module_name, _, expr = spec.partition(":")
    module = importlib.import_module(module_name)
    if not expr:
        found = [name for name in ("application", "app") if hasattr(module, name)]
        for name in found:
            if callable(getattr(module, name)):
                return getattr(module, name)
        if found:
            name = found[0]
            raise TypeError("'%s:%s' is not callable (got %s)" % (module_name, name, type(getattr(module, name)).__name__))
        raise LookupError("module %r has no 'application' or 'app'; name the callable: %s:NAME" % (module_name, module_name))
    try:
        node = ast.parse(expr.strip(), mode="eval").body
    except SyntaxError:
        raise ValueError("cannot parse the callable %r in %r" % (expr, spec)) from None
    call: Optional[ast.Call] = None
    if isinstance(node, ast.Call):
        call, node = node, node.func
    target: Any = module
    for name in attribute_path(node, spec):
        try:
            target = getattr(target, name)
        except AttributeError:
            raise LookupError("module %r has no attribute %r (from %r)" % (module_name, name, spec)) from None
    if call is not None:
        try:
            args = [ast.literal_eval(a) for a in call.args]
            kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
        except ValueError:
            raise ValueError("factory arguments in %r must be literals" % spec) from None
        target = target(*args, **kwargs)
    if not callable(target):
        raise TypeError("%r is not callable (got %s)" % (spec, type(target).__name__))
    return target


def attribute_path(node: ast.AST, spec: str) -> List[str]:
    names: List[str] = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        raise ValueError("cannot use %r as an app: want MODULE:NAME or MODULE:FACTORY()" % spec)
    names.append(node.id)
    return names[::-1]


def patch_gevent() -> Optional[str]:
    """Monkey-patches the standard library for -k gevent, so each request
    runs in a greenlet and blocking I/O yields to the others. Returns why it
    could not, or None."""
    try:
        from gevent import monkey
    except ImportError:
        return ("-k gevent needs gevent, which %s cannot import: install it "
                "(Debian: apt-get install python3-gevent; pip: pip install gevent)" % sys.executable)
    monkey.patch_all()
    return None


def run_hook(spec: str) -> None:
    """Calls the MODULE:CALLABLE named by --post-fork, with no arguments."""
    module_name, _, name = spec.partition(":")
    if not name:
        raise ValueError("--post-fork wants MODULE:CALLABLE, got %r" % spec)
    hook = getattr(importlib.import_module(module_name), name)
    hook()


def post_fork(sock: socket.socket, spec: str) -> bool:
    """Runs the --post-fork hook; on failure tells Go why (BOOT_ERROR) and
    returns False."""
    try:
        run_hook(spec)
    except BaseException as exc:
        text = "Failed to run the post-fork hook %r:\n%s" % (spec, app_traceback(exc))
        sock.sendall(frame(BOOT_ERROR, 0, text.encode("utf-8", "replace"), FLAG_POST_FORK))
        return False
    return True


def app_traceback(exc: BaseException) -> str:
    """Formats exc without the frames of this module and of importlib, so the
    traceback starts where the user's code does."""
    tb = exc.__traceback__
    while tb is not None and (tb.tb_frame.f_code.co_filename == __file__ or "importlib" in tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    if tb is None:  # the failure is in the spec itself (no such attribute, ...)
        return "".join(traceback.format_exception_only(type(exc), exc))
    return "".join(traceback.format_exception(type(exc), exc, tb))


def setup_path(args: argparse.Namespace) -> None:
    """Running a script puts its own directory first on sys.path; the app's
    imports must instead see the working directory, like `python -m`."""
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if p and os.path.abspath(p) != here]
    for path in reversed([os.getcwd()] + args.pythonpath):
        sys.path.insert(0, path)
    if args.app.startswith("taipan_demo"):
        sys.path.append(here)


def startup_error(protocol: int) -> Optional[str]:
    """Why this interpreter cannot work for this taipan, or None."""
    if sys.version_info < (3, 9):
        return "taipan needs Python 3.9 or newer; %s is %s" % (sys.executable, sys.version.split()[0])
    if protocol != PROTOCOL:
        return "worker speaks protocol %d, taipan %d" % (PROTOCOL, protocol)
    return None


class ThreadedWorker:
    """A worker that runs up to `threads` requests at once: on a pool of
    threads (--threads), or each in a greenlet of its own (-k gevent).

    The main thread reads frames and starts each request. Go never sends
    more requests than there are threads, so none waits here. Each request
    sends its own response frames; a lock keeps whole writes from different
    requests from interleaving on the socket.
    """

    def __init__(self, sock: socket.socket, app: WSGIApp, threads: int, greenlets: bool = False) -> None:
        self.sock = sock
        self.reader = Worker(sock, app)
        self.send_lock = threading.Lock()
        # Runners are reused rather than made per request; list.pop and
        # list.append are atomic, so threads share the list without a lock
        # (run pops and lets an empty list raise, never checks first).
        self.idle_runners: List[ThreadRunner] = []
        self.start: Callable[..., Any]
        self.wait_all: Callable[[], Any]
        if greenlets:
            # A greenlet per request costs a fraction of handing it to a
            # monkey-patched ThreadPoolExecutor (its Future, queue and
            # locks all switch through the gevent hub).
            from gevent.pool import Group  # type: ignore

            group = Group()
            self.start, self.wait_all = group.spawn, group.join
        else:
            from concurrent.futures import ThreadPoolExecutor

            executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="taipan-request")
            self.start, self.wait_all = executor.submit, executor.shutdown

    def serve(self) -> None:
        """Reads frames until Go closes the socket, then waits for the
        requests still running."""
        reader = self.reader
        inbox = reader.inbox
        try:
            while True:
                if not inbox:
                    if not reader.fill(block=True):
                        return
                    continue
                kind, flags, stream, payload = inbox.popleft()
                if kind == REQUEST:
                    self.start(self.run, stream, flags, payload)
                elif kind == PING:
                    with self.send_lock:
                        self.sock.sendall(frame(PONG, 0))
        finally:
            self.wait_all()

    def run(self, stream: int, flags: int, payload: memoryview) -> None:
        """Runs one request on a pool thread or in its greenlet."""
        try:
            runner = self.idle_runners.pop()
        except IndexError:
            runner = ThreadRunner(self)
        try:
            runner.handle(stream, flags, payload)
            runner.flush()
        except OSError:
            pass  # Go is gone; the main thread sees end of file and exits
        finally:
            self.reader.cancelled.discard(stream)
            runner.out.clear()
            self.idle_runners.append(runner)


class ThreadRunner(Worker):
    """Runs requests on one thread of a ThreadedWorker: the request handling
    of Worker, with writes under the shared lock and reading left to the
    main thread (which records CANCELs in the shared set)."""

    # Requests run side by side: each one's END after close() must come on
    # its own.
    one_at_a_time = False

    def __init__(self, owner: ThreadedWorker) -> None:
        self.sock = owner.sock
        self.app = owner.reader.app
        self.out = []
        self.cancelled = owner.reader.cancelled
        self.send_lock = owner.send_lock

    def fill(self, block: bool) -> bool:
        return True

    def flush(self) -> None:
        if self.out:
            try:
                with self.send_lock:
                    send_parts(self.sock, self.out)
            finally:
                self.out.clear()

    def send_fds(self, data: bytes, fd: int) -> None:
        with self.send_lock:
            socket.send_fds(self.sock, [data], [fd])



# --- ASGI ---------------------------------------------------------------------
#
# An ASGI app runs on one event loop per worker, many requests at once: Go
# sends a worker as many as --worker-connections allows. For an ASGI worker
# Go encodes the whole scope (docs/protocol.md), so the worker adds only the
# objects ("asgi", "state", "extensions"). Bodies are complete when they
# arrive (inline, or a file read in chunks). The frames of concurrent
# responses interleave, told apart by their stream ids; asyncio's transport
# keeps each write whole.
#
# A WebSocket is a long stream: Go does the handshake and the framing
# (RFC 6455) and relays whole messages; the worker turns them into
# websocket.* events.

ASGI_INFO = {"version": "3.0", "spec_version": "2.3"}

# asyncio costs a worker about 7 MB of memory, so only ASGI workers import it
# (serve_asgi binds this name); the code below runs only after that.
asyncio: Any = None
BODY_CHUNK = 64 * 1024
WRITE_HIGH_WATER = 1 << 20

# WebSocket flow control (docs/protocol.md): Go stops reading a client while
# WS_WINDOW bytes of its messages wait here untaken; each message counts its
# payload plus WS_MESSAGE_COST. The worker returns credit with WS_ACK.
WS_WINDOW = 1 << 20
WS_MESSAGE_COST = 16
CLOSE_CODE = struct.Struct("<H")


def is_asgi(app: Any) -> bool:
    """Tells an ASGI app (an async callable) from a WSGI one."""
    if inspect.iscoroutinefunction(app):
        return True
    call = getattr(app, "__call__", None)
    return inspect.iscoroutinefunction(call)


def scope_line(scope: dict) -> str:
    """The request line of a scope, for logs."""
    target = scope["raw_path"].decode("latin-1")
    if scope["query_string"]:
        target += "?" + scope["query_string"].decode("latin-1")
    return "%s %s" % (scope.get("method", "GET"), target)


STATUS_LINES = {s.value: "%d %s" % (s.value, s.phrase) for s in HTTPStatus}


def status_line(code: int) -> str:
    line = STATUS_LINES.get(code)
    if line is None:
        if not 100 <= code <= 999:
            raise ValueError("invalid HTTP status %r" % code)
        line = "%d Unknown" % code
    return line


def asgi_head_frame(stream: int, status: str, headers: Any, body: bytes, end: bool) -> bytes:
    """A HEAD frame for an ASGI response. The app's header list of byte
    pairs is marshalled as it is (Go takes bytes as they are); anything
    marshal cannot take (another iterable) is converted first."""
    try:
        head = marshal.dumps((status, headers), 2)
    except ValueError:
        head = marshal.dumps((status, [(bytes(k), bytes(v)) for k, v in headers]), 2)
    prefix = HEAD_PREFIX.pack(4 + len(head) + len(body), HEAD, FLAG_END if end else 0, 0, stream, len(head))
    return b"".join((prefix, head, body))


def latin1_headers(headers: Iterable[Tuple[bytes, bytes]]) -> Headers:
    return [(bytes(k).decode("latin-1"), bytes(v).decode("latin-1")) for k, v in headers]


class ClientDisconnected(OSError):
    """send() on a WebSocket whose client has gone (the ASGI spec asks for
    an OSError subclass)."""


class AsgiRequest:
    """One request's receive() and send(), and what it has sent."""

    # Initial state as class attributes: a request sets only what changes,
    # which saves a tenth of the worker's time on a small request.
    body_done = False
    gone = False  # the client went away
    # The receive() calls waiting for an event. There may be several: an
    # app may read from two tasks (Starlette's StreamingResponse listens for
    # http.disconnect while a generator polls is_disconnected()).
    waiters: Optional[List[asyncio.Future]] = None
    status: Optional[str] = None
    headers: Any = ()
    sent = False
    ended = False
    task: Optional[asyncio.Future] = None

    def __init__(self, conn: AsgiConnection, stream: int, scope: dict, body: Any) -> None:
        self.conn = conn
        self.stream = stream
        self.scope = scope
        self.body = body  # bytes, or an open file

    def cancel(self) -> None:
        """The client went away (CANCEL)."""
        self.gone = True
        self.wake()

    def wake(self) -> None:
        """Wakes every receive() waiting for an event; each looks again."""
        waiters = self.waiters
        if waiters:
            self.waiters = None
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def wait(self) -> None:
        """Waits for wake()."""
        waiter = self.conn.loop.create_future()
        if self.waiters is None:
            self.waiters = [waiter]
        else:
            self.waiters.append(waiter)
        try:
            await waiter
        finally:
            # Cancelled (a timeout, an anyio cancel scope): forget it.
            if self.waiters is not None and waiter in self.waiters:
                self.waiters.remove(waiter)

    async def receive(self) -> dict:
        if not self.body_done:
            if isinstance(self.body, (bytes, bytearray, memoryview)):
                self.body_done = True
                return {"type": "http.request", "body": bytes(self.body), "more_body": False}
            chunk = self.body.read(BODY_CHUNK)
            more = len(chunk) == BODY_CHUNK
            self.body_done = not more
            return {"type": "http.request", "body": chunk, "more_body": more}
        # After the body comes http.disconnect: when the client goes away,
        # or at once when the response has been sent (the ASGI spec), so
        # that an app waiting for a disconnect does not wait forever.
        while not (self.gone or self.ended):
            await self.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict) -> None:
        if self.gone:
            return  # the client is gone: nothing to do (the ASGI spec)
        kind = message["type"]
        if self.ended:
            # An app bug that would otherwise go unnoticed, as uvicorn says.
            raise RuntimeError("ASGI message %r sent after the response was complete" % kind)
        if kind == "http.response.start":
            self.start_response(message)
        elif kind == "http.response.body":
            self.send_body(message)
            if self.conn.paused:
                await self.conn.drain()
        else:
            raise RuntimeError("unsupported ASGI message %r in an http scope" % kind)

    def start_response(self, message: dict) -> None:
        if self.status is not None:
            raise RuntimeError("the response was started twice")
        self.status = status_line(int(message["status"]))
        self.headers = message.get("headers", ())

    def send_body(self, message: dict) -> None:
        """Queues a body frame; the caller waits for drain() if Go reads slowly."""
        if self.status is None:
            raise RuntimeError("a response body was sent before the response start")
        body = message.get("body", b"")
        if type(body) is not bytes:
            body = bytes(body)
        more = message.get("more_body", False)
        if not self.sent:
            self.conn.write(asgi_head_frame(self.stream, self.status, self.headers, body, not more))
            self.sent = True
        elif body or not more:
            self.conn.write(frame(BODY, self.stream, body, 0 if more else FLAG_END))
        if not more:
            self.ended = True
            if self.waiters:
                self.wake()  # receive() calls waiting for http.disconnect

    async def run(self, app: Any) -> None:
        conn = self.conn
        try:
            await app(self.scope, self.receive, self.send)
            if self.ended:
                pass  # the common case: the response is complete
            elif self.gone:
                # The client went away (CANCEL), and send() dropped what
                # followed; Go still waits for the stream to end.
                conn.write(frame(ABORT, self.stream, b"client disconnected"))
            elif not self.sent:
                conn.log(LOG_ERROR, "ASGI app returned without a response for %s" % scope_line(self.scope), self.stream)
                conn.write(head_frame(self.stream, *INTERNAL_ERROR, True))
            else:
                conn.write(frame(ABORT, self.stream, b"the app returned before its response was complete"))
        except (asyncio.CancelledError, GeneratorExit):
            # Cancelled for --timeout, or the coroutine is being closed: the
            # stream ends, and the exception goes on, as both must.
            conn.write(frame(ABORT, self.stream, b"cancelled"))
            raise
        except BaseException:
            # SystemExit and KeyboardInterrupt too, as uvicorn has it: raised
            # by one request's handler, they end that request, not the
            # worker with every request it runs.
            tb = traceback.format_exc()
            conn.log(LOG_ERROR, "Error handling request %s\n%s" % (scope_line(self.scope), tb), self.stream)
            if not self.sent:
                conn.write(head_frame(self.stream, *error_response(tb), True))
            elif not self.ended:
                conn.write(frame(ABORT, self.stream, b"app raised after the response head was sent"))
        finally:
            if not isinstance(self.body, (bytes, bytearray, memoryview)):
                self.body.close()
            del conn.requests[self.stream]


class AsgiWebSocket(AsgiRequest):
    """One WebSocket session: websocket.connect, then the client's messages
    as Go relays them; accept, messages and close go back to Go. Before
    accepting, the app may instead deny the handshake with an HTTP response
    (the websocket.http.response extension), which reuses AsgiRequest's."""

    CONNECTING, ACCEPTED, CLOSED, RESPONDING = range(4)

    def __init__(self, conn: AsgiConnection, stream: int, scope: dict) -> None:
        super().__init__(conn, stream, scope, b"")
        self.state = self.CONNECTING
        self.connect_sent = False
        self.inbox: Deque[Tuple[dict, int]] = deque()
        self.farewell: Optional[dict] = None  # websocket.disconnect, once the client left
        self.unacked = 0  # cost of messages received and not acknowledged to Go
        self.taken = 0  # of which the app has taken

    def deliver(self, payload: bytes, text: bool) -> None:
        """A message from the client (WS_RECEIVE)."""
        if text:
            message = {"type": "websocket.receive", "text": payload.decode("utf-8")}
        else:
            message = {"type": "websocket.receive", "bytes": payload}
        cost = len(payload) + WS_MESSAGE_COST
        self.unacked += cost
        self.inbox.append((message, cost))
        self.wake()

    def disconnect(self, code: int, reason: str = "") -> None:
        """The client closed or dropped (WS_DISCONNECT, or CANCEL)."""
        if self.farewell is None:
            self.farewell = {"type": "websocket.disconnect", "code": code, "reason": reason}
            self.wake()

    def cancel(self) -> None:
        self.disconnect(1006)

    def took(self, cost: int) -> None:
        """Returns credit to Go as the app takes messages: in quarter
        windows, or at once while Go waits for it (it stops reading at a
        full window, which this side sees as unacked reaching it)."""
        self.taken += cost
        if self.taken >= WS_WINDOW // 4 or self.unacked >= WS_WINDOW:
            self.conn.write(frame(WS_ACK, self.stream, U32.pack(self.taken)))
            self.unacked -= self.taken
            self.taken = 0

    async def receive(self) -> dict:
        if not self.connect_sent:
            self.connect_sent = True
            return {"type": "websocket.connect"}
        while True:
            if self.inbox:
                message, cost = self.inbox.popleft()
                self.took(cost)
                return message
            if self.farewell is not None:
                return self.farewell
            await self.wait()

    async def send(self, message: dict) -> None:
        kind = message["type"]
        state = self.state
        if kind == "websocket.send":
            if self.farewell is not None:
                raise ClientDisconnected("the WebSocket client has disconnected")
            if state != self.ACCEPTED:
                raise RuntimeError("websocket.send before websocket.accept or after websocket.close")
            text, data = message.get("text"), message.get("bytes")
            if (text is None) == (data is None):
                raise TypeError("websocket.send takes exactly one of text and bytes")
            if text is not None:
                self.conn.write(frame(WS_SEND, self.stream, text.encode("utf-8"), FLAG_TEXT))
            else:
                self.conn.write(frame(WS_SEND, self.stream, bytes(data)))
            await self.conn.drain()
        elif kind == "websocket.accept":
            if state != self.CONNECTING:
                raise RuntimeError("websocket.accept sent twice, or after a close or a response")
            subprotocol = message.get("subprotocol")
            headers = latin1_headers(message.get("headers", ()))
            self.conn.write(frame(WS_ACCEPT, self.stream, marshal.dumps((subprotocol, headers), 2)))
            self.state = self.ACCEPTED
        elif kind == "websocket.close":
            if state == self.CONNECTING:
                # Closing before accepting denies the handshake: HTTP 403.
                self.conn.write(head_frame(self.stream, "403 Forbidden", [("Content-Type", "text/plain; charset=utf-8")], b"Forbidden\n", True))
                self.sent = self.ended = True
                self.state = self.CLOSED
            elif state == self.ACCEPTED:
                code = int(message.get("code") or 1000)
                reason = (message.get("reason") or "").encode("utf-8")
                self.conn.write(frame(WS_CLOSE, self.stream, CLOSE_CODE.pack(code) + reason))
                self.state = self.CLOSED
        elif kind == "websocket.http.response.start":
            if state != self.CONNECTING:
                raise RuntimeError("websocket.http.response.start after the handshake was answered")
            self.state = self.RESPONDING
            self.start_response(message)
        elif kind == "websocket.http.response.body":
            if state != self.RESPONDING or self.ended:
                raise RuntimeError("websocket.http.response.body without websocket.http.response.start")
            self.send_body(message)
            await self.conn.drain()
        else:
            raise RuntimeError("unsupported ASGI message %r in a websocket scope" % kind)

    async def run(self, app: Any) -> None:
        conn, stream = self.conn, self.stream
        tb = ""
        try:
            await app(self.scope, self.receive, self.send)
            raised = False
        except (asyncio.CancelledError, GeneratorExit):
            conn.write(frame(ABORT, stream, b"cancelled"))
            del conn.requests[stream]
            raise
        except BaseException:  # SystemExit and KeyboardInterrupt too, as in AsgiRequest.run
            tb = traceback.format_exc()
            conn.log(LOG_ERROR, "Error in WebSocket %s\n%s" % (scope_line(self.scope), tb), stream)
            raised = True
        state = self.state
        if state == self.CONNECTING and self.farewell is not None and not raised:
            # The client left (CANCEL) before the handshake was answered:
            # there is no one to answer, and returning is no error.
            conn.write(frame(ABORT, stream, b"client disconnected"))
        elif state == self.CONNECTING:
            if not raised:
                conn.log(LOG_ERROR, "ASGI app returned without accepting or closing the WebSocket %s" % scope_line(self.scope), stream)
            conn.write(head_frame(stream, *(error_response(tb) if raised else INTERNAL_ERROR), True))
        elif state == self.RESPONDING and not self.ended:
            conn.write(frame(ABORT, stream, b"the app did not finish its response"))
        elif state == self.ACCEPTED:
            # Returning without a close closes normally; raising, with 1011.
            conn.write(frame(ABORT, stream, b"app raised") if raised else frame(WS_CLOSE, stream, CLOSE_CODE.pack(1000), FLAG_END))
        elif state == self.CLOSED and not self.ended:
            conn.write(frame(WS_CLOSE, stream, b"", FLAG_END))
        del conn.requests[stream]


class AsgiConnection:
    """The worker's end of the socket to Go, on the event loop (an asyncio
    protocol, by its methods: subclassing asyncio.Protocol would make every
    worker import asyncio)."""

    def __init__(self, app: Any, state: dict) -> None:
        self.app = app
        self.state = state
        self.transport: Any = None
        self.pending = b""
        self.requests: Dict[int, AsgiRequest] = {}
        self.loop = asyncio.get_event_loop()
        self.ending = self.loop.create_future()  # Go closed its end: time to exit
        self.closed = self.loop.create_future()
        self.paused = False  # Go reads slowly: writers wait in drain()
        self.writable = asyncio.Event()
        self.writable.set()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.end()
        self.closed.set_result(None)

    def eof_received(self) -> bool:
        # Keep this end open: lifespan shutdown may still log (serve_asgi
        # closes it).
        self.end()
        return True

    def end(self) -> None:
        """Go closed its end, or the socket failed: the clients of the
        requests still running are as good as gone."""
        for request in self.requests.values():
            request.cancel()
        if not self.ending.done():
            self.ending.set_result(None)

    async def close(self) -> None:
        """Closes the socket once what is queued for Go has been sent."""
        self.transport.close()
        await self.closed

    def pause_writing(self) -> None:
        self.paused = True
        self.writable.clear()

    def resume_writing(self) -> None:
        self.paused = False
        self.writable.set()

    def write(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(data)

    async def drain(self) -> None:
        """Waits while Go reads slowly (backpressure from a slow client)."""
        await self.writable.wait()

    def data_received(self, data: bytes) -> None:
        if self.pending:
            data = self.pending + data
        off, n = 0, len(data)
        while n - off >= HEADER_SIZE:
            length, kind, flags, _, stream = HEADER.unpack_from(data, off)
            end = off + HEADER_SIZE + length
            if end > n:
                break
            payload = data[off + HEADER_SIZE : end]
            off = end
            if kind == REQUEST:
                self.start(stream, flags, payload)
            elif kind == WS_RECEIVE:
                ws = self.requests.get(stream)
                if isinstance(ws, AsgiWebSocket):
                    ws.deliver(payload, bool(flags & FLAG_TEXT))
            elif kind == WS_DISCONNECT:
                ws = self.requests.get(stream)
                if isinstance(ws, AsgiWebSocket):
                    code = CLOSE_CODE.unpack_from(payload)[0] if len(payload) >= 2 else 1005
                    ws.disconnect(code, payload[2:].decode("utf-8", "replace"))
            elif kind == CANCEL:
                request = self.requests.get(stream)
                if request is not None:
                    request.cancel()
                    if flags & FLAG_CANCEL_TIMEOUT and request.task is not None:
                        self.cancel_for_timeout(request)
            elif kind == PING:
                self.write(frame(PONG, 0))
        self.pending = data[off:]

    def start(self, stream: int, flags: int, payload: bytes) -> None:
        scope_len = U32.unpack_from(payload)[0]
        scope = marshal.loads(payload[4 : 4 + scope_len])
        scope["asgi"] = ASGI_INFO.copy()  # the app may change it
        scope["state"] = self.state.copy()
        request: AsgiRequest
        if flags & FLAG_WEBSOCKET:
            scope["extensions"] = {"websocket.http.response": {}}
            request = AsgiWebSocket(self, stream, scope)
        elif flags & FLAG_BODY_FILE:
            request = AsgiRequest(self, stream, scope, open(scope.pop("taipan.body_path"), "rb"))
        else:
            request = AsgiRequest(self, stream, scope, payload[4 + scope_len :])
        self.requests[stream] = request
        request.task = self.loop.create_task(request.run(self.app))

    def cancel_for_timeout(self, request: AsgiRequest) -> None:
        """Logs where the request's task is waiting, then cancels it."""
        where = awaiting_stack(request.task.get_coro())
        self.log(LOG_ERROR, "Request timed out: %s; cancelling its task, which waits in (outermost first):\n%s" % (scope_line(request.scope), where), request.stream)
        request.task.cancel()

    def log(self, level: int, text: str, stream: int = 0) -> None:
        self.write(frame(LOG, stream, bytes([level]) + text.encode("utf-8", "replace")))


def awaiting_stack(coro: Any) -> str:
    """Follows a coroutine through what it awaits, down to where it waits:
    a task's own stack shows only its outermost frame."""
    lines = []
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            break
        lines.append('  File "%s", line %d, in %s' % (frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name))
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return "\n".join(lines) or "  (no frames)"


class Lifespan:
    """Runs the ASGI lifespan protocol: startup before READY, shutdown at exit.

    An app that raises or returns instead of answering the startup event is
    served without lifespan, as the ASGI spec asks (and uvicorn's --lifespan
    auto does); only lifespan.startup.failed stops taipan. An exception
    after the app took the startup event is a real failure in its startup
    code, so it is logged (warning) rather than passed over.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.state: dict = {}
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.outbox: asyncio.Queue = asyncio.Queue()
        self.task: Optional[asyncio.Future] = None
        self.supported = True
        self.warning: Optional[str] = None  # why startup was given up, for the log

    async def run(self) -> None:
        scope = {"type": "lifespan", "asgi": ASGI_INFO.copy(), "state": self.state}
        try:
            await self.app(scope, self.inbox.get, self.outbox.put)
        except BaseException as exc:
            await self.outbox.put({"type": "_raised", "exc": exc})
        else:
            # Returning without answering means the app has no lifespan
            # support (as uvicorn treats it); startup must not wait forever.
            await self.outbox.put({"type": "_returned"})

    async def startup(self) -> Optional[str]:
        """Returns why startup failed, or None."""
        self.task = asyncio.ensure_future(self.run())
        await self.inbox.put({"type": "lifespan.startup"})
        message = await self.outbox.get()
        if message["type"] == "lifespan.startup.complete":
            return None
        if message["type"] == "lifespan.startup.failed":
            return "ASGI lifespan startup failed: %s" % message.get("message", "")
        if message["type"] == "_raised":
            if self.inbox.empty():  # it had taken the startup event
                exc = message["exc"]
                self.warning = "ASGI lifespan startup raised %s; serving without lifespan (no shutdown event will follow)\n%s" % (
                    "".join(traceback.format_exception_only(type(exc), exc)).strip(),
                    app_traceback(exc),
                )
            self.supported = False
            return None
        if message["type"] == "_returned":
            self.supported = False
            return None
        return "ASGI lifespan: unexpected %r during startup" % message["type"]

    async def shutdown(self, log: Callable[[int, str], None]) -> None:
        """Runs lifespan shutdown; a failure goes to log(level, text)."""
        if not self.supported or self.task is None:
            return
        if not self.task.done():
            await self.inbox.put({"type": "lifespan.shutdown"})
        # A task that is done has left its end (_raised, _returned) here.
        try:
            message = await asyncio.wait_for(self.outbox.get(), timeout=30)
        except asyncio.TimeoutError:
            log(LOG_ERROR, "ASGI lifespan shutdown did not complete within 30s")
            return
        if message["type"] == "lifespan.shutdown.failed":
            log(LOG_ERROR, "ASGI lifespan shutdown failed: %s" % message.get("message", ""))
        elif message["type"] == "_raised":
            exc = message["exc"]
            log(LOG_ERROR, "ASGI lifespan shutdown failed: the app raised\n%s" % app_traceback(exc))


def new_event_loop(name: str) -> asyncio.AbstractEventLoop:
    """uvloop when asked for or, with "auto", when it can be imported."""
    if name in ("auto", "uvloop"):
        try:
            import uvloop  # type: ignore

            return uvloop.new_event_loop()
        except ImportError:
            if name == "uvloop":
                raise
    return asyncio.new_event_loop()


def serve_asgi(sock: socket.socket, app: Any, loop_name: str) -> int:
    """Runs lifespan startup, reports READY and serves until Go closes the socket."""
    global asyncio
    import asyncio
    try:
        loop = new_event_loop(loop_name)
    except ImportError:
        sock.sendall(frame(BOOT_ERROR, 0, b"--loop uvloop: uvloop cannot be imported (Debian: apt-get install python3-uvloop)"))
        return 1
    asyncio.set_event_loop(loop)
    lifespan = Lifespan(app)
    problem = loop.run_until_complete(lifespan.startup())
    if problem is not None:
        sock.sendall(frame(BOOT_ERROR, 0, problem.encode("utf-8", "replace")))
        return 1
    ready = {"protocol": PROTOCOL, "pid": os.getpid(), "python": "%d.%d.%d" % sys.version_info[:3], "interface": "asgi"}
    sock.sendall(frame(READY, 0, json.dumps(ready).encode()))
    sock.setblocking(False)

    async def serve() -> None:
        _, conn = await loop.create_unix_connection(lambda: AsgiConnection(app, lifespan.state), sock=sock)
        if lifespan.warning is not None:
            conn.log(LOG_WARNING, lifespan.warning)
        await conn.ending
        await lifespan.shutdown(conn.log)
        await conn.close()

    loop.run_until_complete(serve())
    return 0


def serve_app(sock: socket.socket, app: WSGIApp, threads: int = 1, interface: str = "wsgi", loop: str = "auto", greenlets: bool = False) -> int:
    """Reports READY and serves requests until Go closes the socket;
    greenlets: -k gevent (the standard library is already patched)."""
    # A worker serves batches; waking it must not preempt the Go edge, which
    # would otherwise be interrupted mid-burst and hand over smaller batches.
    # SCHED_BATCH (Linux) turns off wake-up preemption for this process only;
    # on a loaded core it measured +14% requests per second.
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except (AttributeError, OSError):
        pass
    if interface == "asgi" or (interface == "auto" and is_asgi(app)):
        return serve_asgi(sock, app, loop)
    ready = {"protocol": PROTOCOL, "pid": os.getpid(), "python": "%d.%d.%d" % sys.version_info[:3], "interface": "wsgi"}
    sock.sendall(frame(READY, 0, json.dumps(ready).encode()))
    try:
        if threads > 1 or greenlets:
            ThreadedWorker(sock, app, threads, greenlets).serve()
        else:
            Worker(sock, app).serve()
    except (BrokenPipeError, ConnectionResetError):
        pass
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="taipan worker (started by taipan, not by hand)")
    parser.add_argument("--fd", type=int, default=3)
    parser.add_argument("--app", required=True)
    parser.add_argument("--protocol", type=int, default=PROTOCOL)
    parser.add_argument("--pythonpath", action="append", default=[])
    parser.add_argument("--traceback-fd", type=int, default=-1)
    parser.add_argument("--post-fork", default="")
    parser.add_argument("--fork-server", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--worker-class", choices=("sync", "gevent"), default="sync")
    parser.add_argument("--interface", choices=("auto", "wsgi", "asgi"), default="auto")
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    args = parser.parse_args(argv)

    if args.fork_server:
        return fork_server(args)

    if args.worker_class == "gevent":
        # Before the app is imported, so that its blocking I/O yields.
        problem = patch_gevent()
        if problem is not None:
            socket.socket(fileno=args.fd).sendall(frame(BOOT_ERROR, 0, problem.encode()))
            return 1
    sock = socket.socket(fileno=args.fd)
    problem = startup_error(args.protocol)
    if problem is not None:
        sock.sendall(frame(BOOT_ERROR, 0, problem.encode()))
        return 1

    setup_path(args)

    if args.traceback_fd >= 0:
        # On SIGUSR1 (a request past --timeout, a missed heartbeat) Go gets
        # the stack of every thread, written from C by faulthandler, so it
        # works even while Python code is stuck holding the GIL.
        traceback_file = os.fdopen(args.traceback_fd, "w")
        faulthandler.register(signal.SIGUSR1, file=traceback_file, all_threads=True)
    try:
        app = load_app(args.app)
    except BaseException as exc:
        text = "Failed to load the app %r:\n%s" % (args.app, app_traceback(exc))
        sock.sendall(frame(BOOT_ERROR, 0, text.encode("utf-8", "replace")))
        return 1
    if args.post_fork and not post_fork(sock, args.post_fork):
        return 1

    return serve_app(sock, app, args.threads, args.interface, args.loop, args.worker_class == "gevent")


# --- the fork server (--preload) ----------------------------------------------
#
# With --preload Go starts one process with --fork-server: it imports the app
# once and forks every worker from itself, so the workers share the app's
# memory copy-on-write. Go keeps supervising each worker as if it had started
# it: it makes each worker's socketpair and pipes and passes the child ends
# over the control socket (fd 3, AF_UNIX SOCK_SEQPACKET). Every message is one
# JSON object; file descriptors travel as SCM_RIGHTS.
#
#   server -> Go  {"ready": 1, "pid": P, "python": "3.11.2"}   app imported
#                 {"boot_error": TEXT}                          import failed
#   Go -> server  {"spawn": ID} + fds [socket, traceback pipe, output pipe]
#   server -> Go  {"spawned": ID, "pid": P} + [pidfd of P] when the kernel has them
#                 {"spawn_error": ID, "error": TEXT}
#                 {"exited": P, "status": WAIT_STATUS}          the worker was reaped
#
# Workers are the fork server's children, so it reaps them and reports each
# exit; "spawned" always comes before the "exited" of the same pid. The
# pidfd lets Go signal a worker without risk of hitting a reused pid. End of
# file on the control socket tells the server to kill what is left and exit.
# A forked worker dies with the fork server (PR_SET_PDEATHSIG).

CONTROL_MAX = 64 * 1024  # the largest control message
BOOT_ERROR_MAX = 24 * 1024  # characters; a SEQPACKET message must fit the socket buffer


class ForkServer:
    """Forks workers from a process that has already imported the app."""

    def __init__(self, ctrl: socket.socket, app: WSGIApp, args: argparse.Namespace) -> None:
        self.ctrl = ctrl
        self.app = app
        self.post_fork = args.post_fork
        self.threads = args.threads
        self.interface = args.interface
        self.loop = args.loop
        self.pid = os.getpid()
        self.children: Set[int] = set()
        self.pdeathsig = pdeathsig_setter()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)

    def send(self, msg: dict, fds: Sequence[int] = ()) -> None:
        data = json.dumps(msg).encode()
        if fds:
            socket.send_fds(self.ctrl, [data], list(fds))
        else:
            self.ctrl.send(data)

    def run(self) -> int:
        """Serves spawn requests until Go closes the control socket."""
        # SIGCHLD only wakes the poll below; the children are reaped there.
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        signal.set_wakeup_fd(self.wake_w)
        poller = select.poll()
        poller.register(self.ctrl.fileno(), select.POLLIN)
        poller.register(self.wake_r, select.POLLIN)
        try:
            while True:
                self.reap()
                for fd, _ in poller.poll():
                    if fd == self.wake_r:
                        try:
                            while os.read(self.wake_r, 512):
                                pass
                        except BlockingIOError:
                            pass
                    elif not self.handle():
                        return 0
        except (BrokenPipeError, ConnectionResetError):
            return 0
        finally:
            self.stop_children()

    def handle(self) -> bool:
        """Handles one message from Go; False at end of file."""
        msg, fds, _, _ = socket.recv_fds(self.ctrl, CONTROL_MAX, 8, socket.MSG_CMSG_CLOEXEC)
        if not msg:
            for fd in fds:
                os.close(fd)
            return False
        try:
            request = json.loads(msg)
            wid = int(request["spawn"])
        except (ValueError, KeyError, TypeError):
            for fd in fds:
                os.close(fd)
            print("taipan fork server: bad control message %r" % msg[:200], file=sys.stderr)
            return True
        if len(fds) != 3:
            for fd in fds:
                os.close(fd)
            self.send({"spawn_error": wid, "error": "want 3 file descriptors, got %d" % len(fds)})
            return True
        self.spawn(wid, fds)
        return True

    def spawn(self, wid: int, fds: List[int]) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError as exc:
            for fd in fds:
                os.close(fd)
            self.send({"spawn_error": wid, "error": "fork: %s" % exc})
            return
        if pid == 0:
            self.child(fds)  # never returns
        for fd in fds:
            os.close(fd)
        self.children.add(pid)
        # The child is not reaped before this message is sent, so the pidfd
        # names it and no other process.
        pidfd = -1
        try:
            pidfd = os.pidfd_open(pid)  # type: ignore[attr-defined]
        except (AttributeError, OSError):
            pass
        try:
            self.send({"spawned": wid, "pid": pid}, [pidfd] if pidfd >= 0 else [])
        finally:
            if pidfd >= 0:
                os.close(pidfd)

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            self.children.discard(pid)
            self.send({"exited": pid, "status": status})

    def stop_children(self) -> None:
        """Kills and reaps the workers still running (Go is gone or closing)."""
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        for pid in list(self.children):
            try:
                _, status = os.waitpid(pid, 0)
            except ChildProcessError:
                continue
            try:
                self.send({"exited": pid, "status": status})
            except OSError:
                pass
        self.children.clear()

    def child(self, fds: List[int]) -> None:
        """Runs in the forked worker: becomes an ordinary worker on fds 3 and 4."""
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            if self.pdeathsig is not None:
                self.pdeathsig()
                if os.getppid() != self.pid:  # the server died before prctl
                    os._exit(1)
            os.close(self.wake_r)
            os.close(self.wake_w)
            os.close(self.ctrl.detach())
            # Out of the way of the target numbers first, then into place.
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in fds]
            for fd in fds:
                os.close(fd)
            sock_fd, tb_fd, out_fd = high
            os.dup2(sock_fd, 3)
            os.dup2(tb_fd, 4)
            os.dup2(out_fd, 1)
            os.dup2(out_fd, 2)
            for fd in high:
                os.close(fd)
            faulthandler.register(signal.SIGUSR1, file=os.fdopen(4, "w"), all_threads=True)
            sock = socket.socket(fileno=3)
            if self.post_fork and not post_fork(sock, self.post_fork):
                return
            code = serve_app(sock, self.app, self.threads, self.interface, self.loop)
        except BaseException:
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)


def pdeathsig_setter() -> Optional[Callable[[], None]]:
    """Returns a function that makes the calling process get SIGKILL when its
    parent exits (Linux prctl PR_SET_PDEATHSIG), or None where that is not
    available."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (ImportError, OSError, AttributeError):
        return None

    def set_pdeathsig() -> None:
        prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG

    return set_pdeathsig


def fork_server(args: argparse.Namespace) -> int:
    """The --fork-server mode: import the app, then fork workers on request."""
    ctrl = socket.socket(fileno=args.fd)

    def fail(text: str) -> int:
        if len(text) > BOOT_ERROR_MAX:
            text = text[: BOOT_ERROR_MAX // 2] + "\n[...]\n" + text[-BOOT_ERROR_MAX // 2 :]
        ctrl.send(json.dumps({"boot_error": text}).encode())
        return 1

    problem = startup_error(args.protocol)
    if problem is not None:
        return fail(problem)
    # Keep fd 4 (a worker's traceback pipe) out of the app's hands, so that a
    # file the app opens at import is still open in the forked workers.
    try:
        os.fstat(4)
    except OSError:
        null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        if null != 4:
            os.dup2(null, 4, inheritable=False)
            os.close(null)
    setup_path(args)
    try:
        app = load_app(args.app)
    except BaseException as exc:
        return fail("Failed to load the app %r:\n%s" % (args.app, app_traceback(exc)))
    # Objects that exist now are shared with every worker; freezing them
    # keeps the collector from writing to them (and copying their pages).
    gc.collect()
    gc.freeze()
    server = ForkServer(ctrl, app, args)
    server.send({"ready": PROTOCOL, "pid": os.getpid(), "python": "%d.%d.%d" % sys.version_info[:3]})
    return server.run()


if __name__ == "__main__":
    sys.exit(main())
