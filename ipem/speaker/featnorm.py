"""Feature normalisations against channel effects.

* :func:`cmvn` -- per-utterance cepstral mean (and variance) normalisation;
* :func:`sliding_cmvn` -- the same over a sliding window (Kaldi's
  ``apply-cmvn-sliding``);
* :func:`feature_warping` -- short-term Gaussianisation (Pelecanos & Sridharan,
  2001): each coefficient is replaced by the standard-normal quantile of its
  rank in a sliding window, 300 frames (3 s) by default;
* :func:`rasta_filter` -- RASTA band-pass filtering of the cepstral
  trajectories (Hermansky & Morgan, 1994), which removes a slowly varying
  channel and smooths frame-to-frame jitter.

:data:`FEATURE_NORMALIZATIONS` maps the names ``extract_features(norm=...)`` takes to
these functions.  Sliding windows are placed as Kaldi's ``--center`` does: centred
on the frame, shifted inwards at the ends of the utterance so that every frame
sees a full window when the utterance is long enough, and the whole utterance
when it is not.
"""
from __future__ import annotations

import numpy as np

__all__ = ["FEATURE_NORMALIZATIONS", "cmvn", "sliding_cmvn", "feature_warping", "rasta_filter",
           "normalize_features"]


def _check(features):
    X = np.asarray(features, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"features must be 2-D (n_frames, n_dims), got shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError("features have no frames")
    return X


def _check_window(window):
    if int(window) != window or window < 2:
        raise ValueError(f"window must be an integer >= 2 frames, got {window!r}")
    return int(window)


def _window_starts(n_frames, window):
    """First frame of each frame's window, shape (n_frames,), and the window length."""
    w = min(window, n_frames)
    start = np.arange(n_frames) - w // 2
    return np.clip(start, 0, n_frames - w), w


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
    X = _check(features)
    Y = X - X.mean(axis=0)
    if variance:
        std = Y.std(axis=0)
        std = np.where(std > 1e-8, std, 1.0)
        Y = Y / std
    return Y.astype(np.float32)


def sliding_cmvn(features: np.ndarray, window: int = 300, variance: bool = True) -> np.ndarray:
    """Mean (and variance) normalisation over a sliding window of frames.

    Parameters
    ----------
    features : numpy.ndarray, shape (n_frames, n_dims)
    window : int, optional
        Window length in frames (default 300: 3 s at 10 ms).
    variance : bool, optional
        Also divide by the window's standard deviation (where it is > 1e-8).

    Returns
    -------
    numpy.ndarray, shape (n_frames, n_dims), float32
    """
    X = _check(features)
    window = _check_window(window)
    n = X.shape[0]
    X = X - X.mean(axis=0)  # cumulative sums of centred data lose less precision
    start, w = _window_starts(n, window)
    c1 = np.vstack([np.zeros((1, X.shape[1])), np.cumsum(X, axis=0)])
    mean = (c1[start + w] - c1[start]) / w
    Y = X - mean
    if variance:
        c2 = np.vstack([np.zeros((1, X.shape[1])), np.cumsum(X * X, axis=0)])
        var = np.maximum((c2[start + w] - c2[start]) / w - mean**2, 0.0)
        std = np.sqrt(var)
        Y = Y / np.where(std > 1e-8, std, 1.0)
    return Y.astype(np.float32)


def feature_warping(features: np.ndarray, window: int = 300, *,
                    chunk: int = 128) -> np.ndarray:
    """Feature warping: each value's rank in its window, mapped to a N(0, 1) quantile.

    For frame ``t`` and dimension ``d``, with ``r`` the number of values of
    the window below ``x[t, d]`` plus half the number equal to it (itself
    included), the output is ``Phi^-1(r / w)`` for a window of ``w`` frames.

    Parameters
    ----------
    features : numpy.ndarray, shape (n_frames, n_dims)
    window : int, optional
        Window length in frames (default 300: 3 s at 10 ms).
    chunk : int, optional
        Frames ranked at once (bounds memory at ``chunk * n_dims * window``
        booleans).

    Returns
    -------
    numpy.ndarray, shape (n_frames, n_dims), float32
        Values in ``[Phi^-1(0.5 / w), Phi^-1(1 - 0.5 / w)]``; a single frame
        maps to 0.
    """
    from numpy.lib.stride_tricks import sliding_window_view
    from scipy.special import ndtri

    X = _check(features)
    window = _check_window(window)
    n = X.shape[0]
    start, w = _window_starts(n, window)
    windows = sliding_window_view(X, w, axis=0)  # (n - w + 1, n_dims, w), a view
    out = np.empty(X.shape, dtype=np.float64)
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        win = windows[start[a:b]]                 # (c, n_dims, w)
        x = X[a:b, :, None]
        rank = (win < x).sum(axis=2) + 0.5 * (win == x).sum(axis=2)
        out[a:b] = ndtri(rank / w)
    return out.astype(np.float32)


def rasta_filter(features: np.ndarray, pole: float = 0.98) -> np.ndarray:
    """RASTA filtering of cepstral (or log-spectral) trajectories.

    ``H(z) = 0.1 (2 + z^-1 - z^-3 - 2 z^-4) / (1 - pole z^-1)`` along time,
    started in the steady state of the first frame (no start-up transient).
    It has no gain at 0 Hz, so it removes a constant channel offset.

    Parameters
    ----------
    features : numpy.ndarray, shape (n_frames, n_dims)
        Static cepstra of *all* frames in time order (before the VAD).
    pole : float, optional
        Pole of the integrator (0.98 as in Hermansky & Morgan; 0.94 is also used).

    Returns
    -------
    numpy.ndarray, shape (n_frames, n_dims), float64
    """
    from scipy.signal import lfilter, lfilter_zi

    X = _check(features)
    b = 0.1 * np.array([2.0, 1.0, 0.0, -1.0, -2.0])
    a = np.array([1.0, -float(pole)])
    zi = lfilter_zi(b, a)[:, None] * X[:1]
    y, _ = lfilter(b, a, X, axis=0, zi=zi)
    return y


#: ``extract_features(norm=...)`` name -> (function, keyword arguments).
FEATURE_NORMALIZATIONS = {
    "cmvn": (cmvn, {"variance": True}),
    "cmn": (cmvn, {"variance": False}),
    "sliding_cmvn": (sliding_cmvn, {"variance": True}),
    "sliding_cmn": (sliding_cmvn, {"variance": False}),
    "warp": (feature_warping, {}),
    "none": (None, {}),
}


def normalize_features(features: np.ndarray, norm: str = "cmvn", window: int = 300) -> np.ndarray:
    """Apply one of :data:`FEATURE_NORMALIZATIONS` by name.

    Parameters
    ----------
    features : numpy.ndarray, shape (n_frames, n_dims)
        Features of one utterance.
    norm : {"cmvn", "cmn", "sliding_cmvn", "sliding_cmn", "warp", "none"}, optional
        The normalization.
    window : int, optional
        Window in frames of the sliding ones and of ``"warp"``.

    Returns
    -------
    numpy.ndarray, shape (n_frames, n_dims), float32

    Raises
    ------
    ValueError
        For an unknown ``norm``.
    """
    if norm not in FEATURE_NORMALIZATIONS:
        raise ValueError(f"unknown normalisation {norm!r}; expected one of "
                         f"{sorted(FEATURE_NORMALIZATIONS)}")
    func, kwargs = FEATURE_NORMALIZATIONS[norm]
    if func is None:
        return _check(features).astype(np.float32)
    if func is not cmvn:
        kwargs = dict(kwargs, window=window)
    return func(features, **kwargs)
