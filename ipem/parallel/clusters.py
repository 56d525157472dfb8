"""Getting a controller: local shards, a private MPI cluster, or a running profile.

``controller_from_spec`` understands the strings the CLI takes
(``"local"``, ``"local:N"``, ``"mpi:N"``, ``"profile:DIR"``); :func:`as_controller`
normalises an estimator's ``controller`` argument.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys

import numpy as np

from .controller import Controller
from .directview import DirectViewController
from .local import LocalController

logger = logging.getLogger(__name__)


def ensure_mpiexec():
    """Put the ``mpiexec`` of this Python's environment (the mpich wheel) on PATH.

    ipyparallel's MPI launcher runs ``mpiexec`` from ``PATH``; a virtualenv
    used without activation would otherwise not find the one it installed.

    Returns
    -------
    str
        Path of the ``mpiexec`` that will be used.
    """
    bindir = os.path.dirname(sys.executable)
    if os.path.exists(os.path.join(bindir, "mpiexec")):
        path = os.environ.get("PATH", "")
        if not path.split(os.pathsep)[0] == bindir:
            os.environ["PATH"] = bindir + os.pathsep + path
    found = shutil.which("mpiexec")
    if found is None:
        raise RuntimeError("mpiexec not found: install the mpich wheel (pip install mpich) "
                           "or a system MPI")
    return found


class MPICluster:
    """Start a local ipyparallel cluster with MPI engines and wrap it.

    Use as a context manager::

        with ipem.MPICluster(n=2) as controller:
            ipem.GaussianMixture(64, controller=controller).fit(X)

    Parameters
    ----------
    n : int, default=2
        Number of engines (MPI ranks).
    reduction : {"client", "allreduce"}, default="client"
    blas_threads : int or None
        See :class:`~ipem.parallel.directview.DirectViewController`.
    **cluster_kwargs
        Passed to ``ipyparallel.Cluster``.
    """

    def __init__(self, n=2, reduction="client", blas_threads=None, **cluster_kwargs):
        self.n = int(n)
        self.reduction = reduction
        self.blas_threads = blas_threads
        self.cluster_kwargs = cluster_kwargs
        self.cluster = None
        self.client = None
        self.controller = None

    def start(self):
        """Start the engines; returns the DirectViewController."""
        import ipyparallel as ipp
        kw = dict(self.cluster_kwargs)
        kw.setdefault("log_level", 30)
        ensure_mpiexec()
        self.cluster = ipp.Cluster(engines="mpi", n=self.n, **kw)
        try:
            self.client = self.cluster.start_and_connect_sync()
            self.client.wait_for_engines(self.n, timeout=120)
            self.controller = DirectViewController(self.client[:], reduction=self.reduction,
                                                   blas_threads=self.blas_threads)
        except BaseException:
            self.stop()  # no controller or engines left running
            raise
        logger.info("started %d MPI engines: %r", self.n, self.controller)
        return self.controller

    def stop(self):
        """Stop the engines and the ipyparallel controller."""
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.stop_cluster_sync()
        self.cluster = self.client = self.controller = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def connect_profile(profile=None, *, profile_dir=None, reduction="client",
                    blas_threads=None, n_engines=None, timeout=120):
    """Connect to a running ``ipcluster start --engines=MPI`` cluster.

    Parameters
    ----------
    profile : str, optional
        IPython profile name (``ipcluster start --profile=NAME``).
    profile_dir : str, optional
        Profile directory (``ipcluster start --profile-dir=DIR``), e.g.
        ``profiles/profile_ipem_mpi`` in this repository.
    n_engines : int, optional
        Wait until this many engines have registered.

    Returns
    -------
    DirectViewController
    """
    import ipyparallel as ipp
    kw = {}
    if profile_dir is not None:
        kw["profile_dir"] = os.path.abspath(profile_dir)
    elif profile is not None:
        kw["profile"] = profile
    client = ipp.Client(**kw)
    if n_engines:
        client.wait_for_engines(int(n_engines), timeout=timeout)
    if not client.ids:
        client.close()
        raise RuntimeError("no engines are registered with this cluster")
    return DirectViewController(client[:], reduction=reduction, blas_threads=blas_threads)


def as_controller(controller):
    """Normalise an estimator's ``controller`` argument.

    ``None`` gives a one-shard :class:`LocalController`; an int ``n`` gives a
    :class:`LocalController` with ``n`` shards; an ipyparallel ``DirectView``
    is wrapped in a :class:`DirectViewController`; controllers pass through.
    """
    if controller is None:
        return LocalController(1)
    if isinstance(controller, Controller):
        return controller
    if isinstance(controller, (int, np.integer)) and not isinstance(controller, bool):
        return LocalController(int(controller))
    try:
        import ipyparallel as ipp
    except ImportError:  # pragma: no cover
        ipp = None
    if ipp is not None and isinstance(controller, ipp.DirectView):
        return DirectViewController(controller)
    raise ValueError(f"controller={controller!r}: expected None, an int (local shards), "
                     "a Controller or an ipyparallel DirectView")


@contextlib.contextmanager
def controller_from_spec(spec, blas_threads=None):
    """Yield a controller for ``"local"``, ``"local:N"``, ``"mpi:N"`` or ``"profile:DIR"``.

    ``mpi:N`` starts N MPI engines for the duration of the ``with`` block;
    ``profile:DIR`` connects to engines started with ``ipcluster start
    --profile-dir=DIR --engines=MPI`` (and leaves them running).
    """
    spec = spec or "local"
    kind, _, arg = str(spec).partition(":")
    if kind in ("local", "mpi") and arg and not (arg.isdigit() and int(arg) > 0):
        raise ValueError(f"--cluster {spec!r}: the number of shards/engines must be a "
                         "positive integer")
    if kind == "local":
        yield LocalController(int(arg) if arg else 1)
    elif kind == "mpi":
        with MPICluster(n=int(arg) if arg else 2, blas_threads=blas_threads) as ctrl:
            yield ctrl
    elif kind == "profile":
        if not arg:
            raise ValueError("--cluster profile:DIR needs the profile directory")
        ctrl = connect_profile(profile_dir=arg, blas_threads=blas_threads)
        try:
            yield ctrl
        finally:
            ctrl.client.close()
    else:
        raise ValueError(f"--cluster {spec!r}: expected local, local:N, mpi:N or profile:DIR")
