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

Every step is the corresponding ``ipem`` command-line step, chained through
files in ``--out``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _step(title):
    print(f"\n=== {title} ===", flush=True)
    return time.perf_counter()


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m ipem.demo", description=__doc__.split("\n")[0])
    p.add_argument("--out", default="demo_output")
    p.add_argument("--engines", type=int, default=2)
    p.add_argument("--components", type=int, default=64)
    p.add_argument("--speakers", type=int, default=None, help="default: every installed voice")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import ipem
    from .cli import build_parser, evaluate, format_metrics, read_scores
    from .speaker.corpus import generate_corpus
    from .speaker.metrics import plot_det

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    # a fresh run: no checkpoint or models of an earlier run with other settings
    import shutil
    (out / "ubm.ckpt.npz").unlink(missing_ok=True)
    shutil.rmtree(out / "models", ignore_errors=True)
    corpus, feats = out / "corpus", out / "features"
    timings = {}

    t0 = _step("1. corpus: MBROLA voices, varied text/rate/pitch, telephone channel, noise")
    info = generate_corpus(corpus, n_speakers=args.speakers, n_enroll=3, n_test=4, n_ubm=6,
                           seed=args.seed)
    print(f"{len(info.speakers)} speakers, {info.n_utterances} utterances, {info.n_trials} trials "
          f"({info.n_target} target); lists in {corpus}")
    timings["corpus"] = time.perf_counter() - t0

    parser = build_parser()

    def run(step_args, ctrl):
        a = parser.parse_args(step_args)
        rc = a.func(a, ctrl)
        if rc:
            raise SystemExit(rc)

    t0 = _step(f"2. start {args.engines} MPI engines")
    with ipem.MPICluster(n=args.engines, blas_threads=1) as ctrl:
        print(ctrl, "ranks", ctrl.ranks, "kernels:", ipem.BACKEND)
        timings["cluster start"] = time.perf_counter() - t0

        t0 = _step("3. features on the engines (20 MFCC + deltas + double deltas, VAD, CMVN)")
        run(["extract", "--root", str(corpus), "--out-dir", str(feats)], ctrl)
        timings["features"] = time.perf_counter() - t0

        t0 = _step(f"4. UBM: {args.components} diagonal Gaussians by splitting; engines read "
                   "their own feature files")
        run(["train-ubm", "--features", str(feats), "--root", str(corpus), "--list",
             str(corpus / "ubm.lst"), "-K", str(args.components), "--out", str(out / "ubm.npz"),
             "--checkpoint", str(out / "ubm.ckpt.npz"), "--plot", str(out / "convergence.png"),
             "--seed", str(args.seed)], ctrl)
        print(f"convergence plot -> {out / 'convergence.png'}")
        timings["UBM"] = time.perf_counter() - t0

        t0 = _step("5. MAP adaptation of the speaker models (means, r=16), task-parallel")
        run(["adapt", "--ubm", str(out / "ubm.npz"), "--enroll", str(corpus / "enroll.lst"),
             "--features", str(feats), "--root", str(corpus), "--out-dir", str(out / "models")],
            ctrl)
        timings["adapt"] = time.perf_counter() - t0

        t0 = _step("6. scoring the trials (top-5 Gaussians), in parallel")
        run(["score", "--ubm", str(out / "ubm.npz"), "--models", str(out / "models"),
             "--trials", str(corpus / "trials.lst"), "--features", str(feats), "--root",
             str(corpus), "--out", str(out / "scores.txt")], ctrl)
        timings["score"] = time.perf_counter() - t0

    _step("7. results")
    tar, non = read_scores(out / "scores.txt")
    metrics = evaluate(tar, non)
    print(format_metrics(metrics))
    plot_det({"ipem GMM-UBM": (tar, non)}, path=str(out / "det.png"),
             title=f"DET: {len(info.speakers)} speakers, {args.components}-Gaussian UBM")
    print(f"DET curve -> {out / 'det.png'}")
    print("time per step: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
