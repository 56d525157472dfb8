"""The controller seam: data distributed once, shard functions run where it lives.

========================  ==========================================================
module                    what it holds
========================  ==========================================================
``controller``            :class:`Controller`, the interface every algorithm uses;
                          :class:`Reduction` (what ``reduce_timed`` returns)
``local``                 :class:`LocalController` (in-process shards)
``directview``            :class:`DirectViewController` (ipyparallel MPI engines)
``engine``                the functions that run where shards live (both controllers)
``places``                ``Controller.reduce_on_places``: sums kept where the shards
                          are, each place applying a function to its part
``clusters``              the registry of ``--cluster`` kinds (:data:`LAUNCHERS`),
                          :func:`controller_from_spec`, :func:`as_controller`
``launchers``             :class:`~ipem.parallel.launchers.Launcher`, what a kind declares
``mpi``                   :class:`MPICluster` (engines ipem starts), ``mpiexec`` choice
``profile``               :func:`connect_profile` (engines of a running profile)
``slurm``                 :class:`SlurmCluster` (engines in a Slurm job ipem submits)
``data``                  :class:`Shard`, :class:`DistributedData`
``stats``                 adding and packing sufficient statistics
``scheduling``            balancing feature files over shards
``errors``                :class:`EngineError`, :class:`EngineValueError`,
                          :class:`EngineParameterError`, :class:`EngineLost`,
                          :class:`Terminated`
========================  ==========================================================

Adding a ``--cluster`` kind: a module that declares a ``LAUNCHER`` and one line in
:data:`ipem.parallel.clusters.LAUNCHERS`.
"""
from .clusters import LAUNCHERS, as_controller, controller_from_spec, parse_cluster_spec
from .controller import Controller, Reduction
from .data import auto_block_size, rows_per_block
from .data import Broadcast, DistributedData, Shard
from .directview import DirectViewController
from .engine import ENGINE_NAMESPACE, engine_store
from .errors import (EngineError, EngineLost, EngineParameterError, EngineRecoveryWarning,
                     EngineValueError, Terminated, raise_terminated)
from .local import LocalController
from .mpi import MPICluster, ensure_mpiexec, single_host_mpi_config
from .profile import connect_profile
from .slurm import SlurmCluster
from .stats import add_stats, pack_stats, sum_stats, unpack_stats

__all__ = ["Controller", "Reduction", "LocalController", "DirectViewController", "MPICluster",
           "SlurmCluster", "LAUNCHERS", "connect_profile", "as_controller", "controller_from_spec",
           "parse_cluster_spec", "ensure_mpiexec", "single_host_mpi_config", "DistributedData",
           "Shard", "Broadcast", "EngineLost", "EngineRecoveryWarning", "Terminated",
           "raise_terminated", "ENGINE_NAMESPACE", "engine_store", "EngineError",
           "EngineValueError", "EngineParameterError", "add_stats", "pack_stats", "sum_stats",
           "unpack_stats", "auto_block_size", "rows_per_block"]
