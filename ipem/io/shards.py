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

from ..parallel.scheduling import assign_balanced
from .features import load_many, validate_all

__all__ = ["distribute_files", "read_feature_shard"]


def distribute_files(controller, refs, *, dtype=np.float32, key=None):
    """Let each shard of ``controller`` read its own feature files, balanced by frame count.

    Parameters
    ----------
    controller : Controller
    refs : list of FeatureRef
        From :func:`ipem.io.list_features`; headers already read.
    dtype : {numpy.float32, numpy.float64}
    key : str, optional
        Name of the dataset in the shard store; generated if omitted.

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
    if getattr(controller, "block_size", None) is not None:
        files, assignments, sizes = _block_assignments(controller, refs, dtype)
    else:
        files = [[refs[i] for i in idx] for idx in assign_balanced(refs, controller.n_shards)]
        sizes = np.array([sum(r.n_frames for r in fs) for fs in files], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        assignments = [(fs, int(offsets[i]), np.dtype(dtype).str, n_features)
                       for i, fs in enumerate(files)]
    return controller.distribute_loaded(read_feature_shard, assignments, sizes, n_features,
                                        dtype=dtype, files=files,
                                        key=key or f"f{uuid.uuid4().hex[:8]}")


def _block_assignments(controller, refs, dtype):
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
    sizes = controller.split_sizes(int(starts[-1]))
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


def read_feature_shard(files, offset, dtype, n_features, skip=0, n_rows=None):
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

    Returns
    -------
    X : ndarray of shape (n_frames, n_features)
    offset : int
    sources : list of str
    """
    X = (load_many(files, dtype=np.dtype(dtype)) if files
         else np.zeros((0, n_features), dtype))
    if skip or (n_rows is not None and n_rows != X.shape[0]):
        X = X[skip:skip + (X.shape[0] if n_rows is None else n_rows)].copy()
    return X, offset, [f.path if f.key is None else f"{f.path}:{f.key}" for f in files]
