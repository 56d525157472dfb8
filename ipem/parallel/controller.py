"""The controller seam: where the data lives and where kernels run.

Every ipem algorithm talks to its data through a :class:`Controller` and
through nothing else.  A controller can

* **distribute** a dataset once (:meth:`Controller.distribute`,
  :meth:`Controller.distribute_files`); the shards then stay where they were
  sent and are referred to by a :class:`DistributedData` handle;
* **run a shard function** on every shard with broadcast parameters and
  **reduce** the statistics it returns (:meth:`Controller.reduce`), or bring
  the per-shard results back in shard order (:meth:`Controller.map`);
* run independent **tasks** (:meth:`Controller.map_tasks`).

A shard function has the signature ``func(shard, *args)`` where ``shard`` is
a :class:`Shard`; it returns "statistics": an ndarray, a float, or a tuple,
list or dict of them.  Statistics of different shards are added elementwise.

Two implementations:

:class:`LocalController`
    In-process, no ipyparallel needed; splits the data into ``n_shards``
    contiguous blocks to behave like ``n_shards`` engines.
:class:`DirectViewController`
    Wraps an ipyparallel ``DirectView`` whose engines run in MPI mode.  Shard
    ``r`` lives on the engine of MPI rank ``r``, in the engine namespace
    dictionary named by :data:`ENGINE_NAMESPACE` (``%px ipem_shards`` shows
    it).  Each call sends only the parameters and receives only the
    statistics.  The reduction is either a sum on the client in shard order
    (``reduction="client"``) or an MPI ``Allreduce`` among the engines with
    one copy fetched (``reduction="allreduce"``).
"""
from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field

import numpy as np

#: Name of the dictionary in each engine's namespace that holds the shards,
#: keyed by :attr:`DistributedData.key`.
ENGINE_NAMESPACE = "ipem_shards"

_PROCESS_NAMESPACE = {}


class EngineError(RuntimeError):
    """An exception raised on one or more engines, with their messages."""

    def __init__(self, message, failures=()):
        super().__init__(message)
        #: list of (shard index, exception type name, message)
        self.failures = list(failures)


class EngineValueError(EngineError, ValueError):
    """Engines rejected their input (for example a malformed feature file)."""


_VALUE_LIKE = {"ValueError", "FeatureFileError", "NoSpeechError", "IndexError", "KeyError"}


def _engine_error(message, failures):
    """EngineValueError when every failure is bad input, EngineError otherwise."""
    cls = EngineValueError if all(f[1] in _VALUE_LIKE for f in failures) else EngineError
    return cls(message, failures)


class _PeerFailed(RuntimeError):
    """Raised on an engine whose MPI peers failed during a collective call."""


# ---------------------------------------------------------------------------
# shards and handles
# ---------------------------------------------------------------------------

@dataclass
class Shard:
    """One block of frames, held where it is used.

    Attributes
    ----------
    X : ndarray of shape (n_samples_shard, n_features)
        The frames.
    index : int
        Position of the shard (on engines: the MPI rank holding it).
    offset : int
        Global row index of ``X[0]`` in the distributed dataset.
    sources : list of str
        Files the frames were read from (empty for arrays sent by the client).
    state : dict
        Scratch space for algorithms (labels, distances), per dataset.
    """

    X: np.ndarray
    index: int
    offset: int
    sources: list = field(default_factory=list)
    state: dict = field(default_factory=dict)

    def __repr__(self):
        return (f"Shard(index={self.index}, offset={self.offset}, "
                f"X={self.X.shape} {self.X.dtype}, sources={len(self.sources)}, "
                f"state={sorted(self.state)})")


class DistributedData:
    """Handle to a dataset distributed by a controller.

    Attributes
    ----------
    controller : Controller
    key : str
        Key of the shards in the engine namespace dictionary
        ``ipem_shards`` (DirectView) or in the local store.
    shard_sizes : ndarray of shape (n_shards,)
    n_samples, n_features : int
    dtype : numpy.dtype
    mean : ndarray of shape (n_features,), float64
        Per-feature mean, computed once; kernels work around this shift.
    var : ndarray of shape (n_features,), float64
        Per-feature variance (population), computed once.
    files : list of list of FeatureRef, or None
        For data read by the engines: which files each shard read.
    """

    def __init__(self, controller, key, shard_sizes, n_features, dtype, files=None):
        self.controller = controller
        self.key = key
        self.shard_sizes = np.asarray(shard_sizes, dtype=np.int64)
        self.n_samples = int(self.shard_sizes.sum())
        self.n_features = int(n_features)
        self.dtype = np.dtype(dtype)
        self.files = files
        self.mean = None
        self.var = None

    @property
    def shape(self):
        return (self.n_samples, self.n_features)

    @property
    def n_shards(self):
        return len(self.shard_sizes)

    @property
    def offsets(self):
        return np.concatenate([[0], np.cumsum(self.shard_sizes)])

    def free(self):
        """Delete the shards where they live."""
        self.controller.free(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.free()

    def __repr__(self):
        return (f"DistributedData(key={self.key!r}, shape={self.shape}, dtype={self.dtype}, "
                f"shards={self.shard_sizes.tolist()}, controller={self.controller!r})")


# ---------------------------------------------------------------------------
# statistics: elementwise addition and flat packing (for MPI buffers)
# ---------------------------------------------------------------------------

def add_stats(a, b):
    """Add two statistics objects elementwise (same structure)."""
    if isinstance(a, dict):
        return {k: add_stats(a[k], b[k]) for k in a}
    if isinstance(a, (tuple, list)):
        return type(a)(add_stats(x, y) for x, y in zip(a, b))
    if a is None:
        return None
    return a + b


def sum_stats(parts):
    """Sum a sequence of statistics in the given order."""
    total = None
    for i, p in enumerate(parts):
        total = p if i == 0 else add_stats(total, p)
    return total


def pack_stats(stats):
    """Flatten statistics into one float64 buffer and a structure spec."""
    arrays = []

    def spec_of(obj):
        if isinstance(obj, dict):
            return ("dict", [(k, spec_of(v)) for k, v in obj.items()])
        if isinstance(obj, (tuple, list)):
            return (type(obj).__name__, [spec_of(v) for v in obj])
        if obj is None:
            return ("none", None)
        if isinstance(obj, np.ndarray):
            arrays.append(obj.ravel())
            return ("array", obj.shape)
        arrays.append(np.atleast_1d(np.float64(obj)))
        return ("scalar", None)

    spec = spec_of(stats)
    flat = (np.concatenate([np.asarray(a, dtype=np.float64) for a in arrays])
            if arrays else np.zeros(0))
    return np.ascontiguousarray(flat, dtype=np.float64), spec


def unpack_stats(flat, spec):
    """Inverse of :func:`pack_stats`."""
    pos = 0

    def build(sp):
        nonlocal pos
        kind, sub = sp
        if kind == "dict":
            return {k: build(v) for k, v in sub}
        if kind in ("tuple", "list"):
            items = [build(v) for v in sub]
            return tuple(items) if kind == "tuple" else items
        if kind == "none":
            return None
        if kind == "array":
            size = int(np.prod(sub, dtype=np.int64))
            out = flat[pos:pos + size].reshape(sub).copy()
            pos += size
            return out
        out = float(flat[pos])
        pos += 1
        return out

    return build(spec)


# ---------------------------------------------------------------------------
# dataset-level moments, computed once per distribution
# ---------------------------------------------------------------------------

def _shard_sum(shard):
    x = shard.X
    total = np.zeros(x.shape[1])
    for a in range(0, x.shape[0], 65536):
        total += x[a:a + 65536].sum(axis=0, dtype=np.float64)
    return total


def _shard_centered_sq(shard, mean):
    x = shard.X
    total = np.zeros(x.shape[1])
    for a in range(0, x.shape[0], 65536):
        d = x[a:a + 65536].astype(np.float64) - mean
        total += np.einsum("nd,nd->d", d, d)
    return total


def _shard_take(shard, local_rows):
    return shard.X[np.asarray(local_rows, dtype=np.int64)].astype(np.float64)


# ---------------------------------------------------------------------------
# the interface
# ---------------------------------------------------------------------------

class Controller:
    """Base class of controllers; see the module docstring."""

    #: number of shards a dataset is split into
    n_shards = 1

    # --- primitives that subclasses implement ---------------------------
    def _store_shards(self, key, parts):
        raise NotImplementedError

    def _load_shards(self, key, loader, assignments):
        raise NotImplementedError

    def _run(self, func, key, args):
        """Run ``func(shard, *args)`` on every shard; results in shard order."""
        raise NotImplementedError

    def _run_reduce(self, func, key, args):
        raise NotImplementedError

    def free(self, data):
        """Delete the shards of ``data`` where they live."""
        raise NotImplementedError

    def map_tasks(self, func, items, *args, progress=False, desc=None):
        """Run ``func(item, *args)`` for every item, load-balanced.

        Returns the results in the order of ``items``.
        """
        raise NotImplementedError

    # --- the public interface --------------------------------------------
    def split_sizes(self, n_samples):
        """Sizes of the contiguous blocks an array of ``n_samples`` rows is split into."""
        q, r = divmod(int(n_samples), self.n_shards)
        return np.array([q + (1 if i < r else 0) for i in range(self.n_shards)], dtype=np.int64)

    def distribute(self, X, *, key=None):
        """Send a validated 2-D array to the shards, once.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
            Must already be validated (finite, float32 or float64).
        key : str, optional
            Name of the dataset in the shard store; generated if omitted.

        Returns
        -------
        DistributedData
        """
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(f"distribute expects a 2-D array, got shape {X.shape}")
        key = key or f"d{uuid.uuid4().hex[:8]}"
        sizes = self.split_sizes(X.shape[0])
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        parts = [X[bounds[i]:bounds[i + 1]] for i in range(self.n_shards)]
        try:
            self._store_shards(key, [(p, int(bounds[i])) for i, p in enumerate(parts)])
        except BaseException:
            self._free_quietly(key)
            raise
        data = DistributedData(self, key, sizes, X.shape[1], X.dtype)
        self._finish(data)
        return data

    def distribute_files(self, refs, *, dtype=np.float32, key=None):
        """Let each shard read its own feature files, balanced by frame count.

        Parameters
        ----------
        refs : list of FeatureRef
            From :func:`ipem.features.list_features`; headers already read.
        dtype : {numpy.float32, numpy.float64}

        Returns
        -------
        DistributedData
            ``files[i]`` lists the files shard ``i`` read; the assignment is
            kept here, on the client, so that the files of a lost engine can
            be read again elsewhere.
        """
        from .. import io as features

        refs = list(refs)
        if not refs:
            raise ValueError("distribute_files: no feature files given")
        features.validate_all(refs)
        assignment = features.assign_balanced(refs, self.n_shards)
        files = [[refs[i] for i in idx] for idx in assignment]
        key = key or f"f{uuid.uuid4().hex[:8]}"
        sizes = np.array([sum(r.n_frames for r in fs) for fs in files], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        n_features = refs[0].n_features
        self._load_shards(key, _load_feature_shard,
                          [(fs, int(offsets[i]), np.dtype(dtype).str, n_features)
                           for i, fs in enumerate(files)])
        data = DistributedData(self, key, sizes, n_features, dtype, files=files)
        self._finish(data)
        return data

    def _finish(self, data):
        """Compute the dataset moments; on failure leave nothing behind on the shards."""
        try:
            self._compute_moments(data)
        except BaseException:
            self._free_quietly(data.key)
            raise

    def _free_quietly(self, key):
        """Best-effort removal of a dataset's shards while another error propagates."""
        try:
            self.free(_KeyOnly(key))
        except Exception:  # the original error matters more than the clean-up's
            pass

    def _compute_moments(self, data):
        total = self.reduce(_shard_sum, data)
        mean = total / max(data.n_samples, 1)
        sq = self.reduce(_shard_centered_sq, data, mean)
        data.mean = mean
        data.var = sq / max(data.n_samples, 1)

    def _check(self, data):
        if not isinstance(data, DistributedData) or data.controller is not self:
            raise ValueError("this dataset was distributed by another controller; "
                             "distribute it with this one")

    def reduce(self, func, data, *args):
        """Run ``func(shard, *args)`` on every shard and sum the statistics.

        ``args`` are broadcast to every shard.  The sum is taken in shard
        order (or by MPI ``Allreduce`` when so configured).
        """
        self._check(data)
        return self._run_reduce(func, data.key, args)

    def map(self, func, data, *args):
        """Run ``func(shard, *args)`` on every shard; list of results in shard order."""
        self._check(data)
        return self._run(func, data.key, args)

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
        parts = self._run(_take_dispatch, data.key, (per_shard,))
        out = np.empty((rows.size, data.n_features))
        for s in range(data.n_shards):
            out[shard_of == s] = parts[s]
        return out


def _take_dispatch(shard, per_shard_rows):
    return _shard_take(shard, per_shard_rows[shard.index])


def _load_feature_shard(files, offset, dtype, n_features):
    from .. import io as features
    X = (features.load_many(files, dtype=np.dtype(dtype)) if files
         else np.zeros((0, n_features), dtype))
    return X, offset, [f.path if f.key is None else f"{f.path}:{f.key}" for f in files]


# ---------------------------------------------------------------------------
# local controller
# ---------------------------------------------------------------------------

class LocalController(Controller):
    """Runs everything in this process.

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
    """

    def __init__(self, n_shards=1, blas_threads=None):
        n_shards = int(n_shards)
        if n_shards < 1:
            raise ValueError(f"n_shards must be >= 1, got {n_shards}")
        self.n_shards = n_shards
        self.blas_threads = blas_threads
        self._store = {}

    def __repr__(self):
        return f"LocalController(n_shards={self.n_shards})"

    def _limits(self):
        if self.blas_threads is None:
            import contextlib
            return contextlib.nullcontext()
        from threadpoolctl import threadpool_limits
        return threadpool_limits(limits=int(self.blas_threads))

    def _store_shards(self, key, parts):
        self._store[key] = [Shard(X=x, index=i, offset=off) for i, (x, off) in enumerate(parts)]

    def _load_shards(self, key, loader, assignments):
        shards = []
        for i, args in enumerate(assignments):
            X, off, sources = loader(*args)
            shards.append(Shard(X=X, index=i, offset=off, sources=sources))
        self._store[key] = shards

    def _shards(self, key):
        try:
            return self._store[key]
        except KeyError:
            raise ValueError(f"dataset {key!r} is not (or no longer) distributed") from None

    def _run(self, func, key, args):
        shards = self._shards(key)
        with self._limits():
            return [func(s, *args) for s in shards]

    def _run_reduce(self, func, key, args):
        return sum_stats(self._run(func, key, args))

    def free(self, data):
        self._store.pop(data.key, None)

    def map_tasks(self, func, items, *args, progress=False, desc=None):
        items = list(items)
        it = items
        if progress:
            from tqdm.auto import tqdm
            it = tqdm(items, desc=desc)
        with self._limits():
            return [func(item, *args) for item in it]


# ---------------------------------------------------------------------------
# engine-side helpers (module level, so engines import them by reference)
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


def _engine_info():
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return comm.Get_rank(), comm.Get_size(), os.getpid(), MPI.Get_processor_name(), cpus


def _engine_blas_threads(n):
    from threadpoolctl import threadpool_limits
    threadpool_limits(limits=int(n))
    return n


def _engine_put(key, X, index, offset):
    engine_store()[key] = Shard(X=np.ascontiguousarray(X), index=index, offset=offset)
    return X.shape[0]


def _engine_load(key, index, loader, args):
    X, offset, sources = loader(*args)
    engine_store()[key] = Shard(X=X, index=index, offset=offset, sources=sources)
    return X.shape[0]


def _engine_call(func, key, args):
    store = engine_store()
    try:
        shard = store[key]
    except KeyError:
        raise KeyError(f"dataset {key!r} is not on this engine "
                       f"(it has {sorted(store)})") from None
    return func(shard, *args)


def _engine_free(key):
    engine_store().pop(key, None)


def _engine_allreduce(func, key, args):
    """Compute this shard's statistics and sum them over all ranks with MPI.

    A first ``Allreduce`` agrees on success (and buffer size) so that an
    exception on one engine never leaves the others blocked in the data
    ``Allreduce``.  Rank 0 returns the sum; the others return None, so the
    client fetches one copy.
    """
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    error = None
    flat, spec = np.zeros(0), None
    try:
        flat, spec = pack_stats(_engine_call(func, key, args))
    except BaseException as exc:  # reported after the agreement below, even an interrupt
        error = exc
    status = np.array([0 if error else 1, flat.size, -flat.size], dtype=np.int64)
    comm.Allreduce(MPI.IN_PLACE, status, op=MPI.MIN)
    if error is not None:
        raise error
    if status[0] == 0:
        raise _PeerFailed("another engine failed in the same call")
    if status[1] != -status[2]:
        raise RuntimeError("engines returned statistics of different sizes")
    comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)
    return (flat, spec) if comm.Get_rank() == 0 else None


def _engine_task(func, item, args):
    return func(item, *args)


# ---------------------------------------------------------------------------
# DirectView controller
# ---------------------------------------------------------------------------

class DirectViewController(Controller):
    """Runs shard functions on ipyparallel engines in MPI mode.

    Parameters
    ----------
    view : ipyparallel.DirectView
        A view on engines started in MPI mode (``ipcluster start
        --engines=MPI`` or ``ipyparallel.Cluster(engines="mpi")``).  Shard
        ``r`` is placed on the engine with MPI rank ``r``.
    reduction : {"client", "allreduce"}, default="client"
        ``"client"``: every engine returns its statistics and the client sums
        them in rank order.  ``"allreduce"``: the engines sum with
        ``MPI.Allreduce`` and only rank 0's copy is fetched (the view must
        cover all ranks of ``MPI.COMM_WORLD``).
    blas_threads : int or None, default=None
        BLAS threads per engine.  ``None`` gives each engine
        ``max(1, cpu_count // engines_on_that_host)``.
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
        info = self.client[list(targets)].apply_sync(_engine_info)
        ranks = [i[0] for i in info]
        if sorted(ranks) != list(range(len(ranks))) and reduction == "allreduce":
            raise ValueError(
                f"reduction='allreduce' needs a view of all MPI ranks 0..{info[0][1] - 1}; "
                f"this view has ranks {sorted(ranks)}")
        if reduction == "allreduce" and info[0][1] != len(ranks):
            raise ValueError(f"reduction='allreduce' needs all {info[0][1]} MPI ranks in the "
                             f"view; it has {len(ranks)}")
        order = np.argsort(ranks, kind="stable")
        #: engine ids in shard order (shard i lives on engine_ids[i])
        self.engine_ids = [int(targets[i]) for i in order]
        self.ranks = [int(ranks[i]) for i in order]
        self.hosts = [info[i][3] for i in order]
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
        self._wait([self.client[e].apply_async(_engine_blas_threads, t)
                    for e, t in zip(self.engine_ids, threads)])
        self.blas_threads = threads

    def __repr__(self):
        return (f"DirectViewController(engines={self.engine_ids}, reduction={self.reduction!r})")

    # --- error handling ----------------------------------------------------
    def _wait(self, asyncs):
        """Wait for per-shard async results; raise one EngineError for all failures."""
        results, failures = [], []
        for shard_index, ar in enumerate(asyncs):
            try:
                results.append(ar.get())
            except self._ipp.error.RemoteError as exc:
                results.append(None)
                failures.append((shard_index, exc.ename, exc.evalue))
            except self._ipp.error.CompositeError as exc:
                results.append(None)
                for e in exc.elist:
                    failures.append((shard_index, e[0], e[1]))
        if failures:
            self._raise(failures)
        return results

    def _raise(self, failures):
        real = [f for f in failures if f[1] != "_PeerFailed"] or failures
        msg = "; ".join(f"engine {self.engine_ids[i]} (rank {self.ranks[i]}): {name}: {value}"
                        for i, name, value in real)
        raise _engine_error(msg, real)

    # --- primitives ----------------------------------------------------------
    def _store_shards(self, key, parts):
        self._wait([self.client[e].apply_async(_engine_put, key, x, i, off)
                    for i, (e, (x, off)) in enumerate(zip(self.engine_ids, parts))])

    def _load_shards(self, key, loader, assignments):
        try:
            self._wait([self.client[e].apply_async(_engine_load, key, i, loader, args)
                        for i, (e, args) in enumerate(zip(self.engine_ids, assignments))])
        except BaseException:
            self._free_quietly(key)  # no partial dataset left on the engines
            raise

    def _run(self, func, key, args):
        return self._wait([self.client[e].apply_async(_engine_call, func, key, args)
                           for e in self.engine_ids])

    def _run_reduce(self, func, key, args):
        if self.reduction == "client":
            return sum_stats(self._run(func, key, args))
        asyncs = [self.client[e].apply_async(_engine_allreduce, func, key, args)
                  for e in self.engine_ids]
        results = self._wait(asyncs)
        flat, spec = results[0]
        return unpack_stats(flat, spec)

    def free(self, data):
        self.view.apply_sync(_engine_free, data.key)

    def map_tasks(self, func, items, *args, progress=False, desc=None):
        items = list(items)
        lview = self.client.load_balanced_view(self.engine_ids)
        asyncs = [lview.apply_async(_engine_task, func, item, args) for item in items]
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
        results, failures = [], []
        for i, ar in enumerate(asyncs):
            try:
                results.append(ar.get())
            except self._ipp.error.RemoteError as exc:
                results.append(None)
                failures.append((i, exc.ename, exc.evalue))
        if failures:
            msg = "; ".join(f"task {i} ({items[i]!r}): {n}: {v}" for i, n, v in failures)
            raise _engine_error(msg, failures)
        return results


@dataclass
class _KeyOnly:
    key: str


# ---------------------------------------------------------------------------
# clusters
# ---------------------------------------------------------------------------

def ensure_mpiexec():
    """Put the ``mpiexec`` of this Python's environment (the mpich wheel) on PATH.

    ipyparallel's MPI launcher runs ``mpiexec`` from ``PATH``; a virtualenv
    used without activation would otherwise not find the one it installed.

    Returns
    -------
    str
        Path of the ``mpiexec`` that will be used.
    """
    import shutil
    import sys
    bindir = os.path.dirname(sys.executable)
    if os.path.exists(os.path.join(bindir, "mpiexec")):
        path = os.environ.get("PATH", "")
        if not path.split(os.pathsep)[0] == bindir:
            os.environ["PATH"] = bindir + os.pathsep + path
    found = shutil.which("mpiexec")
    if found is None:
        raise RuntimeError("mpiexec not found: install the mpich wheel (pip install mpich) "
                           "or a system MPI")
    return found


class MPICluster:
    """Start a local ipyparallel cluster with MPI engines and wrap it.

    Use as a context manager::

        with ipem.MPICluster(n=2) as controller:
            ipem.GaussianMixture(64, controller=controller).fit(X)

    Parameters
    ----------
    n : int, default=2
        Number of engines (MPI ranks).
    reduction : {"client", "allreduce"}, default="client"
    blas_threads : int or None
        See :class:`DirectViewController`.
    **cluster_kwargs
        Passed to ``ipyparallel.Cluster``.
    """

    def __init__(self, n=2, reduction="client", blas_threads=None, **cluster_kwargs):
        self.n = int(n)
        self.reduction = reduction
        self.blas_threads = blas_threads
        self.cluster_kwargs = cluster_kwargs
        self.cluster = None
        self.client = None
        self.controller = None

    def start(self):
        import ipyparallel as ipp
        kw = dict(self.cluster_kwargs)
        kw.setdefault("log_level", 30)
        ensure_mpiexec()
        self.cluster = ipp.Cluster(engines="mpi", n=self.n, **kw)
        try:
            self.client = self.cluster.start_and_connect_sync()
            self.client.wait_for_engines(self.n, timeout=120)
            self.controller = DirectViewController(self.client[:], reduction=self.reduction,
                                                   blas_threads=self.blas_threads)
        except BaseException:
            self.stop()  # no controller or engines left running
            raise
        return self.controller

    def stop(self):
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.stop_cluster_sync()
        self.cluster = self.client = self.controller = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def connect_profile(profile=None, *, profile_dir=None, reduction="client",
                    blas_threads=None, n_engines=None, timeout=120):
    """Connect to a running ``ipcluster start --engines=MPI`` cluster.

    Parameters
    ----------
    profile : str, optional
        IPython profile name (``ipcluster start --profile=NAME``).
    profile_dir : str, optional
        Profile directory (``ipcluster start --profile-dir=DIR``), e.g.
        ``profiles/profile_ipem_mpi`` in this repository.
    n_engines : int, optional
        Wait until this many engines have registered.

    Returns
    -------
    DirectViewController
    """
    import ipyparallel as ipp
    kw = {}
    if profile_dir is not None:
        kw["profile_dir"] = os.path.abspath(profile_dir)
    elif profile is not None:
        kw["profile"] = profile
    client = ipp.Client(**kw)
    if n_engines:
        client.wait_for_engines(int(n_engines), timeout=timeout)
    if not client.ids:
        raise RuntimeError("no engines are registered with this cluster")
    return DirectViewController(client[:], reduction=reduction, blas_threads=blas_threads)


def as_controller(controller):
    """Normalise an estimator's ``controller`` argument.

    ``None`` gives a one-shard :class:`LocalController`; an int ``n`` gives a
    :class:`LocalController` with ``n`` shards; a ``DirectView`` is wrapped
    in a :class:`DirectViewController`; controllers pass through.
    """
    if controller is None:
        return LocalController(1)
    if isinstance(controller, Controller):
        return controller
    if isinstance(controller, (int, np.integer)) and not isinstance(controller, bool):
        return LocalController(int(controller))
    try:
        import ipyparallel as ipp
    except ImportError:  # pragma: no cover
        ipp = None
    if ipp is not None and isinstance(controller, ipp.DirectView):
        return DirectViewController(controller)
    raise ValueError(f"controller={controller!r}: expected None, an int (local shards), "
                     "a Controller or an ipyparallel DirectView")

