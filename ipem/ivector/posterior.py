"""The latent factor of the total-variability model: posteriors, EM statistics, M-step.

Model (Dehak et al. 2011; Kenny's factor analysis): the mean supervector of
utterance ``u`` is ``m + T w_u`` with ``w_u ~ N(0, I_R)``; ``T_c`` (D, R) is the
block of component ``c`` and ``S_c`` its UBM (diagonal) covariance.  Given the
Baum-Welch statistics ``N_u`` (K,) and ``F~_u`` (K, D) (:mod:`ipem.ivector.stats`)

* ``L_u = I + sum_c N_uc T_c' S_c^-1 T_c``          posterior precision (R, R)
* ``b_u = sum_c T_c' S_c^-1 F~_uc``                  (R,)
* ``E[w_u] = L_u^-1 b_u`` (the i-vector), ``E[w_u w_u'] = L_u^-1 + E[w_u] E[w_u]'``

and the part of the log-likelihood of the statistics that depends on T is
``sum_u (-1/2 log|L_u| + 1/2 b_u' E[w_u])`` (EM never decreases it).  The EM
statistics are ``A_c = sum_u N_uc E[w_u w_u']`` (symmetric: the upper triangle is
kept, :func:`pack_upper`), ``C = sum_u E[w_u] F~_u'`` and, for the
minimum-divergence step, ``sum_u E[w_u w_u']``.

The per-utterance work is batched into matrix products: ``P_c = T_c' S_c^-1 T_c``
is computed once per call (packed, (K, R(R+1)/2)), so that the precisions of a
block of B utterances are one GEMM ``N (B, K) @ P (K, R(R+1)/2)``, their
``b`` one GEMM ``F~ (B, K*D) @ (S^-1 T) (K*D, R)``, and the accumulators two more
GEMMs.  Everything is float64.
"""
from __future__ import annotations

import numpy as np
from scipy import linalg

from .stats import split_rows

__all__ = ["pack_upper", "unpack_upper", "precompute", "posteriors", "tv_stats", "ivectors",
           "tv_m_step", "min_divergence", "component_range", "split_tv_stats", "tv_m_step_part",
           "join_T", "reply_T"]

#: bytes of the (B, R, R) work arrays of one block of utterances
_BLOCK_BYTES = 1 << 25


def _triu(r):
    return np.triu_indices(r)


def pack_upper(a):
    """Upper triangles (row-major) of symmetric matrices: (..., R, R) -> (..., R(R+1)/2)."""
    i, j = _triu(a.shape[-1])
    return a[..., i, j]


def unpack_upper(p, r):
    """Symmetric matrices from their packed upper triangles: (..., R(R+1)/2) -> (..., R, R)."""
    i, j = _triu(r)
    out = np.empty(p.shape[:-1] + (r, r))
    out[..., i, j] = p
    out[..., j, i] = p
    return out


def precompute(T, inv_var):
    """What every block of utterances needs from T, computed once per call.

    Parameters
    ----------
    T : ndarray of shape (K, D, R)
    inv_var : ndarray of shape (K, D)
        UBM inverse variances.

    Returns
    -------
    ts : ndarray of shape (K*D, R)
        ``S^-1 T`` (rows of the supervector).
    p : ndarray of shape (K, R(R+1)/2)
        Packed ``T_c' S_c^-1 T_c``.
    """
    k, d, r = T.shape
    ts = T * inv_var[:, :, None]
    p = pack_upper(np.matmul(ts.transpose(0, 2, 1), T))
    return ts.reshape(k * d, r), p


def block_size(r, n):
    """Utterances per block: (B, R, R) float64 work arrays of about 32 MB."""
    return int(max(1, min(n, _BLOCK_BYTES // (8 * r * r))))


def posteriors(n, f, ts, p, r, *, covariances=True):
    """Posterior of the latent factor of a block of utterances.

    The precisions of the block are one GEMM; each is then factored once
    (LAPACK ``potrf``), which gives ``log|L|``, ``E[w]`` (``potrs``) and, for
    the EM statistics, the upper triangle of ``L^-1`` (``potri``).

    Parameters
    ----------
    n : ndarray of shape (B, K)
    f : ndarray of shape (B, K*D)
    ts, p
        From :func:`precompute`.
    r : int
    covariances : bool, default=True
        Also return the packed ``L^-1`` (not needed for i-vectors alone).

    Returns
    -------
    ew : ndarray of shape (B, R)
        ``E[w]``.
    cov : ndarray of shape (B, R(R+1)/2) or None
        Packed upper triangles of ``L^-1``.
    b : ndarray of shape (B, R)
    logdet : ndarray of shape (B,)
        ``log|L|``.
    """
    prec = unpack_upper(n @ p, r)
    idx = np.arange(r)
    prec[:, idx, idx] += 1.0
    b = f @ ts
    m = prec.shape[0]
    ew = np.empty((m, r))
    logdet = np.empty(m)
    cov = np.empty((m, r * (r + 1) // 2)) if covariances else None
    iu, ju = _triu(r)
    for u in range(m):
        # column-major view of the symmetric matrix: LAPACK's "lower" is our upper triangle
        c, info = _potrf(prec[u].T, lower=1, clean=0, overwrite_a=1)
        if info:
            raise np.linalg.LinAlgError(f"posterior precision not positive definite ({info})")
        logdet[u] = 2.0 * np.log(np.diagonal(c)).sum()
        ew[u] = _potrs(c, b[u], lower=1)[0]
        if covariances:
            inv, info = _potri(c, lower=1, overwrite_c=1)
            cov[u] = inv.T[iu, ju]
    return ew, cov, b, logdet


def _lapack():
    from scipy.linalg import lapack
    return lapack.dpotrf, lapack.dpotrs, lapack.dpotri


_potrf, _potrs, _potri = _lapack()


def _packed_outer(ew, r):
    """Packed upper triangles of ``E[w] E[w]'`` of every row, shape (B, R(R+1)/2)."""
    i, j = _triu(r)
    return ew[:, i] * ew[:, j]


def tv_stats(shard, T, inv_var):
    """Shard function: total-variability EM statistics of a shard of utterance rows.

    Parameters
    ----------
    shard : Shard
        ``X`` of shape (n_utterances, K + K*D) (:mod:`ipem.ivector.stats`).
    T : ndarray of shape (K, D, R), or dict
        Or ``{"T": T, "p": p}`` with ``p`` the packed ``T_c' S_c^-1 T_c`` of
        :func:`precompute` (:func:`join_T`: made once per iteration, shared by
        the places), which is then not computed again.
    inv_var : ndarray of shape (K, D)

    Returns
    -------
    dict
        ``A`` (K, R(R+1)/2) packed ``sum_u N_uc E[ww']``; ``C`` (R, K*D)
        ``sum_u E[w] F~'``; ``ww`` (R(R+1)/2,) packed ``sum_u E[ww']``;
        ``w`` (R,) ``sum_u E[w]``; ``nc`` (K,) ``sum_u N_u``; ``loglik``
        ``sum_u (-log|L_u| + b_u' E[w_u]) / 2``; ``n`` utterances.
    """
    T, p = (T["T"], T.get("p")) if isinstance(T, dict) else (T, None)
    if p is None:
        ts, p = precompute(T, inv_var)
    else:
        ts = (T * inv_var[:, :, None]).reshape(-1, T.shape[2])
    k, d, r = T.shape
    rows = shard.X
    n_all, f_all = split_rows(rows, k)
    npk = r * (r + 1) // 2
    out = {"A": np.zeros((k, npk)), "C": np.zeros((r, k * d)), "ww": np.zeros(npk),
           "w": np.zeros(r), "nc": np.zeros(k), "loglik": 0.0, "n": float(rows.shape[0])}
    step = block_size(r, rows.shape[0])
    for a in range(0, rows.shape[0], step):
        n, f = n_all[a:a + step], f_all[a:a + step]
        ew, cov, b, logdet = posteriors(n, f, ts, p, r)
        eww = cov + _packed_outer(ew, r)
        out["A"] += n.T @ eww
        out["C"] += ew.T @ f
        out["ww"] += eww.sum(axis=0)
        out["w"] += ew.sum(axis=0)
        out["nc"] += n.sum(axis=0)
        out["loglik"] += 0.5 * float(np.sum(np.einsum("br,br->b", b, ew) - logdet))
    return out


def ivectors(shard, T, inv_var):
    """Shard function: ``E[w]`` of every utterance row of a shard, shape (n_utterances, R)."""
    k, d, r = T.shape
    ts, p = precompute(T, inv_var)
    n_all, f_all = split_rows(shard.X, k)
    out = np.empty((shard.X.shape[0], r))
    step = block_size(r, shard.X.shape[0])
    for a in range(0, shard.X.shape[0], step):
        out[a:a + step] = posteriors(n_all[a:a + step], f_all[a:a + step], ts, p, r,
                                     covariances=False)[0]
    return out


def tv_m_step(stats, T):
    """``T_c = (A_c^-1 C_c)'`` for every component with data.

    Parameters
    ----------
    stats : dict
        Summed :func:`tv_stats`.
    T : ndarray of shape (K, D, R)
        The previous matrix, kept for components no utterance occupies.

    Returns
    -------
    T : ndarray of shape (K, D, R)
    n_empty : int
        Components kept because their occupancy was zero.
    """
    k, d, r = T.shape
    new = T.copy()
    occupied = stats["nc"] > 0
    a = unpack_upper(stats["A"], r)
    c = stats["C"].reshape(r, k, d).transpose(1, 0, 2)       # (K, R, D)
    for comp in np.flatnonzero(occupied):
        new[comp] = linalg.solve(a[comp], c[comp], assume_a="pos").T
    return new, int(k - occupied.sum())


def min_divergence(T, stats):
    """Minimum-divergence step: rescale T so that the prior of w is ``N(0, I)`` again.

    ``G G' = (1/U) sum_u E[w_u w_u']`` (Cholesky); ``T_c <- T_c G``.  This is the
    prior-covariance update of parameter-expanded EM folded into T, so the
    likelihood does not decrease.

    Returns
    -------
    ndarray of shape (K, D, R)
    """
    r = T.shape[2]
    g = linalg.cholesky(unpack_upper(stats["ww"], r) / stats["n"], lower=True)
    return T @ g


# ---------------------------------------------------------------------------
# the M-step where the statistics are (Controller.reduce_on_places)
# ---------------------------------------------------------------------------

def component_range(k, place, n_places):
    """Components ``lo:hi`` of T that place ``place`` of ``n_places`` solves."""
    return k * place // n_places, k * (place + 1) // n_places


def split_tv_stats(stats, place, n_places):
    """The part of :func:`tv_stats` a place needs: ``A`` and ``C`` of its components
    (:func:`component_range`), the small sums whole.

    Returns
    -------
    dict
        As :func:`tv_stats`, with ``A`` of shape (hi - lo, R(R+1)/2) and ``C`` of
        shape (R, (hi - lo) * D).
    """
    k = stats["nc"].shape[0]
    d = stats["C"].shape[1] // max(k, 1)
    lo, hi = component_range(k, place, n_places)
    part = dict(stats)
    part["A"] = stats["A"][lo:hi]
    part["C"] = np.ascontiguousarray(stats["C"][:, lo * d:hi * d])
    return part


def tv_m_step_part(part, place, n_places, T, min_div, inv_var):
    """Place function: the M-step (and minimum-divergence step) of this place's components.

    Every component is solved alone and ``T_c G`` is one product per
    component, so the blocks are those of :func:`tv_m_step` and
    :func:`min_divergence` on the whole T, bit for bit; so are the packed
    ``T_c' S_c^-1 T_c`` of the new blocks (:func:`precompute`, one product per
    component), which the next E-step then does not compute.

    Parameters
    ----------
    part : dict
        :func:`split_tv_stats` of the summed statistics.
    T : ndarray of shape (K, D, R), or dict
        The previous matrix (where the place is), or :func:`join_T`'s dict.
    min_div : bool
    inv_var : ndarray of shape (K, D)

    Returns
    -------
    share : ndarray of shape (hi - lo, D, R)
        The new ``T_c`` of the place's components.
    small : dict or None
        Place 0: the summed ``ww``, ``w``, ``nc``, ``loglik``, ``n``; else None.
    p : ndarray of shape (hi - lo, R(R+1)/2)
        Packed ``T_c' S_c^-1 T_c`` of the new blocks.
    """
    T = T["T"] if isinstance(T, dict) else T
    lo, hi = component_range(T.shape[0], place, n_places)
    share, _ = tv_m_step({"A": part["A"], "C": part["C"], "nc": part["nc"][lo:hi]}, T[lo:hi])
    if min_div:
        share = min_divergence(share, part)
    small = {k: part[k] for k in ("ww", "w", "nc", "loglik", "n")} if place == 0 else None
    return share, small, precompute(share, inv_var[lo:hi])[1]


def join_T(results):
    """``{"T", "p"}`` of the whole new T from the places' :func:`tv_m_step_part` results
    (place order): T of shape (K, D, R), p of shape (K, R(R+1)/2); without ``p``
    when the results are :func:`reply_T`'s."""
    out = {"T": np.concatenate([r[0] for r in results])}
    if all(r[2] is not None for r in results):
        out["p"] = np.concatenate([r[2] for r in results])
    return out


def reply_T(result):
    """What a place sends back of its :func:`tv_m_step_part` result: not ``p`` (the
    places keep it; a copy made from the replies lacks it, and ``tv_stats``
    computes it again from T)."""
    return result[0], result[1], None
