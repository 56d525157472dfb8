"""The controller seam on real MPI engines: placement, reductions, errors."""
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import ipem
from ipem.parallel import add_stats, pack_stats, unpack_stats, ENGINE_NAMESPACE
from tests.helpers import blobs


def _shard_stats(shard, scale):
    x = shard.X.astype(np.float64)
    return {"n": float(x.shape[0]), "s": scale * x.sum(axis=0), "ss": (x.T @ x, x.shape[0])}


def _fail_on(shard, first_row, message):
    if shard.offset == first_row:  # a shard, or with blocks the first block of a place
        raise ValueError(message)
    return np.ones(3)


def _fail_everywhere(shard):
    raise RuntimeError(f"boom on shard {shard.index}")


def _engine_keys():
    from ipem.parallel import engine_store
    return sorted(engine_store())


def test_pack_unpack_roundtrip():
    stats = {"a": np.arange(6.0).reshape(2, 3), "b": (1.5, np.ones(2)), "c": [2.0]}
    flat, spec = pack_stats(stats)
    assert flat.dtype == np.float64 and flat.size == 6 + 1 + 2 + 1
    back = unpack_stats(flat, spec)
    assert_array_equal(back["a"], stats["a"])
    assert back["b"][0] == 1.5 and isinstance(back["b"], tuple) and back["c"] == [2.0]
    twice = add_stats(stats, stats)
    assert_array_equal(twice["a"], 2 * stats["a"])


@pytest.mark.parametrize("block_size", [None, "auto"], ids=["contiguous", "blocks"])
@pytest.mark.parametrize("n_shards", [1, 2, 3, 7], ids=lambda n: f"{n}shards")
def test_local_split_and_reduce(n_shards, block_size):
    X = blobs(100)
    ctrl = ipem.LocalController(n_shards, block_size=block_size)
    data = ctrl.distribute(X)
    assert data.place_sizes.sum() == 100 and len(data.place_sizes) == n_shards
    if block_size is None:
        assert data.shard_sizes.max() - data.shard_sizes.min() <= 1
    else:  # whole blocks of auto_block_size(100) = 16 rows: 7 blocks, as even as they go
        assert data.block_size == 16 and list(data.shard_sizes) == [16] * 6 + [4]
        blocks_each = -(-data.place_sizes // 16)
        assert blocks_each.sum() == 7 and blocks_each.max() - blocks_each.min() <= 1
    out = ctrl.reduce(_shard_stats, data, 2.0)
    assert out["n"] == 100
    assert_allclose(out["s"], 2 * X.sum(axis=0), rtol=1e-12)
    assert_allclose(out["ss"][0], X.T @ X, rtol=1e-12)
    assert_allclose(data.mean, X.mean(axis=0), rtol=1e-12)
    assert_allclose(data.var, X.var(axis=0), rtol=1e-12)
    rows = [0, 99, 50, 3]
    assert_array_equal(ctrl.take(data, rows), X[rows])
    data.free()
    with pytest.raises(ValueError, match="not .*distributed"):
        ctrl.reduce(_shard_stats, data, 1.0)


def test_shards_live_on_engines_by_rank(dv_client, mpi_client):
    X = blobs(101)
    data = dv_client.distribute(X, key="inspect_me")
    try:
        # what %px sees: the documented dict in each engine namespace
        view = mpi_client[dv_client.engine_ids]
        view.execute(f"_shapes = {{k: (v.index, v.X.shape) for k, v in "
                     f"{ENGINE_NAMESPACE}.items()}}", block=True)
        for rank, got in enumerate(view.pull("_shapes", block=True)):
            assert got["inspect_me"] == (rank, (int(data.place_sizes[rank]), 3))
        assert dv_client.ranks == [0, 1]
        local = ipem.LocalController(2).distribute(X)
        assert_array_equal(dv_client.reduce(_shard_stats, data, 1.0)["ss"][0],
                           local.controller.reduce(_shard_stats, local, 1.0)["ss"][0])
    finally:
        data.free()
    assert "inspect_me" not in mpi_client[dv_client.engine_ids[0]].apply_sync(_engine_keys)


def test_allreduce_equals_client_sum(dv_client, dv_allreduce):
    X = blobs(300, d=4)
    a = dv_client.distribute(X)
    b = dv_allreduce.distribute(X)
    try:
        ra = dv_client.reduce(_shard_stats, a, 3.0)
        rb = dv_allreduce.reduce(_shard_stats, b, 3.0)
        assert_array_equal(ra["s"], rb["s"])
        assert_array_equal(ra["ss"][0], rb["ss"][0])
        assert rb["ss"][1] == 300
    finally:
        a.free()
        b.free()


@pytest.mark.parametrize("which", [0, 1], ids=["rank0-fails", "rank1-fails"])
def test_engine_error_reaches_caller_and_cluster_survives(dv, which):
    X = blobs(60)
    data = dv.distribute(X)   # in blocks of 16 rows (the default), 2 on each engine
    first = int(np.concatenate([[0], np.cumsum(data.place_sizes)])[which])
    try:
        with pytest.raises(ipem.EngineValueError, match=f"rank {which}.*bad shard {which}"):
            dv.reduce(_fail_on, data, first, f"bad shard {which}")
        with pytest.raises(ipem.EngineError, match="boom on shard"):
            dv.reduce(_fail_everywhere, data)
        # the same engines still work, with both reductions
        assert_allclose(dv.reduce(_shard_stats, data, 1.0)["s"], X.sum(axis=0), rtol=1e-12)
        gm = ipem.GaussianMixture(3, covariance_type="diag", random_state=0, controller=dv)
        gm.fit(X)
        assert gm.converged_
    finally:
        data.free()


def test_as_controller():
    assert isinstance(ipem.as_controller(None), ipem.LocalController)
    assert ipem.as_controller(3).n_shards == 3
    with pytest.raises(ValueError, match="controller="):
        ipem.as_controller("engines")
    with pytest.raises(ValueError, match="n_shards"):
        ipem.LocalController(0)


def test_map_tasks_local_and_engines(dv_client):
    items = list(range(7))
    assert ipem.LocalController().map_tasks(pow, items, 2) == [i * i for i in items]
    assert dv_client.map_tasks(pow, items, 2) == [i * i for i in items]
    with pytest.raises(ipem.EngineError, match="task 0"):
        dv_client.map_tasks(pow, ["x"], 2)


class _Odd(Exception):
    """Not a ValueError: must come back as EngineError, not EngineValueError."""


def _raise_kind(shard, kind):
    if shard.index == 1:
        raise {"value": ValueError, "key": KeyError, "odd": _Odd}[kind](f"shard says {kind}")
    return np.zeros(1)


@pytest.mark.parametrize("kind, cls, value_like", [("value", ipem.EngineValueError, True),
                                                    ("key", ipem.EngineValueError, True),
                                                    ("odd", ipem.EngineError, False)])
def test_same_error_locally_and_on_engines(kind, cls, value_like, dv):
    """Both controllers run the same engine-side wrapper: same class, same message body."""
    X = blobs(40)
    messages = []
    for ctrl in (ipem.LocalController(2), dv):
        data = ctrl.distribute(X)
        try:
            with pytest.raises(cls) as info:
                ctrl.reduce(_raise_kind, data, kind)
            assert isinstance(info.value, ValueError) == value_like
            (failure,) = info.value.failures
            assert failure.index == 1 and failure.is_value == value_like
            messages.append(str(info.value).split(": ", 1)[1])
            assert str(info.value).startswith("shard 1")
        finally:
            data.free()
    assert messages[0] == messages[1]


def test_controller_times_every_shard_call(dv_client):
    X = blobs(300, d=4)
    for ctrl in (ipem.LocalController(2), dv_client):
        gm = ipem.GaussianMixture(2, covariance_type="diag", random_state=0, max_iter=3,
                                  tol=0, controller=ctrl)
        with pytest.warns(Warning):
            gm.fit(X)
        for r in gm.history_:
            # per place: whole blocks of auto_block_size(300) = 16 rows, 9 and 10
            assert r.info["shard_frames"] == [144, 156]
            assert len(r.info["shard_time"]) == 2 and min(r.info["shard_time"]) > 0
        stats, times = ctrl.reduce_timed(_shard_stats, ctrl.distribute(X), 1.0)
        assert times.shape == (2,)
        assert_allclose(stats["s"], X.sum(axis=0))


def _big_stats(shard, n_values):
    return {"big": np.full(n_values, float(shard.index) + 1.0)}


def test_large_results_are_gathered(dv_client):
    """Replies of tens of MB: the client has them before their AsyncResults are
    unpacked and ready; the gather must wait for that, not fail with 'Result not ready'."""
    data = dv_client.distribute(np.zeros((64, 2)))  # 4 blocks of 16 rows, 2 per engine
    try:
        n = 5_000_000   # 40 MB per block and per engine's sum of its blocks
        for _ in range(3):
            total = dv_client.reduce(_big_stats, data, n)
            assert total["big"].shape == (n,)
            assert total["big"][0] == sum(range(1, data.n_shards + 1))
    finally:
        data.free()


def _split_sums(stats, place, n_places):
    d = stats["s"].shape[0]
    lo, hi = d * place // n_places, d * (place + 1) // n_places
    return {"n": stats["n"], "s": stats["s"][lo:hi], "ss": (stats["ss"][0][lo:hi], 0)}


def _applied_where(part, place, n_places, extra):
    import os
    if isinstance(extra, str) and extra == f"fail on {place}":
        raise ValueError(f"bad part {place}")
    return os.getpid(), part, extra


def _reply_pid(result):
    return result[0]


def _join_sums(results):
    return np.concatenate([part["s"] for _, part, _ in results])


def test_reduce_on_places_applies_each_part_where_the_shards_are(dv_client):
    """Each engine gets its part of the sum (the bits of ``reduce``'s), applies the
    function there (its own process, not the client's), and keeps the joined results."""
    import os
    X = blobs(301, d=5)
    data = dv_client.distribute(X)
    local = ipem.LocalController(2).distribute(X)
    kw = dict(split=_split_sums, apply=_applied_where, keep=_join_sums)
    try:
        total = dv_client.reduce(_shard_stats, data, 2.0)
        out = dv_client.reduce_on_places(_shard_stats, data, 2.0, apply_args=(None,), **kw)
        assert [pid for pid, _, _ in out.results] == dv_client.pids != [os.getpid()] * 2
        ref = local.controller.reduce_on_places(_shard_stats, local, 2.0, apply_args=(None,),
                                                **kw)
        assert [pid for pid, _, _ in ref.results] == [os.getpid()] * 2
        for p, ((_, part, _), (_, mine, _)) in enumerate(zip(out.results, ref.results)):
            want = _split_sums(total, p, 2)
            for got in (part, mine):
                assert got["n"] == want["n"]
                assert_array_equal(got["s"], want["s"])
                assert_array_equal(got["ss"][0], want["ss"][0])
        assert_array_equal(out.kept, total["s"])
        assert all("broadcast ndarray" in keys.get(out.handle.key, "")
                   for keys in dv_client.stored().values())
        # the kept value is looked up where the next call runs
        again = dv_client.reduce_on_places(_shard_stats, data, 2.0, apply_args=(out.handle,),
                                           split=_split_sums, apply=_applied_where)
        for _, _, extra in again.results:
            assert_array_equal(extra, total["s"])
        replied = dv_client.reduce_on_places(_shard_stats, data, 2.0, apply_args=(None,),
                                             split=_split_sums, apply=_applied_where,
                                             reply=_reply_pid)
        assert replied.results == dv_client.pids
        out.handle.free()
        before = dv_client.stored()
        with pytest.raises(ipem.EngineValueError, match="rank 1.*bad part 1"):
            dv_client.reduce_on_places(_shard_stats, data, 2.0, apply_args=("fail on 1",),
                                       **kw)
        assert dv_client.stored() == before  # nothing kept from the failed call
    finally:
        data.free()
        local.free()


def _marked_stats(shard, scale, how):
    """_shard_stats, with ``how`` on shard 1 only (what :func:`_split_badly` breaks there)."""
    return dict(_shard_stats(shard, scale), bad=how if shard.index == 1 else None)


def _split_badly(stats, place, n_places):
    """_split_sums; the marked shard sends place 0 a part that cannot travel ("pickle")
    or cannot be summed with the others' ("sum")."""
    part = _split_sums(stats, place, n_places)
    if place == 0 and stats["bad"] == "pickle":
        import threading
        part["s"] = threading.Lock()
    elif place == 0 and stats["bad"] == "sum":
        part["s"] = np.zeros(part["s"].shape[0] + 3)
    return part


def _applied_badly(part, place, n_places, how):
    """_applied_where; place 1 returns a result that cannot travel when ``how`` says so."""
    if place == 1 and how == "result":
        import threading
        return threading.Lock()
    return _applied_where(part, place, n_places, None)


def test_reduce_on_places_error_on_one_engine_is_agreed_on(dv_client):
    """A part or a result that fails on one engine only (pickling it there, summing the
    parts on another place) comes back as that engine's error, not as a hang until the
    deadline (EngineLost), and the next call works on the same engines."""
    X = blobs(301, d=5)
    blocks, dv_client.block_size = dv_client.block_size, None  # shard i on rank i, marked
    try:
        data = dv_client.distribute(X)
    finally:
        dv_client.block_size = blocks
    deadline, dv_client.deadline = dv_client.deadline, 30.0  # a hang fails in 30 s, not 1 h
    kw = dict(split=_split_badly, apply=_applied_badly, keep=_join_sums)
    cases = [("pickle", None, r"^shard 1 [^;]*rank 1\): TypeError: cannot pickle '_thread"),
             ("sum", None, r"^shard 0 [^;]*rank 0\): ValueError: operands could not be broad"),
             (None, "result", r"^shard 1 [^;]*rank 1\): TypeError: cannot pickle '_thread")]
    try:
        before = dv_client.stored()
        for bad, result, match in cases:
            with pytest.raises(ipem.EngineError, match=match) as info:
                dv_client.reduce_on_places(_marked_stats, data, 2.0, bad,
                                           apply_args=(result,), **kw)
            assert not isinstance(info.value, ipem.EngineLost)
            assert dv_client.stored() == before
            out = dv_client.reduce_on_places(_marked_stats, data, 2.0, None,
                                             apply_args=(None,), **kw)
            assert [pid for pid, _, _ in out.results] == dv_client.pids
            out.handle.free()
    finally:
        dv_client.deadline = deadline
        data.free()
