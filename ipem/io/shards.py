"""Feature files read where the shards live: a controller's dataset made of files.

:func:`distribute_files` balances feature files over a controller's shards by
frame count and lets each shard read its own files (:func:`read_feature_shard`,
the loader engines import by reference).  The controller keeps the recipe, so
the files of a lost engine are read again elsewhere
(:meth:`ipem.parallel.controller.Controller.distribute_loaded`).
"""
from __future__ import annotations

import uuid

import numpy as np

from ..parallel.data import rows_per_block
from ..parallel.scheduling import assign_balanced
from .features import load_many, validate_all
from .streaming import StreamedRows, place_rows, resident_rows

__all__ = ["distribute_files", "read_feature_shard"]


#: rows per block when ``engine_memory`` is given to a controller without ``block_size``
STREAM_BLOCK = 4096


def distribute_files(controller, refs, *, dtype=np.float32, key=None, engine_memory=None,
                     working_memory=0):
    """Let each shard of ``controller`` read its own feature files, balanced by frame count.

    Parameters
    ----------
    controller : Controller
    refs : list of FeatureRef
        From :func:`ipem.io.list_features`; headers already read.
    dtype : {numpy.float32, numpy.float64}
    key : str, optional
        Name of the dataset in the shard store; generated if omitted.
    engine_memory : int or str, optional
        Memory of each engine process (``"1G"``, ``"512M"``, or an int; the
        places of a LocalController share the client's process: there it
        bounds each place's frames).  What the engine already uses, the
        computation's ``working_memory``, one file being decoded and some
        slack come off (:func:`~ipem.io.streaming.resident_rows`); of the
        rest, the first blocks that fit (less room for the block being
        computed and the one read ahead) are read once and kept, the others
        are read from their files block by block every time they are used,
        the next one by a thread while the current one is computed
        (:mod:`ipem.io.streaming`).  Needs blocks: the controller's
        ``block_size``, else blocks of :data:`STREAM_BLOCK` rows for this
        dataset; the model is the bits of an in-memory run with the same
        blocks.

    Returns
    -------
    DistributedData
        ``files[i]`` lists the files shard ``i`` read; the assignment is
        kept on the client, so that the files of a lost engine can be read
        again elsewhere.
    """
    refs = list(refs)
    if not refs:
        raise ValueError("distribute_files: no feature files given")
    validate_all(refs)
    n_features = refs[0].n_features
    block_size = rows_per_block(controller, sum(r.n_frames for r in refs))
    if engine_memory is not None:
        block_size = block_size or STREAM_BLOCK
        resident_rows(engine_memory, block_size, n_features * np.dtype(dtype).itemsize)
        budget = (engine_memory, block_size, int(working_memory),
                  not getattr(controller, "places_in_client", False))
    if block_size is not None:
        files, assignments, sizes = _block_assignments(controller, refs, dtype, block_size)
        if engine_memory is not None:
            assignments = [a + (budget,) for a in assignments]
    else:
        files = [[refs[i] for i in idx] for idx in assign_balanced(refs, controller.n_shards)]
        sizes = np.array([sum(r.n_frames for r in fs) for fs in files], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        assignments = [(fs, int(offsets[i]), np.dtype(dtype).str, n_features)
                       for i, fs in enumerate(files)]
    return controller.distribute_loaded(read_feature_shard, assignments, sizes, n_features,
                                        dtype=dtype, files=files, block_size=block_size,
                                        key=key or f"f{uuid.uuid4().hex[:8]}")


def _block_assignments(controller, refs, dtype, block_size):
    """Files in list order, each place a run of whole blocks (``controller.block_size``).

    A place whose first or last block starts or ends inside a file reads that
    file and keeps only its part of the frames.

    Returns
    -------
    files : list of list of FeatureRef
    assignments : list of tuple (loader arguments)
    sizes : ndarray of shape (n_shards,)
    """
    frames = np.array([r.n_frames for r in refs], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(frames)])
    sizes = controller.split_sizes(int(starts[-1]), block_size)
    cuts = np.concatenate([[0], np.cumsum(sizes)])
    files, assignments = [], []
    for a, b in zip(cuts[:-1], cuts[1:]):
        first = int(np.searchsorted(starts, a, side="right")) - 1
        last = int(np.searchsorted(starts, b, side="left"))
        fs = refs[first:last] if b > a else []
        skip = int(a - starts[first]) if fs else 0
        files.append(fs)
        assignments.append((fs, int(a), np.dtype(dtype).str, refs[0].n_features, skip,
                            int(b - a)))
    return files, assignments, sizes


def read_feature_shard(files, offset, dtype, n_features, skip=0, n_rows=None, budget=None):
    """Loader of :func:`distribute_files`: read a shard's feature files.

    Parameters
    ----------
    files : list of FeatureRef
    offset : int
        Global index of the shard's first frame.
    dtype : str
        NumPy dtype string of the frames.
    n_features : int
    skip, n_rows : int, optional
        Keep rows ``skip:skip + n_rows`` of the files' frames (a place whose
        blocks start or end inside a file); all rows by default.
    budget : tuple, optional
        ``(engine_memory, block_size, working_memory, whole_process)``: keep
        only the first rows that fit in memory (worked out here, where the
        process's own use is known: :func:`~ipem.io.streaming.resident_rows`)
        and read the others when they are used: ``X`` is then a
        :class:`~ipem.io.streaming.StreamedRows`, read one block ahead by a
        thread when there is room.

    Returns
    -------
    X : ndarray of shape (n_frames, n_features)
    offset : int
    sources : list of str
    """
    sources = [f.path if f.key is None else f"{f.path}:{f.key}" for f in files]
    n = sum(f.n_frames for f in files) - skip if n_rows is None else n_rows
    if files and budget is not None:
        row_bytes = n_features * np.dtype(dtype).itemsize
        decoding = 2 * max(f.n_frames for f in files) * row_bytes   # a file read whole
        engine_memory, block_size, working, whole_process = budget
        n_resident, read_ahead = place_rows(
            (engine_memory, block_size, working + decoding, whole_process), row_bytes)
        return (StreamedRows(files, skip, n, np.dtype(dtype), n_resident, read_ahead), offset,
                sources)
    if files and (skip or n != sum(f.n_frames for f in files)):  # parts of the end files
        X = StreamedRows(files, skip, n, np.dtype(dtype), n).resident
    else:
        X = (load_many(files, dtype=np.dtype(dtype)) if files
             else np.zeros((0, n_features), dtype))
    return X, offset, sources
