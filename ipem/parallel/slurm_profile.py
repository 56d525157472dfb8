"""The engine launcher of ``profiles/profile_ipem_slurm`` (``ipcluster start``).

:class:`SlurmEngineSetLauncher` is ipyparallel's Slurm engine launcher with
ipem's batch script: one ``srun --mpi=PLUGIN --kill-on-bad-exit=1`` step of
MPI engines.  Because it keeps ipyparallel's default-template machinery,
ipyparallel's own options are honoured (``queue`` = partition, ``account``,
``qos``, ``timelimit``, ``output_file``), from the profile or the command line
(``ipcluster start --SlurmEngineSetLauncher.timelimit=1:00:00``).  Not imported
by ``import ipem``.

When ``sbatch`` refuses the engine job (a partition that does not exist, more
CPUs than a node has), ipyparallel's ``ipcluster start`` would log the error
and wait forever (its start callback fails inside the event loop, which
nothing stops).  This launcher makes it stop the controller, remove the
cluster file and exit with status 1 and one line naming sbatch's reason.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess

from ipyparallel.cluster import launcher as ipp_launcher
from traitlets import Integer, List, Unicode

from .slurm import srun_mpi_plugin

__all__ = ["SlurmEngineSetLauncher"]


class SlurmEngineSetLauncher(ipp_launcher.SlurmEngineSetLauncher):
    """ipyparallel's ``SlurmEngineSetLauncher`` with ipem's engine job.

    Configurable (besides ipyparallel's ``queue``, ``account``, ``qos``,
    ``timelimit``, ``options``): ``srun_mpi`` (default: chosen for the MPI
    mpi4py loads, see :func:`~ipem.parallel.slurm.srun_mpi_plugin`), ``ppn``
    (engines per node; 0 lets Slurm place them), ``prologue`` (shell lines
    before ``srun``, e.g. ``module load mpich``), ``blas_threads``.
    """

    #: how ipcluster's cluster file names this class (ipyparallel writes ``module:Class`` for
    #: launchers without an entry point, which ``ipcluster stop`` then cannot import)
    entrypoint_name = "ipem.parallel.slurm_profile.SlurmEngineSetLauncher"

    srun_mpi = Unicode("", config=True,
                       help="srun --mpi= plugin; default: the one the MPI of mpi4py needs")
    ppn = Integer(0, config=True, help="engines per node (--ntasks-per-node); 0: Slurm places")
    prologue = List(Unicode(), config=True, help="shell lines before srun (module loads)")
    blas_threads = Integer(1, config=True, help="BLAS threads per engine")
    default_template = Unicode("""#!/bin/bash
#SBATCH --job-name=ipem-engines-{cluster_id}
#SBATCH --cpus-per-task=1
#SBATCH --export=ALL
{extra_lines}
export OMP_NUM_THREADS={blas_threads} OPENBLAS_NUM_THREADS={blas_threads} \
MKL_NUM_THREADS={blas_threads}
srun --mpi={srun_mpi} --kill-on-bad-exit=1 {program_and_args} --mpi
""")

    def write_batch_script(self, n=1):
        """Fill ipem's fields, check ``ppn`` against the nodes, then write the script."""
        lines = []
        if self.ppn:
            _check_ppn(self.ppn, self.queue)
            lines.append(f"#SBATCH --ntasks-per-node={self.ppn}")
        lines.extend(f"#SBATCH {opt}" for opt in self.options.split())
        lines.extend(self.prologue)
        self.context.update(srun_mpi=self.srun_mpi or srun_mpi_plugin(),
                            extra_lines="\n".join(lines), blas_threads=self.blas_threads)
        super().write_batch_script(n)

    def _run_command(self, command, **kwargs):
        """sbatch/scancel with their stderr kept: a refusal is one error naming Slurm's
        reason (its last stderr line), not a CalledProcessError."""
        self.log.debug("Running command: %s", shlex.join(command))
        proc = subprocess.run(command, stdin=None, capture_output=True, **kwargs)
        err = proc.stderr.decode("utf8", "replace").strip().splitlines()
        if proc.returncode != 0:
            what = "refused the engine job" if command[:1] == self.submit_command[:1] \
                else f"failed (exit {proc.returncode})"
            raise ipp_launcher.LauncherError(
                f"{command[0]} {what} ({os.path.abspath(self.batch_file)}): "
                f"{err[-1] if err else 'no message'}")
        for line in err:
            self.log.warning("%s: %s", command[0], line)
        return proc.stdout.decode("utf8", "replace")

    async def start(self, n=1):
        """Submit the engine job; under ``ipcluster start``, a refusal ends ipcluster.

        Raises
        ------
        LauncherError
            sbatch refused the job (one line with its reason).
        SystemExit
            The same, under ``ipcluster start``, after the controller is stopped
            and the cluster file removed (ipcluster would hang otherwise).
        """
        try:
            return super().start(n)
        except (ipp_launcher.LauncherError, OSError, ValueError) as exc:
            cluster = self.parent
            if not _under_ipcluster_start(cluster):
                raise
            message = f"ipcluster start: {exc}"
            self.log.debug("stopping the controller after: %s", message)
            await cluster.stop_cluster()
            raise SystemExit(message) from None

    def stop(self):
        """scancel the job; nothing to cancel when it was never submitted."""
        if not self.job_id:
            return self.notify_stop(dict(job_id="", output="no job was submitted"))
        return super().stop()

    def get_output(self, remove=True):
        """The job log's text; the log is kept (it may say "DUE TO TIME LIMIT")."""
        return super().get_output(remove=False)


def _under_ipcluster_start(cluster):
    """Whether ``cluster`` (a launcher's parent) is the one of ``ipcluster start``."""
    from ipyparallel.cluster.app import IPClusterStart
    return isinstance(getattr(cluster, "parent", None), IPClusterStart) and \
        hasattr(cluster, "stop_cluster")


def _check_ppn(ppn, partition):
    """A clear error when no node of the partition has ``ppn`` CPUs (sbatch would refuse)."""
    if shutil.which("sinfo") is None:
        return
    cmd = ["sinfo", "-h", "-o", "%c"] + (["-p", partition] if partition else [])
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
        cpus = max(int(x.rstrip("+")) for x in out.split())
    except (OSError, ValueError, subprocess.SubprocessError):
        return
    if ppn > cpus:
        raise ValueError(f"ppn={ppn} engines per node, but the nodes have at most {cpus} CPUs "
                         "(sinfo): set SlurmEngineSetLauncher.ppn in the profile to at most "
                         f"{cpus}, or 0 to let Slurm place the engines")
