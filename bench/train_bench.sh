#!/usr/bin/env bash
# train_bench.sh — local training, Concord vs PyTorch, side by side in one run (DESIGN §9).
#
#   bench/train_bench.sh [--quick] [--repeat N] [--threads "1 2"] [--out FILE] [--max-wait S]
#
# For each thread count (default 1 and 2; OPENBLAS_NUM_THREADS / OMP_NUM_THREADS and
# --threads / torch.set_num_threads set alike on both sides) it runs
#   (a) MLP 784-256-128-10 on Fashion-MNIST, batch 64, SGD(lr 0.05, momentum 0.9), 5 epochs
#   (b) MLP 21-64-32-3 on thyroid, batch 32, SGD(lr 0.02, momentum 0.9), 30 epochs
# with concord-train --json and bench/torch_train.py, plus concord-bench gemm on (a)'s (and
# (b)'s) GEMM shapes, and prints the ratios, the accuracy condition, the GEMM-bound
# efficiency and memory. Every run is repeated N times (default 5), repetition i with
# seed i: speed is the median samples/s, accuracy the mean over the N seeds (one seed's
# test accuracy on Fashion-MNIST moves by about +-0.5 points on its own). With more than one thread PyTorch also runs in two other thread
# configurations and its fastest is compared. Results also go to
# bench/results/train-<date>.json.
# The machine may be shared: each run waits (up to --max-wait S, default 600) for idle
# CPUs, runs disturbed by other processes are retried and left out of the medians.
#
# Builds nothing: expects an existing build (BUILD_DIR, default <repo>/build).
# --quick: 1 + 5 epochs, 1 s of GEMM timing, one repetition (unless --repeat) — a smoke
# run, not a result.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
build="${BUILD_DIR:-$repo/build}"
py=/usr/bin/python3            # Debian's interpreter: torch 1.13 + numpy
fann="${FANN_DIR:-/usr/share/doc/libfann-dev/examples/datasets}"
fmnist="${FMNIST_DIR:-/usr/share/datasets/fashion-mnist}"

quick=0 repeat=5 threads_list="1 2" out="" max_wait=600
fm_epochs=5 th_epochs=30 gemm_seconds=3
fm_lr=0.05 th_lr=0.02 fm_batch=64 th_batch=32
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) quick=1 ;;
    --repeat) repeat="$2"; repeat_given=1; shift ;;
    --threads) threads_list="$2"; shift ;;
    --out) out="$2"; shift ;;
    --max-wait) max_wait="$2"; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "train_bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if [ "$quick" = 1 ]; then fm_epochs=1 th_epochs=5 gemm_seconds=1; [ -n "${repeat_given:-}" ] || repeat=1; fi

case "$repeat" in ''|*[!0-9]*|0) echo "train_bench.sh: --repeat needs a positive integer" >&2; exit 2 ;; esac
case "$max_wait" in ''|*[!0-9]*) echo "train_bench.sh: --max-wait needs a number of seconds" >&2; exit 2 ;; esac
for t in $threads_list; do
    case "$t" in ''|*[!0-9]*|0) echo "train_bench.sh: --threads needs positive integers, e.g. \"1 2\"" >&2; exit 2 ;; esac
done
for bin in concord-train concord-bench; do
    [ -x "$build/$bin" ] || { echo "train_bench.sh: $build/$bin not found (build first, or set BUILD_DIR)" >&2; exit 1; }
done
[ -x "$py" ] || { echo "train_bench.sh: $py not found" >&2; exit 1; }
for f in "$fann/thyroid.train" "$fann/thyroid.test" "$fmnist/train-images-idx3-ubyte.gz" \
         "$fmnist/train-labels-idx1-ubyte.gz" "$fmnist/t10k-images-idx3-ubyte.gz" \
         "$fmnist/t10k-labels-idx1-ubyte.gz"; do
    [ -r "$f" ] || { echo "train_bench.sh: missing data file $f" >&2; exit 1; }
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
stamp="$(date -u +%Y-%m-%dT%H%M%SZ)"
[ -n "$out" ] || { mkdir -p "$here/results"; out="$here/results/train-$stamp.json"; }

# The machine may be shared (other builds and tests): before each run wait until the CPUs
# are idle, and after it compute how much CPU time other processes took during it; a run
# where they took more than 10% of one CPU is marked disturbed and retried (at most twice).
# The summary takes the median over undisturbed runs.
hz="$(getconf CLK_TCK)"
ncpu="$(nproc)"
cpu_busy_ticks() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat; }
# CPU seconds of this shell's finished children: bash `times`, 2nd line. `times` must run in
# this shell itself (a subshell starts with no children), so it writes to a file.
children_cpu_s() {
    awk 'NR == 2 {t = 0; for (i = 1; i <= NF; i++) { split($i, a, "m"); sub(/s$/, "", a[2]); t += a[1] * 60 + a[2] } print t}' "$1"
}
wait_idle() {        # until < 10% of the machine is busy over one second (max $max_wait s)
    local waited=0 b0 b1
    while [ "$waited" -lt "$max_wait" ]; do
        b0="$(cpu_busy_ticks)"; sleep 1; b1="$(cpu_busy_ticks)"
        awk -v d="$((b1 - b0))" -v hz="$hz" -v n="$ncpu" 'BEGIN { exit !(d / hz / n < 0.10) }' && return 0
        [ "$waited" = 0 ] && echo "  (waiting for the machine to go idle...)" >&2
        waited=$((waited + 1))
    done
    echo "  (machine still busy after ${max_wait}s; running anyway)" >&2
}

# run TAG THREADS CMD... : runs CMD `repeat` times with THREADS BLAS/OpenMP threads, the
# i-th time with @SEED@ in its arguments replaced by i, and appends the last stdout line of
# each run (one JSON object, plus the bench_* fields added here) to $tmp/TAG.tTHREADS.jsonl.
run() {
    local tag="$1" t="$2"; shift 2
    local i attempt line b0 b1 c0 c1 w0 w1 others disturbed
    for ((i = 1; i <= repeat; i++)); do
        for ((attempt = 1; attempt <= 3; attempt++)); do
            wait_idle
            printf '  %-24s threads %s  run %d/%d\n' "$tag" "$t" "$i" "$repeat" >&2
            times >"$tmp/times0"; b0="$(cpu_busy_ticks)"; w0="$(date +%s.%N)"
            line="$(OPENBLAS_NUM_THREADS=$t OMP_NUM_THREADS=$t "${@//@SEED@/$i}" 2>"$tmp/last.err" | tail -n 1)" || {
                echo "train_bench.sh: failed: $*" >&2; cat "$tmp/last.err" >&2; exit 1; }
            b1="$(cpu_busy_ticks)"; w1="$(date +%s.%N)"; times >"$tmp/times1"
            c0="$(children_cpu_s "$tmp/times0")"; c1="$(children_cpu_s "$tmp/times1")"
            # others' CPU time during the run (system busy time minus ours), as a share of its
            # wall time in CPUs; disturbed if > 0.1 CPU and > 30 ms (3 clock ticks of slack)
            others="$(awk -v b="$((b1 - b0))" -v hz="$hz" -v c0="$c0" -v c1="$c1" -v w0="$w0" -v w1="$w1" \
                'BEGIN { o = b / hz - (c1 - c0); if (o < 0) o = 0; printf "%.3f %.3f", o / (w1 - w0), o }')"
            disturbed=false
            awk -v o="$others" 'BEGIN { split(o, a, " "); exit !(a[1] > 0.10 && a[2] > 0.03) }' && disturbed=true
            others="${others%% *}"
            printf '%s\n' "${line%\}},\"bench_seed\":$i,\"bench_others_cpu\":$others,\"bench_disturbed\":$disturbed}" \
                >>"$tmp/$tag.t$t.jsonl"
            [ "$disturbed" = false ] && break
            echo "  (disturbed: other processes used $others CPUs during the run; retrying)" >&2
        done
    done
}

# torch_variants KEY THREADS ARGS... : PyTorch as the issue sets it (OPENBLAS_NUM_THREADS=t,
# torch.set_num_threads(t)); with t > 1 also two variants, since there libgomp's spinning
# workers and OpenBLAS's pthreads fight over the cores (it can lose 3-4x): passive OpenMP
# waiting, and intra-op threads 1 with OpenBLAS still at t threads. The summary compares
# against PyTorch's fastest configuration.
torch_variants() {
    local key="$1" t="$2"; shift 2
    run "torch-$key" "$t" "$py" "$@"
    [ "$t" = 1 ] && return 0
    run "torch~passive-$key" "$t" env OMP_WAIT_POLICY=PASSIVE "$py" "$@"
    run "torch~omp1-$key" "$t" env OMP_NUM_THREADS=1 "$py" "$@" --threads 1
}

fm_data=(--data "$fmnist/train-images-idx3-ubyte.gz" --labels "$fmnist/train-labels-idx1-ubyte.gz"
         --test "$fmnist/t10k-images-idx3-ubyte.gz" --test-labels "$fmnist/t10k-labels-idx1-ubyte.gz")
th_data=(--data "$fann/thyroid.train" --test "$fann/thyroid.test")

loadavg="$(cut -d' ' -f1-3 /proc/loadavg)"
echo "train_bench: build $build, threads {$threads_list}, repeat $repeat$([ $quick = 1 ] && echo ', QUICK')" >&2
# Process floor: peak RSS of a concord binary that only initialises OpenBLAS.
OPENBLAS_NUM_THREADS=1 "$build/concord-bench" gemm --layers 1,1 --batch 1 --seconds 0.01 --json \
    | tail -n 1 >"$tmp/floor.json"
for t in $threads_list; do
    run gemm-fmnist "$t" "$build/concord-bench" gemm --layers 784,256,128,10 --batch $fm_batch \
        --threads "$t" --seconds $gemm_seconds --json
    run gemm-thyroid "$t" "$build/concord-bench" gemm --layers 21,64,32,3 --batch $th_batch \
        --threads "$t" --seconds $gemm_seconds --json
    run concord-fmnist "$t" "$build/concord-train" "${fm_data[@]}" --model mlp:256,128 \
        --epochs $fm_epochs --batch $fm_batch --lr $fm_lr --momentum 0.9 --val-frac 0 --seed @SEED@ \
        --threads "$t" --quiet --json
    torch_fm=("$here/torch_train.py" --dataset fashion-mnist --data-dir "$fmnist" --hidden "256,128"
        --epochs "$fm_epochs" --batch "$fm_batch" --lr "$fm_lr" --momentum 0.9 --seed @SEED@ --threads "$t" --quiet)
    torch_variants fmnist "$t" "${torch_fm[@]}"
    run concord-thyroid "$t" "$build/concord-train" "${th_data[@]}" --model mlp:64,32 \
        --epochs $th_epochs --batch $th_batch --lr $th_lr --momentum 0.9 --val-frac 0 --seed @SEED@ \
        --threads "$t" --quiet --json
    torch_th=("$here/torch_train.py" --dataset thyroid --data-dir "$fann" --hidden "64,32"
        --epochs "$th_epochs" --batch "$th_batch" --lr "$th_lr" --momentum 0.9 --seed @SEED@ --threads "$t" --quiet)
    torch_variants thyroid "$t" "${torch_th[@]}"
done

cpu="$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1)"
cpu="$cpu, $(lscpu | sed -n 's/^Core(s) per socket:[[:space:]]*//p' | head -n 1) cores/socket, $(lscpu | sed -n 's/^Thread(s) per core:[[:space:]]*//p' | head -n 1) thread(s)/core"
"$py" - "$tmp" "$out" "$threads_list" "$quick" "$repeat" "$cpu" "$(nproc)" "$stamp" \
    "$fm_epochs" "$th_epochs" "$fm_lr" "$th_lr" "$fm_batch" "$th_batch" "$loadavg" <<'PY'
import json, os, statistics, sys
(tmp, out, threads_list, quick, repeat, cpu, ncpu, stamp,
 fm_epochs, th_epochs, fm_lr, th_lr, fm_batch, th_batch, loadavg) = sys.argv[1:]
threads = [int(t) for t in threads_list.split()]
quick = quick == "1"

def runs(tag, t):
    with open(os.path.join(tmp, f"{tag}.t{t}.jsonl")) as f:
        return [json.loads(l) for l in f if l.strip()]

def clean(rs):
    """The runs no other process disturbed (all of them if none is clean)."""
    ok = [r for r in rs if not r.get("bench_disturbed")]
    return ok or rs

def per_seed(rs):
    """One run per seed (accuracy does not depend on disturbance: the first run of each)."""
    seen = {}
    for r in rs:
        seen.setdefault(r.get("bench_seed", 1), r)
    return [seen[k] for k in sorted(seen)]

def acc_stats(rs, key):
    v = [r[key] for r in per_seed(rs)]
    mean = statistics.fmean(v)
    sd = statistics.stdev(v) if len(v) > 1 else 0.0
    return mean, sd, v

def clean_only(rs):
    return [r for r in rs if not r.get("bench_disturbed")]

def median_run(rs, key="samples_per_sec"):
    """The undisturbed run with the median samples/s (lower median for even counts)."""
    s = sorted(clean(rs), key=lambda r: r[key])
    return s[(len(s) - 1) // 2]

floor = json.load(open(os.path.join(tmp, "floor.json")))["peak_rss_bytes"]
W = {  # workload: sizes, batch, speed target, accuracy tolerance (points) and floor
    "fmnist": dict(name="(a) Fashion-MNIST 784-256-128-10", sizes=[784, 256, 128, 10],
                   batch=int(fm_batch), target=1.15, tol=0.5, acc_floor=0.85),
    "thyroid": dict(name="(b) thyroid 21-64-32-3", sizes=[21, 64, 32, 3],
                    batch=int(th_batch), target=4.0, tol=1.0, acc_floor=0.97),
}
MiB = 1024.0 * 1024.0
summary, raw = [], {}
for t in threads:
    for key, w in W.items():
        c_all, p_all, g_all = runs(f"concord-{key}", t), runs(f"torch-{key}", t), runs(f"gemm-{key}", t)
        raw[f"{key}.t{t}"] = {"concord": c_all, "pytorch": p_all, "gemm": g_all}
        c, p, g = median_run(c_all), median_run(p_all), median_run(g_all)
        # PyTorch's fastest configuration (see torch_variants in the shell part)
        variants = {"default": median_run(p_all)}
        for v, label in (("passive", "OMP_WAIT_POLICY=PASSIVE"),
                         ("omp1", "intra-op threads 1 + OpenBLAS threads")):
            if os.path.exists(os.path.join(tmp, f"torch~{v}-{key}.t{t}.jsonl")):
                v_all = runs(f"torch~{v}-{key}", t)
                raw[f"{key}.t{t}"][f"pytorch_{v}"] = v_all
                variants[label] = median_run(v_all)
        torch_cfg = max(variants, key=lambda k: variants[k]["samples_per_sec"])
        torch_variant_sps = {k: r["samples_per_sec"] for k, r in variants.items()}
        p = variants[torch_cfg]
        if torch_cfg != "default":
            p_all = raw[f"{key}.t{t}"]["pytorch_" + ("passive" if torch_cfg.startswith("OMP_WAIT") else "omp1")]
        sizes, B = w["sizes"], w["batch"]
        macs = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
        flop_per_sample = 6 * macs                       # the issue's count (incl. dX of layer 1)
        achieved = c["samples_per_sec"] * flop_per_sample / 1e9
        cacc, cacc_sd, cacc_all = acc_stats(c_all, "test_accuracy")
        pacc, pacc_sd, pacc_all = acc_stats(p_all, "test_accuracy")
        dacc = 100.0 * (cacc - pacc)
        # standard error of the difference of the two means, in points
        dacc_se = 100.0 * (cacc_sd ** 2 / len(cacc_all) + pacc_sd ** 2 / len(pacc_all)) ** 0.5
        # Memory while training: concord-train reports its own accounting ("memory": peak RSS
        # of train_run alone, and the budget baseline + data + 4 x model + one batch of
        # activations); older builds only give the whole-run peak, so fall back to that with
        # the budget computed here (activations: gathered input, per hidden layer dense out
        # + ReLU out, logits) and this script's process floor as the baseline.
        mem = c.get("memory")
        if mem:
            data_b, act_bytes, base = mem["data_bytes"], mem["activation_bytes"], mem["baseline_rss_bytes"]
            model4 = 4 * mem["model_bytes"]
            budget = mem["budget_bytes"]
            train_rss = mem["train_peak_rss_bytes"] or c["peak_rss_bytes"]
        else:
            data_b, base, model4 = c["data_bytes"], floor, 4 * 4 * c["n_params"]
            act_bytes = 4 * B * (sizes[0] + sum(2 * h for h in sizes[1:-1]) + sizes[-1])
            budget = base + data_b + model4 + act_bytes
            train_rss = c["peak_rss_bytes"]
        summary.append({
            "workload": key, "name": w["name"], "threads": t, "batch": B,
            "concord_samples_per_sec": c["samples_per_sec"],
            "pytorch_samples_per_sec": p["samples_per_sec"],
            "concord_samples_per_sec_all": [r["samples_per_sec"] for r in clean(c_all)],
            "pytorch_samples_per_sec_all": [r["samples_per_sec"] for r in clean(p_all)],
            "disturbed_runs_dropped": sum(len(x) - len(clean(x)) for x in (c_all, p_all, g_all)),
            "only_disturbed_runs": any(not clean_only(x) for x in (c_all, p_all, g_all)),
            "pytorch_config": torch_cfg, "pytorch_config_samples_per_sec": torch_variant_sps,
            "ratio": c["samples_per_sec"] / p["samples_per_sec"],
            "ratio_target": w["target"],
            "ratio_met": c["samples_per_sec"] / p["samples_per_sec"] >= w["target"],
            "seeds": len(cacc_all),
            "concord_test_accuracy": cacc, "pytorch_test_accuracy": pacc,
            "concord_test_accuracy_sd": cacc_sd, "pytorch_test_accuracy_sd": pacc_sd,
            "concord_test_accuracy_per_seed": cacc_all, "pytorch_test_accuracy_per_seed": pacc_all,
            "concord_test_balanced_accuracy": acc_stats(c_all, "test_balanced_accuracy")[0],
            "pytorch_test_balanced_accuracy": acc_stats(p_all, "test_balanced_accuracy")[0],
            "concord_test_macro_f1": acc_stats(c_all, "test_macro_f1")[0],
            "pytorch_test_macro_f1": acc_stats(p_all, "test_macro_f1")[0],
            "accuracy_delta_points": dacc, "accuracy_delta_se_points": dacc_se,
            "accuracy_delta_points_per_seed": [100.0 * (a - b) for a, b in zip(cacc_all, pacc_all)],
            "accuracy_tolerance_points": w["tol"],
            "accuracy_equal": abs(dacc) <= w["tol"],
            "accuracy_floor": w["acc_floor"],
            "accuracy_floor_met": min(cacc, pacc) >= w["acc_floor"],
            "flop_per_sample": flop_per_sample,
            "concord_gflops": achieved,
            "gemm_gflops": g["gflops"], "gemm_samples_per_sec": g["samples_per_sec"],
            "gemm_model_set_samples_per_sec": g["model_set_samples_per_sec"],
            "gemm_efficiency": achieved / g["gflops"],
            "gemm_efficiency_model_set": c["samples_per_sec"] / g["model_set_samples_per_sec"],
            "concord_train_peak_rss_bytes": train_rss,
            "concord_peak_rss_bytes": c["peak_rss_bytes"], "pytorch_peak_rss_bytes": p["peak_rss_bytes"],
            "baseline_rss_bytes": base, "data_bytes": data_b, "model_bytes_x4": model4,
            "activation_bytes": act_bytes, "memory_budget_bytes": budget,
            "memory_ratio": train_rss / budget,
            "memory_over_budget_bytes": train_rss - budget,
        })

def yn(b): return "yes" if b else "NO"

print()
print(f"Local training, Concord vs PyTorch {raw[next(iter(raw))]['pytorch'][0].get('torch_version', '?')}"
      f" ({cpu}, {ncpu} CPUs){'  [QUICK: not a result]' if quick else ''}")
print(f"samples/s: median of {repeat} run(s); accuracy: mean over seeds 1..{repeat}; (a) {fm_epochs} epochs lr {fm_lr}, (b) {th_epochs} epochs lr {th_lr}, SGD momentum 0.9")
print()
hdr = f"{'workload':34} {'thr':>3} {'Concord/s':>11} {'PyTorch/s':>10} {'ratio':>6} {'target':>7} {'met':>4} {'acc C':>7} {'acc P':>7} {'Δpts':>6} {'±se':>5} {'acc ok':>6}"
print(hdr); print("-" * len(hdr))
for s in summary:
    print(f"{s['name']:34} {s['threads']:>3} {s['concord_samples_per_sec']:>11.0f} {s['pytorch_samples_per_sec']:>10.0f} "
          f"{s['ratio']:>5.2f}x {'>=' + format(s['ratio_target'], '.2f') + 'x':>7} {yn(s['ratio_met']):>4} "
          f"{s['concord_test_accuracy']:>7.4f} {s['pytorch_test_accuracy']:>7.4f} {s['accuracy_delta_points']:>+6.2f} {s['accuracy_delta_se_points']:>5.2f} "
          f"{yn(s['accuracy_equal'] and s['accuracy_floor_met']):>6}")
print(f"(acc: mean test accuracy over the seeds; acc ok: |Δ| of the means within 0.5 points on (a), 1 point on (b),"
      f" and both means >= 0.85 / 0.97; ±se: standard error of Δ)")
for s in summary:
    if s["seeds"] > 1:
        print(f"({s['name']}, {s['threads']} threads: Δ per seed "
              + " ".join(f"{d:+.2f}" for d in s["accuracy_delta_points_per_seed"]) + ")")
for s in summary:
    if s["disturbed_runs_dropped"]:
        print(f"({s['name']}, {s['threads']} threads: {s['disturbed_runs_dropped']} run(s) disturbed by other"
              f" processes left out{'; NO undisturbed run for some side' if s['only_disturbed_runs'] else ''})")
for s in summary:
    if len(s["pytorch_config_samples_per_sec"]) > 1:
        print(f"({s['name']}, {s['threads']} threads: PyTorch's fastest configuration kept — "
              + "; ".join(f"{k}: {v:.0f}/s" for k, v in s["pytorch_config_samples_per_sec"].items()) + ")")
print()
hdr = f"{'GEMM bound':34} {'thr':>3} {'bare GF/s':>9} {'bare eq/s':>10} {'Concord GF/s':>12} {'eff':>6} {'>=80%':>5} {'model-set eq/s':>14} {'C/model-set':>11}"
print(hdr); print("-" * len(hdr))
for s in summary:
    print(f"{s['name']:34} {s['threads']:>3} {s['gemm_gflops']:>9.1f} {s['gemm_samples_per_sec']:>10.0f} "
          f"{s['concord_gflops']:>12.1f} {100 * s['gemm_efficiency']:>5.0f}% {yn(s['gemm_efficiency'] >= 0.8):>5} "
          f"{s['gemm_model_set_samples_per_sec']:>14.0f} {100 * s['gemm_efficiency_model_set']:>10.0f}%")
print("(GF/s counts 6·MACs per sample, including the first layer's dX that the model skips;"
      " 'model-set' is the bare rate of the GEMMs the model really issues)")
print()
hdr = (f"{'memory while training (MiB)':34} {'thr':>3} {'train RSS':>9} {'baseline':>8} {'data':>7} {'4x model':>8}"
       f" {'batch act':>9} {'budget':>7} {'RSS/budget':>10} {'over':>6} {'run peak':>8} {'PyTorch':>8}")
print(hdr); print("-" * len(hdr))
for s in summary:
    print(f"{s['name']:34} {s['threads']:>3} {s['concord_train_peak_rss_bytes'] / MiB:>9.1f} {s['baseline_rss_bytes'] / MiB:>8.1f}"
          f" {s['data_bytes'] / MiB:>7.1f} {s['model_bytes_x4'] / MiB:>8.2f} {s['activation_bytes'] / MiB:>9.3f}"
          f" {s['memory_budget_bytes'] / MiB:>7.1f} {s['memory_ratio']:>10.3f} {s['memory_over_budget_bytes'] / MiB:>+6.2f}"
          f" {s['concord_peak_rss_bytes'] / MiB:>8.1f}"
          f" {s['pytorch_peak_rss_bytes'] / MiB:>8.1f}")
print("(train RSS: Concord's peak RSS during training alone; budget = baseline (process before loading data)"
      " + data + 4 x model + one batch of activations; run peak: whole process incl. loading;"
      " PyTorch: whole process)")

doc = {
    "date": stamp, "quick": quick, "repeat": int(repeat),
    "machine": {"cpu": cpu, "cpus": int(ncpu),
                "openblas_core": raw[next(iter(raw))]["gemm"][0].get("openblas_core")},
    "settings": {"fmnist": {"epochs": int(fm_epochs), "lr": float(fm_lr), "batch": int(fm_batch), "momentum": 0.9},
                 "thyroid": {"epochs": int(th_epochs), "lr": float(th_lr), "batch": int(th_batch), "momentum": 0.9}},
    "process_floor_rss_bytes": floor, "loadavg_at_start": loadavg,
    "summary": summary, "runs": raw,
}
with open(out, "w") as f:
    json.dump(doc, f, indent=1)
print(f"\nwrote {out}")
PY
