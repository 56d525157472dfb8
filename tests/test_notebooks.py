"""The notebooks run headlessly against real MPI engines."""
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = {
    "01": ["bit-identical: True", "Allreduce model identical: True",
           "Shard(index=1, offset=20000, X=(20000, 12) float32", "rank 1 of 2"],
    "02": ["rank 1: 12 files", "all variances positive: True", "same model: True"],
    "03": ["EER", "minDCF", "same scores on engines and locally: True"],
}
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path):
    import ipem
    ipem.parallel.ensure_mpiexec()
    nb = nbformat.read(path, as_version=4)
    os.environ.setdefault("MPLBACKEND", "Agg")
    client = NotebookClient(nb, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") if o.get("output_type") == "stream"
                   else o.get("data", {}).get("text/plain", "") for o in outputs)
    for expected in EXPECTED[path.stem[:2]]:
        assert expected in text
