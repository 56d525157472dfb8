"""Engines in a Slurm job that ipem submits (``--cluster slurm:N``), resubmitted when lost.

:class:`SlurmCluster` runs the ipyparallel controller (the hub) where ipem
runs, writes a batch script whose one ``srun`` starts N MPI engines, submits
it with ``sbatch``, waits for the N engines (with a deadline, and a one-line
reason when the job is pending, refused or ends), and cancels the job at the
end.  An engine job that dies or reaches its time limit during a fit is
replaced by a new one and the fit goes on, bit for bit as undisturbed (the
recovery of :class:`~ipem.parallel.mpi.MPICluster`).  :func:`srun_mpi_plugin`
chooses ``srun --mpi=`` for the MPI that mpi4py loads.
"""
from __future__ import annotations

import atexit
import contextlib
import logging
import os
import secrets
import shlex
import signal
import subprocess
import sys
import threading
import time

from .directview import DirectViewController
from .errors import EngineError, raise_terminated
from .launchers import Launcher, count_argument
from .mpi import _expected_exit
from .reaper import Reaper

logger = logging.getLogger(__name__)

__all__ = ["LAUNCHER", "SlurmCluster", "default_location", "srun_mpi_plugin"]

#: job states after which no engine of the job runs any more
ENDED = {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL",
         "OUT_OF_MEMORY", "PREEMPTED", "REVOKED", "SPECIAL_EXIT", "TIMEOUT", "GONE"}
#: pending reasons that mean the job will never start as submitted
NEVER = {"AccountNotAllowed", "BadConstraints", "DependencyNeverSatisfied", "InvalidAccount",
         "InvalidQOS", "PartitionConfig", "PartitionDown", "PartitionInactive",
         "PartitionNodeLimit", "PartitionTimeLimit", "QOSJobLimit", "ReqNodeNotAvail"}

#: what mpi4py's MPI library says of itself -> the srun MPI plugin its ranks need
_PLUGINS = (("Open MPI", "pmix"), ("CRAY MPICH", "cray_shasta"), ("MPICH", "pmi2"),
            ("MVAPICH", "pmi2"), ("Intel(R) MPI", "pmi2"))

_LIBRARY_PROBE = ("import mpi4py; mpi4py.rc.initialize = False; from mpi4py import MPI; "
                  "print(MPI.Get_library_version().splitlines()[0])")


def _mpi_library(python=None):
    """The first line of ``MPI.Get_library_version()`` of the MPI that mpi4py loads.

    Asked of a child ``python`` (default: this one), so that this process does
    not initialize MPI.  Raises EngineError (one line) without mpi4py.
    """
    proc = subprocess.run([python or sys.executable, "-c", _LIBRARY_PROBE], capture_output=True,
                          text=True, timeout=60)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or ["no output"]
        if "No module named 'mpi4py'" in proc.stderr:
            raise EngineError("mpi4py is needed for MPI engines: pip install 'ipem[mpi]'")
        raise EngineError(f"mpi4py cannot load an MPI library: {lines[-1]}")
    return proc.stdout.strip()


def srun_mpi_plugin(library=None):
    """``srun --mpi=`` for the MPI that mpi4py loads.

    ``$IPEM_SRUN_MPI`` wins when set.  Otherwise: ``pmi2`` for MPICH (the
    ``mpich`` wheel of ``ipem[mpi]`` included), MVAPICH and Intel MPI;
    ``pmix`` for Open MPI; ``cray_shasta`` for Cray MPICH.

    Parameters
    ----------
    library : str, optional
        The MPI's ``MPI.Get_library_version()``; default: asked of mpi4py in a
        child process.

    Returns
    -------
    str

    Raises
    ------
    EngineError
        Without mpi4py (naming ``pip install 'ipem[mpi]'``), or for an MPI it
        does not know (naming ``srun_mpi=`` and ``$IPEM_SRUN_MPI``).
    """
    requested = os.environ.get("IPEM_SRUN_MPI", "").strip()
    if requested:
        return requested
    library = library if library is not None else _mpi_library()
    for name, plugin in _PLUGINS:
        if name.lower() in library.lower():
            return plugin
    raise EngineError(f"no srun MPI plugin known for {library!r}: pass srun_mpi= or set "
                      "IPEM_SRUN_MPI (srun --mpi=list shows the plugins)")


def _run(cmd, timeout=60):
    """Run a Slurm command: (return code, stdout, last line of stderr)."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env=_submit_env())
    except FileNotFoundError:
        raise EngineError(f"{cmd[0]} not found: --cluster slurm:N needs the Slurm commands "
                          "(sbatch, squeue, scancel) on PATH") from None
    err = proc.stderr.strip().splitlines()
    return proc.returncode, proc.stdout.strip(), (err[-1] if err else "")


def _submit_env():
    """This environment without the ``SLURM_*`` variables of a job ipem may run in (they
    would shape the engine job like this one); ``SLURM_CONF`` stays."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith("SLURM_") or k == "SLURM_CONF"}


def default_location():
    """An address of this host that other nodes can reach (not loopback), or None.

    The source address of this host's default route: engines on other nodes
    connect to it, where this host's name might resolve to 127.0.0.1 there.
    """
    import socket
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the route
            address = s.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") else address


class SlurmCluster:
    """Run N MPI engines as one Slurm job that ipem submits, and wrap them.

    The controller (ipyparallel's hub) runs in this process's machine; the
    engines run ``srun --mpi=PLUGIN --kill-on-bad-exit=1 python -m
    ipyparallel.engine --mpi`` in a batch job, so the virtualenv and
    ``profile_dir`` must be on a filesystem the compute nodes see at the same
    path.  Use as a context manager::

        with ipem.SlurmCluster(n=64, partition="cpu", time="04:00:00") as ctrl:
            ipem.GaussianMixture(512, controller=ctrl).fit(X)

    ``sbatch``'s own input variables (``SBATCH_PARTITION``, ``SBATCH_ACCOUNT``,
    ``SBATCH_QOS``, ``SBATCH_TIMELIMIT``, ...) apply too, which is how
    ``--cluster slurm:N`` on the command line is given them.

    When the engines die or the job reaches its time limit during a fit, the
    job is cancelled, a new one is submitted, every dataset is stored again and
    the lost iteration repeated: the model is the undisturbed one.  The job's
    end ("time limit" when that was it) is logged at WARNING and kept in
    :attr:`ended`; job logs stay in ``log_dir``.  SIGTERM while the cluster runs
    raises :class:`~ipem.parallel.errors.Terminated` in the main thread, so the
    ``with`` block cancels the jobs.

    Parameters
    ----------
    n : int, default=2
        Number of engines (MPI ranks, Slurm tasks of one CPU each).
    partition, account, qos : str, optional
        ``#SBATCH --partition/--account/--qos``.
    time : str or int, optional
        Wall-clock limit of each engine job: ``"HH:MM:SS"``, ``"D-HH:MM"``, or
        minutes.
    memory : str, optional
        Memory per engine, e.g. ``"4G"`` (``--mem-per-cpu``).
    nodes, ntasks_per_node : int, optional
        ``--nodes``/``--ntasks-per-node``; default: Slurm places the N tasks.
    modules : sequence of str
        ``module load`` lines before ``srun`` (your site's MPI).
    prologue : sequence of str
        More shell lines before ``srun`` (after the module loads).
    sbatch_options : sequence of str
        More ``#SBATCH`` options, e.g. ``["--constraint=ib"]``.
    srun_mpi : str, optional
        ``srun --mpi=``; default :func:`srun_mpi_plugin`.
    job_name : str, default="ipem-engines"
    log_dir : str, optional
        Where job logs go (``ipem-engines-<jobid>.log``); default the
        profile's ``log/``.  Kept when the cluster stops.
    profile_dir : str, optional
        The ipyparallel profile directory (connection files); default
        ``$IPYTHONDIR/profile_ipem_slurm``.  Must be seen by the nodes.
    controller_ip : str, optional
        Where the hub listens: default ``$IPEM_CONTROLLER_IP`` or ``"*"``.
    location : str, optional
        The address the engines connect to: default ``$IPEM_CONTROLLER_IP``,
        or this host's address on its default route (not a host name that
        may resolve to 127.0.0.1 elsewhere).
    start_timeout : float, default=600
        Seconds to wait for the N engines of a job (pending time included).
    reduction, blas_threads, controller_kwargs
        See :class:`~ipem.parallel.mpi.MPICluster`.
    """

    def __init__(self, n=2, *, partition=None, account=None, qos=None, time=None, memory=None,
                 nodes=None, ntasks_per_node=None, modules=(), prologue=(), sbatch_options=(),
                 srun_mpi=None, job_name="ipem-engines", log_dir=None, profile_dir=None,
                 controller_ip=None, location=None, start_timeout=600.0, reduction="client",
                 blas_threads=None, controller_kwargs=None):
        if int(n) < 1:
            raise ValueError(f"n={n!r}: expected a positive number of engines")
        self.n = int(n)
        self.partition, self.account, self.qos = partition, account, qos
        self.time, self.memory = time, memory
        self.nodes, self.ntasks_per_node = nodes, ntasks_per_node
        self.modules, self.prologue = tuple(modules), tuple(prologue)
        self.sbatch_options = tuple(sbatch_options)
        self.srun_mpi = srun_mpi
        self.job_name = job_name
        if profile_dir is None:
            from IPython.paths import get_ipython_dir
            profile_dir = os.path.join(get_ipython_dir(), "profile_ipem_slurm")
        self.profile_dir = os.path.abspath(profile_dir)
        self.log_dir = os.path.abspath(log_dir or os.path.join(self.profile_dir, "log"))
        env_ip = os.environ.get("IPEM_CONTROLLER_IP", "").strip()
        self.controller_ip = controller_ip or env_ip or "*"
        self.location = location or env_ip or None
        self.start_timeout = float(start_timeout)
        self.reduction = reduction
        self.blas_threads = blas_threads
        self.controller_kwargs = dict(controller_kwargs or {})
        self.cluster_id = f"ipem-{secrets.token_hex(4)}"
        self.jobs = []
        self._reaper = None
        #: ``(job id, state, reason)`` of engine jobs that ended while in use
        self.ended = []
        self.cluster = self.client = self.controller = None
        self._old_handler = None

    # --- the batch script -------------------------------------------------------------
    def engine_command(self):
        """The engine command line that ``srun`` runs (list of str)."""
        return [sys.executable, "-m", "ipyparallel.engine", "--mpi",
                f"--profile-dir={self.profile_dir}", f"--cluster-id={self.cluster_id}",
                "--log-level=WARN"]

    def job_script(self):
        """The batch script :meth:`start` submits (a dry run: nothing is started).

        Returns
        -------
        str
        """
        srun_mpi = self.srun_mpi or srun_mpi_plugin()
        options = [f"--job-name={self.job_name}", f"--ntasks={self.n}", "--cpus-per-task=1",
                   f"--output={os.path.join(self.log_dir, 'ipem-engines-%j.log')}",
                   "--export=ALL"]
        for flag, value in (("partition", self.partition), ("account", self.account),
                            ("qos", self.qos), ("time", self.time),
                            ("mem-per-cpu", self.memory), ("nodes", self.nodes),
                            ("ntasks-per-node", self.ntasks_per_node)):
            if value is not None:
                options.append(f"--{flag}={value}")
        options.extend(self.sbatch_options)
        threads = self.blas_threads or 1
        lines = ["#!/bin/bash", *(f"#SBATCH {opt}" for opt in options),
                 *(f"module load {m}" for m in self.modules), *self.prologue,
                 "# one BLAS thread per engine unless blas_threads says otherwise",
                 f"export OMP_NUM_THREADS={threads} OPENBLAS_NUM_THREADS={threads} "
                 f"MKL_NUM_THREADS={threads}",
                 # srun's own options: the first engine that exits ends the step, so a
                 # dead rank frees the allocation instead of holding it
                 f"srun --mpi={srun_mpi} --kill-on-bad-exit=1 "
                 + " ".join(shlex.quote(a) for a in self.engine_command())]
        return "\n".join(lines) + "\n"

    def log_file(self, job_id):
        """Path of the log of engine job ``job_id``."""
        return os.path.join(self.log_dir, f"ipem-engines-{job_id}.log")

    # --- life cycle ---------------------------------------------------------------------
    def start(self):
        """Start the hub, submit the engine job, wait for the engines.

        Returns
        -------
        DirectViewController

        Raises
        ------
        EngineError
            One line: sbatch refused the job, it ended, or it is still pending
            at ``start_timeout`` (with Slurm's reason).
        """
        import ipyparallel as ipp
        script = self.job_script()  # fails early without mpi4py
        os.makedirs(os.path.join(self.profile_dir, "security"), exist_ok=True)
        os.makedirs(self.log_dir, exist_ok=True)
        self._catch_sigterm()
        atexit.register(self.stop)
        self._reaper = Reaper("SlurmCluster")  # SIGKILLed, this process leaves no job or hub
        kw = dict(controller_ip=self.controller_ip)
        location = self.location or (default_location() if self.controller_ip == "*" else None)
        if location:
            kw["controller_location"] = location
        self.cluster = ipp.Cluster(n=0, profile_dir=self.profile_dir, cluster_id=self.cluster_id,
                                   log_level=30, **kw)
        try:
            self.cluster.start_controller_sync()
            self._guard()
            self.client = self.cluster.connect_client_sync()
            view = self._submit_and_wait(script)
            self.controller = DirectViewController(
                view, reduction=self.reduction, blas_threads=self.blas_threads,
                restart=self.restart_engines, **self.controller_kwargs)
        except BaseException:
            self.stop()
            raise
        logger.info("started %d engines in Slurm job %s: %r", self.n, self.jobs[-1],
                    self.controller)
        return self.controller

    def _submit_and_wait(self, script, again=True):
        """Submit the engine job and wait for its ``n`` engines: a view on them. A job that
        ends before they register (an engine that died in ``MPI_Init``, a node that failed)
        is submitted once more (``again``), with a warning."""
        before = set(self.client.ids)
        path = os.path.join(self.log_dir, f"ipem-engines-{self.cluster_id}.sbatch")
        with open(path, "w") as f:
            f.write(script)
        rc, out, err = _run(["sbatch", "--parsable", path])
        if rc != 0:
            raise EngineError(f"sbatch refused the engine job ({path}): {err or f'exit {rc}'}")
        job = out.split(";")[0].strip()
        self.jobs.append(job)
        self._guard()
        logger.info("submitted Slurm job %s for %d engines (log %s)", job, self.n,
                    self.log_file(job))
        deadline = time.monotonic() + self.start_timeout
        while True:
            new = [e for e in self.client.ids if e not in before]
            if len(new) >= self.n:
                return self.client[new[:self.n]]
            state, reason = self.job_state(job)
            if state in ENDED:
                ended = (f"Slurm job {job} ended ({self._describe(job, state)}) with "
                         f"{len(new)} of {self.n} engines registered; its log: "
                         f"{self.log_file(job)}{self._log_tail(job)}")
                if not again:
                    raise EngineError(ended)
                logger.warning("%s; submitting the engine job once more", ended)
                return self._submit_and_wait(script, again=False)
            if state == "PENDING" and reason in NEVER:
                raise EngineError(f"Slurm job {job} cannot start: {reason} (squeue); it is "
                                  "cancelled")
            if time.monotonic() > deadline:
                raise EngineError(f"Slurm job {job} is {state} ({reason}) after "
                                  f"{self.start_timeout:.0f} s with {len(new)} of {self.n} "
                                  "engines registered; it is cancelled (start_timeout= waits "
                                  "longer)")
            time.sleep(0.25)

    def job_state(self, job):
        """``(state, reason)`` of a job, e.g. ``("PENDING", "Resources")``; ``("GONE", "")``
        when Slurm has forgotten it."""
        rc, out, _ = _run(["squeue", "-h", "-t", "all", "-j", str(job), "-o", "%T|%r"])
        if rc == 0 and out:
            state, _, reason = out.splitlines()[0].partition("|")
            return state.strip(), reason.strip()
        return "GONE", ""

    def _describe(self, job, state):
        """A job's end in words: "time limit" when that is what ended it."""
        try:
            with open(self.log_file(job), errors="replace") as f:
                text = f.read()
        except OSError:
            text = ""
        if state == "TIMEOUT" or "DUE TO TIME LIMIT" in text:
            return "time limit"
        return state if state != "GONE" else "ended"

    def _log_tail(self, job):
        try:
            with open(self.log_file(job), errors="replace") as f:
                lines = [ln.strip() for ln in f if ln.strip()]
        except OSError:
            return ""
        return f": {lines[-1][:300]}" if lines else ""

    def restart_engines(self):
        """Cancel the engine job and submit a new one (the ``restart`` of the controller).

        Returns
        -------
        ipyparallel.DirectView
            A view on the new engines.
        """
        job = self.jobs[-1]
        before, _ = self.job_state(job)
        state = self._cancel(job)  # the engines may die before Slurm records why
        why = self._describe(job, state)
        if why != "time limit" and before not in ENDED:
            why = "engines lost; job cancelled by ipem"
        self.ended.append((job, state, why))
        logger.warning("Slurm job %s: %s (log %s); submitting a new engine job", job, why,
                       self.log_file(job))
        # the new engines are told apart from the old ones, which the hub may still list
        return self._submit_and_wait(self.job_script())

    def _cancel(self, job, wait=30.0):
        """scancel ``job`` and wait until it has ended (its processes gone)."""
        state, _ = self.job_state(job)
        if state in ENDED:
            return state
        _run(["scancel", str(job)])
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            state, _ = self.job_state(job)
            if state in ENDED:
                return state
            time.sleep(0.2)
        logger.warning("Slurm job %s is still %s %.0f s after scancel", job, state, wait)
        return state

    def stop(self):
        """Cancel the engine jobs, stop the hub (never raises for what is gone)."""
        atexit.unregister(self.stop)
        try:
            for job in self.jobs:
                self._cancel(job)
            if self.client is not None:
                self.client.close()
            if self.cluster is not None:
                with _expected_exit(self.cluster.log):
                    self.cluster.stop_cluster_sync()
        except Exception as exc:  # clean-up must not hide the error that led here
            logger.warning("stopping the Slurm cluster: %s", exc)
        finally:
            self.cluster = self.client = self.controller = None
            reaper, self._reaper = self._reaper, None
            if reaper is not None:
                reaper.close()
            if self._old_handler is not None:
                signal.signal(signal.SIGTERM, self._old_handler)
                self._old_handler = None

    def _guard(self):
        """List the hub's processes and the jobs for the watcher (:mod:`ipem.parallel.reaper`)."""
        if self._reaper is None:
            return
        import psutil
        procs = []
        try:
            hub = psutil.Process(self.cluster.controller.pid)
            procs = [hub] + hub.children(recursive=True)
        except (AttributeError, TypeError, psutil.Error):
            pass
        self._reaper.update(procs, jobs=self.jobs)

    def _catch_sigterm(self):
        """SIGTERM raises :class:`Terminated` while the cluster runs (main thread only;
        not where somebody handles it already)."""
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL):
            self._old_handler = signal.signal(signal.SIGTERM, raise_terminated)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


@contextlib.contextmanager
def _open(n, blas_threads):
    with SlurmCluster(n=n, blas_threads=blas_threads) as ctrl:
        yield ctrl


#: ``slurm[:N]``: N engines (default 2) in a Slurm job ipem submits, for the ``with`` block
LAUNCHER = Launcher("slurm", ("slurm:N",), count_argument(2), _open)
