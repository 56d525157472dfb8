"""The parameters of a diagonal Gaussian mixture as one named value.

A UBM, a speaker model and the GMM an i-vector extractor is built on are the
same three arrays; :class:`GMMParams` names them (and stays a tuple:
``w, m, v = params`` keeps working).  :func:`ubm_params` reads them from any
usual form (a fitted estimator, a dict, a tuple, a model file) and checks
them (:func:`as_gmm_params`).
"""
from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from ..io.models import load_model

__all__ = ["GMMParams", "as_gmm_params", "ubm_params"]


class GMMParams(NamedTuple):
    """Weights, means and diagonal covariances (variances) of a Gaussian mixture.

    Attributes
    ----------
    weights : ndarray of shape (n_components,)
    means : ndarray of shape (n_components, n_features)
    covariances : ndarray of shape (n_components, n_features)
        Diagonal covariances (the variances).
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray

    @property
    def n_components(self):
        """Number of Gaussians."""
        return int(self.means.shape[0])

    @property
    def n_features(self):
        """Features per frame."""
        return int(self.means.shape[1])


def as_gmm_params(weights, means, variances, what="UBM"):
    """Validated float64 copies of the parameters of a diagonal GMM.

    Parameters
    ----------
    weights : array-like of shape (n_components,)
    means : array-like of shape (n_components, n_features)
    variances : array-like of shape (n_components, n_features)
    what : str
        How messages name the model (``"UBM"``, ``"model alice"``).

    Returns
    -------
    GMMParams

    Raises
    ------
    ValueError
        For arrays of the wrong shapes, non-finite values, weights that are
        negative or do not sum to 1, or variances that are not positive.
    """
    try:
        w = np.array(weights, dtype=np.float64)
        m = np.array(means, dtype=np.float64)
        v = np.array(variances, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}: parameters are not numeric arrays ({exc})") from None
    if w.ndim != 1 or w.size == 0:
        raise ValueError(f"{what}: weights must have shape (n_components,), got {w.shape}")
    k = w.size
    if m.ndim != 2 or m.shape[0] != k or m.shape[1] == 0:
        raise ValueError(f"{what}: means must have shape ({k}, n_features), got {m.shape}")
    if v.shape != m.shape:
        raise ValueError(f"{what}: variances must be diagonal, shape {m.shape} like the "
                         f"means, got {v.shape}")
    for name, a in (("weights", w), ("means", m), ("variances", v)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{what}: {name} contain NaN or Inf")
    if np.any(w < 0) or not np.isclose(w.sum(), 1.0, rtol=0, atol=1e-6):
        raise ValueError(f"{what}: weights must be non-negative and sum to 1 "
                         f"(sum {w.sum():.8g})")
    if np.any(v <= 0):
        raise ValueError(f"{what}: variances must be positive")
    return GMMParams(w, m, v)


def ubm_params(ubm):
    """Weights, means and diagonal variances of a UBM given in any usual form.

    Parameters
    ----------
    ubm : object, dict, tuple or path
        An object with ``weights_``, ``means_`` and ``covariances_`` (a fitted
        :class:`ipem.UBMTrainer`, or a diagonal :class:`ipem.GaussianMixture`);
        an object with ``weights``, ``means`` and ``variances`` (a
        :class:`ipem.speaker.map.SpeakerModel`, named by its ``speaker_id``);
        a dict with keys ``weights_``, ``means_``, ``covariances_`` (or
        ``weights``, ``means``, ``covariances``, as returned by
        :func:`ipem.io.load_model`); a ``(weights, means, variances)`` tuple
        (a GMMParams); or the path of a model file written by
        ``UBMTrainer.save``.

    Returns
    -------
    GMMParams
        ``weights`` (n_components,), ``means`` and ``covariances``
        (n_components, n_features), float64, validated.
    """
    if isinstance(ubm, (str, os.PathLike)):
        z = load_model(ubm)
        return as_gmm_params(z["weights"], z["means"], z["covariances"], f"UBM {os.fspath(ubm)}")
    if all(hasattr(ubm, n) for n in ("weights", "means", "variances")):
        return as_gmm_params(ubm.weights, ubm.means, ubm.variances,
                             f"model {getattr(ubm, 'speaker_id', '')}".rstrip())
    if isinstance(ubm, dict):
        for names in (("weights_", "means_", "covariances_"),
                      ("weights", "means", "covariances"),
                      ("weights", "means", "variances")):
            if all(n in ubm for n in names):
                return as_gmm_params(*(ubm[n] for n in names))
        raise ValueError("UBM dict must have keys weights_, means_, covariances_ "
                         f"(or weights, means, covariances); got {sorted(ubm)}")
    if isinstance(ubm, (tuple, list)) and len(ubm) == 3:
        return as_gmm_params(*ubm)
    if all(hasattr(ubm, n) for n in ("weights_", "means_", "covariances_")):
        cov_type = getattr(ubm, "covariance_type", "diag")
        if cov_type != "diag":
            raise ValueError(f"the UBM must have diagonal covariances, got "
                             f"covariance_type={cov_type!r}")
        return as_gmm_params(ubm.weights_, ubm.means_, ubm.covariances_)
    raise ValueError(f"cannot read UBM parameters from {type(ubm).__name__}: expected a fitted "
                     "UBMTrainer/GaussianMixture, a dict, a (weights, means, variances) tuple "
                     "or a model file path")
