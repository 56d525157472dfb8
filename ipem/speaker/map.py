"""GMM-UBM speaker models: Baum-Welch statistics and MAP adaptation.

A speaker model is the universal background model (UBM, a diagonal GMM)
adapted to the speaker's enrollment frames by maximum a posteriori
estimation (Reynolds, Quatieri & Dunn, "Speaker verification using adapted
Gaussian mixture models", Digital Signal Processing 10, 2000):

1. Baum-Welch statistics of the frames against the UBM
   (:func:`utterance_stats`): ``n_k = sum_t g_tk``, ``f_k = sum_t g_tk x_t``,
   ``s_k = sum_t g_tk x_t**2`` with ``g_tk`` the UBM responsibilities.
2. Interpolation of the UBM and the speaker's ML estimates with data
   dependent coefficients ``alpha_k = n_k / (n_k + r)`` (:func:`map_adapt`).

:func:`adapt_speakers` does both for many speakers, in load-balanced tasks of
up to 32 MiB of models over a controller's engines; every engine reads its
speakers' feature files itself.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np

from ..io.atomic import atomic_files, remove_stale_temporaries, save_npz_atomic
from ..io.models import array_limits, check_gmm, invalid_model_file, read_npz, text_scalar
from ..io.sources import load_source, resolve_source
from ..kernels import get_kernels
from ..mixture.params import GMMParams, as_gmm_params, ubm_params
from ..parallel import as_controller
from ..validation import ParameterError, check_frames

logger = logging.getLogger(__name__)

__all__ = ["utterance_stats", "map_adapt", "SpeakerModel", "adapt_speakers"]

#: Default floor of adapted variances, as a fraction of the UBM's variances.
VARIANCE_FLOOR = 1e-3
_MODEL_KIND = "ipem-speaker-model"
#: Most bytes of models in one task of :func:`adapt_speakers` (32 MiB: 67 models of 512 x 60;
#: 256 models at most): a task's model files are synced in the background while the next
#: are computed and renamed into place together (:func:`ipem.io.atomic.atomic_files`), so
#: that the disk is waited for once per task; a task is still at most 1/16 of a place's
#: speakers, for the load balance.
_TASK_BYTES = 32 * 2**20



# ---------------------------------------------------------------------------
# statistics
# ---------------------------------------------------------------------------

def utterance_stats(X, weights, means, variances, backend=None):
    """Baum-Welch statistics of frames against a diagonal GMM (UBM).

    Parameters
    ----------
    X : ndarray of shape (n_frames, n_features), float32 or float64
    weights : ndarray of shape (n_components,)
    means, variances : ndarray of shape (n_components, n_features)
    backend : {"c", "numpy"} or None
        Kernel backend (default: :data:`ipem.BACKEND`).

    Returns
    -------
    n : ndarray of shape (n_components,), float64
        Zeroth order: ``sum_t g_tk`` (``g_tk``: responsibility of component
        ``k`` for frame ``t``).
    f : ndarray of shape (n_components, n_features), float64
        First order: ``sum_t g_tk x_t``.
    s : ndarray of shape (n_components, n_features), float64
        Second order: ``sum_t g_tk x_t**2`` (elementwise).

    Notes
    -----
    The kernel runs around ``shift`` = the utterance mean, so float32
    features with a large offset do not cancel; its statistics of
    ``y = x - shift`` are converted back exactly:
    ``f = sum g (y + shift) = sx + n shift`` and
    ``s = sum g (y + shift)**2 = sxx + 2 shift sx + n shift**2``.
    """
    w, m, v = as_gmm_params(weights, means, variances)
    X = check_frames(X, n_features=m.shape[1])
    shift = X.mean(axis=0, dtype=np.float64)
    with np.errstate(divide="ignore"):
        log_w = np.log(w)
    nk, sx, sxx, _ = get_kernels(backend).gmm_diag_step(X, shift, m - shift, 1.0 / v, log_w)
    n = np.asarray(nk, dtype=np.float64)
    sx = np.asarray(sx, dtype=np.float64)
    sxx = np.asarray(sxx, dtype=np.float64)
    f = sx + n[:, None] * shift
    s = sxx + 2.0 * shift * sx + n[:, None] * (shift * shift)
    return n, f, s


# ---------------------------------------------------------------------------
# MAP adaptation
# ---------------------------------------------------------------------------

def _check_relevance(value, name):
    try:
        r = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{{name}} must be a number >= 0, got {value!r}", name) from None
    if not np.isfinite(r) or r < 0:
        raise ParameterError(f"{{name}} must be a finite number >= 0, got {value!r}", name)
    return r


def _check_adapt(adapt):
    if not isinstance(adapt, str) or not adapt or set(adapt) - set("mwv"):
        raise ParameterError(f"{{name}}={adapt!r}: expected a non-empty string of the letters "
                             "'m' (means), 'w' (weights) and 'v' (variances), e.g. 'm' or "
                             "'mwv'", "adapt")
    return adapt


def map_adapt(weights, means, variances, n, f, s, *, relevance_factor=16.0, adapt="m",
              relevance_weights=None, relevance_variances=None,
              variance_floor=VARIANCE_FLOOR):
    """MAP-adapt a diagonal UBM to Baum-Welch statistics (Reynolds et al. 2000).

    With ``E_k[x] = f_k / n_k``, ``E_k[x**2] = s_k / n_k``, ``T = sum_k n_k``
    and, per parameter type ``p``, ``alpha_k = n_k / (n_k + r_p)``:

    * means: ``mu'_k = alpha_k E_k[x] + (1 - alpha_k) mu_k``;
    * weights: ``w'_k = [alpha_k n_k / T + (1 - alpha_k) w_k]``, then
      normalised to sum to 1;
    * variances: ``s'_k = alpha_k E_k[x**2] + (1 - alpha_k)(s_k + mu_k**2)
      - mu'_k**2``, where ``mu'_k`` is the adapted mean when ``"m"`` is
      adapted and the UBM mean otherwise.  The result is floored at
      ``variance_floor`` times the UBM variance, so that it stays positive.

    Components with ``n_k = 0`` keep the UBM's mean and variance exactly;
    their weight is only rescaled by the normalisation.

    Parameters
    ----------
    weights : ndarray of shape (n_components,)
    means, variances : ndarray of shape (n_components, n_features)
        The UBM (diagonal variances).
    n : ndarray of shape (n_components,)
    f, s : ndarray of shape (n_components, n_features)
        Statistics from :func:`utterance_stats` (summed over all of a
        speaker's utterances).
    relevance_factor : float, default=16.0
        ``r`` for every parameter type not given its own below (the usual
        value is 16).  0 gives the maximum-likelihood re-estimate for every
        component with data.
    adapt : str, default="m"
        Which parameters to adapt: any combination of ``"m"`` (means),
        ``"w"`` (weights) and ``"v"`` (variances); the others are the UBM's.
    relevance_weights, relevance_variances : float, optional
        Separate relevance factors for weights and variances.
    variance_floor : float, default=1e-3
        Adapted variances are kept >= ``variance_floor * UBM variance``.

    Returns
    -------
    GMMParams
        The adapted ``weights`` (n_components,), ``means`` and
        ``covariances`` (variances, (n_components, n_features)), float64.
    """
    w, m, v = as_gmm_params(weights, means, variances)
    k, d = m.shape
    adapt = _check_adapt(adapt)
    r_m = _check_relevance(relevance_factor, "relevance_factor")
    r_w = r_m if relevance_weights is None else _check_relevance(relevance_weights,
                                                                 "relevance_weights")
    r_v = r_m if relevance_variances is None else _check_relevance(relevance_variances,
                                                                   "relevance_variances")
    floor = _check_relevance(variance_floor, "variance_floor")
    n = np.asarray(n, dtype=np.float64)
    f = np.asarray(f, dtype=np.float64)
    s = np.asarray(s, dtype=np.float64)
    if n.shape != (k,):
        raise ValueError(f"n must have shape ({k},) (one count per UBM component), got {n.shape}")
    if f.shape != (k, d) or s.shape != (k, d):
        raise ValueError(f"f and s must have shape ({k}, {d}) like the UBM means, got "
                         f"{f.shape} and {s.shape}")
    for name, a in (("n", n), ("f", f), ("s", s)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"statistics {name} contain NaN or Inf")
    if np.any(n < 0):
        raise ValueError("statistics n must be non-negative")
    if np.any(s < -1e-9 * np.maximum(1.0, np.abs(s).max())):
        raise ValueError("statistics s (second order) must be non-negative")

    seen = n > 0
    safe_n = np.where(seen, n, 1.0)
    ex = f / safe_n[:, None]                          # E_k[x]
    # per-component sample variance; clamped against rounding
    var_ml = np.maximum(s / safe_n[:, None] - ex * ex, 0.0)

    def alpha(r):
        with np.errstate(invalid="ignore", divide="ignore"):
            a = np.where(seen, n / np.where(seen, n + r, 1.0), 0.0)
        return a

    new_w, new_m, new_v = w.copy(), m.copy(), v.copy()
    a_m = alpha(r_m)[:, None] if "m" in adapt else np.zeros((k, 1))
    if "m" in adapt:
        new_m = np.where(seen[:, None], a_m * ex + (1.0 - a_m) * m, m)
    if "v" in adapt:
        a_v = alpha(r_v)[:, None]
        # alpha_v E[x^2] + (1 - alpha_v)(var + mu^2) - mu'^2 with mu' = mu + a_m (E[x] - mu),
        # rearranged around mu so that nothing large cancels:
        diff = ex - m
        adapted = (a_v * var_ml + (1.0 - a_v) * v + (a_v - a_m * a_m) * diff * diff
                   + 2.0 * (a_v - a_m) * m * diff)
        adapted = np.maximum(adapted, floor * v)
        new_v = np.where(seen[:, None], adapted, v)
    if "w" in adapt:
        total = n.sum()
        if total > 0:
            a_w = alpha(r_w)
            raw = a_w * n / total + (1.0 - a_w) * w
            new_w = raw / raw.sum()
    return GMMParams(new_w, new_m, new_v)


# ---------------------------------------------------------------------------
# speaker models
# ---------------------------------------------------------------------------

@dataclass
class SpeakerModel:
    """A MAP-adapted speaker GMM.

    Attributes
    ----------
    speaker_id : str
    weights : ndarray of shape (n_components,)
    means, variances : ndarray of shape (n_components, n_features)
    n_frames : int
        Number of enrollment frames it was adapted on.
    """

    speaker_id: str
    weights: np.ndarray
    means: np.ndarray
    variances: np.ndarray
    n_frames: int = 0

    def __repr__(self):
        return (f"SpeakerModel(speaker_id={self.speaker_id!r}, "
                f"n_components={np.shape(self.weights)[0]}, "
                f"n_features={np.shape(self.means)[1]}, n_frames={self.n_frames})")

    def params(self):
        """The model's parameters.

        Returns
        -------
        GMMParams
            ``(weights, means, covariances)``, the covariances being the variances.
        """
        return GMMParams(self.weights, self.means, self.variances)

    def save(self, path):
        """Write the model atomically to an ``.npz`` file (no pickle); returns the path."""
        return save_npz_atomic(path, **self._arrays())

    def _arrays(self):
        """The arrays of its ``.npz`` file, by name."""
        return dict(kind=np.array(_MODEL_KIND), speaker_id=np.array(str(self.speaker_id)),
                    weights=np.asarray(self.weights, dtype=np.float64),
                    means=np.asarray(self.means, dtype=np.float64),
                    variances=np.asarray(self.variances, dtype=np.float64),
                    n_frames=np.array(int(self.n_frames), dtype=np.int64))

    @classmethod
    def load(cls, path, *, speaker_id=None, n_components=None, n_features=None):
        """Read and check a model written by :meth:`save`.

        Nothing in the file is trusted: see :func:`ipem.io.models.read_npz`
        (sizes checked before anything is decompressed, no pickle) and
        :func:`ipem.io.models.check_gmm` (shapes, finite values, weights
        summing to 1, positive variances).

        Parameters
        ----------
        path : str or os.PathLike
        speaker_id : str, optional
            The speaker the file must hold, e.g. the model id that named it.
        n_components, n_features : int, optional
            The size the model must have (its UBM's); also bounds what is read.

        Returns
        -------
        SpeakerModel

        Raises
        ------
        ValueError
            ``"not a valid ipem model file: <path> (...)"`` for a corrupt,
            oversized or inconsistent file or a model of another size;
            ``"<path>: not an ipem speaker model file (no 'speaker_id')"``;
            a file holding another speaker than ``speaker_id``.
        """
        path = os.fspath(path)
        data = read_npz(path, array_limits(n_components, n_features))
        missing = [k for k in ("speaker_id", "weights", "means", "variances") if k not in data]
        if missing:
            raise ValueError(f"{path}: not an ipem speaker model file (no {missing[0]!r})")
        kind = text_scalar(data, "kind", path, default=_MODEL_KIND)
        if kind != _MODEL_KIND:
            raise invalid_model_file(path, f"kind {kind!r}, expected {_MODEL_KIND!r}")
        stored = text_scalar(data, "speaker_id", path)
        if speaker_id is not None and stored != str(speaker_id):
            raise ValueError(f"{path} holds the model of speaker {stored!r}, not of "
                             f"{str(speaker_id)!r}: a model file is named after its speaker "
                             "(<models>/<speaker_id>.npz)")
        w, m, v = check_gmm(data["weights"], data["means"], data["variances"], path,
                            n_components=n_components, n_features=n_features,
                            names=("weights", "means", "variances"))
        n_frames = data.get("n_frames", np.array(0))
        if n_frames.ndim != 0 or n_frames.dtype.kind not in "iu" or n_frames < 0:
            raise invalid_model_file(path, "n_frames is not a count")
        return cls(stored, w, m, v, int(n_frames))


def _check_speaker_id(spk):
    name = str(spk)
    if not name or name in (".", "..") or os.sep in name or (os.altsep and os.altsep in name):
        raise ValueError(f"speaker id {spk!r} cannot be used as a file name")
    return name


def _adapt_one(item, params, relevance, adapt, backend, dtype):
    """One speaker: read, accumulate statistics, adapt."""
    spk, source = item
    w, m, v = params
    X = load_source(source, dtype=dtype, n_features=params.n_features, what=f"speaker {spk}")
    n, f, s = utterance_stats(X, w, m, v, backend=backend)
    r, r_w, r_v = relevance
    new = map_adapt(w, m, v, n, f, s, relevance_factor=r, adapt=adapt, relevance_weights=r_w,
                    relevance_variances=r_v)
    return SpeakerModel(str(spk), *new, n_frames=int(X.shape[0]))


def _adapt_task(batch, params, relevance, adapt, out_dir, backend, dtype):
    """A few speakers: their models, or (with ``out_dir``) their model files, written
    together: each complete on disk before it appears under its name."""
    params = GMMParams(*params)
    if out_dir is None:
        return [_adapt_one(item, params, relevance, adapt, backend, dtype) for item in batch]
    with atomic_files() as files:
        for item in batch:
            model = _adapt_one(item, params, relevance, adapt, backend, dtype)
            files.save_npz(os.path.join(out_dir, f"{model.speaker_id}.npz"), **model._arrays())
    return files.paths


def adapt_speakers(ubm, enrollment, *, controller=None, relevance_factor=16.0, adapt="m",
                   out_dir=None, progress=True, backend=None, dtype=np.float32,
                   relevance_weights=None, relevance_variances=None):
    """MAP-adapt the UBM to every enrolled speaker, in load-balanced tasks of a few speakers.

    Parameters
    ----------
    ubm : fitted UBMTrainer, diagonal GaussianMixture, dict, tuple or path
        See :func:`ubm_params`.
    enrollment : dict
        ``speaker_id -> sources``; sources are a feature file path, a list of
        them (anything :func:`ipem.features.list_features` reads: htk, npy,
        h5, Kaldi ``.scp``, ``.lst`` lists) or of FeatureRefs, or an array of
        shape (n_frames, n_features).  A speaker's files are concatenated.
    controller : Controller, int, DirectView or None
        Where the tasks run (:func:`ipem.as_controller`).  On engines each
        task reads its own speaker's files.
    relevance_factor : float, default=16.0
    adapt : str, default="m"
        See :func:`map_adapt`.
    out_dir : str, optional
        If given, each task writes ``<out_dir>/<speaker_id>.npz`` for its
        speakers and the result maps speakers to those paths instead of
        models.  Each file is atomic (complete on disk before it appears
        under its name); each is synced in the background while the task
        computes the next, and a task's files are renamed into place
        together at its end (:func:`ipem.io.atomic.atomic_files`), so that
        the disk is waited for once per task, not once per speaker.
    progress : bool, default=True
        Show a tqdm progress bar (of tasks: up to 32 MiB of models each,
        and at most 1/16 of an engine's share of the speakers).
    backend : {"c", "numpy"} or None
    dtype : {numpy.float32, numpy.float64}, default=numpy.float32
        Dtype frames are read from files in (arrays keep theirs).
    relevance_weights, relevance_variances : float, optional
        See :func:`map_adapt`.

    Returns
    -------
    dict
        ``speaker_id -> SpeakerModel`` (or ``-> path`` with ``out_dir``), in
        the order of ``enrollment``.

    Raises
    ------
    ValueError
        For a bad option or speaker id; for a missing or malformed feature
        file (an :class:`ipem.EngineValueError` from the tasks, or an
        :class:`ipem.io.FeatureFileError`; the message names the file).
    """
    params = ubm_params(ubm)
    if not isinstance(enrollment, dict):
        raise ValueError("enrollment must be a dict speaker_id -> feature files or array")
    if not enrollment:
        raise ValueError("enrollment is empty: no speakers to adapt")
    _check_adapt(adapt)
    relevance = (_check_relevance(relevance_factor, "relevance_factor"),
                 None if relevance_weights is None else
                 _check_relevance(relevance_weights, "relevance_weights"),
                 None if relevance_variances is None else
                 _check_relevance(relevance_variances, "relevance_variances"))
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise ValueError(f"dtype={dtype!r}: expected float32 or float64")
    get_kernels(backend)
    if out_dir is not None:
        out_dir = os.path.abspath(os.fspath(out_dir))
        os.makedirs(out_dir, exist_ok=True)
    items = []
    for spk, source in enrollment.items():
        name = _check_speaker_id(spk) if out_dir is not None else spk
        items.append((name, resolve_source(source, f"speaker {spk}")))
    ctrl = as_controller(controller)
    # many speakers per task where there are many per place: one wait for the disk per task
    k, d = params.means.shape
    per_task = max(1, min(256, _TASK_BYTES // ((2 * d + 1) * k * 8),
                          len(items) // (16 * max(1, getattr(ctrl, "n_shards", None) or 1))))
    batches = [items[a:a + per_task] for a in range(0, len(items), per_task)]
    logger.debug("adapting %d speakers on %s, %d per task", len(items), ctrl, per_task)
    try:
        with ctrl.broadcast(params) as shared:  # the UBM goes to each engine once
            results = ctrl.map_tasks(_adapt_task, batches, shared, relevance, adapt, out_dir,
                                     backend, np.dtype(dtype).str, progress=progress,
                                     desc="MAP adaptation")
    finally:
        if out_dir is not None:  # what an engine lost mid-write left behind
            remove_stale_temporaries(os.path.join(out_dir, f"{name}.npz") for name, _ in items)
    return {spk: res for spk, res in zip(enrollment, (r for batch in results for r in batch))}
