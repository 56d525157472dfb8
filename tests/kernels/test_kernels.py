"""Tests of the E-step kernels: the compiled ("c") backend against the NumPy
reference, hand-computed cases, chunk-size independence and edge cases.

The C-parametrised tests FAIL when the compiled module is missing, unless the
environment sets IPEM_ALLOW_NO_C=1 (then they are skipped).
"""
import inspect
import math

import numpy as np
import pytest

from ipem.kernels import _numpy as NPK

from tests.helpers import kernels  # c_isa: a fixture of conftest

BACKENDS = ["c", "numpy"]
DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["f32", "f64"]


def tol(dtype):
    return 1e-10 if np.dtype(dtype) == np.float64 else 1e-4


def assert_close(actual, desired, rtol, what="", scale=None):
    """max |a - b| <= rtol * max |b| (relative to the array's scale, or to
    ``scale`` where the values themselves may cancel to ~0)."""
    actual = np.asarray(actual, dtype=np.float64)
    desired = np.asarray(desired, dtype=np.float64)
    assert actual.shape == desired.shape, what
    if desired.size == 0:
        return
    if scale is None:
        scale = float(np.max(np.abs(desired)))
    scale = max(scale, 1e-300)
    err = float(np.max(np.abs(actual - desired)))
    assert err <= rtol * scale, f"{what}: max abs error {err:.3g} > {rtol:g} * {scale:.3g}"


# ---------------------------------------------------------------------------
# problem generators
# ---------------------------------------------------------------------------
def make_data(n, d, dtype, seed=0, offset=3.0):
    rng = np.random.default_rng(seed)
    X = (rng.standard_normal((n, d)) * 1.5 + offset).astype(dtype)
    shift = X.mean(axis=0, dtype=np.float64) if n else np.zeros(d)
    return X, shift


def diag_params(k, d, seed=1):
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((k, d)) * 1.5
    prec = rng.uniform(0.3, 2.0, (k, d))
    lw = np.log(rng.dirichlet(np.ones(k)))
    return means, prec, lw


def full_params(k, d, seed=2):
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((k, d)) * 1.5
    chol = np.empty((k, d, d))
    for j in range(k):
        a = rng.standard_normal((d, d)) * (0.4 / np.sqrt(d))
        chol[j] = np.triu(a) + np.diag(rng.uniform(0.5, 1.5, d))
    lw = np.log(rng.dirichlet(np.ones(k)))
    return means, chol, lw


def run_gmm(mod, kind, X, shift, means, prec, lw, chunk_size=None, resp_dtype=np.float64,
            compute_stats=True, sample_weight=None):
    n, k = X.shape[0], means.shape[0]
    lp = np.full(n, np.nan)
    resp = np.full((n, k), np.nan, dtype=resp_dtype)
    fn = mod.gmm_diag_step if kind == "diag" else mod.gmm_full_step
    nk, sx, sxx, ll = fn(X, shift, means, prec, lw, chunk_size=chunk_size,
                         logprob_out=lp, resp_out=resp, compute_stats=compute_stats,
                         sample_weight=sample_weight)
    return dict(nk=nk, sx=sx, sxx=sxx, loglik=ll, logprob=lp, resp=resp)


def run_kmeans(mod, X, shift, centers, chunk_size=None, sample_weight=None):
    n = X.shape[0]
    labels = np.full(n, -1, dtype=np.int64)
    mindist = np.full(n, np.nan)
    counts, sums, inertia = mod.kmeans_step(X, shift, centers, labels, mindist,
                                            chunk_size=chunk_size, sample_weight=sample_weight)
    return dict(counts=counts, sums=sums, inertia=inertia, labels=labels, mindist=mindist)


def compare_gmm(a, b, rtol):
    for key in ("nk", "sxx", "logprob", "resp"):
        assert_close(a[key], b[key], rtol, key)
    # sum_n r x can cancel to ~0 around the shift: compare on the scale of
    # its terms, bounded by sqrt(nk * sum_n r x^2) (Cauchy-Schwarz)
    sxx = b["sxx"] if b["sxx"].ndim == 2 else np.diagonal(b["sxx"], axis1=1, axis2=2)
    assert_close(a["sx"], b["sx"], rtol, "sx", scale=float(np.sqrt(b["nk"][:, None] * sxx).max()))
    assert a["loglik"] == pytest.approx(b["loglik"], rel=rtol)
    # per-frame log-likelihoods: also element-wise
    np.testing.assert_allclose(a["logprob"], b["logprob"], rtol=rtol, atol=rtol)


def kmeans_gap(X, shift, centers):
    """Distance gap between the best and second-best centre, in float64."""
    xc = X.astype(np.float64) - shift
    d2 = ((xc[:, None, :] - centers[None]) ** 2).sum(-1)
    part = np.sort(d2, axis=1)
    return part[:, 1] - part[:, 0] if centers.shape[0] > 1 else np.full(len(X), np.inf)


def compare_kmeans(a, b, X, shift, centers, dtype):
    rtol = tol(dtype)
    if np.dtype(dtype) == np.float64:
        np.testing.assert_array_equal(a["labels"], b["labels"])
    else:
        # labels exactly, except genuine near-ties in float32
        scale = float(((X.astype(np.float64) - shift) ** 2).sum(axis=1).max())
        scale += float((centers ** 2).sum(axis=1).max())
        near_tie = kmeans_gap(X, shift, centers) <= 1e-4 * scale
        diff = a["labels"] != b["labels"]
        assert not np.any(diff & ~near_tie), f"{int(diff.sum())} labels differ"
    if np.array_equal(a["labels"], b["labels"]):
        np.testing.assert_array_equal(a["counts"], b["counts"])
        xabs = np.abs(X.astype(np.float64) - shift).sum(axis=0).max()
        assert_close(a["sums"], b["sums"], rtol, "sums", scale=float(xabs))
    assert_close(a["mindist"], b["mindist"], rtol, "mindist")
    assert a["inertia"] == pytest.approx(b["inertia"], rel=rtol)


# ---------------------------------------------------------------------------
# C vs NumPy on the same inputs
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("chunk_size", [None, 1, 37, 256], ids=lambda c: f"chunk{c}")
def test_diag_c_matches_numpy(c_isa, dtype, chunk_size):
    X, shift = make_data(700, 13, dtype)
    means, prec, lw = diag_params(21, 13)
    a = run_gmm(c_isa, "diag", X, shift, means, prec, lw, chunk_size)
    b = run_gmm(NPK, "diag", X, shift, means, prec, lw, chunk_size)
    compare_gmm(a, b, tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("chunk_size", [None, 1, 37, 256], ids=lambda c: f"chunk{c}")
def test_full_c_matches_numpy(c_isa, dtype, chunk_size):
    X, shift = make_data(500, 11, dtype)
    means, chol, lw = full_params(9, 11)
    a = run_gmm(c_isa, "full", X, shift, means, chol, lw, chunk_size)
    b = run_gmm(NPK, "full", X, shift, means, chol, lw, chunk_size)
    compare_gmm(a, b, tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("chunk_size", [None, 1, 37, 256], ids=lambda c: f"chunk{c}")
def test_kmeans_c_matches_numpy(c_isa, dtype, chunk_size):
    X, shift = make_data(900, 10, dtype)
    rng = np.random.default_rng(5)
    centers = (X[rng.choice(900, 35, replace=False)].astype(np.float64) - shift)
    centers += rng.standard_normal(centers.shape) * 0.1
    a = run_kmeans(c_isa, X, shift, centers, chunk_size)
    b = run_kmeans(NPK, X, shift, centers, chunk_size)
    compare_kmeans(a, b, X, shift, centers, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape", [(300, 60, 256), (200, 39, 64), (150, 1, 3), (64, 17, 1)],
                         ids=lambda s: "n{}d{}k{}".format(*s))
def test_diag_c_matches_numpy_shapes(dtype, shape):
    """Sizes that exercise vector tails (K, D not multiples of the vector width)."""
    mod = kernels("c")
    n, d, k = shape
    X, shift = make_data(n, d, dtype, seed=d)
    means, prec, lw = diag_params(k, d, seed=k)
    compare_gmm(run_gmm(mod, "diag", X, shift, means, prec, lw),
                run_gmm(NPK, "diag", X, shift, means, prec, lw), tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape", [(200, 24, 40), (150, 1, 3), (64, 9, 1), (100, 60, 5)],
                         ids=lambda s: "n{}d{}k{}".format(*s))
def test_full_c_matches_numpy_shapes(dtype, shape):
    mod = kernels("c")
    n, d, k = shape
    X, shift = make_data(n, d, dtype, seed=d)
    means, chol, lw = full_params(k, d, seed=k)
    compare_gmm(run_gmm(mod, "full", X, shift, means, chol, lw),
                run_gmm(NPK, "full", X, shift, means, chol, lw), tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape", [(300, 60, 256), (200, 3, 17), (100, 1, 1), (50, 7, 70)],
                         ids=lambda s: "n{}d{}k{}".format(*s))
def test_kmeans_c_matches_numpy_shapes(dtype, shape):
    mod = kernels("c")
    n, d, k = shape
    X, shift = make_data(n, d, dtype, seed=d)
    centers = np.random.default_rng(k).standard_normal((k, d)) * 1.5
    compare_kmeans(run_kmeans(mod, X, shift, centers), run_kmeans(NPK, X, shift, centers),
                   X, shift, centers, dtype)


@pytest.mark.parametrize("kind", ["diag", "full"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_gmm_resp_float32_and_partial_outputs(kind, dtype):
    """resp_out may be float32; outputs are optional; compute_stats=False."""
    mod = kernels("c")
    X, shift = make_data(300, 6, dtype)
    means, prec, lw = (diag_params if kind == "diag" else full_params)(5, 6)
    ref = run_gmm(NPK, kind, X, shift, means, prec, lw)
    got = run_gmm(mod, kind, X, shift, means, prec, lw, resp_dtype=np.float32)
    assert got["resp"].dtype == np.float32
    assert_close(got["resp"], ref["resp"], 1e-4 if dtype == np.float32 else 1e-7, "resp32")
    fn = mod.gmm_diag_step if kind == "diag" else mod.gmm_full_step
    for kwargs in ({}, {"compute_stats": False}):
        nk, sx, sxx, ll = fn(X, shift, means, prec, lw, **kwargs)
        assert ll == pytest.approx(ref["loglik"], rel=tol(dtype))
        if kwargs:
            assert not nk.any() and not sx.any() and not sxx.any()
        else:
            assert_close(nk, ref["nk"], tol(dtype), "nk")
    lp = np.empty(len(X))
    nk, sx, sxx, ll = fn(X, shift, means, prec, lw, logprob_out=lp, compute_stats=False)
    np.testing.assert_allclose(lp, ref["logprob"], rtol=tol(dtype))


# ---------------------------------------------------------------------------
# chunk-size independence (both backends)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("kind", ["diag", "full", "kmeans"])
def test_chunk_size_independence(name, dtype, kind):
    mod = kernels(name)
    X, shift = make_data(333, 8, dtype, seed=3)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    results = []
    for chunk in (None, 1, 10, 64, 333, 5000):
        if kind == "kmeans":
            centers = np.random.default_rng(4).standard_normal((12, 8))
            results.append(run_kmeans(mod, X, shift, centers, chunk))
        else:
            params = (diag_params if kind == "diag" else full_params)(7, 8)
            results.append(run_gmm(mod, kind, X, shift, *params, chunk_size=chunk))
    for res in results[1:]:
        for key, val in res.items():
            if key == "labels":
                np.testing.assert_array_equal(val, results[0][key])
            elif key in ("loglik", "inertia"):
                assert val == pytest.approx(results[0][key], rel=rtol)
            elif key in ("sx", "sums"):
                scale = np.abs(X.astype(np.float64) - shift).sum(axis=0).max()
                assert_close(val, results[0][key], rtol, key, scale=float(scale))
            else:
                assert_close(val, results[0][key], rtol, key)


# ---------------------------------------------------------------------------
# hand-computed cases
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shift", [0.0, 1.0])
def test_diag_1d_two_components_by_hand(name, dtype, shift):
    mod = kernels(name)
    x = [0.0, 1.0, 3.0]
    mu, var, w = [0.0, 2.0], [1.0, 4.0], [0.3, 0.7]
    # log w_j N(x | mu_j, var_j), written out
    logp = [[math.log(w[j]) - 0.5 * math.log(2 * math.pi * var[j])
             - 0.5 * (xi - mu[j]) ** 2 / var[j] for j in range(2)] for xi in x]
    norm = [math.log(math.exp(a) + math.exp(b)) for a, b in logp]
    resp = [[math.exp(logp[i][j] - norm[i]) for j in range(2)] for i in range(3)]
    nk = [sum(resp[i][j] for i in range(3)) for j in range(2)]
    sx = [sum(resp[i][j] * (x[i] - shift) for i in range(3)) for j in range(2)]
    sxx = [sum(resp[i][j] * (x[i] - shift) ** 2 for i in range(3)) for j in range(2)]

    X = np.array(x, dtype=dtype)[:, None]
    means = np.array(mu)[:, None] - shift          # shifted coordinates
    prec = 1.0 / np.array(var)[:, None]
    res = run_gmm(mod, "diag", X, np.array([shift]), means, prec, np.log(w))
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(res["logprob"], norm, rtol=rtol)
    np.testing.assert_allclose(res["resp"], resp, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(res["nk"], nk, rtol=rtol)
    np.testing.assert_allclose(res["sx"][:, 0], sx, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(res["sxx"][:, 0], sxx, rtol=rtol)
    assert res["loglik"] == pytest.approx(sum(norm), rel=rtol)

    # the same model as a full-covariance GMM (1x1 Cholesky factors 1/sigma)
    chol = (1.0 / np.sqrt(np.array(var)))[:, None, None]
    full = run_gmm(mod, "full", X, np.array([shift]), means, chol, np.log(w))
    np.testing.assert_allclose(full["logprob"], norm, rtol=rtol)
    np.testing.assert_allclose(full["sxx"][:, 0, 0], sxx, rtol=rtol)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_full_2d_against_explicit_covariance(name, dtype):
    """log w N(x | mu, Sigma) from the explicit inverse and determinant."""
    mod = kernels(name)
    X = np.array([[0.5, -1.0], [2.0, 0.3], [-1.0, -2.0], [0.0, 0.0]], dtype=dtype)
    shift = np.array([0.25, -0.5])
    mu = np.array([[0.0, 0.0], [1.0, -1.0]])
    cov = np.array([[[2.0, 0.6], [0.6, 1.0]], [[0.5, -0.2], [-0.2, 0.8]]])
    w = np.array([0.4, 0.6])
    prec = np.linalg.inv(cov)
    # upper-triangular U with U U^T = prec (scikit-learn's convention)
    chol = np.array([np.linalg.inv(np.linalg.cholesky(c)).T for c in cov])
    np.testing.assert_allclose(chol @ chol.transpose(0, 2, 1), prec, atol=1e-12)
    xs = X.astype(np.float64)
    logp = np.empty((4, 2))
    for j in range(2):
        diff = xs - mu[j]
        maha = np.einsum("ni,ij,nj->n", diff, prec[j], diff)
        logp[:, j] = (np.log(w[j]) - np.log(2 * np.pi) - 0.5 * np.log(np.linalg.det(cov[j]))
                      - 0.5 * maha)
    norm = np.logaddexp(logp[:, 0], logp[:, 1])
    resp = np.exp(logp - norm[:, None])
    xc = xs - shift
    res = run_gmm(mod, "full", X, shift, mu - shift, chol, np.log(w))
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(res["logprob"], norm, rtol=rtol)
    np.testing.assert_allclose(res["resp"], resp, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(res["sx"], resp.T @ xc, rtol=rtol, atol=rtol)
    sxx = np.einsum("nk,ni,nj->kij", resp, xc, xc)
    np.testing.assert_allclose(res["sxx"], sxx, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_kmeans_by_hand_with_tie(name, dtype):
    mod = kernels(name)
    X = np.array([[0.0], [2.0], [5.0], [1.0]], dtype=dtype)
    centers = np.array([[1.0], [3.0]])
    res = run_kmeans(mod, X, np.zeros(1), centers)
    # x=2 is exactly between the centres: the lowest index wins, as np.argmin
    np.testing.assert_array_equal(res["labels"], [0, 0, 1, 0])
    np.testing.assert_array_equal(res["mindist"], [1.0, 1.0, 4.0, 0.0])
    np.testing.assert_array_equal(res["counts"], [3.0, 1.0])
    np.testing.assert_array_equal(res["sums"], [[3.0], [5.0]])
    assert res["inertia"] == 6.0
    # with a shift: parameters and sums are in shifted coordinates
    res = run_kmeans(mod, X, np.array([1.0]), centers - 1.0)
    np.testing.assert_array_equal(res["labels"], [0, 0, 1, 0])
    np.testing.assert_array_equal(res["sums"], [[0.0], [4.0]])


# ---------------------------------------------------------------------------
# float32 with a large offset: the shift keeps variances meaningful
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("kind", ["diag", "full"])
def test_float32_large_offset_variance(name, kind):
    mod = kernels(name)
    rng = np.random.default_rng(7)
    x64 = 1e4 + rng.standard_normal((20000, 3)) * np.array([1.0, 0.5, 2.0])
    X = x64.astype(np.float32)
    truth = X.astype(np.float64).var(axis=0)       # float64 truth of the stored data
    shift = X.astype(np.float64).mean(axis=0)
    means = np.zeros((1, 3))
    if kind == "diag":
        prec = np.ones((1, 3))
    else:
        prec = np.eye(3)[None]
    fn = mod.gmm_diag_step if kind == "diag" else mod.gmm_full_step
    nk, sx, sxx, _ = fn(X, shift, means, prec, np.zeros(1))
    sxx_diag = sxx[0] if kind == "diag" else np.diagonal(sxx[0])
    var = sxx_diag / nk[0] - (sx[0] / nk[0]) ** 2
    assert np.all(var > 0)
    np.testing.assert_allclose(var, truth, rtol=1e-3)


# ---------------------------------------------------------------------------
# edge cases
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_single_component(name, dtype):
    mod = kernels(name)
    X, _ = make_data(50, 4, dtype)
    shift = np.full(4, 2.0)
    means, prec, _ = diag_params(1, 4)
    res = run_gmm(mod, "diag", X, shift, means, prec, np.zeros(1))
    np.testing.assert_allclose(res["resp"], 1.0, rtol=1e-6)
    assert res["nk"][0] == pytest.approx(50, rel=1e-6)
    xc = X.astype(np.float64) - shift
    expect = (-0.5 * (((xc - means[0]) ** 2) * prec[0]).sum(1)
              + 0.5 * np.log(prec[0]).sum() - 2 * np.log(2 * np.pi))
    np.testing.assert_allclose(res["logprob"], expect, rtol=tol(dtype) * 10)
    assert_close(res["sx"][0], xc.sum(0), 1e-5, "sx")
    chol = np.sqrt(prec)[:, :, None] * np.eye(4)[None]
    full = run_gmm(mod, "full", X, shift, means, chol, np.zeros(1))
    np.testing.assert_allclose(full["logprob"], expect, rtol=tol(dtype) * 10)
    km = run_kmeans(mod, X, shift, means)
    assert not km["labels"].any() and km["counts"][0] == 50


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_fewer_frames_than_chunk(name, dtype):
    mod = kernels(name)
    X, shift = make_data(3, 5, dtype)
    means, prec, lw = diag_params(4, 5)
    small = run_gmm(mod, "diag", X, shift, means, prec, lw, chunk_size=4096)
    ref = run_gmm(NPK, "diag", X, shift, means, prec, lw, chunk_size=1)
    compare_gmm(small, ref, tol(dtype))


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_empty_shard(name, dtype):
    mod = kernels(name)
    X = np.empty((0, 5), dtype=dtype)
    shift = np.zeros(5)
    means, prec, lw = diag_params(3, 5)
    for kind, params in (("diag", (means, prec, lw)), ("full", full_params(3, 5))):
        res = run_gmm(mod, kind, X, shift, *params)
        assert res["loglik"] == 0.0
        assert res["nk"].shape == (3,) and not res["nk"].any()
        assert res["sx"].shape == (3, 5) and not res["sx"].any()
        assert not res["sxx"].any()
        assert res["sxx"].shape == ((3, 5) if kind == "diag" else (3, 5, 5))
    km = run_kmeans(mod, X, shift, means)
    assert km["inertia"] == 0.0 and not km["counts"].any() and not km["sums"].any()


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_zero_weight_component(name, dtype):
    """A component with log-weight -inf gets zero responsibility, no NaN."""
    mod = kernels(name)
    X, shift = make_data(100, 3, dtype)
    means, prec, lw = diag_params(4, 3)
    lw[2] = -np.inf
    res = run_gmm(mod, "diag", X, shift, means, prec, lw)
    assert np.all(np.isfinite(res["logprob"])) and np.all(np.isfinite(res["sxx"]))
    assert not res["resp"][:, 2].any() and res["nk"][2] == 0.0
    compare_gmm(res, run_gmm(NPK, "diag", X, shift, means, prec, lw), tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_c_non_contiguous_inputs(dtype):
    """A row slice, a column slice and a Fortran-ordered X give the same results."""
    mod = kernels("c")
    big, _ = make_data(400, 12, dtype)
    means, prec, lw = diag_params(5, 6)
    for X in (big[::2, 3:9], np.asfortranarray(big[:, :6]), big[100:300, :6]):
        shift = X.mean(axis=0, dtype=np.float64)
        compare_gmm(run_gmm(mod, "diag", X, shift, means, prec, lw),
                    run_gmm(NPK, "diag", X, shift, means, prec, lw), tol(dtype))
        compare_kmeans(run_kmeans(mod, X, shift, means), run_kmeans(NPK, X, shift, means),
                       X, shift, means, dtype)


def test_c_rejects_bad_outputs():
    mod = kernels("c")
    X, shift = make_data(20, 3, np.float32)
    means, prec, lw = diag_params(2, 3)
    with pytest.raises(TypeError):
        mod.kmeans_step(X, shift, means, np.empty(20, np.int32), np.empty(20))
    with pytest.raises(ValueError):
        mod.kmeans_step(X, shift, means, np.empty(19, np.int64), np.empty(20))
    with pytest.raises(ValueError):
        mod.gmm_diag_step(X, shift, means, prec, lw, resp_out=np.empty((2, 20)).T)
    with pytest.raises(TypeError):
        mod.gmm_diag_step(X.astype(np.int64), shift, means, prec, lw)
    with pytest.raises(ValueError):
        mod.gmm_diag_step(X, shift, means[:, :2], prec, lw)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_c_vectorised_exp(c_isa, dtype):
    lib, ffi = c_isa.lib, c_isa.ffi
    x = np.concatenate([np.linspace(-120, 80, 20001), [0.0, -0.0, -np.inf]]).astype(dtype)
    if dtype == np.float64:
        x = np.concatenate([x, np.linspace(-745, 700, 5001)])
    out = np.empty_like(x)
    fn = lib.ipem_vexp_f32 if dtype == np.float32 else lib.ipem_vexp_f64
    ctype = "float *" if dtype == np.float32 else "double *"
    fn(len(x), ffi.cast(ctype, x.ctypes.data), ffi.cast(ctype, out.ctypes.data))
    ref = np.exp(x.astype(np.longdouble))
    normal = ref >= np.finfo(dtype).tiny
    rel = np.abs((out[normal] - ref[normal]) / ref[normal])
    assert rel.max() <= (2e-7 if dtype == np.float32 else 1e-15)
    # below the normal range: flushed to zero or a denormal, never more
    assert np.all(out[~normal] <= np.finfo(dtype).tiny)
    assert out[x == -np.inf][0] == 0.0


# ---------------------------------------------------------------------------
# top-C selection (UBM scoring)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("top_c", [1, 5, 40])
@pytest.mark.parametrize("chunk_size", [None, 7], ids=lambda c: f"chunk{c}")
def test_topc_c_matches_numpy(c_isa, dtype, top_c, chunk_size):
    X, shift = make_data(400, 9, dtype)
    means, prec, lw = diag_params(40, 9)
    ia, la = c_isa.gmm_diag_topc(X, shift, means, prec, lw, top_c, chunk_size=chunk_size)
    ib, lb = NPK.gmm_diag_topc(X, shift, means, prec, lw, top_c, chunk_size=chunk_size)
    np.testing.assert_allclose(la, lb, rtol=tol(dtype))
    if dtype == np.float64:
        np.testing.assert_array_equal(ia, ib)
    else:
        # the same components in the same order, except float32 near-ties
        lp = NPK._diag_log_prob(X.astype(np.float64) - shift, means, prec, lw)
        va = np.take_along_axis(lp, ia, axis=1)
        vb = np.take_along_axis(lp, ib, axis=1)
        np.testing.assert_allclose(va, vb, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_topc_ties_order_and_exact_limit(name, dtype):
    """Exact ties go to the lower index; top_c = K gives the exact log-likelihood."""
    mod = kernels(name)
    rng = np.random.default_rng(2)
    k, d = 12, 2
    m = rng.normal(size=(k, d))
    m[7] = m[3]
    m[9] = m[3]
    prec = np.ones((k, d))
    lw = np.full(k, -np.log(k))
    X = np.concatenate([rng.normal(size=(60, d)), np.repeat(m[[3]], 5, axis=0)]).astype(dtype)
    shift = np.zeros(d)
    idx, _ = mod.gmm_diag_topc(X[-5:], shift, m, prec, lw, 2)
    np.testing.assert_array_equal(idx, np.tile([3, 7], (5, 1)))
    idx, _ = mod.gmm_diag_topc(X[-5:], shift, m, prec, lw, 4)
    np.testing.assert_array_equal(idx[:, :3], np.tile([3, 7, 9], (5, 1)))
    exact = np.empty(len(X))
    mod.gmm_diag_step(X, shift, m, prec, lw, logprob_out=exact, compute_stats=False)
    idx, full = mod.gmm_diag_topc(X, shift, m, prec, lw, k)
    np.testing.assert_allclose(full, exact, rtol=1e-12 if dtype == np.float64 else 1e-5)
    assert sorted(idx[0]) == list(range(k))
    with pytest.raises(ValueError, match="top_c"):
        mod.gmm_diag_topc(X, shift, m, prec, lw, k + 1)


@pytest.mark.parametrize("name", BACKENDS)
def test_topc_empty_shard_and_outputs(name):
    mod = kernels(name)
    means, prec, lw = diag_params(6, 3)
    idx, lp = mod.gmm_diag_topc(np.empty((0, 3), np.float32), np.zeros(3), means, prec, lw, 2)
    assert idx.shape == (0, 2) and lp.shape == (0,)
    X, shift = make_data(30, 3, np.float32)
    index_out = np.empty((30, 2), np.int64)
    logprob_out = np.empty(30)
    got = mod.gmm_diag_topc(X, shift, means, prec, lw, 2, index_out=index_out,
                            logprob_out=logprob_out)
    assert got[0] is index_out and got[1] is logprob_out


# ---------------------------------------------------------------------------
# per-frame sample weights
# ---------------------------------------------------------------------------
WEIGHTED_KINDS = ["kmeans", "diag", "full"]
WEIGHT_N, WEIGHT_D, WEIGHT_K = 700, 7, 6


def weighted_problem(kind, dtype, n=WEIGHT_N, d=WEIGHT_D, k=WEIGHT_K, seed=11):
    """(X, shift, params) for ``kind``.  For k-means the frames lie in
    well-separated blobs around the centres, so that no frame is near a tie
    and labels are exact in float32 too."""
    if kind == "kmeans":
        rng = np.random.default_rng(seed)
        centers = rng.standard_normal((k, d))
        centers[:, 0] += 6.0 * np.arange(k)          # centres >= 6 apart
        lab = rng.integers(0, k, n)
        x64 = centers[lab] + rng.standard_normal((n, d)) * 0.5 + 3.0
        X = x64.astype(dtype)
        shift = X.mean(axis=0, dtype=np.float64)
        return X, shift, (centers + 3.0 - shift,)
    X, shift = make_data(n, d, dtype, seed=seed)
    params = (diag_params if kind == "diag" else full_params)(k, d, seed=seed + 1)
    return X, shift, params


def run_kind(mod, kind, X, shift, params, chunk_size=None, sample_weight=None):
    if kind == "kmeans":
        return run_kmeans(mod, X, shift, *params, chunk_size=chunk_size,
                          sample_weight=sample_weight)
    return run_gmm(mod, kind, X, shift, *params, chunk_size=chunk_size,
                   sample_weight=sample_weight)


PER_FRAME = {"kmeans": ("labels", "mindist"), "diag": ("logprob", "resp"),
             "full": ("logprob", "resp")}
TOTALS = {"kmeans": ("counts", "sums", "inertia"), "diag": ("nk", "sx", "sxx", "loglik"),
          "full": ("nk", "sx", "sxx", "loglik")}


def reference_weighted(kind, X, shift, params, w):
    """Weighted statistics computed directly in float64, with no kernel code:
    log-densities from (x - mu), log-sum-exp by np.logaddexp.reduce, and the
    frame weights applied explicitly to every summand."""
    xc = X.astype(np.float64) - shift
    n, d = xc.shape
    w = np.asarray(w, dtype=np.float64)
    if kind == "kmeans":
        (centers,) = params
        d2 = ((xc[:, None, :] - centers[None]) ** 2).sum(axis=-1)
        labels = d2.argmin(axis=1)
        mindist = d2[np.arange(n), labels]
        counts = np.zeros(len(centers))
        sums = np.zeros(centers.shape)
        for i in range(n):
            counts[labels[i]] += w[i]
            sums[labels[i]] += w[i] * xc[i]
        return dict(counts=counts, sums=sums, inertia=float(np.sum(w * mindist)),
                    labels=labels, mindist=mindist)
    means, prec, lw = params
    if kind == "diag":
        lp = (lw - 0.5 * d * np.log(2 * np.pi) + 0.5 * np.log(prec).sum(axis=1)
              - 0.5 * (((xc[:, None, :] - means[None]) ** 2) * prec[None]).sum(axis=-1))
    else:
        y = np.einsum("nkd,kde->nke", xc[:, None, :] - means[None], prec)
        log_det = np.log(np.diagonal(prec, axis1=1, axis2=2)).sum(axis=1)
        lp = lw - 0.5 * d * np.log(2 * np.pi) + log_det - 0.5 * (y ** 2).sum(axis=-1)
    norm = np.logaddexp.reduce(lp, axis=1)
    resp = np.exp(lp - norm[:, None])
    wr = resp * w[:, None]
    if kind == "diag":
        sxx = wr.T @ (xc * xc)
    else:
        sxx = np.einsum("nk,ni,nj->kij", wr, xc, xc)
    return dict(nk=wr.sum(axis=0), sx=wr.T @ xc, sxx=sxx, loglik=float(np.sum(w * norm)),
                logprob=norm, resp=resp)


def compare_weighted(kind, got, ref, rtol, X, shift, w):
    """Weighted results against a reference (another run or the float64 one)."""
    if kind == "kmeans":
        np.testing.assert_array_equal(got["labels"], ref["labels"])
        np.testing.assert_allclose(got["counts"], ref["counts"], rtol=rtol)
        xabs = (np.abs(X.astype(np.float64) - shift) * w[:, None]).sum(axis=0).max()
        assert_close(got["sums"], ref["sums"], rtol, "sums", scale=float(xabs))
        assert_close(got["mindist"], ref["mindist"], rtol, "mindist")
        assert got["inertia"] == pytest.approx(ref["inertia"], rel=rtol)
    else:
        compare_gmm(got, ref, rtol)


def frame_weights(n, seed=0, zeros=True):
    """Random float weights spanning 4 orders of magnitude, some exactly 0."""
    rng = np.random.default_rng(seed)
    w = rng.exponential(1.0, n) * 10.0 ** rng.uniform(-2, 2, n)
    if zeros:
        w[rng.choice(n, n // 10, replace=False)] = 0.0
    return w


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("kind", WEIGHTED_KINDS)
@pytest.mark.parametrize("chunk_size", [None, 1, 37, 256], ids=lambda c: f"chunk{c}")
def test_sample_weight_matches_float64_reference(name, dtype, kind, chunk_size):
    """Random float weights (crossing chunk boundaries) against a direct
    float64 computation; per-frame outputs are those of the unweighted call."""
    mod = kernels(name)
    X, shift, params = weighted_problem(kind, dtype)
    w = frame_weights(len(X), seed=chunk_size or 0)
    got = run_kind(mod, kind, X, shift, params, chunk_size, sample_weight=w)
    compare_weighted(kind, got, reference_weighted(kind, X, shift, params, w), tol(dtype),
                     X, shift, w)
    plain = run_kind(mod, kind, X, shift, params, chunk_size)
    for key in PER_FRAME[kind]:
        np.testing.assert_array_equal(got[key], plain[key], err_msg=key)
    if kind != "kmeans":
        # the weighted total log-likelihood does not need the statistics
        fn = mod.gmm_diag_step if kind == "diag" else mod.gmm_full_step
        nk, _, _, ll = fn(X, shift, *params, chunk_size=chunk_size, compute_stats=False,
                          sample_weight=w)
        assert ll == pytest.approx(got["loglik"], rel=1e-12) and not nk.any()


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("kind", WEIGHTED_KINDS)
def test_integer_sample_weight_equals_repeated_frames(name, dtype, kind):
    """Weight m (an integer) gives the statistics of the frame repeated m times."""
    mod = kernels(name)
    X, shift, params = weighted_problem(kind, dtype, n=300)
    w = np.random.default_rng(3).integers(0, 4, len(X))    # 0, 1, 2 or 3
    rep = np.repeat(X, w, axis=0)
    for chunk in (None, 1, 7, 64):
        got = run_kind(mod, kind, X, shift, params, chunk, sample_weight=w.astype(np.float64))
        ref = run_kind(mod, kind, rep, shift, params, chunk)
        # the repeated run's per-frame outputs are the weighted run's, repeated
        for key in PER_FRAME[kind]:
            expect = np.repeat(got[key], w, axis=0)
            if key == "labels":
                np.testing.assert_array_equal(ref[key], expect)
            else:
                np.testing.assert_allclose(ref[key], expect, rtol=tol(dtype), atol=tol(dtype))
            ref[key] = got[key]
        compare_weighted(kind, got, ref, tol(dtype), X, shift, w.astype(np.float64))


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("kind", WEIGHTED_KINDS)
def test_sample_weight_none_equals_ones(name, dtype, kind):
    """All-ones weights (any array-like) reproduce the unweighted kernel bit for bit."""
    mod = kernels(name)
    X, shift, params = weighted_problem(kind, dtype, n=200)
    n = len(X)
    for chunk in (None, 1, 64):
        plain = run_kind(mod, kind, X, shift, params, chunk)
        for ones in (np.ones(n), np.ones(n, dtype=np.int64), [1.0] * n):
            got = run_kind(mod, kind, X, shift, params, chunk, sample_weight=ones)
            for key, val in plain.items():
                np.testing.assert_array_equal(got[key], val, err_msg=key)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("kind", WEIGHTED_KINDS)
def test_zero_sample_weight_drops_frames(name, dtype, kind):
    """Weight 0 removes a frame, even one holding NaN or inf; all-zero
    weights give zero statistics."""
    mod = kernels(name)
    X, shift, params = weighted_problem(kind, dtype, n=300)
    w = np.random.default_rng(4).uniform(0.5, 2.0, len(X))
    dropped = np.zeros(len(X), dtype=bool)
    dropped[[0, 1, 2, 50, 51, 63, 64, 65, 200, 299]] = True      # runs across chunks
    w[dropped] = 0.0
    bad = X.copy()
    bad[0, 0] = np.nan
    bad[51] = np.inf
    bad[64, -1] = -np.inf
    bad[299] = np.nan
    for chunk in (None, 1, 64):
        ref = run_kind(mod, kind, X[~dropped], shift, params, chunk,
                       sample_weight=w[~dropped])
        for data in (X, bad):
            with np.errstate(invalid="ignore", over="ignore"):
                got = run_kind(mod, kind, data, shift, params, chunk, sample_weight=w)
            for key in TOTALS[kind]:
                assert np.all(np.isfinite(got[key])), key
            if kind == "kmeans":
                got = dict(got, labels=got["labels"][~dropped], mindist=got["mindist"][~dropped])
            else:
                got = dict(got, logprob=got["logprob"][~dropped], resp=got["resp"][~dropped])
            compare_weighted(kind, got, ref, tol(dtype), X[~dropped], shift, w[~dropped])
    zero = run_kind(mod, kind, X, shift, params, sample_weight=np.zeros(len(X)))
    for key in TOTALS[kind]:
        assert not np.any(zero[key]), key


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("kind", WEIGHTED_KINDS)
def test_bad_sample_weight_raises(name, kind):
    mod = kernels(name)
    X, shift, params = weighted_problem(kind, np.float32, n=20)
    good = np.ones(20)
    bad = {"short": good[:-1], "column": good[:, None], "scalar": np.float64(1.0),
           "negative": np.where(np.arange(20) == 7, -1e-3, 1.0),
           "nan": np.where(np.arange(20) == 3, np.nan, 1.0),
           "inf": np.where(np.arange(20) == 19, np.inf, 1.0),
           "text": np.array(["a"] * 20)}
    for why, w in bad.items():
        with pytest.raises(ValueError, match="sample_weight"):
            run_kind(mod, kind, X, shift, params, sample_weight=w)
    # ... and the same shard with the good weights runs
    run_kind(mod, kind, X, shift, params, sample_weight=good)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("kind", WEIGHTED_KINDS)
@pytest.mark.parametrize("chunk_size", [None, 1, 37, 256], ids=lambda c: f"chunk{c}")
def test_sample_weight_c_matches_numpy(c_isa, dtype, kind, chunk_size):
    X, shift, params = weighted_problem(kind, dtype)
    w = frame_weights(len(X), seed=5)
    a = run_kind(c_isa, kind, X, shift, params, chunk_size, sample_weight=w)
    b = run_kind(NPK, kind, X, shift, params, chunk_size, sample_weight=w)
    compare_weighted(kind, a, b, tol(dtype), X, shift, w)


def test_isa_table_is_the_c_table():
    """Which level has which kernel is one table (in ipem_kernels.c), read by _c."""
    mod = kernels("c")
    table = mod.isa_table()
    assert set(table) == {(k, dt) for k in ("kmeans", "kmeans_bounded", "kmeans_pp", "gmm_diag",
                                            "gmm_diag_topc", "gmm_full")
                          for dt in ("float32", "float64")}
    assert table[("kmeans_bounded", "float32")] == {"base": None, "avx2": None, "avx512": "fused"}
    assert table[("kmeans_pp", "float64")] == dict.fromkeys(mod.ISA_NAMES)
    assert table[("gmm_diag", "float32")]["avx512"] == "fused"
    assert table[("gmm_full", "float32")] == dict.fromkeys(mod.ISA_NAMES, "blas")
    assert mod.implementation("gmm_diag", np.float32) == table[("gmm_diag", "float32")][
        mod.get_isa()]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_bounded_kmeans_follows_the_isa_table(c_isa, dtype):
    """Bounds are kept only where the table has a compiled bounded step."""
    X, shift = make_data(300, 5, dtype)
    means, _, _ = diag_params(4, 5)
    labels, mindist = np.full(300, -1, np.int64), np.empty(300)
    bounds = c_isa.new_kmeans_bounds(300)
    *_, n_full = c_isa.kmeans_step_bounded(X, shift, means, labels, mindist, bounds)
    compiled = c_isa.implementation("kmeans_bounded", dtype) is not None
    assert (bounds["centers"] is not None) == compiled
    assert n_full == 300


def test_backends_have_the_same_signatures():
    mod = kernels("c")
    for fn in ("kmeans_step", "gmm_diag_step", "gmm_full_step", "gmm_diag_topc"):
        assert inspect.signature(getattr(mod, fn)) == inspect.signature(getattr(NPK, fn)), fn
    for fn in ("kmeans_step", "gmm_diag_step", "gmm_full_step"):
        param = inspect.signature(getattr(mod, fn)).parameters["sample_weight"]
        assert param.default is None and param.kind == param.POSITIONAL_OR_KEYWORD


# ---------------------------------------------------------------------------
# public helper: row-wise log-sum-exp
# ---------------------------------------------------------------------------
def test_logsumexp_rows_public():
    import warnings

    from ipem.kernels import logsumexp_rows
    assert NPK._logsumexp_rows is logsumexp_rows        # the old private name still works
    rng = np.random.default_rng(0)
    a = rng.standard_normal((50, 7)) * 300.0            # exp alone would overflow
    a[3] = -np.inf
    a[4, :6] = -np.inf
    a[5, 2] = np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")                   # no divide-by-zero warning
        got = logsumexp_rows(a)
    ok = np.ones(50, dtype=bool)
    ok[[3, 4, 5]] = False
    np.testing.assert_allclose(got[ok], np.logaddexp.reduce(a[ok], axis=1), rtol=1e-14)
    assert got[3] == -np.inf and got[4] == a[4, 6] and got[5] == np.inf
    assert got.dtype == np.float64 and got.shape == (50,)
    np.testing.assert_array_equal(logsumexp_rows(a.astype(np.float32)),
                                  logsumexp_rows(a.astype(np.float32).astype(np.float64)))
    assert logsumexp_rows(np.empty((4, 0))).tolist() == [-np.inf] * 4
    assert logsumexp_rows(np.empty((0, 3))).shape == (0,)
    with pytest.raises(ValueError):
        logsumexp_rows(np.zeros(3))
