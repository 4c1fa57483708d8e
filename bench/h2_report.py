#!/usr/bin/python3
"""Report for bench/h2 (Python 3 standard library only).

Usage: h2_report.py DIR SERVER...

Reads DIR/SERVER/rN/{h2load.txt,before.json,after.json,server.log} for every
round N and DIR/meta.md, and prints the markdown report: per server its
median round by req/s (benchtool.py's rule), taipan-h2 over hypercorn-h2,
over taipan-h1-tls and taipan-h2c over taipan-h2 within each round and their
medians, the failed requests (which must be 0), the CPU per request, and
every run in full. CPU accounting and helpers are benchtool.py's; the CPU
snapshots bracket h2load's measured phase (bench/h2 takes them when h2load
says that phase starts and ends).
"""

import collections
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchtool import fmt, fmt_ms, median, read_snapshots, role_ticks, rounds_of, to_ms  # noqa: E402

PEER = "hypercorn-h2"
# The application protocol h2load must have negotiated with each server.
PROTOCOL = {"taipan-h2": "h2", "taipan-h2c": "h2c", "hypercorn-h2": "h2",
            "taipan-h1-tls": "http/1.1"}
LABEL = {"taipan-h2": "HTTP/2 over TLS", "taipan-h2c": "HTTP/2 cleartext (h2c)",
         "hypercorn-h2": "HTTP/2 over TLS", "taipan-h1-tls": "HTTP/1.1 over TLS"}
# (numerator, denominator, what the ratio tells)
RATIOS = (("taipan-h2", "hypercorn-h2", "taipan vs hypercorn, both HTTP/2 over TLS"),
          ("taipan-h2", "taipan-h1-tls", "HTTP/2 vs HTTP/1.1 on the same taipan over TLS"),
          ("taipan-h2c", "taipan-h2", "cleartext h2c vs TLS h2 on taipan"))


# --- h2load output ----------------------------------------------------------

def parse_h2load(text):
    """The figures of one h2load run; None for what is missing."""
    res = {"protocol": None, "finished_ms": None, "rps": None, "total": None,
           "started": None, "done": None, "succeeded": None, "failed": None,
           "errored": None, "timeout": None, "status": {},
           "min": None, "max": None, "mean": None, "sd": None}
    m = re.search(r"^Application protocol:\s*(\S+)", text, re.M)
    if m:
        res["protocol"] = m.group(1)
    m = re.search(r"^finished in\s+(\S+),\s+([\d.]+) req/s", text, re.M)
    if m:
        res["finished_ms"] = to_ms(m.group(1))
        res["rps"] = float(m.group(2))
    m = re.search(r"^requests:(.*)$", text, re.M)
    if m:
        for num, key in re.findall(r"(\d+) (total|started|done|succeeded|failed|errored|timeout)",
                                   m.group(1)):
            res[key] = int(num)
    m = re.search(r"^status codes:(.*)$", text, re.M)
    if m:
        res["status"] = {k: int(n) for n, k in re.findall(r"(\d+) (\dxx)", m.group(1))}
    m = re.search(r"^time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", text, re.M)
    if m:
        res["min"], res["max"], res["mean"], res["sd"] = (to_ms(x) for x in m.groups())
    return res


# --- one measured run ---------------------------------------------------------

def load_run(d, name, rnd, clk_tck):
    """One server's run in round rnd (DIR/SERVER/r<rnd>/)."""
    base = os.path.join(d, name, f"r{rnd}")
    with open(os.path.join(base, "h2load.txt"), encoding="utf-8", errors="replace") as f:
        h2 = parse_h2load(f.read())
    before, after = read_snapshots(base)
    ticks, notes = role_ticks(before, after)
    n = h2["done"]
    us = {k: v / clk_tck * 1e6 / n for k, v in ticks.items()} if n else None
    stop_s, killed = None, ""
    try:
        with open(os.path.join(base, "stop_time"), encoding="utf-8") as f:
            t0, t1 = (float(v) for v in f.read().split())
            stop_s = t1 - t0
        with open(os.path.join(base, "stop.log"), encoding="utf-8", errors="replace") as f:
            m = re.search(r"still running after \S+, killing: (.*)", f.read())
            killed = m.group(1).strip() if m else ""
    except (OSError, ValueError):
        pass
    if killed:
        notes.append(f"did not exit within the stop timeout after SIGTERM (after the measured run); "
                     f"PIDs {killed} were SIGKILLed")
    elif stop_s is not None and stop_s > 5:
        notes.append(f"took {stop_s:.1f} s to exit after SIGTERM")
    log = []
    try:
        with open(os.path.join(base, "server.log"), encoding="utf-8", errors="replace") as f:
            log = f.read().splitlines()
    except OSError:
        pass
    return {
        "name": name,
        "round": rnd,
        "h2": h2,
        "us": us,
        "taipan": any(p["role"] == "go" for p in after.values()),
        "nprocs": len(after),
        "rss_mb": sum(p["hwm_kb"] for p in after.values()) / 1024,
        "notes": notes,
        "log": log,
    }




def median_round(runs):
    """benchtool.py's rule: the run with the median req/s (with an even
    number, the lower of the two middle ones), so that every figure shown
    with it comes from one real run."""
    ok = sorted((r for r in runs if r["h2"]["rps"]), key=lambda r: r["h2"]["rps"])
    return ok[(len(ok) - 1) // 2] if ok else runs[0]


def split_us(r):
    """(total, Go, Python) µs/req of a run; Go is None for a server without one."""
    us = r["us"]
    if not us:
        return None, None, None
    total = sum(us.values())
    if r["taipan"]:
        return total, us["go"], us["python"] + us["server"]
    return total, None, total


def ratio(runs, a, b, rnd):
    ra, rb = runs.get(a, {}).get(rnd), runs.get(b, {}).get(rnd)
    if ra and rb and ra["h2"]["rps"] and rb["h2"]["rps"]:
        return ra["h2"]["rps"] / rb["h2"]["rps"]
    return None


def x(v):
    return "—" if v is None else f"{v:.2f}x"


def failures(h2):
    """Requests h2load counts as failed (that includes errored and timed-out
    ones, and 4xx/5xx answers); None if the line is missing."""
    return h2["failed"]


LOG_PREFIX = re.compile(r"^\[[^]]*\]\s*\[\d+\]\s*\[[A-Z]+\]\s*")
LOG_ODD = re.compile(r"error|exception|traceback|warn|fail|closed|reset|refused|broken", re.I)


def odd_log_lines(runs_of_server):
    """Counter of the log lines (prefix stripped) that look like trouble."""
    c = collections.Counter()
    for r in runs_of_server:
        for line in r["log"]:
            msg = LOG_PREFIX.sub("", line).strip()
            if msg and LOG_ODD.search(msg):
                c[msg[:160]] += 1
    return c


def report(d, names):
    clk_tck = os.sysconf("SC_CLK_TCK")
    rounds = rounds_of(d, names, "h2load.txt")
    runs = {n: {k: load_run(d, n, k, clk_tck) for k in rounds
                if os.path.isfile(os.path.join(d, n, f"r{k}", "h2load.txt"))}
            for n in names}
    rows = [median_round([runs[n][k] for k in sorted(runs[n])]) for n in names]
    by = {r["name"]: r for r in rows}
    ref = by.get(PEER, {}).get("h2", {}).get("rps")
    nr = len(rounds)
    even = nr % 2 == 0 and nr > 1
    pairs = [p for p in RATIOS if p[0] in runs and p[1] in runs]
    ratios = {p: {k: ratio(runs, p[0], p[1], k) for k in rounds} for p in pairs}
    med = {p: median(ratios[p].values()) for p in pairs}
    fails = {n: [failures(runs[n][k]["h2"]) for k in sorted(runs[n])] for n in names}

    out = []
    with open(os.path.join(d, "meta.md"), encoding="utf-8") as f:
        out.append(f.read().rstrip("\n"))

    # --- summary -------------------------------------------------------------
    out.append("")
    out.append("## Summary")
    out.append("")
    out.append(f"Medians of {nr} round{'s' if nr != 1 else ''}. For each server the table shows its "
               "median round by req/s"
               + (" (with an even number of rounds, the lower of the two middle ones)" if even else "")
               + ": every column of a row comes from that one round (\"round\"), except \"failed\", "
               f"which adds up every round. \"vs {PEER}\" divides its median req/s by {PEER}'s. "
               "h2load reports the time per request as min/max/mean/sd, not percentiles: the "
               "table gives the mean and the max.")
    out.append("")
    out.append(f"| server | protocol | round | procs | req/s | vs {PEER} | mean latency | max latency "
               "| failed (all rounds) | CPU µs/req (all procs) | Go µs/req | Python µs/req | peak RSS (MB) |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        h2 = r["h2"]
        total, go, py = split_us(r)
        f = fails[r["name"]]
        nfail = "?" if any(v is None for v in f) else str(sum(f))
        vs = f"{h2['rps'] / ref:.2f}x" if ref and h2["rps"] else "—"
        out.append(
            f"| {r['name']} | {LABEL.get(r['name'], '?')} | {r['round']} | {r['nprocs']} "
            f"| {fmt(h2['rps'], ',.0f')} | {vs} | {fmt_ms(h2['mean'])} | {fmt_ms(h2['max'])} "
            f"| {nfail} | {fmt(total, '.1f')} | {fmt(go, '.1f')} | {fmt(py, '.1f')} | {r['rss_mb']:.1f} |")
    out.append("")
    out.append("CPU µs/req: utime+stime of every server process (parent and all children), from "
               "when h2load's measured phase started to when it ended (the warm-up, and with it "
               "every connection and TLS handshake, is left out), divided by the requests h2load "
               "completed in that phase. For taipan, Go is the taipan process (HTTP/2, TLS and the "
               "connections) and Python its taipan_worker.py children; hypercorn has no Go part: "
               "its parent and its forked workers all run Python (TLS and HTTP/2 included), so its "
               "whole CPU is in the Python column. \"procs\" is how many processes that covers. "
               "Peak RSS is the sum of VmHWM of those processes.")

    if pairs or any(n in runs for n in names):
        out.append("")
        out.append("Ratios of req/s, each the median of the per-round ratios"
                   + (" (with an even number of rounds, the mean of the two middle ones)" if even else "")
                   + ":")
        for p in pairs:
            a, b, what = p
            each = [v for v in ratios[p].values() if v is not None]
            if med[p] is None:
                continue
            spread = (f"median of {len(each)} per-round ratios, range {min(each):.2f}x–{max(each):.2f}x"
                      if len(each) > 1 else "one round")
            out.append(f"- {a} / {b}: **{med[p]:.2f}x** ({what}; {spread})")
        allf = [v for n in names for v in fails[n]]
        if any(v is None for v in allf):
            out.append("- failed requests: h2load's requests line is missing from some runs: see below")
        else:
            nf = sum(allf)
            out.append(f"- failed requests: {nf} in {len(allf)} runs "
                       f"({'ok' if nf == 0 else 'NOT 0: see the per-run table and the notes'})")
        cpu = []
        for n in names:
            t = median(split_us(r)[0] for r in runs[n].values())
            g = median(split_us(r)[1] for r in runs[n].values())
            p = median(split_us(r)[2] for r in runs[n].values())
            part = f"{n} {fmt(t, '.1f')}"
            if g is not None:
                part += f" (Go {g:.1f} + Python {fmt(p, '.1f')})"
            cpu.append(part)
        out.append("- CPU µs per request, median over the rounds: " + "; ".join(cpu))

    # --- per round -----------------------------------------------------------
    out.append("")
    out.append("## Per round")
    out.append("")
    out.append("req/s of every server in every round, and the ratios within each round. Last row: "
               "the req/s of the summary table and the median of the per-round ratios.")
    out.append("")
    out.append("| round | " + " | ".join(names) + "".join(f" | {a}/{b}" for a, b, _ in pairs) + " |")
    out.append("|---:|" + "---:|" * (len(names) + len(pairs)))
    for k in rounds:
        cells = [fmt(runs[n][k]["h2"]["rps"] if k in runs[n] else None, ",.0f") for n in names]
        cells += [x(ratios[p][k]) for p in pairs]
        out.append(f"| {k} | " + " | ".join(cells) + " |")
    cells = [fmt(by[n]["h2"]["rps"], ",.0f") for n in names]
    cells += [x(med[p]) for p in pairs]
    out.append("| median | " + " | ".join(cells) + " |")

    out.append("")
    out.append("Every run as h2load reported it: \"finished in\" includes the warm-up; req/s and "
               "the request counts are the measured phase's only. failed includes errored, timed-out "
               "and 4xx/5xx requests. Latency is h2load's \"time for request\".")
    out.append("")
    out.append("| server | round | protocol | finished in | req/s | total | started | done | succeeded "
               "| failed | errored | timeout | 2xx | 3xx/4xx/5xx | min | mean | sd | max "
               "| CPU µs/req | Go | Python |")
    out.append("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:"
               "|---:|---:|---:|")
    for n in names:
        for k in sorted(runs[n]):
            r = runs[n][k]
            h2 = r["h2"]
            st = h2["status"]
            other = "/".join(str(st.get(c, 0)) for c in ("3xx", "4xx", "5xx")) if st else "—"
            total, go, py = split_us(r)
            fin = "—" if h2["finished_ms"] is None else f"{h2['finished_ms'] / 1000:.2f} s"
            out.append(
                f"| {n} | {k} | {h2['protocol'] or '?'} | {fin} | {fmt(h2['rps'], ',.0f')} "
                f"| {fmt(h2['total'], ',')} | {fmt(h2['started'], ',')} | {fmt(h2['done'], ',')} "
                f"| {fmt(h2['succeeded'], ',')} | {fmt(h2['failed'], ',')} | {fmt(h2['errored'], ',')} "
                f"| {fmt(h2['timeout'], ',')} | {fmt(st.get('2xx'), ',')} | {other} "
                f"| {fmt_ms(h2['min'])} | {fmt_ms(h2['mean'])} | {fmt_ms(h2['sd'])} | {fmt_ms(h2['max'])} "
                f"| {fmt(total, '.1f')} | {fmt(go, '.1f')} | {fmt(py, '.1f')} |")

    # --- notes -----------------------------------------------------------------
    notes = []
    status_mismatch = False
    for n in names:
        for k in sorted(runs[n]):
            r = runs[n][k]
            h2 = r["h2"]
            want = PROTOCOL.get(n)
            if h2["protocol"] != want:
                notes.append(f"{n}, round {k}: h2load negotiated {h2['protocol'] or 'nothing'}, not {want}")
            if h2["rps"] is None or h2["done"] is None:
                notes.append(f"{n}, round {k}: h2load's summary is missing (see DIR/{n}/r{k}/h2load.txt "
                             "with KEEP_WORK=1)")
            if h2["failed"]:
                notes.append(f"{n}, round {k}: {h2['failed']} failed requests "
                             f"({h2['errored'] or 0} errored, {h2['timeout'] or 0} timed out)")
            st = h2["status"]
            bad = {c: st.get(c, 0) for c in ("3xx", "4xx", "5xx") if st.get(c, 0)}
            if bad:
                notes.append(f"{n}, round {k}: non-2xx answers: "
                             + ", ".join(f"{v} {c}" for c, v in bad.items()))
            if st and h2["succeeded"] is not None and sum(st.values()) != h2["done"]:
                status_mismatch = True
            notes.extend(f"{n}, round {k}: {m}" for m in r["notes"])
        odd = odd_log_lines(runs[n].values())
        if odd:
            top = "; ".join(f"\"{m}\" ×{c}" for m, c in odd.most_common(3))
            notes.append(f"{n}: its log has {sum(odd.values())} line(s) that look like trouble over "
                         f"the rounds ({len(odd)} distinct); the most common: {top}")
    if status_mismatch:
        notes.append("Where the status codes do not add up to the requests done, that is "
                     "h2load's bookkeeping, not lost or extra answers: it counts a status code when "
                     "the response headers arrive and a request when its stream closes, each only "
                     "within the measured phase, so a request whose headers came in the warm-up "
                     "and which closed after it is done without a status code, and one whose "
                     "headers came just before the end and which closed after it has a status "
                     "code but is not done.")
    if notes:
        out.append("")
        out.append("Notes:")
        out.extend(f"- {m}" for m in notes)
    print("\n".join(out))


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    report(argv[0], argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
