"""ipem benchmarks: seconds per EM iteration as ratios against peers measured in the same run.

    .venv/bin/python benchmarks/run.py [--quick] [--repeat 5] [--out benchmarks/RESULTS.md]
                                       [--only gmm,kmeans,engines,memory,ubm]

Sections (see ../shared/PERFORMANCE.md for the arithmetic and the protocol):

gmm      diag GMM, N=200,000, D=60, K=256 and 1024, float32: ipem C, ipem NumPy,
         scikit-learn GaussianMixture(diag).fit per iteration, and the
         roofline: 8*N*D*K flops at this machine's float32 GEMM rate.
kmeans   Lloyd, same N, D, K=256: ipem C, ipem NumPy, scikit-learn KMeans(lloyd).
engines  the diag GMM (K=256) through the DirectView controller on 1 and on 2 MPI
         engines with one BLAS thread each, and the client's overhead per iteration
         (iteration wall time not spent in the engines' kernels).
memory   peak resident memory of one diag-GMM iteration (ipem C) for K=256 and 2048,
         minus the data, measured in a fresh process.
ubm      a 512-component UBM on 1,000,000 frames x 60 dims on 2 MPI engines: time
         and peak memory per engine.

Every figure is the median of repeated timings (min-max in brackets).  GMM iterations
are timed inside real ``fit`` calls, iterations 2-6 of each: ipem from its iteration
records, scikit-learn from the time lapse it prints per iteration (``verbose=2``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

N, D = 200_000, 60


def med(times):
    return statistics.median(times), min(times), max(times)


def fmt(t):
    m, lo, hi = t
    return f"{m:.3f} s [{lo:.3f}-{hi:.3f}]"


def timed(fn, repeat, warmup=1):
    """Median, min and max seconds of ``fn()`` (kernel_timing.time_call)."""
    from kernel_timing import time_call
    return time_call(fn, repeat=repeat, warmup=warmup)


def problem(n, d, k, seed=0, dtype=np.float32):
    """Speech-like frames (offset, unequal scales) and a diag GMM near them."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 2, size=(k, d))
    lab = rng.integers(0, k, size=n)
    X = (centers[lab] + rng.normal(size=(n, d)) * rng.uniform(0.5, 1.5, d) + 3.0).astype(dtype)
    means = centers + 3.0 + rng.normal(0, 0.3, size=(k, d))
    variances = rng.uniform(0.5, 2.0, size=(k, d))
    weights = rng.dirichlet(np.full(k, 5.0))
    return X, weights, means, variances


def gemm_rate(dtype=np.float32, repeat=5):
    """float32 GEMM rate (flop/s) of this machine on the E-step's shapes."""
    from scipy.linalg import blas
    rng = np.random.default_rng(1)
    a = np.asfortranarray(rng.standard_normal((8192, 2 * D)).astype(dtype))
    b = np.asfortranarray(rng.standard_normal((2 * D, 1024)).astype(dtype))
    sq = np.asfortranarray(rng.standard_normal((2048, 2048)).astype(dtype))
    gemm = blas.sgemm if np.dtype(dtype) == np.float32 else blas.dgemm
    _, t_shape, _ = timed(lambda: gemm(1.0, a, b), repeat)
    _, t_sq, _ = timed(lambda: gemm(1.0, sq, sq), repeat)
    return max(2.0 * 8192 * 2 * D * 1024 / t_shape, 2.0 * 2048 ** 3 / t_sq)


# ---------------------------------------------------------------------------
# sections
# ---------------------------------------------------------------------------

FIT_ITERS = 6


def ipem_gmm_iterations(X, k, backend, rounds):
    """Per-iteration wall times of ipem GaussianMixture(diag).fit (from its records)."""
    import ipem
    times = []
    for r in range(rounds):
        time.sleep(0.5)
        gm = ipem.GaussianMixture(k, covariance_type="diag", init_params="random_from_data",
                                  max_iter=FIT_ITERS, tol=0.0, random_state=r, backend=backend)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm.fit(X)
        times += [rec.time for rec in gm.history_[1:]]
    return med(times)


def sklearn_gmm_iterations(X, k, rounds):
    """Per-iteration wall times of scikit-learn GaussianMixture(diag).fit, as it reports
    them itself (``verbose=2, verbose_interval=1`` prints each iteration's time lapse)."""
    import contextlib
    import io
    import re
    from sklearn.mixture import GaussianMixture
    times = []
    for r in range(rounds):
        time.sleep(0.5)
        gm = GaussianMixture(k, covariance_type="diag", init_params="random_from_data",
                             max_iter=FIT_ITERS, tol=0.0, random_state=r, verbose=2,
                             verbose_interval=1)
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm.fit(X)
        lapses = [float(t) for t in re.findall(r"Iteration \d+\s+time lapse ([0-9.]+)s",
                                                buf.getvalue())]
        if len(lapses) != FIT_ITERS:
            raise RuntimeError(f"could not read scikit-learn's iteration times: {buf.getvalue()}")
        times += lapses[1:]
    return med(times)


def section_gmm(args, rows, rate):
    out = []
    rounds = max(2, args.repeat // 2)
    for k in (256, 1024):
        X, _, _, _ = problem(N, D, k)
        floor = 8.0 * N * D * k / rate
        res = {"c": ipem_gmm_iterations(X, k, "c", args.repeat),
               "numpy": ipem_gmm_iterations(X, k, "numpy", rounds),
               "sklearn": sklearn_gmm_iterations(X, k, rounds),
               "sklearn64": sklearn_gmm_iterations(X.astype(np.float64), k, rounds)}
        out.append((k, floor, res))
        rows.append(f"| diag GMM K={k} | ipem C | {fmt(res['c'])} | "
                    f"sklearn/C = **{res['sklearn'][0] / res['c'][0]:.1f}x** | "
                    f"roofline {floor:.3f} s = **{100 * floor / res['c'][0]:.0f}%** of it |")
        rows.append(f"| diag GMM K={k} | ipem NumPy | {fmt(res['numpy'])} | "
                    f"sklearn/NumPy = {res['sklearn'][0] / res['numpy'][0]:.1f}x | "
                    f"C/NumPy speed-up {res['numpy'][0] / res['c'][0]:.1f}x |")
        rows.append(f"| diag GMM K={k} | scikit-learn (same float32 features) | "
                    f"{fmt(res['sklearn'])} | 1.0x | |")
        rows.append(f"| diag GMM K={k} | scikit-learn (the features as float64) | "
                    f"{fmt(res['sklearn64'])} | sklearn64/C = "
                    f"**{res['sklearn64'][0] / res['c'][0]:.1f}x** | |")
        print(*rows[-4:], sep="\n", flush=True)
    return out


def section_kmeans(args, rows):
    """One Lloyd iteration: ipem (E-step over the controller + M-step) against the routine
    scikit-learn's KMeans(algorithm="lloyd").fit calls once per iteration, with BLAS limited
    to one thread as fit does, all timed in turn each round (pauses in between)."""
    import ipem
    from ipem.cluster.lloyd import reset as _km_reset
    from sklearn.cluster._k_means_lloyd import lloyd_iter_chunked_dense
    from threadpoolctl import threadpool_info, threadpool_limits
    k = 256
    X, _, m, _ = problem(N, D, k, seed=2)
    fns = {}
    for backend in ("c", "numpy"):
        km = ipem.KMeans(k, backend=backend)
        data = ipem.LocalController(1).distribute(X)
        data.controller.map(_km_reset, data)
        params = {"centers": m - data.mean}

        def one(km=km, data=data, params=params):
            stats = km._e_step(data, params)
            km._m_step(stats, params, data)
        fns[backend] = one
    Xc = np.ascontiguousarray(X - X.mean(axis=0))
    c_old = np.ascontiguousarray((m - X.mean(axis=0)).astype(np.float32))
    c_new, wic = np.empty_like(c_old), np.zeros(k, dtype=np.float32)
    labels, shift = np.full(N, -1, dtype=np.int32), np.zeros(k, dtype=np.float32)
    sw = np.ones(N, dtype=np.float32)
    n_threads = max([i["num_threads"] for i in threadpool_info() if i["user_api"] == "openmp"]
                    or [1])

    def sk():
        with threadpool_limits(limits=1, user_api="blas"):
            lloyd_iter_chunked_dense(Xc, sw, c_old, c_new, wic, labels, shift, n_threads)
    fns["sklearn"] = sk
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(3 * args.repeat):
        for name, fn in fns.items():
            time.sleep(0.3)
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    res = {name: med(t) for name, t in times.items()}
    ratio = {name: statistics.median(a / b for a, b in zip(times["sklearn"], times[name]))
             for name in times}
    for name, label in (("c", "ipem C"), ("numpy", "ipem NumPy"), ("sklearn", "scikit-learn")):
        rows.append(f"| k-means K={k} | {label} | {fmt(res[name])} | "
                    f"sklearn/{name} = **{ratio[name]:.2f}x** | |")
        print(rows[-1], flush=True)
    return res


def section_engines(args, rows):
    import ipem
    k = 256
    X, w, m, v = problem(N, D, k, seed=3)
    results = {}
    with ipem.MPICluster(n=2, blas_threads=1) as ctrl2:
        client = ctrl2.client
        for n_eng in (1, 2):
            ctrl = ipem.DirectViewController(client[list(range(n_eng))], blas_threads=1) \
                if n_eng == 1 else ctrl2
            data = ctrl.distribute(X)
            gm = ipem.GaussianMixture(k, covariance_type="diag", backend="c")
            time.sleep(1.0)                          # let the scatter's traffic settle
            params = {"weights": w, "means": m, "covariances": v,
                      "prec_chol": 1.0 / np.sqrt(v)}
            walls, overheads = [], []
            for i in range(3 * args.repeat + 1):   # noisier than the rest: more runs
                t0 = time.perf_counter()
                stats = gm._e_step(data, params)
                gm._m_step(stats, params, data)
                wall = time.perf_counter() - t0
                if i:  # first call warms up
                    walls.append(wall)
                    overheads.append(wall - float(np.max(stats["shard_time"])))
            results[n_eng] = (med(walls), med(overheads))
            data.free()
    speedup = results[1][0][0] / results[2][0][0]
    for n_eng in (1, 2):
        wall, over = results[n_eng]
        rows.append(f"| diag GMM K={k}, DirectView | {n_eng} MPI engine(s), 1 BLAS thread each | "
                    f"{fmt(wall)} | " + (f"2 vs 1 engine: **{speedup:.2f}x** |" if n_eng == 2
                                         else "1.0x |") +
                    f" client overhead {1e3 * over[0]:.1f} ms/iteration |")
        print(rows[-1], flush=True)
    return results, speedup


MEM_CHILD = r"""
import sys, json, numpy as np, ipem
sys.path.insert(0, {here!r})
from run import problem

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024.0

k = {k}
X, w, m, v = problem({n}, {d}, k)
gm = ipem.GaussianMixture(k, covariance_type="diag", backend="c")
ctrl = ipem.LocalController(1)
data = ctrl.distribute(X)
params = dict(weights=w, means=m, covariances=v, prec_chol=1 / np.sqrt(v))
import ctypes, gc
gc.collect()
ctypes.CDLL("libc.so.6").malloc_trim(0)          # give freed heap pages back first
open("/proc/self/clear_refs", "w").write("5")   # reset the peak (VmHWM) to the current RSS
base = status("VmRSS:")
stats = gm._e_step(data, params)
gm._m_step(stats, params, data)
peak = status("VmHWM:")
print(json.dumps(dict(data_mb=X.nbytes / 2**20, extra_mb=peak - base)))
"""


def section_memory(args, rows):
    out = {}
    for k in (256, 2048):
        code = MEM_CHILD.format(here=str(HERE), k=k, n=N, d=D)
        env = dict(os.environ, OMP_NUM_THREADS="1")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        if r.returncode:
            raise RuntimeError(r.stderr)
        res = json.loads(r.stdout.strip().splitlines()[-1])
        out[k] = res
        rows.append(f"| memory, diag GMM K={k} | ipem C | data {res['data_mb']:.0f} MB | "
                    f"iteration peak beyond the data: **{res['extra_mb']:.1f} MB** | "
                    f"target ≤ 256 MB |")
        print(rows[-1], flush=True)
    return out


def _engine_peak_mb():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def section_ubm(args, rows, tmpdir):
    import ipem
    from ipem import io as features
    from ipem.mixture.ubm import UBMTrainer
    n_frames, k = (200_000, 128) if args.quick else (1_000_000, 512)
    rng = np.random.default_rng(5)
    centers = rng.normal(0, 2, size=(200, D))
    paths, done = [], 0
    while done < n_frames:
        n = int(min(rng.integers(20_000, 60_000), n_frames - done))
        lab = rng.integers(0, 200, n)
        X = (centers[lab] + rng.normal(size=(n, D)) * rng.uniform(0.4, 1.4, D)).astype(np.float32)
        p = os.path.join(tmpdir, f"u{len(paths):03d}.htk")
        features.write(p, X, "htk")
        paths.append(p)
        done += n
    with ipem.MPICluster(n=2, blas_threads=1) as ctrl:
        t0 = time.perf_counter()
        ubm = UBMTrainer(k, stage_iter=4, final_iter=10, tol=1e-4, controller=ctrl,
                         random_state=0).fit(paths)
        wall = time.perf_counter() - t0
        peaks = [ctrl.client[e].apply_sync(_engine_peak_mb) for e in ctrl.engine_ids]
    last = [r for r in ubm.history_ if r.stage == k]
    per_iter = statistics.median(r.time for r in last)
    estep = [statistics.median(r.info["shard_time"][i] for r in last) for i in range(2)]
    rows.append(f"| UBM K={k}, {n_frames:,} frames x {D} | 2 MPI engines, files read by engines | "
                f"total {wall:.1f} s, {ubm.n_iter_} iterations, {per_iter:.2f} s/iteration at "
                f"K={k} | E-step per engine {estep[0]:.2f}/{estep[1]:.2f} s | peak RSS per engine "
                f"{peaks[0]:.0f}/{peaks[1]:.0f} MB (frames {n_frames * D * 4 / 2 / 2**20:.0f} MB "
                f"each) |")
    print(rows[-1], flush=True)
    return wall, peaks


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="smaller UBM section")
    p.add_argument("--only", default="gmm,kmeans,engines,memory,ubm")
    p.add_argument("--out", default=None, help="write a Markdown table here")
    args = p.parse_args()
    only = set(args.only.split(","))
    import ipem
    from threadpoolctl import threadpool_info
    if "c" not in ipem.available_backends():
        raise SystemExit("the compiled kernels are not built: pip install -e . with gcc")
    rate = gemm_rate()
    blas = ", ".join(sorted({f"{i['internal_api']} {i.get('version')} ({i['num_threads']} threads)"
                             for i in threadpool_info() if i["user_api"] == "blas"}))
    cpu = platform.machine()
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                   if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    head = [f"Machine: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, NumPy {np.__version__}, BLAS: {blas}.",
            f"Measured float32 GEMM rate: {rate / 1e9:.0f} GFLOP/s. "
            f"N={N:,} frames, D={D}, float32 features; median of {args.repeat} runs [min-max].",
            "", "| case | implementation | seconds per iteration | ratio | note |",
            "|---|---|---|---|---|"]
    print("\n".join(head), flush=True)
    rows = []
    if "gmm" in only:
        section_gmm(args, rows, rate)
    if "kmeans" in only:
        section_kmeans(args, rows)
    if "engines" in only:
        section_engines(args, rows)
    if "memory" in only:
        section_memory(args, rows)
    if "ubm" in only:
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            section_ubm(args, rows, tmp)
    if args.out:
        Path(args.out).write_text("\n".join(head + rows) + "\n")
        print(f"-> {args.out}")


if __name__ == "__main__":
    main()
