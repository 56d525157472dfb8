"""Which ``mpiexec`` ipem uses, and a one-machine MPI job that listens on loopback only."""
import ipaddress
import logging
import os
import subprocess
import sys
import time

import psutil
import pytest

from ipem.parallel.clusters import ensure_mpiexec, single_host_mpi_config
from tests.helpers import launch_mpi_job, stop_tree

VENV_MPIEXEC = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "mpiexec")
needs_wheel_mpiexec = pytest.mark.skipif(not os.access(VENV_MPIEXEC, os.X_OK),
                                         reason="no mpiexec in this Python's environment")


def fake_mpiexec(directory, name="mpiexec"):
    """A shell script standing in for an MPI the user loaded."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def clean_env(monkeypatch):
    """No IPEM_MPIEXEC; PATH and the environment restored after the test."""
    monkeypatch.delenv("IPEM_MPIEXEC", raising=False)
    monkeypatch.setenv("PATH", os.environ.get("PATH", ""))
    return monkeypatch


def test_mpiexec_on_path_wins(tmp_path, clean_env, caplog):
    loaded = fake_mpiexec(tmp_path / "modules" / "mpich" / "bin")
    path = os.pathsep.join([os.path.dirname(loaded), str(tmp_path / "empty")])
    clean_env.setenv("PATH", path)
    with caplog.at_level(logging.INFO, logger="ipem.parallel.mpi"):
        assert ensure_mpiexec() == loaded
    assert os.environ["PATH"] == path  # left alone
    assert any(loaded in r.getMessage() and "PATH" in r.getMessage() and r.levelno == logging.INFO
               for r in caplog.records)


@needs_wheel_mpiexec
def test_wheel_mpiexec_when_none_on_path(tmp_path, clean_env, caplog):
    (tmp_path / "empty").mkdir()
    clean_env.setenv("PATH", str(tmp_path / "empty"))
    with caplog.at_level(logging.INFO, logger="ipem.parallel.mpi"):
        assert ensure_mpiexec() == VENV_MPIEXEC
    assert os.environ["PATH"].split(os.pathsep)[0] == os.path.dirname(VENV_MPIEXEC)
    assert any(VENV_MPIEXEC in r.getMessage() for r in caplog.records)


@needs_wheel_mpiexec
def test_site_mpiexec_wins_over_the_activated_virtualenv(tmp_path, clean_env):
    """``module load mpich; source .venv/bin/activate``: the venv's bin/ (with the
    mpich wheel's mpiexec) comes first on PATH, and the site's MPI still wins."""
    loaded = fake_mpiexec(tmp_path / "modules" / "mpich" / "bin")
    clean_env.setenv("PATH", os.pathsep.join([os.path.dirname(VENV_MPIEXEC),
                                              os.path.dirname(loaded)]))
    assert ensure_mpiexec() == loaded
    # plain `mpiexec` (ipyparallel's launchers, the profiles) finds it too
    assert os.environ["PATH"].split(os.pathsep)[0] == os.path.dirname(loaded)


def test_missing_mpi4py_is_one_line_naming_the_extra(clean_env):
    clean_env.setitem(sys.modules, "mpi4py", None)  # as if not installed
    with pytest.raises(ModuleNotFoundError) as info:
        ensure_mpiexec()
    assert str(info.value) == "mpi4py is needed to start MPI engines: pip install 'ipem[mpi]'"


def test_ipem_mpiexec_names_one_explicitly(tmp_path, clean_env, caplog):
    fake_mpiexec(tmp_path / "on_path")
    chosen = fake_mpiexec(tmp_path / "chosen")
    clean_env.setenv("PATH", str(tmp_path / "on_path"))
    clean_env.setenv("IPEM_MPIEXEC", chosen)
    with caplog.at_level(logging.INFO, logger="ipem.parallel.mpi"):
        assert ensure_mpiexec() == chosen
    # put first on PATH, so that profiles running plain `mpiexec` get it too
    assert os.environ["PATH"].split(os.pathsep)[0] == str(tmp_path / "chosen")
    assert any("IPEM_MPIEXEC" in r.getMessage() for r in caplog.records)


def test_ipem_mpiexec_that_does_not_exist(tmp_path, clean_env):
    clean_env.setenv("IPEM_MPIEXEC", str(tmp_path / "nowhere" / "mpiexec"))
    with pytest.raises(RuntimeError, match="IPEM_MPIEXEC"):
        ensure_mpiexec()


def test_no_mpiexec_anywhere(tmp_path, clean_env):
    (tmp_path / "empty").mkdir()
    clean_env.setenv("PATH", str(tmp_path / "empty"))
    clean_env.setattr(sys, "executable", str(tmp_path / "empty" / "python"))
    with pytest.raises(RuntimeError, match="mpiexec not found"):
        ensure_mpiexec()


@pytest.mark.parametrize("has_gforker", [True, False], ids=["mpich", "other-mpi"])
def test_single_host_config(tmp_path, clean_env, has_gforker):
    mpiexec = fake_mpiexec(tmp_path / "bin")
    if has_gforker:
        gforker = fake_mpiexec(tmp_path / "bin", "mpiexec.gforker")
    clean_env.delenv("FI_TCP_IFACE", raising=False)
    clean_env.setenv("UCX_NET_DEVICES", "mlx5_0:1")  # the user's own setting wins
    launcher = single_host_mpi_config(mpiexec).MPIEngineSetLauncher
    assert launcher.mpi_cmd == [gforker if has_gforker else mpiexec]
    assert launcher.environment == {"FI_TCP_IFACE": "lo"}


def _listening(procs):
    """(pid, name, address) of every TCP socket the processes listen on."""
    found = []
    for proc in procs:
        try:
            conns = proc.net_connections(kind="inet")
            name = proc.name()
        except psutil.NoSuchProcess:
            continue
        found += [(proc.pid, name, c.laddr.ip) for c in conns if c.status == psutil.CONN_LISTEN]
    return found


RANK = """
import os, sys, time
from mpi4py import MPI
comm = MPI.COMM_WORLD
total = comm.allreduce(comm.Get_rank() + 1)   # the ranks really talk to each other
out = sys.argv[1]
with open(os.path.join(out, "rank%d" % comm.Get_rank()), "w") as f:
    f.write("%d %d" % (comm.Get_size(), total))
deadline = time.time() + 120
while not os.path.exists(os.path.join(out, "stop")) and time.time() < deadline:
    time.sleep(0.1)
"""


@needs_wheel_mpiexec
def test_single_host_mpi_job_listens_on_loopback_only(tmp_path, clean_env):
    """A real 2-rank job launched as single_host_mpi_config says: nothing on 0.0.0.0 or eth0.

    (MPICH's hydra ``mpiexec`` itself listens on 0.0.0.0 whatever -iface/HYDRA_IFACE
    say, and UCX listens on every interface unless UCX_NET_DEVICES restricts it.)
    """
    clean_env.delenv("UCX_NET_DEVICES", raising=False)
    clean_env.delenv("FI_TCP_IFACE", raising=False)
    launcher = single_host_mpi_config(VENV_MPIEXEC).MPIEngineSetLauncher
    script = tmp_path / "rank.py"
    script.write_text(RANK)
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, **launcher.environment)
    err = tmp_path / "err"
    proc = None
    procs = []
    try:
        proc = launch_mpi_job(
            lambda: subprocess.Popen(
                launcher.mpi_cmd + ["-n", "2", sys.executable, str(script), str(out)],
                env=env, stdout=subprocess.DEVNULL, stderr=open(err, "w")),
            lambda: all((out / f"rank{r}").exists() for r in range(2)), err,
            what="the 2-rank job")
        time.sleep(0.2)  # both files written
        assert sorted((out / f"rank{r}").read_text() for r in range(2)) == ["2 3", "2 3"]
        launched = psutil.Process(proc.pid)
        procs = [launched] + launched.children(recursive=True)
        assert len(procs) >= 3  # the launcher and its two ranks
        listening = _listening(procs)
        # the ranks' transports do listen, so the check sees sockets: on loopback
        assert listening, "no listening socket seen: the check would prove nothing"
        outside = [s for s in listening if not ipaddress.ip_address(s[2]).is_loopback]
        assert not outside, f"listening beyond this machine: {outside}"
        (out / "stop").touch()
        proc.wait(60)
        assert proc.returncode == 0, (tmp_path / "err").read_text()
    finally:
        (out / "stop").touch()
        if proc is not None:
            stop_tree(proc, procs)
