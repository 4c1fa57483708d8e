#!/usr/bin/python3
"""Helper for bench/run (Python 3 standard library only).

Subcommands:
  tree ROOTPID             print ROOTPID and all its descendants, one PID a line
  snapshot ROOTPID         print JSON: per process of the tree, CPU clock ticks
                           (utime+stime from /proc/PID/stat), VmHWM (kB), role
                           and command line
  report DIR SERVER...     read DIR/SERVER/rN/{wrk.txt,before.json,after.json}
                           for every round N found there, and DIR/meta.md;
                           print the markdown report (medians over the rounds)

Roles: the root of a taipan run is its Go process ("go"); a process whose
command line mentions taipan_worker.py is a taipan Python worker ("python");
anything else (gunicorn's arbiter and workers, uWSGI's master and workers)
is "server".
"""

import json
import os
import re
import statistics
import sys


def children_map():
    """Map PID -> list of child PIDs, from /proc/*/stat.

    The parent is read from stat rather than /proc/PID/task/*/children because
    the latter needs CONFIG_PROC_CHILDREN; walking ppid works everywhere.
    taipan puts each worker in its own session, so a process group or session
    lookup would miss them: the parent link is what ties the tree together.
    """
    kids = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        stat = read_stat(int(name))
        if stat is None:
            continue
        kids.setdefault(stat["ppid"], []).append(int(name))
    return kids


def read_stat(pid):
    """Parse /proc/PID/stat; None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            data = f.read()
    except OSError:
        return None
    # comm (field 2) is in parentheses and may contain spaces: split after it.
    rest = data[data.rindex(")") + 2:].split()
    # rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    return {"ppid": int(rest[1]), "utime": int(rest[11]), "stime": int(rest[12])}


def tree(root):
    kids = children_map()
    out, todo = [], [root]
    while todo:
        pid = todo.pop(0)
        out.append(pid)
        todo.extend(sorted(kids.get(pid, [])))
    return out


def vm_hwm_kb(pid):
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def snapshot(root):
    procs = {}
    for pid in tree(root):
        stat = read_stat(pid)
        if stat is None:
            continue
        cmd = cmdline(pid)
        if "taipan_worker.py" in cmd:
            role = "python"
        elif pid == root and "taipan" in os.path.basename(cmd.split(" ")[0]):
            role = "go"
        else:
            role = "server"
        procs[str(pid)] = {
            "ticks": stat["utime"] + stat["stime"],
            "hwm_kb": vm_hwm_kb(pid),
            "role": role,
            "cmd": cmd,
        }
    return procs


# --- wrk output -------------------------------------------------------------

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def to_ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    return float(m.group(1)) * UNITS[m.group(2)] if m else None


def parse_wrk(text):
    res = {"rps": None, "requests": None, "p50": None, "p99": None,
           "non2xx": 0, "socket_errors": ""}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m:
        res["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in", text)
    if m:
        res["requests"] = int(m.group(1))
    for pct, key in (("50", "p50"), ("99", "p99")):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", text, re.M)
        if m:
            res[key] = to_ms(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if m:
        res["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors:\s+(.*)", text)
    if m:
        res["socket_errors"] = m.group(1).strip()
    return res


# --- report -----------------------------------------------------------------

def fmt_ms(v):
    if v is None:
        return "n/a"
    return f"{v * 1000:.0f} µs" if v < 1 else f"{v:.2f} ms"


def fmt(v, spec):
    return "—" if v is None else format(v, spec)


def read_snapshots(base):
    """The process snapshots taken before and after a measured run
    (BASE/before.json, BASE/after.json): pid -> role, ticks, hwm_kb."""
    with open(os.path.join(base, "before.json"), encoding="utf-8") as f:
        before = json.load(f)
    with open(os.path.join(base, "after.json"), encoding="utf-8") as f:
        after = json.load(f)
    return before, after


def role_ticks(before, after, roles=("go", "python", "server")):
    """CPU ticks each role of a server's processes used between the two
    snapshots, and notes on processes that exited meanwhile (their CPU is
    lost). A process born during the run (a respawned worker) counts in
    full."""
    ticks = dict.fromkeys(roles, 0)
    for pid, p in after.items():
        ticks[p["role"]] += p["ticks"] - before.get(pid, {}).get("ticks", 0)
    gone = sorted(set(before) - set(after))
    notes = [f"processes {', '.join(gone)} exited during the run; their CPU is not counted"] if gone else []
    return ticks, notes


def load_server(d, name, rnd, clk_tck):
    """One server's measured run in round rnd (DIR/SERVER/r<rnd>/)."""
    base = os.path.join(d, name, f"r{rnd}")
    with open(os.path.join(base, "wrk.txt"), encoding="utf-8") as f:
        wrk = parse_wrk(f.read())
    before, after = read_snapshots(base)
    ticks, notes = role_ticks(before, after)
    n = wrk["requests"]
    us = None
    if n:
        us = {k: v / clk_tck * 1e6 / n for k, v in ticks.items()}
    return {
        "name": name,
        "round": rnd,
        "wrk": wrk,
        "us": us,
        "taipan": any(p["role"] == "go" for p in after.values()),
        "nprocs": len(after),
        "rss_mb": sum(p["hwm_kb"] for p in after.values()) / 1024,
        "notes": notes,
    }


def rounds_of(d, names, marker="wrk.txt"):
    """The round numbers present (DIR/SERVER/rN holding marker), sorted."""
    found = set()
    for name in names:
        for entry in os.listdir(os.path.join(d, name)):
            m = re.fullmatch(r"r(\d+)", entry)
            if m and os.path.isfile(os.path.join(d, name, entry, marker)):
                found.add(int(m.group(1)))
    return sorted(found)


def median_round(runs):
    """The run with the median req/s: with an even number of rounds, the
    lower of the two middle ones (so that it is a real run whose other
    figures can be shown alongside). Runs without a req/s are left out;
    if none has one, the first run."""
    ok = sorted((r for r in runs if r["wrk"]["rps"]), key=lambda r: r["wrk"]["rps"])
    if not ok:
        return runs[0]
    return ok[(len(ok) - 1) // 2]


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def py_us(r):
    """Python µs/req of a run (taipan: its workers; others: every process)."""
    us = r["us"]
    if not us:
        return None
    if r["taipan"]:
        return us["python"] + us["server"]
    return sum(us.values())


def round_ratio(runs, a, b, rnd):
    """req/s of server a over server b in the same round, or None."""
    ra, rb = runs[a].get(rnd), runs[b].get(rnd)
    if ra and rb and ra["wrk"]["rps"] and rb["wrk"]["rps"]:
        return ra["wrk"]["rps"] / rb["wrk"]["rps"]
    return None


def report(d, names):
    clk_tck = os.sysconf("SC_CLK_TCK")
    rounds = rounds_of(d, names)
    # runs[name][round] -> one measured run
    runs = {n: {k: load_server(d, n, k, clk_tck) for k in rounds
                if os.path.isfile(os.path.join(d, n, f"r{k}", "wrk.txt"))}
            for n in names}
    # Main table: per server, the run of its median round.
    rows = [median_round([runs[n][k] for k in sorted(runs[n])]) for n in names]
    by = {r["name"]: r for r in rows}
    ref = by.get("gunicorn", {}).get("wrk", {}).get("rps")
    nr = len(rounds)
    even = nr % 2 == 0 and nr > 1

    out = []
    with open(os.path.join(d, "meta.md"), encoding="utf-8") as f:
        out.append(f.read().rstrip("\n"))
    out.append("")
    out.append(f"Medians of {nr} round{'s' if nr != 1 else ''} (rounds are interleaved: each runs "
               "every server once, started afresh). For each server the table shows "
               "its median round by req/s"
               + (" (with an even number of rounds, the lower of the two middle ones)" if even else "")
               + ": every column of a row comes from that one round (\"round\"), and "
               "\"vs gunicorn\" divides the median req/s by gunicorn's. "
               "The req/s of every round are listed further down.")
    out.append("")
    out.append("| server | round | procs | req/s | vs gunicorn | p50 latency | p99 latency "
               "| CPU µs/req (all procs) | Go µs/req | Python µs/req | peak RSS (MB) |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        w, us = r["wrk"], r["us"]
        ratio = f"{w['rps'] / ref:.2f}x" if ref and w["rps"] else "—"
        total = go = py = None
        if us:
            total = sum(us.values())
            if r["taipan"]:
                go, py = us["go"], us["python"] + us["server"]
            else:
                # No Go here: every process of the server runs Python.
                py = total
        out.append(
            f"| {r['name']} | {r['round']} | {r['nprocs']} | {fmt(w['rps'], ',.0f')} | {ratio} "
            f"| {fmt_ms(w['p50'])} | {fmt_ms(w['p99'])} | {fmt(total, '.1f')} "
            f"| {fmt(go, '.1f')} | {fmt(py, '.1f')} | {r['rss_mb']:.1f} |")
    out.append("")
    out.append("CPU µs/req: utime+stime of every server process (parent and all "
               "children), measured across the wrk run only, divided by the "
               "requests wrk completed. For taipan, Go is the taipan process and "
               "Python its taipan_worker.py children; for gunicorn and uWSGI all "
               "processes (arbiter/master included) run Python, so their whole "
               "CPU is in the Python column. \"procs\" is how many processes that "
               "covers. Peak RSS is the sum of VmHWM of those processes. "
               "Connections: taipan keeps them alive; gunicorn's sync worker and "
               "uWSGI's --http-socket close each one after one response, so their "
               "figures include a TCP connect/accept/close per request.")

    # Per-round table: req/s of every server in every round, and taipan's
    # ratios within each round (both servers measured minutes apart at most,
    # under the same conditions), with the median of those ratios.
    pairs = [o for o in ("gunicorn", "uwsgi") if "taipan" in runs and o in runs]
    ratios = {o: {k: round_ratio(runs, "taipan", o, k) for k in rounds} for o in pairs}
    med_ratio = {o: median(ratios[o].values()) for o in pairs}
    out.append("")
    if pairs:
        out.append("Per round: req/s of every server in every round, and taipan's req/s over "
                   "the other server's in the same round. Last row: the req/s of the main table "
                   "and the median of the per-round ratios"
                   + (" (with an even number of rounds, the mean of the two middle ones)" if even else "")
                   + ", which the targets below use.")
    else:
        out.append("Per round: req/s of every server in every round. Last row: the req/s of "
                   "the main table.")
    out.append("")
    out.append("| round | " + " | ".join(names)
               + "".join(f" | taipan/{o}" for o in pairs) + " |")
    out.append("|---:|" + "---:|" * (len(names) + len(pairs)))
    for k in rounds:
        cells = [fmt(runs[n][k]["wrk"]["rps"] if k in runs[n] else None, ",.0f") for n in names]
        cells += [fmt(ratios[o][k], ".2f") + ("x" if ratios[o][k] is not None else "") for o in pairs]
        out.append(f"| {k} | " + " | ".join(cells) + " |")
    cells = [fmt(by[n]["wrk"]["rps"], ",.0f") for n in names]
    cells += [fmt(med_ratio[o], ".2f") + ("x" if med_ratio[o] is not None else "") for o in pairs]
    out.append("| median | " + " | ".join(cells) + " |")

    notes = []
    for n in names:
        errs, explain, nexited = [], False, []
        for k in sorted(runs[n]):
            r = runs[n][k]
            w = r["wrk"]
            if w["non2xx"]:
                notes.append(f"{n}, round {k}: {w['non2xx']} non-2xx/3xx responses")
            if w["socket_errors"]:
                e = f"round {k}: {w['socket_errors']}"
                m = re.search(r"read (\d+)", w["socket_errors"])
                if m and w["requests"] and int(m.group(1)) >= 0.9 * w["requests"]:
                    explain = True
                m = re.search(r"timeout (\d+)", w["socket_errors"])
                if m and int(m.group(1)):
                    e += (f" ({m.group(1)} requests got no answer within wrk's 2 s"
                          " timeout and are missing from the latency percentiles)")
                errs.append(e)
            nexited.extend(f"{n}, round {k}: {x}" for x in r["notes"])
        if errs:
            note = f"{n}: wrk socket errors: " + "; ".join(errs)
            if explain:
                # uWSGI's --http-socket closes the connection after every
                # response without saying "Connection: close"; wrk counts each
                # such close as a read error, then reconnects. The responses
                # themselves were complete and are counted.
                note += (" (read errors about one per request: the server closes the"
                         " connection after each response without a Connection: close"
                         " header; wrk counts that as a read error and reconnects)")
            notes.append(note)
        notes.extend(nexited)
    if notes:
        out.append("")
        out.append("Notes:")
        out.extend(f"- {n}" for n in notes)

    tp = runs.get("taipan")
    if tp and by["taipan"]["wrk"]["rps"]:
        out.append("")
        out.append("Targets (taipan >= 3x gunicorn, >= 1.5x uWSGI, Python worker CPU <= 8 µs/req)"
                   + (f", medians over the {nr} rounds:" if nr > 1 else ":"))
        for other, want in (("gunicorn", 3.0), ("uwsgi", 1.5)):
            ratio = med_ratio.get(other)
            if ratio is not None:
                each = [v for v in ratios[other].values() if v is not None]
                verdict = "ok" if ratio >= want else "MISSED"
                spread = (f"median of {len(each)} per-round ratios, range "
                          f"{min(each):.2f}x–{max(each):.2f}x" if len(each) > 1 else "one round")
                out.append(f"- taipan/{other} req/s: {ratio:.2f}x, {spread} (target {want}x: {verdict})")
        py = median(py_us(r) for r in tp.values())
        go = median(r["us"]["go"] if r["us"] else None for r in tp.values())
        if py is not None:
            verdict = "ok" if py <= 8 else "MISSED"
            over = "median over the rounds" if len(tp) > 1 else "one round"
            out.append(f"- taipan Python worker CPU: {py:.2f} µs/req, {over} "
                       f"(target 8: {verdict}); Go: {fmt(go, '.2f')} µs/req")
    print("\n".join(out))


def main(argv):
    if len(argv) >= 2 and argv[0] == "tree":
        print("\n".join(str(p) for p in tree(int(argv[1]))))
    elif len(argv) >= 2 and argv[0] == "snapshot":
        json.dump(snapshot(int(argv[1])), sys.stdout, indent=1)
        print()
    elif len(argv) >= 3 and argv[0] == "report":
        report(argv[1], argv[2:])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
