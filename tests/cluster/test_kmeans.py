"""KMeans as scikit-learn's (issue 19): weighted random init, array/callable init and
n_init, algorithm, sparse and float32 input, feature names, warnings and messages --
in-process and on the session's MPI engines."""
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_array_equal
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import ipem
from ipem.cluster.seeding import random_frames


def _blobs(n=300, d=4, k=5, seed=0):
    rng = np.random.RandomState(seed)
    centres = rng.normal(scale=6.0, size=(k, d))
    return centres[rng.randint(k, size=n)] + rng.normal(size=(n, d))


def _n_inits(model, X, **fit):
    """How many initialisations a fit made (records of iteration 1)."""
    starts = []
    model.set_params(callbacks=lambda r: starts.append(r.iteration == 1))
    model.fit(X, **fit)
    return sum(starts)


@pytest.fixture(params=["local", "engines"])
def where(request):
    """None (in-process) or the session's DirectViewController (client reduction)."""
    if request.param == "local":
        return None
    return request.getfixturevalue("dv_client")


def test_random_init_never_starts_on_a_zero_weight_frame(where):
    X = _blobs(200)
    w = np.random.RandomState(1).uniform(size=200)
    w[::2] = 0.0
    ctrl = ipem.parallel.as_controller(where)
    with ctrl.distribute(X, w) as data:
        for seed in range(20):
            centres = random_frames(data, 10, np.random.RandomState(seed)) + data.mean
            d = np.abs(X[::2, None, :] - centres[None]).sum(axis=2)
            assert not np.any(np.isclose(d, 0.0)), seed
            assert len({tuple(c) for c in np.round(centres, 9)}) == 10


def test_random_init_draws_in_proportion_to_the_weights():
    X = np.arange(10.0)[:, None]
    w = np.array([100.0] + [1.0] * 9)
    # frame 0 carries 100/109 of the weight: it is a starting centre almost every time
    ctrl = ipem.parallel.as_controller(None)
    with ctrl.distribute(X, w) as data:
        hits = sum(0.0 in (random_frames(data, 2, np.random.RandomState(s)) + data.mean)
                   for s in range(100))
    assert hits >= 95


def test_equal_weights_start_as_no_weights():
    X = _blobs()
    a = ipem.KMeans(5, init="random", n_init=3, random_state=0).fit(X)
    b = ipem.KMeans(5, init="random", n_init=3, random_state=0).fit(
        X, sample_weight=np.full(len(X), 2.0))
    assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_allclose(a.cluster_centers_, b.cluster_centers_, rtol=1e-12)


def test_too_few_weighted_frames_for_random_init():
    X = _blobs(20)
    w = np.zeros(20)
    w[:3] = 1.0
    with pytest.raises(ValueError, match=r"3 frames have a positive sample_weight, fewer "
                                         r"than n_clusters=5"):
        ipem.KMeans(5, init="random").fit(X, sample_weight=w)


def test_array_init_with_n_init_warns_and_fits_once(where):
    X = _blobs()
    init = X[:5]
    km = ipem.KMeans(5, init=init, n_init=10, controller=where)
    with pytest.warns(RuntimeWarning, match="Explicit initial center position passed: "
                                            "performing only one init in KMeans instead "
                                            "of n_init=10"):
        assert _n_inits(km, X) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _n_inits(ipem.KMeans(5, init=init), X) == 1


def test_n_init_auto():
    X = _blobs()
    calls = []

    def init(X_, k, random_state):
        calls.append(X_.shape)
        return X_[random_state.choice(len(X_), k, replace=False)]

    assert _n_inits(ipem.KMeans(5, init=init, random_state=0), X) == 10
    assert calls == [X.shape] * 10
    assert _n_inits(ipem.KMeans(5, init="random", random_state=0), X) == 10
    assert _n_inits(ipem.KMeans(5, random_state=0), X) == 1
    assert _n_inits(ipem.KMeans(5, n_init=3, random_state=0), X) == 3


def test_callable_init_on_engines(dv_client):
    X = _blobs()
    init = lambda X_, k, random_state: X_[:k] * 1.0  # noqa: E731
    ours = ipem.KMeans(5, init=init, n_init=1, controller=dv_client).fit(X)
    ref = ipem.KMeans(5, init=X[:5], n_init=1).fit(X)
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_)
    with pytest.raises(ValueError, match=r"The shape of the initial centers \(5, 2\) does "
                                         r"not match the number of features of the data 4"):
        ipem.KMeans(5, init=lambda X_, k, random_state: X_[:k, :2],
                    controller=dv_client).fit(X)


def test_algorithms_give_identical_results():
    X = _blobs(2000, 6, 8)
    fits = [ipem.KMeans(8, algorithm=a, random_state=3, n_init=2).fit(X)
            for a in ("lloyd", "elkan")]
    assert ipem.KMeans().algorithm == "lloyd"
    assert_array_equal(fits[0].cluster_centers_, fits[1].cluster_centers_)
    assert_array_equal(fits[0].labels_, fits[1].labels_)
    assert fits[0].inertia_ == fits[1].inertia_ and fits[0].n_iter_ == fits[1].n_iter_
    with pytest.warns(RuntimeWarning, match="algorithm='elkan' doesn't make sense"):
        ipem.KMeans(1, algorithm="elkan").fit(X)
    with pytest.raises(ValueError, match="algorithm='full'"):
        ipem.KMeans(2, algorithm="full").fit(X)


@pytest.mark.parametrize("fmt", ["csr_matrix", "csr_array"])
def test_sparse_input_as_dense(fmt, where):
    X = _blobs()
    X[X < 0.5] = 0.0
    Xs = getattr(sp, fmt)(X)
    kw = dict(n_clusters=5, random_state=0, controller=where)
    dense, sparse = ipem.KMeans(**kw).fit(X), ipem.KMeans(**kw).fit(Xs)
    np.testing.assert_allclose(sparse.cluster_centers_, dense.cluster_centers_)
    assert_array_equal(sparse.labels_, dense.labels_)
    assert_array_equal(sparse.predict(Xs), dense.predict(X))
    np.testing.assert_allclose(sparse.transform(Xs), dense.transform(X))
    assert sparse.score(Xs) == pytest.approx(dense.score(X))


def test_float32_in_float32_out(where):
    X = _blobs().astype(np.float32)
    km = ipem.KMeans(5, random_state=0, controller=where).fit(X)
    assert km.cluster_centers_.dtype == np.float32
    assert km.transform(X).dtype == np.float32
    assert km.fit_transform(X).dtype == np.float32
    assert ipem.KMeans(5, random_state=0).fit(X.astype(np.float64)).cluster_centers_.dtype \
        == np.float64


def test_feature_names_out_and_pandas_output():
    pd = pytest.importorskip("pandas")
    X = pd.DataFrame(_blobs(), columns=list("abcd"))
    pipe = make_pipeline(StandardScaler(), ipem.KMeans(3, random_state=0))
    out = pipe.set_output(transform="pandas").fit_transform(X)
    assert list(out.columns) == ["kmeans0", "kmeans1", "kmeans2"]
    assert_array_equal(pipe[-1].get_feature_names_out(), ["kmeans0", "kmeans1", "kmeans2"])


def test_fewer_distinct_frames_than_clusters(where):
    X = np.array([[0, 0], [1, 1], [1, 1], [1, 0], [0, 1]], dtype=float)
    km = ipem.KMeans(5, init=X, controller=where)
    with pytest.warns(ConvergenceWarning, match=r"Number of distinct clusters \(4\) found "
                                                r"smaller than n_clusters \(5\)"):
        km.fit(X)
    assert km.n_iter_ == 1
    assert_array_equal(np.sort(km.cluster_centers_, axis=0), np.sort(X, axis=0))


def test_scikit_learn_messages_and_copy_x():
    X = _blobs(30, 3, 2)
    with pytest.raises(ValueError, match=r"n_samples.* should be >= n_clusters"):
        ipem.KMeans(31).fit(X)
    with pytest.raises(ValueError, match=r"init has shape \(2, 3\).*The shape of the initial "
                                         r"centers \(2, 3\) does not match the number of "
                                         r"clusters 3"):
        ipem.KMeans(3, init=X[:2]).fit(X)
    before = X.copy()
    ipem.KMeans(2, copy_x=False, random_state=0).fit(X)
    assert_array_equal(X, before)


def test_transform_of_the_centres_has_a_zero_diagonal(where):
    from sklearn.metrics import pairwise_distances
    X = _blobs(100, 5, 3, seed=4) + 7.3
    km = ipem.KMeans(3, random_state=0, controller=where).fit(X)
    Xt = km.transform(km.cluster_centers_)
    assert_array_equal(Xt.diagonal(), np.zeros(3))
    np.testing.assert_allclose(Xt, pairwise_distances(km.cluster_centers_), atol=1e-12)
