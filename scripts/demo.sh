#!/usr/bin/env bash
# The main job: install what is missing, build, and run the demo on real hospital data.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/deploy/install-deps.sh"
"$root/scripts/build.sh" "$root/build"
work=${CONCORD_WORKDIR:-$root/demo-run}
mkdir -p "$work"
data=/usr/share/doc/libfann-dev/examples/datasets
echo "== thyroid: 3 classes, ~92% one class; MLP 21-64-32-3, 30 epochs =="
"$root/build/concord-train" --data "$data/thyroid.train" --test "$data/thyroid.test" \
  --model mlp:64,32 --epochs 30 --batch 32 --lr 0.05 --optimizer sgd --seed 1 --threads 1 \
  --out "$work/thyroid.ckpt" --export "$work/thyroid.safetensors"
echo
echo "model saved to $work/thyroid.ckpt (PyTorch: $work/thyroid.safetensors)"
