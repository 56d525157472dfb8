"""The EM loop, written once: ``driver`` (EMLoop, IterationRecord), ``base`` (the
estimator base whose ``fit`` is the template every model fills), ``staged``
(staged, resumable training on top of the loop)."""
from .base import EMEstimator
from .driver import EMLoop, EMResult, IterationRecord
from .staged import Position, run_stages

__all__ = ["EMEstimator", "EMLoop", "EMResult", "IterationRecord", "Position", "run_stages"]
