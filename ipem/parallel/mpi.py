"""Private MPI clusters: engines that ipem starts (``--cluster mpi:N``) and restarts.

:class:`MPICluster` starts an ipyparallel cluster of MPI engines on this
machine and wraps it in a :class:`~ipem.parallel.directview.DirectViewController`;
:func:`ensure_mpiexec` chooses the ``mpiexec`` and
:func:`single_host_mpi_config` keeps a one-machine engine set off the network.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import sys
import threading
import time

from .directview import DirectViewController
from .errors import EngineError, raise_terminated
from .launchers import Launcher, count_argument
from .processes import ProcessGroup

logger = logging.getLogger(__name__)

__all__ = ["LAUNCHER", "MPICluster", "ensure_mpiexec", "single_host_mpi_config"]


def ensure_mpiexec():
    """Choose the ``mpiexec`` that starts MPI engines, and make ``PATH`` find it.

    In order of preference:

    1. ``$IPEM_MPIEXEC``, when set: a path or a command name. Its directory is
       put first on ``PATH``, so launchers that run plain ``mpiexec``
       (ipyparallel's default, the profiles in ``profiles/``) get it too.
    2. An ``mpiexec`` on ``PATH`` outside this Python's environment, e.g. the
       MPI of ``module load mpich`` on an HPC system, however the virtualenv
       was activated (before or after the module load).  ``PATH`` is left
       alone, unless the environment's ``bin/`` comes first: then the MPI's
       directory is put before it, so plain ``mpiexec`` finds it too.
    3. The ``mpiexec`` of this Python's environment (the ``mpich`` wheel of
       ``ipem[mpi]``), only when there is no other: its ``bin/`` directory is
       put first on ``PATH``, since a virtualenv used without activation would
       otherwise not find it.

    The choice is logged at INFO level on ``ipem.parallel.mpi``.

    Returns
    -------
    str
        Path of the ``mpiexec`` that will be used.

    Raises
    ------
    RuntimeError
        If ``$IPEM_MPIEXEC`` names nothing executable, or no ``mpiexec`` is found
        (naming ``pip install 'ipem[mpi]'``).
    MissingDependencyError
        Without mpi4py, which the engines need: one line naming
        ``pip install 'ipem[mpi]'``.
    """
    from .._optional import require
    require("mpi4py", "to start MPI engines")
    env_bin = os.path.dirname(os.path.abspath(sys.executable))
    requested = os.environ.get("IPEM_MPIEXEC", "").strip()
    if requested:
        found = shutil.which(requested)
        if found is None:
            raise RuntimeError(f"IPEM_MPIEXEC={requested!r} is not an executable mpiexec")
        found, why, first = os.path.abspath(found), "from IPEM_MPIEXEC", True
    elif (on_path := _site_mpiexec(env_bin)) is not None:
        found, why = on_path, "found on PATH"
        dirs = [os.path.abspath(d) for d in os.environ.get("PATH", "").split(os.pathsep) if d]
        first = (env_bin in dirs
                 and dirs.index(env_bin) < dirs.index(os.path.dirname(found)))
    else:
        found = os.path.join(env_bin, "mpiexec")
        why, first = "this Python environment's; no other mpiexec on PATH", True
        if not (os.path.isfile(found) and os.access(found, os.X_OK)):
            raise RuntimeError("mpiexec not found: load your MPI (e.g. module load mpich), set "
                               "IPEM_MPIEXEC, or pip install 'ipem[mpi]' (the mpich wheel)")
    path = os.environ.get("PATH", "")
    if first and path.split(os.pathsep)[0] != os.path.dirname(found):
        os.environ["PATH"] = os.pathsep.join(filter(None, [os.path.dirname(found), path]))
    logger.info("using mpiexec %s (%s)", found, why)
    return found


def _site_mpiexec(env_bin):
    """The first ``mpiexec`` on ``PATH`` outside ``env_bin`` (this Python's ``bin/``), or None."""
    dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep)
            if d and os.path.abspath(d) != env_bin]
    found = shutil.which("mpiexec", path=os.pathsep.join(dirs)) if dirs else None
    return os.path.abspath(found) if found else None


def single_host_mpi_config(mpiexec=None):
    """Launcher settings that keep a one-machine MPI engine set off the network.

    MPICH's hydra ``mpiexec`` always listens on 0.0.0.0 (``-iface`` and
    ``HYDRA_IFACE`` only choose the address it advertises), and the ranks'
    UCX/libfabric transports listen on every interface. For engines that all
    run on this machine this returns, as an ipyparallel config:

    - ``MPIEngineSetLauncher.mpi_cmd``: MPICH's ``mpiexec.gforker`` when it
      sits next to ``mpiexec`` (it forks the ranks and talks PMI over socket
      pairs: no listening socket), otherwise ``[mpiexec]`` itself;
    - ``MPIEngineSetLauncher.environment``: ``UCX_NET_DEVICES=lo`` (MPICH
      ch4:ucx, the wheel's default) and ``FI_TCP_IFACE=lo`` (ch4:ofi), except
      those already set in ``os.environ``, which win.

    Parameters
    ----------
    mpiexec : str, optional
        The ``mpiexec`` to use; default :func:`ensure_mpiexec`.

    Returns
    -------
    traitlets.config.Config
        Pass as ``ipyparallel.Cluster(engines="mpi", config=...)``, merged
        under the caller's own config.
    """
    from traitlets.config import Config
    mpiexec = os.path.abspath(mpiexec or ensure_mpiexec())
    gforker = os.path.join(os.path.dirname(mpiexec), "mpiexec.gforker")
    use_gforker = os.path.isfile(gforker) and os.access(gforker, os.X_OK)
    config = Config()
    config.MPIEngineSetLauncher.mpi_cmd = [gforker if use_gforker else mpiexec]
    config.MPIEngineSetLauncher.environment = {
        name: value for name, value in (("UCX_NET_DEVICES", "lo"), ("FI_TCP_IFACE", "lo"))
        if name not in os.environ}
    logger.info("single-host MPI launch: %s, environment %s",
                config.MPIEngineSetLauncher.mpi_cmd[0], config.MPIEngineSetLauncher.environment)
    return config


class MPICluster:
    """Start a local ipyparallel cluster with MPI engines and wrap it.

    Use as a context manager::

        with ipem.MPICluster(n=2) as controller:
            ipem.GaussianMixture(64, controller=controller).fit(X)

    Because ipem started the engines, it can start them again: an engine
    that dies (MPI then takes the others down) or misses its deadline during
    a fit is replaced, every dataset is stored again, and the lost iteration
    is repeated (see :meth:`DirectViewController.recover`).  When ``mpiexec``
    dies, its engines are ended and a new engine set is started the same way;
    when the hub (ipyparallel's controller) dies, the whole cluster.  Every process the cluster starts (the
    controller and its children, ``mpiexec``, the engines and their nannies)
    is recorded in :attr:`processes` and ended by PID when the cluster stops,
    fails or is restarted, and by a watcher process
    (:mod:`ipem.parallel.reaper`) when the process that started the cluster
    is killed outright (SIGKILL: the OOM killer, a restarted Jupyter kernel).  Engines lost while the cluster starts are started
    once more; a second failure is one :class:`EngineError`.  While the
    cluster runs, SIGTERM (what Slurm and PBS send at the time limit) raises
    :class:`~ipem.parallel.errors.Terminated` in the main thread, so that the
    ``with`` block stops the controller, ``mpiexec`` and the engines.

    Parameters
    ----------
    n : int, default=2
        Number of engines (MPI ranks).
    reduction : {"client", "allreduce"}, default="client"
    blas_threads : int or None
        See :class:`~ipem.parallel.directview.DirectViewController`.
    controller_kwargs : dict, optional
        More arguments of :class:`~ipem.parallel.directview.DirectViewController`
        (``deadline``, ``min_deadline``, ``max_recoveries``, ...).
    start_timeout : float, default=120
        Seconds the engines may take to register.
    **cluster_kwargs
        Passed to ``ipyparallel.Cluster``.

    Attributes
    ----------
    processes : ProcessGroup
        The processes of the running cluster (``processes.pids()``).
    """

    def __init__(self, n=2, reduction="client", blas_threads=None, controller_kwargs=None,
                 start_timeout=120.0, **cluster_kwargs):
        self.n = int(n)
        self.reduction = reduction
        self.blas_threads = blas_threads
        self.controller_kwargs = dict(controller_kwargs or {})
        self.start_timeout = float(start_timeout)
        self.cluster_kwargs = cluster_kwargs
        self.cluster = None
        self.client = None
        self.controller = None
        self.processes = ProcessGroup()
        self._old_handler = None

    def start(self):
        """Start the engines; returns the DirectViewController.

        Raises
        ------
        EngineError
            When the engines could not be started twice in a row.
        """
        self._catch_sigterm()
        self.processes.guard("MPICluster")  # SIGKILLed, this process leaves nothing running
        try:
            self.controller = self._start_with_retry(make=lambda view: DirectViewController(
                view, reduction=self.reduction, blas_threads=self.blas_threads,
                restart=self.restart_engines, watch=self._watch, **self.controller_kwargs))
        except BaseException:
            self.stop()  # no controller or engines left running
            raise
        logger.info("started %d MPI engines: %r", self.n, self.controller)
        return self.controller

    def _config(self):
        kw = dict(self.cluster_kwargs)
        kw.setdefault("log_level", 30)
        # one machine: MPICH's gforker and transports on loopback (nothing listens
        # on the network); the caller's own config wins
        config = single_host_mpi_config(ensure_mpiexec())
        # engines log at WARN: what ipyparallel shows of their output is then worth reading
        config.MPIEngineSetLauncher.engine_args = ["--log-level=WARN"]
        config.merge(kw.pop("config", None) or {})
        return config, kw

    def _start_with_retry(self, engines_only=False, make=None):
        """Start the cluster (or only its engines), once more when engines are lost
        while starting; ``make(view)`` of a view on exactly the new engines (the view
        itself without ``make``).

        What ipyparallel warns of while an attempt runs (a dead engine set's exit
        status and last lines of output) is held until the attempt's outcome: shown
        when it succeeds or when the second attempt fails, logged at DEBUG on
        ``ipem.parallel.mpi`` when ipem starts the engines again (its own warning
        says why).
        """
        for attempt in (1, 2):
            held = _HeldWarnings()
            try:
                if not engines_only:
                    self._start_cluster(held)
                else:
                    held.watch(self.cluster.log)
                view = self._start_engines()
                started = view if make is None else make(view)
            except (KeyboardInterrupt, SystemExit):
                held.release()
                raise
            except Exception as exc:
                cause = _one_line(exc)
                if attempt == 2:
                    held.release()
                    raise EngineError(f"the {self.n} MPI engines could not be started (tried "
                                      f"twice): {cause}") from exc
                logger.warning("starting the MPI engines failed (%s); starting them again",
                               cause)
                try:
                    self._stop_all()
                finally:
                    held.demote()
                engines_only = False
            else:
                held.release()
                return started

    def _start_cluster(self, held):
        """Start the ipyparallel controller and connect the client; records its processes.
        ``held`` holds the cluster's warnings from the start on."""
        import ipyparallel as ipp
        config, kw = self._config()
        self.cluster = ipp.Cluster(engines="mpi", n=self.n, config=config, **kw)
        held.watch(self.cluster.log)
        self.cluster.start_controller_sync()
        self.processes.add(self.cluster.controller.pid, "controller", leader=True)
        self.client = self.cluster.connect_client_sync()

    def _start_engines(self):
        """Start an engine set and wait for exactly its ``n`` engines (watching the hub
        and ``mpiexec``); records their processes; a view on them."""
        old = set(self.client.ids)
        engine_set_id = self.cluster.start_engines_sync(self.n)
        launcher = self.cluster.engines[engine_set_id]
        self.processes.add(launcher.pid, "engines", leader=True)
        deadline = time.monotonic() + self.start_timeout
        registered = set()
        while True:
            new = sorted(set(self.client.ids) - old)
            if registered - set(new):
                raise EngineError(f"engine(s) {sorted(registered - set(new))} unregistered "
                                  "while the engines started")
            registered.update(new)
            if len(new) >= self.n:
                break
            lost = self._watch()
            if lost is not None:
                raise EngineError(f"{lost[1]} while the engines started")
            if time.monotonic() > deadline:
                raise EngineError(f"{len(new)} of {self.n} engines registered within "
                                  f"{self.start_timeout:.0f} s")
            time.sleep(0.1)
        # the engines and their nannies, the controller's schedulers: all started by now
        self.processes.add(launcher.pid, "engines", leader=True)
        self.processes.add(self.cluster.controller.pid, "controller", leader=True)
        return self.client[new]

    def _watch(self):
        """``(reason, message)`` when the hub or ``mpiexec`` is gone, else None."""
        if self.processes.lost("controller"):
            return "hub", (f"the hub (ipyparallel controller, pid "
                           f"{self.processes.leaders['controller']}) died")
        if self.processes.lost("engines"):
            return "mpiexec", f"mpiexec (pid {self.processes.leaders['engines']}) died"
        return None

    def restart_engines(self):
        """Stop the engine set (killing engines that hang, and whatever is left of it
        when ``mpiexec`` died) and start it again; the whole cluster when the hub is gone.

        Returns
        -------
        ipyparallel.DirectView
            A view on exactly the new engines.
        """
        lost = self._watch()
        if self.client is None or (lost is not None and lost[0] == "hub"):
            logger.warning("%s; starting the whole cluster again",
                           lost[1] if lost else "no cluster")
            self._stop_all()
            view = self._start_with_retry()
        else:  # the hub is there: a new engine set (mpiexec and its engines)
            if self.controller is not None:
                self._kill_own(self.controller.pids)
            with _expected_exit(self.cluster.log):
                try:
                    self.cluster.stop_engines_sync()
                except Exception as exc:  # what is left is ended by PID below
                    logger.debug("stopping the engines: %s", exc)
            self.processes.end("engines")
            view = self._start_with_retry(engines_only=True)
        logger.info("restarted %d MPI engines", self.n)
        return view

    @staticmethod
    def _kill_own(pids):
        """SIGKILL engine processes that descend from this process (a stopped engine
        ignores SIGTERM)."""
        import psutil
        me = os.getpid()
        for pid in pids:
            try:
                proc = psutil.Process(pid)
                if me in (p.pid for p in proc.parents()):
                    proc.kill()
            except psutil.Error:
                pass

    def _catch_sigterm(self):
        """Turn SIGTERM into :class:`Terminated` while the cluster runs (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return  # somebody (the CLI, the user) handles it already
        self._old_handler = signal.signal(signal.SIGTERM, raise_terminated)

    def _stop_all(self):
        """Stop the engines and the controller, then end by PID whatever of them runs."""
        try:
            if self.client is not None:
                self.client.close()
            if self.cluster is not None:
                with _expected_exit(self.cluster.log):
                    _bounded(self.cluster.stop_cluster_sync, 30)
        except Exception as exc:  # clean-up must not hide the error that led here
            logger.warning("stopping the cluster: %s", exc)
        finally:
            left = self.processes.end()
            self.cluster = self.client = None
            if left:
                logger.debug("ended processes %s by PID", left)

    def stop(self):
        """Stop the engines and the ipyparallel controller (never raises for what is gone).

        Every recorded process still running afterwards is ended by PID.
        """
        try:
            self._stop_all()
        finally:
            self.processes.release()
            self.controller = None
            if self._old_handler is not None:
                signal.signal(signal.SIGTERM, self._old_handler)
                self._old_handler = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _bounded(func, seconds):
    """Call ``func()`` in a thread; give up waiting for it after ``seconds``."""
    errors = []

    def run():
        try:
            func()
        except Exception as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True, name="ipem-stop-cluster")
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        logger.warning("stopping the cluster took more than %.0f s; ending it by PID", seconds)
    elif errors:
        raise errors[0]


def _one_line(exc):
    """The first line of an exception's message, with its type."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


class _HeldWarnings(logging.Filter):
    """Holds back the warnings (and errors) of an ipyparallel cluster's log.

    ipyparallel logs, from its event loop, the exit status and the last lines of
    output of an engine set or controller that stops; while ipem starts engines such
    a record belongs to an attempt whose outcome is not known yet.
    """

    def __init__(self):
        super().__init__()
        self.log = None
        self.records = []

    def watch(self, log):
        self.log = log
        log.addFilter(self)

    def filter(self, record):
        if record.levelno < logging.WARNING:
            return True
        self.records.append(record)
        return False

    def _unwatch(self):
        if self.log is not None:
            self.log.removeFilter(self)
        records, self.records = self.records, []
        return records

    def release(self):
        """Stop holding; show what was held, as it would have been shown."""
        for record in self._unwatch():
            self.log.handle(record)

    def demote(self):
        """Stop holding; what was held goes to DEBUG on ``ipem.parallel.mpi``."""
        for record in self._unwatch():
            logger.debug("ipyparallel, while the engines started: %s", record.getMessage())


@contextlib.contextmanager
def _expected_exit(log):
    """Hide ipyparallel's warnings about engines that exit because they are being stopped.

    ``mpiexec`` exits with a non-zero status when its ranks are terminated, which
    ipyparallel reports as a warning followed by the engines' last 100 lines of output.
    """
    def errors_only(record):
        return record.levelno >= logging.ERROR

    log.addFilter(errors_only)
    try:
        yield
    finally:
        log.removeFilter(errors_only)


@contextlib.contextmanager
def _open(n, blas_threads):
    with MPICluster(n=n, blas_threads=blas_threads) as ctrl:
        yield ctrl


#: ``mpi[:N]``: N MPI engines (default 2) for the duration of the ``with`` block
LAUNCHER = Launcher("mpi", ("mpi:N",), count_argument(2), _open)
