"""K-means (Lloyd) over a controller, with distributed k-means++."""
from __future__ import annotations

import time
import warnings

import numpy as np
from sklearn.base import ClusterMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

from ..em.base import EMEstimatorMixin, sample_distinct, shard_indicator, shard_telemetry
from ..em.driver import run_em
from ..kernels import get_kernels
from ..validation import (check_float, check_int, check_option, check_param_array)

_EMPTY_POLICIES = ("farthest", "keep", "error")


# ---------------------------------------------------------------------------
# shard functions (run where the shard lives)
# ---------------------------------------------------------------------------

def _clear_quietly(ctrl, func, data):
    """Drop per-shard scratch state without masking an error already on its way."""
    import sys
    in_flight = sys.exc_info()[1]  # inside a finally: the exception propagating, if any
    try:
        ctrl.map(func, data)
    except Exception:
        if in_flight is None:
            raise


def _km_reset(shard):
    shard.state["km_labels"] = np.full(shard.X.shape[0], -1, dtype=np.int64)
    shard.state["km_mindist"] = np.zeros(shard.X.shape[0])
    return 0.0


def _km_clear(shard):
    shard.state.pop("km_labels", None)
    shard.state.pop("km_mindist", None)
    return 0.0


def _km_step(shard, shift, centers, backend, chunk_size, n_shards):
    """One Lloyd E-step on a shard; keeps labels and distances in shard.state."""
    kern = get_kernels(backend)
    n = shard.X.shape[0]
    old = shard.state.get("km_labels")
    labels = np.empty(n, dtype=np.int64)
    mindist = np.empty(n)
    t0 = time.perf_counter()
    counts, sums, inertia = kern.kmeans_step(shard.X, shift, centers, labels, mindist, chunk_size)
    dt = time.perf_counter() - t0
    n_changed = n if old is None or old.shape[0] != n else int(np.count_nonzero(labels != old))
    shard.state["km_labels"] = labels
    shard.state["km_mindist"] = mindist
    return {"counts": counts, "sums": sums, "inertia": inertia, "n_changed": float(n_changed),
            "shard_time": shard_indicator(shard, n_shards, dt),
            "shard_frames": shard_indicator(shard, n_shards, n)}


def _km_farthest(shard, m, shift):
    """The ``m`` frames farthest from their centre (from the last E-step)."""
    d = shard.state["km_mindist"]
    m = min(int(m), d.shape[0])
    if m == 0:
        return np.zeros(0), np.zeros(0, np.int64), np.zeros((0, shard.X.shape[1])), np.zeros(0, np.int64)
    idx = np.argpartition(d, -m)[-m:]
    rows = shard.X[idx].astype(np.float64) - shift
    return d[idx], idx + shard.offset, rows, shard.state["km_labels"][idx]


def _km_labels(shard, shift, centers, backend, chunk_size):
    kern = get_kernels(backend)
    n = shard.X.shape[0]
    labels = np.empty(n, dtype=np.int64)
    mindist = np.empty(n)
    kern.kmeans_step(shard.X, shift, centers, labels, mindist, chunk_size)
    return np.stack([labels.astype(np.float64), mindist], axis=1)


def _kpp_commit(shard, shift, center, backend, chunk_size):
    """Fold a new centre into the shard's closest squared distances; return the potential."""
    kern = get_kernels(backend)
    n = shard.X.shape[0]
    lab = np.empty(n, dtype=np.int64)
    dist = np.empty(n)
    kern.kmeans_step(shard.X, shift, center[None, :], lab, dist, chunk_size)
    closest = shard.state.get("kpp_closest")
    if closest is None:
        closest = dist
    else:
        np.minimum(closest, dist, out=closest)
    shard.state["kpp_closest"] = closest
    return float(closest.sum())


def _kpp_start(shard, shift, center, backend, chunk_size):
    shard.state.pop("kpp_closest", None)
    return _kpp_commit(shard, shift, center, backend, chunk_size)


def _kpp_sample(shard, owner, bounds, targets, shift):
    """Frames whose cumulative potential crosses the targets this shard owns."""
    mine = owner == shard.index
    closest = shard.state["kpp_closest"]
    if not np.any(mine) or closest.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, shard.X.shape[1]))
    cum = np.cumsum(closest)
    local = np.searchsorted(cum, targets[mine] - bounds[shard.index])
    np.clip(local, None, closest.size - 1, out=local)
    return np.flatnonzero(mine), local + shard.offset, shard.X[local].astype(np.float64) - shift


def _kpp_trial(shard, shift, candidates, backend, chunk_size):
    """Potential of each candidate centre if it were added: shape (n_candidates,)."""
    kern = get_kernels(backend)
    n = shard.X.shape[0]
    lab = np.empty(n, dtype=np.int64)
    dist = np.empty(n)
    closest = shard.state["kpp_closest"]
    pots = np.empty(candidates.shape[0])
    for j in range(candidates.shape[0]):
        kern.kmeans_step(shard.X, shift, candidates[j:j + 1], lab, dist, chunk_size)
        pots[j] = np.minimum(closest, dist).sum()
    return pots


def _kpp_clear(shard):
    shard.state.pop("kpp_closest", None)
    return 0.0


def kmeans_plusplus_distributed(data, n_clusters, random_state, *, n_local_trials=None,
                                backend=None, chunk_size=None):
    """Greedy k-means++ seeding over distributed data, without gathering it.

    The client draws the random numbers; shards keep their closest squared
    distances and return only candidate frames and potentials (two round
    trips per centre).

    Parameters
    ----------
    data : DistributedData
    n_clusters : int
    random_state : numpy.random.RandomState
    n_local_trials : int, optional
        Candidates per centre; default ``2 + int(log(n_clusters))`` as in
        scikit-learn.

    Returns
    -------
    centers : ndarray of shape (n_clusters, n_features), float64 (shifted)
    indices : ndarray of shape (n_clusters,), int64
        Global row indices of the chosen frames.
    """
    ctrl = data.controller
    shift = data.mean
    if n_local_trials is None:
        n_local_trials = 2 + int(np.log(n_clusters))
    centers = np.empty((n_clusters, data.n_features))
    indices = np.empty(n_clusters, dtype=np.int64)
    first = int(random_state.randint(data.n_samples))
    centers[0] = ctrl.take(data, [first])[0] - shift
    indices[0] = first
    pots = np.array(ctrl.map(_kpp_start, data, shift, centers[0], backend, chunk_size))
    try:
        for c in range(1, n_clusters):
            bounds = np.concatenate([[0.0], np.cumsum(pots)])
            targets = random_state.uniform(size=n_local_trials) * bounds[-1]
            cand_idx = np.full(n_local_trials, -1, np.int64)
            cand = np.empty((n_local_trials, data.n_features))
            if bounds[-1] > 0:
                # the shard whose potential range holds each target; rounding at the top
                # edge goes to the last shard that has potential (never an empty one)
                owner = np.clip(np.searchsorted(bounds, targets, side="right") - 1, 0,
                                len(pots) - 1)
                owner = np.where(pots[owner] > 0, owner, np.flatnonzero(pots > 0)[-1])
                for which, gidx, rows in ctrl.map(_kpp_sample, data, owner, bounds, targets,
                                                  shift):
                    cand_idx[which] = gidx
                    cand[which] = rows
            else:
                # every frame coincides with a chosen centre: any frame will do
                cand_idx[:] = random_state.randint(data.n_samples, size=n_local_trials)
                cand[:] = ctrl.take(data, cand_idx) - shift
            if np.any(cand_idx < 0):
                raise RuntimeError("k-means++: a candidate centre was not found on any shard")
            trial = np.array(ctrl.map(_kpp_trial, data, shift, cand, backend, chunk_size))
            best = int(np.argmin(trial.sum(axis=0)))
            centers[c] = cand[best]
            indices[c] = cand_idx[best]
            pots = np.array(ctrl.map(_kpp_commit, data, shift, cand[best], backend, chunk_size))
    finally:
        _clear_quietly(ctrl, _kpp_clear, data)
    return centers, indices


# ---------------------------------------------------------------------------
# the estimator
# ---------------------------------------------------------------------------

class KMeans(ClusterMixin, EMEstimatorMixin):
    """K-means clustering (Lloyd) over a local or ipyparallel controller.

    Parameters
    ----------
    n_clusters : int, default=8
    init : {"k-means++", "random"} or array-like of shape (n_clusters, n_features)
        ``"k-means++"``: greedy k-means++ computed over the distributed data
        (frames are never gathered on the client). ``"random"``: distinct
        frames chosen uniformly.
    n_init : "auto" or int, default="auto"
        Number of initialisations; the best inertia wins.  ``"auto"``: 1 for
        k-means++ or an array, 10 for random (as scikit-learn).
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

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
    labels_ : ndarray of shape (n_samples,)
        Only when ``fit`` was given an array (not a distributed dataset).
    inertia_ : float
    n_iter_ : int
    converged_ : bool
    history_ : list of IterationRecord
    n_features_in_ : int
    """

    def __init__(self, n_clusters=8, *, init="k-means++", n_init="auto", max_iter=300,
                 tol=1e-4, empty_cluster="farthest", random_state=None, controller=None,
                 backend=None, chunk_size=None, callbacks=None, verbose=0):
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

    # --- checks ------------------------------------------------------------
    def _check_params(self, n_features):
        check_int(self.n_clusters, "n_clusters")
        check_int(self.max_iter, "max_iter")
        check_float(self.tol, "tol")
        check_option(self.empty_cluster, "empty_cluster", _EMPTY_POLICIES)
        get_kernels(self.backend)
        if self.chunk_size is not None:
            check_int(self.chunk_size, "chunk_size")
        if isinstance(self.init, str):
            check_option(self.init, "init", ("k-means++", "random"))
        else:
            check_param_array(self.init, "init", (self.n_clusters, n_features))
        if self.n_init == "auto":
            return 10 if isinstance(self.init, str) and self.init == "random" else 1
        return check_int(self.n_init, "n_init")

    # --- EM hooks ------------------------------------------------------------
    def _em_e_step(self, data, params):
        return data.controller.reduce(_km_step, data, data.mean, params["centers"],
                                      self.backend, self.chunk_size, data.n_shards)

    def _em_m_step(self, stats, params, data):
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
                "n_empty": int(empty.size), "relocated": relocated, **shard_telemetry(stats)}
        return {"centers": centers}, float(stats["inertia"]), info

    def _relocate(self, data, counts, sums, empty):
        found = data.controller.map(_km_farthest, data, empty.size, data.mean)
        dist = np.concatenate([f[0] for f in found])
        gidx = np.concatenate([f[1] for f in found])
        rows = np.concatenate([f[2] for f in found])
        labs = np.concatenate([f[3] for f in found])
        order = np.lexsort((gidx, -dist))[:empty.size]
        for j, i in zip(empty, order):
            counts[labs[i]] -= 1
            sums[labs[i]] -= rows[i]
            counts[j] = 1
            sums[j] = rows[i]
        return int(min(empty.size, order.size))

    def _em_converged(self, record, tol):
        return record.info["n_changed"] == 0 or record.info["center_shift"] <= self._tol_scaled

    # --- fitting ------------------------------------------------------------
    def _init_centers(self, data, rng):
        if not isinstance(self.init, str):
            return np.asarray(self.init, dtype=np.float64) - data.mean
        if self.init == "random":
            idx = sample_distinct(rng, data.n_samples, self.n_clusters)
            return data.controller.take(data, idx) - data.mean
        centers, _ = kmeans_plusplus_distributed(data, self.n_clusters, rng,
                                                 backend=self.backend, chunk_size=self.chunk_size)
        return centers

    def fit(self, X, y=None):
        """Compute k-means clustering.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or DistributedData
        y : ignored

        Returns
        -------
        self
        """
        data, owned = self._fit_data(X, min_samples=check_int(self.n_clusters, "n_clusters"))
        try:
            self._fit_distributed(data)
            if owned:
                lab = np.concatenate(data.controller.map(_km_labels_only, data, data.mean,
                                                         self.cluster_centers_ - data.mean,
                                                         self.backend, self.chunk_size))
                self.labels_ = lab
        finally:
            if owned:
                data.free()
        return self

    def _fit_distributed(self, data):
        n_init = self._check_params(data.n_features)
        rng = check_random_state(self.random_state)
        self._tol_scaled = float(np.mean(data.var)) * float(self.tol)
        callbacks = self._callbacks()
        best = None
        t_start = time.perf_counter()
        try:
            for _ in range(n_init):
                centers = self._init_centers(data, rng)
                data.controller.map(_km_reset, data)
                result = run_em(self, data, {"centers": centers}, max_iter=self.max_iter,
                                tol=self.tol, callbacks=callbacks, start_time=t_start)
                final = self._em_e_step(data, result.params)
                result.objective = float(final["inertia"])
                if best is None or result.objective < best.objective:
                    best = result
        finally:
            _clear_quietly(data.controller, _km_clear, data)
        centers = best.params["centers"]
        self.cluster_centers_ = centers + data.mean
        self.inertia_ = best.objective
        self.n_iter_ = best.n_iter
        self.converged_ = best.converged
        self.history_ = best.history
        self.n_features_in_ = data.n_features
        if not best.converged:
            warnings.warn(f"KMeans did not converge in {self.max_iter} iterations",
                          ConvergenceWarning, stacklevel=3)
        return self

    def predict(self, X):
        """Index of the nearest centre for each frame, shape (n_samples,)."""
        out = self._map_frames(X, _km_labels_from_shard, self.cluster_centers_,
                               self.backend, self.chunk_size)
        return out.astype(np.int64)

    def fit_predict(self, X, y=None):
        return self.fit(X).predict(X)

    def score(self, X, y=None):
        """Opposite of the inertia of ``X`` under the fitted centres."""
        d = self._map_frames(X, _km_dist_from_shard, self.cluster_centers_,
                             self.backend, self.chunk_size)
        return -float(d.sum())


def _km_labels_only(shard, shift, centers, backend, chunk_size):
    return _km_labels(shard, shift, centers, backend, chunk_size)[:, 0].astype(np.int64)


def _local_shift(shard):
    # a shift for frames outside any distributed dataset: the shard's own mean
    x = shard.X
    return x.mean(axis=0, dtype=np.float64) if x.shape[0] else np.zeros(x.shape[1])


def _km_labels_from_shard(shard, centers, backend, chunk_size):
    s = _local_shift(shard)
    return _km_labels(shard, s, centers - s, backend, chunk_size)[:, 0]


def _km_dist_from_shard(shard, centers, backend, chunk_size):
    s = _local_shift(shard)
    return _km_labels(shard, s, centers - s, backend, chunk_size)[:, 1]
