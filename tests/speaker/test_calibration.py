"""Cllr / minCllr, logistic calibration and fusion, score and key files, and their CLI.

Synthetic scores throughout: class-conditional Gaussians whose exact
log-likelihood ratio is known, so that calibrated values can be checked
against closed forms.
"""
import json
import math

import numpy as np
import pytest
from scipy import integrate
from scipy.stats import norm

from ipem.cli import main
from ipem import steps
from ipem.speaker import scorefiles
from ipem.speaker.calibration import DEFAULT_PRIOR, LogisticCalibration, load_calibration
from ipem.speaker.metrics import (SRE2008, SRE2010, act_dcf, bayes_threshold, cllr,
                                  effective_prior, min_cllr, min_dcf, optimal_llr)

LOG2 = math.log(2.0)


def _gaussian_llrs(mu, n, rng=None):
    """Perfectly calibrated LLRs: tar ~ N(mu, 2 mu), non ~ N(-mu, 2 mu).

    If x ~ N(+-m, 1) under the two hypotheses, llr(x) = 2 m x is N(+-2m^2, 4m^2):
    mean mu = 2 m^2 and variance 2 mu.  Deterministic quantiles when rng is None.
    """
    sd = math.sqrt(2 * mu)
    if rng is None:
        q = norm.ppf((np.arange(n) + 0.5) / n)
        return mu + sd * q, -mu + sd * q
    return rng.normal(mu, sd, n), rng.normal(-mu, sd, n)


def _scores(rng, n_tar, n_non, m=1.0, scale=0.05, shift=-2.0):
    """Raw, uncalibrated scores: an affine map of x ~ N(+-m, 1); llr = 2 m x."""
    x_tar, x_non = rng.normal(m, 1, n_tar), rng.normal(-m, 1, n_non)
    return scale * x_tar + shift, scale * x_non + shift


# ---------------------------------------------------------------------------
# Cllr, minCllr
# ---------------------------------------------------------------------------

def test_cllr_hand_examples():
    # the uninformative LLR 0 costs log2(1 + e^0) = 1 bit for every trial
    assert cllr([0.0, 0.0, 0.0], [0.0, 0.0]) == pytest.approx(1.0, abs=1e-15)
    # tar [0, log 3]: log2(2) = 1 and log2(1 + 1/3) = log2(4/3); non [0]: 1
    expected = 0.5 * ((1 + math.log2(4 / 3)) / 2 + 1)
    assert cllr([0.0, math.log(3)], [0.0]) == pytest.approx(expected, rel=1e-12)
    # confident errors cost about |llr| / log 2 bits each
    assert cllr([-20.0], [-20.0]) == pytest.approx(0.5 * 20 / LOG2, rel=1e-6)


@pytest.mark.parametrize("mu", [0.5, 2.0, 6.0])
def test_cllr_of_calibrated_gaussian_llrs_matches_the_integral(mu):
    # Cllr = E_tar[log2(1 + e^-s)] (the non-target term is equal by symmetry)
    sd = math.sqrt(2 * mu)
    exact, _ = integrate.quad(
        lambda s: norm.pdf(s, mu, sd) * np.logaddexp(0, -s) / LOG2, mu - 12 * sd, mu + 12 * sd)
    tar, non = _gaussian_llrs(mu, 200_000)
    assert cllr(tar, non) == pytest.approx(exact, rel=2e-4)
    # calibrated: the PAV oracle gains almost nothing
    assert 0 <= cllr(tar, non) - min_cllr(tar, non) < 0.005


def test_min_cllr_hand_example():
    # sorted 0N 1T 2N 3T -> PAV posteriors 0, 1/2, 1/2, 1; data prior odds 2/2 -> LLR
    # -inf, 0, 0, +inf: target costs (1 + 0)/2, non-target costs (0 + 1)/2 -> 0.5 bit
    tar_llr, non_llr = optimal_llr([1, 3], [0, 2])
    np.testing.assert_array_equal(tar_llr, [0, np.inf])
    np.testing.assert_array_equal(non_llr, [-np.inf, 0])
    assert min_cllr([1, 3], [0, 2]) == pytest.approx(0.5)


def test_optimal_llr_pools_ties():
    # scores 0: one non-target; 1: two targets and one non-target -> posteriors 0, 2/3;
    # prior odds 2/2: LLRs -inf and log 2, the same for every trial tied at 1
    tar_llr, non_llr = optimal_llr([1, 1], [1, 0])
    np.testing.assert_allclose(tar_llr, [math.log(2), math.log(2)])
    np.testing.assert_allclose(non_llr, [math.log(2), -np.inf])
    assert min_cllr([1, 1], [1, 1, 1]) == pytest.approx(1.0)     # all tied: 1 bit
    assert min_cllr([2, 3], [0, 1]) == 0.0                        # separated: 0
    # groups weigh by their size: 0 -> one target (rate 1), 1 -> T N N (rate 1/3) violate
    # monotonicity and pool to (1 + 1) / 4 = 1/2 (not (1 + 1/3) / 2): every LLR is 0
    tar_llr, non_llr = optimal_llr([0, 1], [1, 1])
    np.testing.assert_allclose(np.r_[tar_llr, non_llr], 0, atol=1e-15)
    assert min_cllr([0, 1], [1, 1]) == pytest.approx(1.0)


def test_optimal_llr_divides_out_the_data_prior():
    # sorted 0N 1T 2N 3T 4N 5N: PAV gives 0 for score 0 and pools the rest to 2/5;
    # prior odds n_tar / n_non = 1/2, so LLR = log((2/5) / (3/5)) - log(1/2) = log(4/3)
    tar_llr, non_llr = optimal_llr([1, 3], [0, 2, 4, 5])
    np.testing.assert_allclose(tar_llr, [math.log(4 / 3)] * 2)
    np.testing.assert_allclose(non_llr, [-np.inf] + [math.log(4 / 3)] * 3)
    expected = 0.5 * (math.log2(1 + 3 / 4) + 3 / 4 * math.log2(1 + 4 / 3))
    assert min_cllr([1, 3], [0, 2, 4, 5]) == pytest.approx(expected)


def test_min_cllr_bounds_and_invariance(seed):
    rng = np.random.default_rng(seed)
    tar, non = _scores(rng, 300, 3000)
    m = min_cllr(tar, non)
    assert 0 < m < 1
    assert m <= cllr(tar, non)
    for t, n in ((tar * 100, non * 100), (tar - 5, non - 5), (-tar, -non)):
        assert m <= cllr(t, n)
    # a property of the ranking: any increasing transform leaves it unchanged
    assert min_cllr(np.exp(tar), np.exp(non)) == pytest.approx(m, rel=1e-12)


def test_effective_prior():
    p = effective_prior(*SRE2008)
    assert p == pytest.approx(0.1 / 1.09)
    assert DEFAULT_PRIOR == p
    # same Bayes threshold as the operating point
    assert -math.log(p / (1 - p)) == pytest.approx(bayes_threshold(*SRE2008))
    assert effective_prior(*SRE2010) == pytest.approx(0.001)


# ---------------------------------------------------------------------------
# logistic calibration and fusion
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("prior", [0.01, DEFAULT_PRIOR, 0.5, 0.9])
def test_calibration_recovers_the_affine_llr(prior, seed):
    # raw s = 0.1 x - 3 with x ~ N(+-1, 1): llr = 2 x = 20 s + 60, whatever the prior
    rng = np.random.default_rng(seed)
    tar, non = _scores(rng, 20_000, 20_000, scale=0.1, shift=-3.0)
    cal = LogisticCalibration(prior=prior).fit(tar, non)
    assert cal.coef_.shape == (1,) and cal.n_systems_ == 1
    assert cal.coef_[0] == pytest.approx(20, rel=0.05)
    assert cal.intercept_ == pytest.approx(60, rel=0.05)
    llr = cal.transform(np.array([-3.0, -2.9]))
    assert llr == pytest.approx([0, 2], abs=0.2)


def test_calibration_matches_sklearn_weighted_logistic_regression(seed):
    from sklearn.linear_model import LogisticRegression
    rng = np.random.default_rng(seed)
    tar, non = _scores(rng, 400, 4000, scale=0.3, shift=1.0)
    p = 0.2
    cal = LogisticCalibration(prior=p, regularization=0.0).fit(tar, non)
    X = np.concatenate([tar, non])[:, None]
    y = np.r_[np.ones(tar.size), np.zeros(non.size)]
    w = np.where(y == 1, p / tar.size, (1 - p) / non.size)
    ref = LogisticRegression(C=1e12, tol=1e-12, max_iter=10_000).fit(X, y, sample_weight=w)
    # sklearn's intercept is the posterior log odds at llr 0: it includes logit(p)
    assert cal.coef_[0] == pytest.approx(ref.coef_[0, 0], rel=1e-4)
    assert cal.intercept_ == pytest.approx(ref.intercept_[0] - math.log(p / (1 - p)),
                                           rel=1e-4, abs=1e-6)
    # the objective is the prior-weighted cross-entropy in bits
    z = cal.transform(X[:, 0]) + math.log(p / (1 - p))
    ce = (p * np.mean(np.logaddexp(0, -z[y == 1]))
          + (1 - p) * np.mean(np.logaddexp(0, z[y == 0]))) / LOG2
    assert cal.objective_ == pytest.approx(ce, rel=1e-6)


def test_calibration_at_half_prior_minimises_cllr(seed):
    rng = np.random.default_rng(seed)
    tar, non = _scores(rng, 500, 5000)
    cal = LogisticCalibration(prior=0.5).fit(tar, non)
    c = cllr(cal.transform(tar), cal.transform(non))
    assert cal.objective_ == pytest.approx(c, rel=1e-9)
    for dw, db in ((1.05, 0), (0.95, 0), (1, 0.1), (1, -0.1)):
        w, b = cal.coef_[0] * dw, cal.intercept_ + db
        assert cllr(w * tar + b, w * non + b) > c
    assert min_cllr(tar, non) <= c


def test_fusion_of_independent_systems(seed):
    # two independent features: x1 ~ N(+-1, 1) (llr 2 x1), x2 ~ N(+-0.5, 1) (llr x2);
    # the joint LLR is 2 x1 + x2.  Systems give s1 = x1 / 3 + 1 and s2 = 2 x2, so the
    # fusion is llr = 6 s1 + 0.5 s2 - 6.
    rng = np.random.default_rng(seed)
    n = 30_000
    x1 = np.r_[rng.normal(1, 1, n), rng.normal(-1, 1, n)]
    x2 = np.r_[rng.normal(0.5, 1, n), rng.normal(-0.5, 1, n)]
    s = np.column_stack([x1 / 3 + 1, 2 * x2])
    cal = LogisticCalibration(prior=0.5).fit(s[:n], s[n:], systems=["a.txt", "b.txt"])
    np.testing.assert_allclose(cal.coef_, [6, 0.5], rtol=0.05)
    assert cal.intercept_ == pytest.approx(-6, rel=0.05)
    assert cal.systems_ == ["a.txt", "b.txt"]
    fused = cal.transform(s)
    one = LogisticCalibration(prior=0.5).fit(s[:n, 0], s[n:, 0])
    c1 = cllr(one.transform(s[:n, 0]), one.transform(s[n:, 0]))
    assert cllr(fused[:n], fused[n:]) < c1
    with pytest.raises(ValueError, match="1 systems .columns., expected 2"):
        cal.transform(s[:, 0])


def test_calibration_brings_act_dcf_to_min_dcf(seed):
    # average-LLR-like scores: small and negative, so the Bayes threshold rejects all
    rng = np.random.default_rng(seed)
    dev_tar, dev_non = _scores(rng, 2000, 20_000)
    ev_tar, ev_non = _scores(rng, 2000, 20_000)
    assert act_dcf(ev_tar, ev_non, *SRE2008) == pytest.approx(1.0)
    cal = LogisticCalibration().fit(dev_tar, dev_non)
    t, n = cal.transform(ev_tar), cal.transform(ev_non)
    mdcf = min_dcf(t, n, *SRE2008)[0]
    assert mdcf < 0.9
    assert act_dcf(t, n, *SRE2008) <= 1.15 * mdcf
    # the ranking, and so EER and minDCF, is unchanged by an increasing map
    assert mdcf == pytest.approx(min_dcf(ev_tar, ev_non, *SRE2008)[0])
    assert cllr(t, n) < 1 < cllr(ev_tar, ev_non)


def test_separable_scores_keep_finite_weights():
    # perfectly separated classes: the cross-entropy alone has no minimum (the weight would
    # grow without bound); with the penalty 0.5 * reg * v^2 on the weight v of the
    # standardised scores it has one.  Find it here with another optimiser.
    from scipy.optimize import minimize
    tar, non, p, reg = np.array([2.0, 3.0, 4.0]), np.array([0.0, 1.0]), DEFAULT_PRIOR, 1e-6
    cal = LogisticCalibration(prior=p, regularization=reg).fit(tar, non)
    pooled = np.r_[tar, non]
    mu, sd, lo = pooled.mean(), pooled.std(), math.log(p / (1 - p))

    def penalised(theta):
        v, c = theta
        zt, zn = v * (tar - mu) / sd + c + lo, v * (non - mu) / sd + c + lo
        return (p * np.mean(np.logaddexp(0, -zt)) + (1 - p) * np.mean(np.logaddexp(0, zn))) \
            / LOG2 + 0.5 * reg * v * v

    ref = minimize(penalised, [1.0, 0.0], method="Nelder-Mead",
                   options={"xatol": 1e-10, "fatol": 1e-16, "maxiter": 20_000})
    assert cal.coef_[0] == pytest.approx(ref.x[0] / sd, rel=1e-3)
    assert cal.intercept_ == pytest.approx(ref.x[1] - ref.x[0] * mu / sd, rel=1e-3)


@pytest.mark.parametrize("kwargs, tar, non, match", [
    ({"prior": 1.0}, [1.0], [0.0], "prior must be in"),
    ({"prior": 0.0}, [1.0], [0.0], "prior must be in"),
    ({"regularization": -1}, [1.0], [0.0], "regularization"),
    ({}, [], [0.0], "target scores are empty"),
    ({}, [1.0, np.nan], [0.0], "target scores contain NaN"),
    ({}, [[1.0, 2.0]], [[0.0]], "non-target scores have 1 systems"),
], ids=["prior1", "prior0", "reg", "empty", "nan", "columns"])
def test_calibration_rejects_bad_input(kwargs, tar, non, match):
    with pytest.raises(ValueError, match=match):
        LogisticCalibration(**kwargs).fit(tar, non)


def test_calibration_json_round_trip(tmp_path, seed):
    rng = np.random.default_rng(seed)
    tar, non = _scores(rng, 200, 2000)
    cal = LogisticCalibration().fit(tar, non, systems=["dev.txt"])
    path = cal.save(tmp_path / "cal.json")
    d = json.loads((tmp_path / "cal.json").read_text())
    assert d["format"] == "ipem-calibration" and d["systems"] == ["dev.txt"]
    assert d["prior"] == pytest.approx(DEFAULT_PRIOR)
    back = load_calibration(path)
    np.testing.assert_array_equal(back.transform(non), cal.transform(non))
    assert back.systems_ == ["dev.txt"] and back.n_target_ == 200
    with pytest.raises(ValueError, match="not fitted"):
        LogisticCalibration().transform([1.0])


@pytest.mark.parametrize("text, match", [
    ("{not json", "not valid JSON"),
    ('{"weights": [1.0], "bias": 0}', "not an ipem calibration"),
    ('{"format": "ipem-calibration", "version": 7}', "version 7"),
    ('{"format": "ipem-calibration", "version": 1, "weights": ["x"], "bias": 0, "prior": 0.5}',
     "malformed"),
    ('{"format": "ipem-calibration", "version": 1, "weights": [NaN], "bias": 0, "prior": 0.5}',
     "finite"),
], ids=["json", "format", "version", "weights", "nan"])
def test_bad_calibration_file_is_named(tmp_path, text, match):
    path = tmp_path / "cal.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as info:
        load_calibration(path)
    assert str(path) in str(info.value)


# ---------------------------------------------------------------------------
# score files and keys
# ---------------------------------------------------------------------------

def test_kaldi_score_file_with_key(tmp_path):
    scores = tmp_path / "scores.kaldi"
    scores.write_text("spk1 utt1 1.5\nspk1 utt2 -0.25\nspk2 utt1 0.5\nspk2 utt2 2\n")
    key = tmp_path / "trials.key"
    key.write_text("# model test label\nspk1 utt1 target\nspk2 utt2 target\n"
                   "spk1 utt2 nontarget\n")
    trials, s = scorefiles.read_score_file(scores, key)
    # the key's trials, in score-file order; 'spk2 utt1' is not in the key: skipped
    assert [tuple(t) for t in trials] == [("spk1", "utt1", "target"),
                                          ("spk1", "utt2", "nontarget"),
                                          ("spk2", "utt2", "target")]
    np.testing.assert_array_equal(s, [1.5, -0.25, 2.0])
    tar, non = scorefiles.read_scores(scores, key)
    np.testing.assert_array_equal(tar, [1.5, 2.0])
    np.testing.assert_array_equal(non, [-0.25])
    # unlabelled without a key: read, but refused where labels are needed
    trials, _ = scorefiles.read_score_file(scores)
    assert all(t.label is None for t in trials)
    with pytest.raises(ValueError, match=f"{scores}, line 1: no target/nontarget label"):
        scorefiles.read_scores(scores)
    # written back in both formats
    labelled = scorefiles.read_score_file(scores, key)
    scorefiles.write_score_file(tmp_path / "k.txt", *labelled, fmt="kaldi")
    assert (tmp_path / "k.txt").read_text().splitlines()[0] == "spk1 utt1 1.5"
    scorefiles.write_score_file(tmp_path / "i.txt", *labelled)
    assert (tmp_path / "i.txt").read_text().splitlines()[0] == "spk1 utt1 1.5 target"
    trials, back = scorefiles.read_score_file(tmp_path / "k.txt", key)
    np.testing.assert_array_equal(back, labelled[1])


@pytest.mark.parametrize("text, line, match", [
    ("a t1 1.0 target\na t2 nan nontarget\n", 2, "score 'nan' is not a finite number"),
    ("a t1 1.0 target\na t2 -inf nontarget\n", 2, "score '-inf' is not a finite number"),
    ("a t1 1.0 target\na t2 x nontarget\n", 2, "score 'x' is not a number"),
    ("a t1 1.0 target\na t2\n", 2, "expected 'model test score .target.nontarget.', got 2"),
    ("a t1 1.0 target extra\n", 1, "got 5 columns"),
    ("a t1 1.0 target\na t1 2.0 target\n", 2, "trial 'a t1' repeats line 1"),
    ("a t1 1.0 maybe\n", 1, "label 'maybe' is not target/nontarget"),
], ids=["nan", "inf", "text", "short", "long", "duplicate", "label"])
def test_bad_score_lines_are_named(tmp_path, text, line, match):
    path = tmp_path / "scores.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as info:
        scorefiles.read_score_file(path)
    assert str(info.value).startswith(f"{path}, line {line}: ")


@pytest.mark.parametrize("text, match", [
    ("a t1 target\na t1 nontarget\n", "line 2: trial 'a t1' repeats line 1"),
    ("a t1 target\na t2\n", "line 2: expected 'model test target|nontarget', got 2 columns"),
    ("a t1 1.5 target\n", "line 1: expected 'model test target|nontarget', got 4 columns"),
    ("a t1 yes\n", "line 1: label 'yes' is not target/nontarget"),
], ids=["duplicate", "short", "long", "label"])
def test_bad_key_lines_are_named(tmp_path, text, match):
    path = tmp_path / "trials.key"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as info:
        scorefiles.read_key(path)
    assert str(info.value).startswith(f"{path}, line ")


def test_key_disagreements(tmp_path):
    scores = tmp_path / "s.txt"
    scores.write_text("a t1 1.0 target\na t2 0.0 nontarget\n")
    key = tmp_path / "k.key"
    key.write_text("a t1 nontarget\na t2 nontarget\n")
    with pytest.raises(ValueError, match=f"{scores}, line 1: label 'target', but {key} says "
                                         "'nontarget'"):
        scorefiles.read_score_file(scores, key)
    key.write_text("a t1 target\na t2 nontarget\nb t3 target\nb t4 target\n")
    with pytest.raises(ValueError, match=f"{scores}: no score for 2 trials of {key} "
                                         "\\(first: 'b t3'\\)"):
        scorefiles.read_score_file(scores, key)


def test_score_matrix_aligns_files(tmp_path):
    (tmp_path / "a.txt").write_text("m t1 1 target\nm t2 2 nontarget\n")
    (tmp_path / "b.kaldi").write_text("m t2 20\nm t1 10\nm t3 30\n")
    trials, x = scorefiles.read_score_matrix([tmp_path / "a.txt", tmp_path / "b.kaldi"])
    assert [t.test for t in trials] == ["t1", "t2"]
    np.testing.assert_array_equal(x, [[1, 10], [2, 20]])
    (tmp_path / "c.txt").write_text("m t1 1 nontarget\nm t2 2 nontarget\n")
    with pytest.raises(ValueError, match="trial 'm t1' is 'nontarget' here but 'target'"):
        scorefiles.read_score_matrix([tmp_path / "a.txt", tmp_path / "c.txt"])
    (tmp_path / "d.txt").write_text("m t1 1\n")
    with pytest.raises(ValueError, match=f"{tmp_path / 'd.txt'}: no score for trial 'm t2'"):
        scorefiles.read_score_matrix([tmp_path / "a.txt", tmp_path / "d.txt"])


def test_evaluate_reports_cllr():
    r = steps.evaluate([0.0, math.log(3)], [0.0])
    assert r["cllr"] == pytest.approx(cllr([0.0, math.log(3)], [0.0]))
    assert r["min_cllr"] <= r["cllr"]
    text = steps.format_metrics(r)
    assert text.splitlines()[-1] == (f"Cllr       {r['cllr']:.4f} bits   "
                                     f"(minCllr {r['min_cllr']:.4f} bits)")


# ---------------------------------------------------------------------------
# the command line, on real files
# ---------------------------------------------------------------------------

def _write(path, tar, non, fmt="ipem", prefix="t"):
    """Score file of target trials 'spkA <prefix>i' and non-target 'spkB <prefix>j'."""
    lines = [f"spkA {prefix}{i} {float(s)!r}" + (" target" if fmt == "ipem" else "")
             for i, s in enumerate(tar)]
    lines += [f"spkB {prefix}{i} {float(s)!r}" + (" nontarget" if fmt == "ipem" else "")
              for i, s in enumerate(non)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _key(path, n_tar, n_non, prefix="t"):
    path.write_text("".join(f"spkA {prefix}{i} target\n" for i in range(n_tar))
                    + "".join(f"spkB {prefix}{i} nontarget\n" for i in range(n_non)))
    return path


def _metrics(out):
    lines = {ln.split()[0]: ln.split() for ln in out.splitlines() if ln.strip()}
    return (float(lines["minDCF"][1]), float(lines["actDCF"][1]), float(lines["Cllr"][1]),
            float(lines["Cllr"][4]))


def _error(capsys, argv, code=1):
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == code, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_cli_calibrate_then_evaluate(tmp_path, capsys, seed):
    rng = np.random.default_rng(seed)
    dev = _write(tmp_path / "dev.txt", *_scores(rng, 1000, 10_000), prefix="d")
    ev = _write(tmp_path / "eval.txt", *_scores(rng, 1000, 10_000), prefix="e")
    cal = tmp_path / "cal.json"
    assert main(["calibrate", "--dev-scores", str(dev), "--out", str(cal)]) == 0
    out, _ = capsys.readouterr()
    assert out.startswith("calibration on 1000 target, 10000 non-target trials: llr = ")
    assert out.rstrip().endswith(f"-> {cal}")
    assert load_calibration(cal).systems_ == [str(dev)]

    assert main(["evaluate", "--scores", str(ev)]) == 0
    raw_min, raw_act, raw_cllr, raw_min_cllr = _metrics(capsys.readouterr()[0])
    assert raw_act == pytest.approx(1.0) and raw_cllr > 1
    calibrated = tmp_path / "cal_eval.txt"
    assert main(["evaluate", "--scores", str(ev), "--calibration", str(cal), "--out",
                 str(calibrated)]) == 0
    out, _ = capsys.readouterr()
    assert out.startswith(f"calibrated with {cal}: llr = ")
    mn, act, c, mc = _metrics(out)
    assert mn == raw_min and mc == raw_min_cllr      # same ranking
    assert act <= 1.15 * mn and mc <= c < 1
    tar, non = scorefiles.read_scores(calibrated)
    assert tar.size == 1000 and act_dcf(tar, non) == pytest.approx(act, abs=1e-4)


def test_cli_kaldi_scores_with_key_and_fusion(tmp_path, capsys, seed):
    rng = np.random.default_rng(seed)
    n_tar, n_non = 500, 5000
    # two systems of the same trials; the second one carries independent evidence
    x = [rng.normal(1, 1, n_tar), rng.normal(-1, 1, n_non)]
    y = [rng.normal(0.7, 1, n_tar), rng.normal(-0.7, 1, n_non)]
    a = _write(tmp_path / "a.kaldi", 0.1 * x[0], 0.1 * x[1], fmt="kaldi")
    b = _write(tmp_path / "b.txt", y[0] - 3, y[1] - 3)          # ipem format, labelled
    key = _key(tmp_path / "trials.key", n_tar, n_non)
    # a Kaldi file needs the key
    line = _error(capsys, ["evaluate", "--scores", str(a)])
    assert line == (f"ipem evaluate: error: {a}, line 1: no target/nontarget label (Kaldi's "
                    "'model test score' lines need a key file)")
    assert main(["evaluate", "--scores", str(a), "--key", str(key)]) == 0
    single_min = _metrics(capsys.readouterr()[0])[0]

    cal = tmp_path / "fusion.json"
    assert main(["calibrate", "--dev-scores", str(a), str(b), "--key", str(key), "--out",
                 str(cal), "--prior", "0.5"]) == 0
    out, _ = capsys.readouterr()
    assert out.startswith(f"fusion of 2 systems on {n_tar} target, {n_non} non-target")
    fused = load_calibration(cal)
    assert fused.systems_ == [str(a), str(b)]
    np.testing.assert_allclose(fused.coef_, [20, 1.4], rtol=0.15)   # 2 x / 0.1, 2 * 0.7 y
    out_k = tmp_path / "fused.kaldi"
    assert main(["evaluate", "--scores", str(a), "--fuse", str(b), "--key", str(key),
                 "--calibration", str(cal), "--out", str(out_k), "--out-format", "kaldi"]) == 0
    fused_min = _metrics(capsys.readouterr()[0])[0]
    assert fused_min < single_min
    assert all(len(ln.split()) == 3 for ln in out_k.read_text().splitlines())
    # the number of files must match the fusion
    line = _error(capsys, ["evaluate", "--scores", str(a), "--key", str(key),
                           "--calibration", str(cal)])
    assert line == f"ipem evaluate: error: {cal} fuses 2 score files, got 1"
    line = _error(capsys, ["evaluate", "--scores", str(a), "--fuse", str(b)], code=2)
    assert line == "ipem evaluate: error: --fuse needs --calibration (the fusion's weights)"


@pytest.mark.parametrize("text, line, problem", [
    ("spkA t0 nan target\n", 1, "score 'nan' is not a finite number"),
    ("spkA t0 1.0 target\nspkB t1 0.0 nontarget\nspkA t0 2.0 target\n", 3,
     "trial 'spkA t0' repeats line 1"),
    ("spkA t0 1.0 target\nspkB t1 0.0\t nontarget x\n", 2,
     "expected 'model test score [target|nontarget]', got 5 columns"),
], ids=["nan", "duplicate", "columns"])
@pytest.mark.parametrize("command", ["calibrate", "evaluate"])
def test_cli_bad_score_line_is_one_named_line(tmp_path, capsys, text, line, problem, command):
    scores = tmp_path / "scores.txt"
    scores.write_text(text)
    argv = (["calibrate", "--dev-scores", str(scores), "--out", str(tmp_path / "c.json")]
            if command == "calibrate" else ["evaluate", "--scores", str(scores)])
    assert _error(capsys, argv) == f"ipem {command}: error: {scores}, line {line}: {problem}"
    assert not (tmp_path / "c.json").exists()


def test_cli_bad_calibration_file(tmp_path, capsys):
    scores = _write(tmp_path / "s.txt", [1.0], [0.0])
    cal = tmp_path / "cal.json"
    cal.write_text("[1, 2")
    line = _error(capsys, ["evaluate", "--scores", str(scores), "--calibration", str(cal)])
    assert line.startswith(f"ipem evaluate: error: {cal}: not valid JSON")
    line = _error(capsys, ["calibrate", "--dev-scores", str(_write(tmp_path / "t.txt", [1.0, 2.0],
                                                                        [])),
                           "--out", str(cal)])
    assert "calibration needs both target and non-target trials (got 2 target, 0 " in line
