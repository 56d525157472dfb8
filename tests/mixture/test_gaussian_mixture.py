"""GaussianMixture behaves as scikit-learn's where a public behaviour is defined (issue 19):
warm_start carries the lower bound, max_iter=0, float32 in -> float32 out, scikit-learn's
messages; and where ipem deliberately differs (reg_covar=0 with a one-frame component).
Each behaviour in-process and on 2 MPI engines."""
import re
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGaussianMixture

import ipem

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
FITTED = ["weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"]


@pytest.fixture(params=["local", "engines"])
def ctrl(request):
    """None (in-process) or a DirectViewController on the session's 2 MPI engines."""
    if request.param == "local":
        return None
    return request.getfixturevalue("dv_client")


def _fits_until_converged(gm, X, limit=100):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for n_fits in range(1, limit + 1):
            gm.fit(X)
            if gm.converged_:
                return n_fits
    return None


def test_warm_start_carries_the_lower_bound(ctrl):
    # one EM iteration per fit: the loop converges when scikit-learn's does (4 fits here)
    X = np.random.RandomState(0).rand(300, 2)
    ours = ipem.GaussianMixture(2, warm_start=True, max_iter=1, random_state=0, controller=ctrl)
    theirs = SkGaussianMixture(2, warm_start=True, max_iter=1, random_state=0)
    assert _fits_until_converged(ours, X) == _fits_until_converged(theirs, X) == 4
    assert ours.n_iter_ == 1
    assert_allclose(ours.lower_bound_, theirs.lower_bound_, rtol=1e-10)


def test_warm_start_refits_never_lose_likelihood(ctrl):
    X = np.random.RandomState(1).randn(200, 3) * [1, 3, 0.5]
    gm = ipem.GaussianMixture(3, covariance_type="diag", warm_start=True, max_iter=1,
                              tol=1e-7, random_state=0, controller=ctrl)
    scores = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        while not gm.converged_ if hasattr(gm, "converged_") else True:
            scores.append(gm.fit(X).score(X))
            assert len(scores) < 500
    assert np.all(np.diff(scores) >= -1e-12)


def test_max_iter_zero_returns_the_initialisation(ctrl):
    X = np.random.RandomState(0).rand(100, 2) * 10
    means_init = [[2.0, 3.0], [8.0, 7.0]]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # no warning: nothing was tried
        gm = ipem.GaussianMixture(2, means_init=means_init, max_iter=0, random_state=0,
                                  controller=ctrl).fit(X)
    assert_allclose(gm.means_, means_init)
    assert gm.n_iter_ == 0 and not gm.converged_
    assert gm.lower_bound_ == -np.inf and gm.lower_bounds_ == []
    # every fitted attribute exists, also when the precisions were given
    prec = np.full(2, 4.0)
    gm = ipem.GaussianMixture(2, covariance_type="spherical", means_init=means_init,
                              precisions_init=prec, max_iter=0, controller=ctrl).fit(X)
    assert_allclose(gm.covariances_, 1 / prec)
    assert gm.predict(X).shape == (100,)


def test_max_iter_below_zero_is_refused():
    with pytest.raises(ValueError, match="max_iter must be an integer >= 0, got -1"):
        ipem.GaussianMixture(max_iter=-1).fit(np.random.rand(10, 2))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_float32_frames_give_float32_parameters_and_outputs(covariance_type, ctrl):
    X = np.random.RandomState(0).randn(120, 3).astype(np.float32)
    gm = ipem.GaussianMixture(2, covariance_type=covariance_type, random_state=0,
                              controller=ctrl).fit(X)
    assert {name: getattr(gm, name).dtype for name in FITTED} == \
        {name: np.float32 for name in FITTED}
    assert gm.score_samples(X).dtype == np.float32
    assert gm.predict_proba(X).dtype == np.float32
    # float64 frames on a float32 model: float64 outputs, as scikit-learn
    assert gm.score_samples(X.astype(np.float64)).dtype == np.float64
    assert gm.predict_proba(X.astype(np.float64)).dtype == np.float64
    # the same model as from float64 frames, to float32 precision
    gm64 = ipem.GaussianMixture(2, covariance_type=covariance_type, random_state=0,
                                controller=ctrl).fit(X.astype(np.float64))
    assert gm64.means_.dtype == np.float64
    assert_allclose(gm.means_, gm64.means_, rtol=1e-4, atol=1e-4)


def test_one_frame_component_without_regularisation_is_an_error(ctrl):
    # scikit-learn returns a model whose variance is rounding noise; ipem's summed
    # statistics give exactly 0 and it says so, in scikit-learn's words first
    X = np.r_[np.zeros((5, 2)), np.ones((5, 2)), [[9.0, 9.0]]]
    gm = ipem.GaussianMixture(3, covariance_type="diag", reg_covar=0,
                              means_init=[[0, 0], [1, 1], [9, 9]], controller=ctrl)
    with pytest.raises(ValueError) as info:
        gm.fit(X)
    msg = str(info.value)
    assert msg.startswith("Fitting the mixture model failed because some components have "
                          "ill-defined empirical covariance")
    assert re.search(r"\(Component \d has an ill-defined covariance with reg_covar=0(\.0)?; "
                     r"ipem raises rather than return a model whose variance is rounding "
                     r"noise\.\)$", msg)
    gm.set_params(reg_covar=1e-6).fit(X)                 # the cluster stays usable
    assert gm.converged_


@pytest.mark.parametrize("weights, expected", [
    ([0.5, 0.5, 0.5], "should be normalized, but got sum(weights) = 1.50000: weights_init "
                      "must be normalized to sum to 1"),
    ([1.2, -0.1, -0.1], "should be in the range [0, 1], but got min value -0.10000, "
                        "max value 1.20000: weights_init must be in [0, 1]"),
    ([[0.5], [0.25], [0.25]], "should have the shape of (3,), but got (3, 1): weights_init "
                              "has shape (3, 1), expected (3,)"),
])
def test_weights_init_messages_name_what_is_wrong(weights, expected):
    with pytest.raises(ValueError) as info:
        ipem.GaussianMixture(3, weights_init=weights).fit(np.random.rand(20, 2))
    assert str(info.value) == "The parameter 'weights' " + expected
    assert "sum" not in str(info.value) or "normalized" in expected  # a range error quotes no sum


@pytest.mark.parametrize("covariance_type, precisions, expected", [
    ("full", -np.ones((2, 2, 2)), "'full precision' should be symmetric, positive-definite: "
                                  "precisions_init[0] is not positive definite"),
    ("tied", np.ones((3, 3)), "'tied precision' should have the shape of (2, 2), "
                              "but got (3, 3)"),
    ("diag", -np.ones((2, 2)), "'diag precision' should be positive: precisions_init must "
                               "be positive"),
])
def test_precisions_init_messages(covariance_type, precisions, expected):
    gm = ipem.GaussianMixture(2, covariance_type=covariance_type, precisions_init=precisions)
    with pytest.raises(ValueError, match=re.escape(expected)):
        gm.fit(np.random.rand(20, 2))


def test_convergence_warning_in_scikit_learns_words(ctrl):
    X = np.random.RandomState(0).randn(100, 2)
    gm = ipem.GaussianMixture(2, max_iter=1, random_state=0, controller=ctrl)
    with pytest.warns(ConvergenceWarning, match=r"^Best performing initialization did not "
                      r"converge\. .*\(GaussianMixture stopped after 1 iterations\.\)$"):
        gm.fit(X)


def test_sample_refuses_zero_samples_in_scikit_learns_words():
    gm = ipem.GaussianMixture(1).fit(np.random.rand(20, 2))
    with pytest.raises(ValueError, match=r"^Invalid value for 'n_samples': 0\. The sampling "
                                         r"requires at least one sample\.$"):
        gm.sample(0)
