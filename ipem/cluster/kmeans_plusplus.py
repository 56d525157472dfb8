"""Greedy k-means++ seeding over distributed frames, without gathering them.

The client draws the random numbers; shards keep their closest squared
distances in ``shard.state`` and return only candidate frames and potentials
(two round trips per centre).  With frame weights, potentials are weighted
and the first centre is drawn in proportion to the weights.
"""
from __future__ import annotations

import numpy as np

from ..kernels import get_kernels


def _potential(shard, closest):
    return closest if shard.weights is None else closest * shard.weights


def _commit(shard, shift, center, backend, chunk_size, trial=None):
    """Fold a new centre into the shard's closest squared distances; return the potential.

    ``trial``: the index of the centre among the candidates of the last
    :func:`_trial`, whose distances the shard kept (no pass over the frames).
    """
    kept = shard.state.pop("kpp_trial", None)
    if trial is not None and kept is not None:
        dist = kept[:, trial]
    else:
        kern = get_kernels(backend)
        _, dist = kern.kmeans_pp_trial(shard.X, shift, center[None, :], None, None, chunk_size)
        dist = dist[:, 0]
    closest = shard.state.get("kpp_closest")
    if closest is None:
        closest = np.ascontiguousarray(dist)
    else:
        np.minimum(closest, dist, out=closest)
    shard.state["kpp_closest"] = closest
    return float(_potential(shard, closest).sum())


def _start(shard, shift, center, backend, chunk_size):
    shard.state.pop("kpp_closest", None)
    shard.state.pop("kpp_trial", None)
    return _commit(shard, shift, center, backend, chunk_size)


def _weights_as_potential(shard):
    """Make the frame weights (or ones) the potential, to draw the first centre."""
    shard.state["kpp_closest"] = np.ones(shard.X.shape[0])
    return float(_potential(shard, shard.state["kpp_closest"]).sum())


def _sample(shard, owner, bounds, targets, shift):
    """Frames whose cumulative potential crosses the targets this shard owns."""
    mine = owner == shard.index
    closest = shard.state["kpp_closest"]
    if not np.any(mine) or closest.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, shard.X.shape[1]))
    pot = _potential(shard, closest)
    cum = np.cumsum(pot)
    local = np.searchsorted(cum, targets[mine] - bounds[shard.index])
    # rounding past the top: the last frame that has potential (never one of weight 0)
    positive = np.flatnonzero(pot > 0)
    np.clip(local, None, positive[-1] if positive.size else closest.size - 1, out=local)
    return np.flatnonzero(mine), local + shard.offset, shard.X[local].astype(np.float64) - shift


def _trial(shard, shift, candidates, backend, chunk_size):
    """Potential of each candidate centre if it were added: shape (n_candidates,).

    One pass over the frames for all candidates; their distances stay on the
    shard for :func:`_commit`.
    """
    kern = get_kernels(backend)
    pots, dist = kern.kmeans_pp_trial(shard.X, shift, candidates, shard.state["kpp_closest"],
                                      shard.weights, chunk_size)
    shard.state["kpp_trial"] = dist
    return pots


def _clear(shard):
    shard.state.pop("kpp_closest", None)
    shard.state.pop("kpp_trial", None)
    return 0.0


def _draw(ctrl, data, pots, targets, shift, random_state):
    """Frames (global index, shifted row) at the cumulative potentials ``targets``."""
    n = targets.size
    cand_idx = np.full(n, -1, np.int64)
    cand = np.empty((n, data.n_features))
    bounds = np.concatenate([[0.0], np.cumsum(pots)])
    if bounds[-1] > 0:
        # the shard whose potential range holds each target; rounding at the top
        # edge goes to the last shard that has potential (never an empty one)
        owner = np.clip(np.searchsorted(bounds, targets * bounds[-1], side="right") - 1, 0,
                        len(pots) - 1)
        owner = np.where(pots[owner] > 0, owner, np.flatnonzero(pots > 0)[-1])
        for which, gidx, rows in ctrl.map(_sample, data, owner, bounds, targets * bounds[-1],
                                          shift):
            cand_idx[which] = gidx
            cand[which] = rows
    else:
        # every frame coincides with a chosen centre: any frame will do
        cand_idx[:] = random_state.randint(data.n_samples, size=n)
        cand[:] = ctrl.take(data, cand_idx) - shift
    if np.any(cand_idx < 0):
        raise RuntimeError("k-means++: a candidate centre was not found on any shard")
    return cand_idx, cand


def kmeans_plusplus_distributed(data, n_clusters, random_state, *, n_local_trials=None,
                                backend=None, chunk_size=None):
    """Greedy k-means++ seeding over distributed data, without gathering it.

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
    try:
        # the first centre by inverse CDF of the frame weights (all ones when
        # unweighted), so that integer weights and repeated frames pick the same one
        pots = np.array(ctrl.map(_weights_as_potential, data))
        idx, rows = _draw(ctrl, data, pots, random_state.uniform(size=1), shift, random_state)
        indices[0], centers[0] = int(idx[0]), rows[0]
        pots = np.array(ctrl.map(_start, data, shift, centers[0], backend, chunk_size))
        for c in range(1, n_clusters):
            targets = random_state.uniform(size=n_local_trials)
            cand_idx, cand = _draw(ctrl, data, pots, targets, shift, random_state)
            trial = np.array(ctrl.map(_trial, data, shift, cand, backend, chunk_size))
            best = int(np.argmin(trial.sum(axis=0)))
            centers[c] = cand[best]
            indices[c] = cand_idx[best]
            pots = np.array(ctrl.map(_commit, data, shift, cand[best], backend, chunk_size,
                                     best))
    finally:
        clear_state(ctrl, _clear, data)
    return centers, indices


def clear_state(ctrl, func, data):
    """Run the clean-up shard function ``func``; an error in it is logged, not raised.

    Used in ``finally`` blocks, where raising would hide the error that is
    already on its way (an engine that died, an interrupt).
    """
    import logging
    try:
        ctrl.map(func, data)
    except Exception as exc:  # the clean-up must not hide the original error
        logging.getLogger(__name__).warning("could not clear shard state: %s", exc)
