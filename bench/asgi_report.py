#!/usr/bin/python3
"""Report for bench/asgi (Python 3 standard library only).

Usage: asgi_report.py DIR SERVER...

Reads DIR/SERVER/rN/{wrk.txt,before.json,after.json} for every round N and
DIR/meta.md, and prints the markdown report: per server its median round
(benchtool.py's rules), the req/s of every round with taipan/uvicorn per
round for each app, and the target (taipan >= 1.5x uvicorn with the same
number of processes). Parsing and CPU accounting are benchtool.py's.
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchtool import (fmt, fmt_ms, load_server, median, median_round,  # noqa: E402
                       py_us, round_ratio, rounds_of)

TARGET = 1.5
# (taipan server, uvicorn server, app label)
PAIRS = (("taipan", "uvicorn", "raw ASGI"), ("taipan-fastapi", "uvicorn-fastapi", "FastAPI"))
APP = {"taipan": "raw ASGI", "uvicorn": "raw ASGI",
       "taipan-fastapi": "FastAPI", "uvicorn-fastapi": "FastAPI"}


def report(d, names):
    clk_tck = os.sysconf("SC_CLK_TCK")
    rounds = rounds_of(d, names)
    runs = {n: {k: load_server(d, n, k, clk_tck) for k in rounds
                if os.path.isfile(os.path.join(d, n, f"r{k}", "wrk.txt"))}
            for n in names}
    rows = [median_round([runs[n][k] for k in sorted(runs[n])]) for n in names]
    by = {r["name"]: r for r in rows}
    pairs = [p for p in PAIRS if p[0] in runs and p[1] in runs]
    other = {}
    for t, u, _ in PAIRS:
        other[t], other[u] = u, u
    nr = len(rounds)
    even = nr % 2 == 0 and nr > 1

    out = []
    with open(os.path.join(d, "meta.md"), encoding="utf-8") as f:
        out.append(f.read().rstrip("\n"))
    out.append("")
    out.append(f"Medians of {nr} round{'s' if nr != 1 else ''}. For each server the table shows its "
               "median round by req/s"
               + (" (with an even number of rounds, the lower of the two middle ones)" if even else "")
               + ": every column of a row comes from that one round (\"round\"); \"vs uvicorn\" "
               "divides its median req/s by uvicorn's on the same app.")
    out.append("")
    out.append("| server | app | round | procs | req/s | vs uvicorn | p50 latency | p99 latency "
               "| CPU µs/req (all procs) | Go µs/req | Python µs/req | peak RSS (MB) |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        w, us = r["wrk"], r["us"]
        ref = by.get(other.get(r["name"], ""), {}).get("wrk", {}).get("rps")
        ratio = f"{w['rps'] / ref:.2f}x" if ref and w["rps"] else "—"
        total = go = py = None
        if us:
            total = sum(us.values())
            if r["taipan"]:
                go, py = us["go"], us["python"] + us["server"]
            else:
                py = total
        out.append(
            f"| {r['name']} | {APP.get(r['name'], '?')} | {r['round']} | {r['nprocs']} "
            f"| {fmt(w['rps'], ',.0f')} | {ratio} | {fmt_ms(w['p50'])} | {fmt_ms(w['p99'])} "
            f"| {fmt(total, '.1f')} | {fmt(go, '.1f')} | {fmt(py, '.1f')} | {r['rss_mb']:.1f} |")
    out.append("")
    out.append("CPU µs/req: utime+stime of every server process (parent and all children), "
               "measured across the wrk run only, divided by the requests wrk completed. For "
               "taipan, Go is the taipan process and Python its taipan_worker.py children; "
               "uvicorn has no Go part: its parent, its spawned workers and multiprocessing's "
               "resource tracker all run Python, so its whole CPU is in the Python column. "
               "\"procs\" is how many processes that covers. Peak RSS is the sum of VmHWM of "
               "those processes. Both servers keep connections alive.")

    ratios = {p: {k: round_ratio(runs, p[0], p[1], k) for k in rounds} for p in pairs}
    med = {p: median(ratios[p].values()) for p in pairs}
    out.append("")
    out.append("Per round: req/s of every server in every round, and taipan's req/s over "
               "uvicorn's on the same app in the same round. Last row: the req/s of the main "
               "table and the median of the per-round ratios"
               + (" (with an even number of rounds, the mean of the two middle ones)" if even else "")
               + ", which the target below uses.")
    out.append("")
    out.append("| round | " + " | ".join(names)
               + "".join(f" | taipan/uvicorn ({p[2]})" for p in pairs) + " |")
    out.append("|---:|" + "---:|" * (len(names) + len(pairs)))
    for k in rounds:
        cells = [fmt(runs[n][k]["wrk"]["rps"] if k in runs[n] else None, ",.0f") for n in names]
        cells += [fmt(ratios[p][k], ".2f") + ("x" if ratios[p][k] is not None else "") for p in pairs]
        out.append(f"| {k} | " + " | ".join(cells) + " |")
    cells = [fmt(by[n]["wrk"]["rps"], ",.0f") for n in names]
    cells += [fmt(med[p], ".2f") + ("x" if med[p] is not None else "") for p in pairs]
    out.append("| median | " + " | ".join(cells) + " |")

    notes = []
    for n in names:
        for k in sorted(runs[n]):
            r = runs[n][k]
            w = r["wrk"]
            if w["non2xx"]:
                notes.append(f"{n}, round {k}: {w['non2xx']} non-2xx/3xx responses")
            if w["socket_errors"]:
                notes.append(f"{n}, round {k}: wrk socket errors: {w['socket_errors']}")
            notes.extend(f"{n}, round {k}: {x}" for x in r["notes"])
    if notes:
        out.append("")
        out.append("Notes:")
        out.extend(f"- {x}" for x in notes)

    if pairs:
        out.append("")
        out.append(f"Target (taipan >= {TARGET}x uvicorn, same number of worker processes)"
                   + (f", medians over the {nr} rounds:" if nr > 1 else ":"))
        for p in pairs:
            t, u, label = p
            if med[p] is None:
                continue
            each = [v for v in ratios[p].values() if v is not None]
            spread = (f"median of {len(each)} per-round ratios, range "
                      f"{min(each):.2f}x–{max(each):.2f}x" if len(each) > 1 else "one round")
            verdict = "ok" if med[p] >= TARGET else "MISSED"
            tpy = median(py_us(r) for r in runs[t].values())
            tgo = median(r["us"]["go"] if r["us"] else None for r in runs[t].values())
            upy = median(py_us(r) for r in runs[u].values())
            out.append(f"- {label}: taipan/uvicorn req/s {med[p]:.2f}x, {spread} "
                       f"(target {TARGET}x: {verdict}); CPU per request, median over the rounds: "
                       f"taipan Python {fmt(tpy, '.1f')} µs + Go {fmt(tgo, '.1f')} µs, "
                       f"uvicorn {fmt(upy, '.1f')} µs")
    print("\n".join(out))


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    report(argv[0], argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
