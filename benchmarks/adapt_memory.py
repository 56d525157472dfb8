"""Memory and time of MAP adaptation of many speakers: local vs 2 MPI engines.

    .venv/bin/python benchmarks/adapt_memory.py [--speakers 500,2000] [--components 512]

For each number of speakers S, every speaker has one feature file (300 frames x
60, float32, written once to a temporary directory); a diagonal UBM with K
components is adapted to all of them with ``ipem.speaker.adapt_speakers``
(models written to a directory), through

* ``local``: a LocalController in this process, BLAS pinned to one thread;
* ``mpi:2``: an MPICluster of 2 engines (one BLAS thread each).

Reported per run: wall seconds, speakers per second, and the growth of the
resident memory (RSS) of the client (this process, after ``malloc_trim`` so that
heap memory freed but cached by glibc is not counted) and of the ipyparallel
controller process during the adaptation.  The UBM is broadcast to the
engines once and referred to by key, and results are purged as they arrive,
so neither should grow with S (the target: flat beyond the models themselves,
which go to disk here).  Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import psutil
from threadpoolctl import threadpool_limits

import ipem
from ipem.speaker import adapt_speakers

D, FRAMES = 60, 300


def rss(proc):
    return proc.memory_info().rss / 2**20


def controller_process(client_pid):
    """The ipyparallel controller process started by this client's Cluster."""
    for p in psutil.Process(client_pid).children(recursive=True):
        try:
            cmd = " ".join(p.cmdline())
        except psutil.Error:
            continue
        if "ipyparallel.controller" in cmd or "ipcontroller" in cmd:
            return p
    return None


def make_speakers(directory, n, seed=0):
    rng = np.random.default_rng(seed)
    enroll = {}
    for s in range(n):
        path = os.path.join(directory, f"s{s:05d}.npy")
        if not os.path.exists(path):
            np.save(path, rng.normal(size=(FRAMES, D)).astype(np.float32))
        enroll[f"s{s:05d}"] = [path]
    return enroll


def trim():
    """Give freed heap memory back to the system (glibc), so RSS shows what is still held."""
    import ctypes
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def run(ctrl, ubm, enroll, out_dir, ctl_proc):
    me = psutil.Process()
    trim()
    c0 = rss(me)
    k0 = rss(ctl_proc) if ctl_proc else float("nan")
    t0 = time.perf_counter()
    adapt_speakers(ubm, enroll, out_dir=out_dir, controller=ctrl, progress=False)
    wall = time.perf_counter() - t0
    trim()
    c1 = rss(me)
    k1 = rss(ctl_proc) if ctl_proc else float("nan")
    return wall, c1 - c0, k1 - k0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--speakers", default="500,2000")
    ap.add_argument("--components", type=int, default=512)
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.speakers.split(",")]
    rng = np.random.default_rng(1)
    K = args.components
    ubm = {"weights": np.full(K, 1.0 / K), "means": rng.normal(size=(K, D)),
           "covariances": np.ones((K, D))}
    ubm_mb = (K * (2 * D + 1) * 8) / 2**20
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        feats = os.path.join(tmp, "feats")
        os.makedirs(feats)
        enroll_all = make_speakers(feats, max(sizes))
        with ipem.MPICluster(n=2, blas_threads=1) as mpi:
            ctl_proc = controller_process(os.getpid())
            for S in sizes:
                enroll = dict(list(enroll_all.items())[:S])
                for name, ctrl in (("local", ipem.LocalController(1)), ("mpi:2", mpi)):
                    out = os.path.join(tmp, f"models_{name.replace(':', '')}_{S}")
                    with threadpool_limits(1):
                        wall, dc, dk = run(ctrl, ubm, enroll, out,
                                           ctl_proc if name != "local" else None)
                    rows.append((S, name, wall, S / wall, dc, dk))
                    print(f"S={S} {name}: {wall:.2f} s, {S / wall:.0f} speakers/s, client "
                          f"+{dc:.1f} MiB, controller +{dk:.1f} MiB", file=sys.stderr)
    print(f"UBM: K={K}, D={D} ({ubm_mb:.2f} MiB); {FRAMES} frames per speaker; "
          f"{os.cpu_count()} CPUs\n")
    print("| speakers | where | seconds | speakers/s | client RSS growth (MiB) | "
          "controller RSS growth (MiB) |")
    print("|---|---|---|---|---|---|")
    for S, name, wall, rate, dc, dk in rows:
        ctl = "-" if np.isnan(dk) else f"{dk:.1f}"
        print(f"| {S} | {name} | {wall:.2f} | {rate:.0f} | {dc:.1f} | {ctl} |")


if __name__ == "__main__":
    main()
