"""The i-vector back-end on training sets too small for it."""
import numpy as np
import pytest

from ipem.ivector.backend import IvectorBackend


def test_singular_scatter_is_one_line_naming_the_cause():
    """Two identical vectors per speaker: no within-speaker scatter at all."""
    rng = np.random.default_rng(0)
    X = np.repeat(rng.normal(size=(8, 20)), 2, axis=0)
    y = np.repeat(np.arange(8), 2)
    with pytest.raises(ValueError, match=r"^i-vector back-end: the scatter of 16 vectors of 8 "
                       r"speakers in 20 dimensions is singular .*more utterances per speaker"):
        IvectorBackend().fit(X, y)


def test_enough_vectors_fit():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(8), 6)
    X = rng.normal(size=(8, 10))[y] + 0.3 * rng.normal(size=(48, 10))
    be = IvectorBackend().fit(X, y)
    assert be.plda_ is not None and np.isfinite(be.score(X[:2], X[2:4])).all()
