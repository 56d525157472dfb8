"""Do ipem's defaults generalise? Two evaluation sets, ipem against a plain recipe, and a swap.

    .venv/bin/python benchmarks/generalise.py [--work /tmp/generalise] [--snr 15,5]
                                              [--components 64] [--out benchmarks/RESULTS.md]
    .venv/bin/python benchmarks/generalise.py --sets corpus2 --no-variants --corpus2-seed 8
                                              # another draw of corpus2 (voices, texts, noise)
    .venv/bin/python benchmarks/generalise.py --no-baselines --variants 'c0|dither|plain VAD'
                                              # only the CLI defaults and these variants

Sets (each generated once per SNR into ``--work``):

* ``demo``: :func:`ipem.synth.generate_corpus` (what ipem's defaults were chosen on):
  every MBROLA voice (20 speakers), white/pink/babble/hum noise, seed 0; 3 UBM,
  2 enrolment, 5 test utterances per speaker; the UBM on the UBM utterances of
  every speaker; every model against every test utterance;
* ``corpus2``: ``benchmarks/corpus2.py`` (espeak-ng formant voices, call-centre texts
  of 2-30 words, sox band, brown or hum+babble noise, codec2/GSM); 48 speakers, the
  UBM on the 8 background utterances of each of the 32 background speakers (disjoint
  from the 16 enrolled speakers: 2 enrolment, 6 test utterances each).

Systems (EER of raw scores, every trial):

* ``ipem FE + ipem BE``: the CLI defaults -- ``steps.extract`` (its default front-end),
  ``steps.train_ubm`` (``--components`` Gaussians), ``steps.adapt`` (MAP r=16),
  ``steps.score`` (top-5);
* ``plain FE + plain BE``: ``tests/reference_pipeline.py`` (python_speech_features
  MFCC, energy VAD within 30 dB of the loudest frame, CMVN; scikit-learn UBM, MAP
  r=16, exact LLR);
* the swap: ``ipem FE + plain BE`` and ``plain FE + ipem BE`` (the plain features
  written as HTK files and fed to ipem's steps) -- which half makes a difference;
* front-end variants with ipem's back-end: VAD ``kaldi`` / ``percentile``, feature
  warping, a 200-3600 Hz filterbank, sliding CMVN; and the three ways the plain
  front-end differs from ipem's (nothing else does: same framing, window, nfft,
  filterbank, lifter and deltas): c0 of the whole spectrum instead of the band, no
  dither, the plain VAD (30 dB below the loudest frame's whole-spectrum energy);
  ipem's GMM VAD on the plain VAD's energy (``vad_energy="full"``), alone and with
  ``c0="full"``.

With ``--out`` the table replaces the section between ``<!-- generalise:begin -->`` and
``<!-- generalise:end -->`` of that file.
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

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

from reference_pipeline import ReferenceGMMUBM, reference_features  # noqa: E402

import corpus2  # noqa: E402
from ipem import io as ipem_io  # noqa: E402
from ipem import steps  # noqa: E402
from ipem.speaker import FeatureSource  # noqa: E402
from ipem.speaker.metrics import compute_eer  # noqa: E402
from ipem.synth import generate_corpus  # noqa: E402

BEGIN, END = "<!-- generalise:begin -->", "<!-- generalise:end -->"
DEMO_NOISES = ("white", "pink", "babble", "hum")
#: front-end variants measured with ipem's back-end (name -> steps.extract options)
VARIANTS = {
    "VAD kaldi": dict(vad="kaldi"),
    "VAD percentile": dict(vad="percentile"),
    "feature warping": dict(norm="warp"),
    "sliding CMVN": dict(norm="sliding_cmvn"),
    "filterbank 200-3600 Hz": dict(low_freq=200.0, high_freq=3600.0),
    "VAD percentile, filterbank 200-3600 Hz": dict(vad="percentile", low_freq=200.0,
                                                   high_freq=3600.0),
    # the plain recipe's rule: only energy_vad's "within 30 dB of the loudest frame"
    "VAD within 30 dB of the loudest only": dict(
        vad="percentile", vad_kwargs=dict(noise_percentile=0.0, noise_margin_db=-1000.0)),
    # the plain front-end differs from ipem's in c0, dither and VAD only (its c1-c19 and
    # deltas are ipem's to 2e-6 with c0="full", dither=0, no VAD, no normalisation)
    "c0 whole-spectrum energy": dict(c0="full"),
    "no dither": dict(dither=0.0),
    "c0 whole-spectrum, no dither (= plain FE with ipem's VAD)": dict(c0="full", dither=0.0),
    # ipem's features, the plain recipe's VAD exactly: frames whose whole-spectrum
    # pre-emphasised log energy is within 30 dB of the utterance's loudest frame
    "plain VAD (30 dB, whole-spectrum energy)": "plain_vad",
    # ipem's GMM rule on the plain VAD's energy (whole spectrum, pre-emphasised)
    "VAD energy whole-spectrum (`vad_energy=\"full\"`)": dict(vad_energy="full"),
    "VAD energy whole-spectrum, c0 whole-spectrum": dict(vad_energy="full", c0="full"),
}


class _FeatureBackend(ReferenceGMMUBM):
    """The plain back-end reading precomputed features (ipem's) instead of its own."""

    def __init__(self, root, n_components, source):
        super().__init__(root, n_components)
        self.source = source

    def features(self, rel):
        if rel not in self._feats:
            ref = ipem_io.describe(self.source.path(rel))
            self._feats[rel] = ipem_io.load(ref, dtype=np.float64)
        return self._feats[rel]


def make_set(work, name, snr, n_speakers=48, seed=7):
    """Corpus of one set at one SNR: (root, ubm list, enroll list, trials list).

    ``n_speakers`` (corpus2 only): 16 trial speakers, the others background; the
    first 48 speakers, their utterances and the trials are the same for any count.
    """
    root = work / (f"{name}-{snr:g}dB" + ("" if n_speakers == 48 else f"-{n_speakers}spk")
                   + ("" if seed == 7 or name == "demo" else f"-seed{seed}"))
    if name == "demo":
        if not (root / "trials.lst").exists():
            generate_corpus(root, seed=0, n_ubm=3, n_enroll=2, n_test=5, snr_db=float(snr),
                            noise=DEMO_NOISES, n_jobs=2)
        return root, root / "ubm.lst", root / "enroll.lst", root / "trials.lst"
    if not (root / "trials.lst").exists():
        corpus2.generate(root, n_speakers=n_speakers, n_trial=16, n_bg=8, n_test=6, snr_db=float(snr),
                         seed=seed)
    return root, root / "bg.lst", root / "enroll.lst", root / "trials.lst"


def _lists(ubm_list, enroll_list, trials_list):
    ubm = ubm_list.read_text().split()
    enroll = {ln.split()[0]: ln.split()[1:] for ln in enroll_list.read_text().splitlines()}
    trials = [ln.split() for ln in trials_list.read_text().splitlines()]
    return ubm, enroll, trials


def ipem_backend(root, feats, lists, work, components):
    ubm_list, enroll_list, trials_list = lists
    source = FeatureSource(feats, root)
    ubm = steps.train_ubm(source.files(ubm_list), n_components=components, seed=0,
                          controller=None)
    models = work / "models"
    shutil.rmtree(models, ignore_errors=True)
    steps.adapt(ubm, enroll_list, models, source=source)
    got, scores = steps.score(ubm, trials_list, models, source=source)
    labels = {(t[0], t[1]): t[2] == "target" for t in _lists(*lists)[2]}
    return np.asarray(scores), np.array([labels[(t.model, t.test)] for t in got])


def plain_backend(ref, lists):
    ubm, enroll, trials = _lists(*lists)
    ref.fit_ubm(ubm)
    models = {m: ref.adapt(u) for m, u in enroll.items()}
    ids = list(models)
    by_test = {}
    for _, u, _ in trials:
        if u not in by_test:
            by_test[u] = ref.scores([models[m] for m in ids], u)
    scores = np.array([by_test[u][ids.index(m)] for m, u, _ in trials])
    return scores, np.array([t[2] == "target" for t in trials])


def write_plain_features(root, feats, lists):
    write_custom_features(root, feats, lists, reference_features)


def plain_vad_features(path):
    """ipem's default features of the frames the plain recipe's VAD keeps, CMVN."""
    from ipem.speaker.featnorm import normalize_features
    from ipem.speaker.frontend import extract_features

    full = extract_features(path, vad=False, norm="none", c0="full")
    keep = full[:, 0] > full[:, 0].max() - 3.0 * np.log(10.0)
    feats = extract_features(path, vad=False, norm="none")
    return normalize_features(feats[keep].astype(np.float64), "cmvn", 300).astype(np.float32)


def write_custom_features(root, feats, lists, func):
    ubm, enroll, trials = _lists(*lists)
    source = FeatureSource(feats, root)
    for rel in dict.fromkeys([*ubm, *(u for us in enroll.values() for u in us),
                              *(t[1] for t in trials)]):
        path = Path(source.path(rel))
        path.parent.mkdir(parents=True, exist_ok=True)
        ipem_io.write(path, func(Path(root) / rel), fmt="htk")


CUSTOM = {"plain_vad": plain_vad_features}


def eer(scores, labels):
    return float(compute_eer(scores[labels], scores[~labels]))


def run_condition(work, name, snr, components, variants=None, seed=7, baselines=True):
    root, *lists = make_set(work, name, snr, seed=seed)
    lists = tuple(lists)
    cw = work / (f"run-{name}-{snr:g}dB" + ("" if seed == 7 or name == "demo" else
                                            f"-seed{seed}"))
    cw.mkdir(parents=True, exist_ok=True)
    audio = [Path(p) for p in (lists[0], lists[1], lists[2])]
    res, secs = {}, {}
    t0 = time.perf_counter()
    feats = cw / "feats-ipem"
    if not feats.exists():
        steps.extract(root, feats, lists=audio, controller=None)
    res["ipem FE + ipem BE (CLI defaults)"] = eer(*ipem_backend(root, feats, lists, cw,
                                                               components))
    secs["ipem"] = time.perf_counter() - t0
    if baselines:
        t0 = time.perf_counter()
        res["plain FE + plain BE"] = eer(*plain_backend(ReferenceGMMUBM(root, components),
                                                        lists))
        secs["plain"] = time.perf_counter() - t0
        res["ipem FE + plain BE"] = eer(*plain_backend(
            _FeatureBackend(root, components, FeatureSource(feats, root)), lists))
        pfeats = cw / "feats-plain"
        if not pfeats.exists():
            write_plain_features(root, pfeats, lists)
        res["plain FE + ipem BE"] = eer(*ipem_backend(root, pfeats, lists, cw, components))
    for vname, opts in (variants or {}).items():
        vf = cw / ("feats-" + re.sub(r"\W+", "_", vname))
        if not vf.exists():
            if isinstance(opts, str):
                write_custom_features(root, vf, lists, CUSTOM[opts])
            else:
                steps.extract(root, vf, lists=audio, controller=None, **opts)
        res[f"{vname} + ipem BE"] = eer(*ipem_backend(root, vf, lists, cw, components))
    _, _, trials = _lists(*lists)
    n_tar = sum(t[2] == "target" for t in trials)
    print(f"{name} {snr:g} dB: " + ", ".join(f"{k} {100 * v:.2f}" for k, v in res.items()),
          flush=True)
    return res, (n_tar, len(trials) - n_tar), secs


def table(results, counts, components, minutes, load):
    conds = list(results)
    systems = list(next(iter(results.values())))
    lines = [BEGIN, "## Do the defaults generalise? Two evaluation sets, ipem vs a plain recipe, "
             "swap (issue 20)", "",
             f"`benchmarks/generalise.py --components {components}` ({minutes:.0f} min on "
             f"{platform.machine()}, 2 cores shared with other agents' jobs, run with "
             f"`nice -n {os.nice(0)}`; load average at the start {load}). EER % of the raw "
             "scores over "
             "every trial. `demo`: the demo generator (MBROLA voices, white/pink/babble/hum "
             "noise, mu-law/A-law channel), UBM on every speaker's UBM utterances; `corpus2`: "
             "`benchmarks/corpus2.py` (espeak-ng formant voices, call-centre texts of 2-30 "
             "words, brown or hum+babble noise, codec2 1200-3200 bit/s or GSM-FR), UBM on 32 "
             "background speakers disjoint from the 16 enrolled ones. Trials per condition: "
             + "; ".join(f"{c}: {t} target / {n} non-target (one target trial = "
                         f"{100 / t:.1f} % of miss rate)" for c, (t, n) in counts.items())
             + f". Back-ends: ipem = `train_ubm` (K={components}, splitting) + MAP r=16 + "
             "top-5 scoring; plain = scikit-learn UBM + MAP r=16 + exact LLR "
             "(`tests/reference_pipeline.py`).", "",
             "| system | " + " | ".join(conds) + " |",
             "|---|" + "---|" * len(conds)]
    for s in systems:
        lines.append(f"| {s} | " + " | ".join(f"{100 * results[c][s]:.2f}" for c in conds)
                     + " |")
    return lines


def write_section(path, text):
    path = Path(path)
    old = path.read_text() if path.exists() else ""
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    new = pattern.sub(lambda _: text, old) if pattern.search(old) else \
        old.rstrip("\n") + "\n\n" + text + "\n"
    path.write_text(new)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default="/tmp/generalise")
    p.add_argument("--snr", default="15,5")
    p.add_argument("--sets", default="corpus2,demo")
    p.add_argument("--components", type=int, default=64)
    p.add_argument("--no-variants", action="store_true")
    p.add_argument("--variants", default=None,
                   help="a regular expression: only the VARIANTS whose name it matches")
    p.add_argument("--no-baselines", action="store_true",
                   help="only the CLI defaults and the variants (no plain recipe, no swap)")
    p.add_argument("--corpus2-seed", type=int, default=7)
    p.add_argument("--notes", default=None, help="a file of notes put under the table")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    variants = {} if a.no_variants else {v: o for v, o in VARIANTS.items()
                                         if a.variants is None or re.search(a.variants, v)}
    t0 = time.perf_counter()
    results, counts = {}, {}
    for name in a.sets.split(","):
        for snr in (float(s) for s in a.snr.split(",")):
            res, cnt, _ = run_condition(work, name, snr, a.components, variants,
                                        a.corpus2_seed, not a.no_baselines)
            results[f"{name} {snr:g} dB"] = res
            counts[name] = cnt
    lines = table(results, counts, a.components, (time.perf_counter() - t0) / 60, load)
    if a.notes:
        lines += ["", Path(a.notes).read_text().strip()]
    text = "\n".join(lines + [END])
    print(text)
    if a.out:
        write_section(a.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
