"""What both kernel backends share: constants, argument checks and the
per-component constants of the Gaussian log-likelihoods.

:mod:`ipem.kernels._numpy` (the reference) and the compiled backend
(:mod:`ipem.kernels._c` and its modules) import these, so that both validate
frame weights, ``top_c`` and ``min_post`` alike and compute the same
constants with the same float64 operations.  The layout checks
(:func:`check_X`, :func:`check_vector`, :func:`check_output`,
:func:`check_rows`) state what the compiled backend requires of its arrays;
the NumPy reference accepts anything NumPy can compute with.
"""
import numpy as np

from ..errors import ParameterError

__all__ = ["LOG_2PI", "default_chunk_size", "as_dtype", "check_sample_weight",
           "check_approximation", "check_top_c", "check_chunk_size", "check_X", "check_vector",
           "check_output", "check_rows", "diag_constant", "full_constant", "new_kmeans_bounds"]

LOG_2PI = np.log(2.0 * np.pi)


def default_chunk_size(n_components):
    """Rows per chunk so that one (chunk, n_components) float64 block is ~8 MB.

    Parameters
    ----------
    n_components : int

    Returns
    -------
    int
        Between 64 and 8192.
    """
    return int(max(64, min(8192, (1 << 20) // max(int(n_components), 1))))


def check_sample_weight(sample_weight, n_samples):
    """Validate frame weights for the kernels.

    Parameters
    ----------
    sample_weight : array_like of shape (n_samples,) or None
    n_samples : int

    Returns
    -------
    ndarray of shape (n_samples,), float64, C-contiguous, or None
        ``None`` when ``sample_weight`` is None (the unweighted kernels).

    Raises
    ------
    ValueError
        If the weights are not numbers, have another shape, or are not
        finite and non-negative.
    """
    if sample_weight is None:
        return None
    try:
        w = np.ascontiguousarray(sample_weight, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"sample_weight must be an array of numbers: {exc}") from None
    if w.shape != (n_samples,):
        raise ValueError(f"sample_weight must have shape ({n_samples},), got {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError("sample_weight must be finite (no NaN or inf)")
    if np.any(w < 0):
        raise ValueError("sample_weight must be non-negative")
    return w


def check_approximation(top_c, min_post, n_components):
    """Validate the approximate-statistics arguments of ``gmm_diag_step``.

    Parameters
    ----------
    top_c : int or None
        Components kept per frame; None: all.
    min_post : float
        Responsibilities below it are dropped; in [0, 1).
    n_components : int

    Returns
    -------
    top_c : int
        0 when all components are kept (``top_c`` None or >= n_components).
    min_post : float

    Raises
    ------
    ParameterError
        If ``top_c`` is not None or an integer >= 1.
    ValueError
        If ``min_post`` is not a number in [0, 1).
    """
    if top_c is None:
        top_c = 0
    else:
        if isinstance(top_c, bool) or int(top_c) != top_c or top_c < 1:
            raise ParameterError(f"{{name}} must be None or an integer >= 1, got {top_c!r}",
                                 "top_c")
        top_c = int(top_c)
        if top_c >= n_components:
            top_c = 0
    try:
        min_post = float(min_post)
    except (TypeError, ValueError):
        raise ValueError(f"min_post must be a number in [0, 1), got {min_post!r}") from None
    if not 0.0 <= min_post < 1.0:
        raise ValueError(f"min_post must be in [0, 1), got {min_post!r}")
    return top_c, min_post


def check_top_c(top_c, n_components):
    """Validate the ``top_c`` of a top-C selection (``gmm_diag_topc``).

    Parameters
    ----------
    top_c : int
    n_components : int

    Returns
    -------
    int
        ``top_c``, with ``1 <= top_c <= n_components``.

    Raises
    ------
    ParameterError
        Otherwise.
    """
    top_c = int(top_c)
    if not 1 <= top_c <= n_components:
        raise ParameterError(
            f"{{name}} must be between 1 and n_components={n_components}, got {top_c}",
            "top_c")
    return top_c


def check_chunk_size(chunk_size):
    """A given ``chunk_size`` as a positive int (None or 0: None, "choose one").

    Parameters
    ----------
    chunk_size : int or None

    Returns
    -------
    int or None

    Raises
    ------
    ValueError
        If it is negative.
    """
    if not chunk_size:
        return None
    chunk = int(chunk_size)
    if chunk < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    return chunk


def check_X(X):
    """Frames as the compiled kernels read them.

    Parameters
    ----------
    X : array_like of shape (n_samples, n_features), float32 or float64
        Either byte order; a row slice of a bigger array is used in place.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), float32 or float64
        Native byte order, unit stride along features (copied otherwise).
    ldx : int
        Row stride in elements (>= n_features).

    Raises
    ------
    ValueError
        If ``X`` is not 2-D.
    TypeError
        If it is not float32 or float64.
    """
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


def as_dtype(a, dtype=np.float64):
    """``a`` as an array of ``dtype``: ``a`` itself when it is a plain array of it.

    ``np.asarray(a, dtype=...)`` returns a new view of an array whose dtype is
    equal to ``dtype`` but another instance of it, as every unpickled array's
    is (parameters broadcast to engines); the kernel wrappers key the values
    they prepare from parameters on the parameters' identity
    (:func:`ipem.kernels.same_parameters`), so a new view per call would
    prepare them again for every block.
    """
    if type(a) is np.ndarray and a.dtype == dtype:
        return a
    return np.asarray(a, dtype=dtype)


def check_vector(a, name, shape, dtype=np.float64):
    """An input array of exactly ``shape``, C-contiguous, in ``dtype``.

    Parameters
    ----------
    a : array_like
    name : str
        Its name in the error message.
    shape : tuple of int
    dtype : numpy dtype, default=float64

    Returns
    -------
    ndarray of shape ``shape``

    Raises
    ------
    ValueError
        If ``a`` has another shape.
    """
    a = as_dtype(a, dtype)
    if a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {a.shape}")
    return np.ascontiguousarray(a)


def check_rows(a, name, rows, n_features):
    """A float64 matrix of at least one row of ``n_features`` (centres, means).

    Parameters
    ----------
    a : array_like of shape (n_rows, n_features)
    name : str
        Its name in the error message.
    rows : str
        The name of its first dimension in the message, e.g. "n_clusters".
    n_features : int

    Returns
    -------
    ndarray of shape (n_rows, n_features), float64

    Raises
    ------
    ValueError
        If ``a`` is not 2-D with ``n_features`` columns and a row or more.
    """
    a = as_dtype(a)
    if a.ndim != 2 or a.shape[1] != n_features or a.shape[0] < 1:
        raise ValueError(f"{name} must have shape ({rows}, {n_features}), got {a.shape}")
    return a


def check_output(arr, name, shape, dtypes):
    """An output array the compiled kernels can write into (None passes).

    Parameters
    ----------
    arr : ndarray or None
    name : str
        Its name in the error message.
    shape : tuple of int
    dtypes : tuple of numpy dtypes
        The dtypes accepted.

    Returns
    -------
    ndarray of shape ``shape`` or None
        ``arr`` itself.

    Raises
    ------
    TypeError
        If ``arr`` is not an ndarray or has another dtype.
    ValueError
        If it has another shape or is not writeable and C-contiguous.
    """
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


def diag_constant(means, precisions, log_weights, n_features):
    """Per-component constant of a diagonal GMM's weighted log-likelihood.

    ``log w_k + log N(x | mu_k, prec_k) = const_k - 0.5 x^2 . prec_k +
    x . (mu_k prec_k)``.

    Parameters
    ----------
    means : ndarray of shape (n_components, n_features), float64
    precisions : ndarray of shape (n_components, n_features), float64
    log_weights : ndarray of shape (n_components,), float64
    n_features : int

    Returns
    -------
    ndarray of shape (n_components,), float64
    """
    return (-0.5 * (np.sum(means * means * precisions, axis=1) + n_features * LOG_2PI)
            + 0.5 * np.sum(np.log(precisions), axis=1) + log_weights)


def full_constant(prec_chol, log_weights):
    """Per-component constant of a full-covariance GMM's weighted log-likelihood.

    ``log w_k + log N(x | k) = const_k - 0.5 ||(x - mu_k) @ prec_chol_k||^2``.

    Parameters
    ----------
    prec_chol : ndarray of shape (n_components, n_features, n_features), float64
        Cholesky factors of the precisions.
    log_weights : ndarray of shape (n_components,), float64

    Returns
    -------
    ndarray of shape (n_components,), float64
    """
    d = prec_chol.shape[1]
    log_det = np.sum(np.log(np.diagonal(prec_chol, axis1=1, axis2=2)), axis=1)
    return -0.5 * d * LOG_2PI + log_det + log_weights


def new_kmeans_bounds(n_samples):
    """Empty distance bounds for :func:`kmeans_step_bounded`.

    Parameters
    ----------
    n_samples : int

    Returns
    -------
    dict
        ``upper`` and ``lower``: ndarray of shape (n_samples,), float64;
        ``centers``: None (no valid bounds yet).
    """
    return {"upper": np.zeros(n_samples), "lower": np.zeros(n_samples), "centers": None}
