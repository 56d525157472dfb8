"""The controller seam: where the data lives and where shard functions run.

Every ipem algorithm talks to its data through a :class:`Controller` and
through nothing else.  A controller can

* **distribute** a dataset once (:meth:`Controller.distribute` sends arrays,
  :meth:`Controller.distribute_loaded` lets each shard make its rows with a
  loader, e.g. :func:`ipem.io.shards.distribute_files`); the shards then stay
  where they were sent and are referred to by a
  :class:`~ipem.parallel.data.DistributedData`;
* run a **shard function** ``func(shard, *args)`` on every shard with
  broadcast parameters and **reduce** the statistics it returns
  (:meth:`Controller.reduce`), or bring the per-shard results back in shard
  order (:meth:`Controller.map`);
* run independent **tasks** (:meth:`Controller.map_tasks`).

Subclasses implement the primitives (``_put``, ``_load``, ``_put_value``,
``_call``, ``_free``, ``_tasks``) that return :class:`~ipem.parallel.engine.Outcome`
objects; everything else (splitting, moments, error reporting, per-shard
timing, the record of what was sent where, freeing) is here, once.

**Lost engines.**  A controller remembers how every live dataset and
broadcast value was made (the client's arrays, or the files each shard
read).  When a call raises :class:`~ipem.parallel.errors.EngineLost`,
:meth:`Controller.recover` restarts or re-shards the engines (where the
controller can) and makes everything again; :meth:`Controller.retry_lost`
wraps a computation in that loop, and the EM driver repeats the lost
iteration with it.  Implementations: :class:`~ipem.parallel.local.LocalController`
(in-process) and :class:`~ipem.parallel.directview.DirectViewController`
(ipyparallel engines in MPI mode).

**The same model on any number of engines.**  A dataset is cut into fixed
blocks of rows in distribution order (:attr:`Controller.block_size`: by
default ``"auto"``, blocks of :func:`auto_block_size` rows, which depends on
the number of rows only), every place holds whole blocks, and shard functions
run on each block as a shard of its own
(:class:`~ipem.parallel.data.BlockGroup`): :meth:`map` returns one result per
block and :meth:`reduce` sums the blocks' statistics along a fixed binary
tree over block numbers (:func:`~ipem.parallel.engine.block_tree`), so
results have the same bits whatever the number of places, the reduction, or
a re-sharding after a loss.  ``block_size=None`` gives each place one
contiguous shard instead (bits then depend on the number of places).
Datasets of per-utterance statistics (total variability) are blocked only
with an integer ``block_size`` (in utterances) or a memory budget: there
blocks cost more than 5 % per iteration (``benchmarks/RESULTS.md``).

A controller is configuration, like ``n_jobs``: estimators hold it by
reference, and ``copy.deepcopy`` (hence ``sklearn.base.clone``) hands on the
same object instead of copying engines or stored shards.
"""
from __future__ import annotations

import logging
import uuid
from typing import NamedTuple

import numpy as np

from .data import Broadcast, DistributedData, block_rows, check_block_size, check_magnitude
from .engine import block_map, block_tree, tree_total
from .errors import EngineError, EngineLost, raise_failures
from .places import client_reduce_apply, reduce_on_places
from .stats import sum_stats


class Reduction(NamedTuple):
    """What :meth:`Controller.reduce_timed` returns.

    Attributes
    ----------
    total : object
        The statistics summed over the shards (what :meth:`Controller.reduce` returns).
    shard_times : ndarray of shape (n_shards,)
        Seconds each shard spent in the shard function.
    """

    total: object
    shard_times: np.ndarray


class Controller:
    """Base class of controllers; see the module docstring.

    Attributes
    ----------
    n_shards : int
        Number of places (shards) a dataset is split into.
    block_size : "auto", int or None
        Rows of the fixed blocks datasets distributed from now on are cut into
        (``"auto"``: :func:`auto_block_size` of the dataset's rows, for frames;
        ``None``: one shard per place, the layout depends on ``n_shards``).
        With blocks, models have the same bits on any number of places; see
        :meth:`rows_per_block`.
    """

    n_shards = 1
    #: how many times in a row :meth:`retry_lost` recovers before giving up
    max_recoveries = 3

    def __init__(self, block_size="auto"):
        self.block_size = check_block_size(block_size)
        #: key -> how to make it again: ("put", parts) | ("load", loader, assignments)
        #: | ("value", value)
        self._recipes = {}
        #: what was lost and recovered, oldest first (dicts; see :meth:`recover`)
        self.recoveries = []

    # --- primitives that subclasses implement -----------------------------
    def _put(self, key, parts):
        """Store ``parts[i] = (X, weights, offset)`` as shard ``i``; list of Outcome."""
        raise NotImplementedError

    def _load(self, key, loader, assignments):
        """Shard ``i`` reads ``loader(*assignments[i])``; list of Outcome."""
        raise NotImplementedError

    def _call(self, func, key, args):
        """``func(shard, *args)`` on every shard; list of Outcome in shard order."""
        raise NotImplementedError

    def _call_reduce(self, func, key, args):
        """Like :meth:`_call`, but the values are summed: (sum, list of Outcome)."""
        outcomes = self._call(func, key, args)
        values = self._values(outcomes)
        return sum_stats(values), outcomes

    def _call_tree_reduce(self, func, data, args):
        """Like :meth:`_call_reduce` for a dataset in blocks: the places' nodes of the
        fixed tree (:func:`block_tree`) completed here (:func:`tree_total`)."""
        outcomes = self._call(block_tree, data.key, (func, args))
        nodes = [n for part in self._values(outcomes) for n in part]
        return tree_total(nodes, data.n_shards), outcomes

    def _put_value(self, key, value):
        """Store ``value`` under ``key`` everywhere tasks run; list of Outcome."""
        raise NotImplementedError

    def _free(self, key):
        """Delete ``key`` where it lives; must not raise for what is already gone."""
        raise NotImplementedError

    def _release(self, key):
        """A handle was garbage-collected: forget its recipe and free it (never raises)."""
        self._recipes.pop(key, None)
        try:
            self._free(key)
        except Exception as exc:  # a finalizer must not raise
            logging.getLogger(__name__).debug("could not free %r: %s", key, exc)

    def _stored_keys(self):
        """``{place: {key: description}}`` of what the shards' places hold."""
        raise NotImplementedError

    def _tasks(self, func, items, args, progress, desc):
        """``func(item, *args)`` for every item, load-balanced; list of Outcome."""
        raise NotImplementedError

    def _where(self, index):
        """Name of the place where shard ``index`` lives, for error messages."""
        return f"shard {index}"

    def _reduce_apply(self, func, data, args, split, apply, apply_args, keep, keep_key, reply):
        """:meth:`reduce_on_places`'s per-place Outcomes, and whether the places ran
        ``apply``, ``keep`` and ``reply`` themselves (here: no, the client did)."""
        return client_reduce_apply(self, func, data, args, split, apply, apply_args), False

    # --- configuration semantics -----------------------------------------
    def __deepcopy__(self, memo):
        return self

    def __copy__(self):
        return self

    # --- results ------------------------------------------------------------
    def _values(self, outcomes, where=None, of=None):
        """The values of shard outcomes, or one EngineError for all failures (for tasks,
        ``of`` = their number: ``"N of M tasks failed; first: ..."``)."""
        failures = []
        for i, o in enumerate(outcomes):
            if o.failure is not None:
                o.failure.index = i
                failures.append(o.failure)
        if failures:
            cause = next((o.exc for o in outcomes if o.exc is not None), None)
            raise_failures(failures, where or self._where, cause, of=of)
        return [o.value for o in outcomes]

    # --- the public interface ---------------------------------------------
    def rows_per_block(self, n_rows, unit="frames"):
        """Rows per block of a dataset of ``n_rows`` rows (``unit``: "frames" or
        "utterances"), or None: :func:`~ipem.parallel.data.block_rows` of
        :attr:`block_size`."""
        return block_rows(self.block_size, n_rows, unit)

    def split_sizes(self, n_samples, block_size="controller"):
        """Rows of each place when an array of ``n_samples`` rows is split contiguously.

        With blocks (``block_size``: an int; None: none; by default the
        controller's, :meth:`rows_per_block`), each place gets whole blocks
        (about as many each; a place may get none).
        """
        if isinstance(block_size, str) and block_size == "controller":
            block_size = self.rows_per_block(n_samples)
        if block_size is not None:
            block_size = int(block_size)
            b, s = block_size, self.n_shards
            n_blocks = -(-int(n_samples) // b)
            cuts = [min(int(n_samples), (i * n_blocks // s) * b) for i in range(s + 1)]
            return np.diff(np.array(cuts, dtype=np.int64))
        q, r = divmod(int(n_samples), self.n_shards)
        return np.array([q + (1 if i < r else 0) for i in range(self.n_shards)], dtype=np.int64)

    def distribute(self, X, sample_weight=None, *, key=None, unit="frames"):
        """Send a validated 2-D array (and optional frame weights) to the shards, once.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
            Must already be validated (finite, float32 or float64).
        sample_weight : ndarray of shape (n_samples,), optional
            Validated non-negative per-frame weights.
        key : str, optional
            Name of the dataset in the shard store; generated if omitted.
        unit : {"frames", "utterances"}, default="frames"
            What a row is, for the blocks (:meth:`rows_per_block`): utterance
            statistics rows are not cut into blocks under ``block_size="auto"``.

        Returns
        -------
        DistributedData
        """
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(f"distribute expects a 2-D array, got shape {X.shape}")
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight, dtype=np.float64)
            if sample_weight.shape != (X.shape[0],):
                raise ValueError(f"sample_weight has shape {sample_weight.shape}, expected "
                                 f"({X.shape[0]},)")
        key = key or f"d{uuid.uuid4().hex[:8]}"
        block_size = self.rows_per_block(X.shape[0], unit)
        sizes = self.split_sizes(X.shape[0], block_size)
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        parts = [(X[a:b], None if sample_weight is None else sample_weight[a:b], int(a))
                 for a, b in zip(bounds[:-1], bounds[1:])]
        data = DistributedData(self, key, sizes, X.shape[1], X.dtype,
                               weighted=sample_weight is not None, block_size=block_size)
        self._stored(data, ("put", parts, block_size))
        return data

    def distribute_loaded(self, loader, assignments, shard_sizes, n_features, *,
                          dtype=np.float64, files=None, key=None, block_size="controller"):
        """Let each shard make its own rows where it lives, with a loader of its own.

        Shard ``i`` stores
        ``loader(*assignments[i]) -> (X, offset, sources)``.  Like every
        dataset, it is made again from the same recipe when engines are
        replaced (feature files read where the shards live,
        :func:`ipem.io.shards.distribute_files`; per-utterance statistics
        computed from feature files, :mod:`ipem.ivector.stats`).

        Parameters
        ----------
        loader : callable
            Module-level function (engines import it by reference).
        assignments : list of tuple, length n_shards
        shard_sizes : array-like of int, shape (n_shards,)
            Rows each shard's loader returns.
        n_features : int
        dtype : numpy dtype
            Dtype of the rows the loader returns.
        files : list of list, optional
            What each shard read (kept on the client, as ``data.files``).
        block_size : int, None or "controller", default="controller"
            Rows per block of this dataset (None: not in blocks; by default
            the controller's for frames, :meth:`rows_per_block`); the places'
            rows must end on block boundaries (:meth:`split_sizes`).

        Returns
        -------
        DistributedData
        """
        if len(assignments) != self.n_shards or len(shard_sizes) != self.n_shards:
            raise ValueError(f"distribute_loaded: {len(assignments)} assignments and "
                             f"{len(shard_sizes)} sizes for {self.n_shards} shards")
        if isinstance(block_size, str) and block_size == "controller":
            block_size = self.rows_per_block(int(np.sum(shard_sizes)))
        if block_size is not None:
            block_size = int(block_size)
            bounds = np.cumsum(shard_sizes)[:-1]
            if np.any((bounds % block_size != 0) & (bounds != np.sum(shard_sizes))):
                raise ValueError(f"distribute_loaded: the places' rows {list(shard_sizes)} do "
                                 f"not end on boundaries of the blocks of {block_size} "
                                 "rows (use split_sizes)")
        key = key or f"l{uuid.uuid4().hex[:8]}"
        data = DistributedData(self, key, shard_sizes, n_features, dtype, files=files,
                               block_size=block_size)
        self._stored(data, ("load", loader, list(assignments), block_size))
        return data

    def _stored(self, data, recipe):
        """Make ``data`` from ``recipe`` and compute the moments; on failure leave nothing."""
        try:
            self.retry_lost(lambda: self._make(data.key, recipe))
            self._recipes[data.key] = recipe
            self.retry_lost(lambda: self._compute_moments(data))
        except BaseException:
            data._finalizer.detach()
            self._free_key(data.key)
            raise

    def _make(self, key, recipe):
        """Store ``key`` from its recipe (see ``_recipes``)."""
        kind = recipe[0]
        if kind == "put":
            outcomes = self._put(key, *recipe[1:])
        elif kind == "load":
            outcomes = self._load(key, *recipe[1:])
        else:
            outcomes = self._put_value(key, recipe[1])
        self._values(outcomes)

    def _remake_all(self):
        """Store every live dataset and broadcast value again (after engines were replaced)."""
        for key, recipe in list(self._recipes.items()):
            self._make(key, recipe)

    def _free_key(self, key):
        """Free ``key`` now; a failure is logged, never raised (it must not hide another)."""
        self._recipes.pop(key, None)
        try:
            self._free(key)
        except Exception as exc:
            logging.getLogger(__name__).warning("could not free %r: %s", key, exc)

    def _compute_moments(self, data):
        """Mean and variance per feature, weighted by the frame weights when there are any."""
        total, weight = self.reduce(_shard_sum, data)
        data.total_weight = float(weight)
        data.mean = total / max(weight, 1)
        data.var = self.reduce(_shard_centered_sq, data, data.mean) / max(weight, 1)
        check_magnitude(data.mean, data.var, data.dtype)

    def _check(self, data):
        if not isinstance(data, DistributedData) or data.controller is not self:
            raise ValueError("this dataset was distributed by another controller; "
                             "distribute it with this one")

    def reduce(self, func, data, *args):
        """Run ``func(shard, *args)`` on every shard and sum the statistics.

        ``args`` are broadcast to every shard.  The sum is taken in shard
        order (or by MPI ``Allreduce`` when so configured); for a dataset in
        blocks, along the fixed tree over blocks (the same bits on any number
        of places).  Same as
        ``reduce_timed(func, data, *args).total``.
        """
        return self.reduce_timed(func, data, *args).total

    def reduce_timed(self, func, data, *args):
        """:meth:`reduce`, with the seconds each shard spent in ``func``.

        Returns
        -------
        Reduction
            ``(total, shard_times)``: the summed statistics and an ndarray of
            shape (n_shards,) (telemetry for the EM records).
        """
        self._check(data)
        if data.block_size is not None:
            total, outcomes = self._call_tree_reduce(func, data, args)
        else:
            total, outcomes = self._call_reduce(func, data.key, args)
        return Reduction(total, np.array([o.elapsed for o in outcomes], dtype=np.float64))

    def reduce_on_places(self, func, data, *args, split, apply, apply_args=(), keep=None,
                         reply=None):
        """Reduce ``func`` over ``data`` and use the sum where it is: each place gets a part.

        Place ``p`` of ``n`` receives ``split(total, p, n)`` of the statistics
        :meth:`reduce` would return (the same bits: parts are summed in place
        order, or along the tree over blocks), runs ``apply(part, p, n,
        *apply_args)`` there and sends back only its result
        (:mod:`ipem.parallel.places`; on MPI engines the parts go from engine to
        engine, not through the client, whenever shard ``i`` is on rank ``i`` of
        one ``MPI.COMM_WORLD``, whatever a DirectViewController's ``reduction``
        says).  Broadcast handles among ``args`` and ``apply_args`` are looked
        up where the call runs.

        Parameters
        ----------
        func : callable
            Shard function, as for :meth:`reduce`.
        data : DistributedData
        split : callable
            ``split(stats, place, n_places) -> part`` (module level); a part of
            a sum must be the sum of the parts (slices of the statistics).
        apply : callable
            ``apply(part, place, n_places, *apply_args) -> result`` (module level).
        keep : callable, optional
            ``keep(results) -> value`` (module level): stored on every place as a
            :class:`Broadcast` (on MPI engines each makes it from the gathered
            results; the client sends nothing) and kept on the client, so it is
            stored again after a lost engine.
        reply : callable, optional
            ``reply(result)`` (module level): what a place sends back instead of its
            whole result (the kept value on the client is then ``keep`` of the
            replies where the places kept it: it must serve in its place).

        Returns
        -------
        PlacedReduction
        """
        self._check(data)
        return reduce_on_places(self, func, data, args, split, apply, apply_args, keep, reply)

    def map(self, func, data, *args):
        """Run ``func(shard, *args)`` on every shard; list of results in shard order.

        For a dataset in blocks, the shards are the blocks (``data.n_shards`` results).
        """
        self._check(data)
        if data.block_size is not None:
            return [v for part in self._values(self._call(block_map, data.key, (func, args)))
                    for v in part]
        return self._values(self._call(func, data.key, args))

    def map_tasks(self, func, items, *args, progress=False, desc=None):
        """Run ``func(item, *args)`` for every item, load-balanced over the shards' places.

        Returns
        -------
        list
            The results in the order of ``items``.
        """
        items = list(items)
        outcomes = self._tasks(func, items, args, progress, desc)
        return self._values(outcomes, where=lambda i: f"task {i} ({_short(items[i])})",
                            of=len(items))

    def free(self, data):
        """Delete the shards of ``data`` (or a :class:`Broadcast`) where they live."""
        data.free()

    def broadcast(self, value, *, key=None):
        """Send ``value`` once to every place where tasks run.

        Pass the returned handle among the ``args`` of :meth:`map_tasks`:
        each task receives ``value`` looked up where it runs, so a model used
        by thousands of tasks travels once per engine, not once per task.

        Parameters
        ----------
        value : object
            Anything picklable (a dict of UBM parameters, ...).
        key : str, optional

        Returns
        -------
        Broadcast
            Freed by ``.free()``, at the end of a ``with`` block, or when dropped.
        """
        key = key or f"b{uuid.uuid4().hex[:8]}"
        handle = Broadcast(self, key)
        try:
            self.retry_lost(lambda: self._make(key, ("value", value)))
        except BaseException:
            handle._finalizer.detach()
            self._free_key(key)
            raise
        self._recipes[key] = ("value", value)
        return handle

    def stored(self):
        """What the shards' places hold: ``{place: {key: description}}``.

        On engines this is the content of their ``ipem_shards`` dictionaries.
        """
        return self._stored_keys()

    # --- lost engines ---------------------------------------------------------
    def recover(self, error, attempt=1):
        """Replace lost engines and store every live dataset and broadcast value again.

        Parameters
        ----------
        error : EngineLost
        attempt : int
            How many recoveries in a row this is (1 for the first).

        Returns
        -------
        dict
            What happened: ``engines`` lost, ``reason``, ``action``
            (``"restarted"`` or ``"resharded"``), ``seconds``, ``attempt``;
            also appended to :attr:`recoveries`.

        Raises
        ------
        EngineError
            When this controller cannot replace engines (the base class, an
            engine set it did not start whose engines are MPI-coupled), or
            after :attr:`max_recoveries` attempts.
        """
        raise EngineError(f"{error}; {type(self).__name__} cannot replace lost engines",
                          getattr(error, "failures", ())) from error

    def retry_lost(self, fn, *, restore=None, on_recover=None):
        """Call ``fn()``; when an engine is lost, :meth:`recover` and call it again.

        Parameters
        ----------
        fn : callable
            A computation over this controller that can simply be repeated.
        restore : callable, optional
            Called after a recovery, before ``fn`` is repeated (to rebuild
            per-shard state the repetition relies on).
        on_recover : callable, optional
            ``on_recover(event)`` with the dict returned by :meth:`recover`.
        """
        attempt = 0
        while True:
            try:
                if attempt and restore is not None:
                    restore()
                return fn()
            except EngineLost as exc:
                attempt += 1
                event = self.recover(exc, attempt)
                if on_recover is not None:
                    on_recover(event)

    def take(self, data, rows):
        """Fetch the given global rows of a distributed dataset, as float64.

        Parameters
        ----------
        rows : array-like of int, shape (n_rows,)

        Returns
        -------
        ndarray of shape (n_rows, n_features)
        """
        self._check(data)
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= data.n_samples):
            raise IndexError(f"row index out of range for {data.n_samples} samples")
        offsets = data.offsets
        shard_of = np.searchsorted(offsets, rows, side="right") - 1
        per_shard = [rows[shard_of == s] - offsets[s] for s in range(data.n_shards)]
        parts = self.map(_shard_take, data, per_shard)
        out = np.empty((rows.size, data.n_features))
        for s in range(data.n_shards):
            out[shard_of == s] = parts[s]
        return out


# ---------------------------------------------------------------------------
# shard functions of the controller itself
# ---------------------------------------------------------------------------

def _shard_sum(shard):
    """(per-feature (weighted) sum of the frames, sum of the frame weights)."""
    x, w = shard.X, shard.weights
    total = np.zeros(x.shape[1])
    for a in range(0, x.shape[0], 65536):
        if w is None:
            total += x[a:a + 65536].sum(axis=0, dtype=np.float64)
        else:
            total += w[a:a + 65536] @ x[a:a + 65536].astype(np.float64)
    weight = float(x.shape[0]) if w is None else float(w.sum())
    return total, weight


def _shard_centered_sq(shard, mean):
    x, w = shard.X, shard.weights
    total = np.zeros(x.shape[1])
    for a in range(0, x.shape[0], 65536):
        d = x[a:a + 65536].astype(np.float64) - mean
        if w is None:
            total += np.einsum("nd,nd->d", d, d)
        else:
            total += w[a:a + 65536] @ (d * d)
    return total


def _shard_take(shard, per_shard_rows):
    return shard.X[np.asarray(per_shard_rows[shard.index], dtype=np.int64)].astype(np.float64)


def _short(item, limit=160):
    """``repr(item)`` cut to ``limit`` characters, for one-line error messages."""
    text = repr(item)
    return text if len(text) <= limit else text[:limit - 5] + " ...)"
