# IPython profile for ipem on a PBS Pro / OpenPBS cluster.
#
# The engines are ONE MPI job (the site's `mpiexec` inside a qsub job), spread over as many
# nodes as needed, so ipem can sum statistics with MPI (reduction="allreduce") as well as
# through the client. The controller runs where you type `ipcluster start`; the engines on
# the compute nodes connect back to it.
#
#   ipcluster start --profile-dir=profiles/profile_ipem_pbs -n 256 --daemonize
#       (-n = number of engines = MPI ranks: one per core, e.g. 16 nodes x 16 cores)
#   # in a notebook on a machine that sees the same home directory:
#   ctrl = ipem.connect_profile(profile_dir="profiles/profile_ipem_pbs", n_engines=256,
#                               blas_threads=1)
#   ipcluster stop --profile-dir=profiles/profile_ipem_pbs     # qdels the engine job
#
# Before the first run:
# - the virtualenv (with ipem, ipyparallel and mpi4py) must sit on a filesystem the compute
#   nodes see, at the same path: the engines run this very Python;
# - mpi4py must use the cluster's MPI, not the mpich wheel: `module load` your MPI, then
#   `pip uninstall mpich` (mpi4py then loads the system libmpi) or point MPI4PY_LIBMPI at it;
# - copy this directory somewhere in your home and edit the values below.
import os

c = get_config()  # noqa: F821

# --- the controller ------------------------------------------------------------------------
# The address the controller listens on. The engines must be able to reach it:
# "*" = every interface of the machine running ipcluster (engines find it by host name), or
# one address, e.g. the InfiniBand one that `ip -4 addr show ib0` prints.
# Override per run: IPEM_CONTROLLER_IP=10.1.0.5 ipcluster start ...  or  ipcluster start --ip=...
c.Cluster.controller_ip = os.environ.get("IPEM_CONTROLLER_IP", "*")

# --- the engines: one qsub job --------------------------------------------------------------
c.Cluster.engine_launcher_class = "pbs"
c.PBSEngineSetLauncher.namespace = {
    "ppn": 16,                 # engines per node: usually the number of cores of one node
    "walltime": "04:00:00",    # wall-clock limit of the engine job (hh:mm:ss)
}
# {n} is ipcluster's -n; {(n + ppn - 1) // ppn} is the number of nodes (n / ppn, rounded up).
# Torque instead of PBS Pro: replace the select line by  #PBS -l nodes=...:ppn={ppn}
# Lines starting with "##" are switched off: remove one "#" to use them.
c.PBSEngineSetLauncher.batch_template = """#!/bin/bash
#PBS -N ipem-engines
#PBS -l select={(n + ppn - 1) // ppn}:ncpus={ppn}:mpiprocs={ppn}
#PBS -l walltime={walltime}
#PBS -j oe
#PBS -o {output_file}
#PBS -V
##PBS -q workq
##PBS -A myproject
cd "$PBS_O_WORKDIR"
# one BLAS thread per engine: the engines are the parallelism
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
mpiexec -n {n} {program_and_args} --mpi
"""
