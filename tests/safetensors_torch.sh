#!/bin/bash
# safetensors_torch.sh BUILD_DIR SOURCE_DIR — checks that PyTorch loads Concord's
# safetensors exports into the twin nn.Sequential (load_state_dict(strict=True)) and
# computes the same logits as the C code (tolerance 1e-4).
#
# test_checkpoint's checkpoint/export_for_torch test writes seeded models, inputs and C
# logits into $CONCORD_EXPORT_DIR; tests/safetensors_torch.py does the PyTorch side.
# /usr/bin/python3 is used on purpose: Debian's python3-torch is installed for it, not for
# whatever python3 comes first on PATH.
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 BUILD_DIR SOURCE_DIR" >&2
    exit 2
fi
build_dir=$1
source_dir=$2
python=/usr/bin/python3

if ! "$python" -c 'import torch' 2>/dev/null; then
    echo "SKIP: python3-torch not installed"
    exit 0
fi
if [ ! -x "$build_dir/test_checkpoint" ]; then
    echo "SKIP: $build_dir/test_checkpoint not built (Criterion missing?)"
    exit 0
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/concord_torch.XXXXXX")
trap 'rm -rf -- "$dir"' EXIT

CONCORD_EXPORT_DIR=$dir "$build_dir/test_checkpoint" --jobs 1 \
    --filter 'checkpoint/export_for_torch'
"$python" "$source_dir/tests/safetensors_torch.py" "$dir"
