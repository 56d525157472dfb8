# IPython profile for ipem on a Slurm cluster.
#
# The engines are ONE MPI job started with `srun`, spread over as many nodes as needed, so
# ipem can sum statistics with MPI (reduction="allreduce") as well as through the client.
# The controller runs where you type `ipcluster start` (a login node, or the first node of
# an interactive allocation); the engines on the compute nodes connect back to it.
#
#   ipcluster start --profile-dir=profiles/profile_ipem_slurm -n 256 --daemonize
#       (-n = number of engines = MPI ranks: one per core, e.g. 16 nodes x 16 cores)
#   # in a notebook on a machine that sees the same home directory:
#   ctrl = ipem.connect_profile(profile_dir="profiles/profile_ipem_slurm", n_engines=256,
#                               blas_threads=1)
#   ubm = ipem.GaussianMixture(2048, covariance_type="diag", controller=ctrl).fit(X)
#   ipcluster stop --profile-dir=profiles/profile_ipem_slurm     # scancels the engine job
#
# Before the first run:
# - the virtualenv (with ipem, ipyparallel and mpi4py) must sit on a filesystem the compute
#   nodes see, at the same path: the engines run this very Python;
# - mpi4py must use the cluster's MPI, not the mpich wheel: `module load` your MPI, then
#   `pip uninstall mpich` (mpi4py then loads the system libmpi) or point MPI4PY_LIBMPI at it;
#   check with `srun -n 2 python -m mpi4py.bench helloworld` (two ranks, not two rank 0s);
# - copy this directory somewhere in your home and edit the values below.
import os

c = get_config()  # noqa: F821

# --- the controller ------------------------------------------------------------------------
# The address the controller listens on. The engines must be able to reach it:
# "*" = every interface of the machine running ipcluster (engines find it by host name), or
# one address, e.g. the InfiniBand one that `ip -4 addr show ib0` prints.
# Override per run: IPEM_CONTROLLER_IP=10.1.0.5 ipcluster start ...  or  ipcluster start --ip=...
c.Cluster.controller_ip = os.environ.get("IPEM_CONTROLLER_IP", "*")

# --- the engines: one sbatch job ------------------------------------------------------------
c.Cluster.engine_launcher_class = "slurm"
c.SlurmEngineSetLauncher.namespace = {
    "ppn": 16,             # engines per node: usually the number of cores of one node
    "time": "04:00:00",    # wall-clock limit of the engine job (hh:mm:ss)
    "srun_mpi": "pmix",    # srun's MPI plugin: `srun --mpi=list` shows yours; pmi2 for MPICH
}
# {n} is ipcluster's -n; {output_file} is the job log under the profile's log/ directory.
# Lines starting with "##" are switched off: remove one "#" to use them.
c.SlurmEngineSetLauncher.batch_template = """#!/bin/bash
#SBATCH --job-name=ipem-engines
#SBATCH --ntasks={n}
#SBATCH --ntasks-per-node={ppn}
#SBATCH --cpus-per-task=1
#SBATCH --time={time}
#SBATCH --export=ALL
#SBATCH --output={output_file}
##SBATCH --partition=cpu
##SBATCH --account=myproject
# one BLAS thread per engine: the engines are the parallelism
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
srun --mpi={srun_mpi} {program_and_args} --mpi
"""
