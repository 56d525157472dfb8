"""GMM-UBM scoring: log-likelihood ratios of test segments against speaker models.

The score of a test segment ``X = (x_1 .. x_T)`` against a speaker model is
the average per-frame log-likelihood ratio

    LLR = (1/T) sum_t [log p(x_t | speaker) - log p(x_t | UBM)].

Fast scoring (Reynolds et al. 2000) evaluates the UBM fully, keeps each
frame's ``C`` best UBM components (:func:`topc_kernel`) and evaluates both
log-likelihoods over those components only; as speaker models are adapted
from the UBM their components correspond, and the speaker model costs
``C`` instead of ``K`` Gaussians per frame.

:func:`score_trials` scores a trial list task-parallel over test segments:
each segment is read once (where its task runs) and scored against all of
its models.
"""
from __future__ import annotations

import logging
import os
from typing import NamedTuple, Optional

import numpy as np

from .. import io as _features
from ..io import atomic_path, read_list
from ..io.lists import quote_field
from ..io.models import check_model_id
from ..kernels import get_kernels, logsumexp_rows
from ..validation import check_frames
from ..parallel import as_controller
from .map import SpeakerModel
from .map import ubm_params as _ubm_params
from .sources import load_source, resolve_source

logger = logging.getLogger(__name__)

__all__ = ["llr_scores", "score_trials", "read_trials", "write_scores", "Trial", "topc_kernel"]

LOG_2PI = np.log(2.0 * np.pi)


def topc_kernel(backend=None):
    """The top-C selection kernel of ``backend`` (both backends implement it)."""
    return get_kernels(backend).gmm_diag_topc


def _model_params(model, k, d, index):
    if isinstance(model, SpeakerModel):
        w, m, v = _ubm_params(model)
        name = f"model {model.speaker_id!r}"
    else:
        w, m, v = _ubm_params(model)
        name = f"speaker model {index}"
    if m.shape != (k, d):
        raise ValueError(f"{name} has {m.shape[0]} components x {m.shape[1]} features, but "
                         f"the UBM has {k} x {d}")
    return w, m, v


def _selected_logprob(X, shift, means_s, precisions, const, idx, chunk_size=None):
    """``log sum_{c in idx[t]} w_c N(x_t | c)`` for every frame (float64)."""
    n, d = X.shape
    c = idx.shape[1]
    out = np.empty(n)
    chunk_size = chunk_size or max(64, (1 << 20) // max(c * d, 1))
    for a in range(0, n, chunk_size):
        b = min(a + chunk_size, n)
        xc = X[a:b].astype(np.float64) - shift
        sel = idx[a:b]
        diff = xc[:, None, :] - means_s[sel]
        diff *= diff
        diff *= precisions[sel]
        lp = const[sel] - 0.5 * diff.sum(axis=2)
        out[a:b] = logsumexp_rows(lp)
    return out


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
        ``None``: exact scoring (all components in both log-likelihoods).
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
    models = [_model_params(mod, k, d, i) for i, mod in enumerate(speaker_models)]
    n = X.shape[0]
    shift = X.mean(axis=0, dtype=np.float64)
    scores = np.empty(len(models))
    if top_c is None:
        kern = get_kernels(backend)

        def logprob(wm, mm, vm):
            out = np.empty(n)
            with np.errstate(divide="ignore"):
                log_w = np.log(wm)
            kern.gmm_diag_step(X, shift, mm - shift, 1.0 / vm, log_w, logprob_out=out,
                               compute_stats=False)
            return out

        ubm_lp = logprob(w, m, v)
        for i, (wm, mm, vm) in enumerate(models):
            scores[i] = np.mean(logprob(wm, mm, vm) - ubm_lp)
        return scores
    if isinstance(top_c, bool) or not isinstance(top_c, (int, np.integer)) or top_c < 1:
        raise ValueError(f"top_c must be None or an integer >= 1, got {top_c!r}")
    c = min(int(top_c), k)
    with np.errstate(divide="ignore"):
        log_w = np.log(w)
    idx = np.empty((n, c), dtype=np.int64)
    topc_kernel(backend)(X, shift, m - shift, 1.0 / v, log_w, c, index_out=idx,
                         logprob_out=np.empty(n))

    def selected(wm, mm, vm):
        prec = 1.0 / vm
        with np.errstate(divide="ignore"):
            const = np.log(wm) - 0.5 * d * LOG_2PI + 0.5 * np.log(prec).sum(axis=1)
        return _selected_logprob(X, shift, mm - shift, prec, const, idx)

    # the kernel only selects; both log-likelihoods are then evaluated with the same
    # float64 arithmetic, so that rounding cancels in the ratio (a model equal to the
    # UBM scores exactly 0)
    ubm_lp = selected(w, m, v)
    for i, (wm, mm, vm) in enumerate(models):
        scores[i] = np.mean(selected(wm, mm, vm) - ubm_lp)
    return scores


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
    k, d = params[1].shape
    X = load_source(source, dtype=dtype, n_features=d, what=what)
    loaded = [SpeakerModel.load(mod, speaker_id=mid, n_components=k, n_features=d)
              if isinstance(mod, str) else mod for mid, mod in models]
    return llr_scores(X, params, loaded, top_c=top_c, backend=backend)


def score_trials(ubm, trials, models, *, controller=None, top_c=5, progress=True, backend=None,
                 dtype=np.float32):
    """Score a list of trials, one load-balanced task per test segment.

    Parameters
    ----------
    ubm : UBM in any form :func:`ipem.speaker.map.ubm_params` accepts.
    trials : sequence of tuples
        ``(model_id, test)`` (extra items, such as the label of
        :func:`read_trials`, are ignored).  ``test`` is a feature file path,
        a FeatureRef, a list of them, or an array of shape
        (n_frames, n_features).  Trials with the same test (same path, or
        the same array object) form one segment that is read once.
    models : dict
        ``model_id -> SpeakerModel`` or the path of a model file written by
        :meth:`SpeakerModel.save` (read and checked where the task runs: it
        must hold the speaker ``model_id`` and match the UBM's size).
    controller : Controller, int, DirectView or None
    top_c : int or None, default=5
        See :func:`llr_scores`.
    progress : bool, default=True
    backend : {"c", "numpy"} or None
    dtype : {numpy.float32, numpy.float64}, default=numpy.float32
        Dtype test frames are read from files in.

    Returns
    -------
    list of float
        One score per trial, in trial order.
    """
    params = _ubm_params(ubm)
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise ValueError(f"dtype={dtype!r}: expected float32 or float64")
    if top_c is not None and (isinstance(top_c, bool) or not isinstance(top_c, (int, np.integer))
                              or top_c < 1):
        raise ValueError(f"top_c must be None or an integer >= 1, got {top_c!r}")
    get_kernels(backend)
    trials = list(trials)
    if not trials:
        return []
    segments = {}            # segment key -> [test, {model id: position}]
    where = []               # per trial: (model id, segment key)
    for i, trial in enumerate(trials):
        try:
            model_id, test = trial[0], trial[1]
        except (TypeError, IndexError, KeyError):
            raise ValueError(f"trial {i}: expected (model_id, test), got {trial!r}") from None
        if model_id not in models:
            raise ValueError(f"trial {i}: model {model_id!r} is not in models")
        key = _segment_key(test)
        if key not in segments:
            segments[key] = [test, {}]
        ids = segments[key][1]
        ids.setdefault(model_id, len(ids))
        where.append((model_id, key))
    order = {key: s for s, key in enumerate(segments)}
    items = []
    for s, (key, (test, ids)) in enumerate(segments.items()):
        what = (f"test segment {s}" if isinstance(test, np.ndarray)
                else f"test segment {key[1] if key[0] == 'path' else test}")
        mods = []
        for mid in ids:
            mod = models[mid]
            if isinstance(mod, (str, os.PathLike)):
                mod = os.path.abspath(os.fspath(mod))
            elif not isinstance(mod, SpeakerModel):
                mod = SpeakerModel(str(mid), *_ubm_params(mod))
            mods.append((str(mid), mod))
        items.append((resolve_source(test, what), mods, what))
    ctrl = as_controller(controller)
    logger.debug("scoring %d trials in %d test segments on %s", len(trials), len(items), ctrl)
    with ctrl.broadcast(params) as shared:  # the UBM goes to each engine once
        results = ctrl.map_tasks(_score_task, items, shared, top_c, backend,
                                 np.dtype(dtype).str, progress=progress, desc="scoring")
    return [float(results[order[key]][segments[key][1][model_id]]) for model_id, key in where]


class Trial(NamedTuple):
    """One line of a trial list."""

    model: str
    test: str
    label: Optional[str] = None


_LABELS = ("target", "nontarget")


def read_trials(path, *, allow_pipes=False):
    """Read a NIST-style trial list.

    Each non-empty line reads ``model_id test_segment [target|nontarget]``;
    lines starting with ``#`` are comments; a test segment with spaces in its
    path is quoted (``spk1 "wav/my file.wav" target``).

    Parameters
    ----------
    path : str or os.PathLike
    allow_pipes : bool, default=False
        Accept test segments that are shell commands (Kaldi pipes such as
        ``cmd |``), which the feature reader runs through a shell.  By
        default a line naming one is refused: a trial list from elsewhere
        must not run commands.

    Returns
    -------
    list of Trial
        ``Trial(model, test, label)`` named tuples; ``label`` is ``None``
        where the line has no third column.

    Raises
    ------
    ValueError
        For a malformed line, a model id that cannot name a file in a models
        directory (``/``, ``\\``, ``..``, absolute paths;
        :func:`ipem.io.models.check_model_id`), a shell command, a trial
        given twice (the message gives the file and line number, and the
        first line of a repeat), or a list without trials.
    """
    path = os.fspath(path)
    trials, line_of = [], {}
    for lineno, cols in read_list(path, allow_empty=True, allow_pipes=allow_pipes):
        if len(cols) not in (2, 3):
            raise ValueError(f"{path}, line {lineno}: expected 'model_id test_segment "
                             f"[target|nontarget]', got {len(cols)} columns: "
                             f"{' '.join(cols)!r}")
        try:
            check_model_id(cols[0])
        except ValueError as exc:
            raise ValueError(f"{path}, line {lineno}: {exc}") from None
        label = None
        if len(cols) == 3:
            label = cols[2].lower()
            if label not in _LABELS:
                raise ValueError(f"{path}, line {lineno}: label must be 'target' or "
                                 f"'nontarget', got {cols[2]!r}")
        trial = (cols[0], cols[1])
        if trial in line_of:
            raise ValueError(f"{path}, line {lineno}: trial '{cols[0]} {cols[1]}' repeats line "
                             f"{line_of[trial]}")
        line_of[trial] = lineno
        trials.append(Trial(cols[0], cols[1], label))
    if not trials:
        raise ValueError(f"{path}: no trials in this file")
    return trials


def _field(value, what, i):
    if isinstance(value, _features.FeatureRef):
        value = value.path
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, np.ndarray) or not isinstance(value, (str, int, np.integer)):
        raise ValueError(f"trial {i}: the {what} must be a name or path to be written, got "
                         f"{type(value).__name__}")
    try:
        return quote_field(str(value))
    except ValueError as exc:
        raise ValueError(f"trial {i}: the {what} {exc}") from None


def write_scores(path, trials, scores):
    """Write ``model_id test_segment score [label]`` lines atomically.

    A field with spaces is quoted (:func:`ipem.io.lists.quote_field`), as
    :func:`read_trials` and the score readers expect.

    Parameters
    ----------
    path : str
    trials : sequence of tuples
        As for :func:`score_trials` (e.g. from :func:`read_trials`); a third
        item that is not ``None`` is written as the label column.
    scores : sequence of float
        One per trial (written with full float precision).

    Returns
    -------
    str
        ``path``.
    """
    path = os.fspath(path)
    trials = list(trials)
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if scores.size != len(trials):
        raise ValueError(f"{len(trials)} trials but {scores.size} scores")
    lines = []
    for i, (trial, score) in enumerate(zip(trials, scores)):
        cols = [_field(trial[0], "model id", i), _field(trial[1], "test segment", i),
                repr(float(score))]
        if len(trial) > 2 and trial[2] is not None:
            cols.append(_field(trial[2], "label", i))
        lines.append(" ".join(cols) + "\n")
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.writelines(lines)
    return path
