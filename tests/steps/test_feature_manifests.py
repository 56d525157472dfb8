"""Feature directories carry provenance (issue 20).

``ipem extract`` writes ``ipem_features.json`` (front-end options, ipem version, digests of the
audio and of every feature file); train-ubm, adapt, score, train-ivector and extract-ivectors
record the manifests they read; adapt, score, norm (cohort and test segments), train-ivector and
extract-ivectors refuse features of another front-end than the UBM's training features with
one line naming both files unless ``--allow-overlap``.  A feature directory without a
manifest (other tools, an older ipem) is read as before, with one logged warning.  Real
audio from the corpus generator, through the ``ipem`` command in-process.
"""
import json
import logging
import shutil

import pytest

from ipem.cli import main
from ipem.io.manifests import MANIFEST_NAME
from ipem.io.provenance import file_digest, read_companion, read_record
from ipem.synth import generate_corpus

pytestmark = pytest.mark.once


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small corpus, its features by two front-ends, a copy without manifest, a UBM."""
    root = tmp_path_factory.mktemp("manifests")
    info = generate_corpus(root / "c", n_speakers=8, n_enroll=1, n_test=1, n_ubm=1, seed=3)
    c = info.out_dir
    gmm, kaldi, old = root / "feats", root / "feats_kaldi", root / "feats_old"
    assert main(["extract", "--root", str(c), "--out-dir", str(gmm), "--quiet"]) == 0
    assert main(["extract", "--root", str(c), "--out-dir", str(kaldi), "--vad", "kaldi",
                 "--quiet"]) == 0
    shutil.copytree(gmm, old)
    (old / MANIFEST_NAME).unlink()
    ubm = root / "ubm.npz"
    assert main(["train-ubm", "--list", str(info.ubm_list), "-K", "4", "--init", "kmeans",
                 "--stage-iter", "2", "--final-iter", "2", "--features", str(gmm), "--root",
                 str(c), "--out", str(ubm), "--quiet"]) == 0
    return root, info, gmm, kaldi, old, ubm


def _run(capsys, argv):
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, [ln for ln in err.splitlines() if ln.strip()]


def test_extract_writes_a_manifest(world):
    root, info, gmm, kaldi, old, ubm = world
    m = json.loads((gmm / MANIFEST_NAME).read_text())
    assert m["artefact"] == "features" and m["ipem_version"]
    files = sorted(p.relative_to(gmm).as_posix() for p in gmm.rglob("*.htk"))
    assert sorted(m["files"]) == files and len(files) == info.n_utterances
    entry = m["files"][files[0]]
    assert entry["digest"] == file_digest(gmm / files[0])
    assert entry["audio_digest"] == file_digest(entry["audio"])
    (options,) = m["frontends"].values()
    assert options["vad"] == "gmm" and options["low_freq"] == 300.0
    (other,) = json.loads((kaldi / MANIFEST_NAME).read_text())["frontends"].values()
    assert other["vad"] == "kaldi"
    rec = read_record(ubm)                      # the UBM records its features
    assert rec["frontend"] == options
    assert rec["features"] == [{"manifest": str(gmm / MANIFEST_NAME),
                                "digest": file_digest(gmm / MANIFEST_NAME)}]


def test_features_of_another_frontend_are_refused(world, tmp_path, capsys, caplog):
    root, info, gmm, kaldi, old, ubm = world
    c = str(info.out_dir)
    adapt = ["adapt", "--ubm", str(ubm), "--enroll", str(info.enroll_list), "--root", c,
             "--quiet", "--out-dir"]
    rc, out, err = _run(capsys, [*adapt, str(tmp_path / "m_k"), "--features", str(kaldi)])
    assert rc != 0 and len(err) == 1, err
    assert str(kaldi / MANIFEST_NAME) in err[0] and str(ubm) in err[0]
    assert "vad 'kaldi', not 'gmm'" in err[0] and "--allow-overlap" in err[0]
    assert not (tmp_path / "m_k").exists()
    rc, out, err = _run(capsys, [*adapt, str(tmp_path / "m_k"), "--features", str(kaldi),
                                 "--allow-overlap"])
    assert rc == 0, err
    models = tmp_path / "models"
    rc, out, err = _run(capsys, [*adapt, str(models), "--features", str(gmm)])
    assert rc == 0, err
    assert read_record(models / "af1.npz")["features"][0]["manifest"] == str(gmm / MANIFEST_NAME)
    score = ["score", "--ubm", str(ubm), "--models", str(models), "--trials",
             str(info.trials_list), "--root", c, "--quiet", "--out"]
    rc, out, err = _run(capsys, [*score, str(tmp_path / "s_k.txt"), "--features", str(kaldi)])
    assert rc != 0 and len(err) == 1 and str(kaldi / MANIFEST_NAME) in err[0], err
    assert not (tmp_path / "s_k.txt").exists()
    # features without a manifest (another tool, an older ipem): as before, one logged warning
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ipem"):
        rc, out, err = _run(capsys, [*(a for a in score if a != "--quiet"),
                                     str(tmp_path / "s_old.txt"), "--features", str(old)])
    assert rc == 0, err
    warned = [r for r in caplog.records if "no feature manifest" in r.getMessage()]
    assert len(warned) == 1 and "no feature manifest" not in out, caplog.text
    assert "features" not in read_companion(tmp_path / "s_old.txt")
    rc, out, err = _run(capsys, [*score, str(tmp_path / "s.txt"), "--features", str(gmm)])
    assert rc == 0, err
    rc, out, err = _run(capsys, ["evaluate", "--scores", str(tmp_path / "s.txt")])
    assert rc == 0, err
    assert f"features: {gmm / MANIFEST_NAME}" in out and "front-end: MFCC 20, 300-3400 Hz, " \
        "VAD gmm, cmvn" in out


def test_an_option_added_later_compares_at_its_default(world, tmp_path, capsys):
    """A manifest without an option a newer ipem records (an older manifest), or with a
    default written out, is the same front-end; a real difference is still refused."""
    root, info, gmm, kaldi, old, ubm = world
    adapt = ["adapt", "--ubm", str(ubm), "--enroll", str(info.enroll_list), "--root",
             str(info.out_dir), "--quiet", "--out-dir"]
    manifest = json.loads((gmm / MANIFEST_NAME).read_text())
    for name, change, accepted in (("older", lambda f: f.pop("c0"), True),
                                   ("nfilt", lambda f: f.update(n_filters=26), False)):
        feats = tmp_path / name
        shutil.copytree(gmm, feats)
        edited = json.loads(json.dumps(manifest))
        for options in edited["frontends"].values():
            change(options)
        (feats / MANIFEST_NAME).write_text(json.dumps(edited))
        rc, out, err = _run(capsys, [*adapt, str(tmp_path / f"m_{name}"), "--features",
                                     str(feats)])
        if accepted:
            assert rc == 0, err
        else:
            assert rc != 0 and len(err) == 1 and "n_filters 26, not 24" in err[0], err


def test_train_ivector_refuses_features_of_another_frontend(world, tmp_path, capsys):
    """train-ivector: the utterances' features are of the UBM's front-end, checked before any
    cluster starts (a profile that does not exist is never reached); the extractor records
    its features like the speaker models."""
    root, info, gmm, kaldi, old, ubm = world
    train = ["train-ivector", "--ubm", str(ubm), "--list", str(info.ubm_list), "--root",
             str(info.out_dir), "-R", "2", "--iter", "1", "--quiet", "--out"]
    rc, out, err = _run(capsys, [*train, str(tmp_path / "tv_k.npz"), "--features", str(kaldi),
                                 "--cluster", f"profile:{tmp_path / 'no_such_profile'}"])
    assert rc != 0 and len(err) == 1, err
    assert str(kaldi / MANIFEST_NAME) in err[0] and str(ubm) in err[0]
    assert "vad 'kaldi', not 'gmm'" in err[0] and "--allow-overlap" in err[0]
    assert not (tmp_path / "tv_k.npz").exists()
    rc, out, err = _run(capsys, [*train, str(tmp_path / "tv_k.npz"), "--features", str(kaldi),
                                 "--allow-overlap"])
    assert rc == 0, err
    (allowed,) = read_record(tmp_path / "tv_k.npz")["allowed_overlap"]
    assert str(kaldi / MANIFEST_NAME) in allowed
    rc, out, err = _run(capsys, [*train, str(tmp_path / "tv.npz"), "--features", str(gmm)])
    assert rc == 0, err
    rec = read_record(tmp_path / "tv.npz")
    assert rec["features"] == [{"manifest": str(gmm / MANIFEST_NAME),
                                "digest": file_digest(gmm / MANIFEST_NAME)}]
    assert rec["frontend"] == read_record(ubm)["frontend"] and "allowed_overlap" not in rec


def test_norm_refuses_cohort_or_test_features_of_another_frontend(world, tmp_path, capsys):
    """norm: the cohort's features (every method) and the test segments' (methods that score
    them against the cohort models) are of the UBM's front-end."""
    root, info, gmm, kaldi, old, ubm = world
    c = str(info.out_dir)
    ubm_utts = info.ubm_list.read_text().split()
    cohort = tmp_path / "cohort.lst"            # audio entries: features of --features
    cohort.write_text("".join(f"c{i} {u}\n" for i, u in enumerate(ubm_utts)))
    cohort_gmm = tmp_path / "cohort_gmm.lst"    # feature files: of gmm whatever --features
    cohort_gmm.write_text("".join(f"c{i} {gmm / u[:-4]}.htk\n" for i, u in enumerate(ubm_utts)))
    models, cmodels, raw = tmp_path / "models", tmp_path / "cohort_models", tmp_path / "raw.txt"
    for enroll, out_dir in ((info.enroll_list, models), (cohort_gmm, cmodels)):
        rc, out, err = _run(capsys, ["adapt", "--ubm", str(ubm), "--enroll", str(enroll),
                                     "--root", c, "--features", str(gmm), "--quiet",
                                     "--out-dir", str(out_dir)])
        assert rc == 0, err
    rc, out, err = _run(capsys, ["score", "--ubm", str(ubm), "--models", str(models),
                                 "--trials", str(info.trials_list), "--root", c, "--features",
                                 str(gmm), "--quiet", "--out", str(raw)])
    assert rc == 0, err
    norm = ["norm", "--ubm", str(ubm), "--models", str(models), "--scores", str(raw),
            "--root", c, "--quiet", "--cohort-models", str(cmodels)]
    # z-norm: the cohort's features of the other front-end
    rc, out, err = _run(capsys, [*norm, "--method", "z", "--cohort", str(cohort), "--features",
                                 str(kaldi), "--out", str(tmp_path / "z_k.txt")])
    assert rc != 0 and len(err) == 1, err
    assert str(kaldi / MANIFEST_NAME) in err[0] and str(ubm) in err[0]
    assert "vad 'kaldi', not 'gmm'" in err[0] and "--allow-overlap" in err[0]
    assert not (tmp_path / "z_k.txt").exists()
    rc, out, err = _run(capsys, [*norm, "--method", "z", "--cohort", str(cohort), "--features",
                                 str(kaldi), "--out", str(tmp_path / "z_k.txt"),
                                 "--allow-overlap"])
    assert rc == 0, err
    (allowed,) = read_companion(tmp_path / "z_k.txt")["allowed_overlap"]
    assert str(kaldi / MANIFEST_NAME) in allowed
    # t-norm: the cohort of the UBM's front-end, the test segments of the other one
    rc, out, err = _run(capsys, [*norm, "--method", "t", "--cohort", str(cohort_gmm),
                                 "--features", str(kaldi), "--out", str(tmp_path / "t_k.txt")])
    assert rc != 0 and len(err) == 1, err
    assert str(kaldi / MANIFEST_NAME) in err[0] and str(ubm) in err[0]
    assert not (tmp_path / "t_k.txt").exists()
    rc, out, err = _run(capsys, [*norm, "--method", "t", "--cohort", str(cohort_gmm),
                                 "--features", str(gmm), "--out", str(tmp_path / "t.txt")])
    assert rc == 0, err
    assert "allowed_overlap" not in read_companion(tmp_path / "t.txt")
