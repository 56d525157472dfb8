"""Enrollment lists as the field writes them (issue 20), read by FeatureSource.enrollment.

Written here by hand after each tool's documented layout: ipem's ``model utt utt ...``
lines; one ``(model, segment)`` pair per line (SIDEKIT's IdMap text ``leftid rightid``, the
rows of NIST SRE enrollment tables); the NIST SRE16-SRE21 ``*_enrollment.tsv`` tables
(tab-separated under a ``modelid segmentid side`` header; SRE16 says ``segment``).  The
lines of one model are merged in file order; only an exact repeat of a pair is refused.
"""
import os

import pytest

from ipem.speaker import FeatureSource

ENROLL = {"1001_sre18": ["enroll/dlrdnskt_sre18.sph", "enroll/qwertyui_sre18.sph"],
          "1002_sre18": ["enroll/zxcvbnmm_sre18.sph"]}


def _features(src, lst):
    return {m: [os.path.relpath(f, "feats") for f in fs]
            for m, fs in src.enrollment(lst).items()}


WANT = {m: [u[:-4] + ".htk" for u in utts] for m, utts in ENROLL.items()}


def test_one_line_per_model(tmp_path):
    lst = tmp_path / "enroll.lst"
    lst.write_text("".join(f"{m} {' '.join(u)}\n" for m, u in ENROLL.items()))
    assert _features(FeatureSource("feats", "corpus"), lst) == WANT


def test_one_pair_per_line_as_sidekit_idmap(tmp_path):
    lst = tmp_path / "idmap.txt"
    lst.write_text("".join(f"{m} {u}\n" for m, utts in ENROLL.items() for u in utts))
    assert _features(FeatureSource("feats", "corpus"), lst) == WANT


def test_pairs_interleaved_and_mixed_with_lines(tmp_path):
    a, b = ENROLL["1001_sre18"], ENROLL["1002_sre18"]
    lst = tmp_path / "enroll.lst"
    lst.write_text(f"1001_sre18 {a[0]}\n1002_sre18 {b[0]}\n# later\n1001_sre18 {a[1]}\n")
    got = _features(FeatureSource("feats", "corpus"), lst)
    assert got == WANT and list(got) == ["1001_sre18", "1002_sre18"]


@pytest.mark.parametrize("segment", ["segmentid", "segment"])      # SRE18-21, SRE16
def test_nist_enrollment_table(tmp_path, segment):
    lst = tmp_path / "sre18_dev_enrollment.tsv"
    lst.write_text(f"modelid\t{segment}\tside\n" + "".join(
        f"{m}\t{u}\ta\n" for m, utts in ENROLL.items() for u in utts))
    assert _features(FeatureSource("feats", "corpus"), lst) == WANT


def test_nist_enrollment_table_of_data_dir_ids(tmp_path):
    # the segment column names what a list entry names: here feature files under the root
    lst = tmp_path / "enrollment.tsv"
    lst.write_text("modelid\tsegmentid\tside\nm1\tx/a.npy\ta\nm1\tx/b.npy\ta\n")
    got = FeatureSource(None, "corpus", fmt="npy").enrollment(lst)
    assert got == {"m1": [os.path.join("corpus", "x/a.npy"), os.path.join("corpus", "x/b.npy")]}


def test_an_exact_repeated_pair_is_refused_with_both_lines(tmp_path):
    lst = tmp_path / "enroll.lst"
    u = ENROLL["1001_sre18"][0]
    lst.write_text(f"1001_sre18 {u}\n1002_sre18 {u}\n\n1001_sre18 {u}\n")
    with pytest.raises(ValueError) as info:
        FeatureSource("feats", "corpus").enrollment(lst)
    assert str(info.value) == (f"{lst}, line 4: utterance {u} is listed twice (first at "
                               "line 1): it would count twice")


def test_a_repeated_pair_in_a_nist_table_is_refused(tmp_path):
    lst = tmp_path / "enrollment.tsv"
    lst.write_text("modelid\tsegmentid\tside\nm1\tenroll/a.sph\ta\nm1\tenroll/a.sph\ta\n")
    with pytest.raises(ValueError, match=r"line 3: utterance enroll/a.sph is listed twice "
                                         r"\(first at line 2\)"):
        FeatureSource("feats", "corpus").enrollment(lst)


def test_one_segment_may_enroll_two_models(tmp_path):
    lst = tmp_path / "enroll.lst"
    lst.write_text("m1 enroll/a.sph\nm2 enroll/a.sph\n")
    got = _features(FeatureSource("feats", "corpus"), lst)
    assert got == {"m1": ["enroll/a.htk"], "m2": ["enroll/a.htk"]}
