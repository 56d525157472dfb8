"""Speaker-verification tools: acoustic front-end, metrics,
GMM-UBM MAP adaptation and scoring, score normalisation and calibration.

:mod:`ipem.speaker.pipeline` chains them into the steps the ``ipem`` command,
the demo and the notebooks run (extract, train_ubm, adapt, score, evaluate).
"""

from .featnorm import feature_warping, rasta_filter, sliding_cmvn
from .frontend import (band_edges, cmvn, energy_vad, extract_features, extract_file,
                       extract_many, mfcc_features, read_audio, vad_mask)
from .vad import gmm_vad, kaldi_vad, percentile_vad
from .calibration import LogisticCalibration, load_calibration
from .map import SpeakerModel, adapt_speakers, map_adapt, ubm_params, utterance_stats
from .metrics import (
    SRE2008,
    SRE2010,
    act_dcf,
    cllr,
    compute_eer,
    det_curve,
    effective_prior,
    min_cllr,
    min_dcf,
    optimal_llr,
    plot_det,
    rocch,
    rocch_eer,
)
from .normalization import (asnorm, cohort_statistics, normalize_scores, score_matrix, snorm,
                            tnorm, znorm, ztnorm)
from .scorefiles import Trial, read_trials, write_score_file
from .scoring import llr_scores, score_trials

__all__ = [
    "read_audio",
    "mfcc_features",
    "energy_vad",
    "vad_mask",
    "gmm_vad",
    "kaldi_vad",
    "percentile_vad",
    "band_edges",
    "cmvn",
    "sliding_cmvn",
    "feature_warping",
    "rasta_filter",
    "extract_features",
    "extract_file",
    "extract_many",
    "compute_eer",
    "rocch",
    "rocch_eer",
    "min_dcf",
    "act_dcf",
    "cllr",
    "min_cllr",
    "optimal_llr",
    "effective_prior",
    "det_curve",
    "plot_det",
    "SRE2008",
    "SRE2010",
    "utterance_stats",
    "map_adapt",
    "ubm_params",
    "SpeakerModel",
    "adapt_speakers",
    "llr_scores",
    "score_trials",
    "read_trials",
    "write_score_file",
    "Trial",
    "cohort_statistics",
    "znorm",
    "tnorm",
    "ztnorm",
    "snorm",
    "asnorm",
    "normalize_scores",
    "score_matrix",
    "LogisticCalibration",
    "load_calibration",
]
