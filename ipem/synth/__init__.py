"""Synthetic telephone-speech corpora for speaker verification.

* :mod:`ipem.synth.texts` -- random English text from a small grammar;
* :mod:`ipem.synth.voices` -- the MBROLA voices of espeak-ng (one speaker each)
  and their clean speech;
* :mod:`ipem.synth.channel` -- handsets, telephone channels and noises;
* :mod:`ipem.synth.utterance` -- one degraded utterance and its ground-truth
  speech frames;
* :mod:`ipem.synth.corpus` -- a whole corpus: plan, synthesis, NIST-style
  lists (:func:`generate_corpus`).

Nothing in :mod:`ipem.speaker` depends on it: the generator feeds the
front-end files, as a real corpus would.
"""

from .channel import CHANNELS, NOISE_KINDS, Channel
from .corpus import MIN_SPEAKERS, CorpusInfo, UtterancePlan, generate_corpus, plan_corpus
from .texts import random_text
from .utterance import LABEL_SUFFIX, label_path, speech_labels, synthesize_utterance
from .voices import DEFAULT_MBROLA_DIR, ENGLISH_MBROLA_VOICES, INSTALL_HINT, available_voices

__all__ = [
    "generate_corpus",
    "CorpusInfo",
    "UtterancePlan",
    "plan_corpus",
    "MIN_SPEAKERS",
    "available_voices",
    "ENGLISH_MBROLA_VOICES",
    "DEFAULT_MBROLA_DIR",
    "INSTALL_HINT",
    "synthesize_utterance",
    "speech_labels",
    "label_path",
    "LABEL_SUFFIX",
    "random_text",
    "Channel",
    "CHANNELS",
    "NOISE_KINDS",
]
