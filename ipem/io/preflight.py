"""Checks a step makes of its paths before any work: inputs it can read, outputs it can write.

A step that trains for an hour and then cannot write its result has wasted
the hour.  The speaker-verification steps (:mod:`ipem.steps`) and
the ``ipem`` command therefore check, before they start, that every output
file's directory exists and is writable and that the output is not a
directory (:func:`check_output_file`), that an output directory can be made
(:func:`check_output_dir`), and that every input they are given exists and
can be read (:func:`check_input_file`, :func:`check_input_dir`).

Each check raises a one-line :class:`ValueError` that starts with ``what``
(how the caller names the path: ``"out"``, ``"--out"``, ``"UBM file"``) and
the path.  The checks look; they create nothing.  (Running as root, every
file counts as readable and writable, as it is.)
"""
from __future__ import annotations

import os

from .refs import PathLike

__all__ = ["check_input_dir", "check_input_file", "check_output_dir", "check_output_file"]


def _named(what: str, path: str) -> str:
    return f"{what} {path}" if what else path


def _writable_dir(directory: str, what: str, path: str) -> None:
    shown = directory or "."
    if not os.path.exists(directory or "."):
        raise ValueError(f"{_named(what, path)}: the directory {shown} does not exist")
    if not os.path.isdir(directory or "."):
        raise ValueError(f"{_named(what, path)}: {shown} is not a directory")
    if not os.access(directory or ".", os.W_OK | os.X_OK):
        raise ValueError(f"{_named(what, path)}: the directory {shown} is not writable")


def check_output_file(path: PathLike, what: str = "output") -> str:
    """Check that a file can be written (atomically: a temporary file, then a rename).

    Parameters
    ----------
    path : str or os.PathLike
        The file; replaced if it exists.
    what : str, default="output"
        How messages name it.

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    ValueError
        If ``path`` is a directory, or its directory does not exist, is not
        a directory or is not writable.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"{_named(what, path)} is a directory: give a file name")
    _writable_dir(os.path.dirname(path), what, path)
    return path


def check_output_dir(path: PathLike, what: str = "output directory") -> str:
    """Check that a directory exists and is writable, or can be made.

    Parameters
    ----------
    path : str or os.PathLike
        The directory; when it does not exist, its nearest existing ancestor
        must be a writable directory (the step makes the rest).
    what : str, default="output directory"

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    ValueError
        If ``path`` is a file, or the directory (or the ancestor it would be
        made in) is not a writable directory.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        if not os.access(path, os.W_OK | os.X_OK):
            raise ValueError(f"{_named(what, path)}: the directory is not writable")
        return path
    if os.path.lexists(path):
        raise ValueError(f"{_named(what, path)} exists and is not a directory")
    ancestor = os.path.dirname(os.path.abspath(path))
    while not os.path.lexists(ancestor):
        ancestor = os.path.dirname(ancestor)
    _writable_dir(ancestor, what, path)
    return path


def check_input_file(path: PathLike, what: str = "input") -> str:
    """Check that a file exists, is not a directory and is readable.

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    ValueError
        Naming ``what``, the path and the problem.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"{_named(what, path)} does not exist")
    if os.path.isdir(path):
        raise ValueError(f"{_named(what, path)} is a directory, not a file")
    if not os.access(path, os.R_OK):
        raise ValueError(f"{_named(what, path)} is not readable")
    return path


def check_input_dir(path: PathLike, what: str = "input directory") -> str:
    """Check that a directory exists and can be listed and read.

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    ValueError
        Naming ``what``, the path and the problem.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"{_named(what, path)} does not exist")
    if not os.path.isdir(path):
        raise ValueError(f"{_named(what, path)} is not a directory")
    if not os.access(path, os.R_OK | os.X_OK):
        raise ValueError(f"{_named(what, path)}: the directory is not readable")
    return path
