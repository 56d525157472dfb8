"""Engines on other hosts: the batch-system profiles, and engines that a batch job starts.

Slurm, PBS and ssh cannot run here; their profiles are loaded through ipyparallel's
config machinery and their batch scripts rendered, so that a typo fails. Engines
started outside ``ipcluster`` (``mpiexec ... ipyparallel.engine --file=...``, what a
batch job on another node does) are run for real against an ``ipcontroller``.
"""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from numpy.testing import assert_array_equal
from traitlets.config.loader import PyFileConfigLoader

import ipem
from tests.helpers import blobs, launch_mpi_job, stop_tree
from ipem.parallel.clusters import ensure_mpiexec
from ipem.parallel.engine import engine_info

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ROOT / "profiles"


def load_profile(name):
    return PyFileConfigLoader("ipcluster_config.py", path=str(PROFILES / name)).load_config()


def engine_launcher(config, tmp_path):
    from ipyparallel.cluster.launcher import find_launcher_class
    from traitlets.utils.importstring import import_item
    name = config.Cluster.engine_launcher_class
    cls = import_item(name) if "." in name else find_launcher_class(name, "engine")
    return cls(config=config, profile_dir=str(tmp_path), cluster_id="test", work_dir=str(tmp_path))


def batch_script(name, tmp_path, n):
    """The batch script the profile's engine launcher would submit for ``n`` engines."""
    launcher = engine_launcher(load_profile(name), tmp_path)
    launcher.write_batch_script(n)
    return type(launcher).__name__, Path(launcher.batch_file).read_text()


@pytest.fixture
def no_ip_override(monkeypatch):
    monkeypatch.delenv("IPEM_CONTROLLER_IP", raising=False)
    monkeypatch.delenv("IPEM_HOSTS", raising=False)
    return monkeypatch


@pytest.mark.parametrize("name", ["profile_ipem_slurm", "profile_ipem_pbs", "profile_ipem_ssh"])
def test_remote_profile_controller_ip(name, no_ip_override):
    assert load_profile(name).Cluster.controller_ip == "*"
    no_ip_override.setenv("IPEM_CONTROLLER_IP", "10.1.0.5")
    assert load_profile(name).Cluster.controller_ip == "10.1.0.5"


def test_slurm_profile(tmp_path, no_ip_override, monkeypatch):
    monkeypatch.delenv("IPEM_SRUN_MPI", raising=False)
    cls, script = batch_script("profile_ipem_slurm", tmp_path, 64)
    assert cls == "SlurmEngineSetLauncher"
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    assert "#SBATCH --ntasks=64" in lines
    assert not [ln for ln in lines if "--ntasks-per-node" in ln]  # Slurm places the engines
    assert "#SBATCH --export=ALL" in lines  # the engines get IPP_* connection variables
    assert "#SBATCH --time=04:00:00" in lines
    # pmi2: what the mpich wheel's ranks need; a dead engine ends the job
    assert lines[-1] == (f"srun --mpi=pmi2 --kill-on-bad-exit=1 {sys.executable} "
                         "-m ipyparallel.engine --mpi")


def test_slurm_profile_honours_ipyparallels_options(tmp_path, no_ip_override):
    config = load_profile("profile_ipem_slurm")
    launcher_config = config.SlurmEngineSetLauncher
    launcher_config.queue, launcher_config.account = "cpu", "proj"
    launcher_config.qos, launcher_config.timelimit = "long", "1:00:00"
    launcher_config.options = "--constraint=ib"
    launcher_config.prologue = ["module load mpich"]
    launcher_config.srun_mpi = "pmix"
    launcher = engine_launcher(config, tmp_path)
    launcher.write_batch_script(8)
    lines = Path(launcher.batch_file).read_text().splitlines()
    for option in ("--partition=cpu", "--account=proj", "--qos=long", "--time=1:00:00",
                   "--constraint=ib", "--ntasks=8"):
        assert f"#SBATCH {option}" in lines, option
    assert lines.index("module load mpich") < len(lines) - 1
    assert lines[-1].startswith("srun --mpi=pmix --kill-on-bad-exit=1 ")


def test_pbs_profile(tmp_path, no_ip_override):
    cls, script = batch_script("profile_ipem_pbs", tmp_path, 40)
    assert cls == "PBSEngineSetLauncher"
    lines = script.splitlines()
    assert "#PBS -l select=3:ncpus=16:mpiprocs=16" in lines  # 40 engines: 3 nodes of 16
    assert "#PBS -V" in lines
    assert lines[-1] == f"mpiexec -n 40 {sys.executable} -m ipyparallel.engine --mpi"


def test_ssh_profile(tmp_path, no_ip_override):
    no_ip_override.setenv("IPEM_HOSTS", "a:2,b:2")
    launcher = engine_launcher(load_profile("profile_ipem_ssh"), tmp_path)
    assert type(launcher).__name__ == "MPIEngineSetLauncher"
    launcher.n = 4
    assert launcher.find_args() == ["mpiexec", "-n", "4", "-launcher", "ssh", "-hosts", "a:2,b:2",
                                    sys.executable, "-m", "ipyparallel.engine", "--mpi"]
    assert launcher.get_env()["OMP_NUM_THREADS"] == "1"


@pytest.mark.parametrize("name", ["profile_ipem_slurm", "profile_ipem_pbs", "profile_ipem_ssh",
                                  "profile_ipem_mpi"])
def test_profile_through_ipyparallel_cluster(name, tmp_path, no_ip_override):
    """``ipp.Cluster(profile_dir=...)`` (what ipcluster does) reads the profile as intended."""
    import ipyparallel as ipp
    prof = tmp_path / name
    shutil.copytree(PROFILES / name, prof)
    cluster = ipp.Cluster(profile_dir=str(prof), n=2)  # not started
    expected = {"profile_ipem_slurm": "SlurmEngineSetLauncher",
                "profile_ipem_pbs": "PBSEngineSetLauncher"}.get(name, "MPIEngineSetLauncher")
    assert cluster.engine_launcher_class.__name__ == expected
    if name == "profile_ipem_mpi":
        assert cluster.controller_ip == "127.0.0.1"
        mpi_cmd = cluster.config.MPIEngineSetLauncher.mpi_cmd
        assert os.path.basename(mpi_cmd[0]) in ("mpiexec.gforker", "mpiexec")
    else:
        assert cluster.controller_ip == "*"


def _wait_for_json(path, proc, log, timeout=120):
    deadline = time.time() + timeout
    while True:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            pass
        assert proc.poll() is None, f"ipcontroller exited:\n{log.read_text()}"
        assert time.time() < deadline, f"no {path.name} after {timeout} s:\n{log.read_text()}"
        time.sleep(0.2)


def test_engines_started_like_a_batch_job(tmp_path):
    """ipcontroller here; engines from ``mpiexec ... --file=<connection file>``, no ipcluster."""
    try:
        mpiexec = ensure_mpiexec()
    except RuntimeError as e:
        pytest.skip(str(e))
    prof = tmp_path / "profile_controller"
    prof.mkdir()
    log = tmp_path / "ipcontroller.log"
    controller = engines = ctrl = None
    try:
        with open(log, "w") as out:
            controller = subprocess.Popen(
                [sys.executable, "-m", "ipyparallel.controller", f"--profile-dir={prof}",
                 "--ip=127.0.0.1"], stdout=out, stderr=subprocess.STDOUT)
        engine_file = prof / "security" / "ipcontroller-engine.json"
        _wait_for_json(engine_file, controller, log)
        _wait_for_json(prof / "security" / "ipcontroller-client.json", controller, log)
        # the "other host": its own profile directory; only the connection file is shared
        host = tmp_path / "engine_host"
        host.mkdir()
        engine_log = tmp_path / "engines.log"
        engines = launch_mpi_job(
            lambda: subprocess.Popen(
                [mpiexec, "-n", "2", sys.executable, "-m", "ipyparallel.engine", "--mpi",
                 f"--file={engine_file}", f"--profile-dir={host}"],
                stdout=open(engine_log, "w"), stderr=subprocess.STDOUT, cwd=str(host)),
            lambda: engine_log.read_text().count("Completed registration") >= 2, engine_log,
            what="the engines' mpiexec")
        ctrl = ipem.parallel.connect_profile(profile_dir=str(prof), n_engines=2, blas_threads=1,
                                             timeout=120)
        info = ctrl.client[:].apply_sync(engine_info)
        assert sorted(rank for rank, *_ in info) == [0, 1]
        assert [size for _, size, *_ in info] == [2, 2]  # one MPI job, not two singletons
        assert ctrl.ranks == [0, 1]

        X = blobs(600, d=3, k=4)
        assert X.dtype == "float64"
        remote = ipem.GaussianMixture(4, covariance_type="diag", random_state=0,
                                      controller=ctrl).fit(X)
        local = ipem.GaussianMixture(4, covariance_type="diag", random_state=0,
                                     controller=ipem.parallel.LocalController(2, blas_threads=1)
                                     ).fit(X)
        assert remote.n_iter_ == local.n_iter_
        assert remote.lower_bound_ == local.lower_bound_
        for attr in ("weights_", "means_", "covariances_"):
            assert_array_equal(getattr(remote, attr), getattr(local, attr), err_msg=attr)
    finally:
        if ctrl is not None:
            ctrl.client.close()
        stop_tree(engines)
        stop_tree(controller)
