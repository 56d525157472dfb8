"""The cost of approximate UBM statistics in speaker-verification accuracy, on the demo corpus.

    .venv/bin/python benchmarks/approx_eer.py [--components 128] [--out benchmarks/RESULTS.md]

Generates the demo corpus (every installed MBROLA voice, as ``ipem demo``),
extracts its features on 2 MPI engines, then trains the UBM by binary splitting
(the demo's schedule: 8 iterations per stage, 20 at the end, tol 1e-3, variance
floor 0.1) with exact statistics and with the approximate ones
(``UBMTrainer(top_c=..., min_post=...)``), adapts the speaker models (MAP, means,
r=16) and scores the demo's trials (top-5), each from its own UBM.  Reported:
the final log-likelihood per frame (always computed exactly), seconds per EM
iteration at the final size (median), EER and minDCF (SRE08) of all trials.
``run.py --only approx`` gives the speed-up at a size where it matters
(K=1024, 200,000 frames).  ``--out`` rewrites this script's section of the file
(``<!-- approx-eer:begin -->`` ... ``<!-- approx-eer:end -->``).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

MODES = (("exact", {}), ("top_c=5", {"top_c": 5}), ("top_c=20", {"top_c": 20}),
         ("min_post=0.025", {"min_post": 0.025}))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--components", type=int, default=128)
    p.add_argument("--speakers", type=int, default=None)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    import ipem
    from ipem.mixture.ubm import UBMTrainer
    from ipem import steps
    from ipem.speaker import FeatureSource
    from ipem.synth import generate_corpus

    load0 = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="ipem-approx-"))
    rows = []
    try:
        corpus, feats = tmp / "corpus", tmp / "features"
        info = generate_corpus(corpus, n_speakers=args.speakers, n_enroll=3, n_test=8,
                               n_ubm=6, seed=0)
        with ipem.MPICluster(n=2, blas_threads=1) as ctrl:
            refs = steps.extract(corpus, feats, controller=ctrl, progress=False)
            source = FeatureSource(feats, corpus)
            ubm_files = source.files(info.ubm_list)
            enrollment = source.enrollment(info.enroll_list)
            n_frames = sum(r.n_frames for r in refs)
            for name, params in MODES:
                ubm = UBMTrainer(args.components, stage_iter=8, final_iter=20, tol=1e-3,
                                 variance_floor=0.1, random_state=0, controller=ctrl,
                                 **params).fit(ubm_files)
                last = [r for r in ubm.history_ if r.stage == args.components]
                per_iter = statistics.median(r.time for r in last)
                models = tmp / f"models-{len(rows)}"
                steps.adapt(ubm, enrollment, models, controller=ctrl, progress=False)
                trials, scores = steps.score(ubm, info.trials_list, models, source=source,
                                             top_c=5, controller=ctrl, progress=False)
                tar = [s for t, s in zip(trials, scores) if t.label == "target"]
                non = [s for t, s in zip(trials, scores) if t.label != "target"]
                r = steps.evaluate(tar, non)
                rows.append((name, ubm.lower_bound_, per_iter, ubm.n_iter_, r, len(tar),
                             len(non)))
                print(f"{name}: log-likelihood/frame {ubm.lower_bound_:.4f}, {per_iter:.3f} "
                      f"s/iteration, EER {100 * r['eer']:.2f} %, minDCF {r['min_dcf_sre08']:.4f}",
                      flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = rows[0]
    lines = ["### Approximate statistics: cost in accuracy on the demo corpus "
             "(`benchmarks/approx_eer.py`)", "",
             f"{len(info.speakers)} speakers, {n_frames:,} speech frames for features, UBM "
             f"K={args.components} trained on the UBM list by splitting on 2 MPI engines; "
             f"{rows[0][5]} target / {rows[0][6]} non-target trials (one target trial = "
             f"{100 / rows[0][5]:.1f} % of EER).  Load average {load0[0]:.2f} at the start.", "",
             "| UBM statistics | final log-likelihood per frame (exact) | difference | "
             "s/iteration at K | EM iterations | EER | minDCF (SRE08) |",
             "|---|---|---|---|---|---|---|"]
    for name, ll, t, n_iter, r, _, _ in rows:
        lines.append(f"| {name} | {ll:.4f} | {ll - base[1]:+.4f} | {t:.3f} | {n_iter} | "
                     f"{100 * r['eer']:.2f} % | {r['min_dcf_sre08']:.4f} |")
    print("\n".join(lines))
    if args.out:
        sys.path.insert(0, str(HERE))
        from run import replace_section
        replace_section(Path(args.out), "approx-eer", lines)
        print(f"-> {args.out}")


if __name__ == "__main__":
    main()
