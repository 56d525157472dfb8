"""Lloyd's k-means: the shard functions (run where the frames live).

Each returns statistics or per-frame values; labels and squared distances of
the last E-step stay on the shard in ``shard.state`` (for relocating empty
clusters without another pass).  Centres are always given in coordinates
shifted by ``shift`` (the dataset mean), as the kernels expect.
"""
from __future__ import annotations

import numpy as np

from ..kernels import get_kernels



def reset(shard):
    """Start a k-means run: no labels (and no distance bounds) yet."""
    shard.state["km_labels"] = np.full(shard.X.shape[0], -1, dtype=np.int64)
    shard.state["km_mindist"] = np.zeros(shard.X.shape[0])
    shard.state.pop("km_bounds", None)
    return 0.0


def clear(shard):
    """Drop the per-run state."""
    shard.state.pop("km_labels", None)
    shard.state.pop("km_mindist", None)
    shard.state.pop("km_bounds", None)
    return 0.0


def step(shard, shift, centers, backend, chunk_size):
    """One Lloyd E-step: (weighted) counts, sums and inertia; labels kept on the shard.

    The shard keeps its labels, distances and the kernel's distance bounds
    between the steps of a run, so that frames whose label cannot change are
    not compared with every centre (exactly the same results).

    Returns
    -------
    dict with ``counts`` (K,), ``sums`` (K, D) of shifted frames, ``inertia``,
    ``n_changed`` (frames whose label changed) and ``n_full`` (frames compared
    with every centre).
    """
    kern = get_kernels(backend)
    n = shard.X.shape[0]
    st = shard.state
    labels = st.get("km_labels")
    if labels is None or labels.shape[0] != n:
        labels = np.full(n, -1, dtype=np.int64)
    mindist = st.get("km_mindist")
    if mindist is None or mindist.shape[0] != n:
        mindist = np.zeros(n)
    bounds = st.get("km_bounds")
    if bounds is None or bounds["upper"].shape[0] != n:
        bounds = kern.new_kmeans_bounds(n)
    # the bounds are only meaningful for the frames' labels: drop them while the
    # step runs, so that an error cannot leave stale bounds with new labels
    st.pop("km_bounds", None)
    counts, sums, inertia, n_changed, n_full = kern.kmeans_step_bounded(
        shard.X, shift, centers, labels, mindist, bounds, chunk_size,
        sample_weight=shard.weights)
    st["km_labels"] = labels
    st["km_mindist"] = mindist
    st["km_bounds"] = bounds
    return {"counts": counts, "sums": sums, "inertia": inertia,
            "n_changed": float(n_changed), "n_full": float(n_full)}


def farthest(shard, m, shift):
    """The ``m`` frames farthest from their centre (from the last E-step).

    Returns
    -------
    distances (m,), global indices (m,), shifted rows (m, D), labels (m,), weights (m,)
    """
    d = shard.state["km_mindist"]
    m = min(int(m), d.shape[0])
    if m == 0:
        return (np.zeros(0), np.zeros(0, np.int64), np.zeros((0, shard.X.shape[1])),
                np.zeros(0, np.int64), np.zeros(0))
    idx = np.argpartition(d, -m)[-m:]
    rows = shard.X[idx].astype(np.float64) - shift
    w = np.ones(m) if shard.weights is None else shard.weights[idx]
    return d[idx], idx + shard.offset, rows, shard.state["km_labels"][idx], w


def assign(shard, shift, centers, backend, chunk_size):
    """Nearest centre and squared distance of every frame, shape (n, 2) as float64."""
    kern = get_kernels(backend)
    n = shard.X.shape[0]
    labels = np.empty(n, dtype=np.int64)
    mindist = np.empty(n)
    kern.kmeans_step(shard.X, shift, centers, labels, mindist, chunk_size)
    return np.stack([labels.astype(np.float64), mindist], axis=1)


def labels_of(shard, shift, centers, backend, chunk_size):
    """Nearest centre of every frame, shape (n,), int64."""
    return assign(shard, shift, centers, backend, chunk_size)[:, 0].astype(np.int64)


def _own_shift(shard):
    # a shift for frames outside any distributed dataset: the shard's own mean
    x = shard.X
    return x.mean(axis=0, dtype=np.float64) if x.shape[0] else np.zeros(x.shape[1])


def nearest(shard, centers, backend, chunk_size):
    """(label, squared distance) of every frame for unshifted ``centers``, shape (n, 2)."""
    s = _own_shift(shard)
    return assign(shard, s, centers - s, backend, chunk_size)


def distances(shard, centers, chunk_size=4096):
    """Euclidean distance of every frame to every centre, shape (n, K), float64.

    Distances computed as ``|x|^2 - 2 x.c + |c|^2`` that cancel to rounding
    noise (a frame on a centre) are computed again directly, so a frame equal to
    a centre is at distance exactly 0.
    """
    s = _own_shift(shard)
    c = centers - s
    c_sq = np.einsum("kd,kd->k", c, c)
    out = np.empty((shard.X.shape[0], c.shape[0]))
    for a in range(0, shard.X.shape[0], chunk_size):
        x = shard.X[a:a + chunk_size].astype(np.float64) - s
        x_sq = np.einsum("nd,nd->n", x, x)
        d2 = x_sq[:, None] - 2.0 * (x @ c.T) + c_sq
        rows, cols = np.nonzero(d2 <= 1e-8 * (x_sq[:, None] + c_sq))
        if rows.size:
            diff = x[rows] - c[cols]
            d2[rows, cols] = np.einsum("nd,nd->n", diff, diff)
        np.sqrt(np.maximum(d2, 0.0), out=out[a:a + chunk_size])
    return out
