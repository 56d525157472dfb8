"""The back-end steps: calibrate (dev scores + key -> calibration), apply it, evaluate
(scores [+ key] -> EER, minDCF, actDCF, Cllr, minCllr).

Score and key files are read and written by :mod:`ipem.speaker.scorefiles`,
whichever step (GMM-UBM or i-vector) wrote them.
"""
from __future__ import annotations

import json
import logging
import os

import numpy as np

from ..io.atomic import write_text_atomic
from ..io.preflight import check_output_file
from ..io.provenance import file_digest, make_record, read_companion, write_companion
from ..speaker import metrics
from ..speaker.calibration import DEFAULT_PRIOR, LogisticCalibration
from ..speaker.scorefiles import read_score_matrix, write_score_file

logger = logging.getLogger(__name__)

__all__ = ["apply_calibration", "calibrate", "evaluate", "format_metrics"]


def calibrate(scores, *, key=None, prior=DEFAULT_PRIOR, out=None):
    """Train a calibration (one score file) or a linear fusion (several) on development trials.

    Parameters
    ----------
    scores : str, os.PathLike or sequence of them
        Development score files; several are fused (one weight each).
    key : str, os.PathLike or dict, optional
        Development key: the trials to train on and their labels (needed
        for Kaldi's unlabelled score files).
    prior : float, default=DEFAULT_PRIOR
        Training prior (see :class:`ipem.speaker.calibration.LogisticCalibration`).
    out : str, optional
        Save the calibration here as JSON, with a ``"provenance"`` record (the
        development score files' digests).

    Returns
    -------
    LogisticCalibration
        Fitted; ``systems_`` names the score files.

    Raises
    ------
    ValueError
        A malformed score or key file, a trial without a label or score,
        only one class of trials.
    """
    if out is not None:
        check_output_file(out, "out")
    paths = [scores] if isinstance(scores, (str, os.PathLike)) else list(scores)
    trials, x = read_score_matrix(paths, key)
    is_tar = np.array([t.label == "target" for t in trials], dtype=bool)
    if is_tar.all() or not is_tar.any():
        raise ValueError(f"{os.fspath(paths[0])}: calibration needs both target and "
                         f"non-target trials (got {int(is_tar.sum())} target, "
                         f"{int((~is_tar).sum())} non-target)")
    cal = LogisticCalibration(prior=prior).fit(x[is_tar], x[~is_tar],
                                               systems=[os.fspath(p) for p in paths])
    if out is not None:
        d = cal.to_dict()
        d["provenance"] = make_record("calibration", dev_scores=[
            {"file": os.fspath(p), "digest": file_digest(p)} for p in paths],
            key_file=None if key is None or isinstance(key, dict) else os.fspath(key))
        write_text_atomic(out, json.dumps(d, indent=2) + "\n")
        logger.info("calibration -> %s", out)
    return cal


def apply_calibration(calibration, scores, *, key=None, require_labels=False, out=None,
                      out_format="ipem"):
    """Calibrated (fused) LLRs of score files.

    Parameters
    ----------
    calibration : LogisticCalibration, str or os.PathLike
        A fitted calibration or its JSON file (:func:`calibrate`).
    scores : str, os.PathLike or sequence of them
        One score file per calibrated system, in the order of training.
    key : str, os.PathLike or dict, optional
        Only the key's trials, labelled by it.
    require_labels : bool, default=False
        Refuse trials without a label (to evaluate the result).
    out : str, optional
        Write the calibrated scores here.
    out_format : {"ipem", "kaldi"}, default="ipem"

    Returns
    -------
    trials : list of Trial
        Labels where the files or the key give them, else ``None``.
    llr : ndarray of shape (n_trials,)

    Raises
    ------
    ValueError
        A malformed calibration or score file; a number of score files other
        than the calibration's number of systems.
    """
    if out is not None:
        check_output_file(out, "out")
    source, dev = "calibration", {}
    if isinstance(calibration, (str, os.PathLike)):
        source = os.fspath(calibration)
        dev = _dev_digests(source)
        calibration = LogisticCalibration.load(calibration)
    paths = [scores] if isinstance(scores, (str, os.PathLike)) else list(scores)
    if len(paths) != calibration.n_systems_:
        raise ValueError(f"{source} fuses {calibration.n_systems_} score files, got "
                         f"{len(paths)}")
    trials, x = read_score_matrix(paths, key, require_labels=require_labels)
    notes = []
    for p in paths:                 # a warning: the scores are not a held-out evaluation
        if dev and file_digest(p) in dev:
            notes.append(f"{source} was trained on these scores ({os.fspath(p)} is its "
                         f"development score file {dev[file_digest(p)]})")
            logger.warning("%s", notes[-1])
    llr = calibration.transform(x)
    if out is not None:
        write_score_file(out, trials, llr, out_format)
        rec = dict(read_companion(paths[0]) or make_record("scores"))
        rec.update(calibration_file=source, calibrated_scores=[os.fspath(p) for p in paths])
        if notes:
            rec["calibrated_on_itself"] = notes
        write_companion(out, rec)
        logger.info("calibrated scores -> %s", out)
    return trials, llr


def _dev_digests(path):
    """``digest -> file`` of the development scores a calibration file records ({} if none)."""
    try:
        with open(path, "rb") as fh:
            d = json.loads(fh.read(1 << 24).decode("utf-8"))
        files = d["provenance"]["dev_scores"]
        return {str(f["digest"]): str(f["file"]) for f in files}
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError):
        return {}                   # no record (or a file LogisticCalibration.load refuses)


def evaluate(tar, non, *, source=None):
    """EER, ROCCH-EER, minDCF and actDCF (SRE 2008 and 2010), Cllr and minCllr.

    Parameters
    ----------
    tar : array_like of shape (n_target,)
        Scores of target trials.
    non : array_like of shape (n_nontarget,)
        Scores of non-target trials.
    source : str, optional
        Named in the error message (e.g. the score file).

    Returns
    -------
    dict
        ``n_target``, ``n_nontarget``, ``eer``, ``rocch_eer``,
        ``min_dcf_sre08``, ``act_dcf_sre08``, ``min_dcf_sre10``,
        ``act_dcf_sre10`` (rates as fractions; DCFs normalised; actDCF at the
        Bayes threshold, i.e. the scores read as LLRs), ``cllr`` and
        ``min_cllr`` (bits).

    Raises
    ------
    ValueError
        If either class has no trial.
    """
    tar, non = np.asarray(tar, dtype=np.float64), np.asarray(non, dtype=np.float64)
    if not tar.size or not non.size:
        raise ValueError(f"{source or 'scores'}: needs both target and non-target trials "
                         f"(got {tar.size} target, {non.size} non-target)")
    out = {"n_target": int(tar.size), "n_nontarget": int(non.size),
           "eer": metrics.compute_eer(tar, non), "rocch_eer": metrics.rocch_eer(tar, non)}
    for name, op in (("sre08", metrics.SRE2008), ("sre10", metrics.SRE2010)):
        out[f"min_dcf_{name}"] = metrics.min_dcf(tar, non, *op)[0]
        out[f"act_dcf_{name}"] = metrics.act_dcf(tar, non, *op)
    out["cllr"] = metrics.cllr(tar, non)
    out["min_cllr"] = metrics.min_cllr(tar, non)
    return out


def format_metrics(results):
    """The report ``ipem evaluate`` prints, five lines.

    Parameters
    ----------
    results : dict
        As returned by :func:`evaluate`.

    Returns
    -------
    str
    """
    r = results
    return (f"trials: {r['n_target']} target, {r['n_nontarget']} non-target\n"
            f"EER        {100 * r['eer']:6.2f} %   (ROCCH-EER {100 * r['rocch_eer']:.2f} %)\n"
            f"minDCF     {r['min_dcf_sre08']:.4f} (SRE08: P_tar=0.01, C_miss=10, C_fa=1)   "
            f"{r['min_dcf_sre10']:.4f} (SRE10: P_tar=0.001, C_miss=1, C_fa=1)\n"
            f"actDCF     {r['act_dcf_sre08']:.4f} (SRE08)   {r['act_dcf_sre10']:.4f} (SRE10)\n"
            f"Cllr       {r['cllr']:.4f} bits   (minCllr {r['min_cllr']:.4f} bits)")
