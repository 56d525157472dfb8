"""Gaussian mixture models fitted by EM over a controller (scikit-learn semantics)."""
from __future__ import annotations

import time
import warnings

import numpy as np
from scipy import linalg
from sklearn.base import DensityMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

from ..em.base import EMEstimatorMixin, sample_distinct, shard_indicator, shard_telemetry
from ..em.driver import run_em
from ..kernels import get_kernels
from ..validation import check_float, check_int, check_option, check_param_array

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
INIT_PARAMS = ("kmeans", "k-means++", "random", "random_from_data")

_COV_ERROR = ("Fitting the mixture model failed: component {k} has an ill-defined covariance "
              "(a singleton or collapsed set of frames). Decrease n_components, increase "
              "reg_covar (now {reg}), or scale the features.")


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
    """Statistics of the hard assignment to :class:`ipem.KMeans` centres (one k-means run)."""
    from ..cluster.kmeans import KMeans
    km = KMeans(n_components, n_init=1, random_state=rng, controller=data.controller,
                backend=backend, chunk_size=chunk_size)
    km._fit_distributed(data)
    return data.controller.reduce(_hard_stats, data, data.mean, km.cluster_centers_ - data.mean,
                                  cov_type, backend, chunk_size)


def _upper_factor(precision):
    """An upper-triangular U with ``U @ U.T == precision`` (for user-given precisions)."""
    rev = precision[::-1, ::-1]
    lower = linalg.cholesky(rev, lower=True)
    return np.ascontiguousarray(lower[::-1, ::-1])


def _precision_cholesky(covariances, cov_type, reg_covar):
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


def _precisions_from_cholesky(prec_chol, cov_type):
    if cov_type == "full":
        return np.einsum("kij,klj->kil", prec_chol, prec_chol)
    if cov_type == "tied":
        return prec_chol @ prec_chol.T
    return prec_chol ** 2


# ---------------------------------------------------------------------------
# M-step: a pure function of the summed statistics
# ---------------------------------------------------------------------------

def _m_step_covariances(stats, means, nk_eps, cov_type, reg_covar):
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


def _m_step(stats, cov_type, reg_covar, normalise_weights=True):
    nk_eps = stats["nk"] + 10 * np.finfo(np.float64).eps
    means = stats["sx"] / nk_eps[:, None]
    cov = _m_step_covariances(stats, means, nk_eps, cov_type, reg_covar)
    weights = nk_eps / nk_eps.sum() if normalise_weights else nk_eps / stats["n"]
    return weights, means, cov


# ---------------------------------------------------------------------------
# shard functions
# ---------------------------------------------------------------------------

def _gmm_stats(shard, shift, cov_type, means, prec, log_weights, backend, chunk_size, n_shards):
    """E-step statistics of one shard (shifted coordinates)."""
    kern = get_kernels(backend)
    step = kern.gmm_full_step if cov_type in ("full", "tied") else kern.gmm_diag_step
    t0 = time.perf_counter()
    nk, sx, sxx, ll = step(shard.X, shift, means, prec, log_weights, chunk_size)
    dt = time.perf_counter() - t0
    if cov_type == "tied":
        sxx = sxx.sum(axis=0)
    elif cov_type == "spherical":
        sxx = sxx.sum(axis=1)
    n = shard.X.shape[0]
    return {"nk": nk, "sx": sx, "sxx": sxx, "loglik": ll, "n": float(n),
            "shard_time": shard_indicator(shard, n_shards, dt),
            "shard_frames": shard_indicator(shard, n_shards, n)}


def _gmm_frames(shard, what, cov_type, weights, means, prec_chol, backend, chunk_size, shift):
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


def _hard_stats(shard, shift, centers, cov_type, backend, chunk_size):
    """Statistics of a hard assignment to the nearest centre (k-means init)."""
    kern = get_kernels(backend)
    X = shard.X
    n, d = X.shape
    k = centers.shape[0]
    labels = np.empty(n, dtype=np.int64)
    kern.kmeans_step(X, shift, centers, labels, np.empty(n), chunk_size)
    resp_rows = lambda a, b: np.eye(k)[labels[a:b]]  # noqa: E731
    return _soft_stats_from(X, shift, cov_type, k, resp_rows)


def _random_stats(shard, shift, cov_type, k, seed):
    """Statistics of uniform random responsibilities (init_params='random')."""
    rng = np.random.default_rng([int(seed), int(shard.index)])

    def resp_rows(a, b):
        r = rng.uniform(size=(b - a, k))
        return r / r.sum(axis=1, keepdims=True)
    return _soft_stats_from(shard.X, shift, cov_type, k, resp_rows)


def _soft_stats_from(X, shift, cov_type, k, resp_rows, chunk=4096):
    n, d = X.shape
    full = cov_type in ("full", "tied")
    nk, sx = np.zeros(k), np.zeros((k, d))
    sxx = np.zeros((k, d, d) if full else (k, d))
    for a in range(0, n, chunk):
        b = min(a + chunk, n)
        xc = X[a:b].astype(np.float64) - shift
        r = resp_rows(a, b)
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
    return {"nk": nk, "sx": sx, "sxx": sxx, "n": float(n)}


# ---------------------------------------------------------------------------
# the estimator
# ---------------------------------------------------------------------------

class GaussianMixture(DensityMixin, EMEstimatorMixin):
    """Gaussian mixture fitted by EM over a local or ipyparallel controller.

    Follows :class:`sklearn.mixture.GaussianMixture` (names, defaults,
    semantics); with the same initial parameters the fitted model agrees with
    scikit-learn's to about 1e-10 relative in float64.

    Parameters
    ----------
    n_components : int, default=1
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
    tol : float, default=1e-3
        Convergence threshold on the change of the mean log-likelihood.
    reg_covar : float, default=1e-6
        Added to the diagonal of every covariance.
    max_iter : int, default=100
    n_init : int, default=1
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}, default="kmeans"
        ``"kmeans"`` runs :class:`ipem.KMeans` over the same controller;
        ``"random"`` draws responsibilities per shard (depends on the shard
        layout); the others draw frames over the whole dataset.
    weights_init : array-like of shape (n_components,), optional
    means_init : array-like of shape (n_components, n_features), optional
    precisions_init : array-like, optional
        Shape depends on ``covariance_type`` as in scikit-learn.
    random_state : int, RandomState or None
    warm_start : bool, default=False
        Start from the fitted parameters of the previous ``fit``.
    verbose : int, default=0
    verbose_interval : int, default=10
    controller : None, int, Controller or ipyparallel.DirectView
        Where the data lives and kernels run (default: in-process).
    backend : {"c", "numpy"} or None
    chunk_size : int or None
    callbacks : callable or list of callables
        ``cb(record)`` with an :class:`ipem.IterationRecord` per iteration
        (:class:`ipem.LivePlot` is one).

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    means_ : ndarray of shape (n_components, n_features)
    covariances_ : ndarray
        (K,) spherical, (K, D) diag, (D, D) tied, (K, D, D) full.
    precisions_ : ndarray, same shape as ``covariances_``
    precisions_cholesky_ : ndarray, same shape as ``covariances_``
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
        Mean log-likelihood at the start of the last iteration.
    lower_bounds_ : list of float
        ``lower_bound_`` of every iteration of the best initialisation.
    history_ : list of IterationRecord
    n_features_in_ : int
    """

    def __init__(self, n_components=1, *, covariance_type="full", tol=1e-3, reg_covar=1e-6,
                 max_iter=100, n_init=1, init_params="kmeans", weights_init=None,
                 means_init=None, precisions_init=None, random_state=None, warm_start=False,
                 verbose=0, verbose_interval=10, controller=None, backend=None,
                 chunk_size=None, callbacks=None):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.controller = controller
        self.backend = backend
        self.chunk_size = chunk_size
        self.callbacks = callbacks

    # --- checks ------------------------------------------------------------
    def _check_params(self, n_features):
        k = check_int(self.n_components, "n_components")
        check_option(self.covariance_type, "covariance_type", COVARIANCE_TYPES)
        check_float(self.tol, "tol")
        check_float(self.reg_covar, "reg_covar")
        check_int(self.max_iter, "max_iter")
        check_int(self.n_init, "n_init")
        check_option(self.init_params, "init_params", INIT_PARAMS)
        if self.chunk_size is not None:
            check_int(self.chunk_size, "chunk_size")
        get_kernels(self.backend)
        init = {}
        if self.weights_init is not None:
            w = check_param_array(self.weights_init, "weights_init", (k,))
            if np.any(w < 0) or np.any(w > 1) or not np.isclose(w.sum(), 1.0, atol=1e-6):
                raise ValueError("weights_init must be in [0, 1] and sum to 1, "
                                 f"got sum {w.sum():.6f}")
            init["weights"] = w
        if self.means_init is not None:
            init["means"] = check_param_array(self.means_init, "means_init", (k, n_features))
        if self.precisions_init is not None:
            shape = {"full": (k, n_features, n_features), "tied": (n_features, n_features),
                     "diag": (k, n_features), "spherical": (k,)}[self.covariance_type]
            p = check_param_array(self.precisions_init, "precisions_init", shape)
            init["prec_chol"] = self._chol_from_precisions(p)
        return init

    def _chol_from_precisions(self, p):
        ct = self.covariance_type
        if ct in ("diag", "spherical"):
            if np.any(p <= 0):
                raise ValueError("precisions_init must be positive")
            return np.sqrt(p)
        mats = p if ct == "full" else p[None]
        out = np.empty_like(mats)
        for k, m in enumerate(mats):
            if not np.allclose(m, m.T):
                raise ValueError(f"precisions_init[{k}] is not symmetric")
            try:
                out[k] = _upper_factor(m)
            except linalg.LinAlgError:
                raise ValueError(f"precisions_init[{k}] is not positive definite") from None
        return out if ct == "full" else out[0]

    # --- EM hooks ------------------------------------------------------------
    def _em_e_step(self, data, params):
        means_s, prec, log_w = kernel_args(self.covariance_type, params["weights"],
                                           params["means"], params["prec_chol"], data.mean)
        return data.controller.reduce(_gmm_stats, data, data.mean, self.covariance_type,
                                      means_s, prec, log_w, self.backend, self.chunk_size,
                                      data.n_shards)

    def _em_m_step(self, stats, params, data):
        weights, means_s, cov = _m_step(stats, self.covariance_type, self.reg_covar)
        new = {"weights": weights, "means": means_s + data.mean, "covariances": cov,
               "prec_chol": _precision_cholesky(cov, self.covariance_type, self.reg_covar)}
        return new, stats["loglik"] / stats["n"], shard_telemetry(stats)

    # --- initialisation ----------------------------------------------------
    def _initialize(self, data, rng, given):
        k, ct = self.n_components, self.covariance_type
        ctrl = data.controller
        params = {}
        need = not ({"weights", "means", "prec_chol"} <= set(given))
        if need:
            if self.init_params == "kmeans":
                stats = kmeans_init_stats(data, k, ct, rng, self.backend, self.chunk_size)
            elif self.init_params == "random":
                stats = ctrl.reduce(_random_stats, data, data.mean, ct, k,
                                    rng.randint(np.iinfo(np.int32).max))
            else:
                if self.init_params == "k-means++":
                    from ..cluster.kmeans import kmeans_plusplus_distributed
                    _, idx = kmeans_plusplus_distributed(data, k, rng, backend=self.backend,
                                                         chunk_size=self.chunk_size)
                else:
                    idx = sample_distinct(rng, data.n_samples, k)
                rows = ctrl.take(data, idx) - data.mean
                stats = _soft_stats_from(rows, np.zeros(data.n_features), ct, k,
                                         lambda a, b: np.eye(k)[a:b])
                stats["n"] = float(data.n_samples)
            weights, means_s, cov = _m_step(stats, ct, self.reg_covar, normalise_weights=False)
            params = {"weights": weights, "means": means_s + data.mean, "covariances": cov}
        params.update({key: given[key] for key in ("weights", "means") if key in given})
        if "prec_chol" in given:
            params["prec_chol"] = given["prec_chol"]
        else:
            params["prec_chol"] = _precision_cholesky(params["covariances"], ct, self.reg_covar)
        return params

    # --- public API ----------------------------------------------------------
    def fit(self, X, y=None):
        """Estimate the model parameters with EM.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or DistributedData
            Frames; an array is distributed with ``controller`` for the
            duration of the fit.
        y : ignored

        Returns
        -------
        self
        """
        k = check_int(self.n_components, "n_components")
        data, owned = self._fit_data(X, min_samples=k)
        try:
            self._fit_distributed(data)
        finally:
            if owned:
                data.free()
        return self

    def _fit_distributed(self, data):
        given = self._check_params(data.n_features)
        if self.warm_start and hasattr(self, "means_"):
            given = {"weights": self.weights_, "means": self.means_,
                     "prec_chol": self.precisions_cholesky_}
        n_init = 1 if (self.warm_start and hasattr(self, "means_")) else self.n_init
        rng = check_random_state(self.random_state)
        callbacks = self._callbacks()
        best = None
        t_start = time.perf_counter()
        for _ in range(n_init):
            params = self._initialize(data, rng, given)
            result = run_em(self, data, params, max_iter=self.max_iter, tol=self.tol,
                            callbacks=callbacks, start_time=t_start)
            if best is None or result.objective > best.objective:
                best = result
        self._set_fitted(best, data.n_features)
        if not best.converged:
            warnings.warn(f"GaussianMixture did not converge in {self.max_iter} iterations; "
                          "try a larger max_iter or tol, or check the initialisation.",
                          ConvergenceWarning, stacklevel=3)
        return self

    def _set_fitted(self, result, n_features):
        p = result.params
        self.weights_ = p["weights"]
        self.means_ = p["means"]
        self.covariances_ = p.get("covariances")
        self.precisions_cholesky_ = p["prec_chol"]
        self.precisions_ = _precisions_from_cholesky(p["prec_chol"], self.covariance_type)
        self.converged_ = result.converged
        self.n_iter_ = result.n_iter
        self.lower_bound_ = result.objective
        self.lower_bounds_ = [r.objective for r in result.history]
        self.history_ = result.history
        self.n_features_in_ = n_features

    def _frames(self, X, what):
        shift = X.mean if hasattr(X, "controller") else None
        return self._map_frames(X, _gmm_frames, what, self.covariance_type, self.weights_,
                                self.means_, self.precisions_cholesky_, self.backend,
                                self.chunk_size, shift)

    def score_samples(self, X):
        """Log-likelihood of each frame, shape (n_samples,)."""
        return self._frames(X, "logprob")

    def score(self, X, y=None):
        """Mean log-likelihood per frame."""
        return float(np.mean(self.score_samples(X)))

    def predict_proba(self, X):
        """Responsibilities, shape (n_samples, n_components)."""
        return self._frames(X, "resp")

    def predict(self, X):
        """Most responsible component of each frame, shape (n_samples,)."""
        return self._frames(X, "labels")

    def fit_predict(self, X, y=None):
        return self.fit(X).predict(X)

    def bic(self, X):
        """Bayesian information criterion of ``X`` under the model."""
        n = X.n_samples if hasattr(X, "n_samples") else np.asarray(X).shape[0]
        return -2 * self.score(X) * n + self._n_parameters() * np.log(n)

    def aic(self, X):
        """Akaike information criterion of ``X`` under the model."""
        n = X.n_samples if hasattr(X, "n_samples") else np.asarray(X).shape[0]
        return -2 * self.score(X) * n + 2 * self._n_parameters()

    def _n_parameters(self):
        k, d = self.means_.shape
        cov = {"full": k * d * (d + 1) / 2, "diag": k * d, "tied": d * (d + 1) / 2,
               "spherical": k}[self.covariance_type]
        return int(cov + k * d + k - 1)
