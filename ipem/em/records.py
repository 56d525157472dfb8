"""The record of one EM iteration, and an EM history as JSON.

:class:`IterationRecord` is what :class:`~ipem.em.driver.EMLoop` makes after
every iteration (callbacks receive it; estimators keep the list as
``history_``).  :func:`records_to_json` / :func:`records_from_json` write and
read a history (model files and checkpoints hold one, see
:mod:`ipem.io.models`).  This module imports nothing of ipem, so every layer
may use it.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

__all__ = ["IterationRecord", "records_from_json", "records_to_json"]


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
        Seconds spent in the E-step call (engines plus transfers).  An
        estimator's ``e_step`` may include an M-step done where the statistics
        are: :class:`~ipem.ivector.TotalVariability`'s does (its e_step_time
        includes the engines' M-step and the exchange of the parts, whose
        seconds ``info`` holds as ``m_step_time`` and ``exchange_time``).
    stage : int or None
        Number of components during this iteration (staged training); the
        rank of ``T`` for a total-variability matrix.
    info : dict
        Model-specific telemetry (floored variances, dead components, ...) and
        the controller's per-shard ``shard_frames`` and E-step ``shard_time``.
    stage_label : str or None
        What ``stage`` counts, as a plot labels it: ``"K"`` (components) or
        ``"R"`` (rank of a total-variability matrix); None reads as ``"K"``.
    """

    iteration: int
    objective: float
    change: float
    time: float
    elapsed: float
    e_step_time: float = 0.0
    stage: int | None = None
    info: dict = field(default_factory=dict)
    stage_label: str | None = None

    def as_dict(self):
        """The record as a plain dict (what :func:`records_to_json` writes).

        Returns
        -------
        dict
        """
        return asdict(self)



def _json_safe(v):
    """JSON-safe copy of ``v``: non-finite floats as strings, NumPy scalars as Python."""
    if isinstance(v, float) and not np.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def records_to_json(records: Sequence[IterationRecord]) -> str:
    """Serialise an EM history to JSON.

    Parameters
    ----------
    records : sequence of IterationRecord

    Returns
    -------
    str
        A JSON list of the records' :meth:`~ipem.IterationRecord.as_dict`;
        ``inf``/``nan`` are written as the strings ``"inf"``/``"nan"``.
    """
    return json.dumps([_json_safe(r.as_dict()) for r in records])


def records_from_json(text: str) -> list[IterationRecord]:
    """Inverse of :func:`records_to_json`.

    Parameters
    ----------
    text : str
        JSON list of record dicts.

    Returns
    -------
    list of IterationRecord
    """
    out = []
    for d in json.loads(text):
        for key in ("objective", "change"):
            if isinstance(d[key], str):
                d[key] = float(d[key])
        out.append(IterationRecord(**d))
    return out
