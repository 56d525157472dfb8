"""The model and checkpoint file format: plain ``.npz`` arrays, never pickle.

A UBM model file (written by :meth:`ipem.UBMTrainer.save`) and a training
checkpoint are NumPy ``.npz`` archives read with ``allow_pickle=False``.
They hold at least

``weights`` : ndarray of shape (n_components,)
``means`` : ndarray of shape (n_components, n_features)
``covariances`` : ndarray of shape (n_components, n_features)
    Diagonal variances.
``history_json`` : 0-d str array, optional
    The :class:`ipem.IterationRecord` history as JSON
    (:func:`records_to_json`); non-finite floats are stored as strings.

and, for checkpoints, the training position plus the random generator
state as three arrays (:func:`rng_to_arrays`).  Files are written with
:func:`ipem.io.atomic.save_npz_atomic`.
"""
from __future__ import annotations

import json
import os
from typing import Mapping, Sequence

import numpy as np

from ..em.driver import IterationRecord

__all__ = ["load_model", "records_from_json", "records_to_json", "rng_from_arrays",
           "rng_to_arrays"]


def rng_to_arrays(rng: np.random.RandomState) -> dict[str, np.ndarray]:
    """State of a legacy MT19937 ``RandomState`` as plain arrays.

    Parameters
    ----------
    rng : numpy.random.RandomState

    Returns
    -------
    dict
        ``rng_keys`` : uint32 ndarray of shape (624,), the key vector;
        ``rng_meta`` : int64 ndarray of shape (2,), position and has-gauss flag;
        ``rng_cached`` : float ndarray of shape (1,), the cached Gaussian.
    """
    name, keys, pos, has_gauss, cached = rng.get_state()
    return {"rng_keys": keys, "rng_meta": np.array([pos, has_gauss], dtype=np.int64),
            "rng_cached": np.array([cached])}


def rng_from_arrays(z: Mapping[str, np.ndarray]) -> np.random.RandomState:
    """Rebuild a ``RandomState`` from the arrays of :func:`rng_to_arrays`.

    Parameters
    ----------
    z : mapping
        Holds ``rng_keys`` (624,), ``rng_meta`` (2,) and ``rng_cached`` (1,),
        e.g. an open ``.npz`` file or the dict of :func:`load_model`.

    Returns
    -------
    numpy.random.RandomState
        In exactly the saved state.
    """
    rng = np.random.RandomState()
    rng.set_state(("MT19937", z["rng_keys"], int(z["rng_meta"][0]), int(z["rng_meta"][1]),
                   float(z["rng_cached"][0])))
    return rng


def _clean(v):
    """JSON-safe copy of ``v``: non-finite floats as strings, NumPy scalars as Python."""
    if isinstance(v, float) and not np.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def records_to_json(records: Sequence[IterationRecord]) -> str:
    """Serialise an EM history to JSON.

    Parameters
    ----------
    records : sequence of IterationRecord

    Returns
    -------
    str
        A JSON list of the records' :meth:`~ipem.IterationRecord.as_dict`;
        ``inf``/``nan`` are written as the strings ``"inf"``/``"nan"``.
    """
    return json.dumps([_clean(r.as_dict()) for r in records])


def records_from_json(text: str) -> list[IterationRecord]:
    """Inverse of :func:`records_to_json`.

    Parameters
    ----------
    text : str
        JSON list of record dicts.

    Returns
    -------
    list of IterationRecord
    """
    out = []
    for d in json.loads(text):
        for key in ("objective", "change"):
            if isinstance(d[key], str):
                d[key] = float(d[key])
        out.append(IterationRecord(**d))
    return out


def load_model(path) -> dict:
    """Read a model or checkpoint file written by :class:`ipem.UBMTrainer`.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    dict
        ``weights`` (K,), ``means`` (K, D), ``covariances`` (K, D),
        ``history`` (list of IterationRecord) and every other array in the
        file (for checkpoints, the training position and RNG state).

    Raises
    ------
    ValueError
        If the file cannot be read as an ``.npz`` without pickle, or lacks
        ``weights``, ``means`` or ``covariances``; the message names the file.
    """
    try:
        with np.load(os.fspath(path), allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable ipem model file ({exc})") from None
    for key in ("weights", "means", "covariances"):
        if key not in out:
            raise ValueError(f"{path}: not an ipem model file (no '{key}')")
    out["history"] = records_from_json(str(out.pop("history_json", "[]")))
    return out
