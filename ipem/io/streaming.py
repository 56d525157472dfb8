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
"""
from __future__ import annotations

import re

import numpy as np

from .features import load

__all__ = ["StreamedRows", "parse_size"]

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


class StreamedRows:
    """Rows ``skip:skip + n_rows`` of the concatenated frames of some feature files.

    Parameters
    ----------
    files : list of FeatureRef
    skip, n_rows : int
    dtype : numpy dtype
    n_resident : int
        How many of the first rows to read now and keep in memory.

    Attributes
    ----------
    resident : ndarray of shape (n_resident, n_features)
    shape : tuple (n_rows, n_features)
    dtype : numpy.dtype
    """

    def __init__(self, files, skip, n_rows, dtype, n_resident):
        self.files = list(files)
        self.dtype = np.dtype(dtype)
        self.skip, self.n_rows = int(skip), int(n_rows)
        self.shape = (self.n_rows, self.files[0].n_features)
        self._starts = np.concatenate([[0], np.cumsum([f.n_frames for f in self.files])])
        self.resident = self.rows(0, min(int(n_resident), self.n_rows))

    def rows(self, a, b):
        """Rows ``a:b`` (of this place), read from the files now, one file at a time into
        the output (peak memory: the output and one file).

        Returns
        -------
        ndarray of shape (b - a, n_features)
        """
        lo, hi = self.skip + int(a), self.skip + int(b)
        if hi <= lo:
            return np.zeros((0, self.shape[1]), self.dtype)
        first = int(np.searchsorted(self._starts, lo, side="right")) - 1
        last = int(np.searchsorted(self._starts, hi, side="left"))
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
