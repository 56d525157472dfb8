"""I-vector extraction for enrollment and test utterances, one task per utterance.

Like MAP adaptation and scoring (:mod:`ipem.speaker.map`,
:mod:`ipem.speaker.scoring`), the extractor (T and its UBM) goes to every
engine once (:meth:`ipem.Controller.broadcast`) and every task reads its own
utterance's feature files, computes its Baum-Welch statistics
(:func:`ipem.ivector.stats.baum_welch`) and its i-vector
(:func:`ipem.ivector.posterior.posteriors`); only the R numbers come back.
A speaker given several files gets one i-vector from their pooled statistics.
"""
from __future__ import annotations

import logging
import os

import numpy as np

from ..io.atomic import save_npz_atomic
from ..io.models import history_from, invalid_model_file, read_npz, text_scalar
from ..kernels import check_approximation, get_kernels
from ..mixture.params import GMMParams, ubm_params
from ..parallel import Shard, as_controller
from ..io.sources import load_source, resolve_source
from . import posterior
from .stats import baum_welch, stats_rows

logger = logging.getLogger(__name__)

__all__ = ["extract_ivectors", "save_ivectors", "load_ivectors"]

_KIND = "ipem-ivectors"
#: the extractor file (:meth:`ipem.TotalVariability.save`, :func:`read_extractor`)
EXTRACTOR_KIND = "ipem-ivector-extractor"
FORMAT_VERSION = 1


def _extract_task(item, model, top_c, min_post, backend, dtype):
    """One utterance (or speaker): read, statistics, i-vector (R,)."""
    utt, source = item
    ubm = GMMParams(model["weights"], model["means"], model["covariances"])
    X = load_source(source, dtype=dtype, n_features=ubm.n_features, what=f"utterance {utt}")
    n, f = baum_welch(X, ubm, top_c=top_c, min_post=min_post, backend=backend)
    rows = stats_rows(n[None], f[None])
    return posterior.ivectors(Shard(X=rows, index=0, offset=0), model["T"],
                              1.0 / model["covariances"])[0]


def extract_ivectors(extractor, utterances, *, controller=None, top_c=None, min_post=None,
                     backend=None, dtype=np.float32, progress=True):
    """I-vectors of utterances (or speakers), task-parallel over a controller.

    Parameters
    ----------
    extractor : TotalVariability or path
        A fitted :class:`ipem.TotalVariability` (anything with its
        ``extractor()``, ``top_c`` and ``min_post``) or a file written by its
        ``save`` (:func:`read_extractor`; approximate statistics off unless
        asked for).
    utterances : dict
        ``id -> source`` (a feature file, a list of them, FeatureRefs, or an
        array of frames); several files of one id are pooled.
    controller : Controller, int, DirectView or None
    top_c, min_post : optional
        Approximate statistics; default: the extractor's settings.
    backend : {"c", "numpy"} or None
    dtype : {numpy.float32, numpy.float64}
        Dtype frames are read in.
    progress : bool, default=True

    Returns
    -------
    dict
        ``id -> ndarray of shape (R,)``, in the order of ``utterances``.
    """
    if isinstance(extractor, (str, os.PathLike)):
        model, _ = read_extractor(extractor)
        tv = None
    else:
        model, tv = extractor.extractor(), extractor
    if top_c is None:
        top_c = getattr(tv, "top_c", None)
    if min_post is None:
        min_post = getattr(tv, "min_post", 0.0) or 0.0
    top_c, min_post = check_approximation(top_c, min_post, model["weights"].size)
    get_kernels(backend)
    if not isinstance(utterances, dict) or not utterances:
        raise ValueError("utterances must be a non-empty dict id -> feature files or frames")
    items = [(utt, resolve_source(src, f"utterance {utt}")) for utt, src in utterances.items()]
    ctrl = as_controller(controller)
    logger.debug("extracting %d i-vectors on %s", len(items), ctrl)
    with ctrl.broadcast(model) as shared:
        out = ctrl.map_tasks(_extract_task, items, shared, top_c or None, min_post, backend,
                             np.dtype(dtype).str, progress=progress, desc="i-vectors")
    return {utt: vec for (utt, _), vec in zip(items, out)}


def save_ivectors(path, ivectors):
    """Write ``{id: vector}`` atomically to ``.npz`` (ids and a matrix; no pickle)."""
    ids = list(ivectors)
    if not ids:
        raise ValueError("no i-vectors to save")
    mat = np.stack([np.asarray(ivectors[i], dtype=np.float64) for i in ids])
    return save_npz_atomic(path, kind=np.array(_KIND), ids=np.array([str(i) for i in ids]),
                           ivectors=mat)


def load_ivectors(path):
    """Read a file of :func:`save_ivectors`: ``{id: ndarray of shape (R,)}``."""
    path = os.fspath(path)
    z = read_npz(path, {"ids": 1 << 28, "ivectors": 1 << 32, "provenance_json": 1 << 26})
    if text_scalar(z, "kind", path, default="") != _KIND or "ids" not in z or \
            "ivectors" not in z:
        raise ValueError(f"{path}: not an ipem i-vector file")
    ids, mat = z["ids"], z["ivectors"]
    if ids.ndim != 1 or ids.dtype.kind != "U" or mat.ndim != 2 or \
            mat.shape[0] != ids.size or mat.dtype.kind != "f" or not np.all(np.isfinite(mat)):
        raise invalid_model_file(path, "ids and ivectors do not match or are not finite")
    return {str(i): mat[n].astype(np.float64) for n, i in enumerate(ids)}


# ---------------------------------------------------------------------------
# extractor files (written by TotalVariability.save)
# ---------------------------------------------------------------------------

def read_extractor(path):
    """The model of an extractor file, nothing in it trusted.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by :meth:`ipem.TotalVariability.save`.

    Returns
    -------
    model : dict
        ``T`` of shape (K, D, R) and the UBM's ``weights`` (K,), ``means``
        and ``covariances`` (K, D), float64 (what
        :meth:`ipem.TotalVariability.extractor` returns).
    history : list of IterationRecord

    Raises
    ------
    ValueError
        For a file that is not a valid extractor.
    """
    path = os.fspath(path)
    z = read_npz(path, file_limits())
    for key in ("T", "weights", "means", "covariances"):
        if key not in z:
            raise ValueError(f"{path}: not an ipem i-vector extractor (no {key!r})")
    if text_scalar(z, "kind", path, default="") != EXTRACTOR_KIND:
        raise invalid_model_file(path, f"not an i-vector extractor (kind {EXTRACTOR_KIND!r} "
                                 "missing)")
    w, m, v = ubm_params((z["weights"], z["means"], z["covariances"]))
    T = check_T(z["T"], m.shape, path)
    return {"T": T, "weights": w, "means": m, "covariances": v}, history_from(z, path)


def file_limits(n_features=None):
    """Size limits of the arrays of extractor files and checkpoints (:func:`read_npz`)."""
    big = 1 << 33
    return {"T": big, "weights": big, "means": big, "covariances": big,
            "data_mean": big if n_features is None else 8 * int(n_features),
            "rng_keys": 624 * 8, "history_json": 1 << 26, "settings_json": 1 << 16,
            "identity_json": 1 << 16, "provenance_json": 1 << 26}


def check_T(T, ubm_shape, path):
    """``T`` of a file, checked: finite floats of shape (K, D, R); float64."""
    k, d = ubm_shape
    if T.ndim != 3 or T.shape[:2] != (k, d) or T.shape[2] < 1 or T.dtype.kind != "f" or \
            not np.all(np.isfinite(T)):
        raise invalid_model_file(path, f"T must be a finite float array of shape ({k}, {d}, R),"
                                 f" got {T.shape} {T.dtype}")
    return np.asarray(T, dtype=np.float64)
