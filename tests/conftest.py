"""Shared fixtures: one real ipyparallel cluster with 2 MPI engines per test session.

Tests mirror the package (``tests/<package>/test_<module>.py``); helpers that test
modules import live in :mod:`tests.helpers`.  Markers: ``mpi`` (set here on every
test that uses the session's engines), ``hostile`` (hostile and malformed input),
``once`` (first pass only).
"""
import os

import pytest

import ipem
from tests.helpers import kernels, start_mpi_cluster

N_ENGINES = 2


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
    cluster, client = start_mpi_cluster(N_ENGINES)
    try:
        # shard functions defined in test modules are pickled by reference
        # (tests.<package>.test_<module>): engines import them from the repository root
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        client[:].execute(f"import sys; sys.path.insert(0, {root!r})", block=True)
        yield client
    finally:
        client.close()
        cluster.stop_cluster_sync()


@pytest.fixture(scope="session")
def owned_mpi_cluster():
    """An :class:`ipem.MPICluster` of 2 engines (ipem started it, so ipem restarts its engines
    when a test kills one), for the tests of engine loss and recovery in several packages:
    started once, not once per module (a start costs seconds)."""
    mc = ipem.MPICluster(n=N_ENGINES, blas_threads=1, controller_kwargs=dict(min_deadline=3.0))
    mc.start()
    yield mc
    mc.stop()


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


@pytest.fixture
def seed(request):
    return int(os.environ.get("IPEM_TEST_SEED", "0"))


ENGINE_FIXTURES = {"mpi_client", "dv_client", "dv_allreduce", "dv"}


#: Modules whose tests do not depend on the kernel backend (cluster life cycles, launchers,
#: sockets, refused inputs, packaging, layout, the corpus generator) or run whole pipelines
#: end to end: ``once``, so that the NumPy pass repeats what tests the kernels' numbers.
BACKEND_INDEPENDENT = {
    "tests/parallel/test_profile.py", "tests/parallel/test_remote_engines.py",
    "tests/parallel/test_mpi.py", "tests/parallel/test_slurm.py",
    "tests/io/test_preflight.py", "tests/steps/test_hostile.py", "tests/steps/test_preflight.py",
    "tests/synth/test_corpus.py", "tests/test_layout.py", "tests/test_packaging.py",
    # end to end on generated corpora, and the CLI's own behaviour (messages, exit codes)
    "tests/steps/test_noisy.py", "tests/steps/test_pipeline.py", "tests/cli/test_main.py",
    # files, records, plots and score-level arithmetic that no kernel computes
    "tests/io/test_atomic.py", "tests/io/test_datadir.py", "tests/io/test_features.py",
    "tests/steps/test_provenance.py", "tests/steps/test_trial_lists.py",
    "tests/speaker/test_calibration.py", "tests/speaker/test_metrics.py",
    "tests/speaker/test_scorefiles.py", "tests/speaker/test_utterances.py",
    "tests/notebooks/test_notebooks.py",
}


def pytest_collection_modifyitems(items):
    """Mark every test that uses the session's MPI engines ``mpi``, and those of
    :data:`BACKEND_INDEPENDENT` modules ``once``."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for item in items:
        if ENGINE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.mpi)
        if os.path.relpath(str(item.fspath), root).replace(os.sep, "/") in BACKEND_INDEPENDENT:
            item.add_marker(pytest.mark.once)
