"""Z/T/ZT/S/AS-norm: hand-computed cases, cohort scoring on a controller, ``ipem norm``.

The end-to-end cases run on synthetic feature files (no speech tools): four
trial speakers and an impostor cohort from three other speakers.
"""
import numpy as np
import pytest

import ipem
from ipem import io as features
from ipem.cli import main
from ipem.speaker import SpeakerModel, llr_scores
from ipem.speaker.map import adapt_speakers
from ipem.speaker.normalization import (NORMALIZATIONS, asnorm, cohort_needs, cohort_statistics,
                                        normalize_scores, score_matrix, snorm, tnorm, znorm,
                                        ztnorm)
from ipem.speaker.scorefiles import read_score_file

# ---------------------------------------------------------------------------
# hand-computed cases
# ---------------------------------------------------------------------------
# Three trials: (model 0, test 1), (model 0, test 0), (model 1, test 0), raw scores 3, 1, 4.
SCORES = [3.0, 1.0, 4.0]
ENROLL_INDEX = [0, 0, 1]
TEST_INDEX = [1, 0, 0]
# model 0 vs cohort: 0 2 -> mean 1, sd 1;      model 1: 1 5 -> mean 3, sd 2
ENROLL_COHORT = [[0.0, 2.0], [1.0, 5.0]]
# test 0 vs cohort models: 2 4 -> mean 3, sd 1; test 1: 0 1 -> mean 0.5, sd 0.5
TEST_COHORT = [[2.0, 4.0], [0.0, 1.0]]
Z = [(3 - 1) / 1, (1 - 1) / 1, (4 - 3) / 2]            # 2, 0, 0.5
T = [(3 - 0.5) / 0.5, (1 - 3) / 1, (4 - 3) / 1]        # 5, -2, 1


def test_cohort_statistics_hand_example():
    mean, std = cohort_statistics([[1, 2, 3, 4], [0, np.nan, 2, np.nan]])
    np.testing.assert_allclose(mean, [2.5, 1.0])
    np.testing.assert_allclose(std, [np.sqrt(1.25), 1.0])        # ddof = 0
    # top 2 of 1 5 3 4 -> 5 4; of nan 1 3 2 -> 3 2 (NaN never counts as a top score)
    mean, std = cohort_statistics([[1, 5, 3, 4], [np.nan, 1, 3, 2]], top_n=2)
    np.testing.assert_allclose(mean, [4.5, 2.5])
    np.testing.assert_allclose(std, [0.5, 0.5])
    # top_n above the cohort size: the whole row
    np.testing.assert_allclose(cohort_statistics([[1, 5, 3, 4]], top_n=10)[0], [3.25])


def test_znorm_tnorm_snorm_hand_example():
    np.testing.assert_allclose(znorm(SCORES, ENROLL_COHORT, ENROLL_INDEX), Z)
    np.testing.assert_allclose(tnorm(SCORES, TEST_COHORT, TEST_INDEX), T)
    np.testing.assert_allclose(snorm(SCORES, ENROLL_COHORT, TEST_COHORT, ENROLL_INDEX,
                                     TEST_INDEX), [3.5, -1.0, 0.75])
    # without an index, row i serves trial i
    np.testing.assert_allclose(znorm([3.0, 4.0], ENROLL_COHORT), [2.0, 0.5])


def test_asnorm_hand_example():
    # a third, far cohort member that the top-2 statistics leave out
    enroll = [[0.0, 2.0, -10.0], [1.0, 5.0, 3.0]]      # top 2: 2 0 -> 1, 1;  5 3 -> 4, 1
    test = [[2.0, 4.0, -6.0], [0.0, 1.0, -1.0]]        # top 2: 4 2 -> 3, 1;  1 0 -> 0.5, 0.5
    z = [(3 - 1) / 1, (1 - 1) / 1, (4 - 4) / 1]
    t = [(3 - 0.5) / 0.5, (1 - 3) / 1, (4 - 3) / 1]
    out = asnorm(SCORES, enroll, test, ENROLL_INDEX, TEST_INDEX, top_n=2)
    np.testing.assert_allclose(out, 0.5 * (np.array(z) + np.array(t)))   # 3.5, -1, 0.5
    # the whole cohort: S-norm
    np.testing.assert_allclose(
        asnorm(SCORES, enroll, test, ENROLL_INDEX, TEST_INDEX, top_n=3),
        snorm(SCORES, enroll, test, ENROLL_INDEX, TEST_INDEX))
    assert not np.allclose(out, snorm(SCORES, enroll, test, ENROLL_INDEX, TEST_INDEX))


def test_ztnorm_hand_example():
    # Z: model vs cohort segments 0 2 -> mean 1, sd 1 -> z = (3 - 1) / 1 = 2.
    # cohort models vs cohort segments (NaN: own segment): c0: 1 3 -> 2, 1; c1: 0 4 -> 2, 2.
    # test vs cohort models 4 8 -> Z-normed (4 - 2)/1 = 2, (8 - 2)/2 = 3 -> mean 2.5, sd 0.5
    # -> (2 - 2.5) / 0.5 = -1.
    cc = [[np.nan, 1.0, 3.0], [0.0, np.nan, 4.0]]
    assert ztnorm([3.0], [[0.0, 2.0]], [[4.0, 8.0]], cc) == pytest.approx([-1.0])
    with pytest.raises(ValueError, match="cohort_cohort has 2 cohort models .rows. but "
                                         "test_cohort has 3"):
        ztnorm([3.0], [[0.0, 2.0]], [[4.0, 8.0, 1.0]], cc)


@pytest.mark.parametrize("method", list(NORMALIZATIONS))
def test_normalize_scores_dispatch(method):
    cc = [[np.nan, 0.0, 2.0], [3.0, np.nan, 5.0]]       # 2 cohort models x 3 segments
    kwargs = dict(enroll_cohort=ENROLL_COHORT, test_cohort=TEST_COHORT, cohort_cohort=cc,
                  enroll_index=ENROLL_INDEX, test_index=TEST_INDEX, top_n=2)
    direct = {
        "z": lambda: znorm(SCORES, ENROLL_COHORT, ENROLL_INDEX),
        "t": lambda: tnorm(SCORES, TEST_COHORT, TEST_INDEX),
        "zt": lambda: ztnorm(SCORES, ENROLL_COHORT, TEST_COHORT, cc, ENROLL_INDEX, TEST_INDEX),
        "s": lambda: snorm(SCORES, ENROLL_COHORT, TEST_COHORT, ENROLL_INDEX, TEST_INDEX),
        "as": lambda: asnorm(SCORES, ENROLL_COHORT, TEST_COHORT, ENROLL_INDEX, TEST_INDEX,
                             top_n=2),
    }[method]()
    np.testing.assert_allclose(normalize_scores(method, SCORES, **kwargs), direct)
    # every matrix the method needs is required
    for need in cohort_needs(method):
        with pytest.raises(ValueError, match=f"{method}-norm needs {need}_cohort"):
            normalize_scores(method, SCORES, **{**kwargs, f"{need}_cohort": None})


@pytest.mark.parametrize("call, match", [
    (lambda: cohort_statistics([[1.0, np.nan, np.nan]]), "row 0 has 1 scores"),
    (lambda: cohort_statistics([[1.0, 2.0], [3.0, 3.0]]), "row 1 has no spread"),
    (lambda: cohort_statistics([[1.0, np.inf]]), "infinite"),
    (lambda: cohort_statistics([[1.0, 2.0]], top_n=1), "top_n must be an integer >= 2"),
    (lambda: cohort_statistics([1.0, 2.0]), "shape .n_rows, n_cohort."),
    (lambda: znorm(SCORES, ENROLL_COHORT), "2 rows but there are 3 trials"),
    (lambda: znorm(SCORES, ENROLL_COHORT, [0, 1, 2]), "points outside its 2 rows"),
    (lambda: tnorm(SCORES, TEST_COHORT, [0.0, 1.0, 0.0]), "must be 3 integers"),
    (lambda: znorm([1.0, np.nan], ENROLL_COHORT), "scores contain NaN"),
    (lambda: normalize_scores("x", SCORES), "unknown score normalisation 'x'"),
], ids=["few", "spread", "inf", "top_n", "1d", "rows", "outside", "float-index", "nan",
        "method"])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---------------------------------------------------------------------------
# cohort scoring and `ipem norm` on feature files
# ---------------------------------------------------------------------------
D = 4
SPEAKERS = ["spk0", "spk1", "spk2", "spk3"]
COHORT_SPEAKERS = ["coh0", "coh1", "coh2"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Feature files, lists (enroll, trials, cohort), a UBM, models and cohort models."""
    root = tmp_path_factory.mktemp("norm")
    corpus, feats = root / "corpus", root / "feats"
    corpus.mkdir()
    rng = np.random.default_rng(0)
    shared = rng.normal(0, 4, size=(3, D))
    utts = {}
    for s in SPEAKERS + COHORT_SPEAKERS:
        centers = shared + rng.normal(0, 1.0, size=(3, D))
        for role, count in (("ubm", 2), ("enroll", 2), ("test", 2)):
            for i in range(count):
                rel = f"wav/{s}/{s}_{role}_{i}.wav"
                lab = rng.integers(0, 3, size=150)
                X = (centers[lab] + rng.normal(0, 0.6, size=(150, D))).astype(np.float32)
                path = feats / rel.replace(".wav", ".htk")
                path.parent.mkdir(parents=True, exist_ok=True)
                features.write(path, X)
                utts.setdefault((s, role), []).append(rel)
    (corpus / "enroll.lst").write_text("".join(f"{s} {' '.join(utts[s, 'enroll'])}\n"
                                               for s in SPEAKERS))
    (corpus / "trials.lst").write_text("".join(
        f"{m} {rel} {'target' if m == s else 'nontarget'}\n"
        for m in SPEAKERS for s in SPEAKERS for rel in utts[s, "test"]))
    # one cohort member per utterance, and one of two utterances (a two-file segment)
    cohort = {f"{s}_{role}_{i}": [rel] for s in COHORT_SPEAKERS
              for role in ("enroll", "test") for i, rel in enumerate(utts[s, role])}
    cohort["coh0_ubm"] = utts["coh0", "ubm"]
    (corpus / "cohort.lst").write_text("".join(f"{c} {' '.join(r)}\n" for c, r in cohort.items()))
    X = np.concatenate([features.load(features.describe(feats / r.replace(".wav", ".htk")))
                        for s in SPEAKERS + COHORT_SPEAKERS for r in utts[s, "ubm"]])
    ubm = ipem.UBMTrainer(4, stage_iter=3, final_iter=5, random_state=0).fit(X)
    ubm.save(root / "ubm.npz")
    common = ["--features", str(feats), "--root", str(corpus), "--quiet"]
    for lst, out in (("enroll.lst", "models"), ("cohort.lst", "cohort_models")):
        assert main(["adapt", *common, "--ubm", str(root / "ubm.npz"), "--enroll",
                     str(corpus / lst), "--out-dir", str(root / out)]) == 0
    assert main(["score", *common, "--ubm", str(root / "ubm.npz"), "--models",
                 str(root / "models"), "--trials", str(corpus / "trials.lst"), "--out",
                 str(root / "scores.txt")]) == 0
    return root, corpus, feats, cohort


def _frames(feats, rels):
    return np.concatenate([features.load(features.describe(feats / r.replace(".wav", ".htk")))
                           for r in rels])


def _expected(world, method, top_n=None):
    """The normalised scores, from llr_scores and NumPy statistics written out here."""
    root, corpus, feats, cohort = world
    trials, raw = read_score_file(root / "scores.txt")
    ubm = ipem.UBMTrainer.load(root / "ubm.npz")
    model = lambda d, m: SpeakerModel.load(root / d / f"{m}.npz")          # noqa: E731
    seg = {c: _frames(feats, r) for c, r in cohort.items()}
    cmodels = [model("cohort_models", c) for c in cohort]

    def stats(row, n=None):
        row = np.sort(np.asarray(row))[::-1][:n]
        return row.mean(), row.std()

    out = []
    for t, s in zip(trials, raw):
        X = _frames(feats, [t.test])
        mu_e, sd_e = stats([llr_scores(seg[c], ubm, [model("models", t.model)])[0]
                            for c in cohort], top_n)
        t_row = llr_scores(X, ubm, cmodels)
        mu_t, sd_t = stats(t_row, top_n)
        z, tn = (s - mu_e) / sd_e, (s - mu_t) / sd_t
        if method == "zt":
            zc = []
            for c, cm in zip(cohort, cmodels):
                m, d = stats([llr_scores(seg[o], ubm, [cm])[0] for o in cohort if o != c])
                zc.append((t_row[list(cohort).index(c)] - m) / d)
            m, d = stats(zc)
            out.append((z - m) / d)
        else:
            out.append({"z": z, "t": tn, "s": 0.5 * (z + tn), "as": 0.5 * (z + tn)}[method])
    return trials, np.array(out)


@pytest.mark.parametrize("method, top_n", [("z", None), ("t", None), ("zt", None), ("s", None),
                                           ("as", 3)])
def test_cli_norm_matches_hand_computation(world, capsys, tmp_path, method, top_n):
    root, corpus, feats, cohort = world
    out = tmp_path / f"{method}.txt"
    argv = ["norm", "--features", str(feats), "--root", str(corpus), "--ubm",
            str(root / "ubm.npz"), "--models", str(root / "models"), "--scores",
            str(root / "scores.txt"), "--cohort", str(corpus / "cohort.lst"),
            "--cohort-models", str(root / "cohort_models"), "--method", method, "--out",
            str(out), "--cluster", "local:2"]  # without --quiet: the result line
    if top_n:
        argv += ["--top-n", str(top_n)]
    assert main(argv) == 0
    assert capsys.readouterr().out == f"{method}-normalised 32 trials -> {out}\n"
    trials, got = read_score_file(out)
    exp_trials, expected = _expected(world, method, top_n)
    assert [tuple(t) for t in trials] == [tuple(t) for t in exp_trials]
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    # the normalisation keeps the speakers apart (not ZT-norm here: its cohort models'
    # Z statistics include the other members of their own speaker, which are few and many)
    tar = got[[t.label == "target" for t in trials]]
    non = got[[t.label == "nontarget" for t in trials]]
    assert method == "zt" or tar.min() > non.max()


def test_cli_norm_errors(world, capsys, tmp_path):
    root, corpus, feats, cohort = world
    base = ["norm", "--features", str(feats), "--root", str(corpus), "--ubm",
            str(root / "ubm.npz"), "--models", str(root / "models"), "--scores",
            str(root / "scores.txt"), "--cohort", str(corpus / "cohort.lst"), "--out",
            str(tmp_path / "n.txt"), "--quiet"]

    def error(argv, code=1):
        assert main(argv) == code
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1
        return lines[0]

    assert error(base + ["--method", "s"], code=2) == (
        "ipem norm: error: --method s needs --cohort-models (a directory of "
        "<cohort_id>.npz: ipem adapt --enroll COHORT_LIST --out-dir DIR)")
    empty = tmp_path / "cmodels"
    empty.mkdir()
    line = error(base + ["--method", "t", "--cohort-models", str(empty)])
    assert line.startswith(f"ipem norm: error: {corpus / 'cohort.lst'}: no model file "
                           f"{empty}/coh0_enroll_0.npz for cohort member 'coh0_enroll_0'")
    one = tmp_path / "one.lst"
    one.write_text("c0 wav/coh0/coh0_test_0.wav\n")
    assert error(base + ["--method", "z", "--cohort", str(one)]) == (
        f"ipem norm: error: {one}: a cohort needs at least 2 members, got 1")
    assert not (tmp_path / "n.txt").exists()


def test_score_matrix_on_engines_matches_llr_scores(world, dv_client):
    root, corpus, feats, cohort = world
    ubm = ipem.UBMTrainer.load(root / "ubm.npz")
    enroll = {s: [feats / f"wav/{s}/{s}_enroll_{i}.htk" for i in range(2)] for s in SPEAKERS}
    models = adapt_speakers(ubm, enroll, progress=False)
    segments = {c: [str(feats / r.replace(".wav", ".htk")) for r in rels]
                for c, rels in cohort.items()}
    exclude = [("spk1", "coh2_test_1"), ("spk3", "coh0_ubm")]
    local = score_matrix(ubm, models, segments, exclude=exclude)
    remote = score_matrix(ubm, models, segments, exclude=exclude, controller=dv_client)
    assert local.shape == (len(SPEAKERS), len(cohort))
    np.testing.assert_allclose(remote, local, rtol=1e-12, equal_nan=True)
    for i, s in enumerate(SPEAKERS):
        for j, c in enumerate(cohort):
            if (s, c) in exclude:
                assert np.isnan(local[i, j])
            else:
                X = _frames(feats, cohort[c])
                assert local[i, j] == pytest.approx(llr_scores(X, ubm, [models[s]])[0],
                                                    rel=1e-12)


def test_registry_is_names_to_functions(monkeypatch):
    # the registry holds the functions; what each needs is read off its parameters
    assert NORMALIZATIONS["z"] is znorm and NORMALIZATIONS["as"] is asnorm
    assert {m: cohort_needs(m) for m in NORMALIZATIONS} == {
        "z": ("enroll",), "t": ("test",), "zt": ("enroll", "test", "cohort"),
        "s": ("enroll", "test"), "as": ("enroll", "test")}

    # a new normalization: one function and one registry line
    def mean_norm(scores, test_cohort, test_index=None):
        return np.asarray(scores) - np.asarray(test_cohort).mean(axis=1)[test_index]

    monkeypatch.setitem(NORMALIZATIONS, "m", mean_norm)
    assert cohort_needs("m") == ("test",)
    np.testing.assert_allclose(
        normalize_scores("m", SCORES, test_cohort=TEST_COHORT, test_index=TEST_INDEX),
        np.asarray(SCORES) - np.asarray(TEST_COHORT).mean(axis=1)[TEST_INDEX])
    with pytest.raises(ValueError, match="m-norm needs test_cohort"):
        normalize_scores("m", SCORES)
    with pytest.raises(ValueError, match="unknown score normalisation 'y'"):
        cohort_needs("y")
