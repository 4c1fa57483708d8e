#!/usr/bin/python3
"""Helper for bench/run (Python 3 standard library only).

Subcommands:
  tree ROOTPID             print ROOTPID and all its descendants, one PID a line
  snapshot ROOTPID         print JSON: per process of the tree, CPU clock ticks
                           (utime+stime from /proc/PID/stat), VmHWM (kB), role
                           and command line
  report DIR SERVER...     read DIR/SERVER/{wrk.txt,before.json,after.json,cmd}
                           and DIR/meta.md, print the markdown report

Roles: the root of a taipan run is its Go process ("go"); a process whose
command line mentions taipan_worker.py is a taipan Python worker ("python");
anything else (gunicorn's arbiter and workers, uWSGI's master and workers)
is "server".
"""

import json
import os
import re
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


def load_server(d, name, clk_tck):
    base = os.path.join(d, name)
    with open(os.path.join(base, "wrk.txt"), encoding="utf-8") as f:
        wrk = parse_wrk(f.read())
    with open(os.path.join(base, "before.json"), encoding="utf-8") as f:
        before = json.load(f)
    with open(os.path.join(base, "after.json"), encoding="utf-8") as f:
        after = json.load(f)
    ticks = {"go": 0, "python": 0, "server": 0}
    notes = []
    for pid, p in after.items():
        # A process born during the run (a respawned worker) counts in full.
        ticks[p["role"]] += p["ticks"] - before.get(pid, {}).get("ticks", 0)
    gone = sorted(set(before) - set(after))
    if gone:
        notes.append(f"processes {', '.join(gone)} exited during the run; their CPU is not counted")
    n = wrk["requests"]
    us = None
    if n:
        us = {k: v / clk_tck * 1e6 / n for k, v in ticks.items()}
    return {
        "name": name,
        "wrk": wrk,
        "us": us,
        "taipan": any(p["role"] == "go" for p in after.values()),
        "nprocs": len(after),
        "rss_mb": sum(p["hwm_kb"] for p in after.values()) / 1024,
        "notes": notes,
    }


def report(d, names):
    clk_tck = os.sysconf("SC_CLK_TCK")
    rows = [load_server(d, n, clk_tck) for n in names]
    by = {r["name"]: r for r in rows}
    ref = by.get("gunicorn", {}).get("wrk", {}).get("rps")

    out = []
    with open(os.path.join(d, "meta.md"), encoding="utf-8") as f:
        out.append(f.read().rstrip("\n"))
    out.append("")
    out.append("| server | procs | req/s | vs gunicorn | p50 latency | p99 latency "
               "| CPU µs/req (all procs) | Go µs/req | Python µs/req | peak RSS (MB) |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
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
            f"| {r['name']} | {r['nprocs']} | {fmt(w['rps'], ',.0f')} | {ratio} "
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

    notes = []
    for r in rows:
        w = r["wrk"]
        if w["non2xx"]:
            notes.append(f"{r['name']}: {w['non2xx']} non-2xx/3xx responses")
        if w["socket_errors"]:
            note = f"{r['name']}: wrk socket errors: {w['socket_errors']}"
            m = re.search(r"read (\d+)", w["socket_errors"])
            if m and w["requests"] and int(m.group(1)) >= 0.9 * w["requests"]:
                # uWSGI's --http-socket closes the connection after every
                # response without saying "Connection: close"; wrk counts each
                # such close as a read error, then reconnects. The responses
                # themselves were complete and are counted.
                note += (" (about one per request: the server closes the connection"
                         " after each response without a Connection: close header;"
                         " wrk counts that as a read error and reconnects)")
            m = re.search(r"timeout (\d+)", w["socket_errors"])
            if m and int(m.group(1)):
                note += (f"; {m.group(1)} requests got no answer within wrk's 2 s"
                         " timeout and are missing from the latency percentiles")
            notes.append(note)
        notes.extend(f"{r['name']}: {n}" for n in r["notes"])
    if notes:
        out.append("")
        out.append("Notes:")
        out.extend(f"- {n}" for n in notes)

    tp = by.get("taipan")
    if tp and tp["wrk"]["rps"]:
        out.append("")
        out.append("Bar (taipan >= 3x gunicorn, >= 1.5x uWSGI, Python worker CPU <= 8 µs/req):")
        for other, want in (("gunicorn", 3.0), ("uwsgi", 1.5)):
            o = by.get(other)
            if o and o["wrk"]["rps"]:
                ratio = tp["wrk"]["rps"] / o["wrk"]["rps"]
                verdict = "ok" if ratio >= want else "MISSED"
                out.append(f"- taipan/{other} req/s: {ratio:.2f}x (bar {want}x: {verdict})")
        if tp["us"]:
            py = tp["us"]["python"] + tp["us"]["server"]
            verdict = "ok" if py <= 8 else "MISSED"
            out.append(f"- taipan Python worker CPU: {py:.2f} µs/req (bar 8: {verdict}); "
                       f"Go: {tp['us']['go']:.2f} µs/req")
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
