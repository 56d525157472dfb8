"""NumPy ``.npy`` feature files (format ``"npy"``; extension ``.npy``).

The file holds one 2-D numeric array of shape ``(n_frames, n_features)``
(``.npy`` format version 1.0 or 2.0, never pickled objects).  Describing a
file reads only the array header and checks the file size; loading
memory-maps the data and copies it into the output.

:data:`HANDLER` (:func:`read_shape`, :func:`read_into`, :func:`write_file`)
is the format's entry in the registry of :mod:`ipem.io.formats`.
"""
from __future__ import annotations

import numpy as np

from .checks import check_counts, check_matches_ref, check_numeric_dtype, file_size
from .refs import FeatureFileError, FeatureRef, FormatHandler

__all__ = ["HANDLER", "read_into", "read_shape", "write_file"]


def _read_header(f, path: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from the header of the open ``.npy`` file ``f``, validated."""
    size = file_size(f)
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise FeatureFileError(path, f"unsupported .npy format version {version}", None, "npy")
    check_numeric_dtype(dtype, path, None, "npy")
    if len(shape) != 2:
        raise FeatureFileError(path, f"expected a 2-D array (frames x features), got shape {shape}",
                               None, "npy")
    expected = f.tell() + shape[0] * shape[1] * dtype.itemsize
    if size < expected:
        raise FeatureFileError(path, f"truncated: header says {shape[0]}x{shape[1]} {dtype} "
                               f"({expected} bytes with header), file has {size} bytes",
                               None, "npy")
    check_counts(shape[0], shape[1], path, None, "npy")
    return shape, dtype


def read_shape(path: str, key: str | None, files: dict) -> tuple[int, int]:
    """``(n_frames, n_features)`` of a ``.npy`` file, from its validated header.

    Parameters
    ----------
    path : str
        Absolute file path.
    key : str or None
        Always ``None`` (npy files have no key).
    files : dict
        Open files by name (:func:`ipem.io.checks.open_files`); unused.

    Returns
    -------
    tuple of int
        ``(n_frames, n_features)``.

    Raises
    ------
    FeatureFileError
        If the file is malformed, truncated, non-numeric or empty.
    """
    with open(path, "rb") as f:
        shape, _ = _read_header(f, path)
    return shape


def read_into(ref: FeatureRef, out: np.ndarray, files: dict) -> None:
    """Read the array of ``ref`` into ``out``, converting the dtype.

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
        shape, _ = _read_header(f, ref.path)
    check_matches_ref(ref, *shape)
    data = np.load(ref.path, mmap_mode="r", allow_pickle=False)
    try:
        out[...] = data
    finally:
        del data  # drops the memory map


def write_file(tmp: str, X: np.ndarray, key: str | None, options: dict) -> None:
    """Write ``X`` to the file ``tmp`` as ``.npy`` (its dtype kept).

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
        None used.
    """
    with open(tmp, "wb") as f:  # a file object stops np.save appending ".npy"
        np.save(f, X, allow_pickle=False)


#: The format's entry in the registry of :mod:`ipem.io.formats`.
HANDLER = FormatHandler(read_shape, read_into, write_file, suffix=".npy", extensions=(".npy",))
