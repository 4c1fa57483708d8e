#!/usr/bin/python3
"""Load generator and report for bench/procman (Python 3 standard library only).

Subcommands:
  load --port P [--host H] [--duration S] [--light N] [--sleepers N]
       [--timeout S] [--mark-file F] [--stop-file F] --out JSON
      Run N client threads on GET / and N on GET /sleep (20 ms), each with one
      persistent http.client connection, for S seconds or until F exists
      (--stop-file). Every attempt is counted, by outcome: the HTTP status,
      or a connection error (see OUTCOMES). After an error the thread drops
      its connection and opens a new one with the next request (after a
      refused connect it first sleeps 20 ms, so a dead port is not spun on).
      If --mark-file holds a Unix time (written by bench/procman right before
      it signals the server), the attempts are also split at that moment.
      Writes a JSON summary to --out.
  report DIR
      Read DIR/meta.md and DIR/<scenario>/<server>/{load.json,info} and print
      the markdown report.

OUTCOMES (the error classes; a status code is counted under its number):
  refused       connect() refused: nothing listens on the port
  lost_reused   the connection broke (EOF or reset) before any byte of the
                response, on a kept-alive connection that had already served
                a request: the server closed it as the request went out
  lost_fresh    the same on a connection opened for this request: it was
                accepted (by the kernel or the server) and then dropped
  lost_body     the connection broke after the status line, mid-response
  timeout       no answer within --timeout
  other:NAME    any other exception
"""

import argparse
import http.client
import json
import os
import socket
import sys
import threading
import time

SLEEP_AFTER_REFUSED = 0.02
LOST = ("lost_reused", "lost_fresh", "lost_body")


# --- load -------------------------------------------------------------------

def client(host, port, path, timeout, deadline, stop_file, events, pids):
    """One client thread: requests in a loop until the deadline or the stop
    file; appends (start, end, outcome) for every attempt to events."""
    conn = None
    while True:
        t0 = time.time()
        if t0 >= deadline or (stop_file and os.path.exists(stop_file)):
            break
        if conn is None:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        # http.client drops the socket after a "Connection: close" response,
        # so a socket still there means a kept-alive connection is reused.
        reused = conn.sock is not None
        stage = "send"
        try:
            conn.request("GET", path)
            stage = "head"
            resp = conn.getresponse()
            stage = "body"
            resp.read()
            outcome = str(resp.status)
            pid = resp.getheader("X-Worker-Pid")
            if pid:
                pids[pid] = pids.get(pid, 0) + 1
        except ConnectionRefusedError:
            outcome = "refused"
        except (socket.timeout, TimeoutError):
            outcome = "timeout"
        except (ConnectionError, http.client.HTTPException, OSError) as e:
            if stage == "body":
                outcome = "lost_body"
            elif isinstance(e, (ConnectionError, http.client.RemoteDisconnected,
                                http.client.BadStatusLine)):
                outcome = "lost_reused" if reused else "lost_fresh"
            else:
                outcome = "other:" + type(e).__name__
        except Exception as e:  # noqa: BLE001 - count it rather than die
            outcome = "other:" + type(e).__name__
        events.append((t0, time.time(), outcome))
        if not outcome.isdigit():
            conn.close()
            conn = None
            if outcome == "refused":
                time.sleep(SLEEP_AFTER_REFUSED)
    if conn is not None:
        conn.close()


def count(events):
    c = {"requests": len(events)}
    for _, _, outcome in events:
        c[outcome] = c.get(outcome, 0) + 1
    return c


def load(args):
    threads, all_events, all_pids = [], [], []
    start = time.time()
    deadline = start + args.duration
    plan = [("/", args.light), ("/sleep", args.sleepers)]
    for path, n in plan:
        for _ in range(n):
            ev, pids = [], {}
            all_events.append(ev)
            all_pids.append(pids)
            t = threading.Thread(target=client, daemon=True,
                                 args=(args.host, args.port, path, args.timeout,
                                       deadline, args.stop_file, ev, pids))
            t.start()
            threads.append(t)
    # Bounded: every thread stops at the deadline, plus at most one request
    # timeout; a thread still stuck after that is left behind (daemon) and
    # reported.
    stuck = 0
    for t in threads:
        t.join(max(0.0, deadline + args.timeout + 2 - time.time()))
        stuck += t.is_alive()
    end = time.time()
    per_pid = {}
    for pids in all_pids:
        for pid, k in list(pids.items()):
            per_pid[pid] = per_pid.get(pid, 0) + k
    events = sorted((e for ev in list(all_events) for e in list(ev)), key=lambda e: e[0])

    # ok responses per whole second of the run, to show capacity dips.
    buckets = {}
    for t0, t1, outcome in events:
        if outcome.startswith("2"):
            sec = int(t1 - start)
            buckets[sec] = buckets.get(sec, 0) + 1
    full = [buckets.get(s, 0) for s in range(int(end - start))]

    out = {
        "duration_s": end - start,
        "clients": {"/": args.light, "/sleep": args.sleepers},
        "timeout_s": args.timeout,
        "stuck_threads": stuck,
        "all": count(events),
        "workers_seen": len(per_pid),
        "max_per_worker": max(per_pid.values(), default=0),
        "ok_per_s": full,
    }
    out["by_path"] = {}
    mark = None
    if args.mark_file and os.path.exists(args.mark_file):
        with open(args.mark_file, encoding="utf-8") as f:
            text = f.read().strip()
        mark = float(text) if text else None
    out["mark"] = mark
    if mark is not None:
        before = [e for e in events if e[1] <= mark]
        inflight = [e for e in events if e[0] < mark < e[1]]
        after = [e for e in events if e[0] >= mark]
        out["before_mark"] = count(before)
        out["inflight_at_mark"] = count(inflight)
        out["started_after_mark"] = count(after)
        out["ended_after_mark"] = count([e for e in events if e[1] > mark])
        oks = [e[1] - mark for e in events if e[1] > mark and e[2].startswith("2")]
        out["last_ok_after_mark_s"] = max(oks) if oks else None
        refused = [e[0] - mark for e in events if e[0] >= mark and e[2] == "refused"]
        out["first_refused_after_mark_s"] = min(refused) if refused else None
        # How long before the signal the earliest lost request was sent (a
        # few µs: the keep-alive close race; more: a request the server had).
        lost = [e[0] - mark for e in events if e[1] > mark and e[2] in LOST]
        out["earliest_lost_start_s"] = min(lost) if lost else None
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    return 0


# --- report -----------------------------------------------------------------

SCENARIOS = {
    "reload": "1. reload: 10 SIGHUPs to the master, one a second",
    "max-requests": "2. max-requests: `--max-requests 50`",
    "kill": "3. kill: SIGKILL a random worker every second, 10 times",
    "term": "4. term: SIGTERM to the master after 3 s of load",
}


def read_info(path):
    info = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if "=" in line:
                    k, v = line.rstrip("\n").split("=", 1)
                    info[k] = v
    except OSError:
        pass
    return info


def n(c, *keys):
    return sum(c.get(k, 0) for k in keys)


def ok_of(c):
    return sum(v for k, v in c.items() if k.isdigit() and k.startswith("2"))


def failed_of(c):
    """Non-2xx responses as '12 (502: 12)'."""
    st = {k: v for k, v in c.items() if k.isdigit() and not k.startswith("2")}
    total = sum(st.values())
    if not total:
        return "0"
    return f"{total} (" + ", ".join(f"{k}: {v}" for k, v in sorted(st.items())) + ")"


def lost_cell(c):
    total = n(c, *LOST)
    if not total:
        return "0"
    parts = []
    for key, label in (("lost_fresh", "fresh conn"), ("lost_reused", "reused keep-alive"),
                       ("lost_body", "mid-response")):
        if c.get(key):
            parts.append(f"{label}: {c[key]}")
    return f"{total} (" + ", ".join(parts) + ")"


def others(c):
    parts = []
    if c.get("timeout"):
        parts.append(f"{c['timeout']} timed out")
    for k, v in sorted(c.items()):
        if k.startswith("other:"):
            parts.append(f"{v} × {k[6:]}")
    return parts


def rate_cell(ld):
    per_s = ld.get("ok_per_s") or []
    if not per_s:
        return "—"
    ok = ok_of(ld["all"])
    return f"{ok / ld['duration_s']:,.0f} / {min(per_s):,}"


def report(d):
    out = []
    with open(os.path.join(d, "meta.md"), encoding="utf-8") as f:
        out.append(f.read().rstrip("\n"))
    results = {}
    for scen in SCENARIOS:
        sdir = os.path.join(d, scen)
        if not os.path.isdir(sdir):
            continue
        for name in ("taipan", "gunicorn"):
            p = os.path.join(sdir, name, "load.json")
            if os.path.isfile(p):
                with open(p, encoding="utf-8") as f:
                    ld = json.load(f)
                results[(scen, name)] = (ld, read_info(os.path.join(sdir, name, "info")))

    for scen, title in SCENARIOS.items():
        rows = [(name, *results[(scen, name)]) for name in ("taipan", "gunicorn")
                if (scen, name) in results]
        if not rows:
            continue
        out.append("")
        out.append(f"## {title}")
        out.append("")
        if scen != "term":
            out.append("| server | requests | ok | failed (status) | resets/EOF | refused "
                       "| ok/s (mean / lowest 1 s) | notes |")
            out.append("|---|---:|---:|---:|---:|---:|---:|---|")
            for name, ld, info in rows:
                c = ld["all"]
                notes = [f"{info.get('workers', '?')} workers"]
                if info.get("signals"):
                    notes.append(f"{info['signals']} signals sent")
                if info.get("killed"):
                    notes.append(f"killed PIDs {info['killed']}")
                notes.append(f"{ld['workers_seen']} distinct worker PIDs served, "
                             f"the busiest {ld.get('max_per_worker', 0):,} requests")
                notes.append(f"workers at the end: {info.get('workers_end', '?')}")
                notes.append(f"GET / after the run: {info.get('after_status', '?')}")
                notes += others(c)
                if ld.get("stuck_threads"):
                    notes.append(f"{ld['stuck_threads']} client threads still stuck at the end")
                out.append(f"| {name} | {c['requests']:,} | {ok_of(c):,} | {failed_of(c)} "
                           f"| {lost_cell(c)} | {n(c, 'refused'):,} | {rate_cell(ld)} "
                           f"| {'; '.join(notes)} |")
        else:
            out.append("Counts are of the requests that ended after the signal (the ones in "
                       "flight at the signal and every one started after it), until 1 s after "
                       "the master exited.")
            out.append("")
            out.append("| server | requests after signal | ok | failed (status) | resets/EOF "
                       "| refused | exit code | time to exit | notes |")
            out.append("|---|---:|---:|---:|---:|---:|---:|---:|---|")
            for name, ld, info in rows:
                c = ld.get("ended_after_mark")
                if c is None:
                    out.append(f"| {name} | — | — | — | — | — | {info.get('exit_code', '?')} "
                               f"| — | no signal mark: {info.get('error', 'no data')} |")
                    continue
                inf = ld["inflight_at_mark"]
                notes = [f"{info.get('workers', '?')} workers",
                         f"before the signal: {ld['before_mark']['requests']:,} requests, "
                         f"{ok_of(ld['before_mark']):,} ok"]
                inf_parts = [f"{ok_of(inf)} ok"]
                if n(inf, *LOST):
                    inf_parts.append(f"{n(inf, *LOST)} reset/EOF")
                fl = failed_of(inf)
                if fl != "0":
                    inf_parts.append(f"{fl} non-2xx")
                inf_parts += others(inf)
                notes.append(f"in flight at the signal: {inf['requests']} "
                             f"({', '.join(inf_parts)})")
                if ld.get("last_ok_after_mark_s") is not None:
                    notes.append(f"last ok response {ld['last_ok_after_mark_s'] * 1000:.0f} ms "
                                 "after the signal")
                if ld.get("first_refused_after_mark_s") is not None:
                    notes.append(f"first refused connect {ld['first_refused_after_mark_s'] * 1000:.0f} ms "
                                 "after the signal")
                if ld.get("earliest_lost_start_s") is not None:
                    notes.append("the earliest reset/EOF request was sent "
                                 f"{ld['earliest_lost_start_s'] * 1000:+.2f} ms from the signal")
                if info.get("leftover"):
                    notes.append(f"processes left running after the master exited: {info['leftover']}")
                notes += others(c)
                ex = info.get("exit_s")
                ex = f"{float(ex) * 1000:.0f} ms" if ex else f"did not exit within {info.get('term_wait', '?')} s"
                out.append(f"| {name} | {c['requests']:,} | {ok_of(c):,} | {failed_of(c)} "
                           f"| {lost_cell(c)} | {n(c, 'refused'):,} | {info.get('exit_code', '—')} "
                           f"| {ex} | {'; '.join(notes)} |")
        out.append("")
        out.extend(meaning(scen, {name: (ld, info) for name, ld, info in rows}))

    out.append("")
    out.append("Columns: **requests** counts every attempt, so requests = ok + failed + "
               "resets/EOF + refused + timeouts/other (in the notes). **failed** is a "
               "complete HTTP response with a non-2xx status. **resets/EOF** is a "
               "connection that was accepted and then broke without a response: on a "
               "fresh connection (accepted by the kernel or the server, then dropped), on "
               "a reused keep-alive connection (closed by the server as the request went "
               "out; a client may retry those), or mid-response. **refused** is a connect "
               "that nothing accepted; a client sleeps 20 ms after one, so that count "
               "depends on that pause and on how long the port stayed closed. **ok/s** is "
               "the mean over the run and the lowest whole second. gunicorn's sync worker "
               "closes the connection after every response, so each of its requests is a "
               "fresh connection; taipan keeps connections alive.")
    print("\n".join(out))


def meaning(scen, by):
    """Short data-driven reading of one scenario."""
    t = by.get("taipan")
    g = by.get("gunicorn")
    lines = []

    def lost(x, key="all"):
        return n(x[0][key], *LOST)

    def bad(x, key="all"):
        c = x[0][key]
        return sum(v for k, v in c.items() if k.isdigit() and not k.startswith("2"))

    def summary(name, x, key="all"):
        c = x[0][key]
        parts = [f"{ok_of(c):,} ok"]
        if bad(x, key):
            parts.append(f"{failed_of(c)} non-2xx")
        if lost(x, key):
            parts.append(f"{lost(x, key)} reset/EOF")
        if c.get("refused"):
            parts.append(f"{c['refused']} refused")
        parts += others(c)
        clean = len(parts) == 1
        return f"{name}: " + ", ".join(parts) + (" — nothing lost" if clean else "")

    have = [(nm, x) for nm, x in (("taipan", t), ("gunicorn", g)) if x]
    key = "ended_after_mark" if scen == "term" else "all"
    if any(key not in x[0] for _, x in have):
        key = "all"
    lines.append("Result: " + "; ".join(summary(nm, x, key) for nm, x in have) + ".")
    def dip(nm, x):
        ld = x[0]
        per_s = ld.get("ok_per_s") or []
        mean = ok_of(ld["all"]) / ld["duration_s"] if ld["duration_s"] else 0
        if not per_s or not mean:
            return None
        return f"{nm}'s lowest second was {min(per_s) / mean:.0%} of its mean"

    dips = [d for d in (dip(nm, x) for nm, x in have) if d]
    if scen == "reload":
        lines.append("What it means: on HUP both start a new set of workers and retire the "
                     "old ones gracefully (gunicorn's arbiter also re-reads its configuration); "
                     "the distinct worker PIDs (2 + 2 per HUP if every HUP replaced both "
                     "workers) show that the reloads happened. Any reset/EOF or refused count "
                     "is a request a reload lost. Capacity while reloading: "
                     + "; ".join(dips) + ".")
    elif scen == "max-requests":
        parts = ["What it means: a worker should be recycled after about 50 requests, so "
                 "the distinct worker PIDs are the number of workers started and the busiest "
                 "worker should stay near 50."]
        if g:
            ld = g[0]
            parts.append(f"gunicorn's sync worker exits after its 50th request and the arbiter "
                         f"forks a replacement: {ld['workers_seen']} workers for "
                         f"{ok_of(ld['all']):,} requests, and the fork every 50 requests is "
                         f"what its throughput ({ok_of(ld['all']) / ld['duration_s']:,.0f} ok/s) "
                         "pays for.")
        if t:
            ld = t[0]
            busiest = ld.get("max_per_worker", 0)
            per = ok_of(ld["all"]) / max(ld["workers_seen"], 1)
            parts.append(f"taipan started {ld['workers_seen']} workers for "
                         f"{ok_of(ld['all']):,} requests (one per {per:,.0f} on average; the "
                         f"busiest served {busiest:,}): it starts the replacement first and "
                         "retires the old worker only once the new one is ready, so under "
                         "load a worker overshoots 50 by what it serves while its replacement "
                         "boots, and capacity never drops.")
        parts.append("Capacity: " + "; ".join(dips) + ".")
        lines.append(" ".join(parts))
    elif scen == "kill":
        parts = ["What it means: a worker killed with SIGKILL mid-request loses that request "
                 "(a kill that finds the worker idle loses nothing). A gunicorn sync worker "
                 "owns the client socket, so its death closes the connection: the client sees "
                 "a reset/EOF and no response. taipan's Go process owns the connection, so it "
                 "answers the request the dead worker was running with 502 Bad Gateway, "
                 "requeues the ones it had sent to it but not started, keeps the connection "
                 "open, and starts a replacement."]
        if t and lost(t):
            parts.append(f"taipan still lost {lost(t)} connections here: a response that had "
                         "started when the worker died is cut.")
        parts.append("Capacity: " + "; ".join(dips) + ".")
        lines.append(" ".join(parts))
    elif scen == "term":
        parts = ["What it means: both drain on SIGTERM (finish what is in flight, then exit "
                 "0) and stop listening, so later connects are refused; the refused count "
                 "itself only measures how long the clients kept trying."]
        for nm, x in have:
            ld = x[0]
            c = ld.get("ended_after_mark")
            if not c:
                continue
            inf = ld["inflight_at_mark"]
            if n(inf, *LOST) == 0 and bad(x, "inflight_at_mark") == 0 and inf["requests"]:
                parts.append(f"{nm} completed all {inf['requests']} requests in flight at the "
                             "signal.")
            if c.get("lost_reused"):
                parts.append(f"{nm}'s {c['lost_reused']} EOFs are on kept-alive connections "
                             "it closed as idle at the signal while the client's next request "
                             "was already on its way (the keep-alive close race: the request "
                             "was never read, and an idempotent request may be retried; a "
                             "client cannot tell it from a lost request otherwise).")
            if c.get("lost_fresh"):
                sa = ld["started_after_mark"].get("lost_fresh", 0)
                parts.append(f"{nm}'s {c['lost_fresh']} resets are on new connections "
                             f"({sa} of them opened after the signal), accepted and dropped "
                             "unanswered"
                             + ("; gunicorn's arbiter closes its copy of the listening socket "
                                "at once, but the workers keep theirs until they exit, so "
                                "connects still succeed into the kernel's backlog and are reset "
                                "when the last worker exits." if nm == "gunicorn" else "."))
        lines.append(" ".join(parts))
    return lines


def main(argv):
    if argv and argv[0] == "report" and len(argv) == 2:
        report(argv[1])
        return 0
    if argv and argv[0] == "load":
        p = argparse.ArgumentParser(prog="procman_load.py load")
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--duration", type=float, default=12)
        p.add_argument("--light", type=int, default=16)
        p.add_argument("--sleepers", type=int, default=1)
        p.add_argument("--timeout", type=float, default=5)
        p.add_argument("--mark-file")
        p.add_argument("--stop-file")
        p.add_argument("--out", required=True)
        return load(p.parse_args(argv[1:]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
