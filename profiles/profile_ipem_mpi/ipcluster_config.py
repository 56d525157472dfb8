# IPython profile for ipem on this machine: the engines are one MPI job (mpiexec -n N ipengine).
#   ipcluster start --profile-dir=profiles/profile_ipem_mpi -n 2
# then, in Python:
#   ctrl = ipem.connect_profile(profile_dir="profiles/profile_ipem_mpi", n_engines=2)
# For engines on other machines, see profile_ipem_slurm, profile_ipem_pbs, profile_ipem_ssh.
from ipem.parallel.clusters import single_host_mpi_config

c = get_config()  # noqa: F821

c.Cluster.engine_launcher_class = "MPI"
c.Cluster.controller_ip = "127.0.0.1"
# The mpiexec: $IPEM_MPIEXEC, else one on PATH (an MPI you loaded), else the mpich wheel's.
# Nothing listens beyond this machine: with MPICH, mpiexec.gforker (no network listener, unlike
# hydra's mpiexec) and the ranks' UCX/libfabric transports on loopback.
c.merge(single_host_mpi_config())
