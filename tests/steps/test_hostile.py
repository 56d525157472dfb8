"""Hostile and broken input (issue 10): lists that run commands, paths that escape,
model and checkpoint files that lie.

Every case ends with a one-line ValueError (or ``ipem <cmd>: error: ...`` and exit
status 2 from the CLI), and nothing happens that the input asked for: no command
runs, no file is written outside its directory, no memory is spent on what a file
merely claims to hold.
"""
import io
import os
import resource
import shutil
import struct
import wave
import zipfile
import zlib

import numpy as np
import pytest

from ipem import io as features
from ipem.cli import main
from ipem.io.models import load_model, read_npz
from ipem.mixture.ubm import UBMTrainer
from ipem import steps
from ipem.speaker import FeatureSource, SpeakerModel, utterances
from ipem.speaker.map import ubm_params
from ipem.speaker.scorefiles import read_trials
from ipem.speaker.scoring import score_trials

D = 3
SPEAKERS = ["spk0", "spk1", "spk2"]
TOUCH = shutil.which("touch") or "/usr/bin/touch"

pytestmark = pytest.mark.hostile


def _one_line_error(capsys, argv):
    """Run ``main(argv)``, expecting it to fail while running (exit status 1); returns
    the one error line."""
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 1, (rc, out, err)
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def _one_line(exc_info):
    msg = str(exc_info.value)
    assert "\n" not in msg, msg
    return msg


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A corpus root with lists, features under feats/ and a 4-Gaussian UBM (ubm.npz)."""
    root = tmp_path_factory.mktemp("hostile")
    corpus, feats = root / "corpus", root / "feats"
    corpus.mkdir()
    rng = np.random.default_rng(0)
    for s in SPEAKERS:
        for role in ("ubm", "enroll", "test"):
            path = feats / f"wav/{s}/{s}_{role}.htk"
            path.parent.mkdir(parents=True, exist_ok=True)
            features.write(path, rng.normal(SPEAKERS.index(s), 1.0, size=(200, D)))
    (corpus / "ubm.lst").write_text("".join(f"wav/{s}/{s}_ubm.wav\n" for s in SPEAKERS))
    X = np.concatenate([features.load(features.describe(feats / f"wav/{s}/{s}_ubm.htk"))
                        for s in SPEAKERS])
    UBMTrainer(4, stage_iter=2, final_iter=3, random_state=0).fit(X).save(root / "ubm.npz")
    return root, corpus, feats


# ---------------------------------------------------------------------------
# commands named in lists
# ---------------------------------------------------------------------------

def _touch(target):
    """A Kaldi-style entry that would create ``target`` if a shell ran it."""
    return f"{TOUCH}${{IFS}}{target}|"


PIPE_FORMS = {                       # kaldiio runs the command of each of these
    "trailing": "{touch}",
    "leading": "| {cmd} {target}",
    "offset": "{touch}:12",           # the offset is cut off first, then '|' ends the name
    "slice": "{touch}[0:3]",
    "offset-slice": "{touch}:12[0:3]",
    "ark-specifier": "ark:{cmd} {target} |",
    "ark-leading": "ark,s,cs:|{cmd}${{IFS}}{target}",  # a Kaldi rspecifier of a command
}


def _pipe(form, target):
    return PIPE_FORMS[form].format(touch=_touch(target), cmd=TOUCH, target=target)


@pytest.mark.parametrize("form", list(PIPE_FORMS))
@pytest.mark.parametrize("reader", ["read_scp", "list_features_scp", "list_features_lst",
                                    "read_list", "read_trials"])
def test_pipes_in_lists_are_refused_and_never_run(tmp_path, reader, form):
    target = tmp_path / "pwned"
    entry = _pipe(form, target)
    if reader in ("read_scp", "list_features_scp"):
        lst = tmp_path / "feats.scp"
        lst.write_text(f"# header\nutt1 {entry}\n")
    elif reader == "read_trials":
        lst = tmp_path / "trials.lst"
        lst.write_text(f"# header\nspk0 {entry}\n")
    else:
        lst = tmp_path / "feats.lst"
        lst.write_text(f"# header\n{entry}\n")
    call = {"read_scp": features.read_scp, "list_features_scp": features.list_features,
            "list_features_lst": features.list_features, "read_list": features.read_list,
            "read_trials": read_trials}[reader]
    try:
        call(lst)
    except ValueError as exc:
        msg = str(exc)
    else:
        msg = None
    assert not target.exists(), f"reading {lst} ran the command"
    assert msg is not None, "not refused"
    assert msg.startswith(f"{lst}: line 2: ") and "\n" not in msg, msg
    assert "is a shell command (a Kaldi pipe)" in msg and "--allow-pipes" in msg


def test_pipes_can_be_allowed(tmp_path):
    """The opt-in runs the command, as Kaldi would, and reads what it prints."""
    import kaldiio
    mat = np.arange(12, dtype=np.float32).reshape(4, 3)
    kaldiio.save_mat(str(tmp_path / "m.mat"), mat)
    scp = tmp_path / "feats.scp"
    scp.write_text(f"utt1 cat {tmp_path / 'm.mat'} |\n")
    assert features.read_scp(scp, allow_pipes=True) == [(1, "utt1", f"cat {tmp_path}/m.mat |")]
    refs = features.list_features(scp, allow_pipes=True)
    assert refs[0].shape == (4, 3)
    np.testing.assert_array_equal(features.load(refs[0]), mat)
    # the pipeline's readers hand on what they read, so nothing downstream refuses it again
    assert FeatureSource(tmp_path, allow_pipes=True).files(scp) == refs
    enroll = tmp_path / "enroll.lst"
    enroll.write_text(f"spk0 {scp}\n")
    assert FeatureSource(tmp_path, allow_pipes=True).enrollment(enroll) == {"spk0": refs}
    with pytest.raises(ValueError, match=f"{scp}: line 1: .* is a shell command"):
        FeatureSource(tmp_path).enrollment(enroll)


def test_pipeline_readers_refuse_pipes(world, tmp_path):
    root, corpus, feats = world
    target = tmp_path / "pwned"
    scp = tmp_path / "feats.scp"
    scp.write_text(f"u1 a.ark:5\nu2 {_touch(target)}\n")
    lst = tmp_path / "ubm.lst"
    lst.write_text(f"wav/spk0/spk0_ubm.wav\n{_touch(target)}\n")
    for call, where in [(lambda: FeatureSource(feats).files(scp), f"{scp}: line 2: "),
                        (lambda: FeatureSource(feats).files(lst), f"{lst}: line 2: "),
                        (lambda: utterances.audio_files(corpus, [lst]), f"{lst}: line 2: ")]:
        with pytest.raises(ValueError) as info:
            call()
        assert _one_line(info).startswith(where)
    enroll = tmp_path / "enroll.lst"
    enroll.write_text(f"spk0 wav/spk0/spk0_enroll.wav\nspk1 {scp}\n")
    with pytest.raises(ValueError) as info:
        FeatureSource(feats, corpus).enrollment(enroll)
    assert _one_line(info).startswith(f"{scp}: line 2: ")  # the scp the enrollment names
    with pytest.raises(ValueError, match="is a shell command"):
        FeatureSource(feats).path(_touch(target))
    assert FeatureSource(feats, allow_pipes=True).path(_touch(target)) == _touch(target)
    assert not target.exists()


def test_cli_refuses_pipes(world, capsys, tmp_path):
    root, corpus, feats = world
    target = tmp_path / "pwned"
    trials = tmp_path / "trials.lst"
    trials.write_text(f"spk0 wav/spk0/spk0_test.wav target\nspk0 {_touch(target)} nontarget\n")
    models = tmp_path / "models"
    models.mkdir()
    SpeakerModel("spk0", *ubm_params(str(root / "ubm.npz"))).save(models / "spk0.npz")
    line = _one_line_error(capsys, [
        "score", "--features", str(feats), "--root", str(corpus), "--ubm", str(root / "ubm.npz"),
        "--models", str(models), "--trials", str(trials), "--out", str(tmp_path / "s.txt"),
        "--quiet"])
    assert line.startswith(f"ipem score: error: {trials}: line 2: ")
    assert "is a shell command" in line
    scp = tmp_path / "feats.scp"
    scp.write_text(f"u1 {_touch(target)}\n")
    line = _one_line_error(capsys, ["train-ubm", "--features", str(feats), "--list", str(scp),
                                    "-K", "2", "--out", str(tmp_path / "u.npz")])
    assert line.startswith(f"ipem train-ubm: error: {scp}: line 1: ")
    enroll = tmp_path / "enroll.lst"
    enroll.write_text(f"spk0 {scp}\n")
    line = _one_line_error(capsys, ["adapt", "--features", str(feats), "--ubm",
                                    str(root / "ubm.npz"), "--enroll", str(enroll),
                                    "--out-dir", str(tmp_path / "adapted")])
    assert line.startswith(f"ipem adapt: error: {scp}: line 1: ")
    assert not target.exists()
    assert not (tmp_path / "s.txt").exists() and not (tmp_path / "u.npz").exists()
    assert not (tmp_path / "adapted").exists()


def test_cli_allow_pipes_opts_in(capsys, tmp_path):
    """``--allow-pipes`` lets train-ubm read features printed by a command in an scp."""
    import kaldiio
    rng = np.random.default_rng(0)
    lines = []
    for i in range(3):
        kaldiio.save_mat(str(tmp_path / f"m{i}.mat"), rng.normal(size=(200, 3)).astype(np.float32))
        lines.append(f"utt{i} cat {tmp_path / f'm{i}.mat'} |")
    scp = tmp_path / "feats.scp"
    scp.write_text("\n".join(lines) + "\n")
    argv = ["train-ubm", "--features", str(tmp_path), "--list", str(scp), "-K", "2",
            "--out", str(tmp_path / "u.npz"), "--quiet"]
    line = _one_line_error(capsys, argv)
    assert "is a shell command" in line and "--allow-pipes" in line
    assert main(argv + ["--allow-pipes"]) == 0
    assert (tmp_path / "u.npz").exists()
    help_text = build_help("train-ubm")
    assert "/bin/sh with your permissions" in " ".join(help_text.split())


def build_help(command):
    from ipem.cli import build_parser
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a.choices, dict))
    return sub.choices[command].format_help()


# ---------------------------------------------------------------------------
# paths that escape their directory
# ---------------------------------------------------------------------------

def _wav(path, n=8000):
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(np.zeros(n, np.int16).tobytes())


@pytest.mark.parametrize("entry, problem", [
    ("../elsewhere/a.wav", "goes up ('..') out of the corpus root"),
    ("wav/../../elsewhere/a.wav", "goes up ('..') out of the corpus root"),
    ("{abs}", "is outside the corpus root"),
], ids=["dotdot", "inner-dotdot", "absolute"])
def test_extract_outputs_stay_in_out_dir(tmp_path, capsys, entry, problem):
    corpus, out = tmp_path / "corpus", tmp_path / "feats"
    _wav(corpus / "wav/a.wav")
    _wav(tmp_path / "elsewhere/a.wav")
    entry = entry.format(abs=tmp_path / "elsewhere/a.wav")
    lst = corpus / "extract.lst"
    lst.write_text(f"wav/a.wav\n{entry}\n")
    with pytest.raises(ValueError) as info:
        utterances.audio_files(corpus, [lst])
    msg = _one_line(info)
    assert msg.startswith(f"{lst}, line 2: ") and problem in msg
    line = _one_line_error(capsys, ["extract", "--root", str(corpus), "--out-dir", str(out),
                                    "--list", str(lst), "--quiet"])
    assert line == f"ipem extract: error: {msg}"
    assert not (tmp_path / "elsewhere/a.htk").exists() and not out.exists()
    # an absolute path inside the root is the same file as its relative path
    lst.write_text(f"wav/a.wav\n{corpus / 'wav/a.wav'}\n")
    assert utterances.audio_files(corpus, [lst]) == ["wav/a.wav"]


def test_feature_path_refuses_dotdot_audio(tmp_path):
    with pytest.raises(ValueError, match=r"audio path \.\./x/a.wav goes up"):
        FeatureSource(tmp_path / "feats", tmp_path).path("../x/a.wav")
    lst = tmp_path / "ubm.lst"
    lst.write_text("wav/a.wav\n../x/a.wav\n")
    with pytest.raises(ValueError, match=f"^{lst}, line 2: audio path"):
        FeatureSource(tmp_path / "feats", tmp_path).files(lst)


@pytest.mark.parametrize("model_id", ["../other/spkA", "/abs/spkA", "a/spkA", "..",
                                      "a\\spkA"])
def test_model_ids_stay_in_models_dir(world, capsys, tmp_path, model_id):
    root, corpus, feats = world
    other = tmp_path / "other"
    other.mkdir()
    SpeakerModel("spkA", *ubm_params(str(root / "ubm.npz"))).save(other / "spkA.npz")
    models = tmp_path / "models"
    models.mkdir()
    trials = tmp_path / "trials.lst"
    trials.write_text(f"# ids\n{model_id} wav/spk0/spk0_test.wav target\n")
    with pytest.raises(ValueError) as info:
        read_trials(trials)
    msg = _one_line(info)
    assert msg.startswith(f"{trials}, line 2: model id {model_id!r} cannot name a model file")
    line = _one_line_error(capsys, [
        "score", "--features", str(feats), "--root", str(corpus), "--ubm", str(root / "ubm.npz"),
        "--models", str(models), "--trials", str(trials), "--out", str(tmp_path / "s.txt"),
        "--quiet"])
    assert line == f"ipem score: error: {msg}"
    assert not (tmp_path / "s.txt").exists()
    enroll = tmp_path / "enroll.lst"
    enroll.write_text(f"{model_id} wav/spk0/spk0_enroll.wav\n")
    with pytest.raises(ValueError, match=f"^{enroll}, line 1: model id"):
        FeatureSource(feats, corpus).enrollment(enroll)
    with pytest.raises(ValueError, match="cannot name a model file"):
        features.models.model_file(models, model_id)


def test_model_file_must_hold_its_speaker(world, capsys, tmp_path):
    root, corpus, feats = world
    ubm = str(root / "ubm.npz")
    models = tmp_path / "models"
    models.mkdir()
    SpeakerModel("spk0", *ubm_params(ubm)).save(models / "spk0.npz")
    SpeakerModel("spk2", *ubm_params(ubm)).save(models / "spk1.npz")  # spk2's model
    with pytest.raises(ValueError, match="holds the model of speaker 'spk2', not of 'spk1'"):
        SpeakerModel.load(models / "spk1.npz", speaker_id="spk1")
    test = str(feats / "wav/spk0/spk0_test.htk")
    with pytest.raises(ValueError, match="holds the model of speaker 'spk2', not of 'spk1'"):
        score_trials(ubm, [("spk1", test)], {"spk1": str(models / "spk1.npz")}, progress=False)
    trials = tmp_path / "trials.lst"
    trials.write_text("spk0 wav/spk0/spk0_test.wav target\nspk1 wav/spk0/spk0_test.wav "
                      "nontarget\n")
    line = _one_line_error(capsys, [
        "score", "--features", str(feats), "--root", str(corpus), "--ubm", ubm,
        "--models", str(models), "--trials", str(trials), "--out", str(tmp_path / "s.txt"),
        "--quiet"])
    assert line.startswith("ipem score: error: ")
    assert f"{models / 'spk1.npz'} holds the model of speaker 'spk2', not of 'spk1'" in line
    assert not (tmp_path / "s.txt").exists()


# ---------------------------------------------------------------------------
# model and checkpoint files
# ---------------------------------------------------------------------------

BOMB_BYTES = 2 << 30      # what the bomb decompresses to: 2 GiB of zeros


def _npy_header(shape, descr="<f8"):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False,
                                               "shape": shape})
    return buf.getvalue()


def _zip_bomb(path, name="means", n_bytes=BOMB_BYTES):
    """A valid ``.npz`` whose array ``name`` is ``n_bytes`` of zeros, deflated to ~2 MB.

    After a full flush deflate starts afresh, so every 16 MiB of zeros compresses to
    the same block: the stream is that block repeated (the zip is written by hand).
    """
    chunk = bytes(1 << 24)
    header = _npy_header((n_bytes // 8,))
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = comp.compress(header) + comp.flush(zlib.Z_FULL_FLUSH)
    block = comp.compress(chunk) + comp.flush(zlib.Z_FULL_FLUSH)
    last = comp.flush()
    n_chunks = n_bytes // len(chunk)
    crc = zlib.crc32(header)
    for _ in range(n_chunks):
        crc = zlib.crc32(chunk, crc)
    size, csize = len(header) + n_bytes, len(first) + n_chunks * len(block) + len(last)
    fname = f"{name}.npy".encode()
    with open(path, "wb") as f:
        local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, csize, size,
                            len(fname), 0)
        f.write(local + fname + first)
        for _ in range(n_chunks):
            f.write(block)
        f.write(last)
        cd_offset = f.tell()
        central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, crc,
                              csize, size, len(fname), 0, 0, 0, 0, 0, 0) + fname
        f.write(central)
        f.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), cd_offset, 0))
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    path = _zip_bomb(tmp_path_factory.mktemp("bomb") / "bomb.npz")
    with zipfile.ZipFile(path) as zf:  # a real bomb: a plain reader would inflate it all
        info = zf.getinfo("means.npy")
        assert info.file_size == BOMB_BYTES + 128 and info.compress_size < 3 << 20
        with zf.open(info) as f:
            assert np.lib.format.read_magic(f) == (1, 0)
            assert np.lib.format.read_array_header_1_0(f)[0] == (BOMB_BYTES // 8,)
            assert not any(f.read(1 << 20))
    return path


def _max_rss_kib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


@pytest.mark.parametrize("reader", ["load_model", "UBMTrainer.load", "ubm_params",
                                    "SpeakerModel.load", "checkpoint"])
def test_zip_bomb_is_refused_before_decompression(bomb, reader, tmp_path):
    X = np.random.default_rng(0).normal(size=(300, D))
    call = {"load_model": lambda: load_model(bomb),
            "UBMTrainer.load": lambda: UBMTrainer.load(bomb),
            "ubm_params": lambda: ubm_params(str(bomb)),
            "SpeakerModel.load": lambda: SpeakerModel.load(bomb),
            "checkpoint": lambda: UBMTrainer(4, checkpoint=str(bomb), stage_iter=1,
                                             final_iter=1).fit(X)}[reader]
    before = _max_rss_kib()
    with pytest.raises(ValueError) as info:
        call()
    grew_mib = (_max_rss_kib() - before) / 1024
    assert grew_mib < 100, f"reading the bomb raised the peak memory by {grew_mib:.0f} MiB"
    msg = _one_line(info)
    assert msg.startswith(f"not a valid ipem model file: {bomb} (array 'means' is "
                          f"{BOMB_BYTES + 128} bytes uncompressed, more than the "), msg


def test_header_claiming_a_huge_shape_is_refused(tmp_path):
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("weights.npy", _npy_header((2,)) + np.full(2, 0.5).tobytes())
        zf.writestr("means.npy", _npy_header((10**6, 10**6)) + bytes(16))
        zf.writestr("covariances.npy", _npy_header((2, 1)) + np.ones(2).tobytes())
    before = _max_rss_kib()
    with pytest.raises(ValueError) as info:
        load_model(path)
    assert _one_line(info) == (
        f"not a valid ipem model file: {path} (array 'means': its header claims shape "
        f"(1000000, 1000000) of float64 (8000000000000 bytes), more than the 134217728 bytes "
        "expected)")
    assert (_max_rss_kib() - before) / 1024 < 100
    # with the model size known the limit is that size
    with pytest.raises(ValueError, match=r"array 'means': its header claims shape \(1000000, "
                                         r"1000000\) of float64 \(8000000000000 bytes\), more "
                                         r"than the 16 bytes expected"):
        SpeakerModel.load(path, n_components=2, n_features=1)


def test_pickled_objects_are_never_read(tmp_path):
    path = tmp_path / "pickle.npz"
    with open(path, "wb") as f:
        np.savez(f, weights=np.ones(1), means=np.array([[object()]], dtype=object),
                 covariances=np.ones((1, 1)))
    with pytest.raises(ValueError, match=r"array 'means' has dtype object; ipem files hold "
                                         "numbers and text only, never pickled objects"):
        load_model(path)


def _last_data_byte(path, member):
    """Offset in the file of the last stored byte of an (uncompressed) zip member."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    with open(path, "rb") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = struct.unpack("<HH", f.read(4))
    return info.header_offset + 30 + name_len + extra_len + info.compress_size - 1


def _model_file(tmp_path):
    path = tmp_path / "spk0.npz"
    rng = np.random.default_rng(1)
    SpeakerModel("spk0", np.full(4, 0.25), rng.normal(size=(4, D)),
                 np.ones((4, D))).save(path)
    return path


@pytest.mark.parametrize("damage", ["empty", "truncated", "bit-flip", "garbage"])
@pytest.mark.parametrize("reader", ["SpeakerModel.load", "load_model"])
def test_corrupt_model_files_are_one_line_errors(tmp_path, damage, reader):
    path = _model_file(tmp_path)
    if reader == "load_model":  # a UBM file: the same arrays, with covariances
        m = SpeakerModel.load(path)
        path.unlink()
        features.save_npz_atomic(path, weights=m.weights, means=m.means,
                                 covariances=m.variances)
    data = bytearray(path.read_bytes())
    if damage == "empty":
        data = b""
    elif damage == "truncated":
        data = data[:len(data) // 2]
    elif damage == "bit-flip":
        data[_last_data_byte(path, "means.npy")] ^= 0x10
    else:
        data = b"PK\x03\x04" + bytes(60)
    path.write_bytes(bytes(data))
    call = SpeakerModel.load if reader == "SpeakerModel.load" else load_model
    with pytest.raises(ValueError) as info:
        call(path)
    assert _one_line(info).startswith(f"not a valid ipem model file: {path} (")
    if damage == "bit-flip":
        assert "CRC" in str(info.value)


@pytest.mark.parametrize("change, problem", [
    (dict(weights=np.array([0.5, 0.6, -0.1, 0.0])), "weights must be non-negative and sum to 1 "
                                                    "(sum 1)"),
    (dict(weights=np.full(4, 0.3)), "weights must be non-negative and sum to 1 (sum 1.2)"),
    (dict(variances=-np.ones((4, D))), "variances must be positive"),
    (dict(means=np.full((4, D), np.nan)), "means contain NaN or Inf"),
    (dict(means=np.zeros((3, D))), "weights, means, variances have shapes (4,), (3, 3), (4, 3); "
                                   "expected (K,), (K, D), (K, D)"),
    (dict(means=np.zeros((4, D), dtype=np.int64)), "means have dtype int64, expected floats"),
])
def test_speaker_model_values_are_checked(tmp_path, change, problem):
    path = _model_file(tmp_path)
    _rewrite(path, **change)
    with pytest.raises(ValueError) as info:
        SpeakerModel.load(path)
    assert _one_line(info) == f"not a valid ipem model file: {path} ({problem})"


def test_speaker_model_of_another_size_is_refused(tmp_path):
    path = _model_file(tmp_path)
    with pytest.raises(ValueError, match=r"\(4 components x 3 features, expected 4 x 4\)"):
        SpeakerModel.load(path, n_components=4, n_features=4)
    with pytest.raises(ValueError, match=r"array 'weights': its header claims shape \(4,\) of "
                                         r"float64 \(32 bytes\), more than the 16 bytes expected"):
        SpeakerModel.load(path, n_components=2, n_features=4)


def _rewrite(path, drop=(), **changes):
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files if k not in drop}
    arrays.update(changes)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


SETTINGS = dict(n_components=4, stage_iter=2, final_iter=3)


@pytest.fixture
def checkpoint(tmp_path):
    X = np.random.default_rng(2).normal(size=(400, D)) * [1.0, 2.0, 3.0]
    ck = tmp_path / "ck.npz"
    UBMTrainer(checkpoint=str(ck), random_state=0, **SETTINGS).fit(X)
    return X, ck


@pytest.mark.parametrize("change, problem", [
    (dict(weights=np.full(4, np.nan)), "weights contain NaN or Inf"),
    (dict(covariances=np.zeros((4, D))), "covariances must be positive"),
    (dict(stage_index=np.array(99)), "stage_index=99, but this training has 3 stages "
                                     "([1, 2, 4] Gaussians)"),
    (dict(stage_index=np.array(-1)), "stage_index=-1, but this training has 3 stages"),
    (dict(iter_in_stage=np.array(1000)), "iter_in_stage=1000, but stage 2 runs at most 3 "
                                         "iterations"),
    (dict(weights=np.full(2, 0.5), means=np.zeros((2, D)), covariances=np.ones((2, D))),
     "2 Gaussians at stage 2, which has 4"),
    (dict(means=np.zeros((4, 2)), covariances=np.ones((4, 2))),
     "4 components x 2 features, expected K x 3"),
    (dict(means=np.zeros((4, 5)), covariances=np.ones((4, 5))),
     "array 'means': its header claims shape (4, 5) of float64 (160 bytes), more than the 96 "
     "bytes expected"),
    (dict(stage_done=np.array(3)), "'stage_done' is missing or not a boolean scalar"),
    (dict(rng_keys=np.zeros(10, np.uint32)), "the random state (rng_keys, rng_meta, "
                                              "rng_cached) is not that of a legacy RandomState"),
    (dict(history_json=np.array("{not json")), "history_json is not a training history"),
])
def test_checkpoint_values_are_checked(checkpoint, change, problem):
    X, ck = checkpoint
    _rewrite(ck, **change)
    with pytest.raises(ValueError) as info:
        UBMTrainer(checkpoint=str(ck), random_state=0, **SETTINGS).fit(X)
    msg = _one_line(info)
    assert msg.startswith(f"not a valid ipem model file: {ck} ({problem}"), msg
    assert msg.endswith("; delete the checkpoint (or pass resume=False) to train from the start")


def test_checkpoint_of_another_seed_or_data_is_refused(checkpoint):
    X, ck = checkpoint
    resumed = UBMTrainer(checkpoint=str(ck), random_state=0, **SETTINGS).fit(X)
    assert resumed.resumed_from_ == resumed.n_iter_  # same data and seed: resumes
    with pytest.raises(ValueError) as info:
        UBMTrainer(checkpoint=str(ck), random_state=1, **SETTINGS).fit(X)
    assert _one_line(info) == (
        f"checkpoint {ck} was written with random_state=0, this training has random_state=1: "
        "delete the checkpoint (or pass resume=False) to train from the start, or use the "
        "same data and seed")
    Y = X.copy()
    Y[0] += 1.0  # same size, other frames
    mean = X.mean(axis=0)
    for other in (Y, mean + 2.0 * (X - mean), X + 1.0):  # same mean; same variance
        with pytest.raises(ValueError, match=f"checkpoint {ck} was written for other data .*: "
                                             "delete the checkpoint .*or use the same data and "
                                             "seed"):
            UBMTrainer(checkpoint=str(ck), random_state=0, **SETTINGS).fit(other)
    _rewrite(ck, drop=["identity_json"])
    with pytest.raises(ValueError, match="has no record of its seed and data .*: delete the "
                                         "checkpoint"):
        UBMTrainer(checkpoint=str(ck), random_state=0, **SETTINGS).fit(X)


def test_checkpoint_of_other_files_or_order_is_refused(tmp_path):
    rng = np.random.default_rng(3)
    files = []
    for i in range(3):
        files.append(str(tmp_path / f"f{i}.npy"))
        np.save(files[-1], rng.normal(size=(150 + 10 * i, D)))
    ck = tmp_path / "ck.npz"
    UBMTrainer(checkpoint=str(ck), random_state=0, **SETTINGS).fit(files)
    again = UBMTrainer(checkpoint=str(ck), random_state=0, **SETTINGS).fit(files)
    assert again.resumed_from_ == again.n_iter_
    for other, what in [(files[::-1], "3 files, 480 frames; this training: 3 files, 480 "
                                      "frames: other files or another order"),
                        (files[:2], "3 files, 480 frames; this training: 2 files, 310 frames")]:
        with pytest.raises(ValueError) as info:
            UBMTrainer(checkpoint=str(ck), random_state=0, **SETTINGS).fit(other)
        assert _one_line(info) == (
            f"checkpoint {ck} was written for other data ({what}): delete the checkpoint (or "
            "pass resume=False) to train from the start, or use the same data and seed")


@pytest.mark.parametrize("damage", ["empty", "truncated", "bit-flip", "nan"])
def test_cli_refuses_broken_checkpoints(world, capsys, tmp_path, damage):
    root, corpus, feats = world
    ck, out = tmp_path / "ck.npz", tmp_path / "ubm.npz"
    argv = ["train-ubm", "--features", str(feats), "--root", str(corpus), "--list",
            str(corpus / "ubm.lst"), "-K", "4", "--stage-iter", "2", "--final-iter", "2",
            "--checkpoint", str(ck), "--out", str(out), "--quiet"]
    assert main(argv) == 0
    capsys.readouterr()
    out.unlink()
    data = bytearray(ck.read_bytes())
    if damage == "empty":
        ck.write_bytes(b"")
    elif damage == "truncated":
        ck.write_bytes(bytes(data[:len(data) // 3]))
    elif damage == "bit-flip":
        data[_last_data_byte(ck, "means.npy")] ^= 0x01
        ck.write_bytes(bytes(data))
    else:
        _rewrite(ck, weights=np.full(4, np.nan))
    line = _one_line_error(capsys, argv)
    assert line.startswith(f"ipem train-ubm: error: not a valid ipem model file: {ck} (")
    # the command's advice, not the Python parameter (resume=False) it has no option for
    assert line.endswith("delete the checkpoint (or give another --checkpoint) to train from "
                         "the start")
    assert not out.exists()


def test_ubm_files_are_checked_when_used(world, tmp_path):
    root, corpus, feats = world
    path = tmp_path / "ubm.npz"
    shutil.copy(root / "ubm.npz", path)
    models = tmp_path / "models"
    models.mkdir()
    SpeakerModel("spk0", *ubm_params(str(path))).save(models / "spk0.npz")
    _rewrite(path, weights=np.full(4, np.nan))
    for call in (lambda: UBMTrainer.load(path), lambda: ubm_params(str(path)),
                 lambda: steps.score(str(path), [("spk0", "wav/spk0/spk0_test.wav")], models,
                                     source=FeatureSource(feats, corpus))):
        with pytest.raises(ValueError) as info:
            call()
        assert _one_line(info) == (f"not a valid ipem model file: {path} (weights contain "
                                   "NaN or Inf)")


def test_read_npz_limits_and_members(tmp_path):
    path = tmp_path / "x.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("weights.npy", _npy_header((2,)) + np.full(2, 0.5).tobytes())
        zf.writestr("../evil.npy", _npy_header((1,)) + bytes(8))
    with pytest.raises(ValueError, match=r"unexpected member '\.\./evil\.npy'"):
        read_npz(path)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("weights.npy", _npy_header((4,)) + bytes(16))  # header says 32 bytes
    with pytest.raises(ValueError, match="header claims 32 bytes of data, the file holds 16"):
        read_npz(path, {"weights": 64})
    with pytest.raises(ValueError, match=r"^.*nope.npz: cannot read the model file"):
        read_npz(tmp_path / "nope.npz")


# ---------------------------------------------------------------------------------------
# issue 22: calibration files nested deeper than a parser can go
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("opening", ["[", '{"a": '])
def test_deeply_nested_calibration_is_one_line(tmp_path, capsys, opening):
    from ipem.speaker.calibration import load_calibration
    cal = tmp_path / "cal.json"
    cal.write_text(opening * 100_000)
    with pytest.raises(ValueError) as info:
        load_calibration(cal)
    assert _one_line(info) == (f"{cal}: not a calibration file (JSON nested too deeply to "
                               "read)")
    scores = tmp_path / "scores.txt"
    scores.write_text("spk0 a 1.0 target\nspk0 b -1.0 nontarget\n")
    line = _one_line_error(capsys, ["evaluate", "--scores", str(scores), "--calibration",
                                    str(cal), "--quiet"])
    assert line == (f"ipem evaluate: error: {cal}: not a calibration file (JSON nested too "
                    "deeply to read)")


# ---------------------------------------------------------------------------------------
# issue 22: a full disk, a file size limit
# ---------------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs (root only; skipped elsewhere), unmounted afterwards."""
    import subprocess
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def _fill(disk, leave):
    """Fill ``disk`` but for about ``leave`` bytes."""
    st = os.statvfs(disk)
    free = st.f_bavail * st.f_frsize
    with open(disk / "filler", "wb") as fh:
        fh.write(bytes(max(free - leave, 0)))


def test_full_disk_during_checkpoint_names_file_and_option(world, small_disk, capsys):
    root, corpus, feats = world
    ck, out = small_disk / "ck.npz", small_disk / "ubm.npz"
    _fill(small_disk, 4096)
    line = _one_line_error(capsys, ["train-ubm", "--features", str(feats), "--root",
                                    str(corpus), "--list", str(corpus / "ubm.lst"), "-K", "4",
                                    "--checkpoint", str(ck), "--out", str(out), "--quiet"])
    assert line == (f"ipem train-ubm: error: --checkpoint {ck}: cannot write {ck}: No space "
                    "left on device")
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]   # nothing partial


_FSIZE_CHILD = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)      # a write over the limit raises EFBIG
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
from ipem.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("cluster", ["local", "local:2"])
def test_file_size_limit_in_adapt_is_one_line(world, tmp_path, cluster):
    import subprocess
    import sys
    root, corpus, feats = world
    enroll = tmp_path / "enroll.lst"
    enroll.write_text("".join(f"{s} wav/{s}/{s}_enroll.wav\n" for s in SPEAKERS))
    out = tmp_path / "models"
    proc = subprocess.run(
        [sys.executable, "-B", "-c", _FSIZE_CHILD, "1500", "adapt", "--ubm",
         str(root / "ubm.npz"), "--enroll", str(enroll), "--features", str(feats), "--root",
         str(corpus), "--out-dir", str(out), "--cluster", cluster, "--quiet"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"ipem adapt: error: --out-dir {out}: 3 of 3 tasks failed; "
                               "first: task 0 (")
    assert lines[0].endswith(f"WriteError: cannot write {out}/spk0.npz: File too large")
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# ---------------------------------------------------------------------------------------
# issue 22: temporaries a killed write left behind
# ---------------------------------------------------------------------------------------

def test_stale_temporaries_are_removed_when_the_step_runs_again(world, tmp_path):
    root, corpus, feats = world
    ck, out = tmp_path / "ck.npz", tmp_path / "ubm.npz"
    stale = [tmp_path / ".ck.npz.0123456789ab.tmp", tmp_path / ".ubm.npz.fedcba987654.tmp"]
    kept = [tmp_path / ".ck.npz.xyz.tmp", tmp_path / ".ck.npz.0123456789ab.tmp.keep",
            tmp_path / ".other.npz.0123456789ab.tmp", tmp_path / "ck.npz.0123456789ab.tmp"]
    for p in stale + kept:
        p.write_bytes(b"half a checkpoint")
    source = FeatureSource(feats, corpus)
    steps.train_ubm(source.files(corpus / "ubm.lst"), n_components=4, stage_iter=1,
                    final_iter=1, checkpoint=ck, out=out)
    assert not [p for p in stale if p.exists()]
    assert all(p.exists() for p in kept)
    assert ck.exists() and out.exists()


# ---------------------------------------------------------------------------------------
# issue 22: utterances too short for one analysis window
# ---------------------------------------------------------------------------------------

def test_too_short_audio_is_named(tmp_path, capsys):
    from ipem.speaker import extract_features
    corpus, out = tmp_path / "corpus", tmp_path / "feats"
    rng = np.random.default_rng(0)
    _wav(corpus / "wav/long.wav")
    short = corpus / "wav/short.wav"
    short.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(short), "wb") as w:       # 100 samples: 12.5 ms, half a window
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes((rng.normal(0, 3000, 100)).astype(np.int16).tobytes())
    expected = (f"audio file {short} is too short: 100 samples (0.0125 s at 8000 Hz), less "
                "than one 25 ms analysis window")
    with pytest.raises(ValueError) as info:
        extract_features(short, vad=False)
    assert _one_line(info) == expected
    lst = corpus / "extract.lst"
    lst.write_text("wav/long.wav\nwav/short.wav\n")
    line = _one_line_error(capsys, ["extract", "--root", str(corpus), "--out-dir", str(out),
                                    "--list", str(lst), "--vad", "none", "--quiet"])
    assert line.startswith("ipem extract: error: ") and line.endswith(expected), line
    assert not out.exists()


# ---------------------------------------------------------------------------------------
# issue 22: inputs of another size than the UBM's, found before a cluster starts
# ---------------------------------------------------------------------------------------

def _ubm_of(path, n_components, n_features, rng):
    X = rng.normal(size=(400, n_features))
    UBMTrainer(n_components, stage_iter=1, final_iter=1, random_state=0).fit(X).save(path)
    return path


def test_models_of_another_size_refused_before_the_cluster(world, tmp_path, capsys):
    root, corpus, feats = world
    small = _ubm_of(tmp_path / "ubm2.npz", 2, D, np.random.default_rng(1))
    models = tmp_path / "models"
    models.mkdir()
    for s in SPEAKERS:           # written without a provenance record: only their size tells
        SpeakerModel(s, *ubm_params(str(small))).save(models / f"{s}.npz")
    trials = tmp_path / "trials.lst"
    trials.write_text("".join(f"{s} wav/{t}/{t}_test.wav\n" for s in SPEAKERS for t in SPEAKERS))
    argv = ["score", "--ubm", str(root / "ubm.npz"), "--models", str(models), "--trials",
            str(trials), "--features", str(feats), "--root", str(corpus), "--out",
            str(tmp_path / "scores.txt"), "--quiet"]
    expected = (f"ipem score: error: {models}/spk0.npz (and 2 other models) has 2 components x "
                f"3 features, but the UBM {root / 'ubm.npz'} has 4 x 3")
    assert _one_line_error(capsys, argv + ["--cluster", "mpi:2"]) == expected
    # past the step's checks, the tasks' failures are one line too
    from ipem.speaker.scoring import score_trials as score_on
    from ipem.parallel import LocalController
    pairs = [(s, features.describe(feats / f"wav/{t}/{t}_test.htk")) for s in SPEAKERS
             for t in SPEAKERS]
    with pytest.raises(ValueError) as info:
        score_on(ubm_params(str(root / "ubm.npz")), pairs,
                 {s: str(models / f"{s}.npz") for s in SPEAKERS},
                 controller=LocalController(2))
    msg = _one_line(info)
    assert msg.startswith("3 of 3 tasks failed; first: task 0 (") and len(msg) < 600, msg
    assert msg.endswith(f"ValueError: not a valid ipem model file: {models}/spk0.npz (2 "
                        "components x 3 features, expected 4 x 3)")


def test_features_of_another_dimension_refused_before_the_cluster(world, tmp_path, capsys):
    root, corpus, feats = world
    wide = _ubm_of(tmp_path / "ubm_d4.npz", 4, D + 1, np.random.default_rng(2))
    line = _one_line_error(capsys, [
        "train-ivector", "--ubm", str(wide), "--list", str(corpus / "ubm.lst"), "--features",
        str(feats), "--root", str(corpus), "-R", "2", "--out", str(tmp_path / "tv.npz"),
        "--quiet", "--cluster", "mpi:2"])
    assert line == (f"ipem train-ivector: error: utterance wav/spk0/spk0_ubm.wav: {feats}/wav/"
                    f"spk0/spk0_ubm.htk has 3 features per frame, but the UBM has 4")
    assert not (tmp_path / "tv.npz").exists()
