"""Compiled (C, cffi) implementation of ipem's E-step kernels.

Same functions, signatures and semantics as :mod:`ipem.kernels._numpy` (see
its docstrings); the C code lives in ``ipem_kernels.c`` and the headers it
includes, and is built by ``_build.py`` when ipem is installed.  Importing
this module raises ImportError when the extension was not built, which makes
:mod:`ipem.kernels` fall back to NumPy.

This module gathers the backend; its parts:

:mod:`~ipem.kernels._clib`
    the compiled library (``ffi``, ``lib``), scipy's BLAS handed to it,
    error codes and pointers;
:mod:`~ipem.kernels._isa`
    instruction-set levels and which level has which kernel (one table, in
    ``ipem_kernels.c``);
:mod:`~ipem.kernels._threads`
    worker threads and chunk sizes;
:mod:`~ipem.kernels._c_kmeans`, :mod:`~ipem.kernels._c_gmm`
    the kernels;
:mod:`~ipem.kernels._common`
    the constants and argument checks it shares with the NumPy backend.

float32 frames on a CPU with AVX-512 take fused kernels
(``ipem_fused_avx512.h``) with their own matrix-product micro-kernels; the
others call scipy's BLAS.  Kernels run on :func:`kernel_threads` worker
threads (the BLAS thread count, so ``threadpoolctl`` limits them); results
never depend on the number.

Differences from the NumPy reference that callers may notice:

* ``X`` must be float32 or float64 with unit stride along features (a row
  slice of a bigger array is fine; anything else is copied first).
* Output arrays must be C-contiguous with the documented dtype
  (``labels`` int64, ``mindist``/``logprob_out`` float64; ``resp_out``
  float64 or float32); otherwise ValueError/TypeError.
* ``chunk_size=None`` picks a cache-sized chunk measured for the C code
  (:func:`c_chunk_size`), not :func:`default_chunk_size` (which is
  re-exported unchanged); results do not depend on the chunk size beyond
  rounding.
* float32 data: log-sum-exp and responsibilities are computed in float32
  (vectorised exp, ~1e-7 relative) before the float64 accumulation; with
  ``sample_weight`` the weights scale the float32 responsibilities too
  (rounded to float32), so weighted statistics agree with NumPy to float32
  rounding.
"""
from ._clib import ffi, lib  # noqa: F401  (tests call lib.ipem_vexp_* through it)
from ._c_gmm import gmm_diag_step, gmm_diag_topc, gmm_full_step
from ._c_kmeans import kmeans_pp_trial, kmeans_step, kmeans_step_bounded, new_kmeans_bounds
from ._common import LOG_2PI, check_sample_weight, default_chunk_size  # noqa: F401
from ._isa import ISA_NAMES, available_isas, get_isa, implementation, isa_table, set_isa
from ._threads import c_chunk_size, kernel_threads  # noqa: F401

__all__ = ["kmeans_step", "kmeans_step_bounded", "new_kmeans_bounds", "kmeans_pp_trial",
           "gmm_diag_step", "gmm_full_step", "gmm_diag_topc",
           "default_chunk_size",
           "ISA_NAMES", "get_isa", "set_isa", "available_isas", "implementation", "isa_table"]
