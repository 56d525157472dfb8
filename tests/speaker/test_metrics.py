"""Tests of ipem.speaker.metrics against hand-computed values."""

import math

import numpy as np
import pytest

from ipem.speaker.metrics import (SRE2008, SRE2010, act_dcf, bayes_threshold, compute_eer,
                                  det_curve, min_cllr, min_dcf, plot_det, rocch, rocch_eer)

# Running example used throughout:
#   targets     : 0.9 0.8 0.4          (N_tar = 3)
#   non-targets : 0.7 0.3 0.2 0.1      (N_non = 4)
# Sorted pooled scores with labels (T = target, N = non-target):
#   0.1N 0.2N 0.3N 0.4T 0.7N 0.8T 0.9T
# Empirical ROC, accept iff score >= t; one point per cut between unique scores:
#   cut (t in)      P_miss  P_fa
#   (-inf, 0.1]     0       4/4
#   (0.1, 0.2]      0       3/4
#   (0.2, 0.3]      0       2/4
#   (0.3, 0.4]      0       1/4
#   (0.4, 0.7]      1/3     1/4
#   (0.7, 0.8]      1/3     0
#   (0.8, 0.9]      2/3     0
#   (0.9, inf)      1       0
TAR = [0.9, 0.8, 0.4]
NON = [0.7, 0.3, 0.2, 0.1]


def test_operating_points():
    assert tuple(SRE2008) == (0.01, 10, 1)
    assert tuple(SRE2010) == (0.001, 1, 1)
    assert SRE2008.p_target == 0.01 and SRE2010.c_miss == 1


def test_det_curve_hand_example():
    pm, pf = det_curve(TAR, NON)
    np.testing.assert_allclose(pm, [0, 0, 0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(pf, [1, 3 / 4, 2 / 4, 1 / 4, 1 / 4, 0, 0, 0])


def test_eer_hand_example():
    # P_miss - P_fa goes from -1/4 (cut (0.3,0.4]: 0 - 1/4) to +1/12 (cut
    # (0.4,0.7]: 1/3 - 1/4).  The ROC segment joining (P_fa, P_miss) =
    # (1/4, 0) and (1/4, 1/3) is vertical at P_fa = 1/4; it meets the diagonal
    # at 1/4.  Interpolation: a = (1/4) / (1/12 + 1/4) = 3/4,
    # EER = 0 + 3/4 * (1/3 - 0) = 1/4.
    assert compute_eer(TAR, NON) == pytest.approx(0.25)


def test_eer_exact_crossing_and_extremes():
    # tar 3 1, non 2 0: cut (0,1] gives P_miss = 0, P_fa = 1/2; cut (1,2]
    # gives P_miss = 1/2, P_fa = 1/2 -> crossing exactly at 0.5.
    assert compute_eer([3, 1], [2, 0]) == pytest.approx(0.5)
    # perfectly separated: the cut between 1 and 2 has P_miss = P_fa = 0.
    assert compute_eer([2, 3], [0, 1]) == 0.0
    # perfectly reversed: every target below every non-target -> EER = 1.
    assert compute_eer([0, 1], [2, 3]) == pytest.approx(1.0)
    # all tied: ROC goes straight from (P_fa,P_miss)=(1,0) to (0,1) -> 0.5.
    assert compute_eer([1, 1], [1, 1, 1]) == pytest.approx(0.5)


def test_eer_gaussian_scores():
    # tar ~ N(2,1), non ~ N(0,1): the EER threshold is 1, EER = Phi(-1) = 0.1587.
    rng = np.random.default_rng(0)
    tar = rng.normal(2.0, 1.0, 20000)
    non = rng.normal(0.0, 1.0, 20000)
    assert compute_eer(tar, non) == pytest.approx(0.158655, abs=0.006)
    # the convex hull can only be better, and by little with many trials
    r = rocch_eer(tar, non)
    assert r <= compute_eer(tar, non) + 1e-12
    assert r == pytest.approx(0.158655, abs=0.006)


def test_rocch_hand_example():
    # Sorted labels 0 0 0 1 0 1 1.  PAV (non-decreasing fit, equal blocks
    # pooled): [0 0 0] -> 0 (width 3); [1 0] -> 1/2 (width 2); [1 1] -> 1
    # (width 2).  Vertices after 0, 3, 5, 7 trials:
    #   after 0: misses 0/3, false alarms 4/4      -> (P_fa, P_miss) = (1, 0)
    #   after 3: misses 0/3, non-targets above 1/4 -> (1/4, 0)
    #   after 5: misses 1/3, non-targets above 0   -> (0, 1/3)
    #   after 7:                                    -> (0, 1)
    pm, pf = rocch(TAR, NON)
    np.testing.assert_allclose(pm, [0, 0, 1 / 3, 1])
    np.testing.assert_allclose(pf, [1, 1 / 4, 0, 0])
    # Segments: (1,0)-(1/4,0) horizontal -> 0; (0,1/3)-(0,1) vertical -> 0;
    # (1/4,0)-(0,1/3): the line P_fa/(1/4) + P_miss/(1/3) = 1, i.e.
    # 4 f + 3 m = 1, meets f = m = e at e = 1/7.
    assert rocch_eer(TAR, NON) == pytest.approx(1 / 7)
    # (the step ROC's EER is 1/4; the hull joins (1/4,0) to (0,1/3) directly)
    assert rocch_eer(TAR, NON) < compute_eer(TAR, NON)


def test_rocch_ties_and_separation():
    # all tied: stable sort puts targets first (pessimistic): labels 1 1 0 0
    # PAV pools everything to 1/2 -> hull (1,0)-(0,1) -> EER 1/2.
    assert rocch_eer([1, 1], [1, 1]) == pytest.approx(0.5)
    assert rocch_eer([2, 3], [0, 1]) == 0.0
    # reversed scores: PAV pools everything, hull is the chance diagonal.
    assert rocch_eer([0, 1], [2, 3]) == pytest.approx(0.5)


def test_min_dcf_hand_example():
    # p_target = 0.5, c_miss = c_fa = 1: DCF = 0.5 P_miss + 0.5 P_fa,
    # normaliser min(0.5, 0.5) = 0.5 -> DCF_norm = P_miss + P_fa:
    #   1, 3/4, 1/2, 1/4, 7/12, 1/3, 2/3, 1   -> min 1/4 on the cut (0.3, 0.4]
    # whose midpoint threshold is 0.35.
    val, thr = min_dcf(TAR, NON, 0.5, 1, 1)
    assert val == pytest.approx(0.25)
    assert thr == pytest.approx(0.35)
    # SRE2008: c_miss p = 10 * 0.01 = 0.1, c_fa (1 - p) = 0.99;
    # DCF_norm = (0.1 P_miss + 0.99 P_fa) / 0.1 = P_miss + 9.9 P_fa:
    #   9.9, 7.425, 4.95, 2.475, 1/3 + 2.475, 1/3, 2/3, 1
    # -> min 1/3 on the cut (0.7, 0.8], threshold 0.75.
    val, thr = min_dcf(TAR, NON, *SRE2008)
    assert val == pytest.approx(1 / 3)
    assert thr == pytest.approx(0.75)
    # un-normalised: 0.1 * 1/3
    val, _ = min_dcf(TAR, NON, *SRE2008, normalize=False)
    assert val == pytest.approx(0.1 / 3)
    # SRE2010: normaliser 0.001; DCF_norm = P_miss + 999 P_fa -> best at P_fa = 0:
    # cut (0.7, 0.8] gives 1/3.
    val, thr = min_dcf(TAR, NON, *SRE2010)
    assert val == pytest.approx(1 / 3)
    assert thr == pytest.approx(0.75)


def test_min_dcf_threshold_consistent_with_act_dcf():
    rng = np.random.default_rng(1)
    tar, non = rng.normal(1.5, 1, 300), rng.normal(0, 1, 3000)
    for op in (SRE2008, SRE2010, (0.5, 1, 1)):
        val, thr = min_dcf(tar, non, *op)
        assert act_dcf(tar, non, *op, threshold=thr) == pytest.approx(val)
        assert val <= 1.0 + 1e-12  # never worse than the trivial system


def test_min_dcf_trivial_threshold():
    # useless scores: rejecting everything (threshold +inf) costs exactly 1.
    val, thr = min_dcf([0.0], [1.0], *SRE2008)
    assert val == pytest.approx(1.0)
    assert thr == math.inf


def test_act_dcf_hand_example():
    # threshold 0.5 under SRE2008: P_miss = #{tar < 0.5}/3 = 1/3 (0.4),
    # P_fa = #{non >= 0.5}/4 = 1/4 (0.7).
    # DCF = 10*0.01*(1/3) + 1*0.99*(1/4) = 0.033333 + 0.2475 = 0.280833;
    # normalised by 0.1 -> 2.808333.
    assert act_dcf(TAR, NON, *SRE2008, threshold=0.5) == pytest.approx(2.8083333)
    assert act_dcf(TAR, NON, *SRE2008, threshold=0.5, normalize=False) == pytest.approx(0.2808333)


def test_act_dcf_bayes_threshold():
    # SRE2010 Bayes threshold for LLRs: log(1 * 0.999 / (1 * 0.001)) = log 999 = 6.9068.
    assert bayes_threshold(*SRE2010) == pytest.approx(math.log(999))
    # SRE2008: log(0.99 / 0.1) = log 9.9
    assert bayes_threshold(*SRE2008) == pytest.approx(math.log(9.9))
    tar = [8.0, 7.0, 5.0]    # 5.0 < 6.9068 -> 1 miss of 3
    non = [-3.0, 0.0, 7.5]   # 7.5 >= 6.9068 -> 1 false alarm of 3
    # DCF = 0.001 * 1/3 + 0.999 * 1/3 = 1/3; normalised by 0.001 -> 333.33
    assert act_dcf(tar, non, *SRE2010) == pytest.approx(1000 / 3)
    assert act_dcf(tar, non, *SRE2010, normalize=False) == pytest.approx(1 / 3)


@pytest.mark.parametrize("func", [compute_eer, rocch_eer, det_curve, min_dcf, act_dcf])
def test_bad_scores_raise(func):
    with pytest.raises(ValueError, match="target scores are empty"):
        func([], [1.0, 2.0])
    with pytest.raises(ValueError, match="non-target scores are empty"):
        func([1.0], [])
    with pytest.raises(ValueError, match="target scores contain NaN"):
        func([1.0, float("nan")], [0.0])
    with pytest.raises(ValueError, match="non-target scores contain NaN"):
        func([1.0], [0.0, float("nan")])
    with pytest.raises(ValueError, match="infinite"):
        func([1.0], [-math.inf])


def test_bad_operating_point():
    with pytest.raises(ValueError, match="p_target"):
        min_dcf(TAR, NON, 1.5, 1, 1)
    with pytest.raises(ValueError, match="costs"):
        act_dcf(TAR, NON, 0.01, 0, 1)


def test_plot_det_writes_png(tmp_path):
    rng = np.random.default_rng(0)
    curves = {
        "good": (rng.normal(3, 1, 200), rng.normal(0, 1, 2000)),
        "bad": (rng.normal(1, 1, 200), rng.normal(0, 1, 2000)),
    }
    out = tmp_path / "det.png"
    ax = plot_det(curves, out, title="test")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 5000
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0].startswith("good (EER") and labels[1].startswith("bad (EER")
    assert [t.get_text() for t in ax.get_xticklabels()] == \
        ["0.1", "0.2", "0.5", "1", "2", "5", "10", "20", "40"]


def test_plot_det_into_given_axes(tmp_path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    assert plot_det({"x": (TAR, NON)}, ax=ax) is ax
    with pytest.raises(ValueError, match="empty"):
        plot_det({})
    with pytest.raises(ValueError, match="target scores are empty"):
        plot_det({"x": ([], NON)}, ax=ax)


# ---------------------------------------------------------------------------
# PAV from SciPy, DET points beside scikit-learn's: the same numbers as the Python
# loops they replaced (kept here as the reference)
# ---------------------------------------------------------------------------

def reference_pav(y, w):
    """The weighted pool-adjacent-violators loop ipem had: block values, entries per block."""
    vals, weights, counts = [], [], []
    for v, wi in zip(np.asarray(y, float).tolist(), np.asarray(w, float).tolist()):
        vals.append(v)
        weights.append(wi)
        counts.append(1)
        while len(vals) >= 2 and vals[-2] >= vals[-1]:
            wt = weights[-2] + weights[-1]
            vals[-2] = (vals[-2] * weights[-2] + vals[-1] * weights[-1]) / wt
            weights[-2] = wt
            counts[-2] += counts[-1]
            vals.pop()
            weights.pop()
            counts.pop()
    return np.asarray(vals), np.asarray(counts, dtype=np.int64)


def reference_rocch(tar, non):
    """ROCCH vertices by the reference PAV loop over the target-first sorted labels."""
    tar, non = np.asarray(tar, float), np.asarray(non, float)
    labels = np.concatenate([np.ones(tar.size), np.zeros(non.size)])
    labels = labels[np.argsort(np.concatenate([tar, non]), kind="stable")]
    _, widths = reference_pav(labels, np.ones(labels.size))
    edges = np.concatenate([[0], np.cumsum(widths)])
    tar_below = np.concatenate([[0.0], np.cumsum(labels)])[edges]
    return tar_below / tar.size, 1.0 - (edges - tar_below) / non.size


def reference_rocch_eer(tar, non):
    pm, pf = reference_rocch(tar, non)
    eer = 0.0
    for i in range(pm.size - 1):
        df, dm = pf[i] - pf[i + 1], pm[i + 1] - pm[i]
        if df != 0 and dm != 0:
            eer = max(eer, (pm[i] * df + pf[i] * dm) / (df + dm))
    return eer


def reference_min_cllr(tar, non):
    tar, non = np.asarray(tar, float), np.asarray(non, float)
    scores = np.concatenate([tar, non])
    labels = np.concatenate([np.ones(tar.size), np.zeros(non.size)])
    u, inv = np.unique(scores, return_inverse=True)
    n = np.bincount(inv, minlength=u.size).astype(float)
    n_tar = np.bincount(inv, weights=labels, minlength=u.size)
    vals, counts = reference_pav(n_tar / n, n)
    post = np.repeat(vals, counts)[inv]
    with np.errstate(divide="ignore"):
        llr = np.log(post) - np.log1p(-post) - math.log(tar.size / non.size)
    with np.errstate(over="ignore"):
        c = np.mean(np.logaddexp(0, -llr[:tar.size])) + np.mean(np.logaddexp(0, llr[tar.size:]))
    return 0.5 * c / math.log(2.0)


def _score_sets():
    rng = np.random.default_rng(7)
    sets = {"hand": (TAR, NON), "separated": ([3.0, 4.0], [1.0, 2.0]),
            "reversed": ([1.0, 2.0], [3.0, 4.0]), "all tied": ([1.0] * 3, [1.0] * 5)}
    for name, (n_tar, n_non, digits) in {"gaussian": (300, 3000, None),
                                         "ties": (200, 2000, 1), "coarse ties": (50, 500, 0),
                                         "few targets": (3, 4000, 2)}.items():
        tar, non = rng.normal(2.0, 1.0, n_tar), rng.normal(0.0, 1.5, n_non)
        if digits is not None:          # rounded: many tied scores, within and across classes
            tar, non = np.round(tar, digits), np.round(non, digits)
        sets[name] = (tar, non)
    return sets


SCORE_SETS = _score_sets()


@pytest.mark.parametrize("name", SCORE_SETS)
def test_rocch_equals_the_reference_pav(name):
    tar, non = SCORE_SETS[name]
    pm, pf = rocch(tar, non)
    ref_pm, ref_pf = reference_rocch(tar, non)
    np.testing.assert_array_equal(pm, ref_pm)
    np.testing.assert_array_equal(pf, ref_pf)
    assert rocch_eer(tar, non) == reference_rocch_eer(tar, non)


@pytest.mark.parametrize("name", SCORE_SETS)
def test_min_cllr_equals_the_reference_pav(name):
    tar, non = SCORE_SETS[name]
    # the pooled values are one division of exact sums here, running weighted means there
    np.testing.assert_allclose(min_cllr(tar, non), reference_min_cllr(tar, non),
                               rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("name", SCORE_SETS)
def test_det_points_are_scikit_learns(name):
    """scikit-learn's det_curve gives the same points, less the runs at either end where
    a rate stays 0 (off a DET plot), so ipem keeps its own, which compute_eer needs whole."""
    from sklearn.metrics import det_curve as sk_det_curve

    tar, non = SCORE_SETS[name]
    pm, pf = det_curve(tar, non)
    scores = np.concatenate([tar, non])
    sk_fa, sk_miss, thresholds = sk_det_curve(
        np.concatenate([np.ones(len(tar)), np.zeros(len(non))]), scores)
    # ipem's point k accepts the scores >= the k-th smallest unique score
    k = np.searchsorted(np.unique(scores), thresholds)
    assert np.all(np.diff(k) == 1)          # a contiguous run of ipem's points
    # the same counts; ipem's P_fa is 1 - accepted/n, scikit-learn's rejected/n (one rounding)
    np.testing.assert_allclose(pf[k], sk_fa, rtol=0, atol=1e-15)
    np.testing.assert_allclose(pm[k], sk_miss, rtol=0, atol=1e-15)
    assert np.all(pm[:k[0]] == 0) and np.all(pf[k[-1] + 1:] == 0)    # what it leaves out
