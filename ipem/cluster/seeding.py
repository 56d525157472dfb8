"""Initial k-means centres other than k-means++: frames drawn at random (weighted),
and centres given as an array or made by a callable.

Centres are returned shifted by the dataset mean, as the shard functions expect.
"""
from __future__ import annotations

import numpy as np

from ..em.base import sample_distinct
from ..errors import ParameterError
from ..validation import check_numeric_array
from .kmeans_plusplus import _clear, _draw, _weights_as_potential, clear_state


def check_centers(centers, n_clusters, n_features, name="init"):
    """Initial centres as a finite float64 array of shape (n_clusters, n_features).

    The messages name the parameter and say what scikit-learn's say.

    Parameters
    ----------
    centers : array-like
    n_clusters, n_features : int
    name : str

    Returns
    -------
    ndarray of shape (n_clusters, n_features), float64
    """
    arr = check_numeric_array(centers, name)
    expected = (n_clusters, n_features)
    if arr.ndim != 2 or arr.shape[0] != n_clusters:
        raise ParameterError(f"{{name}} has shape {arr.shape}, expected {expected}: The shape "
                             f"of the initial centers {arr.shape} does not match the number "
                             f"of clusters {n_clusters}.", name)
    if arr.shape[1] != n_features:
        raise ParameterError(f"{{name}} has shape {arr.shape}, expected {expected}: The shape "
                             f"of the initial centers {arr.shape} does not match the number "
                             f"of features of the data {n_features}.", name)
    return arr


def _weight_summary(shard):
    """(smallest weight, largest weight, frames of positive weight) of the shard."""
    w = np.ones(shard.X.shape[0]) if shard.weights is None else shard.weights
    if w.size == 0:
        return np.array([np.inf, -np.inf, 0.0])
    return np.array([w.min(), w.max(), float(np.count_nonzero(w))])


def _exclude(shard, rows):
    """Give the frames at global ``rows`` (those of this shard) no potential any more."""
    closest = shard.state["kpp_closest"]
    local = np.asarray(rows, np.int64) - shard.offset
    local = local[(local >= 0) & (local < closest.size)]
    closest[local] = 0.0
    return float((closest if shard.weights is None else closest * shard.weights).sum())


def random_frames(data, n_clusters, rng):
    """``n_clusters`` distinct frames drawn at random, in proportion to their weights.

    Unweighted (or equally weighted) data: frames drawn uniformly without
    replacement.  Weighted: successive sampling without replacement in
    proportion to ``sample_weight`` (as ``numpy.random.choice(replace=False, p=w)``),
    so a frame of weight 0 is never a centre.  The weights are read where the
    shards live; only the chosen frames travel.

    Parameters
    ----------
    data : DistributedData
    n_clusters : int
    rng : numpy.random.RandomState

    Returns
    -------
    ndarray of shape (n_clusters, n_features), float64 (shifted)
    """
    ctrl = data.controller
    if data.weighted:
        summary = np.array(ctrl.map(_weight_summary, data))
        lo, hi, n_positive = summary[:, 0].min(), summary[:, 1].max(), summary[:, 2].sum()
        if lo != hi:
            return _weighted_frames(data, n_clusters, rng, int(n_positive))
    idx = sample_distinct(rng, data.n_samples, n_clusters)
    return ctrl.take(data, idx) - data.mean


def _weighted_frames(data, n_clusters, rng, n_positive):
    if n_positive < n_clusters:
        raise ValueError(f"init='random': {n_positive} frames have a positive sample_weight, "
                         f"fewer than n_clusters={n_clusters}")
    ctrl = data.controller
    chosen = {}
    try:
        pots = np.array(ctrl.map(_weights_as_potential, data))
        while len(chosen) < n_clusters:
            targets = rng.uniform(size=n_clusters - len(chosen))
            idx, rows = _draw(ctrl, data, pots, targets, data.mean, rng)
            for i, row in zip(idx.tolist(), rows):
                chosen.setdefault(i, row)
            # chosen frames leave the draw: each round adds at least one new frame
            pots = np.array(ctrl.map(_exclude, data, np.fromiter(chosen, np.int64)))
    finally:
        clear_state(ctrl, _clear, data)
    return np.array(list(chosen.values()))


def callable_centers(init, data, n_clusters, rng):
    """Centres made by ``init(X, n_clusters, random_state=rng)`` (as scikit-learn calls it).

    The callable needs the frames: a distributed dataset is gathered for it.

    Returns
    -------
    ndarray of shape (n_clusters, n_features), float64 (shifted)
    """
    X = data.controller.take(data, np.arange(data.n_samples))
    if data.dtype == np.float32:
        X = X.astype(np.float32)
    centers = check_centers(init(X, n_clusters, random_state=rng), n_clusters, data.n_features)
    return centers - data.mean
