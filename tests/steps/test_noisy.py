"""The front-end in noise and over mismatched channels (issue 11).

* The default VAD against the generator's ground-truth speech frames, at 0-15 dB
  SNR, beside ipem's earlier rule (which kept a tenth of the speech at 5 dB).
* On small generated corpora at 0, 5 and 15 dB SNR (white, pink, babble and
  hum noise) and with enrolment/test channel mismatch, ipem's EER through its
  public pipeline is no worse (to one target trial; two at 0 dB, where the two
  tie) than that of a reference GMM-UBM written in ``reference_pipeline.py``
  from python_speech_features and scikit-learn: 20 MFCCs + deltas from a
  300-3400 Hz filterbank, frames within 30 dB of the loudest kept, CMVN, a
  GaussianMixture UBM, means-only MAP (r=16), exact average-LLR scoring.

The corpus seed is ``IPEM_TEST_SEED`` (default 0), the same for every
condition, so the conditions differ only in noise and channel.
"""
import os

import numpy as np
import pytest
from tests.reference_pipeline import reference_eer

from ipem import steps
from ipem.speaker import FeatureSource
from ipem.synth import MIN_SPEAKERS, available_voices, generate_corpus, label_path
from ipem.speaker.frontend import read_audio
from ipem.speaker.mfcc import mfcc_features
from ipem.speaker.vad import energy_vad, vad_mask

VOICES = available_voices()
pytestmark = pytest.mark.skipif(
    len(VOICES) < MIN_SPEAKERS,
    reason=f"needs espeak-ng and >= {MIN_SPEAKERS} MBROLA voices (found {len(VOICES)}): "
           "run `bash scripts/install_speech_deps.sh` as root")

SEED = int(os.environ.get("IPEM_TEST_SEED", "0"))
NOISES = ("white", "pink", "babble", "hum")
SIZE = dict(n_speakers=12, n_ubm=3, n_enroll=2, n_test=5)
K = 32
CONDITIONS = {
    "0dB": dict(snr_db=0.0, noise=NOISES),
    "5dB": dict(snr_db=5.0, noise=NOISES),
    "15dB": dict(snr_db=15.0, noise=NOISES),
    "mismatch": dict(snr_db=(10.0, 25.0), channel_mismatch=True),
}


@pytest.fixture(scope="module")
def corpus_of(tmp_path_factory):
    """condition -> CorpusInfo, generated on first use (the speech is shared)."""
    root = tmp_path_factory.mktemp("noisy")
    made = {}

    def get(cond):
        if cond not in made:
            made[cond] = generate_corpus(root / cond, seed=SEED, **SIZE, **CONDITIONS[cond])
        return made[cond]
    return get


# ---------------------------------------------------------------------------
# VAD against ground truth
# ---------------------------------------------------------------------------
def _old_rule(x):
    """ipem's earlier VAD: percentile rule on c0 of a 0-4000 Hz pre-emphasised analysis."""
    c0 = mfcc_features(x, 8000, low_freq=0, high_freq=4000, deltas=False)[:, 0]
    return energy_vad(c0, method="percentile")


@pytest.mark.parametrize("snr", [0.0, 5.0, 15.0], ids=["0dB", "5dB", "15dB"])
def test_default_vad_finds_speech_in_white_noise(tmp_path, snr):
    info = generate_corpus(tmp_path / "c", seed=SEED, snr_db=snr, noise="white",
                           n_speakers=8, n_ubm=0, n_enroll=1, n_test=1)
    counts = {"new": np.zeros(4), "old": np.zeros(4)}
    for wav in sorted(info.wav_dir.rglob("*.wav")):
        truth = np.load(label_path(wav))
        x = read_audio(wav)
        for name, mask in (("new", vad_mask(x, 8000)), ("old", _old_rule(x))):
            assert mask.shape == truth.shape
            counts[name] += [np.sum(truth & ~mask), truth.sum(), np.sum(~truth & mask),
                             (~truth).sum()]
    miss = {k: c[0] / c[1] for k, c in counts.items()}
    fa = {k: c[2] / c[3] for k, c in counts.items()}
    print(f"{snr:g} dB white: miss/FA new {100 * miss['new']:.1f}/{100 * fa['new']:.1f} %, "
          f"old {100 * miss['old']:.1f}/{100 * fa['old']:.1f} %")
    # the earlier rule loses most of the speech once the noise floor is high ...
    if snr <= 5:
        assert miss["old"] > 0.7
    # ... the default one keeps most of it, and drops most of the noise above 0 dB (at
    # 0 dB it keeps noise too: weak speech is worth more than the noise it brings)
    assert miss["new"] < {0.0: 0.3, 5.0: 0.45, 15.0: 0.15}[snr]
    assert miss["new"] < miss["old"] - 0.2
    if snr > 0:
        assert fa["new"] < {5.0: 0.2, 15.0: 0.05}[snr]


# ---------------------------------------------------------------------------
# EER against a reference pipeline
# ---------------------------------------------------------------------------
def _ipem_eer(info, work):
    """EER of ipem's public pipeline with its defaults (top-5 scoring)."""
    root, feats, models = info.out_dir, work / "features", work / "models"
    steps.extract(root, feats)
    source = FeatureSource(feats, root)
    ubm = steps.train_ubm(source.files(info.ubm_list), n_components=K, seed=0)
    steps.adapt(ubm, info.enroll_list, models, source=source)
    trials, scores = steps.score(ubm, info.trials_list, models, source=source)
    target = np.array([t.label == "target" for t in trials])
    return steps.evaluate(scores[target], scores[~target])["eer"]


@pytest.mark.once
@pytest.mark.parametrize("cond", list(CONDITIONS))
def test_eer_no_worse_than_reference(corpus_of, tmp_path, cond):
    info = corpus_of(cond)
    ours, ref = _ipem_eer(info, tmp_path), reference_eer(info, K)
    # EERs are counted in trials: one target trial is the resolution of the comparison.
    # At 0 dB both front-ends are near 35 % EER (standard error ~6 %) and tie over seeds
    # (ipem - reference from -4.4 to +2.1 points over seeds 0-5): allow two trials there.
    step = (2.0 if cond == "0dB" else 1.0) / info.n_target
    print(f"{cond}: EER ipem {100 * ours:.1f} %, reference {100 * ref:.1f} % "
          f"({info.n_target} target / {info.n_nontarget} non-target trials)")
    # it verifies speakers, even at 0 dB SNR with babble (about 40 % EER there)
    assert ours < {"0dB": 0.47, "5dB": 0.4, "15dB": 0.3, "mismatch": 0.2}[cond]
    assert ours <= ref + step


# ---------------------------------------------------------------------------
# The options on the command line
# ---------------------------------------------------------------------------
def test_cli_extract_front_end_options(tmp_path, capsys):
    from ipem import io as features
    from ipem.cli import main

    info = generate_corpus(tmp_path / "c", seed=SEED, snr_db=5.0, noise="white",
                           n_speakers=8, n_ubm=0, n_enroll=1, n_test=1)
    opts = ["--vad", "percentile", "--norm", "warp", "--norm-window", "200", "--rasta",
            "--low-freq", "200", "--high-freq", "3600"]
    assert main(["extract", "--root", str(info.out_dir), "--out-dir", str(tmp_path / "cli"),
                 "--format", "npy", "--quiet", *opts]) == 0
    refs = steps.extract(info.out_dir, tmp_path / "api", fmt="npy", vad="percentile",
                            norm="warp", norm_window=200, rasta=True, low_freq=200,
                            high_freq=3600)
    default = steps.extract(info.out_dir, tmp_path / "default", fmt="npy")
    assert len(refs) == 16
    for ref in refs:
        cli = tmp_path / "cli" / os.path.relpath(ref.path, tmp_path / "api")
        np.testing.assert_array_equal(features.load(features.describe(cli)), features.load(ref))
    assert [r.n_frames for r in refs] != [r.n_frames for r in default]    # another VAD
    assert main(["extract", "--root", str(info.out_dir), "--out-dir", str(tmp_path / "none"),
                 "--format", "npy", "--quiet", "--vad", "none"]) == 0
    n_all = sum(features.describe(p).n_frames for p in (tmp_path / "none").rglob("*.npy"))
    assert n_all > sum(r.n_frames for r in default)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["extract", "--root", str(info.out_dir), "--out-dir", str(tmp_path / "x"),
              "--vad", "energy"])
    assert exc.value.code == 2 and "--vad" in capsys.readouterr().err
