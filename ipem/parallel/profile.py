"""Engines someone else started: ``ipcluster start --engines=MPI`` (``--cluster profile:DIR``)."""
from __future__ import annotations

import contextlib
import os

from .directview import DirectViewController
from .errors import EngineError
from .launchers import Launcher

__all__ = ["LAUNCHER", "connect_profile"]


def connect_profile(profile=None, *, profile_dir=None, reduction="client",
                    blas_threads=None, n_engines=None, timeout=120, **controller_kwargs):
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
    **controller_kwargs
        More arguments of :class:`~ipem.parallel.directview.DirectViewController`
        (``deadline``, ``min_deadline``, ...).  Engines that ipem did not start
        cannot be restarted by it: a lost engine's shards move to the others
        when they are not MPI-coupled; otherwise the error says what to do.

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
    try:
        client = ipp.Client(timeout=timeout, **kw)
    except (OSError, TimeoutError) as exc:
        where = profile_dir or profile or "the default profile"
        raise EngineError(f"cannot connect to the cluster of {where}: {exc} (is "
                          "'ipcluster start' running?)") from exc
    try:
        if n_engines:
            client.wait_for_engines(int(n_engines), timeout=timeout)
        if not client.ids:
            raise EngineError(f"no engines are registered with the cluster of "
                              f"{profile_dir or profile or 'the default profile'}")
    except BaseException:
        client.close()
        raise
    return DirectViewController(client[:], reduction=reduction, blas_threads=blas_threads,
                                **controller_kwargs)


def _parse(spec, argument):
    if not argument:
        raise ValueError("--cluster profile:DIR needs the profile directory")
    return argument


@contextlib.contextmanager
def _open(profile_dir, blas_threads):
    if not os.path.isdir(profile_dir):
        raise ValueError(f"--cluster profile:{profile_dir}: no such profile directory")
    ctrl = connect_profile(profile_dir=profile_dir, blas_threads=blas_threads, timeout=30)
    try:
        yield ctrl
    finally:
        ctrl.client.close()


#: ``profile:DIR``: connect to the engines of a running profile (and leave them running)
LAUNCHER = Launcher("profile", ("profile:DIR",), _parse, _open)
