"""Engine memory and time of a GMM or an i-vector extractor kept in memory vs streamed.

    .venv/bin/python benchmarks/stream_memory.py [--frames 1500000] [--budget 64M]
        [--engines 2] [--components 64] [--iter 4] [--read-ahead]
    .venv/bin/python benchmarks/stream_memory.py --model tv [--utterances 2000]
        [--components 256] [--rank 50] [--budget 32M] [--iter 3] [--read-ahead]

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

``--model tv``: ``--utterances`` HTK files of 200 to 400 frames, a diagonal UBM
of ``--components`` Gaussians fitted here on a sample, then on fresh engines
(blocks of 64 utterances) the utterance statistics (``K + K*D`` float64 per
utterance) kept in memory or under ``engine_memory=--budget``
(:func:`ipem.ivector.distribute_stats`: rows beyond it spill to a scratch file
and are read back every iteration) and a rank ``--rank`` TotalVariability fit.

``--read-ahead`` adds two runs that stream every block: a budget of one block
(no room to read ahead) and of two (the next block read while the current one
is computed) beyond what the engines use without rows, to compare seconds per
iteration.  Budgets are of the whole engine process (``--engine-memory``):
the engine's own memory and the computation's working memory come off first.
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


def write_utterances(directory, n, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, size=(64, D)).astype(np.float32)
    paths = []
    for i in range(n):
        m = int(rng.integers(200, 400))
        X = (centers[rng.integers(0, 64, size=m)] + rng.normal(size=D).astype(np.float32)
             + rng.normal(size=(m, D)).astype(np.float32))
        paths.append(os.path.join(directory, f"v{i:05d}.htk"))
        ipem.io.write(paths[-1], X, "htk")
    return paths


def blocks_budget(start_mib, n_blocks, block, working, decoding=0):
    """A budget that leaves ``n_blocks`` blocks for rows beyond what the engines use now
    (their largest RSS), the computation's working memory and the slack."""
    from ipem.io.streaming import RESERVE
    return int(max(start_mib) * 2**20) + RESERVE + working + decoding + n_blocks * block \
        + block // 2


def run(paths, engines, budget, k, n_iter):
    with ipem.parallel.MPICluster(n=engines, blas_threads=1,
                                  controller_kwargs=dict(block_size=4096)) as ctrl:
        view = ctrl.client[ctrl.engine_ids]
        start = [r[0] for r in view.apply_sync(engine_rss)]
        if isinstance(budget, tuple):     # ("blocks", n)
            from ipem.mixture.ubm import estep_memory
            refs = list_features(paths)
            budget = blocks_budget(start, budget[1], 4096 * D * 4, estep_memory(k, D, 4096),
                                   2 * max(r.n_frames for r in refs) * D * 4)
        data = distribute_files(ctrl, list_features(paths), engine_memory=budget)
        gmm = ipem.GaussianMixture(k, covariance_type="diag", max_iter=n_iter, tol=0,
                                   random_state=0, controller=ctrl).fit(data)
        peak = [r[1] for r in view.apply_sync(engine_rss)]
    per_iter = statistics.median(r.time for r in gmm.history_[1:])
    return gmm, start, peak, per_iter, data.place_sizes * D * 4


def run_tv(paths, ubm, engines, budget, rank, n_iter):
    from ipem.ivector import TotalVariability, distribute_stats
    with ipem.parallel.MPICluster(n=engines, blas_threads=1,
                                  controller_kwargs=dict(block_size=64)) as ctrl:
        view = ctrl.client[ctrl.engine_ids]
        start = [r[0] for r in view.apply_sync(engine_rss)]
        tv = TotalVariability(rank, ubm=ubm, max_iter=n_iter, random_state=0, controller=ctrl,
                              engine_memory="1G")
        working = tv._working_memory(len(paths))     # what a budget must leave it
        if isinstance(budget, tuple):     # ("blocks", n)
            k, d = ubm.means_.shape
            budget = blocks_budget(start, budget[1], 64 * k * (d + 1) * 8, working)
        data = distribute_stats(ubm, paths, controller=ctrl, engine_memory=budget,
                                working_memory=working if budget else 0)
        tv = tv.set_params(engine_memory=None).fit(data)
        peak = [r[1] for r in view.apply_sync(engine_rss)]
    per_iter = statistics.median(r.time for r in tv.history_[1:])
    return tv, start, peak, per_iter, data.place_sizes * data.n_features * 8


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=1_500_000)
    ap.add_argument("--budget", default=None, help="default: 300M (gmm), 320M (tv)")
    ap.add_argument("--engines", type=int, default=2)
    ap.add_argument("--components", type=int, default=None, help="default: 64 (gmm), 256 (tv)")
    ap.add_argument("--iter", type=int, default=None, help="default: 4 (gmm), 3 (tv)")
    ap.add_argument("--model", choices=["gmm", "tv"], default="gmm")
    ap.add_argument("--utterances", type=int, default=2000)
    ap.add_argument("--rank", type=int, default=50)
    ap.add_argument("--read-ahead", action="store_true")
    args = ap.parse_args(argv)
    tv = args.model == "tv"
    args.budget = args.budget or ("320M" if tv else "300M")
    n_iter = args.iter or (3 if tv else 4)
    k = args.components if args.components is not None else (256 if tv else 64)
    # bytes of one block: 64 utterance rows, or 4096 frames
    block = 64 * k * (D + 1) * 8 if tv else 4096 * D * 4
    runs = [("in memory", None), (f"streamed, `engine_memory={args.budget}`", args.budget)]
    if args.read_ahead:
        runs += [("all streamed, one block (no read-ahead)", ("blocks", 1)),
                 ("all streamed, two blocks (read-ahead)", ("blocks", 2))]
    with tempfile.TemporaryDirectory() as tmp:
        if tv:
            paths = write_utterances(tmp, args.utterances)
            sample = ipem.io.load_many(list_features(paths[:200]))
            ubm = ipem.GaussianMixture(k, covariance_type="diag", max_iter=3, tol=0,
                                       random_state=0).fit(sample)
            results = {name: run_tv(paths, ubm, args.engines, budget, args.rank, n_iter)
                       for name, budget in runs}
            what = (f"{args.utterances} utterances (HTK, 200-400 frames x {D}), UBM K={k}, "
                    f"rows of {k * (D + 1) * 8} bytes, rank {args.rank}, blocks of 64 "
                    "utterances")
            attrs = ("T_",)
        else:
            paths = write_corpus(tmp, args.frames)
            results = {name: run(paths, args.engines, budget, k, n_iter)
                       for name, budget in runs}
            what = (f"{args.frames} frames x {D} float32 in {len(paths)} HTK files, diag GMM "
                    f"K={k}, blocks of 4096 frames")
            attrs = ("means_", "covariances_", "weights_")
    print(f"{what}; {args.engines} engines, {n_iter} iterations, one block = {block} bytes\n")
    print(f"| run | {'rows' if tv else 'frames'} per engine (MiB) | engine RSS at start (MiB) "
          "| engine peak RSS (MiB) | s / iteration |")
    print("|---|---|---|---|---|")
    for name, (_, start, peak, per_iter, nbytes) in results.items():
        mib = [f"{s / 2**20:.0f}" for s in nbytes]
        print(f"| {name} | {'/'.join(mib)} | {'/'.join(f'{v:.0f}' for v in start)} "
              f"| {'/'.join(f'{v:.0f}' for v in peak)} | {per_iter:.3f} |")
    ref = results["in memory"][0]
    same = all(np.array_equal(getattr(r[0], n), getattr(ref, n))
               for r in results.values() for n in attrs)
    print(f"\nsame model bits in every run: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
