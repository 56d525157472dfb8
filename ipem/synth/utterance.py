"""One synthetic telephone utterance, and its ground-truth speech frames.

:func:`synthesize_utterance` speaks a text with one voice
(:mod:`ipem.synth.voices`) and gives it its own session effects:

* speaking rate (``espeak-ng -s``) and pitch (``-p``),
* leading/trailing silence,
* "handset" response (random spectral tilt and one random peaking band),
* telephone channel: resampling to ``sample_rate`` and a 300-3400 Hz band-pass,
  and, for half of the utterances, G.711 mu-law companding -- or one of
  :data:`ipem.synth.channel.CHANNELS`,
* additive noise (white, pink, brown, babble of other voices or mains hum) at
  an SNR fixed or drawn per utterance,
* random level.

The speech is synthesised clean before the channel and noise are added, so
the generator knows which frames are speech: next to every ``utt.wav`` it
writes ``utt.vad.npy`` (:func:`label_path`), one boolean per 25 ms / 10 ms
front-end frame (:func:`speech_labels`), to measure voice activity detection
against.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .channel import (ACOUSTIC_NOISES, CHANNELS, NOISE_KINDS, Channel, active_power,
                      babble_noise, bandpass, colored_noise, compand, handset, hum_noise)
from .voices import available_voices, make_babble_sources, resample, run_espeak

__all__ = [
    "LABEL_SUFFIX",
    "label_path",
    "speech_labels",
    "synthesize_utterance",
    "snr_range",
    "noise_kinds",
]

#: Suffix of the ground-truth speech-frame files written next to each WAV file.
LABEL_SUFFIX = ".vad.npy"


def _write_wav_atomic(path: Path, x: np.ndarray, sr: int) -> None:
    """Write ``x`` (shape (n_samples,), in [-1, 1)) to ``path`` as 16-bit PCM WAV, atomically."""
    import soundfile as sf

    from ..io import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(str(path)) as tmp:
        sf.write(tmp, x, sr, format="WAV", subtype="PCM_16")


def snr_range(snr_db) -> tuple[float, float]:
    """``snr_db`` as a (low, high) range; a single number is a fixed SNR, ``inf`` no noise.

    Parameters
    ----------
    snr_db : float or (float, float)
        An SNR in dB, ``math.inf`` or a finite ``(low, high)`` range.

    Returns
    -------
    (float, float)
        ``(low, high)``, equal for a fixed SNR.

    Raises
    ------
    ValueError
        For NaN, ``-inf``, ``low > high`` or a range with an infinite end.
    """
    lo, hi = (snr_db, snr_db) if np.ndim(snr_db) == 0 else snr_db
    lo, hi = float(lo), float(hi)
    if math.isnan(lo) or math.isnan(hi) or lo > hi or lo == -math.inf or \
            (math.isinf(hi) and lo != hi):
        raise ValueError(f"snr_db must be a number, math.inf (no noise) or a finite (low, high) "
                         f"range with low <= high, got {snr_db!r}")
    return lo, hi


def noise_kinds(noise) -> tuple[str, ...]:
    """``noise`` as a tuple of noise kinds.

    Parameters
    ----------
    noise : str or sequence of str
        One or more of :data:`ipem.synth.channel.NOISE_KINDS`.

    Returns
    -------
    tuple of str

    Raises
    ------
    ValueError
        For an empty or unknown kind.
    """
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
        :func:`ipem.speaker.mfcc.mfcc_features` (so there is one label per
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
        :mod:`ipem.synth.channel`).
    channel : str or None, optional
        A name in :data:`ipem.synth.channel.CHANNELS`; ``None``: a
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
    lo_snr, hi_snr = snr_range(snr_db)
    kinds = noise_kinds(noise)
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
    clean, sr_voice = run_espeak(voice, text, rate, pitch)
    x = resample(clean, sr_voice, sample_rate)
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
                babble_sources = make_babble_sources(others, nrng.integers(2**32), sample_rate)
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
