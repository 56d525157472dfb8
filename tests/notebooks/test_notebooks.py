"""What the notebooks show: they run headlessly against real MPI engines, their plots are
images without any ``%matplotlib`` magic, their output holds no engine logs, warnings or
text-only figures, and they call public functions only."""
import ast
import base64
import re
import subprocess
import sys
import textwrap
import types
import warnings
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

import ipem
import ipem.io
import ipem.ivector
import ipem.speaker
import ipem.speaker.scorefiles
import ipem.speaker.utterances
import ipem.steps
import ipem.synth
from ipem import plotting
from ipem import progress as progress_mod
from ipem.em.records import IterationRecord

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = {
    "01": ["bit-identical: True", "Allreduce model identical: True",
           "BlockGroup(index=1, offset=20224, X=(19776, 12) float32, blocks=16)",
           "rank 1 of 2", "shard 1 holds frames 20224 to 40000", "[stdout:1] []"],
    "02": ["rank 1: 12 files", "all variances positive: True", "same model: True"],
    "03": ["EER", "minDCF", "same scores on engines and locally: True",
           "same T on engines and locally: True", "i-vector + PLDA", "actDCF"],
}
#: cells whose output must include a PNG: the live plots and the DET curve
IMAGE_CELLS = ("LivePlot(", "plot_det(")
#: text that must not appear in any output
FORBIDDEN = ("DEBUG", "IProgress", "[IPEngine", "Output for ipengine", "engine set stopped",
             "Warning", "<AsyncResult")
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: modules whose public names notebooks may use
PUBLIC_MODULES = {m.__name__: m for m in (ipem, ipem.io, ipem.speaker, ipem.speaker.scorefiles,
                                           ipem.speaker.utterances, ipem.steps, ipem.ivector,
                                           ipem.synth)}


def execute(nb, path):
    """Run ``nb`` in a plain python3 kernel (no magics, default matplotlib backend)."""
    NotebookClient(nb, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(path)}}).execute()
    return nb


def output_text(output):
    if output.get("output_type") == "stream":
        return output.get("text", "")
    if output.get("output_type") == "error":
        return "\n".join(output.get("traceback", []))
    return output.get("data", {}).get("text/plain", "")


#: The one warning a notebook may show: ipem starting its MPI engines a second time after
#: mpiexec died while they started (the mpich wheel's intermittent UCX ``MPI_Init`` failure,
#: pmodels/mpich#7417, seen about once in a full CI run); ipem's own retry is what users see.
MPI_START_RETRY = re.compile(r"starting the MPI engines failed \(EngineError: mpiexec \(pid "
                             r"\d+\) died while the engines started\); starting them again\n")


def check_clean(outputs):
    """No errors, nothing on stderr (but one MPI start retry), no logs or warnings, no
    figure shown as its repr."""
    assert not [o for o in outputs if o.get("output_type") == "error"], \
        [output_text(o) for o in outputs if o.get("output_type") == "error"]
    stderr = [o.get("text", "") for o in outputs if o.get("name") == "stderr"]
    if len(stderr) == 1 and MPI_START_RETRY.fullmatch(stderr[0]):
        stderr = []
    assert not stderr, stderr
    for o in outputs:
        text = output_text(o)
        bad = [word for word in FORBIDDEN if word in text]
        assert not bad, f"{bad} in output: {text[:2000]}"
        data = o.get("data", {})
        assert not (set(data) == {"text/plain"} and re.match(r"<\w*Figure size", text)), \
            f"a figure shown as text: {text}"


RETRY = ("starting the MPI engines failed (EngineError: mpiexec (pid 22035) died while the "
         "engines started); starting them again\n")


@pytest.mark.parametrize("output", [
    {"output_type": "stream", "name": "stdout", "text": "[Cluster] DEBUG | Loading profile"},
    {"output_type": "stream", "name": "stdout", "text": "Output for ipengine-1-2:\n..."},
    {"output_type": "stream", "name": "stderr", "text": "TqdmWarning: IProgress not found."},
    {"output_type": "stream", "name": "stderr", "text": "anything at all"},
    {"output_type": "display_data", "data": {"text/plain": "<Figure size 900x360 with 2 Axes>"}},
    {"output_type": "execute_result", "data": {"text/plain": "<AsyncResult(%px): pending>"}},
    {"output_type": "error", "ename": "KeyError", "traceback": []},
    {"output_type": "stream", "name": "stderr", "text": RETRY.replace("died while the engines "
                                                                       "started", "exited 1")},
    {"output_type": "stream", "name": "stderr", "text": RETRY + "and then something else\n"},
], ids=["debug-log", "engine-output", "iprogress", "stderr", "figure-as-text", "pending-px",
        "error", "another-mpi-failure", "retry-and-more"])
def test_check_clean_rejects(output):
    with pytest.raises(AssertionError):
        check_clean([nbformat.from_dict(output)])


def test_check_clean_allows_one_mpi_start_retry_only():
    line = {"output_type": "stream", "name": "stderr", "text": RETRY}
    check_clean([nbformat.from_dict(line)])
    with pytest.raises(AssertionError):
        check_clean([nbformat.from_dict(line), nbformat.from_dict(line)])


def test_check_clean_accepts_a_figure_with_its_image():
    check_clean([nbformat.from_dict({"output_type": "execute_result", "data": {
        "text/plain": "<NotebookFigure size 600x600 with 1 Axes>", "image/png": "iVBOR"}})])


def pngs(cell):
    """The PNG images a cell's outputs hold (decoded)."""
    images = [base64.b64decode(o["data"]["image/png"]) for o in cell.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert all(img.startswith(PNG_SIGNATURE) for img in images)
    return images


#: cells the test runs after a notebook's own (same kernel), to look inside its figures
PROBES = {
    "03": """det_fig = [v for v in Out.values() if hasattr(v, "axes")][-1]
print("\\nDET title:", det_fig.axes[0].get_title())  # a line of its own after any output
for t in det_fig.axes[0].get_legend().get_texts():
    print("DET legend:", t.get_text())""",
}


def table_and_legend_problems(text):
    """Where notebook 03's printed table and its DET figure disagree: [message].

    ``text`` is the notebook's output with :data:`PROBES` ``["03"]``'s: the table's
    ``name EER x.xx %`` rows must be the legend's ``name (EER x.xx%)`` entries, and the
    trial counts the table states must be the ones in the DET title.
    """
    table = dict(re.findall(r"^(\S[^\n]*?) +EER +(\d+\.\d\d) %", text, re.M))
    legend = dict(re.findall(r"^DET legend: (.*) \(EER (\d+\.\d\d)%\)$", text, re.M))
    problems = []
    if not table or table != legend:
        problems.append(f"table EERs {table} != DET legend EERs {legend}")
    counts = re.search(r"^evaluation half: (\d+) target and (\d+) non-target trials", text, re.M)
    title = re.search(r"^DET title: .*?(\d+) target, (\d+) non-target", text, re.M)
    if counts is None or title is None or counts.groups() != title.groups():
        problems.append(f"trial counts: table {counts and counts.groups()}, "
                        f"DET title {title and title.groups()}")
    return problems


@pytest.mark.mpi
@pytest.mark.once
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path):
    ipem.parallel.ensure_mpiexec()
    nb = nbformat.read(path, as_version=4)
    probe = PROBES.get(path.stem[:2])
    if probe:
        nb.cells.append(new_code_cell(probe))
    nb = execute(nb, tmp_path)
    code = [c for c in nb.cells if c.cell_type == "code"]
    outputs = [o for c in code for o in c.get("outputs", [])]
    check_clean(outputs)
    text = "".join(output_text(o) for o in outputs)
    for expected in EXPECTED[path.stem[:2]]:
        assert expected in text
    if path.stem.startswith("03"):       # the table and the DET beside it: the same trials
        assert table_and_legend_problems(text) == []
    image_cells = [c for c in code if any(s in c.source for s in IMAGE_CELLS)]
    assert image_cells
    for cell in image_cells:
        images = pngs(cell)
        assert len(images) == 1, f"expected one image (updated in place): {cell.source}"
        assert len(images[0]) > 5000


AGREE = """trials: 36 target, 396 non-target
EER          8.33 %   (ROCCH-EER 5.75 %)
GMM-UBM, top-5     EER  8.33 %  minDCF 0.0123  actDCF 0.0456
i-vector + PLDA    EER 12.50 %  minDCF 0.0200  actDCF 0.0300
evaluation half: 24 target and 264 non-target trials
DET title: DET, evaluation half (24 target, 264 non-target trials)
DET legend: GMM-UBM, top-5 (EER 8.33%)
DET legend: i-vector + PLDA (EER 12.50%)
"""


@pytest.mark.parametrize("change", [
    ("DET legend: GMM-UBM, top-5 (EER 8.33%)", "DET legend: GMM-UBM, top-5 (EER 7.64%)"),
    ("(24 target, 264", "(36 target, 396"),
    ("DET title: DET, evaluation half (24 target, 264 non-target trials)", "DET title: DET"),
    ("evaluation half: 24 target and 264 non-target trials\n", ""),
], ids=["eer", "counts", "title-without-counts", "table-without-counts"])
def test_table_and_legend_check(change):
    assert table_and_legend_problems(AGREE) == []
    assert table_and_legend_problems(AGREE.replace(*change))


def _names(node):
    """``a.b.c`` -> ["a", "b", "c"]; None for anything but a chain of names."""
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        head = _names(node.value)
        return None if head is None else head + [node.attr]
    return None


def _check_public(module, name, where):
    assert not name.startswith("_") or name == "__version__", f"{where}: private {name}"
    assert name in getattr(module, "__all__", ()) or name == "__version__" or \
        f"{module.__name__}.{name}" in PUBLIC_MODULES, \
        f"{where}: {module.__name__}.{name} is not public"


def public_api_problems(source):
    """Uses of ipem in ``source`` (a notebook cell) that are not public: [message]."""
    from IPython.core.inputtransformer2 import TransformerManager

    tree = ast.parse(TransformerManager().transform_cell(source))
    aliases = {}           # local name -> public ipem module
    problems = []

    def check(module, name, where):
        try:
            _check_public(module, name, where)
        except AssertionError as exc:
            problems.append(str(exc))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] != "ipem":
                    continue
                if alias.name not in PUBLIC_MODULES:
                    problems.append(f"import {alias.name}: not a public module")
                aliases[alias.asname or "ipem"] = PUBLIC_MODULES.get(
                    alias.name if alias.asname else "ipem", ipem)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "ipem":
            module = PUBLIC_MODULES.get(node.module)
            if module is None:
                problems.append(f"from {node.module} import ...: not a public module")
                continue
            for alias in node.names:
                check(module, alias.name, f"from {node.module} import")
                sub = PUBLIC_MODULES.get(f"{node.module}.{alias.name}")
                if sub is not None:
                    aliases[alias.asname or alias.name] = sub
    for node in ast.walk(tree):
        names = _names(node) if isinstance(node, ast.Attribute) else None
        if not names or names[0] not in aliases:
            continue
        module = aliases[names[0]]
        for name in names[1:]:
            check(module, name, ".".join(names))
            module = PUBLIC_MODULES.get(f"{module.__name__}.{name}")
            if module is None:
                break
    return problems


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebooks_call_public_functions_only(path):
    nb = nbformat.read(path, as_version=4)
    problems = [p for c in nb.cells if c.cell_type == "code" for p in public_api_problems(c.source)]
    assert not problems


@pytest.mark.parametrize("source, bad", [
    ("from ipem.cli import _train\n_train(None)", "ipem.cli"),
    ("import ipem\nipem.em.driver.EMLoop", "ipem.em"),
    ("from ipem.speaker import utterances\nutterances._is_audio('x')", "_is_audio"),
    ("import ipem.steps as p\np.logger", "logger"),
], ids=["private-module", "internal-module", "private-function", "not-exported"])
def test_public_check_finds_private_use(source, bad):
    problems = public_api_problems(source)
    assert problems and bad in problems[0]


def test_public_check_accepts_magics_and_public_names():
    assert public_api_problems(
        "import ipem\nfrom ipem import steps\nfrom ipem.speaker import plot_det\n%px print(1)\n"
        "ipem.GaussianMixture(2); steps.evaluate; ipem.speaker.plot_det; ipem.__version__"
    ) == []


# ---------------------------------------------------------------------------
# figures and progress bars in a real kernel, without engines
# ---------------------------------------------------------------------------
KERNEL_CELLS = [
    """import warnings, matplotlib
warnings.simplefilter("always")
backend = matplotlib.get_backend()
import numpy as np, ipem
from ipem.em.records import IterationRecord
from ipem.progress import in_notebook, progress_bar, progress_iter
from ipem.speaker import plot_det
print("in_notebook:", in_notebook())""",
    """plot = ipem.LivePlot(title="live")
for i in range(1, 6):
    plot(IterationRecord(i, -1 / i, 1 / i ** 2 if i > 1 else np.inf, 0.01, 0.01 * i))""",
    """rng = np.random.default_rng(0)
plot_det({"x": (rng.normal(2, 1, 200), rng.normal(0, 1, 2000))}).figure""",
    """with progress_bar(3, desc="bar") as bar:
    for _ in range(3):
        bar.update(1)
print(sum(progress_iter(range(4), desc="iter")))""",
    """import sys
print("backend unchanged:", matplotlib.get_backend() == backend,
      "| pyplot imported:", "matplotlib.pyplot" in sys.modules)""",
]


def test_figures_and_bars_in_a_plain_kernel(tmp_path):
    nb = new_notebook(cells=[new_code_cell(c) for c in KERNEL_CELLS],
                      metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                               "language": "python"}})
    execute(nb, tmp_path)
    outputs = [o for c in nb.cells for o in c.outputs]
    check_clean(outputs)
    text = "".join(output_text(o) for o in outputs)
    assert "in_notebook: True" in text
    assert "backend unchanged: True | pyplot imported: False" in text
    live, det = nb.cells[1], nb.cells[2]
    assert len(pngs(live)) == 1                       # one image, updated in place
    assert [o.output_type for o in live.outputs] == ["display_data"]
    assert "iterations=5" in live.outputs[0].data["text/plain"]
    assert len(pngs(det)) == 1
    bars = "".join(o.get("text", "") for o in nb.cells[3].outputs)
    assert "bar: 100%" in bars and "iter: 100%" in bars and "6\n" in bars


# ---------------------------------------------------------------------------
# the same, in-process
# ---------------------------------------------------------------------------
def record(i):
    return IterationRecord(i, -1.0 / i, 1.0 / i ** 2 if i > 1 else np.inf, 0.01, 0.01 * i)


def test_liveplot_replaces_one_image_in_a_notebook(monkeypatch):
    import IPython.display

    shown = []

    class Handle:
        def update(self, obj, **kwargs):
            shown.append(("update", obj, kwargs))

    def display(obj, **kwargs):
        shown.append(("display", obj, kwargs))
        return Handle()

    monkeypatch.setattr(plotting, "in_notebook", lambda: True)
    monkeypatch.setattr(IPython.display, "display", display)
    plot = ipem.LivePlot()
    assert plot.notebook and plot.path is None
    for i in range(1, 4):
        plot(record(i))
    assert [s[0] for s in shown] == ["display", "update", "update"]
    assert shown[0][2] == {"raw": True, "display_id": True}
    for _, bundle, _ in shown:
        assert base64.b64decode(bundle["image/png"]).startswith(PNG_SIGNATURE)
        assert not bundle["text/plain"].startswith("<Figure")


def test_liveplot_writes_png_outside_notebooks(tmp_path):
    plot = ipem.LivePlot(path=str(tmp_path / "conv.png"), save_every=2)
    assert not plot.notebook
    for i in range(1, 4):
        plot(record(i))
    assert (tmp_path / "conv.png").read_bytes().startswith(PNG_SIGNATURE)
    plot.close()
    assert plot._repr_png_().startswith(PNG_SIGNATURE)


def _legend(plot):
    legend = plot.figure.axes[0].get_legend()
    return [t.get_text() for t in legend.get_texts()]


def test_liveplot_labels_a_total_variability_rank_r(tmp_path):
    from ipem.em.records import records_from_json, records_to_json
    from ipem.ivector import TotalVariability, frames_to_rows

    rng = np.random.default_rng(0)
    ubm = ipem.GaussianMixture(4, covariance_type="diag", random_state=0).fit(
        rng.normal(size=(800, 3)))
    utts = [rng.normal(size=(60, 3)).astype(np.float32) for _ in range(12)]
    plot = ipem.LivePlot(title="TV", path=str(tmp_path / "tv.png"))
    tv = TotalVariability(2, ubm=ubm, max_iter=3, random_state=0,
                          callbacks=plot).fit(frames_to_rows(utts, ubm))
    plot.close()
    assert (tmp_path / "tv.png").read_bytes().startswith(PNG_SIGNATURE)
    assert _legend(plot) == ["R=2"]
    assert [r.stage_label for r in tv.history_] == ["R"] * 3
    again = ipem.LivePlot(path=None, records=records_from_json(records_to_json(tv.history_)))
    again._repr_png_()
    assert _legend(again) == ["R=2"]          # a history read back from a file says R too


def test_liveplot_labels_mixture_sizes_k(tmp_path):
    rng = np.random.default_rng(0)
    plot = ipem.LivePlot(title="UBM", path=str(tmp_path / "ubm.png"))
    ipem.UBMTrainer(4, stage_iter=2, final_iter=2, random_state=0, callbacks=plot).fit(
        rng.normal(size=(600, 3)))
    plot.close()
    assert _legend(plot) == ["K=1", "K=2", "K=4"]
    old = ipem.LivePlot(path=None, records=[IterationRecord(i, -1.0 / i, 0.1, 0.01, 0.01, stage=8)
                                            for i in range(1, 3)])
    old._repr_png_()
    assert _legend(old) == ["K=8"]            # records without a label (older files): K


def test_figures_render_themselves():
    fig = ipem.speaker.plot_det({"x": ([1.0, 2.0, 3.0], [0.0, 1.5, -1.0])}).figure
    assert fig._repr_png_().startswith(PNG_SIGNATURE)
    assert plotting.new_figure(figsize=(2, 2))._repr_png_().startswith(PNG_SIGNATURE)


@pytest.mark.parametrize("default", ["svg", "pdf"])
def test_plots_never_switch_the_matplotlib_backend(default, tmp_path):
    script = textwrap.dedent(f"""
        import sys, matplotlib
        before = matplotlib.get_backend()
        import ipem, ipem.speaker
        from ipem.em.records import IterationRecord
        plot = ipem.LivePlot(path={str(tmp_path / "p.png")!r})
        for i in range(1, 4):
            plot(IterationRecord(i, -1 / i, 0.1, 0.01, 0.01 * i))
        plot.close()
        ax = ipem.speaker.plot_det({{"x": ([1.0, 2.0], [0.0, 1.5])}}, {str(tmp_path / "d.png")!r})
        ax.figure._repr_png_()
        print(before, matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
    """)
    env = dict(__import__("os").environ, MPLBACKEND=default)
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == [default, default, "False"]
    assert (tmp_path / "p.png").exists() and (tmp_path / "d.png").exists()


def test_progress_bar_outside_notebooks(capsys):
    from tqdm.std import tqdm

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with progress_mod.progress_bar(4, desc="work") as bar:
            bar.update(4)
        quiet = progress_mod.progress_bar(4, enabled=False)
        quiet.update(4)
        quiet.close()
    assert type(bar) is tqdm
    err = capsys.readouterr().err
    assert "work: 100%" in err and err.count("100%") == 1
    assert list(progress_mod.progress_iter(iter("abc"), desc="x", enabled=False)) == ["a", "b", "c"]


def test_progress_bar_in_a_kernel_without_ipywidgets(monkeypatch, capsys):
    from tqdm.std import tqdm

    find_spec = progress_mod.importlib.util.find_spec
    monkeypatch.setattr(progress_mod, "in_notebook", lambda: True)
    monkeypatch.setattr(progress_mod.importlib.util, "find_spec",
                        lambda name, *a: None if name == "ipywidgets" else find_spec(name, *a))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        items = list(progress_mod.progress_iter(range(3), desc="files"))
        bar = progress_mod.progress_bar(2)
        bar.close()
    assert items == [0, 1, 2] and type(bar) is tqdm
    out = capsys.readouterr()
    assert "files: 100%" in out.out and not out.err     # stdout: stderr is an error stream


def test_progress_bar_in_a_kernel_with_ipywidgets(monkeypatch):
    from tqdm.notebook import tqdm

    monkeypatch.setattr(progress_mod, "in_notebook", lambda: True)
    monkeypatch.setattr(progress_mod.importlib.util, "find_spec",
                        lambda name, *a: types.SimpleNamespace(name=name))
    assert progress_mod._bar_class() is tqdm


@pytest.mark.mpi
def test_in_notebook_is_false_here_and_on_engines(mpi_client):
    assert progress_mod.in_notebook() is False
    # engines are IPython kernels too, but nobody watches their displays
    assert mpi_client[:].apply_sync(progress_mod.in_notebook) == [False] * len(mpi_client.ids)
