#!/usr/bin/env python3
"""Load and soak run of a simulated federation (bench/soak.sh, tests/soak_slow.sh).

Starts concord-sim, samples VmRSS of the coordinator and of every client from
/proc/PID/status every --interval seconds, and when the run ends writes:

  samples.csv    t_unix, process name, pid, VmRSS KiB (every sample)
  rounds.csv     per round: close time, duration, participants, accepted, coordinator
                 RSS, client RSS median / max
  summary.json   everything below, machine-readable
  summary.txt    the same, readable

Per round k (k = 1..R: "after k rounds", history round k-1) a process's RSS is the largest
sample taken while round k was open (from the close of round k-1 to the close of round k,
times from the coordinator's round_closed log lines), or the last sample before the close
when the round was shorter than the sampling interval. Growth is RSS(R) - RSS(from); the
slope is the least-squares fit over rounds from..R, in MiB per round. Rounds 5..20 (the
window of the issue's criterion) are reported too when the judged window differs.

Checks (any failure: exit 1):
  * every round closed "ok" with every participant's update (len(responded) ==
    len(participants) == hospitals);
  * no update lost: every update a client logged as sent (update_sent) was acknowledged
    (update_acked of that round, no Nack), the coordinator logged it as accepted, and the
    client is in that round's responded list; sent == acked == accepted == Σ responded;
  * coordinator RSS growth from round --from to the last round below --max-coord-growth-mib,
    and the same for every client below --max-client-growth-mib.
Python is a test / benchmark tool here, never part of the product."""
import argparse
import bisect
import csv
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import time

MIB = 1024.0  # KiB per MiB


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", required=True, help="build dir with concord-sim and the daemons")
    ap.add_argument("--out", required=True, help="output dir (the federation's workdir is OUT/run)")
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--interval", type=float, default=0.05, help="RSS sampling period, seconds")
    ap.add_argument("--from-round", type=int, default=5, help="first round of the flatness window")
    ap.add_argument("--max-coord-growth-mib", type=float, default=1.0)
    ap.add_argument("--max-client-growth-mib", type=float, default=0.5)
    ap.add_argument("--timeout", type=float, default=3600.0, help="give up (and fail) after this many seconds")
    ap.add_argument("sim_args", nargs=argparse.REMAINDER, help="-- then concord-sim arguments (data, split, methods)")
    a = ap.parse_args(argv)
    if a.sim_args and a.sim_args[0] == "--":
        a.sim_args = a.sim_args[1:]
    if not 1 <= a.from_round < a.rounds:
        ap.error("--from-round must lie in [1, rounds)")
    return a


# ---- sampling ---------------------------------------------------------------------------------

def read_status(pid):
    """(name, ppid, VmRSS KiB) of pid, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            text = f.read()
    except OSError:
        return None
    name = re.search(r"^Name:\s*(\S+)", text, re.M)
    ppid = re.search(r"^PPid:\s*(\d+)", text, re.M)
    rss = re.search(r"^VmRSS:\s*(\d+) kB", text, re.M)
    if not (name and ppid and rss):
        return None  # a zombie has no VmRSS
    return name.group(1), int(ppid.group(1)), int(rss.group(1))


def daemon_label(pid):
    """'coordinator' or the hospital's id, from the command line concord-sim gave it."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().decode(errors="replace").split("\0")
    except OSError:
        return None
    exe = os.path.basename(argv[0]) if argv else ""
    if exe == "concord-coordinator":
        return "coordinator"
    if exe == "concord-client" and "--config" in argv:
        return os.path.splitext(os.path.basename(argv[argv.index("--config") + 1]))[0]
    return None


def find_daemons(sim_pid, known):
    """Adds concord-sim's children that exec'd a daemon to known (pid -> label)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in known:
            continue
        st = read_status(int(entry))
        if st and st[1] == sim_pid:
            label = daemon_label(int(entry))
            if label:
                known[int(entry)] = label


def run_and_sample(a, work):
    """Runs concord-sim to the end; returns (exit status, samples [(t, label, pid, kib)])."""
    cmd = [os.path.join(a.build, "concord-sim"), "--clients", str(a.clients), "--rounds", str(a.rounds),
           "--workdir", work] + a.sim_args
    samples, daemons = [], {}
    with open(os.path.join(a.out, "sim.out"), "w") as out:
        sim = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        start = time.time()
        while sim.poll() is None:
            if len(daemons) < a.clients + 1:
                find_daemons(sim.pid, daemons)
            now = time.time()
            for pid, label in list(daemons.items()):
                st = read_status(pid)
                if st and st[1] == sim.pid:
                    samples.append((now, label, pid, st[2]))
            if now - start > a.timeout:
                sim.terminate()
                sim.wait()
                return -1, samples
            time.sleep(a.interval)
    return sim.returncode, samples


# ---- the run's own records ----------------------------------------------------------------------

LOG_TIME = re.compile(r"^(\S+Z) level=\w+ comp=\w+ event=(\w+)(.*)$")


def log_events(path):
    """(unix time, event, {key: value}) of each line of a daemon's log."""
    out = []
    with open(path, errors="replace") as f:
        for line in f:
            m = LOG_TIME.match(line)
            if not m:
                continue
            t = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%fZ")
            t = t.replace(tzinfo=datetime.timezone.utc).timestamp()
            kv = dict(re.findall(r'(\w+)=("[^"]*"|\S+)', m.group(3)))
            out.append((t, m.group(2), kv))
    return out


def accounting(work, history):
    """Every update sent, acknowledged, refused and accepted, by client and round."""
    logs = os.path.join(work, "logs")
    acc = {"sent": 0, "acked": 0, "nacked": 0, "accepted": 0, "duplicate_tasks": 0, "disconnects": 0,
           "lost": []}
    responded = {h["round"]: set(h["responded"]) for h in history}
    accepted = set()
    for t, ev, kv in log_events(os.path.join(logs, "coordinator.log")):
        if ev == "update_accepted":
            accepted.add((kv["client"], int(kv["round"])))
    acc["accepted"] = len(accepted)
    for name in sorted(os.listdir(logs)):
        if name == "coordinator.log" or not name.endswith(".log"):
            continue
        client = name[:-4]
        sent, acked, nacked = [], set(), []
        for t, ev, kv in log_events(os.path.join(logs, name)):
            if ev == "update_sent":
                sent.append(int(kv["round"]))
            elif ev == "update_acked":
                acked.add(int(kv["round"]))
            elif ev == "nack":
                nacked.append((int(kv["round"]), kv.get("reason", "")))
            elif ev == "task_duplicate":
                acc["duplicate_tasks"] += 1
            elif ev == "disconnected":
                acc["disconnects"] += 1
        acc["sent"] += len(sent)
        acc["acked"] += len(acked)
        acc["nacked"] += len(nacked)
        problems = {}
        for r in sent:
            for why, bad in (("not acknowledged", r not in acked),
                             ("not accepted by the coordinator", (client, r) not in accepted),
                             ("not in the round's responded list", client not in responded.get(r, ()))):
                if bad:
                    problems.setdefault(r, []).append(why)
        for r, reason in nacked:
            problems.setdefault(r, []).append("nack: " + reason)
        acc["lost"] += [{"client": client, "round": r, "why": why} for r, why in sorted(problems.items())]
    return acc


# ---- per-round memory ---------------------------------------------------------------------------

def per_round(series, closes):
    """RSS (KiB) of one process in each round: the largest sample while it was open."""
    out, prev = [], float("-inf")
    series = sorted(series)
    times = [t for t, _ in series]
    for close in closes:
        lo, hi = bisect.bisect_right(times, prev), bisect.bisect_right(times, close)
        inside = [kib for _, kib in series[lo:hi]]
        out.append(max(inside) if inside else (series[hi - 1][1] if hi else None))
        prev = close
    return out


def slope(ks, ys):
    """Least-squares slope of ys over ks."""
    mk, my = statistics.fmean(ks), statistics.fmean(ys)
    den = sum((k - mk) ** 2 for k in ks)
    return sum((k - mk) * (y - my) for k, y in zip(ks, ys)) / den if den else 0.0


def growth(rss, first, last):
    """(growth MiB, slope MiB/round) of a per-round series between rounds first..last (1-based)."""
    window = [(k, rss[k - 1]) for k in range(first, last + 1) if rss[k - 1] is not None]
    if len(window) < 2:
        return None, None
    return (window[-1][1] - window[0][1]) / MIB, slope([k for k, _ in window], [y for _, y in window]) / MIB


def coord_window(coord, window):
    g, sl = growth(coord, *window)
    return {"rounds": list(window), "growth_mib": g, "slope_mib_per_round": sl}


def clients_window(clients, window):
    """Growth and slope over window of every client: median, max and the worst client."""
    gs = [(label, *growth(v, *window)) for label, v in clients.items()]
    gs = [x for x in gs if x[1] is not None]
    if not gs:
        return {"rounds": list(window), "sampled": 0}
    worst = max(gs, key=lambda x: x[1])
    return {"rounds": list(window), "sampled": len(gs),
            "growth_mib": {"median": statistics.median(x[1] for x in gs), "max": worst[1], "worst": worst[0]},
            "slope_mib_per_round": {"median": statistics.median(x[2] for x in gs), "max": max(x[2] for x in gs)}}


# ---- report -------------------------------------------------------------------------------------

def summarise(a, work, status, samples, wall, load):
    hist_path = os.path.join(work, "history.jsonl")
    history = [json.loads(l) for l in open(hist_path)] if os.path.exists(hist_path) else []
    closes = [t for t, ev, kv in log_events(os.path.join(work, "logs", "coordinator.log"))
              if ev in ("round_closed", "round_aborted")]
    by_label = {}
    for t, label, pid, kib in samples:
        by_label.setdefault(label, []).append((t, kib))
    coord = per_round(by_label.get("coordinator", []), closes)
    clients = {l: per_round(s, closes) for l, s in by_label.items() if l != "coordinator"}
    R = len(closes)
    marks = [k for k in (1, a.from_round, 5, 10, 15, 20, R) if 1 <= k <= R]
    marks = sorted(set(marks))
    s = {
        "command": "concord-sim --clients %d --rounds %d %s" % (a.clients, a.rounds, " ".join(a.sim_args)),
        "sim_exit": status, "wall_s": round(wall, 1), "cpus": os.cpu_count(),
        "load_before": load,
        "interval_s": a.interval, "samples": len(samples), "processes_sampled": len(by_label),
        "rounds_expected": a.rounds, "rounds_closed": sum(1 for h in history if h["status"] == "ok"),
        "rounds": [], "coordinator": {}, "clients": {}, "checks": [],
    }
    for k, h in enumerate(history, 1):
        cr = [v[k - 1] for v in clients.values() if k - 1 < len(v) and v[k - 1] is not None]
        s["rounds"].append({
            "round": k, "status": h["status"], "participants": len(h["participants"]),
            "accepted": len(h["responded"]), "duration_s": round(h["duration_s"], 3),
            "coordinator_rss_mib": round(coord[k - 1] / MIB, 2) if k - 1 < len(coord) and coord[k - 1] else None,
            "client_rss_median_mib": round(statistics.median(cr) / MIB, 2) if cr else None,
            "client_rss_max_mib": round(max(cr) / MIB, 2) if cr else None,
        })
    s["accounting"] = accounting(work, history) if history else {}
    if R >= a.from_round + 1:
        windows = [(a.from_round, R)]
        if R >= 6 and (5, min(20, R)) != windows[0]:
            windows.append((5, min(20, R)))  # the window of the criterion, reported
        s["coordinator"] = {"rss_mib_at": {k: round(coord[k - 1] / MIB, 2) for k in marks if coord[k - 1]},
                            "windows": [coord_window(coord, w) for w in windows]}
        at = {k: [v[k - 1] for v in clients.values() if v[k - 1] is not None] for k in marks}
        s["clients"] = {
            "rss_mib_at": {k: {"median": round(statistics.median(v) / MIB, 2), "max": round(max(v) / MIB, 2)}
                           for k, v in at.items() if v},
            "windows": [clients_window(clients, w) for w in windows],
        }
    check(s, a)
    return s


def check(s, a):
    def add(ok, what):
        s["checks"].append({"ok": bool(ok), "check": what})
    acc, rounds = s["accounting"], s["rounds"]
    add(s["sim_exit"] == 0, "concord-sim exited 0 (status %s)" % s["sim_exit"])
    add(s["rounds_closed"] == a.rounds and len(rounds) == a.rounds,
        "every round closed ok (%d of %d)" % (s["rounds_closed"], a.rounds))
    full = [r for r in rounds if r["participants"] == a.clients and r["accepted"] == r["participants"]]
    add(len(full) == a.rounds, "every round aggregated all %d hospitals (%d rounds did)" % (a.clients, len(full)))
    if acc:
        total = sum(r["accepted"] for r in rounds)
        add(not acc["lost"] and acc["sent"] == acc["acked"] == acc["accepted"] == total,
            "no update lost: sent %d, acked %d, accepted %d, in history %d, refused or lost %d"
            % (acc["sent"], acc["acked"], acc["accepted"], total, len(acc["lost"])))
    co = s["coordinator"]["windows"][0] if s["coordinator"] else None
    cl = s["clients"]["windows"][0] if s["clients"] else None
    if co and co["growth_mib"] is not None:
        add(co["growth_mib"] < a.max_coord_growth_mib, "coordinator RSS growth rounds %d..%d: %.3f MiB (< %g)"
            % (*co["rounds"], co["growth_mib"], a.max_coord_growth_mib))
    else:
        add(False, "coordinator RSS sampled in rounds %d..%d" % (a.from_round, a.rounds))
    if cl and cl["sampled"]:
        add(cl["growth_mib"]["max"] < a.max_client_growth_mib and cl["sampled"] == a.clients,
            "client RSS growth rounds %d..%d: worst %.3f MiB (%s) (< %g), %d of %d clients sampled"
            % (*cl["rounds"], cl["growth_mib"]["max"], cl["growth_mib"]["worst"], a.max_client_growth_mib,
               cl["sampled"], a.clients))
    else:
        add(False, "client RSS sampled in rounds %d..%d" % (a.from_round, a.rounds))


def report(s):
    L = ["== soak: %s" % s["command"],
         "%d CPUs, load before %s; wall %.1f s; %d RSS samples of %d processes every %g s"
         % (s["cpus"], " ".join(s["load_before"] or []), s["wall_s"], s["samples"], s["processes_sampled"],
            s["interval_s"]),
         "", "round  status  accepted/participants  duration_s  coord_MiB  client_MiB(median/max)"]
    for r in s["rounds"]:
        L.append("%5d  %-6s  %8d/%-12d  %10.3f  %9s  %s/%s" % (
            r["round"], r["status"], r["accepted"], r["participants"], r["duration_s"],
            r["coordinator_rss_mib"], r["client_rss_median_mib"], r["client_rss_max_mib"]))
    acc = s["accounting"]
    if acc:
        L += ["", "updates: sent %d, acked %d, accepted %d, refused %d; duplicate tasks skipped %d; "
              "client disconnects %d" % (acc["sent"], acc["acked"], acc["accepted"], acc["nacked"],
                                         acc["duplicate_tasks"], acc["disconnects"])]
        L += ["  LOST: %s" % x for x in acc["lost"][:20]]
    co, cl = s["coordinator"], s["clients"]
    if co:
        L += ["", "coordinator RSS (MiB) after round " + ", ".join("%s: %.2f" % kv for kv in co["rss_mib_at"].items())]
        L += ["  rounds %d..%d: growth %.3f MiB, slope %.4f MiB/round" % (*w["rounds"], w["growth_mib"],
                                                                        w["slope_mib_per_round"])
              for w in co["windows"] if w["growth_mib"] is not None]
    if cl:
        L += ["clients RSS (MiB, median/max) after round "
              + ", ".join("%s: %.2f/%.2f" % (k, v["median"], v["max"]) for k, v in cl["rss_mib_at"].items())]
        L += ["  rounds %d..%d: growth median %.3f / max %.3f MiB (%s), slope median %.4f / max %.4f MiB/round"
              % (*w["rounds"], w["growth_mib"]["median"], w["growth_mib"]["max"], w["growth_mib"]["worst"],
                 w["slope_mib_per_round"]["median"], w["slope_mib_per_round"]["max"])
              for w in cl["windows"] if w["sampled"]]
    L += [""] + ["%s %s" % ("ok  " if c["ok"] else "FAIL", c["check"]) for c in s["checks"]]
    return "\n".join(L) + "\n"


def main(argv):
    a = parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    work = os.path.join(os.path.abspath(a.out), "run")
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    t0 = time.time()
    status, samples = run_and_sample(a, work)
    s = summarise(a, work, status, samples, time.time() - t0, load)
    with open(os.path.join(a.out, "samples.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t_unix", "process", "pid", "vmrss_kib"])
        w.writerows(samples)
    with open(os.path.join(a.out, "rounds.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(s["rounds"][0].keys()) if s["rounds"] else ["round"])
        w.writeheader()
        w.writerows(s["rounds"])
    with open(os.path.join(a.out, "summary.json"), "w") as f:
        json.dump(s, f, indent=1)
    text = report(s)
    with open(os.path.join(a.out, "summary.txt"), "w") as f:
        f.write(text)
    sys.stdout.write(text)
    return 0 if all(c["ok"] for c in s["checks"]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
