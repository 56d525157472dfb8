"""``ipem demo``: the whole pipeline on a generated corpus (:func:`ipem.demo.run`)."""
from __future__ import annotations

from .options import Command, common_options, typed


def options(sp):
    """Declare the options of ``ipem demo`` on its sub-parser."""
    # --out is a directory the demo makes: no path role, so no check before the run
    sp.add_argument("--out", default="demo_output", help="directory of everything it writes")
    sp.add_argument("--engines", type=typed(int, 1), default=2, help="MPI engines to start")
    sp.add_argument("--components", type=typed(int, 1), default=64, help="UBM Gaussians")
    sp.add_argument("--speakers", type=typed(int, 2), default=None,
                    help="speakers in the generated corpus (default: every available voice)")
    sp.add_argument("--seed", type=int, default=0, help="random seed of corpus and training")
    common_options(sp, cluster=False)


def run(args):
    """Run ``ipem demo`` (:func:`ipem.demo.run`); returns its exit status."""
    from ..demo import run as run_demo
    return run_demo(args.out, engines=args.engines, components=args.components,
                    speakers=args.speakers, seed=args.seed)


DEMO = Command("demo", options, run, help="the whole pipeline on a generated corpus")
