"""MFCCs and their deltas.

:func:`mfcc_features` computes ``n_ceps`` static MFCCs (c0 replaced by the
log energy of the analysis band) plus deltas and delta-deltas: ``3 * n_ceps``
(default 60) dimensions.  At 8 kHz the mel filterbank spans the telephone
band, 300-3400 Hz, by default (below 300 Hz a telephone channel carries only
noise); above 8 kHz it spans 0 Hz to Nyquist (:func:`ipem.speaker.dsp.band_edges`).
"""

from __future__ import annotations

import numpy as np

from .dsp import band_edges, log_band_energy, mel_filterbank, power_spectrum, prepare_signal

__all__ = ["C0_ENERGIES", "mfcc_features", "static_mfcc", "delta", "with_deltas"]

#: What c0 can be: the log energy of the filterbank's band (default) or of the whole spectrum.
C0_ENERGIES = ("band", "full")


def default_n_filters(sample_rate: int) -> int:
    """The filterbank size when none is given: 24 at 8 kHz and below, else 26."""
    return 24 if sample_rate <= 8000 else 26


def static_mfcc(x: np.ndarray, sample_rate: int, n_ceps: int, n_filters: int | None,
                winlen: float, winstep: float, low: float, high: float,
                c0: str = "band") -> np.ndarray:
    """Static MFCCs of a prepared signal, c0 replaced by a log frame energy.

    Parameters
    ----------
    x : numpy.ndarray, shape (n_samples,), float64
        Signal from :func:`ipem.speaker.dsp.prepare_signal`.
    sample_rate : int
        Sample rate in Hz.
    n_ceps : int
        Number of cepstra, c0 included.
    n_filters : int or None
        Mel filters; ``None``: 24 at <= 8 kHz, 26 above.
    winlen, winstep : float
        Window length and shift in seconds.
    low, high : float
        Band of the filterbank in Hz.
    c0 : {"band", "full"}, default="band"
        c0 is the natural log of the frame's energy within ``low``-``high``
        (``"band"``) or over the whole spectrum (``"full"``, the
        ``appendEnergy`` of :func:`python_speech_features.mfcc`); both after
        pre-emphasis.

    Returns
    -------
    numpy.ndarray, shape (n_frames, n_ceps), float64

    Raises
    ------
    ValueError
        For ``n_ceps > n_filters`` or an unknown ``c0``.
    """
    from python_speech_features import lifter
    from scipy.fft import dct

    if n_filters is None:
        n_filters = default_n_filters(sample_rate)
    if n_ceps > n_filters:
        raise ValueError(f"n_ceps ({n_ceps}) must not exceed n_filters ({n_filters})")
    if c0 not in C0_ENERGIES:
        raise ValueError(f"unknown c0 {c0!r}; expected one of {list(C0_ENERGIES)}")
    pspec, nfft = power_spectrum(x, sample_rate, winlen, winstep, 0.97)
    fb = mel_filterbank(int(n_filters), nfft, int(sample_rate), float(low), float(high))
    eps = np.finfo(np.float64).eps
    feats = dct(np.log(np.maximum(pspec @ fb.T, eps)), type=2, axis=1, norm="ortho")[:, :n_ceps]
    feats = lifter(feats, 22)
    if c0 == "full":
        low, high = 0.0, sample_rate / 2
    feats[:, 0] = log_band_energy(pspec, nfft, sample_rate, low, high)
    return feats


def delta(feat: np.ndarray, n: int = 2) -> np.ndarray:
    """Regression deltas over +-n frames, edges repeated.

    The deltas of :func:`python_speech_features.delta`, vectorised over frames.

    Parameters
    ----------
    feat : numpy.ndarray, shape (n_frames, n_features)
        Features.
    n : int, optional
        Half-width of the regression window.

    Returns
    -------
    numpy.ndarray, shape (n_frames, n_features)
    """
    t = feat.shape[0]
    padded = np.pad(feat, ((n, n), (0, 0)), mode="edge")
    out = np.zeros_like(feat)
    for i in range(1, n + 1):
        out += i * (padded[n + i:n + i + t] - padded[n - i:n - i + t])
    return out / (2 * sum(i * i for i in range(1, n + 1)))


def with_deltas(static: np.ndarray) -> np.ndarray:
    """Static features with their deltas and delta-deltas (window 2 each) appended.

    Parameters
    ----------
    static : numpy.ndarray, shape (n_frames, n_ceps)
        Static features.

    Returns
    -------
    numpy.ndarray, shape (n_frames, 3 * n_ceps)
    """
    d1 = delta(static, 2)
    return np.hstack([static, d1, delta(d1, 2)])


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
    c0: str = "band",
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
        sample rates <= 8 kHz, 0 Hz to Nyquist above
        (:func:`ipem.speaker.dsp.band_edges`).
    deltas : bool, optional
        Append first and second derivatives (window N=2 each).
    dither : float, optional
        Standard deviation of Gaussian noise added to the signal before
        analysis (guards digital silence); 0 disables it.
    seed : int, optional
        Seed of the dither noise, so features are reproducible.
    c0 : {"band", "full"}, optional
        c0 as the log energy of the filterbank's band (default) or of the
        whole spectrum (python_speech_features' ``appendEnergy``).

    Returns
    -------
    numpy.ndarray, shape (n_frames, 3 * n_ceps) or (n_frames, n_ceps), float32
        Finite features, one row per frame: ``n_frames = 1 + ceil((n_samples -
        winlen * sample_rate) / (winstep * sample_rate))``.
    """
    low, high = band_edges(sample_rate, low_freq, high_freq)
    static = static_mfcc(prepare_signal(signal, dither, seed), sample_rate, n_ceps, n_filters,
                         winlen, winstep, low, high, c0)
    if not deltas:
        return static.astype(np.float32)
    return with_deltas(static).astype(np.float32)
