"""GMM-UBM speaker modelling: Baum-Welch statistics, MAP adaptation, top-C scoring."""
import os

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import ipem
from ipem import io as features
from ipem.kernels import _numpy as numpy_kernels
from ipem.kernels import available_backends
from ipem.speaker import (SpeakerModel, Trial, adapt_speakers, llr_scores, map_adapt,
                          read_trials, score_trials, utterance_stats, write_score_file)
from ipem.speaker.scoring import scoring_method, topc_kernel

# ---------------------------------------------------------------------------
# a hand-computed case: K=2, D=1 UBM, 3 frames
# ---------------------------------------------------------------------------
# UBM: w = (0.5, 0.5), mu = (-1, 1), var = (1, 1).  For equal weights and
# variances, log N(x|-1,1) - log N(x|1,1) = -2x, so the responsibility of
# component 1 is g1(x) = 1 / (1 + exp(2x)).  Frames x = -1, 0, 2:
#   g1 = 0.8807970779778823, 0.5, 0.01798620996209156
#   g2 = 0.11920292202211769, 0.5, 0.9820137900379085
#   n  = (1.3987832879399738, 1.601216712060026)          sum g
#   f  = (-0.8448246580536992, 1.844824658053699)         sum g x
#   s  = (0.9527419178262485, 4.047258082173752)          sum g x^2
#   E[x]   = f/n = (-0.603971083539249, 1.1521392726911164)
#   E[x^2] = s/n = (0.6811218907464769, 2.5276141896912883)
#   alpha  = n/(n+16) = (0.0803954658662566, 0.09097193326202854)
#   means' = alpha E[x] + (1-alpha) mu = (-0.9681610707646291, 1.0138404037617899)
#   weights: alpha n/3 + (1-alpha) w = (0.4972875450934945, 0.5030692933248422),
#            sum 1.0003568384183366, normalised (0.49711015709129897, 0.5028898429087011)
#   vars'  = alpha E[x^2] + (1-alpha)(var + mu^2) - means'^2
#          = (0.9566323210416423, 1.020125718552826)
W2 = np.array([0.5, 0.5])
M2 = np.array([[-1.0], [1.0]])
V2 = np.array([[1.0], [1.0]])
X3 = np.array([[-1.0], [0.0], [2.0]])
N_HAND = np.array([1.3987832879399738, 1.601216712060026])
F_HAND = np.array([[-0.8448246580536992], [1.844824658053699]])
S_HAND = np.array([[0.9527419178262485], [4.047258082173752]])
ALPHA_HAND = np.array([0.0803954658662566, 0.09097193326202854])
MEANS_HAND = np.array([[-0.9681610707646291], [1.0138404037617899]])
WEIGHTS_HAND = np.array([0.49711015709129897, 0.5028898429087011])
VARS_HAND = np.array([[0.9566323210416423], [1.020125718552826]])


@pytest.mark.parametrize("kb", available_backends())
def test_stats_hand_computed(kb):
    n, f, s = utterance_stats(X3, W2, M2, V2, backend=kb)
    assert_allclose(n, N_HAND, rtol=1e-12)
    assert_allclose(f, F_HAND, rtol=1e-12)
    assert_allclose(s, S_HAND, rtol=1e-12)
    assert_allclose(ALPHA_HAND, n / (n + 16.0), rtol=1e-12)


def test_map_hand_computed():
    w, m, v = map_adapt(W2, M2, V2, N_HAND, F_HAND, S_HAND, relevance_factor=16.0, adapt="m")
    assert_allclose(m, MEANS_HAND, rtol=1e-12)
    assert_array_equal(w, W2)
    assert_array_equal(v, V2)
    w, m, v = map_adapt(W2, M2, V2, N_HAND, F_HAND, S_HAND, adapt="mwv")
    assert_allclose(m, MEANS_HAND, rtol=1e-12)
    assert_allclose(w, WEIGHTS_HAND, rtol=1e-12)
    assert_allclose(v, VARS_HAND, rtol=1e-12)
    assert_allclose(w.sum(), 1.0, rtol=1e-15)


def test_map_separate_relevance_factors():
    # weights r=4, variances r=2, means r=16; variances use the adapted means
    w, m, v = map_adapt(W2, M2, V2, N_HAND, F_HAND, S_HAND, adapt="wvm", relevance_factor=16,
                        relevance_weights=4.0, relevance_variances=2.0)
    a_w = N_HAND / (N_HAND + 4.0)
    a_v = (N_HAND / (N_HAND + 2.0))[:, None]
    raw = a_w * N_HAND / N_HAND.sum() + (1 - a_w) * W2
    assert_allclose(w, raw / raw.sum(), rtol=1e-12)
    assert_allclose(m, MEANS_HAND, rtol=1e-12)
    expect_v = a_v * S_HAND / N_HAND[:, None] + (1 - a_v) * (V2 + M2 ** 2) - MEANS_HAND ** 2
    assert_allclose(v, expect_v, rtol=1e-12)
    # variances only: the mean in the formula is the UBM's
    _, m_only, v_only = map_adapt(W2, M2, V2, N_HAND, F_HAND, S_HAND, adapt="v",
                                  relevance_factor=2.0)
    assert_array_equal(m_only, M2)
    expect_v = a_v * S_HAND / N_HAND[:, None] + (1 - a_v) * (V2 + M2 ** 2) - M2 ** 2
    assert_allclose(v_only, expect_v, rtol=1e-12)


def test_map_unseen_components_and_floor():
    rng = np.random.default_rng(0)
    w = np.full(4, 0.25)
    m = rng.normal(size=(4, 3)) * 100          # large means: no cancellation allowed
    v = rng.uniform(0.5, 2.0, size=(4, 3))
    n = np.array([5.0, 0.0, 20.0, 0.0])
    f = n[:, None] * (m + 0.3)
    s = n[:, None] * ((m + 0.3) ** 2 + 1e-9)   # nearly zero spread: floor kicks in (r=0)
    w2, m2, v2 = map_adapt(w, m, v, n, f, s, adapt="mwv", relevance_factor=0.0)
    for k in (1, 3):
        assert_array_equal(m2[k], m[k])
        assert_array_equal(v2[k], v[k])
    assert_allclose(m2[[0, 2]], m[[0, 2]] + 0.3, rtol=1e-12)
    assert_allclose(v2[[0, 2]], 1e-3 * v[[0, 2]])
    assert np.all(v2 > 0)
    assert_allclose(w2.sum(), 1.0)
    # alpha = 1 where n > 0 (r = 0), 0 elsewhere: raw = (5/25, 0.25, 20/25, 0.25), sum 1.5
    assert_allclose(w2, np.array([0.2, 0.25, 0.8, 0.25]) / 1.5, rtol=1e-12)


@pytest.mark.parametrize("kwargs, match", [
    (dict(adapt="x"), "adapt"),
    (dict(adapt=""), "adapt"),
    (dict(relevance_factor=-1.0), "relevance_factor"),
    (dict(relevance_weights="a"), "relevance_weights"),
])
def test_map_rejects_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        map_adapt(W2, M2, V2, N_HAND, F_HAND, S_HAND, **kwargs)


def test_map_rejects_bad_inputs():
    with pytest.raises(ValueError, match="n must have shape"):
        map_adapt(W2, M2, V2, N_HAND[:1], F_HAND, S_HAND)
    with pytest.raises(ValueError, match="f and s must have shape"):
        map_adapt(W2, M2, V2, N_HAND, F_HAND.T, S_HAND)
    with pytest.raises(ValueError, match="non-negative"):
        map_adapt(W2, M2, V2, -N_HAND, F_HAND, S_HAND)
    with pytest.raises(ValueError, match="variances must be positive"):
        map_adapt(W2, M2, -V2, N_HAND, F_HAND, S_HAND)
    with pytest.raises(ValueError, match="sum to 1"):
        map_adapt(W2 * 3, M2, V2, N_HAND, F_HAND, S_HAND)
    with pytest.raises(ValueError, match="features"):
        utterance_stats(np.zeros((4, 2)), W2, M2, V2)


# ---------------------------------------------------------------------------
# statistics vs a direct computation
# ---------------------------------------------------------------------------

def _direct_stats(X, w, m, v):
    X = X.astype(np.float64)
    lp = (np.log(w) - 0.5 * np.sum(np.log(2 * np.pi * v), axis=1)
          - 0.5 * (((X[:, None, :] - m[None]) ** 2) / v[None]).sum(axis=2))
    lp -= lp.max(axis=1, keepdims=True)
    g = np.exp(lp)
    g /= g.sum(axis=1, keepdims=True)
    return g.sum(axis=0), g.T @ X, g.T @ (X * X)


@pytest.mark.parametrize("dtype, offset, rtol", [(np.float64, 0.0, 1e-10),
                                                 (np.float32, 300.0, 2e-4)])
def test_utterance_stats_direct(backend, dtype, offset, rtol):
    rng = np.random.default_rng(1)
    K, D = 5, 3
    w = rng.dirichlet(np.ones(K))
    m = rng.normal(0, 2, size=(K, D)) + offset
    v = rng.uniform(0.5, 2.0, size=(K, D))
    X = (rng.normal(0, 2, size=(200, D)) + offset).astype(dtype)
    n, f, s = utterance_stats(X, w, m, v, backend=backend)
    n0, f0, s0 = _direct_stats(X, w, m, v)
    assert_allclose(n, n0, rtol=rtol, atol=1e-6)
    assert_allclose(f, f0, rtol=rtol, atol=1e-4)
    assert_allclose(s, s0, rtol=rtol, atol=1e-4)
    assert_allclose(n.sum(), 200.0, rtol=1e-6 if dtype == np.float32 else 1e-9)


# ---------------------------------------------------------------------------
# top-C kernel and scoring
# ---------------------------------------------------------------------------

def test_topc_kernel_order_ties_and_logprob():
    rng = np.random.default_rng(2)
    K, D = 12, 2
    m = rng.normal(size=(K, D))
    m[7] = m[3]                      # identical components: exact ties
    m[9] = m[3]
    prec = np.ones((K, D))
    log_w = np.full(K, -np.log(K))
    X = np.concatenate([rng.normal(size=(300, D)), np.repeat(m[[3]], 5, axis=0)])
    shift = np.zeros(D)
    lp = numpy_kernels._diag_log_prob(X, m, prec, log_w)
    for c in (1, 3, 5, K):
        idx, out = numpy_kernels.gmm_diag_topc(X, shift, m, prec, log_w, c, chunk_size=64)
        assert idx.dtype == np.int64 and idx.shape == (X.shape[0], c)
        assert_array_equal(idx, np.argsort(-lp, axis=1, kind="stable")[:, :c])
        sel = np.take_along_axis(lp, idx, axis=1)
        assert_allclose(out, np.log(np.exp(sel).sum(axis=1)), rtol=1e-12)
    # frames sitting on the triplicated component: ties resolved by lower index
    idx, _ = numpy_kernels.gmm_diag_topc(X[-5:], shift, m, prec, log_w, 2)
    assert_array_equal(idx, np.tile([3, 7], (5, 1)))
    exact = np.empty(X.shape[0])
    numpy_kernels.gmm_diag_step(X, shift, m, prec, log_w, logprob_out=exact,
                                compute_stats=False)
    _, full = numpy_kernels.gmm_diag_topc(X, shift, m, prec, log_w, K)
    assert_allclose(full, exact, rtol=1e-12)
    with pytest.raises(ValueError, match="top_c"):
        numpy_kernels.gmm_diag_topc(X, shift, m, prec, log_w, K + 1)


@pytest.mark.parametrize("kb", [None] + available_backends())
def test_topc_kernel_selects_the_best_components(kb):
    """The kernel scoring uses, for every backend: the C best components, best first."""
    rng = np.random.default_rng(5)
    K, D, C = 10, 3, 4
    m = rng.normal(0, 2, size=(K, D))
    prec = rng.uniform(0.5, 2.0, size=(K, D))
    log_w = np.log(rng.dirichlet(np.ones(K)))
    X = rng.normal(0, 2, size=(257, D))
    shift = X.mean(axis=0)
    # log w_k N(x | m_k, 1/prec_k), written out here
    lp = (log_w - 0.5 * D * np.log(2 * np.pi) + 0.5 * np.log(prec).sum(axis=1)
          - 0.5 * (((X[:, None, :] - m[None]) ** 2) * prec[None]).sum(axis=2))
    idx = np.full((X.shape[0], C), -1, dtype=np.int64)
    out = np.full(X.shape[0], np.nan)
    topc_kernel(kb)(X, shift, m - shift, prec, log_w, C, index_out=idx, logprob_out=out)
    assert_array_equal(idx, np.argsort(-lp, axis=1, kind="stable")[:, :C])
    sel = np.take_along_axis(lp, idx, axis=1)
    assert_allclose(out, np.log(np.exp(sel).sum(axis=1)), rtol=1e-10)


def _speaker_frames(centers, offset, n, seed):
    """Frames of one 'speaker': the shared blob centres moved by a speaker offset."""
    rng = np.random.default_rng(seed)
    lab = rng.integers(0, centers.shape[0], size=n)
    return (centers[lab] + offset[lab] + rng.normal(0, 1.0, size=(n, centers.shape[1])))


@pytest.fixture(scope="module")
def world():
    """A K=32 diagonal UBM fitted with ipem.GaussianMixture on many speakers' frames."""
    rng = np.random.default_rng(3)
    D = 4
    centers = rng.normal(0, 5, size=(8, D))
    offsets = {s: rng.normal(0, 1.0, size=(8, D)) for s in range(12)}
    background = np.concatenate([_speaker_frames(centers, offsets[s], 400, 100 + s)
                                 for s in range(2, 12)])
    gm = ipem.GaussianMixture(32, covariance_type="diag", max_iter=40, random_state=0,
                              reg_covar=1e-4).fit(background)
    frames = {s: {"enrol": _speaker_frames(centers, offsets[s], 600, 200 + s).astype(np.float32),
                  "test": _speaker_frames(centers, offsets[s], 300, 300 + s).astype(np.float32)}
              for s in range(3)}
    return gm, frames


def test_topc_equals_exact_when_c_is_k(world, backend):
    gm, frames = world
    model = SpeakerModel("a", *map_adapt(gm.weights_, gm.means_, gm.covariances_,
                                         *utterance_stats(frames[0]["enrol"], gm.weights_,
                                                          gm.means_, gm.covariances_),
                                         adapt="mwv"))
    X = frames[0]["test"].astype(np.float64)
    exact = llr_scores(X, gm, [model], top_c=None, backend=backend)
    full = llr_scores(X, gm, [model], top_c=32, backend=backend)
    assert_allclose(full, exact, rtol=1e-9, atol=1e-10)
    # top_c above K is clipped to K
    assert_allclose(llr_scores(X, gm, [model], top_c=100, backend=backend), full, rtol=1e-12)


def test_top5_close_to_exact_and_llr_sign(world, backend):
    gm, frames = world
    models = adapt_speakers(gm, {s: frames[s]["enrol"] for s in frames}, progress=False,
                            backend=backend)
    ms = [models[s] for s in frames]
    diffs = []
    for s in frames:
        X = frames[s]["test"]
        exact = llr_scores(X, gm, ms, top_c=None, backend=backend)
        fast = llr_scores(X, gm, ms, top_c=5, backend=backend)
        diffs.append(np.abs(fast - exact))
        # own speaker: positive LLR and the best of all models; others: lower
        assert exact[s] > 0.05
        assert np.argmax(exact) == s and np.argmax(fast) == s
        assert all(exact[o] < exact[s] - 0.05 for o in frames if o != s)
    assert np.mean(diffs) < 1e-3, np.mean(diffs)
    # the UBM against itself scores exactly 0
    assert_allclose(llr_scores(frames[0]["test"], gm,
                               [(gm.weights_, gm.means_, gm.covariances_)]), [0.0], atol=1e-12)


# ---------------------------------------------------------------------------
# task-parallel adaptation and scoring: engines vs local, files, errors
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def corpus(world, tmp_path_factory):
    gm, frames = world
    root = tmp_path_factory.mktemp("spk")
    enrol = {}
    for s in frames:
        X = frames[s]["enrol"]
        a = features.write(root / f"spk{s}_a.npy", X[:250])
        b = features.write(root / f"spk{s}_b.htk", X[250:])
        enrol[f"spk{s}"] = [a.path, b.path] if s != 1 else [a, b.path]   # paths and refs
        features.write(root / f"test{s}.htk", frames[s]["test"])
    return root, enrol


def _assert_models_equal(a, b):
    assert a.speaker_id == b.speaker_id and a.n_frames == b.n_frames
    for x, y in zip(a.params(), b.params()):
        assert_array_equal(x, y)


def test_adapt_speakers_engines_match_local(world, corpus, dv_client, tmp_path, backend):
    gm, frames = world
    root, enrol = corpus
    enrol = dict(enrol, arr=frames[2]["test"][:200])
    local = adapt_speakers(gm, enrol, controller=ipem.LocalController(1, blas_threads=1),
                           adapt="mwv", progress=False, backend=backend)
    remote = adapt_speakers(gm, enrol, controller=dv_client, adapt="mwv", progress=True,
                            backend=backend)
    assert list(remote) == list(enrol) == list(local)
    for spk in enrol:
        assert isinstance(remote[spk], SpeakerModel)
        _assert_models_equal(remote[spk], local[spk])
    assert remote["spk0"].n_frames == 600
    # the files give the same model as the float32 array they were written from
    direct = adapt_speakers(gm, {"spk0": frames[0]["enrol"]}, adapt="mwv", progress=False,
                            backend=backend, controller=ipem.LocalController(1, blas_threads=1))
    _assert_models_equal(direct["spk0"], local["spk0"])
    # engines write the models themselves
    paths = adapt_speakers(gm, enrol, controller=dv_client, adapt="mwv", out_dir=tmp_path,
                           progress=False, backend=backend)
    for spk, path in paths.items():
        assert path == os.path.join(str(tmp_path), f"{spk}.npz")
        _assert_models_equal(SpeakerModel.load(path), local[spk])
    # many speakers: a few per task, their files synced and renamed together
    X = frames[1]["test"]
    many = {f"m{i:02d}": X[i:i + 30] for i in range(70)}
    local = adapt_speakers(gm, many, controller=ipem.LocalController(1, blas_threads=1),
                           progress=False, backend=backend)
    paths = adapt_speakers(gm, many, controller=dv_client, out_dir=tmp_path / "many",
                           progress=False, backend=backend)
    assert list(paths) == list(many) == list(local)
    assert sorted(os.listdir(tmp_path / "many")) == sorted(f"{spk}.npz" for spk in many)
    for spk, path in paths.items():
        assert path == os.path.join(str(tmp_path / "many"), f"{spk}.npz")
        _assert_models_equal(SpeakerModel.load(path, speaker_id=spk), local[spk])


def test_adapt_speakers_bad_file_named(world, corpus, dv_client, tmp_path):
    gm, _ = world
    _, enrol = corpus
    bad = tmp_path / "broken.npy"
    bad.write_bytes(b"this is not a numpy file at all")
    spk = {"good": enrol["spk0"], "bad": [enrol["spk1"][1], str(bad)]}
    with pytest.raises(ipem.EngineValueError, match="broken.npy"):
        adapt_speakers(gm, spk, controller=dv_client, progress=False)
    # in-process: a ValueError naming the file too (FeatureFileError or EngineValueError)
    with pytest.raises(ValueError, match="broken.npy"):
        adapt_speakers(gm, spk, controller=ipem.LocalController(1), progress=False)
    nan = np.ones((20, 4), np.float32)
    nan[7, 2] = np.nan
    features.write(tmp_path / "nan.npy", nan)
    with pytest.raises(ipem.EngineValueError, match="nan.npy"):
        adapt_speakers(gm, {"x": [str(tmp_path / "nan.npy")]}, controller=dv_client,
                       progress=False)
    with pytest.raises(ValueError, match="speaker x.*3 features"):
        adapt_speakers(gm, {"x": np.zeros((10, 3))}, progress=False)
    with pytest.raises(ValueError, match="cannot be used as a file name"):
        adapt_speakers(gm, {"a/b": enrol["spk0"]}, out_dir=tmp_path, progress=False)


def test_score_trials_engines_match_local(world, corpus, dv_client, tmp_path, backend):
    gm, frames = world
    root, enrol = corpus
    local_ctrl = ipem.LocalController(1, blas_threads=1)
    models = adapt_speakers(gm, enrol, controller=local_ctrl, progress=False, backend=backend)
    paths = {spk: m.save(tmp_path / f"{spk}.npz") for spk, m in models.items()}
    arr = frames[1]["test"]
    trials = [("spk0", str(root / "test0.htk")), ("spk1", str(root / "test0.htk")),
              ("spk1", arr), ("spk2", str(root / "test2.htk")), ("spk0", arr),
              ("spk2", str(root / "test0.htk")), ("spk2", str(root / "test1.htk"))]
    for top_c in (5, None):
        local = score_trials(gm, trials, models, controller=local_ctrl, top_c=top_c,
                             progress=False, backend=backend)
        remote = score_trials(gm, trials, paths, controller=dv_client, top_c=top_c,
                              progress=True, backend=backend)
        assert remote == local
        direct = [llr_scores(features.load(features.describe(t)) if isinstance(t, str) else t,
                             gm, [models[mid]], top_c=top_c, backend=backend)[0]
                  for mid, t in trials]
        assert_allclose(local, direct, rtol=1e-12)
    # own speaker positive, the others lower
    assert local[0] > 0 and local[2] > 0 and local[3] > 0
    assert local[1] < local[0] and local[4] < local[2] and local[5] < local[0]
    with pytest.raises(ValueError, match="trial 1: model 'nobody'"):
        score_trials(gm, [trials[0], ("nobody", arr)], models, progress=False)
    assert score_trials(gm, [], models) == []


@pytest.mark.parametrize("scoring, top_c, expected", [
    (None, 5, ("topc", 5)), (None, None, ("exact", None)), (None, 0, ("exact", None)),
    ("topc", 0, ("exact", None)), ("topc", 3, ("topc", 3)), ("exact", 5, ("exact", None)),
    ("linear", 5, ("linear", None)), ("linear", None, ("linear", None)),
], ids=["default", "none", "zero", "topc-zero", "topc", "exact", "linear", "linear-none"])
def test_scoring_method(scoring, top_c, expected):
    assert scoring_method(scoring, top_c) == expected


@pytest.mark.parametrize("scoring, top_c, match", [
    ("fast", 5, "unknown scoring method 'fast'"), (None, -1, "top_c must be None or an "
                                                             "integer >= 1, got -1"),
    ("topc", True, "top_c must be"), (None, 2.5, "top_c must be"),
], ids=["method", "negative", "bool", "float"])
def test_scoring_method_refuses(scoring, top_c, match):
    with pytest.raises(ValueError, match=match):
        scoring_method(scoring, top_c)


def test_top_c_zero_scores_exactly():
    rng = np.random.default_rng(0)
    w, m, v = np.full(4, 0.25), rng.normal(size=(4, 3)), np.ones((4, 3))
    model = (w, m + 0.3, v)
    X = rng.normal(size=(50, 3))
    assert_allclose(llr_scores(X, (w, m, v), [model], top_c=0),
                    llr_scores(X, (w, m, v), [model], top_c=None))


def test_trial_lists(tmp_path):
    good = tmp_path / "trials.txt"
    good.write_text("# model test label\nspk1 seg1 target\n\nspk2 seg1 nontarget\nspk3 seg2\n")
    trials = read_trials(good)
    assert trials == [Trial("spk1", "seg1", "target"), Trial("spk2", "seg1", "nontarget"),
                      Trial("spk3", "seg2", None)]
    out = write_score_file(tmp_path / "scores.txt", trials, [1.5, -0.25, 1 / 3])
    lines = open(out).read().splitlines()
    assert lines == ["spk1 seg1 1.5 target", "spk2 seg1 -0.25 nontarget",
                     f"spk3 seg2 {1 / 3!r}"]
    # the atomic writer's temporary file (".<name>.<hex>.tmp") is gone
    assert sorted(os.listdir(tmp_path)) == ["scores.txt", "trials.txt"]
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    for text, match in [("spk1 seg1 target\nspk2\n", r"line 2: expected"),
                        ("spk1 seg1 target\n\nspk2 seg1 maybe\n", r"line 3: label"),
                        ("a b c d\n", r"line 1: expected"), ("# nothing\n", "no trials")]:
        bad = tmp_path / "bad.txt"
        bad.write_text(text)
        with pytest.raises(ValueError, match=match) as info:
            read_trials(bad)
        assert str(bad) in str(info.value)
    with pytest.raises(ValueError, match="2 trials but 1 scores"):
        write_score_file(tmp_path / "s.txt", trials[:2], [0.0])
    with pytest.raises(ValueError, match="test segment"):
        write_score_file(tmp_path / "s.txt", [("a", np.zeros((2, 2)))], [0.0])


def test_speaker_model_roundtrip(tmp_path):
    model = SpeakerModel("alice", WEIGHTS_HAND, MEANS_HAND, VARS_HAND, n_frames=3)
    path = model.save(tmp_path / "alice.npz")
    _assert_models_equal(SpeakerModel.load(path), model)
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match="junk.npz"):
        SpeakerModel.load(tmp_path / "junk.npz")
