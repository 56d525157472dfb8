"""The i-vector back-end: centring, LDA, WCCN, length normalisation, cosine scoring.

Small dense linear algebra on the client (i-vectors are a few hundred numbers).
Every transform is a scikit-learn style ``fit(X, y)`` / ``transform(X)`` object
(``X`` of shape (n_vectors, n_dims), ``y`` speaker labels);
:class:`IvectorBackend` chains them in the usual order (Dehak et al. 2011;
Garcia-Romero & Espy-Wilson 2011):

    centre -> LDA -> WCCN -> length normalisation -> cosine or PLDA

and is saved as one ``.npz`` file.
"""
from __future__ import annotations

import logging
import os

import numpy as np
from scipy import linalg
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ..io.atomic import save_npz_atomic
from ..io.models import invalid_model_file, read_npz, text_scalar
from .plda import TwoCovariancePLDA, check_labels, check_vectors

logger = logging.getLogger(__name__)

__all__ = ["length_normalize", "Whitening", "LDA", "WCCN", "cosine_scores", "IvectorBackend",
           "backend_defaults"]

_KIND = "ipem-ivector-backend"


def length_normalize(X):
    """Rows scaled to unit Euclidean length, shape (n, R) (zero rows stay zero)."""
    X = np.asarray(X, dtype=np.float64)
    norm = np.linalg.norm(X, axis=-1, keepdims=True)
    return X / np.where(norm > 0, norm, 1.0)


def _class_stats(X, y):
    """Class means (S, R), sizes (S,), and the within-class scatter (R, R), summed."""
    classes, inv = np.unique(y, return_inverse=True)
    counts = np.bincount(inv).astype(np.float64)
    means = np.zeros((classes.size, X.shape[1]))
    np.add.at(means, inv, X)
    means /= counts[:, None]
    centred = X - means[inv]
    return means, counts, inv, centred


class Whitening(TransformerMixin, BaseEstimator):
    """Centring (and optional whitening) by the training mean and covariance.

    Parameters
    ----------
    whiten : bool, default=False
        Also multiply by ``cov^-1/2`` (symmetric).

    Attributes
    ----------
    mean_ : ndarray of shape (n_dims,)
    transform_ : ndarray of shape (n_dims, n_dims)
    """

    def __init__(self, whiten=False):
        self.whiten = whiten

    def fit(self, X, y=None):
        """Learn the mean (and the whitening transform).

        Parameters
        ----------
        X : array-like of shape (n_vectors, dim)
        y : ignored

        Returns
        -------
        self
        """
        X = check_vectors(X)
        self.mean_ = X.mean(axis=0)
        if self.whiten:
            cov = np.cov(X, rowvar=False, bias=True)
            vals, vecs = linalg.eigh(cov)
            self.transform_ = vecs @ np.diag(1.0 / np.sqrt(np.maximum(vals, 1e-10))) @ vecs.T
        else:
            self.transform_ = np.eye(X.shape[1])
        return self

    def transform(self, X):
        """Centred (and whitened) vectors, shape (n_vectors, dim)."""
        check_is_fitted(self, "mean_")
        return (check_vectors(X, self.mean_.size) - self.mean_) @ self.transform_


class LDA(TransformerMixin, BaseEstimator):
    """Linear discriminant analysis of i-vectors by speaker.

    Solves ``S_b v = lambda S_w v`` (between- and within-class covariances)
    and keeps the ``n_components`` leading directions, scaled so that the
    within-class covariance of the projections is the identity.

    Parameters
    ----------
    n_components : int or None
        Output dimension (default and at most: n_speakers - 1, and n_dims).
    reg : float, default=1e-6
        Added to the diagonal of ``S_w`` relative to its mean diagonal.

    Attributes
    ----------
    scalings_ : ndarray of shape (n_dims, n_components)
    eigenvalues_ : ndarray of shape (n_components,)
    """

    def __init__(self, n_components=None, reg=1e-6):
        self.n_components = n_components
        self.reg = reg

    def fit(self, X, y):
        """Learn the projection that separates the classes best.

        Parameters
        ----------
        X : array-like of shape (n_vectors, dim)
        y : array-like of shape (n_vectors,)
            Class (speaker) labels; two classes at least.

        Returns
        -------
        self
        """
        X = check_vectors(X)
        y = check_labels(y, X.shape[0], min_classes=2)
        means, counts, _, centred = _class_stats(X, y)
        sw = centred.T @ centred / X.shape[0]
        mu = X.mean(axis=0)
        dm = (means - mu) * np.sqrt(counts)[:, None]
        sb = dm.T @ dm / X.shape[0]
        sw = sw + self.reg * np.trace(sw) / sw.shape[0] * np.eye(sw.shape[0])
        limit = min(means.shape[0] - 1, X.shape[1])
        k = limit if self.n_components is None else int(self.n_components)
        if not 1 <= k <= limit:
            raise ValueError(f"LDA n_components={self.n_components}: between 1 and "
                             f"{limit} (speakers - 1, dimensions) here")
        vals, vecs = linalg.eigh(sb, sw)       # ascending; vecs' S_w vecs = I
        self.eigenvalues_ = vals[::-1][:k]
        self.scalings_ = vecs[:, ::-1][:, :k]
        return self

    def transform(self, X):
        """Projected vectors, shape (n_vectors, n_components)."""
        check_is_fitted(self, "scalings_")
        return check_vectors(X, self.scalings_.shape[0]) @ self.scalings_


class WCCN(TransformerMixin, BaseEstimator):
    """Within-class covariance normalisation (Hatch et al. 2006).

    ``W = (1/S) sum_s (1/n_s) sum_i (x_i - m_s)(x_i - m_s)'``; projection ``B``
    with ``B B' = W^-1`` (Cholesky), applied as ``x B``.

    Parameters
    ----------
    reg : float, default=1e-6
        Relative diagonal loading of ``W``.

    Attributes
    ----------
    projection_ : ndarray of shape (n_dims, n_dims)
    """

    def __init__(self, reg=1e-6):
        self.reg = reg

    def fit(self, X, y):
        """Learn the inverse Cholesky factor of the within-class covariance.

        Parameters
        ----------
        X : array-like of shape (n_vectors, dim)
        y : array-like of shape (n_vectors,)
            Class (speaker) labels.

        Returns
        -------
        self
        """
        X = check_vectors(X)
        y = check_labels(y, X.shape[0], min_classes=1)
        _, counts, inv, centred = _class_stats(X, y)
        scaled = centred / np.sqrt(counts[inv])[:, None]
        w = scaled.T @ scaled / counts.size
        w = w + self.reg * max(np.trace(w) / w.shape[0], 1e-300) * np.eye(w.shape[0])
        self.projection_ = linalg.cholesky(linalg.inv(w), lower=True)
        return self

    def transform(self, X):
        """Vectors with identity within-class covariance, shape (n_vectors, dim)."""
        check_is_fitted(self, "projection_")
        return check_vectors(X, self.projection_.shape[0]) @ self.projection_


def cosine_scores(enroll, test, pairs=None):
    """Cosine similarity of i-vectors.

    Parameters
    ----------
    enroll : ndarray of shape (n_enroll, R)
    test : ndarray of shape (n_test, R)
    pairs : ndarray of shape (n_trials, 2) of int, optional
        ``(enroll index, test index)`` of each trial; default: every pair.

    Returns
    -------
    ndarray of shape (n_trials,) with ``pairs``, else (n_enroll, n_test)
    """
    e, t = length_normalize(enroll), length_normalize(test)
    if pairs is None:
        return e @ t.T
    pairs = np.asarray(pairs, dtype=np.int64)
    return np.einsum("nr,nr->n", e[pairs[:, 0]], t[pairs[:, 1]])


def backend_defaults(n_vectors, n_speakers, dim, lda_dim=None):
    """LDA dimension and WCCN that suit a back-end training set of this size.

    Measured open set on ``benchmarks/corpus2.py`` (``benchmarks/ivector.py
    --open-set``, ``benchmarks/RESULTS.md``): LDA estimated from fewer speakers
    than half the i-vector dimension, and WCCN estimated from fewer
    within-speaker degrees of freedom (vectors - speakers) than twice the
    dimension it sees, raise the EER; with enough speakers both are kept as
    they always were (LDA to speakers - 1, at most ``dim``).

    Parameters
    ----------
    n_vectors : int
        Training i-vectors.
    n_speakers : int
        Their speakers (2 or more).
    dim : int
        i-vector dimension R.
    lda_dim : int or None
        A chosen LDA dimension (0: none), kept; None: derived.

    Returns
    -------
    lda_dim : int
        ``min(n_speakers - 1, dim)`` if ``n_speakers - 1 >= dim / 2``, else 0
        (no LDA).
    wccn : bool
        ``n_vectors - n_speakers >= 2 * d``, ``d`` the dimension after LDA.
    """
    n_vectors, n_speakers, dim = int(n_vectors), int(n_speakers), int(dim)
    if lda_dim is None:
        lda_dim = min(n_speakers - 1, dim) if 2 * (n_speakers - 1) >= dim else 0
    return int(lda_dim), n_vectors - n_speakers >= 2 * (int(lda_dim) or dim)


class IvectorBackend:
    """The chain centre -> LDA -> WCCN -> length-norm (-> PLDA), trained on labelled i-vectors.

    Parameters
    ----------
    lda_dim : int, 0 or None, default=None
        LDA output dimension (0: no LDA; None: derived from the training set
        by :func:`backend_defaults`: speakers - 1 capped at the i-vector
        dimension R when there are at least R/2 + 1 speakers, else no LDA).
    wccn : bool or None, default=None
        None: derived by :func:`backend_defaults` (WCCN when the vectors
        outnumber the speakers by twice the dimension it sees).
    plda : bool, default=True
        Train a :class:`~ipem.ivector.plda.TwoCovariancePLDA` on the
        projected, length-normalised vectors.
    plda_iter : int, default=10
    plda_rank : int or None, default=None
        The PLDA's speaker-subspace rank (``speaker_rank``; None: full rank,
        measured no worse than speakers - 1 on small sets).
    length_norm : bool, default=True
        Scale the projected vectors to unit length before PLDA and cosine
        scoring (False: leave them; open set, PLDA without it was 0-1.6 points
        better with 32-64 back-end speakers at 15 dB and mixed elsewhere: one
        corpus seed, so the standard default stays).

    Attributes
    ----------
    centre_ : Whitening
    lda_ : LDA or None
    wccn_ : WCCN or None
    plda_ : TwoCovariancePLDA or None
    """

    def __init__(self, *, lda_dim=None, wccn=None, plda=True, plda_iter=10, plda_rank=None,
                 length_norm=True):
        self.lda_dim = lda_dim
        self.length_norm = length_norm
        self.wccn = wccn
        self.plda = plda
        self.plda_iter = plda_iter
        self.plda_rank = plda_rank

    def fit(self, X, y):
        """Fit every stage on i-vectors ``X`` (n, R) of speakers ``y`` (n,)."""
        X = check_vectors(X)
        y = check_labels(y, X.shape[0], min_classes=2)
        try:
            Z = self._fit_stages(X, y)
        except (linalg.LinAlgError, np.linalg.LinAlgError) as exc:
            n_speakers = np.unique(y).size
            raise ValueError(
                f"i-vector back-end: the scatter of {X.shape[0]} vectors of {n_speakers} "
                f"speakers in {X.shape[1]} dimensions is singular ({exc}): train it on more "
                "utterances per speaker, or use a lower --lda-dim or extractor rank") from None
        logger.info("i-vector back-end: %d vectors of %d speakers, %d -> %d dims%s",
                    X.shape[0], np.unique(y).size, X.shape[1], Z.shape[1],
                    ", PLDA" if self.plda_ is not None else "")
        return self

    def _fit_stages(self, X, y):
        """Fit centring, LDA, WCCN and PLDA in turn; the vectors PLDA saw, (n, dim)."""
        self.centre_ = Whitening().fit(X)
        Z = self.centre_.transform(X)
        lda_dim, wccn = self.lda_dim, self.wccn
        if lda_dim is None or wccn is None:
            n_speakers = np.unique(y).size
            auto_lda, auto_wccn = backend_defaults(X.shape[0], n_speakers, X.shape[1], lda_dim)
            if lda_dim is None:
                lda_dim = auto_lda
                logger.info("i-vector back-end: %d speakers for %d dimensions: %s", n_speakers,
                            X.shape[1], f"LDA to {lda_dim}" if lda_dim else
                            "no LDA (fewer speakers than half the dimension + 1)")
            if wccn is None:
                wccn = auto_wccn
                logger.info("i-vector back-end: %d vectors of %d speakers: %s", X.shape[0],
                            n_speakers, "WCCN" if wccn else "no WCCN (fewer than twice the "
                            "dimension within-speaker degrees of freedom)")
        self.lda_ = None
        if lda_dim != 0:
            self.lda_ = LDA(lda_dim).fit(Z, y)
            Z = self.lda_.transform(Z)
        self.wccn_ = WCCN().fit(Z, y) if wccn else None
        if self.wccn_ is not None:
            Z = self.wccn_.transform(Z)
        Z = length_normalize(Z) if self.length_norm else Z
        self.plda_ = TwoCovariancePLDA(max_iter=self.plda_iter, speaker_rank=self.plda_rank
                                       ).fit(Z, y) if self.plda else None
        return Z

    def transform(self, X):
        """Centred, projected, length-normalised vectors, shape (n, dim)."""
        Z = self.centre_.transform(X)
        if self.lda_ is not None:
            Z = self.lda_.transform(Z)
        if self.wccn_ is not None:
            Z = self.wccn_.transform(Z)
        return length_normalize(Z) if self.length_norm else Z

    def score(self, enroll, test, pairs=None, *, method="plda"):
        """Trial scores: ``"cosine"`` or ``"plda"`` (log-likelihood ratios).

        Parameters
        ----------
        enroll : ndarray of shape (n_enroll, R)
        test : ndarray of shape (n_test, R)
        pairs : ndarray of shape (n_trials, 2), optional
        method : {"cosine", "plda"}

        Returns
        -------
        ndarray of shape (n_trials,) with ``pairs``, else (n_enroll, n_test)
        """
        e, t = self.transform(enroll), self.transform(test)
        if method == "cosine":
            return cosine_scores(e, t, pairs)
        if method == "plda":
            if self.plda_ is None:
                raise ValueError("this back-end has no PLDA model: train it with plda=True")
            return self.plda_.llr(e, t, pairs)
        raise ValueError(f"method={method!r}: expected 'cosine' or 'plda'")

    # --- files -----------------------------------------------------------------
    def save(self, path):
        """Write every stage atomically to one ``.npz`` file (no pickle); returns the path."""
        arrays = {"kind": np.array(_KIND), "mean": self.centre_.mean_,
                  "centre": self.centre_.transform_}
        if self.lda_ is not None:
            arrays["lda"] = self.lda_.scalings_
        if self.wccn_ is not None:
            arrays["wccn"] = self.wccn_.projection_
        if not self.length_norm:
            arrays["no_length_norm"] = np.zeros(0)      # a flag: files before it have none
        if self.plda_ is not None:
            p = self.plda_
            arrays.update(plda_mean=p.mean_, plda_between=p.between_, plda_within=p.within_,
                          plda_loglik=np.asarray(p.loglik_history_, dtype=np.float64))
        return save_npz_atomic(path, **arrays)

    @classmethod
    def load(cls, path):
        """A back-end read from :meth:`save`'s file, every array checked."""
        path = os.fspath(path)
        z = read_npz(path, {**{k: 1 << 30 for k in ("mean", "centre", "lda", "wccn", "plda_mean",
                                                     "plda_between", "plda_within",
                                                     "plda_loglik", "no_length_norm")},
                            "provenance_json": 1 << 26})
        z.pop("provenance_json", None)      # the provenance record (ipem.io.provenance)
        if text_scalar(z, "kind", path, default="") != _KIND or "mean" not in z:
            raise ValueError(f"{path}: not an ipem i-vector back-end file")
        for key, a in z.items():
            if key != "kind" and (a.dtype.kind != "f" or not np.all(np.isfinite(a))):
                raise invalid_model_file(path, f"{key} is not a finite float array")
        r = z["mean"].size
        obj = cls(lda_dim=None if "lda" in z else 0, wccn="wccn" in z, plda="plda_mean" in z,
                  length_norm="no_length_norm" not in z)
        obj.centre_ = Whitening()
        obj.centre_.mean_, obj.centre_.transform_ = z["mean"], _square(z["centre"], r, path)
        dim = r
        obj.lda_ = None
        if "lda" in z:
            if z["lda"].ndim != 2 or z["lda"].shape[0] != r:
                raise invalid_model_file(path, f"lda has shape {z['lda'].shape}")
            obj.lda_ = LDA()
            obj.lda_.scalings_ = z["lda"]
            dim = z["lda"].shape[1]
        obj.wccn_ = None
        if "wccn" in z:
            obj.wccn_ = WCCN()
            obj.wccn_.projection_ = _square(z["wccn"], dim, path)
        obj.plda_ = None
        if "plda_mean" in z:
            obj.plda_ = TwoCovariancePLDA.from_arrays(
                z["plda_mean"], _square(z["plda_between"], dim, path),
                _square(z["plda_within"], dim, path), z.get("plda_loglik", np.zeros(0)))
        return obj


def _square(a, n, path):
    if a.shape != (n, n):
        raise invalid_model_file(path, f"expected a ({n}, {n}) matrix, got {a.shape}")
    return a
