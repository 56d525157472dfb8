"""Describing, listing, validating, loading and writing feature matrices, in any format.

The intended use is distributed training: the client calls
:func:`list_features` (which reads headers only) and
:func:`ipem.parallel.scheduling.assign_balanced` to spread files over
ipyparallel engines by frame count, then ships the small, picklable
:class:`~ipem.io.FeatureRef` objects to the engines, each of which calls
:func:`load_many` on its own share.

These functions dispatch to the format modules through the registry of
:mod:`ipem.io.formats`; list and scp files are expanded by
:mod:`ipem.io.lists`.  Relative paths are resolved against the current
working directory and stored as absolute paths.  Every problem found in a
feature file raises :class:`~ipem.io.FeatureFileError`.

All writers are atomic (:func:`ipem.io.atomic.atomic_path`): data goes to a
temporary file in the destination directory which is renamed over the
destination only once it is complete, so a failed write leaves neither a
partial file nor a temporary one.
"""
from __future__ import annotations

import logging
import os
from typing import Iterable, Sequence

import numpy as np

from .atomic import atomic_path
from .checks import as_matrix, check_counts, check_finite, check_matches_ref, float_dtype
from .checks import check_regular, open_files, reading
from .formats import REGISTRY, handler, infer_format
from .lists import expand_sources
from .refs import FeatureFileError, FeatureRef, PathLike

__all__ = ["describe", "list_features", "load", "load_many", "validate_all", "write"]

logger = logging.getLogger(__name__)


def _describe(path_or_spec: PathLike, fmt: str | None, key: str | None,
              files: dict) -> FeatureRef:
    spec = os.fspath(path_or_spec)
    if fmt is None:
        fmt = infer_format(spec)
    ops = handler(fmt)
    if not ops.takes_key and key is not None:
        raise ValueError(f"key is not used by the {fmt} format (got key={key!r})")
    if key is None:
        key = ops.default_key
    path = ops.absolute(spec)
    check_regular(path, key, fmt)
    with reading(path, key, fmt):
        n_frames, n_features = ops.read_shape(path, key, files)
    return FeatureRef(path, fmt, key, int(n_frames), int(n_features))


def describe(path_or_spec: PathLike, fmt: str | None = None, *,
             key: str | None = None) -> FeatureRef:
    """Describe one feature matrix by reading only its header.

    Parameters
    ----------
    path_or_spec : str or os.PathLike
        Feature file, or for Kaldi an rxspecifier such as ``feats.ark:1234``.
    fmt : str or None, optional
        File format, one of :func:`ipem.io.formats.names`; inferred from the
        name when ``None`` (:func:`ipem.io.infer_format`).
    key : str or None, optional
        HDF5 dataset name (default ``"features"``) or Kaldi utterance id
        (only used in messages).  Must be ``None`` for formats without keys
        (HTK, npy).

    Returns
    -------
    FeatureRef
        Descriptor with ``n_frames`` and ``n_features`` taken from the
        header; the path is made absolute.

    Raises
    ------
    FeatureFileError
        If the file is missing, unreadable, malformed, truncated, non-numeric,
        not 2-D or has zero frames.

    Notes
    -----
    HTK: 12-byte header plus file-size check.  npy: the array header plus a
    size check.  HDF5: the dataset's shape and dtype.  Kaldi: the binary
    matrix header at the ark offset plus a size check; other Kaldi inputs
    (pipes, slices, text arks) are loaded to get their shape.
    """
    with open_files() as files:
        return _describe(path_or_spec, fmt, key, files)


def _check_same_dims(refs: Sequence[FeatureRef]) -> int:
    first = refs[0]
    for ref in refs:
        if ref.n_features != first.n_features:
            raise FeatureFileError(ref.path, f"dimensionality mismatch: has {ref.n_features} "
                                   f"features per frame, but {first.where()} has "
                                   f"{first.n_features}", ref.key, ref.fmt)
    return first.n_features


def list_features(sources: PathLike | Iterable[PathLike], fmt: str | None = None, *,
                  h5_key: str | None = None, allow_pipes: bool = False) -> list[FeatureRef]:
    """Describe a collection of feature files, reading headers only.

    Parameters
    ----------
    sources : str, os.PathLike or iterable of them
        Either a single path, or a list of paths.  Each path is one of:

        * a Kaldi script file ``*.scp`` (lines ``utt-id path.ark:offset``),
          expanded to one :class:`FeatureRef` per line;
        * a list file ``*.lst`` / ``*.txt`` with one feature file (or
          ``.scp``) per line; blank lines and lines starting with ``#`` are
          skipped;
        * a feature file whose format is inferred from its extension
          (``.htk .mfc .plp .fea`` -> htk, ``.npy``, ``.h5 .hdf5``).

        Which paths are lists is decided by :func:`ipem.io.lists.list_kind`.
    fmt : str or None, optional
        Force the format (one of :func:`ipem.io.formats.names`) of plain
        feature files (e.g. HTK files with unusual extensions).  ``.scp``
        and list files are still expanded.
    h5_key : str or None, optional
        Dataset name used for HDF5 files (for every format with a default
        key); default: the format's own (``"features"``).
    allow_pipes : bool, optional
        Accept shell commands (Kaldi pipes, ``cmd |``) named in list and
        scp files; they run (through a shell) when their headers are read
        here and again when the matrices are loaded.  By default a list
        naming one is refused, with its file and line
        (:func:`ipem.io.lists.read_lines`).  Sources given directly are the
        caller's and are not checked.

    Returns
    -------
    list of FeatureRef
        In source order.

    Raises
    ------
    FeatureFileError
        If any file is bad (see :func:`describe`), or if the files do not all
        have the same number of features; the message names the first file
        that differs and both dimensionalities.  If a list names a shell
        command and ``allow_pipes`` is false.
    ValueError
        If no feature files are found.
    """
    if fmt is not None:
        handler(fmt)
    refs: list[FeatureRef] = []
    with open_files() as files:
        for entry in expand_sources(sources, allow_pipes=allow_pipes):
            if entry.utt is not None:  # an scp line
                refs.append(_describe(entry.spec, "kaldi", entry.utt, files))
                continue
            f = fmt if fmt is not None else infer_format(entry.spec)
            key = h5_key if handler(f).default_key is not None else None
            refs.append(_describe(entry.spec, f, key, files))
    if not refs:
        raise ValueError("no feature files found in the given sources")
    _check_same_dims(refs)
    logger.debug("listed %d feature files, %d frames", len(refs),
                 sum(ref.n_frames for ref in refs))
    return refs


def validate_all(refs: Sequence[FeatureRef]) -> int:
    """Cheaply re-check the headers of many feature files before training.

    Every file must exist, be readable, have a header consistent with its
    size, and still match its :class:`FeatureRef`; all refs must have the
    same number of features.

    Parameters
    ----------
    refs : sequence of FeatureRef
        Files to check.

    Returns
    -------
    int
        Total number of frames.

    Raises
    ------
    FeatureFileError
        For the first bad file.
    ValueError
        If ``refs`` is empty.
    """
    refs = list(refs)
    if not refs:
        raise ValueError("no feature files to validate")
    _check_same_dims(refs)
    with open_files() as files:
        for ref in refs:
            ops = handler(ref.fmt)
            check_regular(ref.path, ref.key, ref.fmt)
            with reading(ref.path, ref.key, ref.fmt):
                n_frames, n_features = ops.read_shape(ref.path, ref.key, files)
            check_matches_ref(ref, n_frames, n_features)
    return sum(ref.n_frames for ref in refs)


def _fill(ref: FeatureRef, out: np.ndarray, files: dict) -> None:
    if not isinstance(ref, FeatureRef):
        raise TypeError(f"expected a FeatureRef, got {type(ref).__name__}")
    check_counts(ref.n_frames, ref.n_features, ref.path, ref.key, ref.fmt)
    check_regular(ref.path, ref.key, ref.fmt)
    with reading(ref.path, ref.key, ref.fmt):
        handler(ref.fmt).read_into(ref, out, files)
    check_finite(ref, out)


def load(ref: FeatureRef, dtype=np.float32) -> np.ndarray:
    """Load one feature matrix, fully validated.

    Parameters
    ----------
    ref : FeatureRef
        What to load (from :func:`describe` or :func:`list_features`).
    dtype : numpy floating dtype, optional
        Output dtype (default float32).

    Returns
    -------
    ndarray, shape (ref.n_frames, ref.n_features)
        C-contiguous array of ``dtype``.

    Raises
    ------
    FeatureFileError
        If the file is missing, unreadable, truncated, has a bad HTK
        ``sampSize``, is non-numeric, has zero frames, does not match the
        shape in ``ref``, or contains NaN/Inf (the message gives the first
        bad row).
    ValueError
        If ``dtype`` is not a floating-point type.
    """
    return load_many([ref], dtype)


def load_many(refs: Sequence[FeatureRef], dtype=np.float32) -> np.ndarray:
    """Load several feature matrices into one preallocated array.

    Parameters
    ----------
    refs : sequence of FeatureRef
        Files to load, all with the same ``n_features``.
    dtype : numpy floating dtype, optional
        Output dtype (default float32).

    Returns
    -------
    ndarray, shape (sum of n_frames, n_features)
        C-contiguous; rows of ``refs[0]`` first, then ``refs[1]``, ...

    Raises
    ------
    FeatureFileError
        As for :func:`load`, for the first bad file, or if dimensionalities
        differ.
    ValueError
        If ``refs`` is empty or ``dtype`` is not floating-point.

    Notes
    -----
    The output is allocated once and each file is read into its slice, so
    peak memory is the output plus at most one file's worth of temporary
    data (none for HTK to float32, npy and HDF5).
    """
    refs = list(refs)
    if not refs:
        raise ValueError("no feature files to load")
    dt = float_dtype(dtype)
    for ref in refs:
        if not isinstance(ref, FeatureRef):
            raise TypeError(f"expected FeatureRef objects, got {type(ref).__name__}")
    n_features = _check_same_dims(refs)
    out = np.empty((sum(ref.n_frames for ref in refs), n_features), dtype=dt)
    start = 0
    with open_files() as files:
        for ref in refs:
            _fill(ref, out[start:start + ref.n_frames], files)
            start += ref.n_frames
    return out


def write(path: PathLike, X, fmt: str | None = None, *, key: str | None = None,
          **options) -> FeatureRef:
    """Atomically write one feature matrix.

    Parameters
    ----------
    path : str or os.PathLike
        Destination file; replaced if it exists.
    X : array_like, shape (n_frames, n_features)
        Numeric data, at least one frame.  float32/float64 are stored as is
        for npy and HDF5 (other types as float32); HTK always stores float32.
        Non-finite values are written unchanged.
    fmt : str or None, optional
        Format, one of :func:`ipem.io.formats.write_names`; inferred from the
        extension when ``None``.  For Kaldi use :func:`ipem.io.write_kaldi`.
    key : str or None, optional
        HDF5 dataset name (default ``"features"``); must be ``None`` for
        formats without keys (HTK, npy).
    **options
        Options of the format's writer (its handler's ``write_options``);
        those of other formats are ignored.  HTK:

        sample_period : int, optional
            Frame period in 100 ns units (default 100000 = 10 ms).
        parm_kind : int, optional
            Parameter kind (default 9, USER); compressed/CRC and integer
            kinds are refused.

    Returns
    -------
    FeatureRef
        Descriptor of the written file.

    Raises
    ------
    ValueError
        If ``X`` is not a non-empty numeric 2-D array, or the format or
        options are invalid.  No file (temporary or final) is left behind.
    TypeError
        If an option is not one of any format.
    """
    path = os.fspath(path)
    if fmt is None:
        fmt = infer_format(path)
    known = {name for ops in REGISTRY.values() for name in ops.write_options}
    for name in options:
        if name not in known:
            raise TypeError(f"write() got an unexpected keyword argument {name!r}")
    ops = handler(fmt)
    if ops.write_file is None:
        hint = f"; {ops.write_hint}" if ops.write_hint else ""
        raise ValueError(f"write() does not handle {fmt!r}{hint}")
    if not ops.takes_key and key is not None:
        raise ValueError(f"key is not used by the {fmt} format (got key={key!r})")
    if key is None:
        key = ops.default_key
    if ops.check_key is not None:
        ops.check_key(key)
    X = as_matrix(X)
    used = {name: value for name, value in options.items() if name in ops.write_options}
    with atomic_path(path) as tmp:
        ops.write_file(tmp, X, key, used)
    return FeatureRef(os.path.abspath(path), fmt, key, X.shape[0], X.shape[1])
