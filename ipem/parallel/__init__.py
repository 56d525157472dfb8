"""The controller seam: data distributed once, shard functions run where it lives.

========================  ==========================================================
module                    what it holds
========================  ==========================================================
``controller``            :class:`Controller`, the interface every algorithm uses
``local``                 :class:`LocalController` (in-process shards)
``directview``            :class:`DirectViewController` (ipyparallel MPI engines)
``engine``                the functions that run where shards live (both controllers)
``clusters``              :class:`MPICluster`, :func:`connect_profile`,
                          :func:`as_controller`, :func:`controller_from_spec`
``data``                  :class:`Shard`, :class:`DistributedData`
``stats``                 adding and packing sufficient statistics
``scheduling``            balancing feature files over shards
``errors``                :class:`EngineError`, :class:`EngineValueError`,
                          :class:`EngineLost`, :class:`Terminated`
========================  ==========================================================
"""
from .clusters import (MPICluster, as_controller, connect_profile, controller_from_spec,
                       ensure_mpiexec, single_host_mpi_config)
from .controller import Controller, Reduction
from .data import Broadcast, DistributedData, Shard
from .directview import DirectViewController
from .engine import ENGINE_NAMESPACE, engine_store
from .errors import (EngineError, EngineLost, EngineParameterError, EngineRecoveryWarning,
                     EngineValueError, Terminated)
from .local import LocalController
from .stats import add_stats, pack_stats, sum_stats, unpack_stats

__all__ = ["Controller", "Reduction", "LocalController", "DirectViewController", "MPICluster",
           "connect_profile", "as_controller", "controller_from_spec", "ensure_mpiexec", "single_host_mpi_config",
           "DistributedData", "Shard", "Broadcast", "EngineLost",
           "EngineRecoveryWarning", "Terminated", "ENGINE_NAMESPACE", "engine_store", "EngineError",
           "EngineValueError", "EngineParameterError", "add_stats", "pack_stats", "sum_stats", "unpack_stats"]
