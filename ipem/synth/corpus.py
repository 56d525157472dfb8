"""Synthetic telephone-speech corpus for GMM-UBM speaker verification.

Each English-capable MBROLA voice of espeak-ng is one speaker
(:mod:`ipem.synth.voices`).  Clean synthetic speech would make verification
trivial (EER 0), so every utterance gets its own text (random sentences from
a small grammar, :mod:`ipem.synth.texts`; no text is used twice) and its own
session, channel and noise effects (:func:`ipem.synth.utterance.synthesize_utterance`,
:mod:`ipem.synth.channel`); with ``channel_mismatch`` enrolment and test go
through different channels.

:func:`generate_corpus` plans the corpus serially (:func:`plan_corpus`, one
:class:`UtterancePlan` per utterance), synthesises the utterances in parallel,
and writes the WAV files, their ground-truth speech frames and NIST-style
lists; run ``scripts/install_speech_deps.sh`` as root first to install
espeak-ng, sox, mbrola and the voices.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..io.atomic import write_text_atomic
from .texts import random_text
from .utterance import noise_kinds, snr_range, synthesize_utterance
from .voices import (DEFAULT_MBROLA_DIR, ENGLISH_MBROLA_VOICES, INSTALL_HINT, available_voices,
                     make_babble_sources)

logger = logging.getLogger(__name__)

__all__ = ["MIN_SPEAKERS", "CorpusInfo", "UtterancePlan", "plan_corpus", "generate_corpus"]

#: Fewest speakers (voices) a corpus may have.
MIN_SPEAKERS = 8

#: The roles of a speaker's utterances, in the order they are planned and listed.
ROLES = ("ubm", "enroll", "test")


@dataclass(frozen=True)
class UtterancePlan:
    """One utterance of a corpus, as planned before any synthesis.

    Attributes
    ----------
    speaker : str
        Speaker (model) id, the voice's MBROLA database name (``"us1"``).
    voice : str
        espeak-ng voice (``"mb-us1"``).
    role : {"ubm", "enroll", "test"}
        What the utterance is for.
    utt_id : str
        ``<speaker>_<role>_NN``.
    path : str
        Path of the WAV file relative to the corpus directory,
        ``wav/<speaker>/<utt_id>.wav``.
    text : str
        The text spoken.
    seed : numpy.random.SeedSequence
        Seed of the utterance's random session effects.
    channel : str or None
        A name in :data:`ipem.synth.channel.CHANNELS`, or ``None`` for the
        default channel.
    """

    speaker: str
    voice: str
    role: str
    utt_id: str
    path: str
    text: str
    seed: np.random.SeedSequence
    channel: str | None


def plan_corpus(speakers: Sequence[str], voices: Sequence[str], counts: dict[str, int], *,
                words_per_utt: tuple[int, int], seed: int,
                channel_mismatch: bool = False) -> list[UtterancePlan]:
    """Plan every utterance of a corpus: deterministic and serial.

    Parameters
    ----------
    speakers, voices : sequence of str, length n_speakers
        Speaker ids and their espeak-ng voices.
    counts : dict
        Role (:data:`ROLES`) -> utterances per speaker.
    words_per_utt : (int, int)
        Range of the text length in words.
    seed : int
        Seed of the texts and of the utterances' seeds.
    channel_mismatch : bool, optional
        Give each utterance the channel of its role (see
        :func:`generate_corpus`).

    Returns
    -------
    list of UtterancePlan, length n_speakers * sum(counts.values())
        By speaker, then role (in :data:`ROLES` order), then index; no text
        twice.
    """
    w_lo, w_hi = words_per_utt
    rng = np.random.default_rng(seed)
    n_total = len(speakers) * sum(counts[role] for role in ROLES)
    child_seeds = np.random.SeedSequence(seed).spawn(n_total)
    used_texts: set[str] = set()
    plan = []
    for spk, voice in zip(speakers, voices):
        for role in ROLES:
            for i in range(counts[role]):
                for _ in range(1000):
                    text = random_text(rng, int(rng.integers(w_lo, w_hi + 1)))
                    if text not in used_texts:
                        break
                used_texts.add(text)
                utt = f"{spk}_{role}_{i:02d}"
                plan.append(UtterancePlan(spk, voice, role, utt, f"wav/{spk}/{utt}.wav", text,
                                          child_seeds[len(plan)],
                                          _channel_of(role, i) if channel_mismatch else None))
    return plan


@dataclass(frozen=True)
class CorpusInfo:
    """Where :func:`generate_corpus` put things, and how many.

    All list files hold paths relative to ``out_dir``.

    Attributes
    ----------
    out_dir, wav_dir : pathlib.Path
        The corpus directory and its ``wav`` directory.
    enroll_list, trials_list, ubm_list, meta_file : pathlib.Path
        ``enroll.lst``, ``trials.lst``, ``ubm.lst`` and ``meta.tsv``.
    speakers, voices : tuple of str, length n_speakers
        Speaker ids (MBROLA database names) and their espeak-ng voices.
    sample_rate : int
        Sample rate of the WAV files in Hz.
    n_enroll, n_test, n_ubm : int
        Utterances per speaker of each role.
    n_utterances, n_trials, n_target, n_nontarget : int
        Totals: ``n_trials = n_speakers**2 * n_test``, ``n_target =
        n_speakers * n_test``.
    seed : int
        The seed the corpus was made with.
    snr_db : (float, float)
        The SNR range in dB (equal ends: a fixed SNR).
    noise : tuple of str
        The noise kinds drawn from.
    channel_mismatch : bool
        Whether enrolment and test went through different channels.
    """

    out_dir: Path
    wav_dir: Path
    enroll_list: Path
    trials_list: Path
    ubm_list: Path
    meta_file: Path
    speakers: tuple[str, ...]
    voices: tuple[str, ...]
    sample_rate: int
    n_enroll: int
    n_test: int
    n_ubm: int
    n_utterances: int
    n_trials: int
    n_target: int
    n_nontarget: int
    seed: int
    snr_db: tuple[float, float] = (10.0, 25.0)
    noise: tuple[str, ...] = ("white", "pink", "brown")
    channel_mismatch: bool = False


def generate_corpus(
    out_dir: str | os.PathLike,
    *,
    n_speakers: int | None = None,
    n_enroll: int = 3,
    n_test: int = 4,
    n_ubm: int = 4,
    sample_rate: int = 8000,
    snr_db: float | tuple[float, float] = (10.0, 25.0),
    noise: str | Sequence[str] = ("white", "pink", "brown"),
    channel_mismatch: bool = False,
    words_per_utt: tuple[int, int] = (8, 11),
    seed: int = 0,
    n_jobs: int = 2,
    voices: Sequence[str] | None = None,
    mbrola_dir: str | os.PathLike = DEFAULT_MBROLA_DIR,
) -> CorpusInfo:
    """Generate a synthetic telephone speaker-verification corpus.

    Each voice is one speaker with ``n_ubm + n_enroll + n_test`` utterances,
    every one with its own text and session/channel effects (see the module
    docstring).  Files written under ``out_dir``:

    * ``wav/<spk>/<spk>_{ubm,enroll,test}_NN.wav`` -- 16-bit mono WAV files;
    * ``wav/<spk>/<spk>_{ubm,enroll,test}_NN.vad.npy`` -- the ground-truth
      speech frames of each (:func:`speech_labels`);
    * ``enroll.lst`` -- ``model_id utt_path...``, one line per speaker;
    * ``trials.lst`` -- ``model_id test_utt_path target|nontarget``, every
      model against every test utterance;
    * ``ubm.lst`` -- one utterance path per line (UBM training data, disjoint
      from the enrolment and test utterances);
    * ``meta.tsv`` -- the text and random parameters of every utterance.

    Every file is written atomically; the output depends only on the
    arguments (not on ``n_jobs``).

    Parameters
    ----------
    out_dir : path-like
        Output directory (created if needed; existing files are overwritten).
    n_speakers : int or None, optional
        Number of speakers; ``None`` uses every available voice.  At least 8.
    n_enroll, n_test, n_ubm : int, optional
        Utterances per speaker for enrolment (>= 1), test (>= 1) and UBM
        training (>= 0).
    sample_rate : int, optional
        Output sample rate in Hz (>= 8000).
    snr_db : float or (float, float), optional
        The SNR of every utterance in dB, or the range each utterance's SNR
        is drawn from; ``math.inf``: no noise.
    noise : str or sequence of str, optional
        Noise kind, or the kinds each utterance's noise is drawn from, out of
        ``"white"``, ``"pink"``, ``"brown"``, ``"babble"`` (other voices than
        the corpus's speakers where there are enough, otherwise the other
        speakers) and ``"hum"``.
    channel_mismatch : bool, optional
        Enrolment utterances go through the ``landline`` channel (300-3400
        Hz, mu-law), test utterances through ``narrowband`` (500-3000 Hz,
        A-law), UBM utterances alternate between the two.  Default: every
        utterance 300-3400 Hz, half of them mu-law.
    words_per_utt : (int, int), optional
        Range of the text length in words (8-11 words is ~3-4 s of speech).
    seed : int, optional
        Seed of all random choices.
    n_jobs : int, optional
        Number of utterances synthesised concurrently.
    voices : sequence of str, optional
        espeak-ng voices to use instead of :func:`available_voices`.
    mbrola_dir : path-like, optional
        Root of the MBROLA databases.

    Returns
    -------
    CorpusInfo
        Paths of the lists and counts.

    Raises
    ------
    ValueError
        Bad arguments, or fewer than 8 voices available (with the command
        that installs them).
    """
    # -- validate ---------------------------------------------------------
    for name, val, lo in (("n_enroll", n_enroll, 1), ("n_test", n_test, 1), ("n_ubm", n_ubm, 0),
                          ("n_jobs", n_jobs, 1)):
        if int(val) != val or val < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {val!r}")
    if int(sample_rate) != sample_rate or sample_rate < 8000:
        raise ValueError(f"sample_rate must be an integer >= 8000 Hz (telephone band "
                         f"is 300-3400 Hz), got {sample_rate!r}")
    lo_snr, hi_snr = snr_range(snr_db)
    kinds = noise_kinds(noise)
    w_lo, w_hi = (int(v) for v in words_per_utt)
    if w_lo < 1 or w_lo > w_hi:
        raise ValueError(f"words_per_utt must be a (low, high) range with 1 <= low <= high, "
                         f"got {words_per_utt!r}")

    if voices is None:
        voices = available_voices(mbrola_dir)
        if len(voices) < MIN_SPEAKERS:
            why = ("espeak-ng is not on PATH" if shutil.which("espeak-ng") is None
                   else f"only {len(voices)} English MBROLA voices found under {mbrola_dir}")
            raise ValueError(f"need at least {MIN_SPEAKERS} MBROLA voices, but {why}; " + INSTALL_HINT)
    else:
        voices = list(voices)
        unknown = [v for v in voices if v not in ENGLISH_MBROLA_VOICES]
        if unknown:
            raise ValueError(f"unknown voices {unknown}; known: {sorted(ENGLISH_MBROLA_VOICES)}")
        if len(set(voices)) != len(voices):
            raise ValueError("voices contains duplicates")
    if n_speakers is None:
        n_speakers = len(voices)
    if int(n_speakers) != n_speakers or n_speakers < MIN_SPEAKERS:
        raise ValueError(f"n_speakers must be an integer >= {MIN_SPEAKERS}, got {n_speakers!r}")
    if n_speakers > len(voices):
        raise ValueError(f"n_speakers={n_speakers} but only {len(voices)} voices are available "
                         f"({', '.join(voices)}); " + INSTALL_HINT)
    if shutil.which("espeak-ng") is None:
        raise ValueError("espeak-ng is not on PATH; " + INSTALL_HINT)
    voices = list(voices)[: int(n_speakers)]
    speakers = [ENGLISH_MBROLA_VOICES[v] for v in voices]

    out = Path(out_dir)
    wav_dir = out / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)

    # -- plan (serial, so it is deterministic) ------------------------------
    counts = {"ubm": int(n_ubm), "enroll": int(n_enroll), "test": int(n_test)}
    plan = plan_corpus(speakers, voices, counts, words_per_utt=(w_lo, w_hi), seed=seed,
                       channel_mismatch=channel_mismatch)
    babble = None
    if "babble" in kinds and math.isfinite(hi_snr):
        # other talkers: voices that are no speaker of this corpus, if there are enough
        pool = [v for v in available_voices(mbrola_dir) if v not in voices]
        pool = pool if len(pool) >= 4 else list(voices)
        babble = make_babble_sources(pool[:8], np.random.SeedSequence([seed, 1]), int(sample_rate))

    # -- synthesise (parallel) --------------------------------------------
    logger.info("synthesising %d utterances of %d speakers -> %s", len(plan), n_speakers, out)

    def work(utt: UtterancePlan) -> dict:
        try:
            _, params = synthesize_utterance(utt.voice, utt.text, out / utt.path,
                                             sample_rate=int(sample_rate), seed=utt.seed,
                                             snr_db=(lo_snr, hi_snr), noise=kinds,
                                             channel=utt.channel, babble_sources=babble)
        except Exception as exc:
            raise RuntimeError(f"synthesis of {utt.utt_id} ({utt.voice}) failed: {exc}") from exc
        return params

    if n_jobs == 1:
        results = [work(p) for p in plan]
    else:
        pool = ThreadPoolExecutor(max_workers=int(n_jobs))
        try:
            futures = [pool.submit(work, p) for p in plan]
            results = [f.result() for f in futures]
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # stop at the first failure
            raise
        pool.shutdown(wait=True)

    # -- lists ------------------------------------------------------------
    enroll_lines, trial_lines, ubm_lines, n_target = _list_lines(speakers, plan)
    meta_lines = _meta_lines(plan, results)

    write_text_atomic(out / "enroll.lst", "\n".join(enroll_lines) + "\n")
    write_text_atomic(out / "trials.lst", "\n".join(trial_lines) + "\n")
    write_text_atomic(out / "ubm.lst", "\n".join(ubm_lines) + ("\n" if ubm_lines else ""))
    write_text_atomic(out / "meta.tsv", "\n".join(meta_lines) + "\n")

    return CorpusInfo(
        out_dir=out,
        wav_dir=wav_dir,
        enroll_list=out / "enroll.lst",
        trials_list=out / "trials.lst",
        ubm_list=out / "ubm.lst",
        meta_file=out / "meta.tsv",
        speakers=tuple(speakers),
        voices=tuple(voices),
        sample_rate=int(sample_rate),
        n_enroll=int(n_enroll),
        n_test=int(n_test),
        n_ubm=int(n_ubm),
        n_utterances=len(plan),
        n_trials=len(trial_lines),
        n_target=n_target,
        n_nontarget=len(trial_lines) - n_target,
        seed=int(seed),
        snr_db=(lo_snr, hi_snr),
        noise=kinds,
        channel_mismatch=bool(channel_mismatch),
    )


def _channel_of(role: str, index: int) -> str:
    """The channel of an utterance in a ``channel_mismatch`` corpus."""
    if role == "enroll":
        return "landline"
    if role == "test":
        return "narrowband"
    return ("landline", "narrowband")[index % 2]


def _list_lines(speakers: Sequence[str], plan: Sequence[UtterancePlan]):
    """The lines of ``enroll.lst``, ``trials.lst`` and ``ubm.lst``, and the number of
    target trials."""
    by_role: dict[str, dict[str, list[str]]] = {r: {s: [] for s in speakers} for r in ROLES}
    for utt in plan:
        by_role[utt.role][utt.speaker].append(utt.path)
    enroll_lines = [" ".join([spk] + by_role["enroll"][spk]) for spk in speakers]
    test_utts = [(spk, rel) for spk in speakers for rel in by_role["test"][spk]]
    trial_lines = [
        f"{model} {rel} {'target' if model == spk else 'nontarget'}"
        for model in speakers
        for spk, rel in test_utts
    ]
    ubm_lines = [rel for spk in speakers for rel in by_role["ubm"][spk]]
    return enroll_lines, trial_lines, ubm_lines, len(test_utts)


#: The random parameters of every utterance that ``meta.tsv`` holds, in its column order.
META_KEYS = ("rate", "pitch", "snr_db", "noise", "level_dbfs", "tilt", "eq_hz", "eq_db",
             "channel", "companding", "mulaw", "speech_frames", "native_rate")


def _meta_lines(plan: Sequence[UtterancePlan], results: Sequence[dict]) -> list[str]:
    """The lines of ``meta.tsv``: a header, then one line per utterance."""
    lines = ["\t".join(["utt", "speaker", "voice", "role", "path", *META_KEYS, "text"])]
    for utt, params in zip(plan, results):
        lines.append("\t".join([utt.utt_id, utt.speaker, utt.voice, utt.role, utt.path]
                               + [str(params[key]) for key in META_KEYS] + [utt.text]))
    return lines
