"""Linear scoring (Glembek et al. 2009) beside exact and top-C average-LLR scoring.

* Against the formula written here in NumPy: UBM posteriors, ``N_k``, ``F_k``,
  ``score = (1/T) sum_k (m_sk - m_k)^T Sigma_k^-1 (F_k - N_k m_k)``, in-process and
  on the MPI engines, for the kernel backend of this pass.
* Model files (read where the tasks run, kept per process, read again when rewritten)
  beside in-memory models, in several tasks: the same bits locally and on engines.
* It is the first-order term of the exact LLR: for models ever closer to the UBM the
  two agree ever better.
* On a generated corpus, its scores against exact scoring (correlation, EER), printed.
"""
import os
import time

import numpy as np
import pytest
from scipy.special import logsumexp

from ipem import steps
from ipem.speaker import FeatureSource, SpeakerModel, scorefiles
from ipem.speaker.scoring import (linear_scores, llr_scores, model_offsets, score_trials,
                                  segment_statistics)

K, D = 6, 3


@pytest.fixture
def world(seed):
    rng = np.random.default_rng(seed)
    w = rng.dirichlet(np.ones(K) * 3)
    m = rng.normal(0, 3, size=(K, D))
    v = rng.uniform(0.5, 2.0, size=(K, D))
    models = {f"s{i}": SpeakerModel(f"s{i}", w, m + rng.normal(0, 0.4, size=(K, D)), v)
              for i in range(3)}
    tests = [rng.normal(0, 3, size=(n, D)) for n in (40, 75, 13, 120)]
    return (w, m, v), models, tests


def _numpy_linear(ubm, model_means, X):
    """The formula, by hand: posteriors under the UBM, statistics, dot product."""
    w, m, v = ubm
    diff = X[:, None, :] - m[None]
    lp = (np.log(w) - 0.5 * np.sum(np.log(2 * np.pi * v), axis=1)
          - 0.5 * np.sum(diff ** 2 / v, axis=2))
    gamma = np.exp(lp - logsumexp(lp, axis=1, keepdims=True))       # (T, K)
    N = gamma.sum(axis=0)
    F = gamma.T @ X                                                  # (K, D)
    return float(np.sum((model_means - m) / v * (F - N[:, None] * m)) / len(X))


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_linear_scores_match_the_formula(world, backend, dtype, dv_client):
    ubm, models, tests = world
    tests = [X.astype(dtype) for X in tests]
    trials = [(mid, X) for X in tests for mid in models]
    expected = [_numpy_linear(ubm, models[mid].means, X.astype(np.float64))
                for mid, X in trials]
    rtol = 1e-9 if dtype == np.float64 else 1e-4
    local = score_trials(ubm, trials, models, method="linear", backend=backend,
                         progress=False)
    np.testing.assert_allclose(local, expected, rtol=rtol, atol=1e-9)
    engines = score_trials(ubm, trials, models, method="linear", backend=backend,
                           controller=dv_client, progress=False)
    np.testing.assert_allclose(engines, local, rtol=1e-12, atol=1e-12)
    # statistics once per segment, all scores one product
    stats = [segment_statistics(X, ubm, backend=backend) for X in tests]
    assert [s[0] for s in stats] == [len(X) for X in tests]
    np.testing.assert_allclose([s[1].sum() for s in stats], [len(X) for X in tests],
                               rtol=1e-10 if dtype == np.float64 else 1e-6)
    matrix = linear_scores(model_offsets(ubm, list(models.values())), stats)
    assert matrix.shape == (len(models), len(tests))
    np.testing.assert_allclose(matrix.T.ravel(), local, rtol=1e-12, atol=1e-12)


def test_linear_is_the_first_order_term_of_the_llr(world, backend):
    ubm, models, tests = world
    w, m, v = ubm
    X = tests[3]
    direction = models["s0"].means - m
    gaps = []
    for eps in (1e-1, 1e-2, 1e-3):
        model = SpeakerModel("s", w, m + eps * direction, v)
        exact = llr_scores(X, ubm, [model], top_c=None, backend=backend)[0]
        lin = score_trials(ubm, [("s", X)], {"s": model}, method="linear", backend=backend,
                           progress=False)[0]
        gaps.append(abs(exact - lin) / abs(lin))
    # the remainder is second order: it shrinks ~10x per 10x smaller offset
    assert gaps[0] < 0.3 and gaps[1] < gaps[0] / 5 and gaps[2] < gaps[1] / 5


def test_bad_method(world):
    ubm, models, tests = world
    with pytest.raises(ValueError, match="unknown scoring method 'fast'"):
        score_trials(ubm, [("s0", tests[0])], models, method="fast")


@pytest.mark.once
def test_linear_against_exact_on_a_corpus(tmp_path, capsys):
    from ipem.cli import main
    from ipem.synth import MIN_SPEAKERS, available_voices, generate_corpus

    if len(available_voices()) < MIN_SPEAKERS:
        pytest.skip("needs espeak-ng and the MBROLA voices")
    info = generate_corpus(tmp_path / "c", n_speakers=10, n_ubm=3, n_enroll=2, n_test=3,
                           seed=2)
    root, feats = info.out_dir, tmp_path / "f"
    steps.extract(root, feats, fmt="npy")
    files = FeatureSource(feats, root, "npy").files(info.ubm_list)
    steps.train_ubm(files, n_components=32, seed=0, out=tmp_path / "ubm.npz")
    steps.adapt(tmp_path / "ubm.npz", info.enroll_list, tmp_path / "m",
                source=FeatureSource(feats, root, "npy"))
    out = {}
    for method in ("exact", "topc", "linear"):
        assert main(["score", "--ubm", str(tmp_path / "ubm.npz"), "--models",
                     str(tmp_path / "m"), "--trials", str(info.trials_list), "--features",
                     str(feats), "--format", "npy", "--root", str(root), "--scoring", method,
                     "--out", str(tmp_path / f"{method}.txt"), "--quiet"]) == 0
        trials, scores = scorefiles.read_score_file(tmp_path / f"{method}.txt")
        out[method] = (scores, steps.evaluate(*scorefiles.split_scores(trials, scores)))
    corr = np.corrcoef(out["linear"][0], out["exact"][0])[0, 1]
    eer = {k: v[1]["eer"] for k, v in out.items()}
    with capsys.disabled():
        print(f"\nlinear vs exact scoring, {info.n_target} target / {info.n_nontarget} "
              f"non-target trials: correlation {corr:.4f}; EER exact {100 * eer['exact']:.2f} "
              f"%, top-5 {100 * eer['topc']:.2f} %, linear {100 * eer['linear']:.2f} %")
    assert corr > 0.9
    assert abs(eer["linear"] - eer["exact"]) < 0.1


def test_linear_scores_of_files_and_in_memory_models_in_chunks(world, tmp_path, dv_client):
    """Model files read where the tasks run beside in-memory models; 20 test files (3
    tasks) in shuffled trials, some named twice (``dir/./t.npy``), each against its own
    subset of models, so that the tasks' chunks hold different models: the formula's
    scores, the same bits locally and on the engines, the same scores to rounding for
    a subset of the trials."""
    ubm, models, _ = world
    rng = np.random.default_rng(5)
    mixed = {"s0": models["s0"]}
    for mid in ("s1", "s2"):
        models[mid].save(tmp_path / f"{mid}.npz")
        mixed[mid] = str(tmp_path / f"{mid}.npz")
    tests = [rng.normal(0, 3, size=(int(rng.integers(5, 30)), D)) for _ in range(20)]
    for i, X in enumerate(tests):
        np.save(tmp_path / f"t{i}.npy", X)
    pairs = [(mid, i) for i in range(20) for j, mid in enumerate(mixed)
             if (i + j) % 3 or i % 4 == 0]
    pairs = [pairs[k] for k in rng.permutation(len(pairs))]
    trials = [(mid, os.path.join(tmp_path, "." if k % 2 else "", f"t{i}.npy"))
              for k, (mid, i) in enumerate(pairs)]
    expected = [_numpy_linear(ubm, models[mid].means, tests[i]) for mid, i in pairs]
    local = score_trials(ubm, trials, mixed, method="linear", dtype=np.float64,
                         progress=False)
    np.testing.assert_allclose(local, expected, rtol=1e-9, atol=1e-12)
    engines = score_trials(ubm, trials, mixed, method="linear", controller=dv_client,
                           dtype=np.float64, progress=False)
    np.testing.assert_array_equal(engines, local)
    some = trials[5::4]
    np.testing.assert_allclose(
        score_trials(ubm, some, mixed, method="linear", dtype=np.float64, progress=False),
        local[5::4], rtol=1e-13, atol=1e-15)
    # a model file written again is read again (the offsets kept by this process)
    w, m, v = ubm
    SpeakerModel("s1", w, m - 0.3, v).save(mixed["s1"])
    os.utime(mixed["s1"], ns=(time.time_ns() + 10**9,) * 2)
    again = score_trials(ubm, trials, mixed, method="linear", dtype=np.float64,
                         progress=False)
    changed = [k for k, (mid, _) in enumerate(pairs) if mid == "s1"]
    np.testing.assert_allclose(np.asarray(again)[changed],
                               [_numpy_linear(ubm, m - 0.3, tests[pairs[k][1]]) for k in changed],
                               rtol=1e-9, atol=1e-12)


def test_linear_products_do_not_depend_on_what_the_process_scored_before(world, tmp_path):
    """The rows of a task's product are its chunk's models, whatever offsets the process
    kept: scores of the same trials in one process after a fresh start and after
    scoring other models first (which puts the kept rows elsewhere) are the same bits.
    2 or 3 columns at K*D = 18 are the products whose bits depend on their row count."""
    ubm, _, tests = world
    w, m, v = ubm
    rng = np.random.default_rng(7)
    files = {}
    for i in range(4):
        SpeakerModel(f"s{i}", w, m + rng.normal(0, 0.4, size=(K, D)), v).save(
            tmp_path / f"s{i}.npz")
        files[f"s{i}"] = str(tmp_path / f"s{i}.npz")
    other_ubm = (w, m + 1.0, v)         # scoring against another UBM drops the kept rows
    trials = [(mid, X) for X in tests[:3] for mid in ("s0", "s3")]

    def run(before):
        score_trials(other_ubm, trials[:1], files, method="linear", progress=False)
        if before:
            score_trials(ubm, before, files, method="linear", progress=False)
        return score_trials(ubm, trials, files, method="linear", progress=False)

    fresh = run([])
    np.testing.assert_allclose(fresh, [_numpy_linear(ubm, SpeakerModel.load(
        files[mid]).means, X) for mid, X in trials], rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(run([(f"s{i}", tests[3]) for i in range(4)]), fresh)
    np.testing.assert_array_equal(run([(f"s{i}", tests[3]) for i in (2, 1, 3, 0)]), fresh)


def test_linear_in_memory_models_with_ids_1_and_str_1(world):
    """Model ids 1 and "1" are two models: each trial gets its own model's score."""
    ubm, models, tests = world
    X = tests[1]
    trials = [(1, X), ("1", X), (1, tests[2])]
    scores = score_trials(ubm, trials, {1: models["s0"], "1": models["s1"]}, method="linear",
                          progress=False)
    np.testing.assert_allclose(scores, [_numpy_linear(ubm, models[s].means, x) for s, x in
                                        (("s0", X), ("s1", X), ("s0", tests[2]))], rtol=1e-9)


def test_linear_model_files_rewritten_between_calls_are_read_again(world, tmp_path):
    """A process keeps the matrix of a list of model files between tasks: a file written
    again (new modification time) gives its new model's scores, the others' stay."""
    ubm, models, tests = world
    w, m, v = ubm
    files = {}
    for mid in ("s0", "s1"):
        models[mid].save(tmp_path / f"{mid}.npz")
        files[mid] = str(tmp_path / f"{mid}.npz")
    trials = [(mid, X) for X in tests[:2] for mid in ("s0", "s1")]
    before = score_trials(ubm, trials, files, method="linear", progress=False)
    SpeakerModel("s1", w, m - 0.3, v).save(files["s1"])
    os.utime(files["s1"], ns=(time.time_ns() + 10**9,) * 2)
    after = score_trials(ubm, trials, files, method="linear", progress=False)
    np.testing.assert_array_equal(after[0::2], before[0::2])
    np.testing.assert_allclose(after[1::2], [_numpy_linear(ubm, m - 0.3, X) for X in tests[:2]],
                               rtol=1e-9, atol=1e-12)
