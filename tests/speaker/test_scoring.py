"""Batched scoring (many models against one test segment) against a per-model
reference written here with plain NumPy/SciPy, and the engine-side model cache."""
import os
import time

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.special import logsumexp

import ipem
from ipem.speaker import SpeakerModel, llr_scores, score_trials

K, D = 24, 5


def log_gauss(X, w, m, v):
    """(n, K) log w_k N(x | m_k, diag v_k), directly from the definition."""
    diff = X[:, None, :] - m[None]
    return (np.log(w) - 0.5 * np.log(2 * np.pi * v).sum(axis=1)
            - 0.5 * (diff ** 2 / v).sum(axis=2))


def reference(X, ubm, models, top_c):
    lu = log_gauss(X, *ubm)
    if top_c is None:
        sel = np.arange(K)[None].repeat(len(X), axis=0)
    else:
        sel = np.argsort(-lu, axis=1)[:, :top_c]
    ubm_lp = logsumexp(np.take_along_axis(lu, sel, axis=1), axis=1)
    out = []
    for mod in models:
        lm = np.take_along_axis(log_gauss(X, *mod), sel, axis=1)
        out.append(np.mean(logsumexp(lm, axis=1) - ubm_lp))
    return np.array(out)


@pytest.fixture(scope="module")
def world():
    rng = np.random.default_rng(3)
    w = rng.dirichlet(np.full(K, 3.0))
    m = rng.normal(0, 2, (K, D))
    v = rng.uniform(0.3, 2.0, (K, D))
    X = (m[rng.choice(K, 400, p=w)] + rng.normal(size=(400, D))) + 5.0
    means_only = [(w, m + rng.normal(0, 0.3, (K, D)), v) for _ in range(70)]
    general = [(rng.dirichlet(np.full(K, 3.0)), m + rng.normal(0, 0.3, (K, D)),
                v * rng.uniform(0.8, 1.25, (K, D))) for _ in range(5)]
    return (w, m, v), X, means_only, general


@pytest.mark.parametrize("top_c", [1, 5, None])
@pytest.mark.parametrize("kind", ["means_only", "general", "mixed"])
def test_llr_scores_match_reference(world, backend, top_c, kind, monkeypatch):
    ubm, X, means_only, general = world
    models = {"means_only": means_only, "general": general,
              "mixed": means_only[:10] + general[:2]}[kind]
    # small batches, so that several batches and frame blocks are exercised
    import ipem.speaker.scoring as sc
    monkeypatch.setattr(sc, "_SCORE_BATCH_VALUES", 3 * K * D)
    monkeypatch.setattr(sc, "_SCORE_BLOCK_VALUES", 4000)
    got = llr_scores(X, ubm, models, top_c=top_c, backend=backend)
    assert_allclose(got, reference(X, ubm, models, top_c), rtol=1e-9, atol=1e-10)
    # the UBM against itself, in the same batch as real models, scores exactly 0
    got = llr_scores(X, ubm, [ubm] + models[:3], top_c=top_c, backend=backend)
    assert abs(got[0]) < 1e-12


def test_scores_do_not_depend_on_batching(world, monkeypatch):
    ubm, X, means_only, _ = world
    import ipem.speaker.scoring as sc
    whole = llr_scores(X, ubm, means_only, top_c=5)
    monkeypatch.setattr(sc, "_SCORE_BATCH_VALUES", K * D)
    assert_allclose(llr_scores(X, ubm, means_only, top_c=5), whole, rtol=1e-12, atol=1e-13)


def test_model_cache_sees_rewritten_files(world, tmp_path):
    """Scoring tasks keep models read from files; a file written again is read again."""
    ubm, X, means_only, _ = world
    seg = tmp_path / "seg.npy"
    np.save(seg, X.astype(np.float32))
    path = str(tmp_path / "a.npz")
    SpeakerModel("a", *means_only[0]).save(path)
    ctrl = ipem.LocalController(1)
    first = score_trials(ubm, [("a", str(seg))], {"a": path}, controller=ctrl, progress=False)
    again = score_trials(ubm, [("a", str(seg))], {"a": path}, controller=ctrl, progress=False)
    assert first == again
    time.sleep(0.01)
    SpeakerModel("a", *means_only[1]).save(path)
    os.utime(path, ns=(time.time_ns(), time.time_ns()))
    changed = score_trials(ubm, [("a", str(seg))], {"a": path}, controller=ctrl,
                           progress=False)
    direct = llr_scores(X.astype(np.float32), ubm, [means_only[1]], top_c=5)
    assert changed != first
    assert_allclose(changed, direct, rtol=1e-9)
