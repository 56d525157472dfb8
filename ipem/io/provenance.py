"""Provenance records: what an artefact was made from.

Every file a pipeline step writes records what it was made from, so that a
later step can check the chain before any work (:mod:`ipem.steps.chain`):
speaker models adapted from another UBM than the one given, a back-end,
UBM or extractor trained on a trial's segments, i-vectors of another
extractor.  A record is a JSON object:

``ipem_record`` : int
    The record version (1).
``artefact`` : str
    ``"ubm"``, ``"speaker-model"``, ``"extractor"``, ``"ivectors"``,
    ``"backend"``, ``"scores"`` or ``"calibration"``.
``utterances`` : list of str, optional
    The utterances the artefact was trained (enrolled) on, as
    :func:`utterance_key` names them (a feature file's real path, with its
    Kaldi offset or HDF5 dataset).
``ubm``, ``extractor``, ``backend`` : str, optional
    Digests (:func:`gmm_digest`, :func:`file_digest`) of what it was made
    from, with ``*_file`` naming the file as it was given.
``allowed_overlap`` : list of str, optional
    The refusals ``allow_overlap=True`` turned into warnings.

and what each step adds (see the steps).  In ``.npz`` artefacts the record
is one more array, ``provenance_json`` (UTF-8 bytes, uint8); score files
have a companion ``<scores>.provenance.json``; calibration files a
``"provenance"`` member.  Files written before ipem kept records have none:
:func:`read_record` then returns None ("unknown"), and the checks pass them
with one warning.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile

import numpy as np

from ..errors import ParameterError
from .atomic import atomic_path, write_text_atomic
from .models import MAX_TEXT_BYTES, invalid_model_file
from .refs import FeatureRef

logger = logging.getLogger(__name__)

__all__ = ["COMPANION_SUFFIX", "RECORD_ARRAY", "ProvenanceError", "companion_path",
           "file_digest", "gmm_digest", "keys_digest", "make_record", "read_companion",
           "read_record", "record_array", "save_with_record", "short", "trials_digest",
           "utterance_key", "utterance_keys", "write_companion"]

#: Name of the record's array in ``.npz`` artefacts.
RECORD_ARRAY = "provenance_json"
#: Suffix of a score file's companion record.
COMPANION_SUFFIX = ".provenance.json"
RECORD_VERSION = 1


class ProvenanceError(ParameterError):
    """A step refused: its inputs do not chain (another UBM, training on trial segments).

    The message names both files; ``{name}`` is the parameter that accepts
    it anyway (``allow_overlap``, the CLI's ``--allow-overlap``).
    """

    def __init__(self, message):
        super().__init__(message + "; pass {name} if you mean it", "allow_overlap")


def make_record(artefact, **fields):
    """A record of ``artefact`` with ``fields`` (None values left out)."""
    out = {"ipem_record": RECORD_VERSION, "artefact": artefact}
    out.update({k: v for k, v in fields.items() if v is not None})
    return out


# ---------------------------------------------------------------------------
# names and digests
# ---------------------------------------------------------------------------

def utterance_key(item) -> str:
    """The name of one feature matrix in records: its file's real path (and member).

    Parameters
    ----------
    item : str, os.PathLike or FeatureRef

    Returns
    -------
    str
        ``realpath`` of the file; a Kaldi rxspecifier (``/abs/x.ark:offset``)
        as it is; ``#<dataset>`` appended for HDF5 members.
    """
    if isinstance(item, FeatureRef):
        if item.fmt == "kaldi":
            return item.path
        base = os.path.realpath(item.path)
        return base if item.key is None else f"{base}#{item.key}"
    text = os.fspath(item)
    if text.rstrip().endswith("|"):
        return text                              # a Kaldi pipe: its command
    return os.path.realpath(text)


def utterance_keys(source) -> list[str]:
    """:func:`utterance_key` of every feature matrix ``source`` names.

    Parameters
    ----------
    source : str, os.PathLike, FeatureRef, ndarray or a sequence of them
        List files (``.lst``, ``.scp``) are expanded (their headers read);
        arrays have no name and are left out.

    Returns
    -------
    list of str
    """
    from .features import list_features
    from .lists import is_list_file

    if isinstance(source, np.ndarray):
        return []
    if isinstance(source, FeatureRef):
        return [utterance_key(source)]
    if isinstance(source, (str, os.PathLike)):
        if is_list_file(source):
            return [utterance_key(r) for r in list_features(source)]
        return [utterance_key(source)]
    out = []
    for item in source:
        out.extend(utterance_keys(item))
    return out


def _sha(parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return "sha256:" + h.hexdigest()


def keys_digest(keys) -> str:
    """Digest of a set of names (order and repeats do not count)."""
    return _sha(k.encode("utf-8") + b"\n" for k in sorted(set(keys)))


def gmm_digest(params) -> str:
    """Digest of a diagonal GMM's parameters (weights, means, covariances as float64).

    Parameters
    ----------
    params : (weights, means, covariances)
        Arrays of shape (K,), (K, D), (K, D).

    Returns
    -------
    str
        The same for the model in memory and the one saved and read back.
    """
    arrays = [np.ascontiguousarray(a, dtype=np.float64) for a in params]
    return _sha([repr([a.shape for a in arrays]).encode()] + [a.tobytes() for a in arrays])


def file_digest(path) -> str:
    """Digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()


def trials_digest(trials) -> str:
    """Digest of a trial list's ``(model, test)`` pairs (order does not count)."""
    return keys_digest(f"{t[0]}\t{t[1]}" for t in trials)


def short(digest) -> str:
    """The first 12 hexadecimal digits of a digest, for messages (``"unknown"`` for None)."""
    if not digest:
        return "unknown"
    return str(digest).split(":", 1)[-1][:12]


# ---------------------------------------------------------------------------
# records in .npz artefacts
# ---------------------------------------------------------------------------

def record_array(record) -> np.ndarray:
    """The record as the uint8 array (UTF-8 JSON) stored in ``.npz`` artefacts."""
    return np.frombuffer(json.dumps(record, sort_keys=True).encode("utf-8"), dtype=np.uint8)


def save_with_record(save, path, record) -> str:
    """Write an artefact with ``save(tmp)`` and add its record, atomically.

    Parameters
    ----------
    save : callable
        ``save(path)`` writes the ``.npz`` artefact (e.g. ``ubm.save``).
    path : str or os.PathLike
        Where the artefact goes; replaced only once record and artefact are
        both written.
    record : dict or None
        None writes the artefact as ``save`` does.

    Returns
    -------
    str
        ``path``.
    """
    path = os.fspath(path)
    with atomic_path(path) as tmp:
        save(tmp)
        if record is not None:
            add_record(tmp, record)
    return path


def add_record(path, record) -> None:
    """Append the record array to an ``.npz`` file (one not yet visible to others)."""
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        if f"{RECORD_ARRAY}.npy" in zf.namelist():
            raise ValueError(f"{os.fspath(path)} already holds a provenance record")
        with zf.open(f"{RECORD_ARRAY}.npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array(fh, record_array(record), allow_pickle=False)


def record_from_array(a, path) -> dict:
    """The record of a ``provenance_json`` array read from ``path`` (checked)."""
    if a.ndim != 1 or a.dtype != np.uint8:
        raise invalid_model_file(path, f"{RECORD_ARRAY} is not UTF-8 bytes")
    try:
        record = json.loads(a.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise invalid_model_file(path, f"{RECORD_ARRAY} is not JSON ({exc})") from None
    if not isinstance(record, dict) or "artefact" not in record:
        raise invalid_model_file(path, f"{RECORD_ARRAY} is not a provenance record")
    return record


def read_record(path) -> dict | None:
    """The provenance record of an ``.npz`` artefact; None for a file without one.

    Only the record's array is read (its size bounded by
    :data:`ipem.io.models.MAX_TEXT_BYTES` before it is decompressed).

    Raises
    ------
    ValueError
        ``"not a valid ipem model file: <path> (...)"`` for a file that is
        not a zip archive or a record that is not a JSON object.
    """
    from .models import read_member

    path = os.fspath(path)
    try:
        with zipfile.ZipFile(path) as zf:
            try:
                info = zf.getinfo(f"{RECORD_ARRAY}.npy")
            except KeyError:
                return None
            if info.file_size > MAX_TEXT_BYTES + 10000:
                raise invalid_model_file(path, f"{RECORD_ARRAY} is {info.file_size} bytes, "
                                         f"more than the {MAX_TEXT_BYTES} expected")
            a = read_member(zf, info, RECORD_ARRAY, MAX_TEXT_BYTES, path)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        raise ValueError(f"{path}: cannot read the file ({exc.strerror})") from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise invalid_model_file(path, f"{type(exc).__name__}: {exc}") from None
    return record_from_array(a, path)


# ---------------------------------------------------------------------------
# companion records of text outputs (score files)
# ---------------------------------------------------------------------------

def companion_path(path) -> str:
    """``<path>.provenance.json``: the record of a score file."""
    return os.fspath(path) + COMPANION_SUFFIX


def write_companion(path, record) -> str:
    """Write the companion record of the text file ``path`` (atomically); its path."""
    return write_text_atomic(companion_path(path),
                             json.dumps(record, indent=1, sort_keys=True) + "\n")


def read_companion(path) -> dict | None:
    """The companion record of ``path``; None if there is none.

    Raises
    ------
    ValueError
        A companion that is not a JSON record (named).
    """
    where = companion_path(path)
    record = read_json_file(where, "provenance record")
    if record is not None and (not isinstance(record, dict) or "artefact" not in record):
        raise ValueError(f"{where}: not a provenance record")
    return record


def read_json_file(path, what):
    """The JSON value in the file ``path`` (read bounded); None if there is no such file.

    Parameters
    ----------
    path : str or os.PathLike
    what : str
        What the file should be, for messages (``"provenance record"``).

    Raises
    ------
    ValueError
        ``"<path>: cannot read the <what> (<reason>)"`` or ``"<path>: not a <what> (...)"``.
    """
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_TEXT_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the {what} ({exc.strerror})") from None
    try:
        if len(raw) > MAX_TEXT_BYTES:
            raise ValueError("too large")
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{path}: not a {what} ({exc})") from None
