"""scikit-learn's own KMeans and GaussianMixture test files, run against ipem's.

Each file of the installed scikit-learn is copied with one line added that
rebinds the estimator to ipem's (:mod:`tests.sklearn_suites.harness`), and
run in a subprocess; of the tests that create an ipem estimator (those in
``harness.EXCLUDED`` aside, with their reasons) at least 95 % must pass.
In-process in both suite passes; with the estimators holding a
DirectViewController on 2 MPI engines started for the run, once.
"""
import pytest

from tests.sklearn_suites.harness import (EXCLUDED, NOT_ON_ENGINES, REQUIRED_PASS_RATE, SUITES,
                                          deselected, finish_suite, not_run, rebound_source,
                                          run_suite, start_suite)
from tests.helpers import stop_tree


def _check(result):
    print(result.summary())
    for nodeid in result.failed:
        print("FAILED", nodeid)
    assert len(result.counted) > 0, result.output
    assert result.rate >= REQUIRED_PASS_RATE, (
        f"{result.summary()}; failing:\n  " + "\n  ".join(result.failed))


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_suite_in_process(suite, tmp_path):
    _check(run_suite(suite, tmp_path))


@pytest.mark.once
def test_suites_on_engines(tmp_path):
    """Both suites at once, each on 2 engines of its own (they wait on round trips)."""
    started = []
    try:
        for suite in sorted(SUITES):
            (tmp_path / suite).mkdir()
            started.append(start_suite(suite, tmp_path / suite, engines=2))
        results = [finish_suite(s) for s in started]
    finally:
        for _, proc, *_ in started:
            stop_tree(proc)
    for result in results:
        _check(result)


def test_rebinding_adds_one_line_after_the_import():
    src = ("import numpy as np\nfrom sklearn.cluster import (\n    KMeans,\n    k_means,\n)\n"
           "X = 1\n")
    out = rebound_source(src, "KMeans").splitlines()
    assert len(out) == len(src.splitlines()) + 1
    assert out[5] == "from ipem_suite_target import ESTIMATOR as KMeans  # ipem's"
    with pytest.raises(ValueError, match="no top-level import of GaussianMixture"):
        rebound_source(src, "GaussianMixture")


def test_deselection_by_name_or_by_a_part_of_the_parametrization_id():
    entries = {"test_a", "test_b[elkan]"}
    assert deselected("test_a", "", entries) and deselected("test_a", "42-lloyd", entries)
    assert deselected("test_b", "float64-42-elkan-dense", entries)
    assert not deselected("test_b", "float64-42-lloyd-dense", entries)
    assert not deselected("test_b", "", entries)
    assert not deselected("test_b", "float64-elkans-dense", entries)   # whole parts only
    assert not deselected("test_ab", "elkan", entries)
    for suite in SUITES:     # excluded tests never run (their outcome would not count)
        assert not_run(suite, 0) == EXCLUDED[suite]
        assert not_run(suite, 2) == {**EXCLUDED[suite], **NOT_ON_ENGINES[suite]}
