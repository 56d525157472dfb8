"""End a cluster's processes when the process that started them is killed outright.

A Python process that ends normally, on an exception, on Ctrl-C or on SIGTERM
stops its :class:`~ipem.parallel.mpi.MPICluster` itself.  Killed with SIGKILL
(the kernel's OOM killer, a Jupyter kernel restarted, ``kill -9``) it can do
nothing, and the ipyparallel controller, ``mpiexec`` and the engines would
run on, orphaned, holding memory and cores.  :class:`Reaper` starts a small
watcher process (``python -m ipem.parallel.reaper``) in a session of its own:
it polls the owner, and when the owner is gone it cancels the Slurm jobs and
ends, by PID, the processes last listed for it (SIGTERM, then SIGKILL), then
exits.  The owner keeps the
list current (:meth:`Reaper.update`) and removes it when it stops its cluster
itself (:meth:`Reaper.close`), which ends the watcher too.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time

logger = logging.getLogger(__name__)

__all__ = ["Reaper", "end_processes"]

#: Seconds between two looks at the owner.
POLL = 0.5


def _identity(proc):
    """``[pid, create_time]`` of a psutil.Process: a PID alone may be given again."""
    return [proc.pid, proc.create_time()]


class Reaper:
    """A watcher process that ends the listed processes if this process is killed.

    Parameters
    ----------
    what : str
        Named in the watcher's log lines (e.g. ``"MPICluster"``).
    """

    def __init__(self, what="cluster"):
        import psutil
        fd, self.listing = tempfile.mkstemp(prefix="ipem-reaper-", suffix=".json")
        os.close(fd)
        self._write({"procs": [], "jobs": []})
        me = psutil.Process()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "ipem.parallel.reaper", str(me.pid), repr(me.create_time()),
             self.listing, what],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True)

    @property
    def pid(self):
        """PID of the watcher process."""
        return self._proc.pid

    def _write(self, entries):
        tmp = f"{self.listing}.{os.getpid()}.new"
        with open(tmp, "w") as fh:
            json.dump(entries, fh)
        os.replace(tmp, self.listing)

    def update(self, procs, jobs=()):
        """List what to end if this process dies.

        Parameters
        ----------
        procs : iterable of psutil.Process
            Processes on this host, ended by PID.
        jobs : iterable of str, optional
            Slurm job ids, cancelled with ``scancel``.
        """
        import psutil
        entries = []
        for p in procs:
            try:
                entries.append(_identity(p))
            except psutil.Error:
                pass
        self._write({"procs": entries, "jobs": [str(j) for j in jobs]})

    def close(self):
        """The owner stopped its processes itself: remove the list; the watcher exits."""
        try:
            os.unlink(self.listing)
        except FileNotFoundError:
            pass
        try:
            self._proc.wait(10 * POLL + 5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def _alive(pid, born):
    import psutil
    try:
        proc = psutil.Process(pid)
        return proc.create_time() == born and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _end(entries, grace=3.0):
    """End the listed processes that are still the ones listed (same create time); returns
    the PIDs that were running."""
    import psutil

    procs = []
    for pid, born in entries:
        try:
            proc = psutil.Process(pid)
            if proc.create_time() == born:
                procs.append(proc)
        except psutil.Error:
            pass
    return end_processes(procs, grace)


def end_processes(procs, grace=3.0):
    """SIGTERM (and SIGCONT, so that a stopped process acts on it) each of ``procs`` still
    running; SIGKILL those left after ``grace`` seconds.

    Parameters
    ----------
    procs : iterable of psutil.Process
    grace : float, default=3.0

    Returns
    -------
    list of int
        PIDs of the processes that were running.
    """
    import signal

    import psutil
    running = []
    for p in procs:
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                p.terminate()
                p.send_signal(signal.SIGCONT)
                running.append(p)
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(running, timeout=grace)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(alive, timeout=grace)
    for p in alive:
        logger.warning("process %d (%s) did not end", p.pid, _name(p))
    return [p.pid for p in running]


def _name(proc):
    try:
        return " ".join(proc.cmdline()[:3]) or proc.name()
    except Exception:  # gone or not ours: only a log line is at stake
        return "?"


def main(argv=None):
    """``python -m ipem.parallel.reaper OWNER_PID OWNER_CREATE_TIME LISTING [WHAT]``."""
    argv = sys.argv[1:] if argv is None else argv
    owner, born, listing = int(argv[0]), float(argv[1]), argv[2]
    what = argv[3] if len(argv) > 3 else "cluster"
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is the owner's
    while os.path.exists(listing):
        if not _alive(owner, born):
            try:
                with open(listing) as fh:
                    entries = json.load(fh)
            except (OSError, ValueError):
                return 0  # removed meanwhile: the owner stopped its processes itself
            if entries["jobs"]:
                try:
                    subprocess.run(["scancel", *entries["jobs"]], timeout=60,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                except (OSError, subprocess.SubprocessError):
                    pass  # nothing else to try: the jobs end at their time limit
            ended = _end(entries["procs"])
            logging.basicConfig(level=logging.INFO)
            logger.info("process %d (the owner of a %s) is gone: cancelled jobs %s, ended %s",
                        owner, what, entries["jobs"], ended)
            try:
                os.unlink(listing)
            except FileNotFoundError:
                pass
            return 0
        time.sleep(POLL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
