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

__all__ = ["Checks", "check_frontend", "check_scores_key", "describe_frontend", "format_chain",
           "name_of", "overlap_message"]


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


def check_scores_key(scores, key, *, allow_overlap=False):
    """Check, before any work, that score files and a key are of the same trial list.

    A key is of a score file's trial list when every key trial is scored
    there (in any order; scored trials the key leaves out are fine: one
    score file serves a development and an evaluation key) and, where the
    score file's companion record names the trial list it was scored on and
    that file is still the one scored (same digest), when every key trial is
    in that list with the same label.

    Parameters
    ----------
    scores : str, os.PathLike or sequence of them
        Score files (:func:`ipem.speaker.scorefiles.read_score_file`).
    key : str or os.PathLike
        The key file (:func:`ipem.speaker.scorefiles.read_key`).
    allow_overlap : bool, default=False
        Go on anyway (a warning): key trials without a score are left out.

    Returns
    -------
    key : str, os.PathLike or dict
        ``key`` itself, or (allowed) the dict of its trials every score file
        scores.
    summary : str
        One line: how many key trials, of how many scored.

    Raises
    ------
    ProvenanceError
        Key trials without a score (both files, the count and the first
        named), a key trial not in the recorded trial list or labelled
        otherwise there.
    ValueError
        A malformed file; no key trial scored at all.
    """
    from ..io.provenance import read_companion
    from ..speaker.scorefiles import read_key, scored_trials

    paths = [scores] if isinstance(scores, (str, os.PathLike)) else list(scores)
    key_name, labels = os.fspath(key), read_key(key)
    checks, kept, summary = Checks(allow_overlap), dict(labels), ""
    for path in map(os.fspath, paths):
        scored = scored_trials(path)
        missing = [t for t in labels if t not in scored]
        if missing:
            checks.refuse(f"{key_name} and {path} are of different trial lists: {len(missing)} "
                          f"of the {len(labels)} trials of {key_name} have no score in {path} "
                          f"(first: '{missing[0][0]} {missing[0][1]}')")
            for t in missing:
                kept.pop(t, None)
            if not kept:
                raise ValueError(f"{path}: none of the {len(labels)} trials of {key_name} "
                                 "is scored there")
        if not summary:
            left = sum(1 for t in scored if t not in labels)
            summary = (f"{key_name}: {len(labels) - len(missing)} of the {len(scored)} trials "
                       f"of {path}" + (f" ({left} scored trials not in the key, left out)"
                                       if left else ""))
        _check_recorded_list(path, read_companion(path),
                             {t: lab for t, lab in labels.items() if t in scored}, key_name,
                             checks)
    return (key if len(kept) == len(labels) else kept), summary


def _check_recorded_list(path, record, labels, key_name, checks):
    """Key trials against the trial list ``path``'s companion record names (if still there)."""
    from ..io.provenance import trials_digest
    from ..speaker.scorefiles import read_trials

    if not record or not record.get("trials") or not record.get("trials_file"):
        return
    where = record["trials_file"]
    try:
        listed = read_trials(where, allow_pipes=True)
    except (OSError, ValueError):
        logger.info("%s: the trial list %s it was scored on cannot be read: the key's labels "
                    "are not checked against it", path, where)
        return
    if trials_digest(listed) != record["trials"]:
        logger.info("%s: the trial list %s changed since it was scored: the key is not "
                    "checked against it", path, where)
        return
    listed = {(t.model, t.test): t.label for t in listed}
    for t, label in labels.items():
        if t not in listed:
            checks.refuse(f"{key_name} is not of the trial list {path} was scored on "
                          f"({where}): trial '{t[0]} {t[1]}' is not in it")
            return
        if listed[t] is not None and listed[t] != label:
            checks.refuse(f"{key_name} is not of the trial list {path} was scored on: trial "
                          f"'{t[0]} {t[1]}' is {label} there, {listed[t]} in {where}")
            return


def _with_defaults(options):
    """Recorded front-end options completed: an option a newer ipem records and an older
    manifest lacks has the value ipem computed with before the option existed
    (:data:`ipem.steps.extract.UNRECORDED`), else today's default."""
    from .extract import UNRECORDED, frontend_options
    return {**frontend_options(options.get("sample_rate", 8000), {}), **UNRECORDED, **options}


def check_frontend(keys, record, against_name, checks, what="features"):
    """Refuse features of another front-end than a model's training features.

    Parameters
    ----------
    keys : iterable of str
        :func:`ipem.io.provenance.utterance_key` of the feature matrices a step reads.
    record : dict or None
        The record of the model whose training features count (a UBM's):
        its ``"frontend"`` options are compared; None, or a record without
        them: not known, nothing compared.
    against_name : str
        The model's file, for messages.
    checks : Checks

    Returns
    -------
    dict
        Fields for the step's output record: ``features`` (each manifest
        read with its digest) and ``frontend`` where the features have one.

    Notes
    -----
    Feature directories without a manifest (other tools, an older ipem) are
    read as before; one warning says so when the model's front-end is known.
    """
    from ..io.manifests import FeatureOrigins
    from ..io.provenance import file_digest

    against = None if record is None else record.get("frontend")
    origins = FeatureOrigins()
    found = origins.of(keys)
    if against is not None:
        against = _with_defaults(against)
    for where, options in found:
        options = _with_defaults(options)
        if against is not None and options != against:
            diff = ", ".join(f"{k} {options.get(k)!r}, not {against.get(k)!r}"
                             for k in sorted(set(options) | set(against))
                             if options.get(k) != against.get(k))
            checks.refuse(f"{where}: {what} of another front-end than {against_name}'s "
                          f"training features ({diff})")
    if origins.unknown and (against is not None or found):
        more = f" and {len(origins.unknown) - 1} more" if len(origins.unknown) > 1 else ""
        logger.warning("%s%s: no feature manifest (made by another tool or an older ipem): "
                       "its front-end is not checked", origins.unknown[0], more)
    fields = {}
    if found:
        fields["features"] = [{"manifest": w, "digest": file_digest(w)}
                              for w in dict.fromkeys(w for w, _ in found)]
        fronts = {json_key(o): o for _, o in found}
        if len(fronts) == 1 and not origins.unknown:
            fields["frontend"] = found[0][1]
    return fields


def json_key(options):
    """A hashable form of front-end options."""
    import json

    return json.dumps(options, sort_keys=True)


def describe_frontend(options):
    """``"MFCC 20, 300-3400 Hz, VAD gmm, cmvn"``: a front-end in a few words."""
    o = options or {}
    text = (f"MFCC {o.get('n_ceps')}, {o.get('low_freq', 0):g}-{o.get('high_freq', 0):g} Hz, "
            f"VAD {o.get('vad')}, {o.get('norm')}")
    return text + (", RASTA" if o.get("rasta") else "")


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
    for feats in r.get("features", ()):
        lines.append(f"  features: {feats['manifest']} ({short(feats.get('digest'))})")
    if r.get("frontend"):
        lines.append(f"  front-end: {describe_frontend(r['frontend'])}")
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
