"""Shared fixtures: one real ipyparallel cluster with 2 MPI engines per test session."""
import os

import numpy as np
import pytest

import ipem
from ipem.kernels import _numpy as NPK

try:
    from ipem.kernels import _c as CK
    C_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - depends on the build
    CK = None
    C_IMPORT_ERROR = exc

ALLOW_NO_C = os.environ.get("IPEM_ALLOW_NO_C", "") == "1"
N_ENGINES = 2


def kernels(name):
    """The kernel module of backend ``name``; a missing compiled module FAILS the
    test unless IPEM_ALLOW_NO_C=1 (then it is skipped)."""
    if name == "numpy":
        return NPK
    if CK is None:
        msg = f"compiled kernels (ipem.kernels._c) not importable: {C_IMPORT_ERROR}"
        if ALLOW_NO_C:
            pytest.skip(msg + " (IPEM_ALLOW_NO_C=1)")
        pytest.fail(msg + "; build them (pip install -e .) or set IPEM_ALLOW_NO_C=1")
    return CK


@pytest.fixture(params=["base", "avx2", "avx512"])
def c_isa(request):
    """The C backend with each instruction-set level this CPU supports."""
    mod = kernels("c")
    if request.param not in mod.available_isas():
        pytest.skip(f"CPU lacks {request.param}")
    previous = mod.get_isa()
    mod.set_isa(request.param)
    yield mod
    mod.set_isa(previous)


@pytest.fixture(scope="session")
def mpi_client():
    """An ipyparallel Client on 2 engines started with ``engines="mpi"``."""
    ipem.parallel.ensure_mpiexec()
    import ipyparallel as ipp
    cluster = ipp.Cluster(engines="mpi", n=N_ENGINES, log_level=40,
                          config=ipem.parallel.single_host_mpi_config())
    client = cluster.start_and_connect_sync()
    try:
        client.wait_for_engines(N_ENGINES, timeout=120)
        # shard functions defined in test modules are pickled by reference
        tests_dir = os.path.dirname(os.path.abspath(__file__))
        client[:].execute(f"import sys; sys.path.insert(0, {tests_dir!r})", block=True)
        yield client
    finally:
        client.close()
        cluster.stop_cluster_sync()


@pytest.fixture(scope="session")
def dv_client(mpi_client):
    return ipem.DirectViewController(mpi_client[:], reduction="client", blas_threads=1)


@pytest.fixture(scope="session")
def dv_allreduce(mpi_client):
    return ipem.DirectViewController(mpi_client[:], reduction="allreduce", blas_threads=1)


@pytest.fixture(params=["client", "allreduce"])
def dv(request, dv_client, dv_allreduce):
    return dv_client if request.param == "client" else dv_allreduce


@pytest.fixture
def backend():
    """The kernel backend under test (CI runs the suite once per backend)."""
    return ipem.BACKEND


def blobs(n=600, d=3, k=3, seed=0, dtype=np.float64):
    """Well-separated Gaussian blobs with unequal spreads."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 6, size=(k, d))
    scales = np.linspace(0.5, 2.0, k)
    sizes = np.full(k, n // k)
    sizes[: n - sizes.sum()] += 1
    X = np.concatenate([rng.normal(c, s, size=(m, d)) for c, s, m in zip(centers, scales, sizes)])
    rng.shuffle(X)
    return X.astype(dtype)


@pytest.fixture
def seed(request):
    return int(os.environ.get("IPEM_TEST_SEED", "0"))
