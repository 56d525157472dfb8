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
from ..io.models import read_npz, text_scalar, invalid_model_file
from ..kernels import check_approximation, get_kernels
from ..parallel import Shard, as_controller
from ..speaker.sources import load_source, resolve_source
from . import posterior
from .stats import baum_welch, stats_rows

logger = logging.getLogger(__name__)

__all__ = ["extract_ivectors", "save_ivectors", "load_ivectors"]

_KIND = "ipem-ivectors"


def _extract_task(item, model, top_c, min_post, backend, dtype):
    """One utterance (or speaker): read, statistics, i-vector (R,)."""
    utt, source = item
    ubm = (model["weights"], model["means"], model["covariances"])
    X = load_source(source, dtype=dtype, n_features=ubm[1].shape[1], what=f"utterance {utt}")
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
        A fitted :class:`ipem.TotalVariability` or a file written by its ``save``.
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
    from .total_variability import TotalVariability

    tv = TotalVariability.load(extractor) if isinstance(extractor, (str, os.PathLike)) \
        else extractor
    model = tv.extractor()
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
    z = read_npz(path, {"ids": 1 << 28, "ivectors": 1 << 32})
    if text_scalar(z, "kind", path, default="") != _KIND or "ids" not in z or \
            "ivectors" not in z:
        raise ValueError(f"{path}: not an ipem i-vector file")
    ids, mat = z["ids"], z["ivectors"]
    if ids.ndim != 1 or ids.dtype.kind != "U" or mat.ndim != 2 or \
            mat.shape[0] != ids.size or mat.dtype.kind != "f" or not np.all(np.isfinite(mat)):
        raise invalid_model_file(path, "ids and ivectors do not match or are not finite")
    return {str(i): mat[n].astype(np.float64) for n, i in enumerate(ids)}
