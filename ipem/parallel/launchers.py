"""What a launcher is: how a ``--cluster`` spec of one kind becomes a controller.

A launcher kind (``local``, ``mpi``, ``profile``) lives in a module of its own
that declares one :class:`Launcher`; the registry of kinds is
:data:`ipem.parallel.clusters.LAUNCHERS` (one line per kind).  Adding a kind
is one module and one line there; :func:`~ipem.parallel.clusters.parse_cluster_spec`
and :func:`~ipem.parallel.clusters.controller_from_spec` then understand it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ContextManager

__all__ = ["Launcher", "count_argument"]


@dataclass(frozen=True)
class Launcher:
    """One kind of ``--cluster`` spec (``KIND`` or ``KIND:ARGUMENT``).

    Attributes
    ----------
    kind : str
        The spec's prefix, e.g. ``"mpi"``.
    forms : tuple of str
        The spellings the error message lists, e.g. ``("mpi:N",)``.
    parse : callable
        ``parse(spec, argument) -> value``: the checked argument (``argument``
        is the text after ``:``, ``""`` if none); raises ValueError naming
        ``spec``.
    open : callable
        ``open(value, blas_threads)``: a context manager that yields a
        controller and releases what it started when the ``with`` block ends.
    """

    kind: str
    forms: tuple
    parse: Callable[[str, str], object]
    open: Callable[[object, object], ContextManager]


def count_argument(default):
    """A ``parse`` for ``KIND[:N]`` specs: N a positive integer, ``default`` when absent.

    Parameters
    ----------
    default : int

    Returns
    -------
    callable
        ``parse(spec, argument) -> int``.
    """
    def parse(spec, argument):
        if argument and not (argument.isdigit() and int(argument) > 0):
            raise ValueError(f"--cluster {spec!r}: the number of shards/engines must be a "
                             "positive integer")
        return int(argument) if argument else default
    return parse
