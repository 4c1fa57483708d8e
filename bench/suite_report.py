#!/usr/bin/python3
"""Helper and report for bench/suite (Python 3 standard library only; uses
benchtool.py's process-tree, wrk parsing and median helpers).

Subcommands:
  resetpeak ROOTPID...   reset the peak RSS (VmHWM) of every process of these
                         trees (writes 5 to /proc/PID/clear_refs), so that the
                         next peak is the coming run's
  pss ROOTPID...         print the sum of Pss (kB, /proc/PID/smaps_rollup)
                         over every process of these trees
  report WORK MD SVGDIR COPY
                         read the suite's working directory, write the
                         markdown report to MD and COPY (the dated copy; its
                         chart links are rewritten to reach SVGDIR) and one
                         SVG chart per scenario into SVGDIR
"""

import json
import os
import re
import statistics
import sys
from html import escape

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchtool  # noqa: E402

SCENARIOS = [
    # key, group (--scenarios name), title, what
    ("hello10", "hello", "hello world, 10 connections",
     "raw hello-world app (bench/apps/hello.py, asgi_hello.py for ASGI servers), `wrk -c10`"),
    ("hello100", "hello", "hello world, 100 connections",
     "the same, `wrk -c100`"),
    ("flask", "flask", "Flask JSON endpoint",
     "bench/apps/flask_json.py, GET /json returns a small JSON dict, `wrk -c100`"),
    ("sleep", "sleep", "10 ms sleep, 200 connections",
     "GET /sleep?ms=10 (time.sleep for WSGI, await asyncio.sleep for ASGI), `wrk -c200 --timeout 5s`"),
    ("post", "post", "64 KiB POST",
     "POST /upload with a 64 KiB body (wrk Lua script), the app reads it all, `wrk -c50`"),
    ("stream", "stream", "10 MiB streamed download",
     "GET /stream: 10 MiB yielded in 64 KiB chunks, `wrk -c10 --timeout 10s`"),
    ("fib", "fib", "fib fairness",
     "bench/fairness_load.py: heavy clients loop on /fib?n=30 while /hello is requested at a fixed rate; light-request latency"),
    ("slowloris", "slowloris", "idle + slowloris connections held",
     "a `wrk -c10` probe on /hello alone, then while idle keep-alive and slowloris connections are held"),
    ("c10k", "c10k", "10,000 keep-alive connections",
     "bench/suite_load.py c10k: 10,000 connections, each sends GET /hello about once a second"),
]
TITLE = {k: t for k, _, t, _ in SCENARIOS}
BAR_METRIC = {"fib": "light requests/s answered", "slowloris": "probe req/s while held",
              "c10k": "requests/s answered"}


# --- /proc helpers -------------------------------------------------------------

def all_pids(roots):
    out = []
    for r in roots:
        out.extend(benchtool.tree(int(r)))
    return out


def resetpeak(roots):
    for pid in all_pids(roots):
        try:
            with open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as f:
                f.write("5")
        except OSError:
            pass


def pss_kb(roots):
    total = 0
    for pid in all_pids(roots):
        try:
            with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


# --- loading runs ----------------------------------------------------------------

def jload(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def snapshots(d, when):
    """Merged snapshot of the server and, behind nginx, uWSGI (role 'aux')."""
    procs = dict(jload(os.path.join(d, when + ".json")) or {})
    for pid, p in (jload(os.path.join(d, when + "_aux.json")) or {}).items():
        p = dict(p)
        p["role"] = "aux"
        procs[pid] = p
    return procs


def sock_errors(text):
    return sum(int(n) for n in re.findall(r"\d+", text or ""))


def load_run(d, key, clk):
    run = {"dir": d, "wrk": {"rps": None, "requests": None, "p50": None, "p99": None,
                             "non2xx": 0, "socket_errors": ""}}
    wrk = os.path.join(d, "wrk.txt")
    if os.path.isfile(wrk):
        with open(wrk, encoding="utf-8", errors="replace") as f:
            run["wrk"] = benchtool.parse_wrk(f.read())
    before, after = snapshots(d, "before"), snapshots(d, "after")
    run["rss_mb"] = sum(p["hwm_kb"] for p in after.values()) / 1024 if after else None
    run["go_rss_mb"] = sum(p["hwm_kb"] for p in after.values() if p["role"] == "go") / 1024
    run["taipan"] = any(p["role"] == "go" for p in after.values())
    try:
        with open(os.path.join(d, "pss"), encoding="ascii") as f:
            run["pss_mb"] = int(f.read().strip() or 0) / 1024
    except (OSError, ValueError):
        run["pss_mb"] = None
    run["errors"] = sock_errors(run["wrk"]["socket_errors"]) + (run["wrk"]["non2xx"] or 0)
    requests = run["wrk"]["requests"]
    if key == "fib":
        s = jload(os.path.join(d, "load.json"))
        run["fib"] = s
        if s:
            ok = sorted(x[0] for x in s["light"] if x[1] == "200")
            run["wrk"]["p50"] = ok and benchtool_pct(ok, 50) * 1000
            run["wrk"]["p99"] = ok and benchtool_pct(ok, 99) * 1000
            run["errors"] = s["light_planned"] - len(ok)
            run["wrk"]["rps"] = len(ok) / s["duration"]
            requests = len(ok) + s["heavy_total"]["ok"]
    if key == "c10k":
        s = jload(os.path.join(d, "c10k.json"))
        run["c10k"] = s
        if s:
            requests = s["requests_ok"]
            run["wrk"]["rps"] = s["requests_ok"] / s["run_s"] if s["run_s"] else None
            run["wrk"]["p50"], run["wrk"]["p99"] = s["p50_ms"], s["p99_ms"]
            run["errors"] = (s["requests_sent"] - s["requests_ok"]) + sum(s["conn_errors"].values())
    if key == "slowloris":
        # Pairs base1/held1, base2/held2, ...: kept is the median of the
        # pairs' ratios; base is the median probe-alone req/s.
        bases, ratios, i = [], [], 1
        while os.path.isfile(os.path.join(d, f"base{i}", "wrk.txt")):
            with open(os.path.join(d, f"base{i}", "wrk.txt"), encoding="utf-8", errors="replace") as f:
                b = benchtool.parse_wrk(f.read())["rps"]
            held = os.path.join(d, f"held{i}", "wrk.txt")
            h = None
            if os.path.isfile(held):
                with open(held, encoding="utf-8", errors="replace") as f:
                    h = benchtool.parse_wrk(f.read())["rps"]
            if b:
                bases.append(b)
                if h is not None:
                    ratios.append(h / b)
            run["hold"] = jload(os.path.join(d, f"hold{i}.json"))
            i += 1
        run["base"] = {"rps": statistics.median(bases) if bases else None}
        run["kept"] = statistics.median(ratios) if ratios else None
        run["kept_pairs"] = ratios
    ticks, _ = benchtool.role_ticks(before, after, ("go", "python", "server", "aux"))
    run["us"] = ({k: v / clk * 1e6 / requests for k, v in ticks.items()}
                 if requests and before else None)
    return run


def benchtool_pct(sorted_values, p):
    return sorted_values[min(len(sorted_values) - 1, int(round(p / 100 * (len(sorted_values) - 1))))]


def load_inprocess(work):
    """limits[app] = (us per request, req/s) from bench/inprocess.py's lines."""
    limits = {}
    d = os.path.join(work, "inprocess")
    if not os.path.isdir(d):
        return limits
    for name in sorted(os.listdir(d)):
        with open(os.path.join(d, name), encoding="utf-8", errors="replace") as f:
            m = re.search(r"([\d.]+) us/request, limit (\d+) req/s", f.read())
        if m:
            limits[name.removesuffix(".txt")] = (float(m.group(1)), int(m.group(2)))
    return limits


def load_all(work, clk):
    """data[key][server] = {"skip": reason} or {"runs": {round: run}, "row": median run}."""
    data = {}
    for key, _, _, _ in SCENARIOS:
        kd = os.path.join(work, key)
        if not os.path.isdir(kd):
            continue
        data[key] = {}
        for server in sorted(os.listdir(kd)):
            sd = os.path.join(kd, server)
            skip = os.path.join(sd, "skip")
            if os.path.isfile(skip):
                with open(skip, encoding="utf-8") as f:
                    data[key][server] = {"skip": f.read().strip()}
                continue
            runs = {}
            for e in os.listdir(sd):
                m = re.fullmatch(r"r(\d+)", e)
                if m:
                    runs[int(m.group(1))] = load_run(os.path.join(sd, e), key, clk)
            if not runs:
                continue
            cmd = ""
            for name in ("cmd", "cmd_aux"):
                p = os.path.join(sd, name)
                if os.path.isfile(p):
                    with open(p, encoding="utf-8") as f:
                        cmd += ("; behind it: " if cmd else "") + f.read().strip()
            row = benchtool.median_round([runs[k] for k in sorted(runs)])
            data[key][server] = {"runs": runs, "row": row, "cmd": cmd}
    return data


# --- formatting -------------------------------------------------------------------

def f0(v):
    return "—" if v is None else f"{v:,.0f}"


def f1(v):
    return "—" if v is None else f"{v:,.1f}"


def fms(v):
    return "—" if v is None or v == [] else benchtool.fmt_ms(v)


def cpu_cols(run):
    us = run.get("us")
    if not us:
        return "—", "—", "—"
    total = sum(us.values())
    if run["taipan"]:
        return f1(total), f1(us["go"]), f1(us["python"] + us["server"])
    if us["aux"]:
        # uWSGI behind nginx: Python is uWSGI, the rest is nginx.
        return f1(total), "—", f"{us['aux']:.1f} (nginx {us['server']:.1f})"
    return f1(total), "—", f1(total)


def round_cpu_ratio(entry_a, entry_b):
    """Median of per-round ratios of CPU µs a request, a/b (all processes of each server)."""
    ra, rb = entry_a["runs"], entry_b["runs"]
    vals = [sum(ra[k]["us"].values()) / sum(rb[k]["us"].values()) for k in ra
            if k in rb and ra[k].get("us") and rb[k].get("us") and sum(rb[k]["us"].values())]
    return benchtool.median(vals), vals


def round_ratio(entry_a, entry_b):
    """Median of per-round req/s ratios a/b (rounds both have)."""
    ra, rb = entry_a["runs"], entry_b["runs"]
    vals = [ra[k]["wrk"]["rps"] / rb[k]["wrk"]["rps"] for k in ra
            if k in rb and ra[k]["wrk"]["rps"] and rb[k]["wrk"]["rps"]]
    return benchtool.median(vals), vals


# --- SVG -----------------------------------------------------------------------------

def svg_bars(title, unit, rows):
    """A horizontal bar chart: rows = [(label, value or None, note)]."""
    label_w, bar_w, row_h, top = 170, 420, 24, 44
    width, height = label_w + bar_w + 140, top + row_h * len(rows) + 16
    vmax = max([v for _, v, _ in rows if v] or [1])
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="13">',
           f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
           f'<text x="10" y="20" font-size="15" font-weight="bold">{escape(title)}</text>',
           f'<text x="10" y="36" fill="#555555">{escape(unit)}</text>']
    for i, (label, v, note) in enumerate(rows):
        y = top + i * row_h
        color = "#d9822b" if label.startswith("taipan") else ("#9aa5b1" if label.startswith("nginx") else "#4a78b5")
        out.append(f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end">{escape(label)}</text>')
        if v:
            w = max(1.0, bar_w * v / vmax)
            out.append(f'<rect x="{label_w}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" fill="{color}"/>')
            out.append(f'<text x="{label_w + w + 6:.1f}" y="{y + 16}">{escape(f"{v:,.0f}" + note)}</text>')
        else:
            out.append(f'<text x="{label_w + 6}" y="{y + 16}" fill="#888888">{escape(note or "no data")}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


# --- report ---------------------------------------------------------------------------

def report(work, md_path, svg_dir, copy_path):
    meta = jload(os.path.join(work, "meta.json"))
    clk = meta["clk_tck"]
    data = load_all(work, clk)
    servers, skipped = [], {}
    with open(os.path.join(work, "servers.tsv"), encoding="utf-8") as f:
        for line in f:
            name, status, why = (line.rstrip("\n").split("\t") + ["", ""])[:3]
            servers.append(name)
            if status == "skip":
                skipped[name] = why

    def row(key, server):
        e = data.get(key, {}).get(server)
        return e["row"] if e and "row" in e else None

    out = [f"# Benchmarks: taipan against other Python servers, {meta['date']}", "",
           "Generated by `bench/suite" + (" --quick" if meta["quick"] else "") + "` (see bench/README.md); "
           "this file and its charts are rewritten by every run. Compare ratios within one run, "
           "not absolute figures across machines or runs.", "",
           f"- Machine: {meta['machine']}.",
           f"- Software: {meta['versions']}.",
           f"- Load average before the run: {meta['loadavg_before']}, after: {meta['loadavg_after']} "
           "(the 2 cores were shared with other work; figures taken while it was well above 0 are suspect). "
           f"The run took {meta['elapsed_s'] // 60} min {meta['elapsed_s'] % 60} s.",
           f"- Settings: {meta['workers']} worker processes per server ({meta['hello_workers']} for hello), "
           f"{meta['rounds']} interleaved round(s) for hello and flask (medians; each server started afresh "
           f"per round), one run for the other scenarios (all on one start of the server); wrk runs of "
           f"{meta['duration']} s after {meta['warmup']} s warm-ups. Server pinned to CPU 0 (nginx too, "
           f"in front of uWSGI), load to CPU 1. `ulimit -n` {meta['nofile']}.",
           "- bjoern and meinheld are not packaged in Debian: they are measured only when the Python "
           "running the suite can import them (a build on PYTHONPATH), in the hello and Flask scenarios.", ""]
    if skipped:
        out.append("Servers not measured:")
        out.extend(f"- {n}: {why}" for n, why in skipped.items())
        out.append("")

    # Summary table.
    cols = [("hello100", "hello c100 req/s"), ("hello10", "hello c10 req/s"), ("flask", "Flask req/s"),
            ("sleep", "sleep 10 ms req/s"), ("post", "64 KiB POST req/s"), ("stream", "10 MiB stream req/s"),
            ("fib", "fib: light p99"), ("slowloris", "probe kept"), ("c10k", "10k conns served")]
    cols = [c for c in cols if c[0] in data]
    out += ["## Summary", "",
            "| server | " + " | ".join(h for _, h in cols) + " |",
            "|---|" + "---:|" * len(cols)]
    for s in servers:
        if s in skipped:
            continue
        cells = []
        for key, _ in cols:
            r = row(key, s)
            if r is None:
                e = data[key].get(s)
                cells.append("n/a" if e and "skip" in e else "—")
            elif key == "fib":
                cells.append(fms(r["wrk"]["p99"]))
            elif key == "slowloris":
                cells.append(f"{100 * r['kept']:.0f}%" if r.get("kept") is not None else "—")
            elif key == "c10k":
                c = r.get("c10k")
                recon = f" ({c['reconnects']:,} reconnects)" if c and c.get("reconnects") else ""
                cells.append(f"{c['served']:,}/{c['conns']:,}{recon}" if c else "—")
            else:
                cells.append(f0(r["wrk"]["rps"]))
        out.append(f"| {s} | " + " | ".join(cells) + " |")
    out += ["", "n/a: the pair is not run (see the scenario's section); —: no data.", ""]

    # Goals.
    out += ["## Goals", ""]

    def ratio_goal(key, a, b, want, what, ratio=round_ratio, at_most=False):
        """A goal on the median per-round ratio a/b: req/s (at least want),
        or with ratio=round_cpu_ratio and at_most, CPU a request (at most)."""
        if key not in data:
            return f"- {what}: not measured (scenario not run)."
        ea, eb = data.get(key, {}).get(a), data.get(key, {}).get(b)
        if not ea or not eb or "runs" not in ea or "runs" not in eb:
            missing = b if (not eb or "runs" not in eb) else a
            return f"- {what}: not measured ({missing} did not run)."
        med, vals = ratio(ea, eb)
        if med is None:
            return f"- {what}: not measured (no figures)."
        met = med <= want if at_most else med >= want
        spread = f", range {min(vals):.2f}x–{max(vals):.2f}x over {len(vals)} rounds" if len(vals) > 1 else ", one round"
        return f"- {what}: **{med:.2f}x** (target {'≤' if at_most else '≥'} {want}x: {'met' if met else 'MISSED'}{spread})."

    hw = meta["hello_workers"]
    out.append(ratio_goal("hello100", "taipan", "bjoern", 0.8,
                          f"hello, {hw} worker, 100 connections, taipan / bjoern req/s"))
    out.append(ratio_goal("hello100", "taipan", "bjoern", 1.25,
                          f"hello, {hw} worker, 100 connections, taipan / bjoern CPU µs a request (Go and Python)",
                          ratio=round_cpu_ratio, at_most=True))
    out.append(ratio_goal("hello100", "taipan", "meinheld", 1.5,
                          f"hello, {hw} worker, 100 connections, taipan / meinheld"))
    out.append(ratio_goal("hello100", "taipan", "gunicorn-sync", 4,
                          f"hello, {hw} worker, 100 connections, taipan / gunicorn sync"))
    out.append(ratio_goal("hello100", "taipan", "uwsgi-nginx", 2,
                          f"hello, {hw} worker, 100 connections, taipan / uWSGI behind nginx"))
    out.append(ratio_goal("flask", "taipan", "gunicorn-sync", 1.5,
                          f"Flask JSON, {meta['workers']} workers, taipan / gunicorn sync"))
    limits = load_inprocess(work)
    r = row("flask", "taipan")
    if r and r["wrk"]["rps"] and "flask" in limits:
        frac = r["wrk"]["rps"] / limits["flask"][1]
        out.append(f"- Flask JSON, {meta['workers']} workers, taipan against the in-process limit: **{100 * frac:.0f}%** "
                   f"of {limits['flask'][1]:,} req/s (target ≥ 85% of the limit × workers: "
                   f"{'met' if frac >= 0.85 else 'MISSED'}; here the limit counts once, not × workers, because "
                   "the server and all its workers share one core; see \"In-process limit\").")
    elif "flask" in data:
        out.append("- Flask JSON against the in-process limit: not measured.")
    r = row("slowloris", "taipan")
    if r and r.get("kept") is not None:
        frac, pairs = r["kept"], r["kept_pairs"]
        spread = (f", median of {len(pairs)} pairs, range {100 * min(pairs):.0f}%–{100 * max(pairs):.0f}%"
                  if len(pairs) > 1 else ", one pair")
        out.append(f"- taipan's probe while {meta['hold_conns']} idle + {meta['hold_conns']} slowloris connections "
                   f"are held: **{100 * frac:.0f}%** of its normal throughput "
                   f"(target ≥ 90%: {'met' if frac >= 0.9 else 'MISSED'}{spread}).")
    else:
        out.append("- slowloris/idle probe ≥ 90% of normal throughput: not measured.")
    r = row("c10k", "taipan")
    if r and r.get("c10k"):
        c = r["c10k"]
        allok = c["served"] == c["conns"]
        ok = allok and r["go_rss_mb"] < 150
        out.append(f"- {c['conns']:,} keep-alive connections: {c['served']:,} served "
                   f"({c['requests_ok']:,} of {c['requests_sent']:,} requests answered), taipan's Go process "
                   f"peak RSS **{r['go_rss_mb']:.1f} MB** (target: all served, under 150 MB: {'met' if ok else 'MISSED'}).")
    else:
        out.append("- 10k keep-alive connections, all served, Go process under 150 MB RSS: not measured.")
    out.append("")

    # Per-scenario sections and charts.
    os.makedirs(svg_dir, exist_ok=True)
    svg_rel = os.path.basename(os.path.normpath(svg_dir))
    for key, _, title, what in SCENARIOS:
        if key not in data:
            continue
        out += [f"## {title}", "", what + ".", ""]
        rows_svg = []
        ref = row(key, "gunicorn-sync")
        ref_rps = ref["wrk"]["rps"] if ref else None
        if key == "fib":
            out += ["| server | light p50 | light p99 | light not answered in time | light sent | heavy done | peak RSS MB | PSS MB |",
                    "|---|---:|---:|---:|---:|---:|---:|---:|"]
        elif key == "c10k":
            out += ["| server | connections served | requests ok / sent | conn errors | reconnects | p50 | p99 | max "
                    "| CPU µs/req | Go µs/req | Python µs/req | peak RSS MB | Go peak RSS MB | PSS MB (mid-hold) |",
                    "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        else:
            extra = " | probe alone req/s | kept | held conns (idle/slow opened) |" if key == "slowloris" else " |"
            out += ["| server | req/s | vs gunicorn sync | p50 | p99 | errors | CPU µs/req | Go µs/req "
                    "| Python µs/req | peak RSS MB | PSS MB" + extra,
                    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
                    + ("---:|---:|---|" if key == "slowloris" else "")]
        notes = []
        for s in servers:
            if s in skipped:
                continue
            e = data[key].get(s)
            if e is None:
                continue
            if "skip" in e:
                notes.append(f"{s}: not run: {e['skip']}.")
                continue
            r = e["row"]
            w = r["wrk"]
            total, go, py = cpu_cols(r)
            if key == "fib":
                fs = r.get("fib") or {}
                out.append(f"| {s} | {fms(w['p50'])} | {fms(w['p99'])} | {r['errors']} | {fs.get('light_planned', '—')} "
                           f"| {(fs.get('heavy_total') or {}).get('ok', '—')} | {f1(r['rss_mb'])} | {f1(r['pss_mb'])} |")
                rows_svg.append((s, w["rps"], ""))
            elif key == "c10k":
                c = r.get("c10k") or {}
                errs = ", ".join(f"{k} {v}" for k, v in (c.get("conn_errors") or {}).items()) or "0"
                out.append(f"| {s} | {c.get('served', 0):,}/{c.get('conns', 0):,} | {c.get('requests_ok', 0):,} / "
                           f"{c.get('requests_sent', 0):,} | {errs} | {c.get('reconnects', '—')} | {fms(c.get('p50_ms'))} "
                           f"| {fms(c.get('p99_ms'))} | {fms(c.get('max_ms'))} | {total} | {go} | {py} | {f1(r['rss_mb'])} "
                           f"| {f1(r['go_rss_mb']) if r['taipan'] else '—'} | {f1(r['pss_mb'])} |")
                rows_svg.append((s, w["rps"], f" ({c.get('served', 0):,} served)"))
            else:
                vs = f"{w['rps'] / ref_rps:.2f}x" if ref_rps and w["rps"] else "—"
                line = (f"| {s} | {f0(w['rps'])} | {vs} | {fms(w['p50'])} | {fms(w['p99'])} | {r['errors']:,} "
                        f"| {total} | {go} | {py} | {f1(r['rss_mb'])} | {f1(r['pss_mb'])} |")
                note = ""
                if key == "slowloris":
                    b = (r.get("base") or {}).get("rps")
                    h = r.get("hold") or {}
                    kept = f"{100 * r['kept']:.0f}%" if r.get("kept") is not None else "—"
                    line += (f" {f0(b)} | {kept} | {h.get('idle_opened', '—')}/{h.get('slow_opened', '—')} "
                             f"(reopened {h.get('idle_reopened', 0) + h.get('slow_reopened', 0)}) |")
                    note = f" ({kept})"
                out.append(line)
                rows_svg.append((s, w["rps"], note))
                if w["socket_errors"]:
                    notes.append(f"{s}: wrk socket errors: {w['socket_errors']}"
                                 + (" (uWSGI's --http-socket closes every connection without `Connection: close`; "
                                    "wrk counts a read error per response)" if s == "uwsgi" else "") + ".")
                if w["non2xx"]:
                    notes.append(f"{s}: {w['non2xx']} non-2xx responses.")
            if len(e["runs"]) > 1:
                notes.append(f"{s}: req/s per round: " + ", ".join(
                    f0(e["runs"][k]["wrk"]["rps"]) for k in sorted(e["runs"]))
                    + f" (the table shows round {next((k for k in sorted(e['runs']) if e['runs'][k] is r), '?')}).")
        cmds = [f"{s}: `{data[key][s]['cmd']}`" for s in servers if s in data[key] and data[key][s].get("cmd")]
        svg_name = f"{key}.svg"
        with open(os.path.join(svg_dir, svg_name), "w", encoding="utf-8") as f:
            f.write(svg_bars(title, BAR_METRIC.get(key, "requests/s (higher is better)"), rows_svg))
        out += ["", f"![{title}]({svg_rel}/{svg_name})", ""]
        if notes:
            out += ["Notes:", ""] + [f"- {n}" for n in notes] + [""]
        if cmds:
            out += ["<details><summary>commands</summary>", ""] + [f"- {c}" for c in cmds] + ["", "</details>", ""]

    if limits:
        out += ["## In-process limit", "",
                "Each app called in a tight loop in one process on CPU 0, with no network and no server "
                "(`bench/inprocess.py`): what Python alone can do with it. Every server here runs on that one "
                "core, its workers included, so one process's limit is the most any of them could reach; the "
                "fraction is each server's req/s over it (for hello, one worker: the fraction per worker).", "",
                "| app | µs a call | limit req/s | " + " | ".join(s for s in servers if s != "nginx-static") + " |",
                "|---|---:|---:|" + "---:|" * len([s for s in servers if s != "nginx-static"])]
        for app, key, what in (("hello", "hello100", "hello world (WSGI), hello c100"),
                               ("asgi_hello", "hello100", "hello world (ASGI), hello c100"),
                               ("flask", "flask", "Flask JSON")):
            if app not in limits:
                continue
            us, lim = limits[app]
            cells = []
            for s in servers:
                if s == "nginx-static":
                    continue
                asgi_server = s in ("uvicorn", "hypercorn")
                r = row(key, s)
                if r is None or not r["wrk"]["rps"] or (app == "asgi_hello") != asgi_server:
                    cells.append("")
                else:
                    cells.append(f"{100 * r['wrk']['rps'] / lim:.0f}%")
            out.append(f"| {what} | {us:.2f} | {lim:,} | " + " | ".join(cells) + " |")
        out += ["", "ASGI servers (uvicorn, hypercorn) run the ASGI hello app, and neither runs Flask; "
                "taipan's hello row is its WSGI run.", ""]

    out += ["## How the figures are taken", "",
            "- req/s, p50, p99 and errors come from wrk (errors: socket errors + non-2xx responses); "
            "for fib and c10k from the load helpers.",
            "- CPU µs/req: utime+stime of every server process (and of uWSGI behind nginx) across the measured "
            "run, divided by the requests answered. For taipan, Go is the taipan process and Python its workers.",
            "- Peak RSS: the sum of VmHWM over the server's processes, reset (`/proc/PID/clear_refs`) just before "
            "the measured run, so it is that run's peak; shared pages count once per process. PSS: the sum of "
            "`Pss` from `/proc/PID/smaps_rollup` at the end of the run (mid-hold for c10k), shared pages split "
            "between the processes sharing them.",
            "- slowloris: the probe runs alone, then while the idle and slowloris connections are held; "
            "\"kept\" is the median, over several such pairs, of the second req/s over the first (the "
            "req/s, CPU and memory columns are the last held run). A connection the server closes is reopened at once.",
            "- c10k: a connection is served if it got at least one answer and every request it sent got a 200. "
            "When the server closes a kept-alive connection before answering the next request (it closed it "
            "while idle), the client retries that request once on a new connection, as RFC 9112 section 9.3.1 "
            "allows and browsers do; each such retry counts as a reconnect, and the summary shows them.",
            ""]
    text = "\n".join(out)
    with open(md_path, "w", encoding="utf-8") as f:
        f.write(text)
    rel = os.path.relpath(os.path.abspath(svg_dir), os.path.dirname(os.path.abspath(copy_path)))
    with open(copy_path, "w", encoding="utf-8") as f:
        f.write(text.replace(f"]({svg_rel}/", f"]({rel}/"))


def main(argv):
    if len(argv) >= 1 and argv[0] == "resetpeak":
        resetpeak(argv[1:])
    elif len(argv) >= 1 and argv[0] == "pss":
        print(pss_kb(argv[1:]))
    elif len(argv) == 5 and argv[0] == "report":
        report(*argv[1:])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
