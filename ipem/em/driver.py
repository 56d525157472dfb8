"""The EM driver: the one loop every ipem algorithm runs.

A model supplies the hooks and the driver owns everything else (iteration,
timing, per-shard telemetry, convergence test, history, callbacks)::

    stats = model._e_step(data, params)                      # over the controller
    params, objective, info = model._m_step(stats, params, data)
    done = model._converged(record)

``objective`` is the value of the criterion *at the parameters that went into
the E-step* (mean log-likelihood for mixtures, inertia for k-means), exactly
as scikit-learn's ``lower_bound_``.  The driver never knows whether the data
is local or on engines.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class IterationRecord:
    """What one EM iteration did; passed to callbacks and kept in ``history_``.

    Attributes
    ----------
    iteration : int
        1-based iteration number (counted across stages for staged training).
    objective : float
        Criterion evaluated in this iteration's E-step.
    change : float
        ``objective`` minus the previous iteration's (``inf`` at the first).
    time : float
        Wall-clock seconds of this iteration.
    elapsed : float
        Wall-clock seconds since the start of the fit.
    e_step_time : float
        Seconds spent in the E-step call (engines plus transfers).
    stage : int or None
        Number of components during this iteration (staged training).
    info : dict
        Model-specific telemetry (floored variances, dead components, ...) and
        the controller's per-shard ``shard_frames`` and E-step ``shard_time``.
    """

    iteration: int
    objective: float
    change: float
    time: float
    elapsed: float
    e_step_time: float = 0.0
    stage: int | None = None
    info: dict = field(default_factory=dict)

    def as_dict(self):
        return asdict(self)


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


class EMLoop:
    """Runs E- and M-steps of one model on one dataset, and keeps the history.

    Parameters
    ----------
    model : object
        Supplies ``_e_step(data, params)``, ``_m_step(stats, params, data)``
        and ``_converged(record)``.
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
    """

    def __init__(self, model, data, *, callbacks=(), on_iteration=None, history=None,
                 start_time=None):
        self.model = model
        self.data = data
        self.callbacks = list(callbacks)
        self.on_iteration = on_iteration
        self.history = [] if history is None else history
        self.start_time = time.perf_counter() if start_time is None else start_time

    def run(self, params, max_iter, previous=None, stage=None):
        """Iterate until convergence or ``max_iter`` iterations.

        Parameters
        ----------
        params : dict
            Initial parameters.
        max_iter : int
        previous : float, optional
            Objective of the iteration before ``params`` (when resuming), so
            the first convergence test is the same as in an uninterrupted run.
        stage : int, optional
            Recorded in every record (the number of components in staged fits).

        Returns
        -------
        EMResult
        """
        model, data = self.model, self.data
        records = []
        objective, converged, n_iter = -np.inf, False, 0
        for n_iter in range(1, max_iter + 1):
            t0 = time.perf_counter()
            stats = model._e_step(data, params)
            t1 = time.perf_counter()
            shard_time = data.controller.last_shard_times.tolist()
            params, objective, info = model._m_step(stats, params, data)
            t2 = time.perf_counter()
            info = {**info, "shard_frames": data.shard_sizes.tolist(), "shard_time": shard_time}
            change = np.inf if previous is None else objective - previous
            record = IterationRecord(iteration=len(self.history) + 1,
                                     objective=float(objective), change=float(change),
                                     time=t2 - t0, elapsed=t2 - self.start_time,
                                     e_step_time=t1 - t0, stage=stage, info=info)
            self.history.append(record)
            records.append(record)
            converged = bool(model._converged(record))
            if self.on_iteration is not None:
                self.on_iteration(params, record, converged)
            for cb in self.callbacks:
                cb(record)
            if converged:
                break
            previous = objective
        return EMResult(params=params, converged=converged, n_iter=n_iter,
                        objective=float(objective), history=records)
