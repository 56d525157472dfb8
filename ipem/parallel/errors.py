"""Errors raised on shards (engines or the local store) and how they reach the client.

A shard function that raises is never allowed to take the controller down with
it: the engine-side wrapper (:mod:`ipem.parallel.engine`) catches the exception,
classifies it with ``isinstance`` and returns a :class:`Failure`.  The controller
then raises one :class:`EngineError` for all failed shards of a call.  Both
controllers run the same wrapper, so the same bad input gives the same error
type and message locally and on MPI engines.
"""
from __future__ import annotations

import signal
from dataclasses import dataclass

from ..errors import ParameterError


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


class EngineParameterError(EngineValueError, ParameterError):
    """Shards rejected the value of a parameter (each with a :class:`ParameterError`).

    The message joins the shards' messages; :meth:`render` shows it with other
    names for the parameters, as :meth:`ParameterError.render` does.
    """

    def __init__(self, template, parameter, *, hint="", failures=()):
        ParameterError.__init__(self, template, parameter, hint=hint)
        self.failures = list(failures)

    def __reduce__(self):
        return (EngineParameterError, (self.template, self.parameters),
                {"hint": self.hint, "failures": self.failures})

    def __setstate__(self, state):
        self.__init__(self.template, self.parameters, **state)


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

    Raised by the handler (:func:`raise_terminated`) that
    :class:`~ipem.parallel.mpi.MPICluster` and the CLI install, so that
    ``with`` blocks and ``finally`` clauses run and the engines are stopped.
    A ``KeyboardInterrupt``, so ``except Exception`` does not swallow it.
    """

    def __init__(self, signum):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = int(signum)


def raise_terminated(signum, frame):
    """Signal handler: raise :class:`~ipem.parallel.errors.Terminated`, once.

    A second signal while the first is being handled (clean-up running) is
    ignored, so that the clean-up finishes.
    """
    signal.signal(signum, signal.SIG_IGN)
    raise Terminated(signum)


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
    parameter : tuple or None
        ``(template, parameters, hint)`` of a :class:`~ipem.errors.ParameterError`.
    """

    index: int
    type_name: str
    message: str
    is_value: bool = False
    is_peer: bool = False
    parameter: tuple = None

    @classmethod
    def from_exception(cls, index, exc):
        """The Failure of ``exc`` raised on shard (or task) ``index``.

        Parameters
        ----------
        index : int
        exc : BaseException

        Returns
        -------
        Failure
        """
        param = (exc.template, exc.parameters, exc.hint) \
            if isinstance(exc, ParameterError) else None
        # a ParameterError is the ValueError it always was, in messages too
        name = "ValueError" if type(exc) is ParameterError else type(exc).__name__
        return cls(index=index, type_name=name, message=str(exc),
                   is_value=isinstance(exc, VALUE_ERRORS), is_peer=isinstance(exc, PeerFailed),
                   parameter=param)


def raise_failures(failures, where, cause=None, *, of=None):
    """Raise one :class:`EngineError` (or :class:`EngineValueError`) for ``failures``.

    Parameters
    ----------
    failures : list of Failure
    where : callable
        ``where(index)`` names the place of a failure ("shard 1 (engine 3)").
    cause : BaseException, optional
        The original exception, when it is at hand (in-process shards).
    of : int, optional
        The number of tasks run (for :meth:`Controller.map_tasks`): when more
        than one failed, the message is one line, ``"N of M tasks failed;
        first: <place>: <cause>"``, instead of every task's message (the
        error's ``failures`` still hold them all).
    """
    real = [f for f in failures if not f.is_peer] or list(failures)
    shown, head = real, ""
    if of is not None and len(real) > 1:
        shown, head = real[:1], f"{len(real)} of {of} tasks failed; first: "
    if all(f.parameter is not None for f in real) and \
            len({f.parameter[2] for f in real}) == 1:
        error = _parameter_error(shown, where)
        if head:
            error = EngineParameterError(head + error.template, error.parameters,
                                         hint=error.hint, failures=real)
        else:
            error.failures = list(real)
        raise error from cause
    message = head + "; ".join(f"{where(f.index)}: {f.type_name}: {f.message}" for f in shown)
    cls = EngineValueError if all(f.is_value for f in real) else EngineError
    raise cls(message, real) from cause


def _parameter_error(failures, where):
    """One :class:`EngineParameterError` for failures that all carry a ParameterError
    with the same hint: their messages joined as :func:`raise_failures` joins them."""
    parts, parameters = [], []
    for f in failures:
        template, params, hint = f.parameter
        template = template.replace("{name}", f"{{name:{params[0]}}}")
        if hint and "{hint}" not in template:
            template += "{hint}"
        parts.append(f"{where(f.index)}: {f.type_name}: {template}")
        parameters += [p for p in params if p not in parameters]
    template = "; ".join(parts)
    hint = failures[0].parameter[2]
    if not hint:
        template = template.replace("{hint}", "")
    return EngineParameterError(template, tuple(parameters), hint=hint, failures=failures)
