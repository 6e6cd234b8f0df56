#!/usr/bin/env bash
# The daemons' normal run under valgrind: a coordinator and two hospitals, 2 rounds with
# every method on, all three processes under memcheck. Any definite or indirect leak, or any
# memory error, fails the test (valgrind's exit code 3). Then a plain FedAvg run of a model
# large enough for the coordinator's summing process (sumproc.h) to take a share of each
# close, the coordinator and that child under memcheck (the child's log must be empty).
# Labelled slow: skipped in the sanitizer pass, which checks leaks with LeakSanitizer.
set -euo pipefail
build=$1
command -v valgrind >/dev/null || { echo "SKIP: valgrind not installed"; exit 0; }
tmp=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$tmp"' EXIT
data=/usr/share/doc/libfann-dev/examples/datasets
"$build/concord-sim" --data "$data/thyroid.train" --test "$data/thyroid.test" --clients 2 --rounds 2 --epochs 1 \
  --all --deadline 120 --workdir "$tmp/w" --prepare-only >/dev/null
vg=(valgrind --quiet --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect
    --error-exitcode=3 --trace-children=no)
"${vg[@]}" --log-file="$tmp/coordinator.vg" "$build/concord-coordinator" --config "$tmp/w/configs/coordinator.ini" \
  >"$tmp/coordinator.log" 2>&1 &
coord=$!; pids+=("$coord")
for s in site1 site2; do
  "${vg[@]}" --log-file="$tmp/$s.vg" "$build/concord-client" --config "$tmp/w/configs/$s.ini" >"$tmp/$s.log" 2>&1 &
  pids+=("$!")
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=$?; done
pids=()
for f in "$tmp"/*.vg; do
  if [ -s "$f" ]; then echo "== $f"; cat "$f"; fi
done
[ "$status" -eq 0 ] || { echo "FAIL: a daemon exited with $status (3 = valgrind found leaks or errors)"; tail -5 "$tmp/coordinator.log"; exit 1; }
[ "$(wc -l <"$tmp/w/history.jsonl")" -eq 2 ] || { echo "FAIL: the run did not complete"; exit 1; }
echo "valgrind: coordinator and 2 clients ran 2 rounds with every method on, no leaks, no errors"

printf '[model]\narch = mlp:1024,1024\n' >"$tmp/wide.ini"
# (no --test: scoring the wide model on the test set would take a minute under memcheck)
"$build/concord-sim" --data "$data/thyroid.train" --clients 2 --rounds 2 --epochs 1 \
  --config "$tmp/wide.ini" --deadline 120 --workdir "$tmp/f" --prepare-only >/dev/null
"${vg[@]}" --log-file="$tmp/fedavg.%p.vg" "$build/concord-coordinator" --config "$tmp/f/configs/coordinator.ini" \
  --config "$tmp/wide.ini" >"$tmp/fedavg.log" 2>&1 &
coord=$!; pids+=("$coord")
for s in site1 site2; do
  "$build/concord-client" --config "$tmp/f/configs/$s.ini" >"$tmp/f-$s.log" 2>&1 &
  pids+=("$!")
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=$?; done
pids=()
logs=("$tmp"/fedavg.*.vg)
for f in "${logs[@]}"; do
  if [ -s "$f" ]; then echo "== $f"; cat "$f"; status=3; fi
done
[ "$status" -eq 0 ] || { echo "FAIL: FedAvg run: exit status $status (3 = valgrind found leaks or errors)"; tail -5 "$tmp/fedavg.log"; exit 1; }
[ "${#logs[@]}" -eq 2 ] || { echo "FAIL: expected the coordinator's and its summing process's valgrind logs, got ${#logs[@]}"; exit 1; }
# Each close sums at least the last update to arrive with it; summing in time while the
# coordinator waits ([aggregation] in_time) adds a share per step.
shares=$(sed -n 's/.*event=sum_process_stopped pid=[0-9]* shares=\([0-9]*\) blocks=[0-9]* lost=0.*/\1/p' "$tmp/fedavg.log")
[ "${shares:-0}" -ge 2 ] ||
  { echo "FAIL: the summing process did not sum a share of both closes"; grep sum_process "$tmp/fedavg.log"; exit 1; }
echo "valgrind: FedAvg with the summing process ($shares shares, $(grep -c 'event=in_time_summed' "$tmp/fedavg.log") in-time steps), coordinator and helper: no leaks, no errors"
