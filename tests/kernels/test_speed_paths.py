"""Tests of the fast paths: worker threads, the fused float32 kernels (zero
skipping, sparse statistics), k-means distance bounds, the k-means++ trial
kernel and the approximate statistics (top-C, min_post).

Every fast path must give the results of the plain path: bit for bit where
the operations are the same (threads, bounds), within the kernels' usual
tolerances against the NumPy reference otherwise.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from threadpoolctl import threadpool_limits

import ipem
from ipem.cluster.kmeans_plusplus import kmeans_plusplus_distributed
from ipem.kernels import _numpy as NPK

from tests.helpers import kernels

BACKENDS = ["c", "numpy"]


def clustered(n, d, k, seed=0, spread=1.0, dtype=np.float32):
    """Frames around k centres (offset from 0), and diag-GMM parameters near them."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, size=(k, d))
    lab = rng.integers(0, k, n)
    X = (centres[lab] + rng.normal(size=(n, d)) * spread + 2.0).astype(dtype)
    shift = X.mean(axis=0, dtype=np.float64)
    means = centres + 2.0 - shift + rng.normal(0, 0.2, (k, d))
    prec = rng.uniform(0.5, 2.0, (k, d)) / spread ** 2
    lw = np.log(rng.dirichlet(np.full(k, 5.0)))
    return X, shift, means, prec, lw


def diag_run(mod, X, shift, means, prec, lw, **kw):
    n, k = X.shape[0], means.shape[0]
    lp = np.full(n, np.nan)
    resp = np.full((n, k), np.nan)
    nk, sx, sxx, ll = mod.gmm_diag_step(X, shift, means, prec, lw, logprob_out=lp,
                                        resp_out=resp, **kw)
    return {"nk": nk, "sx": sx, "sxx": sxx, "loglik": ll, "logprob": lp, "resp": resp}


def assert_same(a, b):
    for key in a:
        assert_array_equal(a[key], b[key], err_msg=key)


def assert_close_stats(a, b, rtol):
    for key in ("nk", "sx", "sxx", "logprob", "resp"):
        scale = max(float(np.max(np.abs(b[key]))), 1e-300)
        err = float(np.max(np.abs(a[key] - b[key])))
        assert err <= rtol * scale, f"{key}: {err:.3g} > {rtol} * {scale:.3g}"
    assert a["loglik"] == pytest.approx(b["loglik"], rel=rtol)


# ---------------------------------------------------------------------------
# worker threads: the result never depends on their number
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["diag", "diag-approx", "full", "kmeans", "kmeans-pp"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_threads_bit_identical(c_isa, kind, dtype):
    """1, 2 and 3 worker threads (groups of frames committed in order) give
    the same bits; 20,000 frames make several groups."""
    n = 20_000 if kind != "full" else 9_000
    X, shift, means, prec, lw = clustered(n, 12, 24, seed=1, spread=3.0, dtype=dtype)
    w = np.random.default_rng(2).uniform(0.0, 2.0, n)
    results = []
    for threads in (1, 2, 3):
        with threadpool_limits(threads):
            if kind.startswith("diag"):
                kw = {"top_c": 3, "min_post": 0.01} if kind == "diag-approx" else {}
                res = diag_run(c_isa, X, shift, means, prec, lw, sample_weight=w, **kw)
            elif kind == "full":
                chol = np.stack([np.diag(np.sqrt(p)) for p in prec[:6]])
                out = c_isa.gmm_full_step(X, shift, means[:6], chol, lw[:6],
                                          sample_weight=w)
                res = dict(zip(("nk", "sx", "sxx", "loglik"), out))
            elif kind == "kmeans":
                lab, md = np.empty(n, np.int64), np.empty(n)
                out = c_isa.kmeans_step(X, shift, means, lab, md, sample_weight=w)
                res = dict(zip(("counts", "sums", "inertia"), out), labels=lab, mindist=md)
            else:
                pots, dist = c_isa.kmeans_pp_trial(X, shift, means[:7],
                                                   np.full(n, 50.0), w)
                res = {"pots": pots, "dist": dist}
        results.append(res)
    for res in results[1:]:
        assert_same(res, results[0])


# ---------------------------------------------------------------------------
# the fused diagonal kernel: zero skipping and sparse statistics
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("spread", [0.3, 3.0, 30.0], ids=["sparse", "mixed", "dense"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_diag_posterior_sparsity_matches_numpy(c_isa, spread, weighted):
    """Posteriors with one non-zero entry per frame (every other block
    skipped), a few (rank-1 updates) and many (the dense tile) all agree
    with the NumPy reference; K=70 leaves a partial block of components."""
    X, shift, means, prec, lw = clustered(3000, 9, 70, seed=3, spread=spread)
    if spread == 3.0:
        prec = prec * np.random.default_rng(4).uniform(0.05, 1.0, (70, 1))
    w = np.random.default_rng(5).uniform(0.2, 2.0, 3000) if weighted else None
    got = diag_run(c_isa, X, shift, means, prec, lw, sample_weight=w)
    ref = diag_run(NPK, X, shift, means, prec, lw, sample_weight=w)
    assert_close_stats(got, ref, 1e-4)
    nonzero = (ref["resp"] > 1e-37).sum(axis=1)  # float32 exp underflows below ~1e-38
    expect = {"sparse": (1, 2), "mixed": (3, 70), "dense": (40, 70)}[
        {0.3: "sparse", 3.0: "mixed", 30.0: "dense"}[spread]]
    assert expect[0] <= np.median(nonzero) <= expect[1]


def test_diag_chunk_sizes_agree():
    """The fused kernel's blocks and groups follow chunk_size: any size gives
    the same statistics up to float32 rounding."""
    mod = kernels("c")
    X, shift, means, prec, lw = clustered(5000, 7, 40, seed=6, spread=2.0)
    ref = diag_run(mod, X, shift, means, prec, lw)
    for chunk in (1, 13, 100, 4096, 100_000):
        assert_close_stats(diag_run(mod, X, shift, means, prec, lw, chunk_size=chunk), ref,
                           1e-5)


# ---------------------------------------------------------------------------
# approximate statistics (top-C, min_post)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", BACKENDS)
def test_approximation_with_every_component_is_exact(name):
    """top_c >= K (and min_post=0) is exact EM, bit for bit; a min_post far
    below every responsibility changes nothing beyond rounding."""
    mod = kernels(name)
    X, shift, means, prec, lw = clustered(2000, 5, 16, seed=7, spread=4.0)
    exact = diag_run(mod, X, shift, means, prec, lw)
    for top_c in (16, 17, 1000):
        assert_same(diag_run(mod, X, shift, means, prec, lw, top_c=top_c), exact)
    tiny = diag_run(mod, X, shift, means, prec, lw, top_c=16, min_post=1e-300)
    assert_close_stats(tiny, exact, 1e-6)


@pytest.mark.parametrize("name", BACKENDS)
def test_approximation_by_hand(name):
    """One frame, responsibilities (0.5, 0.3, 0.15, 0.05): top-2 keeps
    (0.625, 0.375); min_post=0.1 keeps (0.5, 0.3, 0.15) / 0.95; both together
    keep the top 2.  The log-likelihood and resp_out stay exact."""
    mod = kernels(name)
    r = np.array([0.5, 0.3, 0.15, 0.05])
    x = np.array([[1.5]], dtype=np.float64)
    means = np.array([[1.0], [2.0], [0.0], [4.0]])
    prec = np.ones((4, 1))
    # log weights chosen so that the responsibilities of x are exactly r
    lw = np.log(r) + 0.5 * (x[0, 0] - means[:, 0]) ** 2
    lw -= np.log(np.exp(lw).sum())
    for top_c, min_post, keep in ((2, 0.0, [0.625, 0.375, 0, 0]),
                                  (None, 0.1, [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0]),
                                  (2, 0.1, [0.625, 0.375, 0, 0]),
                                  (3, 0.2, [0.625, 0.375, 0, 0])):
        res = diag_run(mod, x, np.zeros(1), means, prec, lw, top_c=top_c, min_post=min_post)
        assert_allclose(res["nk"], keep, rtol=1e-12, atol=1e-15)
        assert_allclose(res["sx"][:, 0], 1.5 * np.array(keep), rtol=1e-12, atol=1e-15)
        assert_allclose(res["resp"][0], r, rtol=1e-12)
        exact = diag_run(mod, x, np.zeros(1), means, prec, lw)
        assert res["loglik"] == exact["loglik"]


@pytest.mark.parametrize("k", [40, 256])
def test_approximation_c_matches_numpy(c_isa, k):
    """With a clear gap between each frame's kept and dropped components, the
    compiled approximation equals the reference (float32 and float64); K=256
    has more blocks of 32 components than top_c (the selection looks among
    the entries above the top_c-th largest block maximum)."""
    for dtype in (np.float32, np.float64):
        X, shift, means, prec, lw = clustered(2000, 6, k, seed=8, spread=2.5, dtype=dtype)
        ref_resp = diag_run(NPK, X, shift, means, prec, lw)["resp"]
        # keep frames whose 3rd and 4th responsibilities differ clearly
        srt = -np.sort(-ref_resp, axis=1)
        ok = (srt[:, 2] > 1.5 * srt[:, 3]) & (srt[:, 2] > 0.02)
        Xk = np.ascontiguousarray(X[ok])
        for top_c, min_post in ((3, 0.0), (3, 0.02)):
            got = diag_run(c_isa, Xk, shift, means, prec, lw, top_c=top_c, min_post=min_post)
            ref = diag_run(NPK, Xk, shift, means, prec, lw, top_c=top_c, min_post=min_post)
            assert_close_stats(got, ref, 1e-4 if dtype == np.float32 else 1e-10)


@pytest.mark.parametrize("name", BACKENDS)
def test_approximate_fit(name):
    """GaussianMixture and UBMTrainer with top_c / min_post: a fit close to the
    exact one; the objective (exact log-likelihood) rises except by rounding.
    The options apply to diag and spherical models only."""
    rng = np.random.default_rng(9)
    centres = rng.normal(0, 4, (12, 5))
    X = centres[rng.integers(0, 12, 6000)] + rng.normal(size=(6000, 5))
    kw = dict(covariance_type="diag", random_state=0, tol=1e-5, max_iter=500, backend=name)
    exact = ipem.GaussianMixture(12, **kw).fit(X)
    approx = ipem.GaussianMixture(12, top_c=2, min_post=0.01, **kw).fit(X)
    assert approx.lower_bound_ == pytest.approx(exact.lower_bound_, abs=2e-3)
    assert np.all(np.diff(approx.lower_bounds_) > -1e-6)
    ubm = ipem.UBMTrainer(8, stage_iter=5, final_iter=10, top_c=2, backend=name,
                          random_state=0).fit(X)
    assert np.all(np.isfinite(ubm.means_)) and ubm.n_iter_ > 0
    with pytest.raises(ValueError, match="covariance_type"):
        ipem.GaussianMixture(3, covariance_type="full", top_c=2, backend=name).fit(X[:300])
    with pytest.raises(ValueError, match="min_post"):
        ipem.GaussianMixture(3, covariance_type="diag", min_post=1.5, backend=name).fit(X[:300])
    with pytest.raises(ValueError, match="top_c"):
        ipem.GaussianMixture(3, covariance_type="diag", top_c=0, backend=name).fit(X[:300])


# ---------------------------------------------------------------------------
# k-means: distance bounds, k-means++ trials
# ---------------------------------------------------------------------------
def lloyd_run(step, X, shift, centres, n_iter, w=None):
    """Plain Lloyd iterations with a step function; returns the per-iteration results."""
    n = X.shape[0]
    labels = np.full(n, -1, np.int64)
    out = []
    for _ in range(n_iter):
        md = np.empty(n)
        counts, sums, inertia, n_full = step(X, shift, centres, labels, md, w)
        out.append({"labels": labels.copy(), "mindist": md, "counts": counts, "sums": sums,
                    "inertia": np.array(inertia), "n_full": n_full})
        centres = centres.copy()
        filled = counts > 0
        centres[filled] = sums[filled] / counts[filled, None]
    return out


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("data", ["blobs", "ties", "offset"])
def test_kmeans_bounds_bit_identical(data, weighted):
    """Lloyd with Hamerly bounds equals the plain step bit for bit at every
    iteration (labels, distances, counts, sums, inertia), and skips frames
    once the centres settle.  "ties": duplicated frames on a lattice, exactly
    equidistant to several centres; "offset": frames 1000 away from the
    shift, where float32 rounding of the distances exceeds the gaps between
    centres (the bounds must allow for it, not skip into another label)."""
    mod = kernels("c")
    rng = np.random.default_rng(10)
    if data == "blobs":
        X, shift, means, _, _ = clustered(12_000, 8, 30, seed=11, spread=1.5)
        centres = X[rng.choice(len(X), 30, replace=False)].astype(np.float64) - shift
    elif data == "offset":
        X = (1000.0 + rng.uniform(0, 1, (12_000, 3))).astype(np.float32)
        shift = np.zeros(3)
        centres = 1000.0 + rng.uniform(0, 1, (6, 3))
    else:
        base = np.zeros((4000, 2), np.float32)
        base[:, 0] = rng.integers(-3, 4, 4000)        # on a lattice: exact ties
        base[:, 1] = rng.integers(-3, 4, 4000)
        X = np.repeat(base, 3, axis=0)
        shift = np.zeros(2)
        centres = np.array([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, -2.0], [0.5, 0.5]])
    w = rng.uniform(0.0, 3.0, len(X)) if weighted else None
    bounds = mod.new_kmeans_bounds(len(X))

    def bounded(X, shift, c, labels, md, w):
        counts, sums, inertia, _, n_full = mod.kmeans_step_bounded(X, shift, c, labels, md,
                                                                   bounds, sample_weight=w)
        return counts, sums, inertia, n_full

    def plain(X, shift, c, labels, md, w):
        counts, sums, inertia = mod.kmeans_step(X, shift, c, labels, md, sample_weight=w)
        return counts, sums, inertia, len(X)

    fast = lloyd_run(bounded, X, shift, centres, 12, w)
    slow = lloyd_run(plain, X, shift, centres, 12, w)
    for it, (a, b) in enumerate(zip(fast, slow)):
        for key in ("labels", "mindist", "counts", "sums", "inertia"):
            assert_array_equal(a[key], b[key], err_msg=f"iteration {it}: {key}")
    if mod.get_isa() == "avx512" and data == "blobs":
        assert fast[-1]["n_full"] < len(X) // 2  # the bounds do skip frames


def test_kmeans_fit_with_and_without_bounds(monkeypatch):
    """KMeans.fit (k-means++ init, empty-cluster relocation) is the same with
    the bounds as when every step compares every frame with every centre."""
    mod = kernels("c")
    rng = np.random.default_rng(12)
    X = np.concatenate([rng.normal(0, 1, (3000, 6)), rng.normal(8, 1, (20, 6))])
    X = X.astype(np.float32)
    fast = ipem.KMeans(40, random_state=0, backend="c", max_iter=50, tol=0).fit(X)
    real = mod.kmeans_step_bounded

    def no_bounds(X, shift, centers, labels, mindist, bounds, chunk_size=None,
                  sample_weight=None):
        bounds["centers"] = None  # forget them: every frame against every centre
        return real(X, shift, centers, labels, mindist, bounds, chunk_size, sample_weight)

    monkeypatch.setattr(mod, "kmeans_step_bounded", no_bounds)
    slow = ipem.KMeans(40, random_state=0, backend="c", max_iter=50, tol=0).fit(X)
    assert_array_equal(fast.cluster_centers_, slow.cluster_centers_)
    assert_array_equal(fast.labels_, slow.labels_)
    assert fast.inertia_ == slow.inertia_ and fast.n_iter_ == slow.n_iter_
    assert [r.objective for r in fast.history_] == [r.objective for r in slow.history_]


def test_kmeans_pp_trial_matches(c_isa):
    """The k-means++ trial kernel: the distances kmeans_step gives as mindist
    (bit for bit with AVX-512, where both are fused kernels), potentials as
    the reference, for 1 to 20 candidates."""
    X, shift, means, _, _ = clustered(3000, 11, 20, seed=13)
    rng = np.random.default_rng(14)
    closest = rng.uniform(0, 200, 3000)
    w = rng.uniform(0, 2, 3000)
    w[::5] = 0.0
    for k in (1, 7, 16, 20):
        for cl, sw in ((None, None), (closest, w)):
            pots, dist = c_isa.kmeans_pp_trial(X, shift, means[:k], cl, sw)
            rpots, rdist = NPK.kmeans_pp_trial(X, shift, means[:k], cl, sw)
            assert_allclose(dist, rdist, rtol=1e-4, atol=1e-4 * float(rdist.max()))
            assert_allclose(pots, rpots, rtol=1e-5)
        lab, md = np.empty(3000, np.int64), np.empty(3000)
        c_isa.kmeans_step(X, shift, means[k - 1:k], lab, md)
        if c_isa.get_isa() == "avx512":  # the same operations as the k-means kernel
            assert_array_equal(dist[:, k - 1], md)
        else:  # the reference's GEMM
            assert_allclose(dist[:, k - 1], md, rtol=1e-4, atol=1e-4 * float(md.max()))


def test_kmeans_plusplus_backends_agree(monkeypatch):
    """k-means++ keeps each trial's distances for the commit of the chosen
    candidate: the same frames as recomputing them, with either backend."""
    from ipem.cluster import kmeans_plusplus as kpp
    X, *_ = clustered(4000, 6, 25, seed=15, spread=1.0)

    def run(name):
        kernels(name)
        data = ipem.LocalController(2).distribute(X)
        try:
            return kmeans_plusplus_distributed(data, 25, np.random.RandomState(3),
                                               backend=name)[1]
        finally:
            data.free()

    chosen = {name: run(name) for name in BACKENDS}
    real_commit = kpp._commit

    def recompute(shard, shift, center, backend, chunk_size, trial=None):
        return real_commit(shard, shift, center, backend, chunk_size)

    monkeypatch.setattr(kpp, "_commit", recompute)
    assert_array_equal(run("c"), chosen["c"])
    assert_array_equal(chosen["c"], chosen["numpy"])
