#!/usr/bin/python3
"""Load, sampler and report for bench/soak (Python 3 standard library only).

Subcommands:
  run --port P --metrics-port M --pid PID --tmp-dir DIR --duration S
      [--workers N] [--reload-interval S] [--sample-interval S]
      [--body-memory-limit BYTES] [--timeout S] --out DIR
      Drive the mixed load below against 127.0.0.1:P for S seconds, send
      SIGHUP to PID every --reload-interval seconds, and sample the server
      (PID and its taipan_worker.py children) every --sample-interval
      seconds, plus once before the load and once after it, when the
      connections have closed. Writes DIR/load.json and DIR/samples.json.
  report WORK MD SVG
      Read WORK/{meta.json,load.json,samples.json} and write the markdown
      report MD and the RSS chart SVG.

The load (each client thread is paced: at most RATE requests a second, so a
run of S seconds makes at most about S x the sum of the rates):

  kind              threads x rate   what
  keepalive         4 x 20/s         GET /hello and /json?n=I on one kept-alive connection
  newconn           2 x 10/s         the same, a new connection per request (Connection: close)
  upload            2 x 2.5/s        POST /upload, 1 KiB..4 MiB (log-uniform), sha256 echoed back;
                                     one in 5 is an upload_abort instead
  upload_abort      (from upload)    POST /upload with Content-Length 512 KiB..4 MiB, the client
                                     sends 10..90% of the body and closes (FIN or RST)
  download          1 x 2/s          GET /download?mib=1..8 on a kept-alive connection,
                                     length and sha256 checked; one in 4 is a download_abandon
  download_abandon  (from download)  GET /download?mib=16 on a new connection, the client reads
                                     64 KiB..8 MiB of it and closes (FIN or RST)
  error             1 x 5/s          GET /error: 500 expected
  notfound          1 x 5/s          GET /missing/N: 404 expected
  slow              1 x 2/s          GET /slow?ms=250

A request fails when it gets anything but the expected status and body
(or a connection error), except for the two kinds the client aborts itself:
those fail only if their connection could not be made or the server
answered something other than the download's 200.
"""

import argparse
import hashlib
import http.client
import json
import math
import os
import random
import re
import signal
import socket
import statistics
import struct
import sys
import threading
import time
from html import escape
from typing import Callable, Dict, List, Optional, Tuple

PATTERN = bytes(range(256)) * 256  # the app's download pattern, 64 KiB
MIB = 1 << 20
HELLO = b"Hello, World!"

# kind -> description, in report order.
KINDS = {
    "keepalive": "GET /hello, /json on kept-alive connections",
    "newconn": "GET /hello, /json, a new connection each (Connection: close)",
    "upload": "POST /upload 1 KiB–4 MiB, sha256 echoed",
    "upload_abort": "POST /upload, client closes mid-body",
    "download": "GET /download 1–8 MiB streamed, length + sha256",
    "download_abandon": "GET /download 16 MiB, client closes mid-way",
    "error": "GET /error (app raises): 500",
    "notfound": "GET /missing/N: 404",
    "slow": "GET /slow?ms=250",
}
ABORTED_KINDS = ("upload_abort", "download_abandon")

# (thread function name, threads, requests a second per thread)
PLAN = [("keepalive", 4, 20.0), ("newconn", 2, 10.0), ("upload", 2, 2.5),
        ("download", 1, 2.0), ("error", 1, 5.0), ("notfound", 1, 5.0), ("slow", 1, 2.0)]
UPLOAD_ABORT_SHARE = 0.2
DOWNLOAD_ABANDON_SHARE = 0.25
MAX_FAILURE_SAMPLES = 50


class Mismatch(Exception):
    """A response other than the expected one."""


# --- tallies ---------------------------------------------------------------------

class Tally:
    """Per-kind counts of requests tried, answered as expected, failed and
    aborted by the client, shared by every client thread."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.lock = threading.Lock()
        self.kinds = {k: {"tried": 0, "ok": 0, "failed": 0, "answered_failed": 0, "aborted": 0, "spilled": 0,
                          "bytes_up": 0, "bytes_down": 0, "lat": []} for k in KINDS}
        self.failures: List[dict] = []
        self.failure_counts: Dict[str, int] = {}

    def ok(self, kind: str, t0: float, up: int = 0, down: int = 0) -> None:
        with self.lock:
            k = self.kinds[kind]
            k["tried"] += 1
            k["ok"] += 1
            k["bytes_up"] += up
            k["bytes_down"] += down
            k["lat"].append(time.monotonic() - t0)

    def aborted(self, kind: str, up: int = 0, down: int = 0) -> None:
        with self.lock:
            k = self.kinds[kind]
            k["tried"] += 1
            k["aborted"] += 1
            k["bytes_up"] += up
            k["bytes_down"] += down

    def spilled(self, kind: str) -> None:
        with self.lock:
            self.kinds[kind]["spilled"] += 1

    def fail(self, kind: str, what: str, answered: bool) -> None:
        """Count a failure; answered: the server did send a response (the
        wrong one)."""
        with self.lock:
            self.kinds[kind]["tried"] += 1
            self.kinds[kind]["failed"] += 1
            self.kinds[kind]["answered_failed"] += answered
            # Sizes vary from one failure to the next; the cause (a status) does not.
            key = f"{kind}: {re.sub(r'[0-9]+(?= bytes)|[0-9]{4,}', 'N', what)}"
            self.failure_counts[key] = self.failure_counts.get(key, 0) + 1
            if len(self.failures) < MAX_FAILURE_SAMPLES:
                self.failures.append({"t": round(time.monotonic() - self.start, 3),
                                      "kind": kind, "what": what})

    def summary(self) -> dict:
        out = {}
        with self.lock:
            for name, k in self.kinds.items():
                lat = sorted(k["lat"])
                row = {key: v for key, v in k.items() if key != "lat"}
                row["p50_ms"] = pct(lat, 50) * 1000 if lat else None
                row["p99_ms"] = pct(lat, 99) * 1000 if lat else None
                out[name] = row
        return out


def pct(sorted_values: List[float], p: float) -> float:
    i = min(len(sorted_values) - 1, max(0, math.ceil(p / 100 * len(sorted_values)) - 1))
    return sorted_values[i]


def describe(e: BaseException) -> str:
    """A short description of an exception."""
    return f"{type(e).__name__}: {e}"[:160]


# --- clients ---------------------------------------------------------------------

class Pacer:
    """Spaces one thread's requests 1/rate seconds apart (starting at a random
    phase) and says when the run is over. A thread that falls behind does not
    burst to catch up."""

    def __init__(self, rate: float, deadline: float) -> None:
        self.interval = 1.0 / rate
        self.deadline = deadline
        self.next = time.monotonic() + random.uniform(0, self.interval)

    def wait(self) -> bool:
        now = time.monotonic()
        if self.next > now:
            time.sleep(max(0.0, min(self.next, self.deadline) - now))
        now = time.monotonic()
        if now >= self.deadline:
            return False
        self.next = max(self.next + self.interval, now)
        return True


class Conn:
    """One kept-alive http.client connection, reopened after an error."""

    def __init__(self, port: int, timeout: float) -> None:
        self.port = port
        self.timeout = timeout
        self.conn: Optional[http.client.HTTPConnection] = None

    def request(self, method: str, path: str, body: Optional[bytes] = None,
                headers: Optional[Dict[str, str]] = None) -> Tuple[int, http.client.HTTPMessage, bytes]:
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            self.conn.request(method, path, body=body, headers=headers or {})
            resp = self.conn.getresponse()
            data = resp.read()
            return resp.status, resp.headers, data
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def expect(status: int, want: int, body: bytes, check: Optional[Callable[[bytes], bool]] = None) -> None:
    if status != want:
        raise Mismatch(f"status {status} (want {want})")
    if check is not None and not check(body):
        raise Mismatch(f"unexpected body ({len(body)} bytes)")


def json_is(body: bytes, want: object) -> bool:
    """True if body is JSON equal to want (False if it is not JSON)."""
    try:
        return json.loads(body) == want
    except ValueError:
        return False


def close_abruptly(sock: Optional[socket.socket], reset: bool) -> None:
    """Close sock, with an RST instead of a FIN when reset is true."""
    if sock is None:
        return
    if reset:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    sock.close()


class Load:
    """The client threads of one run."""

    def __init__(self, port: int, timeout: float, deadline: float, limit: int, tally: Tally) -> None:
        self.port = port
        self.timeout = timeout
        self.deadline = deadline
        self.limit = limit  # --body-memory-limit: bodies above it spill to disk
        self.tally = tally
        self.blob = os.urandom(4 * MIB + 4096)  # uploads are random slices of it
        self.sha_of_mib: Dict[int, str] = {}
        for mib in range(1, 9):
            h = hashlib.sha256()
            for _ in range(mib * 16):
                h.update(PATTERN)
            self.sha_of_mib[mib] = h.hexdigest()

    def attempt(self, kind: str, fn: Callable[[], None]) -> None:
        """Run one request; any exception is a failure of kind."""
        try:
            fn()
        except Mismatch as e:
            self.tally.fail(kind, str(e), answered=True)
        except Exception as e:  # noqa: BLE001 - count it, keep the thread going
            self.tally.fail(kind, describe(e), answered=False)

    # Each thread function runs until the deadline.

    def keepalive(self, rate: float) -> None:
        self._simple("keepalive", rate, keep=True)

    def newconn(self, rate: float) -> None:
        self._simple("newconn", rate, keep=False)

    def _simple(self, kind: str, rate: float, keep: bool) -> None:
        conn, pacer, i = Conn(self.port, self.timeout), Pacer(rate, self.deadline), 0
        headers = {} if keep else {"Connection": "close"}
        while pacer.wait():
            i += 1
            n = random.getrandbits(40)

            def one(i: int = i, n: int = n) -> None:
                t0 = time.monotonic()
                if i % 2:
                    status, _, body = conn.request("GET", "/hello", headers=headers)
                    expect(status, 200, body, lambda b: b == HELLO)
                else:
                    status, _, body = conn.request("GET", f"/json?n={n}", headers=headers)
                    expect(status, 200, body, lambda b: json_is(b, {"hello": "world", "n": n}))
                self.tally.ok(kind, t0, down=len(body))
            self.attempt(kind, one)
            if not keep:
                conn.close()
        conn.close()

    def upload(self, rate: float) -> None:
        conn, pacer = Conn(self.port, self.timeout), Pacer(rate, self.deadline)
        while pacer.wait():
            if random.random() < UPLOAD_ABORT_SHARE:
                self.attempt("upload_abort", self._upload_abort)
                continue
            size = int(math.exp(random.uniform(math.log(1024), math.log(4 * MIB))))
            off = random.randrange(0, len(self.blob) - size)
            body = self.blob[off:off + size]

            def one(body: bytes = body) -> None:
                t0 = time.monotonic()
                status, _, resp = conn.request("POST", "/upload", body=body,
                                               headers={"Content-Type": "application/octet-stream"})
                want = hashlib.sha256(body).hexdigest().encode()
                expect(status, 200, resp, lambda b: b == want)
                self.tally.ok("upload", t0, up=len(body), down=len(resp))
                if len(body) > self.limit:
                    self.tally.spilled("upload")
            self.attempt("upload", one)
        conn.close()

    def _upload_abort(self) -> None:
        size = random.randrange(512 * 1024, 4 * MIB)
        sent = int(size * random.uniform(0.1, 0.9))
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
        try:
            head = (f"POST /upload HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                    f"Content-Type: application/octet-stream\r\nContent-Length: {size}\r\n\r\n")
            sock.sendall(head.encode() + self.blob[:sent])
            # Let the server take in (and spill) what was sent before leaving.
            time.sleep(random.uniform(0, 0.2))
        finally:
            close_abruptly(sock, reset=random.random() < 0.5)
        self.tally.aborted("upload_abort", up=sent)
        if sent > self.limit:
            self.tally.spilled("upload_abort")

    def download(self, rate: float) -> None:
        conn, pacer = Conn(self.port, self.timeout), Pacer(rate, self.deadline)
        while pacer.wait():
            if random.random() < DOWNLOAD_ABANDON_SHARE:
                self.attempt("download_abandon", self._download_abandon)
                continue
            mib = random.randint(1, 8)

            def one(mib: int = mib) -> None:
                t0 = time.monotonic()
                status, _, body = conn.request("GET", f"/download?mib={mib}")
                if status == 200 and len(body) != mib * MIB:
                    raise Mismatch(f"short download: {len(body)} bytes, want {mib * MIB} bytes")
                expect(status, 200, body, lambda b: hashlib.sha256(b).hexdigest() == self.sha_of_mib[mib])
                self.tally.ok("download", t0, down=len(body))
            self.attempt("download", one)
        conn.close()

    def _download_abandon(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        want = random.randint(64 * 1024, 8 * MIB)
        got = 0
        try:
            conn.request("GET", "/download?mib=16")
            resp = conn.getresponse()
            if resp.status != 200:
                raise Mismatch(f"status {resp.status} (want 200)")
            while got < want:
                data = resp.read(min(65536, want - got))
                if not data:
                    raise Mismatch(f"download ended early: {got} bytes")
                got += len(data)
        finally:
            close_abruptly(conn.sock, reset=random.random() < 0.5)
            conn.close()
        self.tally.aborted("download_abandon", down=got)

    def error(self, rate: float) -> None:
        self._status("error", rate, lambda i: "/error", 500, None)

    def notfound(self, rate: float) -> None:
        self._status("notfound", rate, lambda i: f"/missing/{i}", 404, lambda b: b == b"not found")

    def slow(self, rate: float) -> None:
        self._status("slow", rate, lambda i: "/slow?ms=250", 200, lambda b: b == b"slept 250 ms")

    def _status(self, kind: str, rate: float, path: Callable[[int], str], want: int,
                check: Optional[Callable[[bytes], bool]]) -> None:
        conn, pacer, i = Conn(self.port, self.timeout), Pacer(rate, self.deadline), 0
        while pacer.wait():
            i += 1

            def one(p: str = path(i)) -> None:
                t0 = time.monotonic()
                status, _, body = conn.request("GET", p)
                expect(status, want, body, check)
                self.tally.ok(kind, t0, down=len(body))
            self.attempt(kind, one)
        conn.close()


# --- sampling --------------------------------------------------------------------

def read_status(pid: int) -> Dict[str, int]:
    """VmRSS (kB) and Threads from /proc/PID/status; empty if gone."""
    out = {}
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    out["rss_kb"] = int(line.split()[1])
                elif line.startswith("Threads:"):
                    out["threads"] = int(line.split()[1])
    except OSError:
        pass
    return out


def fd_count(pid: int) -> Optional[int]:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def fd_kinds(pid: int) -> Dict[str, int]:
    """What PID's descriptors point at, by kind (socket, pipe, anon_inode:…,
    or the file path)."""
    kinds: Dict[str, int] = {}
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return kinds
    for name in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        kind = re.sub(r":\[\d+\]$", "", target)
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def worker_pids(parent: int) -> List[int]:
    """The children of parent whose command line runs taipan_worker.py."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="utf-8", errors="replace") as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            if ppid != parent:
                continue
            with open(f"/proc/{name}/cmdline", "rb") as f:
                if b"taipan_worker.py" in f.read():
                    pids.append(int(name))
        except (OSError, ValueError):
            continue
    return sorted(pids)


def established(port: int) -> int:
    """Server-side ESTABLISHED TCP connections on local port (IPv4 and 6)."""
    n = 0
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path, encoding="ascii") as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] == "01" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                        n += 1
        except OSError:
            continue
    return n


def scrape(port: int, timeout: float = 5.0) -> Dict[str, Dict[str, float]]:
    """taipan's /metrics as {name: {labels: value}}; empty on error."""
    out: Dict[str, Dict[str, float]] = {}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode("utf-8", "replace")
    except (OSError, http.client.HTTPException):
        return out
    finally:
        conn.close()
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$", line)
        if m:
            try:
                out.setdefault(m.group(1), {})[m.group(2) or ""] = float(m.group(3))
            except ValueError:
                pass
    return out


def metric(m: Dict[str, Dict[str, float]], name: str) -> Optional[float]:
    values = m.get(name)
    return sum(values.values()) if values else None


class Sampler:
    """Samples the Go process, its workers, the tmp dir and the connections."""

    def __init__(self, pid: int, port: int, metrics_port: int, tmp_dir: str, start: float) -> None:
        self.pid = pid
        self.port = port
        self.metrics_port = metrics_port
        self.tmp_dir = tmp_dir
        self.start = start
        self.samples: List[dict] = []

    def take(self, phase: str) -> dict:
        # Descriptors before the scrape, whose connection would count.
        fds = fd_count(self.pid)
        st = read_status(self.pid)
        workers = {}
        for w in worker_pids(self.pid):
            ws = read_status(w)
            if ws:
                workers[str(w)] = {"rss_kb": ws.get("rss_kb", 0), "fds": fd_count(w)}
        try:
            tmp = len(os.listdir(self.tmp_dir))
        except OSError:
            tmp = None
        conns = established(self.port)
        m = scrape(self.metrics_port)
        with open("/proc/loadavg", encoding="ascii") as f:
            load1 = float(f.read().split()[0])
        s = {
            "t": round(time.monotonic() - self.start, 2),
            "phase": phase,
            "go_rss_kb": st.get("rss_kb"),
            "go_threads": st.get("threads"),
            "go_fds": fds,
            "workers": workers,
            "worker_rss_kb": sum(w["rss_kb"] for w in workers.values()),
            "tmp_files": tmp,
            "conns": conns,
            "goroutines": metric(m, "go_goroutines"),
            "heap_inuse_kb": (metric(m, "go_memstats_heap_inuse_bytes") or 0) / 1024 or None,
            "loadavg1": load1,
        }
        self.samples.append(s)
        return s

    def loop(self, interval: float, deadline: float) -> None:
        nxt = self.start
        while True:
            now = time.monotonic()
            if nxt > now:
                time.sleep(nxt - now)
            if time.monotonic() >= deadline:
                return
            self.take("load")
            nxt += interval

    def settle(self, workers: int, wait: float) -> dict:
        """Wait (at most wait seconds) for the client connections to close
        and the pool to be back to its size, then sample ("idle")."""
        end = time.monotonic() + wait
        while time.monotonic() < end:
            if established(self.port) == 0 and len(worker_pids(self.pid)) == workers:
                break
            time.sleep(0.25)
        return {"waited_s": round(wait - max(0.0, end - time.monotonic()), 2)}


def reloader(pid: int, interval: float, start: float, deadline: float, sent: List[float]) -> None:
    """SIGHUP pid every interval seconds until the deadline."""
    k = 1
    while True:
        at = start + k * interval
        if at >= deadline:
            return
        time.sleep(max(0.0, at - time.monotonic()))
        try:
            os.kill(pid, signal.SIGHUP)
        except OSError:
            return
        sent.append(round(time.monotonic() - start, 2))
        k += 1


def interesting_metrics(m: Dict[str, Dict[str, float]]) -> dict:
    keep = ("taipan_http_requests_total", "taipan_worker_restarts_total", "taipan_reloads_total",
            "taipan_workers_started_total", "taipan_worker_boot_failures_total")
    return {k: m.get(k, {}) for k in keep}


def run(args: argparse.Namespace) -> int:
    os.makedirs(args.out, exist_ok=True)
    start = time.monotonic()
    sampler = Sampler(args.pid, args.port, args.metrics_port, args.tmp_dir, start)
    sampler.settle(args.workers, 10)
    fds_before = fd_kinds(args.pid)  # before take(), whose /metrics scrape opens a connection
    before = sampler.take("idle_before")
    metrics_before = interesting_metrics(scrape(args.metrics_port))

    start = time.monotonic()
    sampler.start = start
    deadline = start + args.duration
    tally = Tally(start)
    load = Load(args.port, args.timeout, deadline, args.body_memory_limit, tally)
    threads = []
    for name, n, rate in PLAN:
        for _ in range(n):
            threads.append(threading.Thread(target=getattr(load, name), args=(rate,), daemon=True,
                                            name=name))
    reloads: List[float] = []
    threads.append(threading.Thread(target=reloader, daemon=True, name="reloader",
                                    args=(args.pid, args.reload_interval, start, deadline, reloads)))
    threads.append(threading.Thread(target=sampler.loop, daemon=True, name="sampler",
                                    args=(args.sample_interval, deadline)))
    print(f"soak: load running for {args.duration:.0f} s", file=sys.stderr, flush=True)
    for t in threads:
        t.start()
    # Progress once a minute.
    while time.monotonic() < deadline:
        time.sleep(min(60.0, max(0.0, deadline - time.monotonic())))
        s = sampler.samples[-1] if sampler.samples else {}
        done = tally.summary()
        print(f"soak: t={time.monotonic() - start:.0f}s requests={sum(k['tried'] for k in done.values())} "
              f"failed={sum(k['failed'] for k in done.values())} go_rss={s.get('go_rss_kb')}kB "
              f"workers_rss={s.get('worker_rss_kb')}kB fds={s.get('go_fds')} tmp={s.get('tmp_files')}",
              file=sys.stderr, flush=True)
    # Bounded: every thread stops at the deadline plus at most one request
    # timeout; one still running after that is reported and left (daemon).
    stuck = []
    for t in threads:
        t.join(max(0.0, deadline + args.timeout + 5 - time.monotonic()))
        if t.is_alive():
            stuck.append(t.name)
    load_end = time.monotonic() - start

    settle = sampler.settle(args.workers, args.settle)
    fds_after = fd_kinds(args.pid)
    after = sampler.take("idle_after")
    metrics_after = interesting_metrics(scrape(args.metrics_port))

    summary = {
        "duration_s": args.duration,
        "load_end_s": round(load_end, 2),
        "plan": PLAN,
        "upload_abort_share": UPLOAD_ABORT_SHARE,
        "download_abandon_share": DOWNLOAD_ABANDON_SHARE,
        "body_memory_limit": args.body_memory_limit,
        "reload_interval_s": args.reload_interval,
        "sample_interval_s": args.sample_interval,
        "timeout_s": args.timeout,
        "workers": args.workers,
        "kinds": tally.summary(),
        "failures": tally.failures,
        "failure_counts": tally.failure_counts,
        "reloads_sent_at": reloads,
        "stuck_threads": stuck,
        "settle": settle,
        "idle_before": before,
        "idle_after": after,
        "fd_kinds_before": fds_before,
        "fd_kinds_after": fds_after,
        "metrics_before": metrics_before,
        "metrics_after": metrics_after,
    }
    with open(os.path.join(args.out, "load.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
        f.write("\n")
    with open(os.path.join(args.out, "samples.json"), "w", encoding="utf-8") as f:
        json.dump(sampler.samples, f)
        f.write("\n")
    return 0


# --- report ----------------------------------------------------------------------

# Verdict thresholds (stated in the report).
GROWTH_MAX = 0.10  # last-window median and fitted growth: at most 10% of the first-window median
MIN_VERDICT_S = 180  # shorter runs are mostly warm-up: their growth gets no verdict
FD_SLACK = 2       # idle fds after the load may exceed those before by at most this


def slope_per_min(points: List[Tuple[float, float]]) -> Optional[float]:
    """Least-squares slope of (seconds, value) points, in value per minute."""
    if len(points) < 3:
        return None
    mx = statistics.fmean(t for t, _ in points)
    my = statistics.fmean(v for _, v in points)
    den = sum((t - mx) ** 2 for t, _ in points)
    if den == 0:
        return None
    return sum((t - mx) * (v - my) for t, v in points) / den * 60


def trend(points: List[Tuple[float, float]], duration: float, window: float) -> dict:
    """First-window and last-window medians and the slope after the first
    window, with the verdict on them."""
    first = [v for t, v in points if t < window]
    last = [v for t, v in points if t >= duration - window]
    fit = [(t, v) for t, v in points if t >= window]
    out = {
        "first": statistics.median(first) if first else None,
        "last": statistics.median(last) if last else None,
        "slope": slope_per_min(fit),
        "span_min": (max(t for t, _ in fit) - min(t for t, _ in fit)) / 60 if len(fit) > 1 else 0,
        "min": min((v for _, v in points), default=None),
        "max": max((v for _, v in points), default=None),
    }
    ok = None
    if out["first"] and out["last"] is not None and out["slope"] is not None:
        out["growth"] = out["slope"] * out["span_min"]
        out["slope_limit"] = GROWTH_MAX * out["first"] / out["span_min"] if out["span_min"] else None
        ok = (out["last"] <= (1 + GROWTH_MAX) * out["first"]
              and out["growth"] <= GROWTH_MAX * out["first"])
    out["ok"] = ok
    return out


def mb(kb: Optional[float]) -> str:
    return "—" if kb is None else f"{kb / 1024:.1f}"


def fnum(v: Optional[float], spec: str = ",.0f") -> str:
    return "—" if v is None else format(v, spec)


def ms(v: Optional[float]) -> str:
    return "—" if v is None else f"{v:,.1f} ms"


def verdict(ok: Optional[bool]) -> str:
    return "**pass**" if ok else ("**FAIL**" if ok is False else "**no verdict**")


def svg_chart(samples: List[dict], reloads: List[float], duration: float) -> str:
    """Three stacked panels against minutes of load: the Go process's RSS,
    the workers' RSS (each PID a thin line, their sum thick), and the Go
    process's descriptors, established connections and temp files. Dashed
    lines mark the reloads."""
    load = [s for s in samples if s["phase"] == "load"]
    width, left, right, panel_h, gap, top = 760, 64, 150, 150, 46, 40
    plot_w = width - left - right
    xmax = max(duration, 1.0) / 60

    def x(t: float) -> float:
        return left + plot_w * (t / 60) / xmax

    panels = [
        ("Go process RSS (MB)", [("Go RSS", "#d9822b", 2.0, [(s["t"], s["go_rss_kb"] / 1024) for s in load
                                                              if s["go_rss_kb"]])]),
        ("Python workers RSS (MB)", []),
        ("Go process: open fds, connections, temp files", [
            ("Go fds", "#d9822b", 1.6, [(s["t"], s["go_fds"]) for s in load if s["go_fds"] is not None]),
            ("established conns", "#4a78b5", 1.2, [(s["t"], s["conns"]) for s in load]),
            ("temp files", "#2f9e44", 1.2, [(s["t"], s["tmp_files"]) for s in load if s["tmp_files"] is not None]),
        ]),
    ]
    per_pid: Dict[str, List[Tuple[float, float]]] = {}
    for s in load:
        for pid, w in s["workers"].items():
            per_pid.setdefault(pid, []).append((s["t"], w["rss_kb"] / 1024))
    series = [("sum", "#4a78b5", 2.0, [(s["t"], s["worker_rss_kb"] / 1024) for s in load])]
    series += [("", "#9aa5b1", 0.8, pts) for pts in per_pid.values()]
    panels[1] = ("Python workers RSS (MB): sum, and each worker PID", series)

    height = top + len(panels) * (panel_h + gap) + 10
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
           '<text x="10" y="20" font-size="15" font-weight="bold">bench/soak: memory, descriptors '
           'and temp files over the run</text>']
    for i, (title, lines) in enumerate(panels):
        y0 = top + i * (panel_h + gap) + 18
        vals = [v for _, _, _, pts in lines for _, v in pts]
        vmax = max(vals, default=1.0) * 1.1 or 1.0

        def y(v: float, y0: float = y0, vmax: float = vmax) -> float:
            return y0 + panel_h - panel_h * v / vmax

        out.append(f'<text x="{left}" y="{y0 - 6}" font-weight="bold">{escape(title)}</text>')
        out.append(f'<rect x="{left}" y="{y0}" width="{plot_w}" height="{panel_h}" fill="none" stroke="#cccccc"/>')
        for k in range(5):
            v = vmax * k / 4
            out.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end" fill="#555555">{v:,.0f}</text>')
        step = 1 if xmax <= 12 else 2
        m = 0
        while m <= xmax + 1e-9:
            out.append(f'<text x="{x(m * 60):.1f}" y="{y0 + panel_h + 14}" text-anchor="middle" '
                       f'fill="#555555">{m} min</text>')
            m += step
        for r in reloads:
            out.append(f'<line x1="{x(r):.1f}" y1="{y0}" x2="{x(r):.1f}" y2="{y0 + panel_h}" '
                       'stroke="#c92a2a" stroke-dasharray="3,3" stroke-width="0.8"/>')
        legend_y = y0 + 10
        for label, color, lw, pts in sorted(lines, key=lambda ln: ln[2]):
            if len(pts) > 1:
                path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in pts)
                out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="{lw}"/>')
        for label, color, lw, pts in lines:
            if label:
                out.append(f'<line x1="{width - right + 10}" y1="{legend_y - 4}" x2="{width - right + 28}" '
                           f'y2="{legend_y - 4}" stroke="{color}" stroke-width="2"/>')
                out.append(f'<text x="{width - right + 32}" y="{legend_y}">{escape(label)}</text>')
                legend_y += 16
        if i == 1 and per_pid:
            out.append(f'<text x="{width - right + 32}" y="{legend_y}" fill="#777777">each PID</text>')
            out.append(f'<line x1="{width - right + 10}" y1="{legend_y - 4}" x2="{width - right + 28}" '
                       f'y2="{legend_y - 4}" stroke="#9aa5b1" stroke-width="1"/>')
            legend_y += 16
        if reloads:
            out.append(f'<line x1="{width - right + 10}" y1="{legend_y - 4}" x2="{width - right + 28}" '
                       f'y2="{legend_y - 4}" stroke="#c92a2a" stroke-dasharray="3,3"/>')
            out.append(f'<text x="{width - right + 32}" y="{legend_y}">reload (SIGHUP)</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def jload(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def by_label(values: Dict[str, float], label: str) -> Dict[str, float]:
    """Sum a metric's series by one label ("all" for a series without it)."""
    out: Dict[str, float] = {}
    for labels, v in values.items():
        m = re.search(label + r'="([^"]*)"', labels)
        key = m.group(1) if m else "all"
        out[key] = out.get(key, 0) + v
    return out


def fmt_labels(values: Dict[str, float], label: str) -> str:
    parts = [f"{k}: {v:,.0f}" for k, v in sorted(by_label(values, label).items())]
    return ", ".join(parts) if parts else "none"


def delta(after: Dict[str, float], before: Dict[str, float]) -> Dict[str, float]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def report(work: str, md_path: str, svg_path: str) -> int:
    meta = jload(os.path.join(work, "meta.json"))
    res = jload(os.path.join(work, "load.json"))
    samples = jload(os.path.join(work, "samples.json"))
    duration = float(res["duration_s"])
    window = min(60.0, duration / 3)
    load = [s for s in samples if s["phase"] == "load"]
    kinds = res["kinds"]
    before, after = res["idle_before"], res["idle_after"]

    go = trend([(s["t"], s["go_rss_kb"]) for s in load if s["go_rss_kb"]], duration, window)
    # The workers' sum is judged on the samples with exactly --workers
    # workers: while a recycled worker's replacement boots, or a reload's new
    # generation does, the sum briefly counts 3 or 4 processes.
    steady = [s for s in load if s["worker_rss_kb"] and len(s["workers"]) == res["workers"]]
    wk = trend([(s["t"], s["worker_rss_kb"]) for s in steady], duration, window)
    wk_all = trend([(s["t"], s["worker_rss_kb"]) for s in load if s["worker_rss_kb"]], duration, window)
    heap = trend([(s["t"], s["heap_inuse_kb"]) for s in load if s.get("heap_inuse_kb")], duration, window)
    gor = trend([(s["t"], s["goroutines"]) for s in load if s.get("goroutines")], duration, window)
    fds_load = [s["go_fds"] for s in load if s["go_fds"] is not None]
    tmp_load = [s["tmp_files"] for s in load if s["tmp_files"] is not None]
    conns = [s["conns"] for s in load]
    loads = [s["loadavg1"] for s in load]

    total = {k: sum(v[k] for v in kinds.values()) for k in ("tried", "ok", "failed", "aborted")}
    fd_ok = (before["go_fds"] is not None and after["go_fds"] is not None
             and after["go_fds"] <= before["go_fds"] + FD_SLACK)
    tmp_idle = after["tmp_files"]
    tmp_exit = meta.get("tmp_after_exit")
    tmp_ok = tmp_idle == 0 and tmp_exit == 0
    growth_ok = None if go["ok"] is None or wk["ok"] is None else (go["ok"] and wk["ok"])
    if duration < MIN_VERDICT_S:
        growth_ok = go["ok"] = wk["ok"] = None

    out = [f"# bench/soak, {meta['date']}", ""]
    out.append(f"Machine: {meta['machine']}; {meta['versions']}.")
    out.append("")
    out.append(f"Load average (1, 5, 15 min) before the run: {meta['loadavg_before']}; after: "
               f"{meta['loadavg_after']}; 1-minute load average sampled during the run: min "
               f"{min(loads, default=0):.2f}, median {statistics.median(loads) if loads else 0:.2f}, max "
               f"{max(loads, default=0):.2f}.")
    out.append("")
    reloads = res["reloads_sent_at"]
    at = f", at {', '.join(f'{t:.0f}' for t in reloads)} s" if reloads else ""
    out.append(f"Server: `{meta['cmd']}` (pinned to CPU 0; load and sampler on CPU 1). "
               f"Load: {duration:.0f} s of the mixed workload below; SIGHUP every "
               f"{res['reload_interval_s']:.0f} s ({len(reloads)} reloads{at}); "
               f"every {res['sample_interval_s']:.0f} s a sample of the Go process and every worker "
               "(VmRSS, /proc/PID/fd), the files in --tmp-dir, the server's established TCP "
               "connections, and go_goroutines / heap in use from /metrics. "
               f"Elapsed: {meta['elapsed_s']} s.")
    out.append("")

    # Load summary.
    out.append("## Load")
    out.append("")
    out.append("| kind | what | tried | ok | failed | aborted by client | spilled to disk | p50 | p99 | MiB up | MiB down |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, what in KINDS.items():
        k = kinds[name]
        out.append(f"| {name} | {what} | {k['tried']:,} | {k['ok']:,} | {k['failed']:,} | {k['aborted']:,} "
                   f"| {k['spilled']:,} | {ms(k['p50_ms'])} | {ms(k['p99_ms'])} "
                   f"| {k['bytes_up'] / MIB:,.0f} | {k['bytes_down'] / MIB:,.0f} |")
    out.append(f"| **all** | | {total['tried']:,} | {total['ok']:,} | {total['failed']:,} "
               f"| {total['aborted']:,} | | | | | |")
    out.append("")
    out.append(f"\"spilled to disk\": bodies over --body-memory-limit ({res['body_memory_limit']:,} bytes; "
               "for upload_abort: the part sent was over it). Latency: from sending the request to "
               "the last byte of the response, kept-alive connections reused.")
    if res["failure_counts"]:
        out.append("")
        out.append("Failures by kind and cause (sizes in the messages shown as N):")
        out.append("")
        for what, n in sorted(res["failure_counts"].items(), key=lambda kv: -kv[1]):
            out.append(f"- {n:,} × {what}")
        out.append("")
        out.append("First failures (seconds into the load): " + "; ".join(
            f"{f['t']:.1f} s {f['kind']}: {f['what']}" for f in res["failures"][:10]))
    if res["stuck_threads"]:
        out.append("")
        out.append(f"Client threads still running {res['timeout_s']:.0f} s after the end: "
                   f"{', '.join(res['stuck_threads'])}.")
    ma, mbf = res["metrics_after"], res["metrics_before"]
    served = sum(delta(ma.get("taipan_http_requests_total", {}),
                       mbf.get("taipan_http_requests_total", {})).values())
    got = {k: sum(v[k] for v in kinds.values()) for k in ("ok", "answered_failed")}
    abandoned = kinds["download_abandon"]["aborted"]
    out.append("")
    out.append(f"Responses: the client received {got['ok'] + got['answered_failed'] + abandoned:,} "
               f"({got['ok']:,} as expected, {got['answered_failed']:,} wrong, {abandoned:,} downloads "
               f"it abandoned after their head); taipan counted {served:,.0f} responses sent "
               "(`taipan_http_requests_total`). Aborted uploads get no response.")
    out.append("")
    out.append("taipan's own counters over the run (`/metrics`, after minus before): responses by status: "
               + fmt_labels(delta(ma.get("taipan_http_requests_total", {}),
                                  mbf.get("taipan_http_requests_total", {})), "status")
               + "; worker restarts by reason: "
               + fmt_labels(delta(ma.get("taipan_worker_restarts_total", {}),
                                  mbf.get("taipan_worker_restarts_total", {})), "reason")
               + "; reloads: "
               + fmt_labels(delta(ma.get("taipan_reloads_total", {}), mbf.get("taipan_reloads_total", {})),
                            "result")
               + "; workers started: "
               + fmt_labels(delta(ma.get("taipan_workers_started_total", {}),
                                  mbf.get("taipan_workers_started_total", {})), "x")
               + ".")

    # Memory.
    pids = {}
    for s in load:
        for pid, w in s["workers"].items():
            pids.setdefault(pid, []).append(w["rss_kb"])
    out.append("")
    out.append("## Memory")
    out.append("")
    out.append(f"Windows: first = samples in the first {window:.0f} s of the load, last = the last "
               f"{window:.0f} s; the slope is a least-squares fit over every sample after the first "
               f"{window:.0f} s (warm-up). {len(load)} samples.")
    out.append("")
    out.append("| series | first-window median | last-window median | last/first | slope after warm-up | min | max |")
    out.append("|---|---:|---:|---:|---:|---:|---:|")

    def row(name: str, t: dict, unit: str = "MB") -> str:
        ratio = f"{t['last'] / t['first']:.3f}" if t["first"] and t["last"] is not None else "—"
        if unit == "MB":
            return (f"| {name} | {mb(t['first'])} MB | {mb(t['last'])} MB | {ratio} | "
                    f"{fnum(t['slope'], '+,.0f')} KB/min | {mb(t['min'])} MB | {mb(t['max'])} MB |")
        return (f"| {name} | {fnum(t['first'])} | {fnum(t['last'])} | {ratio} | "
                f"{fnum(t['slope'], '+,.1f')} /min | {fnum(t['min'])} | {fnum(t['max'])} |")
    out.append(row("Go process RSS", go))
    out.append(row(f"Python workers RSS, sum, samples with {res['workers']} workers "
                   f"({len(steady)} of {len(load)})", wk))
    out.append(row("Python workers RSS, sum, every sample", wk_all))
    if heap["first"]:
        out.append(row("Go heap in use (/metrics)", heap))
    if gor["first"]:
        out.append(row("goroutines (/metrics)", gor, unit=""))
    out.append("")
    if pids:
        firsts = [v[0] for v in pids.values()]
        lasts = [v[-1] for v in pids.values()]
        peaks = [max(v) for v in pids.values()]
        longest = max(pids.items(), key=lambda kv: len(kv[1]))
        out.append(f"Workers: {len(pids)} distinct worker PIDs were sampled (recycled by --max-requests "
                   f"and replaced by the reloads). Per PID, RSS at its first sample: median "
                   f"{mb(statistics.median(firsts))} MB; at its last: median {mb(statistics.median(lasts))} MB; "
                   f"peak over all: {mb(max(peaks))} MB. Longest-lived: PID {longest[0]}, "
                   f"{len(longest[1])} samples, {mb(longest[1][0])} → {mb(longest[1][-1])} MB.")
        out.append("")
    out.append(f"Chart: [{os.path.basename(svg_path)}]({os.path.basename(svg_path)}).")

    # Descriptors, connections, temp files.
    out.append("")
    out.append("## Descriptors, connections, temp files")
    out.append("")
    out.append("| | before the load (idle) | during the load: min / median / max | after the load (idle) |")
    out.append("|---|---:|---:|---:|")

    def spread(vals: List[float]) -> str:
        return f"{min(vals):,} / {statistics.median(vals):,.0f} / {max(vals):,}" if vals else "—"
    out.append(f"| Go process open fds | {before['go_fds']} | {spread(fds_load)} | {after['go_fds']} |")
    out.append(f"| Go process threads | {before['go_threads']} | "
               f"{spread([s['go_threads'] for s in load if s['go_threads']])} | {after['go_threads']} |")
    out.append(f"| established connections | {before['conns']} | {spread(conns)} | {after['conns']} |")
    out.append(f"| files in --tmp-dir | {before['tmp_files']} | {spread(tmp_load)} | {after['tmp_files']} |")
    wfd = [w["fds"] for s in load for w in s["workers"].values() if w.get("fds") is not None]
    out.append(f"| fds of each worker | "
               f"{', '.join(str(w['fds']) for w in before['workers'].values())} | {spread(wfd)} | "
               f"{', '.join(str(w['fds']) for w in after['workers'].values())} |")
    out.append("")
    out.append(f"\"after the load\": sampled once the client connections had closed and the pool was "
               f"back to {res['workers']} workers ({res['settle']['waited_s']} s after the load ended). "
               "The Go process's descriptors by kind, before → after: "
               + ", ".join(f"{k}: {res['fd_kinds_before'].get(k, 0)} → {res['fd_kinds_after'].get(k, 0)}"
                           for k in sorted(set(res["fd_kinds_before"]) | set(res["fd_kinds_after"]))) + ".")
    out.append("")
    out.append(f"Stop: SIGTERM to PID {meta['server_pid']}: exit code {meta['exit_code']} after "
               f"{meta['stop_s']} s; worker processes left running: {meta['leftover'] or 'none'}; "
               f"files in --tmp-dir after the exit: {tmp_exit}"
               + (f" ({meta['tmp_list']})" if meta.get("tmp_list") else "") + ".")

    # Verdicts.
    out.append("")
    out.append("## Verdicts")
    out.append("")
    short = (f" The load ran under {MIN_VERDICT_S} s, mostly warm-up: no verdict."
             if duration < MIN_VERDICT_S else "")
    out.append(f"- no growth trend: {verdict(growth_ok)}. Criterion, for the Go process's RSS and for the "
               f"sum of the workers' RSS (samples with {res['workers']} workers) each: the last-window "
               f"median is at most {GROWTH_MAX:.0%} above the first-window median, and the least-squares line after the warm-up rises by at most "
               f"{GROWTH_MAX:.0%} of the first-window median over the run (here: slope under "
               f"{fnum(go.get('slope_limit'))} KB/min for Go, {fnum(wk.get('slope_limit'))} KB/min for the "
               f"workers). Go: {mb(go['first'])} → {mb(go['last'])} MB, {fnum(go['slope'], '+,.0f')} KB/min "
               f"({verdict(go['ok'])}); workers: {mb(wk['first'])} → {mb(wk['last'])} MB, "
               f"{fnum(wk['slope'], '+,.0f')} KB/min ({verdict(wk['ok'])}).{short}")
    out.append(f"- no leaked fds: {verdict(fd_ok)}. Criterion: the Go process's open descriptors when idle "
               f"after the load are at most {FD_SLACK} more than when idle before it (same number of "
               f"workers, no client connection). {before['go_fds']} → {after['go_fds']}"
               f" (max {max(fds_load, default=0)} during the load).")
    out.append(f"- no leaked temp files: {verdict(tmp_ok)}. Criterion: --tmp-dir is empty when idle after "
               f"the load and after taipan has exited. {tmp_idle} and {tmp_exit} files "
               f"(at most {max(tmp_load, default=0)} in a sample during the load).")
    out.append(f"- every request answered as expected: {verdict(total['failed'] == 0)}. "
               f"{total['failed']:,} failed of {total['tried']:,} ({total['aborted']:,} aborted by the "
               "client on purpose, not counted as failures).")
    text = "\n".join(out) + "\n"
    with open(md_path, "w", encoding="utf-8") as f:
        f.write(text)
    with open(svg_path, "w", encoding="utf-8") as f:
        f.write(svg_chart(samples, res["reloads_sent_at"], duration))
    sys.stdout.write(text)
    passed = growth_ok is not False and fd_ok and tmp_ok and total["failed"] == 0
    return 0 if passed else 3


def main(argv: List[str]) -> int:
    p = argparse.ArgumentParser(prog="soak_load.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--metrics-port", type=int, required=True)
    r.add_argument("--pid", type=int, required=True)
    r.add_argument("--tmp-dir", required=True)
    r.add_argument("--duration", type=float, default=600)
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--reload-interval", type=float, default=60)
    r.add_argument("--sample-interval", type=float, default=5)
    r.add_argument("--body-memory-limit", type=int, default=256 * 1024)
    r.add_argument("--timeout", type=float, default=30)
    r.add_argument("--settle", type=float, default=30, help="seconds to wait for idle after the load")
    r.add_argument("--out", required=True)
    rep = sub.add_parser("report")
    rep.add_argument("work")
    rep.add_argument("md")
    rep.add_argument("svg")
    args = p.parse_args(argv)
    if args.cmd == "run":
        return run(args)
    return report(args.work, args.md, args.svg)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
