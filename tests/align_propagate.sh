#!/usr/bin/env bash
# [alignment] propagate (DESIGN §6.2) end to end: the coordinator reads and checks the keys,
# sends them with every task, and the hospitals' training feels them. Small federations on
# the thyroid data (2 hospitals x 2 rounds, 1 epoch), the same seed each time:
#  1. --print-config shows both keys; an out-of-range propagate_eps is refused with its file.
#  2. gradient alignment with propagate off, and on: both runs complete every round, and the
#     final models differ (determinism makes an unchanged model mean the key never arrived).
#  3. propagate on with per-class server mode (the penalty goes to delta_reg) and with PCN-SGD
#     client mode: every round completes.
set -euo pipefail
build=$1
data=/usr/share/doc/libfann-dev/examples/datasets
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; for f in "$tmp"/*/logs/*.log; do [ -f "$f" ] && { echo "== $f"; tail -5 "$f"; }; done; exit 1; }

printf '[alignment]\npropagate = true\npropagate_eps = 2e-3\n' >"$tmp/on.ini"
printf '[alignment]\npropagate_eps = 5\n' >"$tmp/bad.ini"

sim() {  # sim LABEL [concord-sim options...]
  local label=$1; shift
  "$build/concord-sim" --data "$data/thyroid.train" --test "$data/thyroid.test" --clients 2 --rounds 2 --epochs 1 \
    --split dirichlet:1.0 --seed 5 --alignment gradient --workdir "$tmp/$label" "$@" >"$tmp/$label.out" 2>&1 ||
    { cat "$tmp/$label.out"; fail "$label: concord-sim failed"; }
  /usr/bin/python3 - "$tmp/$label/history.jsonl" "$label" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert [l["round"] for l in lines] == [0, 1], [l["round"] for l in lines]
assert all(l["status"] == "ok" and len(l["responded"]) == 2 for l in lines), [l["status"] for l in lines]
print(f"{sys.argv[2]}: 2 rounds ok, global loss {[round(l['global']['loss'], 4) for l in lines]}")
PY
}

# ---- 1 ------------------------------------------------------------------------------------
sim off
cfg=$tmp/off/configs/coordinator.ini
"$build/concord-coordinator" --config "$cfg" --config "$tmp/on.ini" --print-config >"$tmp/print.out" 2>&1 ||
  { cat "$tmp/print.out"; fail "1: --print-config"; }
section=$(awk '/^\[/{on = ($0 == "[alignment]")} on' "$tmp/print.out")
grep -qx 'propagate = true' <<<"$section" || fail "1: propagate = true not shown: $section"
grep -qx 'propagate_eps = 2e-3' <<<"$section" || fail "1: propagate_eps = 2e-3 not shown: $section"
# Refused at start-up, before it binds or waits for anyone (timeout: only a safety net).
if timeout 30 "$build/concord-coordinator" --config "$cfg" --config "$tmp/bad.ini" --rounds 1 \
     --state-dir "$tmp/bad-state" >"$tmp/bad.out" 2>&1; then
  fail "1: propagate_eps = 5 was accepted"
fi
grep -q "bad.ini:2: \[alignment\] propagate_eps" "$tmp/bad.out" || fail "1: the refusal does not name file, line and key: $(cat "$tmp/bad.out")"
echo "1: keys printed; refused: $(grep -m1 -o "bad.ini:2.*" "$tmp/bad.out" | head -1)"

# ---- 2 ------------------------------------------------------------------------------------
sim on --config "$tmp/on.ini"
if cmp -s "$tmp/off/final-model.ckpt" "$tmp/on/final-model.ckpt"; then
  fail "2: propagate on left the final model bit-identical: the setting did not reach the training"
fi
echo "2: propagate on changes the final model (same seed, same split)"

# ---- 3 ------------------------------------------------------------------------------------
sim server --config "$tmp/on.ini" --per-class server
sim client --config "$tmp/on.ini" --per-class client
echo "align_propagate: all checks passed"
