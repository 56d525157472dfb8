"""Write the notebooks from their cell sources (kept here, reviewed as code).

    python notebooks/make_notebooks.py
"""
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent


def write(name, cells):
    nb = new_notebook(cells=[new_markdown_cell(c[3:]) if c.startswith("md:") else new_code_cell(c)
                             for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, HERE / name)


FIRST = [
    """md:# ipem 1 — EM written once, run locally or on MPI engines

This notebook starts two ipyparallel engines **in MPI mode**, scatters a set of frames over
them once, and fits a Gaussian mixture with the `DirectViewController` while the convergence
plot updates. The same estimator with a `LocalController` (same shard layout) gives a
bit-identical model. Finally `%px` looks at what lives on the engines.""",
    """import time
import numpy as np
import ipem
print("ipem", ipem.__version__, "kernel backend:", ipem.BACKEND)""",
    """md:## Start 2 MPI engines
`ipem.MPICluster` wraps `ipyparallel.Cluster(engines="mpi")`. To use a cluster started with
`ipcluster start --profile-dir=profiles/profile_ipem_mpi -n 2` instead, call
`ipem.connect_profile(profile_dir="../profiles/profile_ipem_mpi", n_engines=2)`.""",
    """cluster = ipem.MPICluster(n=2, blas_threads=1)
ctrl = cluster.start()
rc = cluster.client
print(ctrl, "ranks", ctrl.ranks)""",
    """md:## Frames, scattered once
A stand-in for speech features: 40,000 frames of 12 dimensions from 16 overlapping Gaussians.""",
    """rng = np.random.default_rng(0)
true_means = rng.normal(0, 1.5, size=(16, 12))
labels = rng.integers(0, 16, size=40_000)
X = (true_means[labels] + rng.normal(0, 1, size=(40_000, 12)) * rng.uniform(0.5, 1.5, 12)).astype(np.float32)
data = ctrl.distribute(X, key="frames")
data""",
    """md:## Fit on the engines with a live convergence plot
Each iteration sends the parameters (16×12 numbers and precisions) and brings back the
statistics; the frames never move again.""",
    """plot = ipem.LivePlot(title="GMM on 2 MPI engines")
gm_remote = ipem.GaussianMixture(16, covariance_type="diag", tol=1e-6, max_iter=200,
                                 random_state=0, callbacks=plot).fit(data)
print(f"{gm_remote.n_iter_} iterations, converged={gm_remote.converged_}, "
      f"log-likelihood/frame={gm_remote.lower_bound_:.6f}")""",
    """md:## The same code, in-process
A `LocalController(2)` splits the frames the same way; the result is bit-identical.
(float32 matrix products round differently with another BLAS thread count, so the local
controller uses the engines' one thread; with float64 features it does not matter.)""",
    """gm_local = ipem.GaussianMixture(16, covariance_type="diag", tol=1e-6, max_iter=200,
                                random_state=0,
                                controller=ipem.LocalController(2, blas_threads=1)).fit(X)
same = all(np.array_equal(a, b) for a, b in [
    (gm_local.means_, gm_remote.means_), (gm_local.covariances_, gm_remote.covariances_),
    (gm_local.weights_, gm_remote.weights_)])
print("bit-identical:", same, "| iterations:", gm_local.n_iter_, gm_remote.n_iter_)
assert same""",
    """md:## MPI Allreduce instead of a client-side sum
The engines sum their statistics with `MPI.Allreduce`; one copy comes back.""",
    """ctrl_ar = ipem.DirectViewController(rc[:], reduction="allreduce")
data_ar = ctrl_ar.distribute(X, key="frames_ar")
gm_ar = ipem.GaussianMixture(16, covariance_type="diag", tol=1e-6, max_iter=200,
                             random_state=0).fit(data_ar)
print("Allreduce model identical:", np.array_equal(gm_ar.means_, gm_remote.means_))
rec = gm_remote.history_[-1]
print("per-engine frames", rec.info["shard_frames"], "E-step seconds",
      np.round(rec.info["shard_time"], 4))""",
    """md:## What lives on the engines
The shards are kept in the engine namespace in the dictionary `ipem_shards`.""",
    """view = rc[:]
view.block = True
view.activate()   # %px now runs on both engines""",
    """%px print(sorted(ipem_shards), ipem_shards["frames"])""",
    """%px from mpi4py import MPI; print("rank", MPI.COMM_WORLD.Get_rank(), "of", MPI.COMM_WORLD.Get_size())""",
    """data.free(); data_ar.free()
cluster.stop()""",
]

if __name__ == "__main__":
    write("01_em_on_mpi_engines.ipynb", FIRST)
