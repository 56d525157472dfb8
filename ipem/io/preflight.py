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

A file ipem reads must be a regular file once symbolic links are followed:
a FIFO blocks its reader forever and ``/dev/zero`` never ends, so both are
refused before anything reads them (:func:`special_kind`,
:func:`check_regular_file`), and a reader that must bound its input opens the
file with :func:`open_regular`, which refuses a special file without
blocking on it and a file over a size limit before a byte is read.
"""
from __future__ import annotations

import fcntl
import os
import stat

from .refs import PathLike

__all__ = ["check_input_dir", "check_input_file", "check_output_dir", "check_output_file",
           "check_regular_file", "open_regular", "special_kind"]

_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _kind(mode: int) -> str | None:
    for test, name in _KINDS:
        if test(mode):
            return name
    return None if stat.S_ISREG(mode) or stat.S_ISDIR(mode) else "not a regular file"


def special_kind(path: PathLike) -> str | None:
    """What ``path`` is when it is a special file, after symbolic links; else None.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    str or None
        ``"a FIFO (named pipe)"``, ``"a character device"`` (``/dev/zero``,
        ``/dev/null``), ``"a block device"`` or ``"a socket"``; None for a
        regular file, a directory or a path that does not exist (the
        callers' own checks name those).  Looking never blocks.
    """
    try:
        mode = os.stat(os.fspath(path)).st_mode
    except (OSError, ValueError):
        return None
    return _kind(mode)


def _too_big(what: str, path: str, size: int, max_bytes: int) -> ValueError:
    return ValueError(f"{_named(what, path)} is {size} bytes, more than the {max_bytes} a "
                      "file of this kind may have")


def check_regular_file(path: PathLike, what: str = "input", max_bytes: int | None = None) -> str:
    """Check that ``path`` is not a special file and, if given, not over ``max_bytes``.

    Parameters
    ----------
    path : str or os.PathLike
    what : str, default="input"
        How messages name it.
    max_bytes : int, optional
        Largest size accepted.

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    ValueError
        ``"<what> <path> is a FIFO (named pipe), not a regular file"`` (or a
        device, a socket), or a file over ``max_bytes``.
    """
    path = os.fspath(path)
    kind = special_kind(path)
    if kind is not None:
        raise ValueError(f"{_named(what, path)} is {kind}, not a regular file")
    if max_bytes is not None:
        try:
            size = os.stat(path).st_size
        except OSError:
            return path
        if size > max_bytes:
            raise _too_big(what, path, size, max_bytes)
    return path


def open_regular(path: PathLike, what: str = "input", max_bytes: int | None = None):
    """Open a regular file for reading in binary mode; refuse anything else without blocking.

    The file is opened non-blocking (a FIFO with no writer does not hold the
    open), checked with ``fstat`` on the open descriptor (so a file swapped
    after a check cannot slip through), then set back to blocking.

    Parameters
    ----------
    path : str or os.PathLike
    what : str, default="input"
        How messages name it.
    max_bytes : int, optional
        Largest size accepted, checked before a byte is read.

    Returns
    -------
    io.BufferedReader
        The open file; the caller closes it.

    Raises
    ------
    ValueError
        For a FIFO, a device, a socket or a file over ``max_bytes``, as
        :func:`check_regular_file`.
    OSError
        If the file cannot be opened (missing, unreadable, a directory).
    """
    path = os.fspath(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(21, "Is a directory", path)
        kind = _kind(st.st_mode)
        if kind is not None:
            raise ValueError(f"{_named(what, path)} is {kind}, not a regular file")
        if max_bytes is not None and st.st_size > max_bytes:
            raise _too_big(what, path, st.st_size, max_bytes)
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


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
        If ``path`` is a directory or a special file (a FIFO, a device: the
        rename that ends an atomic write would replace it), or its directory
        does not exist, is not a directory or is not writable.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"{_named(what, path)} is a directory: give a file name")
    kind = special_kind(path)
    if kind is not None:     # the rename that ends a write would replace it
        raise ValueError(f"{_named(what, path)} is {kind}, not a regular file")
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
    """Check that a file exists, is a regular file (after symbolic links) and is readable.

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    ValueError
        Naming ``what``, the path and the problem (a FIFO or a device is
        refused: reading it would block or never end).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"{_named(what, path)} does not exist")
    if os.path.isdir(path):
        raise ValueError(f"{_named(what, path)} is a directory, not a file")
    check_regular_file(path, what)
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
