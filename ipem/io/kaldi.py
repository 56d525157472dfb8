"""Kaldi archives and script files (format ``"kaldi"``), via :mod:`kaldiio`.

Kaldi matrices live in archives (``.ark``) and are addressed through
script files (``.scp``) whose lines read ``utt-id path.ark:offset``.  Each
scp line is one feature "file": its :attr:`~ipem.io.FeatureRef.key` is the
utterance id and its :attr:`~ipem.io.FeatureRef.path` the rxspecifier
(``/abs/path.ark:offset``, made absolute).  Expanding scp files is the job
of :func:`ipem.io.list_features` (parsing: :func:`ipem.io.lists.read_scp`).

Describing reads the binary matrix header at the offset (float ``FM``,
double ``DM`` and the compressed ``CM``/``CM2``/``CM3`` types) and checks
the archive size; other rxspecifiers (pipes ``... |``, slices ``[a:b]``,
text-mode arks) are loaded by :mod:`kaldiio` to get their shape.  Vectors
are refused.  :func:`write_kaldi` writes an ark and its scp atomically.

Pipes are shell commands (kaldiio runs them with ``Popen(shell=True)``).
This module runs what it is given; the list readers of :mod:`ipem.io.lists`
refuse pipes found in list and scp files unless asked (``allow_pipes=True``),
so that a list from elsewhere cannot run commands.  :func:`is_pipe` is the
one test of what is a pipe.

:mod:`kaldiio` is imported when an archive is described, read or written
(``pip install 'ipem[speaker]'``).

:data:`HANDLER` (:func:`read_shape`, :func:`read_into`; no ``write_file``:
:func:`write_kaldi` writes an ark and its scp together) is the format's
entry in the registry of :mod:`ipem.io.formats`.
"""
from __future__ import annotations

import io
import os
import re
import struct
from typing import Mapping

import numpy as np

from .._optional import require
from .atomic import atomic_path
from .checks import as_matrix, check_counts, check_matches_ref, check_numeric_dtype, file_size
from .checks import check_regular
from .refs import FeatureFileError, FeatureRef, FormatHandler, PathLike

__all__ = ["HANDLER", "absolute_spec", "is_archive_spec", "is_pipe", "read_into", "read_shape",
           "write_kaldi"]

_ARK_OFFSET = re.compile(r"(?P<file>.+):(?P<offset>\d+)")
_ARK_NAME = re.compile(r"\.ark(:\d+)?(\[[0-9:,\s]*\])?$", re.IGNORECASE)
_MATRIX_TYPES = {"FM": 4, "DM": 8}
_COMPRESSED_TYPES = ("CM", "CM2", "CM3")


_SPECIFIER_PREFIX = re.compile(r"(ark|scp)(,[a-z]+)*:", re.IGNORECASE)
_OFFSET_SLICE = re.compile(r"(:\d+)?(\[[^\]]*\])?$")


def is_pipe(spec: str) -> bool:
    """Whether the rxspecifier ``spec`` is a shell command that kaldiio would run.

    :mod:`kaldiio` hands a name to ``Popen(shell=True)`` when it begins or
    ends with ``|``, also after it has removed an ``:offset`` and a
    ``[slice]`` (so ``cmd |:12`` and ``cmd |[0:3]`` run ``cmd``).  A Kaldi
    ``ark:``/``scp:`` prefix (with options, e.g. ``ark,s,cs:``) in front of
    a command counts as well.

    Examples
    --------
    >>> [is_pipe(s) for s in ("gunzip -c a.ark.gz |", "| cat", "cmd|:12", "ark:cmd |",
    ...                       "a.ark:12", "a|b.ark:3")]
    [True, True, True, True, False, False]
    """
    s = spec.strip()
    m = _SPECIFIER_PREFIX.match(s)
    if m:
        s = s[m.end():].strip()
    if s.startswith("|") or s.endswith("|"):
        return True
    return _OFFSET_SLICE.sub("", s).rstrip().endswith("|")


def is_archive_spec(spec: str) -> bool:
    """Whether ``spec`` names Kaldi data: a pipe or ``file.ark[:offset][slice]``."""
    return is_pipe(spec) or _ARK_NAME.search(spec) is not None


def absolute_spec(spec: str) -> str:
    """Make the file part of a Kaldi rxspecifier absolute (pipes are left alone)."""
    if is_pipe(spec):
        return spec
    slices = ""
    m = re.fullmatch(r"(.*)(\[[0-9:,\s]*\])", spec)
    if m:
        spec, slices = m.group(1), m.group(2)
    m = _ARK_OFFSET.fullmatch(spec)
    if m:
        return f"{os.path.abspath(m.group('file'))}:{m.group('offset')}{slices}"
    return os.path.abspath(spec) + slices


def _kaldiio():
    return require("kaldiio", "to read Kaldi ark/scp files")


def _ark(files: dict, name: str):
    f = files.get(name)
    if f is None:
        check_regular(name, None, "kaldi")
        f = files[name] = open(name, "rb")
    return f


def _parse_header(spec: str, key: str | None, files: dict) -> tuple[int, int] | None:
    """Shape from the binary matrix header at ``file:offset``; ``None`` if not parseable here."""
    m = _ARK_OFFSET.fullmatch(spec)
    if m is None or is_pipe(spec):
        return None  # pipe, slice or no offset: let kaldiio handle it
    name, offset = m.group("file"), int(m.group("offset"))
    f = _ark(files, name)
    size = file_size(f)
    if offset >= size:
        raise FeatureFileError(spec, f"offset {offset} is beyond the end of the ark "
                               f"({size} bytes)", key, "kaldi")
    f.seek(offset)
    if f.read(2) != b"\0B":
        return None  # text-mode ark or something kaldiio may know
    token = f.read(4).split(b" ", 1)[0].decode("ascii", "replace")
    f.seek(offset + 2 + len(token) + 1)
    if token in _MATRIX_TYPES:
        raw = f.read(10)
        if len(raw) < 10 or raw[0:1] != b"\4" or raw[5:6] != b"\4":
            raise FeatureFileError(spec, f"corrupt or truncated {token} matrix header",
                                   key, "kaldi")
        rows, cols = struct.unpack("<i", raw[1:5])[0], struct.unpack("<i", raw[6:10])[0]
        n_data = rows * cols * _MATRIX_TYPES[token]
    elif token in _COMPRESSED_TYPES:
        raw = f.read(16)
        if len(raw) < 16:
            raise FeatureFileError(spec, f"truncated {token} matrix header", key, "kaldi")
        _, _, rows, cols = struct.unpack("<ffii", raw)
        n_data = {"CM": 8 * cols + rows * cols, "CM2": 2 * rows * cols, "CM3": rows * cols}[token]
    elif token in ("FV", "DV"):
        raise FeatureFileError(spec, f"is a vector ({token}), not a feature matrix", key, "kaldi")
    else:
        return None
    if rows < 0 or cols < 0:
        raise FeatureFileError(spec, f"bad matrix header: {rows}x{cols}", key, "kaldi")
    end = f.tell() + n_data
    if size < end:
        raise FeatureFileError(spec, f"truncated: {token} matrix header says {rows}x{cols} "
                               f"(ends at byte {end}), ark has {size} bytes", key, "kaldi")
    return rows, cols


def _load_raw(spec: str, key: str | None, files: dict) -> np.ndarray:
    fd_dict = None if is_pipe(spec) else files
    arr = _kaldiio().load_mat(spec, fd_dict=fd_dict)
    if not isinstance(arr, np.ndarray):
        raise FeatureFileError(spec, f"is not a feature matrix (got {type(arr).__name__})",
                               key, "kaldi")
    check_numeric_dtype(arr.dtype, spec, key, "kaldi")
    if arr.ndim != 2:
        raise FeatureFileError(spec, f"expected a matrix, got an array of shape {arr.shape}",
                               key, "kaldi")
    return arr


def read_shape(spec: str, key: str | None, files: dict) -> tuple[int, int]:
    """``(n_frames, n_features)`` of the matrix at rxspecifier ``spec``.

    Needs :mod:`kaldiio` even where the header is read here, so that a
    missing package shows when files are listed, not when they are loaded.

    Parameters
    ----------
    spec : str
        Absolute rxspecifier (``/abs/x.ark:offset``, a pipe, ...).
    key : str or None
        The utterance id (for messages).
    files : dict
        Open files by name (:func:`ipem.io.checks.open_files`); arks stay open
        here between matrices.

    Returns
    -------
    tuple of int
        ``(n_frames, n_features)``.

    Raises
    ------
    FeatureFileError
        If the file is malformed, truncated, non-numeric, a vector
        or empty.
    """
    _kaldiio()
    shape = _parse_header(spec, key, files)
    if shape is None:  # correctness over speed: load it
        shape = _load_raw(spec, key, files).shape
    check_counts(shape[0], shape[1], spec, key, "kaldi")
    return shape


def read_into(ref: FeatureRef, out: np.ndarray, files: dict) -> None:
    """Read the matrix of ``ref`` into ``out`` (through :mod:`kaldiio`).

    Parameters
    ----------
    ref : FeatureRef
        The matrix to read (from :func:`read_shape`'s description).
    out : ndarray of shape (ref.n_frames, ref.n_features)
        C-contiguous float32 or float64 output, filled in place.
    files : dict
        Open files by name (:func:`ipem.io.checks.open_files`); arks stay open
        here between matrices.

    Raises
    ------
    FeatureFileError
        If the file no longer matches ``ref`` or cannot be read.
    """
    arr = _load_raw(ref.path, ref.key, files)
    check_counts(arr.shape[0], arr.shape[1], ref.path, ref.key, "kaldi")
    check_matches_ref(ref, *arr.shape)
    out[...] = arr


def write_kaldi(ark_path: PathLike, scp_path: PathLike,
                utt2mat: Mapping[str, np.ndarray]) -> list[FeatureRef]:
    """Atomically write matrices to a Kaldi ark file and its scp index.

    Parameters
    ----------
    ark_path : str or os.PathLike
        Destination archive; the scp lines refer to it as given (relative
        paths are relative to the reader's working directory, as in Kaldi).
    scp_path : str or os.PathLike
        Destination script file, one ``utt-id ark_path:offset`` line per
        matrix, in mapping order.
    utt2mat : mapping of str to array_like, each shape (n_frames, n_features)
        Utterance id (non-empty, no whitespace) to matrix.  float64 data is
        stored as double (DM), everything else as float (FM).

    Returns
    -------
    list of FeatureRef
        One per utterance, in mapping order.

    Raises
    ------
    ValueError
        If there are no utterances, an id is invalid, or a matrix is not a
        non-empty numeric 2-D array.  Nothing is left behind on failure.
    """
    ark_path, scp_path = os.fspath(ark_path), os.fspath(scp_path)
    if is_pipe(ark_path) or is_pipe(scp_path):
        raise ValueError("write_kaldi() writes files, not pipes")
    arrays: dict[str, np.ndarray] = {}
    for utt, mat in utt2mat.items():
        if not isinstance(utt, str) or not utt or re.search(r"\s", utt):
            raise ValueError(f"invalid Kaldi utterance id {utt!r} (non-empty, no whitespace)")
        arrays[utt] = as_matrix(mat, f"matrix for utterance {utt!r}")
    if not arrays:
        raise ValueError("no matrices to write")
    kaldiio = require("kaldiio", "to write Kaldi ark/scp files")
    with atomic_path(scp_path) as tmp_scp, atomic_path(ark_path) as tmp_ark:
        index = io.StringIO()
        kaldiio.save_ark(tmp_ark, arrays, scp=index)
        offsets = [int(line.rsplit(":", 1)[1]) for line in index.getvalue().splitlines()]
        with open(tmp_scp, "w", encoding="utf-8") as f:
            for utt, offset in zip(arrays, offsets):
                f.write(f"{utt} {ark_path}:{offset}\n")
    abs_ark = os.path.abspath(ark_path)
    return [FeatureRef(f"{abs_ark}:{offset}", "kaldi", utt, *arrays[utt].shape)
            for utt, offset in zip(arrays, offsets)]


#: The format's entry in the registry of :mod:`ipem.io.formats`.  No extension: Kaldi
#: matrices are named by rxspecifiers (``file.ark:offset``, pipes), listed in ``.scp``
#: files (:mod:`ipem.io.lists`).
HANDLER = FormatHandler(read_shape, read_into, suffix=".kaldi", recognizes=is_archive_spec,
                        takes_key=True, write_hint="use write_kaldi()", absolute=absolute_spec)
