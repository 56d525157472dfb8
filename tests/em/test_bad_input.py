"""Bad input: a ValueError naming the problem, raised before the engines do work."""
import numpy as np
import pytest

import ipem
from tests.helpers import blobs


def _engine_keys():
    from ipem.parallel import engine_store
    return sorted(engine_store())


X_OK = blobs(60, d=3)
X_NAN = X_OK.copy()
X_NAN[17, 2] = np.nan
X_INF = X_OK.copy()
X_INF[5, 0] = -np.inf

BAD = {
    "nan": (X_NAN, r"NaN \(first at row 17, column 2\)"),
    "inf": (X_INF, r"infinity \(first at row 5, column 0\)"),
    "1-d": (np.arange(10.0), r"must be 2-D .* shape \(10,\).*reshape"),
    "3-d": (np.zeros((4, 3, 2)), r"must be 2-D .* shape \(4, 3, 2\)"),
    "empty": (np.zeros((0, 3)), r"0 sample\(s\) \(shape=\(0, 3\)\)"),
    "no-features": (np.zeros((5, 0)), r"0 feature\(s\) \(shape=\(5, 0\)\)"),
    "too-few-frames": (X_OK[:2], r"2 samples, fewer than the 3 components"),
    "strings": (np.array([["a", "b"], ["c", "d"], ["e", "f"]]), r"could not convert string to float"),
    "complex": (X_OK + 1j, r"Complex data not supported"),
    "ragged": ([[1.0, 2.0], [3.0]], r"could not be converted|not numeric|2-D"),
}


@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize("estimator", ["gmm", "kmeans"])
def test_bad_frames_rejected_before_engines(case, estimator, dv_client, mpi_client):
    X, pattern = BAD[case]
    before = mpi_client[:].apply_sync(_engine_keys)
    est = (ipem.GaussianMixture(3, controller=dv_client) if estimator == "gmm"
           else ipem.KMeans(3, controller=dv_client))
    with pytest.raises(ValueError, match=pattern):
        est.fit(X)
    assert mpi_client[:].apply_sync(_engine_keys) == before


@pytest.mark.parametrize("param, value, pattern", [
    ("n_components", 0, "n_components must be an integer >= 1"),
    ("n_components", 2.5, "n_components must be an integer"),
    ("covariance_type", "banana", "covariance_type='banana'"),
    ("tol", -1.0, "tol must be"),
    ("reg_covar", np.nan, "reg_covar must be"),
    ("max_iter", -1, "max_iter must be an integer >= 0"),  # 0: the initialisation (issue 19)
    ("init_params", "magic", "init_params='magic'"),
    ("backend", "fortran", "backend='fortran'"),
    ("means_init", np.zeros((2, 3)), r"means_init has shape \(2, 3\), expected \(3, 3\)"),
    ("weights_init", [0.5, 0.5, 0.5], "weights_init must .* sum to 1"),
    ("precisions_init", -np.ones((3, 3)), "precisions_init must be positive"),
])
def test_bad_gmm_parameters(param, value, pattern):
    kw = {"n_components": 3, "covariance_type": "diag"}
    kw[param] = value
    with pytest.raises(ValueError, match=pattern):
        ipem.GaussianMixture(**kw).fit(X_OK)


def test_bad_full_precisions():
    p = np.tile(np.eye(3), (3, 1, 1))
    p[1, 0, 1] = 5.0
    with pytest.raises(ValueError, match=r"precisions_init\[1\] is not symmetric"):
        ipem.GaussianMixture(3, precisions_init=p).fit(X_OK)
    p[1] = -np.eye(3)
    with pytest.raises(ValueError, match=r"precisions_init\[1\] is not positive definite"):
        ipem.GaussianMixture(3, precisions_init=p).fit(X_OK)


def test_bad_kmeans_parameters():
    with pytest.raises(ValueError, match="init='pca'"):
        ipem.KMeans(3, init="pca").fit(X_OK)
    with pytest.raises(ValueError, match=r"init has shape \(2, 3\)"):
        ipem.KMeans(3, init=np.zeros((2, 3))).fit(X_OK)
    with pytest.raises(ValueError, match="empty_cluster='drop'"):
        ipem.KMeans(3, empty_cluster="drop").fit(X_OK)


def test_predict_checks_features():
    gm = ipem.GaussianMixture(2, random_state=0).fit(X_OK)
    with pytest.raises(ValueError, match="X has 2 features, but GaussianMixture is expecting 3"):
        gm.predict(X_OK[:, :2])
    with pytest.raises(ValueError, match="NaN"):
        gm.score_samples(X_NAN)


def test_collapsed_component_error():
    X = np.vstack([np.zeros((50, 2)), blobs(50, d=2)])
    with pytest.raises(ValueError, match="ill-defined covariance.*reg_covar"):
        ipem.GaussianMixture(3, reg_covar=0.0, covariance_type="full",
                             means_init=[[0, 0], [5, 5], [-5, -5]]).fit(X)


def test_em_stops_at_the_first_non_finite_objective():
    """A model whose M-step goes non-finite stops at once with the iteration named."""
    from ipem.em.driver import EMLoop

    class Exploding:
        def e_step(self, data, params):
            return data.controller.reduce_timed(lambda shard: float(shard.X.sum()), data)

        def m_step(self, stats, params, data):
            scale = params["scale"] * 1e300
            return {"scale": scale}, float(np.sum(stats)) * float(scale[0]), {}

        def is_converged(self, record):
            return False

    ctrl = ipem.LocalController(2)
    data = ctrl.distribute(np.ones((10, 2)))
    loop = EMLoop(Exploding(), data)
    with pytest.raises(FloatingPointError, match=r"EM iteration 2: the objective is inf"):
        loop.run({"scale": np.ones(1)}, max_iter=10)
    assert len(loop.history) == 1


def test_em_driver_checks_the_hook_contract():
    """A model without the EM hooks is refused when the loop is made, naming what is missing."""
    from ipem.em.driver import EMLoop
    from ipem.em.hooks import EMHooks, StagedHooks
    from ipem.em.staged import run_stages

    class OldStyle:                  # the private hooks of before: not the contract
        def _e_step(self, data, params):
            return None

        def m_step(self, stats, params, data):
            return params, 0.0, {}

    data = ipem.LocalController(1).distribute(np.ones((4, 2)))
    with pytest.raises(TypeError, match="OldStyle does not implement the EMHooks of "
                                        "ipem.em.hooks: no e_step, is_converged"):
        EMLoop(OldStyle(), data)
    with pytest.raises(TypeError, match="KMeans does not implement the StagedHooks.*no grow"):
        run_stages(ipem.KMeans(2), data, np.random.RandomState(0), [(2, 1)])
    for model in (ipem.KMeans(2), ipem.GaussianMixture(2), ipem.UBMTrainer(2)):
        assert isinstance(model, EMHooks)
    assert isinstance(ipem.UBMTrainer(2), StagedHooks)
    assert not isinstance(OldStyle(), EMHooks)


@pytest.mark.parametrize("dtype, scale", [(np.float32, 1e19), (np.float64, 1e200)])
def test_huge_finite_values_are_refused_before_em(dtype, scale):
    X = np.random.default_rng(0).normal(size=(300, 3)).astype(dtype)
    X[:, 2] *= scale
    with pytest.raises(ValueError, match="feature column 2 reaches magnitudes"):
        ipem.GaussianMixture(2, covariance_type="diag").fit(X)
    with pytest.raises(ValueError, match="feature column 2 reaches magnitudes"):
        ipem.KMeans(2, n_init=1).fit(X)
