"""What runs where the shards live: the same functions for both controllers.

:class:`~ipem.parallel.local.LocalController` calls :func:`call_shard` on the
shards it keeps in-process; on MPI engines
:class:`~ipem.parallel.directview.DirectViewController` applies the
``engine_*`` entry points below, which look the shard up in the engine
namespace dictionary :data:`ENGINE_NAMESPACE` and then call the same
:func:`call_shard`.  Every call is timed here and every exception is caught
here and turned into a :class:`~ipem.parallel.errors.Failure` (classified with
``isinstance``), so results, per-shard times and errors are the same whichever
controller runs them.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from ..kernels import same_parameters
from .data import BlockGroup, Broadcast, BroadcastKey, Shard, block_results
from .errors import Failure, PeerFailed
from .stats import add_stats, pack_stats

#: Name of the dictionary in each engine's namespace that holds the shards,
#: keyed by :attr:`DistributedData.key` (``%px print(ipem_shards)`` shows it).
ENGINE_NAMESPACE = "ipem_shards"

_PROCESS_NAMESPACE = {}


@dataclass
class Outcome:
    """Result of one guarded call on one shard or task.

    Attributes
    ----------
    value : object
        What the function returned (None when it failed).
    elapsed : float
        Seconds the function ran.
    failure : Failure or None
    exc : BaseException or None
        The exception itself; only kept in-process (never sent back by engines).
    """

    value: object = None
    elapsed: float = 0.0
    failure: Failure | None = None
    exc: BaseException | None = None

    def remote(self):
        """The outcome as an engine sends it back: without the exception object."""
        self.exc = None
        return self


def run_guarded(index, func, *args):
    """Call ``func(*args)``, timing it and turning an exception into a Failure."""
    t0 = time.perf_counter()
    try:
        value = func(*args)
    except Exception as exc:  # reported to the client, which raises EngineError
        return Outcome(None, time.perf_counter() - t0, Failure.from_exception(index, exc), exc)
    return Outcome(value, time.perf_counter() - t0)


def call_shard(shard, func, args):
    """Run the shard function ``func(shard, *args)``; see :func:`run_guarded`."""
    return run_guarded(shard.index, func, shard, *args)


def make_shard(X, weights, index, offset, block_size=None):
    """A shard of frames sent by the client (a :class:`BlockGroup` with ``block_size``)."""
    w = None if weights is None else np.ascontiguousarray(weights, dtype=np.float64)
    shard = Shard(X=np.ascontiguousarray(X), index=index, offset=offset, weights=w)
    return shard if block_size is None else BlockGroup.split(shard, block_size)


def load_shard(index, loader, args, block_size=None):
    """A shard whose frames ``loader(*args) -> (X, offset, sources)`` reads where it lives
    (a :class:`BlockGroup` with ``block_size``)."""
    X, offset, sources = loader(*args)
    shard = Shard(X=X, index=index, offset=offset, sources=sources)
    return shard if block_size is None else BlockGroup.split(shard, block_size)


def block_map(group, func, args):
    """``func(block, *args)`` for every block of a :class:`BlockGroup`; list in block order
    (the kernels prepare the shared parameters once: :func:`ipem.kernels.same_parameters`)."""
    with same_parameters():
        return list(block_results(group, func, args))


def block_tree(group, func, args):
    """The statistics of a :class:`BlockGroup`'s blocks, summed along a fixed tree.

    The tree over global block numbers is the same whatever the places hold:
    node ``(level, i)`` is the sum of blocks ``i * 2**level`` to
    ``(i + 1) * 2**level - 1``, always left child + right child.  A place
    returns the largest nodes that lie wholly among its blocks;
    :func:`tree_total` completes the tree on the client, so the total has the
    same bits on any number of places.

    Returns
    -------
    list of (level, i, statistics)
        In block order; at most about ``2 * log2(n_blocks)`` nodes.
    """
    stack = []
    with same_parameters():  # the kernels prepare the broadcast parameters once
        for value, block in zip(block_results(group, func, args), group.blocks):
            level, i = 0, block.index
            while stack and stack[-1][0] == level and stack[-1][1] == i - 1 and i % 2 == 1:
                value = add_stats(stack.pop()[2], value)
                level, i = level + 1, i // 2
            stack.append((level, i, value))
    return stack


def tree_total(nodes, n_blocks):
    """Complete the fixed tree of :func:`block_tree` from the nodes of all places.

    Parameters
    ----------
    nodes : iterable of (level, i, statistics)
    n_blocks : int

    Returns
    -------
    statistics
        The sum over all blocks, in the tree's order.
    """
    have = {(level, i): value for level, i, value in nodes}

    def value(level, i):
        if (level, i) in have:
            return have[(level, i)]
        if level == 0:
            raise ValueError(f"block {i} is missing from the statistics of the places")
        left = value(level - 1, 2 * i)
        if (2 * i + 1) << (level - 1) < n_blocks:
            return add_stats(left, value(level - 1, 2 * i + 1))
        return left
    return value(max(int(n_blocks) - 1, 0).bit_length(), 0)


# ---------------------------------------------------------------------------
# engine entry points (module level, so engines import them by reference)
# ---------------------------------------------------------------------------

def engine_store():
    """The shard dictionary of this process (the engine namespace on engines)."""
    try:
        from IPython import get_ipython
        ip = get_ipython()
    except ImportError:  # pragma: no cover - IPython always present with ipyparallel
        ip = None
    ns = ip.user_ns if ip is not None else _PROCESS_NAMESPACE
    return ns.setdefault(ENGINE_NAMESPACE, {})


def _store_as(key, index, make, *args):
    shard = make(*args)
    engine_store()[key] = shard
    return shard.n_samples


def engine_put(key, X, weights, index, offset, block_size=None):
    """Store frames sent by the client as this engine's shard of dataset ``key``."""
    return run_guarded(index, _store_as, key, index, make_shard, X, weights, index,
                       offset, block_size).remote()


def engine_load(key, index, loader, args, block_size=None):
    """Read this engine's shard of dataset ``key`` with ``loader``."""
    return run_guarded(index, _store_as, key, index, load_shard, index, loader,
                       args, block_size).remote()


def _lookup(key):
    store = engine_store()
    try:
        return store[key]
    except KeyError:
        raise KeyError(f"dataset {key!r} is not on this engine (it has {sorted(store)})") from None


def engine_call(func, key, args):
    """Run a shard function on this engine's shard of dataset ``key``."""
    try:
        shard = _lookup(key)
    except KeyError as exc:
        return Outcome(None, 0.0, Failure.from_exception(-1, exc))
    return call_shard(shard, func, args).remote()


def peer_failed(rank, elapsed):
    """The Outcome of a rank whose own step succeeded when another rank's failed in the
    same collective call (:class:`~ipem.parallel.errors.PeerFailed`)."""
    return Outcome(None, elapsed, Failure.from_exception(
        rank, PeerFailed("another engine failed in the same call")))


def engine_allreduce(func, key, args):
    """Compute this shard's statistics and sum them over all ranks with MPI.

    A first ``Allreduce`` agrees on success (and buffer size) so that a failure
    on one engine never leaves the others blocked in the data ``Allreduce``;
    even an interrupt is only re-raised after the agreement.  Rank 0's outcome
    carries ``(flat, spec)`` of the sum; the others carry None, so the client
    fetches one copy.
    """
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    interrupt = None
    flat, spec = np.zeros(0), None
    try:
        outcome = engine_call(func, key, args)
        if outcome.failure is None:
            flat, spec = pack_stats(outcome.value)
    except BaseException as exc:  # an interrupt: re-raised after the agreement below
        interrupt = exc
        outcome = Outcome(None, 0.0, Failure.from_exception(rank, exc))
    status = np.array([0 if outcome.failure else 1, flat.size, -flat.size], dtype=np.int64)
    comm.Allreduce(MPI.IN_PLACE, status, op=MPI.MIN)
    if interrupt is not None:
        raise interrupt
    if outcome.failure is not None:
        return outcome
    if status[0] == 0:
        return peer_failed(rank, outcome.elapsed)
    if status[1] != -status[2]:
        return Outcome(None, outcome.elapsed, Failure.from_exception(
            rank, RuntimeError("engines returned statistics of different sizes")))
    comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)
    outcome.value = (flat, spec) if rank == 0 else None
    return outcome


def resolve_args(args, store):
    """Replace broadcast handles among ``args`` by the values stored under their keys."""
    out = []
    for a in args:
        if isinstance(a, (Broadcast, BroadcastKey)):
            try:
                a = store[a.key]
            except KeyError:
                raise KeyError(f"broadcast value {a.key!r} is not here (it was freed, "
                               "or sent by another controller)") from None
        out.append(a)
    return tuple(out)


def run_task(index, func, item, args, store):
    """Run one independent task ``func(item, *args)`` with broadcast values resolved."""
    def task():
        return func(item, *resolve_args(args, store))
    return run_guarded(index, task)


def engine_tasks(indices, func, items, args):
    """Run a batch of independent tasks ``func(item, *args)``; one Outcome per item."""
    store = engine_store()
    return [run_task(i, func, item, args, store).remote() for i, item in zip(indices, items)]


def engine_put_value(key, value):
    """Store a broadcast constant under ``key`` on this engine."""
    engine_store()[key] = value
    return Outcome(key)


def engine_free(*keys):
    """Drop datasets or broadcast values ``keys`` from this engine."""
    store = engine_store()
    for key in keys:
        store.pop(key, None)


def describe_store(store):
    """``{key: description}`` of what a shard store holds (for ``Controller.stored``)."""
    out = {}
    for key, value in store.items():
        if isinstance(value, Shard):
            out[key] = (f"shard {value.index}: {value.X.shape[0]} x {value.X.shape[1]} "
                        f"{value.X.dtype}")
        elif isinstance(value, BlockGroup):
            kept = getattr(value.X, "resident", value.X).shape[0]
            out[key] = (f"shard {value.index}: {value.X.shape[0]} x {value.X.shape[1]} "
                        f"{value.X.dtype} in {len(value.blocks)} blocks, {kept} rows in memory")
        else:
            out[key] = f"broadcast {type(value).__name__}"
    return out


def engine_stored():
    """What this engine's ``ipem_shards`` holds: ``{key: description}``."""
    return describe_store(engine_store())


def engine_info():
    """(MPI rank, MPI size, pid, host name, usable CPUs) of this engine.

    Without :mod:`mpi4py` (``ipem[mpi]`` not installed) an engine is rank 0 of
    1, named by its host name.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    try:
        from mpi4py import MPI
    except ImportError:
        import socket
        return 0, 1, os.getpid(), socket.gethostname(), cpus
    comm = MPI.COMM_WORLD
    return comm.Get_rank(), comm.Get_size(), os.getpid(), MPI.Get_processor_name(), cpus


def engine_blas_threads(n):
    """Limit this engine's BLAS thread pools to ``n`` threads."""
    from threadpoolctl import threadpool_limits
    threadpool_limits(limits=int(n))
    return n
