"""The repository's IPython profile starts MPI engines that ipem can use."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import ipem
from ipem.parallel import EngineError
from tests.helpers import blobs

ROOT = Path(__file__).resolve().parents[2]


def test_ipcluster_profile(tmp_path):
    ipem.parallel.ensure_mpiexec()
    prof = tmp_path / "profile_ipem_mpi"
    shutil.copytree(ROOT / "profiles" / "profile_ipem_mpi", prof)
    ipcluster = [sys.executable, "-m", "ipyparallel.cluster"]
    subprocess.run(ipcluster + ["start", f"--profile-dir={prof}", "-n", "2", "--daemonize"],
                   check=True, timeout=120)
    try:
        deadline = time.time() + 120
        while True:
            try:
                ctrl = ipem.connect_profile(profile_dir=str(prof), n_engines=2, timeout=60)
                break
            except (OSError, TimeoutError):
                if time.time() > deadline:
                    raise
                time.sleep(1)
        assert ctrl.ranks == [0, 1]
        ranks = ctrl.view.pull("mpi_rank", block=True)
        assert sorted(ranks) == [0, 1]
        X = blobs(400, d=3, k=2)
        remote = ipem.GaussianMixture(2, covariance_type="diag", random_state=0,
                                      controller=ctrl).fit(X)
        local = ipem.GaussianMixture(2, covariance_type="diag", random_state=0,
                                     controller=2).fit(X)
        assert_array_equal(remote.means_, local.means_)

        # the count ipcluster asked for is read from the profile; more is refused in one line
        assert ipem.connect_profile(profile_dir=str(prof), timeout=30).n_shards == 2
        with pytest.raises(EngineError, match=r"^2 of 3 engines registered .* after 2 s .*"
                                              "not running on fewer than asked$"):
            ipem.connect_profile(profile_dir=str(prof), n_engines=3, timeout=2)
        # an engine died: the survivors (if any) are not used without a word
        os.kill(ctrl.pids[1], signal.SIGKILL)
        t0 = time.time()
        while len(ctrl.client.ids) == 2 and time.time() - t0 < 60:
            time.sleep(0.2)
        with pytest.raises(EngineError, match=r"^[01] of 2 engines registered"):
            ipem.connect_profile(profile_dir=str(prof), timeout=2)
        ctrl.client.close()
    finally:
        subprocess.run(ipcluster + ["stop", f"--profile-dir={prof}"], timeout=60)
