"""Scale benchmark: a UBM on 10 hours of features read from HTK files by MPI engines.

    .venv/bin/python benchmarks/scale.py [--hours 10] [--components 1024] [--engines 2]
                                         [--dir DIR] [--keep] [--out benchmarks/RESULTS.md]
                                         [--wait-quiet 0.6]
    .venv/bin/python benchmarks/scale.py --hours 100 --components 512 --engine-memory 1G
                                         [--cold] [--no-in-memory] [--out ...]

Writes ``hours`` x 360,000 frames of 60-dimensional float32 features (100 frames
per second) as 30-second HTK files (10 hours: 3.6 M frames, 0.86 GB), trains a
``components``-Gaussian diagonal UBM on them with ``engines`` MPI engines (one
BLAS thread and one kernel thread each) that read their own files, and reports
the time per EM iteration at the final size, each engine's E-step time and peak
resident memory, and the measured rate per engine in frame-Gaussian pairs per
second.  From that rate it projects 100 hours and 2048 Gaussians on 16 nodes
(each node like this machine: as many engines as cores), stating the
assumptions.  ``--out`` rewrites this script's section of the file (between
``<!-- scale:begin -->`` and ``<!-- scale:end -->``).

``--engine-memory SIZE`` trains under that budget per engine process
(``UBMTrainer(engine_memory=...)``: frames that do not fit are re-read from
the files block by block every iteration) and then, unless ``--no-in-memory``,
the same data in memory with the same blocks (the controllers' default,
``ipem.parallel.auto_block_size`` of the frames); it reports both
runs, whether the models have the same bits, each engine's peak resident
memory against the budget, and read throughput: ``dd`` over the files in one
process against ipem reading its files on every engine at once, both from
the disk (``--cold``: the page cache dropped first, root only) and from the
page cache.  That report goes to the section ``scale-stream``.

The features are synthetic and speech-like: 400 broad overlapping clusters
(centres N(0, 1), per-dimension noise scales 0.5-1.5), so a frame has many
non-negligible posteriors, as with real MFCCs.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

D = 60
FPS = 100
FILE_SECONDS = 30


def write_features(directory, hours, seed=0):
    """The HTK files of ``hours`` of speech-like frames; returns their paths."""
    from ipem import io as features
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1.0, size=(400, D))
    scales = rng.uniform(0.5, 1.5, D)
    n_total = int(round(hours * 3600 * FPS))
    per_file = FILE_SECONDS * FPS
    paths = []
    for i, start in enumerate(range(0, n_total, per_file)):
        n = min(per_file, n_total - start)
        lab = rng.integers(0, 400, n)
        X = (centres[lab] + rng.normal(size=(n, D)) * scales).astype(np.float32)
        p = os.path.join(directory, f"utt{i:05d}.htk")
        features.write(p, X, "htk")
        paths.append(p)
    return paths, n_total


def existing_features(directory, hours):
    """The paths :func:`write_features` wrote for ``hours`` (checked by count and size)."""
    n_total = int(round(hours * 3600 * FPS))
    per_file = FILE_SECONDS * FPS
    paths = [os.path.join(directory, f"utt{i:05d}.htk")
             for i in range(-(-n_total // per_file))]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise SystemExit(f"--reuse: {len(missing)} feature files missing in {directory}, e.g. "
                         f"{missing[0]}")
    return paths, n_total


def _engine_peak_mb():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train(paths, k, engines, engine_memory=None, blocks=None):
    """Fit the UBM on fresh engines; returns the model, the wall time, each engine's peak
    RSS (MB) and, for a streamed run, the rows each engine kept in memory."""
    import ipem
    from ipem.mixture.ubm import UBMTrainer
    kwargs = {} if blocks is None else {"controller_kwargs": {"block_size": blocks}}
    with ipem.MPICluster(n=engines, blas_threads=1, **kwargs) as ctrl:
        t0 = time.perf_counter()
        ubm = UBMTrainer(k, stage_iter=3, final_iter=5, tol=0.0, controller=ctrl,
                         random_state=0, engine_memory=engine_memory).fit(paths)
        wall = time.perf_counter() - t0
        peaks = [ctrl.client[e].apply_sync(_engine_peak_mb) for e in ctrl.engine_ids]
    return ubm, wall, peaks


def _engine_read(paths):
    """Seconds this engine takes to read ``paths`` with ipem's reader, and their bytes."""
    import time
    from ipem import io as features
    t0 = time.perf_counter()
    n = 0
    for ref in features.list_features(list(paths)):
        n += features.load(ref).nbytes
    return time.perf_counter() - t0, n


def drop_page_cache():
    """Write back and drop the page cache (root); False where that is not allowed."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def dd_rate(paths, cold):
    """MB/s of ``cat`` over every file (one process, one file after the other), or with
    one path, of ``dd if=PATH of=/dev/null bs=4M``; None where the cache cannot be dropped."""
    import subprocess
    if cold and not drop_page_cache():
        return None
    size = sum(os.path.getsize(p) for p in paths)
    cmd = (["dd", f"if={paths[0]}", "of=/dev/null", "bs=4M", "status=none"] if len(paths) == 1
           else ["bash", "-c", 'cat "$@" >/dev/null', "_", *paths])
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    return size / 1e6 / (time.perf_counter() - t0)


def disk_file(directory, size=2**30):
    """A file of ``size`` incompressible bytes beside the features, for ``dd``."""
    path = os.path.join(directory, "dd-probe.bin")
    rng = np.random.default_rng(1)
    with open(path, "wb") as f:
        for _ in range(size // 2**24):
            f.write(rng.bytes(2**24))
    return path


def ipem_read_rate(paths, engines, cold):
    """MB/s of ipem reading every file (each engine its half, all at once): bytes in the
    files over the slowest engine's time."""
    import ipem
    if cold and not drop_page_cache():
        return None
    parts = [paths[i::engines] for i in range(engines)]
    with ipem.MPICluster(n=engines, blas_threads=1) as ctrl:
        if cold:
            drop_page_cache()
        asyncs = [ctrl.client[e].apply_async(_engine_read, part)
                  for e, part in zip(ctrl.engine_ids, parts)]
        results = [a.get() for a in asyncs]
    size = sum(os.path.getsize(p) for p in paths)
    return size / 1e6 / max(t for t, _ in results)


def _final(ubm, k, engines):
    last = [r for r in ubm.history_ if r.stage == k]
    per_iter = statistics.median(r.time for r in last)
    spread = (max(r.time for r in last) - min(r.time for r in last)) / per_iter
    estep = [statistics.median(r.info["shard_time"][i] for r in last) for i in range(engines)]
    return last, per_iter, spread, estep


def stream_report(args, paths, n_total, t_write):
    """Streamed run (and in-memory run) of the same data: the ``scale-stream`` lines."""
    from ipem.io.streaming import parse_size
    from ipem.parallel import auto_block_size
    k, e = args.components, args.engines
    budget_mb = parse_size(args.engine_memory) / 2**20
    runs = {}
    rates = {}
    probe = disk_file(os.path.dirname(paths[0]))
    try:
        if args.cold:
            rates["`dd bs=4M` of a 1 GiB file, from the disk"] = dd_rate([probe], cold=True)
            rates["`cat` of the feature files, from the disk"] = dd_rate(paths, cold=True)
            rates[f"ipem's reader on {e} engines, from the disk"] = ipem_read_rate(paths, e,
                                                                               cold=True)
        dd_rate([probe], cold=False)
        rates["`dd bs=4M` of a 1 GiB file, from the page cache"] = dd_rate([probe], cold=False)
    finally:
        os.unlink(probe)
    dd_rate(paths, cold=False)
    rates["`cat` of the feature files, from the page cache"] = dd_rate(paths, cold=False)
    rates[f"ipem's reader on {e} engines, from the page cache"] = ipem_read_rate(paths, e,
                                                                             cold=False)
    for name, memory, blocks in ((f"streamed, `--engine-memory {args.engine_memory}`",
                                  args.engine_memory, None),
                                 ("in memory, same blocks", None, None)):
        if memory is None and args.no_in_memory:
            continue
        if args.cold:
            drop_page_cache()
        print(f"training: {name}", flush=True)
        ubm, wall, peaks = train(paths, k, e, memory, blocks)
        runs[name] = (ubm, wall, peaks) + _final(ubm, k, e)
        print(f"  {wall:.1f} s, peaks {peaks}", flush=True)
    frames_gib = n_total * D * 4 / 2**30
    size = sum(os.path.getsize(p) for p in paths)
    lines = [
        f"### Scale, streamed: {k}-Gaussian UBM on {args.hours:g} hours of features "
        f"({n_total:,} frames x {D}, {frames_gib:.2f} GiB float32 in {len(paths)} HTK files), "
        f"each engine held to {args.engine_memory}",
        "",
        f"`benchmarks/scale.py --hours {args.hours:g} --components {k} --engine-memory "
        f"{args.engine_memory}{' --cold' if args.cold else ''}`: {e} MPI engines (1 BLAS / "
        "kernel thread each) reading their own files, fresh engines for every run, the "
        f"default blocks (`block_size=\"auto\"`: {auto_block_size(n_total):,} frames); features "
        + ("written beforehand (`--reuse`). " if args.reuse else f"written in {t_write:.0f} s. ")
        + ("The page cache was dropped before each run and each read measurement, so the "
           "first iteration reads from the disk; the machine's 24 GiB then cache the files "
           "for the later iterations. " if args.cold else "")
        + f"Load average {args.load0[0]:.2f} at the start.",
        "",
        "| measure | " + " | ".join(runs) + " |",
        "|---|" + "---|" * len(runs),
        f"| whole training (split 1 -> {k}, 3 iterations per stage, 5 at {k}) | "
        + " | ".join(f"{r[1]:.0f} s, {r[0].n_iter_} iterations" for r in runs.values()) + " |",
        f"| time per iteration at K={k} (median of 5) | "
        + " | ".join(f"{r[4]:.1f} s (spread {100 * r[5]:.0f}%)" for r in runs.values()) + " |",
        f"| E-step per engine at K={k} | "
        + " | ".join(" / ".join(f"{t:.1f} s" for t in r[6]) for r in runs.values()) + " |",
        "| peak resident memory per engine (MiB) | "
        + " | ".join(" / ".join(f"{m:.0f}" for m in r[2]) for r in runs.values()) + " |",
        f"| frames per engine | {frames_gib * 1024 / e:.0f} MiB; budget {budget_mb:.0f} MiB "
        "per engine process |" + (" |" if len(runs) > 1 else ""),
    ]
    names = list(runs)
    if len(runs) == 2:
        a, b = runs[names[0]][0], runs[names[1]][0]
        same = all(np.array_equal(getattr(a, n), getattr(b, n))
                   for n in ("weights_", "means_", "covariances_"))
        lines += ["", f"Same model bits (weights, means, covariances) streamed and in memory: "
                  f"**{same}**."]
    lines += ["", f"Read throughput (the feature files: {size / 1e9:.2f} GB; ipem's HTK reader: "
              f"{e} engines at once, each its half of the files, headers and frames):", "",
              "| reader | MB/s |", "|---|---|"]
    lines += [f"| {name} | {'not allowed' if v is None else f'{v:,.0f}'} |"
              for name, v in rates.items()]
    return lines, runs


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hours", type=float, default=10.0)
    p.add_argument("--components", type=int, default=1024)
    p.add_argument("--engines", type=int, default=2)
    p.add_argument("--dir", default=None, help="where to write the features (default: a "
                   "temporary directory, removed afterwards unless --keep)")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--reuse", action="store_true",
                   help="with --dir: use the features a run with --keep left there (same "
                        "--hours; the seed is fixed)")
    p.add_argument("--out", default=None)
    p.add_argument("--engine-memory", default=None, metavar="SIZE",
                   help="train under this budget per engine process (and in memory too)")
    p.add_argument("--no-in-memory", action="store_true",
                   help="with --engine-memory: skip the in-memory run")
    p.add_argument("--cold", action="store_true",
                   help="drop the page cache before each run and read measurement (root)")
    p.add_argument("--wait-quiet", type=float, default=None, metavar="LOAD",
                   help="first wait until the 1-minute load average is below LOAD")
    args = p.parse_args(argv)
    if args.wait_quiet:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from run import wait_quiet
        wait_quiet(args.wait_quiet)
    load0 = os.getloadavg()
    directory = args.dir or tempfile.mkdtemp(prefix="ipem-scale-")
    os.makedirs(directory, exist_ok=True)
    try:
        t0 = time.perf_counter()
        if args.reuse and args.dir:
            paths, n_total = existing_features(directory, args.hours)
        else:
            paths, n_total = write_features(directory, args.hours)
        t_write = time.perf_counter() - t0
        size = sum(os.path.getsize(q) for q in paths)
        print(f"wrote {len(paths)} HTK files, {n_total:,} frames x {D}, "
              f"{size / 2**30:.2f} GiB in {t_write:.1f} s", flush=True)
        args.load0 = load0
        if args.engine_memory:
            lines, runs = stream_report(args, paths, n_total, t_write)
            ubm, wall, peaks = list(runs.values())[-1][:3]   # rate: the in-memory run
        else:
            lines = None
            ubm, wall, peaks = train(paths, args.components, args.engines)
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(directory, ignore_errors=True)
    load1 = os.getloadavg()
    k = args.components
    last = [r for r in ubm.history_ if r.stage == k]
    per_iter = statistics.median(r.time for r in last)
    spread = (max(r.time for r in last) - min(r.time for r in last)) / per_iter
    estep = [statistics.median(r.info["shard_time"][i] for r in last)
             for i in range(args.engines)]
    # frame-Gaussian pairs per second per engine (each engine holds n/engines frames)
    rate = n_total / args.engines * k / max(estep)
    frames_gb = n_total * D * 4 / 2**30
    # projection: 100 hours, 2048 Gaussians, 16 nodes with as many engines as cores here
    n100, k2, nodes = 100 * 3600 * FPS, 2048, 16
    eng_per_node = os.cpu_count() or 2
    n_eng = nodes * eng_per_node
    t_estep = n100 / n_eng * k2 / rate
    stats_mb = k2 * (2 * D + 1) * 8 / 2**20
    mem_frames = n100 * D * 4 / n_eng / 2**20
    stream_lines = lines
    lines = [
        f"### Scale: {k}-Gaussian UBM on {args.hours:g} hours of features "
        f"({n_total:,} frames x {D}, {frames_gb:.2f} GiB float32 in {len(paths)} HTK files)",
        "",
        f"`benchmarks/scale.py`, {args.engines} MPI engines (1 BLAS / kernel thread each) "
        f"reading their own files.  Load average {load0[0]:.2f} at the start, "
        f"{load1[0]:.2f} at the end (1 min).",
        "",
        "| measure | value |",
        "|---|---|",
        f"| whole training (split 1 -> {k}, 3 iterations per stage, 5 at {k}) | "
        f"{wall:.1f} s, {ubm.n_iter_} iterations |",
        f"| time per iteration at K={k} | {per_iter:.2f} s (median of {len(last)}, "
        f"spread {100 * spread:.0f}%) |",
        f"| E-step per engine at K={k} | "
        + " / ".join(f"{t:.2f} s" for t in estep) + " |",
        "| peak resident memory per engine | " + " / ".join(f"{m:.0f} MB" for m in peaks)
        + f" (its frames: {frames_gb * 1024 / args.engines:.0f} MB) |",
        f"| measured rate per engine | {rate / 1e9:.2f} G frame-Gaussian pairs per second |",
    ]
    projection = [
        f"**Projection to 100 hours and {k2} Gaussians on {nodes} nodes** "
        f"({nodes} x {eng_per_node} = {n_eng} engines, one per core as here; "
        "same per-engine rate, i.e. the same CPU and a similar posterior density):",
        "",
        f"- E-step per iteration: {n100:,} frames x {k2} Gaussians / {n_eng} engines / "
        f"{rate / 1e9:.2f} G pairs/s = **{t_estep:.1f} s**;",
        f"- statistics reduced per iteration: {k2} x {2 * D + 1} float64 = {stats_mb:.1f} MB "
        f"per engine (a tree Allreduce over {n_eng} ranks: a few tens of ms on a 10 Gbit/s "
        "network);",
        f"- frames per engine {mem_frames:.0f} MB, plus the kernel's buffers (a few MB) and "
        "the Python engine (~150 MB);",
        f"- a full split schedule (1 -> {k2}, 3 iterations per stage, 10 at the end) costs "
        f"about 3 x (1/2 + 1/4 + ...) + 10 = 13 final-size iterations: "
        f"**~{13 * t_estep / 60:.0f} min** of E-steps, plus reading "
        f"{n100 * D * 4 / 2**30:.0f} GiB once.",
    ]
    if stream_lines is None:
        lines += [""] + projection
    else:     # the projection from this run's figures
        lines = stream_lines + ["", f"Measured rate per engine at K={k} (the last run's E-steps): "
                                f"{rate / 1e9:.2f} G frame-Gaussian pairs per second.", ""
                                ] + projection
    print("\n".join(lines), flush=True)
    if args.out:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from run import replace_section
        replace_section(Path(args.out), "scale" if stream_lines is None else "scale-stream",
                        lines)
        print(f"-> {args.out}")


if __name__ == "__main__":
    main()
