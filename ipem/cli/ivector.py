"""I-vectors: ``ipem train-ivector``, ``ipem extract-ivectors`` and ``ipem train-plda``.

(``ipem score --backend cosine|plda`` scores them: :mod:`ipem.cli.gmm`.)
"""
from __future__ import annotations

from ..steps import extract_ivectors, format_ivector_record, train_backend, train_ivector
from .options import (CHECKPOINT, IMAGE, INPUT_FILE, OUTPUT_FILE, Command, UsageError,
                      common_options, feature_options, feature_source, typed)
from .ubm import MEMORY_SIZE, RESTART_HINTS


def train_ivector_options(sp):
    """Declare the options of ``ipem train-ivector`` on its sub-parser."""
    feature_options(sp)
    sp.add_argument("--ubm", required=True, type=INPUT_FILE, help="the UBM (.npz from train-ubm)")
    sp.add_argument("--list", action="append", default=None, type=INPUT_FILE,
                    help="utterance list(s): every entry is one utterance")
    sp.add_argument("-R", "--rank", type=typed(int, 1), default=100, parameter="n_components",
                    help="i-vector dimension (rank of T)")
    sp.add_argument("--iter", type=typed(int, 1), default=10, parameter="max_iter",
                    help="EM iterations")
    sp.add_argument("--top-c", type=typed(int, 0), default=0, parameter="top_c",
                    help="top-C posteriors for the statistics (0: all Gaussians)")
    sp.add_argument("--checkpoint", default=None, type=CHECKPOINT,
                    help="checkpoint file, written every iteration and resumed from when it "
                         "exists (delete it to start afresh)")
    sp.add_argument("--plot", default=None, type=IMAGE,
                    help="write the convergence plot here (PNG)")
    sp.add_argument("--seed", type=int, default=0, parameter="random_state",
                    help="random seed of T's initialisation")
    sp.add_argument("--engine-memory", default=None, type=MEMORY_SIZE, metavar="SIZE",
                    parameter="engine_memory",
                    help="memory of each engine process, e.g. 1G or 512M: what the engine uses "
                         "without statistics and the E-step's working memory come off, the "
                         "utterance statistics that do not fit in the rest go to a scratch file "
                         "on the engine's node ($TMPDIR) and are read back block by block every "
                         "iteration (default: all in memory)")
    sp.add_argument("--out", required=True, type=OUTPUT_FILE, help="the extractor (.npz)")
    sp.add_argument("--allow-overlap", action="store_true", parameter="allow_overlap",
                    help="go on with features of another front-end than the UBM's training "
                         "features (feature manifests compared); the extractor's record keeps "
                         "it")
    common_options(sp)


def _print_record(record):
    print(format_ivector_record(record), flush=True)


def run_train_ivector(args):
    """Run ``ipem train-ivector`` once its paths are checked; returns the exit status."""
    source = feature_source(args)
    if not args.list and args.data_dir is None:
        raise UsageError("give --list (utterance lists) or --data-dir")
    utts = source.utterances(args.list)
    tv = train_ivector(args.ubm, utts, rank=args.rank, n_iter=args.iter,
                       top_c=args.top_c or None,     # the option's 0 is the API's None: all
                       seed=args.seed, checkpoint=args.checkpoint, plot=args.plot, out=args.out,
                       controller=args.cluster, callbacks=[] if args.quiet else [_print_record],
                       engine_memory=args.engine_memory, allow_overlap=args.allow_overlap)
    print(f"total variability: rank {tv.n_components}, {len(utts)} utterances, "
          f"{tv.n_iter_} iterations, objective/frame {tv.lower_bound_:.5f} -> {args.out}")
    return 0


TRAIN_IVECTOR = Command(
    "train-ivector", train_ivector_options, run_train_ivector,
    help="train an i-vector extractor (total variability) by EM",
    description="Train the total-variability matrix T by EM on the Baum-Welch statistics of "
                "the listed utterances, which the engines compute from their own feature "
                "files and keep.",
    hints=RESTART_HINTS)


def extract_ivectors_options(sp):
    """Declare the options of ``ipem extract-ivectors`` on its sub-parser."""
    feature_options(sp)
    sp.add_argument("--extractor", required=True, type=INPUT_FILE,
                    help="the extractor (from train-ivector)")
    sp.add_argument("--list", action="append", default=None, type=INPUT_FILE,
                    help="utterance list(s)")
    sp.add_argument("--enroll", default=None, type=INPUT_FILE,
                    help="lines 'model_id utterance...'")
    sp.add_argument("--out", required=True, type=OUTPUT_FILE, help="the i-vector file (.npz)")
    sp.add_argument("--allow-overlap", action="store_true", parameter="allow_overlap",
                    help="go on with features of another front-end than the extractor's UBM's "
                         "(feature manifests compared); the i-vectors' record keeps it")
    common_options(sp)


def run_extract_ivectors(args):
    """Run ``ipem extract-ivectors`` once its paths are checked; returns the exit status."""
    source = feature_source(args)
    if not args.list and args.enroll is None:
        raise UsageError("give --list (utterances: ids are the list entries) and/or --enroll "
                         "(speakers: ids are the model ids, their utterances pooled)")
    utts = {}
    if args.enroll is not None:
        utts.update(source.enrollment(args.enroll))
    if args.list:
        for utt, path in source.utterances(args.list).items():
            if utt in utts:
                raise UsageError(f"id {utt} is both a model id of --enroll and an utterance "
                                 "of --list")
            utts[utt] = path
    vecs = extract_ivectors(args.extractor, utts, out=args.out, controller=args.cluster,
                            progress=not args.quiet, allow_overlap=args.allow_overlap)
    print(f"extracted {len(vecs)} i-vectors -> {args.out}")
    return 0


EXTRACT_IVECTORS = Command(
    "extract-ivectors", extract_ivectors_options, run_extract_ivectors,
    help="i-vectors of utterances and enrolled speakers",
    description="Extract i-vectors, one task per id: the utterances of --list (ids: the list "
                "entries, as trial lists name test segments) and the speakers of --enroll "
                "(ids: the model ids; a speaker's utterances are pooled).")


def train_plda_options(sp):
    """Declare the options of ``ipem train-plda`` on its sub-parser."""
    sp.add_argument("--ivectors", action="append", required=True, type=INPUT_FILE,
                    help="i-vector file(s) (from extract-ivectors)")
    sp.add_argument("--spk2utt", default=None, type=INPUT_FILE,
                    help="lines 'speaker utterance...' (default: an utterance's speaker is "
                         "the name of its parent directory, wav/<speaker>/utt.wav)")
    sp.add_argument("--lda-dim", type=typed(int, -1), default=-1, parameter="lda_dim",
                    help="LDA dimension (0: no LDA; -1: derived from the training set: "
                         "speakers - 1, at most R, with at least R/2 + 1 speakers, else no "
                         "LDA; logged)")
    sp.add_argument("--no-wccn", action="store_true",
                    help="leave out WCCN (default: WCCN when the vectors outnumber the "
                         "speakers by twice the dimension after LDA; logged)")
    sp.add_argument("--iter", type=typed(int, 1), default=10, help="PLDA EM iterations")
    sp.add_argument("--out", required=True, type=OUTPUT_FILE, help="the back-end (.npz)")
    sp.add_argument("--allow-overlap", action="store_true", parameter="allow_overlap",
                    help="train even on i-vectors of two extractors (the back-end's "
                         "provenance record keeps it)")
    common_options(sp, cluster=False)


def run_train_plda(args):
    """Run ``ipem train-plda`` once its paths are checked; returns the exit status."""
    be = train_backend(args.ivectors, args.spk2utt,
                       lda_dim=None if args.lda_dim < 0 else args.lda_dim,
                       wccn=False if args.no_wccn else None, plda_iter=args.iter, out=args.out,
                       allow_overlap=args.allow_overlap)
    lda = "no LDA" if be.lda_ is None else f"LDA to {be.lda_.scalings_.shape[1]} dimensions"
    print(f"back-end: centring, {lda}, {'WCCN, ' if be.wccn_ is not None else ''}length "
          f"normalisation, PLDA (log-likelihood/vector {be.plda_.loglik_history_[0]:.3f} -> "
          f"{be.plda_.loglik_history_[-1]:.3f}) -> {args.out}")
    return 0


TRAIN_PLDA = Command(
    "train-plda", train_plda_options, run_train_plda,
    help="train the i-vector back-end: centring, LDA, WCCN, length normalisation, PLDA",
    description="Train the i-vector back-end on labelled i-vectors: centring, LDA, WCCN, "
                "length normalisation and a two-covariance PLDA trained by EM.")
