"""Helpers that test modules import (fixtures live in conftest.py)."""
import os

import numpy as np
import pytest

from ipem.kernels import _numpy as NPK

try:
    from ipem.kernels import _c as CK
    C_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - depends on the build
    CK = None
    C_IMPORT_ERROR = exc

ALLOW_NO_C = os.environ.get("IPEM_ALLOW_NO_C", "") == "1"


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


def feature_world(root, speakers, *, dim=4, seed=0, frames=(200, 150, 120)):
    """Synthetic feature files laid out as ``ipem extract`` writes them, with lists.

    Each speaker gets 4 UBM, 2 enrollment and 2 test utterances (``frames`` frames
    each, per role) drawn around a shared set of ``dim``-dimensional centres plus a
    speaker offset.  Writes under ``root``: ``feats/wav/<spk>/<spk>_<role>_<i>.htk``
    and ``corpus/{ubm,enroll,tests,trials}.lst`` (lists name the ``.wav`` entries).

    Returns
    -------
    (corpus, feats) : tuple of pathlib.Path
    """
    from ipem import io as features
    corpus, feats = root / "corpus", root / "feats"
    corpus.mkdir()
    rng = np.random.default_rng(seed)
    shared = rng.normal(0, 3, size=(4, dim))
    utts = {}
    for s in speakers:
        offset = rng.normal(0, 1.0, size=dim)
        for role, count, n in zip(("ubm", "enroll", "test"), (4, 2, 2), frames):
            for i in range(count):
                rel = f"wav/{s}/{s}_{role}_{i}.wav"
                path = feats / rel.replace(".wav", ".htk")
                path.parent.mkdir(parents=True, exist_ok=True)
                lab = rng.integers(0, 4, size=n)
                X = shared[lab] + offset + rng.normal(0, 0.7, size=(n, dim))
                features.write(path, X.astype(np.float32))
                utts.setdefault(role, []).append((s, rel))
    (corpus / "ubm.lst").write_text("".join(f"{r}\n" for _, r in utts["ubm"]))
    enroll = {}
    for s, rel in utts["enroll"]:
        enroll.setdefault(s, []).append(rel)
    (corpus / "enroll.lst").write_text("".join(f"{s} {' '.join(r)}\n" for s, r in enroll.items()))
    (corpus / "tests.lst").write_text("".join(f"{r}\n" for _, r in utts["test"]))
    (corpus / "trials.lst").write_text("".join(
        f"{m} {rel} {'target' if m == s else 'nontarget'}\n"
        for m in speakers for s, rel in utts["test"]))
    return corpus, feats


def stop_tree(proc, procs=None, timeout=15):
    """Terminate the subprocess ``proc``; then kill it and each of ``procs`` (default: its
    descendants, listed before it is terminated) still running, by PID."""
    import subprocess

    import psutil
    if proc is None:
        return
    if procs is None:
        try:
            procs = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            procs = []
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    for p in procs:  # psutil.Process refuses to signal a reused PID
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=timeout)
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout)


#: what MPICH's ch4:ucx prints when ``MPI_Init`` fails in the ranks' address exchange: an
#: intermittent failure of the mpich wheel's UCX (pmodels/mpich#7417; here about one job in
#: a hundred, on 2 ranks of one machine, whatever the transports), not of what a test checks
#: what the mpich 5.0.2 wheel's intermittent MPI_Init failures write (both seen here: the
#: address exchange, and the VCI set-up's "Message truncated" with both cores busy)
UCX_INIT_FLAKE = ("MPIDI_UCX_comm_addr_exchange", "MPIDI_UCX_comm_set_vcis")


def ucx_init_flake(text):
    """Whether ``text`` (an MPI job's output) shows the wheel's MPI_Init failure."""
    return any(marker in text for marker in UCX_INIT_FLAKE)


def launch_mpi_job(start, ready, log, timeout=120, what="the MPI job"):
    """Start an MPI job with ``start()`` (returns a Popen writing to the file ``log``) and wait
    until ``ready()``; once more when the job died in ``MPI_Init`` with :data:`UCX_INIT_FLAKE`.

    Any other exit before ``ready()`` fails the test with the job's output; so does a second
    flake. Returns the running Popen.
    """
    import time
    for attempt in (1, 2):
        proc = start()
        deadline = time.time() + timeout
        while not ready():
            if proc.poll() is not None:
                text = open(log).read()
                if ucx_init_flake(text) and attempt == 1:
                    stop_tree(proc)
                    break  # the wheel's UCX failed at MPI_Init: start the job again
                pytest.fail(f"{what} exited with {proc.returncode}:\n{text}")
            if time.time() > deadline:
                pytest.fail(f"{what} not ready after {timeout} s:\n{open(log).read()}")
            time.sleep(0.1)
        else:
            return proc
    raise AssertionError("unreachable")


def start_mpi_cluster(n, timeout=120, **cluster_kwargs):
    """An ipyparallel cluster with ``n`` MPI engines (ipem's single-host launch settings),
    started as a test fixture needs it: ``(cluster, client)`` with exactly ``n`` engines.

    When ``mpiexec`` exits before its engines register, with :data:`UCX_INIT_FLAKE` in its
    output, the cluster is stopped and started once more (what :class:`ipem.MPICluster` does
    for any engine lost while starting); any other early exit fails at once with the output.
    """
    import ipyparallel as ipp

    import ipem
    ipem.parallel.ensure_mpiexec()
    cluster_kwargs.setdefault("log_level", 40)
    for attempt in (1, 2):
        cluster = ipp.Cluster(engines="mpi", n=n,
                              config=ipem.parallel.single_host_mpi_config(), **cluster_kwargs)
        try:
            client = cluster.start_and_connect_sync()
            client.wait_for_engines(n, timeout=timeout)
            return cluster, client
        except ipp.error.EngineError as exc:  # the engine set stopped while it started
            output = "".join(ln.get_output() for ln in cluster.engines.values())
            cluster.stop_cluster_sync()
            if not ucx_init_flake(output) or attempt == 2:
                pytest.fail(f"mpiexec exited before its {n} engines registered ({exc}):\n"
                            f"{output}")
        except BaseException:
            cluster.stop_cluster_sync()
            raise
    raise AssertionError("unreachable")
