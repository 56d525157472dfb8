"""Acoustic front-end for GMM-UBM speaker verification.

Pipeline used by :func:`extract_features`::

    read_audio  ->  mfcc_features  ->  energy_vad  ->  cmvn

* :func:`read_audio` loads any file libsndfile understands as a float64 mono
  signal at the requested sample rate (polyphase resampling when needed).
* :func:`mfcc_features` computes ``n_ceps`` static MFCCs (c0 replaced by the
  log frame energy) plus deltas and delta-deltas with
  :mod:`python_speech_features`: ``3 * n_ceps`` (default 60) dimensions.
* :func:`energy_vad` keeps frames whose energy is within ``dynamic_range_db``
  of the loudest frame, above an estimated noise floor and above an absolute
  floor (so digital silence never counts as speech).
* :func:`cmvn` normalises each utterance to zero mean and unit variance.
"""

from __future__ import annotations

import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "read_audio",
    "extract_file",
    "mfcc_features",
    "frame_log_energy",
    "energy_vad",
    "cmvn",
    "extract_features",
    "extract_many",
    "NoSpeechError",
]

#: Feature formats :func:`extract_many` writes (Kaldi archives are written otherwise).
WRITE_FORMATS = ("htk", "npy", "h5")

#: Natural-log energy -> dB.
_LN_TO_DB = 10.0 / math.log(10.0)


class NoSpeechError(ValueError):
    """Raised when voice activity detection finds no speech in a file."""


# ---------------------------------------------------------------------------
# Audio input
# ---------------------------------------------------------------------------
def read_audio(path: str | os.PathLike, sample_rate: int = 8000) -> np.ndarray:
    """Read an audio file as a mono float64 signal at ``sample_rate``.

    Parameters
    ----------
    path : str or os.PathLike
        Audio file in any format libsndfile reads (WAV, FLAC, ...).
    sample_rate : int, optional
        Sample rate of the returned signal in Hz (default 8000).  The file is
        resampled with :func:`scipy.signal.resample_poly` if its own rate
        differs.

    Returns
    -------
    numpy.ndarray, shape (n_samples,), float64
        Mono signal (channels averaged), nominally in [-1, 1].

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file cannot be decoded, holds no samples or non-finite samples,
        or ``sample_rate`` is not a positive integer.
    """
    import soundfile as sf

    path = Path(path)
    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    sample_rate = int(sample_rate)
    if not path.exists():
        raise FileNotFoundError(f"audio file not found: {path}")
    try:
        data, file_rate = sf.read(str(path), dtype="float64", always_2d=True)
    except Exception as exc:  # libsndfile errors are RuntimeError subclasses
        raise ValueError(f"cannot read audio file {path}: {exc}") from exc
    if data.size == 0:
        raise ValueError(f"audio file {path} contains no samples")
    signal = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.all(np.isfinite(signal)):
        raise ValueError(f"audio file {path} contains NaN or infinite samples")
    if file_rate != sample_rate:
        from scipy.signal import resample_poly

        g = math.gcd(int(file_rate), sample_rate)
        signal = resample_poly(signal, sample_rate // g, int(file_rate) // g)
    return np.ascontiguousarray(signal, dtype=np.float64)


# ---------------------------------------------------------------------------
# MFCC
# ---------------------------------------------------------------------------
def _nfft_for(sample_rate: int, winlen: float) -> int:
    frame_len = int(round(winlen * sample_rate))
    return 1 << max(0, int(math.ceil(math.log2(max(frame_len, 1)))))


def _static_mfcc(signal, sample_rate, n_ceps, n_filters, winlen, winstep,
                 low_freq, high_freq, dither, seed):
    """Static MFCCs (c0 = ln frame energy), float64 (n_frames, n_ceps)."""
    from python_speech_features import mfcc

    x = np.asarray(signal, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"signal must be 1-D (mono), got shape {x.shape}")
    if x.size == 0:
        raise ValueError("signal is empty")
    if not np.all(np.isfinite(x)):
        raise ValueError("signal contains NaN or infinite samples")
    if n_filters is None:
        n_filters = 24 if sample_rate <= 8000 else 26
    if n_ceps > n_filters:
        raise ValueError(f"n_ceps ({n_ceps}) must not exceed n_filters ({n_filters})")
    if dither and dither > 0:
        rng = np.random.default_rng(seed)
        x = x + dither * rng.standard_normal(x.size)
    feats = mfcc(
        x,
        samplerate=sample_rate,
        winlen=winlen,
        winstep=winstep,
        numcep=n_ceps,
        nfilt=n_filters,
        nfft=_nfft_for(sample_rate, winlen),
        lowfreq=low_freq,
        highfreq=high_freq,
        preemph=0.97,
        ceplifter=22,
        appendEnergy=True,
        winfunc=np.hamming,
    )
    # python_speech_features floors energies at machine eps, so log() is
    # finite; the floor below is a second line of defence (ln eps ~ -36).
    floor = math.log(np.finfo(np.float64).eps)
    feats = np.nan_to_num(feats, nan=floor, posinf=-floor, neginf=floor)
    feats[:, 0] = np.maximum(feats[:, 0], floor)
    return feats


def mfcc_features(
    signal: np.ndarray,
    sample_rate: int,
    *,
    n_ceps: int = 20,
    n_filters: int | None = None,
    winlen: float = 0.025,
    winstep: float = 0.01,
    low_freq: float = 0.0,
    high_freq: float | None = None,
    deltas: bool = True,
    dither: float = 1e-5,
    seed: int = 0,
) -> np.ndarray:
    """MFCC (+ delta + delta-delta) features of a signal.

    Parameters
    ----------
    signal : numpy.ndarray, shape (n_samples,)
        Mono signal, nominally in [-1, 1].
    sample_rate : int
        Sample rate of ``signal`` in Hz.
    n_ceps : int, optional
        Number of static cepstra (default 20); c0 is replaced by the natural
        log of the frame energy.
    n_filters : int or None, optional
        Mel filters; ``None`` means 24 at <= 8 kHz and 26 above.
    winlen, winstep : float, optional
        Window length and shift in seconds (25 ms / 10 ms).
    low_freq, high_freq : float, optional
        Band edges of the mel filterbank in Hz (default 0 to Nyquist).
    deltas : bool, optional
        Append first and second derivatives (window N=2 each).
    dither : float, optional
        Standard deviation of Gaussian noise added to the signal before
        analysis (guards digital silence); 0 disables it.
    seed : int, optional
        Seed of the dither noise, so features are reproducible.

    Returns
    -------
    numpy.ndarray, shape (n_frames, 3 * n_ceps) or (n_frames, n_ceps), float32
        Finite features, one row per frame.
    """
    from python_speech_features import delta

    static = _static_mfcc(signal, sample_rate, n_ceps, n_filters, winlen, winstep,
                          low_freq, high_freq, dither, seed)
    if not deltas:
        return static.astype(np.float32)
    d1 = delta(static, 2)
    d2 = delta(d1, 2)
    return np.hstack([static, d1, d2]).astype(np.float32)


def frame_log_energy(
    signal: np.ndarray,
    sample_rate: int,
    *,
    winlen: float = 0.025,
    winstep: float = 0.01,
) -> np.ndarray:
    """Natural log of the per-frame energy, as used for c0 by :func:`mfcc_features`.

    Parameters
    ----------
    signal : numpy.ndarray, shape (n_samples,)
        Mono signal.
    sample_rate : int
        Sample rate in Hz.
    winlen, winstep : float, optional
        Window length and shift in seconds.

    Returns
    -------
    numpy.ndarray, shape (n_frames,), float64
        ``ln`` of the frame energy (power spectrum summed over bins after
        pre-emphasis and a Hamming window), floored at ``ln(eps)``.
    """
    from python_speech_features import fbank

    x = np.asarray(signal, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError("signal must be a non-empty 1-D array")
    _, energy = fbank(x, samplerate=sample_rate, winlen=winlen, winstep=winstep,
                      nfilt=1, nfft=_nfft_for(sample_rate, winlen), winfunc=np.hamming)
    return np.log(np.maximum(energy, np.finfo(np.float64).eps))


# ---------------------------------------------------------------------------
# VAD
# ---------------------------------------------------------------------------
def energy_vad(
    x: np.ndarray,
    sample_rate: int | None = None,
    *,
    winlen: float = 0.025,
    winstep: float = 0.01,
    dynamic_range_db: float = 30.0,
    noise_percentile: float = 10.0,
    noise_margin_db: float = 3.0,
    abs_floor_db: float = -60.0,
    min_frames: int = 10,
    smooth: int = 5,
) -> np.ndarray:
    """Energy-based voice activity detection.

    A frame is speech when its energy (in dB) is

    * within ``dynamic_range_db`` of the loudest frame,
    * at least ``noise_margin_db`` above a noise-floor estimate (the
      ``noise_percentile``-th percentile of the frame energies), and
    * above ``abs_floor_db`` (digital silence and dither are never speech).

    The mask is then smoothed with a majority vote over ``smooth`` frames.  If
    fewer than ``min_frames`` frames survive but some frames are above the
    absolute floor, the loudest ``min_frames`` of those are kept instead.

    Parameters
    ----------
    x : numpy.ndarray
        Either a signal, shape (n_samples,), when ``sample_rate`` is given, or
        per-frame natural-log energies, shape (n_frames,), as returned by
        :func:`frame_log_energy` (or column 0 of :func:`mfcc_features`).
    sample_rate : int or None, optional
        Sample rate of ``x`` if it is a signal; ``None`` if it is log-energies.
    winlen, winstep : float, optional
        Framing used when ``x`` is a signal.
    dynamic_range_db, noise_percentile, noise_margin_db, abs_floor_db : float
        Thresholds described above.  Energies are ``10 log10`` of the sum of
        the frame's power spectrum for a signal scaled to [-1, 1].
    min_frames : int, optional
        Keep at least this many frames when any frame is above the absolute floor.
    smooth : int, optional
        Odd window length of the majority filter; <= 1 disables smoothing.

    Returns
    -------
    numpy.ndarray, shape (n_frames,), bool
        True for speech frames.  All False only if no frame is above
        ``abs_floor_db``.
    """
    if sample_rate is not None:
        log_e = frame_log_energy(x, sample_rate, winlen=winlen, winstep=winstep)
    else:
        log_e = np.asarray(x, dtype=np.float64)
        if log_e.ndim != 1:
            raise ValueError(f"log-energies must be 1-D, got shape {log_e.shape}")
    n = log_e.size
    if n == 0:
        return np.zeros(0, dtype=bool)
    if not np.all(np.isfinite(log_e)):
        raise ValueError("log-energies contain NaN or infinite values")
    e_db = log_e * _LN_TO_DB
    above_floor = e_db > abs_floor_db
    if not above_floor.any():
        return np.zeros(n, dtype=bool)
    noise_db = np.percentile(e_db, noise_percentile)
    thresh = max(e_db.max() - dynamic_range_db, noise_db + noise_margin_db)
    mask = (e_db > thresh) & above_floor
    if smooth and smooth > 1 and n >= smooth:
        k = int(smooth) | 1  # force odd
        votes = np.convolve(mask.astype(np.int32), np.ones(k, dtype=np.int32), mode="same")
        mask = (votes > k // 2) & above_floor
    if mask.sum() < min(min_frames, int(above_floor.sum())):
        k = min(min_frames, int(above_floor.sum()))
        order = np.argsort(-e_db, kind="stable")[:k]
        mask = np.zeros(n, dtype=bool)
        mask[order] = True
    return mask


# ---------------------------------------------------------------------------
# CMVN
# ---------------------------------------------------------------------------
def cmvn(features: np.ndarray, variance: bool = True) -> np.ndarray:
    """Per-utterance cepstral mean (and variance) normalisation.

    Parameters
    ----------
    features : numpy.ndarray, shape (n_frames, n_dims)
        Feature matrix of one utterance.
    variance : bool, optional
        Also scale every dimension to unit variance (dimensions whose
        standard deviation is ~0 are only centred).

    Returns
    -------
    numpy.ndarray, shape (n_frames, n_dims), float32
        Normalised features.
    """
    X = np.asarray(features, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"features must be 2-D (n_frames, n_dims), got shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError("features have no frames")
    Y = X - X.mean(axis=0)
    if variance:
        std = Y.std(axis=0)
        std = np.where(std > 1e-8, std, 1.0)
        Y = Y / std
    return Y.astype(np.float32)


# ---------------------------------------------------------------------------
# Whole pipeline
# ---------------------------------------------------------------------------
def extract_features(
    path: str | os.PathLike,
    sample_rate: int = 8000,
    *,
    n_ceps: int = 20,
    n_filters: int | None = None,
    winlen: float = 0.025,
    winstep: float = 0.01,
    low_freq: float = 0.0,
    high_freq: float | None = None,
    dither: float = 1e-5,
    seed: int = 0,
    vad: bool = True,
    variance_norm: bool = True,
    vad_kwargs: dict | None = None,
) -> np.ndarray:
    """read -> MFCC (+deltas) -> energy VAD -> CMVN for one file.

    Parameters
    ----------
    path : str or os.PathLike
        Audio file.
    sample_rate : int, optional
        Analysis sample rate in Hz (the file is resampled to it).
    n_ceps, n_filters, winlen, winstep, low_freq, high_freq, dither, seed
        See :func:`mfcc_features`.
    vad : bool, optional
        Drop non-speech frames (default True).
    variance_norm : bool, optional
        Variance normalisation in :func:`cmvn`.
    vad_kwargs : dict, optional
        Extra keyword arguments for :func:`energy_vad`.

    Returns
    -------
    numpy.ndarray, shape (n_speech_frames, 3 * n_ceps), float32
        Normalised features of the speech frames.

    Raises
    ------
    NoSpeechError
        (a ValueError) if the VAD finds no speech frame in the file.
    """
    from python_speech_features import delta

    signal = read_audio(path, sample_rate)
    static = _static_mfcc(signal, sample_rate, n_ceps, n_filters, winlen, winstep,
                          low_freq, high_freq, dither, seed)
    d1 = delta(static, 2)
    d2 = delta(d1, 2)
    feats = np.hstack([static, d1, d2])
    if vad:
        mask = energy_vad(static[:, 0], **(vad_kwargs or {}))
        if not mask.any():
            raise NoSpeechError(f"no speech frames found in {path} (silent or too quiet)")
        feats = feats[mask]
    return cmvn(feats, variance=variance_norm)


def extract_file(
    path: str | os.PathLike,
    out: str | os.PathLike,
    fmt: str | None = None,
    **kwargs,
):
    """Extract the features of one audio file and write them to a feature file.

    The one place where audio becomes a feature file: :func:`extract_many`,
    ``ipem extract``, the demo and the notebooks all go through it.

    Parameters
    ----------
    path : str or os.PathLike
        Audio file.
    out : str or os.PathLike
        Feature file to write (atomically, with ``ipem.io.write``); its
        directory must exist.
    fmt : {"htk", "npy", "h5"} or None, optional
        Feature file format; inferred from the extension of ``out`` when
        ``None``.  HTK files get the frame period ``winstep`` (in 100 ns
        units).
    **kwargs
        Passed to :func:`extract_features` (``sample_rate``, ``winstep``, ...).

    Returns
    -------
    ipem.io.FeatureRef
        The written file: absolute ``path``, ``n_frames`` speech frames of
        ``n_features`` (default 60) features.

    Raises
    ------
    NoSpeechError
        If the file holds no speech (a ValueError).
    ValueError, FileNotFoundError
        For an unreadable audio file or bad options (the file is named).
    """
    from ipem import io as ipem_features

    X = extract_features(path, **kwargs)
    period = int(round(kwargs.get("winstep", 0.01) * 1e7))  # HTK units of 100 ns
    return ipem_features.write(out, X, fmt, sample_period=period)


def _extract_task(job, fmt, kwargs):
    """One (audio, feature file) job of :func:`extract_many` (runs where the task runs)."""
    return extract_file(job[0], job[1], fmt, **kwargs)


def extract_many(
    paths: Sequence[str | os.PathLike] | Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    fmt: str = "htk",
    n_jobs: int = 2,
    *,
    root: str | os.PathLike | None = None,
    controller=None,
    progress: bool = False,
    **kwargs,
) -> list[Path]:
    """Extract features of many files with :func:`extract_file`.

    Parameters
    ----------
    paths : sequence of path-like
        Audio files.
    out_dir : path-like
        Output directory (created if needed).
    fmt : {"htk", "npy", "h5"}, optional
        Feature file format, passed to ``ipem.io.write``; it is also the
        file extension.  HTK files get the frame period ``winstep``.
    n_jobs : int, optional
        Number of worker threads when no ``controller`` is given.
    root : path-like, optional
        If given, each output mirrors the input's path relative to ``root``
        (``out_dir/<relative path with .fmt suffix>``); otherwise outputs are
        ``out_dir/<stem>.<fmt>`` and stems must be unique.
    controller : Controller, int, DirectView or None, optional
        Run one load-balanced task per file there (see
        :func:`ipem.as_controller`); the engines must see the same file
        system.  ``None``: ``n_jobs`` threads in this process.
    progress : bool, optional
        Show a progress bar.
    **kwargs
        Passed to :func:`extract_features` (e.g. ``sample_rate``).

    Returns
    -------
    list of pathlib.Path
        Output files (absolute), in the order of ``paths``.

    Raises
    ------
    ValueError
        If two outputs would have the same name, or an input is not under
        ``root``; from the extraction of a file (see :func:`extract_file`).
    ipem.EngineValueError
        The same, raised on engines (the message names the file).
    """
    if fmt not in WRITE_FORMATS:
        raise ValueError(f"unknown feature format {fmt!r}; expected one of {WRITE_FORMATS}")
    paths = [Path(p).absolute() for p in paths]
    out_dir = Path(out_dir).absolute()
    if root is not None:
        root = Path(root).absolute()
        dsts = []
        for p in paths:
            try:
                rel = p.relative_to(root)
            except ValueError:
                raise ValueError(f"audio file {p} is not under the root {root}") from None
            dsts.append(out_dir / rel.with_suffix("." + fmt))
    else:
        dsts = [out_dir / (p.stem + "." + fmt) for p in paths]
    if len(set(dsts)) != len(dsts):
        raise ValueError("output names collide (same file stem twice); pass root= to mirror directories")
    for d in {d.parent for d in dsts}:
        d.mkdir(parents=True, exist_ok=True)
    jobs = [(str(p), str(d)) for p, d in zip(paths, dsts)]
    logger.debug("extracting %d files to %s (%s)", len(jobs), out_dir, fmt)
    if controller is not None:
        from ..parallel import as_controller

        as_controller(controller).map_tasks(_extract_task, jobs, fmt, kwargs,
                                            progress=progress, desc="extract")
    elif n_jobs <= 1 or len(jobs) <= 1:
        for j in _progress(jobs, progress):
            _extract_task(j, fmt, kwargs)
    else:
        with ThreadPoolExecutor(max_workers=n_jobs) as pool:
            for _ in _progress(pool.map(lambda j: _extract_task(j, fmt, kwargs), jobs),
                               progress, total=len(jobs)):
                pass
    return dsts


def _progress(it, progress, total=None):
    if not progress:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, total=total, desc="extract")
