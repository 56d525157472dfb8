"""Linear scoring (Glembek et al. 2009), computed where the test segments' statistics live.

Linear scoring ("Comparison of scoring methods used in speaker recognition
with joint factor analysis") replaces the average log-likelihood ratio by its
first-order expansion around the UBM means::

    score = (1/T) sum_k (m_sk - m_k)^T Sigma_k^-1 (F_k - N_k m_k)

with the zeroth- and first-order statistics ``N_k = sum_t g_tk`` and ``F_k =
sum_t g_tk x_t`` of the test segment under the UBM (posteriors ``g_tk``).
The statistics do not depend on the model (:func:`segment_statistics`, once
per segment), the offsets ``vec(Sigma^-1 (m_s - m))`` do not depend on the
segment (:func:`model_offsets`, once per model), and the scores are the
products of the two (:func:`linear_scores`).

:func:`score_segments` (``score_trials(..., method="linear")``) cuts the test
segments into chunks of 8 to 64 consecutive segments (16 chunks or more, as
the trial list alone decides), one task each.  A
task computes its segments' statistics and multiplies them by the offsets of
the models they are tried against, which it reads where it runs (model files;
offsets of in-memory models are broadcast once); only the scores of its trials
travel back.  Each process keeps the offsets it computed for one UBM at a time
(:func:`_store_rows`, within ``IPEM_MODEL_CACHE_MB``), so a model tried
against many chunks is read and converted once per process, and the last
matrix it gathered from model files (:func:`_gathered`), which the next chunk
tried against the same files uses as it is.

Rounding: a score is one dot product of length ``K*D`` inside a matrix
product.  Every product here has at most 64 columns (segments) and at least
two rows and two columns (padded with zeros, so that the BLAS never switches
to a matrix-vector routine, which sums in another order).  A task's product
is made of fresh matrices whose shape and order the trial list alone decides:
rows are the chunk's distinct models in order of first appearance in the
chunk, columns its segments (a kept matrix is used only for the same files in
the same order).  The offsets a process keeps supply the values of the rows,
never their number or order, so what a process scored before
(load balancing) does not matter, and local and engine runs of the same list
give the same bits.  Another grouping of the trials (a subset of the list,
:func:`linear_scores` of other segments) gives a score's dot product in a
product of another shape, which the BLAS may sum in another order: equal to
rounding (measured with OpenBLAS 0.3.31: at K*D = 30720 bit-equal for 2 to 128
columns; at K*D = 18 to 240 with 2 or 3 columns, a row's score in products of
2 and of 4 or more rows differs in the last bit).

The per-process model cache of the scoring tasks (:func:`cached_model`) lives
here too.
"""
from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
from collections import OrderedDict

import numpy as np

from ..io.sources import load_source
from ..kernels import get_kernels
from ..validation import check_frames
from .map import SpeakerModel
from .map import ubm_params as _ubm_params

__all__ = ["MODEL_CACHE_BYTES", "cached_model", "checked_model_params", "linear_scores",
           "model_offsets", "score_segments", "segment_statistics"]

#: Segments (columns) of one product, and most segments of one linear-scoring task.
_COLUMNS = 64


def checked_model_params(model, k, d, index):
    """A speaker model's parameters, checked against the UBM's size.

    Parameters
    ----------
    model : SpeakerModel or (weights, means, variances)
    k, d : int
        The UBM's components and features.
    index : int
        The model's place, named in the error of a model that is not a SpeakerModel.

    Returns
    -------
    weights : ndarray of shape (k,), float64
    means, variances : ndarray of shape (k, d), float64

    Raises
    ------
    ValueError
        If the model's means are not of shape ``(k, d)``.
    """
    if isinstance(model, SpeakerModel):
        # checked when it was made or read (SpeakerModel.load)
        w, m, v = (np.asarray(a, dtype=np.float64) for a in model.params())
        name = f"model {model.speaker_id!r}"
    else:
        w, m, v = _ubm_params(model)
        name = f"speaker model {index}"
    if m.shape != (k, d):
        raise ValueError(f"{name} has {m.shape[0]} components x {m.shape[1]} features, but "
                         f"the UBM has {k} x {d}")
    return w, m, v


def segment_statistics(X, ubm_params, *, backend=None):
    """UBM-centred first-order statistics of one test segment, for linear scoring.

    Parameters
    ----------
    X : ndarray of shape (n_frames, n_features), float32 or float64
    ubm_params : UBM in any form :func:`ipem.speaker.map.ubm_params` accepts
    backend : {"c", "numpy"} or None
        Kernel backend of the UBM E-step (``gmm_diag_step``).

    Returns
    -------
    n_frames : int
    nk : ndarray of shape (n_components,), float64
        Zeroth-order statistics ``N_k = sum_t g_tk``.
    f_centred : ndarray of shape (n_components, n_features), float64
        ``F_k - N_k m_k`` with ``F_k = sum_t g_tk x_t``.
    """
    w, m, v = _ubm_params(ubm_params)
    X = check_frames(X, n_features=m.shape[1])
    shift = X.mean(axis=0, dtype=np.float64)
    with np.errstate(divide="ignore"):
        log_w = np.log(w)
    nk, sx, _, _ = get_kernels(backend).gmm_diag_step(X, shift, m - shift, 1.0 / v, log_w)
    # sx = sum_t g_tk (x_t - shift), so F_k - N_k m_k = sx_k - N_k (m_k - shift)
    return X.shape[0], nk, sx - nk[:, None] * (m - shift)


def _offset_row(means, m, v):
    return ((means - m) / v).ravel()


def model_offsets(ubm_params, speaker_models):
    """Rows ``vec(Sigma^-1 (m_s - m))`` of the models, the left factor of :func:`linear_scores`.

    Parameters
    ----------
    ubm_params : UBM in any form :func:`ipem.speaker.map.ubm_params` accepts
    speaker_models : sequence of SpeakerModel or ``(weights, means, variances)``
        Models adapted from the UBM (only their means are used).

    Returns
    -------
    ndarray of shape (n_models, n_components * n_features), float64
    """
    _, m, v = _ubm_params(ubm_params)
    k, d = m.shape
    if isinstance(speaker_models, SpeakerModel):
        speaker_models = [speaker_models]
    out = np.empty((len(speaker_models), k * d))
    for i, mod in enumerate(speaker_models):
        out[i] = _offset_row(checked_model_params(mod, k, d, i)[1], m, v)
    return out


def linear_scores(offsets, statistics):
    """Linear scores of every model against every segment: products of at most 64 columns.

    Parameters
    ----------
    offsets : ndarray of shape (n_models, n_components * n_features)
        From :func:`model_offsets`.
    statistics : sequence of (n_frames, nk, f_centred)
        :func:`segment_statistics` of each segment.

    Returns
    -------
    ndarray of shape (n_models, n_segments), float64
        ``(1/T) sum_k (m_sk - m_k)^T Sigma_k^-1 (F_k - N_k m_k)``.
    """
    offsets = np.asarray(offsets, dtype=np.float64)
    statistics = list(statistics)
    out = np.empty((offsets.shape[0], len(statistics)))
    for a in range(0, len(statistics), _COLUMNS):
        out[:, a:a + _COLUMNS] = _product(offsets, statistics[a:a + _COLUMNS])
    return out


def _product(offsets, statistics):
    """``(offsets @ [f_1 .. f_n]) / [T_1 .. T_n]`` for n <= 64, in the fixed form above."""
    m, kd = offsets.shape
    n = len(statistics)
    stats = np.zeros((kd, max(2, n)))
    for j, (_, _, f) in enumerate(statistics):
        f = np.asarray(f, dtype=np.float64).ravel()
        if f.size != kd:
            raise ValueError(f"model offsets have {kd} values per model but the statistics "
                             f"{f.size}: not the same UBM")
        stats[:, j] = f
    n_frames = np.array([t for t, _, _ in statistics], dtype=np.float64)
    if m < 2:
        offsets = np.concatenate([offsets, np.zeros((2 - m, kd))])
    return (offsets @ stats)[:m, :n] / n_frames


# ---------------------------------------------------------------------------
# per-process caches: speaker models, model offsets
# ---------------------------------------------------------------------------

#: Speaker models read by the scoring tasks of this process, most recently used last:
#: ``(path, mtime_ns, size, speaker_id, k, d) -> (SpeakerModel, nbytes)``.  A model
#: tried against many test segments is read once per engine, not once per segment.
_MODEL_CACHE: "OrderedDict[tuple, tuple]" = OrderedDict()
_MODEL_CACHE_HELD = [0]
#: Bytes of model parameters the cache may hold (``IPEM_MODEL_CACHE_MB``, default 512);
#: the same bound again for the model offsets of linear scoring.
MODEL_CACHE_BYTES = int(float(os.environ.get("IPEM_MODEL_CACHE_MB", "512")) * 2**20)


def _model_key(path, speaker_id, k, d):
    st = os.stat(path)
    return (path, st.st_mtime_ns, st.st_size, str(speaker_id), k, d)


def cached_model(path, speaker_id, k, d):
    """:meth:`SpeakerModel.load` through a per-process LRU cache (``IPEM_MODEL_CACHE_MB``).

    The cache is keyed by the file's identity (path, modification time, size): a
    rewritten file is read again.

    Parameters
    ----------
    path : str
        Absolute path of a model file written by :meth:`SpeakerModel.save`.
    speaker_id : str
        The speaker the file must hold.
    k, d : int
        The UBM's components and features, which the model must match.

    Returns
    -------
    SpeakerModel
    """
    key = _model_key(path, speaker_id, k, d)
    hit = _MODEL_CACHE.get(key)
    if hit is not None:
        _MODEL_CACHE.move_to_end(key)
        return hit[0]
    model = SpeakerModel.load(path, speaker_id=speaker_id, n_components=k, n_features=d)
    size = sum(a.nbytes for a in model.params())
    if size <= MODEL_CACHE_BYTES:
        _MODEL_CACHE[key] = (model, size)
        _MODEL_CACHE_HELD[0] += size
        while _MODEL_CACHE_HELD[0] > MODEL_CACHE_BYTES:
            _, (_, old) = _MODEL_CACHE.popitem(last=False)
            _MODEL_CACHE_HELD[0] -= old
    return model


#: Offsets of the model files scored by the linear tasks of this process, for one UBM:
#: ``ubm`` (its key) and ``rows`` (model key -> offset row of shape (K*D,)).
_OFFSETS = {"ubm": None, "rows": {}}


def _store_rows(keys, params, ubm_key):
    """This process's offsets of model files, for the UBM ``params`` (``ubm_key``).

    Parameters
    ----------
    keys : list of tuple
        The files' :func:`_model_key`.
    params : GMMParams
    ubm_key : str
        Digest of the UBM's means and variances.

    Returns
    -------
    list of ndarray of shape (n_components * n_features,)
        The offsets of each of ``keys``.
    """
    _, m, v = params
    k, d = m.shape
    store = _OFFSETS
    rows = store["rows"]
    missing = [key for key in dict.fromkeys(keys) if key not in rows]
    if store["ubm"] != ubm_key or (len(rows) + len(missing)) * k * d * 8 > MODEL_CACHE_BYTES:
        rows.clear()            # another UBM, or over the bound: start again with these
        store["ubm"] = ubm_key
        missing = list(dict.fromkeys(keys))
    for key in missing:
        hit = _MODEL_CACHE.get(key)
        model = hit[0] if hit is not None else SpeakerModel.load(
            key[0], speaker_id=key[3], n_components=k, n_features=d)
        rows[key] = _offset_row(checked_model_params(model, k, d, len(rows))[1], m, v)
    return [rows[key] for key in keys]


#: The last gathered matrix of model files' offsets (:func:`_gathered`): ``key`` (the UBM's
#: and the files' identities, in row order) and ``block``.
_BLOCK = {"key": None, "block": None}


def _gathered(refs, params, ubm_key, shared):
    """The offsets of ``refs`` as rows of one fresh matrix, in the order of ``refs``.

    Parameters
    ----------
    refs : list of (model_id, ref)
        ``ref``: a model file's absolute path, or a row of ``shared``.
    params : GMMParams
    ubm_key : str
    shared : ndarray of shape (n_models, n_components * n_features) or None
        The broadcast offsets of in-memory models.

    Returns
    -------
    ndarray of shape (len(refs), n_components * n_features), float64
        Made for this list, or, when the list holds model files only, kept from
        the previous task of this process with the same files (same UBM, paths,
        modification times and sizes, in the same order): the same shape, order
        and values, without gathering ``K*D*8`` bytes per model again (tasks of
        one trial list usually try every segment against the same models).  It
        is kept while it and the offsets of :func:`_store_rows` fit in
        ``IPEM_MODEL_CACHE_MB``.
    """
    k, d = params.means.shape
    files = [ref for ref in refs if isinstance(ref[1], str)]
    keys = [_model_key(path, sid, k, d) for sid, path in files]    # one stat per file
    if files and len(files) == len(refs):
        key = (ubm_key, tuple(keys))
        if _BLOCK["key"] == key:
            return _BLOCK["block"]
        _BLOCK["key"] = _BLOCK["block"] = None       # not held while the next is made
    at = dict(zip(files, _store_rows(keys, params, ubm_key))) if files else {}
    block = np.empty((len(refs), k * d))
    for i, ref in enumerate(refs):
        block[i] = at[ref] if isinstance(ref[1], str) else shared[ref[1]]
    if (files and len(files) == len(refs)
            and block.nbytes + len(_OFFSETS["rows"]) * k * d * 8 <= MODEL_CACHE_BYTES):
        _BLOCK["key"], _BLOCK["block"] = key, block
    return block


def _linear_task(chunk, params, backend, dtype, ubm_key, shared):
    """Linear scores of a chunk of test segments against their models.

    ``chunk``: list of ``(source, models, what)``; ``models``: ``(model_id, ref)``
    pairs, ``ref`` a model file path or a row of ``shared`` (offsets of in-memory
    models).  Returns one array of scores per segment, in the order of its models.
    """
    k, d = params.means.shape
    stats = [segment_statistics(load_source(source, dtype=dtype, n_features=d, what=what),
                                params, backend=backend) for source, _, what in chunk]
    # the product's rows: the chunk's distinct (model_id, ref) in order of first
    # appearance, gathered into a fresh matrix whose shape and order depend on the
    # chunk alone (the offsets kept by this process supply values, not the layout)
    refs = list(dict.fromkeys(ref for _, mods, _ in chunk for ref in mods))
    scores = _product(_gathered(refs, params, ubm_key, shared), stats)
    pos = {ref: i for i, ref in enumerate(refs)}
    return [scores[[pos[ref] for ref in mods], j] for j, (_, mods, _) in enumerate(chunk)]


def score_segments(controller, params, items, *, backend=None, dtype="<f4", progress=False):
    """Linear scores of test segments against their models, computed where the segments are.

    Parameters
    ----------
    controller : Controller
    params : GMMParams
        The UBM.
    items : list of (source, models, what)
        One per test segment: a resolved feature source, its ``(model_id, model)``
        pairs (a model file's absolute path or a SpeakerModel), the segment's name.
    backend : {"c", "numpy"} or None
    dtype : str
        Dtype test frames are read in.
    progress : bool, default=False

    Returns
    -------
    list of ndarray
        The scores of each segment, in the order of its models.
    """
    # in-memory models keyed by the object, not by the id (model ids 1 and "1" both
    # come as "1"): id(SpeakerModel) -> (row of the broadcast offsets, SpeakerModel)
    in_memory = {}
    pairs = list(itertools.chain.from_iterable(mods for _, mods, _ in items))
    for _, mod in dict(zip(map(id, pairs), pairs)).values():
        if isinstance(mod, SpeakerModel):
            in_memory.setdefault(id(mod), (len(in_memory), mod))
    tasks = items if not in_memory else [
        (source, [(mid, in_memory[id(mod)][0]) if isinstance(mod, SpeakerModel)
                  else (mid, mod) for mid, mod in mods], what) for source, mods, what in items]
    shared = (model_offsets(params, [mod for _, mod in in_memory.values()])
              if in_memory else None)
    ubm_key = hashlib.blake2b(params[1].tobytes() + params[2].tobytes(),
                              digest_size=16).hexdigest()
    # the chunks depend on the trial list only, not on the controller: 16 tasks or
    # more, of 8 to 64 segments
    width = min(_COLUMNS, max(8, -(-len(tasks) // 16)))
    chunks = [tasks[a:a + width] for a in range(0, len(tasks), width)]
    with controller.broadcast(params) as ubm, \
            (controller.broadcast(shared) if shared is not None
             else contextlib.nullcontext()) as offsets:
        out = controller.map_tasks(_linear_task, chunks, ubm, backend, dtype, ubm_key,
                                   offsets, progress=progress, desc="scoring")
    return [scores for chunk in out for scores in chunk]
