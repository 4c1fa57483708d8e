#!/usr/bin/python3
"""Connection-holding load helpers for bench/suite (Python 3 standard library;
uses uvloop when importable, for the 10k scenario's client).

Subcommands:
  hold --port P [--idle N] [--slow N] [--duration S] [--trickle S] --out JSON
      Holds N idle keep-alive connections (each sends one GET /hello, reads
      the answer, then sends nothing) and N slowloris connections (each sends
      a request line and then one header line every --trickle seconds,
      never ending the head) for --duration seconds. A connection the server
      closes is reopened at once (as an attacker would), and counted. Opens
      them 100 at a time, 10 ms apart. Prints "held" on stdout once all are
      opened (the probe starts then). Exits after --duration, whatever
      happens: every connect has a 3 s timeout.
  c10k --port P [--conns N] [--interval S] [--hold S] [--ramp R] [--path P] --out JSON
      Opens N keep-alive connections, R a second; each sends GET PATH, waits
      for the answer (10 s timeout), and sends the next one --interval seconds
      after the previous was sent (the first at a random phase), until
      --hold seconds after the last connection was opened. A connection
      closed by the server is reopened (counted as a reconnect). A
      connection is "served" if it got at least one answer and every request
      it sent got a 200. Bounded: ramp + hold + 12 s at most.
"""

import argparse
import asyncio
import json
import random
import sys
import time

HOST = "127.0.0.1"


def _pct(values, p):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


async def _read_response(reader):
    """Reads one HTTP/1.1 response (Content-Length or chunked); returns
    (status, close) where close is true if the server said Connection: close."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length, chunked, close = 0, False, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        value = value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value:
            chunked = True
        elif name == b"connection" and value == b"close":
            close = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status, close


# --- hold: idle keep-alive and slowloris connections -------------------------

async def _hold_one(kind, port, stop, stats, trickle):
    """Keeps one connection of this kind open until stop; reopens it if the
    server closes it."""
    first = True
    while not stop.is_set():
        writer = None
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 3)
            stats[kind + "_opened"] += 1
            if not first:
                stats[kind + "_reopened"] += 1
            first = False
            if kind == "idle":
                writer.write(b"GET /hello HTTP/1.1\r\nHost: suite\r\n\r\n")
                await asyncio.wait_for(_read_response(reader), 10)
                stats["idle_answered"] += 1
                # Idle from now on: wait for the server to close, or stop.
                closed = asyncio.ensure_future(reader.read(1))
                waiter = asyncio.ensure_future(stop.wait())
                await asyncio.wait({closed, waiter}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if not closed.done():
                    closed.cancel()
                else:
                    stats["idle_closed_by_server"] += 1
            else:
                writer.write(b"GET /hello HTTP/1.1\r\nHost: suite\r\n")
                i = 0
                while not stop.is_set():
                    try:
                        data = await asyncio.wait_for(reader.read(1), trickle)
                    except asyncio.TimeoutError:
                        writer.write(b"X-Slow-%d: a\r\n" % i)
                        await writer.drain()
                        i += 1
                        continue
                    # The server answered (an error) or closed: reopen.
                    stats["slow_closed_by_server"] += 1
                    if data:
                        stats["slow_answered"] += 1
                    break
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError):
            stats[kind + "_errors"] += 1
            try:
                await asyncio.wait_for(stop.wait(), 0.2)
            except asyncio.TimeoutError:
                pass
        finally:
            if writer is not None:
                writer.close()


async def hold(args):
    stop = asyncio.Event()
    stats = {k: 0 for k in ("idle_opened", "idle_reopened", "idle_answered", "idle_closed_by_server",
                            "idle_errors", "slow_opened", "slow_reopened", "slow_answered",
                            "slow_closed_by_server", "slow_errors")}
    tasks = []
    kinds = ["idle"] * args.idle + ["slow"] * args.slow
    t0 = time.monotonic()
    for i, kind in enumerate(kinds):
        tasks.append(asyncio.ensure_future(_hold_one(kind, args.port, stop, stats, args.trickle)))
        if i % 100 == 99:
            await asyncio.sleep(0.01)
    # Let the last batch connect, then tell the script the probe may start.
    await asyncio.sleep(0.5)
    stats["opened_after_ramp"] = stats["idle_opened"] + stats["slow_opened"]
    print("held", flush=True)
    await asyncio.sleep(max(0.0, args.duration - (time.monotonic() - t0)))
    stop.set()
    await asyncio.wait(tasks, timeout=4)
    stats["run_s"] = round(time.monotonic() - t0, 3)
    stats["idle"], stats["slow"], stats["trickle_s"] = args.idle, args.slow, args.trickle
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(stats, f)


# --- c10k: many keep-alive connections, each with a request a second -------------

async def _c10k_conn(port, path, interval, end, rec):
    req = b"GET " + path.encode() + b" HTTP/1.1\r\nHost: suite\r\n\r\n"
    reader = writer = None
    next_send = time.monotonic() + random.random() * interval
    answered = False  # this connection has answered a request: reusing it
    try:
        while True:
            if writer is None:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 10)
                rec["connects"] += 1
            delay = next_send - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if time.monotonic() >= end:
                break
            t = time.monotonic()
            next_send = t + interval
            writer.write(req)
            rec["sent"] += 1
            try:
                status, close = await asyncio.wait_for(_read_response(reader), 10)
            except (asyncio.IncompleteReadError, ConnectionResetError) as e:
                # The server closed a reused connection before answering (it
                # closed it while idle). RFC 9112 section 9.3.1 lets a client
                # retry an idempotent request on a new connection, as browsers
                # and HTTP libraries do; it is counted as a reconnect.
                if not answered or (isinstance(e, asyncio.IncompleteReadError) and e.partial):
                    raise
                writer.close()
                reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 10)
                rec["connects"] += 1
                rec["retried"] += 1
                writer.write(req)
                status, close = await asyncio.wait_for(_read_response(reader), 10)
            answered = not close
            rec["lat"].append(time.monotonic() - t)
            if status == 200:
                rec["ok"] += 1
            else:
                rec["bad"] += 1
            if close:
                writer.close()
                writer = None
    except asyncio.TimeoutError:
        rec["err"] = "timeout"
    except asyncio.IncompleteReadError:
        rec["err"] = "eof"
    except OSError as e:
        rec["err"] = type(e).__name__
    except (ValueError, IndexError):
        rec["err"] = "bad response"
    finally:
        if writer is not None:
            writer.close()


async def c10k(args):
    t0 = time.monotonic()
    ramp_s = args.conns / args.ramp
    end = t0 + ramp_s + args.hold
    recs, tasks = [], []
    for i in range(args.conns):
        rec = {"connects": 0, "sent": 0, "ok": 0, "bad": 0, "retried": 0, "err": None, "lat": []}
        recs.append(rec)
        tasks.append(asyncio.ensure_future(_c10k_conn(args.port, args.path, args.interval, end, rec)))
        due = t0 + (i + 1) / args.ramp
        if due - time.monotonic() > 0.005:
            await asyncio.sleep(due - time.monotonic())
    await asyncio.wait(tasks, timeout=max(1.0, end - time.monotonic()) + 11)
    for t in tasks:
        t.cancel()
    lat = [x for r in recs for x in r["lat"]]
    errs = {}
    for r in recs:
        if r["err"]:
            errs[r["err"]] = errs.get(r["err"], 0) + 1
    served = sum(1 for r in recs if r["ok"] and r["ok"] == r["sent"] and not r["err"])
    summary = {
        "conns": args.conns, "interval_s": args.interval, "hold_s": args.hold, "ramp_per_s": args.ramp,
        "served": served,
        "never_answered": sum(1 for r in recs if not r["ok"]),
        "requests_sent": sum(r["sent"] for r in recs),
        "requests_ok": sum(r["ok"] for r in recs),
        "requests_bad_status": sum(r["bad"] for r in recs),
        "conn_errors": errs,
        "reconnects": sum(max(0, r["connects"] - 1) for r in recs),
        "retried_after_close": sum(r["retried"] for r in recs),
        "p50_ms": None if not lat else round(_pct(lat, 50) * 1000, 2),
        "p99_ms": None if not lat else round(_pct(lat, 99) * 1000, 2),
        "max_ms": None if not lat else round(max(lat) * 1000, 2),
        "run_s": round(time.monotonic() - t0, 3),
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(summary, f)


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    h = sub.add_parser("hold")
    h.add_argument("--port", type=int, required=True)
    h.add_argument("--idle", type=int, default=500)
    h.add_argument("--slow", type=int, default=500)
    h.add_argument("--duration", type=float, default=10)
    h.add_argument("--trickle", type=float, default=1.0)
    h.add_argument("--out", required=True)
    c = sub.add_parser("c10k")
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--conns", type=int, default=10000)
    c.add_argument("--interval", type=float, default=1.0)
    c.add_argument("--hold", type=float, default=5)
    c.add_argument("--ramp", type=float, default=2500)
    c.add_argument("--path", default="/hello")
    c.add_argument("--out", required=True)
    args = p.parse_args(argv)
    try:
        import uvloop  # noqa: F401 - optional, faster client
        uvloop.install()
    except ImportError:
        pass
    asyncio.run(hold(args) if args.cmd == "hold" else c10k(args))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
