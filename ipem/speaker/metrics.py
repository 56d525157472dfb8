"""Detection metrics for speaker verification: EER, ROCCH-EER, DCF, Cllr, DET plots.

Conventions (as in the NIST SRE evaluations and the BOSARIS toolkit):

* higher scores favour the target hypothesis;
* a trial is accepted when ``score >= threshold``, so
  ``P_miss(t) = #{tar < t} / N_tar`` and ``P_fa(t) = #{non >= t} / N_non``;
* the detection cost is
  ``DCF = c_miss * p_target * P_miss + c_fa * (1 - p_target) * P_fa``,
  normalised by the cost of the best trivial system,
  ``min(c_miss * p_target, c_fa * (1 - p_target))``;
* actDCF and Cllr read scores as natural-log likelihood ratios: they measure
  calibration as well as discrimination, minDCF and minCllr only the latter.
"""

from __future__ import annotations

import math
import os
from collections import namedtuple
from typing import Mapping

import numpy as np
from scipy.optimize import isotonic_regression

__all__ = [
    "OperatingPoint",
    "SRE2008",
    "SRE2010",
    "det_curve",
    "compute_eer",
    "rocch",
    "rocch_eer",
    "min_dcf",
    "act_dcf",
    "bayes_threshold",
    "effective_prior",
    "cllr",
    "min_cllr",
    "optimal_llr",
    "plot_det",
]

OperatingPoint = namedtuple("OperatingPoint", ["p_target", "c_miss", "c_fa"])
OperatingPoint.__doc__ = "Detection-cost operating point (p_target, c_miss, c_fa)."

#: NIST SRE 2008 core condition: P_target=0.01, C_miss=10, C_fa=1.
SRE2008 = OperatingPoint(0.01, 10.0, 1.0)
#: NIST SRE 2010 core condition: P_target=0.001, C_miss=1, C_fa=1.
SRE2010 = OperatingPoint(0.001, 1.0, 1.0)


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------
def _check_scores(tar, non) -> tuple[np.ndarray, np.ndarray]:
    out = []
    for name, s in (("target", tar), ("non-target", non)):
        try:
            a = np.asarray(s, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} scores are not numeric: {exc}") from exc
        if a.ndim == 0:
            raise ValueError(f"{name} scores must be a 1-D array, got a scalar")
        a = a.ravel()
        if a.size == 0:
            raise ValueError(f"{name} scores are empty")
        if np.isnan(a).any():
            raise ValueError(f"{name} scores contain NaN ({int(np.isnan(a).sum())} of {a.size})")
        if np.isinf(a).any():
            raise ValueError(f"{name} scores contain infinite values")
        out.append(a)
    return out[0], out[1]


def _check_op(p_target, c_miss, c_fa):
    if not (0.0 < p_target < 1.0):
        raise ValueError(f"p_target must be in (0, 1), got {p_target!r}")
    if not (c_miss > 0 and c_fa > 0):
        raise ValueError(f"costs must be positive, got c_miss={c_miss!r}, c_fa={c_fa!r}")


# ---------------------------------------------------------------------------
# ROC / DET
# ---------------------------------------------------------------------------
def _roc_points(tar, non):
    """Steps of the empirical ROC.

    Returns ``thresholds, p_miss, p_fa`` with ``len(unique scores) + 1``
    entries: point ``k`` is the decision "accept iff score >= thresholds[k]",
    thresholds[0] = -inf (accept all) ... thresholds[-1] = +inf (reject all);
    interior thresholds are the midpoints between consecutive unique scores.
    """
    tar_s = np.sort(tar)
    non_s = np.sort(non)
    u = np.unique(np.concatenate([tar_s, non_s]))
    # point k (k = 0..U): accept the scores > u[k-1]  (u[-1] := -inf)
    cut = np.concatenate([[-np.inf], u])
    p_miss = np.searchsorted(tar_s, cut, side="right") / tar_s.size
    p_fa = 1.0 - np.searchsorted(non_s, cut, side="right") / non_s.size
    thr = np.empty(u.size + 1)
    thr[0] = -np.inf
    thr[-1] = np.inf
    thr[1:-1] = 0.5 * (u[:-1] + u[1:])
    return thr, p_miss, p_fa


def det_curve(tar, non) -> tuple[np.ndarray, np.ndarray]:
    """Empirical miss and false-alarm rates over all thresholds.

    Parameters
    ----------
    tar : array_like, shape (n_tar,)
        Target-trial scores.
    non : array_like, shape (n_non,)
        Non-target-trial scores.

    Returns
    -------
    p_miss : numpy.ndarray, shape (n_unique + 1,)
        Non-decreasing, from 0 (accept everything) to 1.
    p_fa : numpy.ndarray, shape (n_unique + 1,)
        Non-increasing, from 1 to 0.
    """
    tar, non = _check_scores(tar, non)
    _, p_miss, p_fa = _roc_points(tar, non)
    return p_miss, p_fa


def compute_eer(tar, non) -> float:
    """Equal error rate of the (interpolated) empirical ROC.

    The ROC steps are joined by straight lines in the (P_fa, P_miss) plane and
    the EER is where that polyline crosses ``P_miss == P_fa``.

    Parameters
    ----------
    tar : array_like, shape (n_tar,)
        Target-trial scores.
    non : array_like, shape (n_non,)
        Non-target-trial scores.

    Returns
    -------
    float
        EER as a fraction in [0, 1].
    """
    tar, non = _check_scores(tar, non)
    _, pm, pf = _roc_points(tar, non)
    d = pm - pf  # non-decreasing from -1 to +1
    k = int(np.argmax(d >= 0))  # first point at or past the crossing (k >= 1)
    if d[k] == 0:
        return float(pm[k])
    # linear interpolation between points k-1 (d<0) and k (d>0)
    a = -d[k - 1] / (d[k] - d[k - 1])
    return float(pm[k - 1] + a * (pm[k] - pm[k - 1]))


# ---------------------------------------------------------------------------
# ROC convex hull
# ---------------------------------------------------------------------------
def _pav_blocks(labels: np.ndarray) -> np.ndarray:
    """Pool-adjacent-violators on a 0/1 sequence: where its monotone fit's blocks start.

    SciPy's :func:`scipy.optimize.isotonic_regression` finds the blocks of
    the non-decreasing least-squares fit; adjacent blocks holding the same
    fraction of ones are pooled here too, compared exactly in integers (the
    fit is unique, so the blocks are those of any exact PAV).

    Parameters
    ----------
    labels : numpy.ndarray of shape (n,)
        0.0 and 1.0.

    Returns
    -------
    numpy.ndarray of shape (n_blocks + 1,)
        Block edges: ``0 = edges[0] < ... < edges[-1] = n``; the fitted
        values (the blocks' fractions of ones) strictly increase.
    """
    blocks = isotonic_regression(labels).blocks
    width = np.diff(blocks)
    ones = np.add.reduceat(labels, blocks[:-1]).astype(np.int64)
    # block i+1 holds the same fraction as block i: ones[i+1]/width[i+1] == ones[i]/width[i]
    same = ones[1:] * width[:-1] == ones[:-1] * width[1:]
    return np.concatenate([blocks[:-1][np.concatenate([[True], ~same])], blocks[-1:]])


def rocch(tar, non) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of the ROC convex hull (ROCCH).

    Trials are sorted by score (ties with a target first: pessimistic), the
    target indicator sequence is made monotone by pool-adjacent-violators,
    and every PAV block boundary is a hull vertex.

    Parameters
    ----------
    tar : array_like, shape (n_tar,)
        Target-trial scores.
    non : array_like, shape (n_non,)
        Non-target-trial scores.

    Returns
    -------
    p_miss : numpy.ndarray, shape (n_blocks + 1,)
        Miss rate at the vertices, non-decreasing from 0 to 1.
    p_fa : numpy.ndarray, shape (n_blocks + 1,)
        False-alarm rate at the vertices, non-increasing from 1 to 0.
    """
    tar, non = _check_scores(tar, non)
    scores = np.concatenate([tar, non])
    labels = np.concatenate([np.ones(tar.size), np.zeros(non.size)])
    # sort by score; among equal scores targets come first (stable sort of
    # the target-first concatenation), the pessimistic tie order.
    order = np.argsort(scores, kind="stable")
    labels = labels[order]
    edges = _pav_blocks(labels)  # trials below each vertex
    tar_below = np.concatenate([[0.0], np.cumsum(labels)])[edges]
    non_below = edges - tar_below
    p_miss = tar_below / tar.size
    p_fa = 1.0 - non_below / non.size
    return p_miss, p_fa


def rocch_eer(tar, non) -> float:
    """EER of the ROC convex hull (the BOSARIS "ROCCH-EER").

    For every hull segment between vertices ``(f1, m1)`` and ``(f2, m2)``
    (``f`` = P_fa, ``m`` = P_miss) take the line ``a f + b m = 1`` through
    them; it meets the diagonal ``f = m = e`` at ``e = 1 / (a + b)``.
    Because the hull is convex, every such line lies on or below it, so the
    hull's crossing of the diagonal is the largest of these values.
    Horizontal or vertical segments (only at P_miss = 0 or P_fa = 0 on a
    convex hull) contribute 0.

    Parameters
    ----------
    tar : array_like, shape (n_tar,)
        Target-trial scores.
    non : array_like, shape (n_non,)
        Non-target-trial scores.

    Returns
    -------
    float
        ROCCH-EER as a fraction in [0, 0.5].
    """
    pm, pf = rocch(tar, non)
    f1, f2, m1, m2 = pf[:-1], pf[1:], pm[:-1], pm[1:]
    df, dm = f1 - f2, m2 - m1
    sloped = (df != 0) & (dm != 0)
    df, dm, f1, m1 = df[sloped], dm[sloped], f1[sloped], m1[sloped]
    # line through the points: m = m1 + (f1 - f) * dm/df  ->  at f = m = e:
    # e = (m1 + f1 * dm/df) / (1 + dm/df) = (m1 df + f1 dm) / (df + dm)
    e = (m1 * df + f1 * dm) / (df + dm)
    return float(max(0.0, e.max(initial=0.0)))


# ---------------------------------------------------------------------------
# Detection cost
# ---------------------------------------------------------------------------
def _dcf(p_miss, p_fa, p_target, c_miss, c_fa, normalize):
    cost = c_miss * p_target * p_miss + c_fa * (1.0 - p_target) * p_fa
    if normalize:
        cost = cost / min(c_miss * p_target, c_fa * (1.0 - p_target))
    return cost


def min_dcf(tar, non, p_target: float = SRE2008.p_target, c_miss: float = SRE2008.c_miss,
            c_fa: float = SRE2008.c_fa, normalize: bool = True) -> tuple[float, float]:
    """Minimum detection cost over all thresholds.

    Parameters
    ----------
    tar : array_like, shape (n_tar,)
        Target-trial scores.
    non : array_like, shape (n_non,)
        Non-target-trial scores.
    p_target, c_miss, c_fa : float, optional
        Operating point (defaults: :data:`SRE2008`); ``min_dcf(tar, non,
        *SRE2010)`` works too.
    normalize : bool, optional
        Divide by ``min(c_miss * p_target, c_fa * (1 - p_target))``.

    Returns
    -------
    value : float
        The minimum (normalised) DCF.
    threshold : float
        A threshold reaching it (decision ``score >= threshold``): the
        midpoint between two consecutive scores, or -inf / +inf when accepting
        / rejecting everything is best.
    """
    tar, non = _check_scores(tar, non)
    _check_op(p_target, c_miss, c_fa)
    thr, pm, pf = _roc_points(tar, non)
    cost = _dcf(pm, pf, p_target, c_miss, c_fa, normalize)
    k = int(np.argmin(cost))
    return float(cost[k]), float(thr[k])


def bayes_threshold(p_target: float, c_miss: float, c_fa: float) -> float:
    """Bayes decision threshold for calibrated log-likelihood-ratio scores.

    Returns
    -------
    float
        ``log(c_fa * (1 - p_target) / (c_miss * p_target))``.
    """
    _check_op(p_target, c_miss, c_fa)
    return math.log(c_fa * (1.0 - p_target) / (c_miss * p_target))


def act_dcf(tar, non, p_target: float = SRE2008.p_target, c_miss: float = SRE2008.c_miss,
            c_fa: float = SRE2008.c_fa, *, threshold: float | None = None,
            normalize: bool = True) -> float:
    """Actual detection cost at a fixed threshold.

    Parameters
    ----------
    tar : array_like, shape (n_tar,)
        Target-trial scores.
    non : array_like, shape (n_non,)
        Non-target-trial scores.
    p_target, c_miss, c_fa : float, optional
        Operating point (defaults: :data:`SRE2008`).
    threshold : float, optional
        Decision threshold (accept iff ``score >= threshold``).  ``None``
        uses the Bayes threshold :func:`bayes_threshold`, i.e. treats the
        scores as calibrated log-likelihood ratios.
    normalize : bool, optional
        Divide by ``min(c_miss * p_target, c_fa * (1 - p_target))``.

    Returns
    -------
    float
        The (normalised) DCF at that threshold.
    """
    tar, non = _check_scores(tar, non)
    _check_op(p_target, c_miss, c_fa)
    if threshold is None:
        threshold = bayes_threshold(p_target, c_miss, c_fa)
    elif isinstance(threshold, float) and math.isnan(threshold):
        raise ValueError("threshold is NaN")
    p_miss = float(np.mean(tar < threshold))
    p_fa = float(np.mean(non >= threshold))
    return float(_dcf(p_miss, p_fa, p_target, c_miss, c_fa, normalize))


def effective_prior(p_target: float, c_miss: float, c_fa: float) -> float:
    """The target prior that folds the costs into the prior.

    An operating point ``(p_target, c_miss, c_fa)`` has the same Bayes
    decisions as ``(p_eff, 1, 1)``, ``p_eff = c_miss p_target / (c_miss
    p_target + c_fa (1 - p_target))``; its Bayes threshold is
    ``-logit(p_eff)``.

    Returns
    -------
    float
        ``p_eff`` in (0, 1); 0.0917 for :data:`SRE2008`, 0.001 for :data:`SRE2010`.
    """
    _check_op(p_target, c_miss, c_fa)
    return c_miss * p_target / (c_miss * p_target + c_fa * (1.0 - p_target))


# ---------------------------------------------------------------------------
# Log-likelihood-ratio cost
# ---------------------------------------------------------------------------
def _cllr(tar_llr: np.ndarray, non_llr: np.ndarray) -> float:
    """Cllr of LLRs that may be infinite (+inf targets and -inf non-targets cost 0)."""
    with np.errstate(over="ignore"):
        c_tar = np.mean(np.logaddexp(0.0, -tar_llr))
        c_non = np.mean(np.logaddexp(0.0, non_llr))
    return float(0.5 * (c_tar + c_non) / math.log(2.0))


def cllr(tar, non) -> float:
    """Log-likelihood-ratio cost of scores read as natural-log LLRs (Brummer 2006).

    ``Cllr = 1/(2 log 2) [mean_tar log(1 + e^-s) + mean_non log(1 + e^s)]``
    bits: the logistic loss averaged over both classes with equal weight, i.e.
    the DCF averaged over all operating points.  0 is perfect, 1 bit is the
    cost of the uninformative LLR 0; badly calibrated scores cost more.

    Parameters
    ----------
    tar : array_like, shape (n_tar,)
        Target-trial scores (LLRs).
    non : array_like, shape (n_non,)
        Non-target-trial scores (LLRs).

    Returns
    -------
    float
        Cllr in bits, >= 0.
    """
    tar, non = _check_scores(tar, non)
    return _cllr(tar, non)


def _pav_fractions(ones: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Weighted pool-adjacent-violators of the fractions ``ones / n``.

    The non-decreasing fit with the least ``n``-weighted squared error
    (SciPy's :func:`scipy.optimize.isotonic_regression`); each block's value
    is its pooled ``sum(ones) / sum(n)``, one division of exact sums.

    Parameters
    ----------
    ones, n : numpy.ndarray of shape (n_groups,)
        Targets and trials per group (per unique score), ``n > 0``.

    Returns
    -------
    numpy.ndarray of shape (n_groups,)
        The fitted fraction of every group.
    """
    blocks = isotonic_regression(ones / n, weights=n).blocks
    vals = np.add.reduceat(ones, blocks[:-1]) / np.add.reduceat(n, blocks[:-1])
    return np.repeat(vals, np.diff(blocks))


def optimal_llr(tar, non) -> tuple[np.ndarray, np.ndarray]:
    """The best monotone calibration of the scores, fitted to themselves (PAV).

    Pool-adjacent-violators over the trials sorted by score gives the
    non-decreasing target posterior with the least logistic loss (tied
    scores share one value); dividing out the data's own prior
    ``n_tar / n_non`` turns it into LLRs.  This is the oracle of
    :func:`min_cllr` and of the ROC convex hull: not a calibration to apply
    to new data.

    Parameters
    ----------
    tar : array_like, shape (n_tar,)
        Target-trial scores.
    non : array_like, shape (n_non,)
        Non-target-trial scores.

    Returns
    -------
    tar_llr : numpy.ndarray, shape (n_tar,)
    non_llr : numpy.ndarray, shape (n_non,)
        Natural-log LLRs; ``-inf`` / ``+inf`` where a score range holds only
        non-targets / only targets.
    """
    tar, non = _check_scores(tar, non)
    scores = np.concatenate([tar, non])
    labels = np.concatenate([np.ones(tar.size), np.zeros(non.size)])
    u, inv = np.unique(scores, return_inverse=True)
    n = np.bincount(inv, minlength=u.size).astype(np.float64)
    n_tar = np.bincount(inv, weights=labels, minlength=u.size)
    post = _pav_fractions(n_tar, n)[inv]
    with np.errstate(divide="ignore"):
        llr = np.log(post) - np.log1p(-post) - math.log(tar.size / non.size)
    return llr[: tar.size], llr[tar.size:]


def min_cllr(tar, non) -> float:
    """Cllr after the best monotone calibration (:func:`optimal_llr`).

    What the scores would cost if they were perfectly calibrated: the
    discrimination part of :func:`cllr`; ``cllr - min_cllr`` is the
    calibration loss.  Invariant to any increasing transform of the scores.

    Parameters
    ----------
    tar : array_like, shape (n_tar,)
        Target-trial scores.
    non : array_like, shape (n_non,)
        Non-target-trial scores.

    Returns
    -------
    float
        minCllr in bits, in [0, 1] and never above ``cllr(tar, non)``.
    """
    return _cllr(*optimal_llr(tar, non))


# ---------------------------------------------------------------------------
# DET plot
# ---------------------------------------------------------------------------
_DET_TICKS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4)
_DET_TICK_LABELS = ("0.1", "0.2", "0.5", "1", "2", "5", "10", "20", "40")
_DET_LIMITS = (0.0005, 0.5)


def plot_det(curves: Mapping[str, tuple], path: str | os.PathLike | None = None, ax=None,
             *, title: str | None = None, show_eer: bool = True):
    """Plot DET curves on normal-deviate axes.

    Parameters
    ----------
    curves : mapping of str to (tar, non)
        Label -> (target scores, non-target scores), one curve each.
    path : path-like, optional
        If given, the figure is saved there as a PNG (Agg renderer; no
        display is needed and pyplot's backend is untouched).
    ax : matplotlib.axes.Axes, optional
        Axes to draw into; if omitted, a new figure outside pyplot is made
        (:func:`ipem.plotting.new_figure`), which a notebook shows as an image
        when it is the value of a cell (``plot_det(...).figure``).
    title : str, optional
        Axes title.
    show_eer : bool, optional
        Append the EER to each label and mark the EER point.

    Returns
    -------
    matplotlib.axes.Axes
        The axes drawn into (``ax.figure`` is the figure).
    """
    from scipy.stats import norm

    if not curves:
        raise ValueError("curves is empty: give at least one label -> (tar, non)")
    if ax is None:
        from ..plotting import new_figure

        ax = new_figure(figsize=(6, 6), dpi=100).add_subplot(1, 1, 1)
    eps = 1e-9
    for label, pair in curves.items():
        try:
            tar, non = pair
        except (TypeError, ValueError) as exc:
            raise ValueError(f"curve {label!r} must be a (tar, non) pair") from exc
        pm, pf = det_curve(tar, non)
        x = norm.ppf(np.clip(pf, eps, 1 - eps))
        y = norm.ppf(np.clip(pm, eps, 1 - eps))
        text = str(label)
        if show_eer:
            eer = compute_eer(tar, non)
            text += f" (EER {100 * eer:.2f}%)"
        (line,) = ax.plot(x, y, label=text, linewidth=1.5)
        if show_eer and eer > 0:
            z = norm.ppf(min(max(eer, eps), 1 - eps))
            ax.plot([z], [z], "o", color=line.get_color(), markersize=4)
    lim = norm.ppf(_DET_LIMITS)
    ax.plot(lim, lim, ":", color="0.6", linewidth=0.8)
    ticks = norm.ppf(_DET_TICKS)
    ax.set_xticks(ticks)
    ax.set_xticklabels(_DET_TICK_LABELS)
    ax.set_yticks(ticks)
    ax.set_yticklabels(_DET_TICK_LABELS)
    ax.set_xlim(*lim)
    ax.set_ylim(*lim)
    ax.set_aspect("equal")
    ax.set_xlabel("False alarm probability (%)")
    ax.set_ylabel("Miss probability (%)")
    ax.grid(True, linestyle=":", linewidth=0.5)
    ax.legend(loc="lower left", fontsize="small")
    if title:
        ax.set_title(title)
    if path is not None:
        ax.figure.savefig(os.fspath(path), format="png", bbox_inches="tight")
    return ax
