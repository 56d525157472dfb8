"""Engines someone else started: ``ipcluster start --engines=MPI`` (``--cluster profile:DIR``)."""
from __future__ import annotations

import contextlib
import glob
import json
import os
import time

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
        Wait until this many engines have registered.  Default: the number
        ``ipcluster start -n N`` asked for, read from the profile's cluster
        files (``security/cluster-*.json``), when there are any.
    timeout : float, default=120
        Seconds to wait for the connection and for the engines.  Fewer engines
        than expected at the deadline is an :class:`EngineError` (ipem does
        not run on fewer than asked).
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
    where = profile_dir or profile or "the default profile"
    try:
        expected = int(n_engines) if n_engines else _requested_engines(kw.get("profile_dir"),
                                                                       profile)
        if expected:
            _wait_for(client, expected, timeout, where)
        if not client.ids:
            raise EngineError(f"no engines are registered with the cluster of {where}")
    except BaseException:
        client.close()
        raise
    return DirectViewController(client[:], reduction=reduction, blas_threads=blas_threads,
                                **controller_kwargs)


def _requested_engines(profile_dir, profile):
    """Engines that ``ipcluster start`` asked for in a profile (0 if unknown)."""
    if profile_dir is None:
        try:
            from IPython.paths import locate_profile
            profile_dir = locate_profile(profile or "default")
        except OSError:
            return 0
    total = 0
    for path in glob.glob(os.path.join(profile_dir, "security", "cluster-*.json")):
        try:
            with open(path) as f:
                sets = json.load(f).get("engines", {}).get("sets", {})
            total += sum(int(s.get("n", 0)) for s in sets.values())
        except (OSError, ValueError, AttributeError):
            continue
    return total


def _wait_for(client, expected, timeout, where):
    """Wait until ``expected`` engines are registered; one-line EngineError at the deadline."""
    deadline = time.monotonic() + timeout
    while len(client.ids) < expected:
        if time.monotonic() > deadline:
            raise EngineError(f"{len(client.ids)} of {expected} engines registered with the "
                              f"cluster of {where} after {timeout:.0f} s (a batch job still "
                              "pending, or engines that died): not running on fewer than asked")
        time.sleep(0.2)


def _parse(spec, argument):
    if not argument:
        raise ValueError("--cluster profile:DIR needs the profile directory")
    return argument


@contextlib.contextmanager
def _open(profile_dir, blas_threads):
    if not os.path.isdir(profile_dir):
        raise ValueError(f"--cluster profile:{profile_dir}: no such profile directory")
    ctrl = connect_profile(profile_dir=profile_dir, blas_threads=blas_threads,
                           timeout=float(os.environ.get("IPEM_PROFILE_TIMEOUT", 120)))
    try:
        yield ctrl
    finally:
        ctrl.client.close()


#: ``profile:DIR``: connect to the engines of a running profile (and leave them running)
LAUNCHER = Launcher("profile", ("profile:DIR",), _parse, _open)
