"""The Gaussian-mixture kernels of the C backend: the diagonal and
full-covariance E-steps and top-C Gaussian selection.

Same signatures and results (to rounding) as :mod:`ipem.kernels._numpy`; see
:mod:`ipem.kernels._c` for what differs.  The wrappers check the arguments,
pack the parameters into the matrices the C code multiplies by (in the dtype
of ``X``) and unpack the statistics.
"""
import numpy as np

from ._clib import check_rc, entry, ptr
from ._common import (check_approximation, check_output, check_rows, check_sample_weight,
                      check_top_c, check_vector, check_X, diag_constant, full_constant)
from ._reuse import prepared
from ._threads import chunk_frames, full_kblock, kernel_threads, one_blas_thread

__all__ = ["gmm_diag_step", "gmm_full_step", "gmm_diag_topc"]


def _gmm_outputs(n, k, logprob_out, resp_out):
    logprob_out = check_output(logprob_out, "logprob_out", (n,), (np.float64,))
    resp_out = check_output(resp_out, "resp_out", (n, k), (np.float64, np.float32))
    resp_f64 = int(resp_out is not None and resp_out.dtype == np.float64)
    return logprob_out, resp_out, resp_f64


def _gmm_params(X, shift, means, log_weights):
    n, d = X.shape
    means = check_rows(means, "means", "n_components", d)
    k = means.shape[0]
    s = check_vector(shift, "shift", (d,)).astype(X.dtype)
    log_weights = check_vector(log_weights, "log_weights", (k,))
    return n, d, k, means, s, log_weights


def _diag_W(d, k, means, precisions, log_weights, dt):
    """[-prec/2; mean*prec; const] as a (2d+1, k) matrix in the dtype of X."""
    W = np.empty((2 * d + 1, k), dtype=dt)
    W[:d] = (-0.5 * precisions).T
    W[d:2 * d] = (means * precisions).T
    W[2 * d] = diag_constant(means, precisions, log_weights, d)
    return W


def _full_U(d, k, dp, means, prec_chol, log_weights, dt):
    """The constants (k,) and [prec_chol; -mean @ prec_chol] as a (d+1, k*dp) matrix in
    the dtype of X (each component's columns padded to dp)."""
    cst = np.ascontiguousarray(full_constant(prec_chol, log_weights))
    b = np.einsum("kd,kde->ke", means, prec_chol)
    U = np.zeros((d + 1, k, dp), dtype=dt)
    U[:d, :, :d] = prec_chol.transpose(1, 0, 2)
    U[d, :, :d] = -b
    return cst, U.reshape(d + 1, k * dp)


def gmm_diag_step(X, shift, means, precisions, log_weights, chunk_size=None,
                  logprob_out=None, resp_out=None, compute_stats=True, sample_weight=None,
                  top_c=None, min_post=0.0):
    """Diagonal GMM E-step; see :func:`ipem.kernels._numpy.gmm_diag_step`.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64
    shift : ndarray of shape (n_features,), float64
    means, precisions : ndarray of shape (n_components, n_features), float64
    log_weights : ndarray of shape (n_components,), float64
    chunk_size : int, optional
    logprob_out : ndarray of shape (n_samples,), float64, C-contiguous, optional
    resp_out : ndarray of shape (n_samples, n_components), float64 or float32, optional
        C-contiguous.
    compute_stats : bool, default=True
    sample_weight : ndarray of shape (n_samples,), float64, optional
        Non-negative finite frame weights ``s_n``; None means all ones (the
        unweighted kernel).  ``nk``, ``sx``, ``sxx`` and ``loglik`` are
        weighted; ``logprob_out`` and ``resp_out`` are not.
    top_c, min_post
        Approximate statistics, as for the NumPy kernel.

    Returns
    -------
    nk : ndarray of shape (n_components,), float64
    sx : ndarray of shape (n_components, n_features), float64
    sxx : ndarray of shape (n_components, n_features), float64
    loglik : float
    """
    X, ldx = check_X(X)
    n, d, k, means, s, log_weights = _gmm_params(X, shift, means, log_weights)
    top_c, min_post = check_approximation(top_c, min_post, k)
    sw = check_sample_weight(sample_weight, n)
    precisions = check_vector(precisions, "precisions", (k, d))
    logprob_out, resp_out, resp_f64 = _gmm_outputs(n, k, logprob_out, resp_out)
    dt = X.dtype
    W = prepared(f"gmm_diag_W_{dt}", lambda: _diag_W(d, k, means, precisions, log_weights, dt),
                 means, precisions, log_weights)
    compute_stats = bool(compute_stats)
    acc = np.zeros((k, 2 * d + 1)) if compute_stats else None
    loglik = np.zeros(1)
    chunk = chunk_frames(chunk_size, "diag", k, d, dt.itemsize)
    check_rc(entry("gmm_diag", dt)(
        n, d, k, ptr(X), ldx, ptr(s), ptr(W), chunk, ptr(sw), ptr(logprob_out),
        ptr(resp_out, "void *"), resp_f64, int(compute_stats), ptr(acc), ptr(loglik),
        top_c, min_post, kernel_threads()))
    if compute_stats:
        sxx = acc[:, :d].copy()
        sx = acc[:, d:2 * d].copy()
        nk = acc[:, 2 * d].copy()
    else:
        nk, sx, sxx = np.zeros(k), np.zeros((k, d)), np.zeros((k, d))
    return nk, sx, sxx, float(loglik[0])


def gmm_diag_topc(X, shift, means, precisions, log_weights, top_c, chunk_size=None,
                  index_out=None, logprob_out=None):
    """Top-C Gaussian selection; see :func:`ipem.kernels._numpy.gmm_diag_topc`.

    In float32, components whose log-likelihoods differ by less than float32
    rounding may be ordered differently from the NumPy kernel.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64
    shift : ndarray of shape (n_features,), float64
    means, precisions : ndarray of shape (n_components, n_features), float64
    log_weights : ndarray of shape (n_components,), float64
    top_c : int
        ``1 <= top_c <= n_components``.
    chunk_size : int, optional
    index_out : ndarray of shape (n_samples, top_c), int64, C-contiguous, optional
    logprob_out : ndarray of shape (n_samples,), float64, C-contiguous, optional

    Returns
    -------
    index_out : ndarray of shape (n_samples, top_c), int64
    logprob_out : ndarray of shape (n_samples,), float64
    """
    X, ldx = check_X(X)
    n, d, k, means, s, log_weights = _gmm_params(X, shift, means, log_weights)
    precisions = check_vector(precisions, "precisions", (k, d))
    top_c = check_top_c(top_c, k)
    if index_out is None:
        index_out = np.empty((n, top_c), dtype=np.int64)
    if logprob_out is None:
        logprob_out = np.empty(n)
    index_out = check_output(index_out, "index_out", (n, top_c), (np.int64,))
    logprob_out = check_output(logprob_out, "logprob_out", (n,), (np.float64,))
    dt = X.dtype
    W = prepared(f"gmm_diag_W_{dt}", lambda: _diag_W(d, k, means, precisions, log_weights, dt),
                 means, precisions, log_weights)
    chunk = chunk_frames(chunk_size, "diag", k, d, dt.itemsize)
    check_rc(entry("gmm_diag_topc", dt)(
        n, d, k, ptr(X), ldx, ptr(s), ptr(W), top_c, chunk, ptr(index_out, "int64_t *"),
        ptr(logprob_out)))
    return index_out, logprob_out


def gmm_full_step(X, shift, means, prec_chol, log_weights, chunk_size=None,
                  logprob_out=None, resp_out=None, compute_stats=True, sample_weight=None):
    """Full-covariance GMM E-step; see :func:`ipem.kernels._numpy.gmm_full_step`.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64
    shift : ndarray of shape (n_features,), float64
    means : ndarray of shape (n_components, n_features), float64
    prec_chol : ndarray of shape (n_components, n_features, n_features), float64
    log_weights : ndarray of shape (n_components,), float64
    chunk_size : int, optional
    logprob_out, resp_out, compute_stats
        As for :func:`gmm_diag_step`.
    sample_weight : ndarray of shape (n_samples,), float64, optional
        Non-negative finite frame weights ``s_n``; None means all ones (the
        unweighted kernel).  ``nk``, ``sx``, ``sxx`` and ``loglik`` are
        weighted; ``logprob_out`` and ``resp_out`` are not.

    Returns
    -------
    nk : ndarray of shape (n_components,), float64
    sx : ndarray of shape (n_components, n_features), float64
    sxx : ndarray of shape (n_components, n_features, n_features), float64
    loglik : float
    """
    X, ldx = check_X(X)
    n, d, k, means, s, log_weights = _gmm_params(X, shift, means, log_weights)
    sw = check_sample_weight(sample_weight, n)
    prec_chol = check_vector(prec_chol, "prec_chol", (k, d, d))
    logprob_out, resp_out, resp_f64 = _gmm_outputs(n, k, logprob_out, resp_out)
    dt = X.dtype
    dp = -(-d // 8) * 8
    cst, U = prepared(f"gmm_full_U_{dt}", lambda: _full_U(d, k, dp, means, prec_chol,
                                                        log_weights, dt),
                      means, prec_chol, log_weights)
    compute_stats = bool(compute_stats)
    n_pack = 1 + d + d * (d + 1) // 2
    acc = np.zeros((k, n_pack)) if compute_stats else None
    loglik = np.zeros(1)
    chunk = chunk_frames(chunk_size, "full", k, d, dt.itemsize)
    kblock = full_kblock(k, dp, min(chunk, max(n, 1)), dt.itemsize)
    n_threads = kernel_threads()
    with one_blas_thread(n_threads):
        check_rc(entry("gmm_full", dt)(
            n, d, k, ptr(X), ldx, ptr(s), ptr(U), dp, ptr(cst), chunk, kblock, ptr(sw),
            ptr(logprob_out), ptr(resp_out, "void *"), resp_f64, int(compute_stats),
            ptr(acc), ptr(loglik), n_threads))
    if compute_stats:
        nk = acc[:, 0].copy()
        sx = acc[:, 1:1 + d].copy()
        iu, ju = np.triu_indices(d)
        sxx = np.empty((k, d, d))
        sxx[:, iu, ju] = acc[:, 1 + d:]
        sxx[:, ju, iu] = acc[:, 1 + d:]
    else:
        nk, sx, sxx = np.zeros(k), np.zeros((k, d)), np.zeros((k, d, d))
    return nk, sx, sxx, float(loglik[0])
