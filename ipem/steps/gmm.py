"""The GMM-UBM steps: adapt (UBM + enrollment -> models), score (models + trials ->
scores), normalize (scores + cohort -> normalized scores).

Each checks what it can before any work -- its outputs can be written, its
lists are well formed, the header of every feature file it will read and
every model file it needs -- and only then gets its cluster
(:func:`ipem.steps.cluster.running`).  Where the features of list entries
are is a :class:`ipem.speaker.FeatureSource` (``source``).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ..io import FeatureRef, list_features
from ..io.atomic import atomic_directory
from ..io.models import array_shape, model_file
from ..io.preflight import check_output_dir, check_output_file
from ..io.provenance import (add_record, gmm_digest, make_record, read_companion, short,
                             trials_digest, utterance_keys, write_companion)
from ..speaker.map import adapt_speakers, ubm_params
from ..speaker.normalization import (NORMALIZATIONS, cohort_needs, normalize_scores,
                                     score_matrix)
from ..speaker.scorefiles import read_score_file, read_trials, write_score_file
from ..speaker.scoring import score_trials, scoring_method
from ..speaker.utterances import FeatureSource
from .chain import Checks, check_frontend, name_of, overlap_message
from .cluster import running

logger = logging.getLogger(__name__)

__all__ = ["adapt", "normalize", "score"]


def adapt(ubm, enrollment, out_dir, *, source=None, relevance_factor=16.0, adapt="m",
          controller=None, progress=False, allow_overlap=False):
    """MAP-adapt one speaker model per enrolled speaker and write them to ``out_dir``.

    Parameters
    ----------
    ubm : ipem.UBMTrainer, str or any form :func:`ipem.speaker.map.ubm_params` accepts
        The UBM (a model file path is read).
    enrollment : dict, str or None
        ``model_id -> feature files`` (see
        :meth:`ipem.speaker.FeatureSource.enrollment`), or the path of an
        enrollment list (then ``source`` needs ``features_dir`` or
        ``data_dir``); ``None`` with ``source.data_dir``: one model per
        speaker of its ``spk2utt`` (or ``utt2spk``), from the features of
        ``feats.scp``.
    out_dir : str or os.PathLike
        Each task writes ``<out_dir>/<model_id>.npz`` (created if needed).
    source : ipem.speaker.FeatureSource, optional
        Where the features of an enrollment list's utterances are; its
        ``data_dir`` (a Kaldi data directory) gives the speakers, or the
        utterance ids of an enrollment list.
    relevance_factor : float, default=16.0
    adapt : str, default="m"
        Parameters to adapt: any of ``m`` (means), ``w`` (weights), ``v``
        (variances).
    controller : Controller, int, DirectView, str or None
        A cluster spec (``"mpi:4"``) is started after the step's checks.
    progress : bool, default=False
    allow_overlap : bool, default=False
        Adapt even from features of another front-end than the UBM's training
        features (their feature manifests compared, :func:`ipem.steps.chain.check_frontend`);
        the models' records keep what was allowed.

    Returns
    -------
    dict
        ``model_id -> model file path`` (absolute), in enrollment order.

    Raises
    ------
    ValueError
        A malformed list or option, a speaker id that is no file name, a
        missing or malformed feature file, features of another dimension
        than the UBM's (all found before any model is adapted), an
        ``out_dir`` that cannot be made or written.
    ipem.EngineValueError
        A bad feature file (NaN, ...), found on an engine.

    Notes
    -----
    All or nothing: the models are written into a temporary directory next
    to ``out_dir`` and moved into it when every speaker is done
    (:func:`ipem.io.atomic.atomic_directory`); models of other speakers
    already in ``out_dir`` are kept, those of the same speakers replaced.  A
    failure (or an interrupt) leaves ``out_dir`` as it was.
    """
    source = FeatureSource() if source is None else source
    check_output_dir(out_dir, "out_dir")
    where = (f"{os.fspath(enrollment)}: speaker" if isinstance(enrollment, (str, os.PathLike))
             else "speaker")
    if isinstance(enrollment, (str, os.PathLike)):
        if source.features_dir is None and source.data_dir is None:
            raise ValueError("adapt: an enrollment list path needs features_dir or data_dir")
        enrollment = source.enrollment(enrollment)
    elif enrollment is None:
        if source.data_dir is None:
            raise ValueError("adapt: give the enrollment (a list or a dict) or a Kaldi data "
                             "directory (data_dir)")
        enrollment, table = source.speakers()
        where = f"{table}: speaker"
    ubm_name, params = name_of(ubm, None), ubm_params(ubm)
    _check_headers(enrollment, params.means.shape[1], where)
    digest = gmm_digest(params)
    # features of the UBM's front-end (the feature manifests), before any work
    checks = Checks(allow_overlap)
    ubm_rec = checks.record(ubm) if ubm_name is not None else None
    feature_fields = check_frontend(
        [k for files in enrollment.values() for k in utterance_keys(files)],
        ubm_rec, ubm_name, checks)
    final = os.path.abspath(os.fspath(out_dir))
    logger.info("MAP-adapting %d speaker models (r=%g, adapt=%s) -> %s", len(enrollment),
                relevance_factor, adapt, out_dir)
    with running(controller) as ctrl, atomic_directory(final) as tmp:
        written = adapt_speakers(params, enrollment, controller=ctrl,
                                 relevance_factor=relevance_factor, adapt=adapt, out_dir=tmp,
                                 progress=progress)
        for spk, path in written.items():        # each model records its UBM and utterances
            add_record(path, make_record("speaker-model", model_id=str(spk), ubm=digest,
                                         ubm_file=ubm_name,
                                         utterances=utterance_keys(enrollment[spk]),
                                         **feature_fields, **checks.fields()))
    return {spk: os.path.join(final, os.path.relpath(path, tmp))
            for spk, path in written.items()}


def score(ubm, trials, models_dir, *, source=None, top_c=5, scoring=None, out=None,
          allow_overlap=False, controller=None, progress=False):
    """Score a trial list against model files, one task per test segment.

    Parameters
    ----------
    ubm : ipem.UBMTrainer, str or any form :func:`ipem.speaker.map.ubm_params` accepts
    trials : str or sequence of Trial
        A NIST-style trial list (``model_id test [target|nontarget]`` lines)
        or its rows (:func:`ipem.speaker.scorefiles.read_trials`).
    models_dir : str or os.PathLike
        Directory of ``<model_id>.npz`` files (from :func:`adapt`).
    source : ipem.speaker.FeatureSource, optional
        Where the test segments' features are (:meth:`~ipem.speaker.FeatureSource.path`);
        with a ``data_dir``, the trials' test column names its utterance ids.
    top_c : int or None, default=5
        Top-C Gaussian selection; 0 or ``None`` scores exactly.
    out : str, optional
        Write the score file here (``model test score [label]`` lines).
    scoring : {"topc", "exact", "linear"} or None
        Average LLR with top-C selection, exact average LLR, or linear
        scoring (Glembek et al. 2009: one matrix product of the models' mean
        offsets with the test segments' UBM statistics; see
        :mod:`ipem.speaker.scoring`).  ``None``: ``"exact"`` if ``top_c`` is
        0 or None, else ``"topc"`` (:func:`ipem.speaker.scoring.scoring_method`).
    allow_overlap : bool, default=False
        Score even when the chain check fails (models adapted from another
        UBM, a UBM trained on the trials' segments, a model enrolled on its
        own test segment: :mod:`ipem.steps.chain`); the score file's record
        keeps what was allowed.
    controller : Controller, int, DirectView, str or None
        A cluster spec (``"mpi:4"``) is started after the step's checks.
    progress : bool, default=False

    Returns
    -------
    trials : list of Trial
    scores : ndarray of shape (n_trials,), float64
        Average per-frame log-likelihood ratios, in trial order.  With
        ``out``, the record ``<out>.provenance.json`` says what they came from.

    Raises
    ------
    ValueError
        A malformed trial list (a trial twice included), a model id without
        a model file (named, with the trial list), a missing or malformed
        feature file, an ``out`` that cannot be written (all found before
        scoring).
    ipem.EngineValueError
        A bad feature or model file, found on an engine.
    """
    source = FeatureSource() if source is None else source
    if out is not None:
        check_output_file(out, "out")
    where = os.fspath(trials) if isinstance(trials, (str, os.PathLike)) else "trials"
    trials = (read_trials(trials, allow_pipes=source.allow_pipes)
              if isinstance(trials, (str, os.PathLike)) else list(trials))
    models = _model_files(dict.fromkeys(t[0] for t in trials), models_dir, "model id", where)
    pairs = [(t[0], _test_segment(t[1], source, where)) for t in trials]
    ubm_name, ubm_path, ubm = name_of(ubm, "the UBM"), ubm, ubm_params(ubm)
    _check_headers({t[1]: test for t, (_, test) in zip(trials, pairs)}, ubm.means.shape[1],
                   f"{where}: test segment")
    check_model_sizes(models, ubm.means.shape, ubm_name)        # before any cluster starts
    checks = Checks(allow_overlap)
    digest = gmm_digest(ubm)
    recs = _check_models(models, digest, ubm_name, checks)
    ubm_rec = checks.record(ubm_path) if isinstance(ubm_path, (str, os.PathLike)) else None
    _check_trials(trials, pairs, recs, models, ubm_rec, ubm_name, where, checks)
    feature_fields = check_frontend(       # test features of the UBM's front-end
        utterance_keys([p[1] for p in pairs]), ubm_rec, ubm_name, checks)
    checks.warn_unknown()
    method, top_c = scoring_method(scoring, top_c)
    logger.info("scoring %d trials of %d models (%s)", len(trials), len(models),
                f"top-{top_c}" if method == "topc" else method)
    with running(controller) as ctrl:
        scores = np.asarray(score_trials(ubm, pairs, models, controller=ctrl, top_c=top_c,
                                         progress=progress, method=method), dtype=np.float64)
    if out is not None:
        write_score_file(out, trials, scores)
        write_companion(out, make_record(
            "scores", system="gmm-ubm", scoring=method, ubm=digest, ubm_file=ubm_name,
            ubm_utterances=None if ubm_rec is None else ubm_rec.get("n_utterances"),
            models_dir=os.fspath(models_dir), n_models=len(models), trials_file=where,
            trials=trials_digest(trials), n_trials=len(trials), **feature_fields,
            **checks.fields()))
        logger.info("scores -> %s", out)
    return trials, scores


def normalize(ubm, scores, cohort, models_dir, *, source=None, method="s", cohort_models=None,
              top_n=200, key=None, top_c=5, out=None, out_format="ipem", allow_overlap=False,
              controller=None, progress=False):
    """Normalise trial scores with an impostor cohort (Z/T/ZT/S/AS-norm).

    The cohort scores are computed here, task-parallel over segments
    (:func:`ipem.speaker.normalization.score_matrix`): every enrolled model
    against the cohort segments (Z side), every test segment against the
    cohort models (T side), and for ZT-norm every cohort model against the
    other cohort segments.

    Parameters
    ----------
    ubm : ipem.UBMTrainer, str or any form :func:`ipem.speaker.map.ubm_params` accepts
    scores : str, os.PathLike or (trials, scores)
        A score file (:func:`ipem.speaker.scorefiles.read_score_file`) or its contents.
    cohort : str, os.PathLike or dict
        The impostor cohort: a list in the enrollment format, ``cohort_id
        utterance [utterance ...]`` per line (:meth:`ipem.speaker.FeatureSource.enrollment`), or
        its dict.  Each entry is one cohort member: its utterances form a
        cohort segment, and ``cohort_models/<cohort_id>.npz`` (adapted from
        the same list by :func:`adapt`) is its model.  Cohort speakers should
        not be in the trials.
    models_dir : str or os.PathLike
        The enrolled models, ``<model_id>.npz``.
    source : ipem.speaker.FeatureSource, optional
        Where the test segments' and the cohort's features are; with a
        ``data_dir``, the trials and the cohort list name its utterance ids.
    method : {"z", "t", "zt", "s", "as"}, default="s"
        A name of :data:`ipem.speaker.normalization.NORMALIZATIONS`.
    cohort_models : str or os.PathLike, optional
        Directory of the cohort models; needed by every method but ``"z"``.
    top_n : int, default=200
        Cohort members per side for adaptive S-norm (``"as"``).
    key : str, os.PathLike or dict, optional
        For a score file: only its trials, labelled by it.
    top_c : int or None, default=5
        Top-C Gaussian selection of the cohort scoring (as for :func:`score`).
    out : str, optional
        Write the normalised scores here.
    out_format : {"ipem", "kaldi"}, default="ipem"
    allow_overlap : bool, default=False
        Go on when the chain check fails (enrolled or cohort models adapted
        from another UBM, raw scores of another UBM, cohort or test features
        of another front-end than the UBM's training features: :mod:`ipem.steps.chain`).
    controller : Controller, int, DirectView, str or None
        A cluster spec (``"mpi:4"``) is started after the step's checks.
    progress : bool, default=False

    Returns
    -------
    trials : list of Trial
    scores : ndarray of shape (n_trials,), float64
        The normalised scores, in trial order.

    Raises
    ------
    ValueError
        An unknown method, a malformed score file or list, a missing model
        file (named), a cohort without spread.
    ipem.EngineValueError
        A bad feature or model file, found on an engine.
    """
    if method not in NORMALIZATIONS:
        raise ValueError(f"unknown score normalisation {method!r}; expected one of "
                         f"{', '.join(NORMALIZATIONS)}")
    source = FeatureSource() if source is None else source
    if out is not None:
        check_output_file(out, "out")
    where = os.fspath(scores) if isinstance(scores, (str, os.PathLike)) else "scores"
    if isinstance(scores, (str, os.PathLike)):
        trials, raw = read_score_file(scores, key)
    else:
        trials, raw = scores
        trials, raw = list(trials), np.asarray(raw, dtype=np.float64)
    cohort_name = os.fspath(cohort) if isinstance(cohort, (str, os.PathLike)) else "cohort"
    if isinstance(cohort, (str, os.PathLike)):
        cohort = source.enrollment(cohort)
    if len(cohort) < 2:
        raise ValueError(f"{cohort_name}: a cohort needs at least 2 members, got {len(cohort)}")
    needs = cohort_needs(method)
    if "test" in needs and cohort_models is None:
        raise ValueError(f"{method}-norm needs the cohort models (cohort_models: a directory "
                         f"of <cohort_id>.npz, e.g. from adapt with {cohort_name})")
    model_ids, enroll_index = _first_seen(t[0] for t in trials)
    test_ids, test_index = _first_seen(t[1] for t in trials)
    segments = dict(cohort)                     # cohort id -> feature files (one segment)
    ubm_name, ubm_path, ubm = name_of(ubm, "the UBM"), ubm, ubm_params(ubm)
    _check_headers(segments, ubm.means.shape[1], f"{cohort_name}: cohort member")
    checks, digest = Checks(allow_overlap), gmm_digest(ubm)
    raw_rec = read_companion(where) if isinstance(scores, (str, os.PathLike)) else None
    if raw_rec is not None and raw_rec.get("ubm") not in (None, digest):
        checks.refuse(f"{where} was scored with another UBM than {ubm_name} "
                      f"({raw_rec.get('ubm_file') or 'a UBM'} {short(raw_rec['ubm'])}, not "
                      f"{short(digest)})")
    if "enroll" in needs:
        models = _model_files(model_ids, models_dir, "model id", where)
        check_model_sizes(models, ubm.means.shape, ubm_name)    # before any cluster starts
        _check_models(models, digest, ubm_name, checks)
    if "test" in needs:
        cmodels = _model_files(list(cohort), cohort_models, "cohort member", cohort_name)
        check_model_sizes(cmodels, ubm.means.shape, ubm_name)
        _check_models(cmodels, digest, ubm_name, checks)
        tests = {t: _test_segment(t, source, where) for t in test_ids}
        _check_headers(tests, ubm.means.shape[1], f"{where}: test segment")
    ubm_rec = checks.record(ubm_path) if isinstance(ubm_path, (str, os.PathLike)) else None
    check_frontend(             # cohort and test features of the UBM's front-end
        utterance_keys([*segments.values(), *(tests.values() if "test" in needs else ())]),
        ubm_rec, ubm_name, checks)
    checks.warn_unknown()
    mats = {}
    logger.info("%s-norm of %d trials with a cohort of %d (%s)", method, len(trials),
                len(cohort), cohort_name)
    with running(controller) as ctrl:
        opts = dict(controller=ctrl, top_c=top_c, progress=progress)
        if "enroll" in needs:
            mats["enroll_cohort"] = score_matrix(ubm, models, segments, **opts)
        if "test" in needs:
            mats["test_cohort"] = score_matrix(ubm, cmodels, tests, **opts).T
            if "cohort" in needs:
                mats["cohort_cohort"] = score_matrix(ubm, cmodels, segments,
                                                     exclude=[(c, c) for c in cohort], **opts)
    normed = normalize_scores(method, raw, enroll_index=enroll_index, test_index=test_index,
                              top_n=top_n, **mats)
    if out is not None:
        write_score_file(out, trials, normed, out_format)
        rec = dict(raw_rec or make_record("scores", ubm=digest, ubm_file=ubm_name))
        rec.update(normalization=method, raw_scores_file=where, cohort_file=cohort_name,
                   trials=trials_digest(trials), n_trials=len(trials))
        allowed = list(rec.get("allowed_overlap", ())) + checks.allowed
        rec.pop("allowed_overlap", None)
        if allowed:
            rec["allowed_overlap"] = allowed
        write_companion(out, rec)
        logger.info("%s-normalised scores -> %s", method, out)
    return trials, normed


# ---------------------------------------------------------------------------
# checks made before any work
# ---------------------------------------------------------------------------

def _test_segment(test, source, where):
    """:meth:`FeatureSource.path` of a trial's test segment; a refusal names the trial list."""
    try:
        return source.path(test)
    except ValueError as exc:
        raise ValueError(f"{where}: test segment {test!r}: {exc}") from None


def _check_headers(sources, n_features, what):
    """Read now the headers of every feature file ``sources`` name (``name -> source``).

    A missing, unreadable or malformed file, or one of another dimension than
    the UBM's, is found before any task starts (the frames themselves, NaN
    included, are checked where they are read).  Messages start with
    ``"<what> <name>: "`` (e.g. ``"enroll.lst: speaker spk1: "``).
    """
    for name, source in sources.items():
        items = [source] if isinstance(source, (str, os.PathLike, FeatureRef)) else source
        if isinstance(items, np.ndarray):
            continue
        for item in items:
            if isinstance(item, FeatureRef):
                refs = [item]
            elif isinstance(item, (str, os.PathLike)):
                try:
                    refs = list_features(item)
                except ValueError as exc:
                    raise ValueError(f"{what} {name}: {exc}") from None
            else:
                continue                 # arrays and the like: checked by the step
            for ref in refs:
                if ref.n_features != n_features:
                    raise ValueError(f"{what} {name}: {ref.where()} has {ref.n_features} "
                                     f"features per frame, but the UBM has {n_features}")


def check_model_sizes(models, shape, ubm_name):
    """Refuse model files of another size than the UBM's, from their headers.

    Parameters
    ----------
    models : mapping of str to str
        Model id -> model file.
    shape : tuple of int
        ``(n_components, n_features)`` of the UBM.
    ubm_name : str or None
        How messages name the UBM.

    Raises
    ------
    ValueError
        ``"<file> (and N other models) has K components x D features, the
        UBM <name> has K' x D'"``.
    """
    bad = []
    for path in models.values():
        found = array_shape(path, "means")
        if found is not None and tuple(found) != tuple(shape):
            bad.append((path, found))
    if bad:
        path, found = bad[0]
        more = f" (and {len(bad) - 1} other models)" if len(bad) > 1 else ""
        size = (f"{found[0]} components x {found[1]} features" if len(found) == 2
                else f"means of shape {tuple(found)}")
        ubm = "the UBM" if ubm_name in (None, "the UBM") else f"the UBM {ubm_name}"
        raise ValueError(f"{path}{more} has {size}, but {ubm} has {shape[0]} x {shape[1]}")


def _check_models(models, digest, ubm_name, checks):
    """Records of the model files ``models`` (id -> path); refuse those of another UBM."""
    recs, bad = {}, []
    for mid, path in models.items():
        rec = checks.record(path)
        if rec is None:
            continue
        recs[mid] = rec
        if rec.get("ubm") not in (None, digest):
            bad.append((path, rec))
    if bad:
        path, rec = bad[0]
        more = f" (and {len(bad) - 1} other models)" if len(bad) > 1 else ""
        checks.refuse(f"{path}{more} was adapted from another UBM than {ubm_name} "
                      f"({rec.get('ubm_file') or 'a UBM'} {short(rec.get('ubm'))}, not "
                      f"{short(digest)})")
    return recs


def _check_trials(trials, pairs, recs, models, ubm_rec, ubm_name, where, checks):
    """Refuse a UBM trained on the trials' segments, a model enrolled on its test segment."""
    test_keys = {}
    for t, (_, seg) in zip(trials, pairs):
        if t[1] not in test_keys:
            test_keys[t[1]] = utterance_keys(seg)
    used = {}
    for test, keys in test_keys.items():
        for k in keys:
            used.setdefault(k, f"test segment {test}")
    for mid, rec in recs.items():
        for k in rec.get("utterances", ()):
            used.setdefault(k, f"the enrollment of {mid}")
    if ubm_rec is not None:
        msg = overlap_message(set(ubm_rec.get("utterances", ())), ubm_name, used, where)
        if msg:
            checks.refuse(msg)
    enrolled = {mid: set(rec.get("utterances", ())) for mid, rec in recs.items()}
    for t in trials:
        if t[0] in enrolled and enrolled[t[0]].intersection(test_keys[t[1]]):
            checks.refuse(f"{models[t[0]]} was enrolled on test segment {t[1]} of its trial "
                          f"in {where}")
            break


def _model_files(ids, models_dir, what, where):
    out = {}
    for mid in ids:
        try:
            path = Path(model_file(models_dir, mid))
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        if not path.exists():
            raise ValueError(f"{where}: no model file {path} for {what} {mid!r}")
        out[mid] = str(path)
    return out


def _first_seen(values):
    """Unique values in order of first appearance, and each value's position."""
    pos = {}
    index = np.array([pos.setdefault(v, len(pos)) for v in values], dtype=np.int64)
    return list(pos), index
