#!/usr/bin/python3
"""fedce_reference.py — an independent implementation of DESIGN §6.1 (FedCE) for one fixed
scenario, printing the expected coefficients, cosines, a, b and weights as JSON.

tests/test_fedce.c (Test(fedce, reference_scenario_*)) embeds these numbers; regenerate
them with

    /usr/bin/python3 tests/fedce_reference.py        # JSON
    /usr/bin/python3 tests/fedce_reference.py --c    # the C tables pasted into the test

(numpy needed: the first python3 on PATH may lack it). Written from the formulas, not from
common/fedce.c: S − c_k Δ_k is formed explicitly, the running means are lists, the priors
are recomputed from the whole history.

Scenario: four clients, P = 6, three rounds.
  round 0: clients 0 1 2      (all new: prior 1/3)
  round 1: clients 0 2        (client 1 absent: keeps its coefficient, left out)
  round 2: clients 0 1 2 3    (client 3 joins: prior 1/4; client 1 back)
The updates are multiples of 1/16 (exact in float32); the minus-model scores of the
clients that can compute one are fixed numbers below.
"""
import json
import sys

import numpy as np

EPS = 1e-6

ROUNDS = [
    {  # round 0
        0: [0.5, -0.25, 1.0, 0.125, -0.75, 0.375],
        1: [0.25, 0.5, -0.125, 0.625, 0.0, -0.5],
        2: [-0.375, 0.25, 0.75, -0.5, 0.875, 0.125],
    },
    {  # round 1
        0: [0.1875, -0.5, 0.25, 0.75, -0.25, 0.0625],
        2: [0.625, 0.125, -0.375, 0.25, 0.5, -0.875],
    },
    {  # round 2
        0: [-0.25, 0.375, 0.5, -0.125, 0.25, 0.75],
        1: [0.875, -0.625, 0.125, 0.375, -0.5, 0.25],
        2: [0.3125, 0.4375, -0.5625, 0.0, 0.6875, -0.1875],
        3: [-0.5, -0.25, 0.125, 0.625, 0.375, -0.75],
    },
]

# Validation score of the minus model, (round, client) -> score, for the clients whose
# update was aggregated last round with a weight < 1.
SCORES = {(1, 0): 0.62, (1, 2): 0.71, (2, 0): 0.58, (2, 2): 0.77}


def priors(participants, last_weight):
    """New participants get 1/K; the known ones share 1 - N/K in proportion to the weight
    of their last aggregated round."""
    K = len(participants)
    new = [k for k in participants if k not in last_weight]
    known = [k for k in participants if k in last_weight]
    mass = 1.0 - len(new) / K
    total = sum(last_weight[k] for k in known)
    return np.array([1.0 / K if k not in last_weight else mass * last_weight[k] / total
                     for k in participants])


def cosine(u, v):
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    if nu == 0.0 or nv == 0.0:
        return 0.0
    return float(np.clip(np.dot(u, v) / (nu * nv), -1.0, 1.0))


def clip_normalise(x):
    x = np.maximum(np.asarray(x, dtype=np.float64), EPS)
    return x / x.sum()


def run(mode):
    last_weight = {}     # client -> weight in its last aggregated round (K >= 2)
    cos_hist = {}        # client -> list of cosines
    score_hist = {}      # client -> list of scores (client side)
    prev_round = {}      # client -> (round, weight) of its last aggregated update
    out = []
    for t, updates in enumerate(ROUNDS):
        part = sorted(updates)
        K = len(part)
        # Client side, before training: the score history and b_k.
        b = []
        for k in part:
            hist = score_hist.setdefault(k, [])
            was = prev_round.get(k)
            if was is not None and was[0] == t - 1 and was[1] < 1.0:
                hist.append(SCORES[(t, k)])
            elif not hist:
                hist.append(0.0)
            b.append(1.0 - float(np.mean(hist)))
        # Coordinator.
        c = priors(part, last_weight)
        D = {k: np.asarray(updates[k], dtype=np.float32).astype(np.float64) for k in part}
        S = sum(c[i] * D[k] for i, k in enumerate(part))
        cos = [cosine(D[k], S - c[i] * D[k]) for i, k in enumerate(part)]
        for i, k in enumerate(part):
            cos_hist.setdefault(k, []).append(cos[i])
        a = [max(0.0, 1.0 - float(np.mean(cos_hist[k]))) for k in part]
        ah, bh = clip_normalise(a), clip_normalise(b)
        v = (ah + bh) / 2.0 if mode == "plus" else ah * bh
        w = clip_normalise(v)
        for i, k in enumerate(part):
            last_weight[k] = float(w[i])
            prev_round[k] = (t, float(w[i]))
        out.append({"round": t, "participants": part, "c": [float(x) for x in c],
                    "cos": cos, "a": a, "b": b, "w": [float(x) for x in w]})
    return out


def c_table(mode, rounds):
    """The same numbers as a C initialiser of s_ref_round_t (tests/test_fedce.c)."""
    def arr(xs):
        return "{" + ", ".join(repr(float(x)) for x in xs) + "}"
    lines = [f"static const s_ref_round_t s_ref_{mode}[{len(rounds)}] = {{"]
    for r in rounds:
        lines.append(f"    {{{len(r['participants'])}, {{{', '.join(map(str, r['participants']))}}},")
        for key in ("c", "cos", "a", "b", "w"):
            lines.append(f"     {arr(r[key])},")
        lines[-1] = lines[-1][:-1] + "},"
    lines.append("};")
    return "\n".join(lines)


def main():
    result = {mode: run(mode) for mode in ("plus", "times")}
    if "--c" in sys.argv[1:]:
        print("\n".join(c_table(mode, rounds) for mode, rounds in result.items()))
    else:
        print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
