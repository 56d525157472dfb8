"""Baum-Welch statistics of utterances against a UBM, as a distributed dataset of utterances.

Every utterance ``u`` is summarised by its zeroth- and UBM-centred first-order
statistics

* ``N_uc = sum_t g_tc`` (shape (K,)),
* ``F~_uc = sum_t g_tc (x_t - m_c)`` (shape (K, D)),

with ``g_tc`` the UBM responsibilities of frame ``t`` (all K components, or
each frame's top-C through the C kernel's approximate statistics) and ``m_c``
the UBM means.  An utterance is one row of ``K + K*D`` float64 numbers,
``[N_u, F~_u.ravel()]`` (:func:`stats_rows`, :func:`split_rows`), so that the
utterances of a corpus form an ordinary 2-D dataset: a controller keeps it where
it was computed (:func:`distribute_stats`: each shard reads its own feature
files and keeps only the statistics), and the total-variability EM
(:mod:`ipem.ivector.total_variability`) reduces over it like every other EM in
ipem.  Engines that are replaced compute their rows again from the same files.
"""
from __future__ import annotations

import logging

import numpy as np

from .. import io as _io
from ..kernels import check_approximation, get_kernels
from ..mixture.params import GMMParams, ubm_params
from ..io.sources import load_source, resolve_source
from ..io.streaming import SpilledRows, place_rows, resident_rows

logger = logging.getLogger(__name__)

__all__ = ["baum_welch", "stats_rows", "split_rows", "frames_to_rows", "distribute_stats",
           "contiguous_balanced", "STREAM_UTTERANCES"]

#: utterances per block when ``engine_memory`` is given to a controller without ``block_size``
STREAM_UTTERANCES = 64


def baum_welch(X, ubm, *, top_c=None, min_post=0.0, backend=None):
    """Zeroth and UBM-centred first-order statistics of one utterance.

    Parameters
    ----------
    X : ndarray of shape (n_frames, n_features), float32 or float64
    ubm : GMMParams or tuple of (weights, means, variances)
        Validated diagonal UBM (:func:`ipem.mixture.params.ubm_params`):
        shapes (K,), (K, D), (K, D).
    top_c : int or None
        Use each frame's ``top_c`` largest responsibilities, renormalised
        (None: all K).
    min_post : float, default=0.0
        Then drop responsibilities below ``min_post`` (renormalised).
    backend : {"c", "numpy"} or None
        Kernel backend (:func:`ipem.kernels.get_kernels`).

    Returns
    -------
    n : ndarray of shape (K,), float64
    f : ndarray of shape (K, D), float64
        ``sum_t g_tc (x_t - m_c)``.

    Notes
    -----
    The kernel works around the utterance mean ``s`` (so float32 frames do
    not lose precision to a large offset) and returns ``sx = sum_t g (x - s)``;
    then ``F~ = sx - n (m - s)`` exactly.
    """
    w, m, v = ubm
    k, d = m.shape
    if X.shape[0] == 0:
        return np.zeros(k), np.zeros((k, d))
    shift = X.mean(axis=0, dtype=np.float64)
    with np.errstate(divide="ignore"):
        log_w = np.log(w)
    means_s = m - shift
    top_c, min_post = check_approximation(top_c, min_post, k)
    approx = {"top_c": top_c or None, "min_post": min_post} if (top_c or min_post) else {}
    nk, sx, _, _ = get_kernels(backend).gmm_diag_step(X, shift, means_s, 1.0 / v, log_w,
                                                      **approx)
    n = np.asarray(nk, dtype=np.float64)
    return n, np.asarray(sx, dtype=np.float64) - n[:, None] * means_s


def stats_rows(n, f):
    """Pack statistics into utterance rows.

    Parameters
    ----------
    n : array-like of shape (n_utterances, K)
    f : array-like of shape (n_utterances, K, D)

    Returns
    -------
    ndarray of shape (n_utterances, K + K*D), float64
    """
    n = np.asarray(n, dtype=np.float64)
    f = np.asarray(f, dtype=np.float64)
    if n.ndim != 2 or f.ndim != 3 or f.shape[:2] != n.shape:
        raise ValueError(f"statistics must have shapes (n_utterances, K) and (n_utterances, K, "
                         f"D), got {n.shape} and {f.shape}")
    return np.concatenate([n, f.reshape(f.shape[0], -1)], axis=1)


def split_rows(rows, n_gaussians):
    """Views ``(N, F~)`` of utterance rows: shapes (n, K) and (n, K*D)."""
    return rows[:, :n_gaussians], rows[:, n_gaussians:]


def frames_to_rows(frames, ubm, *, top_c=None, min_post=0.0, backend=None):
    """Utterance rows of frame matrices held here (in-process).

    Parameters
    ----------
    frames : sequence of ndarray of shape (n_frames_u, D)
    ubm : anything :func:`ipem.mixture.params.ubm_params` reads

    Returns
    -------
    ndarray of shape (n_utterances, K + K*D), float64
    """
    params = ubm_params(ubm)
    out = [baum_welch(load_source(resolve_source(X, f"utterance {i}"), dtype=np.float32,
                                  n_features=params.n_features, what=f"utterance {i}"),
                      params, top_c=top_c, min_post=min_post, backend=backend)
           for i, X in enumerate(frames)]
    if not out:
        raise ValueError("no utterances given")
    return stats_rows([o[0] for o in out], [o[1] for o in out])


def contiguous_balanced(sizes, n_shards):
    """Split a sequence into ``n_shards`` contiguous runs of about equal total size.

    Keeping the order (unlike :func:`ipem.parallel.scheduling.assign_balanced`)
    makes row ``i`` of the distributed dataset utterance ``i``.

    Parameters
    ----------
    sizes : array-like of int, shape (n_items,)
    n_shards : int

    Returns
    -------
    bounds : ndarray of shape (n_shards + 1,), int64
        Shard ``s`` holds items ``bounds[s]:bounds[s+1]``.
    """
    sizes = np.asarray(sizes, dtype=np.float64)
    cum = np.concatenate([[0.0], np.cumsum(np.maximum(sizes, 1.0))])
    targets = cum[-1] * np.arange(1, n_shards) / n_shards
    cuts = np.searchsorted(cum, targets, side="left")
    bounds = np.concatenate([[0], np.clip(cuts, 0, sizes.size), [sizes.size]]).astype(np.int64)
    return np.maximum.accumulate(bounds)


def _described(source):
    """A resolved source with plain paths replaced by FeatureRefs (headers read, checked)."""
    if isinstance(source, np.ndarray):
        return source
    refs = []
    for entry in source:
        refs.extend([entry] if isinstance(entry, _io.FeatureRef) else _io.list_features(entry))
    return refs


def read_stats_shard(sources, offset, ubm, dtype, top_c, min_post, backend, budget=None):
    """Loader of :func:`distribute_stats`: one shard's utterance rows, read where it lives.

    Parameters
    ----------
    budget : tuple, optional
        ``(engine_memory, block_size, working_memory, whole_process)``: keep
        only the first rows that fit in memory (worked out here, where the
        process's own use is known: :func:`ipem.io.streaming.resident_rows`);
        the others go to a scratch file as they are computed and are read back
        block by block (:class:`ipem.io.streaming.SpilledRows`), one block
        ahead by a thread when there is room.

    Returns
    -------
    rows : ndarray or SpilledRows of shape (n_utterances_shard, K + K*D), float64
    offset : int
    sources : list of str
    """
    ubm = GMMParams(*ubm)
    k, d = ubm.means.shape
    n_resident = len(sources)
    if budget is not None:
        n_resident, read_ahead = place_rows(budget, (k + k * d) * 8)
    if n_resident < len(sources):
        rows = SpilledRows(len(sources), k + k * d, n_resident, read_ahead=read_ahead)
    else:
        rows = np.zeros((len(sources), k + k * d))
    row = np.empty(k + k * d)
    names = []
    for i, (utt, source) in enumerate(sources):
        X = load_source(source, dtype=dtype, n_features=d, what=f"utterance {utt}")
        n, f = baum_welch(X, ubm, top_c=top_c, min_post=min_post, backend=backend)
        row[:k] = n
        row[k:] = f.ravel()
        if isinstance(rows, SpilledRows):
            rows.put(i, row)
        else:
            rows[i] = row
        names.append(str(utt))
    return rows, offset, names


def distribute_stats(ubm, utterances, *, controller=None, top_c=None, min_post=0.0,
                     backend=None, dtype=np.float32, key=None, engine_memory=None,
                     working_memory=0):
    """Baum-Welch statistics of utterances, computed and kept where the shards live.

    Parameters
    ----------
    ubm : fitted UBMTrainer, diagonal GaussianMixture, dict, tuple or path
        See :func:`ipem.mixture.params.ubm_params`.
    utterances : dict or sequence
        ``utterance_id -> source`` or a sequence of sources (ids are then
        their positions); a source is a feature file, a list of them or a
        FeatureRef (:func:`ipem.io.sources.resolve_source`).  Each
        shard reads its utterances' files itself.
    controller : Controller, int, DirectView or None
    top_c, min_post, backend
        See :func:`baum_welch`.
    dtype : {numpy.float32, numpy.float64}
        Dtype the frames are read in (statistics are float64).
    engine_memory : int or str, optional
        Memory of each engine process (``"1G"``, ``"512M"``, an int; see
        ``working_memory``): the first blocks of rows that fit are kept, the others are
        written once to a scratch file on the place's node as they are
        computed and read back block by block every iteration, the next block
        by a thread while the current one is computed (the budget counts the
        block computed and the one read ahead,
        :func:`ipem.io.streaming.resident_rows`).  Needs blocks: the
        controller's integer ``block_size`` (in utterances), else blocks of
        :data:`STREAM_UTTERANCES`; the model is the bits of an in-memory run
        with the same blocks.  Frames are never kept: each utterance's file is
        read once, when its row is computed.
    working_memory : int, default=0
        Bytes the computation needs on an engine beside the rows (the
        E-step's per-block arrays, the summation tree's accumulators); with
        ``engine_memory`` they come off an engine's budget, with what the
        engine already uses (on a LocalController the budget bounds each
        place's rows alone).

    Returns
    -------
    DistributedData
        One row per utterance, in the given order (shards hold contiguous
        runs balanced by frame count, or whole blocks); ``data.files[s]``
        lists the ``(utterance_id, source)`` pairs of shard ``s``.
    """
    from ..parallel import as_controller

    params = ubm_params(ubm)
    k, d = params.means.shape
    check_approximation(top_c, min_post, k)
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise ValueError(f"dtype={dtype!r}: expected float32 or float64")
    items = list(utterances.items()) if isinstance(utterances, dict) else \
        list(enumerate(utterances))
    if not items:
        raise ValueError("no utterances given")
    items = [(utt, _described(resolve_source(src, f"utterance {utt}"))) for utt, src in items]
    frames = [src.shape[0] if isinstance(src, np.ndarray) else sum(r.n_frames for r in src)
              for _, src in items]
    ctrl = as_controller(controller)
    block = ctrl.rows_per_block(len(items), "utterances")
    spill = ()
    if engine_memory is not None:
        block = block or STREAM_UTTERANCES
        resident_rows(engine_memory, block, (k + k * d) * 8)   # one block at least, here
        spill = ((engine_memory, block, int(working_memory),
                  not getattr(ctrl, "places_in_client", False)),)
    if block is None:
        bounds = contiguous_balanced(frames, ctrl.n_shards)
    else:  # whole blocks of utterances per place: the same statistics on any layout
        bounds = np.concatenate([[0], np.cumsum(ctrl.split_sizes(len(items), block))])
    files = [items[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    assignments = [(fs, int(bounds[s]), params, np.dtype(dtype).str, top_c, min_post, backend)
                   + spill for s, fs in enumerate(files)]
    logger.debug("Baum-Welch statistics of %d utterances on %s", len(items), ctrl)
    return ctrl.distribute_loaded(read_stats_shard, assignments, np.diff(bounds), k + k * d,
                                  dtype=np.float64, files=files, key=key, block_size=block)
