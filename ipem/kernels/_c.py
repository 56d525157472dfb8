"""Compiled (C, cffi) implementation of ipem's E-step kernels.

Same functions, signatures and semantics as :mod:`ipem.kernels._numpy` (see
its docstrings); the C code lives in ``ipem_kernels.c`` and is built by
``_build.py`` when ipem is installed.  Importing this module raises
ImportError when the extension was not built, which makes
:mod:`ipem.kernels` fall back to NumPy.

float32 frames on a CPU with AVX-512 take fused kernels (ipem_fused_avx512.h)
with their own matrix-product micro-kernels; the others call scipy's BLAS.
Kernels run on :func:`kernel_threads` worker threads (the BLAS thread count,
so ``threadpoolctl`` limits them); results never depend on the number.

Differences from the NumPy reference that callers may notice:

* ``X`` must be float32 or float64 with unit stride along features (a row
  slice of a bigger array is fine; anything else is copied first).
* Output arrays must be C-contiguous with the documented dtype
  (``labels`` int64, ``mindist``/``logprob_out`` float64; ``resp_out``
  float64 or float32); otherwise ValueError/TypeError.
* ``chunk_size=None`` picks a cache-sized chunk measured for the C code,
  not :func:`default_chunk_size` (which is re-exported unchanged); results do
  not depend on the chunk size beyond rounding.
* float32 data: log-sum-exp and responsibilities are computed in float32
  (vectorised exp, ~1e-7 relative) before the float64 accumulation; with
  ``sample_weight`` the weights scale the float32 responsibilities too
  (rounded to float32), so weighted statistics agree with NumPy to float32
  rounding.
"""
import contextlib
import ctypes
import os

import numpy as np

from . import _numpy as _numpy_kernels
from ..errors import ParameterError
from ._numpy import LOG_2PI, check_sample_weight, default_chunk_size  # noqa: F401

try:
    from ._ckernels import ffi, lib
except ImportError as exc:  # not compiled
    raise ImportError(f"ipem's compiled kernels are not built: {exc}") from exc

__all__ = ["kmeans_step", "kmeans_step_bounded", "new_kmeans_bounds", "kmeans_pp_trial",
           "gmm_diag_step", "gmm_full_step", "gmm_diag_topc",
           "default_chunk_size",
           "ISA_NAMES", "get_isa", "set_isa", "available_isas"]

ISA_NAMES = ("base", "avx2", "avx512")

_ERRORS = {
    lib.IPEM_ERR_NOMEM: (MemoryError, "ipem C kernel: out of memory"),
    lib.IPEM_ERR_NOBLAS: (RuntimeError, "ipem C kernel: BLAS not initialised"),
    lib.IPEM_ERR_ARGS: (ValueError, "ipem C kernel: invalid arguments"),
}


# ---------------------------------------------------------------------------
# BLAS from scipy.linalg.cython_blas (PyCapsules of Fortran-convention ?gemm)
# ---------------------------------------------------------------------------
def _capsule_pointer(capsule):
    # private prototypes: leave ctypes.pythonapi's shared attributes alone
    get_name = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object)(
        ("PyCapsule_GetName", ctypes.pythonapi))
    get_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_void_p)(
        ("PyCapsule_GetPointer", ctypes.pythonapi))
    ptr = get_pointer(capsule, get_name(capsule))
    if not ptr:
        raise ImportError("cannot read a BLAS function pointer from scipy")
    return ptr


def _scipy_blas():
    from scipy.linalg import blas
    return blas


def _init_blas():
    """Hand scipy's Fortran ?gemm (LP64, all arguments by pointer) to the C code."""
    try:
        from scipy.linalg import cython_blas
        capi = cython_blas.__pyx_capi__
        sgemm = _capsule_pointer(capi["sgemm"])
        dgemm = _capsule_pointer(capi["dgemm"])
    except Exception as exc:  # any failure here means: no compiled backend
        raise ImportError(f"ipem's compiled kernels need scipy's BLAS: {exc!r}") from exc
    lib.ipem_set_blas(ffi.cast("ipem_sgemm_fn", sgemm), ffi.cast("ipem_dgemm_fn", dgemm))


_init_blas()
_blas = _scipy_blas()


# ---------------------------------------------------------------------------
# instruction-set level of the element-wise code
# ---------------------------------------------------------------------------
def available_isas():
    """Names of the instruction-set levels this CPU and build support."""
    mask = lib.ipem_isa_available()
    return [name for i, name in enumerate(ISA_NAMES) if mask & (1 << i)]


def get_isa():
    """Name of the instruction-set level in use."""
    return ISA_NAMES[lib.ipem_get_isa()]


def set_isa(name):
    """Use at most the level ``name`` ("base", "avx2", "avx512"); returns the level used."""
    if name not in ISA_NAMES:
        raise ValueError(f"isa={name!r}: expected one of {ISA_NAMES}")
    return ISA_NAMES[lib.ipem_set_isa(ISA_NAMES.index(name))]


_env_isa = os.environ.get("IPEM_KERNEL_ISA", "").strip().lower()
set_isa(_env_isa if _env_isa in ISA_NAMES else "avx512")
del _env_isa


# ---------------------------------------------------------------------------
# threads: as many as the BLAS is allowed (threadpoolctl limits apply)
# ---------------------------------------------------------------------------
_BLAS = []


def _blas_controller():
    """threadpoolctl's controller of scipy's BLAS (the one the kernels call), or None."""
    if not _BLAS:
        ctl = None
        try:
            from threadpoolctl import ThreadpoolController
            libs = [lib for lib in ThreadpoolController().lib_controllers
                    if lib.user_api == "blas"]
            libs.sort(key=lambda lib: "scipy" not in os.path.basename(
                os.path.dirname(lib.filepath or "")))
            ctl = libs[0] if libs else None
        except Exception:  # threadpoolctl missing or failing: use the CPUs
            ctl = None
        _BLAS.append(ctl)
    return _BLAS[0]


def kernel_threads():
    """Threads a kernel call uses: the thread count of scipy's BLAS right now.

    The kernels run their own worker threads (each calling a one-thread BLAS,
    or no BLAS at all) and follow the BLAS setting, so that the usual controls
    (``threadpoolctl.threadpool_limits``, ``OPENBLAS_NUM_THREADS``, the
    engines' ``blas_threads``) limit them too.  Results do not depend on it.
    """
    ctl = _blas_controller()
    if ctl is not None:
        try:
            return max(1, int(ctl.get_num_threads()))
        except Exception:
            pass
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def _one_blas_thread(n_threads):
    """While the kernel's own workers call the BLAS, make each call one-threaded."""
    ctl = _blas_controller() if n_threads > 1 else None
    prev = ctl.get_num_threads() if ctl is not None else 1
    if prev > 1:
        ctl.set_num_threads(1)
    try:
        yield
    finally:
        if prev > 1:
            ctl.set_num_threads(prev)


# ---------------------------------------------------------------------------
# chunk sizes (measured, see the comment at the top of ipem_kernels.c)
# ---------------------------------------------------------------------------
def c_chunk_size(kind, n_components, n_features=None, itemsize=4):
    """Frames per chunk used by the C kernels when ``chunk_size`` is None.

    Measured on a 2-core Zen 5 (1 MB L2 per core, 32 MB L3) with scipy's
    OpenBLAS: time per frame falls as the (chunk x K) block of
    log-likelihoods / distances grows to ~2 MB (bigger GEMMs, fewer calls)
    and is flat beyond, so the block is kept at ~2 MB (256..8192 frames).
    The full-covariance kernel is best at 1024 frames.
    """
    k = max(int(n_components), 1)
    if kind == "full":
        return 1024
    rows = (2 << 20) // (int(itemsize) * k)
    return int(max(256, min(8192, rows // 16 * 16)))


def _full_kblock(n_components, dp, chunk, itemsize):
    # components per log-likelihood GEMM: the (chunk x kb*dp) block ~1 MB
    kb = (1 << 20) // max(1, itemsize * dp * chunk)
    return int(max(1, min(n_components, kb)))


# ---------------------------------------------------------------------------
# argument handling
# ---------------------------------------------------------------------------
_PTR = {np.dtype(np.float32): "float *", np.dtype(np.float64): "double *"}


def _ptr(arr, ctype=None):
    if arr is None:
        return ffi.NULL
    if ctype is None:
        ctype = _PTR.get(arr.dtype, "void *")
    return ffi.cast(ctype, arr.ctypes.data)


def _check_X(X):
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got shape {X.shape}")
    if X.dtype.kind == "f" and X.dtype.itemsize in (4, 8) and not X.dtype.isnative:
        X = X.astype(X.dtype.newbyteorder("="))
    if X.dtype not in (np.float32, np.float64):
        raise TypeError(f"X must be float32 or float64, got {X.dtype}")
    n, d = X.shape
    item = X.itemsize
    if n > 0 and d > 0:
        row_ok = (X.strides[1] == item or d == 1) and X.strides[0] % item == 0 \
            and (X.strides[0] // item >= d or n == 1)
        if not row_ok:
            X = np.ascontiguousarray(X)
    else:
        X = np.ascontiguousarray(X)
    ldx = X.strides[0] // item if n > 1 else d
    return X, max(int(ldx), d)


def _vec(a, name, shape, dtype=np.float64):
    a = np.asarray(a, dtype=dtype)
    if a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {a.shape}")
    return np.ascontiguousarray(a)


def _out(arr, name, shape, dtypes):
    if arr is None:
        return None
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"{name} must be a numpy array")
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    if arr.dtype not in dtypes:
        raise TypeError(f"{name} must have dtype {' or '.join(str(np.dtype(t)) for t in dtypes)},"
                        f" got {arr.dtype}")
    if not arr.flags.c_contiguous or not arr.flags.writeable:
        raise ValueError(f"{name} must be a writeable C-contiguous array")
    return arr


def _check(rc):
    if rc != lib.IPEM_OK:
        cls, msg = _ERRORS.get(rc, (RuntimeError, f"ipem C kernel failed with code {rc}"))
        raise cls(msg)


def _chunk(chunk_size, kind, k, d, itemsize):
    if chunk_size:
        chunk = int(chunk_size)
        if chunk < 1:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        return chunk
    return c_chunk_size(kind, k, d, itemsize)


def _sfx(X):
    return "f32" if X.dtype == np.float32 else "f64"


# ---------------------------------------------------------------------------
# kernels
# ---------------------------------------------------------------------------
def kmeans_step(X, shift, centers, labels, mindist, chunk_size=None, sample_weight=None):
    """Assign frames to their nearest centre; see :func:`ipem.kernels._numpy.kmeans_step`.

    Parameters
    ----------
    X, shift, centers, labels, mindist, chunk_size
        As for the NumPy kernel.
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
    X, ldx = _check_X(X)
    n, d = X.shape
    sw = check_sample_weight(sample_weight, n)
    centers = np.asarray(centers, dtype=np.float64)
    if centers.ndim != 2 or centers.shape[1] != d or centers.shape[0] < 1:
        raise ValueError(f"centers must have shape (n_clusters, {d}), got {centers.shape}")
    k = centers.shape[0]
    dt = X.dtype
    s = _vec(shift, "shift", (d,)).astype(dt)
    c = np.ascontiguousarray(centers, dtype=dt)
    c_sq = np.einsum("kd,kd->k", c, c)
    labels = _out(labels, "labels", (n,), (np.int64,))
    mindist = _out(mindist, "mindist", (n,), (np.float64,))
    counts = np.zeros(k)
    sums = np.zeros((k, d))
    inertia = np.zeros(1)
    chunk = _chunk(chunk_size, "kmeans", k, d, dt.itemsize)
    fn = getattr(lib, "ipem_kmeans_" + _sfx(X))
    _check(fn(n, d, k, _ptr(X), ldx, _ptr(s), _ptr(c), _ptr(c_sq), chunk, _ptr(sw),
              _ptr(labels, "int64_t *"), _ptr(mindist), _ptr(counts), _ptr(sums),
              _ptr(inertia), kernel_threads()))
    return counts, sums, float(inertia[0])


def new_kmeans_bounds(n_samples):
    """Empty distance bounds for :func:`kmeans_step_bounded` (no valid bounds yet)."""
    return {"upper": np.zeros(n_samples), "lower": np.zeros(n_samples), "centers": None}


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
        with _one_blas_thread(2):
            gram = _blas.dgemm(1.0, c, c, trans_b=True)
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
    X, ldx = _check_X(X)
    n, d = X.shape
    centers = np.asarray(centers, dtype=np.float64)
    k = centers.shape[0] if centers.ndim == 2 else 0
    labels = _out(labels, "labels", (n,), (np.int64,))
    if X.dtype != np.float32 or get_isa() != "avx512":
        old = labels.copy()
        counts, sums, inertia = kmeans_step(X, shift, centers, labels, mindist, chunk_size,
                                            sample_weight)
        bounds["centers"] = None  # no bounds kept on this path
        return counts, sums, inertia, int(np.count_nonzero(labels != old)), n
    sw = check_sample_weight(sample_weight, n)
    if centers.ndim != 2 or centers.shape[1] != d or k < 1:
        raise ValueError(f"centers must have shape (n_clusters, {d}), got {centers.shape}")
    s = _vec(shift, "shift", (d,)).astype(np.float32)
    c = np.ascontiguousarray(centers, dtype=np.float32)
    c_sq = np.einsum("kd,kd->k", c, c)
    mindist = _out(mindist, "mindist", (n,), (np.float64,))
    upper = _out(bounds["upper"], "bounds['upper']", (n,), (np.float64,))
    lower = _out(bounds["lower"], "bounds['lower']", (n,), (np.float64,))
    drift, half_sep, cnorm = _centre_geometry(c, bounds.get("centers"))
    counts = np.zeros(k)
    sums = np.zeros((k, d))
    inertia = np.zeros(1)
    n_changed = np.zeros(1, dtype=np.int64)
    n_full = np.zeros(1, dtype=np.int64)
    chunk = _chunk(chunk_size, "kmeans", k, d, 4)
    bounds["centers"] = None  # invalid while the kernel runs (an error leaves them so)
    _check(lib.ipem_kmeans_bounded_f32(
        n, d, k, _ptr(X), ldx, _ptr(s), _ptr(c), _ptr(c_sq), chunk, _ptr(sw),
        _ptr(labels, "int64_t *"), _ptr(mindist), _ptr(upper), _ptr(lower),
        _ptr(drift) if drift is not None else ffi.NULL, _ptr(half_sep), cnorm,
        _ptr(counts), _ptr(sums), _ptr(inertia), _ptr(n_changed, "int64_t *"),
        _ptr(n_full, "int64_t *"), kernel_threads()))
    bounds["centers"] = c
    return counts, sums, float(inertia[0]), int(n_changed[0]), int(n_full[0])


def kmeans_pp_trial(X, shift, candidates, closest=None, sample_weight=None, chunk_size=None):
    """k-means++ candidate distances and potentials; see
    :func:`ipem.kernels._numpy.kmeans_pp_trial` (float32 frames with AVX-512:
    compiled, one pass over the frames for up to 16 candidates)."""
    X, ldx = _check_X(X)
    n, d = X.shape
    candidates = np.asarray(candidates, dtype=np.float64)
    if X.dtype != np.float32 or get_isa() != "avx512":
        return _numpy_kernels.kmeans_pp_trial(X, shift, candidates, closest, sample_weight,
                                              chunk_size)
    if candidates.ndim != 2 or candidates.shape[1] != d or candidates.shape[0] < 1:
        raise ValueError(f"candidates must have shape (n_candidates, {d}), "
                         f"got {candidates.shape}")
    sw = check_sample_weight(sample_weight, n)
    if closest is not None:
        closest = _vec(closest, "closest", (n,))
    s = _vec(shift, "shift", (d,)).astype(np.float32)
    k = candidates.shape[0]
    dist = np.empty((n, k))
    pots = np.zeros(k)
    for j0 in range(0, k, 16):
        c = np.ascontiguousarray(candidates[j0:j0 + 16], dtype=np.float32)
        c_sq = np.einsum("kd,kd->k", c, c)
        kk = c.shape[0]
        part = dist if k <= 16 else np.empty((n, kk))
        pp = np.zeros(kk)
        _check(lib.ipem_kmeans_pp_f32(n, d, kk, _ptr(X), ldx, _ptr(s), _ptr(c), _ptr(c_sq),
                                      _ptr(closest), _ptr(sw), _ptr(part), _ptr(pp),
                                      kernel_threads()))
        if k > 16:
            dist[:, j0:j0 + kk] = part
        pots[j0:j0 + kk] = pp
    return pots, dist


def _gmm_outputs(n, k, logprob_out, resp_out):
    logprob_out = _out(logprob_out, "logprob_out", (n,), (np.float64,))
    resp_out = _out(resp_out, "resp_out", (n, k), (np.float64, np.float32))
    resp_f64 = int(resp_out is not None and resp_out.dtype == np.float64)
    return logprob_out, resp_out, resp_f64


def _gmm_params(X, shift, means, log_weights):
    n, d = X.shape
    means = np.asarray(means, dtype=np.float64)
    if means.ndim != 2 or means.shape[1] != d or means.shape[0] < 1:
        raise ValueError(f"means must have shape (n_components, {d}), got {means.shape}")
    k = means.shape[0]
    s = _vec(shift, "shift", (d,)).astype(X.dtype)
    log_weights = _vec(log_weights, "log_weights", (k,))
    return n, d, k, means, s, log_weights


def _diag_W(d, k, means, precisions, log_weights, dt):
    """[-prec/2; mean*prec; const] as a (2d+1, k) matrix in the dtype of X."""
    const = (-0.5 * (np.sum(means * means * precisions, axis=1) + d * LOG_2PI)
             + 0.5 * np.sum(np.log(precisions), axis=1) + log_weights)
    W = np.empty((2 * d + 1, k), dtype=dt)
    W[:d] = (-0.5 * precisions).T
    W[d:2 * d] = (means * precisions).T
    W[2 * d] = const
    return W


def gmm_diag_step(X, shift, means, precisions, log_weights, chunk_size=None,
                  logprob_out=None, resp_out=None, compute_stats=True, sample_weight=None,
                  top_c=None, min_post=0.0):
    """Diagonal GMM E-step; see :func:`ipem.kernels._numpy.gmm_diag_step`.

    Parameters
    ----------
    X, shift, means, precisions, log_weights, chunk_size
        As for the NumPy kernel.
    logprob_out, resp_out, compute_stats
        As for the NumPy kernel.
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
    X, ldx = _check_X(X)
    n, d, k, means, s, log_weights = _gmm_params(X, shift, means, log_weights)
    top_c, min_post = _numpy_kernels.check_approximation(top_c, min_post, k)
    sw = check_sample_weight(sample_weight, n)
    precisions = _vec(precisions, "precisions", (k, d))
    logprob_out, resp_out, resp_f64 = _gmm_outputs(n, k, logprob_out, resp_out)
    dt = X.dtype
    W = _diag_W(d, k, means, precisions, log_weights, dt)
    compute_stats = bool(compute_stats)
    acc = np.zeros((k, 2 * d + 1)) if compute_stats else None
    loglik = np.zeros(1)
    chunk = _chunk(chunk_size, "diag", k, d, dt.itemsize)
    fn = getattr(lib, "ipem_gmm_diag_" + _sfx(X))
    _check(fn(n, d, k, _ptr(X), ldx, _ptr(s), _ptr(W), chunk, _ptr(sw),
              _ptr(logprob_out), _ptr(resp_out, "void *"), resp_f64, int(compute_stats),
              _ptr(acc), _ptr(loglik), top_c, min_post, kernel_threads()))
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
    """
    X, ldx = _check_X(X)
    n, d, k, means, s, log_weights = _gmm_params(X, shift, means, log_weights)
    precisions = _vec(precisions, "precisions", (k, d))
    top_c = int(top_c)
    if not 1 <= top_c <= k:
        raise ParameterError(f"{{name}} must be between 1 and n_components={k}, got {top_c}",
                             "top_c")
    if index_out is None:
        index_out = np.empty((n, top_c), dtype=np.int64)
    if logprob_out is None:
        logprob_out = np.empty(n)
    index_out = _out(index_out, "index_out", (n, top_c), (np.int64,))
    logprob_out = _out(logprob_out, "logprob_out", (n,), (np.float64,))
    dt = X.dtype
    W = _diag_W(d, k, means, precisions, log_weights, dt)
    chunk = _chunk(chunk_size, "diag", k, d, dt.itemsize)
    fn = getattr(lib, "ipem_gmm_diag_topc_" + _sfx(X))
    _check(fn(n, d, k, _ptr(X), ldx, _ptr(s), _ptr(W), top_c, chunk,
              _ptr(index_out, "int64_t *"), _ptr(logprob_out)))
    return index_out, logprob_out


def gmm_full_step(X, shift, means, prec_chol, log_weights, chunk_size=None,
                  logprob_out=None, resp_out=None, compute_stats=True, sample_weight=None):
    """Full-covariance GMM E-step; see :func:`ipem.kernels._numpy.gmm_full_step`.

    Parameters
    ----------
    X, shift, means, prec_chol, log_weights, chunk_size
        As for the NumPy kernel.
    logprob_out, resp_out, compute_stats
        As for the NumPy kernel.
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
    X, ldx = _check_X(X)
    n, d, k, means, s, log_weights = _gmm_params(X, shift, means, log_weights)
    sw = check_sample_weight(sample_weight, n)
    prec_chol = _vec(prec_chol, "prec_chol", (k, d, d))
    logprob_out, resp_out, resp_f64 = _gmm_outputs(n, k, logprob_out, resp_out)
    dt = X.dtype
    dp = -(-d // 8) * 8
    log_det = np.sum(np.log(np.diagonal(prec_chol, axis1=1, axis2=2)), axis=1)
    cst = np.ascontiguousarray(-0.5 * d * LOG_2PI + log_det + log_weights)
    b = np.einsum("kd,kde->ke", means, prec_chol)
    U = np.zeros((d + 1, k, dp), dtype=dt)
    U[:d, :, :d] = prec_chol.transpose(1, 0, 2)
    U[d, :, :d] = -b
    U = U.reshape(d + 1, k * dp)
    compute_stats = bool(compute_stats)
    n_pack = 1 + d + d * (d + 1) // 2
    acc = np.zeros((k, n_pack)) if compute_stats else None
    loglik = np.zeros(1)
    chunk = _chunk(chunk_size, "full", k, d, dt.itemsize)
    kblock = _full_kblock(k, dp, min(chunk, max(n, 1)), dt.itemsize)
    fn = getattr(lib, "ipem_gmm_full_" + _sfx(X))
    n_threads = kernel_threads()
    with _one_blas_thread(n_threads):
        _check(fn(n, d, k, _ptr(X), ldx, _ptr(s), _ptr(U), dp, _ptr(cst), chunk, kblock,
                  _ptr(sw), _ptr(logprob_out), _ptr(resp_out, "void *"), resp_f64,
                  int(compute_stats), _ptr(acc), _ptr(loglik), n_threads))
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
