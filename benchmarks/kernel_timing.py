"""Quick per-call timing of ipem's E-step kernels: C vs NumPy vs the GEMM floor.

    python benchmarks/kernel_timing.py [--n 200000] [--d 60] [--k 256] [--k-full 32]
                                       [--repeat 3] [--dtype float32] [--only diag,full,kmeans]
                                       [--chunk ROWS] [--blas-threads 1] [--sklearn]

Prints, per kernel, the median (and min-max) seconds per call of each
backend, the flop count of its matrix products and the time those flops
take at the machine's own GEMM rate (measured here, same dtype) — the floor.
The helpers (make_problem, time_call, gemm_rate, kernel_flops) are meant to
be reused by the full benchmark suite.
"""
import argparse
import statistics
import sys
import time

import numpy as np


def time_call(fn, repeat=3, warmup=1):
    """Median, min and max wall-clock seconds of ``fn()`` over ``repeat`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times), max(times)


def gemm_rate(dtype=np.float32, size=1536, repeat=5):
    """Best measured GEMM rate (flop/s) of a square product with scipy's BLAS."""
    from scipy.linalg import blas
    rng = np.random.default_rng(0)
    a = np.asfortranarray(rng.standard_normal((size, size)).astype(dtype))
    gemm = blas.sgemm if np.dtype(dtype) == np.float32 else blas.dgemm
    _, best, _ = time_call(lambda: gemm(1.0, a, a), repeat=repeat)
    return 2.0 * size ** 3 / best


def make_problem(n, d, k, dtype=np.float32, full=False, seed=0):
    """Synthetic shard and GMM parameters (shifted coordinates, shift = data mean)."""
    rng = np.random.default_rng(seed)
    X = (rng.standard_normal((n, d)) + 5.0).astype(dtype)
    shift = X[: min(n, 10000)].mean(axis=0, dtype=np.float64)
    means = rng.standard_normal((k, d))
    log_weights = np.log(rng.dirichlet(np.ones(k)))
    if full:
        a = rng.standard_normal((k, d, d)) * (0.3 / np.sqrt(d))
        prec = np.triu(a) + np.eye(d)[None] * rng.uniform(0.7, 1.4, (k, 1, 1))
    else:
        prec = rng.uniform(0.5, 2.0, (k, d))
    return X, shift, means, prec, log_weights


def kernel_flops(kind, n, d, k):
    """Flops of the matrix products an E-step needs (the roofline numerator)."""
    if kind == "diag":     # [x^2, x] W and gamma^T [x, x^2]
        return 8.0 * n * d * k
    if kind == "full":     # (x - mu) U_j per component and gamma^T x x^T (upper triangle)
        return 2.0 * n * d * d * k + 1.0 * n * d * d * k
    if kind == "kmeans":   # x C^T
        return 2.0 * n * d * k
    if kind == "topc":     # [x^2, x] W only
        return 4.0 * n * d * k
    raise ValueError(kind)


def sklearn_kmeans_iteration(X, init, repeat=3, extra=3):
    """Seconds per Lloyd iteration of scikit-learn's KMeans(algorithm="lloyd").

    fit() with max_iter=1 runs one iteration plus a final assignment pass and
    the input checks; the difference to max_iter=1+extra, divided by extra,
    is the cost of one iteration alone.
    """
    from sklearn.cluster import KMeans

    def fit(max_iter):
        km = KMeans(n_clusters=init.shape[0], init=init, n_init=1, max_iter=max_iter,
                    tol=0.0, algorithm="lloyd")
        km.fit(X)
        return km

    if fit(1 + extra).n_iter_ != 1 + extra:
        raise RuntimeError("KMeans converged early; use more/other data")
    one = time_call(lambda: fit(1), repeat=repeat)
    more = time_call(lambda: fit(1 + extra), repeat=repeat)
    return tuple((b - a) / extra for a, b in zip(one, more))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--d", type=int, default=60)
    p.add_argument("--k", type=int, default=256)
    p.add_argument("--k-full", type=int, default=32)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--only", default="diag,full,kmeans",
                   help="comma-separated kernels: diag, full, kmeans, topc (top-5 selection)")
    p.add_argument("--chunk", type=int, default=None, help="chunk_size for the C kernels")
    p.add_argument("--blas-threads", type=int, default=None,
                   help="limit BLAS/OpenMP threads (threadpoolctl), e.g. 1 as on an engine")
    p.add_argument("--sklearn", action="store_true",
                   help="also time scikit-learn's KMeans(lloyd) per iteration")
    args = p.parse_args(argv)
    if args.blas_threads:
        # load every BLAS first: threadpoolctl limits only libraries already loaded
        import scipy.linalg.blas  # noqa: F401
        try:
            import ipem.kernels._c  # noqa: F401
        except ImportError:
            pass
        from threadpoolctl import threadpool_limits
        with threadpool_limits(args.blas_threads):
            return run(args)
    return run(args)


def run(args):

    from ipem.kernels import _numpy
    backends = {"numpy": _numpy}
    try:
        from ipem.kernels import _c
        backends = {"c": _c, "numpy": _numpy}
        isa = _c.get_isa()
    except ImportError as exc:
        print(f"compiled kernels unavailable: {exc}", file=sys.stderr)
        isa = "-"
    dtype = np.dtype(args.dtype)
    rate = gemm_rate(dtype)
    threads = args.blas_threads or "default"
    print(f"N={args.n} D={args.d} K={args.k} (full: K={args.k_full}) {dtype}; "
          f"GEMM {rate / 1e9:.0f} GFLOP/s; C isa={isa}; BLAS threads {threads}; "
          f"median of {args.repeat}")
    n, d = args.n, args.d
    for kind in args.only.split(","):
        k = args.k_full if kind == "full" else args.k
        X, shift, means, prec, lw = make_problem(n, d, k, dtype, full=(kind == "full"))
        floor = kernel_flops(kind, n, d, k) / rate
        results = {}
        for name, mod in backends.items():
            chunk = args.chunk if name == "c" else None
            if kind == "diag":
                def call(mod=mod, chunk=chunk):
                    mod.gmm_diag_step(X, shift, means, prec, lw, chunk_size=chunk)
            elif kind == "full":
                def call(mod=mod, chunk=chunk):
                    mod.gmm_full_step(X, shift, means, prec, lw, chunk_size=chunk)
            elif kind == "topc":
                if not hasattr(mod, "gmm_diag_topc"):
                    continue

                def call(mod=mod, chunk=chunk):
                    mod.gmm_diag_topc(X, shift, means, prec, lw, 5, chunk_size=chunk)
            else:
                labels = np.empty(n, np.int64)
                mindist = np.empty(n)

                def call(mod=mod, chunk=chunk):
                    mod.kmeans_step(X, shift, means, labels, mindist, chunk_size=chunk)
            results[name] = time_call(call, repeat=args.repeat)
        if kind == "kmeans" and args.sklearn:
            results["sklearn/iter"] = sklearn_kmeans_iteration(X, means + shift, args.repeat)
        line = [f"{kind:7s} K={k:<4d} floor {floor:.3f}s"]
        for name, (med, lo, hi) in results.items():
            line.append(f"{name} {med:.3f}s [{lo:.3f}-{hi:.3f}] ({floor / med:.0%} of floor)")
        print("  ".join(line), flush=True)


if __name__ == "__main__":
    main()
