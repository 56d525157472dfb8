"""Checks shared by the format readers and writers of :mod:`ipem.io`.

Every reader wraps its low-level I/O in :func:`reading`, which turns the
many exception types of the OS, :mod:`kaldiio` and :mod:`h5py` into one
:class:`~ipem.io.refs.FeatureFileError` naming the file; the ``check_*``
functions raise the same error for the problems every format can have (zero
frames, non-numeric data, a shape that no longer matches the ref, NaN/Inf).
"""
from __future__ import annotations

import contextlib
import os
import struct
from typing import Iterator

import numpy as np

from .preflight import special_kind
from .refs import FeatureFileError, FeatureRef

__all__ = ["as_matrix", "check_counts", "check_finite", "check_matches_ref",
           "check_numeric_dtype", "check_regular", "file_size", "float_dtype", "open_files",
           "reading"]


def check_regular(path: str, key: str | None = None, fmt: str | None = None) -> None:
    """Raise :class:`FeatureFileError` if ``path`` is a FIFO, a device or a socket.

    Called before a reader opens ``path``: opening a FIFO blocks until a
    writer comes, and ``/dev/zero`` never ends.  Paths that do not exist
    (a Kaldi ``ark:offset``, a missing file) are left to the reader.
    """
    kind = special_kind(path)
    if kind is not None:
        raise FeatureFileError(path, f"is {kind}, not a regular file", key, fmt)


@contextlib.contextmanager
def reading(path: str, key: str | None, fmt: str) -> Iterator[None]:
    """Turn low-level read errors inside the block into :class:`FeatureFileError`.

    Parameters
    ----------
    path : str
        File being read, for the message.
    key : str or None
        Utterance id or dataset name, for the message.
    fmt : str
        Format name (or ``"list"``), for the message.
    """
    try:
        yield
    except FeatureFileError:
        raise
    except FileNotFoundError as exc:
        raise FeatureFileError(path, f"does not exist ({exc.strerror})", key, fmt) from exc
    except PermissionError as exc:
        raise FeatureFileError(path, f"is not readable ({exc.strerror})", key, fmt) from exc
    except IsADirectoryError as exc:
        raise FeatureFileError(path, "is a directory, not a feature file", key, fmt) from exc
    except (OSError, ValueError, KeyError, AssertionError, EOFError, struct.error,
            UnicodeDecodeError, IndexError, RuntimeError) as exc:
        # kaldiio and h5py signal corrupt input with a variety of types.
        raise FeatureFileError(path, f"cannot read {fmt} data: {type(exc).__name__}: {exc}",
                               key, fmt) from exc


@contextlib.contextmanager
def open_files() -> Iterator[dict]:
    """Cache of open files (Kaldi arks, by name), all closed on exit.

    Yields
    ------
    dict
        Maps file names to open binary file objects; readers add to it.
    """
    files: dict = {}
    try:
        yield files
    finally:
        for f in files.values():
            with contextlib.suppress(Exception):
                f.close()


def file_size(f) -> int:
    """Size in bytes of the open file ``f``."""
    return os.fstat(f.fileno()).st_size


def check_numeric_dtype(dtype: np.dtype, path: str, key: str | None, fmt: str) -> None:
    """Raise :class:`FeatureFileError` unless ``dtype`` is a float or integer type."""
    if dtype.hasobject or dtype.kind not in "fiu":
        raise FeatureFileError(path, f"non-numeric dtype {dtype} (expected float or integer data)",
                               key, fmt)


def check_counts(n_frames: int, n_features: int, path: str, key: str | None, fmt: str) -> None:
    """Raise :class:`FeatureFileError` if a matrix has zero frames or zero features."""
    if n_frames == 0:
        raise FeatureFileError(path, "contains zero frames", key, fmt)
    if n_features == 0:
        raise FeatureFileError(path, "has zero features per frame", key, fmt)


def check_matches_ref(ref: FeatureRef, n_frames: int, n_features: int) -> None:
    """Check that a freshly read header (shape ``(n_frames, n_features)``) agrees with ``ref``."""
    if n_features != ref.n_features:
        raise FeatureFileError(ref.path, f"wrong dimensionality: file has {n_features} features "
                               f"per frame, expected {ref.n_features}", ref.key, ref.fmt)
    if n_frames != ref.n_frames:
        raise FeatureFileError(ref.path, f"wrong frame count: file has {n_frames} frames, "
                               f"expected {ref.n_frames} (file changed since it was described?)",
                               ref.key, ref.fmt)


def check_finite(ref: FeatureRef, X: np.ndarray, block: int = 1 << 16) -> None:
    """Raise if ``X`` (shape ``(n_frames, n_features)``) has NaN/Inf; checked blockwise.

    The message gives the first bad row (0-based frame index).
    """
    for start in range(0, X.shape[0], block):
        ok = np.isfinite(X[start:start + block]).all(axis=1)
        if not ok.all():
            row = start + int(np.flatnonzero(~ok)[0])
            raise FeatureFileError(ref.path, f"non-finite value (NaN or Inf) in row {row} "
                                   f"(0-based frame index, as {X.dtype})", ref.key, ref.fmt)


def float_dtype(dtype) -> np.dtype:
    """``dtype`` as a native-byte-order floating dtype; ValueError if not floating."""
    dt = np.dtype(dtype)
    if dt.kind != "f":
        raise ValueError(f"dtype must be a floating-point type, got {dt}")
    return dt.newbyteorder("=")


def as_matrix(X, what: str = "X") -> np.ndarray:
    """Validate a matrix for writing.

    Parameters
    ----------
    X : array_like of shape (n_frames, n_features)
        Numeric, at least one frame and one feature.
    what : str, optional
        How messages name ``X``.

    Returns
    -------
    ndarray of shape (n_frames, n_features)
        C-contiguous, native byte order; float32/float64 kept, anything
        else converted to float32.

    Raises
    ------
    ValueError
        If ``X`` is not 2-D, not numeric or empty.
    """
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"{what} must be 2-D (frames x features), got shape {X.shape}")
    if X.dtype.hasobject or X.dtype.kind not in "fiu":
        raise ValueError(f"{what} must be numeric, got dtype {X.dtype}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{what} must have at least one frame and one feature, got shape "
                         f"{X.shape}")
    keep = X.dtype.kind == "f" and X.dtype.itemsize in (4, 8)
    dtype = X.dtype.newbyteorder("=") if keep else np.dtype(np.float32)
    return np.ascontiguousarray(X, dtype=dtype)
