"""Shards and the client-side handle of a distributed dataset; the rows per block of a
dataset (``block_size``) and the magnitude check of its moments."""
from __future__ import annotations

import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..errors import ParameterError


@dataclass
class Shard:
    """One block of frames, held where it is used (an engine, or the local store).

    Attributes
    ----------
    X : ndarray of shape (n_samples_shard, n_features)
        The frames, float32 or float64.
    index : int
        Position of the shard (on engines: the MPI rank holding it).
    offset : int
        Global row index of ``X[0]`` in the distributed dataset.
    weights : ndarray of shape (n_samples_shard,), float64, or None
        Per-frame weights (``sample_weight``); None means every frame counts once.
    sources : list of str
        Files the frames were read from (empty for arrays sent by the client).
    state : dict
        Scratch space for algorithms (labels, distances), per dataset.
    """

    X: np.ndarray
    index: int
    offset: int
    weights: np.ndarray | None = None
    sources: list = field(default_factory=list)
    state: dict = field(default_factory=dict)

    @property
    def n_samples(self):
        """Rows of this shard."""
        return self.X.shape[0]

    def __repr__(self):
        w = "" if self.weights is None else ", weighted"
        return (f"Shard(index={self.index}, offset={self.offset}, "
                f"X={self.X.shape} {self.X.dtype}{w}, sources={len(self.sources)}, "
                f"state={sorted(self.state)})")


@dataclass
class BlockGroup:
    """The blocks of one place: consecutive fixed-length blocks of frames.

    What a place stores when a dataset is distributed in blocks
    (``Controller.block_size``): every block is a :class:`Shard` of its own
    (index = the block's global number, state of its own), so shard functions
    see the same blocks whatever the number of places.

    Attributes
    ----------
    blocks : list of Shard
        In global block order; their ``X`` are views of :attr:`X`.
    index : int
        Position of the place (on engines: the MPI rank).
    offset : int
        Global row index of the first frame.
    X : ndarray of shape (n_samples_place, n_features)
    sources : list of str
    """

    blocks: list
    index: int
    offset: int
    X: np.ndarray
    sources: list = field(default_factory=list)

    @property
    def n_samples(self):
        """Rows of all the blocks."""
        return self.X.shape[0]

    @classmethod
    def split(cls, shard, block_size):
        """Cut ``shard`` (whose offset is a multiple of ``block_size``) into blocks."""
        b = int(block_size)
        if shard.offset % b and shard.n_samples:
            raise ValueError(f"a place starting at row {shard.offset} is not on a boundary "
                             f"of the blocks of {b} rows")
        X = shard.X
        resident = X if isinstance(X, np.ndarray) else X.resident
        blocks = []
        for a in range(0, shard.n_samples, b):
            w = None if shard.weights is None else shard.weights[a:a + b]
            e = min(a + b, shard.n_samples)
            rows = resident[a:e] if e <= resident.shape[0] else RowsToRead(X, a, e)
            blocks.append(Shard(X=rows, index=(shard.offset + a) // b,
                                offset=shard.offset + a, weights=w, sources=shard.sources))
        return cls(blocks, shard.index, shard.offset, shard.X, shard.sources)

    def __repr__(self):
        return (f"BlockGroup(index={self.index}, offset={self.offset}, "
                f"X={self.X.shape} {self.X.dtype}, blocks={len(self.blocks)})")


class RowsToRead:
    """A block that is not kept in memory: rows ``a:b`` of ``source`` (``source.rows(a, b)``,
    e.g. :class:`ipem.io.streaming.StreamedRows`), read each time it is used."""

    def __init__(self, source, a, b):
        self.source, self.a, self.b = source, int(a), int(b)
        self.shape = (self.b - self.a, source.shape[1])
        self.dtype = source.dtype

    def read(self, out=None):
        """The rows, read now: ndarray of shape (b - a, n_features) (``out`` when given)."""
        if out is None:
            return self.source.rows(self.a, self.b)
        return self.source.rows(self.a, self.b, out=out)


def with_rows(block, func, args):
    """``func(block, *args)``, the block's rows read first if they are not in memory."""
    if isinstance(block.X, np.ndarray):
        return func(block, *args)
    pending = block.X
    block.X = pending.read()
    try:
        return func(block, *args)
    finally:
        block.X = pending


def block_results(group, func, args):
    """``func(block, *args)`` for the blocks of a :class:`BlockGroup`, yielded in block order.

    Blocks not kept in memory (:class:`RowsToRead`) are read before they are
    used; when the place's rows allow it (``group.X.read_ahead``, which
    :func:`ipem.io.streaming.resident_rows` sets when the memory budget has
    room for it), a thread reads the next of them while the current block is
    computed: one block ahead at most, so that at most two blocks read from
    files are in memory at once.  The values are those of :func:`with_rows`
    block by block.

    Yields
    ------
    object
        ``func(block, *args)``.
    """
    blocks = group.blocks
    to_read = [b for b in blocks if isinstance(b.X, RowsToRead)]
    if not getattr(group.X, "read_ahead", False) or not to_read:
        for block in blocks:
            yield with_rows(block, func, args)
        return
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ipem-read-ahead")

    def submit(pending):
        # the buffer is allocated (and later freed) by this thread, not the reader: blocks
        # freed in the reader thread's own malloc arena were measured to stay resident
        buf = np.empty(pending.shape, pending.dtype)
        return pool.submit(pending.read, buf)

    try:
        queue = iter(to_read)
        ahead = submit(next(queue).X)  # while the resident blocks are computed
        for block in blocks:
            if not isinstance(block.X, RowsToRead):
                yield func(block, *args)
                continue
            rows = ahead.result()
            nxt = next(queue, None)
            ahead = None if nxt is None else submit(nxt.X)
            pending, block.X = block.X, rows
            try:
                value = func(block, *args)
            finally:
                block.X = pending
                rows = None  # noqa: F841 - the block's rows go before the next is read
            yield value
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def block_sizes(n_samples, block_size):
    """Sizes of the fixed blocks of ``n_samples`` rows: ndarray of shape (n_blocks,)."""
    n, b = int(n_samples), int(block_size)
    sizes = np.full(n // b, b, dtype=np.int64)
    return np.append(sizes, n % b) if n % b else sizes


class DistributedData:
    """Handle to a dataset distributed by a controller.

    Attributes
    ----------
    controller : Controller
    key : str
        Key of the shards in the engine namespace dictionary ``ipem_shards``
        (DirectView) or in the local store.
    shard_sizes : ndarray of shape (n_shards,)
    n_samples, n_features : int
    dtype : numpy.dtype
    weighted : bool
        Whether the shards hold per-frame weights.
    total_weight : float
        Sum of the frame weights (``n_samples`` when unweighted).
    mean : ndarray of shape (n_features,), float64
        Per-feature mean (weighted by the frame weights), computed once;
        kernels work around this shift.
    var : ndarray of shape (n_features,), float64
        Per-feature population variance (weighted), computed once.
    files : list of list of FeatureRef, or None
        For data read by the engines: which files each place read.
    block_size : int or None
        Rows of the fixed blocks the dataset is cut into (``Controller.block_size``
        when it was distributed); then the shards that shard functions see are
        the blocks, the same on any number of places, and ``shard_sizes`` are
        the blocks' sizes.
    place_sizes : ndarray of shape (n_places,)
        Rows held by each place (engine or local shard); ``shard_sizes`` when
        there are no blocks.

    Notes
    -----
    The shards are freed by :meth:`free`, at the end of a ``with`` block, or
    when the last reference to the handle is dropped (``del data``).
    """

    def __init__(self, controller, key, shard_sizes, n_features, dtype, files=None,
                 weighted=False, block_size=None):
        self.controller = controller
        self.key = key
        self.place_sizes = np.asarray(shard_sizes, dtype=np.int64)
        self.n_samples = int(self.place_sizes.sum())
        self.block_size = None if block_size is None else int(block_size)
        self.shard_sizes = (self.place_sizes if block_size is None
                            else block_sizes(self.n_samples, block_size))
        self.n_features = int(n_features)
        self.dtype = np.dtype(dtype)
        self.files = files
        self.weighted = bool(weighted)
        self.total_weight = float(self.n_samples)
        self.mean = None
        self.var = None
        self._finalizer = weakref.finalize(self, controller._release, key)
        self._finalizer.atexit = False  # at exit the engines go anyway

    @property
    def shape(self):
        """``(n_samples, n_features)`` of the whole dataset."""
        return (self.n_samples, self.n_features)

    @property
    def n_shards(self):
        """Number of shards."""
        return len(self.shard_sizes)

    @property
    def offsets(self):
        """ndarray of shape (n_shards + 1,): the global index of each shard's first row
        (and the total)."""
        return np.concatenate([[0], np.cumsum(self.shard_sizes)])

    def free(self):
        """Delete the shards where they live (a second call does nothing)."""
        if self._finalizer.detach() is not None:
            self.controller._free_key(self.key)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.free()

    def __repr__(self):
        return (f"DistributedData(key={self.key!r}, shape={self.shape}, dtype={self.dtype}, "
                f"shards={self.shard_sizes.tolist()}, controller={self.controller!r})")


class Broadcast:
    """Handle to a constant sent once to every place where tasks run.

    Made by :meth:`Controller.broadcast`; pass it among the ``args`` of
    :meth:`Controller.map_tasks` and each task receives the value itself,
    looked up where it runs, instead of a copy sent with every task.

    Attributes
    ----------
    controller : Controller
    key : str
        Key of the value in ``ipem_shards`` on the engines (or the local store).
    """

    def __init__(self, controller, key):
        self.controller = controller
        self.key = key
        self._finalizer = weakref.finalize(self, controller._release, key)
        self._finalizer.atexit = False

    def free(self):
        """Delete the value where it was sent (a second call does nothing)."""
        if self._finalizer.detach() is not None:
            self.controller._free_key(self.key)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.free()

    def __reduce__(self):
        # what travels to an engine with a task: only the key
        return (BroadcastKey, (self.key,))

    def __repr__(self):
        return f"Broadcast(key={self.key!r}, controller={self.controller!r})"


@dataclass(frozen=True)
class BroadcastKey:
    """What a :class:`Broadcast` becomes when pickled to an engine: its key."""

    key: str


#: rows of the blocks ``block_size="auto"`` cuts a large dataset into
AUTO_BLOCK_ROWS = 16384
#: blocks ``block_size="auto"`` cuts a smaller dataset into (at least), so that it
#: still spreads over places
AUTO_MIN_BLOCKS = 32


def auto_block_size(n_rows):
    """Rows per block of a dataset of ``n_rows`` rows under ``block_size="auto"``.

    :data:`AUTO_BLOCK_ROWS`, or fewer (a multiple of 16, at least 16) so that
    there are about :data:`AUTO_MIN_BLOCKS` blocks.  It depends on ``n_rows``
    only, never on the number of places: that is what makes models the same
    on any number of engines.

    Parameters
    ----------
    n_rows : int

    Returns
    -------
    int
    """
    per = -(-int(n_rows) // AUTO_MIN_BLOCKS)
    return int(min(AUTO_BLOCK_ROWS, max(16, -(-per // 16) * 16)))


def block_rows(block_size, n_rows, unit="frames"):
    """Rows per block of a dataset of ``n_rows`` rows under ``block_size``, or None.

    Parameters
    ----------
    block_size : "auto", int or None
        A controller's :attr:`~ipem.parallel.Controller.block_size`.
    n_rows : int
    unit : {"frames", "utterances"}
        What a row is.  Under ``"auto"`` frames are cut into
        :func:`auto_block_size` rows and utterance statistics are not cut
        (None: blocks of them cost more than 5 % per iteration); an integer
        applies to both.

    Returns
    -------
    int or None
    """
    b = check_block_size(block_size)
    if isinstance(b, str):
        return auto_block_size(n_rows) if unit == "frames" else None
    return b


def rows_per_block(controller, n_rows, unit="frames"):
    """:meth:`Controller.rows_per_block` of ``controller``, None for what is not a
    Controller yet (a spec such as ``"mpi:2"``, None)."""
    method = getattr(controller, "rows_per_block", None)
    return None if method is None else method(n_rows, unit)


def check_block_size(block_size):
    """``block_size`` checked: ``"auto"``, None or an int >= 1."""
    if block_size is None or (isinstance(block_size, str) and block_size == "auto"):
        return block_size
    if (isinstance(block_size, (bool, str)) or not isinstance(block_size, (int, np.integer))
            or block_size < 1):
        raise ParameterError(f"block_size must be 'auto', an integer >= 1 or None, got "
                             f"{block_size!r}", "block_size")
    return int(block_size)


#: largest per-feature spread or mean that squared sums stay finite with, per dtype
#: (squares up to 1e30 summed over thousands of frames and features fit in float32's 3e38)
MAGNITUDE_LIMITS = {np.dtype(np.float32): 1e15, np.dtype(np.float64): 1e150}


def check_magnitude(mean, var, dtype):
    """Refuse data whose squares would overflow the kernels' arithmetic.

    Raises
    ------
    ValueError
        Naming the feature column, its magnitude and what to do.
    """
    limit = MAGNITUDE_LIMITS.get(np.dtype(dtype), 1e150)
    with np.errstate(over="ignore", invalid="ignore"):
        size = np.maximum(np.abs(mean), np.sqrt(var))
    bad = np.flatnonzero(~(size <= limit))
    if bad.size:
        j = int(bad[0])
        raise ParameterError(
            f"feature column {j} reaches magnitudes of {size[j]:.1e}, beyond what "
            f"{np.dtype(dtype).name} arithmetic can square and sum without overflow (limit "
            f"{limit:.0e}): scale the features (standardise them)", "dtype",
            hint=" or use float64" if np.dtype(dtype) == np.float32 else "")
