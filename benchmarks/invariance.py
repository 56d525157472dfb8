"""What engine-count invariance (``block_size``) costs per EM iteration.

    .venv/bin/python benchmarks/invariance.py [--frames 400000] [--blocks 4096,16384]
        [--engines 0] [--repeat 3]

``--blocks`` takes row counts and ``auto`` (the controllers' default,
``ipem.parallel.auto_block_size`` of the rows).  ``--tv`` times total variability
with blocks of utterances instead (not blocked by default).

One dataset (``--frames`` x 60 float32, a mixture of blobs) is fitted by
KMeans (K=256), a diagonal GMM (K=256) and a full-covariance GMM (K=32), each
for a fixed number of iterations (``tol=0``), on a LocalController with one
shard and one BLAS thread -- and, with ``--engines N``, on an MPICluster of N
engines -- without blocks and with every ``--blocks`` size, all in the same
run and interleaved ``--repeat`` times.  Reported: the median seconds per
iteration (``history_[i].time``, first iteration excluded) and the ratio
blocks / no blocks.  The brief's threshold for turning blocks on by default
is a ratio of at most 1.05.
"""
from __future__ import annotations

import argparse
import statistics
import sys

import numpy as np
from threadpoolctl import threadpool_limits

import ipem

D = 60


def data(n, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 4, size=(300, D))
    lab = rng.integers(0, len(centers), size=n)
    return (centers[lab] + rng.normal(size=(n, D))).astype(np.float32)


MODELS = {
    "kmeans K=256": lambda c: ipem.KMeans(256, n_init=1, max_iter=8, tol=0, random_state=0,
                                          controller=c),
    "gmm diag K=256": lambda c: ipem.GaussianMixture(256, covariance_type="diag", max_iter=6,
                                                     tol=0, random_state=0, controller=c),
    "gmm full K=32": lambda c: ipem.GaussianMixture(32, covariance_type="full", max_iter=6,
                                                    tol=0, random_state=0, controller=c),
}


def tv_blocks(blocks=(16, 64, 256), repeat=2, k=256, d=60, rank=200, n_utts=1000):
    """Seconds per total-variability iteration with blocks of utterances (LocalController(1),
    one BLAS thread): the synthetic rows of ``benchmarks/ivector.py --synthetic``."""
    rng = np.random.default_rng(0)
    ubm = (np.full(k, 1.0 / k), rng.normal(size=(k, d)), np.ones((k, d)))
    n = rng.gamma(0.5, 8.0, size=(n_utts, k))
    f = rng.normal(size=(n_utts, k, d)) * np.sqrt(n)[:, :, None]
    rows = ipem.ivector.stats_rows(n, f)
    times = {}
    with threadpool_limits(1):
        for _ in range(repeat):
            for b in (None, *blocks):
                ctrl = ipem.LocalController(1, blas_threads=1, block_size=b)
                tv = ipem.TotalVariability(rank, controller=ctrl, ubm=ubm, max_iter=3,
                                           random_state=0).fit(rows)
                times.setdefault(b, []).extend(r.time for r in tv.history_[1:])
    base = statistics.median(times[None])
    print(f"total variability K={k} D={d} R={rank}, {n_utts} utterances: seconds per "
          "iteration (ratio to no blocks)\n")
    print("| utterances per block | s / iteration | ratio |\n|---|---|---|")
    for b, t in times.items():
        print(f"| {b or 'no blocks'} | {statistics.median(t):.3f} | "
              f"{statistics.median(t) / base:.3f}x |")


def per_iteration(model):
    """Median seconds of an iteration, the first (start-up) excluded."""
    times = [r.time for r in model.history_[1:]] or [r.time for r in model.history_]
    return statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=400_000)
    ap.add_argument("--blocks", default="auto,4096,16384")
    ap.add_argument("--engines", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tv", action="store_true",
                    help="only total variability with blocks of 16, 64, 256 utterances")
    ap.add_argument("--models", default=",".join(MODELS),
                    help="comma-separated names among: " + ", ".join(MODELS))
    args = ap.parse_args(argv)
    if args.tv:
        tv_blocks(repeat=args.repeat)
        return 0
    models = {m: MODELS[m] for m in args.models.split(",")}
    X = data(args.frames)
    blocks = [None] + [b if b == "auto" else int(b) for b in args.blocks.split(",")]
    print(f"block_size='auto' for {args.frames} rows: {ipem.parallel.auto_block_size(args.frames)}")
    places = {"local:1": ipem.LocalController(1, blas_threads=1)}
    cluster = None
    if args.engines:
        cluster = ipem.parallel.MPICluster(n=args.engines, blas_threads=1)
        places[f"mpi:{args.engines}"] = cluster.start()
    try:
        times = {}
        for _ in range(args.repeat):
            for pname, ctrl in places.items():
                for mname, make in models.items():
                    for b in blocks:
                        ctrl.block_size = b
                        with threadpool_limits(1):
                            m = make(ctrl).fit(X)
                        times.setdefault((pname, mname, b), []).append(per_iteration(m))
                    ctrl.block_size = "auto"
    finally:
        if cluster is not None:
            cluster.stop()
    print(f"{args.frames} frames x {D}, float32, median of {args.repeat} runs, "
          "seconds per iteration (ratio to no blocks)\n")
    print("| places | model | no blocks | " + " | ".join(f"block {b}" for b in blocks[1:]) + " |")
    print("|---|---|---|" + "---|" * (len(blocks) - 1))
    for pname in places:
        for mname in models:
            base = statistics.median(times[(pname, mname, None)])
            cells = [f"{statistics.median(times[(pname, mname, b)]):.3f} "
                     f"({statistics.median(times[(pname, mname, b)]) / base:.3f}x)"
                     for b in blocks[1:]]
            print(f"| {pname} | {mname} | {base:.3f} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
