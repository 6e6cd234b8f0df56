#!/usr/bin/env bash
# bench/soak.sh — load and soak (issue 5): a federation of many hospitals on this machine,
# with VmRSS of the coordinator and of every client sampled from /proc/PID/status while it
# runs (bench/soak.py does the sampling, the accounting and the summary).
#
#   bench/soak.sh [--clients N] [--rounds R] [--from-round K] [--fedavg] [--long] [--interval S]
#                 [-- more concord-sim arguments]
#
# Default: 100 hospitals x 20 rounds on thyroid with Dirichlet(1) label skew and every method
# on (--all, the main job's configuration); flatness judged on rounds 5..20: coordinator
# growth < 1 MiB, every client < 0.5 MiB. (Dirichlet(0.5) cannot give 100 hospitals 5 rows
# each out of 3,600: concord-data refuses it; alpha 1 is the smallest that can.)
# --fedavg: plain FedAvg instead of --all.
# --long:   200 rounds, flatness judged on rounds 100..200 (< 0.25 MiB each), the window
#           where glibc's arenas have long settled (docs/benchmarks.md); 5..20 is reported too.
# Checks every round closed with every hospital, and that no update was lost (sent = acked
# = accepted = in history). Exit 1 when a check fails.
#
# Uses $BUILD_DIR (default build/) and /usr/bin/python3. Writes bench/results/soak-<date>/
# (summary.txt, summary.json, rounds.csv, samples.csv, the run's logs in run/). Waits while
# /tmp/concord-bench.lock exists (someone is timing a benchmark). Run it with `nice -n 5`.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
DATA=/usr/share/doc/libfann-dev/examples/datasets
clients=100 rounds=20 from=5 coord_max=1 client_max=0.5 interval=0.05
methods=(--all)
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --clients) clients=$2; shift ;;
        --rounds) rounds=$2; shift ;;
        --from-round) from=$2; shift ;;
        --interval) interval=$2; shift ;;
        --fedavg) methods=() ;;
        --long) rounds=200 from=100 coord_max=0.25 client_max=0.25 interval=0.1 ;;
        --) shift; extra=("$@"); break ;;
        -h|--help) sed -n 2,22p "$0"; exit 0 ;;
        *) echo "soak.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
[ -x "$BUILD_DIR/concord-sim" ] || { echo "missing $BUILD_DIR/concord-sim (build first)" >&2; exit 1; }
while [ -e /tmp/concord-bench.lock ]; do
    echo "soak.sh: /tmp/concord-bench.lock exists (a benchmark is being timed); waiting" >&2
    sleep 60
done
out=$ROOT/bench/results/soak-$(date -u +%Y-%m-%dT%H%M%SZ)
mkdir -p "$out"
echo "build: $BUILD_DIR ($(grep -m1 CMAKE_BUILD_TYPE: "$BUILD_DIR/CMakeCache.txt" 2>/dev/null | cut -d= -f2)); nice $(nice)" \
    >"$out/machine.txt"
/usr/bin/python3 "$ROOT/bench/soak.py" --build "$BUILD_DIR" --out "$out" --clients "$clients" --rounds "$rounds" \
    --from-round "$from" --interval "$interval" --max-coord-growth-mib "$coord_max" \
    --max-client-growth-mib "$client_max" -- \
    --data "$DATA/thyroid.train" --test "$DATA/thyroid.test" --split dirichlet:1 --seed 1 \
    "${methods[@]}" "${extra[@]}"
