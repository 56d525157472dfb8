"""Progress bars that suit where the code runs, and the notebook test they rely on.

In a Jupyter kernel with ipywidgets the bar is a widget; everywhere else it is
tqdm's plain-text bar (on stdout in a kernel, where stderr is shown as an
error stream; on stderr in a terminal).  The choice is made here instead of by
``tqdm.auto``, which warns "IProgress not found" in a kernel without ipywidgets.

Where stderr is not a terminal (a batch job's log, a pipe, a file) a bar
redrawn with carriage returns would become one endless line; there the
progress is a line of counts (``extract:  40% 48/120 [00:12<00:18, 4.0file/s]``)
at the start, then at most every :data:`LOG_INTERVAL` seconds, and at the end.
"""
from __future__ import annotations

import importlib.util
import sys

__all__ = ["LOG_INTERVAL", "in_notebook", "progress_bar", "progress_iter"]

#: Seconds between two progress lines where stderr is not a terminal (a log file).
LOG_INTERVAL = 5.0


def in_notebook():
    """Whether this code runs in a Jupyter kernel (ipykernel) that a person looks at.

    Returns
    -------
    bool
        True in a notebook or any other front-end of an IPython kernel;
        False in a terminal IPython, a script, and on ipyparallel engines
        (which are kernels too, but nobody watches their displays).
    """
    ipython = sys.modules.get("IPython")
    if ipython is None:         # never imported: certainly not a kernel
        return False
    kernel = getattr(ipython.get_ipython(), "kernel", None)
    return kernel is not None and not type(kernel).__module__.startswith("ipyparallel.")


def _bar_class():
    """The tqdm class for this process: the widget bar or the text bar."""
    if in_notebook() and importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.notebook import tqdm
    else:
        from tqdm.std import tqdm
    return tqdm


class _Lines:
    """A text stream for tqdm that gives every redraw a line of its own.

    tqdm redraws its bar with ``"\\r" + text + padding``; written to a file,
    that is one line that grows for as long as the work runs.  Here each
    redraw becomes ``text + "\\n"`` and blank redraws vanish.
    """

    def __init__(self, stream):
        self.stream = stream

    def write(self, text):
        text = text.replace("\r", "").rstrip()
        if text:
            self.stream.write(text + "\n")

    def flush(self):
        self.stream.flush()


def _is_terminal(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):        # no isatty, or closed
        return False


def _make(iterable, total, desc, enabled, unit):
    cls = _bar_class()
    kwargs = {}
    if in_notebook():
        if cls.__module__ == "tqdm.std":
            kwargs["file"] = sys.stdout
    elif not _is_terminal(sys.stderr):
        # a log: lines of counts (no bar: ncols=0), one every LOG_INTERVAL seconds at most
        kwargs.update(file=_Lines(sys.stderr), ncols=0, mininterval=LOG_INTERVAL)
    return cls(iterable, total=total, desc=desc, unit=unit, disable=not enabled, **kwargs)


def progress_bar(total, desc=None, enabled=True, *, unit="it"):
    """A progress bar to advance by hand.

    Parameters
    ----------
    total : int or None
        Number of steps (``None``: unknown, the bar counts without a percentage).
    desc : str, optional
        Label shown before the bar.
    enabled : bool, default=True
        ``False`` gives a bar that shows nothing (``update`` and ``close``
        still work), so callers need no ``if``.
    unit : str, default="it"
        Name of one step, as in ``"file"``.

    Returns
    -------
    tqdm.std.tqdm or tqdm.notebook.tqdm
        The widget bar in a Jupyter kernel that has ipywidgets, the text bar
        otherwise.  Advance it with ``bar.update(n)``; end it with
        ``bar.close()`` or use it as a context manager.

    Examples
    --------
    >>> with progress_bar(3, desc="tasks", enabled=False) as bar:
    ...     for _ in range(3):
    ...         bar.update(1)
    >>> bar.n
    3
    """
    return _make(None, total, desc, enabled, unit)


def progress_iter(iterable, total=None, desc=None, enabled=True, *, unit="it"):
    """Iterate over ``iterable`` while a progress bar counts the items.

    Parameters
    ----------
    iterable : iterable
    total : int, optional
        Number of items; default ``len(iterable)`` where it has one.
    desc, enabled, unit
        As in :func:`progress_bar`.

    Returns
    -------
    tqdm.std.tqdm or tqdm.notebook.tqdm
        Yields the items of ``iterable``; the bar closes when they run out.

    Examples
    --------
    >>> [x * x for x in progress_iter(range(4), desc="squares", enabled=False)]
    [0, 1, 4, 9]
    """
    return _make(iterable, total, desc, enabled, unit)
