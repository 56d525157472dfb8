"""The EM loop, written once: ``records`` (IterationRecord and its JSON), ``driver``
(EMLoop), ``base`` (the
estimator base whose ``fit`` is the template every model fills), ``staged``
(staged, resumable training on top of the loop)."""
from .base import EMEstimator
from .driver import EMLoop, EMResult
from .records import IterationRecord, records_from_json, records_to_json
from .staged import Position, run_stages

__all__ = ["EMEstimator", "EMLoop", "EMResult", "IterationRecord", "Position", "records_from_json",
           "records_to_json", "run_stages"]
