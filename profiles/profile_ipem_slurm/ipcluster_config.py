# IPython profile for ipem on a Slurm cluster.
#
# The engines are ONE MPI job started with `srun`, spread over as many nodes as needed, so
# ipem can sum statistics with MPI (reduction="allreduce") as well as through the client.
# The controller runs where you type `ipcluster start` (a login node, or the first node of
# an interactive allocation); the engines on the compute nodes connect back to it.
#
#   ipcluster start --profile-dir=profiles/profile_ipem_slurm -n 256 --daemonize
#       (-n = number of engines = MPI ranks: one per core, e.g. 16 nodes x 16 cores;
#        ipyparallel's options work too: --SlurmEngineSetLauncher.timelimit=1:00:00,
#        .queue=PARTITION, .account=..., .qos=...)
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
#   check with `srun -n 2 --mpi=pmi2 python -m mpi4py.bench helloworld` (two ranks, not two
#   rank 0s; --mpi= as srun_mpi below: without it a site with MpiDefault=none prints "0 of 1"
#   twice);
# - or let ipem submit the engine job itself: --cluster slurm:N, ipem.SlurmCluster(n=...);
# - copy this directory somewhere in your home and edit the values below.
import os

c = get_config()  # noqa: F821

# --- the controller ------------------------------------------------------------------------
# The address the controller listens on. The engines must be able to reach it:
# "*" = every interface of the machine running ipcluster, or one address, e.g. the InfiniBand
# one that `ip -4 addr show ib0` prints.
# Override per run: IPEM_CONTROLLER_IP=10.1.0.5 ipcluster start ...  or  ipcluster start --ip=...
c.Cluster.controller_ip = os.environ.get("IPEM_CONTROLLER_IP", "*")
# The address the engines connect to: with "*", ipyparallel would record this machine's host
# name, which a compute node may resolve to 127.0.0.1; IPEM_CONTROLLER_IP, or this machine's
# address on its default route, is used instead.
c.Cluster.controller_location = os.environ.get("IPEM_CONTROLLER_IP", "")
if not c.Cluster.controller_location:
    from ipem.parallel.slurm import default_location
    c.Cluster.controller_location = default_location() or ""

# --- the engines: one sbatch job, one srun step of MPI engines ----------------------------
# ipem's launcher: ipyparallel's SlurmEngineSetLauncher with `srun --mpi=... --kill-on-bad-exit=1`
# (a dead engine ends the job instead of holding its allocation).
c.Cluster.engine_launcher_class = "ipem.parallel.slurm_profile.SlurmEngineSetLauncher"
# ipyparallel's own options; "" leaves the line out of the script
c.SlurmEngineSetLauncher.timelimit = "04:00:00"   # wall-clock limit of the engine job
c.SlurmEngineSetLauncher.queue = ""               # the partition, e.g. "cpu"
c.SlurmEngineSetLauncher.account = ""             # e.g. "myproject"
c.SlurmEngineSetLauncher.qos = ""
c.SlurmEngineSetLauncher.options = ""             # more sbatch options, e.g. "--constraint=ib"
# ipem's: engines per node (0: Slurm places the -n engines; more than a node's CPUs is an
# error), srun's MPI plugin ("": pmi2 for MPICH and the mpich wheel, pmix for Open MPI;
# `srun --mpi=list` shows yours), shell lines before srun (your site's MPI)
c.SlurmEngineSetLauncher.ppn = 0
c.SlurmEngineSetLauncher.srun_mpi = ""
c.SlurmEngineSetLauncher.prologue = []            # e.g. ["module load mpich"]
# The job log ({profile}/log/ipengine-*.log, or SlurmEngineSetLauncher.output_file) is kept
# by `ipcluster stop`: it is where Slurm writes "CANCELLED ... DUE TO TIME LIMIT".
