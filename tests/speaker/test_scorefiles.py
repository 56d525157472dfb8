"""Trial lists, keys and score files as the field writes them (issue 20).

The files are written here by hand, following each tool's documented layout:

* NIST SRE16-SRE21 ``docs/*.tsv`` tables: tab-separated, one header line of column names
  (trials ``modelid segmentid side``, SRE16 ``segment`` instead of ``segmentid``; keys add
  ``targettype`` and further columns such as ``partition``; system output ``modelid
  segmentid side LLR``);
* SIDEKIT's text Ndx (``model segment``), Key (``model segment target|nontarget``) and
  Scores (``model segment score``), space-separated, no header;
* Kaldi's trials (``model utt target|nontarget``) and scores (``model utt score``).

Each is read by the one reader of its kind (:mod:`ipem.speaker.scorefiles`), and what ipem
writes reads back unchanged.
"""
import numpy as np
import pytest

from ipem.speaker.scorefiles import (Trial, read_key, read_score_file, read_scores,
                                     read_trials, write_score_file)

TRIALS = [("1001_sre18", "dlrdnskt_sre18.sph", "target"),
          ("1001_sre18", "tqbajmrx_sre18.sph", "nontarget"),
          ("1002_sre18", "dlrdnskt_sre18.sph", "nontarget")]


def _tsv(path, header, rows):
    path.write_text("\t".join(header) + "\n" + "".join("\t".join(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("segment", ["segmentid", "segment"])      # SRE18-21, SRE16
def test_nist_trial_table(tmp_path, segment):
    path = _tsv(tmp_path / "sre_trials.tsv", ["modelid", segment, "side"],
                [(m, s, "a") for m, s, _ in TRIALS])
    assert read_trials(path) == [Trial(m, s, None) for m, s, _ in TRIALS]


def test_nist_key_table_with_extra_columns(tmp_path):
    path = _tsv(tmp_path / "sre_trial_key.tsv",
                ["modelid", "segmentid", "side", "targettype", "partition", "gender_match"],
                [(m, s, "a", lab, "eval", "Y") for m, s, lab in TRIALS])
    assert read_key(path) == {(m, s): lab for m, s, lab in TRIALS}
    assert read_trials(path) == [Trial(*t) for t in TRIALS]      # a key is a trial list too


def test_nist_system_output_with_the_key(tmp_path):
    scores = [1.5, -0.25, -3.0]
    out = _tsv(tmp_path / "sys.tsv", ["modelid", "segmentid", "side", "LLR"],
               [(m, s, "a", repr(x)) for (m, s, _), x in zip(TRIALS, scores)])
    key = _tsv(tmp_path / "key.tsv", ["modelid", "segmentid", "side", "targettype"],
               [(m, s, "a", lab) for m, s, lab in TRIALS])
    trials, got = read_score_file(out, key)
    assert trials == [Trial(*t) for t in TRIALS]
    np.testing.assert_array_equal(got, scores)
    tar, non = read_scores(out, key)
    assert tar.tolist() == [1.5] and non.tolist() == [-0.25, -3.0]
    # ipem's own score file, evaluated against the NIST key table
    mine = write_score_file(tmp_path / "mine.txt", [t[:2] for t in TRIALS], scores,
                            fmt="kaldi")
    np.testing.assert_array_equal(read_score_file(mine, key)[1], scores)


def test_sidekit_text_ndx_key_and_scores(tmp_path):
    ndx = tmp_path / "ndx.txt"
    ndx.write_text("".join(f"{m} {s}\n" for m, s, _ in TRIALS))
    key = tmp_path / "key.txt"
    key.write_text("".join(f"{m} {s} {lab}\n" for m, s, lab in TRIALS))
    scores = tmp_path / "scores.txt"
    scores.write_text("".join(f"{m} {s} {x}\n" for (m, s, _), x in zip(TRIALS, [2.0, 0.5, 1.0])))
    assert read_trials(ndx) == [Trial(m, s, None) for m, s, _ in TRIALS]
    assert read_key(key) == {(m, s): lab for m, s, lab in TRIALS}
    assert read_scores(scores, key)[0].tolist() == [2.0]


def test_ipem_and_kaldi_score_files_round_trip(tmp_path):
    scores = np.array([0.1 + 1e-13, -2.5, 7.0])
    trials = [Trial(*t) for t in TRIALS]
    for fmt in ("ipem", "kaldi"):
        path = write_score_file(tmp_path / f"{fmt}.txt", trials, scores, fmt=fmt)
        got_trials, got = read_score_file(path, None if fmt == "ipem" else
                                          {(m, s): lab for m, s, lab in TRIALS})
        assert got_trials == trials
        np.testing.assert_array_equal(got, scores)


@pytest.mark.parametrize("header, rows, reader, message", [
    (["modelid", "segmentid", "side"], [("m1", "s1", "a")], read_key,
     "line 1: the header 'modelid\\tsegmentid\\tside' has no label column (one of targettype"),
    (["modelid", "segmentid", "side"], [("m1", "s1", "b")], read_trials,
     "line 2: side 'b': ipem reads a segment's one channel (side 'a')"),
    (["modelid", "segmentid", "side", "targettype"], [("m1", "s1", "a")], read_key,
     "line 2: 3 columns, but the header (line 1) has 4"),
    (["modelid", "segmentid", "side", "targettype"], [("m1", "s1", "a", "maybe")], read_key,
     "line 2: label 'maybe' is not target/nontarget"),
    (["modelid", "segmentid"], [("m1", "s1"), ("m1", "s1")], read_trials,
     "line 3: trial 'm1 s1' repeats line 2"),
])
def test_bad_nist_tables_are_named_with_file_and_line(tmp_path, header, rows, reader, message):
    path = _tsv(tmp_path / "t.tsv", header, rows)
    with pytest.raises(ValueError) as info:
        reader(path)
    assert message in str(info.value) and str(path) in str(info.value)
