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
    files = [[refs[i] for i in idx] for idx in assign_balanced(refs, controller.n_shards)]
    sizes = np.array([sum(r.n_frames for r in fs) for fs in files], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    n_features = refs[0].n_features
    assignments = [(fs, int(offsets[i]), np.dtype(dtype).str, n_features)
                   for i, fs in enumerate(files)]
    return controller.distribute_loaded(read_feature_shard, assignments, sizes, n_features,
                                        dtype=dtype, files=files,
                                        key=key or f"f{uuid.uuid4().hex[:8]}")


def read_feature_shard(files, offset, dtype, n_features):
    """Loader of :func:`distribute_files`: read a shard's feature files.

    Parameters
    ----------
    files : list of FeatureRef
    offset : int
        Global index of the shard's first frame.
    dtype : str
        NumPy dtype string of the frames.
    n_features : int

    Returns
    -------
    X : ndarray of shape (n_frames, n_features)
    offset : int
    sources : list of str
    """
    X = (load_many(files, dtype=np.dtype(dtype)) if files
         else np.zeros((0, n_features), dtype))
    return X, offset, [f.path if f.key is None else f"{f.path}:{f.key}" for f in files]
