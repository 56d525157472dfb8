"""Errors raised on shards (engines or the local store) and how they reach the client.

A shard function that raises is never allowed to take the controller down with
it: the engine-side wrapper (:mod:`ipem.parallel.engine`) catches the exception,
classifies it with ``isinstance`` and returns a :class:`Failure`.  The controller
then raises one :class:`EngineError` for all failed shards of a call.  Both
controllers run the same wrapper, so the same bad input gives the same error
type and message locally and on MPI engines.
"""
from __future__ import annotations

from dataclasses import dataclass


class EngineError(RuntimeError):
    """An exception raised on one or more shards, with their messages.

    Attributes
    ----------
    failures : list of Failure
        One entry per failed shard or task, in shard (task) order.
    """

    def __init__(self, message, failures=()):
        super().__init__(message)
        self.failures = list(failures)


class EngineValueError(EngineError, ValueError):
    """Shards rejected their input (a malformed feature file, bad values...)."""


class EngineLost(EngineError):
    """An engine died, or did not answer within its deadline.

    Raised by a controller's calls; an EM fit catches it, asks the controller
    to :meth:`~ipem.parallel.controller.Controller.recover`, and repeats the
    iteration that was lost.

    Attributes
    ----------
    engines : list of int
        Engine ids that were lost (empty when it is not known which).
    reason : {"died", "deadline"}
    """

    def __init__(self, message, engines=(), reason="died"):
        super().__init__(message)
        self.engines = sorted(set(int(e) for e in engines))
        self.reason = reason


class EngineRecoveryWarning(UserWarning):
    """An engine was lost and the computation was recovered (restarted or re-sharded)."""


class Terminated(KeyboardInterrupt):
    """The process was asked to stop (SIGTERM from a batch system at its time limit).

    Raised by the handler that :class:`~ipem.parallel.clusters.MPICluster` and
    the CLI install, so that ``with`` blocks and ``finally`` clauses run and the
    engines are stopped.  A ``KeyboardInterrupt``, so ``except Exception`` does
    not swallow it.
    """

    def __init__(self, signum):
        import signal
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = int(signum)


class PeerFailed(RuntimeError):
    """Raised on an engine whose MPI peers failed during the same collective call."""


#: exception classes that mean "the input was bad" rather than "something broke"
VALUE_ERRORS = (ValueError, IndexError, KeyError)


@dataclass
class Failure:
    """What went wrong on one shard or task.

    Attributes
    ----------
    index : int
        Shard index (or task index) where it happened.
    type_name : str
        Class name of the exception.
    message : str
    is_value : bool
        The exception is bad input (``isinstance`` of :data:`VALUE_ERRORS`).
    is_peer : bool
        The shard only failed because another shard failed first.
    """

    index: int
    type_name: str
    message: str
    is_value: bool = False
    is_peer: bool = False

    @classmethod
    def from_exception(cls, index, exc):
        return cls(index=index, type_name=type(exc).__name__, message=str(exc),
                   is_value=isinstance(exc, VALUE_ERRORS), is_peer=isinstance(exc, PeerFailed))


def raise_failures(failures, where, cause=None):
    """Raise one :class:`EngineError` (or :class:`EngineValueError`) for ``failures``.

    Parameters
    ----------
    failures : list of Failure
    where : callable
        ``where(index)`` names the place of a failure ("shard 1 (engine 3)").
    cause : BaseException, optional
        The original exception, when it is at hand (in-process shards).
    """
    real = [f for f in failures if not f.is_peer] or list(failures)
    message = "; ".join(f"{where(f.index)}: {f.type_name}: {f.message}" for f in real)
    cls = EngineValueError if all(f.is_value for f in real) else EngineError
    raise cls(message, real) from cause
