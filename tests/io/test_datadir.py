"""Kaldi data directories and ark/scp in and out of every step (issue 11).

* :func:`ipem.io.read_data_dir` refuses bad tables in one line naming file and line.
* Kaldi -> ipem: archives written by kaldiio (as Kaldi's tools write them), given as
  a data directory, train the same UBM, adapt the same models and give the same
  scores (on the MPI engines too) as the same frames in HTK files named by lists.
* ipem -> Kaldi: ``ipem extract --format kaldi`` (from a corpus root, and from a
  data directory's ``wav.scp``, pipes included) writes archives that kaldiio reads
  back equal to the npy output, and a data directory made from a generated corpus
  runs extract -> train-ubm -> adapt -> score with the scores of the file-list path.
"""
import os
import shutil

import numpy as np
import pytest

import ipem
from ipem import io as features
from ipem.cli import main
from ipem.io import FeatureFileError, read_data_dir, write_data_dir
from ipem import steps
from ipem.speaker import FeatureSource, scorefiles, utterances

kaldiio = pytest.importorskip("kaldiio")

D = 4
SPEAKERS = ["spk0", "spk1", "spk2", "spk3"]


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------
# reading and checking the tables
# ---------------------------------------------------------------------------

@pytest.fixture
def good_dir(tmp_path):
    """A data directory of three utterances with features in an ark."""
    d = tmp_path / "data"
    rng = np.random.default_rng(0)
    mats = {u: rng.normal(size=(5 + i, D)).astype(np.float32)
            for i, u in enumerate(["a_1", "a_2", "b_1"])}
    d.mkdir()
    features.write_kaldi(d / "feats.ark", d / "feats.scp", mats)
    write_data_dir(d, utt2spk={"a_1": "a", "a_2": "a", "b_1": "b"})
    return d, mats


def test_read_data_dir(good_dir):
    d, mats = good_dir
    data = read_data_dir(d)
    assert data.utterances() == ["a_1", "a_2", "b_1"]
    assert data.speakers() == {"a": ["a_1", "a_2"], "b": ["b_1"]}
    refs = data.speaker_features()
    assert [r.key for r in refs["a"]] == ["a_1", "a_2"] and refs["b"][0].shape == (7, D)
    np.testing.assert_array_equal(features.load(refs["a"][1]), mats["a_2"])
    (d / "spk2utt").unlink()                 # utt2spk inverted
    assert read_data_dir(d).speakers() == {"a": ["a_1", "a_2"], "b": ["b_1"]}


# (file to change, its new text, what the one-line error must say)
BAD = {
    "missing-dir": (None, None, "no such Kaldi data directory"),
    "dup-utt2spk": ("utt2spk", "a_1 a\na_2 a\nb_1 b\na_1 b\n",
                    "utt2spk: line 4: duplicate utterance id 'a_1' (first on line 1)"),
    "bad-line": ("utt2spk", "a_1 a\na_2 a extra\nb_1 b\n",
                 "utt2spk: line 2: expected 'utt-id spk-id', got 3 fields"),
    "no-feats": ("utt2spk", "a_1 a\na_2 a\nb_1 b\nc_1 c\n",
                 "utt2spk: line 4: utterance 'c_1' has no features in"),
    "disagree": ("spk2utt", "a a_1\nb a_2 b_1\n",
                 "spk2utt: line 2: utterance 'a_2' is under speaker 'b', but"),
    "dup-scp": ("feats.scp", None, "feats.scp: line 4: duplicate utterance id 'a_1' "
                                   "(first on line 1)"),
    "pipe": ("feats.scp", "a_1 gunzip -c x.ark.gz |\n",
             "feats.scp: line 1: 'a_1 gunzip -c x.ark.gz |' is a shell command"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_tables_are_named_with_file_and_line(good_dir, tmp_path, case):
    d, _ = good_dir
    name, text, expected = BAD[case]
    if name is None:
        d = tmp_path / "nowhere"
    elif text is None:          # an scp line repeated
        scp = (d / name).read_text()
        text = scp + scp.splitlines()[0] + "\n"
    if name is not None:
        (d / name).write_text(text)
    with pytest.raises(FeatureFileError) as exc:
        read_data_dir(d)
    message = str(exc.value)
    assert expected in message and "\n" not in message
    if name is not None:
        assert str(d / name) in message


def test_missing_tables(good_dir):
    d, _ = good_dir
    with pytest.raises(FeatureFileError, match=r"wav\.scp: no such file"):
        read_data_dir(d, need=["wav.scp"])
    (d / "utt2spk").unlink()
    (d / "spk2utt").unlink()
    data = read_data_dir(d)                  # features alone are a data directory
    with pytest.raises(FeatureFileError, match="no spk2utt or utt2spk"):
        data.speakers()


# ---------------------------------------------------------------------------
# Kaldi archives into ipem's steps
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def kaldi_world(tmp_path_factory):
    """The same synthetic frames as Kaldi data (kaldiio's archives) and as HTK files."""
    root = tmp_path_factory.mktemp("kaldi")
    rng = np.random.default_rng(1)
    shared = rng.normal(0, 4, size=(3, D))
    mats, rels = {}, {}
    for s in SPEAKERS:
        centers = shared + rng.normal(0, 1.0, size=(3, D))
        for role, count, n in (("ubm", 2, 300), ("enroll", 2, 200), ("test", 2, 150)):
            for i in range(count):
                utt = f"{s}_{role}_{i}"
                lab = rng.integers(0, 3, size=n)
                mats[utt] = (centers[lab] + rng.normal(0, 0.5, size=(n, D))).astype(np.float32)
                rels[utt] = f"wav/{s}/{utt}.wav"
                path = root / "feats" / f"wav/{s}/{utt}.htk"
                path.parent.mkdir(parents=True, exist_ok=True)
                features.write(path, mats[utt])
    # Kaldi's side: one archive per role, written by kaldiio, and a data directory each
    for role in ("ubm", "enroll", "test"):
        d = root / "data" / role
        d.mkdir(parents=True)
        utts = [u for u in mats if f"_{role}_" in u]
        kaldiio.save_ark(str(d / "raw.ark"), {u: mats[u] for u in utts}, scp=str(d / "feats.scp"))
        write_data_dir(d, utt2spk={u: u.split("_")[0] for u in utts})
    ipem.UBMTrainer(4, stage_iter=2, final_iter=3, random_state=0).fit(
        np.concatenate([m for u, m in mats.items() if "_ubm_" in u])).save(root / "ubm.npz")
    lists = root / "lists"
    lists.mkdir()
    (lists / "ubm.lst").write_text("".join(rels[u] + "\n" for u in mats if "_ubm_" in u))
    (lists / "enroll.lst").write_text("".join(
        f"{s} {rels[f'{s}_enroll_0']} {rels[f'{s}_enroll_1']}\n" for s in SPEAKERS))
    tests = [u for u in mats if "_test_" in u]
    (lists / "trials.lst").write_text("".join(
        f"{m} {rels[u]} {'target' if u.startswith(m) else 'nontarget'}\n"
        for m in SPEAKERS for u in tests))
    (lists / "trials.kaldi").write_text("".join(
        f"{m} {u} {'target' if u.startswith(m) else 'nontarget'}\n"
        for m in SPEAKERS for u in tests))
    return root


def _run(*argv):
    rc = main([str(a) for a in argv] + ["--quiet"])
    assert rc == 0
    return rc


def test_kaldi_archives_through_every_step(kaldi_world, tmp_path, capsys, dv_client):
    w, t = kaldi_world, tmp_path
    data = w / "data"
    common = ["-K", "4", "--stage-iter", "2", "--final-iter", "3"]
    _run("train-ubm", "--data-dir", data / "ubm", *common, "--out", t / "ubm_k.npz")
    _run("train-ubm", "--features", w / "feats", "--root", w, "--list", w / "lists/ubm.lst",
         *common, "--out", t / "ubm_h.npz")
    ubm_k, ubm_h = (np.load(t / f"ubm_{s}.npz") for s in "kh")
    np.testing.assert_array_equal(ubm_k["means"], ubm_h["means"])

    _run("adapt", "--data-dir", data / "enroll", "--ubm", t / "ubm_k.npz", "--out-dir", t / "mk")
    _run("adapt", "--features", w / "feats", "--root", w, "--enroll", w / "lists/enroll.lst",
         "--ubm", t / "ubm_k.npz", "--out-dir", t / "mh")
    for s in SPEAKERS:
        np.testing.assert_array_equal(np.load(t / "mk" / f"{s}.npz")["means"],
                                      np.load(t / "mh" / f"{s}.npz")["means"])

    _run("score", "--data-dir", data / "test", "--ubm", t / "ubm_k.npz", "--models", t / "mk",
         "--trials", w / "lists/trials.kaldi", "--out", t / "sk.txt")
    _run("score", "--features", w / "feats", "--root", w, "--ubm", t / "ubm_k.npz",
         "--models", t / "mk", "--trials", w / "lists/trials.lst", "--out", t / "sh.txt")
    sk, sh = scorefiles.read_score_file(t / "sk.txt"), scorefiles.read_score_file(t / "sh.txt")
    np.testing.assert_array_equal(sk[1], sh[1])
    assert [x.label for x in sk[0]] == [x.label for x in sh[0]]
    # the engines read the archives themselves
    _, on_engines = steps.score(t / "ubm_k.npz", w / "lists/trials.kaldi", t / "mk",
                                source=FeatureSource(data_dir=data / "test"),
                                controller=dv_client)
    np.testing.assert_allclose(on_engines, sk[1], rtol=1e-12)

    # S-norm with the cohort named by utterance ids of the same data directory
    cohort = _write(t, "cohort.lst", "".join(f"c{s} {s}_ubm_0 {s}_ubm_1\n" for s in SPEAKERS))
    _run("adapt", "--data-dir", data / "ubm", "--ubm", t / "ubm_k.npz", "--enroll", cohort,
         "--out-dir", t / "cm")
    both = t / "both"                         # tests and cohort in one data directory
    both.mkdir()
    write_data_dir(both, feats={**read_data_dir(data / "ubm").feats,
                                **read_data_dir(data / "test").feats})
    _run("norm", "--data-dir", both, "--ubm", t / "ubm_k.npz", "--models", t / "mk",
         "--scores", t / "sk.txt", "--cohort", cohort, "--cohort-models", t / "cm",
         "--out", t / "snorm.txt")
    assert len((t / "snorm.txt").read_text().splitlines()) == 32
    capsys.readouterr()

    # an utterance of the trials that feats.scp lacks: one line, file and trial list named
    bad = _write(t, "bad.trials", "spk0 spk0_test_0\nspk0 nobody_test_9\n")
    assert main(["score", "--data-dir", str(data / "test"), "--ubm", str(t / "ubm_k.npz"),
                 "--models", str(t / "mk"), "--trials", str(bad), "--out", str(t / "x.txt"),
                 "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nobody_test_9" in err and "feats.scp" in err
    assert str(bad) in err and not (t / "x.txt").exists()
    # neither --features nor --data-dir
    assert main(["adapt", "--ubm", str(t / "ubm_k.npz"), "--out-dir", str(t / "m2")]) == 2
    assert "--data-dir" in capsys.readouterr().err and not (t / "m2").exists()


def test_adapt_refuses_speakers_without_features(kaldi_world, tmp_path):
    d = tmp_path / "enroll"
    shutil.copytree(kaldi_world / "data" / "enroll", d)
    (d / "utt2spk").write_text((d / "utt2spk").read_text() + "spk9_enroll_0 spk9\n")
    (d / "spk2utt").unlink()
    with pytest.raises(ValueError, match=r"utt2spk: line 9: utterance 'spk9_enroll_0' has no "
                                         r"features in .*feats\.scp"):
        steps.adapt(kaldi_world / "ubm.npz", None, tmp_path / "m",
                    source=FeatureSource(data_dir=d))
    assert not (tmp_path / "m").exists()


# ---------------------------------------------------------------------------
# ipem's features into Kaldi archives, and the whole chain on a data directory
# ---------------------------------------------------------------------------

def _corpus_data_dir(info, out, rels, *, pipe=None):
    """A data directory of corpus audio ``rels`` (utterance id: the file's stem)."""
    wav = {}
    for r in rels:
        path = str(info.out_dir / r)
        wav[os.path.basename(r)[:-4]] = f"cat {path} |" if pipe == r else path
    write_data_dir(out, wav=wav, utt2spk={u: u.split("_")[0] for u in wav})
    return out


@pytest.mark.once
def test_extract_to_kaldi_and_the_chain_on_data_dirs(tmp_path, capsys):
    from ipem.synth import MIN_SPEAKERS, available_voices, generate_corpus

    if len(available_voices()) < MIN_SPEAKERS:
        pytest.skip("needs espeak-ng and the MBROLA voices")
    t = tmp_path
    info = generate_corpus(t / "c", n_speakers=8, n_ubm=2, n_enroll=1, n_test=2, seed=5)
    root = info.out_dir
    ubm_rels = info.ubm_list.read_text().split()
    enroll_rels = [line.split()[1] for line in info.enroll_list.read_text().splitlines()]
    trials = [line.split() for line in info.trials_list.read_text().splitlines()]
    test_rels = list(dict.fromkeys(tr[1] for tr in trials))
    kaldi_trials = _write(t, "trials", "".join(f"{m} {os.path.basename(r)[:-4]} {lab}\n"
                                               for m, r, lab in trials))
    data = {name: _corpus_data_dir(info, t / "data" / name, rels,
                                   pipe=enroll_rels[0] if name == "enroll" else None)
            for name, rels in (("ubm", ubm_rels), ("enroll", enroll_rels),
                               ("test", test_rels))}

    # the file-list path, npy features
    npy = steps.extract(root, t / "npy", fmt="npy")
    # from the corpus root into one feats.scp: kaldiio reads what npy holds, exactly
    _run("extract", "--root", root, "--out-dir", t / "ark", "--format", "kaldi")
    scp = kaldiio.load_scp(str(t / "ark" / "feats.scp"))
    assert len(scp) == len(npy) == info.n_utterances
    for ref in npy:
        utt = utterances.utterance_id(os.path.relpath(ref.path, t / "npy")[:-4] + ".wav")
        mat = scp[utt]
        assert mat.dtype == np.float32
        np.testing.assert_array_equal(mat, features.load(ref))
    assert all(os.path.isabs(line.split()[1]) for line in
               (t / "ark" / "feats.scp").read_text().splitlines())

    # data directories: a pipe in wav.scp is refused (file and line) unless allowed
    capsys.readouterr()
    assert main(["extract", "--data-dir", str(data["enroll"]), "--out-dir",
                 str(t / "fe"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "wav.scp: line 1:" in err and "shell command" in err and not (t / "fe").exists()
    feats = {}
    for name, d in data.items():
        feats[name] = t / f"f{name}"
        _run("extract", "--data-dir", d, "--out-dir", feats[name], "--cluster", "local:2",
             *(["--allow-pipes"] if name == "enroll" else []))
        for table in ("utt2spk", "spk2utt", "wav.scp"):
            assert (feats[name] / table).read_text() == (d / table).read_text()
        got = kaldiio.load_scp(str(feats[name] / "feats.scp"))
        for utt, mat in got.items():
            rel = next(r for r in (ubm_rels + enroll_rels + test_rels)
                       if os.path.basename(r)[:-4] == utt)
            np.testing.assert_array_equal(mat, np.load(t / "npy" / (rel[:-4] + ".npy")))

    # the chain on data directories gives the scores of the file-list path
    opts = ["-K", "8", "--stage-iter", "2", "--final-iter", "3"]
    _run("train-ubm", "--data-dir", feats["ubm"], *opts, "--out", t / "ubm_d.npz")
    _run("train-ubm", "--features", t / "npy", "--format", "npy", "--root", root, "--list",
         info.ubm_list, *opts, "--out", t / "ubm_l.npz")
    np.testing.assert_allclose(np.load(t / "ubm_d.npz")["means"],
                               np.load(t / "ubm_l.npz")["means"], rtol=1e-10, atol=1e-12)
    _run("adapt", "--data-dir", feats["enroll"], "--ubm", t / "ubm_d.npz", "--out-dir", t / "md")
    _run("adapt", "--features", t / "npy", "--format", "npy", "--root", root, "--enroll",
         info.enroll_list, "--ubm", t / "ubm_d.npz", "--out-dir", t / "ml")
    _run("score", "--data-dir", feats["test"], "--ubm", t / "ubm_d.npz", "--models", t / "md",
         "--trials", kaldi_trials, "--out", t / "sd.txt")
    _run("score", "--features", t / "npy", "--format", "npy", "--root", root, "--ubm",
         t / "ubm_d.npz", "--models", t / "ml", "--trials", info.trials_list, "--out",
         t / "sl.txt")
    sd, sl = scorefiles.read_score_file(t / "sd.txt"), scorefiles.read_score_file(t / "sl.txt")
    assert len(sd[1]) == info.n_trials
    np.testing.assert_array_equal(sd[1], sl[1])
    # and through the root's feats.scp (utterance ids from the audio paths)
    _run("score", "--features", t / "ark", "--format", "kaldi", "--root", root, "--ubm",
         t / "ubm_d.npz", "--models", t / "ml", "--trials", info.trials_list, "--out",
         t / "sa.txt")
    np.testing.assert_array_equal(scorefiles.read_score_file(t / "sa.txt")[1], sl[1])

    # a broken audio file: one line naming wav.scp, its line and the utterance; no output
    broken = t / "data" / "broken"
    shutil.copytree(data["test"], broken)
    bad = t / "bad.wav"
    bad.write_bytes(b"RIFF....WAVEfmt not audio")
    lines = (broken / "wav.scp").read_text().splitlines()
    utt = lines[2].split()[0]
    lines[2] = f"{utt} {bad}"
    (broken / "wav.scp").write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert main(["extract", "--data-dir", str(broken), "--out-dir", str(t / "fb"),
                 "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "wav.scp: line 3: utterance " + utt in err
    assert not (t / "fb").exists() and not any(p.name.startswith(".fb") for p in t.iterdir())


# ---------------------------------------------------------------------------
# segments: utterances cut out of recordings (issue 20)
# ---------------------------------------------------------------------------

def _speechlike(rng, seconds, rate=8000):
    """Noise with loud and quiet halves of 0.25 s: the VAD finds the loud ones."""
    n = int(seconds * rate)
    gain = np.where((np.arange(n) // (rate // 4)) % 2 == 0, 0.3, 0.003)
    tone = np.sin(2 * np.pi * 440 * np.arange(n) / rate)
    return (gain * (0.5 * tone + 0.5 * rng.uniform(-1, 1, n))).astype(np.float64)


def test_extract_cuts_the_segments_of_recordings(tmp_path):
    sf = pytest.importorskip("soundfile")
    rng = np.random.default_rng(3)
    parts = {"s1-u1": _speechlike(rng, 1.0), "s1-u2": _speechlike(rng, 1.5),
             "s2-u1": _speechlike(rng, 2.0)}
    for utt, x in parts.items():
        sf.write(tmp_path / f"{utt}.wav", x, 8000, subtype="PCM_16")
    sf.write(tmp_path / "rec1.wav", np.concatenate([parts["s1-u1"], parts["s1-u2"]]), 8000,
             subtype="PCM_16")
    sf.write(tmp_path / "rec2.wav", np.concatenate([np.zeros(4000), parts["s2-u1"]]), 8000,
             subtype="PCM_16")
    spk = {"s1-u1": "s1", "s1-u2": "s1", "s2-u1": "s2"}
    whole = write_data_dir(tmp_path / "whole", wav={u: str(tmp_path / f"{u}.wav")
                                                    for u in parts}, utt2spk=spk)
    cut = write_data_dir(tmp_path / "cut", wav={"rec1": str(tmp_path / "rec1.wav"),
                                                "rec2": str(tmp_path / "rec2.wav")},
                         utt2spk=spk)
    # Kaldi's segments table: utt-id recording-id start end (seconds; -1: to the end)
    (tmp_path / "cut" / "segments").write_text("s1-u1 rec1 0.00 1.00\ns1-u2 rec1 1.00 -1\n"
                                               "s2-u1 rec2 0.50 2.50\n")
    data = read_data_dir(cut)
    assert data.segments == {"s1-u1": ("rec1", 0.0, 1.0), "s1-u2": ("rec1", 1.0, -1.0),
                             "s2-u1": ("rec2", 0.5, 2.5)}
    assert data.utterances() == ["s1-u1", "s1-u2", "s2-u1"]
    steps.extract(data_dir=whole, out_dir=tmp_path / "fw", fmt="kaldi")
    steps.extract(data_dir=cut, out_dir=tmp_path / "fc", fmt="kaldi")
    want = kaldiio.load_scp(str(tmp_path / "fw" / "feats.scp"))
    got = kaldiio.load_scp(str(tmp_path / "fc" / "feats.scp"))
    assert sorted(got) == sorted(parts)
    for utt in parts:                 # each segment's features are those of its own file
        np.testing.assert_array_equal(got[utt], want[utt])
    assert (tmp_path / "fc" / "segments").read_text() == (tmp_path / "cut" / "segments").read_text()
    read_data_dir(tmp_path / "fc")    # the output is a data directory whose tables agree


@pytest.mark.parametrize("text, message", [
    ("u1 rec9 0 1\n", "segments: line 1: recording 'rec9' of utterance 'u1' is not in"),
    ("u1 rec1 0 1\nu1 rec1 1 2\n", "segments: line 2: duplicate utterance id 'u1' (first on "
                                   "line 1)"),
    ("u1 rec1 2 1\n", "segments: line 1: segment 2-1 s is empty or negative"),
    ("u1 rec1 zero 1\n", "segments: line 1: start and end must be numbers of seconds"),
    ("u1 rec1 0\n", "segments: line 1: expected 'utt-id recording-id start end', got 3"),
])
def test_bad_segments_are_named_with_file_and_line(tmp_path, text, message):
    (tmp_path / "a.wav").write_bytes(b"")
    d = write_data_dir(tmp_path / "d", wav={"rec1": str(tmp_path / "a.wav")})
    (tmp_path / "d" / "segments").write_text(text)
    with pytest.raises(FeatureFileError) as info:
        read_data_dir(d)
    assert message in str(info.value)
