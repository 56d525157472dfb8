"""Score normalisation with an impostor cohort: Z-, T-, ZT-, S- and adaptive S-norm.

A raw score ``s(e, t)`` of an enrolled model ``e`` against a test segment
``t`` is shifted and scaled by impostor statistics (Auckenthaler et al. 2000;
Kenny 2010; Matejka et al. 2017)::

    Z-norm   (s - mu_e) / sd_e          mu_e, sd_e: e against the cohort segments
    T-norm   (s - mu_t) / sd_t          mu_t, sd_t: the cohort models against t
    ZT-norm  T-norm of the Z-norm, the cohort models' scores against t
             Z-normalised first (with the cohort models against the cohort segments)
    S-norm   ((s - mu_e) / sd_e + (s - mu_t) / sd_t) / 2
    AS-norm  S-norm whose statistics use only the top-N cohort scores of each
             side (the cohort members closest to e, and to t)

The functions here take the cohort scores as matrices, one row per enrolled
model (``enroll_cohort``) or per test segment (``test_cohort``), and an index
mapping every trial to its row, so each model's and each segment's
statistics are computed once however many trials share them.  A NaN in a
cohort matrix leaves that entry out of the statistics (e.g. a cohort model
against its own segment in ZT-norm).  Standard deviations are population
ones (``ddof=0``).

:func:`score_matrix` computes such matrices with
:func:`ipem.speaker.scoring.score_trials`, task-parallel over the segments on
any controller, as the trial scores were computed.
"""
from __future__ import annotations

import inspect
import logging

import numpy as np

from ..validation import ParameterError
from .scoring import score_trials

logger = logging.getLogger(__name__)

__all__ = ["NORMALIZATIONS", "cohort_needs", "cohort_statistics", "znorm", "tnorm", "ztnorm",
           "snorm", "asnorm", "normalize_scores", "score_matrix"]


# ---------------------------------------------------------------------------
# checks
# ---------------------------------------------------------------------------

def _as_scores(scores):
    try:
        s = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"scores are not numeric: {exc}") from exc
    if s.ndim != 1:
        raise ValueError(f"scores must have shape (n_trials,), got {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or infinite values")
    return s


def _as_matrix(a, name):
    try:
        a = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} are not numeric: {exc}") from exc
    if a.ndim != 2:
        raise ValueError(f"{name} must have shape (n_rows, n_cohort), got {a.shape}")
    if np.isinf(a).any():
        raise ValueError(f"{name} contain infinite values")
    return a


def _rows(index, n_trials, n_rows, name):
    """Row of the cohort matrix for every trial."""
    if index is None:
        if n_rows != n_trials:
            raise ValueError(f"{name} has {n_rows} rows but there are {n_trials} trials: give "
                             "an index (one row per trial)")
        return np.arange(n_trials)
    idx = np.asarray(index)
    if idx.shape != (n_trials,) or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"the index of {name} must be {n_trials} integers (one per trial), "
                         f"got shape {idx.shape} of {idx.dtype}")
    if n_trials and (idx.min() < 0 or idx.max() >= n_rows):
        raise ValueError(f"the index of {name} points outside its {n_rows} rows")
    return idx


# ---------------------------------------------------------------------------
# statistics and the normalisations
# ---------------------------------------------------------------------------

def cohort_statistics(cohort_scores, top_n=None):
    """Mean and standard deviation of every row of a cohort score matrix.

    Parameters
    ----------
    cohort_scores : array-like of shape (n_rows, n_cohort)
        Scores of one model (or segment) per row against the cohort; NaN
        entries are left out.
    top_n : int, optional
        Use only the ``top_n`` highest scores of each row (adaptive
        normalisation); all of them when ``None`` or when a row has fewer.

    Returns
    -------
    mean : ndarray of shape (n_rows,)
    std : ndarray of shape (n_rows,)
        Population standard deviations (``ddof=0``), all > 0.

    Raises
    ------
    ValueError
        A row with fewer than 2 scores or without spread, infinite scores, a
        ``top_n`` below 2.
    """
    a = _as_matrix(cohort_scores, "cohort scores")
    if top_n is not None:
        if isinstance(top_n, bool) or not isinstance(top_n, (int, np.integer)) or top_n < 2:
            raise ParameterError(f"{{name}} must be an integer >= 2, got {top_n!r}", "top_n")
        a = -np.sort(-a, axis=1)[:, :int(top_n)]    # descending; NaN sort last
    count = np.sum(~np.isnan(a), axis=1)
    if a.shape[0] and count.min() < 2:
        row = int(np.argmin(count))
        raise ValueError(f"cohort scores: row {row} has {int(count[row])} scores; the "
                         "statistics need at least 2")
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(a, axis=1) if a.shape[0] else np.zeros(0)
        std = np.nanstd(a, axis=1) if a.shape[0] else np.ones(0)
    if np.any(std <= 0):
        row = int(np.argmin(std))
        raise ValueError(f"cohort scores: row {row} has no spread (all its scores equal "
                         f"{mean[row]!r})")
    return mean, std


def _zside(s, enroll_cohort, enroll_index, top_n=None):
    mu, sd = cohort_statistics(enroll_cohort, top_n)
    rows = _rows(enroll_index, s.size, mu.size, "enroll_cohort")
    return (s - mu[rows]) / sd[rows]


def _tside(s, test_cohort, test_index, top_n=None):
    mu, sd = cohort_statistics(test_cohort, top_n)
    rows = _rows(test_index, s.size, mu.size, "test_cohort")
    return (s - mu[rows]) / sd[rows]


def znorm(scores, enroll_cohort, enroll_index=None):
    """Zero normalisation: ``(s - mu_e) / sd_e``.

    Parameters
    ----------
    scores : array-like of shape (n_trials,)
        Raw trial scores.
    enroll_cohort : array-like of shape (n_models, n_cohort_segments)
        Every enrolled model against the cohort segments.
    enroll_index : array-like of int of shape (n_trials,), optional
        Row of ``enroll_cohort`` for each trial (default: trial ``i`` uses
        row ``i``).

    Returns
    -------
    ndarray of shape (n_trials,)
    """
    return _zside(_as_scores(scores), enroll_cohort, enroll_index)


def tnorm(scores, test_cohort, test_index=None):
    """Test normalisation: ``(s - mu_t) / sd_t``.

    Parameters
    ----------
    scores : array-like of shape (n_trials,)
        Raw trial scores.
    test_cohort : array-like of shape (n_tests, n_cohort_models)
        Every test segment against the cohort models.
    test_index : array-like of int of shape (n_trials,), optional
        Row of ``test_cohort`` for each trial.

    Returns
    -------
    ndarray of shape (n_trials,)
    """
    return _tside(_as_scores(scores), test_cohort, test_index)


def ztnorm(scores, enroll_cohort, test_cohort, cohort_cohort, enroll_index=None,
           test_index=None):
    """Z-norm, then T-norm with Z-normalised cohort models.

    Parameters
    ----------
    scores : array-like of shape (n_trials,)
    enroll_cohort : array-like of shape (n_models, n_cohort_segments)
        Every enrolled model against the cohort segments (Z statistics).
    test_cohort : array-like of shape (n_tests, n_cohort_models)
        Every test segment against the cohort models (T statistics).
    cohort_cohort : array-like of shape (n_cohort_models, n_cohort_segments)
        Every cohort model against the cohort segments: the Z statistics of
        the cohort models (NaN where a model meets its own segment).
    enroll_index, test_index : array-like of int of shape (n_trials,), optional
        Rows of ``enroll_cohort`` and ``test_cohort`` for each trial.

    Returns
    -------
    ndarray of shape (n_trials,)
        ``(z - mean_c z_c(t)) / std_c z_c(t)``, ``z`` the Z-normed trial
        score and ``z_c(t) = (s(c, t) - mu_c) / sd_c`` the Z-normed score of
        cohort model ``c`` against the test segment.
    """
    z = _zside(_as_scores(scores), enroll_cohort, enroll_index)
    tc = _as_matrix(test_cohort, "test_cohort")
    mu_c, sd_c = cohort_statistics(cohort_cohort)
    if mu_c.size != tc.shape[1]:
        raise ValueError(f"cohort_cohort has {mu_c.size} cohort models (rows) but test_cohort "
                         f"has {tc.shape[1]} (columns)")
    return _tside(z, (tc - mu_c) / sd_c, test_index)


def snorm(scores, enroll_cohort, test_cohort, enroll_index=None, test_index=None):
    """Symmetric normalisation: the mean of the Z-norm and the T-norm.

    Parameters
    ----------
    scores : array-like of shape (n_trials,)
    enroll_cohort : array-like of shape (n_models, n_cohort_segments)
    test_cohort : array-like of shape (n_tests, n_cohort_models)
    enroll_index, test_index : array-like of int of shape (n_trials,), optional

    Returns
    -------
    ndarray of shape (n_trials,)
        ``((s - mu_e) / sd_e + (s - mu_t) / sd_t) / 2``.
    """
    s = _as_scores(scores)
    return 0.5 * (_zside(s, enroll_cohort, enroll_index)
                  + _tside(s, test_cohort, test_index))


def asnorm(scores, enroll_cohort, test_cohort, enroll_index=None, test_index=None, *,
           top_n=200):
    """Adaptive S-norm: S-norm over each side's ``top_n`` closest cohort members.

    Parameters
    ----------
    scores : array-like of shape (n_trials,)
    enroll_cohort : array-like of shape (n_models, n_cohort_segments)
    test_cohort : array-like of shape (n_tests, n_cohort_models)
    enroll_index, test_index : array-like of int of shape (n_trials,), optional
    top_n : int, default=200
        Cohort scores per row the statistics use (the highest); a cohort
        smaller than that is used whole, which is plain S-norm.

    Returns
    -------
    ndarray of shape (n_trials,)
    """
    s = _as_scores(scores)
    return 0.5 * (_zside(s, enroll_cohort, enroll_index, top_n)
                  + _tside(s, test_cohort, test_index, top_n))


#: The registry of score normalizations: method name -> function.  A function takes
#: the raw ``scores`` and, by name, the cohort matrices it needs (parameters without a
#: default: ``enroll_cohort``, ``test_cohort``, ``cohort_cohort``) and any of
#: ``enroll_index``, ``test_index``, ``top_n``; :func:`normalize_scores`, the steps and
#: the CLI's choices read this table.  Adding a normalization is one function and one line.
NORMALIZATIONS = {
    "z": znorm,
    "t": tnorm,
    "zt": ztnorm,
    "s": snorm,
    "as": asnorm,
}

#: The cohort matrices :func:`normalize_scores` can pass (argument ``<side>_cohort``).
_SIDES = ("enroll", "test", "cohort")


def _normalization(method):
    if method not in NORMALIZATIONS:
        raise ValueError(f"unknown score normalisation {method!r}; expected one of "
                         f"{', '.join(NORMALIZATIONS)}")
    return NORMALIZATIONS[method]


def cohort_needs(method):
    """The cohort matrices a normalization needs: the required ``<side>_cohort`` arguments
    of its function.

    Parameters
    ----------
    method : str
        A name of :data:`NORMALIZATIONS`.

    Returns
    -------
    tuple of str
        Some of ``"enroll"`` (enrolled models against the cohort segments),
        ``"test"`` (test segments against the cohort models), ``"cohort"``
        (cohort models against the cohort segments), in the function's
        order.

    Raises
    ------
    ValueError
        An unknown method.

    Examples
    --------
    >>> cohort_needs("zt")
    ('enroll', 'test', 'cohort')
    """
    matrices = {f"{side}_cohort": side for side in _SIDES}
    params = inspect.signature(_normalization(method)).parameters.values()
    return tuple(matrices[p.name] for p in params
                 if p.name in matrices and p.default is p.empty)


def normalize_scores(method, scores, *, enroll_cohort=None, test_cohort=None,
                     cohort_cohort=None, enroll_index=None, test_index=None, top_n=200):
    """Normalise trial scores by name: ``"z"``, ``"t"``, ``"zt"``, ``"s"`` or ``"as"``.

    Parameters
    ----------
    method : {"z", "t", "zt", "s", "as"}
    scores : array-like of shape (n_trials,)
    enroll_cohort : array-like of shape (n_models, n_cohort_segments), optional
        Needed by z, zt, s, as (see :func:`cohort_needs`).
    test_cohort : array-like of shape (n_tests, n_cohort_models), optional
        Needed by t, zt, s, as.
    cohort_cohort : array-like of shape (n_cohort_models, n_cohort_segments), optional
        Needed by zt.
    enroll_index, test_index : array-like of int of shape (n_trials,), optional
    top_n : int, default=200
        For ``"as"``.

    Returns
    -------
    ndarray of shape (n_trials,)
    """
    function = _normalization(method)
    given = {"enroll_cohort": enroll_cohort, "test_cohort": test_cohort,
             "cohort_cohort": cohort_cohort, "enroll_index": enroll_index,
             "test_index": test_index, "top_n": top_n}
    missing = [f"{k}_cohort" for k in cohort_needs(method) if given[f"{k}_cohort"] is None]
    if missing:
        raise ValueError(f"{method}-norm needs {' and '.join(missing)}")
    takes = inspect.signature(function).parameters
    return function(scores, **{k: v for k, v in given.items() if k in takes})


# ---------------------------------------------------------------------------
# cohort scores, task-parallel
# ---------------------------------------------------------------------------

def score_matrix(ubm, models, segments, *, exclude=(), controller=None, top_c=5,
                 progress=False, backend=None):
    """Scores of every model against every segment, one task per segment.

    The cohort matrices of the normalisations: enrolled models against the
    cohort segments, cohort models against the test segments (transposed),
    cohort models against the cohort segments.  Runs
    :func:`ipem.speaker.scoring.score_trials`, so each segment is read once,
    where its task runs, and scored against all models.

    Parameters
    ----------
    ubm : UBM in any form :func:`ipem.speaker.map.ubm_params` accepts
    models : dict
        ``model_id -> SpeakerModel`` or model file path.
    segments : dict
        ``segment_id -> test`` (a feature file path, a list of them taken as
        one segment, a FeatureRef or an array of shape (n_frames, n_features)).
    exclude : collection of (model_id, segment_id), optional
        Pairs not to score; NaN in the result.
    controller : Controller, int, DirectView or None
    top_c : int or None, default=5
    progress : bool, default=False
    backend : {"c", "numpy"} or None

    Returns
    -------
    ndarray of shape (n_models, n_segments)
        In the order of ``models`` and ``segments``.
    """
    exclude = set(exclude)
    model_ids, seg_ids = list(models), list(segments)
    pairs, where = [], []
    for j, sid in enumerate(seg_ids):
        for i, mid in enumerate(model_ids):
            if (mid, sid) not in exclude:
                pairs.append((mid, segments[sid]))
                where.append((i, j))
    out = np.full((len(model_ids), len(seg_ids)), np.nan)
    logger.info("scoring %d models against %d cohort segments (%d scores)", len(model_ids),
                len(seg_ids), len(pairs))
    if pairs:
        scores = score_trials(ubm, pairs, models, controller=controller, top_c=top_c,
                              progress=progress, backend=backend)
        rows, cols = zip(*where)
        out[list(rows), list(cols)] = scores
    return out
