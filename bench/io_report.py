#!/usr/bin/python3
"""Report for bench/io (Python 3 standard library only).

Usage: io_report.py DIR CONNECTIONS SLEEP_MS

Reads DIR/configs (CONFIG, label, server concurrency, ideal req/s; one
configuration a line, tab-separated), DIR/CONFIG/r1/{wrk.txt,before.json,
after.json,times} and DIR/meta.md, and prints the markdown report. Parsing
and CPU accounting are benchtool.py's.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchtool import fmt, fmt_ms, load_server  # noqa: E402

TARGET = 90.0  # % of ideal, for the models the server bounds


def fmt_lat(ms):
    """A latency in ms, in seconds from 1 s up."""
    if ms is not None and ms >= 1000:
        return f"{ms / 1000:.2f} s"
    return fmt_ms(ms)


def report(d, conns, sleep_ms):
    clk_tck = os.sysconf("SC_CLK_TCK")
    configs = []
    with open(os.path.join(d, "configs"), encoding="utf-8") as f:
        for line in f:
            conf, label, limit, ideal = line.rstrip("\n").split("\t")
            configs.append((conf, label, limit, float(ideal)))

    out = []
    with open(os.path.join(d, "meta.md"), encoding="utf-8") as f:
        out.append(f.read().rstrip("\n"))
    out.append("")
    out.append("| configuration | concurrency (server) | ideal req/s | req/s | % of ideal "
               "| p50 (floor) | p99 | server CPU (% of its core) | CPU µs/req (Go + Python) | errors |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    rows, notes = [], []
    for conf, label, limit, ideal in configs:
        r = load_server(d, conf, 1, clk_tck)
        w, us = r["wrk"], r["us"]
        with open(os.path.join(d, conf, "r1", "times"), encoding="utf-8") as f:
            t0, t1 = (float(x) for x in f.read().split())
        ticks = sum(us.values()) * w["requests"] / 1e6 if us and w["requests"] else None
        busy = ticks / (t1 - t0) * 100 if ticks is not None else None
        pct = w["rps"] / ideal * 100 if w["rps"] else None
        # Little's law: with every connection always waiting, latency is
        # connections / throughput; at the ideal throughput that is the floor.
        floor_ms = conns / ideal * 1000
        cpu = "—"
        if us:
            total = sum(us.values())
            cpu = (f"{total:.0f} ({us['go']:.0f} + {us['python'] + us['server']:.0f})"
                   if r["taipan"] else f"{total:.0f} (— + {total:.0f})")
        errs = []
        if w["non2xx"]:
            errs.append(f"{w['non2xx']} non-2xx")
        if w["socket_errors"]:
            errs.append("socket: " + w["socket_errors"])
        limit_shown = limit if limit == "unbounded" else f"{limit} at once"
        out.append(f"| {label} | {limit_shown} | {ideal:,.0f} | {fmt(w['rps'], ',.0f')} "
                   f"| {fmt(pct, '.1f')}% | {fmt_lat(w['p50'])} ({fmt_lat(floor_ms)}) "
                   f"| {fmt_lat(w['p99'])} | {fmt(busy, '.0f')}% | {cpu} | {'; '.join(errs) or '0'} |")
        notes.extend(f"{conf}: {x}" for x in r["notes"])
        rows.append((conf, label, limit, ideal, pct, busy))
    out.append("")
    out.append(f"Ideal req/s: the requests that can wait at once divided by the {sleep_ms} ms wait: "
               f"min(server limit, {conns} connections) / {sleep_ms / 1000:g} s. sync runs one request "
               "per worker, --threads N runs N per worker; gevent and ASGI set no limit below the "
               f"{conns} connections, so their ideal is {conns} / {sleep_ms / 1000:g} s. "
               "p50 (floor): wrk's median latency, and in parentheses the latency at the ideal "
               f"throughput by Little's law (connections / ideal req/s; {sleep_ms} ms when "
               "nothing queues). Server CPU: utime+stime of all server processes over the measured "
               "run's wall time, in % of one core (the server has only CPU 0); near 100% the "
               "configuration is limited by CPU, not by its concurrency model. CPU µs/req: "
               "the same CPU divided by the requests wrk completed (taipan: Go process + "
               "Python workers; uvicorn: all its processes run Python).")
    if notes:
        out.append("")
        out.append("Notes:")
        out.extend(f"- {x}" for x in notes)
    out.append("")
    out.append(f"Target: at least {TARGET:.0f}% of ideal (workers x threads, or unbounded for gevent and ASGI):")
    for conf, label, limit, ideal, pct, busy in rows:
        if pct is None:
            out.append(f"- {label}: no req/s")
        elif limit != "unbounded":
            verdict = "ok" if pct >= TARGET else "MISSED"
            out.append(f"- {label}: {pct:.1f}% of {ideal:,.0f} req/s (target {TARGET:.0f}%: {verdict})")
        else:
            # One core serves the ideal rate only if a request costs at
            # most 1e6 / ideal µs of server CPU.
            budget = 1e6 / ideal
            cost = ""
            r = load_server(d, conf, 1, clk_tck)
            if r["us"]:
                cost = f", this one cost {sum(r['us'].values()):.0f} µs"
            verdict = "ok" if pct >= TARGET else "MISSED"
            if conf == "uvicorn":
                verdict = "reference"
            out.append(f"- {label}: {pct:.1f}% of {ideal:,.0f} req/s (target {TARGET:.0f}%: {verdict}; "
                       f"no server-side bound: one core reaches {ideal:,.0f} req/s only at <= {budget:.0f} µs of "
                       f"server CPU per request{cost}; the core was {fmt(busy, '.0f')}% busy)")
    print("\n".join(out))


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    report(argv[0], int(argv[1]), int(argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
