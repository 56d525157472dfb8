"""MBROLA voices and espeak-ng: the clean speech of the synthetic corpus.

Every MBROLA diphone database was recorded from one real person, so each
English-capable MBROLA voice of espeak-ng (``mb-us1``, ``mb-de4-en``, ...) is
one speaker of :func:`ipem.synth.generate_corpus`.

* :data:`ENGLISH_MBROLA_VOICES` -- the voices that speak English, and their
  databases; :func:`available_voices` -- those installed here;
* :func:`run_espeak` -- one text spoken by one voice (cached);
* :func:`resample` -- to the corpus's sample rate;
* :func:`make_babble_sources` -- long clean texts of other voices, for babble
  noise.

Run ``scripts/install_speech_deps.sh`` as root to install espeak-ng, sox,
mbrola and the voices.
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from .texts import random_text

__all__ = [
    "ENGLISH_MBROLA_VOICES",
    "DEFAULT_MBROLA_DIR",
    "INSTALL_HINT",
    "available_voices",
    "run_espeak",
    "resample",
    "make_babble_sources",
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

#: Root of the MBROLA databases (Debian's).
DEFAULT_MBROLA_DIR = "/usr/share/mbrola"
#: How to install espeak-ng, sox, mbrola and the voices (ends error messages).
INSTALL_HINT = (
    "install them as root with `bash scripts/install_speech_deps.sh` (from the "
    "ipem repository), or: enable the contrib and non-free apt components, then "
    "`apt-get update && apt-get install espeak-ng sox mbrola mbrola-us1 mbrola-us2 "
    "mbrola-us3 mbrola-en1 mbrola-af1 mbrola-de1 mbrola-de2 mbrola-de3 mbrola-de4 "
    "mbrola-de5 mbrola-de6 mbrola-fr1 mbrola-fr4 mbrola-gr2 mbrola-hu1 mbrola-nl2 "
    "mbrola-pl1 mbrola-ro1 mbrola-sw1 mbrola-sw2`"
)


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


def run_espeak(voice: str, text: str, rate: int, pitch: int) -> tuple[np.ndarray, int]:
    """Speak ``text`` with ``voice`` (espeak-ng + MBROLA), cached.

    Parameters
    ----------
    voice : str
        espeak-ng voice, e.g. ``"mb-us1"``.
    text : str
        Text to speak.
    rate : int
        Speaking rate in words per minute (``espeak-ng -s``).
    pitch : int
        Pitch, 0-99 (``espeak-ng -p``).

    Returns
    -------
    signal : numpy.ndarray, shape (n_samples,), float64
        The 16-bit output scaled to [-1, 1).
    sample_rate : int
        The voice's native sample rate in Hz.

    Raises
    ------
    RuntimeError
        If espeak-ng is missing, fails or produces silence.
    """
    pcm, sr = _espeak_pcm(voice, text, int(rate), int(pitch))
    return pcm.astype(np.float64) / 32768.0, sr


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling of ``x`` from ``sr_in`` to ``sr_out`` Hz.

    Parameters
    ----------
    x : numpy.ndarray, shape (n_samples,)
        Signal.
    sr_in, sr_out : int
        Sample rates in Hz.

    Returns
    -------
    numpy.ndarray, shape (n_samples * sr_out / sr_in,)
        ``x`` itself when the rates are equal.
    """
    if sr_in == sr_out:
        return x
    from scipy.signal import resample_poly

    g = math.gcd(sr_in, sr_out)
    return resample_poly(x, sr_out // g, sr_in // g)



def make_babble_sources(voices: Sequence[str], seed, sample_rate: int,
                        n_words: int = 30) -> list[tuple[str, np.ndarray]]:
    """Clean speech of ``voices`` (one long random text each) to make babble from.

    Parameters
    ----------
    voices : sequence of str
        espeak-ng voices, one source each.
    seed : int, sequence of int or numpy.random.SeedSequence
        Seed of the texts, rates and pitches.
    sample_rate : int
        Sample rate of the sources in Hz.
    n_words : int, optional
        Length of each text in words.

    Returns
    -------
    list of (str, numpy.ndarray of shape (n_samples,))
        ``(voice, clean speech at sample_rate)`` pairs, in the order of
        ``voices``.
    """
    rng = np.random.default_rng(seed)
    out = []
    for voice in voices:
        text = random_text(rng, n_words)
        x, sr = run_espeak(voice, text, int(rng.integers(140, 181)), int(rng.integers(30, 71)))
        out.append((voice, resample(x, sr, sample_rate)))
    return out

