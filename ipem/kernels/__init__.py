"""The kernel seam: one place that chooses how E-steps are computed.

Two backends implement the same functions (see :mod:`ipem.kernels._numpy`
for the reference signatures and docstrings):

``"c"``
    C kernels compiled with cffi when ipem is installed
    (:mod:`ipem.kernels._c`).
``"numpy"``
    The NumPy reference implementation.

The default is chosen at import: ``"c"`` when the compiled module can be
imported, ``"numpy"`` otherwise (with a warning).  The environment variable
``IPEM_KERNEL_BACKEND`` forces either.  Estimators accept ``backend=`` to pick
one per estimator; :data:`BACKEND` names the default.

``kmeans_step``, ``gmm_diag_step`` and ``gmm_full_step`` take an optional
``sample_weight`` (per-frame weights, shape (n_samples,)) in both backends.

Helpers for other packages: :func:`logsumexp_rows` (row-wise log-sum-exp),
:func:`check_sample_weight` (the kernels' validation of frame weights) and
:func:`check_approximation` (of ``top_c`` and ``min_post``, the approximate
statistics of ``gmm_diag_step``), :func:`default_chunk_size` (the rows the
NumPy kernels work on at once).  :func:`same_parameters` (a context manager)
lets the compiled wrappers prepare the same parameter objects once for many
calls, e.g. on the fixed blocks of one place.
"""
import os
import warnings

from . import _numpy
from ._common import check_approximation, check_sample_weight, default_chunk_size  # noqa: F401
from ._numpy import logsumexp_rows  # noqa: F401
from ._reuse import same_parameters  # noqa: F401

KERNEL_FUNCTIONS = ("kmeans_step", "kmeans_step_bounded", "new_kmeans_bounds", "kmeans_pp_trial",
                    "gmm_diag_step", "gmm_full_step", "gmm_diag_topc")

_BACKENDS = {"numpy": _numpy}
_C_IMPORT_ERROR = None
try:
    from . import _c
except ImportError as exc:  # compiled module missing: no compiler at install time
    _C_IMPORT_ERROR = exc
else:
    _BACKENDS["c"] = _c


def _choose_default():
    forced = os.environ.get("IPEM_KERNEL_BACKEND", "").strip().lower()
    if forced:
        if forced not in ("c", "numpy"):
            raise ImportError(
                f"IPEM_KERNEL_BACKEND={forced!r}: expected 'c' or 'numpy'")
        if forced == "c" and "c" not in _BACKENDS:
            raise ImportError(
                "IPEM_KERNEL_BACKEND=c but the compiled kernels cannot be imported: "
                f"{_C_IMPORT_ERROR}. Reinstall ipem with a C compiler available.")
        return forced
    if "c" in _BACKENDS:
        return "c"
    warnings.warn(
        f"ipem's compiled kernels are not available ({_C_IMPORT_ERROR}); "
        "using the NumPy kernels, which are slower. Reinstall ipem with a C "
        "compiler (gcc) to build them.", RuntimeWarning, stacklevel=2)
    return "numpy"


BACKEND = _choose_default()


def available_backends():
    """Names of the backends that can be used here, e.g. ``['c', 'numpy']``."""
    return sorted(_BACKENDS)


def get_kernels(backend=None):
    """Return the kernel module for ``backend`` (``None``: the default).

    Parameters
    ----------
    backend : {"c", "numpy"} or None

    Returns
    -------
    module
        A module with the functions named in :data:`KERNEL_FUNCTIONS`.
    """
    name = BACKEND if backend is None else str(backend).lower()
    try:
        return _BACKENDS[name]
    except KeyError:
        if name == "c":
            raise ValueError(
                f"backend='c' requested but the compiled kernels are not available: "
                f"{_C_IMPORT_ERROR}") from None
        raise ValueError(
            f"backend={backend!r}: expected one of {available_backends()}") from None
