"""Optional dependencies: imported where they are used, with a one-line message when missing.

``pip install ipem`` installs what k-means and Gaussian mixtures need.  The
speaker-verification file formats and MPI come with extras::

    pip install 'ipem[speaker]'   # h5py, kaldiio, soundfile, python_speech_features
    pip install 'ipem[mpi]'       # mpi4py, mpich

Modules import these packages inside the functions that use them, through
:func:`require`, so that ``import ipem`` works without them and the first
use says which extra to install.
"""
from __future__ import annotations

import importlib

__all__ = ["EXTRAS", "MissingDependencyError", "require"]

#: Optional top-level module -> the extra that installs it.
EXTRAS = {
    "h5py": "speaker",
    "kaldiio": "speaker",
    "soundfile": "speaker",
    "python_speech_features": "speaker",
    "mpi4py": "mpi",
}


class MissingDependencyError(ModuleNotFoundError):
    """An optional package is not installed; the message says which extra installs it."""


def require(module, purpose):
    """Import ``module``, or say in one line which ``ipem`` extra provides it.

    Parameters
    ----------
    module : str
        Dotted module name; its top-level package must be in :data:`EXTRAS`.
    purpose : str
        What it is needed for, completing "<package> is needed ...", e.g.
        ``"to read Kaldi ark/scp files"``.

    Returns
    -------
    module
        The imported module.

    Raises
    ------
    MissingDependencyError
        ``"kaldiio is needed to read Kaldi ark/scp files: pip install
        'ipem[speaker]'"`` when the package is not installed.  A package that
        is installed but fails to import raises its own error.
    """
    top = module.split(".", 1)[0]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.split(".", 1)[0] != top:
            raise  # the package is there; something it imports is not
        raise MissingDependencyError(f"{top} is needed {purpose}: pip install "
                                     f"'ipem[{EXTRAS[top]}]'", name=top) from None
