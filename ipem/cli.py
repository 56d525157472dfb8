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
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

import numpy as np

from .parallel.controller import EngineError

AUDIO_SUFFIXES = (".wav", ".flac", ".sph", ".ogg")


# ---------------------------------------------------------------------------
# where things run, and how list entries map to feature files
# ---------------------------------------------------------------------------

@contextlib.contextmanager
def open_controller(spec, blas_threads=None):
    """Yield a controller for ``--cluster`` values ``local``, ``local:N``, ``mpi:N``, ``profile:DIR``."""
    import ipem
    spec = spec or "local"
    kind, _, arg = spec.partition(":")
    if kind in ("local", "mpi") and arg and not (arg.isdigit() and int(arg) > 0):
        raise ValueError(f"--cluster {spec!r}: the number of shards/engines must be a "
                         "positive integer")
    if kind == "local":
        yield ipem.LocalController(int(arg) if arg else 1)
    elif kind == "mpi":
        n = int(arg) if arg else 2
        with ipem.MPICluster(n=n, blas_threads=blas_threads) as ctrl:
            yield ctrl
    elif kind == "profile":
        if not arg:
            raise ValueError("--cluster profile:DIR needs the profile directory")
        ctrl = ipem.connect_profile(profile_dir=arg, blas_threads=blas_threads)
        try:
            yield ctrl
        finally:
            ctrl.client.close()
    else:
        raise ValueError(f"--cluster {spec!r}: expected local, local:N, mpi:N or profile:DIR")


def feature_path(entry, features_dir, root=None, fmt="htk"):
    """Feature file of a list entry.

    An entry that already names a feature file is used as it is; an audio
    path (relative to ``root``) maps to ``features_dir/<same path>.<fmt>``.
    """
    p = Path(entry)
    if p.suffix.lower() not in AUDIO_SUFFIXES:
        q = p if p.is_absolute() or root is None else Path(root) / p
        return str(q)
    if root is not None and p.is_absolute():
        try:
            p = p.relative_to(Path(root).resolve())
        except ValueError:
            raise ValueError(f"audio file {entry} is not under the corpus root {root}") from None
    elif p.is_absolute():
        p = p.relative_to(p.anchor)
    return str(Path(features_dir) / p.with_suffix("." + fmt))


def read_list(path):
    """Non-empty lines of a list file not starting with ``#``, split on whitespace."""
    rows = []
    with open(path) as fh:
        for n, line in enumerate(fh, 1):
            line = line.strip()
            if line and not line.startswith("#"):
                rows.append((n, line.split()))
    if not rows:
        raise ValueError(f"{path}: the list is empty")
    return rows


def read_enrollment(path, features_dir, root, fmt):
    """``model_id utt1 [utt2 ...]`` lines -> {model_id: [feature paths]}."""
    out = {}
    for n, fields in read_list(path):
        if len(fields) < 2:
            raise ValueError(f"{path}, line {n}: expected 'model_id utterance...'")
        out.setdefault(fields[0], []).extend(feature_path(u, features_dir, root, fmt)
                                             for u in fields[1:])
    return out


# ---------------------------------------------------------------------------
# steps
# ---------------------------------------------------------------------------

def _extract_one(audio, out, sample_rate, fmt):
    from . import io as features
    from .speaker.frontend import extract_features
    X = extract_features(audio, sample_rate=sample_rate)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    features.write(out, X, fmt)
    return X.shape[0]


def cmd_extract(args, ctrl):
    root = Path(args.root)
    if args.list:
        audio = []
        for lst in args.list:
            for _, fields in read_list(lst):
                audio.extend(f for f in fields if Path(f).suffix.lower() in AUDIO_SUFFIXES)
        audio = sorted(set(audio))
    else:
        audio = sorted(str(p.relative_to(root)) for p in root.rglob("*")
                       if p.suffix.lower() in AUDIO_SUFFIXES)
    if not audio:
        raise ValueError(f"no audio files found under {root}")
    jobs = [(str(root / a), feature_path(a, args.out_dir, root, args.format)) for a in audio]
    frames = ctrl.map_tasks(_extract_task, jobs, args.sample_rate, args.format,
                            progress=not args.quiet, desc="extract")
    print(f"extracted {len(jobs)} files, {sum(frames)} speech frames -> {args.out_dir}")
    return 0


def _extract_task(job, sample_rate, fmt):
    return _extract_one(job[0], job[1], sample_rate, fmt)


def cmd_train_ubm(args, ctrl):
    import ipem
    from .mixture.ubm import UBMTrainer
    files = []
    for lst in args.list:
        if str(lst).endswith(".scp"):
            files.append(lst)
            continue
        for _, fields in read_list(lst):
            files.extend(feature_path(f, args.features, args.root, args.format) for f in fields)
    plot = ipem.LivePlot(title=f"UBM training ({args.components} Gaussians)",
                         path=args.plot, save_every=10) if args.plot else None
    callbacks = [_print_record] + ([plot] if plot else [])
    ubm = UBMTrainer(args.components, init=args.init, stage_iter=args.stage_iter,
                     final_iter=args.final_iter, tol=args.tol, variance_floor=args.variance_floor,
                     checkpoint=args.checkpoint, controller=ctrl, random_state=args.seed,
                     callbacks=callbacks)
    ubm.fit(files[0] if len(files) == 1 and str(files[0]).endswith(".scp") else files)
    ubm.save(args.out)
    if plot:
        plot.close()
    print(f"UBM: {ubm.weights_.size} Gaussians, {ubm.n_iter_} iterations, "
          f"log-likelihood/frame {ubm.lower_bound_:.4f} -> {args.out}")
    return 0


def _print_record(r):
    info = r.info
    frames = "/".join(str(n) for n in info.get("shard_frames", []))
    times = "/".join(f"{t * 1e3:.0f}" for t in info.get("shard_time", []))
    print(f"  iter {r.iteration:3d}  K={r.stage:<4d} loglik/frame {r.objective:9.4f}  "
          f"change {r.change:9.2e}  floored {info.get('n_floored', 0):3d}  "
          f"dead {len(info.get('dead', []))}  engines frames {frames} E-step ms {times}",
          flush=True)


def cmd_adapt(args, ctrl):
    from .speaker.map import adapt_speakers
    from .mixture.ubm import UBMTrainer
    ubm = UBMTrainer.load(args.ubm)
    enrollment = read_enrollment(args.enroll, args.features, args.root, args.format)
    os.makedirs(args.out_dir, exist_ok=True)
    out = adapt_speakers(ubm, enrollment, controller=ctrl, relevance_factor=args.relevance,
                         adapt=args.adapt, out_dir=args.out_dir, progress=not args.quiet)
    print(f"adapted {len(out)} speaker models -> {args.out_dir}")
    return 0


def cmd_score(args, ctrl):
    from .speaker.scoring import read_trials, score_trials, write_scores
    from .mixture.ubm import UBMTrainer
    ubm = UBMTrainer.load(args.ubm)
    trials = read_trials(args.trials)
    models = {}
    for t in trials:
        mid = t[0]
        if mid not in models:
            path = Path(args.models) / f"{mid}.npz"
            if not path.exists():
                raise ValueError(f"{args.trials}: no model file {path} for model id {mid!r}")
            models[mid] = str(path)
    pairs = [(t[0], feature_path(t[1], args.features, args.root, args.format)) for t in trials]
    scores = score_trials(ubm, pairs, models, controller=ctrl,
                          top_c=None if args.top_c == 0 else args.top_c,
                          progress=not args.quiet)
    write_scores(args.out, trials, scores)
    print(f"scored {len(trials)} trials -> {args.out}")
    return 0


def read_scores(path):
    """``model test score label`` lines -> (target scores, non-target scores)."""
    tar, non = [], []
    for n, fields in read_list(path):
        if len(fields) < 4:
            raise ValueError(f"{path}, line {n}: expected 'model test score target|nontarget'")
        try:
            s = float(fields[2])
        except ValueError:
            raise ValueError(f"{path}, line {n}: score {fields[2]!r} is not a number") from None
        label = fields[3].lower()
        if label not in ("target", "nontarget"):
            raise ValueError(f"{path}, line {n}: label {fields[3]!r} is not target/nontarget")
        (tar if label == "target" else non).append(s)
    return np.array(tar), np.array(non)


def evaluate(tar, non):
    """EER, ROCCH-EER, minDCF and actDCF at the SRE 2008 and 2010 operating points."""
    from .speaker import metrics as m
    out = {"n_target": len(tar), "n_nontarget": len(non), "eer": m.compute_eer(tar, non),
           "rocch_eer": m.rocch_eer(tar, non)}
    for name, op in (("sre08", m.SRE2008), ("sre10", m.SRE2010)):
        out[f"min_dcf_{name}"] = m.min_dcf(tar, non, *op)[0]
        out[f"act_dcf_{name}"] = m.act_dcf(tar, non, *op)
    return out


def format_metrics(r):
    return (f"trials: {r['n_target']} target, {r['n_nontarget']} non-target\n"
            f"EER        {100 * r['eer']:6.2f} %   (ROCCH-EER {100 * r['rocch_eer']:.2f} %)\n"
            f"minDCF     {r['min_dcf_sre08']:.4f} (SRE08: P_tar=0.01, C_miss=10, C_fa=1)   "
            f"{r['min_dcf_sre10']:.4f} (SRE10: P_tar=0.001, C_miss=1, C_fa=1)\n"
            f"actDCF     {r['act_dcf_sre08']:.4f} (SRE08)   {r['act_dcf_sre10']:.4f} (SRE10)")


def cmd_evaluate(args, ctrl=None):
    from .speaker.metrics import plot_det
    tar, non = read_scores(args.scores)
    if not len(tar) or not len(non):
        raise ValueError(f"{args.scores}: needs both target and non-target trials")
    r = evaluate(tar, non)
    print(format_metrics(r))
    if args.det:
        plot_det({Path(args.scores).stem: (tar, non)}, path=args.det)
        print(f"DET curve -> {args.det}")
    return 0


# ---------------------------------------------------------------------------
# argument parsing
# ---------------------------------------------------------------------------

def build_parser():
    p = argparse.ArgumentParser(prog="ipem", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, cluster=True):
        if cluster:
            sp.add_argument("--cluster", default="local",
                            help="local[:N] | mpi:N | profile:DIR (default: local)")
        sp.add_argument("--quiet", action="store_true", help="no progress bars")

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
    sp.set_defaults(func=cmd_evaluate, cluster=None)

    sp = sub.add_parser("demo", help="the whole pipeline on a generated corpus")
    sp.add_argument("--out", default="demo_output")
    sp.add_argument("--engines", type=int, default=2)
    sp.add_argument("--components", type=int, default=64)
    sp.set_defaults(func=None, cluster=None)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from .demo import main as demo_main
        return demo_main(["--out", args.out, "--engines", str(args.engines),
                          "--components", str(args.components)])
    try:
        if args.cluster is None:
            return args.func(args)
        with open_controller(args.cluster, blas_threads=1 if args.cluster != "local" else None) \
                as ctrl:
            return args.func(args, ctrl)
    except (ValueError, OSError, EngineError) as exc:
        print(f"ipem {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
