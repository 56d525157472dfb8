"""The steps around EM, through the public API: extraction, MAP adaptation, scoring.

    .venv/bin/python benchmarks/steps.py [--utterances 48] [--speakers 1000]
                                         [--models 400] [--segments 500] [--map-repeats 3]
                                         [--score-repeats 3]
                                         [--out benchmarks/RESULTS.md]

extraction  ``ipem.speaker.extract`` of synthetic 8 kHz telephone-band utterances
            (10 s each: voiced segments with a pitch contour and formant-like
            resonances, pauses, background noise) to HTK feature files, in this
            process (``LocalController(1)``) and on 2 MPI engines: analysis frames
            per second, and per core.  Peer: ``python_speech_features.mfcc`` +
            two ``delta`` calls on the same signals in one process (the MFCC part
            of ipem's front-end alone, without reading, VAD, normalisation or
            writing).
MAP         ``ipem.speaker.adapt_speakers`` of ``--speakers`` speakers (300
            frames x 60 each, one npy file per speaker) to a 512-Gaussian UBM,
            models written to disk: speakers per second, local vs 2 engines
            (``--map-repeats`` runs of each, alternated; medians).
scoring     ``ipem.speaker.score_trials`` of every model against every test
            segment (``--models`` x ``--segments`` trials, 300 frames each):
            trials per second with top-C (C=5), linear scoring (products of
            the models' offsets with the segments' statistics, computed where
            the segments are read) and exact scoring (every component: timed
            on a subset of the models).
            The statistics or top-C selections of a segment are computed once
            and reused by every model tried against it.

Peak memory: the client's high-water RSS (VmHWM, reset before each step) and
the engines' (``ru_maxrss``) after the step.  ``--out`` rewrites this script's
section of the file (``<!-- steps:begin -->`` ... ``<!-- steps:end -->``).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SR = 8000
D, K, FRAMES = 60, 512, 300


# ---------------------------------------------------------------------------
# memory
# ---------------------------------------------------------------------------

def _status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def reset_peak():
    """Reset this process's high-water RSS to its current RSS (Linux)."""
    import ctypes
    import gc
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return _status("VmRSS:")


def peak_since(base):
    return _status("VmHWM:") - base


def _engine_peak_mb():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------
# extraction
# ---------------------------------------------------------------------------

def synth_utterance(rng, seconds=10.0):
    """A speech-like 8 kHz signal: voiced stretches with pitch and resonances, pauses, noise."""
    from scipy.signal import lfilter
    n = int(seconds * SR)
    x = np.zeros(n)
    t = 0
    while t < n:
        dur = int(rng.uniform(0.3, 1.5) * SR)
        seg = min(dur, n - t)
        f0 = rng.uniform(90, 220) * (1 + 0.1 * np.sin(np.linspace(0, rng.uniform(2, 8), seg)))
        phase = np.cumsum(2 * np.pi * f0 / SR)
        src = (np.sin(phase) > 0.95).astype(float) - 0.05        # glottal-like pulse train
        for fc, bw in ((rng.uniform(300, 900), 80), (rng.uniform(900, 2500), 120),
                       (rng.uniform(2500, 3400), 200)):
            r = np.exp(-np.pi * bw / SR)
            a = [1, -2 * r * np.cos(2 * np.pi * fc / SR), r * r]
            src = src + 0.5 * lfilter([1 - r], a, src)
        x[t:t + seg] = src * rng.uniform(0.2, 1.0)
        t += seg + int(rng.uniform(0.1, 0.6) * SR)             # a pause
    x += rng.normal(0, 0.01, n)
    return (0.5 * x / np.max(np.abs(x))).astype(np.float32)


def write_corpus(root, n_utt, seed=0):
    import soundfile as sf
    rng = np.random.default_rng(seed)
    sigs = []
    for i in range(n_utt):
        spk = f"spk{i % 8:02d}"
        os.makedirs(os.path.join(root, spk), exist_ok=True)
        x = synth_utterance(rng)
        sf.write(os.path.join(root, spk, f"utt{i:04d}.wav"), x, SR, subtype="PCM_16")
        sigs.append(x.astype(np.float64))
    return sigs


def psf_rate(sigs):
    from python_speech_features import delta, mfcc
    t0 = time.perf_counter()
    frames = 0
    for x in sigs:
        c = mfcc(x, SR, numcep=20, nfilt=26, lowfreq=300, highfreq=3400, nfft=256)
        d1 = delta(c, 2)
        delta(d1, 2)
        frames += c.shape[0]
    return frames / (time.perf_counter() - t0), frames


def extraction(args, rows, tmp):
    import ipem
    from ipem.steps import extract
    root = os.path.join(tmp, "audio")
    sigs = write_corpus(root, args.utterances)
    frames_total = sum(1 + (len(x) - 200) // 80 for x in sigs)   # 25 ms / 10 ms at 8 kHz
    with threadpool_limits(1):
        peer, _ = psf_rate(sigs)
        out = os.path.join(tmp, "feats-local")
        base = reset_peak()
        t0 = time.perf_counter()
        extract(root, out, controller=ipem.LocalController(1), progress=False)
        local = frames_total / (time.perf_counter() - t0)
        local_mem = peak_since(base)
    with ipem.MPICluster(n=2, blas_threads=1) as ctrl:
        out = os.path.join(tmp, "feats-mpi")
        warm = os.path.join(tmp, "warm.lst")      # engines import the front-end first
        with open(warm, "w") as f:
            f.write("spk00/utt0000.wav\nspk01/utt0001.wav\n")
        extract(root, os.path.join(tmp, "feats-warm"), lists=[warm], controller=ctrl,
                progress=False)
        t0 = time.perf_counter()
        extract(root, out, controller=ctrl, progress=False)
        mpi = frames_total / (time.perf_counter() - t0)
        peaks = [ctrl.client[e].apply_sync(_engine_peak_mb) for e in ctrl.engine_ids]
    rows += [
        f"| extraction, {args.utterances} x 10 s at 8 kHz ({frames_total:,} frames) | "
        f"python_speech_features mfcc + 2 deltas, 1 process | {peer:,.0f} frames/s | 1.0x | "
        "MFCCs only: no reading, VAD, normalisation or writing |",
        f"| | ipem `extract`, local (1 core) | {local:,.0f} frames/s | "
        f"ipem/psf = **{local / peer:.2f}x** | read, MFCC, GMM VAD, CMVN, HTK write; client peak "
        f"+{local_mem:.0f} MB |",
        f"| | ipem `extract`, 2 MPI engines | {mpi:,.0f} frames/s = {mpi / 2:,.0f} per core | "
        f"2 vs 1: **{mpi / local:.2f}x** | engine peak RSS "
        + " / ".join(f"{p:.0f}" for p in peaks) + f" MB; 100 h on 2 cores: "
        f"{100 * 3600 * 100 / mpi / 60:.0f} min |",
    ]
    print(*rows[-3:], sep="\n", flush=True)


# ---------------------------------------------------------------------------
# MAP and scoring
# ---------------------------------------------------------------------------

def make_ubm(seed=0):
    rng = np.random.default_rng(seed)
    w = rng.dirichlet(np.full(K, 5.0))
    m = rng.normal(0, 1.0, (K, D))
    v = rng.uniform(0.5, 1.5, (K, D))
    return w, m, v


def make_files(directory, n, ubm, seed):
    """n npy files of FRAMES frames drawn from the UBM (so posteriors look real)."""
    w, m, v = ubm
    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    paths = []
    for i in range(n):
        comp = rng.choice(K, FRAMES, p=w)
        x = (m[comp] + rng.normal(size=(FRAMES, D)) * np.sqrt(v[comp])).astype(np.float32)
        p = os.path.join(directory, f"u{i:05d}.npy")
        np.save(p, x)
        paths.append(p)
    return paths


def map_and_scoring(args, rows, tmp):
    import ipem
    from ipem.speaker import adapt_speakers, score_trials
    ubm = make_ubm()
    enroll = make_files(os.path.join(tmp, "enroll"), args.speakers, ubm, 1)
    tests = make_files(os.path.join(tmp, "test"), args.segments, ubm, 2)
    enrollment = {f"s{i:05d}": p for i, p in enumerate(enroll)}
    res = {}
    with ipem.MPICluster(n=2, blas_threads=1) as mpi:
        ctrls = {"local": ipem.LocalController(1, blas_threads=1), "mpi:2": mpi}
        warm = dict(list(enrollment.items())[:20])       # imports, the UBM broadcast
        for where, ctrl in ctrls.items():
            adapt_speakers(ubm, warm, controller=ctrl, out_dir=os.path.join(
                tmp, f"warm-{where.replace(':', '')}"), progress=False)
        runs = {}
        for rep in range(args.map_repeats):     # alternated: the load of shared cores changes
            for where, ctrl in ctrls.items():
                out = os.path.join(tmp, f"models-{where.replace(':', '')}-{rep}")
                base = reset_peak()
                t0 = time.perf_counter()
                with threadpool_limits(1):
                    models = adapt_speakers(ubm, enrollment, controller=ctrl, out_dir=out,
                                            progress=False)
                runs.setdefault(("map", where), []).append(
                    (args.speakers / (time.perf_counter() - t0), peak_since(base)))
                if rep + 1 < args.map_repeats:
                    shutil.rmtree(out, ignore_errors=True)   # 0.5 GB each
                if where == "local":               # the same without writing the models
                    t0 = time.perf_counter()
                    with threadpool_limits(1):
                        adapt_speakers(ubm, enrollment, controller=ctrl, progress=False)
                    runs.setdefault(("map-memory", where), []).append(
                        (args.speakers / (time.perf_counter() - t0), 0.0))
        for key, got in runs.items():                     # medians; the peak's maximum
            res[key] = (float(np.median([g[0] for g in got])), max(g[1] for g in got))
        map_ratios = sorted(m[0] / l[0] for l, m in zip(runs[("map", "local")],
                                                         runs[("map", "mpi:2")]))
        ids = sorted(models)[:args.models]
        trials = [(s, t) for t in tests for s in ids]
        exact_ids = ids[:max(1, args.models // 20)]
        exact_trials = [(s, t) for t in tests for s in exact_ids]
        scores, score_runs = {}, {}
        for method, tr in (("topc", trials), ("linear", trials), ("exact", exact_trials)):
            # alternated local / mpi:2 runs (top-C, the longest, once): medians
            for rep in range(1 if method == "topc" else args.score_repeats):
                for where, ctrl in ctrls.items():
                    base = reset_peak()
                    t0 = time.perf_counter()
                    with threadpool_limits(1):
                        s = score_trials(ubm, tr, models, controller=ctrl, method=method,
                                         progress=False)
                    score_runs.setdefault((method, where), []).append(
                        (len(tr) / (time.perf_counter() - t0), peak_since(base)))
                    scores[method] = np.asarray(s)
        for (method, where), got in score_runs.items():
            res[(method, where)] = (float(np.median([g[0] for g in got])),
                                    max(g[1] for g in got))
        peaks = [mpi.client[e].apply_sync(_engine_peak_mb) for e in mpi.engine_ids]
    # accuracy of the approximations against exact on the exact subset
    n_ex = len(exact_trials)
    sub = np.array([i for i, (s, _) in enumerate(trials) if s in set(exact_ids)])
    corr = {m: float(np.corrcoef(scores[m][sub], scores["exact"][:n_ex])[0, 1])
            for m in ("topc", "linear")} if len(sub) == n_ex else {}
    rows.append(f"| MAP adaptation, {args.speakers:,} speakers x {FRAMES} frames, K={K} | "
                f"ipem `adapt_speakers`, local (1 core) | "
                f"{res[('map', 'local')][0]:,.0f} speakers/s | 1.0x | client peak "
                f"+{res[('map', 'local')][1]:.0f} MB |")
    rows.append(f"| | ipem `adapt_speakers`, local, models kept in memory (no files) | "
                f"{res[('map-memory', 'local')][0]:,.0f} speakers/s | | model files are written "
                "in tasks of up to 32 MiB of models: each to a temporary whose writeback starts "
                "at once, fsynced in a background thread while the next is computed, all "
                "renamed at the task's end (one wait for the disk per task) |")
    rows.append(f"| | ipem `adapt_speakers`, 2 MPI engines | "
                f"{res[('map', 'mpi:2')][0]:,.0f} speakers/s | 2 vs 1: "
                f"**{float(np.median(map_ratios)):.2f}x** | client peak "
                f"+{res[('map', 'mpi:2')][1]:.0f} MB; MAP rows: medians of {args.map_repeats} "
                f"alternated runs; 2 vs 1 per run: "
                + ", ".join(f"{r:.2f}x" for r in map_ratios) + " |")
    names = {"topc": "top-C (C=5)", "linear": "linear scoring", "exact": "exact (all 512)"}
    for method in ("topc", "linear", "exact"):
        n = len(trials) if method != "exact" else n_ex
        loc, mp = res[(method, "local")], res[(method, "mpi:2")]
        acc = "" if method == "exact" or not corr else \
            f"; correlation with exact {corr[method]:.4f}"
        per_run = sorted(m[0] / l[0] for l, m in zip(score_runs[(method, "local")],
                                                      score_runs[(method, "mpi:2")]))
        runs_note = ("" if len(per_run) < 2 else f"; medians of {len(per_run)} alternated "
                     "runs; 2 vs 1 per run: " + ", ".join(f"{r:.2f}x" for r in per_run))
        rows.append(f"| scoring {n:,} trials ({n // args.segments} models x {args.segments} "
                    f"segments) | ipem `score_trials`, {names[method]} | local "
                    f"{loc[0]:,.0f} / mpi:2 {mp[0]:,.0f} trials/s | 2 vs 1: "
                    f"**{float(np.median(per_run)):.2f}x** | client peak "
                    f"+{max(loc[1], mp[1]):.0f} MB{acc}{runs_note} |")
    rows.append("| | engines after MAP and scoring | peak RSS "
                + " / ".join(f"{p:.0f}" for p in peaks) + " MB | | |")
    print(*rows[-7:], sep="\n", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--utterances", type=int, default=48)
    p.add_argument("--speakers", type=int, default=1000)
    p.add_argument("--models", type=int, default=400)
    p.add_argument("--segments", type=int, default=500)
    p.add_argument("--map-repeats", type=int, default=3)
    p.add_argument("--score-repeats", type=int, default=3,
                   help="alternated runs of linear and exact scoring (top-C: one)")
    p.add_argument("--only", default="extraction,map")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    import platform
    load0 = os.getloadavg()
    rows = ["### Steps around EM: extraction, MAP, scoring (`benchmarks/steps.py`)", "",
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; load "
            f"average {load0[0]:.2f} at the start.  One BLAS thread per process.", "",
            "| step | implementation | throughput | ratio | notes |", "|---|---|---|---|---|"]
    tmp = tempfile.mkdtemp(prefix="ipem-steps-")
    try:
        if "extraction" in args.only:
            extraction(args, rows, tmp)
        if "map" in args.only or "scoring" in args.only:   # scoring scores the MAP models
            map_and_scoring(args, rows, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows += ["", f"Load average {os.getloadavg()[0]:.2f} at the end (1 min)."]
    print("\n".join(rows))
    if args.out:
        from run import replace_section
        replace_section(Path(args.out), "steps", rows)
        print(f"-> {args.out}")


if __name__ == "__main__":
    main()
