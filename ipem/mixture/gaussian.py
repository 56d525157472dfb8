"""Gaussian-mixture math shared by GaussianMixture, the UBM, MAP and scoring.

Three groups, each a set of plain functions:

* parameters <-> kernel arguments (:func:`kernel_args`, :func:`precision_cholesky`,
  :func:`precisions_from_cholesky`, :func:`upper_factor`);
* the E-step over a controller (:func:`gmm_e_step`, GaussianMixture's and the
  UBM's) and the M-step, a pure function of summed statistics (:func:`m_step`);
* shard functions that run where the frames live and return statistics
  (:func:`gmm_stats`, :func:`gmm_frames`, :func:`hard_stats`,
  :func:`random_stats`) and :func:`soft_stats` for responsibilities given as
  a function of the rows.

Statistics are dictionaries ``{"nk": (K,), "sx": (K, D), "sxx": ..., "n": float}``
of frames shifted by the dataset mean; with frame weights every frame's
contribution (and ``n``) is weighted.
"""
from __future__ import annotations

import numpy as np
from scipy import linalg

from ..kernels import check_approximation, get_kernels

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")

# scikit-learn's words (its tests match them), then ipem's: where scikit-learn can return
# a degenerate model (a variance of rounding noise), ipem's summed statistics give exactly 0
_COV_ERROR = ("Fitting the mixture model failed because some components have ill-defined "
              "empirical covariance (for instance caused by singleton or collapsed samples). "
              "Try to decrease the number of components, increase reg_covar, or scale the "
              "input data. (Component {k} has an ill-defined covariance with reg_covar={reg}; "
              "ipem raises rather than return a model whose variance is rounding noise.)")



def _n_of(shard):
    return float(shard.X.shape[0]) if shard.weights is None else float(shard.weights.sum())


# ---------------------------------------------------------------------------
# parameters <-> kernel arguments
# ---------------------------------------------------------------------------

def _kernel_precision(cov_type, prec_chol, n_components, n_features):
    """Precision argument of the kernels for a covariance type.

    diag and spherical use the diagonal kernel with precisions of shape
    (n_components, n_features); full and tied use the full kernel with
    upper-triangular precision Cholesky factors (n_components, D, D).
    """
    if cov_type == "diag":
        return prec_chol ** 2
    if cov_type == "spherical":
        return np.repeat((prec_chol ** 2)[:, None], n_features, axis=1)
    if cov_type == "full":
        return prec_chol
    return np.broadcast_to(prec_chol, (n_components, n_features, n_features)).copy()


def kernel_args(cov_type, weights, means, prec_chol, shift):
    """Kernel arguments of a GMM, in the coordinates shifted by ``shift``.

    Returns
    -------
    means_shifted : ndarray of shape (n_components, n_features)
    precision : ndarray, see :func:`_kernel_precision`
    log_weights : ndarray of shape (n_components,)
    """
    k, d = means.shape
    with np.errstate(divide="ignore"):
        log_w = np.log(weights)
    return means - shift, _kernel_precision(cov_type, prec_chol, k, d), log_w


def kmeans_init_stats(data, n_components, cov_type, rng, backend, chunk_size):
    """Statistics of the hard assignment to :class:`ipem.KMeans` centres (one k-means run).

    Parameters
    ----------
    data : DistributedData
    n_components : int
    cov_type : str
    rng : numpy.random.RandomState
        Consumed by the k-means initialisation.

    Returns
    -------
    dict of statistics (see the module docstring)
    """
    from ..cluster.kmeans import KMeans
    km = KMeans(n_components, n_init=1, random_state=rng, backend=backend,
                chunk_size=chunk_size).fit(data)
    return data.controller.reduce(hard_stats, data, data.mean, km.cluster_centers_ - data.mean,
                                  cov_type, backend, chunk_size)


def upper_factor(precision):
    """An upper-triangular U with ``U @ U.T == precision`` (for user-given precisions)."""
    rev = precision[::-1, ::-1]
    lower = linalg.cholesky(rev, lower=True)
    return np.ascontiguousarray(lower[::-1, ::-1])


def precision_cholesky(covariances, cov_type, reg_covar):
    """Cholesky factors of the precisions from covariances (scikit-learn's convention)."""
    if cov_type in ("full", "tied"):
        covs = covariances if cov_type == "full" else covariances[None]
        d = covs.shape[-1]
        out = np.empty_like(covs)
        for k, cov in enumerate(covs):
            try:
                chol = linalg.cholesky(cov, lower=True)
            except linalg.LinAlgError:
                raise ValueError(_COV_ERROR.format(k=k, reg=reg_covar)) from None
            out[k] = linalg.solve_triangular(chol, np.eye(d), lower=True).T
        return out if cov_type == "full" else out[0]
    if np.any(covariances <= 0.0):
        k = int(np.argwhere(covariances <= 0.0)[0][0]) if cov_type == "diag" else \
            int(np.flatnonzero(covariances <= 0.0)[0])
        raise ValueError(_COV_ERROR.format(k=k, reg=reg_covar))
    return 1.0 / np.sqrt(covariances)


def covariances_from_precisions(precisions, cov_type):
    """Covariances from precisions (their inverses), in the layout of ``cov_type``.

    Parameters
    ----------
    precisions : ndarray
        (K, D, D) full, (D, D) tied, (K, D) diag, (K,) spherical.
    cov_type : {"full", "tied", "diag", "spherical"}

    Returns
    -------
    ndarray of the shape of ``precisions``
    """
    if cov_type == "full":
        return np.linalg.inv(precisions)
    if cov_type == "tied":
        return linalg.inv(precisions)
    return 1.0 / precisions


def precisions_from_cholesky(prec_chol, cov_type):
    """Precision matrices from their Cholesky factors (scikit-learn's ``precisions_``).

    Parameters
    ----------
    prec_chol : ndarray
        (K, D, D) full, (D, D) tied, (K, D) diag, (K,) spherical.
    cov_type : {"full", "tied", "diag", "spherical"}

    Returns
    -------
    ndarray of the shape of ``prec_chol``
    """
    if cov_type == "full":
        return np.einsum("kij,klj->kil", prec_chol, prec_chol)
    if cov_type == "tied":
        return prec_chol @ prec_chol.T
    return prec_chol ** 2


# ---------------------------------------------------------------------------
# M-step: a pure function of the summed statistics
# ---------------------------------------------------------------------------

def _covariances(stats, means, nk_eps, cov_type, reg_covar):
    """Covariances from summed statistics of shifted frames.

    Uses the centred form ``sum_n g (x - m)(x - m)^T`` expanded around the
    new means, so the result matches scikit-learn's two-pass computation.
    """
    nk, sx, sxx = stats["nk"], stats["sx"], stats["sxx"]
    d = means.shape[1]
    if cov_type == "full":
        outer = np.einsum("ki,kj->kij", means, sx)
        cov = (sxx - outer - outer.transpose(0, 2, 1)
               + nk[:, None, None] * np.einsum("ki,kj->kij", means, means)) / nk_eps[:, None, None]
        cov[:, np.arange(d), np.arange(d)] += reg_covar
        return cov
    if cov_type == "tied":
        outer = means.T @ sx
        cov = (sxx - outer - outer.T + (nk[:, None] * means).T @ means) / nk_eps.sum()
        cov[np.arange(d), np.arange(d)] += reg_covar
        return cov
    # diag and spherical: sxx is (K, D) (spherical: summed over D on the shard).  The
    # centred sums are >= 0; for a nearly empty component float32 statistics can round
    # them below 0, which is clipped so that reg_covar keeps the variance positive.
    if cov_type == "diag":
        centred = sxx - 2.0 * means * sx + nk[:, None] * means ** 2
        return np.maximum(centred, 0.0) / nk_eps[:, None] + reg_covar
    centred = (sxx - 2.0 * (means * sx).sum(axis=1) + nk * (means ** 2).sum(axis=1))
    return np.maximum(centred, 0.0) / (nk_eps * d) + reg_covar


def m_step(stats, cov_type, reg_covar, normalize_weights=True):
    """The M-step: weights, means and covariances from summed statistics.

    Parameters
    ----------
    stats : dict
        ``nk`` (K,), ``sx`` (K, D), ``sxx`` and ``n``, as :func:`gmm_stats`
        returns them (shifted coordinates).
    cov_type : {"full", "tied", "diag", "spherical"}
    reg_covar : float
        Added to the diagonal of every covariance.
    normalize_weights : bool, default=True
        Weights ``nk / sum(nk)``; False: ``nk / n`` (initial statistics).

    Returns
    -------
    weights : ndarray of shape (K,)
    means : ndarray of shape (K, D)
        In the shifted coordinates of the statistics.
    covariances : ndarray
        (K, D, D) full, (D, D) tied, (K, D) diag, (K,) spherical.
    """
    nk_eps = stats["nk"] + 10 * np.finfo(np.float64).eps
    means = stats["sx"] / nk_eps[:, None]
    cov = _covariances(stats, means, nk_eps, cov_type, reg_covar)
    weights = nk_eps / nk_eps.sum() if normalize_weights else nk_eps / stats["n"]
    return weights, means, cov


# ---------------------------------------------------------------------------
# shard functions
# ---------------------------------------------------------------------------

def gmm_e_step(data, cov_type, weights, means, prec_chol, *, top_c=None, min_post=0.0,
               backend=None, chunk_size=None):
    """The E-step of a Gaussian mixture over a controller (GaussianMixture and the UBM).

    Parameters
    ----------
    data : DistributedData
    cov_type : {"full", "tied", "diag", "spherical"}
    weights : ndarray of shape (n_components,)
    means : ndarray of shape (n_components, n_features)
    prec_chol : ndarray
        Cholesky factors of the precisions, in the layout of ``cov_type``
        (diag: ``1 / sqrt(variances)``, shape (n_components, n_features)).
    top_c : int or None
        Approximate statistics (diag and spherical only): each frame's
        ``top_c`` largest responsibilities; None: all.
    min_post : float
        Then drop responsibilities below ``min_post``; 0: none.
    backend : str, optional
    chunk_size : int, optional

    Returns
    -------
    Reduction
        ``(stats, shard_times)`` of :meth:`ipem.parallel.Controller.reduce_timed`;
        stats as :func:`gmm_stats` returns them, summed over the shards.

    Raises
    ------
    ValueError
        For approximate statistics with full or tied covariances, or invalid
        ``top_c`` / ``min_post``.
    """
    means_s, prec, log_w = kernel_args(cov_type, weights, means, prec_chol, data.mean)
    top_c, min_post = check_approximation(top_c, min_post, means_s.shape[0])
    if (top_c or min_post) and cov_type not in ("diag", "spherical"):
        raise ValueError("top_c and min_post (approximate statistics) apply to "
                         f"covariance_type 'diag' and 'spherical', not {cov_type!r}")
    return data.controller.reduce_timed(gmm_stats, data, data.mean, cov_type, means_s, prec,
                                        log_w, backend, chunk_size, top_c, min_post)


def gmm_stats(shard, shift, cov_type, means, prec, log_weights, backend, chunk_size,
              top_c=0, min_post=0.0):
    """E-step statistics of one shard (shifted coordinates).

    Parameters
    ----------
    shard : Shard
    shift : ndarray of shape (n_features,)
    cov_type : str
    means, prec, log_weights
        Kernel arguments from :func:`kernel_args`.
    top_c, min_post
        Approximate statistics (diag and spherical; see
        :func:`gmm_e_step`): each frame's top-C responsibilities,
        then those >= min_post, renormalised.  The log-likelihood stays exact.

    Returns
    -------
    dict with ``nk`` (K,), ``sx`` (K, D), ``sxx`` ((K, D, D) full, (D, D) tied,
    (K, D) diag, (K,) spherical), ``loglik`` (total) and ``n`` (frames or weight).
    """
    kern = get_kernels(backend)
    if cov_type in ("full", "tied"):
        nk, sx, sxx, ll = kern.gmm_full_step(shard.X, shift, means, prec, log_weights,
                                             chunk_size, sample_weight=shard.weights)
    else:
        approx = {"top_c": top_c or None, "min_post": min_post} if (top_c or min_post) else {}
        nk, sx, sxx, ll = kern.gmm_diag_step(shard.X, shift, means, prec, log_weights,
                                             chunk_size, sample_weight=shard.weights, **approx)
    if cov_type == "tied":
        sxx = sxx.sum(axis=0)
    elif cov_type == "spherical":
        sxx = sxx.sum(axis=1)
    return {"nk": nk, "sx": sx, "sxx": sxx, "loglik": ll, "n": _n_of(shard)}


def gmm_frames(shard, what, cov_type, weights, means, prec_chol, backend, chunk_size, shift):
    """Per-frame outputs: log-likelihoods (n,), responsibilities (n, K) or labels (n,).

    Labels are the argmax of the responsibilities taken block by block, so
    ``predict`` never holds an (n, K) array.
    """
    kern = get_kernels(backend)
    step = kern.gmm_full_step if cov_type in ("full", "tied") else kern.gmm_diag_step
    X = shard.X
    n = X.shape[0]
    if shift is None:
        shift = X.mean(axis=0, dtype=np.float64) if n else np.zeros(X.shape[1])
    means_s, prec, log_w = kernel_args(cov_type, weights, means, prec_chol, shift)
    if what == "logprob":
        out = np.empty(n)
        step(X, shift, means_s, prec, log_w, chunk_size, logprob_out=out, compute_stats=False)
        return out
    if what == "resp":
        out = np.empty((n, means.shape[0]))
        step(X, shift, means_s, prec, log_w, chunk_size, resp_out=out, compute_stats=False)
        return out
    labels = np.empty(n, dtype=np.int64)
    block = max(256, (1 << 21) // max(means.shape[0], 1))
    resp = np.empty((min(block, n), means.shape[0]))
    for a in range(0, n, block):
        b = min(a + block, n)
        step(X[a:b], shift, means_s, prec, log_w, chunk_size, resp_out=resp[:b - a],
             compute_stats=False)
        labels[a:b] = np.argmax(resp[:b - a], axis=1)
    return labels


def hard_stats(shard, shift, centers, cov_type, backend, chunk_size):
    """Statistics of a hard assignment to the nearest centre (k-means init)."""
    kern = get_kernels(backend)
    X = shard.X
    n, d = X.shape
    k = centers.shape[0]
    labels = np.empty(n, dtype=np.int64)
    kern.kmeans_step(X, shift, centers, labels, np.empty(n), chunk_size)
    resp_rows = lambda a, b: np.eye(k)[labels[a:b]]  # noqa: E731
    return soft_stats(X, shift, cov_type, k, resp_rows, shard.weights)


def random_stats(shard, shift, cov_type, k, seed):
    """Statistics of uniform random responsibilities (init_params='random')."""
    rng = np.random.default_rng([int(seed), int(shard.index)])

    def resp_rows(a, b):
        r = rng.uniform(size=(b - a, k))
        return r / r.sum(axis=1, keepdims=True)
    return soft_stats(shard.X, shift, cov_type, k, resp_rows, shard.weights)


def soft_stats(X, shift, cov_type, k, resp_rows, weights=None, chunk=4096):
    """Statistics of responsibilities ``resp_rows(a, b) -> (b - a, k)`` for rows a..b of X.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    shift : ndarray of shape (n_features,)
    cov_type : str
    k : int
    resp_rows : callable
    weights : ndarray of shape (n_samples,), optional
        Frame weights multiplying the responsibilities.

    Returns
    -------
    dict with ``nk``, ``sx``, ``sxx``, ``n`` (see :func:`gmm_stats`)
    """
    n, d = X.shape
    full = cov_type in ("full", "tied")
    nk, sx = np.zeros(k), np.zeros((k, d))
    sxx = np.zeros((k, d, d) if full else (k, d))
    for a in range(0, n, chunk):
        b = min(a + chunk, n)
        xc = X[a:b].astype(np.float64) - shift
        r = resp_rows(a, b)
        if weights is not None:
            r = r * weights[a:b, None]
        nk += r.sum(axis=0)
        sx += r.T @ xc
        if full:
            sxx += np.einsum("nk,ni,nj->kij", r, xc, xc)
        else:
            sxx += r.T @ (xc * xc)
    if cov_type == "tied":
        sxx = sxx.sum(axis=0)
    elif cov_type == "spherical":
        sxx = sxx.sum(axis=1)
    return {"nk": nk, "sx": sx, "sxx": sxx,
            "n": float(n) if weights is None else float(weights.sum())}


