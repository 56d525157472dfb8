"""Set-up files agree with each other."""
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONDA_ONLY = {"python", "pip", "c-compiler"}
#: conda-forge's name -> PyPI's, where they differ
CONDA_NAMES = {"pysoundfile": "soundfile"}
#: PyPI names that conda-forge does not have (they go in the file's pip: section)
NOT_ON_CONDA_FORGE = {"soundfile", "python-speech-features"}


def _name(req):
    return re.split(r"[<>=!~; \[]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    py = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = py["optional-dependencies"]
    assert sorted(extras) == ["bench", "mpi", "speaker", "test"]
    # the conda environment is the full working one; the benchmarks' peers are not in it
    wanted = {_name(r): r for r in py["dependencies"] + [r for name, reqs in extras.items()
                                                          if name != "bench" for r in reqs]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda_names = [_name(d) for d in env["dependencies"] if isinstance(d, str)]
    assert not NOT_ON_CONDA_FORGE & set(conda_names)
    conda = {}
    for d in env["dependencies"]:
        if isinstance(d, str) and _name(d) not in CONDA_ONLY:
            pypi = CONDA_NAMES.get(_name(d), _name(d))
            conda[pypi] = pypi + d.strip()[len(_name(d)):]
    pip = [d for entry in env["dependencies"] if isinstance(entry, dict)
           for d in entry.get("pip", [])]
    assert all(isinstance(entry, str) or list(entry) == ["pip"] for entry in env["dependencies"])
    assert not set(map(_name, pip)) & set(conda), "both from conda and from pip"
    conda.update({_name(d): d for d in pip})
    assert sorted(conda) == sorted(wanted)
    # same version floors
    for name, req in wanted.items():
        assert req.replace(" ", "").lower().replace("_", "-") == \
            conda[name].replace(" ", "").lower().replace("_", "-"), name


def test_readme_opens_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```(?:bash|sh)?\n(.*?)```", text, re.S).group(1)
    lines = [ln for ln in block.splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines == ["bash scripts/run.sh demo", "bash scripts/run.sh test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/run.sh test" in ci


def test_ci_fails_when_no_test_runs(tmp_path):
    # pytest's own contract that .ci/run relies on: no tests collected -> exit 5
    (tmp_path / "test_nothing.py").write_text("x = 1\n")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        str(tmp_path)], capture_output=True, cwd=tmp_path)
    assert r.returncode == 5


def test_kernel_backend_is_compiled_by_default():
    import ipem
    import os
    if os.environ.get("IPEM_KERNEL_BACKEND", "c") == "c" and not os.environ.get("IPEM_ALLOW_NO_C"):
        assert "c" in ipem.available_backends()


# what 'pip install ipem' needs for k-means and GMMs; the rest comes with extras
CORE = ["cffi", "ipyparallel", "matplotlib", "numpy", "scikit-learn", "scipy", "threadpoolctl",
        "tqdm"]
OPTIONAL = {"bench": ["faiss-cpu", "psutil", "scikit-learn-intelex"],
            "mpi": ["mpi4py", "mpich"],
            "speaker": ["h5py", "kaldiio", "python-speech-features", "soundfile"]}


def test_optional_packages_are_extras():
    py = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert sorted(_name(r) for r in py["dependencies"]) == CORE
    for extra, names in OPTIONAL.items():
        assert sorted(_name(r) for r in py["optional-dependencies"][extra]) == names, extra
    run = (ROOT / "scripts" / "run.sh").read_text()
    assert re.findall(r"pip install -q -e \"(.*?)\"", run) == [".[mpi,speaker,test]",
                                                                ".[mpi,speaker,test,bench]"]


NO_EXTRAS = """
import sys
for name in ("kaldiio", "h5py", "soundfile", "python_speech_features", "mpi4py"):
    sys.modules[name] = None            # as if 'pip install ipem' without extras
import numpy as np
import ipem
import ipem.cli, ipem.io, ipem.speaker   # importable too
from ipem.parallel.engine import engine_info

X = np.random.default_rng(0).normal(size=(300, 2))
assert ipem.GaussianMixture(3, random_state=0).fit(X).converged_
assert ipem.KMeans(3, random_state=0).fit(X).cluster_centers_.shape == (3, 2)
assert engine_info()[:2] == (0, 1)
ark = ipem.io.FeatureRef(sys.argv[1].replace(".scp", ".ark") + ":3", "kaldi", "u1", 4, 2)
for what, call in [("scp", lambda: ipem.io.list_features(sys.argv[1])),   # headers: before work
                   ("ark", lambda: ipem.io.load(ark)),
                   ("h5", lambda: ipem.io.describe(sys.argv[2])),
                   ("wav", lambda: __import__("ipem.speaker.frontend").speaker.frontend
                    .read_audio(sys.argv[3]))]:
    try:
        call()
    except ipem.MissingDependencyError as exc:
        print(what, exc)
    else:
        raise AssertionError(f"{what} read without its package")
"""


def test_core_works_without_the_extras(tmp_path):
    from ipem import io

    io.write_kaldi(tmp_path / "feats.ark", tmp_path / "feats.scp",
                   {"u1": np.zeros((4, 2), np.float32)})
    io.write(tmp_path / "f.h5", np.zeros((4, 2), np.float32))
    (tmp_path / "a.wav").write_bytes(b"RIFF\0\0\0\0WAVE")
    r = subprocess.run([sys.executable, "-c", NO_EXTRAS, str(tmp_path / "feats.scp"),
                        str(tmp_path / "f.h5"), str(tmp_path / "a.wav")],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "scp kaldiio is needed to read Kaldi ark/scp files: pip install 'ipem[speaker]'",
        "ark kaldiio is needed to read Kaldi ark/scp files: pip install 'ipem[speaker]'",
        "h5 h5py is needed to read and write HDF5 feature files: pip install 'ipem[speaker]'",
        "wav soundfile is needed to read audio files: pip install 'ipem[speaker]'"]


def source_files():
    """The project's files as git keeps them (tracked and new, not ignored): [relative path]."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    return sorted(rel for rel in filter(None, files) if (ROOT / rel).is_file())


def copy_sources(dst):
    """Copy :func:`source_files` to ``dst`` (a checkout without build outputs)."""
    for rel in source_files():
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        (dst / rel).write_bytes((ROOT / rel).read_bytes())


def test_sdist_holds_profiles_notebooks_and_environment(tmp_path):
    """The sdist built offline by setuptools' own PEP 517 hook from the files git keeps."""
    import tarfile

    src = tmp_path / "src"
    copy_sources(src)
    run = subprocess.run([sys.executable, "-c", "import sys; from setuptools import build_meta; "
                          "print(build_meta.build_sdist(sys.argv[1]))", str(tmp_path / "dist")],
                         cwd=src, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    name = run.stdout.split()[-1]
    with tarfile.open(tmp_path / "dist" / name) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        meta = tar.extractfile(f"{name[:-len('.tar.gz')]}/PKG-INFO").read().decode()
    for rel in ("environment.yml", "setup.py", "pyproject.toml", "MANIFEST.in",
                "ipem/kernels/_build.py", "profiles/profile_ipem_slurm/ipcluster_config.py",
                "notebooks/make_notebooks.py", "notebooks/03_speaker_verification.ipynb"):
        assert rel in names, rel
    assert not any("__pycache__" in n or n.endswith(".so") for n in names)
    assert "Classifier: Programming Language :: Python :: 3" in meta


WHEEL_IMPORT = """
import sys, ipem, ipem.kernels._ckernels as ck
assert ipem.__file__.startswith(sys.argv[1]) and ck.__file__.startswith(sys.argv[1]), ipem.__file__
assert ipem.available_backends() == ["c", "numpy"] and ipem.BACKEND == "c"
X = __import__("numpy").random.default_rng(0).normal(size=(500, 3))
print(ipem.GaussianMixture(2, random_state=0).fit(X).lower_bound_)
"""


@pytest.mark.once
def test_wheel_is_abi3_with_the_kernels_and_no_stale_files(tmp_path):
    """The wheel pip builds offline from a checkout with an earlier build's leftovers."""
    import sysconfig
    import zipfile

    src = tmp_path / "src"
    copy_sources(src)
    # what an earlier build leaves in build/lib* after a module moved away (and is not to ship)
    old = src / "build" / f"lib.{sysconfig.get_platform()}-{sys.implementation.cache_tag}" / "ipem"
    for rel in ("speaker/sources.py", "kernels/ipem_removed.h"):
        (old / rel).parent.mkdir(parents=True, exist_ok=True)
        (old / rel).write_text("# stale\n")
    run = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps",
                          "--no-index", "-q", "-w", str(tmp_path / "dist"), str(src)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    floor = re.fullmatch(r">=3\.(\d+)", tomllib.loads((ROOT / "pyproject.toml").read_text())
                         ["project"]["requires-python"]).group(1)
    plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    assert wheel.name == f"ipem-0.1.0-cp3{floor}-abi3-{plat}.whl"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        tags = [ln for ln in zf.read("ipem-0.1.0.dist-info/WHEEL").decode().splitlines()
                if ln.startswith("Tag:")]
        zf.extractall(tmp_path / "site")
    assert tags == [f"Tag: cp3{floor}-abi3-{plat}"]
    # exactly the package's sources (C sources and every header included) plus one abi3 module
    package = {rel for rel in source_files() if rel.startswith("ipem/")}
    assert {"ipem/kernels/ipem_kernels.c", "ipem/kernels/ipem_kernels.h"} <= package
    assert {n for n in names if n.startswith("ipem/")} == package | {
        "ipem/kernels/_ckernels.abi3.so"}
    # the kernels load from the unpacked wheel (not from this checkout) and fit
    run = subprocess.run([sys.executable, "-c", WHEEL_IMPORT, str(tmp_path / "site")],
                         capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(tmp_path / "site"),
                              "IPEM_KERNEL_BACKEND": ""})
    assert run.returncode == 0, run.stderr
    assert np.isfinite(float(run.stdout.split()[-1]))
