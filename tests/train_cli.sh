#!/usr/bin/env bash
# concord-train end to end on the real thyroid data: accuracy target, JSON output, model
# files, and the error paths a user can hit (bad flags, malformed data).
set -euo pipefail
build=$1
bin=$build/concord-train
data=/usr/share/doc/libfann-dev/examples/datasets
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# 1. Thyroid MLP reaches >= 0.97 test accuracy (issue: learning engine).
"$bin" --data "$data/thyroid.train" --test "$data/thyroid.test" --model mlp:64,32 --epochs 30 \
  --batch 32 --lr 0.05 --optimizer sgd --seed 1 --threads 1 --out "$tmp/m.ckpt" \
  --export "$tmp/m.safetensors" --json >"$tmp/out.txt" 2>"$tmp/err.txt"
tail -n 1 "$tmp/out.txt" >"$tmp/result.json"
acc=$(/usr/bin/python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["test_accuracy"])' "$tmp/result.json")
/usr/bin/python3 - "$tmp/result.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
for k in ("samples_per_sec", "train_seconds", "test_accuracy", "test_balanced_accuracy", "test_macro_f1"):
    assert k in r, k
assert r["test_accuracy"] >= 0.97, r["test_accuracy"]
assert r["samples_per_sec"] > 0 and r["train_seconds"] > 0
PY
echo "thyroid test accuracy $acc (target 0.97)"
grep -q "epoch  30/30" "$tmp/err.txt" || fail "no per-epoch progress"
[ -s "$tmp/m.ckpt" ] && [ -s "$tmp/m.safetensors" ] || fail "model files missing"

# 2. Same seed, same result, bit for bit.
"$bin" --data "$data/thyroid.train" --model mlp:64,32 --epochs 3 --seed 7 --quiet --out "$tmp/a.ckpt" >/dev/null
"$bin" --data "$data/thyroid.train" --model mlp:64,32 --epochs 3 --seed 7 --quiet --out "$tmp/b.ckpt" >/dev/null
cmp -s "$tmp/a.ckpt" "$tmp/b.ckpt" || fail "same seed gave different models"

# 3. Every optimiser / mode trains without error.
for extra in "--optimizer adam --lr 0.001" "--pcn client --momentum 0 --lr 0.01" \
             "--class-weights balanced" "--label-smoothing 0.1 --dropout 0.2 --activation gelu" \
             "--model softmax" "--patience 2 --epochs 50"; do
  # shellcheck disable=SC2086
  "$bin" --data "$data/thyroid.train" --epochs 2 --quiet $extra >/dev/null || fail "mode: $extra"
done

# 4. Usage errors exit 2 with a message; data errors exit 1 naming file and line.
expect_exit() {
  local want=$1; shift
  set +e; "$@" >"$tmp/o" 2>"$tmp/e"; local got=$?; set -e
  [ "$got" -eq "$want" ] || fail "expected exit $want, got $got: $* ($(cat "$tmp/e"))"
}
expect_exit 2 "$bin"
expect_exit 2 "$bin" --data x --epochs -1
expect_exit 2 "$bin" --data x --optimizer rmsprop
expect_exit 2 "$bin" --data "$data/thyroid.train" --model resnet
expect_exit 1 "$bin" --data "$tmp/does-not-exist"
grep -q "does-not-exist" "$tmp/e" || fail "missing file not named"
printf '3 2 2\n0.1 0.2\n1 0\n0.3 oops\n0 1\n0.5 0.6\n1 0\n' >"$tmp/bad.data"
expect_exit 1 "$bin" --data "$tmp/bad.data"
grep -q "bad.data:4" "$tmp/e" || fail "malformed line not located: $(cat "$tmp/e")"
# 5. --config: the file's settings apply, flags override them, errors name file and line.
printf '[data]\ndata = %s\n[training]\nepochs = 3\nseed = 7\n[model]\narch = mlp:64,32\n' "$data/thyroid.train" >"$tmp/t.ini"
"$bin" --config "$tmp/t.ini" --quiet --out "$tmp/c.ckpt" >/dev/null || fail "--config run"
cmp -s "$tmp/a.ckpt" "$tmp/c.ckpt" || fail "--config did not reproduce the flag run (same data, seed, epochs)"
"$bin" --config "$tmp/t.ini" --epochs 1 --quiet --json | tail -n 1 | grep -q '"epochs_run":1' || fail "flag did not override the file"
printf '[training]\nepochs = 3\nlearning_rate = 0.1\n' >"$tmp/bad.ini"
expect_exit 2 "$bin" --config "$tmp/bad.ini" --data x
grep -q "bad.ini:3" "$tmp/e" || fail "config error not located: $(cat "$tmp/e")"
"$bin" --help | grep -q -- "--data FILE" || fail "--help"
"$bin" --version | grep -q "concord-train" || fail "--version"
echo "train_cli: all checks passed"
