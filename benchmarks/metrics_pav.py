"""PAV from SciPy against ipem's earlier Python loops, on many trials.

    .venv/bin/python benchmarks/metrics_pav.py [--trials 5000000] [--repeat 1] [--decimals 3]

``rocch_eer`` and ``min_cllr`` run pool-adjacent-violators over every trial
(rocch) or every unique score (min_cllr).  They used a Python loop; they now
use :func:`scipy.optimize.isotonic_regression`.  The loops are kept as the
reference in ``tests/speaker/test_metrics.py``, which also checks the numbers
agree; this prints the time of each and the ratio old / new (no claim is
asserted anywhere).  Scores: Gaussian targets N(2, 1) and non-targets
N(0, 1.5), 1 target in 10, rounded to 3 decimals (ties, as real score files
have; ``--decimals -1``: not rounded, every score unique).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests package

from ipem.speaker.metrics import min_cllr, rocch_eer  # noqa: E402
from tests.speaker.test_metrics import reference_min_cllr, reference_rocch_eer  # noqa: E402


def _best(func, args, repeat):
    times, value = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = func(*args)
        times.append(time.perf_counter() - t0)
    return min(times), value


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=5_000_000)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--decimals", type=int, default=3, help="round the scores (-1: do not)")
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    n_tar = args.trials // 10
    tar, non = rng.normal(2.0, 1.0, n_tar), rng.normal(0.0, 1.5, args.trials - n_tar)
    if args.decimals >= 0:
        tar, non = np.round(tar, args.decimals), np.round(non, args.decimals)
    print(f"{args.trials} trials ({n_tar} target), decimals {args.decimals}, "
          f"best of {args.repeat}")
    print(f"{'metric':<10} {'old loop s':>10} {'SciPy s':>9} {'old/new':>8}  value (old, new)")
    for name, new, old in (("rocch_eer", rocch_eer, reference_rocch_eer),
                           ("min_cllr", min_cllr, reference_min_cllr)):
        t_old, v_old = _best(old, (tar, non), args.repeat)
        t_new, v_new = _best(new, (tar, non), args.repeat)
        print(f"{name:<10} {t_old:>10.2f} {t_new:>9.2f} {t_old / t_new:>8.1f}  "
              f"{v_old:.12g}, {v_new:.12g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
