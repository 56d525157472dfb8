"""Staged, resumable EM: a runner on top of :class:`~ipem.em.driver.EMLoop`.

Training a UBM runs EM at a sequence of model sizes (1 -> 2 -> 4 ... -> K),
growing the model between stages, and must survive a job killed at its time
limit.  :func:`run_stages` does that for any model that implements
:class:`~ipem.em.hooks.StagedHooks` (the EM hooks and):

``initialize(data, rng, given) -> params``
    the first stage's model;
``grow(params, size) -> params``
    the model of the next stage;
``stage_size(params) -> int``
    the size recorded in the records (and an optional ``stage_label``
    attribute, what that size counts: ``"K"`` when absent, ``"R"`` for a rank);
``write_checkpoint(path, params, position, rng, history, data)`` and
``read_checkpoint(path, data) -> (params, position, rng, history)``
    the checkpoint format (:mod:`ipem.io.models` for the UBM).

A checkpoint is written after every ``every``-th iteration and at the end of
every stage, before the callbacks run; resuming continues at the same
iteration with the same random state, so a resumed training gives the same
model as an uninterrupted one.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

from .base import initialize_recovering
from .driver import EMLoop, EMResult
from .hooks import StagedHooks, require_hooks


@dataclass
class Position:
    """Where a staged training is.

    Attributes
    ----------
    stage_index : int
        Index into the stage list.
    iter_in_stage : int
        Iterations done in that stage.
    stage_done : bool
        The stage ended (converged or out of iterations).
    converged : bool
        Whether the last iteration met the convergence test.
    """

    stage_index: int = 0
    iter_in_stage: int = 0
    stage_done: bool = False
    converged: bool = False


def run_stages(model, data, rng, stages, *, callbacks=(), checkpoint=None, resume=True,
               every=1):
    """Run EM at each stage size, growing the model in between.

    Parameters
    ----------
    model : StagedHooks
        See the module docstring.
    data : DistributedData
    rng : numpy.random.RandomState
    stages : list of (int, int)
        ``(size, max_iter)`` of every stage.
    callbacks : sequence of callables
    checkpoint : str or None
        Checkpoint path; resumed from when it exists and ``resume`` is true.
    resume : bool
    every : int
        Write a checkpoint every ``every`` iterations (and at stage ends).

    Returns
    -------
    result : EMResult
        ``history`` holds every record of every stage (resumed ones included).
    resumed_from : int
        Number of records that came from the checkpoint.

    Raises
    ------
    TypeError
        When ``model`` does not implement :class:`~ipem.em.hooks.StagedHooks`.
    """
    require_hooks(model, StagedHooks)
    if checkpoint and resume and os.path.exists(checkpoint):
        params, pos, rng, history = model.read_checkpoint(checkpoint, data)
    else:
        params, pos, history = initialize_recovering(model, data, rng, {}), Position(), []
    resumed_from = len(history)
    if pos.stage_done:
        pos = Position(pos.stage_index + 1, 0, False, pos.converged)
        if pos.stage_index < len(stages):
            params = model.grow(params, stages[pos.stage_index][0])

    def on_iteration(new_params, record, converged):
        pos.iter_in_stage += 1
        pos.converged = converged
        pos.stage_done = converged or pos.iter_in_stage >= stages[pos.stage_index][1]
        if checkpoint and (pos.stage_done or pos.iter_in_stage % every == 0):
            model.write_checkpoint(checkpoint, new_params, pos, rng, history, data)

    hint = (f"the checkpoint {checkpoint} holds the last completed iteration: run the same "
            "training again (resume is on by default) to continue from it" if checkpoint
            else "set a checkpoint to be able to resume a long training")
    loop = EMLoop(model, data, callbacks=callbacks, on_iteration=on_iteration, history=history,
                  start_time=time.perf_counter(), resume_hint=hint)
    while pos.stage_index < len(stages):
        budget = stages[pos.stage_index][1] - pos.iter_in_stage
        if budget > 0:
            previous = history[-1].objective if (pos.iter_in_stage and history) else None
            result = loop.run(params, budget, previous=previous, stage=model.stage_size(params),
                              stage_label=getattr(model, "stage_label", "K"))
            params = result.params
        pos = Position(pos.stage_index + 1, 0, False, pos.converged)
        if pos.stage_index < len(stages):
            params = model.grow(params, stages[pos.stage_index][0])
    objective = history[-1].objective if history else float("-inf")
    return EMResult(params=params, converged=pos.converged, n_iter=len(history),
                    objective=objective, history=history), resumed_from
