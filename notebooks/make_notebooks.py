"""Write the notebooks from their cell sources (kept here, reviewed as code).

    python notebooks/make_notebooks.py
"""
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent


def write(name, cells):
    nb = new_notebook(cells=[new_markdown_cell(c[3:]) if c.startswith("md:") else new_code_cell(c)
                             for c in cells])
    for i, cell in enumerate(nb.cells):   # stable ids: regenerating changes nothing
        cell.id = f"cell-{i:02d}"
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, HERE / name)


FIRST = [
    """md:# ipem 1 — EM written once, run locally or on MPI engines

This notebook starts two ipyparallel engines **in MPI mode**, scatters a set of frames over
them once, and fits a Gaussian mixture with the `DirectViewController` while the convergence
plot updates. The same estimator with a `LocalController` (same shard layout) gives a
bit-identical model. Finally `%px` looks at what lives on the engines.""",
    """import time
import numpy as np
import ipem
print("ipem", ipem.__version__, "kernel backend:", ipem.BACKEND)""",
    """md:## Start 2 MPI engines
`ipem.MPICluster` wraps `ipyparallel.Cluster(engines="mpi")` and stops the engines with
`cluster.stop()`. With engines of your own, started in a terminal with
`ipcluster start --engines=MPI -n 4`, connect instead with

```python
import ipyparallel as ipp
rc = ipp.Client()
ctrl = ipem.DirectViewController(rc[:])
```

(and stop them with `ipcluster stop`).""",
    """cluster = ipem.MPICluster(n=2, blas_threads=1)
ctrl = cluster.start()
rc = cluster.client
print(ctrl, "ranks", ctrl.ranks)""",
    """md:## Frames, scattered once
A stand-in for speech features: 40,000 frames of 12 dimensions from 16 overlapping Gaussians.""",
    """rng = np.random.default_rng(0)
true_means = rng.normal(0, 1.5, size=(16, 12))
labels = rng.integers(0, 16, size=40_000)
X = (true_means[labels] + rng.normal(0, 1, size=(40_000, 12)) * rng.uniform(0.5, 1.5, 12)).astype(np.float32)
data = ctrl.distribute(X, key="frames")
data""",
    """md:## Fit on the engines with a live convergence plot
Each iteration sends the parameters (16×12 numbers and precisions) and brings back the
statistics; the frames never move again.""",
    """plot = ipem.LivePlot(title="GMM on 2 MPI engines")
gm_remote = ipem.GaussianMixture(16, covariance_type="diag", tol=1e-6, max_iter=200,
                                 random_state=0, callbacks=plot).fit(data)
print(f"{gm_remote.n_iter_} iterations, converged={gm_remote.converged_}, "
      f"log-likelihood/frame={gm_remote.lower_bound_:.6f}")""",
    """md:## The same code, in-process
A `LocalController(2)` splits the frames the same way; the result is bit-identical.
(float32 matrix products round differently with another BLAS thread count, so the local
controller uses the engines' one thread; with float64 features it does not matter.)""",
    """gm_local = ipem.GaussianMixture(16, covariance_type="diag", tol=1e-6, max_iter=200,
                                random_state=0,
                                controller=ipem.LocalController(2, blas_threads=1)).fit(X)
same = all(np.array_equal(a, b) for a, b in [
    (gm_local.means_, gm_remote.means_), (gm_local.covariances_, gm_remote.covariances_),
    (gm_local.weights_, gm_remote.weights_)])
print("bit-identical:", same, "| iterations:", gm_local.n_iter_, gm_remote.n_iter_)
assert same""",
    """md:## MPI Allreduce instead of a client-side sum
The engines sum their statistics with `MPI.Allreduce`; one copy comes back.""",
    """ctrl_ar = ipem.DirectViewController(rc[:], reduction="allreduce")
data_ar = ctrl_ar.distribute(X, key="frames_ar")
gm_ar = ipem.GaussianMixture(16, covariance_type="diag", tol=1e-6, max_iter=200,
                             random_state=0).fit(data_ar)
print("Allreduce model identical:", np.array_equal(gm_ar.means_, gm_remote.means_))
rec = gm_remote.history_[-1]
print("per-engine frames", rec.info["shard_frames"], "E-step seconds",
      np.round(rec.info["shard_time"], 4))""",
    """md:## What lives on the engines: `%px`
Each engine keeps its shards in its namespace, in the dictionary `ipem_shards`, under the
key of the `DistributedData` (`data.key`, here `"frames"`). `view.activate()` makes `%px`
(one line) and `%%px` (a cell) run code on the engines of `view`. A `DirectView` does not
block by default, and then `%px` only returns an `AsyncResult`: give the cell magic
`--block` (`%%px --block`), or make the view blocking once with `view.block = True` (or
`%pxconfig --block`); the line magic `%px` takes no options. `rc.activate()` gives a
blocking view on all engines in one call.""",
    """view = rc[:]
view.activate()
print("data.key:", data.key, "| view.block:", view.block)""",
    """%%px --block
print(sorted(ipem_shards))
shard = ipem_shards["frames"]
print(shard)
print("shard", shard.index, "holds frames", shard.offset, "to", shard.offset + len(shard.X),
      "| mean of the first feature", round(float(shard.X[:, 0].mean()), 4))""",
    """view.block = True      # from here on %px waits for the engines and shows what they print
%px from mpi4py import MPI; print("rank", MPI.COMM_WORLD.Get_rank(), "of", MPI.COMM_WORLD.Get_size())""",
    """md:`free()` deletes the shards on the engines:""",
    """data.free(); data_ar.free()
%px print(sorted(ipem_shards))""",
    """cluster.stop()""",
]

SECOND = [
    """md:# ipem 2 — a UBM trained on MPI engines that read their own feature files

The client only reads file headers: it assigns the files to engines balanced by frame count and
each engine loads its own shard. The UBM grows by binary splitting 1 → 2 → 4 → … → 64, with a
variance floor and a dead-component policy; the live plot shows the objective across stages and
every iteration record carries per-engine frame counts and E-step times.""",
    """import os, tempfile
import numpy as np
import ipem
from ipem import io as features
print("kernels:", ipem.BACKEND)""",
    """md:## Feature files
Stand-in features: 60-dimensional float32 frames with a large offset in the first
dimension (like raw log-energy), in 24 HTK files of different lengths plus a Kaldi ark/scp.""",
    """rng = np.random.default_rng(0)
workdir = tempfile.mkdtemp(prefix="ipem-ubm-")
centers = rng.normal(0, 2, size=(40, 60))
paths = []
for i in range(24):
    n = int(rng.integers(1500, 6000))
    lab = rng.integers(0, 40, n)
    X = (centers[lab] + rng.normal(size=(n, 60)) * rng.uniform(0.3, 1.2, 60)).astype(np.float32)
    X[:, 0] += 1e4
    path = os.path.join(workdir, f"utt{i:02d}.htk")
    features.write(path, X, "htk")
    paths.append(path)
refs = features.list_features(paths)
print(len(refs), "files,", sum(r.n_frames for r in refs), "frames of", refs[0].n_features, "dims")""",
    """cluster = ipem.MPICluster(n=2, blas_threads=1)
ctrl = cluster.start()
data = features.distribute_files(ctrl, refs)   # each engine reads its own files
for rank, files in enumerate(data.files):
    print(f"rank {rank}: {len(files)} files, {sum(f.n_frames for f in files)} frames")""",
    """md:## Train with the live plot""",
    """plot = ipem.LivePlot(title="UBM: objective across splitting stages")
ubm = ipem.UBMTrainer(64, stage_iter=6, final_iter=15, tol=1e-4, variance_floor=0.1,
                      checkpoint=os.path.join(workdir, "ubm.ckpt.npz"), random_state=0,
                      callbacks=plot).fit(data)
print(f"{ubm.n_iter_} iterations, final log-likelihood/frame {ubm.lower_bound_:.4f}")""",
    """md:## Telemetry per iteration""",
    """print(" it    K   objective    change  floored  dead  frames/engine   E-step ms/engine")
for r in ubm.history_[-8:]:
    print(f"{r.iteration:3d} {r.stage:4d} {r.objective:11.4f} {r.change:9.2e} "
          f"{r.info['n_floored']:8d} {len(r.info['dead']):5d}  {r.info['shard_frames']}  "
          f"{[round(1e3 * t, 1) for t in r.info['shard_time']]}")
print("all variances positive:", bool((ubm.covariances_ > 0).all()))""",
    """md:## Restart from the checkpoint
The checkpoint (an `.npz`, written atomically every iteration) holds the model, the records and
the random state; a run that resumes from it ends with the same model.""",
    """again = ipem.UBMTrainer(64, stage_iter=6, final_iter=15, tol=1e-4, variance_floor=0.1,
                        checkpoint=os.path.join(workdir, "ubm.ckpt.npz"), random_state=0).fit(data)
print("resumed after", again.resumed_from_, "iterations; same model:",
      np.array_equal(again.means_, ubm.means_))""",
    """data.free()
cluster.stop()""",
]

THIRD = [
    """md:# ipem 3 — GMM-UBM and i-vector speaker verification, interactively

The demo's pipeline step by step on 2 MPI engines: a corpus of real recorded voices (MBROLA
diphones driven by espeak-ng) through a telephone channel with noise, features extracted on the
engines, a UBM trained from the feature files with the live plot, speaker models MAP-adapted in
parallel, trials scored with top-5 Gaussian selection; then an i-vector extractor trained by EM
on the same engines, i-vectors scored by cosine and PLDA, and the three systems' EER, minDCF,
actDCF and DET curves side by side.
Every step is a function of `ipem.steps`, the same ones the `ipem` command runs; where the
features of list entries are is one `FeatureSource`.
(Needs espeak-ng and the MBROLA voices: `scripts/install_speech_deps.sh`.)""",
    """import tempfile
from pathlib import Path
import numpy as np
import ipem
from ipem import steps
from ipem.speaker import FeatureSource, plot_det
from ipem.synth import generate_corpus
work = Path(tempfile.mkdtemp(prefix="ipem-sv-"))""",
    """info = generate_corpus(work / "corpus", n_speakers=12, n_enroll=3, n_test=3, n_ubm=5, seed=1)
print(len(info.speakers), "speakers:", ", ".join(info.voices))
print(info.n_utterances, "utterances,", info.n_trials, "trials")""",
    """md:## Features, extracted on the engines
One task per audio file; the feature files mirror the corpus layout under `features/`.""",
    """cluster = ipem.MPICluster(n=2, blas_threads=1)
ctrl = cluster.start()
feats = work / "features"
refs = steps.extract(info.out_dir, feats, controller=ctrl, progress=True)
source = FeatureSource(feats, info.out_dir)
print(len(refs), "files,", sum(r.n_frames for r in refs), "speech frames of",
      refs[0].n_features, "dims")""",
    """md:## The UBM, from files read by the engines""",
    """ubm_files = source.files(info.ubm_list)
ubm = steps.train_ubm(ubm_files, n_components=32, stage_iter=6, final_iter=15, tol=1e-3,
                      seed=0, controller=ctrl, plot=ipem.LivePlot(title="UBM (32 Gaussians)"))
print(ubm.n_iter_, "iterations; per-engine frames", ubm.history_[-1].info["shard_frames"])""",
    """md:## Speaker models (MAP, means, r=16) and trials
On the engines, then once more in-process: the scores are the same.""",
    """enroll = source.enrollment(info.enroll_list)
steps.adapt(ubm, enroll, work / "models", controller=ctrl, progress=True)
trials, scores = steps.score(ubm, info.trials_list, work / "models", source=source, top_c=5,
                             controller=ctrl, progress=True)
local = ipem.LocalController(1, blas_threads=1)
steps.adapt(ubm, enroll, work / "models_local", controller=local)
_, local_scores = steps.score(ubm, trials, work / "models_local", source=source, top_c=5,
                              controller=local)
print("same scores on engines and locally:", np.array_equal(scores, local_scores))""",
    """labels = np.array([t.label == "target" for t in trials])
tar, non = scores[labels], scores[~labels]
print(steps.format_metrics(steps.evaluate(tar, non)))""",
    """md:## i-vectors on the same engines
The total-variability matrix T (rank 10: this corpus has 60 training utterances) is trained by
EM over the same controller: each engine computes the Baum-Welch statistics of its utterances
from its own feature files and keeps them; every iteration sends T and brings back the
accumulators. With a `LocalController` of the same shard layout T is bit-identical.""",
    """train = source.utterances(info.ubm_list)
tv = steps.train_ivector(ubm, train, rank=10, n_iter=10, seed=0, controller=ctrl,
                         plot=ipem.LivePlot(title="total variability (R=10)"))
tv_local = steps.train_ivector(ubm, train, rank=10, n_iter=10, seed=0,
                               controller=ipem.LocalController(2, blas_threads=1))
print("same T on engines and locally:", np.array_equal(tv.T_, tv_local.T_))""",
    """md:I-vectors of the models (their enrollment statistics pooled) and of the test segments are
extracted one task per id; the back-end (centring, LDA, WCCN, length normalisation, PLDA) is
trained on the training utterances' i-vectors, labelled by speaker.""",
    """utts = dict(enroll)
utts.update({t.test: source.path(t.test) for t in trials})
utts.update(train)
vecs = steps.extract_ivectors(tv, utts, controller=ctrl, progress=True)
backend = steps.train_backend({u: vecs[u] for u in train})
_, cosine = steps.score_ivectors(vecs, trials, backend="cosine", model=backend)
_, plda = steps.score_ivectors(vecs, trials, backend="plda", model=backend)""",
    """md:## GMM-UBM and i-vectors side by side
Calibration (logistic regression) is trained on the trials of every speaker's first test
segment (the development half) and applied to the others (the evaluation half). Everything
below is measured on the evaluation half only: EER and minDCF of the raw scores, actDCF of
the calibrated ones (SRE08 operating point), and the DET curves, whose legend repeats each
system's EER from the table (calibration is a monotone map: it moves no DET point).""",
    """from ipem.speaker import LogisticCalibration
dev = np.array([t.test.endswith("_00.wav") for t in trials])
curves = {}
for name, s in (("GMM-UBM, top-5", scores), ("i-vector + cosine", cosine),
                ("i-vector + PLDA", plda)):
    llr = LogisticCalibration().fit(s[dev & labels], s[dev & ~labels]).transform(s)
    raw = steps.evaluate(s[~dev & labels], s[~dev & ~labels])
    cal = steps.evaluate(llr[~dev & labels], llr[~dev & ~labels])
    print(f"{name:<18s} EER {100 * raw['eer']:5.2f} %  minDCF {raw['min_dcf_sre08']:.4f}  "
          f"actDCF {cal['act_dcf_sre08']:.4f}")
    curves[name] = (s[~dev & labels], s[~dev & ~labels])
print(f"evaluation half: {raw['n_target']} target and {raw['n_nontarget']} non-target trials")
det = plot_det(curves, title=f"DET, evaluation half ({raw['n_target']} target, "
                             f"{raw['n_nontarget']} non-target trials)")
det.figure""",
    """cluster.stop()""",
]

if __name__ == "__main__":
    write("01_em_on_mpi_engines.ipynb", FIRST)
    write("02_ubm_from_feature_files.ipynb", SECOND)
    write("03_speaker_verification.ipynb", THIRD)
