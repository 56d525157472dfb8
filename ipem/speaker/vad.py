"""Voice activity detection on frame log-energies.

:func:`energy_vad` is the front-end's VAD; ``method`` chooses the rule that
marks frames as speech, the rest (an absolute floor, majority smoothing, a
minimum number of frames) is common:

``"gmm"`` (default) -- :func:`gmm_vad`
    A 3-component Gaussian mixture fitted to the utterance's log-energies,
    as ALIZE's ``EnergyDetector`` and SIDEKIT's ``vad_energy`` do: frames
    that the lowest-energy component (the noise) explains best are dropped.
    It adapts to the noise level, so it holds from clean speech down to 0 dB.
``"kaldi"`` -- :func:`kaldi_vad`
    Kaldi's ``compute-vad``: a threshold ``5.5 + 0.5 * mean`` on Kaldi's
    log-energy scale, and a proportion of frames above it in a context window.
``"percentile"`` -- :func:`percentile_vad`
    ipem's earlier rule: ``noise_margin_db`` above the ``noise_percentile``-th
    percentile.  It fails when the noise floor is high (at 5 dB SNR it kept
    a tenth of the speech; see ``benchmarks/RESULTS.md``).

Every rule also drops frames more than ``dynamic_range_db`` below the loudest
one and below ``abs_floor_db`` (digital silence and dither are never speech).
Log-energies are natural logs of frame energies of a signal scaled to [-1, 1]
(:func:`ipem.speaker.dsp.frame_log_energy`).

:func:`vad_mask` gives the speech frames of a signal as
:func:`ipem.speaker.frontend.extract_features` keeps them: by default the
log-energy of the filterbank's band, without pre-emphasis, through
:func:`energy_vad`; with ``energy="full"`` the log-energy of the whole spectrum
after pre-emphasis 0.97 (:data:`VAD_ENERGIES`, :func:`vad_log_energy`).
"""
from __future__ import annotations

import math

import numpy as np

from .dsp import band_edges, frame_log_energy, prepare_signal

__all__ = ["VAD_ENERGIES", "VAD_METHODS", "energy_vad", "gmm_vad", "kaldi_vad", "percentile_vad",
           "vad_mask", "band_vad_mask", "vad_log_energy"]

#: The frame energies the front-end's VAD can see: ``"band"`` (default), the
#: filterbank's band without pre-emphasis, or ``"full"``, the whole spectrum after
#: pre-emphasis 0.97 (python_speech_features' ``appendEnergy``, the energy of the plain
#: recipe's VAD in ``benchmarks/generalise.py``).
VAD_ENERGIES = ("band", "full")

#: Natural-log energy -> dB.
_LN_TO_DB = 10.0 / math.log(10.0)

#: Kaldi's log-energies are of 16-bit samples with a rectangular window; ours
#: are of [-1, 1] samples, Hamming-windowed, summed over half the spectrum
#: (about 0.2 of the frame's sum of squares).  ln(32768^2 / 0.2).
_KALDI_OFFSET = math.log(32768.0**2 / 0.2)


def percentile_vad(e_db, *, noise_percentile=10.0, noise_margin_db=3.0):
    """ipem's earlier rule: ``noise_margin_db`` above a percentile of the energies.

    Parameters
    ----------
    e_db : numpy.ndarray, shape (n_frames,)
        Frame energies in dB.
    noise_percentile : float, optional
        The percentile taken as the noise floor.
    noise_margin_db : float, optional
        Margin above the floor.

    Returns
    -------
    numpy.ndarray, shape (n_frames,), bool
    """
    return e_db > np.percentile(e_db, noise_percentile) + noise_margin_db


def gmm_vad(e_db, *, n_components=3, max_iter=100, var_floor=1e-3):
    """Frames a 1-D Gaussian mixture on the energies does not give to its lowest component.

    The mixture (:class:`ipem.mixture.GaussianMixture`) starts from equal
    weights, means spread evenly over mean +- 2 std of the energies and
    their variance, as SIDEKIT's ``vad_energy`` does; ``var_floor`` times the
    energies' variance regularises the variances.  A frame is speech when the
    lowest-mean component's posterior is below 1/2.  When the noise and the
    speech overlap (0 dB), the noise tends to split over two components and
    the rule keeps more frames: weak speech is then worth more to a speaker
    model than the noise it brings.

    Parameters
    ----------
    e_db : numpy.ndarray, shape (n_frames,)
        Frame energies in dB (frames of digital silence left out).
    n_components : int, optional
        2 (noise, speech) or 3 (noise, weak speech, strong speech).
    max_iter : int, optional
        EM iterations at most.
    var_floor : float, optional
        Variance regularisation, relative to the variance of ``e_db``.

    Returns
    -------
    numpy.ndarray, shape (n_frames,), bool
    """
    from ..mixture import GaussianMixture

    e_db = np.asarray(e_db, dtype=np.float64)
    k = int(n_components)
    sd = float(e_db.std()) if e_db.size else 0.0
    if e_db.size < 2 * k or sd < 1e-6:
        return np.ones(e_db.size, dtype=bool)
    X = e_db[:, None]
    gmm = GaussianMixture(
        k, covariance_type="diag", reg_covar=var_floor * sd**2, max_iter=max_iter,
        weights_init=np.full(k, 1.0 / k),
        means_init=(e_db.mean() + sd * np.linspace(-2.0, 2.0, k))[:, None],
        precisions_init=np.full((k, 1), 1.0 / sd**2), random_state=0).fit(X)
    low = int(np.argmin(gmm.means_[:, 0]))
    return gmm.predict_proba(X)[:, low] < 0.5


def kaldi_vad(e_db, *, energy_threshold=5.5, energy_mean_scale=0.5, frames_context=2,
              proportion_threshold=0.6):
    """Kaldi's ``compute-vad`` rule.

    A frame is above threshold when its log-energy on Kaldi's scale exceeds
    ``energy_threshold + energy_mean_scale * mean``; it is speech when at
    least ``proportion_threshold`` of the frames within ``frames_context``
    of it are above threshold.

    Parameters
    ----------
    e_db : numpy.ndarray, shape (n_frames,)
        Frame energies in dB.
    energy_threshold, energy_mean_scale, frames_context, proportion_threshold
        Kaldi's options of the same names (and defaults).

    Returns
    -------
    numpy.ndarray, shape (n_frames,), bool
    """
    e = e_db / _LN_TO_DB + _KALDI_OFFSET
    above = (e > energy_threshold + energy_mean_scale * e.mean()).astype(np.float64)
    k = 2 * int(frames_context) + 1
    num = np.convolve(above, np.ones(k), mode="same")
    den = np.convolve(np.ones(e.size), np.ones(k), mode="same")
    return num >= proportion_threshold * den


#: The rules :func:`energy_vad` knows.
VAD_METHODS = {"gmm": gmm_vad, "kaldi": kaldi_vad, "percentile": percentile_vad}


def energy_vad(
    x: np.ndarray,
    sample_rate: int | None = None,
    *,
    method: str = "gmm",
    winlen: float = 0.025,
    winstep: float = 0.01,
    dynamic_range_db: float = 30.0,
    abs_floor_db: float = -60.0,
    min_frames: int = 10,
    smooth: int = 5,
    **options,
) -> np.ndarray:
    """Energy-based voice activity detection.

    A frame is speech when the ``method``'s rule says so (see the module
    docstring), its energy is within ``dynamic_range_db`` of the loudest
    frame and above ``abs_floor_db``.  The mask is then smoothed with a
    majority vote over ``smooth`` frames (not for ``"kaldi"``, whose rule has
    its own context window).  If fewer than ``min_frames`` frames survive but
    some are above the absolute floor, the loudest ``min_frames`` of those
    are kept instead.

    Parameters
    ----------
    x : numpy.ndarray
        Either a signal, shape (n_samples,), when ``sample_rate`` is given, or
        per-frame natural-log energies, shape (n_frames,), as returned by
        :func:`ipem.speaker.dsp.frame_log_energy`.
    sample_rate : int or None, optional
        Sample rate of ``x`` if it is a signal; ``None`` if it is log-energies.
    method : {"gmm", "kaldi", "percentile"}, optional
        The rule; default ``"gmm"``.
    winlen, winstep : float, optional
        Framing used when ``x`` is a signal.
    dynamic_range_db, abs_floor_db : float, optional
        Thresholds described above.  Energies are ``10 log10`` of the frame
        energy of a signal scaled to [-1, 1].
    min_frames : int, optional
        Keep at least this many frames when any frame is above the absolute floor.
    smooth : int, optional
        Odd window length of the majority filter; <= 1 disables smoothing.
    **options
        Options of the rule: :func:`gmm_vad` (``n_components``, ...),
        :func:`kaldi_vad` (``energy_threshold``, ...) or
        :func:`percentile_vad` (``noise_percentile``, ``noise_margin_db``).

    Returns
    -------
    numpy.ndarray, shape (n_frames,), bool
        True for speech frames.  All False only if no frame is above
        ``abs_floor_db``.

    Raises
    ------
    ValueError
        For an unknown ``method`` or an option it does not take, and for
        log-energies that are not 1-D or not finite.
    """
    if method not in VAD_METHODS:
        raise ValueError(f"unknown VAD method {method!r}; expected one of {sorted(VAD_METHODS)}")
    rule = VAD_METHODS[method]
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
    try:
        if method == "gmm":  # fitted to the audible frames only
            said = np.zeros(n, dtype=bool)
            said[above_floor] = rule(e_db[above_floor], **options)
        else:
            said = rule(e_db, **options)
    except TypeError as exc:
        raise ValueError(f"VAD method {method!r}: {exc}") from None
    mask = said & (e_db > e_db.max() - dynamic_range_db)
    if method != "kaldi" and smooth and smooth > 1 and n >= smooth:
        k = int(smooth) | 1  # force odd
        votes = np.convolve(mask.astype(np.int32), np.ones(k, dtype=np.int32), mode="same")
        mask = (votes > k // 2) & above_floor
    if mask.sum() < min(min_frames, int(above_floor.sum())):
        k = min(min_frames, int(above_floor.sum()))
        order = np.argsort(-e_db, kind="stable")[:k]
        mask = np.zeros(n, dtype=bool)
        mask[order] = True
    return mask


def vad_log_energy(x: np.ndarray, sample_rate: int, winlen: float, winstep: float,
                   low: float, high: float, energy: str = "band") -> np.ndarray:
    """The frame log-energies the front-end's VAD sees.

    Parameters
    ----------
    x : numpy.ndarray, shape (n_samples,), float64
        Signal from :func:`ipem.speaker.dsp.prepare_signal`.
    sample_rate : int
        Sample rate in Hz.
    winlen, winstep : float
        Window length and shift in seconds.
    low, high : float
        The filterbank's band in Hz (used by ``energy="band"``).
    energy : {"band", "full"}, optional
        :data:`VAD_ENERGIES`: the power within ``low``-``high`` Hz without
        pre-emphasis (default), or of every FFT bin after pre-emphasis 0.97.

    Returns
    -------
    numpy.ndarray, shape (n_frames,), float64
        Natural logs of the Hamming-windowed frames' power (``|FFT|^2 / nfft``
        summed over the bins), floored at ``ln(eps)``.

    Raises
    ------
    ValueError
        For an unknown ``energy``.
    """
    if energy not in VAD_ENERGIES:
        raise ValueError(f"unknown VAD energy {energy!r}; expected one of {list(VAD_ENERGIES)}")
    if energy == "full":   # frame_log_energy's defaults: 0 Hz to Nyquist, pre-emphasis 0.97
        return frame_log_energy(x, sample_rate, winlen=winlen, winstep=winstep)
    return frame_log_energy(x, sample_rate, winlen=winlen, winstep=winstep, low_freq=low,
                            high_freq=high, preemph=0.0)


def band_vad_mask(x: np.ndarray, sample_rate: int, method: str, winlen: float, winstep: float,
                  low: float, high: float, vad_kwargs: dict | None = None,
                  energy: str = "band") -> np.ndarray:
    """:func:`energy_vad` of the log-energies of :func:`vad_log_energy`.

    Parameters
    ----------
    x : numpy.ndarray, shape (n_samples,), float64
        Signal from :func:`ipem.speaker.dsp.prepare_signal`.
    sample_rate : int
        Sample rate in Hz.
    method : {"gmm", "kaldi", "percentile"}
        The rule (:data:`VAD_METHODS`).
    winlen, winstep : float
        Window length and shift in seconds.
    low, high : float
        The band in Hz.
    vad_kwargs : dict or None, optional
        More options of :func:`energy_vad` (``method`` overrides ``method``).
    energy : {"band", "full"}, optional
        Which log-energies (:data:`VAD_ENERGIES`): the band's without
        pre-emphasis (default) or the whole spectrum's after pre-emphasis.

    Returns
    -------
    numpy.ndarray, shape (n_frames,), bool
    """
    log_e = vad_log_energy(x, sample_rate, winlen, winstep, low, high, energy)
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
    energy: str = "band",
    **vad_kwargs,
) -> np.ndarray:
    """The speech frames :func:`ipem.speaker.frontend.extract_features` keeps, for a signal.

    The frames' log-energy (:func:`vad_log_energy`; by default in the
    filterbank's band, without pre-emphasis) goes through :func:`energy_vad`.

    Parameters
    ----------
    signal : numpy.ndarray, shape (n_samples,)
        Mono signal.
    sample_rate : int
        Sample rate in Hz.
    vad : {"gmm", "kaldi", "percentile"}, optional
        The rule (:data:`VAD_METHODS`).
    winlen, winstep, low_freq, high_freq, dither, seed
        As for :func:`ipem.speaker.mfcc.mfcc_features`.
    energy : {"band", "full"}, optional
        The log-energies the rule sees (:data:`VAD_ENERGIES`); ``vad_energy``
        of :func:`ipem.speaker.frontend.extract_features`.
    **vad_kwargs
        More options of :func:`energy_vad`.

    Returns
    -------
    numpy.ndarray, shape (n_frames,), bool
        One flag per frame of :func:`ipem.speaker.mfcc.mfcc_features`.
    """
    low, high = band_edges(sample_rate, low_freq, high_freq)
    return band_vad_mask(prepare_signal(signal, dither, seed), sample_rate, vad, winlen, winstep,
                         low, high, vad_kwargs, energy)
