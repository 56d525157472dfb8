"""TotalVariability: the i-vector extractor, trained by EM over a controller.

The class only fills the hooks of :class:`ipem.em.base.EMEstimator` and of the
staged runner (:func:`ipem.em.staged.run_stages`, one stage: checkpoints and
exact resume as for the UBM); the E-step is the shard function
:func:`ipem.ivector.posterior.tv_stats` reduced over the utterance rows
(:mod:`ipem.ivector.stats`) and the M-step and the minimum-divergence step run
where the statistics are, each place solving its share of the components
(:meth:`ipem.parallel.Controller.reduce_on_places`); T stays on the places.
The driver (:mod:`ipem.em.driver`) owns the loop, the records, the callbacks
and the recovery of lost engines.
"""
from __future__ import annotations

import json
import logging
import os

import numpy as np
from sklearn.base import TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .. import io as _io
from ..em.base import EMEstimator
from ..em.staged import Position, run_stages
from ..io.atomic import save_npz_atomic
from ..io.models import (history_from, invalid_model_file, read_npz, records_to_json,
                         rng_from_arrays, rng_to_arrays, text_scalar)
from ..kernels import check_approximation
from ..parallel import DistributedData, Reduction, Shard, rows_per_block
from ..mixture.params import GMMParams, ubm_params
from ..validation import ParameterError, check_float, check_int, validate_frames
from . import posterior
from .extraction import (EXTRACTOR_KIND, FORMAT_VERSION, check_T, extract_ivectors, file_limits,
                         read_extractor)
from .stats import STREAM_UTTERANCES, distribute_stats

logger = logging.getLogger(__name__)

_CHECKPOINT_KIND = "ipem-ivector-checkpoint"


def _is_files(X):
    """Whether ``X`` names utterances (files, a dict, frame matrices) rather than rows."""
    return isinstance(X, (str, os.PathLike, dict)) or (
        isinstance(X, (list, tuple)) and len(X) > 0
        and (isinstance(X[0], (str, os.PathLike, _io.FeatureRef, list, tuple))
             or (isinstance(X[0], np.ndarray) and X[0].ndim == 2)))


_NEEDS_UBM = ("fits on scikit-learn's generated data: TotalVariability needs ubm= and its X is "
              "utterance statistics of shape (n, K + K*D) fixed by that UBM, not free-form "
              "frames, so no generated X of another shape can be fitted")
_NO_WEIGHTS = ("frames are weighted by the UBM's posteriors; a per-utterance sample_weight is "
               "not supported (fit refuses any)")
_SPARSE = "sparse data is refused, but only after the missing ubm= (the check fits without one)"

#: scikit-learn checks that cannot apply to TotalVariability, with the reason; pass it as
#: ``check_estimator(TotalVariability(), expected_failed_checks=...)``. Every other check passes.
SKLEARN_CHECKS_NOT_APPLICABLE = {
    **{name: _NEEDS_UBM for name in (
        "check_dict_unchanged", "check_dont_overwrite_parameters", "check_dtype_object",
        "check_estimators_dtypes", "check_estimators_fit_returns_self",
        "check_estimators_nan_inf", "check_estimators_overwrite_params",
        "check_estimators_pickle", "check_f_contiguous_array_estimator",
        "check_fit2d_1feature", "check_fit2d_1sample", "check_fit2d_predict1d",
        "check_fit_check_is_fitted", "check_fit_idempotent", "check_fit_score_takes_y",
        "check_methods_sample_order_invariance", "check_methods_subset_invariance",
        "check_n_features_in", "check_n_features_in_after_fitting",
        "check_pipeline_consistency", "check_positive_only_tag_during_fit",
        "check_readonly_memmap_input", "check_sample_weight_equivalence_on_dense_data",
        "check_transformer_data_not_an_array", "check_transformer_general",
        "check_transformer_n_iter", "check_transformer_preserve_dtypes")},
    **{name: _NO_WEIGHTS for name in (
        "check_all_zero_sample_weights_error", "check_sample_weights_list",
        "check_sample_weights_not_an_array", "check_sample_weights_not_overwritten",
        "check_sample_weights_pandas_series", "check_sample_weights_shape")},
    "check_estimator_sparse_array": _SPARSE,
    "check_estimator_sparse_matrix": _SPARSE,
}


class TotalVariability(TransformerMixin, EMEstimator):
    """Total-variability matrix (i-vector extractor) trained by EM.

    Parameters
    ----------
    n_components : int, default=100
        Rank R of T: the i-vector dimension.
    ubm : fitted UBMTrainer, diagonal GaussianMixture, dict, tuple or path
        The UBM whose Baum-Welch statistics the model explains
        (:func:`ipem.mixture.params.ubm_params`); required.
    max_iter : int, default=10
        EM iterations (Kaldi and SIDEKIT run a fixed number, 5-10).
    tol : float, default=0.0
        Stop early when the objective (log-likelihood per frame) gains less
        than ``tol``; 0 runs ``max_iter`` iterations.
    min_divergence : bool, default=True
        Rescale T after every M-step so that the i-vectors' prior stays
        ``N(0, I)`` (:func:`ipem.ivector.posterior.min_divergence`).
    init_scale : float, default=0.1
        Initial ``T_c = init_scale * sqrt(S_c) * standard normal``.
    top_c, min_post : optional
        Approximate Baum-Welch statistics from feature files
        (:func:`ipem.ivector.stats.baum_welch`).
    dtype : {numpy.float32, numpy.float64}, default=numpy.float32
        Frame dtype for feature files (statistics are float64).
    engine_memory : int or str, optional
        For feature files: memory of each engine process (``"1G"``,
        ``"512M"``; of a local shard: its rows); what the engine uses without
        the rows and the E-step's working memory come off, the rows beyond
        the rest go to a scratch file on the engine's node and are read back
        block by block every iteration
        (:func:`ipem.ivector.distribute_stats`); the extractor has the bits
        of an in-memory fit with the same blocks.  Default: all in memory.
    checkpoint : str or None
        ``.npz`` written atomically every ``checkpoint_every`` iterations;
        ``fit`` resumes from it when it exists and ``resume`` is true.
    checkpoint_every : int, default=1
    resume : bool, default=True
    random_state : int, RandomState or None
    controller, backend, callbacks, verbose
        As in :class:`ipem.UBMTrainer`.

    Attributes
    ----------
    T_ : ndarray of shape (n_gaussians, n_features, n_components)
        The total-variability matrix, one (D, R) block per UBM component.
    ubm_weights_ : ndarray of shape (n_gaussians,)
    ubm_means_, ubm_covariances_ : ndarray of shape (n_gaussians, n_features)
    history_ : list of IterationRecord
        ``objective``: ``sum_u (-log|L_u| + b_u' E[w_u]) / 2`` over the frames
        (the T-dependent log-likelihood of the statistics per frame).
    n_iter_ : int
    lower_bound_ : float
    converged_ : bool
    n_features_in_ : int
        ``K + K*D``: the length of an utterance row.

    Examples
    --------
    >>> import numpy as np, ipem
    >>> rng = np.random.default_rng(0)
    >>> ubm = ipem.GaussianMixture(4, covariance_type="diag", random_state=0).fit(
    ...     rng.normal(size=(2000, 3)))
    >>> utts = [rng.normal(size=(200, 3)) + rng.normal(size=3) for _ in range(30)]
    >>> rows = ipem.ivector.frames_to_rows(utts, ubm)
    >>> tv = ipem.TotalVariability(2, ubm=ubm, max_iter=3, random_state=0).fit(rows)
    >>> tv.transform(rows).shape
    (30, 2)
    """

    _warn_unconverged = False  # a fixed iteration budget by design
    _row_unit = "utterances"   # rows are utterances' statistics: unblocked under "auto"

    def __init__(self, n_components=100, *, ubm=None, max_iter=10, tol=0.0,
                 min_divergence=True, init_scale=0.1, top_c=None, min_post=0.0,
                 dtype=np.float32, checkpoint=None, checkpoint_every=1, resume=True,
                 random_state=None, controller=None, backend=None, callbacks=None, verbose=0,
                 engine_memory=None):
        self.n_components = n_components
        self.ubm = ubm
        self.max_iter = max_iter
        self.tol = tol
        self.min_divergence = min_divergence
        self.init_scale = init_scale
        self.top_c = top_c
        self.min_post = min_post
        self.dtype = dtype
        self.checkpoint = checkpoint
        self.checkpoint_every = checkpoint_every
        self.resume = resume
        self.random_state = random_state
        self.controller = controller
        self.backend = backend
        self.callbacks = callbacks
        self.verbose = verbose
        self.engine_memory = engine_memory

    # --- checks -------------------------------------------------------------------
    def _ubm(self):
        if self.ubm is None:
            raise ValueError("TotalVariability needs the UBM: TotalVariability(ubm=...)")
        return ubm_params(self.ubm)

    def _check_params(self, n_features=None):
        check_int(self.n_components, "n_components")
        check_int(self.max_iter, "max_iter")
        check_float(self.tol, "tol")
        check_float(self.init_scale, "init_scale", strict=True)
        check_int(self.checkpoint_every, "checkpoint_every")
        w, m, v = self._ubm()
        k, d = m.shape
        check_approximation(self.top_c, self.min_post, k)
        if n_features is not None and n_features != k + k * d:
            raise ValueError(f"utterance rows have {n_features} columns, but a UBM of {k} "
                             f"Gaussians in {d} dimensions gives K + K*D = {k + k * d}")
        self._params_ubm = GMMParams(w, m, v)
        return {}

    def _working_memory(self, n_utterances):
        """Bytes an engine's iteration uses beside the rows: three (block, R, R) float64
        arrays of the E-step, the summation tree's accumulators (``K * R(R+1)/2 + R*K*D``
        float64 each; one per level of the tree alive), T with its packed
        ``T_c' S_c^-1 T_c`` kept on the engine, twice (kept and being exchanged),
        and the parts of the sums split, sent and received in the exchange (two
        more)."""
        if self.engine_memory is None:
            return 0
        k, d = self._ubm().means.shape
        r = int(self.n_components)
        block = rows_per_block(self.controller, n_utterances, "utterances") or STREAM_UTTERANCES
        levels = int(np.ceil(np.log2(max(2, -(-n_utterances // block))))) + 1
        accumulator = (k * r * (r + 1) // 2 + r * k * d) * 8
        return 3 * block * r * r * 8 + (levels + 4) * accumulator

    def _stats_data(self, X):
        """Utterance rows of feature files, computed where the shards live."""
        utterances = _utterances(X)
        return distribute_stats(self._ubm(), utterances, controller=self.controller,
                                top_c=self.top_c, min_post=self.min_post,
                                backend=self.backend, dtype=self.dtype,
                                engine_memory=self.engine_memory,
                                working_memory=self._working_memory(len(utterances)))

    def _fit_data(self, X, sample_weight):
        """Rows (array or DistributedData) as they are; feature files become rows on the shards."""
        if sample_weight is not None:
            raise ValueError("sample_weight is not supported by TotalVariability")
        if _is_files(X):
            self._check_params()
            data = self._stats_data(X)
            validate_frames(self, data, reset=True)
            return data, True
        return super()._fit_data(X, None)

    def fit(self, X, y=None, sample_weight=None):
        """Train T by EM.

        Parameters
        ----------
        X : array-like of shape (n_utterances, K + K*D), DistributedData, or utterances
            Utterance rows ``[N_u, F~_u.ravel()]`` (distributed with
            ``controller`` for the fit), rows a controller already keeps
            (:func:`ipem.ivector.distribute_stats`), or utterances: feature
            files (paths, a list file, FeatureRefs), frame matrices, or a dict
            ``id -> source``, whose statistics the shards compute and keep.
        y, sample_weight : ignored (sample_weight must be None)

        Returns
        -------
        self
        """
        return super().fit(X, y, sample_weight)

    # --- EM hooks ------------------------------------------------------------------
    def initialize(self, data, rng, given):
        """EM hook: a random ``T`` of shape (n_components_ubm, n_features, rank)."""
        w, m, v = self._params_ubm
        k, d = m.shape
        t = rng.standard_normal((k, d, self.n_components))
        return {"T": self.init_scale * np.sqrt(v)[:, :, None] * t}

    def e_step(self, data, params):
        """EM hook (:class:`~ipem.em.hooks.EMHooks`): the E-step and the M-step where the
        statistics are (:meth:`~ipem.parallel.Controller.reduce_on_places`): each place
        solves its share of the components, T stays on the places for the next
        iteration with its ``T_c' S_c^-1 T_c`` (computed by the place that solved
        ``T_c``), and only the new T's shares and the small sums come back.

        Returns
        -------
        Reduction
            ``(stats, shard_times)``: ``stats`` holds the new ``T``, its handle on the
            places, the summed ``ww``, ``w``, ``nc``, ``loglik``, ``n`` and the places'
            M-step and exchange seconds.
        """
        ctrl, T = data.controller, params["T"]
        placed = getattr(self, "_placed", None)
        if placed is None or placed[0] is not T:   # first iteration, or resumed
            self._placed = placed = (T, ctrl.broadcast(T))
        inv_var = 1.0 / self._params_ubm.covariances
        out = ctrl.reduce_on_places(
            posterior.tv_stats, data, placed[1], inv_var, split=posterior.split_tv_stats,
            apply=posterior.tv_m_step_part, keep=posterior.join_T, reply=posterior.reply_T,
            apply_args=(placed[1], bool(self.min_divergence), inv_var))
        stats = {**out.results[0][1], "T": out.kept["T"], "handle": out.handle,
                 "m_step_time": out.apply_times.tolist(),
                 "exchange_time": out.exchange_times.tolist()}
        return Reduction(stats, out.shard_times)

    def m_step(self, stats, params, data):
        """EM hook: the new ``T`` (solved on the places by :meth:`e_step`), the
        log-likelihood per frame and the telemetry."""
        T = stats["T"]
        self._placed = (T, stats["handle"])
        n_empty = int(T.shape[0] - np.count_nonzero(stats["nc"] > 0))
        frames = float(stats["nc"].sum())
        info = {"n_utterances": int(stats["n"]), "n_empty": n_empty,
                "mean_ivector_norm2": float(np.trace(posterior.unpack_upper(
                    stats["ww"], T.shape[2])) / max(stats["n"], 1.0)),
                "m_step_time": stats["m_step_time"], "exchange_time": stats["exchange_time"]}
        return {"T": T}, stats["loglik"] / max(frames, 1.0), info

    #: what the records' ``stage`` counts (plots label it "R=10", not "K=10")
    stage_label = "R"

    def stage_size(self, params):
        """The rank of ``T``."""
        return int(params["T"].shape[2])

    def _fit_runs(self, data, rng, given):
        try:
            result, self.resumed_from_ = run_stages(
                self, data, rng, [(self.n_components, self.max_iter)],
                callbacks=self._callbacks(), checkpoint=self.checkpoint, resume=self.resume,
                every=self.checkpoint_every)
        finally:
            self.__dict__.pop("_placed", None)   # T's copy on the places is freed
        return result

    def grow(self, params, size):
        """One stage: never called with another size."""
        return params

    def _set_fitted(self, result, data):
        w, m, v = self._params_ubm
        self.T_ = result.params["T"]
        self.ubm_weights_, self.ubm_means_, self.ubm_covariances_ = w, m, v
        self.history_ = result.history
        self.n_iter_ = result.n_iter
        self.lower_bound_ = result.objective
        self.converged_ = result.converged

    # --- use -------------------------------------------------------------------------
    def transform(self, X):
        """I-vectors ``E[w]`` of utterances.

        Parameters
        ----------
        X : array-like of shape (n_utterances, K + K*D), DistributedData, or utterances
            Utterance rows (:func:`ipem.ivector.stats.frames_to_rows`), rows
            kept by a controller (:func:`ipem.ivector.stats.distribute_stats`),
            or utterances as feature files or frame matrices (a dict
            ``id -> source`` or a sequence), whose statistics and i-vectors
            are computed task-parallel where the files are
            (:func:`ipem.ivector.extract_ivectors`).

        Returns
        -------
        ndarray of shape (n_utterances, n_components)
        """
        check_is_fitted(self, "T_")
        inv_var = 1.0 / self.ubm_covariances_
        if _is_files(X):
            out = extract_ivectors(self, _utterances(X), controller=self.controller,
                                   progress=False)
            return np.stack(list(out.values()))
        X = validate_frames(self, X, reset=False)
        if isinstance(X, DistributedData):
            return np.concatenate(X.controller.map(posterior.ivectors, X, self.T_, inv_var))
        return posterior.ivectors(Shard(X=np.asarray(X, dtype=np.float64), index=0, offset=0),
                                  self.T_, inv_var)

    def extractor(self):
        """What extraction tasks need: ``{"T", "weights", "means", "covariances"}``."""
        check_is_fitted(self, "T_")
        return {"T": self.T_, "weights": self.ubm_weights_, "means": self.ubm_means_,
                "covariances": self.ubm_covariances_}

    def save(self, path):
        """Write the extractor (T, its UBM, the history) atomically to ``.npz``; the path."""
        check_is_fitted(self, "T_")
        return save_npz_atomic(path, kind=np.array(EXTRACTOR_KIND),
                               format_version=np.array(FORMAT_VERSION), T=self.T_,
                               weights=self.ubm_weights_, means=self.ubm_means_,
                               covariances=self.ubm_covariances_,
                               history_json=np.array(records_to_json(self.history_)))

    @classmethod
    def load(cls, path, **kwargs):
        """An extractor read from a file written by :meth:`save` (nothing in it trusted)."""
        model, history = read_extractor(path)
        T, w, m, v = (model[k] for k in ("T", "weights", "means", "covariances"))
        obj = cls(n_components=T.shape[2], ubm=GMMParams(w, m, v), **kwargs)
        obj.T_, obj.ubm_weights_, obj.ubm_means_, obj.ubm_covariances_ = T, w, m, v
        obj.history_ = history
        obj.n_iter_ = len(obj.history_)
        obj.n_features_in_ = m.shape[0] * (1 + m.shape[1])
        return obj

    # --- checkpoints (the staged runner's hooks) ---------------------------------------
    _RESUME_SETTINGS = ("n_components", "max_iter", "tol", "min_divergence", "init_scale")

    def _settings(self):
        return {k: getattr(self, k) for k in self._RESUME_SETTINGS}

    def _identity(self, data):
        seed = self.random_state
        seed = int(seed) if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) \
            else (None if seed is None else type(seed).__name__)
        return {"random_state": seed, "utterances": int(data.n_samples),
                "columns": int(data.n_features)}

    def write_checkpoint(self, path, params, pos, rng, history, data):
        """Write the training state atomically."""
        save_npz_atomic(
            path, kind=np.array(_CHECKPOINT_KIND), format_version=np.array(FORMAT_VERSION),
            T=params["T"], settings_json=np.array(json.dumps(self._settings())),
            identity_json=np.array(json.dumps(self._identity(data))),
            data_mean=data.mean, position=np.array([pos.stage_index, pos.iter_in_stage,
                                                    pos.stage_done, pos.converged]),
            history_json=np.array(records_to_json(history)), **rng_to_arrays(rng))

    def read_checkpoint(self, path, data):
        """``(params, position, rng, history)`` of a checkpoint, each checked."""
        fresh = "delete the checkpoint (or pass resume=False) to train from the start"
        z = read_npz(path, file_limits(data.n_features))
        if text_scalar(z, "kind", path, default="") != _CHECKPOINT_KIND:
            raise ValueError(f"{path} is not an i-vector training checkpoint: give another "
                             "checkpoint path")
        for key, now in (("settings_json", self._settings()),
                         ("identity_json", self._identity(data))):
            saved = json.loads(text_scalar(z, key, path))
            if saved != json.loads(json.dumps(now)):
                raise ParameterError(f"checkpoint {path} was written with other settings or "
                                     f"data ({saved} != {now}): ", "checkpoint", hint=fresh)
        saved_mean = z.get("data_mean")
        if saved_mean is None or saved_mean.shape != data.mean.shape or \
                not np.allclose(saved_mean, data.mean, rtol=1e-9, atol=1e-12):
            raise ParameterError(f"checkpoint {path} was written for other statistics: ",
                                 "checkpoint", hint=fresh)
        T = check_T(z["T"], self._params_ubm.means.shape, path)
        if T.shape[2] != self.n_components:
            raise invalid_model_file(path, f"rank {T.shape[2]}, expected {self.n_components}")
        p = z.get("position")
        if p is None or p.shape != (4,) or p.dtype.kind not in "iu" or \
                not 0 <= int(p[1]) <= self.max_iter or int(p[0]) != 0:
            raise invalid_model_file(path, "the training position is not valid")
        pos = Position(int(p[0]), int(p[1]), bool(p[2]), bool(p[3]))
        return {"T": T}, pos, rng_from_arrays(z), history_from(z, path)


def _utterances(X):
    """``{utterance_id: source}`` of a dict, a list file or a sequence of sources."""
    if isinstance(X, dict):
        return X
    if isinstance(X, (str, os.PathLike)):
        return {r.key or r.path: r for r in _io.list_features(X)}
    return {i: src for i, src in enumerate(X)}
