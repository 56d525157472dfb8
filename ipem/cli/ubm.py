"""``ipem train-ubm``: a diagonal UBM by EM with splitting (:func:`ipem.steps.train_ubm`)."""
from __future__ import annotations

from ..steps import format_ubm_record, train_ubm
from ..io.streaming import parse_size
from .options import (CHECKPOINT, IMAGE, INPUT_FILE, OUTPUT_FILE, Command, UsageError,
                      common_options, feature_options, feature_source, typed)


def MEMORY_SIZE(text):  # noqa: N802 - an argparse type, named like the others
    """``--engine-memory``: bytes of a size such as 1G (argparse type)."""
    import argparse
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None

#: Python-only advice in training errors, and what train-ubm and train-ivector say instead.
RESTART_HINTS = {
    "delete the checkpoint (or pass resume=False) to train from the start":
        "delete the checkpoint (or give another --checkpoint) to train from the start",
}


def options(sp):
    """Declare the options of ``ipem train-ubm`` on its sub-parser."""
    feature_options(sp)
    sp.add_argument("--list", action="append", default=None, type=INPUT_FILE,
                    help="utterance list(s) or a Kaldi feats.scp (with --data-dir: lists of "
                         "its utterance ids; default: all of its utterances)")
    sp.add_argument("-K", "--components", type=typed(int, 1), default=64,
                    parameter="n_components",
                    help="Gaussians of the final model (the API's default is 512)")
    sp.add_argument("--init", default="split", choices=["split", "kmeans"], parameter="init",
                    help="grow from one Gaussian by splitting, or start from k-means")
    sp.add_argument("--stage-iter", type=typed(int, 0), default=8, parameter="stage_iter",
                    help="EM iterations at each intermediate size")
    sp.add_argument("--final-iter", type=typed(int, 1), default=20, parameter="final_iter",
                    help="EM iterations at the final size")
    sp.add_argument("--tol", type=typed(float, 0.0), default=1e-3, parameter="tol",
                    help="a stage ends when the log-likelihood gain per frame falls below "
                         "this (the API's default is 1e-4)")
    sp.add_argument("--variance-floor", type=typed(float, 0.0), default=0.1,
                    parameter="variance_floor",
                    help="variance floor, as a fraction of the global variance of each feature")
    sp.add_argument("--checkpoint", default=None, type=CHECKPOINT,
                    help="checkpoint file, written as training goes and resumed from when "
                         "it exists (delete it to start afresh)")
    sp.add_argument("--plot", default=None, type=IMAGE,
                    help="write the convergence plot here (PNG)")
    sp.add_argument("--seed", type=int, default=0, parameter="random_state",
                    help="random seed")
    sp.add_argument("--engine-memory", default=None, type=MEMORY_SIZE, metavar="SIZE",
                    parameter="engine_memory",
                    help="memory of each engine process, e.g. 1G or 512M: what the engine uses "
                         "without frames and the E-step's working memory come off, the frames "
                         "that do not fit in the rest are read from the files block by block "
                         "every iteration (default: all in memory)")
    sp.add_argument("--out", required=True, type=OUTPUT_FILE, help="the UBM (.npz)")
    common_options(sp)


def _print_record(record):
    print(format_ubm_record(record), flush=True)


def run(args):
    """Run ``ipem train-ubm`` once its paths are checked; returns the exit status."""
    source = feature_source(args)
    if not args.list and args.data_dir is None:
        raise UsageError("give --list (utterance lists) or --data-dir (all its utterances)")
    ubm = train_ubm(source.files(args.list), n_components=args.components, init=args.init,
                    stage_iter=args.stage_iter, final_iter=args.final_iter, tol=args.tol,
                    variance_floor=args.variance_floor, seed=args.seed,
                    checkpoint=args.checkpoint, plot=args.plot, out=args.out,
                    controller=args.cluster, callbacks=[] if args.quiet else [_print_record],
                    engine_memory=args.engine_memory)
    print(f"UBM: {ubm.weights_.size} Gaussians, {ubm.n_iter_} iterations, "
          f"log-likelihood/frame {ubm.lower_bound_:.4f} -> {args.out}")
    return 0


TRAIN_UBM = Command(
    "train-ubm", options, run, help="train a diagonal UBM by EM with splitting",
    description="Train a diagonal UBM by EM, growing it by splitting 1 -> 2 -> 4 ... -> K "
                "Gaussians.\nThe defaults suit small corpora and differ from "
                "ipem.UBMTrainer's (K=512, tol=1e-4).",
    hints={
        **RESTART_HINTS,
        "use the same settings, another checkpoint path or resume=False":
            "use the same options, or another --checkpoint",
        "drop them, or set an absolute variance_floor (floor_mode='absolute') or "
        "reg_covar > 0":
            "drop them from the features (--variance-floor is a fraction of each feature's "
            "variance, which is zero here; an absolute floor needs the Python API, "
            "UBMTrainer(floor_mode='absolute'))",
        " or use float64": "",
    })
