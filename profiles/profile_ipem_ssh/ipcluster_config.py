# IPython profile for ipem on a few machines you can ssh into (no batch system).
#
# The engines are ONE MPI job: MPICH's mpiexec (hydra) logs into each host with ssh and starts
# the ranks there, so ipem can sum statistics with MPI (reduction="allreduce") as well as
# through the client. The controller runs where you type `ipcluster start`.
#
#   IPEM_HOSTS=node01:16,node02:16 ipcluster start --profile-dir=profiles/profile_ipem_ssh \
#       -n 32 --daemonize
#   # in a notebook:
#   ctrl = ipem.connect_profile(profile_dir="profiles/profile_ipem_ssh", n_engines=32,
#                               blas_threads=1)
#   ipcluster stop --profile-dir=profiles/profile_ipem_ssh
#
# Before the first run:
# - `ssh node01 true` must work without a password (ssh keys) from this machine;
# - every host needs this virtualenv at the same path (a shared home, or the same install),
#   and the same MPI as the `mpiexec` used here;
# - copy this directory somewhere in your home and edit the values below.
import os

c = get_config()  # noqa: F821

# --- the controller ------------------------------------------------------------------------
# The address the controller listens on. The engines must be able to reach it:
# "*" = every interface of this machine (engines find it by host name), or one address on
# the network the hosts share (`ip -4 addr` lists them).
# Override per run: IPEM_CONTROLLER_IP=10.1.0.5 ipcluster start ...  or  ipcluster start --ip=...
c.Cluster.controller_ip = os.environ.get("IPEM_CONTROLLER_IP", "*")

# --- the engines: mpiexec over ssh ----------------------------------------------------------
# host:slots, comma separated; -n should be the sum of the slots.
HOSTS = os.environ.get("IPEM_HOSTS", "node01:16,node02:16")
c.Cluster.engine_launcher_class = "MPI"
c.MPIEngineSetLauncher.mpi_cmd = ["mpiexec"]
# MPICH (hydra). Several networks? add "-iface", "eth1" to use that one between hosts.
# Open MPI instead: ["--host", HOSTS]
c.MPIEngineSetLauncher.mpi_args = ["-launcher", "ssh", "-hosts", HOSTS]
# one BLAS thread per engine: the engines are the parallelism
c.MPIEngineSetLauncher.environment = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                                      "MKL_NUM_THREADS": "1"}
