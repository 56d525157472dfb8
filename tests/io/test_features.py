"""Tests for ipem.io (readers, writers, lists, model files, validation) and file balancing."""

import dataclasses
import os
import pickle
import struct

import h5py
import numpy as np
import pytest

from ipem import io as features
from ipem.io import FeatureFileError, FeatureRef, formats
from ipem.parallel.scheduling import assign_balanced


def _data(n=7, d=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(np.float32)


def _htk_bytes(n, period, samp_size, kind, payload=b""):
    return struct.pack(">iihh", n, period, samp_size, kind) + payload


# ---------------------------------------------------------------------------
# Round trips and describe
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt,name", [("htk", "a.htk"), ("npy", "a.npy"), ("h5", "a.h5")])
def test_round_trip_files(tmp_path, fmt, name):
    X = _data()
    path = tmp_path / name
    ref = features.write(path, X, fmt)
    assert ref == FeatureRef(str(path), fmt, "features" if fmt == "h5" else None, 7, 3)
    Y = features.load(ref)
    assert Y.dtype == np.float32 and Y.flags.c_contiguous
    np.testing.assert_array_equal(Y, X)
    # extension-based inference gives the same answer
    assert features.describe(path) == ref
    np.testing.assert_array_equal(features.load(ref, np.float64), X.astype(np.float64))
    assert sorted(os.listdir(tmp_path)) == [name]  # no temp files left


def test_round_trip_kaldi(tmp_path):
    mats = {"utt1": _data(5, 4, 1), "utt2": _data(9, 4, 2), "utt3": _data(1, 4, 3)}
    ark, scp = tmp_path / "feats.ark", tmp_path / "feats.scp"
    written = features.write_kaldi(ark, scp, mats)
    refs = features.list_features(str(scp))
    assert refs == written
    assert [r.key for r in refs] == ["utt1", "utt2", "utt3"]
    assert [r.shape for r in refs] == [(5, 4), (9, 4), (1, 4)]
    for ref in refs:
        assert ref.fmt == "kaldi" and ref.path.startswith(str(ark) + ":")
        np.testing.assert_array_equal(features.load(ref), mats[ref.key])
    # the scp written is a normal Kaldi scp, readable by kaldiio itself
    import kaldiio
    loaded = kaldiio.load_scp(str(scp))
    np.testing.assert_array_equal(loaded["utt2"], mats["utt2"])
    np.testing.assert_array_equal(features.load_many(refs),
                                  np.concatenate([mats[k] for k in ("utt1", "utt2", "utt3")]))
    assert sorted(os.listdir(tmp_path)) == ["feats.ark", "feats.scp"]


def test_round_trip_h5_custom_key_and_float64(tmp_path):
    X = _data().astype(np.float64) / 3
    ref = features.write(tmp_path / "x.hdf5", X, key="mfcc")
    assert ref.key == "mfcc"
    np.testing.assert_array_equal(features.load(ref, np.float64), X)
    assert features.describe(tmp_path / "x.hdf5", key="mfcc") == ref
    with pytest.raises(FeatureFileError, match="no dataset 'features'"):
        features.describe(tmp_path / "x.hdf5")


def test_htk_writer_bytes():
    X = np.array([[1.0, 2.0], [3.0, -0.5]], dtype=np.float32)
    expected = struct.pack(">iihh", 2, 100000, 8, 9) + struct.pack(">4f", 1.0, 2.0, 3.0, -0.5)
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "x.htk")
        features.write(path, X, "htk")
        with open(path, "rb") as f:
            assert f.read() == expected
        hdr = features.read_htk_header(path)
        assert hdr == (2, 100000, 8, 9)


def test_htk_reader_hand_built(tmp_path):
    path = tmp_path / "hand.fea"
    path.write_bytes(_htk_bytes(2, 50000, 8, 6 | 0o100, struct.pack(">4f", 1, 2, 3, 4)))
    ref = features.describe(path)
    assert (ref.fmt, ref.shape) == ("htk", (2, 2))
    np.testing.assert_array_equal(features.load(ref), [[1, 2], [3, 4]])


def test_describe_reads_headers_only(tmp_path):
    # An HTK file whose data is NaN still describes fine: only the header is read.
    n, d = 1000, 6
    path = tmp_path / "big.htk"
    path.write_bytes(_htk_bytes(n, 100000, 4 * d, 9, b"\x7f\xc0\x00\x00" * (n * d)))
    assert features.describe(path).shape == (n, d)
    # npy: shape from the header
    np.save(tmp_path / "b.npy", np.zeros((11, 5), np.float64))
    assert features.describe(tmp_path / "b.npy").shape == (11, 5)
    # h5: shape from the dataset
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f.create_dataset("features", data=np.zeros((4, 2), np.float32))
    assert features.describe(tmp_path / "c.h5").shape == (4, 2)


def test_feature_ref_pickles_and_validates():
    ref = FeatureRef("/x.htk", "htk", None, 10, 3)
    assert pickle.loads(pickle.dumps(ref)) == ref
    with pytest.raises(ValueError):
        FeatureRef("/x", "wav", None, 1, 1)
    with pytest.raises(ValueError):
        FeatureRef("/x", "htk", None, -1, 1)
    err = FeatureFileError("/x.ark:5", "broken", "utt9", "kaldi")
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err) == "/x.ark:5 (utterance utt9): broken"


# ---------------------------------------------------------------------------
# The format registry
# ---------------------------------------------------------------------------


def _text_handler():
    """A tiny text format (one frame per line), declared as a format module would."""

    def read_shape(path, key, files):
        rows = np.loadtxt(path, ndmin=2)
        return rows.shape

    def read_into(ref, out, files):
        out[...] = np.loadtxt(ref.path, ndmin=2)

    def write_file(tmp, X, key, options):
        np.savetxt(tmp, X, fmt=options.get("number_format", "%.8g"))

    return formats.FormatHandler(read_shape, read_into, write_file, suffix=".txtfeat",
                                 extensions=(".txtfeat",), write_options=("number_format",))


def test_registry_line_is_all_a_format_needs(tmp_path, monkeypatch):
    # One registry entry, nothing else: every generic function sees the new format.
    monkeypatch.setitem(formats.REGISTRY, "txt", _text_handler())
    assert "txt" in formats.names() and "txt" in formats.write_names()
    assert formats.suffix("txt") == ".txtfeat"
    path = tmp_path / "a.txtfeat"
    assert features.infer_format(path) == "txt"
    X = np.arange(6, dtype=np.float32).reshape(3, 2)
    ref = features.write(path, X, number_format="%.1f")
    assert ref == FeatureRef(str(path), "txt", None, 3, 2)
    assert path.read_text().splitlines()[0] == "0.0 1.0"
    assert features.describe(path) == ref
    assert features.list_features([path]) == [ref]
    np.testing.assert_array_equal(features.load(ref), X)
    # HTK's options are ignored by other formats, unknown ones refused
    features.write(tmp_path / "b.txtfeat", X, sample_period=50000)
    with pytest.raises(TypeError, match="number_formt"):
        features.write(tmp_path / "c.txtfeat", X, number_formt="%d")
    # a format that ipem cannot write is not among write_names()
    monkeypatch.setitem(formats.REGISTRY, "txt",
                        dataclasses.replace(_text_handler(), write_file=None))
    assert "txt" in formats.names() and "txt" not in formats.write_names()
    with pytest.raises(ValueError, match="does not handle 'txt'"):
        features.write(path, X)
    # gone from the registry, gone everywhere
    monkeypatch.delitem(formats.REGISTRY, "txt")
    assert "txt" not in formats.names()
    with pytest.raises(ValueError, match="unknown feature format 'txt'"):
        FeatureRef(str(path), "txt", None, 3, 2)
    with pytest.raises(FeatureFileError, match="cannot infer"):
        features.infer_format(path)


def test_registry_is_what_formats_and_suffixes_come_from():
    assert formats.names() == features.FORMATS == ("htk", "npy", "h5", "kaldi")
    assert formats.write_names() == ("htk", "npy", "h5")
    assert [formats.suffix(f) for f in formats.names()] == [".htk", ".npy", ".h5", ".kaldi"]
    assert formats.EXTENSIONS == {".htk": "htk", ".mfc": "htk", ".plp": "htk", ".fea": "htk",
                                  ".npy": "npy", ".h5": "h5", ".hdf5": "h5"}
    assert formats.handler("h5") is formats.REGISTRY["h5"]
    with pytest.raises(ValueError, match="unknown feature format 'wav'"):
        formats.suffix("wav")
    assert features.infer_format("/x/feats.ark:12") == "kaldi"
    assert features.infer_format("gunzip -c a.ark.gz |") == "kaldi"
    with pytest.raises(FeatureFileError, match="is a Kaldi script file"):
        features.infer_format("/x/feats.scp")


def test_unknown_extension_is_a_parameter_error_about_fmt():
    from ipem.errors import ParameterError

    with pytest.raises(FeatureFileError) as info:
        features.infer_format("/x/utt.feat")
    err = info.value
    expected = ("/x/utt.feat: cannot infer the feature format from extension '.feat' (known: "
                ".fea, .h5, .hdf5, .htk, .mfc, .npy, .plp; Kaldi archives via .scp); pass fmt=")
    assert isinstance(err, ParameterError) and str(err) == expected
    assert (err.path, err.key, err.fmt, err.parameter) == ("/x/utt.feat", None, None, "fmt")
    assert err.hint == "; pass fmt="
    assert err.render("--format", hint=": give the file one of these extensions") == \
        expected.replace("); pass fmt=", "): give the file one of these extensions")
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is type(err) and str(again) == expected
    assert (again.parameter, again.hint, again.path, again.problem) == \
        (err.parameter, err.hint, err.path, err.problem)


# ---------------------------------------------------------------------------
# Listing
# ---------------------------------------------------------------------------


def test_list_features_from_list_and_lst(tmp_path, monkeypatch):
    paths = []
    for i, (fmt, ext) in enumerate([("htk", ".mfc"), ("npy", ".npy"), ("h5", ".h5")]):
        p = tmp_path / f"f{i}{ext}"
        features.write(p, _data(3 + i, 2, i), fmt)
        paths.append(p)
    refs = features.list_features([str(p) for p in paths])
    assert [r.n_frames for r in refs] == [3, 4, 5]
    assert [r.fmt for r in refs] == ["htk", "npy", "h5"]

    lst = tmp_path / "files.lst"
    lst.write_text("# comment\nf0.mfc\n\n" + str(paths[1]) + "\n" + str(paths[2]) + "\n")
    monkeypatch.chdir(tmp_path)  # relative entries resolve against the cwd
    assert features.list_features(str(lst)) == refs
    assert features.list_features(tmp_path / "files.lst") == refs


def test_list_features_forced_format(tmp_path):
    p = tmp_path / "utt.feat"
    features.write(p, _data(), "htk")
    with pytest.raises(FeatureFileError, match="utt.feat"):
        features.list_features([p])
    assert features.list_features([p], fmt="htk")[0].shape == (7, 3)


def test_list_features_dims_mismatch(tmp_path):
    features.write(tmp_path / "a.htk", _data(4, 3), "htk")
    features.write(tmp_path / "b.htk", _data(4, 3), "htk")
    features.write(tmp_path / "c.htk", _data(4, 5), "htk")
    with pytest.raises(FeatureFileError) as info:
        features.list_features([tmp_path / n for n in ("a.htk", "b.htk", "c.htk")])
    msg = str(info.value)
    assert "c.htk" in msg and "5" in msg and "3" in msg and "a.htk" in msg


def test_scp_errors(tmp_path):
    features.write_kaldi(tmp_path / "x.ark", tmp_path / "x.scp", {"u1": _data(2, 2)})
    line = (tmp_path / "x.scp").read_text()
    (tmp_path / "dup.scp").write_text(line + line)
    with pytest.raises(FeatureFileError, match="duplicate utterance id 'u1'"):
        features.list_features(tmp_path / "dup.scp")
    (tmp_path / "bad.scp").write_text("lonely\n")
    with pytest.raises(FeatureFileError, match="bad.scp: line 1"):
        features.list_features(tmp_path / "bad.scp")


def test_kaldi_truncated_ark(tmp_path):
    features.write_kaldi(tmp_path / "x.ark", tmp_path / "x.scp",
                         {"u1": _data(2, 2), "u2": _data(50, 2)})
    ark = tmp_path / "x.ark"
    ark.write_bytes(ark.read_bytes()[:-40])
    with pytest.raises(FeatureFileError) as info:
        features.list_features(tmp_path / "x.scp")
    assert "x.ark" in str(info.value) and "u2" in str(info.value)
    assert "truncated" in str(info.value)


# ---------------------------------------------------------------------------
# Bad files
# ---------------------------------------------------------------------------


def test_truncated_htk(tmp_path):
    path = tmp_path / "spk1_003.htk"
    path.write_bytes(_htk_bytes(500, 100000, 240, 9, b"\0" * (60000 - 12)))
    with pytest.raises(FeatureFileError) as info:
        features.describe(path)
    assert str(info.value) == (f"{path}: truncated: header says 500 frames of 240 bytes "
                               "(120012 bytes), file has 60000 bytes")


def test_htk_truncated_after_describe(tmp_path):
    path = tmp_path / "a.htk"
    ref = features.write(path, _data(10, 4), "htk")
    path.write_bytes(path.read_bytes()[:-16])
    with pytest.raises(FeatureFileError, match="a.htk: truncated"):
        features.load(ref)
    with pytest.raises(FeatureFileError, match="a.htk: truncated"):
        features.validate_all([ref])


def test_htk_bad_samp_size(tmp_path):
    path = tmp_path / "odd.htk"
    path.write_bytes(_htk_bytes(2, 100000, 6, 9, b"\0" * 12))
    with pytest.raises(FeatureFileError, match=r"odd\.htk: bad sampSize 6"):
        features.describe(path)
    # load() also checks, even for a hand-made ref
    with pytest.raises(FeatureFileError, match="sampSize"):
        features.load(FeatureRef(str(path), "htk", None, 2, 1))


def test_htk_compressed_and_crc(tmp_path):
    comp = tmp_path / "comp.htk"
    comp.write_bytes(_htk_bytes(2, 100000, 8, 6 | 0o2000, b"\0" * 16))
    with pytest.raises(FeatureFileError, match=r"comp\.htk: compressed"):
        features.describe(comp)
    crc = tmp_path / "crc.htk"
    crc.write_bytes(_htk_bytes(2, 100000, 8, 6 | 0o10000, b"\0" * 18))
    with pytest.raises(FeatureFileError, match=r"crc\.htk: .*CRC"):
        features.describe(crc)


def test_htk_little_endian_hint(tmp_path):
    path = tmp_path / "le.htk"
    path.write_bytes(struct.pack("<iihh", 3, 100000, 8, 9) + b"\0" * 24)
    with pytest.raises(FeatureFileError, match="little-endian"):
        features.describe(path)


def test_npy_truncated(tmp_path):
    path = tmp_path / "t.npy"
    np.save(path, _data(100, 4))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(FeatureFileError, match=r"t\.npy: truncated"):
        features.describe(path)


def test_npy_non_numeric_and_not_2d(tmp_path):
    np.save(tmp_path / "s.npy", np.array([["a", "b"]]))
    with pytest.raises(FeatureFileError, match=r"s\.npy: non-numeric dtype"):
        features.describe(tmp_path / "s.npy")
    np.save(tmp_path / "v.npy", np.zeros(5, np.float32))
    with pytest.raises(FeatureFileError, match=r"v\.npy: expected a 2-D"):
        features.describe(tmp_path / "v.npy")


@pytest.mark.parametrize("fmt,name", [("htk", "n.htk"), ("npy", "n.npy"), ("h5", "n.h5")])
def test_nan_row_reported(tmp_path, fmt, name):
    X = _data(10, 3)
    X[6, 1] = np.nan
    X[8, 0] = np.inf
    ref = features.write(tmp_path / name, X, fmt)  # writing accepts any floats
    with pytest.raises(FeatureFileError) as info:
        features.load(ref)
    msg = str(info.value)
    assert name in msg and "row 6" in msg


def test_nan_row_kaldi_and_load_many(tmp_path):
    good, bad = _data(4, 2), _data(5, 2)
    bad[3, 0] = np.nan
    refs = features.write_kaldi(tmp_path / "x.ark", tmp_path / "x.scp", {"ok": good, "bad": bad})
    with pytest.raises(FeatureFileError) as info:
        features.load_many(refs)
    msg = str(info.value)
    assert "x.ark" in msg and "utterance bad" in msg and "row 3" in msg


def test_wrong_dims_vs_ref(tmp_path):
    ref = features.write(tmp_path / "a.npy", _data(5, 3), "npy")
    features.write(tmp_path / "a.npy", _data(5, 4), "npy")  # replaced since described
    with pytest.raises(FeatureFileError, match=r"a\.npy: wrong dimensionality.*4.*expected 3"):
        features.load(ref)
    with pytest.raises(FeatureFileError, match="wrong dimensionality"):
        features.validate_all([ref])


def test_empty_and_zero_frame_files(tmp_path):
    for name in ("empty.htk", "empty.npy", "empty.h5"):
        (tmp_path / name).write_bytes(b"")
        with pytest.raises(FeatureFileError, match=name.replace(".", r"\.")):
            features.describe(tmp_path / name)
    (tmp_path / "zero.htk").write_bytes(_htk_bytes(0, 100000, 8, 9))
    with pytest.raises(FeatureFileError, match=r"zero\.htk: contains zero frames"):
        features.describe(tmp_path / "zero.htk")
    np.save(tmp_path / "zero.npy", np.zeros((0, 3), np.float32))
    with pytest.raises(FeatureFileError, match=r"zero\.npy: contains zero frames"):
        features.describe(tmp_path / "zero.npy")
    with pytest.raises(FeatureFileError, match="zero frames"):
        features.load(FeatureRef(str(tmp_path / "zero.htk"), "htk", None, 0, 2))


def test_missing_file(tmp_path):
    with pytest.raises(FeatureFileError, match=r"nope\.htk: does not exist"):
        features.describe(tmp_path / "nope.htk")
    ref = features.write(tmp_path / "a.h5", _data(), "h5")
    os.remove(tmp_path / "a.h5")
    with pytest.raises(FeatureFileError, match=r"a\.h5 \(dataset 'features'\): does not exist"):
        features.validate_all([ref])


def test_validate_all(tmp_path):
    refs = [features.write(tmp_path / f"{i}.htk", _data(3 + i, 2), "htk") for i in range(3)]
    assert features.validate_all(refs) == 3 + 4 + 5
    with pytest.raises(ValueError):
        features.validate_all([])


def test_load_many_concatenates(tmp_path):
    Xs = [_data(2 + i, 3, i) for i in range(4)]
    fmts = ["htk", "npy", "h5", "htk"]
    refs = [features.write(tmp_path / f"{i}.{f}", X, f) for i, (X, f) in enumerate(zip(Xs, fmts))]
    Y = features.load_many(refs, np.float64)
    assert Y.shape == (2 + 3 + 4 + 5, 3) and Y.dtype == np.float64 and Y.flags.c_contiguous
    np.testing.assert_array_equal(Y, np.concatenate(Xs).astype(np.float64))
    with pytest.raises(ValueError):
        features.load_many([])
    with pytest.raises(ValueError):
        features.load(refs[0], np.int32)


# ---------------------------------------------------------------------------
# Balancing
# ---------------------------------------------------------------------------


def test_assign_balanced_hand_example():
    refs = [FeatureRef(f"/f{i}.htk", "htk", None, n, 2) for i, n in enumerate([5, 9, 3, 7, 4, 1])]
    # LPT: 9(#1)->s0, 7(#3)->s1, 5(#0)->s2, 4(#4)->s2 (9,7,9), 3(#2)->s1 (9,10,9),
    # 1(#5)->s0 (tie between s0 and s2 goes to s0) -> loads 10, 10, 9
    assert assign_balanced(refs, 3) == [[1, 5], [2, 3], [0, 4]]


def test_assign_balanced_ties_and_edges():
    assert assign_balanced([2, 2, 2, 2], 2) == [[0, 2], [1, 3]]
    assert assign_balanced([8], 3) == [[0], [], []]
    assert assign_balanced([3, 1, 2], 1) == [[0, 1, 2]]
    with pytest.raises(ValueError):
        assign_balanced([1, 2], 0)
    with pytest.raises(ValueError):
        assign_balanced([], 2)


# ---------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["htk", "npy", "h5"])
def test_write_rejects_non_2d_and_leaves_nothing(tmp_path, fmt):
    with pytest.raises(ValueError):
        features.write(tmp_path / f"x.{fmt}", np.zeros(5, np.float32), fmt)
    with pytest.raises(ValueError):
        features.write(tmp_path / f"x.{fmt}", np.zeros((2, 2, 2), np.float32), fmt)
    assert os.listdir(tmp_path) == []


def test_write_failure_inside_writer_leaves_nothing(tmp_path):
    # These fail after the temporary file was created.
    with pytest.raises(ValueError):
        features.write(tmp_path / "wide.htk", np.zeros((1, 9000), np.float32), "htk")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("fmt", ["htk", "npy", "h5"])
def test_partial_write_is_cleaned_up(tmp_path, monkeypatch, fmt):
    ops = formats.REGISTRY[fmt]

    def half_then_fail(tmp, X, key, options):
        ops.write_file(tmp, X, key, options)  # a complete-looking temp file ...
        raise OSError("disk full")  # ... that must not become the output

    monkeypatch.setitem(formats.REGISTRY, fmt, dataclasses.replace(ops, write_file=half_then_fail))
    with pytest.raises(OSError, match="disk full"):
        features.write(tmp_path / f"x.{fmt}", _data(), fmt)
    assert os.listdir(tmp_path) == []
    with pytest.raises(ValueError):
        features.write(tmp_path / "x.h5", _data(), "h5", key="")


def test_failed_write_keeps_old_file(tmp_path):
    path = tmp_path / "keep.htk"
    ref = features.write(path, _data(), "htk")
    with pytest.raises(ValueError):
        features.write(path, np.zeros((1, 9000), np.float32), "htk")
    np.testing.assert_array_equal(features.load(ref), _data())
    assert os.listdir(tmp_path) == ["keep.htk"]


def test_write_kaldi_failure_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        features.write_kaldi(tmp_path / "x.ark", tmp_path / "x.scp", {"a": _data(), "b": np.zeros(3)})
    with pytest.raises(ValueError):
        features.write_kaldi(tmp_path / "x.ark", tmp_path / "x.scp", {"bad id": _data()})
    assert os.listdir(tmp_path) == []


def test_atomic_text_and_npz_writers(tmp_path):
    assert features.write_text_atomic(tmp_path / "a.txt", "x\ny\n") == str(tmp_path / "a.txt")
    assert (tmp_path / "a.txt").read_text() == "x\ny\n"
    features.save_npz_atomic(tmp_path / "m.npz", a=np.arange(3))
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:
        np.testing.assert_array_equal(z["a"], np.arange(3))
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "m.npz"]


def test_atomic_path_temp_name_and_cleanup(tmp_path):
    with pytest.raises(RuntimeError):
        with features.atomic_path(tmp_path / "out.bin") as tmp:
            name = os.path.basename(tmp)
            assert os.path.dirname(tmp) == str(tmp_path)
            assert name.startswith(".out.bin.") and name.endswith(".tmp")
            assert os.listdir(tmp_path) == [name]
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------
# List files
# ---------------------------------------------------------------------------


def test_list_kind_decides_list_files(tmp_path):
    from ipem.io import lists
    for name, kind in [("a.scp", "scp"), ("A.SCP", "scp"), ("a.lst", "list"), ("a.TXT", "list"),
                       ("a.htk", None), ("a.npy", None), ("a.ark:12", None), ("scp", None)]:
        assert lists.list_kind(name) == kind, name
        assert features.list_kind(tmp_path / name) == kind, name
        assert features.is_list_file(name) == (kind is not None)
        assert features.is_scp_file(name) == (kind == "scp")
    assert not features.is_list_file(FeatureRef("/a.lst", "htk", None, 1, 1))
    assert not features.is_list_file(np.zeros((2, 2)))


def test_read_list(tmp_path):
    lst = tmp_path / "trials.lst"
    lst.write_text("# header\n\nm1  u1.wav target\n  # indented comment\n\tm2 u2.wav\n")
    assert features.read_list(lst) == [(3, ["m1", "u1.wav", "target"]), (5, ["m2", "u2.wav"])]
    assert features.read_lines(str(lst)) == [(3, "m1  u1.wav target"), (5, "m2 u2.wav")]
    empty = tmp_path / "empty.lst"
    empty.write_text("# nothing\n\n")
    with pytest.raises(ValueError, match=r"^.*empty\.lst: the list is empty$"):
        features.read_list(empty)
    assert features.read_list(empty, allow_empty=True) == []


@pytest.mark.parametrize("payload", [b"\x93NUMPY\x01\x00\xff\xfe", b"abc\x00\x00\x01def\n"])
def test_read_list_binary_file_is_a_value_error(tmp_path, payload):
    path = tmp_path / "feats.lst"
    path.write_bytes(payload)
    with pytest.raises(ValueError, match="feats.lst") as info:
        features.read_list(path)
    assert "\n" not in str(info.value)
    with pytest.raises(FeatureFileError, match="feats.lst"):
        features.list_features(path)


def test_read_list_missing_and_directory(tmp_path):
    with pytest.raises(FeatureFileError, match="nope.lst: does not exist"):
        features.read_list(tmp_path / "nope.lst")
    with pytest.raises(FeatureFileError, match="is a directory"):
        features.read_list(tmp_path)


def test_read_scp(tmp_path):
    scp = tmp_path / "x.scp"
    scp.write_text("u1 a.ark:5\n# c\nu2 cat b.ark |\n")
    assert features.read_scp(scp, allow_pipes=True) == [(1, "u1", "a.ark:5"),
                                                        (3, "u2", "cat b.ark |")]
    with pytest.raises(FeatureFileError, match=r"x.scp: line 3: 'u2 cat b.ark \|' is a shell "):
        features.read_scp(scp)
    scp.write_text("u1 a.ark:5\nu1 a.ark:9\n")
    with pytest.raises(FeatureFileError, match=r"x.scp: line 2: duplicate .* \(first on line 1\)"):
        features.read_scp(scp)


def test_list_features_empty_list_file(tmp_path):
    (tmp_path / "empty.lst").write_text("# only a comment\n")
    with pytest.raises(ValueError, match="no feature files found"):
        features.list_features(tmp_path / "empty.lst")


def test_expand_sources_order_and_nesting(tmp_path, monkeypatch):
    from ipem.io.lists import ListedPath, expand_sources
    monkeypatch.chdir(tmp_path)
    (tmp_path / "k.scp").write_text("u1 a.ark:5\n")
    (tmp_path / "inner.lst").write_text("x.htk\n")
    (tmp_path / "outer.lst").write_text("f 1.htk\nk.scp\ninner.lst\n")
    assert list(expand_sources(["z.npy", "outer.lst"])) == [
        ListedPath("z.npy", None), ListedPath("f 1.htk", None), ListedPath("a.ark:5", "u1"),
        ListedPath("inner.lst", None)]


# ---------------------------------------------------------------------------
# Model files
# ---------------------------------------------------------------------------


def test_model_file_helpers_round_trip(tmp_path):
    from ipem import IterationRecord
    rng = np.random.RandomState(3)
    rng.standard_normal(5)
    state = features.rng_to_arrays(rng)
    expected = rng.standard_normal(4)
    np.testing.assert_array_equal(features.rng_from_arrays(state).standard_normal(4), expected)
    recs = [IterationRecord(1, -1.5, float("inf"), 0.1, 0.1, stage=2, info={"n": np.int64(3)}),
            IterationRecord(2, -1.2, 0.3, 0.1, 0.2)]
    back = features.records_from_json(features.records_to_json(recs))
    assert [r.change for r in back] == [float("inf"), 0.3]
    assert back[0].info == {"n": 3} and back[0].stage == 2
    path = tmp_path / "m.npz"
    features.save_npz_atomic(path, weights=np.ones(2) / 2, means=np.zeros((2, 3)),
                             covariances=np.ones((2, 3)),
                             history_json=np.array(features.records_to_json(recs)), **state)
    z = features.load_model(path)
    assert len(z["history"]) == 2 and z["means"].shape == (2, 3)
    np.testing.assert_array_equal(features.rng_from_arrays(z).standard_normal(4), expected)
    features.save_npz_atomic(path, weights=np.ones(2))
    with pytest.raises(ValueError, match="m.npz: not an ipem model file"):
        features.load_model(path)
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a valid ipem model file: .*m.npz"):
        features.load_model(path)
