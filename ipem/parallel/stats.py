"""The algebra of sufficient statistics: elementwise sums and flat MPI buffers.

Shard functions return "statistics": an ndarray, a float, or a tuple, list or
dict of them.  Statistics of different shards add elementwise
(:func:`add_stats`, :func:`sum_stats`); for an MPI ``Allreduce`` they are
packed into one contiguous float64 buffer and unpacked afterwards
(:func:`pack_stats`, :func:`unpack_stats`).
"""
from __future__ import annotations

import numpy as np


def add_stats(a, b):
    """Add two statistics objects of the same structure elementwise."""
    if isinstance(a, dict):
        return {k: add_stats(a[k], b[k]) for k in a}
    if isinstance(a, (tuple, list)):
        return type(a)(add_stats(x, y) for x, y in zip(a, b))
    if a is None:
        return None
    return a + b


def sum_stats(parts):
    """Sum a sequence of statistics in the given order (shard order)."""
    total = None
    for i, p in enumerate(parts):
        total = p if i == 0 else add_stats(total, p)
    return total


def pack_stats(stats):
    """Flatten statistics into one float64 buffer.

    Returns
    -------
    flat : ndarray of shape (n_values,), float64, C-contiguous
    spec : tuple
        The structure, for :func:`unpack_stats`.
    """
    arrays = []

    def spec_of(obj):
        if isinstance(obj, dict):
            return ("dict", [(k, spec_of(v)) for k, v in obj.items()])
        if isinstance(obj, (tuple, list)):
            return (type(obj).__name__, [spec_of(v) for v in obj])
        if obj is None:
            return ("none", None)
        if isinstance(obj, np.ndarray):
            arrays.append(obj.ravel())
            return ("array", obj.shape)
        arrays.append(np.atleast_1d(np.float64(obj)))
        return ("scalar", None)

    spec = spec_of(stats)
    flat = (np.concatenate([np.asarray(a, dtype=np.float64) for a in arrays])
            if arrays else np.zeros(0))
    return np.ascontiguousarray(flat, dtype=np.float64), spec


def unpack_stats(flat, spec):
    """Inverse of :func:`pack_stats`."""
    pos = 0

    def build(sp):
        nonlocal pos
        kind, sub = sp
        if kind == "dict":
            return {k: build(v) for k, v in sub}
        if kind in ("tuple", "list"):
            items = [build(v) for v in sub]
            return tuple(items) if kind == "tuple" else items
        if kind == "none":
            return None
        if kind == "array":
            size = int(np.prod(sub, dtype=np.int64))
            out = flat[pos:pos + size].reshape(sub).copy()
            pos += size
            return out
        out = float(flat[pos])
        pos += 1
        return out

    return build(spec)
