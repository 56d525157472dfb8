"""KMeans: scikit-learn's estimator (Lloyd), fitted over a controller.

The class only fills the hooks of :class:`ipem.em.base.EMEstimator`; the shard
functions are in :mod:`ipem.cluster.lloyd`, the distributed seeding in
:mod:`ipem.cluster.kmeans_plusplus`.
"""
from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.base import ClassNamePrefixFeaturesOutMixin, ClusterMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted

from ..em.base import EMEstimator
from ..kernels import get_kernels
from ..parallel import DistributedData
from ..validation import check_float, check_int, check_option
from . import lloyd
from .kmeans_plusplus import clear_state, kmeans_plusplus_distributed
from .seeding import callable_centers, check_centers, random_frames

_EMPTY_POLICIES = ("farthest", "keep", "error")
_ALGORITHMS = ("lloyd", "elkan")


def _dense(X):
    """Sparse input as a dense array of its own dtype (the kernels are dense)."""
    return X.toarray() if sp.issparse(X) else X


def _out_dtype(X):
    """float32 for float32 input, float64 otherwise (as scikit-learn's outputs)."""
    return np.float32 if getattr(X, "dtype", None) == np.float32 else np.float64


class KMeans(ClassNamePrefixFeaturesOutMixin, ClusterMixin, TransformerMixin, EMEstimator):
    """K-means clustering (Lloyd) over a local or ipyparallel controller.

    Parameters
    ----------
    n_clusters : int, default=8
    init : {"k-means++", "random"}, callable or array-like of shape (n_clusters, n_features)
        ``"k-means++"``: greedy k-means++ computed over the distributed data
        (frames are never gathered on the client). ``"random"``: distinct
        frames drawn in proportion to ``sample_weight`` (uniformly without
        weights; a frame of weight 0 is never a centre).  A callable is called
        as ``init(X, n_clusters, random_state=rng)`` and returns the centres
        (the frames are gathered on the client for it).  An array: the centres;
        with ``n_init > 1`` a RuntimeWarning says that only one init is made.
    n_init : "auto" or int, default="auto"
        Number of initialisations; the best inertia wins.  ``"auto"``: 1 for
        k-means++ or an array, 10 for random or a callable (as scikit-learn).
    max_iter : int, default=300
    tol : float, default=1e-4
        Relative tolerance on the squared centre shift, scaled by the mean
        per-feature variance of the data (as scikit-learn).
    empty_cluster : {"farthest", "keep", "error"}, default="farthest"
        What happens to a cluster that receives no frame: ``"farthest"``
        moves it to the frame farthest from its centre (scikit-learn's
        policy, computed over all shards), ``"keep"`` leaves the centre where
        it was, ``"error"`` raises.  The number is logged in each record's
        ``info["n_empty"]``.
    random_state : int, RandomState or None
    controller : None, int, Controller or ipyparallel.DirectView
        Where the data lives and the kernels run (default: in-process).
    backend : {"c", "numpy"} or None
        Kernel backend (default: :data:`ipem.kernels.BACKEND`).
    chunk_size : int or None
        Frames per kernel chunk (default: chosen from ``n_clusters``).
    callbacks : callable or list of callables
        Called with an :class:`ipem.IterationRecord` after every iteration.
    verbose : int, default=0
        ipem logs each iteration record (logger ``ipem``, INFO) where
        scikit-learn prints its own lines: library code never prints.
    copy_x : bool, default=True
        Accepted for scikit-learn compatibility; ipem never modifies ``X``
        (frames are centred on the fly by the kernels), so it has no effect.
    algorithm : {"lloyd", "elkan"}, default="lloyd"
        Both run ipem's one exact Lloyd iteration, which skips the distance
        computations that Hamerly's bounds prove cannot change a label: the
        labels, centres, inertia and ``n_iter_`` are the same for both (and
        the same as a plain Lloyd pass).  "elkan" with one cluster warns, as
        scikit-learn does.

    ``X`` may be a dense array, a scipy.sparse matrix (densified: ipem's
    kernels are dense, so this needs ``n_samples * n_features`` floats), or a
    :class:`~ipem.parallel.DistributedData`.  float32 input gives float32
    ``cluster_centers_`` and ``transform`` output (statistics are float64).

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
    labels_ : ndarray of shape (n_samples,)
        Only when ``fit`` was given an array (not a distributed dataset).
    inertia_ : float
    n_iter_ : int
        Lloyd iterations of the best initialisation.
    converged_ : bool
    history_ : list of IterationRecord
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Only when ``X`` had string column names (a DataFrame).

    Examples
    --------
    >>> import numpy as np, ipem
    >>> X = np.array([[1, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]], dtype=float)
    >>> km = ipem.KMeans(2, random_state=0).fit(X)
    >>> sorted(km.cluster_centers_[:, 0].tolist())
    [1.0, 10.0]
    """

    def __init__(self, n_clusters=8, *, init="k-means++", n_init="auto", max_iter=300,
                 tol=1e-4, empty_cluster="farthest", random_state=None, controller=None,
                 backend=None, chunk_size=None, callbacks=None, verbose=0, copy_x=True,
                 algorithm="lloyd"):
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.empty_cluster = empty_cluster
        self.random_state = random_state
        self.controller = controller
        self.backend = backend
        self.chunk_size = chunk_size
        self.callbacks = callbacks
        self.verbose = verbose
        self.copy_x = copy_x
        self.algorithm = algorithm

    # --- hooks of the fit template -------------------------------------------
    _maximize = False

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # densified (see the class docstring)
        return tags

    def _min_samples(self):
        return check_int(self.n_clusters, "n_clusters")

    def _n_init(self):
        if _is_array(self.init):
            return 1  # one fit of the given centres (n_init > 1 warns in _check_params)
        if isinstance(self.n_init, str) and self.n_init == "auto":
            return 10 if callable(self.init) or self.init == "random" else 1
        return check_int(self.n_init, "n_init")

    def _fit_data(self, X, sample_weight):
        try:
            return super()._fit_data(_dense(X), sample_weight)
        except ValueError as exc:
            if "components/clusters to fit" not in str(exc):
                raise
            # scikit-learn's words too, which its tests match
            raise ValueError(f"{exc}: n_samples should be >= n_clusters="
                             f"{self.n_clusters}") from None

    def _check_params(self, n_features):
        check_int(self.n_clusters, "n_clusters")
        check_int(self.max_iter, "max_iter")
        check_float(self.tol, "tol")
        check_option(self.empty_cluster, "empty_cluster", _EMPTY_POLICIES)
        get_kernels(self.backend)
        if self.chunk_size is not None:
            check_int(self.chunk_size, "chunk_size")
        check_option(self.algorithm, "algorithm", _ALGORITHMS)
        if self.algorithm == "elkan" and self.n_clusters == 1:
            warnings.warn("algorithm='elkan' doesn't make sense for a single cluster. "
                          "Using 'lloyd' instead.", RuntimeWarning, stacklevel=4)
        if isinstance(self.init, str):
            check_option(str(self.init), "init", ("k-means++", "random"))
        elif _is_array(self.init):
            check_centers(self.init, self.n_clusters, n_features)
            n_init = self.n_init
            if not (isinstance(n_init, str) and n_init == "auto") and check_int(
                    n_init, "n_init") != 1:
                warnings.warn("Explicit initial center position passed: performing only one "
                              f"init in {type(self).__name__} instead of n_init={n_init}.",
                              RuntimeWarning, stacklevel=4)
        self._n_init()
        return {}

    def _fit_runs(self, data, rng, given):
        # tolerance on the centre shift, scaled by the data's variance (as scikit-learn)
        self._tol_scaled = float(np.mean(data.var)) * float(self.tol)
        self._n_distinct = {}
        try:
            return super()._fit_runs(data, rng, given)
        finally:
            clear_state(data.controller, lloyd.clear, data)

    def initialize(self, data, rng, given):
        """EM hook: the initial centres (given, random frames or k-means++), shifted."""
        if _is_array(self.init):
            centers = check_centers(self.init, self.n_clusters, data.n_features) - data.mean
        elif callable(self.init):
            centers = callable_centers(self.init, data, self.n_clusters, rng)
        elif self.init == "random":
            centers = random_frames(data, self.n_clusters, rng)
        else:
            centers, _ = kmeans_plusplus_distributed(data, self.n_clusters, rng,
                                                     backend=self.backend,
                                                     chunk_size=self.chunk_size)
        data.controller.map(lloyd.reset, data)
        return {"centers": centers}

    def restore_shards(self, data, params):
        """After engines were replaced: the labels of the previous E-step, as before
        (:class:`~ipem.em.hooks.RestoresShards`)."""
        data.controller.map(lloyd.reset, data)
        if params is not None:
            self.e_step(data, params)

    def e_step(self, data, params):
        """EM hook (:class:`~ipem.em.hooks.EMHooks`): a Lloyd assignment step on every
        shard, ``(stats, shard_times)`` (a Reduction)."""
        return data.controller.reduce_timed(lloyd.step, data, data.mean, params["centers"],
                                            self.backend, self.chunk_size)

    def m_step(self, stats, params, data):
        """EM hook: the new centres (empty clusters relocated), the inertia, the telemetry."""
        counts, sums = stats["counts"].copy(), stats["sums"].copy()
        empty = np.flatnonzero(counts == 0)
        relocated = 0
        if empty.size:
            if self.empty_cluster == "error":
                raise ValueError(f"k-means: clusters {empty.tolist()} received no frames "
                                 "(empty_cluster='error')")
            if self.empty_cluster == "farthest":
                relocated = self._relocate(data, counts, sums, empty)
        old = params["centers"]
        centers = old.copy()
        filled = counts > 0
        centers[filled] = sums[filled] / counts[filled, None]
        shift = float(((centers - old) ** 2).sum())
        info = {"n_changed": int(stats["n_changed"]), "center_shift": shift,
                "n_empty": int(empty.size), "relocated": relocated}
        return {"centers": centers}, float(stats["inertia"]), info

    def _relocate(self, data, counts, sums, empty):
        """Move empty clusters to the frames farthest from their centres (all shards).

        A frame that sits on its centre (distance 0) is not taken: there are fewer
        distinct frames than clusters, and the empty cluster keeps its centre.
        """
        found = data.controller.map(lloyd.farthest, data, empty.size, data.mean)
        dist, gidx, rows, labs, w = (np.concatenate([f[i] for f in found]) for i in range(5))
        order = np.lexsort((gidx, -dist))[:empty.size]
        order = order[dist[order] > 0]
        for j, i in zip(empty, order):
            counts[labs[i]] -= w[i]
            sums[labs[i]] -= w[i] * rows[i]
            counts[j] = w[i]
            sums[j] = w[i] * rows[i]
        return int(min(empty.size, order.size))

    def is_converged(self, record):
        """No label changed, or the centres moved less than ``tol`` (scaled)."""
        return record.info["n_changed"] == 0 or record.info["center_shift"] <= self._tol_scaled

    def _finish_run(self, data, result):
        # the inertia of the final centres (scikit-learn reports it after the last update)
        stats = self.e_step(data, result.params).total
        result.objective = float(stats["inertia"])
        self._n_distinct[id(result)] = int(np.count_nonzero(stats["counts"]))

    def _set_fitted(self, result, data):
        self.cluster_centers_ = (result.params["centers"] + data.mean).astype(data.dtype)
        self._n_features_out = self.cluster_centers_.shape[0]
        self.inertia_ = result.objective
        self.n_iter_ = result.n_iter
        self.converged_ = result.converged
        self.history_ = result.history
        n_distinct = self._n_distinct.pop(id(result), self.n_clusters)
        if n_distinct < self.n_clusters:
            warnings.warn(f"Number of distinct clusters ({n_distinct}) found smaller than "
                          f"n_clusters ({self.n_clusters}). Possibly due to duplicate points "
                          "in X.", ConvergenceWarning, stacklevel=4)

    def _labels(self, data):
        return np.concatenate(data.controller.map(lloyd.labels_of, data, data.mean,
                                                  self.cluster_centers_ - data.mean,
                                                  self.backend, self.chunk_size))

    # --- public API ----------------------------------------------------------
    def fit(self, X, y=None, sample_weight=None):
        """Compute k-means clustering.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or DistributedData
        y : ignored
        sample_weight : array-like of shape (n_samples,), optional
            Per-frame weights (arrays only).

        Returns
        -------
        self
        """
        labels = self._fit(X, sample_weight,
                           keep=None if isinstance(X, DistributedData) else self._labels)
        if labels is not None:
            self.labels_ = labels
        return self

    def fit_predict(self, X, y=None, sample_weight=None):
        """Compute the clustering and return the label of each frame, shape (n_samples,).

        One pass over the frames after EM, as ``fit`` makes for ``labels_``.
        """
        if isinstance(X, DistributedData):
            return self._fit(X, sample_weight, keep=self._labels)
        return self.fit(X, sample_weight=sample_weight).labels_

    def predict(self, X):
        """Index of the nearest centre for each frame, shape (n_samples,)."""
        check_is_fitted(self)
        out = self._predict_frames(_dense(X), lloyd.nearest, self.cluster_centers_, self.backend,
                                   self.chunk_size)
        return out[:, 0].astype(np.int64)

    def transform(self, X):
        """Euclidean distance of each frame to each centre, shape (n_samples, n_clusters).

        float32 for float32 frames, float64 otherwise.
        """
        check_is_fitted(self)
        X = _dense(X)
        return self._predict_frames(X, lloyd.distances, self.cluster_centers_).astype(
            _out_dtype(X), copy=False)

    def fit_transform(self, X, y=None, sample_weight=None):
        """Fit, then :meth:`transform` the same frames."""
        return self.fit(X, sample_weight=sample_weight).transform(X)

    def score(self, X, y=None, sample_weight=None):
        """Opposite of the (weighted) inertia of ``X`` under the fitted centres."""
        check_is_fitted(self)
        d = self._predict_frames(_dense(X), lloyd.nearest, self.cluster_centers_, self.backend,
                                 self.chunk_size)[:, 1]
        if sample_weight is not None:
            d = d * np.asarray(sample_weight, dtype=np.float64)
        return -float(d.sum())


def _is_array(init):
    """Whether ``init`` is given centres (not a method's name or a callable)."""
    return not (isinstance(init, str) or callable(init))
