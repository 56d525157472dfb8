"""Synthetic telephone-speech corpus for GMM-UBM speaker verification.

Every MBROLA diphone database was recorded from one real person, so each
English-capable MBROLA voice of espeak-ng (``mb-us1``, ``mb-de4-en``, ...) is
used as one speaker.  Clean synthetic speech would make verification trivial
(EER 0), so every utterance gets its own

* text (random sentences from a small grammar; no text is used twice),
* speaking rate (``espeak-ng -s``) and pitch (``-p``),
* leading/trailing silence,
* "handset" response (random spectral tilt and one random peaking band),
* telephone channel: resampling to ``sample_rate`` and a 300-3400 Hz band-pass,
  and, for half of the utterances, G.711 mu-law companding -- or, with
  ``channel_mismatch``, one channel for enrolment and another (narrower band,
  A-law) for test (:data:`ipem.speaker.channel.CHANNELS`),
* additive noise (white, pink, brown, babble of other voices or mains hum) at
  an SNR fixed per corpus or drawn per utterance,
* random level.

The speech is synthesised clean before the channel and noise are added, so
the generator knows which frames are speech: next to every ``utt.wav`` it
writes ``utt.vad.npy``, one boolean per 25 ms / 10 ms front-end frame
(:func:`speech_labels`), to measure voice activity detection against.

:func:`generate_corpus` writes the WAV files and NIST-style lists; run
``scripts/install_speech_deps.sh`` as root first to install espeak-ng, sox,
mbrola and the voices.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..io.atomic import write_text_atomic
from .channel import (ACOUSTIC_NOISES, CHANNELS, NOISE_KINDS, Channel, active_power,
                      babble_noise, bandpass, colored_noise, compand, handset, hum_noise)
from .texts import random_text

logger = logging.getLogger(__name__)

__all__ = [
    "ENGLISH_MBROLA_VOICES",
    "CorpusInfo",
    "available_voices",
    "random_text",
    "LABEL_SUFFIX",
    "label_path",
    "speech_labels",
    "synthesize_utterance",
    "generate_corpus",
]

#: espeak-ng voice name -> MBROLA database name, for the voices that speak
#: English (native English databases plus espeak-ng's ``mb-XX-en`` mappings).
ENGLISH_MBROLA_VOICES: dict[str, str] = {
    "mb-us1": "us1",
    "mb-us2": "us2",
    "mb-us3": "us3",
    "mb-en1": "en1",
    "mb-af1-en": "af1",
    "mb-de1-en": "de1",
    "mb-de2-en": "de2",
    "mb-de3-en": "de3",
    "mb-de4-en": "de4",
    "mb-de5-en": "de5",
    "mb-de6-en": "de6",
    "mb-fr1-en": "fr1",
    "mb-fr4-en": "fr4",
    "mb-gr2-en": "gr2",
    "mb-hu1-en": "hu1",
    "mb-nl2-en": "nl2",
    "mb-pl1-en": "pl1",
    "mb-ro1-en": "ro1",
    "mb-sw1-en": "sw1",
    "mb-sw2-en": "sw2",
}

MIN_SPEAKERS = 8
#: Suffix of the ground-truth speech-frame files written next to each WAV file.
LABEL_SUFFIX = ".vad.npy"
DEFAULT_MBROLA_DIR = "/usr/share/mbrola"
INSTALL_HINT = (
    "install them as root with `bash scripts/install_speech_deps.sh` (from the "
    "ipem repository), or: enable the contrib and non-free apt components, then "
    "`apt-get update && apt-get install espeak-ng sox mbrola mbrola-us1 mbrola-us2 "
    "mbrola-us3 mbrola-en1 mbrola-af1 mbrola-de1 mbrola-de2 mbrola-de3 mbrola-de4 "
    "mbrola-de5 mbrola-de6 mbrola-fr1 mbrola-fr4 mbrola-gr2 mbrola-hu1 mbrola-nl2 "
    "mbrola-pl1 mbrola-ro1 mbrola-sw1 mbrola-sw2`"
)


# ---------------------------------------------------------------------------
# Voices
# ---------------------------------------------------------------------------
def available_voices(mbrola_dir: str | os.PathLike = DEFAULT_MBROLA_DIR) -> list[str]:
    """English-speaking MBROLA voices that espeak-ng can use here.

    A voice counts when ``espeak-ng`` is on ``PATH`` and its database file
    ``<mbrola_dir>/<db>/<db>`` exists.

    Parameters
    ----------
    mbrola_dir : path-like, optional
        Root of the MBROLA databases (default ``/usr/share/mbrola``).

    Returns
    -------
    list of str
        espeak-ng voice names (e.g. ``"mb-us1"``, ``"mb-de4-en"``), sorted by
        MBROLA database name; empty if espeak-ng is missing.
    """
    if shutil.which("espeak-ng") is None:
        return []
    root = Path(mbrola_dir)
    found = [
        (db, voice)
        for voice, db in ENGLISH_MBROLA_VOICES.items()
        if (root / db / db).is_file()
    ]
    return [voice for _, voice in sorted(found)]


# ---------------------------------------------------------------------------
# Signal processing helpers
# ---------------------------------------------------------------------------
@functools.lru_cache(maxsize=256)
def _espeak_pcm(voice: str, text: str, rate: int, pitch: int) -> tuple[np.ndarray, int]:
    """espeak-ng's 16-bit output, cached: corpora made with one seed under several
    conditions synthesise the same texts (the array is read-only)."""
    import soundfile as sf

    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed; " + INSTALL_HINT)
    with tempfile.TemporaryDirectory(prefix="ipem-tts-") as tmp:
        wav = os.path.join(tmp, "tts.wav")
        proc = subprocess.run(
            [exe, "-v", voice, "-s", str(int(rate)), "-p", str(int(pitch)), "-w", wav, "--stdin"],
            input=text.encode("utf-8"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=120,
        )
        if proc.returncode != 0 or not os.path.exists(wav) or os.path.getsize(wav) <= 44:
            raise RuntimeError(
                f"espeak-ng failed for voice {voice!r} (exit {proc.returncode}): "
                f"{proc.stderr.decode('utf-8', 'replace').strip()[-500:]}"
            )
        x, sr = sf.read(wav, dtype="int16", always_2d=True)
    x = x[:, 0].copy() if x.shape[1] == 1 else x.mean(axis=1).astype(np.int16)
    if x.size == 0 or not np.any(x):
        raise RuntimeError(f"espeak-ng produced silence for voice {voice!r} and text {text!r}")
    x.flags.writeable = False
    return x, int(sr)


def _run_espeak(voice: str, text: str, rate: int, pitch: int) -> tuple[np.ndarray, int]:
    pcm, sr = _espeak_pcm(voice, text, int(rate), int(pitch))
    return pcm.astype(np.float64) / 32768.0, sr


def _resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    if sr_in == sr_out:
        return x
    from scipy.signal import resample_poly

    g = math.gcd(sr_in, sr_out)
    return resample_poly(x, sr_out // g, sr_in // g)


def _write_wav_atomic(path: Path, x: np.ndarray, sr: int) -> None:
    import soundfile as sf

    from ..io import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(str(path)) as tmp:
        sf.write(tmp, x, sr, format="WAV", subtype="PCM_16")


def _snr_range(snr_db) -> tuple[float, float]:
    """``snr_db`` as a (low, high) range; a single number is a fixed SNR, ``inf`` no noise."""
    lo, hi = (snr_db, snr_db) if np.ndim(snr_db) == 0 else snr_db
    lo, hi = float(lo), float(hi)
    if math.isnan(lo) or math.isnan(hi) or lo > hi or lo == -math.inf or \
            (math.isinf(hi) and lo != hi):
        raise ValueError(f"snr_db must be a number, math.inf (no noise) or a finite (low, high) "
                         f"range with low <= high, got {snr_db!r}")
    return lo, hi


def _noise_kinds(noise) -> tuple[str, ...]:
    kinds = (noise,) if isinstance(noise, str) else tuple(noise)
    bad = [k for k in kinds if k not in NOISE_KINDS]
    if not kinds or bad:
        raise ValueError(f"noise must be one or more of {NOISE_KINDS}, got {noise!r}")
    return kinds


def label_path(wav_path: str | os.PathLike) -> Path:
    """The ground-truth speech-frame label file of a corpus WAV file.

    Parameters
    ----------
    wav_path : path-like
        ``.../utt.wav``.

    Returns
    -------
    pathlib.Path
        ``.../utt.vad.npy`` (see :func:`speech_labels`).
    """
    p = Path(wav_path)
    return p.with_name(p.stem + LABEL_SUFFIX)


def speech_labels(
    clean: np.ndarray,
    sample_rate: int,
    *,
    winlen: float = 0.025,
    winstep: float = 0.01,
    range_db: float = 30.0,
) -> np.ndarray:
    """Ground-truth speech frames of a clean signal, framed as the front-end frames.

    A frame is speech when the energy of the clean (noise-free) signal in its
    Hamming window is within ``range_db`` of the loudest frame's.

    Parameters
    ----------
    clean : numpy.ndarray, shape (n_samples,)
        The speech before noise is added (after the handset and band-pass).
    sample_rate : int
        Sample rate in Hz.
    winlen, winstep : float, optional
        Window length and shift in seconds, as in
        :func:`ipem.speaker.frontend.mfcc_features` (so there is one label per
        feature frame: ``1 + ceil((n_samples - winlen * sr) / (winstep * sr))``).
    range_db : float, optional
        Dynamic range of speech below the loudest frame.

    Returns
    -------
    numpy.ndarray, shape (n_frames,), bool
        True for speech frames.
    """
    from python_speech_features.sigproc import framesig

    frames = framesig(np.asarray(clean, dtype=np.float64), winlen * sample_rate,
                      winstep * sample_rate, np.hamming)
    e = np.sum(frames**2, axis=1)
    if not np.any(e > 0):
        return np.zeros(e.size, dtype=bool)
    return e > e.max() * 10.0 ** (-range_db / 10.0)


def _babble_sources(voices: Sequence[str], seed, sample_rate: int, n_words: int = 30):
    """Clean speech of ``voices`` (one long random text each) to make babble from."""
    rng = np.random.default_rng(seed)
    out = []
    for voice in voices:
        text = random_text(rng, n_words)
        x, sr = _run_espeak(voice, text, int(rng.integers(140, 181)), int(rng.integers(30, 71)))
        out.append((voice, _resample(x, sr, sample_rate)))
    return out


# ---------------------------------------------------------------------------
# One utterance
# ---------------------------------------------------------------------------
def synthesize_utterance(
    voice: str,
    text: str,
    out_path: str | os.PathLike | None = None,
    *,
    sample_rate: int = 8000,
    seed: int | np.random.SeedSequence | None = 0,
    snr_db: float | tuple[float, float] = (10.0, 25.0),
    noise: str | Sequence[str] = ("white", "pink", "brown"),
    channel: str | None = None,
    babble_sources: Sequence[tuple[str, np.ndarray]] | None = None,
    rate_range: tuple[int, int] = (135, 185),
    pitch_range: tuple[int, int] = (30, 70),
    return_labels: bool = False,
):
    """Synthesise one telephone-quality utterance with random session effects.

    The clean speech (voice, rate, pitch, silence padding), the handset and
    level, and the noise are drawn from three independent streams of
    ``seed``, so one seed gives the same speech under every ``snr_db``,
    ``noise`` and ``channel``.

    Parameters
    ----------
    voice : str
        espeak-ng voice, e.g. ``"mb-us1"``.
    text : str
        Text to speak.
    out_path : path-like, optional
        If given, the result is written there atomically as 16-bit PCM WAV,
        and the ground-truth speech frames (:func:`speech_labels`) next to it
        (:func:`label_path`: ``utt.vad.npy``).
    sample_rate : int, optional
        Output sample rate in Hz (>= 8000).
    seed : int or numpy.random.SeedSequence, optional
        Seed of every random choice (rate, pitch, handset, noise, level...).
    snr_db : float or (float, float), optional
        Signal-to-noise ratio in dB (speech power over its active frames
        versus the noise power as added), or the range it is drawn from;
        ``math.inf`` adds no noise.
    noise : str or sequence of str, optional
        Noise kind, or kinds to draw from: ``"white"`` and ``"hum"`` are line
        noises added after the channel's band-pass, ``"pink"``, ``"brown"``
        and ``"babble"`` pass through it with the speech (see
        :mod:`ipem.speaker.channel`).
    channel : str or None, optional
        A name in :data:`ipem.speaker.channel.CHANNELS`; ``None``: a
        300-3400 Hz band-pass and mu-law companding for half of the utterances.
    babble_sources : sequence of (str, numpy.ndarray), optional
        ``(voice, clean speech at sample_rate)`` pairs babble is mixed from
        (sources of ``voice`` itself are skipped); default: synthesised here
        from up to 6 other voices.
    rate_range, pitch_range : (int, int), optional
        Ranges of the espeak-ng speaking rate (words/min) and pitch (0-99).
    return_labels : bool, optional
        Also return the ground-truth speech frames.

    Returns
    -------
    signal : numpy.ndarray, shape (n_samples,), float64
        The utterance exactly as written (16-bit values scaled to [-1, 1)).
    params : dict
        The random parameters used (rate, pitch, snr_db, noise, channel,
        companding, gain_db, ...).
    labels : numpy.ndarray, shape (n_frames,), bool
        Only with ``return_labels``: :func:`speech_labels` of the clean
        speech, one per 25 ms / 10 ms frame.
    """
    lo_snr, hi_snr = _snr_range(snr_db)
    kinds = _noise_kinds(noise)
    if channel is not None and channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}; expected one of {sorted(CHANNELS)}")
    base = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    # three streams, derived without spawning (which would change ``seed``'s state)
    speech_ss, chan_ss, noise_ss = (
        np.random.SeedSequence(base.entropy, spawn_key=base.spawn_key + (i,),
                               pool_size=base.pool_size) for i in range(3))
    rng = np.random.default_rng(speech_ss)
    rate = int(rng.integers(rate_range[0], rate_range[1] + 1))
    pitch = int(rng.integers(pitch_range[0], pitch_range[1] + 1))
    pad = rng.uniform(0.1, 0.6, size=2)
    clean, sr_voice = _run_espeak(voice, text, rate, pitch)
    x = _resample(clean, sr_voice, sample_rate)
    x = np.concatenate([np.zeros(int(pad[0] * sample_rate)), x, np.zeros(int(pad[1] * sample_rate))])

    crng = np.random.default_rng(chan_ss)
    tilt = float(crng.uniform(-0.4, 0.4))
    eq_f0 = float(crng.uniform(500.0, 3000.0))
    eq_gain = float(crng.uniform(-8.0, 8.0))
    eq_q = float(crng.uniform(0.7, 2.0))
    level_db = float(crng.uniform(-32.0, -14.0))  # active RMS level, dBFS
    coin = crng.random()
    ch = CHANNELS[channel] if channel is not None else \
        Channel("default", 300.0, 3400.0, 4, "mulaw" if coin < 0.5 else "none")
    x = handset(x, sample_rate, tilt, eq_f0, eq_gain, eq_q)
    x = bandpass(x, sample_rate, ch.low_hz, ch.high_hz, ch.order)
    labels = speech_labels(x, sample_rate)

    nrng = np.random.default_rng(noise_ss)
    snr = float(nrng.uniform(lo_snr, hi_snr)) if lo_snr < hi_snr else lo_snr
    noise_kind = kinds[int(nrng.integers(len(kinds)))]
    if math.isfinite(snr):
        if noise_kind == "babble":
            if babble_sources is None:
                others = [v for v in available_voices() if v != voice][:6]
                babble_sources = _babble_sources(others, nrng.integers(2**32), sample_rate)
            srcs = [s for v, s in babble_sources if v != voice]
            n = babble_noise(nrng, x.size, srcs, sr=sample_rate)
        elif noise_kind == "hum":
            n = hum_noise(nrng, x.size, sample_rate)
        else:
            n = colored_noise(nrng, x.size, noise_kind)
        if noise_kind in ACOUSTIC_NOISES:
            n = bandpass(n, sample_rate, ch.low_hz, ch.high_hz, ch.order)
        p_speech = active_power(x, sample_rate)
        x = x + n * math.sqrt(p_speech / (float(np.mean(n**2)) * 10.0 ** (snr / 10.0)))

    x = x * (10.0 ** (level_db / 20.0) / math.sqrt(active_power(x, sample_rate)))
    peak = float(np.max(np.abs(x)))
    if peak > 0.95:
        x = x * (0.95 / peak)
    x = compand(x, ch.companding)
    # quantise exactly as the 16-bit file will hold it
    x = np.clip(np.round(x * 32768.0), -32768, 32767) / 32768.0

    params = {
        "voice": voice,
        "rate": rate,
        "pitch": pitch,
        "snr_db": round(snr, 2) if math.isfinite(snr) else snr,
        "noise": noise_kind if math.isfinite(snr) else "none",
        "level_dbfs": round(level_db, 2),
        "tilt": round(tilt, 3),
        "eq_hz": round(eq_f0, 1),
        "eq_db": round(eq_gain, 2),
        "channel": ch.name,
        "companding": ch.companding,
        "mulaw": ch.companding == "mulaw",
        "speech_frames": int(labels.sum()),
        "native_rate": sr_voice,
    }
    if out_path is not None:
        from ..io import atomic_path

        _write_wav_atomic(Path(out_path), x, sample_rate)
        with atomic_path(label_path(out_path)) as tmp, open(tmp, "wb") as fh:
            np.save(fh, labels)
    return (x, params, labels) if return_labels else (x, params)

# ---------------------------------------------------------------------------
# Corpus
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CorpusInfo:
    """Where :func:`generate_corpus` put things, and how many.

    All list files hold paths relative to ``out_dir``.
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
    lo_snr, hi_snr = _snr_range(snr_db)
    kinds = _noise_kinds(noise)
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
    rng = np.random.default_rng(seed)
    roles = [("ubm", n_ubm), ("enroll", n_enroll), ("test", n_test)]
    n_total = n_speakers * (n_ubm + n_enroll + n_test)
    child_seeds = np.random.SeedSequence(seed).spawn(n_total)
    used_texts: set[str] = set()
    plan = []  # (spk, voice, role, utt_id, relpath, text, seedseq)
    k = 0
    for spk, voice in zip(speakers, voices):
        for role, count in roles:
            for i in range(count):
                for _ in range(1000):
                    text = random_text(rng, int(rng.integers(w_lo, w_hi + 1)))
                    if text not in used_texts:
                        break
                used_texts.add(text)
                utt = f"{spk}_{role}_{i:02d}"
                rel = f"wav/{spk}/{utt}.wav"
                plan.append((spk, voice, role, utt, rel, text, child_seeds[k],
                             _channel_of(role, i) if channel_mismatch else None))
                k += 1
    babble = None
    if "babble" in kinds and math.isfinite(hi_snr):
        # other talkers: voices that are no speaker of this corpus, if there are enough
        pool = [v for v in available_voices(mbrola_dir) if v not in voices]
        pool = pool if len(pool) >= 4 else list(voices)
        babble = _babble_sources(pool[:8], np.random.SeedSequence([seed, 1]), int(sample_rate))

    # -- synthesise (parallel) --------------------------------------------
    logger.info("synthesising %d utterances of %d speakers -> %s", len(plan), n_speakers, out)
    def work(item):
        spk, voice, role, utt, rel, text, ss, channel = item
        try:
            _, params = synthesize_utterance(voice, text, out / rel, sample_rate=int(sample_rate),
                                             seed=ss, snr_db=(lo_snr, hi_snr), noise=kinds,
                                             channel=channel, babble_sources=babble)
        except Exception as exc:
            raise RuntimeError(f"synthesis of {utt} ({voice}) failed: {exc}") from exc
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
    by_role: dict[str, dict[str, list[str]]] = {r: {s: [] for s in speakers} for r, _ in roles}
    for spk, _v, role, _u, rel, *_ in plan:
        by_role[role][spk].append(rel)
    enroll_lines = [" ".join([spk] + by_role["enroll"][spk]) for spk in speakers]
    test_utts = [(spk, rel) for spk in speakers for rel in by_role["test"][spk]]
    trial_lines = [
        f"{model} {rel} {'target' if model == spk else 'nontarget'}"
        for model in speakers
        for spk, rel in test_utts
    ]
    ubm_lines = [rel for spk in speakers for rel in by_role["ubm"][spk]]
    meta_keys = ["rate", "pitch", "snr_db", "noise", "level_dbfs", "tilt", "eq_hz", "eq_db",
                 "channel", "companding", "mulaw", "speech_frames", "native_rate"]
    meta_lines = ["\t".join(["utt", "speaker", "voice", "role", "path"] + meta_keys + ["text"])]
    for (spk, voice, role, utt, rel, text, *_), params in zip(plan, results):
        meta_lines.append("\t".join([utt, spk, voice, role, rel]
                                    + [str(params[key]) for key in meta_keys] + [text]))

    write_text_atomic(out / "enroll.lst", "\n".join(enroll_lines) + "\n")
    write_text_atomic(out / "trials.lst", "\n".join(trial_lines) + "\n")
    write_text_atomic(out / "ubm.lst", "\n".join(ubm_lines) + ("\n" if ubm_lines else ""))
    write_text_atomic(out / "meta.tsv", "\n".join(meta_lines) + "\n")

    n_target = len(test_utts)
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
