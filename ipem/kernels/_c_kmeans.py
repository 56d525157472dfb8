"""The k-means kernels of the C backend: the Lloyd step (plain and with
Hamerly's distance bounds) and k-means++ trials.

Same signatures and results as :mod:`ipem.kernels._numpy`; see
:mod:`ipem.kernels._c` for what differs.  Where the C table
(:func:`ipem.kernels._isa.implementation`) has no compiled version, the
bounded step runs the plain one and the k-means++ trials run NumPy's.
"""
import numpy as np
from scipy.linalg import blas

from . import _numpy
from ._clib import check_rc, entry, ffi, lib, ptr
from ._common import (as_dtype, check_output, check_rows, check_sample_weight, check_vector,
                      check_X, new_kmeans_bounds)
from ._isa import implementation
from ._reuse import prepared
from ._threads import chunk_frames, kernel_threads, one_blas_thread

__all__ = ["kmeans_step", "kmeans_step_bounded", "new_kmeans_bounds", "kmeans_pp_trial"]


def kmeans_step(X, shift, centers, labels, mindist, chunk_size=None, sample_weight=None):
    """Assign frames to their nearest centre; see :func:`ipem.kernels._numpy.kmeans_step`.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64
    shift : ndarray of shape (n_features,), float64
    centers : ndarray of shape (n_clusters, n_features), float64
    labels : ndarray of shape (n_samples,), int64, C-contiguous
        Output: index of the nearest centre.
    mindist : ndarray of shape (n_samples,), float64, C-contiguous
        Output: squared distance to the nearest centre (unweighted).
    chunk_size : int, optional
    sample_weight : ndarray of shape (n_samples,), float64, optional
        Non-negative finite frame weights; None means all ones (the
        unweighted kernel).  They weight ``counts``, ``sums`` and
        ``inertia``, not ``labels`` or ``mindist``.

    Returns
    -------
    counts : ndarray of shape (n_clusters,), float64
    sums : ndarray of shape (n_clusters, n_features), float64
    inertia : float
    """
    X, ldx = check_X(X)
    n, d = X.shape
    sw = check_sample_weight(sample_weight, n)
    centers = check_rows(centers, "centers", "n_clusters", d)
    k = centers.shape[0]
    dt = X.dtype
    s = check_vector(shift, "shift", (d,)).astype(dt)
    c, c_sq = prepared(f"kmeans_centers_{dt}", lambda: _centres(centers, dt), centers)
    labels = check_output(labels, "labels", (n,), (np.int64,))
    mindist = check_output(mindist, "mindist", (n,), (np.float64,))
    counts = np.zeros(k)
    sums = np.zeros((k, d))
    inertia = np.zeros(1)
    chunk = chunk_frames(chunk_size, "kmeans", k, d, dt.itemsize)
    check_rc(entry("kmeans", dt)(
        n, d, k, ptr(X), ldx, ptr(s), ptr(c), ptr(c_sq), chunk, ptr(sw),
        ptr(labels, "int64_t *"), ptr(mindist), ptr(counts), ptr(sums), ptr(inertia),
        kernel_threads()))
    return counts, sums, float(inertia[0])


def _centres(centers, dt):
    """The centres in the kernel's dtype, C-contiguous, and their squared norms."""
    c = np.ascontiguousarray(centers, dtype=dt)
    return c, np.einsum("kd,kd->k", c, c)


def _centre_geometry(c32, prev):
    """Drift of every centre since ``prev`` (None: unknown), half the distance of
    each centre to its nearest other one, and the largest centre norm, in float64
    from the float32 centres the kernel uses (rounded to be conservative)."""
    c = c32.astype(np.float64)
    k = c.shape[0]
    drift = None
    if prev is not None and prev.shape == c32.shape:
        drift = np.sqrt(((c - prev.astype(np.float64)) ** 2).sum(axis=1)) * (1 + 1e-12) + 1e-300
    sq = np.einsum("kd,kd->k", c, c)
    if k > 1:
        # a one-thread product: waking a BLAS thread pool here would leave its
        # threads spinning on the cores the kernel is about to use
        with one_blas_thread(2):
            gram = blas.dgemm(1.0, c, c, trans_b=True)
        d2 = sq[:, None] + sq[None, :] - 2.0 * gram
        np.fill_diagonal(d2, np.inf)
        # the Gram identity's float64 error is far below 1e-12 max|c|^2
        half_sep = 0.5 * np.sqrt(np.maximum(d2.min(axis=1) - 1e-12 * sq.max(), 0.0))
    else:
        half_sep = np.full(k, np.inf)
    return drift, np.ascontiguousarray(half_sep), float(np.sqrt(sq.max())) * (1 + 1e-9)


def kmeans_step_bounded(X, shift, centers, labels, mindist, bounds, chunk_size=None,
                        sample_weight=None):
    """A Lloyd step that skips the frames whose label cannot change.

    Same results as :func:`kmeans_step` (bit for bit), with Hamerly's distance
    bounds kept in ``bounds`` (from :func:`new_kmeans_bounds`, updated in
    place) between the calls of one k-means run on the same frames.

    Parameters
    ----------
    X, shift, centers, mindist, chunk_size, sample_weight
        As for :func:`kmeans_step`.
    labels : ndarray of shape (n_samples,), int64
        In/out: the labels of the previous call (negative: none yet), replaced
        by the new ones.
    bounds : dict
        ``upper`` and ``lower`` (n_samples,) float64 and ``centers`` (the
        centres of the previous call), updated in place.

    Returns
    -------
    counts, sums, inertia
        As for :func:`kmeans_step`.
    n_changed : int
        Frames whose label changed.
    n_full : int
        Frames compared with every centre (the others kept their label by the
        bounds).
    """
    X, ldx = check_X(X)
    n, d = X.shape
    centers = as_dtype(centers)
    k = centers.shape[0] if centers.ndim == 2 else 0
    labels = check_output(labels, "labels", (n,), (np.int64,))
    if implementation("kmeans_bounded", X.dtype) is None:
        old = labels.copy()
        counts, sums, inertia = kmeans_step(X, shift, centers, labels, mindist, chunk_size,
                                            sample_weight)
        bounds["centers"] = None  # no bounds kept on this path
        return counts, sums, inertia, int(np.count_nonzero(labels != old)), n
    sw = check_sample_weight(sample_weight, n)
    check_rows(centers, "centers", "n_clusters", d)
    s = check_vector(shift, "shift", (d,)).astype(np.float32)
    # the same centres for every block of a place: one float32 copy (kept in every
    # block's bounds) and one geometry (ipem.kernels._reuse)
    c, c_sq = prepared(f"kmeans_centers_{np.dtype(np.float32)}",
                       lambda: _centres(centers, np.float32), centers)
    mindist = check_output(mindist, "mindist", (n,), (np.float64,))
    upper = check_output(bounds["upper"], "bounds['upper']", (n,), (np.float64,))
    lower = check_output(bounds["lower"], "bounds['lower']", (n,), (np.float64,))
    prev = bounds.get("centers")
    drift, half_sep, cnorm = prepared("kmeans_geometry", lambda: _centre_geometry(c, prev),
                                      c, prev)
    counts = np.zeros(k)
    sums = np.zeros((k, d))
    inertia = np.zeros(1)
    n_changed = np.zeros(1, dtype=np.int64)
    n_full = np.zeros(1, dtype=np.int64)
    chunk = chunk_frames(chunk_size, "kmeans", k, d, 4)
    bounds["centers"] = None  # invalid while the kernel runs (an error leaves them so)
    check_rc(lib.ipem_kmeans_bounded_f32(
        n, d, k, ptr(X), ldx, ptr(s), ptr(c), ptr(c_sq), chunk, ptr(sw),
        ptr(labels, "int64_t *"), ptr(mindist), ptr(upper), ptr(lower),
        ptr(drift) if drift is not None else ffi.NULL, ptr(half_sep), cnorm,
        ptr(counts), ptr(sums), ptr(inertia), ptr(n_changed, "int64_t *"),
        ptr(n_full, "int64_t *"), kernel_threads()))
    bounds["centers"] = c
    return counts, sums, float(inertia[0]), int(n_changed[0]), int(n_full[0])


def kmeans_pp_trial(X, shift, candidates, closest=None, sample_weight=None, chunk_size=None):
    """k-means++ candidate distances and potentials; see
    :func:`ipem.kernels._numpy.kmeans_pp_trial` (compiled where the C table has
    the kernel: float32 frames with AVX-512, one pass over the frames for up to
    16 candidates).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64
    shift : ndarray of shape (n_features,), float64
    candidates : ndarray of shape (n_candidates, n_features), float64
    closest : ndarray of shape (n_samples,), float64, optional
    sample_weight : ndarray of shape (n_samples,), float64, optional
    chunk_size : int, optional
        Used by the NumPy fallback only.

    Returns
    -------
    potentials : ndarray of shape (n_candidates,), float64
    dist : ndarray of shape (n_samples, n_candidates), float64
    """
    X, ldx = check_X(X)
    n, d = X.shape
    candidates = np.asarray(candidates, dtype=np.float64)
    if implementation("kmeans_pp", X.dtype) is None:
        return _numpy.kmeans_pp_trial(X, shift, candidates, closest, sample_weight, chunk_size)
    check_rows(candidates, "candidates", "n_candidates", d)
    sw = check_sample_weight(sample_weight, n)
    if closest is not None:
        closest = check_vector(closest, "closest", (n,))
    s = check_vector(shift, "shift", (d,)).astype(np.float32)
    k = candidates.shape[0]
    dist = np.empty((n, k))
    pots = np.zeros(k)
    for j0 in range(0, k, 16):
        c = np.ascontiguousarray(candidates[j0:j0 + 16], dtype=np.float32)
        c_sq = np.einsum("kd,kd->k", c, c)
        kk = c.shape[0]
        part = dist if k <= 16 else np.empty((n, kk))
        pp = np.zeros(kk)
        check_rc(lib.ipem_kmeans_pp_f32(n, d, kk, ptr(X), ldx, ptr(s), ptr(c), ptr(c_sq),
                                        ptr(closest), ptr(sw), ptr(part), ptr(pp),
                                        kernel_threads()))
        if k > 16:
            dist[:, j0:j0 + kk] = part
        pots[j0:j0 + kk] = pp
    return pots, dist
