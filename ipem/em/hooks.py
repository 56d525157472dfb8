"""The contract between a model and the EM driver: which methods a model supplies.

:class:`~ipem.em.driver.EMLoop` runs any object that implements
:class:`EMHooks`; :func:`~ipem.em.staged.run_stages` any that implements
:class:`StagedHooks`.  Both check it when they start (:func:`require_hooks`)
and name what is missing.  The driver calls nothing else of the model::

    stats, shard_times = model.e_step(data, params)        # over the controller
    params, objective, info = model.m_step(stats, params, data)
    done = model.is_converged(record)

``objective`` is the value of the criterion *at the parameters that went into
the E-step* (mean log-likelihood for mixtures, inertia for k-means), exactly
as scikit-learn's ``lower_bound_``.  ``e_step`` returns what
:meth:`ipem.parallel.Controller.reduce_timed` returns, so that the per-shard
times travel with the statistics into the iteration's record.  ``e_step`` may
also do the M-step where the statistics are
(:meth:`ipem.parallel.Controller.reduce_on_places`) and return the new
parameters among its statistics, ``m_step`` then only taking them:
:class:`~ipem.ivector.TotalVariability` does, so its records' ``e_step_time``
includes the engines' M-step and the exchange of the parts.

A model whose shards keep state between iterations (k-means labels) also
implements :class:`RestoresShards`: after a lost engine was replaced, the
driver calls ``restore_shards(data, params)`` with the parameters of the
previous E-step before it repeats the iteration.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["EMHooks", "RestoresShards", "StagedHooks", "require_hooks"]


@runtime_checkable
class EMHooks(Protocol):
    """What :class:`~ipem.em.driver.EMLoop` calls on a model."""

    def e_step(self, data, params) -> tuple[Any, Any]:
        """Statistics of ``data`` at ``params``.

        Parameters
        ----------
        data : DistributedData
        params : dict

        Returns
        -------
        Reduction
            ``(stats, shard_times)``, as :meth:`Controller.reduce_timed`
            returns them; shard_times of shape (n_shards,).
        """

    def m_step(self, stats, params, data) -> tuple[dict, float, dict]:
        """New parameters from the statistics.

        Returns
        -------
        params : dict
        objective : float
            The criterion at the parameters that went into the E-step.
        info : dict
            Model-specific telemetry for the iteration's record.
        """

    def is_converged(self, record) -> bool:
        """Whether EM stops after the iteration of ``record`` (an IterationRecord)."""


@runtime_checkable
class RestoresShards(Protocol):
    """A model whose shards keep per-shard state between iterations."""

    def restore_shards(self, data, params) -> None:
        """Rebuild the shards' state after engines were replaced.

        Parameters
        ----------
        data : DistributedData
        params : dict or None
            The parameters of the previous E-step (None before the first).
        """


@runtime_checkable
class StagedHooks(EMHooks, Protocol):
    """What :func:`~ipem.em.staged.run_stages` calls on a model, besides the EM hooks."""

    def initialize(self, data, rng, given) -> dict:
        """The first stage's parameters (``given``: user-given initial parameters)."""

    def grow(self, params, size) -> dict:
        """The parameters of the next stage, of ``size`` components."""

    def stage_size(self, params) -> int:
        """The size recorded in the records of a stage (the number of components)."""

    def write_checkpoint(self, path, params, position, rng, history, data) -> None:
        """Write the training state (``position``: a :class:`~ipem.em.staged.Position`)."""

    def read_checkpoint(self, path, data) -> tuple:
        """``(params, position, rng, history)`` of a checkpoint written for ``data``."""


def require_hooks(model, hooks):
    """Check that ``model`` implements the protocol ``hooks``.

    Parameters
    ----------
    model : object
    hooks : type
        :class:`EMHooks` or :class:`StagedHooks`.

    Raises
    ------
    TypeError
        Naming the model's class and the methods it lacks.
    """
    missing = [name for name in _methods(hooks) if not callable(getattr(model, name, None))]
    if missing:
        raise TypeError(f"{type(model).__name__} does not implement the "
                        f"{hooks.__name__} of ipem.em.hooks: no {', '.join(missing)}")


def _methods(protocol):
    """The method names a protocol declares (its bases' included), in declaration order."""
    names = []
    for cls in reversed(protocol.__mro__):
        if cls in (object, Protocol) or not getattr(cls, "_is_protocol", False):
            continue
        names += [n for n, v in vars(cls).items() if callable(v) and not n.startswith("_")
                  and n not in names]
    return names
