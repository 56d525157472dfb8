"""ipem: parallel expectation-maximisation for k-means and Gaussian mixtures.

Each algorithm is written once against a small controller interface
(:mod:`ipem.controller`) and runs unchanged in-process
(:class:`LocalController`) or on ipyparallel engines in MPI mode
(:class:`DirectViewController`, :class:`MPICluster`, :func:`connect_profile`).
"""
from ._em import EMResult, IterationRecord, run_em
from ._kernels import BACKEND, available_backends
from .controller import (ENGINE_NAMESPACE, Controller, DirectViewController, DistributedData,
                         EngineError, EngineValueError, LocalController, MPICluster, Shard,
                         as_controller, connect_profile)
from .kmeans import KMeans, kmeans_plusplus_distributed
from .mixture import GaussianMixture
from .plotting import LivePlot
from .ubm import UBMTrainer

__version__ = "0.1.0"

__all__ = [
    "BACKEND", "available_backends", "Controller", "LocalController", "DirectViewController",
    "DistributedData", "Shard", "MPICluster", "connect_profile", "as_controller",
    "ENGINE_NAMESPACE", "EngineError", "EngineValueError", "EMResult", "IterationRecord",
    "run_em", "KMeans", "kmeans_plusplus_distributed", "GaussianMixture", "LivePlot", "UBMTrainer",
]
