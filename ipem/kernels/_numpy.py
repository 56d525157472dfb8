"""NumPy reference implementation of ipem's E-step kernels.

Every kernel works on a shard ``X`` of shape (n_samples, n_features) chunk by
chunk, so that memory beyond the data is O(chunk_size * n_components).  All
model parameters are given in *shifted* coordinates: the kernel subtracts
``shift`` (shape (n_features,)) from every chunk of frames before any
arithmetic, and the first- and second-order statistics it returns are
statistics of ``X - shift``.  Choosing ``shift`` close to the data mean keeps
float32 features with a large offset from cancelling catastrophically
(scikit-learn issue 30382).  Matrix products run in the dtype of ``X``;
statistics are accumulated in float64.

Frame weights: the E-step kernels take an optional ``sample_weight`` of shape
(n_samples,) (finite, non-negative; ``None`` means all ones and runs the
unweighted code unchanged).  A frame's weight multiplies everything it adds
to the returned statistics and totals (counts/sums/inertia, nk/sx/sxx/loglik);
the per-frame outputs (``labels``, ``mindist``, ``logprob_out``,
``resp_out``) are never weighted.  A frame of weight 0 adds exactly nothing,
even where its per-frame values are not finite.

The compiled backend (:mod:`ipem.kernels._c`) implements exactly the same
signatures; :mod:`ipem.kernels` chooses between them.  Constants and the
argument checks both backends make live in :mod:`ipem.kernels._common`.
"""
import numpy as np

from ._common import (check_approximation, check_sample_weight, check_top_c,
                      default_chunk_size, diag_constant, full_constant, new_kmeans_bounds)


def _chunks(n_samples, chunk_size):
    for start in range(0, n_samples, chunk_size):
        yield start, min(start + chunk_size, n_samples)


def logsumexp_rows(a):
    """Row-wise log-sum-exp, ``log(sum_j exp(a[i, j]))``, computed stably.

    Parameters
    ----------
    a : array_like of shape (n_rows, n_cols)
        Converted to float64; not modified.

    Returns
    -------
    out : ndarray of shape (n_rows,), float64
        A row of all ``-inf`` (or with no columns) gives ``-inf``, without a
        warning; a row containing ``+inf`` gives ``+inf`` and one containing
        NaN gives NaN.
    """
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"logsumexp_rows expects a 2-D array, got shape {a.shape}")
    if a.shape[1] == 0:
        return np.full(a.shape[0], -np.inf)
    amax = a.max(axis=1, keepdims=True)
    # rows whose max is -inf (all components impossible) stay -inf
    amax[~np.isfinite(amax)] = 0.0
    with np.errstate(divide="ignore"):
        out = np.log(np.exp(a - amax).sum(axis=1)) + amax[:, 0]
    return out


# the former private name, kept for callers not yet switched to the public one
_logsumexp_rows = logsumexp_rows


def kmeans_step(X, shift, centers, labels, mindist, chunk_size=None, sample_weight=None):
    """Assign frames to their nearest centre and accumulate Lloyd statistics.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64
    shift : ndarray of shape (n_features,), float64
    centers : ndarray of shape (n_clusters, n_features), float64
        Centres in shifted coordinates.
    labels : ndarray of shape (n_samples,), int64
        Output: index of the nearest centre.
    mindist : ndarray of shape (n_samples,), float64
        Output: squared distance to the nearest centre (unweighted).
    chunk_size : int, optional
    sample_weight : ndarray of shape (n_samples,), float64, optional
        Non-negative finite frame weights ``w_n``; None means all ones.

    Returns
    -------
    counts : ndarray of shape (n_clusters,), float64
        Sum of the weights of the frames assigned to each centre (the
        number of frames when unweighted).
    sums : ndarray of shape (n_clusters, n_features), float64
        Weighted sum ``sum_n w_n (x_n - shift)`` of the shifted frames
        assigned to each centre.
    inertia : float
        Weighted sum ``sum_n w_n mindist_n`` of squared distances to the
        nearest centre.

    Raises
    ------
    ValueError
        If ``sample_weight`` has the wrong shape, or is not finite and
        non-negative.
    """
    n, d = X.shape
    k = centers.shape[0]
    sw = check_sample_weight(sample_weight, n)
    chunk_size = chunk_size or default_chunk_size(k)
    dt = X.dtype
    c = centers.astype(dt)
    c_sq = np.einsum("kd,kd->k", c, c)
    s = shift.astype(dt)
    counts = np.zeros(k)
    sums = np.zeros((k, d))
    for a, b in _chunks(n, chunk_size):
        xc = X[a:b] - s
        x_sq = np.einsum("nd,nd->n", xc, xc)
        dist = c_sq - 2.0 * (xc @ c.T)
        lab = np.argmin(dist, axis=1)
        best = dist[np.arange(b - a), lab] + x_sq
        labels[a:b] = lab
        mindist[a:b] = np.maximum(best, 0.0)
        if sw is None:
            counts += np.bincount(lab, minlength=k)
            # scatter-add in float64
            np.add.at(sums, lab, xc.astype(np.float64))
        else:
            # frames of weight 0 are left out (their x may be NaN or inf)
            wc = sw[a:b]
            keep = wc != 0
            counts += np.bincount(lab[keep], weights=wc[keep], minlength=k)
            np.add.at(sums, lab[keep], xc[keep].astype(np.float64) * wc[keep, None])
    if sw is None:
        inertia = float(mindist.sum()) if n else 0.0
    else:
        keep = sw != 0
        inertia = float((sw[keep] * mindist[keep]).sum()) if n else 0.0
    return counts, sums, inertia


def kmeans_step_bounded(X, shift, centers, labels, mindist, bounds, chunk_size=None,
                        sample_weight=None):
    """A Lloyd step that may skip frames whose label cannot change.

    The reference implementation skips nothing: it is :func:`kmeans_step`
    with ``labels`` as an in/out argument.  The compiled backend keeps
    Hamerly's distance bounds in ``bounds`` and gives the same results.

    Parameters
    ----------
    X, shift, centers, mindist, chunk_size, sample_weight
        As for :func:`kmeans_step`.
    labels : ndarray of shape (n_samples,), int64
        In/out: the labels of the previous call (negative: none yet), replaced
        by the new ones.
    bounds : dict
        From :func:`new_kmeans_bounds`; this implementation leaves it unused.

    Returns
    -------
    counts, sums, inertia
        As for :func:`kmeans_step`.
    n_changed : int
        Frames whose label changed.
    n_full : int
        Frames compared with every centre (here all of them).
    """
    old = labels.copy()
    counts, sums, inertia = kmeans_step(X, shift, centers, labels, mindist, chunk_size,
                                        sample_weight)
    bounds["centers"] = None
    return counts, sums, inertia, int(np.count_nonzero(labels != old)), X.shape[0]


def kmeans_pp_trial(X, shift, candidates, closest=None, sample_weight=None, chunk_size=None):
    """Squared distances to k-means++ candidate centres and their potentials.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64
    shift : ndarray of shape (n_features,), float64
    candidates : ndarray of shape (n_candidates, n_features), float64
        Candidate centres in shifted coordinates.
    closest : ndarray of shape (n_samples,), float64, optional
        Squared distance of every frame to its closest chosen centre.
    sample_weight : ndarray of shape (n_samples,), float64, optional
    chunk_size : int, optional

    Returns
    -------
    potentials : ndarray of shape (n_candidates,), float64
        ``sum_n s_n min(closest_n, dist_nj)`` (``dist_nj`` without ``closest``).
    dist : ndarray of shape (n_samples, n_candidates), float64
        Squared distances, as :func:`kmeans_step` computes ``mindist``.
    """
    n, d = X.shape
    k = candidates.shape[0]
    sw = check_sample_weight(sample_weight, n)
    chunk_size = chunk_size or default_chunk_size(k)
    dt = X.dtype
    c = candidates.astype(dt)
    c_sq = np.einsum("kd,kd->k", c, c)
    s = shift.astype(dt)
    dist = np.empty((n, k))
    pots = np.zeros(k)
    for a, b in _chunks(n, chunk_size):
        xc = X[a:b] - s
        x_sq = np.einsum("nd,nd->n", xc, xc)
        dc = (c_sq - 2.0 * (xc @ c.T)) + x_sq[:, None]
        dist[a:b] = np.maximum(dc, 0.0)
        m = dist[a:b] if closest is None else np.minimum(closest[a:b, None], dist[a:b])
        if sw is None:
            pots += m.sum(axis=0)
        else:
            keep = sw[a:b] != 0
            pots += (m[keep] * sw[a:b][keep, None]).sum(axis=0)
    return pots, dist


def _diag_log_prob(xc, means, precisions, log_weights):
    # -0.5 * sum_d (x-mu)^2 * prec  =  x^2 @ A.T + x @ B.T + c
    a = -0.5 * precisions
    b = means * precisions
    const = diag_constant(means, precisions, log_weights, xc.shape[1])
    dt = xc.dtype
    lp = (xc * xc) @ a.astype(dt).T
    lp += xc @ b.astype(dt).T
    lp = lp.astype(np.float64, copy=False)
    lp += const
    return lp


def _full_log_prob(xc, means, prec_chol, log_weights):
    n = xc.shape[0]
    k = means.shape[0]
    dt = xc.dtype
    lp = np.empty((n, k))
    for j in range(k):
        y = xc @ prec_chol[j].astype(dt) - (means[j] @ prec_chol[j]).astype(dt)
        lp[:, j] = -0.5 * np.einsum("nd,nd->n", y, y)
    lp += full_constant(prec_chol, log_weights)
    return lp


def prune_responsibilities(resp, top_c, min_post):
    """Approximate responsibilities, in place.

    Keeps each row's ``top_c`` largest entries (ties at the threshold keep the
    lower index), renormalised, then those >= ``min_post``, renormalised again.

    Parameters
    ----------
    resp : ndarray of shape (n_rows, n_components), float64
        Responsibilities (rows summing to 1); modified in place.
    top_c : int
        Entries kept per row; 0: all.
    min_post : float
        Entries below it are dropped; 0: none.

    Returns
    -------
    resp : ndarray of shape (n_rows, n_components)
        The same array.
    """
    m, k = resp.shape
    if top_c and top_c < k and m:
        # stable descending order: ties at the threshold keep the lower index
        order = np.argsort(-resp, axis=1, kind="stable")[:, top_c:]
        np.put_along_axis(resp, order, 0.0, axis=1)
        resp /= resp.sum(axis=1, keepdims=True)
    if min_post > 0 and m:
        resp[resp < min_post] = 0.0
        resp /= resp.sum(axis=1, keepdims=True)
    return resp


def _gmm_step(log_prob_fn, full, X, shift, means, prec, log_weights,
              chunk_size, logprob_out, resp_out, compute_stats, sample_weight,
              top_c=0, min_post=0.0):
    n, d = X.shape
    k = means.shape[0]
    sw = check_sample_weight(sample_weight, n)
    chunk_size = chunk_size or default_chunk_size(k)
    dt = X.dtype
    s = shift.astype(dt)
    nk = np.zeros(k)
    sx = np.zeros((k, d))
    sxx = np.zeros((k, d, d) if full else (k, d))
    loglik = 0.0
    for a, b in _chunks(n, chunk_size):
        xc = X[a:b] - s
        lp = log_prob_fn(xc, means, prec, log_weights)
        norm = logsumexp_rows(lp)
        if sw is None:
            loglik += float(norm.sum())
        else:
            # frames of weight 0 add nothing, even a log-likelihood of -inf
            wc = sw[a:b]
            keep = wc != 0
            loglik += float((wc[keep] * norm[keep]).sum())
        if logprob_out is not None:
            logprob_out[a:b] = norm
        if resp_out is None and not compute_stats:
            continue
        lp -= norm[:, None]
        resp = np.exp(lp, out=lp)
        if resp_out is not None:
            resp_out[a:b] = resp
        if compute_stats:
            if top_c or min_post:
                with np.errstate(invalid="ignore"):
                    prune_responsibilities(resp, top_c, min_post)
            if sw is not None:
                # weight the responsibilities (resp_out above stays unweighted)
                resp *= wc[:, None]
                if not keep.all():
                    resp[~keep] = 0.0
                    xc[~keep] = 0  # xc is this chunk's own copy
            nk += resp.sum(axis=0)
            r = resp.astype(dt)
            sx += r.T @ xc
            if full:
                for j in range(k):
                    sxx[j] += (xc * r[:, j:j + 1]).T @ xc
            else:
                sxx += r.T @ (xc * xc)
    return nk, sx, sxx, loglik


def gmm_diag_step(X, shift, means, precisions, log_weights, chunk_size=None,
                  logprob_out=None, resp_out=None, compute_stats=True, sample_weight=None,
                  top_c=None, min_post=0.0):
    """E-step of a diagonal-covariance GMM on one shard.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64
    shift : ndarray of shape (n_features,), float64
    means : ndarray of shape (n_components, n_features), float64
        Means in shifted coordinates.
    precisions : ndarray of shape (n_components, n_features), float64
        Inverse variances.
    log_weights : ndarray of shape (n_components,), float64
    chunk_size : int, optional
    logprob_out : ndarray of shape (n_samples,), float64, optional
        Output: per-frame log-likelihood ``log sum_k w_k N(x | k)``
        (unweighted by ``sample_weight``).
    resp_out : ndarray of shape (n_samples, n_components), optional
        Output: responsibilities ``r_nk`` (unweighted by ``sample_weight``).
    compute_stats : bool, default=True
    sample_weight : ndarray of shape (n_samples,), float64, optional
        Non-negative finite frame weights ``s_n``; None means all ones.
    top_c : int, optional
        Approximate statistics: accumulate each frame's statistics from its
        ``top_c`` most responsible components only, renormalised (ties at
        the threshold keep the lower index).  None: all.
    min_post : float, default=0.0
        Approximate statistics: then drop the responsibilities below
        ``min_post`` (as Kaldi's ``--min-post``) and renormalise the rest.
        ``loglik``, ``logprob_out`` and ``resp_out`` stay exact.

    Returns
    -------
    nk : ndarray of shape (n_components,), float64
        Weighted sum of responsibilities ``sum_n s_n r_nk``.
    sx : ndarray of shape (n_components, n_features), float64
        ``sum_n s_n r_nk (x_n - shift)``.
    sxx : ndarray of shape (n_components, n_features), float64
        ``sum_n s_n r_nk (x_n - shift)**2``.
    loglik : float
        Weighted total log-likelihood of the shard, ``sum_n s_n log p(x_n)``.

    Raises
    ------
    ValueError
        If ``sample_weight`` has the wrong shape, or is not finite and
        non-negative.
    """
    top_c, min_post = check_approximation(top_c, min_post, means.shape[0])
    return _gmm_step(_diag_log_prob, False, X, shift, means, precisions, log_weights,
                     chunk_size, logprob_out, resp_out, compute_stats, sample_weight,
                     top_c, min_post)


def gmm_full_step(X, shift, means, prec_chol, log_weights, chunk_size=None,
                  logprob_out=None, resp_out=None, compute_stats=True, sample_weight=None):
    """E-step of a full-covariance GMM on one shard.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64
    shift : ndarray of shape (n_features,), float64
    means : ndarray of shape (n_components, n_features), float64
        Means in shifted coordinates.
    prec_chol : ndarray of shape (n_components, n_features, n_features), float64
        Cholesky factors of the precision matrices (upper triangular, as in
        scikit-learn: ``precision = prec_chol @ prec_chol.T``), so that the
        Mahalanobis term is ``||(x - mu) @ prec_chol||^2``.
    log_weights : ndarray of shape (n_components,), float64
    chunk_size : int, optional
    logprob_out, resp_out, compute_stats
        As for :func:`gmm_diag_step`.
    sample_weight : ndarray of shape (n_samples,), float64, optional
        Weights the statistics and ``loglik`` as in :func:`gmm_diag_step`.

    Returns
    -------
    nk : ndarray of shape (n_components,), float64
    sx : ndarray of shape (n_components, n_features), float64
    sxx : ndarray of shape (n_components, n_features, n_features), float64
        ``sum_n s_n r_nk (x_n - shift)(x_n - shift)^T``, the (frame- and)
        responsibility-weighted sum of outer products of shifted frames.
    loglik : float
    """
    return _gmm_step(_full_log_prob, True, X, shift, means, prec_chol, log_weights,
                     chunk_size, logprob_out, resp_out, compute_stats, sample_weight)


def _top_indices(lp, top_c):
    """Indices of the ``top_c`` largest entries of each row of ``lp``.

    Order: descending by value, ties broken by the lower index (the same
    order as ``np.argsort(-lp, axis=1, kind="stable")[:, :top_c]``).
    """
    m, k = lp.shape
    if top_c >= k:
        return np.argsort(-lp, axis=1, kind="stable")[:, :top_c]
    # threshold = the top_c-th largest value of each row
    thr = np.partition(lp, k - top_c, axis=1)[:, k - top_c]
    ge = lp >= thr[:, None]
    n_ge = ge.sum(axis=1)
    out = np.empty((m, top_c), dtype=np.int64)
    clean = n_ge == top_c
    rows = np.flatnonzero(clean)
    if rows.size:
        # exactly top_c candidates: take them (increasing index), then sort by value
        cols = np.nonzero(ge[rows])[1].reshape(rows.size, top_c)
        vals = np.take_along_axis(lp[rows], cols, axis=1)
        order = np.argsort(-vals, axis=1, kind="stable")
        out[rows] = np.take_along_axis(cols, order, axis=1)
    rows = np.flatnonzero(~clean)
    if rows.size:
        # ties straddle the threshold: a stable full sort settles them by index
        out[rows] = np.argsort(-lp[rows], axis=1, kind="stable")[:, :top_c]
    return out


def gmm_diag_topc(X, shift, means, precisions, log_weights, top_c, chunk_size=None,
                  index_out=None, logprob_out=None):
    """Top-C Gaussian selection for a diagonal-covariance GMM (e.g. a UBM).

    For every frame, find the ``top_c`` components with the highest weighted
    log-likelihood ``log w_k + log N(x | mu_k, Sigma_k)`` and the top-C
    approximation of the frame log-likelihood: the log-sum-exp over those
    components only.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64
    shift : ndarray of shape (n_features,), float64
    means : ndarray of shape (n_components, n_features), float64
        Means in shifted coordinates.
    precisions : ndarray of shape (n_components, n_features), float64
        Inverse variances.
    log_weights : ndarray of shape (n_components,), float64
    top_c : int
        Number of components kept per frame, ``1 <= top_c <= n_components``.
    chunk_size : int, optional
    index_out : ndarray of shape (n_samples, top_c), int64, optional
        Output: the selected components of each frame, by descending
        weighted log-likelihood (ties: lower index first).  Allocated if
        omitted.
    logprob_out : ndarray of shape (n_samples,), float64, optional
        Output: ``log sum_{k in top_c} w_k N(x | k)``.  Allocated if omitted.

    Returns
    -------
    index_out : ndarray of shape (n_samples, top_c), int64
    logprob_out : ndarray of shape (n_samples,), float64
    """
    n, d = X.shape
    k = means.shape[0]
    top_c = check_top_c(top_c, k)
    if index_out is None:
        index_out = np.empty((n, top_c), dtype=np.int64)
    if logprob_out is None:
        logprob_out = np.empty(n)
    if index_out.shape != (n, top_c) or logprob_out.shape != (n,):
        raise ValueError(f"index_out must have shape {(n, top_c)} and logprob_out {(n,)}, "
                         f"got {index_out.shape} and {logprob_out.shape}")
    chunk_size = chunk_size or default_chunk_size(k)
    s = shift.astype(X.dtype)
    for a, b in _chunks(n, chunk_size):
        xc = X[a:b] - s
        lp = _diag_log_prob(xc, means, precisions, log_weights)
        idx = _top_indices(lp, top_c)
        index_out[a:b] = idx
        with np.errstate(divide="ignore"):
            logprob_out[a:b] = logsumexp_rows(np.take_along_axis(lp, idx, axis=1))
    return index_out, logprob_out
