"""ipem: parallel expectation-maximisation for k-means and Gaussian mixtures.

Each algorithm is written once against a small controller interface
(:mod:`ipem.parallel`) and runs unchanged in-process
(:class:`LocalController`) or on ipyparallel engines in MPI mode
(:class:`DirectViewController`, :class:`MPICluster`, :func:`connect_profile`).
"""
from .cluster.kmeans import KMeans, kmeans_plusplus_distributed
from .em.driver import EMResult, IterationRecord, run_em
from .kernels import BACKEND, available_backends
from .mixture.gaussian_mixture import GaussianMixture
from .mixture.ubm import UBMTrainer
from .parallel.controller import (ENGINE_NAMESPACE, Controller, DirectViewController,
                                  DistributedData, EngineError, EngineValueError,
                                  LocalController, MPICluster, Shard, as_controller,
                                  connect_profile)
from .plotting import LivePlot

__version__ = "0.1.0"

__all__ = [
    "BACKEND", "available_backends", "Controller", "LocalController", "DirectViewController",
    "DistributedData", "Shard", "MPICluster", "connect_profile", "as_controller",
    "ENGINE_NAMESPACE", "EngineError", "EngineValueError", "EMResult", "IterationRecord",
    "run_em", "KMeans", "kmeans_plusplus_distributed", "GaussianMixture", "LivePlot", "UBMTrainer",
]
