"""GaussianMixture: scikit-learn's estimator, fitted by EM over a controller.

The class only fills the hooks of :class:`ipem.em.base.EMEstimator`; the math
is in :mod:`ipem.mixture.gaussian`.
"""
from __future__ import annotations

import numbers

import numpy as np
from scipy import linalg
from sklearn.base import DensityMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ..cluster.kmeans import kmeans_plusplus_distributed
from ..em.base import EMEstimator, sample_distinct
from ..kernels import get_kernels
from ..parallel import DistributedData
from ..errors import ParameterError
from ..validation import check_float, check_int, check_numeric_array, check_option
from .gaussian import (COVARIANCE_TYPES, covariances_from_precisions, gmm_e_step, gmm_frames,
                       kmeans_init_stats, m_step, precision_cholesky, precisions_from_cholesky,
                       random_stats, soft_stats, upper_factor)

INIT_PARAMS = ("kmeans", "k-means++", "random", "random_from_data")


class GaussianMixture(DensityMixin, EMEstimator):
    """Gaussian mixture fitted by EM over a local or ipyparallel controller.

    Follows :class:`sklearn.mixture.GaussianMixture` (names, defaults,
    semantics); with the same initial parameters the fitted model agrees with
    scikit-learn's to about 1e-10 relative in float64.  The fitted arrays are
    float32 when the frames were (EM accumulates in float64), and
    ``score_samples`` and ``predict_proba`` return the dtype of their ``X``.

    Parameters
    ----------
    n_components : int, default=1
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
    tol : float, default=1e-3
        Convergence threshold on the change of the mean log-likelihood.
    reg_covar : float, default=1e-6
        Added to the diagonal of every covariance.  Unlike scikit-learn, a
        component whose covariance is not positive (a single frame, or
        collapsed frames, with ``reg_covar=0``) is a ValueError, never a
        model whose variance is rounding noise: ipem's summed statistics give
        such a component a variance of exactly 0.
    max_iter : int, default=100
        0: ``fit`` returns the initialisation (``n_iter_`` 0, ``lower_bound_``
        -inf, no ConvergenceWarning), as scikit-learn does.
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
        Start from the fitted parameters of the previous ``fit`` and compare
        its first lower bound with the previous ``lower_bound_``, so a loop of
        ``max_iter=1`` fits converges when one fit would (as scikit-learn).
    verbose : int, default=0
        Progress goes to the ``ipem`` logger (INFO), not to print.
    verbose_interval : int, default=10
    controller : None, int, Controller or ipyparallel.DirectView
        Where the data lives and kernels run (default: in-process).
    backend : {"c", "numpy"} or None
    chunk_size : int or None
    callbacks : callable or list of callables
        ``cb(record)`` with an :class:`ipem.IterationRecord` per iteration
        (:class:`ipem.LivePlot` is one).
    top_c : int or None, default=None
        Approximate statistics (``"diag"`` and ``"spherical"`` only): each
        frame's statistics come from its ``top_c`` most responsible
        components, renormalised.  None: exact EM.  The reported
        log-likelihood stays exact; EM is no longer guaranteed to increase it.
    min_post : float, default=0.0
        Approximate statistics: then responsibilities below ``min_post`` are
        dropped and the rest renormalised (as Kaldi's ``--min-post``).

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
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Only when ``X`` had string column names (a DataFrame).

    Examples
    --------
    >>> import numpy as np, ipem
    >>> X = np.r_[np.random.default_rng(0).normal(-3, 1, (100, 2)),
    ...           np.random.default_rng(1).normal(3, 1, (100, 2))]
    >>> gmm = ipem.GaussianMixture(2, covariance_type="diag", random_state=0).fit(X)
    >>> np.round(np.sort(gmm.means_[:, 0]))
    array([-3.,  3.])
    """

    def __init__(self, n_components=1, *, covariance_type="full", tol=1e-3, reg_covar=1e-6,
                 max_iter=100, n_init=1, init_params="kmeans", weights_init=None,
                 means_init=None, precisions_init=None, random_state=None, warm_start=False,
                 verbose=0, verbose_interval=10, controller=None, backend=None,
                 chunk_size=None, callbacks=None, top_c=None, min_post=0.0):
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
        self.top_c = top_c
        self.min_post = min_post

    # --- hooks of the fit template -------------------------------------------
    def _min_samples(self):
        return check_int(self.n_components, "n_components")

    def _n_init(self):
        return 1 if self._warm() else self.n_init

    def _warm(self):
        return bool(self.warm_start) and hasattr(self, "means_")

    def _check_params(self, n_features):
        k = check_int(self.n_components, "n_components")
        check_option(self.covariance_type, "covariance_type", COVARIANCE_TYPES)
        check_float(self.tol, "tol")
        check_float(self.reg_covar, "reg_covar")
        check_int(self.max_iter, "max_iter", minimum=0)
        check_int(self.n_init, "n_init")
        check_option(self.init_params, "init_params", INIT_PARAMS)
        if self.chunk_size is not None:
            check_int(self.chunk_size, "chunk_size")
        get_kernels(self.backend)
        if self._warm():
            return {"weights": self.weights_, "means": self.means_,
                    "prec_chol": self.precisions_cholesky_}
        given = {}
        if self.weights_init is not None:
            w = _init_array(self.weights_init, "weights_init", "weights", (k,))
            if np.any(w < 0) or np.any(w > 1):
                raise ValueError("The parameter 'weights' should be in the range [0, 1], but "
                                 f"got min value {w.min():.5f}, max value {w.max():.5f}: "
                                 "weights_init must be in [0, 1]")
            if not np.isclose(w.sum(), 1.0, atol=1e-6):
                raise ValueError("The parameter 'weights' should be normalized, but got "
                                 f"sum(weights) = {w.sum():.5f}: weights_init must be "
                                 "normalized to sum to 1")
            given["weights"] = w
        if self.means_init is not None:
            given["means"] = _init_array(self.means_init, "means_init", "means",
                                         (k, n_features))
        if self.precisions_init is not None:
            ct = self.covariance_type
            shape = {"full": (k, n_features, n_features), "tied": (n_features, n_features),
                     "diag": (k, n_features), "spherical": (k,)}[ct]
            p = _init_array(self.precisions_init, "precisions_init", f"{ct} precision", shape)
            given["prec_chol"] = self._chol_from_precisions(p)
        return given

    def _chol_from_precisions(self, p):
        ct = self.covariance_type
        if ct in ("diag", "spherical"):
            if np.any(p <= 0):
                raise ValueError(f"The parameter '{ct} precision' should be positive: "
                                 "precisions_init must be positive")
            return np.sqrt(p)
        mats = p if ct == "full" else p[None]
        out = np.empty_like(mats)
        what = f"The parameter '{ct} precision' should be symmetric, positive-definite"
        for k, m in enumerate(mats):
            if not np.allclose(m, m.T):
                raise ValueError(f"{what}: precisions_init[{k}] is not symmetric")
            try:
                out[k] = upper_factor(m)
            except linalg.LinAlgError:
                raise ValueError(f"{what}: precisions_init[{k}] is not positive "
                                 "definite") from None
        return out if ct == "full" else out[0]

    def _warm_objective(self):
        return float(self.lower_bound_) if self._warm() else None

    def initialize(self, data, rng, given):
        """EM hook: the initial parameters (k-means, random, k-means++ or random frames)."""
        k, ct = self.n_components, self.covariance_type
        ctrl = data.controller
        params = {}
        if not {"weights", "means", "prec_chol"} <= set(given):
            if self.init_params == "kmeans":
                stats = kmeans_init_stats(data, k, ct, rng, self.backend, self.chunk_size)
            elif self.init_params == "random":
                stats = ctrl.reduce(random_stats, data, data.mean, ct, k,
                                    rng.randint(np.iinfo(np.int32).max))
            else:
                if self.init_params == "k-means++":
                    _, idx = kmeans_plusplus_distributed(data, k, rng, backend=self.backend,
                                                         chunk_size=self.chunk_size)
                else:
                    idx = sample_distinct(rng, data.n_samples, k)
                rows = ctrl.take(data, idx) - data.mean
                stats = soft_stats(rows, np.zeros(data.n_features), ct, k,
                                   lambda a, b: np.eye(k)[a:b])
                stats["n"] = float(data.total_weight)
            weights, means_s, cov = m_step(stats, ct, self.reg_covar, normalize_weights=False)
            params = {"weights": weights, "means": means_s + data.mean, "covariances": cov}
        params.update({key: given[key] for key in ("weights", "means") if key in given})
        if "prec_chol" in given:
            params["prec_chol"] = given["prec_chol"]
            params.pop("covariances", None)  # those of the data, not of precisions_init
        else:
            params["prec_chol"] = precision_cholesky(params["covariances"], ct, self.reg_covar)
        return params

    def e_step(self, data, params):
        """EM hook (:class:`~ipem.em.hooks.EMHooks`): the summed E-step statistics.

        Returns
        -------
        Reduction
            ``(stats, shard_times)``, see :func:`~ipem.mixture.gaussian.gmm_e_step`.
        """
        return gmm_e_step(data, self.covariance_type, params["weights"], params["means"],
                          params["prec_chol"], top_c=self.top_c, min_post=self.min_post,
                          backend=self.backend, chunk_size=self.chunk_size)

    def m_step(self, stats, params, data):
        """EM hook: the new parameters, the mean log-likelihood of the E-step, no info.

        Returns
        -------
        params : dict
        objective : float
        info : dict
        """
        weights, means_s, cov = m_step(stats, self.covariance_type, self.reg_covar)
        new = {"weights": weights, "means": means_s + data.mean, "covariances": cov,
               "prec_chol": precision_cholesky(cov, self.covariance_type, self.reg_covar)}
        return new, stats["loglik"] / stats["n"], {}

    def _set_fitted(self, result, data):
        p = result.params
        ct = self.covariance_type
        precisions = precisions_from_cholesky(p["prec_chol"], ct)
        cov = p.get("covariances")
        if cov is None:  # max_iter=0 with precisions_init: the covariances they stand for
            cov = covariances_from_precisions(precisions, ct)
        # float32 frames give float32 parameters (scikit-learn's dtype); EM ran in float64
        dtype = _out_dtype(data.dtype)
        self.weights_ = np.asarray(p["weights"], dtype=dtype)
        self.means_ = np.asarray(p["means"], dtype=dtype)
        self.covariances_ = np.asarray(cov, dtype=dtype)
        self.precisions_cholesky_ = np.asarray(p["prec_chol"], dtype=dtype)
        self.precisions_ = np.asarray(precisions, dtype=dtype)
        self.converged_ = result.converged
        self.n_iter_ = result.n_iter
        self.lower_bound_ = result.objective
        self.lower_bounds_ = [r.objective for r in result.history]
        self.history_ = result.history

    # --- public API ----------------------------------------------------------
    def _frames(self, X, what):
        check_is_fitted(self)
        # frames of a distributed dataset are shifted by its mean; others by their own
        shift = X.mean if isinstance(X, DistributedData) else None
        out = self._predict_frames(X, gmm_frames, what, self.covariance_type,
                                   self.weights_.astype(np.float64),
                                   self.means_.astype(np.float64),
                                   self.precisions_cholesky_.astype(np.float64),
                                   self.backend, self.chunk_size, shift)
        if what == "labels":
            return out
        # float32 frames give float32 log-likelihoods and responsibilities (computed in float64)
        dtype = X.dtype if isinstance(X, DistributedData) else getattr(X, "dtype", None)
        return out.astype(_out_dtype(dtype), copy=False)

    def score_samples(self, X):
        """Log-likelihood of each frame.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or DistributedData

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        return self._frames(X, "logprob")

    def score(self, X, y=None, sample_weight=None):
        """Mean (weighted) log-likelihood per frame."""
        return float(np.average(self.score_samples(X), weights=sample_weight))

    def predict_proba(self, X):
        """Responsibilities, shape (n_samples, n_components)."""
        return self._frames(X, "resp")

    def predict(self, X):
        """Most responsible component of each frame, shape (n_samples,)."""
        return self._frames(X, "labels")

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit, then label the frames with the fitted model, shape (n_samples,)."""
        return self.fit(X, sample_weight=sample_weight).predict(X)

    def sample(self, n_samples=1):
        """Draw frames from the fitted mixture (as :meth:`sklearn.mixture.GaussianMixture.sample`).

        Parameters
        ----------
        n_samples : int, default=1

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,)
            Component of each frame.
        """
        check_is_fitted(self)
        if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral) \
                or n_samples < 1:
            raise ParameterError(f"Invalid value for '{{name}}': {n_samples!r}. The sampling "
                                 "requires at least one sample.", "n_samples")
        rng = check_random_state(self.random_state)
        counts = rng.multinomial(n_samples, self.weights_)
        d = self.means_.shape[1]
        ct = self.covariance_type
        parts = []
        for j, (mean, c) in enumerate(zip(self.means_, counts)):
            if ct == "full":
                cov = self.covariances_[j]
            elif ct == "tied":
                cov = self.covariances_
            if ct in ("full", "tied"):
                parts.append(rng.multivariate_normal(mean, cov, c))
            else:
                sd = np.sqrt(self.covariances_[j] if ct == "diag"
                             else np.full(d, self.covariances_[j]))
                parts.append(mean + rng.standard_normal(size=(c, d)) * sd)
        X = np.vstack(parts)
        y = np.concatenate([np.full(c, j, dtype=np.int64) for j, c in enumerate(counts)])
        return X, y

    def bic(self, X):
        """Bayesian information criterion of ``X`` under the model."""
        n = X.n_samples if isinstance(X, DistributedData) else np.shape(X)[0]
        return -2 * self.score(X) * n + self._n_parameters() * np.log(n)

    def aic(self, X):
        """Akaike information criterion of ``X`` under the model."""
        n = X.n_samples if isinstance(X, DistributedData) else np.shape(X)[0]
        return -2 * self.score(X) * n + 2 * self._n_parameters()

    def _n_parameters(self):
        k, d = self.means_.shape
        cov = {"full": k * d * (d + 1) / 2, "diag": k * d, "tied": d * (d + 1) / 2,
               "spherical": k}[self.covariance_type]
        return int(cov + k * d + k - 1)



def _out_dtype(dtype):
    """float32 for float32 frames, float64 for everything else."""
    return np.float32 if dtype is not None and np.dtype(dtype) == np.float32 else np.float64


def _init_array(value, name, what, shape):
    """A user-given initial parameter as float64, in scikit-learn's words when its shape is
    wrong (``what``: the parameter as scikit-learn names it) and then in ipem's."""
    arr = check_numeric_array(value, name)
    if arr.shape != tuple(shape):
        raise ParameterError(f"The parameter '{what}' should have the shape of {tuple(shape)}, "
                             f"but got {arr.shape}: {{name}} has shape {arr.shape}, expected "
                             f"{tuple(shape)}", name)
    return arr
