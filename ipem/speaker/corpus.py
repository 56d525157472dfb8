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
* additive noise (white, pink or brown) at a random SNR,
* random level, and, for half of the utterances, G.711 mu-law companding.

:func:`generate_corpus` writes the WAV files and NIST-style lists; run
``scripts/install_speech_deps.sh`` as root first to install espeak-ng, sox,
mbrola and the voices.
"""

from __future__ import annotations

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
from .texts import random_text

logger = logging.getLogger(__name__)

__all__ = [
    "ENGLISH_MBROLA_VOICES",
    "CorpusInfo",
    "available_voices",
    "random_text",
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
def _run_espeak(voice: str, text: str, rate: int, pitch: int) -> tuple[np.ndarray, int]:
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
        x, sr = sf.read(wav, dtype="float64", always_2d=True)
    x = x.mean(axis=1)
    if x.size == 0 or not np.any(x):
        raise RuntimeError(f"espeak-ng produced silence for voice {voice!r} and text {text!r}")
    return x, int(sr)


def _resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    if sr_in == sr_out:
        return x
    from scipy.signal import resample_poly

    g = math.gcd(sr_in, sr_out)
    return resample_poly(x, sr_out // g, sr_in // g)


def _telephone_bandpass(x: np.ndarray, sr: int) -> np.ndarray:
    from scipy.signal import butter, sosfilt

    sos = butter(4, [300.0, 3400.0], btype="bandpass", fs=sr, output="sos")
    return sosfilt(sos, x)


def _handset(x: np.ndarray, sr: int, tilt: float, f0: float, gain_db: float, q: float) -> np.ndarray:
    """First-order tilt ``1 + tilt z^-1`` and one peaking-EQ biquad (RBJ cookbook)."""
    from scipy.signal import lfilter

    y = lfilter([1.0, tilt], [1.0], x)
    a = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * math.pi * f0 / sr
    alpha = math.sin(w0) / (2.0 * q)
    b = [1.0 + alpha * a, -2.0 * math.cos(w0), 1.0 - alpha * a]
    den = [1.0 + alpha / a, -2.0 * math.cos(w0), 1.0 - alpha / a]
    return lfilter(b, den, y)


def _colored_noise(rng: np.random.Generator, n: int, kind: str) -> np.ndarray:
    white = rng.standard_normal(n)
    if kind == "white":
        return white
    spec = np.fft.rfft(white)
    f = np.arange(spec.size, dtype=np.float64)
    f[0] = 1.0
    spec = spec / (np.sqrt(f) if kind == "pink" else f)  # brown: 1/f amplitude
    return np.fft.irfft(spec, n)


def _active_power(x: np.ndarray, sr: int) -> float:
    """Mean power of the frames within 30 dB of the loudest 20 ms frame."""
    flen = max(1, int(0.02 * sr))
    n = x.size // flen
    if n == 0:
        return float(np.mean(x**2))
    p = np.mean(x[: n * flen].reshape(n, flen) ** 2, axis=1)
    act = p > p.max() * 1e-3
    return float(p[act].mean())


def _mulaw(x: np.ndarray, mu: float = 255.0) -> np.ndarray:
    """G.711-style mu-law companding with 8-bit quantisation (encode + decode)."""
    x = np.clip(x, -1.0, 1.0)
    y = np.sign(x) * np.log1p(mu * np.abs(x)) / math.log1p(mu)
    q = np.round((y + 1.0) * 127.5) / 127.5 - 1.0
    return np.sign(q) * ((1.0 + mu) ** np.abs(q) - 1.0) / mu


def _write_wav_atomic(path: Path, x: np.ndarray, sr: int) -> None:
    import soundfile as sf

    from ..io import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(str(path)) as tmp:
        sf.write(tmp, x, sr, format="WAV", subtype="PCM_16")


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
    snr_db: tuple[float, float] = (10.0, 25.0),
    rate_range: tuple[int, int] = (135, 185),
    pitch_range: tuple[int, int] = (30, 70),
) -> tuple[np.ndarray, dict]:
    """Synthesise one telephone-quality utterance with random session effects.

    Parameters
    ----------
    voice : str
        espeak-ng voice, e.g. ``"mb-us1"``.
    text : str
        Text to speak.
    out_path : path-like, optional
        If given, the result is written there atomically as 16-bit PCM WAV.
    sample_rate : int, optional
        Output sample rate in Hz (>= 8000).
    seed : int or numpy.random.SeedSequence, optional
        Seed of every random choice (rate, pitch, handset, noise, level...).
    snr_db : (float, float), optional
        Range of the signal-to-noise ratio in dB (speech power over active
        frames versus in-band noise power).
    rate_range, pitch_range : (int, int), optional
        Ranges of the espeak-ng speaking rate (words/min) and pitch (0-99).

    Returns
    -------
    signal : numpy.ndarray, shape (n_samples,), float64
        The utterance exactly as written (16-bit values scaled to [-1, 1)).
    params : dict
        The random parameters used (rate, pitch, snr_db, noise, gain_db, ...).
    """
    rng = np.random.default_rng(seed)
    rate = int(rng.integers(rate_range[0], rate_range[1] + 1))
    pitch = int(rng.integers(pitch_range[0], pitch_range[1] + 1))
    clean, sr_voice = _run_espeak(voice, text, rate, pitch)

    x = _resample(clean, sr_voice, sample_rate)
    pad = rng.uniform(0.1, 0.6, size=2)
    x = np.concatenate([np.zeros(int(pad[0] * sample_rate)), x, np.zeros(int(pad[1] * sample_rate))])

    tilt = float(rng.uniform(-0.4, 0.4))
    eq_f0 = float(rng.uniform(500.0, 3000.0))
    eq_gain = float(rng.uniform(-8.0, 8.0))
    eq_q = float(rng.uniform(0.7, 2.0))
    x = _handset(x, sample_rate, tilt, eq_f0, eq_gain, eq_q)
    x = _telephone_bandpass(x, sample_rate)

    snr = float(rng.uniform(snr_db[0], snr_db[1]))
    noise_kind = ("white", "pink", "brown")[int(rng.integers(3))]
    noise = _telephone_bandpass(_colored_noise(rng, x.size, noise_kind), sample_rate)
    p_speech = _active_power(x, sample_rate)
    p_noise = float(np.mean(noise**2))
    x = x + noise * math.sqrt(p_speech / (p_noise * 10.0 ** (snr / 10.0)))

    level_db = float(rng.uniform(-32.0, -14.0))  # active RMS level, dBFS
    x = x * (10.0 ** (level_db / 20.0) / math.sqrt(_active_power(x, sample_rate)))
    peak = float(np.max(np.abs(x)))
    if peak > 0.95:
        x = x * (0.95 / peak)
    use_mulaw = bool(rng.random() < 0.5)
    if use_mulaw:
        x = _mulaw(x)
    # quantise exactly as the 16-bit file will hold it
    x = np.clip(np.round(x * 32768.0), -32768, 32767) / 32768.0

    params = {
        "voice": voice,
        "rate": rate,
        "pitch": pitch,
        "snr_db": round(snr, 2),
        "noise": noise_kind,
        "level_dbfs": round(level_db, 2),
        "tilt": round(tilt, 3),
        "eq_hz": round(eq_f0, 1),
        "eq_db": round(eq_gain, 2),
        "mulaw": use_mulaw,
        "native_rate": sr_voice,
    }
    if out_path is not None:
        _write_wav_atomic(Path(out_path), x, sample_rate)
    return x, params


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


def generate_corpus(
    out_dir: str | os.PathLike,
    *,
    n_speakers: int | None = None,
    n_enroll: int = 3,
    n_test: int = 4,
    n_ubm: int = 4,
    sample_rate: int = 8000,
    snr_db: tuple[float, float] = (10.0, 25.0),
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
    snr_db : (float, float), optional
        Range from which each utterance's SNR is drawn.
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
    lo_snr, hi_snr = (float(v) for v in snr_db)
    if not (math.isfinite(lo_snr) and math.isfinite(hi_snr)) or lo_snr > hi_snr:
        raise ValueError(f"snr_db must be a (low, high) range with low <= high, got {snr_db!r}")
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
                plan.append((spk, voice, role, utt, rel, text, child_seeds[k]))
                k += 1

    # -- synthesise (parallel) --------------------------------------------
    logger.info("synthesising %d utterances of %d speakers -> %s", len(plan), n_speakers, out)
    def work(item):
        spk, voice, role, utt, rel, text, ss = item
        try:
            _, params = synthesize_utterance(voice, text, out / rel, sample_rate=int(sample_rate),
                                             seed=ss, snr_db=(lo_snr, hi_snr))
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
    for spk, _v, role, _u, rel, _t, _s in plan:
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
                 "mulaw", "native_rate"]
    meta_lines = ["\t".join(["utt", "speaker", "voice", "role", "path"] + meta_keys + ["text"])]
    for (spk, voice, role, utt, rel, text, _s), params in zip(plan, results):
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
    )
