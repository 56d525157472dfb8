"""Speaker-verification tools: acoustic front-end, metrics,
GMM-UBM MAP adaptation and scoring, score normalisation and calibration.

The front-end is layered, each module importing only those below it:
:mod:`~ipem.speaker.dsp` (framing, spectra, band energies, filterbank) ->
:mod:`~ipem.speaker.mfcc` (MFCCs, deltas), :mod:`~ipem.speaker.vad` (voice
activity detection), :mod:`~ipem.speaker.featnorm` (CMVN, warping, RASTA) ->
:mod:`~ipem.speaker.frontend` (audio files in, feature files out).  The
synthetic corpus the tests and the demo use is :mod:`ipem.synth`.

:mod:`ipem.steps` chains them into the steps the ``ipem`` command, the demo
and the notebooks run (extract, train_ubm, adapt, score, evaluate).
"""

from .dsp import band_edges, frame_log_energy
from .featnorm import (FEATURE_NORMALIZATIONS, cmvn, feature_warping, normalize_features,
                       rasta_filter, sliding_cmvn)
from .frontend import NoSpeechError, extract_features, extract_file, extract_many, read_audio
from .mfcc import mfcc_features
from .vad import VAD_METHODS, energy_vad, gmm_vad, kaldi_vad, percentile_vad, vad_mask
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
from .utterances import FeatureSource

__all__ = [
    "read_audio",
    "NoSpeechError",
    "mfcc_features",
    "frame_log_energy",
    "energy_vad",
    "VAD_METHODS",
    "vad_mask",
    "gmm_vad",
    "kaldi_vad",
    "percentile_vad",
    "band_edges",
    "cmvn",
    "sliding_cmvn",
    "feature_warping",
    "rasta_filter",
    "normalize_features",
    "FEATURE_NORMALIZATIONS",
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
    "FeatureSource",
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
