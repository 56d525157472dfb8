"""UBM training: engine-side file loading, splitting, floors, dead components, checkpoints."""
import os

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import ipem
from ipem import io as features
from ipem.mixture.ubm import UBMTrainer, load_model, split_components


def speechlike(n=6000, d=6, k=12, seed=0, offset=0.0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, size=(k, d))
    scales = rng.uniform(0.3, 1.5, size=(k, d))
    lab = rng.integers(0, k, size=n)
    return (offset + centers[lab] + rng.normal(size=(n, d)) * scales[lab]).astype(np.float32)


def write_files(tmp_path, X, fmt, n_files=7):
    """Split frames into files of unequal length; returns the list to give the trainer."""
    cuts = np.sort(np.random.default_rng(1).choice(np.arange(50, len(X) - 50), n_files - 1,
                                                   replace=False))
    parts = np.split(X, cuts)
    if fmt == "kaldi":
        utt = {f"utt{i:02d}": p for i, p in enumerate(parts)}
        features.write_kaldi(str(tmp_path / "feats.ark"), str(tmp_path / "feats.scp"), utt)
        return str(tmp_path / "feats.scp"), parts
    ext = {"htk": "htk", "npy": "npy", "h5": "h5"}[fmt]
    paths = []
    for i, p in enumerate(parts):
        path = str(tmp_path / f"utt{i:02d}.{ext}")
        features.write(path, p, fmt)
        paths.append(path)
    return paths, parts


SCHEDULE = dict(n_components=8, stage_iter=4, final_iter=8, tol=1e-6, random_state=0)


@pytest.mark.parametrize("fmt", ["htk", "kaldi", "npy", "h5"])
def test_engine_side_loading_equals_client_loading(fmt, tmp_path, dv_client, backend):
    X = speechlike()
    sources, parts = write_files(tmp_path, X, fmt)
    # engines read their own files (float64 so sums are comparable across layouts)
    remote = UBMTrainer(controller=dv_client, dtype=np.float64, backend=backend,
                        **SCHEDULE).fit(sources)
    # the same files read in-process with the same assignment: bit-identical
    local_files = UBMTrainer(controller=ipem.LocalController(2), dtype=np.float64,
                             backend=backend, **SCHEDULE).fit(sources)
    assert_array_equal(remote.means_, local_files.means_)
    assert_array_equal(remote.covariances_, local_files.covariances_)
    # the frames loaded on the client as one array: the same model
    client = UBMTrainer(controller=1, backend=backend, **SCHEDULE).fit(
        np.concatenate(parts).astype(np.float64))
    assert_allclose(remote.means_, client.means_, rtol=1e-9, atol=1e-9)
    assert_allclose(remote.covariances_, client.covariances_, rtol=1e-9)
    assert_allclose(remote.weights_, client.weights_, rtol=1e-9)
    # telemetry: per-engine frame counts follow the balanced assignment
    rec = remote.history_[-1]
    assert sum(rec.info["shard_frames"]) == len(X)
    assert min(rec.info["shard_frames"]) > 0.3 * len(X)
    assert all(t > 0 for t in rec.info["shard_time"])


def test_splitting_schedule_and_telemetry(backend):
    X = speechlike(seed=2)
    records = []
    ubm = UBMTrainer(12, stage_iter=3, final_iter=6, tol=0.0, random_state=0, controller=2,
                     backend=backend, callbacks=records.append).fit(X)
    stages = [r.stage for r in ubm.history_]
    assert stages == [1] * 3 + [2] * 3 + [4] * 3 + [8] * 3 + [12] * 6
    assert [r.iteration for r in records] == list(range(1, 19))
    assert ubm.means_.shape == (12, 6) and ubm.weights_.sum() == pytest.approx(1.0)
    # within a stage EM never decreases the likelihood (up to float32 rounding: the frames
    # are float32, and at a fixed point, e.g. K=1 after one iteration, only rounding moves)
    for a, b in zip(ubm.history_, ubm.history_[1:]):
        if a.stage == b.stage:
            assert b.objective >= a.objective - 1e-7 * abs(a.objective)
    assert ubm.history_[-1].objective > ubm.history_[0].objective + 1.0


def test_stage_stops_early_on_small_gain(backend):
    X = speechlike(seed=3)
    ubm = UBMTrainer(4, stage_iter=50, final_iter=50, tol=1e-2, random_state=0,
                     backend=backend).fit(X)
    per_stage = {k: sum(r.stage == k for r in ubm.history_) for k in (1, 2, 4)}
    assert per_stage[1] == 2            # one Gaussian: converged at once
    assert per_stage[2] < 50 and per_stage[4] < 50
    assert abs(ubm.history_[-1].change) < 1e-2


def test_split_components_by_hand():
    w = np.array([0.6, 0.4])
    m = np.array([[0.0, 0.0], [1.0, 1.0]])
    v = np.array([[1.0, 4.0], [9.0, 1.0]])
    w2, m2, v2 = split_components(w, m, v, [0, 1], epsilon=0.5)
    assert_allclose(w2, [0.3, 0.2, 0.3, 0.2])
    # component 0 splits along dimension 1 (variance 4, sigma 2): +-0.5*2
    assert_allclose(m2, [[0, -1], [-0.5, 1], [0, 1], [2.5, 1]])
    assert_array_equal(v2, np.vstack([v, v]))


def test_large_offset_float32_keeps_positive_variances(backend):
    rng = np.random.default_rng(4)
    n = 20000
    X = np.empty((n, 3), dtype=np.float32)
    X[:, 0] = 1e5 + rng.normal(0, 0.5, n)          # large offset, small spread
    X[:, 1] = -3e4 + rng.normal(0, 2.0, n)
    X[:, 2] = rng.normal(0, 1.0, n)
    ubm = UBMTrainer(4, stage_iter=5, final_iter=10, variance_floor=0.0, min_occupancy=0,
                     min_weight=0, random_state=0, backend=backend).fit(X)
    assert np.all(ubm.covariances_ > 0)
    truth = X.astype(np.float64).var(axis=0)
    pooled = (ubm.weights_[:, None] * (ubm.covariances_ + ubm.means_ ** 2)).sum(0) - \
        ((ubm.weights_[:, None] * ubm.means_).sum(0)) ** 2
    assert_allclose(pooled, truth, rtol=0.05)
    assert all(r.info["n_floored"] == 0 for r in ubm.history_)


@pytest.mark.parametrize("mode, value", [("relative", 0.5), ("absolute", 0.8)])
def test_variance_floor_applied_and_counted(mode, value, backend):
    X = speechlike(seed=5)
    ubm = UBMTrainer(8, stage_iter=3, final_iter=5, variance_floor=value, floor_mode=mode,
                     random_state=0, backend=backend).fit(X)
    floor = value * X.astype(np.float64).var(axis=0) if mode == "relative" else value
    assert np.all(ubm.covariances_ >= floor * (1 - 1e-12))
    assert_allclose(ubm.variance_floor_, np.broadcast_to(floor, (6,)))
    counts = [r.info["n_floored"] for r in ubm.history_]
    assert max(counts) > 0
    assert counts[-1] == int(np.sum(np.isclose(ubm.covariances_, floor, rtol=1e-12)))


@pytest.mark.parametrize("policy", ["resplit", "remove"])
def test_dead_components(policy, backend):
    rng = np.random.default_rng(6)
    X = np.vstack([rng.normal(-5, 1, size=(3000, 2)), rng.normal(5, 1, size=(3000, 2)),
                   rng.normal(60, 0.1, size=(6, 2))]).astype(np.float32)
    ubm = UBMTrainer(4, init="kmeans", min_occupancy=20, dead_policy=policy,
                     final_iter=5, tol=0.0, random_state=0, backend=backend).fit(X)
    dead = [r.info["dead"] for r in ubm.history_]
    assert any(dead), dead
    assert all(r.info["dead_policy"] == policy for r in ubm.history_)
    if policy == "remove":
        assert ubm.weights_.size < 4
    else:
        assert ubm.weights_.size == 4
    # whatever the policy, no component of the final model is dead
    assert np.all(ubm.weights_ * len(X) >= 20), ubm.weights_ * len(X)
    assert ubm.weights_.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("stop_at, stage_index, stage_done", [(8, 1, True), (10, 2, False)],
                         ids=["between-stages", "mid-stage"])
def test_checkpoint_restart_gives_same_model(stop_at, stage_index, stage_done, tmp_path,
                                             dv_client, backend):
    X = speechlike(seed=7)
    ck = tmp_path / "ubm.ckpt.npz"
    kw = dict(n_components=8, stage_iter=4, final_iter=6, tol=0.0, random_state=0,
              backend=backend, controller=dv_client)
    full = UBMTrainer(**kw).fit(X)

    class Interrupted(Exception):
        pass

    def interrupt(record):
        if record.iteration == stop_at:
            raise Interrupted

    with pytest.raises(Interrupted):
        UBMTrainer(checkpoint=str(ck), callbacks=interrupt, **kw).fit(X)
    z = load_model(ck)                        # plain arrays, no pickle needed
    # the checkpoint is written before the callbacks: the interrupted iteration is kept
    assert len(z["history"]) == stop_at
    assert int(z["stage_index"]) == stage_index and bool(z["stage_done"]) == stage_done
    # no temporary file of the atomic writer (".<name>.<hex>.tmp") is left behind
    assert sorted(os.listdir(tmp_path)) == ["ubm.ckpt.npz"]
    resumed = UBMTrainer(checkpoint=str(ck), **kw).fit(X)
    assert resumed.resumed_from_ == stop_at
    assert_array_equal(resumed.means_, full.means_)
    assert_array_equal(resumed.covariances_, full.covariances_)
    assert_array_equal(resumed.weights_, full.weights_)
    assert [r.objective for r in resumed.history_] == [r.objective for r in full.history_]
    # a finished checkpoint resumes to the finished model without training
    again = UBMTrainer(checkpoint=str(ck), **kw).fit(X)
    assert_array_equal(again.means_, full.means_)
    assert again.n_iter_ == full.n_iter_ and again.resumed_from_ == full.n_iter_
    with pytest.raises(ValueError, match="written for other data"):
        UBMTrainer(checkpoint=str(ck), **kw).fit(X[:-10])


def test_kmeans_start_and_save_load(tmp_path, backend):
    X = speechlike(seed=8)
    ubm = UBMTrainer(8, init="kmeans", init_components=4, stage_iter=3, final_iter=5,
                     random_state=0, backend=backend).fit(X)
    assert [r.stage for r in ubm.history_][0] == 4 and ubm.history_[-1].stage == 8
    path = tmp_path / "ubm.npz"
    ubm.save(path)
    back = UBMTrainer.load(path)
    assert_array_equal(back.means_, ubm.means_)
    assert_allclose(back.score_samples(X[:100]), ubm.score_samples(X[:100]))
    assert len(back.history_) == len(ubm.history_)
    gm = ubm.to_gaussian_mixture()
    assert gm.predict(X[:10]).shape == (10,)


def _engine_keys():
    from ipem.parallel import engine_store
    return sorted(engine_store())


def test_malformed_files_rejected_before_training(tmp_path, dv_client, mpi_client):
    X = speechlike(600)
    paths, _ = write_files(tmp_path, X, "htk", n_files=3)
    with open(paths[1], "r+b") as fh:        # truncate the second file
        fh.truncate(os.path.getsize(paths[1]) - 10)
    keys_before = mpi_client[:].apply_sync(_engine_keys)
    with pytest.raises(ValueError, match=r"utt01\.htk.*truncated"):
        UBMTrainer(4, controller=dv_client).fit(paths)
    assert mpi_client[:].apply_sync(_engine_keys) == keys_before   # no shard left behind
    (tmp_path / "empty.npy").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.npy"):
        UBMTrainer(4, controller=dv_client).fit([paths[0], str(tmp_path / "empty.npy")])
    with pytest.raises(ValueError, match="fewer than the 4096 components"):
        UBMTrainer(4096, controller=dv_client).fit([paths[0]])
    # a NaN inside a file is only found when the engine reads it: the error names the
    # file, and the shards the other engine had already read are freed
    bad = X[:200].copy()
    bad[57, 3] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(ipem.EngineValueError, match=r"nan\.npy"):
        UBMTrainer(4, controller=dv_client).fit([paths[0], paths[2], str(tmp_path / "nan.npy")])
    assert mpi_client[:].apply_sync(_engine_keys) == keys_before
    assert UBMTrainer(2, final_iter=2, controller=dv_client).fit(paths[:1]).weights_.size == 2


def test_bad_ubm_parameters():
    X = speechlike(200)
    for kw, pattern in [({"init": "random"}, "init='random'"),
                        ({"floor_mode": "kaldi"}, "floor_mode='kaldi'"),
                        ({"dead_policy": "ignore"}, "dead_policy='ignore'"),
                        ({"init": "kmeans", "init_components": 16}, "larger than n_components"),
                        ({"split_epsilon": 0.0}, "split_epsilon must be"),
                        ({"dtype": np.int32}, "dtype=")]:
        with pytest.raises(ValueError, match=pattern):
            UBMTrainer(8, **kw).fit(X)


def test_fewer_files_than_shards(tmp_path, dv_client, backend):
    X = speechlike(3000)
    one = str(tmp_path / "only.npy")
    features.write(one, X, "npy")
    kw = dict(n_components=4, stage_iter=2, final_iter=3, dtype=np.float64, backend=backend,
              random_state=0)
    # in blocks (the default) each engine reads its part of the one file: the same bits
    remote = UBMTrainer(controller=dv_client, **kw).fit([one])
    assert remote.history_[-1].info["shard_frames"] == [1536, 1464]   # 16 + 15 blocks of 96
    local = UBMTrainer(controller=ipem.LocalController(3), **kw).fit([one])
    assert_array_equal(local.means_, remote.means_)
    # whole files per place (block_size=None): one engine reads it, the other has nothing
    blocks, dv_client.block_size = dv_client.block_size, None
    try:
        remote = UBMTrainer(controller=dv_client, **kw).fit([one])
    finally:
        dv_client.block_size = blocks
    assert remote.history_[-1].info["shard_frames"] == [3000, 0]
    assert_allclose(local.means_, remote.means_, rtol=1e-12)


def test_constant_column_is_named():
    X = speechlike(500)
    X[:, 2] = 5.0
    with pytest.raises(ValueError, match=r"column\(s\) \[2\] are constant"):
        UBMTrainer(4).fit(X)
    ok = UBMTrainer(4, floor_mode="absolute", variance_floor=1e-3, stage_iter=2,
                    final_iter=2).fit(X)
    assert np.all(np.isfinite(ok.means_)) and np.all(ok.covariances_[:, 2] >= 1e-3)


def test_checkpoint_refuses_other_settings_and_model_files(tmp_path):
    X = speechlike(2000)
    ck = str(tmp_path / "ck.npz")
    first = UBMTrainer(4, stage_iter=2, final_iter=3, checkpoint=ck, random_state=0).fit(X)
    with pytest.raises(ValueError, match=r"other settings: final_iter=30 \(checkpoint: 3\)"):
        UBMTrainer(4, stage_iter=2, final_iter=30, checkpoint=ck, random_state=0).fit(X)
    fresh = UBMTrainer(4, stage_iter=2, final_iter=30, checkpoint=ck, resume=False,
                       random_state=0).fit(X)
    assert fresh.n_iter_ > first.n_iter_
    model = str(tmp_path / "model.npz")
    first.save(model)
    with pytest.raises(ValueError, match="not a UBM training checkpoint"):
        UBMTrainer(4, checkpoint=model).fit(X)


def test_split_to_reaches_the_stage_size_after_removals():
    t = UBMTrainer(8, split_epsilon=0.2)
    rng = np.random.default_rng(0)
    params = {"weights": np.array([0.5, 0.3, 0.2]), "means": rng.normal(size=(3, 2)),
              "covariances": np.ones((3, 2))}
    out = t.grow(params, 8)
    assert out["weights"].shape == (8,) and out["means"].shape == (8, 2)
    assert out["weights"].sum() == pytest.approx(1.0)
