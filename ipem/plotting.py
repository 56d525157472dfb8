"""Live convergence plot built on the EM driver's per-iteration callback."""
from __future__ import annotations

import math


def _in_notebook():
    try:
        from IPython import get_ipython
        ip = get_ipython()
    except ImportError:
        return False
    return ip is not None and ip.__class__.__name__ == "ZMQInteractiveShell" and \
        hasattr(ip, "kernel")


class LivePlot:
    """Plot the EM objective while training runs.

    Pass an instance as a callback (``GaussianMixture(callbacks=LivePlot())``).
    In a Jupyter notebook the figure is redrawn in place after every
    iteration; elsewhere it is written to ``path`` (a PNG) every
    ``save_every`` iterations and at :meth:`close`.

    Parameters
    ----------
    title : str
    path : str or None
        PNG file to write; default ``"convergence.png"`` outside notebooks.
    save_every : int, default=1
    ylabel : str
    records : list, optional
        Records of an earlier run to show first (e.g. from a checkpoint).

    Attributes
    ----------
    records : list of IterationRecord
    """

    def __init__(self, title="EM convergence", path=None, save_every=1,
                 ylabel="objective (mean log-likelihood per frame)", records=None):
        self.title = title
        self.notebook = _in_notebook()
        self.path = path if path is not None or self.notebook else "convergence.png"
        self.save_every = max(int(save_every), 1)
        self.ylabel = ylabel
        self.records = list(records or [])
        self._fig = None
        self._handle = None

    def _figure(self):
        if self._fig is None:
            import matplotlib
            if not self.notebook:
                matplotlib.use("Agg", force=False)
            from matplotlib.figure import Figure
            self._fig = Figure(figsize=(9, 3.6), layout="constrained")
            self._ax, self._ax2 = self._fig.subplots(1, 2)
        return self._fig

    def __call__(self, record):
        self.records.append(record)
        self.draw()
        if self.path and (len(self.records) % self.save_every == 0):
            self.save()

    def draw(self):
        fig = self._figure()
        ax, ax2 = self._ax, self._ax2
        ax.clear()
        ax2.clear()
        its = [r.iteration for r in self.records]
        obj = [r.objective for r in self.records]
        stages = [r.stage for r in self.records]
        if any(s is not None for s in stages):
            # one line per stage of a growing mixture, labelled by its size
            start = 0
            for i in range(1, len(stages) + 1):
                if i == len(stages) or stages[i] != stages[start]:
                    ax.plot(its[start:i], obj[start:i], "o-", ms=3, label=f"K={stages[start]}")
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
        if self.notebook:
            from IPython.display import display
            if self._handle is None:
                self._handle = display(fig, display_id=True)
            else:
                self._handle.update(fig)

    def save(self, path=None):
        """Write the figure to ``path`` (default: the instance's path)."""
        path = path or self.path
        if path:
            self._figure().savefig(path, dpi=90)
        return path

    def close(self):
        if self.path:
            self.save()
