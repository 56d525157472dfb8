"""The checks of the provenance chain that steps make before any work.

A step reads the records (:mod:`ipem.io.provenance`) of the artefacts it is
given and refuses, with one line naming both files
(:class:`ipem.io.provenance.ProvenanceError`):

- speaker models adapted from another UBM than the one given (``score``,
  ``normalize``; digests of the UBM's parameters compared);
- a UBM, extractor or back-end trained on a trial's test or enrollment
  segments (``score``, ``score_ivectors``; the utterances' real paths
  compared, and for i-vectors also the ids);
- i-vectors of another extractor than the back-end's, or of two extractors
  (``train_backend``, ``score_ivectors``);
- a calibration trained on the scores it is applied to (``apply_calibration``).

``allow_overlap=True`` turns a refusal into a warning, and the result's
record keeps it (``allowed_overlap``).  Artefacts without a record (written
before ipem kept them) are not checked: one warning line says so.
"""
from __future__ import annotations

import logging
import os

from ..io.provenance import ProvenanceError, read_record, short

logger = logging.getLogger(__name__)

__all__ = ["Checks", "format_chain", "name_of", "overlap_message"]


class Checks:
    """What one step's chain checks found: refusals allowed, artefacts without records.

    Parameters
    ----------
    allow_overlap : bool
        Log refusals as warnings and keep them (:attr:`allowed`) instead of
        raising.
    """

    def __init__(self, allow_overlap=False):
        self.allow_overlap = bool(allow_overlap)
        self.allowed = []
        self.unknown = []

    def refuse(self, message):
        """Raise :class:`ProvenanceError` with ``message`` (or, when allowed, keep it)."""
        if not self.allow_overlap:
            raise ProvenanceError(message)
        logger.warning("%s (allowed: allow_overlap)", message)
        self.allowed.append(message)

    def record(self, path):
        """The record of the ``.npz`` artefact ``path`` (None, noted, if it has none)."""
        rec = read_record(path)
        if rec is None:
            self.unknown.append(os.fspath(path))
        return rec

    def warn_unknown(self):
        """One warning line for the artefacts read without a record, if any."""
        if self.unknown:
            more = f" and {len(self.unknown) - 1} more" if len(self.unknown) > 1 else ""
            logger.warning("%s%s: no provenance record (written before ipem kept them): what "
                           "it was made from is not checked", self.unknown[0], more)

    def fields(self):
        """``{"allowed_overlap": [...]}`` for the result's record, or ``{}``."""
        return {"allowed_overlap": list(self.allowed)} if self.allowed else {}


def name_of(obj, default):
    """The path of an artefact given as a path, else ``default``."""
    return os.fspath(obj) if isinstance(obj, (str, os.PathLike)) else default


def overlap_message(trained, trained_what, used, used_what):
    """A refusal if ``trained`` (set of keys) meets ``used`` (key -> what it is); else None.

    Returns
    -------
    str or None
        ``"<trained_what> was trained on <n> segment(s) of <used_what> (e.g. <x>)"``.
    """
    common = [k for k in used if k in trained]
    if not common:
        return None
    return (f"{trained_what} was trained on {len(common)} segment(s) of {used_what} "
            f"(e.g. {used[common[0]]})")


def digest_mismatch(what, recorded, recorded_file, given, given_name):
    """``"<what> comes from <recorded_file> (<digest>), not from <given_name> (<digest>)"``."""
    return (f"{what} was made from another file than {given_name} "
            f"({recorded_file or 'a file'} {short(recorded)}, not {short(given)})")


def format_chain(record):
    """The lines ``ipem evaluate`` prints about what a score file came from.

    Parameters
    ----------
    record : dict
        The score file's companion record (:func:`ipem.io.provenance.read_companion`).

    Returns
    -------
    str
        A short block: the system and its inputs (with digests), the trial
        list, open or closed set where the back-end's speakers are known,
        and what ``allow_overlap`` let through.
    """
    r = record
    lines = []
    system = r.get("system", "scores")
    if r.get("normalization"):
        system += f", {r['normalization']}-norm of {r.get('raw_scores_file', '?')}"
    lines.append(f"made from:  {system}")
    if r.get("ubm"):
        trained = f", trained on {r['ubm_utterances']} utterances" \
            if r.get("ubm_utterances") is not None else ""
        models = f"{r['n_models']} models in {r['models_dir']}, " if r.get("models_dir") else ""
        lines.append(f"  models:   {models}UBM {r.get('ubm_file') or '?'} "
                     f"({short(r['ubm'])}{trained})")
    if r.get("backend_file"):
        trained = (f", {r['backend_speakers']} speakers, {r.get('backend_utterances')} "
                   "i-vectors") if "backend_speakers" in r else ", training data unknown"
        lines.append(f"  back-end: {r['backend_file']} ({short(r.get('backend'))}{trained})")
    if r.get("extractor"):
        trained = f", trained on {r['extractor_utterances']} utterances" \
            if r.get("extractor_utterances") is not None else ""
        lines.append(f"  extractor: {r.get('extractor_file') or '?'} "
                     f"({short(r['extractor'])}{trained})")
    if r.get("trials_file"):
        lines.append(f"  trials:   {r['trials_file']} ({r.get('n_trials')} trials, "
                     f"{short(r.get('trials'))})")
    if "shared_speakers" in r:
        if r["shared_speakers"]:
            lines.append(f"  closed set: {r['shared_speakers']} of the {r['trial_speakers']} "
                         f"trial speakers are back-end speakers (by name)")
        else:
            lines.append(f"  open set: none of the {r['trial_speakers']} trial speakers is "
                         f"among the back-end's {r['backend_speakers']} (by name)")
    for message in r.get("allowed_overlap", ()):
        lines.append(f"  ALLOWED:  {message}")
    return "\n".join(lines)
