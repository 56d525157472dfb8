"""Engine memory and time of a GMM trained from files kept in memory vs streamed.

    .venv/bin/python benchmarks/stream_memory.py [--frames 1500000] [--budget 64M]
        [--engines 2] [--components 64] [--iter 4]

Writes ``--frames`` x 60 float32 frames as HTK files of 1,000 to 5,000 frames
to a temporary directory, then, on a fresh MPICluster each time (blocks of
4096 frames on both runs):

* ``in memory``: ``distribute_files`` without a budget;
* ``streamed``: ``distribute_files(engine_memory=--budget)``;

and fits a diagonal GMM (``--components``, ``--iter`` iterations, ``tol=0``).
Reported per run: the frames' bytes per engine, each engine's resident memory
after start-up and its peak (``ru_maxrss``) at the end, seconds per iteration,
and whether the two models have the same bits.  The budget bounds the frames
an engine holds; Python, NumPy, ipyparallel and the kernels' working memory
come on top (the start-up figure and the difference).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

import numpy as np

import ipem
from ipem.io import distribute_files, list_features

D = 60


def engine_rss():
    """(current RSS, peak RSS) of this engine in MiB."""
    import resource
    import psutil
    return (psutil.Process().memory_info().rss / 2**20,
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def write_corpus(directory, n, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, size=(64, D)).astype(np.float32)
    paths, done = [], 0
    while done < n:
        m = min(int(rng.integers(1000, 5000)), n - done)
        X = centers[rng.integers(0, 64, size=m)] + rng.normal(size=(m, D)).astype(np.float32)
        paths.append(os.path.join(directory, f"u{len(paths):05d}.htk"))
        ipem.io.write(paths[-1], X, "htk")
        done += m
    return paths


def run(paths, engines, budget, k, n_iter):
    with ipem.parallel.MPICluster(n=engines, blas_threads=1,
                                  controller_kwargs=dict(block_size=4096)) as ctrl:
        view = ctrl.client[ctrl.engine_ids]
        start = [r[0] for r in view.apply_sync(engine_rss)]
        data = distribute_files(ctrl, list_features(paths), engine_memory=budget)
        gmm = ipem.GaussianMixture(k, covariance_type="diag", max_iter=n_iter, tol=0,
                                   random_state=0, controller=ctrl).fit(data)
        peak = [r[1] for r in view.apply_sync(engine_rss)]
    per_iter = statistics.median(r.time for r in gmm.history_[1:])
    return gmm, start, peak, per_iter, data.place_sizes


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=1_500_000)
    ap.add_argument("--budget", default="64M")
    ap.add_argument("--engines", type=int, default=2)
    ap.add_argument("--components", type=int, default=64)
    ap.add_argument("--iter", type=int, default=4)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_corpus(tmp, args.frames)
        results = {name: run(paths, args.engines, budget, args.components, args.iter)
                   for name, budget in [("in memory", None), ("streamed", args.budget)]}
    print(f"{args.frames} frames x {D} float32 in {len(paths)} HTK files, "
          f"{args.engines} engines, diag GMM K={args.components}, budget {args.budget}\n")
    print("| run | frames per engine (MiB) | engine RSS at start (MiB) | engine peak RSS (MiB) "
          "| s / iteration |")
    print("|---|---|---|---|---|")
    for name, (_, start, peak, per_iter, sizes) in results.items():
        mib = [f"{s * D * 4 / 2**20:.0f}" for s in sizes]
        print(f"| {name} | {'/'.join(mib)} | {'/'.join(f'{v:.0f}' for v in start)} "
              f"| {'/'.join(f'{v:.0f}' for v in peak)} | {per_iter:.3f} |")
    a, b = results["in memory"][0], results["streamed"][0]
    same = all(np.array_equal(getattr(a, n), getattr(b, n))
               for n in ("means_", "covariances_", "weights_"))
    print(f"\nsame model bits: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
