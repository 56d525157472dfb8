"""Copied into the work directory of a scikit-learn suite run as ``ipem_suite_target.py``.

The rebinding line added to the copied scikit-learn test file is
``from ipem_suite_target import ESTIMATOR as <Name>``.  In-process,
``ESTIMATOR`` is ipem's class itself; on engines it is a subclass whose
default ``controller`` is a DirectViewController on the engines started by
the suite's conftest (everything else inherited, so ``get_params``/``clone``
see the same parameters).
"""
import inspect
import os

import ipem

NAME = os.environ["IPEM_SUITE_ESTIMATOR"]
_base = getattr(ipem, NAME)
ESTIMATOR = _base
_cluster = []


def _with_default_controller(base, controller):
    sig = inspect.signature(base.__init__)
    params = [p.replace(default=controller) if p.name == "controller" else p
              for p in sig.parameters.values()]

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("controller", controller)
        base.__init__(self, *args, **kwargs)

    __init__.__signature__ = sig.replace(parameters=params)
    return type(base.__name__, (base,), {"__init__": __init__, "__module__": __name__,
                                         "__doc__": base.__doc__})


def start_engines(n):
    """Start ``n`` MPI engines; ESTIMATOR becomes the engine-backed subclass."""
    global ESTIMATOR
    from tests.helpers import start_mpi_cluster
    cluster, client = start_mpi_cluster(n, timeout=180)
    _cluster.extend([cluster, client])
    ctrl = ipem.DirectViewController(client[:], blas_threads=1)
    ESTIMATOR = _with_default_controller(_base, ctrl)


def stop_engines():
    if _cluster:
        cluster, client = _cluster
        client.close()
        cluster.stop_cluster_sync()
        _cluster.clear()
