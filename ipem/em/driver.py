"""The EM driver: the one loop every ipem algorithm runs.

A model supplies the hooks of :class:`~ipem.em.hooks.EMHooks` (checked when
the loop is made) and the driver owns everything else (iteration, timing,
per-shard telemetry, convergence test, history, callbacks)::

    stats, shard_times = model.e_step(data, params)        # over the controller
    params, objective, info = model.m_step(stats, params, data)
    done = model.is_converged(record)

The driver never knows whether the data is local or on engines.

When an engine is lost during an iteration
(:class:`~ipem.parallel.errors.EngineLost`), the driver lets the controller
recover (:meth:`~ipem.parallel.controller.Controller.retry_lost`), calls the
model's ``restore_shards(data, params)`` (models that implement
:class:`~ipem.em.hooks.RestoresShards`) with the parameters of
the previous E-step (per-shard state such as k-means labels), and repeats the
iteration from the parameters of the last completed one; the record's
``info["recovered"]`` lists what happened and an
:class:`~ipem.parallel.errors.EngineRecoveryWarning` is issued.
"""
from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass

import numpy as np

from ..parallel.errors import EngineError, EngineLost, EngineRecoveryWarning
from .hooks import EMHooks, RestoresShards, require_hooks
from .records import IterationRecord

logger = logging.getLogger(__name__)


@dataclass
class EMResult:
    """Outcome of one :meth:`EMLoop.run`.

    Attributes
    ----------
    params : dict
        Parameters after the last M-step.
    converged : bool
    n_iter : int
        Iterations of this run.
    objective : float
        Objective of the last E-step.
    history : list of IterationRecord
        The records of this run.
    """

    params: dict
    converged: bool
    n_iter: int
    objective: float
    history: list


def _check_finite(params, objective, iteration):
    """Stop EM the first time its objective or parameters are not finite."""
    bad = [k for k, v in params.items()
           if isinstance(v, np.ndarray) and v.dtype.kind == "f" and not np.isfinite(v).all()]
    if np.isfinite(objective) and not bad:
        return
    what = f"the objective is {objective}" if not np.isfinite(objective) else \
        f"the parameters {bad} are not finite"
    raise FloatingPointError(
        f"EM iteration {iteration}: {what}; EM stopped (the data may hold values too large "
        "for its dtype, or the initial model was not finite)")


class EMLoop:
    """Runs E- and M-steps of one model on one dataset, and keeps the history.

    Parameters
    ----------
    model : EMHooks
        Supplies ``e_step(data, params)``, ``m_step(stats, params, data)``
        and ``is_converged(record)`` (:class:`~ipem.em.hooks.EMHooks`).
    data : DistributedData
    callbacks : sequence of callables
        Each is called as ``cb(record)`` after every iteration.
    on_iteration : callable, optional
        ``on_iteration(params, record, converged)`` after every iteration,
        before the callbacks (checkpoints: a failing plot never loses one).
    history : list of IterationRecord, optional
        Records of earlier runs (stages, or a resumed training); iteration
        numbers continue from its length and new records are appended to it.
    start_time : float, optional
        ``time.perf_counter()`` of the start of the whole fit.
    resume_hint : str, optional
        Appended to the error raised when a lost engine cannot be recovered
        (staged training names its checkpoint).

    Raises
    ------
    TypeError
        When ``model`` does not implement :class:`~ipem.em.hooks.EMHooks`.
    """

    def __init__(self, model, data, *, callbacks=(), on_iteration=None, history=None,
                 start_time=None, resume_hint=None):
        require_hooks(model, EMHooks)
        self.model = model
        self.data = data
        self.callbacks = list(callbacks)
        self.on_iteration = on_iteration
        self.history = [] if history is None else history
        self.start_time = time.perf_counter() if start_time is None else start_time
        self.resume_hint = resume_hint

    def _iterate(self, params, previous_params, iteration):
        """One E- and M-step, repeated after a recovery when an engine is lost.

        Returns ``(e_step_time, shard_time, params, objective, info, recovered)``.
        """
        model, data = self.model, self.data
        recovered = []

        def step():
            t0 = time.perf_counter()
            stats, shard_time = model.e_step(data, params)
            t1 = time.perf_counter()
            return t1 - t0, list(map(float, shard_time)), *model.m_step(stats, params, data)

        restore = None
        if isinstance(model, RestoresShards):
            def restore():
                model.restore_shards(data, previous_params)
        try:
            out = data.controller.retry_lost(step, on_recover=recovered.append, restore=restore)
        except EngineError as exc:
            if not isinstance(exc.__cause__, EngineLost):
                raise
            hint = f"; {self.resume_hint}" if self.resume_hint else ""
            raise EngineError(f"{exc} (EM iteration {iteration}){hint}",
                              exc.failures) from exc.__cause__
        _check_finite(out[2], out[3], iteration)
        for event in recovered:
            msg = (f"EM iteration {iteration}: engine(s) {event['engines']} lost "
                   f"({event['reason']}); engines {event['action']} in {event['seconds']:.1f} s, "
                   "data stored again, iteration repeated from the last completed one")
            logger.warning(msg)
            warnings.warn(msg, EngineRecoveryWarning, stacklevel=4)
        return (*out, recovered)

    def run(self, params, max_iter, previous=None, stage=None, stage_label=None):
        """Iterate until convergence or ``max_iter`` iterations.

        Parameters
        ----------
        params : dict
            Initial parameters.
        max_iter : int
            0: no iteration; the result holds ``params`` with objective -inf
            and ``n_iter`` 0 (scikit-learn's ``max_iter=0``).
        previous : float, optional
            Objective of the iteration before ``params`` (when resuming), so
            the first convergence test is the same as in an uninterrupted run.
        stage : int, optional
            Recorded in every record (the number of components in staged fits).
        stage_label : str, optional
            Recorded in every record: what ``stage`` counts (``"K"``, ``"R"``).

        Returns
        -------
        EMResult
        """
        model, data = self.model, self.data
        records = []
        objective, converged, n_iter = -np.inf, False, 0
        previous_params = None
        for n_iter in range(1, max_iter + 1):
            t0 = time.perf_counter()
            e_time, shard_time, new_params, objective, info, recovered = self._iterate(
                params, previous_params, len(self.history) + 1)
            previous_params, params = params, new_params
            t2 = time.perf_counter()
            places = getattr(data, "place_sizes", data.shard_sizes)  # rows per engine
            info = {**info, "shard_frames": places.tolist(), "shard_time": shard_time}
            if recovered:
                info["recovered"] = recovered
            change = np.inf if previous is None else objective - previous
            record = IterationRecord(iteration=len(self.history) + 1,
                                     objective=float(objective), change=float(change),
                                     time=t2 - t0, elapsed=t2 - self.start_time,
                                     e_step_time=e_time, stage=stage, info=info,
                                     stage_label=stage_label)
            self.history.append(record)
            records.append(record)
            converged = bool(model.is_converged(record))
            if self.on_iteration is not None:
                self.on_iteration(params, record, converged)
            for cb in self.callbacks:
                cb(record)
            if converged:
                break
            previous = objective
        return EMResult(params=params, converged=converged, n_iter=n_iter,
                        objective=float(objective), history=records)
