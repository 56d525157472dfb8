"""The ``ipem`` command line: :func:`main` (see :mod:`ipem.cli.main` for the commands).

One module per command family declares each command's options next to its
handler, as a :class:`~ipem.cli.options.Command`; :data:`ipem.cli.main.COMMANDS`
lists them.  Adding a command is a module (or a ``Command`` in its family's
module) and one line in ``COMMANDS``:

================  ============================================================
module            commands
================  ============================================================
``main``          :func:`main`, the parser, logging, signals, error messages
``options``       the parser class, path roles, shared and feature options
``extract``       extract
``ubm``           train-ubm
``gmm``           adapt, score (and its i-vector back-ends), norm
``ivector``       train-ivector, extract-ivectors, train-plda
``backend``       calibrate, evaluate
``demo``          demo
================  ============================================================
"""
from .main import build_parser, main

__all__ = ["build_parser", "main"]
