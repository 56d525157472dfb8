"""Which shard gets which feature files: balanced by frame count."""
from __future__ import annotations

import heapq

import numpy as np


def assign_balanced(refs, n_shards):
    """Assign files to shards so that total frame counts are balanced.

    Greedy longest-processing-time scheduling: files are taken by
    decreasing ``n_frames`` (ties: lower index first) and each goes to the
    shard with the fewest frames so far (ties: lower shard index).

    Parameters
    ----------
    refs : sequence of FeatureRef or int
        Files (anything with an ``n_frames`` attribute) or plain frame counts.
    n_shards : int
        Number of shards (e.g. engines), at least 1.  Shards may end up
        empty if there are fewer files than shards.

    Returns
    -------
    list of list of int, length n_shards
        ``shards[s]`` holds the indices into ``refs`` assigned to shard
        ``s``, in increasing (original list) order.  Deterministic.

    Raises
    ------
    ValueError
        If ``n_shards < 1`` or ``refs`` is empty.
    """
    if isinstance(n_shards, bool) or not isinstance(n_shards, (int, np.integer)) or n_shards < 1:
        raise ValueError(f"n_shards must be an int >= 1, got {n_shards!r}")
    sizes = [int(getattr(r, "n_frames", r)) for r in refs]
    if not sizes:
        raise ValueError("no feature files to assign")
    if min(sizes) < 0:
        raise ValueError("frame counts must be non-negative")
    order = sorted(range(len(sizes)), key=lambda i: (-sizes[i], i))
    heap = [(0, s) for s in range(int(n_shards))]  # (frames so far, shard index)
    shards = [[] for _ in range(int(n_shards))]
    for i in order:
        total, s = heapq.heappop(heap)
        shards[s].append(i)
        heapq.heappush(heap, (total + sizes[i], s))
    return [sorted(shard) for shard in shards]
