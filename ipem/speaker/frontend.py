"""Acoustic front-end for GMM-UBM speaker verification.

Pipeline used by :func:`extract_features`::

    read_audio -> MFCC (+ deltas) [-> RASTA] -> VAD -> normalisation

* :func:`read_audio` loads any file libsndfile understands as a float64 mono
  signal at the requested sample rate (polyphase resampling when needed).
* :func:`mfcc_features` computes ``n_ceps`` static MFCCs (c0 replaced by the
  log energy of the analysis band) plus deltas and delta-deltas:
  ``3 * n_ceps`` (default 60) dimensions.  At 8 kHz the mel filterbank spans
  the telephone band, 300-3400 Hz, by default (below 300 Hz a telephone
  channel carries only noise); above 8 kHz it spans 0 Hz to Nyquist.
* :func:`energy_vad` (:mod:`ipem.speaker.vad`) keeps the speech frames; its
  default rule fits a 3-component Gaussian mixture to the frame
  log-energies, so it adapts to the noise level.  The energies it sees are
  those of the analysis band without pre-emphasis (:func:`frame_log_energy`),
  where speech stands out most from noise.
* :mod:`ipem.speaker.featnorm` normalises the speech frames: per-utterance
  CMVN (default), sliding CMN/CMVN or feature warping over a 3 s window; RASTA
  filtering of the static cepstra is an option.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .featnorm import NORMALISATIONS, cmvn, normalise, rasta_filter
from .vad import VAD_METHODS, energy_vad

logger = logging.getLogger(__name__)

__all__ = [
    "read_audio",
    "extract_file",
    "mfcc_features",
    "frame_log_energy",
    "band_edges",
    "vad_mask",
    "energy_vad",
    "cmvn",
    "extract_features",
    "extract_many",
    "NoSpeechError",
    "VAD_METHODS",
    "NORMALISATIONS",
]

#: Feature formats :func:`extract_many` writes (Kaldi archives are written otherwise).
WRITE_FORMATS = ("htk", "npy", "h5")

#: Telephone band (Hz) the filterbank spans by default at sample rates <= 8 kHz.
TELEPHONE_BAND = (300.0, 3400.0)


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
        is a WAV file shorter than its header says (truncated, e.g. by an
        interrupted copy), or ``sample_rate`` is not a positive integer.
    ipem.MissingDependencyError
        Without :mod:`soundfile` (``pip install 'ipem[speaker]'``).
    """
    import struct

    from .._optional import require

    sf = require("soundfile", "to read audio files")
    path = Path(path)
    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    sample_rate = int(sample_rate)
    if not path.exists():
        raise FileNotFoundError(f"audio file not found: {path}")
    # libsndfile reads what there is of a truncated WAV file without a word: compare the
    # size its data chunk announces with the bytes present (0 and 0xFFFFFFFF mark a
    # stream whose size was never filled in, which is not a truncation)
    try:
        with open(path, "rb") as fh:
            head, size = fh.read(12), os.fstat(fh.fileno()).st_size
            order = {b"RIFF": "<", b"RIFX": ">"}.get(head[:4])
            pos, byte_rate = 12, 0
            while order and head[8:12] == b"WAVE" and pos + 8 <= size:
                fh.seek(pos)
                chunk, n = struct.unpack(order + "4sI", fh.read(8))
                raw = fh.read(12) if chunk == b"fmt " else b""
                if len(raw) == 12:
                    byte_rate = struct.unpack(order + "I", raw[8:12])[0]
                elif chunk == b"data":
                    have = size - pos - 8
                    if n not in (0, 0xFFFFFFFF) and n > have:
                        secs = (f" ({n / byte_rate:.2f} s; {have / byte_rate:.2f} s present)"
                                if byte_rate else "")
                        raise ValueError(f"audio file {path} is truncated: its header announces "
                                         f"{n} bytes of samples, the file holds {have}{secs}")
                    break
                pos += 8 + n + (n & 1)
    except OSError as exc:
        raise ValueError(f"cannot read audio file {path}: {exc.strerror or exc}") from exc
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
# Spectral analysis
# ---------------------------------------------------------------------------
def _nfft_for(sample_rate: int, winlen: float) -> int:
    frame_len = int(round(winlen * sample_rate))
    return 1 << max(0, int(math.ceil(math.log2(max(frame_len, 1)))))


def band_edges(sample_rate: int, low_freq: float | None = None,
               high_freq: float | None = None) -> tuple[float, float]:
    """The analysis band: the given edges, or the defaults for the sample rate.

    Parameters
    ----------
    sample_rate : int
        Sample rate in Hz.
    low_freq, high_freq : float or None, optional
        Band edges in Hz.  ``None``: the telephone band 300-3400 Hz at
        sample rates <= 8000 Hz, 0 Hz and Nyquist above.

    Returns
    -------
    (float, float)
        ``(low, high)`` with ``0 <= low < high <= sample_rate / 2``.

    Raises
    ------
    ValueError
        For edges outside that range.
    """
    narrow = sample_rate <= 8000
    low = (TELEPHONE_BAND[0] if narrow else 0.0) if low_freq is None else float(low_freq)
    high = (TELEPHONE_BAND[1] if narrow else sample_rate / 2) if high_freq is None \
        else float(high_freq)
    if not (0.0 <= low < high <= sample_rate / 2):
        raise ValueError(f"the band {low:g}-{high:g} Hz must satisfy 0 <= low < high <= "
                         f"{sample_rate / 2:g} Hz (Nyquist)")
    return low, high


def _prepare(signal, dither, seed):
    x = np.asarray(signal, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"signal must be 1-D (mono), got shape {x.shape}")
    if x.size == 0:
        raise ValueError("signal is empty")
    if not np.all(np.isfinite(x)):
        raise ValueError("signal contains NaN or infinite samples")
    if dither and dither > 0:
        rng = np.random.default_rng(seed)
        x = x + dither * rng.standard_normal(x.size)
    return x


def _frames(x, frame_len, frame_step, window):
    """Overlapping windowed frames of ``x``: (n_frames, frame_len), a view-based
    equivalent of :func:`python_speech_features.sigproc.framesig` (same frame count,
    zero padding of the last frame and rounding of the lengths)."""
    from python_speech_features.sigproc import round_half_up

    frame_len = int(round_half_up(frame_len))
    frame_step = int(round_half_up(frame_step))
    n = x.size
    n_frames = 1 if n <= frame_len else 1 + int(math.ceil((n - frame_len) / frame_step))
    padded = np.zeros((n_frames - 1) * frame_step + frame_len)
    padded[:n] = x[:padded.size]
    view = np.lib.stride_tricks.sliding_window_view(padded, frame_len)[::frame_step]
    return view * window(frame_len)


def _power_spectrum(x, sample_rate, winlen, winstep, preemph):
    """Power spectra of Hamming-windowed frames, (n_frames, nfft // 2 + 1), and nfft."""
    if preemph:
        x = np.append(x[0], x[1:] - preemph * x[:-1])
    frames = _frames(x, winlen * sample_rate, winstep * sample_rate, np.hamming)
    nfft = _nfft_for(sample_rate, winlen)
    spec = np.fft.rfft(frames, nfft)
    return (spec.real ** 2 + spec.imag ** 2) / nfft, nfft


def _log_band_energy(pspec, nfft, sample_rate, low, high):
    """ln of the power in [low, high] Hz per frame (all bins for the full band)."""
    f = np.arange(pspec.shape[1]) * (sample_rate / nfft)
    energy = pspec[:, (f >= low) & (f <= high)].sum(axis=1)
    return np.log(np.maximum(energy, np.finfo(np.float64).eps))


@functools.lru_cache(maxsize=16)
def _filterbank(n_filters, nfft, sample_rate, low, high):
    from python_speech_features import get_filterbanks

    fb = get_filterbanks(n_filters, nfft, sample_rate, low, high)
    if not np.all(fb.sum(axis=1) > 0):
        raise ValueError(f"{n_filters} mel filters over {low:g}-{high:g} Hz leave some filter "
                         f"without an FFT bin (nfft={nfft}); use fewer filters or a wider band")
    fb.flags.writeable = False
    return fb


def _static_mfcc(x, sample_rate, n_ceps, n_filters, winlen, winstep, low, high):
    """Static MFCCs (c0 = ln band energy), float64 (n_frames, n_ceps), of a prepared signal."""
    from python_speech_features import lifter
    from scipy.fft import dct

    if n_filters is None:
        n_filters = 24 if sample_rate <= 8000 else 26
    if n_ceps > n_filters:
        raise ValueError(f"n_ceps ({n_ceps}) must not exceed n_filters ({n_filters})")
    pspec, nfft = _power_spectrum(x, sample_rate, winlen, winstep, 0.97)
    fb = _filterbank(int(n_filters), nfft, int(sample_rate), float(low), float(high))
    eps = np.finfo(np.float64).eps
    feats = dct(np.log(np.maximum(pspec @ fb.T, eps)), type=2, axis=1, norm="ortho")[:, :n_ceps]
    feats = lifter(feats, 22)
    feats[:, 0] = _log_band_energy(pspec, nfft, sample_rate, low, high)
    return feats


def mfcc_features(
    signal: np.ndarray,
    sample_rate: int,
    *,
    n_ceps: int = 20,
    n_filters: int | None = None,
    winlen: float = 0.025,
    winstep: float = 0.01,
    low_freq: float | None = None,
    high_freq: float | None = None,
    deltas: bool = True,
    dither: float = 1e-5,
    seed: int = 0,
) -> np.ndarray:
    """MFCC (+ delta + delta-delta) features of a signal.

    The analysis is that of :func:`python_speech_features.mfcc` (pre-emphasis
    0.97, Hamming window, lifter 22), except that c0 is the natural log of
    the frame energy within the filterbank's band (all bins for the full band,
    as python_speech_features does).

    Parameters
    ----------
    signal : numpy.ndarray, shape (n_samples,)
        Mono signal, nominally in [-1, 1].
    sample_rate : int
        Sample rate of ``signal`` in Hz.
    n_ceps : int, optional
        Number of static cepstra (default 20), c0 included.
    n_filters : int or None, optional
        Mel filters; ``None`` means 24 at <= 8 kHz and 26 above.
    winlen, winstep : float, optional
        Window length and shift in seconds (25 ms / 10 ms).
    low_freq, high_freq : float or None, optional
        Band edges of the mel filterbank in Hz; ``None``: 300-3400 Hz at
        sample rates <= 8 kHz, 0 Hz to Nyquist above (:func:`band_edges`).
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
        Finite features, one row per frame: ``n_frames = 1 + ceil((n_samples -
        winlen * sample_rate) / (winstep * sample_rate))``.
    """
    low, high = band_edges(sample_rate, low_freq, high_freq)
    static = _static_mfcc(_prepare(signal, dither, seed), sample_rate, n_ceps, n_filters,
                          winlen, winstep, low, high)
    if not deltas:
        return static.astype(np.float32)
    return _with_deltas(static).astype(np.float32)


def _delta(feat, n=2):
    """Regression deltas over +-n frames, edges repeated: the deltas of
    :func:`python_speech_features.delta`, vectorised over frames."""
    t = feat.shape[0]
    padded = np.pad(feat, ((n, n), (0, 0)), mode="edge")
    out = np.zeros_like(feat)
    for i in range(1, n + 1):
        out += i * (padded[n + i:n + i + t] - padded[n - i:n - i + t])
    return out / (2 * sum(i * i for i in range(1, n + 1)))


def _with_deltas(static):
    d1 = _delta(static, 2)
    return np.hstack([static, d1, _delta(d1, 2)])


def frame_log_energy(
    signal: np.ndarray,
    sample_rate: int,
    *,
    winlen: float = 0.025,
    winstep: float = 0.01,
    low_freq: float = 0.0,
    high_freq: float | None = None,
    preemph: float = 0.97,
) -> np.ndarray:
    """Natural log of the per-frame energy, optionally of one band only.

    With the defaults it is c0 of :func:`python_speech_features.mfcc` (whole
    band, after pre-emphasis).  :func:`extract_features` gives the VAD the
    energy of the filterbank's band without pre-emphasis (``preemph=0``),
    which keeps low-frequency voiced speech above the noise.

    Parameters
    ----------
    signal : numpy.ndarray, shape (n_samples,)
        Mono signal.
    sample_rate : int
        Sample rate in Hz.
    winlen, winstep : float, optional
        Window length and shift in seconds.
    low_freq, high_freq : float or None, optional
        Band in Hz (default: 0 Hz to Nyquist).
    preemph : float, optional
        Pre-emphasis coefficient; 0 disables it.

    Returns
    -------
    numpy.ndarray, shape (n_frames,), float64
        ``ln`` of the frame energy (power spectrum of the Hamming-windowed
        frame summed over the band's bins), floored at ``ln(eps)``.
    """
    x = np.asarray(signal, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError("signal must be a non-empty 1-D array")
    low, high = band_edges(sample_rate, low_freq,
                           sample_rate / 2 if high_freq is None else high_freq)
    pspec, nfft = _power_spectrum(x, sample_rate, winlen, winstep, preemph)
    return _log_band_energy(pspec, nfft, sample_rate, low, high)


# ---------------------------------------------------------------------------
# Speech frames
# ---------------------------------------------------------------------------
def _vad_mask(x, sample_rate, method, winlen, winstep, low, high, vad_kwargs):
    pspec, nfft = _power_spectrum(x, sample_rate, winlen, winstep, 0.0)
    log_e = _log_band_energy(pspec, nfft, sample_rate, low, high)
    return energy_vad(log_e, **{"method": method, **(vad_kwargs or {})})


def vad_mask(
    signal: np.ndarray,
    sample_rate: int,
    vad: str = "gmm",
    *,
    winlen: float = 0.025,
    winstep: float = 0.01,
    low_freq: float | None = None,
    high_freq: float | None = None,
    dither: float = 1e-5,
    seed: int = 0,
    **vad_kwargs,
) -> np.ndarray:
    """The speech frames :func:`extract_features` keeps, for a signal.

    The frames' log-energy in the filterbank's band, without pre-emphasis,
    goes through :func:`energy_vad`.

    Parameters
    ----------
    signal : numpy.ndarray, shape (n_samples,)
        Mono signal.
    sample_rate : int
        Sample rate in Hz.
    vad : {"gmm", "kaldi", "percentile"}, optional
        The rule (:data:`VAD_METHODS`).
    winlen, winstep, low_freq, high_freq, dither, seed
        As for :func:`mfcc_features`.
    **vad_kwargs
        More options of :func:`energy_vad`.

    Returns
    -------
    numpy.ndarray, shape (n_frames,), bool
        One flag per frame of :func:`mfcc_features`.
    """
    low, high = band_edges(sample_rate, low_freq, high_freq)
    return _vad_mask(_prepare(signal, dither, seed), sample_rate, vad, winlen, winstep, low, high,
                     vad_kwargs)


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
    low_freq: float | None = None,
    high_freq: float | None = None,
    dither: float = 1e-5,
    seed: int = 0,
    vad: bool | str = True,
    norm: str = "cmvn",
    norm_window: int = 300,
    rasta: bool = False,
    variance_norm: bool = True,
    vad_kwargs: dict | None = None,
) -> np.ndarray:
    """read -> MFCC (+deltas) [-> RASTA] -> VAD -> normalisation, for one file.

    Parameters
    ----------
    path : str or os.PathLike
        Audio file.
    sample_rate : int, optional
        Analysis sample rate in Hz (the file is resampled to it).
    n_ceps, n_filters, winlen, winstep, low_freq, high_freq, dither, seed
        See :func:`mfcc_features` (by default the filterbank spans 300-3400 Hz
        at 8 kHz).
    vad : bool or {"gmm", "kaldi", "percentile"}, optional
        Drop non-speech frames with :func:`energy_vad` and this rule (True:
        ``"gmm"``, the default); False keeps every frame.  The VAD sees the
        log-energy of the filterbank's band without pre-emphasis.
    norm : {"cmvn", "cmn", "sliding_cmvn", "sliding_cmn", "warp", "none"}, optional
        Normalisation of the speech frames (:mod:`ipem.speaker.featnorm`):
        per-utterance mean and variance (default), mean only, the same over
        a sliding window of ``norm_window`` frames, feature warping over
        ``norm_window`` frames, or none.
    norm_window : int, optional
        Window in frames of the sliding normalisations (default 300 = 3 s).
    rasta : bool, optional
        RASTA-filter the static cepstra (all frames, before deltas and VAD).
    variance_norm : bool, optional
        False turns ``"cmvn"`` into ``"cmn"`` and ``"sliding_cmvn"`` into
        ``"sliding_cmn"`` (the earlier way to ask for mean-only CMN).
    vad_kwargs : dict, optional
        Extra keyword arguments for :func:`energy_vad` (``method`` overrides
        ``vad``).

    Returns
    -------
    numpy.ndarray, shape (n_speech_frames, 3 * n_ceps), float32
        Normalised features of the speech frames.

    Raises
    ------
    NoSpeechError
        (a ValueError) if the VAD finds no speech frame in the file.
    ValueError
        For an unknown ``vad``, ``norm`` or band.
    """
    if vad is True:
        vad = "gmm"
    if vad and vad not in VAD_METHODS:
        raise ValueError(f"unknown VAD {vad!r}; expected True, False or one of "
                         f"{sorted(VAD_METHODS)}")
    if norm not in NORMALISATIONS:
        raise ValueError(f"unknown normalisation {norm!r}; expected one of "
                         f"{sorted(NORMALISATIONS)}")
    if not variance_norm:
        norm = {"cmvn": "cmn", "sliding_cmvn": "sliding_cmn"}.get(norm, norm)
    low, high = band_edges(sample_rate, low_freq, high_freq)
    x = _prepare(read_audio(path, sample_rate), dither, seed)
    static = _static_mfcc(x, sample_rate, n_ceps, n_filters, winlen, winstep, low, high)
    feats = _with_deltas(rasta_filter(static) if rasta else static)
    if vad:
        mask = _vad_mask(x, sample_rate, vad, winlen, winstep, low, high, vad_kwargs)
        if not mask.any():
            raise NoSpeechError(f"no speech frames found in {path} (silent or too quiet)")
        feats = feats[mask]
    return normalise(feats, norm, norm_window)
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
        from ..io.atomic import remove_stale_temporaries
        from ..parallel import as_controller

        try:
            as_controller(controller).map_tasks(_extract_task, jobs, fmt, kwargs,
                                                progress=progress, desc="extract")
        finally:  # what an engine lost mid-write left next to its output
            remove_stale_temporaries(dsts)
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
    from ..progress import progress_iter

    return progress_iter(it, total=total, desc="extract", enabled=progress)
