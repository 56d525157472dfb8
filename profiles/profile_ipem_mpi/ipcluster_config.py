# IPython profile for ipem: engines started as one MPI job (mpiexec -n N ipengine).
#   ipcluster start --profile-dir=profiles/profile_ipem_mpi -n 2
# then, in Python:
#   ctrl = ipem.connect_profile(profile_dir="profiles/profile_ipem_mpi", n_engines=2)
c = get_config()  # noqa: F821

c.Cluster.engine_launcher_class = "MPI"
# mpiexec must be on PATH: with the mpich wheel it lives in the virtualenv's bin/
c.MPIEngineSetLauncher.mpi_cmd = ["mpiexec"]
c.Cluster.controller_ip = "127.0.0.1"
