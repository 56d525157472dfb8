"""The i-vector steps: train the extractor, extract i-vectors, train the back-end, score.

::

    train_ivector     UBM + utterance feature files -> extractor (T)    (EM over the controller)
    extract_ivectors  extractor + utterances/speakers -> i-vector file  (one task per id)
    train_backend     i-vectors + speaker labels -> back-end            (centre, LDA, WCCN,
                                                                         length-norm, PLDA)
    score_ivectors    back-end + i-vectors + trials -> scores           (cosine or PLDA LLR,
                                                                         Z/T/ZT/S/AS-norm)

Lists and feature paths are those of :class:`ipem.speaker.FeatureSource`, trial
lists and score files those of :mod:`ipem.speaker.scorefiles`, so the score files
of both back-ends go through ``ipem calibrate`` and ``ipem evaluate`` alike.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ..io import read_list
from ..io.preflight import check_output_file
from ..ivector.backend import IvectorBackend, cosine_scores
from ..ivector.extraction import extract_ivectors as ivectors_of
from ..ivector.extraction import load_ivectors, save_ivectors
from ..ivector.total_variability import TotalVariability
from ..speaker.map import ubm_params
from ..speaker.normalization import NORMALIZATIONS, cohort_needs, normalize_scores
from ..speaker.scorefiles import read_trials, write_score_file
from .cluster import running

logger = logging.getLogger(__name__)

__all__ = ["BACKENDS", "extract_ivectors", "format_ivector_record", "read_labels",
           "score_ivectors", "train_backend", "train_ivector"]

#: Scoring back-ends of :func:`score_ivectors` (``"gmm"`` is :func:`ipem.steps.score`).
BACKENDS = ("cosine", "plda")


def train_ivector(ubm, utterances, *, rank=100, n_iter=10, top_c=None, seed=0,
                  checkpoint=None, plot=None, out=None, controller=None, callbacks=None):
    """Train the total-variability matrix; the engines compute and keep the statistics.

    Parameters
    ----------
    ubm : ipem.UBMTrainer, str or any form :func:`ipem.speaker.map.ubm_params` accepts
    utterances : dict or sequence
        ``id -> feature file(s)`` (e.g. :meth:`ipem.speaker.FeatureSource.utterances`) or feature
        files, one utterance each.
    rank : int, default=100
    n_iter : int, default=10
    top_c : int, optional
        Top-C posteriors for the Baum-Welch statistics (None: all Gaussians).
    seed : int, default=0
    checkpoint : str, optional
        Written every iteration; resumed from when it exists.
    plot : str or ipem.LivePlot, optional
        Convergence plot (PNG path, or a LivePlot to draw into).
    out : str, optional
        The extractor file (:meth:`TotalVariability.save`).
    controller : Controller, int, DirectView, str or None
        A cluster spec (``"mpi:2"``) is started after the checks.
    callbacks : list of callables, optional
        Called with every :class:`ipem.IterationRecord`.

    Returns
    -------
    TotalVariability
    """
    from ..plotting import LivePlot, image_format

    for path, what in ((out, "out"), (checkpoint, "checkpoint")):
        if path is not None:
            check_output_file(path, what)
    callbacks = list(callbacks or [])
    own_plot = None
    if isinstance(plot, (str, os.PathLike)):
        image_format(plot)
        own_plot = plot = LivePlot(title=f"total variability (R={rank})", path=os.fspath(plot))
    if plot is not None:
        callbacks.append(plot)
    params = ubm_params(ubm)
    logger.info("training a rank-%d total-variability matrix on %d utterances (UBM %d x %d)",
                rank, len(utterances), *params.means.shape)
    with running(controller) as ctrl:
        tv = TotalVariability(rank, ubm=params, max_iter=n_iter, top_c=top_c, random_state=seed,
                              checkpoint=checkpoint, controller=ctrl, callbacks=callbacks)
        tv.fit(utterances if isinstance(utterances, dict) else list(utterances))
    if own_plot is not None and hasattr(own_plot, "close"):
        own_plot.close()
    if out is not None:
        tv.save(out)
    return tv


def extract_ivectors(extractor, utterances, *, out=None, controller=None, progress=False):
    """I-vectors of utterances and speakers, one task per id.

    Parameters
    ----------
    extractor : TotalVariability or str
    utterances : dict
        ``id -> feature file(s)``: :meth:`ipem.speaker.FeatureSource.utterances`
        for utterances, :meth:`ipem.speaker.FeatureSource.enrollment` for
        speakers (their files pooled).
    out : str, optional
        The i-vector file (:func:`ipem.ivector.save_ivectors`).
    controller, progress
        As the other steps.

    Returns
    -------
    dict
        ``id -> ndarray of shape (R,)``.
    """
    if out is not None:
        check_output_file(out, "out")
    tv = TotalVariability.load(extractor) if isinstance(extractor, (str, os.PathLike)) \
        else extractor
    with running(controller) as ctrl:
        vecs = ivectors_of(tv, utterances, controller=ctrl, progress=progress)
    if out is not None:
        save_ivectors(out, vecs)
    logger.info("extracted %d i-vectors of dimension %d", len(vecs), tv.n_components)
    return vecs


def _vectors(ivectors):
    if isinstance(ivectors, (str, os.PathLike)):
        return load_ivectors(ivectors)
    if isinstance(ivectors, (list, tuple)):
        merged = {}
        for part in ivectors:
            merged.update(_vectors(part))
        return merged
    return dict(ivectors)


def train_backend(ivectors, labels=None, *, lda_dim=None, wccn=True, plda_iter=10, out=None):
    """Train centring, LDA, WCCN, length normalisation and PLDA on labelled i-vectors.

    Parameters
    ----------
    ivectors : str, dict or list of them
        i-vector files or ``{id: vector}``.
    labels : str or dict, optional
        ``id -> speaker``, a ``speaker utt...`` list (:func:`read_labels`),
        or None: the parent directory of each id.  Ids without a speaker are
        left out.
    lda_dim : int, 0 or None
        None: speakers - 1 (at most the i-vector dimension); 0: no LDA.
    wccn : bool, default=True
    plda_iter : int, default=10
    out : str, optional

    Returns
    -------
    IvectorBackend
    """
    if out is not None:
        check_output_file(out, "out")
    vecs = _vectors(ivectors)
    lab = labels if isinstance(labels, dict) else read_labels(labels, vecs)
    ids = [i for i in vecs if i in lab]
    if not ids:
        raise ValueError("no i-vector has a speaker label")
    X = np.stack([vecs[i] for i in ids])
    y = np.array([lab[i] for i in ids])
    be = IvectorBackend(lda_dim=lda_dim, wccn=wccn, plda=True, plda_iter=plda_iter).fit(X, y)
    if out is not None:
        be.save(out)
    return be


def _lookup(vecs, ids, what, where):
    missing = [i for i in ids if i not in vecs]
    if missing:
        raise ValueError(f"{where}: no i-vector of {what} {missing[0]!r} "
                         f"({len(missing)} missing): extract it with 'ipem extract-ivectors'")
    return np.stack([vecs[i] for i in ids])


def score_ivectors(ivectors, trials, *, backend="plda", model=None, cohort=None, norm=None,
                   top_n=200, out=None):
    """Score a trial list with i-vectors: cosine similarity or PLDA log-likelihood ratios.

    Parameters
    ----------
    ivectors : str, dict or list of them
        The i-vectors of the trials' models (speaker ids) and test segments
        (list entries).
    trials : str or sequence of Trial
    backend : {"cosine", "plda"}
    model : IvectorBackend or str, optional
        The trained back-end; cosine without it scores the raw i-vectors.
    cohort : sequence of str, optional
        Ids of impostor i-vectors for score normalisation.
    norm : {"z", "t", "zt", "s", "as"}, optional
        Score normalisation (:func:`ipem.speaker.normalization.normalize_scores`)
        with ``cohort``.
    top_n : int, default=200
        For adaptive S-norm.
    out : str, optional
        The score file (``model test score [label]``).

    Returns
    -------
    trials : list of Trial
    scores : ndarray of shape (n_trials,)
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}: expected one of {', '.join(BACKENDS)}")
    if out is not None:
        check_output_file(out, "out")
    if norm is not None and norm not in NORMALIZATIONS:
        raise ValueError(f"norm={norm!r}: expected one of {', '.join(NORMALIZATIONS)}")
    if norm is not None and not cohort:
        raise ValueError(f"{norm}-norm needs a cohort of i-vectors")
    where = os.fspath(trials) if isinstance(trials, (str, os.PathLike)) else "trials"
    trials = read_trials(trials) if isinstance(trials, (str, os.PathLike)) else list(trials)
    vecs = _vectors(ivectors)
    be = IvectorBackend.load(model) if isinstance(model, (str, os.PathLike)) else model
    if backend == "plda" and (be is None or be.plda_ is None):
        raise ValueError("PLDA scoring needs a back-end trained with PLDA "
                         "('ipem train-plda')")
    models = list(dict.fromkeys(t[0] for t in trials))
    tests = list(dict.fromkeys(t[1] for t in trials))
    E = _lookup(vecs, models, "model", where)
    T = _lookup(vecs, tests, "test segment", where)
    m_index = {m: i for i, m in enumerate(models)}
    t_index = {t: i for i, t in enumerate(tests)}
    pairs = np.array([[m_index[t[0]], t_index[t[1]]] for t in trials], dtype=np.int64)

    def scorer(a, b, p=None):
        if be is None:
            return cosine_scores(a, b, p)
        return be.score(a, b, p, method=backend)

    scores = scorer(E, T, pairs)
    if norm is not None:
        C = _lookup(vecs, list(cohort), "cohort member", "cohort")
        need = cohort_needs(norm)
        scores = normalize_scores(
            norm, scores, enroll_cohort=scorer(E, C) if "enroll" in need else None,
            test_cohort=scorer(T, C) if "test" in need else None,
            cohort_cohort=scorer(C, C) if "cohort" in need else None,
            enroll_index=pairs[:, 0], test_index=pairs[:, 1], top_n=top_n)
    logger.info("scored %d trials with %s%s", len(trials), backend,
                f" and {norm}-norm" if norm else "")
    if out is not None:
        write_score_file(out, trials, scores)
    return trials, np.asarray(scores, dtype=np.float64)


def read_labels(path=None, ids=()):
    """Speaker labels of i-vector ids.

    Parameters
    ----------
    path : str or os.PathLike, optional
        ``speaker utterance [utterance ...]`` lines (an enrollment list, a
        Kaldi ``spk2utt``).  Without it an utterance's speaker is the name of
        its parent directory (``wav/<speaker>/utt.wav``, as the generated
        corpora are laid out).
    ids : iterable of str
        The ids to label.

    Returns
    -------
    dict
        ``id -> speaker`` for every id of ``ids`` that has one.
    """
    ids = list(ids)
    if path is None:
        return {i: Path(i).parent.name for i in ids if Path(i).parent.name}
    speaker_of = {}
    for lineno, fields in read_list(path):
        for utt in fields[1:]:
            if utt in speaker_of:
                raise ValueError(f"{os.fspath(path)}, line {lineno}: utterance {utt} has two "
                                 "speakers")
            speaker_of[utt] = fields[0]
    return {i: speaker_of[i] for i in ids if i in speaker_of}


def format_ivector_record(record):
    """One line describing a TV EM iteration (objective per frame, engines' utterances)."""
    info = record.info
    utts = "/".join(str(n) for n in info.get("shard_frames", []))
    times = "/".join(f"{t * 1e3:.0f}" for t in info.get("shard_time", []))
    return (f"  iter {record.iteration:3d}  R={record.stage:<4d} objective/frame "
            f"{record.objective:9.5f}  change {record.change:9.2e}  E|w|^2 "
            f"{info.get('mean_ivector_norm2', float('nan')):7.3f}  engines utterances {utts} "
            f"E-step ms {times}  {record.time:.2f} s")
