"""Tests of ipem.speaker.metrics against hand-computed values."""

import math

import numpy as np
import pytest

from ipem.speaker.metrics import (SRE2008, SRE2010, act_dcf, bayes_threshold, compute_eer,
                                  det_curve, min_dcf, plot_det, rocch, rocch_eer)

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
