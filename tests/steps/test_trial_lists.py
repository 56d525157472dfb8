"""Scores and keys of different trial lists are refused by default (issue 20).

Real score, key and trial files through the ``ipem`` command in-process: a key covering
exactly the scored trials (any order, NIST SRE table or plain text, ipem or Kaldi scores) is
read as before, and so is a key of a part of them (one score file, a development and an
evaluation key); key trials without a score, or a key that is not of the trial list the
scores' companion record names, are one error line naming both files unless
``--allow-overlap``.
"""
import numpy as np
import pytest

from ipem.cli import main
from ipem.io.provenance import make_record, trials_digest, write_companion
from ipem.speaker.scorefiles import read_trials

MODELS, TESTS = ["m1", "m2", "m3"], ["t1", "t2", "t3", "t4"]


@pytest.fixture
def files(tmp_path):
    """A labelled trial list, its Kaldi-format scores with their record, and keys."""
    rng = np.random.default_rng(0)
    trials = [(m, t, "target" if i == j % 3 else "nontarget")
              for i, m in enumerate(MODELS) for j, t in enumerate(TESTS)]
    tlist = tmp_path / "trials.lst"
    tlist.write_text("".join(f"{m} {t} {lab}\n" for m, t, lab in trials))
    scores = tmp_path / "scores.txt"
    scores.write_text("".join(f"{m} {t} {rng.normal() + 3 * (lab == 'target'):.4f}\n"
                              for m, t, lab in trials))
    write_companion(scores, make_record("scores", system="gmm-ubm", trials_file=str(tlist),
                                        trials=trials_digest(read_trials(tlist)),
                                        n_trials=len(trials)))
    return tmp_path, trials, tlist, scores


def _run(capsys, argv):
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, [ln for ln in err.splitlines() if ln.strip()]


def _refused(capsys, argv, *names):
    rc, out, err = _run(capsys, argv)
    assert rc != 0 and len(err) == 1, err
    for name in names:
        assert str(name) in err[0], err[0]
    assert "--allow-overlap" in err[0]
    return err[0]


def test_same_trials_in_any_order_and_form(files, capsys):
    tmp, trials, tlist, scores = files
    nist = tmp / "key.tsv"                      # a NIST SRE key table, reversed order
    nist.write_text("modelid\tsegmentid\tside\ttargettype\n" + "".join(
        f"{m}\t{t}\ta\t{lab}\n" for m, t, lab in reversed(trials)))
    rc, out, err = _run(capsys, ["evaluate", "--scores", str(scores), "--key", str(nist)])
    assert rc == 0, err
    assert "EER " in out and f"key:      {nist}: 12 of the 12 trials of {scores}" in out
    rc, out, err = _run(capsys, ["calibrate", "--dev-scores", str(scores), "--key", str(nist),
                                 "--out", str(tmp / "cal.json")])
    assert rc == 0, err
    # a part of the trials (an evaluation key): the others are left out, as before
    part = tmp / "eval.key"
    part.write_text("".join(f"{m} {t} {lab}\n" for m, t, lab in trials if t in ("t1", "t2")))
    rc, out, err = _run(capsys, ["evaluate", "--scores", str(scores), "--key", str(part),
                                 "--calibration", str(tmp / "cal.json")])
    assert rc == 0, err
    assert f"{part}: 6 of the 12 trials of {scores} (6 scored trials not in the key" in out


def test_key_trials_without_scores_are_refused(files, capsys):
    tmp, trials, tlist, scores = files
    key = tmp / "other.key"                     # another trial list: 2 of its trials unscored
    key.write_text("m1 t1 target\nm1 t2 nontarget\nm9 t1 nontarget\nm1 t9 nontarget\n")
    line = _refused(capsys, ["evaluate", "--scores", str(scores), "--key", str(key)],
                    scores, key)
    assert "different trial lists: 2 of the 4 trials" in line and "'m9 t1'" in line
    _refused(capsys, ["calibrate", "--dev-scores", str(scores), "--key", str(key), "--out",
                      str(tmp / "cal.json")], scores, key)
    assert not (tmp / "cal.json").exists()
    # norm: refused before the UBM, models or cohort are read (these are not even models)
    for name in ("ubm.npz", "cohort.lst"):
        (tmp / name).write_text("not read\n")
    (tmp / "models").mkdir()
    _refused(capsys, ["norm", "--ubm", str(tmp / "ubm.npz"), "--models", str(tmp / "models"),
                      "--scores", str(scores), "--key", str(key), "--cohort",
                      str(tmp / "cohort.lst"), "--method", "z", "--out", str(tmp / "n.txt"),
                      "--features", str(tmp)], scores, key)
    # meant: the key's scored trials are evaluated
    rc, out, err = _run(capsys, ["evaluate", "--scores", str(scores), "--key", str(key),
                                 "--allow-overlap"])
    assert rc == 0 and "EER " in out, err
    assert f"{key}: 2 of the 12 trials" in out


def test_key_of_another_labelling_of_the_scored_list(files, capsys):
    """Kaldi scores carry no labels: the record's trial list catches a key that relabels."""
    tmp, trials, tlist, scores = files
    key = tmp / "relabelled.key"
    flipped = [(m, t, "nontarget" if (m, t) == ("m2", "t2") else lab) for m, t, lab in trials]
    key.write_text("".join(f"{m} {t} {lab}\n" for m, t, lab in flipped))
    line = _refused(capsys, ["evaluate", "--scores", str(scores), "--key", str(key)],
                    scores, key, tlist)
    assert "'m2 t2'" in line
    rc, out, err = _run(capsys, ["evaluate", "--scores", str(scores), "--key", str(key),
                                 "--allow-overlap"])
    assert rc == 0, err
    # the trial list changed since scoring: not checked against it (nothing to compare)
    tlist.write_text(tlist.read_text() + "m9 t9 nontarget\n")
    rc, out, err = _run(capsys, ["evaluate", "--scores", str(scores), "--key", str(key)])
    assert rc == 0, err
