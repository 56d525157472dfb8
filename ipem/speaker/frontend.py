"""Acoustic front-end for GMM-UBM speaker verification: audio files in, features out.

Pipeline used by :func:`extract_features`::

    read_audio -> MFCC (+ deltas) [-> RASTA] -> VAD -> normalisation

* :func:`read_audio` loads any file libsndfile understands as a float64 mono
  signal at the requested sample rate (polyphase resampling when needed).
* :func:`ipem.speaker.mfcc.mfcc_features` computes ``n_ceps`` static MFCCs (c0
  replaced by the log energy of the analysis band) plus deltas and
  delta-deltas: ``3 * n_ceps`` (default 60) dimensions.  At 8 kHz the mel
  filterbank spans the telephone band, 300-3400 Hz, by default; above 8 kHz it
  spans 0 Hz to Nyquist (:mod:`ipem.speaker.dsp`).
* :func:`ipem.speaker.vad.energy_vad` keeps the speech frames; its default
  rule fits a 3-component Gaussian mixture to the frame log-energies, so it
  adapts to the noise level.  The energies it sees are by default those of the
  analysis band without pre-emphasis (:func:`ipem.speaker.vad.vad_mask`), where
  speech stands out most from noise; ``vad_energy="full"``: of the whole spectrum
  after pre-emphasis.
* :mod:`ipem.speaker.featnorm` normalises the speech frames: per-utterance
  CMVN (default), sliding CMN/CMVN or feature warping over a 3 s window; RASTA
  filtering of the static cepstra is an option.

:func:`extract_file` writes one feature file, :func:`extract_many` many (in
threads or as tasks on a cluster); the formats and their file suffixes come
from the format registry (:mod:`ipem.io.formats`).
"""

from __future__ import annotations

import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..io.formats import suffix, write_names
from ..io.preflight import check_regular_file
from .dsp import band_edges, prepare_signal
from .featnorm import FEATURE_NORMALIZATIONS, normalize_features, rasta_filter
from .mfcc import C0_ENERGIES, static_mfcc, with_deltas
from .vad import VAD_ENERGIES, VAD_METHODS, band_vad_mask

logger = logging.getLogger(__name__)

__all__ = [
    "read_audio",
    "extract_features",
    "extract_file",
    "extract_many",
    "NoSpeechError",
]


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
    check_regular_file(path, "audio file")   # a FIFO would block, /dev/zero never end
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
    c0: str = "band",
    vad_energy: str = "band",
) -> np.ndarray:
    """read -> MFCC (+deltas) [-> RASTA] -> VAD -> normalisation, for one file.

    Parameters
    ----------
    path : str or os.PathLike
        Audio file.
    sample_rate : int, optional
        Analysis sample rate in Hz (the file is resampled to it).
    n_ceps, n_filters, winlen, winstep, low_freq, high_freq, dither, seed
        See :func:`ipem.speaker.mfcc.mfcc_features` (by default the filterbank spans 300-3400 Hz
        at 8 kHz).
    vad : bool or {"gmm", "kaldi", "percentile"}, optional
        Drop non-speech frames with :func:`ipem.speaker.vad.energy_vad` and this rule (True:
        ``"gmm"``, the default); False keeps every frame.  The VAD sees the
        log-energies ``vad_energy`` names.
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
        Extra keyword arguments for :func:`ipem.speaker.vad.energy_vad` (``method`` overrides
        ``vad``).
    c0 : {"band", "full"}, optional
        c0 as the log energy of the filterbank's band (default) or of the whole
        spectrum (:func:`ipem.speaker.mfcc.static_mfcc`).
    vad_energy : {"band", "full"}, optional
        The frame log-energies the VAD sees (:func:`ipem.speaker.vad.vad_log_energy`):
        of the filterbank's band without pre-emphasis (default), or of the whole
        spectrum after pre-emphasis (python_speech_features' energy, which the plain
        recipe's VAD uses).

    Returns
    -------
    numpy.ndarray, shape (n_speech_frames, 3 * n_ceps), float32
        Normalised features of the speech frames.

    Raises
    ------
    NoSpeechError
        (a ValueError) if the VAD finds no speech frame in the file.
    ValueError
        For an unknown ``vad``, ``norm``, ``c0``, ``vad_energy`` or band, or a file shorter than one
        analysis window (``winlen``; the file is named).
    """
    if vad is True:
        vad = "gmm"
    if vad and vad not in VAD_METHODS:
        raise ValueError(f"unknown VAD {vad!r}; expected True, False or one of "
                         f"{sorted(VAD_METHODS)}")
    if norm not in FEATURE_NORMALIZATIONS:
        raise ValueError(f"unknown normalisation {norm!r}; expected one of "
                         f"{sorted(FEATURE_NORMALIZATIONS)}")
    if c0 not in C0_ENERGIES:
        raise ValueError(f"unknown c0 {c0!r}; expected one of {list(C0_ENERGIES)}")
    if vad_energy not in VAD_ENERGIES:
        raise ValueError(f"unknown VAD energy {vad_energy!r}; expected one of "
                         f"{list(VAD_ENERGIES)}")
    if not variance_norm:
        norm = {"cmvn": "cmn", "sliding_cmvn": "sliding_cmn"}.get(norm, norm)
    low, high = band_edges(sample_rate, low_freq, high_freq)
    samples = read_audio(path, sample_rate)
    window = int(round(winlen * sample_rate))
    if samples.size < window:     # it would be padded into one frame of mostly zeros
        raise ValueError(f"audio file {path} is too short: {samples.size} samples "
                         f"({samples.size / sample_rate:.4g} s at {sample_rate} Hz), less "
                         f"than one {winlen * 1000:g} ms analysis window")
    x = prepare_signal(samples, dither, seed)
    static = static_mfcc(x, sample_rate, n_ceps, n_filters, winlen, winstep, low, high, c0)
    feats = with_deltas(rasta_filter(static) if rasta else static)
    if vad:
        mask = band_vad_mask(x, sample_rate, vad, winlen, winstep, low, high, vad_kwargs,
                             vad_energy)
        if not mask.any():
            raise NoSpeechError(f"no speech frames found in {path} (silent or too quiet)")
        feats = feats[mask]
    return normalize_features(feats, norm, norm_window)


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
        Feature file format (:func:`ipem.io.formats.write_names`); inferred from the extension of ``out`` when
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
        Feature file format (:func:`ipem.io.formats.write_names`), passed to
        ``ipem.io.write``; :func:`ipem.io.formats.suffix` gives the file
        suffix.  HTK files get the frame period ``winstep``.
    n_jobs : int, optional
        Number of worker threads when no ``controller`` is given.
    root : path-like, optional
        If given, each output mirrors the input's path relative to ``root``
        (``out_dir/<relative path with the format's suffix>``); otherwise
        outputs are ``out_dir/<stem><suffix>`` and stems must be unique.
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
    writable = write_names()
    if fmt not in writable:
        raise ValueError(f"unknown feature format {fmt!r}; expected one of {writable}")
    ext = suffix(fmt)
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
            dsts.append(out_dir / rel.with_suffix(ext))
    else:
        dsts = [out_dir / (p.stem + ext) for p in paths]
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
