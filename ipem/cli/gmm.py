"""GMM-UBM speaker models: ``ipem adapt``, ``ipem score`` and ``ipem norm``.

``score --backend cosine|plda`` scores i-vectors instead
(:func:`ipem.steps.score_ivectors`).
"""
from __future__ import annotations

from ..speaker.normalization import NORMALIZATIONS
from ..speaker.scorefiles import SCORE_FORMATS
from ..speaker.scoring import SCORING_METHODS
from ..steps import BACKENDS, adapt, normalize, score, score_ivectors
from ..steps.chain import check_scores_key
from .options import (INPUT_DIR, INPUT_FILE, OUTPUT_DIR, OUTPUT_FILE, Command, UsageError,
                      common_options, feature_options, feature_source, typed)


def allow_overlap_option(sp):
    """Declare ``--allow-overlap``: go on when the provenance chain check fails."""
    sp.add_argument("--allow-overlap", action="store_true", parameter="allow_overlap",
                    help="go on when the inputs do not chain (models of another UBM, features "
                         "of another front-end than the UBM's, a UBM, extractor or back-end "
                         "trained on the trials' segments, a --key of "
                         "another trial list than the scores'); the output's provenance record "
                         "keeps it")


def adapt_options(sp):
    """Declare the options of ``ipem adapt`` on its sub-parser."""
    feature_options(sp)
    sp.add_argument("--ubm", required=True, type=INPUT_FILE, help="the UBM (.npz from train-ubm)")
    sp.add_argument("--enroll", default=None, type=INPUT_FILE,
                    help="lines 'model_id utterance...' (with --data-dir: default its spk2utt)")
    sp.add_argument("--relevance", type=typed(float, 0.0, strict=True), default=16.0,
                    parameter="relevance_factor", help="MAP relevance factor")
    sp.add_argument("--adapt", default="m", parameter="adapt",
                    help="what to adapt: any of m (means), w (weights), v (variances)")
    sp.add_argument("--out-dir", required=True, type=OUTPUT_DIR,
                    help="directory of <model_id>.npz")
    allow_overlap_option(sp)
    common_options(sp)


def run_adapt(args):
    """Run ``ipem adapt`` once its paths are checked; returns the exit status."""
    source = feature_source(args)
    if args.enroll is None and args.data_dir is None:
        raise UsageError("give --enroll (an enrollment list) or --data-dir (its speakers)")
    models = adapt(args.ubm, args.enroll, args.out_dir, source=source,
                   relevance_factor=args.relevance, adapt=args.adapt, controller=args.cluster,
                   progress=not args.quiet, allow_overlap=args.allow_overlap)
    print(f"adapted {len(models)} speaker models -> {args.out_dir}")
    return 0


ADAPT = Command("adapt", adapt_options, run_adapt,
                help="MAP-adapt speaker models from an enrollment list")


def score_options(sp):
    """Declare the options of ``ipem score`` on its sub-parser."""
    feature_options(sp)
    sp.add_argument("--backend", default="gmm", choices=["gmm", *BACKENDS],
                    help="gmm: GMM-UBM LLR (--ubm, --models, features); cosine or plda: "
                         "i-vectors (--ivectors, --plda)")
    sp.add_argument("--ubm", default=None, type=INPUT_FILE,
                    help="the UBM (.npz from train-ubm; --backend gmm)")
    sp.add_argument("--models", default=None, type=INPUT_DIR,
                    help="directory of <model_id>.npz (--backend gmm)")
    sp.add_argument("--ivectors", action="append", default=None, type=INPUT_FILE,
                    help="i-vectors of the models and test segments (from extract-ivectors); "
                         "may be repeated")
    sp.add_argument("--plda", default=None, type=INPUT_FILE,
                    help="the back-end from train-plda (needed by plda; cosine scores the "
                         "raw i-vectors without it)")
    sp.add_argument("--trials", required=True, type=INPUT_FILE,
                    help="lines 'model_id test [target|nontarget]'")
    sp.add_argument("--top-c", type=typed(int, 0), default=5, parameter="top_c",
                    help="top-C Gaussians (0: exact)")
    sp.add_argument("--scoring", default="topc", choices=list(SCORING_METHODS),
                    help="average LLR over the top-C Gaussians (--top-c) or all of them, or "
                         "linear scoring (Glembek et al. 2009: mean offsets times the test "
                         "segments' UBM statistics, one matrix product)")
    sp.add_argument("--out", required=True, type=OUTPUT_FILE, help="score file")
    allow_overlap_option(sp)
    common_options(sp)


def run_score(args):
    """Run ``ipem score`` once its paths are checked; returns the exit status."""
    if args.backend != "gmm":
        return _score_ivectors(args)
    if args.ubm is None or args.models is None:
        raise UsageError("--backend gmm needs --ubm and --models")
    source = feature_source(args)
    trials, _ = score(args.ubm, args.trials, args.models, source=source, top_c=args.top_c,
                      scoring=args.scoring, out=args.out, allow_overlap=args.allow_overlap,
                      controller=args.cluster,
                      progress=not args.quiet)
    print(f"scored {len(trials)} trials -> {args.out}")
    return 0


def _score_ivectors(args):
    if not args.ivectors:
        raise UsageError(f"--backend {args.backend} needs --ivectors (from extract-ivectors)")
    if args.backend == "plda" and args.plda is None:
        raise UsageError("--backend plda needs --plda (the back-end from train-plda)")
    trials, _ = score_ivectors(args.ivectors, args.trials, backend=args.backend,
                               model=args.plda, out=args.out, allow_overlap=args.allow_overlap)
    print(f"scored {len(trials)} trials ({args.backend}) -> {args.out}")
    return 0


SCORE = Command("score", score_options, run_score, help="score a NIST-style trial list")


def norm_options(sp):
    """Declare the options of ``ipem norm`` on its sub-parser."""
    feature_options(sp)
    sp.add_argument("--ubm", required=True, type=INPUT_FILE)
    sp.add_argument("--models", required=True, type=INPUT_DIR,
                    help="directory of <model_id>.npz")
    sp.add_argument("--scores", required=True, type=INPUT_FILE,
                    help="raw score file (from 'score')")
    sp.add_argument("--key", default=None, type=INPUT_FILE,
                    help="only the trials of this key file")
    sp.add_argument("--cohort", required=True, type=INPUT_FILE,
                    help="cohort list 'cohort_id utterance...': one cohort member per line")
    sp.add_argument("--cohort-models", default=None, type=INPUT_DIR,
                    help="directory of <cohort_id>.npz ('ipem adapt --enroll COHORT'); "
                         "needed by all methods but z")
    sp.add_argument("--method", default="s", choices=list(NORMALIZATIONS),
                    help="normalisation")
    sp.add_argument("--top-n", type=typed(int, 1), default=200, parameter="top_n",
                    help="cohort members per side for adaptive S-norm (as)")
    sp.add_argument("--top-c", type=typed(int, 0), default=5, parameter="top_c",
                    help="top-C Gaussians (0: exact)")
    sp.add_argument("--out", required=True, type=OUTPUT_FILE, help="normalised score file")
    sp.add_argument("--out-format", default="ipem", choices=list(SCORE_FORMATS),
                    help="format of --out")
    allow_overlap_option(sp)
    common_options(sp)


def run_norm(args):
    """Run ``ipem norm`` once its paths are checked; returns the exit status."""
    if args.method != "z" and not args.cohort_models:
        raise UsageError(f"--method {args.method} needs --cohort-models (a directory of "
                         "<cohort_id>.npz: ipem adapt --enroll COHORT_LIST --out-dir DIR)")
    key = args.key
    if key is not None:     # the key and the raw scores of the same trial list, before any work
        key, _ = check_scores_key(args.scores, key, allow_overlap=args.allow_overlap)
    source = feature_source(args)
    trials, _ = normalize(args.ubm, args.scores, args.cohort, args.models, source=source,
                          method=args.method, cohort_models=args.cohort_models,
                          top_n=args.top_n, key=key, top_c=args.top_c, out=args.out,
                          out_format=args.out_format, allow_overlap=args.allow_overlap,
                          controller=args.cluster,
                          progress=not args.quiet)
    print(f"{args.method}-normalised {len(trials)} trials -> {args.out}")
    return 0


NORM = Command("norm", norm_options, run_norm,
               help="Z/T/ZT/S/AS-norm of a score file with an impostor cohort")
