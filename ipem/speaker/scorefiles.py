"""Trial lists, keys and score files: one reader and one writer per kind, every format.

=============  ==========================================  ==========================
file           lines                                       read / written by
=============  ==========================================  ==========================
trial list     ``model test [target|nontarget]``           :func:`read_trials`
key            ``model test target|nontarget``             :func:`read_key`
score file     ``model test score [target|nontarget]``     :func:`read_score_file`,
               (``"ipem"``), ``model test score``           :func:`write_score_file`
               (``"kaldi"``, labels in a key file)
=============  ==========================================  ==========================

The same files as the field writes them are read too (each by the same
reader): NIST SRE tables (SRE16-SRE21 ``docs/*.tsv``), tab-separated under a
header line of column names -- trials ``modelid segmentid side``, keys
``modelid segmentid side targettype [partition ...]``, system output
``modelid segmentid side LLR`` -- read by their column names
(:func:`ipem.io.lists.read_table`; extra columns are skipped, the side must
be ``a``); SIDEKIT's text Ndx (``model segment``), Key (``model segment
target|nontarget``) and Scores (``model segment score``) are the plain
forms above.

Lines starting with ``#`` are comments; a field with spaces is quoted
(``spk1 "wav/my file.wav" target``, :func:`ipem.io.lists.quote_field`).  A
trial given twice is refused with both line numbers.  Every step reads and
writes these files through this module: the GMM-UBM and i-vector scores,
their normalizations and calibrations all go through :func:`write_score_file`.
"""
from __future__ import annotations

import logging
import math
import os
from typing import NamedTuple, Optional

import numpy as np

from ..io import FeatureRef, atomic_path
from ..io.lists import quote_field, read_table
from ..io.models import check_model_id

logger = logging.getLogger(__name__)

__all__ = ["SCORE_FORMATS", "Trial", "read_key", "read_score_file", "read_score_matrix",
           "read_scores", "read_trials", "scored_trials", "split_scores", "write_score_file"]

#: Score file formats :func:`write_score_file` writes: ``"ipem"`` (with the
#: label column where trials have one) and ``"kaldi"`` (``model test score``).
SCORE_FORMATS = ("ipem", "kaldi")

_LABELS = ("target", "nontarget")


class Trial(NamedTuple):
    """One line of a trial list."""

    model: str
    test: str
    label: Optional[str] = None



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
    for lineno, cols in read_table(path, ("model", "segment"), ("label",), allow_empty=True,
                                   allow_pipes=allow_pipes):
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


def read_key(path):
    """Read a NIST-style key file: ``model test target|nontarget`` per line.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    dict
        ``(model, test) -> "target" | "nontarget"``, in file order.

    Raises
    ------
    ValueError
        An empty file, a line without exactly three columns, a label other
        than target/nontarget, or a trial given twice (file and line named).
    """
    path = os.fspath(path)
    key, line_of = {}, {}
    for n, fields in read_table(path, ("model", "segment", "label")):
        if len(fields) != 3:
            raise ValueError(f"{path}, line {n}: expected 'model test target|nontarget', got "
                             f"{len(fields)} columns")
        label = fields[2].lower()
        if label not in _LABELS:
            raise ValueError(f"{path}, line {n}: label {fields[2]!r} is not target/nontarget")
        trial = (fields[0], fields[1])
        if trial in line_of:
            raise ValueError(f"{path}, line {n}: trial '{trial[0]} {trial[1]}' repeats line "
                             f"{line_of[trial]}")
        line_of[trial] = n
        key[trial] = label
    return key


def read_score_file(path, key=None, *, require_labels=False):
    """Read a score file: ``model test score [target|nontarget]`` per line.

    Both ipem's format (with the label) and Kaldi's three columns are read;
    a file may mix them.

    Parameters
    ----------
    path : str or os.PathLike
    key : str, os.PathLike or dict, optional
        A key file (:func:`read_key`) or its dict.  Then only the key's
        trials are returned, labelled by the key; score lines of other trials
        are skipped (so one score file serves a development and an
        evaluation key), and every key trial must have a score.
    require_labels : bool, default=False
        Refuse a line whose trial gets no label (neither from the line nor
        from a key).

    Returns
    -------
    trials : list of Trial
        ``Trial(model, test, label)`` in file order; ``label`` is ``None``
        for unlabelled lines (only when ``require_labels`` is false).
    scores : ndarray of shape (n_trials,), float64

    Raises
    ------
    ValueError
        An empty file, a line with other than 3 or 4 columns, a score that
        is not a finite number, a bad label, a trial given twice, a label the
        key contradicts, key trials without a score (file and line named).
    """
    path = os.fspath(path)
    key_name = "key"
    if key is not None and not isinstance(key, dict):
        key_name = os.fspath(key)
        key = read_key(key)
    trials, scores, line_of, skipped = [], [], {}, 0
    for n, fields in read_table(path, ("model", "segment", "score"), ("label",)):
        if len(fields) not in (3, 4):
            raise ValueError(f"{path}, line {n}: expected 'model test score "
                             f"[target|nontarget]', got {len(fields)} columns")
        try:
            s = float(fields[2])
        except ValueError:
            raise ValueError(f"{path}, line {n}: score {fields[2]!r} is not a number") from None
        if not math.isfinite(s):
            raise ValueError(f"{path}, line {n}: score {fields[2]!r} is not a finite number")
        label = None
        if len(fields) == 4:
            label = fields[3].lower()
            if label not in _LABELS:
                raise ValueError(f"{path}, line {n}: label {fields[3]!r} is not "
                                 "target/nontarget")
        trial = (fields[0], fields[1])
        if trial in line_of:
            raise ValueError(f"{path}, line {n}: trial '{trial[0]} {trial[1]}' repeats line "
                             f"{line_of[trial]}")
        line_of[trial] = n
        if key is not None:
            if trial not in key:
                skipped += 1
                continue
            if label is not None and label != key[trial]:
                raise ValueError(f"{path}, line {n}: label {label!r}, but {key_name} says "
                                 f"{key[trial]!r}")
            label = key[trial]
        elif label is None and require_labels:
            raise ValueError(f"{path}, line {n}: no target/nontarget label (Kaldi's 'model "
                             "test score' lines need a key file)")
        trials.append(Trial(trial[0], trial[1], label))
        scores.append(s)
    if key is not None:
        missing = [t for t in key if t not in line_of]
        if missing:
            raise ValueError(f"{path}: no score for {len(missing)} trials of {key_name} "
                             f"(first: '{missing[0][0]} {missing[0][1]}')")
        if skipped:
            logger.info("%s: %d score lines are not in %s (skipped)", path, skipped, key_name)
    return trials, np.asarray(scores, dtype=np.float64)


def scored_trials(path):
    """The ``(model, test)`` pairs a score file scores, with their line numbers.

    Only the first two columns are read (the file is checked in full by
    :func:`read_score_file`); used to compare a score file with a key before
    any work (:func:`ipem.steps.chain.check_scores_key`).

    Returns
    -------
    dict
        ``(model, test) -> line number``, in file order.
    """
    path = os.fspath(path)
    out = {}
    for n, fields in read_table(path, ("model", "segment", "score"), ("label",)):
        if len(fields) not in (3, 4):
            raise ValueError(f"{path}, line {n}: expected 'model test score "
                             f"[target|nontarget]', got {len(fields)} columns")
        out.setdefault((fields[0], fields[1]), n)
    return out


def read_scores(path, key=None):
    """Read a labelled score file (or a Kaldi score file with its key).

    Parameters
    ----------
    path : str or os.PathLike
        ``model test score [target|nontarget]`` lines (see
        :func:`read_score_file`).
    key : str, os.PathLike or dict, optional
        Key file giving the labels (needed for Kaldi's three columns).

    Returns
    -------
    tar : ndarray of shape (n_target,), float64
        Scores of the target trials.
    non : ndarray of shape (n_nontarget,), float64
        Scores of the non-target trials.

    Raises
    ------
    ValueError
        As :func:`read_score_file`, and for a line without a label.
    """
    return split_scores(*read_score_file(path, key, require_labels=True))


def split_scores(trials, scores):
    """Target and non-target scores of labelled trials.

    Parameters
    ----------
    trials : sequence of Trial
    scores : array-like of shape (n_trials,)

    Returns
    -------
    tar : ndarray of shape (n_target,)
    non : ndarray of shape (n_nontarget,)

    Raises
    ------
    ValueError
        For a trial without a target/nontarget label.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = [t[2] if len(t) > 2 else None for t in trials]
    for t, label in zip(trials, labels):
        if label not in _LABELS:
            raise ValueError(f"trial '{t[0]} {t[1]}' has no target/nontarget label")
    is_tar = np.array([label == "target" for label in labels], dtype=bool)
    return scores[is_tar], scores[~is_tar]


def read_score_matrix(paths, key=None, *, require_labels=True):
    """Read the scores of several systems for the same trials, one column each.

    Parameters
    ----------
    paths : sequence of str or os.PathLike
        Score files (:func:`read_score_file`).  Without a key, the first
        file's trials and labels are the trial list; every other file must
        score each of them (extra trials are skipped) and agree on labels.
    key : str, os.PathLike or dict, optional
        The trial list and labels for every file.
    require_labels : bool, default=True

    Returns
    -------
    trials : list of Trial
    scores : ndarray of shape (n_trials, n_systems)

    Raises
    ------
    ValueError
        As :func:`read_score_file`; a trial one file has no score for.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ValueError("no score files given")
    if key is not None and not isinstance(key, dict):
        key = read_key(key)
    trials, first = read_score_file(paths[0], key, require_labels=require_labels)
    columns = [first]
    for path in paths[1:]:
        other_trials, other = read_score_file(path, key)
        found = {(t.model, t.test): (t.label, s) for t, s in zip(other_trials, other)}
        col = np.empty(len(trials))
        for i, t in enumerate(trials):
            got = found.get((t.model, t.test))
            if got is None:
                raise ValueError(f"{path}: no score for trial '{t.model} {t.test}' of "
                                 f"{paths[0]}")
            if got[0] is not None and t.label is not None and got[0] != t.label:
                raise ValueError(f"{path}: trial '{t.model} {t.test}' is {got[0]!r} here but "
                                 f"{t.label!r} in {paths[0]}")
            col[i] = got[1]
        columns.append(col)
    return trials, np.column_stack(columns)


def write_score_file(path, trials, scores, fmt="ipem"):
    """Write scores atomically in ipem's or Kaldi's format.

    A field with spaces is quoted (:func:`ipem.io.lists.quote_field`), as
    :func:`read_trials` and :func:`read_score_file` expect; scores are
    written with full float precision (``repr``).

    Parameters
    ----------
    path : str or os.PathLike
    trials : sequence of Trial or tuples
        ``(model, test[, label])`` (e.g. from :func:`read_trials`); a label
        that is not ``None`` is written as the fourth column.
    scores : array-like of shape (n_trials,)
        One per trial.
    fmt : {"ipem", "kaldi"}, default="ipem"
        ``"ipem"``: ``model test score [label]``; ``"kaldi"``: ``model test
        score``, labels left out (keep them in a key file).

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    ValueError
        An unknown ``fmt``, as many scores as trials, a field that cannot be
        written (an array, a newline).
    """
    if fmt not in SCORE_FORMATS:
        raise ValueError(f"score format {fmt!r}: expected one of {', '.join(SCORE_FORMATS)}")
    path = os.fspath(path)
    trials = list(trials)
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if scores.size != len(trials):
        raise ValueError(f"{len(trials)} trials but {scores.size} scores")
    labelled = fmt == "ipem"
    lines = []
    for i, (trial, score) in enumerate(zip(trials, scores)):
        cols = [_field(trial[0], "model id", i), _field(trial[1], "test segment", i),
                repr(float(score))]
        if labelled and len(trial) > 2 and trial[2] is not None:
            cols.append(_field(trial[2], "label", i))
        lines.append(" ".join(cols) + "\n")
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.writelines(lines)
    return path


def _field(value, what, i):
    if isinstance(value, FeatureRef):
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
