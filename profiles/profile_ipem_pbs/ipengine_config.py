# Engines of the ipem profile: make the engines' MPI rank available at start-up.
c = get_config()  # noqa: F821
c.IPEngine.startup_command = "from mpi4py import MPI; mpi_rank = MPI.COMM_WORLD.Get_rank()"
