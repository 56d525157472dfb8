"""Getting a controller: the registry of ``--cluster`` kinds, and ``controller=`` arguments.

``controller_from_spec`` understands the strings the CLI takes
(``"local"``, ``"local:N"``, ``"mpi:N"``, ``"profile:DIR"``): each kind is a
:class:`~ipem.parallel.launchers.Launcher` declared by its own module
(:mod:`~ipem.parallel.local`, :mod:`~ipem.parallel.mpi`,
:mod:`~ipem.parallel.profile`) and listed once in :data:`LAUNCHERS`.
:func:`as_controller` normalizes an estimator's ``controller`` argument.

:class:`~ipem.parallel.mpi.MPICluster`, :func:`~ipem.parallel.profile.connect_profile`,
:func:`~ipem.parallel.mpi.ensure_mpiexec`, :func:`~ipem.parallel.mpi.single_host_mpi_config`
and :func:`~ipem.parallel.errors.raise_terminated` are importable from here too.
"""
from __future__ import annotations

import contextlib

import numpy as np

from . import local, mpi, profile, slurm
from .controller import Controller
from .directview import DirectViewController
from .errors import raise_terminated
from .local import LocalController
from .mpi import MPICluster, ensure_mpiexec, single_host_mpi_config
from .profile import connect_profile

__all__ = ["LAUNCHERS", "MPICluster", "as_controller", "connect_profile", "controller_from_spec",
           "ensure_mpiexec", "parse_cluster_spec", "raise_terminated", "single_host_mpi_config"]

#: the ``--cluster`` kinds, one line each: ``kind -> Launcher``
LAUNCHERS = {launcher.kind: launcher for launcher in (
    local.LAUNCHER,
    mpi.LAUNCHER,
    slurm.LAUNCHER,
    profile.LAUNCHER,
)}


def as_controller(controller):
    """Normalize an estimator's ``controller`` argument.

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


def parse_cluster_spec(spec):
    """Check a ``--cluster`` value: ``(kind, argument)``.

    Parameters
    ----------
    spec : str or None
        ``KIND`` or ``KIND:ARGUMENT`` of a kind in :data:`LAUNCHERS`; None or
        ``""`` mean ``"local"``.

    Returns
    -------
    kind : str
        ``"local"``, ``"mpi"``, ``"profile"`` or another registered kind.
    argument : int or str
        Number of shards/engines, or the profile directory.

    Raises
    ------
    ValueError
        Naming the value and what is expected.
    """
    spec = spec or "local"
    kind, _, arg = str(spec).partition(":")
    launcher = LAUNCHERS.get(kind)
    if launcher is None:
        forms = [form for entry in LAUNCHERS.values() for form in entry.forms]
        raise ValueError(f"--cluster {spec!r}: expected {', '.join(forms[:-1])} or {forms[-1]}")
    return kind, launcher.parse(spec, arg)


@contextlib.contextmanager
def controller_from_spec(spec, blas_threads=None):
    """Yield a controller for ``"local"``, ``"local:N"``, ``"mpi:N"`` or ``"profile:DIR"``.

    ``mpi:N`` starts N MPI engines for the duration of the ``with`` block;
    ``profile:DIR`` connects to engines started with ``ipcluster start
    --profile-dir=DIR --engines=MPI`` (and leaves them running).  ``blas_threads``
    applies to engines and to ``local:N`` alike, so that both give the same
    float32 results.

    Parameters
    ----------
    spec : str or None
        See :func:`parse_cluster_spec`.
    blas_threads : int or None

    Yields
    ------
    Controller
    """
    kind, arg = parse_cluster_spec(spec)
    with LAUNCHERS[kind].open(arg, blas_threads) as ctrl:
        yield ctrl
