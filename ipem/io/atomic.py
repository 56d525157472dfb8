"""Atomic file writing: the one writer every ipem output goes through.

Features, models, checkpoints, score files and audio are all written with
:func:`atomic_path`: the data goes to a temporary file in the destination
directory, named ``.<name>.<hex>.tmp`` (a leading dot, the destination's
base name, 12 random hex digits, ``.tmp``), which is flushed to disk and
renamed over the destination only once it is complete.  A failed write
therefore leaves neither a partial destination nor a temporary file, and a
reader never sees a half-written file.  The rename is atomic because the
temporary file is in the same directory (hence on the same file system).
:func:`atomic_files` gives several files the same guarantee with one wait for
the disk for all of them (each synced before any is renamed).

A step that writes a directory of files (speaker models, features) writes
them into a temporary directory ``.<name>.<hex>.tmp`` (next to the
destination, or hidden inside it when it exists; :func:`atomic_directory`),
moved into place only when all of them are written: a failure, an interrupt
or SIGTERM leaves the destination as it was.  The process that made a
temporary directory holds an exclusive ``flock`` on it while it lives, so
that a run killed with SIGKILL (which can remove nothing) leaves a directory
whose lock the kernel has released: the next :func:`atomic_directory` of the
same destination removes it, and never one whose owner still runs.
"""
from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import logging
import os
import re
import secrets
import shutil
from typing import Iterator, Union

import numpy as np

__all__ = ["WriteError", "AtomicFiles", "atomic_directory", "atomic_files", "atomic_path",
           "destinations_named",
           "save_npz_atomic", "write_text_atomic", "remove_stale_temporaries",
           "remove_stale_directories"]

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: Temporary files this process made (:func:`atomic_path`, :meth:`AtomicFiles.save_npz`;
#: :func:`_new_temporary`) and has not yet renamed or removed.  A signal can land between
#: any two steps of a clean-up (a ``with`` statement's exit is not atomic): whatever is
#: still listed when the interpreter exits (SIGTERM and Ctrl-C included, unlike SIGKILL)
#: is removed then.
_PENDING: set = set()


@atexit.register
def _remove_pending() -> None:
    for tmp in list(_PENDING):
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        _PENDING.discard(tmp)

#: The errors of a write that the file system refused for want of room or rights.
_WRITE_ERRNOS = frozenset(getattr(errno, name) for name in
                          ("ENOSPC", "EFBIG", "EDQUOT", "EIO", "EROFS") if hasattr(errno, name))


class WriteError(OSError):
    """Writing an output failed (a full disk, a file size limit): names the destination.

    ``str(exc)`` is ``"cannot write <path>: <reason>"``; :attr:`filename`
    is the destination (not the temporary file the data went to first).
    """

    def __str__(self):
        return f"cannot write {self.filename}: {self.strerror}"


_TEMPORARY = re.compile(r"(?<![^/\s'\"(])\.([^/\s]+?)\.[0-9a-f]{12}\.tmp(?=/|\b)")


def destinations_named(text: str) -> str:
    """``text`` with each temporary name of :func:`atomic_path` or :func:`atomic_directory`
    (``.<name>.<12 hex>.tmp``) replaced by its destination's name ``<name>``.

    A write that fails on an engine names the file it was writing, inside
    the temporary directory of its step; a user knows the destination.
    """
    return _TEMPORARY.sub(r"\1", text)


def _write_error(exc: OSError, path: str) -> OSError:
    """``exc`` naming ``path`` if it is a write the file system refused; else ``exc``."""
    if isinstance(exc, WriteError) or exc.errno not in _WRITE_ERRNOS:
        return exc
    return WriteError(exc.errno, exc.strerror or os.strerror(exc.errno), path)


def _new_temporary(path: str) -> tuple[str, int]:
    """Make the temporary file ``<dir>/.<name>.<hex>.tmp`` of the absolute ``path``.

    Created exclusively (never shared; another name is drawn when one exists)
    and listed in ``_PENDING`` from before it exists, so that an interrupt at
    any point leaves it listed.  Returns its path and a descriptor open for
    writing.
    """
    directory, base = os.path.split(path)
    while True:
        tmp = os.path.join(directory, f".{base}.{secrets.token_hex(6)}.tmp")
        _PENDING.add(tmp)
        try:
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            _PENDING.discard(tmp)
        except OSError:  # not made
            _PENDING.discard(tmp)
            raise


def _fsync(path: str, flags: int = os.O_RDONLY) -> None:
    """Open ``path`` with ``flags`` (``os.O_DIRECTORY`` added for a directory), ``fsync``
    it, close it."""
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[str]:
    """Yield a fresh empty temporary file next to ``path``; move it over ``path`` on success.

    Parameters
    ----------
    path : str or os.PathLike
        Destination file; replaced if it exists.  Its directory must exist.

    Yields
    ------
    str
        Absolute path of the temporary file ``<dir>/.<name>.<hex>.tmp``,
        created empty (exclusively, so it is never shared).  Write to it by
        name; when the ``with`` block ends normally it is synced to disk and
        renamed to ``path``.

    Raises
    ------
    WriteError
        When the file system refuses the write (no space left, a file size
        limit, a quota, a read-only file system): ``"cannot write <path>:
        <reason>"``, naming ``path``.

    Notes
    -----
    On any exception (including ``KeyboardInterrupt``) the temporary file is
    removed, the exception propagates and ``path`` is untouched.
    """
    path = os.fspath(path)
    tmp, fd = _new_temporary(os.path.abspath(path))
    try:
        os.close(fd)
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
        _PENDING.discard(tmp)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        _PENDING.discard(tmp)
        if isinstance(exc, OSError):
            error = _write_error(exc, path)
            if error is not exc:
                raise error from None
        raise


def _remove_tree(path: str) -> None:
    """Remove a temporary directory; files an engine still adds are retried, then left."""
    for _ in range(3):
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.lexists(path):
            return


def _move_into(tmp: str, path: str) -> None:
    """Move everything under ``tmp`` into the directory ``path`` (renames only); remove ``tmp``."""
    for dirpath, _, filenames in os.walk(tmp):
        dest = os.path.normpath(os.path.join(path, os.path.relpath(dirpath, tmp)))
        os.makedirs(dest, exist_ok=True)
        for name in filenames:
            os.replace(os.path.join(dirpath, name), os.path.join(dest, name))
    _remove_tree(tmp)


def _try_lock(fd: int) -> bool | None:
    """Take an exclusive ``flock`` on ``fd`` without waiting: True if taken, False if another
    open file holds it, None if the file system has no locks (nothing can be told)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return None
    return True


def _locked_directory(where: str, base: str) -> tuple[str, int | None]:
    """Make ``<where>/.<base>.<hex>.tmp``, locked (``flock``) by an open descriptor.

    The directory is made and locked under another name (``.new``) and only
    then renamed to its ``.tmp`` name, so that no unlocked ``.tmp`` directory
    of a live process is ever seen by :func:`remove_stale_directories`.
    Returns the path and the descriptor (None where the file system has no
    locks); closing the descriptor releases the lock.
    """
    while True:
        stem = os.path.join(where, f".{base}.{secrets.token_hex(6)}")
        try:
            os.mkdir(stem + ".new")
        except FileExistsError:
            continue
        break
    try:
        fd = os.open(stem + ".new", os.O_RDONLY | os.O_DIRECTORY)
        if not _try_lock(fd):
            os.close(fd)
            fd = None
        os.rename(stem + ".new", stem + ".tmp")
    except BaseException:
        _remove_tree(stem + ".new")
        raise
    return stem + ".tmp", fd


def remove_stale_directories(path: PathLike) -> int:
    """Remove the temporary directories that killed runs of :func:`atomic_directory` left.

    Only those of ``path``, and only those whose owner process is gone.

    Parameters
    ----------
    path : str or os.PathLike
        Destination directory.  Its temporary directories
        ``.<name>.<12 hex>.tmp`` are looked for next to it and inside it.

    Returns
    -------
    int
        Number of directories removed.

    Notes
    -----
    Only directories whose ``flock`` can be taken are removed: the process
    that made one holds the lock until it is done, and the kernel releases
    it when that process dies (SIGKILL included).  A temporary directory of
    a step still running in another process is therefore never touched, nor
    is anything on a file system without locks.
    """
    path = os.path.abspath(os.fspath(path))
    parent, base = os.path.split(path)
    removed = 0
    for where in (parent, path):
        try:
            names = os.listdir(where)
        except OSError:
            continue
        for name in names:
            if not (name.startswith(f".{base}.") and name.endswith(".tmp")
                    and len(name) == len(base) + 18
                    and all(c in "0123456789abcdef" for c in name[-16:-4])):
                continue
            stale = os.path.join(where, name)
            try:
                fd = os.open(stale, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            except OSError:
                continue
            try:
                if _try_lock(fd) and os.path.samestat(os.fstat(fd), os.lstat(stale)):
                    _remove_tree(stale)
                    logger.info("removed %s, the temporary directory of an interrupted run",
                                stale)
                    removed += 1
            except OSError:
                pass
            finally:
                os.close(fd)
    return removed


@contextlib.contextmanager
def atomic_directory(path: PathLike) -> Iterator[str]:
    """Yield a fresh temporary directory; move its files into ``path`` when the block succeeds.

    Parameters
    ----------
    path : str or os.PathLike
        Destination directory; made (with its parents) if it does not exist.

    Yields
    ------
    str
        Absolute path of an empty temporary directory on the file system of
        ``path``: ``<parent>/.<name>.<hex>.tmp`` next to a ``path`` that does
        not exist yet, ``<path>/.<name>.<hex>.tmp`` inside one that does
        (hidden, so that readers of ``path`` do not see it).  Write the files
        there (subdirectories are kept).

    Notes
    -----
    When the ``with`` block ends normally, a new ``path`` is the temporary
    directory, renamed in one step.  Into an existing directory the files
    are moved one by one with ``os.replace`` (files of the same name
    replaced, others kept; a symbolic link to the directory stays one):
    renames only, which read no data and need no space, done after all the
    work has succeeded.  On any exception (including ``KeyboardInterrupt``
    and the exception the ``ipem`` command turns SIGTERM into) the temporary
    directory is removed with everything in it, and ``path`` is as it was.
    The calling process holds an exclusive ``flock`` on the temporary
    directory until the block ends; temporary directories of ``path`` whose
    lock nobody holds (their process was killed) are removed first
    (:func:`remove_stale_directories`).
    """
    path = os.path.abspath(os.fspath(path))
    parent, base = os.path.split(path)
    exists = os.path.isdir(path)
    if not exists:
        os.makedirs(parent, exist_ok=True)
    remove_stale_directories(path)
    tmp, lock = _locked_directory(path if exists else parent, base)
    try:
        yield tmp
        if exists:
            _move_into(tmp, path)
        else:
            os.rename(tmp, path)     # fails (and cleans up) if path appeared meanwhile
    except BaseException:
        _remove_tree(tmp)
        raise
    finally:
        if lock is not None:
            os.close(lock)           # releases the flock


def save_npz_atomic(path: PathLike, **arrays) -> str:
    """Write an uncompressed ``.npz`` file atomically (temporary file, then rename).

    Parameters
    ----------
    path : str or os.PathLike
        Destination, used as given (no ``.npz`` is appended).
    **arrays : array_like
        Arrays to store, by name, as for :func:`numpy.savez`.  Object arrays
        should be avoided: ipem reads these files with ``allow_pickle=False``.

    Returns
    -------
    str
        ``path``.
    """
    path = os.fspath(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:  # a file object stops np.savez appending ".npz"
            np.savez(fh, **arrays)
    return path


def _writeback_starter():
    """``sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE)`` where libc has it (Linux), else
    None."""
    try:
        import ctypes
        func = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    func.restype = ctypes.c_int
    return lambda fd: func(fd, 0, 0, 2)     # start writing the dirty pages; do not wait


_start_writeback = _writeback_starter()


class AtomicFiles:
    """Files written to temporaries now, synced to disk and renamed into place together.

    Made by :func:`atomic_files`.  Each file gets the guarantee of
    :func:`atomic_path` (complete on disk before it appears under its name),
    at the cost of one wait for the disk per batch instead of one per file:
    each temporary's writeback starts as soon as it is written
    (``sync_file_range``, where the system has it) and a background thread
    ``fsync``-s it through the descriptor it was written with while the
    caller computes the next file, so that the end of the batch waits for
    the last file's sync only.
    """

    def __init__(self):
        self._moves = []                    # (temporary, destination)
        self._fds = []                      # descriptors of the temporaries, open until the end
        self._syncs = []                    # the fsync of each temporary (Future)
        self._syncer = None                 # the background thread (ThreadPoolExecutor)

    @property
    def paths(self) -> list:
        """The destinations written so far, in order (list of str)."""
        return [dest for _, dest in self._moves]

    def save_npz(self, path: PathLike, **arrays) -> str:
        """Write an uncompressed ``.npz`` file to a temporary next to ``path``, renamed to
        ``path`` when the batch ends.

        Parameters
        ----------
        path : str or os.PathLike
            Destination, used as given (no ``.npz`` is appended); replaced if it
            exists.  Its directory must exist.
        **arrays : array_like
            Arrays to store, by name, as for :func:`numpy.savez` (the bytes of
            :func:`save_npz_atomic`).

        Returns
        -------
        str
            ``path``, made absolute.

        Raises
        ------
        WriteError
            When the file system refuses the write: ``"cannot write <path>:
            <reason>"``, naming ``path``.
        """
        path = os.path.abspath(os.fspath(path))
        tmp, fd = _new_temporary(path)
        self._moves.append((tmp, path))
        self._fds.append(fd)
        try:
            # a file object stops np.savez appending ".npz"; the descriptor stays open
            # for the fsync
            with open(fd, "wb", closefd=False) as fh:
                np.savez(fh, **arrays)
            if _start_writeback is not None:
                _start_writeback(fd)
        except OSError as exc:
            raise _write_error(exc, path) from None
        if self._syncer is None:
            from concurrent.futures import ThreadPoolExecutor
            self._syncer = ThreadPoolExecutor(1, thread_name_prefix="ipem-fsync")
        self._syncs.append(self._syncer.submit(os.fsync, fd))
        return path

    def _wait(self) -> list:
        """Wait for the background fsyncs and close the descriptors; their exceptions
        (None where one succeeded)."""
        errors = []
        try:
            for future in self._syncs:
                try:
                    future.result()
                    errors.append(None)
                except OSError as exc:
                    errors.append(exc)
        finally:
            if self._syncer is not None:
                self._syncer.shutdown(wait=True)
                self._syncer = None
            self._syncs = []
            for fd in self._fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._fds = []
        return errors

    def _commit(self) -> None:
        errors = self._wait()               # every file complete on disk ...
        for (_, dest), exc in zip(self._moves, errors):
            if exc is not None:
                raise _write_error(exc, dest) from None
        for tmp, dest in self._moves:       # ... before any is renamed
            try:
                os.replace(tmp, dest)
            except OSError as exc:
                raise _write_error(exc, dest) from None
            _PENDING.discard(tmp)
        for directory in dict.fromkeys(os.path.dirname(dest) for _, dest in self._moves):
            with contextlib.suppress(OSError):   # the renames themselves, once per directory
                _fsync(directory, os.O_RDONLY | os.O_DIRECTORY)

    def _discard(self) -> None:
        self._wait()
        for tmp, _ in self._moves:
            if tmp in _PENDING:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                _PENDING.discard(tmp)


@contextlib.contextmanager
def atomic_files() -> Iterator[AtomicFiles]:
    """Yield an :class:`AtomicFiles`; its files are synced and renamed into place when the
    block succeeds.

    Yields
    ------
    AtomicFiles
        Write with its ``save_npz(path, **arrays)``.

    Notes
    -----
    When the block ends normally every temporary is ``fsync``-ed, then all
    are renamed over their destinations, then each destination directory is
    ``fsync``-ed once.  On any exception (including ``KeyboardInterrupt``)
    the temporaries not yet renamed are removed and the exception
    propagates.  Each file is all-or-nothing as with :func:`atomic_path`;
    the batch as a whole is not (a failure among the renames leaves the
    files renamed before it): put the batch in an :func:`atomic_directory`
    for that.
    """
    batch = AtomicFiles()
    try:
        yield batch
        batch._commit()
    except BaseException:
        batch._discard()
        raise


def write_text_atomic(path: PathLike, text: str, encoding: str = "utf-8") -> str:
    """Write a text file atomically (temporary file, then rename).

    Parameters
    ----------
    path : str or os.PathLike
        Destination file; replaced if it exists.
    text : str
        The whole content, written as is (no newline is added).
    encoding : str, optional
        Text encoding (default UTF-8).

    Returns
    -------
    str
        ``path``.
    """
    path = os.fspath(path)
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding=encoding) as fh:
            fh.write(text)
    return path


def remove_stale_temporaries(paths) -> int:
    """Remove temporary files that :func:`atomic_path` left next to ``paths``.

    A process killed while writing (an engine lost mid-task, a job stopped
    with SIGKILL) cannot remove its ``.<name>.<hex>.tmp`` file; whoever
    writes the destinations again calls this afterwards.

    Parameters
    ----------
    paths : str, os.PathLike or iterable of them
        Destination files whose orphaned temporaries are removed (each
        directory is listed once).

    Returns
    -------
    int
        Number of files removed.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    by_dir = {}
    for path in paths:
        directory, base = os.path.split(os.path.abspath(os.fspath(path)))
        by_dir.setdefault(directory, set()).add(base)
    removed = 0
    for directory, bases in by_dir.items():
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        for name in names:
            # .<base>.<12 hex>.tmp
            if not (name.startswith(".") and name.endswith(".tmp") and len(name) > 18):
                continue
            base, token = name[1:-17], name[-16:-4]
            if (base in bases and name[-17] == "."
                    and all(c in "0123456789abcdef" for c in token)):
                stale = os.path.join(directory, name)
                with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                    os.remove(stale)
                    removed += 1
    return removed
