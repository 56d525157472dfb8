"""The ipyparallel controller: shards on engines started in MPI mode."""
from __future__ import annotations

import time

import numpy as np

from . import engine
from .controller import Controller
from .engine import Outcome
from .errors import Failure
from .stats import sum_stats, unpack_stats


class DirectViewController(Controller):
    """Runs shard functions on ipyparallel engines in MPI mode.

    Parameters
    ----------
    view : ipyparallel.DirectView
        A view on engines started in MPI mode (``ipcluster start
        --engines=MPI`` or ``ipyparallel.Cluster(engines="mpi")``).  Shard
        ``r`` is placed on the engine with MPI rank ``r``, in the engine
        namespace dictionary ``ipem_shards``.
    reduction : {"client", "allreduce"}, default="client"
        ``"client"``: every engine returns its statistics and the client sums
        them in rank order.  ``"allreduce"``: the engines sum with
        ``MPI.Allreduce`` and only rank 0's copy is fetched (the view must
        cover all ranks of ``MPI.COMM_WORLD``).
    blas_threads : int or None, default=None
        BLAS threads per engine.  ``None`` gives each engine
        ``max(1, cpu_count // engines_on_that_host)``.

    Examples
    --------
    With engines from ``ipcluster start --engines=MPI -n 4``::

        import ipyparallel as ipp, ipem
        rc = ipp.Client()
        gmm = ipem.GaussianMixture(64, controller=rc[:]).fit(X)
    """

    def __init__(self, view, reduction="client", blas_threads=None):
        import ipyparallel as ipp

        if reduction not in ("client", "allreduce"):
            raise ValueError(f"reduction={reduction!r}: expected 'client' or 'allreduce'")
        self.reduction = reduction
        self.client = view.client
        targets = view.targets
        if targets is None or isinstance(targets, str):
            targets = self.client.ids
        elif isinstance(targets, int):
            targets = [targets]
        info = self.client[list(targets)].apply_sync(engine.engine_info)
        ranks = [i[0] for i in info]
        if reduction == "allreduce" and sorted(ranks) != list(range(info[0][1])):
            raise ValueError(
                f"reduction='allreduce' needs a view of all MPI ranks 0..{info[0][1] - 1}; "
                f"this view has ranks {sorted(ranks)}")
        order = np.argsort(ranks, kind="stable")
        #: engine ids in shard order (shard i lives on engine_ids[i])
        self.engine_ids = [int(targets[i]) for i in order]
        self.ranks = [int(ranks[i]) for i in order]
        self.hosts = [info[i][3] for i in order]
        self.pids = [int(info[i][2]) for i in order]
        self.n_shards = len(self.engine_ids)
        self.view = self.client[self.engine_ids]
        self.view.block = False
        self._ipp = ipp
        per_host = {h: self.hosts.count(h) for h in self.hosts}
        if blas_threads is None:
            cpus = [info[i][4] for i in order]
            threads = [max(1, c // per_host[h]) for c, h in zip(cpus, self.hosts)]
        else:
            threads = [int(blas_threads)] * self.n_shards
        self._gather([self.client[e].apply_async(engine.engine_blas_threads, t)
                      for e, t in zip(self.engine_ids, threads)], wrap=True)
        self.blas_threads = threads

    def __repr__(self):
        return f"DirectViewController(engines={self.engine_ids}, reduction={self.reduction!r})"

    def _where(self, index):
        return f"shard {index} (engine {self.engine_ids[index]}, rank {self.ranks[index]})"

    def _gather(self, asyncs, wrap=False):
        """Outcomes of per-shard async results; transport-level errors become failures.

        ``wrap``: the remote function returns a plain value, not an Outcome.
        """
        outcomes = []
        for i, ar in enumerate(asyncs):
            try:
                value = ar.get()
                outcomes.append(Outcome(value) if wrap else value)
            except self._ipp.error.RemoteError as exc:
                outcomes.append(Outcome(failure=Failure(i, exc.ename, str(exc.evalue))))
            except self._ipp.error.CompositeError as exc:
                name, value = exc.elist[0][0], exc.elist[0][1]
                outcomes.append(Outcome(failure=Failure(i, name, str(value))))
        return outcomes

    def _each(self, func, per_engine_args):
        return self._gather([self.client[e].apply_async(func, *a)
                             for e, a in zip(self.engine_ids, per_engine_args)])

    # --- primitives ----------------------------------------------------------
    def _put(self, key, parts):
        return self._each(engine.engine_put,
                          [(key, x, w, i, off) for i, (x, w, off) in enumerate(parts)])

    def _load(self, key, loader, assignments):
        return self._each(engine.engine_load,
                          [(key, i, loader, args) for i, args in enumerate(assignments)])

    def _call(self, func, key, args):
        return self._each(engine.engine_call, [(func, key, args)] * self.n_shards)

    def _call_reduce(self, func, key, args):
        if self.reduction == "client":
            outcomes = self._call(func, key, args)
            return sum_stats(self._values(outcomes)), outcomes
        outcomes = self._each(engine.engine_allreduce, [(func, key, args)] * self.n_shards)
        flat, spec = self._values(outcomes)[0]
        return unpack_stats(flat, spec), outcomes

    def _free(self, key):
        self.view.apply_sync(engine.engine_free, key)

    def _tasks(self, func, items, args, progress, desc):
        lview = self.client.load_balanced_view(self.engine_ids)
        asyncs = [lview.apply_async(engine.engine_task, i, func, item, args)
                  for i, item in enumerate(items)]
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=len(asyncs), desc=desc)
            pending = set(range(len(asyncs)))
            while pending:
                done = {i for i in pending if asyncs[i].ready()}
                bar.update(len(done))
                pending -= done
                if pending:
                    time.sleep(0.05)
            bar.close()
        return self._gather(asyncs)
