"""I-vectors: total-variability EM over a controller, extraction, and the LDA/WCCN/PLDA back-end.

==========================  ======================================================
module                      what it holds
==========================  ======================================================
``stats``                   Baum-Welch statistics of utterances against the UBM,
                            kept by a controller as a dataset of utterance rows
``posterior``               the latent factor: batched posteriors, the EM
                            statistics (shard functions), M-step, minimum divergence
``total_variability``       :class:`TotalVariability`, the estimator (EM hooks,
                            checkpoints)
``extraction``              task-parallel i-vector extraction, i-vector files
``backend``                 centring, LDA, WCCN, length normalisation, cosine scoring
``plda``                    two-covariance PLDA trained by EM, LLR scoring
==========================  ======================================================

The steps the CLI, the demo and notebook 03 call are in :mod:`ipem.steps.ivector`.
"""
from .backend import (LDA, WCCN, IvectorBackend, Whitening, backend_defaults, cosine_scores,
                      length_normalize)
from .extraction import extract_ivectors, load_ivectors, save_ivectors
from .plda import TwoCovariancePLDA
from .stats import baum_welch, distribute_stats, frames_to_rows, split_rows, stats_rows
from .total_variability import TotalVariability

__all__ = ["TotalVariability", "baum_welch", "distribute_stats", "frames_to_rows", "split_rows",
           "stats_rows", "extract_ivectors", "save_ivectors", "load_ivectors", "LDA", "WCCN",
           "Whitening", "length_normalize", "cosine_scores", "IvectorBackend",
           "TwoCovariancePLDA", "backend_defaults"]
