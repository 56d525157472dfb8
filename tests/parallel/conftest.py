"""A real one-node Slurm for the tests that submit engine jobs.

``slurm`` (session) installs ``slurm-wlm`` and ``munge`` with apt-get when they are
missing, writes a slurm.conf for this host into a temporary directory (its own
munge socket, ports, state, spool and log directories), starts ``munged``,
``slurmctld`` and ``slurmd`` as child processes, waits for the node to be idle,
and stops them by PID at the end.  ``slurm_env`` points a test (and the
processes it starts) at that Slurm.
"""
import os
import random
import shutil
import socket
import subprocess
import time

import pytest

DAEMONS = ("munged", "slurmctld", "slurmd")


class Slurm:
    """A running one-node Slurm: ``env`` (SLURM_CONF, ...), ``run(cmd)``, ``jobs()``."""

    def __init__(self, root):
        self.root = root
        self.conf = root / "slurm.conf"
        self.env = {"SLURM_CONF": str(self.conf)}
        self.procs = []

    def run(self, *cmd, check=True, timeout=60):
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        env.update(self.env)
        return subprocess.run(cmd, env=env, capture_output=True, text=True, check=check,
                              timeout=timeout)

    def jobs(self):
        """Ids of the jobs that are pending or running."""
        return self.run("squeue", "-h", "-o", "%i").stdout.split()

    def node_state(self):
        return self.run("sinfo", "-h", "-o", "%T", check=False).stdout.strip()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _install():
    """Install slurm-wlm and munge with apt-get; the reason when that is impossible."""
    if all(shutil.which(d) or os.path.exists(f"/usr/sbin/{d}") for d in DAEMONS):
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "slurm-wlm/munge are not installed and apt-get cannot run here (needs root)"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    proc = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "slurm-wlm",
                           "munge"], env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return f"apt-get install slurm-wlm munge failed: {tail}"
    return None


def _config(root, host):
    mem_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2 ** 20
    return "\n".join([
        "ClusterName=ipemtest",
        f"SlurmctldHost={host}(127.0.0.1)",
        "SlurmUser=root", "SlurmdUser=root",
        "AuthType=auth/munge", "CredType=cred/munge",
        f"AuthInfo=socket={root}/munge/munge.sock",
        f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}",
        f"StateSaveLocation={root}/state", f"SlurmdSpoolDir={root}/spool",
        f"SlurmctldPidFile={root}/slurmctld.pid", f"SlurmdPidFile={root}/slurmd.pid",
        f"SlurmctldLogFile={root}/log/slurmctld.log", f"SlurmdLogFile={root}/log/slurmd.log",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "MpiDefault=none",
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core",
        "SchedulerType=sched/builtin", "ReturnToService=2", "SwitchType=switch/none",
        "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
        "KillWait=5", "MinJobAge=300", "InactiveLimit=0",
        # a submitted job is scheduled at once, not up to 3 s later (the default, which
        # batches the scheduling of many submissions)
        "SchedulerParameters=batch_sched_delay=0",
        # job ids unique across sessions: MPICH names its /dev/shm segment after the PMI
        # job (step) id, and a segment left by a cancelled job 1 of an earlier session
        # breaks MPI_Init of the next session's job 1
        f"FirstJobId={random.randrange(10 ** 5, 10 ** 7)}",
        f"NodeName=ipemnode NodeHostname={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} "
        f"RealMemory={int(mem_mb * 0.9)} State=UNKNOWN",
        "PartitionName=debug Nodes=ipemnode Default=YES MaxTime=INFINITE State=UP",
    ]) + "\n"


def _stop(procs, timeout=15):
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A one-node Slurm (slurmctld, slurmd, munged) running for this session."""
    reason = _install()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("slurm")
    for sub in ("munge", "state", "spool", "log"):
        (root / sub).mkdir()
    (root / "munge").chmod(0o700)
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    host = socket.gethostname()
    s = Slurm(root)
    s.conf.write_text(_config(root, host))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(s.env)
    m = root / "munge"
    commands = [
        ["munged", "-F", "--force", f"--socket={m}/munge.sock", f"--key-file={key}",
         f"--pid-file={m}/munged.pid", f"--seed-file={m}/seed", "--num-threads=2"],
        ["slurmctld", "-D", "-f", str(s.conf)],
        ["slurmd", "-D", "-f", str(s.conf), "-N", "ipemnode"],
    ]
    try:
        for cmd in commands:
            with open(root / "log" / f"{cmd[0]}.out", "w") as out:
                s.procs.append(subprocess.Popen(cmd, env=env, stdout=out,
                                                stderr=subprocess.STDOUT))
            if cmd[0] == "munged":
                deadline = time.monotonic() + 30
                while not (m / "munge.sock").exists():
                    assert time.monotonic() < deadline, (root / "log" / "munged.out").read_text()
                    time.sleep(0.1)
        deadline = time.monotonic() + 90
        while s.node_state() != "idle":
            for proc, cmd in zip(s.procs, commands):
                assert proc.poll() is None, \
                    f"{cmd[0]} exited: {(root / 'log' / f'{cmd[0]}.out').read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"the Slurm node is {s.node_state()!r}, not idle"
            time.sleep(0.5)
        yield s
    finally:
        try:
            if s.procs and s.procs[-1].poll() is None:
                s.run("scancel", "--user", str(os.geteuid()), check=False)
                deadline = time.monotonic() + 30
                while s.jobs() and time.monotonic() < deadline:
                    time.sleep(0.5)
        finally:
            _stop(s.procs)


@pytest.fixture
def slurm_env(slurm, monkeypatch, tmp_path):
    """This test (and what it starts) uses the session's Slurm; the hub on loopback."""
    for name in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(name)
    for name, value in slurm.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("IPEM_CONTROLLER_IP", "127.0.0.1")
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    return slurm
