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
from ..io.atomic import remove_stale_temporaries
from ..io.preflight import check_output_file
from ..io.provenance import (file_digest, gmm_digest, make_record, save_with_record, short,
                             trials_digest, utterance_keys, write_companion)
from ..io.streaming import resident_rows
from ..ivector.backend import IvectorBackend, cosine_scores
from ..ivector.extraction import extract_ivectors as ivectors_of
from ..ivector.extraction import load_ivectors, save_ivectors
from ..ivector.stats import STREAM_UTTERANCES
from ..ivector.total_variability import TotalVariability
from ..parallel import rows_per_block
from ..speaker.map import ubm_params
from ..speaker.normalization import NORMALIZATIONS, cohort_needs, normalize_scores
from ..speaker.scorefiles import read_trials, write_score_file
from .chain import Checks, check_frontend, name_of, overlap_message
from .cluster import running
from .gmm import _check_headers

logger = logging.getLogger(__name__)

__all__ = ["BACKENDS", "extract_ivectors", "format_ivector_record", "read_labels",
           "score_ivectors", "train_backend", "train_ivector"]

#: Scoring back-ends of :func:`score_ivectors` (``"gmm"`` is :func:`ipem.steps.score`).
BACKENDS = ("cosine", "plda")


def train_ivector(ubm, utterances, *, rank=100, n_iter=10, top_c=None, seed=0,
                  checkpoint=None, plot=None, out=None, controller=None, callbacks=None,
                  engine_memory=None, allow_overlap=False):
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
        The extractor file (:meth:`TotalVariability.save`), with its
        provenance record (its UBM, the utterances trained on).
    controller : Controller, int, DirectView, str or None
        A cluster spec (``"mpi:2"``) is started after the checks.
    callbacks : list of callables, optional
        Called with every :class:`ipem.IterationRecord`.
    engine_memory : int or str, optional
        Memory of each engine process; the utterance statistics that do not
        fit are streamed from a scratch file every iteration
        (``TotalVariability(engine_memory=...)``).
    allow_overlap : bool, default=False
        Train even on features of another front-end than the UBM's training
        features (feature manifests, :func:`ipem.steps.chain.check_frontend`);
        the extractor's record keeps it.

    Returns
    -------
    TotalVariability

    Raises
    ------
    ipem.io.provenance.ProvenanceError
        Features of another front-end than the UBM's (the feature manifest
        and the UBM named), before any cluster starts.
    """
    from ..plotting import LivePlot, image_format

    for path, what in ((out, "out"), (checkpoint, "checkpoint")):
        if path is not None:
            check_output_file(path, what)
    # what a killed run left half-written next to them (.<name>.<12 hex>.tmp)
    remove_stale_temporaries([p for p in (out, checkpoint) if p is not None])
    if isinstance(plot, (str, os.PathLike)):
        image_format(plot)
    ubm_name, params = name_of(ubm, None), ubm_params(ubm)
    _check_dimensions(utterances, params.means.shape[1])     # before any cluster starts
    keys = utterance_keys(list(utterances.values()) if isinstance(utterances, dict)
                          else list(utterances))
    checks = Checks(allow_overlap)      # features of the UBM's front-end, before any work
    ubm_rec = checks.record(ubm) if ubm_name is not None else None
    feature_fields = check_frontend(keys, ubm_rec, ubm_name, checks)
    callbacks = list(callbacks or [])
    own_plot = None
    if isinstance(plot, (str, os.PathLike)):
        own_plot = plot = LivePlot(title=f"total variability (R={rank})", path=os.fspath(plot))
    if plot is not None:
        callbacks.append(plot)
    if engine_memory is not None:   # at least one block of rows, before any cluster starts
        k, d = params.means.shape
        resident_rows(engine_memory, rows_per_block(controller, len(utterances), "utterances")
                      or STREAM_UTTERANCES, (k + k * d) * 8)
    logger.info("training a rank-%d total-variability matrix on %d utterances (UBM %d x %d)",
                rank, len(utterances), *params.means.shape)
    with running(controller) as ctrl:
        tv = TotalVariability(rank, ubm=params, max_iter=n_iter, top_c=top_c, random_state=seed,
                              checkpoint=checkpoint, controller=ctrl, callbacks=callbacks,
                              engine_memory=engine_memory)
        tv.fit(utterances if isinstance(utterances, dict) else list(utterances))
    if own_plot is not None and hasattr(own_plot, "close"):
        own_plot.close()
    if out is not None:
        save_with_record(tv.save, out, make_record(
            "extractor", ubm=gmm_digest(params), ubm_file=ubm_name, utterances=keys,
            n_utterances=len(keys), ubm_record=ubm_rec, **feature_fields, **checks.fields()))
    return tv


def extract_ivectors(extractor, utterances, *, out=None, controller=None, progress=False,
                     allow_overlap=False):
    """I-vectors of utterances and speakers, one task per id.

    Parameters
    ----------
    extractor : TotalVariability or str
    utterances : dict
        ``id -> feature file(s)``: :meth:`ipem.speaker.FeatureSource.utterances`
        for utterances, :meth:`ipem.speaker.FeatureSource.enrollment` for
        speakers (their files pooled).
    out : str, optional
        The i-vector file (:func:`ipem.ivector.save_ivectors`); for an
        extractor file, with a provenance record (the extractor's digest and
        record, each id's feature files).
    controller, progress
        As the other steps.
    allow_overlap : bool, default=False
        Extract even from features of another front-end than the extractor's
        UBM was trained on (feature manifests, :func:`ipem.steps.chain.check_frontend`).

    Returns
    -------
    dict
        ``id -> ndarray of shape (R,)``.
    """
    if out is not None:
        check_output_file(out, "out")
    tv = TotalVariability.load(extractor) if isinstance(extractor, (str, os.PathLike)) \
        else extractor
    if getattr(tv, "ubm_means_", None) is not None:
        _check_dimensions(utterances, tv.ubm_means_.shape[1])  # before any cluster starts
    checks, tv_rec = Checks(allow_overlap), None    # features of the UBM's front-end
    if isinstance(extractor, (str, os.PathLike)):
        tv_rec = checks.record(extractor)
    feature_fields = check_frontend(
        [k for f in utterances.values() for k in utterance_keys(f)],
        (tv_rec or {}).get("ubm_record"), os.fspath(extractor) if tv_rec else None, checks)
    with running(controller) as ctrl:
        vecs = ivectors_of(tv, utterances, controller=ctrl, progress=progress)
    if out is not None:
        rec = None
        if isinstance(extractor, (str, os.PathLike)):
            rec = make_record("ivectors", extractor=file_digest(extractor),
                              extractor_file=os.fspath(extractor),
                              extractor_record=Checks().record(extractor),
                              sources={str(i): utterance_keys(f) for i, f in utterances.items()},
                              **feature_fields, **checks.fields())
        save_with_record(lambda path: save_ivectors(path, vecs), out, rec)
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


def _check_dimensions(utterances, n_features):
    """Refuse, before any cluster starts, a feature file of another dimension than the UBM's."""
    sources = dict(utterances) if isinstance(utterances, dict) else dict(enumerate(utterances))
    _check_headers(sources, n_features, "utterance")


def _iv_records(ivectors, checks):
    """``[(file, record or None)]`` of the i-vector files among ``ivectors``."""
    if isinstance(ivectors, (str, os.PathLike)):
        return [(os.fspath(ivectors), checks.record(ivectors))]
    if isinstance(ivectors, (list, tuple)):
        return [pair for part in ivectors for pair in _iv_records(part, checks)]
    return []


def _one_extractor(recs, checks):
    """The extractor digest of i-vector files' records; two extractors are refused."""
    known = [(name, rec) for name, rec in recs if rec is not None and rec.get("extractor")]
    for name, rec in known[1:]:
        if rec["extractor"] != known[0][1]["extractor"]:
            checks.refuse(f"{known[0][0]} and {name} hold i-vectors of different extractors "
                          f"({short(known[0][1]['extractor'])}, {short(rec['extractor'])})")
            break
    return known[0][1] if known else None


def _sources(recs):
    """``id -> utterance keys`` from i-vector files' records."""
    out = {}
    for _, rec in recs:
        if rec is not None:
            out.update(rec.get("sources", {}))
    return out


def train_backend(ivectors, labels=None, *, lda_dim=None, wccn=None, plda_iter=10, out=None,
                  allow_overlap=False):
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
        0: no LDA; None: derived from the training set
        (:func:`ipem.ivector.backend_defaults`): speakers - 1 (at most the
        i-vector dimension R) with at least R/2 + 1 speakers, else no LDA.
    wccn : bool or None, default=None
        None: derived (WCCN when the vectors outnumber the speakers by twice
        the dimension after LDA).
    plda_iter : int, default=10
    out : str, optional
        The back-end file, with its provenance record (the i-vector files'
        digests, the ids, speakers and utterances trained on).
    allow_overlap : bool, default=False
        Train even on i-vectors of two extractors (refused by default).

    Returns
    -------
    IvectorBackend
    """
    if out is not None:
        check_output_file(out, "out")
    checks = Checks(allow_overlap)
    recs = _iv_records(ivectors, checks)
    ext = _one_extractor(recs, checks)
    checks.warn_unknown()
    vecs = _vectors(ivectors)
    lab = labels if isinstance(labels, dict) else read_labels(labels, vecs)
    ids = [i for i in vecs if i in lab]
    if not ids:
        raise ValueError("no i-vector has a speaker label")
    X = np.stack([vecs[i] for i in ids])
    y = np.array([lab[i] for i in ids])
    be = IvectorBackend(lda_dim=lda_dim, wccn=wccn, plda=True, plda_iter=plda_iter).fit(X, y)
    if out is not None:
        sources = _sources(recs)
        keys = sorted({k for i in ids for k in sources.get(i, ())})
        speakers = sorted({str(v) for v in y})
        save_with_record(be.save, out, make_record(
            "backend", ivectors=[{"file": name, "digest": file_digest(name)} for name, _ in recs],
            extractor=None if ext is None else ext["extractor"],
            extractor_file=None if ext is None else ext.get("extractor_file"),
            extractor_record=None if ext is None else ext.get("extractor_record"),
            ids=ids, speakers=speakers, n_speakers=len(speakers), utterances=keys,
            n_utterances=len(ids), **checks.fields()))
    return be


def _lookup(vecs, ids, what, where):
    missing = [i for i in ids if i not in vecs]
    if missing:
        raise ValueError(f"{where}: no i-vector of {what} {missing[0]!r} "
                         f"({len(missing)} missing): extract it with 'ipem extract-ivectors'")
    return np.stack([vecs[i] for i in ids])


def score_ivectors(ivectors, trials, *, backend="plda", model=None, cohort=None, norm=None,
                   top_n=200, out=None, allow_overlap=False):
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
        The score file (``model test score [label]``), and its provenance
        record ``<out>.provenance.json``.
    allow_overlap : bool, default=False
        Score even when the chain check fails (a back-end, extractor or UBM
        trained on the trials' segments, i-vectors of another extractor than
        the back-end's: :mod:`ipem.steps.chain`); the record keeps it.

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
    checks = Checks(allow_overlap)
    chain = _check_ivector_chain(ivectors, model, trials, where, checks)
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
        write_companion(out, make_record(
            "scores", system=f"i-vector {backend}", normalization=norm, **chain,
            trials_file=where, trials=trials_digest(trials), n_trials=len(trials),
            **checks.fields()))
    return trials, np.asarray(scores, dtype=np.float64)


def _check_ivector_chain(ivectors, model, trials, where, checks):
    """Refuse a back-end, extractor or UBM trained on the trials' segments, or of another
    extractor; the fields of the score file's record."""
    recs = _iv_records(ivectors, checks)
    ext = _one_extractor(recs, checks)
    be_name = name_of(model, None)
    be_rec = checks.record(model) if be_name is not None else None
    if ext is not None and be_rec is not None and be_rec.get("extractor") not in \
            (None, ext["extractor"]):
        checks.refuse(f"{be_name} was trained on i-vectors of another extractor than "
                      f"{recs[0][0]}'s ({short(be_rec['extractor'])}, not "
                      f"{short(ext['extractor'])})")
    sources = _sources(recs)
    tests = list(dict.fromkeys(t[1] for t in trials))
    models = list(dict.fromkeys(t[0] for t in trials))
    used = {}
    for ids, what in ((tests, "test segment"), (models, "the enrollment of")):
        for i in ids:
            for k in sources.get(i, ()):
                used.setdefault(k, f"{what} {i}")
    if be_rec is not None:
        trained_ids = set(be_rec.get("ids", ()))
        leaked = [t for t in tests if t in trained_ids]
        msg = (f"{be_name} was trained on {len(leaked)} test segment(s) of {where} (e.g. "
               f"{leaked[0]})") if leaked else \
            overlap_message(set(be_rec.get("utterances", ())), be_name, used, where)
        if msg:
            checks.refuse(msg)
    ext_rec = None if ext is None else ext.get("extractor_record")
    for rec, name in ((ext_rec, None if ext is None else ext.get("extractor_file")),
                      ((ext_rec or {}).get("ubm_record"), (ext_rec or {}).get("ubm_file"))):
        if rec is not None:
            msg = overlap_message(set(rec.get("utterances", ())), name or "the extractor",
                                  used, where)
            if msg:
                checks.refuse(msg)
    checks.warn_unknown()
    fields = {"ivectors": [name for name, _ in recs] or None}
    if ext is not None:
        fields.update(extractor=ext["extractor"], extractor_file=ext.get("extractor_file"),
                      extractor_utterances=(ext_rec or {}).get("n_utterances"))
    if be_name is not None:
        fields.update(backend=file_digest(model), backend_file=be_name)
    if be_rec is not None and "speakers" in be_rec:
        speakers = set(be_rec["speakers"])
        trial_speakers = set(models) | {Path(t).parent.name for t in tests if Path(t).parent.name}
        fields.update(backend_speakers=len(speakers), backend_utterances=be_rec.get(
            "n_utterances"), trial_speakers=len(trial_speakers),
            shared_speakers=len(speakers & trial_speakers))
    return {k: v for k, v in fields.items() if v is not None}


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
