"""Speaker-verification tools: synthetic corpus, acoustic front-end, metrics."""

from .corpus import CorpusInfo, available_voices, generate_corpus, synthesize_utterance
from .frontend import cmvn, energy_vad, extract_features, extract_many, mfcc_features, read_audio
from .metrics import (
    SRE2008,
    SRE2010,
    act_dcf,
    compute_eer,
    det_curve,
    min_dcf,
    plot_det,
    rocch,
    rocch_eer,
)

__all__ = [
    "CorpusInfo",
    "available_voices",
    "generate_corpus",
    "synthesize_utterance",
    "read_audio",
    "mfcc_features",
    "energy_vad",
    "cmvn",
    "extract_features",
    "extract_many",
    "compute_eer",
    "rocch",
    "rocch_eer",
    "min_dcf",
    "act_dcf",
    "det_curve",
    "plot_det",
    "SRE2008",
    "SRE2010",
]
