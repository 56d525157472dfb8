"""Reductions whose sums stay where the shards live (:meth:`Controller.reduce_on_places`).

A shard function's statistics are summed as :meth:`Controller.reduce` sums
them, but the sum is not brought to the client: it is cut into one part per
place (``split(stats, place, n_places)``), place ``p`` receives part ``p``
summed over all places, runs ``apply(part, p, n_places, *apply_args)`` on it
where it lives, and only what ``apply`` returns (or ``reply`` of it) comes
back.  Optionally
``keep(results)`` is stored on every place as a broadcast value (for the
next call), without the client sending it.

The parts are summed in place order (or along the fixed tree over blocks,
:func:`~ipem.parallel.engine.tree_total`), and parts of a sum are the sums of
the parts, elementwise: place ``p`` holds exactly ``split(reduce(...), p,
n_places)``, on either path:

* on MPI engines that are all ranks of one ``COMM_WORLD``, one shard per rank
  (:func:`engine_reduce_apply`): the parts go from engine to engine with
  an all-to-all exchange, the kept value with an all-gather (``mpi4py.util.pkl5``),
  every step agreed on by all ranks (an error on one rank comes back as its
  error, the others' as PeerFailed, and no rank is left waiting);
* elsewhere (:class:`~ipem.parallel.local.LocalController`, engines that are
  not MPI-coupled or were re-sharded): through the client
  (:func:`client_reduce_apply`), ``apply`` running on the client.
"""
from __future__ import annotations

import contextlib
import time
import uuid
from typing import NamedTuple

import numpy as np

from .data import Broadcast
from .engine import Outcome, block_tree, call_shard, engine_store, peer_failed, resolve_args, \
    run_guarded, tree_total
from .stats import pack_stats, sum_stats, unpack_stats


class PlacedReduction(NamedTuple):
    """What :meth:`Controller.reduce_on_places` returns.

    Attributes
    ----------
    results : list
        ``apply(part, p, n_places, *apply_args)`` of every place, in place order;
        with ``reply``, ``reply`` of each of them instead, on either path.
    shard_times : ndarray of shape (n_places,)
        Seconds each place spent in the shard function.
    apply_times : ndarray of shape (n_places,)
        Seconds each place spent in ``apply``.
    exchange_times : ndarray of shape (n_places,)
        Seconds each place spent cutting, exchanging and summing the parts
        (and gathering the kept value).
    kept : object or None
        The client's copy of the kept value (None without ``keep``), stored on
        the places again after a lost engine.  Without ``reply``:
        ``keep(results)``, on either path.  With ``reply``: through the client,
        ``keep`` of the whole ``apply`` results, the value the places store too;
        on MPI engines, the places store ``keep`` of the whole results (gathered
        from engine to engine) while ``kept`` is ``keep`` of the replies
        (``results``), which must serve in its place.
    handle : Broadcast or None
        The handle of ``kept`` on every place: pass it among the ``args`` of
        the next call.
    """

    results: list
    shard_times: np.ndarray
    apply_times: np.ndarray
    exchange_times: np.ndarray
    kept: object
    handle: object


def split_parts(value, split, n_places, blocks):
    """The parts of one place's statistics for every place: list of length n_places.

    ``blocks``: ``value`` is a list of tree nodes ``(level, i, stats)``
    (:func:`~ipem.parallel.engine.block_tree`), split node by node.
    """
    if blocks:
        return [[(level, i, split(s, p, n_places)) for level, i, s in value]
                for p in range(n_places)]
    return [split(value, p, n_places) for p in range(n_places)]


def sum_parts(parts, n_blocks):
    """One place's part of the sum: ``parts`` from every place, in place order."""
    if n_blocks is None:
        return sum_stats(parts)
    return tree_total([node for nodes in parts for node in nodes], n_blocks)


def reduce_on_places(ctrl, func, data, args, split, apply, apply_args, keep, reply):
    """:meth:`Controller.reduce_on_places` (see there): a PlacedReduction."""
    key = f"b{uuid.uuid4().hex[:8]}" if keep is not None else None
    try:
        outcomes, on_places = ctrl._reduce_apply(func, data, args, split, apply, apply_args,
                                              keep, key, reply)
        values = ctrl._values(outcomes)
        results = [v[0] for v in values]
        kept = handle = None
        if keep is not None:
            kept = keep(results)
            if not on_places:
                ctrl._make(key, ("value", kept))
            handle = Broadcast(ctrl, key)
            ctrl._recipes[key] = ("value", kept)
    except BaseException:
        if key is not None:
            ctrl._free_key(key)
        raise
    if not on_places and reply is not None:
        results = [reply(r) for r in results]
    times = np.array([[o.elapsed, v[1], v[2]] for o, v in zip(outcomes, values)]).T
    return PlacedReduction(results, times[0], times[1], times[2], kept, handle)


def _resolved(ctrl, args):
    """``args`` with broadcast handles replaced by their values (the client's copies)."""
    return tuple(ctrl._recipes[a.key][1] if isinstance(a, Broadcast) else a for a in args)


def client_reduce_apply(ctrl, func, data, args, split, apply, apply_args):
    """The path through the client: per-place ``(result, apply_s, exchange_s)`` Outcomes
    whose ``elapsed`` is the shard function's time."""
    args, apply_args = _resolved(ctrl, args), _resolved(ctrl, apply_args)
    blocks = data.block_size is not None
    outcomes = (ctrl._call(block_tree, data.key, (func, args)) if blocks
                else ctrl._call(func, data.key, args))
    values = ctrl._values(outcomes)
    n = len(values)
    t0 = time.perf_counter()
    parts = [split_parts(v, split, n, blocks) for v in values]
    mine = [sum_parts([parts[q][p] for q in range(n)], data.n_shards if blocks else None)
            for p in range(n)]
    exchange = (time.perf_counter() - t0) / max(n, 1)
    out = []
    with getattr(ctrl, "_limits", contextlib.nullcontext)():
        for p, (o, part) in enumerate(zip(outcomes, mine)):
            done = run_guarded(p, apply, part, p, n, *apply_args)
            if done.failure is not None:
                out.append(done)
            else:
                out.append(Outcome((done.value, done.elapsed, exchange), o.elapsed))
    return out


def _agree(comm, ok):
    """Whether every rank is ``ok``: a non-blocking ``Allreduce`` waited for with short
    sleeps, so that an engine that is ahead does not spin on a core the others need
    (MPI's blocking waits poll), and no rank is left waiting in a later collective."""
    from mpi4py import MPI
    flag = np.array([1 if ok else 0], dtype=np.int64)
    request = comm.Iallreduce(MPI.IN_PLACE, flag, op=MPI.MIN)
    delay = 1e-4
    while not request.Test():
        time.sleep(delay)
        delay = min(2 * delay, 2e-3)
    return bool(flag[0])


def _stopped(comm, rank, step, elapsed):
    """None when ``step`` (an Outcome) succeeded on every rank (:func:`_agree`); else what
    this rank sends back: its own failure, or PeerFailed when only others failed."""
    if _agree(comm, step.failure is None):
        return None
    return (step if step.failure else peer_failed(rank, elapsed)).remote()


def _pack(value):
    """``value`` pickled for an exchange: ``(stream, buffers)``, its arrays out of band
    (views, not copies), so that the exchange itself pickles nothing of the caller's
    and cannot fail on one rank while the others wait in it."""
    import pickle
    from mpi4py import MPI
    stream, buffers = MPI.Pickle().dumps_oob(value)
    return stream, [pickle.PickleBuffer(b) for b in buffers]


def _unpack(packed):
    """The value of :func:`_pack`'s ``(stream, buffers)``."""
    from mpi4py import MPI
    return MPI.Pickle().loads_oob(*packed)


def _packed_parts(value, split, n_places, blocks):
    """:func:`split_parts`, each part :func:`_pack`-ed for its place."""
    return [_pack(part) for part in split_parts(value, split, n_places, blocks)]


def _exchange_sum(big, packed, n_blocks):
    """This rank's part of the sum: the packed parts sent to their places (all-to-all),
    the ones received unpacked and summed in rank order (:func:`sum_parts`)."""
    return sum_parts([_unpack(p) for p in big.alltoall(packed)], n_blocks)


def _gather_keep(big, packed, keep):
    """``keep`` of every rank's result (packed; all-gather), in rank order."""
    return keep([_unpack(p) for p in big.allgather(packed)])


def _inputs(store, key, args, apply_args):
    """This rank's shard and its arguments, broadcast handles resolved."""
    return store[key], resolve_args(args, store), resolve_args(apply_args, store)


def engine_reduce_apply(func, key, args, split, apply, apply_args, keep, keep_key, n_blocks,
                        reply=None):
    """Engine entry point of :meth:`Controller.reduce_on_places` on MPI engines.

    The shard function runs on this engine's shard, the parts of its statistics
    go to their places (all-to-all), this rank sums its part in rank order
    and runs ``apply`` on it; with ``keep``, every rank stores
    ``keep(all results)`` under ``keep_key``; ``reply(result)`` (default: the
    result) goes back.  Every step runs guarded and is followed by an agreement
    on success (:func:`_agree`): anything that raises on one rank (the shard
    function, ``split``, pickling a part or a result, summing the parts,
    ``apply``, ``reply``, ``keep``) comes back as that rank's failure, the
    others' as :class:`~ipem.parallel.errors.PeerFailed`, and no rank is left
    waiting in a collective.  Values are pickled before an exchange starts.

    Returns
    -------
    Outcome
        ``value = (result or reply, apply_seconds, exchange_seconds)``,
        ``elapsed``: the shard function's seconds.
    """
    from mpi4py import MPI
    from mpi4py.util import pkl5
    comm = MPI.COMM_WORLD
    big = pkl5.Intracomm(comm)  # arrays travel out of band, not copied into pickles
    rank, size = comm.Get_rank(), comm.Get_size()
    store = engine_store()
    stats = run_guarded(rank, _inputs, store, key, args, apply_args)
    if stats.failure is None:
        shard, args, apply_args = stats.value
        stats = (call_shard(shard, block_tree, (func, args)) if n_blocks is not None
                 else call_shard(shard, func, args))
    if (stop := _stopped(comm, rank, stats, stats.elapsed)) is not None:
        return stop
    elapsed, t0 = stats.elapsed, time.perf_counter()
    step = run_guarded(rank, _packed_parts, stats.value, split, size, n_blocks is not None)
    stats = None
    if (stop := _stopped(comm, rank, step, elapsed)) is not None:
        return stop
    step = run_guarded(rank, _exchange_sum, big, step.value, n_blocks)
    if (stop := _stopped(comm, rank, step, elapsed)) is not None:
        return stop
    exchange = time.perf_counter() - t0
    done = run_guarded(rank, apply, step.value, rank, size, *apply_args)
    step = done if done.failure is not None or reply is None else \
        run_guarded(rank, reply, done.value)
    if (stop := _stopped(comm, rank, step, elapsed)) is not None:
        return stop
    if keep is not None:
        t0 = time.perf_counter()
        kept = run_guarded(rank, _pack, done.value)
        if (stop := _stopped(comm, rank, kept, elapsed)) is not None:
            return stop
        kept = run_guarded(rank, _gather_keep, big, kept.value, keep)
        if (stop := _stopped(comm, rank, kept, elapsed)) is not None:
            return stop
        store[keep_key] = kept.value
        exchange += time.perf_counter() - t0
    return Outcome((step.value, done.elapsed, exchange), elapsed)


def _packed_nodes(nodes):
    """Tree nodes with their statistics flattened: ``([(level, i, flat)], spec)``
    (:func:`~ipem.parallel.stats.pack_stats`; ``spec`` None without nodes)."""
    out, spec = [], None
    for level, i, stats in nodes:
        flat, spec = pack_stats(stats)
        out.append((level, i, flat))
    return out, spec


def _my_slice_of_tree(big, nodes, n_blocks):
    """Every rank sends rank ``q`` the ``q``-th of ``size`` contiguous slices of its
    nodes' values (all-to-all) and completes the tree for the slice it receives:
    values are summed element by element, so slice by slice is the whole tree's bits."""
    size = big.Get_size()
    n = nodes[0][2].size if nodes else 0
    cuts = [n * q // size for q in range(size + 1)]
    sends = [[(level, i, flat[cuts[q]:cuts[q + 1]]) for level, i, flat in nodes]
             for q in range(size)]
    return tree_total([node for part in big.alltoall(sends) for node in part], n_blocks)


def _gathered_total(big, mine, spec):
    """Rank 0: the slices of every rank, joined in rank order and unpacked; else None."""
    parts = big.gather((mine, spec), root=0)
    if parts is None:
        return None
    spec = next(s for _, s in parts if s is not None)
    return unpack_stats(np.concatenate([p for p, _ in parts]), spec)


def engine_tree_reduce(func, key, args, n_blocks):
    """Engine entry point of :meth:`Controller.reduce` for a dataset in blocks with
    ``reduction="allreduce"`` on one MPI world.

    Each rank sums its blocks along the fixed tree (:func:`block_tree`); then,
    like a reduce-scatter, every rank completes the tree (:func:`tree_total`)
    for its slice of the statistics' values from every rank's nodes, and rank
    0 gathers the slices: the bits of the client's sum, about as many bytes per
    rank as its nodes hold, and one copy fetched.  Every step is guarded and
    agreed on like :func:`engine_reduce_apply`.

    Returns
    -------
    Outcome
        ``value``: the total on rank 0, None on the others; ``elapsed``: the shard
        function's seconds.
    """
    from mpi4py import MPI
    from mpi4py.util import pkl5
    comm = MPI.COMM_WORLD
    big = pkl5.Intracomm(comm)
    rank = comm.Get_rank()
    stats = run_guarded(rank, _inputs, engine_store(), key, args, ())
    if stats.failure is None:
        shard, args, _ = stats.value
        stats = call_shard(shard, block_tree, (func, args))
    if (stop := _stopped(comm, rank, stats, stats.elapsed)) is not None:
        return stop
    elapsed = stats.elapsed
    step = run_guarded(rank, _packed_nodes, stats.value)
    stats = None
    if (stop := _stopped(comm, rank, step, elapsed)) is not None:
        return stop
    nodes, spec = step.value
    step = run_guarded(rank, _my_slice_of_tree, big, nodes, n_blocks)
    if (stop := _stopped(comm, rank, step, elapsed)) is not None:
        return stop
    step = run_guarded(rank, _gathered_total, big, step.value, spec)
    if (stop := _stopped(comm, rank, step, elapsed)) is not None:
        return stop
    return Outcome(step.value, elapsed)
