"""The README's main job: GMM-UBM speaker verification end to end on 2 MPI engines.

    python -m ipem.demo [--out demo_output] [--engines 2] [--components 64]

1. generate a multi-speaker corpus from MBROLA voices (real recorded diphones)
   with varied text, rate, pitch and telephone-channel effects;
2. start a local ipyparallel cluster with MPI engines;
3. extract features on the engines (MFCC + deltas, VAD, CMVN -> HTK files);
4. train the UBM from the feature files, read by the engines themselves,
   printing the convergence record of every iteration and writing its plot;
5. MAP-adapt the speaker models (task-parallel over engines);
6. score the trials (top-5 Gaussian selection), print EER and minDCF and
   write the DET curve.

Every step is a function of :mod:`ipem.speaker.pipeline` (the ones the
``ipem`` command runs), chained through files in ``--out``.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path


def _step(title):
    print(f"\n=== {title} ===", flush=True)
    return time.perf_counter()


def run(out="demo_output", *, engines=2, components=64, speakers=None, seed=0):
    """Run the demo, printing every step; returns the exit status 0.

    Parameters
    ----------
    out : str or os.PathLike, default="demo_output"
        Directory of the corpus, features, models, scores and plots.
    engines : int, default=2
        MPI engines to start.
    components : int, default=64
        Gaussians of the UBM.
    speakers : int, optional
        Speakers of the corpus (default: every installed voice).
    seed : int, default=0

    Returns
    -------
    int
        0.

    Raises
    ------
    ValueError
        When espeak-ng or the MBROLA voices are missing (with the command
        that installs them).
    """
    import ipem
    from .speaker import pipeline
    from .speaker.corpus import generate_corpus
    from .speaker.metrics import plot_det

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    # a fresh run: no checkpoint or models of an earlier run with other settings
    (out / "ubm.ckpt.npz").unlink(missing_ok=True)
    shutil.rmtree(out / "models", ignore_errors=True)
    corpus, feats = out / "corpus", out / "features"
    ubm_path, models, scores_path = out / "ubm.npz", out / "models", out / "scores.txt"
    timings = {}

    t0 = _step("1. corpus: MBROLA voices, varied text/rate/pitch, telephone channel, noise")
    info = generate_corpus(corpus, n_speakers=speakers, n_enroll=3, n_test=4, n_ubm=6,
                           seed=seed)
    print(f"{len(info.speakers)} speakers, {info.n_utterances} utterances, {info.n_trials} trials "
          f"({info.n_target} target); lists in {corpus}")
    timings["corpus"] = time.perf_counter() - t0

    t0 = _step(f"2. start {engines} MPI engines")
    with ipem.MPICluster(n=engines, blas_threads=1) as ctrl:
        print(ctrl, "ranks", ctrl.ranks, "kernels:", ipem.BACKEND)
        timings["cluster start"] = time.perf_counter() - t0

        t0 = _step("3. features on the engines (20 MFCC + deltas + double deltas, VAD, CMVN)")
        refs = pipeline.extract(corpus, feats, controller=ctrl, progress=True)
        print(f"extracted {len(refs)} files, {sum(r.n_frames for r in refs)} speech frames "
              f"-> {feats}")
        timings["features"] = time.perf_counter() - t0

        t0 = _step(f"4. UBM: {components} diagonal Gaussians by splitting; engines read "
                   "their own feature files")
        ubm = pipeline.train_ubm(
            pipeline.feature_files(info.ubm_list, feats, corpus), n_components=components,
            seed=seed, checkpoint=str(out / "ubm.ckpt.npz"), plot=str(out / "convergence.png"),
            out=str(ubm_path), controller=ctrl,
            callbacks=[lambda r: print(pipeline.format_record(r), flush=True)])
        print(f"UBM: {ubm.weights_.size} Gaussians, {ubm.n_iter_} iterations, "
              f"log-likelihood/frame {ubm.lower_bound_:.4f} -> {ubm_path}")
        print(f"convergence plot -> {out / 'convergence.png'}")
        timings["UBM"] = time.perf_counter() - t0

        t0 = _step("5. MAP adaptation of the speaker models (means, r=16), task-parallel")
        adapted = pipeline.adapt(ubm, pipeline.read_enrollment(info.enroll_list, feats, corpus),
                                 models, controller=ctrl, progress=True)
        print(f"adapted {len(adapted)} speaker models -> {models}")
        timings["adapt"] = time.perf_counter() - t0

        t0 = _step("6. scoring the trials (top-5 Gaussians), in parallel")
        trials, _ = pipeline.score(ubm, info.trials_list, models, feats, root=corpus, top_c=5,
                                   out=str(scores_path), controller=ctrl, progress=True)
        print(f"scored {len(trials)} trials -> {scores_path}")
        timings["score"] = time.perf_counter() - t0

    _step("7. results")
    tar, non = pipeline.read_scores(scores_path)
    print(pipeline.format_metrics(pipeline.evaluate(tar, non, source=str(scores_path))))
    plot_det({"ipem GMM-UBM": (tar, non)}, path=str(out / "det.png"),
             title=f"DET: {len(info.speakers)} speakers, {components}-Gaussian UBM")
    print(f"DET curve -> {out / 'det.png'}")
    print("time per step: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    return 0


def main(argv=None):
    """``python -m ipem.demo``: parse ``argv`` and :func:`run`; returns the exit status."""
    p = argparse.ArgumentParser(prog="python -m ipem.demo", description=__doc__.split("\n")[0])
    p.add_argument("--out", default="demo_output")
    p.add_argument("--engines", type=int, default=2)
    p.add_argument("--components", type=int, default=64)
    p.add_argument("--speakers", type=int, default=None, help="default: every installed voice")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from .parallel import EngineError
    try:
        return run(args.out, engines=args.engines, components=args.components,
                   speakers=args.speakers, seed=args.seed)
    except (ValueError, OSError, EngineError) as exc:
        print(f"{p.prog}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
