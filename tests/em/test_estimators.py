"""KMeans and GaussianMixture: against scikit-learn, across controllers and shard layouts."""
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.cluster import KMeans as SKKMeans
from sklearn.mixture import GaussianMixture as SKGaussianMixture

import ipem
from tests.helpers import blobs

COV_TYPES = ["full", "tied", "diag", "spherical"]


def sk_init(X, k, cov_type, seed=1):
    """Initial parameters from a 2-iteration scikit-learn fit (deliberately not converged)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = SKGaussianMixture(k, covariance_type=cov_type, random_state=seed, max_iter=2).fit(X)
    return dict(weights_init=g.weights_, means_init=g.means_, precisions_init=g.precisions_)


def fitted_arrays(gm):
    return [gm.weights_, gm.means_, gm.covariances_, gm.precisions_cholesky_,
            np.asarray(gm.lower_bounds_)]


def rel_err(a, b):
    return np.max(np.abs(np.asarray(a) - np.asarray(b))) / max(np.max(np.abs(b)), 1e-300)


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_gmm_matches_sklearn(cov_type, backend):
    X = blobs(900, d=4, k=3, seed=3)
    init = sk_init(X, 3, cov_type)
    kw = dict(covariance_type=cov_type, tol=1e-9, max_iter=200, reg_covar=1e-6, **init)
    ref = SKGaussianMixture(3, **kw).fit(X)
    ours = ipem.GaussianMixture(3, backend=backend, controller=2, **kw).fit(X)
    assert ours.n_iter_ == ref.n_iter_ and ours.converged_ == ref.converged_
    for got, want in zip(fitted_arrays(ours), fitted_arrays(ref)):
        assert rel_err(got, want) < 1e-6
    assert abs(ours.lower_bound_ - ref.lower_bound_) < 1e-6 * abs(ref.lower_bound_)
    assert_allclose(ours.score_samples(X), ref.score_samples(X), rtol=1e-6)
    assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-6)
    assert_array_equal(ours.predict(X), ref.predict(X))
    assert_allclose(ours.score(X), ref.score(X), rtol=1e-6)
    assert_allclose(ours.bic(X), ref.bic(X), rtol=1e-6)


@pytest.mark.parametrize("cov_type", ["diag", "full"])
def test_gmm_matches_sklearn_on_engines(cov_type, dv, backend):
    X = blobs(900, d=4, k=3, seed=4)
    init = sk_init(X, 3, cov_type)
    kw = dict(covariance_type=cov_type, tol=1e-9, max_iter=200, **init)
    ref = SKGaussianMixture(3, **kw).fit(X)
    ours = ipem.GaussianMixture(3, backend=backend, controller=dv, **kw).fit(X)
    for got, want in zip(fitted_arrays(ours), fitted_arrays(ref)):
        assert rel_err(got, want) < 1e-6


def test_kmeans_matches_sklearn(backend):
    X = blobs(1200, d=5, k=4, seed=5)
    init = X[[0, 1, 2, 3]]
    ref = SKKMeans(4, init=init, n_init=1, algorithm="lloyd", tol=1e-4, max_iter=300).fit(X)
    for ctrl in (1, 3):
        ours = ipem.KMeans(4, init=init, backend=backend, controller=ctrl).fit(X)
        assert rel_err(ours.cluster_centers_, ref.cluster_centers_) < 1e-6
        assert abs(ours.inertia_ - ref.inertia_) < 1e-6 * ref.inertia_
        assert_array_equal(ours.labels_, ref.labels_)
        assert ours.n_iter_ == ref.n_iter_
        assert_array_equal(ours.predict(X), ref.predict(X))
        assert_allclose(ours.score(X), ref.score(X), rtol=1e-6)


@pytest.mark.parametrize("model", ["gmm-diag", "gmm-full", "kmeans"])
def test_local_and_engines_bit_identical(model, dv, backend):
    """Same shard layout (2 shards) -> bit-identical models, whatever the reduction."""
    X = blobs(800, d=4, k=3, seed=6)

    def make(ctrl):
        if model == "kmeans":
            return ipem.KMeans(3, random_state=0, backend=backend, controller=ctrl)
        return ipem.GaussianMixture(3, covariance_type=model[4:], random_state=0, tol=1e-8,
                                    backend=backend, controller=ctrl)
    local = make(ipem.LocalController(2)).fit(X)
    remote = make(dv).fit(X)
    if model == "kmeans":
        assert_array_equal(local.cluster_centers_, remote.cluster_centers_)
        assert local.inertia_ == remote.inertia_
        assert_array_equal(local.labels_, remote.labels_)
    else:
        for a, b in zip(fitted_arrays(local), fitted_arrays(remote)):
            assert_array_equal(a, b)
    assert local.n_iter_ == remote.n_iter_
    assert [r.objective for r in local.history_] == [r.objective for r in remote.history_]


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_shard_counts_agree(cov_type, backend):
    X = blobs(1000, d=3, k=4, seed=7)
    init = sk_init(X, 4, cov_type, seed=2)
    fits = [ipem.GaussianMixture(4, covariance_type=cov_type, tol=1e-10, max_iter=300,
                                 backend=backend, controller=n, **init).fit(X)
            for n in (1, 2, 3, 5)]
    for other in fits[1:]:
        assert other.n_iter_ == fits[0].n_iter_
        for a, b in zip(fitted_arrays(other), fitted_arrays(fits[0])):
            assert rel_err(a, b) < 1e-10


def test_kmeans_plusplus_layout_independent(backend):
    X = blobs(600, d=3, k=5, seed=8)
    a = ipem.KMeans(5, random_state=3, backend=backend, controller=1).fit(X)
    b = ipem.KMeans(5, random_state=3, backend=backend, controller=4).fit(X)
    assert_allclose(a.cluster_centers_, b.cluster_centers_, rtol=1e-10)
    # the seeding found all five blobs: inertia close to the within-blob variance
    ref = SKKMeans(5, n_init=10, random_state=0).fit(X)
    assert a.inertia_ <= 1.05 * ref.inertia_


def test_kmeans_random_init_and_n_init(backend):
    X = blobs(500, d=2, k=3, seed=9)
    km = ipem.KMeans(3, init="random", n_init=5, random_state=0, backend=backend).fit(X)
    ref = SKKMeans(3, n_init=10, random_state=0).fit(X)
    assert km.inertia_ <= 1.01 * ref.inertia_


def test_empty_cluster_policies(backend):
    X = blobs(300, d=2, k=3, seed=10)
    init = np.vstack([X[:2], [[1e3, 1e3]]])   # the third centre attracts nothing
    km = ipem.KMeans(3, init=init, backend=backend, controller=2).fit(X)
    first = km.history_[0]
    assert first.info["n_empty"] == 1 and first.info["relocated"] == 1
    assert np.all(np.abs(km.cluster_centers_) < 100)
    assert np.bincount(km.labels_, minlength=3).min() > 0
    # scikit-learn relocates the same way: to the frame farthest from its centre
    ref = SKKMeans(3, init=init, n_init=1, algorithm="lloyd").fit(X)
    assert_allclose(km.inertia_, ref.inertia_, rtol=1e-6)
    kept = ipem.KMeans(3, init=init, empty_cluster="keep", backend=backend).fit(X)
    assert_allclose(kept.cluster_centers_[2], [1e3, 1e3])
    with pytest.raises(ValueError, match=r"clusters \[2\] received no frames"):
        ipem.KMeans(3, init=init, empty_cluster="error", backend=backend).fit(X)


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_gmm_init_params(init_params, backend):
    X = blobs(600, d=2, k=3, seed=11)
    gm = ipem.GaussianMixture(3, covariance_type="full", init_params=init_params,
                              random_state=0, max_iter=300, backend=backend, controller=2).fit(X)
    # the same initialisation scheme in scikit-learn reaches the same optimum
    # (uniform random responsibilities are a poor start in both: that is the scheme)
    ref = SKGaussianMixture(3, init_params=init_params, random_state=0, max_iter=300).fit(X)
    assert gm.converged_
    assert gm.lower_bound_ > ref.lower_bound_ - 0.01


def test_distributed_input_and_callbacks(dv_client, backend, tmp_path):
    X = blobs(600, d=3, k=3, seed=12)
    data = dv_client.distribute(X)
    records = []
    plot = ipem.LivePlot(path=str(tmp_path / "conv.png"))
    try:
        gm = ipem.GaussianMixture(3, covariance_type="diag", random_state=0, tol=1e-6,
                                  backend=backend, callbacks=[records.append, plot]).fit(data)
        assert len(records) == gm.n_iter_ and len(gm.lower_bounds_) == gm.n_iter_
        assert [r.iteration for r in records] == list(range(1, gm.n_iter_ + 1))
        assert all(r.time > 0 and r.elapsed >= r.time for r in records)
        assert records[0].change == np.inf and records[-1].change == pytest.approx(
            records[-1].objective - records[-2].objective)
        assert records[-1].info["shard_frames"] == data.place_sizes.tolist()
        assert (tmp_path / "conv.png").stat().st_size > 1000
        # predictions on the distributed data equal predictions on the array
        assert_allclose(gm.score_samples(data), gm.score_samples(X), rtol=1e-10)
        assert_array_equal(gm.predict(data), gm.predict(X))
        km = ipem.KMeans(3, random_state=0, backend=backend).fit(data)
        assert not hasattr(km, "labels_")
        assert_array_equal(km.predict(data), km.predict(X))
    finally:
        data.free()


def test_float32_features(backend):
    X = blobs(900, d=4, k=3, seed=13)
    init = sk_init(X, 3, "diag")
    a = ipem.GaussianMixture(3, covariance_type="diag", backend=backend, **init).fit(X)
    b = ipem.GaussianMixture(3, covariance_type="diag", backend=backend,
                             **init).fit(X.astype(np.float32))
    assert_allclose(b.means_, a.means_, rtol=1e-4, atol=1e-4)
    assert_allclose(b.covariances_, a.covariances_, rtol=1e-3)


def test_convergence_warning(backend):
    from sklearn.exceptions import ConvergenceWarning
    X = blobs(300, d=2, k=3, seed=14)
    with pytest.warns(ConvergenceWarning):
        gm = ipem.GaussianMixture(3, max_iter=1, tol=0, random_state=0, backend=backend).fit(X)
    assert not gm.converged_ and gm.n_iter_ == 1


def test_fewer_frames_than_shards_and_identical_frames(backend):
    X = np.ones((3, 2))
    km = ipem.KMeans(2, random_state=0, backend=backend, controller=4).fit(X)
    assert_allclose(km.cluster_centers_, np.ones((2, 2)))
    X = blobs(5, d=2, k=2)
    a = ipem.KMeans(2, random_state=1, backend=backend, controller=8).fit(X)
    b = ipem.KMeans(2, random_state=1, backend=backend, controller=1).fit(X)
    assert_allclose(a.cluster_centers_, b.cluster_centers_, rtol=1e-12)
    gm = ipem.GaussianMixture(2, covariance_type="diag", random_state=0, backend=backend,
                              controller=8).fit(X)
    assert np.all(np.isfinite(gm.means_))


def test_predict_labels_without_full_responsibilities(backend):
    X = blobs(5000, d=3, k=4, seed=15)
    gm = ipem.GaussianMixture(4, covariance_type="full", random_state=0, backend=backend).fit(X)
    assert_array_equal(gm.predict(X), np.argmax(gm.predict_proba(X), axis=1))


def test_data_from_another_controller_is_refused():
    X = blobs(50)
    data = ipem.LocalController(2).distribute(X)
    with pytest.raises(ValueError, match="another controller"):
        ipem.LocalController(2).take(data, [0])


@pytest.mark.parametrize("n, k", [(10, 10), (10, 3), (10**12, 64)])
def test_sample_distinct_without_o_n_memory(n, k):
    from ipem.em.base import sample_distinct
    idx = sample_distinct(np.random.RandomState(0), n, k)
    assert idx.shape == (k,) and len(set(idx.tolist())) == k
    assert idx.min() >= 0 and idx.max() < n
    with pytest.raises(ValueError, match="cannot draw 11 distinct indices from 10"):
        sample_distinct(np.random.RandomState(0), 10, 11)
