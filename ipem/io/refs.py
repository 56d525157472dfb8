"""What a feature matrix is to ipem: :class:`FeatureRef` and :class:`FeatureFileError`.

A *feature file* holds one matrix of shape ``(n_frames, n_features)``: one
row per analysis frame (typically 10 ms), one column per feature dimension
(e.g. MFCCs plus deltas).  A :class:`FeatureRef` names one such matrix (a
file, a Kaldi archive entry or an HDF5 dataset) together with its shape, as
read from the header; it is small and picklable, so the client can describe
files once and ship the refs to the engines that read them.

Every problem found in a feature file raises :class:`FeatureFileError` (a
:class:`ValueError`) whose message starts with the file path (and the
utterance id or dataset name where there is one) and says what is wrong.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Union

import numpy as np

__all__ = ["DEFAULT_H5_KEY", "FORMATS", "FeatureFileError", "FeatureRef", "PathLike",
           "location"]

PathLike = Union[str, "os.PathLike[str]"]

#: Supported format names.
FORMATS = ("htk", "kaldi", "npy", "h5")

#: Default HDF5 dataset name.
DEFAULT_H5_KEY = "features"


def location(path: str, key: str | None, fmt: str | None) -> str:
    """Human-readable location of a feature matrix, as used in messages.

    Parameters
    ----------
    path : str
        File path (for Kaldi the rxspecifier).
    key : str or None
        Kaldi utterance id or HDF5 dataset name.
    fmt : str or None
        Format name; decides how ``key`` is phrased.

    Returns
    -------
    str
        ``path``, ``path (dataset 'key')`` for HDF5, or ``path (utterance key)``.
    """
    if key is None:
        return path
    if fmt == "h5":
        return f"{path} (dataset {key!r})"
    return f"{path} (utterance {key})"


class FeatureFileError(ValueError):
    """A feature file is missing, unreadable, malformed or inconsistent.

    Parameters
    ----------
    path : str
        The offending file (for Kaldi, the rxspecifier ``ark:offset``).
    problem : str
        What is wrong, e.g. ``"contains zero frames"``.
    key : str or None, optional
        Kaldi utterance id or HDF5 dataset name, if any.
    fmt : str or None, optional
        Format of the file, used to phrase ``key`` in the message.

    Attributes
    ----------
    path, problem, key, fmt
        As given.
    """

    def __init__(self, path: str, problem: str, key: str | None = None,
                 fmt: str | None = None) -> None:
        self.path = str(path)
        self.problem = problem
        self.key = key
        self.fmt = fmt
        super().__init__(f"{location(self.path, key, fmt)}: {problem}")

    def __reduce__(self):
        # Exceptions pickle as cls(*self.args) by default, which does not
        # match our signature; ipyparallel needs these to cross processes.
        return (type(self), (self.path, self.problem, self.key, self.fmt))


@dataclass(frozen=True)
class FeatureRef:
    """Descriptor of one feature matrix, cheap to pickle and send to engines.

    Parameters
    ----------
    path : str
        Absolute file path; for Kaldi the rxspecifier
        ``/abs/path.ark:offset``.
    fmt : {"htk", "kaldi", "npy", "h5"}
        File format.
    key : str or None
        Kaldi utterance id or HDF5 dataset name; ``None`` for HTK and npy.
    n_frames : int
        Number of rows (frames) of the matrix.
    n_features : int
        Number of columns (feature dimensions) of the matrix.
    """

    path: str
    fmt: str
    key: str | None
    n_frames: int
    n_features: int

    def __post_init__(self) -> None:
        if self.fmt not in FORMATS:
            raise ValueError(f"unknown feature format {self.fmt!r}; expected one of {FORMATS}")
        for name in ("n_frames", "n_features"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"FeatureRef.{name} must be a non-negative int, got {value!r}")
            object.__setattr__(self, name, int(value))

    @property
    def shape(self) -> tuple[int, int]:
        """tuple of int: ``(n_frames, n_features)``."""
        return (self.n_frames, self.n_features)

    def where(self) -> str:
        """Return the location string used in error messages."""
        return location(self.path, self.key, self.fmt)
