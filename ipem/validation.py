"""Input checks shared by the estimators and the speaker tools; all raise ValueError.

Checks of a named parameter raise :class:`ParameterError` (a ValueError that
knows the parameter, so that the CLI can name its option instead).

scikit-learn's own validation (:func:`sklearn.utils.validation.validate_data`)
does the conversions and the checks scikit-learn users know (sparse input,
object and complex dtypes, empty input, ``n_features_in_`` and
``feature_names_in_``); ipem adds what it says better: the first non-finite
value with its row and column, and the number of frames against the number of
components.
"""
import numbers

import numpy as np
from sklearn.utils.validation import check_array, validate_data

from .errors import ParameterError
from .parallel import DistributedData

__all__ = ["ParameterError", "check_distributed", "check_float", "check_frames", "check_int",
           "check_numeric_array", "check_option", "check_param_array", "validate_frames",
           "validate_sample_weight"]

_FLOATS = [np.float64, np.float32]


def _check_ndim(X, name):
    shape = getattr(X, "shape", None)
    if shape is None:
        try:
            shape = np.asarray(X).shape
        except ValueError as exc:  # ragged nested lists
            raise ValueError(f"{name} could not be converted to an array: {exc}") from None
    ndim = len(shape)
    if ndim != 2:
        hint = (" Reshape your data with X.reshape(-1, 1) if it has a single feature, "
                "or X.reshape(1, -1) if it is a single sample." if ndim == 1 else "")
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {shape}.{hint}")


def _check_finite(arr, name):
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(arr.sum(dtype=np.float64)):  # fast path: no NaN or infinity
            return
    finite = np.isfinite(arr)
    if not finite.all():
        bad = np.argwhere(~finite)[0]
        kind = "NaN" if np.isnan(arr[bad[0], bad[1]]) else "infinity"
        raise ValueError(f"{name} contains {kind} (first at row {bad[0]}, column {bad[1]}); "
                         "features must be finite")


def _check_counts(shape, name, min_samples, n_features):
    if shape[0] < min_samples:
        raise ValueError(f"{name} has {shape[0]} samples, fewer than the {min_samples} "
                         "components/clusters to fit")
    if n_features is not None and shape[1] != n_features:
        raise ValueError(f"{name} has {shape[1]} features, but the model was fitted "
                         f"with {n_features}")


def check_distributed(data, *, name="X", min_samples=1, n_features=None):
    """Validate the shape of an already distributed dataset.

    Parameters
    ----------
    data : DistributedData
    name : str
        How messages name the data.
    min_samples : int
        Fewer rows is an error.
    n_features : int, optional
        Expected number of columns.

    Returns
    -------
    DistributedData
        ``data`` itself.
    """
    if data.n_samples == 0:
        raise ValueError(f"{name} is empty: 0 samples")
    _check_counts(data.shape, name, min_samples, n_features)
    return data


def check_frames(X, *, name="X", min_samples=1, n_features=None):
    """Validate a client-side frame matrix before any engine sees it.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features) or DistributedData
    min_samples : int
        Fewer rows is an error (e.g. fewer frames than components).
    n_features : int, optional
        Expected number of columns.

    Returns
    -------
    ndarray of shape (n_samples, n_features), float32 or float64, C-contiguous
        (or the DistributedData itself)
    """
    if isinstance(X, DistributedData):
        return check_distributed(X, name=name, min_samples=min_samples, n_features=n_features)
    _check_ndim(X, name)
    arr = check_array(X, dtype=_FLOATS, order="C", ensure_all_finite=False,
                      input_name=name)
    _check_finite(arr, name)
    _check_counts(arr.shape, name, min_samples, n_features)
    return arr


def validate_frames(estimator, X, *, reset, min_samples=1):
    """:func:`check_frames` for an estimator, through scikit-learn's ``validate_data``.

    ``reset=True`` (fit) sets ``n_features_in_`` and ``feature_names_in_``;
    ``reset=False`` (predict) checks them.  A DistributedData is checked
    against the fitted number of features only.

    Parameters
    ----------
    estimator : BaseEstimator
    X : array-like of shape (n_samples, n_features) or DistributedData
    reset : bool
    min_samples : int

    Returns
    -------
    ndarray of shape (n_samples, n_features), float32 or float64, or DistributedData
    """
    if isinstance(X, DistributedData):
        n_features = None if reset else estimator.n_features_in_
        check_distributed(X, min_samples=min_samples, n_features=n_features)
        if reset:
            estimator.n_features_in_ = X.n_features
            if hasattr(estimator, "feature_names_in_"):
                del estimator.feature_names_in_
        return X
    _check_ndim(X, "X")
    arr = validate_data(estimator, X, reset=reset, dtype=_FLOATS, order="C",
                        ensure_all_finite=False)
    _check_finite(arr, "X")
    _check_counts(arr.shape, "X", min_samples, None)
    return arr


def validate_sample_weight(sample_weight, n_samples):
    """The ``sample_weight`` of an estimator's ``fit``: None, a number (every frame),
    or finite non-negative numbers with a positive sum.

    (The kernels check their own ``sample_weight`` argument:
    :func:`ipem.kernels.check_sample_weight`.)

    Parameters
    ----------
    sample_weight : None, float or array-like of shape (n_samples,)
    n_samples : int

    Returns
    -------
    ndarray of shape (n_samples,), float64, or None
    """
    if sample_weight is None:
        return None
    if isinstance(sample_weight, numbers.Number):
        sample_weight = np.full(n_samples, sample_weight, dtype=np.float64)
    try:
        w = np.asarray(sample_weight, dtype=np.float64)
    except (TypeError, ValueError):
        raise ParameterError("{name} is not numeric", "sample_weight") from None
    if w.shape != (n_samples,):
        raise ParameterError(f"{{name}} has shape {w.shape}, expected ({n_samples},): "
                             "one weight per sample", "sample_weight")
    if not np.all(np.isfinite(w)):
        raise ParameterError("{name} contains NaN or infinity", "sample_weight")
    if np.any(w < 0):
        raise ParameterError(f"{{name}} must be non-negative (first negative at "
                             f"{int(np.flatnonzero(w < 0)[0])})", "sample_weight")
    if w.sum() <= 0:
        raise ParameterError("{name} is all zero: at least one weight must be non-zero",
                             "sample_weight")
    return np.ascontiguousarray(w)


def check_int(value, name, minimum=1):
    """``value`` as an int, or a :class:`ParameterError` naming the parameter ``name``.

    Parameters
    ----------
    value : object
    name : str
        The parameter (e.g. ``"n_components"``).
    minimum : int

    Returns
    -------
    int
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ParameterError(f"{{name}} must be an integer >= {minimum}, got {value!r}", name)
    return int(value)


def check_float(value, name, minimum=0.0, strict=False):
    """``value`` as a finite float ``>= minimum`` (``>`` if ``strict``), or a
    :class:`ParameterError` naming the parameter ``name``.

    Returns
    -------
    float
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) \
            or value < minimum or (strict and value == minimum):
        op = ">" if strict else ">="
        raise ParameterError(f"{{name}} must be a finite number {op} {minimum}, got {value!r}",
                             name)
    return float(value)


def check_option(value, name, options):
    """``value`` if it is one of ``options``, else a :class:`ParameterError`
    (``name=value: expected one of [...]``).

    Returns
    -------
    object
        ``value``.
    """
    if value not in options:
        raise ParameterError(f"{{name}}={value!r}: expected one of {sorted(options)}", name)
    return value


def check_param_array(value, name, shape, *, positive=False):
    """Validate a user-supplied initial parameter array of a known shape.

    Parameters
    ----------
    value : array-like
    name : str
        The parameter (e.g. ``"means_init"``).
    shape : tuple of int
    positive : bool
        Every value must be > 0.

    Returns
    -------
    ndarray of shape ``shape``, float64
    """
    arr = check_numeric_array(value, name)
    if arr.shape != tuple(shape):
        raise ParameterError(f"{{name}} has shape {arr.shape}, expected {tuple(shape)}", name)
    if positive and np.any(arr <= 0):
        raise ParameterError("{name} must be positive", name)
    return arr


def check_numeric_array(value, name):
    """``value`` as a finite float64 array, or a :class:`ParameterError` naming ``name``.

    Returns
    -------
    ndarray, float64
    """
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ParameterError("{name} is not numeric", name) from None
    if not np.all(np.isfinite(arr)):
        raise ParameterError("{name} contains NaN or Inf", name)
    return arr
