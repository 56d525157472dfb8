"""Figures that need no pyplot, and the live convergence plot built on them.

ipem never imports :mod:`matplotlib.pyplot` and never changes the matplotlib
backend: its figures are :class:`matplotlib.figure.Figure` objects with their
own Agg canvas.  Such a figure is not shown by Jupyter's inline backend, so
the figures made here show themselves as PNG images (``_repr_png_``), and
:class:`LivePlot` publishes a PNG that it replaces after every iteration.
"""
from __future__ import annotations

import base64
import io
import logging
import math
import os

from .io.atomic import atomic_path
from .progress import in_notebook

__all__ = ["new_figure", "png_bytes", "image_format", "LivePlot"]

logger = logging.getLogger(__name__)

_NotebookFigure = None


def _figure_class():
    """``NotebookFigure``, made on first use so that ``import ipem`` needs no matplotlib."""
    global _NotebookFigure
    if _NotebookFigure is None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        class NotebookFigure(Figure):
            """A pyplot-free matplotlib Figure that Jupyter shows as a PNG image."""

            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                FigureCanvasAgg(self)

            def _repr_png_(self):
                return png_bytes(self)

        # found again by pickle as ipem.plotting.NotebookFigure (see __getattr__)
        NotebookFigure.__module__, NotebookFigure.__qualname__ = __name__, "NotebookFigure"
        _NotebookFigure = NotebookFigure
    return _NotebookFigure


def __getattr__(name):
    if name == "NotebookFigure":
        return _figure_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def new_figure(**kwargs):
    """A matplotlib figure outside pyplot that Jupyter displays as an image.

    Parameters
    ----------
    **kwargs
        Passed to :class:`matplotlib.figure.Figure` (``figsize``, ``dpi``,
        ``layout``, ...).

    Returns
    -------
    ipem.plotting.NotebookFigure
        A :class:`matplotlib.figure.Figure` with an Agg canvas: ``savefig``
        works without a display, the global backend is left alone, and as the
        value of a notebook cell (or passed to ``IPython.display.display``) it
        shows as a PNG.
    """
    return _figure_class()(**kwargs)


def png_bytes(fig, dpi=None):
    """Render ``fig`` to PNG.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    dpi : float, optional
        Default: the figure's own dpi.

    Returns
    -------
    bytes
        The PNG file's content.
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def image_format(path):
    """The image format matplotlib writes ``path`` in, from its extension.

    Parameters
    ----------
    path : str or os.PathLike
        ``.png``, ``.pdf``, ``.svg``, ... ; no extension means PNG.

    Returns
    -------
    str
        The format name, e.g. ``"png"``.

    Raises
    ------
    ValueError
        For an extension matplotlib cannot write (the message lists those it
        can).
    """
    from matplotlib.backend_bases import FigureCanvasBase

    ext = os.path.splitext(os.fspath(path))[1][1:].lower()
    known = FigureCanvasBase.get_supported_filetypes()
    if ext and ext not in known:
        raise ValueError(f"{os.fspath(path)}: matplotlib cannot write .{ext} images (it writes "
                         f"{', '.join('.' + k for k in sorted(known))})")
    return ext or "png"


class LivePlot:
    """Plot the EM objective while training runs.

    Pass an instance as a callback (``GaussianMixture(callbacks=LivePlot())``).
    In a Jupyter kernel the plot is a PNG image that is replaced in place
    after every iteration (no ``%matplotlib`` magic needed); elsewhere it is
    written to ``path`` every ``save_every`` iterations and at :meth:`close`,
    atomically (a reader never sees half an image).  A write that fails during
    training is logged as a warning and training goes on; :meth:`save` and
    :meth:`close` raise.  The global matplotlib backend is never changed.

    Parameters
    ----------
    title : str
    path : str or None
        PNG file to write; default ``"convergence.png"`` outside notebooks,
        none in a notebook.
    save_every : int, default=1
    ylabel : str
    records : list, optional
        Records of an earlier run to show first (e.g. from a checkpoint).

    Attributes
    ----------
    records : list of IterationRecord
    notebook : bool
        Whether the plot is displayed in a Jupyter kernel.
    figure : ipem.plotting.NotebookFigure
        The figure drawn into (made on first use).
    """

    def __init__(self, title="EM convergence", path=None, save_every=1,
                 ylabel="objective (mean log-likelihood per frame)", records=None):
        self.title = title
        self.notebook = in_notebook()
        self.path = path if path is not None or self.notebook else "convergence.png"
        self.save_every = max(int(save_every), 1)
        self.ylabel = ylabel
        self.records = list(records or [])
        self._fig = None
        self._handle = None
        self._n_drawn = None      # len(records) when the axes were last drawn
        self._save_failed = False

    @property
    def figure(self):
        """The figure drawn into (made on first use)."""
        if self._fig is None:
            self._fig = new_figure(figsize=(9, 3.6), dpi=80, layout="constrained")
            self._ax, self._ax2 = self._fig.subplots(1, 2)
        return self._fig

    def __call__(self, record):
        self.records.append(record)
        if self.notebook:
            self.draw()
        if self.path and (len(self.records) % self.save_every == 0):
            try:
                self.save()
            except (OSError, ValueError) as exc:  # a plot is not worth the training
                if not self._save_failed:
                    logger.warning("cannot write the convergence plot %s (%s); training goes "
                                   "on", self.path, exc)
                self._save_failed = True

    def __repr__(self):
        return f"LivePlot(title={self.title!r}, iterations={len(self.records)})"

    def _repr_png_(self):
        return png_bytes(self._drawn())

    def draw(self):
        """Redraw the figure; in a notebook, replace the displayed image."""
        self._plot()
        if self.notebook:
            self._publish()

    def _drawn(self):
        """The figure, showing every record so far."""
        if self._n_drawn != len(self.records):
            self._plot()
        return self.figure

    def _plot(self):
        fig = self.figure
        ax, ax2 = self._ax, self._ax2
        ax.clear()
        ax2.clear()
        its = [r.iteration for r in self.records]
        obj = [r.objective for r in self.records]
        stages = [r.stage for r in self.records]
        if any(s is not None for s in stages):
            # one line per stage of a growing mixture, labelled by its size: "K=64" for a
            # mixture's components, "R=10" for a total-variability rank (the record says)
            start = 0
            for i in range(1, len(stages) + 1):
                if i == len(stages) or stages[i] != stages[start]:
                    letter = getattr(self.records[start], "stage_label", None) or "K"
                    ax.plot(its[start:i], obj[start:i], "o-", ms=3,
                            label=f"{letter}={stages[start]}")
                    start = i
            ax.legend(fontsize=7, ncol=2)
        else:
            ax.plot(its, obj, "o-", ms=3)
        ax.set_xlabel("iteration")
        ax.set_ylabel(self.ylabel, fontsize=8)
        ax.set_title(self.title, fontsize=10)
        changes = [abs(r.change) for r in self.records if math.isfinite(r.change) and r.change != 0]
        ch_its = [r.iteration for r in self.records if math.isfinite(r.change) and r.change != 0]
        if changes:
            ax2.semilogy(ch_its, changes, "s-", ms=3, color="tab:red")
        ax2.set_xlabel("iteration")
        ax2.set_ylabel("|change|", fontsize=8)
        ax2.set_title("last: %.2f ms/iteration" % (1e3 * self.records[-1].time) if self.records
                      else "", fontsize=9)
        self._n_drawn = len(self.records)
        return fig

    def _publish(self):
        from IPython.display import display

        bundle = {"image/png": base64.b64encode(png_bytes(self._drawn())).decode("ascii"),
                  "text/plain": repr(self)}
        if self._handle is None:
            self._handle = display(bundle, raw=True, display_id=True)
        else:
            self._handle.update(bundle, raw=True)

    def save(self, path=None):
        """Write the figure to ``path`` (default: the instance's path), atomically.

        The format follows the extension (:func:`image_format`; PNG without
        one).
        """
        path = path or self.path
        if path:
            fmt = image_format(path)
            fig = self._drawn()
            with atomic_path(path) as tmp:
                fig.savefig(tmp, dpi=90, format=fmt)
        return path

    def close(self):
        """Write the final PNG (when there is a path)."""
        if self.path:
            self.save()
