"""The engine launcher of ``profiles/profile_ipem_slurm`` (``ipcluster start``).

:class:`SlurmEngineSetLauncher` is ipyparallel's Slurm engine launcher with
ipem's batch script: one ``srun --mpi=PLUGIN --kill-on-bad-exit=1`` step of
MPI engines.  Because it keeps ipyparallel's default-template machinery,
ipyparallel's own options are honoured (``queue`` = partition, ``account``,
``qos``, ``timelimit``, ``output_file``), from the profile or the command line
(``ipcluster start --SlurmEngineSetLauncher.timelimit=1:00:00``).  Not imported
by ``import ipem``.
"""
from __future__ import annotations

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

    def get_output(self, remove=True):
        """The job log's text; the log is kept (it may say "DUE TO TIME LIMIT")."""
        return super().get_output(remove=False)


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
