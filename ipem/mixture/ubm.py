"""Universal background model (UBM) training at scale.

:class:`UBMTrainer` grows a diagonal-covariance GMM by binary splitting
(1 -> 2 -> 4 -> ... -> K) or starts from k-means, and runs EM at every stage
through the staged runner (:func:`ipem.em.staged.run_stages`) with the GMM
statistics and M-step of :mod:`ipem.mixture.gaussian`.  It adds what
speaker-verification training needs on real features: a variance floor, a
dead-component policy, float32 frames with float64 statistics, per-iteration
checkpoints (:mod:`ipem.io.models`) and per-engine telemetry.  The frames can
be read by the engines from feature files, so the client never holds them.
"""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from .. import io as _io
from ..em.base import EMEstimator
from ..em.staged import Position, run_stages
from ..io.atomic import save_npz_atomic
from ..io.models import (array_limits, check_gmm, history_from, invalid_model_file, load_model,
                         read_npz, records_to_json, rng_from_arrays, rng_to_arrays, text_scalar)
from ..kernels import default_chunk_size, get_kernels
from ..parallel import as_controller, rows_per_block
from ..validation import ParameterError, check_float, check_int, check_option
from .gaussian import gmm_e_step, kmeans_init_stats, m_step
from .gaussian_mixture import GaussianMixture
from .params import GMMParams

FORMAT_VERSION = 1


# ---------------------------------------------------------------------------
# pure functions on diagonal-GMM parameters (weights (K,), means (K, D), variances (K, D))
# ---------------------------------------------------------------------------

def split_components(weights, means, variances, which, epsilon=0.2):
    """Split components in two along their largest-variance direction.

    Component ``k`` in ``which`` becomes ``mu - eps*sigma_d e_d`` (kept at
    index ``k``) and ``mu + eps*sigma_d e_d`` (appended), each with half the
    weight and the same variances, where ``d`` is the dimension of largest
    variance of component ``k``.

    Parameters
    ----------
    weights : ndarray of shape (n_components,)
    means, variances : ndarray of shape (n_components, n_features)
    which : array-like of int
        Components to split.
    epsilon : float
        Offset in standard deviations.

    Returns
    -------
    GMMParams
        With ``len(which)`` more components (the new ones last).
    """
    which = np.asarray(which, dtype=np.int64)
    w, m, v = weights.copy(), means.copy(), variances.copy()
    dims = np.argmax(v[which], axis=1)
    step = epsilon * np.sqrt(v[which, dims])
    new_m = m[which].copy()
    new_m[np.arange(which.size), dims] += step
    m[which, dims] -= step
    w[which] *= 0.5
    return GMMParams(np.concatenate([w, w[which]]), np.concatenate([m, new_m]),
                     np.concatenate([v, v[which]]))


def apply_variance_floor(variances, floor):
    """Raise variances below ``floor`` (shape (n_features,) or scalar) to it.

    Returns
    -------
    floored : ndarray of shape (n_components, n_features)
    n_floored : int
        Number of variances that were raised.
    """
    low = variances < floor
    return np.where(low, floor, variances), int(np.count_nonzero(low))


def estep_memory(n_components, n_features, block_size):
    """Bytes an engine's E-step of a block of frames may use beside the frames.

    Three (rows, K) float64 arrays (log-likelihoods, responsibilities and a
    temporary of the NumPy kernel, which works on chunks of at most
    :func:`ipem.kernels.default_chunk_size` rows of a block; the
    compiled one needs far less) and the
    statistics of the fixed summation tree (``K * (2D + 1)`` float64 per node,
    at most 64 nodes alive).  Taken off ``engine_memory`` on an engine
    (:func:`ipem.io.streaming.resident_rows`).

    Parameters
    ----------
    n_components, n_features, block_size : int
        K, D and the frames of a block.

    Returns
    -------
    int
    """
    k, d = int(n_components), int(n_features)
    rows = min(int(block_size), default_chunk_size(k))
    return 3 * rows * k * 8 + 64 * k * (2 * d + 1) * 8


# ---------------------------------------------------------------------------
# checkpoint checks
# ---------------------------------------------------------------------------

def _files_identity(refs):
    """Number of files and frames, and a SHA-256 of the ordered (path, key, shape) list."""
    h = hashlib.sha256()
    for r in refs:
        h.update(f"{r.path}\t{r.key}\t{r.n_frames}\t{r.n_features}\n".encode("utf-8",
                                                                           "surrogatepass"))
    return {"files": len(refs), "frames": int(sum(r.n_frames for r in refs)),
            "sha256": h.hexdigest()}


def _describe(identity):
    if "files" in identity:
        return f"{identity['files']} files, {identity['frames']} frames"
    return f"{identity.get('frames')} frames of {identity.get('features')} features"


def _close(saved, now):
    return (saved is not None and saved.dtype.kind == "f" and saved.shape == now.shape
            and bool(np.allclose(saved, now, rtol=1e-6, atol=1e-9)))


def _json_dict(z, key, path):
    try:
        value = json.loads(text_scalar(z, key, path))
    except (ValueError, RecursionError) as exc:
        raise invalid_model_file(path, f"{key} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise invalid_model_file(path, f"{key} is not a JSON object")
    return value


def _scalar(z, key, kinds, path):
    """The 0-d integer (``kinds="iu"``) or boolean (``"b"``) array ``z[key]``."""
    a = z.get(key)
    if a is None or a.ndim != 0 or a.dtype.kind not in kinds:
        raise invalid_model_file(path, f"{key!r} is missing or not a "
                                 f"{'boolean' if kinds == 'b' else 'integer'} scalar")
    return bool(a) if kinds == "b" else int(a)


# ---------------------------------------------------------------------------
# the trainer
# ---------------------------------------------------------------------------

class UBMTrainer(EMEstimator):
    """Train a diagonal-covariance UBM by EM with mixture splitting.

    Parameters
    ----------
    n_components : int, default=512
        Final number of Gaussians (need not be a power of two: the last
        split only splits the heaviest components).
    init : {"split", "kmeans"}, default="split"
        ``"split"``: start from one Gaussian (the global mean and variance)
        and split.  ``"kmeans"``: start from :class:`ipem.KMeans` with
        ``init_components`` clusters, then split up to ``n_components``.
    init_components : int, optional
        Size of the k-means start (default: ``n_components``, no splitting).
    stage_iter : int, default=10
        Maximum EM iterations at every intermediate stage.
    final_iter : int, default=30
        Maximum EM iterations at the final size.
    tol : float, default=1e-4
        A stage ends early when the per-frame log-likelihood gain of an
        iteration falls below ``tol``.
    split_epsilon : float, default=0.2
        Split offset, in standard deviations of the split dimension.
    variance_floor : float, default=0.1
        ``floor_mode="relative"``: fraction of the global per-feature
        variance (as MSR's toolbox); ``"absolute"``: the floor itself (as
        Kaldi's ``--min-variance``).
    floor_mode : {"relative", "absolute"}, default="relative"
    min_occupancy : float, default=10.0
        A component with fewer expected frames (n_k) ...
    min_weight : float, default=1e-5
        ... or a smaller weight is dead.
    dead_policy : {"resplit", "remove"}, default="resplit"
        ``"resplit"`` replaces each dead component by a split of the heaviest
        component; ``"remove"`` drops it.  Logged in ``info["dead"]``.
    reg_covar : float, default=0.0
        Added to variances before flooring.
    checkpoint : str or None
        ``.npz`` file written atomically after every ``checkpoint_every``
        iterations (model, history, position, random state).  ``fit`` resumes
        from it when it exists and ``resume`` is true.
    checkpoint_every : int, default=1
    resume : bool, default=True
    dtype : {numpy.float32, numpy.float64}, default=numpy.float32
        Frame dtype for data read from files (statistics are always float64).
    random_state : int, RandomState or None
    controller, backend, chunk_size, callbacks, verbose
        As in :class:`ipem.GaussianMixture`.
    top_c, min_post
        Approximate statistics, as in :class:`ipem.GaussianMixture` (off by
        default): each frame's top-C responsibilities, then those >=
        ``min_post``, renormalised.  The log-likelihood stays exact.
    engine_memory : int or str, optional
        For feature files: memory of each engine process, e.g. ``"1G"`` (of a
        local shard: its frames); what the engine uses without frames and the
        E-step's working memory (:func:`estep_memory`) come off, the frames
        that do not fit in the rest are read from the files block by block
        every iteration (:func:`ipem.io.distribute_files`).  The model is the
        one an in-memory run with the same blocks gives (blocks of the
        controller's ``block_size``, else 4096 frames).

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    means_ : ndarray of shape (n_components, n_features)
    covariances_ : ndarray of shape (n_components, n_features)
    history_ : list of IterationRecord
        Every iteration of every stage (``record.stage`` is K).
    n_iter_ : int
    lower_bound_ : float
    variance_floor_ : ndarray of shape (n_features,)
    n_features_in_ : int
    """

    def __init__(self, n_components=512, *, init="split", init_components=None, stage_iter=10,
                 final_iter=30, tol=1e-4, split_epsilon=0.2, variance_floor=0.1,
                 floor_mode="relative", min_occupancy=10.0, min_weight=1e-5,
                 dead_policy="resplit", reg_covar=0.0, checkpoint=None, checkpoint_every=1,
                 resume=True, dtype=np.float32, random_state=None, controller=None,
                 backend=None, chunk_size=None, callbacks=None, verbose=0, top_c=None,
                 min_post=0.0, engine_memory=None):
        self.n_components = n_components
        self.init = init
        self.init_components = init_components
        self.stage_iter = stage_iter
        self.final_iter = final_iter
        self.tol = tol
        self.split_epsilon = split_epsilon
        self.variance_floor = variance_floor
        self.floor_mode = floor_mode
        self.min_occupancy = min_occupancy
        self.min_weight = min_weight
        self.dead_policy = dead_policy
        self.reg_covar = reg_covar
        self.checkpoint = checkpoint
        self.checkpoint_every = checkpoint_every
        self.resume = resume
        self.dtype = dtype
        self.random_state = random_state
        self.controller = controller
        self.backend = backend
        self.chunk_size = chunk_size
        self.callbacks = callbacks
        self.verbose = verbose
        self.top_c = top_c
        self.min_post = min_post
        self.engine_memory = engine_memory

    # staged training stops on per-stage budgets by design: no ConvergenceWarning
    _warn_unconverged = False

    # --- checks and schedule ---------------------------------------------------
    def _min_samples(self):
        return check_int(self.n_components, "n_components")

    def _check_params(self, n_features=None):
        k = check_int(self.n_components, "n_components")
        check_option(self.init, "init", ("split", "kmeans"))
        k0 = 1 if self.init == "split" else check_int(
            self.init_components if self.init_components is not None else k, "init_components")
        if k0 > k:
            raise ParameterError(f"init_components={k0} is larger than {{name}}={k}",
                                 "n_components")
        check_int(self.stage_iter, "stage_iter")
        check_int(self.final_iter, "final_iter")
        check_float(self.tol, "tol")
        check_float(self.split_epsilon, "split_epsilon", strict=True)
        check_float(self.variance_floor, "variance_floor")
        check_option(self.floor_mode, "floor_mode", ("relative", "absolute"))
        check_float(self.min_occupancy, "min_occupancy")
        check_float(self.min_weight, "min_weight")
        check_option(self.dead_policy, "dead_policy", ("resplit", "remove"))
        check_float(self.reg_covar, "reg_covar")
        check_int(self.checkpoint_every, "checkpoint_every")
        if np.dtype(self.dtype) not in (np.float32, np.float64):
            raise ValueError(f"dtype={self.dtype!r}: expected float32 or float64")
        get_kernels(self.backend)
        return {}

    def _stages(self):
        """(size, max_iter) of every stage: k0, 2*k0, ... and finally K."""
        k = self.n_components
        sizes = [1 if self.init == "split" else (self.init_components or k)]
        while sizes[-1] < k:
            sizes.append(min(2 * sizes[-1], k))
        return [(s, self.final_iter if i == len(sizes) - 1 else self.stage_iter)
                for i, s in enumerate(sizes)]

    # --- data --------------------------------------------------------------------
    def _fit_data(self, X, sample_weight):
        """Arrays are distributed; feature files (lists, scp) are read by the shards themselves."""
        self._files_identity = None  # the files, in order, for the checkpoint's fingerprint
        if isinstance(X, (str, os.PathLike)) or (
                isinstance(X, (list, tuple)) and X
                and isinstance(X[0], (str, os.PathLike, _io.FeatureRef))):
            if sample_weight is not None:
                raise ValueError("sample_weight cannot be given with feature files")
            self._check_params()
            refs = (list(X) if isinstance(X[0], _io.FeatureRef) else _io.list_features(X))
            self._files_identity = _files_identity(refs)
            total = sum(r.n_frames for r in refs)
            if total < self.n_components:
                raise ValueError(f"the feature files hold {total} frames, fewer than the "
                                 f"{self.n_components} components")
            ctrl = as_controller(self.controller)
            block = rows_per_block(ctrl, total) or _io.shards.STREAM_BLOCK
            data = _io.distribute_files(ctrl, refs, dtype=self.dtype,
                                        engine_memory=self.engine_memory,
                                        working_memory=estep_memory(self.n_components,
                                                                    refs[0].n_features, block))
            self.n_features_in_ = data.n_features
            return data, True
        if isinstance(X, (list, tuple)) and len(X) == 0:
            raise ValueError("no feature files (or frames) given to fit")
        return super()._fit_data(X, sample_weight)

    # --- EM hooks ----------------------------------------------------------------
    def e_step(self, data, params):
        """EM hook (:class:`~ipem.em.hooks.EMHooks`): the summed E-step statistics.

        Returns
        -------
        Reduction
            ``(stats, shard_times)``, see :func:`~ipem.mixture.gaussian.gmm_e_step`.
        """
        return gmm_e_step(data, "diag", params["weights"], params["means"],
                          1.0 / np.sqrt(params["covariances"]), top_c=self.top_c,
                          min_post=self.min_post, backend=self.backend,
                          chunk_size=self.chunk_size)

    def m_step(self, stats, params, data):
        """EM hook: new parameters (variance floor, dead components), the mean
        log-likelihood of the E-step and the telemetry (``n_floored``, ``dead``, ...)."""
        nk = stats["nk"]
        weights, means_s, cov = m_step(stats, "diag", self.reg_covar)
        means = means_s + data.mean
        dead = np.flatnonzero((nk < self.min_occupancy) | (weights < self.min_weight))
        # a dead component's statistics are meaningless: keep its previous variances
        if dead.size:
            cov[dead] = params["covariances"][dead]
        cov, n_floored = apply_variance_floor(cov, self.variance_floor_)
        info = {"n_floored": n_floored, "dead": dead.tolist(), "dead_policy": self.dead_policy,
                "n_components": int(weights.size)}
        if dead.size:
            weights, means, cov = self._handle_dead(weights, means, cov, dead)
            info["n_components"] = int(weights.size)
        return {"weights": weights, "means": means, "covariances": cov}, \
            stats["loglik"] / stats["n"], info

    def _handle_dead(self, weights, means, cov, dead):
        alive = np.setdiff1d(np.arange(weights.size), dead)
        if alive.size == 0:
            raise ValueError("every component is dead: too few frames for this many "
                             "components, or min_occupancy/min_weight too high")
        if self.dead_policy == "remove":
            w = weights[alive]
            return w / w.sum(), means[alive], cov[alive]
        # resplit: every dead slot takes half of the heaviest live component
        w, m, v = weights.copy(), means.copy(), cov.copy()
        for slot in dead:
            live = np.setdiff1d(np.arange(w.size), dead[dead >= slot])
            heavy = live[np.argmax(w[live])]
            w2, m2, v2 = split_components(w[[heavy]], m[[heavy]], v[[heavy]], [0],
                                          self.split_epsilon)
            w[heavy], m[heavy], v[heavy] = w2[0], m2[0], v2[0]
            w[slot], m[slot], v[slot] = w2[1], m2[1], v2[1]
        return w / w.sum(), m, v

    # --- staged training (:class:`~ipem.em.hooks.StagedHooks`) ----------------------
    def initialize(self, data, rng, given):
        """The first stage: one Gaussian (``init="split"``) or a k-means start."""
        k0 = self._stages()[0][0]
        if self.init == "split":
            v = np.maximum(data.var[None, :], self.variance_floor_)
            return {"weights": np.ones(1), "means": data.mean[None, :].copy(), "covariances": v}
        stats = kmeans_init_stats(data, k0, "diag", rng, self.backend, self.chunk_size)
        weights, means_s, cov = m_step(stats, "diag", self.reg_covar)
        cov, _ = apply_variance_floor(cov, self.variance_floor_)
        return {"weights": weights, "means": means_s + data.mean, "covariances": cov}

    def grow(self, params, k):
        """Split the heaviest components until there are ``k`` (several rounds if
        removed components left fewer than ``k / 2``)."""
        w, m, v = params["weights"], params["means"], params["covariances"]
        while w.size < k:
            heaviest = np.argsort(-w, kind="stable")[:k - w.size]
            w, m, v = split_components(w, m, v, np.sort(heaviest), self.split_epsilon)
        return {"weights": w, "means": m, "covariances": v}

    def stage_size(self, params):
        """The number of Gaussians of ``params``."""
        return int(params["weights"].size)

    def _fit_runs(self, data, rng, given):
        if data.n_samples < 2:
            raise ValueError(f"X has {data.n_samples} sample(s): a UBM needs at least 2 frames "
                             "to estimate variances (n_samples=1 cannot be fitted)")
        self.variance_floor_ = (self.variance_floor * data.var if self.floor_mode == "relative"
                                else np.full(data.n_features, self.variance_floor))
        if self.reg_covar == 0:
            flat = np.flatnonzero((data.var == 0) & (self.variance_floor_ <= 0))
            if flat.size:
                raise ParameterError(
                    f"feature column(s) {flat.tolist()} are constant (zero variance), so their "
                    "variances cannot be estimated: ", "variance_floor",
                    hint="drop them, or set an absolute variance_floor "
                    "(floor_mode='absolute') or reg_covar > 0")
        result, self.resumed_from_ = run_stages(
            self, data, rng, self._stages(), callbacks=self._callbacks(),
            checkpoint=self.checkpoint, resume=self.resume, every=self.checkpoint_every)
        return result

    def _set_fitted(self, result, data):
        p = result.params
        self.weights_, self.means_, self.covariances_ = p["weights"], p["means"], p["covariances"]
        self.history_ = result.history
        self.n_iter_ = result.n_iter
        self.lower_bound_ = result.objective
        self.converged_ = result.converged

    # --- checkpoints ---------------------------------------------------------------
    #: settings a checkpoint must have been written with to be resumed
    _RESUME_SETTINGS = ("n_components", "init", "init_components", "stage_iter", "final_iter",
                        "tol", "split_epsilon", "variance_floor", "floor_mode", "min_occupancy",
                        "min_weight", "dead_policy", "reg_covar")

    def _settings(self):
        return {k: getattr(self, k) for k in self._RESUME_SETTINGS}

    def _identity(self, data):
        """What a checkpoint must have been written for: the seed and the data.

        Feature files count with their paths, keys and frame counts, in the
        order given to ``fit``; arrays with their size (their mean and
        variance are compared separately).
        """
        seed = self.random_state
        if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            seed = int(seed)
        elif seed is not None:
            seed = type(seed).__name__  # a generator object: nothing to compare
        ident = {"random_state": seed}
        files = getattr(self, "_files_identity", None)
        if files is None and data.files is not None:  # a DistributedData given to fit
            files = _files_identity([r for shard in data.files for r in shard])
        ident.update(files if files is not None else
                     {"frames": int(data.n_samples), "features": int(data.n_features)})
        return ident

    def write_checkpoint(self, path, params, pos, rng, history, data):
        """Write the training state atomically (see :mod:`ipem.io.models`)."""
        save_npz_atomic(
            path, format_version=np.array(FORMAT_VERSION), weights=params["weights"],
            settings_json=np.array(json.dumps(self._settings())),
            identity_json=np.array(json.dumps(self._identity(data))),
            converged=np.array(bool(pos.converged)),
            means=params["means"], covariances=params["covariances"],
            stage_index=np.array(pos.stage_index), iter_in_stage=np.array(pos.iter_in_stage),
            stage_done=np.array(bool(pos.stage_done)), n_components=np.array(self.n_components),
            data_shape=np.array(data.shape), data_mean=data.mean, data_var=data.var,
            history_json=np.array(records_to_json(history)), **rng_to_arrays(rng))

    def read_checkpoint(self, path, data):
        """Read a checkpoint, trusting nothing in it (see :mod:`ipem.io.models`)."""
        stages = self._stages()
        fresh = "delete the checkpoint (or pass resume=False) to train from the start"
        try:
            z = read_npz(path, array_limits(self.n_components, data.n_features))
        except ValueError as exc:
            raise ParameterError(f"{exc}; ", "checkpoint", hint=fresh) from None
        missing = [k for k in ("settings_json", "stage_index", "data_shape", "rng_keys")
                   if k not in z]
        if missing:
            raise ValueError(f"{path} is not a UBM training checkpoint (no {missing[0]!r}; "
                             "a model file?): give another checkpoint path")
        saved = _json_dict(z, "settings_json", path)
        changed = {k: (saved.get(k), v) for k, v in self._settings().items()
                   if saved.get(k) != v}
        if changed:
            what = ", ".join(f"{{name:{k}}}={new!r} (checkpoint: {old!r})"
                             for k, (old, new) in changed.items())
            raise ParameterError(f"checkpoint {path} was written with other settings: {what}; ",
                                 tuple(changed), hint="use the same settings, another "
                                 "checkpoint path or resume=False")
        if "identity_json" not in z:
            raise ParameterError(f"checkpoint {path} has no record of its seed and data "
                                 "(written by an older ipem): ", "checkpoint", hint=fresh)
        old, new = _json_dict(z, "identity_json", path), self._identity(data)
        if old.get("random_state") != new["random_state"]:
            raise ParameterError(f"checkpoint {path} was written with {{name}}="
                                 f"{old.get('random_state')!r}, this training has {{name}}="
                                 f"{new['random_state']!r}: {{hint}}, or use the same data and "
                                 "seed", "random_state", hint=fresh)
        shape = z["data_shape"]
        if shape.shape != (2,) or shape.dtype.kind not in "iu" or \
                tuple(int(n) for n in shape) != data.shape or old != new or \
                not _close(z.get("data_mean"), data.mean) or \
                not _close(z.get("data_var", data.var), data.var):
            same = _describe(old) == _describe(new)
            raise ParameterError(f"checkpoint {path} was written for other data "
                                 f"({_describe(old)}; this training: {_describe(new)}"
                                 f"{': other files or another order' if same else ''}): "
                                 "{hint}, or use the same data and seed", "checkpoint",
                                 hint=fresh)
        try:
            params, pos, rng = self._checkpoint_state(z, path, stages, data.n_features)
            history = history_from(z, path)
        except ValueError as exc:
            raise ParameterError(f"{exc}; ", "checkpoint", hint=fresh) from None
        return params, pos, rng, history

    def _checkpoint_state(self, z, path, stages, n_features):
        """The model, position and random state of a checkpoint, each checked."""
        stage_index = _scalar(z, "stage_index", "iu", path)
        if not 0 <= stage_index < len(stages):
            raise invalid_model_file(path, f"stage_index={stage_index}, but this training has "
                                     f"{len(stages)} stages ({[s for s, _ in stages]} Gaussians)")
        size, max_iter = stages[stage_index]
        iter_in_stage = _scalar(z, "iter_in_stage", "iu", path)
        if not 0 <= iter_in_stage <= max_iter:
            raise invalid_model_file(path, f"iter_in_stage={iter_in_stage}, but stage "
                                     f"{stage_index} runs at most {max_iter} iterations")
        pos = Position(stage_index, iter_in_stage, _scalar(z, "stage_done", "b", path),
                       _scalar(z, "converged", "b", path))
        w, m, v = check_gmm(z["weights"], z["means"], z["covariances"], path,
                            n_features=n_features)
        # dead components may have been removed, never added
        if w.size > size or (w.size != size and self.dead_policy != "remove"):
            raise invalid_model_file(path, f"{w.size} Gaussians at stage {stage_index}, which "
                                     f"has {size}")
        keys, meta, cached = (z.get(k) for k in ("rng_keys", "rng_meta", "rng_cached"))
        if keys.shape != (624,) or keys.dtype != np.uint32 or meta is None or \
                meta.shape != (2,) or meta.dtype.kind not in "iu" or \
                not 0 <= int(meta[0]) <= 624 or cached is None or cached.shape != (1,) or \
                cached.dtype.kind != "f":
            raise invalid_model_file(path, "the random state (rng_keys, rng_meta, rng_cached) "
                                     "is not that of a legacy RandomState")
        return {"weights": w, "means": m, "covariances": v}, pos, rng_from_arrays(z)

    # --- use -------------------------------------------------------------------------
    def to_gaussian_mixture(self):
        """The trained UBM as a fitted :class:`ipem.GaussianMixture` (diag)."""
        gm = GaussianMixture(self.weights_.size, covariance_type="diag", backend=self.backend,
                             chunk_size=self.chunk_size)
        gm.weights_ = self.weights_
        gm.means_ = self.means_
        gm.covariances_ = self.covariances_
        gm.precisions_cholesky_ = 1.0 / np.sqrt(self.covariances_)
        gm.precisions_ = 1.0 / self.covariances_
        gm.n_features_in_ = self.means_.shape[1]
        gm.converged_ = getattr(self, "converged_", True)
        gm.n_iter_ = getattr(self, "n_iter_", 0)
        gm.lower_bound_ = getattr(self, "lower_bound_", -np.inf)
        return gm

    def score_samples(self, X):
        """Per-frame log-likelihood under the UBM, shape (n_samples,)."""
        return self.to_gaussian_mixture().score_samples(X)

    def score(self, X, y=None):
        """Mean per-frame log-likelihood under the UBM."""
        return float(np.mean(self.score_samples(X)))

    def save(self, path):
        """Write the model (weights, means, variances, history) atomically to ``.npz``."""
        return save_npz_atomic(path, format_version=np.array(FORMAT_VERSION),
                               weights=self.weights_, means=self.means_,
                               covariances=self.covariances_,
                               history_json=np.array(records_to_json(self.history_)))

    @classmethod
    def load(cls, path, **kwargs):
        """A trainer holding the model stored in ``path`` (for scoring or MAP)."""
        z = load_model(path)
        obj = cls(n_components=int(z["weights"].size), **kwargs)
        obj.weights_, obj.means_, obj.covariances_ = z["weights"], z["means"], z["covariances"]
        obj.history_ = z["history"]
        obj.n_iter_ = len(obj.history_)
        obj.n_features_in_ = obj.means_.shape[1]
        return obj
