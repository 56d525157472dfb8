"""Provenance: artefacts record what they were made from, and steps refuse what does not chain.

The two cases of issue 20 on real files, through the ``ipem`` command in-process and the
step functions: speaker models scored against another UBM of the same size, and a PLDA
back-end trained on the test i-vectors.  Both are refused by default with one line naming
both files and accepted with ``--allow-overlap`` (the score file's record keeps it);
artefacts written without records (older ipem) still score.
"""
import json

import pytest

from ipem.cli import main
from tests.helpers import feature_world
from ipem.io.provenance import ProvenanceError, read_companion, read_record
from ipem.ivector import IvectorBackend
from ipem.mixture.ubm import UBMTrainer
from ipem.speaker.map import SpeakerModel
from ipem.steps import score, score_ivectors

D = 4
SPEAKERS = [f"spk{i}" for i in range(5)]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Synthetic feature files (as ``ipem extract`` lays them out), lists and trials."""
    root = tmp_path_factory.mktemp("prov")
    corpus, feats = feature_world(root, SPEAKERS, dim=D, seed=1, frames=(150, 120, 100))
    common = ["--features", str(feats), "--root", str(corpus), "--quiet"]
    return root, corpus, common


def _run(capsys, argv):
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def _ok(capsys, argv):
    rc, out, err = _run(capsys, argv)
    assert rc == 0, err
    return out, err


def _refused(capsys, argv, *names):
    """The command fails with one error line that names every file of ``names``."""
    rc, out, err = _run(capsys, argv)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc != 0 and len(lines) == 1, err
    for name in names:
        assert str(name) in lines[0], lines[0]
    assert "--allow-overlap" in lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def gmm(world, tmp_path_factory):
    """Two UBMs of the same size (seeds 0 and 5) and the models adapted from the first."""
    root, corpus, common = world
    out = tmp_path_factory.mktemp("gmm")
    ubm0, ubm5, models = out / "ubm0.npz", out / "ubm5.npz", out / "models"
    for path, seed in ((ubm0, 0), (ubm5, 5)):
        assert main(["train-ubm", "--list", str(corpus / "ubm.lst"), "-K", "4", "--init",
                     "kmeans", "--stage-iter", "2", "--final-iter", "3", "--seed", str(seed),
                     "--out", str(path), *common]) == 0
    assert main(["adapt", "--ubm", str(ubm0), "--enroll", str(corpus / "enroll.lst"),
                 "--out-dir", str(models), *common]) == 0
    return out, ubm0, ubm5, models


def test_artefacts_record_what_they_were_made_from(world, gmm):
    root, corpus, _ = world
    out, ubm0, ubm5, models = gmm
    rec = read_record(ubm0)
    assert rec["artefact"] == "ubm" and rec["n_utterances"] == 4 * len(SPEAKERS)
    assert all(k.endswith(".htk") and "_ubm_" in k for k in rec["utterances"])
    m = read_record(models / "spk1.npz")
    assert m["artefact"] == "speaker-model" and m["model_id"] == "spk1"
    assert m["ubm_file"] == str(ubm0) and len(m["utterances"]) == 2
    assert m["ubm"] != read_record(models / "spk1.npz")["ubm"] + "x"
    # the files still load as before
    assert UBMTrainer.load(ubm0).weights_.shape == (4,)
    assert SpeakerModel.load(models / "spk1.npz", speaker_id="spk1").means.shape == (4, D)


def test_models_of_another_ubm_refused(world, gmm, capsys, tmp_path):
    root, corpus, common = world
    out, ubm0, ubm5, models = gmm
    scores = tmp_path / "scores.txt"
    argv = ["score", "--models", str(models), "--trials", str(corpus / "trials.lst"),
            "--out", str(scores), *common]
    line = _refused(capsys, [*argv, "--ubm", str(ubm5)], ubm5, models)
    assert "adapted from another UBM" in line and not scores.exists()
    # the step function refuses the same way, before any work
    with pytest.raises(ProvenanceError, match="adapted from another UBM.*allow_overlap"):
        score(str(ubm5), str(corpus / "trials.lst"), str(models),
              source=features_source(world))
    # the right UBM scores, and evaluate prints the chain
    _ok(capsys, [*argv, "--ubm", str(ubm0)])
    rec = read_companion(scores)
    assert rec["ubm_file"] == str(ubm0) and rec["n_trials"] == 50 and "allowed_overlap" not in rec
    text, _ = _ok(capsys, ["evaluate", "--scores", str(scores)])
    assert "made from:  gmm-ubm" in text and str(ubm0) in text and "ALLOWED" not in text
    # --allow-overlap: the researcher means it, and the record keeps it
    _ok(capsys, [*argv, "--ubm", str(ubm5), "--allow-overlap"])
    assert "adapted from another UBM" in read_companion(scores)["allowed_overlap"][0]
    text, _ = _ok(capsys, ["evaluate", "--scores", str(scores)])
    assert "ALLOWED:  " in text and str(ubm5) in text


def features_source(world):
    from ipem.speaker import FeatureSource
    root, corpus, common = world
    return FeatureSource(common[1], corpus)


def test_ubm_trained_on_test_segments_refused(world, gmm, capsys, tmp_path):
    root, corpus, common = world
    ubm = tmp_path / "ubm_tests.npz"
    _ok(capsys, ["train-ubm", "--list", str(corpus / "tests.lst"), "-K", "2", "--stage-iter",
                 "1", "--final-iter", "2", "--out", str(ubm), *common])
    models = tmp_path / "models"
    _ok(capsys, ["adapt", "--ubm", str(ubm), "--enroll", str(corpus / "enroll.lst"),
                 "--out-dir", str(models), *common])
    argv = ["score", "--ubm", str(ubm), "--models", str(models), "--trials",
            str(corpus / "trials.lst"), "--out", str(tmp_path / "s.txt"), *common]
    line = _refused(capsys, argv, ubm, corpus / "trials.lst")
    assert "was trained on 10 segment(s)" in line
    _ok(capsys, [*argv, "--allow-overlap"])


def test_old_artefacts_without_records_still_score(world, gmm, capsys, tmp_path):
    root, corpus, common = world
    out, ubm0, ubm5, models = gmm
    old_ubm, old_models = tmp_path / "ubm.npz", tmp_path / "models"
    UBMTrainer.load(ubm0).save(old_ubm)                       # as ipem wrote them before
    old_models.mkdir()
    for s in SPEAKERS:
        SpeakerModel.load(models / f"{s}.npz").save(old_models / f"{s}.npz")
    assert read_record(old_ubm) is None and read_record(old_models / "spk0.npz") is None
    scores = tmp_path / "s.txt"
    # even with the other UBM: without records nothing can be checked (one warning)
    _, err = _ok(capsys, ["score", "--ubm", str(ubm5), "--models", str(old_models), "--trials",
                          str(corpus / "trials.lst"), "--out", str(scores), *common[:-1]])
    warnings = [ln for ln in err.splitlines() if "no provenance record" in ln]
    assert len(warnings) == 1 and "and 4 more" in warnings[0]


@pytest.fixture(scope="module")
def ivec(world, gmm, tmp_path_factory):
    """An extractor on ubm.lst; i-vectors of everything; back-ends on all and on ubm.lst."""
    root, corpus, common = world
    out, ubm0, _, _ = gmm
    d = tmp_path_factory.mktemp("iv")
    tv, iv, bkg = d / "tv.npz", d / "iv.npz", d / "bkg.npz"
    leaky, clean = d / "leaky.npz", d / "clean.npz"
    steps = [["train-ivector", "--ubm", str(ubm0), "--list", str(corpus / "ubm.lst"), "-R", "3",
              "--iter", "3", "--out", str(tv)],
             ["extract-ivectors", "--extractor", str(tv), "--enroll", str(corpus / "enroll.lst"),
              "--list", str(corpus / "tests.lst"), "--list", str(corpus / "ubm.lst"), "--out",
              str(iv)],
             ["extract-ivectors", "--extractor", str(tv), "--list", str(corpus / "ubm.lst"),
              "--out", str(bkg)]]
    for argv in steps:
        assert main([*argv, *common]) == 0
    # the README's recipe of old: PLDA trained on every i-vector, the test segments included
    assert main(["train-plda", "--ivectors", str(iv), "--lda-dim", "3", "--out", str(leaky),
                 "--quiet"]) == 0
    assert main(["train-plda", "--ivectors", str(bkg), "--lda-dim", "3", "--out", str(clean),
                 "--quiet"]) == 0
    return d, tv, iv, leaky, clean


def test_plda_trained_on_test_ivectors_refused(world, ivec, capsys, tmp_path):
    root, corpus, common = world
    d, tv, iv, leaky, clean = ivec
    rec = read_record(leaky)
    assert rec["artefact"] == "backend" and "wav/spk0/spk0_test_0.wav" in rec["ids"]
    scores = tmp_path / "plda.txt"
    argv = ["score", "--backend", "plda", "--ivectors", str(iv), "--trials",
            str(corpus / "trials.lst"), "--out", str(scores), "--quiet"]
    line = _refused(capsys, [*argv, "--plda", str(leaky)], leaky, corpus / "trials.lst")
    assert "test segment" in line and not scores.exists()
    with pytest.raises(ProvenanceError, match=f"{leaky} was trained on 10 test segment"):
        score_ivectors(str(iv), str(corpus / "trials.lst"), model=str(leaky))
    # a back-end of the background i-vectors scores; evaluate says what it came from
    _ok(capsys, [*argv, "--plda", str(clean)])
    text, _ = _ok(capsys, ["evaluate", "--scores", str(scores)])
    assert "made from:  i-vector plda" in text and f"back-end: {clean}" in text
    assert f"extractor: {tv}" in text and "trained on 20 utterances" in text
    assert "closed set: 5 of the 5 trial speakers" in text
    # --allow-overlap: scored, and the record and evaluate say so
    _ok(capsys, [*argv, "--plda", str(leaky), "--allow-overlap"])
    assert "test segment" in read_companion(scores)["allowed_overlap"][0]
    text, _ = _ok(capsys, ["evaluate", "--scores", str(scores)])
    assert "ALLOWED:  " in text and str(leaky) in text


def test_old_backend_without_record_still_scores(world, ivec, capsys, tmp_path):
    root, corpus, common = world
    d, tv, iv, leaky, clean = ivec
    old = tmp_path / "old.npz"
    IvectorBackend.load(leaky).save(old)
    assert read_record(old) is None
    _, err = _ok(capsys, ["score", "--backend", "plda", "--ivectors", str(iv), "--plda", str(old),
                          "--trials", str(corpus / "trials.lst"), "--out",
                          str(tmp_path / "s.txt")])
    assert err.count("no provenance record") == 1


def test_extractor_trained_on_test_segments_refused(world, gmm, ivec, capsys, tmp_path):
    root, corpus, common = world
    out, ubm0, _, _ = gmm
    tv, iv = tmp_path / "tv.npz", tmp_path / "iv.npz"
    _ok(capsys, ["train-ivector", "--ubm", str(ubm0), "--list", str(corpus / "tests.lst"),
                 "-R", "2", "--iter", "2", "--out", str(tv), *common])
    _ok(capsys, ["extract-ivectors", "--extractor", str(tv), "--enroll",
                 str(corpus / "enroll.lst"), "--list", str(corpus / "tests.lst"), "--out",
                 str(iv), *common])
    argv = ["score", "--backend", "cosine", "--ivectors", str(iv), "--trials",
            str(corpus / "trials.lst"), "--out", str(tmp_path / "s.txt")]
    _refused(capsys, argv, tv, corpus / "trials.lst")
    _ok(capsys, [*argv, "--allow-overlap"])


def test_calibration_records_its_development_scores(world, gmm, capsys, tmp_path):
    root, corpus, common = world
    out, ubm0, _, models = gmm
    scores, cal = tmp_path / "s.txt", tmp_path / "cal.json"
    _ok(capsys, ["score", "--ubm", str(ubm0), "--models", str(models), "--trials",
                 str(corpus / "trials.lst"), "--out", str(scores), *common])
    _ok(capsys, ["calibrate", "--dev-scores", str(scores), "--out", str(cal)])
    rec = json.loads(cal.read_text())["provenance"]
    assert rec["dev_scores"][0]["file"] == str(scores)
    _, err = _ok(capsys, ["evaluate", "--scores", str(scores), "--calibration", str(cal),
                          "--out", str(tmp_path / "cal.txt")])
    assert "was trained on these scores" in err
    assert read_companion(tmp_path / "cal.txt")["calibrated_on_itself"]


def test_norm_refuses_models_and_scores_of_another_ubm(world, gmm, capsys, tmp_path):
    root, corpus, common = world
    out, ubm0, ubm5, models = gmm
    raw, normed = tmp_path / "raw.txt", tmp_path / "z.txt"
    _ok(capsys, ["score", "--ubm", str(ubm0), "--models", str(models), "--trials",
                 str(corpus / "trials.lst"), "--out", str(raw), *common])
    argv = ["norm", "--models", str(models), "--scores", str(raw), "--cohort",
            str(corpus / "enroll.lst"), "--method", "z", "--out", str(normed), *common]
    line = _refused(capsys, [*argv, "--ubm", str(ubm5)], raw, ubm5)
    assert "scored with another UBM" in line and not normed.exists()
    _ok(capsys, [*argv, "--ubm", str(ubm0)])
    rec = read_companion(normed)
    assert rec["normalization"] == "z" and rec["ubm_file"] == str(ubm0)
