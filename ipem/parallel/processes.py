"""The processes of a cluster that ipem started, recorded by PID and ended by PID.

:class:`ProcessGroup` remembers every process an
:class:`~ipem.parallel.mpi.MPICluster` starts (the ipyparallel controller and
its children, ``mpiexec`` and its descendants: the engines and their nannies),
each with its role, as :class:`psutil.Process` objects (so that a PID the
system gave to another process since is never signalled).  Whatever happens to
the cluster (the hub or ``mpiexec`` killed, the parent of a process gone), the
group ends what is left of it: SIGTERM, then SIGKILL for what does not exit.
"""
from __future__ import annotations

import logging

from .reaper import Reaper, end_processes

logger = logging.getLogger(__name__)

__all__ = ["ProcessGroup", "is_running", "is_stopped"]


def _status(pid):
    """psutil's status of process ``pid`` on this host; None when there is no such process."""
    import psutil
    try:
        return psutil.Process(pid).status()
    except psutil.Error:
        return None


def is_running(pid):
    """Whether process ``pid`` (on this host) exists and is not a zombie.

    Parameters
    ----------
    pid : int

    Returns
    -------
    bool
    """
    import psutil
    return _status(pid) not in (None, psutil.STATUS_ZOMBIE)


def is_stopped(pid):
    """Whether process ``pid`` (on this host) is stopped (SIGSTOP, SIGTSTP, a debugger).

    Parameters
    ----------
    pid : int

    Returns
    -------
    bool
    """
    import psutil
    return _status(pid) in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP)


class ProcessGroup:
    """Processes recorded by role (``"controller"``, ``"engines"``), ended by PID.

    Attributes
    ----------
    leaders : dict
        ``{role: pid}`` of the process each role was recorded from (the
        controller, ``mpiexec``).
    """

    def __init__(self):
        self._procs = {}
        self.leaders = {}
        self._reaper = None

    def guard(self, what="cluster"):
        """From now on, a watcher process (:class:`~ipem.parallel.reaper.Reaper`) ends the
        recorded processes if this process is killed outright (SIGKILL) before
        :meth:`release`."""
        if self._reaper is None:
            self._reaper = Reaper(what)
            self._changed()

    @property
    def watcher(self):
        """PID of the watcher process (:meth:`guard`), None when there is none."""
        return None if self._reaper is None else self._reaper.pid

    def release(self):
        """This process ends its processes itself again: the watcher exits."""
        reaper, self._reaper = self._reaper, None
        if reaper is not None:
            reaper.close()

    def _changed(self):
        if self._reaper is not None:
            self._reaper.update(p for _, p in self._procs.values())

    def add(self, pid, role, *, leader=False):
        """Record process ``pid`` and all its descendants under ``role``.

        Parameters
        ----------
        pid : int
        role : str
        leader : bool, default=False
            ``pid`` is the process the role stands for (checked by :meth:`lost`).
        """
        import psutil
        if leader:
            self.leaders[role] = int(pid)
        try:
            proc = psutil.Process(pid)
            family = [proc] + proc.children(recursive=True)
        except psutil.Error:
            return
        for p in family:
            self._procs.setdefault(p.pid, (role, p))
        self._changed()

    def pids(self, role=None):
        """Recorded PIDs (of ``role``, or all), whether they still run or not.

        Returns
        -------
        list of int
        """
        return sorted(pid for pid, (r, _) in self._procs.items() if role in (None, r))

    def lost(self, role):
        """Whether the leader of ``role`` was recorded and is no longer running."""
        pid = self.leaders.get(role)
        return pid is not None and not is_running(pid)

    def end(self, role=None, grace=3.0):
        """End the recorded processes (of ``role``, or all) and forget them.

        SIGTERM first (SIGCONT too, so that a stopped process can act on it),
        SIGKILL for those still running after ``grace`` seconds.

        Parameters
        ----------
        role : str, optional
        grace : float, default=3.0

        Returns
        -------
        list of int
            PIDs that were still running and had to be ended.
        """
        chosen = [(pid, p) for pid, (r, p) in self._procs.items() if role in (None, r)]
        for pid, _ in chosen:
            del self._procs[pid]
        self._changed()  # what is ended here is no longer the watcher's to end
        if role is None:
            self.leaders.clear()
        else:
            self.leaders.pop(role, None)
        return end_processes([p for _, p in chosen], grace)
