"""What a feature matrix is to ipem: :class:`FeatureRef`, :class:`FeatureFileError`, and
what a feature format is: :class:`FormatHandler`.

A *feature file* holds one matrix of shape ``(n_frames, n_features)``: one
row per analysis frame (typically 10 ms), one column per feature dimension
(e.g. MFCCs plus deltas).  A :class:`FeatureRef` names one such matrix (a
file, a Kaldi archive entry or an HDF5 dataset) together with its shape, as
read from the header; it is small and picklable, so the client can describe
files once and ship the refs to the engines that read them.

Every problem found in a feature file raises :class:`FeatureFileError` (a
:class:`ValueError`) whose message starts with the file path (and the
utterance id or dataset name where there is one) and says what is wrong.

This module knows no format by name.  Each format module declares its
:class:`FormatHandler`; the registry of :mod:`ipem.io.formats` (which
imports the format modules, and so sits above this module) hands itself
over with :func:`bind_registry`, and :class:`FeatureRef` and
:func:`location` look formats up there.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Mapping, Union

import numpy as np

__all__ = ["FeatureFileError", "FeatureRef", "FormatHandler", "PathLike", "bind_registry",
           "location"]

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class FormatHandler:
    """What one feature format declares: how to read and write it, and how it is named.

    Each format module (:mod:`ipem.io.htk`, ...) declares one as ``HANDLER``;
    :data:`ipem.io.formats.REGISTRY` maps the format's name to it.

    Parameters
    ----------
    read_shape : callable
        ``read_shape(path, key, files) -> (n_frames, n_features)``: read
        only the header, validate it and the file size.  ``files`` caches
        open files by name (:func:`ipem.io.checks.open_files`).
    read_into : callable
        ``read_into(ref, out, files) -> None``: read the matrix into ``out``
        (an ndarray of shape ``ref.shape``, C-contiguous), after checking
        that the file still matches ``ref``.
    write_file : callable or None, optional
        ``write_file(tmp_path, X, key, options) -> None``: write ``X`` (shape
        ``(n_frames, n_features)``) to the (already created, empty)
        temporary file; ``options`` holds those of :attr:`write_options`
        that the caller gave.  ``None`` when :func:`ipem.io.write` cannot
        write the format.
    suffix : str, optional
        The suffix of the files ipem writes (``".htk"``); default: ``"."``
        and the format's name.
    extensions : tuple of str, optional
        Lower-case file extensions from which the format is inferred.
    recognizes : callable or None, optional
        ``recognizes(path) -> bool``: names that are this format whatever
        their extension (Kaldi rxspecifiers ``file.ark:offset``, pipes);
        asked before the extensions.
    default_key : str or None, optional
        Key used when none is given (the HDF5 dataset name); formats with a
        default key take the ``h5_key`` of :func:`ipem.io.list_features`.
    takes_key : bool, optional
        Whether files of the format are addressed with a key (an utterance
        id or a dataset name); a key given for a format without one is
        refused.
    key_phrase : str, optional
        How a key is named in messages, with ``{key}`` (e.g.
        ``"dataset {key!r}"``); see :func:`location`.
    check_key : callable or None, optional
        ``check_key(key) -> None``: raise ValueError for a key
        :func:`ipem.io.write` cannot write.
    write_options : tuple of str, optional
        Keyword options of :func:`ipem.io.write` that this format uses (HTK:
        ``sample_period``, ``parm_kind``); other formats ignore them.
    write_hint : str, optional
        What to use instead, for a format :func:`ipem.io.write` cannot write.
    absolute : callable, optional
        ``absolute(spec) -> str``: the path made absolute (default
        :func:`os.path.abspath`).
    """

    read_shape: Callable
    read_into: Callable
    write_file: Callable | None = None
    suffix: str | None = None
    extensions: tuple[str, ...] = ()
    recognizes: Callable[[str], bool] | None = None
    default_key: str | None = None
    takes_key: bool = False
    key_phrase: str = "utterance {key}"
    check_key: Callable[[str | None], None] | None = None
    write_options: tuple[str, ...] = ()
    write_hint: str = ""
    absolute: Callable[[str], str] = os.path.abspath


#: The format registry, name -> :class:`FormatHandler`, once :mod:`ipem.io.formats`
#: has bound it (:func:`bind_registry`); the same mapping object, so that
#: changes to it are seen here.
_registry: Mapping[str, FormatHandler] = {}


def bind_registry(registry: Mapping[str, FormatHandler]) -> None:
    """Make ``registry`` the formats that :class:`FeatureRef` and :func:`location` know.

    Called once, by :mod:`ipem.io.formats` with its
    :data:`~ipem.io.formats.REGISTRY`: this module sits below the format
    modules, which the registry imports, so it is handed the registry
    instead of importing it.

    Parameters
    ----------
    registry : mapping of str to FormatHandler
        Format name -> handler; kept by reference.
    """
    global _registry
    _registry = registry


def location(path: str, key: str | None, fmt: str | None) -> str:
    """Human-readable location of a feature matrix, as used in messages.

    Parameters
    ----------
    path : str
        File path (for Kaldi the rxspecifier).
    key : str or None
        Kaldi utterance id or HDF5 dataset name.
    fmt : str or None
        Format name; its handler's :attr:`~FormatHandler.key_phrase` says
        how ``key`` is phrased (an utterance for other names).

    Returns
    -------
    str
        ``path``, or ``path (<key phrase>)``: ``path (dataset 'key')`` for
        HDF5, ``path (utterance key)`` for Kaldi.
    """
    if key is None:
        return path
    ops = _registry.get(fmt) if isinstance(fmt, str) else None
    phrase = ops.key_phrase if ops is not None else FormatHandler.key_phrase
    return f"{path} ({phrase.format(key=key)})"


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
    fmt : str
        File format, a name of :func:`ipem.io.formats.names`.
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
        if not isinstance(self.fmt, str) or self.fmt not in _registry:
            raise ValueError(f"unknown feature format {self.fmt!r}; expected one of "
                             f"{tuple(_registry)}")
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
