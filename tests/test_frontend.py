"""Tests of ipem.speaker.frontend on real synthesised speech."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import ipem
from ipem import io as features
from ipem.speaker.frontend import (NoSpeechError, cmvn, energy_vad, extract_features,
                                   extract_file, extract_many, frame_log_energy, mfcc_features,
                                   read_audio)

TEXT = "The quick brown fox jumps over the lazy dog near the quiet river bank."


def _espeak(tmp_dir: Path, name: str, voice: str) -> Path:
    out = tmp_dir / name
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(out), TEXT], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    return out


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """A 16 kHz espeak-ng utterance (MBROLA us1 if installed) and its signal."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (run scripts/install_speech_deps.sh as root)")
    d = tmp_path_factory.mktemp("speech")
    voice = "mb-us1" if Path("/usr/share/mbrola/us1/us1").is_file() else "en-us"
    path = _espeak(d, "utt.wav", voice)
    x, sr = sf.read(str(path), dtype="float64")
    assert x.size > sr  # more than a second of speech
    return path, x, sr


def test_read_audio_mono_float64(speech):
    path, x, sr = speech
    y = read_audio(path, sample_rate=sr)
    assert y.dtype == np.float64 and y.ndim == 1
    np.testing.assert_allclose(y, x)
    y8 = read_audio(path)  # default 8 kHz
    assert abs(y8.size - x.size * 8000 / sr) <= 2


def test_read_audio_resamples_22050(speech, tmp_path):
    path, x, sr = speech
    from scipy.signal import resample_poly

    x22 = resample_poly(x, 22050 // 50, sr // 50)  # 16k -> 22.05k
    p22 = tmp_path / "utt22050.wav"
    sf.write(str(p22), x22, 22050, subtype="PCM_16")
    y = read_audio(p22, 8000)
    ref = read_audio(path, 8000)
    assert abs(y.size - x22.size * 8000 / 22050) <= 2
    assert abs(y.size - ref.size) <= 3
    n = min(y.size, ref.size)
    # same waveform after the two resampling paths (up to filter ripple)
    corr = np.corrcoef(y[:n], ref[:n])[0, 1]
    assert corr > 0.98
    feats = extract_features(p22)
    assert feats.shape[1] == 60 and np.isfinite(feats).all()


def test_read_audio_stereo_is_averaged(tmp_path):
    t = np.arange(8000) / 8000.0
    left, right = 0.5 * np.sin(2 * np.pi * 440 * t), np.zeros_like(t)
    p = tmp_path / "stereo.wav"
    sf.write(str(p), np.stack([left, right], axis=1), 8000, subtype="FLOAT")
    np.testing.assert_allclose(read_audio(p), 0.5 * left, atol=1e-6)


def test_read_audio_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        read_audio(tmp_path / "missing.wav")
    bad = tmp_path / "garbage.wav"
    bad.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(ValueError, match="garbage.wav"):
        read_audio(bad)
    empty = tmp_path / "empty.wav"
    sf.write(str(empty), np.zeros(0), 8000, subtype="PCM_16")
    with pytest.raises(ValueError, match="empty.wav.*no samples"):
        read_audio(empty)


def test_mfcc_shape_dtype_finite(speech):
    _, x, sr = speech
    F = mfcc_features(x, sr)
    n_expected = 1 + int(np.ceil((x.size - 0.025 * sr) / (0.01 * sr)))
    assert F.shape == (n_expected, 60)
    assert F.dtype == np.float32
    assert np.isfinite(F).all()
    # c0 is the log frame energy: louder frames -> larger c0
    assert F[:, 0].max() - F[:, 0].min() > 5
    S = mfcc_features(x, sr, n_ceps=13, deltas=False)
    assert S.shape == (n_expected, 13)
    np.testing.assert_allclose(S, F[:, :13], rtol=1e-5, atol=1e-5)
    # deterministic for a seed; the dither changes with the seed
    np.testing.assert_array_equal(F, mfcc_features(x, sr))
    assert not np.array_equal(F, mfcc_features(x, sr, seed=1))


def test_mfcc_digital_silence_is_finite():
    z = np.zeros(8000)
    for dither in (1e-5, 0.0):
        F = mfcc_features(z, 8000, dither=dither)
        assert F.shape == (99, 60)
        assert np.isfinite(F).all()


def test_mfcc_rejects_bad_signal():
    with pytest.raises(ValueError, match="empty"):
        mfcc_features(np.zeros(0), 8000)
    with pytest.raises(ValueError, match="NaN"):
        mfcc_features(np.array([0.0, np.nan] * 200), 8000)
    with pytest.raises(ValueError, match="n_ceps"):
        mfcc_features(np.ones(800), 8000, n_ceps=30, n_filters=24)


def test_energy_vad_finds_speech_between_silences(speech):
    _, x, sr = speech
    pad = np.zeros(sr)  # 1 s of digital silence on each side
    rng = np.random.default_rng(0)
    sig = np.concatenate([pad, x, pad]) + 1e-4 * rng.standard_normal(x.size + 2 * sr)
    mask = energy_vad(sig, sr)
    n_pad = int(0.9 / 0.01)  # frames well inside the padding
    assert not mask[:n_pad].any()
    assert not mask[-n_pad:].any()
    speech_frames = mask[n_pad + 15:-n_pad - 15]
    assert speech_frames.mean() > 0.6
    # log-energy input gives the same mask as signal input
    np.testing.assert_array_equal(mask, energy_vad(frame_log_energy(sig, sr)))
    assert mask.dtype == bool


def test_energy_vad_silence_and_min_frames():
    log_e = frame_log_energy(1e-6 * np.random.default_rng(0).standard_normal(8000), 8000)
    assert not energy_vad(log_e).any()  # below the absolute floor
    # a flat but audible signal: relative rules may keep little; min_frames kicks in
    loud = np.full(100, np.log(1.0))
    assert energy_vad(loud, min_frames=10).sum() >= 10
    assert energy_vad(np.zeros(0)).shape == (0,)
    with pytest.raises(ValueError, match="NaN"):
        energy_vad(np.array([0.0, np.nan]))


def test_cmvn():
    rng = np.random.default_rng(0)
    X = rng.normal(5.0, 3.0, size=(500, 4))
    X[:, 3] = 7.0  # constant column: centred, not divided by ~0
    Y = cmvn(X)
    assert Y.dtype == np.float32
    np.testing.assert_allclose(Y.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(Y[:, :3].std(axis=0), 1, atol=1e-5)
    np.testing.assert_array_equal(Y[:, 3], 0)
    Z = cmvn(X, variance=False)
    np.testing.assert_allclose(Z.std(axis=0)[:3], X.std(axis=0)[:3], rtol=1e-5)
    with pytest.raises(ValueError):
        cmvn(np.zeros((0, 3)))
    with pytest.raises(ValueError):
        cmvn(np.zeros(5))


def test_extract_features(speech, tmp_path):
    path, x, sr = speech
    # pad with silence so the VAD has something to drop
    padded = tmp_path / "padded.wav"
    sf.write(str(padded), np.concatenate([np.zeros(sr // 2), x, np.zeros(sr // 2)]), sr,
             subtype="PCM_16")
    F = extract_features(padded)
    all_frames = mfcc_features(read_audio(padded, 8000), 8000)
    assert F.dtype == np.float32
    assert F.ndim == 2 and F.shape[1] == 60
    assert np.isfinite(F).all()
    assert 50 < F.shape[0] < all_frames.shape[0] - 80  # >= 0.8 s of padding dropped
    np.testing.assert_allclose(F.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(F.std(axis=0), 1, atol=1e-3)
    np.testing.assert_array_equal(F, extract_features(padded))
    G = extract_features(padded, vad=False)
    assert G.shape == all_frames.shape


def test_extract_features_digital_silence(tmp_path):
    p = tmp_path / "silence.wav"
    sf.write(str(p), np.zeros(16000), 8000, subtype="PCM_16")
    with pytest.raises(NoSpeechError, match="no speech frames.*silence.wav"):
        extract_features(p)
    assert issubclass(NoSpeechError, ValueError)
    # without the VAD the features are still finite
    F = extract_features(p, vad=False)
    assert np.isfinite(F).all() and F.shape[1] == 60


@pytest.mark.parametrize("fmt", ["npy", "htk"])
def test_extract_many(speech, tmp_path, fmt):
    path, _, _ = speech
    d = tmp_path / "audio" / "spk"
    d.mkdir(parents=True)
    srcs = [d / "a.wav", d / "b.wav"]
    for s in srcs:
        shutil.copy(path, s)
    outs = extract_many(srcs, tmp_path / "feats", fmt=fmt, n_jobs=2)
    assert [o.name for o in outs] == [f"a.{fmt}", f"b.{fmt}"]
    ref = extract_features(path)
    for o in outs:
        X = features.load(features.describe(o))
        np.testing.assert_allclose(X, ref, rtol=1e-6)
    if fmt == "htk":
        assert features.read_htk_header(outs[0]).samp_period == 100000
    # mirror the directory layout
    outs = extract_many(srcs, tmp_path / "mirror", fmt=fmt, n_jobs=1, root=tmp_path / "audio")
    assert outs[0] == tmp_path / "mirror" / "spk" / f"a.{fmt}"
    with pytest.raises(ValueError, match="collide"):
        extract_many([srcs[0], srcs[0]], tmp_path / "x", fmt=fmt)


def _bursts(path, sample_rate=8000, seed=0):
    """Noise bursts between silences: 'speech' for the VAD without a synthesiser."""
    rng = np.random.default_rng(seed)
    quiet = np.zeros(sample_rate // 2)
    x = np.concatenate([quiet] + [np.concatenate([0.3 * rng.standard_normal(sample_rate // 3)
                                                  * np.hanning(sample_rate // 3), quiet])
                                  for _ in range(3)])
    sf.write(str(path), x, sample_rate, subtype="PCM_16")
    return path


def test_extract_file_htk_frame_period_follows_winstep(tmp_path):
    audio = _bursts(tmp_path / "u.wav")
    ref = extract_file(audio, tmp_path / "u.htk")
    assert features.read_htk_header(ref.path).samp_period == 100000          # 10 ms
    assert ref.n_features == 60 and 0 < ref.n_frames < 240                  # silences dropped
    np.testing.assert_array_equal(features.load(ref), extract_features(audio))
    slow = extract_file(audio, tmp_path / "u20.htk", "htk", winstep=0.02)
    assert features.read_htk_header(slow.path).samp_period == 200000        # 20 ms
    assert abs(slow.n_frames - ref.n_frames / 2) <= 3


def test_extract_many_on_a_controller_writes_the_same_files(tmp_path):
    srcs = [_bursts(tmp_path / "wav" / f"{i}.wav", seed=i)
            for i in range(3) if (tmp_path / "wav").mkdir(exist_ok=True) or True]
    threads = extract_many(srcs, tmp_path / "t", root=tmp_path, n_jobs=2)
    tasks = extract_many(srcs, tmp_path / "c", root=tmp_path,
                         controller=ipem.LocalController(2), winstep=0.01)
    assert tasks == [tmp_path / "c" / "wav" / f"{i}.htk" for i in range(3)]
    for a, b in zip(threads, tasks):
        assert a.read_bytes() == b.read_bytes()
    with pytest.raises(ValueError, match="not under the root"):
        extract_many(srcs, tmp_path / "x", root=tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="unknown feature format 'wav'"):
        extract_many(srcs, tmp_path / "x", fmt="wav")
