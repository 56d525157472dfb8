"""Helpers that test modules import (fixtures live in conftest.py)."""
import os

import numpy as np
import pytest

from ipem.kernels import _numpy as NPK

try:
    from ipem.kernels import _c as CK
    C_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - depends on the build
    CK = None
    C_IMPORT_ERROR = exc

ALLOW_NO_C = os.environ.get("IPEM_ALLOW_NO_C", "") == "1"


def kernels(name):
    """The kernel module of backend ``name``; a missing compiled module FAILS the
    test unless IPEM_ALLOW_NO_C=1 (then it is skipped)."""
    if name == "numpy":
        return NPK
    if CK is None:
        msg = f"compiled kernels (ipem.kernels._c) not importable: {C_IMPORT_ERROR}"
        if ALLOW_NO_C:
            pytest.skip(msg + " (IPEM_ALLOW_NO_C=1)")
        pytest.fail(msg + "; build them (pip install -e .) or set IPEM_ALLOW_NO_C=1")
    return CK


def blobs(n=600, d=3, k=3, seed=0, dtype=np.float64):
    """Well-separated Gaussian blobs with unequal spreads."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 6, size=(k, d))
    scales = np.linspace(0.5, 2.0, k)
    sizes = np.full(k, n // k)
    sizes[: n - sizes.sum()] += 1
    X = np.concatenate([rng.normal(c, s, size=(m, d)) for c, s, m in zip(centers, scales, sizes)])
    rng.shuffle(X)
    return X.astype(dtype)
