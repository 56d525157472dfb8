"""Hostile and broken input, found before the work (issue 10, continued).

A step checks what it can before it starts: outputs it can write, inputs it
can read, lists without repeats, the headers of every feature file.  What can
only be found while working (NaN frames, a truncated WAV file) leaves no
half-written output: directories are written all or nothing, temporary files
are removed on every way out, SIGTERM included.  Every error is one line that
names the file (and the line of a list), in the command's own terms.
"""
import importlib
import logging
import os
import signal
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from ipem import io as features
from ipem.cli import main
from ipem.io.lists import quote_field, read_list, split_fields
from ipem.mixture.ubm import UBMTrainer
from ipem.plotting import LivePlot
from ipem import steps
from ipem.speaker import FeatureSource, scorefiles
from ipem.speaker.frontend import read_audio
from ipem.speaker.scorefiles import read_trials
from ipem.steps import cluster as steps_cluster
from ipem.steps import gmm as steps_gmm

D = 3
SPEAKERS = ["s0", "s1", "s2"]
ROOT_USER = os.geteuid() == 0


def _one_line_error(capsys, argv, code=1):
    """Run ``main(argv)``; expect exit status ``code`` and one error line, which is returned."""
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == code, (rc, out, err)
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def _leftovers(*dirs):
    """Temporary files and directories (``.<name>.<hex>.tmp``) under ``dirs``."""
    return sorted(str(p) for d in dirs if Path(d).exists() for p in Path(d).rglob(".*.tmp"))


def _snapshot(directory):
    return {p.relative_to(directory): p.read_bytes() for p in Path(directory).rglob("*")
            if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """feats/wav/<spk>/<spk>_{ubm,enroll,test}.htk, lists in corpus/, a 2-Gaussian UBM."""
    root = tmp_path_factory.mktemp("late")
    corpus, feats = root / "corpus", root / "feats"
    corpus.mkdir()
    rng = np.random.default_rng(0)
    for i, s in enumerate(SPEAKERS):
        for role in ("ubm", "enroll", "test"):
            path = feats / f"wav/{s}/{s}_{role}.htk"
            path.parent.mkdir(parents=True, exist_ok=True)
            features.write(path, rng.normal(i, 1.0, size=(150, D)))
    (corpus / "ubm.lst").write_text("".join(f"wav/{s}/{s}_ubm.wav\n" for s in SPEAKERS))
    (corpus / "enroll.lst").write_text("".join(f"{s} wav/{s}/{s}_enroll.wav\n"
                                               for s in SPEAKERS))
    (corpus / "trials.lst").write_text("".join(
        f"{m} wav/{s}/{s}_test.wav {'target' if m == s else 'nontarget'}\n"
        for m in SPEAKERS for s in SPEAKERS))
    X = np.concatenate([features.load(features.describe(feats / f"wav/{s}/{s}_ubm.htk"))
                        for s in SPEAKERS])
    UBMTrainer(2, stage_iter=2, final_iter=2, random_state=0).fit(X).save(root / "ubm.npz")
    steps.adapt(str(root / "ubm.npz"), corpus / "enroll.lst", root / "models",
                source=FeatureSource(feats, corpus))
    return root, corpus, feats


def _argv(world, command, **extra):
    root, corpus, feats = world
    common = ["--features", str(feats), "--root", str(corpus), "--quiet"]
    base = {
        "train-ubm": ["--list", str(corpus / "ubm.lst"), "-K", "2", "--stage-iter", "1",
                      "--final-iter", "2"],
        "adapt": ["--ubm", str(root / "ubm.npz"), "--enroll", str(corpus / "enroll.lst")],
        "score": ["--ubm", str(root / "ubm.npz"), "--models", str(root / "models"),
                  "--trials", str(corpus / "trials.lst")],
    }[command]
    return [command, *common, *base, *[a for k, v in extra.items()
                                       for a in ("--" + k.replace("_", "-"), str(v))]]


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if a cluster is started or training, adaptation or scoring begins."""
    def refuse(*args, **kwargs):
        raise AssertionError("work started before the checks")
    monkeypatch.setattr(steps_cluster, "controller_from_spec", refuse)
    monkeypatch.setattr(UBMTrainer, "fit", refuse)
    monkeypatch.setattr(steps_gmm, "adapt_speakers", refuse)
    monkeypatch.setattr(steps_gmm, "score_trials", refuse)
    monkeypatch.setattr(importlib.import_module("ipem.steps.extract"), "extract_many", refuse)


# ---------------------------------------------------------------------------
# outputs that cannot be written: refused before any work
# ---------------------------------------------------------------------------

OUTPUT_CASES = {
    "ubm-missing-dir": ("train-ubm", "out", "{tmp}/nonexistent/dir/u.npz",
                        "--out {tmp}/nonexistent/dir/u.npz: the directory "
                        "{tmp}/nonexistent/dir does not exist"),
    "ubm-is-dir": ("train-ubm", "out", "{tmp}", "--out {tmp} is a directory: give a file name"),
    "plot-missing-dir": ("train-ubm", "plot", "{tmp}/gone/conv.png",
                         "--plot {tmp}/gone/conv.png: the directory {tmp}/gone does not exist"),
    "plot-format": ("train-ubm", "plot", "{tmp}/conv.xyz",
                    "--plot {tmp}/conv.xyz: matplotlib cannot write .xyz images"),
    "checkpoint-missing-dir": ("train-ubm", "checkpoint", "{tmp}/gone/ck.npz",
                               "--checkpoint {tmp}/gone/ck.npz: the directory {tmp}/gone does "
                               "not exist"),
    "checkpoint-is-dir": ("train-ubm", "checkpoint", "{tmp}",
                          "--checkpoint {tmp} is a directory: give a file name"),
    "scores-is-dir": ("score", "out", "{tmp}", "--out {tmp} is a directory: give a file name"),
    "scores-missing-dir": ("score", "out", "{tmp}/gone/s.txt",
                           "--out {tmp}/gone/s.txt: the directory {tmp}/gone does not exist"),
    "models-is-file": ("adapt", "out_dir", "{tmp}/file",
                       "--out-dir {tmp}/file exists and is not a directory"),
    "models-under-file": ("adapt", "out_dir", "{tmp}/file/models",
                          "--out-dir {tmp}/file/models: {tmp}/file is not a directory"),
}


@pytest.mark.parametrize("case", list(OUTPUT_CASES))
def test_outputs_are_checked_before_any_work(world, tmp_path, capsys, no_work, case):
    command, option, value, problem = OUTPUT_CASES[case]
    (tmp_path / "file").write_text("not a directory\n")
    value, problem = value.format(tmp=tmp_path), problem.format(tmp=tmp_path)
    extra = {option: value}
    if command == "train-ubm":
        extra.setdefault("out", tmp_path / "u.npz")
    elif command == "score":
        extra.setdefault("out", tmp_path / "s.txt")
    else:
        extra.setdefault("out_dir", tmp_path / "models")
    line = _one_line_error(capsys, _argv(world, command, **extra))
    assert line.startswith(f"ipem {command}: error: {problem}"), line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_pipeline_checks_outputs_before_training(world, tmp_path, monkeypatch):
    root, corpus, feats = world
    files = FeatureSource(feats, corpus).files(corpus / "ubm.lst")
    monkeypatch.setattr(UBMTrainer, "fit", lambda *a, **k: pytest.fail("trained"))
    for kwargs, problem in [
            (dict(out=tmp_path / "no/u.npz"), f"out {tmp_path / 'no/u.npz'}: the directory"),
            (dict(checkpoint=str(tmp_path)), f"checkpoint {tmp_path} is a directory"),
            (dict(plot=str(tmp_path / "no/p.png")), f"plot {tmp_path / 'no/p.png'}: the "
                                                    "directory")]:
        with pytest.raises(ValueError, match="^" + problem):
            steps.train_ubm(files, n_components=2, **kwargs)
    with pytest.raises(ValueError, match=f"^out {tmp_path}"):
        steps.score(str(root / "ubm.npz"), corpus / "trials.lst", root / "models",
                    source=FeatureSource(feats, corpus), out=tmp_path)
    with pytest.raises(ValueError, match=f"^out_dir {tmp_path / 'f'} exists"):
        (tmp_path / "f").write_text("")
        steps.adapt(str(root / "ubm.npz"), corpus / "enroll.lst", tmp_path / "f",
                    source=FeatureSource(feats, corpus))


@pytest.mark.skipif(ROOT_USER, reason="root may write anywhere")
def test_unwritable_output_directory(world, tmp_path, capsys, no_work):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        line = _one_line_error(capsys, _argv(world, "train-ubm", out=locked / "u.npz"))
    finally:
        locked.chmod(0o700)
    assert line == (f"ipem train-ubm: error: --out {locked / 'u.npz'}: the directory {locked} "
                    "is not writable")


# ---------------------------------------------------------------------------
# inputs: named on the command line, listed, feature headers
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("command, option, problem", [
    ("adapt", "ubm", "--ubm {p} does not exist"),
    ("adapt", "enroll", "--enroll {p} does not exist"),
    ("score", "trials", "--trials {p} does not exist"),
    ("score", "models", "--models {p} does not exist"),
    ("train-ubm", "list", "--list {p} does not exist"),
    ("train-ubm", "features", "--features {p} does not exist"),
])
def test_missing_inputs_are_named_before_any_work(world, tmp_path, capsys, no_work, command,
                                                  option, problem):
    missing = tmp_path / "missing"
    argv = _argv(world, command, out=tmp_path / "o") if command != "adapt" else \
        _argv(world, command, out_dir=tmp_path / "o")
    flag = "--" + option
    argv[argv.index(flag) + 1] = str(missing)
    line = _one_line_error(capsys, argv)
    assert line == f"ipem {command}: error: {problem.format(p=missing)}"
    assert not (tmp_path / "o").exists()


def test_input_that_is_a_directory(world, tmp_path, capsys, no_work):
    argv = _argv(world, "adapt", out_dir=tmp_path / "m")
    argv[argv.index("--ubm") + 1] = str(tmp_path)
    line = _one_line_error(capsys, argv)
    assert line == f"ipem adapt: error: --ubm {tmp_path} is a directory, not a file"


@pytest.mark.parametrize("command", ["adapt", "score"])
def test_missing_listed_feature_file_found_before_any_work(world, tmp_path, capsys, no_work,
                                                           command):
    root, corpus, feats = world
    if command == "adapt":
        lst = tmp_path / "enroll.lst"
        lst.write_text("s0 wav/s0/s0_enroll.wav\ns1 wav/s1/s1_enroll.wav wav/s1/gone.wav\n")
        argv = _argv(world, "adapt", out_dir=tmp_path / "models")
        argv[argv.index("--enroll") + 1] = str(lst)
        who = f"{lst}: speaker s1"
    else:
        lst = tmp_path / "trials.lst"
        lst.write_text("s0 wav/s0/s0_test.wav target\ns1 wav/s1/gone.wav nontarget\n")
        argv = _argv(world, "score", out=tmp_path / "s.txt")
        argv[argv.index("--trials") + 1] = str(lst)
        who = f"{lst}: test segment wav/s1/gone.wav"
    line = _one_line_error(capsys, argv)
    assert line.startswith(f"ipem {command}: error: {who}: {feats / 'wav/s1/gone.htk'}: does "
                           "not exist"), line
    assert sorted(p.name for p in tmp_path.iterdir()) == [lst.name]


def test_missing_training_file_found_before_any_engine_starts(world, tmp_path, capsys,
                                                              no_work):
    root, corpus, feats = world
    lst = tmp_path / "ubm.lst"
    lst.write_text("wav/s0/s0_ubm.wav\nwav/s1/gone.wav\n")
    argv = _argv(world, "train-ubm", out=tmp_path / "u.npz", cluster="mpi:2")
    argv[argv.index("--list") + 1] = str(lst)
    line = _one_line_error(capsys, argv)
    assert line.startswith(f"ipem train-ubm: error: {feats / 'wav/s1/gone.htk'}: does not "
                           "exist"), line


def test_features_of_another_dimension_found_before_any_work(world, tmp_path, capsys,
                                                             no_work):
    root, corpus, feats = world
    odd = tmp_path / "odd.htk"
    features.write(odd, np.zeros((50, D + 1)))
    lst = tmp_path / "enroll.lst"
    lst.write_text(f"s0 wav/s0/s0_enroll.wav\ns1 {odd}\n")
    argv = _argv(world, "adapt", out_dir=tmp_path / "models")
    argv[argv.index("--enroll") + 1] = str(lst)
    line = _one_line_error(capsys, argv)
    assert line == (f"ipem adapt: error: {lst}: speaker s1: {odd}: has 4 features per frame, "
                    f"but the UBM has {D}").replace(f"{odd}: has", f"{odd} has")


def test_missing_audio_found_before_extraction(tmp_path, capsys, no_work):
    corpus = tmp_path / "corpus"
    _wav(corpus / "wav/a.wav")
    lst = corpus / "extract.lst"
    lst.write_text("wav/a.wav\nwav/gone.wav\n")
    line = _one_line_error(capsys, ["extract", "--root", str(corpus), "--out-dir",
                                    str(tmp_path / "feats"), "--list", str(lst), "--quiet"])
    assert line == (f"ipem extract: error: {lst}, line 2: audio file {corpus / 'wav/gone.wav'} "
                    "does not exist")
    assert not (tmp_path / "feats").exists()


# ---------------------------------------------------------------------------
# all or nothing: failures found while working leave no half-filled directory
# ---------------------------------------------------------------------------

def _nan_enrollment(world, tmp_path):
    root, corpus, feats = world
    X = np.ones((100, D), np.float32)
    X[42, 1] = np.nan
    bad = tmp_path / "nan.htk"
    features.write(bad, X)               # a good header: found only when the frames are read
    lst = tmp_path / "enroll.lst"
    lst.write_text(f"s0 wav/s0/s0_enroll.wav\ns1 wav/s1/s1_enroll.wav\ns2 {bad}\n")
    return lst, bad


@pytest.mark.parametrize("existing", [False, True], ids=["new-dir", "existing-dir"])
def test_adapt_failing_midway_leaves_no_half_filled_directory(world, tmp_path, capsys,
                                                              existing):
    lst, bad = _nan_enrollment(world, tmp_path)
    models = tmp_path / "models"
    if existing:
        models.mkdir()
        (models / "old.npz").write_bytes(b"an older model")
        (models / "s0.npz").write_bytes(b"s0 of an earlier run")
    before = _snapshot(models) if existing else None
    argv = _argv(world, "adapt", out_dir=models)
    argv[argv.index("--enroll") + 1] = str(lst)
    line = _one_line_error(capsys, argv)
    assert str(bad) in line and ("NaN" in line or "non-finite" in line), line
    if existing:
        assert _snapshot(models) == before
    else:
        assert not models.exists()
    assert _leftovers(tmp_path) == []


def test_adapt_into_an_existing_directory_keeps_other_models(world, tmp_path, capsys):
    models = tmp_path / "models"
    models.mkdir()
    (models / "old.npz").write_bytes(b"an older model")
    (models / "s0.npz").write_bytes(b"s0 of an earlier run")
    assert main(_argv(world, "adapt", out_dir=models)) == 0
    assert sorted(p.name for p in models.iterdir()) == ["old.npz", "s0.npz", "s1.npz",
                                                        "s2.npz"]
    assert (models / "old.npz").read_bytes() == b"an older model"
    assert (models / "s0.npz").read_bytes() != b"s0 of an earlier run"
    assert _leftovers(tmp_path) == []


def test_adapt_through_a_symlinked_directory(world, tmp_path):
    root, corpus, feats = world
    real, link = tmp_path / "scratch" / "models", tmp_path / "models"
    real.mkdir(parents=True)
    link.symlink_to(real, target_is_directory=True)
    written = steps.adapt(str(root / "ubm.npz"), corpus / "enroll.lst", link,
                          source=FeatureSource(feats, corpus))
    assert link.is_symlink() and sorted(p.name for p in real.iterdir()) == \
        ["s0.npz", "s1.npz", "s2.npz"]
    assert written["s1"] == str(link / "s1.npz") and _leftovers(tmp_path) == []


@pytest.mark.parametrize("before", ["default", "ignored"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_adapt_removes_the_temporary_directory(world, tmp_path, capsys,
                                                            monkeypatch, sig, before):
    if before == "ignored":
        # as left by a library, or inherited: the CLI installs its own handlers anyway
        previous = signal.signal(sig, signal.SIG_IGN)
        request_restore = previous
    else:
        request_restore = None
    real = steps_gmm.adapt_speakers
    seen = {}

    def adapt_then_signal(*args, out_dir, **kwargs):
        result = real(*args, out_dir=out_dir, **kwargs)
        seen["tmp"] = out_dir
        assert len(list(Path(out_dir).glob("*.npz"))) == 3   # written, not yet in place
        os.kill(os.getpid(), sig)        # the CLI turns it into an exception here
        return result

    monkeypatch.setattr(steps_gmm, "adapt_speakers", adapt_then_signal)
    models = tmp_path / "models"
    try:
        rc = main(_argv(world, "adapt", out_dir=models))
    finally:
        if request_restore is not None:
            signal.signal(sig, request_restore)
    err = capsys.readouterr().err
    assert rc == 128 + sig and f"stopped by {signal.Signals(sig).name}" in err
    assert not Path(seen["tmp"]).exists() and not models.exists()
    assert _leftovers(tmp_path) == []


def test_sigterm_while_a_checkpoint_is_written_removes_its_temporary(world, tmp_path, capsys,
                                                                     monkeypatch):
    import ipem.io.atomic

    real, calls = os.fsync, []

    def fsync_then_signal(fd):          # the third checkpoint write, data written, not renamed
        calls.append(fd)
        real(fd)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(ipem.io.atomic.os, "fsync", fsync_then_signal)
    ck, out, plot = tmp_path / "ck.npz", tmp_path / "u.npz", tmp_path / "conv.png"
    rc = main(_argv(world, "train-ubm", out=out, checkpoint=ck, plot=plot))
    err = capsys.readouterr().err
    assert rc == 128 + signal.SIGTERM, err
    assert f"the checkpoint {ck} holds the last completed iteration" in err
    assert ck.exists() and not out.exists()
    assert _leftovers(tmp_path) == []


def test_extract_failing_midway_writes_nothing(tmp_path, capsys):
    corpus, out = tmp_path / "corpus", tmp_path / "feats"
    for name in ("a", "b", "c"):
        _wav(corpus / f"wav/{name}.wav", seed=ord(name))
    full = (corpus / "wav/b.wav").read_bytes()
    (corpus / "wav/b.wav").write_bytes(full[:5000])          # 2 s announced, 0.3 s present
    argv = ["extract", "--root", str(corpus), "--out-dir", str(out), "--quiet"]
    line = _one_line_error(capsys, argv)
    assert line.startswith("ipem extract: error: ") and \
        f"audio file {corpus / 'wav/b.wav'} is truncated" in line, line
    assert not out.exists() and _leftovers(tmp_path) == []
    # into an existing feature directory: it is left as it was
    out.mkdir()
    (out / "keep.htk").write_bytes(b"older features")
    _one_line_error(capsys, argv)
    assert _snapshot(out) == {Path("keep.htk"): b"older features"}
    # once the file is whole, everything arrives, the older file kept
    (corpus / "wav/b.wav").write_bytes(full)
    assert main(argv) == 0
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == \
        ["ipem_features.json", "keep.htk", "wav/a.htk", "wav/b.htk", "wav/c.htk"]  # + manifest
    assert _leftovers(tmp_path) == []


# ---------------------------------------------------------------------------
# issue 22: the staging directory of a step killed with SIGKILL
# ---------------------------------------------------------------------------

def _kill_when_staged(argv, staging_in, n_files):
    """Start ``python -m ipem *argv``; SIGKILL it (by PID) once a staging directory
    ``.<name>.<hex>.tmp`` under ``staging_in`` holds ``n_files`` files; return that directory."""
    proc = subprocess.Popen([sys.executable, "-m", "ipem", *argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        while True:
            staged = [p for p in Path(staging_in).glob(".*.tmp") if p.is_dir()]
            if staged and sum(1 for p in staged[0].rglob("*.*") if p.is_file()) >= n_files:
                break
            assert proc.poll() is None, "the step ended before it was killed: " + \
                proc.stderr.read().decode()
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert staged[0].is_dir(), "the killed step left nothing to clean: the test tested nothing"
    return staged[0]


class _Abandoned(Exception):
    pass


@pytest.mark.once
def test_adapt_killed_mid_step_leaves_a_stale_directory_the_next_run_removes(tmp_path):
    """SIGKILL can remove nothing: the next run removes what the killed one staged, and
    never the staging directory of a step still running in another process."""
    from ipem.io.atomic import atomic_directory
    root, corpus, feats = tmp_path, tmp_path / "corpus", tmp_path / "feats"
    corpus.mkdir()
    (feats / "wav").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = []
    for s in range(600):
        features.write(feats / f"wav/s{s:03d}.htk", rng.normal(s % 3, 1.0, size=(100, D)))
        lines.append(f"s{s:03d} wav/s{s:03d}.wav\n")
    (corpus / "enroll.lst").write_text("".join(lines))
    UBMTrainer(4, stage_iter=1, final_iter=2, random_state=0).fit(
        rng.normal(size=(600, D))).save(root / "ubm.npz")

    def argv(out):
        return ["adapt", "--ubm", str(root / "ubm.npz"), "--enroll", str(corpus / "enroll.lst"),
                "--features", str(feats), "--root", str(corpus), "--out-dir", str(out),
                "--quiet"]

    assert main(argv(root / "ref")) == 0
    out = root / "models"
    stale = _kill_when_staged(argv(out), root, 20)
    assert not out.exists()                        # nothing of it is visible
    with pytest.raises(_Abandoned):
        with atomic_directory(out) as live:        # a step running here meanwhile
            (Path(live) / "mine.npz").write_bytes(b"being written")
            rerun = subprocess.run([sys.executable, "-m", "ipem", *argv(out)],
                                   capture_output=True, text=True, timeout=300)
            assert rerun.returncode == 0, rerun.stderr
            assert not stale.exists(), "the stale staging directory was left"
            assert (Path(live) / "mine.npz").exists(), "a live step's directory was removed"
            raise _Abandoned
    assert _snapshot(out) == _snapshot(root / "ref")
    assert _leftovers(root) == []


@pytest.mark.once
def test_extract_killed_mid_step_into_an_existing_directory(tmp_path, capsys):
    corpus, out, ref = tmp_path / "corpus", tmp_path / "feats", tmp_path / "ref"
    for i in range(200):
        _wav(corpus / f"wav/u{i:03d}.wav", seconds=1.0, seed=i)
    out.mkdir()
    (out / "keep.htk").write_bytes(b"older features")
    argv = ["extract", "--root", str(corpus), "--quiet", "--out-dir"]
    assert main(argv + [str(ref)]) == 0
    stale = _kill_when_staged(argv + [str(out)], out, 10)
    visible = {k: v for k, v in _snapshot(out).items() if not k.parts[0].startswith(".")}
    assert visible == {Path("keep.htk"): b"older features"}
    assert main(argv + [str(out)]) == 0
    assert not stale.exists() and _leftovers(tmp_path) == []
    got = _snapshot(out)
    assert got.pop(Path("keep.htk")) == b"older features"
    assert got == _snapshot(ref)


# ---------------------------------------------------------------------------
# a truncated WAV file
# ---------------------------------------------------------------------------

def _wav(path, seconds=2.0, seed=0):
    """16-bit mono 8 kHz noise, loud and quiet by turns (so that the VAD finds speech)."""
    rng = np.random.default_rng(seed)
    n = int(8000 * seconds)
    x = rng.normal(size=n) * np.where((np.arange(n) // 2000) % 2 == 0, 0.3, 0.003)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes((x * 32767).clip(-32767, 32767).astype(np.int16).tobytes())


def test_truncated_wav_is_refused(tmp_path):
    path = tmp_path / "a.wav"
    _wav(path, seconds=5.0)
    whole = path.read_bytes()
    assert read_audio(path).size == 40000
    path.write_bytes(whole[:5000])                   # header says 5 s, 5 KB present
    with pytest.raises(ValueError) as info:
        read_audio(path)
    assert str(info.value) == (f"audio file {path} is truncated: its header announces 80000 "
                               "bytes of samples, the file holds 4956 (5.00 s; 0.31 s present)")
    # a stream whose size was never filled in is not a truncation
    stream = bytearray(whole[:5000])
    stream[40:44] = b"\xff\xff\xff\xff"
    path.write_bytes(bytes(stream))
    assert read_audio(path).size > 0


# ---------------------------------------------------------------------------
# lists: repeats refused, binary files named with the line, quoted paths
# ---------------------------------------------------------------------------

def test_repeated_model_lines_are_merged(world, tmp_path):
    # issue 20: a model on several lines (one (model, segment) pair per line, as NIST SRE
    # enrollment tables and SIDEKIT's IdMap write it) is one model; it was refused before
    root, corpus, feats = world
    lst = tmp_path / "enroll.lst"
    lst.write_text("s0 wav/s0/s0_enroll.wav\n# comment\ns1 wav/s1/s1_enroll.wav\n"
                   "s0 wav/s0/s0_test.wav\n")
    got = FeatureSource(feats, corpus).enrollment(lst)
    assert list(got) == ["s0", "s1"]
    assert [os.path.basename(f) for f in got["s0"]] == ["s0_enroll.htk", "s0_test.htk"]


def test_repeated_enrollment_pair_names_both_lines(world, tmp_path, capsys, no_work):
    lst = tmp_path / "enroll.lst"
    lst.write_text("s0 wav/s0/s0_enroll.wav\n# comment\ns1 wav/s1/s1_enroll.wav\n"
                   "s0 wav/s0/s0_enroll.wav\n")
    argv = _argv(world, "adapt", out_dir=tmp_path / "models")
    argv[argv.index("--enroll") + 1] = str(lst)
    line = _one_line_error(capsys, argv)
    assert line == (f"ipem adapt: error: {lst}, line 4: utterance wav/s0/s0_enroll.wav is "
                    "listed twice (first at line 1): it would count twice")


def test_utterance_twice_for_one_speaker(world, tmp_path):
    root, corpus, feats = world
    lst = tmp_path / "enroll.lst"
    lst.write_text("s0 wav/s0/s0_enroll.wav wav/s0/s0_enroll.wav\n")
    with pytest.raises(ValueError) as info:
        FeatureSource(feats, corpus).enrollment(lst)
    assert str(info.value) == (f"{lst}, line 1: utterance wav/s0/s0_enroll.wav is listed twice "
                               "(first at line 1): it would count twice")


def test_duplicated_trial_line(world, tmp_path, capsys, no_work):
    lst = tmp_path / "trials.lst"
    lst.write_text("s0 wav/s0/s0_test.wav target\ns1 wav/s0/s0_test.wav nontarget\n"
                   "s0 wav/s0/s0_test.wav target\n")
    with pytest.raises(ValueError) as info:
        read_trials(lst)
    msg = f"{lst}, line 3: trial 's0 wav/s0/s0_test.wav' repeats line 1"
    assert str(info.value) == msg
    argv = _argv(world, "score", out=tmp_path / "s.txt")
    argv[argv.index("--trials") + 1] = str(lst)
    assert _one_line_error(capsys, argv) == f"ipem score: error: {msg}"


def test_duplicated_utterance_in_training_lists(world, tmp_path, capsys, no_work):
    root, corpus, feats = world
    one, two = tmp_path / "one.lst", tmp_path / "two.lst"
    one.write_text("wav/s0/s0_ubm.wav\nwav/s1/s1_ubm.wav\n\nwav/s0/s0_ubm.wav\n")
    two.write_text("wav/s2/s2_ubm.wav\nwav/s1/s1_ubm.wav\n")
    with pytest.raises(ValueError) as info:
        FeatureSource(feats, corpus).files(one)
    assert str(info.value) == (f"{one}, line 4: utterance wav/s0/s0_ubm.wav is listed twice "
                               "(first at line 1): it would count twice")
    argv = _argv(world, "train-ubm", out=tmp_path / "u.npz")
    argv[argv.index("--list") + 1] = str(two)
    argv += ["--list", str(corpus / "ubm.lst")]
    line = _one_line_error(capsys, argv)
    assert line == (f"ipem train-ubm: error: {corpus / 'ubm.lst'}, line 2: utterance "
                    f"wav/s1/s1_ubm.wav is listed twice (first at {two}, line 2): it would "
                    "count twice")


def test_duplicated_score_line_is_refused(tmp_path, capsys):
    scores = tmp_path / "scores.txt"
    scores.write_text("s0 t1 0.5 target\ns1 t1 -0.5 nontarget\ns0 t1 0.7 target\n")
    line = _one_line_error(capsys, ["evaluate", "--scores", str(scores)])
    assert line == f"ipem evaluate: error: {scores}, line 3: trial 's0 t1' repeats line 1"


@pytest.mark.parametrize("content, problem", [
    (b"s0 wav/a.wav\n# ok\ns1 \xff\xfe\x00\x01 binary\n",
     "line 3: contains a NUL byte (a binary file, not a text list?)"),
    (b"s0 wav/a.wav\ns1 wav/\xe9t\xe9.wav\n",
     "line 2: byte 8 (0xe9) is not UTF-8 text (a binary file, not a text list?)"),
    (b"s0 wav/a.wav\n" + b"x" * (2 << 20),
     "line 2: longer than 1048576 bytes (a binary file, not a text list?)"),
], ids=["nul", "latin-1", "no-newline"])
def test_binary_list_names_file_and_line(world, tmp_path, capsys, no_work, content, problem):
    lst = tmp_path / "enroll.lst"
    lst.write_bytes(content)
    with pytest.raises(ValueError) as info:
        read_list(lst)
    assert str(info.value) == f"{lst}: {problem}"
    argv = _argv(world, "adapt", out_dir=tmp_path / "models")
    argv[argv.index("--enroll") + 1] = str(lst)
    assert _one_line_error(capsys, argv) == f"ipem adapt: error: {lst}: {problem}"


def test_byte_order_mark_is_skipped(tmp_path):
    lst = tmp_path / "a.lst"
    lst.write_bytes("\ufeffs0 wav/a.wav\n".encode("utf-8"))
    assert read_list(lst) == [(1, ["s0", "wav/a.wav"])]


@pytest.mark.parametrize("field", ["plain.wav", "wav/my file.wav", "O'Neil's mix.wav",
                                   'say "hi".wav', "'quoted'", "tab\there"])
def test_quote_field_round_trips(field):
    assert split_fields(f"spk {quote_field(field)} end") == ["spk", field, "end"]


@pytest.mark.parametrize("line, problem", [
    ('s0 "wav/a b.wav', 'the quote " at column 4 is not closed'),
    ('s0 "wav/a b".wav', 'the closing quote " at column 12 must end the field'),
    ("s0 '' x", "empty quoted field at column 4"),
])
def test_bad_quotes_name_file_and_line(tmp_path, line, problem):
    lst = tmp_path / "enroll.lst"
    lst.write_text(f"# header\n{line}\n")
    with pytest.raises(ValueError) as info:
        read_list(lst)
    assert str(info.value).startswith(f"{lst}: line 2: {problem}")


def test_paths_with_spaces(world, tmp_path, capsys):
    root, corpus, feats = world
    spaced = tmp_path / "feats"
    rng = np.random.default_rng(5)
    for role in ("enroll", "test"):
        path = spaced / f"wav/s 0/my {role}.htk"
        path.parent.mkdir(parents=True, exist_ok=True)
        features.write(path, rng.normal(0.0, 1.0, size=(150, D)))
    enroll, trials = tmp_path / "enroll.lst", tmp_path / "trials.lst"
    enroll.write_text('s0 "wav/s 0/my enroll.wav"\n')
    trials.write_text("s0 'wav/s 0/my test.wav' target\n")
    assert FeatureSource(spaced, corpus).enrollment(enroll) == \
        {"s0": [str(spaced / "wav/s 0/my enroll.htk")]}
    common = ["--features", str(spaced), "--root", str(corpus), "--ubm", str(root / "ubm.npz"),
              "--quiet"]
    models, scores = tmp_path / "models", tmp_path / "scores.txt"
    assert main(["adapt", *common, "--enroll", str(enroll), "--out-dir", str(models)]) == 0
    assert main(["score", *common, "--models", str(models), "--trials", str(trials),
                 "--out", str(scores)]) == 0
    capsys.readouterr()
    line = scores.read_text()
    assert line.startswith('s0 "wav/s 0/my test.wav" ') and line.endswith(" target\n")
    trial, = scorefiles.read_score_file(scores)[0]
    assert trial == ("s0", "wav/s 0/my test.wav", "target")


# ---------------------------------------------------------------------------
# messages in the command's terms
# ---------------------------------------------------------------------------

PYTHON_ADVICE = ("resume=False", "fmt=", "random_state=", "floor_mode='absolute') or",
                 "n_components=", "final_iter=")


def test_checkpoint_messages_name_options(world, tmp_path, capsys):
    ck = tmp_path / "ck.npz"
    argv = _argv(world, "train-ubm", out=tmp_path / "u.npz", checkpoint=ck)
    assert main(argv) == 0
    capsys.readouterr()
    for change, expected in [
            (["--seed", "3"], f"checkpoint {ck} was written with --seed 0, this training has "
                              "--seed 3: delete the checkpoint (or give another --checkpoint) "
                              "to train from the start, or use the same data and seed"),
            (["--final-iter", "5"], f"checkpoint {ck} was written with other settings: "
                                    "--final-iter 5 (checkpoint: 2); use the same options, or "
                                    "another --checkpoint")]:
        line = _one_line_error(capsys, argv + change)
        assert line == f"ipem train-ubm: error: {expected}"
        assert not any(advice in line for advice in PYTHON_ADVICE), line


def test_parameter_names_become_options(world, tmp_path, capsys):
    scores = tmp_path / "scores.txt"
    scores.write_text("s0 t0 1.0 target\ns0 t1 -1.0 nontarget\n")
    for argv, expected in [
            (_argv(world, "adapt", out_dir=tmp_path / "m", adapt="q"),
             "ipem adapt: error: --adapt 'q': expected a non-empty string of the letters"),
            (["calibrate", "--dev-scores", str(scores), "--prior", "2", "--out",
              str(tmp_path / "cal.json")],
             "ipem calibrate: error: --prior must be in (0, 1), got 2.0")]:
        line = _one_line_error(capsys, argv)
        assert line.startswith(expected), line


def test_constant_feature_and_unknown_extension_messages(world, tmp_path, capsys):
    root, corpus, feats = world
    flat = np.random.default_rng(1).normal(size=(200, D))
    flat[:, 1] = 4.0
    features.write(tmp_path / "flat.htk", flat)
    (tmp_path / "x.feat").write_bytes(b"\0" * 64)
    for content, expected in [
            (f"{tmp_path / 'flat.htk'}\n", "drop them from the features (--variance-floor is a "
                                          "fraction of each feature's variance"),
            (f"{tmp_path / 'x.feat'}\n", "Kaldi archives via .scp): give the file one of these "
                                         "extensions")]:
        lst = tmp_path / "ubm.lst"
        lst.write_text(content)
        argv = _argv(world, "train-ubm", out=tmp_path / "u.npz")
        argv[argv.index("--list") + 1] = str(lst)
        line = _one_line_error(capsys, argv)
        assert expected in line
        assert not any(advice in line for advice in PYTHON_ADVICE), line


# ---------------------------------------------------------------------------
# the convergence plot
# ---------------------------------------------------------------------------

def test_liveplot_failing_to_save_does_not_stop_training(tmp_path, caplog):
    gone = tmp_path / "gone"
    gone.mkdir()
    plot = LivePlot(path=str(gone / "p.png"), save_every=1)
    plot.notebook = False
    X = np.random.default_rng(0).normal(size=(300, 2))
    ubm = UBMTrainer(2, stage_iter=1, final_iter=3, random_state=0, callbacks=[plot])
    gone.rmdir()
    with caplog.at_level(logging.WARNING, logger="ipem.plotting"):
        ubm.fit(X)
    assert ubm.n_iter_ >= 3
    warned = [r.getMessage() for r in caplog.records if r.name == "ipem.plotting"]
    assert len(warned) == 1 and f"cannot write the convergence plot {gone / 'p.png'}" in \
        warned[0]
    with pytest.raises(FileNotFoundError):
        plot.save()
    gone.mkdir()
    plot.close()
    png = (gone / "p.png").read_bytes()
    assert png[:4] == b"\x89PNG" and _leftovers(tmp_path) == []

    def half_then_fail(fname, **kwargs):     # the disk fills up half way
        with open(fname, "wb") as fh:
            fh.write(png[:100])
        raise OSError("No space left on device")

    plot.figure.savefig = half_then_fail
    with pytest.raises(OSError):
        plot.close()
    assert (gone / "p.png").read_bytes() == png and _leftovers(tmp_path) == []


# ---------------------------------------------------------------------------
# optional packages, from the command line
# ---------------------------------------------------------------------------

def test_missing_extra_is_one_line_from_the_cli(tmp_path):
    features.write_kaldi(tmp_path / "feats.ark", tmp_path / "feats.scp",
                         {"u1": np.zeros((50, 2), np.float32)})
    code = ("import sys; sys.modules['kaldiio'] = None; from ipem.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    r = subprocess.run([sys.executable, "-c", code, "train-ubm", "--features", str(tmp_path),
                        "--list", str(tmp_path / "feats.scp"), "-K", "2", "--out",
                        str(tmp_path / "u.npz"), "--quiet"], capture_output=True, text=True,
                       cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr == ("ipem train-ubm: error: kaldiio is needed to read Kaldi ark/scp files: "
                        "pip install 'ipem[speaker]'\n")
