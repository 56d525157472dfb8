"""The same model on any number of places: datasets cut into fixed blocks (``block_size``).

Statistics are computed per block and summed along a fixed tree over block
numbers, so 1 or 3 local shards and 2 MPI engines (either reduction) give the
same bits, and a checkpoint resumes on another number of places with the
undisturbed model.  Without blocks (``block_size=None``) these comparisons
differ in the last bits.  Blocks are the default (``block_size="auto"``).
"""
import numpy as np
import pytest
from numpy.testing import assert_array_equal

import ipem
from ipem.ivector import TotalVariability
from ipem.mixture.ubm import UBMTrainer
from ipem.parallel import LocalController
from ipem.parallel.engine import block_tree, tree_total
from ipem.parallel.data import BlockGroup, Shard

from tests.helpers import blobs

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

#: rows per block in these tests (small data: several blocks per place)
B = 128
#: utterances per block (total variability: one row per utterance)
B_UTT = 32


@pytest.fixture
def blocked_dv(dv):
    """The session engines (both reductions), cutting datasets into blocks of B rows."""
    before, dv.block_size = dv.block_size, B
    try:
        yield dv
    finally:
        dv.block_size = before


def controllers(dv):
    return {"local1": LocalController(1, blas_threads=1, block_size=B),
            "local3": LocalController(3, blas_threads=1, block_size=B), "engines": dv}


def check_same(models, attrs):
    ref_name, ref = next(iter(models.items()))
    for name, m in models.items():
        for a in attrs:
            assert_array_equal(getattr(m, a), getattr(ref, a), err_msg=f"{a}: {name} vs {ref_name}")


def test_tree_sum_does_not_depend_on_the_places():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1000, 3)) * 10.0 ** rng.integers(-8, 8, size=(1000, 1))
    n_blocks = -(-len(X) // 64)

    def total(cuts):
        nodes = []
        for i, (a, b) in enumerate(zip(cuts[:-1], cuts[1:])):
            group = BlockGroup.split(Shard(X=X[a:b], index=i, offset=a), 64)
            nodes += block_tree(group, lambda s: s.X.sum(axis=0), ())
        return tree_total(nodes, n_blocks)

    one = total([0, 1000])
    for cuts in ([0, 512, 1000], [0, 64, 128, 960, 1000], [0, 0, 640, 1000, 1000]):
        assert_array_equal(total(cuts), one)
    # the tree, not the left-to-right sum over blocks
    assert not np.array_equal(one, np.sum([X[a:a + 64].sum(axis=0)
                                           for a in range(0, 1000, 64)], axis=0))
    with pytest.raises(ValueError, match="not on a boundary"):
        BlockGroup.split(Shard(X=X[10:], index=0, offset=10), 64)


@pytest.mark.parametrize("model", ["kmeans", "full", "diag", "tied", "spherical"])
def test_kmeans_and_gmm_on_1_3_and_2_engines(model, blocked_dv, backend):
    X = blobs(n=2500, d=4, k=4, seed=3)
    if model == "kmeans":
        def est(c):
            return ipem.KMeans(4, n_init=1, random_state=0, backend=backend, controller=c)
        attrs = ["cluster_centers_", "inertia_"]
    else:
        init = {"full": "kmeans", "diag": "random", "tied": "k-means++",
                "spherical": "kmeans"}[model]

        def est(c):
            return ipem.GaussianMixture(3, covariance_type=model, max_iter=15, tol=0,
                                        random_state=0, backend=backend, init_params=init,
                                        controller=c)
        attrs = ["means_", "covariances_", "weights_"]
    check_same({n: est(c).fit(X) for n, c in controllers(blocked_dv).items()}, attrs)


def test_auto_block_size_depends_on_the_rows_only():
    from ipem.parallel import auto_block_size, rows_per_block
    assert [auto_block_size(n) for n in (1, 100, 200_000, 524_288, 10 ** 8)] == \
        [16, 16, 6256, 16384, 16384]
    for n in (100, 5000, 200_000, 3_000_000):
        sizes = {LocalController(s).rows_per_block(n) for s in (1, 2, 3, 16)}
        assert sizes == {auto_block_size(n)}
        # at least about 32 blocks: a small dataset still spreads over the places
        assert -(-n // auto_block_size(n)) >= min(32, -(-n // 16))
    assert LocalController(2).rows_per_block(10_000, "utterances") is None
    assert LocalController(2, block_size=7).rows_per_block(10_000, "utterances") == 7
    assert LocalController(2, block_size=None).rows_per_block(10_000) is None
    assert rows_per_block("mpi:2", 10_000) is None
    with pytest.raises(ipem.errors.ParameterError, match="block_size"):
        LocalController(1, block_size="big")


def test_default_controllers_give_the_same_model_on_any_count(dv, backend, tmp_path):
    """No ``block_size`` given anywhere: one and three local shards and the session's
    two engines fit the same bits (k-means, a diagonal GMM, the UBM from files)."""
    assert dv.block_size == "auto"
    X = blobs(n=3000, d=4, k=4, seed=6)
    ctrls = {"local1": LocalController(1, blas_threads=1),
             "local3": LocalController(3, blas_threads=1), "engines": dv}
    km = {n: ipem.KMeans(4, n_init=1, random_state=0, backend=backend, controller=c).fit(X)
          for n, c in ctrls.items()}
    check_same(km, ["cluster_centers_", "inertia_"])
    gmm = {n: ipem.GaussianMixture(3, covariance_type="diag", max_iter=12, tol=0,
                                   random_state=0, backend=backend, controller=c).fit(X)
           for n, c in ctrls.items()}
    check_same(gmm, ["means_", "covariances_", "weights_"])
    files = write_htk(tmp_path, X.astype(np.float32))
    ubm = {n: UBMTrainer(n_components=4, stage_iter=2, final_iter=3, tol=0.0, random_state=0,
                         backend=backend, controller=c).fit(files)
           for n, c in ctrls.items()}
    check_same(ubm, ["means_", "covariances_", "weights_"])


def test_kernels_prepare_the_same_parameters_once_per_place():
    from ipem.kernels import same_parameters
    from ipem.kernels._reuse import prepared
    made = []

    def make(tag):
        return lambda: made.append(tag) or len(made)
    a, b = np.zeros(3), np.zeros(3)
    assert prepared("x", make("a"), a) == 1 and prepared("x", make("a"), a) == 2  # no block
    with same_parameters():
        assert prepared("x", make("a"), a) == 3
        assert prepared("x", make("a"), a) == 3      # the same object: made once
        assert prepared("x", make("b"), b) == 4      # an equal but other object: made again
        assert prepared("y", make("a"), a) == 5      # another value of the same object
        assert prepared("x", make("n"), a, None) == 6
    with same_parameters():
        assert prepared("x", make("a"), a) == 7      # a new block forgets the last
    assert made == ["a", "a", "a", "b", "a", "n", "a"]


def test_unpickled_parameters_are_prepared_once_per_place():
    """Parameters broadcast to engines arrive unpickled, with dtypes that are equal to
    float64 but other instances of it: the C wrappers still prepare them once per place
    (np.asarray with a dtype would give a new view per block, and a new preparation)."""
    import pickle

    from ipem.kernels import get_kernels, same_parameters
    from ipem.kernels._reuse import _CACHE
    kern = get_kernels("c")
    rng = np.random.default_rng(3)
    blocks = [rng.normal(size=(40, 4)).astype(np.float32) for _ in range(3)]
    k, d = 5, 4
    params = pickle.loads(pickle.dumps({
        "shift": np.zeros(d), "centers": rng.normal(size=(k, d)), "means": rng.normal(size=(k, d)),
        "prec": rng.uniform(0.5, 2, size=(k, d)), "logw": np.log(np.full(k, 1 / k)),
        "chol": np.broadcast_to(np.eye(d), (k, d, d)).copy()}))
    assert params["centers"].dtype is not np.dtype(np.float64)   # what engines receive
    bounds = [kern.new_kmeans_bounds(len(X)) for X in blocks]
    for _ in range(2):  # the second pass has the first pass's centres in its bounds
        with same_parameters():
            for X, b in zip(blocks, bounds):
                kern.kmeans_step_bounded(X, params["shift"], params["centers"],
                                         np.full(len(X), -1), np.zeros(len(X)), b)
                kern.kmeans_step(X, params["shift"], params["centers"], np.zeros(len(X), np.int64),
                                 np.zeros(len(X)))
                kern.gmm_diag_step(X, params["shift"], params["means"], params["prec"],
                                   params["logw"])
                kern.gmm_full_step(X, params["shift"], params["means"], params["chol"],
                                   params["logw"])
            made = sorted(key[0] for key in _CACHE.get())
    assert made == ["gmm_diag_W_float32", "gmm_full_U_float32", "kmeans_centers_float32",
                    "kmeans_geometry"], made


def write_htk(tmp_path, X, n_files=9):
    cuts = np.sort(np.random.default_rng(1).choice(np.arange(30, len(X) - 30), n_files - 1,
                                                   replace=False))
    paths = []
    for i, part in enumerate(np.split(X, cuts)):
        paths.append(str(tmp_path / f"u{i:02d}.htk"))
        ipem.io.write(paths[-1], part, "htk")
    return paths


def test_ubm_from_files_and_checkpoint_on_another_count(blocked_dv, backend, tmp_path):
    rng = np.random.default_rng(5)
    X = (rng.normal(size=(3000, 5)) * rng.uniform(0.5, 2, 5)
         + rng.integers(0, 4, size=(3000, 1))).astype(np.float32)
    files = write_htk(tmp_path, X)
    kw = dict(n_components=4, stage_iter=2, final_iter=3, tol=0.0, random_state=0,
              dtype=np.float64, backend=backend)
    ctrls = controllers(blocked_dv)
    models = {n: UBMTrainer(controller=c, **kw).fit(files) for n, c in ctrls.items()}
    check_same(models, ["means_", "covariances_", "weights_"])
    full = models["local1"]

    # interrupted on the engines, resumed on 3 local shards: the undisturbed model
    class Interrupted(Exception):
        pass

    def interrupt(record):
        if record.iteration == 4:
            raise Interrupted
    ck = str(tmp_path / "ubm.ckpt.npz")
    with pytest.raises(Interrupted):
        UBMTrainer(controller=ctrls["engines"], checkpoint=ck, callbacks=interrupt,
                   **kw).fit(files)
    resumed = UBMTrainer(controller=ctrls["local3"], checkpoint=ck, **kw).fit(files)
    assert resumed.resumed_from_ == 4
    check_same({"resumed": resumed, "full": full}, ["means_", "covariances_", "weights_"])
    assert [r.objective for r in resumed.history_] == [r.objective for r in full.history_]


def test_total_variability_on_1_3_and_2_engines(blocked_dv, tmp_path):
    rng = np.random.default_rng(2)
    ubm = ipem.GaussianMixture(5, covariance_type="diag", random_state=0).fit(
        rng.normal(size=(2000, 4)) * 2.0)
    basis = rng.normal(size=(4, 2))
    files = []
    for i in range(300):
        u = (rng.normal(size=(int(rng.integers(20, 60)), 4)) * 2.0
             + basis @ rng.normal(size=2)).astype(np.float32)
        files.append(str(tmp_path / f"u{i:03d}.npy"))
        ipem.io.write(files[-1], u, "npy")
    ctrls = controllers(blocked_dv)
    for c in ctrls.values():
        c.block_size = B_UTT
    models = {n: TotalVariability(2, ubm=ubm, max_iter=3, random_state=0, controller=c).fit(files)
              for n, c in ctrls.items()}
    check_same(models, ["T_"])


@pytest.mark.once
def test_resharded_after_an_engine_loss_keeps_the_bits():
    """Two engines that are not MPI-coupled; one is killed mid-fit and its blocks move to
    the other: the model of one local shard, bit for bit."""
    import os
    import signal

    import ipyparallel as ipp
    from ipem.parallel import DirectViewController, EngineRecoveryWarning

    X = blobs(n=2000, d=3, k=3, seed=4)
    kw = dict(n_components=3, max_iter=6, tol=0, random_state=0)
    ref = ipem.GaussianMixture(**kw, controller=LocalController(1, block_size=B)).fit(X)
    loose = ipp.Cluster(n=2, log_level=40)  # two engines, each its own MPI world
    rc = loose.start_and_connect_sync()
    try:
        rc.wait_for_engines(2, timeout=120)
        ctrl = DirectViewController(rc[:], blas_threads=1, min_deadline=3.0, block_size=B)

        def kill(record):
            if record.iteration == 2:
                os.kill(ctrl.pids[0], signal.SIGKILL)
        with pytest.warns(EngineRecoveryWarning, match="resharded"):
            got = ipem.GaussianMixture(**kw, controller=ctrl, callbacks=[kill]).fit(X)
        assert len(ctrl.alive) == 1
        check_same({"resharded": got, "local1": ref}, ["means_", "covariances_", "weights_"])
        assert [r.objective for r in got.history_] == [r.objective for r in ref.history_]
    finally:
        rc.close()
        loose.stop_cluster_sync()
