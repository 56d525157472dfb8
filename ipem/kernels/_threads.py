"""Threads and work sizes of the C kernels.

The kernels run on :func:`kernel_threads` worker threads, as many as scipy's
BLAS is allowed right now (so ``threadpoolctl`` limits them too); results
never depend on the number.  :func:`c_chunk_size` picks the frames per chunk
when the caller gives no ``chunk_size``.
"""
import contextlib
import os

from ._common import check_chunk_size

__all__ = ["kernel_threads", "one_blas_thread", "c_chunk_size", "chunk_frames",
           "full_kblock"]

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

    Returns
    -------
    int
        At least 1.
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
def one_blas_thread(n_threads):
    """While the kernel's own workers call the BLAS, make each call one-threaded.

    Parameters
    ----------
    n_threads : int
        The kernel's worker threads; with one, the BLAS is left alone.
    """
    ctl = _blas_controller() if n_threads > 1 else None
    prev = ctl.get_num_threads() if ctl is not None else 1
    if prev > 1:
        ctl.set_num_threads(1)
    try:
        yield
    finally:
        if prev > 1:
            ctl.set_num_threads(prev)


def c_chunk_size(kind, n_components, n_features=None, itemsize=4):
    """Frames per chunk used by the C kernels when ``chunk_size`` is None.

    Measured on a 2-core Zen 5 (1 MB L2 per core, 32 MB L3) with scipy's
    OpenBLAS: time per frame falls as the (chunk x K) block of
    log-likelihoods / distances grows to ~2 MB (bigger GEMMs, fewer calls)
    and is flat beyond, so the block is kept at ~2 MB (256..8192 frames).
    The full-covariance kernel is best at 1024 frames.

    Parameters
    ----------
    kind : {"kmeans", "diag", "full"}
    n_components : int
    n_features : int, optional
        Unused (the measured sizes do not depend on it).
    itemsize : int, default=4
        Bytes per element of the frames.

    Returns
    -------
    int
    """
    k = max(int(n_components), 1)
    if kind == "full":
        return 1024
    rows = (2 << 20) // (int(itemsize) * k)
    return int(max(256, min(8192, rows // 16 * 16)))


def chunk_frames(chunk_size, kind, n_components, n_features, itemsize):
    """The caller's ``chunk_size`` (checked), or :func:`c_chunk_size`'s.

    Returns
    -------
    int
    """
    chunk = check_chunk_size(chunk_size)
    if chunk is None:
        return c_chunk_size(kind, n_components, n_features, itemsize)
    return chunk


def full_kblock(n_components, dp, chunk, itemsize):
    """Components per log-likelihood GEMM of the full kernel: the (chunk x kb*dp) block ~1 MB.

    Returns
    -------
    int
        Between 1 and ``n_components``.
    """
    kb = (1 << 20) // max(1, itemsize * dp * chunk)
    return int(max(1, min(n_components, kb)))
