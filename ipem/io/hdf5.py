"""HDF5 feature files (format ``"h5"``; extensions ``.h5 .hdf5``), via :mod:`h5py`.

The file holds one 2-D numeric dataset of shape ``(n_frames, n_features)``
at the top level, named ``"features"`` unless stated otherwise (the
:attr:`~ipem.io.FeatureRef.key` of its ref is the dataset name).  Other
objects in the file are ignored.

:data:`HANDLER` (:func:`read_shape`, :func:`read_into`, :func:`write_file`)
is the format's entry in the registry of :mod:`ipem.io.formats`.  :mod:`h5py`
is imported when a file is read or written (``pip install 'ipem[speaker]'``).
"""
from __future__ import annotations

import numpy as np

from .._optional import require
from .checks import check_counts, check_matches_ref, check_numeric_dtype
from .refs import FeatureFileError, FeatureRef, FormatHandler

__all__ = ["DEFAULT_H5_KEY", "HANDLER", "check_key", "read_into", "read_shape", "write_file"]

#: Default HDF5 dataset name.
DEFAULT_H5_KEY = "features"


def _h5py():
    return require("h5py", "to read and write HDF5 feature files")


def _dataset(f, path: str, key: str):
    """The validated dataset ``key`` of the open file ``f`` (an ``h5py.File``)."""
    h5py = _h5py()
    obj = f.get(key)
    if obj is None:
        names = ", ".join(sorted(f.keys())) or "nothing"
        raise FeatureFileError(path, f"no dataset {key!r} in HDF5 file (top level has: {names})",
                               key, "h5")
    if not isinstance(obj, h5py.Dataset):
        raise FeatureFileError(path, f"{key!r} is a {type(obj).__name__}, not a dataset", key, "h5")
    check_numeric_dtype(obj.dtype, path, key, "h5")
    if obj.ndim != 2:
        raise FeatureFileError(path, f"expected a 2-D dataset (frames x features), got shape "
                               f"{obj.shape}", key, "h5")
    check_counts(obj.shape[0], obj.shape[1], path, key, "h5")
    return obj


def read_shape(path: str, key: str | None, files: dict) -> tuple[int, int]:
    """``(n_frames, n_features)`` of dataset ``key`` of an HDF5 file.

    Parameters
    ----------
    path : str
        Absolute file path.
    key : str or None
        The dataset name.
    files : dict
        Open files by name (:func:`ipem.io.checks.open_files`); unused.

    Returns
    -------
    tuple of int
        ``(n_frames, n_features)``.

    Raises
    ------
    FeatureFileError
        If the file is malformed, truncated, non-numeric or empty, or
        has no dataset ``key``.
    """
    h5py = _h5py()
    with h5py.File(path, "r") as f:
        return _dataset(f, path, key).shape


def read_into(ref: FeatureRef, out: np.ndarray, files: dict) -> None:
    """Read the dataset of ``ref`` into ``out`` (HDF5 converts the dtype, no temporary copy).

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
    h5py = _h5py()
    with h5py.File(ref.path, "r") as f:
        ds = _dataset(f, ref.path, ref.key)
        check_matches_ref(ref, *ds.shape)
        ds.read_direct(out)  # no temporary copy


def write_file(tmp: str, X: np.ndarray, key: str | None, options: dict) -> None:
    """Write ``X`` as dataset ``key`` of a new HDF5 file ``tmp`` (its dtype kept).

    Parameters
    ----------
    tmp : str
        The (created, empty) temporary file, renamed over the destination
        by the caller (:func:`ipem.io.write`) once this returns.
    X : ndarray of shape (n_frames, n_features)
        Numeric data, at least one frame.
    key : str or None
        The dataset name (checked by :func:`check_key`).
    options : dict
        None used.
    """
    h5py = _h5py()
    with h5py.File(tmp, "w") as f:
        f.create_dataset(key, data=X)


def check_key(key: str | None) -> None:
    """Raise ValueError unless ``key`` is a dataset name that can be written.

    Parameters
    ----------
    key : object
        The dataset name given to :func:`ipem.io.write`; must be a non-empty str.
    """
    if not isinstance(key, str) or not key:
        raise ValueError(f"HDF5 dataset name must be a non-empty str, got {key!r}")


#: The format's entry in the registry of :mod:`ipem.io.formats`.
HANDLER = FormatHandler(read_shape, read_into, write_file, suffix=".h5",
                        extensions=(".h5", ".hdf5"), default_key=DEFAULT_H5_KEY,
                        takes_key=True, key_phrase="dataset {key!r}", check_key=check_key)
