"""EER / minDCF / actDCF / Cllr per noise condition: raw, S-norm, calibrated; ipem vs a reference.

    .venv/bin/python benchmarks/conditions.py [--seed 0] [--speakers 16]
                                              [--out benchmarks/RESULTS.md]

For each condition of ``tests/steps/test_noisy.py`` (0, 5 and 15 dB SNR with white, pink,
babble and hum noise; enrolment/test channel mismatch at 10-25 dB) one corpus is
generated with the same seed (the same speech; only noise and channel differ).  Its
speakers are split: the first ``--trial-speakers`` are enrolled (2 utterances each)
and tested (5 test utterances each, every model against every test utterance); the
others form the impostor cohort of S-norm, one cohort member per utterance (their
enrolment and test utterances).  The UBM (32 Gaussians) is trained on the UBM
utterances of all speakers.

The trials are split by test utterance: the even-numbered test utterances of each
speaker make the development half, on which the calibration (prior-weighted logistic
regression, SRE08's effective prior) is trained; the odd-numbered ones the
evaluation half, on which every figure is measured.

Two systems, each with its raw scores and S-norm, each of them also calibrated:

* ``ipem``: the public pipeline with its defaults (``extract``, ``train_ubm``,
  ``adapt``, ``score`` with top-5 scoring, ``normalize(method="s")``, ``calibrate``);
* ``reference``: the GMM-UBM of ``tests/reference_pipeline.py`` (python_speech_features
  + scikit-learn, exact scoring), normalised and calibrated with the same score-level
  functions (``ipem.speaker.normalization.snorm``,
  ``ipem.speaker.calibration.LogisticCalibration``) on its own cohort scores.

minDCF and actDCF are at SRE08's point (P_target = 0.01, C_miss = 10, C_fa = 1),
normalised; Cllr in bits.  With ``--out`` the table replaces the section between
``<!-- conditions:begin -->`` and ``<!-- conditions:end -->`` of that file.
"""
from __future__ import annotations

import argparse
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))

from reference_pipeline import ReferenceGMMUBM  # noqa: E402

from ipem import steps  # noqa: E402
from ipem.speaker import FeatureSource  # noqa: E402
from ipem.speaker.calibration import LogisticCalibration  # noqa: E402
from ipem.synth import generate_corpus  # noqa: E402
from ipem.speaker.normalization import snorm  # noqa: E402

NOISES = ("white", "pink", "babble", "hum")
CONDITIONS = {
    "0 dB": dict(snr_db=0.0, noise=NOISES),
    "5 dB": dict(snr_db=5.0, noise=NOISES),
    "15 dB": dict(snr_db=15.0, noise=NOISES),
    "mismatch": dict(snr_db=(10.0, 25.0), channel_mismatch=True),
}
K = 32
BEGIN, END = "<!-- conditions:begin -->", "<!-- conditions:end -->"

#: What the tables say (for seed 0, 16 speakers; check it when the numbers change).
NOTES = """Reading the tables:

* Raw average-LLR scores are not log-likelihood ratios: actDCF is 1.000 in every condition
  (the Bayes threshold rejects every trial). Calibration trained on the development half
  brings it down to minDCF where the scores separate at SRE08's point: at 15 dB ipem's
  S-norm + calibration has actDCF = minDCF = 0.455, with channel mismatch actDCF 0.41
  (minDCF 0.22-0.30, 20 target trials); Cllr falls from 0.75-0.80 to 0.18-0.33 bits.
* At 0 and 5 dB nothing separates at SRE08's low false-alarm point (minDCF 0.75-1.0): there
  calibration has nothing to work with (Cllr near 1; at 5 dB the raw calibration trained on
  30 development targets overshoots, actDCF 1.12).
* S-norm helps where the scores carry information (15 dB: EER 9.4 -> 7.8 % for ipem, 15.0 ->
  10.0 % for the reference, minDCF 0.59 -> 0.46) and not at 0 dB, where the cohort's scores
  are as noisy as the trials'.
* ipem's raw EER is at or below the reference's in every condition (35.0/35.0, 25.0/26.7,
  9.4/15.0, 5.0/10.0 %). One target trial is 5 % of miss rate on the evaluation half:
  differences of one or two trials are within the corpus's resolution.
* Linear scoring correlates 0.97-0.98 with exact scoring; its EER is the same at 0 dB and up
  to 3 points higher elsewhere (1-1.5 target trials of 50); the scoring step is 4-10x faster
  than exact scoring here (the models enter one matrix product; only the UBM E-step runs per
  test segment)."""


def _design(info, n_trial_speakers):
    """Enrolment, trials (with dev/eval half), cohort members, UBM utterances."""
    wav = info.out_dir / "wav"
    speakers = list(info.speakers)
    tspk, cspk = speakers[:n_trial_speakers], speakers[n_trial_speakers:]

    def utts(spk, role):
        return sorted(str(p.relative_to(info.out_dir)) for p in (wav / spk).glob(
            f"{spk}_{role}_*.wav"))

    enroll = {s: utts(s, "enroll") for s in tspk}
    tests = [(s, i, u) for s in tspk for i, u in enumerate(utts(s, "test"))]
    trials = [(m, u, "target" if m == s else "nontarget", "dev" if i % 2 == 0 else "eval")
              for m in tspk for s, i, u in tests]
    cohort = {f"c{n}": [u] for n, u in enumerate(
        u for s in cspk for role in ("enroll", "test") for u in utts(s, role))}
    ubm = [u for s in speakers for u in utts(s, "ubm")]
    return enroll, trials, cohort, ubm


def _metrics(scores, labels):
    tar, non = scores[labels], scores[~labels]
    r = steps.evaluate(tar, non)
    return {"eer": r["eer"], "min_dcf": r["min_dcf_sre08"], "act_dcf": r["act_dcf_sre08"],
            "cllr": r["cllr"], "n_target": r["n_target"], "n_nontarget": r["n_nontarget"]}


def _rows(raw, normed, labels, half):
    """Metrics on the evaluation half: raw and S-norm scores, each also calibrated."""
    dev, ev = half == "dev", half == "eval"
    out = {}
    for name, s in (("raw", raw), ("S-norm", normed)):
        cal = LogisticCalibration().fit(s[dev & labels], s[dev & ~labels])
        out[name] = _metrics(s[ev], labels[ev])
        out[f"{name} + calibration"] = _metrics(cal.transform(s[ev]), labels[ev])
    return out


def _ipem(info, design, work):
    enroll, trials, cohort, ubm_utts = design
    root, feats = info.out_dir, work / "feats"
    lists = {}
    for name, rows in (("enroll", [[m, *u] for m, u in enroll.items()]),
                       ("cohort", [[c, *u] for c, u in cohort.items()]),
                       ("ubm", [[u] for u in ubm_utts]),
                       ("trials", [t[:3] for t in trials])):
        lists[name] = work / f"{name}.lst"
        lists[name].write_text("".join(" ".join(r) + "\n" for r in rows))
    steps.extract(root, feats)
    source = FeatureSource(feats, root)
    ubm = steps.train_ubm(source.files(lists["ubm"]), n_components=K, seed=0)
    steps.adapt(ubm, lists["enroll"], work / "models", source=source)
    steps.adapt(ubm, lists["cohort"], work / "cohort_models", source=source)
    got, raw = steps.score(ubm, lists["trials"], work / "models", source=source)
    assert [(t.model, t.test) for t in got] == [t[:2] for t in trials]
    _, normed = steps.normalize(ubm, (got, raw), lists["cohort"], work / "models", source=source,
                                method="s", cohort_models=work / "cohort_models")
    methods = {}
    for method in ("exact", "linear"):
        t0 = time.perf_counter()
        methods[method] = steps.score(ubm, lists["trials"], work / "models", source=source,
                                      scoring=method)[1]
        methods[method + "_s"] = time.perf_counter() - t0
    return raw, normed, methods


def _reference(info, design):
    enroll, trials, cohort, ubm_utts = design
    ref = ReferenceGMMUBM(info.out_dir, K).fit_ubm(ubm_utts)
    models = {m: ref.adapt(u) for m, u in enroll.items()}
    cmodels = {c: ref.adapt(u) for c, u in cohort.items()}
    model_ids, test_ids = list(models), list(dict.fromkeys(t[1] for t in trials))
    by_test = {u: ref.scores([models[m] for m in model_ids], u) for u in test_ids}
    raw = np.array([by_test[u][model_ids.index(m)] for m, u, _, _ in trials])
    # cohort sides: enrolled models against the cohort segments, cohort models against tests
    csegs = [u[0] for u in cohort.values()]
    enroll_cohort = np.column_stack([ref.scores([models[m] for m in model_ids], u)
                                     for u in csegs])
    test_cohort = np.vstack([ref.scores(list(cmodels.values()), u) for u in test_ids])
    normed = snorm(raw, enroll_cohort, test_cohort,
                   enroll_index=np.array([model_ids.index(t[0]) for t in trials]),
                   test_index=np.array([test_ids.index(t[1]) for t in trials]))
    return raw, normed


def run(seed, n_speakers, n_trial_speakers, workdir):
    results = {}
    for name, cond in CONDITIONS.items():
        t0 = time.perf_counter()
        work = Path(workdir) / name.replace(" ", "")
        info = generate_corpus(work / "corpus", seed=seed, n_speakers=n_speakers, n_ubm=3,
                               n_enroll=2, n_test=5, **cond)
        design = _design(info, n_trial_speakers)
        labels = np.array([t[2] == "target" for t in design[1]])
        half = np.array([t[3] for t in design[1]])
        raw, normed, methods = _ipem(info, design, work)
        results[name] = {"ipem": _rows(raw, normed, labels, half),
                         "reference": _rows(*_reference(info, design), labels, half)}
        results[name]["scoring"] = {
            "corr": float(np.corrcoef(methods["linear"], methods["exact"])[0, 1]),
            **{m: _metrics(methods[m], labels)["eer"] for m in ("exact", "linear")},
            "topc": _metrics(raw, labels)["eer"],
            "n_target": int(labels.sum()), "n_nontarget": int((~labels).sum()),
            "seconds": (methods["exact_s"], methods["linear_s"])}
        ev = half == "eval"
        results[name]["trials"] = (int((labels & ev).sum()), int((~labels & ev).sum()))
        print(f"{name}: {time.perf_counter() - t0:.0f} s", flush=True)
    return results


def table(results, seed, n_speakers, n_trial_speakers, seconds):
    any_cond = next(iter(results.values()))
    n_tar, n_non = any_cond["trials"]
    lines = [BEGIN, "## Noise conditions: raw, S-norm and calibrated scores, ipem vs a "
             "reference (issue 11)", "",
             f"`benchmarks/conditions.py --seed {seed} --speakers {n_speakers}` "
             f"({seconds / 60:.1f} min on {platform.machine()}, 2 cores shared). One corpus "
             f"per condition, same speech (seed {seed}); {n_trial_speakers} enrolled speakers "
             f"(2 utterances each), {n_speakers - n_trial_speakers} cohort speakers (one "
             "S-norm cohort member per utterance), a 32-Gaussian UBM on 3 utterances of "
             "every speaker. Calibration trained on the development half (even-numbered test "
             f"utterances), every figure on the evaluation half: {n_tar} target / {n_non} "
             "non-target trials per condition (one target trial = "
             f"{100 / n_tar:.1f} % of miss rate). minDCF/actDCF at SRE08's point "
             "(P_tar 0.01, C_miss 10, C_fa 1), Cllr in bits. ipem: the pipeline's defaults "
             "(top-5 scoring); reference: `tests/reference_pipeline.py` "
             "(python_speech_features + scikit-learn, exact scoring), normalised and "
             "calibrated by the same score-level functions.", "",
             "| condition | system | scores | EER % | minDCF | actDCF | Cllr |",
             "|---|---|---|---|---|---|---|"]
    for cond, per in results.items():
        for system in ("ipem", "reference"):
            for kind, r in per[system].items():
                lines.append(f"| {cond} | {system} | {kind} | {100 * r['eer']:.1f} | "
                             f"{r['min_dcf']:.3f} | {r['act_dcf']:.3f} | {r['cllr']:.3f} |")
    sc = any_cond["scoring"]
    lines += ["", f"**Linear scoring against exact scoring** (ipem, the same models and trials, "
              f"dev and eval halves together: {sc['n_target']} target / {sc['n_nontarget']} "
              "non-target trials; seconds of the scoring step, in-process, contended machine)",
              "", "| condition | correlation | EER exact % | EER top-5 % | EER linear % | "
              "s exact / linear |", "|---|---|---|---|---|---|"]
    for cond, per in results.items():
        sc = per["scoring"]
        lines.append(f"| {cond} | {sc['corr']:.3f} | {100 * sc['exact']:.1f} | "
                     f"{100 * sc['topc']:.1f} | {100 * sc['linear']:.1f} | "
                     f"{sc['seconds'][0]:.2f} / {sc['seconds'][1]:.2f} |")
    lines += ["", NOTES, END]
    return "\n".join(lines)


def write_section(path, text):
    path = Path(path)
    old = path.read_text() if path.exists() else ""
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    new = pattern.sub(lambda _: text, old) if pattern.search(old) else \
        old.rstrip("\n") + "\n\n" + text + "\n"
    path.write_text(new)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--speakers", type=int, default=16)
    p.add_argument("--trial-speakers", type=int, default=10)
    p.add_argument("--out", default=None, help="replace the conditions section of this file")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        results = run(args.seed, args.speakers, args.trial_speakers, tmp)
    text = table(results, args.seed, args.speakers, args.trial_speakers,
                 time.perf_counter() - t0)
    print(text)
    if args.out:
        write_section(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
