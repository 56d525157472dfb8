"""The feature-format registry: which formats ipem reads and writes, and what each declares.

:data:`REGISTRY` maps each format name to the :class:`~ipem.io.refs.FormatHandler`
that its module declares (``HANDLER``): how to read a header and a matrix,
how to write one (if it can), the suffix of the files ipem writes, and the
extensions the format is inferred from.  Everything else asks here:
:func:`names` (what can be read: the CLI's ``--format`` choices),
:func:`write_names` (what extraction can write), :func:`suffix`,
:func:`handler` and :func:`infer_format`; :data:`FORMATS` and
:data:`EXTENSIONS` are derived from the registry.  The generic functions
of :mod:`ipem.io.features` dispatch through it, and :mod:`ipem.io.refs`
(:class:`~ipem.io.FeatureRef`, the messages of
:class:`~ipem.io.FeatureFileError`) is handed it (:func:`ipem.io.refs.bind_registry`).
Each format module's docstring documents its format.

Adding a feature format
-----------------------
Write ``ipem/io/<fmt>.py`` with ``read_shape``, ``read_into`` and (if ipem
can write it) ``write_file``, raising :class:`~ipem.io.FeatureFileError`
for bad files (the helpers of :mod:`ipem.io.checks` do the common checks),
and declare ``HANDLER = FormatHandler(read_shape, read_into, write_file,
suffix=..., extensions=(...))`` at its end; then add one line
``"<fmt>": <fmt>.HANDLER,`` to :data:`REGISTRY` (and the module to the
import above it).  :func:`ipem.io.describe`, :func:`~ipem.io.list_features`,
:func:`~ipem.io.load`, :func:`~ipem.io.write`, extraction and the CLI's
``--format`` choices then know it; nothing else changes.
"""
from __future__ import annotations

import os

from ..errors import ParameterError
from . import hdf5, htk, kaldi, npy
from .lists import is_scp_file
from .refs import FeatureFileError, FormatHandler, PathLike, bind_registry

__all__ = ["EXTENSIONS", "FORMATS", "FormatHandler", "FormatInferenceError", "REGISTRY",
           "handler", "infer_format", "names", "suffix", "write_names"]

#: Format name -> its handler: the one list of feature formats, one line each.  The
#: order is that of the CLI's ``--format`` choices.
REGISTRY: dict[str, FormatHandler] = {
    "htk": htk.HANDLER,
    "npy": npy.HANDLER,
    "h5": hdf5.HANDLER,
    "kaldi": kaldi.HANDLER,
}
bind_registry(REGISTRY)


def names() -> tuple[str, ...]:
    """Every registered format name (the formats that can be read), in registry order.

    Returns
    -------
    tuple of str
        E.g. ``("htk", "npy", "h5", "kaldi")``.
    """
    return tuple(REGISTRY)


def write_names() -> tuple[str, ...]:
    """The formats :func:`ipem.io.write` (and so extraction) can write, in registry order.

    Returns
    -------
    tuple of str
        E.g. ``("htk", "npy", "h5")``.
    """
    return tuple(name for name, ops in REGISTRY.items() if ops.write_file is not None)


def handler(fmt: str) -> FormatHandler:
    """The handler of format ``fmt``.

    Parameters
    ----------
    fmt : str
        A format name.

    Returns
    -------
    FormatHandler

    Raises
    ------
    ValueError
        If ``fmt`` is not one of :func:`names`.
    """
    try:
        return REGISTRY[fmt]
    except (KeyError, TypeError):
        raise ValueError(f"unknown feature format {fmt!r}; expected one of {names()}") from None


def suffix(fmt: str) -> str:
    """The suffix of the feature files of format ``fmt`` that ipem writes.

    Parameters
    ----------
    fmt : str
        A format name.

    Returns
    -------
    str
        E.g. ``".htk"``; the handler's, or ``"."`` and the name.

    Raises
    ------
    ValueError
        If ``fmt`` is not one of :func:`names`.
    """
    ops = handler(fmt)
    return ops.suffix if ops.suffix is not None else "." + fmt


def _extensions() -> dict[str, str]:
    """Lower-case extension -> format name, from the registry as it is now."""
    return {ext: name for name, ops in REGISTRY.items() for ext in ops.extensions}


#: Supported format names, as registered when ipem was imported (:func:`names` is the
#: registry as it is now).
FORMATS: tuple[str, ...] = names()

#: File extensions (lower case) from which a feature format is inferred, as registered
#: when ipem was imported.
EXTENSIONS: dict[str, str] = _extensions()


class FormatInferenceError(FeatureFileError, ParameterError):
    """No feature format can be inferred from a file's name: pass it (parameter ``fmt``).

    A :class:`~ipem.io.FeatureFileError` about the file, and a
    :class:`~ipem.errors.ParameterError` about ``fmt``, whose
    :attr:`hint` is the advice to pass ``fmt=`` (a caller that cannot pass
    it, such as the CLI, renders its own advice instead).

    Parameters
    ----------
    path : str
        The file.
    problem : str
        What is wrong, without the hint.
    hint : str, optional
        Advice that ends the message.
    """

    def __init__(self, path: str, problem: str, hint: str = "") -> None:
        ParameterError.__init__(self, f"{path}: {problem}", "fmt", hint=hint)
        self.path, self.problem, self.key, self.fmt = str(path), problem + hint, None, None
        self.base_problem = problem

    def __reduce__(self):
        return (type(self), (self.path, self.base_problem, self.hint))


def infer_format(path: PathLike) -> str:
    """Infer a feature format from a file name.

    Formats that recognize names whatever their extension (Kaldi
    rxspecifiers) are asked first, then the extensions of every format.

    Parameters
    ----------
    path : str or os.PathLike
        File name, or a Kaldi rxspecifier ``file.ark:offset``.

    Returns
    -------
    str
        One of :func:`names`.

    Raises
    ------
    FeatureFileError
        If ``path`` is an ``.scp`` file; :class:`FormatInferenceError` (also
        a :class:`~ipem.errors.ParameterError` about ``fmt``) if the
        extension is not recognised.
    """
    path = os.fspath(path)
    for name, ops in REGISTRY.items():
        if ops.recognizes is not None and ops.recognizes(path):
            return name
    ext = os.path.splitext(path)[1].lower()
    extensions = _extensions()
    if ext in extensions:
        return extensions[ext]
    if is_scp_file(path):
        raise FeatureFileError(path, "is a Kaldi script file; use list_features() to expand it")
    known = ", ".join(sorted(extensions))
    raise FormatInferenceError(path, f"cannot infer the feature format from extension {ext!r} "
                               f"(known: {known}; Kaldi archives via .scp)", hint="; pass fmt=")
