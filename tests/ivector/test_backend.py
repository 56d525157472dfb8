"""The i-vector back-end on training sets too small for it; defaults derived from its size."""
import logging

import numpy as np
import pytest

from ipem.ivector.backend import IvectorBackend, backend_defaults
from ipem.ivector.plda import TwoCovariancePLDA
from ipem.speaker.metrics import compute_eer


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


@pytest.mark.parametrize("n_vectors, n_speakers, dim, lda_dim, want", [
    (64, 8, 100, None, (0, False)),      # 7 < 100/2: no LDA; 56 < 200: no WCCN
    (64, 8, 20, None, (0, True)),        # 7 < 10: no LDA; 56 >= 40: WCCN
    (128, 16, 20, None, (15, True)),     # 15 >= 10: LDA to speakers - 1
    (256, 32, 50, None, (31, True)),
    (512, 64, 100, None, (63, True)),    # many speakers: as before
    (512, 64, 50, None, (50, True)),     # capped at the dimension
    (20, 5, 30, None, (0, False)),
    (20, 5, 30, 3, (3, True)),           # a chosen LDA dimension is kept; 15 >= 6
    (40, 5, 30, 0, (0, False)),          # 35 < 60
])
def test_defaults_derived_from_the_training_set(n_vectors, n_speakers, dim, lda_dim, want):
    assert backend_defaults(n_vectors, n_speakers, dim, lda_dim) == want


def _open_world(rng, n_speakers, n_utts, dim=40):
    y = np.repeat(np.arange(n_speakers), n_utts)
    return rng.normal(size=(n_speakers, dim))[y] + rng.normal(size=(y.size, dim)), y


def test_tiny_backend_generalises_to_new_speakers(caplog):
    """5 background speakers x 4 vectors in 40 dimensions, scored on 40 other speakers:
    LDA to speakers - 1 and WCCN (the defaults before issue 20) learn the 5 speakers."""
    rng = np.random.default_rng(0)
    X, y = _open_world(rng, 5, 4)
    E, ye = _open_world(rng, 40, 2)
    same = ye[::2][:, None] == ye[1::2][None, :]
    with caplog.at_level(logging.INFO, logger="ipem.ivector.backend"):
        be = IvectorBackend().fit(X, y)
    assert be.lda_ is None and be.wccn_ is None
    assert "5 speakers for 40 dimensions: no LDA" in caplog.text
    old = IvectorBackend(lda_dim=4, wccn=True).fit(X, y)
    for method in ("cosine", "plda"):
        eer = compute_eer(*_split(be.score(E[::2], E[1::2], method=method), same))
        eer_old = compute_eer(*_split(old.score(E[::2], E[1::2], method=method), same))
        assert eer < 0.15 < 0.25 < eer_old, (method, eer, eer_old)


def _split(s, same):
    return s[same], s[~same]


def test_one_lda_dimension_trains_and_scores():
    """PLDA on 1-dimensional vectors (``--lda-dim 1``) used to fail in np.cov.  (Length
    normalisation leaves +-1: speakers whose vectors all have one sign give no scatter.)"""
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(6), 5)
    X = 0.3 * rng.normal(size=(6, 8))[y] + rng.normal(size=(30, 8))
    be = IvectorBackend(lda_dim=1).fit(X, y)
    assert be.plda_.between_.shape == (1, 1)
    assert np.isfinite(be.score(X[:3], X[3:6])).all()


def test_plda_speaker_rank_keeps_that_many_directions():
    rng = np.random.default_rng(2)
    X, y = _open_world(rng, 12, 6, dim=10)
    between = TwoCovariancePLDA(speaker_rank=3).fit(X, y).between_
    vals = np.linalg.eigvalsh(between)
    assert np.all(vals[-3:] > 100 * vals[:-3].max())
    full = np.linalg.eigvalsh(TwoCovariancePLDA().fit(X, y).between_)
    assert full[-4] > 100 * vals[:-3].max()


def test_two_vectors_per_speaker_in_many_dimensions_train():
    """8 speakers x 2 vectors, R=100 (the README's old failing case): LDA to 7 and WCCN made
    the scatter singular; the derived defaults (neither) train and score."""
    rng = np.random.default_rng(3)
    X, y = _open_world(rng, 8, 2, dim=100)
    with pytest.raises(ValueError, match="is singular"):
        IvectorBackend(lda_dim=7, wccn=True).fit(X, y)
    be = IvectorBackend().fit(X, y)
    assert np.isfinite(be.score(X[:4], X[4:], method="plda")).all()


def test_without_length_norm_round_trips(tmp_path):
    rng = np.random.default_rng(4)
    X, y = _open_world(rng, 12, 6, dim=10)
    be = IvectorBackend(length_norm=False).fit(X, y)
    assert not np.allclose(np.linalg.norm(be.transform(X), axis=1), 1.0)
    back = IvectorBackend.load(be.save(tmp_path / "be.npz"))
    for method in ("cosine", "plda"):
        assert np.array_equal(back.score(X[:5], X[5:], method=method),
                              be.score(X[:5], X[5:], method=method))
    normed = IvectorBackend.load(IvectorBackend().fit(X, y).save(tmp_path / "ln.npz"))
    assert normed.length_norm and np.allclose(np.linalg.norm(normed.transform(X), axis=1), 1)
