"""The i-vector steps of the ``ipem`` command in-process: train-ivector, extract-ivectors,
train-plda and score --backend cosine|plda, and their errors.

Feature files are written from synthetic frames as if ``ipem extract`` had made them
(``FEATS/wav/<speaker>/<utt>.htk`` for the list entries ``wav/<speaker>/<utt>.wav``).
"""
import numpy as np
import pytest
from numpy.testing import assert_array_equal

import ipem
from ipem.cli import main
from tests.helpers import feature_world
from ipem.ivector import TotalVariability, load_ivectors

D = 4
SPEAKERS = [f"spk{i}" for i in range(6)]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("ivcli")
    corpus, feats = feature_world(root, SPEAKERS, dim=D, seed=0, frames=(200, 150, 120))
    return root, corpus, feats


def _ok(capsys, argv):
    assert main(argv) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def test_ivector_steps_end_to_end(world, capsys, tmp_path):
    root, corpus, feats = world
    common = ["--features", str(feats), "--root", str(corpus), "--quiet"]
    ubm, tv, iv = tmp_path / "ubm.npz", tmp_path / "tv.npz", tmp_path / "iv.npz"
    _ok(capsys, ["train-ubm", "--list", str(corpus / "ubm.lst"), "-K", "4", "--stage-iter", "2",
                 "--final-iter", "4", "--out", str(ubm), *common])
    out = _ok(capsys, ["train-ivector", "--ubm", str(ubm), "--list", str(corpus / "ubm.lst"),
                       "-R", "3", "--iter", "4", "--out", str(tv), "--cluster", "local:2",
                       "--checkpoint", str(tmp_path / "tv.ckpt.npz"), *common[:-1]])
    assert "total variability: rank 3, 24 utterances, 4 iterations" in out
    assert out.count("  iter ") == 4        # without --quiet: a line per iteration
    model = TotalVariability.load(tv)
    assert model.T_.shape == (4, D, 3)
    out = _ok(capsys, ["extract-ivectors", "--extractor", str(tv), "--enroll",
                       str(corpus / "enroll.lst"), "--list", str(corpus / "tests.lst"),
                       "--list", str(corpus / "ubm.lst"), "--out", str(iv), *common[:-1]])
    assert "extracted 42 i-vectors" in out
    vecs = load_ivectors(iv)
    assert set(SPEAKERS) <= set(vecs) and "wav/spk0/spk0_test_0.wav" in vecs
    be = tmp_path / "be.npz"
    # the back-end learns from the background utterances only (training it on iv.npz, which
    # holds the test segments, is refused when scoring: tests/steps/test_provenance.py)
    bkg = tmp_path / "bkg.npz"
    _ok(capsys, ["extract-ivectors", "--extractor", str(tv), "--list", str(corpus / "ubm.lst"),
                 "--out", str(bkg), *common])
    out = _ok(capsys, ["train-plda", "--ivectors", str(bkg), "--lda-dim", "3", "--out", str(be)])
    assert "LDA to 3 dimensions" in out and "PLDA" in out
    for method in ("cosine", "plda"):
        scores = tmp_path / f"{method}.txt"
        out = _ok(capsys, ["score", "--backend", method, "--ivectors", str(iv), "--plda",
                           str(be), "--trials", str(corpus / "trials.lst"), "--out",
                           str(scores)])
        assert f"scored 72 trials ({method})" in out
        out = _ok(capsys, ["evaluate", "--scores", str(scores)])
        assert "EER" in out
    # the score files hold the pipeline's scores
    from ipem.steps import score_ivectors
    _, want = score_ivectors(vecs, str(corpus / "trials.lst"), backend="plda", model=str(be))
    from ipem.speaker.scorefiles import read_score_file
    _, got = read_score_file(tmp_path / "plda.txt")
    assert_array_equal(np.round(got, 4), np.round(want, 4))


@pytest.mark.parametrize("argv, message", [
    (["score", "--backend", "plda", "--trials", "T", "--out", "S"], "needs --ivectors"),
    (["score", "--backend", "gmm", "--trials", "T", "--out", "S"], "needs --ubm and --models"),
    (["extract-ivectors", "--extractor", "X", "--features", "F", "--out", "O"], "give --list"),
], ids=["plda-without-ivectors", "gmm-without-ubm", "extract-without-lists"])
def test_usage_errors(world, capsys, tmp_path, argv, message):
    root, corpus, feats = world
    paths = {"T": str(corpus / "trials.lst"), "S": str(tmp_path / "s.txt"),
             "X": str(corpus / "ubm.lst"), "F": str(feats), "O": str(tmp_path / "o.npz")}
    assert main([paths.get(a, a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ipem {argv[0]}: error:") and message in err


def test_missing_ivector_is_named(world, capsys, tmp_path):
    root, corpus, feats = world
    iv = tmp_path / "iv.npz"
    ipem.ivector.save_ivectors(iv, {"spk0": np.ones(3)})
    assert main(["score", "--backend", "cosine", "--ivectors", str(iv), "--trials",
                 str(corpus / "trials.lst"), "--out", str(tmp_path / "s.txt")]) == 1
    err = capsys.readouterr().err
    assert "no i-vector of model 'spk1'" in err and "extract-ivectors" in err


def test_train_plda_derives_its_defaults_for_a_tiny_backend(capsys, caplog, tmp_path):
    """5 speakers x 4 i-vectors of dimension 40: no LDA, no WCCN (logged); --lda-dim and
    --no-wccn still choose."""
    from ipem.ivector import IvectorBackend, save_ivectors
    rng = np.random.default_rng(0)
    means = rng.normal(size=(5, 40))
    iv = tmp_path / "bkg.npz"
    save_ivectors(iv, {f"wav/s{s}/u{i}.wav": means[s] + rng.normal(size=40)
                       for s in range(5) for i in range(4)})
    be = tmp_path / "be.npz"
    with caplog.at_level("INFO", logger="ipem.ivector.backend"):
        out = _ok(capsys, ["train-plda", "--ivectors", str(iv), "--out", str(be)])
    assert "back-end: centring, no LDA, length normalisation, PLDA" in out
    assert "5 speakers for 40 dimensions: no LDA" in caplog.text
    assert "no WCCN" in caplog.text
    model = IvectorBackend.load(be)
    assert model.lda_ is None and model.wccn_ is None
    out = _ok(capsys, ["train-plda", "--ivectors", str(iv), "--lda-dim", "4", "--out", str(be)])
    assert "LDA to 4 dimensions, WCCN, " in out         # 15 >= 2 x 4: WCCN derived
