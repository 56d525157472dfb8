"""ipem: parallel expectation-maximisation for k-means and Gaussian mixtures.

Each algorithm is written once against a small controller interface and runs
unchanged in-process or on ipyparallel engines in MPI mode.  Where things are:

``ipem.parallel``   the controller seam (LocalController, DirectViewController, MPICluster)
``ipem.kernels``    the kernel seam (compiled C E-steps, NumPy reference)
``ipem.em``         the EM loop (driver, hook contract, records), the estimator base (fit
                    once), staged training
``ipem.mixture``    GaussianMixture, the UBM trainer, GMMParams, the shared GMM math
``ipem.cluster``    KMeans (Lloyd, distributed k-means++)
``ipem.io``         feature files, lists, model and checkpoint files, frame sources
``ipem.errors``     ParameterError (re-exported by ``ipem.validation``)
``ipem.ivector``    i-vectors: total-variability EM, extraction, LDA/WCCN/PLDA back-end
``ipem.speaker``    speaker verification: front-end, MAP, scoring, normalization,
                    calibration, metrics, feature sources, score files
``ipem.synth``      the synthetic corpus generator
``ipem.steps``      the pipeline steps (the only place that starts a step's cluster)
``ipem.cli``        the ``ipem`` command

``import ipem`` loads the first group only (no speech, corpus, step or command code).
"""
from ._optional import MissingDependencyError
from .cluster.kmeans import KMeans
from .cluster.kmeans_plusplus import kmeans_plusplus_distributed
from .em.driver import EMLoop, EMResult
from .em.records import IterationRecord
from .kernels import BACKEND, available_backends
from .mixture.gaussian_mixture import GaussianMixture
from .mixture.ubm import UBMTrainer
from .ivector.total_variability import TotalVariability
from .parallel import (ENGINE_NAMESPACE, Controller, DirectViewController, DistributedData,
                       EngineError, EngineLost, EngineRecoveryWarning, EngineValueError,
                       LocalController, MPICluster, Shard, SlurmCluster, Terminated,
                       as_controller, connect_profile, controller_from_spec)
from .plotting import LivePlot

__version__ = "0.1.0"

__all__ = [
    "BACKEND", "available_backends", "Controller", "LocalController", "DirectViewController",
    "DistributedData", "Shard", "MPICluster", "SlurmCluster", "connect_profile", "as_controller",
    "controller_from_spec", "ENGINE_NAMESPACE", "EngineError", "EngineValueError", "EngineLost",
    "EngineRecoveryWarning", "Terminated", "EMLoop",
    "EMResult", "IterationRecord", "KMeans", "kmeans_plusplus_distributed", "GaussianMixture",
    "LivePlot", "MissingDependencyError", "UBMTrainer", "TotalVariability",
]
