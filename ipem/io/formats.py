"""The format registry: which module reads and writes which format, and from which name.

Four on-disk formats are supported, each for reading and for writing (see
the module of each for the details of the format):

=========  ==========================  =================================
format     module                      inferred from
=========  ==========================  =================================
``htk``    :mod:`ipem.io.htk`          ``.htk .mfc .plp .fea``
``kaldi``  :mod:`ipem.io.kaldi`        ``file.ark:offset``, pipes; ``.scp``
                                       lists them (:mod:`ipem.io.lists`)
``npy``    :mod:`ipem.io.npy`          ``.npy``
``h5``     :mod:`ipem.io.hdf5`         ``.h5 .hdf5``
=========  ==========================  =================================

:data:`HANDLERS` maps each name of :data:`~ipem.io.refs.FORMATS` to its
:class:`FormatHandler`; the generic functions of :mod:`ipem.io.features`
dispatch through it (looking it up at call time).
"""
from __future__ import annotations

import os
from typing import Callable, NamedTuple

from . import hdf5, htk, kaldi, npy
from .lists import is_scp_file
from .refs import DEFAULT_H5_KEY, FORMATS, FeatureFileError, PathLike

__all__ = ["EXTENSIONS", "FORMATS", "FormatHandler", "HANDLERS", "handler", "infer_format", "names",
           "suffix", "write_names"]


class FormatHandler(NamedTuple):
    """Per-format operations.

    Attributes
    ----------
    read_shape : callable
        ``read_shape(path, key, files) -> (n_frames, n_features)``: read
        only the header, validate it and the file size.
    read_into : callable
        ``read_into(ref, out, files) -> None``: read the matrix into ``out``
        (shape ``ref.shape``, C-contiguous), after checking that the file
        still matches ``ref``.
    write_file : callable or None
        ``write_file(tmp_path, X, key, options) -> None``: write ``X`` to
        the (already created, empty) temporary file; ``None`` when
        :func:`ipem.io.write` cannot write the format.
    default_key : str or None
        Key used when none is given (the HDF5 dataset name).
    """

    read_shape: Callable
    read_into: Callable
    write_file: Callable | None
    default_key: str | None


#: Format name -> operations.
HANDLERS: dict[str, FormatHandler] = {
    "htk": FormatHandler(htk.read_shape, htk.read_into, htk.write_file, None),
    "kaldi": FormatHandler(kaldi.read_shape, kaldi.read_into, None, None),
    "npy": FormatHandler(npy.read_shape, npy.read_into, npy.write_file, None),
    "h5": FormatHandler(hdf5.read_shape, hdf5.read_into, hdf5.write_file, DEFAULT_H5_KEY),
}
assert tuple(HANDLERS) == FORMATS

#: File extensions (lower case) from which a feature format is inferred.
EXTENSIONS = {
    ".htk": "htk",
    ".mfc": "htk",
    ".plp": "htk",
    ".fea": "htk",
    ".npy": "npy",
    ".h5": "h5",
    ".hdf5": "h5",
}


def names() -> tuple[str, ...]:
    """Every registered format name (the formats that can be read), in registry order."""
    return tuple(HANDLERS)


def write_names() -> tuple[str, ...]:
    """The formats :func:`ipem.io.write` (and so extraction) can write, in registry order."""
    return tuple(name for name, ops in HANDLERS.items() if ops.write_file is not None)


def suffix(fmt: str) -> str:
    """The file suffix of a feature file of format ``fmt`` (e.g. ``".htk"``)."""
    handler(fmt)
    return "." + fmt


def handler(fmt: str) -> FormatHandler:
    """The operations of format ``fmt``.

    Raises
    ------
    ValueError
        If ``fmt`` is not one of :data:`~ipem.io.refs.FORMATS`.
    """
    try:
        return HANDLERS[fmt]
    except KeyError:
        raise ValueError(f"unknown feature format {fmt!r}; expected one of {FORMATS}") from None


def infer_format(path: PathLike) -> str:
    """Infer a feature format from a file name.

    Parameters
    ----------
    path : str or os.PathLike
        File name, or a Kaldi rxspecifier ``file.ark:offset``.

    Returns
    -------
    str
        One of :data:`~ipem.io.refs.FORMATS`.

    Raises
    ------
    FeatureFileError
        If the extension is not recognised, or ``path`` is an ``.scp`` file.
    """
    path = os.fspath(path)
    if kaldi.is_archive_spec(path):
        return "kaldi"
    ext = os.path.splitext(path)[1].lower()
    if ext in EXTENSIONS:
        return EXTENSIONS[ext]
    if is_scp_file(path):
        raise FeatureFileError(path, "is a Kaldi script file; use list_features() to expand it")
    known = ", ".join(sorted(EXTENSIONS))
    raise FeatureFileError(path, f"cannot infer the feature format from extension {ext!r} "
                           f"(known: {known}; Kaldi archives via .scp); pass fmt=")
