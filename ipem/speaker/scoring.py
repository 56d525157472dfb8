"""GMM-UBM scoring: log-likelihood ratios of test segments against speaker models.

The score of a test segment ``X = (x_1 .. x_T)`` against a speaker model is
the average per-frame log-likelihood ratio

    LLR = (1/T) sum_t [log p(x_t | speaker) - log p(x_t | UBM)].

Fast scoring (Reynolds et al. 2000) evaluates the UBM fully, keeps each
frame's ``C`` best UBM components (:func:`topc_kernel`) and evaluates both
log-likelihoods over those components only; as speaker models are adapted
from the UBM their components correspond, and the speaker model costs
``C`` instead of ``K`` Gaussians per frame.

Linear scoring (Glembek et al. 2009) replaces the LLR by its first-order
expansion around the UBM means: :mod:`ipem.speaker.linear`.

:func:`score_trials` scores a trial list task-parallel over test segments:
each segment is read once (where its task runs) and scored against all of
its models (``method="linear"``: a task scores a chunk of consecutive
segments, :func:`ipem.speaker.linear.score_segments`); only scores travel back.
"""
from __future__ import annotations

import itertools
import logging
import operator
import os

import numpy as np

from .. import io as _features
from ..kernels import get_kernels, logsumexp_rows
from ..validation import ParameterError, check_frames
from ..parallel import as_controller
from .map import SpeakerModel
from .map import ubm_params as _ubm_params
from ..io.sources import load_source, resolve_source
from .linear import (cached_model, checked_model_params, linear_scores,
                     model_offsets, score_segments, segment_statistics)

logger = logging.getLogger(__name__)

__all__ = ["SCORING_METHODS", "llr_scores", "linear_scores", "model_offsets",
           "score_trials", "scoring_method", "segment_statistics", "topc_kernel"]

#: Scoring methods of :func:`score_trials`: average LLR with top-C Gaussian selection,
#: exact average LLR, linear scoring.
SCORING_METHODS = ("topc", "exact", "linear")

LOG_2PI = np.log(2.0 * np.pi)


def scoring_method(scoring=None, top_c=5):
    """The scoring method and top-C a step scores with: the one place they are decided.

    Parameters
    ----------
    scoring : {"topc", "exact", "linear"} or None
        ``None`` (or ``"topc"``): average LLR over the ``top_c`` best UBM
        components of each frame, or exact when ``top_c`` is 0 or None.
    top_c : int or None, default=5
        Top-C Gaussian selection; 0 or ``None`` scores exactly.

    Returns
    -------
    method : {"topc", "exact", "linear"}
    top_c : int or None
        An integer >= 1 for ``"topc"``, else ``None``.

    Raises
    ------
    ValueError
        An unknown method; for top-C scoring, a ``top_c`` that is no integer
        >= 0.

    Examples
    --------
    >>> scoring_method(None, 5), scoring_method("topc", 0), scoring_method("linear", 5)
    (('topc', 5), ('exact', None), ('linear', None))
    """
    if scoring is not None and scoring not in SCORING_METHODS:
        raise ValueError(f"unknown scoring method {scoring!r}; expected one of "
                         f"{', '.join(SCORING_METHODS)}")
    if scoring not in (None, "topc"):
        return scoring, None
    if top_c is None or (top_c == 0 and not isinstance(top_c, bool)):
        return "exact", None
    if isinstance(top_c, bool) or not isinstance(top_c, (int, np.integer)) or top_c < 1:
        raise ParameterError(f"{{name}} must be None or an integer >= 1, got {top_c!r}",
                             "top_c")
    return "topc", int(top_c)


def topc_kernel(backend=None):
    """The top-C selection kernel of ``backend`` (both backends implement it)."""
    return get_kernels(backend).gmm_diag_topc


def llr_scores(X, ubm_params, speaker_models, *, top_c=5, backend=None):
    """Average per-frame log-likelihood ratios of one test segment against several models.

    Parameters
    ----------
    X : ndarray of shape (n_frames, n_features), float32 or float64
        The test segment.
    ubm_params : UBM in any form :func:`ipem.speaker.map.ubm_params` accepts
        (a fitted UBMTrainer, a dict, a ``(weights, means, variances)``
        tuple, a model path).
    speaker_models : sequence of SpeakerModel or ``(weights, means, variances)``
        Models adapted from this UBM (same number of components and features).
    top_c : int or None, default=5
        0 or ``None``: exact scoring (all components in both log-likelihoods;
        :func:`scoring_method`).
        ``C``: the ``C`` best UBM components of each frame, for the UBM and
        the speaker model alike (values above ``n_components`` are clipped).
    backend : {"c", "numpy"} or None
        Kernel backend; the top-C kernel falls back to NumPy where the
        backend has none.

    Returns
    -------
    ndarray of shape (n_models,), float64
        ``(1/T) sum_t [log p(x_t | model) - log p(x_t | UBM)]``.
    """
    w, m, v = _ubm_params(ubm_params)
    k, d = m.shape
    X = check_frames(X, n_features=d)
    if isinstance(speaker_models, SpeakerModel):
        speaker_models = [speaker_models]
    models = [checked_model_params(mod, k, d, i) for i, mod in enumerate(speaker_models)]
    _, top_c = scoring_method(None, top_c)
    shift = X.mean(axis=0, dtype=np.float64)
    xc = X.astype(np.float64) - shift
    # the UBM is row 0 of every batch: UBM and models are evaluated with the same
    # float64 arithmetic, so that rounding cancels in the ratio (a model equal to the
    # UBM scores exactly 0)
    if top_c is None:
        per_model = _exact_logprob
        extra = ()
    else:
        c = min(int(top_c), k)
        with np.errstate(divide="ignore"):
            log_w = np.log(w)
        idx = np.empty((X.shape[0], c), dtype=np.int64)
        topc_kernel(backend)(X, shift, m - shift, 1.0 / v, log_w, c, index_out=idx,
                             logprob_out=np.empty(X.shape[0]))
        if all(mw is w or np.array_equal(mw, w) for mw, _, _ in models) and \
                all(mv is v or np.array_equal(mv, v) for _, _, mv in models):
            return _mean_offset_topc_scores(xc, shift, (w, m, v), models, idx)
        per_model = _selected_batch_logprob
        extra = (idx,)
    scores = np.empty(len(models))
    batch = max(1, _SCORE_BATCH_VALUES // max(1, k * d))
    for a in range(0, len(models), batch):
        group = [(w, m, v)] + models[a:a + batch]
        lp = per_model(xc, shift, group, *extra)           # (1 + B, n_frames)
        scores[a:a + len(group) - 1] = np.mean(lp[1:] - lp[0], axis=1)
    return scores


#: Model parameters (components x features) evaluated together by :func:`llr_scores`.
_SCORE_BATCH_VALUES = 1 << 20
#: Float64 values of the temporaries of one block of frames.
_SCORE_BLOCK_VALUES = 1 << 21


def _log_const(w, prec, d):
    with np.errstate(divide="ignore"):
        return np.log(w) - 0.5 * d * LOG_2PI + 0.5 * np.log(prec).sum(axis=-1)


def _exact_logprob(xc, shift, group):
    """``log p(x_t | model)`` of every model of ``group`` and frame: one matrix product.

    Each model's Gaussian exponents are a linear function of ``[x^2, x, 1]``;
    the coefficients of all models are stacked so that the log-likelihoods of
    a block of frames come from one float64 GEMM of shape
    (frames, 2D+1) x (2D+1, B*K).

    Returns
    -------
    ndarray of shape (len(group), n_frames)
    """
    n, d = xc.shape
    b = len(group)
    k = group[0][1].shape[0]
    coef = np.empty((b, k, 2 * d + 1))
    for i, (wm, mm, vm) in enumerate(group):
        prec = 1.0 / vm
        ms = mm - shift
        coef[i, :, :d] = -0.5 * prec
        coef[i, :, d:2 * d] = ms * prec
        coef[i, :, 2 * d] = _log_const(wm, prec, d) - 0.5 * np.einsum("kd,kd->k", ms * ms, prec)
    coef = coef.reshape(b * k, 2 * d + 1)
    out = np.empty((b, n))
    step = max(1, _SCORE_BLOCK_VALUES // (b * k))
    z = np.empty((min(step, n), 2 * d + 1))
    for a in range(0, n, step):
        e = min(a + step, n)
        zb = z[:e - a]
        np.multiply(xc[a:e], xc[a:e], out=zb[:, :d])
        zb[:, d:2 * d] = xc[a:e]
        zb[:, 2 * d] = 1.0
        lp = zb @ coef.T                                        # (n_b, B*K)
        out[:, a:e] = logsumexp_rows(lp.reshape(-1, k)).reshape(e - a, b).T
    return out


def _mean_offset_topc_scores(xc, shift, ubm, models, idx):
    """Top-C average LLRs of models that differ from the UBM in their means only.

    With the UBM's weights and variances (MAP adaptation of the means, the
    default), a model's log-density of component ``j`` is the UBM's plus
    ``d_j' P_j (x - m_j) - d_j' P_j d_j / 2`` with ``d_j = m_sj - m_j`` and
    ``P_j`` the UBM precision.  The scaled residuals ``P_j (x_t - m_j)`` do
    not depend on the model, so the frames that selected component ``j`` are
    scored against every model by one matrix product with the ``d_j`` of all
    models: the work is a GEMM over (frame, selection) pairs.

    Returns
    -------
    ndarray of shape (n_models,)
    """
    w, m, v = ubm
    n, d = xc.shape
    c = idx.shape[1]
    prec = 1.0 / v
    ms = m - shift
    const = _log_const(w, prec, d)
    flat = idx.ravel()                                         # pair p = (t, slot)
    resid = (xc[:, None, :] - ms[idx]) * prec[idx]             # (n, C, D)
    ubm_lp = const[idx] - 0.5 * np.einsum("tcd,tcd->tc", resid, xc[:, None, :] - ms[idx])
    # the (frame, slot) pairs sorted by component: each component's pairs are contiguous
    order = np.argsort(flat, kind="stable")
    used, starts = np.unique(flat[order], return_index=True)
    bounds = np.append(starts, order.size)
    resid = resid.reshape(n * c, d)[order]
    unsort = np.empty_like(order)
    unsort[order] = np.arange(order.size)
    ubm_total = logsumexp_rows(ubm_lp)                         # (n,)
    scores = np.empty(len(models))
    batch = max(1, 4 * _SCORE_BATCH_VALUES // max(1, len(used) * d))
    for a in range(0, len(models), batch):
        group = models[a:a + batch]
        delta = np.stack([g[1][used] for g in group], axis=1) - m[used][:, None, :]  # (U, B, D)
        quad = 0.5 * np.einsum("ubd,ubd->ub", delta * prec[used][:, None, :], delta)  # (U, B)
        cross = np.empty((n * c, len(group)))
        for u in range(len(used)):
            lo, hi = bounds[u], bounds[u + 1]
            np.matmul(resid[lo:hi], delta[u].T, out=cross[lo:hi])
            cross[lo:hi] -= quad[u]
        lp = ubm_lp.reshape(n * c, 1) + cross[unsort]          # (n*C, B)
        lp = lp.reshape(n, c, len(group)).transpose(0, 2, 1).reshape(-1, c)
        model_lp = logsumexp_rows(lp).reshape(n, len(group))               # (n, B)
        scores[a:a + len(group)] = np.mean(model_lp - ubm_total[:, None], axis=0)
    return scores


def _selected_batch_logprob(xc, shift, group, idx):
    """``log sum_{c in idx[t]} w_c N(x_t | c)`` of every model of ``group`` and frame.

    Only the components some frame selected are prepared, for all models at
    once; the Gaussians of a block of frames are then evaluated for all models
    in a few array operations.

    Returns
    -------
    ndarray of shape (len(group), n_frames)
    """
    n, d = xc.shape
    used, pos = np.unique(idx, return_inverse=True)
    pos = pos.reshape(idx.shape)
    wm = np.stack([g[0][used] for g in group])                  # (B, U)
    ms = np.stack([g[1][used] for g in group]) - shift          # (B, U, D)
    prec = 1.0 / np.stack([g[2][used] for g in group])          # (B, U, D)
    const = _log_const(wm, prec, d)                             # (B, U)
    b, c = len(group), idx.shape[1]
    out = np.empty((b, n))
    step = max(1, _SCORE_BLOCK_VALUES // (b * c * d))
    for a in range(0, n, step):
        e = min(a + step, n)
        sel = pos[a:e]                                          # (n_b, C)
        diff = xc[None, a:e, None, :] - ms[:, sel]              # (B, n_b, C, D)
        diff *= diff
        diff *= prec[:, sel]
        lp = const[:, sel] - 0.5 * diff.sum(axis=3)             # (B, n_b, C)
        out[:, a:e] = logsumexp_rows(lp.reshape(-1, c)).reshape(b, e - a)
    return out


# ---------------------------------------------------------------------------
# trial lists, task-parallel over test segments
# ---------------------------------------------------------------------------

def _segment_key(test):
    if isinstance(test, np.ndarray):
        return ("array", id(test))
    if isinstance(test, _features.FeatureRef):
        return ("ref", test)
    if isinstance(test, (str, os.PathLike)):
        return ("path", os.path.abspath(os.fspath(test)))
    if isinstance(test, (list, tuple)):
        return ("list", tuple(_segment_key(t) for t in test))
    raise ValueError(f"test segment {test!r}: expected a feature file path, a FeatureRef, a "
                     "list of them or a (n_frames, n_features) array")


def _score_task(item, params, top_c, backend, dtype):
    """One test segment: read it once, score it against all of its models.

    A model file is checked against its UBM's size and must hold the speaker
    of the model id that named it.
    """
    source, models, what = item
    k, d = params.means.shape
    X = load_source(source, dtype=dtype, n_features=d, what=what)
    loaded = [cached_model(mod, mid, k, d) if isinstance(mod, str) else mod
              for mid, mod in models]
    return llr_scores(X, params, loaded, top_c=top_c, backend=backend)


def _group_trials(trials, models):
    """The trials' test segments, in order of first appearance, and each trial's place.

    Returns
    -------
    segments : list of (key, test, model_ids)
        The segment's key (:func:`_segment_key`), its first test object and its
        model ids in order of first appearance.
    where_seg, where_pos : ndarray of shape (n_trials,), int64
        Each trial's segment and its model's position in that segment's list.
    """
    try:         # hashable tests (paths, FeatureRefs): one key per distinct test, arrays
        model_ids = list(map(operator.itemgetter(0), trials))
        tests = list(map(operator.itemgetter(1), trials))
        key_of = dict.fromkeys(tests)
        unknown = any(mid not in models for mid in dict.fromkeys(model_ids))
    except (TypeError, IndexError, KeyError):
        unknown = True           # a malformed trial or an array test: one by one
    if unknown:
        return _group_trials_one_by_one(trials, models)
    seg_index, first_test = {}, []
    for test in key_of:
        key = _segment_key(test)
        if key not in seg_index:
            seg_index[key] = len(seg_index)
            first_test.append((key, test))
        key_of[test] = seg_index[key]
    mid_index = {mid: i for i, mid in enumerate(dict.fromkeys(model_ids))}
    n_m = len(mid_index)
    where_seg = np.fromiter(map(key_of.__getitem__, tests), dtype=np.int64, count=len(tests))
    pair, first, inverse = np.unique(where_seg * n_m + np.fromiter(
        map(mid_index.__getitem__, model_ids), dtype=np.int64, count=len(model_ids)),
        return_index=True, return_inverse=True)
    order = np.lexsort((first, pair // n_m))       # by segment, then by first appearance
    seg_sorted = pair[order] // n_m
    pos = np.empty(len(pair), dtype=np.int64)
    pos[order] = np.arange(len(pair)) - np.searchsorted(seg_sorted, seg_sorted)
    ids = list(mid_index)
    bounds = np.searchsorted(seg_sorted, np.arange(len(first_test) + 1))
    mids = (pair[order] % n_m).tolist()
    segments = [(key, test, [ids[j] for j in mids[bounds[s]:bounds[s + 1]]])
                for s, (key, test) in enumerate(first_test)]
    return segments, where_seg, pos[inverse.ravel()]


def _group_trials_one_by_one(trials, models):
    """:func:`_group_trials` for any trials, with the error of the first bad one."""
    segments = {}            # segment key -> [test, {model id: position}, segment index]
    where_seg, where_pos = [], []
    for i, trial in enumerate(trials):
        try:
            model_id, test = trial[0], trial[1]
        except (TypeError, IndexError, KeyError):
            raise ValueError(f"trial {i}: expected (model_id, test), got {trial!r}") from None
        if model_id not in models:
            raise ValueError(f"trial {i}: model {model_id!r} is not in models")
        key = _segment_key(test)
        seg = segments.get(key)
        if seg is None:
            seg = segments[key] = [test, {}, len(segments)]
        where_seg.append(seg[2])
        where_pos.append(seg[1].setdefault(model_id, len(seg[1])))
    return ([(key, test, list(ids)) for key, (test, ids, _) in segments.items()],
            np.array(where_seg, dtype=np.int64), np.array(where_pos, dtype=np.int64))


def score_trials(ubm, trials, models, *, controller=None, top_c=5, progress=True, backend=None,
                 dtype=np.float32, method=None):
    """Score a list of trials, one load-balanced task per test segment.

    Parameters
    ----------
    ubm : UBM in any form :func:`ipem.speaker.map.ubm_params` accepts.
    trials : sequence of tuples
        ``(model_id, test)`` (extra items, such as the label of
        :func:`ipem.speaker.scorefiles.read_trials`, are ignored).  ``test`` is a feature
        file path, a FeatureRef, a list of them, or an array of shape (n_frames,
        n_features).  Trials with the same test (same path, or the same array
        object) form one segment that is read once.
    models : dict
        ``model_id -> SpeakerModel`` or the path of a model file written by
        :meth:`SpeakerModel.save` (read and checked where the task runs: it
        must hold the speaker ``model_id`` and match the UBM's size).
    controller : Controller, int, DirectView or None
    top_c : int or None, default=5
        See :func:`llr_scores` (for ``method="topc"``).
    progress : bool, default=True
    backend : {"c", "numpy"} or None
    dtype : {numpy.float32, numpy.float64}, default=numpy.float32
        Dtype test frames are read from files in.
    method : {"topc", "exact", "linear"} or None
        ``"topc"``: average LLR with the ``top_c`` best UBM components;
        ``"exact"``: average LLR over all components; ``"linear"``: linear
        scoring (:mod:`ipem.speaker.linear`): each task computes the
        statistics of a chunk of segments and their products with the
        models' offsets where it runs, and returns the chunk's scores.
        ``None``: ``"exact"`` if ``top_c`` is 0 or None, else ``"topc"``
        (:func:`scoring_method`).

    Returns
    -------
    list of float
        One score per trial, in trial order.
    """
    method, top_c = scoring_method(method, top_c)
    params = _ubm_params(ubm)
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise ValueError(f"dtype={dtype!r}: expected float32 or float64")
    get_kernels(backend)
    trials = list(trials)
    if not trials:
        return []
    segments, where_seg, where_pos = _group_trials(trials, models)
    resolved = {}            # model id -> (str(model id), absolute path or SpeakerModel)
    for mid in dict.fromkeys(itertools.chain.from_iterable(ids for _, _, ids in segments)):
        mod = models[mid]
        if isinstance(mod, (str, os.PathLike)):
            mod = os.path.abspath(os.fspath(mod))
        elif not isinstance(mod, SpeakerModel):
            mod = SpeakerModel(str(mid), *_ubm_params(mod))
        resolved[mid] = (str(mid), mod)
    items = []
    for s, (key, test, ids) in enumerate(segments):
        what = (f"test segment {s}" if isinstance(test, np.ndarray)
                else f"test segment {key[1] if key[0] == 'path' else test}")
        mods = list(map(resolved.__getitem__, ids))
        items.append((resolve_source(test, what), mods, what))
    ctrl = as_controller(controller)
    logger.debug("scoring %d trials in %d test segments on %s (%s)", len(trials), len(items),
                 ctrl, method)
    if method == "linear":
        results = score_segments(ctrl, params, items, backend=backend,
                                 dtype=np.dtype(dtype).str, progress=progress)
    else:
        with ctrl.broadcast(params) as shared:  # the UBM goes to each engine once
            results = ctrl.map_tasks(_score_task, items, shared, top_c, backend,
                                     np.dtype(dtype).str, progress=progress, desc="scoring")
    start = np.cumsum([0] + [len(r) for r in results])
    flat = np.concatenate([np.asarray(r, dtype=np.float64) for r in results])
    return flat[start[where_seg] + where_pos].tolist()
