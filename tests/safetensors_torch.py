"""Loads Concord's safetensors exports into their PyTorch twins and compares logits.

Usage: safetensors_torch.py DIR

DIR holds what `test_checkpoint --filter checkpoint/export_for_torch` writes: manifest.txt
("name rows" per line) and for each name NAME.safetensors, NAME.inputs.f32 (raw features,
rows x n_inputs, little-endian float32) and NAME.logits.f32 (the C model's logits).

The safetensors file is parsed here with struct + json (Debian's torch 1.13 has no
safetensors package). The twin is built from the architecture in __metadata__ alone
(arch, activation, dropout, input_shape), independently of the "torch_sequential" string,
which is then checked to describe the same modules. load_state_dict(strict=True) must
accept the tensors, and the twin's logits must match the C logits within 1e-4.
"""
import json
import struct
import sys

import torch
from torch import nn

TOL = 1e-4


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    if (8 + n) % 8:
        raise AssertionError(f"{path}: data section not 8-byte aligned (header {n} bytes)")
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    data = raw[8 + n:]
    meta = header.pop("__metadata__")
    tensors, expect = {}, 0
    for name, info in header.items():  # json keeps file order
        begin, end = info["data_offsets"]
        if info["dtype"] != "F32" or begin != expect:
            raise AssertionError(f"{path}: {name}: dtype {info['dtype']}, offset {begin}")
        t = torch.frombuffer(bytearray(data[begin:end]), dtype=torch.float32)
        if sys.byteorder != "little":
            t = t.view(torch.int32).byteswap().view(torch.float32)
        tensors[name] = t.reshape(info["shape"]).clone()
        expect = end
    if expect != len(data):
        raise AssertionError(f"{path}: tensors cover {expect} of {len(data)} data bytes")
    return tensors, meta


def activation(meta):
    name = meta["activation"]
    if name == "relu":
        return nn.ReLU()
    if name == "gelu":
        return nn.GELU(approximate="tanh")
    if name == "tanh":
        return nn.Tanh()
    raise AssertionError(f"unknown activation {name}")


def build_twin(meta):
    """nn.Sequential from the architecture string: softmax, mlp:H1,..., cnn:C1,...[/H1,...]."""
    arch, p = meta["arch"], float(meta["dropout"])
    n_inputs, n_classes = int(meta["n_inputs"]), int(meta["n_classes"])
    shape = json.loads(meta["input_shape"])
    convs, hidden = [], []
    if arch.startswith("mlp:"):
        hidden = [int(h) for h in arch[4:].split(",")]
    elif arch.startswith("cnn:"):
        conv_part, _, hidden_part = arch[4:].partition("/")
        convs = [int(c) for c in conv_part.split(",")]
        hidden = [int(h) for h in hidden_part.split(",")] if hidden_part else []
    elif arch != "softmax":
        raise AssertionError(f"unknown arch {arch}")
    layers, size = [], n_inputs
    if convs:
        c, h, w = shape
        for oc in convs:
            layers += [nn.Conv2d(c, oc, 3, padding=1), activation(meta), nn.MaxPool2d(2)]
            c, h, w = oc, h // 2, w // 2
        layers.append(nn.Flatten())
        size = c * h * w
    for width in hidden:
        layers += [nn.Linear(size, width), activation(meta)]
        if p > 0:
            layers.append(nn.Dropout(p))
        size = width
    layers.append(nn.Linear(size, n_classes))
    return nn.Sequential(*layers), shape


def check_described(twin, meta):
    """The metadata's torch_sequential, evaluated, is the same stack of modules."""
    described = eval("Sequential(" + meta["torch_sequential"] + ")", dict(vars(nn)))
    if repr(described) != repr(twin):
        raise AssertionError(f"torch_sequential describes\n{described}\nbut arch gives\n{twin}")


def check_model(directory, name, rows):
    tensors, meta = read_safetensors(f"{directory}/{name}.safetensors")
    twin, shape = build_twin(meta)
    check_described(twin, meta)
    mean, std = tensors.pop("standardizer.mean", None), tensors.pop("standardizer.std", None)
    twin.load_state_dict(tensors, strict=True)
    twin.eval()
    n_inputs, n_classes = int(meta["n_inputs"]), int(meta["n_classes"])
    with open(f"{directory}/{name}.inputs.f32", "rb") as f:
        x = torch.frombuffer(bytearray(f.read()), dtype=torch.float32).reshape(rows, n_inputs)
    with open(f"{directory}/{name}.logits.f32", "rb") as f:
        want = torch.frombuffer(bytearray(f.read()), dtype=torch.float32)
    want = want.reshape(rows, n_classes)
    if mean is not None:
        x = (x - mean) / std
    with torch.no_grad():
        got = twin(x.reshape(rows, *shape))
    diff = (got - want).abs().max().item()
    status = "ok" if diff <= TOL else "FAIL"
    print(f"{name}: {meta['arch']} {meta['activation']} "
          f"standardizer={'yes' if mean is not None else 'no'}: "
          f"largest logit difference {diff:.3g} (tolerance {TOL:g}) {status}")
    return diff <= TOL


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    directory = sys.argv[1]
    ok, count = True, 0
    with open(f"{directory}/manifest.txt") as f:
        for line in f:
            name, rows = line.split()
            ok &= check_model(directory, name, int(rows))
            count += 1
    if count == 0:
        print("no models in the manifest", file=sys.stderr)
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
