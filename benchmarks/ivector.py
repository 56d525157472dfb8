"""GMM-UBM against i-vectors (cosine, PLDA) on generated corpora; TV EM seconds per iteration.

    .venv/bin/python benchmarks/ivector.py [--work /tmp/ivb] [--corpora demo,large]
                                           [--timing-rank 100] [--components 64]
    .venv/bin/python benchmarks/ivector.py --timing-only --corpora large   # TV timing only
    .venv/bin/python benchmarks/ivector.py --synthetic     # K=256, R=200, 1000 utterances
    .venv/bin/python benchmarks/ivector.py --open-set [--open-snr 15,5] [--open-ranks 20,50,100]
                                           [--open-backend 4,8,16,32,64]   # see run_open_set
                                           [--open-variants 'default;no LDA']  # OPEN_VARIANTS

The corpora below measure i-vectors **closed-set**: the back-end is trained on the
UBM-list utterances of the same speakers whose trials are scored.  ``--open-set``
measures them with back-end speakers disjoint from the trial speakers, on
``benchmarks/corpus2.py``, against the number of back-end speakers.

For each corpus (generated once into ``--work``, features extracted once):

* ``demo``: the demo's corpus (every installed voice; 6 UBM, 3 enrolment, 8 test
  utterances per speaker; seed 0);
* ``large``: every installed voice with more sessions (20 UBM, 3 enrolment,
  16 test utterances per speaker; seed 1).

The lists are the demo's (:func:`ipem.demo.split_lists`: every fourth speaker is
held out of the trials; development/evaluation halves of the test segments).
One UBM (``--components`` Gaussians, splitting) is trained on the UBM list; then

* GMM-UBM: MAP (r=16), top-5 scoring;
* i-vectors: a rank-R T (R = 20 for demo, 50 for large) trained on the UBM-list utterances (10 EM
  iterations, engines keep the statistics), i-vectors of the enrolment models
  (pooled statistics of their 3 utterances) and of the test segments; the
  back-end (centring, LDA, WCCN, length norm, PLDA; ``train_backend``'s defaults,
  derived from the training set's size) trained on
  the UBM-list i-vectors labelled by speaker; cosine and PLDA scores.

Every system is calibrated on the development half (logistic regression) and
reported on the evaluation half: EER and minDCF of the raw scores, actDCF of the
calibrated ones (SRE08 operating point).  Finally the TV EM of the last corpus
is timed with rank ``--timing-rank`` in-process (``LocalController(1)``, BLAS
pinned to 1 thread and unpinned) and on 2 MPI engines (``MPICluster(2)``), 6
iterations each; the median seconds per iteration are printed, and whether the
engines' T is bit-identical to ``LocalController(2, blas_threads=1)``'s.  With
``--out`` the tables replace the section between
``<!-- ivector:begin -->`` and ``<!-- ivector:end -->`` of that file.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import ipem  # noqa: E402
from ipem.demo import split_lists  # noqa: E402
from ipem.io import read_list  # noqa: E402
from ipem import steps  # noqa: E402
from ipem.speaker import FeatureSource  # noqa: E402
from ipem.speaker.scorefiles import read_score_file, read_trials, split_scores  # noqa: E402
from ipem.synth import generate_corpus  # noqa: E402

CORPORA = {"demo": dict(n_ubm=6, n_enroll=3, n_test=8, seed=0),
           "large": dict(n_ubm=20, n_enroll=3, n_test=16, seed=1)}
#: i-vector dimension per corpus (T is trained on 120 and 400 utterances)
RANKS = {"demo": 20, "large": 50}
BEGIN, END = "<!-- ivector:begin -->", "<!-- ivector:end -->"
#: the --synthetic timing's lines, inside the ivector section
SYN_BEGIN, SYN_END = "<!-- ivector-tv-synthetic:begin -->", "<!-- ivector-tv-synthetic:end -->"
OPEN_BEGIN, OPEN_END = "<!-- ivector-open:begin -->", "<!-- ivector-open:end -->"


def prepare(work, name):
    """Corpus and features of one configuration, made once."""
    out = work / name
    corpus, feats = out / "corpus", out / "features"
    if not (corpus / "trials.lst").exists():
        generate_corpus(corpus, n_jobs=2, **CORPORA[name])
    if not feats.exists():
        steps.extract(corpus, feats, controller=None)
    speakers = tuple(f[0] for _, f in read_list(corpus / "enroll.lst"))
    info = SimpleNamespace(speakers=speakers, trials_list=corpus / "trials.lst",
                           enroll_list=corpus / "enroll.lst", ubm_list=corpus / "ubm.lst")
    return out, corpus, feats, info


def metrics(score_path, lists, out, name):
    """EER/minDCF (raw) and actDCF (calibrated on the development half), evaluation half."""
    cal = steps.calibrate(score_path, key=lists["dev_key"], out=str(out / f"cal_{name}.json"))
    ev_trials, ev = read_score_file(score_path, lists["eval_key"])
    _, llr = steps.apply_calibration(cal, score_path, key=lists["eval_key"])
    raw = steps.evaluate(*split_scores(ev_trials, ev))
    calibrated = steps.evaluate(*split_scores(ev_trials, llr))
    return {"eer": raw["eer"], "min_dcf": raw["min_dcf_sre08"],
            "act_dcf": calibrated["act_dcf_sre08"], "n_target": raw["n_target"],
            "n_nontarget": raw["n_nontarget"]}


def run_corpus(work, name, rank, components):
    out, corpus, feats, info = prepare(work, name)
    lists = split_lists(info, out)
    res, times = {}, {}
    source = FeatureSource(feats, corpus)
    t0 = time.perf_counter()
    ubm = steps.train_ubm(source.files(info.ubm_list), n_components=components, seed=0,
                          controller=None)
    times["UBM"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    import shutil
    shutil.rmtree(out / "models", ignore_errors=True)
    steps.adapt(ubm, source.enrollment(lists["enroll"]), out / "models")
    steps.score(ubm, lists["trials"], out / "models", source=source, top_c=5,
                out=str(out / "scores_gmm.txt"))
    times["GMM-UBM adapt+score"] = time.perf_counter() - t0
    res["GMM-UBM"] = metrics(out / "scores_gmm.txt", lists, out, "gmm")

    t0 = time.perf_counter()
    train = source.utterances(info.ubm_list)
    tv = steps.train_ivector(ubm, train, rank=rank, n_iter=10, seed=0, controller=None)
    times["TV training"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    tests = list(dict.fromkeys(t.test for t in read_trials(lists["trials"])))
    utts = dict(source.enrollment(lists["enroll"]))
    utts.update({t: source.path(t) for t in tests})
    utts.update({u: p for u, p in train.items()})
    vecs = steps.extract_ivectors(tv, utts, out=str(out / "ivectors.npz"))
    times["i-vector extraction"] = time.perf_counter() - t0
    backend = steps.train_backend({u: vecs[u] for u in train}, out=str(out / "backend.npz"))
    for method in ("cosine", "plda"):
        path = out / f"scores_{method}.txt"
        steps.score_ivectors(vecs, lists["trials"], backend=method, model=backend, out=str(path))
        res[f"i-vector + {method}"] = metrics(path, lists, out, method)
    counts = {"speakers": lists["n_speakers"], "train utterances": len(train),
              "TV objective": [round(r.objective, 4) for r in tv.history_]}
    return res, times, counts, ubm, train


def _eer(trials, scores):
    return float(steps.evaluate(*split_scores(trials, scores))["eer"])


def open_set_vectors(work, snr, ranks, components, n_speakers=80):
    """UBM, GMM-UBM EER and i-vectors of one corpus2 condition, cached under ``work``.

    Returns ``(info, gmm_eer, {rank: {id: vector}})``; ``info`` holds the
    background ids by speaker, the enrolment utterances, the test ids and the
    trial list.  The i-vectors of every rank are saved once
    (``ivectors-R<rank>.npz``), the GMM-UBM EER in ``gmm_eer.txt``: a second run
    only trains back-ends.
    """
    sys.path.insert(0, str(HERE))
    import generalise
    from ipem.ivector import load_ivectors, save_ivectors

    root, bg_list, enroll_list, trials_list = generalise.make_set(work, "corpus2", snr,
                                                                  n_speakers)
    cw = work / f"run-corpus2-{snr:g}dB-{n_speakers}spk"
    feats = cw / "feats-ipem"
    if not feats.exists():
        steps.extract(root, feats, lists=[bg_list, enroll_list, trials_list], controller=None)
    source = FeatureSource(feats, root)
    train = source.utterances(bg_list)
    tests = list(dict.fromkeys(t.test for t in read_trials(trials_list)))
    enroll = dict(source.enrollment(enroll_list))
    enroll_utts = [u for us in (ln.split()[1:] for ln in enroll_list.read_text().splitlines())
                   for u in us]
    cache = {r: cw / f"ivectors-K{components}-R{r}.npz" for r in ranks}
    gmm_file = cw / f"gmm_eer-K{components}.txt"
    ubm = None
    if not gmm_file.exists() or not all(c.exists() for c in cache.values()):
        ubm = steps.train_ubm(source.files(bg_list), n_components=components, seed=0,
                              controller=None)
    if not gmm_file.exists():
        shutil.rmtree(cw / "iv-models", ignore_errors=True)
        steps.adapt(ubm, enroll_list, cw / "iv-models", source=source)
        got, sc = steps.score(ubm, trials_list, cw / "iv-models", source=source)
        gmm_file.write_text(f"{_eer(got, sc)!r}\n")
    vecs = {}
    for rank in ranks:
        if not cache[rank].exists():
            tv = steps.train_ivector(ubm, train, rank=rank, n_iter=10, seed=0, controller=None)
            utts = dict(enroll)
            utts.update({t: source.path(t) for t in [*tests, *enroll_utts]})
            utts.update(train)
            save_ivectors(cache[rank], steps.extract_ivectors(tv, utts))
        vecs[rank] = load_ivectors(cache[rank])
    by_spk = {}
    for u in train:
        by_spk.setdefault(Path(u).parent.name, []).append(u)
    info = SimpleNamespace(by_speaker=by_spk, enroll_utts=enroll_utts, tests=tests,
                           trials_list=trials_list)
    return info, float(gmm_file.read_text()), vecs


#: back-end variants of the open-set sweep: name -> (n speakers, R) -> IvectorBackend kwargs
#: (None: ``steps.train_backend``'s defaults, derived from the training set since issue 20)
OPEN_VARIANTS = {
    "default": None,
    "old (LDA to speakers - 1, WCCN)": lambda n, r: dict(lda_dim=min(n - 1, r), wccn=True),
    "no LDA": lambda n, r: dict(lda_dim=0, wccn=True),
    "no LDA, no WCCN": lambda n, r: dict(lda_dim=0, wccn=False),
    "no LDA, PLDA rank speakers - 1": lambda n, r: dict(lda_dim=0, wccn=True,
                                                        plda_rank=n - 1),
    "no LDA, no WCCN, PLDA rank speakers - 1": lambda n, r: dict(lda_dim=0, wccn=False,
                                                                 plda_rank=n - 1),
    "default, no length norm": lambda n, r: dict(length_norm=False),
    "old, no length norm": lambda n, r: dict(lda_dim=min(n - 1, r), wccn=True,
                                             length_norm=False),
    "LDA to min(speakers - 1, 10)": lambda n, r: dict(lda_dim=min(n - 1, r, 10), wccn=True),
    "LDA to min(speakers - 1, 20)": lambda n, r: dict(lda_dim=min(n - 1, r, 20), wccn=True),
    "LDA to (speakers - 1) / 2": lambda n, r: dict(lda_dim=max(1, min(n - 1, r) // 2),
                                                   wccn=True),
}


def run_open_set(work, snr, ranks, n_backend, components, n_speakers=80, variants=None,
                 closed=True):
    """i-vector EER with back-end speakers disjoint from the trial speakers (corpus2).

    ``benchmarks/corpus2.py`` at ``snr`` dB with ``n_speakers`` speakers (its first 48
    and the trials are those of ``benchmarks/generalise.py``'s corpus2): the UBM and T
    are trained on the background utterances (``n_speakers - 16`` speakers x 8); for
    each ``n`` of ``n_backend`` and each back-end variant (``variants``: names of
    :data:`OPEN_VARIANTS`) the back-end is trained on the i-vectors of the first
    ``n`` background speakers only.
    ``closed``: the default back-end trained on the 16 trial speakers' own enrolment
    and test segments (the old measurement; ``allow_overlap``).  GMM-UBM (MAP r=16,
    top-5) on the same UBM and trials.  EER over every trial (96 target / 1,440
    non-target).  Returns ``{system: {rank: eer}}``.
    """
    from ipem.ivector import IvectorBackend

    info, gmm, all_vecs = open_set_vectors(work, snr, ranks, components, n_speakers)
    res = {"GMM-UBM": {r: gmm for r in ranks}}
    spk = list(info.by_speaker)
    variants = list(OPEN_VARIANTS) if variants is None else variants
    for rank in ranks:
        vecs = all_vecs[rank]
        sets = {f"open, {n} speakers": [u for s in spk[:n] for u in info.by_speaker[s]]
                for n in n_backend}
        if closed:
            sets["closed: the 16 trial speakers' enrolment + test segments"] = [
                *info.enroll_utts, *info.tests]
        for name, ids in sets.items():
            labels = {u: Path(u).parent.name for u in ids}
            n = len(set(labels.values()))
            for variant in (variants if name.startswith("open") else ["default"]):
                make = OPEN_VARIANTS[variant]
                if make is None:
                    be = steps.train_backend({u: vecs[u] for u in ids}, labels)
                else:
                    try:
                        be = IvectorBackend(**make(n, rank)).fit(
                            np.stack([vecs[u] for u in ids]),
                            np.array([labels[u] for u in ids]))
                    except ValueError as exc:       # too small for it: the table says so
                        print(f"{variant}, {name}, R={rank}: {exc}", flush=True)
                        for method in ("cosine", "plda"):
                            res.setdefault(f"{method}, {variant}, back-end {name}",
                                           {})[rank] = float("nan")
                        continue
                for method in ("cosine", "plda"):
                    t, s = steps.score_ivectors(vecs, info.trials_list, backend=method,
                                                model=be,
                                                allow_overlap=name.startswith("closed"))
                    res.setdefault(f"{method}, {variant}, back-end {name}", {})[rank] = \
                        _eer(t, s)
        print(f"open set {snr:g} dB R={rank}: " + ", ".join(
            f"{k} {100 * v[rank]:.2f}" for k, v in res.items() if rank in v), flush=True)
    return res


def open_set_table(results, ranks, components):
    conds = list(results)
    lines = ["| system | " + " | ".join(f"{c}, R={r}" for c in conds for r in ranks) + " |",
             "|---|" + "---|" * (len(conds) * len(ranks))]
    for system in results[conds[0]]:
        lines.append(f"| {system} | " + " | ".join(
            f"{100 * results[c][system][r]:.2f}" for c in conds for r in ranks) + " |")
    return lines


def time_tv(ubm, train, rank, n_iter=6):
    """Seconds per TV EM iteration in-process and on 2 MPI engines.

    The engines' statistics stay on them; the in-process runs hold the same
    statistics in one shard (BLAS with 1 thread, and with its default threads).
    ``same T``: the 2 engines' T against ``LocalController(2, blas_threads=1)``.
    """
    out = {}
    kw = dict(ubm=ubm, max_iter=n_iter, random_state=0)
    for name, ctrl in (("local, 1 BLAS thread", ipem.LocalController(1, blas_threads=1)),
                       ("local, default BLAS threads", ipem.LocalController(1))):
        tv = ipem.TotalVariability(rank, controller=ctrl, **kw).fit(train)
        out[name] = [r.time for r in tv.history_]
    same = ipem.TotalVariability(rank, controller=ipem.LocalController(2, blas_threads=1),
                                 **kw).fit(train)
    with ipem.MPICluster(n=2, blas_threads=1) as ctrl:
        tv2 = ipem.TotalVariability(rank, controller=ctrl, **kw).fit(train)
        out["2 MPI engines"] = [r.time for r in tv2.history_]
    out["same T"] = bool(np.array_equal(same.T_, tv2.T_))
    out["max |dT|"] = float(np.abs(same.T_ - tv2.T_).max())
    return out


def time_tv_synthetic(k=256, d=60, rank=200, n_utts=1000, n_iter=4, repeat=2):
    """Seconds per TV EM iteration on synthetic statistics rows of a larger model.

    Rows (N from a gamma law, F~ Gaussian) are made on the client and
    distributed once per controller; ``repeat`` times, in-process
    (``LocalController(1, blas_threads=1)``) then on 2 MPI engines
    (``MPICluster(2, blas_threads=1)``), ``n_iter`` iterations each.  For the
    engines, each iteration's seconds are split from its record: the slower
    engine's E-step (``shard_time``), exchange of the statistics' parts between
    engines and M-step of its components (``exchange_time``, ``m_step_time``),
    the rest (client, messages, T's shares to the client).  ``max |dT|``: the
    engines' T against the in-process one (one shard: the sums are added in
    another order; ``tests/ivector`` checks the bits against
    ``LocalController(2)``).
    """
    import os

    rng = np.random.default_rng(0)
    ubm = (np.full(k, 1.0 / k), rng.normal(size=(k, d)), np.ones((k, d)))
    n = rng.gamma(0.5, 8.0, size=(n_utts, k))
    f = rng.normal(size=(n_utts, k, d)) * np.sqrt(n)[:, :, None]
    rows = ipem.ivector.stats_rows(n, f)
    kw = dict(ubm=ubm, max_iter=n_iter, random_state=0)
    out = {"load average at start": os.getloadavg(), "runs": []}
    with ipem.MPICluster(n=2, blas_threads=1) as ctrl:
        for _ in range(repeat):
            run = {}
            tv = ipem.TotalVariability(rank, controller=ipem.LocalController(1, blas_threads=1),
                                       **kw).fit(rows)
            run["local, 1 BLAS thread"] = [r.time for r in tv.history_]
            tv2 = ipem.TotalVariability(rank, controller=ctrl, **kw).fit(rows)
            run["2 MPI engines"] = [r.time for r in tv2.history_]
            slow = [int(np.argmax(r.info["shard_time"])) for r in tv2.history_]
            parts = {"E-step": [r.info["shard_time"][i] for r, i in zip(tv2.history_, slow)],
                     "exchange": [r.info.get("exchange_time", [0, 0])[i]
                                  for r, i in zip(tv2.history_, slow)],
                     "M-step": [r.info.get("m_step_time", [0, 0])[i]
                                for r, i in zip(tv2.history_, slow)]}
            parts["rest"] = [t - sum(p[j] for p in parts.values())
                             for j, t in enumerate(run["2 MPI engines"])]
            run["engine split"] = parts
            run["max |dT|"] = float(np.abs(tv.T_ - tv2.T_).max())
            out["runs"].append(run)
    return out


def synthetic_lines(timing, k=256, d=60, rank=200, n_utts=1000):
    """Markdown lines of :func:`time_tv_synthetic`'s runs (median ratio per run)."""
    load = " / ".join(f"{x:.2f}" for x in timing["load average at start"])
    lines = [f"`benchmarks/ivector.py --synthetic` (K={k}, D={d}, R={rank}, {n_utts} synthetic "
             f"utterances; {os.cpu_count()} cores, load average at the start {load}). "
             "Seconds per TV EM iteration (`IterationRecord.time`, in order):", "",
             "| run | local, 1 BLAS thread | 2 MPI engines | median ratio | engines: E-step / "
             "exchange / M-step / rest (slower engine, median s) | max abs(dT) vs local |",
             "|---|---|---|---|---|---|"]
    for i, run in enumerate(timing["runs"], 1):
        loc, eng = run["local, 1 BLAS thread"], run["2 MPI engines"]
        split = " / ".join(f"{np.median(v):.3f}" for v in run["engine split"].values())
        lines.append(f"| {i} | {' '.join(f'{t:.2f}' for t in loc)} | "
                     f"{' '.join(f'{t:.2f}' for t in eng)} | "
                     f"{np.median(loc) / np.median(eng):.2f}x | {split} | {run['max |dT|']:.1e} |")
    return lines


def table(results):
    lines = ["| corpus | system | EER % | minDCF | actDCF |", "|---|---|---|---|---|"]
    for corpus, res in results.items():
        for system, r in res.items():
            lines.append(f"| {corpus} | {system} | {100 * r['eer']:.2f} | {r['min_dcf']:.4f} | "
                         f"{r['act_dcf']:.4f} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", default="/tmp/ivb")
    p.add_argument("--corpora", default="demo,large")
    p.add_argument("--timing-rank", type=int, default=100)
    p.add_argument("--components", type=int, default=64)
    p.add_argument("--out", default=None, help="RESULTS.md to update")
    p.add_argument("--synthetic", action="store_true",
                   help="only the TV timing on synthetic statistics (K=256, R=200, 1000 "
                        "utterances)")
    p.add_argument("--repeat", type=int, default=2, help="--synthetic: runs of both")
    p.add_argument("--timing-only", action="store_true",
                   help="only the TV timing, on the last of --corpora (already prepared)")
    p.add_argument("--open-set", action="store_true",
                   help="only the open-set table on benchmarks/corpus2.py (back-end speakers "
                        "disjoint from the trial speakers)")
    p.add_argument("--open-snr", default="15,5")
    p.add_argument("--open-speakers", type=int, default=80,
                   help="corpus2 speakers: 16 trial speakers, the others background")
    p.add_argument("--notes", default=None, help="a file of notes put under the open-set table")
    p.add_argument("--open-ranks", default="20,50,100")
    p.add_argument("--open-backend", default="4,8,16,32,64",
                   help="numbers of back-end speakers")
    p.add_argument("--open-variants", default=None,
                   help="back-end variants separated by ';' (names of OPEN_VARIANTS; "
                        "default: all)")
    args = p.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.open_set:
        return open_set_main(args, work)
    results, report = {}, []
    last = None
    if args.synthetic:
        lines = synthetic_lines(time_tv_synthetic(repeat=args.repeat))
        print("\n".join(lines), flush=True)
        if args.out:
            path = Path(args.out)
            text = path.read_text()
            pat = re.compile(re.escape(SYN_BEGIN) + ".*?" + re.escape(SYN_END), re.S)
            block = "\n".join([SYN_BEGIN, *lines, SYN_END])
            path.write_text(pat.sub(lambda m: block, text) if pat.search(text) else
                            text.replace(END, block + "\n" + END))
        return 0
    if args.timing_only:
        name = args.corpora.split(",")[-1]
        out_dir, corpus, feats, info = prepare(work, name)
        source = FeatureSource(feats, corpus)
        ubm = steps.train_ubm(source.files(info.ubm_list), n_components=args.components,
                              seed=0, controller=None)
        train = source.utterances(info.ubm_list)
        timing = time_tv(ubm, train, args.timing_rank)
        print({k: (np.round(v, 3).tolist() if isinstance(v, list) else v)
               for k, v in timing.items()})
        return 0
    for name in args.corpora.split(","):
        res, times, counts, ubm, train = run_corpus(work, name, RANKS[name], args.components)
        results[name] = res
        first = next(iter(res.values()))
        report.append(f"- {name} (R = {RANKS[name]}): {counts['speakers']} trial speakers, "
                      f"{first['n_target']} target"
                      f" / {first['n_nontarget']} non-target evaluation trials; T trained on "
                      f"{counts['train utterances']} utterances; TV objective per frame "
                      f"{counts['TV objective'][0]} -> {counts['TV objective'][-1]}; seconds: "
                      + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))
        print(report[-1], flush=True)
        last = (ubm, train)
    print(table(results), flush=True)
    timing = time_tv(*last, args.timing_rank)
    med = {k: float(np.median(v)) for k, v in timing.items() if isinstance(v, list)}
    timing_line = (f"TV EM, rank {args.timing_rank}, {args.components} Gaussians x 60 features, "
                   f"{len(last[1])} utterances of the last corpus: median seconds per iteration "
                   + ", ".join(f"{k} {v:.3f} s" for k, v in med.items())
                   + " (all: " + "; ".join(f"{k} " + " ".join(f"{t:.3f}" for t in v)
                                             for k, v in timing.items() if isinstance(v, list))
                   + "); T bit-identical to LocalController(2, blas_threads=1): "
                   + f"{timing['same T']} (max |dT| {timing['max |dT|']:.1e})")
    print(timing_line, flush=True)
    section = "\n".join([BEGIN, "## i-vectors against GMM-UBM (benchmarks/ivector.py)", "",
                         f"Machine: {platform.machine()}, {platform.processor() or 'cpu'}, "
                         "shared with other jobs; evaluation half of the demo's split, "
                         "SRE08 DCF point, actDCF after calibration on the development half.",
                         "", table(results), "", *report, "", timing_line, END])
    if args.out:
        path = Path(args.out)
        text = path.read_text() if path.exists() else ""
        if BEGIN in text and END in text:
            text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda m: section, text,
                          flags=re.S)
        else:
            text = text.rstrip("\n") + "\n\n" + section + "\n"
        path.write_text(text)
    return 0


def open_set_main(args, work):
    import os

    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    t0 = time.perf_counter()
    ranks = [int(r) for r in args.open_ranks.split(",")]
    n_backend = [int(n) for n in args.open_backend.split(",")]
    variants = None if args.open_variants is None else args.open_variants.split(";")
    results = {f"{snr:g} dB": run_open_set(work, snr, ranks, n_backend, args.components,
                                           args.open_speakers, variants)
               for snr in (float(x) for x in args.open_snr.split(","))}
    lines = [OPEN_BEGIN, "## i-vectors open-set: EER against the number of back-end speakers "
             "(issue 20)", "",
             f"`benchmarks/ivector.py --open-set --components {args.components}` "
             f"({(time.perf_counter() - t0) / 60:.0f} min on {platform.machine()}, 2 cores "
             f"shared with other agents' jobs, `nice -n 5`; load average at the start {load}). "
             f"Corpus: `benchmarks/corpus2.py` ({args.open_speakers} espeak-ng formant speakers, "
             "codec2/GSM, brown or hum+babble noise), 16 trial speakers (2 enrolment "
             "utterances pooled per model, 6 test segments each: 96 target / 1,440 "
             "non-target trials, one target "
             f"trial = 1.04 % of miss rate), {args.open_speakers - 16} background speakers x 8 "
             f"utterances. UBM ({args.components} Gaussians) and T (rank R, 10 iterations) on "
             f"the {8 * (args.open_speakers - 16)} background utterances; the back-end (centring, "
             "LDA, WCCN, length norm, PLDA; `default`: `train_backend`'s defaults, derived "
             "from the training set (`ipem.ivector.backend_defaults`: LDA to speakers - 1 "
             "only with at least R/2 + 1 speakers, WCCN only with vectors - speakers >= 2 x "
             "the dimension after LDA); `old`: LDA to speakers - 1 and WCCN always, the "
             "defaults before) on the first n background speakers only (**open set**: no "
             "trial speaker in it), or on the trial speakers' own enrolment and test "
             "segments (**closed set** with leakage, 16 speakers x 8, default back-end: what "
             "the README's old i-vector recipe did; "
             "the demo/large table above is closed-set too, on other sessions of the trial "
             "speakers). GMM-UBM: the same UBM, MAP r=16, top-5 scoring, "
             "the same trials (it has no back-end; the same figure in every R column). EER % "
             "of raw scores.", "", *open_set_table(results, ranks, args.components)]
    if args.notes:
        lines += ["", Path(args.notes).read_text().strip()]
    section = "\n".join(lines + [OPEN_END])
    print(section)
    if args.out:
        path = Path(args.out)
        text = path.read_text() if path.exists() else ""
        pat = re.compile(re.escape(OPEN_BEGIN) + ".*?" + re.escape(OPEN_END), re.S)
        text = pat.sub(lambda m: section, text) if pat.search(text) else \
            text.rstrip("\n") + "\n\n" + section + "\n"
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
