"""``ipem``: GMM-UBM speaker verification in Kaldi-like steps with files in between.

    ipem extract   --root CORPUS --out-dir FEATS [--list LIST ...]
    ipem train-ubm --features FEATS --list CORPUS/ubm.lst --root CORPUS -K 64 --out ubm.npz
    ipem adapt     --ubm ubm.npz --enroll CORPUS/enroll.lst --features FEATS --root CORPUS --out-dir MODELS
    ipem score     --ubm ubm.npz --models MODELS --trials CORPUS/trials.lst --features FEATS --root CORPUS --out scores.txt
    ipem evaluate  --scores scores.txt [--det det.png]
    ipem demo      [--out DIR]

Every step takes ``--cluster`` to choose where it runs: ``local`` (in-process,
the default), ``mpi:N`` (start a local ipyparallel cluster of N MPI engines for
the step) or ``profile:DIR`` (connect to a running ``ipcluster start
--profile-dir=DIR --engines=MPI``).

This module only parses arguments, calls :mod:`ipem.speaker.pipeline` and
prints; an error is one line ``ipem <command>: error: ...`` on stderr and
exit status 2.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .parallel import EngineError, controller_from_spec
from .speaker import pipeline


# ---------------------------------------------------------------------------
# steps: arguments -> pipeline -> printed summary
# ---------------------------------------------------------------------------

def cmd_extract(args, ctrl):
    refs = pipeline.extract(args.root, args.out_dir, lists=args.list, fmt=args.format,
                            sample_rate=args.sample_rate, controller=ctrl,
                            progress=not args.quiet)
    print(f"extracted {len(refs)} files, {sum(r.n_frames for r in refs)} speech frames "
          f"-> {args.out_dir}")
    return 0


def _print_record(record):
    print(pipeline.format_record(record), flush=True)


def cmd_train_ubm(args, ctrl):
    files = pipeline.feature_files(args.list, args.features, args.root, args.format)
    ubm = pipeline.train_ubm(files, n_components=args.components, init=args.init,
                             stage_iter=args.stage_iter, final_iter=args.final_iter,
                             tol=args.tol, variance_floor=args.variance_floor, seed=args.seed,
                             checkpoint=args.checkpoint, plot=args.plot, out=args.out,
                             controller=ctrl, callbacks=[_print_record])
    print(f"UBM: {ubm.weights_.size} Gaussians, {ubm.n_iter_} iterations, "
          f"log-likelihood/frame {ubm.lower_bound_:.4f} -> {args.out}")
    return 0


def cmd_adapt(args, ctrl):
    models = pipeline.adapt(args.ubm, args.enroll, args.out_dir, features_dir=args.features,
                            root=args.root, fmt=args.format, relevance_factor=args.relevance,
                            adapt=args.adapt, controller=ctrl, progress=not args.quiet)
    print(f"adapted {len(models)} speaker models -> {args.out_dir}")
    return 0


def cmd_score(args, ctrl):
    trials, _ = pipeline.score(args.ubm, args.trials, args.models, args.features,
                               root=args.root, fmt=args.format,
                               top_c=None if args.top_c == 0 else args.top_c, out=args.out,
                               controller=ctrl, progress=not args.quiet)
    print(f"scored {len(trials)} trials -> {args.out}")
    return 0


def cmd_evaluate(args, ctrl=None):
    from .speaker.metrics import plot_det
    tar, non = pipeline.read_scores(args.scores)
    print(pipeline.format_metrics(pipeline.evaluate(tar, non, source=args.scores)))
    if args.det:
        plot_det({Path(args.scores).stem: (tar, non)}, path=args.det)
        print(f"DET curve -> {args.det}")
    return 0


def cmd_demo(args, ctrl=None):
    from .demo import run
    return run(args.out, engines=args.engines, components=args.components)


# ---------------------------------------------------------------------------
# argument parsing
# ---------------------------------------------------------------------------

def build_parser():
    """The ``ipem`` argument parser (one subparser per step)."""
    p = argparse.ArgumentParser(prog="ipem", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, cluster=True):
        if cluster:
            sp.add_argument("--cluster", default="local",
                            help="local[:N] | mpi:N | profile:DIR (default: local)")
        sp.add_argument("--quiet", action="store_true",
                        help="no progress bars; log errors only")
        sp.add_argument("-v", "--verbose", action="count", default=0,
                        help="log what the steps do (-vv: debugging detail)")

    def feats(sp):
        sp.add_argument("--features", required=True, help="feature directory (from 'extract')")
        sp.add_argument("--root", default=None, help="corpus directory the lists are relative to")
        sp.add_argument("--format", default="htk", choices=["htk", "npy", "h5"])

    sp = sub.add_parser("extract", help="MFCC+deltas, VAD, CMVN features from audio")
    sp.add_argument("--root", required=True, help="corpus directory holding the audio")
    sp.add_argument("--out-dir", required=True)
    sp.add_argument("--list", action="append", help="only the audio named in these lists")
    sp.add_argument("--format", default="htk", choices=["htk", "npy", "h5"])
    sp.add_argument("--sample-rate", type=int, default=8000)
    common(sp)
    sp.set_defaults(func=cmd_extract)

    sp = sub.add_parser("train-ubm", help="train a diagonal UBM by EM with splitting")
    feats(sp)
    sp.add_argument("--list", action="append", required=True,
                    help="utterance list(s) or a Kaldi feats.scp")
    sp.add_argument("-K", "--components", type=int, default=64)
    sp.add_argument("--init", default="split", choices=["split", "kmeans"])
    sp.add_argument("--stage-iter", type=int, default=8)
    sp.add_argument("--final-iter", type=int, default=20)
    sp.add_argument("--tol", type=float, default=1e-3)
    sp.add_argument("--variance-floor", type=float, default=0.1)
    sp.add_argument("--checkpoint", default=None)
    sp.add_argument("--plot", default=None, help="write the convergence plot here (PNG)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--out", required=True)
    common(sp)
    sp.set_defaults(func=cmd_train_ubm)

    sp = sub.add_parser("adapt", help="MAP-adapt speaker models from an enrollment list")
    feats(sp)
    sp.add_argument("--ubm", required=True)
    sp.add_argument("--enroll", required=True, help="lines 'model_id utterance...'")
    sp.add_argument("--relevance", type=float, default=16.0)
    sp.add_argument("--adapt", default="m", help="any of m, w, v (default: m)")
    sp.add_argument("--out-dir", required=True)
    common(sp)
    sp.set_defaults(func=cmd_adapt)

    sp = sub.add_parser("score", help="score a NIST-style trial list")
    feats(sp)
    sp.add_argument("--ubm", required=True)
    sp.add_argument("--models", required=True, help="directory of <model_id>.npz")
    sp.add_argument("--trials", required=True, help="lines 'model_id test [target|nontarget]'")
    sp.add_argument("--top-c", type=int, default=5, help="top-C Gaussians (0: exact)")
    sp.add_argument("--out", required=True)
    common(sp)
    sp.set_defaults(func=cmd_score)

    sp = sub.add_parser("evaluate", help="EER, minDCF, actDCF and a DET plot of a score file")
    sp.add_argument("--scores", required=True)
    sp.add_argument("--det", default=None, help="write the DET curve here (PNG)")
    common(sp, cluster=False)
    sp.set_defaults(func=cmd_evaluate, cluster=None)

    sp = sub.add_parser("demo", help="the whole pipeline on a generated corpus")
    sp.add_argument("--out", default="demo_output")
    sp.add_argument("--engines", type=int, default=2)
    sp.add_argument("--components", type=int, default=64)
    common(sp, cluster=False)
    sp.set_defaults(func=cmd_demo, cluster=None)
    return p


def _log_handler(args):
    """A stderr handler on the ``ipem`` logger at the level ``--quiet``/``-v`` ask for."""
    level = logging.ERROR if args.quiet else \
        {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.setLevel(level)
    logger = logging.getLogger("ipem")
    logger.addHandler(handler)
    logger.setLevel(level)
    return handler


def main(argv=None):
    """Run ``ipem`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    args = build_parser().parse_args(argv)
    handler = _log_handler(args)
    try:
        if args.cluster is None:
            return args.func(args)
        with controller_from_spec(args.cluster,
                                  blas_threads=1 if args.cluster != "local" else None) as ctrl:
            return args.func(args, ctrl)
    except (ValueError, OSError, EngineError) as exc:
        message = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        print(f"ipem {args.command}: error: {message}", file=sys.stderr)
        return 2
    finally:
        logger = logging.getLogger("ipem")
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)


if __name__ == "__main__":
    sys.exit(main())
