"""Copied into the work directory of a scikit-learn suite run as ``conftest.py``.

It records, for every test of the copied scikit-learn file, its outcome and
whether it created (or was handed) an ipem estimator, and writes them as JSON
to ``$IPEM_SUITE_REPORT`` at the end of the session.  With
``IPEM_SUITE_ENGINES=<n>`` it starts ``n`` MPI engines for the run and makes the
rebound estimator a subclass whose default ``controller`` is a
DirectViewController on them (see :mod:`ipem_suite_target`).
"""
import functools
import json
import os

import pytest

import ipem
import ipem_suite_target as target
from tests.sklearn_suites.harness import deselected

_used = set()
_current = [None]
_outcomes = {}


def _track(cls):
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        if _current[0] is not None:
            _used.add(_current[0])
        init(self, *args, **kwargs)

    cls.__init__ = __init__


def pytest_configure(config):
    n = int(os.environ.get("IPEM_SUITE_ENGINES", "0"))
    if n:
        target.start_engines(n)
    _track(getattr(ipem, target.NAME))


def pytest_unconfigure(config):
    target.stop_engines()


def pytest_collection_modifyitems(config, items):
    # IPEM_SUITE_DESELECT: tests not run here (harness.not_run): function names, or
    # name[part] for the parametrizations of name whose id has part between dashes
    names = set(filter(None, os.environ.get("IPEM_SUITE_DESELECT", "").split(",")))
    if names:
        dropped = [t for t in items if deselected(t.originalname, _param_id(t), names)]
        config.hook.pytest_deselected(items=dropped)
        items[:] = [t for t in items if t not in dropped]
    # estimators created at collection (parametrize values) count for their tests
    cls = getattr(ipem, target.NAME)
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if any(isinstance(v, cls) or v is target.ESTIMATOR for v in params.values()):
            _used.add(item.nodeid)


def _param_id(item):
    callspec = getattr(item, "callspec", None)
    return callspec.id if callspec else ""


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _current[0] = item.nodeid
    try:
        return (yield)
    finally:
        _current[0] = None


def pytest_runtest_logreport(report):
    prev = _outcomes.get(report.nodeid)
    if report.failed:
        _outcomes[report.nodeid] = "failed"
    elif report.skipped and prev != "failed":
        _outcomes[report.nodeid] = "xfailed" if hasattr(report, "wasxfail") else "skipped"
    elif report.when == "call" and prev is None:
        _outcomes[report.nodeid] = "passed"


def pytest_sessionfinish(session):
    path = os.environ.get("IPEM_SUITE_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump({"outcomes": _outcomes, "ipem": sorted(_used)}, f)
