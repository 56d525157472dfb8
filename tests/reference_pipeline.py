"""An independent GMM-UBM written from python_speech_features and scikit-learn.

The yardstick of issue 11 (``tests/test_noisy.py``; ``benchmarks/conditions.py``
imports it too): 20 MFCCs + deltas + double deltas from a 300-3400 Hz filterbank,
frames within 30 dB of the loudest kept, CMVN; a scikit-learn GaussianMixture UBM,
means-only MAP (r=16), exact average-LLR scoring.  Nothing of ipem is used, so
that ipem's front-end and back-end are measured against something they share no
code with.
"""
import math

import numpy as np
import soundfile as sf
from scipy.special import logsumexp
from sklearn.mixture import GaussianMixture


def reference_features(path):
    """MFCC+deltas of the frames within 30 dB of the loudest, CMVN (float64)."""
    import python_speech_features as psf

    x, sr = sf.read(str(path), dtype="float64")
    c = psf.mfcc(x, sr, winlen=0.025, winstep=0.01, numcep=20, nfilt=24, nfft=256,
                 lowfreq=300, highfreq=3400, preemph=0.97, ceplifter=22, appendEnergy=True,
                 winfunc=np.hamming)
    d1 = psf.delta(c, 2)
    f = np.hstack([c, d1, psf.delta(d1, 2)])
    f = f[c[:, 0] > c[:, 0].max() - 3.0 * math.log(10.0)]   # within 30 dB of the loudest
    return (f - f.mean(axis=0)) / np.maximum(f.std(axis=0), 1e-8)


class ReferenceGMMUBM:
    """The reference back-end over the audio under ``root`` (features cached per file).

    Parameters
    ----------
    root : path-like
        Corpus directory; utterances are audio paths relative to it.
    n_components : int
    relevance : float, default=16
    """

    def __init__(self, root, n_components, relevance=16.0):
        self.root, self.n_components, self.relevance = root, n_components, relevance
        self._feats = {}

    def features(self, rel):
        if rel not in self._feats:
            self._feats[rel] = reference_features(self.root / rel)
        return self._feats[rel]

    def fit_ubm(self, utts):
        ubm = GaussianMixture(self.n_components, covariance_type="diag", reg_covar=1e-3,
                              max_iter=100, random_state=0)
        ubm.fit(np.vstack([self.features(u) for u in utts]))
        self.w, self.m, self.v = ubm.weights_, ubm.means_, ubm.covariances_
        return self

    def _logpdf(self, Y, means):
        d = Y[:, None, :] - means[None]
        return (np.log(self.w) - 0.5 * np.sum(np.log(2 * np.pi * self.v), axis=1)
                - 0.5 * np.sum(d * d / self.v[None], axis=2))

    def adapt(self, utts):
        """Means of the MAP-adapted model of the utterances ``utts``."""
        Y = np.vstack([self.features(u) for u in utts])
        lp = self._logpdf(Y, self.m)
        gamma = np.exp(lp - logsumexp(lp, axis=1, keepdims=True))
        n = gamma.sum(axis=0)
        alpha = (n / (n + self.relevance))[:, None]
        return alpha * (gamma.T @ Y) / np.maximum(n, 1e-10)[:, None] + (1 - alpha) * self.m

    def scores(self, models, utt):
        """Exact average LLR of utterance ``utt`` against each of ``models`` (means)."""
        Y = self.features(utt)
        ubm = logsumexp(self._logpdf(Y, self.m), axis=1)
        return np.array([np.mean(logsumexp(self._logpdf(Y, mu), axis=1) - ubm)
                         for mu in models])


def reference_eer(info, n_components):
    """EER of the reference on a generated corpus's lists (``CorpusInfo``)."""
    from ipem.speaker.metrics import compute_eer

    ref = ReferenceGMMUBM(info.out_dir, n_components).fit_ubm(info.ubm_list.read_text().split())
    models = {}
    for line in info.enroll_list.read_text().splitlines():
        spk, *utts = line.split()
        models[spk] = ref.adapt(utts)
    scores, target = [], []
    for line in info.trials_list.read_text().splitlines():
        spk, rel, label = line.split()
        scores.append(ref.scores([models[spk]], rel)[0])
        target.append(label == "target")
    scores, target = np.array(scores), np.array(target)
    return compute_eer(scores[target], scores[~target])
