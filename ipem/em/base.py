"""Plumbing shared by the estimators: data placement, per-frame maps, callbacks."""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator

from ..validation import check_frames
from ..parallel.controller import DistributedData, Shard, as_controller


class EMEstimatorMixin(BaseEstimator):
    """Mixin for estimators fitted by :func:`ipem._em.run_em` over a controller."""

    def _fit_data(self, X, min_samples):
        """Validate ``X`` and return ``(data, owned)``.

        Arrays are validated on the client and distributed with the
        estimator's controller (``owned=True``: freed after fitting); an
        already distributed dataset is used where it is.
        """
        if isinstance(X, DistributedData):
            check_frames(X, min_samples=min_samples)
            return X, False
        Xv = check_frames(X, min_samples=min_samples)
        controller = as_controller(self.controller)
        return controller.distribute(Xv), True

    def _map_frames(self, X, func, *args):
        """Apply a shard function to the frames of ``X``; results concatenated.

        ``X`` may be an array (processed here, in-process) or a
        :class:`DistributedData` (processed where its shards live).
        """
        n_features = getattr(self, "n_features_in_", None)
        if isinstance(X, DistributedData):
            check_frames(X, n_features=n_features)
            parts = X.controller.map(func, X, *args)
            return np.concatenate(parts, axis=0)
        Xv = check_frames(X, n_features=n_features)
        return func(Shard(X=Xv, index=0, offset=0), *args)

    def _callbacks(self):
        cbs = self.callbacks
        if cbs is None:
            cbs = []
        elif callable(cbs):
            cbs = [cbs]
        cbs = list(cbs)
        if self.verbose:
            cbs.append(_VerbosePrinter(type(self).__name__, getattr(self, "verbose_interval", 1)))
        return cbs


class _VerbosePrinter:
    def __init__(self, name, interval):
        self.name = name
        self.interval = max(int(interval), 1)

    def __call__(self, record):
        if record.iteration % self.interval == 0 or record.iteration == 1:
            stage = f" K={record.stage}" if record.stage is not None else ""
            print(f"{self.name}{stage} iter {record.iteration:4d}  objective {record.objective:.6f}"
                  f"  change {record.change:.3e}  {record.time * 1e3:.1f} ms", flush=True)


def shard_indicator(shard, n_shards, value):
    """A length-``n_shards`` vector with ``value`` at this shard's index.

    Summing these over shards gives per-shard telemetry (frame counts, times)
    through the same reduction as the statistics.
    """
    v = np.zeros(n_shards)
    if shard.index < n_shards:
        v[shard.index] = value
    return v


def sample_distinct(rng, n, k):
    """``k`` distinct indices in ``[0, n)`` in random order, without O(n) memory.

    For ``k`` small against ``n`` (the usual case: K components, N frames) indices
    are drawn with replacement and duplicates dropped until ``k`` remain; otherwise
    a permutation is used.

    Parameters
    ----------
    rng : numpy.random.RandomState
    n, k : int

    Returns
    -------
    ndarray of shape (k,), int64
    """
    if k > n:
        raise ValueError(f"cannot draw {k} distinct indices from {n}")
    if 4 * k >= n:
        return rng.permutation(n)[:k].astype(np.int64)
    chosen = {}
    while len(chosen) < k:
        for i in rng.randint(n, size=2 * (k - len(chosen))):
            chosen.setdefault(int(i), None)
            if len(chosen) == k:
                break
    return np.fromiter(chosen, dtype=np.int64, count=k)


def shard_telemetry(stats):
    """Per-shard frame counts and E-step seconds (summed indicators) for a record's info."""
    return {"shard_frames": stats["shard_frames"].astype(np.int64).tolist(),
            "shard_time": stats["shard_time"].tolist()}


__all__ = ["EMEstimatorMixin", "sample_distinct", "shard_indicator", "shard_telemetry"]
