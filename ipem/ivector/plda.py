"""Two-covariance PLDA (Brummer & de Villiers 2010), trained by EM on the client.

Model: every speaker ``s`` has a latent mean ``y_s ~ N(mu, Sb)``; its vectors
are ``x_si = y_s + e_si`` with ``e_si ~ N(0, Sw)``.  EM over the speakers:

E-step (speaker with ``n_s`` vectors, sum ``f_s``), with ``B = Sb^-1``, ``W = Sw^-1``:
    ``L_s = B + n_s W``,  ``E[y_s] = L_s^-1 (B mu + W f_s)``,
    ``E[y_s y_s'] = L_s^-1 + E[y_s] E[y_s]'``
M-step:
    ``mu = (1/S) sum_s E[y_s]``,  ``Sb = (1/S) sum_s E[y_s y_s'] - mu mu'``,
    ``Sw = (1/N) (sum_si x x' - sum_s (f_s E[y_s]' + E[y_s] f_s') + sum_s n_s E[y_s y_s'])``

Verification score of an enrollment vector ``e`` and a test vector ``t`` is the
log-likelihood ratio of "same speaker" against "different speakers":

    ``LLR = log N([e; t]; [mu; mu], [[St, Sb], [Sb, St]]) - log N(e; mu, St) - log N(t; mu, St)``

with ``St = Sb + Sw``; in closed form (``e``, ``t`` centred on ``mu``)
``LLR = (e'Qe + t'Qt)/2 + e'Pt + c`` with ``A = (St - Sb St^-1 Sb)^-1``,
``Q = St^-1 - A``, ``P = St^-1 Sb A`` and
``c = log|St| - (1/2) log|[[St, Sb], [Sb, St]]|``.
"""
from __future__ import annotations

import logging

import numpy as np
from scipy import linalg

logger = logging.getLogger(__name__)

__all__ = ["TwoCovariancePLDA", "check_vectors", "check_labels"]


def check_vectors(X, n_dims=None, name="vectors"):
    """Finite float64 matrix (n, n_dims)."""
    try:
        X = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} are not numeric") from None
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"{name} must have shape (n_vectors, n_dims), got {X.shape}")
    if n_dims is not None and X.shape[1] != n_dims:
        raise ValueError(f"{name} have {X.shape[1]} dimensions, the model {n_dims}")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name} contain NaN or Inf")
    return X


def check_labels(y, n, min_classes=1):
    """Labels (n,) with at least ``min_classes`` classes."""
    y = np.asarray(y)
    if y.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), one per vector, got {y.shape}")
    k = np.unique(y).size
    if k < min_classes:
        raise ValueError(f"{k} speaker(s) in the labels; at least {min_classes} needed")
    return y


def _logdet(a):
    return 2.0 * float(np.sum(np.log(np.diag(linalg.cholesky(a, lower=True)))))


class TwoCovariancePLDA:
    """Two-covariance PLDA: EM training and log-likelihood-ratio scoring.

    Parameters
    ----------
    max_iter : int, default=10
    reg : float, default=1e-6
        Relative diagonal loading of the covariances after each M-step (and
        1e-3 of the initial ones, which are singular with fewer speakers than
        dimensions).
    speaker_rank : int or None, default=None
        Rank of the speaker subspace: after every M-step ``Sb`` keeps its
        ``speaker_rank`` leading eigen-directions and the others are floored
        at ``reg`` times its mean diagonal (S speakers estimate at most S - 1
        directions).  None: full rank.

    Attributes
    ----------
    mean_ : ndarray of shape (n_dims,)
    between_ : ndarray of shape (n_dims, n_dims)
        ``Sb``, the covariance of the speaker means.
    within_ : ndarray of shape (n_dims, n_dims)
        ``Sw``, the covariance of a speaker's vectors around its mean.
    loglik_history_ : list of float
        Log-likelihood of the training vectors per vector, before every
        M-step (never decreases).
    """

    def __init__(self, *, max_iter=10, reg=1e-6, speaker_rank=None):
        self.max_iter = max_iter
        self.reg = reg
        self.speaker_rank = speaker_rank

    @classmethod
    def from_arrays(cls, mean, between, within, loglik_history=()):
        """A model with given parameters (e.g. read from a file)."""
        obj = cls()
        obj.mean_ = np.asarray(mean, dtype=np.float64)
        obj.between_ = np.asarray(between, dtype=np.float64)
        obj.within_ = np.asarray(within, dtype=np.float64)
        obj.loglik_history_ = [float(v) for v in np.ravel(loglik_history)]
        return obj

    def fit(self, X, y):
        """Train by EM on vectors ``X`` (n, d) of speakers ``y`` (n,)."""
        X = check_vectors(X)
        y = check_labels(y, X.shape[0], min_classes=2)
        classes, inv = np.unique(y, return_inverse=True)
        counts = np.bincount(inv).astype(np.float64)
        sums = np.zeros((classes.size, X.shape[1]))
        np.add.at(sums, inv, X)
        means = sums / counts[:, None]
        xx = X.T @ X
        mu = X.mean(axis=0)
        centred = X - means[inv]
        sw = centred.T @ centred / X.shape[0]
        sb = np.atleast_2d(np.cov(means, rowvar=False, bias=True))   # (1, 1) for 1 dim
        # fewer speakers (or vectors) than dimensions leave these singular: load the diagonals
        for m in (sb, sw):
            m[np.diag_indices_from(m)] += 1e-3 * max(np.trace(m) / m.shape[0], 1e-12)
        self.loglik_history_ = []
        rank = None if self.speaker_rank is None else int(self.speaker_rank)
        if rank is not None and not 1 <= rank:
            raise ValueError(f"PLDA speaker_rank={self.speaker_rank}: 1 or more")
        if rank is not None:
            sb = _low_rank(sb, rank, 1e-3)
        for _ in range(int(self.max_iter)):
            mu, sb, sw, ll = _em_step(mu, sb, sw, counts, sums, xx, X.shape[0], self.reg)
            if rank is not None:
                sb = _low_rank(sb, rank, max(self.reg, 1e-12))
            self.loglik_history_.append(ll / X.shape[0])
        self.mean_, self.between_, self.within_ = mu, sb, sw
        return self

    def llr(self, enroll, test, pairs=None):
        """Log-likelihood ratios of trials.

        Parameters
        ----------
        enroll : ndarray of shape (n_enroll, d)
        test : ndarray of shape (n_test, d)
        pairs : ndarray of shape (n_trials, 2), optional
            ``(enroll index, test index)``; default: every pair.

        Returns
        -------
        ndarray of shape (n_trials,) with ``pairs``, else (n_enroll, n_test)
        """
        d = self.mean_.size
        e = check_vectors(enroll, d, "enrollment vectors") - self.mean_
        t = check_vectors(test, d, "test vectors") - self.mean_
        q, p, c = self._score_terms()
        qe = 0.5 * np.einsum("nd,de,ne->n", e, q, e)
        qt = 0.5 * np.einsum("nd,de,ne->n", t, q, t)
        if pairs is None:
            return qe[:, None] + qt[None, :] + e @ p @ t.T + c
        pairs = np.asarray(pairs, dtype=np.int64)
        i, j = pairs[:, 0], pairs[:, 1]
        return qe[i] + qt[j] + np.einsum("nd,nd->n", e[i] @ p, t[j]) + c

    def _score_terms(self):
        sb, st = self.between_, self.between_ + self.within_
        st_inv = linalg.inv(st)
        a = linalg.inv(st - sb @ st_inv @ sb)
        q = st_inv - a
        p = st_inv @ sb @ a
        joint = np.block([[st, sb], [sb, st]])
        c = _logdet(st) - 0.5 * _logdet(joint)
        return 0.5 * (q + q.T), p, c


def _low_rank(sb, rank, floor):
    """``sb`` with its ``rank`` leading eigen-directions; the others at ``floor`` x mean diag."""
    if rank >= sb.shape[0]:
        return sb
    vals, vecs = linalg.eigh(sb)
    low = floor * max(float(np.trace(sb)) / sb.shape[0], 1e-12)
    vals = np.concatenate([np.full(vals.size - rank, low), np.maximum(vals[-rank:], low)])
    out = (vecs * vals) @ vecs.T
    return 0.5 * (out + out.T)


def _em_step(mu, sb, sw, counts, sums, xx, n, reg):
    """One EM iteration; returns the new (mu, Sb, Sw) and the log-likelihood before it."""
    d = mu.size
    b_prec, w_prec = linalg.inv(sb), linalg.inv(sw)
    s = counts.size
    ey = np.empty((s, d))
    eyy = np.zeros((d, d))
    n_eyy = np.zeros((d, d))
    ll = -0.5 * n * d * np.log(2 * np.pi) - 0.5 * float(np.sum(w_prec * xx))
    logdet_b, logdet_w = -_logdet(sb), -_logdet(sw)
    bmu = b_prec @ mu
    # speakers with the same number of vectors share their posterior covariance
    for n_s in np.unique(counts):
        idx = np.flatnonzero(counts == n_s)
        prec = b_prec + n_s * w_prec
        chol = linalg.cholesky(prec, lower=True)
        cov = linalg.cho_solve((chol, True), np.eye(d))
        rhs = bmu[None, :] + sums[idx] @ w_prec
        ey[idx] = rhs @ cov
        eyy += idx.size * cov
        n_eyy += n_s * idx.size * cov
        logdet_l = 2.0 * float(np.sum(np.log(np.diag(chol))))
        ll += idx.size * (0.5 * n_s * logdet_w + 0.5 * logdet_b - 0.5 * logdet_l
                          - 0.5 * float(mu @ bmu))
        ll += 0.5 * float(np.sum(rhs * ey[idx]))
    eyy += ey.T @ ey
    n_eyy += (ey * counts[:, None]).T @ ey
    new_mu = ey.mean(axis=0)
    new_sb = eyy / s - np.outer(new_mu, new_mu)
    cross = sums.T @ ey
    new_sw = (xx - cross - cross.T + n_eyy) / n
    for m in (new_sb, new_sw):
        m += 0.5 * (m.T - m)
        m[np.diag_indices(d)] += reg * np.trace(m) / d
    return new_mu, new_sb, new_sw, ll
