"""ipem: GMM-UBM and i-vector speaker verification in Kaldi-like steps with files in between.

    ipem extract   --root CORPUS --out-dir FEATS [--list LIST ...] [--format htk|npy|h5|kaldi]
    ipem extract   --data-dir DATA --out-dir DATA_FEATS      (Kaldi data dir: wav.scp -> ark/scp)
    ipem train-ubm --features FEATS --list CORPUS/ubm.lst --root CORPUS -K 64 --out ubm.npz
    ipem adapt     --ubm ubm.npz --enroll CORPUS/enroll.lst --features FEATS --root CORPUS --out-dir MODELS
    ipem score     --ubm ubm.npz --models MODELS --trials CORPUS/trials.lst --features FEATS --root CORPUS --out scores.txt
    ipem norm      --ubm ubm.npz --models MODELS --scores scores.txt --cohort cohort.lst --cohort-models CMODELS --features FEATS --root CORPUS --method s --out snorm.txt
    ipem calibrate --dev-scores scores.txt [more.txt ...] [--key dev.key] --out cal.json
    ipem evaluate  --scores scores.txt [--key eval.key] [--calibration cal.json] [--det det.png]
    ipem train-ivector    --ubm ubm.npz --list CORPUS/ubm.lst --features FEATS --root CORPUS -R 100 --out tv.npz
    ipem extract-ivectors --extractor tv.npz --enroll enroll.lst --list test.lst --features FEATS --root CORPUS --out ivecs.npz
    ipem train-plda       --ivectors train_ivecs.npz [--spk2utt LIST] --out backend.npz
    ipem score --backend cosine|plda --ivectors ivecs.npz --plda backend.npz --trials CORPUS/trials.lst --out scores.txt
    ipem demo      [--out DIR]

train-ubm, adapt, score and norm take --data-dir DATA_FEATS (a Kaldi data directory
with feats.scp, utt2spk, spk2utt) instead of --features/--root: lists then name
utterance ids, and adapt's speakers default to spk2utt.  score --scoring linear
scores by one matrix product (Glembek et al. 2009).

Every step takes --cluster to choose where it runs: local (in-process, the
default), local:N (N shards in-process, BLAS pinned like engines), mpi:N (start
a local ipyparallel cluster of N MPI engines for the step) or profile:DIR
(connect to a running 'ipcluster start --profile-dir=DIR --engines=MPI').

Before any work (and before a cluster starts) a step checks the paths it is
given: inputs exist and can be read, outputs can be written (their directory
exists and is writable, and they are not directories); then its lists and
the headers of every feature file it will read.  A step that writes a
directory (extract, adapt) writes it all or nothing.

An error is one line 'ipem <command>: error: ...' on stderr; the exit status
is 2 for a wrong command line, 1 for anything that goes wrong while running.
SIGTERM and SIGINT stop a step cleanly (engines stopped, the last checkpoint
kept): one line on stderr and exit status 128 + the signal number.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
import threading
from pathlib import Path

from . import __version__
from .io.preflight import check_input_dir, check_input_file, check_output_dir, check_output_file
from .parallel.clusters import parse_cluster_spec, raise_terminated
from .speaker import pipeline
from .speaker.calibration import DEFAULT_PRIOR, LogisticCalibration
from .speaker.normalization import NORMALIZATIONS


class UsageError(ValueError):
    """A wrong command line found after parsing (exit status 2, like argparse's)."""


# ---------------------------------------------------------------------------
# steps: arguments -> pipeline -> printed summary
# ---------------------------------------------------------------------------

def _need_features(args):
    if args.features is None and args.data_dir is None:
        raise UsageError("give --features (a feature directory) or --data-dir (a Kaldi data "
                         "directory)")


def cmd_extract(args):
    if (args.root is None) == (args.data_dir is None):
        raise UsageError("give --root (a corpus directory) or --data-dir (a Kaldi data "
                         "directory), one of them")
    refs = pipeline.extract(args.root, args.out_dir, lists=args.list, fmt=args.format,
                            sample_rate=args.sample_rate, controller=args.cluster,
                            progress=not args.quiet, allow_pipes=args.allow_pipes,
                            data_dir=args.data_dir,
                            vad=False if args.vad == "none" else args.vad, norm=args.norm,
                            norm_window=args.norm_window, rasta=args.rasta,
                            low_freq=args.low_freq, high_freq=args.high_freq)
    print(f"extracted {len(refs)} files, {sum(r.n_frames for r in refs)} speech frames "
          f"-> {args.out_dir}")
    return 0


def _print_record(record):
    print(pipeline.format_record(record), flush=True)


def cmd_train_ubm(args):
    _need_features(args)
    if not args.list and args.data_dir is None:
        raise UsageError("give --list (utterance lists) or --data-dir (all its utterances)")
    files = pipeline.feature_files(args.list, args.features, args.root, args.format,
                                   allow_pipes=args.allow_pipes, data_dir=args.data_dir)
    ubm = pipeline.train_ubm(files, n_components=args.components, init=args.init,
                             stage_iter=args.stage_iter, final_iter=args.final_iter,
                             tol=args.tol, variance_floor=args.variance_floor, seed=args.seed,
                             checkpoint=args.checkpoint, plot=args.plot, out=args.out,
                             controller=args.cluster, callbacks=[_print_record])
    print(f"UBM: {ubm.weights_.size} Gaussians, {ubm.n_iter_} iterations, "
          f"log-likelihood/frame {ubm.lower_bound_:.4f} -> {args.out}")
    return 0


def cmd_adapt(args):
    _need_features(args)
    if args.enroll is None and args.data_dir is None:
        raise UsageError("give --enroll (an enrollment list) or --data-dir (its speakers)")
    models = pipeline.adapt(args.ubm, args.enroll, args.out_dir, features_dir=args.features,
                            root=args.root, fmt=args.format, relevance_factor=args.relevance,
                            adapt=args.adapt, controller=args.cluster, progress=not args.quiet,
                            allow_pipes=args.allow_pipes, data_dir=args.data_dir)
    print(f"adapted {len(models)} speaker models -> {args.out_dir}")
    return 0


def cmd_score(args):
    if args.backend != "gmm":
        return _score_ivectors(args)
    if args.ubm is None or args.models is None:
        raise UsageError("--backend gmm needs --ubm and --models")
    _need_features(args)
    trials, _ = pipeline.score(args.ubm, args.trials, args.models, args.features,
                               root=args.root, fmt=args.format,
                               top_c=None if args.top_c == 0 else args.top_c, out=args.out,
                               controller=args.cluster, progress=not args.quiet,
                               allow_pipes=args.allow_pipes, data_dir=args.data_dir,
                               scoring="exact" if args.scoring == "topc" and args.top_c == 0
                               else args.scoring)
    print(f"scored {len(trials)} trials -> {args.out}")
    return 0


def cmd_norm(args):
    if args.method != "z" and not args.cohort_models:
        raise UsageError(f"--method {args.method} needs --cohort-models (a directory of "
                         "<cohort_id>.npz: ipem adapt --enroll COHORT_LIST --out-dir DIR)")
    _need_features(args)
    trials, _ = pipeline.normalize(args.ubm, args.scores, args.cohort, args.models, args.features,
                                   method=args.method, cohort_models=args.cohort_models,
                                   top_n=args.top_n, key=args.key, root=args.root,
                                   fmt=args.format,
                                   top_c=None if args.top_c == 0 else args.top_c,
                                   out=args.out, out_format=args.out_format,
                                   controller=args.cluster,
                                   progress=not args.quiet, allow_pipes=args.allow_pipes,
                                   data_dir=args.data_dir)
    print(f"{args.method}-normalised {len(trials)} trials -> {args.out}")
    return 0


def _describe_calibration(cal):
    terms = " + ".join(f"{w:.4g} * s{i + 1}" if cal.n_systems_ > 1 else f"{w:.4g} * s"
                       for i, w in enumerate(cal.coef_))
    return f"llr = {terms} {'-' if cal.intercept_ < 0 else '+'} {abs(cal.intercept_):.4g}"


def cmd_calibrate(args):
    cal = pipeline.calibrate(args.dev_scores, key=args.key, prior=args.prior, out=args.out)
    what = "fusion of " + str(cal.n_systems_) + " systems" if cal.n_systems_ > 1 \
        else "calibration"
    print(f"{what} on {cal.n_target_} target, {cal.n_nontarget_} non-target trials: "
          f"{_describe_calibration(cal)} (prior {cal.prior:.4g}, cross-entropy "
          f"{cal.objective_:.4f} bits) -> {args.out}")
    return 0


def cmd_evaluate(args):
    from .speaker.metrics import plot_det
    if args.calibration:
        trials, scores = pipeline.apply_calibration(
            args.calibration, [args.scores, *(args.fuse or [])], key=args.key,
            require_labels=True, out=args.out, out_format=args.out_format)
        cal = LogisticCalibration.load(args.calibration)
        print(f"calibrated with {args.calibration}: {_describe_calibration(cal)}")
    else:
        if args.fuse:
            raise UsageError("--fuse needs --calibration (the fusion's weights)")
        trials, scores = pipeline.read_score_file(args.scores, args.key, require_labels=True)
        if args.out:
            pipeline.write_score_file(args.out, trials, scores, args.out_format)
    tar, non = pipeline.split_scores(trials, scores)
    print(pipeline.format_metrics(pipeline.evaluate(tar, non, source=args.scores)))
    if args.out:
        print(f"scores -> {args.out}")
    if args.det:
        plot_det({Path(args.scores).stem: (tar, non)}, path=args.det)
        print(f"DET curve -> {args.det}")
    return 0


def _ivector_pipeline():
    from .ivector import pipeline as ivector_pipeline
    return ivector_pipeline


def cmd_train_ivector(args):
    _need_features(args)
    if not args.list and args.data_dir is None:
        raise UsageError("give --list (utterance lists) or --data-dir")
    ivp = _ivector_pipeline()
    utts = ivp.read_utterances(args.list, args.features, args.root, args.format,
                               data_dir=args.data_dir, allow_pipes=args.allow_pipes)
    tv = ivp.train_ivector(args.ubm, utts, rank=args.rank, n_iter=args.iter,
                           top_c=None if args.top_c == 0 else args.top_c, seed=args.seed,
                           checkpoint=args.checkpoint, plot=args.plot, out=args.out,
                           controller=args.cluster,
                           callbacks=[lambda r: print(ivp.format_record(r), flush=True)])
    print(f"total variability: rank {tv.n_components}, {len(utts)} utterances, "
          f"{tv.n_iter_} iterations, objective/frame {tv.lower_bound_:.5f} -> {args.out}")
    return 0


def cmd_extract_ivectors(args):
    _need_features(args)
    if not args.list and args.enroll is None:
        raise UsageError("give --list (utterances: ids are the list entries) and/or --enroll "
                         "(speakers: ids are the model ids, their utterances pooled)")
    ivp = _ivector_pipeline()
    utts = {}
    if args.enroll is not None:
        utts.update(ivp.enrollment(args.enroll, args.features, args.root, args.format,
                                   data_dir=args.data_dir, allow_pipes=args.allow_pipes))
    if args.list:
        for utt, path in ivp.read_utterances(args.list, args.features, args.root, args.format,
                                             data_dir=args.data_dir,
                                             allow_pipes=args.allow_pipes).items():
            if utt in utts:
                raise UsageError(f"id {utt} is both a model id of --enroll and an utterance "
                                 "of --list")
            utts[utt] = path
    vecs = ivp.extract(args.extractor, utts, out=args.out, controller=args.cluster,
                       progress=not args.quiet)
    print(f"extracted {len(vecs)} i-vectors -> {args.out}")
    return 0


def cmd_train_plda(args):
    be = _ivector_pipeline().train_backend(
        args.ivectors, args.spk2utt, lda_dim=None if args.lda_dim < 0 else args.lda_dim,
        wccn=not args.no_wccn, plda_iter=args.iter, out=args.out)
    lda = "no LDA" if be.lda_ is None else f"LDA to {be.lda_.scalings_.shape[1]} dimensions"
    print(f"back-end: centring, {lda}, {'WCCN, ' if be.wccn_ is not None else ''}length "
          f"normalisation, PLDA (log-likelihood/vector {be.plda_.loglik_history_[0]:.3f} -> "
          f"{be.plda_.loglik_history_[-1]:.3f}) -> {args.out}")
    return 0


def _score_ivectors(args):
    if not args.ivectors:
        raise UsageError(f"--backend {args.backend} needs --ivectors (from extract-ivectors)")
    if args.backend == "plda" and args.plda is None:
        raise UsageError("--backend plda needs --plda (the back-end from train-plda)")
    trials, _ = _ivector_pipeline().score(args.ivectors, args.trials, backend=args.backend,
                                          model=args.plda, out=args.out)
    print(f"scored {len(trials)} trials ({args.backend}) -> {args.out}")
    return 0


def cmd_demo(args):
    from .demo import run
    return run(args.out, engines=args.engines, components=args.components,
               speakers=args.speakers, seed=args.seed)


# ---------------------------------------------------------------------------
# argument parsing
# ---------------------------------------------------------------------------

class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown on every option; descriptions kept as written."""


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)


def _typed(kind, low, strict=False):
    """An argparse type: ``kind`` at least ``low`` (above it with ``strict``)."""
    def convert(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a{'n integer' if kind is int else ' number'}") from None
        if value < low or (strict and value == low) or value != value:
            raise argparse.ArgumentTypeError(
                f"{text!r} must be {'above' if strict else 'at least'} {low}")
        return value
    convert.__name__ = kind.__name__
    return convert


def build_parser():
    """The ``ipem`` argument parser (one subparser per step)."""
    p = _Parser(prog="ipem", description=__doc__)
    p.add_argument("--version", action="version", version=f"ipem {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser,
                           metavar="COMMAND")

    def common(sp, cluster=True):
        if cluster:
            sp.add_argument("--cluster", default="local",
                            help="where the step runs: local, local:N, mpi:N or profile:DIR")
            sp.add_argument("--allow-pipes", action="store_true",
                            help="run shell commands named in lists and scp files (Kaldi pipes "
                                 "such as 'gunzip -c feats.ark.gz |'); they run through "
                                 "/bin/sh with your permissions, so use this only with lists "
                                 "you wrote or trust; by default such entries are refused")
        sp.add_argument("--quiet", action="store_true",
                        help="no progress bars; log errors only")
        sp.add_argument("-v", "--verbose", action="count", default=0,
                        help="log what the steps do (-vv: debugging detail)")

    def feats(sp):
        sp.add_argument("--features", default=None,
                        help="feature directory (from 'extract'); this or --data-dir")
        sp.add_argument("--data-dir", default=None,
                        help="Kaldi data directory (feats.scp, utt2spk, spk2utt): lists and "
                             "trials name its utterance ids")
        sp.add_argument("--root", default=None, help="corpus directory the lists are relative to")
        sp.add_argument("--format", default="htk", choices=["htk", "npy", "h5", "kaldi"],
                        help="feature file format (kaldi: --features holds feats.scp)")

    sp = sub.add_parser("extract", help="MFCC+deltas, VAD, CMVN features from audio",
                        description="Extract features from the audio under --root.")
    sp.add_argument("--root", default=None,
                    help="corpus directory holding the audio; this or --data-dir")
    sp.add_argument("--data-dir", default=None,
                    help="Kaldi data directory whose wav.scp names the audio; --out-dir "
                         "becomes a data directory (feats.scp, Kaldi archives, utt2spk and "
                         "spk2utt copied)")
    sp.add_argument("--out-dir", required=True,
                    help="feature directory; files mirror the audio paths under --root")
    sp.add_argument("--list", action="append", help="only the audio named in these lists")
    sp.add_argument("--format", default=None, choices=["htk", "npy", "h5", "kaldi"],
                    help="feature file format (default: kaldi with --data-dir, htk otherwise); "
                         "kaldi writes feats.<n>.ark and feats.scp")
    sp.add_argument("--sample-rate", type=_typed(int, 1), default=8000,
                    help="audio is resampled to this rate (Hz)")
    sp.add_argument("--vad", default="gmm", choices=["gmm", "kaldi", "percentile", "none"],
                    help="voice activity detection: a 3-Gaussian mixture on frame log-energy "
                         "(adapts to the noise level), Kaldi's compute-vad rule, the earlier "
                         "percentile rule, or none (default: gmm)")
    sp.add_argument("--norm", default="cmvn",
                    choices=["cmvn", "cmn", "sliding_cmvn", "sliding_cmn", "warp", "none"],
                    help="feature normalisation of the speech frames: per utterance, over a "
                         "sliding window, or feature warping (default: cmvn)")
    sp.add_argument("--norm-window", type=_typed(int, 2), default=300,
                    help="window of the sliding normalisations and of warping, in frames "
                         "(default: 300 = 3 s)")
    sp.add_argument("--rasta", action="store_true",
                    help="RASTA-filter the static cepstra")
    sp.add_argument("--low-freq", type=_typed(float, 0.0), default=None,
                    help="low edge of the mel filterbank in Hz (default: 300 at 8 kHz, "
                         "0 above)")
    sp.add_argument("--high-freq", type=_typed(float, 0.0, strict=True), default=None,
                    help="high edge of the mel filterbank in Hz (default: 3400 at 8 kHz, "
                         "Nyquist above)")
    common(sp)
    sp.set_defaults(func=cmd_extract)

    sp = sub.add_parser("train-ubm", help="train a diagonal UBM by EM with splitting",
                        description="Train a diagonal UBM by EM, growing it by splitting "
                                    "1 -> 2 -> 4 ... -> K Gaussians.\nThe defaults suit "
                                    "small corpora and differ from ipem.UBMTrainer's (K=512, "
                                    "tol=1e-4).")
    feats(sp)
    sp.add_argument("--list", action="append", default=None,
                    help="utterance list(s) or a Kaldi feats.scp (with --data-dir: lists of "
                         "its utterance ids; default: all of its utterances)")
    sp.add_argument("-K", "--components", type=_typed(int, 1), default=64,
                    help="Gaussians of the final model (the API's default is 512)")
    sp.add_argument("--init", default="split", choices=["split", "kmeans"],
                    help="grow from one Gaussian by splitting, or start from k-means")
    sp.add_argument("--stage-iter", type=_typed(int, 0), default=8,
                    help="EM iterations at each intermediate size")
    sp.add_argument("--final-iter", type=_typed(int, 1), default=20,
                    help="EM iterations at the final size")
    sp.add_argument("--tol", type=_typed(float, 0.0), default=1e-3,
                    help="a stage ends when the log-likelihood gain per frame falls below "
                         "this (the API's default is 1e-4)")
    sp.add_argument("--variance-floor", type=_typed(float, 0.0), default=0.1,
                    help="variance floor, as a fraction of the global variance of each feature")
    sp.add_argument("--checkpoint", default=None,
                    help="checkpoint file, written as training goes and resumed from when "
                         "it exists (delete it to start afresh)")
    sp.add_argument("--plot", default=None, help="write the convergence plot here (PNG)")
    sp.add_argument("--seed", type=int, default=0, help="random seed")
    sp.add_argument("--out", required=True, help="the UBM (.npz)")
    common(sp)
    sp.set_defaults(func=cmd_train_ubm)

    sp = sub.add_parser("adapt", help="MAP-adapt speaker models from an enrollment list")
    feats(sp)
    sp.add_argument("--ubm", required=True, help="the UBM (.npz from train-ubm)")
    sp.add_argument("--enroll", default=None,
                    help="lines 'model_id utterance...' (with --data-dir: default its spk2utt)")
    sp.add_argument("--relevance", type=_typed(float, 0.0, strict=True), default=16.0,
                    help="MAP relevance factor")
    sp.add_argument("--adapt", default="m",
                    help="what to adapt: any of m (means), w (weights), v (variances)")
    sp.add_argument("--out-dir", required=True, help="directory of <model_id>.npz")
    common(sp)
    sp.set_defaults(func=cmd_adapt)

    sp = sub.add_parser("score", help="score a NIST-style trial list")
    feats(sp)
    sp.add_argument("--backend", default="gmm", choices=["gmm", "cosine", "plda"],
                    help="gmm: GMM-UBM LLR (--ubm, --models, features); cosine or plda: "
                         "i-vectors (--ivectors, --plda)")
    sp.add_argument("--ubm", default=None, help="the UBM (.npz from train-ubm; --backend gmm)")
    sp.add_argument("--models", default=None,
                    help="directory of <model_id>.npz (--backend gmm)")
    sp.add_argument("--ivectors", action="append", default=None,
                    help="i-vectors of the models and test segments (from extract-ivectors); "
                         "may be repeated")
    sp.add_argument("--plda", default=None,
                    help="the back-end from train-plda (needed by plda; cosine scores the "
                         "raw i-vectors without it)")
    sp.add_argument("--trials", required=True, help="lines 'model_id test [target|nontarget]'")
    sp.add_argument("--top-c", type=_typed(int, 0), default=5,
                    help="top-C Gaussians (0: exact)")
    sp.add_argument("--scoring", default="topc", choices=["topc", "exact", "linear"],
                    help="average LLR over the top-C Gaussians (--top-c) or all of them, or "
                         "linear scoring (Glembek et al. 2009: mean offsets times the test "
                         "segments' UBM statistics, one matrix product)")
    sp.add_argument("--out", required=True, help="score file")
    common(sp)
    sp.set_defaults(func=cmd_score)

    sp = sub.add_parser("train-ivector", help="train an i-vector extractor (total "
                                              "variability) by EM",
                        description="Train the total-variability matrix T by EM on the "
                                    "Baum-Welch statistics of the listed utterances, which the "
                                    "engines compute from their own feature files and keep.")
    feats(sp)
    sp.add_argument("--ubm", required=True, help="the UBM (.npz from train-ubm)")
    sp.add_argument("--list", action="append", default=None,
                    help="utterance list(s): every entry is one utterance")
    sp.add_argument("-R", "--rank", type=_typed(int, 1), default=100,
                    help="i-vector dimension (rank of T)")
    sp.add_argument("--iter", type=_typed(int, 1), default=10, help="EM iterations")
    sp.add_argument("--top-c", type=_typed(int, 0), default=0,
                    help="top-C posteriors for the statistics (0: all Gaussians)")
    sp.add_argument("--checkpoint", default=None,
                    help="checkpoint file, written every iteration and resumed from when it "
                         "exists (delete it to start afresh)")
    sp.add_argument("--plot", default=None, help="write the convergence plot here (PNG)")
    sp.add_argument("--seed", type=int, default=0, help="random seed of T's initialisation")
    sp.add_argument("--out", required=True, help="the extractor (.npz)")
    common(sp)
    sp.set_defaults(func=cmd_train_ivector)

    sp = sub.add_parser("extract-ivectors", help="i-vectors of utterances and enrolled speakers",
                        description="Extract i-vectors, one task per id: the utterances of "
                                    "--list (ids: the list entries, as trial lists name test "
                                    "segments) and the speakers of --enroll (ids: the model "
                                    "ids; a speaker's utterances are pooled).")
    feats(sp)
    sp.add_argument("--extractor", required=True, help="the extractor (from train-ivector)")
    sp.add_argument("--list", action="append", default=None, help="utterance list(s)")
    sp.add_argument("--enroll", default=None, help="lines 'model_id utterance...'")
    sp.add_argument("--out", required=True, help="the i-vector file (.npz)")
    common(sp)
    sp.set_defaults(func=cmd_extract_ivectors)

    sp = sub.add_parser("train-plda", help="train the i-vector back-end: centring, LDA, WCCN, "
                                           "length normalisation, PLDA",
                        description="Train the i-vector back-end on labelled i-vectors: "
                                    "centring, LDA, WCCN, length normalisation and a "
                                    "two-covariance PLDA trained by EM.")
    sp.add_argument("--ivectors", action="append", required=True,
                    help="i-vector file(s) (from extract-ivectors)")
    sp.add_argument("--spk2utt", default=None,
                    help="lines 'speaker utterance...' (default: an utterance's speaker is "
                         "the name of its parent directory, wav/<speaker>/utt.wav)")
    sp.add_argument("--lda-dim", type=_typed(int, -1), default=-1,
                    help="LDA dimension (-1: speakers - 1; 0: no LDA)")
    sp.add_argument("--no-wccn", action="store_true", help="leave out WCCN")
    sp.add_argument("--iter", type=_typed(int, 1), default=10, help="PLDA EM iterations")
    sp.add_argument("--out", required=True, help="the back-end (.npz)")
    common(sp, cluster=False)
    sp.set_defaults(func=cmd_train_plda, cluster=None)

    sp = sub.add_parser("evaluate", help="EER, minDCF, actDCF and a DET plot of a score file")
    sp.add_argument("--scores", required=True, help="score file (ipem or Kaldi format)")
    sp.add_argument("--det", default=None, help="write the DET curve here (PNG)")
    sp.add_argument("--key", default=None,
                    help="key file 'model test target|nontarget': the trials to evaluate and "
                         "their labels (needed for Kaldi's 'model test score' files)")
    sp.add_argument("--calibration", default=None,
                    help="apply this calibration (from 'calibrate') to the scores first")
    sp.add_argument("--fuse", action="append", default=None, metavar="SCORES",
                    help="further score files fused with --scores by --calibration, in the "
                         "order of 'calibrate --dev-scores'")
    sp.add_argument("--out", default=None, help="write the (calibrated) scores here")
    sp.add_argument("--out-format", default="ipem", choices=list(pipeline.SCORE_FORMATS),
                    help="format of --out")
    common(sp, cluster=False)
    sp.set_defaults(func=cmd_evaluate, cluster=None)

    sp = sub.add_parser("calibrate", help="train a score calibration (or fusion) on "
                                          "development trials")
    sp.add_argument("--dev-scores", required=True, nargs="+", metavar="SCORES",
                    help="development score file(s); several are fused")
    sp.add_argument("--key", default=None,
                    help="development key 'model test target|nontarget' (else the labels "
                         "of the score file)")
    sp.add_argument("--prior", type=float, default=DEFAULT_PRIOR,
                    help="training prior (default: %(default).4f, the effective prior of "
                         "SRE08's operating point)")
    sp.add_argument("--out", required=True, help="the calibration (JSON)")
    common(sp, cluster=False)
    sp.set_defaults(func=cmd_calibrate, cluster=None)

    sp = sub.add_parser("norm", help="Z/T/ZT/S/AS-norm of a score file with an impostor cohort")
    feats(sp)
    sp.add_argument("--ubm", required=True)
    sp.add_argument("--models", required=True, help="directory of <model_id>.npz")
    sp.add_argument("--scores", required=True, help="raw score file (from 'score')")
    sp.add_argument("--key", default=None, help="only the trials of this key file")
    sp.add_argument("--cohort", required=True,
                    help="cohort list 'cohort_id utterance...': one cohort member per line")
    sp.add_argument("--cohort-models", default=None,
                    help="directory of <cohort_id>.npz ('ipem adapt --enroll COHORT'); "
                         "needed by all methods but z")
    sp.add_argument("--method", default="s", choices=list(NORMALIZATIONS),
                    help="normalisation")
    sp.add_argument("--top-n", type=_typed(int, 1), default=200,
                    help="cohort members per side for adaptive S-norm (as)")
    sp.add_argument("--top-c", type=_typed(int, 0), default=5,
                    help="top-C Gaussians (0: exact)")
    sp.add_argument("--out", required=True, help="normalised score file")
    sp.add_argument("--out-format", default="ipem", choices=list(pipeline.SCORE_FORMATS),
                    help="format of --out")
    common(sp)
    sp.set_defaults(func=cmd_norm)

    sp = sub.add_parser("demo", help="the whole pipeline on a generated corpus")
    sp.add_argument("--out", default="demo_output", help="directory of everything it writes")
    sp.add_argument("--engines", type=_typed(int, 1), default=2, help="MPI engines to start")
    sp.add_argument("--components", type=_typed(int, 1), default=64, help="UBM Gaussians")
    sp.add_argument("--speakers", type=_typed(int, 2), default=None,
                    help="speakers in the generated corpus (default: every available voice)")
    sp.add_argument("--seed", type=int, default=0, help="random seed of corpus and training")
    common(sp, cluster=False)
    sp.set_defaults(func=cmd_demo, cluster=None)
    return p


# ---------------------------------------------------------------------------
# checks before any work, and messages in the command's terms
# ---------------------------------------------------------------------------

#: Options (argparse dests) naming files and directories a step reads or writes.
_INPUT_FILES = ("ubm", "enroll", "trials", "scores", "cohort", "key", "calibration", "list",
                "dev_scores", "fuse", "extractor", "ivectors", "plda", "spk2utt")
_INPUT_DIRS = ("root", "features", "models", "cohort_models", "data_dir")
_OUTPUT_FILES = ("out", "checkpoint", "plot", "det")
_OUTPUT_DIRS = ("out_dir",)


def _option(dest):
    return "--" + dest.replace("_", "-")


def _preflight(args):
    """Check the paths on the command line before any work: one line naming the option."""
    if args.command == "demo":          # its --out is a directory it makes
        return
    for dest in _INPUT_FILES + _INPUT_DIRS + _OUTPUT_FILES + _OUTPUT_DIRS:
        value = getattr(args, dest, None)
        for path in (value if isinstance(value, list) else [value]):
            if path is None:
                continue
            if dest in _INPUT_FILES:
                check_input_file(path, _option(dest))
            elif dest in _INPUT_DIRS:
                check_input_dir(path, _option(dest))
            elif dest in _OUTPUT_DIRS:
                check_output_dir(path, _option(dest))
            else:
                check_output_file(path, _option(dest))
                if dest == "checkpoint" and os.path.exists(path):
                    check_input_file(path, _option(dest))   # resumed from
                if dest in ("plot", "det"):
                    from .plotting import image_format
                    try:
                        image_format(path)
                    except ValueError as exc:
                        raise ValueError(f"{_option(dest)} {exc}") from None


#: Advice in library messages that names Python parameters, and what the command offers
#: instead: (command or None for all, the library's words, the command's words).
_CLI_ADVICE = [
    ("train-ivector", "delete the checkpoint (or pass resume=False) to train from the start",
     "delete the checkpoint (or give another --checkpoint) to train from the start"),
    ("train-ubm", "delete the checkpoint (or pass resume=False) to train from the start",
     "delete the checkpoint (or give another --checkpoint) to train from the start"),
    ("train-ubm", "use the same settings, another checkpoint path or resume=False",
     "use the same options, or another --checkpoint"),
    ("train-ubm", "drop them, or set an absolute variance_floor (floor_mode='absolute') or "
     "reg_covar > 0", "drop them from the features (--variance-floor is a fraction of each "
     "feature's variance, which is zero here; an absolute floor needs the Python API, "
     "UBMTrainer(floor_mode='absolute'))"),
    ("train-ubm", " or use float64", ""),
    (None, "; Kaldi archives via .scp); pass fmt=",
     "; Kaldi archives via .scp): give the file one of these extensions"),
]
#: Python parameters that messages name (``name=value`` or ``name must ...``), and the
#: options of each command that set them.
_PARAMETER_OPTIONS = {
    "train-ubm": {"random_state": "--seed", "n_components": "-K", "stage_iter": "--stage-iter",
                  "final_iter": "--final-iter", "tol": "--tol", "init": "--init",
                  "variance_floor": "--variance-floor"},
    "adapt": {"relevance_factor": "--relevance", "adapt": "--adapt"},
    "score": {"top_c": "--top-c"},
    "norm": {"top_c": "--top-c", "top_n": "--top-n"},
    "calibrate": {"prior": "--prior"},
    "train-ivector": {"random_state": "--seed", "n_components": "--rank", "max_iter": "--iter",
                      "top_c": "--top-c"},
    "train-plda": {"lda_dim": "--lda-dim"},
}


def _cli_wording(command, message):
    """``message`` with advice about Python parameters turned into the command's options."""
    for cmd, python, cli in _CLI_ADVICE:
        if cmd in (None, command):
            message = message.replace(python, cli)
    options = _PARAMETER_OPTIONS.get(command)
    if options:
        message = re.sub(r"\b(" + "|".join(options) + r")(=| must\b)",
                         lambda m: options[m.group(1)] + (" " if m.group(2) == "=" else
                                                          m.group(2)), message)
    return message


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
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.cluster is not None:
        try:
            parse_cluster_spec(args.cluster)
        except ValueError as exc:
            print(f"ipem {args.command}: error: {exc}", file=sys.stderr)
            return 2
    handler = _log_handler(args)
    # SIGTERM (a batch system's time limit) unwinds like Ctrl-C: clusters are stopped,
    # temporary files removed, the last checkpoint kept
    # (SIGINT too: a library or the parent process may have replaced Python's own handler)
    old_term = old_int = None
    if threading.current_thread() is threading.main_thread():
        old_term = signal.signal(signal.SIGTERM, raise_terminated)
        old_int = signal.signal(signal.SIGINT, raise_terminated)
    try:
        _preflight(args)
        return args.func(args)      # a step starts its cluster once its checks have passed
    except (ValueError, OSError, ArithmeticError, MemoryError, RuntimeError,
            ImportError) as exc:
        message = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        if isinstance(exc, MemoryError):
            message = f"out of memory ({message or type(exc).__name__})"
        message = _cli_wording(args.command, message)
        print(f"ipem {args.command}: error: {message}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        kept = getattr(args, "checkpoint", None)
        kept = f"; the checkpoint {kept} holds the last completed iteration" if kept and \
            os.path.exists(kept) else ""
        print(f"ipem {args.command}: stopped by {signal.Signals(signum).name}{kept}",
              file=sys.stderr)
        return 128 + int(signum)
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
        if old_int is not None:
            signal.signal(signal.SIGINT, old_int)
        logger = logging.getLogger("ipem")
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)


if __name__ == "__main__":
    sys.exit(main())
