"""Tests of ipem.synth (needs espeak-ng and >= 8 MBROLA voices)."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ipem.synth import (ENGLISH_MBROLA_VOICES, MIN_SPEAKERS, CorpusInfo, available_voices,
                        generate_corpus, random_text, synthesize_utterance)

VOICES = available_voices()
needs_voices = pytest.mark.skipif(
    len(VOICES) < MIN_SPEAKERS,
    reason=f"needs espeak-ng and >= {MIN_SPEAKERS} MBROLA voices (found {len(VOICES)}): "
           "run `bash scripts/install_speech_deps.sh` as root",
)
TINY = dict(n_speakers=8, n_enroll=1, n_test=1, n_ubm=1, words_per_utt=(3, 4))


def _read_list(path):
    return [line.split() for line in Path(path).read_text().splitlines()]


def test_available_voices_names():
    assert all(v in ENGLISH_MBROLA_VOICES for v in VOICES)
    assert VOICES == sorted(VOICES, key=ENGLISH_MBROLA_VOICES.get)


def test_available_voices_empty_dir(tmp_path):
    assert available_voices(tmp_path) == []


def test_too_few_voices_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="at least 8.*install_speech_deps.sh"):
        generate_corpus(tmp_path / "c", mbrola_dir=tmp_path)


def test_bad_arguments(tmp_path):
    voices = list(ENGLISH_MBROLA_VOICES)[:8]
    with pytest.raises(ValueError, match="n_speakers"):
        generate_corpus(tmp_path, n_speakers=4, voices=voices)
    with pytest.raises(ValueError, match="n_enroll"):
        generate_corpus(tmp_path, n_enroll=0, voices=voices)
    with pytest.raises(ValueError, match="snr_db"):
        generate_corpus(tmp_path, snr_db=(20, 10), voices=voices)
    with pytest.raises(ValueError, match="sample_rate"):
        generate_corpus(tmp_path, sample_rate=4000, voices=voices)
    with pytest.raises(ValueError, match="unknown voices"):
        generate_corpus(tmp_path, voices=voices[:7] + ["mb-xx1"])
    with pytest.raises(ValueError, match="only 8 voices"):
        generate_corpus(tmp_path, voices=voices, n_speakers=9)


def test_random_text():
    a = random_text(np.random.default_rng(3), 10)
    assert a == random_text(np.random.default_rng(3), 10)
    assert a != random_text(np.random.default_rng(4), 10)
    for n in (1, 4, 10, 14):
        words = random_text(np.random.default_rng(n), n).split()
        assert n <= len(words) <= n + 10
    with pytest.raises(ValueError):
        random_text(np.random.default_rng(0), 0)


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    if len(VOICES) < MIN_SPEAKERS:
        pytest.skip(f"needs >= {MIN_SPEAKERS} MBROLA voices: run scripts/install_speech_deps.sh")
    root = tmp_path_factory.mktemp("corpora")
    a = generate_corpus(root / "a", seed=7, n_jobs=2, **TINY)
    b = generate_corpus(root / "b", seed=7, n_jobs=1, **TINY)
    c = generate_corpus(root / "c", seed=8, n_jobs=2, **TINY)
    return a, b, c


@needs_voices
def test_corpus_layout(corpora):
    info = corpora[0]
    assert isinstance(info, CorpusInfo)
    out = info.out_dir
    assert len(info.speakers) == 8 and len(set(info.speakers)) == 8
    assert info.n_utterances == 8 * 3
    assert (info.n_trials, info.n_target, info.n_nontarget) == (64, 8, 56)

    enroll = _read_list(info.enroll_list)
    assert [e[0] for e in enroll] == list(info.speakers)
    assert all(len(e) == 2 for e in enroll)

    trials = _read_list(info.trials_list)
    assert len(trials) == 64
    assert {t[2] for t in trials} == {"target", "nontarget"}
    for model, utt, label in trials:
        spk = Path(utt).parent.name
        assert (label == "target") == (model == spk)
    test_utts = {t[1] for t in trials}
    assert len(test_utts) == 8
    assert {m for m, _, _ in trials} == set(info.speakers)

    ubm = [u[0] for u in _read_list(info.ubm_list)]
    enroll_utts = {u for e in enroll for u in e[1:]}
    assert len(ubm) == 8
    assert not (set(ubm) & enroll_utts) and not (set(ubm) & test_utts)
    assert not (enroll_utts & test_utts)

    for rel in sorted(set(ubm) | enroll_utts | test_utts):
        p = out / rel
        assert p.is_file() and p.parent.parent == info.wav_dir
        i = sf.info(str(p))
        assert i.samplerate == 8000 and i.channels == 1 and i.subtype == "PCM_16"
        assert 0.5 < i.duration < 6.0
    # nothing half-written left behind
    assert not list(out.rglob("*.tmp"))


@needs_voices
def test_corpus_texts_differ(corpora):
    info = corpora[0]
    rows = [line.split("\t") for line in info.meta_file.read_text().splitlines()]
    header, rows = rows[0], rows[1:]
    assert len(rows) == info.n_utterances
    texts = [r[header.index("text")] for r in rows]
    assert len(set(texts)) == len(texts)  # enrolment and test never share a text
    snr = [float(r[header.index("snr_db")]) for r in rows]
    assert all(10 <= s <= 25 for s in snr)
    assert len({r[header.index("rate")] for r in rows}) > 1


@needs_voices
def test_corpus_deterministic(corpora):
    a, b, c = corpora
    for name in ("enroll.lst", "trials.lst", "ubm.lst", "meta.tsv"):
        assert (a.out_dir / name).read_text() == (b.out_dir / name).read_text()
    rels = [u[0] for u in _read_list(a.ubm_list)] + [e[1] for e in _read_list(a.enroll_list)]
    for rel in rels:
        xa, _ = sf.read(str(a.out_dir / rel))
        xb, _ = sf.read(str(b.out_dir / rel))
        np.testing.assert_array_equal(xa, xb)  # same seed, any n_jobs -> same audio
    # another seed gives other texts and other audio
    assert (a.out_dir / "meta.tsv").read_text() != (c.out_dir / "meta.tsv").read_text()
    xa, _ = sf.read(str(a.out_dir / rels[0]))
    xc, _ = sf.read(str(c.out_dir / rels[0]))
    assert xa.shape != xc.shape or not np.array_equal(xa, xc)


@needs_voices
def test_same_text_same_voice_differs(tmp_path):
    voice = VOICES[0]
    text = "The green bottle is near the old station."
    x1, p1 = synthesize_utterance(voice, text, tmp_path / "1.wav", seed=1)
    x2, p2 = synthesize_utterance(voice, text, tmp_path / "2.wav", seed=2)
    x1b, _ = synthesize_utterance(voice, text, seed=1)
    np.testing.assert_array_equal(x1, x1b)
    assert p1 != p2
    assert x1.shape != x2.shape or not np.allclose(x1, x2, atol=1e-3)
    r1, sr1 = sf.read(str(tmp_path / "1.wav"))
    assert sr1 == 8000
    np.testing.assert_array_equal(r1, x1)  # returned signal == file content
    # telephone band: little energy below 200 Hz and above 3600 Hz
    spec = np.abs(np.fft.rfft(x1)) ** 2
    f = np.fft.rfftfreq(x1.size, 1 / 8000)
    in_band = spec[(f > 300) & (f < 3400)].sum()
    assert spec[f < 150].sum() < 0.05 * in_band
    assert spec[f > 3700].sum() < 0.05 * in_band


@needs_voices
def test_synthesize_16k_and_native_rates(tmp_path):
    # a 22050 Hz voice (de3/de5/de6/fr4/gr2) and a 16 kHz one, resampled to 16 kHz
    for voice in [v for v in VOICES if v in ("mb-de3-en", "mb-us1")]:
        x, params = synthesize_utterance(voice, "Hello there.", tmp_path / f"{voice}.wav",
                                         sample_rate=16000, seed=0)
        assert sf.info(str(tmp_path / f"{voice}.wav")).samplerate == 16000
        assert params["native_rate"] in (16000, 22050)
        assert np.isfinite(x).all() and np.abs(x).max() <= 1.0


def test_missing_espeak_is_clear(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert available_voices() == []
    with pytest.raises(ValueError, match="espeak-ng is not on PATH.*install_speech_deps"):
        generate_corpus(tmp_path)


# ---------------------------------------------------------------------------
# Conditions and ground-truth speech frames (issue 11)
# ---------------------------------------------------------------------------
from ipem.synth.channel import CHANNELS, compand  # noqa: E402
from ipem.synth import label_path, speech_labels  # noqa: E402
from ipem.speaker.mfcc import mfcc_features  # noqa: E402


def _meta(info):
    rows = [line.split("\t") for line in info.meta_file.read_text().splitlines()]
    return [dict(zip(rows[0], r)) for r in rows[1:]]


@pytest.fixture(scope="module")
def conditions(tmp_path_factory):
    """The same seed at two SNRs and noises, clean, and with channel mismatch."""
    if len(VOICES) < MIN_SPEAKERS:
        pytest.skip(f"needs >= {MIN_SPEAKERS} MBROLA voices: run scripts/install_speech_deps.sh")
    root = tmp_path_factory.mktemp("conditions")
    kw = dict(TINY, seed=5)
    return {
        "0dB": generate_corpus(root / "a", snr_db=0.0, noise=("babble", "hum"), **kw),
        "15dB": generate_corpus(root / "b", snr_db=15.0, noise="white", **kw),
        "clean": generate_corpus(root / "c", snr_db=np.inf, **kw),
        "mismatch": generate_corpus(root / "d", channel_mismatch=True, **kw),
    }


@needs_voices
def test_labels_next_to_every_wav_one_per_frame(conditions):
    info = conditions["0dB"]
    wavs = sorted(info.wav_dir.rglob("*.wav"))
    assert len(wavs) == info.n_utterances
    for wav in wavs:
        labels = np.load(label_path(wav))
        assert label_path(wav).name == wav.stem + ".vad.npy"
        x, sr = sf.read(str(wav))
        assert labels.dtype == bool
        assert labels.shape == (mfcc_features(x, sr, deltas=False).shape[0],)
        assert 0.2 < labels.mean() < 0.95      # speech, and silence around it
        assert not labels[:5].any()            # the leading pad is >= 0.1 s of silence


@needs_voices
def test_conditions_keep_the_speech_and_change_the_noise(conditions):
    metas = {k: _meta(v) for k, v in conditions.items()}
    for a, b in (("0dB", "15dB"), ("0dB", "clean"), ("0dB", "mismatch")):
        for ra, rb in zip(metas[a], metas[b]):
            assert (ra["text"], ra["rate"], ra["pitch"]) == (rb["text"], rb["rate"], rb["pitch"])
    for wav in sorted(conditions["0dB"].wav_dir.rglob("*.wav")):
        rel = wav.relative_to(conditions["0dB"].out_dir)
        np.testing.assert_array_equal(np.load(label_path(wav)),
                                      np.load(label_path(conditions["15dB"].out_dir / rel)))
    assert {r["snr_db"] for r in metas["0dB"]} == {"0.0"}
    assert {r["noise"] for r in metas["0dB"]} == {"babble", "hum"}
    assert {r["noise"] for r in metas["15dB"]} == {"white"}
    assert {r["noise"] for r in metas["clean"]} == {"none"}
    assert all(10 <= float(r["snr_db"]) <= 25 for r in metas["mismatch"])
    # same speech and level: the 0 dB signal carries more power outside the speech
    wav = sorted(conditions["0dB"].wav_dir.rglob("*_test_00.wav"))[0]
    rel = wav.relative_to(conditions["0dB"].out_dir)
    labels = np.load(label_path(wav))
    pause = np.repeat(~labels, 80)
    x0, _ = sf.read(str(wav))
    xc, _ = sf.read(str(conditions["clean"].out_dir / rel))
    n = min(pause.size, x0.size)
    assert np.mean(x0[:n][pause[:n]] ** 2) > 100 * np.mean(xc[:n][pause[:n]] ** 2)


@needs_voices
def test_channel_mismatch_enrol_and_test_differ(conditions):
    meta = _meta(conditions["mismatch"])
    by_role = {role: {(r["channel"], r["companding"]) for r in meta if r["role"] == role}
               for role in ("enroll", "test", "ubm")}
    assert by_role["enroll"] == {("landline", "mulaw")}
    assert by_role["test"] == {("narrowband", "alaw")}
    assert by_role["ubm"] <= by_role["enroll"] | by_role["test"]
    default = {(r["channel"], r["companding"]) for r in _meta(conditions["15dB"])}
    assert {c for c, _ in default} == {"default"}


@needs_voices
def test_narrowband_channel_has_its_band(tmp_path):
    text = "The green bottle is near the old station."
    x, params, labels = synthesize_utterance(VOICES[0], text, seed=3, snr_db=np.inf,
                                             channel="narrowband", return_labels=True)
    assert params["channel"] == "narrowband" and params["noise"] == "none"
    assert labels.shape == (mfcc_features(x, 8000, deltas=False).shape[0],)
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(x.size, 1 / 8000)
    in_band = spec[(f > 600) & (f < 2800)].sum()
    assert spec[f < 300].sum() < 0.02 * in_band
    assert spec[f > 3400].sum() < 0.02 * in_band


def test_speech_labels_by_hand():
    sr = 8000
    x = np.zeros(sr)
    x[3000:5000] = np.sin(np.arange(2000) * 0.3)
    labels = speech_labels(x, sr)
    assert labels.shape == (1 + int(np.ceil((sr - 200) / 80)),)
    frames = np.flatnonzero(labels)
    # frames whose 25 ms window overlaps the tone (minus the window's faint edges)
    assert 3000 // 80 - 2 <= frames[0] <= 3000 // 80 and frames[-1] <= 5000 // 80
    assert np.all(np.diff(frames) == 1)
    assert not speech_labels(np.zeros(sr), sr).any()


@pytest.mark.parametrize("law", ["mulaw", "alaw"])
def test_companding_is_close_to_identity(law):
    x = np.linspace(-0.9, 0.9, 2001)
    y = compand(x, law)
    big = np.abs(x) > 0.01
    assert np.max(np.abs(y[big] - x[big]) / np.abs(x[big])) < 0.07   # 8-bit log steps
    assert np.array_equal(compand(x, "none"), x)
    assert not np.array_equal(compand(x, "mulaw"), compand(x, "alaw"))
    with pytest.raises(ValueError, match="companding"):
        compand(x, "g722")
    assert set(CHANNELS) == {"landline", "narrowband"}


def test_condition_arguments_are_checked(tmp_path):
    voices = list(ENGLISH_MBROLA_VOICES)[:8]
    with pytest.raises(ValueError, match="snr_db"):
        generate_corpus(tmp_path, snr_db=(5.0, np.inf), voices=voices)
    with pytest.raises(ValueError, match="snr_db"):
        generate_corpus(tmp_path, snr_db=np.nan, voices=voices)
    with pytest.raises(ValueError, match="noise must be"):
        generate_corpus(tmp_path, noise=("white", "traffic"), voices=voices)
    with pytest.raises(ValueError, match="unknown channel"):
        synthesize_utterance("mb-us1", "Hello.", channel="satellite")
