"""Signal processing of the front-end: framing, spectra, band energies, filterbank.

The lowest layer of the front-end; :mod:`ipem.speaker.mfcc` and
:mod:`ipem.speaker.vad` build on it, :mod:`ipem.speaker.frontend` on them.

* :func:`prepare_signal` -- check a mono signal and add dither;
* :func:`pre_emphasis`, :func:`frame_signal` (windowed, overlapping frames, the
  framing of :func:`python_speech_features.sigproc.framesig`),
  :func:`power_spectrum`;
* :func:`band_edges` -- the analysis band (the telephone band 300-3400 Hz at
  8 kHz), :func:`log_band_energy` and :func:`frame_log_energy` -- the frames'
  energy in it;
* :func:`mel_filterbank` -- the mel filterbank (cached).
"""

from __future__ import annotations

import functools
import math

import numpy as np

__all__ = [
    "TELEPHONE_BAND",
    "band_edges",
    "prepare_signal",
    "pre_emphasis",
    "frame_signal",
    "fft_size",
    "power_spectrum",
    "log_band_energy",
    "mel_filterbank",
    "frame_log_energy",
]

#: Telephone band (Hz) the filterbank spans by default at sample rates <= 8 kHz.
TELEPHONE_BAND = (300.0, 3400.0)


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


def prepare_signal(signal, dither: float = 0.0, seed: int = 0) -> np.ndarray:
    """A checked float64 copy of a mono signal, with Gaussian dither added.

    Parameters
    ----------
    signal : array-like, shape (n_samples,)
        Mono signal, nominally in [-1, 1].
    dither : float, optional
        Standard deviation of the Gaussian noise added; 0 adds none.
    seed : int, optional
        Seed of the dither noise.

    Returns
    -------
    numpy.ndarray, shape (n_samples,), float64

    Raises
    ------
    ValueError
        If the signal is not 1-D, is empty or holds NaN or infinite samples.
    """
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


def pre_emphasis(x: np.ndarray, coeff: float = 0.97) -> np.ndarray:
    """First-order pre-emphasis ``y[t] = x[t] - coeff * x[t-1]`` (``y[0] = x[0]``).

    Parameters
    ----------
    x : numpy.ndarray, shape (n_samples,)
        Signal.
    coeff : float, optional
        Coefficient; 0 returns ``x`` itself.

    Returns
    -------
    numpy.ndarray, shape (n_samples,)
    """
    if not coeff:
        return x
    return np.append(x[0], x[1:] - coeff * x[:-1])


def frame_signal(x: np.ndarray, frame_len: float, frame_step: float, window) -> np.ndarray:
    """Overlapping windowed frames of ``x``.

    A view-based equivalent of :func:`python_speech_features.sigproc.framesig`
    (same frame count, zero padding of the last frame and rounding of the
    lengths).

    Parameters
    ----------
    x : numpy.ndarray, shape (n_samples,)
        Signal.
    frame_len, frame_step : float
        Frame length and shift in samples (rounded half up).
    window : callable
        ``window(frame_len) -> (frame_len,)`` array, e.g. :func:`numpy.hamming`.

    Returns
    -------
    numpy.ndarray, shape (n_frames, frame_len), float64
        ``n_frames = 1 + ceil((n_samples - frame_len) / frame_step)``, at
        least 1.
    """
    from python_speech_features.sigproc import round_half_up

    frame_len = int(round_half_up(frame_len))
    frame_step = int(round_half_up(frame_step))
    n = x.size
    n_frames = 1 if n <= frame_len else 1 + int(math.ceil((n - frame_len) / frame_step))
    padded = np.zeros((n_frames - 1) * frame_step + frame_len)
    padded[:n] = x[:padded.size]
    view = np.lib.stride_tricks.sliding_window_view(padded, frame_len)[::frame_step]
    return view * window(frame_len)


def fft_size(sample_rate: int, winlen: float) -> int:
    """The FFT size for a window: the next power of two of its length in samples.

    Parameters
    ----------
    sample_rate : int
        Sample rate in Hz.
    winlen : float
        Window length in seconds.

    Returns
    -------
    int
        ``nfft``, a power of two >= ``winlen * sample_rate``.
    """
    frame_len = int(round(winlen * sample_rate))
    return 1 << max(0, int(math.ceil(math.log2(max(frame_len, 1)))))


def power_spectrum(x: np.ndarray, sample_rate: int, winlen: float, winstep: float,
                   preemph: float) -> tuple[np.ndarray, int]:
    """Power spectra of the Hamming-windowed frames of a signal.

    Parameters
    ----------
    x : numpy.ndarray, shape (n_samples,)
        Signal (see :func:`prepare_signal`).
    sample_rate : int
        Sample rate in Hz.
    winlen, winstep : float
        Window length and shift in seconds.
    preemph : float
        Pre-emphasis coefficient (:func:`pre_emphasis`); 0 disables it.

    Returns
    -------
    pspec : numpy.ndarray, shape (n_frames, nfft // 2 + 1), float64
        ``|FFT|^2 / nfft`` per frame.
    nfft : int
        The FFT size (:func:`fft_size`).
    """
    x = pre_emphasis(x, preemph)
    frames = frame_signal(x, winlen * sample_rate, winstep * sample_rate, np.hamming)
    nfft = fft_size(sample_rate, winlen)
    spec = np.fft.rfft(frames, nfft)
    return (spec.real ** 2 + spec.imag ** 2) / nfft, nfft


def log_band_energy(pspec: np.ndarray, nfft: int, sample_rate: int, low: float,
                    high: float) -> np.ndarray:
    """Natural log of the power in [low, high] Hz per frame (all bins for the full band).

    Parameters
    ----------
    pspec : numpy.ndarray, shape (n_frames, nfft // 2 + 1)
        Power spectra (:func:`power_spectrum`).
    nfft : int
        FFT size.
    sample_rate : int
        Sample rate in Hz.
    low, high : float
        Band edges in Hz.

    Returns
    -------
    numpy.ndarray, shape (n_frames,), float64
        Floored at ``ln(eps)``.
    """
    f = np.arange(pspec.shape[1]) * (sample_rate / nfft)
    energy = pspec[:, (f >= low) & (f <= high)].sum(axis=1)
    return np.log(np.maximum(energy, np.finfo(np.float64).eps))


@functools.lru_cache(maxsize=16)
def mel_filterbank(n_filters: int, nfft: int, sample_rate: int, low: float,
                   high: float) -> np.ndarray:
    """The mel filterbank of :func:`python_speech_features.get_filterbanks` (cached).

    Parameters
    ----------
    n_filters : int
        Number of triangular filters.
    nfft : int
        FFT size.
    sample_rate : int
        Sample rate in Hz.
    low, high : float
        Band edges in Hz.

    Returns
    -------
    numpy.ndarray, shape (n_filters, nfft // 2 + 1), float64
        Read-only.

    Raises
    ------
    ValueError
        If a filter gets no FFT bin (too many filters for the band).
    """
    from python_speech_features import get_filterbanks

    fb = get_filterbanks(n_filters, nfft, sample_rate, low, high)
    if not np.all(fb.sum(axis=1) > 0):
        raise ValueError(f"{n_filters} mel filters over {low:g}-{high:g} Hz leave some filter "
                         f"without an FFT bin (nfft={nfft}); use fewer filters or a wider band")
    fb.flags.writeable = False
    return fb


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
    band, after pre-emphasis).  :func:`ipem.speaker.frontend.extract_features`
    gives the VAD the energy of the filterbank's band without pre-emphasis
    (``preemph=0``), which keeps low-frequency voiced speech above the noise.

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
    pspec, nfft = power_spectrum(x, sample_rate, winlen, winstep, preemph)
    return log_band_energy(pspec, nfft, sample_rate, low, high)
