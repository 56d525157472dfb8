"""ipem benchmarks: seconds per EM iteration as ratios against peers measured in the same run.

    .venv/bin/python benchmarks/run.py [--quick] [--repeat 5] [--out benchmarks/RESULTS.md]
                                       [--only gmm,full,kmeans,approx,engines,memory,ubm]
                                       [--wait-quiet 0.6]

Sections (see ../shared/PERFORMANCE.md for the arithmetic and the protocol):

gmm      diag GMM, N=200,000, D=60, K=256, 1024 and 2048, float32, through
         GaussianMixture.fit: ipem C (2 and 1 worker threads), ipem NumPy (K=256),
         scikit-learn GaussianMixture(diag).fit per iteration, and the roofline:
         8*N*D*K flops at this machine's float32 GEMM rate.  Twice: on clustered
         frames (each frame's posterior is one component: the kernel skips the
         exact zeros) and on overlapping components (dense posteriors: every
         product is computed).
full     full-covariance GMM, K=64 and 256, against scikit-learn (K=256: scikit-learn
         timed on a quarter of the frames and scaled, it is linear in N).
kmeans   Lloyd, K=256, 20 iterations from the same initial centres: ipem KMeans.fit
         (with and without its distance bounds), scikit-learn KMeans(lloyd), faiss-cpu
         Kmeans (every point used), scikit-learn-intelex KMeans where installed; and
         KMeans.fit with its defaults (k-means++ seeding included) against scikit-learn.
approx   diag GMM K=1024 on overlapping components: exact EM against the approximate
         statistics (top_c, min_post): time per iteration and final log-likelihood.
engines  the diag GMM (K=256) through the DirectView controller on 1 and on 2 MPI
         engines with one BLAS thread each, and the client's overhead per iteration
         (iteration wall time not spent in the engines' kernels).
memory   peak resident memory of one diag-GMM iteration (ipem C) for K=256 and 2048,
         minus the data, measured in a fresh process.
ubm      a 512-component UBM on 1,000,000 frames x 60 dims on 2 MPI engines: time
         and peak memory per engine.

Every figure is the median of repeated timings (min-max in brackets, and the spread
(max-min)/median).  GMM iterations are timed inside real ``fit`` calls, iterations 2-6
of each: ipem from its iteration records, scikit-learn from the time lapse it prints
per iteration (``verbose=2``).  ``--out`` rewrites only this script's section of the
file (between ``<!-- perf:begin -->`` and ``<!-- perf:end -->``); the load average of
the machine is printed with the results (the figures are only meaningful on a quiet
machine).
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
    return f"{m:.3f} s [{lo:.3f}-{hi:.3f}, spread {100 * (hi - lo) / m:.0f}%]"


def wait_quiet(threshold, timeout=3600.0):
    """Wait (up to ``timeout`` s) until the 1-minute load average is below ``threshold``."""
    t0 = time.monotonic()
    while load_average()[0] >= threshold and time.monotonic() - t0 < timeout:
        time.sleep(10)
    return load_average()


def load_average():
    try:
        return os.getloadavg()
    except OSError:
        return (float("nan"),) * 3


def timed(fn, repeat, warmup=1):
    """Median, min and max seconds of ``fn()`` (kernel_timing.time_call)."""
    from kernel_timing import time_call
    return time_call(fn, repeat=repeat, warmup=warmup)


def problem(n, d, k, seed=0, dtype=np.float32, overlap=False):
    """Speech-like frames (offset, unequal scales) and a diag GMM near them.

    ``overlap``: centres 0.35 apart per dimension instead of 2, so that every
    frame has many non-negligible posteriors (dense statistics)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 0.35 if overlap else 2, size=(k, d))
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
    _, t_shape, _ = timed(lambda: gemm(1.0, a, b), 2 * repeat + 1)
    _, t_sq, _ = timed(lambda: gemm(1.0, sq, sq), 2 * repeat + 1)
    return max(2.0 * 8192 * 2 * D * 1024 / t_shape, 2.0 * 2048 ** 3 / t_sq)


# ---------------------------------------------------------------------------
# sections
# ---------------------------------------------------------------------------

FIT_ITERS = 6


def ipem_gmm_iterations(X, k, backend, rounds, covariance_type="diag", threads=None,
                        n_iter=FIT_ITERS, **params):
    """Per-iteration wall times of ipem GaussianMixture.fit (from its records), and the
    last fitted model."""
    import ipem
    from threadpoolctl import threadpool_limits
    times = []
    for r in range(rounds):
        time.sleep(0.5)
        gm = ipem.GaussianMixture(k, covariance_type=covariance_type,
                                  init_params="random_from_data", max_iter=n_iter, tol=0.0,
                                  random_state=r, backend=backend, **params)
        with warnings.catch_warnings(), threadpool_limits(threads):
            warnings.simplefilter("ignore")
            gm.fit(X)
        times += [rec.time for rec in gm.history_[1:]]
    return med(times), gm


def sklearn_gmm_iterations(X, k, rounds, covariance_type="diag", n_iter=FIT_ITERS, **params):
    """Per-iteration wall times of scikit-learn GaussianMixture.fit, as it reports
    them itself (``verbose=2, verbose_interval=1`` prints each iteration's time lapse)."""
    import contextlib
    import io
    import re
    from sklearn.mixture import GaussianMixture
    times = []
    for r in range(rounds):
        time.sleep(0.5)
        gm = GaussianMixture(k, covariance_type=covariance_type,
                             init_params="random_from_data", max_iter=n_iter, tol=0.0,
                             random_state=r, verbose=2, verbose_interval=1, **params)
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm.fit(X)
        lapses = [float(t) for t in re.findall(r"Iteration \d+\s+time lapse ([0-9.]+)s",
                                                buf.getvalue())]
        if len(lapses) != n_iter:
            raise RuntimeError(f"could not read scikit-learn's iteration times: {buf.getvalue()}")
        times += lapses[1:]
    return med(times)


def fixed_estep_times(X, gm, repeat=10):
    """Seconds of the same E-step (the fitted parameters) repeated through the
    estimator's controller path: how steady an iteration is when its work is."""
    import ipem
    data = ipem.LocalController(1).distribute(X)
    params = {"weights": gm.weights_, "means": gm.means_, "prec_chol": gm.precisions_cholesky_}
    gm.e_step(data, params)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        gm.e_step(data, params)
        times.append(time.perf_counter() - t0)
    data.free()
    return med(times)


def section_gmm(args, rows, rate):
    out = []
    rounds = max(2, args.repeat // 2)
    for overlap in (False, True):
        what = "overlapping components (dense posteriors)" if overlap else "clustered frames"
        for k in ((256, 1024) if overlap else (256, 1024, 2048)):
            X, _, _, _ = problem(N, D, k, overlap=overlap)
            floor = 8.0 * N * D * k / rate
            res = {}
            res["c"], fitted = ipem_gmm_iterations(X, k, "c", args.repeat)
            if k == 256:
                res["steady"] = fixed_estep_times(X, fitted, 2 * args.repeat)
            if k == 256:
                res["c1"] = ipem_gmm_iterations(X, k, "c", rounds, threads=1)[0]
            if k == 256 and not overlap:
                res["numpy"] = ipem_gmm_iterations(X, k, "numpy", rounds)[0]
                res["sklearn64"] = sklearn_gmm_iterations(X.astype(np.float64), k, rounds)
            if k == 256 or not overlap:
                res["sklearn"] = sklearn_gmm_iterations(X, k, rounds)
            out.append((k, overlap, floor, res))
            case = f"diag GMM K={k}, {what}"
            n0 = len(rows)
            sk = res.get("sklearn")
            rows.append(f"| {case} | ipem C, 2 threads | {fmt(res['c'])} | "
                        + (f"sklearn/C = **{sk[0] / res['c'][0]:.1f}x** | " if sk else "| ")
                        + f"roofline {floor:.3f} s = **{100 * floor / res['c'][0]:.0f}%** of it |")
            if "steady" in res:
                rows.append(f"| {case} | ipem C, the same E-step repeated "
                            f"({2 * args.repeat}x) | {fmt(res['steady'])} | | iterations of a "
                            "fit differ in work (posterior sparsity); at equal work the time is "
                            "steady |")
            if "c1" in res:
                rows.append(f"| {case} | ipem C, 1 thread | {fmt(res['c1'])} | "
                            f"2 vs 1 thread: **{res['c1'][0] / res['c'][0]:.2f}x** | "
                            f"1-thread roofline {2 * floor:.3f} s = "
                            f"{100 * 2 * floor / res['c1'][0]:.0f}% |")
            if "numpy" in res:
                rows.append(f"| {case} | ipem NumPy | {fmt(res['numpy'])} | "
                            f"sklearn/NumPy = {sk[0] / res['numpy'][0]:.1f}x | "
                            f"C/NumPy speed-up {res['numpy'][0] / res['c'][0]:.1f}x |")
            if sk:
                rows.append(f"| {case} | scikit-learn (same float32 features) | {fmt(sk)} | "
                            "1.0x | |")
            if "sklearn64" in res:
                rows.append(f"| {case} | scikit-learn (the features as float64) | "
                            f"{fmt(res['sklearn64'])} | sklearn64/C = "
                            f"**{res['sklearn64'][0] / res['c'][0]:.1f}x** | |")
            print(*rows[n0:], sep="\n", flush=True)
    return out


def section_full(args, rows, rate):
    """Full covariance through fit: ipem C against scikit-learn (float32 features)."""
    out = {}
    for k in (64, 256):
        X, _, _, _ = problem(N, D, k, seed=4)
        ours, _ = ipem_gmm_iterations(X, k, "c", 2, covariance_type="full", n_iter=4,
                                      reg_covar=1e-3)
        # scikit-learn: 2 iterations (the second is timed); at K=256 on a quarter of
        # the frames, scaled by 4 (its E- and M-steps are linear in the frames)
        n_sk = N if k == 64 else N // 4
        sk = sklearn_gmm_iterations(X[:n_sk], k, 1, covariance_type="full", n_iter=2,
                                    reg_covar=1e-3)
        sk = tuple(t * N / n_sk for t in sk)
        flops = N * (2.0 * (D + 1) * 64 * k + 2.0 * k * (1 + D + D * (D + 1) / 2))
        floor = flops / rate
        out[k] = (ours, sk)
        note = "" if n_sk == N else f" (timed on {n_sk:,} frames, x{N // n_sk})"
        rows.append(f"| full GMM K={k} | ipem C, 2 threads | {fmt(ours)} | "
                    f"sklearn/C = **{sk[0] / ours[0]:.1f}x** | matrix products "
                    f"{flops / 1e9:.0f} GFLOP: roofline {floor:.2f} s = "
                    f"{100 * floor / ours[0]:.0f}% of it |")
        rows.append(f"| full GMM K={k} | scikit-learn{note} | {sk[0]:.2f} s | 1.0x | |")
        print(*rows[-2:], sep="\n", flush=True)
    return out


KM_ITERS = 20


def _kmeans_peers(X, c0, repeat):
    """Seconds per iteration of 20-iteration Lloyd fits from the centres c0."""
    import ipem
    from ipem.kernels import _c
    from sklearn.cluster import KMeans as SKKMeans
    k = c0.shape[0]
    fits = {}

    def ipem_fit():
        km = ipem.KMeans(k, init=c0, n_init=1, max_iter=KM_ITERS, tol=0.0, backend="c")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            km.fit(X)
        return km.n_iter_

    def ipem_dense():
        real = _c.kmeans_step_bounded

        def no_bounds(X, shift, centers, labels, mindist, bounds, chunk_size=None,
                      sample_weight=None):
            bounds["centers"] = None  # every frame against every centre
            return real(X, shift, centers, labels, mindist, bounds, chunk_size, sample_weight)
        _c.kmeans_step_bounded = no_bounds
        try:
            return ipem_fit()
        finally:
            _c.kmeans_step_bounded = real

    def sklearn_fit():
        km = SKKMeans(k, init=c0, n_init=1, max_iter=KM_ITERS, tol=0.0, algorithm="lloyd")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            km.fit(X)
        return km.n_iter_

    fits["ipem"] = ipem_fit
    fits["ipem-dense"] = ipem_dense
    fits["sklearn"] = sklearn_fit
    try:
        import faiss

        def faiss_fit():
            km = faiss.Kmeans(X.shape[1], k, niter=KM_ITERS, verbose=False, seed=1234,
                              max_points_per_centroid=X.shape[0], min_points_per_centroid=1)
            km.train(X, init_centroids=c0.astype(np.float32))
            return KM_ITERS
        fits["faiss"] = faiss_fit
    except ImportError:
        pass
    try:
        from sklearnex.cluster import KMeans as XKMeans

        def sklearnex_fit():
            km = XKMeans(k, init=c0, n_init=1, max_iter=KM_ITERS, tol=0.0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                km.fit(X)
            return km.n_iter_
        fits["sklearnex"] = sklearnex_fit
    except ImportError:
        pass
    for fn in fits.values():
        fn()  # warm up (imports, thread pools)
    times = {name: [] for name in fits}
    iters = {}
    for _ in range(repeat):
        for name, fn in fits.items():
            time.sleep(0.5)
            t0 = time.perf_counter()
            iters[name] = fn()
            times[name].append((time.perf_counter() - t0) / iters[name])
    return times, iters


def section_kmeans(args, rows):
    """Lloyd K=256 through the estimators' fit, 20 iterations from the same centres, and
    KMeans.fit with its defaults (k-means++ seeding) against scikit-learn's."""
    import ipem
    from sklearn.cluster import KMeans as SKKMeans
    k = 256
    X, _, _, _ = problem(N, D, k, seed=2)
    c0 = X[np.random.default_rng(0).choice(N, k, replace=False)].astype(np.float64)
    times, iters = _kmeans_peers(X, c0, args.repeat)
    res = {name: med(t) for name, t in times.items()}
    floor = 2.0 * N * D * k / args.rate
    labels = {"ipem": "ipem KMeans.fit (C, distance bounds)",
              "ipem-dense": "ipem KMeans.fit (C, every distance every iteration)",
              "sklearn": "scikit-learn KMeans(lloyd)", "faiss": "faiss-cpu Kmeans",
              "sklearnex": "scikit-learn-intelex KMeans"}
    for name in times:
        ratio = statistics.median(a / b for a, b in zip(times[name], times["ipem"]))
        note = (f"{iters[name]} iterations; roofline {floor:.3f} s/iteration" if
                name.startswith("ipem") else f"{iters[name]} iterations")
        rows.append(f"| k-means K={k}, {KM_ITERS} iterations from the same centres | "
                    f"{labels[name]} | {fmt(res[name])} | {name}/ipem = **{ratio:.2f}x** | "
                    f"{note} |")
        print(rows[-1], flush=True)
    if "sklearnex" not in times:
        rows.append(f"| k-means K={k} | scikit-learn-intelex | not installed | | |")
    # as users meet it: the defaults, k-means++ seeding included
    walls = {}
    for name in ("ipem", "sklearn"):
        time.sleep(0.5)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if name == "ipem":
                ipem.KMeans(k, random_state=0, max_iter=KM_ITERS).fit(X)
            else:
                SKKMeans(k, random_state=0, max_iter=KM_ITERS).fit(X)
        walls[name] = time.perf_counter() - t0
    rows.append(f"| k-means K={k}, KMeans(K, max_iter={KM_ITERS}).fit with k-means++ seeding | "
                f"ipem / scikit-learn | {walls['ipem']:.2f} s / {walls['sklearn']:.2f} s "
                f"(one run each) | sklearn/ipem = **{walls['sklearn'] / walls['ipem']:.1f}x** | "
                "whole fit: seeding dominates |")
    print(rows[-1], flush=True)
    return res


def section_approx(args, rows):
    """Approximate statistics against exact EM: diag K=1024, overlapping components."""
    k = 1024
    X, _, _, _ = problem(N, D, k, seed=6, overlap=True)
    rounds = max(2, args.repeat // 2)
    cases = [("exact", {}), ("top_c=20", {"top_c": 20}), ("min_post=0.025", {"min_post": 0.025}),
             ("top_c=20, min_post=0.025", {"top_c": 20, "min_post": 0.025})]
    res = {}
    for name, params in cases:
        t, gm = ipem_gmm_iterations(X, k, "c", rounds, n_iter=10, **params)
        res[name] = (t, gm.lower_bound_)
    base_t, base_ll = res["exact"]
    for name, (t, ll) in res.items():
        rows.append(f"| approximate statistics, diag K={k}, overlapping components | "
                    f"ipem C, {name} | {fmt(t)} | exact/this = **{base_t[0] / t[0]:.2f}x** | "
                    f"log-likelihood per frame after 10 iterations {ll:.4f} "
                    f"({ll - base_ll:+.4f} against exact) |")
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
                stats, shard_times = gm.e_step(data, params)
                gm.m_step(stats, params, data)
                wall = time.perf_counter() - t0
                if i:  # first call warms up
                    walls.append(wall)
                    overheads.append(wall - float(np.max(shard_times)))
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
stats, _ = gm.e_step(data, params)
gm.m_step(stats, params, data)
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
    p.add_argument("--only", default="gmm,full,kmeans,approx,engines,memory,ubm")
    p.add_argument("--out", default=None, help="write a Markdown table here")
    p.add_argument("--wait-quiet", type=float, default=None, metavar="LOAD",
                   help="first wait until the 1-minute load average is below LOAD")
    args = p.parse_args()
    only = set(args.only.split(","))
    import ipem
    from threadpoolctl import threadpool_info
    if "c" not in ipem.available_backends():
        raise SystemExit("the compiled kernels are not built: pip install -e . with gcc")
    if args.wait_quiet:
        wait_quiet(args.wait_quiet)
    load_before = load_average()
    rate = gemm_rate()
    args.rate = rate
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
            f"N={N:,} frames, D={D}, float32 features; median of {args.repeat} runs "
            "[min-max, spread = (max-min)/median].",
            f"Load average when the run started: {load_before[0]:.2f} (1 min), "
            f"{load_before[1]:.2f} (5 min).",
            "", "| case | implementation | seconds per iteration | ratio | note |",
            "|---|---|---|---|---|"]
    print("\n".join(head), flush=True)
    rows = []

    loads = {}

    def section(name):
        """Whether to run section ``name``; waits for a quiet machine first (--wait-quiet)
        and records the load average around it."""
        if loads:
            last = next(reversed(loads))
            loads[last] = (loads[last][0], load_average()[0])
        if name not in only:
            return False
        if args.wait_quiet:
            wait_quiet(args.wait_quiet)
        loads[name] = (load_average()[0], None)
        print(f"[{name}: load average {loads[name][0]:.2f}]", file=sys.stderr, flush=True)
        return True

    if section("gmm"):
        section_gmm(args, rows, rate)
    if section("full"):
        section_full(args, rows, rate)
    if section("kmeans"):
        section_kmeans(args, rows)
    if section("approx"):
        section_approx(args, rows)
    if section("engines"):
        section_engines(args, rows)
    if section("memory"):
        section_memory(args, rows)
    if section("ubm"):
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            section_ubm(args, rows, tmp)
    section("end")
    rows.extend(NOTES)
    rows.append("")
    rows.append("Load average (1 min) at the start / end of each section (the end values "
                "include this benchmark's own threads): " + ", ".join(
                    f"{name} {a:.2f} / {b:.2f}" for name, (a, b) in loads.items()) + ".")
    if args.out:
        write_section(Path(args.out), head + rows)
        print(f"-> {args.out}")


NOTES = [
    "",
    "Notes.",
    "- *roofline*: the matrix-product flops (8·N·D·K for a diagonal GMM, 2·N·D·K for k-means) "
    "at this machine's float32 GEMM rate, measured at the start of the run (scipy's OpenBLAS, "
    "2 threads, the better of a 8192x120x1024 and a 2048^3 product).",
    "- *clustered frames*: after the first iterations each frame has one component above "
    "float32 underflow; the fused kernel skips the exact zeros of the posteriors in the "
    "statistics (the results are those of the dense computation), so an iteration costs "
    "little more than the log-likelihood product and beats the dense roofline.  *Overlapping "
    "components*: dense posteriors, every product is computed: the figure to hold against "
    "the roofline.",
    "- *the same E-step repeated*: the iterations of a fit differ in work (their posterior "
    "sparsity), so their spread is not noise; at equal work the spread is that of the "
    "machine.",
    "- k-means *distance bounds*: Hamerly's bounds, widened by the float32 rounding error, "
    "skip the frames whose label cannot change; labels, distances, centres and inertia are "
    "bit-identical to comparing every frame with every centre (tested).",
    "- *approximate statistics* (off by default): each frame's statistics from its top_c most "
    "responsible components and/or those with a responsibility >= min_post, renormalised; "
    "the log-likelihood reported stays exact.",
]


def replace_section(path, name, lines):
    """Replace the section ``name`` of ``path`` (between ``<!-- name:begin -->`` and
    ``<!-- name:end -->``), keeping the other sections.  A missing "perf" section is
    the unmarked block at the top of older files; another missing one is appended."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = "\n".join([begin, *lines, end]) + "\n"
    text = path.read_text() if path.exists() else ""
    if begin in text and end in text:
        before, rest = text.split(begin, 1)
        after = rest.split(end, 1)[1].lstrip("\n")
        text = before + block + ("\n" + after if after else "")
    elif name == "perf":
        cut = text.find("<!--")
        after = text[cut:] if cut >= 0 else ""
        text = block + ("\n" + after if after else "")
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + block
    path.write_text(text)


def write_section(path, lines):
    """This script's section of the results file."""
    replace_section(path, "perf", lines)


if __name__ == "__main__":
    main()
