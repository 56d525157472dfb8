"""The compiled library of the C backend and the plumbing of its calls.

Imports the cffi extension ``ipem.kernels._ckernels`` (built from
``ipem_kernels.c`` by ``_build.py`` when ipem is installed; ImportError when
it was not, which makes :mod:`ipem.kernels` fall back to NumPy), hands it
scipy's BLAS ``?gemm``, turns its error codes into exceptions and casts
NumPy arrays to C pointers.
"""
import ctypes

import numpy as np

try:
    from ._ckernels import ffi, lib
except ImportError as exc:  # not compiled
    raise ImportError(f"ipem's compiled kernels are not built: {exc}") from exc

__all__ = ["ffi", "lib", "ptr", "check_rc", "entry"]

_ERRORS = {
    lib.IPEM_ERR_NOMEM: (MemoryError, "ipem C kernel: out of memory"),
    lib.IPEM_ERR_NOBLAS: (RuntimeError, "ipem C kernel: BLAS not initialised"),
    lib.IPEM_ERR_ARGS: (ValueError, "ipem C kernel: invalid arguments"),
}

_PTR = {np.dtype(np.float32): "float *", np.dtype(np.float64): "double *"}
#: the array type ``ffi.from_buffer`` views a contiguous buffer as, per pointer type
_VIEWS = {"float *": "float[]", "double *": "double[]", "int64_t *": "int64_t[]",
          "int32_t *": "int32_t[]", "uint8_t *": "uint8_t[]", "void *": "char[]"}


# ---------------------------------------------------------------------------
# BLAS from scipy.linalg.cython_blas (PyCapsules of Fortran-convention ?gemm)
# ---------------------------------------------------------------------------
def _capsule_pointer(capsule):
    # private prototypes: leave ctypes.pythonapi's shared attributes alone
    get_name = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object)(
        ("PyCapsule_GetName", ctypes.pythonapi))
    get_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_void_p)(
        ("PyCapsule_GetPointer", ctypes.pythonapi))
    pointer = get_pointer(capsule, get_name(capsule))
    if not pointer:
        raise ImportError("cannot read a BLAS function pointer from scipy")
    return pointer


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


# ---------------------------------------------------------------------------
# calls
# ---------------------------------------------------------------------------
def ptr(arr, ctype=None):
    """A C pointer to the data of ``arr`` (None: NULL).

    Parameters
    ----------
    arr : ndarray or None
        Kept alive by the caller for the duration of the call.
    ctype : str, optional
        The C type, e.g. ``"int64_t *"``; default ``float *`` or ``double *``
        by the dtype of ``arr`` (``void *`` for other dtypes).

    Returns
    -------
    cdata
    """
    if arr is None:
        return ffi.NULL
    if ctype is None:
        ctype = _PTR.get(arr.dtype, "void *")
    view = _VIEWS.get(ctype)
    if view is not None:
        try:  # ~0.2 us against ~1.3 us for the cast below (blocks call kernels often)
            return ffi.from_buffer(view, arr)
        except (TypeError, ValueError, BufferError):
            pass  # not a contiguous buffer: rows with a stride (ldx), an object array
    return ffi.cast(ctype, arr.ctypes.data)


def check_rc(rc):
    """Raise the exception of a C kernel's return code (0: success).

    Raises
    ------
    MemoryError, RuntimeError or ValueError
        For ``IPEM_ERR_NOMEM``, ``IPEM_ERR_NOBLAS`` and ``IPEM_ERR_ARGS``.
    """
    if rc != lib.IPEM_OK:
        cls, msg = _ERRORS.get(rc, (RuntimeError, f"ipem C kernel failed with code {rc}"))
        raise cls(msg)


def entry(name, dtype):
    """The C entry point ``ipem_<name>_f32`` or ``ipem_<name>_f64`` for frames of ``dtype``.

    Parameters
    ----------
    name : str
        E.g. ``"gmm_diag"``.
    dtype : numpy dtype
        float32 or float64.

    Returns
    -------
    cffi function
    """
    return getattr(lib, f"ipem_{name}_" + ("f32" if np.dtype(dtype) == np.float32 else "f64"))
