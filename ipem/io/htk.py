"""HTK parameter files (format ``"htk"``; extensions ``.htk .mfc .plp .fea``).

An HTK file is a 12-byte big-endian header (``nSamples`` int32,
``sampPeriod`` int32 in 100 ns units, ``sampSize`` int16 in bytes per
frame, ``parmKind`` int16) followed by big-endian float32 data, one frame
of ``sampSize / 4`` features after another.  Only uncompressed float data
is supported; the ``_C`` (compressed) and ``_K`` (CRC) qualifiers, and the
integer kinds WAVEFORM, IREFC and DISCRETE, are rejected.  A file whose
header only matches its size when read little-endian is reported as such.

:data:`HANDLER` (:func:`read_shape`, :func:`read_into`, :func:`write_file`)
is the format's entry in the registry of :mod:`ipem.io.formats`.
"""
from __future__ import annotations

import os
import struct
import sys
from typing import NamedTuple

import numpy as np

from .checks import check_counts, check_matches_ref, file_size, reading
from .refs import FeatureFileError, FeatureRef, FormatHandler, PathLike

__all__ = ["HANDLER", "HTKHeader", "PARM_KIND_USER", "read_htk_header", "read_into",
           "read_shape", "write_file"]

#: parmKind USER, the default kind written.
PARM_KIND_USER = 9

_HEADER = struct.Struct(">iihh")
_HEADER_LE = struct.Struct("<iihh")
_COMPRESSED = 0o2000  # _C
_CRC = 0o10000  # _K
_BASE_MASK = 0o77
_INTEGER_KINDS = {0: "WAVEFORM", 5: "IREFC", 10: "DISCRETE"}


class HTKHeader(NamedTuple):
    """Fields of an HTK parameter file header.

    Attributes
    ----------
    n_samples : int
        Number of frames.
    samp_period : int
        Frame period in 100 ns units (100000 = 10 ms).
    samp_size : int
        Bytes per frame (4 * n_features for float data).
    parm_kind : int
        Parameter kind code with qualifier bits (9 = USER).
    """

    n_samples: int
    samp_period: int
    samp_size: int
    parm_kind: int


def _plausible(hdr: HTKHeader, size: int) -> bool:
    """Whether ``hdr`` describes an uncompressed float file of ``size`` bytes."""
    kind = hdr.parm_kind & 0xFFFF
    return (hdr.n_samples > 0 and hdr.samp_size > 0 and hdr.samp_size % 4 == 0
            and not kind & (_COMPRESSED | _CRC)
            and (kind & _BASE_MASK) not in _INTEGER_KINDS
            and _HEADER.size + hdr.n_samples * hdr.samp_size == size)


def _read_header(f, path: str) -> tuple[HTKHeader, int]:
    """Read and validate the header of open HTK file ``f``; return it and the file size."""
    size = file_size(f)
    raw = f.read(_HEADER.size)
    if len(raw) < _HEADER.size:
        raise FeatureFileError(path, f"too short for an HTK header: file has {size} bytes, "
                               f"the header alone needs {_HEADER.size}", None, "htk")
    hdr = HTKHeader(*_HEADER.unpack(raw))
    expected = _HEADER.size + hdr.n_samples * hdr.samp_size
    if size != expected and _plausible(HTKHeader(*_HEADER_LE.unpack(raw)), size):
        raise FeatureFileError(path, "the file looks like a little-endian HTK file (its header "
                               "only matches the file size when read little-endian); HTK files "
                               "must be big-endian", None, "htk")
    kind = hdr.parm_kind & 0xFFFF
    if kind & _COMPRESSED:
        raise FeatureFileError(path, f"compressed HTK data (parmKind {kind:#o} has the _C "
                               "qualifier) is not supported", None, "htk")
    if kind & _CRC:
        raise FeatureFileError(path, f"HTK data with CRC checksum (parmKind {kind:#o} has the _K "
                               "qualifier) is not supported", None, "htk")
    base = kind & _BASE_MASK
    if base in _INTEGER_KINDS:
        raise FeatureFileError(path, f"HTK parmKind {_INTEGER_KINDS[base]} holds integer "
                               "samples, not float features", None, "htk")
    if hdr.samp_size <= 0 or hdr.samp_size % 4:
        raise FeatureFileError(path, f"bad sampSize {hdr.samp_size}: must be a positive multiple "
                               "of 4 (float32 features)", None, "htk")
    if hdr.n_samples < 0:
        raise FeatureFileError(path, f"bad nSamples {hdr.n_samples} in header", None, "htk")
    if size != expected:
        what = "truncated" if size < expected else "size mismatch"
        raise FeatureFileError(path, f"{what}: header says {hdr.n_samples} frames of "
                               f"{hdr.samp_size} bytes ({expected} bytes), file has {size} bytes",
                               None, "htk")
    check_counts(hdr.n_samples, hdr.samp_size // 4, path, None, "htk")
    return hdr, size


def read_htk_header(path: PathLike) -> HTKHeader:
    """Read and validate the 12-byte header of an HTK parameter file.

    Parameters
    ----------
    path : str or os.PathLike
        HTK file.

    Returns
    -------
    HTKHeader
        The header fields.

    Raises
    ------
    FeatureFileError
        If the file is missing, unsupported (compressed, CRC, integer kind),
        has a bad ``sampSize`` or a size inconsistent with its header.
    """
    path = os.fspath(path)
    with reading(path, None, "htk"), open(path, "rb") as f:
        return _read_header(f, path)[0]


def read_shape(path: str, key: str | None, files: dict) -> tuple[int, int]:
    """``(n_frames, n_features)`` of an HTK file, from its validated header.

    Parameters
    ----------
    path : str
        Absolute file path.
    key : str or None
        Always ``None`` (HTK files have no key).
    files : dict
        Open files by name (:func:`ipem.io.checks.open_files`); unused.

    Returns
    -------
    tuple of int
        ``(n_frames, n_features)``.

    Raises
    ------
    FeatureFileError
        If the file is malformed, truncated, unsupported (compressed, CRC,
        integer kinds) or empty.
    """
    hdr = read_htk_header(path)
    return hdr.n_samples, hdr.samp_size // 4


def read_into(ref: FeatureRef, out: np.ndarray, files: dict) -> None:
    """Read the matrix of ``ref`` into ``out`` (float32: straight into it, then byte-swapped).

    Parameters
    ----------
    ref : FeatureRef
        The matrix to read (from :func:`read_shape`'s description).
    out : ndarray of shape (ref.n_frames, ref.n_features)
        C-contiguous float32 or float64 output, filled in place.
    files : dict
        Open files by name (:func:`ipem.io.checks.open_files`); unused.

    Raises
    ------
    FeatureFileError
        If the file no longer matches ``ref`` or cannot be read.
    """
    with open(ref.path, "rb") as f:
        hdr, _ = _read_header(f, ref.path)
        check_matches_ref(ref, hdr.n_samples, hdr.samp_size // 4)
        n_bytes = hdr.n_samples * hdr.samp_size
        if out.dtype == np.float32:
            # Read straight into the output, then fix the byte order in place.
            got = f.readinto(memoryview(out).cast("B"))
            if sys.byteorder == "little":
                out.byteswap(inplace=True)
        else:
            buf = np.fromfile(f, dtype=">f4", count=out.size)
            got = buf.nbytes
            if got == n_bytes:
                out[...] = buf.reshape(out.shape)
        if got != n_bytes:
            raise FeatureFileError(ref.path, f"truncated while reading: expected {n_bytes} data "
                                   f"bytes, got {got}", None, "htk")


def write_file(tmp: str, X: np.ndarray, key: str | None, options: dict) -> None:
    """Write ``X`` as HTK (big-endian float32) to the file ``tmp``.

    Parameters
    ----------
    tmp : str
        The (created, empty) temporary file, renamed over the destination
        by the caller (:func:`ipem.io.write`) once this returns.
    X : ndarray of shape (n_frames, n_features)
        Numeric data, at least one frame.
    key : str or None
        Always ``None``.
    options : dict
        May hold ``sample_period`` (100 ns units, default 100000) and
        ``parm_kind`` (default USER).

    Raises
    ------
    ValueError
        If ``X`` has too many features or frames for the header, or an
        option is out of range; compressed, CRC and integer kinds are refused.
    """
    period = options.get("sample_period", 100000)
    kind = options.get("parm_kind", PARM_KIND_USER)
    n, d = X.shape
    if not 0 < 4 * d <= 0x7FFF:
        raise ValueError(f"HTK cannot store {d} features per frame (sampSize is int16)")
    if n > 0x7FFFFFFF:
        raise ValueError(f"HTK cannot store {n} frames (nSamples is int32)")
    if not 0 < int(period) <= 0x7FFFFFFF:
        raise ValueError(f"sample_period must be a positive int32 (100 ns units), got {period}")
    if not 0 <= int(kind) <= 0xFFFF:
        raise ValueError(f"parm_kind must fit in 16 bits, got {kind}")
    kind = int(kind)
    if kind & (_COMPRESSED | _CRC) or (kind & _BASE_MASK) in _INTEGER_KINDS:
        raise ValueError(f"parm_kind {kind:#o} is not an uncompressed float kind")
    if kind >= 0x8000:  # stored as a signed int16
        kind -= 0x10000
    with open(tmp, "wb") as f:
        f.write(_HEADER.pack(n, int(period), 4 * d, kind))
        f.write(np.ascontiguousarray(X, dtype=">f4").data)


#: The format's entry in the registry of :mod:`ipem.io.formats`.
HANDLER = FormatHandler(read_shape, read_into, write_file, suffix=".htk",
                        extensions=(".htk", ".mfc", ".plp", ".fea"),
                        write_options=("sample_period", "parm_kind"))
