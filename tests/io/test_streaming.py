"""Feature files and utterance statistics streamed block by block under a per-place memory
budget (``engine_memory``), the next block read ahead."""
import re
import threading
import weakref

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import ipem
from ipem.errors import ParameterError
from ipem.io import distribute_files, list_features
from ipem.io.streaming import (RESERVE, SpilledRows, parse_size, place_rows, process_memory,
                               resident_rows)
from ipem.ivector import TotalVariability
from ipem.mixture.ubm import UBMTrainer
from ipem.parallel import LocalController
from ipem.parallel.data import BlockGroup, Shard
from ipem.parallel.engine import block_map, block_tree, tree_total

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
    budget = 5 * B * D * 8  # 3 blocks kept + the one computed + the one read ahead
    before, dv.block_size = dv.block_size, B
    try:
        # a local shard's budget bounds its frames: 3 blocks kept; an engine's is its whole
        # process, which already uses far more than these 100 KB: nothing kept, all streamed
        for ctrl, want in ((LocalController(3, block_size=B), 3 * B), (dv, 0)):
            data = distribute_files(ctrl, refs, dtype=np.float64, engine_memory=budget)
            kept = [int(re.search(r"(\d+) rows in memory", text).group(1))
                    for place in ctrl.stored().values() for k, text in place.items()
                    if k.startswith(data.key)]
            assert len(kept) == ctrl.n_shards and max(kept) == want, (ctrl, kept)
            got = UBMTrainer(controller=ctrl, **kw).fit(data)
            data.free()
            for a in ("means_", "covariances_", "weights_"):
                assert_array_equal(getattr(got, a), getattr(ref, a), err_msg=f"{a} {ctrl}")
    finally:
        dv.block_size = before


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


# --- utterance statistics (total variability) ----------------------------------------------
U = 5  # utterances per block


def utterances(tmp_path, n=37):
    rng = np.random.default_rng(1)
    paths = []
    for i in range(n):
        X = rng.normal(size=(int(rng.integers(40, 160)), D)) + rng.normal(size=D)
        paths.append(str(tmp_path / f"v{i:02d}.npy"))
        ipem.io.write(paths[-1], X.astype(np.float32), "npy")
    ubm = ipem.GaussianMixture(3, covariance_type="diag", random_state=0).fit(
        rng.normal(size=(1500, D)))
    return paths, ubm


def test_resident_rows_counts_the_block_computed_and_the_one_read_ahead():
    assert resident_rows(100, 10, 10) == (0, False)     # one block: computed, nothing ahead
    assert resident_rows(299, 10, 10) == (0, True)      # room for the one read ahead
    assert resident_rows(500, 10, 10) == (30, True)
    with pytest.raises(ParameterError, match="less than one block of 10 rows"):
        resident_rows(99, 10, 10)


def test_an_engine_budget_is_its_whole_process():
    """On an engine the budget holds the process: what it uses now, the computation's
    working memory and the slack come off before any block."""
    block = 2**20                         # 1 MiB blocks: this process's memory moves less
    work = 3 * block
    used = process_memory()
    budget = used + RESERVE + work + 5 * block + block // 2
    assert resident_rows(budget, 1024, 1024, work, whole_process=True) == (3 * 1024, True)
    assert resident_rows(budget, 1024, 1024, work) == (int(budget // block - 2) * 1024, True)
    with pytest.raises(ParameterError, match=r"beside the \d+[KMG] this engine needs "
                                             r"without them .*: give at least \d+[KMG]$"):
        resident_rows(used, 1024, 1024, whole_process=True)


def test_an_engine_full_already_streams_the_shard_it_takes_over(caplog):
    """A survivor given a lost engine's shard (a re-shard), or a second dataset, under a
    budget its first shard filled: nothing kept, every block read when used, a warning."""
    used = process_memory()
    with caplog.at_level("WARNING", logger="ipem.io.streaming"):
        assert place_rows((used, 1024, 0, True), 1024) == (0, False)
    assert "holds less than one block" in caplog.text and "every block" in caplog.text
    with pytest.raises(ParameterError, match="less than one block"):   # data alone: refused
        place_rows((100, 1024, 0, False), 1024)


def test_spilled_rows_read_back_the_bits_written():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(23, 7))
    rows = SpilledRows(23, 7, 6)
    for i, row in enumerate(X):
        rows.put(i, row)
    assert rows.resident.shape == (6, 7)
    for a, b in ((0, 23), (0, 6), (4, 9), (6, 23), (17, 20), (22, 23)):
        assert_array_equal(rows.rows(a, b), X[a:b])


def _stored_rows(ctrl, data):
    return [int(re.search(r"(\d+) rows in memory", text).group(1))
            for place in ctrl.stored().values() for k, text in place.items()
            if k.startswith(data.key)]


def test_streamed_total_variability_is_the_in_memory_extractor(tmp_path, dv_client):
    """Rows beyond the budget spill to scratch and are read back, one block ahead, every
    iteration: the extractor keeps the in-memory bits on LocalController and MPI engines."""
    paths, ubm = utterances(tmp_path)
    kw = dict(ubm=ubm, max_iter=3, random_state=0)
    ref = TotalVariability(2, controller=LocalController(1, block_size=U), **kw).fit(paths)
    row = (3 + 3 * D) * 8
    before, dv_client.block_size = dv_client.block_size, U
    # count the rows only, as on a LocalController, so that a known number spills on the
    # engines too (an engine's own memory moves by more than these 720-byte blocks)
    dv_client.places_in_client = True
    try:
        for ctrl, blocks in ((LocalController(3, block_size=U), 1), (dv_client, 1),
                             (LocalController(2, block_size=U), 0)):
            budget = (blocks + 2) * U * row   # kept + computed + read ahead
            data = ipem.ivector.distribute_stats(ubm, paths, controller=ctrl,
                                                 engine_memory=budget)
            assert max(_stored_rows(ctrl, data)) == blocks * U, ctrl
            data.free()
            got = TotalVariability(2, controller=ctrl, engine_memory=budget, **kw).fit(paths)
            assert_array_equal(got.T_, ref.T_, err_msg=str(ctrl))
    finally:
        dv_client.block_size = before
        del dv_client.places_in_client


def test_total_variability_budget_below_one_block_is_one_line(tmp_path):
    paths, ubm = utterances(tmp_path, n=6)
    with pytest.raises(ParameterError, match="engine_memory=100 holds less than one block"):
        TotalVariability(2, ubm=ubm, controller=LocalController(2),
                         engine_memory=100).fit(paths)


# --- read-ahead ------------------------------------------------------------------------------
class CountedRows:
    """Rows of an array read as fresh copies, counting the copies alive and the reads."""

    def __init__(self, X, n_resident, read_ahead):
        self.X, self.shape, self.dtype = X, X.shape, X.dtype
        self.resident, self.read_ahead = X[:n_resident].copy(), read_ahead
        self.alive = self.peak = 0
        self.reads = []
        self.cond = threading.Condition()

    def rows(self, a, b, out=None):
        if out is None:
            out = self.X[a:b].copy()
        else:
            out[:] = self.X[a:b]
        with self.cond:
            self.alive += 1
            self.peak = max(self.peak, self.alive)
            self.reads.append(a)
            self.cond.notify_all()
        weakref.finalize(out, self._gone)
        return out

    def _gone(self):
        with self.cond:
            self.alive -= 1


def _sum_after_next_read(block, src, n_blocks, seen):
    """The block's sum; a streamed block (not the last) first waits for the next block's read
    and records how many streamed blocks are then in memory."""
    a = block.offset
    if a >= src.resident.shape[0] and block.index < n_blocks - 1:
        with src.cond:
            if src.read_ahead:
                src.cond.wait_for(lambda: a + B in src.reads, timeout=20)
            seen.append(src.alive)
    return block.X.sum(axis=0)


@pytest.mark.parametrize("ahead", [True, False])
def test_read_ahead_is_one_block_and_keeps_the_bits(ahead):
    X = np.random.default_rng(0).normal(size=(7 * B + 13, D))
    n_blocks = 8
    want = [X[a:a + B].sum(axis=0) for a in range(0, X.shape[0], B)]
    for func in (block_map, block_tree):
        src = CountedRows(X, 2 * B, ahead)
        seen = []
        group = BlockGroup.split(Shard(X=src, index=0, offset=0), B)
        got = func(group, _sum_after_next_read, (src, n_blocks, seen))
        if func is block_tree:
            got, want_t = tree_total(got, n_blocks), tree_total(
                block_tree(BlockGroup.split(Shard(X=X, index=0, offset=0), B),
                           lambda s: s.X.sum(axis=0), ()), n_blocks)
            assert_array_equal(got, want_t)
        else:
            for g, w in zip(got, want):
                assert_array_equal(g, w)
        assert src.reads == list(range(2 * B, X.shape[0], B))    # each streamed block once
        # the block computed and, with read-ahead, the next one: never more
        assert src.peak == (2 if ahead else 1)
        assert seen == [2 if ahead else 1] * 5, seen     # the next block was read meanwhile
