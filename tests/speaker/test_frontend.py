"""Tests of the front-end (ipem.speaker.dsp, mfcc, vad, featnorm, frontend) on real synthesised
speech."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import ipem
from ipem import io as features
from ipem.speaker.dsp import frame_log_energy
from ipem.speaker.featnorm import cmvn
from ipem.speaker.frontend import (NoSpeechError, extract_features, extract_file, extract_many,
                                   read_audio)
from ipem.speaker.mfcc import mfcc_features
from ipem.speaker.vad import energy_vad

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


# ---------------------------------------------------------------------------
# Telephone band, VAD rules, normalisations (issue 11)
# ---------------------------------------------------------------------------
from python_speech_features import fbank as psf_fbank, mfcc as psf_mfcc  # noqa: E402

from ipem.speaker.dsp import band_edges  # noqa: E402
from ipem.speaker.featnorm import (cmvn as fn_cmvn, feature_warping,  # noqa: E402
                                   normalize_features, rasta_filter, sliding_cmvn)
from ipem.speaker.vad import gmm_vad, kaldi_vad, percentile_vad, vad_mask  # noqa: E402


def _psf(x, sr, low, high):
    return psf_mfcc(x, sr, winlen=0.025, winstep=0.01, numcep=20, nfilt=24, nfft=256,
                    lowfreq=low, highfreq=high, preemph=0.97, ceplifter=22, appendEnergy=True,
                    winfunc=np.hamming)


def test_mfcc_matches_python_speech_features(speech):
    _, x, sr = speech
    x8 = read_audio(speech[0], 8000)
    # the full band: the same numbers as python_speech_features, c0 included
    full = mfcc_features(x8, 8000, low_freq=0, high_freq=4000, deltas=False, dither=0)
    np.testing.assert_allclose(full, _psf(x8, 8000, 0, 4000), rtol=1e-4, atol=1e-4)
    # the default at 8 kHz is the telephone band; c0 is then the energy of that band
    tel = mfcc_features(x8, 8000, deltas=False, dither=0)
    ref = _psf(x8, 8000, 300, 3400)
    np.testing.assert_allclose(tel[:, 1:], ref[:, 1:], rtol=1e-4, atol=1e-4)
    assert np.all(tel[:, 0] <= full[:, 0] + 1e-5)
    assert not np.allclose(tel[:, 0], full[:, 0])
    # wideband keeps 0 Hz to Nyquist
    assert band_edges(16000) == (0.0, 8000.0) and band_edges(8000) == (300.0, 3400.0)
    assert band_edges(8000, 0, None) == (0.0, 3400.0)
    with pytest.raises(ValueError, match="Nyquist"):
        band_edges(8000, 300, 5000)
    with pytest.raises(ValueError, match="low < high"):
        mfcc_features(x8, 8000, low_freq=2000, high_freq=1000)


def test_frame_log_energy_default_is_python_speech_features_energy(speech):
    _, x, sr = speech
    _, energy = psf_fbank(x, sr, nfilt=1, nfft=512, winfunc=np.hamming)
    np.testing.assert_allclose(frame_log_energy(x, sr), np.log(energy), rtol=1e-10)
    band = frame_log_energy(x, sr, low_freq=300, high_freq=3400, preemph=0.0)
    assert band.shape == energy.shape and np.all(np.isfinite(band))


def _two_level_energies(noise_db, speech_db=-20.0, n=600, seed=0):
    """ln-energies: a noise floor (+-1 dB) and 'speech' bursts (+-5 dB), truth mask."""
    rng = np.random.default_rng(seed)
    truth = (np.arange(n) // 50) % 2 == 1
    e_db = np.where(truth, rng.normal(speech_db, 5.0, n), rng.normal(noise_db, 1.0, n))
    e_db = np.where(truth, np.maximum(e_db, noise_db + 3), e_db)
    return e_db * np.log(10) / 10, truth


@pytest.mark.parametrize("noise_db", [-70.0, -45.0, -32.0], ids=["quiet", "mid", "loud"])
def test_gmm_vad_follows_the_noise_floor(noise_db):
    log_e, truth = _two_level_energies(noise_db)
    mask = energy_vad(log_e)                        # method="gmm" by default
    miss, fa = np.mean(~mask[truth]), np.mean(mask[~truth])
    assert miss < 0.1 and fa < 0.05, (miss, fa)
    # only energies relative to each other matter (while no frame crosses the absolute floor)
    shift = 2.0 if noise_db > -50 else 0.5
    np.testing.assert_array_equal(energy_vad(log_e + shift), mask)


def test_vad_methods_and_options():
    log_e, truth = _two_level_energies(-45.0)
    e_db = log_e * 10 / np.log(10)
    np.testing.assert_array_equal(energy_vad(log_e, method="percentile", smooth=1,
                                             dynamic_range_db=200),
                                  percentile_vad(e_db))
    np.testing.assert_array_equal(energy_vad(log_e, method="gmm", smooth=1, dynamic_range_db=200),
                                  gmm_vad(e_db))
    np.testing.assert_array_equal(energy_vad(log_e, method="kaldi", dynamic_range_db=200),
                                  kaldi_vad(e_db))
    # Kaldi's rule, by hand: threshold 5.5 + 0.5 * mean on its 16-bit scale, 3 of 5 frames
    e_k = log_e + np.log(32768.0**2 / 0.2)
    above = e_k > 5.5 + 0.5 * e_k.mean()
    expect = [above[max(0, t - 2):t + 3].mean() >= 0.6 for t in range(above.size)]
    np.testing.assert_array_equal(kaldi_vad(e_db), expect)
    # energies spread evenly: the threshold itself decides
    ramp = np.linspace(-60.0, 0.0, 400)
    e_k = ramp * np.log(10) / 10 + np.log(32768.0**2 / 0.2)
    first = np.argmax(e_k > 5.5 + 0.5 * e_k.mean())
    assert 0 < first < 399
    assert abs(np.argmax(kaldi_vad(ramp)) - first) <= 1
    assert energy_vad(log_e, method="gmm", n_components=2).shape == truth.shape
    with pytest.raises(ValueError, match="unknown VAD method 'energy'"):
        energy_vad(log_e, method="energy")
    with pytest.raises(ValueError, match="VAD method 'gmm'.*noise_percentile"):
        energy_vad(log_e, method="gmm", noise_percentile=5)


def test_extract_features_options(speech, tmp_path):
    path, x, sr = speech
    noisy = tmp_path / "noisy.wav"
    rng = np.random.default_rng(0)
    sig = np.concatenate([np.zeros(sr // 2), x, np.zeros(sr // 2)])
    sf.write(str(noisy), sig + 0.01 * rng.standard_normal(sig.size), sr, subtype="PCM_16")
    n_all = extract_features(noisy, vad=False).shape[0]
    for vad in (True, "gmm", "kaldi", "percentile"):
        F = extract_features(noisy, vad=vad)
        assert F.shape[1] == 60 and 50 < F.shape[0] <= n_all, vad
    np.testing.assert_array_equal(extract_features(noisy), extract_features(noisy, vad="gmm"))
    mask = vad_mask(read_audio(noisy), 8000)
    assert extract_features(noisy).shape[0] == mask.sum()
    for norm in ("cmvn", "cmn", "sliding_cmvn", "sliding_cmn", "warp", "none"):
        F = extract_features(noisy, norm=norm, norm_window=100)
        assert F.dtype == np.float32 and np.isfinite(F).all() and F.shape[1] == 60, norm
    np.testing.assert_array_equal(extract_features(noisy, variance_norm=False),
                                  extract_features(noisy, norm="cmn"))
    R = extract_features(noisy, rasta=True)
    assert R.shape == extract_features(noisy).shape and not np.allclose(R, extract_features(noisy))
    with pytest.raises(ValueError, match="unknown VAD 'energy'"):
        extract_features(noisy, vad="energy")
    with pytest.raises(ValueError, match="unknown normalisation 'mvn'"):
        extract_features(noisy, norm="mvn")


def test_feature_warping_by_hand():
    X = np.array([[1.0, 5.0], [3.0, 5.0], [2.0, 7.0]])
    from scipy.special import ndtri

    # one window (3 frames <= 300): ranks 0.5, 2.5, 1.5 of 3; ties share their rank
    expect = ndtri(np.array([[0.5, 1.0], [2.5, 1.0], [1.5, 2.5]]) / 3)
    np.testing.assert_allclose(feature_warping(X), expect, rtol=1e-6)
    np.testing.assert_array_equal(feature_warping(X[:1]), [[0.0, 0.0]])
    # invariant to any increasing map of each dimension; N(0, 1)-like output
    rng = np.random.default_rng(0)
    Y = rng.gamma(2.0, size=(1000, 3))
    W = feature_warping(Y, 300, chunk=37)
    np.testing.assert_allclose(W, feature_warping(np.exp(Y)), atol=1e-6)
    assert abs(W.mean()) < 0.05 and abs(W.std() - 1) < 0.05
    # a frame is ranked in the window around it: brute force at a few frames
    for t, (a, b) in ((0, (0, 300)), (500, (350, 650)), (999, (700, 1000))):
        win = Y[a:b, 0]
        r = np.sum(win < Y[t, 0]) + 0.5 * np.sum(win == Y[t, 0])
        assert W[t, 0] == pytest.approx(ndtri(r / 300), rel=1e-5)
    with pytest.raises(ValueError, match="window"):
        feature_warping(Y, 1)


def test_sliding_cmvn_and_rasta():
    rng = np.random.default_rng(1)
    X = rng.normal(3.0, 2.0, size=(400, 4)) + np.linspace(0, 10, 400)[:, None]
    # a window as long as the utterance is per-utterance CMVN
    np.testing.assert_allclose(sliding_cmvn(X, 400), fn_cmvn(X), atol=1e-5)
    np.testing.assert_allclose(sliding_cmvn(X, 1000, variance=False), fn_cmvn(X, False), atol=1e-4)
    S = sliding_cmvn(X, 100)
    t, a, b = 200, 150, 250
    ref = (X[t] - X[a:b].mean(0)) / X[a:b].std(0)
    np.testing.assert_allclose(S[t], ref, rtol=1e-4)
    # RASTA removes a constant channel offset exactly and starts without a transient
    np.testing.assert_allclose(rasta_filter(X + 7.0), rasta_filter(X), atol=1e-9)
    np.testing.assert_allclose(rasta_filter(np.full((50, 2), 4.0)), 0.0, atol=1e-12)
    assert normalize_features(X, "none").dtype == np.float32
    with pytest.raises(ValueError, match="unknown normalisation"):
        normalize_features(X, "zscore")


# ---------------------------------------------------------------------------
# the vectorised framing and deltas give python_speech_features' numbers
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("n_samples", [1, 150, 200, 201, 279, 280, 281, 8000, 80123])
def test_framing_equals_python_speech_features(n_samples):
    from python_speech_features.sigproc import framesig

    from ipem.speaker.dsp import frame_signal
    x = np.random.default_rng(n_samples).normal(size=n_samples)
    for length, step in ((200, 80), (200.0, 80.0), (400.00000000000006, 160.0), (512, 512)):
        ref = framesig(x, length, step, np.hamming)
        got = frame_signal(x, length, step, np.hamming)
        assert got.shape == ref.shape
        np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("n_frames", [1, 2, 3, 5, 300])
def test_deltas_equal_python_speech_features(n_frames):
    from python_speech_features import delta

    from ipem.speaker.mfcc import delta as ipem_delta
    feat = np.random.default_rng(n_frames).normal(size=(n_frames, 7))
    for n in (1, 2, 3):
        np.testing.assert_allclose(ipem_delta(feat, n), delta(feat, n), rtol=1e-12, atol=1e-12)


def test_mfcc_equals_python_speech_features_composition():
    """mfcc_features against the same analysis assembled from python_speech_features
    (pre-emphasis, framing, power spectrum, filterbank, DCT, lifter, deltas)."""
    import python_speech_features as psf
    from python_speech_features import sigproc
    from scipy.fft import dct

    sr = 8000
    x = np.random.default_rng(1).normal(size=3 * sr) * 0.1
    got = mfcc_features(x, sr, dither=0.0)
    frames = sigproc.framesig(sigproc.preemphasis(x, 0.97), 0.025 * sr, 0.01 * sr, np.hamming)
    pspec = sigproc.powspec(frames, 256)
    fb = psf.get_filterbanks(24, 256, sr, 300, 3400)
    ceps = psf.lifter(dct(np.log(np.maximum(pspec @ fb.T, np.finfo(float).eps)), type=2,
                          axis=1, norm="ortho")[:, :20], 22)
    f = np.arange(pspec.shape[1]) * (sr / 256)
    ceps[:, 0] = np.log(pspec[:, (f >= 300) & (f <= 3400)].sum(axis=1))
    d1 = psf.delta(ceps, 2)
    ref = np.hstack([ceps, d1, psf.delta(d1, 2)])
    np.testing.assert_allclose(got, ref.astype(np.float32), rtol=1e-5, atol=1e-5)


def test_c0_full_is_python_speech_features_append_energy(speech, tmp_path):
    """c0="full" (issue 20): c0 is the whole spectrum's log energy, so at 300-3400 Hz
    the static MFCCs are python_speech_features' with appendEnergy, c0 included; the
    default stays the band's energy; an unknown c0 is refused before any reading."""
    x8 = read_audio(speech[0], 8000)
    full = mfcc_features(x8, 8000, deltas=False, dither=0, c0="full")
    np.testing.assert_allclose(full, _psf(x8, 8000, 300, 3400), rtol=1e-4, atol=1e-4)
    band = mfcc_features(x8, 8000, deltas=False, dither=0)
    np.testing.assert_array_equal(band[:, 1:], full[:, 1:])
    assert np.all(band[:, 0] <= full[:, 0]) and np.any(band[:, 0] < full[:, 0] - 0.1)
    feats = extract_features(speech[0], vad=False, norm="none", dither=0, c0="full")
    np.testing.assert_allclose(feats[:, :20], full, rtol=1e-5, atol=1e-5)
    for bad in (lambda: mfcc_features(x8, 8000, c0="total"),
                lambda: extract_features(tmp_path / "missing.wav", c0="total")):
        with pytest.raises(ValueError, match="unknown c0 'total'"):
            bad()


def test_vad_energy_full_is_the_whole_spectrum_pre_emphasised_energy(tmp_path):
    """vad_energy="full" (issue 20): the GMM VAD sees python_speech_features' frame energy
    (every bin, pre-emphasis 0.97); the default, the 300-3400 Hz band without
    pre-emphasis, is a hand computation; a loud 100 Hz hum counts as energy only in
    "full", so the two keep different frames; an unknown energy is refused before reading."""
    from ipem.speaker.vad import vad_log_energy

    sr, rng = 8000, np.random.default_rng(0)
    t = np.arange(int(1.6 * sr)) / sr
    seg = (np.arange(t.size) // 2000) % 4     # 0.25 s each: hum, quiet, tone, quiet
    x = (0.5 * np.sin(2 * np.pi * 100 * t) * (seg == 0) + 0.02 * np.sin(2 * np.pi * 1000 * t)
         * (seg == 2) + 1e-4 * rng.standard_normal(t.size))
    full = vad_log_energy(x, sr, 0.025, 0.01, 300.0, 3400.0, "full")
    _, energy = psf_fbank(x, sr, nfilt=1, nfft=256, winfunc=np.hamming)
    np.testing.assert_allclose(full, np.log(energy), rtol=1e-10)
    frames = np.stack([np.pad(x, (0, 200))[i * 80:i * 80 + 200] for i in range(full.size)])
    spec = np.abs(np.fft.rfft(frames * np.hamming(200), 256)) ** 2 / 256
    f = np.arange(129) * sr / 256
    band = vad_log_energy(x, sr, 0.025, 0.01, 300.0, 3400.0)
    np.testing.assert_allclose(band, np.log(spec[:, (f >= 300) & (f <= 3400)].sum(axis=1)),
                               rtol=1e-10)
    got = vad_mask(x, sr, dither=0, energy="full")
    np.testing.assert_array_equal(got, energy_vad(full))
    np.testing.assert_array_equal(vad_mask(x, sr, dither=0), energy_vad(band))
    hum = seg[np.arange(full.size) * 80 + 100] == 0
    assert got[hum].mean() > 0.9 and vad_mask(x, sr, dither=0)[hum].mean() < 0.1
    wav = tmp_path / "hum.wav"
    sf.write(str(wav), x, sr, subtype="FLOAT")
    n_full = extract_features(wav, vad_energy="full").shape[0]
    assert n_full == vad_mask(read_audio(wav), sr, energy="full").sum()
    assert n_full != extract_features(wav).shape[0] == vad_mask(read_audio(wav), sr).sum()
    with pytest.raises(ValueError, match="unknown VAD energy 'total'"):
        extract_features(tmp_path / "missing.wav", vad_energy="total")
