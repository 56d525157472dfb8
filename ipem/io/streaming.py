"""Frames of a place that do not all fit in its memory budget: read block by block.

:func:`ipem.io.distribute_files` with ``engine_memory`` gives each place a
:class:`StreamedRows` instead of an array: the first rows that fit in the
budget are read once and kept (:attr:`StreamedRows.resident`); the others are
read again from their feature files, one block at a time, every time a shard
function runs on that block (:meth:`StreamedRows.rows`; the blocks of
:class:`ipem.parallel.data.BlockGroup`).  Every format that
:func:`ipem.io.load` reads is covered: a file is read whole and the block's
rows cut out of it, so a file longer than a block is read once per block it
overlaps.

Rows that are computed rather than read (the per-utterance Baum-Welch
statistics of :func:`ipem.ivector.distribute_stats`) are kept the same way by
:class:`SpilledRows`: those beyond the budget are written once, as they are
computed, to an unlinked scratch file on the place's own node and read back
block by block.

Both are read through the same blocks (:class:`ipem.parallel.data.RowsToRead`);
when the budget holds two blocks, a thread reads the next block while the
current one is computed (:func:`ipem.parallel.data.block_results`): never more
than one block ahead, and that block is counted in the budget
(:func:`resident_rows`).
"""
from __future__ import annotations

import logging
import os
import re
import tempfile
import weakref

import numpy as np

from ..errors import ParameterError
from .features import load

__all__ = ["StreamedRows", "SpilledRows", "parse_size", "place_rows", "process_memory",
           "resident_rows"]

logger = logging.getLogger(__name__)

_UNITS = {"": 1, "B": 1, "K": 2**10, "KB": 2**10, "KIB": 2**10, "M": 2**20, "MB": 2**20,
          "MIB": 2**20, "G": 2**30, "GB": 2**30, "GIB": 2**30, "T": 2**40, "TB": 2**40,
          "TIB": 2**40}


def parse_size(text):
    """Bytes of a size such as ``"1G"``, ``"512MiB"`` or ``"2000000"`` (binary units).

    Raises
    ------
    ValueError
        Naming the text, for anything else.
    """
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
    unit = m.group(2).upper() if m else None
    if m is None or unit not in _UNITS or float(m.group(1)) <= 0:
        raise ValueError(f"memory size {text!r}: expected a positive number with an optional "
                         "unit K, M, G or T (binary: 1G = 2**30 bytes), e.g. 1G or 512M")
    return int(float(m.group(1)) * _UNITS[unit])


def _ceil_size(n):
    """The smallest whole number of K, M or G bytes that holds ``n`` bytes, as text."""
    for unit, size in (("G", 2**30), ("M", 2**20), ("K", 2**10)):
        if n >= size or unit == "K":
            return f"{-(-n // size)}{unit}"


#: bytes an engine keeps free beyond its rows and the computation's working memory:
#: messages, the Python objects of an iteration, allocator slack
RESERVE = 48 * 2**20


def process_memory():
    """Bytes resident in this process now.

    Returns
    -------
    int
        From ``/proc/self/statm``; where there is none, the peak so far
        (``ru_maxrss``).
    """
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def resident_rows(engine_memory, block_size, row_bytes, working_memory=0,
                  whole_process=False):
    """How a place spends a memory budget on blocks of rows.

    The budget holds the resident blocks, the block being computed and, when
    there is room for it, the block read ahead.  On an engine
    (``whole_process``) it is the engine process's memory: what the process
    already uses (:func:`process_memory`), the computation's working memory
    and :data:`RESERVE` come off first.

    Parameters
    ----------
    engine_memory : int or str
        Bytes (``"1G"``, ``"512M"``, an int).
    block_size : int
        Rows per block.
    row_bytes : int
        Bytes of one row.
    working_memory : int, default=0
        Bytes the computation needs beside the rows (e.g. an E-step's
        per-block arrays); counted only with ``whole_process``.
    whole_process : bool, default=False
        Whether the budget is this process's whole memory (an engine), or
        the rows' alone (the places of a LocalController share the client's
        process, which holds other things).

    Returns
    -------
    n_resident : int
        Rows of the first blocks to keep in memory (a multiple of ``block_size``).
    read_ahead : bool
        Whether the budget leaves room for a block read ahead.

    Raises
    ------
    ParameterError
        About ``engine_memory``, when the budget holds less than one block.
    """
    budget = parse_size(engine_memory)
    per_block = int(block_size) * int(row_bytes)
    in_use = process_memory() + int(working_memory) + RESERVE if whole_process else 0
    if budget - in_use < per_block:
        beyond = (f" beside the {_ceil_size(in_use)} this engine needs without them (Python "
                  f"and its libraries, the computation's working memory, {RESERVE >> 20}M "
                  "of slack)" if whole_process else "")
        raise ParameterError(f"{{name}}={engine_memory!r} holds less than one block of "
                             f"{block_size} rows ({per_block} bytes){beyond}: give at least "
                             f"{_ceil_size(per_block + in_use)}", "engine_memory")
    n_blocks = (budget - in_use) // per_block
    read_ahead = n_blocks >= 2
    return max(0, n_blocks - 1 - int(read_ahead)) * int(block_size), read_ahead


def place_rows(budget, row_bytes):
    """:func:`resident_rows` where a shard is read (a loader's ``budget`` tuple).

    An engine that cannot give even one block beside what it holds now (it
    took over a lost engine's shard after a re-shard, or holds another
    dataset under the same budget) keeps nothing of this shard and reads
    every block when it is used, one at a time, with a warning; the client
    has already refused a budget below one block of data.

    Parameters
    ----------
    budget : tuple
        ``(engine_memory, block_size, working_memory, whole_process)``.
    row_bytes : int

    Returns
    -------
    n_resident : int
    read_ahead : bool
    """
    engine_memory, block_size, working, whole_process = budget
    try:
        return resident_rows(engine_memory, block_size, row_bytes, working, whole_process)
    except ParameterError as exc:
        if not whole_process:
            raise
        logger.warning("%s; every block of this shard is read when it is used", exc)
        return 0, False


class StreamedRows:
    """Rows ``skip:skip + n_rows`` of the concatenated frames of some feature files.

    Parameters
    ----------
    files : list of FeatureRef
    skip, n_rows : int
    dtype : numpy dtype
    n_resident : int
        How many of the first rows to read now and keep in memory.
    read_ahead : bool, default=False
        Whether the other blocks may be read one ahead by a thread (the budget
        has room for it).

    Attributes
    ----------
    resident : ndarray of shape (n_resident, n_features)
    shape : tuple (n_rows, n_features)
    dtype : numpy.dtype
    read_ahead : bool
    """

    def __init__(self, files, skip, n_rows, dtype, n_resident, read_ahead=False):
        self.read_ahead = bool(read_ahead)
        self.files = list(files)
        self.dtype = np.dtype(dtype)
        self.skip, self.n_rows = int(skip), int(n_rows)
        self.shape = (self.n_rows, self.files[0].n_features)
        self._starts = np.concatenate([[0], np.cumsum([f.n_frames for f in self.files])])
        self.resident = self.rows(0, min(int(n_resident), self.n_rows))

    def rows(self, a, b, out=None):
        """Rows ``a:b`` (of this place), read from the files now, one file at a time into
        the output (peak memory: the output and one file).

        Parameters
        ----------
        a, b : int
        out : ndarray of shape (b - a, n_features), optional
            Where to put them (e.g. a buffer the computing thread allocated).

        Returns
        -------
        ndarray of shape (b - a, n_features)
        """
        lo, hi = self.skip + int(a), self.skip + int(b)
        if hi <= lo:
            return np.zeros((0, self.shape[1]), self.dtype)
        first = int(np.searchsorted(self._starts, lo, side="right")) - 1
        last = int(np.searchsorted(self._starts, hi, side="left"))
        if out is None:
            out = np.empty((hi - lo, self.shape[1]), self.dtype)
        pos = 0
        for i, ref in enumerate(self.files[first:last], start=first):
            s, e = max(lo, int(self._starts[i])), min(hi, int(self._starts[i + 1]))
            if e > s:
                X = load(ref, dtype=self.dtype)
                out[pos:pos + e - s] = X[s - int(self._starts[i]):e - int(self._starts[i])]
                pos += e - s
        return out

    @property
    def nbytes(self):
        """Bytes of the resident rows."""
        return self.resident.nbytes

    def __repr__(self):
        return (f"StreamedRows({self.shape[0]} x {self.shape[1]} {self.dtype}, "
                f"{self.resident.shape[0]} resident, {len(self.files)} files)")


def _read_into(fd, buf, at):
    """Bytes read from ``fd`` at offset ``at`` into the memoryview ``buf`` (no copy where
    the system has ``preadv``)."""
    if hasattr(os, "preadv"):
        return os.preadv(fd, [buf], at)
    chunk = os.pread(fd, len(buf), at)
    buf[:len(chunk)] = chunk
    return len(chunk)


class SpilledRows:
    """Rows made once on this place (in order): the first kept, the others on scratch.

    Rows beyond ``n_resident`` go, as they are made (:meth:`put`), to a
    scratch file that is unlinked as soon as it is opened (in the directory
    of :func:`tempfile.gettempdir`: ``TMPDIR`` on the place's node), so it
    disappears with the process however it ends; :meth:`rows` reads them back.
    The bytes read back are the bytes written: the rows' bits are those of an
    in-memory array.

    Parameters
    ----------
    n_rows, n_columns : int
    n_resident : int
    dtype : numpy dtype, default=float64
    read_ahead : bool, default=False
        As for :class:`StreamedRows`.

    Attributes
    ----------
    resident : ndarray of shape (min(n_resident, n_rows), n_columns)
    shape : tuple (n_rows, n_columns)
    dtype : numpy.dtype
    read_ahead : bool
    """

    def __init__(self, n_rows, n_columns, n_resident, dtype=np.float64, read_ahead=False):
        self.shape = (int(n_rows), int(n_columns))
        self.dtype = np.dtype(dtype)
        self.read_ahead = bool(read_ahead)
        self.resident = np.zeros((min(int(n_resident), self.shape[0]), self.shape[1]),
                                 self.dtype)
        self._row_bytes = self.shape[1] * self.dtype.itemsize
        self._fd = None
        if self.shape[0] > self.resident.shape[0]:
            fd, path = tempfile.mkstemp(prefix="ipem-rows-", suffix=".bin")
            os.unlink(path)
            self._fd = fd
            self._closer = weakref.finalize(self, os.close, fd)

    def put(self, i, row):
        """Store row ``i`` (array-like of shape (n_columns,)): in memory or on scratch."""
        n_res = self.resident.shape[0]
        if i < n_res:
            self.resident[i] = row
            return
        data = memoryview(np.ascontiguousarray(row, dtype=self.dtype)).cast("B")
        at, done = (int(i) - n_res) * self._row_bytes, 0
        while done < len(data):
            done += os.pwrite(self._fd, data[done:], at + done)

    def rows(self, a, b, out=None):
        """Rows ``a:b``, those beyond the resident ones read from scratch now.

        Parameters
        ----------
        a, b : int
        out : C-contiguous ndarray of shape (b - a, n_columns), optional
            Where to put them.

        Returns
        -------
        ndarray of shape (b - a, n_columns)
        """
        a, b = int(a), max(int(a), int(b))
        n_res = self.resident.shape[0]
        if out is None:
            out = np.empty((b - a, self.shape[1]), self.dtype)
        k = max(0, min(b, n_res) - a)
        out[:k] = self.resident[a:a + k]
        if b > a + k:
            buf = memoryview(out[k:]).cast("B")
            at, done = (a + k - n_res) * self._row_bytes, 0
            while done < len(buf):
                n = _read_into(self._fd, buf[done:], at + done)
                if n <= 0:
                    raise OSError(f"scratch file of {self!r} ended at byte {at + done}")
                done += n
        return out

    @property
    def nbytes(self):
        """Bytes of the resident rows."""
        return self.resident.nbytes

    def __repr__(self):
        return (f"SpilledRows({self.shape[0]} x {self.shape[1]} {self.dtype}, "
                f"{self.resident.shape[0]} resident)")
