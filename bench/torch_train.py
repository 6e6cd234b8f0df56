#!/usr/bin/python3
"""PyTorch twin of `concord-train` for bench/train_bench.sh.

Trains an nn.Sequential MLP (Linear/ReLU..., torch's default init) with SGD + momentum and
mean softmax cross-entropy on the same data, batch size, learning rate, momentum and
epochs as concord-train, and prints one JSON line (the last stdout line) with the training
throughput and the test metrics.

The loop is the fastest honest eager PyTorch loop we know: the data are pre-loaded as
contiguous float32 tensors (thyroid standardised with the training mean/std, Fashion-MNIST
pixels / 255); each epoch draws a seeded permutation, gathers the shuffled copy once and
then slices views per batch; optimizer.zero_grad(set_to_none=True); no DataLoader and no
per-sample Python work. Only the training steps are timed (shuffling and gathering
included, evaluation excluded), as concord-train does.

Run it with Debian's interpreter (/usr/bin/python3: torch 1.13 + numpy).

    /usr/bin/python3 bench/torch_train.py --dataset thyroid --hidden 64,32 --epochs 30 \
        --batch 32 --lr 0.05 --threads 1
"""
import argparse
import gzip
import json
import os
import resource
import struct
import sys
import time

import numpy as np
import torch
from torch import nn

FMNIST_DIR = "/usr/share/datasets/fashion-mnist"
FANN_DIR = "/usr/share/doc/libfann-dev/examples/datasets"


def load_fann(path):
    """FANN text: 'n n_in n_out', then per sample one line of inputs, one of outputs
    (one-hot for classification). Returns x (n, n_in) float32, y (n,) int64."""
    with open(path) as f:
        tokens = f.read().split()
    n, n_in, n_out = int(tokens[0]), int(tokens[1]), int(tokens[2])
    vals = np.asarray(tokens[3:3 + n * (n_in + n_out)], dtype=np.float64)
    if vals.size != n * (n_in + n_out):
        raise SystemExit(f"{path}: expected {n} samples of {n_in}+{n_out} values")
    vals = vals.reshape(n, n_in + n_out)
    x = vals[:, :n_in].astype(np.float32)
    outs = vals[:, n_in:]
    y = outs.argmax(axis=1).astype(np.int64) if n_out > 1 else (outs[:, 0] > 0.5).astype(np.int64)
    return x, y


def load_idx(path):
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise SystemExit(f"{path}: not an unsigned-byte IDX file")
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_dataset(name, data_dir):
    """Returns (x_train, y_train, x_test, y_test) as numpy float32 / int64."""
    if name == "thyroid":
        d = data_dir or FANN_DIR
        xtr, ytr = load_fann(os.path.join(d, "thyroid.train"))
        xte, yte = load_fann(os.path.join(d, "thyroid.test"))
        # Standardise with the training statistics (population std, floor 1e-6), as
        # concord-train's standardizer does.
        mean = xtr.astype(np.float64).mean(axis=0)
        std = np.sqrt(np.maximum(xtr.astype(np.float64).var(axis=0), 0.0))
        std = np.where(std > 1e-6, std, 1e-6)
        xtr = ((xtr - mean) / std).astype(np.float32)
        xte = ((xte - mean) / std).astype(np.float32)
        return xtr, ytr, xte, yte
    if name == "fashion-mnist":
        d = data_dir or FMNIST_DIR
        def images(stem):
            a = load_idx(os.path.join(d, stem + "-images-idx3-ubyte.gz"))
            return (a.reshape(a.shape[0], -1).astype(np.float32) / np.float32(255.0))
        def labels(stem):
            return load_idx(os.path.join(d, stem + "-labels-idx1-ubyte.gz")).astype(np.int64)
        return images("train"), labels("train"), images("t10k"), labels("t10k")
    raise SystemExit(f"unknown dataset {name!r}")


def build_model(n_in, hidden, n_out):
    layers, prev = [], n_in
    for h in hidden:
        layers += [nn.Linear(prev, h), nn.ReLU()]
        prev = h
    layers.append(nn.Linear(prev, n_out))
    return nn.Sequential(*layers)


def metrics(pred, y, n_classes):
    """accuracy, balanced accuracy (mean recall over present classes), macro-F1."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (y, pred), 1)
    tp = np.diag(cm).astype(np.float64)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    present = support > 0
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return (float(tp.sum() / cm.sum()), float(recall[present].mean()), float(f1[present].mean()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", required=True, choices=["thyroid", "fashion-mnist"])
    ap.add_argument("--data-dir", help="directory of the data files (default: the Debian path)")
    ap.add_argument("--hidden", default="64,32", help="hidden widths, e.g. 256,128")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--foreach", choices=["auto", "on", "off"], default="auto",
                    help="SGD multi-tensor update (auto: on; it is the faster one here)")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)

    xtr, ytr, xte, yte = load_dataset(a.dataset, a.data_dir)
    n_classes = int(max(ytr.max(), yte.max())) + 1
    hidden = [int(h) for h in a.hidden.split(",") if h]
    Xtr, Ytr = torch.from_numpy(np.ascontiguousarray(xtr)), torch.from_numpy(ytr)
    Xte = torch.from_numpy(np.ascontiguousarray(xte))
    n, d = Xtr.shape
    data_bytes = (xtr.shape[0] + xte.shape[0]) * (d * 4 + 4)

    model = build_model(d, hidden, n_classes)
    n_params = sum(p.numel() for p in model.parameters())
    foreach = a.foreach != "off"
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum, foreach=foreach)
    loss_fn = nn.CrossEntropyLoss()
    model.train()

    B, train_seconds, samples, last_loss = a.batch, 0.0, 0, float("nan")
    for epoch in range(1, a.epochs + 1):
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=gen)
        Xs, Ys = Xtr.index_select(0, perm), Ytr.index_select(0, perm)
        for r in range(0, n, B):
            xb, yb = Xs[r:r + B], Ys[r:r + B]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
        dt = time.perf_counter() - t0
        train_seconds += dt
        samples += n
        last_loss = float(loss)  # last batch only: a running sum would add work to every step
        if not a.quiet:
            print(f"epoch {epoch:3d}/{a.epochs}  last_batch_loss {last_loss:.4f}  {dt:.2f}s",
                  file=sys.stderr)

    model.eval()
    with torch.inference_mode():
        pred = torch.cat([model(Xte[r:r + 1024]).argmax(dim=1) for r in range(0, Xte.shape[0], 1024)])
    acc, bacc, f1 = metrics(pred.numpy(), yte, n_classes)
    sps = samples / train_seconds if train_seconds > 0 else 0.0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"trained {a.epochs} epochs in {train_seconds:.2f}s: {sps:.0f} samples/s; "
          f"test accuracy {acc:.4f}")
    print(json.dumps({
        "impl": "pytorch", "torch_version": torch.__version__, "dataset": a.dataset,
        "model": "mlp:" + ",".join(map(str, hidden)), "n_params": n_params,
        "epochs_run": a.epochs, "batch": B, "lr": a.lr, "momentum": a.momentum,
        "threads": torch.get_num_threads(),
        "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "train_samples": n, "train_seconds": train_seconds, "samples_per_sec": sps,
        "final_batch_loss": last_loss, "test_accuracy": acc, "test_balanced_accuracy": bacc,
        "test_macro_f1": f1, "peak_rss_bytes": rss, "data_bytes": data_bytes,
    }))


if __name__ == "__main__":
    main()
