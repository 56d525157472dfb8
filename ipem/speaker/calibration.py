"""Score calibration and linear fusion by prior-weighted logistic regression.

Raw verification scores (average log-likelihood ratios of a GMM-UBM, or
normalised scores) rank trials well but are not log-likelihood ratios, so the
Bayes threshold of :func:`ipem.speaker.metrics.bayes_threshold` misplaces
decisions (actDCF far above minDCF).  An affine map learned on a development
trial list turns them into calibrated natural-log LLRs; with the scores of
several systems the same map is their linear fusion (BOSARIS' ``train_linear_fusion``,
Brummer & van Leeuwen 2006)::

    llr = w . s + b,        s: the trial's scores, shape (n_systems,)

``(w, b)`` minimise the prior-weighted cross-entropy, in bits,

    C(w, b) = p / N_tar  sum_tar log2(1 + exp(-(llr + logit p)))
            + (1 - p) / N_non sum_non log2(1 + exp(llr + logit p)),

a logistic regression whose targets weigh ``p`` and non-targets ``1 - p``
in total, whatever their numbers.  The offset ``logit p`` is the log prior
odds, so ``llr + logit p`` are posterior log odds at prior ``p`` and ``llr``
itself stays a likelihood ratio, usable at any operating point.  ``C`` at
``p = 0.5`` is :func:`ipem.speaker.metrics.cllr`.

The default ``p`` is the effective prior of the SRE 2008 operating point
(0.0917, :func:`ipem.speaker.metrics.effective_prior`), where the demo's
actDCF is read.
"""
from __future__ import annotations

import json
import logging
import math
import os

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

from ..io.atomic import write_text_atomic
from ..io.preflight import open_regular
from ..validation import ParameterError
from .metrics import SRE2008, effective_prior

logger = logging.getLogger(__name__)

__all__ = ["LogisticCalibration", "DEFAULT_PRIOR", "load_calibration"]

#: Training prior by default: the effective prior of :data:`ipem.speaker.metrics.SRE2008`.
DEFAULT_PRIOR = effective_prior(*SRE2008)

#: Largest calibration file read, in bytes (one weight per fused system: a few KiB).
MAX_CALIBRATION_BYTES = 1 << 24

_FORMAT = "ipem-calibration"
_VERSION = 1


def _check_class(a, name, n_systems=None):
    try:
        a = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} scores are not numeric: {exc}") from exc
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name} scores must have shape (n_trials,) or (n_trials, n_systems), "
                         f"got {a.shape}")
    if a.shape[0] == 0:
        raise ValueError(f"{name} scores are empty")
    if n_systems is not None and a.shape[1] != n_systems:
        raise ValueError(f"{name} scores have {a.shape[1]} systems (columns), expected "
                         f"{n_systems}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} scores contain NaN or infinite values")
    return a


def _objective(theta, x_tar, x_non, prior, regularization):
    """Prior-weighted cross-entropy (bits) and its gradient in ``theta = (v, c)``."""
    v, c = theta[:-1], theta[-1]
    offset = c + math.log(prior / (1.0 - prior))
    z_tar = x_tar @ v + offset
    z_non = x_non @ v + offset
    w_tar = prior / x_tar.shape[0] / math.log(2.0)
    w_non = (1.0 - prior) / x_non.shape[0] / math.log(2.0)
    loss = (w_tar * np.logaddexp(0.0, -z_tar).sum() + w_non * np.logaddexp(0.0, z_non).sum()
            + 0.5 * regularization * float(v @ v))
    g_tar = -w_tar * expit(-z_tar)          # d loss / d z, per trial
    g_non = w_non * expit(z_non)
    grad = np.empty_like(theta)
    grad[:-1] = x_tar.T @ g_tar + x_non.T @ g_non + regularization * v
    grad[-1] = g_tar.sum() + g_non.sum()
    return loss, grad


class LogisticCalibration:
    """Affine calibration (one system) or linear fusion (several) of scores to LLRs.

    Parameters
    ----------
    prior : float, default=DEFAULT_PRIOR
        Effective target prior the training weighs the classes with (in
        (0, 1)); the default is that of the SRE 2008 operating point.
    regularization : float, default=1e-6
        Weight of ``0.5 * ||v||^2``, ``v`` the weights of the standardised
        scores; it keeps the weights finite when the development scores
        separate the classes perfectly and is negligible otherwise.

    Attributes
    ----------
    coef_ : ndarray of shape (n_systems,)
        The weights ``w`` (LLR per unit of each system's score).
    intercept_ : float
        The offset ``b``.
    n_systems_ : int
    systems_ : list of str
        Names of the fused systems (e.g. score files), if given to :meth:`fit`.
    n_target_, n_nontarget_ : int
        Development trials of each class.
    objective_ : float
        Prior-weighted cross-entropy at the solution, bits (the calibrated
        development scores' Cllr when ``prior`` is 0.5).
    n_iter_ : int
        Optimiser iterations.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> tar, non = rng.normal(1.0, 1.0, 2000), rng.normal(-1.0, 1.0, 20000)
    >>> cal = LogisticCalibration(prior=0.5).fit(0.1 * tar - 3, 0.1 * non - 3)
    >>> round(float(cal.coef_[0])), round(cal.intercept_)   # llr = 2 s = 20 (0.1 s - 3) + 60
    (20, 59)
    """

    def __init__(self, *, prior=DEFAULT_PRIOR, regularization=1e-6):
        self.prior = prior
        self.regularization = regularization

    def fit(self, tar, non, *, systems=None):
        """Learn ``w, b`` from development scores.

        Parameters
        ----------
        tar : array-like of shape (n_target,) or (n_target, n_systems)
            Scores of the target trials (one column per fused system).
        non : array-like of shape (n_nontarget,) or (n_nontarget, n_systems)
            Scores of the non-target trials.
        systems : sequence of str, optional
            Names of the systems, stored with the calibration.

        Returns
        -------
        self
        """
        prior = float(self.prior)
        if not 0.0 < prior < 1.0:
            raise ParameterError(f"{{name}} must be in (0, 1), got {self.prior!r}", "prior")
        reg = float(self.regularization)
        if not (reg >= 0.0 and math.isfinite(reg)):
            raise ValueError(f"regularization must be >= 0, got {self.regularization!r}")
        x_tar = _check_class(tar, "target")
        x_non = _check_class(non, "non-target", x_tar.shape[1])
        k = x_tar.shape[1]
        if systems is not None:
            systems = [str(s) for s in systems]
            if len(systems) != k:
                raise ValueError(f"{len(systems)} system names for {k} systems")
        # standardise the columns (pooled over both classes) so that one
        # regularisation weight and one tolerance suit any score scale
        pooled = np.concatenate([x_tar, x_non])
        mu, sd = pooled.mean(axis=0), pooled.std(axis=0)
        sd[sd == 0] = 1.0
        res = minimize(_objective, np.zeros(k + 1), jac=True, method="L-BFGS-B",
                       args=((x_tar - mu) / sd, (x_non - mu) / sd, prior, reg),
                       options={"maxiter": 1000, "gtol": 1e-10, "ftol": 1e-14})
        if not res.success:
            logger.warning("calibration: the optimiser stopped before converging: %s",
                           res.message)
        v, c = res.x[:-1], float(res.x[-1])
        self.coef_ = v / sd
        self.intercept_ = float(c - np.sum(v * mu / sd))
        self.n_systems_ = k
        self.systems_ = systems if systems is not None else []
        self.n_target_, self.n_nontarget_ = int(x_tar.shape[0]), int(x_non.shape[0])
        self.objective_ = float(res.fun - 0.5 * reg * float(v @ v))   # without the penalty
        self.n_iter_ = int(res.nit)
        logger.info("calibration: llr = %s + %.4f (prior %.4f, %d target / %d non-target "
                    "trials, cross-entropy %.4f bits)",
                    " + ".join(f"{w:.4f} s{i}" for i, w in enumerate(self.coef_)),
                    self.intercept_, prior, self.n_target_, self.n_nontarget_, self.objective_)
        return self

    def _check_fitted(self):
        if not hasattr(self, "coef_"):
            raise ValueError("this LogisticCalibration is not fitted: call fit() or load one")

    def transform(self, scores):
        """Calibrated (fused) log-likelihood ratios.

        Parameters
        ----------
        scores : array-like of shape (n_trials,) or (n_trials, n_systems)
            Raw scores, columns in the order of :meth:`fit`.

        Returns
        -------
        ndarray of shape (n_trials,)
            ``scores @ coef_ + intercept_``, natural-log LLRs.
        """
        self._check_fitted()
        x = _check_class(scores, "input", self.n_systems_)
        return x @ self.coef_ + self.intercept_

    # -- persistence ----------------------------------------------------------
    def to_dict(self):
        """The fitted calibration as a JSON-ready dict."""
        self._check_fitted()
        return {"format": _FORMAT, "version": _VERSION, "prior": float(self.prior),
                "regularization": float(self.regularization),
                "weights": [float(w) for w in self.coef_], "bias": float(self.intercept_),
                "systems": list(self.systems_), "n_target": self.n_target_,
                "n_nontarget": self.n_nontarget_, "objective_bits": self.objective_}

    @classmethod
    def from_dict(cls, d, *, source="calibration"):
        """The calibration :meth:`to_dict` described (``source`` is named in errors)."""
        if not isinstance(d, dict) or d.get("format") != _FORMAT:
            raise ValueError(f"{source}: not an ipem calibration (no \"format\": \"{_FORMAT}\")")
        if d.get("version") != _VERSION:
            raise ValueError(f"{source}: calibration version {d.get('version')!r} is not "
                             f"supported (expected {_VERSION})")
        try:
            weights = np.asarray(d["weights"], dtype=np.float64)
            bias = float(d["bias"])
            prior = float(d["prior"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{source}: malformed calibration ({exc!r})") from None
        if weights.ndim != 1 or weights.size == 0 or not np.isfinite(weights).all() \
                or not math.isfinite(bias):
            raise ValueError(f"{source}: calibration weights and bias must be finite numbers")
        systems = [str(s) for s in d.get("systems", [])]
        if systems and len(systems) != weights.size:
            raise ValueError(f"{source}: {len(systems)} system names for {weights.size} weights")
        cal = cls(prior=prior, regularization=float(d.get("regularization", 0.0)))
        cal.coef_, cal.intercept_, cal.n_systems_ = weights, bias, int(weights.size)
        cal.systems_ = systems
        cal.n_target_ = int(d.get("n_target", 0))
        cal.n_nontarget_ = int(d.get("n_nontarget", 0))
        cal.objective_ = float(d.get("objective_bits", math.nan))
        cal.n_iter_ = 0
        return cal

    def save(self, path):
        """Write the calibration as JSON (atomically); returns ``path``."""
        path = os.fspath(path)
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path):
        """Read a calibration :meth:`save` wrote.

        Raises
        ------
        ValueError
            For a file that is not valid JSON or not an ipem calibration
            (nested too deeply to read included), a FIFO or a device, or a
            file over :data:`MAX_CALIBRATION_BYTES` (the message names the
            file).
        """
        path = os.fspath(path)
        with open_regular(path, "calibration file", MAX_CALIBRATION_BYTES) as fh:
            text = fh.read(MAX_CALIBRATION_BYTES + 1).decode("utf-8")
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
        except RecursionError:
            raise ValueError(f"{path}: not a calibration file (JSON nested too deeply to "
                             "read)") from None
        return cls.from_dict(d, source=path)

    def __repr__(self):
        if not hasattr(self, "coef_"):
            return f"LogisticCalibration(prior={self.prior!r})"
        w = ", ".join(f"{x:.4g}" for x in self.coef_)
        return (f"LogisticCalibration(prior={float(self.prior):.4g}, weights=[{w}], "
                f"bias={self.intercept_:.4g})")


def load_calibration(path):
    """Read a calibration file (:meth:`LogisticCalibration.load`)."""
    return LogisticCalibration.load(path)
