#!/usr/bin/python3
"""pcn_probe.py — why per-class normalisation of a whole local update (DESIGN §6.3 "server"
mode) can hurt: a numpy probe of the mechanism, independent of Concord's code.

One hospital trains the MLP 784-128-10 of bench/methods (ReLU, SGD lr 0.05, momentum 0.9,
batch 32, mean loss) on its Fashion-MNIST shard, keeping the update split per class exactly
as the Concord client does in server mode: m_c <- mu*m_c + g_c, Delta_c <- Delta_c - lr*m_c,
where g_c is the part of the minibatch gradient that comes from the rows of class c (so
Delta = sum_c Delta_c is the ordinary SGD update). After T local steps it measures

  rho     = ||sum_c Delta_c|| / sum_c ||Delta_c||   (1: classes pull the same way; ~0: they cancel)
  cos     = cos(sum_c Delta_c/||Delta_c||, Delta)   direction of the normalised update vs the real one
  norms   = max_c ||Delta_c|| / min_c ||Delta_c||
  acc_raw = test accuracy of theta0 + Delta
  acc_pcn = test accuracy of theta0 + s * sum_c Delta_c/||Delta_c||  (s keeps ||Delta||: what server mode sends)

for T = 1 (one step: exactly PCNGD) up to a full local epoch, for an IID shard and a skewed
one, from a fresh model and from a model already trained for a few epochs.

  /usr/bin/python3 bench/methods/pcn_probe.py [--out FILE.json] [--seed 1]
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_shards  # noqa: E402  (IDX readers)

FM = os.environ.get("FMNIST_DIR", "/usr/share/datasets/fashion-mnist")
C, H, D = 10, 128, 784


def init(rng):
    lim1, lim2 = np.sqrt(6.0 / (D + H)), np.sqrt(6.0 / (H + C))
    return [rng.uniform(-lim1, lim1, (D, H)).astype(np.float32), np.zeros(H, np.float32),
            rng.uniform(-lim2, lim2, (H, C)).astype(np.float32), np.zeros(C, np.float32)]


def flat(ps):
    return np.concatenate([p.ravel() for p in ps])


def unflat(v):
    out, o = [], 0
    for shape in ((D, H), (H,), (H, C), (C,)):
        n = int(np.prod(shape))
        out.append(v[o:o + n].reshape(shape))
        o += n
    return out


def forward(v, x):
    w1, b1, w2, b2 = unflat(v)
    h = np.maximum(x @ w1 + b1, 0.0)
    z = h @ w2 + b2
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    return h, p


def accuracy(v, x, y):
    return float((forward(v, x)[1].argmax(axis=1) == y).mean())


def class_grads(v, x, y, B):
    """Per-class parts of the gradient of the batch's mean loss: (C, P)."""
    w1, b1, w2, b2 = unflat(v)
    h, p = forward(v, x)
    dl = p.copy()
    dl[np.arange(len(y)), y] -= 1.0
    dl /= B
    g = np.zeros((C, v.size), np.float32)
    for c in np.unique(y):
        r = y == c
        dh = (dl[r] @ w2.T) * (h[r] > 0)
        g[c] = np.concatenate([(x[r].T @ dh).ravel(), dh.sum(0), (h[r].T @ dl[r]).ravel(), dl[r].sum(0)])
    return g


def local_run(v0, x, y, steps_to_report, rng, lr=0.05, mu=0.9, B=32):
    """Decomposed momentum SGD from v0; yields (T, Delta_c) at the requested step counts."""
    v = v0.copy()
    m = np.zeros((C, v.size), np.float32)
    delta = np.zeros((C, v.size), np.float32)
    order = rng.permutation(len(y))
    t = 0
    for s in range(0, len(y), B):
        rows = order[s:s + B]
        g = class_grads(v, x[rows], y[rows], len(rows))
        m = mu * m + g
        delta -= lr * m
        v -= lr * m.sum(axis=0)
        t += 1
        if t in steps_to_report:
            yield t, delta.copy()


def measure(v0, delta, present, xt, yt):
    raw = delta.sum(axis=0)
    norms = np.linalg.norm(delta, axis=1)
    keep = present & (norms > 0)
    unit = (delta[keep] / norms[keep, None]).sum(axis=0)
    s = np.linalg.norm(raw) / max(np.linalg.norm(unit), 1e-30)
    pcn = s * unit
    cosv = float(raw @ unit / (np.linalg.norm(raw) * np.linalg.norm(unit) + 1e-30))
    return {"rho": float(np.linalg.norm(raw) / norms[keep].sum()), "cos": cosv,
            "norm_ratio": float(norms[keep].max() / norms[keep].min()),
            "acc_start": accuracy(v0, xt, yt), "acc_raw": accuracy(v0 + raw, xt, yt),
            "acc_pcn": accuracy(v0 + pcn, xt, yt)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    X = make_shards.read_idx_images(f"{FM}/train-images-idx3-ubyte.gz").astype(np.float32) / 255.0
    Y = make_shards.read_idx_labels(f"{FM}/train-labels-idx1-ubyte.gz")
    xt = make_shards.read_idx_images(f"{FM}/t10k-images-idx3-ubyte.gz").astype(np.float32) / 255.0
    yt = make_shards.read_idx_labels(f"{FM}/t10k-labels-idx1-ubyte.gz")
    by_class = [rng.permutation(np.flatnonzero(Y == c)) for c in range(C)]
    shards = {
        "iid": [600] * C,
        "skewed": [1500, 1500, 1200, 800, 400, 200, 100, 50, 20, 5],   # a Dirichlet(0.3)-like mix
    }
    v_fresh = flat(init(rng))
    # a "later round" start: the fresh model after 3 epochs of ordinary SGD on 6000 IID images
    warm_idx = np.concatenate([by_class[c][-600:] for c in range(C)])
    v_warm = v_fresh.copy()
    for _ in range(3):
        for _, d in local_run(v_warm, X[warm_idx], Y[warm_idx], {len(warm_idx) // 32}, rng):
            v_warm = v_warm + d.sum(axis=0)
    results = []
    for shard, counts in shards.items():
        idx = np.concatenate([by_class[c][:n] for c, n in enumerate(counts)])
        x, y = X[idx], Y[idx]
        present = np.array(counts) > 0
        steps = int(np.ceil(len(y) / 32))
        report = sorted({1, 5, 20, 60, steps})
        for start, v0 in (("fresh", v_fresh), ("warm", v_warm)):
            for t, delta in local_run(v0, x, y, set(report), np.random.default_rng(a.seed + 7)):
                r = {"shard": shard, "start": start, "steps": t, "epoch_steps": steps}
                r.update(measure(v0, delta, present, xt, yt))
                results.append(r)
                print(json.dumps(r), flush=True)
    if a.out:
        with open(a.out + ".tmp", "w") as f:
            json.dump(results, f, indent=1)
        os.replace(a.out + ".tmp", a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
