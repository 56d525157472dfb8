"""Without the compiled module, ipem still imports and falls back to NumPy with a warning."""
import subprocess
import sys

CODE = r"""
import sys, warnings
sys.modules["ipem.kernels._ckernels"] = None       # as if the build had failed
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import ipem
print(ipem.BACKEND, ipem.available_backends())
print([str(w.message)[:60] for w in caught if issubclass(w.category, RuntimeWarning)])
import numpy as np
X = np.random.default_rng(0).normal(size=(200, 3))
print(ipem.GaussianMixture(2, random_state=0).fit(X).converged_)
try:
    ipem.GaussianMixture(2, backend="c").fit(X)
except ValueError as exc:
    print("ValueError:", exc)
"""


def run(env_backend=None):
    import os
    env = dict(os.environ)
    env.pop("IPEM_KERNEL_BACKEND", None)
    if env_backend:
        env["IPEM_KERNEL_BACKEND"] = env_backend
    return subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, env=env)


def test_missing_compiled_kernels_fall_back_with_warning():
    r = run()
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "numpy ['numpy']"
    assert "compiled kernels are not available" in lines[1]
    assert lines[2] == "True"
    assert "backend='c' requested but the compiled kernels are not available" in lines[3]


def test_forcing_c_without_the_module_is_an_error():
    r = run("c")
    assert r.returncode != 0 and "IPEM_KERNEL_BACKEND=c but the compiled kernels" in r.stderr


def test_forcing_numpy_needs_no_warning():
    r = run("numpy")
    assert r.returncode == 0 and r.stdout.splitlines()[1] == "[]"
