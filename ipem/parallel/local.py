"""The in-process controller: shards in a dictionary, the engine functions called directly."""
from __future__ import annotations

import contextlib

from .controller import Controller
from .engine import (Outcome, call_shard, describe_store, load_shard, make_shard,
                     run_guarded, run_task)
from .launchers import Launcher, count_argument


class LocalController(Controller):
    """Runs everything in this process, with the same shard layout as engines.

    Parameters
    ----------
    n_shards : int, default=1
        Number of contiguous blocks a dataset is split into, to behave like
        that many engines (same shard layout as a DirectView controller with
        ``n_shards`` engines).
    blas_threads : int or None, default=None
        Limit BLAS threads while shard functions run (``None``: leave as is).
        float32 matrix products can round differently with another thread
        count, so give the engines' count to reproduce an engine run bit for
        bit with float32 features (float64 results do not depend on it).
    block_size : "auto", int or None, default="auto"
        Cut datasets into fixed blocks (of :func:`~ipem.parallel.auto_block_size`
        rows, or of this many), so that models are the same bits on any
        number of shards or engines (:attr:`Controller.block_size`); None: one
        contiguous shard each.
    """

    #: the shards live in the client's process: a memory budget
    #: (``engine_memory``) bounds each shard's data, not a process
    places_in_client = True

    def __init__(self, n_shards=1, blas_threads=None, *, block_size="auto"):
        if isinstance(n_shards, bool) or int(n_shards) != n_shards or n_shards < 1:
            raise ValueError(f"n_shards must be an integer >= 1, got {n_shards!r}")
        super().__init__(block_size=block_size)
        self.n_shards = int(n_shards)
        self.blas_threads = blas_threads
        self._store = {}

    def __repr__(self):
        blocks = "" if self.block_size == "auto" else f", block_size={self.block_size}"
        return f"LocalController(n_shards={self.n_shards}{blocks})"

    def _limits(self):
        if self.blas_threads is None:
            return contextlib.nullcontext()
        from threadpoolctl import threadpool_limits
        return threadpool_limits(limits=int(self.blas_threads))

    def _keep(self, key, outcomes):
        if all(o.failure is None for o in outcomes):
            self._store[key] = [o.value for o in outcomes]
        return outcomes

    def _put(self, key, parts, block_size=None):
        return self._keep(key, [run_guarded(i, make_shard, x, w, i, off, block_size)
                                for i, (x, w, off) in enumerate(parts)])

    def _load(self, key, loader, assignments, block_size=None):
        return self._keep(key, [run_guarded(i, load_shard, i, loader, args, block_size)
                                for i, args in enumerate(assignments)])

    def _put_value(self, key, value):
        self._store[key] = value
        return [Outcome(key)]

    def _stored_keys(self):
        flat = {}
        for key, value in self._store.items():
            if isinstance(value, list):  # the shards of a dataset
                for shard in value:
                    flat[f"{key}/{shard.index}" if len(value) > 1 else key] = shard
            else:
                flat[key] = value
        return {"local": describe_store(flat)}

    def _shards(self, key):
        try:
            return self._store[key]
        except KeyError:
            raise ValueError(f"dataset {key!r} is not (or no longer) distributed") from None

    def _call(self, func, key, args):
        shards = self._shards(key)
        with self._limits():
            return [call_shard(s, func, args) for s in shards]

    def _free(self, key):
        self._store.pop(key, None)

    def _tasks(self, func, items, args, progress, desc):
        from ..progress import progress_iter
        it = progress_iter(items, total=len(items), desc=desc, enabled=progress)
        with self._limits():
            return [run_task(i, func, item, args, self._store) for i, item in enumerate(it)]


@contextlib.contextmanager
def _open(n_shards, blas_threads):
    yield LocalController(n_shards, blas_threads=blas_threads)


#: ``local[:N]``: N in-process shards (default 1)
LAUNCHER = Launcher("local", ("local", "local:N"), count_argument(1), _open)
