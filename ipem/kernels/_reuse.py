"""Parameters prepared once for many kernel calls on the blocks of one place.

When a dataset is cut into fixed blocks (``Controller.block_size``), a shard
function runs once per block with the same parameter objects (the broadcast
model).  What a kernel wrapper derives from those parameters alone (the
k-means centres' geometry, the diagonal GMM's packed matrix, the
full-covariance GMM's factors) is the same for every block; inside
:func:`same_parameters` the wrappers compute it once and reuse it, so that a
place's blocks cost what one call on all its rows costs, with the same bits.

Reuse is keyed on the *identity* of the parameter objects; the cache holds
them, so an identity cannot be taken by another object while it lives, and it
lives only as long as the ``with`` block (one place's pass over its blocks,
during which the parameters are not changed).  Outside the block, and in
other threads, nothing is reused.
"""
import contextlib
import contextvars

__all__ = ["same_parameters", "prepared"]

_CACHE = contextvars.ContextVar("ipem_kernel_parameters", default=None)


@contextlib.contextmanager
def same_parameters():
    """Within the ``with`` block, :func:`prepared` values are computed once per
    set of parameter objects (and freed at its end)."""
    token = _CACHE.set({})
    try:
        yield
    finally:
        _CACHE.reset(token)


def prepared(what, make, *objects):
    """``make()``, or what it returned for the same ``what`` and the same ``objects``
    (by identity) earlier in the current :func:`same_parameters` block.

    Parameters
    ----------
    what : str
        Name of the prepared value (one kernel wrapper's).
    make : callable
        ``make() -> value``, computed from ``objects`` (and constants) only; the
        value must not be modified by its users.
    *objects
        The objects ``make`` reads (arrays; ``None`` allowed).

    Returns
    -------
    object
    """
    cache = _CACHE.get()
    if cache is None:
        return make()
    key = (what,) + tuple(map(id, objects))
    hit = cache.get(key)
    if hit is None:
        hit = cache[key] = (objects, make())
    return hit[1]
