"""Set-up files agree with each other."""
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONDA_ONLY = {"python", "pip", "c-compiler"}


def _name(req):
    return re.split(r"[<>=!~; \[]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    py = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r): r for r in py["dependencies"] + py["optional-dependencies"]["test"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {_name(d): d for d in env["dependencies"] if isinstance(d, str)}
    conda = {k: v for k, v in conda.items() if k not in CONDA_ONLY}
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
