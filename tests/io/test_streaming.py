"""Feature files streamed block by block under a per-place memory budget (``engine_memory``)."""
import re

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import ipem
from ipem.errors import ParameterError
from ipem.io import distribute_files, list_features
from ipem.io.streaming import parse_size
from ipem.mixture.ubm import UBMTrainer
from ipem.parallel import LocalController

B, D = 500, 5


def corpus(tmp_path, fmt):
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(9000, D)) + rng.integers(0, 4, size=(9000, 1))).astype(np.float32)
    cuts = np.sort(rng.choice(np.arange(100, 8900), 10, replace=False))  # files of any length
    paths = []
    for i, part in enumerate(np.split(X, cuts)):
        paths.append(str(tmp_path / f"u{i:02d}.{fmt}"))
        ipem.io.write(paths[-1], part, fmt)
    return paths


def test_parse_size():
    assert parse_size("1G") == 2**30 and parse_size("512MiB") == 2**29
    assert parse_size(1000) == 1000 and parse_size("1.5k") == 1536
    for bad in ("", "-1G", "1Q", "G"):
        with pytest.raises(ValueError, match="memory size"):
            parse_size(bad)


@pytest.mark.parametrize("fmt", ["htk", "npy"])
def test_streamed_ubm_is_the_in_memory_model(fmt, tmp_path, dv, backend):
    paths = corpus(tmp_path, fmt)
    refs = list_features(paths)
    kw = dict(n_components=4, stage_iter=2, final_iter=3, tol=0.0, random_state=0,
              backend=backend, dtype=np.float64)
    ref = UBMTrainer(controller=LocalController(1, block_size=B), **kw).fit(paths)
    budget = 4 * B * D * 8  # 3 blocks kept + room for the one being read
    dv.block_size = B
    try:
        for ctrl in (LocalController(3, block_size=B), dv):
            data = distribute_files(ctrl, refs, dtype=np.float64, engine_memory=budget)
            kept = [int(re.search(r"(\d+) rows in memory", text).group(1))
                    for place in ctrl.stored().values() for k, text in place.items()
                    if k.startswith(data.key)]
            assert len(kept) == ctrl.n_shards and max(kept) == 3 * B
            got = UBMTrainer(controller=ctrl, **kw).fit(data)
            data.free()
            for a in ("means_", "covariances_", "weights_"):
                assert_array_equal(getattr(got, a), getattr(ref, a), err_msg=f"{a} {ctrl}")
    finally:
        dv.block_size = None


def test_budget_below_one_block_is_one_line(tmp_path):
    refs = list_features(corpus(tmp_path, "npy"))
    with pytest.raises(ParameterError, match="less than one block"):
        distribute_files(LocalController(2), refs, engine_memory="1K")


def test_ubm_trainer_engine_memory_gives_the_same_model_whatever_the_budget(tmp_path):
    """No block_size on the controller: blocks of 4096 frames; one block kept or all."""
    paths = corpus(tmp_path, "htk")
    kw = dict(n_components=4, stage_iter=2, final_iter=2, tol=0.0, random_state=0)
    small = UBMTrainer(controller=LocalController(2), engine_memory="200K", **kw).fit(paths)
    large = UBMTrainer(controller=LocalController(1), engine_memory="1T", **kw).fit(paths)
    for a in ("means_", "covariances_", "weights_"):
        assert_array_equal(getattr(small, a), getattr(large, a), err_msg=a)
