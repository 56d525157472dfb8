"""Score files: ``ipem calibrate`` (calibration or fusion) and ``ipem evaluate`` (EER, DCF, DET)."""
from __future__ import annotations

from pathlib import Path

from ..speaker.calibration import DEFAULT_PRIOR, LogisticCalibration
from ..speaker.scorefiles import SCORE_FORMATS, read_score_file, split_scores, write_score_file
from ..io.provenance import read_companion
from ..steps import apply_calibration, calibrate, evaluate, format_metrics
from ..steps.chain import check_scores_key, format_chain
from .options import IMAGE, INPUT_FILE, OUTPUT_FILE, Command, UsageError, common_options


def _describe_calibration(cal):
    terms = " + ".join(f"{w:.4g} * s{i + 1}" if cal.n_systems_ > 1 else f"{w:.4g} * s"
                       for i, w in enumerate(cal.coef_))
    return f"llr = {terms} {'-' if cal.intercept_ < 0 else '+'} {abs(cal.intercept_):.4g}"


def allow_mismatch_option(sp):
    """Declare ``--allow-overlap`` of evaluate/calibrate: go on with a key of another trial list."""
    sp.add_argument("--allow-overlap", action="store_true", parameter="allow_overlap",
                    help="go on when the key and the score files are of different trial lists "
                         "(key trials without a score are left out, with a warning)")


def checked_key(args, scores):
    """``args.key`` checked against the score files (:func:`ipem.steps.chain.check_scores_key`).

    Returns the key to read (the file, or the dict of its scored trials when
    ``--allow-overlap`` let a mismatch through) and a summary line ('' without a key).
    """
    if args.key is None:
        return None, ""
    return check_scores_key(scores, args.key, allow_overlap=args.allow_overlap)


def evaluate_options(sp):
    """Declare the options of ``ipem evaluate`` on its sub-parser."""
    sp.add_argument("--scores", required=True, type=INPUT_FILE,
                    help="score file (ipem or Kaldi format)")
    sp.add_argument("--det", default=None, type=IMAGE, help="write the DET curve here (PNG)")
    sp.add_argument("--key", default=None, type=INPUT_FILE,
                    help="key file 'model test target|nontarget': the trials to evaluate and "
                         "their labels (needed for Kaldi's 'model test score' files)")
    sp.add_argument("--calibration", default=None, type=INPUT_FILE,
                    help="apply this calibration (from 'calibrate') to the scores first")
    sp.add_argument("--fuse", action="append", default=None, metavar="SCORES", type=INPUT_FILE,
                    help="further score files fused with --scores by --calibration, in the "
                         "order of 'calibrate --dev-scores'")
    sp.add_argument("--out", default=None, type=OUTPUT_FILE,
                    help="write the (calibrated) scores here")
    sp.add_argument("--out-format", default="ipem", choices=list(SCORE_FORMATS),
                    help="format of --out")
    allow_mismatch_option(sp)
    common_options(sp, cluster=False)


def run_evaluate(args):
    """Run ``ipem evaluate`` once its paths are checked; returns the exit status."""
    from ..speaker.metrics import plot_det
    key, key_summary = checked_key(args, [args.scores, *(args.fuse or [])])
    if args.calibration:
        trials, scores = apply_calibration(
            args.calibration, [args.scores, *(args.fuse or [])], key=key,
            require_labels=True, out=args.out, out_format=args.out_format)
        cal = LogisticCalibration.load(args.calibration)
        print(f"calibrated with {args.calibration}: {_describe_calibration(cal)}")
    else:
        if args.fuse:
            raise UsageError("--fuse needs --calibration (the fusion's weights)")
        trials, scores = read_score_file(args.scores, key, require_labels=True)
        if args.out:
            write_score_file(args.out, trials, scores, args.out_format)
    tar, non = split_scores(trials, scores)
    print(format_metrics(evaluate(tar, non, source=args.scores)))
    record = read_companion(args.scores)
    if record is not None:                  # what the scores came from (ipem.io.provenance)
        print(format_chain(record))
    if key_summary:
        print(f"  key:      {key_summary}")
    if args.out:
        print(f"scores -> {args.out}")
    if args.det:
        plot_det({Path(args.scores).stem: (tar, non)}, path=args.det)
        print(f"DET curve -> {args.det}")
    return 0


EVALUATE = Command("evaluate", evaluate_options, run_evaluate,
                   help="EER, minDCF, actDCF and a DET plot of a score file")


def calibrate_options(sp):
    """Declare the options of ``ipem calibrate`` on its sub-parser."""
    sp.add_argument("--dev-scores", required=True, nargs="+", metavar="SCORES", type=INPUT_FILE,
                    help="development score file(s); several are fused")
    sp.add_argument("--key", default=None, type=INPUT_FILE,
                    help="development key 'model test target|nontarget' (else the labels "
                         "of the score file)")
    sp.add_argument("--prior", type=float, default=DEFAULT_PRIOR, parameter="prior",
                    help="training prior (default: %(default).4f, the effective prior of "
                         "SRE08's operating point)")
    sp.add_argument("--out", required=True, type=OUTPUT_FILE, help="the calibration (JSON)")
    allow_mismatch_option(sp)
    common_options(sp, cluster=False)


def run_calibrate(args):
    """Run ``ipem calibrate`` once its paths are checked; returns the exit status."""
    key, _ = checked_key(args, args.dev_scores)
    cal = calibrate(args.dev_scores, key=key, prior=args.prior, out=args.out)
    what = "fusion of " + str(cal.n_systems_) + " systems" if cal.n_systems_ > 1 \
        else "calibration"
    print(f"{what} on {cal.n_target_} target, {cal.n_nontarget_} non-target trials: "
          f"{_describe_calibration(cal)} (prior {cal.prior:.4g}, cross-entropy "
          f"{cal.objective_:.4f} bits) -> {args.out}")
    return 0


CALIBRATE = Command("calibrate", calibrate_options, run_calibrate,
                    help="train a score calibration (or fusion) on development trials")
