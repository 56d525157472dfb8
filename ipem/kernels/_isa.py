"""Instruction-set levels of the C backend and which kernels each one has.

The element-wise code of the C kernels is compiled for three levels (see
:data:`ISA_NAMES`); the best one the CPU supports is used unless
:func:`set_isa` or the environment variable ``IPEM_KERNEL_ISA`` (read at
import) lowers it.  Which level has which implementation of a kernel is one
table in ``ipem_kernels.c``: the C entry points dispatch through it, and
:func:`implementation` reads it, so that the Python wrappers fall back where
a kernel has no compiled version.
"""
import os

import numpy as np

from ._clib import lib

__all__ = ["ISA_NAMES", "KERNELS", "available_isas", "get_isa", "set_isa", "implementation",
           "isa_table"]

ISA_NAMES = ("base", "avx2", "avx512")

#: The kernels of the table, by name: the C enum ``IPEM_KERNEL_*``.
KERNELS = {
    "kmeans": lib.IPEM_KERNEL_KMEANS,
    "kmeans_bounded": lib.IPEM_KERNEL_KMEANS_BOUNDED,
    "kmeans_pp": lib.IPEM_KERNEL_KMEANS_PP,
    "gmm_diag": lib.IPEM_KERNEL_GMM_DIAG,
    "gmm_diag_topc": lib.IPEM_KERNEL_GMM_DIAG_TOPC,
    "gmm_full": lib.IPEM_KERNEL_GMM_FULL,
}

_IMPLEMENTATIONS = {lib.IPEM_IMPL_NONE: None, lib.IPEM_IMPL_BLAS: "blas",
                    lib.IPEM_IMPL_FUSED: "fused"}


def available_isas():
    """Names of the instruction-set levels this CPU and build support.

    Returns
    -------
    list of str
        A prefix of :data:`ISA_NAMES`, e.g. ``['base', 'avx2', 'avx512']``.
    """
    mask = lib.ipem_isa_available()
    return [name for i, name in enumerate(ISA_NAMES) if mask & (1 << i)]


def get_isa():
    """Name of the instruction-set level in use.

    Returns
    -------
    str
    """
    return ISA_NAMES[lib.ipem_get_isa()]


def set_isa(name):
    """Use at most the level ``name``.

    Parameters
    ----------
    name : {"base", "avx2", "avx512"}

    Returns
    -------
    str
        The level used: the best available one not above ``name``.

    Raises
    ------
    ValueError
        If ``name`` is not a level.
    """
    if name not in ISA_NAMES:
        raise ValueError(f"isa={name!r}: expected one of {ISA_NAMES}")
    return ISA_NAMES[lib.ipem_set_isa(ISA_NAMES.index(name))]


def implementation(kernel, dtype, isa=None):
    """The implementation of a kernel for frames of ``dtype``, from the C table.

    Parameters
    ----------
    kernel : str
        A key of :data:`KERNELS`.
    dtype : numpy dtype
        float32 or float64.
    isa : str, optional
        A level of :data:`ISA_NAMES`; default: the level in use.

    Returns
    -------
    {"blas", "fused"} or None
        ``"blas"``: the generic code of that level (matrix products on
        scipy's BLAS); ``"fused"``: a fused AVX-512 kernel; None: no compiled
        version (the wrapper falls back).
    """
    level = -1 if isa is None else ISA_NAMES.index(isa)
    f64 = int(np.dtype(dtype) == np.float64)
    return _IMPLEMENTATIONS[lib.ipem_kernel_impl(KERNELS[kernel], f64, level)]


def isa_table():
    """The whole table: which level has which implementation of each kernel.

    Returns
    -------
    dict
        ``{(kernel, dtype name): {isa: implementation}}``, as
        :func:`implementation` gives them, for every level of the build
        (available on this CPU or not).
    """
    return {(kernel, dt): {isa: implementation(kernel, dt, isa) for isa in ISA_NAMES}
            for kernel in KERNELS for dt in ("float32", "float64")}


_env_isa = os.environ.get("IPEM_KERNEL_ISA", "").strip().lower()
set_isa(_env_isa if _env_isa in ISA_NAMES else "avx512")
del _env_isa
