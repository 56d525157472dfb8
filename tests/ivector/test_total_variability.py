"""I-vectors: Baum-Welch statistics, total-variability EM (local and MPI), extraction, back-end."""
import os
import signal

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy import stats as sps

import ipem
from ipem.ivector import (LDA, WCCN, IvectorBackend, TotalVariability, TwoCovariancePLDA,
                          baum_welch, cosine_scores, distribute_stats, extract_ivectors,
                          frames_to_rows, length_normalize)
from ipem.ivector.posterior import pack_upper, unpack_upper
from ipem.speaker.map import ubm_params

K, D, R = 6, 4, 3


def _corpus(n_utts=40, seed=0, k=K, d=D, rank=R):
    """A UBM and utterances whose supervectors vary in a rank-``rank`` subspace."""
    rng = np.random.default_rng(seed)
    ubm = ipem.GaussianMixture(k, covariance_type="diag", random_state=0).fit(
        rng.normal(size=(3000, d)) * 2.0)
    basis = rng.normal(size=(d, rank))
    utts = [(rng.normal(size=(int(rng.integers(80, 260)), d)) * 2.0
             + basis @ rng.normal(size=rank)).astype(np.float32) for _ in range(n_utts)]
    return ubm, utts


@pytest.fixture(scope="module")
def corpus():
    return _corpus()


@pytest.fixture(scope="module")
def rows(corpus):
    ubm, utts = corpus
    return frames_to_rows(utts, ubm)


def _files(tmp_path, utts):
    paths = []
    for i, X in enumerate(utts):
        p = str(tmp_path / f"u{i:03d}.npy")
        ipem.io.write(p, X, "npy")
        paths.append(p)
    return paths


# ---------------------------------------------------------------------------
# an independent implementation, one utterance and one component at a time
# ---------------------------------------------------------------------------

def reference_em(rows, ubm, T, n_iter, min_div=True):
    """Textbook TV EM (Kenny 2005 / Dehak 2011) with explicit loops; returns T, objectives."""
    _, m, var = ubm_params(ubm)
    k, d = m.shape
    r = T.shape[2]
    T = T.copy()
    objectives = []
    for _ in range(n_iter):
        A = np.zeros((k, r, r))
        C = np.zeros((k, r, d))
        second = np.zeros((r, r))
        total = 0.0
        for row in rows:
            n, f = row[:k], row[k:].reshape(k, d)
            L = np.eye(r)
            b = np.zeros(r)
            for c in range(k):
                L += n[c] * T[c].T @ np.diag(1.0 / var[c]) @ T[c]
                b += T[c].T @ (f[c] / var[c])
            cov = np.linalg.inv(L)
            ew = cov @ b
            eww = cov + np.outer(ew, ew)
            total += -0.5 * np.linalg.slogdet(L)[1] + 0.5 * b @ ew
            for c in range(k):
                A[c] += n[c] * eww
                C[c] += np.outer(ew, f[c])
            second += eww
        objectives.append(total / rows[:, :k].sum())
        for c in range(k):
            T[c] = np.linalg.solve(A[c], C[c]).T
        if min_div:
            G = np.linalg.cholesky(second / len(rows))
            T = np.einsum("kdr,rs->kds", T, G)
    return T, objectives


def _initial_T(ubm, rank, seed, scale=0.1):
    _, _, var = ubm_params(ubm)
    rng = np.random.RandomState(seed)
    return scale * np.sqrt(var)[:, :, None] * rng.standard_normal(var.shape + (rank,))


@pytest.mark.parametrize("min_div", [True, False], ids=["mindiv", "plain"])
def test_em_matches_independent_numpy(corpus, rows, min_div):
    ubm, _ = corpus
    tv = TotalVariability(R, ubm=ubm, max_iter=4, min_divergence=min_div, random_state=3,
                          controller=ipem.LocalController(2)).fit(rows)
    T_ref, obj_ref = reference_em(rows, ubm, _initial_T(ubm, R, 3), 4, min_div)
    assert_allclose(tv.T_, T_ref, rtol=1e-8, atol=1e-10)
    assert_allclose([r.objective for r in tv.history_], obj_ref, rtol=1e-9)


def test_utterance_rows_are_blocked_only_by_an_integer_block_size(corpus, rows):
    """Rows given to fit are utterances' statistics, not frames: the default blocks
    (block_size="auto") do not cut them (small blocks of 66 MB accumulators cost 2.25x
    per iteration, benchmarks/invariance.py --tv); an integer block_size does."""
    ubm, _ = corpus
    for block_size, expected in (("auto", None), (None, None), (8, 8)):
        tv = TotalVariability(R, ubm=ubm, controller=ipem.LocalController(
            2, block_size=block_size))
        data, _ = tv._fit_data(rows, None)
        try:
            assert data.block_size == expected, block_size
        finally:
            data.free()
    km = ipem.KMeans(2, controller=ipem.LocalController(2))   # frames: auto blocks
    data, _ = km._fit_data(rows, None)
    try:
        assert data.block_size == ipem.parallel.auto_block_size(len(rows))
    finally:
        data.free()


def test_objective_never_decreases(corpus, rows):
    ubm, _ = corpus
    tv = TotalVariability(R + 2, ubm=ubm, max_iter=12, random_state=0, controller=2).fit(rows)
    obj = np.array([r.objective for r in tv.history_])
    assert np.all(np.diff(obj) >= -1e-12 * np.abs(obj[1:])), obj
    assert obj[-1] > obj[0]
    assert [r.stage for r in tv.history_] == [R + 2] * 12
    assert tv.history_[-1].info["n_utterances"] == len(rows)


def test_baum_welch_matches_responsibilities(corpus):
    ubm, utts = corpus
    X = utts[0].astype(np.float64)
    n, f = baum_welch(X, ubm_params(ubm), backend=ipem.BACKEND)
    g = ubm.predict_proba(X)
    assert_allclose(n, g.sum(axis=0), rtol=1e-10)
    assert_allclose(f, g.T @ X - g.sum(axis=0)[:, None] * ubm.means_, rtol=1e-9, atol=1e-9)
    # top-C: each frame's C largest responsibilities, renormalised
    n2, f2 = baum_welch(X, ubm_params(ubm), top_c=2)
    top = np.argsort(-g, axis=1)[:, :2]
    g2 = np.zeros_like(g)
    np.put_along_axis(g2, top, np.take_along_axis(g, top, axis=1), axis=1)
    g2 /= g2.sum(axis=1, keepdims=True)
    assert_allclose(n2, g2.sum(axis=0), rtol=1e-9, atol=1e-12)
    assert_allclose(f2, g2.T @ X - g2.sum(axis=0)[:, None] * ubm.means_, rtol=1e-8, atol=1e-9)


def test_local_and_mpi_engines_give_bit_identical_T(corpus, tmp_path, dv):
    ubm, utts = corpus
    files = _files(tmp_path, utts)
    kw = dict(ubm=ubm, max_iter=4, random_state=0, top_c=3)
    remote = TotalVariability(R, controller=dv, **kw).fit(files)
    local = TotalVariability(R, controller=ipem.LocalController(2, blas_threads=1),
                             **kw).fit(files)
    assert_array_equal(remote.T_, local.T_)
    assert [r.objective for r in remote.history_] == [r.objective for r in local.history_]
    # the statistics stay on the engines: i-vectors of the distributed rows, in order
    data = distribute_stats(ubm, files, controller=dv, top_c=3)
    assert data.n_samples == len(files) and data.files is not None
    assert dv.stored()  # held in ipem_shards
    w_remote = remote.transform(data)
    data.free()
    w_local = local.transform(frames_to_rows(utts, ubm, top_c=3))
    assert_allclose(w_remote, w_local, rtol=1e-10, atol=1e-12)


def test_ivectors_invariant_to_utterance_order(corpus, rows):
    ubm, _ = corpus
    tv = TotalVariability(R, ubm=ubm, max_iter=3, random_state=0).fit(rows)
    perm = np.random.default_rng(1).permutation(len(rows))
    w = tv.transform(rows)
    assert_allclose(tv.transform(rows[perm]), w[perm], rtol=1e-12, atol=1e-14)
    # one at a time (the batch size does not matter)
    assert_allclose(np.concatenate([tv.transform(rows[i:i + 1]) for i in range(5)]), w[:5],
                    rtol=1e-12, atol=1e-14)
    # training on shuffled utterances: the same T up to summation order
    tv2 = TotalVariability(R, ubm=ubm, max_iter=3, random_state=0).fit(rows[perm])
    assert_allclose(tv2.T_, tv.T_, rtol=1e-9, atol=1e-12)


def test_task_parallel_extraction_matches_transform(corpus, rows, tmp_path, dv_client):
    ubm, utts = corpus
    tv = TotalVariability(R, ubm=ubm, max_iter=3, random_state=0).fit(rows)
    files = _files(tmp_path, utts[:6])
    want = tv.transform(rows[:6])
    for ctrl in (None, dv_client):
        got = extract_ivectors(tv, {f"u{i}": p for i, p in enumerate(files)}, controller=ctrl,
                               progress=False)
        assert list(got) == [f"u{i}" for i in range(6)]
        assert_allclose(np.stack(list(got.values())), want, rtol=1e-6, atol=1e-8)
    # pooled statistics of two files = the i-vector of their concatenation
    both = extract_ivectors(tv, {"a": files[:2]}, progress=False)["a"]
    assert_allclose(both, tv.transform(frames_to_rows([np.concatenate(utts[:2])], ubm))[0],
                    rtol=1e-6, atol=1e-8)


def test_checkpoint_resume_gives_the_uninterrupted_T(corpus, rows, tmp_path):
    ubm, _ = corpus
    kw = dict(ubm=ubm, max_iter=5, random_state=0)
    ref = TotalVariability(R, **kw).fit(rows)
    ck = str(tmp_path / "tv.ckpt.npz")

    def stop(record):
        if record.iteration == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        TotalVariability(R, checkpoint=ck, callbacks=[stop], **kw).fit(rows)
    got = TotalVariability(R, checkpoint=ck, **kw).fit(rows)
    assert got.resumed_from_ == 3
    assert_array_equal(got.T_, ref.T_)
    assert [r.objective for r in got.history_] == [r.objective for r in ref.history_]
    with pytest.raises(ValueError, match="other settings"):
        TotalVariability(R + 1, checkpoint=ck, **kw).fit(rows)
    # the model file round-trips
    path = got.save(str(tmp_path / "tv.npz"))
    back = TotalVariability.load(path)
    assert_array_equal(back.transform(rows), got.transform(rows))


def test_bad_input_is_named(corpus, rows):
    ubm, _ = corpus
    with pytest.raises(ValueError, match="needs the UBM"):
        TotalVariability(R).fit(rows)
    with pytest.raises(ValueError, match=r"K \+ K\*D"):
        TotalVariability(R, ubm=ubm).fit(rows[:, :-1])
    with pytest.raises(ValueError, match="NaN"):
        bad = rows.copy()
        bad[2, 5] = np.nan
        TotalVariability(R, ubm=ubm).fit(bad)


# ---------------------------------------------------------------------------
# back-end
# ---------------------------------------------------------------------------

def _labelled(n_spk=12, per=6, d=5, seed=0):
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=d)
    sb = np.diag(rng.uniform(1.0, 3.0, d))
    sw = 0.3 * np.eye(d) + 0.1
    y = np.repeat(np.arange(n_spk), per)
    spk = rng.multivariate_normal(mu, sb, size=n_spk)
    X = spk[y] + rng.multivariate_normal(np.zeros(d), sw, size=y.size)
    return X, y


def test_plda_llr_matches_two_covariance_formulas():
    mu = np.array([0.5, -1.0])
    sb = np.array([[2.0, 0.3], [0.3, 1.0]])
    sw = np.array([[0.5, -0.1], [-0.1, 0.4]])
    plda = TwoCovariancePLDA.from_arrays(mu, sb, sw)
    e = np.array([[1.0, 0.2], [-0.3, -2.0]])
    t = np.array([[0.7, 0.1], [2.0, 1.0], [-1.0, -1.5]])
    st = sb + sw
    joint = np.block([[st, sb], [sb, st]])
    want = np.array([[sps.multivariate_normal(np.r_[mu, mu], joint).logpdf(np.r_[a, b])
                      - sps.multivariate_normal(mu, st).logpdf(a)
                      - sps.multivariate_normal(mu, st).logpdf(b) for b in t] for a in e])
    assert_allclose(plda.llr(e, t), want, rtol=1e-12, atol=1e-12)
    pairs = np.array([[0, 2], [1, 0], [1, 1]])
    assert_allclose(plda.llr(e, t, pairs), want[pairs[:, 0], pairs[:, 1]], rtol=1e-12)
    # a 1-D case by hand: sb=1, sw=1 -> st=2, |joint|=3
    p1 = TwoCovariancePLDA.from_arrays([0.0], [[1.0]], [[1.0]])
    x1, x2 = 1.0, 2.0
    by_hand = (-0.5 * np.log(3) - (2 * x1 * x1 + 2 * x2 * x2 - 2 * x1 * x2) / 6
               + np.log(2) + (x1 * x1 + x2 * x2) / 4)
    assert_allclose(p1.llr([[x1]], [[x2]])[0, 0], by_hand, rtol=1e-12)


def test_plda_em_never_decreases_and_recovers_the_covariances():
    X, y = _labelled(n_spk=300, per=8, seed=2)
    plda = TwoCovariancePLDA(max_iter=30).fit(X, y)
    ll = np.array(plda.loglik_history_)
    assert np.all(np.diff(ll) >= -1e-10), ll
    rng = np.random.default_rng(2)
    sb = np.diag(rng.uniform(1.0, 3.0, 5))  # what _labelled drew after mu
    assert_allclose(plda.within_, 0.3 * np.eye(5) + 0.1, atol=0.05)
    assert np.all(np.diag(plda.between_) > 0.5)
    del sb


def test_lda_wccn_and_length_norm():
    X, y = _labelled()
    Z = LDA(3).fit(X, y).transform(X)
    assert Z.shape == (X.shape[0], 3)
    w = WCCN().fit(Z, y)
    Zw = w.transform(Z)
    # within-class covariance (class-averaged) becomes the identity
    cov = np.zeros((3, 3))
    for s in np.unique(y):
        c = Zw[y == s] - Zw[y == s].mean(axis=0)
        cov += c.T @ c / c.shape[0]
    assert_allclose(cov / np.unique(y).size, np.eye(3), atol=1e-4)
    assert_allclose(np.linalg.norm(length_normalize(Zw), axis=1), 1.0)
    s = cosine_scores(Zw[:2], Zw[:3])
    assert s.shape == (2, 3) and s[0, 0] == pytest.approx(1.0)


def test_backend_separates_speakers_and_round_trips(tmp_path):
    X, y = _labelled(n_spk=40, per=6, d=8, seed=4)
    be = IvectorBackend(lda_dim=6).fit(X[::2], y[::2])
    enroll, test = X[::2][::3], X[1::2]
    ey, ty = y[::2][::3], y[1::2]
    for method in ("cosine", "plda"):
        s = be.score(enroll, test, method=method)
        same = ey[:, None] == ty[None, :]
        assert s[same].mean() > s[~same].mean() + 1.0 * (1 if method == "plda" else 0.2)
    path = be.save(str(tmp_path / "be.npz"))
    back = IvectorBackend.load(path)
    assert_array_equal(back.score(enroll, test), be.score(enroll, test))


def test_pack_unpack():
    a = np.random.default_rng(0).normal(size=(3, 4, 4))
    a = a + a.transpose(0, 2, 1)
    assert_array_equal(unpack_upper(pack_upper(a), 4), a)


# ---------------------------------------------------------------------------
# a lost engine during TV EM
# ---------------------------------------------------------------------------

@pytest.mark.once
def test_engine_loss_during_tv_em_recovers(corpus, tmp_path, owned_mpi_cluster):
    ubm, utts = corpus
    files = _files(tmp_path, utts)
    ctrl = owned_mpi_cluster.controller     # an MPICluster's: ipem restarts its engines
    kw = dict(ubm=ubm, max_iter=4, random_state=0, controller=ctrl)
    ref = TotalVariability(R, **kw).fit(files)

    def kill(record):
        if record.iteration == 2:
            os.kill(ctrl.pids[ctrl.ranks.index(1)], signal.SIGKILL)

    with pytest.warns(ipem.EngineRecoveryWarning, match="iteration 3"):
        got = TotalVariability(R, callbacks=[kill], **kw).fit(files)
    assert [r.iteration for r in got.history_ if "recovered" in r.info] == [3]
    assert_array_equal(got.T_, ref.T_)
