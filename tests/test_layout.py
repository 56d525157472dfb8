"""The package's shape: layers import downwards, modules stay small, privates stay home.

These tests read ipem's source with :mod:`ast` (nothing is imported except in
the last test, which imports ``ipem`` in a fresh interpreter):

- no import cycle between ipem's modules, counting imports inside functions
  and the package ``__init__`` that importing a submodule runs;
- no module (Python, C source or header) over 600 lines;
- no private name (``_x``) or private module imported from another package
  of ipem (``ipem.a`` from ``ipem.b``);
- ``import ipem`` loads no speech, corpus, step or command-line code.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ipem"
MAX_LINES = 600


def _modules(root=PACKAGE):
    """Module name -> source path of every ``.py`` file under ``root``."""
    mods = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _imports(name, path):
    """(target module or ``module.name``, imported name or None) of each ipem import."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    here = name.split(".") if is_package else name.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "ipem" or target.startswith("ipem."):
                for alias in node.names:
                    yield target, alias.name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "ipem" or alias.name.startswith("ipem."):
                    yield alias.name, None


def import_graph(mods):
    """Module -> set of ipem modules it imports (package ``__init__`` files included).

    Importing ``ipem.a.b`` runs ``ipem/a/__init__.py`` too, so an edge to a
    submodule adds one to each enclosing package other than the importer's own
    ancestors (which are already running).
    """
    graph = {m: set() for m in mods}
    for mod, path in mods.items():
        for target, name in _imports(mod, path):
            full = f"{target}.{name}" if name else target
            hit = full if full in mods else target
            if hit not in mods:
                continue
            parts = hit.split(".")
            for i in range(2, len(parts) + 1):
                dep = ".".join(parts[:i])
                if dep != mod and not mod.startswith(dep + ".") and dep in mods:
                    graph[mod].add(dep)
    return graph


def cycles(graph):
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 10 * len(graph) + 100))
    try:
        for v in sorted(graph):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(old)
    return found


def _package(mod):
    """The top-level package of ipem a module belongs to (``ipem.a`` for ``ipem.a.b``)."""
    return ".".join(mod.split(".")[:2])


def private_imports(mods):
    """(importer, what) for each private name or module imported across packages."""
    bad = []
    for mod, path in mods.items():
        for target, name in _imports(mod, path):
            full = f"{target}.{name}" if name else target
            if _package(full) == _package(mod):
                continue
            # the private part must belong to the other package: ipem._optional (a
            # module of the root package, shared by all) is the root's public helper
            parts = full.split(".")[2:] if _package(full) != "ipem" else []
            if any(p.startswith("_") and not p.startswith("__") for p in parts):
                bad.append((mod, full))
    return bad


def test_graph_finds_a_cycle_and_a_private_import(tmp_path):
    """The checks themselves: a made-up package with a cycle and a private import."""
    pkg = tmp_path / "ipem"
    (pkg / "a").mkdir(parents=True)
    (pkg / "b").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("from .x import f\n")
    (pkg / "a" / "x.py").write_text("def f():\n    from ipem.b.y import _g\n")
    (pkg / "b" / "__init__.py").write_text("")
    (pkg / "b" / "y.py").write_text("from ..a import f\n_g = 1\n")
    mods = _modules(pkg)
    assert cycles(import_graph(mods)) == [["ipem.a", "ipem.a.x", "ipem.b.y"]]
    assert private_imports(mods) == [("ipem.a.x", "ipem.b.y._g")]


def test_no_import_cycle():
    found = cycles(import_graph(_modules()))
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_no_private_name_imported_across_packages():
    bad = private_imports(_modules())
    assert not bad, "private imports across packages: " + ", ".join(
        f"{mod} imports {what}" for mod, what in bad)


@pytest.mark.parametrize("suffix", [".py", ".c", ".h"])
def test_no_module_over_600_lines(suffix):
    long = {str(p.relative_to(PACKAGE.parent)): n for p in sorted(PACKAGE.rglob("*" + suffix))
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_import_ipem_loads_no_application_code():
    code = ("import sys, ipem; print(' '.join(sorted(m for m in sys.modules "
            "if m.split('.')[:2] in (['ipem', 'speaker'], ['ipem', 'synth'], "
            "['ipem', 'steps'], ['ipem', 'cli'], ['ipem', 'demo']))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == [], f"import ipem loaded {out}"


def unresolved_imports(mods):
    """(importer, what) for each ``from ipem... import name`` (module level or inside a
    function) whose name the target module does not have: a lazy import left behind
    when the name moved fails only when that code path runs."""
    import importlib
    bad = []
    for mod, path in mods.items():
        for target, name in _imports(mod, path):
            if name is None or name == "*":
                continue
            if f"{target}.{name}" in mods:
                continue            # a submodule
            module = importlib.import_module(target)
            if not hasattr(module, name):
                bad.append((mod, f"{target}.{name}"))
    return bad


def test_every_import_of_an_ipem_name_resolves(tmp_path):
    """Lazy imports included (the demo's were found by this); the check fails on a
    made-up module importing a name that does not exist."""
    pkg = tmp_path / "ipem_probe"
    assert unresolved_imports({"ipem.probe": _write(pkg / "probe.py", (
        "def f():\n    from ipem.speaker.scoring import no_such_name\n"))}) == [
        ("ipem.probe", "ipem.speaker.scoring.no_such_name")]
    bad = unresolved_imports(_modules())
    assert not bad, "imports of names that do not exist: " + ", ".join(
        f"{mod} imports {what}" for mod, what in bad)


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
