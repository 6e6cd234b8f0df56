#!/usr/bin/python3
"""numpy baseline of `concord-bench aggregate` (docs/benchmarks.md, "Aggregation").

Loads the K x P float32 updates and the K weights that concord-bench wrote (.npy), and
times, after one warm-up, the median of --repeat runs of:
  average            np.average(U, axis=0, weights=w)   -- numpy's weighted average
  matvec             w @ U                               -- the fastest numpy form (BLAS sgemv)
  fedce_equivalent   G = U @ U.T (BLAS syrk) then w @ U  -- what FedCE's close computes
The weights are given as float32, so no K x P float64 temporary is made (float64 weights
would make np.average several times slower). Prints one JSON line last.

concord-bench runs it with /usr/bin/python3 and OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset
(they slow a current numpy down), OPENBLAS_NUM_THREADS = the bench's --threads.
"""
import argparse
import json
import statistics
import time

import numpy as np


def timed(fn, repeat):
    fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def blas_info():
    try:
        import threadpoolctl
        for p in threadpoolctl.threadpool_info():
            if p.get("user_api") == "blas":
                return "%s %s %s, %d thread(s)" % (p.get("internal_api"), p.get("version"),
                                                   p.get("architecture"), p.get("num_threads"))
    except ImportError:
        pass
    return "unknown (threadpoolctl not installed)"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--u", required=True)
    ap.add_argument("--w", required=True)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    U = np.load(a.u)
    w = np.load(a.w).astype(np.float32)
    out = {"numpy": np.__version__, "blas": blas_info(), "shape": list(U.shape)}
    out["average_s"] = timed(lambda: np.average(U, axis=0, weights=w), a.repeat)
    out["matvec_s"] = timed(lambda: w @ U, a.repeat)

    def fedce():
        G = U @ U.T
        return G, w @ U

    out["fedce_equivalent_s"] = timed(fedce, a.repeat)
    s = w @ U
    out["weighted_sum_total"] = float(np.sum(s, dtype=np.float64))
    avg = np.average(U, axis=0, weights=w)
    out["average_max_abs_diff"] = float(np.max(np.abs(avg - s)))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
