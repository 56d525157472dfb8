"""The ipyparallel controller: shards on engines started in MPI mode.

Every call to the engines has a deadline (derived from the measured times of
earlier calls of the same function) and notices engines that die (the hub
reports them at once).  Both raise :class:`~ipem.parallel.errors.EngineLost`;
:meth:`DirectViewController.recover` then restarts the engine set (when a
``restart`` function was given, as :class:`~ipem.parallel.mpi.MPICluster`
does) or, for engines that are not MPI-coupled, moves the lost shards onto the
engines that are left, and stores every live dataset again.
"""
from __future__ import annotations

import logging
import socket
import time

import numpy as np

from . import engine
from .controller import Controller
from .engine import Outcome
from .errors import EngineError, EngineLost, Failure
from .places import engine_reduce_apply, engine_tree_reduce
from .processes import is_stopped
from .stats import unpack_stats

logger = logging.getLogger(__name__)


def _died(exc):
    """Whether an ipyparallel error says that the engine died (hub report)."""
    return getattr(exc, "ename", None) == "EngineError" and "died" in str(exc)


#: what to do when the hub of a cluster that ipem did not start is gone
_RESTART_ADVICE = ("restart the cluster (ipcluster stop; ipcluster start) and run again, or let "
                   "ipem start the engines (ipem.MPICluster, --cluster mpi:N), which recovers "
                   "by itself")


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
        How :meth:`~Controller.reduce` sums.  ``"client"``: the engines return
        their statistics (per block: nodes of the fixed tree) and the client
        sums them.  ``"allreduce"`` (the view covers all of ``MPI.COMM_WORLD``):
        the engines sum over MPI (in blocks: each rank completes the tree for a
        slice, rank 0 gathers the slices; else ``MPI.Allreduce``); one copy is fetched.
        :meth:`~Controller.reduce_on_places` goes engine to engine whenever
        shard ``i`` is on rank ``i`` of one MPI world, whatever this says.
    blas_threads : int or None, default=None
        BLAS threads per engine.  ``None`` gives each engine
        ``max(1, cpu_count // engines_on_that_host)``.
    restart : callable, optional
        ``restart() -> DirectView``: stop the engine set and start it again
        (same number of engines).  Given by the clusters ipem starts; without
        it, lost engines can only be replaced by re-sharding onto the others,
        and only when they are not MPI-coupled.
    deadline : float, optional
        Fixed seconds every call may take.  ``None``: ``deadline_factor``
        times the slowest earlier call of the same function, at least
        ``min_deadline``; ``first_deadline`` for a function not seen before.
    deadline_factor, min_deadline, first_deadline : float
    max_recoveries : int, default=3
        Recoveries in a row before a lost engine is an error.
    watch : callable, optional
        ``watch() -> (reason, message) or None``: checked while waiting, says
        that a process the cluster needs (the hub, ``mpiexec``) is gone.
        Given by the clusters ipem starts.
    hub_deadline : float, default=20.0
        Seconds the hub (ipyparallel's controller) may take to answer the small
        query sent every ``hub_deadline / 4`` s while a call waits; else it is
        lost (``EngineLost`` with reason ``"hub"``).
    block_size : "auto", int or None, default="auto"
        Fixed blocks of rows (:attr:`Controller.block_size`): the same bits on
        any number of engines, with either reduction; None: one contiguous
        shard per engine.

    Attributes
    ----------
    engine_ids, ranks, hosts, pids : list
        Per shard (in shard order): engine id, MPI rank, host name, process id.
    recoveries : list of dict
        Every recovery: engines lost, reason, action, seconds.

    Examples
    --------
    With engines from ``ipcluster start --engines=MPI -n 4``::

        import ipyparallel as ipp, ipem
        rc = ipp.Client()
        gmm = ipem.GaussianMixture(64, controller=rc[:]).fit(X)
    """

    def __init__(self, view, reduction="client", blas_threads=None, *, restart=None,
                 deadline=None, deadline_factor=10.0, min_deadline=60.0, first_deadline=3600.0,
                 max_recoveries=3, watch=None, hub_deadline=20.0, block_size="auto"):
        import ipyparallel as ipp

        super().__init__(block_size=block_size)
        if reduction not in ("client", "allreduce"):
            raise ValueError(f"reduction={reduction!r}: expected 'client' or 'allreduce'")
        self.reduction = reduction
        self._ipp = ipp
        self._restart = restart
        self._watch = watch
        self.hub_deadline = float(hub_deadline)
        self._hub_probe = None  # (time sent, future) of the query in flight
        self._blas_threads_arg = blas_threads
        self.deadline = None if deadline is None else float(deadline)
        self.deadline_factor, self.min_deadline, self.first_deadline = (
            float(deadline_factor), float(min_deadline), float(first_deadline))
        self.max_recoveries = int(max_recoveries)
        self._slowest = {}
        self.n_shards = None
        self._attach(view)

    def _attach(self, view):
        """Learn the engines of ``view`` (rank order) and place shard ``r`` on rank ``r``."""
        self.client = view.client
        targets = view.targets
        targets = (self.client.ids if targets is None or isinstance(targets, str)
                   else [targets] if isinstance(targets, int) else targets)
        if not targets:
            raise EngineError("no engines are registered with this cluster")
        info = self._await([self.client[int(t)].apply_async(engine.engine_info)
                            for t in targets], targets, "engine_info")
        ranks = [i[0] for i in info]
        if self.reduction == "allreduce" and sorted(ranks) != list(range(info[0][1])):
            raise ValueError(
                f"reduction='allreduce' needs a view of all MPI ranks 0..{info[0][1] - 1}; "
                f"this view has ranks {sorted(ranks)}")
        order = np.argsort(ranks, kind="stable")
        if self.n_shards is not None and len(order) != self.n_shards:
            raise EngineError(f"the restarted engine set has {len(order)} engines, "
                              f"{self.n_shards} are needed")
        #: engine ids in shard order (shard i lives on engine_ids[i])
        self.engine_ids = [int(targets[i]) for i in order]
        self._hub_probe = None
        self.ranks, self.mpi_sizes, self.pids = ([int(info[i][j]) for i in order]
                                                 for j in (0, 1, 2))
        self.hosts = [info[i][3] for i in order]
        self.n_shards = len(self.engine_ids)
        #: where each shard lives now, and the suffix of its key there
        self._placement = list(self.engine_ids)
        self._suffix = [""] * self.n_shards
        self.view = self.client[self.engine_ids]
        self.view.block = False
        per_host = {h: self.hosts.count(h) for h in self.hosts}
        if self._blas_threads_arg is None:
            cpus = [info[i][4] for i in order]
            threads = [max(1, c // per_host[h]) for c, h in zip(cpus, self.hosts)]
        else:
            threads = [int(self._blas_threads_arg)] * self.n_shards
        self._values(self._gather([self.client[e].apply_async(engine.engine_blas_threads, t)
                                   for e, t in zip(self.engine_ids, threads)], wrap=True))
        self.blas_threads = threads

    def __repr__(self):
        return f"DirectViewController(engines={self.engine_ids}, reduction={self.reduction!r})"

    @property
    def coupled(self):
        """Whether the engines share one MPI job (one dies, MPI takes all down)."""
        return any(s > 1 for s in self.mpi_sizes)

    @property
    def alive(self):
        """Engine ids that hold shards now."""
        return sorted(set(self._placement))

    def _where(self, index):
        e = self._placement[index] if index < len(self._placement) else "?"
        return f"shard {index} (engine {e}, rank {self.ranks[index]})"

    def _key(self, key, index):
        return key + self._suffix[index]

    # --- waiting, with deadlines ----------------------------------------------
    def _deadline(self, name):
        if self.deadline is not None:
            return self.deadline
        slowest = self._slowest.get(name)
        if slowest is None:
            return self.first_deadline
        return max(self.min_deadline, self.deadline_factor * slowest)

    def _gone(self):
        """Engines holding shards that are no longer registered, or whose process (on
        this host) has ended."""
        registered = set(self.client.ids)
        gone = [e for e in self.alive if e not in registered]
        for e, pid, host in zip(self.engine_ids, self.pids, self.hosts):
            if e in self.alive and e not in gone and host == _HOST and not _running(pid):
                gone.append(e)
        return gone

    def _hung(self, engines):
        """Those of ``engines`` whose process (on this host) is stopped (SIGSTOP) or still
        runs although the hub dropped it: hung, not dead."""
        out = []
        for e, pid, host in zip(self.engine_ids, self.pids, self.hosts):
            if e in engines and host == _HOST and _running(pid):
                out.append(e)
        return out

    def _check_lost(self, name):
        """Raise :class:`EngineLost` when the hub, a process the cluster needs, or an
        engine holding shards is gone."""
        what = name or "a call"
        lost = self._watch() if self._watch is not None else None
        if lost is None:
            lost = self._probe_hub()
        if lost is not None:
            reason, message = lost
            raise EngineLost(f"{message} during {what}", self.alive, reason=reason)
        gone = self._gone()
        if gone:
            raise self._lost(gone, name)

    def _lost(self, engines, name):
        """The :class:`EngineLost` of ``engines`` that the hub dropped: hung when their
        process (on this host) still runs (stopped, or not answering), else died."""
        engines = sorted(set(engines))
        hung = self._hung(engines)
        if hung:
            return EngineLost(f"engine(s) {hung} hung during {name or 'a call'} (the hub "
                              "stopped hearing from them)", engines, reason="hung")
        return EngineLost(f"engine(s) {engines} died during {name or 'a call'}", engines)

    def _late(self, late, name, limit, busy=False):
        """The :class:`EngineLost` of ``late`` engines that missed the deadline of ``name``
        (``limit`` seconds): hung when the process of one (on this host) is stopped."""
        late = sorted(set(late))
        what = name or "a call"
        stopped = {e: pid for e, pid, host in zip(self.engine_ids, self.pids, self.hosts)
                   if e in late and host == _HOST and is_stopped(pid)}
        if stopped:
            pids = ", ".join(str(pid) for pid in stopped.values())
            return EngineLost(f"engine(s) {sorted(stopped)} hung during {what}: process(es) "
                              f"{pids} stopped, no answer within the deadline of {limit:.0f} s",
                              late, reason="deadline")
        if busy:
            return EngineLost(f"no task of {what} finished within the deadline of "
                              f"{limit:.0f} s (engines {late} were busy)", late,
                              reason="deadline")
        return EngineLost(f"engine(s) {late} did not answer {what} within the deadline of "
                          f"{limit:.0f} s", late, reason="deadline")

    def _probe_hub(self):
        """Ask the hub a small question every ``hub_deadline / 4`` seconds, never waiting
        for the answer here; ``("hub", message)`` when one went unanswered for
        ``hub_deadline`` seconds, else None."""
        now = time.monotonic()
        if self._hub_probe is not None:
            sent, future = self._hub_probe
            if not future.done():
                if now - sent > self.hub_deadline:
                    return "hub", (f"the hub (ipyparallel controller) did not answer within "
                                   f"{self.hub_deadline:.0f} s")
                return None
            if now - sent < self.hub_deadline / 4:
                return None  # answered lately: ask again later
        try:
            future = self.client._send(self.client._query_stream, "queue_request",
                                       content={"targets": None, "verbose": False})
        except Exception as exc:  # the client is closed: nothing can reach the hub
            return "hub", f"the hub (ipyparallel controller) cannot be reached ({exc})"
        self._hub_probe = (now, future)
        return None

    def _await(self, asyncs, engines, name):
        """Values of plain async results within the deadline of ``name`` (before the
        engine set is known); :class:`EngineLost` when an engine or the hub is lost."""
        limit = self._deadline(name)
        t0 = time.monotonic()
        while not self.client.wait(asyncs, timeout=min(0.2, limit)):
            lost = self._watch() if self._watch is not None else None
            if lost is None:
                lost = self._probe_hub()
            if lost is not None:
                raise EngineLost(f"{lost[1]} during {name}", engines, reason=lost[0])
            gone = [e for e in engines if e not in self.client.ids]
            if gone:
                raise EngineLost(f"engine(s) {gone} died during {name}", gone)
            if time.monotonic() - t0 > limit:
                late = [e for e, ar in zip(engines, asyncs) if not ar.ready()]
                raise self._late(late, name, limit)
        values = []
        for e, ar in zip(engines, asyncs):
            try:
                values.append(ar.get(0))
            except (self._ipp.error.RemoteError, self._ipp.error.CompositeError) as exc:
                raise EngineLost(f"engine {e} failed during {name}: {exc}", [e]) from exc
        self._purge(asyncs)
        return values

    def _submit(self, target, func, *args):
        try:
            return self.client[target].apply_async(func, *args)
        except (self._ipp.error.NoEnginesRegistered, IndexError, KeyError) as exc:
            raise EngineLost(f"engine {target} is gone", [target]) from exc

    def _gather(self, asyncs, wrap=False, name=None, engines=None):
        """Outcomes of per-shard async results, in order.

        ``wrap``: the remote function returns a plain value, not an Outcome.
        Remote errors become failures; an engine that died or missed the
        deadline raises :class:`EngineLost`.
        """
        engines = list(self._placement if engines is None else engines)
        limit = self._deadline(name)
        t0 = time.monotonic()
        self._check_lost(name)  # also between calls that never wait
        while True:
            if self.client.wait(asyncs, timeout=min(0.2, limit)):
                # the client has every reply; an AsyncResult becomes ready once its
                # (possibly large) result is unpacked, a moment later
                for ar in asyncs:
                    if not ar.ready():
                        ar.wait(min(0.2, limit))
                if all(ar.ready() for ar in asyncs):
                    break
            self._check_lost(name)
            if time.monotonic() - t0 > limit:
                late = [engines[i] for i, ar in enumerate(asyncs) if not ar.ready()]
                raise self._late(late, name, limit)
        if name is not None:
            self._slowest[name] = max(self._slowest.get(name, 0.0), time.monotonic() - t0)
        outcomes, dead = [], []
        for i, ar in enumerate(asyncs):
            try:
                value = ar.get(0)
                outcomes.append(Outcome(value) if wrap else value)
            except self._ipp.error.RemoteError as exc:
                if _died(exc):
                    dead.append(engines[i])
                outcomes.append(Outcome(failure=Failure(i, exc.ename, str(exc.evalue))))
            except self._ipp.error.CompositeError as exc:
                ename, evalue = exc.elist[0][0], exc.elist[0][1]
                outcomes.append(Outcome(failure=Failure(i, ename, str(evalue))))
        self._purge(asyncs)
        if dead:
            raise self._lost(dead, name)
        return outcomes

    def _purge(self, asyncs):
        """Forget finished results on the client and the hub (memory stays flat).

        The hub is told without waiting for its answer (a hub that died must not
        block the client; :meth:`_check_lost` notices it).
        """
        jobs = [ar for ar in asyncs if ar.ready()]
        if not jobs:
            return
        try:
            self.client.purge_local_results(jobs=jobs)
            msg_ids = [i for ar in jobs for i in ar.msg_ids]
            self.client._send(self.client._query_stream, "purge_request",
                              content={"engine_ids": [], "msg_ids": msg_ids})
        except Exception as exc:  # only memory is at stake
            logger.debug("could not purge results: %s", exc)

    def _each(self, func, per_shard_args, name):
        return self._gather([self._submit(self._placement[i], func, *a)
                             for i, a in enumerate(per_shard_args)], name=name)

    # --- primitives ----------------------------------------------------------
    def _put(self, key, parts, block_size=None):
        return self._each(engine.engine_put,
                          [(self._key(key, i), x, w, i, off, block_size)
                           for i, (x, w, off) in enumerate(parts)], "put")

    def _load(self, key, loader, assignments, block_size=None):
        return self._each(engine.engine_load,
                          [(self._key(key, i), i, loader, args, block_size)
                           for i, args in enumerate(assignments)], "load")

    def _put_value(self, key, value):
        asyncs = [self._submit(e, engine.engine_put_value, key, value) for e in self.alive]
        return self._gather(asyncs, name="put", engines=self.alive)

    def _call(self, func, key, args):
        return self._each(engine.engine_call, [(func, self._key(key, i), args)
                                               for i in range(self.n_shards)], _name(func))

    def _call_reduce(self, func, key, args):
        if self.reduction == "client":
            return super()._call_reduce(func, key, args)
        outcomes = self._each(engine.engine_allreduce, [(func, self._key(key, i), args)
                                                        for i in range(self.n_shards)],
                              _name(func))
        flat, spec = self._values(outcomes)[0]
        return unpack_stats(flat, spec), outcomes

    def _one_world(self):
        """Whether shard ``i`` is on rank ``i`` of one MPI world."""
        return not (any(self._suffix) or self.mpi_sizes != [self.n_shards] * self.n_shards
                    or self.ranks != list(range(self.n_shards)))

    def _call_tree_reduce(self, func, data, args):
        """``"allreduce"`` on one MPI world: the ranks complete the tree slice by slice,
        rank 0 sends it (:func:`~ipem.parallel.places.engine_tree_reduce`); else the client."""
        if self.reduction != "allreduce" or not self._one_world():
            return super()._call_tree_reduce(func, data, args)
        each = [(func, self._key(data.key, i), args, data.n_shards) for i in range(self.n_shards)]
        outcomes = self._each(engine_tree_reduce, each, _name(func))
        return self._values(outcomes)[0], outcomes

    def _reduce_apply(self, func, data, args, split, apply, apply_args, keep, keep_key, reply):
        """Engine to engine with MPI when shard ``i`` is on rank ``i`` of one MPI world
        (:func:`~ipem.parallel.places.engine_reduce_apply`), else through the client."""
        if not self._one_world():
            return super()._reduce_apply(func, data, args, split, apply, apply_args, keep,
                                         keep_key, reply)
        n_blocks = data.n_shards if data.block_size is not None else None
        return self._each(engine_reduce_apply, [
            (func, self._key(data.key, i), args, split, apply, apply_args, keep, keep_key,
             n_blocks, reply) for i in range(self.n_shards)], _name(apply)), True

    def _free(self, key):
        keys = [key] + [key + s for s in set(self._suffix) if s]
        for e in self.alive:
            try:
                self.client[e].apply_async(engine.engine_free, *keys)
            except (self._ipp.error.NoEnginesRegistered, IndexError, KeyError):
                pass  # a lost engine holds nothing any more

    def _stored_keys(self):
        engines = self.alive
        outcomes = self._gather([self._submit(e, engine.engine_stored) for e in engines],
                                wrap=True, name="stored", engines=engines)
        return {e: v for e, v in zip(engines, self._values(outcomes))}

    def _tasks(self, func, items, args, progress, desc):
        """Load-balanced tasks; a lost engine's tasks are resubmitted after recovery."""
        from ..progress import progress_bar

        outcomes = [None] * len(items)
        todo = list(range(len(items)))
        attempt = 0
        bar = progress_bar(len(items), desc=desc, enabled=progress)
        try:
            while todo:
                try:
                    self._run_tasks(func, items, args, todo, outcomes, bar)
                    todo = []
                except EngineLost as exc:
                    attempt += 1
                    self.recover(exc, attempt)
                    todo = [i for i in todo if outcomes[i] is None]
        finally:
            bar.close()
        return outcomes

    def _run_tasks(self, func, items, args, todo, outcomes, bar):
        """Submit ``todo`` in batches; fill ``outcomes`` as they finish; EngineLost when an
        engine is lost.

        Tasks go in batches of up to 64 (about 8 per engine at least), so that the
        scheduler's per-message cost is paid per batch, not per task.  The deadline
        applies to progress: some batch must finish within it.
        """
        name = _name(func)
        size = max(1, min(64, len(todo) // (8 * max(1, len(self.alive)))))
        batches = [todo[a:a + size] for a in range(0, len(todo), size)]
        pending = {}
        try:
            lview = self.client.load_balanced_view(self.alive)
            for idx in batches:
                pending[lview.apply_async(engine.engine_tasks, idx, func,
                                          [items[i] for i in idx], args)] = idx
        except (self._ipp.error.NoEnginesRegistered, IndexError, KeyError) as exc:
            gone = self._gone()
            if pending:
                self.client.abort(list(pending))
            raise EngineLost(f"engine(s) {gone or self.alive} gone while {name} was "
                             "submitted", gone) from exc
        t_last = time.monotonic()
        try:
            while pending:
                self.client.wait(list(pending), timeout=0.2)
                done = [ar for ar in pending if ar.ready()]
                dead = []
                for ar in done:
                    idx = pending.pop(ar)
                    try:
                        got = ar.get(0)
                    except self._ipp.error.RemoteError as exc:
                        if _died(exc):
                            dead.append(ar)
                            continue
                        got = [Outcome(failure=Failure(i, exc.ename, str(exc.evalue)))
                               for i in idx]
                    for i, o in zip(idx, got):
                        outcomes[i] = o
                    t = sum(o.elapsed for o in got)
                    self._slowest[name] = max(self._slowest.get(name, 0.0), t)
                    bar.update(len(idx))
                self._purge([ar for ar in done if ar not in dead])
                if dead:
                    raise self._lost([ar.engine_id for ar in dead if ar.engine_id is not None],
                                     name)
                self._check_lost(name)
                if done:
                    t_last = time.monotonic()
                elif pending and time.monotonic() - t_last > self._deadline(name):
                    late = sorted({ar.engine_id for ar in pending if ar.engine_id is not None})
                    raise self._late(late, name, self._deadline(name), busy=True)
        finally:
            if pending:  # lost: stop what is left, so nothing runs twice
                try:
                    self.client.abort(list(pending))
                except Exception as exc:
                    logger.debug("could not abort tasks: %s", exc)

    # --- lost engines -----------------------------------------------------------
    def recover(self, error, attempt=1):
        """Replace lost engines, then store every live dataset and broadcast value again.

        With ``restart`` (clusters ipem started), the engine set is stopped
        and started again and the shard layout is kept, so results are bit
        for bit those of an undisturbed run.  Without it, shards of lost
        engines move to the engines that are left when these are not
        MPI-coupled; MPI-coupled engines that ipem did not start cannot be
        replaced, and an :class:`EngineError` says what to do.  See
        :meth:`Controller.recover`.
        """
        t0 = time.perf_counter()
        lost = list(getattr(error, "engines", []))
        if attempt > self.max_recoveries:
            raise EngineError(f"{error}; gave up after {self.max_recoveries} recoveries in a row",
                              ) from error
        if self._restart is not None:
            logger.warning("%s; restarting the engines (attempt %d of %d)", error, attempt,
                           self.max_recoveries)
            try:
                self._attach(self._restart())
            except EngineLost as again:  # lost while the new engines started: once more
                logger.warning("%s; restarting the engines once more", again)
                self._attach(self._restart())
            action = "restarted"
        elif getattr(error, "reason", None) in ("hub", "mpiexec"):
            raise EngineError(f"{error}. ipem did not start this cluster, so it cannot "
                              f"restart it: {_RESTART_ADVICE}") from error
        elif not self.coupled:
            self._reshard(lost, error)
            action = "resharded"
        else:
            raise EngineError(
                f"{error}. These engines share one MPI job that ipem did not start, so they "
                f"cannot be restarted from here: {_RESTART_ADVICE}") from error
        self._remake_all()
        event = {"engines": lost, "reason": getattr(error, "reason", "died"), "action": action,
                 "attempt": attempt, "seconds": time.perf_counter() - t0,
                 "message": str(error)}
        self.recoveries.append(event)
        logger.warning("recovered from %s: engines %s, %.1f s", event["reason"], action,
                       event["seconds"])
        return event

    def _reshard(self, lost, error):
        """Move the shards of lost engines onto the engines that are left."""
        time.sleep(0.5)  # let the hub unregister engines that died
        registered = set(self.client.ids)
        alive = [e for e in self.alive if e in registered and e not in lost]
        if not alive:
            raise EngineError(f"{error}; no engine is left to take over its shards") from error
        k = 0
        for i, e in enumerate(self._placement):
            if e not in alive:
                self._placement[i] = alive[k % len(alive)]
                self._suffix[i] = f"#{i}"
                k += 1
        logger.warning("%s; moved %d shard(s) onto engines %s", error, k, alive)


#: this host's name; engines whose MPI processor name equals it are checked by PID
_HOST = socket.gethostname()


def _running(pid):
    """Whether process ``pid`` (on this host) exists and is not a zombie."""
    import psutil
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _name(func):
    return f"{getattr(func, '__module__', '')}.{getattr(func, '__qualname__', repr(func))}"
