#!/usr/bin/env bash
# Accuracy targets on Fashion-MNIST (Debian dataset-fashion-mnist): an MLP reaches >= 0.85
# test accuracy within 5 epochs and the CNN >= 0.88. Labelled slow: the sanitizer pass skips it.
set -euo pipefail
build=$1
f=/usr/share/datasets/fashion-mnist
check() {
  local name=$1 target=$2; shift 2
  local line
  line=$("$build/concord-train" --data "$f/train-images-idx3-ubyte.gz" --labels "$f/train-labels-idx1-ubyte.gz" \
    --test "$f/t10k-images-idx3-ubyte.gz" --test-labels "$f/t10k-labels-idx1-ubyte.gz" \
    --batch 64 --seed 1 --quiet --json "$@" | tail -n 1)
  /usr/bin/python3 - "$name" "$target" "$line" <<'PY'
import json, sys
name, target, r = sys.argv[1], float(sys.argv[2]), json.loads(sys.argv[3])
print(f"{name}: test accuracy {r['test_accuracy']:.4f} (target {target}), "
      f"{r['samples_per_sec']:.0f} samples/s, peak RSS {r['peak_rss_bytes']/2**20:.0f} MiB")
assert r["test_accuracy"] >= target, f"{name} below target"
PY
}
check "MLP 784-256-128-10, 5 epochs" 0.85 --model mlp:256,128 --epochs 5 --lr 0.05
check "CNN conv16-conv32-dense128, 3 epochs" 0.88 --model cnn:16,32/128 --epochs 3 --lr 0.05 --threads 2
