"""Frames of one speaker or test segment, named on the client and read where a task runs.

MAP adaptation (:mod:`ipem.speaker.map`), scoring
(:mod:`ipem.speaker.scoring`) and i-vector statistics and extraction
(:mod:`ipem.ivector`) send tasks of one or a few speakers, test segments or
utterances to a controller's engines.  The client only describes the data
(:func:`resolve_source`: arrays are validated, paths made absolute, list
files expanded by reading headers); the task reads the frames itself
(:func:`load_source`), so that frames never travel through the client.
"""
from __future__ import annotations

import os

import numpy as np

from ..validation import check_frames
from .features import list_features, load_many
from .lists import is_list_file
from .refs import FeatureRef

__all__ = ["resolve_source", "load_source"]


def resolve_source(source, what):
    """Describe a frame source on the client, reading no frame.

    Parameters
    ----------
    source : ndarray, path, FeatureRef or sequence of paths/FeatureRefs
        An array of shape (n_frames, n_features); a feature file; a list
        file (``.scp``, ``.lst``, ``.txt``); or a sequence of any of the
        file kinds, concatenated in order.
    what : str
        How messages name the source, e.g. ``"speaker alice"``.

    Returns
    -------
    ndarray of shape (n_frames, n_features) or list of (str or FeatureRef)
        The validated array, or the entries with plain feature paths made
        absolute (engines may run in another directory) and list files
        expanded to FeatureRefs (headers only).

    Raises
    ------
    ValueError
        For an empty sequence, an entry that is neither a path nor a
        FeatureRef, or an invalid array.
    ipem.io.FeatureFileError
        For a list file that cannot be read or names a bad feature file.
    """
    if isinstance(source, np.ndarray):
        return check_frames(source, name=what)
    if isinstance(source, (str, os.PathLike, FeatureRef)):
        source = [source]
    try:
        entries = list(source)
    except TypeError:
        raise ValueError(f"{what}: expected a feature file, a list of feature files or a "
                         f"(n_frames, n_features) array, got {type(source).__name__}") from None
    if not entries:
        raise ValueError(f"{what}: no feature files given")
    out = []
    for entry in entries:
        if isinstance(entry, FeatureRef):
            out.append(entry)
        elif isinstance(entry, (str, os.PathLike)):
            path = os.fspath(entry)
            if is_list_file(path):
                out.extend(list_features(path))
            else:
                out.append(os.path.abspath(path))
        else:
            raise ValueError(f"{what}: {entry!r} is neither a feature file path nor a "
                             "FeatureRef")
    return out


def load_source(source, *, dtype, n_features, what):
    """Read the frames of a source described by :func:`resolve_source`.

    Runs where the task runs (on an engine, or in-process).

    Parameters
    ----------
    source : ndarray of shape (n_frames, n_features) or list of (str or FeatureRef)
        The value :func:`resolve_source` returned.
    dtype : numpy dtype or str
        Dtype frames are read from files in (arrays keep theirs).
    n_features : int
        Features per frame the model expects.
    what : str
        How messages name the source.

    Returns
    -------
    ndarray of shape (n_frames, n_features)
        The frames, files concatenated in order.

    Raises
    ------
    ipem.io.FeatureFileError
        For a missing, malformed or truncated file (named in the message).
    ValueError
        When the frames do not have ``n_features`` features; the message
        names the files.
    """
    if isinstance(source, np.ndarray):
        X = source
    else:
        refs = []
        for entry in source:
            refs.extend([entry] if isinstance(entry, FeatureRef)
                        else list_features(entry))
        X = load_many(refs, dtype=np.dtype(dtype))
    if X.shape[1] != n_features:
        where = "" if isinstance(source, np.ndarray) else \
            " (" + ", ".join(r if isinstance(r, str) else r.where() for r in source) + ")"
        raise ValueError(f"{what}{where}: {X.shape[1]} features per frame, but the UBM has "
                         f"{n_features}")
    return X
