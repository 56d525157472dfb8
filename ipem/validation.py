"""Input checks shared by the estimators; all raise ValueError naming the cause."""
import numbers

import numpy as np

from .parallel.controller import DistributedData


def check_frames(X, *, name="X", min_samples=1, n_features=None):
    """Validate a client-side frame matrix before any engine sees it.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    min_samples : int
        Fewer rows is an error (e.g. fewer frames than components).
    n_features : int, optional
        Expected number of columns (for predict on a fitted model).

    Returns
    -------
    ndarray of shape (n_samples, n_features), float32 or float64, C-contiguous
    """
    if isinstance(X, DistributedData):
        return check_distributed(X, name=name, min_samples=min_samples, n_features=n_features)
    try:
        arr = np.asarray(X)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name} could not be converted to an array: {exc}") from None
    if arr.dtype.kind not in "biuf":
        if arr.dtype.kind == "c":
            raise ValueError(f"{name} is complex ({arr.dtype}); features must be real numbers")
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{name} is not numeric (dtype {arr.dtype}); "
                             "features must be float32 or float64 numbers") from None
    if arr.ndim != 2:
        hint = " (reshape a single feature with X.reshape(-1, 1))" if arr.ndim == 1 else ""
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {arr.shape}{hint}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: 0 samples")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has 0 features")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    arr = np.ascontiguousarray(arr)
    finite = np.isfinite(arr)
    if not finite.all():
        bad = np.argwhere(~finite)[0]
        kind = "NaN" if np.isnan(arr[bad[0], bad[1]]) else "Inf"
        raise ValueError(f"{name} contains {kind} (first at row {bad[0]}, column {bad[1]}); "
                         "features must be finite")
    _check_counts(arr.shape, name, min_samples, n_features)
    return arr


def check_distributed(data, *, name="X", min_samples=1, n_features=None):
    """Validate the shape of an already distributed dataset."""
    if data.n_samples == 0:
        raise ValueError(f"{name} is empty: 0 samples")
    _check_counts(data.shape, name, min_samples, n_features)
    return data


def _check_counts(shape, name, min_samples, n_features):
    if shape[0] < min_samples:
        raise ValueError(f"{name} has {shape[0]} samples, fewer than the {min_samples} "
                         "components/clusters to fit")
    if n_features is not None and shape[1] != n_features:
        raise ValueError(f"{name} has {shape[1]} features, but the model was fitted "
                         f"with {n_features}")


def check_int(value, name, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_float(value, name, minimum=0.0, strict=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) \
            or value < minimum or (strict and value == minimum):
        op = ">" if strict else ">="
        raise ValueError(f"{name} must be a finite number {op} {minimum}, got {value!r}")
    return float(value)


def check_option(value, name, options):
    if value not in options:
        raise ValueError(f"{name}={value!r}: expected one of {sorted(options)}")
    return value


def check_param_array(value, name, shape, *, positive=False):
    """Validate a user-supplied initial parameter array of a known shape."""
    arr = check_numeric_array(value, name)
    if arr.shape != tuple(shape):
        raise ValueError(f"{name} has shape {arr.shape}, expected {tuple(shape)}")
    if positive and np.any(arr <= 0):
        raise ValueError(f"{name} must be positive")
    return arr


def check_numeric_array(value, name):
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} is not numeric") from None
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or Inf")
    return arr
