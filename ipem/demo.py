"""The README's main job: GMM-UBM speaker verification end to end on 2 MPI engines.

    python -m ipem.demo [--out demo_output] [--engines 2] [--components 64]

1. generate a multi-speaker corpus from MBROLA voices (real recorded diphones)
   with varied text, rate, pitch and telephone-channel effects (6 UBM, 3
   enrolment and 8 test utterances per speaker);
2. start a local ipyparallel cluster with MPI engines;
3. extract features on the engines (MFCC + deltas, VAD, CMVN -> HTK files);
4. train the UBM from the feature files, read by the engines themselves,
   printing the convergence record of every iteration and writing its plot;
5. MAP-adapt the speaker models (task-parallel over engines);
6. score the trials (top-5 Gaussian selection);
7. S-norm the scores with an impostor cohort of speakers kept out of the
   trials (cohort scoring task-parallel over engines);
8. i-vectors: a total-variability matrix (rank 20) trained by EM on the
   engines, which compute and keep the UBM-list utterances' Baum-Welch
   statistics; i-vectors of the models and test segments extracted
   task-parallel; a centring/LDA/WCCN/length-norm/PLDA back-end trained on the
   UBM-list i-vectors; cosine and PLDA scores of the same trials;
9. calibrate every system's scores by logistic regression trained on the
   development half of the trials (the first half of every speaker's test
   segments) and apply it to the evaluation half;
10. print EER, minDCF, actDCF, Cllr and minCllr of GMM-UBM (raw, S-norm) and
    i-vectors (cosine, PLDA) side by side and write the DET curves.

Every step is a function of :mod:`ipem.steps` (the ones the ``ipem`` command
runs), chained through files in ``--out``.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from .io.atomic import write_text_atomic


def _step(title):
    print(f"\n=== {title} ===", flush=True)
    return time.perf_counter()


def split_lists(info, out):
    """The demo's lists: trial speakers, an impostor cohort, development and evaluation keys.

    Every fourth speaker of the corpus (at least 2) is held out of the trials
    as the impostor cohort; each of its utterances (UBM, enrolment and test)
    is one cohort member.  The trials are the other speakers' models against
    their test segments; the first half of each speaker's test segments makes
    the development key, the rest the evaluation key.

    Parameters
    ----------
    info : ipem.synth.CorpusInfo
    out : pathlib.Path
        Directory the lists are written to.

    Returns
    -------
    dict
        Paths ``enroll``, ``trials``, ``cohort``, ``dev_key``, ``eval_key``, ``tests``
        (the trials' test segments, one per line)
        and the counts ``n_speakers``, ``n_cohort_speakers``, ``n_cohort``
        (members), ``n_dev``, ``n_eval`` (trials).
    """
    from .io import read_list
    from .speaker.scorefiles import read_trials

    cohort_spk = set(info.speakers[3::4])
    trials = read_trials(info.trials_list)
    speaker_of = {t.test: t.model for t in trials if t.label == "target"}
    tests = {}                  # speaker -> its test segments, in list order
    for t in trials:
        segs = tests.setdefault(speaker_of[t.test], [])
        if t.test not in segs:
            segs.append(t.test)
    dev_tests = {t for segs in tests.values() for t in segs[: len(segs) // 2]}
    kept = [t for t in trials
            if t.model not in cohort_spk and speaker_of[t.test] not in cohort_spk]
    enroll = [f for _, f in read_list(info.enroll_list)]
    members = [u for _, f in read_list(info.ubm_list, allow_empty=True) for u in f
               if Path(u).parent.name in cohort_spk]
    members += [u for f in enroll if f[0] in cohort_spk for u in f[1:]]
    members += [u for spk in info.speakers if spk in cohort_spk for u in tests[spk]]
    paths = {name: out / name for name in ("enroll.lst", "trials.lst", "cohort.lst", "dev.key",
                                           "eval.key", "tests.lst")}
    write_text_atomic(paths["enroll.lst"], "".join(" ".join(f) + "\n" for f in enroll
                                                   if f[0] not in cohort_spk))
    write_text_atomic(paths["trials.lst"], "".join(" ".join(t) + "\n" for t in kept))
    write_text_atomic(paths["tests.lst"], "".join(f"{t}\n" for t in dict.fromkeys(
        t.test for t in kept)))
    write_text_atomic(paths["cohort.lst"], "".join(f"{Path(u).stem} {u}\n" for u in members))
    write_text_atomic(paths["dev.key"], "".join(" ".join(t) + "\n" for t in kept
                                                if t.test in dev_tests))
    write_text_atomic(paths["eval.key"], "".join(" ".join(t) + "\n" for t in kept
                                                 if t.test not in dev_tests))
    n_dev = sum(t.test in dev_tests for t in kept)
    return {"enroll": paths["enroll.lst"], "trials": paths["trials.lst"],
            "cohort": paths["cohort.lst"], "dev_key": paths["dev.key"],
            "eval_key": paths["eval.key"], "tests": paths["tests.lst"],
            "n_speakers": len(info.speakers) - len(cohort_spk),
            "n_cohort_speakers": len(cohort_spk), "n_cohort": len(members), "n_dev": n_dev,
            "n_eval": len(kept) - n_dev}


def _row(name, r):
    return (f"{name:<30s} {100 * r['eer']:6.2f} %  {r['min_dcf_sre08']:7.4f}  "
            f"{r['act_dcf_sre08']:7.4f}  {r['cllr']:7.4f}  {r['min_cllr']:7.4f}")


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
    ipem._optional.MissingDependencyError
        Without soundfile: ``"soundfile is needed to write the demo corpus's
        audio: pip install 'ipem[speaker]'"``.
    """
    from ._optional import require
    # the corpus is written as audio: say so in one line, before anything is made
    require("soundfile", "to write the demo corpus's audio")
    import ipem
    from . import steps
    from .speaker.scorefiles import read_score_file, read_scores, split_scores
    from .speaker.utterances import FeatureSource
    from .speaker.calibration import DEFAULT_PRIOR
    from .synth import generate_corpus
    from .speaker.metrics import plot_det

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    # a fresh run: no checkpoint or models of an earlier run with other settings
    (out / "ubm.ckpt.npz").unlink(missing_ok=True)
    (out / "tv.ckpt.npz").unlink(missing_ok=True)
    shutil.rmtree(out / "models", ignore_errors=True)
    shutil.rmtree(out / "cohort_models", ignore_errors=True)
    corpus, feats = out / "corpus", out / "features"
    ubm_path, models, cohort_models = out / "ubm.npz", out / "models", out / "cohort_models"
    scores_path, snorm_path = out / "scores.txt", out / "scores_snorm.txt"
    ivector_paths = {m: out / f"scores_ivector_{m}.txt" for m in steps.BACKENDS}
    source = FeatureSource(feats, corpus)
    timings = {}

    t0 = _step("1. corpus: MBROLA voices, varied text/rate/pitch, telephone channel, noise")
    info = generate_corpus(corpus, n_speakers=speakers, n_enroll=3, n_test=8, n_ubm=6,
                           seed=seed)
    print(f"{len(info.speakers)} speakers, {info.n_utterances} utterances; lists in {corpus}")
    lists = split_lists(info, out)
    print(f"trials: {lists['n_speakers']} speakers, {lists['n_dev'] + lists['n_eval']} trials "
          f"-> {lists['trials']}; development / evaluation halves {lists['n_dev']} / "
          f"{lists['n_eval']} trials -> {lists['dev_key']}, {lists['eval_key']}")
    print(f"impostor cohort: {lists['n_cohort_speakers']} other speakers, {lists['n_cohort']} "
          f"utterances -> {lists['cohort']}")
    timings["corpus"] = time.perf_counter() - t0

    t0 = _step(f"2. start {engines} MPI engines")
    with ipem.MPICluster(n=engines, blas_threads=1) as ctrl:
        print(ctrl, "ranks", ctrl.ranks, "kernels:", ipem.BACKEND)
        timings["cluster start"] = time.perf_counter() - t0

        t0 = _step("3. features on the engines (20 MFCC + deltas + double deltas, VAD, CMVN)")
        refs = steps.extract(corpus, feats, controller=ctrl, progress=True)
        print(f"extracted {len(refs)} files, {sum(r.n_frames for r in refs)} speech frames "
              f"-> {feats}")
        timings["features"] = time.perf_counter() - t0

        t0 = _step(f"4. UBM: {components} diagonal Gaussians by splitting; engines read "
                   "their own feature files")
        ubm = steps.train_ubm(
            source.files(info.ubm_list), n_components=components,
            seed=seed, checkpoint=str(out / "ubm.ckpt.npz"), plot=str(out / "convergence.png"),
            out=str(ubm_path), controller=ctrl,
            callbacks=[lambda r: print(steps.format_ubm_record(r), flush=True)])
        print(f"UBM: {ubm.weights_.size} Gaussians, {ubm.n_iter_} iterations, "
              f"log-likelihood/frame {ubm.lower_bound_:.4f} -> {ubm_path}")
        print(f"convergence plot -> {out / 'convergence.png'}")
        timings["UBM"] = time.perf_counter() - t0

        t0 = _step("5. MAP adaptation of the speaker and cohort models (means, r=16), "
                   "task-parallel")
        adapted = steps.adapt(ubm, source.enrollment(lists["enroll"]), models,
                              controller=ctrl, progress=True)
        print(f"adapted {len(adapted)} speaker models -> {models}")
        adapted = steps.adapt(ubm, source.enrollment(lists["cohort"]), cohort_models,
                              controller=ctrl, progress=True)
        print(f"adapted {len(adapted)} cohort models -> {cohort_models}")
        timings["adapt"] = time.perf_counter() - t0

        t0 = _step("6. scoring the trials (top-5 Gaussians), in parallel")
        trials, _ = steps.score(ubm, lists["trials"], models, source=source, top_c=5,
                                out=str(scores_path), controller=ctrl, progress=True)
        print(f"scored {len(trials)} trials -> {scores_path}")
        timings["score"] = time.perf_counter() - t0

        t0 = _step("7. S-norm: models against the cohort segments, test segments against the "
                   "cohort models, in parallel")
        steps.normalize(ubm, scores_path, lists["cohort"], models, source=source, method="s",
                        cohort_models=cohort_models, top_c=5, out=str(snorm_path),
                        controller=ctrl, progress=True)
        print(f"S-normalised {len(trials)} trials -> {snorm_path}")
        timings["S-norm"] = time.perf_counter() - t0

        t0 = _step("8. i-vectors: total variability (R=20) by EM on the engines, extraction "
                   "task-parallel, LDA/WCCN/length-norm/PLDA back-end")
        train = source.utterances(info.ubm_list)
        tv = steps.train_ivector(
            ubm, train, rank=20, n_iter=10, seed=seed, checkpoint=str(out / "tv.ckpt.npz"),
            out=str(out / "tv.npz"), controller=ctrl,
            callbacks=[lambda r: print(steps.format_ivector_record(r), flush=True)])
        utts = source.enrollment(lists["enroll"])
        utts.update(source.utterances(lists["tests"]))
        utts.update(train)
        vecs = steps.extract_ivectors(tv, utts, out=str(out / "ivectors.npz"),
                                      controller=ctrl, progress=True)
        print(f"{len(vecs)} i-vectors -> {out / 'ivectors.npz'}")
    backend = steps.train_backend({u: vecs[u] for u in train},
                                  out=str(out / "ivector_backend.npz"))
    lda = "no LDA" if backend.lda_ is None else \
        f"LDA to {backend.lda_.scalings_.shape[1]} dimensions"    # derived from the set's size
    print(f"back-end on {len(train)} i-vectors: {lda}, "
          f"{'WCCN, ' if backend.wccn_ is not None else ''}length norm, PLDA -> "
          f"{out / 'ivector_backend.npz'}")
    for method, path in ivector_paths.items():
        steps.score_ivectors(vecs, lists["trials"], backend=method, model=backend,
                             out=str(path))
        print(f"{method} scores -> {path}")
    timings["i-vectors"] = time.perf_counter() - t0

    t0 = _step("9. calibration: logistic regression on the development half (prior "
               f"{DEFAULT_PRIOR:.4f}, SRE08's effective prior)")
    results, curves = {}, {}
    systems = (("raw", scores_path, "raw"), ("S-norm", snorm_path, "snorm"),
               ("i-vector cosine", ivector_paths["cosine"], "ivector_cosine"),
               ("i-vector PLDA", ivector_paths["plda"], "ivector_plda"))
    for name, path, tag in systems:
        cal_path = out / f"calibration_{tag}.json"
        cal = steps.calibrate(path, key=lists["dev_key"], out=str(cal_path))
        print(f"{name:<15s} llr = {cal.coef_[0]:.4g} * s {'-' if cal.intercept_ < 0 else '+'} "
              f"{abs(cal.intercept_):.4g} -> {cal_path}")
        ev_trials, ev_scores = read_score_file(path, lists["eval_key"])
        _, llr = steps.apply_calibration(cal, path, key=lists["eval_key"])
        results[name] = steps.evaluate(*split_scores(ev_trials, ev_scores))
        results[f"{name} + calibration"] = steps.evaluate(*split_scores(ev_trials, llr))
        curves[name] = split_scores(ev_trials, ev_scores)
    timings["calibration"] = time.perf_counter() - t0

    _step("10. results")
    print(f"all {len(trials)} trials, raw scores:")
    tar, non = read_scores(scores_path)
    print(steps.format_metrics(steps.evaluate(tar, non, source=str(scores_path))))
    r = results["raw"]
    print(f"\nevaluation half ({r['n_target']} target, {r['n_nontarget']} non-target trials); "
          "DCFs at SRE08 (P_tar=0.01, C_miss=10, C_fa=1):")
    print(f"{'':<30s} {'EER':>8s}  {'minDCF':>7s}  {'actDCF':>7s}  {'Cllr':>7s}  "
          f"{'minCllr':>7s}")
    for name, r in results.items():
        print(_row(name, r))
    for name, _, _ in systems:
        r = results[f"{name} + calibration"]
        gap = r["act_dcf_sre08"] / r["min_dcf_sre08"] - 1.0
        print(f"{name} + calibration: actDCF is {100 * gap:.1f} % above minDCF "
              f"({'within' if gap <= 0.15 else 'outside'} the 15 % target)")
    plot_det(curves, path=str(out / "det.png"),
             title=f"DET (evaluation half): {lists['n_speakers']} speakers, "
                   f"{components}-Gaussian UBM")
    print(f"DET curves -> {out / 'det.png'}")
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
    from ._optional import MissingDependencyError
    from .parallel import EngineError
    try:
        return run(args.out, engines=args.engines, components=args.components,
                   speakers=args.speakers, seed=args.seed)
    except (ValueError, OSError, EngineError, MissingDependencyError) as exc:
        print(f"{p.prog}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
