"""The EM driver: the one loop every ipem algorithm runs.

A model supplies three hooks and the driver owns everything else
(iteration, timing, convergence test, history, callbacks)::

    stats = model._em_e_step(data, params)                 # over the controller
    params, objective, info = model._em_m_step(stats, params, data)
    done = model._em_converged(record, tol)                # optional hook

``objective`` is the value of the criterion *at the parameters that went into
the E-step* (mean log-likelihood for mixtures, inertia for k-means), exactly
as scikit-learn's ``lower_bound_``.  The driver never knows whether the data
is local or on engines.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, asdict

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
        Model-specific telemetry (floored variances, dead components,
        per-engine times, ...).
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
    params: dict
    converged: bool
    n_iter: int
    objective: float
    history: list


def run_em(model, data, params, *, max_iter, tol, callbacks=(), stage=None,
           start_iteration=0, start_time=None, after_iteration=None, previous_objective=None):
    """Iterate E- and M-steps until convergence or ``max_iter`` iterations.

    Parameters
    ----------
    model : object with ``_em_e_step`` and ``_em_m_step`` (and optionally
        ``_em_converged``)
    data : DistributedData
    params : dict
        Initial parameters.
    max_iter : int
    tol : float
        Convergence threshold on ``abs(change)`` (the default test).
    callbacks : sequence of callables
        Each is called as ``cb(record)`` after every iteration.
    stage : int, optional
        Recorded in every record (the number of components in staged fits).
    start_iteration : int
        Iteration numbers continue from this value.
    start_time : float, optional
        ``time.perf_counter()`` of the start of the whole fit.
    after_iteration : callable, optional
        ``after_iteration(params, record, converged)`` after callbacks
        (checkpoints).
    previous_objective : float, optional
        Objective of the iteration before ``params`` (when resuming), so the
        first convergence test is the same as in an uninterrupted run.

    Returns
    -------
    EMResult
    """
    converged_fn = getattr(model, "_em_converged", None)
    t_fit = time.perf_counter() if start_time is None else start_time
    history = []
    previous = previous_objective
    objective = -np.inf
    n_iter = 0
    converged = False
    for n_iter in range(1, max_iter + 1):
        t0 = time.perf_counter()
        stats = model._em_e_step(data, params)
        t1 = time.perf_counter()
        params, objective, info = model._em_m_step(stats, params, data)
        t2 = time.perf_counter()
        change = np.inf if previous is None else objective - previous
        record = IterationRecord(iteration=start_iteration + n_iter, objective=float(objective),
                                 change=float(change), time=t2 - t0, elapsed=t2 - t_fit,
                                 e_step_time=t1 - t0, stage=stage, info=info)
        history.append(record)
        if converged_fn is not None:
            converged = bool(converged_fn(record, tol))
        else:
            converged = bool(abs(change) < tol)
        for cb in callbacks:
            cb(record)
        if after_iteration is not None:
            after_iteration(params, record, converged)
        if converged:
            break
        previous = objective
    return EMResult(params=params, converged=converged, n_iter=n_iter,
                    objective=float(objective), history=history)
