#!/usr/bin/python3
"""make_shards.py — the "one bad hospital" variants of bench/methods/run.sh.

  make_shards.py flip  SPLIT_DIR OUT_DIR --frac 0.3 --seed S [--rank 2]
      SPLIT_DIR holds FANN shards (concord-data split). Copies them to OUT_DIR/train/, and in
      the copy of the hospital ranked RANK by size (1 = largest; default the second-largest,
      so it matters under FedAvg without holding most of the data) flips FRAC of the training labels, each to one of
      the other classes chosen uniformly. The clean original of that hospital goes to
      OUT_DIR/clean/. OUT_DIR/noisy.json names the hospital and the flipped rows.

  make_shards.py shift SPLIT_DIR OUT_DIR --sites 2 --seed S [--rank 2] [--contrast 0.5 --offset 0.25 --noise 0.1]
      SPLIT_DIR holds IDX shards (siteK-images-idx3-ubyte + siteK-labels-idx1-ubyte). Writes
      every shard as CSV (f0..f783,label) to OUT_DIR/train/ (concord-sim --shards reads CSV, not
      IDX); the images of the SITES hospitals ranked RANK.. by size get a "different scanner":
      x' = clip(contrast*x + offset + N(0, noise^2), 0, 1), rounded to k/255 like an 8-bit
      image. OUT_DIR/noisy.json names them.

  make_shards.py shift-test IMAGES LABELS OUT.csv --seed S [same transform options]
      The same scanner transform applied to a whole IDX set (e.g. t10k), written as CSV.

Deterministic: the same seed gives the same files. Needs numpy.
"""
import argparse
import gzip
import json
import os
import shutil
import sys

import numpy as np


# ---- FANN ------------------------------------------------------------------------------------

def read_fann(path):
    with open(path) as f:
        head = f.readline().split()
        n, d, c = int(head[0]), int(head[1]), int(head[2])
        xs, ys = [], []
        for _ in range(n):
            xs.append(f.readline().rstrip("\n"))
            ys.append([float(v) for v in f.readline().split()])
    y = np.array(ys)
    return d, c, xs, (y.argmax(axis=1) if c > 1 else (y[:, 0] > 0.5).astype(int))


def write_fann(path, d, c, xs, labels):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{len(xs)} {d} {c}\n")
        for x, lab in zip(xs, labels):
            f.write(x + "\n")
            f.write(" ".join("1" if k == lab else "0" for k in range(c)) + "\n")
    os.replace(tmp, path)


def shard_names(split_dir):
    with open(os.path.join(split_dir, "summary.json")) as f:
        summary = json.load(f)
    return summary["shards"]


def by_rank(shards, rank=2, count=1):
    """The hospitals ranked rank..rank+count-1 by rows (1 = largest; ties: by name)."""
    order = sorted(shards, key=lambda s: (-s["rows"], s["name"]))
    return [s["name"] for s in order[rank - 1:rank - 1 + count]]


def cmd_flip(a):
    shards = shard_names(a.split_dir)
    noisy = by_rank(shards, a.rank)[0]
    rng = np.random.default_rng(1000 + a.seed)
    train, clean = os.path.join(a.out_dir, "train"), os.path.join(a.out_dir, "clean")
    os.makedirs(train, exist_ok=True)
    os.makedirs(clean, exist_ok=True)
    info = {"kind": "label_flip", "frac": a.frac, "seed": a.seed, "noisy": [noisy]}
    for s in shards:
        src = os.path.join(a.split_dir, s["file"])
        dst = os.path.join(train, s["file"])
        if s["name"] != noisy:
            shutil.copyfile(src, dst)
            continue
        shutil.copyfile(src, os.path.join(clean, s["file"]))
        d, c, xs, y = read_fann(src)
        n_flip = int(round(a.frac * len(y)))
        rows = np.sort(rng.choice(len(y), size=n_flip, replace=False))
        y2 = y.copy()
        for r in rows:
            y2[r] = (y[r] + rng.integers(1, c)) % c      # uniformly one of the other classes
        write_fann(dst, d, c, xs, y2)
        info.update(file=s["file"], rows=len(y), flipped=int(n_flip),
                    class_counts_clean=np.bincount(y, minlength=c).tolist(),
                    class_counts_noisy=np.bincount(y2, minlength=c).tolist())
    write_json(os.path.join(a.out_dir, "noisy.json"), info)


# ---- IDX -> CSV with a scanner shift ----------------------------------------------------------

def _open(path):
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def read_idx_images(path):
    with _open(path) as f:
        raw = f.read()
    n, h, w = (int.from_bytes(raw[i:i + 4], "big") for i in (4, 8, 12))
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, h * w)


def read_idx_labels(path):
    with _open(path) as f:
        raw = f.read()
    return np.frombuffer(raw, dtype=np.uint8, offset=8).astype(int)


def scanner(img_u8, rng, a):
    x = img_u8.astype(np.float64) / 255.0
    x = a.contrast * x + a.offset + rng.normal(0.0, a.noise, size=x.shape)
    return np.clip(np.rint(np.clip(x, 0.0, 1.0) * 255.0), 0, 255).astype(np.uint8)


_TABLE = ["0"] + [str(np.float32(k / 255.0)) for k in range(1, 255)] + ["1"]   # shortest float32 text, as concord-data writes


def write_csv(path, img_u8, labels):
    tmp = path + ".tmp"
    d = img_u8.shape[1]
    with open(tmp, "w") as f:
        f.write(",".join(f"f{j}" for j in range(d)) + ",label\n")
        for row, lab in zip(img_u8, labels):
            f.write(",".join(_TABLE[v] for v in row.tolist()) + f",{lab}\n")
    os.replace(tmp, path)


def cmd_shift(a):
    shards = shard_names(a.split_dir)
    noisy = by_rank(shards, a.rank, a.sites)
    rng = np.random.default_rng(2000 + a.seed)
    train = os.path.join(a.out_dir, "train")
    os.makedirs(train, exist_ok=True)
    for s in shards:
        img = read_idx_images(os.path.join(a.split_dir, s["file"]))
        lab = read_idx_labels(os.path.join(a.split_dir, s["labels_file"]))
        if s["name"] in noisy:
            img = scanner(img, rng, a)
        write_csv(os.path.join(train, s["name"] + ".csv"), img, lab)
    write_json(os.path.join(a.out_dir, "noisy.json"),
               {"kind": "scanner_shift", "contrast": a.contrast, "offset": a.offset, "noise": a.noise,
                "seed": a.seed, "noisy": noisy})


def cmd_shift_test(a):
    rng = np.random.default_rng(3000 + a.seed)
    img = scanner(read_idx_images(a.images), rng, a)
    write_csv(a.out, img, read_idx_labels(a.labels))


def write_json(path, obj):
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(path + ".tmp", path)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("flip")
    f.add_argument("split_dir"), f.add_argument("out_dir")
    f.add_argument("--frac", type=float, default=0.3), f.add_argument("--seed", type=int, default=1)
    f.add_argument("--rank", type=int, default=2)
    for name in ("shift", "shift-test"):
        s = sub.add_parser(name)
        if name == "shift":
            s.add_argument("split_dir"), s.add_argument("out_dir")
            s.add_argument("--sites", type=int, default=2)
            s.add_argument("--rank", type=int, default=2)
        else:
            s.add_argument("images"), s.add_argument("labels"), s.add_argument("out")
        s.add_argument("--seed", type=int, default=1)
        s.add_argument("--contrast", type=float, default=0.5)
        s.add_argument("--offset", type=float, default=0.25)
        s.add_argument("--noise", type=float, default=0.1)
    a = p.parse_args()
    {"flip": cmd_flip, "shift": cmd_shift, "shift-test": cmd_shift_test}[a.cmd](a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
