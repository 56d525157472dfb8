"""The ``ipem`` command in-process: a tiny run of every step and its errors.

Nothing here needs speech tools: feature files are written directly from
synthetic frames, as if ``ipem extract`` had made them from ``wav/...`` audio.
"""
import logging
import os
import subprocess
import sys

import numpy as np
import pytest

import ipem
from ipem import io as features
from ipem.cli import main
from ipem.speaker import SpeakerModel

D = 4                                   # features per frame
SPEAKERS = ["spk0", "spk1", "spk2", "spk3"]


def _frames(rng, centers, n):
    """Frames around a speaker's versions of the shared centres."""
    lab = rng.integers(0, len(centers), size=n)
    return (centers[lab] + rng.normal(0, 0.5, size=(n, D))).astype(np.float32)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A corpus root with lists, features under feats/ and a 4-Gaussian UBM."""
    root = tmp_path_factory.mktemp("cli")
    corpus, feats = root / "corpus", root / "feats"
    corpus.mkdir()
    rng = np.random.default_rng(0)
    shared = rng.normal(0, 4, size=(3, D))
    centers = {s: shared + rng.normal(0, 1.0, size=(3, D)) for s in SPEAKERS}
    utts = {}
    for s in SPEAKERS:
        for role, count, n in (("ubm", 2, 300), ("enroll", 2, 200), ("test", 2, 150)):
            for i in range(count):
                rel = f"wav/{s}/{s}_{role}_{i}.wav"
                path = feats / rel.replace(".wav", ".htk")
                path.parent.mkdir(parents=True, exist_ok=True)
                features.write(path, _frames(rng, centers[s], n))
                utts.setdefault(role, []).append((s, rel))
    (corpus / "ubm.lst").write_text("# UBM data\n" + "".join(f"{r}\n" for _, r in utts["ubm"]))
    enroll = {}
    for s, rel in utts["enroll"]:
        enroll.setdefault(s, []).append(rel)
    (corpus / "enroll.lst").write_text("".join(f"{s} {' '.join(r)}\n" for s, r in enroll.items()))
    (corpus / "trials.lst").write_text("".join(
        f"{m} {rel} {'target' if m == s else 'nontarget'}\n"
        for m in SPEAKERS for s, rel in utts["test"]))
    X = np.concatenate([features.load(features.describe(feats / r.replace(".wav", ".htk")))
                        for _, r in utts["ubm"]])
    ubm = ipem.UBMTrainer(4, stage_iter=3, final_iter=5, random_state=0).fit(X)
    ubm.save(root / "ubm.npz")
    return root, corpus, feats


def _error(capsys, argv, code=1):
    """Run main(argv), expecting exit status ``code`` (1: runtime, 2: usage); returns
    the one error line."""
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == code, (out, err)
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


# ---------------------------------------------------------------------------
# a whole run, local and small
# ---------------------------------------------------------------------------

def test_steps_chained_through_files(world, capsys, tmp_path):
    root, corpus, feats = world
    handlers = list(logging.getLogger("ipem").handlers)
    common = ["--features", str(feats), "--root", str(corpus), "--quiet"]
    ubm = tmp_path / "ubm.npz"
    # without --quiet: a line per iteration
    assert main(["train-ubm", *common[:-1], "--list", str(corpus / "ubm.lst"), "-K", "4",
                 "--stage-iter", "3", "--final-iter", "4", "--out", str(ubm)]) == 0
    out, err = capsys.readouterr()
    assert "UBM: 4 Gaussians" in out and str(ubm) in out and ubm.exists()
    records = [ln for ln in out.splitlines() if ln.startswith("  iter")]
    assert len(records) >= 4 and "K=4" in records[-1] and "engines frames 2400" in records[-1]
    assert err == ""

    models = tmp_path / "models"
    assert main(["adapt", *common[:-1], "--ubm", str(ubm), "--enroll", str(corpus / "enroll.lst"),
                 "--out-dir", str(models)]) == 0  # without --quiet: the result line
    out, _ = capsys.readouterr()
    assert f"adapted 4 speaker models -> {models}" in out
    assert sorted(p.name for p in models.iterdir()) == [f"{s}.npz" for s in SPEAKERS]
    assert SpeakerModel.load(models / "spk1.npz").n_frames == 400

    scores = tmp_path / "scores.txt"
    assert main(["score", *common[:-1], "--ubm", str(ubm), "--models", str(models), "--trials",
                 str(corpus / "trials.lst"), "--out", str(scores), "--cluster", "local:2"]) == 0
    out, _ = capsys.readouterr()
    assert f"scored 32 trials -> {scores}" in out
    lines = [ln.split() for ln in scores.read_text().splitlines()]
    assert len(lines) == 32 and all(len(f) == 4 for f in lines)
    # well separated speakers: every target trial beats every non-target trial
    tar = [float(f[2]) for f in lines if f[3] == "target"]
    non = [float(f[2]) for f in lines if f[3] == "nontarget"]
    assert min(tar) > max(non)

    det = tmp_path / "det.png"
    assert main(["evaluate", "--scores", str(scores), "--det", str(det)]) == 0
    out, _ = capsys.readouterr()
    assert "trials: 8 target, 24 non-target" in out
    assert "EER          0.00 %" in out and "minDCF" in out and "actDCF" in out
    assert f"DET curve -> {det}" in out and det.stat().st_size > 1000
    assert logging.getLogger("ipem").handlers == handlers     # main() cleans up


def test_verbose_logs_the_steps_quiet_does_not(world, capsys, tmp_path):
    root, corpus, feats = world
    argv = ["adapt", "--features", str(feats), "--root", str(corpus), "--ubm",
            str(root / "ubm.npz"), "--enroll", str(corpus / "enroll.lst"), "--out-dir",
            str(tmp_path / "m")]
    assert main(argv + ["--quiet", "-v"]) == 0
    assert capsys.readouterr().err == ""
    assert main(argv + ["--quiet"]) == 0
    assert capsys.readouterr().err == ""
    assert main(argv + ["-v"]) == 0
    err = capsys.readouterr().err
    assert "INFO ipem.steps.gmm: MAP-adapting 4 speaker models" in err


def test_quiet_prints_errors_only(world, capsys, tmp_path):
    """--quiet: nothing on stdout or stderr when the step succeeds (no result line,
    iteration lines, bars or log, -v or not); its one-line error when it fails."""
    root, corpus, feats = world
    ubm = tmp_path / "ubm.npz"
    common = ["--features", str(feats), "--root", str(corpus), "-K", "4", "--stage-iter", "3",
              "--final-iter", "4", "--quiet", "-v"]
    assert main(["train-ubm", "--list", str(corpus / "ubm.lst"), "--out", str(ubm),
                 *common]) == 0
    assert capsys.readouterr() == ("", "") and ubm.exists()
    bad = tmp_path / "nan_frames.htk"
    X = np.ones((200, D), np.float32)
    X[7, 0] = np.nan
    features.write(bad, X)
    lst = tmp_path / "bad.lst"
    lst.write_text(f"{feats / 'wav/spk0/spk0_ubm_0.htk'}\n{bad}\n")
    assert main(["train-ubm", "--list", str(lst), "--out", str(tmp_path / "u.npz"),
                 *common]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith("ipem train-ubm: error: ") and str(bad) in err
    assert not (tmp_path / "u.npz").exists()


def test_progress_in_a_log_is_lines_not_a_bar(world, capsys, tmp_path):
    """stderr here is not a terminal (as in a batch log): lines of counts, no redrawn bar."""
    root, corpus, feats = world
    assert main(["adapt", "--features", str(feats), "--root", str(corpus), "--ubm",
                 str(root / "ubm.npz"), "--enroll", str(corpus / "enroll.lst"), "--out-dir",
                 str(tmp_path / "m")]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "|" not in err
    lines = err.splitlines()
    assert 2 <= len(lines) <= 4 and all(len(line) < 100 for line in lines), lines
    assert lines[0].startswith("MAP adaptation:   0% 0/4") and "4/4" in lines[-1]


def _evaluate(stdout, scores):
    return subprocess.run([sys.executable, "-m", "ipem.cli", "evaluate", "--scores",
                           str(scores)], stdout=stdout, stderr=subprocess.PIPE, text=True,
                          timeout=120)


@pytest.fixture
def score_file(tmp_path):
    scores = tmp_path / "scores.txt"
    scores.write_text("a u1 1.0 target\na u2 0.5 nontarget\nb u3 2 target\nb u4 -1 nontarget\n")
    return scores


def test_closed_pipe_ends_quietly(score_file):
    """A reader that is gone before ipem writes: no error, status 128 + SIGPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        run = _evaluate(write_end, score_file)
    finally:
        os.close(write_end)
    assert run.stderr == ""
    assert run.returncode == 141


def test_evaluate_into_head(score_file):
    """``ipem evaluate ... | head -1`` in a shell: the first line, nothing on stderr."""
    run = subprocess.run(["bash", "-o", "pipefail", "-c",
                          f"'{sys.executable}' -m ipem.cli evaluate --scores '{score_file}' "
                          "| head -1"], capture_output=True, text=True, timeout=120)
    assert run.stdout == "trials: 2 target, 2 non-target\n" and run.stderr == ""
    assert run.returncode in (0, 141)       # 141 when head had gone before ipem wrote


# ---------------------------------------------------------------------------
# errors: one line naming the problem; exit status 1 (runtime) or 2 (usage)
# ---------------------------------------------------------------------------

def test_wrong_kind_of_model_file_is_named(world, capsys, tmp_path):
    root, corpus, feats = world
    common = ["--features", str(feats), "--root", str(corpus), "--quiet"]
    tv = tmp_path / "tv.npz"
    assert main(["train-ivector", "--ubm", str(root / "ubm.npz"), "--list",
                 str(corpus / "ubm.lst"), "-R", "2", "--iter", "1", "--out", str(tv),
                 *common]) == 0
    capsys.readouterr()
    line = _error(capsys, ["adapt", "--ubm", str(tv), "--enroll", str(corpus / "enroll.lst"),
                           "--out-dir", str(tmp_path / "m"), *common])
    assert line == f"ipem adapt: error: {tv}: an i-vector extractor, not a UBM"
    model = tmp_path / "spk0.npz"
    SpeakerModel("spk0", *ipem.speaker.ubm_params(str(root / "ubm.npz"))).save(model)
    line = _error(capsys, ["train-ivector", "--ubm", str(model), "--list",
                           str(corpus / "ubm.lst"), "--out", str(tmp_path / "t.npz"), *common])
    assert line == f"ipem train-ivector: error: {model}: a speaker model, not a UBM"


@pytest.mark.parametrize("spec, problem", [
    ("mpi:0", "'mpi:0': the number of shards/engines must be a positive integer"),
    ("local:x", "'local:x': the number of shards/engines must be a positive integer"),
    ("foo", "'foo': expected local, local:N, mpi:N, slurm:N or profile:DIR"),
    ("profile:", "profile:DIR needs the profile directory"),
])
def test_bad_cluster_values(world, capsys, tmp_path, spec, problem):
    root, corpus, feats = world
    line = _error(capsys, ["train-ubm", "--features", str(feats), "--root", str(corpus),
                           "--list", str(corpus / "ubm.lst"), "--out", str(tmp_path / "u.npz"),
                           "--cluster", spec], code=2)
    assert line == f"ipem train-ubm: error: --cluster {problem}"
    assert not (tmp_path / "u.npz").exists()


def test_missing_model_file_is_named(world, capsys, tmp_path):
    root, corpus, feats = world
    models = tmp_path / "models"
    models.mkdir()
    for s in SPEAKERS[:3]:
        SpeakerModel(s, *ipem.speaker.ubm_params(str(root / "ubm.npz"))).save(models / f"{s}.npz")
    line = _error(capsys, ["score", "--features", str(feats), "--root", str(corpus), "--ubm",
                           str(root / "ubm.npz"), "--models", str(models), "--trials",
                           str(corpus / "trials.lst"), "--out", str(tmp_path / "s.txt")])
    assert line.startswith(f"ipem score: error: {corpus / 'trials.lst'}: ")
    assert f"no model file {models / 'spk3.npz'} for model id 'spk3'" in line
    assert not (tmp_path / "s.txt").exists()


def test_empty_list(world, capsys, tmp_path):
    root, corpus, feats = world
    empty = tmp_path / "empty.lst"
    empty.write_text("# nothing but a comment\n\n")
    line = _error(capsys, ["train-ubm", "--features", str(feats), "--list", str(empty),
                           "--out", str(tmp_path / "u.npz")])
    assert line == f"ipem train-ubm: error: {empty}: the list is empty"


def test_enrollment_line_without_utterance(world, capsys, tmp_path):
    root, corpus, feats = world
    enroll = tmp_path / "enroll.lst"
    enroll.write_text("spk0 wav/spk0/spk0_enroll_0.wav\n\n# comment\nspk1\n")
    line = _error(capsys, ["adapt", "--features", str(feats), "--root", str(corpus), "--ubm",
                           str(root / "ubm.npz"), "--enroll", str(enroll), "--out-dir",
                           str(tmp_path / "models")])
    assert line.startswith(f"ipem adapt: error: {enroll}, line 4: expected 'model_id "
                           "utterance...'")
    assert "'spk1'" in line
    assert not (tmp_path / "models").exists()


def test_one_class_score_file(capsys, tmp_path):
    scores = tmp_path / "scores.txt"
    scores.write_text("spk1 utt1 0.5 target\nspk2 utt2 0.25 target\n")
    line = _error(capsys, ["evaluate", "--scores", str(scores)])
    assert line.startswith(f"ipem evaluate: error: {scores}: needs both target and "
                           "non-target trials")
    assert "2 target, 0 non-target" in line


def test_bad_score_line(capsys, tmp_path):
    scores = tmp_path / "scores.txt"
    scores.write_text("spk1 utt1 0.5 target\nspk1 utt2 notanumber nontarget\n")
    line = _error(capsys, ["evaluate", "--scores", str(scores)])
    assert line == (f"ipem evaluate: error: {scores}, line 2: score 'notanumber' is not a "
                    "number")


def test_extract_without_audio(capsys, tmp_path):
    (tmp_path / "notes.txt").write_text("no audio here\n")
    line = _error(capsys, ["extract", "--root", str(tmp_path), "--out-dir", str(tmp_path / "f")])
    assert line == f"ipem extract: error: no audio files found under {tmp_path}"


def test_truncated_feature_file_is_named(world, capsys, tmp_path):
    root, corpus, feats = world
    bad = tmp_path / "truncated.htk"
    good = feats / "wav/spk0/spk0_ubm_0.htk"
    bad.write_bytes(good.read_bytes()[:-10])
    lst = tmp_path / "ubm.lst"
    lst.write_text(f"{good}\n{bad}\n")
    line = _error(capsys, ["train-ubm", "--features", str(feats), "--list", str(lst),
                           "--out", str(tmp_path / "u.npz")])
    assert line.startswith("ipem train-ubm: error: ") and str(bad) in line
    assert "truncated" in line or "size" in line


def test_engine_side_error_exit_code(world, capsys, tmp_path):
    """A file with a good header but NaN frames: found by the engine reading it."""
    root, corpus, feats = world
    X = np.ones((200, D), np.float32)
    X[123, 1] = np.nan
    bad = tmp_path / "nan_frames.htk"
    features.write(bad, X)
    lst = tmp_path / "ubm.lst"
    lst.write_text(f"{feats / 'wav/spk0/spk0_ubm_0.htk'}\n{bad}\n")
    ipem.parallel.ensure_mpiexec()
    line = _error(capsys, ["train-ubm", "--features", str(feats), "--list", str(lst),
                           "--out", str(tmp_path / "u.npz"), "--cluster", "mpi:2", "--quiet"])
    assert line.startswith("ipem train-ubm: error: ") and str(bad) in line
    assert "NaN" in line or "non-finite" in line
    assert not (tmp_path / "u.npz").exists()


@pytest.mark.parametrize("command", [["-m", "ipem.cli", "demo"], ["-m", "ipem.demo"]],
                         ids=["ipem demo", "python -m ipem.demo"])
def test_demo_without_soundfile_says_what_to_install(tmp_path, command):
    """soundfile made unimportable the way Python itself reports a missing module."""
    script = ("import runpy, sys; sys.modules['soundfile'] = None; "
              f"sys.argv = ['x', *{command[2:]!r}, '--out', {str(tmp_path / 'd')!r}]; "
              f"runpy.run_module({command[1]!r}, run_name='__main__')")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    prog = "ipem demo" if command[1] == "ipem.cli" else "python -m ipem.demo"
    assert run.stderr == (f"{prog}: error: soundfile is needed to write the demo corpus's "
                          "audio: pip install 'ipem[speaker]'\n")
    assert run.returncode in (1, 2) and not (tmp_path / "d").exists()
