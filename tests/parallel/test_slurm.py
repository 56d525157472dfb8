"""``--cluster slurm:N`` and :class:`ipem.SlurmCluster` on a real one-node Slurm.

The ``slurm`` fixture (tests/parallel/conftest.py) starts munged, slurmctld and
slurmd; the engines are one ``srun --mpi=pmi2`` job step of the mpich wheel.
Each test checks that no job and no engine process is left when it ends.
"""
import json
import logging
import os
import signal
import sys
import time

import numpy as np
import psutil
import pytest

import ipem
from ipem.cli import main
from ipem.parallel import EngineError, SlurmCluster, Terminated
from ipem.parallel.slurm import ENDED, srun_mpi_plugin
from tests.helpers import blobs, stop_tree

pytestmark = [pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")]


def engines_of(marker):
    """Engine processes whose command line names ``marker`` (a profile dir or cluster id)."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "ipyparallel" in cmd and marker in cmd:
            found.append(p)
    return found


def assert_nothing_left(slurm, marker):
    deadline = time.monotonic() + 30
    while (slurm.jobs() or engines_of(marker)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert slurm.jobs() == []
    assert engines_of(marker) == []


def test_job_script_is_a_dry_run(tmp_path, monkeypatch):
    monkeypatch.delenv("IPEM_SRUN_MPI", raising=False)
    sc = SlurmCluster(4, partition="cpu", account="proj", qos="normal", time="00:30:00",
                      memory="2G", modules=["mpich/4.2"], prologue=["echo start"],
                      sbatch_options=["--constraint=ib"], profile_dir=str(tmp_path / "p"))
    lines = sc.job_script().splitlines()
    assert lines[0] == "#!/bin/bash"
    for option in ("--ntasks=4", "--partition=cpu", "--account=proj", "--qos=normal",
                   "--time=00:30:00", "--mem-per-cpu=2G", "--constraint=ib", "--export=ALL",
                   f"--output={tmp_path / 'p' / 'log' / 'ipem-engines-%j.log'}"):
        assert f"#SBATCH {option}" in lines, option
    assert lines.index("module load mpich/4.2") < lines.index("echo start") < len(lines) - 1
    srun = lines[-1].split()
    assert srun[:3] == ["srun", "--mpi=pmi2", "--kill-on-bad-exit=1"]  # the mpich wheel
    assert srun[3:7] == [sys.executable, "-m", "ipyparallel.engine", "--mpi"]
    assert not (tmp_path / "p").exists()  # nothing written, nothing submitted


def test_srun_mpi_follows_the_mpi_library(monkeypatch):
    monkeypatch.delenv("IPEM_SRUN_MPI", raising=False)
    assert srun_mpi_plugin() == "pmi2"  # the mpich wheel that ipem[mpi] installs
    assert srun_mpi_plugin("MPICH Version: 4.2.0") == "pmi2"
    assert srun_mpi_plugin("Open MPI v5.0.3, package: Open MPI") == "pmix"
    assert srun_mpi_plugin("Intel(R) MPI Library 2021.10") == "pmi2"
    with pytest.raises(EngineError, match="IPEM_SRUN_MPI"):
        srun_mpi_plugin("Some Other MPI 1.0")
    monkeypatch.setenv("IPEM_SRUN_MPI", "pmix")
    assert srun_mpi_plugin("MPICH") == "pmix"


def _ubm_corpus(tmp_path):
    rng = np.random.default_rng(0)
    names = []
    for i in range(4):
        ipem.io.write(str(tmp_path / f"u{i}.npy"),
                      rng.normal(size=(1500, 6)).astype(np.float32), "npy")
        names.append(f"u{i}.npy")
    (tmp_path / "ubm.lst").write_text("\n".join(names) + "\n")


def _train_ubm(tmp_path, cluster, out):
    return main(["train-ubm", "--features", str(tmp_path), "--root", str(tmp_path),
                 "--list", str(tmp_path / "ubm.lst"), "--format", "npy", "-K", "8",
                 "--stage-iter", "2", "--final-iter", "3", "--out", str(out), "--quiet",
                 "--cluster", cluster])


@pytest.mark.once
def test_train_ubm_on_slurm_equals_local(slurm_env, tmp_path):
    _ubm_corpus(tmp_path)
    ref, got = tmp_path / "local.npz", tmp_path / "slurm.npz"
    assert _train_ubm(tmp_path, "local:2", ref) == 0
    assert _train_ubm(tmp_path, "slurm:2", got) == 0
    with np.load(ref) as a, np.load(got) as b:
        assert sorted(a.files) == sorted(b.files)
        for name in a.files:
            if name != "history_json":  # times differ
                np.testing.assert_array_equal(a[name], b[name], err_msg=name)
        objectives = [[r["objective"] for r in json.loads(str(z["history_json"]))]
                      for z in (a, b)]
        assert objectives[0] == objectives[1]
    logs = list((tmp_path / "ipython" / "profile_ipem_slurm" / "log").glob("ipem-engines-*.log"))
    assert len(logs) == 1  # the job log is kept
    assert_nothing_left(slurm_env, str(tmp_path / "ipython"))


def _scancel_after(slurm, cluster, iteration):
    """A callback that scancels the engine job after ``iteration`` and waits for its end."""
    def cb(record):
        if record.iteration == iteration:
            job = cluster.jobs[-1]
            slurm.run("scancel", job)
            deadline = time.monotonic() + 60
            while cluster.job_state(job)[0] not in ("CANCELLED", "GONE"):
                assert time.monotonic() < deadline
                time.sleep(0.2)
    return cb


@pytest.mark.once
def test_scancel_mid_fit_resubmits_and_gives_the_undisturbed_model(slurm_env, tmp_path):
    X = blobs(n=2000, d=4, k=4, seed=3)
    kw = dict(n_components=4, covariance_type="diag", random_state=0, max_iter=8, tol=0.0)
    ref = ipem.GaussianMixture(**kw, controller=ipem.LocalController(2, blas_threads=1)).fit(X)
    sc = SlurmCluster(2, blas_threads=1, profile_dir=str(tmp_path / "prof"),
                      controller_kwargs=dict(min_deadline=5.0))
    with sc as ctrl:
        assert ctrl.ranks == [0, 1] and ctrl.mpi_sizes == [2, 2]  # one MPI job of 2 ranks
        got = ipem.GaussianMixture(**kw, controller=ctrl,
                                   callbacks=[_scancel_after(slurm_env, sc, 3)]).fit(X)
        assert len(sc.jobs) == 2 and len(ctrl.recoveries) == 1
        assert sc.ended == [(sc.jobs[0], "CANCELLED", "CANCELLED")]
        # SIGTERM (a time limit of the job ipem runs in) unwinds the with block
        with pytest.raises(Terminated):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)
    for name in ("means_", "covariances_", "weights_"):
        np.testing.assert_array_equal(getattr(got, name), getattr(ref, name), err_msg=name)
    assert [r.objective for r in got.history_] == [r.objective for r in ref.history_]
    assert all(sc.job_state(j)[0] in ("CANCELLED", "COMPLETED") for j in sc.jobs)
    assert_nothing_left(slurm_env, sc.cluster_id)


def _wait_for_time_limit(cluster, iteration):
    """A callback that, after ``iteration``, waits until Slurm has ended the engine job at
    its time limit (a fit that outlasts the job, whatever the machine's speed)."""
    def cb(record):
        if record.iteration == iteration:
            job = cluster.jobs[-1]
            deadline = time.monotonic() + 240  # 1 minute + slurmctld's 30 s check + KillWait
            while cluster.job_state(job)[0] not in ENDED:
                assert time.monotonic() < deadline, cluster.job_state(job)
                time.sleep(1)
    return cb


@pytest.mark.once
def test_time_limit_mid_fit_resubmits_and_gives_the_undisturbed_model(slurm_env, tmp_path,
                                                                       caplog):
    """A checkpointed train-ubm whose engine job has a 1-minute limit, killed by Slurm."""
    from ipem.steps.ubm import train_ubm
    _ubm_corpus(tmp_path)
    files = [str(tmp_path / f"u{i}.npy") for i in range(4)]
    kw = dict(n_components=8, stage_iter=2, final_iter=3, seed=0)
    ref = train_ubm(files, **kw, controller="local:2")
    sc = SlurmCluster(2, time=1, blas_threads=1, profile_dir=str(tmp_path / "prof"),
                      controller_kwargs=dict(min_deadline=5.0))
    checkpoint = tmp_path / "ubm.ckpt.npz"
    with caplog.at_level(logging.WARNING, logger="ipem"), sc as ctrl:
        got = train_ubm(files, **kw, controller=ctrl, checkpoint=str(checkpoint),
                        callbacks=[_wait_for_time_limit(sc, 3)])
        assert len(sc.jobs) == 2 and len(ctrl.recoveries) == 1
    assert sc.ended == [(sc.jobs[0], "TIMEOUT", "time limit")]
    said = [r.getMessage() for r in caplog.records if "time limit" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith(f"Slurm job {sc.jobs[0]}: time limit")
    assert "DUE TO TIME LIMIT" in open(sc.log_file(sc.jobs[0])).read()  # the job log is kept
    for name in ("means_", "covariances_", "weights_"):
        np.testing.assert_array_equal(getattr(got, name), getattr(ref, name), err_msg=name)
    assert [r.objective for r in got.history_] == [r.objective for r in ref.history_]
    with np.load(checkpoint) as ck:  # the checkpoint went on through the resubmission
        assert [r["objective"] for r in json.loads(str(ck["history_json"]))] == \
            [r.objective for r in ref.history_]
    assert_nothing_left(slurm_env, sc.cluster_id)


@pytest.mark.once
def test_a_job_that_ends_while_its_engines_start_is_submitted_once_more(slurm_env, tmp_path,
                                                                       caplog):
    """The first engine job fails before its engines register (as one whose rank dies in
    MPI_Init): one warning, a second job, engines that work; a job failing every time is
    one line naming its log."""
    flag = tmp_path / "failed-once"
    fail_once = (f"if [ ! -e {flag} ]; then touch {flag}; "
                 "echo 'stand-in: MPI_Init failed' >&2; exit 1; fi")
    sc = SlurmCluster(2, blas_threads=1, prologue=[fail_once], profile_dir=str(tmp_path / "p"))
    X = blobs(n=600, d=3, k=3, seed=2)
    with caplog.at_level(logging.WARNING, logger="ipem"), sc as ctrl:
        assert flag.exists(), "the first job did not fail: the test tested nothing"
        assert len(sc.jobs) == 2
        assert ipem.GaussianMixture(3, max_iter=3, controller=ctrl).fit(X).n_iter_ == 3
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(said) == 1 and said[0].startswith(f"Slurm job {sc.jobs[0]} ended (FAILED)"), said
    assert said[0].endswith("stand-in: MPI_Init failed; submitting the engine job once more")
    assert_nothing_left(slurm_env, sc.cluster_id)

    sc = SlurmCluster(2, prologue=["echo 'stand-in: MPI_Init failed' >&2; exit 1"],
                      profile_dir=str(tmp_path / "q"))
    with pytest.raises(EngineError, match=r"Slurm job \d+ ended \(FAILED\) with 0 of 2 engines "
                                          r"registered; its log: .*stand-in: MPI_Init failed$"):
        sc.start()
    assert len(sc.jobs) == 2
    assert_nothing_left(slurm_env, sc.cluster_id)


@pytest.mark.once
def test_a_job_that_cannot_start_is_one_line_and_cancelled(slurm_env, tmp_path):
    sc = SlurmCluster(2, partition="nosuchpartition", profile_dir=str(tmp_path / "p"))
    with pytest.raises(EngineError, match=r"(?i)sbatch refused the engine job .*invalid "
                                          "partition") as info:
        sc.start()
    assert "\n" not in str(info.value)
    sc = SlurmCluster(os.cpu_count() + 1, profile_dir=str(tmp_path / "q"), start_timeout=5)
    with pytest.raises(EngineError,
                       match=r"sbatch refused|cannot start: |PENDING \(.*\) after 5 s") as info:
        sc.start()
    assert "\n" not in str(info.value)
    assert_nothing_left(slurm_env, sc.cluster_id)


def test_profile_ppn_above_the_nodes_cpus_is_a_clear_error(slurm_env, tmp_path):
    from tests.parallel.test_remote_engines import engine_launcher, load_profile
    config = load_profile("profile_ipem_slurm")
    config.SlurmEngineSetLauncher.ppn = 64 * os.cpu_count()
    launcher = engine_launcher(config, tmp_path)
    with pytest.raises(ValueError, match=rf"ppn={64 * os.cpu_count()} engines per node, but the "
                                         rf"nodes have at most {os.cpu_count()} CPUs"):
        launcher.write_batch_script(2)


@pytest.mark.once
def test_ipcluster_with_the_slurm_profile(slurm_env, tmp_path):
    """The profile as the README uses it: ipcluster start, connect_profile, ipcluster stop."""
    import shutil
    import subprocess

    from tests.parallel.test_profile import ROOT
    prof = tmp_path / "ipem-slurm"
    shutil.copytree(ROOT / "profiles" / "profile_ipem_slurm", prof)
    ipcluster = [sys.executable, "-m", "ipyparallel.cluster"]
    subprocess.run(ipcluster + ["start", f"--profile-dir={prof}", "-n", "2", "--daemonize",
                                "--SlurmEngineSetLauncher.timelimit=10"], check=True,
                   timeout=120, cwd=tmp_path)  # ipcluster writes the batch script in its cwd
    try:
        ctrl = ipem.connect_profile(profile_dir=str(prof), timeout=120)  # waits for the 2
        assert ctrl.ranks == [0, 1] and ctrl.mpi_sizes == [2, 2]  # one job, one MPI world
        job = slurm_env.jobs()
        assert len(job) == 1
        limit = slurm_env.run("squeue", "-h", "-j", job[0], "-o", "%l").stdout.strip()
        assert limit == "10:00"  # ipyparallel's option from the command line is honoured
        ctrl.client.close()
    finally:
        subprocess.run(ipcluster + ["stop", f"--profile-dir={prof}"], timeout=60, cwd=tmp_path)
    assert list((prof / "log").glob("ipengine-*.log"))  # the job log is kept
    assert_nothing_left(slurm_env, str(prof))


@pytest.mark.once
def test_ipcluster_ends_when_sbatch_refuses_the_engine_job(slurm_env, tmp_path):
    """ipyparallel alone waits forever here; ipem's launcher stops the controller and exits."""
    import shutil
    import subprocess

    from tests.parallel.test_profile import ROOT
    prof = tmp_path / "ipem-slurm"
    shutil.copytree(ROOT / "profiles" / "profile_ipem_slurm", prof)
    proc = subprocess.Popen([sys.executable, "-m", "ipyparallel.cluster", "start",
                             f"--profile-dir={prof}", "-n", "2", "--daemonize",
                             "--SlurmEngineSetLauncher.queue=nosuchpartition"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path)
    try:
        _, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        stop_tree(proc)  # the hang: ipcluster and its controller, by PID
        raise
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    said = [ln for ln in err.splitlines() if "sbatch" in ln]
    assert len(said) == 1 and said[0].startswith(
        f"ipcluster start: sbatch refused the engine job ({tmp_path / 'slurm_engine.sbatch'}): "
    ), err
    assert "invalid partition" in said[0].lower()
    assert not list((prof / "security").glob("cluster-*.json"))  # no stale cluster file
    assert_nothing_left(slurm_env, str(prof))  # no job, no controller


SLURM_OWNER = """
import sys, time
import ipem
sc = ipem.SlurmCluster(2, blas_threads=1, profile_dir=sys.argv[1])
sc.start()
print(sc.cluster_id, sc.cluster.controller.pid, flush=True)
time.sleep(300)
"""


@pytest.mark.once
def test_a_sigkilled_owner_leaves_no_job_and_no_hub(slurm_env, tmp_path):
    """The process that started a SlurmCluster killed outright (SIGKILL): its watcher
    cancels the engine job and ends the hub."""
    import subprocess
    script = tmp_path / "owner.py"
    script.write_text(SLURM_OWNER)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "prof")],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().split()
        assert line, f"the owner exited with {proc.wait()}"
        cluster_id, hub = line[0], psutil.Process(int(line[1]))
        assert slurm_env.jobs() and engines_of(cluster_id)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        assert_nothing_left(slurm_env, cluster_id)
        gone, alive = psutil.wait_procs([hub], timeout=15)
        assert not alive, "the hub was left running"
    finally:
        stop_tree(proc)
