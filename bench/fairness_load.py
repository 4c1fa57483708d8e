#!/usr/bin/python3
"""Load generator and report for bench/fairness (Python 3 standard library only).

Subcommands:
  load --port P [--host H] [--heavy N] [--heavy-path PATH] [--light-path PATH]
       [--rate R] [--duration S] [--warmup S] [--timeout S] [--cap N]
       [--heavy-timeout S] --out JSON
      Heavy load: N client threads (default 4), each looping on --heavy-path
      (default /fib?n=30) with one http.client connection (reopened after a
      close or an error), from start until the light load has ended.
      Light load: after --warmup seconds (default 1) of heavy load alone,
      request --light-path (default /hello) R times a second (default 50) for
      S seconds (default 10), open-loop: request i is due at start + i/R,
      whatever happened to the earlier ones. Up to --cap (default 100) light
      requests are in flight at once, each sender thread with its own
      connection; a request due while all senders are busy is sent as soon as
      one frees up, and its latency still counts from the time it was due.
      Latency = response fully read - time due. A light request with no
      complete response within --timeout (default 5) seconds of being due is
      a timeout; a non-200 status or a connection error is a failure.
      Writes a JSON summary to --out. Bounded: the light load ends at
      warmup + S seconds, then heavy clients stop starting requests, and the
      process exits at most --heavy-timeout + 2 seconds later whatever is
      still in flight.
  report DIR
      Read DIR/meta.md, DIR/configs (one "key<TAB>label<TAB>note" a line) and
      DIR/<key>/load.json and print the markdown report.
"""

import argparse
import http.client
import json
import os
import queue
import socket
import sys
import threading
import time


# --- load -------------------------------------------------------------------

def one_request(conn, path):
    """GET path on conn; returns the status (the body fully read)."""
    conn.request("GET", path)
    resp = conn.getresponse()
    resp.read()
    return resp.status


def heavy_client(host, port, path, timeout, stop, done):
    """Loops on path until stop is set; appends (start, end, outcome)."""
    conn = None
    while not stop.is_set():
        if conn is None:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        t0 = time.monotonic()
        try:
            outcome = str(one_request(conn, path))
        except (socket.timeout, TimeoutError):
            outcome = "timeout"
        except (OSError, http.client.HTTPException) as e:
            outcome = "error:" + type(e).__name__
        except Exception as e:  # noqa: BLE001 - count it rather than die
            outcome = "error:" + type(e).__name__
        if not outcome.isdigit():
            conn.close()
            conn = None
            time.sleep(0.02)  # do not spin on a dead port
        done.append((t0, time.monotonic(), outcome))
    if conn is not None:
        conn.close()


def light_sender(host, port, path, timeout, jobs, results):
    """Takes (index, due) from jobs until None; appends one result each."""
    conn = None
    while True:
        job = jobs.get()
        if job is None:
            break
        i, due = job
        sent = time.monotonic()
        left = due + timeout - sent
        if left <= 0:
            results.append({"i": i, "due": due, "sent": sent, "end": sent, "outcome": "timeout"})
            continue
        if conn is None:
            conn = http.client.HTTPConnection(host, port)
        conn.timeout = left
        if conn.sock is not None:
            conn.sock.settimeout(left)
        try:
            outcome = str(one_request(conn, path))
        except (socket.timeout, TimeoutError):
            outcome = "timeout"
        except (OSError, http.client.HTTPException) as e:
            outcome = "error:" + type(e).__name__
        except Exception as e:  # noqa: BLE001 - count it rather than die
            outcome = "error:" + type(e).__name__
        end = time.monotonic()
        if outcome == "200" and end - due > timeout:
            outcome = "timeout"
        if not outcome.isdigit():
            conn.close()
            conn = None
        results.append({"i": i, "due": due, "sent": sent, "end": end, "outcome": outcome})
    if conn is not None:
        conn.close()


def load(args):
    stop = threading.Event()
    heavy_done = []
    heavy_threads = [
        threading.Thread(target=heavy_client, daemon=True,
                         args=(args.host, args.port, args.heavy_path, args.heavy_timeout, stop, heavy_done))
        for _ in range(args.heavy)
    ]
    t_start = time.monotonic()
    for t in heavy_threads:
        t.start()
    time.sleep(args.warmup if args.heavy else 0)

    jobs = queue.Queue()
    results = []
    senders = [
        threading.Thread(target=light_sender, daemon=True,
                         args=(args.host, args.port, args.light_path, args.timeout, jobs, results))
        for _ in range(args.cap)
    ]
    for t in senders:
        t.start()
    total = int(round(args.rate * args.duration))
    t_light = time.monotonic() + 0.05
    max_backlog = 0
    for i in range(total):
        due = t_light + i / args.rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        jobs.put((i, due))
        max_backlog = max(max_backlog, jobs.qsize())
    for _ in senders:
        jobs.put(None)
    # Every light request ends by its due time + timeout (the last one is due
    # at t_light + duration); give the senders a little slack beyond that.
    light_deadline = t_light + args.duration + args.timeout + 2
    for t in senders:
        t.join(max(0.0, light_deadline - time.monotonic()))
    t_light_end = max([r["end"] for r in results] + [t_light + args.duration])
    light_hung = sum(1 for t in senders if t.is_alive())

    stop.set()
    heavy_deadline = time.monotonic() + args.heavy_timeout + 2
    for t in heavy_threads:
        t.join(max(0.0, heavy_deadline - time.monotonic()))
    heavy_hung = sum(1 for t in heavy_threads if t.is_alive())

    heavy = list(heavy_done)
    in_window = [h for h in heavy if t_light <= h[1] <= t_light_end]
    summary = {
        "heavy_clients": args.heavy,
        "heavy_path": args.heavy_path,
        "light_path": args.light_path,
        "rate": args.rate,
        "duration": args.duration,
        "timeout": args.timeout,
        "cap": args.cap,
        "light_planned": total,
        "light": sorted(([round(r["end"] - r["due"], 6), r["outcome"],
                          round(r["sent"] - r["due"], 6)] for r in results),
                        key=lambda x: x[0]),
        "light_missing": total - len(results),
        "light_senders_hung": light_hung,
        "max_backlog": max_backlog,
        "light_window_s": round(t_light_end - t_light, 3),
        "heavy_in_window": {
            "ok": sum(1 for h in in_window if h[2] == "200"),
            "other": sum(1 for h in in_window if h[2] != "200"),
            "latencies": sorted(round(h[1] - h[0], 6) for h in in_window if h[2] == "200"),
        },
        "heavy_total": {
            "ok": sum(1 for h in heavy if h[2] == "200"),
            "other": sum(1 for h in heavy if h[2] != "200"),
            "outcomes": count_outcomes(h[2] for h in heavy),
        },
        "heavy_clients_hung": heavy_hung,
        "run_s": round(time.monotonic() - t_start, 3),
    }
    with open(args.out, "w") as f:
        json.dump(summary, f)
    return 0


def count_outcomes(outcomes):
    c = {}
    for o in outcomes:
        c[o] = c.get(o, 0) + 1
    return c


# --- report -----------------------------------------------------------------

def pct(sorted_values, p):
    """Nearest-rank percentile of an ascending list (None if empty)."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, -(-len(sorted_values) * p // 100) - 1))
    return sorted_values[int(k)]


def ms(v):
    if v is None:
        return "n/a"
    v *= 1000
    if v >= 100:
        return "%.0f ms" % v
    if v >= 10:
        return "%.1f ms" % v
    return "%.2f ms" % v


def report(d):
    with open(os.path.join(d, "meta.md")) as f:
        out = [f.read().rstrip("\n"), ""]
    rows, notes, skipped, data = [], [], [], {}
    with open(os.path.join(d, "configs")) as f:
        configs = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    out.append("| configuration | heavy clients | light p50 | p90 | p99 | max | light failed / timeouts"
               " (of sent) | heavy completed (fib/s) |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for key, label, note in configs:
        path = os.path.join(d, key, "load.json")
        if note.startswith("skipped"):
            skipped.append("- **%s**: %s" % (label, note))
            continue
        with open(path) as f:
            s = json.load(f)
        s["label"] = label
        data[key] = s
        ok = [x[0] for x in s["light"] if x[1] == "200"]
        timeouts = sum(1 for x in s["light"] if x[1] == "timeout")
        failed = sum(1 for x in s["light"] if x[1] not in ("200", "timeout"))
        failed += s["light_missing"]
        hw = s["heavy_in_window"]
        fib_rate = hw["ok"] / s["light_window_s"] if s["light_window_s"] else 0
        heavy_cell = "%d (%.1f/s)" % (hw["ok"], fib_rate) if s["heavy_clients"] else "-"
        rows.append("| %s | %d | %s | %s | %s | %s | %d / %d (of %d) | %s |" % (
            label, s["heavy_clients"], ms(pct(ok, 50)), ms(pct(ok, 90)), ms(pct(ok, 99)),
            ms(ok[-1] if ok else None), failed, timeouts, s["light_planned"], heavy_cell))
        lag = max((x[2] for x in s["light"]), default=0)
        extra = []
        kinds = count_outcomes(x[1] for x in s["light"] if x[1] not in ("200",))
        if kinds:
            extra.append("light outcomes other than 200: " + ", ".join(
                "%s × %d" % (k, v) for k, v in sorted(kinds.items())))
        if s["heavy_clients"]:
            hl = hw["latencies"]
            extra.append("fib latency p50 %s, max %s" % (ms(pct(hl, 50)), ms(hl[-1] if hl else None)))
            ho = {k: v for k, v in s["heavy_total"]["outcomes"].items() if k != "200"}
            if ho:
                extra.append("heavy outcomes other than 200 (whole run): " + ", ".join(
                    "%s × %d" % (k, v) for k, v in sorted(ho.items())))
        extra.append("largest send lag %s" % ms(lag))
        if s["light_senders_hung"] or s["heavy_clients_hung"]:
            extra.append("client threads still waiting at exit: %d light, %d heavy"
                         % (s["light_senders_hung"], s["heavy_clients_hung"]))
        if note:
            extra.append(note)
        notes.append("- %s: %s." % (label, "; ".join(extra)))
    out += rows
    out.append("")
    out.append("Latencies are of the light requests that got a 200 in time, counted from the moment"
               " each was due (open-loop schedule), to the end of its response. \"heavy completed\" is"
               " the number of heavy requests answered 200 while the light load ran (and the rate)."
               " \"send lag\" is how late the load generator sent a light request after it was due"
               " (it is included in the latency).")
    out.append("")
    out += notes
    if skipped:
        out.append("")
        out.append("Skipped:")
        out.append("")
        out += skipped
    out.append("")
    out += reading(data)
    return "\n".join(out).rstrip("\n") + "\n"


# How each model is expected to treat a light request while heavy ones run;
# the figures that follow each line are this run's.
MECHANISM = {
    "sync": "a worker runs one request at a time, so with more heavy clients than workers"
            " both workers are usually on a fib and a light request waits in taipan's queue"
            " until one finishes",
    "threads": "a light request gets a thread of its own at once, but the threads of a worker"
               " share the GIL with the fib running beside it, so it waits for GIL switches"
               " (and both workers share the one core)",
    "gevent": "greenlets are not preempted: a light request that reaches a worker busy in a"
              " fib waits until that fib returns",
    "lane": "one worker takes only /fib, the other only the rest, so a light request never"
            " waits behind a fib; it still shares the core with the fib worker",
    "gunicorn": "sync workers, one request at a time: light requests wait in the listen"
                " backlog until a worker is free",
}


def reading(data):
    """A short reading of the table: each model's mechanism, with its figures."""
    def figs(s):
        ok = [x[0] for x in s["light"] if x[1] == "200"]
        bad = len(s["light"]) - len(ok) + s["light_missing"]
        return pct(ok, 50), pct(ok, 99), bad

    lines = ["Reading (one run):", ""]
    base = data.get("baseline")
    b99 = None
    if base:
        b50, b99, bbad = figs(base)
        lines.append("- Without heavy load, light p50 is %s and p99 %s (%d not answered in time)."
                     % (ms(b50), ms(b99), bbad))
    for key in ("sync", "threads", "gevent", "lane", "gunicorn"):
        s = data.get(key)
        if not s:
            continue
        p50, p99, bad = figs(s)
        ratio = ""
        if b99 and p99 is not None:
            ratio = ", %.0fx the baseline's p99" % (p99 / b99)
        lines.append("- %s: %s. Measured: light p50 %s, p99 %s%s; %d of %d not answered in time."
                     % (s["label"], MECHANISM[key], ms(p50), ms(p99), ratio, bad, s["light_planned"]))
    lines.append("")
    return lines


def main(argv):
    p = argparse.ArgumentParser(prog="fairness_load.py")
    sub = p.add_subparsers(dest="cmd", required=True)
    lp = sub.add_parser("load")
    lp.add_argument("--host", default="127.0.0.1")
    lp.add_argument("--port", type=int, required=True)
    lp.add_argument("--heavy", type=int, default=4)
    lp.add_argument("--heavy-path", default="/fib?n=30")
    lp.add_argument("--light-path", default="/hello")
    lp.add_argument("--rate", type=float, default=50)
    lp.add_argument("--duration", type=float, default=10)
    lp.add_argument("--warmup", type=float, default=1)
    lp.add_argument("--timeout", type=float, default=5)
    lp.add_argument("--heavy-timeout", type=float, default=30)
    lp.add_argument("--cap", type=int, default=100)
    lp.add_argument("--out", required=True)
    rp = sub.add_parser("report")
    rp.add_argument("dir")
    a = p.parse_args(argv)
    if a.cmd == "load":
        if a.rate <= 0 or a.duration <= 0 or a.cap < 1 or a.heavy < 0 or a.timeout <= 0:
            p.error("rate, duration, timeout must be > 0, cap >= 1, heavy >= 0")
        return load(a)
    sys.stdout.write(report(a.dir))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
