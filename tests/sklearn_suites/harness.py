"""Run scikit-learn's own test files against ipem's estimators.

:func:`run_suite` finds a test file in the *installed* scikit-learn, copies it
into a work directory with one line added after the import of the estimator
(``from ipem_suite_target import ESTIMATOR as KMeans``), and runs pytest on
the copy in a subprocess, with scikit-learn's conftest loaded as a plugin (its
fixtures: ``global_random_seed``...).  A small conftest in the work directory
(:mod:`tests.sklearn_suites.suite_plugin`) records which tests created an ipem
estimator and the outcome of every test.

Usable as a script for a quick measure::

    python -m tests.sklearn_suites.harness kmeans [--engines 2] [-k EXPR]
"""
from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

#: suite -> (scikit-learn test module, ipem estimator rebound in it)
SUITES = {
    "kmeans": ("sklearn.cluster.tests.test_k_means", "KMeans"),
    "gmm": ("sklearn.mixture.tests.test_gaussian_mixture", "GaussianMixture"),
}

#: tests that create an ipem estimator but test scikit-learn's private helpers or
#: private methods (out of scope: ipem has other internals), or a behaviour ipem
#: deliberately replaces (tested in ipem's own tests instead); name -> reason.  Not run at
#: all (deselected): their outcome would not count.
EXCLUDED = {
    "kmeans": {
        "test_sample_weight_init": "calls the private method KMeans._init_centroids "
                                   "(ipem: tests/cluster/test_kmeans.py tests weighted init)",
        "test_sample_weight_zero": "calls the private method KMeans._init_centroids "
                                   "(ipem: tests/cluster/test_kmeans.py tests zero weights)",
        "test_n_init_auto": "reads the private attribute _n_init (ipem: n_init='auto' is "
                            "tested through the number of initialisations made)",
        "test_kmeans_init_auto_with_initial_centroids": "reads the private attribute _n_init "
                                                         "(as test_n_init_auto)",
        "test_kmeans_verbose": "matches scikit-learn's printed verbose lines; ipem logs "
                               "records instead of printing (library code never prints)",
    },
    "gmm": {
        "test_gaussian_mixture_all_init_does_not_estimate_gaussian_parameters":
            "monkeypatches scikit-learn's private _estimate_gaussian_parameters to count "
            "its calls; ipem's M-step is its own",
        "test_gaussian_mixture_precisions_init":
            "its helper sets parameters through the private methods _set_parameters and "
            "_initialize (ipem: precisions_init is tested in tests/mixture/"
            "test_gaussian_mixture.py)",
    },
}

#: Not run on engines (they run in-process, in both suite passes): hundreds of fits of one or
#: a few iterations on 50-300 frames, where an engine run measures round trips, not
#: conformance, and takes a third of the engine run's time; and runs that repeat on engines,
#: computation for computation, what other tests of the engine run do.  ``name[part]``: the
#: parametrizations of ``name`` whose id has ``part`` (between dashes).
_SAME_AS_LLOYD = ("ipem's algorithm='elkan' runs the very Lloyd iterations of 'lloyd' "
                  "(ipem/cluster/kmeans.py): on engines the lloyd parametrizations run the "
                  "same computation")
NOT_ON_ENGINES = {
    "kmeans": {
        "test_kmeans_elkan_results": "fits lloyd and elkan and compares them, 24 ways (" +
                                     _SAME_AS_LLOYD + ")",
        "test_kmeans_predict[elkan]": _SAME_AS_LLOYD,
        "test_kmeans_convergence[elkan]": _SAME_AS_LLOYD,
    },
    "gmm": {
        "test_init": "165 fits of one iteration (n_init=1 vs 10, 15 seeds): runs in-process",
        "test_monotonic_likelihood": "one-iteration warm-start refits until converged: "
                                     "runs in-process (tests/mixture has an engine version)",
        "test_gaussian_mixture_fit_best_params":
            "80 fits (10 single-initialisation fits and one n_init=10 fit per covariance "
            "type) to check the driver's choice of the best initialisation; n_init on engines "
            "is run by test_multiple_init and test_gaussian_mixture_fit_predict_n_init",
        "test_gaussian_mixture_fit":
            "80 fits (n_init=20 per covariance type) checked against the ground truth: a "
            "check of the EM result, which tests/parallel/test_invariance.py shows is bit for "
            "bit the in-process one on 2 engines for every covariance type",
    },
}

REQUIRED_PASS_RATE = 0.95


@dataclass
class SuiteResult:
    """Outcomes of one run: test node id -> outcome, for the tests counted."""

    suite: str
    counted: dict = field(default_factory=dict)
    excluded: dict = field(default_factory=dict)
    not_ipem: int = 0
    returncode: int = 0
    output: str = ""

    @property
    def passed(self):
        return sorted(k for k, v in self.counted.items() if v in ("passed", "xfailed"))

    @property
    def failed(self):
        return sorted(k for k, v in self.counted.items() if v == "failed")

    @property
    def skipped(self):
        return sorted(k for k, v in self.counted.items() if v == "skipped")

    @property
    def rate(self):
        ran = len(self.passed) + len(self.failed)
        return len(self.passed) / ran if ran else 0.0

    def summary(self):
        return (f"{self.suite}: {len(self.passed)}/{len(self.passed) + len(self.failed)} "
                f"passed ({100 * self.rate:.1f} %), {len(self.skipped)} skipped, "
                f"{len(self.excluded)} excluded, {self.not_ipem} without an ipem estimator")


def source_of(module):
    """Path of a module of the installed scikit-learn, found without importing it."""
    import importlib.util
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"{module} is not installed (scikit-learn without tests?)")
    return Path(spec.origin)


def rebound_source(text, name):
    """``text`` with ``from ipem_suite_target import ESTIMATOR as <name>`` added after
    the (last) top-level import that binds ``name``."""
    tree = ast.parse(text)
    line = None
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)) and any(
                (a.asname or a.name) == name for a in node.names):
            line = node.end_lineno
    if line is None:
        raise ValueError(f"no top-level import of {name} to rebind")
    lines = text.splitlines(keepends=True)
    lines.insert(line, f"from ipem_suite_target import ESTIMATOR as {name}  # ipem's\n")
    return "".join(lines)


def run_suite(suite, workdir, *, engines=0, select=None, timeout=1500, per_test_timeout=120,
              durations=None):
    """Run one scikit-learn suite against ipem in a subprocess (:func:`start_suite`, then
    :func:`finish_suite`).

    Parameters
    ----------
    suite : {"kmeans", "gmm"}
    workdir : path-like
        An empty directory for the copy, its conftest and the report.
    engines : int
        0: in-process; n: the estimators default to a DirectViewController on
        ``n`` MPI engines started for the run.
    select : str, optional
        A pytest ``-k`` expression.
    durations : int, optional
        Passed to pytest's ``--durations`` (the slowest tests in the output; 0: all).

    Returns
    -------
    SuiteResult
    """
    return finish_suite(start_suite(suite, workdir, engines=engines, select=select,
                                    per_test_timeout=per_test_timeout, durations=durations),
                        timeout=timeout)


def start_suite(suite, workdir, *, engines=0, select=None, per_test_timeout=120,
                durations=None):
    """Start :func:`run_suite`'s subprocess; :func:`finish_suite` waits for it.  Suites on
    engines spend their time waiting on round trips, so two of them can run at once."""
    module, name = SUITES[suite]
    workdir = Path(workdir)
    src = source_of(module)
    test_file = workdir / src.name
    test_file.write_text(rebound_source(src.read_text(), name))
    shutil.copy(HERE / "suite_plugin.py", workdir / "conftest.py")
    shutil.copy(HERE / "suite_target.py", workdir / "ipem_suite_target.py")
    (workdir / "pytest.ini").write_text(
        f"[pytest]\ntimeout = {per_test_timeout}\nfilterwarnings =\n"
        "    ignore::DeprecationWarning\n")
    report = workdir / "report.json"
    env = dict(os.environ, IPEM_SUITE_ESTIMATOR=name, IPEM_SUITE_ENGINES=str(engines),
               IPEM_SUITE_DESELECT=",".join(not_run(suite, engines)),
               IPEM_SUITE_REPORT=str(report), PYTHONPATH=os.pathsep.join(
                   [str(workdir), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
           "-p", "sklearn.conftest", "-c", str(workdir / "pytest.ini"),
           "--rootdir", str(workdir), "-o", "addopts=", "--no-header", "-rN", str(test_file)]
    if select:
        cmd += ["-k", select]
    if durations is not None:
        cmd += [f"--durations={durations}"]
    out = open(workdir / "stdout.txt", "w+")
    err = open(workdir / "stderr.txt", "w+")
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=out, stderr=err, text=True)
    return suite, proc, out, err, report, engines


def finish_suite(started, timeout=1500):
    """Wait for a suite :func:`start_suite` started; its :class:`SuiteResult`."""
    suite, proc, out, err, report, engines = started
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    finally:
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
        out.close()
        err.close()
    result = SuiteResult(suite, returncode=proc.returncode,
                         output=stdout[-20000:] + stderr[-5000:])
    if not report.exists():
        raise RuntimeError(f"the {suite} suite wrote no report:\n{result.output}")
    data = json.loads(report.read_text())
    used = set(data["ipem"])
    result.excluded.update(not_run(suite, engines))
    for nodeid, outcome in data["outcomes"].items():
        if nodeid not in used:
            result.not_ipem += 1
        else:
            result.counted[nodeid] = outcome
    return result


def deselected(name, param_id, entries):
    """Whether the test function ``name`` with parametrization id ``param_id`` ("" when not
    parametrized) is one of ``entries``: ``name``, or ``name[part]`` with ``part`` one of the
    id's dash-separated parts."""
    return name in entries or any(f"{name}[{part}]" in entries
                                  for part in param_id.split("-") if part)


def not_run(suite, engines):
    """The tests of ``suite`` deselected in a run (name or ``name[part]`` -> reason): the
    excluded ones (their outcome would not count), and on engines :data:`NOT_ON_ENGINES`."""
    return {**EXCLUDED[suite], **(NOT_ON_ENGINES[suite] if engines else {})}


def main(argv=None):
    import argparse
    import tempfile
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("suite", choices=sorted(SUITES))
    p.add_argument("--engines", type=int, default=0)
    p.add_argument("-k", dest="select")
    p.add_argument("-v", action="store_true", help="print each counted test's outcome")
    p.add_argument("--durations", type=int, metavar="N",
                   help="print pytest's N slowest tests of the suite (0: all)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        res = run_suite(args.suite, tmp, engines=args.engines, select=args.select,
                        durations=args.durations)
    if args.durations is not None:
        start = res.output.find("slowest")
        print(res.output[res.output.rfind("\n", 0, start) + 1:] if start >= 0 else res.output)
    for nodeid in (sorted(res.counted) if args.v else res.failed):
        print(f"{res.counted[nodeid]:8s} {nodeid}")
    print(res.summary())


if __name__ == "__main__":
    main()
