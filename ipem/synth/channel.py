"""Telephone channels and noises for the synthetic corpus (:mod:`ipem.synth.corpus`).

Everything here turns a clean signal into a degraded one and knows nothing
about speakers or lists:

* :func:`handset` -- a random "handset" response (spectral tilt and one
  peaking band);
* :class:`Channel` and :data:`CHANNELS` -- a band-pass and a G.711
  companding law (:func:`compand`: mu-law or A-law, 8 bits);
* noises: :func:`colored_noise` (white, pink, brown), :func:`babble_noise`
  (a mix of other talkers), :func:`hum_noise` (mains hum with harmonics, drift
  and a hiss floor, as a bad recording chain picks up);
* :func:`active_power` -- the speech level that signal-to-noise ratios refer to.

Acoustic noises (pink, brown, babble) reach the line through the channel's
band-pass like the speech; line noises (white, hum) are added after it, so
they also cover the band below 300 Hz and above 3400 Hz.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "NOISE_KINDS",
    "ACOUSTIC_NOISES",
    "Channel",
    "CHANNELS",
    "bandpass",
    "handset",
    "colored_noise",
    "babble_noise",
    "hum_noise",
    "active_power",
    "compand",
]

#: Noise kinds :func:`ipem.synth.utterance.synthesize_utterance` can add.
NOISE_KINDS = ("white", "pink", "brown", "babble", "hum")
#: The noise kinds that pass through the channel's band-pass with the speech.
ACOUSTIC_NOISES = ("pink", "brown", "babble")

_COMPANDING = ("none", "mulaw", "alaw")


@dataclass(frozen=True)
class Channel:
    """A telephone channel: a Butterworth band-pass, then G.711 companding.

    Attributes
    ----------
    name : str
    low_hz, high_hz : float
        Band edges (-3 dB) of the band-pass.
    order : int
        Butterworth order of each edge.
    companding : {"none", "mulaw", "alaw"}
        Companding law applied (encode + decode, 8 bits) after the noise.
    """

    name: str
    low_hz: float
    high_hz: float
    order: int = 4
    companding: str = "none"


#: Named channels; ``channel_mismatch`` corpora enrol on ``landline`` and test on
#: ``narrowband``.
CHANNELS: dict[str, Channel] = {
    "landline": Channel("landline", 300.0, 3400.0, 4, "mulaw"),
    "narrowband": Channel("narrowband", 500.0, 3000.0, 6, "alaw"),
}


def bandpass(x: np.ndarray, sr: int, low_hz: float = 300.0, high_hz: float = 3400.0,
             order: int = 4) -> np.ndarray:
    """Butterworth band-pass filter.

    Parameters
    ----------
    x : numpy.ndarray, shape (n_samples,)
    sr : int
        Sample rate in Hz.
    low_hz, high_hz : float, optional
        Band edges in Hz; ``high_hz`` is capped just below Nyquist.
    order : int, optional
        Filter order per edge.

    Returns
    -------
    numpy.ndarray, shape (n_samples,), float64
    """
    from scipy.signal import butter, sosfilt

    high = min(float(high_hz), 0.49 * sr)
    sos = butter(int(order), [float(low_hz), high], btype="bandpass", fs=sr, output="sos")
    return sosfilt(sos, x)


def handset(x: np.ndarray, sr: int, tilt: float, f0: float, gain_db: float,
            q: float) -> np.ndarray:
    """First-order tilt ``1 + tilt z^-1`` and one peaking-EQ biquad (RBJ cookbook).

    Parameters
    ----------
    x : numpy.ndarray, shape (n_samples,)
    sr : int
        Sample rate in Hz.
    tilt : float
        Coefficient of the first-order tilt (negative: brighter).
    f0, gain_db, q : float
        Centre frequency (Hz), gain (dB) and quality factor of the peak.

    Returns
    -------
    numpy.ndarray, shape (n_samples,), float64
    """
    from scipy.signal import lfilter

    y = lfilter([1.0, tilt], [1.0], x)
    a = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * math.pi * f0 / sr
    alpha = math.sin(w0) / (2.0 * q)
    b = [1.0 + alpha * a, -2.0 * math.cos(w0), 1.0 - alpha * a]
    den = [1.0 + alpha / a, -2.0 * math.cos(w0), 1.0 - alpha / a]
    return lfilter(b, den, y)


def colored_noise(rng: np.random.Generator, n: int, kind: str = "white") -> np.ndarray:
    """Gaussian noise with a white, pink (1/f power) or brown (1/f^2 power) spectrum.

    Parameters
    ----------
    rng : numpy.random.Generator
    n : int
        Number of samples.
    kind : {"white", "pink", "brown"}, optional

    Returns
    -------
    numpy.ndarray, shape (n,), float64
        Unscaled noise.
    """
    if kind not in ("white", "pink", "brown"):
        raise ValueError(f"unknown colored noise {kind!r}")
    white = rng.standard_normal(n)
    if kind == "white":
        return white
    spec = np.fft.rfft(white)
    f = np.arange(spec.size, dtype=np.float64)
    f[0] = 1.0
    spec = spec / (np.sqrt(f) if kind == "pink" else f)  # brown: 1/f amplitude
    return np.fft.irfft(spec, n)


def babble_noise(rng: np.random.Generator, n: int, sources, n_talkers: int = 5,
                 sr: int = 8000) -> np.ndarray:
    """Babble: several other talkers at equal level, each from a random point, looped.

    Parameters
    ----------
    rng : numpy.random.Generator
    n : int
        Number of samples.
    sources : sequence of numpy.ndarray, each shape (n_samples_i,)
        Clean speech of other talkers, at the output sample rate.
    n_talkers : int, optional
        Talkers mixed (at most ``len(sources)``).
    sr : int, optional
        Sample rate, for the level measurement.

    Returns
    -------
    numpy.ndarray, shape (n,), float64
        Unscaled babble.
    """
    sources = [np.asarray(s, dtype=np.float64) for s in sources if np.size(s) > 0]
    if not sources:
        raise ValueError("babble noise needs at least one source signal")
    k = min(int(n_talkers), len(sources))
    out = np.zeros(n)
    for i in rng.choice(len(sources), size=k, replace=False):
        s = sources[int(i)]
        s = s / math.sqrt(active_power(s, sr))
        reps = -(-(n + s.size) // s.size)
        start = int(rng.integers(s.size))
        out += np.tile(s, reps)[start:start + n]
    return out


def hum_noise(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Mains hum as a cheap recording chain picks it up.

    50 or 60 Hz with harmonics up to Nyquist (amplitude ~ 1/h, odd harmonics
    stronger: a transformer buzz), a slow frequency drift and amplitude
    wobble, over a pink hiss 25 dB below the hum.

    Parameters
    ----------
    rng : numpy.random.Generator
    n : int
        Number of samples.
    sr : int
        Sample rate in Hz.

    Returns
    -------
    numpy.ndarray, shape (n,), float64
        Unscaled hum.
    """
    mains = 50.0 if rng.random() < 0.5 else 60.0
    t = np.arange(n) / sr
    drift = 1.0 + 0.002 * np.sin(2 * math.pi * rng.uniform(0.05, 0.3) * t + rng.uniform(0, 6.3))
    phase = 2 * math.pi * mains * np.cumsum(drift) / sr
    hum = np.zeros(n)
    for h in range(1, int(0.45 * sr / mains) + 1):
        amp = (1.5 if h % 2 else 1.0) / h
        hum += amp * np.sin(h * phase + rng.uniform(0, 2 * math.pi))
    hum *= 1.0 + 0.1 * np.sin(2 * math.pi * rng.uniform(0.2, 1.0) * t)
    hiss = colored_noise(rng, n, "pink")
    hiss *= math.sqrt(np.mean(hum**2) / np.mean(hiss**2) * 10 ** (-25 / 10))
    return hum + hiss


def active_power(x: np.ndarray, sr: int) -> float:
    """Mean power of the 20 ms frames within 30 dB of the loudest one.

    Parameters
    ----------
    x : numpy.ndarray, shape (n_samples,)
    sr : int
        Sample rate in Hz.

    Returns
    -------
    float
        The active speech power (the whole signal's mean power if it is
        shorter than a frame).
    """
    flen = max(1, int(0.02 * sr))
    n = x.size // flen
    if n == 0:
        return float(np.mean(x**2))
    p = np.mean(x[: n * flen].reshape(n, flen) ** 2, axis=1)
    act = p > p.max() * 1e-3
    return float(p[act].mean())


def _quantise8(y: np.ndarray) -> np.ndarray:
    return np.round((y + 1.0) * 127.5) / 127.5 - 1.0


def compand(x: np.ndarray, law: str = "mulaw") -> np.ndarray:
    """G.711-style companding with 8-bit quantisation (encode, quantise, decode).

    Parameters
    ----------
    x : numpy.ndarray, shape (n_samples,)
        Signal in [-1, 1] (clipped).
    law : {"mulaw", "alaw", "none"}, optional
        mu = 255 or A = 87.6; ``"none"`` returns ``x`` unchanged.

    Returns
    -------
    numpy.ndarray, shape (n_samples,), float64
    """
    if law not in _COMPANDING:
        raise ValueError(f"unknown companding law {law!r}; expected one of {_COMPANDING}")
    if law == "none":
        return x
    x = np.clip(x, -1.0, 1.0)
    s, a = np.sign(x), np.abs(x)
    if law == "mulaw":
        mu = 255.0
        q = _quantise8(s * np.log1p(mu * a) / math.log1p(mu))
        return np.sign(q) * ((1.0 + mu) ** np.abs(q) - 1.0) / mu
    A = 87.6
    k = 1.0 + math.log(A)
    y = np.where(a < 1.0 / A, A * a / k, (1.0 + np.log(np.maximum(A * a, 1.0))) / k)
    q = _quantise8(s * y)
    aq = np.abs(q)
    return np.sign(q) * np.where(aq < 1.0 / k, aq * k / A, np.exp(aq * k - 1.0) / A)
