"""Speaker verification end to end on real synthesized speech.

* the CLI steps chained with files in between (in-process and on MPI engines);
  (the CLI's errors, and a run on synthetic features, are in test_cli.py: they need no
  speech tools);
* on the demo corpus, ipem's EER is no worse than a reference GMM-UBM built here from
  scikit-learn's GaussianMixture with means-only MAP (r=16) and exact scoring.
"""
import shutil
import subprocess
import sys

import numpy as np
import pytest
from scipy.special import logsumexp
from sklearn.mixture import GaussianMixture as SKGaussianMixture

import ipem
from ipem import io as features
from ipem.steps import evaluate, extract
from ipem.speaker import FeatureSource, compute_eer
from ipem.speaker.scorefiles import read_scores, read_trials
from ipem.synth import available_voices, generate_corpus
from ipem.speaker.map import adapt_speakers
from ipem.speaker.scoring import score_trials
from ipem.mixture.ubm import UBMTrainer

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or len(available_voices()) < 8,
    reason="needs espeak-ng and 8 MBROLA voices: run scripts/install_speech_deps.sh as root")

# the demo's settings (ipem/demo.py and the CLI defaults)
DEMO_CORPUS = dict(n_enroll=3, n_test=4, n_ubm=6, seed=0)
DEMO_UBM = dict(n_components=64, stage_iter=8, final_iter=20, tol=1e-3, variance_floor=0.1,
                random_state=0)


@pytest.fixture(scope="module")
def demo_corpus(tmp_path_factory, dv_client):
    root = tmp_path_factory.mktemp("demo")
    info = generate_corpus(root / "corpus", **DEMO_CORPUS)
    refs = extract(info.out_dir, root / "features", controller=dv_client)
    assert len(refs) == info.n_utterances and refs[0].n_features == 60
    assert refs[0].path == FeatureSource(root / "features", info.out_dir).path(
        str(info.out_dir / "wav" / info.speakers[0] / f"{info.speakers[0]}_enroll_00.wav"))
    assert features.read_htk_header(refs[0].path).samp_period == 100000   # 10 ms frames
    return info, root / "features"


def _lists(info, feats):
    source = FeatureSource(feats, info.out_dir)
    ubm_files = source.files(info.ubm_list)
    enroll = FeatureSource(feats, info.out_dir, "htk").enrollment(info.enroll_list)
    trials = read_trials(info.trials_list)
    pairs = [(t.model, source.path(t.test)) for t in trials]
    labels = np.array([t.label == "target" for t in trials])
    return ubm_files, enroll, pairs, labels


def _reference_scores(ubm_files, enroll, pairs):
    """GMM-UBM from scikit-learn + means-only MAP (r=16) + exact average LLR, written here."""
    load = lambda p: features.load(features.describe(p), dtype=np.float64)  # noqa: E731
    X = np.concatenate([load(p) for p in ubm_files])
    ubm = SKGaussianMixture(64, covariance_type="diag", random_state=0, max_iter=200,
                            reg_covar=1e-3).fit(X)
    w, m, v = ubm.weights_, ubm.means_, ubm.covariances_

    def frame_logpdf(Y, means):
        # log w_k N(y | mean_k, v_k), shape (T, K)
        d = Y[:, None, :] - means[None]
        return (np.log(w) - 0.5 * np.sum(np.log(2 * np.pi * v), axis=1)
                - 0.5 * np.sum(d * d / v[None], axis=2))

    models = {}
    for spk, files in enroll.items():
        Y = np.concatenate([load(p) for p in files])
        lp = frame_logpdf(Y, m)
        gamma = np.exp(lp - logsumexp(lp, axis=1, keepdims=True))
        n = gamma.sum(axis=0)
        ex = (gamma.T @ Y) / np.maximum(n, 1e-10)[:, None]
        alpha = (n / (n + 16.0))[:, None]
        models[spk] = alpha * ex + (1 - alpha) * m
    cache = {}
    scores = []
    for spk, test in pairs:
        if test not in cache:
            Y = load(test)
            cache[test] = (Y, logsumexp(frame_logpdf(Y, m), axis=1))
        Y, ubm_ll = cache[test]
        scores.append(np.mean(logsumexp(frame_logpdf(Y, models[spk]), axis=1) - ubm_ll))
    return np.array(scores)


def test_ipem_eer_no_worse_than_sklearn_reference(demo_corpus, dv_client, backend):
    info, feats = demo_corpus
    ubm_files, enroll, pairs, labels = _lists(info, feats)
    ubm = UBMTrainer(controller=dv_client, backend=backend, **DEMO_UBM).fit(ubm_files)
    models = adapt_speakers(ubm, enroll, controller=dv_client, relevance_factor=16.0,
                            progress=False, backend=backend)
    ours = np.array(score_trials(ubm, pairs, models, controller=dv_client, top_c=5,
                                 progress=False, backend=backend))
    ref = _reference_scores(ubm_files, enroll, pairs)
    eer_ours = compute_eer(ours[labels], ours[~labels])
    eer_ref = compute_eer(ref[labels], ref[~labels])
    print(f"EER ipem {100 * eer_ours:.2f} %  reference (scikit-learn + MAP r=16) "
          f"{100 * eer_ref:.2f} %")
    assert 0.0 < eer_ours < 0.25          # errors happen, but it works
    assert eer_ours <= eer_ref


def _cli(*args, quiet=True):
    r = subprocess.run([sys.executable, "-m", "ipem.cli", *map(str, args), "--quiet"]
                       if args[0] != "evaluate" and quiet else
                       [sys.executable, "-m", "ipem.cli", *map(str, args)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


@pytest.mark.once
def test_cli_steps_chained_with_files(tmp_path):
    ipem.parallel.ensure_mpiexec()
    info = generate_corpus(tmp_path / "c", n_speakers=8, n_enroll=2, n_test=2, n_ubm=3, seed=3)
    c, f = info.out_dir, tmp_path / "feats"
    out = _cli("extract", "--root", c, "--out-dir", f, quiet=False)  # --quiet: errors only
    assert "extracted" in out and len(list(f.rglob("*.htk"))) == 8 * 7
    out = _cli("train-ubm", "--features", f, "--root", c, "--list", info.ubm_list, "-K", 16,
               "--out", tmp_path / "ubm.npz", "--plot", tmp_path / "conv.png",
               "--cluster", "mpi:2", quiet=False)     # --quiet drops the iteration lines
    assert "UBM: 16 Gaussians" in out and (tmp_path / "conv.png").exists()
    assert "engines frames" in out
    _cli("adapt", "--ubm", tmp_path / "ubm.npz", "--enroll", info.enroll_list, "--features", f,
         "--root", c, "--out-dir", tmp_path / "models")
    assert len(list((tmp_path / "models").glob("*.npz"))) == 8
    _cli("score", "--ubm", tmp_path / "ubm.npz", "--models", tmp_path / "models", "--trials",
         info.trials_list, "--features", f, "--root", c, "--out", tmp_path / "scores.txt")
    lines = (tmp_path / "scores.txt").read_text().splitlines()
    assert len(lines) == 8 * 8 * 2
    out = _cli("evaluate", "--scores", tmp_path / "scores.txt", "--det", tmp_path / "det.png")
    assert "EER" in out and "minDCF" in out and (tmp_path / "det.png").stat().st_size > 1000
    tar, non = read_scores(tmp_path / "scores.txt")
    assert evaluate(tar, non)["eer"] < 0.5
