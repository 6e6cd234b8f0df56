#!/usr/bin/python3
"""analyze.py — tables and plots for bench/methods/run.sh; writes docs/results.md.

  /usr/bin/python3 bench/methods/analyze.py [--out bench/methods/out] [--doc docs/results.md]
                                            [--img docs/img] [--seeds 1,2,3] [--extra-seeds 1-10]

Reads every run under OUT/runs/<scenario>/<method>/seed<S>/ (history.jsonl, eval/*.json), the
standalone models under OUT/standalone/, the variants' OUT/prep/*/noisy.json and the probe
OUT/pcn_probe.json; computes mean ± std over the seeds; writes the gnuplot data and scripts
to OUT/plots/ and runs gnuplot (pngcairo) into IMG; writes the Markdown report DOC.
Needs numpy and gnuplot.
"""
import argparse
import json
import math
import os
import subprocess
import sys
from collections import defaultdict

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

METHODS = ["fedavg", "fedce", "fedce-align", "fedce-pcn", "all", "fedce-pcnclient", "fedavg-pcn", "fedce-align100"]
MAIN5 = METHODS[:5]
LABEL = {
    "fedavg": "FedAvg",
    "fedce": "FedCE",
    "fedce-align": "FedCE+align",
    "fedce-pcn": "FedCE+PCN(server)",
    "all": "all three",
    "fedce-pcnclient": "FedCE+PCN(client)",
    "fedavg-pcn": "FedAvg+PCN(server)",
    "fedce-align100": "FedCE+align×100",
}
FLAGS = {
    "fedavg": "--weighting fedavg",
    "fedce": "--weighting fedce",
    "fedce-align": "--weighting fedce --alignment gradient,hessian_diag",
    "fedce-pcn": "--weighting fedce --per-class server",
    "all": "--weighting fedce --alignment gradient,hessian_diag --per-class server",
    "fedce-pcnclient": "--weighting fedce --per-class client",
    "fedavg-pcn": "--weighting fedavg --per-class server",
    "fedce-align100": "--weighting fedce --alignment gradient,hessian_diag + [alignment] alpha = 1e-2, beta = 0.5",
}
SCENARIOS = ["thy4", "thy8", "thy4-flip", "thy4-flipbig", "thy4-demo", "fm10", "fm10-shift"]
TITLE = {
    "thy4": "Thyroid, 4 hospitals",
    "thy8": "Thyroid, 8 hospitals",
    "thy4-flip": "Thyroid, 4 hospitals, 30% label flips at the 2nd-largest hospital",
    "thy4-flipbig": "Thyroid, 4 hospitals, 30% label flips at the largest hospital",
    "thy4-demo": "Thyroid, 4 hospitals, Dirichlet(0.5), as in the demo main job",
    "fm10": "Fashion-MNIST, 10 hospitals",
    "fm10-shift": "Fashion-MNIST, 10 hospitals, 2 hospitals on another scanner",
}
SHORT = {"thy4": "thy-4", "thy8": "thy-8", "thy4-flip": "thy-4 flip2", "thy4-flipbig": "thy-4 flip1", "thy4-demo": "thy-4 α=0.5",
         "fm10": "FM-10", "fm10-shift": "FM-10 shift"}
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#7f7f7f", "#17becf"]


# ---- loading ---------------------------------------------------------------------------------

def jload(path):
    with open(path) as f:
        return json.load(f)


def history(path):
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                out.append(json.loads(line))
    return out


def is_thyroid(sc):
    return sc.startswith("thy")


class Run:
    def __init__(self, root, sc, m, seed):
        self.dir = os.path.join(root, "runs", sc, m, f"seed{seed}")
        self.sc, self.m, self.seed = sc, m, seed
        self.h = history(os.path.join(self.dir, "history.jsonl"))
        last = self.h[-1]
        self.last = last
        g = last["global"]
        self.acc, self.bal = g["accuracy"], g["balanced_accuracy"]
        self.recall = g["recall"]
        self.acc_curve = [r["global"]["accuracy"] if r.get("global") else math.nan for r in self.h]
        self.bal_curve = [r["global"]["balanced_accuracy"] if r.get("global") else math.nan for r in self.h]
        self.aborted = sum(1 for r in self.h if r.get("status") != "ok")
        self.weights = last["weights"]
        self.mean_weights = defaultdict(float)
        for r in self.h:
            for k, w in r.get("weights", {}).items():
                self.mean_weights[k] += w / len(self.h)
        self.clients = last["clients"]
        ev = os.path.join(self.dir, "eval")
        self.site_acc, self.site_bal = {}, {}
        self.extra = {}
        if os.path.isdir(ev):
            for fn in sorted(os.listdir(ev)):
                if not fn.endswith(".json") or os.path.getsize(os.path.join(ev, fn)) == 0:
                    continue
                j = jload(os.path.join(ev, fn))
                name = fn[:-5]
                if "." in name or name.startswith("test"):
                    self.extra[name] = j
                else:
                    self.site_acc[name], self.site_bal[name] = j["accuracy"], j["balanced_accuracy"]
        for name, j in self.extra.items():   # the noisy hospital on its true labels
            if name.endswith(".clean"):
                self.site_acc[name[:-6]] = j["accuracy"]
                self.site_bal[name[:-6]] = j["balanced_accuracy"]


def load(root, seeds):
    runs = {}
    for sc in SCENARIOS:
        for m in METHODS:
            for s in seeds:
                p = os.path.join(root, "runs", sc, m, f"seed{s}", "history.jsonl")
                if os.path.exists(p) and os.path.exists(os.path.join(root, "runs", sc, m, f"seed{s}", "final-model.ckpt")):
                    try:
                        runs[(sc, m, s)] = Run(root, sc, m, s)
                    except (KeyError, IndexError, json.JSONDecodeError) as e:
                        print(f"analyze: skipping {sc}/{m}/seed{s}: {e!r}", file=sys.stderr)
    return runs


def standalone(root, sc, seed):
    d = os.path.join(root, "standalone", sc, f"seed{seed}")
    out = {}
    if os.path.isdir(d):
        for fn in os.listdir(d):
            if fn.endswith(".json") and os.path.getsize(os.path.join(d, fn)) > 0:
                j = jload(os.path.join(d, fn))
                out[fn[:-5]] = (j["test_accuracy"], j["test_balanced_accuracy"])
    return out


def noisy_info(root, sc, seed):
    p = os.path.join(root, "prep", sc, f"seed{seed}", "noisy.json")
    return jload(p) if os.path.exists(p) else None


# ---- statistics ------------------------------------------------------------------------------

def ms(xs, digits=3, pct=False):
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not xs:
        return "–"
    a = np.array(xs, dtype=float)
    f = 100.0 if pct else 1.0
    sd = a.std(ddof=1) * f if len(a) > 1 else 0.0
    if pct:
        return f"{a.mean() * f:.1f} ± {sd:.1f}"
    return f"{a.mean():.{digits}f} ± {sd:.{digits}f}"


def pearson(x, y):
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or x.std() == 0 or y.std() == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


def minority_recall(run):
    """Thyroid: recall of class 0 (89 of 3,600 training rows, the rarest); Fashion-MNIST
    (balanced, 6,000 per class): the worst class's recall."""
    return run.recall[0] if is_thyroid(run.sc) else min(run.recall)


# ---- tables ----------------------------------------------------------------------------------

def scenario_rows(runs, root, sc, seeds, methods):
    rows = []
    for m in methods:
        rs = [runs[(sc, m, s)] for s in seeds if (sc, m, s) in runs]
        if not rs:
            continue
        base = {r.seed: runs[(sc, "fedavg", r.seed)] for r in rs if (sc, "fedavg", r.seed) in runs}
        d_bal = [r.bal - base[r.seed].bal for r in rs if r.seed in base]
        wins = sum(1 for d in d_bal if d > 0)
        ce = {r.seed: runs[(sc, "fedce", r.seed)] for r in rs if (sc, "fedce", r.seed) in runs}
        d_ce = [r.bal - ce[r.seed].bal for r in rs if r.seed in ce]
        hosp_mean = [np.mean(list(r.site_acc.values())) for r in rs if r.site_acc]
        hosp_std = [np.std(list(r.site_acc.values())) for r in rs if r.site_acc]
        hosp_min = [min(r.site_acc.values()) for r in rs if r.site_acc]
        corr_acc, corr_bal = [], []
        for r in rs:
            st = standalone(root, sc, r.seed)
            names = [k for k in sorted(r.weights) if k in st]
            if len(names) >= 3:
                w = [r.weights[k] for k in names]
                corr_acc.append(pearson(w, [st[k][0] for k in names]))
                corr_bal.append(pearson(w, [st[k][1] for k in names]))
        rows.append({
            "m": m, "n": len(rs), "acc": ms([r.acc for r in rs]), "bal": ms([r.bal for r in rs]),
            "bal_mean": float(np.mean([r.bal for r in rs])),
            "bal_sd": float(np.std([r.bal for r in rs], ddof=1)) if len(rs) > 1 else 0.0,
            "minrec": ms([minority_recall(r) for r in rs]),
            "dbal": (f"{np.mean(d_bal):+.3f} ({wins}/{len(d_bal)})" if m != "fedavg" and d_bal else "–"),
            "dce": (f"{np.mean(d_ce):+.3f} ({sum(1 for d in d_ce if d > 0)}/{len(d_ce)})"
                    if m.startswith("fedce-") or m == "all" else "–"),
            "h_mean": ms(hosp_mean), "h_std": ms(hosp_std), "h_min": ms(hosp_min),
            "corr_acc": ms(corr_acc, 2), "corr_bal": ms(corr_bal, 2),
            "aborted": sum(r.aborted for r in rs),
            "shifted_test": ms([r.extra["test-shifted"]["accuracy"] for r in rs if "test-shifted" in r.extra]),
        })
    return rows


def md_table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(out)


# ---- plots -----------------------------------------------------------------------------------

def gnuplot(script_path):
    subprocess.run(["gnuplot", script_path], check=True)


def terminal():
    try:
        t = subprocess.run(["gnuplot", "-e", "set terminal"], capture_output=True, text=True).stderr
        t += subprocess.run(["gnuplot", "-e", "set terminal"], capture_output=True, text=True).stdout
    except OSError:
        return "png"
    return "pngcairo" if "pngcairo" in t else "png"


def plot_curves(runs, sc, seeds, methods, plotdir, imgdir, term):
    dat = os.path.join(plotdir, f"curves-{sc}.dat")
    present = [m for m in methods if any((sc, m, s) in runs for s in seeds)]
    if not present:
        return None
    with open(dat, "w") as f:
        for m in present:
            rs = [runs[(sc, m, s)] for s in seeds if (sc, m, s) in runs]
            n = min(len(r.acc_curve) for r in rs)
            f.write(f"# {m}: round, mean accuracy, mean balanced accuracy (over {len(rs)} seeds)\n")
            for t in range(n):
                f.write(f"{t + 1} {np.mean([r.acc_curve[t] for r in rs]):.5f} "
                        f"{np.mean([r.bal_curve[t] for r in rs]):.5f}\n")
            f.write("\n\n")
    png = os.path.join(imgdir, f"methods-{sc}.png")
    gp = os.path.join(plotdir, f"curves-{sc}.gp")
    lines = []
    for col, ylabel in ((2, "global test accuracy"), (3, "global test balanced accuracy")):
        plots = []
        for i, m in enumerate(present):
            dash = "dt 2" if m in ("fedce-pcnclient", "fedavg-pcn", "fedce-align100") else "dt 1"
            plots.append(f"'{dat}' index {i} using 1:{col} with linespoints lw 2 pt 7 ps 0.5 {dash} "
                         f"lc rgb '{COLORS[METHODS.index(m)]}' title '{LABEL[m]}'")
        lines.append(f"set ylabel '{ylabel}'\nplot " + ", \\\n     ".join(plots))
    with open(gp, "w") as f:
        f.write(f"""set terminal {term} size 1400,600 font 'sans,11'
set output '{png}'
set multiplot layout 1,2 title '{TITLE[sc]} (mean over seeds {",".join(map(str, seeds))})'
set xlabel 'round'
set yrange [0:1]
set grid
set bmargin 8
set key at screen 0.5, 0.07 center horizontal maxrows 2 width 2 font ',10'
{lines[0]}
unset key
{lines[1]}
unset multiplot
""")
    gnuplot(gp)
    return png


def plot_bars(table, seeds, plotdir, imgdir, term, methods):
    dat = os.path.join(plotdir, "final-balanced.dat")
    scs = [sc for sc in SCENARIOS if sc in table]
    with open(dat, "w") as f:
        f.write("# scenario " + " ".join(f"{m}_mean {m}_sd" for m in methods) + "\n")
        for sc in scs:
            byname = {r["m"]: r for r in table[sc]}
            vals = []
            for m in methods:
                r = byname.get(m)
                vals += [f"{r['bal_mean']:.4f}", f"{r['bal_sd']:.4f}"] if r else ["NaN", "NaN"]
            f.write(f"\"{SHORT[sc]}\" " + " ".join(vals) + "\n")
    png = os.path.join(imgdir, "methods-final-balanced.png")
    gp = os.path.join(plotdir, "final-balanced.gp")
    plots = []
    for i, m in enumerate(methods):
        c = 2 + 2 * i
        plots.append(f"'{dat}' using {c}:{c + 1}:xtic(1) title '{LABEL[m]}' lc rgb '{COLORS[METHODS.index(m)]}'")
    with open(gp, "w") as f:
        f.write(f"""set terminal {term} size 1400,560 font 'sans,11'
set output '{png}'
set title 'Final global balanced accuracy, mean ± std over seeds {",".join(map(str, seeds))} (error bars: std)'
set style data histograms
set style histogram errorbars gap 2 lw 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set yrange [0:1.05]
set ylabel 'balanced accuracy'
set grid ytics
set key outside right top font ',10'
plot {", ".join(plots)}
""")
    gnuplot(gp)
    return png


def plot_probe(probe, plotdir, imgdir, term):
    dat = os.path.join(plotdir, "pcn-probe.dat")
    keys = [("iid", "fresh"), ("iid", "warm"), ("skewed", "fresh"), ("skewed", "warm")]
    with open(dat, "w") as f:
        for sh, st in keys:
            f.write(f"# {sh} {st}: steps cos acc_raw acc_pcn rho\n")
            for r in probe:
                if r["shard"] == sh and r["start"] == st:
                    f.write(f"{r['steps']} {r['cos']:.4f} {r['acc_raw']:.4f} {r['acc_pcn']:.4f} {r['rho']:.4f}\n")
            f.write("\n\n")
    png = os.path.join(imgdir, "pcn-probe.png")
    gp = os.path.join(plotdir, "pcn-probe.gp")
    cos_plots = ", \\\n     ".join(
        f"'{dat}' index {i} using 1:2 with linespoints lw 2 pt 7 lc rgb '{COLORS[i]}' title '{sh}, {st} model'"
        for i, (sh, st) in enumerate(keys))
    acc_plots = ", \\\n     ".join(
        f"'{dat}' index {i} using 1:3 with linespoints lw 2 pt 7 dt 1 lc rgb '{COLORS[i]}' title '{sh}/{st}: real update', "
        f"'{dat}' index {i} using 1:4 with linespoints lw 2 pt 6 dt 2 lc rgb '{COLORS[i]}' title '{sh}/{st}: per-class normalised'"
        for i, (sh, st) in enumerate(keys))
    with open(gp, "w") as f:
        f.write(f"""set terminal {term} size 1400,640 font 'sans,11'
set output '{png}'
set multiplot layout 1,2 title 'Per-class normalisation of a whole local update (numpy probe, MLP 784-128-10, SGD momentum 0.9, batch 32)'
set logscale x
set xrange [0.8:300]
set xlabel 'local SGD steps in the update'
set grid
set bmargin 9
set key bottom left font ',9'
set ylabel 'cos(normalised update, real update)'
set yrange [-0.1:1]
plot {cos_plots}
set ylabel 'test accuracy after applying the update'
set yrange [0:1]
set key at screen 0.75, 0.08 center horizontal maxrows 4 width 1 font ',9'
plot {acc_plots}
unset multiplot
""")
    gnuplot(gp)
    return png


# ---- report ----------------------------------------------------------------------------------

def seeds_arg(s):
    out = []
    for part in s.split(","):
        if "-" in part:
            a, b = part.split("-")
            out += list(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(HERE, "out"))
    ap.add_argument("--doc", default=os.path.join(REPO, "docs", "results.md"))
    ap.add_argument("--img", default=os.path.join(REPO, "docs", "img"))
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--extra-seeds", default="1-10", help="thyroid supplement (seeds run there)")
    a = ap.parse_args()
    seeds, extra_seeds = seeds_arg(a.seeds), seeds_arg(a.extra_seeds)
    root = a.out
    plotdir = os.path.join(root, "plots")
    os.makedirs(plotdir, exist_ok=True)
    os.makedirs(a.img, exist_ok=True)
    runs = load(root, sorted(set(seeds) | set(extra_seeds)))
    term = terminal()
    batches = []
    if os.path.exists(os.path.join(root, "batches.jsonl")):
        with open(os.path.join(root, "batches.jsonl")) as f:
            batches = [json.loads(x) for x in f if x.strip()]
    meta = next((b for b in batches if "started" in b and not b.get("quick")), batches[0] if batches else {})
    waits = []
    if os.path.exists(os.path.join(root, "lockwaits.jsonl")):
        with open(os.path.join(root, "lockwaits.jsonl")) as f:
            waits = [json.loads(x) for x in f if x.strip()]
    wall = sum(b.get("seconds", 0) for b in batches)
    waited = sum(x.get("waited", 0) for x in waits)
    times = []
    if os.path.exists(os.path.join(root, "times.jsonl")):
        with open(os.path.join(root, "times.jsonl")) as f:
            times = [json.loads(x) for x in f if x.strip()]

    table = {sc: scenario_rows(runs, root, sc, seeds, METHODS) for sc in SCENARIOS}
    table = {sc: rows for sc, rows in table.items() if rows}
    pngs = {sc: plot_curves(runs, sc, seeds, METHODS, plotdir, a.img, term) for sc in table}
    bar_png = plot_bars(table, seeds, plotdir, a.img, term, METHODS)
    probe_path = os.path.join(root, "pcn_probe.json")
    probe = jload(probe_path) if os.path.exists(probe_path) else None
    probe_png = plot_probe(probe, plotdir, a.img, term) if probe else None

    rel = lambda p: os.path.relpath(p, os.path.dirname(a.doc))  # noqa: E731
    L = []
    w = L.append
    w("# Results: the aggregation methods side by side\n")
    w("FedAvg, FedCE (DESIGN §6.1), FedCE + gradient/Hessian alignment (§6.2), FedCE + per-class "
      "normalisation (§6.3, `server` mode) and all three, on real federations: `concord-sim` starts "
      "a coordinator and one `concord-client` process per hospital on loopback (CURVE-encrypted, "
      "signed updates, exactly as in production), and every number below comes from the "
      "coordinator's `history.jsonl`, `concord-data eval` or `concord-train` on the files those "
      "runs wrote. Two extra rows per scenario: per-class normalisation in `client` mode "
      "(PCN-SGD steps at each hospital) and `server` mode with FedAvg weights (to tell the "
      "per-class stage apart from the weighting).\n")
    w(f"**Reproduce** (builds nothing; about {int(round((wall - waited) / 60.0))} minutes of wall time here):\n")
    w("```sh\ncmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build -j2\n"
      "bench/methods/run.sh            # seeds 1-3, every scenario and method, the per-class diagnostic and probe\n"
      "bench/methods/run.sh --scenarios \"thy4 thy8 thy4-flip thy4-flipbig\" --seeds \"4 5 6 7 8 9 10\"   # thyroid, 10 seeds\n"
      "/usr/bin/python3 bench/methods/analyze.py     # this page, docs/img/methods-*.png, docs/img/pcn-probe.png\n```\n")
    w("`run.sh` is resumable (finished runs are skipped), waits while `/tmp/concord-bench.lock` "
      "exists and runs everything under `nice -n 10`; its results stay in `bench/methods/out/` "
      "(not committed). Each run's exact `concord-sim` command is in "
      "`out/runs/<scenario>/<method>/seed<S>.cmd`.\n")
    if meta:
        sim_secs = sum(t["seconds"] for t in times)
        w(f"**Machine**: {meta.get('cpu', '?')}, {meta.get('nproc', '?')} cores, {meta.get('mem_gib', '?')} GiB, "
          f"Linux {meta.get('kernel', '?')}; shared with other engineers' jobs (so wall times are indicative). "
          f"**Build**: commit `{meta.get('commit', '?')[:12]}`, Release. **Wall time**: {(wall - waited) / 60:.1f} min "
          f"of work ({len(times)} federation runs took {sim_secs / 60:.1f} min of it; the rest is standalone "
          f"training, evaluation, preparing shards and the probe), plus {waited / 60:.1f} min spent waiting "
          f"while someone else held `/tmp/concord-bench.lock` ({len(batches) // 2 or len(batches)} batch invocations, "
          f"{wall / 60:.1f} min end to end).\n")

    w("## Setup\n")
    w("| scenario | data | hospitals | split | rounds × local epochs | model |\n|---|---|---|---|---|---|")
    th_r, th_e = meta.get("th_rounds", 20), meta.get("th_epochs", 2)
    fm_r, fm_e = meta.get("fm_rounds", 20), meta.get("fm_epochs", 1)
    w(f"| thy4 | thyroid (FANN, 3,600 train / 3,600 test, 21 features, classes 0/1/2 = 89/192/3,319 train rows) | 4 | Dirichlet(0.3) | {th_r} × {th_e} | MLP 21-64-32-3 |")
    w(f"| thy8 | same | 8 | Dirichlet(0.3) | {th_r} × {th_e} | same |")
    w(f"| thy4-flip | thy4's split; the **second-largest** hospital has 30% of its training labels flipped (each to one of the two other classes, uniformly) | 4 | same as thy4 | {th_r} × {th_e} | same |")
    w(f"| thy4-flipbig | same, the flips at the **largest** hospital | 4 | same as thy4 | {th_r} × {th_e} | same |")
    w(f"| thy4-demo | thyroid, the setting of `scripts/demo.sh` (which runs it with `--all`) | 4 | Dirichlet(0.5) | {th_r} × {th_e} | same |")
    w(f"| fm10 | Fashion-MNIST (IDX, 60,000 train / 10,000 test, balanced) | 10 | Dirichlet(0.3) | {fm_r} × {fm_e} | MLP 784-128-10 |")
    w(f"| fm10-shift | fm10's split; the hospitals ranked 2 and 3 by size see another scanner: x' = clip(0.5·x + 0.25 + N(0, 0.1²)), 8-bit | 10 | same as fm10 | {fm_r} × {fm_e} | same |")
    w("")
    w("Everything else is the default configuration (SGD lr 0.05, momentum 0.9, batch 32; FedCE "
      "`combine = plus`, data-space metric balanced accuracy; alignment α = 1e-4, β = 5e-3; "
      "10% of each hospital's data held out for validation). The seed draws the split, θ0 and "
      "the local shuffles; the variants use exactly the split of their base scenario "
      "(`concord-data split` with the same arguments `concord-sim` uses; checked byte for byte), "
      "so a variant differs from its base only by the noise. The noisy data are written by "
      "`bench/methods/make_shards.py`; Fashion-MNIST shards go to `concord-sim --shards` as CSV "
      "(`--shards` takes no IDX labels), with `standardize = none` as `concord-sim` uses for IDX "
      "images — checked bit-identical (same model digests) to the IDX run on unmodified shards.\n")
    w("Columns: **acc / bal. acc** — the final global model on the held-out test set; "
      "**minority recall** — thyroid: recall of class 0 (89 of 3,600 training rows, the rarest; "
      "77 test rows); Fashion-MNIST is balanced (6,000 per class), so there it is the worst "
      "class's recall; **Δ bal. vs FedAvg / vs FedCE** — mean paired difference of balanced "
      "accuracy over the seeds (seeds better / seeds; the FedCE column answers \"does adding this "
      "stage to FedCE help?\"); **hospital acc mean / std / worst** — the final model "
      "scored on each hospital's own shard (performance fairness; the label-flipped hospital "
      "is scored on its true labels); **r(weight, standalone)** — Pearson correlation, over "
      "hospitals, between the final-round aggregation weight and the global-test accuracy of "
      "the hospital's standalone model (`concord-train` on its shard alone for as many epochs "
      "as the federation ran, rounds × epochs) — collaboration fairness; for FedAvg the weight "
      "is the sample share. All: mean ± std over seeds " + ", ".join(map(str, seeds)) + ".\n")

    # headline
    w("## Headline: final balanced accuracy\n")
    hdr = ["method"] + [SHORT[sc] for sc in table]
    rows = []
    for m in METHODS:
        row = [f"{LABEL[m]}"]
        for sc in table:
            r = next((x for x in table[sc] if x["m"] == m), None)
            row.append(r["bal"] if r else "–")
        rows.append(row)
    w(md_table(hdr, rows) + "\n")
    w(f"![final balanced accuracy]({rel(bar_png)})\n")
    w("@@VERDICT@@\n")

    for sc, rs in table.items():
        w(f"## {TITLE[sc]} (`{sc}`)\n")
        hdr = ["method", "acc", "bal. acc", "Δ bal. vs FedAvg", "Δ bal. vs FedCE", "minority recall",
               "hospital acc mean", "std", "worst", "r(weight, standalone acc)", "r(weight, standalone bal.)"]
        if sc == "fm10-shift":
            hdr.append("acc on shifted test set")
        body = []
        for r in rs:
            row = [LABEL[r["m"]], r["acc"], r["bal"], r["dbal"], r["dce"], r["minrec"], r["h_mean"], r["h_std"], r["h_min"],
                   r["corr_acc"], r["corr_bal"]]
            if sc == "fm10-shift":
                row.append(r["shifted_test"])
            body.append(row)
        w(md_table(hdr, body) + "\n")
        ab = {r["m"]: r["aborted"] for r in rs if r["aborted"]}
        if ab:
            w("Aborted rounds: " + ", ".join(f"{LABEL[m]} {n}" for m, n in ab.items()) + ".\n")
        w(f"![{sc} per round]({rel(pngs[sc])})\n")
        w(f"@@NOTE-{sc}@@\n")

    # noisy hospital weights
    w("## The noisy hospital's weight\n")
    w("Weight of the label-flipped / other-scanner hospital(s) in the aggregation: the final "
      "round and the mean over all rounds, per method (FedAvg: its sample share), mean ± std "
      "over seeds. For fm10-shift, the two shifted hospitals' weights are summed.\n")
    hdr = ["scenario", "noisy hospital(s) (seed: name, rows)"] + [f"{LABEL[m]} final / mean" for m in MAIN5 + ["fedce-pcnclient"]]
    body = []
    for sc in ("thy4-flip", "thy4-flipbig", "fm10-shift"):
        if sc not in table:
            continue
        who = []
        row_w = {}
        for s in seeds:
            info = noisy_info(root, sc, s)
            if not info:
                continue
            r0 = runs.get((sc, "fedavg", s))
            sizes = ""
            if r0:
                sizes = "+".join(str(r0.clients[n]["n_samples"]) for n in info["noisy"] if n in r0.clients)
            who.append(f"{s}: {'+'.join(info['noisy'])} ({sizes} train)")
            for m in MAIN5 + ["fedce-pcnclient"]:
                r = runs.get((sc, m, s))
                if not r:
                    continue
                row_w.setdefault(m, ([], []))
                row_w[m][0].append(sum(r.weights.get(n, 0.0) for n in info["noisy"]))
                row_w[m][1].append(sum(r.mean_weights.get(n, 0.0) for n in info["noisy"]))
        body.append([sc, "; ".join(who)] + [f"{ms(row_w[m][0])} / {ms(row_w[m][1])}" if m in row_w else "–"
                                            for m in MAIN5 + ["fedce-pcnclient"]])
    w(md_table(hdr, body) + "\n")
    w("Per seed, final round: the noisy hospital's sample share (= its FedAvg weight), its FedCE "
      "weight, its rank among the hospitals by FedCE weight (1 = largest), and the final "
      "model's accuracy on the noisy hospital's own data (flips: on its true labels) under "
      "FedAvg and FedCE.\n")
    body = []
    for sc in ("thy4-flip", "thy4-flipbig", "fm10-shift"):
        for s in seeds:
            info, ra, rc = noisy_info(root, sc, s), runs.get((sc, "fedavg", s)), runs.get((sc, "fedce", s))
            if not info or not ra or not rc:
                continue
            for n in info["noisy"]:
                order = sorted(rc.weights, key=lambda k: -rc.weights[k])
                body.append([sc, s, n, f"{ra.weights[n]:.3f}", f"{rc.weights[n]:.3f}",
                             f"{order.index(n) + 1} of {len(order)}", f"{1 / len(order):.3f}",
                             f"{ra.site_acc.get(n, math.nan):.3f}", f"{rc.site_acc.get(n, math.nan):.3f}"])
    w(md_table(["scenario", "seed", "hospital", "FedAvg weight", "FedCE weight", "FedCE rank", "uniform 1/K",
                "acc on own data, FedAvg", "acc on own data, FedCE"], body) + "\n")
    # FedCE internals of the noisy hospital
    w("What FedCE saw (final round, FedCE run, mean ± std over seeds): the noisy hospital's "
      "gradient-space score a_k = max(0, 1 − mean cos_k) (`fedce_grad`), data-space score "
      "b_k = 1 − mean minus-model score (`fedce_data`), and the same averaged over the clean "
      "hospitals.\n")
    body = []
    for sc in ("thy4-flip", "thy4-flipbig", "fm10-shift"):
        acc = defaultdict(list)
        for s in seeds:
            info, r = noisy_info(root, sc, s), runs.get((sc, "fedce", s))
            if not info or not r:
                continue
            for k, c in r.clients.items():
                tag = "noisy" if k in info["noisy"] else "clean"
                for f in ("fedce_grad", "fedce_data", "fedce_cos"):
                    if c.get(f) is not None:
                        acc[(tag, f)].append(c[f])
        if acc:
            body.append([sc] + [ms(acc[(t, f)]) for t in ("noisy", "clean") for f in ("fedce_cos", "fedce_grad", "fedce_data")])
    w(md_table(["scenario", "noisy cos_k (last round)", "noisy a_k", "noisy b_k", "clean cos_k", "clean a_k", "clean b_k"], body) + "\n")
    w("@@NOTE-noisy@@\n")

    # collaboration fairness details
    w("## Collaboration fairness in detail\n")
    w("Per hospital, seed 1: standalone test accuracy / balanced accuracy (its shard only), "
      "training rows, and the final-round weight under FedAvg and FedCE.\n")
    for sc in table:
        st = standalone(root, sc, seeds[0])
        ra, rc = runs.get((sc, "fedavg", seeds[0])), runs.get((sc, "fedce", seeds[0]))
        if not st or not ra or not rc:
            continue
        names = sorted(ra.weights, key=lambda k: (len(k), k))
        info = noisy_info(root, sc, seeds[0])
        body = []
        for k in names:
            tag = " (noisy)" if info and k in info["noisy"] else ""
            body.append([k + tag, ra.clients[k]["n_samples"], f"{st[k][0]:.3f}" if k in st else "–",
                         f"{st[k][1]:.3f}" if k in st else "–", f"{ra.weights[k]:.3f}", f"{rc.weights[k]:.3f}"])
        w(f"**{sc}**\n")
        w(md_table(["hospital", "train rows", "standalone acc", "standalone bal.", "FedAvg weight", "FedCE weight"], body) + "\n")
    w("@@NOTE-collab@@\n")

    # thyroid supplement
    sup_seeds = [s for s in extra_seeds if all((sc, "fedavg", s) in runs for sc in ("thy4",))]
    if len(sup_seeds) > len(seeds):
        w(f"## Thyroid with {len(sup_seeds)} seeds\n")
        w("Thyroid runs take under a second, so the thyroid scenarios were also run with seeds "
          f"{sup_seeds[0]}–{sup_seeds[-1]}: final balanced accuracy (and minority recall), mean ± std; "
          "Δ is the mean paired difference to FedAvg (seeds better / seeds).\n")
        hdr = ["method"] + [f"{SHORT[sc]} bal." for sc in SCENARIOS if is_thyroid(sc)] + \
              [f"{SHORT[sc]} Δ" for sc in SCENARIOS if is_thyroid(sc)] + ["thy-4 minority recall"]
        body = []
        for m in METHODS:
            row, drow = [LABEL[m]], []
            for sc in [x for x in SCENARIOS if is_thyroid(x)]:
                rs = [runs[(sc, m, s)] for s in sup_seeds if (sc, m, s) in runs]
                row.append(ms([r.bal for r in rs]) + f" (n={len(rs)})")
                d = [runs[(sc, m, s)].bal - runs[(sc, "fedavg", s)].bal for s in sup_seeds
                     if (sc, m, s) in runs and (sc, "fedavg", s) in runs]
                drow.append(f"{np.mean(d):+.3f} ({sum(x > 0 for x in d)}/{len(d)})" if m != "fedavg" and d else "–")
            rs = [runs[("thy4", m, s)] for s in sup_seeds if ("thy4", m, s) in runs]
            body.append(row + drow + [ms([minority_recall(r) for r in rs])])
        w(md_table(hdr, body) + "\n")
        w("@@NOTE-supplement@@\n")

    # per-class normalisation
    w("## Per-class normalisation in `server` mode\n")
    w("@@NOTE-pcn@@\n")
    w("Thyroid test recall per class of the final model (class 0: 77 test rows, class 1: 176, "
      "class 2: 3,347), mean over seeds " + ", ".join(map(str, seeds)) + ":\n")
    body = []
    for sc in [x for x in SCENARIOS if is_thyroid(x) and x in table]:
        for m in ("fedavg", "fedce", "fedce-pcn", "all", "fedavg-pcn", "fedce-pcnclient"):
            rs = [runs[(sc, m, s)] for s in seeds if (sc, m, s) in runs]
            if rs:
                body.append([sc, LABEL[m]] + [ms([r.recall[k] for r in rs], 2) for k in range(3)] + [ms([r.acc for r in rs])])
    w(md_table(["scenario", "method", "recall 0", "recall 1", "recall 2", "accuracy"], body) + "\n")
    diag = os.path.join(root, "diag", "pcn-batch")
    if os.path.isdir(diag):
        w("**Against the number of local steps, in Concord itself** (`run.sh` diagnostic, "
          "`out/diag/pcn-batch/`): Fashion-MNIST, 10 hospitals, FedAvg weights, 10 rounds × 1 "
          "local epoch, only the local batch size changes (so the number of SGD steps summed "
          "into one update); final global test accuracy, mean ± std over seeds "
          + ", ".join(map(str, seeds)) + ".\n")
        body = []
        for split in ("iid", "dirichlet"):
            for b in (32, 600, 6000):
                cells = []
                for pc in ("off", "server"):
                    accs = []
                    for s in seeds:
                        hp = os.path.join(diag, split, f"b{b}", pc, f"seed{s}", "history.jsonl")
                        if os.path.exists(hp):
                            h = history(hp)
                            accs.append(h[-1]["global"]["accuracy"])
                    cells.append(ms(accs))
                body.append([split if split == "iid" else "Dirichlet(0.3)", b, f"≈ {round(5400 / b) if b < 6000 else 1}",
                             cells[0], cells[1]])
        w(md_table(["split", "local batch", "SGD steps per update (6,000-row hospital)", "per-class off",
                    "per-class server"], body) + "\n")
    if probe:
        w("The probe (`bench/methods/pcn_probe.py`, numpy, independent of Concord's code) trains one "
          "hospital's MLP 784-128-10 with momentum SGD exactly as the client does in server mode "
          "(update split into per-class components, Δ = Σ_c Δ_c) and compares the real update with "
          "the per-class-normalised one the coordinator would apply (same norm): ρ = ‖Σ_c Δ_c‖ / "
          "Σ_c ‖Δ_c‖ (how much the class components cancel), the cosine between the two updates, "
          "and the test accuracy after applying each, after T local steps. `iid`: 600 images per "
          "class; `skewed`: 1,500 … 5 per class; `fresh`: from θ0; `warm`: from a model trained "
          "for 3 epochs.\n")
        body = [[r["shard"], r["start"], r["steps"], f"{r['rho']:.3f}", f"{r['norm_ratio']:.1f}", f"{r['cos']:.2f}",
                 f"{r['acc_start']:.3f}", f"{r['acc_raw']:.3f}", f"{r['acc_pcn']:.3f}"] for r in probe]
        w(md_table(["shard", "start", "steps T", "ρ", "max/min ‖Δ_c‖", "cos", "acc before", "acc real update",
                    "acc normalised update"], body) + "\n")
        w(f"![probe]({rel(probe_png)})\n")
        w("@@NOTE-probe@@\n")

    # wall time
    if times:
        w("## Wall time per run\n")
        w("Seconds per `concord-sim` run (coordinator + hospitals, whole federation), mean over "
          "seeds; the machine was shared, so these are indicative only.\n")
        agg = defaultdict(list)
        for t in times:
            if t.get("exit") == 0:
                agg[(t["scenario"], t["method"])].append(t["seconds"])
        hdr = ["method"] + [SHORT[sc] for sc in SCENARIOS if any((sc, m) in agg for m in METHODS)]
        body = []
        for m in METHODS:
            body.append([LABEL[m]] + [f"{np.mean(agg[(sc, m)]):.1f}" if (sc, m) in agg else "–"
                                      for sc in SCENARIOS if any((sc, x) in agg for x in METHODS)])
        w(md_table(hdr, body) + "\n")

    text = "\n".join(L) + "\n"
    notes_path = os.path.join(HERE, "notes.md")
    notes = parse_notes(notes_path) if os.path.exists(notes_path) else {}
    import re
    text = re.sub(r"@@([A-Za-z0-9-]+)@@\n", lambda mt: (notes.get(mt.group(1), "").strip() + "\n") if notes.get(mt.group(1)) else "", text)
    with open(a.doc + ".tmp", "w") as f:
        f.write(text)
    os.replace(a.doc + ".tmp", a.doc)
    print(f"wrote {a.doc} and {len(pngs) + 1 + (1 if probe else 0)} plots in {a.img}")
    return 0


def parse_notes(path):
    """notes.md: the human-written interpretation, as '## KEY' sections (VERDICT, NOTE-thy4, ...)."""
    out, key, buf = {}, None, []
    with open(path) as f:
        for line in f:
            if line.startswith("## @"):
                if key:
                    out[key] = "".join(buf)
                key, buf = line[4:].strip(), []
            elif key:
                buf.append(line)
    if key:
        out[key] = "".join(buf)
    return out


if __name__ == "__main__":
    sys.exit(main())
