"""Where a step's tasks run: the one place a step starts (and stops) its cluster."""
from __future__ import annotations

import contextlib

from ..parallel import controller_from_spec

__all__ = ["running"]


@contextlib.contextmanager
def running(controller):
    """The controller of a step's tasks, entered once the step's checks have passed.

    Parameters
    ----------
    controller : Controller, int, DirectView, str or None
        A cluster spec string (``"local:4"``, ``"mpi:4"``, ``"profile:DIR"``,
        as ``ipem --cluster`` takes) is started here and stopped when the
        step ends; engines and local shards then run with one BLAS thread
        each, so that all give the same float32 results.  Anything else is
        yielded as it is (``None``: in-process).

    Yields
    ------
    Controller or the object given
    """
    if not isinstance(controller, str):
        yield controller
        return
    with controller_from_spec(controller,
                              blas_threads=None if controller == "local" else 1) as ctrl:
        yield ctrl
